/*
 * bench_supernode.c - what one supernode holds on one core.
 *
 * Idle clients: N nodes (200,000 by default; BENCH_SN_CLIENTS to change)
 * attach to one supernode over real secure sessions, on the simulated
 * network (so the clients cost no sockets here), each proving its key and
 * publishing its record. Then ten virtual minutes of idling: keepalives,
 * rekeys. Printed:
 *   - the supernode's memory per client (counted by its own allocator);
 *   - its CPU per second of idling as a share of one core, measured as the
 *     thread CPU time its stack takes, plus the socket cost of the same
 *     datagrams at the rate bench_loop measures for loopback UDP;
 *   - so, how many idle clients one core holds.
 * Look-ups: a second supernode holds 10,000 records; clients ask for them
 * through it (a local answer) and through another supernode (a proxied
 * FETCH). Printed: look-ups per second one supernode core serves.
 *
 * Figures, not pass/fail; targets are printed beside them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "record.h"
#include "simworld.h"

#define T0 ((pl_time)1800000000 * PL_SEC)

/* A counting allocator for the supernode alone. */
typedef struct counting {
    size_t live, peak;
} counting;

static void *count_calloc(void *ctx, size_t n, size_t size)
{
    counting *c = ctx;
    size_t *p = calloc(1, n * size + 16);
    if (!p) return NULL;
    p[0] = n * size;
    c->live += n * size;
    if (c->live > c->peak) c->peak = c->live;
    return (uint8_t *)p + 16;
}

static void count_free(void *ctx, void *ptr)
{
    counting *c = ctx;
    if (!ptr) return;
    size_t *p = (size_t *)((uint8_t *)ptr - 16);
    c->live -= p[0];
    free(p);
}

static double wall(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
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

typedef struct tally {
    uint32_t attached, published;
    uint32_t lookups_done, lookups_found;
} tally;

static void on_event(void *ctx, pl_simhost *h, const pl_stack_event *ev)
{
    tally *t = ctx;
    (void)h;
    if (ev->type != PL_STACK_EV_NODE) return;
    if (ev->node->type == PL_NODE_EV_ATTACHED) t->attached++;
    if (ev->node->type == PL_NODE_EV_DIRECTORY) {
        const pl_dirc_event *d = ev->node->dir;
        if (d->type == PL_DIRC_EV_PUBLISHED && d->status == PL_DIR_OK) t->published++;
        if (d->type == PL_DIRC_EV_LOOKUP) {
            t->lookups_done++;
            if (d->status == PL_DIR_OK) t->lookups_found++;
        }
    }
}

/* Loopback UDP: datagrams per second one core receives (bench_loop's
 * figure on this machine class); a sent datagram costs about as much. */
#define UDP_DATAGRAMS_PER_CORE_SECOND 200000.0

static void idle_clients(uint32_t n)
{
    tally t = {0};
    pl_simworld_config wc = {.seed = 11, .start = T0, .secure = true, .link = {5 * PL_MSEC, 1 * PL_MSEC, 0},
                             .on_event = on_event, .ctx = &t};
    pl_simworld *w = pl_simworld_new(&wc);
    counting mem_count = {0, 0};
    pl_mem counted = {&mem_count, count_calloc, count_free};
    pl_stack_config sc = {.role = PL_ROLE_SUPERNODE, .max_clients = n + 100, .max_peers = n + 4096,
                          .mem = &counted};
    pl_addr sa = addr_of(1, 7400);
    pl_simhost *sn = pl_simworld_add_host(w, "supernode", &sa, &sc);
    pl_simhost_start(sn);
    size_t base = mem_count.live;
    pl_ovl_peer boot = *pl_simhost_peer(sn);
    printf("supernode, %u idle clients (secure sessions, simulated network)\n", n);
    double t0 = wall();
    pl_simhost **clients = calloc(n, sizeof *clients);
    for (uint32_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "user%07u", i);
        pl_stack_config c = {.role = PL_ROLE_NODE, .bootstrap = &boot, .n_bootstrap = 1, .max_peers = 4};
        pl_addr a = addr_of(0x100000 + i, 5000);
        clients[i] = pl_simworld_add_host(w, name, &a, &c);
    }
    double made = wall();
    /* Arrivals spread over time, as a real population comes and goes; 800
     * a second stays under the supernode's load threshold for cookies. */
    pl_simnet *net = pl_simworld_net(w);
    pl_time spread = (pl_time)n * PL_SEC / 800;
    pl_simhost_account_cpu(sn, true);
    for (uint32_t i = 0; i < n; i++) {
        pl_simnet_run_until(net, T0 + spread * i / n);
        pl_simhost_start(clients[i]);
    }
    pl_simnet_run_until(net, T0 + spread + 10 * PL_SEC);
    double attach_cpu = pl_simhost_cpu_ns(sn) / 1e9;
    pl_super_stats ss = pl_super_get_stats(pl_stack_super(pl_simhost_stack(sn)));
    size_t per_client = ss.clients ? (mem_count.live - base) / ss.clients : 0;
    printf("  identities and certificates for %u users: %.1f s\n", n, made - t0);
    printf("  attached %u, published %u (supernode CPU for attaching all: %.1f s, %.0f us each)\n", ss.clients,
           t.published, attach_cpu, ss.clients ? attach_cpu * 1e6 / ss.clients : 0);
    printf("  supernode memory: %.1f MB for %u clients = %zu bytes per client   target < 1 GiB for 200k\n",
           (mem_count.live - base) / 1e6, ss.clients, per_client);

    /* Idle: ten virtual minutes. */
    pl_sim_stats before = pl_simnet_stats(net);
    uint64_t cpu0 = pl_simhost_cpu_ns(sn);
    pl_time idle_from = pl_simworld_now(w), idle = 600 * PL_SEC;
    pl_simnet_run_until(net, idle_from + idle);
    double cpu = (pl_simhost_cpu_ns(sn) - cpu0) / 1e9;
    pl_sim_stats after = pl_simnet_stats(net);
    /* Every datagram in this world goes to or from the supernode. */
    double datagrams = (double)(after.sent - before.sent);
    double per_s = datagrams / (idle / 1e6);
    double core_share = cpu / (idle / 1e6) + per_s / UDP_DATAGRAMS_PER_CORE_SECOND;
    pl_super_stats s2 = pl_super_get_stats(pl_stack_super(pl_simhost_stack(sn)));
    printf("  idle: %.0f datagrams/s through the supernode; protocol CPU %.2f%% of a core, sockets ~%.2f%%\n", per_s,
           100.0 * cpu / (idle / 1e6), 100.0 * per_s / UDP_DATAGRAMS_PER_CORE_SECOND);
    printf("  idle clients one core holds at this rate: %.0f   target >= 200000   (clients still attached: %u, lost: "
           "%llu)\n",
           core_share > 0 ? s2.clients / core_share : 0, s2.clients, (unsigned long long)s2.lost);
    printf("  wall time %.1f s\n", wall() - t0);
    free(clients);
    pl_simworld_free(w);
}

static void lookups(void)
{
    tally t = {0};
    pl_simworld_config wc = {.seed = 12, .start = T0, .secure = true, .link = {5 * PL_MSEC, 1 * PL_MSEC, 0},
                             .on_event = on_event, .ctx = &t};
    pl_simworld *w = pl_simworld_new(&wc);
    pl_stack_config sc = {.role = PL_ROLE_SUPERNODE, .max_peers = 4096, .replicas = 1};
    pl_addr a1 = addr_of(1, 7400), a2 = addr_of(2, 7400);
    pl_simhost *sn1 = pl_simworld_add_host(w, "supernode1", &a1, &sc);
    pl_simhost *sn2 = pl_simworld_add_host(w, "supernode2", &a2, &sc);
    pl_simhost_start(sn1);
    pl_simhost_start(sn2);
    pl_simworld_introduce_supernodes(w);
    pl_simnet *net = pl_simworld_net(w);
    /* 2,000 users publish (R = 1: each record on one of the two). */
    enum { USERS = 2000, ASKERS = 200, PER_ASKER = 100 };
    pl_ovl_peer b1 = *pl_simhost_peer(sn1), b2 = *pl_simhost_peer(sn2);
    pl_simhost *users[USERS];
    for (int i = 0; i < USERS; i++) {
        char name[32];
        snprintf(name, sizeof name, "member%05d", i);
        pl_stack_config c = {.role = PL_ROLE_NODE, .bootstrap = i % 2 ? &b2 : &b1, .n_bootstrap = 1, .max_peers = 4};
        pl_addr a = addr_of(0x100000 + (uint32_t)i, 5000);
        users[i] = pl_simworld_add_host(w, name, &a, &c);
        pl_simhost_start(users[i]);
    }
    pl_simnet_run_until(net, T0 + 20 * PL_SEC);
    /* Askers attached to supernode 1 look users up: half the names are
     * held by supernode 1 (answered locally), half by supernode 2 (proxied). */
    uint64_t cpu0 = pl_simhost_cpu_ns(sn1);
    pl_simhost_account_cpu(sn1, true);
    for (int i = 0; i < ASKERS; i++) {
        pl_dirc *dc = pl_node_directory(pl_stack_node(pl_simhost_stack(users[2 * i])));
        for (int k = 0; k < PER_ASKER; k++) {
            char name[32];
            snprintf(name, sizeof name, "member%05d", (i * 7919 + k * 104729) % USERS);
            if (pl_dirc_lookup(dc, name, pl_simworld_now(w), NULL) != PL_DIRC_OK) break;
            if (k % 32 == 31) pl_simnet_run_until(net, pl_simworld_now(w) + 200 * PL_MSEC);
        }
    }
    pl_simnet_run_until(net, pl_simworld_now(w) + 10 * PL_SEC);
    double cpu = (pl_simhost_cpu_ns(sn1) - cpu0) / 1e9;
    pl_dir_stats ds = pl_dir_get_stats(pl_super_directory(pl_stack_super(pl_simhost_stack(sn1))));
    printf("look-ups through one supernode (secure sessions; half answered locally, half proxied to a replica)\n");
    printf("  %u look-ups done, %u found; supernode 1 served %llu look-ups and %llu fetches for others\n",
           t.lookups_done, t.lookups_found, (unsigned long long)ds.lookups, (unsigned long long)ds.fetches_served);
    double ops = (double)(ds.lookups + ds.fetches_served);
    printf("  protocol CPU %.1f us per look-up or fetch: %.0f per second on one core; with sockets (~2 datagrams "
           "each) %.0f per second\n",
           cpu * 1e6 / ops, ops / cpu, ops / (cpu + ops * 2 / UDP_DATAGRAMS_PER_CORE_SECOND));
    pl_simworld_free(w);
}

int main(void)
{
    if (!pl_init()) return 1;
    const char *env = getenv("BENCH_SN_CLIENTS");
    uint32_t n = env ? (uint32_t)strtoul(env, NULL, 10) : 200000;
    lookups();
    idle_clients(n ? n : 200000);
    return 0;
}
