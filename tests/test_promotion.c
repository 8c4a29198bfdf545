/* test_promotion.c - qualification, promotion and demotion, whole stacks on
 * the simulator with real sessions: a full supernode asks a qualified
 * client for help and sheds clients to it; reachability is probed from
 * another supernode, never taken on trust; an idle promoted supernode steps
 * down. */
#include <stdlib.h>

#include "simworld.h"
#include "test.h"

#define T0 (1800000000ull * PL_SEC)
#define N_NODES 30

typedef struct tally {
    int promoted, demoted;
    pl_simhost *promoted_hosts[N_NODES];
} tally;

static void on_event(void *ctx, pl_simhost *h, const pl_stack_event *ev)
{
    tally *t = ctx;
    if (ev->type == PL_STACK_EV_PROMOTED && t->promoted < N_NODES) t->promoted_hosts[t->promoted++] = h;
    if (ev->type == PL_STACK_EV_DEMOTED) t->demoted++;
}

static pl_simworld *world(tally *t, bool secure)
{
    pl_simworld_config cfg = {.seed = 21, .start = T0, .secure = secure, .link = {10 * PL_MSEC, 2 * PL_MSEC, 0},
                              .on_event = on_event, .ctx = t};
    return pl_simworld_new(&cfg);
}

typedef struct lab {
    pl_simworld *w;
    pl_simhost *sn[2];
    pl_simhost *nodes[N_NODES];
} lab;

static void lab_up(lab *l, tally *t, bool secure, bool candidates)
{
    l->w = world(t, secure);
    CHECK(l->w);
    pl_ovl_peer boot[2];
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(name, sizeof name, "super%d", i + 1);
        /* Small supernodes (10 clients) with a low bar for candidates. */
        pl_stack_config c = {.role = PL_ROLE_SUPERNODE, .membership = true, .max_clients = 10, .max_peers = 256,
                             .min_uptime_s = 60, .min_kbps = 500, .min_memory_mb = 128,
                             .bootstrap = boot, .n_bootstrap = i ? 1 : 0};
        pl_addr a = pl_simworld_addr(100, i + 1, 7400);
        l->sn[i] = pl_simworld_add_host(l->w, name, &a, &c);
        CHECK(l->sn[i]);
        boot[i] = *pl_simhost_peer(l->sn[i]);
        pl_simhost_start(l->sn[i]);
    }
    pl_simnet_run_until(pl_simworld_net(l->w), T0 + 3 * PL_SEC);
    for (int i = 0; i < N_NODES; i++) {
        char name[32];
        snprintf(name, sizeof name, "user%02d", i);
        pl_stack_config c = {.role = PL_ROLE_NODE, .bootstrap = boot, .n_bootstrap = 2, .max_peers = 64,
                             .promote = candidates ? PL_PROMOTE_AUTO : PL_PROMOTE_NEVER,
                             .attach = {.uptime_s = 86400, .up_kbps = 20000, .down_kbps = 20000, .memory_mb = 4096},
                             /* What a promoted node's supernode core uses. */
                             .max_clients = 10, .min_uptime_s = 60, .min_kbps = 500, .min_memory_mb = 128};
        pl_addr a = pl_simworld_addr(1, i + 1, 5000);
        l->nodes[i] = pl_simworld_add_host(l->w, name, &a, &c);
        CHECK(l->nodes[i]);
    }
}

static void start_nodes(lab *l, int from, int to, pl_time spacing)
{
    for (int i = from; i < to; i++) {
        pl_simhost_start(l->nodes[i]);
        pl_simnet_run_until(pl_simworld_net(l->w), pl_simworld_now(l->w) + spacing);
    }
}

static pl_super *super_of(pl_simhost *h)
{
    pl_stack *st = pl_simhost_stack(h);
    return st ? pl_stack_super(st) : NULL;
}

static void a_full_supernode_promotes_a_qualified_client_and_sheds_to_it(void)
{
    tally t = {0};
    static lab l;
    lab_up(&l, &t, true, true);
    /* Thirty users arrive, a second apart; two supernodes of ten cannot
     * hold them. */
    start_nodes(&l, 0, N_NODES, PL_SEC);
    pl_simnet_run_until(pl_simworld_net(l.w), pl_simworld_now(l.w) + 120 * PL_SEC);
    printf("     %d nodes promoted themselves to supernodes when asked\n", t.promoted);
    CHECK(t.promoted >= 1);
    /* Everyone is served, and no supernode is over its limit. */
    int attached = 0;
    for (int i = 0; i < N_NODES; i++)
        attached += pl_node_get_status(pl_stack_node(pl_simhost_stack(l.nodes[i]))).state == PL_NODE_ATTACHED;
    CHECK_EQ(attached, N_NODES);
    uint32_t serving = 0;
    for (int i = 0; i < 2; i++) {
        pl_super_stats s = pl_super_get_stats(super_of(l.sn[i]));
        CHECK(s.clients <= 10);
        CHECK(s.qualified >= 1);
        CHECK(s.probes_asked >= 1);
        serving += s.clients;
    }
    for (int i = 0; i < t.promoted; i++) {
        pl_super *ps = super_of(t.promoted_hosts[i]);
        CHECK(ps);
        CHECK(pl_super_get_stats(ps).clients <= 10);
        serving += pl_super_get_stats(ps).clients;
    }
    CHECK_EQ(serving, N_NODES);
    /* The new supernodes joined the membership: the others know them. */
    pl_members *m = pl_super_members(super_of(l.sn[0]));
    CHECK_EQ(pl_members_alive_count(m), (uint32_t)(2 + t.promoted));
    pl_simworld_free(l.w);
}

/* In external-transport mode the probe is a message like any other, so a
 * tamper hook can play the NAT that filters it. */
typedef struct probe_filter {
    lab *l;
    int blocked_below; /* nodes with a lower index are behind filtering NATs */
    int dropped;
} probe_filter;

static bool filter_probes(void *ctx, pl_simhost *from, const uint8_t to_pk[32], uint8_t *msg, size_t *len)
{
    probe_filter *f = ctx;
    (void)from;
    (void)to_pk;
    /* Every probe is dropped: all the nodes sit behind filtering NATs. */
    if (*len != PL_OVL_PROBE_SIZE || msg[0] != PL_OVL_PROBE_BYTE) return true;
    if (f->blocked_below > 0) {
        f->dropped++;
        return false;
    }
    return true;
}

static void unreachable_nodes_are_never_promoted(void)
{
    tally t = {0};
    static lab l;
    lab_up(&l, &t, false, true);
    probe_filter f = {&l, N_NODES, 0};
    pl_simworld_set_tamper(l.w, filter_probes, &f);
    start_nodes(&l, 0, N_NODES, PL_SEC);
    pl_simnet_run_until(pl_simworld_net(l.w), pl_simworld_now(l.w) + 200 * PL_SEC);
    /* Every probe was filtered: nobody qualified, nobody was promoted, and
     * the full supernodes refused the users they could not hold. */
    CHECK(f.dropped >= 1);
    CHECK_EQ(t.promoted, 0);
    for (int i = 0; i < 2; i++) {
        pl_super_stats s = pl_super_get_stats(super_of(l.sn[i]));
        CHECK_EQ(s.qualified, 0);
        CHECK_EQ(s.promotions_asked, 0);
        CHECK(s.clients <= 10);
        CHECK(s.refused_full >= 1);
    }
    pl_simworld_set_tamper(l.w, NULL, NULL);
    pl_simworld_free(l.w);
}

static void nodes_set_to_never_are_not_asked(void)
{
    tally t = {0};
    static lab l;
    lab_up(&l, &t, true, false);
    start_nodes(&l, 0, N_NODES, PL_SEC);
    pl_simnet_run_until(pl_simworld_net(l.w), pl_simworld_now(l.w) + 120 * PL_SEC);
    CHECK_EQ(t.promoted, 0);
    for (int i = 0; i < 2; i++) CHECK_EQ(pl_super_get_stats(super_of(l.sn[i])).probes_asked, 0);
    pl_simworld_free(l.w);
}

static void an_idle_promoted_supernode_steps_down(void)
{
    tally t = {0};
    static lab l;
    lab_up(&l, &t, true, true);
    start_nodes(&l, 0, N_NODES, PL_SEC);
    pl_simnet_run_until(pl_simworld_net(l.w), pl_simworld_now(l.w) + 120 * PL_SEC);
    CHECK(t.promoted >= 1);
    /* The crowd leaves: everyone but the promoted ones goes away. */
    for (int i = 0; i < N_NODES; i++) {
        bool promoted = false;
        for (int k = 0; k < t.promoted; k++) promoted |= t.promoted_hosts[k] == l.nodes[i];
        if (!promoted) pl_simhost_crash(l.nodes[i]);
    }
    pl_time left = pl_simworld_now(l.w);
    pl_simnet_run_until(pl_simworld_net(l.w), left + PL_STACK_DEMOTE_IDLE + 5 * 60 * PL_SEC);
    CHECK_EQ(t.demoted, t.promoted);
    for (int k = 0; k < t.promoted; k++) CHECK(super_of(t.promoted_hosts[k]) == NULL);
    /* The original supernodes saw them leave. */
    pl_members *m = pl_super_members(super_of(l.sn[0]));
    CHECK_EQ(pl_members_alive_count(m), 2);
    pl_simworld_free(l.w);
}

int main(void)
{
    RUN(a_full_supernode_promotes_a_qualified_client_and_sheds_to_it);
    RUN(unreachable_nodes_are_never_promoted);
    RUN(nodes_set_to_never_are_not_asked);
    RUN(an_idle_promoted_supernode_steps_down);
    return pl_test_summary();
}
