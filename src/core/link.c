/*
 * link.c - messages to peers named by key, over secure sessions (link.h).
 *
 * Messages for a peer whose session is not up wait in a small pool shared by
 * all peers. The pool grows on demand up to its limit, so a node that only
 * ever talks to its two supernodes keeps a handful of slots while a supernode
 * that opens sessions to many peers at once gets the whole allowance.
 */
#include "link.h"

#include <sodium.h>
#include <string.h>

typedef struct pending {
    bool used;
    uint16_t len;
    uint64_t seq; /* sending order */
    uint8_t pk[32];
    uint8_t data[PL_SEC_MAX_PAYLOAD];
} pending;

struct pl_link {
    pl_sec *sec;
    pl_link_io io;
    const pl_mem *mem;
    pending *pool;
    uint32_t pool_cap, pool_max, per_peer;
    uint32_t pool_used;
    uint64_t next_seq;
    pl_link_stats stats;
    uint8_t msg[PL_SEC_MAX_PAYLOAD]; /* a received message, copied out */
};

/* ---- the pending pool ------------------------------------------------------------ */

static uint32_t pending_count(const pl_link *l, const uint8_t pk[32])
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < l->pool_cap; i++)
        if (l->pool[i].used && memcmp(l->pool[i].pk, pk, 32) == 0) n++;
    return n;
}

static pending *pending_slot(pl_link *l)
{
    if (l->pool_used == l->pool_cap) {
        if (l->pool_cap == l->pool_max) return NULL;
        uint32_t cap = l->pool_cap ? 2 * l->pool_cap : 4;
        if (cap > l->pool_max) cap = l->pool_max;
        pending *grown = l->mem->calloc(l->mem->ctx, cap, sizeof *grown);
        if (!grown) return NULL;
        if (l->pool) {
            memcpy(grown, l->pool, l->pool_cap * sizeof *grown);
            sodium_memzero(l->pool, l->pool_cap * sizeof *l->pool);
            l->mem->free(l->mem->ctx, l->pool);
        }
        l->pool = grown;
        l->pool_cap = cap;
    }
    for (uint32_t i = 0; i < l->pool_cap; i++)
        if (!l->pool[i].used) return &l->pool[i];
    return NULL; /* cannot happen: pool_used < pool_cap */
}

static pl_link_err enqueue(pl_link *l, const uint8_t pk[32], const uint8_t *msg, size_t len)
{
    if (pending_count(l, pk) >= l->per_peer) {
        l->stats.dropped_full++;
        return PL_LINK_ERR_FULL;
    }
    pending *e = pending_slot(l);
    if (!e) {
        l->stats.dropped_full++;
        return PL_LINK_ERR_FULL;
    }
    e->used = true;
    e->len = (uint16_t)len;
    e->seq = l->next_seq++;
    memcpy(e->pk, pk, 32);
    memcpy(e->data, msg, len);
    l->pool_used++;
    l->stats.queued++;
    return PL_LINK_OK;
}

static void release(pl_link *l, pending *e)
{
    sodium_memzero(e, sizeof *e);
    l->pool_used--;
}

/* Drops everything waiting for pk; returns how many. */
static uint32_t drop_pending(pl_link *l, const uint8_t pk[32])
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < l->pool_cap; i++) {
        if (l->pool[i].used && memcmp(l->pool[i].pk, pk, 32) == 0) {
            release(l, &l->pool[i]);
            n++;
        }
    }
    return n;
}

/* Sends what waits for the peer, oldest first. A message the session does
 * not take after all (its key lapsed in between) stays queued. */
static void flush_pending(pl_link *l, pl_sec_peer *p, const uint8_t pk[32], pl_time now)
{
    for (;;) {
        pending *oldest = NULL;
        for (uint32_t i = 0; i < l->pool_cap; i++) {
            pending *e = &l->pool[i];
            if (e->used && memcmp(e->pk, pk, 32) == 0 && (!oldest || e->seq < oldest->seq)) oldest = e;
        }
        if (!oldest) return;
        if (pl_sec_send(l->sec, p, oldest->data, oldest->len, now) != PL_SEC_OK) return;
        l->stats.messages_sent++;
        release(l, oldest);
        if (!pl_sec_peer_established(p)) return;
    }
}

/* ---- events from the session layer ---------------------------------------------------- */

static void emit(pl_link *l, pl_link_event_type type, pl_link_down_reason why, const pl_sec_event *ev,
                 const uint8_t *pk, uint32_t dropped)
{
    if (!l->io.event) return;
    pl_link_event out = {type, why, pk, ev->cert, ev->from, dropped, ev->now};
    l->io.event(l->io.ctx, &out);
}

static void on_sec_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    pl_link *l = ctx;
    if (l->io.send) l->io.send(l->io.ctx, to, data, len);
}

static void on_sec_event(void *ctx, const pl_sec_event *ev)
{
    pl_link *l = ctx;
    const pl_cert *cert = pl_sec_peer_cert(ev->peer);
    /* A copy: the peer (and its key) may be closed while we still use it. */
    uint8_t pk[32];
    memcpy(pk, pl_sec_peer_key(ev->peer), 32);

    switch (ev->type) {
    case PL_SEC_EV_ESTABLISHED:
        l->stats.ups++;
        emit(l, PL_LINK_EV_UP, 0, ev, pk, 0);
        flush_pending(l, ev->peer, pk, ev->now);
        break;
    case PL_SEC_EV_DATA:
        if (ev->len == 0) break;
        l->stats.messages_received++;
        memcpy(l->msg, ev->data, ev->len);
        if (l->io.message) {
            pl_link_message m = {pk, cert, ev->from, l->msg, ev->len, ev->now};
            l->io.message(l->io.ctx, &m);
        }
        break;
    case PL_SEC_EV_FAILED:
    case PL_SEC_EV_EXPIRED: {
        uint32_t dropped = drop_pending(l, pk);
        l->stats.dropped_down += dropped;
        l->stats.downs++;
        /* Forget the peer so its slot is free and a later send starts
         * afresh; the event carries copies of what closing wipes. */
        pl_cert cert_copy;
        if (cert) cert_copy = *cert;
        pl_addr addr = *pl_sec_peer_addr(ev->peer);
        pl_sec_close(l->sec, ev->peer);
        pl_sec_event copy = *ev;
        copy.cert = cert ? &cert_copy : NULL;
        copy.from = &addr;
        emit(l, PL_LINK_EV_DOWN, ev->type == PL_SEC_EV_FAILED ? PL_LINK_DOWN_UNREACHABLE : PL_LINK_DOWN_SILENT,
             &copy, pk, dropped);
        break;
    }
    case PL_SEC_EV_REVOKED: {
        uint32_t dropped = drop_pending(l, pk);
        l->stats.dropped_down += dropped;
        l->stats.downs++;
        emit(l, PL_LINK_EV_DOWN, PL_LINK_DOWN_REVOKED, ev, pk, dropped);
        break;
    }
    }
}

/* ---- the API ------------------------------------------------------------------------------ */

pl_link_err pl_link_new(pl_link **out, const pl_link_config *cfg, const pl_link_io *io)
{
    *out = NULL;
    if (!cfg || !io) return PL_LINK_ERR_CONFIG;
    const pl_mem *mem = cfg->sec.mem ? cfg->sec.mem : pl_mem_system();
    pl_link *l = mem->calloc(mem->ctx, 1, sizeof *l);
    if (!l) return PL_LINK_ERR_NOMEM;
    l->mem = mem;
    l->io = *io;
    l->pool_max = cfg->pending_max ? cfg->pending_max : PL_LINK_PENDING_DEFAULT;
    l->per_peer = cfg->pending_per_peer ? cfg->pending_per_peer : PL_LINK_PENDING_PER_PEER;
    pl_sec_io sio = {l, on_sec_send, on_sec_event};
    pl_sec_err err = pl_sec_new(&l->sec, &cfg->sec, &sio);
    if (err) {
        mem->free(mem->ctx, l);
        return err == PL_SEC_ERR_NOMEM ? PL_LINK_ERR_NOMEM : PL_LINK_ERR_CONFIG;
    }
    *out = l;
    return PL_LINK_OK;
}

void pl_link_free(pl_link *l)
{
    if (!l) return;
    const pl_mem *mem = l->mem;
    pl_sec_free(l->sec);
    if (l->pool) {
        sodium_memzero(l->pool, l->pool_cap * sizeof *l->pool);
        mem->free(mem->ctx, l->pool);
    }
    sodium_memzero(l, sizeof *l);
    mem->free(mem->ctx, l);
}

static pl_link_err map_sec_err(pl_sec_err err)
{
    switch (err) {
    case PL_SEC_OK: return PL_LINK_OK;
    case PL_SEC_ERR_FULL: return PL_LINK_ERR_FULL;
    case PL_SEC_ERR_TOO_BIG: return PL_LINK_ERR_TOO_BIG;
    case PL_SEC_ERR_BAD_CERT: return PL_LINK_ERR_BAD_CERT;
    case PL_SEC_ERR_NOMEM: return PL_LINK_ERR_NOMEM;
    case PL_SEC_ERR_BAD_KEY:
    case PL_SEC_ERR_SELF: return PL_LINK_ERR_BAD_KEY;
    default: return PL_LINK_ERR_CONFIG;
    }
}

/* Sends on an existing peer, or queues behind its handshake. */
static pl_link_err send_or_queue(pl_link *l, pl_sec_peer *p, const uint8_t pk[32], const uint8_t *msg, size_t len,
                                 pl_time now)
{
    if (pl_sec_peer_established(p) && pending_count(l, pk) == 0) {
        pl_sec_err err = pl_sec_send(l->sec, p, msg, len, now);
        if (err == PL_SEC_OK) {
            l->stats.messages_sent++;
            return PL_LINK_OK;
        }
        if (err != PL_SEC_ERR_NOT_READY) return map_sec_err(err);
        /* The key lapsed; pl_sec_send started a new handshake. */
    }
    return enqueue(l, pk, msg, len);
}

pl_link_err pl_link_send(pl_link *l, const uint8_t pk[32], const pl_addr *addr, const uint8_t *msg, size_t len,
                         pl_time now)
{
    if (len > PL_SEC_MAX_PAYLOAD) return PL_LINK_ERR_TOO_BIG;
    if (len == 0) return PL_LINK_ERR_CONFIG;
    pl_sec_peer *p = pl_sec_find(l->sec, pk);
    if (!p) {
        if (!addr) return PL_LINK_ERR_NO_ADDR;
        pl_sec_err err = pl_sec_connect(l->sec, pk, addr, now, &p);
        if (err) return map_sec_err(err);
    } else if (!pl_sec_peer_established(p) && addr) {
        pl_sec_peer_set_addr(p, addr);
    }
    return send_or_queue(l, p, pk, msg, len, now);
}

pl_link_err pl_link_send_cert(pl_link *l, const pl_cert *cert, const pl_addr *addr, const uint8_t *msg, size_t len,
                              pl_time now)
{
    if (len > PL_SEC_MAX_PAYLOAD) return PL_LINK_ERR_TOO_BIG;
    if (len == 0) return PL_LINK_ERR_CONFIG;
    pl_sec_peer *p = pl_sec_find(l->sec, cert->sign_pk);
    if (!p) {
        if (!addr) return PL_LINK_ERR_NO_ADDR;
        pl_sec_err err = pl_sec_connect_cert(l->sec, cert, addr, now, &p);
        if (err) return map_sec_err(err);
    } else if (!pl_sec_peer_established(p) && addr) {
        pl_sec_peer_set_addr(p, addr);
    }
    return send_or_queue(l, p, cert->sign_pk, msg, len, now);
}

void pl_link_receive(pl_link *l, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    pl_sec_receive(l->sec, from, data, len, now);
}

void pl_link_tick(pl_link *l, pl_time now) { pl_sec_tick(l->sec, now); }

pl_time pl_link_next_timeout(const pl_link *l) { return pl_sec_next_timeout(l->sec); }

bool pl_link_is_up(pl_link *l, const uint8_t pk[32])
{
    pl_sec_peer *p = pl_sec_find(l->sec, pk);
    return p && pl_sec_peer_established(p);
}

const pl_addr *pl_link_peer_addr(pl_link *l, const uint8_t pk[32])
{
    pl_sec_peer *p = pl_sec_find(l->sec, pk);
    return p ? pl_sec_peer_addr(p) : NULL;
}

void pl_link_close(pl_link *l, const uint8_t pk[32], pl_time now)
{
    uint32_t dropped = drop_pending(l, pk);
    l->stats.dropped_down += dropped;
    pl_sec_peer *p = pl_sec_find(l->sec, pk);
    if (!p) return;
    bool was_up = pl_sec_peer_established(p);
    pl_addr addr = *pl_sec_peer_addr(p);
    const pl_cert *c = pl_sec_peer_cert(p);
    pl_cert cert;
    if (c) cert = *c;
    pl_sec_close(l->sec, p);
    if (was_up && l->io.event) {
        l->stats.downs++;
        pl_link_event ev = {PL_LINK_EV_DOWN, PL_LINK_DOWN_CLOSED, pk, c ? &cert : NULL, &addr, dropped, now};
        l->io.event(l->io.ctx, &ev);
    }
}

pl_sec *pl_link_sec(pl_link *l) { return l->sec; }

pl_link_stats pl_link_get_stats(const pl_link *l) { return l->stats; }

const char *pl_link_strerror(pl_link_err err)
{
    switch (err) {
    case PL_LINK_OK: return "ok";
    case PL_LINK_ERR_CONFIG: return "bad link configuration or argument";
    case PL_LINK_ERR_NOMEM: return "out of memory";
    case PL_LINK_ERR_TOO_BIG: return "message too large";
    case PL_LINK_ERR_FULL: return "too many peers or queued messages";
    case PL_LINK_ERR_NO_ADDR: return "no session with that peer and no address to reach it";
    case PL_LINK_ERR_BAD_KEY: return "not a usable peer key";
    case PL_LINK_ERR_BAD_CERT: return "the peer's certificate does not verify";
    }
    return "unknown link error";
}
