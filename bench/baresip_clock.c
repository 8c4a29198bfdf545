/*
 * baresip_clock.c - when baresip's audio frames pass, for
 * bench/peer_baresip.sh. Built as a shared object and loaded into baresip
 * with LD_PRELOAD; nothing of Parley links it.
 *
 * Without a sound card baresip has no player, and the only way to keep
 * what it received is the sndfile module: an audio filter that writes
 * each frame sent to FILE-enc.wav just before it is encoded (in the
 * source's thread, the moment the source delivers it) and each frame
 * received to FILE-dec.wav the moment it is decoded, back to back. Such
 * a file has no time in it: the frames the jitter buffer held back (five
 * by default) sit in it as if they had been played at once, so scoring it
 * shows the codec's delay and nothing more.
 *
 * This wrapper of libsndfile's sf_open, sf_write_raw and sf_close notes
 * the time (CLOCK_MONOTONIC, one clock for every process on the machine)
 * of every frame written to either file, and when the file is closed
 * writes the times, one a line in nanoseconds, to FILE-enc.times or
 * FILE-dec.times. The benchmark pairs the n-th frame one side sent with
 * the n-th frame the other decoded: the difference is how long that frame
 * spent between the sender's source and the receiver's decoder. Frames
 * are kept in memory until the close, so that the wrapper adds no system
 * call per frame.
 *
 * baresip decodes on its main thread and encodes on the source's thread,
 * hence the lock.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* libsndfile's types, as its ABI has them (no -dev package needed). */
typedef int64_t sf_count_t;
typedef struct SNDFILE_tag SNDFILE;
typedef struct SF_INFO SF_INFO;
#define SFM_WRITE 0x20

SNDFILE *sf_open(const char *path, int mode, SF_INFO *info);
sf_count_t sf_write_raw(SNDFILE *sf, const void *ptr, sf_count_t bytes);
int sf_close(SNDFILE *sf);

#define MAX_FRAMES (1 << 16) /* 21 minutes of 20 ms frames */

typedef struct tap {
    SNDFILE *sf;
    char path[512];
    size_t n;
    int64_t *ns;
} tap;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static tap taps[2]; /* the encode file and the decode file */

/* libsndfile's own function. baresip loads its modules, and so
 * libsndfile, with RTLD_LOCAL: RTLD_NEXT does not find it. */
static void *real_fn(const char *name)
{
    static void *lib;
    if (!lib) lib = dlopen("libsndfile.so.1", RTLD_LAZY);
    return lib ? dlsym(lib, name) : NULL;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void tap_dump(tap *t)
{
    FILE *f = fopen(t->path, "w");
    if (f) {
        for (size_t i = 0; i < t->n; i++) fprintf(f, "%lld\n", (long long)t->ns[i]);
        fclose(f);
    }
    free(t->ns);
    memset(t, 0, sizeof *t);
}

SNDFILE *sf_open(const char *path, int mode, SF_INFO *info)
{
    static SNDFILE *(*real)(const char *, int, SF_INFO *);
    if (!real) real = (SNDFILE * (*)(const char *, int, SF_INFO *)) real_fn("sf_open");
    if (!real) return NULL;
    SNDFILE *sf = real(path, mode, info);
    size_t n = strlen(path);
    if (!sf || mode != SFM_WRITE || n < 8 || n + 2 > sizeof taps[0].path) return sf;
    int which = strcmp(path + n - 8, "-enc.wav") == 0 ? 0 : strcmp(path + n - 8, "-dec.wav") == 0 ? 1 : -1;
    if (which < 0) return sf;
    pthread_mutex_lock(&lock);
    tap *t = &taps[which];
    if (t->sf) tap_dump(t);
    t->ns = malloc(MAX_FRAMES * sizeof *t->ns);
    if (t->ns) {
        t->sf = sf;
        memcpy(t->path, path, n - 4);
        strcpy(t->path + n - 4, ".times");
    }
    pthread_mutex_unlock(&lock);
    return sf;
}

sf_count_t sf_write_raw(SNDFILE *sf, const void *ptr, sf_count_t bytes)
{
    static sf_count_t (*real)(SNDFILE *, const void *, sf_count_t);
    if (!real) real = (sf_count_t(*)(SNDFILE *, const void *, sf_count_t))real_fn("sf_write_raw");
    if (!real) return 0;
    int64_t now = now_ns();
    pthread_mutex_lock(&lock);
    for (int i = 0; i < 2; i++)
        if (taps[i].sf == sf && taps[i].n < MAX_FRAMES) taps[i].ns[taps[i].n++] = now;
    pthread_mutex_unlock(&lock);
    return real(sf, ptr, bytes);
}

int sf_close(SNDFILE *sf)
{
    static int (*real)(SNDFILE *);
    if (!real) real = (int (*)(SNDFILE *))real_fn("sf_close");
    if (!real) return 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < 2; i++)
        if (taps[i].sf == sf) tap_dump(&taps[i]);
    pthread_mutex_unlock(&lock);
    return real(sf);
}
