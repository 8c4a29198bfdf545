/*
 * test_jitter.c - the adaptive jitter buffer against modelled networks.
 *
 * A sender makes one packet per 20 ms frame (or, in DTX, a silence packet
 * and then nothing); the network adds a base latency, seeded jitter
 * (uniform or exponential), loss, duplicates; the receiver pulls a frame
 * every 20 ms of its own clock, which may run at a different rate. Packets
 * carry their frame number, so a test can check that frames come out in
 * order and that FEC names the right packet.
 */
#include <math.h>
#include <stdlib.h>

#include "jitter.h"
#include "media_packet.h"
#include "test.h"

#define T0 ((pl_time)1800000000 * PL_SEC)

typedef struct net_cfg {
    double seconds;
    pl_time latency;
    pl_time jitter;        /* uniform in [0, jitter], or exponential with this mean */
    bool exponential;
    int loss_permille;
    int dup_permille;
    double rx_ppm;         /* receiver clock rate error: positive pulls less often */
    pl_time rx_phase;      /* first pull this long after the first send */
    int talk_frames;       /* DTX pattern: this many frames of talk ... */
    int silence_frames;    /* ... then this many of silence (0: always talk) */
    uint16_t seq0;
    uint32_t ts0;
    uint64_t seed;
    double converge_s;     /* counters after this are reported separately */
    int swap_every;        /* swap packets k and k+1 every this many (0: none) */
} net_cfg;

typedef struct net_result {
    pl_jitter_stats st, at_conv;
    uint64_t sent, sent_after_conv;
    uint64_t lost_net;
    int order_errors;
    int fec_wrong;
    uint64_t talk_frames_out; /* PLAY frames */
    double late_frac;         /* late packets after convergence / packets sent after it */
} net_result;

typedef struct pkt {
    pl_time arrival;
    uint16_t seq;
    uint32_t ts;
    uint8_t flags;
    uint8_t data[4];
    size_t len;
} pkt;

static uint64_t rng_state;
static double urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static int cmp_arrival(const void *a, const void *b)
{
    const pkt *x = a, *y = b;
    return x->arrival < y->arrival ? -1 : x->arrival > y->arrival;
}

static pl_time sample_jitter(const net_cfg *c)
{
    if (!c->jitter) return 0;
    if (c->exponential) return (pl_time)(-log(1 - urand()) * (double)c->jitter);
    return (pl_time)(urand() * (double)(c->jitter + 1));
}

static net_result run_net(const net_cfg *c, const pl_jitter_config *jcfg)
{
    net_result res;
    memset(&res, 0, sizeof res);
    rng_state = c->seed ? c->seed : 88172645463325252ull;
    size_t frames = (size_t)(c->seconds * 50);
    pkt *pkts = calloc(frames * 2 + 1, sizeof *pkts);
    CHECK(pkts != NULL);
    size_t np = 0;
    uint16_t seq = c->seq0;
    int cycle = c->talk_frames + c->silence_frames;
    bool prev_silent = false;
    for (size_t k = 0; k < frames; k++) {
        bool silent = c->silence_frames && (int)(k % (size_t)cycle) >= c->talk_frames;
        if (silent && prev_silent) continue; /* DTX: nothing sent */
        pkt p;
        memset(&p, 0, sizeof p);
        p.seq = seq++;
        p.ts = c->ts0 + (uint32_t)(k * PL_VOICE_FRAME);
        p.flags = silent ? PL_MPKT_F_SILENCE : 0;
        if (!silent && prev_silent) p.flags |= PL_MPKT_F_MARKER;
        prev_silent = silent;
        p.data[0] = (uint8_t)(k >> 24);
        p.data[1] = (uint8_t)(k >> 16);
        p.data[2] = (uint8_t)(k >> 8);
        p.data[3] = (uint8_t)k;
        p.len = silent ? 1 : 4;
        res.sent++;
        if (k * 0.02 >= c->converge_s) res.sent_after_conv++;
        pl_time send = T0 + (pl_time)k * PL_VOICE_FRAME_US;
        if ((int)(urand() * 1000) < c->loss_permille) {
            res.lost_net++;
            continue;
        }
        p.arrival = send + c->latency + sample_jitter(c);
        pkts[np++] = p;
        if ((int)(urand() * 1000) < c->dup_permille) {
            p.arrival = send + c->latency + sample_jitter(c);
            pkts[np++] = p;
        }
    }
    if (c->swap_every) {
        /* Explicit reordering: every n-th pair arrives swapped. */
        for (size_t i = 0; i + 1 < np; i += (size_t)c->swap_every) {
            pl_time a = pkts[i].arrival;
            pkts[i].arrival = pkts[i + 1].arrival + 1;
            pkts[i + 1].arrival = a;
        }
    }
    qsort(pkts, np, sizeof *pkts, cmp_arrival);

    pl_jitter *jb = pl_jitter_new(jcfg, NULL);
    CHECK(jb != NULL);
    double period = PL_VOICE_FRAME_US * (1 + c->rx_ppm * 1e-6);
    pl_time end = T0 + (pl_time)(c->seconds * PL_SEC) + c->latency + 500 * PL_MSEC;
    size_t next = 0;
    long last_frame = -1;
    bool conv_taken = false;
    for (uint64_t tick = 0;; tick++) {
        pl_time now = T0 + c->rx_phase + (pl_time)(tick * period);
        if (now > end) break;
        while (next < np && pkts[next].arrival <= now) {
            pkt *p = &pkts[next++];
            pl_jitter_put(jb, p->seq, p->ts, p->flags, p->data, p->len, p->arrival);
        }
        if (!conv_taken && now >= T0 + (pl_time)(c->converge_s * PL_SEC)) {
            res.at_conv = pl_jitter_get_stats(jb);
            conv_taken = true;
        }
        pl_jitter_frame f = pl_jitter_pull(jb, now);
        /* The call ends when the last packet has been played. */
        bool done = next == np && pl_jitter_get_stats(jb).buffered == 0;
        if (f.action == PL_JITTER_PLAY && f.len == 4) {
            long k = (long)(((uint32_t)f.packet[0] << 24) | ((uint32_t)f.packet[1] << 16) |
                            ((uint32_t)f.packet[2] << 8) | f.packet[3]);
            if (k <= last_frame) res.order_errors++;
            last_frame = k;
            res.talk_frames_out++;
        } else if (f.action == PL_JITTER_FEC) {
            CHECK(f.len == 4 || f.len == 1);
            if (f.len == 4) {
                long k = (long)(((uint32_t)f.packet[0] << 24) | ((uint32_t)f.packet[1] << 16) |
                                ((uint32_t)f.packet[2] << 8) | f.packet[3]);
                /* The FEC packet is the frame after the one lost. */
                if (last_frame >= 0 && k != last_frame + 2 && k <= last_frame) res.fec_wrong++;
            }
        }
        if (done) break;
    }
    res.st = pl_jitter_get_stats(jb);
    if (!conv_taken) res.at_conv = res.st;
    uint64_t late = res.st.late - res.at_conv.late;
    res.late_frac = res.sent_after_conv ? (double)late / (double)res.sent_after_conv : 0;
    pl_jitter_free(jb);
    free(pkts);
    return res;
}

static void print_result(const char *what, const net_result *r)
{
    printf("  %s: sent %llu, played %llu, concealed %llu, fec %llu, silence %llu, late %llu (%.2f%% after "
           "convergence), dup %llu, inserted %llu, dropped %llu; delay avg %.1f ms (target %.1f), wait avg %.1f ms\n",
           what, (unsigned long long)r->sent, (unsigned long long)r->st.played,
           (unsigned long long)r->st.concealed, (unsigned long long)r->st.fec, (unsigned long long)r->st.silence,
           (unsigned long long)r->st.late, r->late_frac * 100, (unsigned long long)r->st.duplicate,
           (unsigned long long)r->st.inserted, (unsigned long long)r->st.dropped, r->st.delay_avg / 1000.0,
           r->st.target / 1000.0, r->st.wait_avg / 1000.0);
}

/* No jitter: the buffer adds at most about one frame (the wait for the next
 * tick plus a small margin), whatever the phase of the receiver's ticks. */
static void test_zero_jitter_adds_one_frame(void)
{
    pl_time phases[] = {0, 1 * PL_MSEC, 7 * PL_MSEC, 13 * PL_MSEC, 19 * PL_MSEC, 19900};
    for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++) {
        net_cfg c = {.seconds = 10, .latency = 40 * PL_MSEC, .rx_phase = phases[i], .converge_s = 1,
                     .seq0 = 65500, .ts0 = 0xfffff000u};
        net_result r = run_net(&c, NULL);
        if (i == 0 || i == 4) print_result("0 ms jitter", &r);
        CHECK_EQ(r.order_errors, 0);
        CHECK_EQ(r.st.late, 0);
        CHECK_EQ(r.st.concealed, 0);
        CHECK_EQ(r.st.played, r.sent);
        CHECK(r.st.delay_avg <= 25 * PL_MSEC);
        CHECK(r.st.wait_avg <= 25 * PL_MSEC);
        CHECK(r.st.target <= 5 * PL_MSEC);
    }
}

/* 30 ms of uniform jitter: after a few seconds the target covers it; few
 * packets are late and the delay stays near the jitter's range. */
static void test_uniform_jitter_adapts(void)
{
    net_cfg c = {.seconds = 30, .latency = 40 * PL_MSEC, .jitter = 30 * PL_MSEC, .converge_s = 5, .seed = 7};
    net_result r = run_net(&c, NULL);
    print_result("30 ms uniform", &r);
    CHECK_EQ(r.order_errors, 0);
    CHECK(r.late_frac <= 0.03);
    CHECK(r.st.target >= 20 * PL_MSEC && r.st.target <= 40 * PL_MSEC);
    CHECK(r.st.delay_avg <= 60 * PL_MSEC);
    /* Every packet is played or was late (no loss on this network). */
    CHECK_EQ(r.st.played + r.st.late, r.sent);

    net_cfg e = {.seconds = 30, .latency = 40 * PL_MSEC, .jitter = 10 * PL_MSEC, .exponential = true,
                 .converge_s = 5, .seed = 8};
    r = run_net(&e, NULL);
    print_result("10 ms exponential", &r);
    CHECK(r.late_frac <= 0.05);
    CHECK(r.st.delay_avg <= 70 * PL_MSEC);
}

/* Jitter that starts late in the call: the buffer grows to it. */
static void test_grows_when_jitter_appears(void)
{
    net_cfg quiet = {.seconds = 10, .latency = 40 * PL_MSEC, .converge_s = 1};
    net_result r0 = run_net(&quiet, NULL);
    net_cfg c = {.seconds = 10, .latency = 40 * PL_MSEC, .jitter = 60 * PL_MSEC, .converge_s = 3, .seed = 3};
    net_result r = run_net(&c, NULL);
    print_result("60 ms uniform", &r);
    CHECK(r.st.delay_avg > r0.st.delay_avg + 30 * PL_MSEC);
    CHECK(r.st.inserted > 0);
    CHECK(r.late_frac <= 0.05);
}

static void test_reorder_and_duplicates(void)
{
    net_cfg c = {.seconds = 10, .latency = 30 * PL_MSEC, .jitter = 5 * PL_MSEC, .dup_permille = 50,
                 .swap_every = 7, .converge_s = 2, .seed = 11};
    net_result r = run_net(&c, NULL);
    print_result("swapped pairs, 5% duplicates", &r);
    CHECK_EQ(r.order_errors, 0);
    CHECK(r.st.duplicate >= r.sent * 3 / 100 && r.st.duplicate <= r.sent * 7 / 100);
    CHECK_EQ(r.st.played + r.st.late, r.sent);
    CHECK(r.st.late <= r.sent / 50);
}

/* 5% loss: every lost frame is rebuilt from FEC or concealed, and counted. */
static void test_loss_concealed_and_counted(void)
{
    net_cfg c = {.seconds = 20, .latency = 30 * PL_MSEC, .jitter = 2 * PL_MSEC, .loss_permille = 50,
                 .converge_s = 2, .seed = 5};
    net_result r = run_net(&c, NULL);
    print_result("5% loss", &r);
    CHECK_EQ(r.order_errors, 0);
    CHECK_EQ(r.fec_wrong, 0);
    CHECK(r.lost_net > 30);
    /* Each lost packet becomes one FEC or concealed frame (a loss at the very
     * end may never be reached). */
    CHECK(r.st.fec + r.st.concealed >= r.lost_net - 1);
    CHECK(r.st.fec + r.st.concealed <= r.lost_net + r.st.inserted);
    CHECK_EQ(r.st.played + r.st.late + r.lost_net, r.sent);
    /* Loss makes the buffer keep one frame more, so most losses get FEC. */
    CHECK(r.st.fec >= r.lost_net * 7 / 10);
}

/* DTX: the gaps between talk spurts are comfort noise, not loss. */
static void test_dtx_gaps_are_silence(void)
{
    net_cfg c = {.seconds = 20, .latency = 30 * PL_MSEC, .jitter = 10 * PL_MSEC, .talk_frames = 60,
                 .silence_frames = 40, .converge_s = 3, .seed = 9};
    net_result r = run_net(&c, NULL);
    print_result("DTX 1.2 s talk / 0.8 s silence", &r);
    CHECK_EQ(r.order_errors, 0);
    CHECK(r.st.silence >= 9 * 38); /* the run ends at the last silence packet */
    CHECK(r.st.concealed <= 5);
    CHECK(r.late_frac <= 0.03);
}

/* The two clocks differ by 0.5%: the buffer follows by dropping (receiver
 * slow) or inserting (receiver fast) frames, mostly in silence, and the
 * delay stays bounded. */
static void test_clock_drift(void)
{
    for (int dir = -1; dir <= 1; dir += 2) {
        net_cfg c = {.seconds = 60, .latency = 30 * PL_MSEC, .jitter = 5 * PL_MSEC, .rx_ppm = 5000.0 * dir,
                     .talk_frames = 150, .silence_frames = 50, .converge_s = 5, .seed = 12};
        net_result r = run_net(&c, NULL);
        print_result(dir > 0 ? "receiver 0.5% slow" : "receiver 0.5% fast", &r);
        CHECK_EQ(r.order_errors, 0);
        /* 60 s at 0.5% is 300 ms: 15 frames to drop or insert. */
        if (dir > 0) CHECK(r.st.dropped >= 12);
        else CHECK(r.st.inserted >= 12);
        CHECK(r.st.delay <= 60 * PL_MSEC);
        CHECK(r.late_frac <= 0.03);
        CHECK(r.st.concealed <= 20);
    }
    /* Without silence (DTX off) the buffer still sheds drift, in speech. */
    net_cfg c = {.seconds = 60, .latency = 30 * PL_MSEC, .rx_ppm = 5000, .converge_s = 5};
    net_result r = run_net(&c, NULL);
    print_result("receiver 0.5% slow, no silence", &r);
    CHECK(r.st.dropped >= 12);
    CHECK(r.st.delay <= 80 * PL_MSEC);
}

/* A packet for a frame already played is late: counted, not played. */
static void test_late_packet_counted(void)
{
    pl_jitter *jb = pl_jitter_new(NULL, NULL);
    CHECK(jb != NULL);
    uint8_t d[4] = {1, 2, 3, 4};
    pl_time t = T0;
    pl_jitter_put(jb, 1, 960, 0, d, 4, t);
    pl_jitter_frame f = pl_jitter_pull(jb, t + 5 * PL_MSEC);
    CHECK_EQ(f.action, PL_JITTER_PLAY);
    f = pl_jitter_pull(jb, t + 25 * PL_MSEC);
    CHECK_EQ(f.action, PL_JITTER_CONCEAL); /* frame 2 missing: lost */
    pl_jitter_put(jb, 2, 1920, 0, d, 4, t + 30 * PL_MSEC);
    pl_jitter_put(jb, 2, 1920, 0, d, 4, t + 31 * PL_MSEC);
    pl_jitter_stats st = pl_jitter_get_stats(jb);
    CHECK_EQ(st.late, 1);
    CHECK_EQ(st.duplicate, 1);
    CHECK_EQ(st.concealed, 1);
    /* Empty before any packet. */
    pl_jitter_reset(jb);
    f = pl_jitter_pull(jb, t);
    CHECK_EQ(f.action, PL_JITTER_EMPTY);
    /* Oversized and empty packets are ignored. */
    uint8_t big[PL_VOICE_MAX_PACKET + 1] = {0};
    pl_jitter_put(jb, 1, 0, 0, big, sizeof big, t);
    pl_jitter_put(jb, 1, 0, 0, big, 0, t);
    CHECK_EQ(pl_jitter_get_stats(jb).received, 0);
    pl_jitter_free(jb);
}

/* The peer's timestamps jump (it paused its clock on hold, or restarted):
 * the buffer resynchronises and plays on. */
static void test_resync_after_jump(void)
{
    pl_jitter *jb = pl_jitter_new(NULL, NULL);
    CHECK(jb != NULL);
    uint8_t d[4] = {0};
    pl_time t = T0;
    uint16_t seq = 100;
    uint32_t ts = 5000;
    int played = 0;
    for (int k = 0; k < 100; k++, t += 20 * PL_MSEC) {
        if (k == 50) ts += 48000 * 30; /* 30 s forward */
        pl_jitter_put(jb, seq++, ts, 0, d, 4, t);
        ts += 960;
        played += pl_jitter_pull(jb, t + 2 * PL_MSEC).action == PL_JITTER_PLAY;
    }
    for (int k = 0; k < 50; k++, t += 20 * PL_MSEC) {
        if (k == 0) ts -= 48000 * 60; /* and back, with newer sequence numbers */
        pl_jitter_put(jb, seq++, ts, 0, d, 4, t);
        ts += 960;
        played += pl_jitter_pull(jb, t + 2 * PL_MSEC).action == PL_JITTER_PLAY;
    }
    pl_jitter_stats st = pl_jitter_get_stats(jb);
    CHECK_EQ(st.resyncs, 2);
    CHECK(played >= 140);
    for (int k = 0; k < 3; k++, t += 20 * PL_MSEC) pl_jitter_pull(jb, t);
    CHECK_EQ(pl_jitter_get_stats(jb).buffered, 0);
    /* Peer on hold: missing frames are silence. */
    pl_jitter_set_peer_hold(jb, true);
    for (int k = 0; k < 10; k++, t += 20 * PL_MSEC) CHECK_EQ(pl_jitter_pull(jb, t).action, PL_JITTER_SILENCE);
    pl_jitter_free(jb);
}

int main(void)
{
    RUN(test_zero_jitter_adds_one_frame);
    RUN(test_uniform_jitter_adapts);
    RUN(test_grows_when_jitter_appears);
    RUN(test_reorder_and_duplicates);
    RUN(test_loss_concealed_and_counted);
    RUN(test_dtx_gaps_are_silence);
    RUN(test_clock_drift);
    RUN(test_late_packet_counted);
    RUN(test_resync_after_jump);
    return pl_test_summary();
}
