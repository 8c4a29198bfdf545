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

int main(void)
{
    RUN(three_members_join_through_one_seed_and_all_see_each_other);
    RUN(two_hundred_members_converge_within_thirty_seconds);
    RUN(a_crashed_member_is_declared_dead_by_all_within_forty_seconds);
    return pl_test_summary();
}
