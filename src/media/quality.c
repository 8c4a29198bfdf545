/* quality.c - delay by cross-correlation, alignment, and the frame measures
 * (level, log-spectral distance, dead air); see quality.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quality.h"

/* ---- delay ------------------------------------------------------------------------ */

pl_quality_err pl_quality_find_delay(const float *ref, size_t nref, const float *deg, size_t ndeg, uint32_t rate,
                                     long min_lag, long max_lag, pl_quality_delay *out)
{
    memset(out, 0, sizeof *out);
    if (nref == 0 || ndeg == 0) return PL_QUALITY_ERR_TOO_SHORT;
    if (nref > PL_QUALITY_MAX_SAMPLES || ndeg > PL_QUALITY_MAX_SAMPLES || rate == 0) return PL_QUALITY_ERR_RATE;
    /* Only deg[min_lag, nref + max_lag) can meet ref at a lag in the window:
     * correlate just that stretch, so a long recording with a short search
     * window costs what the window needs. */
    long lim = (long)PL_QUALITY_MAX_SAMPLES;
    if (min_lag < -lim) min_lag = -lim;
    if (max_lag > lim) max_lag = lim;
    if (min_lag > max_lag) return PL_QUALITY_ERR_TOO_SHORT;
    size_t d0 = min_lag > 0 ? (size_t)min_lag : 0;
    long end = (long)nref + max_lag;
    size_t d1 = end < (long)ndeg ? (end > 0 ? (size_t)end : 0) : ndeg;
    if (d0 >= d1) return PL_QUALITY_ERR_TOO_SHORT;
    deg += d0;
    ndeg = d1 - d0;
    min_lag -= (long)d0;
    max_lag -= (long)d0;
    /* Linear (not circular) correlation: the transform holds both signals
     * end to end without wrapping. */
    size_t n = 1;
    while (n < nref + ndeg) n <<= 1;
    double *ar = calloc(n, sizeof *ar), *ai = calloc(n, sizeof *ai);
    if (!ar || !ai) {
        free(ar);
        free(ai);
        return PL_QUALITY_ERR_MEMORY;
    }
    /* Both real signals in one complex transform: a = ref + i deg. Their
     * spectra are R[k] = (A[k] + conj A[n-k]) / 2 and
     * D[k] = (A[k] - conj A[n-k]) / 2i, and the correlation
     * c[lag] = sum ref[t] deg[t + lag] is the inverse of conj(R) D. */
    for (size_t i = 0; i < nref; i++) ar[i] = ref[i];
    for (size_t i = 0; i < ndeg; i++) ai[i] = deg[i];
    if (!pl_quality_fft(ar, ai, n, false)) {
        free(ar);
        free(ai);
        return PL_QUALITY_ERR_MEMORY;
    }
    for (size_t k = 0; k <= n / 2; k++) {
        size_t j = (n - k) & (n - 1);
        double a_re = ar[k], a_im = ai[k], b_re = ar[j], b_im = -ai[j]; /* b = conj A[n-k] */
        double r_re = (a_re + b_re) / 2, r_im = (a_im + b_im) / 2;
        /* (A - B) / 2i = (im, -re) / 2 */
        double d_re = (a_im - b_im) / 2, d_im = -(a_re - b_re) / 2;
        /* conj(R) * D */
        double c_re = r_re * d_re + r_im * d_im, c_im = r_re * d_im - r_im * d_re;
        ar[k] = c_re;
        ai[k] = c_im;
        /* The correlation is real, so its spectrum is conjugate-symmetric. */
        ar[j] = c_re;
        ai[j] = -c_im;
    }
    if (!pl_quality_fft(ar, ai, n, true)) {
        free(ar);
        free(ai);
        return PL_QUALITY_ERR_MEMORY;
    }
    /* Lags from -(nref - 1) to ndeg - 1 exist; lag L sits at index L mod n. */
    long lo = -(long)(nref - 1), hi = (long)ndeg - 1;
    if (min_lag > lo) lo = min_lag;
    if (max_lag < hi) hi = max_lag;
    long best = 0;
    double best_v = 0;
    bool found = false;
    for (long lag = lo; lag <= hi; lag++) {
        /* The largest magnitude: a path may invert the polarity (some
         * filters and devices do), which is no reason to miss the delay. */
        double v = fabs(ar[(size_t)(lag < 0 ? (long)n + lag : lag)]);
        /* Ties go to the smallest |lag|; a silent input stays at 0. */
        if (!found || v > best_v || (v == best_v && labs(lag) < labs(best))) {
            best = lag;
            best_v = v;
            found = true;
        }
    }
    free(ar);
    free(ai);
    if (!found) return PL_QUALITY_ERR_TOO_SHORT;
    /* The normalised value at that lag, over the overlap only. */
    double sxy = 0, sxx = 0, syy = 0;
    for (size_t t = 0; t < nref; t++) {
        long u = (long)t + best;
        if (u < 0) continue;
        if ((size_t)u >= ndeg) break;
        sxy += (double)ref[t] * deg[u];
        sxx += (double)ref[t] * ref[t];
        syy += (double)deg[u] * deg[u];
    }
    if (sxx <= 0 || syy <= 0) best = 0;
    if (sxx > 0 && syy > 0) best += (long)d0;
    out->lag = best;
    out->lag_ms = (double)best * 1000.0 / (double)rate;
    out->peak = sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : 0.0;
    return PL_QUALITY_OK;
}

void pl_quality_align(const float *deg, size_t ndeg, long lag, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        long j = (long)i + lag;
        out[i] = j >= 0 && (size_t)j < ndeg ? deg[j] : 0.0f;
    }
}

/* ---- frame measures ------------------------------------------------------------------ */

#define ACTIVE_RANGE_DB 40.0
#define LSD_FLOOR_DB 50.0
#define LSD_LOW_HZ 100.0
#define LSD_HIGH_HZ 8000.0
#define DEAD_BELOW_DB 20.0
#define DEAD_ABSOLUTE_DBFS (-70.0)
#define LEVEL_CLAMP_DB 20.0

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double db10(double power)
{
    return 10.0 * log10(power + 1e-20);
}

pl_quality_err pl_quality_compare_frames(const float *ref, const float *deg, size_t n, uint32_t rate,
                                         pl_quality_frames *out)
{
    memset(out, 0, sizeof *out);
    if (rate < 8000 || rate > 192000) return PL_QUALITY_ERR_RATE;
    size_t flen = rate / 50, hop = rate / 100;
    if (n < flen) return PL_QUALITY_ERR_TOO_SHORT;
    size_t frames = (n - flen) / hop + 1;
    size_t nfft = 1;
    while (nfft < flen) nfft <<= 1;
    size_t klo = (size_t)ceil(LSD_LOW_HZ * (double)nfft / rate);
    double high = LSD_HIGH_HZ < rate / 2.0 ? LSD_HIGH_HZ : rate / 2.0;
    size_t khi = (size_t)floor(high * (double)nfft / rate);
    size_t nbins = khi >= klo ? khi - klo + 1 : 0;

    double *w = malloc(flen * sizeof *w);
    double *ref_db = malloc(frames * sizeof *ref_db), *deg_db = malloc(frames * sizeof *deg_db);
    double *diff = malloc(frames * sizeof *diff);
    double *re = malloc(nfft * sizeof *re), *im = malloc(nfft * sizeof *im);
    double *pr = malloc((nbins ? nbins : 1) * frames * sizeof *pr), *pd = malloc((nbins ? nbins : 1) * frames * sizeof *pd);
    pl_quality_err err = PL_QUALITY_ERR_MEMORY;
    if (!w || !ref_db || !deg_db || !diff || !re || !im || !pr || !pd) goto done;
    for (size_t i = 0; i < flen; i++) w[i] = 0.5 - 0.5 * cos(2.0 * M_PI * (double)(i + 1) / (double)(flen + 1));

    /* Levels (mean square, dBFS re a full-scale square wave) and band spectra per frame. */
    double max_ref = -INFINITY;
    for (size_t f = 0; f < frames; f++) {
        const float *a = ref + f * hop, *b = deg + f * hop;
        double sa = 0, sb = 0;
        for (size_t i = 0; i < flen; i++) {
            sa += (double)a[i] * a[i];
            sb += (double)b[i] * b[i];
        }
        ref_db[f] = db10(sa / (double)flen);
        deg_db[f] = db10(sb / (double)flen);
        if (ref_db[f] > max_ref) max_ref = ref_db[f];
        for (int which = 0; which < 2; which++) {
            const float *s = which ? b : a;
            for (size_t i = 0; i < nfft; i++) {
                re[i] = i < flen ? w[i] * s[i] : 0.0;
                im[i] = 0.0;
            }
            if (!pl_quality_fft(re, im, nfft, false)) goto done;
            double *dst = (which ? pd : pr) + f * nbins;
            for (size_t k = 0; k < nbins; k++) dst[k] = re[klo + k] * re[klo + k] + im[klo + k] * im[klo + k];
        }
    }
    out->frames = frames;

    /* Active reference frames, and the path's gain as the median level difference. */
    size_t active = 0;
    for (size_t f = 0; f < frames; f++)
        if (ref_db[f] > max_ref - ACTIVE_RANGE_DB && ref_db[f] > -150.0) diff[active++] = deg_db[f] - ref_db[f];
    err = PL_QUALITY_ERR_TOO_SHORT;
    if (active == 0 || nbins == 0) goto done;
    qsort(diff, active, sizeof *diff, cmp_double);
    double level = active % 2 ? diff[active / 2] : (diff[active / 2 - 1] + diff[active / 2]) / 2;
    out->level_db = level;
    out->active = active;
    double gain_db = level > LEVEL_CLAMP_DB ? LEVEL_CLAMP_DB : level < -LEVEL_CLAMP_DB ? -LEVEL_CLAMP_DB : level;
    double gain = pow(10.0, -gain_db / 10.0); /* brings the recording's power to the reference's */

    /* The spectral floor: LSD_FLOOR_DB below the loudest active frame's mean bin power. */
    double loudest = 0;
    for (size_t f = 0; f < frames; f++) {
        if (!(ref_db[f] > max_ref - ACTIVE_RANGE_DB)) continue;
        double m = 0;
        for (size_t k = 0; k < nbins; k++) m += pr[f * nbins + k];
        m /= (double)nbins;
        if (m > loudest) loudest = m;
    }
    double floor_p = loudest * pow(10.0, -LSD_FLOOR_DB / 10.0) + 1e-30;

    double lsd_sum = 0;
    size_t dead = 0;
    for (size_t f = 0; f < frames; f++) {
        if (!(ref_db[f] > max_ref - ACTIVE_RANGE_DB && ref_db[f] > -150.0)) continue;
        double s = 0;
        for (size_t k = 0; k < nbins; k++) {
            double a = pr[f * nbins + k], b = pd[f * nbins + k] * gain;
            double d = 10.0 * log10((a > floor_p ? a : floor_p) / (b > floor_p ? b : floor_p));
            s += d * d;
        }
        lsd_sum += sqrt(s / (double)nbins);
        if (deg_db[f] < ref_db[f] + gain_db - DEAD_BELOW_DB || deg_db[f] < DEAD_ABSOLUTE_DBFS) dead++;
    }
    out->lsd_db = lsd_sum / (double)active;
    out->dead_air = (double)dead / (double)active;
    err = PL_QUALITY_OK;
done:
    free(w);
    free(ref_db);
    free(deg_db);
    free(diff);
    free(re);
    free(im);
    free(pr);
    free(pd);
    return err;
}
