/*
 * parley-relayd - pl_relay alone on the event loop: the relay a supernode
 * runs, as a process of its own, for benchmarks and lab tests until the
 * supernode daemon carries it.
 *
 *   parley-relayd --listen ADDR:PORT [--tcp-listen ADDR:PORT] [--control PATH]
 *                 [--max-allocations N] [--max-per-client N] [--pps N] [--bps N]
 *                 [--idle-s S] [--json]
 *
 * Datagrams that arrive on the UDP socket, and frames on accepted TCP
 * streams (u16 length + bytes, as pl_stream frames them), go to
 * pl_relay_forward; what it says to send goes out on the UDP socket in
 * batches (sendmmsg at the end of each wake-up), or on the stream of a TCP
 * side. Anything that is not relay framing is ignored: this process speaks
 * nothing else.
 *
 * Allocations: in the supernode they are made over a node's secure session
 * (RELAY_ALLOCATE). Here an operator (or a benchmark) makes them over the
 * control socket, one JSON object per line:
 *   {"cmd":"allocate","count":N}      -> {"ok":true,"allocations":[{"channel":C,
 *                                          "token_a":"hex","token_b":"hex"},...]}
 *   {"cmd":"stats"}                   -> the relay's counters
 *   {"cmd":"stop"}
 * count is at most 1000 per request. Prints "listening UDP-ADDR TCP-ADDR"
 * once ready, and its counters on SIGINT/SIGTERM or stop.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "keymap.h"
#include "loop.h"
#include "parley.h"
#include "relay.h"

#define MAX_CONTROL_CLIENTS 4
#define MAX_ALLOCATE_PER_REQUEST 1000

typedef struct conn {
    bool used;
    pl_stream *stream;
    pl_addr addr; /* TCP-marked */
} conn;

typedef struct control_client {
    int fd;
    size_t len;
    char buf[4096];
} control_client;

typedef struct relayd {
    pl_loop *loop;
    pl_relay *relay;
    pl_udp *udp;
    pl_listener *tcp;
    pl_addr udp_addr, tcp_addr;
    conn *conns;
    size_t n_conns;
    pl_keymap conn_by_addr;
    pl_timer tick;
    int sigfd;
    int control_fd;
    char control_path[108];
    control_client clients[MAX_CONTROL_CLIENTS];
    uint64_t not_relay, udp_send_refused, tcp_no_stream, tcp_send_refused, streams_accepted;
    bool json;
} relayd;

/* ---- streams ------------------------------------------------------------------------ */

static void addr_key(const pl_addr *a, uint8_t key[32])
{
    memset(key, 0, 32);
    key[0] = a->family;
    key[1] = a->transport;
    key[2] = (uint8_t)(a->port >> 8);
    key[3] = (uint8_t)a->port;
    memcpy(key + 4, a->ip, a->family == PL_AF_INET4 ? 4 : 16);
}

static conn *conn_find(relayd *d, const pl_addr *a)
{
    uint8_t key[32];
    uint32_t i;
    addr_key(a, key);
    return pl_keymap_get(&d->conn_by_addr, key, &i) ? &d->conns[i] : NULL;
}

static void conn_forget(relayd *d, conn *c)
{
    uint8_t key[32];
    addr_key(&c->addr, key);
    pl_keymap_remove(&d->conn_by_addr, key);
    memset(c, 0, sizeof *c);
}

/* ---- forwarding ------------------------------------------------------------------------ */

static void deliver(relayd *d, const pl_addr *to, const uint8_t *pkt, size_t len)
{
    if (to->transport != PL_ADDR_TCP) {
        if (pl_udp_send(d->udp, to, pkt, len) != PL_LOOP_OK) d->udp_send_refused++;
        return;
    }
    conn *c = conn_find(d, to);
    if (!c) {
        d->tcp_no_stream++;
        return;
    }
    if (pl_stream_send(c->stream, pkt, len) != PL_LOOP_OK) d->tcp_send_refused++;
}

static void relay_in(relayd *d, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    if (!pl_relay_is_framed(data, len) || len > PL_RELAY_MAX_PACKET) {
        d->not_relay++;
        return;
    }
    /* The core rewrites the token in place; the loop's buffer is not ours. */
    uint8_t pkt[PL_RELAY_MAX_PACKET];
    memcpy(pkt, data, len);
    size_t n = len;
    pl_addr to;
    if (pl_relay_forward(d->relay, from, pkt, &n, now, &to) == PL_RELAY_SEND) deliver(d, &to, pkt, n);
}

static void on_udp(void *ctx, pl_udp *sock, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    (void)sock;
    relay_in(ctx, from, data, len, now);
}

static void on_frame(void *ctx, pl_stream *s, const uint8_t *frame, size_t len, pl_time now)
{
    relayd *d = ctx;
    pl_addr from;
    if (!pl_stream_peer_addr(s, &from)) return;
    from.transport = PL_ADDR_TCP;
    relay_in(d, &from, frame, len, now);
}

static void on_stream_close(void *ctx, pl_stream *s, int err)
{
    relayd *d = ctx;
    (void)err;
    for (size_t i = 0; i < d->n_conns; i++)
        if (d->conns[i].used && d->conns[i].stream == s) conn_forget(d, &d->conns[i]);
}

static void on_accept(void *ctx, pl_listener *l, pl_stream *accepted, const pl_addr *peer)
{
    relayd *d = ctx;
    (void)l;
    pl_addr a = *peer;
    a.transport = PL_ADDR_TCP;
    conn *old = conn_find(d, &a);
    if (old) {
        pl_stream_close(old->stream, true);
        conn_forget(d, old);
    }
    size_t i;
    for (i = 0; i < d->n_conns && d->conns[i].used; i++) {
    }
    if (i == d->n_conns) {
        conn *grown = realloc(d->conns, (d->n_conns + 64) * sizeof *grown);
        if (!grown) {
            pl_stream_close(accepted, true);
            return;
        }
        memset(grown + d->n_conns, 0, 64 * sizeof *grown);
        d->conns = grown;
        d->n_conns += 64;
    }
    uint8_t key[32];
    addr_key(&a, key);
    if (!pl_keymap_put(&d->conn_by_addr, key, (uint32_t)i)) {
        pl_stream_close(accepted, true);
        return;
    }
    d->conns[i] = (conn){true, accepted, a};
    d->streams_accepted++;
    pl_stream_set_callbacks(accepted, on_frame, on_stream_close, d);
    pl_stream_set_max_frame(accepted, PL_RELAY_MAX_PACKET);
}

static void on_tick(pl_loop *loop, void *ctx)
{
    relayd *d = ctx;
    pl_time now = pl_loop_now(loop);
    pl_relay_tick(d->relay, now);
    pl_timer_set(loop, &d->tick, now + PL_RELAY_SWEEP_INTERVAL);
}

/* ---- statistics ---------------------------------------------------------------------------- */

static cJSON *stats_json(relayd *d)
{
    pl_relay_stats st = pl_relay_get_stats(d->relay);
    pl_udp_stats us;
    pl_udp_get_stats(d->udp, &us);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", true);
#define NUM(name, v) cJSON_AddNumberToObject(r, name, (double)(v))
    NUM("allocations", st.allocations);
    NUM("allocated", st.allocated);
    NUM("released", st.released);
    NUM("expired", st.expired);
    NUM("refused_full", st.refused_full);
    NUM("refused_client_limit", st.refused_client_limit);
    NUM("forwarded", st.forwarded);
    NUM("forwarded_bytes", st.forwarded_bytes);
    NUM("binds", st.binds);
    NUM("rebinds", st.rebinds);
    NUM("drop_malformed", st.drop_malformed);
    NUM("drop_channel", st.drop_channel);
    NUM("drop_token", st.drop_token);
    NUM("drop_source", st.drop_source);
    NUM("drop_expired", st.drop_expired);
    NUM("drop_rate", st.drop_rate);
    NUM("drop_unbound", st.drop_unbound);
    NUM("drop_rebind", st.drop_rebind);
    NUM("drop_self", st.drop_self);
    NUM("not_relay", d->not_relay);
    NUM("udp_received", us.received);
    NUM("udp_sent", us.sent);
    NUM("udp_send_full", us.send_full);
    NUM("udp_send_errors", us.send_errors);
    NUM("udp_send_refused", d->udp_send_refused);
    NUM("streams_accepted", d->streams_accepted);
    NUM("tcp_no_stream", d->tcp_no_stream);
    NUM("tcp_send_refused", d->tcp_send_refused);
#undef NUM
    return r;
}

static void print_stats(relayd *d)
{
    cJSON *r = stats_json(d);
    if (d->json) {
        cJSON_DeleteItemFromObject(r, "ok");
        cJSON_AddStringToObject(r, "event", "stats");
        char *text = cJSON_PrintUnformatted(r);
        printf("%s\n", text);
        free(text);
    } else {
        printf("stats");
        for (cJSON *it = r->child; it; it = it->next)
            if (cJSON_IsNumber(it)) printf(" %s=%.0f", it->string, it->valuedouble);
        printf("\n");
    }
    fflush(stdout);
    cJSON_Delete(r);
}

/* ---- the control socket -------------------------------------------------------------------- */

static cJSON *error_reply(const char *kind, const char *message)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", false);
    cJSON_AddStringToObject(r, "error", kind);
    cJSON_AddStringToObject(r, "message", message);
    return r;
}

static cJSON *cmd_allocate(relayd *d, const cJSON *req)
{
    const cJSON *count = cJSON_GetObjectItemCaseSensitive(req, "count");
    int n = cJSON_IsNumber(count) ? count->valueint : 1;
    if (n < 1 || n > MAX_ALLOCATE_PER_REQUEST) return error_reply("bad_request", "count must be 1..1000");
    /* The operator owns what it allocates here; the per-client limit still
     * applies to it (raise it with --max-per-client). */
    static const uint8_t operator_pk[32], peer_pk[32];
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", true);
    cJSON *arr = cJSON_AddArrayToObject(r, "allocations");
    pl_time now = pl_loop_now(d->loop);
    for (int i = 0; i < n; i++) {
        pl_relay_grant g = {0};
        pl_relay_status st = pl_relay_allocate_channel(d->relay, operator_pk, peer_pk, now, &g);
        if (st != PL_RELAY_OK) {
            cJSON_Delete(r);
            return error_reply("refused", pl_relay_status_name(st));
        }
        cJSON *o = cJSON_CreateObject();
        char hex[17];
        cJSON_AddNumberToObject(o, "channel", g.channel);
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)g.token_self);
        cJSON_AddStringToObject(o, "token_a", hex);
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)g.token_peer);
        cJSON_AddStringToObject(o, "token_b", hex);
        cJSON_AddItemToArray(arr, o);
    }
    return r;
}

static void control_write(control_client *c, cJSON *reply)
{
    char *text = cJSON_PrintUnformatted(reply);
    cJSON_Delete(reply);
    if (!text) return;
    size_t len = strlen(text), off = 0;
    text[len++] = '\n'; /* replaces the terminator; the length is what is sent */
    while (off < len) {
        ssize_t n = send(c->fd, text + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        off += (size_t)n;
    }
    free(text);
}

static void control_drop(relayd *d, control_client *c)
{
    pl_loop_unwatch_fd(d->loop, c->fd);
    close(c->fd);
    c->fd = -1;
    c->len = 0;
}

static void control_line(relayd *d, control_client *c, const char *line)
{
    cJSON *req = cJSON_Parse(line);
    const cJSON *cmd = req ? cJSON_GetObjectItemCaseSensitive(req, "cmd") : NULL;
    cJSON *reply;
    if (!cJSON_IsString(cmd)) {
        reply = error_reply("bad_request", "expected a JSON object with \"cmd\"");
    } else if (strcmp(cmd->valuestring, "allocate") == 0) {
        reply = cmd_allocate(d, req);
    } else if (strcmp(cmd->valuestring, "stats") == 0) {
        reply = stats_json(d);
    } else if (strcmp(cmd->valuestring, "stop") == 0) {
        pl_loop_stop(d->loop);
        reply = cJSON_CreateObject();
        cJSON_AddBoolToObject(reply, "ok", true);
    } else {
        reply = error_reply("unknown_command", cmd->valuestring);
    }
    cJSON_Delete(req);
    control_write(c, reply);
}

static void on_control_client(pl_loop *loop, int fd, unsigned events, void *ctx)
{
    relayd *d = ctx;
    (void)loop;
    (void)events;
    control_client *c = NULL;
    for (int i = 0; i < MAX_CONTROL_CLIENTS; i++)
        if (d->clients[i].fd == fd) c = &d->clients[i];
    if (!c) return;
    ssize_t n = recv(fd, c->buf + c->len, sizeof c->buf - 1 - c->len, MSG_DONTWAIT);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        control_drop(d, c);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = 0;
    char *nl;
    while ((nl = memchr(c->buf, '\n', c->len)) != NULL) {
        *nl = 0;
        control_line(d, c, c->buf);
        size_t used = (size_t)(nl - c->buf) + 1;
        memmove(c->buf, nl + 1, c->len - used);
        c->len -= used;
        c->buf[c->len] = 0;
    }
    if (c->len == sizeof c->buf - 1) control_drop(d, c); /* a line too long */
}

static void on_control_accept(pl_loop *loop, int fd, unsigned events, void *ctx)
{
    relayd *d = ctx;
    (void)events;
    /* Replies are written blocking (an allocation list can be long); the
     * reads are MSG_DONTWAIT. */
    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (cfd < 0) return;
    for (int i = 0; i < MAX_CONTROL_CLIENTS; i++) {
        if (d->clients[i].fd < 0) {
            d->clients[i].fd = cfd;
            d->clients[i].len = 0;
            pl_loop_watch_fd(loop, cfd, PL_FD_READ, on_control_client, d);
            return;
        }
    }
    close(cfd);
}

static bool open_control(relayd *d, const char *path)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) return false;
    strcpy(sa.sun_path, path);
    snprintf(d->control_path, sizeof d->control_path, "%s", path);
    unlink(path);
    d->control_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (d->control_fd < 0 || bind(d->control_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(d->control_fd, 4) != 0)
        return false;
    chmod(path, 0600);
    return pl_loop_watch_fd(d->loop, d->control_fd, PL_FD_READ, on_control_accept, d) == PL_LOOP_OK;
}

static void on_signal(pl_loop *loop, int fd, unsigned events, void *ctx)
{
    (void)events;
    (void)ctx;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
    }
    pl_loop_stop(loop);
}

/* ---- main -------------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: parley-relayd --listen ADDR:PORT [--tcp-listen ADDR:PORT] [--control PATH]\n"
            "                     [--max-allocations N] [--max-per-client N] [--pps N] [--bps N]\n"
            "                     [--idle-s S] [--json]\n"
            "Relays [0xF1][channel u32][token u64][datagram] between the two sides of each\n"
            "allocation (docs/paths.md). Allocations are made over the control socket.\n"
            "Prints 'listening UDP-ADDR TCP-ADDR' when ready; counters on SIGINT/SIGTERM.\n");
}

static bool parse_u32(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > UINT32_MAX) return false;
    *out = (uint32_t)v;
    return true;
}

int main(int argc, char **argv)
{
    if (!pl_init()) {
        fprintf(stderr, "parley-relayd: cannot initialise the crypto library\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    const char *listen = NULL, *tcp_listen = NULL, *control = NULL;
    pl_relay_config cfg = {.rng = pl_rng_system()};
    uint32_t idle_s = 0;
    relayd d;
    memset(&d, 0, sizeof d);
    d.control_fd = -1;
    for (int i = 0; i < MAX_CONTROL_CLIENTS; i++) d.clients[i].fd = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            d.json = true;
            continue;
        } else if (!v) {
            ok = false;
        } else if (strcmp(a, "--listen") == 0) {
            listen = v;
        } else if (strcmp(a, "--tcp-listen") == 0) {
            tcp_listen = v;
        } else if (strcmp(a, "--control") == 0) {
            control = v;
        } else if (strcmp(a, "--max-allocations") == 0) {
            ok = parse_u32(v, &cfg.max_allocations);
        } else if (strcmp(a, "--max-per-client") == 0) {
            ok = parse_u32(v, &cfg.max_per_client);
        } else if (strcmp(a, "--pps") == 0) {
            ok = parse_u32(v, &cfg.max_pps);
        } else if (strcmp(a, "--bps") == 0) {
            ok = parse_u32(v, &cfg.max_bps);
        } else if (strcmp(a, "--idle-s") == 0) {
            ok = parse_u32(v, &idle_s) && idle_s >= 1 && idle_s <= 3600;
        } else {
            ok = false;
        }
        if (!ok) {
            fprintf(stderr, "parley-relayd: bad option %s\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (!listen || !pl_addr_parse(&d.udp_addr, listen, 3478) ||
        (tcp_listen && !pl_addr_parse(&d.tcp_addr, tcp_listen, 3478))) {
        usage(stderr);
        return 2;
    }
    cfg.idle_timeout = (pl_time)idle_s * PL_SEC;

    d.loop = pl_loop_new();
    if (!d.loop) return 1;
    pl_loop_err le;
    d.udp = pl_udp_open(d.loop, &d.udp_addr, on_udp, &d, &le);
    if (!d.udp) {
        fprintf(stderr, "parley-relayd: cannot listen on %s: %s\n", listen, pl_loop_strerror(le));
        return 1;
    }
    pl_udp_local_addr(d.udp, &d.udp_addr);
    if (tcp_listen) {
        d.tcp = pl_stream_listen(d.loop, &d.tcp_addr, on_accept, &d, &le);
        if (!d.tcp) {
            fprintf(stderr, "parley-relayd: cannot listen on %s/tcp: %s\n", tcp_listen, pl_loop_strerror(le));
            return 1;
        }
        pl_listener_local_addr(d.tcp, &d.tcp_addr);
        d.tcp_addr.transport = PL_ADDR_TCP;
    }
    cfg.udp_addr = d.udp_addr;
    cfg.tcp_addr = d.tcp_addr;
    pl_relay_err re = pl_relay_new(&d.relay, &cfg);
    if (re) {
        fprintf(stderr, "parley-relayd: %s\n", pl_relay_strerror(re));
        return 2;
    }
    pl_keymap_init(&d.conn_by_addr, NULL, pl_rng_system());
    if (control && !open_control(&d, control)) {
        fprintf(stderr, "parley-relayd: cannot open the control socket %s: %s\n", control, strerror(errno));
        return 1;
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    d.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (d.sigfd < 0 || pl_loop_watch_fd(d.loop, d.sigfd, PL_FD_READ, on_signal, &d) != PL_LOOP_OK) {
        fprintf(stderr, "parley-relayd: cannot watch signals\n");
        return 1;
    }
    pl_timer_init(&d.tick, on_tick, &d);
    pl_timer_set(d.loop, &d.tick, pl_loop_now(d.loop) + PL_RELAY_SWEEP_INTERVAL);

    char ut[PL_ADDR_TEXT_MAX], tt[PL_ADDR_TEXT_MAX] = "none";
    pl_addr_format(&d.udp_addr, ut, sizeof ut);
    if (d.tcp) pl_addr_format(&d.tcp_addr, tt, sizeof tt);
    if (d.json) printf("{\"event\":\"listening\",\"udp\":\"%s\",\"tcp\":\"%s\"}\n", ut, tt);
    else printf("listening %s %s\n", ut, tt);
    fflush(stdout);

    pl_loop_run(d.loop);

    print_stats(&d);
    pl_timer_cancel(d.loop, &d.tick);
    pl_loop_unwatch_fd(d.loop, d.sigfd);
    close(d.sigfd);
    for (int i = 0; i < MAX_CONTROL_CLIENTS; i++)
        if (d.clients[i].fd >= 0) control_drop(&d, &d.clients[i]);
    if (d.control_fd >= 0) {
        pl_loop_unwatch_fd(d.loop, d.control_fd);
        close(d.control_fd);
        unlink(d.control_path);
    }
    pl_loop_free(d.loop);
    pl_relay_free(d.relay);
    pl_keymap_free(&d.conn_by_addr);
    free(d.conns);
    return 0;
}
