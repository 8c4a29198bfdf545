/*
 * audio.h - where call audio comes from and goes to: 20 ms frames of 48 kHz
 * mono signed 16-bit samples.
 *
 * A source gives one frame per read; a sink takes one per write. The
 * implementations here are files and generators, so calls run headless: a
 * WAV file in (16-bit PCM, mono or stereo mixed down, any rate from 8 to
 * 192 kHz resampled to 48 kHz), a WAV file out, a tone, silence, and null.
 * Sound devices (PortAudio) are in audio_device.c, which is the only file
 * that touches them.
 *
 * The WAV writer makes every frame durable against the process ending
 * abruptly: samples go straight to the kernel (no stdio buffer) and the
 * header's sizes are rewritten after every frame, so a call cut off by a
 * crash or kill -9 leaves a valid file with everything written so far.
 * Closing also syncs the file to disk.
 */
#ifndef PL_AUDIO_H
#define PL_AUDIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PL_AUDIO_RATE 48000
#define PL_AUDIO_FRAME 960 /* 20 ms */

typedef enum pl_audio_err {
    PL_AUDIO_OK = 0,
    PL_AUDIO_END,              /* the source has no more frames */
    PL_AUDIO_AGAIN,            /* no frame ready yet (a device between periods); try again later */
    PL_AUDIO_ERR_OPEN,         /* the file cannot be opened or created (errno tells why) */
    PL_AUDIO_ERR_IO,           /* reading or writing failed (errno tells why) */
    PL_AUDIO_ERR_NOT_WAV,      /* not a RIFF/WAVE file */
    PL_AUDIO_ERR_WAV_HEADER,   /* truncated or inconsistent WAV chunks, or no data chunk */
    PL_AUDIO_ERR_WAV_FORMAT,   /* a WAV encoding other than integer PCM (float, A-law, ADPCM...) */
    PL_AUDIO_ERR_WAV_BITS,     /* PCM with other than 16 bits per sample */
    PL_AUDIO_ERR_WAV_CHANNELS, /* more than two channels */
    PL_AUDIO_ERR_WAV_RATE,     /* a sample rate outside 8000-192000 Hz */
    PL_AUDIO_ERR_FULL,         /* a WAV file cannot grow past 4 GiB */
    PL_AUDIO_ERR_NO_DEVICE,    /* no such sound device (or none at all) */
    PL_AUDIO_ERR_DEVICE,       /* the sound device refused or failed */
    PL_AUDIO_ERR_NOMEM,
    PL_AUDIO_ERR_ARG,          /* a bad argument (frequency, amplitude...) */
} pl_audio_err;

const char *pl_audio_strerror(pl_audio_err err);

typedef struct pl_audio_source pl_audio_source;
struct pl_audio_source {
    pl_audio_err (*read)(pl_audio_source *s, int16_t frame[PL_AUDIO_FRAME]);
    void (*close)(pl_audio_source *s);
    /* A live microphone: echo cancellation and noise suppression belong
     * on it. False for files and generators. */
    bool device;
};

typedef struct pl_audio_sink pl_audio_sink;
struct pl_audio_sink {
    pl_audio_err (*write)(pl_audio_sink *s, const int16_t frame[PL_AUDIO_FRAME]);
    void (*close)(pl_audio_sink *s);
    bool device;
};

/* Reads one frame: PL_AUDIO_OK, PL_AUDIO_END (nothing written) or an error.
 * The last frame of a file is padded with silence. */
static inline pl_audio_err pl_audio_read(pl_audio_source *s, int16_t frame[PL_AUDIO_FRAME])
{
    return s->read(s, frame);
}
static inline pl_audio_err pl_audio_write(pl_audio_sink *s, const int16_t frame[PL_AUDIO_FRAME])
{
    return s->write(s, frame);
}
/* Closing NULL does nothing. */
void pl_audio_source_close(pl_audio_source *s);
void pl_audio_sink_close(pl_audio_sink *s);

/* WAV input; see the rates and formats above. */
pl_audio_err pl_audio_wav_source_open(pl_audio_source **out, const char *path);
/* WAV output: 48 kHz mono 16-bit PCM; the file is created or truncated. */
pl_audio_err pl_audio_wav_sink_open(pl_audio_sink **out, const char *path);
/* A sine tone: frequency in (0, 24000) Hz, amplitude in [0, 1] of full
 * scale; frames 0 for endless. */
pl_audio_err pl_audio_tone_open(pl_audio_source **out, double freq_hz, double amplitude, uint64_t frames);
/* Silence; frames 0 for endless. */
pl_audio_err pl_audio_silence_open(pl_audio_source **out, uint64_t frames);
/* A source that ends at once, and a sink that discards. */
pl_audio_err pl_audio_null_source_open(pl_audio_source **out);
pl_audio_err pl_audio_null_sink_open(pl_audio_sink **out);

/* The WAV header parser on its own (the fuzz target's entry): `buf` is the
 * start of a file (the first PL_WAV_HEADER_MAX bytes, or all of a shorter
 * file); the data chunk must begin inside it. */
#define PL_WAV_HEADER_MAX 65536
#define PL_WAV_FORMAT_PCM 1
#define PL_WAV_FORMAT_EXTENSIBLE 0xfffe
#define PL_WAV_DATA_TO_EOF UINT64_MAX

typedef struct pl_wav_info {
    uint16_t format;      /* PL_WAV_FORMAT_PCM (an extensible header's subformat) */
    uint16_t channels;    /* 1 or 2 */
    uint32_t rate;
    uint16_t bits;        /* 16 */
    uint16_t block_align; /* channels * 2 */
    uint64_t data_offset; /* where the samples start */
    uint64_t data_len;    /* bytes of samples, or PL_WAV_DATA_TO_EOF (a streamed file) */
} pl_wav_info;

pl_audio_err pl_wav_parse(const uint8_t *buf, size_t len, pl_wav_info *info);

#endif
