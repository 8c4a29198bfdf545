/*
 * fuzz_phone.c - hostile bytes into the first-contact messages of calls:
 * the rendezvous NOTE a supernode routes (callsvc.h) and the knock a phone
 * opens (phone.h).
 *
 * The first byte picks the target (mod 2):
 *  0  codecs: whatever decodes as a NOTE or a knock body encodes back to the
 *     same bytes, and decoding never reads out of bounds.
 *  1  a supernode's call services take a stream of messages from five
 *     senders: two attached clients, a member supernode, a stranger, and
 *     the supernode itself as a member; each message is raw bytes or a NOTE
 *     built around the fuzzer's choices of hop, recipient, supernode and
 *     body, or a relay allocation message, with time passing. Checks: a NOTE
 *     is delivered only to an attached recipient and only with hop 2,
 *     forwarded only to a member supernode with hop 1, never sent to the
 *     sender's own key unless it is the recipient, and always with the body
 *     unchanged; a stranger's notes (neither client nor member) go nowhere;
 *     an allocation is answered only to the asker; nothing sent is longer
 *     than a NOTE can be; a client is never forwarded more notes than the
 *     rate allows.
 *
 * Set PARLEY_FUZZ_WRITE_SEEDS=dir to write the seed corpus and exit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "callsvc.h"
#include "parley.h"
#include "phone.h"
#include "relay.h"

#define T0 ((pl_time)1800000000 * PL_SEC)

/* ---- 0: codecs ---------------------------------------------------------------------------- */

static void fuzz_codecs(const uint8_t *data, size_t size)
{
    static uint8_t out[8192];
    pl_callsvc_note n;
    if (pl_callsvc_decode_note(&n, data, size)) {
        size_t len = pl_callsvc_encode_note(out, sizeof out, &n);
        if (len != size || memcmp(out, data, size) != 0) abort();
    }
    pl_phone_knock k;
    if (pl_phone_decode_knock(&k, data, size)) {
        size_t len = pl_phone_encode_knock(out, sizeof out, &k);
        if (len != size || memcmp(out, data, size) != 0) abort();
    }
}

/* ---- 1: routing ------------------------------------------------------------------------------ */

enum { CLIENT_A, CLIENT_B, MEMBER, STRANGER, SELF, N_KEYS };

typedef struct world {
    uint8_t keys[N_KEYS][32];
    const uint8_t *sender;
    pl_callsvc_note last_in;
    bool note_in;
    uint8_t body[PL_CALLSVC_NOTE_MAX_BODY];
    int forwarded_from[N_KEYS];
} world;

static int key_index(const world *w, const uint8_t pk[32])
{
    for (int i = 0; i < N_KEYS; i++)
        if (memcmp(w->keys[i], pk, 32) == 0) return i;
    return -1;
}

static bool io_send(void *ctx, const uint8_t pk[32], const pl_addr *addr, const uint8_t *msg, size_t len, pl_time now)
{
    world *w = ctx;
    (void)addr;
    (void)now;
    if (len > PL_CALLSVC_NOTE_MAX || len == 0) abort();
    int to = key_index(w, pk);
    int from = key_index(w, w->sender);
    if (msg[0] == PL_OVL_RELAY_ALLOCATED) {
        /* Answers go to the asker (over its authenticated session). */
        if (memcmp(pk, w->sender, 32) != 0) abort();
        return true;
    }
    if (msg[0] != PL_CALLSVC_MSG_NOTE) abort();
    pl_callsvc_note n;
    if (!pl_callsvc_decode_note(&n, msg, len) || !w->note_in) abort();
    /* The body and the addressing are passed on unchanged. */
    if (n.body_len != w->last_in.body_len || memcmp(n.body, w->body, n.body_len) != 0 ||
        memcmp(n.to, w->last_in.to, 32) != 0 || memcmp(n.via, w->last_in.via, 32) != 0)
        abort();
    if (n.hop == 2) {
        /* Delivered: to the recipient, who is attached here. */
        if (memcmp(pk, n.to, 32) != 0 || (to != CLIENT_A && to != CLIENT_B)) abort();
        if (from == STRANGER) abort();
    } else if (n.hop == 1) {
        /* Forwarded: only from an attached client, only to a member. */
        if (memcmp(pk, n.via, 32) != 0 || to != MEMBER) abort();
        if (from != CLIENT_A && from != CLIENT_B) abort();
        w->forwarded_from[from]++;
    } else {
        abort();
    }
    return true;
}

static bool io_attached(void *ctx, const uint8_t pk[32])
{
    world *w = ctx;
    int i = key_index(w, pk);
    return i == CLIENT_A || i == CLIENT_B;
}

static bool io_member(void *ctx, const uint8_t pk[32], pl_addr *addr)
{
    world *w = ctx;
    int i = key_index(w, pk);
    if (addr) pl_addr_parse(addr, "203.0.113.9:7400", 0);
    return i == MEMBER || i == SELF;
}

static void fuzz_routing(const uint8_t *data, size_t size)
{
    static world w;
    memset(&w, 0, sizeof w);
    for (int i = 0; i < N_KEYS; i++) memset(w.keys[i], 0x10 + i, 32);
    pl_rng_seeded rng;
    pl_rng_seeded_init(&rng, 3);
    pl_callsvc_config cfg = {.rng = &rng.rng};
    memcpy(cfg.self_pk, w.keys[SELF], 32);
    pl_addr_parse(&cfg.relay.udp_addr, "203.0.113.1:7400", 0);
    pl_callsvc_io io = {&w, io_send, io_attached, io_member};
    pl_callsvc *cs;
    if (pl_callsvc_new(&cs, &cfg, &io) != PL_CALLSVC_OK) abort();
    pl_time now = T0;
    size_t off = 0;
    static uint8_t msg[PL_CALLSVC_NOTE_MAX + 64];
    while (off + 4 <= size) {
        uint8_t sel = data[off], meta = data[off + 1], dt = data[off + 2], len = data[off + 3];
        off += 4;
        if (len > size - off) len = (uint8_t)(size - off);
        const uint8_t *body = data + off;
        off += len;
        now += (pl_time)dt * 10 * PL_MSEC;
        int from = sel % N_KEYS;
        w.sender = w.keys[from];
        bool attached = from == CLIENT_A || from == CLIENT_B;
        size_t mlen;
        w.note_in = false;
        switch ((sel >> 5) % 3) {
        case 0: /* raw bytes, first byte forced into the module's range */
            memcpy(msg, body, len);
            if (len) msg[0] = (uint8_t[]){0x60, 0x61, 0x62, PL_CALLSVC_MSG_NOTE}[meta % 4];
            mlen = len;
            break;
        case 1: { /* a NOTE */
            pl_callsvc_note n = {.hop = (uint8_t)(meta % 4), .body = body, .body_len = len};
            memcpy(n.to, w.keys[(meta >> 2) % N_KEYS], 32);
            memcpy(n.via, w.keys[(meta >> 5) % N_KEYS], 32);
            if (len == 0) n.body_len = 0;
            mlen = pl_callsvc_encode_note(msg, sizeof msg, &n);
            if (!mlen) continue;
            w.last_in = n;
            memcpy(w.body, body, len);
            w.note_in = true;
            break;
        }
        default: { /* an allocation or a release */
            pl_relay_allocate a = {.req = meta};
            memcpy(a.peer_pk, w.keys[meta % N_KEYS], 32);
            mlen = (meta & 1) ? pl_relay_encode_allocate(msg, sizeof msg, &a)
                              : pl_relay_encode_release(msg, sizeof msg, &(pl_relay_release){meta});
            break;
        }
        }
        if (mlen == 0) continue;
        if (w.note_in == false && mlen && msg[0] == PL_CALLSVC_MSG_NOTE) {
            /* Raw bytes that happen to decode: remember them for the checks. */
            pl_callsvc_note n;
            if (pl_callsvc_decode_note(&n, msg, mlen)) {
                w.last_in = n;
                memcpy(w.body, n.body, n.body_len);
                w.note_in = true;
            }
        }
        pl_callsvc_message(cs, w.keys[from], attached, msg, mlen, now);
        pl_callsvc_tick(cs, now);
    }
    /* The per-client rate: a burst and then PL_CALLSVC_NOTE_RATE a second. */
    double secs = (double)(now - T0) / PL_SEC;
    for (int i = CLIENT_A; i <= CLIENT_B; i++)
        if (w.forwarded_from[i] > PL_CALLSVC_NOTE_BURST + (int)(secs * PL_CALLSVC_NOTE_RATE) + 1) abort();
    pl_callsvc_free(cs);
}

/* ---- seeds -------------------------------------------------------------------------------------- */

static void write_seed(const char *dir, const char *name, const uint8_t *d, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(d, 1, n, f);
    fclose(f);
}

static void write_seeds(const char *dir)
{
    uint8_t buf[2048];
    /* A NOTE and a knock for the codecs. */
    uint8_t body[40];
    memset(body, 0xab, sizeof body);
    pl_callsvc_note n = {.hop = 1, .body = body, .body_len = sizeof body};
    memset(n.to, 1, 32);
    memset(n.via, 2, 32);
    buf[0] = 0;
    size_t len = pl_callsvc_encode_note(buf + 1, sizeof buf - 1, &n);
    write_seed(dir, "note", buf, len + 1);
    pl_phone_knock k;
    memset(&k, 0, sizeof k);
    memset(k.supernode, 3, 32);
    k.offer.n_relays = 1;
    pl_addr_parse(&k.offer.relays[0].addr, "203.0.113.10:7400", 0);
    k.offer.relays[0].channel = 77;
    k.offer.relays[0].token = 0x1234;
    k.offer.n_candidates = 1;
    k.offer.candidates[0].type = PL_CAND_SERVER_REFLEXIVE;
    k.offer.candidates[0].transport = PL_TRANSPORT_UDP;
    k.offer.candidates[0].priority = 100;
    pl_addr_parse(&k.offer.candidates[0].addr, "198.51.100.7:40000", 0);
    len = pl_phone_encode_knock(buf + 1, sizeof buf - 1, &k);
    buf[0] = 0;
    write_seed(dir, "knock", buf, len + 1);
    /* Routing: a client's note for a member, a member's note for a client. */
    size_t o = 0;
    buf[o++] = 1;
    uint8_t steps[][4] = {{CLIENT_A | (1 << 5), (uint8_t)(0 | (CLIENT_B << 2) | (MEMBER << 5)), 1, 16},
                          {MEMBER | (1 << 5), (uint8_t)(1 | (CLIENT_A << 2) | (SELF << 5)), 1, 16},
                          {CLIENT_B | (1 << 5), (uint8_t)(0 | (CLIENT_A << 2) | (SELF << 5)), 1, 16},
                          {CLIENT_A | (2 << 5), 1, 1, 0},
                          {STRANGER | (1 << 5), (uint8_t)(1 | (CLIENT_A << 2) | (SELF << 5)), 1, 16}};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        memcpy(buf + o, steps[i], 4);
        o += 4;
        memset(buf + o, (int)i + 1, steps[i][3]);
        o += steps[i][3];
    }
    write_seed(dir, "routing", buf, o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool seeded;
    if (!seeded) {
        seeded = true;
        const char *dir = getenv("PARLEY_FUZZ_WRITE_SEEDS");
        if (dir) {
            write_seeds(dir);
            exit(0);
        }
    }
    if (size < 1) return 0;
    if (data[0] % 2 == 0) fuzz_codecs(data + 1, size - 1);
    else fuzz_routing(data + 1, size - 1);
    return 0;
}
