/*
 * sigcache.h - a memoising Ed25519 verifier for simulations.
 *
 * When thousands of protocol instances share one simulator process, every
 * instance verifies every signed claim it hears, and verification (about
 * 0.1 ms here) dominates the run. Verification is a pure function of
 * (key, message, signature), so its answers can be shared: the cache keys
 * each answer by a BLAKE2b-128 digest of all three and computes only what it
 * has not seen. The answers are exactly those of crypto_sign_verify_detached;
 * only the time changes. Never use it where a real process verifies: there
 * is no reason to, and a shared cache is shared state.
 *
 * The table is direct-mapped and fixed in size: a collision evicts, so
 * memory stays bounded and the worst case is a repeated verification.
 */
#ifndef PL_SIGCACHE_H
#define PL_SIGCACHE_H

#include "parley.h"

typedef struct pl_sigcache pl_sigcache;

typedef struct pl_sigcache_stats {
    uint64_t hits, misses;
} pl_sigcache_stats;

/* 2^slots_log2 remembered answers (24 bytes each); slots_log2 in 4..28. */
pl_sigcache *pl_sigcache_new(unsigned slots_log2);
void pl_sigcache_free(pl_sigcache *c);
/* Matches pl_members_verify_fn; ctx is the cache. */
bool pl_sigcache_verify(void *ctx, const uint8_t sig[64], const uint8_t *msg, size_t len, const uint8_t pk[32]);
pl_sigcache_stats pl_sigcache_get_stats(const pl_sigcache *c);

#endif
