/* quality_wav.c - reading and writing the WAV files the harness compares; see quality.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quality.h"

#define FMT_PCM 1
#define FMT_FLOAT 3
#define FMT_EXTENSIBLE 0xFFFE
#define MAX_CHANNELS 8

const char *pl_quality_strerror(pl_quality_err err)
{
    switch (err) {
    case PL_QUALITY_OK: return "ok";
    case PL_QUALITY_ERR_IO: return "cannot read or write the file";
    case PL_QUALITY_ERR_FORMAT: return "not a valid WAV file";
    case PL_QUALITY_ERR_UNSUPPORTED: return "an unsupported WAV encoding";
    case PL_QUALITY_ERR_MEMORY: return "out of memory";
    case PL_QUALITY_ERR_TOO_SHORT: return "not enough active signal to measure";
    case PL_QUALITY_ERR_RATE: return "unsupported or mismatched sample rate";
    }
    return "unknown error";
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/* One sample of the given encoding as a float in [-1, 1). */
static float sample_at(const uint8_t *p, unsigned format, unsigned bits)
{
    if (format == FMT_FLOAT) {
        uint32_t u = le32(p);
        float f;
        memcpy(&f, &u, sizeof f);
        /* A file may hold NaN or huge values; they must not poison the sums. */
        if (!(f >= -1.0f)) return f != f ? 0.0f : -1.0f;
        if (f > 1.0f) return 1.0f;
        return f;
    }
    switch (bits) {
    case 8: return ((float)p[0] - 128.0f) / 128.0f;
    case 16: return (float)(int16_t)le16(p) / 32768.0f;
    case 24: {
        int32_t v = (int32_t)((uint32_t)p[0] << 8 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 24) >> 8;
        return (float)v / 8388608.0f;
    }
    default: return (float)((double)(int32_t)le32(p) / 2147483648.0);
    }
}

pl_quality_err pl_quality_wav_parse(const uint8_t *data, size_t len, pl_quality_audio *out)
{
    memset(out, 0, sizeof *out);
    if (len < 12 || memcmp(data, "RIFF", 4) != 0 || memcmp(data + 8, "WAVE", 4) != 0) return PL_QUALITY_ERR_FORMAT;
    bool have_fmt = false;
    unsigned format = 0, channels = 0, bits = 0, block = 0;
    uint32_t rate = 0;
    size_t pos = 12;
    while (pos + 8 <= len) {
        const uint8_t *ck = data + pos;
        size_t size = le32(ck + 4);
        size_t avail = len - pos - 8;
        if (memcmp(ck, "fmt ", 4) == 0) {
            if (size < 16 || size > avail || have_fmt) return PL_QUALITY_ERR_FORMAT;
            const uint8_t *f = ck + 8;
            format = le16(f);
            channels = le16(f + 2);
            rate = le32(f + 4);
            block = le16(f + 12);
            bits = le16(f + 14);
            if (format == FMT_EXTENSIBLE) {
                /* cbSize (2), valid bits (2), channel mask (4), then the
                 * sub-format GUID whose first two bytes are the format code. */
                if (size < 40 || le16(f + 16) < 22) return PL_QUALITY_ERR_FORMAT;
                format = le16(f + 24);
            }
            have_fmt = true;
        } else if (memcmp(ck, "data", 4) == 0) {
            if (!have_fmt) return PL_QUALITY_ERR_FORMAT;
            if (format != FMT_PCM && format != FMT_FLOAT) return PL_QUALITY_ERR_UNSUPPORTED;
            if (format == FMT_FLOAT && bits != 32) return PL_QUALITY_ERR_UNSUPPORTED;
            if (format == FMT_PCM && bits != 8 && bits != 16 && bits != 24 && bits != 32)
                return PL_QUALITY_ERR_UNSUPPORTED;
            if (channels < 1 || channels > MAX_CHANNELS) return PL_QUALITY_ERR_UNSUPPORTED;
            if (block != channels * (bits / 8)) return PL_QUALITY_ERR_FORMAT;
            if (rate < 8000 || rate > 192000) return PL_QUALITY_ERR_RATE;
            /* Streaming writers leave the size at 0 or 0xFFFFFFFF: take what is there. */
            if (size > avail || size == 0) size = avail;
            size_t frames = size / block;
            /* Longer than the harness measures: refuse rather than cut. */
            if (frames > PL_QUALITY_MAX_SAMPLES) return PL_QUALITY_ERR_UNSUPPORTED;
            float *s = malloc((frames ? frames : 1) * sizeof *s);
            if (!s) return PL_QUALITY_ERR_MEMORY;
            const uint8_t *p = ck + 8;
            unsigned bytes = bits / 8;
            for (size_t i = 0; i < frames; i++) {
                float sum = 0;
                for (unsigned c = 0; c < channels; c++) sum += sample_at(p + i * block + c * bytes, format, bits);
                s[i] = sum / (float)channels;
            }
            out->samples = s;
            out->len = frames;
            out->rate = rate;
            return PL_QUALITY_OK;
        }
        /* Chunks are padded to an even size. */
        if (size > avail) break;
        pos += 8 + size + (size & 1);
    }
    return PL_QUALITY_ERR_FORMAT;
}

pl_quality_err pl_quality_wav_load(const char *path, pl_quality_audio *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return PL_QUALITY_ERR_IO;
    uint8_t *buf = malloc(PL_QUALITY_MAX_FILE);
    if (!buf) {
        fclose(f);
        return PL_QUALITY_ERR_MEMORY;
    }
    size_t n = fread(buf, 1, PL_QUALITY_MAX_FILE, f);
    bool failed = ferror(f) != 0;
    fclose(f);
    pl_quality_err err = failed ? PL_QUALITY_ERR_IO : pl_quality_wav_parse(buf, n, out);
    free(buf);
    return err;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++, v >>= 8) p[i] = (uint8_t)v;
}
static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

pl_quality_err pl_quality_wav_save(const char *path, const float *x, size_t n, uint32_t rate)
{
    if (n > PL_QUALITY_MAX_SAMPLES) return PL_QUALITY_ERR_UNSUPPORTED;
    uint8_t h[44];
    memcpy(h, "RIFF", 4);
    put_le32(h + 4, (uint32_t)(36 + n * 2));
    memcpy(h + 8, "WAVEfmt ", 8);
    put_le32(h + 16, 16);
    put_le16(h + 20, FMT_PCM);
    put_le16(h + 22, 1);
    put_le32(h + 24, rate);
    put_le32(h + 28, rate * 2);
    put_le16(h + 32, 2);
    put_le16(h + 34, 16);
    memcpy(h + 36, "data", 4);
    put_le32(h + 40, (uint32_t)(n * 2));
    FILE *f = fopen(path, "wb");
    if (!f) return PL_QUALITY_ERR_IO;
    bool ok = fwrite(h, 1, sizeof h, f) == sizeof h;
    uint8_t buf[4096];
    size_t used = 0;
    for (size_t i = 0; i < n && ok; i++) {
        double v = (double)x[i] * 32768.0;
        long s = v >= 32767.0 ? 32767 : v <= -32768.0 ? -32768 : (long)(v < 0 ? v - 0.5 : v + 0.5);
        put_le16(buf + used, (uint16_t)(int16_t)s);
        used += 2;
        if (used == sizeof buf || i + 1 == n) {
            ok = fwrite(buf, 1, used, f) == used;
            used = 0;
        }
    }
    if (fclose(f) != 0) ok = false;
    return ok ? PL_QUALITY_OK : PL_QUALITY_ERR_IO;
}

void pl_quality_audio_free(pl_quality_audio *a)
{
    free(a->samples);
    a->samples = NULL;
    a->len = 0;
}
