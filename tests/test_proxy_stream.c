/* test_proxy_stream.c - framed streams through an outgoing proxy
 * (pl_stream_connect_via_proxy in src/io/loop.c) on real loopback sockets,
 * against a scripted proxy that speaks raw bytes on the same loop. It makes
 * the cases real proxies rarely show: the tunnel's first frame in the same
 * segment as the proxy's reply, replies dribbled a byte at a time, a proxy
 * that hangs up or never answers, frames queued before the tunnel opens
 * (they must not leak into the handshake), the owner giving up mid-way. The
 * real proxies (tinyproxy, danted, microsocks) are in tests/proxy.test.sh. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop.h"
#include "parley.h"
#include "proxy.h"
#include "sockaddr.h"
#include "test.h"

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static pl_addr addr(const char *text)
{
    pl_addr a;
    if (!pl_addr_parse(&a, text, 0)) memset(&a, 0, sizeof a);
    return a;
}

/* ---- the scripted proxy --------------------------------------------------------------
 * One listening socket and one accepted connection, raw bytes, on the
 * test's loop. It collects the client's bytes; once the handshake request
 * it waits for is whole it sends the scripted reply (all at once, or one
 * byte per wake-up), and after that, if told to, echoes every byte: a tunnel
 * to an echo server. */

enum { SCRIPT_HTTP = 1, SCRIPT_SOCKS_NOAUTH, SCRIPT_SOCKS_AUTH };

typedef struct fake {
    pl_loop *loop;
    int lfd, cfd;
    int script;
    const uint8_t *reply; /* sent when the request is whole; NULL: never answer */
    size_t reply_len, reply_sent;
    size_t limit;         /* how much of the reply the requests so far have earned */
    bool dribble;         /* one byte per wake-up */
    bool hang_up;         /* close right after the reply (or at once when reply is NULL and this is set) */
    bool echo;            /* after the reply, echo everything */
    uint8_t got[4096];
    size_t got_len;
    size_t request_len;   /* where the handshake request ended; 0 until it did */
    size_t extra_at_request; /* bytes already beyond the request when it became whole */
    bool peer_closed;
    bool drip_armed;
    pl_timer drip;
} fake;

/* Where the request the script waits for ends in got[], or 0. */
static size_t request_end(const fake *f)
{
    if (f->script == SCRIPT_HTTP) {
        for (size_t i = 3; i < f->got_len; i++)
            if (memcmp(f->got + i - 3, "\r\n\r\n", 4) == 0) return i + 1;
        return 0;
    }
    /* SOCKS5: greeting (2 + n), [auth 1+1+u+1+p], connect (10 for IPv4). */
    size_t off = 0;
    if (f->got_len < 2) return 0;
    off = 2 + (size_t)f->got[1];
    if (f->script == SCRIPT_SOCKS_AUTH) {
        if (f->got_len < off + 2) return 0;
        size_t u = f->got[off + 1];
        if (f->got_len < off + 2 + u + 1) return 0;
        size_t p = f->got[off + 2 + u];
        off += 3 + u + p;
    }
    off += 10;
    return f->got_len >= off ? off : 0;
}

static void fake_send_some(fake *f)
{
    size_t upto = f->limit < f->reply_len ? f->limit : f->reply_len;
    while (f->reply && f->reply_sent < upto) {
        size_t n = f->dribble ? 1 : upto - f->reply_sent;
        ssize_t w = send(f->cfd, f->reply + f->reply_sent, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        f->reply_sent += (size_t)w;
        if (f->dribble) {
            f->drip_armed = true;
            pl_timer_set(f->loop, &f->drip, pl_loop_now(f->loop) + PL_MSEC);
            return;
        }
    }
    if (f->hang_up && f->reply_sent == f->reply_len) {
        pl_loop_unwatch_fd(f->loop, f->cfd);
        close(f->cfd);
        f->cfd = -1;
    }
}

static void fake_drip(pl_loop *loop, void *ctx)
{
    (void)loop;
    fake *f = ctx;
    f->drip_armed = false;
    if (f->cfd >= 0) fake_send_some(f);
}

/* The SOCKS5 script answers each step as it comes, as a real server must. */
static size_t socks_step_end(const fake *f, size_t step)
{
    size_t greet = f->got_len >= 2 ? 2 + (size_t)f->got[1] : 0;
    if (step == 0) return greet && f->got_len >= greet ? greet : 0;
    if (f->script == SCRIPT_SOCKS_AUTH && step == 1) {
        if (f->got_len < greet + 2) return 0;
        size_t u = f->got[greet + 1];
        if (f->got_len < greet + 3 + u) return 0;
        size_t end = greet + 3 + u + f->got[greet + 2 + u];
        return f->got_len >= end ? end : 0;
    }
    return request_end(f);
}

static void fake_conn(pl_loop *loop, int fd, unsigned events, void *ctx)
{
    (void)loop;
    (void)events;
    fake *f = ctx;
    uint8_t buf[2048];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            f->peer_closed = true;
            pl_loop_unwatch_fd(f->loop, fd);
            close(fd);
            f->cfd = -1;
        }
        return;
    }
    if (f->request_len && f->echo) {
        send(fd, buf, (size_t)n, MSG_NOSIGNAL);
    }
    if (f->got_len + (size_t)n <= sizeof f->got) {
        memcpy(f->got + f->got_len, buf, (size_t)n);
        f->got_len += (size_t)n;
    }
    if (f->request_len) return;
    if (f->script != SCRIPT_HTTP) {
        /* The SOCKS5 replies are scripted as one byte string; each request
         * earns its part: the method choice (2 bytes), the auth status (2),
         * then the CONNECT reply (the rest). */
        size_t steps = f->script == SCRIPT_SOCKS_AUTH ? 3 : 2;
        size_t cut[3] = {2, steps == 3 ? 4 : f->reply_len, f->reply_len};
        for (size_t st = 0; st < steps; st++) {
            size_t end = socks_step_end(f, st);
            if (!end) break;
            if (f->limit < cut[st]) f->limit = cut[st];
            if (st == steps - 1) {
                f->request_len = end;
                f->extra_at_request = f->got_len - end;
            }
        }
        if (f->reply && !f->drip_armed) fake_send_some(f);
        return;
    }
    size_t end = request_end(f);
    if (!end) return;
    f->request_len = end;
    f->extra_at_request = f->got_len - end;
    f->limit = f->reply_len;
    if (f->reply) fake_send_some(f);
    else if (f->hang_up) {
        pl_loop_unwatch_fd(f->loop, fd);
        close(fd);
        f->cfd = -1;
    }
}

static void fake_accept(pl_loop *loop, int fd, unsigned events, void *ctx)
{
    (void)events;
    fake *f = ctx;
    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) return;
    if (f->cfd >= 0) {
        close(c);
        return;
    }
    f->cfd = c;
    pl_loop_watch_fd(loop, c, PL_FD_READ, fake_conn, f);
}

static pl_addr fake_start(fake *f, pl_loop *loop, int script, const void *reply, size_t reply_len)
{
    memset(f, 0, sizeof *f);
    f->loop = loop;
    f->cfd = -1;
    f->script = script;
    f->reply = reply;
    f->reply_len = reply_len;
    pl_timer_init(&f->drip, fake_drip, f);
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(listen(f->lfd, 4) == 0);
    socklen_t len = sizeof sa;
    CHECK(getsockname(f->lfd, (struct sockaddr *)&sa, &len) == 0);
    CHECK_EQ(pl_loop_watch_fd(loop, f->lfd, PL_FD_READ, fake_accept, f), PL_LOOP_OK);
    pl_addr a;
    pl_sockaddr_to_addr((struct sockaddr *)&sa, &a);
    return a;
}

static void fake_stop(fake *f)
{
    pl_timer_cancel(f->loop, &f->drip);
    if (f->cfd >= 0) {
        pl_loop_unwatch_fd(f->loop, f->cfd);
        close(f->cfd);
    }
    pl_loop_unwatch_fd(f->loop, f->lfd);
    close(f->lfd);
}

/* ---- the client side ------------------------------------------------------------------------ */

typedef struct owner {
    int frames;
    char text[8][64];
    int closed;
    int err;
    pl_proxy_err proxy_err;
} owner;

static void on_frame(void *ctx, pl_stream *s, const uint8_t *frame, size_t len, pl_time now)
{
    (void)s;
    (void)now;
    owner *o = ctx;
    if (o->frames < 8) {
        size_t n = len < 63 ? len : 63;
        memcpy(o->text[o->frames], frame, n);
        o->text[o->frames][n] = '\0';
    }
    o->frames++;
}

static void on_close(void *ctx, pl_stream *s, int err)
{
    owner *o = ctx;
    o->closed++;
    o->err = err;
    o->proxy_err = pl_stream_proxy_error(s);
}

static pl_stream *connect_via(pl_loop *loop, pl_proxy_kind kind, const pl_addr *server, const char *user,
                              const char *pass, pl_time timeout, owner *o)
{
    pl_proxy_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.kind = kind;
    cfg.server = *server;
    cfg.timeout = timeout;
    if (user) {
        cfg.auth = true;
        snprintf(cfg.user, sizeof cfg.user, "%s", user);
        snprintf(cfg.pass, sizeof cfg.pass, "%s", pass);
    }
    pl_addr target = addr("203.0.113.50:4000");
    pl_loop_err err;
    pl_stream *s = pl_stream_connect_via_proxy(loop, &cfg, &target, NULL, &err);
    pl_proxy_config_wipe(&cfg);
    CHECK(s != NULL);
    CHECK_EQ(err, PL_LOOP_OK);
    memset(o, 0, sizeof *o);
    pl_stream_set_callbacks(s, on_frame, on_close, o);
    return s;
}

static void spin(pl_loop *loop, bool (*done)(const void *), const void *arg, int ms)
{
    pl_time end = pl_loop_now(loop) + (pl_time)ms * PL_MSEC;
    while (!done(arg) && pl_loop_now(loop) < end) pl_loop_run_once(loop, 5);
}
static bool two_frames(const void *o) { return ((const owner *)o)->frames >= 2 || ((const owner *)o)->closed; }
static bool three_frames(const void *o) { return ((const owner *)o)->frames >= 3 || ((const owner *)o)->closed; }
static bool closed(const void *o) { return ((const owner *)o)->closed > 0; }
static bool peer_gone(const void *f) { return ((const fake *)f)->peer_closed; }

static void test_http_reply_and_frame_in_one_segment(void)
{
    int fds = count_fds();
    pl_loop *loop = pl_loop_new();
    fake f;
    static const char reply[] = "HTTP/1.1 200 Connection established\r\n\r\n\x00\x05hello";
    pl_addr at = fake_start(&f, loop, SCRIPT_HTTP, reply, sizeof reply - 1);
    f.echo = true;
    owner o;
    pl_stream *s = connect_via(loop, PL_PROXY_HTTP, &at, "alice", "pw", 0, &o);
    pl_addr peer;
    CHECK(pl_stream_peer_addr(s, &peer));
    char b[PL_ADDR_TEXT_MAX];
    CHECK(strcmp(pl_addr_format(&peer, b, sizeof b), "203.0.113.50:4000/tcp") == 0);
    /* Queued before the tunnel exists. */
    CHECK_EQ(pl_stream_send(s, (const uint8_t *)"early", 5), PL_LOOP_OK);
    spin(loop, two_frames, &o, 2000);
    CHECK_EQ(o.closed, 0);
    CHECK_EQ(o.frames, 2);
    CHECK(strcmp(o.text[0], "hello") == 0); /* came with the reply */
    CHECK(strcmp(o.text[1], "early") == 0); /* echoed through the tunnel */
    CHECK_EQ(pl_stream_proxy_error(s), PL_PROXY_OK);
    /* The request went alone: the early frame only after the proxy answered. */
    CHECK(f.request_len > 0);
    CHECK_EQ(f.extra_at_request, 0);
    CHECK(memcmp(f.got, "CONNECT 203.0.113.50:4000 HTTP/1.1\r\n", 36) == 0);
    CHECK(memmem(f.got, f.request_len, "Proxy-Authorization: Basic YWxpY2U6cHc=\r\n", 41) != NULL);
    CHECK(memcmp(f.got + f.request_len, "\x00\x05" "early", 7) == 0);
    /* And more frames both ways afterwards. */
    CHECK_EQ(pl_stream_send(s, (const uint8_t *)"late", 4), PL_LOOP_OK);
    spin(loop, three_frames, &o, 2000);
    CHECK(strcmp(o.text[2], "late") == 0);
    pl_stream_close(s, false);
    fake_stop(&f);
    pl_loop_free(loop);
    CHECK_EQ(count_fds(), fds);
}

static void test_socks_auth_dribbled(void)
{
    int fds = count_fds();
    pl_loop *loop = pl_loop_new();
    fake f;
    /* Method "user/pass", auth OK, CONNECT OK with an IPv6 bound address. */
    static const uint8_t reply[] = {5, 2, 1, 0, 5, 0, 0, 4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80};
    pl_addr at = fake_start(&f, loop, SCRIPT_SOCKS_AUTH, reply, sizeof reply);
    f.dribble = true;
    f.echo = true;
    owner o;
    pl_stream *s = connect_via(loop, PL_PROXY_SOCKS5, &at, "alice", "s3cret", 0, &o);
    CHECK_EQ(pl_stream_send(s, (const uint8_t *)"one", 3), PL_LOOP_OK);
    CHECK_EQ(pl_stream_send(s, (const uint8_t *)"two", 3), PL_LOOP_OK);
    spin(loop, two_frames, &o, 3000);
    CHECK_EQ(o.closed, 0);
    CHECK_EQ(o.frames, 2);
    CHECK(strcmp(o.text[0], "one") == 0 && strcmp(o.text[1], "two") == 0);
    CHECK_EQ(f.extra_at_request, 0);
    CHECK(memcmp(f.got, "\x05\x02\x00\x02\x01\x05" "alice\x06" "s3cret\x05\x01\x00\x01\xcb\x00\x71\x32\x0f\xa0", 28) == 0);
    pl_stream_close(s, true);
    fake_stop(&f);
    pl_loop_free(loop);
    CHECK_EQ(count_fds(), fds);
}

/* One failing handshake: what the owner hears. */
static void expect_failure(int script, pl_proxy_kind kind, const void *reply, size_t len, bool hang_up, const char *user,
                           pl_time timeout, int want_errno, pl_proxy_err want)
{
    int fds = count_fds();
    pl_loop *loop = pl_loop_new();
    fake f;
    pl_addr at = fake_start(&f, loop, script, reply, len);
    f.hang_up = hang_up;
    f.echo = true;
    owner o;
    pl_stream *s = connect_via(loop, kind, &at, user, user ? "wrong" : NULL, timeout, &o);
    CHECK_EQ(pl_stream_send(s, (const uint8_t *)"never", 5), PL_LOOP_OK);
    spin(loop, closed, &o, 3000);
    CHECK_EQ(o.closed, 1);
    CHECK_EQ(o.err, want_errno);
    CHECK_EQ(o.proxy_err, want);
    CHECK_EQ(o.frames, 0);
    /* The frame never reached the proxy. */
    CHECK(memmem(f.got, f.got_len, "never", 5) == NULL);
    fake_stop(&f);
    pl_loop_free(loop);
    CHECK_EQ(count_fds(), fds);
}

static void test_failures(void)
{
    static const char forbidden[] = "HTTP/1.0 403 Access violation\r\n\r\n";
    expect_failure(SCRIPT_HTTP, PL_PROXY_HTTP, forbidden, sizeof forbidden - 1, false, NULL, 0, ECONNREFUSED,
                   PL_PROXY_ERR_REFUSED);
    static const char auth[] = "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n";
    expect_failure(SCRIPT_HTTP, PL_PROXY_HTTP, auth, sizeof auth - 1, false, "alice", 0, EACCES,
                   PL_PROXY_ERR_AUTH_FAILED);
    static const char garbage[] = "SSH-2.0-OpenSSH_9.2\r\n\r\n";
    expect_failure(SCRIPT_HTTP, PL_PROXY_HTTP, garbage, sizeof garbage - 1, false, NULL, 0, EPROTO,
                   PL_PROXY_ERR_BAD_REPLY);
    /* Half a reply, then the proxy hangs up. */
    static const char half[] = "HTTP/1.1 200 Connection est";
    expect_failure(SCRIPT_HTTP, PL_PROXY_HTTP, half, sizeof half - 1, true, NULL, 0, ECONNRESET, PL_PROXY_ERR_CLOSED);
    /* No answer at all: the deadline. */
    expect_failure(SCRIPT_HTTP, PL_PROXY_HTTP, NULL, 0, false, NULL, 300 * PL_MSEC, ETIMEDOUT, PL_PROXY_ERR_TIMEOUT);
    /* SOCKS5: wrong credentials; a rule set that forbids the target. */
    static const uint8_t bad_auth[] = {5, 2, 1, 1};
    expect_failure(SCRIPT_SOCKS_AUTH, PL_PROXY_SOCKS5, bad_auth, sizeof bad_auth, false, "alice", 0, EACCES,
                   PL_PROXY_ERR_AUTH_FAILED);
    static const uint8_t not_allowed[] = {5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0};
    expect_failure(SCRIPT_SOCKS_NOAUTH, PL_PROXY_SOCKS5, not_allowed, sizeof not_allowed, false, NULL, 0,
                   ECONNREFUSED, PL_PROXY_ERR_REFUSED);
    static const uint8_t host_unreachable[] = {5, 0, 5, 4, 0, 1, 0, 0, 0, 0, 0, 0};
    expect_failure(SCRIPT_SOCKS_NOAUTH, PL_PROXY_SOCKS5, host_unreachable, sizeof host_unreachable, false, NULL, 0,
                   EHOSTUNREACH, PL_PROXY_ERR_TARGET);
    static const uint8_t no_method[] = {5, 0xff};
    expect_failure(SCRIPT_SOCKS_NOAUTH, PL_PROXY_SOCKS5, no_method, sizeof no_method, false, NULL, 0, EACCES,
                   PL_PROXY_ERR_AUTH_REQUIRED);
}

static void test_no_proxy_listening(void)
{
    int fds = count_fds();
    pl_loop *loop = pl_loop_new();
    /* A port nobody listens on: bind one, close it. */
    int tmp = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(tmp, (struct sockaddr *)&sa, sizeof sa) == 0);
    socklen_t len = sizeof sa;
    CHECK(getsockname(tmp, (struct sockaddr *)&sa, &len) == 0);
    close(tmp);
    pl_addr at;
    pl_sockaddr_to_addr((struct sockaddr *)&sa, &at);
    owner o;
    pl_stream *s = connect_via(loop, PL_PROXY_SOCKS5, &at, NULL, NULL, 0, &o);
    (void)s;
    spin(loop, closed, &o, 2000);
    CHECK_EQ(o.closed, 1);
    CHECK_EQ(o.err, ECONNREFUSED);
    CHECK_EQ(o.proxy_err, PL_PROXY_ERR_CONNECT);
    pl_loop_free(loop);
    CHECK_EQ(count_fds(), fds);
}

static void test_owner_gives_up_and_bad_config(void)
{
    int fds = count_fds();
    pl_loop *loop = pl_loop_new();
    fake f;
    pl_addr at = fake_start(&f, loop, SCRIPT_HTTP, NULL, 0); /* never answers */
    owner o;
    pl_stream *s = connect_via(loop, PL_PROXY_HTTP, &at, NULL, NULL, 0, &o);
    CHECK_EQ(pl_stream_send(s, (const uint8_t *)"x", 1), PL_LOOP_OK);
    pl_time end = pl_loop_now(loop) + 2 * PL_SEC;
    while (!f.request_len && pl_loop_now(loop) < end) pl_loop_run_once(loop, 5);
    CHECK(f.request_len > 0);
    /* Closing before the tunnel opens drops the stream at once, silently. */
    pl_stream_close(s, false);
    spin(loop, peer_gone, &f, 2000);
    CHECK(f.peer_closed);
    CHECK_EQ(o.closed, 0);
    fake_stop(&f);

    /* A configuration the handshake refuses: nothing is opened. */
    pl_proxy_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.kind = PL_PROXY_SOCKS5;
    cfg.server = at;
    cfg.auth = true; /* SOCKS5 credentials need both parts */
    pl_addr target = addr("203.0.113.50:4000");
    pl_loop_err err;
    CHECK(pl_stream_connect_via_proxy(loop, &cfg, &target, NULL, &err) == NULL);
    CHECK_EQ(err, PL_LOOP_ERR_ADDRESS);
    cfg.kind = PL_PROXY_HTTP;
    pl_addr nowhere;
    memset(&nowhere, 0, sizeof nowhere);
    CHECK(pl_stream_connect_via_proxy(loop, &cfg, &nowhere, NULL, &err) == NULL);
    CHECK_EQ(err, PL_LOOP_ERR_ADDRESS);
    pl_loop_free(loop);
    CHECK_EQ(count_fds(), fds);
}

static void test_direct_streams_report_no_proxy_error(void)
{
    pl_loop *loop = pl_loop_new();
    pl_addr to = addr("127.0.0.1:9");
    pl_loop_err err;
    pl_stream *s = pl_stream_connect(loop, &to, &err);
    CHECK(s != NULL);
    CHECK_EQ(pl_stream_proxy_error(s), PL_PROXY_OK);
    pl_stream_close(s, true);
    pl_loop_free(loop);
}

int main(void)
{
    RUN(test_http_reply_and_frame_in_one_segment);
    RUN(test_socks_auth_dribbled);
    RUN(test_failures);
    RUN(test_no_proxy_listening);
    RUN(test_owner_gives_up_and_bad_config);
    RUN(test_direct_streams_report_no_proxy_error);
    return pl_test_summary();
}
