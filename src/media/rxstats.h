/*
 * rxstats.h - what arrived from the peer, as RTCP counts it (RFC 3550
 * appendix A.3 and A.8): extended highest sequence number, packets lost
 * (cumulative and per report interval), and the interarrival jitter
 * estimator J += (|D| - J) / 16 in media timestamp units.
 *
 * One deviation: duplicates are recognised (a window of recent sequence
 * numbers) and not counted as received, so "lost" never goes negative. A
 * jump in transit time over one second (the peer paused and resumed its
 * clock) is clamped to one second so one event cannot swamp the estimate.
 */
#ifndef PL_RXSTATS_H
#define PL_RXSTATS_H

#include "media_packet.h"
#include "replay.h"

typedef struct pl_rxstats {
    bool started;
    uint64_t base_ext;  /* extended sequence number of the first packet */
    uint64_t max_ext;   /* highest extended sequence number seen */
    uint64_t received;  /* distinct packets */
    uint64_t duplicates;
    pl_replay seen;
    uint64_t expected_prior, received_prior; /* at the previous report */
    bool have_transit;
    uint32_t transit;   /* arrival - timestamp of the previous packet, 48 kHz units, wrapping */
    uint32_t jitter_q4; /* the estimate times 16 (RFC 3550 A.8) */
} pl_rxstats;

void pl_rxstats_init(pl_rxstats *st);
/* Counts a packet that arrived at `arrival`. Returns false (and counts a
 * duplicate) for a sequence number seen before or too old to tell. */
bool pl_rxstats_packet(pl_rxstats *st, uint16_t seq, uint32_t timestamp, pl_time arrival);
/* Fills the reception fields and flag of a report and starts the next
 * interval. Leaves them zero when nothing arrived yet. */
void pl_rxstats_fill_report(pl_rxstats *st, pl_mpkt_report *r);

uint64_t pl_rxstats_expected(const pl_rxstats *st);
uint64_t pl_rxstats_lost(const pl_rxstats *st);
/* Jitter in microseconds. */
pl_time pl_rxstats_jitter_us(const pl_rxstats *st);

/* Extends a wrapping 16- or 32-bit counter to 64 bits, picking the value
 * nearest `reference` (an extended value already seen). */
uint64_t pl_rxstats_extend16(uint64_t reference, uint16_t value);
uint64_t pl_rxstats_extend32(uint64_t reference, uint32_t value);

#endif
