/*
 * media_packet.h - the media payloads a call carries inside its secure
 * session (docs/media.md has the byte layouts).
 *
 * The first byte of every secure-session payload says what it is. Media owns
 * two values: 0x80, a voice packet (one 20 ms Opus frame with its sequence
 * number and media timestamp), and 0x81, a receiver report (what arrived from
 * the peer, and the timestamps for a round-trip time, as RTCP does). Other
 * values belong to other modules; pl_mpkt_is_media tells a dispatcher which
 * payloads to hand to the media stream.
 *
 * The secure session authenticates and encrypts every payload, so these
 * formats carry no checksum or key. They are still parsed as hostile input:
 * fixed sizes, reserved bits zero, no trailing bytes.
 */
#ifndef PL_MEDIA_PACKET_H
#define PL_MEDIA_PACKET_H

#include "parley.h"
#include "voice_codec.h"

#define PL_MPKT_VOICE 0x80
#define PL_MPKT_REPORT 0x81

#define PL_MPKT_VOICE_HEADER 8
#define PL_MPKT_VOICE_MAX (PL_MPKT_VOICE_HEADER + PL_VOICE_MAX_PACKET)
#define PL_MPKT_REPORT_SIZE 28

/* Voice flags. */
#define PL_MPKT_F_MARKER 0x01  /* the first packet after frames that were not sent (DTX) */
#define PL_MPKT_F_SILENCE 0x02 /* the sender is in DTX: frames until its next packet are silence, not loss */
#define PL_MPKT_F_VOICE_ALL (PL_MPKT_F_MARKER | PL_MPKT_F_SILENCE)

/* Report flags. */
#define PL_MPKT_R_RECEPTION 0x01 /* the reception fields are valid (some voice arrived) */
#define PL_MPKT_R_LSR 0x02       /* lsr and dlsr are valid (a report from the peer arrived) */
#define PL_MPKT_R_HOLD 0x04      /* the sender has put the call on hold: no voice is coming */
#define PL_MPKT_R_ALL (PL_MPKT_R_RECEPTION | PL_MPKT_R_LSR | PL_MPKT_R_HOLD)

typedef enum pl_mpkt_err {
    PL_MPKT_OK = 0,
    PL_MPKT_ERR_TYPE,      /* not a media payload */
    PL_MPKT_ERR_MALFORMED, /* wrong size, reserved bits set, or fields that contradict each other */
    PL_MPKT_ERR_BUFFER,    /* output buffer too small */
} pl_mpkt_err;

const char *pl_mpkt_strerror(pl_mpkt_err err);

typedef struct pl_mpkt_voice {
    uint8_t flags;
    uint16_t seq;       /* +1 per packet sent, wrapping */
    uint32_t timestamp; /* of the frame's first sample, 48 kHz units, wrapping */
    const uint8_t *opus; /* decode: points into the caller's buffer */
    size_t opus_len;     /* 1..PL_VOICE_MAX_PACKET */
} pl_mpkt_voice;

typedef struct pl_mpkt_report {
    uint8_t flags;
    uint8_t fraction_lost;    /* lost / expected since the previous report, in 1/256 */
    uint32_t cumulative_lost; /* since the call began, never negative */
    uint32_t highest_seq;     /* extended: wrap count << 16 | highest sequence number */
    uint32_t jitter;          /* interarrival jitter, RFC 3550 estimator, 48 kHz units */
    uint32_t timestamp;       /* when this report was sent: pl_mpkt_compact_time */
    uint32_t lsr;             /* timestamp of the last report received from the peer */
    uint32_t dlsr;            /* time since that report arrived, 1/65536 s */
} pl_mpkt_report;

static inline bool pl_mpkt_is_media(const uint8_t *data, size_t len)
{
    return len > 0 && (data[0] == PL_MPKT_VOICE || data[0] == PL_MPKT_REPORT);
}

pl_mpkt_err pl_mpkt_voice_encode(const pl_mpkt_voice *v, uint8_t *buf, size_t cap, size_t *out_len);
pl_mpkt_err pl_mpkt_voice_decode(pl_mpkt_voice *v, const uint8_t *buf, size_t len);
pl_mpkt_err pl_mpkt_report_encode(const pl_mpkt_report *r, uint8_t *buf, size_t cap, size_t *out_len);
pl_mpkt_err pl_mpkt_report_decode(pl_mpkt_report *r, const uint8_t *buf, size_t len);

/* Time as RTCP's "middle 32 bits of NTP": units of 1/65536 s, wrapping every
 * 18.2 hours. Differences of compact times are exact modulo 2^32. */
uint32_t pl_mpkt_compact_time(pl_time t);
pl_time pl_mpkt_compact_to_us(uint32_t c);
uint32_t pl_mpkt_us_to_compact(pl_time us);

/* The round-trip time a report shows when it arrives at `now`: now - lsr -
 * dlsr. Returns false when the report carries no LSR or the result is
 * negative or over a minute (a bogus or stale report). */
bool pl_mpkt_report_rtt(const pl_mpkt_report *r, pl_time now, pl_time *rtt);

#endif
