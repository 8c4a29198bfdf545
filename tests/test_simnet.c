/* test_simnet.c - the simulated network: delay, loss, determinism, ordering,
 * timers, detaching, and a run at the scale the project needs. */
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "parley.h"
#include "simnet.h"
#include "test.h"

#define T0 (1700000000ull * PL_SEC)

static pl_addr ep_addr(uint32_t i)
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

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* ---- a recorder endpoint ------------------------------------------------------ */

typedef struct rec_ctx {
    pl_simnet *net;
    uint64_t count;
    pl_time min_delay, max_delay;
    double sum_delay;
    int order[64];
    int n_order;
} rec_ctx;

static void record(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len, pl_time now)
{
    rec_ctx *r = ctx;
    r->count++;
    if (len >= 8) {
        pl_time sent;
        memcpy(&sent, data, 8);
        pl_time d = now - sent;
        if (d < r->min_delay) r->min_delay = d;
        if (d > r->max_delay) r->max_delay = d;
        r->sum_delay += (double)d;
    } else if (len == 1 && r->n_order < 64) {
        r->order[r->n_order++] = data[0];
    }
}

static void latency_and_jitter_are_applied(void)
{
    pl_simnet *net = pl_simnet_new(1, T0);
    rec_ctx r = {.net = net, .min_delay = PL_TIME_NEVER};
    pl_addr a = ep_addr(1), b = ep_addr(2);
    CHECK(pl_simnet_attach(net, &b, record, &r));
    pl_sim_link link = {20 * PL_MSEC, 5 * PL_MSEC, 0};
    pl_simnet_set_default_link(net, link);
    for (int i = 0; i < 1000; i++) {
        pl_time now = pl_simnet_now(net);
        pl_simnet_send(net, &a, &b, (const uint8_t *)&now, sizeof now);
        pl_simnet_run_until(net, now + 100); /* 0.1 ms between sends */
    }
    pl_simnet_run_until(net, pl_simnet_now(net) + PL_SEC);
    CHECK_EQ(r.count, 1000);
    CHECK(r.min_delay >= 20 * PL_MSEC && r.max_delay <= 25 * PL_MSEC);
    /* Jitter is spread over the range, not a constant. */
    CHECK(r.min_delay < 20 * PL_MSEC + 500 && r.max_delay > 25 * PL_MSEC - 500);
    double mean = r.sum_delay / 1000.0;
    CHECK(fabs(mean - 22.5 * PL_MSEC) < 300.0);
    pl_sim_stats st = pl_simnet_stats(net);
    CHECK_EQ(st.sent, 1000);
    CHECK_EQ(st.delivered, 1000);
    CHECK_EQ(st.bytes_sent, 8000);
    pl_simnet_free(net);
}

static void links_override_one_direction(void)
{
    pl_simnet *net = pl_simnet_new(2, T0);
    rec_ctx ra = {.min_delay = PL_TIME_NEVER}, rb = {.min_delay = PL_TIME_NEVER};
    pl_addr a = ep_addr(1), b = ep_addr(2);
    CHECK(pl_simnet_attach(net, &a, record, &ra));
    CHECK(pl_simnet_attach(net, &b, record, &rb));
    pl_simnet_set_default_link(net, (pl_sim_link){10 * PL_MSEC, 0, 0});
    pl_simnet_set_link(net, &a, &b, (pl_sim_link){100 * PL_MSEC, 0, 0});
    /* Bytes a family does not use do not make a different address. */
    pl_addr a_dirty = a;
    a_dirty.ip[7] = 0xee;
    a_dirty.transport = PL_ADDR_TCP; /* simnet carries datagrams whatever the mark */
    pl_time now = pl_simnet_now(net);
    pl_simnet_send(net, &a_dirty, &b, (const uint8_t *)&now, sizeof now);
    pl_simnet_send(net, &b, &a, (const uint8_t *)&now, sizeof now);
    while (pl_simnet_step(net)) {}
    CHECK_EQ(rb.min_delay, 100 * PL_MSEC);
    CHECK_EQ(ra.min_delay, 10 * PL_MSEC);
    /* Overriding again replaces. */
    pl_simnet_set_link(net, &a, &b, (pl_sim_link){1 * PL_MSEC, 0, 0});
    now = pl_simnet_now(net);
    rb.min_delay = PL_TIME_NEVER;
    pl_simnet_send(net, &a, &b, (const uint8_t *)&now, sizeof now);
    while (pl_simnet_step(net)) {}
    CHECK_EQ(rb.min_delay, 1 * PL_MSEC);
    pl_simnet_free(net);
}

static void loss_rate_is_within_statistical_bounds(void)
{
    pl_simnet *net = pl_simnet_new(3, T0);
    rec_ctx r = {.min_delay = PL_TIME_NEVER};
    pl_addr a = ep_addr(1), b = ep_addr(2);
    CHECK(pl_simnet_attach(net, &b, record, &r));
    pl_simnet_set_default_link(net, (pl_sim_link){5 * PL_MSEC, 1 * PL_MSEC, 50000}); /* 5 % */
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        pl_simnet_send(net, &a, &b, (const uint8_t *)"x", 1);
        if (i % 1000 == 999) pl_simnet_run_until(net, pl_simnet_now(net) + PL_MSEC);
    }
    while (pl_simnet_step(net)) {}
    pl_sim_stats st = pl_simnet_stats(net);
    /* Binomial(100000, 0.05): mean 5000, sd 68.9; allow five sd. */
    double sd = sqrt(n * 0.05 * 0.95);
    CHECK(fabs((double)st.dropped_loss - 5000.0) < 5 * sd);
    CHECK_EQ(st.delivered + st.dropped_loss, (uint64_t)n);
    CHECK_EQ(r.count, st.delivered);
    pl_simnet_free(net);
}

/* ---- determinism: a chatty little network ------------------------------------------- */

#define CHAT_N 200

typedef struct chat {
    pl_simnet *net;
    uint64_t trace;
    uint32_t idx[CHAT_N];
    int hops_left;
} chat;

typedef struct chat_node {
    chat *c;
    uint32_t i;
} chat_node;

static void chat_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len,
                      pl_time now)
{
    chat_node *n = ctx;
    chat *c = n->c;
    c->trace = fnv(c->trace, &now, sizeof now);
    c->trace = fnv(c->trace, from, sizeof *from);
    c->trace = fnv(c->trace, to, sizeof *to);
    c->trace = fnv(c->trace, data, len);
    if (c->hops_left-- <= 0) return;
    /* Forward to a random node, with a random payload length. */
    const pl_rng *rng = pl_simnet_rng(c->net);
    pl_addr next = ep_addr((uint32_t)pl_rng_below(rng, CHAT_N));
    uint8_t buf[200];
    size_t blen = 1 + (size_t)pl_rng_below(rng, sizeof buf - 1);
    for (size_t i = 0; i < blen; i++) buf[i] = (uint8_t)(data[0] + i);
    pl_simnet_send(c->net, to, &next, buf, blen);
}

static void chat_tick(void *ctx, pl_time now)
{
    chat_node *n = ctx;
    chat *c = n->c;
    c->trace = fnv(c->trace, &now, sizeof now);
    c->trace = fnv(c->trace, &n->i, sizeof n->i);
    pl_addr me = ep_addr(n->i), next = ep_addr((n->i * 7 + 3) % CHAT_N);
    uint8_t b = (uint8_t)n->i;
    pl_simnet_send(c->net, &me, &next, &b, 1);
}

static uint64_t chat_run(uint64_t seed)
{
    static chat c;
    static chat_node nodes[CHAT_N];
    memset(&c, 0, sizeof c);
    c.net = pl_simnet_new(seed, T0);
    c.trace = 0xcbf29ce484222325ull;
    c.hops_left = 20000;
    pl_simnet_set_default_link(c.net, (pl_sim_link){15 * PL_MSEC, 10 * PL_MSEC, 20000});
    for (uint32_t i = 0; i < CHAT_N; i++) {
        nodes[i].c = &c;
        nodes[i].i = i;
        pl_addr a = ep_addr(i);
        pl_simnet_attach(c.net, &a, chat_recv, &nodes[i]);
        for (int k = 0; k < 5; k++) pl_simnet_timer(c.net, T0 + (pl_time)k * 50 * PL_MSEC, chat_tick, &nodes[i]);
    }
    while (pl_simnet_step(c.net)) {}
    pl_sim_stats st = pl_simnet_stats(c.net);
    uint64_t h = fnv(c.trace, &st, sizeof st);
    pl_simnet_free(c.net);
    return h;
}

static void same_seed_same_run_different_seed_different_run(void)
{
    uint64_t a = chat_run(42), b = chat_run(42), c = chat_run(43);
    CHECK(a == b);
    CHECK(a != c);
}

/* ---- ordering and timers ------------------------------------------------------------------ */

typedef struct order_log {
    int seq[64];
    int n;
    pl_simnet *net;
    uint64_t cancel_me;
} order_log;

typedef struct order_tag {
    order_log *log;
    int id;
} order_tag;

static void order_timer(void *ctx, pl_time now)
{
    order_tag *t = ctx;
    t->log->seq[t->log->n++] = t->id;
    if (t->log->cancel_me) {
        pl_simnet_timer_cancel(t->log->net, t->log->cancel_me);
        t->log->cancel_me = 0;
    }
}

static void order_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len,
                       pl_time now)
{
    order_log *log = ctx;
    log->seq[log->n++] = data[0];
}

static void same_time_events_run_in_creation_order(void)
{
    pl_simnet *net = pl_simnet_new(4, T0);
    order_log log = {.net = net};
    pl_addr a = ep_addr(1), b = ep_addr(2);
    CHECK(pl_simnet_attach(net, &b, order_recv, &log));
    pl_simnet_set_default_link(net, (pl_sim_link){10 * PL_MSEC, 0, 0});
    order_tag tags[3] = {{&log, 100}, {&log, 101}, {&log, 102}};
    /* Datagrams and timers that all land at T0 + 10 ms, interleaved. */
    uint8_t d1 = 1, d2 = 2, d3 = 3;
    pl_simnet_send(net, &a, &b, &d1, 1);
    pl_simnet_timer(net, T0 + 10 * PL_MSEC, order_timer, &tags[0]);
    pl_simnet_send(net, &a, &b, &d2, 1);
    pl_simnet_timer(net, T0 + 10 * PL_MSEC, order_timer, &tags[1]);
    pl_simnet_send(net, &a, &b, &d3, 1);
    /* A timer created first but due later runs last. */
    pl_simnet_timer(net, T0 + 11 * PL_MSEC, order_timer, &tags[2]);
    pl_simnet_run_until(net, T0 + 10 * PL_MSEC);
    CHECK_EQ(log.n, 5);
    int want[] = {1, 100, 2, 101, 3};
    for (int i = 0; i < 5; i++) CHECK_EQ(log.seq[i], want[i]);
    CHECK_EQ(pl_simnet_now(net), T0 + 10 * PL_MSEC);
    /* Nothing after t ran; the clock is set to t. */
    pl_simnet_run_until(net, T0 + 10 * PL_MSEC + 500);
    CHECK_EQ(log.n, 5);
    CHECK_EQ(pl_simnet_now(net), T0 + 10 * PL_MSEC + 500);
    CHECK(pl_simnet_step(net));
    CHECK_EQ(log.seq[5], 102);
    CHECK(!pl_simnet_step(net));
    /* Zero latency still means later, never during the send. */
    pl_simnet_set_default_link(net, (pl_sim_link){0, 0, 0});
    pl_simnet_send(net, &a, &b, &d1, 1);
    CHECK_EQ(log.n, 6);
    CHECK(pl_simnet_step(net));
    CHECK_EQ(log.n, 7);
    pl_simnet_free(net);
}

static void timers_can_be_cancelled(void)
{
    pl_simnet *net = pl_simnet_new(5, T0);
    order_log log = {.net = net};
    order_tag tags[4] = {{&log, 0}, {&log, 1}, {&log, 2}, {&log, 3}};
    uint64_t id0 = pl_simnet_timer(net, T0 + 1, order_timer, &tags[0]);
    uint64_t id1 = pl_simnet_timer(net, T0 + 2, order_timer, &tags[1]);
    uint64_t id2 = pl_simnet_timer(net, T0 + 3, order_timer, &tags[2]);
    uint64_t id3 = pl_simnet_timer(net, T0 + 4, order_timer, &tags[3]);
    CHECK(id0 && id1 && id2 && id3 && id0 != id1);
    pl_simnet_timer_cancel(net, id1);
    pl_simnet_timer_cancel(net, id1); /* twice: harmless */
    pl_simnet_timer_cancel(net, 0);
    pl_simnet_timer_cancel(net, 0xdeadbeef00000007ull);
    log.cancel_me = id2; /* timer 0 cancels timer 2 from its callback */
    while (pl_simnet_step(net)) {}
    CHECK_EQ(log.n, 2);
    CHECK_EQ(log.seq[0], 0);
    CHECK_EQ(log.seq[1], 3);
    /* An id whose timer already ran does not cancel the slot's next user. */
    uint64_t id4 = pl_simnet_timer(net, T0 + 10, order_timer, &tags[1]);
    pl_simnet_timer_cancel(net, id0);
    pl_simnet_timer_cancel(net, id3);
    while (pl_simnet_step(net)) {}
    CHECK_EQ(log.n, 3);
    CHECK_EQ(log.seq[2], 1);
    (void)id4;
    pl_simnet_free(net);
}

static int fired_count;
static pl_time last_fired;
static bool fired_in_order;
static void count_timer(void *ctx, pl_time now)
{
    if (now < last_fired) fired_in_order = false;
    last_fired = now;
    fired_count++;
}

static void many_cancelled_timers_do_not_pile_up(void)
{
    pl_simnet *net = pl_simnet_new(6, T0);
    enum { N = 20000 };
    uint64_t *ids = malloc(N * sizeof *ids);
    CHECK(ids);
    fired_count = 0;
    last_fired = 0;
    fired_in_order = true;
    /* A core that re-arms a long timer on every packet: arm, cancel, arm... */
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < N; i++) {
            if (round > 0) pl_simnet_timer_cancel(net, ids[i]);
            ids[i] = pl_simnet_timer(net, T0 + (pl_time)((i * 7919) % N + round) * PL_MSEC, count_timer, NULL);
        }
    }
    while (pl_simnet_step(net)) {}
    CHECK_EQ(fired_count, N);
    CHECK(fired_in_order);
    free(ids);
    pl_simnet_free(net);
}

static void detach_drops_datagrams_in_flight(void)
{
    pl_simnet *net = pl_simnet_new(7, T0);
    rec_ctx r = {.min_delay = PL_TIME_NEVER}, r2 = {.min_delay = PL_TIME_NEVER};
    pl_addr a = ep_addr(1), b = ep_addr(2);
    CHECK(pl_simnet_attach(net, &b, record, &r));
    CHECK(!pl_simnet_attach(net, &b, record, &r)); /* taken */
    pl_addr none;
    memset(&none, 0, sizeof none);
    CHECK(!pl_simnet_attach(net, &none, record, &r));
    pl_simnet_set_default_link(net, (pl_sim_link){10 * PL_MSEC, 0, 0});
    pl_simnet_send(net, &a, &b, (const uint8_t *)"x", 1);
    pl_simnet_send(net, &a, &b, (const uint8_t *)"y", 1);
    pl_simnet_run_until(net, T0 + 5 * PL_MSEC);
    pl_simnet_detach(net, &b);
    pl_simnet_detach(net, &b); /* twice: harmless */
    pl_simnet_run_until(net, T0 + 50 * PL_MSEC);
    CHECK_EQ(r.count, 0);
    pl_sim_stats st = pl_simnet_stats(net);
    CHECK_EQ(st.dropped_no_endpoint, 2);
    CHECK_EQ(st.delivered, 0);
    /* The address can be taken again, and a new datagram gets through. */
    CHECK(pl_simnet_attach(net, &b, record, &r2));
    pl_simnet_send(net, &a, &b, (const uint8_t *)"z", 1);
    while (pl_simnet_step(net)) {}
    CHECK_EQ(r2.count, 1);
    pl_simnet_free(net);
}

static void endpoint_table_survives_churn(void)
{
    /* Attach and detach in a pattern that exercises backward-shift deletion,
     * checking every survivor is still found. */
    pl_simnet *net = pl_simnet_new(8, T0);
    enum { N = 5000 };
    static rec_ctx r[N];
    memset(r, 0, sizeof r);
    for (uint32_t i = 0; i < N; i++) {
        pl_addr a = ep_addr(i);
        CHECK(pl_simnet_attach(net, &a, record, &r[i]));
    }
    for (uint32_t i = 0; i < N; i += 3) {
        pl_addr a = ep_addr(i);
        pl_simnet_detach(net, &a);
    }
    pl_addr src = ep_addr(999999);
    for (uint32_t i = 0; i < N; i++) {
        pl_addr a = ep_addr(i);
        pl_simnet_send(net, &src, &a, (const uint8_t *)"x", 1);
    }
    while (pl_simnet_step(net)) {}
    for (uint32_t i = 0; i < N; i++) CHECK_EQ(r[i].count, i % 3 == 0 ? 0 : 1);
    pl_simnet_free(net);
}

/* ---- scale ---------------------------------------------------------------------------------- */

#define SCALE_EPS 100000
#define SCALE_ROUNDS 10

typedef struct scale_node {
    pl_simnet *net;
    uint32_t i;
    int rounds;
    uint64_t got;
} scale_node;

static void scale_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len,
                       pl_time now)
{
    ((scale_node *)ctx)->got++;
}

static void scale_tick(void *ctx, pl_time now)
{
    scale_node *n = ctx;
    const pl_rng *rng = pl_simnet_rng(n->net);
    pl_addr me = ep_addr(n->i), to = ep_addr((uint32_t)pl_rng_below(rng, SCALE_EPS));
    uint8_t buf[120];
    memset(buf, (int)n->i, sizeof buf);
    pl_simnet_send(n->net, &me, &to, buf, sizeof buf);
    if (++n->rounds < SCALE_ROUNDS) pl_simnet_timer(n->net, now + 20 * PL_MSEC, scale_tick, n);
}

static void hundred_thousand_endpoints_a_million_datagrams(void)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pl_simnet *net = pl_simnet_new(9, T0);
    pl_simnet_set_default_link(net, (pl_sim_link){30 * PL_MSEC, 40 * PL_MSEC, 10000});
    scale_node *nodes = calloc(SCALE_EPS, sizeof *nodes);
    CHECK(nodes);
    for (uint32_t i = 0; i < SCALE_EPS; i++) {
        nodes[i].net = net;
        nodes[i].i = i;
        pl_addr a = ep_addr(i);
        CHECK(pl_simnet_attach(net, &a, scale_recv, &nodes[i]));
        pl_simnet_timer(net, T0 + pl_rng_below(pl_simnet_rng(net), 20 * PL_MSEC), scale_tick, &nodes[i]);
    }
    uint64_t events = 0;
    while (pl_simnet_step(net)) events++;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pl_sim_stats st = pl_simnet_stats(net);
    CHECK_EQ(st.sent, (uint64_t)SCALE_EPS * SCALE_ROUNDS);
    CHECK_EQ(st.delivered + st.dropped_loss, st.sent);
    uint64_t got = 0;
    for (uint32_t i = 0; i < SCALE_EPS; i++) got += nodes[i].got;
    CHECK_EQ(got, st.delivered);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("  %d endpoints, %llu datagrams, %llu events in %.2f s wall (%.2f M events/s)\n", SCALE_EPS,
           (unsigned long long)st.sent, (unsigned long long)events, secs, (double)events / secs / 1e6);
    free(nodes);
    pl_simnet_free(net);
}

/* A latency model: endpoints in the same /16 are 5 ms apart, others 80 ms;
 * an explicit override still wins. */
static pl_sim_link regions(void *ctx, const pl_addr *from, const pl_addr *to)
{
    (void)ctx;
    bool near = from->ip[1] == to->ip[1];
    return (pl_sim_link){near ? 5 * PL_MSEC : 80 * PL_MSEC, 0, 0};
}

static void a_latency_model_sets_links_without_a_table(void)
{
    pl_simnet *net = pl_simnet_new(3, T0);
    pl_simnet_set_link_model(net, regions, NULL);
    rec_ctx ra = {.min_delay = PL_TIME_NEVER}, rb = {.min_delay = PL_TIME_NEVER}, rc = {.min_delay = PL_TIME_NEVER};
    pl_addr a = ep_addr(1), b = ep_addr(2), c = ep_addr(0x10000 + 3);
    CHECK(pl_simnet_attach(net, &a, record, &ra));
    CHECK(pl_simnet_attach(net, &b, record, &rb));
    CHECK(pl_simnet_attach(net, &c, record, &rc));
    pl_time now = pl_simnet_now(net);
    pl_simnet_send(net, &a, &b, (const uint8_t *)&now, sizeof now);
    pl_simnet_send(net, &a, &c, (const uint8_t *)&now, sizeof now);
    pl_simnet_set_link(net, &c, &a, (pl_sim_link){1 * PL_MSEC, 0, 0});
    pl_simnet_send(net, &c, &a, (const uint8_t *)&now, sizeof now);
    while (pl_simnet_step(net)) {}
    CHECK_EQ(rb.min_delay, 5 * PL_MSEC);
    CHECK_EQ(rc.min_delay, 80 * PL_MSEC);
    CHECK_EQ(ra.min_delay, 1 * PL_MSEC);
    pl_simnet_free(net);
}

int main(void)
{
    RUN(latency_and_jitter_are_applied);
    RUN(links_override_one_direction);
    RUN(a_latency_model_sets_links_without_a_table);
    RUN(loss_rate_is_within_statistical_bounds);
    RUN(same_seed_same_run_different_seed_different_run);
    RUN(same_time_events_run_in_creation_order);
    RUN(timers_can_be_cancelled);
    RUN(many_cancelled_timers_do_not_pile_up);
    RUN(detach_drops_datagrams_in_flight);
    RUN(endpoint_table_survives_churn);
    RUN(hundred_thousand_endpoints_a_million_datagrams);
    return pl_test_summary();
}
