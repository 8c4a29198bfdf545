/*
 * fuzz_ca_request.c - hostile bytes into the signing authority's core.
 *
 * The first byte picks the source address (so the rate limiter, the token
 * binding and both address families are exercised), the next two the clock
 * offset; the rest is the request. The server runs on an in-memory store
 * that already holds an account, so renew/revoke/taken paths are reachable.
 * Besides crashes, it checks the anti-amplification rule on every input.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "ca_memstore.h"
#include "ca_server.h"

typedef struct fixture {
    pl_ca_memstore ms;
    pl_ca_server *srv;
    pl_rng_seeded rng;
} fixture;

static fixture *setup(void)
{
    /* Built once per process: the fuzzer calls us millions of times. */
    static fixture *f;
    if (f) return f;
    if (!pl_init()) abort();
    f = calloc(1, sizeof *f);
    pl_rng_seeded_init(&f->rng, 1);
    pl_ca_memstore_init(&f->ms, pl_mem_system(), 4096);
    pl_ca_server_config cfg;
    pl_ca_server_config_default(&cfg);
    uint8_t seed[32] = {1};
    crypto_sign_seed_keypair(cfg.ca_pk, cfg.ca_sk, seed);
    /* A deep bucket: an empty one drops requests silently, and the fuzzer
     * should spend its time in the parsers and handlers (test_ca.c covers
     * the limiter). A small table still exercises eviction. */
    cfg.burst = 1000000;
    cfg.rate_milli = 1000000000;
    cfg.rate_table_size = 64;
    f->srv = pl_ca_server_new(&cfg, &f->ms.store, pl_mem_system(), &f->rng.rng, NULL);
    if (!f->srv) abort();
    /* One account, so that names collide and renew/revoke find something. */
    pl_ca_account acc;
    memset(&acc, 0, sizeof acc);
    strcpy(acc.name, "alice");
    uint8_t useed[32] = {2}, usk[64];
    crypto_sign_seed_keypair(acc.sign_pk, usk, useed);
    acc.serial = 1;
    acc.cert_len = 10;
    f->ms.store.insert(f->ms.store.ctx, &acc);
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fixture *f = setup();
    if (size < 3) return 0;
    pl_addr from = {.family = (data[0] & 1) ? PL_AF_INET6 : PL_AF_INET4, .port = 4000};
    from.ip[0] = 192;
    from.ip[3] = data[0] >> 1;
    pl_time now = (pl_time)1800000000 * PL_SEC + (pl_time)((data[1] << 8) | data[2]) * PL_MSEC * 10;
    static uint8_t out[PL_CA_MAX_MESSAGE];
    size_t n = pl_ca_server_handle(f->srv, now, &from, data + 3, size - 3, out, sizeof out, NULL);
    if (n > size - 3) abort(); /* the anti-amplification rule */
    if (n) {
        pl_ca_msg m;
        if (pl_ca_msg_decode(&m, out, n) != PL_CA_PROTO_OK) abort(); /* we only send what we can parse */
    }
    /* Keep the store small so the run stays fast. */
    if (f->ms.count > 1000) {
        pl_ca_memstore_free(&f->ms);
        pl_ca_memstore_init(&f->ms, pl_mem_system(), 4096);
    }
    return 0;
}
