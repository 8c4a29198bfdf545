/* test_quality.c - the quality harness's DSP on signals the test makes:
 * the FFT, WAV reading and writing, resampling, delay by cross-correlation,
 * STOI's known properties, the log-spectral distance, dead air, and the
 * E-model at reference points. The speech-like test signal is synthetic
 * (harmonic syllables with formant-like spectra, noise bursts and pauses,
 * from a seeded generator); tests/quality.test.sh repeats the key checks on
 * real synthesised speech through the command-line tool. */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "parley.h"
#include "quality.h"
#include "test.h"

#define RATE 48000

static double urand(pl_rng_seeded *r)
{
    return (double)(pl_rng_u64(&r->rng) >> 11) * (1.0 / 9007199254740992.0);
}

static double gauss(pl_rng_seeded *r)
{
    double u = urand(r), v = urand(r);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(2.0 * M_PI * v);
}

/* About `seconds` of speech-like sound: syllables of 120-300 ms (voiced:
 * harmonics of a gliding 100-220 Hz pitch shaped by two random formants;
 * or unvoiced: differentiated noise), 40-150 ms apart, a 400-700 ms pause
 * every 3-6 syllables. Peak around 0.5. */
static float *make_speech(uint64_t seed, double seconds, size_t *len)
{
    pl_rng_seeded r;
    pl_rng_seeded_init(&r, seed);
    size_t n = (size_t)(seconds * RATE);
    float *x = calloc(n, sizeof *x);
    if (!x) return NULL;
    size_t pos = (size_t)(0.3 * RATE);
    int until_pause = 3;
    while (pos < n) {
        size_t dur = (size_t)((0.12 + 0.18 * urand(&r)) * RATE);
        if (pos + dur > n) break;
        bool voiced = urand(&r) < 0.8;
        double f0a = 100 + 120 * urand(&r), f0b = f0a * (0.8 + 0.4 * urand(&r));
        double fm1 = 300 + 600 * urand(&r), fm2 = 900 + 1800 * urand(&r);
        double amp = 0.15 + 0.2 * urand(&r), phase = 0, prev = 0;
        for (size_t i = 0; i < dur; i++) {
            double t = (double)i / (double)dur;
            double env = amp * sin(M_PI * t) * sin(M_PI * t);
            double v = 0;
            if (voiced) {
                double f0 = f0a + (f0b - f0a) * t;
                phase += 2 * M_PI * f0 / RATE;
                for (int k = 1; k * f0 < 4000; k++) {
                    double f = k * f0;
                    double g = exp(-(f - fm1) * (f - fm1) / (2 * 150.0 * 150.0)) +
                               0.5 * exp(-(f - fm2) * (f - fm2) / (2 * 250.0 * 250.0)) + 0.05;
                    v += g * sin(k * phase);
                }
                v *= 0.5;
            } else {
                double w = gauss(&r);
                v = 0.3 * (w - prev);
                prev = w;
            }
            x[pos + i] += (float)(env * v);
        }
        pos += dur + (size_t)((0.04 + 0.11 * urand(&r)) * RATE);
        if (--until_pause == 0) {
            pos += (size_t)((0.4 + 0.3 * urand(&r)) * RATE);
            until_pause = 3 + (int)(urand(&r) * 4);
        }
    }
    *len = n;
    return x;
}

static double power(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s / (double)n;
}

/* y = gain * x + white noise at snr_db below x's mean power. */
static float *noisy(const float *x, size_t n, double snr_db, double gain, uint64_t seed)
{
    pl_rng_seeded r;
    pl_rng_seeded_init(&r, seed);
    float *y = malloc(n * sizeof *y);
    if (!y) return NULL;
    double sd = sqrt(power(x, n) * pow(10.0, -snr_db / 10.0));
    for (size_t i = 0; i < n; i++) y[i] = (float)(gain * (x[i] + sd * gauss(&r)));
    return y;
}

static void fft_matches_a_direct_transform(void)
{
    enum { N = 64 };
    double re[N], im[N], r0[N], i0[N];
    pl_rng_seeded r;
    pl_rng_seeded_init(&r, 1);
    for (int i = 0; i < N; i++) {
        re[i] = r0[i] = gauss(&r);
        im[i] = i0[i] = gauss(&r);
    }
    CHECK(pl_quality_fft(re, im, N, false));
    for (int k = 0; k < N; k++) {
        double sr = 0, si = 0;
        for (int t = 0; t < N; t++) {
            double a = -2 * M_PI * k * t / N;
            sr += r0[t] * cos(a) - i0[t] * sin(a);
            si += r0[t] * sin(a) + i0[t] * cos(a);
        }
        CHECK(fabs(sr - re[k]) < 1e-9 && fabs(si - im[k]) < 1e-9);
    }
    CHECK(pl_quality_fft(re, im, N, true));
    for (int i = 0; i < N; i++) CHECK(fabs(re[i] / N - r0[i]) < 1e-12 && fabs(im[i] / N - i0[i]) < 1e-12);
    CHECK(!pl_quality_fft(re, im, 48, false));
}

static void wav_files_round_trip_and_bad_ones_are_refused(void)
{
    char path[] = "/tmp/pl-test-quality-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    float x[1000];
    for (int i = 0; i < 1000; i++) x[i] = (float)(0.9 * sin(i * 0.05));
    x[0] = 2.0f; /* clipped on the way out */
    CHECK_EQ(pl_quality_wav_save(path, x, 1000, RATE), PL_QUALITY_OK);
    pl_quality_audio a;
    CHECK_EQ(pl_quality_wav_load(path, &a), PL_QUALITY_OK);
    unlink(path);
    CHECK_EQ(a.len, 1000);
    CHECK_EQ(a.rate, RATE);
    CHECK(fabsf(a.samples[0] - 32767.0f / 32768.0f) < 1e-6f);
    for (int i = 1; i < 1000; i++) CHECK(fabsf(a.samples[i] - x[i]) <= 0.5f / 32768.0f + 1e-7f);
    pl_quality_audio_free(&a);

    /* Stereo 16-bit with an odd-sized chunk before the data: channels averaged. */
    uint8_t w[12 + 8 + 16 + 8 + 3 + 1 + 8 + 8];
    size_t p = 0;
    memcpy(w, "RIFF\0\0\0\0WAVE", 12);
    p = 12;
    memcpy(w + p, "fmt \x10\0\0\0\x01\0\x02\0\x80\xbb\0\0\0\xee\x02\0\x04\0\x10\0", 24);
    p += 24;
    memcpy(w + p, "junk\x03\0\0\0abc\0", 12);
    p += 12;
    memcpy(w + p, "data\x08\0\0\0", 8);
    p += 8;
    int16_t s[4] = {1000, 3000, -2000, -4000};
    for (int i = 0; i < 4; i++) {
        w[p++] = (uint8_t)s[i];
        w[p++] = (uint8_t)((uint16_t)s[i] >> 8);
    }
    CHECK_EQ(pl_quality_wav_parse(w, p, &a), PL_QUALITY_OK);
    CHECK_EQ(a.len, 2);
    CHECK(fabsf(a.samples[0] - 2000.0f / 32768.0f) < 1e-6f && fabsf(a.samples[1] + 3000.0f / 32768.0f) < 1e-6f);
    pl_quality_audio_free(&a);
    /* A data chunk that claims more than is there is cut to what is there. */
    w[p - 8 - 4] = 0xff;
    CHECK_EQ(pl_quality_wav_parse(w, p, &a), PL_QUALITY_OK);
    CHECK_EQ(a.len, 2);
    pl_quality_audio_free(&a);
    /* Not RIFF, no fmt, a bad block size, an unsupported encoding, an absurd rate. */
    CHECK_EQ(pl_quality_wav_parse(w, 11, &a), PL_QUALITY_ERR_FORMAT);
    uint8_t v[sizeof w];
    memcpy(v, w, p);
    memcpy(v + 12, "xxxx", 4);
    CHECK_EQ(pl_quality_wav_parse(v, p, &a), PL_QUALITY_ERR_FORMAT);
    memcpy(v, w, p);
    v[12 + 8 + 12] = 3; /* block align */
    CHECK_EQ(pl_quality_wav_parse(v, p, &a), PL_QUALITY_ERR_FORMAT);
    memcpy(v, w, p);
    v[12 + 8] = 2; /* ADPCM */
    CHECK_EQ(pl_quality_wav_parse(v, p, &a), PL_QUALITY_ERR_UNSUPPORTED);
    memcpy(v, w, p);
    v[12 + 8 + 6] = 0x10; /* 4 kHz */
    v[12 + 8 + 5] = 0;
    CHECK_EQ(pl_quality_wav_parse(v, p, &a), PL_QUALITY_ERR_RATE);
    CHECK_EQ(pl_quality_wav_load("/nonexistent/x.wav", &a), PL_QUALITY_ERR_IO);
}

static double sine_amplitude(const float *y, size_t n, double f, uint32_t rate)
{
    double c = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        c += y[i] * cos(2 * M_PI * f * (double)i / rate);
        s += y[i] * sin(2 * M_PI * f * (double)i / rate);
    }
    return 2 * sqrt(c * c + s * s) / (double)n;
}

static void resampling_keeps_the_band_and_removes_what_is_above(void)
{
    size_t n = RATE; /* one second */
    float *x = malloc(n * sizeof *x);
    CHECK(x != NULL);
    for (size_t i = 0; i < n; i++) x[i] = (float)(0.5 * sin(2 * M_PI * 1000.0 * (double)i / RATE));
    float *y;
    size_t m;
    CHECK_EQ(pl_quality_resample(x, n, RATE, 10000, &y, &m), PL_QUALITY_OK);
    CHECK_EQ(m, 10000);
    double a = sine_amplitude(y + 100, 9800, 1000.0, 10000);
    free(y);
    for (size_t i = 0; i < n; i++) x[i] = (float)(0.5 * sin(2 * M_PI * 6500.0 * (double)i / RATE));
    CHECK_EQ(pl_quality_resample(x, n, RATE, 10000, &y, &m), PL_QUALITY_OK);
    /* 6.5 kHz folds to 3.5 kHz at 10 kHz if not filtered. */
    double alias = sine_amplitude(y + 100, 9800, 3500.0, 10000);
    free(y);
    printf("  48 kHz -> 10 kHz: 1 kHz sine keeps amplitude %.4f of 0.5; 6.5 kHz leaks %.1f dB\n", a,
           20 * log10(alias / 0.5 + 1e-12));
    CHECK(fabs(a - 0.5) < 0.005);
    CHECK(alias < 0.5 * 0.01); /* at least 40 dB down */
    /* Up-sampling 8 kHz -> 10 kHz works too. */
    CHECK_EQ(pl_quality_resample(x, 8000, 8000, 10000, &y, &m), PL_QUALITY_OK);
    CHECK_EQ(m, 10000);
    free(y);
    free(x);
}

static void delay_is_recovered_exactly(void)
{
    size_t n;
    float *x = make_speech(7, 6.0, &n);
    CHECK(x != NULL);
    long shift = 1800; /* 37.5 ms */
    size_t nd = n + 4000;
    float *d = calloc(nd, sizeof *d);
    CHECK(d != NULL);
    for (size_t i = 0; i < n; i++) d[i + (size_t)shift] = x[i];
    pl_quality_delay r;
    CHECK_EQ(pl_quality_find_delay(x, n, d, nd, RATE, -RATE, RATE, &r), PL_QUALITY_OK);
    printf("  clean shift: lag %ld (%.2f ms), peak %.4f\n", r.lag, r.lag_ms, r.peak);
    CHECK_EQ(r.lag, shift);
    CHECK(fabs(r.lag_ms - 37.5) < 1e-9);
    CHECK(r.peak > 0.9999);

    /* 10 dB SNR white noise and a level change of -12 dB. */
    float *y = noisy(d, nd, 10.0, 0.25, 3);
    CHECK(y != NULL);
    CHECK_EQ(pl_quality_find_delay(x, n, y, nd, RATE, -RATE, RATE, &r), PL_QUALITY_OK);
    printf("  noisy, -12 dB: lag %ld (%.2f ms), peak %.4f\n", r.lag, r.lag_ms, r.peak);
    CHECK_EQ(r.lag, shift);
    CHECK(r.peak > 0.9 && r.peak < 0.99);
    /* At 0 dB SNR still exact. */
    free(y);
    y = noisy(d, nd, 0.0, 3.0, 4);
    CHECK_EQ(pl_quality_find_delay(x, n, y, nd, RATE, -RATE, RATE, &r), PL_QUALITY_OK);
    CHECK_EQ(r.lag, shift);
    free(y);

    /* An inverted polarity is still found, with a negative correlation. */
    float *inv = malloc(nd * sizeof *inv);
    CHECK(inv != NULL);
    for (size_t i = 0; i < nd; i++) inv[i] = -0.5f * d[i];
    CHECK_EQ(pl_quality_find_delay(x, n, inv, nd, RATE, -RATE, RATE, &r), PL_QUALITY_OK);
    CHECK_EQ(r.lag, shift);
    CHECK(r.peak < -0.9999);
    free(inv);
    /* A recording that started 25 ms late: negative lag. */
    CHECK_EQ(pl_quality_find_delay(x, n, x + 1200, n - 1200, RATE, -RATE, RATE, &r), PL_QUALITY_OK);
    CHECK_EQ(r.lag, -1200);
    /* A window that starts past 0 correlates only the stretch it needs and
     * still finds the lag exactly. */
    CHECK_EQ(pl_quality_find_delay(x, n, d, nd, RATE, 1000, 3000, &r), PL_QUALITY_OK);
    CHECK_EQ(r.lag, shift);
    CHECK(r.peak > 0.9999);
    CHECK_EQ(pl_quality_find_delay(x, n, d, nd, RATE, 3000, 1000, &r), PL_QUALITY_ERR_TOO_SHORT);
    /* A search window that excludes the true lag does not find it. */
    CHECK_EQ(pl_quality_find_delay(x, n, d, nd, RATE, 0, 1000, &r), PL_QUALITY_OK);
    CHECK(r.lag != shift);
    /* Silence gives lag 0 and no correlation. */
    float *z = calloc(nd, sizeof *z);
    CHECK(z != NULL);
    CHECK_EQ(pl_quality_find_delay(x, n, z, nd, RATE, -RATE, RATE, &r), PL_QUALITY_OK);
    CHECK(r.lag == 0 && r.peak == 0);
    /* Aligning by the lag gives the original back. */
    float *al = malloc(n * sizeof *al);
    CHECK(al != NULL);
    pl_quality_align(d, nd, shift, al, n);
    CHECK(memcmp(al, x, n * sizeof *x) == 0);
    free(al);
    free(z);
    free(d);
    free(x);
}

static void stoi_has_its_known_properties(void)
{
    size_t n;
    float *x = make_speech(11, 8.0, &n);
    CHECK(x != NULL);
    double s;
    CHECK_EQ(pl_quality_stoi(x, x, n, RATE, &s), PL_QUALITY_OK);
    printf("  STOI identical: %.6f\n", s);
    CHECK(fabs(s - 1.0) < 1e-3);

    /* A level change does not matter (the envelope is normalised). */
    float *y = noisy(x, n, 200.0, 0.1, 1);
    CHECK_EQ(pl_quality_stoi(x, y, n, RATE, &s), PL_QUALITY_OK);
    CHECK(fabs(s - 1.0) < 1e-3);
    free(y);

    /* Monotonic in the SNR of additive white noise. */
    double snrs[] = {30, 20, 10, 5, 0, -5, -10};
    double prev = 1.0;
    printf("  STOI vs SNR:");
    for (size_t k = 0; k < sizeof snrs / sizeof snrs[0]; k++) {
        y = noisy(x, n, snrs[k], 1.0, 100 + k);
        CHECK_EQ(pl_quality_stoi(x, y, n, RATE, &s), PL_QUALITY_OK);
        free(y);
        printf(" %+.0f dB %.3f", snrs[k], s);
        CHECK(s < prev);
        prev = s;
    }
    printf("\n");

    /* Unrelated signals. Two independent noises correlate at ~0. Against
     * speech, STOI's clipping step (the degraded envelope may not exceed
     * the clean one by more than 15 dB) makes any envelope follow the
     * clean one in its dips, so noise or silence-free garbage scores about
     * 0.3-0.45, not 0; the reference MATLAB code does the same (without
     * the clipping the same pair scores ~0.01). Silence scores 0. */
    pl_rng_seeded r;
    pl_rng_seeded_init(&r, 5);
    float *w = malloc(n * sizeof *w), *w2 = malloc(n * sizeof *w2);
    CHECK(w != NULL && w2 != NULL);
    for (size_t i = 0; i < n; i++) {
        w[i] = (float)(0.1 * gauss(&r));
        w2[i] = (float)(0.1 * gauss(&r));
    }
    double s_noises, s_noise, s_silence, s_other;
    CHECK_EQ(pl_quality_stoi(w, w2, n, RATE, &s_noises), PL_QUALITY_OK);
    CHECK_EQ(pl_quality_stoi(x, w, n, RATE, &s_noise), PL_QUALITY_OK);
    memset(w, 0, n * sizeof *w);
    CHECK_EQ(pl_quality_stoi(x, w, n, RATE, &s_silence), PL_QUALITY_OK);
    size_t n2;
    float *o = make_speech(12, 8.0, &n2);
    CHECK(o != NULL && n2 == n);
    CHECK_EQ(pl_quality_stoi(x, o, n, RATE, &s_other), PL_QUALITY_OK);
    printf("  STOI noise vs independent noise %.3f; speech vs white noise %.3f, vs silence %.3f, "
           "vs other speech %.3f\n", s_noises, s_noise, s_silence, s_other);
    CHECK(fabs(s_noises) < 0.05);
    CHECK(s_noise < 0.5);
    CHECK(s_silence == 0.0);
    CHECK(s_other < 0.3);
    /* All of them far below even -10 dB SNR speech. */
    CHECK(s_noise < prev - 0.2 && s_other < prev - 0.2);
    free(o);
    free(w);
    free(w2);

    /* Too little active signal is an error, not a number. */
    CHECK_EQ(pl_quality_stoi(x, x, RATE / 4, RATE, &s), PL_QUALITY_ERR_TOO_SHORT);
    free(x);
}

static void frame_measures_lsd_level_and_dead_air(void)
{
    size_t n;
    float *x = make_speech(21, 6.0, &n);
    CHECK(x != NULL);
    pl_quality_frames f;
    CHECK_EQ(pl_quality_compare_frames(x, x, n, RATE, &f), PL_QUALITY_OK);
    CHECK(f.lsd_db == 0.0 && f.level_db == 0.0 && f.dead_air == 0.0);
    CHECK(f.active > 100 && f.active < f.frames);

    /* A pure gain change: LSD stays ~0, the level says -10 dB. */
    float *y = noisy(x, n, 300.0, pow(10.0, -10.0 / 20.0), 1);
    CHECK_EQ(pl_quality_compare_frames(x, y, n, RATE, &f), PL_QUALITY_OK);
    CHECK(fabs(f.level_db + 10.0) < 0.01);
    CHECK(f.lsd_db < 0.01);
    free(y);

    /* Noise and a low-pass make the spectra differ, more for more damage. */
    y = noisy(x, n, 20.0, 1.0, 2);
    CHECK_EQ(pl_quality_compare_frames(x, y, n, RATE, &f), PL_QUALITY_OK);
    double lsd20 = f.lsd_db;
    CHECK(f.dead_air == 0.0); /* noisy is not dead */
    free(y);
    y = noisy(x, n, 0.0, 1.0, 3);
    CHECK_EQ(pl_quality_compare_frames(x, y, n, RATE, &f), PL_QUALITY_OK);
    double lsd0 = f.lsd_db;
    free(y);
    y = malloc(n * sizeof *y);
    CHECK(y != NULL);
    /* A 12-tap moving average: a crude low-pass with its first null at 4 kHz. */
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t k = 0; k < 12 && k <= i; k++) s += x[i - k];
        y[i] = (float)(s / 12);
    }
    CHECK_EQ(pl_quality_compare_frames(x, y, n, RATE, &f), PL_QUALITY_OK);
    double lsd_lp = f.lsd_db;
    printf("  LSD: 20 dB SNR %.2f dB, 0 dB SNR %.2f dB, low-pass %.2f dB\n", lsd20, lsd0, lsd_lp);
    CHECK(lsd20 > 0.5 && lsd0 > lsd20 && lsd_lp > 3.0);

    /* Dead air: silence the second half of the recording. */
    memcpy(y, x, n * sizeof *x);
    memset(y + n / 2, 0, (n - n / 2) * sizeof *y);
    CHECK_EQ(pl_quality_compare_frames(x, y, n, RATE, &f), PL_QUALITY_OK);
    printf("  dead air with the second half silent: %.3f\n", f.dead_air);
    CHECK(f.dead_air > 0.35 && f.dead_air < 0.65);
    /* A silent recording (one-way audio) is all dead air, at any gain. */
    memset(y, 0, n * sizeof *y);
    CHECK_EQ(pl_quality_compare_frames(x, y, n, RATE, &f), PL_QUALITY_OK);
    CHECK(f.dead_air == 1.0);
    /* So is a faint hiss 50 dB down. */
    free(y);
    y = noisy(x, n, -300.0, 0.0, 4);
    pl_rng_seeded r;
    pl_rng_seeded_init(&r, 9);
    double sd = sqrt(power(x, n)) * pow(10.0, -50.0 / 20.0);
    for (size_t i = 0; i < n; i++) y[i] = (float)(sd * gauss(&r));
    CHECK_EQ(pl_quality_compare_frames(x, y, n, RATE, &f), PL_QUALITY_OK);
    CHECK(f.dead_air > 0.9);
    free(y);
    free(x);
}

/* Drops 20 ms frames at random: zeros (no concealment) or a repeat of the
 * frame before (the crudest concealment). */
static float *erase_frames(const float *x, size_t n, double p, bool repeat, uint64_t seed, double *erased)
{
    pl_rng_seeded r;
    pl_rng_seeded_init(&r, seed);
    float *y = malloc(n * sizeof *y);
    if (!y) return NULL;
    memcpy(y, x, n * sizeof *y);
    size_t fl = RATE / 50, lost = 0, frames = n / fl;
    for (size_t f = 1; f < frames; f++) {
        if (urand(&r) >= p) continue;
        lost++;
        if (repeat) memcpy(y + f * fl, y + (f - 1) * fl, fl * sizeof *y);
        else memset(y + f * fl, 0, fl * sizeof *y);
    }
    *erased = (double)lost / (double)frames;
    return y;
}

static void frame_erasures_lower_stoi_and_show_as_dead_air(void)
{
    size_t n;
    float *x = make_speech(31, 8.0, &n);
    CHECK(x != NULL);
    double prev_zero = 1.0, prev_rep = 1.0;
    /* One seed for every rate: the same draws erase nested sets of frames,
     * so each rate erases what the lower one did and more. */
    double rates[] = {0.02, 0.05, 0.10, 0.20, 0.40};
    for (size_t k = 0; k < sizeof rates / sizeof rates[0]; k++) {
        double erased, s_zero, s_rep;
        float *y = erase_frames(x, n, rates[k], false, 40, &erased);
        CHECK(y != NULL);
        CHECK_EQ(pl_quality_stoi(x, y, n, RATE, &s_zero), PL_QUALITY_OK);
        pl_quality_frames f;
        CHECK_EQ(pl_quality_compare_frames(x, y, n, RATE, &f), PL_QUALITY_OK);
        free(y);
        y = erase_frames(x, n, rates[k], true, 40, &erased);
        CHECK(y != NULL);
        CHECK_EQ(pl_quality_stoi(x, y, n, RATE, &s_rep), PL_QUALITY_OK);
        free(y);
        printf("  %2.0f%% of 20 ms frames erased: STOI %.3f as silence, %.3f repeated; dead air %.3f\n",
               100 * erased, s_zero, s_rep, f.dead_air);
        CHECK(s_zero < prev_zero && s_rep < prev_rep);
        prev_zero = s_zero;
        prev_rep = s_rep;
        /* An erased 20 ms frame silences one whole analysis frame (they are
         * 20 ms long, 10 ms apart; the two straddling it keep half their
         * energy), and only erasures within speech count: dead air is a
         * share of the erased fraction, never more. */
        CHECK(f.dead_air > 0.3 * erased && f.dead_air < 1.2 * erased + 0.005);
    }
    free(x);
}

static void emodel_reference_points(void)
{
    pl_emodel_result e;
    pl_emodel_input in = {.delay_ms = 0, .loss_pct = 0, .burst_r = 1, .ie = 0, .bpl = 25.1};
    pl_quality_emodel(&in, &e);
    printf("  R(0 ms, 0%%, Ie 0) = %.3f (Ro - Is %.3f)\n", e.r, e.ro_is);
    CHECK(fabs(e.r - 93.2) < 0.05);
    /* The delay curve falls monotonically; Idd is 0 up to 100 ms. */
    double delays[] = {25, 50, 100, 150, 200, 300, 400, 500};
    double prev = e.r;
    printf("  R by one-way delay:");
    for (size_t k = 0; k < sizeof delays / sizeof delays[0]; k++) {
        in.delay_ms = delays[k];
        pl_quality_emodel(&in, &e);
        printf(" %.0f ms %.2f", delays[k], e.r);
        CHECK(e.r < prev);
        prev = e.r;
        if (delays[k] <= 100) CHECK(e.idd == 0.0);
    }
    printf("\n");
    /* Points worked by hand from G.107 clause 7.4 with the default
     * parameters. 150 ms (G.114: acceptable for most applications):
     * Idte = 2.82, Idle = 0.84, Idd = 0.16, R = 93.36 - 3.82 = 89.54. */
    in.delay_ms = 150;
    pl_quality_emodel(&in, &e);
    CHECK(fabs(e.idd - 0.163) < 0.005 && fabs(e.id - 3.82) < 0.02 && fabs(e.r - 89.54) < 0.03);
    /* 400 ms (G.114's planning limit): Idte 5.82, Idle 1.22, Idd 24.06: R = 62.25. */
    in.delay_ms = 400;
    pl_quality_emodel(&in, &e);
    CHECK(fabs(e.idd - 24.06) < 0.02 && fabs(e.r - 62.25) < 0.05);

    /* Loss: G.711 with PLC (Bpl 25.1) at 2% random loss:
     * Ie,eff = 95 * 2 / (2 + 25.1) = 7.01, so R = 93.2 - 7.0. */
    in = (pl_emodel_input){.delay_ms = 0, .loss_pct = 2, .burst_r = 1, .ie = 0, .bpl = 25.1};
    pl_quality_emodel(&in, &e);
    CHECK(fabs(e.ie_eff - 95.0 * 2 / 27.1) < 1e-9);
    CHECK(fabs(e.r - (93.2 - 7.01)) < 0.06);
    /* Burstiness makes the same loss worse. */
    double random_r = e.r;
    in.burst_r = pl_quality_burst_r(0.02, 4.0);
    CHECK(fabs(in.burst_r - 3.92) < 1e-9);
    pl_quality_emodel(&in, &e);
    CHECK(e.r < random_r);
    CHECK(pl_quality_burst_r(0.1, 1.0 / 0.9) == 1.0); /* random loss is BurstR 1 */
    /* G.729A (Ie 11, Bpl 19) at 0 loss: R = 93.2 - 11. */
    in = (pl_emodel_input){.loss_pct = 0, .burst_r = 1, .ie = 11, .bpl = 19};
    pl_quality_emodel(&in, &e);
    CHECK(fabs(e.r - 82.2) < 0.05);
}

int main(void)
{
    RUN(fft_matches_a_direct_transform);
    RUN(wav_files_round_trip_and_bad_ones_are_refused);
    RUN(resampling_keeps_the_band_and_removes_what_is_above);
    RUN(delay_is_recovered_exactly);
    RUN(stoi_has_its_known_properties);
    RUN(frame_measures_lsd_level_and_dead_air);
    RUN(frame_erasures_lower_stoi_and_show_as_dead_air);
    RUN(emodel_reference_points);
    return pl_test_summary();
}
