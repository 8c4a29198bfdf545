/* dsp.c - echo cancellation and noise suppression; see dsp.h. */
#include "dsp.h"

#include <speex/speex_echo.h>
#include <speex/speex_preprocess.h>
#include <stdlib.h>
#include <string.h>

/* speexdsp's preprocessor delays its output by one of its frames, so it
 * (and the echo canceller, whose frame size it must share to estimate the
 * residual echo) run on 10 ms halves of each frame: 10 ms of added latency
 * instead of 20, for about the same work. */
#define HALF (PL_VOICE_FRAME / 2)

struct pl_dsp {
    SpeexEchoState *echo;           /* NULL: no echo cancellation */
    SpeexPreprocessState *pre;      /* NULL: neither denoise nor residual echo suppression */
    int16_t silence[HALF];
    int16_t tmp[HALF];
};

const char *pl_dsp_strerror(pl_dsp_err err)
{
    switch (err) {
    case PL_DSP_OK: return "ok";
    case PL_DSP_ERR_NOMEM: return "out of memory";
    case PL_DSP_ERR_CONFIG: return "bad audio processing configuration";
    }
    return "unknown audio processing error";
}

pl_dsp_err pl_dsp_new(pl_dsp **out, const pl_dsp_config *config)
{
    *out = NULL;
    pl_dsp_config c;
    memset(&c, 0, sizeof c);
    if (config) c = *config;
    if (!c.echo_tail) c.echo_tail = 200 * PL_MSEC;
    if (!c.noise_suppress_db) c.noise_suppress_db = -25;
    if (!c.echo_suppress_db) c.echo_suppress_db = -40;
    if (!c.echo_suppress_active_db) c.echo_suppress_active_db = -15;
    if (c.echo_tail < 20 * PL_MSEC || c.echo_tail > 1000 * PL_MSEC || c.noise_suppress_db > 0 ||
        c.echo_suppress_db > 0 || c.echo_suppress_active_db > 0)
        return PL_DSP_ERR_CONFIG;
    pl_dsp *d = calloc(1, sizeof *d);
    if (!d) return PL_DSP_ERR_NOMEM;
    int rate = PL_VOICE_RATE;
    if (!c.no_echo) {
        int taps = (int)(c.echo_tail * PL_VOICE_RATE / PL_SEC);
        d->echo = speex_echo_state_init(HALF, taps);
        if (!d->echo) goto nomem;
        speex_echo_ctl(d->echo, SPEEX_ECHO_SET_SAMPLING_RATE, &rate);
    }
    if (!c.no_echo || !c.no_denoise) {
        d->pre = speex_preprocess_state_init(HALF, PL_VOICE_RATE);
        if (!d->pre) goto nomem;
        int on = c.no_denoise ? 0 : 1, off = 0;
        speex_preprocess_ctl(d->pre, SPEEX_PREPROCESS_SET_DENOISE, &on);
        speex_preprocess_ctl(d->pre, SPEEX_PREPROCESS_SET_NOISE_SUPPRESS, &c.noise_suppress_db);
        speex_preprocess_ctl(d->pre, SPEEX_PREPROCESS_SET_AGC, &off);
        speex_preprocess_ctl(d->pre, SPEEX_PREPROCESS_SET_DEREVERB, &off);
        if (d->echo) {
            /* Residual echo suppression: the preprocessor estimates what the
             * linear filter left from the canceller's own state. */
            speex_preprocess_ctl(d->pre, SPEEX_PREPROCESS_SET_ECHO_STATE, d->echo);
            speex_preprocess_ctl(d->pre, SPEEX_PREPROCESS_SET_ECHO_SUPPRESS, &c.echo_suppress_db);
            speex_preprocess_ctl(d->pre, SPEEX_PREPROCESS_SET_ECHO_SUPPRESS_ACTIVE, &c.echo_suppress_active_db);
        }
    }
    *out = d;
    return PL_DSP_OK;
nomem:
    pl_dsp_free(d);
    return PL_DSP_ERR_NOMEM;
}

void pl_dsp_free(pl_dsp *d)
{
    if (!d) return;
    if (d->pre) speex_preprocess_state_destroy(d->pre);
    if (d->echo) speex_echo_state_destroy(d->echo);
    free(d);
}

void pl_dsp_process(pl_dsp *d, const int16_t mic[PL_VOICE_FRAME], const int16_t *speaker,
                    int16_t out[PL_VOICE_FRAME])
{
    for (int h = 0; h < PL_VOICE_FRAME; h += HALF) {
        if (d->echo) {
            speex_echo_cancellation(d->echo, mic + h, speaker ? speaker + h : d->silence, d->tmp);
            memcpy(out + h, d->tmp, sizeof(int16_t) * HALF);
        } else if (out != mic) {
            memcpy(out + h, mic + h, sizeof(int16_t) * HALF);
        }
        if (d->pre) speex_preprocess_run(d->pre, out + h);
    }
}

void pl_dsp_reset(pl_dsp *d)
{
    if (d->echo) speex_echo_state_reset(d->echo);
}
