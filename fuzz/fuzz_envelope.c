/*
 * fuzz_envelope.c - hostile bytes into the envelope opener, the mailbox
 * message codec, a supernode's mailbox engine, a node's mail client and
 * the chat core.
 *
 * The first input byte picks the target; the rest is the input:
 *   0  an envelope head, peeked and opened by the fixture recipient (bob)
 *   1  a chunk, opened against a fixed voicemail head of bob's
 *   2  a mailbox message: decoded, and if it decodes, re-encoded to the
 *      same bytes (the encoding is canonical)
 *   3  a grant: the same, and verified
 *   4  a mailbox message from bob, a client attached to the supernode
 *   5  a mailbox message from another supernode (a member)
 *   6  a mailbox message from the supernode to bob's mail client
 *   7  a chat or receipt body (byte 1 picks which), sealed by alice to bob
 *      and handed to bob's chat core over the direct path; and the raw
 *      bytes as a direct chat message
 * Time moves 10 ms per input so that timers, expiry and handover run.
 *
 * Set PARLEY_FUZZ_WRITE_SEEDS=dir to write seeds for every target and exit.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "envelope.h"
#include "mailbox.h"
#include "mailclient.h"
#include "mailmsg.h"

#define T0 ((pl_time)1800000000 * PL_SEC)

typedef struct party {
    pl_identity id;
    uint8_t cert[PL_CERT_MAX_SIZE];
    size_t cert_len;
    pl_cert c;
    pl_addr addr;
} party;

static struct {
    pl_rng_seeded rng;
    uint8_t ca_pk[32], ca_sk[64];
    party alice, bob, sn, other;
    pl_mbox *mbox;
    pl_mboxc *mc;
    pl_chat *chat;
    pl_env_opened vm_head; /* a voicemail to bob, opened */
    pl_env_sealed vm_st;
    uint8_t vm_body[3000];
    uint8_t vm_head_bytes[PL_ENV_MAX_SIZE];
    size_t vm_head_len;
} fx;

static void make_party(party *p, const char *name, int host, uint64_t serial)
{
    uint8_t seed[32] = {(uint8_t)host, 9};
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

static bool mbox_send(void *ctx, const uint8_t pk[32], const pl_addr *addr, const uint8_t *msg, size_t len,
                      pl_time now)
{
    (void)ctx, (void)pk, (void)addr, (void)now;
    /* Whatever the engine sends must decode. */
    pl_mbox_msg m;
    if (pl_mbox_decode(&m, msg, len) != PL_MBOX_MSG_OK) abort();
    return true;
}

static bool node_send(void *ctx, const uint8_t *msg, size_t len, pl_time now)
{
    (void)ctx, (void)now;
    pl_mbox_msg m;
    if (pl_mbox_decode(&m, msg, len) != PL_MBOX_MSG_OK) abort();
    return true;
}

static void mail_event(void *ctx, const pl_mboxc_event *ev) { (void)ctx, (void)ev; }
static bool chat_direct(void *ctx, const pl_cert *peer, const uint8_t *msg, size_t len, pl_time now)
{
    (void)ctx, (void)peer, (void)now;
    pl_mbox_msg m;
    if (pl_mbox_decode(&m, msg, len) != PL_MBOX_MSG_OK) abort();
    return true;
}
static bool chat_deposit(void *ctx, const pl_env_sealed *st, const uint8_t *head, size_t len, pl_time now)
{
    (void)ctx, (void)st, (void)head, (void)len, (void)now;
    return true;
}
static void chat_event(void *ctx, const pl_chat_event *ev) { (void)ctx, (void)ev; }

static void setup(void)
{
    static bool done;
    if (done) return;
    done = true;
    if (!pl_init()) abort();
    pl_rng_seeded_init(&fx.rng, 3);
    uint8_t seed[32] = {11};
    crypto_sign_seed_keypair(fx.ca_pk, fx.ca_sk, seed);
    make_party(&fx.alice, "alice", 1, 1);
    make_party(&fx.bob, "bob", 2, 2);
    make_party(&fx.sn, "super-a", 3, 3);
    make_party(&fx.other, "super-b", 4, 4);
    /* The supernode, with one other member and bob attached. */
    pl_mbox_config mc = {.self_pk = fx.sn.id.sign_pk, .self_addr = fx.sn.addr, .rng = &fx.rng.rng,
                         .max_messages = 20, .max_bytes = 40000, .max_total = 4u << 20};
    memcpy(mc.ca_pk, fx.ca_pk, 32);
    pl_mbox_io mio = {NULL, mbox_send};
    if (pl_mbox_new(&fx.mbox, &mc, &mio)) abort();
    pl_mbox_member_up(fx.mbox, fx.other.id.sign_pk, &fx.other.addr, T0);
    pl_mbox_tick(fx.mbox, T0 + 2 * PL_SEC);
    /* Bob's node: mail client and chat. */
    pl_mboxc_config cc = {.identity = &fx.bob.id, .cert = fx.bob.cert, .cert_len = fx.bob.cert_len,
                          .rng = &fx.rng.rng};
    memcpy(cc.ca_pk, fx.ca_pk, 32);
    pl_mboxc_io cio = {NULL, node_send, mail_event};
    if (pl_mboxc_new(&fx.mc, &cc, &cio)) abort();
    pl_mboxc_attached(fx.mc, fx.sn.id.sign_pk, T0);
    pl_chat_config hc = {.identity = &fx.bob.id, .cert = fx.bob.cert, .cert_len = fx.bob.cert_len,
                         .rng = &fx.rng.rng, .seen_capacity = 256};
    memcpy(hc.ca_pk, fx.ca_pk, 32);
    pl_chat_io hio = {NULL, chat_direct, chat_deposit, chat_event};
    if (pl_chat_new(&fx.chat, &hc, &hio)) abort();
    /* A voicemail of three chunks from alice to bob. */
    for (size_t i = 0; i < sizeof fx.vm_body; i++) fx.vm_body[i] = (uint8_t)i;
    if (pl_env_seal(&fx.vm_st, fx.vm_head_bytes, sizeof fx.vm_head_bytes, &fx.vm_head_len, &fx.alice.id,
                    fx.alice.cert, fx.alice.cert_len, &fx.bob.c, PL_ENV_VOICEMAIL, fx.vm_body, sizeof fx.vm_body, T0,
                    &fx.rng.rng))
        abort();
    pl_env_recipient me = {&fx.bob.id, "bob"};
    if (pl_env_open(&fx.vm_head, fx.vm_head_bytes, fx.vm_head_len, &me, fx.ca_pk, NULL, T0, NULL)) abort();
}

static void check_canonical(const uint8_t *msg, size_t len)
{
    pl_mbox_msg m;
    if (pl_mbox_decode(&m, msg, len) != PL_MBOX_MSG_OK) return;
    uint8_t again[PL_MBOX_MSG_MAX];
    size_t n = pl_mbox_encode(again, sizeof again, &m);
    if (n != len || memcmp(again, msg, len) != 0) abort();
}

/* ---- seeds ------------------------------------------------------------------------------------ */

static void write_seed(const char *dir, const char *name, uint8_t target, const uint8_t *msg, size_t len)
{
    if (!len) {
        fprintf(stderr, "seed %s did not encode\n", name);
        abort();
    }
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fputc(target, f);
    fwrite(msg, 1, len, f);
    fclose(f);
}

typedef struct named {
    const char *name;
    pl_mbox_msg msg;
} named;

static void write_seeds(const char *dir)
{
    uint8_t env[PL_ENV_MAX_SIZE], m[PL_MBOX_MSG_MAX];
    size_t len;
    pl_env_sealed st;
    pl_env_seal(&st, env, sizeof env, &len, &fx.alice.id, fx.alice.cert, fx.alice.cert_len, &fx.bob.c, PL_ENV_CHAT,
                (const uint8_t *)"hello bob", 9, T0, &fx.rng.rng);
    write_seed(dir, "head_chat", 0, env, len);
    write_seed(dir, "head_voicemail", 0, fx.vm_head_bytes, fx.vm_head_len);
    uint8_t chunk[PL_ENV_MAX_SIZE];
    size_t clen;
    pl_env_seal_chunk(&fx.vm_st, 1, chunk, sizeof chunk, &clen);
    write_seed(dir, "chunk_1", 1, chunk, clen);
    pl_env_seal_chunk(&fx.vm_st, 3, chunk, sizeof chunk, &clen);
    write_seed(dir, "chunk_3", 1, chunk, clen);

    pl_mbox_grant g;
    pl_mbox_grant_sign(&g, &fx.bob.id, fx.bob.cert, fx.bob.cert_len, fx.sn.id.sign_pk, T0 / PL_SEC,
                       T0 / PL_SEC + 3600);
    write_seed(dir, "grant", 3, m, pl_mbox_grant_encode(m, sizeof m, &g));
    uint8_t id[16] = {1, 2, 3};
    pl_mbox_msg x;
    named all[16];
    size_t n = 0;
    all[n++] = (named){"deposit", {.type = PL_MBOX_DEPOSIT, .req = 1, .env = env, .env_len = len}};
    all[n++] = (named){"store", {.type = PL_MBOX_STORE, .req = 2, .env = env, .env_len = len}};
    all[n++] = (named){"store_handover",
                                {.type = PL_MBOX_STORE, .flags = PL_MBOX_F_HANDOVER, .env = chunk, .env_len = clen}};
    all[n++] = (named){"ack", {.type = PL_MBOX_ACK, .req = 3, .count = 2, .total = 3}};
    all[n++] = (named){"open", {.type = PL_MBOX_OPEN, .req = 4, .has_grant = true, .grant = g}};
    all[n++] = (named){"notice", {.type = PL_MBOX_NOTICE, .req = 4, .messages = 2, .bytes = 900}};
    all[n++] = (named){"list", {.type = PL_MBOX_LIST, .req = 5}};
    all[n++] = (named){"list_granted",
                                {.type = PL_MBOX_LIST, .req = 5, .flags = PL_MBOX_F_WATCH, .has_grant = true, .grant = g}};
    x = (pl_mbox_msg){.type = PL_MBOX_LIST_REPLY, .req = 6, .flags = PL_MBOX_F_MORE, .n_entries = 2};
    memcpy(x.entries[0].id, id, 16);
    x.entries[0].parts = 1;
    x.entries[0].bytes = 400;
    x.entries[0].stored_at = T0 / PL_SEC;
    x.entries[1].id[0] = 9;
    x.entries[1].flags = PL_MBOX_E_TOMBSTONE;
    all[n++] = (named){"list_reply", x};
    x = (pl_mbox_msg){.type = PL_MBOX_GET, .req = 7, .part = 1, .attempt = 1};
    memcpy(x.id, fx.vm_head.id, 16);
    all[n++] = (named){"get", x};
    x.has_grant = true;
    x.grant = g;
    all[n++] = (named){"get_granted", x};
    all[n++] = (named){"get_reply", {.type = PL_MBOX_GET_REPLY, .req = 7, .env = env, .env_len = len}};
    x = (pl_mbox_msg){.type = PL_MBOX_DELETE, .req = 8, .cert = fx.bob.cert, .cert_len = fx.bob.cert_len,
                      .n_deletes = 1};
    memcpy(x.deletes[0].id, fx.vm_head.id, 16);
    pl_mbox_delete_sign(x.deletes[0].sig, &fx.bob.id, "bob", fx.vm_head.id);
    all[n++] = (named){"delete", x};
    x = (pl_mbox_msg){.type = PL_MBOX_NEWS};
    strcpy(x.name, "bob");
    memcpy(x.id, id, 16);
    all[n++] = (named){"news", x};
    all[n++] = (named){"chat", {.type = PL_MBOX_CHAT, .env = env, .env_len = len}};
    for (size_t i = 0; i < n; i++) {
        size_t k = pl_mbox_encode(m, sizeof m, &all[i].msg);
        char name[64];
        for (uint8_t target = 2; target <= 6; target++) {
            if (target == 3) continue;
            snprintf(name, sizeof name, "%s_%u", all[i].name, target);
            write_seed(dir, name, target, m, k);
        }
    }
    uint8_t body[64];
    /* epoch 1, seq 1, "hi" */
    memset(body, 0, sizeof body);
    body[0] = 0; /* a chat message: epoch 1, seq 1, "hi" */
    body[8] = 1;
    body[16] = 1;
    body[18] = 2;
    body[19] = 'h';
    body[20] = 'i';
    write_seed(dir, "chat_body", 7, body, 21);
    memset(body, 0, sizeof body);
    body[0] = 1; /* a receipt: epoch 1, through 1 */
    body[8] = 1;
    body[16] = 1;
    write_seed(dir, "receipt_body", 7, body, 1 + 24 + 2);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
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
    const uint8_t *in = data + 1;
    size_t len = size - 1;
    if (len > PL_SEC_MAX_PAYLOAD) return 0;
    static pl_time now = T0;
    now += 10 * PL_MSEC;
    switch (data[0] & 7) {
    case 0: {
        pl_env_header h;
        pl_env_peek(&h, in, len);
        pl_env_opened o;
        pl_env_recipient me = {&fx.bob.id, "bob"};
        if (pl_env_open(&o, in, len, &me, fx.ca_pk, NULL, now, NULL) == PL_ENV_OK) {
            /* Only alice (or bob) could have made it: the fixture's keys. */
            if (strcmp(o.sender.name, "alice") != 0 && strcmp(o.sender.name, "bob") != 0) abort();
            pl_env_opened_wipe(&o);
        }
        break;
    }
    case 1: {
        uint8_t body[PL_ENV_CHUNK_BODY];
        uint16_t part;
        size_t blen;
        if (pl_env_open_chunk(&fx.vm_head, in, len, body, sizeof body, &part, &blen) == PL_ENV_OK &&
            memcmp(body, fx.vm_body + pl_env_chunk_offset(part), blen) != 0)
            abort();
        break;
    }
    case 2: check_canonical(in, len); break;
    case 3: {
        pl_mbox_grant g;
        if (pl_mbox_grant_decode(&g, in, len)) {
            uint8_t again[PL_MBOX_GRANT_MAX_SIZE];
            size_t n = pl_mbox_grant_encode(again, sizeof again, &g);
            if (n != len || memcmp(again, in, len) != 0) abort();
            pl_cert c;
            pl_mbox_grant_verify(&g, fx.ca_pk, NULL, now / PL_SEC, fx.sn.id.sign_pk, &c);
        }
        break;
    }
    case 4:
        check_canonical(in, len);
        pl_mbox_client_message(fx.mbox, fx.bob.id.sign_pk, &fx.bob.c, &fx.bob.addr, in, len, now);
        break;
    case 5:
        check_canonical(in, len);
        pl_mbox_peer_message(fx.mbox, fx.other.id.sign_pk, &fx.other.addr, in, len, now);
        break;
    case 6:
        check_canonical(in, len);
        pl_mboxc_message(fx.mc, in, len, now);
        break;
    case 7: {
        pl_chat_direct(fx.chat, fx.alice.id.sign_pk, in, len, now);
        if (len < 1 || len - 1 > PL_ENV_INLINE_MAX) break;
        uint8_t env[PL_ENV_MAX_SIZE], msg[PL_MBOX_MSG_MAX];
        size_t elen;
        pl_env_sealed st;
        uint8_t type = in[0] & 1 ? PL_ENV_RECEIPT : PL_ENV_CHAT;
        if (pl_env_seal(&st, env, sizeof env, &elen, &fx.alice.id, fx.alice.cert, fx.alice.cert_len, &fx.bob.c, type,
                        in + 1, len - 1, now, &fx.rng.rng) == PL_ENV_OK) {
            pl_mbox_msg m = {.type = PL_MBOX_CHAT, .env = env, .env_len = elen};
            size_t n = pl_mbox_encode(msg, sizeof msg, &m);
            if (n) pl_chat_direct(fx.chat, fx.alice.id.sign_pk, msg, n, now);
        }
        break;
    }
    }
    pl_mbox_tick(fx.mbox, now);
    pl_mboxc_tick(fx.mc, now);
    pl_chat_tick(fx.chat, now);
    return 0;
}
