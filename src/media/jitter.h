/*
 * jitter.h - the adaptive jitter buffer: voice packets in, in any order and
 * at any time; one 20 ms frame out per playout tick.
 *
 * How it decides. For every packet it notes d = arrival time - media
 * timestamp (in microseconds; the unknown clock offset cancels out). Over
 * the last PL_JITTER_WINDOW packets it keeps d sorted, and sets the target
 * playout time of a frame to its timestamp + the q-th quantile of d + a small
 * margin: a frame is played once all but the slowest (1 - q) of packets would
 * have arrived. With no jitter the quantile is every packet's own delay, so
 * a packet waits only the margin plus the wait for the next tick (under one
 * frame); under jitter the target rises to cover it.
 *
 * At each tick the frame at the play pointer is compared with its target:
 *  - too early (the pointer is ahead of the target): grow the delay by one
 *    frame: play comfort noise or concealment without moving the pointer.
 *    Done at once in silence or when the frame is missing, else only when
 *    more than half a frame early;
 *  - more than a frame (plus hysteresis) late: shrink by skipping one frame,
 *    in silence (DTX) at once, in speech only when the excess has lasted a
 *    second or is large, so that talk is cut as little as possible;
 *  - otherwise play the frame. A missing frame in speech is lost: it is
 *    rebuilt from the next packet's FEC if that packet is here, else
 *    concealed. A missing frame in silence (the last packet said DTX, or the
 *    next packet follows the last one in sequence) is comfort noise.
 * Clock drift between the two ends moves the quantile slowly, and the same
 * rules drop or insert frames to follow it.
 *
 * Duplicates (by sequence number) and packets whose frame was already played
 * (late) are counted and dropped; late packets still inform the delay
 * estimate. A packet more than a second away from the play pointer (the
 * peer paused its clock, or restarted) resynchronises the buffer.
 *
 * The buffer does not decode: pl_jitter_pull says what to do (play a packet,
 * decode FEC from a packet, conceal, comfort noise, or output silence) and
 * the caller drives the decoder. Sans-I/O, fixed memory, no allocation after
 * pl_jitter_new.
 */
#ifndef PL_JITTER_H
#define PL_JITTER_H

#include "parley.h"
#include "replay.h"
#include "voice_codec.h"

#define PL_JITTER_SLOTS 64   /* packets held: 1.28 s of audio */
#define PL_JITTER_WINDOW 250 /* delay samples the target is taken from: 5 s of talk */

typedef struct pl_jitter_config {
    uint16_t quantile_permille; /* 0: 950 */
    pl_time margin;             /* added to the quantile; 0: 3 ms */
    pl_time max_delay;          /* ceiling on the target above the fastest packet; 0: 500 ms */
    pl_time hysteresis;         /* extra lateness before a frame is dropped; 0: 5 ms */
} pl_jitter_config;

typedef enum pl_jitter_action {
    PL_JITTER_EMPTY = 0, /* nothing to play yet (before the first packet): output silence */
    PL_JITTER_PLAY,      /* decode packet */
    PL_JITTER_FEC,       /* the frame was lost: decode FEC from packet (the next frame's) */
    PL_JITTER_CONCEAL,   /* the frame was lost (or is inserted in speech): conceal */
    PL_JITTER_SILENCE,   /* DTX, or a frame inserted/held in silence: comfort noise (conceal) */
} pl_jitter_action;

typedef struct pl_jitter_frame {
    pl_jitter_action action;
    const uint8_t *packet; /* PLAY, FEC: valid until the next call on the buffer */
    size_t len;
    bool inserted;         /* this frame was added to grow the delay */
} pl_jitter_frame;

typedef struct pl_jitter_stats {
    uint64_t received;   /* packets taken into the buffer */
    uint64_t played;     /* frames decoded from their own packet */
    uint64_t concealed;  /* frames concealed in speech (lost, or inserted) */
    uint64_t fec;        /* lost frames rebuilt from FEC */
    uint64_t silence;    /* comfort-noise frames (DTX, hold) */
    uint64_t empty;      /* frames of silence before playout started */
    uint64_t late;       /* packets that arrived after their frame was played */
    uint64_t duplicate;  /* packets seen before */
    uint64_t inserted;   /* frames added to grow the delay */
    uint64_t dropped;    /* frames skipped to shrink the delay */
    uint64_t overflow;   /* packets refused because the buffer was full */
    uint64_t resyncs;    /* restarts after a jump in the peer's timestamps */
    uint32_t buffered;   /* packets waiting now */
    pl_time target;      /* current target above the fastest packet of the last second */
    pl_time delay;       /* the pointer's delay above the fastest packet of the last second, at the last tick */
    pl_time delay_avg;   /* its average over the ticks that played audio */
    pl_time wait_avg;    /* average time a played packet spent in the buffer */
} pl_jitter_stats;

typedef struct pl_jitter pl_jitter;

/* NULL mem: the C heap. Returns NULL when out of memory. */
pl_jitter *pl_jitter_new(const pl_jitter_config *config, const pl_mem *mem);
void pl_jitter_free(pl_jitter *jb);
/* Forgets every packet and estimate (a new call, or the peer restarted). */
void pl_jitter_reset(pl_jitter *jb);

/* A voice packet (its fields from pl_mpkt_voice) that arrived at `now`. The
 * bytes are copied. */
void pl_jitter_put(pl_jitter *jb, uint16_t seq, uint32_t timestamp, uint8_t flags, const uint8_t *opus, size_t len,
                   pl_time now);
/* The frame to play at this tick. Call once every 20 ms. */
pl_jitter_frame pl_jitter_pull(pl_jitter *jb, pl_time now);
/* The peer said it holds the call: missing frames are silence, not loss. */
void pl_jitter_set_peer_hold(pl_jitter *jb, bool hold);
pl_jitter_stats pl_jitter_get_stats(const pl_jitter *jb);

#endif
