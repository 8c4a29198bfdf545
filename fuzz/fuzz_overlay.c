/*
 * fuzz_overlay.c - hostile overlay messages into a supernode and a node.
 *
 * The fixture is a supernode core (with its directory) that knows one other
 * supernode and has one client attached through the real challenge and
 * proof, and a node core attached to that supernode. The first input byte
 * picks who speaks: the attached client, the other supernode, a stranger,
 * or the supernode speaking to the node; the rest is the message. Besides
 * crashes, it checks that every directory message that decodes encodes back
 * to the same bytes, and that the supernode never answers a stranger with
 * more than it was sent (no amplification).
 *
 * Set PARLEY_FUZZ_WRITE_SEEDS=dir to write one seed per message type.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"
#include "overlay.h"
#include "record.h"
#include "supernode.h"

#define T0 ((pl_time)1800000000 * PL_SEC)

typedef struct party {
    pl_identity id;
    uint8_t cert[PL_CERT_MAX_SIZE];
    size_t cert_len;
    pl_cert c;
    pl_addr addr;
} party;

typedef struct fixture {
    pl_rng_seeded rng;
    uint8_t ca_pk[32], ca_sk[64];
    party sn, other, alice, stranger;
    pl_super *super;
    pl_node *node;
    size_t sent_bytes;       /* by the supernode, for the current input */
    uint8_t last[PL_SEC_MAX_PAYLOAD];
    size_t last_len;
    uint8_t record[PL_RECORD_MAX_SIZE];
    size_t record_len;
} fixture;

static fixture fx;

static void make_party(party *p, const char *name, int host, uint64_t serial)
{
    uint8_t seed[32] = {(uint8_t)host, 7};
    pl_identity_from_seed(&p->id, seed);
    memset(&p->c, 0, sizeof p->c);
    p->c.version = PL_CERT_VERSION;
    p->c.serial = serial;
    p->c.not_before = T0 / PL_SEC - 86400;
    p->c.not_after = T0 / PL_SEC + 86400 * 365;
    memcpy(p->c.sign_pk, p->id.sign_pk, 32);
    memcpy(p->c.dh_pk, p->id.dh_pk, 32);
    p->c.name_len = (uint8_t)strlen(name);
    memcpy(p->c.name, name, p->c.name_len);
    pl_cert_sign(&p->c, fx.ca_pk, fx.ca_sk);
    pl_cert_encode(&p->c, p->cert, sizeof p->cert, &p->cert_len);
    char text[32];
    snprintf(text, sizeof text, "192.0.2.%d:7400", host);
    pl_addr_parse(&p->addr, text, 0);
}

static bool super_send(void *ctx, const uint8_t pk[32], const pl_addr *addr, const uint8_t *msg, size_t len,
                       pl_time now)
{
    (void)ctx;
    (void)pk;
    (void)addr;
    (void)now;
    fx.sent_bytes += len;
    if (len <= sizeof fx.last) {
        memcpy(fx.last, msg, len);
        fx.last_len = len;
    }
    return true;
}

static bool node_send(void *ctx, const uint8_t pk[32], const pl_addr *addr, const uint8_t *msg, size_t len,
                      pl_time now)
{
    (void)ctx;
    (void)pk;
    (void)addr;
    (void)now;
    (void)msg;
    (void)len;
    return true;
}

static void setup(void)
{
    static bool done;
    if (done) return;
    done = true;
    if (!pl_init()) abort();
    pl_rng_seeded_init(&fx.rng, 1);
    uint8_t seed[32] = {9};
    crypto_sign_seed_keypair(fx.ca_pk, fx.ca_sk, seed);
    make_party(&fx.sn, "supernode", 1, 1);
    make_party(&fx.other, "other", 2, 2);
    make_party(&fx.alice, "alice", 3, 3);
    make_party(&fx.stranger, "stranger", 4, 4);
    pl_super_config sc = {.identity = &fx.sn.id, .self_addr = fx.sn.addr, .rng = &fx.rng.rng, .max_clients = 64};
    memcpy(sc.ca_pk, fx.ca_pk, 32);
    pl_super_io sio = {NULL, super_send, NULL, NULL};
    if (pl_super_new(&fx.super, &sc, &sio)) abort();
    pl_super_member_up(fx.super, fx.other.id.sign_pk, &fx.other.addr, T0);
    /* Alice attaches for real: ATTACH, then the proof of the nonce. */
    uint8_t msg[256];
    pl_ovl_attach hello = {.version = PL_OVL_VERSION};
    size_t n = pl_ovl_encode_attach(msg, sizeof msg, &hello);
    pl_super_message(fx.super, fx.alice.id.sign_pk, &fx.alice.c, &fx.alice.addr, msg, n, T0);
    uint8_t nonce[PL_OVL_NONCE_SIZE], proof[PL_OVL_PROOF_SIZE], sig[64];
    if (pl_ovl_decode_challenge(nonce, fx.last, fx.last_len)) abort();
    pl_ovl_proof_bytes(proof, fx.sn.id.sign_pk, fx.alice.id.sign_pk, nonce);
    crypto_sign_detached(sig, NULL, proof, sizeof proof, fx.alice.id.sign_sk);
    n = pl_ovl_encode_proof(msg, sizeof msg, sig);
    pl_super_message(fx.super, fx.alice.id.sign_pk, &fx.alice.c, &fx.alice.addr, msg, n, T0);
    if (pl_super_get_stats(fx.super).clients != 1) abort();
    /* A node attached to the supernode, to be fed the supernode's side. */
    pl_node_config nc = {.identity = &fx.alice.id, .cert = fx.alice.cert, .cert_len = fx.alice.cert_len,
                         .rng = &fx.rng.rng, .bootstrap = &(pl_ovl_peer){{0}, {0}}, .n_bootstrap = 0};
    memcpy(nc.ca_pk, fx.ca_pk, 32);
    pl_ovl_peer boot;
    memcpy(boot.pk, fx.sn.id.sign_pk, 32);
    boot.addr = fx.sn.addr;
    nc.bootstrap = &boot;
    nc.n_bootstrap = 1;
    pl_node_io nio = {NULL, node_send, NULL, NULL};
    if (pl_node_new(&fx.node, &nc, &nio)) abort();
    pl_node_start(fx.node, T0);
    pl_ovl_attach_ok ok = {.keepalive_s = 30, .observed = fx.alice.addr};
    n = pl_ovl_encode_attach_ok(msg, sizeof msg, &ok);
    pl_node_message(fx.node, fx.sn.id.sign_pk, &fx.sn.addr, msg, n, T0);
    /* A valid record of alice's, for seeds. */
    pl_record r;
    memset(&r, 0, sizeof r);
    r.version = PL_RECORD_VERSION;
    r.n_supernodes = 1;
    memcpy(r.supernodes[0].pk, fx.sn.id.sign_pk, 32);
    r.supernodes[0].addr = fx.sn.addr;
    r.sequence = 1;
    r.issued_at = T0 / PL_SEC;
    r.expires_at = T0 / PL_SEC + 600;
    if (pl_record_sign(&r, &fx.alice.id, fx.alice.cert, fx.alice.cert_len) ||
        pl_record_encode(&r, fx.record, sizeof fx.record, &fx.record_len))
        abort();
}

static void check_dir_canonical(const uint8_t *msg, size_t len)
{
    pl_ovl_dir m;
    if (pl_ovl_decode_dir(&m, msg, len) == PL_OVL_OK) {
        uint8_t again[PL_SEC_MAX_PAYLOAD + 64];
        size_t n = pl_ovl_encode_dir(again, sizeof again, &m);
        if (n != len || memcmp(again, msg, len) != 0) abort();
    }
    pl_ovl_names names;
    if (pl_ovl_decode_names(&names, msg, len) == PL_OVL_OK) {
        uint8_t again[2048];
        size_t n = pl_ovl_encode_names(again, sizeof again, &names);
        if (n != len || memcmp(again, msg, len) != 0) abort();
    }
}

static void write_seed(const char *dir, const char *name, uint8_t who, const uint8_t *msg, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fputc(who, f) == EOF || fwrite(msg, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static void write_seeds(const char *dir)
{
    uint8_t m[1024];
    pl_ovl_dir d;
    size_t n;
    pl_ovl_attach hello = {.version = PL_OVL_VERSION, .flags = 1};
    write_seed(dir, "attach", 2, m, pl_ovl_encode_attach(m, sizeof m, &hello));
    write_seed(dir, "keepalive", 0, m, pl_ovl_encode_keepalive(m, sizeof m, 7));
    write_seed(dir, "detach_stranger", 2, m, pl_ovl_encode_detach(m, sizeof m));
    d = (pl_ovl_dir){.type = PL_OVL_PUBLISH, .req = 1, .record = fx.record, .record_len = fx.record_len};
    write_seed(dir, "publish", 0, m, pl_ovl_encode_dir(m, sizeof m, &d));
    d = (pl_ovl_dir){.type = PL_OVL_STORE, .req = 2, .record = fx.record, .record_len = fx.record_len};
    write_seed(dir, "store", 1, m, pl_ovl_encode_dir(m, sizeof m, &d));
    d = (pl_ovl_dir){.type = PL_OVL_LOOKUP, .req = 3, .index = 1};
    strcpy(d.name, "alice");
    write_seed(dir, "lookup", 0, m, pl_ovl_encode_dir(m, sizeof m, &d));
    d.type = PL_OVL_FETCH;
    write_seed(dir, "fetch", 1, m, pl_ovl_encode_dir(m, sizeof m, &d));
    d = (pl_ovl_dir){.type = PL_OVL_FETCH_REPLY, .req = 65536, .status = 0, .record = fx.record,
                     .record_len = fx.record_len};
    write_seed(dir, "fetch_reply", 1, m, pl_ovl_encode_dir(m, sizeof m, &d));
    d = (pl_ovl_dir){.type = PL_OVL_WATCH};
    strcpy(d.name, "bob");
    write_seed(dir, "watch", 1, m, pl_ovl_encode_dir(m, sizeof m, &d));
    d = (pl_ovl_dir){.type = PL_OVL_NOTIFY, .record = fx.record, .record_len = fx.record_len};
    strcpy(d.name, "alice");
    write_seed(dir, "notify", 1, m, pl_ovl_encode_dir(m, sizeof m, &d));
    d = (pl_ovl_dir){.type = PL_OVL_OFFLINE, .seq = 1};
    strcpy(d.name, "alice");
    write_seed(dir, "offline", 1, m, pl_ovl_encode_dir(m, sizeof m, &d));
    pl_ovl_names names = {.type = PL_OVL_SUBSCRIBE, .n = 2};
    strcpy(names.names[0], "bob");
    strcpy(names.names[1], "carol");
    write_seed(dir, "subscribe", 0, m, pl_ovl_encode_names(m, sizeof m, &names));
    d = (pl_ovl_dir){.type = PL_OVL_PRESENCE, .record = fx.record, .record_len = fx.record_len};
    strcpy(d.name, "alice");
    write_seed(dir, "presence_to_node", 3, m, pl_ovl_encode_dir(m, sizeof m, &d));
    d = (pl_ovl_dir){.type = PL_OVL_LOOKUP_REPLY, .req = 1, .count = 3, .record = fx.record,
                     .record_len = fx.record_len};
    write_seed(dir, "lookup_reply_to_node", 3, m, pl_ovl_encode_dir(m, sizeof m, &d));
    pl_ovl_redirect red = {.n = 1};
    memcpy(red.to[0].pk, fx.other.id.sign_pk, 32);
    red.to[0].addr = fx.other.addr;
    n = pl_ovl_encode_redirect(m, sizeof m, &red);
    write_seed(dir, "redirect_to_node", 3, m, n);
    uint8_t seen_addr_ack[32];
    write_seed(dir, "keepalive_ack_to_node", 3, seen_addr_ack,
               pl_ovl_encode_keepalive_ack(seen_addr_ack, sizeof seen_addr_ack, 1, &fx.alice.addr));
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setup();
    const char *dir = getenv("PARLEY_FUZZ_WRITE_SEEDS");
    if (dir) {
        write_seeds(dir);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    if (size < 1) return 0;
    const uint8_t *msg = data + 1;
    size_t len = size - 1;
    /* Nothing longer fits in a session's payload. */
    if (len > PL_SEC_MAX_PAYLOAD) return 0;
    /* Time moves with the input count so that timers and expiry run too. */
    static pl_time now = T0;
    now += 10 * PL_MSEC;
    check_dir_canonical(msg, len);
    fx.sent_bytes = 0;
    switch (data[0] & 3) {
    case 0: pl_super_message(fx.super, fx.alice.id.sign_pk, &fx.alice.c, &fx.alice.addr, msg, len, now); break;
    case 1: pl_super_message(fx.super, fx.other.id.sign_pk, &fx.other.c, &fx.other.addr, msg, len, now); break;
    case 2:
        pl_super_message(fx.super, fx.stranger.id.sign_pk, &fx.stranger.c, &fx.stranger.addr, msg, len, now);
        /* A stranger gets at most a small answer (a challenge or refusal),
         * never more than a small fixed size. */
        if (fx.sent_bytes > 16 + 1 + 2 + 1 + PL_OVL_MAX_PEERS * 51) abort();
        break;
    case 3: pl_node_message(fx.node, fx.sn.id.sign_pk, &fx.sn.addr, msg, len, now); break;
    }
    pl_super_tick(fx.super, now);
    pl_node_tick(fx.node, now);
    return 0;
}
