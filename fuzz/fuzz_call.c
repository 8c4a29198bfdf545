/*
 * fuzz_call.c - hostile call signalling into an engine in every state.
 *
 * The first input byte picks a starting state, reached by a scripted, valid
 * exchange with bob (idle, dialing, ringing-remote, ringing, active as
 * caller or callee, held either way, ended, waiting after a lost glare, two
 * calls with call waiting) and a configuration (auto-answer, call waiting,
 * carol blocked). The rest is a list of operations: messages from bob or
 * from carol (a stranger to bob's call), optionally with the live call id or
 * bob's next sequence number spliced in so that they reach deep; jumps in
 * time; and local actions (answer, hang up, hold, resume, reject, dial,
 * mute, peer down, media heard).
 *
 * Checks besides crashes, after every operation:
 *  - pl_call_selfcheck (no state corruption);
 *  - events per handle: INCOMING only for a new handle, nothing after
 *    ENDED, media start and stop alternating, ENDED only with a reason;
 *  - everything the engine sends decodes, re-encodes to the same bytes and
 *    goes to bob or carol;
 *  - a message from carol never changes the state of a call with bob;
 *  - a message the codec accepts encodes back to exactly its bytes.
 *
 * Set PARLEY_FUZZ_WRITE_SEEDS=dir to write the seed corpus and exit.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call.h"
#include "parley.h"
#include "wire.h"

#define T0 (1800000000ull * PL_SEC)

static uint8_t alice_pk[32], bob_pk[32], carol_pk[32];
static pl_cert bob_cert, carol_cert;
static pl_rng_seeded rng;

/* ---- what the engine does ------------------------------------------------------------- */

#define MAX_HANDLES 256
typedef struct track {
    bool seen, ended;
    int media; /* 1 while media is on */
} track;

static struct {
    pl_call *call;
    pl_time now;
    track t[MAX_HANDLES];
    bool block_carol;
    /* bob's side of the scripted exchange */
    uint32_t bob_seq;
    uint8_t last_id[PL_CALL_ID_SIZE]; /* the call id of the last message alice sent to bob */
    uint8_t first_id[PL_CALL_ID_SIZE];
    bool have_id;
    bool send_fails; /* the driver cannot even queue (no session, no address) */
} F;

static bool io_send(void *ctx, const uint8_t pk[32], const pl_addr *addr, const uint8_t *msg, size_t len,
                    pl_time now)
{
    (void)ctx;
    (void)addr;
    (void)now;
    if (memcmp(pk, bob_pk, 32) != 0 && memcmp(pk, carol_pk, 32) != 0) abort();
    pl_call_msg m;
    uint8_t again[PL_CALL_MSG_MAX];
    if (len > PL_CALL_MSG_MAX || pl_call_msg_decode(&m, msg, len) != PL_CALL_OK) abort();
    if (pl_call_msg_encode(again, sizeof again, &m) != len || memcmp(again, msg, len) != 0) abort();
    if (memcmp(pk, bob_pk, 32) == 0) {
        if (!F.have_id) memcpy(F.first_id, m.call_id, PL_CALL_ID_SIZE);
        memcpy(F.last_id, m.call_id, PL_CALL_ID_SIZE);
        F.have_id = true;
    }
    return !F.send_fails;
}

static void io_event(void *ctx, const pl_call_event *ev)
{
    (void)ctx;
    if (ev->handle == 0 || ev->handle >= MAX_HANDLES) {
        if (ev->handle == 0) abort();
        return; /* beyond what we track */
    }
    track *t = &F.t[ev->handle];
    if (t->ended) abort();
    switch (ev->type) {
    case PL_CALL_EV_INCOMING:
        if (t->seen || ev->state != PL_CALL_RINGING || ev->outgoing) abort();
        break;
    case PL_CALL_EV_STATE:
        if (ev->state == PL_CALL_ENDED || ev->state == PL_CALL_IDLE) abort();
        if ((ev->hold != 0) != (ev->state == PL_CALL_HELD)) abort();
        break;
    case PL_CALL_EV_ENDED:
        if (ev->state != PL_CALL_ENDED || ev->reason == PL_CALL_END_NONE || ev->reason > PL_CALL_END_MAX) abort();
        if (t->media) abort(); /* media stops before the end */
        t->ended = true;
        break;
    case PL_CALL_EV_MEDIA_START:
        if (t->media || ev->state != PL_CALL_ACTIVE || ev->caps.min_bps > ev->caps.max_bps) abort();
        t->media = 1;
        break;
    case PL_CALL_EV_MEDIA_STOP:
        if (!t->media) abort();
        t->media = 0;
        break;
    default: abort();
    }
    t->seen = true;
}

static pl_call_admit io_admit(void *ctx, const uint8_t pk[32], const pl_cert *cert)
{
    (void)ctx;
    (void)cert;
    return F.block_carol && memcmp(pk, carol_pk, 32) == 0 ? PL_CALL_ADMIT_REFUSE : PL_CALL_ADMIT_RING;
}

static void check(void)
{
    if (!pl_call_selfcheck(F.call)) abort();
}

/* ---- bob's messages --------------------------------------------------------------------- */

static void deliver(const uint8_t pk[32], const uint8_t *msg, size_t len)
{
    const pl_cert *cert = memcmp(pk, bob_pk, 32) == 0 ? &bob_cert : &carol_cert;
    pl_addr from;
    memset(&from, 0, sizeof from);
    from.family = PL_AF_INET4;
    from.port = 7000;
    pl_call_message(F.call, pk, cert, &from, msg, len, F.now);
    check();
}

static size_t bob_msg(uint8_t *buf, uint8_t type, const uint8_t id[PL_CALL_ID_SIZE], uint8_t reason)
{
    pl_call_msg m;
    memset(&m, 0, sizeof m);
    m.type = type;
    memcpy(m.call_id, id, PL_CALL_ID_SIZE);
    if (type != PL_CALL_MSG_ACK && type != PL_CALL_MSG_KEEPALIVE) m.seq = ++F.bob_seq;
    m.ack = 1;
    m.reason = reason;
    if (type == PL_CALL_MSG_INVITE) {
        m.version = PL_CALL_VERSION;
        m.ring_timeout_s = 30;
    }
    m.caps = (pl_call_caps){PL_CALL_CODEC_OPUS, PL_CALL_CAP_FEC, 8000, 48000};
    size_t n = pl_call_msg_encode(buf, PL_CALL_MSG_MAX, &m);
    if (n == 0) abort();
    return n;
}

/* A first message of a call the engine has not seen (a fresh call id from
 * a small set, sequence 1), from bob or carol; an INVITE in one of four
 * flavours: compatible, another codec, another version, no bitrate in
 * common. */
static void fresh_message(const uint8_t pk[32], uint8_t type, uint8_t which, uint8_t flavour)
{
    pl_call_msg m;
    memset(&m, 0, sizeof m);
    m.type = type;
    memset(m.call_id, 0xd0 + (which & 7), PL_CALL_ID_SIZE);
    if (type != PL_CALL_MSG_ACK && type != PL_CALL_MSG_KEEPALIVE) m.seq = 1;
    m.reason = 1 + flavour % 2;
    m.version = PL_CALL_VERSION;
    m.ring_timeout_s = 30;
    m.caps = (pl_call_caps){PL_CALL_CODEC_OPUS, PL_CALL_CAP_DTX, 8000, 48000};
    switch (flavour & 3) {
    case 1: m.caps.codec = 9; break;
    case 2: m.version = 2; break;
    case 3: m.caps.min_bps = m.caps.max_bps = 500000; break;
    default: break;
    }
    uint8_t buf[PL_CALL_MSG_MAX];
    size_t n = pl_call_msg_encode(buf, sizeof buf, &m);
    if (n == 0) abort();
    deliver(pk, buf, n);
}

static void bob_says(uint8_t type, const uint8_t id[PL_CALL_ID_SIZE], uint8_t reason)
{
    uint8_t buf[PL_CALL_MSG_MAX];
    size_t n = bob_msg(buf, type, id, reason);
    deliver(bob_pk, buf, n);
}

/* The same with a knob: any valid reason for the type, and for ACCEPT
 * capabilities that may not meet ours. */
static void bob_says_any(uint8_t type, const uint8_t id[PL_CALL_ID_SIZE], uint8_t knob)
{
    uint8_t buf[PL_CALL_MSG_MAX];
    uint8_t reason = (uint8_t)(1 + knob % (type == PL_CALL_MSG_REJECT ? PL_CALL_REJECT_MAX : 2));
    size_t n = bob_msg(buf, type, id, reason);
    if (type == PL_CALL_MSG_ACCEPT && (knob & 4)) {
        pl_call_msg m;
        if (pl_call_msg_decode(&m, buf, n) != PL_CALL_OK) abort();
        m.caps.min_bps = m.caps.max_bps = 900000;
        n = pl_call_msg_encode(buf, sizeof buf, &m);
    }
    deliver(bob_pk, buf, n);
}

static uint32_t first_live(void)
{
    uint32_t hs[8];
    return pl_call_list(F.call, hs, 8) ? hs[0] : 0;
}

/* ---- starting states ------------------------------------------------------------------- */

enum { START_STATES = 11 };

static void start(uint8_t selector)
{
    memset(&F, 0, sizeof F);
    F.now = T0;
    pl_rng_seeded_init(&rng, 1);
    pl_call_config cfg = {.rng = &rng.rng,
                          .auto_answer = (selector & 0x10) != 0,
                          .call_waiting = (selector & 0x20) != 0,
                          .max_calls = (selector & 0x40) ? 2 : 0};
    F.block_carol = (selector & 0x80) != 0;
    memcpy(cfg.own_pk, alice_pk, 32);
    pl_call_io io = {NULL, io_send, io_event, io_admit};
    if (pl_call_new(&F.call, &cfg, &io) != PL_CALL_OK) abort();
    uint8_t bob_id[PL_CALL_ID_SIZE];
    memset(bob_id, 0xb0, sizeof bob_id);
    uint32_t h = 0;
    pl_addr to;
    memset(&to, 0, sizeof to);
    to.family = PL_AF_INET4;
    switch ((selector & 0x0f) % START_STATES) {
    case 0: break; /* idle */
    case 1: pl_call_dial(F.call, bob_pk, "bob", &to, F.now, &h); break;
    case 2:
        pl_call_dial(F.call, bob_pk, "bob", &to, F.now, &h);
        bob_says(PL_CALL_MSG_RINGING, F.last_id, 0);
        break;
    case 3:
        pl_call_dial(F.call, bob_pk, "bob", &to, F.now, &h);
        bob_says(PL_CALL_MSG_ACCEPT, F.last_id, 0);
        break;
    case 4: bob_says(PL_CALL_MSG_INVITE, bob_id, 0); break;
    case 5:
        bob_says(PL_CALL_MSG_INVITE, bob_id, 0);
        pl_call_answer(F.call, first_live(), F.now);
        break;
    case 6:
        pl_call_dial(F.call, bob_pk, "bob", &to, F.now, &h);
        bob_says(PL_CALL_MSG_ACCEPT, F.last_id, 0);
        pl_call_hold(F.call, h, F.now);
        break;
    case 7:
        bob_says(PL_CALL_MSG_INVITE, bob_id, 0);
        pl_call_answer(F.call, first_live(), F.now);
        bob_says(PL_CALL_MSG_HOLD, bob_id, 0);
        break;
    case 8:
        pl_call_dial(F.call, bob_pk, "bob", &to, F.now, &h);
        bob_says(PL_CALL_MSG_ACCEPT, F.last_id, 0);
        pl_call_hangup(F.call, h, F.now);
        break;
    case 9:
        /* Alice dialed and bob's invite crossed hers; bob's key is lower
         * in this fixture, so bob rejects hers with GLARE. */
        pl_call_dial(F.call, bob_pk, "bob", &to, F.now, &h);
        bob_says(PL_CALL_MSG_REJECT, F.last_id, PL_CALL_REJECT_GLARE);
        break;
    case 10: {
        bob_says(PL_CALL_MSG_INVITE, bob_id, 0);
        pl_call_answer(F.call, first_live(), F.now);
        uint8_t buf[PL_CALL_MSG_MAX], carol_id[PL_CALL_ID_SIZE];
        memset(carol_id, 0xc0, sizeof carol_id);
        uint32_t keep = F.bob_seq;
        F.bob_seq = 0;
        size_t n = bob_msg(buf, PL_CALL_MSG_INVITE, carol_id, 0);
        F.bob_seq = keep;
        deliver(carol_pk, buf, n);
        break;
    }
    }
    check();
}

/* ---- operations ----------------------------------------------------------------------- */

static uint32_t pick_handle(uint8_t b)
{
    uint32_t hs[PL_CALL_SLOTS_DEFAULT];
    size_t n = pl_call_list(F.call, hs, PL_CALL_SLOTS_DEFAULT);
    if (b & 0x80) return b & 0x7f; /* any number, live or not */
    return n ? hs[b % n] : 0;
}

typedef struct snapshot {
    uint32_t handle;
    pl_call_state state;
    uint8_t hold;
    uint8_t id[PL_CALL_ID_SIZE];
} snapshot;

static void bob_calls(snapshot *s, size_t *n)
{
    *n = 0;
    uint32_t hs[PL_CALL_SLOTS_DEFAULT];
    size_t k = pl_call_list(F.call, hs, PL_CALL_SLOTS_DEFAULT);
    for (size_t i = 0; i < k; i++) {
        pl_call_info in;
        if (pl_call_get_info(F.call, hs[i], &in) != PL_CALL_OK) abort();
        if (memcmp(in.peer_pk, bob_pk, 32) != 0) continue;
        s[*n].handle = in.handle;
        s[*n].state = in.state;
        s[*n].hold = in.hold;
        memcpy(s[*n].id, in.call_id, PL_CALL_ID_SIZE);
        (*n)++;
    }
}

static void run_ops(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t op = p[i++];
        if (op < 0x40) {
            if (i >= n) return;
            size_t len = p[i++];
            if (len > n - i) len = n - i;
            uint8_t msg[256];
            memcpy(msg, p + i, len);
            i += len;
            bool from_bob = (op & 1) != 0;
            if ((op & 2) && len >= 1 + PL_CALL_ID_SIZE && F.have_id) memcpy(msg + 1, F.last_id, PL_CALL_ID_SIZE);
            if ((op & 4) && len >= 21) pl_put_u32be(msg + 17, F.bob_seq + 1 + ((op >> 3) & 3));
            if ((op & 4) && len >= 21 && from_bob && ((op >> 3) & 3) == 0) F.bob_seq++;
            /* A message the codec accepts is canonical. */
            pl_call_msg m;
            if (pl_call_msg_decode(&m, msg, len) == PL_CALL_OK) {
                uint8_t again[PL_CALL_MSG_MAX];
                if (pl_call_msg_encode(again, sizeof again, &m) != len || memcmp(again, msg, len) != 0) abort();
            }
            snapshot before[PL_CALL_SLOTS_DEFAULT], after[PL_CALL_SLOTS_DEFAULT];
            size_t nb = 0, na = 0;
            memset(before, 0, sizeof before);
            memset(after, 0, sizeof after);
            if (!from_bob) bob_calls(before, &nb);
            deliver(from_bob ? bob_pk : carol_pk, msg, len);
            if (!from_bob) {
                /* Carol cannot touch a call with bob. */
                bob_calls(after, &na);
                if (na != nb || memcmp(before, after, nb * sizeof before[0]) != 0) abort();
            }
            continue;
        }
        uint8_t arg = i < n ? p[i] : 0;
        switch (op) {
        case 0x40:
            i++;
            F.now += (pl_time)arg * 50 * PL_MSEC;
            pl_call_tick(F.call, F.now);
            break;
        case 0x41: {
            pl_time t = pl_call_next_timeout(F.call);
            if (t != PL_TIME_NEVER) {
                if (t < F.now) abort(); /* a deadline in the past would spin a driver */
                F.now = t;
            }
            pl_call_tick(F.call, F.now);
            break;
        }
        case 0x42: i++; pl_call_answer(F.call, pick_handle(arg), F.now); break;
        case 0x43: i++; pl_call_hangup(F.call, pick_handle(arg), F.now); break;
        case 0x44: i++; pl_call_hold(F.call, pick_handle(arg), F.now); break;
        case 0x45: i++; pl_call_resume(F.call, pick_handle(arg), F.now); break;
        case 0x46: i++; pl_call_reject(F.call, pick_handle(arg), (pl_call_reject_reason)(arg & 7), F.now); break;
        case 0x47: pl_call_dial(F.call, bob_pk, "bob", NULL, F.now, NULL); break;
        case 0x48: pl_call_dial(F.call, carol_pk, NULL, NULL, F.now, NULL); break;
        case 0x49: pl_call_peer_down(F.call, bob_pk, F.now); break;
        case 0x4a: pl_call_peer_down(F.call, carol_pk, F.now); break;
        case 0x4b: pl_call_heard(F.call, bob_pk, F.now); break;
        case 0x4c: i++; pl_call_set_mute(F.call, pick_handle(arg), arg & 1); break;
        case 0x4d: {
            /* Bob says something valid for the live call, in order. */
            i++;
            static const uint8_t types[] = {PL_CALL_MSG_RINGING, PL_CALL_MSG_ACCEPT, PL_CALL_MSG_REJECT,
                                            PL_CALL_MSG_BUSY,    PL_CALL_MSG_CANCEL, PL_CALL_MSG_BYE,
                                            PL_CALL_MSG_HOLD,    PL_CALL_MSG_RESUME, PL_CALL_MSG_ACK,
                                            PL_CALL_MSG_KEEPALIVE, PL_CALL_MSG_INVITE};
            uint8_t type = types[arg % sizeof types];
            if (F.have_id) bob_says_any(type, F.last_id, arg >> 4);
            break;
        }
        case 0x4e:
        case 0x4f: {
            /* Bob (0x4e) or carol (0x4f) starts something new: mostly
             * invites (glare, busy, call waiting, incompatible), sometimes
             * another type with an id the engine does not know. */
            i++;
            static const uint8_t fresh_types[] = {PL_CALL_MSG_INVITE, PL_CALL_MSG_INVITE, PL_CALL_MSG_INVITE,
                                                  PL_CALL_MSG_INVITE, PL_CALL_MSG_CANCEL, PL_CALL_MSG_BYE,
                                                  PL_CALL_MSG_REJECT, PL_CALL_MSG_BUSY,   PL_CALL_MSG_HOLD,
                                                  PL_CALL_MSG_ACK,    PL_CALL_MSG_KEEPALIVE};
            uint8_t type = fresh_types[(arg & 0x0f) % sizeof fresh_types];
            if (op == 0x4e) {
                fresh_message(bob_pk, type, arg >> 4, arg >> 6);
            } else {
                snapshot before[PL_CALL_SLOTS_DEFAULT], after[PL_CALL_SLOTS_DEFAULT];
                size_t nb = 0, na = 0;
                memset(before, 0, sizeof before);
                memset(after, 0, sizeof after);
                bob_calls(before, &nb);
                fresh_message(carol_pk, type, arg >> 4, arg >> 6);
                bob_calls(after, &na);
                if (na != nb || memcmp(before, after, nb * sizeof before[0]) != 0) abort();
            }
            break;
        }
        case 0x50: {
            /* Bob answers alice's glare leftovers: a message under the
             * other call id he knows of (alice's first invite). */
            i++;
            if (F.have_id) bob_says(arg & 1 ? PL_CALL_MSG_ACK : PL_CALL_MSG_HOLD, F.first_id, 1);
            break;
        }
        case 0x51: F.send_fails = !F.send_fails; break;
        default: break;
        }
        check();
    }
}

/* ---- seeds ------------------------------------------------------------------------------ */

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

static void write_seeds(const char *dir)
{
    static const char *names[START_STATES] = {"idle",   "dialing", "ringing_remote", "active_caller",
                                              "ringing", "active_callee", "held_local", "held_remote",
                                              "ended",  "glare_wait", "call_waiting"};
    for (int s = 0; s < START_STATES; s++) {
        uint8_t buf[512];
        size_t n = 0;
        buf[n++] = (uint8_t)(s | (s == 10 ? 0x20 : 0));
        /* A valid in-order message from bob, a hold and a resume by him,
         * a retransmitted copy, time passing, and one from carol. */
        uint8_t msg[PL_CALL_MSG_MAX];
        uint8_t id[PL_CALL_ID_SIZE] = {0};
        F.bob_seq = 0;
        size_t k = bob_msg(msg, PL_CALL_MSG_HOLD, id, 0);
        buf[n++] = 0x07; /* from bob, live id, next seq */
        buf[n++] = (uint8_t)k;
        memcpy(buf + n, msg, k);
        n += k;
        buf[n++] = 0x07;
        buf[n++] = (uint8_t)k;
        memcpy(buf + n, msg, k);
        n += k;
        buf[n++] = 0x4d;
        buf[n++] = 7; /* RESUME */
        buf[n++] = 0x40;
        buf[n++] = 40; /* 2 s */
        buf[n++] = 0x41;
        k = bob_msg(msg, PL_CALL_MSG_BYE, id, PL_CALL_BYE_HANGUP);
        buf[n++] = 0x02; /* from carol, with the live id */
        buf[n++] = (uint8_t)k;
        memcpy(buf + n, msg, k);
        n += k;
        buf[n++] = 0x44;
        buf[n++] = 0;
        buf[n++] = 0x4e; /* bob invites: glare, busy or a new call */
        buf[n++] = (uint8_t)(s << 4);
        buf[n++] = 0x4f; /* carol invites */
        buf[n++] = 0x10;
        buf[n++] = 0x50;
        buf[n++] = 0;
        buf[n++] = 0x41;
        buf[n++] = 0x41;
        char name[64];
        snprintf(name, sizeof name, "start_%s", names[s]);
        write_seed(dir, name, buf, n);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!pl_init()) abort();
    /* Fixed keys: bob's is the lowest, so bob wins a glare with alice. */
    memset(bob_pk, 0x01, 32);
    memset(alice_pk, 0x02, 32);
    memset(carol_pk, 0x03, 32);
    memset(&bob_cert, 0, sizeof bob_cert);
    memcpy(bob_cert.name, "bob", 3);
    bob_cert.name_len = 3;
    memset(&carol_cert, 0, sizeof carol_cert);
    memcpy(carol_cert.name, "carol", 5);
    carol_cert.name_len = 5;
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
    if (size == 0) return 0;
    start(data[0]);
    run_ops(data + 1, size - 1);
    /* Whatever happened, time heals: with nobody talking every call ends
     * (each live state has a deadline) and is forgotten. */
    for (int k = 0; k < 10000 && pl_call_next_timeout(F.call) != PL_TIME_NEVER; k++) {
        pl_time t = pl_call_next_timeout(F.call);
        if (t < F.now) abort();
        F.now = t;
        pl_call_tick(F.call, F.now);
        check();
    }
    uint32_t hs[4];
    if (pl_call_next_timeout(F.call) != PL_TIME_NEVER || pl_call_list(F.call, hs, 4) != 0) abort();
    pl_call_free(F.call);
    F.call = NULL;
    return 0;
}
