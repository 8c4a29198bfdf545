/*
 * pl_tunnel - framed streams through an outgoing proxy, for
 * tests/proxy.test.sh.
 *
 *   pl_tunnel echo --listen ADDR:PORT
 *       A framed echo server (the stand-in for a supernode's TCP port):
 *       prints "ready", then "accepted PEER" per connection, and sends
 *       every frame back.
 *
 *   pl_tunnel connect --proxy URL|none --to ADDR:PORT [--frames N]
 *                     [--size BYTES] [--timeout S]
 *       Opens a framed stream to ADDR:PORT through the proxy (URL as
 *       pl_proxy_parse_url takes it: http://[user:pass@]IP:PORT or
 *       socks5://...; "none": directly), sends N frames (default 20) of
 *       BYTES bytes (default 1000; each one different) and waits for them to
 *       come back. Prints one line:
 *           ok frames=N bytes=B first-echo-ms=T total-ms=T
 *           fail ERR errno=NAME detail=WORDS
 *       where ERR is the proxy's error word (refused, auth-required,
 *       auth-failed, target, unsupported, failed, bad-reply, closed,
 *       timeout, connect) or, past the handshake, "stream" or "mismatch".
 *       Exit 0 on ok, 1 on fail, 2 on a usage error.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"
#include "parley.h"
#include "proxy.h"

static void usage(void)
{
    fprintf(stderr, "usage: pl_tunnel echo --listen ADDR:PORT\n"
                    "       pl_tunnel connect --proxy URL|none --to ADDR:PORT [--frames N] [--size BYTES] [--timeout S]\n");
    exit(2);
}

static long parse_long(const char *text, long min, long max)
{
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if (!end || *end || v < min || v > max) usage();
    return v;
}

/* ---- echo ------------------------------------------------------------------------------ */

static void echo_frame(void *ctx, pl_stream *s, const uint8_t *frame, size_t len, pl_time now)
{
    (void)ctx;
    (void)now;
    if (pl_stream_send(s, frame, len) != PL_LOOP_OK) pl_stream_close(s, true);
}

static void echo_close(void *ctx, pl_stream *s, int err)
{
    (void)ctx;
    (void)s;
    (void)err;
}

static void echo_accept(void *ctx, pl_listener *l, pl_stream *s, const pl_addr *peer)
{
    (void)ctx;
    (void)l;
    char b[PL_ADDR_TEXT_MAX];
    printf("accepted %s\n", pl_addr_format(peer, b, sizeof b));
    pl_stream_set_callbacks(s, echo_frame, echo_close, NULL);
}

static int cmd_echo(int argc, char **argv)
{
    pl_addr at;
    bool have = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) have = pl_addr_parse(&at, argv[++i], 0);
        else usage();
    }
    if (!have) usage();
    pl_loop *loop = pl_loop_new();
    if (!loop) return 1;
    pl_loop_err err;
    pl_listener *l = pl_stream_listen(loop, &at, echo_accept, NULL, &err);
    if (!l) {
        fprintf(stderr, "pl_tunnel: cannot listen: %s\n", pl_loop_strerror(err));
        return 1;
    }
    printf("ready\n");
    pl_loop_run(loop);
    pl_loop_free(loop);
    return 0;
}

/* ---- connect ------------------------------------------------------------------------------ */

typedef struct client {
    pl_loop *loop;
    size_t frames, size;
    size_t got;
    bool done, failed;
    bool opened;
    pl_time start, open_at;
    char line[256];
} client;

static const char *err_word(pl_proxy_err e)
{
    switch (e) {
    case PL_PROXY_OK: return "stream";
    case PL_PROXY_ERR_CONFIG: return "config";
    case PL_PROXY_ERR_REFUSED: return "refused";
    case PL_PROXY_ERR_AUTH_REQUIRED: return "auth-required";
    case PL_PROXY_ERR_AUTH_FAILED: return "auth-failed";
    case PL_PROXY_ERR_TARGET: return "target";
    case PL_PROXY_ERR_UNSUPPORTED: return "unsupported";
    case PL_PROXY_ERR_FAILED: return "failed";
    case PL_PROXY_ERR_BAD_REPLY: return "bad-reply";
    case PL_PROXY_ERR_CLOSED: return "closed";
    case PL_PROXY_ERR_TIMEOUT: return "timeout";
    case PL_PROXY_ERR_CONNECT: return "connect";
    }
    return "unknown";
}

/* Frame i: its index in the first four bytes, then a pattern of it. */
static void make_frame(uint8_t *buf, size_t size, size_t i)
{
    for (size_t k = 0; k < size; k++) buf[k] = (uint8_t)(i * 31 + k * 7);
    if (size >= 4) {
        buf[0] = (uint8_t)(i >> 24);
        buf[1] = (uint8_t)(i >> 16);
        buf[2] = (uint8_t)(i >> 8);
        buf[3] = (uint8_t)i;
    }
}

static void finish(client *c, bool failed, const char *line)
{
    if (c->done) return;
    c->done = true;
    c->failed = failed;
    snprintf(c->line, sizeof c->line, "%s", line);
    pl_loop_stop(c->loop);
}

static void on_frame(void *ctx, pl_stream *s, const uint8_t *frame, size_t len, pl_time now)
{
    (void)s;
    client *c = ctx;
    if (!c->opened) {
        /* The first echo is the first proof the tunnel carries data. */
        c->opened = true;
        c->open_at = now;
    }
    static uint8_t want[PL_STREAM_MAX_FRAME];
    make_frame(want, c->size, c->got);
    if (len != c->size || memcmp(frame, want, len) != 0) {
        char l[128];
        snprintf(l, sizeof l, "fail mismatch errno=- detail=frame %zu came back wrong", c->got);
        finish(c, true, l);
        return;
    }
    c->got++;
    if (c->got == c->frames) {
        char l[160];
        snprintf(l, sizeof l, "ok frames=%zu bytes=%zu first-echo-ms=%.1f total-ms=%.1f", c->frames, c->size,
                 (double)(c->open_at - c->start) / 1000.0, (double)(now - c->start) / 1000.0);
        finish(c, false, l);
    }
}

static void on_close(void *ctx, pl_stream *s, int err)
{
    client *c = ctx;
    pl_proxy_err perr = pl_stream_proxy_error(s);
    char l[200];
    snprintf(l, sizeof l, "fail %s errno=%s detail=%s", err_word(perr), err ? strerrorname_np(err) : "0",
             perr ? pl_proxy_strerror(perr) : (err ? strerror(err) : "closed by the peer"));
    finish(c, true, l);
}

static void on_timeout(pl_loop *loop, void *ctx)
{
    (void)loop;
    finish(ctx, true, "fail timeout errno=- detail=no answer in time");
}

static int cmd_connect(int argc, char **argv)
{
    const char *url = NULL;
    pl_addr to;
    bool have_to = false;
    client c;
    memset(&c, 0, sizeof c);
    c.frames = 20;
    c.size = 1000;
    long timeout = 10;
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (strcmp(o, "--proxy") == 0) url = v;
        else if (strcmp(o, "--to") == 0) have_to = pl_addr_parse(&to, v, 0);
        else if (strcmp(o, "--frames") == 0) c.frames = (size_t)parse_long(v, 1, 100000);
        else if (strcmp(o, "--size") == 0) c.size = (size_t)parse_long(v, 4, PL_STREAM_MAX_FRAME);
        else if (strcmp(o, "--timeout") == 0) timeout = parse_long(v, 1, 600);
        else usage();
    }
    if (!url || !have_to) usage();
    c.loop = pl_loop_new();
    if (!c.loop) return 1;
    c.start = pl_loop_now(c.loop);
    pl_loop_err lerr;
    pl_stream *s;
    to.transport = PL_ADDR_TCP;
    if (strcmp(url, "none") == 0) {
        s = pl_stream_connect(c.loop, &to, &lerr);
    } else {
        pl_proxy_config cfg;
        if (pl_proxy_parse_url(&cfg, url) != PL_PROXY_OK) {
            fprintf(stderr, "pl_tunnel: bad proxy URL\n");
            return 2;
        }
        cfg.timeout = (pl_time)timeout * PL_SEC;
        s = pl_stream_connect_via_proxy(c.loop, &cfg, &to, NULL, &lerr);
        pl_proxy_config_wipe(&cfg);
    }
    if (!s) {
        printf("fail config errno=- detail=%s\n", pl_loop_strerror(lerr));
        return 1;
    }
    pl_stream_set_callbacks(s, on_frame, on_close, &c);
    /* Everything is queued at once: through a proxy the frames wait for the
     * tunnel (the output buffer holds PL_STREAM_OUT_CAP bytes). */
    static uint8_t frame[PL_STREAM_MAX_FRAME];
    for (size_t i = 0; i < c.frames; i++) {
        make_frame(frame, c.size, i);
        pl_loop_err e = pl_stream_send(s, frame, c.size);
        if (e != PL_LOOP_OK) {
            printf("fail stream errno=- detail=queueing frame %zu: %s\n", i, pl_loop_strerror(e));
            return 1;
        }
    }
    pl_timer t;
    pl_timer_init(&t, on_timeout, &c);
    pl_timer_set(c.loop, &t, c.start + (pl_time)timeout * PL_SEC);
    pl_loop_run(c.loop);
    pl_timer_cancel(c.loop, &t);
    printf("%s\n", c.line);
    pl_loop_free(c.loop);
    return c.failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    if (!pl_init()) return 1;
    if (argc < 2) usage();
    if (strcmp(argv[1], "echo") == 0) return cmd_echo(argc - 2, argv + 2);
    if (strcmp(argv[1], "connect") == 0) return cmd_connect(argc - 2, argv + 2);
    usage();
    return 2;
}
