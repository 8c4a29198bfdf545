/*
 * mixer.h - the conference mixer a host runs (docs/messages.md, section 5).
 *
 * In a Parley conference one participant, the host, receives every other
 * participant's voice over its own end-to-end encrypted call leg, decodes
 * it, and sends each participant the mix of everyone else ("mix-minus":
 * nobody hears their own voice back). The host takes part too: it is one
 * more participant whose frames come from its microphone and whose mix goes
 * to its speaker.
 *
 * Audio is 48 kHz mono in 20 ms frames (960 samples). Decoded frames come
 * in as they arrive; a tick every 20 ms takes one frame per participant
 * from a small queue (so arrival jitter between legs does not matter),
 * sums them in 32 bits, and writes each participant's output with its own
 * voice taken out and a limiter (a smooth gain that follows the peak, then
 * a soft knee) instead of wrapping or hard clipping. A participant whose
 * queue runs dry is silent for that tick and is heard again once its queue
 * holds `prefill` frames; one whose queue grows past `target` for a while
 * loses its oldest frame, so its delay stays bounded. Participants join and
 * leave between ticks.
 *
 * Also: a deterministic choice of host and successor from what the
 * participants report (bandwidth, round-trip time, NAT openness), so every
 * participant computes the same answer and the call moves to the successor
 * when the host leaves.
 *
 * No allocation after pl_mix_new, no I/O, no clock.
 */
#ifndef PL_MIXER_H
#define PL_MIXER_H

#include "parley.h"

#define PL_MIX_RATE 48000
#define PL_MIX_FRAME 960
#define PL_MIX_MAX_PARTICIPANTS 32
#define PL_MIX_MAX_QUEUE 16
#define PL_MIX_DEFAULT_PREFILL 1
#define PL_MIX_DEFAULT_TARGET 2
#define PL_MIX_DEFAULT_MAX_QUEUE 6
/* Ticks a queue must stay above target before a frame is dropped. */
#define PL_MIX_DRIFT_TICKS 25

typedef struct pl_mix pl_mix;

typedef struct pl_mix_config {
    uint32_t max_participants; /* 0: PL_MIX_MAX_PARTICIPANTS */
    uint8_t prefill;           /* frames queued before a participant is heard; 0: default */
    uint8_t target;            /* queue depth kept in the long run; 0: default */
    uint8_t max_queue;         /* hard bound; older frames are dropped; 0: default */
    const pl_mem *mem;
} pl_mix_config;

typedef struct pl_mix_stats {
    uint64_t frames_in, frames_mixed, missing, dropped_overflow, dropped_drift;
    uint8_t queued;
    bool talking;   /* contributed to the last tick */
    int32_t peak;   /* of its last contributed frame */
    float gain;     /* its output limiter's gain now */
} pl_mix_stats;

typedef enum pl_mix_err {
    PL_MIX_OK = 0,
    PL_MIX_ERR_CONFIG,
    PL_MIX_ERR_NOMEM,
    PL_MIX_ERR_FULL,     /* no room for another participant */
    PL_MIX_ERR_EXISTS,   /* joined already */
    PL_MIX_ERR_UNKNOWN,  /* no such participant */
} pl_mix_err;

pl_mix_err pl_mix_new(pl_mix **out, const pl_mix_config *cfg);
void pl_mix_free(pl_mix *m);
/* Participants are named by the caller (a call leg's id). */
pl_mix_err pl_mix_join(pl_mix *m, uint32_t id);
pl_mix_err pl_mix_leave(pl_mix *m, uint32_t id);
size_t pl_mix_count(const pl_mix *m);
/* A decoded frame from a participant, as it arrives. A frame the leg lost
 * is either not pushed (silence) or pushed as the decoder's concealment. */
pl_mix_err pl_mix_push(pl_mix *m, uint32_t id, const int16_t pcm[PL_MIX_FRAME]);
/* Every 20 ms: mix. */
void pl_mix_tick(pl_mix *m);
/* A participant's output from the last tick: everyone but itself. NULL for
 * an unknown id. Valid until the next tick or leave. */
const int16_t *pl_mix_output(const pl_mix *m, uint32_t id);
pl_mix_err pl_mix_get_stats(const pl_mix *m, uint32_t id, pl_mix_stats *out);
const char *pl_mix_strerror(pl_mix_err err);

/* ---- host election ------------------------------------------------------------------- */

enum {
    PL_MIX_NAT_OPEN = 0,      /* a public address, or a port mapping: reachable by all */
    PL_MIX_NAT_CONE = 1,      /* endpoint-independent mapping: hole punching works */
    PL_MIX_NAT_SYMMETRIC = 2, /* punching mostly fails: legs go through relays */
    PL_MIX_NAT_BLOCKED = 3,   /* no UDP: relayed over TCP */
};

typedef struct pl_mix_candidate {
    uint8_t key[32];     /* the participant's identity: breaks ties */
    uint32_t up_kbps, down_kbps;
    uint32_t rtt_ms;     /* mean round-trip time to the other participants */
    uint8_t nat;         /* PL_MIX_NAT_* */
    bool can_host;       /* its software and CPU can mix */
} pl_mix_candidate;

/* Chooses the host and its successor among n candidates for a conference
 * of n in which each leg carries leg_kbps each way. The rule, in order: a
 * host must be able to host and have the bandwidth for n-1 legs both ways;
 * then the more open NAT; then the lower mean RTT; then the more spare
 * bandwidth; then the smaller key. Deterministic, whatever the order of the
 * candidates. *successor is -1 when n < 2. Returns false when n == 0. */
bool pl_mix_elect(const pl_mix_candidate *c, size_t n, uint32_t leg_kbps, int *host, int *successor);

#endif
