/*
 * impair.h - a seeded model of a bad network path, and a bounded queue of
 * the datagrams it is holding back.
 *
 * This kernel has no netem, so tests impair real UDP in user space
 * (src/tools/impair is the relay). The decisions live here, sans-I/O: a
 * datagram offered at time `now` is dropped, or queued with the time it is
 * due; the driver takes datagrams as they fall due. Everything random comes
 * from a ChaCha20 stream keyed by the seed, one stream per direction, so a
 * run is reproducible and one direction's traffic never changes the other
 * direction's decisions. Each datagram consumes the same number of random
 * draws whatever the settings, so changing one impairment (say the loss)
 * keeps the others (say the jitter samples) identical between runs.
 *
 * What happens to a datagram, in order:
 *  1. Burst loss: a Gilbert-Elliott chain (good state: no loss; bad state:
 *     every datagram lost) with the configured long-run loss and mean burst
 *     length in datagrams. Then independent random loss on top.
 *  2. Rate limit (optional): the datagram (payload plus 28 bytes of IPv4 and
 *     UDP headers) is serialised at the configured bit rate behind those
 *     before it; when the backlog would exceed rate_queue it is tail-dropped.
 *  3. Delay: fixed delay plus a jitter sample, each datagram drawn
 *     independently. Independent delays reorder: two datagrams T apart swap
 *     when the earlier one draws T more jitter than the later. For uniform
 *     jitter in [0, J] a fraction (J - T)^2 / (2 J^2) of adjacent pairs swap
 *     (none when T >= J); for exponential jitter with mean J, exp(-T/J) / 2;
 *     the Pareto tail swaps about as often as the exponential at small T
 *     and, rarely, holds one datagram behind many. With jitter_fifo the
 *     jitter keeps order instead (a datagram is never due before the one
 *     ahead of it), as a single queue on a real path does.
 *  4. Explicit reordering: with the reorder probability a datagram is held
 *     back an extra reorder_gap, so datagrams sent within that gap overtake
 *     it. At packet spacings longer than the gap nothing overtakes.
 *  5. Duplication: with the dup probability a second copy is queued with its
 *     own jitter sample.
 */
#ifndef PL_IMPAIR_H
#define PL_IMPAIR_H

#include "parley.h"

#define PL_IMPAIR_MAX_DATAGRAM 1500
/* The longest jitter sample, as a multiple of the configured jitter: the
 * exponential and Pareto tails are cut there so a queue slot is never held
 * for ever (exponential: e^-50; Pareto: about 1 sample in 7000). */
#define PL_IMPAIR_JITTER_CAP 50
/* IPv4 + UDP header bytes the rate limiter counts per datagram. */
#define PL_IMPAIR_HEADER_BYTES 28

enum { PL_IMPAIR_UP = 0, PL_IMPAIR_DOWN = 1, PL_IMPAIR_DIRS = 2 };

typedef enum pl_impair_err {
    PL_IMPAIR_OK = 0,
    PL_IMPAIR_ERR_CONFIG, /* a probability outside [0, 1], burst settings that no chain has, ... */
    PL_IMPAIR_ERR_MEMORY,
} pl_impair_err;
const char *pl_impair_strerror(pl_impair_err err);

typedef enum pl_impair_jitter {
    PL_IMPAIR_JITTER_UNIFORM = 0, /* uniform in [0, jitter] (mean jitter / 2) */
    PL_IMPAIR_JITTER_EXPONENTIAL, /* exponential with mean jitter */
    PL_IMPAIR_JITTER_PARETO,      /* Pareto type II (Lomax), shape 2.5, mean jitter: a heavy tail */
} pl_impair_jitter;
/* "uniform", "exponential" (or "exp"), "pareto"; false for anything else. */
bool pl_impair_jitter_parse(const char *text, pl_impair_jitter *out);
const char *pl_impair_jitter_name(pl_impair_jitter dist);

/* One direction of the path. All zero is a perfect link. */
typedef struct pl_impair_link {
    pl_time delay;       /* fixed one-way delay */
    pl_time jitter;      /* scale of the extra random delay (see pl_impair_jitter) */
    pl_impair_jitter jitter_dist;
    bool jitter_fifo;    /* keep order despite jitter */
    double loss;         /* independent loss probability, 0..1 */
    double burst_loss;   /* long-run fraction lost in bursts, 0..1 */
    double burst_len;    /* mean burst length in datagrams, >= 1 (used when burst_loss > 0) */
    double reorder;      /* probability of being held back by reorder_gap */
    pl_time reorder_gap;
    double dup;          /* probability of a second copy */
    uint64_t rate_bps;   /* bits per second; 0: unlimited */
    pl_time rate_queue;  /* the longest backlog the rate limiter holds before dropping */
} pl_impair_link;

pl_impair_err pl_impair_link_check(const pl_impair_link *link);

/* ---- the decision model of one direction (used by the queue below; exposed
 * so that its statistics can be tested on their own) ------------------------- */

typedef enum pl_impair_fate {
    PL_IMPAIR_DELIVER = 0,
    PL_IMPAIR_DROP_BURST, /* lost in a Gilbert-Elliott burst */
    PL_IMPAIR_DROP_LOSS,  /* independent random loss */
    PL_IMPAIR_DROP_RATE,  /* the rate limiter's backlog was full */
} pl_impair_fate;

typedef struct pl_impair_verdict {
    pl_impair_fate fate;
    unsigned copies; /* 1, or 2 when duplicated (0 when dropped) */
    pl_time due[2];
    bool reordered;  /* held back by the reorder gap */
} pl_impair_verdict;

typedef struct pl_impair_model {
    pl_impair_link link;
    pl_rng_seeded rng;
    bool ge_bad;
    double ge_enter; /* P(good -> bad) per datagram */
    double ge_leave; /* P(bad -> good) per datagram */
    pl_time link_free; /* when the rate limiter's link is next idle */
    pl_time last_due;  /* for jitter_fifo */
} pl_impair_model;

/* The link must pass pl_impair_link_check. */
void pl_impair_model_init(pl_impair_model *m, const pl_impair_link *link, uint64_t seed);
void pl_impair_model_decide(pl_impair_model *m, pl_time now, size_t len, pl_impair_verdict *out);

/* ---- the relay's core: both directions and the held datagrams ---------------- */

typedef struct pl_impair_config {
    pl_impair_link link[PL_IMPAIR_DIRS];
    uint64_t seed;
    size_t queue_slots; /* datagrams held at once (both directions); 0: 4096 */
} pl_impair_config;

typedef struct pl_impair_stats {
    uint64_t offered;      /* datagrams handed to pl_impair_offer */
    uint64_t delivered;    /* copies handed out by pl_impair_take */
    uint64_t dropped_burst, dropped_loss, dropped_rate;
    uint64_t dropped_full; /* no free queue slot */
    uint64_t too_big;      /* longer than PL_IMPAIR_MAX_DATAGRAM */
    uint64_t duplicated, reordered;
    uint64_t bytes_delivered;
    double delay_sum_us;   /* sum over delivered copies of (due - offered) */
    pl_time delay_max;
} pl_impair_stats;

typedef struct pl_impair pl_impair;

/* A datagram taken from the queue. data stays valid until the next call to
 * pl_impair_offer, pl_impair_take or pl_impair_free. */
typedef struct pl_impair_datagram {
    unsigned dir;
    uint64_t tag; /* what the driver passed to pl_impair_offer */
    const uint8_t *data;
    size_t len;
    pl_time offered, due;
} pl_impair_datagram;

pl_impair *pl_impair_new(const pl_impair_config *cfg, const pl_mem *mem, pl_impair_err *err);
void pl_impair_free(pl_impair *im);
/* Decides the datagram's fate and queues what survives; copies the bytes.
 * Returns the number of copies queued (0, 1 or 2). */
unsigned pl_impair_offer(pl_impair *im, unsigned dir, pl_time now, const uint8_t *data, size_t len, uint64_t tag);
/* The due time of the earliest held datagram; PL_TIME_NEVER when none. */
pl_time pl_impair_next_due(const pl_impair *im);
/* Takes the earliest datagram due at or before now (ties in the order they
 * were queued); false when none is due. */
bool pl_impair_take(pl_impair *im, pl_time now, pl_impair_datagram *out);
size_t pl_impair_held(const pl_impair *im);
void pl_impair_get_stats(const pl_impair *im, unsigned dir, pl_impair_stats *out);

#endif
