/*
 * loop.c - the event loop: epoll, a timer heap, batched UDP, framed TCP.
 *
 * One wake-up (pl_loop_run_once) goes through the same steps every time:
 *
 *   1. read the clock and flush what was queued since the last wake-up;
 *   2. wait in epoll_wait, at most until the earliest timer is due;
 *   3. read the clock again and serve every ready handle, each with a capped
 *      share of work (PL_LOOP_RECV_BUDGET datagrams, STREAM_READ_BUDGET bytes,
 *      ACCEPT_BUDGET connections); epoll is level-triggered, so whatever is
 *      left is simply reported again on the next turn;
 *   4. run the timers that are due;
 *   5. flush: one sendmmsg per UDP socket with queued datagrams, one send per
 *      stream with queued frames, and the close callbacks of streams whose
 *      connect failed at once;
 *   6. free the handles that were closed during this wake-up.
 *
 * Callbacks may close any handle, their own included, at any point. A closed
 * handle gives up its descriptor at once but its memory only at step 6, so
 * the epoll events still waiting in this wake-up's array, and the code that
 * called the callback, can look at its `closed` flag safely.
 */
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "sockaddr.h"

#define MAX_EVENTS 256          /* epoll events taken per wake-up */
#define RECV_BATCH 64           /* datagrams per recvmmsg call */
#define ACCEPT_BUDGET 64        /* connections accepted per listener per wake-up */
#define STREAM_READ_BUDGET (256 * 1024) /* bytes read per stream per wake-up */
#define STREAM_IN_MIN 4096      /* first input buffer; grows to the frame in hand */
#define STREAM_OUT_MIN 4096     /* first output buffer; grows to PL_STREAM_OUT_CAP */
#define ACCEPT_RETRY (100 * PL_MSEC) /* pause after running out of descriptors */
#define SOCKET_BUFFER (2 * 1024 * 1024) /* asked of the kernel for UDP sockets */

/* ---- intrusive doubly linked lists ----------------------------------------
 * A node that is in no list points at itself, so removing it twice is
 * harmless and "is it queued?" is one comparison. */
typedef struct dlist {
    struct dlist *prev, *next;
} dlist;

static void dlist_init(dlist *n) { n->prev = n->next = n; }
static bool dlist_empty(const dlist *n) { return n->next == n; }
static void dlist_remove(dlist *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    dlist_init(n);
}
static void dlist_push_back(dlist *head, dlist *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}
/* Moves every node of from onto the (empty) list to, leaving from empty. */
static void dlist_splice(dlist *from, dlist *to)
{
    dlist_init(to);
    if (dlist_empty(from)) return;
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    dlist_init(from);
}
#define CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* ---- handles -------------------------------------------------------------- */

enum { H_UDP = 1, H_STREAM, H_LISTENER, H_FD };

/* The part every socket and watcher shares; it is the first member of each,
 * and epoll's data pointer points at it. */
typedef struct handle {
    int type;
    int fd;
    bool closed;
    unsigned events; /* what epoll is asked for now */
    pl_loop *loop;
    dlist all;       /* the loop's open handles, for pl_loop_free */
    struct handle *next_dead;
} handle;

typedef struct timer_ent {
    pl_time due;
    uint64_t seq; /* arming order, to break ties between equal due times */
    pl_timer *t;
} timer_ent;

typedef struct fd_watch {
    handle h;
    pl_fd_cb cb;
    void *ctx;
} fd_watch;

struct pl_udp {
    handle h;
    pl_udp_recv_cb cb;
    void *ctx;
    uint8_t family;
    dlist dirty; /* in loop->udp_dirty while datagrams wait for the flush */
    dlist deferred; /* in loop->udp_deferred while its reading is deferred */
    bool stamped;   /* SO_TIMESTAMPNS is on */
    /* The send queue: a ring of PL_UDP_SEND_QUEUE prepared message headers,
     * allocated at the first send, so sendmmsg takes a run of it directly. */
    struct mmsghdr *smsg;
    struct iovec *siov;
    struct sockaddr_storage *saddr;
    uint8_t *sbuf;
    size_t shead, slen;
    pl_udp_stats stats;
};

enum { ST_OPEN = 1, ST_CLOSING };

/* A stream through an outgoing proxy: the handshake runs on the raw bytes
 * first, and framing starts once the proxy reports the tunnel open. */
typedef struct stream_proxy {
    pl_proxy_client client;
    pl_proxy_err err;                  /* what ended the handshake; OK while it runs or once it succeeded */
    bool handshaking;                  /* until the tunnel is open (or the stream ends) */
    uint8_t out[PL_PROXY_MAX_REQUEST]; /* handshake bytes not yet written */
    size_t out_off, out_len;
    pl_timer deadline;                 /* connect and handshake together */
} stream_proxy;

struct pl_stream {
    handle h;
    int state;       /* ST_OPEN, or ST_CLOSING once the owner let go */
    bool connecting; /* until the non-blocking connect completes */
    stream_proxy *proxy; /* NULL for a direct stream */
    int pending_err; /* a connect that failed at once, reported at the flush */
    pl_stream_frame_cb on_frame;
    pl_stream_close_cb on_close;
    void *ctx;
    pl_addr peer;
    size_t max_frame;
    uint8_t *in;
    size_t in_len, in_cap;
    uint8_t *out;
    size_t out_off, out_len, out_cap;
    dlist dirty; /* in loop->stream_dirty while output or an error waits */
    pl_timer linger;
};

struct pl_listener {
    handle h;
    pl_listen_cb cb;
    void *ctx;
    pl_timer retry; /* re-enables accepting after EMFILE */
};

struct pl_loop {
    int epfd;
    pl_time now;  /* what pl_loop_now reports */
    pl_time mono; /* CLOCK_MONOTONIC at the last update, to advance now */
    bool stop;
    bool dispatching;
    timer_ent *heap;
    size_t heap_len, heap_cap;
    uint64_t timer_seq;
    dlist handles;
    dlist udp_dirty;
    dlist udp_deferred;
    dlist stream_dirty;
    pl_time last_wake; /* now at the previous wake-up: deferred datagrams arrived after it */
    handle *dead;
    fd_watch **watches; /* indexed by fd */
    size_t watches_cap;
    struct epoll_event events[MAX_EVENTS];
    /* One receive batch shared by every socket: the loop runs one callback
     * at a time, so they never need two. */
    struct mmsghdr rmsg[RECV_BATCH];
    struct iovec riov[RECV_BATCH];
    struct sockaddr_storage raddr[RECV_BATCH];
    union {
        struct cmsghdr align;
        uint8_t buf[CMSG_SPACE(sizeof(struct timespec))];
    } rctl[RECV_BATCH];
    uint8_t rbuf[RECV_BATCH][PL_UDP_MAX_DATAGRAM];
};

const char *pl_loop_strerror(pl_loop_err err)
{
    switch (err) {
    case PL_LOOP_OK: return "ok";
    case PL_LOOP_ERR_SYSTEM: return "system call failed";
    case PL_LOOP_ERR_ADDRESS: return "bad or unsupported address";
    case PL_LOOP_ERR_IN_USE: return "address in use";
    case PL_LOOP_ERR_FULL: return "queue full";
    case PL_LOOP_ERR_TOO_BIG: return "too big";
    }
    return "unknown error";
}

static void set_err(pl_loop_err *err, pl_loop_err v)
{
    if (err) *err = v;
}

/* ---- addresses ------------------------------------------------------------- */

bool pl_sockaddr_from_addr(const pl_addr *a, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    if (a->family == PL_AF_INET4) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(a->port);
        memcpy(&s4->sin_addr, a->ip, 4);
        *len = sizeof *s4;
        return true;
    }
    if (a->family == PL_AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(a->port);
        memcpy(&s6->sin6_addr, a->ip, 16);
        *len = sizeof *s6;
        return true;
    }
    return false;
}

void pl_sockaddr_to_addr(const struct sockaddr *sa, pl_addr *out)
{
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
        out->family = PL_AF_INET4;
        out->port = ntohs(s4->sin_port);
        memcpy(out->ip, &s4->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
        out->family = PL_AF_INET6;
        out->port = ntohs(s6->sin6_port);
        memcpy(out->ip, &s6->sin6_addr, 16);
    }
}

static bool local_addr(int fd, pl_addr *out)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return false;
    pl_sockaddr_to_addr((struct sockaddr *)&ss, out);
    return out->family != PL_AF_NONE;
}

static pl_loop_err bind_error(int e)
{
    if (e == EADDRINUSE) return PL_LOOP_ERR_IN_USE;
    if (e == EADDRNOTAVAIL || e == EAFNOSUPPORT || e == EINVAL) return PL_LOOP_ERR_ADDRESS;
    return PL_LOOP_ERR_SYSTEM;
}

/* ---- time ---------------------------------------------------------------------
 * The loop's time is wall-clock time (timestamps in certificates and records
 * are Unix times), but it must never go backwards, and a wall clock stepped
 * back must not stop the timers. So the loop advances its own time by the
 * monotonic clock and only jumps forward to the wall clock when the wall
 * clock is ahead: after a backward step it runs ahead of the wall clock by
 * the size of the step instead of standing still until it catches up. */

static pl_time clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (pl_time)ts.tv_sec * PL_SEC + (pl_time)ts.tv_nsec / 1000;
}

static void update_time(pl_loop *loop)
{
    pl_time mono = clock_us(CLOCK_MONOTONIC);
    pl_time real = clock_us(CLOCK_REALTIME);
    pl_time advanced = loop->now + (mono - loop->mono);
    loop->mono = mono;
    loop->now = real > advanced ? real : advanced;
}

pl_time pl_loop_now(const pl_loop *loop) { return loop->now; }

/* ---- timers: a binary min-heap ordered by (due, arming sequence) ------------- */

static bool ent_before(const timer_ent *a, const timer_ent *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_put(pl_loop *loop, size_t i, timer_ent e)
{
    loop->heap[i] = e;
    e.t->heap_index = i;
}

static void heap_up(pl_loop *loop, size_t i)
{
    timer_ent e = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!ent_before(&e, &loop->heap[parent])) break;
        heap_put(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_put(loop, i, e);
}

static void heap_down(pl_loop *loop, size_t i)
{
    timer_ent e = loop->heap[i];
    size_t n = loop->heap_len;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && ent_before(&loop->heap[child + 1], &loop->heap[child])) child++;
        if (!ent_before(&loop->heap[child], &e)) break;
        heap_put(loop, i, loop->heap[child]);
        i = child;
    }
    heap_put(loop, i, e);
}

static void heap_remove(pl_loop *loop, size_t i)
{
    loop->heap[i].t->heap_index = SIZE_MAX;
    loop->heap_len--;
    if (i < loop->heap_len) {
        heap_put(loop, i, loop->heap[loop->heap_len]);
        heap_down(loop, i);
        heap_up(loop, i);
    }
}

void pl_timer_init(pl_timer *t, pl_timer_cb cb, void *ctx)
{
    t->due = PL_TIME_NEVER;
    t->heap_index = SIZE_MAX;
    t->cb = cb;
    t->ctx = ctx;
}

void pl_timer_set(pl_loop *loop, pl_timer *t, pl_time due)
{
    if (due == PL_TIME_NEVER) {
        pl_timer_cancel(loop, t);
        return;
    }
    t->due = due;
    /* Re-arming counts as arming anew: among timers due at the same time, it
     * now fires after those armed before this call. */
    uint64_t seq = ++loop->timer_seq;
    if (t->heap_index != SIZE_MAX) {
        size_t i = t->heap_index;
        loop->heap[i].due = due;
        loop->heap[i].seq = seq;
        heap_down(loop, i);
        heap_up(loop, t->heap_index);
        return;
    }
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? 2 * loop->heap_cap : 64;
        timer_ent *h = realloc(loop->heap, cap * sizeof *h);
        if (!h) {
            /* pl_timer_set cannot report failure, and a timer that silently
             * never fires is worse than stopping: this is a few bytes per
             * timer, so running out here means the process is done anyway. */
            fprintf(stderr, "parley: out of memory arming a timer\n");
            abort();
        }
        loop->heap = h;
        loop->heap_cap = cap;
    }
    size_t i = loop->heap_len++;
    timer_ent e = {due, seq, t};
    heap_put(loop, i, e);
    heap_up(loop, i);
}

void pl_timer_cancel(pl_loop *loop, pl_timer *t)
{
    if (t->heap_index != SIZE_MAX) heap_remove(loop, t->heap_index);
    t->due = PL_TIME_NEVER;
}

/* Fires the timers due now. Timers armed by these callbacks wait for the next
 * wake-up even if already due, so a callback that re-arms itself for "now"
 * cannot keep this wake-up going forever. */
static void run_timers(pl_loop *loop)
{
    uint64_t last_seq = loop->timer_seq;
    while (loop->heap_len > 0) {
        timer_ent top = loop->heap[0];
        if (top.due > loop->now || top.seq > last_seq) break;
        heap_remove(loop, 0);
        top.t->due = PL_TIME_NEVER;
        top.t->cb(loop, top.t->ctx);
    }
}

/* ---- handles ------------------------------------------------------------------ */

static uint32_t epoll_mask(unsigned events)
{
    return ((events & PL_FD_READ) ? EPOLLIN : 0u) | ((events & PL_FD_WRITE) ? EPOLLOUT : 0u);
}

static int handle_add(pl_loop *loop, handle *h, int type, int fd, unsigned events)
{
    h->type = type;
    h->fd = fd;
    h->loop = loop;
    h->events = events;
    h->closed = false;
    h->next_dead = NULL;
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = epoll_mask(events);
    ev.data.ptr = h;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) return -1;
    dlist_push_back(&loop->handles, &h->all);
    return 0;
}

static void handle_want(handle *h, unsigned events)
{
    if (h->closed || h->events == events) return;
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = epoll_mask(events);
    ev.data.ptr = h;
    if (epoll_ctl(h->loop->epfd, EPOLL_CTL_MOD, h->fd, &ev) == 0) h->events = events;
}

static void handle_free(handle *h)
{
    switch (h->type) {
    case H_UDP: {
        pl_udp *u = (pl_udp *)h;
        free(u->smsg);
        free(u->siov);
        free(u->saddr);
        free(u->sbuf);
        break;
    }
    case H_STREAM: {
        pl_stream *s = (pl_stream *)h;
        free(s->in);
        free(s->out);
        if (s->proxy) {
            /* The handshake held credentials. */
            pl_proxy_client_wipe(&s->proxy->client);
            sodium_memzero(s->proxy->out, sizeof s->proxy->out);
            free(s->proxy);
        }
        break;
    }
    default: break;
    }
    free(h);
}

/* Takes a handle out of the loop: off epoll, descriptor closed (except for a
 * watched fd, which its owner closes), memory freed now or, inside a wake-up,
 * at its end. */
static void handle_release(handle *h)
{
    pl_loop *loop = h->loop;
    if (h->closed) return;
    h->closed = true;
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, h->fd, NULL);
    if (h->type != H_FD) close(h->fd);
    h->fd = -1;
    dlist_remove(&h->all);
    if (loop->dispatching) {
        h->next_dead = loop->dead;
        loop->dead = h;
    } else {
        handle_free(h);
    }
}

static void free_dead(pl_loop *loop)
{
    while (loop->dead) {
        handle *h = loop->dead;
        loop->dead = h->next_dead;
        handle_free(h);
    }
}

/* ---- UDP ------------------------------------------------------------------------ */

static void set_buffer(int fd, int opt)
{
    int size = SOCKET_BUFFER;
    setsockopt(fd, SOL_SOCKET, opt, &size, sizeof size);
}

pl_udp *pl_udp_open(pl_loop *loop, const pl_addr *bind_addr, pl_udp_recv_cb cb, void *ctx, pl_loop_err *err)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (!pl_sockaddr_from_addr(bind_addr, &ss, &sslen)) {
        set_err(err, PL_LOOP_ERR_ADDRESS);
        return NULL;
    }
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_err(err, errno == EAFNOSUPPORT ? PL_LOOP_ERR_ADDRESS : PL_LOOP_ERR_SYSTEM);
        return NULL;
    }
    if (ss.ss_family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    /* Media bursts and batched sends need more room than the default. */
    set_buffer(fd, SO_RCVBUF);
    set_buffer(fd, SO_SNDBUF);
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        set_err(err, bind_error(e));
        return NULL;
    }
    pl_udp *u = calloc(1, sizeof *u);
    if (!u) {
        close(fd);
        errno = ENOMEM;
        set_err(err, PL_LOOP_ERR_SYSTEM);
        return NULL;
    }
    u->cb = cb;
    u->ctx = ctx;
    u->family = bind_addr->family;
    dlist_init(&u->dirty);
    dlist_init(&u->deferred);
    if (handle_add(loop, &u->h, H_UDP, fd, PL_FD_READ) != 0) {
        int e = errno;
        close(fd);
        free(u);
        errno = e;
        set_err(err, PL_LOOP_ERR_SYSTEM);
        return NULL;
    }
    set_err(err, PL_LOOP_OK);
    return u;
}

bool pl_udp_local_addr(const pl_udp *sock, pl_addr *out) { return local_addr(sock->h.fd, out); }

void pl_udp_get_stats(const pl_udp *sock, pl_udp_stats *out) { *out = sock->stats; }

static bool udp_alloc_queue(pl_udp *u)
{
    size_t n = PL_UDP_SEND_QUEUE;
    u->smsg = calloc(n, sizeof *u->smsg);
    u->siov = calloc(n, sizeof *u->siov);
    u->saddr = calloc(n, sizeof *u->saddr);
    u->sbuf = malloc(n * PL_UDP_MAX_DATAGRAM);
    if (!u->smsg || !u->siov || !u->saddr || !u->sbuf) {
        free(u->smsg);
        free(u->siov);
        free(u->saddr);
        free(u->sbuf);
        u->smsg = NULL;
        u->siov = NULL;
        u->saddr = NULL;
        u->sbuf = NULL;
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        u->siov[i].iov_base = u->sbuf + i * PL_UDP_MAX_DATAGRAM;
        u->smsg[i].msg_hdr.msg_name = &u->saddr[i];
        u->smsg[i].msg_hdr.msg_iov = &u->siov[i];
        u->smsg[i].msg_hdr.msg_iovlen = 1;
    }
    return true;
}

/* What a socket asks epoll for besides EPOLLOUT: nothing while its reading is
 * deferred (the loop reads it at every wake-up instead). */
static unsigned udp_read_mask(const pl_udp *u) { return dlist_empty(&u->deferred) ? PL_FD_READ : 0; }

/* Sends what is queued, in runs that do not wrap around the ring. On EAGAIN
 * the rest stays queued and the socket asks epoll for EPOLLOUT; a datagram
 * the kernel refuses for any other reason (no route, message too long) is
 * dropped and counted, and the ones behind it still go. */
static void udp_flush(pl_udp *u)
{
    dlist_remove(&u->dirty);
    while (u->slen > 0) {
        size_t run = PL_UDP_SEND_QUEUE - u->shead;
        if (run > u->slen) run = u->slen;
        int n = sendmmsg(u->h.fd, &u->smsg[u->shead], (unsigned)run, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                handle_want(&u->h, udp_read_mask(u) | PL_FD_WRITE);
                return;
            }
            u->stats.send_errors++;
            n = 1;
        } else {
            u->stats.sent += (uint64_t)n;
        }
        u->shead = (u->shead + (size_t)n) % PL_UDP_SEND_QUEUE;
        u->slen -= (size_t)n;
    }
    u->shead = 0;
    handle_want(&u->h, udp_read_mask(u));
}

pl_loop_err pl_udp_send(pl_udp *u, const pl_addr *to, const uint8_t *data, size_t len)
{
    if (u->h.closed) {
        errno = EBADF;
        return PL_LOOP_ERR_SYSTEM;
    }
    if (len > PL_UDP_MAX_DATAGRAM) return PL_LOOP_ERR_TOO_BIG;
    if (to->family != u->family) return PL_LOOP_ERR_ADDRESS;
    if (u->slen == PL_UDP_SEND_QUEUE) {
        u->stats.send_full++;
        return PL_LOOP_ERR_FULL;
    }
    if (!u->smsg && !udp_alloc_queue(u)) {
        errno = ENOMEM;
        return PL_LOOP_ERR_SYSTEM;
    }
    size_t i = (u->shead + u->slen) % PL_UDP_SEND_QUEUE;
    socklen_t alen;
    if (!pl_sockaddr_from_addr(to, &u->saddr[i], &alen)) return PL_LOOP_ERR_ADDRESS;
    u->smsg[i].msg_hdr.msg_namelen = alen;
    u->siov[i].iov_len = len;
    if (len) memcpy(u->siov[i].iov_base, data, len);
    u->slen++;
    pl_loop *loop = u->h.loop;
    /* A socket waiting for EPOLLOUT is not flushed early: the kernel has just
     * said it has no room, and epoll will say when it has. */
    if (u->slen >= PL_UDP_SEND_BATCH && !(u->h.events & PL_FD_WRITE)) {
        udp_flush(u);
    } else if (dlist_empty(&u->dirty) && !(u->h.events & PL_FD_WRITE)) {
        dlist_push_back(&loop->udp_dirty, &u->dirty);
    }
    return PL_LOOP_OK;
}

void pl_udp_flush(pl_udp *sock)
{
    if (!sock->h.closed) udp_flush(sock);
}

void pl_udp_close(pl_udp *sock)
{
    if (!sock || sock->h.closed) return;
    /* One last try, so that a goodbye queued just before closing goes out. */
    udp_flush(sock);
    dlist_remove(&sock->dirty);
    dlist_remove(&sock->deferred);
    handle_release(&sock->h);
}

/* When the kernel received a datagram, on the loop's clock: its SO_TIMESTAMPNS
 * stamp (wall-clock time) taken back from now by its age, and kept between
 * the last wake-up and now, so that time never runs backward for the
 * callbacks. Without a stamp: now. */
static pl_time arrival_time(const pl_loop *loop, struct msghdr *m, pl_time real_now)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_TIMESTAMPNS) continue;
        struct timespec ts;
        memcpy(&ts, CMSG_DATA(c), sizeof ts);
        pl_time stamp = (pl_time)ts.tv_sec * PL_SEC + (pl_time)ts.tv_nsec / 1000;
        pl_time age = real_now > stamp ? real_now - stamp : 0;
        pl_time at = age < loop->now ? loop->now - age : 0;
        return at < loop->last_wake ? loop->last_wake : at;
    }
    return loop->now;
}

static void udp_read(pl_loop *loop, pl_udp *u)
{
    size_t budget = PL_LOOP_RECV_BUDGET;
    pl_time real_now = u->stamped ? clock_us(CLOCK_REALTIME) : 0;
    while (budget > 0 && !u->h.closed) {
        unsigned want = budget < RECV_BATCH ? (unsigned)budget : RECV_BATCH;
        for (unsigned i = 0; i < want; i++) {
            loop->riov[i].iov_base = loop->rbuf[i];
            loop->riov[i].iov_len = PL_UDP_MAX_DATAGRAM;
            memset(&loop->rmsg[i].msg_hdr, 0, sizeof loop->rmsg[i].msg_hdr);
            loop->rmsg[i].msg_hdr.msg_name = &loop->raddr[i];
            loop->rmsg[i].msg_hdr.msg_namelen = sizeof loop->raddr[i];
            loop->rmsg[i].msg_hdr.msg_iov = &loop->riov[i];
            loop->rmsg[i].msg_hdr.msg_iovlen = 1;
            if (u->stamped) {
                loop->rmsg[i].msg_hdr.msg_control = loop->rctl[i].buf;
                loop->rmsg[i].msg_hdr.msg_controllen = sizeof loop->rctl[i].buf;
            }
        }
        int n = recvmmsg(u->h.fd, loop->rmsg, want, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return; /* EAGAIN, or an error for a datagram already gone */
        }
        for (int i = 0; i < n && !u->h.closed; i++) {
            if (loop->rmsg[i].msg_hdr.msg_flags & MSG_TRUNC) {
                u->stats.recv_truncated++;
                continue;
            }
            pl_addr from;
            pl_sockaddr_to_addr((struct sockaddr *)&loop->raddr[i], &from);
            u->stats.received++;
            pl_time at = u->stamped ? arrival_time(loop, &loop->rmsg[i].msg_hdr, real_now) : loop->now;
            if (u->cb) u->cb(u->ctx, u, &from, loop->rbuf[i], loop->rmsg[i].msg_len, at);
        }
        budget -= (size_t)n;
        if ((unsigned)n < want) return;
    }
}

void pl_udp_set_deferred(pl_udp *u, bool deferred)
{
    if (u->h.closed || deferred == !dlist_empty(&u->deferred)) return;
    pl_loop *loop = u->h.loop;
    if (deferred) {
        if (!u->stamped) {
            int one = 1;
            u->stamped = setsockopt(u->h.fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) == 0;
        }
        dlist_push_back(&loop->udp_deferred, &u->deferred);
    } else {
        dlist_remove(&u->deferred);
    }
    /* Back to reading on demand, what waits is reported by the next
     * epoll_wait at once (epoll is level-triggered). Reading it here could
     * be inside this socket's own callback, in the middle of the batch. */
    handle_want(&u->h, udp_read_mask(u) | (u->h.events & PL_FD_WRITE));
}

bool pl_udp_deferred(const pl_udp *u) { return !dlist_empty(&u->deferred); }

/* Reads every deferred socket: the first thing a wake-up does. */
static void read_deferred(pl_loop *loop)
{
    if (dlist_empty(&loop->udp_deferred)) return;
    /* Each socket goes back on the loop's list before it is read, so a
     * callback may close or un-defer any of them, or defer another. */
    dlist todo;
    dlist_splice(&loop->udp_deferred, &todo);
    while (!dlist_empty(&todo)) {
        pl_udp *u = CONTAINER(todo.next, pl_udp, deferred);
        dlist_remove(&u->deferred);
        dlist_push_back(&loop->udp_deferred, &u->deferred);
        udp_read(loop, u);
    }
}

/* ---- streams ---------------------------------------------------------------------- */

static void stream_linger_expired(pl_loop *loop, void *ctx);

static pl_stream *stream_new(pl_loop *loop, int fd, bool connecting, const pl_addr *peer)
{
    pl_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->state = ST_OPEN;
    s->connecting = connecting;
    s->peer = *peer;
    s->max_frame = PL_STREAM_MAX_FRAME;
    dlist_init(&s->dirty);
    pl_timer_init(&s->linger, stream_linger_expired, s);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    unsigned ev = connecting ? PL_FD_WRITE : PL_FD_READ;
    if (handle_add(loop, &s->h, H_STREAM, fd, ev) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

/* Takes the stream out of the loop without telling its owner. */
static void stream_drop(pl_stream *s)
{
    dlist_remove(&s->dirty);
    pl_timer_cancel(s->h.loop, &s->linger);
    if (s->proxy) pl_timer_cancel(s->h.loop, &s->proxy->deadline);
    handle_release(&s->h);
}

/* What the close callback hears when a proxy handshake fails: the closest
 * errno; pl_stream_proxy_error tells the rest. */
static int proxy_errno(pl_proxy_err err)
{
    switch (err) {
    case PL_PROXY_ERR_REFUSED: return ECONNREFUSED;
    case PL_PROXY_ERR_AUTH_REQUIRED:
    case PL_PROXY_ERR_AUTH_FAILED: return EACCES;
    case PL_PROXY_ERR_TARGET: return EHOSTUNREACH;
    case PL_PROXY_ERR_UNSUPPORTED: return EOPNOTSUPP;
    case PL_PROXY_ERR_BAD_REPLY: return EPROTO;
    case PL_PROXY_ERR_CLOSED: return ECONNRESET;
    case PL_PROXY_ERR_TIMEOUT: return ETIMEDOUT;
    case PL_PROXY_ERR_CONFIG: return EINVAL;
    default: return ECONNABORTED;
    }
}

/* The stream ended on its own (peer, error, failed connect): the owner hears
 * about it once, unless it had already asked for the close. Only called
 * inside a wake-up, so the memory outlives the callback. */
static void stream_end(pl_stream *s, int err)
{
    if (s->h.closed) return;
    if (s->proxy && s->proxy->handshaking) {
        /* The stream ended before the tunnel opened: say how. */
        s->proxy->handshaking = false;
        if (s->proxy->err == PL_PROXY_OK)
            s->proxy->err = s->connecting || s->pending_err ? PL_PROXY_ERR_CONNECT : PL_PROXY_ERR_CLOSED;
    }
    bool tell = s->state != ST_CLOSING;
    pl_stream_close_cb cb = s->on_close;
    void *ctx = s->ctx;
    stream_drop(s);
    if (tell && cb) cb(ctx, s, err);
}

static void stream_linger_expired(pl_loop *loop, void *ctx)
{
    (void)loop;
    stream_drop(ctx);
}

static bool stream_handshaking(const pl_stream *s) { return s->proxy && s->proxy->handshaking; }

static void stream_update_events(pl_stream *s)
{
    unsigned ev;
    if (s->connecting) ev = PL_FD_WRITE;
    else if (stream_handshaking(s)) ev = PL_FD_READ | (s->proxy->out_len > s->proxy->out_off ? PL_FD_WRITE : 0u);
    else ev = PL_FD_READ | (s->out_len > s->out_off ? PL_FD_WRITE : 0u);
    handle_want(&s->h, ev);
}

/* Fails the proxy handshake: the owner hears the errno closest to err. */
static void proxy_fail(pl_stream *s, pl_proxy_err err)
{
    s->proxy->err = err;
    stream_end(s, proxy_errno(err));
}

/* Writes the handshake's bytes (frames the owner queued wait for the
 * tunnel). Returns false when the stream ended. */
static bool proxy_write(pl_stream *s)
{
    stream_proxy *p = s->proxy;
    for (;;) {
        if (p->out_off == p->out_len) {
            /* All written: take what the handshake has to say next, if anything. */
            sodium_memzero(p->out, p->out_len);
            p->out_off = 0;
            p->out_len = pl_proxy_client_output(&p->client, p->out, sizeof p->out);
            if (p->out_len == 0) break;
        }
        ssize_t n = send(s->h.fd, p->out + p->out_off, p->out_len - p->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            stream_end(s, errno);
            return false;
        }
        p->out_off += (size_t)n;
    }
    stream_update_events(s);
    return true;
}

static void proxy_deadline(pl_loop *loop, void *ctx)
{
    (void)loop;
    pl_stream *s = ctx;
    if (stream_handshaking(s)) proxy_fail(s, PL_PROXY_ERR_TIMEOUT);
}

/* Writes queued output until done or the kernel is full. */
static void stream_write(pl_stream *s)
{
    if (stream_handshaking(s)) {
        proxy_write(s);
        return;
    }
    while (s->out_off < s->out_len) {
        ssize_t n = send(s->h.fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            stream_end(s, errno);
            return;
        }
        s->out_off += (size_t)n;
    }
    if (s->out_off == s->out_len) {
        s->out_off = s->out_len = 0;
        if (s->state == ST_CLOSING) {
            stream_drop(s);
            return;
        }
    }
    stream_update_events(s);
}

/* Hands every complete frame in the input buffer to the owner. */
static void stream_parse(pl_loop *loop, pl_stream *s)
{
    size_t off = 0;
    while (s->in_len - off >= 2) {
        size_t flen = ((size_t)s->in[off] << 8) | s->in[off + 1];
        if (flen > s->max_frame) {
            stream_end(s, EMSGSIZE);
            return;
        }
        if (s->in_len - off < 2 + flen) break;
        if (s->on_frame) s->on_frame(s->ctx, s, s->in + off + 2, flen, loop->now);
        off += 2 + flen;
        if (s->h.closed || s->state != ST_OPEN) return;
    }
    if (off > 0) {
        memmove(s->in, s->in + off, s->in_len - off);
        s->in_len -= off;
    }
}

/* Makes room for the frame in hand (or a first read) in the input buffer,
 * which never grows past one largest frame. */
static bool stream_in_room(pl_stream *s)
{
    size_t need = STREAM_IN_MIN;
    if (s->in_len >= 2 && !stream_handshaking(s)) {
        size_t frame = 2 + (((size_t)s->in[0] << 8) | s->in[1]);
        if (frame > need) need = frame;
    }
    if (s->in_cap >= need) return true;
    uint8_t *p = realloc(s->in, need);
    if (!p) return false;
    s->in = p;
    s->in_cap = need;
    return true;
}

/* Hands what was read to the proxy handshake; what it does not take is the
 * tunnel's (framed) data. Returns false when the stream ended. */
static bool proxy_input(pl_stream *s)
{
    stream_proxy *p = s->proxy;
    size_t used = 0;
    pl_proxy_err err = pl_proxy_client_input(&p->client, s->in, s->in_len, &used);
    memmove(s->in, s->in + used, s->in_len - used);
    s->in_len -= used;
    if (err != PL_PROXY_OK) {
        proxy_fail(s, err);
        return false;
    }
    if (!proxy_write(s)) return false; /* SOCKS5's next request, if one is due */
    if (!pl_proxy_client_done(&p->client)) return true;
    /* The tunnel is open: from here on the stream is an ordinary framed
     * one, and the frames queued meanwhile go out. */
    p->handshaking = false;
    pl_timer_cancel(s->h.loop, &p->deadline);
    pl_proxy_client_wipe(&p->client);
    stream_write(s);
    return !s->h.closed;
}

static void stream_read(pl_loop *loop, pl_stream *s)
{
    size_t budget = STREAM_READ_BUDGET;
    while (budget > 0 && !s->h.closed) {
        if (!stream_in_room(s)) {
            stream_end(s, ENOMEM);
            return;
        }
        ssize_t n = recv(s->h.fd, s->in + s->in_len, s->in_cap - s->in_len, MSG_DONTWAIT);
        if (n == 0) {
            /* The peer is done. A frame cut short is a protocol error. */
            if (s->state == ST_CLOSING) stream_drop(s);
            else if (stream_handshaking(s)) proxy_fail(s, pl_proxy_client_eof(&s->proxy->client));
            else stream_end(s, s->in_len > 0 ? EPROTO : 0);
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            stream_end(s, errno);
            return;
        }
        budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
        s->in_len += (size_t)n;
        /* Acknowledge at once (Linux clears the flag after use): a proxy in
         * the path that leaves Nagle's algorithm on (tinyproxy does) holds
         * each small frame until the previous one is acknowledged, and a
         * delayed acknowledgement then costs a voice frame up to 40 ms. In
         * the lab this took the jitter of a call through tinyproxy from
         * 4.4 to 1.3 ms and its jitter buffer from about 50 to 17 ms. */
        int quick = 1;
        setsockopt(s->h.fd, IPPROTO_TCP, TCP_QUICKACK, &quick, sizeof quick);
        if (s->state == ST_CLOSING) {
            s->in_len = 0; /* the owner has gone: input is read only to be discarded */
            continue;
        }
        if (stream_handshaking(s) && !proxy_input(s)) return;
        stream_parse(loop, s);
    }
}

static void stream_connected(pl_stream *s)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(s->h.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err) {
        stream_end(s, err);
        return;
    }
    s->connecting = false;
    stream_write(s); /* frames queued while connecting; also sets the events */
}

static void stream_event(pl_loop *loop, pl_stream *s, uint32_t ev)
{
    if (s->pending_err) {
        /* connect() already failed and consumed the socket's error. */
        stream_end(s, s->pending_err);
        return;
    }
    if (s->connecting) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        stream_connected(s);
        return; /* anything to read is reported again on the next turn */
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) stream_read(loop, s);
    if (!s->h.closed && (ev & EPOLLOUT)) stream_write(s);
}

pl_stream *pl_stream_connect(pl_loop *loop, const pl_addr *to, pl_loop_err *err)
{
    return pl_stream_connect_from(loop, to, NULL, err);
}

pl_stream *pl_stream_connect_from(pl_loop *loop, const pl_addr *to, const pl_addr *from, pl_loop_err *err)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (!pl_sockaddr_from_addr(to, &ss, &sslen)) {
        set_err(err, PL_LOOP_ERR_ADDRESS);
        return NULL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_err(err, errno == EAFNOSUPPORT ? PL_LOOP_ERR_ADDRESS : PL_LOOP_ERR_SYSTEM);
        return NULL;
    }
    if (from) {
        /* The local address only; the kernel picks the port. */
        struct sockaddr_storage ls;
        socklen_t lslen;
        pl_addr local = *from;
        local.port = 0;
        if (!pl_sockaddr_from_addr(&local, &ls, &lslen) || ls.ss_family != ss.ss_family ||
            bind(fd, (struct sockaddr *)&ls, lslen) != 0) {
            int e = errno;
            close(fd);
            errno = e;
            set_err(err, e == EADDRINUSE ? PL_LOOP_ERR_IN_USE : PL_LOOP_ERR_ADDRESS);
            return NULL;
        }
    }
    bool connecting = true;
    int pending = 0;
    if (connect(fd, (struct sockaddr *)&ss, sslen) == 0) {
        connecting = false;
    } else if (errno != EINPROGRESS) {
        int e = errno;
        if (e == EAFNOSUPPORT || e == EINVAL || e == EADDRNOTAVAIL) {
            close(fd);
            errno = e;
            set_err(err, PL_LOOP_ERR_ADDRESS);
            return NULL;
        }
        /* Refused or unreachable at once: the owner hears it through the
         * close callback, like any other failed connect, at the next flush. */
        pending = e;
    }
    pl_stream *s = stream_new(loop, fd, connecting, to);
    if (!s) {
        int e = errno;
        close(fd);
        errno = e;
        set_err(err, PL_LOOP_ERR_SYSTEM);
        return NULL;
    }
    if (pending) {
        s->pending_err = pending;
        dlist_push_back(&loop->stream_dirty, &s->dirty);
    }
    set_err(err, PL_LOOP_OK);
    return s;
}

pl_stream *pl_stream_connect_via_proxy(pl_loop *loop, const pl_proxy_config *proxy, const pl_addr *target,
                                       const pl_addr *from, pl_loop_err *err)
{
    stream_proxy *p = calloc(1, sizeof *p);
    if (!p) {
        errno = ENOMEM;
        set_err(err, PL_LOOP_ERR_SYSTEM);
        return NULL;
    }
    if (pl_proxy_client_init(&p->client, proxy, target) != PL_PROXY_OK) {
        pl_proxy_client_wipe(&p->client);
        free(p);
        set_err(err, PL_LOOP_ERR_ADDRESS);
        return NULL;
    }
    pl_addr server = proxy->server;
    server.transport = PL_ADDR_TCP;
    pl_stream *s = pl_stream_connect_from(loop, &server, from, err);
    if (!s) {
        pl_proxy_client_wipe(&p->client);
        free(p);
        return NULL;
    }
    p->handshaking = true;
    pl_timer_init(&p->deadline, proxy_deadline, s);
    pl_timer_set(loop, &p->deadline, loop->now + (proxy->timeout ? proxy->timeout : PL_STREAM_PROXY_TIMEOUT));
    s->proxy = p;
    /* The owner talks to the target; the proxy is a detail of the path. */
    s->peer = *target;
    s->peer.transport = PL_ADDR_TCP;
    return s;
}

pl_proxy_err pl_stream_proxy_error(const pl_stream *s) { return s->proxy ? s->proxy->err : PL_PROXY_OK; }

int pl_stream_proxy_reply_code(const pl_stream *s)
{
    /* The client is wiped once the tunnel opens; after a failure it holds
     * the proxy's last answer until the stream is freed. */
    return s->proxy && s->proxy->err != PL_PROXY_OK ? pl_proxy_client_reply_code(&s->proxy->client) : -1;
}

void pl_stream_set_callbacks(pl_stream *s, pl_stream_frame_cb on_frame, pl_stream_close_cb on_close, void *ctx)
{
    s->on_frame = on_frame;
    s->on_close = on_close;
    s->ctx = ctx;
}

void pl_stream_set_max_frame(pl_stream *s, size_t max)
{
    s->max_frame = max < PL_STREAM_MAX_FRAME ? max : PL_STREAM_MAX_FRAME;
}

pl_loop_err pl_stream_send(pl_stream *s, const uint8_t *frame, size_t len)
{
    if (s->h.closed || s->state == ST_CLOSING) {
        errno = EPIPE;
        return PL_LOOP_ERR_SYSTEM;
    }
    if (len > PL_STREAM_MAX_FRAME) return PL_LOOP_ERR_TOO_BIG;
    size_t queued = s->out_len - s->out_off;
    if (queued + 2 + len > PL_STREAM_OUT_CAP) return PL_LOOP_ERR_FULL;
    if (s->out_len + 2 + len > s->out_cap) {
        /* Slide what is left to the front before growing. */
        if (s->out_off > 0) {
            memmove(s->out, s->out + s->out_off, queued);
            s->out_len = queued;
            s->out_off = 0;
        }
        if (s->out_len + 2 + len > s->out_cap) {
            size_t cap = s->out_cap ? s->out_cap : STREAM_OUT_MIN;
            while (cap < s->out_len + 2 + len) cap *= 2;
            if (cap > PL_STREAM_OUT_CAP) cap = PL_STREAM_OUT_CAP;
            uint8_t *p = realloc(s->out, cap);
            if (!p) {
                errno = ENOMEM;
                return PL_LOOP_ERR_SYSTEM;
            }
            s->out = p;
            s->out_cap = cap;
        }
    }
    s->out[s->out_len] = (uint8_t)(len >> 8);
    s->out[s->out_len + 1] = (uint8_t)len;
    if (len) memcpy(s->out + s->out_len + 2, frame, len);
    s->out_len += 2 + len;
    if (dlist_empty(&s->dirty)) dlist_push_back(&s->h.loop->stream_dirty, &s->dirty);
    return PL_LOOP_OK;
}

bool pl_stream_peer_addr(const pl_stream *s, pl_addr *out)
{
    *out = s->peer;
    return s->peer.family != PL_AF_NONE;
}

void pl_stream_close(pl_stream *s, bool abort_now)
{
    if (!s || s->h.closed || s->state == ST_CLOSING) return;
    /* Frames queued for a tunnel that is not open yet are not worth waiting for. */
    if (abort_now || s->pending_err || s->out_len == s->out_off || stream_handshaking(s)) {
        stream_drop(s);
        return;
    }
    /* Keep the stream until its output is out, but not for ever. */
    s->state = ST_CLOSING;
    pl_timer_set(s->h.loop, &s->linger, s->h.loop->now + PL_STREAM_LINGER);
}

/* Writes the streams with queued frames and reports connects that failed at
 * once. The list is taken whole first: callbacks run from here may queue
 * more, which waits for the next flush. */
static void flush_streams(pl_loop *loop)
{
    dlist todo;
    dlist_splice(&loop->stream_dirty, &todo);
    while (!dlist_empty(&todo)) {
        pl_stream *s = CONTAINER(todo.next, pl_stream, dirty);
        dlist_remove(&s->dirty);
        if (s->h.closed) continue;
        if (s->pending_err) stream_end(s, s->pending_err);
        else if (!s->connecting) stream_write(s);
    }
}

/* ---- listeners ---------------------------------------------------------------------- */

static void listener_retry(pl_loop *loop, void *ctx)
{
    (void)loop;
    pl_listener *l = ctx;
    handle_want(&l->h, PL_FD_READ);
}

pl_listener *pl_stream_listen(pl_loop *loop, const pl_addr *bind_addr, pl_listen_cb cb, void *ctx,
                              pl_loop_err *err)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (!pl_sockaddr_from_addr(bind_addr, &ss, &sslen)) {
        set_err(err, PL_LOOP_ERR_ADDRESS);
        return NULL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_err(err, errno == EAFNOSUPPORT ? PL_LOOP_ERR_ADDRESS : PL_LOOP_ERR_SYSTEM);
        return NULL;
    }
    int one = 1;
    /* A restarted daemon must get its port back while old connections sit in
     * TIME_WAIT. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        set_err(err, bind_error(e));
        return NULL;
    }
    if (listen(fd, 512) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        set_err(err, e == EADDRINUSE ? PL_LOOP_ERR_IN_USE : PL_LOOP_ERR_SYSTEM);
        return NULL;
    }
    pl_listener *l = calloc(1, sizeof *l);
    if (!l || handle_add(loop, &l->h, H_LISTENER, fd, PL_FD_READ) != 0) {
        int e = l ? errno : ENOMEM;
        free(l);
        close(fd);
        errno = e;
        set_err(err, PL_LOOP_ERR_SYSTEM);
        return NULL;
    }
    l->cb = cb;
    l->ctx = ctx;
    pl_timer_init(&l->retry, listener_retry, l);
    set_err(err, PL_LOOP_OK);
    return l;
}

bool pl_listener_local_addr(const pl_listener *l, pl_addr *out) { return local_addr(l->h.fd, out); }

void pl_listener_close(pl_listener *l)
{
    if (!l || l->h.closed) return;
    pl_timer_cancel(l->h.loop, &l->retry);
    handle_release(&l->h);
}

static void listener_accept(pl_loop *loop, pl_listener *l)
{
    for (int i = 0; i < ACCEPT_BUDGET && !l->h.closed; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(l->h.fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The connection stays in the backlog and epoll would report
                 * it again at once: stop asking for a while instead of
                 * spinning. */
                handle_want(&l->h, 0);
                pl_timer_set(loop, &l->retry, loop->now + ACCEPT_RETRY);
            }
            return;
        }
        pl_addr peer;
        pl_sockaddr_to_addr((struct sockaddr *)&ss, &peer);
        pl_stream *s = stream_new(loop, fd, false, &peer);
        if (!s) {
            close(fd);
            continue;
        }
        if (l->cb) l->cb(l->ctx, l, s, &peer);
    }
}

/* ---- raw descriptors ------------------------------------------------------------------ */

pl_loop_err pl_loop_watch_fd(pl_loop *loop, int fd, unsigned events, pl_fd_cb cb, void *ctx)
{
    if (fd < 0) {
        errno = EBADF;
        return PL_LOOP_ERR_SYSTEM;
    }
    if ((size_t)fd >= loop->watches_cap) {
        size_t cap = loop->watches_cap ? loop->watches_cap : 64;
        while (cap <= (size_t)fd) cap *= 2;
        fd_watch **w = realloc(loop->watches, cap * sizeof *w);
        if (!w) {
            errno = ENOMEM;
            return PL_LOOP_ERR_SYSTEM;
        }
        memset(w + loop->watches_cap, 0, (cap - loop->watches_cap) * sizeof *w);
        loop->watches = w;
        loop->watches_cap = cap;
    }
    if (loop->watches[fd]) return PL_LOOP_ERR_IN_USE;
    fd_watch *w = calloc(1, sizeof *w);
    if (!w) {
        errno = ENOMEM;
        return PL_LOOP_ERR_SYSTEM;
    }
    w->cb = cb;
    w->ctx = ctx;
    if (handle_add(loop, &w->h, H_FD, fd, events) != 0) {
        int e = errno;
        free(w);
        errno = e;
        return e == EEXIST ? PL_LOOP_ERR_IN_USE : PL_LOOP_ERR_SYSTEM;
    }
    loop->watches[fd] = w;
    return PL_LOOP_OK;
}

pl_loop_err pl_loop_modify_fd(pl_loop *loop, int fd, unsigned events)
{
    if (fd < 0 || (size_t)fd >= loop->watches_cap || !loop->watches[fd]) {
        errno = EBADF;
        return PL_LOOP_ERR_SYSTEM;
    }
    handle *h = &loop->watches[fd]->h;
    handle_want(h, events);
    return h->events == events ? PL_LOOP_OK : PL_LOOP_ERR_SYSTEM;
}

void pl_loop_unwatch_fd(pl_loop *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->watches_cap || !loop->watches[fd]) return;
    fd_watch *w = loop->watches[fd];
    loop->watches[fd] = NULL;
    handle_release(&w->h);
}

static void fd_event(pl_loop *loop, fd_watch *w, uint32_t ev)
{
    unsigned events = 0;
    if (ev & EPOLLIN) events |= PL_FD_READ;
    if (ev & EPOLLOUT) events |= PL_FD_WRITE;
    if (ev & (EPOLLERR | EPOLLHUP)) events |= PL_FD_READ | (w->h.events & PL_FD_WRITE);
    if (w->cb) w->cb(loop, w->h.fd, events, w->ctx);
}

/* ---- the loop ---------------------------------------------------------------------------- */

pl_loop *pl_loop_new(void)
{
    pl_loop *loop = calloc(1, sizeof *loop);
    if (!loop) return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        free(loop);
        return NULL;
    }
    dlist_init(&loop->handles);
    dlist_init(&loop->udp_dirty);
    dlist_init(&loop->udp_deferred);
    dlist_init(&loop->stream_dirty);
    loop->mono = clock_us(CLOCK_MONOTONIC);
    loop->now = clock_us(CLOCK_REALTIME);
    loop->last_wake = loop->now;
    return loop;
}

void pl_loop_free(pl_loop *loop)
{
    if (!loop) return;
    /* No callbacks from here: the owner is tearing down and its contexts may
     * already be gone. Queued UDP datagrams get one last try. */
    loop->dispatching = false;
    while (!dlist_empty(&loop->handles)) {
        handle *h = CONTAINER(loop->handles.next, handle, all);
        switch (h->type) {
        case H_UDP: pl_udp_close((pl_udp *)h); break;
        case H_STREAM: stream_drop((pl_stream *)h); break;
        case H_LISTENER: pl_listener_close((pl_listener *)h); break;
        case H_FD: pl_loop_unwatch_fd(loop, h->fd); break;
        default: handle_release(h); break;
        }
    }
    free_dead(loop);
    /* Timers still armed belong to their owners; leave them disarmed. */
    for (size_t i = 0; i < loop->heap_len; i++) {
        loop->heap[i].t->heap_index = SIZE_MAX;
        loop->heap[i].t->due = PL_TIME_NEVER;
    }
    free(loop->heap);
    free(loop->watches);
    close(loop->epfd);
    free(loop);
}

static void flush_all(pl_loop *loop)
{
    flush_streams(loop);
    while (!dlist_empty(&loop->udp_dirty)) {
        pl_udp *u = CONTAINER(loop->udp_dirty.next, pl_udp, dirty);
        udp_flush(u); /* takes u off the list */
    }
}

static int wait_ms(const pl_loop *loop, int max_wait_ms)
{
    /* Work left over by the last flush (a connect that failed at once, output
     * queued by a close callback) is served without sleeping. */
    if (!dlist_empty(&loop->stream_dirty)) return 0;
    long long ms = max_wait_ms < 0 ? -1 : max_wait_ms;
    if (loop->heap_len > 0) {
        pl_time due = loop->heap[0].due;
        /* Round up, so that we do not wake just before the timer and spin. */
        long long t = due <= loop->now ? 0 : (long long)((due - loop->now + 999) / 1000);
        if (ms < 0 || t < ms) ms = t;
    }
    /* A deferred socket is read only when the loop wakes. */
    if (!dlist_empty(&loop->udp_deferred) && (ms < 0 || ms > PL_UDP_DEFER_MAX_MS)) ms = PL_UDP_DEFER_MAX_MS;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

void pl_loop_run_once(pl_loop *loop, int max_wait_ms)
{
    loop->dispatching = true;
    update_time(loop);
    flush_all(loop);

    int n = epoll_wait(loop->epfd, loop->events, MAX_EVENTS, wait_ms(loop, max_wait_ms));
    update_time(loop);
    read_deferred(loop);
    loop->last_wake = loop->now;
    for (int i = 0; i < n; i++) {
        handle *h = loop->events[i].data.ptr;
        uint32_t ev = loop->events[i].events;
        if (h->closed) continue; /* closed by an earlier callback in this wake-up */
        switch (h->type) {
        case H_UDP: {
            pl_udp *u = (pl_udp *)h;
            if (ev & EPOLLOUT) udp_flush(u);
            if (!h->closed && (ev & (EPOLLIN | EPOLLERR))) udp_read(loop, u);
            break;
        }
        case H_STREAM: stream_event(loop, (pl_stream *)h, ev); break;
        case H_LISTENER: listener_accept(loop, (pl_listener *)h); break;
        case H_FD: fd_event(loop, (fd_watch *)h, ev); break;
        default: break;
        }
    }

    run_timers(loop);
    flush_all(loop);
    loop->dispatching = false;
    free_dead(loop);
}

void pl_loop_run(pl_loop *loop)
{
    loop->stop = false;
    while (!loop->stop) pl_loop_run_once(loop, -1);
}

void pl_loop_stop(pl_loop *loop) { loop->stop = true; }
