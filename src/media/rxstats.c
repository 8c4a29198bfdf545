/* rxstats.c - reception statistics for receiver reports; see rxstats.h. */
#include "rxstats.h"

#include <string.h>

/* Extended values start at 2^32 plus the first value seen, so that packets
 * from before the first one (reordered at the start) never underflow. */
#define EXT_OFFSET (1ull << 32)

uint64_t pl_rxstats_extend16(uint64_t reference, uint16_t value)
{
    uint64_t cand = (reference & ~0xffffull) | value;
    if (cand + 0x8000 < reference) cand += 0x10000;
    else if (cand > reference + 0x8000 && cand >= 0x10000) cand -= 0x10000;
    return cand;
}

uint64_t pl_rxstats_extend32(uint64_t reference, uint32_t value)
{
    uint64_t cand = (reference & ~0xffffffffull) | value;
    if (cand + 0x80000000ull < reference) cand += 0x100000000ull;
    else if (cand > reference + 0x80000000ull && cand >= 0x100000000ull) cand -= 0x100000000ull;
    return cand;
}

void pl_rxstats_init(pl_rxstats *st)
{
    memset(st, 0, sizeof *st);
    pl_replay_reset(&st->seen);
}

static uint32_t to_media_units(pl_time t)
{
    /* 48 samples per millisecond; wrapping is what RFC 3550 expects. */
    return (uint32_t)((t / 1000) * 48 + (t % 1000) * 48 / 1000);
}

bool pl_rxstats_packet(pl_rxstats *st, uint16_t seq, uint32_t timestamp, pl_time arrival)
{
    uint64_t ext;
    if (!st->started) {
        ext = EXT_OFFSET + seq;
        st->base_ext = st->max_ext = ext;
        st->started = true;
    } else {
        ext = pl_rxstats_extend16(st->max_ext, seq);
    }
    if (!pl_replay_accept(&st->seen, ext)) {
        st->duplicates++;
        return false;
    }
    if (ext > st->max_ext) st->max_ext = ext;
    if (ext < st->base_ext) st->base_ext = ext;
    st->received++;

    uint32_t transit = to_media_units(arrival) - timestamp;
    if (st->have_transit) {
        int32_t d = (int32_t)(transit - st->transit);
        int64_t ad = d < 0 ? -(int64_t)d : d;
        if (ad > PL_VOICE_RATE) ad = PL_VOICE_RATE;
        /* J += (|D| - J) / 16, kept times 16 in integers (RFC 3550 A.8). */
        int64_t j = (int64_t)st->jitter_q4 + ad - (((int64_t)st->jitter_q4 + 8) >> 4);
        st->jitter_q4 = j < 0 ? 0 : (uint32_t)j;
    }
    st->transit = transit;
    st->have_transit = true;
    return true;
}

uint64_t pl_rxstats_expected(const pl_rxstats *st) { return st->started ? st->max_ext - st->base_ext + 1 : 0; }

uint64_t pl_rxstats_lost(const pl_rxstats *st)
{
    uint64_t expected = pl_rxstats_expected(st);
    return expected > st->received ? expected - st->received : 0;
}

pl_time pl_rxstats_jitter_us(const pl_rxstats *st) { return (pl_time)(st->jitter_q4 >> 4) * 1000 / 48; }

void pl_rxstats_fill_report(pl_rxstats *st, pl_mpkt_report *r)
{
    r->flags &= (uint8_t)~PL_MPKT_R_RECEPTION;
    r->fraction_lost = 0;
    r->cumulative_lost = 0;
    r->highest_seq = 0;
    r->jitter = 0;
    if (!st->started) return;
    uint64_t expected = pl_rxstats_expected(st);
    uint64_t expected_interval = expected - st->expected_prior;
    uint64_t received_interval = st->received - st->received_prior;
    st->expected_prior = expected;
    st->received_prior = st->received;
    uint64_t lost_interval = expected_interval > received_interval ? expected_interval - received_interval : 0;
    r->flags |= PL_MPKT_R_RECEPTION;
    uint64_t fraction = expected_interval ? (lost_interval << 8) / expected_interval : 0;
    r->fraction_lost = fraction > 255 ? 255 : (uint8_t)fraction;
    uint64_t lost = pl_rxstats_lost(st);
    r->cumulative_lost = lost > UINT32_MAX ? UINT32_MAX : (uint32_t)lost;
    r->highest_seq = (uint32_t)(st->max_ext - EXT_OFFSET);
    r->jitter = st->jitter_q4 >> 4;
}
