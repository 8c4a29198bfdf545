/*
 * loop.h - the event loop that drives the sans-I/O cores for real.
 *
 * One thread, epoll, a binary heap of timers, UDP sockets with batched
 * receive (recvmmsg) and send (sendmmsg), and framed TCP streams. Work per
 * wake-up is capped per socket so one busy socket cannot starve the others
 * or the timers: a socket that still has datagrams after its share is simply
 * served again on the next turn (epoll is level-triggered).
 *
 * Time: pl_loop_now() is the time of the current wake-up in microseconds
 * since the Unix epoch (CLOCK_REALTIME), never going backwards.
 */
#ifndef PL_LOOP_H
#define PL_LOOP_H

#include "parley.h"
#include "proxy.h"

typedef struct pl_loop pl_loop;

/* Datagrams read per socket per wake-up before moving on. */
#define PL_LOOP_RECV_BUDGET 256
/* Datagrams queued per socket before a send batch is flushed. */
#define PL_UDP_SEND_BATCH 64
/* Datagrams a socket holds while the kernel says EAGAIN; pl_udp_send refuses
 * more with PL_LOOP_ERR_FULL. */
#define PL_UDP_SEND_QUEUE (4 * PL_UDP_SEND_BATCH)
#define PL_UDP_MAX_DATAGRAM 1500

typedef enum pl_loop_err {
    PL_LOOP_OK = 0,
    PL_LOOP_ERR_SYSTEM,    /* a system call failed; errno says which */
    PL_LOOP_ERR_ADDRESS,   /* bad or unsupported address */
    PL_LOOP_ERR_IN_USE,    /* the address is taken */
    PL_LOOP_ERR_FULL,      /* a bounded queue is full; the data was not taken */
    PL_LOOP_ERR_TOO_BIG,
} pl_loop_err;
const char *pl_loop_strerror(pl_loop_err err);

pl_loop *pl_loop_new(void);
/* Closes every socket and stream still open and frees the loop. */
void pl_loop_free(pl_loop *loop);
pl_time pl_loop_now(const pl_loop *loop);
/* Runs until pl_loop_stop(). */
void pl_loop_run(pl_loop *loop);
/* One wake-up: waits at most max_wait_ms (or until the next timer), serves
 * what is ready, flushes queued sends. A negative max_wait_ms waits for as
 * long as it takes. Callbacks must not call pl_loop_run, pl_loop_run_once or
 * pl_loop_free. */
void pl_loop_run_once(pl_loop *loop, int max_wait_ms);
void pl_loop_stop(pl_loop *loop);

/* ---- timers (caller-owned handles) ---------------------------------------- */
typedef void (*pl_timer_cb)(pl_loop *loop, void *ctx);
typedef struct pl_timer {
    pl_time due;
    size_t heap_index; /* internal; SIZE_MAX when not armed */
    pl_timer_cb cb;
    void *ctx;
} pl_timer;
void pl_timer_init(pl_timer *t, pl_timer_cb cb, void *ctx);
/* Arms (or re-arms) the timer for an absolute time; PL_TIME_NEVER disarms. */
void pl_timer_set(pl_loop *loop, pl_timer *t, pl_time due);
void pl_timer_cancel(pl_loop *loop, pl_timer *t);

/* ---- UDP ------------------------------------------------------------------ */
typedef struct pl_udp pl_udp;
typedef void (*pl_udp_recv_cb)(void *ctx, pl_udp *sock, const pl_addr *from, const uint8_t *data, size_t len,
                               pl_time now);
/* Binds (port 0 picks one). IPv6 sockets are v6-only. */
pl_udp *pl_udp_open(pl_loop *loop, const pl_addr *bind_addr, pl_udp_recv_cb cb, void *ctx, pl_loop_err *err);
void pl_udp_close(pl_udp *sock);
bool pl_udp_local_addr(const pl_udp *sock, pl_addr *out);
/* Queues a datagram; the batch goes out with one sendmmsg at the end of the
 * wake-up, or sooner when it fills. Outside the loop call pl_udp_flush.
 * When the kernel's send buffer is full (EAGAIN) the queued datagrams are kept
 * and sent when the socket is writable again; meanwhile the queue holds at
 * most PL_UDP_SEND_QUEUE datagrams and refuses more with PL_LOOP_ERR_FULL
 * (counted in send_full). Errors: PL_LOOP_ERR_TOO_BIG, PL_LOOP_ERR_ADDRESS
 * (a family the socket does not speak), PL_LOOP_ERR_FULL. */
pl_loop_err pl_udp_send(pl_udp *sock, const pl_addr *to, const uint8_t *data, size_t len);
void pl_udp_flush(pl_udp *sock);
/* Deferred reading, for a socket whose datagrams can wait for the next
 * wake-up. While a call's 20 ms audio clock runs, reading the socket on the
 * clock's tick instead of waking for each datagram saves a wake-up per
 * frame, and on this kind of machine a wake-up costs more than the frame's
 * network work. While deferred, the loop does not ask epoll for the
 * socket's input; it reads the socket at the start of every wake-up, before
 * events and timers, and never sleeps longer than PL_UDP_DEFER_MAX_MS.
 * Each datagram is handed to the callback with the time the kernel received
 * it (SO_TIMESTAMPNS), kept after the previous wake-up so that time never
 * runs backward for the callbacks: jitter measurements stay true. Sending
 * is not affected. */
#define PL_UDP_DEFER_MAX_MS 20
void pl_udp_set_deferred(pl_udp *sock, bool deferred);
bool pl_udp_deferred(const pl_udp *sock);
typedef struct pl_udp_stats {
    uint64_t received;       /* datagrams handed to the callback */
    uint64_t recv_truncated; /* longer than PL_UDP_MAX_DATAGRAM: dropped */
    uint64_t sent;           /* datagrams the kernel accepted */
    uint64_t send_full;      /* refused by pl_udp_send because the queue was full */
    uint64_t send_errors;    /* dropped because sendmmsg failed for them (not EAGAIN) */
} pl_udp_stats;
void pl_udp_get_stats(const pl_udp *sock, pl_udp_stats *out);

/* ---- framed TCP streams -------------------------------------------------------
 * A frame is a big-endian u16 length and that many bytes. Input and output are
 * bounded: a peer that sends an oversized frame is disconnected; a send that
 * would overflow the output buffer is refused with PL_LOOP_ERR_FULL. */
#define PL_STREAM_MAX_FRAME 65535
#define PL_STREAM_OUT_CAP (256 * 1024)
typedef struct pl_stream pl_stream;
typedef struct pl_listener pl_listener;
typedef void (*pl_stream_frame_cb)(void *ctx, pl_stream *s, const uint8_t *frame, size_t len, pl_time now);
/* Called once when the stream ends (peer closed, error, or connect failed);
 * err is 0 for an orderly close, else an errno value: the connect's error
 * (ECONNREFUSED, ETIMEDOUT...), EMSGSIZE for a frame longer than allowed,
 * EPROTO for a peer that closed in the middle of a frame. The stream is freed
 * right after the callback returns. */
typedef void (*pl_stream_close_cb)(void *ctx, pl_stream *s, int err);
typedef void (*pl_listen_cb)(void *ctx, pl_listener *l, pl_stream *accepted, const pl_addr *peer);

pl_listener *pl_stream_listen(pl_loop *loop, const pl_addr *bind_addr, pl_listen_cb cb, void *ctx,
                              pl_loop_err *err);
bool pl_listener_local_addr(const pl_listener *l, pl_addr *out);
void pl_listener_close(pl_listener *l);
/* Non-blocking connect; frames may be queued at once. */
pl_stream *pl_stream_connect(pl_loop *loop, const pl_addr *to, pl_loop_err *err);
/* The same from a given local address (its port is ignored), so a host with
 * several addresses speaks TCP from the one it speaks UDP from. */
pl_stream *pl_stream_connect_from(pl_loop *loop, const pl_addr *to, const pl_addr *from, pl_loop_err *err);
/* Through an outgoing proxy (proxy.h: HTTP CONNECT or SOCKS5): a TCP
 * connection to proxy->server (from a given local address, or NULL), the
 * proxy handshake on its raw bytes, and then, in the tunnel to target, an
 * ordinary framed stream. Frames may be queued at once; they go out when
 * the tunnel opens. pl_stream_peer_addr gives the target. Connect and
 * handshake together must end within proxy->timeout (0:
 * PL_STREAM_PROXY_TIMEOUT). If the stream ends before the tunnel opens, the
 * close callback's err is the closest errno (ECONNREFUSED refused, EACCES
 * credentials wanted or refused, EHOSTUNREACH the proxy could not reach
 * the target, ETIMEDOUT, EPROTO a bad reply, ECONNRESET closed, or the
 * connect's own error) and pl_stream_proxy_error, called inside the
 * callback, says exactly what. Closing the stream before the tunnel opens
 * drops it at once. The configuration is copied (and the copy wiped when
 * done); PL_LOOP_ERR_ADDRESS for one the handshake refuses. */
#define PL_STREAM_PROXY_TIMEOUT (10 * PL_SEC)
pl_stream *pl_stream_connect_via_proxy(pl_loop *loop, const pl_proxy_config *proxy, const pl_addr *target,
                                       const pl_addr *from, pl_loop_err *err);
/* PL_PROXY_OK for a direct stream, or one whose tunnel opened; else what
 * ended the handshake (PL_PROXY_ERR_CONNECT: no connection to the proxy). */
pl_proxy_err pl_stream_proxy_error(const pl_stream *s);
/* After a failed handshake (inside the close callback): the proxy's last
 * answer, for messages (an HTTP status; a SOCKS5 method, RFC 1929 status or
 * reply code), or -1 when it gave none. */
int pl_stream_proxy_reply_code(const pl_stream *s);
void pl_stream_set_callbacks(pl_stream *s, pl_stream_frame_cb on_frame, pl_stream_close_cb on_close, void *ctx);
/* Lowers the largest frame accepted from the peer (default and ceiling
 * PL_STREAM_MAX_FRAME); a longer length closes the stream with EMSGSIZE. */
void pl_stream_set_max_frame(pl_stream *s, size_t max);
pl_loop_err pl_stream_send(pl_stream *s, const uint8_t *frame, size_t len);
bool pl_stream_peer_addr(const pl_stream *s, pl_addr *out);
/* Closes after queued output is written (or at once if abort). The close
 * callback is not called for a close the owner asked for. A stream whose
 * output cannot be written within PL_STREAM_LINGER is then dropped. */
#define PL_STREAM_LINGER (10 * PL_SEC)
void pl_stream_close(pl_stream *s, bool abort);

/* ---- raw file descriptors (control sockets, signals) ------------------------------- */
/* The loop never closes a watched fd; the owner unwatches, then closes it.
 * Errors and hang-ups are reported as READ (and WRITE if that was asked for). */
enum { PL_FD_READ = 1, PL_FD_WRITE = 2 };
typedef void (*pl_fd_cb)(pl_loop *loop, int fd, unsigned events, void *ctx);
pl_loop_err pl_loop_watch_fd(pl_loop *loop, int fd, unsigned events, pl_fd_cb cb, void *ctx);
pl_loop_err pl_loop_modify_fd(pl_loop *loop, int fd, unsigned events);
void pl_loop_unwatch_fd(pl_loop *loop, int fd);

#endif
