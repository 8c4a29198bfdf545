/* audio_device.c - sound devices through PortAudio; see audio_device.h. */
#include "audio_device.h"

#include <fcntl.h>
#include <portaudio.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RING_SAMPLES ((size_t)PL_AUDIO_RATE * PL_AUDIO_DEVICE_RING_MS / 1000)

/* One producer, one consumer: head is written only by the producer, tail
 * only by the consumer; both count samples since the start. */
typedef struct ring {
    int16_t buf[RING_SAMPLES];
    _Atomic size_t head, tail;
} ring;

static size_t ring_used(ring *r)
{
    return atomic_load_explicit(&r->head, memory_order_acquire) -
           atomic_load_explicit(&r->tail, memory_order_acquire);
}

/* Producer side: all n samples, or none when they do not fit. */
static bool ring_push(ring *r, const int16_t *s, size_t n)
{
    size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (RING_SAMPLES - (head - tail) < n) return false;
    for (size_t i = 0; i < n; i++) r->buf[(head + i) % RING_SAMPLES] = s[i];
    atomic_store_explicit(&r->head, head + n, memory_order_release);
    return true;
}

/* Consumer side: up to n samples; returns how many. */
static size_t ring_pop(ring *r, int16_t *s, size_t n)
{
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    if (n > head - tail) n = head - tail;
    for (size_t i = 0; i < n; i++) s[i] = r->buf[(tail + i) % RING_SAMPLES];
    atomic_store_explicit(&r->tail, tail + n, memory_order_release);
    return n;
}

typedef struct device {
    PaStream *stream;
    ring ring;
    _Atomic uint64_t frames, overruns, underruns;
} device;

typedef struct dev_source {
    pl_audio_source base;
    device dev;
} dev_source;

typedef struct dev_sink {
    pl_audio_sink base;
    device dev;
} dev_sink;

/* PortAudio's ALSA and JACK back ends print their probing to stderr (a
 * screenful on a machine without sound). The messages help no one who did
 * not ask, so stderr points at /dev/null while PortAudio probes. */
typedef struct quiet {
    int saved;
} quiet;

static quiet quiet_begin(void)
{
    quiet q = {-1};
    if (getenv("PARLEY_AUDIO_DEBUG")) return q;
    fflush(stderr);
    int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null_fd < 0) return q;
    q.saved = dup(2);
    if (q.saved >= 0) dup2(null_fd, 2);
    close(null_fd);
    return q;
}

static void quiet_end(quiet q)
{
    if (q.saved < 0) return;
    dup2(q.saved, 2);
    close(q.saved);
}

static PaDeviceIndex find_device(const char *name, bool input)
{
    if (!name) return input ? Pa_GetDefaultInputDevice() : Pa_GetDefaultOutputDevice();
    int count = Pa_GetDeviceCount();
    for (int i = 0; i < count; i++) {
        const PaDeviceInfo *info = Pa_GetDeviceInfo(i);
        if (!info || !info->name || !strstr(info->name, name)) continue;
        if ((input ? info->maxInputChannels : info->maxOutputChannels) > 0) return i;
    }
    return paNoDevice;
}

static int input_cb(const void *in, void *out, unsigned long frames, const PaStreamCallbackTimeInfo *time,
                    PaStreamCallbackFlags flags, void *ctx)
{
    (void)out;
    (void)time;
    device *d = ctx;
    if (flags & paInputOverflow) atomic_fetch_add(&d->overruns, 1);
    if (!in) return paContinue;
    if (!ring_push(&d->ring, in, frames)) atomic_fetch_add(&d->overruns, frames);
    return paContinue;
}

static int output_cb(const void *in, void *out, unsigned long frames, const PaStreamCallbackTimeInfo *time,
                     PaStreamCallbackFlags flags, void *ctx)
{
    (void)in;
    (void)time;
    (void)flags;
    device *d = ctx;
    int16_t *o = out;
    size_t got = ring_pop(&d->ring, o, frames);
    if (got < frames) {
        memset(o + got, 0, sizeof(int16_t) * (frames - got));
        atomic_fetch_add(&d->underruns, frames - got);
    }
    return paContinue;
}

static pl_audio_err open_device(device *d, const char *name, bool input)
{
    quiet q = quiet_begin();
    if (Pa_Initialize() != paNoError) {
        quiet_end(q);
        return PL_AUDIO_ERR_DEVICE;
    }
    PaDeviceIndex idx = find_device(name, input);
    if (idx == paNoDevice) {
        Pa_Terminate();
        quiet_end(q);
        return PL_AUDIO_ERR_NO_DEVICE;
    }
    const PaDeviceInfo *info = Pa_GetDeviceInfo(idx);
    PaStreamParameters p;
    memset(&p, 0, sizeof p);
    p.device = idx;
    p.channelCount = 1;
    p.sampleFormat = paInt16;
    p.suggestedLatency = info ? (input ? info->defaultLowInputLatency : info->defaultLowOutputLatency) : 0.02;
    PaError e = Pa_OpenStream(&d->stream, input ? &p : NULL, input ? NULL : &p, PL_AUDIO_RATE, PL_AUDIO_FRAME,
                              paNoFlag, input ? input_cb : output_cb, d);
    if (e == paNoError) e = Pa_StartStream(d->stream);
    quiet_end(q);
    if (e != paNoError) {
        if (d->stream) Pa_CloseStream(d->stream);
        Pa_Terminate();
        return PL_AUDIO_ERR_DEVICE;
    }
    return PL_AUDIO_OK;
}

static void close_device(device *d)
{
    Pa_StopStream(d->stream);
    Pa_CloseStream(d->stream);
    Pa_Terminate();
}

static pl_audio_err dev_read(pl_audio_source *s, int16_t frame[PL_AUDIO_FRAME])
{
    device *d = &((dev_source *)s)->dev;
    if (ring_used(&d->ring) < PL_AUDIO_FRAME) return PL_AUDIO_AGAIN;
    ring_pop(&d->ring, frame, PL_AUDIO_FRAME);
    atomic_fetch_add(&d->frames, 1);
    return PL_AUDIO_OK;
}

static pl_audio_err dev_write(pl_audio_sink *s, const int16_t frame[PL_AUDIO_FRAME])
{
    device *d = &((dev_sink *)s)->dev;
    if (!ring_push(&d->ring, frame, PL_AUDIO_FRAME)) atomic_fetch_add(&d->overruns, PL_AUDIO_FRAME);
    else atomic_fetch_add(&d->frames, 1);
    return PL_AUDIO_OK;
}

static void dev_source_close(pl_audio_source *s)
{
    close_device(&((dev_source *)s)->dev);
    free(s);
}

static void dev_sink_close(pl_audio_sink *s)
{
    close_device(&((dev_sink *)s)->dev);
    free(s);
}

pl_audio_err pl_audio_device_source_open(pl_audio_source **out, const char *name)
{
    *out = NULL;
    dev_source *s = calloc(1, sizeof *s);
    if (!s) return PL_AUDIO_ERR_NOMEM;
    pl_audio_err e = open_device(&s->dev, name, true);
    if (e != PL_AUDIO_OK) {
        free(s);
        return e;
    }
    s->base.read = dev_read;
    s->base.close = dev_source_close;
    s->base.device = true;
    *out = &s->base;
    return PL_AUDIO_OK;
}

pl_audio_err pl_audio_device_sink_open(pl_audio_sink **out, const char *name)
{
    *out = NULL;
    dev_sink *s = calloc(1, sizeof *s);
    if (!s) return PL_AUDIO_ERR_NOMEM;
    pl_audio_err e = open_device(&s->dev, name, false);
    if (e != PL_AUDIO_OK) {
        free(s);
        return e;
    }
    s->base.write = dev_write;
    s->base.close = dev_sink_close;
    s->base.device = true;
    *out = &s->base;
    return PL_AUDIO_OK;
}

static pl_audio_device_stats stats_of(device *d)
{
    pl_audio_device_stats st = {atomic_load(&d->frames), atomic_load(&d->overruns), atomic_load(&d->underruns)};
    return st;
}

pl_audio_device_stats pl_audio_device_source_stats(const pl_audio_source *s)
{
    pl_audio_device_stats none = {0, 0, 0};
    if (!s || s->read != dev_read) return none;
    return stats_of(&((dev_source *)(uintptr_t)s)->dev);
}

pl_audio_device_stats pl_audio_device_sink_stats(const pl_audio_sink *s)
{
    pl_audio_device_stats none = {0, 0, 0};
    if (!s || s->write != dev_write) return none;
    return stats_of(&((dev_sink *)(uintptr_t)s)->dev);
}
