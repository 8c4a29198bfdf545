/*
 * pl_portmap - asks the home router for a port mapping through src/io/portmap.c
 * and listens on the mapped socket, for tests/portmap.test.sh.
 *
 *   pl_portmap --bind ADDR:PORT [--protocol natpmp|upnp|any] [--lifetime S]
 *              [--timeout MS] [--external PORT] [--exact] [--retry S]
 *              [--hold S] [--release-wait S]
 *
 * Binds the UDP socket, prints "bound LOCAL", starts the port mapping and
 * prints one line per event:
 *
 *   mapped PROTO EXTERNAL lifetime=S took-ms=T private=0|1 code=C
 *   renewed PROTO EXTERNAL lifetime=S took-ms=T
 *   failed ERR proto=PROTO code=C took-ms=T detail=WORDS...
 *   lost ERR EXTERNAL
 *   released ERR took-ms=T
 *
 * (ERR: no-router, refused, conflict, no-resources, not-connected, bad-reply,
 * expired, system, config, or ok.) Every datagram that arrives on the socket
 * is printed as "recv FROM PAYLOAD" and answered with "echo PAYLOAD". --hold
 * seconds (default 5) after the first "mapped" or "failed" (or 60 s after
 * the start if neither came) it releases the mapping, waits for "released"
 * (at most --release-wait seconds, default 5) and exits: status 0 when a
 * mapping was had, 1 otherwise. Its last line is "loop max-lateness-ms=N":
 * the longest a 10 ms timer on the loop fired late, which stays small while
 * the router is being asked (the libraries block on the worker thread, never
 * on the loop). SIGKILL leaves the mapping for the lease to end, which is
 * how a test shows leases run out.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loop.h"
#include "parley.h"
#include "portmap.h"

typedef struct app {
    pl_loop *loop;
    pl_udp *sock;
    pl_portmap *pm;
    bool mapped_once;
    bool first_event;
    bool released;
    pl_timer tick;
    pl_time tick_due;
    pl_time max_late;
} app;

#define TICK (10 * PL_MSEC)

/* A timer that re-arms itself: how late it fires is how long the loop was
 * kept from its work. */
static void on_tick(pl_loop *loop, void *ctx)
{
    app *a = ctx;
    pl_time now = pl_loop_now(loop);
    if (now > a->tick_due && now - a->tick_due > a->max_late) a->max_late = now - a->tick_due;
    a->tick_due = now + TICK;
    pl_timer_set(loop, &a->tick, a->tick_due);
}

static void usage(void)
{
    fprintf(stderr, "usage: pl_portmap --bind ADDR:PORT [--protocol natpmp|upnp|any] [--lifetime S] [--timeout MS]\n"
                    "                  [--external PORT] [--exact] [--retry S] [--hold S] [--release-wait S]\n");
    exit(2);
}

static long parse_long(const char *text, long min, long max)
{
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if (!end || *end || v < min || v > max) usage();
    return v;
}

static const char *err_word(pl_portmap_err e)
{
    switch (e) {
    case PL_PORTMAP_OK: return "ok";
    case PL_PORTMAP_ERR_NO_ROUTER: return "no-router";
    case PL_PORTMAP_ERR_REFUSED: return "refused";
    case PL_PORTMAP_ERR_CONFLICT: return "conflict";
    case PL_PORTMAP_ERR_NO_RESOURCES: return "no-resources";
    case PL_PORTMAP_ERR_NOT_CONNECTED: return "not-connected";
    case PL_PORTMAP_ERR_BAD_REPLY: return "bad-reply";
    case PL_PORTMAP_ERR_EXPIRED: return "expired";
    case PL_PORTMAP_ERR_SYSTEM: return "system";
    case PL_PORTMAP_ERR_CONFIG: return "config";
    }
    return "unknown";
}

static void on_event(void *ctx, pl_portmap *pm, const pl_portmap_status *st)
{
    (void)pm;
    app *a = ctx;
    char ext[PL_ADDR_TEXT_MAX];
    pl_addr_format(&st->external, ext, sizeof ext);
    const char *proto = pl_portmap_protocol_name(st->protocol);
    if (st->event == PL_PORTMAP_EV_MAPPED || st->event == PL_PORTMAP_EV_FAILED) a->first_event = true;
    unsigned long took = (unsigned long)(st->took / PL_MSEC);
    switch (st->event) {
    case PL_PORTMAP_EV_MAPPED:
        a->mapped_once = true;
        printf("mapped %s %s lifetime=%u took-ms=%lu private=%d code=%d\n", proto, ext, (unsigned)st->lifetime, took,
               st->external_private ? 1 : 0, st->code);
        break;
    case PL_PORTMAP_EV_RENEWED:
        printf("renewed %s %s lifetime=%u took-ms=%lu\n", proto, ext, (unsigned)st->lifetime, took);
        break;
    case PL_PORTMAP_EV_FAILED:
        printf("failed %s proto=%s code=%d took-ms=%lu detail=%s\n", err_word(st->err), proto, st->code, took,
               st->detail);
        break;
    case PL_PORTMAP_EV_LOST: printf("lost %s %s\n", err_word(st->err), ext); break;
    case PL_PORTMAP_EV_RELEASED:
        a->released = true;
        printf("released %s took-ms=%lu detail=%s\n", err_word(st->err), took, st->detail);
        break;
    }
}

static void on_datagram(void *ctx, pl_udp *sock, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    (void)ctx;
    (void)now;
    char f[PL_ADDR_TEXT_MAX], text[256];
    size_t n = len < sizeof text - 1 ? len : sizeof text - 1;
    for (size_t i = 0; i < n; i++) text[i] = (data[i] >= 0x21 && data[i] < 0x7f) ? (char)data[i] : '.';
    text[n] = '\0';
    printf("recv %s %s\n", pl_addr_format(from, f, sizeof f), text);
    uint8_t reply[300];
    size_t rl = (size_t)snprintf((char *)reply, sizeof reply, "echo %s", text);
    pl_udp_send(sock, from, reply, rl);
}

int main(int argc, char **argv)
{
    pl_portmap_config cfg;
    memset(&cfg, 0, sizeof cfg);
    bool have_bind = false;
    long hold = 5, release_wait = 5;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(o, "--exact") == 0) {
            cfg.exact_port = true;
            continue;
        }
        if (!v) usage();
        i++;
        if (strcmp(o, "--bind") == 0) {
            if (!pl_addr_parse(&cfg.internal, v, 0)) usage();
            have_bind = true;
        } else if (strcmp(o, "--protocol") == 0) {
            if (strcmp(v, "natpmp") == 0) cfg.protocols = PL_PORTMAP_NATPMP;
            else if (strcmp(v, "upnp") == 0) cfg.protocols = PL_PORTMAP_UPNP;
            else if (strcmp(v, "any") == 0) cfg.protocols = 0;
            else usage();
        } else if (strcmp(o, "--lifetime") == 0) {
            cfg.lifetime = (uint32_t)parse_long(v, 1, 604800);
        } else if (strcmp(o, "--timeout") == 0) {
            cfg.timeout = (pl_time)parse_long(v, 1, 60000) * PL_MSEC;
        } else if (strcmp(o, "--external") == 0) {
            cfg.external_port = (uint16_t)parse_long(v, 1, 65535);
        } else if (strcmp(o, "--retry") == 0) {
            cfg.retry = (pl_time)parse_long(v, 1, 86400) * PL_SEC;
        } else if (strcmp(o, "--hold") == 0) {
            hold = parse_long(v, 0, 86400);
        } else if (strcmp(o, "--release-wait") == 0) {
            release_wait = parse_long(v, 0, 600);
        } else {
            usage();
        }
    }
    if (!have_bind) usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    if (!pl_init()) return 1;

    app a;
    memset(&a, 0, sizeof a);
    a.loop = pl_loop_new();
    if (!a.loop) return 1;
    pl_loop_err lerr;
    a.sock = pl_udp_open(a.loop, &cfg.internal, on_datagram, &a, &lerr);
    if (!a.sock) {
        fprintf(stderr, "pl_portmap: cannot bind: %s\n", pl_loop_strerror(lerr));
        return 1;
    }
    pl_udp_local_addr(a.sock, &cfg.internal);
    char b[PL_ADDR_TEXT_MAX];
    printf("bound %s\n", pl_addr_format(&cfg.internal, b, sizeof b));

    pl_portmap_err perr;
    a.pm = pl_portmap_new(a.loop, &cfg, on_event, &a, &perr);
    if (!a.pm) {
        fprintf(stderr, "pl_portmap: %s\n", pl_portmap_strerror(perr));
        return 1;
    }
    pl_timer_init(&a.tick, on_tick, &a);
    a.tick_due = pl_loop_now(a.loop) + TICK;
    pl_timer_set(a.loop, &a.tick, a.tick_due);
    pl_time end = pl_loop_now(a.loop) + 60 * PL_SEC;
    while (!a.first_event && pl_loop_now(a.loop) < end) pl_loop_run_once(a.loop, 100);
    end = pl_loop_now(a.loop) + (pl_time)hold * PL_SEC;
    while (pl_loop_now(a.loop) < end) pl_loop_run_once(a.loop, 100);
    pl_portmap_release(a.pm);
    end = pl_loop_now(a.loop) + (pl_time)release_wait * PL_SEC;
    while (!a.released && pl_loop_now(a.loop) < end) pl_loop_run_once(a.loop, 100);
    pl_timer_cancel(a.loop, &a.tick);
    printf("loop max-lateness-ms=%lu\n", (unsigned long)(a.max_late / PL_MSEC));
    pl_portmap_free(a.pm);
    pl_loop_free(a.loop);
    return a.mapped_once ? 0 : 1;
}
