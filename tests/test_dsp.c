/*
 * test_dsp.c - echo cancellation and noise suppression on speech through a
 * modelled room: the far end's speech comes back into the microphone
 * delayed, filtered and attenuated; background noise is added. The echo is
 * taken out (ERLE), the near end's own speech is kept, noise is lowered.
 */
#include <math.h>
#include <stdlib.h>

#include "dsp.h"
#include "speech.h"
#include "test.h"

#define FRAME PL_VOICE_FRAME
/* The preprocessor's 10 ms of delay (dsp.h). */
#define DSP_DELAY 480

static int16_t *far_speech, *near_speech;
static size_t far_n, near_n;

static void load(void)
{
    if (far_speech) return;
    far_speech = pl_test_speech("This is the far end talking. The echo of these words comes back from the "
                                "loudspeaker into the microphone, and must not go back to the far end. "
                                "One two three four five six seven eight nine ten.",
                                &far_n);
    near_speech = pl_test_speech("Near end speaking now, at the same time.", &near_n);
    CHECK(far_speech && near_speech);
}

static uint32_t noise_state = 12345;
static double noise(void)
{
    noise_state = noise_state * 1664525u + 1013904223u;
    return ((double)(noise_state >> 8) / 16777216.0) * 2 - 1;
}

static int16_t clip(double x) { return (int16_t)(x > 32767 ? 32767 : x < -32768 ? -32768 : x); }

/* The room: 30 ms of acoustic delay (plus 20 ms of device buffering, i.e.
 * 50 ms after the frame was handed to the speaker), a second reflection,
 * and 6 dB of loss. */
static double echo_at(const int16_t *far, size_t i)
{
    size_t d1 = 50 * 48, d2 = 63 * 48;
    double e = 0;
    if (i >= d1) e += 0.5 * far[i - d1];
    if (i >= d2) e += 0.2 * far[i - d2];
    return e;
}

static double energy(const int16_t *x, size_t from, size_t to)
{
    double s = 0;
    for (size_t i = from; i < to; i++) s += (double)x[i] * x[i];
    return s + 1;
}

static void test_echo_cancelled(void)
{
    load();
    size_t frames = far_n / FRAME;
    int16_t *mic = calloc(frames * FRAME, sizeof *mic), *out = calloc(frames * FRAME, sizeof *out);
    CHECK(mic && out);
    for (size_t i = 0; i < frames * FRAME; i++) mic[i] = clip(echo_at(far_speech, i) + 30 * noise());
    pl_dsp *dsp;
    CHECK_EQ(pl_dsp_new(&dsp, NULL), PL_DSP_OK);
    for (size_t f = 0; f < frames; f++) pl_dsp_process(dsp, mic + f * FRAME, far_speech + f * FRAME, out + f * FRAME);
    /* Echo return loss enhancement after 3 s of convergence. */
    size_t from = 3 * 48000, to = frames * FRAME;
    double erle = 10 * log10(energy(mic, from, to) / energy(out, from, to));
    double erle_early = 10 * log10(energy(mic, 0, 48000) / energy(out, 0, 48000));
    printf("  echo only: ERLE %.1f dB in the first second, %.1f dB after 3 s\n", erle_early, erle);
    CHECK(erle >= 25); /* 35 dB measured */

    /* Double talk: the near end talks over the echo; its words survive. */
    size_t start = 4 * 48000, len = near_n < (frames * FRAME - start) ? near_n : frames * FRAME - start;
    len = len / FRAME * FRAME;
    for (size_t i = 0; i < frames * FRAME; i++) {
        double near = i >= start && i < start + len ? near_speech[i - start] : 0;
        mic[i] = clip(echo_at(far_speech, i) + near + 30 * noise());
    }
    pl_dsp_free(dsp);
    CHECK_EQ(pl_dsp_new(&dsp, NULL), PL_DSP_OK);
    for (size_t f = 0; f < frames; f++) pl_dsp_process(dsp, mic + f * FRAME, far_speech + f * FRAME, out + f * FRAME);
    double c_in = pl_test_corr(near_speech, mic + start, len, 0);
    double c_out = pl_test_corr(near_speech, out + start, len - FRAME, DSP_DELAY);
    printf("  double talk: near speech correlation %.3f in the microphone, %.3f after the canceller\n", c_in, c_out);
    CHECK(c_out >= 0.75);
    CHECK(c_out > c_in);
    pl_dsp_free(dsp);
    free(mic);
    free(out);
}

static void test_noise_suppressed(void)
{
    load();
    /* Three seconds of noise alone (the suppressor takes about two to learn
     * it), then speech over the same noise (about 15 dB below the speech). */
    size_t lead = 3 * 48000, n = (lead + near_n) / FRAME * FRAME;
    int16_t *mic = calloc(n, sizeof *mic), *out = calloc(n, sizeof *out);
    CHECK(mic && out);
    double speech_rms = pl_test_rms(near_speech, near_n);
    for (size_t i = 0; i < n; i++) {
        double s = i >= lead && i - lead < near_n ? near_speech[i - lead] : 0;
        mic[i] = clip(s + speech_rms / 5.6 * 1.7 * noise());
    }
    pl_dsp_config cfg = {.no_echo = true};
    pl_dsp *dsp;
    CHECK_EQ(pl_dsp_new(&dsp, &cfg), PL_DSP_OK);
    for (size_t f = 0; f < n / FRAME; f++) pl_dsp_process(dsp, mic + f * FRAME, NULL, out + f * FRAME);
    /* Noise alone, after two seconds of learning it. */
    double cut = 10 * log10(energy(mic, 2 * 48000, lead) / energy(out, 2 * 48000, lead));
    double c_in = pl_test_corr(near_speech, mic + lead, near_n - 2 * FRAME, 0);
    double c_out = pl_test_corr(near_speech, out + lead, near_n - 2 * FRAME, DSP_DELAY);
    printf("  noise lowered by %.1f dB; speech correlation %.3f before, %.3f after\n", cut, c_in, c_out);
    CHECK(cut >= 15); /* 21 dB measured */
    CHECK(c_out >= c_in - 0.05);
    CHECK(c_out >= 0.85);
    pl_dsp_free(dsp);
    free(mic);
    free(out);
}

static void test_off_passes_through(void)
{
    pl_dsp_config cfg = {.no_echo = true, .no_denoise = true};
    pl_dsp *dsp;
    CHECK_EQ(pl_dsp_new(&dsp, &cfg), PL_DSP_OK);
    int16_t in[FRAME], out[FRAME];
    for (int i = 0; i < FRAME; i++) in[i] = (int16_t)(i * 37);
    pl_dsp_process(dsp, in, NULL, out);
    CHECK(memcmp(in, out, sizeof in) == 0);
    pl_dsp_process(dsp, in, NULL, in); /* in place */
    CHECK(memcmp(in, out, sizeof in) == 0);
    pl_dsp_free(dsp);
    pl_dsp_config bad = {.echo_tail = 5 * PL_SEC};
    CHECK_EQ(pl_dsp_new(&dsp, &bad), PL_DSP_ERR_CONFIG);
    CHECK(dsp == NULL);
    bad.echo_tail = 0;
    bad.noise_suppress_db = 10;
    CHECK_EQ(pl_dsp_new(&dsp, &bad), PL_DSP_ERR_CONFIG);
}

int main(void)
{
    RUN(test_echo_cancelled);
    RUN(test_noise_suppressed);
    RUN(test_off_passes_through);
    free(far_speech);
    free(near_speech);
    return pl_test_summary();
}
