/*
 * test_path.c - the path manager, with real secure sessions between two
 * users, two supernodes' relays and NATs, on the deterministic simulator.
 *
 * The NATs are modelled here, in the harness, on top of simnet: a host
 * behind a NAT sends from a public port the NAT maps (one port for every
 * destination: endpoint-independent mapping; a new port per destination:
 * address-and-port-dependent, "symmetric"), and the NAT lets in only what
 * comes from an address and port that port has sent to (address-and-port-
 * dependent filtering), as Linux masquerade does. A "cut" drops everything
 * between two addresses, both ways: how a test makes a path stop.
 *
 * Each user's driver is written out below the way the daemon will do it
 * (path.h, "What the driver does"): one pl_sec, one path manager for the
 * peer, relay framing through pl_path_send/pl_path_unwrap, the session
 * pointed back at the session address after every receive.
 */
#include <sodium.h>
#include <stdlib.h>

#include "path.h"
#include "pki.h"
#include "relay.h"
#include "simnet.h"
#include "test.h"
#include "wire.h"

#define T0 ((pl_time)1800000000 * PL_SEC)
#define MEDIA_TYPE 0x80
#define MEDIA_INTERVAL (20 * PL_MSEC)

enum { NAT_NONE = 0, NAT_CONE, NAT_SYMMETRIC, NAT_UDP_BLOCKED };

static pl_addr addr(const char *text)
{
    pl_addr a;
    if (!pl_addr_parse(&a, text, 0)) abort();
    return a;
}

typedef struct world world;

/* ---- hosts and NATs --------------------------------------------------------------------- */

typedef struct mapping {
    bool used;
    uint16_t port;
    pl_addr dst; /* symmetric: the one destination */
    pl_addr contacted[32];
    int n_contacted;
} mapping;

typedef struct host {
    world *w;
    int nat;
    pl_addr inner;  /* the host's own address (its public one without a NAT) */
    pl_addr pub;    /* the NAT's public address (port unused) */
    mapping maps[64];
    uint16_t next_port;
    void (*recv)(void *ctx, const pl_addr *from, const uint8_t *data, size_t len, pl_time now);
    void *ctx;
    uint64_t sent, filtered;
    /* Every destination this host sent to, and every source it heard from. */
    pl_addr dests[64];
    int n_dests;
    pl_addr sources[64];
    int n_sources;
} host;

typedef struct relay_host {
    pl_relay *relay;
    pl_addr udp, tcp;
    uint64_t timer;
    world *w;
} relay_host;

typedef struct user user;

struct world {
    pl_simnet *net;
    pl_test_ca ca;
    relay_host relays[2];
    user *users[2];
    struct {
        pl_addr a, b; /* hosts (any port) */
        bool one_way; /* only a -> b */
    } cuts[8];
    int n_cuts;
    uint64_t cut_dropped;
};

static bool same_ip(const pl_addr *a, const pl_addr *b) { return pl_addr_same_host(a, b); }

static void note_addr(pl_addr *list, int *n, const pl_addr *a)
{
    for (int i = 0; i < *n; i++)
        if (pl_addr_equal(&list[i], a)) return;
    if (*n < 64) list[(*n)++] = *a;
}

/* Every datagram in the world goes through here: cuts first, then simnet. */
static void world_send(world *w, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len)
{
    for (int i = 0; i < w->n_cuts; i++) {
        if ((same_ip(from, &w->cuts[i].a) && same_ip(to, &w->cuts[i].b)) ||
            (!w->cuts[i].one_way && same_ip(from, &w->cuts[i].b) && same_ip(to, &w->cuts[i].a))) {
            w->cut_dropped++;
            return;
        }
    }
    pl_simnet_send(w->net, from, to, data, len);
}

static void cut(world *w, const pl_addr *a, const pl_addr *b)
{
    CHECK(w->n_cuts < 8);
    w->cuts[w->n_cuts].a = *a;
    w->cuts[w->n_cuts].b = *b;
    w->cuts[w->n_cuts].one_way = false;
    w->n_cuts++;
}

static void cut_one_way(world *w, const pl_addr *from, const pl_addr *to)
{
    cut(w, from, to);
    w->cuts[w->n_cuts - 1].one_way = true;
}

static bool contacted(const mapping *m, const pl_addr *from)
{
    for (int i = 0; i < m->n_contacted; i++)
        if (same_ip(&m->contacted[i], from) && m->contacted[i].port == from->port) return true;
    return false;
}

static void nat_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len,
                     pl_time now)
{
    host *h = ctx;
    mapping *m = NULL;
    for (int i = 0; i < 64; i++)
        if (h->maps[i].used && h->maps[i].port == to->port) m = &h->maps[i];
    if (!m || (h->nat != NAT_NONE && !contacted(m, from))) {
        h->filtered++;
        return;
    }
    pl_addr src = *from;
    /* A datagram from a relay's TCP address stands for a frame on the
     * stream to it (simnet has one kind of link). */
    for (int i = 0; i < 2; i++)
        if (pl_addr_same_host(from, &h->w->relays[i].tcp) && from->port == h->w->relays[i].tcp.port)
            src.transport = PL_ADDR_TCP;
    note_addr(h->sources, &h->n_sources, &src);
    h->recv(h->ctx, &src, data, len, now);
}

static mapping *new_mapping(host *h, uint16_t port)
{
    for (int i = 0; i < 64; i++) {
        mapping *m = &h->maps[i];
        if (m->used) continue;
        memset(m, 0, sizeof *m);
        m->used = true;
        m->port = port;
        pl_addr at = h->nat == NAT_NONE || h->nat == NAT_UDP_BLOCKED ? h->inner : h->pub;
        at.port = port;
        CHECK(pl_simnet_attach(h->w->net, &at, nat_recv, h));
        return m;
    }
    CHECK(!"out of mappings");
    return NULL;
}

static void host_send(host *h, const pl_addr *to, const uint8_t *data, size_t len)
{
    CHECK(!pl_path_virtual_owner(to, NULL)); /* a virtual address never reaches the network */
    note_addr(h->dests, &h->n_dests, to);
    h->sent++;
    mapping *m = NULL;
    pl_addr from;
    switch (h->nat) {
    case NAT_NONE:
    case NAT_UDP_BLOCKED:
        if (h->nat == NAT_UDP_BLOCKED && to->transport != PL_ADDR_TCP) return; /* UDP never gets out */
        m = &h->maps[0];
        from = h->inner;
        break;
    case NAT_CONE:
        m = h->maps[0].used ? &h->maps[0] : new_mapping(h, h->next_port++);
        from = h->pub;
        from.port = m->port;
        break;
    case NAT_SYMMETRIC:
        for (int i = 0; i < 64 && !m; i++)
            if (h->maps[i].used && pl_addr_equal(&h->maps[i].dst, to)) m = &h->maps[i];
        if (!m) {
            m = new_mapping(h, h->next_port++);
            m->dst = *to;
        }
        from = h->pub;
        from.port = m->port;
        break;
    default: return;
    }
    if (!contacted(m, to) && m->n_contacted < 32) m->contacted[m->n_contacted++] = *to;
    world_send(h->w, &from, to, data, len);
}

static void host_init(host *h, world *w, int nat, const char *inner, const char *pub)
{
    memset(h, 0, sizeof *h);
    h->w = w;
    h->nat = nat;
    h->inner = addr(inner);
    h->pub = addr(pub);
    h->next_port = 40000;
    if (nat == NAT_NONE || nat == NAT_UDP_BLOCKED) new_mapping(h, h->inner.port); /* maps[0]: its own socket */
}

/* The address a supernode sees this host at (its server-reflexive
 * candidate), once it has sent to that supernode. */
static pl_addr reflexive(const host *h, const pl_addr *towards)
{
    if (h->nat == NAT_NONE) return h->inner;
    for (int i = 0; i < 64; i++) {
        if (!h->maps[i].used || !contacted(&h->maps[i], towards)) continue;
        pl_addr a = h->pub;
        a.port = h->maps[i].port;
        return a;
    }
    CHECK(!"no mapping towards that address");
    return h->pub;
}

/* ---- relays (the supernodes' relay cores and their drivers) ------------------------------ */

static void relay_schedule(relay_host *r);
static void relay_timer(void *ctx, pl_time now)
{
    relay_host *r = ctx;
    r->timer = 0;
    pl_relay_tick(r->relay, now);
    relay_schedule(r);
}
static void relay_schedule(relay_host *r)
{
    if (r->timer) pl_simnet_timer_cancel(r->w->net, r->timer);
    r->timer = 0;
    pl_time t = pl_relay_next_timeout(r->relay);
    if (t != PL_TIME_NEVER) r->timer = pl_simnet_timer(r->w->net, t, relay_timer, r);
}

static void relay_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len,
                       pl_time now)
{
    relay_host *r = ctx;
    pl_addr src = *from;
    if (to->port == r->tcp.port) src.transport = PL_ADDR_TCP;
    uint8_t pkt[PL_RELAY_MAX_PACKET];
    if (len > sizeof pkt) return;
    memcpy(pkt, data, len);
    size_t n = len;
    pl_addr dst;
    if (pl_relay_forward(r->relay, &src, pkt, &n, now, &dst) == PL_RELAY_SEND)
        world_send(r->w, dst.transport == PL_ADDR_TCP ? &r->tcp : &r->udp, &dst, pkt, n);
    relay_schedule(r);
}

static void relay_init(relay_host *r, world *w, const char *udp, const char *tcp)
{
    memset(r, 0, sizeof *r);
    r->w = w;
    r->udp = addr(udp);
    r->tcp = addr(tcp);
    pl_relay_config cfg = {.rng = pl_simnet_rng(w->net), .udp_addr = r->udp, .tcp_addr = r->tcp};
    CHECK_EQ(pl_relay_new(&r->relay, &cfg), PL_RELAY_ERR_OK);
    CHECK(pl_simnet_attach(w->net, &r->udp, relay_recv, r));
    CHECK(pl_simnet_attach(w->net, &r->tcp, relay_recv, r));
}

/* ---- users: a secure session and a path manager, driven as the daemon will ---------------- */

#define MAX_MEDIA 20000

struct user {
    world *w;
    host h;
    pl_test_user u;
    pl_sec *sec;
    pl_path *pm;
    uint32_t pm_id;
    uint8_t peer_pk[32];
    uint64_t timer, media_timer;
    int established;
    bool media_on;
    uint32_t media_seq;
    /* media received: arrival times and whether it came relayed */
    int media_rx;
    pl_time media_at[MAX_MEDIA];
    bool media_relayed[MAX_MEDIA];
    /* path events */
    int actives;
    pl_path_reason reasons[64];
    uint8_t kinds[64];
    pl_time active_at[64];
    pl_relay_grant grant; /* the allocation at its own supernode */
};

static pl_time now_of(const user *u) { return pl_simnet_now(u->w->net); }

static void repin(user *u)
{
    pl_sec_peer *p = pl_sec_find(u->sec, u->peer_pk);
    if (p) pl_sec_peer_set_addr(p, pl_path_session_addr(u->pm));
}

static void user_schedule(user *u);
static void user_timer(void *ctx, pl_time now)
{
    user *u = ctx;
    u->timer = 0;
    pl_sec_tick(u->sec, now);
    repin(u);
    pl_path_tick(u->pm, now);
    user_schedule(u);
}
static void user_schedule(user *u)
{
    if (u->timer) pl_simnet_timer_cancel(u->w->net, u->timer);
    u->timer = 0;
    pl_time t = pl_sec_next_timeout(u->sec), t2 = pl_path_next_timeout(u->pm);
    if (t2 < t) t = t2;
    if (t != PL_TIME_NEVER) u->timer = pl_simnet_timer(u->w->net, t < now_of(u) ? now_of(u) : t, user_timer, u);
}

/* pl_sec's datagrams: virtual addresses to the path manager, the rest to the socket. */
static void sec_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    user *u = ctx;
    uint32_t id;
    if (pl_path_virtual_owner(to, &id)) {
        CHECK_EQ(id, u->pm_id);
        pl_path_send(u->pm, to, data, len, now_of(u));
        return;
    }
    host_send(&u->h, to, data, len);
}

static void on_media(user *u, const pl_addr *from, pl_time now)
{
    if (u->media_rx == MAX_MEDIA) return;
    u->media_at[u->media_rx] = now;
    u->media_relayed[u->media_rx] = pl_path_virtual_owner(from, NULL);
    u->media_rx++;
}

static void sec_event(void *ctx, const pl_sec_event *ev)
{
    user *u = ctx;
    if (memcmp(pl_sec_peer_key(ev->peer), u->peer_pk, 32) != 0) return;
    pl_sec_peer_set_addr(ev->peer, pl_path_session_addr(u->pm));
    if (ev->type == PL_SEC_EV_ESTABLISHED) {
        u->established++;
        pl_path_session_up(u->pm, ev->from, ev->now);
    } else if (ev->type == PL_SEC_EV_DATA) {
        if (!pl_path_receive(u->pm, ev->from, ev->data, ev->len, ev->now) && ev->len && ev->data[0] == MEDIA_TYPE)
            on_media(u, ev->from, ev->now);
    }
}

/* The path manager's outputs. */
static void pm_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    user *u = ctx;
    host_send(&u->h, to, data, len);
}

static bool pm_send_message(void *ctx, const pl_addr *path_addr, const uint8_t *msg, size_t len, pl_time now)
{
    user *u = ctx;
    pl_sec_peer *p = pl_sec_find(u->sec, u->peer_pk);
    if (!p) return false;
    pl_sec_peer_set_addr(p, path_addr);
    pl_sec_err err = pl_sec_send(u->sec, p, msg, len, now);
    pl_sec_peer_set_addr(p, pl_path_session_addr(u->pm));
    return err == PL_SEC_OK;
}

static void pm_event(void *ctx, const pl_path_event *ev)
{
    user *u = ctx;
    if (ev->type != PL_PATH_EV_ACTIVE || u->actives == 64) return;
    u->reasons[u->actives] = ev->reason;
    u->kinds[u->actives] = ev->path->kind;
    u->active_at[u->actives] = ev->now;
    u->actives++;
}

/* The socket: relay framing to the path manager, the rest to the session. */
static void net_recv(void *ctx, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    user *u = ctx;
    if (pl_relay_is_framed(data, len)) {
        pl_addr path_addr;
        const uint8_t *inner;
        size_t inner_len;
        if (pl_path_unwrap(u->pm, from, data, len, &path_addr, &inner, &inner_len, now) == PL_PATH_INNER)
            pl_sec_receive(u->sec, &path_addr, inner, inner_len, now);
    } else {
        pl_sec_receive(u->sec, from, data, len, now);
    }
    repin(u);
    user_schedule(u);
}

static void media_tick(void *ctx, pl_time now)
{
    user *u = ctx;
    u->media_timer = pl_simnet_timer(u->w->net, now + MEDIA_INTERVAL, media_tick, u);
    pl_sec_peer *p = pl_sec_find(u->sec, u->peer_pk);
    if (!u->media_on || !p || !pl_sec_peer_established(p)) return;
    uint8_t pkt[120];
    memset(pkt, 0, sizeof pkt);
    pkt[0] = MEDIA_TYPE;
    pl_put_u32be(pkt + 1, u->media_seq++);
    pl_sec_send(u->sec, p, pkt, sizeof pkt, now);
    user_schedule(u);
}

static void user_init(user *u, world *w, const char *name, int nat, const char *inner, const char *pub,
                      uint32_t pm_id, bool controlling, bool privacy)
{
    memset(u, 0, sizeof *u);
    u->w = w;
    host_init(&u->h, w, nat, inner, pub);
    u->h.recv = net_recv;
    u->h.ctx = u;
    pl_test_user_make(&u->u, &w->ca, name, T0 - PL_SEC, T0 + 86400 * PL_SEC, pl_simnet_rng(w->net));
    pl_sec_config sc = {.identity = &u->u.id, .cert = u->u.cert_bytes, .cert_len = u->u.cert_len,
                        .rng = pl_simnet_rng(w->net), .accept_incoming = true};
    memcpy(sc.ca_pk, w->ca.pk, 32);
    pl_sec_io sio = {u, sec_send, sec_event};
    CHECK_EQ(pl_sec_new(&u->sec, &sc, &sio), PL_SEC_OK);
    u->pm_id = pm_id;
    pl_path_config pc = {.id = pm_id, .controlling = controlling, .privacy = privacy, .tcp_only = nat == NAT_UDP_BLOCKED};
    pl_path_io pio = {u, pm_send, pm_send_message, pm_event};
    CHECK_EQ(pl_path_new(&u->pm, &pc, &pio), PL_PATH_OK);
    u->media_timer = pl_simnet_timer(w->net, T0 + MEDIA_INTERVAL, media_tick, u);
}

static void user_free(user *u)
{
    if (u->timer) pl_simnet_timer_cancel(u->w->net, u->timer);
    if (u->media_timer) pl_simnet_timer_cancel(u->w->net, u->media_timer);
    pl_sec_free(u->sec);
    pl_path_free(u->pm);
}

/* ---- a call between alice (caller, controlling) and bob -------------------------------------- */

typedef struct call_setup {
    int nat_a, nat_b;
    bool privacy_b;
    pl_sim_link link;
} call_setup;

static world *world_new(uint64_t seed, const call_setup *cs)
{
    world *w = calloc(1, sizeof *w);
    CHECK(w != NULL);
    w->net = pl_simnet_new(seed, T0);
    pl_simnet_set_default_link(w->net, cs->link.latency ? cs->link : (pl_sim_link){15 * PL_MSEC, 2 * PL_MSEC, 0});
    pl_test_ca_init(&w->ca);
    relay_init(&w->relays[0], w, "203.0.113.1:3478", "203.0.113.1:3479/tcp");
    relay_init(&w->relays[1], w, "203.0.113.2:3478", "203.0.113.2:3479/tcp");
    user *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    CHECK(a && b);
    w->users[0] = a;
    w->users[1] = b;
    user_init(a, w, "alice", cs->nat_a, cs->nat_a == NAT_NONE ? "198.51.100.1:5000" : "192.168.1.10:5000",
              "198.51.100.1", 1, true, false);
    user_init(b, w, "bob", cs->nat_b, cs->nat_b == NAT_NONE || cs->nat_b == NAT_UDP_BLOCKED ? "198.51.100.2:6000"
                                                                                            : "192.168.2.10:6000",
              "198.51.100.2", 2, false, cs->privacy_b);
    memcpy(a->peer_pk, b->u.id.sign_pk, 32);
    memcpy(b->peer_pk, a->u.id.sign_pk, 32);
    return w;
}

static void world_free(world *w)
{
    for (int i = 0; i < 2; i++) {
        user_free(w->users[i]);
        free(w->users[i]);
        if (w->relays[i].timer) pl_simnet_timer_cancel(w->net, w->relays[i].timer);
        pl_relay_free(w->relays[i].relay);
    }
    pl_simnet_free(w->net);
    free(w);
}

static void run_for(world *w, pl_time d) { pl_simnet_run_until(w->net, pl_simnet_now(w->net) + d); }

/* The offer a user sends (its invite or answer): its reflexive address as
 * its own supernode sees it (none in privacy mode) and its relay allocation
 * with the peer's token, at both of the relay's addresses. Encoded and
 * decoded, as it travels. */
static pl_path_offer make_offer(user *u, relay_host *own, bool privacy)
{
    pl_path_offer o;
    memset(&o, 0, sizeof o);
    if (privacy) {
        o.flags = PL_PATH_OFFER_F_PRIVATE;
    } else if (u->h.nat != NAT_UDP_BLOCKED) {
        o.n_candidates = 1;
        o.candidates[0].type = u->h.nat == NAT_NONE ? PL_CAND_HOST : PL_CAND_SERVER_REFLEXIVE;
        o.candidates[0].transport = PL_TRANSPORT_UDP;
        o.candidates[0].priority = 100;
        o.candidates[0].addr = reflexive(&u->h, &own->udp);
    }
    o.n_relays = 2;
    for (int i = 0; i < 2; i++) {
        o.relays[i].addr = i == 0 ? own->udp : own->tcp;
        o.relays[i].channel = u->grant.channel;
        o.relays[i].token = u->grant.token_peer;
    }
    uint8_t buf[512];
    size_t n = pl_path_encode_offer(buf, sizeof buf, &o);
    CHECK(n > 0);
    pl_path_offer back;
    CHECK_EQ(pl_path_decode_offer(&back, buf, n), PL_PATH_OK);
    return back;
}

/* Each side allocates at its own supernode, binds, and the offers cross;
 * then alice opens the session to her session address. */
static void place_call(world *w, const call_setup *cs)
{
    user *a = w->users[0], *b = w->users[1];
    relay_host *sa = &w->relays[0], *sb = &w->relays[1];
    pl_time now = pl_simnet_now(w->net);
    CHECK_EQ(pl_relay_allocate_channel(sa->relay, a->u.id.sign_pk, b->u.id.sign_pk, now, &a->grant), PL_RELAY_OK);
    CHECK_EQ(pl_relay_allocate_channel(sb->relay, b->u.id.sign_pk, a->u.id.sign_pk, now, &b->grant), PL_RELAY_OK);
    relay_schedule(sa);
    relay_schedule(sb);
    CHECK_EQ(pl_path_add_relay(a->pm, &sa->udp, a->grant.channel, a->grant.token_self, true, now), PL_PATH_OK);
    const pl_addr *b_relay = cs->nat_b == NAT_UDP_BLOCKED ? &sb->tcp : &sb->udp;
    CHECK_EQ(pl_path_add_relay(b->pm, b_relay, b->grant.channel, b->grant.token_self, true, now), PL_PATH_OK);
    user_schedule(a);
    user_schedule(b);
    run_for(w, 30 * PL_MSEC); /* the binds create the NAT mappings towards the supernodes */

    pl_path_offer oa = make_offer(a, sa, false);
    pl_path_offer ob = make_offer(b, sb, cs->privacy_b);
    now = pl_simnet_now(w->net);
    CHECK_EQ(pl_path_apply_offer(b->pm, &oa, now), PL_PATH_OK);
    user_schedule(b);
    run_for(w, 40 * PL_MSEC); /* the invite reaches bob before his answer reaches alice */
    now = pl_simnet_now(w->net);
    CHECK_EQ(pl_path_apply_offer(a->pm, &ob, now), PL_PATH_OK);
    CHECK_EQ(pl_sec_connect(a->sec, b->u.id.sign_pk, pl_path_session_addr(a->pm), now, NULL), PL_SEC_OK);
    a->media_on = b->media_on = true;
    user_schedule(a);
}

static void active_info(const user *u, pl_path_info *info) { pl_path_active(u->pm, info); }

/* The longest gap between media packets u received in [from, to). */
static pl_time max_gap(const user *u, pl_time from, pl_time to)
{
    pl_time gap = 0, prev = 0;
    for (int i = 0; i < u->media_rx; i++) {
        pl_time t = u->media_at[i];
        if (t < from) {
            prev = t;
            continue;
        }
        if (t >= to) break;
        if (prev && t - prev > gap) gap = t - prev;
        prev = t;
    }
    return gap;
}

static int media_between(const user *u, pl_time from, pl_time to, bool *all_relayed, bool *all_direct)
{
    int n = 0;
    *all_relayed = *all_direct = true;
    for (int i = 0; i < u->media_rx; i++) {
        if (u->media_at[i] < from || u->media_at[i] >= to) continue;
        n++;
        if (u->media_relayed[i]) *all_direct = false;
        else *all_relayed = false;
    }
    return n;
}

static pl_time first_media(const user *u) { return u->media_rx ? u->media_at[0] : PL_TIME_NEVER; }

/* ---- tests -------------------------------------------------------------------------------------- */

static void direct_path_is_chosen_when_both_sides_can_reach_each_other(void)
{
    call_setup cs = {NAT_NONE, NAT_NONE, false, {0}};
    world *w = world_new(11, &cs);
    place_call(w, &cs);
    pl_time start = pl_simnet_now(w->net);
    run_for(w, 3 * PL_SEC);
    user *a = w->users[0], *b = w->users[1];
    CHECK_EQ(a->established, 1);
    CHECK_EQ(b->established, 1);
    pl_path_info ia, ib;
    active_info(a, &ia);
    active_info(b, &ib);
    CHECK_EQ(ia.kind, PL_PATH_DIRECT);
    CHECK_EQ(ib.kind, PL_PATH_DIRECT);
    CHECK(pl_addr_equal(&ia.remote, &b->h.inner) && pl_addr_equal(&ib.remote, &a->h.inner));
    /* Media went direct from the first packets, both ways. */
    bool rel, dir;
    pl_time end = pl_simnet_now(w->net);
    CHECK(media_between(b, start + 500 * PL_MSEC, end, &rel, &dir) > 100 && dir);
    CHECK(media_between(a, start + 500 * PL_MSEC, end, &rel, &dir) > 100 && dir);
    printf("  direct: first media at alice %.0f ms, at bob %.0f ms after the call was placed\n",
           (double)(first_media(a) - start) / PL_MSEC, (double)(first_media(b) - start) / PL_MSEC);
    world_free(w);
}

static void hole_punching_through_two_cone_nats_moves_the_call_to_the_direct_path(void)
{
    call_setup cs = {NAT_CONE, NAT_CONE, false, {0}};
    world *w = world_new(12, &cs);
    place_call(w, &cs);
    pl_time start = pl_simnet_now(w->net);
    run_for(w, 4 * PL_SEC);
    user *a = w->users[0], *b = w->users[1];
    pl_path_info ia, ib;
    active_info(a, &ia);
    active_info(b, &ib);
    CHECK_EQ(ia.kind, PL_PATH_DIRECT);
    CHECK_EQ(ib.kind, PL_PATH_DIRECT);
    /* The call did not wait for the punch: the session came up over a relay
     * (bob's NAT dropped alice's first direct packets), media flowed at once,
     * and the caller then moved it to the direct path. */
    CHECK(a->actives >= 2);
    CHECK(a->kinds[0] != PL_PATH_DIRECT && a->reasons[0] == PL_PATH_REASON_FIRST);
    int moved = -1;
    for (int i = 1; i < a->actives; i++)
        if (a->kinds[i] == PL_PATH_DIRECT && a->reasons[i] == PL_PATH_REASON_BETTER) moved = i;
    CHECK(moved > 0);
    CHECK(first_media(b) - start < 300 * PL_MSEC);
    CHECK(b->h.filtered > 0); /* the NAT did drop unsolicited packets */
    /* No gap in the media at the move. */
    CHECK(max_gap(b, first_media(b), pl_simnet_now(w->net)) < 100 * PL_MSEC);
    CHECK(max_gap(a, first_media(a), pl_simnet_now(w->net)) < 100 * PL_MSEC);
    printf("  punch: first media %.0f ms after the call was placed (relayed), direct after %.0f ms\n",
           (double)(first_media(b) - start) / PL_MSEC, (double)(a->active_at[moved] - start) / PL_MSEC);
    world_free(w);
}

static void relayed_when_a_symmetric_nat_meets_a_filtering_one(void)
{
    call_setup cs = {NAT_SYMMETRIC, NAT_CONE, false, {0}};
    world *w = world_new(13, &cs);
    place_call(w, &cs);
    pl_time start = pl_simnet_now(w->net);
    run_for(w, 12 * PL_SEC);
    user *a = w->users[0], *b = w->users[1];
    pl_path_info ia, ib;
    active_info(a, &ia);
    active_info(b, &ib);
    CHECK(ia.kind == PL_PATH_RELAY_UDP && ib.kind == PL_PATH_RELAY_UDP);
    CHECK_EQ(ia.channel, ib.channel); /* both on one relay channel */
    /* The direct paths were tried and failed; two relayed paths are up: the
     * active one and a standby through the other supernode. */
    int alive_relays = 0, failed_direct = 0;
    for (int s = 0; s < PL_PATH_MAX; s++) {
        pl_path_info i;
        if (!pl_path_get(a->pm, s, &i)) continue;
        if (i.kind != PL_PATH_DIRECT && i.state == PL_PATH_ALIVE) alive_relays++;
        if (i.kind == PL_PATH_DIRECT && i.state == PL_PATH_FAILED) failed_direct++;
        CHECK(!(i.kind == PL_PATH_DIRECT && i.state == PL_PATH_ALIVE));
    }
    CHECK(alive_relays >= 2);
    CHECK(failed_direct >= 1);
    bool rel, dir;
    CHECK(media_between(b, start + 500 * PL_MSEC, pl_simnet_now(w->net), &rel, &dir) > 500 && rel);
    CHECK(first_media(b) - start < 300 * PL_MSEC);
    printf("  relayed: first media %.0f ms after the call was placed\n", (double)(first_media(b) - start) / PL_MSEC);
    world_free(w);
}

/* Cuts a's active path (both ways, everything on it) mid-call and returns
 * the longest gap in media either side saw. */
static pl_time cut_active_and_measure(world *w, pl_time *gap_a, pl_time *gap_b)
{
    user *a = w->users[0], *b = w->users[1];
    pl_path_info ia;
    active_info(a, &ia);
    CHECK(ia.slot >= 0);
    if (ia.kind == PL_PATH_DIRECT) {
        cut(w, &a->h.pub, &ia.remote);
    } else {
        /* The supernode is gone: nothing in or out. */
        cut(w, &ia.remote, &a->h.pub);
        cut(w, &ia.remote, &b->h.pub);
        cut(w, &ia.remote, &a->h.inner);
        cut(w, &ia.remote, &b->h.inner);
    }
    pl_time t_cut = pl_simnet_now(w->net);
    run_for(w, 3 * PL_SEC);
    *gap_a = max_gap(a, t_cut - PL_SEC, t_cut + 3 * PL_SEC);
    *gap_b = max_gap(b, t_cut - PL_SEC, t_cut + 3 * PL_SEC);
    return *gap_a > *gap_b ? *gap_a : *gap_b;
}

static void a_symmetric_nat_meets_a_public_host_through_a_peer_reflexive_path(void)
{
    /* Bob's symmetric NAT gives his packets to Alice a port she was never
     * told about; the first authenticated packet from it makes it a path,
     * and since Bob's NAT lets Alice's answers back in, the call goes direct. */
    call_setup cs = {NAT_NONE, NAT_SYMMETRIC, false, {0}};
    world *w = world_new(22, &cs);
    place_call(w, &cs);
    run_for(w, 4 * PL_SEC);
    user *a = w->users[0], *b = w->users[1];
    pl_path_info ia, ib;
    active_info(a, &ia);
    active_info(b, &ib);
    CHECK_EQ(ia.kind, PL_PATH_DIRECT);
    CHECK(ia.peer_reflexive);
    CHECK_EQ(ib.kind, PL_PATH_DIRECT);
    CHECK(pl_path_get_stats(a->pm).prflx_added >= 1);
    /* The address Bob offered (his mapping towards his supernode) never worked. */
    pl_addr offered = reflexive(&b->h, &w->relays[1].udp);
    for (int s = 0; s < PL_PATH_MAX; s++) {
        pl_path_info i;
        if (pl_path_get(a->pm, s, &i) && pl_addr_equal(&i.remote, &offered)) CHECK(i.state != PL_PATH_ALIVE);
    }
    world_free(w);
}

static void failover_from_the_direct_path_to_a_relay_within_300_ms(void)
{
    call_setup cs = {NAT_CONE, NAT_CONE, false, {0}};
    world *w = world_new(14, &cs);
    place_call(w, &cs);
    run_for(w, 5 * PL_SEC);
    user *a = w->users[0], *b = w->users[1];
    pl_path_info ia;
    active_info(a, &ia);
    CHECK_EQ(ia.kind, PL_PATH_DIRECT);
    int before = b->media_rx;
    pl_time gap_a, gap_b;
    pl_time gap = cut_active_and_measure(w, &gap_a, &gap_b);
    printf("  failover direct -> relay at 50 packets/s: media gap %.0f ms at alice, %.0f ms at bob\n",
           (double)gap_a / PL_MSEC, (double)gap_b / PL_MSEC);
    CHECK(gap <= 300 * PL_MSEC);
    CHECK(gap >= 150 * PL_MSEC); /* it was cut: the detector waited fail_after */
    pl_path_info ib;
    active_info(a, &ia);
    active_info(b, &ib);
    CHECK(ia.kind != PL_PATH_DIRECT && ib.kind != PL_PATH_DIRECT);
    CHECK_EQ(ia.channel, ib.channel);
    CHECK(b->media_rx - before > 140); /* the call went on: ~150 packets in 3 s */
    CHECK(w->cut_dropped > 0);
    CHECK(pl_path_get_stats(a->pm).failovers >= 1);
    world_free(w);
}

static void failover_between_relays_when_a_supernode_dies(void)
{
    call_setup cs = {NAT_SYMMETRIC, NAT_CONE, false, {0}};
    world *w = world_new(15, &cs);
    place_call(w, &cs);
    run_for(w, 5 * PL_SEC);
    user *a = w->users[0], *b = w->users[1];
    pl_path_info ia, ib;
    active_info(a, &ia);
    CHECK(ia.kind == PL_PATH_RELAY_UDP);
    pl_addr dead = ia.remote;
    pl_time gap_a, gap_b;
    pl_time gap = cut_active_and_measure(w, &gap_a, &gap_b);
    printf("  failover relay -> relay (a supernode dies): media gap %.0f ms at alice, %.0f ms at bob\n",
           (double)gap_a / PL_MSEC, (double)gap_b / PL_MSEC);
    CHECK(gap <= 300 * PL_MSEC);
    active_info(a, &ia);
    active_info(b, &ib);
    CHECK(ia.kind == PL_PATH_RELAY_UDP && !pl_addr_same_host(&ia.remote, &dead));
    CHECK(!pl_addr_same_host(&ib.remote, &dead));
    world_free(w);
}

/* Each side also holds a channel at the other's relay (a standby relay, as
 * the phone asks of a standby supernode), so each relay carries two of the
 * call's paths. When the active relay dies, both sides go straight to the
 * other relay: never to the dead relay's other channel, which would cost a
 * second fail_after of silence. */
static void failover_skips_the_other_channels_of_a_dead_relay(void)
{
    for (uint64_t seed = 30; seed < 36; seed++) {
        call_setup cs = {NAT_SYMMETRIC, NAT_CONE, false, {0}};
        world *w = world_new(seed, &cs);
        place_call(w, &cs);
        user *a = w->users[0], *b = w->users[1];
        relay_host *ra = &w->relays[0], *rb = &w->relays[1];
        pl_time now = pl_simnet_now(w->net);
        pl_relay_grant ga, gb;
        CHECK_EQ(pl_relay_allocate_channel(rb->relay, a->u.id.sign_pk, b->u.id.sign_pk, now, &ga), PL_RELAY_OK);
        CHECK_EQ(pl_relay_allocate_channel(ra->relay, b->u.id.sign_pk, a->u.id.sign_pk, now, &gb), PL_RELAY_OK);
        CHECK_EQ(pl_path_add_relay(a->pm, &rb->udp, ga.channel, ga.token_self, true, now), PL_PATH_OK);
        CHECK_EQ(pl_path_add_relay(b->pm, &ra->udp, gb.channel, gb.token_self, true, now), PL_PATH_OK);
        pl_path_offer oa = {.n_relays = 1}, ob = {.n_relays = 1};
        oa.relays[0] = (pl_path_offer_relay){rb->udp, ga.channel, ga.token_peer};
        ob.relays[0] = (pl_path_offer_relay){ra->udp, gb.channel, gb.token_peer};
        CHECK_EQ(pl_path_apply_offer(b->pm, &oa, now), PL_PATH_OK);
        CHECK_EQ(pl_path_apply_offer(a->pm, &ob, now), PL_PATH_OK);
        user_schedule(a);
        user_schedule(b);
        run_for(w, 5 * PL_SEC);
        int relayed_alive = 0;
        for (int s = 0; s < PL_PATH_MAX; s++) {
            pl_path_info pi;
            if (pl_path_get(a->pm, s, &pi) && pi.kind == PL_PATH_RELAY_UDP && pi.state == PL_PATH_ALIVE) relayed_alive++;
        }
        CHECK_EQ(relayed_alive, 4);
        pl_path_info ia, ib;
        active_info(a, &ia);
        CHECK(ia.kind == PL_PATH_RELAY_UDP);
        pl_addr dead = ia.remote;
        uint64_t fa = pl_path_get_stats(a->pm).failovers, fb = pl_path_get_stats(b->pm).failovers;
        pl_time gap_a, gap_b;
        pl_time gap = cut_active_and_measure(w, &gap_a, &gap_b);
        if (seed == 30)
            printf("  four relayed paths, two per relay; the active relay dies: media gap %.0f ms at alice, %.0f ms at bob\n",
                   (double)gap_a / PL_MSEC, (double)gap_b / PL_MSEC);
        CHECK(gap <= 300 * PL_MSEC);
        /* One failover each, straight to the live relay. */
        CHECK(pl_path_get_stats(a->pm).failovers - fa <= 1 && pl_path_get_stats(b->pm).failovers - fb <= 1);
        active_info(a, &ia);
        active_info(b, &ib);
        CHECK(!pl_addr_same_host(&ia.remote, &dead) && !pl_addr_same_host(&ib.remote, &dead));
        world_free(w);
    }
}

static void the_standby_is_probed_about_once_a_second_and_the_active_one_rides_on_media(void)
{
    call_setup cs = {NAT_SYMMETRIC, NAT_CONE, false, {0}};
    world *w = world_new(16, &cs);
    place_call(w, &cs);
    run_for(w, 12 * PL_SEC);
    user *a = w->users[0];
    pl_path_info before[PL_PATH_MAX], after[PL_PATH_MAX];
    bool have[PL_PATH_MAX];
    for (int s = 0; s < PL_PATH_MAX; s++) have[s] = pl_path_get(a->pm, s, &before[s]);
    run_for(w, 10 * PL_SEC);
    int standbys = 0;
    for (int s = 0; s < PL_PATH_MAX; s++) {
        if (!have[s] || !pl_path_get(a->pm, s, &after[s])) continue;
        uint64_t probes = after[s].probes - before[s].probes;
        if (after[s].active) {
            /* Media flows both ways, so no keepalive is needed: only the
             * once-a-second round-trip probe. */
            CHECK(probes >= 9 && probes <= 12);
        } else if (after[s].state == PL_PATH_ALIVE) {
            standbys++;
            CHECK(probes >= 9 && probes <= 12);
            CHECK(after[s].acks - before[s].acks >= 9);
        } else {
            CHECK(probes <= 3); /* failed paths: one try every 5 s */
        }
    }
    CHECK(standbys >= 1);

    /* When media stops (silence suppression), the active path is kept warm
     * by keepalives about every 40 ms, and nothing fails over. */
    user *b = w->users[1];
    a->media_on = b->media_on = false;
    uint64_t failovers = pl_path_get_stats(a->pm).failovers + pl_path_get_stats(b->pm).failovers;
    pl_path_info act0, act1;
    active_info(a, &act0);
    run_for(w, 5 * PL_SEC);
    active_info(a, &act1);
    CHECK_EQ(act1.slot, act0.slot);
    CHECK_EQ(pl_path_get_stats(a->pm).failovers + pl_path_get_stats(b->pm).failovers, failovers);
    uint64_t keepalives = act1.probes - act0.probes;
    CHECK(keepalives >= 110 && keepalives <= 135);
    world_free(w);
}

static void privacy_mode_never_sends_to_the_peers_addresses(void)
{
    /* Alice is reachable directly; Bob keeps his address to himself. */
    call_setup cs = {NAT_NONE, NAT_CONE, true, {0}};
    world *w = world_new(17, &cs);
    place_call(w, &cs);
    pl_time start = pl_simnet_now(w->net);
    run_for(w, 8 * PL_SEC);
    user *a = w->users[0], *b = w->users[1];
    pl_path_info ia, ib;
    active_info(a, &ia);
    active_info(b, &ib);
    CHECK(ia.kind == PL_PATH_RELAY_UDP && ib.kind == PL_PATH_RELAY_UDP);
    /* Everything Bob sent went to his own supernode's relay. */
    for (int i = 0; i < b->h.n_dests; i++) CHECK(pl_addr_same_host(&b->h.dests[i], &w->relays[1].udp));
    /* Alice never heard from Bob's address, and none of her paths leads there. */
    for (int i = 0; i < a->h.n_sources; i++) CHECK(!pl_addr_same_host(&a->h.sources[i], &b->h.pub));
    for (int s = 0; s < PL_PATH_MAX; s++) {
        pl_path_info i;
        if (!pl_path_get(a->pm, s, &i)) continue;
        CHECK(!pl_addr_same_host(&i.remote, &b->h.pub));
        pl_path_info j;
        if (pl_path_get(b->pm, s, &j)) CHECK(j.kind != PL_PATH_DIRECT && j.own_relay);
    }
    /* Bob's manager refuses direct paths and the peer's relays outright. */
    CHECK_EQ(pl_path_add_direct(b->pm, &a->h.inner, pl_simnet_now(w->net)), PL_PATH_ERR_PRIVACY);
    CHECK_EQ(pl_path_add_relay(b->pm, &w->relays[0].udp, a->grant.channel, a->grant.token_peer, false,
                               pl_simnet_now(w->net)),
             PL_PATH_ERR_PRIVACY);
    bool rel, dir;
    CHECK(media_between(a, start + PL_SEC, pl_simnet_now(w->net), &rel, &dir) > 300 && rel);
    CHECK(media_between(b, start + PL_SEC, pl_simnet_now(w->net), &rel, &dir) > 300 && rel);
    world_free(w);
}

static void a_udp_blocked_node_talks_through_a_tcp_relay(void)
{
    call_setup cs = {NAT_CONE, NAT_UDP_BLOCKED, false, {0}};
    world *w = world_new(18, &cs);
    place_call(w, &cs);
    pl_time start = pl_simnet_now(w->net);
    run_for(w, 5 * PL_SEC);
    user *a = w->users[0], *b = w->users[1];
    pl_path_info ia, ib;
    active_info(a, &ia);
    active_info(b, &ib);
    CHECK_EQ(ib.kind, PL_PATH_RELAY_TCP);
    CHECK(ia.kind == PL_PATH_RELAY_UDP || ia.kind == PL_PATH_RELAY_TCP);
    CHECK_EQ(ia.channel, ib.channel);
    for (int i = 0; i < b->h.n_dests; i++) CHECK_EQ(b->h.dests[i].transport, PL_ADDR_TCP);
    bool rel, dir;
    CHECK(media_between(b, start + PL_SEC, pl_simnet_now(w->net), &rel, &dir) > 150 && rel);
    CHECK(media_between(a, start + PL_SEC, pl_simnet_now(w->net), &rel, &dir) > 150 && rel);
    world_free(w);
}

static void a_path_that_dies_in_one_direction_only_is_left_for_good(void)
{
    /* Alice's packets to Bob stop on the direct path; Bob's to Alice still
     * arrive. Bob notices, moves to a relay and tells Alice (LOST); Alice
     * follows and does not move back while her direction stays dead. */
    call_setup cs = {NAT_CONE, NAT_CONE, false, {0}};
    world *w = world_new(21, &cs);
    place_call(w, &cs);
    run_for(w, 5 * PL_SEC);
    user *a = w->users[0], *b = w->users[1];
    pl_path_info ia, ib;
    active_info(a, &ia);
    CHECK_EQ(ia.kind, PL_PATH_DIRECT);
    cut_one_way(w, &a->h.pub, &ia.remote);
    pl_time t_cut = pl_simnet_now(w->net);
    int switches_a = a->actives, switches_b = b->actives;
    run_for(w, 10 * PL_SEC);
    active_info(a, &ia);
    active_info(b, &ib);
    CHECK(ia.kind != PL_PATH_DIRECT && ib.kind != PL_PATH_DIRECT);
    CHECK_EQ(ia.channel, ib.channel);
    CHECK(a->actives - switches_a <= 2 && b->actives - switches_b <= 2);
    pl_time gap_b = max_gap(b, t_cut - PL_SEC, t_cut + 10 * PL_SEC);
    pl_time gap_a = max_gap(a, t_cut - PL_SEC, t_cut + 10 * PL_SEC);
    printf("  one-way cut: media gap %.0f ms at bob (who lost alice), %.0f ms at alice\n", (double)gap_b / PL_MSEC,
           (double)gap_a / PL_MSEC);
    CHECK(gap_b <= 300 * PL_MSEC && gap_a <= 300 * PL_MSEC);
    world_free(w);
}

static void among_relays_the_shorter_round_trip_wins_with_hysteresis(void)
{
    /* Both public, but the direct path is blocked from the start: relays only. */
    call_setup cs = {NAT_NONE, NAT_NONE, false, {0}};
    world *w = world_new(19, &cs);
    user *a = w->users[0], *b = w->users[1];
    cut(w, &a->h.inner, &b->h.inner);
    place_call(w, &cs);
    run_for(w, 6 * PL_SEC);
    pl_path_info ia;
    active_info(a, &ia);
    CHECK_EQ(ia.kind, PL_PATH_RELAY_UDP);
    relay_host *used = pl_addr_same_host(&ia.remote, &w->relays[0].udp) ? &w->relays[0] : &w->relays[1];
    relay_host *other = used == &w->relays[0] ? &w->relays[1] : &w->relays[0];
    /* A little slower (2 ms more on each link, 8 ms more per round trip
     * through the relay): not worth a switch. */
    pl_sim_link slower = {17 * PL_MSEC, 2 * PL_MSEC, 0};
    for (int i = 0; i < 2; i++) {
        user *u = w->users[i];
        pl_simnet_set_link(w->net, &used->udp, &u->h.inner, slower);
        pl_simnet_set_link(w->net, &u->h.inner, &used->udp, slower);
    }
    int actives = a->actives;
    run_for(w, 15 * PL_SEC);
    CHECK_EQ(a->actives, actives);
    /* Much slower (100 ms more on each link): the call moves to the other relay. */
    pl_sim_link slow = {115 * PL_MSEC, 2 * PL_MSEC, 0};
    for (int i = 0; i < 2; i++) {
        user *u = w->users[i];
        pl_simnet_set_link(w->net, &used->udp, &u->h.inner, slow);
        pl_simnet_set_link(w->net, &u->h.inner, &used->udp, slow);
    }
    run_for(w, 15 * PL_SEC);
    active_info(a, &ia);
    CHECK(pl_addr_same_host(&ia.remote, &other->udp));
    CHECK_EQ(a->reasons[a->actives - 1], PL_PATH_REASON_BETTER);
    pl_path_info ib;
    active_info(b, &ib);
    CHECK(pl_addr_same_host(&ib.remote, &other->udp));
    world_free(w);
}

static void no_false_failover_on_a_lossy_jittery_path(void)
{
    /* 2% loss and up to 20 ms of jitter on every link, for a minute; then
     * the same with media stopped (keepalives only). */
    call_setup cs = {NAT_CONE, NAT_CONE, false, {15 * PL_MSEC, 20 * PL_MSEC, 20000}};
    world *w = world_new(20, &cs);
    place_call(w, &cs);
    run_for(w, 5 * PL_SEC);
    user *a = w->users[0], *b = w->users[1];
    pl_path_info ia;
    active_info(a, &ia);
    CHECK_EQ(ia.kind, PL_PATH_DIRECT);
    uint64_t f0 = pl_path_get_stats(a->pm).failovers + pl_path_get_stats(b->pm).failovers;
    run_for(w, 60 * PL_SEC);
    uint64_t f1 = pl_path_get_stats(a->pm).failovers + pl_path_get_stats(b->pm).failovers;
    a->media_on = b->media_on = false;
    run_for(w, 60 * PL_SEC);
    uint64_t f2 = pl_path_get_stats(a->pm).failovers + pl_path_get_stats(b->pm).failovers;
    printf("  lossy path (2%% loss, 20 ms jitter): %llu failovers in a minute of media, %llu in a minute of silence\n",
           (unsigned long long)(f1 - f0), (unsigned long long)(f2 - f1));
    CHECK_EQ(f1 - f0, 0);
    CHECK(f2 - f1 <= 1);
    active_info(a, &ia);
    CHECK_EQ(ia.kind, PL_PATH_DIRECT);
    world_free(w);
}

static void runs_are_reproducible(void)
{
    pl_time gaps[2][2];
    for (int r = 0; r < 2; r++) {
        call_setup cs = {NAT_CONE, NAT_CONE, false, {0}};
        world *w = world_new(99, &cs);
        place_call(w, &cs);
        run_for(w, 3 * PL_SEC);
        cut_active_and_measure(w, &gaps[r][0], &gaps[r][1]);
        world_free(w);
    }
    CHECK(gaps[0][0] == gaps[1][0] && gaps[0][1] == gaps[1][1]);
}

/* ---- messages and the manager's own rules, without a network ---------------------------------- */

typedef struct sink {
    int sends, messages;
    pl_addr last_to;
    uint8_t last_msg[64];
    size_t last_len;
} sink;
static void sink_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    sink *s = ctx;
    s->sends++;
    s->last_to = *to;
    (void)data;
    (void)len;
}
static bool sink_message(void *ctx, const pl_addr *path_addr, const uint8_t *msg, size_t len, pl_time now)
{
    sink *s = ctx;
    (void)path_addr;
    (void)now;
    s->messages++;
    if (len <= sizeof s->last_msg) {
        memcpy(s->last_msg, msg, len);
        s->last_len = len;
    }
    return true;
}

static void offers_and_probes_are_strict(void)
{
    pl_path_offer o;
    memset(&o, 0, sizeof o);
    o.n_candidates = 2;
    o.candidates[0] = (pl_record_candidate){PL_CAND_HOST, PL_TRANSPORT_UDP, 10, addr("192.0.2.5:4000")};
    o.candidates[1] = (pl_record_candidate){PL_CAND_SERVER_REFLEXIVE, PL_TRANSPORT_UDP, 5, addr("[2001:db8::5]:4001")};
    o.n_relays = 1;
    o.relays[0] = (pl_path_offer_relay){addr("203.0.113.9:3479/tcp"), 77, 0x0102030405060708ull};
    uint8_t buf[512];
    size_t n = pl_path_encode_offer(buf, sizeof buf, &o);
    CHECK_EQ(n, 5 + (6 + 7) + (6 + 19) + (1 + 7 + 12));
    pl_path_offer b;
    CHECK_EQ(pl_path_decode_offer(&b, buf, n), PL_PATH_OK);
    CHECK(b.n_candidates == 2 && b.n_relays == 1 && b.relays[0].channel == 77 &&
          b.relays[0].addr.transport == PL_ADDR_TCP && pl_addr_equal(&b.candidates[1].addr, &o.candidates[1].addr));
    for (size_t cut_at = 0; cut_at < n; cut_at++) CHECK_EQ(pl_path_decode_offer(&b, buf, cut_at), PL_PATH_ERR_MALFORMED);
    buf[n] = 0;
    CHECK_EQ(pl_path_decode_offer(&b, buf, n + 1), PL_PATH_ERR_MALFORMED);
    pl_path_offer bad = o;
    bad.flags = PL_PATH_OFFER_F_PRIVATE; /* private, yet with addresses */
    CHECK_EQ(pl_path_encode_offer(buf, sizeof buf, &bad), 0);
    bad = o;
    bad.candidates[1] = bad.candidates[0]; /* a duplicate */
    CHECK_EQ(pl_path_encode_offer(buf, sizeof buf, &bad), 0);
    bad = o;
    bad.relays[0].token = 0;
    CHECK_EQ(pl_path_encode_offer(buf, sizeof buf, &bad), 0);
    bad = o;
    bad.candidates[0].type = PL_CAND_RELAYED; /* relays are listed as relays */
    CHECK_EQ(pl_path_encode_offer(buf, sizeof buf, &bad), 0);

    /* Virtual addresses: recognisable, owned, never a real destination. */
    sink s = {0};
    pl_path_config pc = {.id = 0xABCDEF01, .controlling = true};
    pl_path_io io = {&s, sink_send, sink_message, NULL};
    pl_path *pm;
    CHECK_EQ(pl_path_new(&pm, &pc, &io), PL_PATH_OK);
    uint32_t id = 0;
    CHECK(pl_path_virtual_owner(pl_path_session_addr(pm), &id) && id == 0xABCDEF01);
    pl_addr real = addr("[2001:db8::1]:5");
    CHECK(!pl_path_virtual_owner(&real, NULL));
    CHECK_EQ(pl_path_add_direct(pm, pl_path_session_addr(pm), T0), PL_PATH_ERR_CONFIG);
    CHECK_EQ(pl_path_add_direct(pm, &real, T0), PL_PATH_OK);
    CHECK_EQ(pl_path_add_direct(pm, &real, T0), PL_PATH_ERR_EXISTS);
    pl_addr tcp = addr("192.0.2.7:9/tcp");
    CHECK_EQ(pl_path_add_direct(pm, &tcp, T0), PL_PATH_ERR_CONFIG);
    CHECK_EQ(pl_path_add_relay(pm, &tcp, 0, 5, true, T0), PL_PATH_ERR_CONFIG);
    CHECK_EQ(pl_path_add_relay(pm, &tcp, 4, 5, true, T0), PL_PATH_OK);
    CHECK_EQ(s.sends, 1); /* the bind */
    CHECK(pl_addr_equal(&s.last_to, &tcp));
    /* A datagram to an address that is not the manager's is refused. */
    CHECK(!pl_path_send(pm, &real, (const uint8_t *)"x", 1, T0));
    /* Before any path works, the session's datagrams go on every path. */
    CHECK(pl_path_send(pm, pl_path_session_addr(pm), (const uint8_t *)"x", 1, T0));
    CHECK_EQ(s.sends, 3);
    CHECK_EQ(pl_path_get_stats(pm).fanout_datagrams, 2);
    /* Unwrap takes only this manager's channel, token and relay address. */
    uint8_t pkt[64];
    pl_addr pa;
    const uint8_t *inner;
    size_t inner_len;
    size_t pn = pl_relay_wrap(pkt, sizeof pkt, 4, 5, (const uint8_t *)"hi", 2);
    CHECK_EQ(pl_path_unwrap(pm, &tcp, pkt, pn, &pa, &inner, &inner_len, T0), PL_PATH_INNER);
    CHECK(inner_len == 2 && memcmp(inner, "hi", 2) == 0 && pl_path_virtual_owner(&pa, &id) && id == 0xABCDEF01);
    pl_addr udp_twin = tcp;
    udp_twin.transport = PL_ADDR_UDP;
    CHECK_EQ(pl_path_unwrap(pm, &udp_twin, pkt, pn, &pa, &inner, &inner_len, T0), PL_PATH_NOT_MINE);
    pn = pl_relay_wrap(pkt, sizeof pkt, 4, 6, (const uint8_t *)"hi", 2);
    CHECK_EQ(pl_path_unwrap(pm, &tcp, pkt, pn, &pa, &inner, &inner_len, T0), PL_PATH_NOT_MINE);
    pn = pl_relay_wrap(pkt, sizeof pkt, 4, 5, NULL, 0);
    CHECK_EQ(pl_path_unwrap(pm, &tcp, pkt, pn, &pa, &inner, &inner_len, T0), PL_PATH_CONSUMED);

    /* Path messages: the wrong size or unknown flags are counted, not obeyed;
     * an answer must name a live path and carry a plausible stamp. */
    pl_path_session_up(pm, &real, T0);
    uint8_t probe[PL_PATH_PROBE_SIZE] = {PL_PATH_MSG_PROBE, PL_PATH_F_ACK_REQ, 0};
    int before = s.messages;
    CHECK(pl_path_receive(pm, &real, probe, sizeof probe, T0));
    CHECK_EQ(s.messages, before + 1); /* answered */
    CHECK(s.last_len == PL_PATH_ACK_SIZE && s.last_msg[0] == PL_PATH_MSG_ACK);
    probe[1] = 0x80;
    CHECK(pl_path_receive(pm, &real, probe, sizeof probe, T0));
    CHECK(pl_path_receive(pm, &real, probe, sizeof probe - 1, T0));
    CHECK_EQ(pl_path_get_stats(pm).malformed, 2);
    uint8_t ack[PL_PATH_ACK_SIZE] = {PL_PATH_MSG_ACK, 0x0F};
    pl_put_u64be(ack + 2, T0);
    CHECK(pl_path_receive(pm, &real, ack, sizeof ack, T0 + PL_MSEC)); /* slot 15 is empty */
    pl_put_u64be(ack + 2, T0 + PL_SEC);
    ack[1] = 0x10; /* slot 0, gen 1: the direct path; but a stamp from the future */
    CHECK(pl_path_receive(pm, &real, ack, sizeof ack, T0 + PL_MSEC));
    CHECK_EQ(pl_path_get_stats(pm).malformed, 4);
    CHECK_EQ(pl_path_get_stats(pm).acks_received, 0);
    /* Anything else is the caller's. */
    uint8_t media[3] = {MEDIA_TYPE, 1, 2};
    CHECK(!pl_path_receive(pm, &real, media, sizeof media, T0));
    pl_path_free(pm);
}

int main(void)
{
    if (!pl_init()) return 1;
    RUN(offers_and_probes_are_strict);
    RUN(direct_path_is_chosen_when_both_sides_can_reach_each_other);
    RUN(hole_punching_through_two_cone_nats_moves_the_call_to_the_direct_path);
    RUN(relayed_when_a_symmetric_nat_meets_a_filtering_one);
    RUN(a_symmetric_nat_meets_a_public_host_through_a_peer_reflexive_path);
    RUN(failover_from_the_direct_path_to_a_relay_within_300_ms);
    RUN(failover_between_relays_when_a_supernode_dies);
    RUN(failover_skips_the_other_channels_of_a_dead_relay);
    RUN(the_standby_is_probed_about_once_a_second_and_the_active_one_rides_on_media);
    RUN(privacy_mode_never_sends_to_the_peers_addresses);
    RUN(a_udp_blocked_node_talks_through_a_tcp_relay);
    RUN(a_path_that_dies_in_one_direction_only_is_left_for_good);
    RUN(among_relays_the_shorter_round_trip_wins_with_hysteresis);
    RUN(no_false_failover_on_a_lossy_jittery_path);
    RUN(runs_are_reproducible);
    return pl_test_summary();
}
