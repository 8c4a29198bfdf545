/*
 * test_relay.c - the supernode's media relay, stated as rules.
 *
 * A relay core runs at a simulated supernode address and forwards what the
 * simulator delivers to it; endpoints are plain simulated addresses that
 * record what reaches them, so a test can see not only what was forwarded
 * but that nothing at all was sent to anyone else (no open proxy, no
 * reflection). The last test runs two users' real secure session through
 * the relay, one side over UDP and the other over "TCP".
 */
#include <sodium.h>
#include <stdlib.h>

#include "pki.h"
#include "relay.h"
#include "simnet.h"
#include "test.h"
#include "wire.h"

#define T0 ((pl_time)1800000000 * PL_SEC)
#define MAX_SEEN 512

typedef struct seen {
    pl_addr from;
    size_t len;
    uint8_t data[PL_RELAY_MAX_PACKET];
} seen;

/* A simulated endpoint that records what reaches it. */
typedef struct endpoint {
    pl_addr addr;
    seen got[MAX_SEEN];
    int n;
} endpoint;

typedef struct harness {
    pl_simnet *net;
    pl_relay *relay;
    pl_addr udp, tcp;       /* the relay's addresses */
    uint64_t sent_by_relay; /* datagrams the relay sent */
    pl_relay_action last;   /* the relay's last verdict */
    uint64_t timer;         /* the relay's sweep, as a driver schedules it */
    struct {
        pl_addr to;
        size_t len;
    } sends[4096];
} harness;

static pl_addr addr(const char *text)
{
    pl_addr a;
    if (!pl_addr_parse(&a, text, 0)) abort();
    return a;
}

static void endpoint_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len,
                          pl_time now)
{
    endpoint *e = ctx;
    (void)to;
    (void)now;
    if (e->n == MAX_SEEN) return;
    seen *s = &e->got[e->n++];
    s->from = *from;
    s->len = len;
    memcpy(s->data, data, len);
}

/* The relay's timer: tick when it asks to be ticked. */
static void relay_schedule(harness *h);
static void relay_timer(void *ctx, pl_time now)
{
    harness *h = ctx;
    h->timer = 0;
    pl_relay_tick(h->relay, now);
    relay_schedule(h);
}
static void relay_schedule(harness *h)
{
    if (h->timer) pl_simnet_timer_cancel(h->net, h->timer);
    h->timer = 0;
    pl_time t = pl_relay_next_timeout(h->relay);
    if (t != PL_TIME_NEVER) h->timer = pl_simnet_timer(h->net, t, relay_timer, h);
}

/* The relay's driver: every datagram that reaches one of its addresses goes
 * to the core; a datagram that reached the TCP address is marked TCP, as the
 * daemon marks frames from a stream. */
static void relay_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len,
                       pl_time now)
{
    harness *h = ctx;
    pl_addr src = *from;
    if (to->port == h->tcp.port && pl_addr_same_host(to, &h->tcp)) src.transport = PL_ADDR_TCP;
    uint8_t pkt[PL_RELAY_MAX_PACKET + 64];
    if (len > sizeof pkt) return;
    memcpy(pkt, data, len);
    size_t n = len;
    pl_addr dst;
    h->last = pl_relay_forward(h->relay, &src, pkt, &n, now, &dst);
    relay_schedule(h);
    if (h->last != PL_RELAY_SEND) return;
    if (h->sent_by_relay < 4096) {
        h->sends[h->sent_by_relay].to = dst;
        h->sends[h->sent_by_relay].len = n;
    }
    h->sent_by_relay++;
    pl_simnet_send(h->net, dst.transport == PL_ADDR_TCP ? &h->tcp : &h->udp, &dst, pkt, n);
}

static harness *harness_new(const pl_relay_config *tmpl)
{
    harness *h = calloc(1, sizeof *h);
    CHECK(h != NULL);
    h->net = pl_simnet_new(42, T0);
    pl_simnet_set_default_link(h->net, (pl_sim_link){10 * PL_MSEC, 0, 0});
    h->udp = addr("203.0.113.1:3478");
    h->tcp = addr("203.0.113.1:3479/tcp");
    pl_relay_config cfg = tmpl ? *tmpl : (pl_relay_config){0};
    cfg.rng = pl_simnet_rng(h->net);
    cfg.udp_addr = h->udp;
    cfg.tcp_addr = h->tcp;
    CHECK_EQ(pl_relay_new(&h->relay, &cfg), PL_RELAY_ERR_OK);
    CHECK(pl_simnet_attach(h->net, &h->udp, relay_recv, h));
    CHECK(pl_simnet_attach(h->net, &h->tcp, relay_recv, h));
    return h;
}

static void harness_free(harness *h)
{
    if (h->timer) pl_simnet_timer_cancel(h->net, h->timer);
    pl_relay_free(h->relay);
    pl_simnet_free(h->net);
    free(h);
}

static void attach(harness *h, endpoint *e, const char *text)
{
    memset(e, 0, sizeof *e);
    e->addr = addr(text);
    CHECK(pl_simnet_attach(h->net, &e->addr, endpoint_recv, e));
}

static const uint8_t OWNER[32] = {1}, PEER[32] = {2}, OTHER[32] = {3};

static pl_relay_grant allocate(harness *h, const uint8_t owner[32])
{
    pl_relay_grant g = {.req = 9};
    CHECK_EQ(pl_relay_allocate_channel(h->relay, owner, PEER, pl_simnet_now(h->net), &g), PL_RELAY_OK);
    CHECK_EQ(g.req, 9);
    relay_schedule(h);
    return g;
}

/* Sends [0xF1][channel][token][payload] from e to the relay address `to`. */
static void send_framed(harness *h, const pl_addr *from, const pl_addr *to, uint32_t channel, uint64_t token,
                        const char *payload)
{
    uint8_t buf[PL_RELAY_MAX_PACKET];
    size_t n = pl_relay_wrap(buf, sizeof buf, channel, token, (const uint8_t *)payload, strlen(payload));
    CHECK(n == PL_RELAY_HEADER_SIZE + strlen(payload));
    pl_simnet_send(h->net, from, to, buf, n);
}

static void settle(harness *h) { pl_simnet_run_until(h->net, pl_simnet_now(h->net) + 50 * PL_MSEC); }

static bool got_payload(const seen *s, uint32_t channel, uint64_t token, const char *payload)
{
    uint32_t c;
    uint64_t t;
    return pl_relay_parse(s->data, s->len, &c, &t) && c == channel && t == token &&
           s->len == PL_RELAY_HEADER_SIZE + strlen(payload) &&
           memcmp(s->data + PL_RELAY_HEADER_SIZE, payload, strlen(payload)) == 0;
}

/* ---- messages ------------------------------------------------------------------------- */

static void allocation_messages_round_trip_and_refuse_what_is_not_canonical(void)
{
    uint8_t buf[256];
    pl_relay_allocate a = {.req = 0x01020304}, a2;
    memset(a.peer_pk, 0xAB, 32);
    size_t n = pl_relay_encode_allocate(buf, sizeof buf, &a);
    CHECK_EQ(n, 37);
    CHECK_EQ(buf[0], PL_OVL_RELAY_ALLOCATE);
    CHECK_EQ(pl_relay_decode_allocate(&a2, buf, n), PL_RELAY_ERR_OK);
    CHECK(a2.req == a.req && memcmp(a2.peer_pk, a.peer_pk, 32) == 0);
    CHECK_EQ(pl_relay_decode_allocate(&a2, buf, n - 1), PL_RELAY_ERR_MALFORMED);
    buf[n] = 0;
    CHECK_EQ(pl_relay_decode_allocate(&a2, buf, n + 1), PL_RELAY_ERR_MALFORMED);
    CHECK_EQ(pl_relay_encode_allocate(buf, 36, &a), 0);

    pl_relay_grant g = {.req = 7, .status = PL_RELAY_OK, .channel = 0xDEADBEEF, .idle_s = 60,
                        .token_self = 0x1111222233334444ull, .token_peer = 0x5555666677778888ull, .n_addrs = 2};
    g.addrs[0] = addr("203.0.113.1:3478");
    g.addrs[1] = addr("[2001:db8::1]:3479/tcp");
    n = pl_relay_encode_grant(buf, sizeof buf, &g);
    /* type 1, req 4, status 1, channel 4, idle 2, tokens 16, n 1, (1 + 7), (1 + 19) */
    CHECK_EQ(n, 1 + 4 + 1 + 4 + 2 + 16 + 1 + 8 + 20);
    pl_relay_grant g2;
    CHECK_EQ(pl_relay_decode_grant(&g2, buf, n), PL_RELAY_ERR_OK);
    CHECK(g2.channel == g.channel && g2.idle_s == 60 && g2.token_self == g.token_self &&
          g2.token_peer == g.token_peer && g2.n_addrs == 2);
    CHECK(pl_addr_equal(&g2.addrs[0], &g.addrs[0]) && pl_addr_equal(&g2.addrs[1], &g.addrs[1]));
    CHECK_EQ(g2.addrs[1].transport, PL_ADDR_TCP);
    for (size_t cut = 0; cut < n; cut++) CHECK_EQ(pl_relay_decode_grant(&g2, buf, cut), PL_RELAY_ERR_MALFORMED);
    /* Non-canonical grants are neither written nor read. */
    pl_relay_grant bad = g;
    bad.token_peer = bad.token_self;
    CHECK_EQ(pl_relay_encode_grant(buf, sizeof buf, &bad), 0);
    bad = g;
    bad.channel = 0;
    CHECK_EQ(pl_relay_encode_grant(buf, sizeof buf, &bad), 0);
    bad = g;
    bad.addrs[0] = g.addrs[1]; /* TCP before UDP */
    bad.addrs[1] = g.addrs[0];
    CHECK_EQ(pl_relay_encode_grant(buf, sizeof buf, &bad), 0);
    n = pl_relay_encode_grant(buf, sizeof buf, &g);
    buf[5] = 9; /* an unknown status */
    CHECK_EQ(pl_relay_decode_grant(&g2, buf, n), PL_RELAY_ERR_MALFORMED);
    buf[5] = PL_RELAY_OK;
    buf[n - 20] = 3; /* an unknown transport */
    CHECK_EQ(pl_relay_decode_grant(&g2, buf, n), PL_RELAY_ERR_MALFORMED);

    /* A refusal is the request id and the status, nothing after. */
    pl_relay_grant no = {.req = 5, .status = PL_RELAY_FULL};
    n = pl_relay_encode_grant(buf, sizeof buf, &no);
    CHECK_EQ(n, 6);
    CHECK_EQ(pl_relay_decode_grant(&g2, buf, n), PL_RELAY_ERR_OK);
    CHECK(g2.status == PL_RELAY_FULL && g2.req == 5);
    buf[n] = 0;
    CHECK_EQ(pl_relay_decode_grant(&g2, buf, n + 1), PL_RELAY_ERR_MALFORMED);

    pl_relay_release rel = {.channel = 77}, rel2;
    n = pl_relay_encode_release(buf, sizeof buf, &rel);
    CHECK_EQ(n, 5);
    CHECK_EQ(pl_relay_decode_release(&rel2, buf, n), PL_RELAY_ERR_OK);
    CHECK_EQ(rel2.channel, 77);
    rel.channel = 0;
    CHECK_EQ(pl_relay_encode_release(buf, sizeof buf, &rel), 0);
}

static void framing_is_told_apart_from_sessions_and_stun(void)
{
    uint8_t buf[64];
    CHECK_EQ(pl_relay_wrap(buf, sizeof buf, 5, 6, NULL, 0), PL_RELAY_HEADER_SIZE);
    CHECK(pl_relay_is_framed(buf, 13));
    uint32_t c;
    uint64_t t;
    CHECK(pl_relay_parse(buf, 13, &c, &t) && c == 5 && t == 6);
    CHECK(!pl_relay_parse(buf, 12, &c, &t));
    buf[0] = 0x01; /* a session handshake initiation starts 0x01 0x00 0x00 0x00 */
    CHECK(!pl_relay_is_framed(buf, 13));
    CHECK(!pl_relay_parse(buf, 13, &c, &t));
    buf[0] = 0x00; /* a STUN Binding request starts 0x00 0x01 */
    CHECK(!pl_relay_is_framed(buf, 13));
    CHECK_EQ(pl_relay_wrap(buf, 20, 1, 2, buf, PL_RELAY_MAX_INNER + 1), 0);
    CHECK_EQ(pl_relay_wrap(buf, 12, 1, 2, NULL, 0), 0);
}

/* ---- forwarding -------------------------------------------------------------------------- */

static void relay_forwards_between_the_two_parties_with_each_side_seeing_only_its_token(void)
{
    harness *h = harness_new(NULL);
    static endpoint a, b;
    attach(h, &a, "198.51.100.1:5000");
    attach(h, &b, "198.51.100.2:6000");
    pl_relay_grant g = allocate(h, OWNER);
    CHECK(g.n_addrs == 2 && pl_addr_equal(&g.addrs[0], &h->udp) && pl_addr_equal(&g.addrs[1], &h->tcp));

    /* A's first packet binds it; B is not bound yet, so there is nowhere to send. */
    send_framed(h, &a.addr, &h->udp, g.channel, g.token_self, "early");
    settle(h);
    CHECK_EQ(h->last, PL_RELAY_DROP_UNBOUND);
    CHECK_EQ(h->sent_by_relay, 0);

    /* B binds with an empty packet and is answered with those 13 bytes. */
    send_framed(h, &b.addr, &h->udp, g.channel, g.token_peer, "");
    settle(h);
    CHECK_EQ(b.n, 1);
    CHECK(got_payload(&b.got[0], g.channel, g.token_peer, "") && pl_addr_equal(&b.got[0].from, &h->udp));

    send_framed(h, &a.addr, &h->udp, g.channel, g.token_self, "hello B");
    send_framed(h, &b.addr, &h->udp, g.channel, g.token_peer, "hello A");
    settle(h);
    CHECK_EQ(b.n, 2);
    CHECK(got_payload(&b.got[1], g.channel, g.token_peer, "hello B"));
    CHECK_EQ(a.n, 1);
    CHECK(got_payload(&a.got[0], g.channel, g.token_self, "hello A"));
    CHECK(pl_addr_equal(&a.got[0].from, &h->udp));

    pl_relay_stats st = pl_relay_get_stats(h->relay);
    CHECK_EQ(st.forwarded, 2);
    CHECK_EQ(st.binds, 1);
    CHECK_EQ(st.drop_unbound, 1);
    CHECK_EQ(st.allocations, 1);
    /* Everything the relay sent went to one of the two parties. */
    for (uint64_t i = 0; i < h->sent_by_relay; i++)
        CHECK(pl_addr_equal(&h->sends[i].to, &a.addr) || pl_addr_equal(&h->sends[i].to, &b.addr));
    harness_free(h);
}

static void invalid_packets_are_dropped_counted_and_never_answered(void)
{
    harness *h = harness_new(NULL);
    static endpoint a, b, mallory;
    attach(h, &a, "198.51.100.1:5000");
    attach(h, &b, "198.51.100.2:6000");
    attach(h, &mallory, "192.0.2.66:7000");
    pl_relay_grant g = allocate(h, OWNER);
    send_framed(h, &a.addr, &h->udp, g.channel, g.token_self, "");
    send_framed(h, &b.addr, &h->udp, g.channel, g.token_peer, "");
    settle(h);
    uint64_t sent_before = h->sent_by_relay;
    CHECK_EQ(sent_before, 2);

    /* A spoofed source: A's token, from Mallory's address. Data never re-binds. */
    send_framed(h, &mallory.addr, &h->udp, g.channel, g.token_self, "let me in");
    settle(h);
    CHECK_EQ(h->last, PL_RELAY_DROP_SOURCE);
    /* A token that is neither side's. */
    send_framed(h, &mallory.addr, &h->udp, g.channel, g.token_self ^ 1, "guess");
    settle(h);
    CHECK_EQ(h->last, PL_RELAY_DROP_TOKEN);
    /* A channel that does not exist. */
    send_framed(h, &mallory.addr, &h->udp, g.channel + 1, g.token_self, "knock");
    settle(h);
    CHECK_EQ(h->last, PL_RELAY_DROP_CHANNEL);
    /* Too short, too long, wrong magic. */
    uint8_t junk[PL_RELAY_MAX_PACKET + 1];
    memset(junk, PL_RELAY_MAGIC, sizeof junk);
    pl_simnet_send(h->net, &mallory.addr, &h->udp, junk, 12);
    settle(h);
    CHECK_EQ(h->last, PL_RELAY_DROP_MALFORMED);
    pl_simnet_send(h->net, &mallory.addr, &h->udp, junk, sizeof junk);
    settle(h);
    CHECK_EQ(h->last, PL_RELAY_DROP_MALFORMED);
    /* A spoofed source that is the relay itself could make it talk to itself. */
    pl_relay_grant g2 = allocate(h, OWNER);
    send_framed(h, &h->udp, &h->udp, g2.channel, g2.token_self, "loop");
    settle(h);
    CHECK_EQ(h->last, PL_RELAY_DROP_SELF);

    pl_relay_stats st = pl_relay_get_stats(h->relay);
    CHECK_EQ(st.drop_source, 1);
    CHECK_EQ(st.drop_token, 1);
    CHECK_EQ(st.drop_channel, 1);
    CHECK_EQ(st.drop_malformed, 2);
    CHECK_EQ(st.drop_self, 1);
    CHECK_EQ(st.forwarded, 0);
    /* Not one datagram went out for any of them: no answer, no reflection. */
    CHECK_EQ(h->sent_by_relay, sent_before);
    CHECK_EQ(mallory.n, 0);
    CHECK_EQ(a.n, 1); /* only A's own bind answer */
    CHECK_EQ(b.n, 1);

    /* A bind with a valid token from a new address moves the side (a NAT that
     * re-mapped); the answer goes to the new address, which has the token. */
    static endpoint a2;
    attach(h, &a2, "198.51.100.1:5001");
    send_framed(h, &a2.addr, &h->udp, g.channel, g.token_self, "");
    settle(h);
    CHECK_EQ(a2.n, 1);
    send_framed(h, &b.addr, &h->udp, g.channel, g.token_peer, "to the new A");
    settle(h);
    CHECK_EQ(a2.n, 2);
    CHECK(got_payload(&a2.got[1], g.channel, g.token_self, "to the new A"));
    CHECK_EQ(a.n, 1);
    /* Moving back at once is refused: at most one move a second. */
    send_framed(h, &a.addr, &h->udp, g.channel, g.token_self, "");
    settle(h);
    CHECK_EQ(h->last, PL_RELAY_DROP_REBIND);
    CHECK_EQ(a.n, 1);
    pl_simnet_run_until(h->net, pl_simnet_now(h->net) + PL_SEC);
    send_framed(h, &a.addr, &h->udp, g.channel, g.token_self, "");
    settle(h);
    CHECK_EQ(a.n, 2);
    st = pl_relay_get_stats(h->relay);
    CHECK_EQ(st.rebinds, 2);
    CHECK_EQ(st.drop_rebind, 1);
    harness_free(h);
}

static void idle_allocations_expire(void)
{
    pl_relay_config cfg = {.idle_timeout = 5 * PL_SEC};
    harness *h = harness_new(&cfg);
    static endpoint a, b;
    attach(h, &a, "198.51.100.1:5000");
    attach(h, &b, "198.51.100.2:6000");
    pl_relay_grant g1 = allocate(h, OWNER), g2 = allocate(h, OWNER);
    CHECK(g1.idle_s == 5 && g1.channel != g2.channel);
    send_framed(h, &a.addr, &h->udp, g1.channel, g1.token_self, "");
    send_framed(h, &b.addr, &h->udp, g1.channel, g1.token_peer, "");
    settle(h);
    /* Traffic keeps g1 alive; g2 sees none. */
    for (int i = 0; i < 8; i++) {
        send_framed(h, &a.addr, &h->udp, g1.channel, g1.token_self, "talk");
        pl_simnet_run_until(h->net, pl_simnet_now(h->net) + PL_SEC);
    }
    CHECK_EQ(b.n, 1 + 8);
    pl_relay_stats st = pl_relay_get_stats(h->relay);
    CHECK_EQ(st.expired, 1);
    CHECK_EQ(st.allocations, 1);
    send_framed(h, &a.addr, &h->udp, g2.channel, g2.token_self, "late");
    settle(h);
    CHECK_EQ(h->last, PL_RELAY_DROP_CHANNEL);

    /* Without a sweep in between, a packet on an allocation past its lifetime
     * is dropped as expired, and ends it. */
    pl_simnet_timer_cancel(h->net, h->timer);
    h->timer = 0;
    pl_time now = pl_simnet_now(h->net);
    pl_simnet_run_until(h->net, now + 6 * PL_SEC);
    send_framed(h, &a.addr, &h->udp, g1.channel, g1.token_self, "too late");
    settle(h);
    CHECK_EQ(h->last, PL_RELAY_DROP_EXPIRED);
    st = pl_relay_get_stats(h->relay);
    CHECK_EQ(st.drop_expired, 1);
    CHECK_EQ(st.expired, 2);
    CHECK_EQ(st.allocations, 0);
    CHECK_EQ(pl_relay_next_timeout(h->relay), PL_TIME_NEVER);
    send_framed(h, &a.addr, &h->udp, g1.channel, g1.token_self, "gone");
    settle(h);
    CHECK_EQ(h->last, PL_RELAY_DROP_CHANNEL);
    CHECK_EQ(b.n, 9);
    harness_free(h);
}

static void limits_per_client_per_relay_and_per_side_hold(void)
{
    pl_relay_config cfg = {.max_allocations = 5, .max_per_client = 3, .max_pps = 100, .max_bps = 20000};
    harness *h = harness_new(&cfg);
    pl_time now = pl_simnet_now(h->net);
    pl_relay_grant g[3];
    for (int i = 0; i < 3; i++) g[i] = allocate(h, OWNER);
    pl_relay_grant x = {0};
    CHECK_EQ(pl_relay_allocate_channel(h->relay, OWNER, PEER, now, &x), PL_RELAY_CLIENT_LIMIT);
    allocate(h, OTHER);
    allocate(h, OTHER);
    CHECK_EQ(pl_relay_allocate_channel(h->relay, OTHER, PEER, now, &x), PL_RELAY_FULL);
    /* Releasing frees a place; only the owner may release. */
    CHECK(!pl_relay_release_channel(h->relay, OTHER, g[0].channel));
    CHECK(pl_relay_release_channel(h->relay, OWNER, g[0].channel));
    CHECK(!pl_relay_release_channel(h->relay, OWNER, g[0].channel));
    CHECK_EQ(pl_relay_allocate_channel(h->relay, OWNER, PEER, now, &x), PL_RELAY_OK);
    pl_relay_stats st = pl_relay_get_stats(h->relay);
    CHECK_EQ(st.refused_client_limit, 1);
    CHECK_EQ(st.refused_full, 1);
    CHECK_EQ(st.released, 1);
    CHECK_EQ(st.allocations, 5);

    /* Packet rate: a burst of a quarter second's worth, then the rate. */
    static endpoint a, b;
    attach(h, &a, "198.51.100.1:5000");
    attach(h, &b, "198.51.100.2:6000");
    pl_relay_grant c = g[1];
    send_framed(h, &b.addr, &h->udp, c.channel, c.token_peer, "");
    settle(h);
    for (int i = 0; i < 60; i++) send_framed(h, &a.addr, &h->udp, c.channel, c.token_self, "x");
    settle(h);
    CHECK_EQ(b.n, 1 + 25); /* the bind answer, then 100/4 packets */
    st = pl_relay_get_stats(h->relay);
    CHECK_EQ(st.drop_rate, 35);
    /* A second later the bucket is full again; a steady 100/s passes whole. */
    pl_simnet_run_until(h->net, pl_simnet_now(h->net) + PL_SEC);
    int before = b.n;
    for (int i = 0; i < 100; i++) {
        send_framed(h, &a.addr, &h->udp, c.channel, c.token_self, "y");
        pl_simnet_run_until(h->net, pl_simnet_now(h->net) + 10 * PL_MSEC);
    }
    settle(h);
    CHECK_EQ(b.n - before, 100);
    /* The other side has its own buckets. */
    st = pl_relay_get_stats(h->relay);
    uint64_t dropped = st.drop_rate;
    for (int i = 0; i < 20; i++) send_framed(h, &b.addr, &h->udp, c.channel, c.token_peer, "z");
    settle(h);
    CHECK_EQ(pl_relay_get_stats(h->relay).drop_rate, dropped);

    /* Byte rate: 20000 B/s gives a 5000-byte burst: four 1200-byte packets. */
    pl_simnet_run_until(h->net, pl_simnet_now(h->net) + PL_SEC);
    char big[1201];
    memset(big, 'b', 1200);
    big[1200] = 0;
    before = b.n;
    for (int i = 0; i < 10; i++) send_framed(h, &a.addr, &h->udp, c.channel, c.token_self, big);
    settle(h);
    CHECK_EQ(b.n - before, 4);
    harness_free(h);
}

static void allocation_requests_answer_only_attached_nodes(void)
{
    pl_relay_config strict = {.no_standby = true};
    harness *h = harness_new(&strict);
    pl_time now = pl_simnet_now(h->net);
    uint8_t msg[64], out[256];
    size_t out_len;
    pl_relay_allocate req = {.req = 42};
    memcpy(req.peer_pk, PEER, 32);
    size_t n = pl_relay_encode_allocate(msg, sizeof msg, &req);
    CHECK(pl_relay_message(h->relay, OTHER, false, msg, n, now, out, sizeof out, &out_len));
    pl_relay_grant g;
    CHECK_EQ(pl_relay_decode_grant(&g, out, out_len), PL_RELAY_ERR_OK);
    CHECK(g.req == 42 && g.status == PL_RELAY_NOT_CLIENT);
    CHECK_EQ(pl_relay_get_stats(h->relay).allocations, 0);

    CHECK(pl_relay_message(h->relay, OWNER, true, msg, n, now, out, sizeof out, &out_len));
    CHECK_EQ(pl_relay_decode_grant(&g, out, out_len), PL_RELAY_ERR_OK);
    CHECK(g.req == 42 && g.status == PL_RELAY_OK && g.channel != 0 && g.n_addrs == 2);
    CHECK_EQ(pl_relay_get_stats(h->relay).allocations, 1);

    /* A malformed request is consumed without an answer. */
    CHECK(pl_relay_message(h->relay, OWNER, true, msg, n - 1, now, out, sizeof out, &out_len));
    CHECK_EQ(out_len, 0);
    /* Somebody else's release is ignored; the owner's ends it. */
    pl_relay_release rel = {.channel = g.channel};
    n = pl_relay_encode_release(msg, sizeof msg, &rel);
    CHECK(pl_relay_message(h->relay, OTHER, true, msg, n, now, out, sizeof out, &out_len));
    CHECK_EQ(out_len, 0);
    CHECK_EQ(pl_relay_get_stats(h->relay).allocations, 1);
    CHECK(pl_relay_message(h->relay, OWNER, true, msg, n, now, out, sizeof out, &out_len));
    CHECK_EQ(pl_relay_get_stats(h->relay).allocations, 0);
    /* Types that are not the relay's are left to others. */
    msg[0] = PL_OVL_RELAY_ALLOCATED;
    CHECK(!pl_relay_message(h->relay, OWNER, true, msg, n, now, out, sizeof out, &out_len));
    msg[0] = 0x06;
    CHECK(!pl_relay_message(h->relay, OWNER, true, msg, n, now, out, sizeof out, &out_len));
    harness_free(h);
}

/* A node attached to another supernode gets a standby relay here: a few
 * allocations, then CLIENT_LIMIT; attached nodes keep their own, larger
 * share. */
static void nodes_attached_elsewhere_get_a_few_standby_allocations(void)
{
    harness *h = harness_new(NULL);
    pl_time now = pl_simnet_now(h->net);
    uint8_t msg[64], out[256];
    size_t out_len;
    pl_relay_allocate req = {.req = 7};
    memcpy(req.peer_pk, PEER, 32);
    size_t n = pl_relay_encode_allocate(msg, sizeof msg, &req);
    pl_relay_grant g;
    for (int i = 0; i < PL_RELAY_DEFAULT_MAX_PER_STANDBY; i++) {
        CHECK(pl_relay_message(h->relay, OTHER, false, msg, n, now, out, sizeof out, &out_len));
        CHECK_EQ(pl_relay_decode_grant(&g, out, out_len), PL_RELAY_ERR_OK);
        CHECK(g.req == 7 && g.status == PL_RELAY_OK && g.channel != 0 && g.n_addrs == 2);
    }
    CHECK(pl_relay_message(h->relay, OTHER, false, msg, n, now, out, sizeof out, &out_len));
    CHECK_EQ(pl_relay_decode_grant(&g, out, out_len), PL_RELAY_ERR_OK);
    CHECK_EQ(g.status, PL_RELAY_CLIENT_LIMIT);
    pl_relay_stats st = pl_relay_get_stats(h->relay);
    CHECK_EQ(st.allocations, PL_RELAY_DEFAULT_MAX_PER_STANDBY);
    CHECK_EQ(st.standby_allocated, PL_RELAY_DEFAULT_MAX_PER_STANDBY);
    CHECK_EQ(st.refused_client_limit, 1);
    /* The same key, once attached here, has the attached share. */
    for (int i = PL_RELAY_DEFAULT_MAX_PER_STANDBY; i < PL_RELAY_DEFAULT_MAX_PER_CLIENT; i++) {
        CHECK(pl_relay_message(h->relay, OTHER, true, msg, n, now, out, sizeof out, &out_len));
        CHECK_EQ(pl_relay_decode_grant(&g, out, out_len), PL_RELAY_ERR_OK);
        CHECK_EQ(g.status, PL_RELAY_OK);
    }
    CHECK(pl_relay_message(h->relay, OTHER, true, msg, n, now, out, sizeof out, &out_len));
    CHECK_EQ(pl_relay_decode_grant(&g, out, out_len), PL_RELAY_ERR_OK);
    CHECK_EQ(g.status, PL_RELAY_CLIENT_LIMIT);
    CHECK_EQ(pl_relay_get_stats(h->relay).standby_allocated, PL_RELAY_DEFAULT_MAX_PER_STANDBY);
    harness_free(h);
}

static void thousands_of_allocations_stay_findable_through_growth_and_churn(void)
{
    pl_relay_config cfg = {.max_allocations = 5000, .max_per_client = 5000};
    harness *h = harness_new(&cfg);
    pl_time now = pl_simnet_now(h->net);
    enum { N = 3000 };
    static pl_relay_grant g[N];
    static bool live[N];
    for (int i = 0; i < N; i++) {
        g[i] = allocate(h, OWNER);
        live[i] = true;
    }
    const pl_rng *rng = pl_simnet_rng(h->net);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            if (live[i] && pl_rng_below(rng, 2) == 0) {
                CHECK(pl_relay_release_channel(h->relay, OWNER, g[i].channel));
                live[i] = false;
            } else if (!live[i]) {
                g[i] = allocate(h, OWNER);
                live[i] = true;
            }
        }
        /* Every live channel answers its bind; every released one is unknown. */
        pl_addr from = addr("198.51.100.1:5000");
        for (int i = 0; i < N; i++) {
            uint8_t pkt[PL_RELAY_HEADER_SIZE];
            size_t len = pl_relay_wrap(pkt, sizeof pkt, g[i].channel, g[i].token_peer, NULL, 0);
            pl_addr to;
            pl_relay_action act = pl_relay_forward(h->relay, &from, pkt, &len, now, &to);
            CHECK_EQ(act, live[i] ? PL_RELAY_SEND : PL_RELAY_DROP_CHANNEL);
        }
    }
    uint32_t count = 0;
    for (int i = 0; i < N; i++) count += live[i];
    CHECK_EQ(pl_relay_get_stats(h->relay).allocations, count);
    harness_free(h);
}

/* ---- a real secure session through the relay, UDP on one side and TCP on the other ------- */

typedef struct user {
    pl_test_user u;
    pl_sec *sec;
    pl_simnet *net;
    harness *h;
    pl_addr self;     /* where it sends from */
    pl_addr relay;    /* the relay address it uses (UDP or TCP) */
    uint32_t channel;
    uint64_t token;
    int established, data;
    char last[64];
    uint64_t timer;
} user;

/* The user's driver: what the session sends goes to the relay in framing;
 * what arrives from the relay is checked (channel, own token) and unwrapped. */
static void user_sec_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    user *u = ctx;
    (void)to;
    uint8_t buf[PL_RELAY_MAX_PACKET];
    size_t n = pl_relay_wrap(buf, sizeof buf, u->channel, u->token, data, len);
    CHECK(n > 0);
    pl_simnet_send(u->net, &u->self, &u->relay, buf, n);
}

static void user_sec_event(void *ctx, const pl_sec_event *ev)
{
    user *u = ctx;
    if (ev->type == PL_SEC_EV_ESTABLISHED) u->established++;
    if (ev->type == PL_SEC_EV_DATA && ev->len < sizeof u->last) {
        u->data++;
        memcpy(u->last, ev->data, ev->len);
        u->last[ev->len] = 0;
    }
}

static void user_schedule(user *u);
static void user_timer(void *ctx, pl_time now)
{
    user *u = ctx;
    u->timer = 0;
    pl_sec_tick(u->sec, now);
    user_schedule(u);
}
static void user_schedule(user *u)
{
    if (u->timer) pl_simnet_timer_cancel(u->net, u->timer);
    u->timer = 0;
    pl_time t = pl_sec_next_timeout(u->sec);
    if (t != PL_TIME_NEVER) u->timer = pl_simnet_timer(u->net, t, user_timer, u);
}

static void user_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len,
                      pl_time now)
{
    user *u = ctx;
    (void)to;
    uint32_t c;
    uint64_t t;
    if (!pl_relay_parse(data, len, &c, &t) || c != u->channel || t != u->token) return;
    if (len == PL_RELAY_HEADER_SIZE) return; /* the relay's answer to a bind */
    pl_addr src = *from;
    src.transport = u->relay.transport;
    pl_sec_receive(u->sec, &src, data + PL_RELAY_HEADER_SIZE, len - PL_RELAY_HEADER_SIZE, now);
    user_schedule(u);
}

static void user_init(user *u, harness *h, pl_test_ca *ca, const char *name, const char *self,
                      const pl_addr *relay, uint32_t channel, uint64_t token)
{
    memset(u, 0, sizeof *u);
    pl_test_user_make(&u->u, ca, name, T0 - PL_SEC, T0 + 86400 * PL_SEC, NULL);
    u->net = h->net;
    u->h = h;
    u->self = addr(self);
    u->relay = *relay;
    u->self.transport = relay->transport;
    u->channel = channel;
    u->token = token;
    pl_sec_config sc = {.identity = &u->u.id, .cert = u->u.cert_bytes, .cert_len = u->u.cert_len,
                        .rng = pl_simnet_rng(h->net), .accept_incoming = true};
    memcpy(sc.ca_pk, ca->pk, 32);
    pl_sec_io io = {u, user_sec_send, user_sec_event};
    CHECK_EQ(pl_sec_new(&u->sec, &sc, &io), PL_SEC_OK);
    CHECK(pl_simnet_attach(h->net, &u->self, user_recv, u));
}

static void a_secure_session_runs_through_the_relay_from_udp_to_tcp(void)
{
    harness *h = harness_new(NULL);
    pl_test_ca ca;
    pl_test_ca_init(&ca);
    pl_relay_grant g = allocate(h, OWNER);
    static user alice, bob;
    user_init(&alice, h, &ca, "alice", "198.51.100.1:5000", &g.addrs[0], g.channel, g.token_self);
    user_init(&bob, h, &ca, "bob", "198.51.100.2:40000", &g.addrs[1], g.channel, g.token_peer);
    CHECK_EQ(bob.relay.transport, PL_ADDR_TCP);
    /* Bob binds first (over TCP), as a callee does when the offer arrives. */
    uint8_t bind[PL_RELAY_HEADER_SIZE];
    pl_relay_wrap(bind, sizeof bind, g.channel, g.token_peer, NULL, 0);
    pl_simnet_send(h->net, &bob.self, &bob.relay, bind, sizeof bind);
    settle(h);

    /* Alice opens a session to Bob "at the relay": the relay is only a path. */
    pl_sec_peer *p;
    CHECK_EQ(pl_sec_connect(alice.sec, bob.u.id.sign_pk, &alice.relay, pl_simnet_now(h->net), &p), PL_SEC_OK);
    user_schedule(&alice);
    pl_simnet_run_until(h->net, pl_simnet_now(h->net) + 500 * PL_MSEC);
    CHECK_EQ(alice.established, 1);
    CHECK_EQ(pl_sec_send(alice.sec, p, (const uint8_t *)"over the relay", 14, pl_simnet_now(h->net)), PL_SEC_OK);
    pl_simnet_run_until(h->net, pl_simnet_now(h->net) + 500 * PL_MSEC);
    CHECK_EQ(bob.established, 1);
    CHECK_EQ(bob.data, 1);
    CHECK(strcmp(bob.last, "over the relay") == 0);
    pl_sec_peer *q = pl_sec_find(bob.sec, alice.u.id.sign_pk);
    CHECK(q != NULL);
    CHECK_EQ(pl_sec_send(bob.sec, q, (const uint8_t *)"and back", 8, pl_simnet_now(h->net)), PL_SEC_OK);
    pl_simnet_run_until(h->net, pl_simnet_now(h->net) + 500 * PL_MSEC);
    CHECK_EQ(alice.data, 1);
    CHECK(strcmp(alice.last, "and back") == 0);

    /* The relay forwarded the handshake and the data both ways, to Bob over
     * its TCP side and to Alice over UDP, and dropped nothing. */
    pl_relay_stats st = pl_relay_get_stats(h->relay);
    CHECK(st.forwarded >= 4);
    CHECK_EQ(st.drop_malformed + st.drop_channel + st.drop_token + st.drop_source + st.drop_unbound, 0);
    bool to_tcp = false, to_udp = false;
    for (uint64_t i = 0; i < h->sent_by_relay && i < 4096; i++) {
        if (h->sends[i].to.transport == PL_ADDR_TCP) to_tcp = true;
        else to_udp = true;
    }
    CHECK(to_tcp && to_udp);
    pl_sec_free(alice.sec);
    pl_sec_free(bob.sec);
    if (alice.timer) pl_simnet_timer_cancel(h->net, alice.timer);
    if (bob.timer) pl_simnet_timer_cancel(h->net, bob.timer);
    harness_free(h);
}

int main(void)
{
    if (!pl_init()) return 1;
    RUN(allocation_messages_round_trip_and_refuse_what_is_not_canonical);
    RUN(framing_is_told_apart_from_sessions_and_stun);
    RUN(relay_forwards_between_the_two_parties_with_each_side_seeing_only_its_token);
    RUN(invalid_packets_are_dropped_counted_and_never_answered);
    RUN(idle_allocations_expire);
    RUN(limits_per_client_per_relay_and_per_side_hold);
    RUN(allocation_requests_answer_only_attached_nodes);
    RUN(nodes_attached_elsewhere_get_a_few_standby_allocations);
    RUN(thousands_of_allocations_stay_findable_through_growth_and_churn);
    RUN(a_secure_session_runs_through_the_relay_from_udp_to_tcp);
    return pl_test_summary();
}
