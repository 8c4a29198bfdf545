/*
 * test_audio.c - audio sources and sinks: WAV out and back in, durable
 * against an abrupt end, WAV files made by sox and espeak-ng (resampled,
 * mixed down, streamed), the formats refused with the error that says why,
 * the generators, and sound devices failing cleanly where there are none.
 */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "audio.h"
#include "audio_device.h"
#include "speech.h"
#include "test.h"

#define FRAME PL_AUDIO_FRAME

static char dir[] = "/tmp/parley-audio-XXXXXX";

/* Paths in the test's directory; four can be in use at once. */
static const char *path_in(const char *name)
{
    static char p[4][128];
    static int next;
    char *out = p[next++ % 4];
    snprintf(out, sizeof p[0], "%s/%s", dir, name);
    return out;
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    CHECK(system(cmd) == 0);
}

/* Reads a whole source; returns the samples (malloc'ed). */
static int16_t *read_all(pl_audio_source *src, size_t *frames)
{
    size_t cap = 64, n = 0;
    int16_t *pcm = malloc(cap * FRAME * sizeof *pcm);
    CHECK(pcm != NULL);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            pcm = realloc(pcm, cap * FRAME * sizeof *pcm);
            CHECK(pcm != NULL);
        }
        pl_audio_err e = pl_audio_read(src, pcm + n * FRAME);
        if (e == PL_AUDIO_END) break;
        CHECK_EQ(e, PL_AUDIO_OK);
        n++;
    }
    *frames = n;
    return pcm;
}

static void make_frame(int16_t *f, size_t k)
{
    for (int i = 0; i < FRAME; i++) f[i] = (int16_t)((int)((k * 7919 + (size_t)i * 31) % 65536) - 32768);
}

static void test_wav_round_trip(void)
{
    const char *p = path_in("round.wav");
    pl_audio_sink *sink;
    CHECK_EQ(pl_audio_wav_sink_open(&sink, p), PL_AUDIO_OK);
    CHECK(!sink->device);
    int16_t f[FRAME];
    for (size_t k = 0; k < 100; k++) {
        make_frame(f, k);
        CHECK_EQ(pl_audio_write(sink, f), PL_AUDIO_OK);
    }
    pl_audio_sink_close(sink);
    struct stat st;
    CHECK(stat(p, &st) == 0);
    CHECK_EQ(st.st_size, 44 + 100 * FRAME * 2);
    /* sox agrees on what was written. */
    sh("soxi -r '%s' | grep -qx 48000", p);
    sh("test \"$(soxi -s '%s')\" = 96000", p);

    pl_audio_source *src;
    CHECK_EQ(pl_audio_wav_source_open(&src, p), PL_AUDIO_OK);
    CHECK(!src->device);
    size_t frames;
    int16_t *pcm = read_all(src, &frames);
    CHECK_EQ(frames, 100);
    for (size_t k = 0; k < 100; k++) {
        make_frame(f, k);
        CHECK(memcmp(f, pcm + k * FRAME, sizeof f) == 0);
    }
    CHECK_EQ(pl_audio_read(src, f), PL_AUDIO_END);
    pl_audio_source_close(src);
    free(pcm);
    unlink(p);
}

/* The writer dies without closing (kill -9), after its file has grown once
 * (2 s): every frame it wrote is in a valid file. */
static void test_wav_survives_abrupt_end(void)
{
    const char *p = path_in("abrupt.wav");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        pl_audio_sink *sink;
        if (pl_audio_wav_sink_open(&sink, p) != PL_AUDIO_OK) _exit(1);
        int16_t f[FRAME];
        for (size_t k = 0; k < 137; k++) {
            make_frame(f, k);
            if (pl_audio_write(sink, f) != PL_AUDIO_OK) _exit(1);
        }
        raise(SIGKILL);
        _exit(2);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    pl_audio_source *src;
    CHECK_EQ(pl_audio_wav_source_open(&src, p), PL_AUDIO_OK);
    size_t frames;
    int16_t *pcm = read_all(src, &frames);
    CHECK_EQ(frames, 137);
    int16_t f[FRAME];
    make_frame(f, 136);
    CHECK(memcmp(f, pcm + 136 * FRAME, sizeof f) == 0);
    pl_audio_source_close(src);
    free(pcm);
    sh("test \"$(soxi -s '%s')\" = 131520", p);
    unlink(p);
}

/* espeak-ng writes 22050 Hz; the reader resamples it to 48 kHz and gets
 * what sox's resampler gets. */
static void test_wav_resampled_speech(void)
{
    size_t n;
    int16_t *ref = pl_test_speech_files("Resampling a speech file to forty eight kilohertz.", dir, &n);
    CHECK(ref != NULL);
    pl_audio_source *src;
    CHECK_EQ(pl_audio_wav_source_open(&src, path_in("speech22k.wav")), PL_AUDIO_OK);
    size_t frames;
    int16_t *pcm = read_all(src, &frames);
    pl_audio_source_close(src);
    printf("  22050 Hz file: %zu frames read, sox made %zu samples (%zu frames)\n", frames, n, n / FRAME);
    CHECK(frames * FRAME >= n && frames * FRAME < n + 2 * FRAME);
    double c;
    size_t lag = pl_test_best_lag(ref, pcm, n - 2 * FRAME, 200, &c);
    double c2;
    size_t lag2 = pl_test_best_lag(pcm, ref, n - 2 * FRAME, 200, &c2);
    printf("  against sox's resampling: correlation %.4f (lag %zu / %zu)\n", c > c2 ? c : c2, lag, lag2);
    CHECK((c > 0.99 && lag <= 2) || (c2 > 0.99 && lag2 <= 2));
    free(pcm);

    /* The 48 kHz file sox made reads back exactly. */
    CHECK_EQ(pl_audio_wav_source_open(&src, path_in("speech48k.wav")), PL_AUDIO_OK);
    pcm = read_all(src, &frames);
    pl_audio_source_close(src);
    CHECK_EQ(frames, (n + FRAME - 1) / FRAME);
    CHECK(memcmp(pcm, ref, n * sizeof *ref) == 0);
    free(pcm);
    free(ref);
    unlink(path_in("speech22k.wav"));
    unlink(path_in("speech48k.wav"));
}

/* Stereo is mixed down to the mean of the channels; a file streamed through
 * a pipe (its sizes unknown to the writer) reads to its end. */
static void test_wav_stereo_and_streamed(void)
{
    const char *p = path_in("stereo.wav");
    /* Left 440 Hz, right 1000 Hz, each at 0.5: the mix is their mean. */
    sh("sox -V1 -n -r 48000 -b 16 -c 2 '%s' synth 1 sine 440 sine 1000 vol 0.5", p);
    pl_audio_source *src;
    CHECK_EQ(pl_audio_wav_source_open(&src, p), PL_AUDIO_OK);
    size_t frames;
    int16_t *pcm = read_all(src, &frames);
    pl_audio_source_close(src);
    CHECK_EQ(frames, 50);
    sh("sox -V1 '%s' -c 1 -t raw /dev/stdout remix 1,2 > /dev/null", p); /* sox can mix it too */
    sh("sox -V1 '%s' -t raw '%s' remix 1v0.5,2v0.5", p, path_in("mix.raw"));
    FILE *f = fopen(path_in("mix.raw"), "rb");
    CHECK(f != NULL);
    int16_t *mix = malloc(48000 * sizeof *mix);
    CHECK(mix && fread(mix, 2, 48000, f) == 48000);
    fclose(f);
    int maxdiff = 0;
    for (int i = 0; i < 48000; i++) {
        int d = abs(mix[i] - pcm[i]);
        if (d > maxdiff) maxdiff = d;
    }
    printf("  stereo mixdown: largest difference from sox's mix %d\n", maxdiff);
    CHECK(maxdiff <= 2);
    free(mix);
    free(pcm);
    unlink(path_in("mix.raw"));

    const char *s = path_in("streamed.wav");
    sh("sox -V1 -n -r 48000 -b 16 -c 1 -t wav - synth 0.5 sine 440 2>/dev/null | cat > '%s'", s);
    CHECK_EQ(pl_audio_wav_source_open(&src, s), PL_AUDIO_OK);
    pcm = read_all(src, &frames);
    pl_audio_source_close(src);
    CHECK_EQ(frames, 25);
    free(pcm);
    unlink(p);
    unlink(s);
}

static pl_audio_err open_err(const char *path)
{
    pl_audio_source *src = (pl_audio_source *)1;
    pl_audio_err e = pl_audio_wav_source_open(&src, path);
    if (e == PL_AUDIO_OK) pl_audio_source_close(src);
    else CHECK(src == NULL);
    return e;
}

static void write_bytes(const char *p, const void *data, size_t n)
{
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static void test_wav_refusals(void)
{
    const char *p = path_in("bad.wav");
    CHECK_EQ(open_err(path_in("does-not-exist.wav")), PL_AUDIO_ERR_OPEN);
    sh("sox -V1 -n -r 48000 -e floating-point -b 32 '%s' synth 0.1 sine 440", p);
    CHECK_EQ(open_err(p), PL_AUDIO_ERR_WAV_FORMAT);
    sh("sox -V1 -n -r 48000 -e a-law '%s' synth 0.1 sine 440", p);
    CHECK_EQ(open_err(p), PL_AUDIO_ERR_WAV_FORMAT);
    sh("sox -V1 -n -r 48000 -b 8 '%s' synth 0.1 sine 440", p);
    CHECK_EQ(open_err(p), PL_AUDIO_ERR_WAV_BITS);
    sh("sox -V1 -n -r 48000 -b 24 '%s' synth 0.1 sine 440", p);
    CHECK_EQ(open_err(p), PL_AUDIO_ERR_WAV_BITS);
    sh("sox -V1 -n -r 48000 -b 16 -c 6 '%s' synth 0.1 sine 440", p); /* an extensible header */
    CHECK_EQ(open_err(p), PL_AUDIO_ERR_WAV_CHANNELS);
    sh("sox -V1 -n -r 4000 -b 16 '%s' synth 0.1 sine 440", p);
    CHECK_EQ(open_err(p), PL_AUDIO_ERR_WAV_RATE);
    sh("sox -V1 -n -r 8000 -b 16 '%s' synth 0.1 sine 440", p);
    CHECK_EQ(open_err(p), PL_AUDIO_OK);
    sh("sox -V1 -n -r 44100 -b 16 -c 2 -t wavpcm '%s' synth 0.1 sine 440", p);
    CHECK_EQ(open_err(p), PL_AUDIO_OK);
    /* An extensible header that is PCM (sox writes one for 3+ channels or
     * when asked; here built by hand from a plain header). */
    uint8_t ext[68 + 4] = "RIFF\0\0\0\0WAVEfmt ";
    ext[16] = 40;
    uint8_t fmt[40] = {0xfe, 0xff, 1, 0, 0x80, 0xbb, 0, 0, 0x00, 0x77, 1, 0, 2, 0, 16, 0, 22, 0, 16, 0,
                       4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71};
    memcpy(ext + 20, fmt, 40);
    memcpy(ext + 60, "data", 4);
    ext[64] = 4; /* two samples */
    write_bytes(p, ext, sizeof ext);
    CHECK_EQ(open_err(p), PL_AUDIO_OK);
    ext[44] = 3; /* subformat IEEE float */
    write_bytes(p, ext, sizeof ext);
    CHECK_EQ(open_err(p), PL_AUDIO_ERR_WAV_FORMAT);
    ext[44] = 1;
    ext[55] = 0; /* not the KSDATAFORMAT GUID */
    write_bytes(p, ext, sizeof ext);
    CHECK_EQ(open_err(p), PL_AUDIO_ERR_WAV_FORMAT);

    /* Broken headers, from a good one. */
    uint8_t good[44 + 4];
    FILE *f;
    sh("sox -V1 -n -r 48000 -b 16 -c 1 -t wavpcm '%s' trim 0 2s", p);
    f = fopen(p, "rb");
    CHECK(f && fread(good, 1, sizeof good, f) == sizeof good);
    fclose(f);
    uint8_t b[sizeof good];
    write_bytes(p, "hello, world", 12);
    CHECK_EQ(open_err(p), PL_AUDIO_ERR_NOT_WAV);
    write_bytes(p, good, 8);
    CHECK_EQ(open_err(p), PL_AUDIO_ERR_NOT_WAV);
    write_bytes(p, good, 30); /* cut in the fmt chunk */
    CHECK_EQ(open_err(p), PL_AUDIO_ERR_WAV_HEADER);
    write_bytes(p, good, 36); /* no data chunk */
    CHECK_EQ(open_err(p), PL_AUDIO_ERR_WAV_HEADER);
    memcpy(b, good, sizeof b);
    b[16] = 0xff; /* fmt chunk longer than the file */
    write_bytes(p, b, sizeof b);
    CHECK_EQ(open_err(p), PL_AUDIO_ERR_WAV_HEADER);
    memcpy(b, good, sizeof b);
    b[32] = 4; /* block align that does not match */
    write_bytes(p, b, sizeof b);
    CHECK_EQ(open_err(p), PL_AUDIO_ERR_WAV_HEADER);
    memcpy(b, good, sizeof b);
    memcpy(b + 12, "junk", 4); /* unknown chunk before data but no fmt */
    write_bytes(p, b, sizeof b);
    CHECK_EQ(open_err(p), PL_AUDIO_ERR_WAV_HEADER);
    write_bytes(p, good, sizeof good);
    CHECK_EQ(open_err(p), PL_AUDIO_OK);
    /* The messages say what is wrong. */
    CHECK(strstr(pl_audio_strerror(PL_AUDIO_ERR_WAV_BITS), "16-bit") != NULL);
    CHECK(strstr(pl_audio_strerror(PL_AUDIO_ERR_WAV_RATE), "8000 to 192000 Hz") != NULL);
    CHECK(strstr(pl_audio_strerror(PL_AUDIO_ERR_WAV_FORMAT), "PCM") != NULL);
    CHECK(strstr(pl_audio_strerror(PL_AUDIO_ERR_NOT_WAV), "not a WAV") != NULL);
    /* A sink where no file can be made. */
    pl_audio_sink *sink;
    CHECK_EQ(pl_audio_wav_sink_open(&sink, "/nonexistent-dir/x.wav"), PL_AUDIO_ERR_OPEN);
    unlink(p);
}

static void test_generators(void)
{
    pl_audio_source *src;
    CHECK_EQ(pl_audio_tone_open(&src, 1000, 0.5, 50), PL_AUDIO_OK);
    size_t frames;
    int16_t *pcm = read_all(src, &frames);
    pl_audio_source_close(src);
    CHECK_EQ(frames, 50);
    int crossings = 0, peak = 0;
    for (size_t i = 1; i < frames * FRAME; i++) {
        if ((pcm[i - 1] < 0) != (pcm[i] < 0)) crossings++;
        if (abs(pcm[i]) > peak) peak = abs(pcm[i]);
    }
    CHECK(crossings >= 1998 && crossings <= 2002); /* 1000 Hz for 1 s */
    CHECK(peak >= 16380 && peak <= 16384);
    free(pcm);
    CHECK_EQ(pl_audio_silence_open(&src, 3), PL_AUDIO_OK);
    pcm = read_all(src, &frames);
    pl_audio_source_close(src);
    CHECK_EQ(frames, 3);
    for (size_t i = 0; i < 3 * FRAME; i++) CHECK_EQ(pcm[i], 0);
    free(pcm);
    CHECK_EQ(pl_audio_silence_open(&src, 0), PL_AUDIO_OK); /* endless */
    int16_t f[FRAME];
    for (int k = 0; k < 1000; k++) CHECK_EQ(pl_audio_read(src, f), PL_AUDIO_OK);
    pl_audio_source_close(src);
    CHECK_EQ(pl_audio_null_source_open(&src), PL_AUDIO_OK);
    CHECK_EQ(pl_audio_read(src, f), PL_AUDIO_END);
    pl_audio_source_close(src);
    pl_audio_sink *sink;
    CHECK_EQ(pl_audio_null_sink_open(&sink), PL_AUDIO_OK);
    CHECK_EQ(pl_audio_write(sink, f), PL_AUDIO_OK);
    pl_audio_sink_close(sink);
    CHECK_EQ(pl_audio_tone_open(&src, 0, 0.5, 0), PL_AUDIO_ERR_ARG);
    CHECK_EQ(pl_audio_tone_open(&src, 30000, 0.5, 0), PL_AUDIO_ERR_ARG);
    CHECK_EQ(pl_audio_tone_open(&src, 440, 1.5, 0), PL_AUDIO_ERR_ARG);
    CHECK_EQ(pl_audio_tone_open(&src, NAN, 0.5, 0), PL_AUDIO_ERR_ARG);
    pl_audio_source_close(NULL);
    pl_audio_sink_close(NULL);
}

/* Sound devices: where there are none (this machine, CI) opening fails with
 * a clear error; where there are, a frame arrives within a second. */
static void test_devices_fail_cleanly(void)
{
    pl_audio_source *src;
    pl_audio_sink *sink;
    CHECK_EQ(pl_audio_device_source_open(&src, "no-such-device-anywhere"), PL_AUDIO_ERR_NO_DEVICE);
    CHECK(src == NULL);
    CHECK_EQ(pl_audio_device_sink_open(&sink, "no-such-device-anywhere"), PL_AUDIO_ERR_NO_DEVICE);
    pl_audio_err e = pl_audio_device_source_open(&src, NULL);
    printf("  default input device: %s\n", pl_audio_strerror(e));
    CHECK(e == PL_AUDIO_OK || e == PL_AUDIO_ERR_NO_DEVICE || e == PL_AUDIO_ERR_DEVICE);
    if (e == PL_AUDIO_OK) {
        CHECK(src->device);
        int16_t f[FRAME];
        int tries = 0;
        while (pl_audio_read(src, f) == PL_AUDIO_AGAIN && tries++ < 100) usleep(10000);
        CHECK(tries < 100);
        pl_audio_source_close(src);
    }
    e = pl_audio_device_sink_open(&sink, NULL);
    printf("  default output device: %s\n", pl_audio_strerror(e));
    CHECK(e == PL_AUDIO_OK || e == PL_AUDIO_ERR_NO_DEVICE || e == PL_AUDIO_ERR_DEVICE);
    if (e == PL_AUDIO_OK) {
        int16_t f[FRAME] = {0};
        CHECK_EQ(pl_audio_write(sink, f), PL_AUDIO_OK);
        pl_audio_sink_close(sink);
    }
    pl_audio_device_stats st = pl_audio_device_source_stats(NULL);
    CHECK_EQ(st.frames, 0);
}

int main(void)
{
    if (!mkdtemp(dir)) return 1;
    RUN(test_wav_round_trip);
    RUN(test_wav_survives_abrupt_end);
    RUN(test_wav_resampled_speech);
    RUN(test_wav_stereo_and_streamed);
    RUN(test_wav_refusals);
    RUN(test_generators);
    RUN(test_devices_fail_cleanly);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    return pl_test_summary();
}
