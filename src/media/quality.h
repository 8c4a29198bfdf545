/*
 * quality.h - measuring what a voice path did to speech: the delay, the
 * intelligibility (STOI), the spectral distortion, dead air, and an E-model
 * transmission rating estimate.
 *
 * This is the DSP behind `parley-quality`, kept apart from the tool so that
 * tests can run it on signals they make. Everything here works on mono
 * float samples in [-1, 1); functions that need scratch memory allocate it
 * per call (analysis runs once per recording, never per packet) and report
 * PL_QUALITY_ERR_MEMORY when they cannot.
 *
 * Nothing here is a MOS. STOI predicts intelligibility (0..1); the E-model's
 * R is a planning estimate computed from delay and loss, not a listening
 * test, and is labelled "R (E-model estimate)" wherever it is shown.
 */
#ifndef PL_QUALITY_H
#define PL_QUALITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum pl_quality_err {
    PL_QUALITY_OK = 0,
    PL_QUALITY_ERR_IO,          /* cannot read or write the file */
    PL_QUALITY_ERR_FORMAT,      /* not a RIFF/WAVE file, or a malformed one */
    PL_QUALITY_ERR_UNSUPPORTED, /* a WAVE encoding we do not read */
    PL_QUALITY_ERR_MEMORY,
    PL_QUALITY_ERR_TOO_SHORT,   /* not enough (active) signal to measure */
    PL_QUALITY_ERR_RATE,        /* the two signals have different sample rates, or a rate we refuse */
} pl_quality_err;
const char *pl_quality_strerror(pl_quality_err err);

/* ---- WAV files (quality_wav.c) ------------------------------------------------ */

/* Mono samples in [-1, 1); the caller frees with pl_quality_audio_free. */
typedef struct pl_quality_audio {
    float *samples;
    size_t len;
    uint32_t rate;
} pl_quality_audio;

/* The largest file pl_quality_wav_load reads, and the longest signal the
 * harness accepts (about 10 minutes at 48 kHz). */
#define PL_QUALITY_MAX_FILE (64u * 1024 * 1024)
#define PL_QUALITY_MAX_SAMPLES (30u * 1000 * 1000)

/* Reads RIFF/WAVE: PCM 8/16/24/32-bit and IEEE float 32-bit, plain or
 * WAVE_FORMAT_EXTENSIBLE, 1 to 8 channels (averaged to mono), 8 kHz to
 * 192 kHz. Chunks are walked with bounds checks; a data chunk that claims
 * more than the file holds is cut to what is there. */
pl_quality_err pl_quality_wav_parse(const uint8_t *data, size_t len, pl_quality_audio *out);
pl_quality_err pl_quality_wav_load(const char *path, pl_quality_audio *out);
/* Writes 16-bit PCM mono, clipping to full scale. */
pl_quality_err pl_quality_wav_save(const char *path, const float *x, size_t n, uint32_t rate);
void pl_quality_audio_free(pl_quality_audio *a);

/* ---- FFT (quality_fft.c) ------------------------------------------------------ */

/* In-place complex FFT of n points (a power of two), re/im separate; the
 * inverse is unscaled (divide by n). false if n is not a power of two or
 * the twiddle table cannot be allocated. */
bool pl_quality_fft(double *re, double *im, size_t n, bool inverse);

/* ---- delay (quality.c) -------------------------------------------------------- */

typedef struct pl_quality_delay {
    long lag;       /* samples: the recording lags the reference by this much (may be negative) */
    double lag_ms;
    double peak;    /* normalised cross-correlation at the lag, -1..1, over the overlap;
                     * negative when the path inverts the polarity */
} pl_quality_delay;

/* Finds the lag that maximises the magnitude of the cross-correlation of
 * ref and deg (by FFT; scale-invariant, so level changes do not matter, and
 * sign-blind, so an inverted polarity does not either), searching
 * lags in [min_lag, max_lag] samples. Silent inputs give lag 0, peak 0. */
pl_quality_err pl_quality_find_delay(const float *ref, size_t nref, const float *deg, size_t ndeg, uint32_t rate,
                                     long min_lag, long max_lag, pl_quality_delay *out);

/* out[i] = deg[i + lag] for i in [0, n), zero where that is outside deg. */
void pl_quality_align(const float *deg, size_t ndeg, long lag, float *out, size_t n);

/* ---- STOI (stoi.c) ------------------------------------------------------------- */

/* Short-Time Objective Intelligibility (Taal, Hendriks, Heusdens, Jensen,
 * IEEE TASLP 19(7), 2011) of the degraded y against the clean x, both n
 * samples at `rate`, already time-aligned. Resamples to 10 kHz; 256-sample
 * Hann frames, 50% overlap; drops frames more than 40 dB below the loudest
 * clean frame; 15 one-third-octave bands from 150 Hz; 384 ms (30-frame)
 * segments, the degraded envelope scaled to the clean one and clipped at
 * -15 dB signal-to-distortion; the mean of the correlations. 1 for y == x,
 * about 0 for unrelated signals. */
pl_quality_err pl_quality_stoi(const float *x, const float *y, size_t n, uint32_t rate, double *out);

/* Resamples by a windowed-sinc (Kaiser) polyphase filter; *out is malloc'ed.
 * Rates up to 192 kHz whose ratio reduces to at most 1000 phases. */
pl_quality_err pl_quality_resample(const float *x, size_t n, uint32_t from, uint32_t to, float **out,
                                   size_t *out_len);

/* ---- frame measures (quality.c) -------------------------------------------------- */

/* Frames of 20 ms, 10 ms apart. "Active" frames are those of the reference
 * within 40 dB of its loudest frame. */
typedef struct pl_quality_frames {
    size_t frames, active;
    /* The median over active frames of (recording - reference) level: the
     * path's gain, which the other measures factor out. */
    double level_db;
    /* Log-spectral distance over active frames, 100 Hz .. 8 kHz (or the
     * Nyquist frequency), after removing level_db: the RMS over bins of the
     * dB difference, averaged over frames. 0 for identical signals. Bins
     * more than 50 dB below the loudest reference frame are floored there. */
    double lsd_db;
    /* The fraction of active frames where the recording is near-silent:
     * more than 20 dB below the reference frame (after the path's gain,
     * which is clamped to +-20 dB so that a silent recording cannot explain
     * itself away), or below -70 dBFS. */
    double dead_air;
} pl_quality_frames;

pl_quality_err pl_quality_compare_frames(const float *ref, const float *deg, size_t n, uint32_t rate,
                                         pl_quality_frames *out);

/* ---- E-model (emodel.c) ---------------------------------------------------------- */

/* ITU-T G.107 (06/2015) with every parameter at its default except the
 * mouth-to-ear delay (T = Ta, Tr = 2T: talker echo and listener echo paths
 * follow the one-way delay) and the packet loss terms. R = 93.2 at no delay
 * and no loss with Ie = 0. */
typedef struct pl_emodel_input {
    double delay_ms;  /* one-way, mouth to ear */
    double loss_pct;  /* Ppl, 0..100 */
    double burst_r;   /* BurstR: 1 for random loss, > 1 bursty */
    double ie;        /* equipment impairment of the codec */
    double bpl;       /* packet-loss robustness of the codec */
} pl_emodel_input;

typedef struct pl_emodel_result {
    double r;      /* clamped to [0, 100] */
    double ro_is;  /* Ro - Is with defaults (about 93.35) */
    double id;     /* delay impairment: Idte + Idle + Idd */
    double idd;    /* the pure-delay part */
    double ie_eff;
} pl_emodel_result;

void pl_quality_emodel(const pl_emodel_input *in, pl_emodel_result *out);
/* BurstR of a Gilbert loss process with loss fraction p (0..1) and mean
 * burst length L (datagrams): L (1 - p). 1 when p is 0. */
double pl_quality_burst_r(double loss, double mean_burst_len);

/* Opus has no Ie or Bpl in ITU-T G.113: these are estimates, documented in
 * emodel.c, for the narrowband E-model scale. Override them when a
 * measurement gives better ones. */
#define PL_EMODEL_OPUS_IE 0.0
#define PL_EMODEL_OPUS_BPL 25.1

#endif
