/*
 * stoi.c - Short-Time Objective Intelligibility, and the resampler it needs.
 *
 * After C. H. Taal, R. C. Hendriks, R. Heusdens, J. Jensen, "An Algorithm
 * for Intelligibility Prediction of Time-Frequency Weighted Noisy Speech",
 * IEEE Trans. Audio, Speech, Lang. Process. 19(7), 2011, pp. 2125-2136.
 * The steps, with the paper's constants:
 *  1. Both signals at 10 kHz.
 *  2. Frames of 256 samples (25.6 ms), Hann window, 128 apart. Frames whose
 *     clean energy is more than 40 dB below the loudest clean frame are
 *     removed from both signals, which are then rebuilt by overlap-add.
 *  3. A 512-point DFT per frame; DFT bins grouped into 15 one-third-octave
 *     bands with centres from 150 Hz (up to about 4.3 kHz); the band
 *     envelope is the square root of the summed bin powers.
 *  4. For every band and every run of N = 30 consecutive frames (384 ms):
 *     the degraded envelope y is scaled to the clean envelope's norm and
 *     clipped to at most (1 + 10^(-beta/20)) times the clean one, beta =
 *     -15 dB (a lower bound on the signal-to-distortion ratio), then
 *     correlated with the clean envelope (sample correlation coefficient).
 *  5. STOI is the mean of those correlations over bands and runs.
 * Details where the paper leaves a choice follow the reference MATLAB code
 * as commonly reimplemented: the window is a Hann of N+2 points without its
 * zero ends; frames start at 0, hop, ... while a whole frame fits strictly
 * before the end; a band spans the DFT bins from the one nearest its lower
 * edge up to (not including) the one nearest its upper edge.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quality.h"

#define FS 10000
#define FRAME 256
#define HOP 128
#define NFFT 512
#define BINS (NFFT / 2 + 1)
#define BANDS 15
#define MIN_FREQ 150.0
#define SEG 30
#define BETA (-15.0)
#define DYN_RANGE 40.0
#define EPS 2.220446049250313e-16

/* ---- resampling ------------------------------------------------------------------ */

#define ZERO_CROSSINGS 10 /* filter half-length, in periods of the lower rate */
#define KAISER_BETA 5.0
#define MAX_PHASES 1000

static uint32_t gcd_u32(uint32_t a, uint32_t b)
{
    while (b) {
        uint32_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static double bessel_i0(double x)
{
    double sum = 1.0, term = 1.0;
    for (int k = 1; k < 50; k++) {
        term *= (x / (2.0 * k)) * (x / (2.0 * k));
        sum += term;
        if (term < sum * 1e-17) break;
    }
    return sum;
}

pl_quality_err pl_quality_resample(const float *x, size_t n, uint32_t from, uint32_t to, float **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (from == 0 || to == 0 || from > 192000 || to > 192000) return PL_QUALITY_ERR_RATE;
    uint32_t g = gcd_u32(from, to), up = to / g, down = from / g;
    if (up > MAX_PHASES) return PL_QUALITY_ERR_RATE;
    size_t m = (size_t)(((unsigned long long)n * up + down - 1) / down);
    float *y = malloc((m ? m : 1) * sizeof *y);
    if (!y) return PL_QUALITY_ERR_MEMORY;
    if (from == to) {
        if (n) memcpy(y, x, n * sizeof *x);
        *out = y;
        *out_len = n;
        return PL_QUALITY_OK;
    }
    /* In input samples: the cutoff (as a fraction of the input rate's
     * Nyquist) is the lower Nyquist frequency, and the filter reaches
     * ZERO_CROSSINGS periods of the lower rate each side. */
    double cut = to < from ? (double)to / (double)from : 1.0;
    double half = ZERO_CROSSINGS / cut;
    int taps = 2 * (int)ceil(half) + 2;
    double *h = malloc((size_t)up * (size_t)taps * sizeof *h);
    if (!h) {
        free(y);
        return PL_QUALITY_ERR_MEMORY;
    }
    /* Output sample k sits at input position k*down/up = i0 + p/up. Phase
     * p's taps weigh input samples i0 - taps/2 + 1 .. i0 + taps/2. */
    double i0b = bessel_i0(KAISER_BETA);
    for (uint32_t p = 0; p < up; p++) {
        double frac = (double)p / (double)up, sum = 0;
        for (int t = 0; t < taps; t++) {
            double d = frac - (double)(t - taps / 2 + 1); /* position minus input index */
            double v = 0;
            if (fabs(d) < half) {
                double arg = M_PI * cut * d;
                double sinc = d == 0 ? 1.0 : sin(arg) / arg;
                double r = d / half;
                v = cut * sinc * bessel_i0(KAISER_BETA * sqrt(1.0 - r * r)) / i0b;
            }
            h[p * (size_t)taps + (size_t)t] = v;
            sum += v;
        }
        /* Unity gain at DC for every phase. */
        for (int t = 0; t < taps; t++) h[p * (size_t)taps + (size_t)t] /= sum;
    }
    for (size_t k = 0; k < m; k++) {
        unsigned long long pos = (unsigned long long)k * down;
        long i0 = (long)(pos / up);
        uint32_t p = (uint32_t)(pos % up);
        const double *hp = h + p * (size_t)taps;
        long first = i0 - taps / 2 + 1;
        double acc = 0;
        for (int t = 0; t < taps; t++) {
            long j = first + t;
            if (j >= 0 && (size_t)j < n) acc += hp[t] * x[j];
        }
        y[k] = (float)acc;
    }
    free(h);
    *out = y;
    *out_len = m;
    return PL_QUALITY_OK;
}

/* ---- STOI -------------------------------------------------------------------------- */

static void hann(double *w, int n)
{
    for (int i = 0; i < n; i++) w[i] = 0.5 - 0.5 * cos(2.0 * M_PI * (i + 1) / (n + 1));
}

static size_t frame_count(size_t len)
{
    /* Frames at 0, HOP, ... with start < len - FRAME. */
    return len > FRAME ? (len - FRAME - 1) / HOP + 1 : 0;
}

/* Drops the frames of both signals where x is more than DYN_RANGE below its
 * loudest frame and rebuilds both by overlap-add. Returns the new length
 * (0 if no frame is left) and writes into xo, yo (at least len long). */
static size_t remove_silent(const double *x, const double *y, size_t len, const double *w, double *xo, double *yo)
{
    size_t nf = frame_count(len);
    if (nf == 0) return 0;
    double *energy = malloc(nf * sizeof *energy);
    if (!energy) return 0;
    double max_e = -INFINITY;
    for (size_t f = 0; f < nf; f++) {
        double s = 0;
        for (int i = 0; i < FRAME; i++) {
            double v = w[i] * x[f * HOP + (size_t)i];
            s += v * v;
        }
        energy[f] = 20.0 * log10(sqrt(s) + EPS);
        if (energy[f] > max_e) max_e = energy[f];
    }
    size_t kept = 0;
    for (size_t f = 0; f < nf; f++) {
        if (!(max_e - DYN_RANGE - energy[f] < 0)) continue;
        size_t at = kept * HOP;
        if (kept == 0) {
            memset(xo, 0, FRAME * sizeof *xo);
            memset(yo, 0, FRAME * sizeof *yo);
        } else {
            memset(xo + at + FRAME - HOP, 0, HOP * sizeof *xo);
            memset(yo + at + FRAME - HOP, 0, HOP * sizeof *yo);
        }
        for (int i = 0; i < FRAME; i++) {
            xo[at + (size_t)i] += w[i] * x[f * HOP + (size_t)i];
            yo[at + (size_t)i] += w[i] * y[f * HOP + (size_t)i];
        }
        kept++;
    }
    free(energy);
    return kept ? (kept - 1) * HOP + FRAME : 0;
}

/* The one-third-octave band envelopes: env[band * frames + frame]. */
static bool band_envelopes(const double *s, size_t len, const double *w, const int lo[BANDS], const int hi[BANDS],
                           double *env, size_t frames)
{
    double re[NFFT], im[NFFT];
    for (size_t f = 0; f < frames; f++) {
        for (int i = 0; i < NFFT; i++) {
            re[i] = i < FRAME ? w[i] * s[f * HOP + (size_t)i] : 0.0;
            im[i] = 0.0;
        }
        if (!pl_quality_fft(re, im, NFFT, false)) return false;
        for (int b = 0; b < BANDS; b++) {
            double p = 0;
            for (int k = lo[b]; k < hi[b]; k++) p += re[k] * re[k] + im[k] * im[k];
            env[(size_t)b * frames + f] = sqrt(p);
        }
    }
    (void)len;
    return true;
}

static int nearest_bin(double freq)
{
    /* Bin k is at k * FS / NFFT; the nearest of 0..BINS-1 (ties to the lower). */
    double k = freq * NFFT / FS;
    int lo = (int)floor(k);
    if (lo < 0) return 0;
    if (lo >= BINS - 1) return BINS - 1;
    return (k - lo) <= (lo + 1 - k) ? lo : lo + 1;
}

pl_quality_err pl_quality_stoi(const float *x, const float *y, size_t n, uint32_t rate, double *out)
{
    *out = 0;
    float *x10 = NULL, *y10 = NULL;
    size_t len = 0, leny = 0;
    pl_quality_err err = pl_quality_resample(x, n, rate, FS, &x10, &len);
    if (!err) err = pl_quality_resample(y, n, rate, FS, &y10, &leny);
    if (err) {
        free(x10);
        free(y10);
        return err;
    }
    double *xd = malloc((len + 1) * sizeof *xd), *yd = malloc((len + 1) * sizeof *yd);
    double *xs = malloc((len + FRAME) * sizeof *xs), *ys = malloc((len + FRAME) * sizeof *ys);
    double *xe = NULL, *ye = NULL;
    err = PL_QUALITY_ERR_MEMORY;
    if (!xd || !yd || !xs || !ys) goto done;
    for (size_t i = 0; i < len; i++) {
        xd[i] = x10[i];
        yd[i] = y10[i];
    }
    double w[FRAME];
    hann(w, FRAME);
    size_t slen = remove_silent(xd, yd, len, w, xs, ys);
    size_t frames = frame_count(slen);
    err = PL_QUALITY_ERR_TOO_SHORT;
    if (frames < SEG) goto done;

    int lo[BANDS], hi[BANDS];
    for (int b = 0; b < BANDS; b++) {
        lo[b] = nearest_bin(MIN_FREQ * pow(2.0, (2.0 * b - 1.0) / 6.0));
        hi[b] = nearest_bin(MIN_FREQ * pow(2.0, (2.0 * b + 1.0) / 6.0));
    }
    err = PL_QUALITY_ERR_MEMORY;
    xe = malloc(BANDS * frames * sizeof *xe);
    ye = malloc(BANDS * frames * sizeof *ye);
    if (!xe || !ye) goto done;
    if (!band_envelopes(xs, slen, w, lo, hi, xe, frames) || !band_envelopes(ys, slen, w, lo, hi, ye, frames))
        goto done;

    const double clip = pow(10.0, -BETA / 20.0);
    double total = 0;
    size_t count = 0;
    for (int b = 0; b < BANDS; b++) {
        const double *xb = xe + (size_t)b * frames, *yb = ye + (size_t)b * frames;
        for (size_t m = SEG; m <= frames; m++) {
            const double *xv = xb + m - SEG, *yv = yb + m - SEG;
            double nx = 0, ny = 0;
            for (int i = 0; i < SEG; i++) {
                nx += xv[i] * xv[i];
                ny += yv[i] * yv[i];
            }
            double scale = sqrt(nx) / (sqrt(ny) + EPS);
            double yp[SEG], mx = 0, my = 0;
            for (int i = 0; i < SEG; i++) {
                double v = yv[i] * scale, cap = xv[i] * (1.0 + clip);
                yp[i] = v < cap ? v : cap;
                mx += xv[i];
                my += yp[i];
            }
            mx /= SEG;
            my /= SEG;
            double sxy = 0, sxx = 0, syy = 0;
            for (int i = 0; i < SEG; i++) {
                double a = xv[i] - mx, c = yp[i] - my;
                sxy += a * c;
                sxx += a * a;
                syy += c * c;
            }
            total += sxy / ((sqrt(sxx) + EPS) * (sqrt(syy) + EPS));
            count++;
        }
    }
    *out = total / (double)count;
    err = PL_QUALITY_OK;
done:
    free(x10);
    free(y10);
    free(xd);
    free(yd);
    free(xs);
    free(ys);
    free(xe);
    free(ye);
    return err;
}
