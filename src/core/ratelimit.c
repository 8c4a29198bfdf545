/* ratelimit.c - per-source token buckets; see ratelimit.h. */
#include "ratelimit.h"

#include <sodium.h>
#include <string.h>

#define PROBE_LIMIT 8

bool pl_ratelimit_init(pl_ratelimit *rl, const pl_mem *mem, const pl_rng *rng, uint32_t size, uint64_t rate,
                       uint64_t burst)
{
    memset(rl, 0, sizeof *rl);
    uint32_t n = 16;
    while (n < size && n < (1u << 24)) n <<= 1;
    rl->mem = mem ? mem : pl_mem_system();
    rl->table = rl->mem->calloc(rl->mem->ctx, n, sizeof *rl->table);
    if (!rl->table) return false;
    rl->size = n;
    rl->rate = rate;
    rl->burst = burst;
    rng->fill(rng->ctx, rl->hash_key, sizeof rl->hash_key);
    return true;
}

void pl_ratelimit_free(pl_ratelimit *rl)
{
    if (rl->table) rl->mem->free(rl->mem->ctx, rl->table);
    rl->table = NULL;
}

bool pl_ratelimit_allow(pl_ratelimit *rl, const pl_addr *src, pl_time now)
{
    uint64_t hi = 0, lo = 0;
    if (src->family == PL_AF_INET4) {
        hi = 4;
        memcpy(&lo, src->ip, 4);
    } else {
        hi = 6;
        memcpy(&lo, src->ip, 8); /* the /64 */
    }
    uint8_t keybytes[16], h[8];
    memcpy(keybytes, &hi, 8);
    memcpy(keybytes + 8, &lo, 8);
    crypto_shorthash(h, keybytes, sizeof keybytes, rl->hash_key);
    uint64_t hv;
    memcpy(&hv, h, 8);

    /* Open addressing over a short probe run; the stalest entry in the run
     * is replaced when the source is new and no slot is free. */
    pl_ratelimit_entry *victim = NULL;
    for (uint32_t i = 0; i < PROBE_LIMIT; i++) {
        pl_ratelimit_entry *e = &rl->table[(hv + i) & (rl->size - 1)];
        if (e->key_hi == hi && e->key_lo == lo) {
            uint64_t elapsed = now > e->last ? now - e->last : 0;
            uint64_t cap = rl->burst * PL_SEC;
            /* elapsed * rate can overflow only after ~centuries of idleness;
             * clamp the elapsed time to the time a full refill takes. */
            if (elapsed > cap) elapsed = cap;
            e->tokens += elapsed * rl->rate;
            if (e->tokens > cap) e->tokens = cap;
            e->last = now;
            if (e->tokens < PL_SEC) return false;
            e->tokens -= PL_SEC;
            return true;
        }
        if (e->key_hi == 0 && e->key_lo == 0) {
            /* Entries are never removed, so the source cannot be further on. */
            victim = e;
            break;
        }
        if (!victim || e->last < victim->last) victim = e;
    }
    victim->key_hi = hi;
    victim->key_lo = lo;
    victim->last = now;
    victim->tokens = (rl->burst - 1) * PL_SEC;
    return true;
}
