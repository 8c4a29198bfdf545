/* members_sim.c - membership instances on the simulator; see members_sim.h. */
#include "members_sim.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigcache.h"

#define PORT 7400
#define MAX_NODES (1u << 17)

typedef struct node {
    pl_msim *sim;
    uint32_t idx;
    pl_identity id;
    pl_members *m;
    uint64_t timer;  /* simnet timer id, 0: none */
    pl_time timer_at;
    uint32_t group;
    uint32_t loss_ppm;
    uint16_t port;
    pl_msim_traffic traffic;
} node;

struct pl_msim {
    pl_simnet *net;
    pl_sigcache *sigs;
    pl_rng_seeded fault_rng; /* for per-node loss: separate from the network's draws */
    pl_members_config base;
    uint32_t n;
    uint32_t overhead;
    node *nodes;
    pl_msim_event_hook hook;
    void *hook_ctx;
    uint64_t trace, events;
};

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

pl_addr pl_msim_addr(const pl_msim *s, uint32_t i)
{
    pl_addr a;
    memset(&a, 0, sizeof a);
    a.family = PL_AF_INET4;
    a.port = i < s->n && s->nodes[i].port ? s->nodes[i].port : PORT;
    a.ip[0] = 198;
    a.ip[1] = (uint8_t)(18 + (i >> 16));
    a.ip[2] = (uint8_t)(i >> 8);
    a.ip[3] = (uint8_t)i;
    return a;
}

uint32_t pl_msim_node_at(const pl_msim *s, const pl_addr *a)
{
    if (a->family != PL_AF_INET4 || a->ip[0] != 198 || a->ip[1] < 18 || a->ip[1] > 19)
        return UINT32_MAX;
    uint32_t i = ((uint32_t)(a->ip[1] - 18) << 16) | ((uint32_t)a->ip[2] << 8) | a->ip[3];
    return i < s->n ? i : UINT32_MAX;
}

static void arm(node *nd);

static void on_timer(void *ctx, pl_time now)
{
    node *nd = ctx;
    nd->timer = 0;
    if (!nd->m) return;
    pl_members_tick(nd->m, now);
    arm(nd);
}

/* Keeps one timer per node at the instance's next timeout; a timer that
 * fires early is harmless (tick finds nothing due). */
static void arm(node *nd)
{
    if (!nd->m) return;
    pl_time t = pl_members_next_timeout(nd->m);
    if (t == PL_TIME_NEVER) return;
    if (nd->timer && nd->timer_at <= t) return;
    if (nd->timer) pl_simnet_timer_cancel(nd->sim->net, nd->timer);
    nd->timer = pl_simnet_timer(nd->sim->net, t, on_timer, nd);
    nd->timer_at = t;
}

static bool dropped_by_faults(pl_msim *s, const node *a, const node *b)
{
    if (a->group != b->group) return true;
    uint32_t loss = a->loss_ppm > b->loss_ppm ? a->loss_ppm : b->loss_ppm;
    return loss > 0 && pl_rng_below(&s->fault_rng.rng, 1000000) < loss;
}

static void on_send(void *ctx, const uint8_t to_pk[32], const pl_addr *to_addr, const uint8_t *msg, size_t len)
{
    node *nd = ctx;
    pl_msim *s = nd->sim;
    nd->traffic.datagrams_tx++;
    nd->traffic.bytes_tx += len + s->overhead;
    uint32_t j = pl_msim_node_at(s, to_addr);
    /* A session to a key at an address where another key answers would not
     * come up: the datagram is lost. */
    if (j == UINT32_MAX || memcmp(s->nodes[j].id.sign_pk, to_pk, 32) != 0) return;
    if (dropped_by_faults(s, nd, &s->nodes[j])) return;
    pl_addr from = pl_msim_addr(s, nd->idx);
    pl_simnet_send(s->net, &from, to_addr, msg, len);
}

static void on_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len, pl_time now)
{
    node *nd = ctx;
    pl_msim *s = nd->sim;
    (void)to;
    uint32_t i = pl_msim_node_at(s, from);
    if (i == UINT32_MAX || !nd->m) return;
    nd->traffic.datagrams_rx++;
    nd->traffic.bytes_rx += len + s->overhead;
    pl_members_receive(nd->m, s->nodes[i].id.sign_pk, from, data, len, now);
    arm(nd);
}

static void on_event(void *ctx, const pl_members_event *ev)
{
    node *nd = ctx;
    pl_msim *s = nd->sim;
    uint64_t pk8;
    memcpy(&pk8, ev->info->pk, 8);
    s->trace = mix64(s->trace ^ ((uint64_t)nd->idx << 40 ^ (uint64_t)ev->type << 32 ^ ev->info->incarnation));
    s->trace = mix64(s->trace ^ pk8 ^ ((uint64_t)ev->info->state << 56));
    s->trace = mix64(s->trace ^ ev->now);
    s->events++;
    if (s->hook) s->hook(s->hook_ctx, nd->idx, ev);
}

pl_msim *pl_msim_new(const pl_msim_config *cfg)
{
    if (cfg->nodes == 0 || cfg->nodes > MAX_NODES) return NULL;
    pl_msim *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n = cfg->nodes;
    s->base = cfg->members;
    s->overhead = cfg->datagram_overhead ? cfg->datagram_overhead : 60;
    s->net = pl_simnet_new(cfg->seed, cfg->start ? cfg->start : (pl_time)1800000000 * PL_SEC);
    s->sigs = pl_sigcache_new(cfg->sigcache_log2 ? cfg->sigcache_log2 : 16);
    s->nodes = calloc(cfg->nodes, sizeof *s->nodes);
    if (!s->net || !s->sigs || !s->nodes) {
        pl_msim_free(s);
        return NULL;
    }
    pl_simnet_set_default_link(s->net, cfg->link);
    pl_rng_seeded_init(&s->fault_rng, cfg->seed ^ 0x6661756c74ull);
    for (uint32_t i = 0; i < s->n; i++) {
        node *nd = &s->nodes[i];
        nd->sim = s;
        nd->idx = i;
        uint8_t seed[32], in[12];
        for (int b = 0; b < 8; b++) in[b] = (uint8_t)(cfg->seed >> (8 * b));
        for (int b = 0; b < 4; b++) in[8 + b] = (uint8_t)(i >> (8 * b));
        crypto_generichash(seed, sizeof seed, in, sizeof in, NULL, 0);
        /* Only the signing key is used here; the X25519 half stays zero. */
        crypto_sign_seed_keypair(nd->id.sign_pk, nd->id.sign_sk, seed);
        sodium_memzero(seed, sizeof seed);
    }
    return s;
}

void pl_msim_free(pl_msim *s)
{
    if (!s) return;
    if (s->nodes)
        for (uint32_t i = 0; i < s->n; i++) pl_members_free(s->nodes[i].m);
    free(s->nodes);
    pl_sigcache_free(s->sigs);
    pl_simnet_free(s->net);
    free(s);
}

pl_simnet *pl_msim_net(pl_msim *s) { return s->net; }
pl_time pl_msim_now(const pl_msim *s) { return pl_simnet_now(s->net); }
uint32_t pl_msim_nodes(const pl_msim *s) { return s->n; }
bool pl_msim_running(const pl_msim *s, uint32_t i) { return i < s->n && s->nodes[i].m != NULL; }
pl_members *pl_msim_instance(pl_msim *s, uint32_t i) { return i < s->n ? s->nodes[i].m : NULL; }
const uint8_t *pl_msim_pk(const pl_msim *s, uint32_t i) { return s->nodes[i].id.sign_pk; }
const pl_identity *pl_msim_identity(const pl_msim *s, uint32_t i) { return &s->nodes[i].id; }

bool pl_msim_start(pl_msim *s, uint32_t i, uint32_t incarnation)
{
    if (i >= s->n || s->nodes[i].m) return false;
    node *nd = &s->nodes[i];
    pl_members_config cfg = s->base;
    cfg.identity = &nd->id;
    cfg.addr = pl_msim_addr(s, i);
    cfg.incarnation = incarnation;
    cfg.rng = pl_simnet_rng(s->net);
    cfg.verify = pl_sigcache_verify;
    cfg.verify_ctx = s->sigs;
    pl_members_io io = {nd, on_send, on_event};
    if (pl_members_new(&nd->m, &cfg, &io, pl_simnet_now(s->net)) != PL_MEMBERS_OK) return false;
    if (!pl_simnet_attach(s->net, &cfg.addr, on_recv, nd)) {
        pl_members_free(nd->m);
        nd->m = NULL;
        return false;
    }
    arm(nd);
    return true;
}

void pl_msim_crash(pl_msim *s, uint32_t i)
{
    node *nd = &s->nodes[i];
    if (!nd->m) return;
    pl_addr a = pl_msim_addr(s, i);
    pl_simnet_detach(s->net, &a);
    if (nd->timer) pl_simnet_timer_cancel(s->net, nd->timer);
    nd->timer = 0;
    pl_members_free(nd->m);
    nd->m = NULL;
}

pl_members_err pl_msim_move(pl_msim *s, uint32_t i, uint16_t port)
{
    node *nd = &s->nodes[i];
    if (!nd->m) return PL_MEMBERS_ERR_CONFIG;
    pl_addr old = pl_msim_addr(s, i);
    pl_simnet_detach(s->net, &old);
    nd->port = port;
    pl_addr a = pl_msim_addr(s, i);
    if (!pl_simnet_attach(s->net, &a, on_recv, nd)) return PL_MEMBERS_ERR_ADDR;
    pl_members_err e = pl_members_set_addr(nd->m, &a, pl_simnet_now(s->net));
    arm(nd);
    return e;
}

pl_members_err pl_msim_add_known(pl_msim *s, uint32_t i, uint32_t j)
{
    pl_addr a = pl_msim_addr(s, j);
    pl_members_err e = pl_members_add_known(s->nodes[i].m, s->nodes[j].id.sign_pk, &a, pl_simnet_now(s->net));
    arm(&s->nodes[i]);
    return e;
}

pl_members_err pl_msim_join(pl_msim *s, uint32_t i)
{
    pl_members_err e = pl_members_join(s->nodes[i].m, pl_simnet_now(s->net));
    arm(&s->nodes[i]);
    return e;
}

pl_members_err pl_msim_leave(pl_msim *s, uint32_t i)
{
    pl_members_err e = pl_members_leave(s->nodes[i].m, pl_simnet_now(s->net));
    arm(&s->nodes[i]);
    return e;
}

void pl_msim_inject(pl_msim *s, uint32_t i, uint32_t from, const uint8_t *msg, size_t len)
{
    node *nd = &s->nodes[i];
    if (!nd->m) return;
    pl_addr a = pl_msim_addr(s, from);
    pl_members_receive(nd->m, s->nodes[from].id.sign_pk, &a, msg, len, pl_simnet_now(s->net));
    arm(nd);
}

void pl_msim_run_until(pl_msim *s, pl_time t) { pl_simnet_run_until(s->net, t); }
void pl_msim_set_group(pl_msim *s, uint32_t i, uint32_t group) { s->nodes[i].group = group; }
void pl_msim_set_loss(pl_msim *s, uint32_t i, uint32_t loss_ppm) { s->nodes[i].loss_ppm = loss_ppm; }

void pl_msim_set_event_hook(pl_msim *s, pl_msim_event_hook hook, void *ctx)
{
    s->hook = hook;
    s->hook_ctx = ctx;
}

uint32_t pl_msim_count_seeing(pl_msim *s, uint32_t j, pl_member_state st)
{
    uint32_t n = 0;
    pl_member_info info;
    for (uint32_t i = 0; i < s->n; i++) {
        if (i == j || !s->nodes[i].m) continue;
        if (pl_members_find(s->nodes[i].m, s->nodes[j].id.sign_pk, &info) && info.state == st) n++;
    }
    return n;
}

bool pl_msim_converged(pl_msim *s, bool suspect_ok)
{
    uint32_t running = 0;
    for (uint32_t i = 0; i < s->n; i++) running += s->nodes[i].m != NULL;
    for (uint32_t i = 0; i < s->n; i++) {
        pl_members *m = s->nodes[i].m;
        if (!m) continue;
        if (pl_members_alive_count(m) != running) return false;
        uint32_t cursor = 0;
        pl_member_info info;
        while (pl_members_next(m, &cursor, &info)) {
            bool live = info.state == PL_MEMBER_ALIVE || (suspect_ok && info.state == PL_MEMBER_SUSPECT);
            uint32_t j = pl_msim_node_at(s, &info.addr);
            bool up = j != UINT32_MAX && s->nodes[j].m && memcmp(s->nodes[j].id.sign_pk, info.pk, 32) == 0;
            if (up != live) return false;
        }
    }
    return true;
}

pl_msim_traffic pl_msim_traffic_of(const pl_msim *s, uint32_t i) { return s->nodes[i].traffic; }

void pl_msim_reset_traffic(pl_msim *s)
{
    for (uint32_t i = 0; i < s->n; i++) memset(&s->nodes[i].traffic, 0, sizeof s->nodes[i].traffic);
}

uint64_t pl_msim_trace_hash(const pl_msim *s) { return s->trace; }
uint64_t pl_msim_events(const pl_msim *s) { return s->events; }
