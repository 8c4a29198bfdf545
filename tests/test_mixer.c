/* test_mixer.c - the conference mixer: each participant hears everyone but
 * itself (checked by correlation), ten participants, joining and leaving
 * mid-stream, no wrap-around when everyone shouts, jitter between legs
 * absorbed, delay bounded; and the host election. */
#include <math.h>
#include <stdlib.h>

#include "mixer.h"
#include "test.h"

#define SECONDS 1
#define FRAMES (SECONDS * 50)
#define N_SAMPLES (FRAMES * PL_MIX_FRAME)

typedef struct signal {
    int16_t *pcm; /* N_SAMPLES */
} signal;

static void make_tone(signal *s, double hz, double amp)
{
    s->pcm = malloc(N_SAMPLES * sizeof *s->pcm);
    for (int i = 0; i < N_SAMPLES; i++) s->pcm[i] = (int16_t)lrint(amp * sin(2 * M_PI * hz * i / PL_MIX_RATE));
}

/* White noise from a small LCG, one stream per seed. */
static void make_noise(signal *s, uint32_t seed, double amp)
{
    s->pcm = malloc(N_SAMPLES * sizeof *s->pcm);
    uint32_t x = seed * 2654435761u + 1;
    for (int i = 0; i < N_SAMPLES; i++) {
        x = x * 1664525u + 1013904223u;
        double u = ((x >> 8) / 16777216.0) * 2 - 1;
        s->pcm[i] = (int16_t)lrint(amp * u);
    }
}

static double corr(const int16_t *a, const int16_t *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

/* Runs n participants for FRAMES ticks; out[p] gets p's output. */
static void run_conference(pl_mix *m, int n, signal *in, int16_t **out)
{
    for (int f = 0; f < FRAMES; f++) {
        for (int p = 0; p < n; p++) CHECK_EQ(pl_mix_push(m, (uint32_t)p + 1, in[p].pcm + f * PL_MIX_FRAME), PL_MIX_OK);
        pl_mix_tick(m);
        for (int p = 0; p < n; p++)
            memcpy(out[p] + f * PL_MIX_FRAME, pl_mix_output(m, (uint32_t)p + 1), PL_MIX_FRAME * sizeof(int16_t));
    }
}

static void check_mix_minus(int n, signal *in, int16_t **out)
{
    double worst_self = 0, worst_other = 1;
    for (int p = 0; p < n; p++)
        for (int q = 0; q < n; q++) {
            double c = corr(out[p], in[q].pcm, N_SAMPLES);
            if (p == q && fabs(c) > worst_self) worst_self = fabs(c);
            if (p != q && c < worst_other) worst_other = c;
        }
    /* Each of n-1 equal, independent voices carries 1/sqrt(n-1) of the mix. */
    double expect = 1 / sqrt(n - 1);
    printf("     %d participants: own voice correlates |r| <= %.3f, each other voice r >= %.3f (ideal %.3f)\n", n,
           worst_self, worst_other, expect);
    CHECK(worst_self < 0.02);
    CHECK(worst_other > 0.8 * expect);
}

static void five_tones_mix_minus(void)
{
    pl_mix *m;
    CHECK_EQ(pl_mix_new(&m, NULL), PL_MIX_OK);
    signal in[5];
    int16_t *out[5];
    double hz[5] = {350, 550, 800, 1150, 1500};
    for (int p = 0; p < 5; p++) {
        make_tone(&in[p], hz[p], 6000);
        out[p] = malloc(N_SAMPLES * sizeof(int16_t));
        CHECK_EQ(pl_mix_join(m, (uint32_t)p + 1), PL_MIX_OK);
    }
    run_conference(m, 5, in, out);
    check_mix_minus(5, in, out);
    /* Quiet enough: the limiter leaves the mix exactly as summed. */
    for (int i = 0; i < N_SAMPLES; i++) {
        int32_t want = 0;
        for (int q = 1; q < 5; q++) want += in[q].pcm[i];
        CHECK_EQ(out[0][i], want);
    }
    for (int p = 0; p < 5; p++) {
        free(in[p].pcm);
        free(out[p]);
    }
    pl_mix_free(m);
}

static void ten_participants_of_noise(void)
{
    pl_mix *m;
    CHECK_EQ(pl_mix_new(&m, NULL), PL_MIX_OK);
    signal in[10];
    int16_t *out[10];
    for (int p = 0; p < 10; p++) {
        make_noise(&in[p], (uint32_t)p + 7, 2500);
        out[p] = malloc(N_SAMPLES * sizeof(int16_t));
        CHECK_EQ(pl_mix_join(m, (uint32_t)p + 1), PL_MIX_OK);
    }
    run_conference(m, 10, in, out);
    check_mix_minus(10, in, out);
    for (int p = 0; p < 10; p++) {
        free(in[p].pcm);
        free(out[p]);
    }
    pl_mix_free(m);
}

static void join_and_leave_mid_stream(void)
{
    pl_mix *m;
    CHECK_EQ(pl_mix_new(&m, NULL), PL_MIX_OK);
    signal in[6];
    for (int p = 0; p < 6; p++) make_noise(&in[p], (uint32_t)p + 100, 3000);
    for (uint32_t p = 1; p <= 5; p++) CHECK_EQ(pl_mix_join(m, p), PL_MIX_OK);
    CHECK_EQ(pl_mix_join(m, 3), PL_MIX_ERR_EXISTS);
    /* Per output, its correlation with a voice over three windows: before
     * 6 joins (frames 0-14), with everyone (15-29), after 2 left (30-49). */
    int16_t out[7][N_SAMPLES];
    memset(out, 0, sizeof out);
    for (int f = 0; f < FRAMES; f++) {
        if (f == 15) CHECK_EQ(pl_mix_join(m, 6), PL_MIX_OK);
        if (f == 30) CHECK_EQ(pl_mix_leave(m, 2), PL_MIX_OK);
        for (uint32_t p = 1; p <= 6; p++) {
            bool in_call = (p != 6 || f >= 15) && (p != 2 || f < 30);
            if (in_call) CHECK_EQ(pl_mix_push(m, p, in[p - 1].pcm + f * PL_MIX_FRAME), PL_MIX_OK);
            else CHECK_EQ(pl_mix_push(m, p, in[p - 1].pcm + f * PL_MIX_FRAME), PL_MIX_ERR_UNKNOWN);
        }
        pl_mix_tick(m);
        for (uint32_t p = 1; p <= 6; p++) {
            const int16_t *o = pl_mix_output(m, p);
            bool in_call = (p != 6 || f >= 15) && (p != 2 || f < 30);
            CHECK(in_call == (o != NULL));
            if (o) memcpy(out[p] + f * PL_MIX_FRAME, o, PL_MIX_FRAME * sizeof(int16_t));
        }
    }
    CHECK_EQ(pl_mix_count(m), 5);
    int a0, n0, a1, n1, a2, n2;
    a0 = 0 * PL_MIX_FRAME, n0 = 15 * PL_MIX_FRAME;
    a1 = 15 * PL_MIX_FRAME, n1 = 15 * PL_MIX_FRAME;
    a2 = 30 * PL_MIX_FRAME, n2 = 20 * PL_MIX_FRAME;
    /* 1 hears 6 only once 6 joined, and hears 2 only until 2 left. */
    CHECK(fabs(corr(out[1] + a0, in[5].pcm + a0, n0)) < 0.05);
    CHECK(corr(out[1] + a1, in[5].pcm + a1, n1) > 0.35);
    CHECK(corr(out[1] + a1, in[1].pcm + a1, n1) > 0.35);
    CHECK(fabs(corr(out[1] + a2, in[1].pcm + a2, n2)) < 0.05);
    CHECK(corr(out[1] + a2, in[5].pcm + a2, n2) > 0.4);
    /* 6 hears the others from the tick it joined, never itself. */
    CHECK(corr(out[6] + a1, in[0].pcm + a1, n1) > 0.35);
    CHECK(fabs(corr(out[6] + a1, in[5].pcm + a1, n1)) < 0.05);
    CHECK(fabs(corr(out[6] + a2, in[5].pcm + a2, n2)) < 0.05);
    for (int p = 0; p < 6; p++) free(in[p].pcm);
    pl_mix_free(m);
}

static void no_wraparound_when_everyone_shouts(void)
{
    pl_mix *m;
    CHECK_EQ(pl_mix_new(&m, NULL), PL_MIX_OK);
    for (uint32_t p = 1; p <= 10; p++) CHECK_EQ(pl_mix_join(m, p), PL_MIX_OK);
    int16_t square[PL_MIX_FRAME], quiet[PL_MIX_FRAME];
    int32_t max_out = 0;
    int sign_errors = 0;
    for (int f = 0; f < 100; f++) {
        for (int i = 0; i < PL_MIX_FRAME; i++) {
            square[i] = (i / 48) % 2 ? 32767 : -32767;
            quiet[i] = (int16_t)((i / 48) % 2 ? 800 : -800);
        }
        /* Ten shout for a second, then one speaks quietly. */
        for (uint32_t p = 1; p <= 10; p++) pl_mix_push(m, p, f < 50 || p == 1 ? (f < 50 ? square : quiet) : quiet);
        pl_mix_tick(m);
        for (uint32_t p = 1; p <= 10; p++) {
            const int16_t *o = pl_mix_output(m, p);
            for (int i = 0; i < PL_MIX_FRAME; i++) {
                int32_t a = o[i] < 0 ? -(int32_t)o[i] : o[i];
                if (a > max_out) max_out = a;
                /* A wrapped sum would flip sign: the output follows the wave. */
                if (f < 50 && (o[i] > 0) != (square[i] > 0)) sign_errors++;
            }
        }
    }
    CHECK_EQ(sign_errors, 0);
    CHECK(max_out <= 32767);
    pl_mix_stats st;
    CHECK_EQ(pl_mix_get_stats(m, 2, &st), PL_MIX_OK);
    /* After the shouting, the gain recovers towards 1 within a second. */
    printf("     ten at full scale: peak out %d, no wrap; gain 1 s after they stop: %.2f\n", max_out, st.gain);
    CHECK(st.gain > 0.9f);
    pl_mix_free(m);
}

static void jitter_between_legs_is_absorbed(void)
{
    pl_mix_config cfg = {.prefill = 2, .target = 3};
    pl_mix *m;
    CHECK_EQ(pl_mix_new(&m, &cfg), PL_MIX_OK);
    CHECK_EQ(pl_mix_join(m, 1), PL_MIX_OK);
    CHECK_EQ(pl_mix_join(m, 2), PL_MIX_OK);
    int16_t frame[PL_MIX_FRAME] = {0};
    /* Leg 1 arrives in bursts (0, 2, 1, 0, 3, 0, 1, 1 frames a tick: one on
     * average, up to 40 ms late); leg 2 steadily. */
    const int burst[8] = {0, 2, 1, 0, 3, 0, 1, 1};
    int ticks = 0;
    for (int round = 0; round < 50; round++) {
        for (int k = 0; k < 8; k++) {
            for (int b = 0; b < burst[k]; b++) pl_mix_push(m, 1, frame);
            pl_mix_push(m, 2, frame);
            pl_mix_tick(m);
            ticks++;
        }
    }
    pl_mix_stats s1, s2;
    pl_mix_get_stats(m, 1, &s1);
    pl_mix_get_stats(m, 2, &s2);
    /* After the first prefill, neither ran dry. */
    CHECK_EQ(s1.missing, 0);
    CHECK_EQ(s2.missing, 0);
    CHECK(s1.frames_mixed >= (uint64_t)ticks - 3);
    /* A leg whose clock runs 2% fast gains a frame every 50 ticks: drift
     * control drops one now and then, and its queue stays near target. */
    for (int t = 0; t < 1000; t++) {
        pl_mix_push(m, 1, frame);
        if (t % 50 == 0) pl_mix_push(m, 1, frame);
        pl_mix_push(m, 2, frame);
        pl_mix_tick(m);
        pl_mix_get_stats(m, 1, &s1);
        CHECK(s1.queued <= cfg.target + 1);
    }
    CHECK(s1.dropped_drift >= 10);
    CHECK_EQ(s1.dropped_overflow, 0);
    /* One 25% fast (a burst after a stall, a broken clock) hits the hard
     * bound: it loses frames, never more than max_queue of delay. */
    for (int t = 0; t < 200; t++) {
        pl_mix_push(m, 1, frame);
        if (t % 4 == 0) pl_mix_push(m, 1, frame);
        pl_mix_push(m, 2, frame);
        pl_mix_tick(m);
        pl_mix_get_stats(m, 1, &s1);
        CHECK(s1.queued <= PL_MIX_DEFAULT_MAX_QUEUE);
    }
    CHECK(s1.dropped_overflow >= 30);
    printf("     a leg 2%% fast: %llu frames dropped over 20 s, queue <= %u; 25%% fast: queue <= %u (%u ms)\n",
           (unsigned long long)s1.dropped_drift, cfg.target + 1, PL_MIX_DEFAULT_MAX_QUEUE,
           PL_MIX_DEFAULT_MAX_QUEUE * 20);
    /* A leg that stops is silent, then heard again after refilling. */
    for (int t = 0; t < PL_MIX_DEFAULT_MAX_QUEUE + 2; t++) {
        pl_mix_push(m, 2, frame);
        pl_mix_tick(m);
    }
    pl_mix_get_stats(m, 1, &s1);
    CHECK(!s1.talking);
    CHECK_EQ(s1.missing, 1);
    pl_mix_push(m, 1, frame);
    pl_mix_tick(m);
    pl_mix_get_stats(m, 1, &s1);
    CHECK(!s1.talking); /* one frame is not yet the prefill of two */
    pl_mix_push(m, 1, frame);
    pl_mix_push(m, 1, frame);
    pl_mix_tick(m);
    pl_mix_get_stats(m, 1, &s1);
    CHECK(s1.talking);
    CHECK_EQ(pl_mix_push(m, 9, frame), PL_MIX_ERR_UNKNOWN);
    pl_mix_free(m);
    pl_mix_config bad = {.prefill = 4, .target = 2};
    CHECK_EQ(pl_mix_new(&m, &bad), PL_MIX_ERR_CONFIG);
}

static void a_conference_is_full_at_its_limit(void)
{
    pl_mix_config cfg = {.max_participants = 10};
    pl_mix *m;
    CHECK_EQ(pl_mix_new(&m, &cfg), PL_MIX_OK);
    for (uint32_t p = 1; p <= 10; p++) CHECK_EQ(pl_mix_join(m, p), PL_MIX_OK);
    CHECK_EQ(pl_mix_join(m, 11), PL_MIX_ERR_FULL);
    CHECK_EQ(pl_mix_leave(m, 4), PL_MIX_OK);
    CHECK_EQ(pl_mix_leave(m, 4), PL_MIX_ERR_UNKNOWN);
    CHECK_EQ(pl_mix_join(m, 11), PL_MIX_OK);
    pl_mix_free(m);
}

static void host_election(void)
{
    pl_mix_candidate c[6];
    memset(c, 0, sizeof c);
    for (int i = 0; i < 6; i++) {
        c[i].key[0] = (uint8_t)(0x10 * (i + 1));
        c[i].up_kbps = 2000;
        c[i].down_kbps = 8000;
        c[i].rtt_ms = 80;
        c[i].nat = PL_MIX_NAT_CONE;
        c[i].can_host = true;
    }
    c[0].up_kbps = 150;             /* too little upstream for 5 legs of 40 kbit/s */
    c[1].nat = PL_MIX_NAT_OPEN;     /* public address, */
    c[1].rtt_ms = 95;               /* a bit farther */
    c[2].nat = PL_MIX_NAT_OPEN;
    c[2].rtt_ms = 45;               /* public and central: the best */
    c[3].nat = PL_MIX_NAT_SYMMETRIC;
    c[3].rtt_ms = 10;
    c[4].can_host = false;
    int host, next;
    CHECK(pl_mix_elect(c, 6, 40, &host, &next));
    CHECK_EQ(host, 2);
    CHECK_EQ(next, 1);
    /* The same answer whatever the order. */
    for (int rot = 1; rot < 6; rot++) {
        pl_mix_candidate r[6];
        for (int i = 0; i < 6; i++) r[i] = c[(i + rot) % 6];
        int h2, n2;
        CHECK(pl_mix_elect(r, 6, 40, &h2, &n2));
        CHECK(memcmp(r[h2].key, c[host].key, 32) == 0);
        CHECK(memcmp(r[n2].key, c[next].key, 32) == 0);
    }
    /* The host leaves: the successor takes over, and a new successor is
     * chosen among the rest. */
    pl_mix_candidate rest[5];
    for (int i = 0, k = 0; i < 6; i++)
        if (i != host) rest[k++] = c[i];
    int h3, n3;
    CHECK(pl_mix_elect(rest, 5, 40, &h3, &n3));
    CHECK(memcmp(rest[h3].key, c[next].key, 32) == 0);
    /* Ties (same NAT, RTT bucket and spare bandwidth) go by key. */
    pl_mix_candidate twins[2] = {c[5], c[5]};
    twins[0].key[0] = 0x99;
    twins[1].key[0] = 0x11;
    CHECK(pl_mix_elect(twins, 2, 40, &h3, &n3));
    CHECK_EQ(h3, 1);
    CHECK_EQ(n3, 0);
    /* Nobody can: the best-connected still hosts. */
    for (int i = 0; i < 6; i++) c[i].can_host = false;
    CHECK(pl_mix_elect(c, 6, 40, &host, &next));
    CHECK_EQ(host, 2);
    CHECK(pl_mix_elect(c, 1, 40, &host, &next));
    CHECK_EQ(host, 0);
    CHECK_EQ(next, -1);
    CHECK(!pl_mix_elect(c, 0, 40, &host, &next));
}

int main(void)
{
    RUN(five_tones_mix_minus);
    RUN(ten_participants_of_noise);
    RUN(join_and_leave_mid_stream);
    RUN(no_wraparound_when_everyone_shouts);
    RUN(jitter_between_legs_is_absorbed);
    RUN(a_conference_is_full_at_its_limit);
    RUN(host_election);
    return pl_test_summary();
}
