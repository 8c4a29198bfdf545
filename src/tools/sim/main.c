/*
 * parley-sim - the overlay at internet scale, in one process.
 *
 *   parley-sim [--users N] [--supernodes M] [--seed S] [--duration S]
 *              [--scenario steady|storm|cascade] [--event-at S]
 *              [--lookups-per-s R] [--watchers W] [--loss PCT] [--churn]
 *              [--weibull-shape K] [--weibull-scale S] [--secure] [--json] [--trace]
 *
 * Users and supernodes are whole protocol stacks (src/core/stack.h, the code
 * the daemon runs) on the deterministic network and clock (simworld.h):
 * supernodes find each other by gossip (each starts knowing the others, as
 * from a host cache), nodes attach, publish, look each other up and follow
 * each other's presence. Links follow a latency model: eight regions, 10-30
 * ms one way within a region and 40-150 ms between, 5 ms of jitter, and the
 * loss asked for. Everything random comes from the seed: the same arguments
 * give the same run.
 *
 * Scenarios: steady (nothing happens), storm (at --event-at, half the users
 * restart at once: the 2007 login storm), cascade (30% of the supernodes
 * crash at once: the 2010 cascade). --churn adds Weibull session lengths
 * (shape, scale) with exponential gaps between sessions.
 *
 * Reported every 5 virtual seconds and at the end: look-up success and
 * latency percentiles, presence delay, per-supernode load (clients,
 * records, look-ups served), membership traffic per supernode, and, for
 * storm and cascade, when look-ups were back to 99% and stayed there.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "members_sim.h"
#include "record.h"
#include "sigcache.h"
#include "simworld.h"

#define T0 ((pl_time)1800000000 * PL_SEC)
#define WINDOW (5 * PL_SEC)
#define MAX_LATENCIES 200000
#define REGIONS 8

typedef struct options {
    uint32_t users, supernodes;
    uint64_t seed;
    double duration, event_at;
    const char *scenario;
    double lookups_per_s;
    uint32_t watchers;
    double loss;
    bool churn, secure, json, trace; /* trace: print each failed look-up and the mean membership view */
    double weibull_k, weibull_scale;
} options;

/* What the simulation keeps per user host. */
typedef struct sim sim;

typedef struct user {
    sim *sim;
    pl_simhost *host;
    uint32_t index;
    bool published;
    /* look-ups in flight: a few at a time */
    uint32_t look_id[4];
    pl_time look_at[4];
    uint8_t n_looks;
    /* presence: the watcher's target and the change it waits to hear */
    int32_t watching;      /* user index, or -1 */
    uint8_t expect;        /* the presence it waits for */
    pl_time expect_since;  /* 0: nothing pending */
} user;

typedef struct window {
    uint64_t asked, found, failed;
    uint64_t presence_heard;
    double presence_delay_sum, presence_delay_max;
} window;

struct sim {
    options o;
    pl_simworld *w;
    pl_simnet *net;
    pl_rng_seeded rng; /* the scenario's own decisions */
    pl_sigcache *sigs;
    pl_simhost **sn;
    user *users;
    window win, total;
    uint64_t *lat_us; /* look-up latencies this window */
    size_t n_lat;
    double *all_lat;  /* every look-up latency, for the summary */
    size_t n_all;
    pl_time event_time;
    pl_time recovered_at; /* first window back to >= 99% after the event */
    bool recovered;
    double worst_after_event;
    uint32_t max_clients_per_sn;
    uint32_t crashed; /* supernodes the cascade crashed */
    uint64_t *sn_bytes; /* membership bytes each supernode had sent at the last report */
    double membership_kbit_sum;
    uint32_t membership_windows;
};

static double now_s(const sim *s) { return (pl_simworld_now(s->w) - T0) / 1e6; }

/* ---- the latency model --------------------------------------------------------------- */

static unsigned region_of(const pl_addr *a) { return (a->ip[1] * 31u + a->ip[2]) % REGIONS; }

static pl_sim_link regions(void *ctx, const pl_addr *from, const pl_addr *to)
{
    const sim *s = ctx;
    unsigned ra = region_of(from), rb = region_of(to);
    /* A fixed matrix from the two regions: same region 10-30 ms, otherwise
     * 40-150 ms; symmetric. */
    unsigned lo = ra < rb ? ra : rb, hi = ra < rb ? rb : ra;
    pl_time base = ra == rb ? (10 + 3 * ra) * PL_MSEC : (40 + (lo * 17 + hi * 29) % 111) * PL_MSEC;
    return (pl_sim_link){base, 5 * PL_MSEC, (uint32_t)(s->o.loss * 10000)};
}

static pl_addr addr_of(uint32_t i, uint16_t port)
{
    pl_addr a;
    memset(&a, 0, sizeof a);
    a.family = PL_AF_INET4;
    a.ip[0] = 10;
    a.ip[1] = (uint8_t)(i >> 16);
    a.ip[2] = (uint8_t)(i >> 8);
    a.ip[3] = (uint8_t)i;
    a.port = port;
    return a;
}

/* ---- events from the stacks -------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static bool attached(const user *u);
static pl_node *node_of(const user *u);

static void on_event(void *ctx, pl_simhost *h, const pl_stack_event *ev)
{
    sim *s = ctx;
    user *u = pl_simhost_user(h);
    if (!u || ev->type != PL_STACK_EV_NODE || ev->node->type != PL_NODE_EV_DIRECTORY) return;
    const pl_dirc_event *d = ev->node->dir;
    if (d->type == PL_DIRC_EV_PUBLISHED && d->status == PL_DIR_OK) u->published = true;
    if (d->type == PL_DIRC_EV_LOOKUP) {
        for (uint8_t k = 0; k < u->n_looks; k++) {
            if (u->look_id[k] != d->id) continue;
            pl_time took = d->now - u->look_at[k];
            u->look_id[k] = u->look_id[u->n_looks - 1];
            u->look_at[k] = u->look_at[u->n_looks - 1];
            u->n_looks--;
            if (d->status == PL_DIR_OK) {
                s->win.found++;
                if (s->n_lat < MAX_LATENCIES) s->lat_us[s->n_lat++] = took;
                if (s->n_all < 20 * MAX_LATENCIES) s->all_lat[s->n_all++] = took / 1e3;
            } else {
                s->win.failed++;
                if (s->o.trace) {
                    pl_node_status ns = pl_node_get_status(node_of(u));
                    bool sn_alive = false;
                    for (uint32_t i = 0; i < s->o.supernodes; i++)
                        if (!memcmp(pl_simhost_peer(s->sn[i])->pk, ns.supernode.pk, 32))
                            sn_alive = pl_simhost_running(s->sn[i]);
                    fprintf(stderr, "t=%.1f lookup %s fail status %u asker %s state %d sn_alive %d attaches %u took %.1f s\n",
                            now_s(s), d->name, d->status, pl_simhost_name(h), ns.state, sn_alive, ns.attaches, took / 1e6);
                }
            }
            return;
        }
    }
    if (d->type == PL_DIRC_EV_PRESENCE && u->watching >= 0 && u->expect_since && d->record && !d->offline &&
        d->record->presence == u->expect) {
        double delay = (d->now - u->expect_since) / 1e3;
        s->win.presence_heard++;
        s->win.presence_delay_sum += delay;
        if (delay > s->win.presence_delay_max) s->win.presence_delay_max = delay;
        u->expect_since = 0;
    }
}

/* ---- the population ------------------------------------------------------------------------ */

static pl_node *node_of(const user *u)
{
    pl_stack *st = pl_simhost_stack(u->host);
    return st ? pl_stack_node(st) : NULL;
}

static bool attached(const user *u)
{
    pl_node *n = node_of(u);
    return n && pl_node_get_status(n).state == PL_NODE_ATTACHED;
}

static double weibull(sim *s, double k, double scale)
{
    double u = (pl_rng_below(&s->rng.rng, 1000000) + 0.5) / 1000000.0;
    return scale * pow(-log(u), 1.0 / k);
}

static void churn_timer(void *ctx, pl_time now);

static void schedule_churn(sim *s, user *u, pl_time now)
{
    double secs = pl_simhost_running(u->host) ? weibull(s, s->o.weibull_k, s->o.weibull_scale)
                                              : -log((pl_rng_below(&s->rng.rng, 1000000) + 0.5) / 1e6) * 60.0;
    pl_simnet_timer(s->net, now + (pl_time)(secs * PL_SEC), churn_timer, u);
}

static void churn_timer(void *ctx, pl_time now)
{
    user *u = ctx;
    if (pl_simhost_running(u->host)) pl_simhost_crash(u->host);
    else pl_simhost_restart(u->host);
    schedule_churn(u->sim, u, now);
}

/* Sampled look-ups: attached users ask for users who published. */
static void ask_lookups(sim *s, uint32_t count)
{
    for (uint32_t k = 0; k < count; k++) {
        user *a = &s->users[pl_rng_below(&s->rng.rng, s->o.users)];
        user *b = &s->users[pl_rng_below(&s->rng.rng, s->o.users)];
        if (a == b || !attached(a) || !b->published || a->n_looks == 4) continue;
        uint32_t id;
        pl_dirc *dc = pl_node_directory(node_of(a));
        if (pl_dirc_lookup(dc, pl_simhost_name(b->host), pl_simworld_now(s->w), &id) != PL_DIRC_OK) continue;
        pl_simhost_poke(a->host);
        a->look_id[a->n_looks] = id;
        a->look_at[a->n_looks++] = pl_simworld_now(s->w);
        s->win.asked++;
    }
}

/* Watched users change presence; their watchers measure how long it took. */
static void toggle_presence(sim *s)
{
    for (uint32_t i = 0; i < s->o.watchers && i < s->o.users / 2; i++) {
        user *w = &s->users[2 * i], *t = &s->users[2 * i + 1];
        if (!attached(w) || !attached(t) || w->watching < 0) continue;
        pl_dirc *dc = pl_node_directory(node_of(t));
        const char *status;
        uint8_t p = pl_dirc_presence(dc, &status) == PL_PRESENCE_ONLINE ? PL_PRESENCE_AWAY : PL_PRESENCE_ONLINE;
        pl_dirc_set_presence(dc, p, p == PL_PRESENCE_AWAY ? "away for a bit" : "", pl_simworld_now(s->w));
        pl_simhost_poke(t->host);
        w->expect = p;
        w->expect_since = pl_simworld_now(s->w);
    }
}

/* ---- reporting --------------------------------------------------------------------------- */

typedef struct load {
    double min, mean, max;
} load;

static load sn_load(sim *s, int which)
{
    load l = {1e18, 0, 0};
    uint32_t alive = 0;
    for (uint32_t i = 0; i < s->o.supernodes; i++) {
        pl_stack *st = pl_simhost_stack(s->sn[i]);
        if (!st) continue;
        pl_super *sp = pl_stack_super(st);
        double v = which == 0   ? pl_super_get_stats(sp).clients
                   : which == 1 ? (double)pl_dir_get_stats(pl_super_directory(sp)).records
                                : (double)(pl_dir_get_stats(pl_super_directory(sp)).lookups +
                                           pl_dir_get_stats(pl_super_directory(sp)).fetches_served);
        if (v < l.min) l.min = v;
        if (v > l.max) l.max = v;
        l.mean += v;
        alive++;
    }
    if (alive) l.mean /= alive;
    else l.min = 0;
    return l;
}

/* Bytes membership sent (60 bytes of IP, UDP and session overhead per
 * message included) by the live supernodes since the last call, summed. */
static uint64_t members_bytes(sim *s, uint32_t *alive)
{
    uint64_t total = 0;
    *alive = 0;
    for (uint32_t i = 0; i < s->o.supernodes; i++) {
        pl_stack *st = pl_simhost_stack(s->sn[i]);
        if (!st) continue;
        pl_members *m = pl_super_members(pl_stack_super(st));
        if (!m) continue;
        pl_members_stats ms = pl_members_get_stats(m);
        uint64_t b = 0;
        for (int k = 0; k < PL_MEMBERS_MSG_KINDS; k++) b += ms.tx_bytes[k] + 60 * ms.tx_msgs[k];
        total += b - s->sn_bytes[i];
        s->sn_bytes[i] = b;
        (*alive)++;
    }
    return total;
}

static double pct(uint64_t *v, size_t n, double p)
{
    if (!n) return 0;
    size_t i = (size_t)(p * (n - 1));
    return v[i] / 1e3;
}

static void report(sim *s, double window_s)
{
    window *w = &s->win;
    uint64_t done = w->found + w->failed;
    double ok = done ? 100.0 * w->found / done : 100.0;
    qsort(s->lat_us, s->n_lat, sizeof *s->lat_us, cmp_u64);
    uint32_t alive_sn;
    uint64_t mb = members_bytes(s, &alive_sn);
    double kbit = alive_sn ? mb * 8.0 / 1000.0 / window_s / alive_sn : 0;
    s->membership_kbit_sum += kbit;
    s->membership_windows++;
    load cl = sn_load(s, 0);
    if (s->o.trace) {
        double view = 0;
        for (uint32_t i = 0; i < s->o.supernodes; i++) {
            pl_stack *st = pl_simhost_stack(s->sn[i]);
            if (st) view += pl_members_alive_count(pl_super_members(pl_stack_super(st)));
        }
        fprintf(stderr, "t=%.0f mean membership view %.1f\n", now_s(s), alive_sn ? view / alive_sn : 0);
    }
    uint32_t online = 0;
    for (uint32_t i = 0; i < s->o.users; i++) online += attached(&s->users[i]);
    if (!s->o.json)
        printf("t=%6.0fs  look-ups %6llu ok %6.2f%% p50 %5.0f p90 %5.0f p99 %5.0f ms | presence %4llu heard, "
               "mean %5.0f ms | online %u, supernodes %u, clients/sn %.0f..%.0f | membership %.2f kbit/s/sn\n",
               now_s(s), (unsigned long long)done, ok, pct(s->lat_us, s->n_lat, 0.5), pct(s->lat_us, s->n_lat, 0.9),
               pct(s->lat_us, s->n_lat, 0.99), (unsigned long long)w->presence_heard,
               w->presence_heard ? w->presence_delay_sum / w->presence_heard : 0.0, online, alive_sn, cl.min, cl.max,
               kbit);
    else
        printf("{\"t\":%.0f,\"lookups\":%llu,\"ok_pct\":%.3f,\"p50_ms\":%.1f,\"p90_ms\":%.1f,\"p99_ms\":%.1f,"
               "\"presence_heard\":%llu,\"presence_mean_ms\":%.1f,\"online\":%u,\"supernodes\":%u,"
               "\"clients_per_sn_max\":%.0f,\"membership_kbit_per_sn\":%.3f}\n",
               now_s(s), (unsigned long long)done, ok, pct(s->lat_us, s->n_lat, 0.5), pct(s->lat_us, s->n_lat, 0.9),
               pct(s->lat_us, s->n_lat, 0.99), (unsigned long long)w->presence_heard,
               w->presence_heard ? w->presence_delay_sum / w->presence_heard : 0.0, online, alive_sn, cl.max, kbit);
    fflush(stdout);
    if (cl.max > s->max_clients_per_sn) s->max_clients_per_sn = (uint32_t)cl.max;
    if (s->event_time && pl_simworld_now(s->w) > s->event_time) {
        if (done && ok < s->worst_after_event) s->worst_after_event = ok;
        if (done >= 20 && ok >= 99.0 && !s->recovered) {
            s->recovered = true;
            s->recovered_at = pl_simworld_now(s->w);
        } else if (done >= 20 && ok < 99.0) {
            s->recovered = false;
        }
    }
    s->total.asked += w->asked;
    s->total.found += w->found;
    s->total.failed += w->failed;
    s->total.presence_heard += w->presence_heard;
    s->total.presence_delay_sum += w->presence_delay_sum;
    if (w->presence_delay_max > s->total.presence_delay_max) s->total.presence_delay_max = w->presence_delay_max;
    memset(w, 0, sizeof *w);
    s->n_lat = 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- main ---------------------------------------------------------------------------------- */

static int usage(void)
{
    fprintf(stderr, "usage: parley-sim [--users N] [--supernodes M] [--seed S] [--duration S]\n"
                    "                  [--scenario steady|storm|cascade] [--event-at S] [--lookups-per-s R]\n"
                    "                  [--watchers W] [--loss PCT] [--churn] [--weibull-shape K]\n"
                    "                  [--weibull-scale S] [--secure] [--json] [--trace]\n");
    return 2;
}

static bool parse(options *o, int argc, char **argv)
{
    *o = (options){.users = 10000, .supernodes = 100, .seed = 1, .duration = 120, .event_at = 60,
                   .scenario = "steady", .lookups_per_s = 200, .watchers = 200, .weibull_k = 0.6,
                   .weibull_scale = 1800};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--churn") == 0) o->churn = true;
        else if (strcmp(a, "--secure") == 0) o->secure = true;
        else if (strcmp(a, "--json") == 0) o->json = true;
        else if (strcmp(a, "--trace") == 0) o->trace = true;
        else if (!v) return false;
        else if (strcmp(a, "--users") == 0) o->users = (uint32_t)strtoul(v, NULL, 10), i++;
        else if (strcmp(a, "--supernodes") == 0) o->supernodes = (uint32_t)strtoul(v, NULL, 10), i++;
        else if (strcmp(a, "--seed") == 0) o->seed = strtoull(v, NULL, 10), i++;
        else if (strcmp(a, "--duration") == 0) o->duration = atof(v), i++;
        else if (strcmp(a, "--event-at") == 0) o->event_at = atof(v), i++;
        else if (strcmp(a, "--scenario") == 0) o->scenario = v, i++;
        else if (strcmp(a, "--lookups-per-s") == 0) o->lookups_per_s = atof(v), i++;
        else if (strcmp(a, "--watchers") == 0) o->watchers = (uint32_t)strtoul(v, NULL, 10), i++;
        else if (strcmp(a, "--loss") == 0) o->loss = atof(v), i++;
        else if (strcmp(a, "--weibull-shape") == 0) o->weibull_k = atof(v), i++;
        else if (strcmp(a, "--weibull-scale") == 0) o->weibull_scale = atof(v), i++;
        else return false;
    }
    if (strcmp(o->scenario, "steady") && strcmp(o->scenario, "storm") && strcmp(o->scenario, "cascade")) return false;
    return o->users >= 2 && o->supernodes >= 3 && o->users < (1u << 22) && o->supernodes < (1u << 16) &&
           o->duration > 0 && o->loss >= 0 && o->loss < 100 && o->weibull_k > 0 && o->weibull_scale > 0;
}

int main(int argc, char **argv)
{
    static sim s;
    if (!parse(&s.o, argc, argv)) return usage();
    if (!pl_init()) return 1;
    double wall0 = (double)clock() / CLOCKS_PER_SEC;
    pl_rng_seeded_init(&s.rng, s.o.seed ^ 0x5eed);
    pl_simworld_config wc = {.seed = s.o.seed, .start = T0, .secure = s.o.secure, .link = {20 * PL_MSEC, 5 * PL_MSEC, 0},
                             .on_event = on_event, .ctx = &s, .share_ring = true};
    s.w = pl_simworld_new(&wc);
    s.net = pl_simworld_net(s.w);
    pl_simnet_set_link_model(s.net, regions, &s);
    s.sigs = pl_sigcache_new(20);
    s.lat_us = calloc(MAX_LATENCIES, sizeof *s.lat_us);
    s.all_lat = calloc(20 * MAX_LATENCIES, sizeof *s.all_lat);
    s.sn = calloc(s.o.supernodes, sizeof *s.sn);
    s.sn_bytes = calloc(s.o.supernodes, sizeof *s.sn_bytes);
    s.users = calloc(s.o.users, sizeof *s.users);
    if (!s.w || !s.sigs || !s.lat_us || !s.all_lat || !s.sn || !s.sn_bytes || !s.users) {
        fprintf(stderr, "parley-sim: out of memory\n");
        return 1;
    }
    /* Supernodes: gossip membership, each knowing the others from the
     * start (a host cache), signatures memoised across the process. */
    pl_members_config mc = {.verify = pl_sigcache_verify, .verify_ctx = s.sigs,
                            .max_members = s.o.supernodes + 16};
    uint32_t per_sn = s.o.users / s.o.supernodes + 1;
    for (uint32_t i = 0; i < s.o.supernodes; i++) {
        char name[32];
        snprintf(name, sizeof name, "super%05u", i);
        pl_stack_config c = {.role = PL_ROLE_SUPERNODE, .membership = true, .members = &mc, .no_mailbox = true,
                             .max_clients = 8 * per_sn + 64, .max_peers = 8 * per_sn + 4096};
        pl_addr a = addr_of(i, 7400);
        s.sn[i] = pl_simworld_add_host(s.w, name, &a, &c);
        pl_simhost_start(s.sn[i]);
    }
    for (uint32_t i = 0; i < s.o.supernodes; i++) {
        pl_super *sp = pl_stack_super(pl_simhost_stack(s.sn[i]));
        for (uint32_t j = 0; j < s.o.supernodes; j++)
            if (i != j) pl_super_add_known(sp, pl_simhost_peer(s.sn[j])->pk, &pl_simhost_peer(s.sn[j])->addr, T0);
    }
    double setup_sn = (double)clock() / CLOCKS_PER_SEC - wall0;
    /* Users: each bootstraps from three supernodes, and arrives within the
     * first 30 seconds. */
    for (uint32_t i = 0; i < s.o.users; i++) {
        char name[32];
        snprintf(name, sizeof name, "user%07u", i);
        pl_ovl_peer boot[3];
        for (int k = 0; k < 3; k++) boot[k] = *pl_simhost_peer(s.sn[pl_rng_below(&s.rng.rng, s.o.supernodes)]);
        pl_stack_config c = {.role = PL_ROLE_NODE, .bootstrap = boot, .n_bootstrap = 3, .no_mailbox = true,
                             .max_peers = 8};
        pl_addr a = addr_of(0x10000 + i, 5000);
        user *u = &s.users[i];
        u->host = pl_simworld_add_host(s.w, name, &a, &c);
        u->index = i;
        u->sim = &s;
        u->watching = -1;
        pl_simhost_set_user(u->host, u);
    }
    double setup_users = (double)clock() / CLOCKS_PER_SEC - wall0 - setup_sn;
    if (!s.o.json)
        printf("parley-sim: %u users, %u supernodes, seed %llu, scenario %s; set-up %.1f s (supernodes) + %.1f s "
               "(users' keys and certificates)\n",
               s.o.users, s.o.supernodes, (unsigned long long)s.o.seed, s.o.scenario, setup_sn, setup_users);
    pl_time arrive = 30 * PL_SEC;
    for (uint32_t i = 0; i < s.o.users; i++) {
        pl_simnet_run_until(s.net, T0 + arrive * i / s.o.users);
        pl_simhost_start(s.users[i].host);
        if (s.o.churn) schedule_churn(&s, &s.users[i], T0 + arrive);
    }
    /* Watchers subscribe to their partner once everyone is there. */
    pl_simnet_run_until(s.net, T0 + arrive + 5 * PL_SEC);
    for (uint32_t i = 0; i < s.o.watchers && 2 * i + 1 < s.o.users; i++) {
        user *w = &s.users[2 * i];
        if (!attached(w)) continue;
        w->watching = (int32_t)(2 * i + 1);
        pl_dirc_subscribe(pl_node_directory(node_of(w)), pl_simhost_name(s.users[2 * i + 1].host),
                          pl_simworld_now(s.w));
        pl_simhost_poke(w->host);
    }
    /* The run: look-ups every 100 ms, presence changes every 10 s, the
     * event when it is due, a report every window. */
    s.worst_after_event = 100.0;
    pl_time end = T0 + (pl_time)(s.o.duration * PL_SEC), next_report = pl_simworld_now(s.w) + WINDOW;
    pl_time event = T0 + (pl_time)(s.o.event_at * PL_SEC), next_toggle = pl_simworld_now(s.w) + 5 * PL_SEC;
    uint32_t per_tick = (uint32_t)(s.o.lookups_per_s / 10 + 0.5);
    uint32_t members0;
    members_bytes(&s, &members0);
    for (pl_time t = pl_simworld_now(s.w); t < end; t += 100 * PL_MSEC) {
        pl_simnet_run_until(s.net, t);
        if (!s.event_time && t >= event && strcmp(s.o.scenario, "steady") != 0) {
            s.event_time = t;
            if (strcmp(s.o.scenario, "storm") == 0) {
                uint32_t n = 0;
                for (uint32_t i = 0; i < s.o.users; i++)
                    if (pl_rng_below(&s.rng.rng, 2)) {
                        pl_simhost_restart(s.users[i].host);
                        n++;
                    }
                if (!s.o.json) printf("t=%6.0fs  LOGIN STORM: %u users restart at once\n", now_s(&s), n);
            } else {
                /* Exactly 30%, chosen by a partial shuffle of the supernodes. */
                uint32_t n = (s.o.supernodes * 3 + 5) / 10;
                uint32_t *order = malloc(s.o.supernodes * sizeof *order);
                if (!order) return 1;
                for (uint32_t i = 0; i < s.o.supernodes; i++) order[i] = i;
                for (uint32_t i = 0; i < n; i++) {
                    uint32_t j = i + (uint32_t)pl_rng_below(&s.rng.rng, s.o.supernodes - i);
                    uint32_t tmp = order[i];
                    order[i] = order[j];
                    order[j] = tmp;
                    pl_simhost_crash(s.sn[order[i]]);
                }
                free(order);
                s.crashed = n;
                if (!s.o.json) printf("t=%6.0fs  CASCADE: %u supernodes crash at once\n", now_s(&s), n);
            }
        }
        ask_lookups(&s, per_tick);
        if (t >= next_toggle) {
            toggle_presence(&s);
            next_toggle = t + 10 * PL_SEC;
        }
        if (t >= next_report) {
            report(&s, WINDOW / 1e6);
            next_report = t + WINDOW;
        }
    }
    report(&s, WINDOW / 1e6);
    /* The summary. */
    uint64_t done = s.total.found + s.total.failed;
    qsort(s.all_lat, s.n_all, sizeof *s.all_lat, cmp_double);
    double p50 = s.n_all ? s.all_lat[s.n_all / 2] : 0, p90 = s.n_all ? s.all_lat[(size_t)(s.n_all * 0.9)] : 0;
    double p99 = s.n_all ? s.all_lat[(size_t)(s.n_all * 0.99)] : 0;
    load cl = sn_load(&s, 0), rec = sn_load(&s, 1), lk = sn_load(&s, 2);
    uint32_t alive_sn;
    members_bytes(&s, &alive_sn);
    double cpu = (double)clock() / CLOCKS_PER_SEC - wall0;
    double recovery = s.recovered && s.event_time ? (s.recovered_at - s.event_time) / 1e6 : -1;
    if (!s.o.json) {
        printf("\nsummary (%u users, %u supernodes, %.0f virtual s, %.0f s of CPU)\n", s.o.users, s.o.supernodes,
               s.o.duration, cpu);
        printf("  look-ups: %llu done, %.3f%% found; latency p50 %.0f ms, p90 %.0f ms, p99 %.0f ms\n",
               (unsigned long long)done, done ? 100.0 * s.total.found / done : 0, p50, p90, p99);
        printf("  presence: %llu changes heard, mean delay %.0f ms, worst %.0f ms\n",
               (unsigned long long)s.total.presence_heard,
               s.total.presence_heard ? s.total.presence_delay_sum / s.total.presence_heard : 0,
               s.total.presence_delay_max);
        printf("  per supernode (%u alive): clients %.0f/%.0f/%.0f, records %.0f/%.0f/%.0f, look-ups served "
               "%.0f/%.0f/%.0f (min/mean/max); busiest ever %u clients, capacity %u\n",
               alive_sn, cl.min, cl.mean, cl.max, rec.min, rec.mean, rec.max, lk.min, lk.mean, lk.max,
               s.max_clients_per_sn, 8 * per_sn + 64);
        printf("  membership traffic per supernode: %.2f kbit/s sent on average over the run (IP, UDP and session "
               "overhead included)\n",
               s.membership_windows ? s.membership_kbit_sum / s.membership_windows : 0);
        if (s.event_time)
            printf("  after the %s: worst window %.2f%% found; back to >= 99%% and staying there %.0f s after it%s\n",
                   s.o.scenario, s.worst_after_event, recovery, recovery >= 0 ? "" : " (never)");
        if (s.crashed)
            printf("  supernodes: %u crashed in the cascade, %u of the other %u still up at the end\n", s.crashed,
                   alive_sn, s.o.supernodes - s.crashed);
    } else {
        printf("{\"summary\":true,\"users\":%u,\"supernodes\":%u,\"lookups\":%llu,\"found_pct\":%.4f,\"p50_ms\":%.1f,"
               "\"p90_ms\":%.1f,\"p99_ms\":%.1f,\"presence_mean_ms\":%.1f,\"clients_per_sn_max\":%.0f,"
               "\"records_per_sn_max\":%.0f,\"busiest_ever\":%u,\"capacity\":%u,\"supernodes_alive\":%u,\"supernodes_crashed\":%u,"
               "\"membership_kbit_per_sn\":%.3f,\"recovery_s\":%.1f,\"worst_window_pct\":%.2f,\"cpu_s\":%.0f}\n",
               s.o.users, s.o.supernodes, (unsigned long long)done, done ? 100.0 * s.total.found / done : 0, p50, p90,
               p99, s.total.presence_heard ? s.total.presence_delay_sum / s.total.presence_heard : 0, cl.max, rec.max,
               s.max_clients_per_sn, 8 * per_sn + 64, alive_sn, s.crashed,
               s.membership_windows ? s.membership_kbit_sum / s.membership_windows : 0, recovery, s.worst_after_event, cpu);
    }
    pl_simworld_free(s.w);
    pl_sigcache_free(s.sigs);
    free(s.lat_us);
    free(s.all_lat);
    free(s.sn);
    free(s.sn_bytes);
    free(s.users);
    return 0;
}
