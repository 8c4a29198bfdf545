/*
 * stack.c - one process's protocol stack (stack.h): the link underneath,
 * the role's cores on top, and the dispatch of messages between them.
 */
#include "stack.h"

#include <sodium.h>
#include <string.h>

struct pl_stack {
    pl_role role;
    pl_super_config super_cfg; /* to make a supernode core (at start, or when promoted) */
    pl_identity id;            /* the copy super_cfg points to */
    bool promoted;             /* a node that is a supernode too */
    pl_time idle_since;        /* promoted and serving nobody since */
    pl_time leaving_until;     /* stepping down: the core is freed then */
    pl_ovl_peer *seeds; /* a supernode's bootstrap list, for joining */
    size_t n_seeds;
    const pl_mem *mem;
    pl_stack_io io;
    pl_link *link; /* NULL with an external transport */
    pl_node *node;
    pl_super *super;
    pl_phone *phone; /* a node's telephone, or NULL */
};

/* ---- the cores' outputs ------------------------------------------------------------ */

static bool core_send(void *ctx, const uint8_t pk[32], const pl_addr *addr, const uint8_t *msg, size_t len,
                      pl_time now)
{
    pl_stack *st = ctx;
    if (!st->link) return st->io.send_message(st->io.ctx, pk, addr, msg, len, now);
    return pl_link_send(st->link, pk, addr, msg, len, now) == PL_LINK_OK;
}

static void core_send_raw(void *ctx, const pl_addr *to, const uint8_t *data, size_t len, pl_time now)
{
    pl_stack *st = ctx;
    static const uint8_t nobody[32];
    if (st->link) st->io.send_datagram(st->io.ctx, to, data, len);
    else st->io.send_message(st->io.ctx, nobody, to, data, len, now);
}

static void core_close(void *ctx, const uint8_t pk[32], pl_time now)
{
    pl_stack *st = ctx;
    if (st->link) pl_link_close(st->link, pk, now);
    else if (st->io.close_peer) st->io.close_peer(st->io.ctx, pk, now);
}

static void node_event(void *ctx, const pl_node_event *ev)
{
    pl_stack *st = ctx;
    if (ev->type == PL_NODE_EV_PROMOTE && !st->super && ev->promote)
        pl_stack_promote(st, ev->promote->seeds, ev->promote->n, ev->now);
    if (st->phone) pl_phone_node_event(st->phone, ev);
    if (!st->io.event) return;
    pl_stack_event e = {PL_STACK_EV_NODE, ev, NULL, NULL, NULL};
    st->io.event(st->io.ctx, &e);
}

static void super_event(void *ctx, const pl_super_event *ev)
{
    pl_stack *st = ctx;
    if (!st->io.event) return;
    pl_stack_event e = {PL_STACK_EV_SUPER, NULL, ev, NULL, NULL};
    st->io.event(st->io.ctx, &e);
}

static void phone_event(void *ctx, const pl_phone_event *ev)
{
    pl_stack *st = ctx;
    if (!st->io.event) return;
    pl_stack_event e = {PL_STACK_EV_PHONE, NULL, NULL, NULL, ev};
    st->io.event(st->io.ctx, &e);
}

static void phone_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    pl_stack *st = ctx;
    if (st->io.send_datagram) st->io.send_datagram(st->io.ctx, to, data, len);
}

/* ---- inputs ---------------------------------------------------------------------------- */

static void dispatch(pl_stack *st, const uint8_t pk[32], const pl_cert *cert, const pl_addr *from,
                     const uint8_t *msg, size_t len, pl_time now)
{
    /* Chat and conference control between users are the driver's (the
     * daemon keeps the chat engine and its history, and the conference core
     * beside the phone); no core takes them, a promoted node's mailbox
     * included. */
    if (len && (msg[0] == PL_MBOX_CHAT || (msg[0] >= PL_OVL_CONF_FIRST && msg[0] <= PL_OVL_CONF_LAST))) {
        if (st->node && st->io.user_message) st->io.user_message(st->io.ctx, pk, cert, msg, len, now);
        return;
    }
    if (st->super && pl_super_message(st->super, pk, cert, from, msg, len, now)) return;
    if (st->phone && pl_phone_message(st->phone, pk, cert, from, msg, len, now)) return;
    if (st->node && pl_node_message(st->node, pk, from, msg, len, now)) return;
    /* Unknown types are ignored: a newer peer may speak more than we do. */
}

static void link_message(void *ctx, const pl_link_message *m)
{
    pl_stack *st = ctx;
    dispatch(st, m->peer_pk, m->cert, m->from, m->data, m->len, m->now);
}

static void link_event(void *ctx, const pl_link_event *ev)
{
    pl_stack *st = ctx;
    if (st->io.event) {
        pl_stack_event e = {PL_STACK_EV_LINK, NULL, NULL, ev, NULL};
        st->io.event(st->io.ctx, &e);
    }
    if (st->phone) pl_phone_link_event(st->phone, ev);
    /* A session a core closed itself is no news to the cores. */
    if (ev->type == PL_LINK_EV_DOWN && ev->why != PL_LINK_DOWN_CLOSED) pl_stack_peer_down(st, ev->peer_pk, ev->now);
}

static void link_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    pl_stack *st = ctx;
    /* The session with a call's peer sends to its path manager's virtual
     * addresses (path.h); the phone takes those. */
    if (st->phone && pl_phone_route(st->phone, to, data, len)) return;
    if (st->io.send_datagram) st->io.send_datagram(st->io.ctx, to, data, len);
}

void pl_stack_receive(pl_stack *st, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    if (len && data[0] == PL_OVL_PROBE_BYTE) {
        if (st->node) pl_node_probe(st->node, data, len, now);
        return;
    }
    /* Relay framing (docs/paths.md, section 2): a supernode's relay
     * forwards it, a node's phone unwraps it for a call. */
    if (pl_relay_is_framed(data, len)) {
        /* A promoted node is both: what its relay does not forward may be
         * for its own calls. */
        if (st->super) {
            uint8_t pkt[PL_RELAY_MAX_PACKET];
            pl_addr to;
            if (len > sizeof pkt) return;
            memcpy(pkt, data, len);
            size_t n = len;
            if (pl_callsvc_datagram(pl_super_calls(st->super), from, pkt, &n, now, &to)) {
                if (st->io.send_datagram) st->io.send_datagram(st->io.ctx, &to, pkt, n);
                return;
            }
        }
        if (st->phone) {
            pl_phone_set_time(st->phone, now);
            pl_phone_datagram(st->phone, from, data, len, now);
            pl_phone_repin(st->phone);
        }
        return;
    }
    if (st->phone) pl_phone_set_time(st->phone, now);
    if (st->link) pl_link_receive(st->link, from, data, len, now);
    if (st->phone) pl_phone_repin(st->phone);
}

void pl_stack_deliver(pl_stack *st, const uint8_t pk[32], const pl_cert *cert, const pl_addr *from,
                      const uint8_t *msg, size_t len, pl_time now)
{
    if (len && msg[0] == PL_OVL_PROBE_BYTE) {
        if (st->node) pl_node_probe(st->node, msg, len, now);
        return;
    }
    dispatch(st, pk, cert, from, msg, len, now);
}

void pl_stack_peer_down(pl_stack *st, const uint8_t pk[32], pl_time now)
{
    if (st->node) pl_node_peer_down(st->node, pk, now);
    if (st->super) pl_super_peer_down(st->super, pk, now);
}

void pl_stack_unreachable(pl_stack *st, const pl_addr *addr, pl_time now)
{
    if (st->node) pl_node_unreachable(st->node, addr, now);
}

/* A promoted supernode that has served nobody for PL_STACK_DEMOTE_IDLE
 * leaves the membership and, once its leaving has had time to spread, is a
 * node only again. Supernodes an operator started stay. */
static void maybe_demote(pl_stack *st, pl_time now)
{
    if (!st->promoted || !st->super) return;
    if (st->leaving_until) {
        if (now < st->leaving_until) return;
        pl_super_free(st->super);
        st->super = NULL;
        st->promoted = false;
        st->leaving_until = 0;
        if (st->io.event) {
            pl_stack_event e = {PL_STACK_EV_DEMOTED, NULL, NULL, NULL, NULL};
            st->io.event(st->io.ctx, &e);
        }
        return;
    }
    /* Idle: at most one client (a promoted supernode may be the node of
     * another one, so "nobody" might never come). */
    if (pl_super_get_stats(st->super).clients >= 2) st->idle_since = now;
    else if (now - st->idle_since >= PL_STACK_DEMOTE_IDLE) {
        /* Whoever is left is sent elsewhere before leaving. */
        pl_ovl_peer to[4];
        uint8_t n = pl_super_sample(st->super, to, 4);
        if (n) pl_super_shed(st->super, UINT32_MAX, to, n, now);
        pl_super_leave(st->super, now);
        st->leaving_until = now + 10 * PL_SEC;
    }
}

void pl_stack_tick(pl_stack *st, pl_time now)
{
    if (st->phone) pl_phone_set_time(st->phone, now);
    if (st->link) pl_link_tick(st->link, now);
    if (st->phone) pl_phone_repin(st->phone);
    if (st->node) pl_node_tick(st->node, now);
    if (st->super) pl_super_tick(st->super, now);
    maybe_demote(st, now);
    if (st->phone) pl_phone_tick(st->phone, now);
}

pl_time pl_stack_next_timeout(const pl_stack *st)
{
    pl_time t = PL_TIME_NEVER, x;
    if (st->link && (x = pl_link_next_timeout(st->link)) < t) t = x;
    if (st->node && (x = pl_node_next_timeout(st->node)) < t) t = x;
    if (st->super && (x = pl_super_next_timeout(st->super)) < t) t = x;
    if (st->promoted) {
        x = st->leaving_until ? st->leaving_until : st->idle_since + PL_STACK_DEMOTE_IDLE;
        if (x < t) t = x;
    }
    if (st->phone && (x = pl_phone_next_timeout(st->phone)) < t) t = x;
    return t;
}

/* ---- set-up ------------------------------------------------------------------------------------ */

static pl_stack_err make_super(pl_stack *st)
{
    pl_super_io sio = {st, core_send, core_close, super_event, core_send_raw};
    pl_super_err se = pl_super_new(&st->super, &st->super_cfg, &sio);
    if (se) return se == PL_SUPER_ERR_NOMEM ? PL_STACK_ERR_NOMEM : PL_STACK_ERR_CONFIG;
    return PL_STACK_OK;
}

pl_stack_err pl_stack_promote(pl_stack *st, const pl_ovl_peer *seeds, size_t n, pl_time now)
{
    if (st->super) return PL_STACK_OK;
    pl_stack_err err = make_super(st);
    if (err) return err;
    st->promoted = true;
    st->idle_since = now;
    for (size_t i = 0; i < n; i++) pl_super_add_known(st->super, seeds[i].pk, &seeds[i].addr, now);
    pl_super_join(st->super, now);
    if (st->io.event) {
        pl_stack_event e = {PL_STACK_EV_PROMOTED, NULL, NULL, NULL, NULL};
        st->io.event(st->io.ctx, &e);
    }
    return PL_STACK_OK;
}

pl_stack_err pl_stack_new(pl_stack **out, const pl_stack_config *cfg, const pl_stack_io *io)
{
    *out = NULL;
    if (!cfg || !io || !cfg->identity || !cfg->rng ||
        (cfg->role != PL_ROLE_NODE && cfg->role != PL_ROLE_SUPERNODE) ||
        (cfg->external_transport ? !io->send_message : !io->send_datagram))
        return PL_STACK_ERR_CONFIG;
    const pl_mem *mem = cfg->mem ? cfg->mem : pl_mem_system();
    pl_stack *st = mem->calloc(mem->ctx, 1, sizeof *st);
    if (!st) return PL_STACK_ERR_NOMEM;
    st->role = cfg->role;
    st->mem = mem;
    st->io = *io;
    pl_stack_err err = PL_STACK_OK;

    if (!cfg->external_transport) {
        uint32_t max_peers = cfg->max_peers;
        if (!max_peers) {
            uint32_t clients = cfg->max_clients ? cfg->max_clients : PL_SUPER_DEFAULT_MAX_CLIENTS;
            max_peers = cfg->role == PL_ROLE_SUPERNODE ? clients + 4096 : 1024;
        }
        pl_link_config lc = {.sec = {.identity = cfg->identity,
                                     .cert = cfg->cert,
                                     .cert_len = cfg->cert_len,
                                     .rng = cfg->rng,
                                     .mem = mem,
                                     .max_peers = max_peers,
                                     .accept_incoming = true,
                                     /* Overlay links keep their own keepalives and idle
                                      * for long: ten-minute keys (docs/overlay.md). */
                                     .no_passive_keepalive = true,
                                     .key_lifetime_s = 660}};
        /* A supernode may have many messages for one peer before the
         * session is up (a burst of publishes to a replica it has not spoken
         * to yet): it queues more than a node does. */
        if (cfg->role == PL_ROLE_SUPERNODE) {
            lc.pending_max = 8192;
            lc.pending_per_peer = 1024;
        }
        memcpy(lc.sec.ca_pk, cfg->ca_pk, 32);
        pl_link_io lio = {st, link_send, link_message, link_event};
        pl_link_err le = pl_link_new(&st->link, &lc, &lio);
        if (le) err = le == PL_LINK_ERR_NOMEM ? PL_STACK_ERR_NOMEM : PL_STACK_ERR_CONFIG;
    }
    if (!err && cfg->role == PL_ROLE_NODE) {
        static const uint8_t any[16];
        bool wildcard = cfg->self_addr.family == PL_AF_NONE ||
                        memcmp(cfg->self_addr.ip, any, cfg->self_addr.family == PL_AF_INET4 ? 4 : 16) == 0;
        pl_node_config nc = {.identity = cfg->identity,
                             .cert = cfg->cert,
                             .cert_len = cfg->cert_len,
                             .n_host_addrs = wildcard ? 0 : 1,
                             .host_addrs = {cfg->self_addr},
                             .rng = cfg->rng,
                             .mem = mem,
                             .bootstrap = cfg->bootstrap,
                             .n_bootstrap = cfg->n_bootstrap,
                             .no_tcp = cfg->no_tcp,
                             .no_udp = cfg->no_udp,
                             .attach = cfg->attach,
                             .no_mail = cfg->no_mailbox};
        if (cfg->promote == PL_PROMOTE_AUTO) nc.attach.flags |= PL_OVL_ATTACH_F_CANDIDATE;
        memcpy(nc.ca_pk, cfg->ca_pk, 32);
        pl_node_io nio = {st, core_send, core_close, node_event};
        pl_node_err ne = pl_node_new(&st->node, &nc, &nio);
        if (ne) err = ne == PL_NODE_ERR_NOMEM ? PL_STACK_ERR_NOMEM : PL_STACK_ERR_CONFIG;
    }
    st->id = *cfg->identity;
    st->super_cfg = (pl_super_config){.identity = &st->id,
                                      .self_addr = cfg->self_addr,
                                      .replicas = cfg->replicas,
                                      .vpoints = cfg->vpoints,
                                      .shared_ring = cfg->shared_ring,
                                      .no_mailbox = cfg->no_mailbox,
                                      .mailbox_max_bytes = cfg->mailbox_max_bytes,
                                      .membership = cfg->membership || cfg->role == PL_ROLE_NODE,
                                      .members = cfg->members,
                                      .min_uptime_s = cfg->min_uptime_s,
                                      .min_kbps = cfg->min_kbps,
                                      .min_memory_mb = cfg->min_memory_mb,
                                      .max_kbps = cfg->max_kbps,
                                      .rng = cfg->rng,
                                      .mem = mem,
                                      .max_clients = cfg->max_clients,
                                      .keepalive_s = cfg->keepalive_s};
    /* The relay takes packets on the supernode's own socket, and on its
     * TCP listener (same address) unless there is none. */
    if (!cfg->no_tcp) {
        st->super_cfg.relay_tcp = cfg->self_addr;
        st->super_cfg.relay_tcp.transport = PL_ADDR_TCP;
    }
    memcpy(st->super_cfg.ca_pk, cfg->ca_pk, 32);
    if (!err && cfg->role == PL_ROLE_SUPERNODE) err = make_super(st);
    if (!err && cfg->role == PL_ROLE_SUPERNODE && cfg->n_bootstrap) {
        st->seeds = mem->calloc(mem->ctx, cfg->n_bootstrap, sizeof *st->seeds);
        if (!st->seeds) err = PL_STACK_ERR_NOMEM;
        else memcpy(st->seeds, cfg->bootstrap, cfg->n_bootstrap * sizeof *st->seeds);
        st->n_seeds = cfg->n_bootstrap;
    }
    if (!err && cfg->role == PL_ROLE_NODE && cfg->phone && st->link) {
        pl_phone_config pc = *cfg->phone;
        pc.identity = cfg->identity;
        pc.cert = cfg->cert;
        pc.cert_len = cfg->cert_len;
        memcpy(pc.ca_pk, cfg->ca_pk, 32);
        pc.rng = cfg->rng;
        pc.mem = mem;
        pc.host_addr = cfg->self_addr;
        pc.privacy = pc.privacy || (cfg->attach.flags & PL_OVL_ATTACH_F_PRIVATE) != 0;
        pc.tcp_only = pc.tcp_only || cfg->no_udp;
        pl_phone_io pio = {st, phone_send, phone_event};
        pl_phone_err pe = pl_phone_new(&st->phone, &pc, &pio, st->link, st->node);
        if (pe) err = pe == PL_PHONE_ERR_NOMEM ? PL_STACK_ERR_NOMEM : PL_STACK_ERR_CONFIG;
    }
    if (err) {
        pl_stack_free(st);
        return err;
    }
    *out = st;
    return PL_STACK_OK;
}

void pl_stack_free(pl_stack *st)
{
    if (!st) return;
    const pl_mem *mem = st->mem;
    pl_phone_free(st->phone);
    pl_node_free(st->node);
    pl_super_free(st->super);
    pl_link_free(st->link);
    if (st->seeds) mem->free(mem->ctx, st->seeds);
    pl_identity_wipe(&st->id);
    memset(st, 0, sizeof *st);
    mem->free(mem->ctx, st);
}

void pl_stack_start(pl_stack *st, pl_time now)
{
    if (st->node) pl_node_start(st->node, now);
    /* A supernode knows its seeds (the others, without gossip) and, with
     * gossip, pulls the membership from one of them. */
    if (st->super) {
        for (size_t i = 0; i < st->n_seeds; i++) pl_super_add_known(st->super, st->seeds[i].pk, &st->seeds[i].addr, now);
        if (pl_super_members(st->super) && st->n_seeds) pl_super_join(st->super, now);
    }
}

void pl_stack_stop(pl_stack *st, pl_time now)
{
    if (st->node) pl_node_stop(st->node, now);
    if (st->super) pl_super_leave(st->super, now);
}

pl_role pl_stack_role(const pl_stack *st) { return st->role; }
pl_node *pl_stack_node(pl_stack *st) { return st->node; }
pl_super *pl_stack_super(pl_stack *st) { return st->super; }
pl_link *pl_stack_link(pl_stack *st) { return st->link; }
pl_phone *pl_stack_phone(pl_stack *st) { return st->phone; }

const char *pl_stack_strerror(pl_stack_err err)
{
    switch (err) {
    case PL_STACK_OK: return "ok";
    case PL_STACK_ERR_CONFIG: return "bad stack configuration";
    case PL_STACK_ERR_NOMEM: return "out of memory";
    }
    return "unknown stack error";
}
