/*
 * fuzz_members.c - hostile membership messages into pl_members_receive.
 *
 * Each input is a sequence of records, fed to a fresh instance that already
 * knows a few members (three verified by their signed claims, two seeded
 * unverified), has a join pull in flight and a probe out:
 *
 *   u8  sender   low 3 bits: which of 8 fixed identities sent it (0 is the
 *                instance itself); bit 3: patch the live sync request id
 *                (sync responses) or probe sequence number (acks, nacks)
 *                into bytes 1..4, so that answers reach the deeper paths
 *   u8  step     virtual time advanced before the message, in 50 ms
 *   u16 len      big-endian, then len bytes of message
 *
 * After every message the instance ticks, and these must hold: the table
 * never exceeds max_members, every entry is well formed (state in range,
 * incarnation 0 exactly when unverified), the gossip queue never holds
 * more updates than members, memory stays under a fixed bound, and every
 * message the instance sends is within the size cap and type range.
 *
 * Set PARLEY_FUZZ_WRITE_SEEDS=dir to write one seed per message type (with
 * valid signed claims where a type carries them) and exit.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "members.h"
#include "sigcache.h"
#include "wire.h"

#define T0 ((pl_time)1800000000 * PL_SEC)
#define IDS 8
#define MAX_MEMBERS 48

static pl_identity ids[IDS];
static pl_addr addrs[IDS];
static uint8_t claim_sig[IDS][64]; /* each identity's alive claim at incarnation 1 */
static pl_sigcache *cache;

typedef struct harness {
    uint32_t last_req_id, last_ping_seq;
    bool have_req, have_ping;
} harness;

static void on_send(void *ctx, const uint8_t to_pk[32], const pl_addr *to, const uint8_t *msg, size_t len)
{
    harness *h = ctx;
    (void)to_pk;
    (void)to;
    if (len < 1 || len > PL_MEMBERS_MAX_MESSAGE || msg[0] < PL_MEMBERS_MSG_MIN || msg[0] > PL_MEMBERS_MSG_MAX) abort();
    if (msg[0] == PL_MEMBERS_MSG_SYNC_REQ && len >= 5) {
        h->last_req_id = pl_get_u32be(msg + 1);
        h->have_req = true;
    }
    if (msg[0] == PL_MEMBERS_MSG_PING && len >= 5) {
        h->last_ping_seq = pl_get_u32be(msg + 1);
        h->have_ping = true;
    }
}

static void on_event(void *ctx, const pl_members_event *ev)
{
    (void)ctx;
    if (ev->type < PL_MEMBERS_EV_UP || ev->type > PL_MEMBERS_EV_SYNCED || !ev->info) abort();
}

/* A gossip message carrying the alive claims of identities [from, to). */
static size_t gossip_claims(uint8_t *buf, size_t cap, int from, int to)
{
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_MEMBERS_MSG_GOSSIP);
    pl_write_u8(&w, (uint8_t)(to - from));
    for (int i = from; i < to; i++) {
        pl_write_u8(&w, PL_MEMBER_ALIVE);
        pl_write_bytes(&w, ids[i].sign_pk, 32);
        pl_write_u32(&w, 1);
        pl_write_addr(&w, &addrs[i]);
        pl_write_bytes(&w, claim_sig[i], 64);
    }
    return w.err ? 0 : w.off;
}

static pl_members *setup(harness *h, pl_rng_seeded *rng)
{
    memset(h, 0, sizeof *h);
    pl_rng_seeded_init(rng, 7);
    pl_members_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.identity = &ids[0];
    cfg.addr = addrs[0];
    cfg.rng = &rng->rng;
    cfg.max_members = MAX_MEMBERS;
    cfg.verify = pl_sigcache_verify;
    cfg.verify_ctx = cache;
    pl_members_io io = {h, on_send, on_event};
    pl_members *m = NULL;
    if (pl_members_new(&m, &cfg, &io, T0) != PL_MEMBERS_OK) abort();
    uint8_t buf[PL_MEMBERS_MAX_MESSAGE];
    size_t len = gossip_claims(buf, sizeof buf, 1, 4);
    pl_members_receive(m, ids[1].sign_pk, &addrs[1], buf, len, T0);
    for (int i = 4; i < 6; i++)
        if (pl_members_add_known(m, ids[i].sign_pk, &addrs[i], T0) != PL_MEMBERS_OK) abort();
    /* Identity 3 stands accused by identity 2. */
    pl_writer w = pl_writer_make(buf, sizeof buf);
    pl_write_u8(&w, PL_MEMBERS_MSG_GOSSIP);
    pl_write_u8(&w, 1);
    pl_write_u8(&w, PL_MEMBER_SUSPECT);
    pl_write_bytes(&w, ids[3].sign_pk, 32);
    pl_write_u32(&w, 1);
    pl_write_bytes(&w, ids[2].sign_pk, 32);
    pl_members_receive(m, ids[2].sign_pk, &addrs[2], buf, w.off, T0);
    if (pl_members_count(m) != 6) abort();
    if (pl_members_join(m, T0) != PL_MEMBERS_OK) abort();
    pl_members_tick(m, T0 + 2 * PL_SEC);
    return m;
}

static void check(const pl_members *m)
{
    uint32_t count = pl_members_count(m), seen = 0, cursor = 0, live = 0;
    if (count > MAX_MEMBERS || count == 0) abort();
    pl_member_info info;
    while (pl_members_next(m, &cursor, &info)) {
        seen++;
        if (info.state < PL_MEMBER_ALIVE || info.state > PL_MEMBER_LEFT) abort();
        if (info.verified != (info.incarnation != 0)) abort();
        if (info.state == PL_MEMBER_ALIVE || info.state == PL_MEMBER_SUSPECT) live++;
        if (info.addr.family != PL_AF_INET4 && info.addr.family != PL_AF_INET6) abort();
    }
    if (seen != count || live != pl_members_alive_count(m)) abort();
    if (pl_members_pending_updates(m) > count) abort();
    /* Tables never grow past max_members: a fixed bound on memory. */
    if (pl_members_memory(m) > 64 * 1024) abort();
}

static void write_seed(const char *dir, const char *name, const uint8_t *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

/* Wraps one message into a record. */
static size_t record(uint8_t *out, uint8_t sender, uint8_t step, const uint8_t *msg, size_t len)
{
    out[0] = sender;
    out[1] = step;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    memcpy(out + 4, msg, len);
    return len + 4;
}

static void write_seeds(const char *dir)
{
    uint8_t msg[PL_MEMBERS_MAX_MESSAGE], rec[PL_MEMBERS_MAX_MESSAGE + 4];
    pl_writer w;
    size_t len;
    /* ping carrying identity 6's claim (a newcomer) */
    w = pl_writer_make(msg, sizeof msg);
    pl_write_u8(&w, PL_MEMBERS_MSG_PING);
    pl_write_u32(&w, 77);
    pl_write_u8(&w, 1);
    pl_write_u8(&w, PL_MEMBER_ALIVE);
    pl_write_bytes(&w, ids[6].sign_pk, 32);
    pl_write_u32(&w, 1);
    pl_write_addr(&w, &addrs[6]);
    pl_write_bytes(&w, claim_sig[6], 64);
    write_seed(dir, "ping_alive", rec, record(rec, 6, 1, msg, w.off));
    /* ack of the probe (patched), with a dead verdict */
    w = pl_writer_make(msg, sizeof msg);
    pl_write_u8(&w, PL_MEMBERS_MSG_ACK);
    pl_write_u32(&w, 0);
    pl_write_u8(&w, 1);
    pl_write_u8(&w, PL_MEMBER_DEAD);
    pl_write_bytes(&w, ids[2].sign_pk, 32);
    pl_write_u32(&w, 1);
    write_seed(dir, "ack_dead", rec, record(rec, 8 | 1, 1, msg, w.off));
    /* nack of the probe (patched) */
    w = pl_writer_make(msg, sizeof msg);
    pl_write_u8(&w, PL_MEMBERS_MSG_NACK);
    pl_write_u32(&w, 0);
    pl_write_u8(&w, 0);
    write_seed(dir, "nack", rec, record(rec, 8 | 2, 1, msg, w.off));
    /* ping-req for identity 4, with a suspicion of identity 1 */
    w = pl_writer_make(msg, sizeof msg);
    pl_write_u8(&w, PL_MEMBERS_MSG_PING_REQ);
    pl_write_u32(&w, 99);
    pl_write_bytes(&w, ids[4].sign_pk, 32);
    pl_write_addr(&w, &addrs[4]);
    pl_write_u8(&w, 1);
    pl_write_u8(&w, PL_MEMBER_SUSPECT);
    pl_write_bytes(&w, ids[1].sign_pk, 32);
    pl_write_u32(&w, 1);
    pl_write_bytes(&w, ids[2].sign_pk, 32);
    write_seed(dir, "ping_req_suspect", rec, record(rec, 2, 0, msg, w.off));
    /* sync request for every bucket */
    w = pl_writer_make(msg, sizeof msg);
    pl_write_u8(&w, PL_MEMBERS_MSG_SYNC_REQ);
    pl_write_u32(&w, 5);
    pl_write_u32(&w, 0);
    for (int i = 0; i < 32; i++) pl_write_u8(&w, 0xff);
    pl_write_u8(&w, 0);
    write_seed(dir, "sync_req", rec, record(rec, 7, 0, msg, w.off));
    /* sync response (patched id): alive, dead, left and an unverified death */
    w = pl_writer_make(msg, sizeof msg);
    pl_write_u8(&w, PL_MEMBERS_MSG_SYNC_RESP);
    pl_write_u32(&w, 0);
    pl_write_u32(&w, 40);
    pl_write_u32(&w, 9);
    pl_write_u8(&w, 3);
    pl_write_u8(&w, PL_MEMBER_ALIVE);
    pl_write_bytes(&w, ids[6].sign_pk, 32);
    pl_write_u32(&w, 1);
    pl_write_addr(&w, &addrs[6]);
    pl_write_bytes(&w, claim_sig[6], 64);
    pl_write_u8(&w, PL_MEMBER_DEAD);
    pl_write_bytes(&w, ids[7].sign_pk, 32);
    pl_write_u32(&w, 1);
    pl_write_addr(&w, &addrs[7]);
    pl_write_bytes(&w, claim_sig[7], 64);
    pl_write_u8(&w, 5); /* dead, unverified */
    pl_write_bytes(&w, ids[4].sign_pk, 32);
    pl_write_u32(&w, 0);
    len = w.off;
    for (int s = 1; s < IDS; s++) {
        char name[32];
        snprintf(name, sizeof name, "sync_resp_from_%d", s);
        write_seed(dir, name, rec, record(rec, (uint8_t)(8 | s), 1, msg, len));
    }
    /* digest request: all zero digests */
    w = pl_writer_make(msg, sizeof msg);
    pl_write_u8(&w, PL_MEMBERS_MSG_DIGEST);
    pl_write_u8(&w, 0);
    for (int i = 0; i < PL_MEMBERS_BUCKETS; i++) pl_write_u32(&w, 0);
    pl_write_u8(&w, 0);
    write_seed(dir, "digest", rec, record(rec, 3, 20, msg, w.off));
    /* gossip: the three claims, then a left claim signed by identity 2 */
    len = gossip_claims(msg, sizeof msg, 5, 8);
    write_seed(dir, "gossip_claims", rec, record(rec, 5, 1, msg, len));
    uint8_t claim[PL_MEMBERS_CLAIM_MAX], sig[64];
    size_t clen = pl_members_claim_bytes(claim, PL_MEMBER_LEFT, ids[2].sign_pk, &addrs[2], 1);
    crypto_sign_detached(sig, NULL, claim, clen, ids[2].sign_sk);
    w = pl_writer_make(msg, sizeof msg);
    pl_write_u8(&w, PL_MEMBERS_MSG_GOSSIP);
    pl_write_u8(&w, 1);
    pl_write_u8(&w, PL_MEMBER_LEFT);
    pl_write_bytes(&w, ids[2].sign_pk, 32);
    pl_write_u32(&w, 1);
    pl_write_addr(&w, &addrs[2]);
    pl_write_bytes(&w, sig, 64);
    write_seed(dir, "gossip_left", rec, record(rec, 2, 1, msg, w.off));
    /* an accusation of the instance itself: it must refute */
    w = pl_writer_make(msg, sizeof msg);
    pl_write_u8(&w, PL_MEMBERS_MSG_GOSSIP);
    pl_write_u8(&w, 1);
    pl_write_u8(&w, PL_MEMBER_DEAD);
    pl_write_bytes(&w, ids[0].sign_pk, 32);
    pl_write_u32(&w, 1);
    write_seed(dir, "gossip_dead_self", rec, record(rec, 1, 1, msg, w.off));
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!pl_init()) abort();
    cache = pl_sigcache_new(12);
    for (int i = 0; i < IDS; i++) {
        uint8_t seed[32] = {(uint8_t)(0x40 + i)};
        crypto_sign_seed_keypair(ids[i].sign_pk, ids[i].sign_sk, seed);
        memset(&addrs[i], 0, sizeof addrs[i]);
        if (i % 2) {
            addrs[i].family = PL_AF_INET6;
            addrs[i].ip[0] = 0x20;
            addrs[i].ip[1] = 0x01;
            addrs[i].ip[2] = 0x0d;
            addrs[i].ip[3] = 0xb8;
            addrs[i].ip[15] = (uint8_t)i;
        } else {
            addrs[i].family = PL_AF_INET4;
            addrs[i].ip[0] = 192;
            addrs[i].ip[2] = 2;
            addrs[i].ip[3] = (uint8_t)(10 + i);
        }
        addrs[i].port = 7400;
        uint8_t claim[PL_MEMBERS_CLAIM_MAX];
        size_t len = pl_members_claim_bytes(claim, PL_MEMBER_ALIVE, ids[i].sign_pk, &addrs[i], 1);
        crypto_sign_detached(claim_sig[i], NULL, claim, len, ids[i].sign_sk);
    }
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
    harness h;
    pl_rng_seeded rng;
    pl_members *m = setup(&h, &rng);
    pl_time now = T0 + 2 * PL_SEC;
    pl_reader r = pl_reader_make(data, size);
    uint8_t msg[4096];
    while (pl_reader_left(&r) >= 4) {
        uint8_t sender = pl_read_u8(&r);
        uint8_t step = pl_read_u8(&r);
        uint16_t len = pl_read_u16(&r);
        if (len > pl_reader_left(&r)) len = (uint16_t)pl_reader_left(&r);
        pl_read_bytes(&r, msg, len);
        now += (pl_time)step * 50 * PL_MSEC;
        if ((sender & 8) && len >= 5) {
            if (msg[0] == PL_MEMBERS_MSG_SYNC_RESP && h.have_req) pl_put_u32be(msg + 1, h.last_req_id);
            if ((msg[0] == PL_MEMBERS_MSG_ACK || msg[0] == PL_MEMBERS_MSG_NACK) && h.have_ping)
                pl_put_u32be(msg + 1, h.last_ping_seq);
        }
        int who = sender & 7;
        pl_members_receive(m, ids[who].sign_pk, &addrs[who], msg, len, now);
        pl_members_tick(m, now);
        check(m);
    }
    /* Let every timer run out: suspicions expire, pulls give up. */
    for (int i = 0; i < 40; i++) {
        now += 3 * PL_SEC;
        pl_members_tick(m, now);
        if (pl_members_next_timeout(m) < now) abort();
    }
    check(m);
    pl_members_free(m);
    return 0;
}
