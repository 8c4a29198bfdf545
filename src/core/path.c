/*
 * path.c - the path manager of one session with a peer (path.h,
 * docs/paths.md).
 *
 * Paths live in a fixed table of PL_PATH_MAX slots. A probe names the path
 * it was sent on by a tag (slot and a generation that changes when a slot is
 * reused), and carries the sender's clock, which the answer echoes: the
 * round trip needs no per-probe state, and an answer to a slot's previous
 * occupant is told apart. Everything here is driven by three inputs - the
 * datagrams the session sends, the payloads it authenticated, and the
 * time - and produces datagrams, session messages and events.
 */
#include "path.h"

#include <sodium.h>
#include <string.h>

#include "relay.h"
#include "wire.h"

typedef struct path {
    bool used;
    uint8_t gen; /* 0..15 */
    uint8_t kind, state;
    bool own, prflx;
    pl_addr addr;   /* the path address in the session */
    pl_addr remote; /* the peer, or the relay */
    uint32_t channel;
    uint64_t token;
    pl_time check_started, next_probe, next_bind;
    pl_time last_rx, last_ack, srtt;
    uint32_t acks_in_row; /* answers since it last became alive */
    uint64_t tx, rx, probes, acks;
} path;

struct pl_path {
    pl_path_config cfg;
    pl_path_io io;
    const pl_mem *mem;
    path p[PL_PATH_MAX];
    int active; /* slot, or -1 */
    pl_time activated_at, last_switch, last_tx_active;
    bool session_up;
    bool peer_private;
    bool searching; /* the active path is silent and no standby is fresh: probe everything often */
    bool nominating;
    int nominate_tries;
    pl_time nominate_next;
    bool reporting_lost;
    int lost_tries;
    pl_time lost_next;
    pl_addr session_addr;
    pl_path_stats stats;
};

/* The largest plausible round trip an answer may report; older stamps are
 * refused as nonsense rather than trusted. */
#define MAX_STAMP_AGE (10 * PL_SEC)

/* ---- virtual addresses -------------------------------------------------------------- */

/* 100::/64: the IPv6 discard-only prefix (RFC 6666). */
static const uint8_t VIRTUAL_PREFIX[8] = {0x01, 0x00, 0, 0, 0, 0, 0, 0};
#define SESSION_PORT 1

static pl_addr make_virtual(uint32_t id, uint16_t port)
{
    pl_addr a;
    memset(&a, 0, sizeof a);
    a.family = PL_AF_INET6;
    a.transport = PL_ADDR_UDP;
    memcpy(a.ip, VIRTUAL_PREFIX, 8);
    pl_put_u32be(a.ip + 8, id);
    a.port = port;
    return a;
}

bool pl_path_virtual_owner(const pl_addr *a, uint32_t *id)
{
    if (a->family != PL_AF_INET6 || memcmp(a->ip, VIRTUAL_PREFIX, 8) != 0) return false;
    if (id) *id = pl_get_u32be(a->ip + 8);
    return true;
}

const pl_addr *pl_path_session_addr(const pl_path *pm) { return &pm->session_addr; }

/* ---- small helpers ------------------------------------------------------------------------ */

static int slot_of(const pl_path *pm, const path *p) { return (int)(p - pm->p); }
static uint8_t tag_of(const pl_path *pm, const path *p) { return (uint8_t)(p->gen << 4 | slot_of(pm, p)); }

static void fill_info(const pl_path *pm, const path *p, pl_path_info *info)
{
    memset(info, 0, sizeof *info);
    info->slot = slot_of(pm, p);
    info->kind = p->kind;
    info->state = p->state;
    info->active = pm->active == info->slot;
    info->own_relay = p->own;
    info->peer_reflexive = p->prflx;
    info->addr = p->addr;
    info->remote = p->remote;
    info->channel = p->channel;
    info->srtt = p->srtt;
    info->last_rx = p->last_rx;
    info->last_ack = p->last_ack;
    info->tx = p->tx;
    info->rx = p->rx;
    info->probes = p->probes;
    info->acks = p->acks;
}

static void emit(pl_path *pm, pl_path_event_type type, pl_path_reason reason, const path *p, pl_time now)
{
    if (!pm->io.event) return;
    pl_path_info info;
    fill_info(pm, p, &info);
    pl_path_event ev = {type, reason, &info, now};
    pm->io.event(pm->io.ctx, &ev);
}

static int find_addr(const pl_path *pm, const pl_addr *a)
{
    for (int i = 0; i < PL_PATH_MAX; i++)
        if (pm->p[i].used && pl_addr_equal(&pm->p[i].addr, a)) return i;
    return -1;
}

static path *new_slot(pl_path *pm)
{
    for (int i = 0; i < PL_PATH_MAX; i++) {
        path *p = &pm->p[i];
        if (p->used) continue;
        uint8_t gen = (uint8_t)((p->gen + 1) & 15);
        memset(p, 0, sizeof *p);
        p->used = true;
        p->gen = gen;
        p->state = PL_PATH_CHECKING;
        return p;
    }
    return NULL;
}

static void free_slot(pl_path *pm, path *p)
{
    uint8_t gen = p->gen;
    if (pm->active == slot_of(pm, p)) pm->active = -1;
    memset(p, 0, sizeof *p);
    p->gen = gen;
}

/* ---- sending -------------------------------------------------------------------------------- */

static bool send_on(pl_path *pm, path *p, const uint8_t *data, size_t len)
{
    if (p->kind == PL_PATH_DIRECT) {
        pm->io.send(pm->io.ctx, &p->remote, data, len);
    } else {
        uint8_t buf[PL_RELAY_MAX_PACKET];
        size_t n = pl_relay_wrap(buf, sizeof buf, p->channel, p->token, data, len);
        if (!n) return false;
        pm->io.send(pm->io.ctx, &p->remote, buf, n);
    }
    p->tx++;
    return true;
}

static void send_bind(pl_path *pm, path *p, pl_time now)
{
    uint8_t buf[PL_RELAY_HEADER_SIZE];
    pl_relay_wrap(buf, sizeof buf, p->channel, p->token, NULL, 0);
    pm->io.send(pm->io.ctx, &p->remote, buf, sizeof buf);
    pm->stats.binds_sent++;
    p->next_bind = now + PL_PATH_BIND_RETRY;
}

static void send_probe(pl_path *pm, path *p, uint8_t flags, pl_time now)
{
    /* A relay forgets a side whose NAT mapping changed until it binds again,
     * so a relayed path that is not known to work binds before each probe. */
    if (p->kind != PL_PATH_DIRECT && p->state != PL_PATH_ALIVE) send_bind(pm, p, now);
    uint8_t msg[PL_PATH_PROBE_SIZE];
    msg[0] = PL_PATH_MSG_PROBE;
    msg[1] = flags;
    msg[2] = tag_of(pm, p);
    pl_put_u64be(msg + 3, now);
    if (slot_of(pm, p) == pm->active) pm->last_tx_active = now;
    if (pm->io.send_message(pm->io.ctx, &p->addr, msg, sizeof msg, now)) {
        p->probes++;
        pm->stats.probes_sent++;
    }
}

static pl_time probe_interval(const pl_path *pm, const path *p, pl_time now)
{
    if (pm->searching) return PL_PATH_CHECK_INTERVAL;
    switch (p->state) {
    case PL_PATH_CHECKING:
        return now - p->check_started < PL_PATH_CHECK_FAST_FOR ? PL_PATH_CHECK_INTERVAL : PL_PATH_CHECK_SLOW_INTERVAL;
    case PL_PATH_ALIVE:
        /* A path that just started answering is confirmed quickly: a better
         * path is chosen only after two answers. */
        return p->acks_in_row < 2 ? PL_PATH_CHECK_INTERVAL : pm->cfg.standby_interval;
    default: return PL_PATH_FAILED_RETRY;
    }
}

static uint8_t probe_flags(const pl_path *pm, const path *p)
{
    uint8_t f = PL_PATH_F_ACK_REQ;
    if (pm->cfg.controlling && slot_of(pm, p) == pm->active) f |= PL_PATH_F_NOMINATE;
    if (!pm->cfg.controlling && pm->reporting_lost && slot_of(pm, p) == pm->active) f |= PL_PATH_F_LOST;
    return f;
}

bool pl_path_send(pl_path *pm, const pl_addr *to, const uint8_t *data, size_t len, pl_time now)
{
    if (pl_addr_equal(to, &pm->session_addr)) {
        if (pm->active >= 0) {
            pm->last_tx_active = now;
            return send_on(pm, &pm->p[pm->active], data, len);
        }
        /* No path works yet: every path that is not known to fail gets a copy
         * (or every path, when all have failed). The session drops the
         * duplicates as replays; the copy that arrives first wins. */
        bool any = false;
        for (int pass = 0; pass < 2 && !any; pass++) {
            for (int i = 0; i < PL_PATH_MAX; i++) {
                path *p = &pm->p[i];
                if (!p->used || (pass == 0 && p->state == PL_PATH_FAILED)) continue;
                if (send_on(pm, p, data, len)) {
                    pm->stats.fanout_datagrams++;
                    any = true;
                }
            }
        }
        return any;
    }
    int i = find_addr(pm, to);
    if (i < 0 || pm->p[i].kind == PL_PATH_DIRECT) return false;
    if (i == pm->active) pm->last_tx_active = now;
    return send_on(pm, &pm->p[i], data, len);
}

/* ---- choosing --------------------------------------------------------------------------------- */

/* Direct before relayed over UDP before relayed over TCP; then the lower
 * smoothed round trip, a measured one before an unmeasured one. */
static bool better(const path *a, const path *b)
{
    if (a->kind != b->kind) return a->kind < b->kind;
    if (a->srtt && b->srtt) return a->srtt < b->srtt;
    return a->srtt && !b->srtt;
}

static bool fresh(const pl_path *pm, const path *p, pl_time now)
{
    (void)pm;
    return p->used && p->state == PL_PATH_ALIVE && now - p->last_ack <= PL_PATH_STANDBY_FRESH;
}

/* The best alive path but `exclude`; with `avoid`, none whose datagrams go
 * to that host. */
static int best_alive_avoiding(const pl_path *pm, int exclude, bool need_fresh, const pl_addr *avoid, pl_time now)
{
    int best = -1;
    for (int i = 0; i < PL_PATH_MAX; i++) {
        const path *p = &pm->p[i];
        if (!p->used || i == exclude || p->state != PL_PATH_ALIVE) continue;
        if (need_fresh && !fresh(pm, p, now)) continue;
        if (avoid && pl_addr_same_host(&p->remote, avoid)) continue;
        if (best < 0 || better(p, &pm->p[best])) best = i;
    }
    return best;
}

static int best_alive(const pl_path *pm, int exclude, bool need_fresh, pl_time now)
{
    return best_alive_avoiding(pm, exclude, need_fresh, NULL, now);
}

static void switch_to(pl_path *pm, int slot, pl_path_reason reason, pl_time now)
{
    pm->active = slot;
    pm->activated_at = now;
    pm->last_switch = now;
    pm->searching = false;
    pm->stats.switches++;
    path *p = &pm->p[slot];
    emit(pm, PL_PATH_EV_ACTIVE, reason, p, now);
    if (pm->active != slot) return; /* the event handler changed things */
    if (pm->cfg.controlling) {
        /* Tell the peer, until it answers: a nomination lost would leave it
         * sending on the old path. */
        pm->nominating = true;
        pm->nominate_tries = 1;
        pm->nominate_next = now + PL_PATH_NOMINATE_RETRY;
        send_probe(pm, p, PL_PATH_F_ACK_REQ | PL_PATH_F_NOMINATE, now);
    } else if (reason == PL_PATH_REASON_FAILOVER) {
        pm->reporting_lost = true;
        pm->lost_tries = 1;
        pm->lost_next = now + PL_PATH_NOMINATE_RETRY;
        send_probe(pm, p, PL_PATH_F_ACK_REQ | PL_PATH_F_LOST, now);
    } else {
        /* Something on the new path at once, so the peer hears it there. */
        send_probe(pm, p, PL_PATH_F_ACK_REQ, now);
    }
}

/* A path that stopped delivering is checked again from scratch: if it comes
 * back it must answer twice before it is chosen again. */
static void demote(pl_path *pm, path *p, pl_time now)
{
    p->state = PL_PATH_CHECKING;
    p->check_started = now;
    p->acks_in_row = 0;
    p->next_probe = now;
    emit(pm, PL_PATH_EV_DOWN, 0, p, now);
}

/* The active path is silent when nothing arrived on it for fail_after
 * (counted from when it became active). */
static pl_time silence_deadline(const pl_path *pm)
{
    const path *a = &pm->p[pm->active];
    pl_time since = a->last_rx > pm->activated_at ? a->last_rx : pm->activated_at;
    return since + pm->cfg.fail_after;
}

static void evaluate(pl_path *pm, pl_time now)
{
    if (!pm->session_up) return;
    if (pm->active >= 0 && now >= silence_deadline(pm)) {
        /* A standby that goes through another host first: when a relay
         * (or the peer's address) stops delivering on one path, its other
         * paths are likely dead too (a supernode that died holds both ends'
         * channels there), and trying one would cost another fail_after. */
        int b = best_alive_avoiding(pm, pm->active, true, &pm->p[pm->active].remote, now);
        if (b < 0) b = best_alive(pm, pm->active, true, now);
        if (b >= 0) {
            demote(pm, &pm->p[pm->active], now);
            pm->stats.failovers++;
            switch_to(pm, b, PL_PATH_REASON_FAILOVER, now);
            return;
        }
        if (!pm->searching) {
            pm->searching = true;
            for (int i = 0; i < PL_PATH_MAX; i++)
                if (pm->p[i].used && pm->p[i].next_probe > now) pm->p[i].next_probe = now;
        }
    } else {
        pm->searching = false;
    }

    int b = best_alive(pm, -1, false, now);
    if (b < 0) return;
    if (pm->active < 0) {
        switch_to(pm, b, PL_PATH_REASON_FIRST, now);
        return;
    }
    if (!pm->cfg.controlling || b == pm->active) return;
    const path *nb = &pm->p[b], *cur = &pm->p[pm->active];
    if (nb->acks_in_row < 2) return;
    if (nb->kind < cur->kind) {
        switch_to(pm, b, PL_PATH_REASON_BETTER, now);
        return;
    }
    if (nb->kind == cur->kind && cur->state == PL_PATH_ALIVE && nb->srtt && cur->srtt &&
        now - pm->last_switch >= PL_PATH_RTT_DWELL) {
        pl_time margin = cur->srtt / 5 > PL_PATH_RTT_MARGIN ? cur->srtt / 5 : PL_PATH_RTT_MARGIN;
        if (nb->srtt + margin < cur->srtt) switch_to(pm, b, PL_PATH_REASON_BETTER, now);
    }
}

/* ---- adding paths ------------------------------------------------------------------------------- */

static void start_checks(pl_path *pm, path *p, pl_time now)
{
    p->state = PL_PATH_CHECKING;
    p->check_started = now;
    p->next_probe = now;
}

pl_path_err pl_path_add_direct(pl_path *pm, const pl_addr *peer_addr, pl_time now)
{
    if (pm->cfg.privacy) return PL_PATH_ERR_PRIVACY;
    if (pm->cfg.tcp_only) return PL_PATH_ERR_CONFIG;
    if ((peer_addr->family != PL_AF_INET4 && peer_addr->family != PL_AF_INET6) || !peer_addr->port ||
        peer_addr->transport != PL_ADDR_UDP || pl_path_virtual_owner(peer_addr, NULL))
        return PL_PATH_ERR_CONFIG;
    if (find_addr(pm, peer_addr) >= 0) return PL_PATH_ERR_EXISTS;
    path *p = new_slot(pm);
    if (!p) return PL_PATH_ERR_FULL;
    p->kind = PL_PATH_DIRECT;
    p->addr = *peer_addr;
    p->remote = *peer_addr;
    start_checks(pm, p, now);
    return PL_PATH_OK;
}

pl_path_err pl_path_add_relay(pl_path *pm, const pl_addr *relay, uint32_t channel, uint64_t token, bool own,
                              pl_time now)
{
    if (!own && pm->cfg.privacy) return PL_PATH_ERR_PRIVACY;
    if (pm->cfg.tcp_only && relay->transport != PL_ADDR_TCP) return PL_PATH_ERR_CONFIG;
    if (own && pm->peer_private) return PL_PATH_ERR_PRIVACY;
    if ((relay->family != PL_AF_INET4 && relay->family != PL_AF_INET6) || !relay->port || !channel || !token ||
        pl_path_virtual_owner(relay, NULL))
        return PL_PATH_ERR_CONFIG;
    for (int i = 0; i < PL_PATH_MAX; i++) {
        const path *q = &pm->p[i];
        if (q->used && q->kind != PL_PATH_DIRECT && q->channel == channel && pl_addr_equal(&q->remote, relay))
            return PL_PATH_ERR_EXISTS;
    }
    path *p = new_slot(pm);
    if (!p) return PL_PATH_ERR_FULL;
    p->kind = relay->transport == PL_ADDR_TCP ? PL_PATH_RELAY_TCP : PL_PATH_RELAY_UDP;
    p->own = own;
    p->remote = *relay;
    p->channel = channel;
    p->token = token;
    p->addr = make_virtual(pm->cfg.id, (uint16_t)(2 + tag_of(pm, p)));
    start_checks(pm, p, now);
    send_bind(pm, p, now);
    return PL_PATH_OK;
}

static int add_prflx(pl_path *pm, const pl_addr *from, pl_time now)
{
    if (pm->cfg.privacy || pm->cfg.tcp_only || from->transport != PL_ADDR_UDP || pl_path_virtual_owner(from, NULL))
        return -1;
    if (from->family != PL_AF_INET4 && from->family != PL_AF_INET6) return -1;
    path *p = new_slot(pm);
    if (!p) return -1;
    p->kind = PL_PATH_DIRECT;
    p->prflx = true;
    p->addr = *from;
    p->remote = *from;
    start_checks(pm, p, now);
    pm->stats.prflx_added++;
    emit(pm, PL_PATH_EV_ADDED, 0, p, now);
    return slot_of(pm, p);
}

/* ---- receiving -------------------------------------------------------------------------------------- */

pl_path_unwrapped pl_path_unwrap(pl_path *pm, const pl_addr *from, const uint8_t *pkt, size_t len,
                                 pl_addr *path_addr, const uint8_t **inner, size_t *inner_len, pl_time now)
{
    (void)now;
    uint32_t channel;
    uint64_t token;
    if (!pl_relay_parse(pkt, len, &channel, &token)) return PL_PATH_NOT_MINE;
    for (int i = 0; i < PL_PATH_MAX; i++) {
        const path *p = &pm->p[i];
        if (!p->used || p->kind == PL_PATH_DIRECT || p->channel != channel || p->token != token ||
            !pl_addr_equal(&p->remote, from))
            continue;
        if (len == PL_RELAY_HEADER_SIZE) {
            pm->stats.binds_answered++;
            return PL_PATH_CONSUMED;
        }
        *path_addr = p->addr;
        *inner = pkt + PL_RELAY_HEADER_SIZE;
        *inner_len = len - PL_RELAY_HEADER_SIZE;
        return PL_PATH_INNER;
    }
    return PL_PATH_NOT_MINE;
}

void pl_path_session_up(pl_path *pm, const pl_addr *from, pl_time now)
{
    if (pm->session_up) return;
    pm->session_up = true;
    int i = from ? find_addr(pm, from) : -1;
    if (i < 0 && from) i = add_prflx(pm, from, now);
    for (int j = 0; j < PL_PATH_MAX; j++)
        if (pm->p[j].used) pm->p[j].next_probe = now;
    if (i >= 0) {
        /* The handshake's round trip went over this path: it works. */
        path *p = &pm->p[i];
        p->state = PL_PATH_ALIVE;
        p->last_ack = now;
        p->last_rx = now;
        p->acks_in_row = 1;
        emit(pm, PL_PATH_EV_UP, 0, p, now);
    }
    evaluate(pm, now);
}

static void on_probe(pl_path *pm, int i, const uint8_t *m, size_t len, pl_time now)
{
    if (len != PL_PATH_PROBE_SIZE || (m[1] & ~PL_PATH_F_ALL)) {
        pm->stats.malformed++;
        return;
    }
    uint8_t flags = m[1];
    if (i < 0) return; /* a path this side may not use (privacy): no answer */
    path *p = &pm->p[i];
    if (flags & PL_PATH_F_ACK_REQ) {
        uint8_t ack[PL_PATH_ACK_SIZE];
        ack[0] = PL_PATH_MSG_ACK;
        memcpy(ack + 1, m + 2, 9); /* the tag and the stamp, echoed */
        if (pm->io.send_message(pm->io.ctx, &p->addr, ack, sizeof ack, now)) pm->stats.acks_sent++;
        if (i == pm->active) pm->last_tx_active = now;
    }
    if (!pm->session_up) return;
    if ((flags & PL_PATH_F_NOMINATE) && !pm->cfg.controlling) {
        pm->reporting_lost = false;
        if (i != pm->active) {
            pm->stats.peer_switches++;
            switch_to(pm, i, PL_PATH_REASON_PEER, now);
        }
    }
    if ((flags & PL_PATH_F_LOST) && pm->cfg.controlling && i != pm->active) {
        /* The peer hears nothing on our active path, and this path just
         * carried its probe: go there. Our old path may still deliver towards
         * us, so it is demoted here too, or the move back to a "better" path
         * would come at once. */
        pm->stats.peer_switches++;
        if (pm->active >= 0) demote(pm, &pm->p[pm->active], now);
        switch_to(pm, i, PL_PATH_REASON_PEER, now);
    }
}

static void on_ack(pl_path *pm, const uint8_t *m, size_t len, pl_time now)
{
    if (len != PL_PATH_ACK_SIZE) {
        pm->stats.malformed++;
        return;
    }
    uint8_t tag = m[1];
    pl_time stamp = pl_get_u64be(m + 2);
    path *p = &pm->p[tag & 15];
    if (!p->used || p->gen != tag >> 4 || stamp > now || now - stamp > MAX_STAMP_AGE) {
        pm->stats.malformed++;
        return;
    }
    pm->stats.acks_received++;
    pl_time rtt = now - stamp;
    p->srtt = p->srtt ? (7 * p->srtt + rtt) / 8 : (rtt ? rtt : 1);
    p->last_ack = now;
    p->acks++;
    p->acks_in_row++;
    if (p->state != PL_PATH_ALIVE) {
        p->state = PL_PATH_ALIVE;
        p->next_probe = now + probe_interval(pm, p, now);
        emit(pm, PL_PATH_EV_UP, 0, p, now);
    }
    if (pm->nominating && slot_of(pm, p) == pm->active && stamp >= pm->activated_at) pm->nominating = false;
    evaluate(pm, now);
}

bool pl_path_receive(pl_path *pm, const pl_addr *from, const uint8_t *payload, size_t len, pl_time now)
{
    int i = find_addr(pm, from);
    if (i < 0 && pm->session_up) i = add_prflx(pm, from, now);
    if (i >= 0) {
        pm->p[i].last_rx = now;
        pm->p[i].rx++;
    }
    if (len == 0) return false;
    if (payload[0] == PL_PATH_MSG_PROBE) {
        on_probe(pm, i, payload, len, now);
        return true;
    }
    if (payload[0] == PL_PATH_MSG_ACK) {
        on_ack(pm, payload, len, now);
        return true;
    }
    if (payload[0] == PL_PATH_MSG_OFFER) return false; /* the call layer's (trickled candidates) */
    return false;
}

/* ---- time ------------------------------------------------------------------------------------------- */

void pl_path_tick(pl_path *pm, pl_time now)
{
    if (!pm->session_up) {
        /* Until the session is up, relays learn where this side is from binds. */
        for (int i = 0; i < PL_PATH_MAX; i++) {
            path *p = &pm->p[i];
            if (p->used && p->kind != PL_PATH_DIRECT && now >= p->next_bind) send_bind(pm, p, now);
        }
        return;
    }
    for (int i = 0; i < PL_PATH_MAX; i++) {
        path *p = &pm->p[i];
        if (!p->used) continue;
        if (p->state == PL_PATH_CHECKING && now - p->check_started >= PL_PATH_CHECK_GIVE_UP) {
            p->state = PL_PATH_FAILED;
            p->acks_in_row = 0;
            emit(pm, PL_PATH_EV_DOWN, 0, p, now);
            /* A peer-reflexive address that never answered is forgotten. */
            if (p->prflx && i != pm->active) free_slot(pm, p);
        } else if (p->state == PL_PATH_ALIVE && i != pm->active && now - p->last_ack > PL_PATH_STANDBY_DEAD) {
            p->state = PL_PATH_FAILED;
            p->acks_in_row = 0;
            emit(pm, PL_PATH_EV_DOWN, 0, p, now);
        }
    }
    evaluate(pm, now);
    for (int i = 0; i < PL_PATH_MAX; i++) {
        path *p = &pm->p[i];
        if (!p->used || now < p->next_probe) continue;
        send_probe(pm, p, probe_flags(pm, p), now);
        p->next_probe = now + probe_interval(pm, p, now);
    }
    if (pm->active >= 0) {
        path *a = &pm->p[pm->active];
        if (pm->nominating && now >= pm->nominate_next) {
            if (pm->nominate_tries++ >= PL_PATH_NOMINATE_TRIES) {
                pm->nominating = false;
            } else {
                send_probe(pm, a, PL_PATH_F_ACK_REQ | PL_PATH_F_NOMINATE, now);
                pm->nominate_next = now + PL_PATH_NOMINATE_RETRY;
            }
        }
        if (pm->reporting_lost && now >= pm->lost_next) {
            if (pm->lost_tries++ >= PL_PATH_NOMINATE_TRIES) {
                pm->reporting_lost = false;
            } else {
                send_probe(pm, a, PL_PATH_F_ACK_REQ | PL_PATH_F_LOST, now);
                pm->lost_next = now + PL_PATH_NOMINATE_RETRY;
            }
        }
        /* Keep the peer hearing something on the active path. */
        if (now - pm->last_tx_active >= pm->cfg.keepalive)
            send_probe(pm, a, pm->cfg.controlling ? PL_PATH_F_NOMINATE : 0, now);
    }
}

pl_time pl_path_next_timeout(const pl_path *pm)
{
    pl_time t = PL_TIME_NEVER;
#define EARLIER(x)              \
    do {                        \
        pl_time x_ = (x);       \
        if (x_ < t) t = x_;     \
    } while (0)
    for (int i = 0; i < PL_PATH_MAX; i++) {
        const path *p = &pm->p[i];
        if (!p->used) continue;
        if (!pm->session_up) {
            if (p->kind != PL_PATH_DIRECT) EARLIER(p->next_bind);
            continue;
        }
        EARLIER(p->next_probe);
        if (p->state == PL_PATH_CHECKING) EARLIER(p->check_started + PL_PATH_CHECK_GIVE_UP);
        if (p->state == PL_PATH_ALIVE && i != pm->active) EARLIER(p->last_ack + PL_PATH_STANDBY_DEAD + 1);
    }
    if (pm->session_up && pm->active >= 0) {
        if (!pm->searching) EARLIER(silence_deadline(pm));
        EARLIER(pm->last_tx_active + pm->cfg.keepalive);
        if (pm->nominating) EARLIER(pm->nominate_next);
        if (pm->reporting_lost) EARLIER(pm->lost_next);
    }
#undef EARLIER
    return t;
}

/* ---- queries ----------------------------------------------------------------------------------------- */

void pl_path_active(const pl_path *pm, pl_path_info *info)
{
    if (pm->active < 0) {
        memset(info, 0, sizeof *info);
        info->slot = -1;
        return;
    }
    fill_info(pm, &pm->p[pm->active], info);
}

bool pl_path_get(const pl_path *pm, int slot, pl_path_info *info)
{
    if (slot < 0 || slot >= PL_PATH_MAX || !pm->p[slot].used) return false;
    fill_info(pm, &pm->p[slot], info);
    return true;
}

pl_path_stats pl_path_get_stats(const pl_path *pm) { return pm->stats; }

/* ---- set-up ------------------------------------------------------------------------------------------- */

pl_path_err pl_path_new(pl_path **out, const pl_path_config *cfg, const pl_path_io *io)
{
    *out = NULL;
    if (!cfg || !io || !io->send || !io->send_message) return PL_PATH_ERR_CONFIG;
    pl_path_config c = *cfg;
    if (!c.fail_after) c.fail_after = PL_PATH_DEFAULT_FAIL_AFTER;
    if (!c.keepalive) c.keepalive = PL_PATH_DEFAULT_KEEPALIVE;
    if (!c.standby_interval) c.standby_interval = PL_PATH_DEFAULT_STANDBY_INTERVAL;
    if (c.fail_after < 20 * PL_MSEC || c.fail_after > 10 * PL_SEC || c.keepalive >= c.fail_after ||
        c.standby_interval < 100 * PL_MSEC || c.standby_interval > 10 * PL_SEC)
        return PL_PATH_ERR_CONFIG;
    const pl_mem *mem = c.mem ? c.mem : pl_mem_system();
    pl_path *pm = mem->calloc(mem->ctx, 1, sizeof *pm);
    if (!pm) return PL_PATH_ERR_NOMEM;
    pm->cfg = c;
    pm->io = *io;
    pm->mem = mem;
    pm->active = -1;
    pm->session_addr = make_virtual(c.id, SESSION_PORT);
    *out = pm;
    return PL_PATH_OK;
}

void pl_path_free(pl_path *pm)
{
    if (!pm) return;
    const pl_mem *mem = pm->mem;
    sodium_memzero(pm, sizeof *pm); /* relay tokens */
    mem->free(mem->ctx, pm);
}

/* ---- offers ------------------------------------------------------------------------------------------- */

static bool addr_ok(const pl_addr *a) { return (a->family == PL_AF_INET4 || a->family == PL_AF_INET6) && a->port; }

static bool offer_valid(const pl_path_offer *o)
{
    if (o->flags & ~PL_PATH_OFFER_F_PRIVATE) return false;
    if (o->n_candidates > PL_PATH_OFFER_MAX_CANDIDATES || o->n_relays > PL_PATH_OFFER_MAX_RELAYS) return false;
    if ((o->flags & PL_PATH_OFFER_F_PRIVATE) && o->n_candidates) return false;
    for (uint8_t i = 0; i < o->n_candidates; i++) {
        const pl_record_candidate *c = &o->candidates[i];
        if (c->type < PL_CAND_HOST || c->type > PL_CAND_PORT_MAPPED) return false;
        if (c->transport != PL_TRANSPORT_UDP && c->transport != PL_TRANSPORT_TCP) return false;
        if (!addr_ok(&c->addr)) return false;
        for (uint8_t j = 0; j < i; j++)
            if (o->candidates[j].transport == c->transport && pl_addr_same_host(&o->candidates[j].addr, &c->addr) &&
                o->candidates[j].addr.port == c->addr.port)
                return false;
    }
    for (uint8_t i = 0; i < o->n_relays; i++) {
        const pl_path_offer_relay *r = &o->relays[i];
        if (!addr_ok(&r->addr) || !r->channel || !r->token) return false;
        if (r->addr.transport != PL_ADDR_UDP && r->addr.transport != PL_ADDR_TCP) return false;
        for (uint8_t j = 0; j < i; j++)
            if (o->relays[j].channel == r->channel && pl_addr_equal(&o->relays[j].addr, &r->addr)) return false;
    }
    return true;
}

size_t pl_path_encode_offer(uint8_t *buf, size_t cap, const pl_path_offer *o)
{
    if (!offer_valid(o)) return 0;
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_PATH_MSG_OFFER);
    pl_write_u8(&w, PL_PATH_OFFER_VERSION);
    pl_write_u8(&w, o->flags);
    pl_write_u8(&w, o->n_candidates);
    pl_write_u8(&w, o->n_relays);
    for (uint8_t i = 0; i < o->n_candidates; i++) {
        const pl_record_candidate *c = &o->candidates[i];
        pl_write_u8(&w, c->type);
        pl_write_u8(&w, c->transport);
        pl_write_u32(&w, c->priority);
        pl_write_addr(&w, &c->addr);
    }
    for (uint8_t i = 0; i < o->n_relays; i++) {
        const pl_path_offer_relay *r = &o->relays[i];
        pl_write_u8(&w, r->addr.transport == PL_ADDR_TCP ? PL_TRANSPORT_TCP : PL_TRANSPORT_UDP);
        pl_write_addr(&w, &r->addr);
        pl_write_u32(&w, r->channel);
        pl_write_u64(&w, r->token);
    }
    return w.err ? 0 : w.off;
}

pl_path_err pl_path_decode_offer(pl_path_offer *o, const uint8_t *buf, size_t len)
{
    memset(o, 0, sizeof *o);
    pl_reader r = pl_reader_make(buf, len);
    if (pl_read_u8(&r) != PL_PATH_MSG_OFFER || pl_read_u8(&r) != PL_PATH_OFFER_VERSION) return PL_PATH_ERR_MALFORMED;
    o->flags = pl_read_u8(&r);
    o->n_candidates = pl_read_u8(&r);
    o->n_relays = pl_read_u8(&r);
    if (r.err || o->n_candidates > PL_PATH_OFFER_MAX_CANDIDATES || o->n_relays > PL_PATH_OFFER_MAX_RELAYS)
        return PL_PATH_ERR_MALFORMED;
    for (uint8_t i = 0; i < o->n_candidates; i++) {
        pl_record_candidate *c = &o->candidates[i];
        c->type = pl_read_u8(&r);
        c->transport = pl_read_u8(&r);
        c->priority = pl_read_u32(&r);
        pl_read_addr(&r, &c->addr);
        c->addr.transport = c->transport == PL_TRANSPORT_TCP ? PL_ADDR_TCP : PL_ADDR_UDP;
    }
    for (uint8_t i = 0; i < o->n_relays; i++) {
        pl_path_offer_relay *x = &o->relays[i];
        uint8_t t = pl_read_u8(&r);
        pl_read_addr(&r, &x->addr);
        if (t != PL_TRANSPORT_UDP && t != PL_TRANSPORT_TCP) return PL_PATH_ERR_MALFORMED;
        x->addr.transport = t == PL_TRANSPORT_TCP ? PL_ADDR_TCP : PL_ADDR_UDP;
        x->channel = pl_read_u32(&r);
        x->token = pl_read_u64(&r);
    }
    if (!pl_reader_done(&r) || !offer_valid(o)) return PL_PATH_ERR_MALFORMED;
    return PL_PATH_OK;
}

pl_path_err pl_path_apply_offer(pl_path *pm, const pl_path_offer *o, pl_time now)
{
    if (!offer_valid(o)) return PL_PATH_ERR_MALFORMED;
    pl_path_err first = PL_PATH_OK;
    if (o->flags & PL_PATH_OFFER_F_PRIVATE) {
        pm->peer_private = true;
        for (int i = 0; i < PL_PATH_MAX; i++)
            if (pm->p[i].used && pm->p[i].own) free_slot(pm, &pm->p[i]);
    }
    if (!pm->cfg.privacy && !pm->cfg.tcp_only) {
        for (uint8_t i = 0; i < o->n_candidates; i++) {
            if (o->candidates[i].transport != PL_TRANSPORT_UDP) continue; /* direct paths are UDP */
            pl_path_err e = pl_path_add_direct(pm, &o->candidates[i].addr, now);
            if (e != PL_PATH_OK && e != PL_PATH_ERR_EXISTS && first == PL_PATH_OK) first = e;
        }
    }
    for (uint8_t i = 0; i < o->n_relays; i++) {
        const pl_path_offer_relay *x = &o->relays[i];
        /* One address per channel: UDP when this side has UDP, else TCP. */
        bool want_tcp = pm->cfg.tcp_only;
        if ((x->addr.transport == PL_ADDR_TCP) != want_tcp) {
            bool other = false;
            for (uint8_t j = 0; j < o->n_relays; j++)
                if (j != i && o->relays[j].channel == x->channel &&
                    (o->relays[j].addr.transport == PL_ADDR_TCP) == want_tcp)
                    other = true;
            if (other || want_tcp) continue;
        }
        pl_path_err e = pl_path_add_relay(pm, &x->addr, x->channel, x->token, false, now);
        if (e != PL_PATH_OK && e != PL_PATH_ERR_EXISTS && e != PL_PATH_ERR_PRIVACY && first == PL_PATH_OK) first = e;
    }
    return first;
}

/* ---- names ------------------------------------------------------------------------------------------------ */

const char *pl_path_kind_name(uint8_t kind)
{
    switch (kind) {
    case PL_PATH_DIRECT: return "direct";
    case PL_PATH_RELAY_UDP: return "relayed (UDP)";
    case PL_PATH_RELAY_TCP: return "relayed (TCP)";
    }
    return "unknown";
}

const char *pl_path_strerror(pl_path_err err)
{
    switch (err) {
    case PL_PATH_OK: return "ok";
    case PL_PATH_ERR_CONFIG: return "bad path configuration or argument";
    case PL_PATH_ERR_NOMEM: return "out of memory";
    case PL_PATH_ERR_FULL: return "too many paths";
    case PL_PATH_ERR_PRIVACY: return "not allowed in privacy mode";
    case PL_PATH_ERR_EXISTS: return "the path exists already";
    case PL_PATH_ERR_MALFORMED: return "malformed offer";
    }
    return "unknown path error";
}
