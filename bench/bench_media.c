/*
 * bench_media.c - what a voice call costs and adds: Opus encode and decode
 * time per 20 ms frame, the CPU of one call end (encoder, decoder, jitter
 * buffer, packetization, and one AES-256-GCM seal and open per packet through
 * the real secure session) both back to back and at a call's pace (one
 * frame every 20 ms, as a daemon runs it), the delay the jitter buffer adds
 * under modelled jitter, and the echo canceller and noise suppressor per
 * frame. Figures, not pass/fail: targets are printed beside them.
 *
 * The signal is synthetic voiced speech (a gliding pitch with harmonics and
 * syllable-like bursts, pauses between them), deterministic and made here,
 * so the benchmark needs no tools.
 */
#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsp.h"
#include "jitter.h"
#include "parley.h"
#include "stream.h"
#include "voice_codec.h"

#define T0 ((pl_time)1800000000 * PL_SEC)
#define FRAME PL_VOICE_FRAME
#define SECONDS 20
#define FRAMES (SECONDS * 50)
#define PACED_FRAMES 250

/* CPU time of this thread: what the work costs a core, whatever else the
 * machine is running meanwhile. */
static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int16_t *voice;

static void make_voice(void)
{
    voice = malloc(sizeof *voice * FRAMES * FRAME);
    if (!voice) exit(1);
    double phase = 0;
    uint32_t r = 1;
    for (size_t i = 0; i < (size_t)FRAMES * FRAME; i++) {
        double t = i / 48000.0;
        double f0 = 120 + 40 * sin(2 * M_PI * 0.7 * t); /* pitch glides */
        phase += 2 * M_PI * f0 / 48000;
        /* Syllables of ~250 ms, and a pause of ~600 ms every 2.5 s. */
        double syl = fmax(0, sin(2 * M_PI * 2 * t));
        double env = fmod(t, 2.5) < 1.9 ? syl : 0;
        double s = 0;
        for (int h = 1; h <= 12; h++) s += sin(h * phase) / h * (h < 4 ? 1 : 0.5);
        r = r * 1664525u + 1013904223u;
        double noise = ((double)(r >> 8) / 16777216.0 - 0.5) * 200;
        voice[i] = (int16_t)(6000 * env * s + noise);
    }
}

/* ---- codec ------------------------------------------------------------------- */

static void bench_codec(void)
{
    printf("Opus 48 kHz mono 20 ms, 32 kbit/s, FEC on (10%% loss expected), DTX on\n");
    static uint8_t pkts[FRAMES][PL_VOICE_MAX_PACKET];
    static size_t lens[FRAMES];
    int levels[] = {5, 6, 7, 8, 10};
    for (size_t l = 0; l < 5; l++) {
        pl_voice_enc_config cfg = {.bitrate = 32000, .complexity = levels[l], .loss_perc = 10};
        pl_voice_enc *enc;
        if (pl_voice_enc_new(&enc, &cfg) != PL_VOICE_OK) exit(1);
        size_t bytes = 0, sent = 0;
        double s = now_s();
        for (int f = 0; f < FRAMES; f++) {
            bool dtx;
            pl_voice_encode(enc, voice + (size_t)f * FRAME, pkts[f], &lens[f], &dtx);
            bytes += lens[f];
            sent += lens[f] > 2;
        }
        double enc_ms = (now_s() - s) * 1000 / FRAMES;
        pl_voice_enc_free(enc);
        pl_voice_dec *dec;
        pl_voice_dec_new(&dec);
        int16_t out[FRAME];
        s = now_s();
        for (int f = 0; f < FRAMES; f++) pl_voice_decode(dec, pkts[f], lens[f], out);
        double dec_ms = (now_s() - s) * 1000 / FRAMES;
        s = now_s();
        for (int f = 0; f < FRAMES; f++) pl_voice_conceal(dec, out);
        double plc_ms = (now_s() - s) * 1000 / FRAMES;
        pl_voice_dec_free(dec);
        printf("  complexity %2d%s: encode %.3f ms/frame, decode %.3f ms, conceal %.3f ms; %.1f kbit/s average, "
               "%.0f%% of frames sent\n",
               levels[l], levels[l] == PL_VOICE_DEFAULT_COMPLEXITY ? " (default)" : "", enc_ms, dec_ms, plc_ms,
               bytes * 8.0 / SECONDS / 1000, 100.0 * sent / FRAMES);
    }
}

/* ---- one call end through the secure session ---------------------------------- */

typedef struct end {
    pl_sec *sec;
    pl_identity id;
    uint8_t cert[PL_CERT_MAX_SIZE];
    size_t cert_len;
    pl_addr addr;
    pl_sec_peer *peer;
    uint8_t wire[PL_SEC_MAX_DATAGRAM];
    size_t wire_len;
    int wire_count;
    pl_media *media;
    pl_time now;
} end;

static uint8_t ca_pk[32], ca_sk[64];

static void sec_send(void *ctx, const pl_addr *to, const uint8_t *d, size_t n)
{
    end *e = ctx;
    (void)to;
    memcpy(e->wire, d, n);
    e->wire_len = n;
    e->wire_count++;
}

static void sec_event(void *ctx, const pl_sec_event *ev)
{
    end *e = ctx;
    if (ev->type == PL_SEC_EV_ESTABLISHED) e->peer = ev->peer;
    if (ev->type == PL_SEC_EV_DATA && e->media) pl_media_receive(e->media, ev->data, ev->len, ev->now);
}

static void media_send(void *ctx, const uint8_t *payload, size_t len)
{
    end *e = ctx;
    pl_sec_send(e->sec, e->peer, payload, len, e->now);
}

static void make_end(end *e, const char *name, const char *addr)
{
    memset(e, 0, sizeof *e);
    pl_identity_generate(&e->id, pl_rng_system());
    pl_cert c;
    memset(&c, 0, sizeof c);
    c.version = PL_CERT_VERSION;
    c.serial = 1;
    c.not_before = T0 / PL_SEC - 60;
    c.not_after = T0 / PL_SEC + 86400;
    memcpy(c.sign_pk, e->id.sign_pk, 32);
    memcpy(c.dh_pk, e->id.dh_pk, 32);
    c.name_len = (uint8_t)strlen(name);
    memcpy(c.name, name, c.name_len);
    pl_cert_sign(&c, ca_pk, ca_sk);
    pl_cert_encode(&c, e->cert, sizeof e->cert, &e->cert_len);
    pl_addr_parse(&e->addr, addr, 0);
    pl_sec_config cfg = {.identity = &e->id, .cert = e->cert, .cert_len = e->cert_len, .rng = pl_rng_system(),
                         .accept_incoming = true, .ciphers = PL_SEC_CIPHER_AES256GCM};
    if (!crypto_aead_aes256gcm_is_available()) cfg.ciphers = 0;
    memcpy(cfg.ca_pk, ca_pk, 32);
    pl_sec_io io = {e, sec_send, sec_event};
    if (pl_sec_new(&e->sec, &cfg, &io) != PL_SEC_OK) exit(1);
}

static void carry(end *from, end *to, pl_time now)
{
    if (!from->wire_count) return;
    from->wire_count = 0;
    pl_sec_receive(to->sec, &from->addr, from->wire, from->wire_len, now);
}

/* One call end's work per frame (seconds of thread CPU time), over `frames`
 * frames. Paced, each frame waits for its 20 ms tick as in a call: between
 * frames the core runs other work or idles, so every frame starts with
 * caches that work has cooled, as in a daemon. Unpaced, frames run back to
 * back with the codec's state and tables warm: a floor, not what a call
 * pays. */
static double call_end_cost(int frames, bool paced, pl_media_stats *st, bool *aes)
{
    end a, b;
    make_end(&a, "alice", "192.0.2.1:1");
    make_end(&b, "bob", "192.0.2.2:2");
    pl_time t = T0;
    pl_sec_connect(a.sec, b.id.sign_pk, &b.addr, t, &a.peer);
    carry(&a, &b, t);
    carry(&b, &a, t);
    carry(&a, &b, t);
    if (!a.peer || !b.peer) {
        fprintf(stderr, "no session\n");
        exit(1);
    }
    pl_media_config cfg = {.rng = pl_rng_system()};
    pl_media_io ia = {&a, media_send}, ib = {&b, media_send};
    pl_media_new(&a.media, &cfg, &ia, t);
    pl_media_new(&b.media, &cfg, &ib, t);
    /* A talks to B: per 20 ms, A's capture (encode, packetize, seal) and B's
     * receive (open, parse, jitter buffer) and playout (jitter buffer,
     * decode) are one call end's work for one direction plus the other end's
     * for the other: together what one end spends in a two-way call. */
    int16_t out[FRAME];
    struct timespec tick;
    clock_gettime(CLOCK_MONOTONIC, &tick);
    double s = now_s();
    for (int f = 0; f < frames; f++) {
        if (paced) {
            tick.tv_nsec += 20 * 1000000L;
            if (tick.tv_nsec >= 1000000000L) {
                tick.tv_nsec -= 1000000000L;
                tick.tv_sec++;
            }
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &tick, NULL) == EINTR) {
            }
        }
        t += 20 * PL_MSEC;
        a.now = b.now = t;
        pl_media_capture(a.media, voice + (size_t)f * FRAME, t);
        carry(&a, &b, t + PL_MSEC);
        pl_media_pull(b.media, out, t + 5 * PL_MSEC);
        pl_media_tick(a.media, t);
        pl_media_tick(b.media, t);
        carry(&a, &b, t + PL_MSEC);
        carry(&b, &a, t + PL_MSEC);
    }
    double per_frame = (now_s() - s) / frames;
    pl_media_get_stats(b.media, st);
    *aes = pl_sec_peer_cipher(a.peer) == PL_SEC_CIPHER_AES256GCM;
    pl_media_free(a.media);
    pl_media_free(b.media);
    pl_sec_free(a.sec);
    pl_sec_free(b.sec);
    return per_frame;
}

static void bench_call_end(void)
{
    crypto_sign_keypair(ca_pk, ca_sk);
    pl_media_stats st;
    bool aes;
    double warm = call_end_cost(FRAMES, false, &st, &aes);
    printf("\nOne call end, both directions (encode + decode + jitter buffer + packetization + %s seal/open)\n",
           aes ? "AES-256-GCM" : "ChaCha20-Poly1305");
    printf("  %.3f ms per 20 ms frame = %.2f%% of one core   target <= 2%%  (complexity %d; B played %llu, "
           "concealed %llu)\n",
           warm * 1000, warm / 0.020 * 100, PL_VOICE_DEFAULT_COMPLEXITY, (unsigned long long)st.frames_played,
           (unsigned long long)st.frames_concealed);
    /* What a daemon pays: the same work at the call's pace (5 s). */
    double paced = call_end_cost(PACED_FRAMES, true, &st, &aes);
    printf("  %.3f ms per frame = %.2f%% of one core at a call's pace (a frame every 20 ms, caches cooled between\n"
           "  frames: what the same work costs a daemon; the rest of a daemon's CPU per call end is its I/O)\n",
           paced * 1000, paced / 0.020 * 100);
}

/* ---- jitter buffer delay -------------------------------------------------------- */

typedef struct arrival {
    pl_time at;
    uint16_t seq;
    uint32_t ts;
} arrival;

static int cmp_at(const void *x, const void *y)
{
    const arrival *a = x, *b = y;
    return a->at < b->at ? -1 : a->at > b->at;
}

static uint64_t xs = 88172645463325252ull;
static double urand(void)
{
    xs ^= xs << 13;
    xs ^= xs >> 7;
    xs ^= xs << 17;
    return (double)(xs >> 11) / 9007199254740992.0;
}

static void jitter_case(const char *name, pl_time jitter, bool exponential)
{
    enum { N = 60 * 50 };
    static arrival arr[N];
    xs = 88172645463325252ull;
    for (int k = 0; k < N; k++) {
        pl_time j = 0;
        if (jitter) j = exponential ? (pl_time)(-log(1 - urand()) * (double)jitter) : (pl_time)(urand() * (double)jitter);
        arr[k].at = T0 + (pl_time)k * 20 * PL_MSEC + 40 * PL_MSEC + j;
        arr[k].seq = (uint16_t)k;
        arr[k].ts = (uint32_t)k * FRAME;
    }
    qsort(arr, N, sizeof *arr, cmp_at);
    pl_jitter *jb = pl_jitter_new(NULL, NULL);
    uint8_t payload[60] = {0xfc};
    int next = 0;
    pl_jitter_stats conv = {0};
    for (int tick = 0; tick < N + 50; tick++) {
        pl_time now = T0 + 7 * PL_MSEC + (pl_time)tick * 20 * PL_MSEC;
        while (next < N && arr[next].at <= now) {
            pl_jitter_put(jb, arr[next].seq, arr[next].ts, 0, payload, sizeof payload, arr[next].at);
            next++;
        }
        pl_jitter_pull(jb, now);
        if (tick == 500) conv = pl_jitter_get_stats(jb);
        if (next == N && pl_jitter_get_stats(jb).buffered == 0) break; /* the last packet was played */
    }
    pl_jitter_stats st = pl_jitter_get_stats(jb);
    double late = 100.0 * (double)(st.late - conv.late) / (N - 500);
    printf("  %-22s added delay %5.1f ms avg (target %5.1f), packet wait %5.1f ms, late %.2f%% after 10 s, "
           "concealed %llu\n",
           name, st.delay_avg / 1000.0, st.target / 1000.0, st.wait_avg / 1000.0, late,
           (unsigned long long)st.concealed);
    pl_jitter_free(jb);
}

static void bench_jitter(void)
{
    printf("\nJitter buffer, 60 s of 20 ms packets, 40 ms base latency. Added delay: playout time above the\n"
           "fastest packet's arrival (what the buffer adds to mouth-to-ear delay).\n");
    jitter_case("no jitter", 0, false);
    jitter_case("10 ms uniform", 10 * PL_MSEC, false);
    jitter_case("30 ms uniform", 30 * PL_MSEC, false);
    jitter_case("10 ms exponential mean", 10 * PL_MSEC, true);
    jitter_case("30 ms exponential mean", 30 * PL_MSEC, true);
}

/* ---- DSP --------------------------------------------------------------------------- */

static void bench_dsp(void)
{
    printf("\nspeexdsp, 48 kHz, per 20 ms frame\n");
    int16_t out[FRAME];
    const char *names[] = {"echo canceller (200 ms tail) + noise suppressor", "noise suppressor only"};
    for (int k = 0; k < 2; k++) {
        pl_dsp_config cfg = {.no_echo = k == 1};
        pl_dsp *dsp;
        if (pl_dsp_new(&dsp, &cfg) != PL_DSP_OK) exit(1);
        int frames = FRAMES / 2;
        double s = now_s();
        for (int f = 0; f < frames; f++)
            pl_dsp_process(dsp, voice + (size_t)(f + 7) * FRAME, voice + (size_t)f * FRAME, out);
        double ms = (now_s() - s) * 1000 / frames;
        printf("  %-48s %.3f ms = %.2f%% of one core\n", names[k], ms, ms / 20 * 100);
        pl_dsp_free(dsp);
    }
}

int main(void)
{
    if (!pl_init()) return 1;
    make_voice();
    bench_codec();
    bench_call_end();
    bench_jitter();
    bench_dsp();
    free(voice);
    return 0;
}
