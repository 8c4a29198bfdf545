/* bench_loop.c - figures for the event loop and the simulator.
 *
 *  1. UDP datagrams per second through pl_udp on loopback: one socket sends
 *     batches to another, both served by one loop on one thread, so the
 *     figure is the cost of a send and a receive together.
 *  2. Simulator events per second: endpoints that keep sending to random
 *     peers through a link with latency, jitter and loss.
 *
 * Benchmarks print figures; they do not pass or fail. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loop.h"
#include "parley.h"
#include "simnet.h"

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- UDP through the loop ---------------------------------------------------- */

static void count_recv(void *ctx, pl_udp *sock, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    (*(uint64_t *)ctx)++;
}

static void bench_udp(size_t size, double seconds)
{
    pl_loop *loop = pl_loop_new();
    uint64_t received = 0;
    pl_addr any;
    pl_addr_parse(&any, "127.0.0.1:0", 0);
    pl_udp *tx = pl_udp_open(loop, &any, NULL, NULL, NULL);
    pl_udp *rx = pl_udp_open(loop, &any, count_recv, &received, NULL);
    if (!tx || !rx) {
        printf("udp: cannot open loopback sockets\n");
        pl_loop_free(loop);
        return;
    }
    pl_addr to;
    pl_udp_local_addr(rx, &to);
    uint8_t msg[PL_UDP_MAX_DATAGRAM];
    memset(msg, 0xab, sizeof msg);
    uint64_t queued = 0;
    double start = wall(), end = start + seconds;
    while (wall() < end) {
        /* One receive budget's worth per turn keeps the sender from simply
         * overrunning the receiver's socket buffer. */
        for (int i = 0; i < PL_LOOP_RECV_BUDGET; i++)
            if (pl_udp_send(tx, &to, msg, size) == PL_LOOP_OK) queued++;
        pl_loop_run_once(loop, 0);
    }
    for (int i = 0; i < 20; i++) pl_loop_run_once(loop, 1);
    double secs = wall() - start;
    pl_udp_stats st;
    pl_udp_get_stats(tx, &st);
    printf("udp loopback %4zu B: %.2f M datagrams/s received (sent %llu, received %llu, send errors %llu)\n",
           size, (double)received / secs / 1e6, (unsigned long long)st.sent, (unsigned long long)received,
           (unsigned long long)st.send_errors);
    (void)queued;
    pl_udp_close(tx);
    pl_udp_close(rx);
    pl_loop_free(loop);
}

/* ---- the simulator ------------------------------------------------------------------ */

typedef struct node {
    pl_simnet *net;
    uint32_t i, n;
    int rounds, max_rounds;
} node;

static pl_addr node_addr(uint32_t i)
{
    pl_addr a;
    memset(&a, 0, sizeof a);
    a.family = PL_AF_INET4;
    a.ip[0] = 10;
    a.ip[1] = (uint8_t)(i >> 16);
    a.ip[2] = (uint8_t)(i >> 8);
    a.ip[3] = (uint8_t)i;
    a.port = 5000;
    return a;
}

static void sim_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len, pl_time now)
{
}

static void sim_tick(void *ctx, pl_time now)
{
    node *n = ctx;
    pl_addr me = node_addr(n->i), to = node_addr((uint32_t)pl_rng_below(pl_simnet_rng(n->net), n->n));
    uint8_t buf[160];
    memset(buf, (int)n->i, sizeof buf);
    pl_simnet_send(n->net, &me, &to, buf, sizeof buf);
    if (++n->rounds < n->max_rounds) pl_simnet_timer(n->net, now + 20 * PL_MSEC, sim_tick, n);
}

static void bench_sim(uint32_t endpoints, int rounds)
{
    double t0 = wall();
    pl_simnet *net = pl_simnet_new(1, 1700000000ull * PL_SEC);
    pl_simnet_set_default_link(net, (pl_sim_link){30 * PL_MSEC, 40 * PL_MSEC, 10000});
    node *nodes = calloc(endpoints, sizeof *nodes);
    if (!nodes || !net) {
        printf("sim: out of memory\n");
        free(nodes);
        pl_simnet_free(net);
        return;
    }
    for (uint32_t i = 0; i < endpoints; i++) {
        nodes[i] = (node){net, i, endpoints, 0, rounds};
        pl_addr a = node_addr(i);
        pl_simnet_attach(net, &a, sim_recv, &nodes[i]);
        pl_simnet_timer(net, pl_simnet_now(net) + pl_rng_below(pl_simnet_rng(net), 20 * PL_MSEC), sim_tick,
                        &nodes[i]);
    }
    double t1 = wall();
    uint64_t events = 0;
    while (pl_simnet_step(net)) events++;
    double t2 = wall();
    pl_sim_stats st = pl_simnet_stats(net);
    printf("simnet %7u endpoints: setup %.2f s; %llu events (%llu datagrams) in %.2f s = %.2f M events/s\n",
           endpoints, t1 - t0, (unsigned long long)events, (unsigned long long)st.sent, t2 - t1,
           (double)events / (t2 - t1) / 1e6);
    free(nodes);
    pl_simnet_free(net);
}

int main(void)
{
    if (!pl_init()) return 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    bench_udp(128, 2.0);
    bench_udp(1200, 2.0);
    bench_sim(1000, 1000);
    bench_sim(100000, 10);
    bench_sim(1000000, 3);
    return 0;
}
