/*
 * replay.h - the sliding window that refuses a data packet counter seen
 * before or too old (RFC 6479's bitmap of blocks, as WireGuard uses it).
 *
 * The window accepts any counter above the highest seen, and counters up to
 * PL_REPLAY_WINDOW below it exactly once. It is updated only after the packet
 * authenticated, so forged packets cannot move it.
 */
#ifndef PL_REPLAY_H
#define PL_REPLAY_H

#include <stdbool.h>
#include <stdint.h>

#define PL_REPLAY_BLOCKS 16                       /* 16 x 64 bits */
#define PL_REPLAY_WINDOW ((PL_REPLAY_BLOCKS - 1) * 64) /* 960 packets of reordering */

typedef struct pl_replay {
    uint64_t top;      /* highest counter accepted, plus one (0: none yet) */
    uint64_t bits[PL_REPLAY_BLOCKS];
} pl_replay;

void pl_replay_reset(pl_replay *r);
/* Would this counter be accepted? Does not change the window. */
bool pl_replay_check(const pl_replay *r, uint64_t counter);
/* Marks the counter seen; returns false (and changes nothing) if it was a
 * replay or too old. */
bool pl_replay_accept(pl_replay *r, uint64_t counter);

#endif
