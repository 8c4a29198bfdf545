/* sigcache.c - a memoising Ed25519 verifier for simulations; see sigcache.h. */
#include "sigcache.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    uint8_t key[16]; /* BLAKE2b-128(pk || sig || msg); all zero: empty */
    uint8_t used, good;
    uint8_t pad[6];
} slot;

struct pl_sigcache {
    slot *slots;
    uint64_t mask;
    pl_sigcache_stats st;
};

pl_sigcache *pl_sigcache_new(unsigned slots_log2)
{
    if (slots_log2 < 4 || slots_log2 > 28) return NULL;
    pl_sigcache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->slots = calloc((size_t)1 << slots_log2, sizeof *c->slots);
    if (!c->slots) {
        free(c);
        return NULL;
    }
    c->mask = ((uint64_t)1 << slots_log2) - 1;
    return c;
}

void pl_sigcache_free(pl_sigcache *c)
{
    if (!c) return;
    free(c->slots);
    free(c);
}

bool pl_sigcache_verify(void *ctx, const uint8_t sig[64], const uint8_t *msg, size_t len, const uint8_t pk[32])
{
    pl_sigcache *c = ctx;
    uint8_t key[16];
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, sizeof key);
    crypto_generichash_update(&h, pk, 32);
    crypto_generichash_update(&h, sig, 64);
    crypto_generichash_update(&h, msg, len);
    crypto_generichash_final(&h, key, sizeof key);
    uint64_t idx;
    memcpy(&idx, key, sizeof idx);
    slot *s = &c->slots[idx & c->mask];
    if (s->used && memcmp(s->key, key, sizeof key) == 0) {
        c->st.hits++;
        return s->good;
    }
    c->st.misses++;
    bool good = crypto_sign_verify_detached(sig, msg, len, pk) == 0;
    memcpy(s->key, key, sizeof key);
    s->used = 1;
    s->good = good;
    return good;
}

pl_sigcache_stats pl_sigcache_get_stats(const pl_sigcache *c) { return c->st; }
