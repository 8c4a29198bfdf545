/* speech.c - speech material and signal comparisons for tests; see speech.h. */
#include "speech.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int16_t *read_raw(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    int16_t *pcm = size > 0 ? malloc((size_t)size) : NULL;
    if (!pcm || fread(pcm, 1, (size_t)size, f) != (size_t)size) {
        free(pcm);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *n = (size_t)size / 2;
    return pcm;
}

int16_t *pl_test_speech_files(const char *text, const char *dir, size_t *n)
{
    char cmd[4096], raw[1024];
    snprintf(raw, sizeof raw, "%s/speech48k.raw", dir);
    /* The text is ours (test code), never user input: quoting it plainly is
     * enough. */
    snprintf(cmd, sizeof cmd,
             "espeak-ng -w '%s/speech22k.wav' '%s' && "
             "sox -V1 '%s/speech22k.wav' -r 48000 -c 1 -b 16 -e signed-integer '%s/speech48k.wav' && "
             "sox -V1 '%s/speech48k.wav' -t raw '%s'",
             dir, text, dir, dir, dir, raw);
    if (system(cmd) != 0) return NULL;
    int16_t *pcm = read_raw(raw, n);
    unlink(raw);
    return pcm;
}

int16_t *pl_test_speech(const char *text, size_t *n)
{
    char dir[] = "/tmp/parley-speech-XXXXXX";
    if (!mkdtemp(dir)) return NULL;
    int16_t *pcm = pl_test_speech_files(text, dir, n);
    char path[1100];
    snprintf(path, sizeof path, "%s/speech22k.wav", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/speech48k.wav", dir);
    unlink(path);
    rmdir(dir);
    return pcm;
}

double pl_test_corr(const int16_t *a, const int16_t *b, size_t n, size_t lag)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        double x = a[i], y = b[i + lag];
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if (aa == 0 || bb == 0) return 0;
    return ab / sqrt(aa * bb);
}

size_t pl_test_best_lag(const int16_t *a, const int16_t *b, size_t n, size_t max_lag, double *best)
{
    size_t best_lag = 0;
    double best_c = -2;
    for (size_t lag = 0; lag <= max_lag; lag++) {
        double c = pl_test_corr(a, b, n, lag);
        if (c > best_c) {
            best_c = c;
            best_lag = lag;
        }
    }
    if (best) *best = best_c;
    return best_lag;
}

size_t pl_test_best_lag_fast(const int16_t *a, const int16_t *b, size_t n, size_t max_lag, double *best)
{
    size_t na = n / 8, nb = (n + max_lag) / 8;
    int16_t *da = malloc(sizeof *da * (na + 1)), *db = malloc(sizeof *db * (nb + 1));
    if (!da || !db) abort();
    for (size_t i = 0; i < na; i++) {
        int s = 0;
        for (int k = 0; k < 8; k++) s += a[i * 8 + (size_t)k];
        da[i] = (int16_t)(s / 8);
    }
    for (size_t i = 0; i < nb; i++) {
        int s = 0;
        for (int k = 0; k < 8; k++) s += b[i * 8 + (size_t)k];
        db[i] = (int16_t)(s / 8);
    }
    size_t coarse = pl_test_best_lag(da, db, na, max_lag / 8, NULL) * 8;
    free(da);
    free(db);
    size_t lo = coarse >= 8 ? coarse - 8 : 0, hi = coarse + 8 > max_lag ? max_lag : coarse + 8;
    size_t best_lag = lo;
    double best_c = -2;
    for (size_t lag = lo; lag <= hi; lag++) {
        double c = pl_test_corr(a, b, n, lag);
        if (c > best_c) {
            best_c = c;
            best_lag = lag;
        }
    }
    if (best) *best = best_c;
    return best_lag;
}

double pl_test_rms(const int16_t *a, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * a[i];
    return n ? sqrt(s / (double)n) : 0;
}
