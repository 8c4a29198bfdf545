/* replay.c - sliding replay window; see replay.h. */
#include "replay.h"

#include <string.h>

#define BLOCK_BITS 64
#define BLOCK_MASK (PL_REPLAY_BLOCKS - 1)

void pl_replay_reset(pl_replay *r) { memset(r, 0, sizeof *r); }

bool pl_replay_check(const pl_replay *r, uint64_t counter)
{
    if (counter >= r->top) return true;
    if (r->top - counter > PL_REPLAY_WINDOW) return false;
    uint64_t block = (counter / BLOCK_BITS) & BLOCK_MASK;
    return !(r->bits[block] & (1ull << (counter % BLOCK_BITS)));
}

bool pl_replay_accept(pl_replay *r, uint64_t counter)
{
    if (!pl_replay_check(r, counter)) return false;
    if (counter >= r->top) {
        /* Clear the blocks the window slides over. The highest block in use
         * is that of top-1; the new highest is that of counter. */
        uint64_t old_block = r->top ? (r->top - 1) / BLOCK_BITS : 0;
        uint64_t new_block = counter / BLOCK_BITS;
        uint64_t diff = new_block - old_block;
        if (r->top == 0) {
            memset(r->bits, 0, sizeof r->bits);
        } else {
            if (diff > PL_REPLAY_BLOCKS) diff = PL_REPLAY_BLOCKS;
            for (uint64_t i = 1; i <= diff; i++) r->bits[(old_block + i) & BLOCK_MASK] = 0;
        }
        r->top = counter + 1;
    }
    r->bits[(counter / BLOCK_BITS) & BLOCK_MASK] |= 1ull << (counter % BLOCK_BITS);
    return true;
}
