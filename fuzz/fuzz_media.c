/*
 * fuzz_media.c - hostile bytes into the media receive path and the WAV
 * reader.
 *
 * The first byte chooses.
 *  Even: the rest is a run of payloads as the secure session would deliver
 *  them, each a record {u16 length, u8 milliseconds since the last, bytes}.
 *  Each goes to pl_media_receive of a fresh stream, with playout pulls and
 *  report ticks between them, so the jitter buffer, the decoder (packets,
 *  FEC, concealment) and the report logic all run on what got through.
 *  Checks besides crashes: a voice or report payload that decodes encodes
 *  back to the same bytes (the formats are canonical), and the counters
 *  stay consistent.
 *  Odd: the rest is a WAV file: pl_wav_parse, and when it accepts, the file
 *  (in memory, through a memfd) is read to its end by the WAV source, with
 *  resampling and mixdown. Checks: the parsed fields are within the rules.
 *
 * Set PARLEY_FUZZ_WRITE_SEEDS=dir to write the seed corpus and exit.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "audio.h"
#include "media_packet.h"
#include "stream.h"
#include "voice_codec.h"

#define T0 ((pl_time)1800000000 * PL_SEC)

static void sink_send(void *ctx, const uint8_t *payload, size_t len)
{
    (void)ctx;
    if (len == 0 || !pl_mpkt_is_media(payload, len)) abort();
}

static void check_canonical(const uint8_t *p, size_t len)
{
    uint8_t out[PL_MPKT_VOICE_MAX + 1];
    size_t n = 0;
    pl_mpkt_voice v;
    if (pl_mpkt_voice_decode(&v, p, len) == PL_MPKT_OK) {
        if (pl_mpkt_voice_encode(&v, out, sizeof out, &n) != PL_MPKT_OK || n != len || memcmp(out, p, len) != 0)
            abort();
    }
    pl_mpkt_report r;
    if (pl_mpkt_report_decode(&r, p, len) == PL_MPKT_OK) {
        if (pl_mpkt_report_encode(&r, out, sizeof out, &n) != PL_MPKT_OK || n != len || memcmp(out, p, len) != 0)
            abort();
        pl_time rtt;
        if (pl_mpkt_report_rtt(&r, T0, &rtt) && rtt > 61 * PL_SEC) abort();
    }
}

static void fuzz_stream(const uint8_t *data, size_t size)
{
    pl_media *m;
    pl_media_io io = {NULL, sink_send};
    if (pl_media_new(&m, NULL, &io, T0) != PL_MEDIA_OK) abort();
    pl_time t = T0;
    pl_time next_pull = T0;
    int16_t pcm[PL_VOICE_FRAME];
    size_t off = 0;
    while (size - off >= 3) {
        size_t len = ((size_t)data[off] << 8) | data[off + 1];
        t += (pl_time)data[off + 2] * PL_MSEC;
        off += 3;
        if (len > size - off) len = size - off;
        const uint8_t *p = data + off;
        off += len;
        check_canonical(p, len);
        while (next_pull <= t) {
            pl_media_pull(m, pcm, next_pull);
            next_pull += 20 * PL_MSEC;
        }
        pl_media_err e = pl_media_receive(m, p, len, t);
        if (e != PL_MEDIA_OK && e != PL_MEDIA_ERR_MALFORMED && e != PL_MEDIA_ERR_NOT_MEDIA) abort();
        if ((e == PL_MEDIA_ERR_NOT_MEDIA) == pl_mpkt_is_media(p, len)) abort();
        pl_media_tick(m, t);
    }
    /* Play out what is left. */
    for (int i = 0; i < 8; i++) {
        pl_media_pull(m, pcm, next_pull);
        next_pull += 20 * PL_MSEC;
    }
    pl_media_stats st;
    pl_media_get_stats(m, &st);
    if (st.concealed_fraction < 0 || st.concealed_fraction > 1) abort();
    if (st.bitrate < 16000 || st.bitrate > 40000) abort();
    if (st.fec_loss_perc < 0 || st.fec_loss_perc > 50) abort();
    pl_media_free(m);
}

static void fuzz_wav(const uint8_t *data, size_t size)
{
    pl_wav_info info;
    if (pl_wav_parse(data, size, &info) != PL_AUDIO_OK) return;
    if (info.format != PL_WAV_FORMAT_PCM || info.bits != 16 || info.channels < 1 || info.channels > 2 ||
        info.rate < 8000 || info.rate > 192000 || info.block_align != info.channels * 2 || info.data_offset > size)
        abort();
    int fd = memfd_create("fuzz-wav", MFD_CLOEXEC);
    if (fd < 0) return;
    if (write(fd, data, size) != (ssize_t)size) abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    pl_audio_source *src;
    if (pl_audio_wav_source_open(&src, path) != PL_AUDIO_OK) abort(); /* parsed above: must open */
    int16_t frame[PL_AUDIO_FRAME];
    /* At most (size / block_align) samples, resampled up by at most 6. */
    size_t limit = size / 2 * 6 / PL_AUDIO_FRAME + 3, frames = 0;
    pl_audio_err e;
    while ((e = pl_audio_read(src, frame)) == PL_AUDIO_OK)
        if (++frames > limit) abort();
    if (e != PL_AUDIO_END) abort();
    pl_audio_source_close(src);
    close(fd);
}

/* ---- seeds ------------------------------------------------------------------------ */

static void write_seed(const char *dir, const char *name, const uint8_t *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static size_t add_record(uint8_t *buf, size_t off, const uint8_t *p, size_t len, uint8_t ms)
{
    buf[off] = (uint8_t)(len >> 8);
    buf[off + 1] = (uint8_t)len;
    buf[off + 2] = ms;
    memcpy(buf + off + 3, p, len);
    return off + 3 + len;
}

static size_t wav_header(uint8_t *h, uint16_t channels, uint32_t rate, uint32_t data_len)
{
    memcpy(h, "RIFF", 4);
    uint32_t v[] = {36 + data_len};
    h[4] = (uint8_t)v[0]; h[5] = (uint8_t)(v[0] >> 8); h[6] = (uint8_t)(v[0] >> 16); h[7] = (uint8_t)(v[0] >> 24);
    memcpy(h + 8, "WAVEfmt ", 8);
    uint8_t fmt[20] = {16, 0, 0, 0, 1, 0, (uint8_t)channels, 0};
    memcpy(h + 16, fmt, 8);
    uint32_t br = rate * channels * 2;
    uint8_t *p = h + 24;
    p[0] = (uint8_t)rate; p[1] = (uint8_t)(rate >> 8); p[2] = (uint8_t)(rate >> 16); p[3] = (uint8_t)(rate >> 24);
    p[4] = (uint8_t)br; p[5] = (uint8_t)(br >> 8); p[6] = (uint8_t)(br >> 16); p[7] = (uint8_t)(br >> 24);
    p[8] = (uint8_t)(channels * 2); p[9] = 0; p[10] = 16; p[11] = 0;
    memcpy(h + 36, "data", 4);
    h[40] = (uint8_t)data_len; h[41] = (uint8_t)(data_len >> 8); h[42] = (uint8_t)(data_len >> 16);
    h[43] = (uint8_t)(data_len >> 24);
    return 44;
}

static void write_seeds(const char *dir)
{
    /* A short call: real Opus packets from a tone with a pause, a report. */
    pl_voice_enc *enc;
    if (pl_voice_enc_new(&enc, NULL) != PL_VOICE_OK) abort();
    pl_voice_enc_set_loss(enc, 20);
    static uint8_t buf[1 << 14];
    size_t off = 0;
    buf[off++] = 0;
    int16_t pcm[PL_VOICE_FRAME];
    for (int f = 0; f < 12; f++) {
        for (int i = 0; i < PL_VOICE_FRAME; i++)
            pcm[i] = f < 9 ? (int16_t)(8000 * sin((f * PL_VOICE_FRAME + i) * 2 * M_PI * 220 / 48000)) : 0;
        uint8_t opus[PL_VOICE_MAX_PACKET];
        size_t len;
        bool dtx;
        pl_voice_encode(enc, pcm, opus, &len, &dtx);
        pl_mpkt_voice v = {.flags = dtx ? PL_MPKT_F_SILENCE : 0, .seq = (uint16_t)(65530 + f),
                           .timestamp = (uint32_t)(f * PL_VOICE_FRAME), .opus = opus, .opus_len = len};
        uint8_t pkt[PL_MPKT_VOICE_MAX];
        size_t n;
        pl_mpkt_voice_encode(&v, pkt, sizeof pkt, &n);
        if (f == 4) continue; /* lost */
        off = add_record(buf, off, pkt, n, f == 5 ? 45 : 20);
        if (f == 2) off = add_record(buf, off, pkt, n, 1); /* duplicate */
    }
    pl_mpkt_report r = {.flags = PL_MPKT_R_RECEPTION | PL_MPKT_R_LSR, .fraction_lost = 20, .cumulative_lost = 3,
                        .highest_seq = 70000, .jitter = 200, .timestamp = 12345, .lsr = 9999, .dlsr = 100};
    uint8_t rep[PL_MPKT_REPORT_SIZE];
    size_t n;
    pl_mpkt_report_encode(&r, rep, sizeof rep, &n);
    off = add_record(buf, off, rep, n, 10);
    write_seed(dir, "stream_call", buf, off);
    buf[0] = 0;
    off = add_record(buf, 1, rep, n, 0);
    write_seed(dir, "stream_report", buf, off);
    pl_voice_enc_free(enc);

    /* WAV files: mono 48 kHz, stereo 22050 Hz, both with a few samples. */
    buf[0] = 1;
    off = 1 + wav_header(buf + 1, 1, 48000, 64);
    for (int i = 0; i < 64; i++) buf[off++] = (uint8_t)(i * 37);
    write_seed(dir, "wav_mono_48k", buf, off);
    off = 1 + wav_header(buf + 1, 2, 22050, 128);
    for (int i = 0; i < 128; i++) buf[off++] = (uint8_t)(i * 91);
    write_seed(dir, "wav_stereo_22k", buf, off);
    off = 1 + wav_header(buf + 1, 1, 8000, 0xffffffffu);
    for (int i = 0; i < 40; i++) buf[off++] = (uint8_t)i;
    write_seed(dir, "wav_streamed_8k", buf, off);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("PARLEY_FUZZ_WRITE_SEEDS");
    if (dir) {
        write_seeds(dir);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (data[0] & 1) fuzz_wav(data + 1, size - 1);
    else fuzz_stream(data + 1, size - 1);
    return 0;
}
