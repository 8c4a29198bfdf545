/* test_loop.c - the event loop on real loopback sockets: UDP batches, the
 * receive budget, timers, framed streams and their failure modes. Every test
 * frees what it made and checks that no descriptor was left open. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop.h"
#include "parley.h"
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

/* Turns the loop until *flag is set or ms milliseconds pass. */
static bool spin_until(pl_loop *loop, const int *flag, int ms)
{
    pl_time end = pl_loop_now(loop) + (pl_time)ms * PL_MSEC;
    while (!*flag && pl_loop_now(loop) < end) pl_loop_run_once(loop, 10);
    return *flag != 0;
}

/* ---- UDP ---------------------------------------------------------------------- */

typedef struct udp_peer {
    int got;
    bool echo;
    pl_addr last_from;
    uint8_t last[PL_UDP_MAX_DATAGRAM];
    size_t last_len;
    uint8_t seen[256];
    int done; /* set when `want` datagrams arrived */
    int want;
} udp_peer;

static void udp_recv(void *ctx, pl_udp *sock, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    udp_peer *p = ctx;
    p->got++;
    p->last_from = *from;
    memcpy(p->last, data, len);
    p->last_len = len;
    if (len >= 1) p->seen[data[0]]++;
    if (p->echo) pl_udp_send(sock, from, data, len);
    if (p->got >= p->want) p->done = 1;
}

static bool udp_ping_pong(const char *bind_text)
{
    pl_loop *loop = pl_loop_new();
    CHECK(loop);
    udp_peer a = {.want = 1}, b = {.want = 1, .echo = true};
    pl_addr bind_addr = addr(bind_text);
    pl_loop_err err;
    pl_udp *ua = pl_udp_open(loop, &bind_addr, udp_recv, &a, &err);
    if (!ua && err == PL_LOOP_ERR_ADDRESS) {
        pl_loop_free(loop);
        return false;
    }
    CHECK(ua);
    pl_udp *ub = pl_udp_open(loop, &bind_addr, udp_recv, &b, &err);
    CHECK(ub);
    pl_addr la, lb;
    CHECK(pl_udp_local_addr(ua, &la) && pl_udp_local_addr(ub, &lb));
    CHECK(la.port != 0 && lb.port != 0 && la.port != lb.port);
    CHECK_EQ(pl_udp_send(ua, &lb, (const uint8_t *)"hello", 5), PL_LOOP_OK);
    CHECK(spin_until(loop, &a.done, 2000));
    CHECK_EQ(b.got, 1);
    CHECK(pl_addr_equal(&b.last_from, &la));
    CHECK(pl_addr_equal(&a.last_from, &lb));
    CHECK(a.last_len == 5 && memcmp(a.last, "hello", 5) == 0);
    /* Wrong family, too big. */
    pl_addr other = addr(bind_addr.family == PL_AF_INET4 ? "[::1]:9" : "127.0.0.1:9");
    CHECK_EQ(pl_udp_send(ua, &other, (const uint8_t *)"x", 1), PL_LOOP_ERR_ADDRESS);
    static uint8_t big[PL_UDP_MAX_DATAGRAM + 1];
    CHECK_EQ(pl_udp_send(ua, &lb, big, sizeof big), PL_LOOP_ERR_TOO_BIG);
    pl_udp_close(ua);
    pl_udp_close(ub);
    pl_loop_free(loop);
    return true;
}

static void udp_exchanges_datagrams_v4_and_v6(void)
{
    int fds = count_fds();
    CHECK(udp_ping_pong("127.0.0.1:0"));
    if (!udp_ping_pong("[::1]:0")) printf("  note: IPv6 loopback unavailable, skipped the ::1 half\n");
    CHECK_EQ(count_fds(), fds);
}

/* ---- deferred reading ------------------------------------------------------------ */

typedef struct deferred_rx {
    int got;
    pl_time at[4];
    bool timer_fired, all_before_timer;
    pl_time timer_now;
} deferred_rx;

static void deferred_recv(void *ctx, pl_udp *sock, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    (void)sock, (void)from, (void)data, (void)len;
    deferred_rx *r = ctx;
    if (r->timer_fired) r->all_before_timer = false;
    if (r->got < 4) r->at[r->got] = now;
    r->got++;
}

static void deferred_timer(pl_loop *loop, void *ctx)
{
    deferred_rx *r = ctx;
    r->timer_fired = true;
    r->timer_now = pl_loop_now(loop);
}

/* A deferred socket does not wake the loop: its datagram waits for the next
 * wake-up (here a timer 15 ms later), comes first in it, and carries the
 * time it arrived, not the time it was read. With nothing else to wake the
 * loop it still wakes within PL_UDP_DEFER_MAX_MS; undeferred, a datagram
 * wakes it at once again. */
static void deferred_socket_is_read_at_the_next_wake_up(void)
{
    int fds = count_fds();
    pl_loop *loop = pl_loop_new();
    deferred_rx r = {.all_before_timer = true};
    pl_addr any = addr("127.0.0.1:0");
    pl_udp *rx = pl_udp_open(loop, &any, deferred_recv, &r, NULL);
    pl_udp *tx = pl_udp_open(loop, &any, NULL, NULL, NULL);
    CHECK(rx && tx);
    pl_addr to;
    CHECK(pl_udp_local_addr(rx, &to));
    CHECK(!pl_udp_deferred(rx));
    pl_udp_set_deferred(rx, true);
    CHECK(pl_udp_deferred(rx));

    pl_timer t;
    pl_timer_init(&t, deferred_timer, &r);
    /* The kernel turns receive timestamps on in the background (a deferred
     * static-key switch, done by a kernel worker); a datagram that comes in
     * before that is stamped when it is read. Wait for it, up to 2 s: a
     * datagram read 5 ms after it was sent says so. */
    bool stamping = false;
    for (int i = 0; i < 100 && !stamping; i++) {
        CHECK_EQ(pl_udp_send(tx, &to, (const uint8_t *)"p", 1), PL_LOOP_OK);
        pl_udp_flush(tx);
        pl_timer_set(loop, &t, pl_loop_now(loop) + 5 * PL_MSEC);
        while (!r.timer_fired) pl_loop_run_once(loop, -1);
        stamping = r.got > 0 && r.at[0] + 3 * PL_MSEC <= r.timer_now;
        r = (deferred_rx){.all_before_timer = true};
        pl_loop_run_once(loop, 10);
    }
    CHECK(stamping);
    pl_loop_run_once(loop, 0);
    pl_time before = pl_loop_now(loop);
    CHECK_EQ(pl_udp_send(tx, &to, (const uint8_t *)"a", 1), PL_LOOP_OK);
    pl_udp_flush(tx);
    pl_timer_set(loop, &t, before + 15 * PL_MSEC);
    pl_loop_run_once(loop, -1);
    pl_time woke = pl_loop_now(loop);
    printf("  slept %.1f ms through the datagram; it arrived %.1f ms before the wake-up\n",
           (double)(woke - before) / PL_MSEC, (double)(woke - r.at[0]) / PL_MSEC);
    CHECK(woke - before >= 14 * PL_MSEC); /* the datagram did not end the wait */
    CHECK_EQ(r.got, 1);
    CHECK(r.timer_fired && r.all_before_timer);
    CHECK(r.at[0] >= before);                   /* never before the last wake-up */
    CHECK(r.at[0] + 10 * PL_MSEC <= r.timer_now); /* when it arrived, not when it was read */

    /* Nothing armed: the loop wakes by itself to read it. */
    CHECK_EQ(pl_udp_send(tx, &to, (const uint8_t *)"b", 1), PL_LOOP_OK);
    pl_udp_flush(tx);
    before = pl_loop_now(loop);
    pl_loop_run_once(loop, 2000);
    CHECK_EQ(r.got, 2);
    CHECK(pl_loop_now(loop) - before < 1000 * PL_MSEC);

    /* Undeferred: the datagram ends the wait, long before the timer. */
    pl_udp_set_deferred(rx, false);
    CHECK(!pl_udp_deferred(rx));
    r.timer_fired = false;
    before = pl_loop_now(loop);
    pl_timer_set(loop, &t, before + 2 * PL_SEC);
    CHECK_EQ(pl_udp_send(tx, &to, (const uint8_t *)"c", 1), PL_LOOP_OK);
    pl_udp_flush(tx);
    pl_loop_run_once(loop, -1);
    CHECK_EQ(r.got, 3);
    CHECK(!r.timer_fired);
    CHECK(pl_loop_now(loop) - before < PL_SEC);

    /* Closing a deferred socket takes it off the loop's list. */
    pl_udp_set_deferred(rx, true);
    pl_udp_close(rx);
    pl_loop_run_once(loop, 0);
    pl_timer_cancel(loop, &t);
    pl_udp_close(tx);
    pl_loop_free(loop);
    CHECK_EQ(count_fds(), fds);
}

static void udp_batch_of_200_all_arrive(void)
{
    int fds = count_fds();
    pl_loop *loop = pl_loop_new();
    udp_peer rx = {.want = 200}, tx = {.want = 1};
    pl_addr any = addr("127.0.0.1:0");
    pl_udp *a = pl_udp_open(loop, &any, udp_recv, &tx, NULL);
    pl_udp *b = pl_udp_open(loop, &any, udp_recv, &rx, NULL);
    CHECK(a && b);
    pl_addr to;
    CHECK(pl_udp_local_addr(b, &to));
    uint8_t msg[100];
    for (int i = 0; i < 200; i++) {
        memset(msg, i, sizeof msg);
        CHECK_EQ(pl_udp_send(a, &to, msg, sizeof msg), PL_LOOP_OK);
    }
    pl_udp_flush(a);
    pl_udp_stats st;
    pl_udp_get_stats(a, &st);
    CHECK_EQ(st.sent, 200);
    CHECK(spin_until(loop, &rx.done, 2000));
    CHECK_EQ(rx.got, 200);
    for (int i = 0; i < 200; i++) CHECK_EQ(rx.seen[i], 1);
    pl_udp_get_stats(b, &st);
    CHECK_EQ(st.received, 200);
    pl_udp_close(a);
    pl_udp_close(b);
    pl_loop_free(loop);
    CHECK_EQ(count_fds(), fds);
}

/* ---- timers ------------------------------------------------------------------------ */

typedef struct timer_log {
    int order[32];
    int n;
    pl_timer t[6];
    int rearms;
} timer_log;

typedef struct timer_ref {
    timer_log *log;
    int id;
} timer_ref;

static timer_ref refs[6];

static void timer_fired(pl_loop *loop, void *ctx)
{
    timer_ref *r = ctx;
    timer_log *log = r->log;
    log->order[log->n++] = r->id;
    if (r->id == 0) pl_timer_cancel(loop, &log->t[4]); /* cancels a timer due later */
    if (r->id == 1 && log->rearms++ < 2) pl_timer_set(loop, &log->t[1], pl_loop_now(loop)); /* itself */
    if (r->id == 2) {
        /* Cancels itself (already fired: harmless) and re-arms timer 5. */
        pl_timer_cancel(loop, &log->t[2]);
        pl_timer_set(loop, &log->t[5], pl_loop_now(loop) + 1000 * PL_SEC);
        pl_timer_set(loop, &log->t[5], pl_loop_now(loop) + 2 * PL_MSEC);
    }
}

static void timers_fire_in_order_and_may_rearm_or_cancel(void)
{
    int fds = count_fds();
    pl_loop *loop = pl_loop_new();
    static timer_log log;
    memset(&log, 0, sizeof log);
    for (int i = 0; i < 6; i++) {
        refs[i].log = &log;
        refs[i].id = i;
        pl_timer_init(&log.t[i], timer_fired, &refs[i]);
    }
    pl_time base = pl_loop_now(loop) + 5 * PL_MSEC;
    /* Armed in the order 3, 0, 1, 2 at one time; 4 later. Same due time ->
     * arming order. */
    pl_timer_set(loop, &log.t[3], base);
    pl_timer_set(loop, &log.t[0], base);
    pl_timer_set(loop, &log.t[1], base);
    pl_timer_set(loop, &log.t[2], base);
    pl_timer_set(loop, &log.t[4], base + 2 * PL_MSEC);
    CHECK(log.t[0].heap_index != SIZE_MAX);
    /* Re-arming 3 for the same time moves it behind the others. */
    pl_timer_set(loop, &log.t[3], base);
    /* Arming PL_TIME_NEVER disarms. */
    pl_timer_set(loop, &log.t[5], base);
    pl_timer_set(loop, &log.t[5], PL_TIME_NEVER);
    CHECK(log.t[5].heap_index == SIZE_MAX);

    pl_time end = base + 200 * PL_MSEC;
    while (pl_loop_now(loop) < end && log.n < 7) pl_loop_run_once(loop, 50);
    /* 0,1,2,3 at base; 1 re-armed itself twice (each runs in the next
     * wake-up); 4 was cancelled by 0; 5 armed by 2. */
    int want[] = {0, 1, 2, 3, 1, 1, 5};
    CHECK_EQ(log.n, 7);
    for (int i = 0; i < 7; i++) CHECK_EQ(log.order[i], want[i]);
    CHECK(log.t[4].heap_index == SIZE_MAX);
    /* Time never went backwards, and nothing is left armed. */
    pl_time prev = pl_loop_now(loop);
    for (int i = 0; i < 50; i++) {
        pl_loop_run_once(loop, 0);
        CHECK(pl_loop_now(loop) >= prev);
        prev = pl_loop_now(loop);
    }
    CHECK_EQ(log.n, 7);
    pl_loop_free(loop);
    CHECK_EQ(count_fds(), fds);
}

/* ---- the receive budget --------------------------------------------------------------- */

typedef struct budget_ctx {
    int flood_got, quiet_got;
    int flood_when_quiet; /* flood datagrams seen when the quiet one arrived */
    int flood_when_timer;
    int timer_fired;
} budget_ctx;

static void flood_recv(void *ctx, pl_udp *s, const pl_addr *from, const uint8_t *d, size_t len, pl_time now)
{
    ((budget_ctx *)ctx)->flood_got++;
}
static void quiet_recv(void *ctx, pl_udp *s, const pl_addr *from, const uint8_t *d, size_t len, pl_time now)
{
    budget_ctx *b = ctx;
    b->quiet_got++;
    b->flood_when_quiet = b->flood_got;
}
static void budget_timer(pl_loop *loop, void *ctx)
{
    budget_ctx *b = ctx;
    b->timer_fired = 1;
    b->flood_when_timer = b->flood_got;
}

static void busy_socket_does_not_starve_others_or_timers(void)
{
    int fds = count_fds();
    pl_loop *loop = pl_loop_new();
    budget_ctx b;
    memset(&b, 0, sizeof b);
    pl_addr any = addr("127.0.0.1:0");
    pl_udp *flood = pl_udp_open(loop, &any, flood_recv, &b, NULL);
    pl_udp *quiet = pl_udp_open(loop, &any, quiet_recv, &b, NULL);
    pl_udp *sender = pl_udp_open(loop, &any, NULL, NULL, NULL);
    CHECK(flood && quiet && sender);
    pl_addr fa, qa;
    CHECK(pl_udp_local_addr(flood, &fa) && pl_udp_local_addr(quiet, &qa));
    /* 2000 datagrams into the flooded socket's kernel queue (flushed batch by
     * batch, outside the loop), then one for the quiet socket. */
    uint8_t msg[32] = {0};
    for (int i = 0; i < 2000; i++) {
        CHECK_EQ(pl_udp_send(sender, &fa, msg, sizeof msg), PL_LOOP_OK);
        if (i % PL_UDP_SEND_BATCH == 0) pl_udp_flush(sender);
    }
    pl_udp_flush(sender);
    CHECK_EQ(pl_udp_send(sender, &qa, msg, sizeof msg), PL_LOOP_OK);
    pl_udp_flush(sender);
    pl_udp_stats st;
    pl_udp_get_stats(sender, &st);
    CHECK_EQ(st.sent, 2001);
    pl_timer t;
    pl_timer_init(&t, budget_timer, &b);
    pl_timer_set(loop, &t, pl_loop_now(loop));

    pl_loop_run_once(loop, 0);
    /* One wake-up: the quiet socket and the timer were served, and the flood
     * got exactly its share. */
    CHECK_EQ(b.quiet_got, 1);
    CHECK(b.timer_fired);
    CHECK_EQ(b.flood_got, PL_LOOP_RECV_BUDGET);
    CHECK(b.flood_when_quiet <= PL_LOOP_RECV_BUDGET);
    CHECK(b.flood_when_timer <= PL_LOOP_RECV_BUDGET);
    /* The rest arrives over the next turns. */
    for (int i = 0; i < 100 && b.flood_got < 2000; i++) pl_loop_run_once(loop, 10);
    CHECK_EQ(b.flood_got, 2000);
    pl_udp_close(flood);
    pl_udp_close(quiet);
    pl_udp_close(sender);
    pl_loop_free(loop);
    CHECK_EQ(count_fds(), fds);
}

/* ---- streams ---------------------------------------------------------------------------- */

typedef struct side {
    pl_stream *s;
    int frames;
    size_t lens[8];
    bool intact[8];
    int closed;
    int close_err;
    bool echo;
    size_t max_frame;
    pl_stream *victim; /* closed from this side's frame callback */
} side;

static bool pattern_ok(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != (uint8_t)(i * 7 + len)) return false;
    return true;
}

static void fill_pattern(uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) p[i] = (uint8_t)(i * 7 + len);
}

static void side_frame(void *ctx, pl_stream *s, const uint8_t *frame, size_t len, pl_time now)
{
    side *d = ctx;
    if (d->frames < 8) {
        d->lens[d->frames] = len;
        d->intact[d->frames] = pattern_ok(frame, len);
    }
    d->frames++;
    if (d->echo) pl_stream_send(s, frame, len);
    if (d->victim) {
        pl_stream_close(d->victim, true);
        d->victim = NULL;
    }
}

static void side_close(void *ctx, pl_stream *s, int err)
{
    side *d = ctx;
    d->closed = 1;
    d->close_err = err;
    d->s = NULL;
}

typedef struct server {
    side sides[4];
    int accepted;
} server;

static void on_accept(void *ctx, pl_listener *l, pl_stream *s, const pl_addr *peer)
{
    server *srv = ctx;
    CHECK(srv->accepted < 4);
    side *d = &srv->sides[srv->accepted++];
    d->s = s;
    pl_stream_set_callbacks(s, side_frame, side_close, d);
    if (d->max_frame) pl_stream_set_max_frame(s, d->max_frame);
}

static pl_listener *listen_local(pl_loop *loop, server *srv, pl_addr *where)
{
    pl_addr any = addr("127.0.0.1:0");
    pl_loop_err err;
    pl_listener *l = pl_stream_listen(loop, &any, on_accept, srv, &err);
    CHECK(l);
    CHECK(pl_listener_local_addr(l, where));
    return l;
}

static void streams_carry_frames_of_0_1_and_65535_bytes(void)
{
    int fds = count_fds();
    pl_loop *loop = pl_loop_new();
    static server srv;
    memset(&srv, 0, sizeof srv);
    srv.sides[0].echo = true;
    pl_addr where;
    pl_listener *l = listen_local(loop, &srv, &where);
    static side cli;
    memset(&cli, 0, sizeof cli);
    pl_loop_err err;
    cli.s = pl_stream_connect(loop, &where, &err);
    CHECK(cli.s);
    pl_stream_set_callbacks(cli.s, side_frame, side_close, &cli);
    static uint8_t buf[65535];
    size_t sizes[3] = {0, 1, 65535};
    for (int i = 0; i < 3; i++) {
        fill_pattern(buf, sizes[i]);
        CHECK_EQ(pl_stream_send(cli.s, buf, sizes[i]), PL_LOOP_OK); /* queued while connecting */
    }
    CHECK_EQ(pl_stream_send(cli.s, buf, 65536), PL_LOOP_ERR_TOO_BIG);
    pl_time end = pl_loop_now(loop) + 3 * PL_SEC;
    while (cli.frames < 3 && pl_loop_now(loop) < end) pl_loop_run_once(loop, 10);
    CHECK_EQ(srv.accepted, 1);
    CHECK_EQ(srv.sides[0].frames, 3);
    CHECK_EQ(cli.frames, 3);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(srv.sides[0].lens[i], sizes[i]);
        CHECK(srv.sides[0].intact[i]);
        CHECK_EQ(cli.lens[i], sizes[i]);
        CHECK(cli.intact[i]);
    }
    pl_addr peer;
    CHECK(pl_stream_peer_addr(srv.sides[0].s, &peer) && peer.family == PL_AF_INET4);
    /* A graceful close by the client: the server hears an orderly end. */
    fill_pattern(buf, 10);
    CHECK_EQ(pl_stream_send(cli.s, buf, 10), PL_LOOP_OK);
    pl_stream_close(cli.s, false);
    CHECK(spin_until(loop, &srv.sides[0].closed, 2000));
    CHECK_EQ(srv.sides[0].frames, 4); /* the last frame went out before the FIN */
    CHECK_EQ(srv.sides[0].close_err, 0);
    CHECK(!cli.closed); /* no callback for a close the owner asked for */
    pl_listener_close(l);
    pl_loop_free(loop);
    CHECK_EQ(count_fds(), fds);
}

/* A host with several addresses speaks TCP from the one it chose. */
static void a_stream_can_connect_from_a_chosen_address(void)
{
    int fds = count_fds();
    pl_loop *loop = pl_loop_new();
    static server srv;
    memset(&srv, 0, sizeof srv);
    pl_addr where;
    pl_listener *l = listen_local(loop, &srv, &where);
    static side cli;
    memset(&cli, 0, sizeof cli);
    pl_addr from = addr("127.0.0.5:9"); /* the port is ignored */
    cli.s = pl_stream_connect_from(loop, &where, &from, NULL);
    CHECK(cli.s);
    pl_stream_set_callbacks(cli.s, side_frame, side_close, &cli);
    pl_time end = pl_loop_now(loop) + 2 * PL_SEC;
    while (srv.accepted < 1 && pl_loop_now(loop) < end) pl_loop_run_once(loop, 10);
    CHECK_EQ(srv.accepted, 1);
    pl_addr peer, expect = addr("127.0.0.5:0");
    CHECK(pl_stream_peer_addr(srv.sides[0].s, &peer));
    CHECK(pl_addr_same_host(&peer, &expect) && peer.port != 9);
    /* An address this host does not have is refused at once. */
    pl_addr foreign = addr("192.0.2.1:0");
    pl_loop_err err;
    CHECK(pl_stream_connect_from(loop, &where, &foreign, &err) == NULL);
    CHECK_EQ(err, PL_LOOP_ERR_ADDRESS);
    pl_stream_close(cli.s, true);
    pl_listener_close(l);
    pl_loop_free(loop);
    CHECK_EQ(count_fds(), fds);
}

static int raw_connect(const pl_addr *to)
{
    struct sockaddr_storage ss;
    socklen_t len;
    CHECK(pl_sockaddr_from_addr(to, &ss, &len));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    CHECK(connect(fd, (struct sockaddr *)&ss, len) == 0);
    return fd;
}

static void oversized_or_cut_short_input_closes_the_stream(void)
{
    int fds = count_fds();
    pl_loop *loop = pl_loop_new();
    static server srv;
    memset(&srv, 0, sizeof srv);
    srv.sides[0].max_frame = 1000;
    srv.sides[1].max_frame = 1000;
    pl_addr where;
    pl_listener *l = listen_local(loop, &srv, &where);

    /* A frame within the limit, then a length beyond it. */
    int fd = raw_connect(&where);
    uint8_t ok[5] = {0, 3, 'a', 'b', 'c'};
    uint8_t bad[2] = {0x07, 0xd0}; /* 2000 */
    CHECK(write(fd, ok, sizeof ok) == (ssize_t)sizeof ok);
    CHECK(write(fd, bad, sizeof bad) == (ssize_t)sizeof bad);
    CHECK(spin_until(loop, &srv.sides[0].closed, 2000));
    CHECK_EQ(srv.sides[0].frames, 1);
    CHECK_EQ(srv.sides[0].close_err, EMSGSIZE);
    close(fd);

    /* Half a frame, then the peer goes away. */
    fd = raw_connect(&where);
    uint8_t half[4] = {0, 10, 1, 2};
    CHECK(write(fd, half, sizeof half) == (ssize_t)sizeof half);
    close(fd);
    CHECK(spin_until(loop, &srv.sides[1].closed, 2000));
    CHECK_EQ(srv.sides[1].close_err, EPROTO);

    pl_listener_close(l);
    pl_loop_free(loop);
    CHECK_EQ(count_fds(), fds);
}

static void connect_to_a_closed_port_reports_econnrefused(void)
{
    int fds = count_fds();
    pl_loop *loop = pl_loop_new();
    /* Find a free port, then make sure nobody listens on it. */
    static server srv;
    memset(&srv, 0, sizeof srv);
    pl_addr where;
    pl_listener *l = listen_local(loop, &srv, &where);
    pl_listener_close(l);
    static side cli;
    memset(&cli, 0, sizeof cli);
    pl_loop_err err;
    cli.s = pl_stream_connect(loop, &where, &err);
    CHECK(cli.s);
    CHECK_EQ(err, PL_LOOP_OK);
    pl_stream_set_callbacks(cli.s, side_frame, side_close, &cli);
    CHECK_EQ(pl_stream_send(cli.s, (const uint8_t *)"x", 1), PL_LOOP_OK);
    CHECK(spin_until(loop, &cli.closed, 2000));
    CHECK_EQ(cli.close_err, ECONNREFUSED);
    pl_loop_free(loop);
    CHECK_EQ(count_fds(), fds);
}

static void output_cap_refuses_with_full(void)
{
    int fds = count_fds();
    pl_loop *loop = pl_loop_new();
    static server srv;
    memset(&srv, 0, sizeof srv);
    pl_addr where;
    pl_listener *l = listen_local(loop, &srv, &where);
    pl_stream *s = pl_stream_connect(loop, &where, NULL);
    CHECK(s);
    static uint8_t buf[65535];
    fill_pattern(buf, sizeof buf);
    /* Output is written at the end of a wake-up, so before one, the cap is
     * exact: three 65537-byte frames fit in 256 KiB, a fourth does not. */
    int accepted = 0;
    pl_loop_err e;
    while ((e = pl_stream_send(s, buf, sizeof buf)) == PL_LOOP_OK) accepted++;
    CHECK_EQ(e, PL_LOOP_ERR_FULL);
    CHECK_EQ(accepted, PL_STREAM_OUT_CAP / (2 + 65535));
    /* A smaller frame that still fits is taken. */
    size_t room = PL_STREAM_OUT_CAP - (size_t)accepted * (2 + 65535) - 2;
    static uint8_t last[65535];
    fill_pattern(last, room);
    CHECK_EQ(pl_stream_send(s, last, room), PL_LOOP_OK);
    CHECK_EQ(pl_stream_send(s, buf, 0), PL_LOOP_ERR_FULL);
    /* Once it drains, the server has every frame. */
    pl_time end = pl_loop_now(loop) + 3 * PL_SEC;
    while (srv.sides[0].frames < accepted + 1 && pl_loop_now(loop) < end) pl_loop_run_once(loop, 10);
    CHECK_EQ(srv.sides[0].frames, accepted + 1);
    CHECK(srv.sides[0].intact[0] && srv.sides[0].intact[accepted]);
    CHECK_EQ(pl_stream_send(s, buf, sizeof buf), PL_LOOP_OK);
    pl_stream_close(s, true);
    pl_listener_close(l);
    pl_loop_free(loop);
    CHECK_EQ(count_fds(), fds);
}

static void callbacks_may_close_other_streams_mid_dispatch(void)
{
    int fds = count_fds();
    pl_loop *loop = pl_loop_new();
    static server srv;
    memset(&srv, 0, sizeof srv);
    pl_addr where;
    pl_listener *l = listen_local(loop, &srv, &where);
    static side c1, c2;
    memset(&c1, 0, sizeof c1);
    memset(&c2, 0, sizeof c2);
    c1.s = pl_stream_connect(loop, &where, NULL);
    c2.s = pl_stream_connect(loop, &where, NULL);
    CHECK(c1.s && c2.s);
    pl_stream_set_callbacks(c1.s, side_frame, side_close, &c1);
    pl_stream_set_callbacks(c2.s, side_frame, side_close, &c2);
    pl_time end = pl_loop_now(loop) + 2 * PL_SEC;
    while (srv.accepted < 2 && pl_loop_now(loop) < end) pl_loop_run_once(loop, 10);
    CHECK_EQ(srv.accepted, 2);
    /* Whichever client hears first closes the other: both are readable in
     * the same wake-up, so the second one's event is already in hand. */
    c1.victim = c2.s;
    c2.victim = c1.s;
    uint8_t b[3];
    fill_pattern(b, 3);
    CHECK_EQ(pl_stream_send(srv.sides[0].s, b, 3), PL_LOOP_OK);
    CHECK_EQ(pl_stream_send(srv.sides[1].s, b, 3), PL_LOOP_OK);
    pl_loop_run_once(loop, 0); /* writes both */
    usleep(20000);
    pl_loop_run_once(loop, 100);
    CHECK_EQ(c1.frames + c2.frames, 1);
    CHECK(!c1.closed && !c2.closed);
    /* The survivor also closes itself from inside its own callback. */
    side *alive = c1.frames ? &c1 : &c2;
    alive->victim = alive->s;
    /* The server side of the aborted client may already have seen its end
     * (side_close clears .s); the other one sends the last frame. */
    for (int i = 0; i < 2; i++)
        if (srv.sides[i].s && !srv.sides[i].closed) pl_stream_send(srv.sides[i].s, b, 3);
    end = pl_loop_now(loop) + 2 * PL_SEC;
    while ((srv.sides[0].closed + srv.sides[1].closed) < 2 && pl_loop_now(loop) < end) pl_loop_run_once(loop, 10);
    CHECK_EQ(srv.sides[0].closed + srv.sides[1].closed, 2);
    CHECK_EQ(alive->frames, 2);
    pl_listener_close(l);
    pl_loop_free(loop);
    CHECK_EQ(count_fds(), fds);
}

/* ---- raw descriptors ---------------------------------------------------------------------- */

typedef struct pipe_ctx {
    int hits;
    unsigned events;
} pipe_ctx;

static void pipe_ready(pl_loop *loop, int fd, unsigned events, void *ctx)
{
    pipe_ctx *p = ctx;
    p->hits++;
    p->events = events;
    char c;
    if (read(fd, &c, 1) != 1) return;
    pl_loop_unwatch_fd(loop, fd); /* from inside its own callback */
}

static void fd_watchers_report_and_unwatch(void)
{
    int fds = count_fds();
    pl_loop *loop = pl_loop_new();
    int p[2];
    CHECK(pipe(p) == 0);
    pipe_ctx pc = {0, 0};
    CHECK_EQ(pl_loop_watch_fd(loop, p[0], PL_FD_READ, pipe_ready, &pc), PL_LOOP_OK);
    CHECK_EQ(pl_loop_watch_fd(loop, p[0], PL_FD_READ, pipe_ready, &pc), PL_LOOP_ERR_IN_USE);
    CHECK_EQ(pl_loop_modify_fd(loop, p[0], PL_FD_READ), PL_LOOP_OK);
    pl_loop_run_once(loop, 0);
    CHECK_EQ(pc.hits, 0);
    CHECK(write(p[1], "ab", 2) == 2);
    pl_loop_run_once(loop, 100);
    CHECK_EQ(pc.hits, 1);
    CHECK(pc.events & PL_FD_READ);
    pl_loop_run_once(loop, 0); /* one byte left, but no longer watched */
    CHECK_EQ(pc.hits, 1);
    /* A watcher still registered at pl_loop_free is released, not closed. */
    CHECK_EQ(pl_loop_watch_fd(loop, p[1], PL_FD_WRITE, pipe_ready, &pc), PL_LOOP_OK);
    pl_loop_free(loop);
    close(p[0]);
    close(p[1]);
    CHECK_EQ(count_fds(), fds);
}

static void loop_free_closes_what_is_still_open(void)
{
    int fds = count_fds();
    pl_loop *loop = pl_loop_new();
    static server srv;
    memset(&srv, 0, sizeof srv);
    pl_addr where;
    listen_local(loop, &srv, &where);
    pl_stream *s = pl_stream_connect(loop, &where, NULL);
    CHECK(s);
    CHECK_EQ(pl_stream_send(s, (const uint8_t *)"abc", 3), PL_LOOP_OK);
    pl_addr any = addr("127.0.0.1:0");
    pl_udp *u = pl_udp_open(loop, &any, NULL, NULL, NULL);
    CHECK(u);
    CHECK_EQ(pl_udp_send(u, &where, (const uint8_t *)"abc", 3), PL_LOOP_OK);
    for (int i = 0; i < 5; i++) pl_loop_run_once(loop, 10);
    pl_timer t;
    pl_timer_init(&t, budget_timer, NULL);
    pl_timer_set(loop, &t, pl_loop_now(loop) + PL_SEC);
    pl_loop_free(loop); /* listener, both streams, the socket */
    CHECK(t.heap_index == SIZE_MAX);
    CHECK_EQ(count_fds(), fds);
}

int main(void)
{
    RUN(udp_exchanges_datagrams_v4_and_v6);
    RUN(udp_batch_of_200_all_arrive);
    RUN(deferred_socket_is_read_at_the_next_wake_up);
    RUN(timers_fire_in_order_and_may_rearm_or_cancel);
    RUN(busy_socket_does_not_starve_others_or_timers);
    RUN(streams_carry_frames_of_0_1_and_65535_bytes);
    RUN(a_stream_can_connect_from_a_chosen_address);
    RUN(oversized_or_cut_short_input_closes_the_stream);
    RUN(connect_to_a_closed_port_reports_econnrefused);
    RUN(output_cap_refuses_with_full);
    RUN(callbacks_may_close_other_streams_mid_dispatch);
    RUN(fd_watchers_report_and_unwatch);
    RUN(loop_free_closes_what_is_still_open);
    return pl_test_summary();
}
