/*
 * audio_device.h - sound devices through PortAudio, as audio sources and
 * sinks (audio.h). This is I/O: it starts PortAudio's own audio thread.
 *
 * The device runs on its own clock. Its callback moves samples through a
 * lock-free ring (one producer, one consumer) of PL_AUDIO_DEVICE_RING_MS, so
 * that the caller's event loop never blocks on it: a read returns
 * PL_AUDIO_AGAIN until a whole 20 ms frame has been captured; a write when
 * the ring is full drops the oldest audio (counted), and the device plays
 * silence when the ring runs dry (counted).
 *
 * With no sound card (a server, a container, CI) opening fails with
 * PL_AUDIO_ERR_NO_DEVICE; the messages ALSA and JACK print while PortAudio
 * probes are kept off stderr unless PARLEY_AUDIO_DEBUG is set.
 */
#ifndef PL_AUDIO_DEVICE_H
#define PL_AUDIO_DEVICE_H

#include "audio.h"

#define PL_AUDIO_DEVICE_RING_MS 200

/* name: NULL for the default device, else the first device whose name
 * contains it. */
pl_audio_err pl_audio_device_source_open(pl_audio_source **out, const char *name);
pl_audio_err pl_audio_device_sink_open(pl_audio_sink **out, const char *name);

typedef struct pl_audio_device_stats {
    uint64_t frames;     /* 20 ms frames moved */
    uint64_t overruns;   /* samples dropped: the ring was full */
    uint64_t underruns;  /* samples of silence played or captured frames missed */
} pl_audio_device_stats;

/* For a source or sink this file opened; zeros for any other. */
pl_audio_device_stats pl_audio_device_source_stats(const pl_audio_source *s);
pl_audio_device_stats pl_audio_device_sink_stats(const pl_audio_sink *s);

#endif
