/*
 * relay.c - the supernode's media relay (relay.h, docs/paths.md).
 *
 * Allocations live in an array that grows by doubling up to the configured
 * maximum; a channel id finds its allocation through an open-addressing
 * index (linear probing, backward-shift deletion). Channel ids and tokens
 * are random, so nobody who sends packets can choose where they land in the
 * index. The forward path is a hash look-up, two compares, two token
 * buckets and an 8-byte rewrite: no allocation, no copy.
 */
#include "relay.h"

#include <sodium.h>
#include <string.h>

#include "keymap.h"
#include "record.h"
#include "wire.h"

typedef struct side {
    uint64_t token;
    pl_addr addr; /* bound address (bound == true) */
    bool bound;
    pl_time last_rebind;
    pl_time refilled;     /* when the buckets were last topped up */
    uint64_t pkt_tokens;  /* packets, in units of 1/PL_SEC */
    uint64_t byte_tokens; /* bytes, in units of 1/PL_SEC */
} side;

typedef struct alloc {
    uint32_t channel; /* 0: a free slot */
    uint32_t next_free;
    pl_time last_active;
    uint8_t owner[32];
    uint8_t peer[32];
    side s[2]; /* 0: the owner's side, 1: the peer's */
} alloc;

#define NO_SLOT UINT32_MAX

struct pl_relay {
    const pl_rng *rng;
    const pl_mem *mem;
    uint32_t max_allocations, max_per_client, max_per_standby;
    bool no_standby;
    uint64_t pps, bps;
    uint64_t pkt_cap, byte_cap; /* bucket sizes in units of 1/PL_SEC */
    pl_time idle;
    pl_addr udp_addr, tcp_addr;

    alloc *allocs;
    uint32_t cap;       /* slots in allocs */
    uint32_t free_head; /* a list of free slots through next_free */
    uint32_t *index;    /* channel -> slot + 1 (0: empty) */
    uint32_t index_size;
    pl_keymap per_client; /* owner key -> allocations held */

    uint32_t sweep_cursor;
    pl_time next_sweep;
    pl_relay_stats stats;
};

/* ---- framing ---------------------------------------------------------------------- */

size_t pl_relay_wrap(uint8_t *out, size_t cap, uint32_t channel, uint64_t token, const uint8_t *inner,
                     size_t inner_len)
{
    if (inner_len > PL_RELAY_MAX_INNER || cap < PL_RELAY_HEADER_SIZE + inner_len) return 0;
    out[0] = PL_RELAY_MAGIC;
    pl_put_u32be(out + 1, channel);
    pl_put_u64be(out + 5, token);
    if (inner_len) memcpy(out + PL_RELAY_HEADER_SIZE, inner, inner_len);
    return PL_RELAY_HEADER_SIZE + inner_len;
}

bool pl_relay_parse(const uint8_t *pkt, size_t len, uint32_t *channel, uint64_t *token)
{
    if (len < PL_RELAY_HEADER_SIZE || len > PL_RELAY_MAX_PACKET || pkt[0] != PL_RELAY_MAGIC) return false;
    *channel = pl_get_u32be(pkt + 1);
    *token = pl_get_u64be(pkt + 5);
    return true;
}

/* ---- messages ------------------------------------------------------------------------ */

size_t pl_relay_encode_allocate(uint8_t *buf, size_t cap, const pl_relay_allocate *m)
{
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_OVL_RELAY_ALLOCATE);
    pl_write_u32(&w, m->req);
    pl_write_bytes(&w, m->peer_pk, 32);
    return w.err ? 0 : w.off;
}

pl_relay_err pl_relay_decode_allocate(pl_relay_allocate *m, const uint8_t *buf, size_t len)
{
    pl_reader r = pl_reader_make(buf, len);
    if (pl_read_u8(&r) != PL_OVL_RELAY_ALLOCATE) return PL_RELAY_ERR_MALFORMED;
    m->req = pl_read_u32(&r);
    pl_read_bytes(&r, m->peer_pk, 32);
    return pl_reader_done(&r) ? PL_RELAY_ERR_OK : PL_RELAY_ERR_MALFORMED;
}

static uint8_t transport_code(const pl_addr *a) { return a->transport == PL_ADDR_TCP ? PL_TRANSPORT_TCP : PL_TRANSPORT_UDP; }

/* A grant is canonical: a refusal carries nothing after its status; an
 * allocation has a non-zero channel, lifetime and two different non-zero
 * tokens, and one or two addresses, the UDP one first, at most one of each
 * transport, none with port 0. */
static bool grant_valid(const pl_relay_grant *m)
{
    if (m->status > PL_RELAY_STATUS_MAX) return false;
    if (m->status != PL_RELAY_OK) return true;
    if (!m->channel || !m->idle_s || !m->token_self || !m->token_peer || m->token_self == m->token_peer) return false;
    if (m->n_addrs < 1 || m->n_addrs > PL_RELAY_MAX_ADDRS) return false;
    for (uint8_t i = 0; i < m->n_addrs; i++) {
        const pl_addr *a = &m->addrs[i];
        if ((a->family != PL_AF_INET4 && a->family != PL_AF_INET6) || a->port == 0) return false;
        if (a->transport != PL_ADDR_UDP && a->transport != PL_ADDR_TCP) return false;
    }
    if (m->n_addrs == 2 && (m->addrs[0].transport != PL_ADDR_UDP || m->addrs[1].transport != PL_ADDR_TCP))
        return false;
    return true;
}

size_t pl_relay_encode_grant(uint8_t *buf, size_t cap, const pl_relay_grant *m)
{
    if (!grant_valid(m)) return 0;
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_OVL_RELAY_ALLOCATED);
    pl_write_u32(&w, m->req);
    pl_write_u8(&w, m->status);
    if (m->status == PL_RELAY_OK) {
        pl_write_u32(&w, m->channel);
        pl_write_u16(&w, m->idle_s);
        pl_write_u64(&w, m->token_self);
        pl_write_u64(&w, m->token_peer);
        pl_write_u8(&w, m->n_addrs);
        for (uint8_t i = 0; i < m->n_addrs; i++) {
            pl_write_u8(&w, transport_code(&m->addrs[i]));
            pl_write_addr(&w, &m->addrs[i]);
        }
    }
    return w.err ? 0 : w.off;
}

pl_relay_err pl_relay_decode_grant(pl_relay_grant *m, const uint8_t *buf, size_t len)
{
    memset(m, 0, sizeof *m);
    pl_reader r = pl_reader_make(buf, len);
    if (pl_read_u8(&r) != PL_OVL_RELAY_ALLOCATED) return PL_RELAY_ERR_MALFORMED;
    m->req = pl_read_u32(&r);
    m->status = pl_read_u8(&r);
    if (m->status == PL_RELAY_OK) {
        m->channel = pl_read_u32(&r);
        m->idle_s = pl_read_u16(&r);
        m->token_self = pl_read_u64(&r);
        m->token_peer = pl_read_u64(&r);
        m->n_addrs = pl_read_u8(&r);
        if (m->n_addrs > PL_RELAY_MAX_ADDRS) return PL_RELAY_ERR_MALFORMED;
        for (uint8_t i = 0; i < m->n_addrs; i++) {
            uint8_t t = pl_read_u8(&r);
            if (t != PL_TRANSPORT_UDP && t != PL_TRANSPORT_TCP) return PL_RELAY_ERR_MALFORMED;
            pl_read_addr(&r, &m->addrs[i]);
            m->addrs[i].transport = t == PL_TRANSPORT_TCP ? PL_ADDR_TCP : PL_ADDR_UDP;
        }
    }
    if (!pl_reader_done(&r) || !grant_valid(m)) return PL_RELAY_ERR_MALFORMED;
    return PL_RELAY_ERR_OK;
}

size_t pl_relay_encode_release(uint8_t *buf, size_t cap, const pl_relay_release *m)
{
    if (!m->channel) return 0;
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_OVL_RELAY_RELEASE);
    pl_write_u32(&w, m->channel);
    return w.err ? 0 : w.off;
}

pl_relay_err pl_relay_decode_release(pl_relay_release *m, const uint8_t *buf, size_t len)
{
    pl_reader r = pl_reader_make(buf, len);
    if (pl_read_u8(&r) != PL_OVL_RELAY_RELEASE) return PL_RELAY_ERR_MALFORMED;
    m->channel = pl_read_u32(&r);
    if (!pl_reader_done(&r) || !m->channel) return PL_RELAY_ERR_MALFORMED;
    return PL_RELAY_ERR_OK;
}

/* ---- the channel index ---------------------------------------------------------------- */

static uint32_t mix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    h *= 0x846ca68bu;
    h ^= h >> 16;
    return h;
}

static alloc *find(const pl_relay *r, uint32_t channel)
{
    if (!r->index_size || !channel) return NULL;
    uint32_t mask = r->index_size - 1;
    for (uint32_t i = mix32(channel) & mask;; i = (i + 1) & mask) {
        uint32_t v = r->index[i];
        if (!v) return NULL;
        if (r->allocs[v - 1].channel == channel) return &r->allocs[v - 1];
    }
}

static void index_put(uint32_t *index, uint32_t size, uint32_t channel, uint32_t slot)
{
    uint32_t mask = size - 1, i = mix32(channel) & mask;
    while (index[i]) i = (i + 1) & mask;
    index[i] = slot + 1;
}

static void index_remove(pl_relay *r, uint32_t channel)
{
    uint32_t mask = r->index_size - 1, hole = mix32(channel) & mask;
    while (r->index[hole] && r->allocs[r->index[hole] - 1].channel != channel) hole = (hole + 1) & mask;
    if (!r->index[hole]) return;
    for (uint32_t j = (hole + 1) & mask; r->index[j]; j = (j + 1) & mask) {
        uint32_t home = mix32(r->allocs[r->index[j] - 1].channel) & mask;
        /* Move j back into the hole unless its home lies between hole and j. */
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            r->index[hole] = r->index[j];
            hole = j;
        }
    }
    r->index[hole] = 0;
}

/* Doubles the allocation array (up to the maximum) and rebuilds the index
 * at twice that size, so the index stays at most half full. */
static bool grow(pl_relay *r)
{
    if (r->cap >= r->max_allocations) return false;
    uint32_t cap = r->cap ? 2 * r->cap : 64;
    if (cap > r->max_allocations) cap = r->max_allocations;
    uint32_t isize = 16;
    while (isize < 2 * cap) isize <<= 1;
    alloc *a = r->mem->calloc(r->mem->ctx, cap, sizeof *a);
    uint32_t *index = r->mem->calloc(r->mem->ctx, isize, sizeof *index);
    if (!a || !index) {
        if (a) r->mem->free(r->mem->ctx, a);
        if (index) r->mem->free(r->mem->ctx, index);
        return false;
    }
    if (r->allocs) {
        memcpy(a, r->allocs, r->cap * sizeof *a);
        sodium_memzero(r->allocs, r->cap * sizeof *r->allocs);
        r->mem->free(r->mem->ctx, r->allocs);
    }
    if (r->index) r->mem->free(r->mem->ctx, r->index);
    for (uint32_t i = 0; i < r->cap; i++)
        if (a[i].channel) index_put(index, isize, a[i].channel, i);
    /* The new slots go on the free list, lowest first. */
    for (uint32_t i = cap; i-- > r->cap;) {
        a[i].next_free = r->free_head;
        r->free_head = i;
    }
    r->allocs = a;
    r->cap = cap;
    r->index = index;
    r->index_size = isize;
    return true;
}

/* ---- allocations ------------------------------------------------------------------------ */

static uint64_t nonzero_u64(const pl_rng *rng)
{
    uint64_t v;
    do v = pl_rng_u64(rng);
    while (!v);
    return v;
}

static void fill_buckets(const pl_relay *r, side *s, pl_time now)
{
    s->pkt_tokens = r->pkt_cap;
    s->byte_tokens = r->byte_cap;
    s->refilled = now;
}

static void client_count_add(pl_relay *r, const uint8_t pk[32], int delta)
{
    uint32_t n = 0;
    pl_keymap_get(&r->per_client, pk, &n);
    n = (uint32_t)((int64_t)n + delta);
    if (n) pl_keymap_put(&r->per_client, pk, n);
    else pl_keymap_remove(&r->per_client, pk);
}

static pl_relay_status allocate_limited(pl_relay *r, const uint8_t owner_pk[32], const uint8_t peer_pk[32],
                                        pl_time now, pl_relay_grant *grant, uint32_t limit)
{
    uint32_t req = grant->req;
    memset(grant, 0, sizeof *grant);
    grant->req = req;
    uint32_t held = 0;
    pl_keymap_get(&r->per_client, owner_pk, &held);
    if (held >= limit) {
        r->stats.refused_client_limit++;
        return grant->status = PL_RELAY_CLIENT_LIMIT;
    }
    if (r->stats.allocations >= r->max_allocations || (r->free_head == NO_SLOT && !grow(r))) {
        r->stats.refused_full++;
        return grant->status = PL_RELAY_FULL;
    }
    /* Make sure the per-client table can count it before anything changes. */
    if (!pl_keymap_put(&r->per_client, owner_pk, held + 1)) {
        r->stats.refused_full++;
        return grant->status = PL_RELAY_FULL;
    }
    uint32_t slot = r->free_head;
    alloc *a = &r->allocs[slot];
    r->free_head = a->next_free;
    memset(a, 0, sizeof *a);
    uint32_t channel;
    do channel = (uint32_t)pl_rng_u64(r->rng);
    while (!channel || find(r, channel));
    a->channel = channel;
    a->last_active = now;
    memcpy(a->owner, owner_pk, 32);
    memcpy(a->peer, peer_pk, 32);
    a->s[0].token = nonzero_u64(r->rng);
    do a->s[1].token = nonzero_u64(r->rng);
    while (a->s[1].token == a->s[0].token);
    fill_buckets(r, &a->s[0], now);
    fill_buckets(r, &a->s[1], now);
    index_put(r->index, r->index_size, channel, slot);
    r->stats.allocations++;
    r->stats.allocated++;

    grant->status = PL_RELAY_OK;
    grant->channel = channel;
    grant->idle_s = (uint16_t)(r->idle / PL_SEC);
    grant->token_self = a->s[0].token;
    grant->token_peer = a->s[1].token;
    if (r->udp_addr.family != PL_AF_NONE) {
        grant->addrs[grant->n_addrs] = r->udp_addr;
        grant->addrs[grant->n_addrs++].transport = PL_ADDR_UDP;
    }
    if (r->tcp_addr.family != PL_AF_NONE) {
        grant->addrs[grant->n_addrs] = r->tcp_addr;
        grant->addrs[grant->n_addrs++].transport = PL_ADDR_TCP;
    }
    return PL_RELAY_OK;
}

pl_relay_status pl_relay_allocate_channel(pl_relay *r, const uint8_t owner_pk[32], const uint8_t peer_pk[32],
                                          pl_time now, pl_relay_grant *grant)
{
    return allocate_limited(r, owner_pk, peer_pk, now, grant, r->max_per_client);
}

static void free_alloc(pl_relay *r, alloc *a)
{
    index_remove(r, a->channel);
    client_count_add(r, a->owner, -1);
    uint32_t slot = (uint32_t)(a - r->allocs);
    sodium_memzero(a, sizeof *a);
    a->next_free = r->free_head;
    r->free_head = slot;
    r->stats.allocations--;
}

bool pl_relay_release_channel(pl_relay *r, const uint8_t owner_pk[32], uint32_t channel)
{
    alloc *a = find(r, channel);
    if (!a || sodium_memcmp(a->owner, owner_pk, 32) != 0) return false;
    free_alloc(r, a);
    r->stats.released++;
    return true;
}

bool pl_relay_message(pl_relay *r, const uint8_t pk[32], bool attached, const uint8_t *msg, size_t len,
                      pl_time now, uint8_t *out, size_t cap, size_t *out_len)
{
    *out_len = 0;
    if (len == 0) return false;
    if (msg[0] == PL_OVL_RELAY_ALLOCATE) {
        pl_relay_allocate m;
        if (pl_relay_decode_allocate(&m, msg, len) != PL_RELAY_ERR_OK) return true;
        pl_relay_grant g = {.req = m.req};
        if (attached) {
            allocate_limited(r, pk, m.peer_pk, now, &g, r->max_per_client);
        } else if (r->no_standby) {
            r->stats.refused_not_client++;
            g.status = PL_RELAY_NOT_CLIENT;
        } else {
            /* A node attached to another supernode (its session proved its
             * certified key): a standby relay for its call, a few at most.
             * It could as well attach here and ask; this spares it that. */
            if (allocate_limited(r, pk, m.peer_pk, now, &g, r->max_per_standby) == PL_RELAY_OK)
                r->stats.standby_allocated++;
        }
        *out_len = pl_relay_encode_grant(out, cap, &g);
        return true;
    }
    if (msg[0] == PL_OVL_RELAY_RELEASE) {
        pl_relay_release m;
        if (pl_relay_decode_release(&m, msg, len) == PL_RELAY_ERR_OK) pl_relay_release_channel(r, pk, m.channel);
        return true;
    }
    return false;
}

/* ---- forwarding -------------------------------------------------------------------------- */

/* Tops the side's buckets up for the time since the last packet and takes
 * one packet of len bytes; false (and nothing taken) when either is short. */
static bool take_tokens(const pl_relay *r, side *s, size_t len, pl_time now)
{
    if (now > s->refilled) {
        /* A full refill takes at most a quarter of a second, so clamping the
         * elapsed time to a second loses nothing and keeps the products small. */
        uint64_t elapsed = now - s->refilled;
        if (elapsed > PL_SEC) elapsed = PL_SEC;
        s->pkt_tokens += elapsed * r->pps;
        if (s->pkt_tokens > r->pkt_cap) s->pkt_tokens = r->pkt_cap;
        s->byte_tokens += elapsed * r->bps;
        if (s->byte_tokens > r->byte_cap) s->byte_tokens = r->byte_cap;
        s->refilled = now;
    }
    uint64_t bytes = (uint64_t)len * PL_SEC;
    if (s->pkt_tokens < PL_SEC || s->byte_tokens < bytes) return false;
    s->pkt_tokens -= PL_SEC;
    s->byte_tokens -= bytes;
    return true;
}

static bool is_self(const pl_relay *r, const pl_addr *a)
{
    return (r->udp_addr.family != PL_AF_NONE && pl_addr_same_host(a, &r->udp_addr) && a->port == r->udp_addr.port) ||
           (r->tcp_addr.family != PL_AF_NONE && pl_addr_same_host(a, &r->tcp_addr) && a->port == r->tcp_addr.port);
}

static pl_relay_action drop(pl_relay *r, pl_relay_action why)
{
    switch (why) {
    case PL_RELAY_SEND: break;
    case PL_RELAY_DROP_MALFORMED: r->stats.drop_malformed++; break;
    case PL_RELAY_DROP_CHANNEL: r->stats.drop_channel++; break;
    case PL_RELAY_DROP_TOKEN: r->stats.drop_token++; break;
    case PL_RELAY_DROP_SOURCE: r->stats.drop_source++; break;
    case PL_RELAY_DROP_EXPIRED: r->stats.drop_expired++; break;
    case PL_RELAY_DROP_RATE: r->stats.drop_rate++; break;
    case PL_RELAY_DROP_UNBOUND: r->stats.drop_unbound++; break;
    case PL_RELAY_DROP_REBIND: r->stats.drop_rebind++; break;
    case PL_RELAY_DROP_SELF: r->stats.drop_self++; break;
    }
    return why;
}

pl_relay_action pl_relay_forward(pl_relay *r, const pl_addr *from, uint8_t *pkt, size_t *len, pl_time now,
                                 pl_addr *to)
{
    size_t n = *len;
    uint32_t channel;
    uint64_t token;
    if (!pl_relay_parse(pkt, n, &channel, &token)) return drop(r, PL_RELAY_DROP_MALFORMED);
    alloc *a = find(r, channel);
    if (!a) return drop(r, PL_RELAY_DROP_CHANNEL);
    if (now > a->last_active && now - a->last_active >= r->idle) {
        free_alloc(r, a);
        r->stats.expired++;
        return drop(r, PL_RELAY_DROP_EXPIRED);
    }
    int which = token == a->s[0].token ? 0 : token == a->s[1].token ? 1 : -1;
    if (which < 0) return drop(r, PL_RELAY_DROP_TOKEN);
    side *s = &a->s[which];
    bool bind = n == PL_RELAY_HEADER_SIZE;
    bool move = s->bound && !pl_addr_equal(&s->addr, from);
    /* Checks that change nothing come before the buckets, so a sender with
     * the token but at the wrong address cannot spend the side's rate. */
    if (move && !bind) return drop(r, PL_RELAY_DROP_SOURCE);
    if ((!s->bound || move) && is_self(r, from)) return drop(r, PL_RELAY_DROP_SELF);
    if (move && now - s->last_rebind < PL_RELAY_REBIND_INTERVAL) return drop(r, PL_RELAY_DROP_REBIND);
    if (!take_tokens(r, s, n, now)) return drop(r, PL_RELAY_DROP_RATE);

    if (!s->bound || move) {
        /* Only moves count towards the interval: the first binding is free. */
        if (move) {
            r->stats.rebinds++;
            s->last_rebind = now;
        }
        s->addr = *from;
        s->bound = true;
    }
    a->last_active = now;
    if (bind) {
        /* The answer is the bind itself, to the address that just proved it
         * holds the token: as long as the request, never longer. */
        r->stats.binds++;
        *to = *from;
        return PL_RELAY_SEND;
    }
    const side *o = &a->s[!which];
    if (!o->bound) return drop(r, PL_RELAY_DROP_UNBOUND);
    pl_put_u64be(pkt + 5, o->token);
    *to = o->addr;
    r->stats.forwarded++;
    r->stats.forwarded_bytes += n;
    return PL_RELAY_SEND;
}

/* ---- time -------------------------------------------------------------------------------- */

void pl_relay_tick(pl_relay *r, pl_time now)
{
    if (now < r->next_sweep) return;
    r->next_sweep = now + PL_RELAY_SWEEP_INTERVAL;
    if (!r->cap) return;
    uint32_t budget = r->cap / 10 + 1;
    for (uint32_t i = 0; i < budget; i++) {
        alloc *a = &r->allocs[r->sweep_cursor];
        if (++r->sweep_cursor == r->cap) r->sweep_cursor = 0;
        if (a->channel && now > a->last_active && now - a->last_active >= r->idle) {
            free_alloc(r, a);
            r->stats.expired++;
        }
    }
}

pl_time pl_relay_next_timeout(const pl_relay *r) { return r->stats.allocations ? r->next_sweep : PL_TIME_NEVER; }

pl_relay_stats pl_relay_get_stats(const pl_relay *r) { return r->stats; }

/* ---- set-up ---------------------------------------------------------------------------------- */

pl_relay_err pl_relay_new(pl_relay **out, const pl_relay_config *cfg)
{
    *out = NULL;
    if (!cfg || !cfg->rng) return PL_RELAY_ERR_CONFIG;
    if (cfg->max_allocations > (1u << 24)) return PL_RELAY_ERR_CONFIG;
    if (cfg->idle_timeout && (cfg->idle_timeout < PL_SEC || cfg->idle_timeout > 3600 * PL_SEC))
        return PL_RELAY_ERR_CONFIG;
    if (cfg->udp_addr.family == PL_AF_NONE && cfg->tcp_addr.family == PL_AF_NONE) return PL_RELAY_ERR_CONFIG;
    const pl_mem *mem = cfg->mem ? cfg->mem : pl_mem_system();
    pl_relay *r = mem->calloc(mem->ctx, 1, sizeof *r);
    if (!r) return PL_RELAY_ERR_NOMEM;
    r->rng = cfg->rng;
    r->mem = mem;
    r->max_allocations = cfg->max_allocations ? cfg->max_allocations : PL_RELAY_DEFAULT_MAX_ALLOCATIONS;
    r->max_per_client = cfg->max_per_client ? cfg->max_per_client : PL_RELAY_DEFAULT_MAX_PER_CLIENT;
    r->max_per_standby = cfg->max_per_standby ? cfg->max_per_standby : PL_RELAY_DEFAULT_MAX_PER_STANDBY;
    r->no_standby = cfg->no_standby;
    r->pps = cfg->max_pps ? cfg->max_pps : PL_RELAY_DEFAULT_PPS;
    r->bps = cfg->max_bps ? cfg->max_bps : PL_RELAY_DEFAULT_BPS;
    uint64_t burst_pkts = r->pps / PL_RELAY_BURST_DIVISOR, burst_bytes = r->bps / PL_RELAY_BURST_DIVISOR;
    if (burst_pkts < 1) burst_pkts = 1;
    if (burst_bytes < PL_RELAY_MAX_PACKET) burst_bytes = PL_RELAY_MAX_PACKET;
    r->pkt_cap = burst_pkts * PL_SEC;
    r->byte_cap = burst_bytes * PL_SEC;
    r->idle = cfg->idle_timeout ? cfg->idle_timeout : PL_RELAY_DEFAULT_IDLE;
    r->udp_addr = cfg->udp_addr;
    r->tcp_addr = cfg->tcp_addr;
    r->free_head = NO_SLOT;
    pl_keymap_init(&r->per_client, mem, cfg->rng);
    *out = r;
    return PL_RELAY_ERR_OK;
}

void pl_relay_free(pl_relay *r)
{
    if (!r) return;
    const pl_mem *mem = r->mem;
    if (r->allocs) {
        sodium_memzero(r->allocs, r->cap * sizeof *r->allocs);
        mem->free(mem->ctx, r->allocs);
    }
    if (r->index) mem->free(mem->ctx, r->index);
    pl_keymap_free(&r->per_client);
    sodium_memzero(r, sizeof *r);
    mem->free(mem->ctx, r);
}

/* ---- names -------------------------------------------------------------------------------- */

const char *pl_relay_strerror(pl_relay_err err)
{
    switch (err) {
    case PL_RELAY_ERR_OK: return "ok";
    case PL_RELAY_ERR_MALFORMED: return "malformed relay message";
    case PL_RELAY_ERR_CONFIG: return "bad relay configuration";
    case PL_RELAY_ERR_NOMEM: return "out of memory";
    }
    return "unknown relay error";
}

const char *pl_relay_action_name(pl_relay_action a)
{
    switch (a) {
    case PL_RELAY_SEND: return "send";
    case PL_RELAY_DROP_MALFORMED: return "malformed";
    case PL_RELAY_DROP_CHANNEL: return "unknown channel";
    case PL_RELAY_DROP_TOKEN: return "wrong token";
    case PL_RELAY_DROP_SOURCE: return "wrong source address";
    case PL_RELAY_DROP_EXPIRED: return "allocation expired";
    case PL_RELAY_DROP_RATE: return "over the rate limit";
    case PL_RELAY_DROP_UNBOUND: return "other side not bound";
    case PL_RELAY_DROP_REBIND: return "re-bind too soon";
    case PL_RELAY_DROP_SELF: return "the relay's own address";
    }
    return "unknown";
}

const char *pl_relay_status_name(uint8_t status)
{
    switch (status) {
    case PL_RELAY_OK: return "ok";
    case PL_RELAY_FULL: return "relay full";
    case PL_RELAY_CLIENT_LIMIT: return "too many allocations for this node";
    case PL_RELAY_NOT_CLIENT: return "not an attached node";
    case PL_RELAY_DISABLED: return "not relaying";
    }
    return "unknown status";
}
