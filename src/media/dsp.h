/*
 * dsp.h - echo cancellation and noise suppression for audio from a real
 * microphone (speexdsp: its MDF adaptive echo canceller, and its
 * preprocessor for noise suppression and for the residual echo the linear
 * filter leaves, driven by the canceller's state). 48 kHz mono, 20 ms frames.
 *
 * Only device audio needs this: a WAV file or a tone has no room echo and no
 * background noise, so headless calls leave the DSP out (audio.h's `device`
 * flag tells which sources are live).
 *
 * The noise suppressor delays the audio by 10 ms (speexdsp's preprocessor
 * holds back one of its 10 ms frames).
 *
 * Timing: pass each captured frame with the frame that went to the speaker
 * in the same tick. The speaker frame must not reach the microphone before
 * it is passed in; it may reach it up to the echo tail (200 ms) later, which
 * covers the device's output buffering and the room.
 */
#ifndef PL_DSP_H
#define PL_DSP_H

#include <stdbool.h>
#include <stdint.h>

#include "parley.h"
#include "voice_codec.h"

typedef struct pl_dsp_config {
    bool no_echo;              /* no echo cancellation (a headset) */
    bool no_denoise;           /* no noise suppression */
    pl_time echo_tail;         /* longest echo path cancelled; 0: 200 ms */
    int noise_suppress_db;     /* most noise attenuation; 0: -25 dB */
    int echo_suppress_db;      /* most residual echo attenuation; 0: -40 dB */
    int echo_suppress_active_db; /* the same while the near end talks; 0: -15 dB */
} pl_dsp_config;

typedef enum pl_dsp_err {
    PL_DSP_OK = 0,
    PL_DSP_ERR_NOMEM,
    PL_DSP_ERR_CONFIG,
} pl_dsp_err;

const char *pl_dsp_strerror(pl_dsp_err err);

typedef struct pl_dsp pl_dsp;

pl_dsp_err pl_dsp_new(pl_dsp **out, const pl_dsp_config *config);
void pl_dsp_free(pl_dsp *dsp);
/* Cleans one captured frame. speaker is the frame played meanwhile, NULL
 * when nothing was played. out may be mic. */
void pl_dsp_process(pl_dsp *dsp, const int16_t mic[PL_VOICE_FRAME], const int16_t *speaker,
                    int16_t out[PL_VOICE_FRAME]);
/* Forgets what the canceller learnt (the device changed). */
void pl_dsp_reset(pl_dsp *dsp);

#endif
