/*
 * ratelimit.h - per-source token buckets in a fixed-size table.
 *
 * Sources are keyed by IPv4 address or IPv6 /64, since one host usually holds
 * a whole /64. The table never grows: when it is full the stalest entry
 * is reused, which at worst gives an attacker who floods from many addresses
 * a fresh bucket, never more memory.
 */
#ifndef PL_RATELIMIT_H
#define PL_RATELIMIT_H

#include "parley.h"

typedef struct pl_ratelimit_entry {
    uint64_t key_hi, key_lo; /* 0/0: empty */
    pl_time last;
    uint64_t tokens; /* in units of 1/PL_SEC of a packet */
} pl_ratelimit_entry;

typedef struct pl_ratelimit {
    pl_ratelimit_entry *table;
    uint32_t size;   /* a power of two */
    uint64_t rate;   /* packets per second */
    uint64_t burst;  /* packets */
    uint8_t hash_key[16];
    const pl_mem *mem;
} pl_ratelimit;

bool pl_ratelimit_init(pl_ratelimit *rl, const pl_mem *mem, const pl_rng *rng, uint32_t size, uint64_t rate,
                       uint64_t burst);
void pl_ratelimit_free(pl_ratelimit *rl);
/* Takes one token for src; false when its bucket is empty. */
bool pl_ratelimit_allow(pl_ratelimit *rl, const pl_addr *src, pl_time now);

#endif
