/*
 * speech.h - test material for the media tests: real synthetic speech from
 * espeak-ng (resampled to 48 kHz mono by sox) and signal comparisons.
 */
#ifndef PL_TEST_SPEECH_H
#define PL_TEST_SPEECH_H

#include <stddef.h>
#include <stdint.h>

/* Speaks `text` with espeak-ng, converts it to 48 kHz mono 16-bit with sox,
 * and returns the samples (malloc'ed; the caller frees). The temporary
 * files are removed. Returns NULL if either tool fails. */
int16_t *pl_test_speech(const char *text, size_t *n);
/* Also keeps the two intermediate files in `dir`: espeak-ng's own WAV
 * (22050 Hz) as dir/speech22k.wav and sox's 48 kHz WAV as dir/speech48k.wav. */
int16_t *pl_test_speech_files(const char *text, const char *dir, size_t *n);

/* Normalised cross-correlation of a[i] and b[i + lag] over i in [0, n). */
double pl_test_corr(const int16_t *a, const int16_t *b, size_t n, size_t lag);
/* The lag in [0, max_lag] that maximises the correlation; *best gets it. */
size_t pl_test_best_lag(const int16_t *a, const int16_t *b, size_t n, size_t max_lag, double *best);
/* The same, fast for long lags: a coarse search on the signals averaged over
 * 8 samples (speech lives below 3 kHz) in steps of 8, then the full search
 * within 8 samples of the coarse best. */
size_t pl_test_best_lag_fast(const int16_t *a, const int16_t *b, size_t n, size_t max_lag, double *best);
/* Root mean square of n samples. */
double pl_test_rms(const int16_t *a, size_t n);

#endif
