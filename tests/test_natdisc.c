/* test_natdisc.c - NAT behaviour discovery driven over the simulated network
 * against the real STUN responder, through a model NAT of every RFC 4787
 * mapping and filtering behaviour (3 x 3), with and without hairpinning,
 * no NAT, UDP blocked, loss, a server without an alternate address (with
 * and without a second server), and servers that misbehave. */
#include <stdlib.h>

#include "natdisc.h"
#include "parley.h"
#include "simnet.h"
#include "stun.h"
#include "test.h"

#define T0 (1700000000ull * PL_SEC)

static pl_addr addr(const char *text)
{
    pl_addr a;
    if (!pl_addr_parse(&a, text, 0)) abort();
    return a;
}

/* ---- the STUN server: four sockets, one responder ---------------------------------- */

typedef struct server {
    pl_simnet *net;
    pl_stun_server cfg;
    pl_addr locals[4];
    int n_locals;
    bool ignore_change; /* a broken server: answers from where it was asked */
    uint64_t answered;
} server;

static void server_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len,
                        pl_time now)
{
    server *s = ctx;
    uint8_t out[PL_STUN_MAX_RESPONSE];
    pl_stun_reply r;
    if (pl_stun_respond(&s->cfg, to, from, data, len, out, sizeof out, &r) != PL_STUN_SEND) return;
    s->answered++;
    pl_simnet_send(s->net, s->ignore_change ? to : &r.from, from, out, r.len);
}

static void server_start(server *s, pl_simnet *net, const char *primary, const char *alternate)
{
    memset(s, 0, sizeof *s);
    s->net = net;
    s->cfg.primary = addr(primary);
    s->locals[s->n_locals++] = s->cfg.primary;
    if (alternate) {
        s->cfg.alternate = addr(alternate);
        pl_addr pa = s->cfg.primary, ap = s->cfg.alternate;
        pa.port = s->cfg.alternate.port;
        ap.port = s->cfg.primary.port;
        s->locals[s->n_locals++] = pa;
        s->locals[s->n_locals++] = ap;
        s->locals[s->n_locals++] = s->cfg.alternate;
    }
    for (int i = 0; i < s->n_locals; i++)
        if (!pl_simnet_attach(net, &s->locals[i], server_recv, s)) abort();
}

/* ---- a model NAT --------------------------------------------------------------------- */

enum { BLOCK_NONE = 0, BLOCK_UDP = 1 };

typedef struct mapping {
    pl_addr inside;
    pl_addr remote; /* the part of the destination the mapping depends on */
    uint16_t port;  /* public */
} mapping;

typedef struct permit {
    uint16_t port;
    pl_addr remote;
} permit;

typedef struct nat {
    pl_simnet *net;
    uint8_t map_kind, filter_kind; /* pl_nat_behaviour; 0 = no NAT */
    bool hairpin, block_udp;
    pl_addr pub;
    uint16_t next_port;
    mapping maps[64];
    int n_maps;
    permit permits[256];
    int n_permits;
} nat;

static bool same_key(const nat *n, const pl_addr *a, const pl_addr *b, uint8_t kind)
{
    (void)n;
    if (kind == PL_NAT_ENDPOINT_INDEPENDENT) return true;
    if (kind == PL_NAT_ADDRESS_DEPENDENT) return pl_addr_same_host(a, b);
    return pl_addr_equal(a, b);
}

static void nat_inbound(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len,
                        pl_time now);

static mapping *nat_map(nat *n, const pl_addr *inside, const pl_addr *remote)
{
    for (int i = 0; i < n->n_maps; i++)
        if (pl_addr_equal(&n->maps[i].inside, inside) && same_key(n, &n->maps[i].remote, remote, n->map_kind))
            return &n->maps[i];
    if (n->n_maps == 64) abort();
    mapping *m = &n->maps[n->n_maps++];
    m->inside = *inside;
    m->remote = *remote;
    m->port = n->next_port++;
    pl_addr p = n->pub;
    p.port = m->port;
    if (!pl_simnet_attach(n->net, &p, nat_inbound, n)) abort();
    return m;
}

static mapping *nat_by_port(nat *n, uint16_t port)
{
    for (int i = 0; i < n->n_maps; i++)
        if (n->maps[i].port == port) return &n->maps[i];
    return NULL;
}

static bool nat_permits(const nat *n, uint16_t port, const pl_addr *remote)
{
    if (n->filter_kind == PL_NAT_ENDPOINT_INDEPENDENT) return true;
    for (int i = 0; i < n->n_permits; i++)
        if (n->permits[i].port == port && same_key(n, &n->permits[i].remote, remote, n->filter_kind)) return true;
    return false;
}

static void nat_inbound(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len,
                        pl_time now)
{
    nat *n = ctx;
    mapping *m = nat_by_port(n, to->port);
    if (m && nat_permits(n, m->port, from)) pl_simnet_send(n->net, from, &m->inside, data, len);
}

static void nat_outbound(nat *n, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len)
{
    if (n->block_udp) return;
    if (n->map_kind == 0) {
        pl_simnet_send(n->net, from, to, data, len);
        return;
    }
    mapping *m = nat_map(n, from, to);
    pl_addr src = n->pub;
    src.port = m->port;
    if (pl_addr_same_host(to, &n->pub)) {
        /* To our own public address: hairpin it, from the sender's public
         * mapping, or drop it. */
        mapping *dst = nat_by_port(n, to->port);
        if (n->hairpin && dst) pl_simnet_send(n->net, &src, &dst->inside, data, len);
        return;
    }
    if (n->n_permits < 256) n->permits[n->n_permits++] = (permit){m->port, *to};
    pl_simnet_send(n->net, &src, to, data, len);
}

/* ---- the client: natdisc on a simulated socket -------------------------------------------- */

typedef struct client {
    pl_simnet *net;
    nat *nat;
    pl_natdisc d;
    pl_addr local;
    uint64_t timer;
    bool done;
    pl_natdisc_result result;
    uint64_t foreign; /* datagrams natdisc said were not its own */
} client;

static void client_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    client *c = ctx;
    nat_outbound(c->nat, &c->local, to, data, len);
}

static void client_done(void *ctx, const pl_natdisc_result *r)
{
    client *c = ctx;
    c->done = true;
    c->result = *r;
}

static void client_timer(void *ctx, pl_time now);

static void client_arm(client *c)
{
    if (c->timer) pl_simnet_timer_cancel(c->net, c->timer);
    c->timer = 0;
    pl_time next = pl_natdisc_next_timeout(&c->d);
    if (next != PL_TIME_NEVER) c->timer = pl_simnet_timer(c->net, next, client_timer, c);
}

static void client_timer(void *ctx, pl_time now)
{
    client *c = ctx;
    c->timer = 0;
    pl_natdisc_tick(&c->d, now);
    client_arm(c);
}

static void client_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len,
                        pl_time now)
{
    client *c = ctx;
    if (!pl_natdisc_receive(&c->d, from, data, len, now)) c->foreign++;
    client_arm(c);
}

typedef struct scenario {
    uint8_t map_kind, filter_kind; /* 0, 0: no NAT */
    bool hairpin, block_udp;
    bool no_alternate, server2, ignore_change, skip_hairpin;
    uint32_t loss_ppm, max_tries;
    uint64_t seed;
} scenario;

typedef struct run {
    pl_natdisc_result r;
    pl_time took;
    uint64_t answered, foreign;
    pl_sim_stats stats;
} run;

static run discover(const scenario *sc)
{
    pl_simnet *net = pl_simnet_new(sc->seed ? sc->seed : 1, T0);
    pl_sim_link link = {10 * PL_MSEC, 2 * PL_MSEC, sc->loss_ppm};
    pl_simnet_set_default_link(net, link);
    server s, s2;
    server_start(&s, net, "203.0.113.10:3478", sc->no_alternate ? NULL : "198.51.100.10:3479");
    s.ignore_change = sc->ignore_change;
    if (sc->server2) server_start(&s2, net, "192.0.2.30:3478", NULL);
    static nat n;
    memset(&n, 0, sizeof n);
    n.net = net;
    n.map_kind = sc->map_kind;
    n.filter_kind = sc->filter_kind;
    n.hairpin = sc->hairpin;
    n.block_udp = sc->block_udp;
    n.pub = addr("203.0.113.101:0");
    n.next_port = 40000;
    static client c;
    memset(&c, 0, sizeof c);
    c.net = net;
    c.nat = &n;
    c.local = addr(sc->map_kind ? "192.168.1.10:5000" : "203.0.113.101:5000");
    CHECK(pl_simnet_attach(net, &c.local, client_recv, &c));
    pl_natdisc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.server = s.cfg.primary;
    if (sc->server2) cfg.server2 = s2.cfg.primary;
    cfg.local = c.local;
    cfg.rng = pl_simnet_rng(net);
    cfg.skip_hairpin = sc->skip_hairpin;
    cfg.max_tries = sc->max_tries;
    pl_natdisc_io io = {&c, client_send, client_done};
    CHECK_EQ(pl_natdisc_init(&c.d, &cfg, &io), PL_NATDISC_OK);
    pl_natdisc_start(&c.d, T0);
    client_arm(&c);
    while (!c.done && pl_simnet_step(net)) {
    }
    CHECK(c.done);
    CHECK(pl_natdisc_finished(&c.d));
    CHECK_EQ(pl_natdisc_next_timeout(&c.d), PL_TIME_NEVER);
    CHECK(memcmp(pl_natdisc_get_result(&c.d), &c.result, sizeof c.result) == 0);
    run out = {c.result, pl_simnet_now(net) - T0, s.answered, c.foreign, pl_simnet_stats(net)};
    pl_simnet_free(net);
    return out;
}

/* ---- the tests ------------------------------------------------------------------------------- */

static void every_mapping_and_filtering_behaviour(void)
{
    const uint8_t kinds[3] = {PL_NAT_ENDPOINT_INDEPENDENT, PL_NAT_ADDRESS_DEPENDENT,
                              PL_NAT_ADDRESS_AND_PORT_DEPENDENT};
    for (int mi = 0; mi < 3; mi++) {
        for (int fi = 0; fi < 3; fi++) {
            scenario sc = {.map_kind = kinds[mi], .filter_kind = kinds[fi], .hairpin = mi == 0};
            run r = discover(&sc);
            if (r.r.mapping != kinds[mi] || r.r.filtering != kinds[fi])
                fprintf(stderr, "  NAT %s/%s seen as %s/%s\n", pl_nat_behaviour_name(kinds[mi]),
                        pl_nat_behaviour_name(kinds[fi]), pl_nat_behaviour_name(r.r.mapping),
                        pl_nat_behaviour_name(r.r.filtering));
            CHECK_EQ(r.r.mapping, kinds[mi]);
            CHECK_EQ(r.r.filtering, kinds[fi]);
            CHECK(!r.r.udp_blocked);
            CHECK(r.r.behind_nat);
            CHECK_EQ(r.r.nat_flags, 0);
            CHECK_EQ(r.r.hairpin, mi == 0 ? PL_NATDISC_HAIRPIN_YES : PL_NATDISC_HAIRPIN_NO);
            pl_addr want = addr("203.0.113.101:40000");
            CHECK(pl_addr_equal(&r.r.mapped, &want));
            want = addr("198.51.100.10:3479");
            CHECK(pl_addr_equal(&r.r.other, &want));
            /* Three hops of 10..12 ms (client, NAT, server, NAT,
             * client), answered at the first try. */
            CHECK(r.r.rtt >= 30 * PL_MSEC && r.r.rtt <= 36 * PL_MSEC);
            CHECK_EQ(r.foreign, 0);
            /* An open, hairpinning NAT is told within a few round trips;
             * a closed one waits out the filtering tests (15 rto = 3 s). */
            if (kinds[fi] == PL_NAT_ENDPOINT_INDEPENDENT && mi == 0) CHECK(r.took < 200 * PL_MSEC);
            CHECK(r.took < 3500 * PL_MSEC);
        }
    }
}

static void hairpinning_is_seen(void)
{
    scenario sc = {.map_kind = PL_NAT_ENDPOINT_INDEPENDENT, .filter_kind = PL_NAT_ADDRESS_DEPENDENT, .hairpin = true};
    run r = discover(&sc);
    CHECK_EQ(r.r.hairpin, PL_NATDISC_HAIRPIN_YES);
    CHECK_EQ(r.r.filtering, PL_NAT_ADDRESS_DEPENDENT);
    sc.skip_hairpin = true;
    r = discover(&sc);
    CHECK_EQ(r.r.hairpin, PL_NATDISC_HAIRPIN_UNKNOWN);
}

static void no_nat(void)
{
    scenario sc = {0};
    run r = discover(&sc);
    CHECK(!r.r.behind_nat);
    CHECK(!r.r.udp_blocked);
    pl_addr want = addr("203.0.113.101:5000");
    CHECK(pl_addr_equal(&r.r.mapped, &want));
    CHECK_EQ(r.r.mapping, PL_NAT_ENDPOINT_INDEPENDENT);
    CHECK_EQ(r.r.filtering, PL_NAT_ENDPOINT_INDEPENDENT);
    CHECK_EQ(r.r.hairpin, PL_NATDISC_HAIRPIN_YES); /* the request to itself arrives */
}

static void udp_blocked(void)
{
    scenario sc = {.map_kind = PL_NAT_ENDPOINT_INDEPENDENT, .filter_kind = PL_NAT_ENDPOINT_INDEPENDENT,
                   .block_udp = true};
    run r = discover(&sc);
    CHECK(r.r.udp_blocked);
    CHECK_EQ(r.r.nat_flags, PL_NAT_F_UDP_BLOCKED);
    CHECK_EQ(r.r.mapping, PL_NAT_UNKNOWN);
    CHECK_EQ(r.r.filtering, PL_NAT_UNKNOWN);
    CHECK_EQ(r.r.mapped.family, PL_AF_NONE);
    /* Four tries, 200 + 400 + 800 + 1600 ms. */
    CHECK_EQ(r.r.requests_sent, 4);
    CHECK_EQ(r.took, 3000 * PL_MSEC);
}

/* Lost packets cost time, not correctness. With 10% loss per hop a try
 * succeeds with probability 0.9^3 = 0.73, so seven tries all fail once in
 * ten thousand tests. */
static void loss_is_retransmitted_over(void)
{
    uint64_t lost = 0, sent = 0;
    for (uint64_t seed = 1; seed <= 10; seed++) {
        scenario sc = {.map_kind = PL_NAT_ENDPOINT_INDEPENDENT, .filter_kind = PL_NAT_ADDRESS_DEPENDENT,
                       .hairpin = true, .loss_ppm = 100000, .max_tries = 7, .seed = seed};
        run r = discover(&sc);
        CHECK_EQ(r.r.mapping, PL_NAT_ENDPOINT_INDEPENDENT);
        CHECK_EQ(r.r.filtering, PL_NAT_ADDRESS_DEPENDENT);
        CHECK_EQ(r.r.hairpin, PL_NATDISC_HAIRPIN_YES);
        lost += r.stats.dropped_loss;
        sent += r.r.requests_sent;
    }
    CHECK(lost > 0);
    CHECK(sent > 10 * 6); /* some requests were sent again */
}

static void retransmissions_only_when_needed(void)
{
    /* EIM/EIF without loss: every request answered at the first try. */
    scenario sc = {.map_kind = PL_NAT_ENDPOINT_INDEPENDENT, .filter_kind = PL_NAT_ENDPOINT_INDEPENDENT,
                   .hairpin = true};
    run r = discover(&sc);
    CHECK_EQ(r.r.requests_sent, 6);
    CHECK_EQ(r.answered, 5); /* the hairpin request never reaches the server */
    /* APDF: the two filtering tests go unanswered, four tries each. */
    sc.filter_kind = PL_NAT_ADDRESS_AND_PORT_DEPENDENT;
    r = discover(&sc);
    CHECK_EQ(r.r.requests_sent, 1 + 4 + 4 + 1 + 2);
}

static void server_without_alternate(void)
{
    scenario sc = {.map_kind = PL_NAT_ADDRESS_AND_PORT_DEPENDENT, .filter_kind = PL_NAT_ADDRESS_AND_PORT_DEPENDENT,
                   .no_alternate = true};
    run r = discover(&sc);
    CHECK(!r.r.udp_blocked);
    CHECK_EQ(r.r.other.family, PL_AF_NONE);
    CHECK_EQ(r.r.mapping, PL_NAT_UNKNOWN);
    CHECK_EQ(r.r.filtering, PL_NAT_UNKNOWN);
    pl_addr want = addr("203.0.113.101:40000");
    CHECK(pl_addr_equal(&r.r.mapped, &want));
    /* A second server at another address tells the mapping: symmetric... */
    sc.server2 = true;
    r = discover(&sc);
    CHECK_EQ(r.r.mapping, PL_NAT_ADDRESS_AND_PORT_DEPENDENT);
    CHECK_EQ(r.r.filtering, PL_NAT_UNKNOWN);
    /* ...or endpoint-independent. */
    sc.map_kind = PL_NAT_ENDPOINT_INDEPENDENT;
    r = discover(&sc);
    CHECK_EQ(r.r.mapping, PL_NAT_ENDPOINT_INDEPENDENT);
}

/* A server that ignores CHANGE-REQUEST answers from the address it was
 * asked at. Counting that as an answer would make every NAT look open. */
static void a_server_that_does_not_change_proves_nothing(void)
{
    scenario sc = {.map_kind = PL_NAT_ENDPOINT_INDEPENDENT, .filter_kind = PL_NAT_ADDRESS_AND_PORT_DEPENDENT,
                   .ignore_change = true};
    run r = discover(&sc);
    CHECK_EQ(r.r.filtering, PL_NAT_ADDRESS_AND_PORT_DEPENDENT);
    CHECK(r.foreign == 0);
}

/* ---- scripted answers: the decision logic, message by message ------------------------------- */

typedef struct script {
    pl_addr to[16];
    uint8_t req[16][64];
    size_t len[16];
    int n;
    bool done;
} script;

static void script_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    script *s = ctx;
    if (s->n == 16 || len > 64) abort();
    s->to[s->n] = *to;
    memcpy(s->req[s->n], data, len);
    s->len[s->n++] = len;
}

static void script_done(void *ctx, const pl_natdisc_result *r)
{
    (void)r;
    ((script *)ctx)->done = true;
}

/* Answers request i of the script with a response of class cls carrying
 * the given mapped address (XOR unless classic) and OTHER-ADDRESS. */
static size_t answer_to(const script *s, int i, uint8_t cls, const char *mapped, const char *other, bool classic,
                        uint8_t *out)
{
    pl_stun_msg m;
    if (pl_stun_decode(&m, s->req[i], s->len[i]) != PL_STUN_OK) abort();
    pl_stun_msg a;
    memset(&a, 0, sizeof a);
    a.method = PL_STUN_METHOD_BINDING;
    a.cls = cls;
    a.cookie = m.cookie;
    memcpy(a.txid, m.txid, 12);
    if (cls == PL_STUN_ERROR) {
        a.attrs |= PL_STUN_HAS_ERROR_CODE;
        a.error_code = 420;
    }
    if (mapped) {
        a.attrs |= classic ? PL_STUN_HAS_MAPPED : PL_STUN_HAS_XOR_MAPPED;
        a.mapped = a.xor_mapped = addr(mapped);
    }
    if (other) {
        a.attrs |= classic ? PL_STUN_HAS_CHANGED_ADDRESS : PL_STUN_HAS_OTHER_ADDRESS;
        a.other_address = a.changed_address = addr(other);
    }
    size_t len;
    if (pl_stun_encode(&a, out, 256, &len) != PL_STUN_OK) abort();
    return len;
}

static void scripted_decisions(void)
{
    pl_rng_seeded rng;
    pl_rng_seeded_init(&rng, 7);
    pl_natdisc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.server = addr("203.0.113.10:3478");
    cfg.local = addr("192.168.1.10:5000");
    cfg.rng = &rng.rng;
    script s;
    memset(&s, 0, sizeof s);
    pl_natdisc_io io = {&s, script_send, script_done};
    pl_natdisc d;
    CHECK_EQ(pl_natdisc_init(&d, &cfg, &io), PL_NATDISC_OK);
    pl_time now = T0;
    pl_natdisc_start(&d, now);
    CHECK_EQ(s.n, 1);
    CHECK(pl_addr_equal(&s.to[0], &cfg.server));
    pl_addr srv = cfg.server, alt = addr("198.51.100.10:3479");
    uint8_t out[256];

    /* Not ours: other bytes, another transaction, a request. */
    CHECK(!pl_natdisc_receive(&d, &srv, (const uint8_t *)"hello", 5, now));
    size_t len = answer_to(&s, 0, PL_STUN_SUCCESS, "203.0.113.101:40000", "198.51.100.10:3479", true, out);
    out[10] ^= 1;
    CHECK(!pl_natdisc_receive(&d, &srv, out, len, now));
    /* An RFC 3489 server's answer (MAPPED-ADDRESS, CHANGED-ADDRESS) is
     * understood. */
    len = answer_to(&s, 0, PL_STUN_SUCCESS, "203.0.113.101:40000", "198.51.100.10:3479", true, out);
    now += 20 * PL_MSEC;
    CHECK(pl_natdisc_receive(&d, &srv, out, len, now));
    CHECK(pl_natdisc_receive(&d, &srv, out, len, now)); /* a duplicate: ours, ignored */
    /* Phase 2: change both, change port, hairpin. */
    CHECK_EQ(s.n, 4);
    pl_stun_msg q;
    CHECK_EQ(pl_stun_decode(&q, s.req[1], s.len[1]), PL_STUN_OK);
    CHECK_EQ(q.change_flags, PL_STUN_CHANGE_IP | PL_STUN_CHANGE_PORT);
    CHECK_EQ(pl_stun_decode(&q, s.req[2], s.len[2]), PL_STUN_OK);
    CHECK_EQ(q.change_flags, PL_STUN_CHANGE_PORT);
    pl_addr m1 = addr("203.0.113.101:40000");
    CHECK(pl_addr_equal(&s.to[3], &m1));
    /* The change-port answer from the right place; the change-both answer
     * from the wrong one (the primary) does not count. */
    len = answer_to(&s, 2, PL_STUN_SUCCESS, "203.0.113.101:40000", NULL, false, out);
    pl_addr p_a = addr("203.0.113.10:3479");
    CHECK(pl_natdisc_receive(&d, &p_a, out, len, now));
    len = answer_to(&s, 1, PL_STUN_SUCCESS, "203.0.113.101:40000", NULL, false, out);
    CHECK(pl_natdisc_receive(&d, &srv, out, len, now));
    /* The hairpinned request arrives. */
    CHECK(pl_natdisc_receive(&d, &m1, s.req[3], s.len[3], now));
    /* The change-both request is sent again, same transaction, until its
     * fourth try has waited out (15 rto after the first); then phase 3:
     * alternate IP with the primary port, then the alternate itself. */
    pl_time phase2 = now;
    while (s.n < 9 && pl_natdisc_next_timeout(&d) != PL_TIME_NEVER) {
        now = pl_natdisc_next_timeout(&d);
        pl_natdisc_tick(&d, now);
    }
    CHECK_EQ(s.n, 9);
    CHECK_EQ(now - phase2, 3000 * PL_MSEC);
    for (int i = 4; i < 7; i++) {
        CHECK(pl_addr_equal(&s.to[i], &srv));
        CHECK(s.len[i] == s.len[1] && memcmp(s.req[i], s.req[1], s.len[1]) == 0);
    }
    pl_addr alt_p = addr("198.51.100.10:3478");
    CHECK(pl_addr_equal(&s.to[7], &alt_p));
    CHECK(pl_addr_equal(&s.to[8], &alt));
    const pl_natdisc_result *r = pl_natdisc_get_result(&d);
    CHECK(!pl_natdisc_finished(&d));
    CHECK_EQ(r->filtering, PL_NAT_ADDRESS_DEPENDENT);
    /* M2 differs from M1, M3 equals M2: address-dependent mapping. */
    len = answer_to(&s, s.n - 1, PL_STUN_SUCCESS, "203.0.113.101:40001", NULL, false, out);
    CHECK(pl_natdisc_receive(&d, &alt, out, len, now));
    len = answer_to(&s, s.n - 2, PL_STUN_SUCCESS, "203.0.113.101:40001", NULL, false, out);
    CHECK(pl_natdisc_receive(&d, &alt_p, out, len, now));
    CHECK(s.done);
    CHECK(pl_natdisc_finished(&d));
    CHECK_EQ(r->mapping, PL_NAT_ADDRESS_DEPENDENT);
    CHECK_EQ(r->hairpin, PL_NATDISC_HAIRPIN_YES);
    CHECK(r->behind_nat);
    /* Nothing more happens after the end. */
    int n = s.n;
    pl_natdisc_tick(&d, now + 60 * PL_SEC);
    CHECK_EQ(s.n, n);
}

/* A server that refuses (an error to test I, or 420 to the change
 * requests) ends the tests without a wrong verdict. */
static void refusals_leave_things_unknown(void)
{
    pl_rng_seeded rng;
    pl_rng_seeded_init(&rng, 8);
    pl_natdisc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.server = addr("203.0.113.10:3478");
    cfg.rng = &rng.rng;
    cfg.skip_hairpin = true;
    script s;
    memset(&s, 0, sizeof s);
    pl_natdisc_io io = {&s, script_send, script_done};
    pl_natdisc d;
    CHECK_EQ(pl_natdisc_init(&d, &cfg, &io), PL_NATDISC_OK);
    pl_natdisc_start(&d, T0);
    uint8_t out[256];
    size_t len = answer_to(&s, 0, PL_STUN_ERROR, NULL, NULL, false, out);
    CHECK(pl_natdisc_receive(&d, &cfg.server, out, len, T0));
    CHECK(s.done);
    const pl_natdisc_result *r = pl_natdisc_get_result(&d);
    CHECK(r->refused);
    CHECK(!r->udp_blocked);
    CHECK_EQ(r->mapping, PL_NAT_UNKNOWN);

    memset(&s, 0, sizeof s);
    CHECK_EQ(pl_natdisc_init(&d, &cfg, &io), PL_NATDISC_OK);
    pl_natdisc_start(&d, T0);
    len = answer_to(&s, 0, PL_STUN_SUCCESS, "203.0.113.101:40000", "198.51.100.10:3479", false, out);
    CHECK(pl_natdisc_receive(&d, &cfg.server, out, len, T0));
    CHECK_EQ(s.n, 3);
    for (int i = 1; i <= 2; i++) {
        len = answer_to(&s, i, PL_STUN_ERROR, NULL, NULL, false, out);
        CHECK(pl_natdisc_receive(&d, &cfg.server, out, len, T0));
    }
    CHECK_EQ(r->filtering, PL_NAT_UNKNOWN);
    CHECK(r->behind_nat); /* the local address is unknown: assume a NAT */
}

static void bad_configurations(void)
{
    pl_rng_seeded rng;
    pl_rng_seeded_init(&rng, 1);
    script s;
    pl_natdisc_io io = {&s, script_send, script_done};
    pl_natdisc d;
    pl_natdisc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.server = addr("203.0.113.10:3478");
    cfg.rng = &rng.rng;
    CHECK_EQ(pl_natdisc_init(&d, &cfg, &io), PL_NATDISC_OK);
    CHECK_EQ(pl_natdisc_next_timeout(&d), PL_TIME_NEVER); /* not started */
    cfg.server = addr("0.0.0.0:3478");
    CHECK_EQ(pl_natdisc_init(&d, &cfg, &io), PL_NATDISC_ERR_CONFIG);
    cfg.server = addr("203.0.113.10:0");
    CHECK_EQ(pl_natdisc_init(&d, &cfg, &io), PL_NATDISC_ERR_CONFIG);
    cfg.server = addr("203.0.113.10:3478");
    cfg.rng = NULL;
    CHECK_EQ(pl_natdisc_init(&d, &cfg, &io), PL_NATDISC_ERR_CONFIG);
    cfg.rng = &rng.rng;
    cfg.max_tries = 11;
    CHECK_EQ(pl_natdisc_init(&d, &cfg, &io), PL_NATDISC_ERR_CONFIG);
    cfg.max_tries = 0;
    cfg.rto = 11 * PL_SEC;
    CHECK_EQ(pl_natdisc_init(&d, &cfg, &io), PL_NATDISC_ERR_CONFIG);
    cfg.rto = 0;
    cfg.server2 = addr("0.0.0.0:1");
    CHECK_EQ(pl_natdisc_init(&d, &cfg, &io), PL_NATDISC_ERR_CONFIG);
    memset(&cfg.server2, 0, sizeof cfg.server2);
    pl_natdisc_io no_send = {&s, NULL, script_done};
    CHECK_EQ(pl_natdisc_init(&d, &cfg, &no_send), PL_NATDISC_ERR_CONFIG);
    CHECK(strcmp(pl_natdisc_strerror(PL_NATDISC_ERR_CONFIG), "unknown error") != 0);
    CHECK(strcmp(pl_nat_behaviour_name(PL_NAT_ADDRESS_DEPENDENT), "address-dependent") == 0);
    CHECK(strcmp(pl_nat_behaviour_name(99), "unknown") == 0);
}

int main(void)
{
    RUN(every_mapping_and_filtering_behaviour);
    RUN(hairpinning_is_seen);
    RUN(no_nat);
    RUN(udp_blocked);
    RUN(loss_is_retransmitted_over);
    RUN(retransmissions_only_when_needed);
    RUN(server_without_alternate);
    RUN(a_server_that_does_not_change_proves_nothing);
    RUN(scripted_decisions);
    RUN(refusals_leave_things_unknown);
    RUN(bad_configurations);
    return pl_test_summary();
}
