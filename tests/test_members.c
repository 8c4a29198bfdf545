/*
 * test_members.c - supernode membership, stated as rules.
 *
 * Every test drives real pl_members instances over the deterministic
 * simulator (src/sim/members_sim.h): datagrams carry the messages, the
 * sender's key stands in for the authenticated session, and virtual time
 * runs as fast as the CPU allows. Unless a test says otherwise: protocol
 * period 1 s, links of 10 ms plus up to 5 ms of jitter, no loss.
 */
#include <sodium.h>
#include <stdlib.h>

#include "members.h"
#include "members_sim.h"
#include "test.h"
#include "wire.h"

static pl_msim_config base_config(uint32_t nodes, uint64_t seed)
{
    pl_msim_config c;
    memset(&c, 0, sizeof c);
    c.nodes = nodes;
    c.seed = seed;
    c.link.latency = 10 * PL_MSEC;
    c.link.jitter = 5 * PL_MSEC;
    return c;
}

/* Runs until the cluster has converged (polling every 100 ms) or the
 * deadline passes; returns the time it took, or PL_TIME_NEVER. */
static pl_time run_until_converged(pl_msim *s, pl_time limit, bool suspect_ok)
{
    pl_time t0 = pl_msim_now(s);
    for (pl_time t = t0; t <= t0 + limit; t += 100 * PL_MSEC) {
        pl_msim_run_until(s, t);
        if (pl_msim_converged(s, suspect_ok)) return t - t0;
    }
    return PL_TIME_NEVER;
}

/* Starts nodes [from, to) and has each join through `seed`. */
static void start_and_join(pl_msim *s, uint32_t from, uint32_t to, uint32_t seed)
{
    for (uint32_t i = from; i < to; i++) {
        if (!pl_msim_running(s, i)) CHECK(pl_msim_start(s, i, 0));
        if (i == seed) continue;
        CHECK_EQ(pl_msim_add_known(s, i, seed), PL_MEMBERS_OK);
        CHECK_EQ(pl_msim_join(s, i), PL_MEMBERS_OK);
    }
}

/* Counts the events of a run, and remembers DOWN events per node seen. */
typedef struct tally {
    uint32_t up, down, suspect, cleared, address, synced;
    uint32_t down_of[64]; /* DOWN events about node j (j < 64), from anyone */
    uint32_t suspect_of[64];
    const pl_msim *s;
} tally;

static void count_event(void *ctx, uint32_t node, const pl_members_event *ev)
{
    tally *t = ctx;
    (void)node;
    uint32_t j = pl_msim_node_at(t->s, &ev->info->addr);
    switch (ev->type) {
    case PL_MEMBERS_EV_UP: t->up++; break;
    case PL_MEMBERS_EV_DOWN:
        t->down++;
        if (j < 64) t->down_of[j]++;
        break;
    case PL_MEMBERS_EV_SUSPECT:
        t->suspect++;
        if (j < 64) t->suspect_of[j]++;
        break;
    case PL_MEMBERS_EV_CLEARED: t->cleared++; break;
    case PL_MEMBERS_EV_ADDRESS: t->address++; break;
    case PL_MEMBERS_EV_SYNCED: t->synced++; break;
    }
}

/* A cluster of n running, converged members that joined through node 0. */
static pl_msim *converged_cluster(uint32_t nodes, uint32_t running, uint64_t seed, tally *t)
{
    pl_msim_config c = base_config(nodes, seed);
    pl_msim *s = pl_msim_new(&c);
    CHECK(s);
    if (t) {
        memset(t, 0, sizeof *t);
        t->s = s;
        pl_msim_set_event_hook(s, count_event, t);
    }
    CHECK(pl_msim_start(s, 0, 0));
    start_and_join(s, 1, running, 0);
    CHECK(run_until_converged(s, 30 * PL_SEC, false) != PL_TIME_NEVER);
    return s;
}

/* One update in a gossip message (docs/membership.md, "Updates"). */
static size_t gossip_alive(uint8_t *buf, size_t cap, const uint8_t pk[32], uint32_t inc, const pl_addr *addr,
                           const uint8_t sig[64])
{
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_MEMBERS_MSG_GOSSIP);
    pl_write_u8(&w, 1);
    pl_write_u8(&w, PL_MEMBER_ALIVE);
    pl_write_bytes(&w, pk, 32);
    pl_write_u32(&w, inc);
    pl_write_addr(&w, addr);
    pl_write_bytes(&w, sig, 64);
    return w.err ? 0 : w.off;
}

static size_t gossip_accusation(uint8_t *buf, size_t cap, uint8_t kind, const uint8_t pk[32], uint32_t inc,
                                const uint8_t accuser[32])
{
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_MEMBERS_MSG_GOSSIP);
    pl_write_u8(&w, 1);
    pl_write_u8(&w, kind);
    pl_write_bytes(&w, pk, 32);
    pl_write_u32(&w, inc);
    if (kind == PL_MEMBER_SUSPECT) pl_write_bytes(&w, accuser, 32);
    return w.err ? 0 : w.off;
}

static void sign_claim(uint8_t sig[64], const pl_identity *signer, pl_member_state st, const uint8_t pk[32],
                       const pl_addr *addr, uint32_t inc)
{
    uint8_t msg[PL_MEMBERS_CLAIM_MAX];
    size_t len = pl_members_claim_bytes(msg, st, pk, addr, inc);
    CHECK(len > 0);
    crypto_sign_detached(sig, NULL, msg, len, signer->sign_sk);
}

static pl_member_info view(pl_msim *s, uint32_t i, uint32_t j)
{
    pl_member_info info;
    memset(&info, 0, sizeof info);
    CHECK(pl_members_find(pl_msim_instance(s, i), pl_msim_pk(s, j), &info));
    return info;
}

/* Runs until every running node other than j sees j in state st. */
static pl_time run_until_all_see(pl_msim *s, uint32_t j, pl_member_state st, uint32_t expect, pl_time limit)
{
    pl_time t0 = pl_msim_now(s);
    for (pl_time t = t0; t <= t0 + limit; t += 100 * PL_MSEC) {
        pl_msim_run_until(s, t);
        if (pl_msim_count_seeing(s, j, st) == expect) return t - t0;
    }
    return PL_TIME_NEVER;
}

static void three_members_join_through_one_seed_and_all_see_each_other(void)
{
    pl_msim_config c = base_config(3, 1);
    pl_msim *s = pl_msim_new(&c);
    CHECK(s);
    CHECK(pl_msim_start(s, 0, 0));
    start_and_join(s, 1, 3, 0);
    pl_time took = run_until_converged(s, 10 * PL_SEC, false);
    CHECK(took != PL_TIME_NEVER);
    for (uint32_t i = 0; i < 3; i++) {
        pl_members *m = pl_msim_instance(s, i);
        CHECK_EQ(pl_members_alive_count(m), 3);
        for (uint32_t j = 0; j < 3; j++) {
            pl_member_info info;
            CHECK(pl_members_find(m, pl_msim_pk(s, j), &info));
            CHECK_EQ(info.state, PL_MEMBER_ALIVE);
            CHECK(info.verified);
            CHECK_EQ(info.incarnation, 1);
            pl_addr a = pl_msim_addr(s, j);
            CHECK(pl_addr_equal(&info.addr, &a));
        }
        if (i != 0) CHECK(pl_members_synced(m));
    }
    printf("  3 members converged %.1f s after joining\n", (double)took / PL_SEC);
    pl_msim_free(s);
}

static void two_hundred_members_converge_within_thirty_seconds(void)
{
    /* All 199 join through node 0 within one second: the seed serves every
     * table and learns every newcomer; gossip does the rest. */
    pl_msim_config c = base_config(200, 2);
    pl_msim *s = pl_msim_new(&c);
    CHECK(pl_msim_start(s, 0, 0));
    for (uint32_t i = 1; i < 200; i++) {
        pl_msim_run_until(s, pl_msim_now(s) + 5 * PL_MSEC);
        start_and_join(s, i, i + 1, 0);
    }
    pl_time took = run_until_converged(s, 30 * PL_SEC, false);
    CHECK(took != PL_TIME_NEVER);
    printf("  200 members converged %.1f s after the last join\n", (double)took / PL_SEC);
    pl_msim_free(s);
}

static void a_crashed_member_is_declared_dead_by_all_within_forty_seconds(void)
{
    /* With 20 members the minimum suspicion is 4 * log10(20) = 5.2 s and
     * the maximum 31 s; confirmations from independent probers shorten it. */
    pl_msim_config c = base_config(20, 3);
    pl_msim *s = pl_msim_new(&c);
    CHECK(pl_msim_start(s, 0, 0));
    start_and_join(s, 1, 20, 0);
    CHECK(run_until_converged(s, 20 * PL_SEC, false) != PL_TIME_NEVER);
    pl_msim_run_until(s, pl_msim_now(s) + 5 * PL_SEC);
    pl_time crash_at = pl_msim_now(s);
    pl_msim_crash(s, 7);
    pl_time all_dead = PL_TIME_NEVER;
    for (pl_time t = crash_at; t < crash_at + 40 * PL_SEC; t += 100 * PL_MSEC) {
        pl_msim_run_until(s, t);
        if (pl_msim_count_seeing(s, 7, PL_MEMBER_DEAD) == 19) {
            all_dead = t;
            break;
        }
    }
    CHECK(all_dead != PL_TIME_NEVER);
    CHECK(pl_msim_converged(s, false));
    printf("  all 19 declared the crashed member dead after %.1f s\n", (double)(all_dead - crash_at) / PL_SEC);
    pl_msim_free(s);
}

static void a_member_behind_a_lossy_link_is_not_falsely_declared_dead(void)
{
    /* 20 % loss on every datagram to or from node 5, for ten minutes: a
     * direct probe then fails 36 % of the time, but a ping-req path through
     * three others rarely fails as well, and when a suspicion does start,
     * node 5 hears of it and refutes long before it could time out. */
    tally t;
    pl_msim *s = converged_cluster(20, 20, 4, &t);
    pl_msim_set_loss(s, 5, 200000);
    uint32_t down_before = t.down;
    pl_msim_run_until(s, pl_msim_now(s) + 600 * PL_SEC);
    CHECK_EQ(t.down, down_before);
    CHECK(pl_msim_converged(s, true));
    printf("  10 min at 20 %% loss: node 5 was suspected and refuted %llu times, 0 false deaths\n",
           (unsigned long long)pl_members_get_stats(pl_msim_instance(s, 5)).refutations);
    pl_msim_free(s);
}

static void a_suspected_live_member_refutes_with_a_higher_incarnation(void)
{
    tally t;
    pl_msim *s = converged_cluster(10, 10, 5, &t);
    /* Node 1 tells node 0 that node 3 is suspect (as if a probe had failed). */
    uint8_t msg[256];
    size_t len = gossip_accusation(msg, sizeof msg, PL_MEMBER_SUSPECT, pl_msim_pk(s, 3), 1, pl_msim_pk(s, 1));
    pl_msim_inject(s, 0, 1, msg, len);
    CHECK_EQ(view(s, 0, 3).state, PL_MEMBER_SUSPECT);
    CHECK_EQ(t.suspect, 1);
    /* The suspicion spreads, reaches node 3, and node 3 refutes. */
    pl_time took = run_until_all_see(s, 3, PL_MEMBER_ALIVE, 9, 10 * PL_SEC);
    CHECK(took != PL_TIME_NEVER);
    for (uint32_t i = 0; i < 10; i++) CHECK_EQ(view(s, i, 3).incarnation, 2);
    CHECK_EQ(pl_members_incarnation(pl_msim_instance(s, 3)), 2);
    CHECK_EQ(pl_members_get_stats(pl_msim_instance(s, 3)).refutations, 1);
    CHECK_EQ(t.down, 0);
    CHECK(t.cleared >= 1);
    printf("  refuted everywhere %.1f s after the accusation\n", (double)took / PL_SEC);
    pl_msim_free(s);
}

static void a_forged_alive_claim_is_refused(void)
{
    pl_msim *s = converged_cluster(6, 6, 6, NULL);
    pl_members *m0 = pl_msim_instance(s, 0);
    pl_addr elsewhere;
    CHECK(pl_addr_parse(&elsewhere, "203.0.113.66:9999", 0));
    uint8_t sig[64], msg[256];
    uint64_t bad_before = pl_members_get_stats(m0).drop_signature;

    /* Node 2 tries to move node 3, signing with its own key. */
    sign_claim(sig, pl_msim_identity(s, 2), PL_MEMBER_ALIVE, pl_msim_pk(s, 3), &elsewhere, 7);
    size_t len = gossip_alive(msg, sizeof msg, pl_msim_pk(s, 3), 7, &elsewhere, sig);
    pl_msim_inject(s, 0, 2, msg, len);
    /* Random bytes as a signature. */
    randombytes_buf(sig, sizeof sig);
    len = gossip_alive(msg, sizeof msg, pl_msim_pk(s, 3), 8, &elsewhere, sig);
    pl_msim_inject(s, 0, 2, msg, len);
    /* Node 3's real signature, but over another incarnation. */
    sign_claim(sig, pl_msim_identity(s, 3), PL_MEMBER_ALIVE, pl_msim_pk(s, 3), &elsewhere, 9);
    len = gossip_alive(msg, sizeof msg, pl_msim_pk(s, 3), 10, &elsewhere, sig);
    pl_msim_inject(s, 0, 2, msg, len);
    /* A member nobody knows, signed by someone else. */
    uint8_t stranger[32];
    randombytes_buf(stranger, sizeof stranger);
    sign_claim(sig, pl_msim_identity(s, 2), PL_MEMBER_ALIVE, stranger, &elsewhere, 1);
    len = gossip_alive(msg, sizeof msg, stranger, 1, &elsewhere, sig);
    pl_msim_inject(s, 0, 2, msg, len);

    CHECK_EQ(pl_members_get_stats(m0).drop_signature, bad_before + 4);
    pl_member_info v = view(s, 0, 3);
    pl_addr a3 = pl_msim_addr(s, 3);
    CHECK(pl_addr_equal(&v.addr, &a3));
    CHECK_EQ(v.incarnation, 1);
    CHECK(!pl_members_find(m0, stranger, NULL));
    CHECK_EQ(pl_members_count(m0), 6);

    /* An accusation naming an incarnation node 3 never signed is ignored:
     * nobody can push another member's incarnation out of reach. */
    len = gossip_accusation(msg, sizeof msg, PL_MEMBER_DEAD, pl_msim_pk(s, 3), 4000000000u, NULL);
    pl_msim_inject(s, 0, 2, msg, len);
    CHECK_EQ(view(s, 0, 3).state, PL_MEMBER_ALIVE);
    len = gossip_accusation(msg, sizeof msg, PL_MEMBER_DEAD, pl_msim_pk(s, 0), 4000000000u, NULL);
    pl_msim_inject(s, 0, 2, msg, len);
    CHECK_EQ(pl_members_incarnation(m0), 1);

    /* The real claim at a new incarnation is accepted. */
    pl_msim_run_until(s, pl_msim_now(s) + 5 * PL_SEC);
    sign_claim(sig, pl_msim_identity(s, 3), PL_MEMBER_ALIVE, pl_msim_pk(s, 3), &a3, 2);
    len = gossip_alive(msg, sizeof msg, pl_msim_pk(s, 3), 2, &a3, sig);
    pl_msim_inject(s, 0, 2, msg, len);
    CHECK_EQ(view(s, 0, 3).incarnation, 2);
    pl_msim_free(s);
}

static void a_stale_incarnation_never_overrides_a_newer_one(void)
{
    tally t;
    pl_msim *s = converged_cluster(8, 8, 7, &t);
    /* Node 4 moves: a new address at incarnation 2, everywhere. */
    CHECK_EQ(pl_msim_move(s, 4, 7401), PL_MEMBERS_OK);
    pl_addr now4 = pl_msim_addr(s, 4);
    for (pl_time waited = 0; waited < 20 * PL_SEC; waited += 100 * PL_MSEC) {
        uint32_t moved = 0;
        for (uint32_t i = 0; i < 8; i++) {
            pl_member_info v = view(s, i, 4);
            if (i != 4 && pl_addr_equal(&v.addr, &now4)) moved++;
        }
        if (moved == 7) break;
        pl_msim_run_until(s, pl_msim_now(s) + 100 * PL_MSEC);
    }
    for (uint32_t i = 0; i < 8; i++) {
        pl_member_info v = view(s, i, 4);
        CHECK_EQ(v.incarnation, 2);
        CHECK(pl_addr_equal(&v.addr, &now4));
    }
    CHECK_EQ(t.address, 7);
    /* Node 4's genuine old claim (incarnation 1, old address), replayed to
     * everyone, changes nothing. */
    pl_addr old4 = now4;
    old4.port = 7400;
    uint8_t sig[64], msg[256];
    sign_claim(sig, pl_msim_identity(s, 4), PL_MEMBER_ALIVE, pl_msim_pk(s, 4), &old4, 1);
    size_t len = gossip_alive(msg, sizeof msg, pl_msim_pk(s, 4), 1, &old4, sig);
    for (uint32_t i = 0; i < 8; i++)
        if (i != 4) pl_msim_inject(s, i, 1, msg, len);
    /* So do old accusations. */
    len = gossip_accusation(msg, sizeof msg, PL_MEMBER_DEAD, pl_msim_pk(s, 4), 1, NULL);
    for (uint32_t i = 0; i < 8; i++)
        if (i != 4) pl_msim_inject(s, i, 1, msg, len);
    pl_msim_run_until(s, pl_msim_now(s) + 10 * PL_SEC);
    for (uint32_t i = 0; i < 8; i++) {
        pl_member_info v = view(s, i, 4);
        CHECK_EQ(v.incarnation, 2);
        CHECK_EQ(v.state, PL_MEMBER_ALIVE);
        CHECK(pl_addr_equal(&v.addr, &now4));
    }
    CHECK_EQ(t.down, 0);
    pl_msim_free(s);
}

static void a_crashed_member_rejoins_with_a_higher_incarnation(void)
{
    tally t;
    pl_msim *s = converged_cluster(12, 12, 8, &t);
    pl_msim_crash(s, 4);
    CHECK(run_until_all_see(s, 4, PL_MEMBER_DEAD, 11, 60 * PL_SEC) != PL_TIME_NEVER);
    uint32_t ups = t.up;
    /* It comes back knowing nothing of its past: incarnation 1 again. Its
     * first pull shows it "dead at 1", so it refutes with 2. */
    CHECK(pl_msim_start(s, 4, 1));
    CHECK_EQ(pl_msim_add_known(s, 4, 0), PL_MEMBERS_OK);
    CHECK_EQ(pl_msim_join(s, 4), PL_MEMBERS_OK);
    pl_time took = run_until_converged(s, 20 * PL_SEC, false);
    CHECK(took != PL_TIME_NEVER);
    CHECK_EQ(pl_members_incarnation(pl_msim_instance(s, 4)), 2);
    for (uint32_t i = 0; i < 12; i++) CHECK_EQ(view(s, i, 4).incarnation, 2);
    CHECK(t.up >= ups + 11); /* everyone saw it come back (and it saw everyone) */
    printf("  back alive everywhere %.1f s after restarting\n", (double)took / PL_SEC);
    pl_msim_free(s);
}

static void a_graceful_leave_spreads_and_is_final(void)
{
    tally t;
    pl_msim *s = converged_cluster(16, 16, 9, &t);
    CHECK_EQ(pl_msim_leave(s, 6), PL_MEMBERS_OK);
    CHECK_EQ(pl_msim_leave(s, 6), PL_MEMBERS_ERR_LEFT);
    pl_time took = run_until_all_see(s, 6, PL_MEMBER_LEFT, 15, 10 * PL_SEC);
    CHECK(took != PL_TIME_NEVER);
    CHECK_EQ(t.down_of[6], 15);
    for (uint32_t i = 0; i < 16; i++)
        if (i != 6) CHECK_EQ(pl_members_alive_count(pl_msim_instance(s, i)), 15);
    /* Once it is gone for good, nobody declares it dead on top. */
    pl_msim_crash(s, 6);
    pl_msim_run_until(s, pl_msim_now(s) + 120 * PL_SEC);
    CHECK_EQ(pl_msim_count_seeing(s, 6, PL_MEMBER_LEFT), 15);
    CHECK_EQ(t.down_of[6], 15);
    CHECK_EQ(t.suspect_of[6], 0);
    CHECK(pl_msim_converged(s, false));
    printf("  the leave reached all 15 in %.1f s\n", (double)took / PL_SEC);
    pl_msim_free(s);
}

static void anti_entropy_repairs_a_member_that_was_cut_off(void)
{
    /* Node 9 is cut off from everyone for three minutes. Meanwhile node 30
     * joins and its news is gossiped out completely. When the partition
     * heals nobody probes across (each side holds the other dead), and no
     * gossip about node 30 is left to carry: only anti-entropy, which now
     * and then talks to a member it believes dead, brings them together. */
    tally t;
    pl_msim *s = converged_cluster(31, 30, 10, &t);
    pl_msim_set_group(s, 9, 1);
    CHECK(run_until_all_see(s, 9, PL_MEMBER_DEAD, 29, 90 * PL_SEC) != PL_TIME_NEVER);
    start_and_join(s, 30, 31, 0);
    pl_msim_run_until(s, pl_msim_now(s) + 180 * PL_SEC);
    pl_members *m9 = pl_msim_instance(s, 9);
    CHECK(!pl_members_find(m9, pl_msim_pk(s, 30), NULL));
    /* Cut off, node 9 fails every probe, so Lifeguard stretches its period
     * up to nine-fold: it has declared only some of the others dead yet. */
    CHECK(pl_members_alive_count(m9) < 30);
    CHECK_EQ(pl_members_get_stats(m9).health, 8);
    for (uint32_t i = 0; i < 31; i++)
        if (i != 9) CHECK_EQ(pl_members_pending_updates(pl_msim_instance(s, i)), 0);

    pl_msim_set_group(s, 9, 0);
    uint64_t pulls = pl_members_get_stats(m9).anti_entropy_pulls;
    pl_time took = run_until_converged(s, 180 * PL_SEC, false);
    CHECK(took != PL_TIME_NEVER);
    CHECK(pl_members_find(m9, pl_msim_pk(s, 30), NULL));
    CHECK(pl_members_get_stats(m9).anti_entropy_pulls > pulls);
    printf("  healed partition converged after %.1f s\n", (double)took / PL_SEC);
    pl_msim_free(s);
}

static uint64_t scenario_trace(uint64_t seed, uint64_t *events)
{
    pl_msim_config c = base_config(40, seed);
    c.link.loss_ppm = 20000;
    pl_msim *s = pl_msim_new(&c);
    CHECK(pl_msim_start(s, 0, 0));
    start_and_join(s, 1, 40, 0);
    pl_msim_run_until(s, pl_msim_now(s) + 30 * PL_SEC);
    for (uint32_t i = 30; i < 36; i++) pl_msim_crash(s, i);
    CHECK_EQ(pl_msim_leave(s, 20), PL_MEMBERS_OK);
    pl_msim_run_until(s, pl_msim_now(s) + 60 * PL_SEC);
    uint64_t h = pl_msim_trace_hash(s);
    *events = pl_msim_events(s);
    pl_msim_free(s);
    return h;
}

static void the_same_seed_gives_the_same_event_trace(void)
{
    uint64_t e1, e2, e3;
    uint64_t h1 = scenario_trace(11, &e1);
    uint64_t h2 = scenario_trace(11, &e2);
    uint64_t h3 = scenario_trace(12, &e3);
    CHECK(e1 > 1000);
    CHECK_EQ(e1, e2);
    CHECK(h1 == h2);
    CHECK(h1 != h3);
}

static double mean_bits_per_second(const pl_msim *s, pl_time span, bool received)
{
    uint64_t bytes = 0, nodes = 0;
    for (uint32_t i = 0; i < pl_msim_nodes(s); i++) {
        if (!pl_msim_running(s, i)) continue;
        pl_msim_traffic tr = pl_msim_traffic_of(s, i);
        bytes += received ? tr.bytes_rx : tr.bytes_tx;
        nodes++;
    }
    return nodes ? 8.0 * (double)bytes / (double)nodes / ((double)span / PL_SEC) : 0;
}

/* The figures test runs 1,000 members; under the sanitizers, which make it
 * several times slower, the same scenario runs with 300. */
#if defined(__SANITIZE_ADDRESS__)
#define FIGURES_N 300
#else
#define FIGURES_N 1000
#endif

static void a_large_cluster_joins_detects_a_mass_crash_and_stays_cheap(void)
{
    /* Figures at 1,000 members (bench_members does 10,000): joins one every
     * 10 ms through node 0; then a minute of steady state; then 30 % crash
     * at once. */
    enum { N = FIGURES_N, CRASH = FIGURES_N * 3 / 10 };
    pl_msim_config c = base_config(N, 13);
    c.sigcache_log2 = 20;
    pl_msim *s = pl_msim_new(&c);
    CHECK(pl_msim_start(s, 0, 0));
    for (uint32_t i = 1; i < N; i++) {
        pl_msim_run_until(s, pl_msim_now(s) + 10 * PL_MSEC);
        start_and_join(s, i, i + 1, 0);
    }
    pl_time converged = run_until_converged(s, 120 * PL_SEC, false);
    CHECK(converged != PL_TIME_NEVER);
    CHECK(converged <= 60 * PL_SEC);

    pl_msim_run_until(s, pl_msim_now(s) + 60 * PL_SEC); /* let the join gossip die down */
    CHECK(pl_msim_converged(s, false));
    pl_msim_reset_traffic(s);
    pl_msim_run_until(s, pl_msim_now(s) + 60 * PL_SEC);
    double tx = mean_bits_per_second(s, 60 * PL_SEC, false), rx = mean_bits_per_second(s, 60 * PL_SEC, true);
    CHECK(tx + rx <= 5000);

    /* Crash 300 chosen by a fixed stride through the table. */
    for (uint32_t k = 0, i = 7; k < CRASH; k++, i = (i + 337) % N) {
        while (!pl_msim_running(s, i) || i == 0) i = (i + 1) % N;
        pl_msim_crash(s, i);
    }
    pl_msim_reset_traffic(s);
    pl_time t0 = pl_msim_now(s), detected = PL_TIME_NEVER, settled = PL_TIME_NEVER;
    for (pl_time t = t0 + PL_SEC; t <= t0 + 300 * PL_SEC; t += PL_SEC) {
        pl_msim_run_until(s, t);
        bool all = true;
        for (uint32_t i = 0; i < N && all; i++)
            if (pl_msim_running(s, i)) all = pl_members_alive_count(pl_msim_instance(s, i)) == N - CRASH;
        if (all) {
            detected = t - t0;
            break;
        }
    }
    CHECK(detected != PL_TIME_NEVER);
    settled = run_until_converged(s, 120 * PL_SEC, false);
    CHECK(settled != PL_TIME_NEVER);
    double crash_tx = mean_bits_per_second(s, detected + settled, false);
    printf("  %d members: converged %.1f s after the last join; steady state %.0f bit/s sent + %.0f received per"
           " member (incl. 60 B/datagram)\n",
           N, (double)converged / PL_SEC, tx, rx);
    printf("  30 %% crash: every survivor had declared all %d dead after %.0f s (converged %.1f s later); "
           "%.0f bit/s sent per member meanwhile\n",
           CRASH, (double)detected / PL_SEC, (double)settled / PL_SEC, crash_tx);
    pl_msim_free(s);
}

int main(void)
{
    RUN(three_members_join_through_one_seed_and_all_see_each_other);
    RUN(two_hundred_members_converge_within_thirty_seconds);
    RUN(a_crashed_member_is_declared_dead_by_all_within_forty_seconds);
    RUN(a_member_behind_a_lossy_link_is_not_falsely_declared_dead);
    RUN(a_suspected_live_member_refutes_with_a_higher_incarnation);
    RUN(a_forged_alive_claim_is_refused);
    RUN(a_stale_incarnation_never_overrides_a_newer_one);
    RUN(a_crashed_member_rejoins_with_a_higher_incarnation);
    RUN(a_graceful_leave_spreads_and_is_final);
    RUN(anti_entropy_repairs_a_member_that_was_cut_off);
    RUN(the_same_seed_gives_the_same_event_trace);
    RUN(a_large_cluster_joins_detects_a_mass_crash_and_stays_cheap);
    return pl_test_summary();
}
