/*
 * sec_fixture.h - what fuzz_packet.c and fuzz_handshake.c share: a fixed CA,
 * fixed identities and certificates, endpoints that record what they send and
 * report, and an arena that lets a target put every endpoint back into the
 * same state before each input.
 *
 * Endpoints are expensive to bring into an interesting state (a handshake is
 * several X25519 operations and two signature checks), so a target builds
 * them once on the arena (pl_sec_config.mem), takes a snapshot of the arena's
 * allocations, and restores it before every input: each run starts from
 * byte-for-byte the same state, random generators included, so runs are
 * deterministic and fast. Allocations are separated by poisoned red zones so
 * AddressSanitizer still sees an overrun from one table into the next.
 *
 * Everything here is static inline: this is included by fuzz targets only,
 * which export nothing but the LLVMFuzzer* entry points.
 */
#ifndef PL_FUZZ_SEC_FIXTURE_H
#define PL_FUZZ_SEC_FIXTURE_H

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define FX_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define FX_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#endif
#endif
#ifndef FX_POISON
#define FX_POISON(p, n) ((void)(p), (void)(n))
#define FX_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define FX_T0 ((pl_time)1800000000 * PL_SEC)
#define FX_MAX_SENT 8

/* ---- the arena ------------------------------------------------------------ */

#define FX_ARENA_SIZE (4u << 20)
#define FX_REDZONE 64
#define FX_MAX_ALLOCS 64

typedef struct fx_alloc {
    uint8_t *p;
    size_t n;
    size_t snap_off;
} fx_alloc;

static _Alignas(64) uint8_t fx_arena[FX_ARENA_SIZE];
static size_t fx_arena_used;
static fx_alloc fx_allocs[FX_MAX_ALLOCS];
static size_t fx_nallocs, fx_snap_nallocs;
static uint8_t *fx_snap;

static inline void *fx_arena_calloc(void *ctx, size_t count, size_t size)
{
    (void)ctx;
    if (fx_arena_used == 0) FX_POISON(fx_arena, sizeof fx_arena);
    if (size && count > SIZE_MAX / size) return NULL;
    size_t n = count * size;
    size_t span = (n + 63) & ~(size_t)63;
    if (fx_nallocs == FX_MAX_ALLOCS || span + FX_REDZONE > FX_ARENA_SIZE - fx_arena_used) {
        fprintf(stderr, "fuzz fixture: arena exhausted\n");
        abort();
    }
    uint8_t *p = fx_arena + fx_arena_used;
    FX_UNPOISON(p, n);
    memset(p, 0, n);
    fx_allocs[fx_nallocs++] = (fx_alloc){p, n, 0};
    fx_arena_used += span + FX_REDZONE;
    return p;
}

static inline void fx_arena_free(void *ctx, void *ptr)
{
    /* Arena memory lives as long as the process; snapshots depend on it. */
    (void)ctx;
    (void)ptr;
}

static const pl_mem fx_arena_mem = {NULL, fx_arena_calloc, fx_arena_free};

static inline void fx_snapshot_take(void)
{
    size_t total = 0;
    for (size_t i = 0; i < fx_nallocs; i++) {
        fx_allocs[i].snap_off = total;
        total += fx_allocs[i].n;
    }
    free(fx_snap);
    fx_snap = malloc(total ? total : 1);
    if (!fx_snap) abort();
    for (size_t i = 0; i < fx_nallocs; i++) memcpy(fx_snap + fx_allocs[i].snap_off, fx_allocs[i].p, fx_allocs[i].n);
    fx_snap_nallocs = fx_nallocs;
}

static inline void fx_snapshot_restore(void)
{
    /* The endpoints allocate only when they are created: a run that made
     * the arena grow would not be undone by the restore. */
    if (fx_nallocs != fx_snap_nallocs) {
        fprintf(stderr, "fuzz fixture: allocation after the snapshot\n");
        abort();
    }
    for (size_t i = 0; i < fx_nallocs; i++) memcpy(fx_allocs[i].p, fx_snap + fx_allocs[i].snap_off, fx_allocs[i].n);
}

/* A seeded generator that lives in the arena, so the snapshot covers it. */
static inline const pl_rng *fx_rng(uint64_t seed)
{
    pl_rng_seeded *r = fx_arena_calloc(NULL, 1, sizeof *r);
    pl_rng_seeded_init(r, seed);
    return &r->rng;
}

/* ---- the CA and endpoints --------------------------------------------------- */

static uint8_t fx_ca_pk[32], fx_ca_sk[64];

typedef struct fx_node {
    pl_sec *sec;
    pl_identity id;
    uint8_t cert[PL_CERT_MAX_SIZE];
    size_t cert_len;
    pl_addr addr;
    /* What the endpoint did since the counters were last reset. */
    int established, data, failed, expired, revoked;
    int nsent;
    pl_addr sent_to[FX_MAX_SENT];
    size_t sent_len[FX_MAX_SENT];
    uint8_t sent[FX_MAX_SENT][PL_SEC_MAX_DATAGRAM];
    uint8_t data_buf[PL_SEC_MAX_DATAGRAM];
    size_t data_len;
    pl_sec_peer *last_peer;
} fx_node;

static inline void fx_on_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    fx_node *n = ctx;
    if (len > PL_SEC_MAX_DATAGRAM) {
        fprintf(stderr, "fuzz fixture: a %zu-byte datagram\n", len);
        abort();
    }
    if (n->nsent < FX_MAX_SENT) {
        n->sent_to[n->nsent] = *to;
        n->sent_len[n->nsent] = len;
        memcpy(n->sent[n->nsent], data, len);
    }
    n->nsent++;
}

static inline void fx_on_event(void *ctx, const pl_sec_event *ev)
{
    fx_node *n = ctx;
    n->last_peer = ev->peer;
    switch (ev->type) {
    case PL_SEC_EV_ESTABLISHED: n->established++; break;
    case PL_SEC_EV_DATA:
        n->data++;
        if (ev->len > sizeof n->data_buf) abort();
        memcpy(n->data_buf, ev->data, ev->len);
        n->data_len = ev->len;
        break;
    case PL_SEC_EV_FAILED: n->failed++; break;
    case PL_SEC_EV_EXPIRED: n->expired++; break;
    case PL_SEC_EV_REVOKED: n->revoked++; break;
    }
}

static inline void fx_reset_counters(fx_node *n)
{
    n->established = n->data = n->failed = n->expired = n->revoked = 0;
    n->nsent = 0;
    n->data_len = 0;
}

static inline void fx_init(void)
{
    if (!pl_init()) abort();
    uint8_t seed[32] = {0xca};
    crypto_sign_seed_keypair(fx_ca_pk, fx_ca_sk, seed);
}

/* A certificate for id from the fixture CA, valid for ten years around T0. */
static inline size_t fx_make_cert(const pl_identity *id, const char *name, uint64_t serial, uint8_t *out)
{
    pl_cert c;
    memset(&c, 0, sizeof c);
    c.version = PL_CERT_VERSION;
    c.serial = serial;
    c.not_before = FX_T0 / PL_SEC - 3600;
    c.not_after = FX_T0 / PL_SEC + 10 * 365 * 86400ull;
    memcpy(c.sign_pk, id->sign_pk, 32);
    memcpy(c.dh_pk, id->dh_pk, 32);
    c.name_len = (uint8_t)strlen(name);
    memcpy(c.name, name, c.name_len);
    pl_cert_sign(&c, fx_ca_pk, fx_ca_sk);
    size_t len = 0;
    if (pl_cert_encode(&c, out, PL_CERT_MAX_SIZE, &len) != PL_CERT_OK) abort();
    return len;
}

typedef struct fx_node_config {
    uint8_t id_seed;
    const char *name;
    uint64_t serial;
    const char *addr;
    bool accept_incoming;
    uint32_t load_threshold;
    uint64_t rng_seed;
} fx_node_config;

/* An endpoint whose every allocation and random byte is in the arena. */
static inline fx_node *fx_node_new(const fx_node_config *nc)
{
    fx_node *n = calloc(1, sizeof *n);
    if (!n) abort();
    uint8_t seed[32] = {nc->id_seed};
    if (pl_identity_from_seed(&n->id, seed) != PL_IDENTITY_OK) abort();
    n->cert_len = fx_make_cert(&n->id, nc->name, nc->serial, n->cert);
    if (!pl_addr_parse(&n->addr, nc->addr, 0)) abort();
    pl_sec_config cfg = {
        .identity = &n->id,
        .cert = n->cert,
        .cert_len = n->cert_len,
        .rng = fx_rng(nc->rng_seed),
        .mem = &fx_arena_mem,
        .max_peers = 4,
        .accept_incoming = nc->accept_incoming,
        .load_threshold = nc->load_threshold,
    };
    memcpy(cfg.ca_pk, fx_ca_pk, 32);
    pl_sec_io io = {n, fx_on_send, fx_on_event};
    if (pl_sec_new(&n->sec, &cfg, &io) != PL_SEC_OK) abort();
    return n;
}

/* Hands the one datagram `from` sent to `to`; aborts unless there was
 * exactly one. Returns nothing: the caller reads to's counters. */
static inline void fx_deliver_one(fx_node *from, fx_node *to, pl_time now)
{
    if (from->nsent != 1) {
        fprintf(stderr, "fuzz fixture: expected one datagram, have %d\n", from->nsent);
        abort();
    }
    from->nsent = 0;
    pl_sec_receive(to->sec, &from->addr, from->sent[0], from->sent_len[0], now);
}

/* The data ciphers an endpoint configured with ciphers = 0 allows. */
static inline uint8_t fx_ciphers_here(void)
{
    return (uint8_t)(PL_SEC_CIPHER_CHACHA20POLY1305 |
                     (crypto_aead_aes256gcm_is_available() ? PL_SEC_CIPHER_AES256GCM : 0));
}

/* When PARLEY_FUZZ_WRITE_SEEDS names a directory, the targets write their
 * genuine messages there as seed files (fuzz/seeds/<target>/). */
static inline void fx_write_seed(const char *name, const uint8_t *data, size_t len)
{
    const char *dir = getenv("PARLEY_FUZZ_WRITE_SEEDS");
    if (!dir) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        abort();
    }
}

/* Writes a seed made of a prefix byte and a message. */
static inline void fx_write_seed2(const char *name, uint8_t prefix, const uint8_t *data, size_t len)
{
    uint8_t buf[1 + 4096];
    if (len > 4096) abort();
    buf[0] = prefix;
    memcpy(buf + 1, data, len);
    fx_write_seed(name, buf, len + 1);
}

#endif
