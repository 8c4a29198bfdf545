/*
 * simworld.c - Parley processes on the simulated network (simworld.h).
 */
#include "simworld.h"

#include <sodium.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keymap.h"
#include "ring.h"

struct pl_simhost {
    pl_simworld *world;
    char name[PL_NAME_MAX + 1];
    pl_identity id;
    pl_cert cert;
    uint8_t cert_bytes[PL_CERT_MAX_SIZE];
    size_t cert_len;
    pl_ovl_peer peer; /* key and address */
    pl_stack_config cfg;
    pl_ovl_peer *bootstrap; /* the host's own copy of cfg.bootstrap */
    pl_stack *stack;
    uint64_t timer_id;
    pl_time timer_at;
    pl_node_host *saved_hosts; /* the host cache across a crash */
    size_t n_saved_hosts;
    bool account_cpu;   /* measure the thread CPU time its stack takes */
    uint64_t cpu_ns;
    void *user;
};

struct pl_simworld {
    pl_simnet *net;
    bool secure;
    uint8_t ca_pk[32], ca_sk[64];
    uint64_t next_serial;
    pl_simhost **hosts;
    size_t n_hosts, cap_hosts;
    pl_keymap by_addr; /* address -> host index, for the external transport */
    pl_simworld_event_cb on_event;
    pl_simworld_user_message_cb on_user_message;
    void *ctx;
    pl_simworld_tamper_cb tamper;
    void *tamper_ctx;
    pl_simworld_datagram_cb tap;
    void *tap_ctx;
    pl_ring *ring; /* shared by the supernodes, or NULL */
    uint64_t *revoked; /* ascending serials */
    uint32_t n_revoked;
    uint8_t *crl_buf;
    pl_crl crl;
    bool have_crl;
};

static void addr_key(const pl_addr *a, uint8_t key[32])
{
    memset(key, 0, 32);
    key[0] = a->family;
    key[1] = (uint8_t)(a->port >> 8);
    key[2] = (uint8_t)a->port;
    memcpy(key + 3, a->ip, a->family == PL_AF_INET4 ? 4 : 16);
}

/* ---- timers ------------------------------------------------------------------------ */

static void host_timer(void *ctx, pl_time now);

/* Keeps one simulator timer per host at the stack's next deadline. A later
 * deadline leaves the earlier timer armed (it fires, finds nothing due, and
 * re-arms), which saves a cancel and a heap insert on most packets. */
static void reschedule(pl_simhost *h)
{
    if (!h->stack) return;
    pl_time t = pl_stack_next_timeout(h->stack);
    if (h->timer_id && h->timer_at <= t) return;
    if (h->timer_id) pl_simnet_timer_cancel(h->world->net, h->timer_id);
    h->timer_id = 0;
    if (t == PL_TIME_NEVER) return;
    pl_time now = pl_simnet_now(h->world->net);
    h->timer_at = t > now ? t : now;
    h->timer_id = pl_simnet_timer(h->world->net, h->timer_at, host_timer, h);
}

static uint64_t thread_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void host_timer(void *ctx, pl_time now)
{
    pl_simhost *h = ctx;
    h->timer_id = 0;
    if (!h->stack) return;
    uint64_t t0 = h->account_cpu ? thread_ns() : 0;
    pl_stack_tick(h->stack, now);
    reschedule(h);
    if (h->account_cpu) h->cpu_ns += thread_ns() - t0;
}

/* ---- the stack's outputs ------------------------------------------------------------------ */

static void send_datagram(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    pl_simhost *h = ctx;
    if (h->world->tap) {
        uint8_t copy[PL_SEC_MAX_DATAGRAM];
        if (len > sizeof copy) return;
        memcpy(copy, data, len);
        if (h->world->tap(h->world->tap_ctx, h, to, copy, &len)) pl_simnet_send(h->world->net, &h->peer.addr, to, copy, len);
        return;
    }
    pl_simnet_send(h->world->net, &h->peer.addr, to, data, len);
}

static bool send_message(void *ctx, const uint8_t pk[32], const pl_addr *addr, const uint8_t *msg, size_t len,
                         pl_time now)
{
    pl_simhost *h = ctx;
    (void)now;
    if (!addr) return false;
    if (h->world->tamper) {
        uint8_t copy[PL_SEC_MAX_PAYLOAD];
        if (len > sizeof copy) return false;
        memcpy(copy, msg, len);
        if (!h->world->tamper(h->world->tamper_ctx, h, pk, copy, &len)) return true;
        pl_simnet_send(h->world->net, &h->peer.addr, addr, copy, len);
        return true;
    }
    pl_simnet_send(h->world->net, &h->peer.addr, addr, msg, len);
    return true;
}

static void stack_event(void *ctx, const pl_stack_event *ev)
{
    pl_simhost *h = ctx;
    if (h->world->on_event) h->world->on_event(h->world->ctx, h, ev);
}

static void stack_user_message(void *ctx, const uint8_t pk[32], const pl_cert *cert, const uint8_t *msg, size_t len,
                               pl_time now)
{
    pl_simhost *h = ctx;
    (void)cert;
    if (h->world->on_user_message) h->world->on_user_message(h->world->ctx, h, pk, msg, len, now);
}

static void host_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len, pl_time now)
{
    pl_simhost *h = ctx;
    (void)to;
    if (!h->stack) return;
    uint64_t t0 = h->account_cpu ? thread_ns() : 0;
    if (h->world->secure) {
        pl_stack_receive(h->stack, from, data, len, now);
    } else {
        uint8_t key[32];
        uint32_t i;
        addr_key(from, key);
        if (!pl_keymap_get(&h->world->by_addr, key, &i)) return;
        pl_simhost *sender = h->world->hosts[i];
        pl_stack_deliver(h->stack, sender->peer.pk, &sender->cert, from, data, len, now);
    }
    reschedule(h);
    if (h->account_cpu) h->cpu_ns += thread_ns() - t0;
}

/* ---- hosts --------------------------------------------------------------------------------- */

static bool make_stack(pl_simhost *h)
{
    pl_stack_config cfg = h->cfg;
    cfg.identity = &h->id;
    cfg.cert = h->cert_bytes;
    cfg.cert_len = h->cert_len;
    memcpy(cfg.ca_pk, h->world->ca_pk, 32);
    cfg.rng = pl_simnet_rng(h->world->net);
    /* cfg.mem comes from the template: a benchmark may count one host's
     * memory with an allocator of its own. */
    cfg.external_transport = !h->world->secure;
    cfg.bootstrap = h->bootstrap;
    cfg.self_addr = h->peer.addr;
    if (h->world->ring && cfg.role == PL_ROLE_SUPERNODE) cfg.shared_ring = h->world->ring;
    pl_stack_io io = {h, send_datagram, send_message, NULL, stack_event, stack_user_message};
    if (pl_stack_new(&h->stack, &cfg, &io) != PL_STACK_OK) return false;
    pl_node *node = pl_stack_node(h->stack);
    if (node)
        for (size_t i = 0; i < h->n_saved_hosts; i++) pl_node_add_host(node, &h->saved_hosts[i]);
    if (h->world->have_crl && pl_stack_link(h->stack))
        pl_sec_set_crl(pl_link_sec(pl_stack_link(h->stack)), &h->world->crl, pl_simnet_now(h->world->net));
    return true;
}

void pl_simworld_revoke(pl_simworld *w, pl_simhost *h)
{
    uint64_t serial = h->cert.serial;
    uint64_t *grown = realloc(w->revoked, (w->n_revoked + 1) * sizeof *grown);
    if (!grown) abort();
    w->revoked = grown;
    uint32_t at = 0;
    while (at < w->n_revoked && w->revoked[at] < serial) at++;
    if (at < w->n_revoked && w->revoked[at] == serial) return;
    memmove(&w->revoked[at + 1], &w->revoked[at], (w->n_revoked - at) * sizeof *w->revoked);
    w->revoked[at] = serial;
    w->n_revoked++;
    size_t cap = PL_CRL_SIZE(w->n_revoked), len;
    uint8_t *buf = realloc(w->crl_buf, cap);
    if (!buf) abort();
    w->crl_buf = buf;
    pl_time now = pl_simnet_now(w->net);
    if (pl_crl_build(buf, cap, &len, w->n_revoked, now / PL_SEC, w->revoked, w->n_revoked, w->ca_pk, w->ca_sk) ||
        pl_crl_decode(&w->crl, buf, len))
        abort();
    w->have_crl = true;
    for (size_t i = 0; i < w->n_hosts; i++) {
        pl_simhost *x = w->hosts[i];
        if (x->stack && pl_stack_link(x->stack)) {
            pl_sec_set_crl(pl_link_sec(pl_stack_link(x->stack)), &w->crl, now);
            reschedule(x);
        }
    }
}

pl_simhost *pl_simworld_add_host(pl_simworld *w, const char *name, const pl_addr *addr, const pl_stack_config *tmpl)
{
    pl_simhost *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->world = w;
    snprintf(h->name, sizeof h->name, "%s", name);
    pl_identity_generate(&h->id, pl_simnet_rng(w->net));
    pl_cert *c = &h->cert;
    c->version = PL_CERT_VERSION;
    c->serial = w->next_serial++;
    c->not_before = pl_simnet_now(w->net) / PL_SEC - 86400;
    c->not_after = pl_simnet_now(w->net) / PL_SEC + 365 * 86400;
    memcpy(c->sign_pk, h->id.sign_pk, 32);
    memcpy(c->dh_pk, h->id.dh_pk, 32);
    c->name_len = (uint8_t)strlen(h->name);
    memcpy(c->name, h->name, c->name_len);
    pl_cert_sign(c, w->ca_pk, w->ca_sk);
    pl_cert_encode(c, h->cert_bytes, sizeof h->cert_bytes, &h->cert_len);
    memcpy(h->peer.pk, h->id.sign_pk, 32);
    h->peer.addr = *addr;
    h->cfg = *tmpl;
    if (tmpl->n_bootstrap) {
        h->bootstrap = calloc(tmpl->n_bootstrap, sizeof *h->bootstrap);
        if (!h->bootstrap) {
            free(h);
            return NULL;
        }
        memcpy(h->bootstrap, tmpl->bootstrap, tmpl->n_bootstrap * sizeof *h->bootstrap);
    }
    if (!pl_simnet_attach(w->net, addr, host_recv, h)) {
        free(h->bootstrap);
        free(h);
        return NULL;
    }
    if (w->n_hosts == w->cap_hosts) {
        w->cap_hosts = w->cap_hosts ? 2 * w->cap_hosts : 64;
        pl_simhost **grown = realloc(w->hosts, w->cap_hosts * sizeof *grown);
        if (!grown) abort();
        w->hosts = grown;
    }
    uint8_t key[32];
    addr_key(addr, key);
    pl_keymap_put(&w->by_addr, key, (uint32_t)w->n_hosts);
    w->hosts[w->n_hosts++] = h;
    return h;
}

void pl_simhost_start(pl_simhost *h)
{
    if (!h->stack && !make_stack(h)) return;
    pl_stack_start(h->stack, pl_simnet_now(h->world->net));
    reschedule(h);
}

static void drop_stack(pl_simhost *h)
{
    if (h->timer_id) pl_simnet_timer_cancel(h->world->net, h->timer_id);
    h->timer_id = 0;
    pl_node *node = h->stack ? pl_stack_node(h->stack) : NULL;
    if (node) {
        free(h->saved_hosts);
        h->saved_hosts = calloc(PL_NODE_HOST_CACHE_MAX, sizeof *h->saved_hosts);
        h->n_saved_hosts = h->saved_hosts ? pl_node_hosts(node, h->saved_hosts, PL_NODE_HOST_CACHE_MAX) : 0;
    }
    pl_stack_free(h->stack);
    h->stack = NULL;
}

void pl_simhost_crash(pl_simhost *h)
{
    if (!h->stack) return;
    drop_stack(h);
    pl_simnet_detach(h->world->net, &h->peer.addr);
}

void pl_simhost_restart(pl_simhost *h)
{
    if (h->stack) drop_stack(h);
    else pl_simnet_attach(h->world->net, &h->peer.addr, host_recv, h);
    if (make_stack(h)) pl_simhost_start(h);
}

void pl_simworld_introduce_supernodes(pl_simworld *w)
{
    pl_time now = pl_simnet_now(w->net);
    for (size_t i = 0; i < w->n_hosts; i++) {
        pl_simhost *h = w->hosts[i];
        pl_super *s = h->stack ? pl_stack_super(h->stack) : NULL;
        if (!s) continue;
        for (size_t j = 0; j < w->n_hosts; j++) {
            pl_simhost *o = w->hosts[j];
            if (o->cfg.role == PL_ROLE_SUPERNODE) pl_super_member_up(s, o->peer.pk, &o->peer.addr, now);
        }
        reschedule(h);
    }
}

void pl_simworld_set_tamper(pl_simworld *w, pl_simworld_tamper_cb cb, void *ctx)
{
    w->tamper = cb;
    w->tamper_ctx = ctx;
}

void pl_simworld_set_datagram_tap(pl_simworld *w, pl_simworld_datagram_cb cb, void *ctx)
{
    w->tap = cb;
    w->tap_ctx = ctx;
}

void pl_simhost_reschedule(pl_simhost *h) { reschedule(h); }

void pl_simworld_forget_supernode(pl_simworld *w, pl_simhost *gone)
{
    pl_time now = pl_simnet_now(w->net);
    for (size_t i = 0; i < w->n_hosts; i++) {
        pl_simhost *h = w->hosts[i];
        pl_super *s = h->stack ? pl_stack_super(h->stack) : NULL;
        if (!s || h == gone) continue;
        pl_super_member_down(s, gone->peer.pk, now);
        reschedule(h);
    }
}

void pl_simhost_account_cpu(pl_simhost *h, bool on) { h->account_cpu = on; }
uint64_t pl_simhost_cpu_ns(const pl_simhost *h) { return h->cpu_ns; }

bool pl_simhost_running(const pl_simhost *h) { return h->stack != NULL; }
void pl_simhost_poke(pl_simhost *h) { reschedule(h); }
pl_stack *pl_simhost_stack(pl_simhost *h) { return h->stack; }
const pl_ovl_peer *pl_simhost_peer(const pl_simhost *h) { return &h->peer; }
const char *pl_simhost_name(const pl_simhost *h) { return h->name; }
const pl_cert *pl_simhost_cert(const pl_simhost *h) { return &h->cert; }
const pl_identity *pl_simhost_identity(const pl_simhost *h) { return &h->id; }
void pl_simhost_set_user(pl_simhost *h, void *user) { h->user = user; }
void *pl_simhost_user(const pl_simhost *h) { return h->user; }

/* ---- the world ------------------------------------------------------------------------------ */

pl_simworld *pl_simworld_new(const pl_simworld_config *cfg)
{
    pl_simworld *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->net = pl_simnet_new(cfg->seed, cfg->start);
    if (!w->net) {
        free(w);
        return NULL;
    }
    pl_simnet_set_default_link(w->net, cfg->link);
    w->secure = cfg->secure;
    w->on_event = cfg->on_event;
    w->on_user_message = cfg->on_user_message;
    w->ctx = cfg->ctx;
    w->next_serial = 1;
    /* The CA key comes from the seeded generator too: same seed, same run. */
    uint8_t seed[32];
    const pl_rng *rng = pl_simnet_rng(w->net);
    rng->fill(rng->ctx, seed, sizeof seed);
    crypto_sign_seed_keypair(w->ca_pk, w->ca_sk, seed);
    sodium_memzero(seed, sizeof seed);
    pl_keymap_init(&w->by_addr, NULL, rng);
    if (cfg->share_ring && pl_ring_new(&w->ring, NULL, cfg->vpoints) != PL_RING_OK) {
        pl_simworld_free(w);
        return NULL;
    }
    return w;
}

void pl_simworld_free(pl_simworld *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n_hosts; i++) {
        pl_simhost *h = w->hosts[i];
        if (h->timer_id) pl_simnet_timer_cancel(w->net, h->timer_id);
        pl_stack_free(h->stack);
        pl_identity_wipe(&h->id);
        free(h->bootstrap);
        free(h->saved_hosts);
        free(h);
    }
    free(w->hosts);
    pl_ring_free(w->ring);
    free(w->revoked);
    free(w->crl_buf);
    pl_keymap_free(&w->by_addr);
    pl_simnet_free(w->net);
    sodium_memzero(w->ca_sk, sizeof w->ca_sk);
    free(w);
}

pl_simnet *pl_simworld_net(pl_simworld *w) { return w->net; }
pl_time pl_simworld_now(const pl_simworld *w) { return pl_simnet_now(w->net); }
const uint8_t *pl_simworld_ca_pk(const pl_simworld *w) { return w->ca_pk; }
size_t pl_simworld_host_count(const pl_simworld *w) { return w->n_hosts; }
pl_simhost *pl_simworld_host(pl_simworld *w, size_t i) { return i < w->n_hosts ? w->hosts[i] : NULL; }

pl_addr pl_simworld_addr(int a, int b, int port)
{
    pl_addr x;
    char text[40];
    snprintf(text, sizeof text, "198.51.%d.%d:%d", a, b, port);
    pl_addr_parse(&x, text, 0);
    return x;
}
