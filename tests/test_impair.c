/* test_impair.c - the impairment model's statistics for a fixed seed (loss,
 * burst length, delay distributions, the reordering jitter causes, explicit
 * reordering, duplication, the rate limiter), its reproducibility, the
 * bounded queue, and the core driven by the simulator in virtual time.
 *
 * Statistical bounds are several standard errors wide: for a fixed seed the
 * figures are fixed, and the bounds say the model does what it claims
 * rather than pinning one seed's exact numbers. */
#include <math.h>
#include <stdlib.h>

#include "impair.h"
#include "parley.h"
#include "simnet.h"
#include "test.h"

#define T0 (1700000000ull * PL_SEC)
#define MS PL_MSEC

static int cmp_time(const void *a, const void *b)
{
    pl_time x = *(const pl_time *)a, y = *(const pl_time *)b;
    return x < y ? -1 : x > y;
}

static double percentile(pl_time *v, size_t n, double q)
{
    qsort(v, n, sizeof *v, cmp_time);
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return (double)v[i];
}

static bool within(double measured, double want, double tolerance)
{
    bool ok = fabs(measured - want) <= tolerance;
    if (!ok) fprintf(stderr, "  measured %.5f, wanted %.5f +- %.5f\n", measured, want, tolerance);
    return ok;
}

/* Runs n datagrams through one direction's model, spacing apart, and counts fates. */
typedef struct run_result {
    uint64_t n, delivered, burst, loss, rate, dup, reordered;
    uint64_t bursts;      /* runs of consecutive burst losses */
    uint64_t burst_drops; /* datagrams in those runs */
} run_result;

static run_result run_model(const pl_impair_link *link, uint64_t seed, size_t n, pl_time spacing, pl_time *delays)
{
    pl_impair_model m;
    CHECK_EQ(pl_impair_link_check(link), PL_IMPAIR_OK);
    pl_impair_model_init(&m, link, seed);
    run_result r = {.n = n};
    bool in_burst = false;
    for (size_t i = 0; i < n; i++) {
        pl_time now = T0 + i * spacing;
        pl_impair_verdict v;
        pl_impair_model_decide(&m, now, 100, &v);
        bool lost = v.fate != PL_IMPAIR_DELIVER;
        if (v.fate == PL_IMPAIR_DROP_BURST) {
            r.burst++;
            if (!in_burst) r.bursts++;
        }
        in_burst = v.fate == PL_IMPAIR_DROP_BURST;
        if (v.fate == PL_IMPAIR_DROP_LOSS) r.loss++;
        if (v.fate == PL_IMPAIR_DROP_RATE) r.rate++;
        if (!lost) {
            r.delivered++;
            if (delays) delays[i] = v.due[0] - now;
            if (v.copies == 2) r.dup++;
            if (v.reordered) r.reordered++;
        } else if (delays) {
            delays[i] = PL_TIME_NEVER;
        }
    }
    return r;
}

static void random_loss_matches_the_setting(void)
{
    pl_impair_link l = {.loss = 0.05};
    size_t n = 100000;
    run_result r = run_model(&l, 1, n, 20 * MS, NULL);
    double p = (double)r.loss / (double)n, se = sqrt(0.05 * 0.95 / (double)n);
    printf("  random loss 5%%: measured %.3f%% of %zu\n", 100 * p, n);
    CHECK(within(p, 0.05, 5 * se));
    CHECK_EQ(r.burst, 0);
    CHECK_EQ(r.delivered + r.loss, n);
    /* Losses are independent: the mean run of consecutive losses is 1/(1-p). */
    pl_impair_model m;
    pl_impair_model_init(&m, &l, 2);
    uint64_t runs = 0, lost = 0;
    bool prev = false;
    for (size_t i = 0; i < n; i++) {
        pl_impair_verdict v;
        pl_impair_model_decide(&m, T0 + i * 20 * MS, 100, &v);
        bool now_lost = v.fate != PL_IMPAIR_DELIVER;
        if (now_lost && !prev) runs++;
        lost += now_lost;
        prev = now_lost;
    }
    CHECK(within((double)lost / (double)runs, 1.0 / 0.95, 0.03));
}

static void burst_loss_has_the_configured_rate_and_burst_length(void)
{
    pl_impair_link l = {.burst_loss = 0.05, .burst_len = 4.0};
    size_t n = 400000;
    run_result r = run_model(&l, 3, n, 20 * MS, NULL);
    double p = (double)r.burst / (double)n;
    double mean_len = (double)r.burst / (double)r.bursts;
    printf("  Gilbert-Elliott 5%%, bursts of 4: measured %.3f%%, mean burst %.2f over %llu bursts\n", 100 * p,
           mean_len, (unsigned long long)r.bursts);
    /* Bursts make the count lumpier than independent loss: the standard
     * error grows by about sqrt(2 L) for mean burst length L. */
    double se = sqrt(0.05 * 0.95 / (double)n) * sqrt(2 * 4.0);
    CHECK(within(p, 0.05, 5 * se));
    /* Burst lengths are geometric with mean 4 (sd ~3.5) over ~5000 bursts. */
    CHECK(within(mean_len, 4.0, 5 * 3.5 / sqrt((double)r.bursts)));
    CHECK_EQ(r.loss, 0);

    /* Bursts of one are independent loss, up to the chain's limit of 50%. */
    pl_impair_link single = {.burst_loss = 0.2, .burst_len = 1.0};
    run_result s = run_model(&single, 4, 100000, 20 * MS, NULL);
    CHECK(within((double)s.burst / 100000.0, 0.2, 5 * sqrt(0.2 * 0.8 / 100000.0)));
    pl_impair_link impossible = {.burst_loss = 0.6, .burst_len = 1.0};
    CHECK_EQ(pl_impair_link_check(&impossible), PL_IMPAIR_ERR_CONFIG);
}

static void delay_distributions_have_the_documented_shape(void)
{
    size_t n = 100000;
    pl_time *d = malloc(n * sizeof *d);
    CHECK(d != NULL);
    struct {
        pl_impair_jitter dist;
        double mean, p50, p99; /* extra delay in ms for jitter 10 ms */
    } want[] = {
        {PL_IMPAIR_JITTER_UNIFORM, 5.0, 5.0, 9.9},
        {PL_IMPAIR_JITTER_EXPONENTIAL, 10.0, 10.0 * log(2.0), 10.0 * log(100.0)},
        /* Lomax shape 2.5, scale 15: median 15 (2^0.4 - 1), p99 15 (100^0.4 - 1). */
        {PL_IMPAIR_JITTER_PARETO, 10.0, 15.0 * (pow(2.0, 0.4) - 1), 15.0 * (pow(100.0, 0.4) - 1)},
    };
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        pl_impair_link l = {.delay = 50 * MS, .jitter = 10 * MS, .jitter_dist = want[k].dist};
        run_model(&l, 5 + k, n, 20 * MS, d);
        double sum = 0;
        pl_time lo = PL_TIME_NEVER;
        for (size_t i = 0; i < n; i++) {
            sum += (double)d[i];
            if (d[i] < lo) lo = d[i];
        }
        double mean = sum / (double)n / 1000.0 - 50.0;
        double p50 = percentile(d, n, 0.5) / 1000.0 - 50.0;
        double p99 = percentile(d, n, 0.99) / 1000.0 - 50.0;
        printf("  %-11s jitter 10 ms over 50 ms: mean +%.2f, p50 +%.2f, p99 +%.2f ms (wanted %.2f/%.2f/%.2f)\n",
               pl_impair_jitter_name(want[k].dist), mean, p50, p99, want[k].mean, want[k].p50, want[k].p99);
        CHECK(lo >= 50 * MS);
        /* The tails' sampling error grows with the tail: 3% on the mean and
         * median, 6% on the 99th percentile is several standard errors. */
        CHECK(within(mean, want[k].mean, 0.03 * want[k].mean + 0.05));
        CHECK(within(p50, want[k].p50, 0.03 * want[k].p50 + 0.05));
        CHECK(within(p99, want[k].p99, 0.06 * want[k].p99));
    }
    free(d);
}

/* Counts adjacent pairs (sent T apart) that arrive swapped. */
static double adjacent_swaps(const pl_impair_link *l, uint64_t seed, size_t n, pl_time spacing)
{
    pl_impair_model m;
    pl_impair_model_init(&m, l, seed);
    pl_time prev_due = 0;
    size_t swaps = 0;
    for (size_t i = 0; i < n; i++) {
        pl_impair_verdict v;
        pl_impair_model_decide(&m, T0 + i * spacing, 100, &v);
        if (i > 0 && v.due[0] < prev_due) swaps++;
        prev_due = v.due[0];
    }
    return (double)swaps / (double)(n - 1);
}

static void jitter_reorders_as_documented_unless_fifo(void)
{
    size_t n = 100000;
    pl_impair_link u = {.delay = 20 * MS, .jitter = 40 * MS, .jitter_dist = PL_IMPAIR_JITTER_UNIFORM};
    double su = adjacent_swaps(&u, 7, n, 20 * MS);
    pl_impair_link e = {.delay = 20 * MS, .jitter = 10 * MS, .jitter_dist = PL_IMPAIR_JITTER_EXPONENTIAL};
    double se = adjacent_swaps(&e, 8, n, 20 * MS);
    printf("  adjacent swaps at 20 ms spacing: uniform 40 ms %.4f (theory 0.125), exponential 10 ms %.4f "
           "(theory %.4f)\n", su, se, 0.5 * exp(-2.0));
    CHECK(within(su, 0.125, 5 * sqrt(0.125 / (double)n)));
    CHECK(within(se, 0.5 * exp(-2.0), 5 * sqrt(0.07 / (double)n)));
    /* Uniform jitter narrower than the spacing never reorders. */
    pl_impair_link narrow = {.jitter = 19 * MS};
    CHECK(adjacent_swaps(&narrow, 9, 10000, 20 * MS) == 0.0);
    u.jitter_fifo = true;
    e.jitter_fifo = true;
    pl_impair_link p = {.jitter = 10 * MS, .jitter_dist = PL_IMPAIR_JITTER_PARETO, .jitter_fifo = true};
    CHECK(adjacent_swaps(&u, 7, n, 20 * MS) == 0.0);
    CHECK(adjacent_swaps(&e, 8, n, 20 * MS) == 0.0);
    CHECK(adjacent_swaps(&p, 8, n, 5 * MS) == 0.0);
}

static void explicit_reordering_holds_back_the_configured_fraction(void)
{
    /* 5 ms apart, gap 40 ms, no jitter: the seven datagrams sent after a
     * held one overtake it, and no datagram that is not held arrives after
     * one sent later. */
    pl_impair_link l = {.delay = 30 * MS, .reorder = 0.1, .reorder_gap = 40 * MS};
    size_t n = 50000;
    pl_time *due = malloc(n * sizeof *due);
    bool *was_held = calloc(n, sizeof *was_held);
    CHECK(due && was_held);
    pl_impair_model m;
    pl_impair_model_init(&m, &l, 10);
    size_t held = 0;
    for (size_t i = 0; i < n; i++) {
        pl_impair_verdict v;
        pl_impair_model_decide(&m, T0 + i * 5 * MS, 100, &v);
        held += v.reordered;
        was_held[i] = v.reordered;
        due[i] = v.due[0];
    }
    /* Late: due after some datagram sent later (walk back keeping the
     * earliest due time seen). */
    size_t late = 0, late_not_held = 0;
    pl_time min_after = PL_TIME_NEVER;
    for (size_t i = n; i-- > 0;) {
        if (due[i] > min_after) {
            late++;
            late_not_held += !was_held[i];
        }
        if (due[i] < min_after) min_after = due[i];
    }
    double f = (double)held / (double)n, fl = (double)late / (double)n;
    printf("  reorder 10%% (gap 40 ms, 5 ms apart): held %.3f%%, arrived after a later one %.3f%%\n", 100 * f,
           100 * fl);
    CHECK(within(f, 0.1, 5 * sqrt(0.09 / (double)n)));
    CHECK_EQ(late_not_held, 0);
    /* Only a held datagram followed by another held one within 40 ms can
     * escape being late; few do. */
    CHECK(late <= held && (double)late > 0.95 * (double)held);
    free(due);
    free(was_held);
    /* With the gap shorter than the spacing nothing is overtaken. */
    l.reorder_gap = 4 * MS;
    CHECK(adjacent_swaps(&l, 10, 10000, 5 * MS) == 0.0);
}

static void duplication_matches_the_setting(void)
{
    pl_impair_link l = {.delay = 10 * MS, .jitter = 5 * MS, .dup = 0.03};
    size_t n = 100000;
    run_result r = run_model(&l, 11, n, 20 * MS, NULL);
    double f = (double)r.dup / (double)n;
    printf("  duplication 3%%: measured %.3f%%\n", 100 * f);
    CHECK(within(f, 0.03, 5 * sqrt(0.03 * 0.97 / (double)n)));
}

static void same_seed_same_decisions_and_directions_are_independent(void)
{
    pl_impair_link l = {.delay = 40 * MS, .jitter = 20 * MS, .jitter_dist = PL_IMPAIR_JITTER_PARETO, .loss = 0.1,
                        .burst_loss = 0.05, .burst_len = 3, .reorder = 0.05, .reorder_gap = 30 * MS, .dup = 0.05};
    pl_impair_model a, b, c;
    pl_impair_model_init(&a, &l, 42);
    pl_impair_model_init(&b, &l, 42);
    pl_impair_model_init(&c, &l, 43);
    int differ = 0;
    for (int i = 0; i < 5000; i++) {
        pl_impair_verdict va, vb, vc;
        pl_impair_model_decide(&a, T0 + (pl_time)i * 7 * MS, 200, &va);
        pl_impair_model_decide(&b, T0 + (pl_time)i * 7 * MS, 200, &vb);
        pl_impair_model_decide(&c, T0 + (pl_time)i * 7 * MS, 200, &vc);
        CHECK(memcmp(&va, &vb, sizeof va) == 0);
        differ += memcmp(&va, &vc, sizeof va) != 0;
    }
    CHECK(differ > 1000);

    /* The same jitter samples whatever the loss: raising the loss only
     * removes datagrams, it does not move the survivors. */
    pl_impair_link l1 = {.delay = 40 * MS, .jitter = 20 * MS, .loss = 0.01};
    pl_impair_link l2 = l1;
    l2.loss = 0.2;
    pl_impair_model_init(&a, &l1, 5);
    pl_impair_model_init(&b, &l2, 5);
    for (int i = 0; i < 2000; i++) {
        pl_impair_verdict va, vb;
        pl_impair_model_decide(&a, T0 + (pl_time)i * 20 * MS, 100, &va);
        pl_impair_model_decide(&b, T0 + (pl_time)i * 20 * MS, 100, &vb);
        if (va.fate == PL_IMPAIR_DELIVER && vb.fate == PL_IMPAIR_DELIVER) CHECK_EQ(va.due[0], vb.due[0]);
        if (va.fate != PL_IMPAIR_DELIVER) CHECK(vb.fate != PL_IMPAIR_DELIVER);
    }

    /* Through the queue: the downstream decisions do not depend on how much
     * traffic went upstream. */
    pl_impair_config cfg = {.seed = 9, .queue_slots = 16384};
    cfg.link[PL_IMPAIR_UP] = l;
    cfg.link[PL_IMPAIR_DOWN] = l;
    pl_impair *x = pl_impair_new(&cfg, NULL, NULL);
    pl_impair *y = pl_impair_new(&cfg, NULL, NULL);
    CHECK(x && y);
    uint8_t pkt[4];
    for (uint32_t i = 0; i < 3000; i++) {
        memcpy(pkt, &i, 4);
        pl_time now = T0 + (pl_time)i * 10 * MS;
        pl_impair_offer(x, PL_IMPAIR_DOWN, now, pkt, 4, 0);
        pl_impair_offer(y, PL_IMPAIR_DOWN, now, pkt, 4, 0);
        pl_impair_offer(y, PL_IMPAIR_UP, now, pkt, 4, 0); /* extra upstream traffic in y */
        pl_impair_offer(y, PL_IMPAIR_UP, now, pkt, 4, 0);
    }
    pl_impair_datagram dx, dy;
    int compared = 0;
    for (;;) {
        bool gx = pl_impair_take(x, PL_TIME_NEVER - 1, &dx);
        bool gy;
        do gy = pl_impair_take(y, PL_TIME_NEVER - 1, &dy);
        while (gy && dy.dir != PL_IMPAIR_DOWN);
        CHECK_EQ(gx, gy);
        if (!gx) break;
        CHECK_EQ(dx.due, dy.due);
        CHECK(dx.len == dy.len && memcmp(dx.data, dy.data, dx.len) == 0);
        compared++;
    }
    CHECK(compared > 2000);
    pl_impair_free(x);
    pl_impair_free(y);
}

static void rate_limit_serialises_and_tail_drops(void)
{
    /* 64 kbit/s: a 100-byte payload is 128 bytes on the wire, 16 ms. */
    pl_impair_link l = {.rate_bps = 64000, .rate_queue = 100 * MS};
    pl_impair_model m;
    pl_impair_model_init(&m, &l, 12);
    int delivered = 0, dropped = 0;
    pl_time last = T0;
    for (int i = 0; i < 20; i++) {
        pl_impair_verdict v;
        pl_impair_model_decide(&m, T0, 100, &v); /* a burst of 20 at once */
        if (v.fate == PL_IMPAIR_DROP_RATE) {
            dropped++;
            continue;
        }
        CHECK_EQ(v.fate, PL_IMPAIR_DELIVER);
        CHECK_EQ(v.due[0] - last, 16 * MS);
        last = v.due[0];
        delivered++;
    }
    /* Backlogs of 0, 16, ..., 96 ms are accepted; 112 ms is not. */
    CHECK_EQ(delivered, 7);
    CHECK_EQ(dropped, 13);
    /* Once the link drains it accepts again at once. */
    pl_impair_verdict v;
    pl_impair_model_decide(&m, T0 + 200 * MS, 100, &v);
    CHECK_EQ(v.fate, PL_IMPAIR_DELIVER);
    CHECK_EQ(v.due[0], T0 + 216 * MS);
}

static void queue_is_bounded_ordered_and_copies(void)
{
    pl_impair_config cfg = {.seed = 1, .queue_slots = 8};
    cfg.link[PL_IMPAIR_UP].delay = 10 * MS;
    cfg.link[PL_IMPAIR_DOWN].delay = 5 * MS;
    pl_impair *im = pl_impair_new(&cfg, NULL, NULL);
    CHECK(im != NULL);
    CHECK_EQ(pl_impair_next_due(im), PL_TIME_NEVER);
    uint8_t buf[PL_IMPAIR_MAX_DATAGRAM + 1];
    for (int i = 0; i < 10; i++) {
        buf[0] = (uint8_t)i;
        unsigned dir = i % 2 ? PL_IMPAIR_DOWN : PL_IMPAIR_UP;
        CHECK_EQ(pl_impair_offer(im, dir, T0 + (pl_time)i * MS, buf, 1 + (size_t)i, 100 + (uint64_t)i), i < 8);
        buf[0] = 0xee; /* the queue holds its own copy */
    }
    CHECK_EQ(pl_impair_offer(im, PL_IMPAIR_UP, T0, buf, sizeof buf, 0), 0); /* too big */
    CHECK_EQ(pl_impair_held(im), 8);
    pl_impair_stats su, sd;
    pl_impair_get_stats(im, PL_IMPAIR_UP, &su);
    pl_impair_get_stats(im, PL_IMPAIR_DOWN, &sd);
    CHECK_EQ(su.dropped_full + sd.dropped_full, 2);
    CHECK_EQ(su.too_big, 1);
    /* Down datagrams (odd, +5 ms) and up (even, +10 ms) interleave by due time. */
    CHECK_EQ(pl_impair_next_due(im), T0 + 6 * MS);
    pl_impair_datagram d;
    CHECK(!pl_impair_take(im, T0 + 6 * MS - 1, &d));
    int expect[] = {1, 3, 0, 5, 2, 7, 4, 6}; /* ties (0 and 5, 2 and 7) in queueing order */
    pl_time prev = 0;
    for (int k = 0; k < 8; k++) {
        CHECK(pl_impair_take(im, T0 + 100 * MS, &d));
        CHECK_EQ(d.data[0], expect[k]);
        CHECK_EQ(d.len, 1 + (size_t)expect[k]);
        CHECK_EQ(d.tag, 100 + (uint64_t)expect[k]);
        CHECK_EQ(d.dir, expect[k] % 2 ? PL_IMPAIR_DOWN : PL_IMPAIR_UP);
        CHECK(d.due >= prev);
        prev = d.due;
    }
    CHECK(!pl_impair_take(im, PL_TIME_NEVER - 1, &d));
    /* Slots come back: the queue takes 8 more. */
    for (int i = 0; i < 8; i++) CHECK_EQ(pl_impair_offer(im, PL_IMPAIR_UP, T0, buf, 1, 0), 1);
    /* Equal due times come out in the order they went in. */
    pl_time t = 0;
    for (int i = 0; i < 8; i++) {
        CHECK(pl_impair_take(im, T0 + 10 * MS, &d));
        CHECK(d.due >= t);
        t = d.due;
    }
    pl_impair_free(im);

    pl_impair_config bad = {.seed = 1};
    bad.link[PL_IMPAIR_DOWN].loss = 1.5;
    pl_impair_err err = PL_IMPAIR_OK;
    CHECK(pl_impair_new(&bad, NULL, &err) == NULL);
    CHECK_EQ(err, PL_IMPAIR_ERR_CONFIG);
    bad.link[PL_IMPAIR_DOWN].loss = NAN;
    CHECK_EQ(pl_impair_link_check(&bad.link[PL_IMPAIR_DOWN]), PL_IMPAIR_ERR_CONFIG);
    pl_impair_jitter j;
    CHECK(pl_impair_jitter_parse("pareto", &j) && j == PL_IMPAIR_JITTER_PARETO);
    CHECK(!pl_impair_jitter_parse("gauss", &j));
}

/* ---- the core between two simulated endpoints ------------------------------------------ */

typedef struct sim_relay {
    pl_simnet *net;
    pl_impair *im;
    pl_addr self, upstream, client;
    uint64_t timer;
    pl_time timer_due;
} sim_relay;

typedef struct sim_sink {
    uint32_t got, late, max_seq;
    bool any;
    double delay_sum;
} sim_sink;

static void relay_flush(void *ctx, pl_time now);

static void relay_arm(sim_relay *r)
{
    pl_time due = pl_impair_next_due(r->im);
    if (due == r->timer_due) return;
    if (r->timer) pl_simnet_timer_cancel(r->net, r->timer);
    r->timer = 0;
    r->timer_due = due;
    if (due != PL_TIME_NEVER) r->timer = pl_simnet_timer(r->net, due, relay_flush, r);
}

static void relay_flush(void *ctx, pl_time now)
{
    sim_relay *r = ctx;
    r->timer = 0;
    r->timer_due = PL_TIME_NEVER;
    pl_impair_datagram d;
    while (pl_impair_take(r->im, now, &d))
        pl_simnet_send(r->net, &r->self, d.dir == PL_IMPAIR_UP ? &r->upstream : &r->client, d.data, d.len);
    relay_arm(r);
}

static void relay_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len,
                       pl_time now)
{
    sim_relay *r = ctx;
    unsigned dir = pl_addr_equal(from, &r->upstream) ? PL_IMPAIR_DOWN : PL_IMPAIR_UP;
    if (dir == PL_IMPAIR_UP) r->client = *from;
    pl_impair_offer(r->im, dir, now, data, len, 0);
    relay_arm(r);
}

static void sink_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len,
                      pl_time now)
{
    sim_sink *s = ctx;
    uint32_t seq;
    pl_time sent;
    memcpy(&seq, data, 4);
    memcpy(&sent, data + 4, 8);
    s->got++;
    s->delay_sum += (double)(now - sent);
    if (s->any && seq < s->max_seq) s->late++;
    if (!s->any || seq > s->max_seq) s->max_seq = seq;
    s->any = true;
}

typedef struct sim_sender {
    pl_simnet *net;
    pl_addr self, relay;
    uint32_t seq, count;
} sim_sender;

static void sender_tick(void *ctx, pl_time now)
{
    sim_sender *s = ctx;
    uint8_t pkt[12];
    memcpy(pkt, &s->seq, 4);
    memcpy(pkt + 4, &now, 8);
    pl_simnet_send(s->net, &s->self, &s->relay, pkt, sizeof pkt);
    if (++s->seq < s->count) pl_simnet_timer(s->net, now + 20 * MS, sender_tick, s);
}

static void the_simulator_drives_the_core_in_virtual_time(void)
{
    /* A voice-like stream, 50 datagrams a second for 60 virtual seconds,
     * through 80 ms + exponential jitter (mean 10 ms) and 3% loss; the
     * simulated links themselves add 1 ms each way. */
    pl_simnet *net = pl_simnet_new(77, T0);
    CHECK(net != NULL);
    pl_simnet_set_default_link(net, (pl_sim_link){.latency = 1 * MS});
    pl_impair_config cfg = {.seed = 3};
    cfg.link[PL_IMPAIR_UP] = (pl_impair_link){.delay = 80 * MS, .jitter = 10 * MS,
                                              .jitter_dist = PL_IMPAIR_JITTER_EXPONENTIAL, .loss = 0.03};
    sim_relay relay = {.net = net, .timer_due = PL_TIME_NEVER};
    relay.im = pl_impair_new(&cfg, NULL, NULL);
    CHECK(relay.im != NULL);
    CHECK(pl_addr_parse(&relay.self, "192.0.2.1:4000", 0));
    CHECK(pl_addr_parse(&relay.upstream, "192.0.2.2:5000", 0));
    sim_sender snd = {.net = net, .count = 3000};
    CHECK(pl_addr_parse(&snd.self, "192.0.2.3:6000", 0));
    snd.relay = relay.self;
    sim_sink sink = {0};
    CHECK(pl_simnet_attach(net, &relay.self, relay_recv, &relay));
    CHECK(pl_simnet_attach(net, &relay.upstream, sink_recv, &sink));
    pl_simnet_timer(net, T0, sender_tick, &snd);
    pl_simnet_run_until(net, T0 + 70 * PL_SEC);
    double loss = 1.0 - sink.got / 3000.0;
    double mean_ms = sink.delay_sum / sink.got / 1000.0;
    printf("  simulated 60 s voice stream: loss %.2f%%, mean delay %.1f ms (80 + 10 + 2 links), %u late\n",
           100 * loss, mean_ms, sink.late);
    CHECK(within(loss, 0.03, 5 * sqrt(0.03 * 0.97 / 3000.0)));
    CHECK(within(mean_ms, 92.0, 1.5));
    /* Exponential jitter of mean 10 ms at 20 ms spacing swaps ~6.8% of pairs. */
    CHECK(sink.late > 60 && sink.late < 400);
    pl_impair_free(relay.im);
    pl_simnet_free(net);
}

int main(void)
{
    RUN(random_loss_matches_the_setting);
    RUN(burst_loss_has_the_configured_rate_and_burst_length);
    RUN(delay_distributions_have_the_documented_shape);
    RUN(jitter_reorders_as_documented_unless_fifo);
    RUN(explicit_reordering_holds_back_the_configured_fraction);
    RUN(duplication_matches_the_setting);
    RUN(same_seed_same_decisions_and_directions_are_independent);
    RUN(rate_limit_serialises_and_tail_drops);
    RUN(queue_is_bounded_ordered_and_copies);
    RUN(the_simulator_drives_the_core_in_virtual_time);
    return pl_test_summary();
}
