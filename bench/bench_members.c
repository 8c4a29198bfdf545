/*
 * bench_members.c - supernode membership at 10,000 members in one process.
 *
 * Every member runs its own pl_members instance over the deterministic
 * simulator; every instance starts knowing all the others (add_known, as
 * from a host cache). After a warm-up the bench measures a minute and a
 * half of steady state: membership traffic per member (message bytes plus
 * 60 bytes per datagram for IP, UDP and the secure-session header and tag),
 * by message type; memory per instance; wall time. Then 30 % of the members
 * crash at once, and it measures how long until every survivor has declared
 * every crashed member dead, and the traffic meanwhile.
 *
 * Usage: bench_members [members] [steady seconds]   (defaults 10000, 90)
 * It needs about 80 bytes per member per instance: 8 GB at 10,000.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "members.h"
#include "members_sim.h"

static double wall(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static long rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb / 1024;
}

typedef struct kinds {
    uint64_t msgs[PL_MEMBERS_MSG_KINDS], bytes[PL_MEMBERS_MSG_KINDS];
} kinds;

/* Sums the sent-message counters of the running instances. */
static kinds sent_by_kind(pl_msim *s)
{
    kinds k;
    memset(&k, 0, sizeof k);
    for (uint32_t i = 0; i < pl_msim_nodes(s); i++) {
        pl_members *m = pl_msim_instance(s, i);
        if (!m) continue;
        pl_members_stats st = pl_members_get_stats(m);
        for (int t = 0; t < PL_MEMBERS_MSG_KINDS; t++) {
            k.msgs[t] += st.tx_msgs[t];
            k.bytes[t] += st.tx_bytes[t];
        }
    }
    return k;
}

static void print_traffic(pl_msim *s, const kinds *before, double secs)
{
    static const char *names[] = {"ping", "ack", "ping-req", "nack", "sync-req", "sync-resp", "digest", "gossip"};
    kinds after = sent_by_kind(s);
    uint64_t running = 0, tx = 0, rx = 0, dg = 0;
    for (uint32_t i = 0; i < pl_msim_nodes(s); i++) {
        if (!pl_msim_running(s, i)) continue;
        pl_msim_traffic t = pl_msim_traffic_of(s, i);
        running++;
        tx += t.bytes_tx;
        rx += t.bytes_rx;
        dg += t.datagrams_tx;
    }
    double per = (double)running * secs;
    printf("  per member: sent %.0f bit/s, received %.0f bit/s, total %.0f bit/s (%.2f datagrams/s sent)\n",
           8.0 * (double)tx / per, 8.0 * (double)rx / per, 8.0 * (double)(tx + rx) / per, (double)dg / per);
    printf("  sent by type (message bytes only):");
    for (int t = 0; t < 8; t++) {
        uint64_t msgs = after.msgs[t] - before->msgs[t], bytes = after.bytes[t] - before->bytes[t];
        if (msgs) printf(" %s %.2f/s %.0f bit/s;", names[t], (double)msgs / per, 8.0 * (double)bytes / per);
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    if (!pl_init()) return 1;
    uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 10000;
    uint32_t steady = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 90;
    if (n < 10 || n > 100000 || steady < 10) {
        fprintf(stderr, "usage: bench_members [members 10..100000] [steady seconds >= 10]\n");
        return 2;
    }
    pl_msim_config c;
    memset(&c, 0, sizeof c);
    c.nodes = n;
    c.seed = 42;
    c.link.latency = 20 * PL_MSEC;
    c.link.jitter = 10 * PL_MSEC;
    c.members.max_members = n; /* tables sized exactly: no growth slack */
    c.sigcache_log2 = 20;
    pl_msim *s = pl_msim_new(&c);
    if (!s) return 1;

    printf("membership: %u members, each with its own instance, links 20-30 ms, no loss\n", n);
    double w0 = wall();
    for (uint32_t i = 0; i < n; i++) {
        if (!pl_msim_start(s, i, 0)) return 1;
        for (uint32_t j = 0; j < n; j++)
            if (j != i && pl_msim_add_known(s, i, j) != PL_MEMBERS_OK) return 1;
    }
    size_t mem = 0;
    for (uint32_t i = 0; i < n; i++) mem += pl_members_memory(pl_msim_instance(s, i));
    printf("set up: %.1f s wall; memory per instance %.0f KB (%.1f bytes per member entry); process RSS %ld MB\n",
           wall() - w0, (double)mem / n / 1024, (double)mem / n / n, rss_mb());

    double w1 = wall();
    pl_msim_run_until(s, pl_msim_now(s) + 10 * PL_SEC);
    pl_msim_reset_traffic(s);
    kinds before = sent_by_kind(s);
    pl_msim_run_until(s, pl_msim_now(s) + (pl_time)steady * PL_SEC);
    double w2 = wall();
    printf("steady state, %u virtual s after 10 s of warm-up (%.1f s wall, %.1f virtual s per wall s):\n", steady,
           w2 - w1, (10.0 + steady) / (w2 - w1));
    print_traffic(s, &before, steady);
    uint32_t alive_min = n;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t a = pl_members_alive_count(pl_msim_instance(s, i));
        if (a < alive_min) alive_min = a;
    }
    printf("  every member still sees at least %u of %u alive\n", alive_min, n);

    /* 30 % crash at once, chosen by a fixed stride. */
    uint32_t crash = n * 3 / 10, survivors = n - crash;
    for (uint32_t k = 0, i = 7; k < crash; k++, i = (i + 7919) % n) {
        while (!pl_msim_running(s, i)) i = (i + 1) % n;
        pl_msim_crash(s, i);
    }
    pl_msim_reset_traffic(s);
    before = sent_by_kind(s);
    double w3 = wall();
    pl_time t0 = pl_msim_now(s), half = 0, most = 0, all = 0;
    for (uint32_t sec = 1; sec <= 600 && !all; sec++) {
        pl_msim_run_until(s, t0 + (pl_time)sec * PL_SEC);
        uint64_t still = 0;
        for (uint32_t i = 0; i < n; i++)
            if (pl_msim_running(s, i)) still += pl_members_alive_count(pl_msim_instance(s, i)) - survivors;
        double left = (double)still / ((double)survivors * crash);
        if (!half && left <= 0.5) half = sec;
        if (!most && left <= 0.01) most = sec;
        if (still == 0) all = sec;
        if (sec % 10 == 0) {
            printf("  t+%us: %.2f %% of (survivor, crashed) pairs not yet dead (%.0f s wall)\n", sec, 100.0 * left,
                   wall() - w3);
            fflush(stdout);
        }
    }
    printf("crash of %u (30 %%): half the verdicts after %llu s, 99 %% after %llu s, all after %llu s "
           "(%.1f s wall)\n",
           crash, (unsigned long long)half, (unsigned long long)most, (unsigned long long)all, wall() - w3);
    if (all) print_traffic(s, &before, (double)all);
    printf("total wall time %.1f s; process RSS %ld MB\n", wall() - w0, rss_mb());
    pl_msim_free(s);
    return 0;
}
