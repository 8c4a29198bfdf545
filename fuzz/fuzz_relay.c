/*
 * fuzz_relay.c - hostile datagrams into the relay, hostile messages into
 * the path manager, and hostile bytes into their codecs.
 *
 * The first byte picks the target (mod 3):
 *  0  a relay with three allocations takes a stream of datagrams from eight
 *     sources (the two parties of each channel, strangers, the relay's own
 *     addresses, a TCP side, IPv6), each either raw bytes or framing with a
 *     real channel and token around the fuzzer's bytes, with time passing.
 *     Checks: nothing is ever sent that is longer than what came in (no
 *     amplification); an answer to a bind goes back to its sender, 13 bytes;
 *     a forwarded packet goes only to the address the other side last proved
 *     its token from, keeps its channel and inner bytes and carries the
 *     receiving side's token (never an open proxy, never a token leak); a
 *     dropped packet is left as it was; the relay never sends to itself.
 *  1  the allocation messages and path offers: whatever decodes encodes back
 *     to the same bytes.
 *  2  a path manager (controlling or not, privacy or not) with direct and
 *     relayed paths takes a stream of payloads, relay-framed datagrams and
 *     session datagrams from its paths and from strangers, with time
 *     passing. Checks: it never hands a virtual address to the network; in
 *     privacy mode it sends only to its own relays and names only relayed
 *     paths; its answers are never longer than a probe.
 *
 * Set PARLEY_FUZZ_WRITE_SEEDS=dir to write the seed corpus and exit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley.h"
#include "path.h"
#include "relay.h"
#include "wire.h"

#define T0 ((pl_time)1800000000 * PL_SEC)

static pl_addr addr(const char *text)
{
    pl_addr a;
    if (!pl_addr_parse(&a, text, 0)) abort();
    return a;
}

/* ---- 0: the relay ---------------------------------------------------------------------- */

#define N_ALLOC 3
#define N_SOURCES 8

static const char *SOURCES[N_SOURCES] = {
    "198.51.100.1:5000", "198.51.100.2:6000",     "192.0.2.66:7000",  "203.0.113.1:3478",
    "198.51.100.1:5001", "198.51.100.2:40000/tcp", "[2001:db8::7]:9", "203.0.113.1:3479/tcp",
};

static void fuzz_relay(const uint8_t *data, size_t size)
{
    pl_rng_seeded rng;
    pl_rng_seeded_init(&rng, 1);
    pl_relay_config cfg = {.rng = &rng.rng, .max_allocations = 4, .max_per_client = 3, .max_pps = 40,
                           .max_bps = 8000, .idle_timeout = 5 * PL_SEC};
    cfg.udp_addr = addr(SOURCES[3]);
    cfg.tcp_addr = addr(SOURCES[7]);
    pl_relay *r;
    if (pl_relay_new(&r, &cfg) != PL_RELAY_ERR_OK) abort();
    static const uint8_t owner[32] = {1}, peer[32] = {2};
    pl_relay_grant g[N_ALLOC];
    pl_time now = T0;
    for (int i = 0; i < N_ALLOC; i++)
        if (pl_relay_allocate_channel(r, owner, peer, now, &g[i]) != PL_RELAY_OK) abort();
    /* Where each side last proved its token: the only place it may be sent to. */
    pl_addr proven[N_ALLOC][2];
    bool has_proven[N_ALLOC][2] = {{false}};
    pl_addr src[N_SOURCES];
    for (int i = 0; i < N_SOURCES; i++) src[i] = addr(SOURCES[i]);

    size_t off = 0;
    while (off + 3 <= size) {
        uint8_t sel = data[off], dt = data[off + 1], len = data[off + 2];
        off += 3;
        if (len > size - off) len = (uint8_t)(size - off);
        now += (pl_time)dt * 20 * PL_MSEC;
        if (dt & 1) pl_relay_tick(r, now);
        const pl_addr *from = &src[sel & 7];
        uint8_t pkt[PL_RELAY_MAX_PACKET + 8], before[PL_RELAY_MAX_PACKET + 8];
        size_t n;
        int ch = -1, side = -1;
        if (sel & 0x80) {
            /* Framing around the fuzzer's bytes, with a real channel and a
             * real (or a near-miss) token. */
            ch = (sel >> 3) % N_ALLOC;
            side = (sel >> 5) & 1;
            uint64_t token = side ? g[ch].token_peer : g[ch].token_self;
            if (sel & 0x40) token ^= 1;
            n = pl_relay_wrap(pkt, sizeof pkt, g[ch].channel, token, data + off, len);
            if (sel & 0x40) ch = -1;
        } else {
            memcpy(pkt, data + off, len);
            n = len;
        }
        off += len;
        if (n == 0) continue;
        memcpy(before, pkt, n);
        size_t out = n;
        pl_addr to;
        pl_relay_action act = pl_relay_forward(r, from, pkt, &out, now, &to);
        if (act != PL_RELAY_SEND) {
            if (memcmp(before, pkt, n) != 0) abort(); /* a drop changes nothing */
            /* A valid packet binds its side even when the other side has not
             * bound yet and it cannot be forwarded. */
            uint32_t c;
            uint64_t t;
            if (act == PL_RELAY_DROP_UNBOUND && pl_relay_parse(pkt, n, &c, &t))
                for (int i = 0; i < N_ALLOC; i++)
                    if (c == g[i].channel && (t == g[i].token_self || t == g[i].token_peer)) {
                        proven[i][t == g[i].token_peer] = *from;
                        has_proven[i][t == g[i].token_peer] = true;
                    }
            continue;
        }
        if (out > n) abort(); /* never amplify */
        if (pl_addr_equal(&to, &cfg.udp_addr) || pl_addr_equal(&to, &cfg.tcp_addr)) abort();
        uint32_t c;
        uint64_t t;
        if (!pl_relay_parse(pkt, out, &c, &t) || !pl_relay_parse(before, n, &c, &t)) abort();
        /* Which allocation and side the packet spoke for. */
        int a = -1, s = -1;
        for (int i = 0; i < N_ALLOC; i++) {
            if (c != g[i].channel) continue;
            a = i;
            s = t == g[i].token_self ? 0 : t == g[i].token_peer ? 1 : -1;
        }
        if (a < 0 || s < 0) abort(); /* sent for a channel or token that does not exist */
        if (ch >= 0 && (a != ch || s != side)) abort();
        proven[a][s] = *from;
        has_proven[a][s] = true;
        if (n == PL_RELAY_HEADER_SIZE) {
            /* A bind: answered to its sender with exactly its bytes. */
            if (!pl_addr_equal(&to, from) || out != n || memcmp(pkt, before, n) != 0) abort();
            continue;
        }
        /* Forwarded: to the other side's proven address, same channel and
         * inner bytes, the other side's token. */
        int o = !s;
        if (!has_proven[a][o] || !pl_addr_equal(&to, &proven[a][o])) abort();
        if (out != n || memcmp(pkt, before, 5) != 0 || memcmp(pkt + 13, before + 13, n - 13) != 0) abort();
        if (pl_get_u64be(pkt + 5) != (o ? g[a].token_peer : g[a].token_self)) abort();
    }
    /* Allocation messages from a client, attached or not, into the same relay. */
    if (size > 1) {
        uint8_t reply[256];
        size_t reply_len;
        static const uint8_t stranger[32] = {9};
        if (pl_relay_message(r, (data[0] & 0x10) ? owner : stranger, data[0] & 0x20, data + 1, size - 1, now, reply,
                             sizeof reply, &reply_len) &&
            reply_len) {
            pl_relay_grant back;
            if (pl_relay_decode_grant(&back, reply, reply_len) != PL_RELAY_ERR_OK) abort();
        }
    }
    pl_relay_free(r);
}

/* ---- 1: the codecs --------------------------------------------------------------------------- */

static void fuzz_codecs(const uint8_t *data, size_t size)
{
    uint8_t out[1024];
    pl_relay_allocate a;
    if (pl_relay_decode_allocate(&a, data, size) == PL_RELAY_ERR_OK) {
        size_t n = pl_relay_encode_allocate(out, sizeof out, &a);
        if (n != size || memcmp(out, data, size) != 0) abort();
    }
    pl_relay_grant g;
    if (pl_relay_decode_grant(&g, data, size) == PL_RELAY_ERR_OK) {
        size_t n = pl_relay_encode_grant(out, sizeof out, &g);
        if (n != size || memcmp(out, data, size) != 0) abort();
    }
    pl_relay_release rel;
    if (pl_relay_decode_release(&rel, data, size) == PL_RELAY_ERR_OK) {
        size_t n = pl_relay_encode_release(out, sizeof out, &rel);
        if (n != size || memcmp(out, data, size) != 0) abort();
    }
    pl_path_offer o;
    if (pl_path_decode_offer(&o, data, size) == PL_PATH_OK) {
        size_t n = pl_path_encode_offer(out, sizeof out, &o);
        if (n != size || memcmp(out, data, size) != 0) abort();
    }
    uint32_t c;
    uint64_t t;
    if (pl_relay_parse(data, size, &c, &t) != (size >= PL_RELAY_HEADER_SIZE && size <= PL_RELAY_MAX_PACKET &&
                                               data[0] == PL_RELAY_MAGIC))
        abort();
}

/* ---- 2: the path manager ------------------------------------------------------------------------ */

typedef struct pm_fixture {
    pl_path *pm;
    bool privacy;
    pl_addr own_relay;
    uint64_t sends, messages;
} pm_fixture;

static void pm_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    pm_fixture *f = ctx;
    (void)data;
    if (pl_path_virtual_owner(to, NULL)) abort(); /* a virtual address reached the network */
    if (f->privacy && !pl_addr_equal(to, &f->own_relay)) abort();
    if (len > PL_RELAY_MAX_PACKET) abort();
    f->sends++;
}

static bool pm_message(void *ctx, const pl_addr *path_addr, const uint8_t *msg, size_t len, pl_time now)
{
    pm_fixture *f = ctx;
    (void)now;
    if (f->privacy && !pl_path_virtual_owner(path_addr, NULL)) abort();
    if (len > PL_PATH_PROBE_SIZE) abort(); /* path messages are probes and answers */
    if (msg[0] != PL_PATH_MSG_PROBE && msg[0] != PL_PATH_MSG_ACK) abort();
    f->messages++;
    return true;
}

static void fuzz_path(const uint8_t *data, size_t size)
{
    if (size < 1) return;
    pm_fixture f;
    memset(&f, 0, sizeof f);
    f.privacy = data[0] & 1;
    f.own_relay = addr("203.0.113.1:3478");
    pl_path_config cfg = {.id = 77, .controlling = data[0] & 2, .privacy = f.privacy};
    pl_path_io io = {&f, pm_send, pm_message, NULL};
    if (pl_path_new(&f.pm, &cfg, &io) != PL_PATH_OK) abort();
    pl_time now = T0;
    pl_addr peer1 = addr("198.51.100.2:6000"), peer2 = addr("[2001:db8::2]:6001");
    pl_addr peer_relay = addr("203.0.113.2:3479/tcp"), stranger = addr("192.0.2.66:7000");
    pl_path_add_direct(f.pm, &peer1, now);
    pl_path_add_direct(f.pm, &peer2, now);
    pl_path_add_relay(f.pm, &f.own_relay, 11, 0x1111, true, now);
    pl_path_add_relay(f.pm, &peer_relay, 22, 0x2222, false, now);
    /* The path addresses, as the driver would see them. */
    pl_addr froms[8];
    int n_froms = 0;
    for (int s = 0; s < PL_PATH_MAX && n_froms < 6; s++) {
        pl_path_info info;
        if (pl_path_get(f.pm, s, &info)) froms[n_froms++] = info.addr;
    }
    froms[n_froms++] = stranger;
    froms[n_froms++] = *pl_path_session_addr(f.pm);
    if (data[0] & 4) pl_path_session_up(f.pm, &froms[(data[0] >> 4) % n_froms], now);

    size_t off = 1;
    while (off + 3 <= size) {
        uint8_t sel = data[off], dt = data[off + 1], len = data[off + 2];
        off += 3;
        if (len > size - off) len = (uint8_t)(size - off);
        const uint8_t *body = data + off;
        off += len;
        now += (pl_time)dt * 5 * PL_MSEC;
        if (now >= pl_path_next_timeout(f.pm)) pl_path_tick(f.pm, now);
        const pl_addr *from = &froms[(sel >> 3) % n_froms];
        uint8_t buf[PL_RELAY_MAX_PACKET];
        switch (sel & 7) {
        case 0: /* an authenticated payload as the fuzzer wrote it */
            pl_path_receive(f.pm, from, body, len, now);
            break;
        case 1: /* a probe with the fuzzer's flags, tag and stamp */
        case 2: /* an answer */
            buf[0] = (sel & 7) == 1 ? PL_PATH_MSG_PROBE : PL_PATH_MSG_ACK;
            memset(buf + 1, 0, PL_PATH_PROBE_SIZE - 1);
            memcpy(buf + 1, body, len < PL_PATH_PROBE_SIZE - 1 ? len : PL_PATH_PROBE_SIZE - 1);
            if (sel & 0x80) pl_put_u64be(buf + ((sel & 7) == 1 ? 3 : 2), now - (pl_time)len * PL_MSEC);
            pl_path_receive(f.pm, from, buf, (sel & 7) == 1 ? PL_PATH_PROBE_SIZE : PL_PATH_ACK_SIZE, now);
            break;
        case 3: { /* a relay-framed datagram from a relay (or anyone) */
            const pl_addr *relay = (sel & 0x40) ? &peer_relay : &f.own_relay;
            uint32_t ch = (sel & 0x40) ? 22 : 11;
            uint64_t tok = (sel & 0x40) ? 0x2222 : 0x1111;
            size_t n = pl_relay_wrap(buf, sizeof buf, ch, (sel & 0x80) ? tok : tok ^ 1, body, len);
            pl_addr pa;
            const uint8_t *inner;
            size_t inner_len;
            if (pl_path_unwrap(f.pm, (sel & 0x20) ? from : relay, buf, n, &pa, &inner, &inner_len, now) ==
                PL_PATH_INNER) {
                if (!pl_path_virtual_owner(&pa, NULL)) abort();
                pl_path_receive(f.pm, &pa, inner, inner_len, now);
            }
            break;
        }
        case 4: /* raw bytes that might be framing */
        {
            pl_addr pa;
            const uint8_t *inner;
            size_t inner_len;
            pl_path_unwrap(f.pm, from, body, len, &pa, &inner, &inner_len, now);
            break;
        }
        case 5: /* the session sends to one of the manager's addresses */
            pl_path_send(f.pm, from, body, len, now);
            break;
        case 6: /* an offer, applied */
        {
            pl_path_offer o;
            if (pl_path_decode_offer(&o, body, len) == PL_PATH_OK) pl_path_apply_offer(f.pm, &o, now);
            break;
        }
        default:
            pl_path_session_up(f.pm, from, now);
            break;
        }
    }
    now += 30 * PL_SEC;
    pl_path_tick(f.pm, now);
    pl_path_info active;
    pl_path_active(f.pm, &active);
    if (f.privacy && active.slot >= 0 && active.kind == PL_PATH_DIRECT) abort();
    pl_path_free(f.pm);
}

/* ---- seeds and entry ------------------------------------------------------------------------------ */

static void write_seed(const char *dir, const char *name, const uint8_t *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(data, 1, len, fp) != len || fclose(fp) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static void write_seeds(const char *dir)
{
    uint8_t b[512];
    size_t n = 0;
    /* 0: both sides of channel 0 bind, then talk; a stranger knocks. */
    b[n++] = 0;
    uint8_t recs[][3] = {{0x80 | 0 | (0 << 3) | (0 << 5), 0, 0}, {0x80 | 1 | (0 << 3) | (1 << 5), 0, 0},
                         {0x80 | 0 | (0 << 3) | (0 << 5), 2, 4}, {0x80 | 1 | (0 << 3) | (1 << 5), 2, 4},
                         {2, 1, 13}, {0x80 | 4 | (0 << 3) | (0 << 5), 60, 0}};
    for (size_t i = 0; i < sizeof recs / sizeof recs[0]; i++) {
        memcpy(b + n, recs[i], 3);
        n += 3;
        memset(b + n, 0xAB, recs[i][2]);
        n += recs[i][2];
    }
    write_seed(dir, "relay_talk", b, n);
    /* 1: codecs. */
    b[0] = 1;
    pl_relay_allocate a = {.req = 5};
    n = pl_relay_encode_allocate(b + 1, sizeof b - 1, &a);
    write_seed(dir, "codec_allocate", b, n + 1);
    pl_relay_grant g = {.req = 5, .status = PL_RELAY_OK, .channel = 9, .idle_s = 60, .token_self = 1, .token_peer = 2,
                        .n_addrs = 2};
    g.addrs[0] = addr("203.0.113.1:3478");
    g.addrs[1] = addr("203.0.113.1:3479/tcp");
    n = pl_relay_encode_grant(b + 1, sizeof b - 1, &g);
    write_seed(dir, "codec_grant", b, n + 1);
    pl_path_offer o;
    memset(&o, 0, sizeof o);
    o.n_candidates = 1;
    o.candidates[0] = (pl_record_candidate){PL_CAND_SERVER_REFLEXIVE, PL_TRANSPORT_UDP, 1, addr("198.51.100.9:4")};
    o.n_relays = 1;
    o.relays[0] = (pl_path_offer_relay){addr("203.0.113.1:3478"), 9, 2};
    n = pl_path_encode_offer(b + 1, sizeof b - 1, &o);
    write_seed(dir, "codec_offer", b, n + 1);
    /* 2: a path manager: session up, probes and answers on every path. */
    n = 0;
    b[n++] = 2;
    b[n++] = 4 | 2;
    for (uint8_t path = 0; path < 5; path++) {
        uint8_t probe[] = {(uint8_t)(1 | (path << 3)), 4, 10, PL_PATH_F_ACK_REQ, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        memcpy(b + n, probe, sizeof probe);
        n += sizeof probe;
        uint8_t ack[] = {(uint8_t)(0x80 | 2 | (path << 3)), 4, 1, (uint8_t)path};
        memcpy(b + n, ack, sizeof ack);
        n += sizeof ack;
    }
    write_seed(dir, "path_probes", b, n);
    b[1] = 4 | 1; /* privacy */
    write_seed(dir, "path_privacy", b, n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!pl_init()) abort();
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
    if (size < 1) return 0;
    switch (data[0] % 3) {
    case 0: fuzz_relay(data + 1, size - 1); break;
    case 1: fuzz_codecs(data + 1, size - 1); break;
    default: fuzz_path(data + 1, size - 1); break;
    }
    return 0;
}
