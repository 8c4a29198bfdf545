/* audio.c - file and generated audio sources and sinks; see audio.h. */
#include "audio.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <speex/speex_resampler.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "wire.h"

const char *pl_audio_strerror(pl_audio_err err)
{
    switch (err) {
    case PL_AUDIO_OK: return "ok";
    case PL_AUDIO_END: return "end of audio";
    case PL_AUDIO_AGAIN: return "no audio frame ready yet";
    case PL_AUDIO_ERR_OPEN: return "cannot open the audio file";
    case PL_AUDIO_ERR_IO: return "audio file read or write failed";
    case PL_AUDIO_ERR_NOT_WAV: return "not a WAV file (no RIFF/WAVE header)";
    case PL_AUDIO_ERR_WAV_HEADER: return "broken WAV file: truncated or inconsistent chunks, or no data chunk";
    case PL_AUDIO_ERR_WAV_FORMAT: return "unsupported WAV encoding: only integer PCM is read (not float, A-law or ADPCM)";
    case PL_AUDIO_ERR_WAV_BITS: return "unsupported WAV sample size: only 16-bit PCM is read";
    case PL_AUDIO_ERR_WAV_CHANNELS: return "unsupported WAV channel count: only mono or stereo is read";
    case PL_AUDIO_ERR_WAV_RATE: return "unsupported WAV sample rate: 8000 to 192000 Hz is read";
    case PL_AUDIO_ERR_FULL: return "the WAV file reached its 4 GiB limit";
    case PL_AUDIO_ERR_NO_DEVICE: return "no sound device found";
    case PL_AUDIO_ERR_DEVICE: return "the sound device failed";
    case PL_AUDIO_ERR_NOMEM: return "out of memory";
    case PL_AUDIO_ERR_ARG: return "bad audio argument";
    }
    return "unknown audio error";
}

void pl_audio_source_close(pl_audio_source *s)
{
    if (s) s->close(s);
}

void pl_audio_sink_close(pl_audio_sink *s)
{
    if (s) s->close(s);
}

/* ---- the WAV header ---------------------------------------------------------
 * RIFF chunks are little-endian, unlike Parley's wire formats, so they are
 * read here from bytes the bounded reader hands out. */

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }
static void put_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

/* The tail every WAVE_FORMAT_EXTENSIBLE subformat GUID shares
 * (KSDATAFORMAT_SUBTYPE_*: xxxxxxxx-0000-0010-8000-00aa00389b71). */
static const uint8_t guid_tail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                      0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71};

static pl_audio_err parse_fmt(const uint8_t *p, uint32_t size, pl_wav_info *info)
{
    if (size < 16) return PL_AUDIO_ERR_WAV_HEADER;
    uint16_t format = le16(p);
    info->channels = le16(p + 2);
    info->rate = le32(p + 4);
    uint32_t byte_rate = le32(p + 8);
    info->block_align = le16(p + 12);
    info->bits = le16(p + 14);
    if (format == PL_WAV_FORMAT_EXTENSIBLE) {
        if (size < 40 || le16(p + 16) < 22) return PL_AUDIO_ERR_WAV_HEADER;
        uint16_t valid_bits = le16(p + 18);
        if (memcmp(p + 26, guid_tail, sizeof guid_tail) != 0) return PL_AUDIO_ERR_WAV_FORMAT;
        format = le16(p + 24);
        if (valid_bits != info->bits) return PL_AUDIO_ERR_WAV_BITS;
    }
    info->format = format;
    if (format != PL_WAV_FORMAT_PCM) return PL_AUDIO_ERR_WAV_FORMAT;
    if (info->bits != 16) return PL_AUDIO_ERR_WAV_BITS;
    if (info->channels < 1 || info->channels > 2) return PL_AUDIO_ERR_WAV_CHANNELS;
    if (info->rate < 8000 || info->rate > 192000) return PL_AUDIO_ERR_WAV_RATE;
    if (info->block_align != info->channels * 2 || byte_rate != info->rate * info->block_align)
        return PL_AUDIO_ERR_WAV_HEADER;
    return PL_AUDIO_OK;
}

pl_audio_err pl_wav_parse(const uint8_t *buf, size_t len, pl_wav_info *info)
{
    memset(info, 0, sizeof *info);
    if (len > PL_WAV_HEADER_MAX) len = PL_WAV_HEADER_MAX;
    pl_reader r = pl_reader_make(buf, len);
    const uint8_t *riff = pl_read_ptr(&r, 12);
    if (!riff || memcmp(riff, "RIFF", 4) != 0 || memcmp(riff + 8, "WAVE", 4) != 0) return PL_AUDIO_ERR_NOT_WAV;
    bool have_fmt = false;
    for (;;) {
        const uint8_t *hdr = pl_read_ptr(&r, 8);
        if (!hdr) return PL_AUDIO_ERR_WAV_HEADER; /* no data chunk within the header bytes */
        uint32_t size = le32(hdr + 4);
        if (memcmp(hdr, "data", 4) == 0) {
            if (!have_fmt) return PL_AUDIO_ERR_WAV_HEADER;
            info->data_offset = r.off;
            /* Writers that stream (to a pipe) cannot know the size and put
             * all ones; a size past the end of a file is handled by reading
             * to its end. */
            info->data_len = size == 0xffffffffu ? PL_WAV_DATA_TO_EOF : size;
            return PL_AUDIO_OK;
        }
        /* Chunks are padded to an even size. */
        uint64_t skip = (uint64_t)size + (size & 1);
        if (skip > pl_reader_left(&r)) return PL_AUDIO_ERR_WAV_HEADER;
        const uint8_t *body = pl_read_ptr(&r, (size_t)skip);
        if (memcmp(hdr, "fmt ", 4) == 0) {
            if (have_fmt) return PL_AUDIO_ERR_WAV_HEADER;
            pl_audio_err e = parse_fmt(body, size, info);
            if (e != PL_AUDIO_OK) return e;
            have_fmt = true;
        }
    }
}

/* ---- WAV source ---------------------------------------------------------------- */

/* Input sample frames read at a time: 4096 is 85 ms at 48 kHz, so a
 * call reads its file about 12 times a second rather than at every frame. */
#define IN_CHUNK 4096

typedef struct wav_source {
    pl_audio_source base;
    int fd;
    pl_wav_info info;
    uint64_t left;              /* data bytes not yet read (PL_WAV_DATA_TO_EOF: to the end) */
    bool eof, flushed;
    SpeexResamplerState *rs;    /* NULL at 48 kHz */
    int16_t in[IN_CHUNK];       /* mono samples at the file's rate, not yet resampled */
    uint32_t in_len, in_pos;
    uint8_t raw[IN_CHUNK * 4];
} wav_source;

static void wav_source_close(pl_audio_source *s)
{
    wav_source *w = (wav_source *)s;
    if (w->rs) speex_resampler_destroy(w->rs);
    close(w->fd);
    free(w);
}

/* Reads up to IN_CHUNK sample frames into w->in, mixed down to mono. */
static pl_audio_err fill_input(wav_source *w)
{
    size_t want = IN_CHUNK * (size_t)w->info.block_align;
    if (w->left != PL_WAV_DATA_TO_EOF && want > w->left) want = (size_t)w->left;
    size_t got = 0;
    while (got < want) {
        ssize_t n = read(w->fd, w->raw + got, want - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            return PL_AUDIO_ERR_IO;
        }
        if (n == 0) break;
        got += (size_t)n;
    }
    if (w->left != PL_WAV_DATA_TO_EOF) w->left -= got;
    if (got < want || w->left == 0) w->eof = true;
    uint32_t frames = (uint32_t)(got / w->info.block_align); /* a trailing partial sample is dropped */
    for (uint32_t i = 0; i < frames; i++) {
        const uint8_t *p = w->raw + (size_t)i * w->info.block_align;
        if (w->info.channels == 2) w->in[i] = (int16_t)(((int)(int16_t)le16(p) + (int)(int16_t)le16(p + 2)) / 2);
        else w->in[i] = (int16_t)le16(p);
    }
    w->in_len = frames;
    w->in_pos = 0;
    return PL_AUDIO_OK;
}

static pl_audio_err wav_source_read(pl_audio_source *s, int16_t frame[PL_AUDIO_FRAME])
{
    wav_source *w = (wav_source *)s;
    uint32_t filled = 0;
    while (filled < PL_AUDIO_FRAME) {
        if (w->in_pos == w->in_len) {
            if (w->eof) {
                /* The resampler holds back a few samples (its filter's
                 * delay): push zeros through once to get them out. */
                if (w->rs && !w->flushed) {
                    w->flushed = true;
                    uint32_t lat = (uint32_t)speex_resampler_get_input_latency(w->rs);
                    if (lat > IN_CHUNK) lat = IN_CHUNK;
                    memset(w->in, 0, sizeof(int16_t) * lat);
                    w->in_len = lat;
                    w->in_pos = 0;
                } else {
                    break;
                }
            } else {
                pl_audio_err e = fill_input(w);
                if (e != PL_AUDIO_OK) return e;
                continue;
            }
        }
        uint32_t in_n = w->in_len - w->in_pos, out_n = PL_AUDIO_FRAME - filled;
        if (w->rs) {
            speex_resampler_process_int(w->rs, 0, w->in + w->in_pos, &in_n, frame + filled, &out_n);
        } else {
            if (in_n > out_n) in_n = out_n;
            out_n = in_n;
            memcpy(frame + filled, w->in + w->in_pos, sizeof(int16_t) * in_n);
        }
        w->in_pos += in_n;
        filled += out_n;
        if (in_n == 0 && out_n == 0) break; /* the resampler wants nothing more */
    }
    if (filled == 0) return PL_AUDIO_END;
    if (filled < PL_AUDIO_FRAME) memset(frame + filled, 0, sizeof(int16_t) * (PL_AUDIO_FRAME - filled));
    return PL_AUDIO_OK;
}

pl_audio_err pl_audio_wav_source_open(pl_audio_source **out, const char *path)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return PL_AUDIO_ERR_OPEN;
    uint8_t *head = malloc(PL_WAV_HEADER_MAX);
    if (!head) {
        close(fd);
        return PL_AUDIO_ERR_NOMEM;
    }
    size_t got = 0;
    while (got < PL_WAV_HEADER_MAX) {
        ssize_t n = read(fd, head + got, PL_WAV_HEADER_MAX - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    pl_wav_info info;
    pl_audio_err e = pl_wav_parse(head, got, &info);
    free(head);
    if (e == PL_AUDIO_OK && lseek(fd, (off_t)info.data_offset, SEEK_SET) < 0) e = PL_AUDIO_ERR_IO;
    wav_source *w = e == PL_AUDIO_OK ? calloc(1, sizeof *w) : NULL;
    if (e == PL_AUDIO_OK && !w) e = PL_AUDIO_ERR_NOMEM;
    if (e == PL_AUDIO_OK && info.rate != PL_AUDIO_RATE) {
        int rerr = 0;
        w->rs = speex_resampler_init(1, info.rate, PL_AUDIO_RATE, 5, &rerr);
        if (!w->rs) e = PL_AUDIO_ERR_NOMEM;
        else speex_resampler_skip_zeros(w->rs);
    }
    if (e != PL_AUDIO_OK) {
        if (w && w->rs) speex_resampler_destroy(w->rs);
        free(w);
        close(fd);
        return e;
    }
    w->base.read = wav_source_read;
    w->base.close = wav_source_close;
    w->fd = fd;
    w->info = info;
    w->left = info.data_len;
    if (w->left == 0) w->eof = true;
    *out = &w->base;
    return PL_AUDIO_OK;
}

/* ---- WAV sink -------------------------------------------------------------------- */

#define WAV_HEADER 44
#define WAV_MAX_DATA (0xffffffffu - 36u - PL_AUDIO_FRAME * 2u)

/* The sink writes through a shared memory map of the file, grown (and its
 * blocks reserved) 2 s of audio at a time. A frame is then a copy and two
 * header fields, no system call: the file write and the header write per
 * frame were a tenth of a call end's CPU. What is copied is in the page
 * cache at once, so a process killed outright still leaves a complete file
 * up to its last frame; the file is cut to its real length on close (a
 * killed writer leaves up to 2 s of zeros after the RIFF chunk, which WAV
 * readers skip). Reserving the blocks up front turns a full disk into an
 * error here rather than a SIGBUS on a store into the map. */
#define WAV_SINK_GROW (2 * PL_AUDIO_RATE * 2)

typedef struct wav_sink {
    pl_audio_sink base;
    int fd;
    uint32_t data_bytes;
    bool failed;
    uint8_t *map;
    size_t map_len;
} wav_sink;

static void wav_header(uint8_t h[WAV_HEADER], uint32_t data_bytes)
{
    memcpy(h, "RIFF", 4);
    put_le32(h + 4, 36 + data_bytes);
    memcpy(h + 8, "WAVEfmt ", 8);
    put_le32(h + 16, 16);
    put_le16(h + 20, PL_WAV_FORMAT_PCM);
    put_le16(h + 22, 1);
    put_le32(h + 24, PL_AUDIO_RATE);
    put_le32(h + 28, PL_AUDIO_RATE * 2);
    put_le16(h + 32, 2);
    put_le16(h + 34, 16);
    memcpy(h + 36, "data", 4);
    put_le32(h + 40, data_bytes);
}

/* Makes room for one more frame: the file grows by WAV_SINK_GROW, its blocks
 * reserved, and the map is made again over the whole of it. */
static bool wav_sink_grow(wav_sink *w)
{
    size_t need = WAV_HEADER + (size_t)w->data_bytes + PL_AUDIO_FRAME * 2;
    if (w->map && need <= w->map_len) return true;
    size_t len = w->map_len ? w->map_len + WAV_SINK_GROW : WAV_HEADER + WAV_SINK_GROW;
    if (posix_fallocate(w->fd, (off_t)w->map_len, (off_t)(len - w->map_len)) != 0) return false;
    uint8_t *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, w->fd, 0);
    if (map == MAP_FAILED) return false;
    if (w->map) munmap(w->map, w->map_len);
    /* The first store into each page of a shared file map is a page fault
     * in which the file system takes the page on (ext4_page_mkwrite): one
     * every other frame, each costing a frame's wake-up some 40 us of cold
     * kernel work. Asked for here, the new pages and the header's are made
     * writable in one go, two seconds of audio at a time: about 11 us a
     * frame less in all on this machine. A kernel without
     * MADV_POPULATE_WRITE (before 5.14) refuses, and the faults come one by
     * one as before. */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t from = w->map_len / page * page;
    if (from) (void)madvise(map, page, MADV_POPULATE_WRITE); /* the header's page, mapped anew */
    (void)madvise(map + from, len - from, MADV_POPULATE_WRITE);
    w->map = map;
    w->map_len = len;
    return true;
}

static pl_audio_err wav_sink_write(pl_audio_sink *s, const int16_t frame[PL_AUDIO_FRAME])
{
    wav_sink *w = (wav_sink *)s;
    if (w->failed) return PL_AUDIO_ERR_IO;
    if (w->data_bytes > WAV_MAX_DATA) return PL_AUDIO_ERR_FULL;
    if (!wav_sink_grow(w)) {
        w->failed = true;
        return PL_AUDIO_ERR_IO;
    }
    uint8_t *bytes = w->map + WAV_HEADER + w->data_bytes;
    for (int i = 0; i < PL_AUDIO_FRAME; i++) put_le16(bytes + 2 * i, (uint16_t)frame[i]);
    w->data_bytes += PL_AUDIO_FRAME * 2;
    /* The header is true after every frame. */
    put_le32(w->map + 4, 36 + w->data_bytes);
    put_le32(w->map + 40, w->data_bytes);
    return PL_AUDIO_OK;
}

static void wav_sink_close(pl_audio_sink *s)
{
    wav_sink *w = (wav_sink *)s;
    if (w->map) munmap(w->map, w->map_len);
    if (ftruncate(w->fd, (off_t)(WAV_HEADER + (off_t)w->data_bytes)) != 0) {
        /* The header still says how long the audio is. */
    }
    fsync(w->fd);
    close(w->fd);
    free(w);
}

pl_audio_err pl_audio_wav_sink_open(pl_audio_sink **out, const char *path)
{
    *out = NULL;
    wav_sink *w = calloc(1, sizeof *w);
    if (!w) return PL_AUDIO_ERR_NOMEM;
    w->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        free(w);
        return PL_AUDIO_ERR_OPEN;
    }
    if (!wav_sink_grow(w)) {
        close(w->fd);
        free(w);
        return PL_AUDIO_ERR_IO;
    }
    wav_header(w->map, 0);
    w->base.write = wav_sink_write;
    w->base.close = wav_sink_close;
    *out = &w->base;
    return PL_AUDIO_OK;
}

/* ---- generators ------------------------------------------------------------------ */

typedef struct gen_source {
    pl_audio_source base;
    double phase, step, amplitude; /* step 0: silence */
    uint64_t left;                 /* frames; UINT64_MAX: endless */
} gen_source;

static pl_audio_err gen_read(pl_audio_source *s, int16_t frame[PL_AUDIO_FRAME])
{
    gen_source *g = (gen_source *)s;
    if (g->left == 0) return PL_AUDIO_END;
    if (g->left != UINT64_MAX) g->left--;
    if (g->step == 0) {
        memset(frame, 0, sizeof(int16_t) * PL_AUDIO_FRAME);
        return PL_AUDIO_OK;
    }
    for (int i = 0; i < PL_AUDIO_FRAME; i++) {
        frame[i] = (int16_t)lrint(g->amplitude * 32767.0 * sin(g->phase));
        g->phase += g->step;
        if (g->phase >= 2 * M_PI) g->phase -= 2 * M_PI;
    }
    return PL_AUDIO_OK;
}

static void gen_close(pl_audio_source *s) { free(s); }

static pl_audio_err gen_open(pl_audio_source **out, double step, double amplitude, uint64_t frames)
{
    *out = NULL;
    gen_source *g = calloc(1, sizeof *g);
    if (!g) return PL_AUDIO_ERR_NOMEM;
    g->base.read = gen_read;
    g->base.close = gen_close;
    g->step = step;
    g->amplitude = amplitude;
    g->left = frames ? frames : UINT64_MAX;
    *out = &g->base;
    return PL_AUDIO_OK;
}

pl_audio_err pl_audio_tone_open(pl_audio_source **out, double freq_hz, double amplitude, uint64_t frames)
{
    *out = NULL;
    if (!(freq_hz > 0 && freq_hz < PL_AUDIO_RATE / 2) || !(amplitude >= 0 && amplitude <= 1)) return PL_AUDIO_ERR_ARG;
    return gen_open(out, 2 * M_PI * freq_hz / PL_AUDIO_RATE, amplitude, frames);
}

pl_audio_err pl_audio_silence_open(pl_audio_source **out, uint64_t frames) { return gen_open(out, 0, 0, frames); }

static pl_audio_err null_read(pl_audio_source *s, int16_t frame[PL_AUDIO_FRAME])
{
    (void)s;
    (void)frame;
    return PL_AUDIO_END;
}

static pl_audio_err null_write(pl_audio_sink *s, const int16_t frame[PL_AUDIO_FRAME])
{
    (void)s;
    (void)frame;
    return PL_AUDIO_OK;
}

static void null_source_close(pl_audio_source *s) { free(s); }
static void null_sink_close(pl_audio_sink *s) { free(s); }

pl_audio_err pl_audio_null_source_open(pl_audio_source **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return PL_AUDIO_ERR_NOMEM;
    (*out)->read = null_read;
    (*out)->close = null_source_close;
    return PL_AUDIO_OK;
}

pl_audio_err pl_audio_null_sink_open(pl_audio_sink **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return PL_AUDIO_ERR_NOMEM;
    (*out)->write = null_write;
    (*out)->close = null_sink_close;
    return PL_AUDIO_OK;
}
