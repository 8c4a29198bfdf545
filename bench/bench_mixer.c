/*
 * bench_mixer.c - what hosting a conference costs: the host's CPU per
 * participant per second for a 10-party call, with an Opus decode and an
 * Opus encode per leg (every leg gets its own mix, so its own encode), and
 * the delay the mixer's alignment queues add under arrival jitter.
 *
 * Run: build/release/bench/bench_mixer [seconds of audio, default 20]
 */
#include <math.h>
#include <opus/opus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mixer.h"

#define N 10
#define MAX_PACKET 1500

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A voice-like test signal per participant: a tone with harmonics, its
 * loudness following a slow syllable rhythm, and some noise. */
static void voice(int p, int frame, int16_t *out)
{
    double f0 = 110 + 23 * p;
    for (int i = 0; i < PL_MIX_FRAME; i++) {
        double t = (frame * PL_MIX_FRAME + i) / (double)PL_MIX_RATE;
        double env = 0.5 + 0.5 * sin(2 * M_PI * (2.5 + 0.3 * p) * t);
        double s = 0;
        for (int h = 1; h <= 6; h++) s += sin(2 * M_PI * f0 * h * t + p) / h;
        double noise = ((rand() % 2001) - 1000) / 1000.0;
        out[i] = (int16_t)lrint(4000 * env * s + 300 * noise);
    }
}

typedef struct leg_packets {
    int n;
    uint8_t (*data)[MAX_PACKET];
    int *len;
} leg_packets;

static void cpu_bench(int seconds, int complexity, int bitrate)
{
    int frames = seconds * 50, err;
    leg_packets in[N];
    /* What the participants send, encoded on their own machines (not the
     * host's cost). */
    for (int p = 0; p < N; p++) {
        OpusEncoder *e = opus_encoder_create(PL_MIX_RATE, 1, OPUS_APPLICATION_VOIP, &err);
        opus_encoder_ctl(e, OPUS_SET_BITRATE(bitrate));
        in[p].n = frames;
        in[p].data = malloc((size_t)frames * MAX_PACKET);
        in[p].len = malloc((size_t)frames * sizeof(int));
        int16_t pcm[PL_MIX_FRAME];
        for (int f = 0; f < frames; f++) {
            voice(p, f, pcm);
            in[p].len[f] = opus_encode(e, pcm, PL_MIX_FRAME, in[p].data[f], MAX_PACKET);
        }
        opus_encoder_destroy(e);
    }
    OpusDecoder *dec[N];
    OpusEncoder *enc[N];
    for (int p = 0; p < N; p++) {
        dec[p] = opus_decoder_create(PL_MIX_RATE, 1, &err);
        enc[p] = opus_encoder_create(PL_MIX_RATE, 1, OPUS_APPLICATION_VOIP, &err);
        opus_encoder_ctl(enc[p], OPUS_SET_BITRATE(bitrate));
        opus_encoder_ctl(enc[p], OPUS_SET_COMPLEXITY(complexity));
        opus_encoder_ctl(enc[p], OPUS_SET_INBAND_FEC(1));
        opus_encoder_ctl(enc[p], OPUS_SET_PACKET_LOSS_PERC(5));
    }
    pl_mix *m;
    pl_mix_new(&m, NULL);
    for (uint32_t p = 0; p < N; p++) pl_mix_join(m, p);
    double t_dec = 0, t_mix = 0, t_enc = 0;
    size_t bytes_out = 0;
    int16_t pcm[PL_MIX_FRAME];
    uint8_t packet[MAX_PACKET];
    for (int f = 0; f < frames; f++) {
        double a = cpu_now();
        for (int p = 0; p < N; p++) {
            if (opus_decode(dec[p], in[p].data[f], in[p].len[f], pcm, PL_MIX_FRAME, 0) == PL_MIX_FRAME)
                pl_mix_push(m, (uint32_t)p, pcm);
        }
        double b = cpu_now();
        pl_mix_tick(m);
        double c = cpu_now();
        for (int p = 0; p < N; p++) {
            int n = opus_encode(enc[p], pl_mix_output(m, (uint32_t)p), PL_MIX_FRAME, packet, MAX_PACKET);
            if (n > 0) bytes_out += (size_t)n;
        }
        double d = cpu_now();
        t_dec += b - a;
        t_mix += c - b;
        t_enc += d - c;
    }
    double total = t_dec + t_mix + t_enc;
    printf("  complexity %2d, %2d kbit/s: %5.1f ms CPU per second of audio (%4.1f%% of a core); "
           "per participant %4.2f ms/s = decode %.2f + mix %.3f + encode %.2f; %.1f kbit/s out per leg\n",
           complexity, bitrate / 1000, 1000 * total / seconds, 100 * total / seconds, 1000 * total / seconds / N,
           1000 * t_dec / seconds / N, 1000 * t_mix / seconds / N, 1000 * t_enc / seconds / N,
           bytes_out * 8.0 / seconds / N / 1000);
    for (int p = 0; p < N; p++) {
        opus_decoder_destroy(dec[p]);
        opus_encoder_destroy(enc[p]);
        free(in[p].data);
        free(in[p].len);
    }
    pl_mix_free(m);
}

/* ---- delay --------------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Legs send a frame every 20 ms at their own phase; each frame arrives
 * with a uniform extra delay in [0, jitter]; the host ticks every 20 ms.
 * The wait of a frame is from its arrival to the tick that mixes it. */
static void delay_bench(double jitter_ms, uint8_t prefill, uint8_t target)
{
    const int frames = 3000;
    pl_mix_config cfg = {.prefill = prefill, .target = target};
    pl_mix *m;
    if (pl_mix_new(&m, &cfg)) return;
    double phase[N];
    for (int p = 0; p < N; p++) {
        pl_mix_join(m, (uint32_t)p);
        phase[p] = (rand() % 20000) / 1000.0;
    }
    double *arrive[N];
    int next[N], head[N];
    double (*q)[PL_MIX_MAX_QUEUE + 1] = calloc(N, sizeof *q);
    int qn[N];
    for (int p = 0; p < N; p++) {
        arrive[p] = malloc(frames * sizeof(double));
        for (int f = 0; f < frames; f++) arrive[p][f] = f * 20.0 + phase[p] + jitter_ms * (rand() % 10001) / 10000.0;
        /* Frames reach the mixer in order (the leg's jitter buffer sorts). */
        for (int f = 1; f < frames; f++)
            if (arrive[p][f] < arrive[p][f - 1]) arrive[p][f] = arrive[p][f - 1];
        next[p] = 0;
        head[p] = 0;
        qn[p] = 0;
    }
    double *waits = malloc((size_t)frames * N * sizeof(double));
    size_t n_waits = 0;
    uint64_t missing = 0;
    int16_t silence[PL_MIX_FRAME] = {0};
    for (int t = 0; t < frames; t++) {
        double now = t * 20.0 + 20.0;
        for (int p = 0; p < N; p++) {
            while (next[p] < frames && arrive[p][next[p]] <= now) {
                pl_mix_stats before;
                pl_mix_get_stats(m, (uint32_t)p, &before);
                pl_mix_push(m, (uint32_t)p, silence);
                pl_mix_stats after;
                pl_mix_get_stats(m, (uint32_t)p, &after);
                if (after.dropped_overflow > before.dropped_overflow) {
                    head[p]++;
                    qn[p]--;
                }
                q[p][(head[p] + qn[p]) % (PL_MIX_MAX_QUEUE + 1)] = arrive[p][next[p]++];
                qn[p]++;
            }
        }
        pl_mix_stats before[N];
        for (int p = 0; p < N; p++) pl_mix_get_stats(m, (uint32_t)p, &before[p]);
        pl_mix_tick(m);
        for (int p = 0; p < N; p++) {
            pl_mix_stats after;
            pl_mix_get_stats(m, (uint32_t)p, &after);
            int dropped = (int)(after.dropped_drift - before[p].dropped_drift);
            head[p] += dropped;
            qn[p] -= dropped;
            if (after.talking) {
                if (t > 50) waits[n_waits++] = now - q[p][head[p] % (PL_MIX_MAX_QUEUE + 1)];
                head[p]++;
                qn[p]--;
            }
            missing += after.missing - before[p].missing;
        }
    }
    qsort(waits, n_waits, sizeof *waits, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n_waits; i++) sum += waits[i];
    printf("  jitter %4.0f ms, prefill %u, target %u: wait mean %5.1f ms, 95%% %5.1f ms, max %5.1f ms; "
           "silent ticks %.2f%%\n",
           jitter_ms, prefill, target, sum / n_waits, waits[n_waits * 95 / 100], waits[n_waits - 1],
           100.0 * missing / ((double)frames * N));
    for (int p = 0; p < N; p++) free(arrive[p]);
    free(q);
    free(waits);
    pl_mix_free(m);
}

int main(int argc, char **argv)
{
    int seconds = argc > 1 ? atoi(argv[1]) : 20;
    if (seconds <= 0) seconds = 20;
    srand(1);
    printf("bench_mixer: a %d-party conference on one host, %d s of audio, libopus %s\n", N, seconds,
           opus_get_version_string());
    printf("host CPU (thread time; the machine is shared, so figures vary):\n");
    cpu_bench(seconds, 5, 24000);
    cpu_bench(seconds, 8, 24000);
    cpu_bench(seconds, 8, 32000);
    printf("delay the mixer's alignment adds (10 legs, random phases; 20 ms ticks):\n");
    double jit[] = {0, 10, 20, 40};
    for (int i = 0; i < 4; i++) delay_bench(jit[i], 1, 2);
    for (int i = 0; i < 4; i++) delay_bench(jit[i], 2, 3);
    printf("(on top: a re-encode per leg adds Opus's 20 ms frame and 6.5 ms look-ahead at the host)\n");
    return 0;
}
