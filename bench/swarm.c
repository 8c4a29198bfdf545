/*
 * swarm.c - a real supernode process under a swarm of real clients: issue
 * 3's capacity figures measured on processes and sockets, where
 * bench_supernode.c measures them on the simulator.
 *
 * It mints a signing authority, the supernodes' homes and every client's
 * identity and certificate itself (the code paths of tests/pki.c), starts
 * `parleyd --role supernode`, and runs the clients as real node stacks
 * (pl_stack in the node role: the code parleyd runs for a user) over real
 * UDP sockets on loopback, one socket and one 127.x.y.z address:port per
 * client. A process may hold at most 20,000 descriptors here (the hard
 * limit, which this container cannot raise), so the clients live in worker
 * processes of at most WORKER_MAX each; the parent steers them over a
 * socketpair and measures the supernode from /proc.
 *
 *   1. Look-ups: two supernodes that find each other by gossip; users
 *      attached to the second publish their records (R = 3, so both hold
 *      every record), askers attached to the first look them up as fast as
 *      the answers come: names whose first replica is the askers' own
 *      supernode (answered locally), then names whose first replica is the
 *      other one (proxied: a FETCH to it, then the answer).
 *   2. Idle: a fresh supernode alone; N clients (BENCH_SWARM_CLIENTS,
 *      200,000 by default) attach at a paced rate, each proving its key and
 *      publishing its record, retrying as nodes do; once the supernode's
 *      status says all are served: keepalives only, then the steady state
 *      of a population that has been up for hours, where the rekeys (one
 *      per session every 600 s) and republishes (every 1800 s) come evenly
 *      spread: the clients make N/600 rekeys and N/1800 republishes a
 *      second.
 *   3. Look-ups at full load: askers among the N look up each other.
 *
 * The supernode's CPU comes from /proc/PID/stat (utime + stime), its memory
 * from /proc/PID/status (VmRSS), drops at its socket from /proc/net/udp,
 * datagrams from the clients' own counts. Figures, not pass/fail; targets
 * are printed beside them.
 *
 * What the clients leave out: the mail client (a node's mailbox costs
 * ~75 KB of memory, 15 GB for 200,000 clients; a real node also asks its
 * supernode for waiting mail once per attach) and TCP (they know UDP works).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../tests/pki.h"
#include "home.h"
#include "ring.h"
#include "sockaddr.h"
#include "stack.h"

/* Clients per worker process: under the 20,000 descriptors a process may hold. */
#define WORKER_MAX 19000
#define MAX_WORKERS 128
/* Clients per loopback address, each on its own port from CLIENT_PORT. */
#define PER_ADDR 200
#define CLIENT_PORT 30000
/* Phase 1's clients are numbered from here (their names and addresses). */
#define LOOKUP_BASE 1000000u

/* ---- small things ------------------------------------------------------------------------- */

static pl_time now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (pl_time)t.tv_sec * PL_SEC + (pl_time)t.tv_nsec / 1000;
}

static double mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void sleep_s(double s)
{
    struct timespec t = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

static unsigned long env_num(const char *name, unsigned long dflt)
{
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    return *end ? dflt : n;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "swarm: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* On a shared machine the benchmark is what the kernel should kill first
 * if memory runs out, not someone else's work. */
static void expendable(void)
{
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;
    if (write(fd, "1000", 4) != 4) { /* best effort */
    }
    close(fd);
}

static void client_name(uint32_t g, char out[16]) { snprintf(out, 16, "u%07u", g); }

/* Client g's address: PER_ADDR clients per 127.x.y.z, x from 20 up. */
static pl_addr client_addr(uint32_t g)
{
    pl_addr a;
    memset(&a, 0, sizeof a);
    uint32_t k = g / PER_ADDR;
    a.family = PL_AF_INET4;
    a.ip[0] = 127;
    a.ip[1] = (uint8_t)(20 + k / 62500);
    a.ip[2] = (uint8_t)(k / 250 % 250 + 1);
    a.ip[3] = (uint8_t)(k % 250 + 1);
    a.port = (uint16_t)(CLIENT_PORT + g % PER_ADDR);
    return a;
}

/* ---- what the parent and a worker say to each other ------------------------------------------ */

enum { CMD_STATS = 1, CMD_ATTACH, CMD_CHURN, CMD_LOOKUP, CMD_QUIT };
enum { NAMES_ANY = 0, NAMES_LOCAL, NAMES_PROXIED };

typedef struct wcmd {
    int op;
    /* ATTACH: clients first..first+count-1 attach to sn at rate a second */
    pl_ovl_peer sn;
    uint32_t first, count;
    double rate;
    /* CHURN: rekeys and republishes a second over this worker's attached clients */
    double rekey_rate, republish_rate;
    /* LOOKUP: clients in [ask_first, ask_first + ask_count) keep `window`
     * look-ups in flight each, of names in [name_first, name_first +
     * name_count) that pass the filter (by the ring of local and other);
     * window 0 stops. */
    uint32_t ask_first, ask_count, window, name_first, name_count;
    int filter;
    uint8_t local_pk[32], other_pk[32];
} wcmd;

typedef struct wstats {
    uint32_t clients, attached, published;
    uint64_t attaches, losses, refusals, publish_failed;
    uint64_t attach_us; /* summed from start to first attach */
    uint64_t sent, received, send_errors;
    uint64_t lookups, found, not_found, lookup_errors;
    uint64_t rekeys, republishes;
    uint64_t handshakes; /* completed by the clients' sessions: attaches and every rekey */
    uint32_t name_pool;
    double cpu_s;
    long rss_kb;
} wstats;

/* ---- a worker: up to WORKER_MAX clients on their own sockets -------------------------------------- */

typedef struct client {
    pl_stack *st;
    int fd;
    uint32_t g;
    uint32_t heap_at; /* UINT32_MAX: not in the heap */
    pl_time due, started;
    uint8_t attached, published, asking, queued;
    uint16_t in_flight;
} client;

typedef struct worker {
    int ctl, ep;
    pl_test_ca ca;
    client *c;
    uint32_t n, cap;
    uint32_t *heap, heap_n;
    /* attaching */
    pl_ovl_peer sn;
    uint32_t next_g, end_g;
    double rate, credit;
    pl_time paced_at;
    uint32_t inflight;
    /* churn */
    double rekey_rate, republish_rate, rekey_credit, republish_credit;
    pl_time churn_at, handshakes_at;
    uint32_t churn_cursor;
    uint64_t handshakes_seen, forced; /* to count the rekeys the sessions make on their own */
    /* look-ups */
    uint32_t window;
    uint32_t *pool, pool_n;
    uint32_t *refill, refill_n;
    uint64_t rng;
    wstats s;
} worker;

static uint32_t next_rand(worker *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return (uint32_t)(w->rng >> 11);
}

static bool heap_less(worker *w, uint32_t a, uint32_t b) { return w->c[w->heap[a]].due < w->c[w->heap[b]].due; }

static void heap_swap(worker *w, uint32_t a, uint32_t b)
{
    uint32_t t = w->heap[a];
    w->heap[a] = w->heap[b];
    w->heap[b] = t;
    w->c[w->heap[a]].heap_at = a;
    w->c[w->heap[b]].heap_at = b;
}

static void heap_fix(worker *w, uint32_t i)
{
    while (i && heap_less(w, i, (i - 1) / 2)) {
        heap_swap(w, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->heap_n && heap_less(w, l, m)) m = l;
        if (r < w->heap_n && heap_less(w, r, m)) m = r;
        if (m == i) return;
        heap_swap(w, i, m);
        i = m;
    }
}

static void heap_remove(worker *w, uint32_t i)
{
    client *c = &w->c[w->heap[i]];
    c->heap_at = UINT32_MAX;
    if (i != --w->heap_n) {
        w->heap[i] = w->heap[w->heap_n];
        w->c[w->heap[i]].heap_at = i;
        heap_fix(w, i);
    }
}

static void refill_later(worker *w, client *c)
{
    if (c->queued || !c->asking) return;
    c->queued = 1;
    w->refill[w->refill_n++] = (uint32_t)(c - w->c);
}

/* After anything that may have moved the client's next timeout. */
static void reschedule(worker *w, client *c)
{
    pl_time t = pl_stack_next_timeout(c->st);
    if (t == PL_TIME_NEVER) {
        if (c->heap_at != UINT32_MAX) heap_remove(w, c->heap_at);
        return;
    }
    c->due = t;
    if (c->heap_at == UINT32_MAX) {
        c->heap_at = w->heap_n;
        w->heap[w->heap_n++] = (uint32_t)(c - w->c);
    }
    heap_fix(w, c->heap_at);
}

typedef struct client_ctx {
    worker *w;
    client *c;
} client_ctx;

static void on_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    client *c = ((client_ctx *)ctx)->c;
    worker *w = ((client_ctx *)ctx)->w;
    struct sockaddr_storage ss;
    socklen_t sl;
    if (to->transport != PL_ADDR_UDP || !pl_sockaddr_from_addr(to, &ss, &sl)) {
        w->s.send_errors++;
        return;
    }
    if (sendto(c->fd, data, len, 0, (struct sockaddr *)&ss, sl) == (ssize_t)len) w->s.sent++;
    else w->s.send_errors++;
}

static void on_event(void *ctx, const pl_stack_event *ev)
{
    client *c = ((client_ctx *)ctx)->c;
    worker *w = ((client_ctx *)ctx)->w;
    if (ev->type != PL_STACK_EV_NODE) return;
    const pl_node_event *e = ev->node;
    switch (e->type) {
    case PL_NODE_EV_ATTACHED:
        w->s.attaches++;
        if (!c->attached) {
            c->attached = 1;
            w->s.attached++;
        }
        if (c->started) {
            w->s.attach_us += e->now - c->started;
            c->started = 0;
            w->inflight--;
        }
        break;
    case PL_NODE_EV_LOST:
        if (c->attached) {
            c->attached = 0;
            w->s.attached--;
        }
        w->s.losses++;
        break;
    case PL_NODE_EV_REFUSED: w->s.refusals++; break;
    case PL_NODE_EV_DIRECTORY: {
        const pl_dirc_event *d = e->dir;
        if (d->type == PL_DIRC_EV_PUBLISHED) {
            if (d->status == PL_DIR_OK && d->stored && !c->published) {
                c->published = 1;
                w->s.published++;
            } else if (d->status != PL_DIR_OK || !d->stored) {
                w->s.publish_failed++;
            }
        } else if (d->type == PL_DIRC_EV_LOOKUP) {
            if (c->in_flight) c->in_flight--;
            w->s.lookups++;
            if (d->status == PL_DIR_OK) w->s.found++;
            else if (d->status == PL_DIR_NOT_FOUND) w->s.not_found++;
            else w->s.lookup_errors++;
            refill_later(w, c);
        }
        break;
    }
    default: break;
    }
}

/* One client context per slot, so that the callbacks know their client. */
static client_ctx *g_ctx;

static bool start_client(worker *w, uint32_t g, pl_time now)
{
    if (w->n == w->cap) return false;
    client *c = &w->c[w->n];
    memset(c, 0, sizeof *c);
    c->g = g;
    c->heap_at = UINT32_MAX;
    pl_addr a = client_addr(g);
    struct sockaddr_storage ss;
    socklen_t sl;
    pl_sockaddr_from_addr(&a, &ss, &sl);
    c->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) die("socket for client %u: %s", g, strerror(errno));
    if (bind(c->fd, (struct sockaddr *)&ss, sl) != 0) {
        /* Someone holds that port: any port on the same address will do. */
        a.port = 0;
        pl_sockaddr_from_addr(&a, &ss, &sl);
        if (bind(c->fd, (struct sockaddr *)&ss, sl) != 0) die("bind for client %u: %s", g, strerror(errno));
        socklen_t l = sizeof ss;
        getsockname(c->fd, (struct sockaddr *)&ss, &l);
        pl_sockaddr_to_addr((struct sockaddr *)&ss, &a);
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = w->n};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) die("epoll_ctl: %s", strerror(errno));

    char name[16];
    client_name(g, name);
    pl_test_user u;
    w->ca.next_serial = 1000 + (uint64_t)g;
    pl_test_user_make(&u, &w->ca, name, now - 3600 * PL_SEC, now + 2 * 86400 * PL_SEC, NULL);
    pl_stack_config sc = {.identity = &u.id,
                          .cert = u.cert_bytes,
                          .cert_len = u.cert_len,
                          .rng = pl_rng_system(),
                          .role = PL_ROLE_NODE,
                          .max_peers = 1, /* its supernode: look-ups go through it */
                          .self_addr = a,
                          .bootstrap = &w->sn,
                          .n_bootstrap = 1,
                          .no_tcp = true,
                          .promote = PL_PROMOTE_NEVER,
                          .no_mailbox = true};
    memcpy(sc.ca_pk, w->ca.pk, 32);
    g_ctx[w->n] = (client_ctx){w, c};
    pl_stack_io io = {&g_ctx[w->n], on_send, NULL, NULL, on_event, NULL};
    pl_stack_err err = pl_stack_new(&c->st, &sc, &io);
    sodium_memzero(&u, sizeof u);
    if (err) die("client %u: %s", g, pl_stack_strerror(err));
    w->n++;
    w->s.clients++;
    c->started = now;
    w->inflight++;
    pl_stack_start(c->st, now);
    reschedule(w, c);
    return true;
}

static uint64_t handshakes(const worker *w)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < w->n; i++) n += pl_sec_get_stats(pl_link_sec(pl_stack_link(w->c[i].st))).handshakes_completed;
    return n;
}

static void fill_stats(worker *w)
{
    w->s.handshakes = handshakes(w);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    w->s.cpu_s = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
    w->s.rss_kb = 0;
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &w->s.rss_kb) == 1) break;
    if (f) fclose(f);
    w->s.name_pool = w->pool_n;
}

static void build_pool(worker *w, const wcmd *m)
{
    free(w->pool);
    w->pool = calloc(m->name_count ? m->name_count : 1, sizeof *w->pool);
    w->pool_n = 0;
    pl_ring *ring = NULL;
    if (m->filter != NAMES_ANY) {
        if (pl_ring_new(&ring, NULL, 0) != PL_RING_OK || pl_ring_add(ring, m->local_pk) != PL_RING_OK ||
            pl_ring_add(ring, m->other_pk) != PL_RING_OK)
            die("ring");
    }
    for (uint32_t i = 0; i < m->name_count; i++) {
        uint32_t g = m->name_first + i;
        if (ring) {
            char name[16];
            uint8_t key[32], reps[PL_RING_MAX_REPLICAS][32];
            client_name(g, name);
            pl_ring_key_for_name(name, key);
            size_t n = pl_ring_replicas(ring, key, PL_DIR_DEFAULT_REPLICAS, reps);
            bool local = n && memcmp(reps[0], m->local_pk, 32) == 0;
            if (local != (m->filter == NAMES_LOCAL)) continue;
        }
        w->pool[w->pool_n++] = g;
    }
    pl_ring_free(ring);
}

static void lookups_refill(worker *w, pl_time now)
{
    while (w->refill_n) {
        client *c = &w->c[w->refill[--w->refill_n]];
        c->queued = 0;
        if (!c->asking || !c->attached || !w->pool_n) continue;
        pl_dirc *dc = pl_node_directory(pl_stack_node(c->st));
        while (c->in_flight < w->window) {
            char name[16];
            client_name(w->pool[next_rand(w) % w->pool_n], name);
            if (pl_dirc_lookup(dc, name, now, NULL) != PL_DIRC_OK) break;
            c->in_flight++;
        }
        reschedule(w, c);
    }
}

static void handle_cmd(worker *w, const wcmd *m, pl_time now)
{
    switch (m->op) {
    case CMD_ATTACH:
        w->sn = m->sn;
        w->next_g = m->first;
        w->end_g = m->first + m->count;
        w->rate = m->rate;
        w->credit = 1;
        w->paced_at = now;
        break;
    case CMD_CHURN:
        w->rekey_rate = m->rekey_rate;
        w->republish_rate = m->republish_rate;
        w->rekey_credit = w->republish_credit = 0;
        w->churn_at = w->handshakes_at = now;
        w->handshakes_seen = handshakes(w);
        w->forced = 0;
        break;
    case CMD_LOOKUP:
        w->window = m->window;
        if (m->window) build_pool(w, m);
        for (uint32_t i = 0; i < w->n; i++) {
            client *c = &w->c[i];
            c->asking = m->window && c->g >= m->ask_first && c->g - m->ask_first < m->ask_count;
            if (c->asking) refill_later(w, c);
        }
        lookups_refill(w, now);
        break;
    case CMD_QUIT: break;
    }
    fill_stats(w);
    if (send(w->ctl, &w->s, sizeof w->s, 0) < 0) _exit(1);
    if (m->op == CMD_QUIT) _exit(0);
}

static void churn(worker *w, pl_time now)
{
    if (!w->n || (w->rekey_rate <= 0 && w->republish_rate <= 0)) return;
    double dt = (double)(now - w->churn_at) / PL_SEC;
    w->churn_at = now;
    w->rekey_credit += w->rekey_rate * dt;
    /* Sessions older than ten minutes rekey on their own: those count
     * towards the rate, so that rekeys stay at N/600 a second in all. */
    if (now - w->handshakes_at >= PL_SEC) {
        uint64_t h = handshakes(w), natural = h - w->handshakes_seen;
        natural = natural > w->forced ? natural - w->forced : 0;
        w->rekey_credit -= (double)natural;
        w->handshakes_seen = h;
        w->forced = 0;
        w->handshakes_at = now;
    }
    w->republish_credit += w->republish_rate * dt;
    while (w->rekey_credit >= 1 || w->republish_credit >= 1) {
        client *c = &w->c[w->churn_cursor++ % w->n];
        if (!c->attached) {
            w->rekey_credit -= w->rekey_credit >= 1;
            w->republish_credit -= w->republish_credit >= 1 && w->rekey_credit < 1;
            continue;
        }
        if (w->rekey_credit >= 1) {
            w->rekey_credit -= 1;
            pl_sec *sec = pl_link_sec(pl_stack_link(c->st));
            pl_sec_peer *p = pl_sec_find(sec, w->sn.pk);
            if (p && pl_sec_rekey(sec, p, now) == PL_SEC_OK) {
                w->s.rekeys++;
                w->forced++;
            }
        } else {
            w->republish_credit -= 1;
            if (pl_dirc_set_presence(pl_node_directory(pl_stack_node(c->st)), PL_PRESENCE_ONLINE, "", now) ==
                PL_DIRC_OK)
                w->s.republishes++;
        }
        reschedule(w, c);
    }
}

static void worker_run(int ctl, const pl_test_ca *ca, uint32_t cap, uint64_t seed)
{
    static worker w;
    w.ctl = ctl;
    w.ca = *ca;
    w.cap = cap;
    w.rng = seed | 1;
    w.c = calloc(cap, sizeof *w.c);
    w.heap = calloc(cap, sizeof *w.heap);
    w.refill = calloc(cap, sizeof *w.refill);
    g_ctx = calloc(cap, sizeof *g_ctx);
    w.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!w.c || !w.heap || !w.refill || !g_ctx || w.ep < 0) die("worker set-up");
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(w.ep, EPOLL_CTL_ADD, ctl, &ev);
    static uint8_t buf[2048];
    struct epoll_event evs[256];
    for (;;) {
        pl_time now = now_us();
        /* Attaches, paced, and never more than ~1.5 s of them unanswered:
         * a supernode that falls behind slows the swarm down instead of
         * drowning in retries. */
        if (w.next_g < w.end_g) {
            w.credit += w.rate * (double)(now - w.paced_at) / PL_SEC;
            w.paced_at = now;
            /* At most 50 ms of attaches in one go: paced, not in bursts. */
            if (w.credit > w.rate / 20 + 1) w.credit = w.rate / 20 + 1;
            double max_inflight = w.rate * 1.5 + 10;
            while (w.credit >= 1 && w.next_g < w.end_g && w.inflight < max_inflight) {
                if (!start_client(&w, w.next_g, now)) break;
                w.next_g++;
                w.credit -= 1;
            }
        }
        churn(&w, now);
        while (w.heap_n && w.c[w.heap[0]].due <= now) {
            client *c = &w.c[w.heap[0]];
            pl_stack_tick(c->st, now);
            reschedule(&w, c);
        }
        lookups_refill(&w, now);
        int timeout = 1000;
        if (w.heap_n) {
            pl_time due = w.c[w.heap[0]].due;
            pl_time wait = due > now ? (due - now + 999) / 1000 : 0;
            if (wait < (pl_time)timeout) timeout = (int)wait;
        }
        if ((w.next_g < w.end_g || w.rekey_rate > 0 || w.republish_rate > 0) && timeout > 5) timeout = 5;
        int n = epoll_wait(w.ep, evs, 256, timeout);
        now = now_us();
        for (int i = 0; i < n; i++) {
            uint32_t k = evs[i].data.u32;
            if (k == UINT32_MAX) {
                wcmd m;
                ssize_t got = recv(ctl, &m, sizeof m, 0);
                if (got == 0) _exit(0);
                if (got == (ssize_t)sizeof m) handle_cmd(&w, &m, now);
                continue;
            }
            client *c = &w.c[k];
            for (int j = 0; j < 8; j++) {
                struct sockaddr_storage from;
                socklen_t fl = sizeof from;
                ssize_t len = recvfrom(c->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
                if (len < 0) break;
                w.s.received++;
                pl_addr fa;
                pl_sockaddr_to_addr((struct sockaddr *)&from, &fa);
                pl_stack_receive(c->st, &fa, buf, (size_t)len, now);
            }
            reschedule(&w, c);
        }
    }
}

/* ---- the parent: supernode processes and measurements ------------------------------------------ */

typedef struct wk {
    pid_t pid;
    int ctl;
} wk;

typedef struct supernode {
    char home[256], log[300], listen[64];
    pl_ovl_peer peer;
    pid_t pid;
} supernode;

static const char *g_build;
static char g_dir[128];

static wstats ask(wk *w, const wcmd *m)
{
    wstats s;
    memset(&s, 0, sizeof s);
    if (send(w->ctl, m, sizeof *m, 0) != (ssize_t)sizeof *m) die("a worker went away");
    if (recv(w->ctl, &s, sizeof s, 0) != (ssize_t)sizeof s && m->op != CMD_QUIT) die("a worker went silent");
    return s;
}

static wstats ask_all(wk *ws, int n, const wcmd *m)
{
    wstats t;
    memset(&t, 0, sizeof t);
    for (int i = 0; i < n; i++) {
        wstats s = ask(&ws[i], m);
        t.clients += s.clients;
        t.attached += s.attached;
        t.published += s.published;
        t.attaches += s.attaches;
        t.losses += s.losses;
        t.refusals += s.refusals;
        t.publish_failed += s.publish_failed;
        t.attach_us += s.attach_us;
        t.sent += s.sent;
        t.received += s.received;
        t.send_errors += s.send_errors;
        t.lookups += s.lookups;
        t.found += s.found;
        t.not_found += s.not_found;
        t.lookup_errors += s.lookup_errors;
        t.rekeys += s.rekeys;
        t.handshakes += s.handshakes;
        t.republishes += s.republishes;
        t.name_pool += s.name_pool;
        t.cpu_s += s.cpu_s;
        t.rss_kb += s.rss_kb;
    }
    return t;
}

static wstats stats_all(wk *ws, int n)
{
    wcmd m = {.op = CMD_STATS};
    return ask_all(ws, n, &m);
}

static int spawn_workers(wk *ws, uint32_t clients, const pl_test_ca *ca)
{
    int n = (int)((clients + WORKER_MAX - 1) / WORKER_MAX);
    if (n < 1) n = 1;
    if (n > MAX_WORKERS) die("too many clients");
    fflush(stdout);
    fflush(stderr);
    for (int i = 0; i < n; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair: %s", strerror(errno));
        pid_t pid = fork();
        if (pid < 0) die("fork: %s", strerror(errno));
        if (pid == 0) {
            close(sv[0]);
            for (int k = 0; k < i; k++) close(ws[k].ctl);
            uint64_t seed;
            randombytes_buf(&seed, sizeof seed);
            /* The swarm yields to the supernode it measures: a starved
             * supernode would measure the generator, not itself. */
            setpriority(PRIO_PROCESS, 0, 19);
            expendable();
            worker_run(sv[1], ca, (clients + (uint32_t)n - 1) / (uint32_t)n, seed);
            _exit(0);
        }
        close(sv[1]);
        ws[i] = (wk){pid, sv[0]};
    }
    return n;
}

static void quit_workers(wk *ws, int n)
{
    wcmd m = {.op = CMD_QUIT};
    for (int i = 0; i < n; i++) {
        ask(&ws[i], &m);
        close(ws[i].ctl);
        waitpid(ws[i].pid, NULL, 0);
    }
}

static void make_home(supernode *s, pl_test_ca *ca, const char *name, const char *listen)
{
    snprintf(s->home, sizeof s->home, "%s/%s", g_dir, name);
    snprintf(s->log, sizeof s->log, "%s/%s.log", g_dir, name);
    snprintf(s->listen, sizeof s->listen, "%s", listen);
    if (mkdir(s->home, 0700) != 0) die("mkdir %s: %s", s->home, strerror(errno));
    pl_test_user u;
    pl_time now = now_us();
    pl_test_user_make(&u, ca, name, now - 3600 * PL_SEC, now + 2 * 86400 * PL_SEC, NULL);
    char path[PL_HOME_PATH_MAX + 32];
    pl_home_path(s->home, "identity.key", path, sizeof path);
    if (pl_identity_save(&u.id, path, NULL, true) != PL_IDENTITY_OK) die("cannot write %s", path);
    pl_home_path(s->home, "identity.cert", path, sizeof path);
    if (!pl_file_write_atomic(path, u.cert_bytes, u.cert_len, 0600)) die("cannot write %s", path);
    pl_home_pin pin = {.have_key = true};
    memcpy(pin.key, ca->pk, 32);
    if (!pl_home_write_pin(s->home, &pin)) die("cannot pin the authority in %s", s->home);
    memcpy(s->peer.pk, u.id.sign_pk, 32);
    if (!pl_addr_parse(&s->peer.addr, listen, 0)) die("bad address %s", listen);
    sodium_memzero(&u, sizeof u);
}

static void start_supernode(supernode *s, const char *bootstrap_file, uint32_t max_clients)
{
    int out[2];
    if (pipe(out) != 0) die("pipe");
    fflush(stdout);
    fflush(stderr);
    s->pid = fork();
    if (s->pid < 0) die("fork");
    if (s->pid == 0) {
        char exe[512], mc[32];
        snprintf(exe, sizeof exe, "%s/parleyd", g_build);
        snprintf(mc, sizeof mc, "%u", max_clients);
        expendable();
        int log = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(out[1], 1);
        if (log >= 0) dup2(log, 2);
        close(out[0]);
        const char *argv[16] = {exe, "--home", s->home, "--role", "supernode", "--listen", s->listen};
        int k = 7;
        if (bootstrap_file) {
            argv[k++] = "--bootstrap-file";
            argv[k++] = bootstrap_file;
        }
        if (max_clients) {
            argv[k++] = "--max-clients";
            argv[k++] = mc;
        }
        execv(exe, (char **)argv);
        _exit(127);
    }
    close(out[1]);
    struct pollfd p = {out[0], POLLIN, 0};
    char line[256] = "";
    if (poll(&p, 1, 10000) == 1) {
        ssize_t n = read(out[0], line, sizeof line - 1);
        line[n > 0 ? n : 0] = 0;
    }
    close(out[0]);
    if (strncmp(line, "listening", 9) != 0) die("parleyd did not start (see %s)", s->log);
}

static void stop_supernode(supernode *s)
{
    if (s->pid <= 0) return;
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            s->pid = 0;
            return;
        }
        sleep_s(0.05);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

/* `parley --home H --json status`, parsed; NULL when it fails. */
static cJSON *sn_status(const supernode *s)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/parley --home %s --json status 2>/dev/null", g_build, s->home);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    pclose(p);
    return cJSON_Parse(buf);
}

static double serving(const supernode *s, const char *field)
{
    cJSON *r = sn_status(s);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "serving"), field);
    double x = cJSON_IsNumber(v) ? v->valuedouble : -1;
    cJSON_Delete(r);
    return x;
}

/* utime + stime of a process, in seconds. */
static double proc_cpu(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long proc_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

/* The drops counted at the supernode's UDP socket (its receive queue was
 * full), asked of the kernel for that one socket by sock_diag. Reading
 * /proc/net/udp instead walks every socket of the namespace: with 200,000
 * client sockets one read took minutes. -1 when the kernel does not say. */
static long udp_drops(const pl_addr *a)
{
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) return -1;
    struct {
        struct nlmsghdr nh;
        struct inet_diag_req_v2 req;
    } q;
    memset(&q, 0, sizeof q);
    q.nh.nlmsg_len = sizeof q;
    q.nh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    q.nh.nlmsg_flags = NLM_F_REQUEST;
    q.req.sdiag_family = AF_INET;
    q.req.sdiag_protocol = IPPROTO_UDP;
    q.req.idiag_ext = 1 << (INET_DIAG_SKMEMINFO - 1);
    q.req.idiag_states = ~0u;
    /* The kernel looks the socket up as it would for a datagram arriving:
     * the socket's own address is the "destination" of the request. */
    q.req.id.idiag_dport = htons(a->port);
    memcpy(q.req.id.idiag_dst, a->ip, 4);
    q.req.id.idiag_cookie[0] = q.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    long drops = -1;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(fd, &q, sizeof q, 0, (struct sockaddr *)&kernel, sizeof kernel) == (ssize_t)sizeof q) {
        static uint8_t buf[8192] __attribute__((aligned(4)));
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        struct nlmsghdr *h = (struct nlmsghdr *)buf;
        if (n > 0 && NLMSG_OK(h, (size_t)n) && h->nlmsg_type == SOCK_DIAG_BY_FAMILY) {
            struct inet_diag_msg *m = NLMSG_DATA(h);
            int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
            for (struct rtattr *at = (struct rtattr *)(m + 1); RTA_OK(at, len); at = RTA_NEXT(at, len))
                if (at->rta_type == INET_DIAG_SKMEMINFO && RTA_PAYLOAD(at) >= (SK_MEMINFO_DROPS + 1) * sizeof(uint32_t))
                    drops = ((const uint32_t *)RTA_DATA(at))[SK_MEMINFO_DROPS];
        }
    }
    close(fd);
    return drops;
}

typedef struct window {
    double t, cpu, cpu2;
    wstats w;
    long drops;
} window;

static window sample(const supernode *s, const supernode *s2, wk *ws, int nw)
{
    window x;
    x.t = mono();
    x.cpu = proc_cpu(s->pid);
    x.cpu2 = s2 ? proc_cpu(s2->pid) : 0;
    x.w = stats_all(ws, nw);
    x.drops = udp_drops(&s->peer.addr);
    return x;
}

static const char *si(double v, char *buf, size_t cap)
{
    if (v >= 1e6) snprintf(buf, cap, "%.2fM", v / 1e6);
    else if (v >= 1e4) snprintf(buf, cap, "%.0fk", v / 1e3);
    else snprintf(buf, cap, "%.0f", v);
    return buf;
}

/* ---- phase 1: look-ups through one supernode, local and proxied ------------------------------------ */

typedef struct lookup_result {
    double rate, cpu_share, other_share, per_core, gen_cpu_share;
    uint64_t done, found;
    uint32_t pool;
} lookup_result;

static lookup_result measure_lookups(supernode *s, supernode *other, wk *ws, int nw, wcmd *m, double seconds)
{
    lookup_result r;
    memset(&r, 0, sizeof r);
    wstats st = ask_all(ws, nw, m);
    r.pool = st.name_pool / (uint32_t)nw;
    sleep_s(2); /* the window fills */
    window a = sample(s, other, ws, nw);
    sleep_s(seconds);
    window b = sample(s, other, ws, nw);
    wcmd stop = *m;
    stop.window = 0;
    ask_all(ws, nw, &stop);
    double dt = b.t - a.t;
    r.done = b.w.lookups - a.w.lookups;
    r.found = b.w.found - a.w.found;
    r.rate = r.done / dt;
    r.cpu_share = (b.cpu - a.cpu) / dt;
    r.other_share = (b.cpu2 - a.cpu2) / dt;
    r.per_core = r.cpu_share > 0 ? r.rate / r.cpu_share : 0;
    r.gen_cpu_share = (b.w.cpu_s - a.w.cpu_s) / dt;
    sleep_s(1); /* what was in flight comes back */
    return r;
}

static void wait_attached(supernode *s, wk *ws, int nw, uint32_t want, bool published, double limit)
{
    double t0 = mono();
    while (mono() - t0 < limit) {
        wstats st = stats_all(ws, nw);
        if (st.attached >= want && (!published || st.published >= want)) return;
        sleep_s(0.5);
    }
    wstats st = stats_all(ws, nw);
    fprintf(stderr, "swarm: only %u of %u attached (%u published) after %.0f s (see %s)\n", st.attached, want,
            st.published, limit, s->log);
}

static void phase_lookups(pl_test_ca *ca, double seconds)
{
    enum { USERS = 2000, ASKERS = 200, WINDOW = 8 };
    supernode s1, s2;
    char a1[64], a2[64], boot[300];
    int port = 20000 + (int)(getpid() % 20000);
    snprintf(a1, sizeof a1, "127.19.1.1:%d", port);
    snprintf(a2, sizeof a2, "127.19.1.2:%d", port);
    make_home(&s1, ca, "super1", a1);
    make_home(&s2, ca, "super2", a2);
    snprintf(boot, sizeof boot, "%s/supernodes", g_dir);
    FILE *f = fopen(boot, "w");
    if (!f) die("cannot write %s", boot);
    char h1[65], h2[65];
    pl_hex_encode(s1.peer.pk, 32, h1);
    pl_hex_encode(s2.peer.pk, 32, h2);
    fprintf(f, "%s %s\n%s %s\n", h1, a1, h2, a2);
    fclose(f);
    start_supernode(&s1, boot, 0);
    start_supernode(&s2, boot, 0);
    double t0 = mono();
    while (serving(&s1, "supernodes_alive") < 2 && mono() - t0 < 20) sleep_s(0.2);

    wk ws[1];
    int nw = spawn_workers(ws, USERS + ASKERS, ca);
    wcmd m = {.op = CMD_ATTACH, .sn = s2.peer, .first = LOOKUP_BASE, .count = USERS, .rate = 500};
    ask_all(ws, nw, &m);
    wait_attached(&s2, ws, nw, USERS, true, 60);
    m = (wcmd){.op = CMD_ATTACH, .sn = s1.peer, .first = LOOKUP_BASE + USERS, .count = ASKERS, .rate = 500};
    ask_all(ws, nw, &m);
    wait_attached(&s1, ws, nw, USERS + ASKERS, true, 60);

    printf("look-ups through one supernode: 2 supernodes by gossip, R = 3 so both hold every record;\n"
           "  %d users attached to the other, %d askers on this one keeping %d look-ups each in flight, %.0f s each\n",
           USERS, ASKERS, WINDOW, seconds);
    wcmd look = {.op = CMD_LOOKUP, .ask_first = LOOKUP_BASE + USERS, .ask_count = ASKERS, .window = WINDOW,
                 .name_first = LOOKUP_BASE, .name_count = USERS, .filter = NAMES_LOCAL};
    memcpy(look.local_pk, s1.peer.pk, 32);
    memcpy(look.other_pk, s2.peer.pk, 32);
    lookup_result loc = measure_lookups(&s1, &s2, ws, nw, &look, seconds);
    look.filter = NAMES_PROXIED;
    lookup_result prx = measure_lookups(&s1, &s2, ws, nw, &look, seconds);
    printf("  answered locally (%u names whose first replica is this supernode): %.0f/s, %llu of %llu found;\n"
           "    supernode CPU %.1f%% of a core: %.0f look-ups per core-second   (the clients took %.0f%% of a core)\n",
           loc.pool, loc.rate, (unsigned long long)loc.found, (unsigned long long)loc.done, 100 * loc.cpu_share,
           loc.per_core, 100 * loc.gen_cpu_share);
    printf("  proxied (%u names whose first replica is the other: FETCH, answer): %.0f/s, %llu of %llu found;\n"
           "    supernode CPU %.1f%% of a core: %.0f look-ups per core-second; the other served the FETCHes with "
           "%.1f%%: %.0f per core-second\n",
           prx.pool, prx.rate, (unsigned long long)prx.found, (unsigned long long)prx.done, 100 * prx.cpu_share,
           prx.per_core, 100 * prx.other_share, prx.other_share > 0 ? prx.rate / prx.other_share : 0);
    fflush(stdout);
    quit_workers(ws, nw);
    stop_supernode(&s1);
    stop_supernode(&s2);
}

/* ---- phase 2 and 3: one supernode, N idle clients, then look-ups at full load ------------------- */

static void idle_window(const char *what, supernode *s, wk *ws, int nw, double seconds)
{
    window a = sample(s, NULL, ws, nw);
    sleep_s(seconds);
    window b = sample(s, NULL, ws, nw);
    double dt = b.t - a.t;
    double share = (b.cpu - a.cpu) / dt;
    double dg = (double)(b.w.sent - a.w.sent + b.w.received - a.w.received) / dt;
    char k[32];
    printf("  %s (%.0f s): %.0f datagrams/s through the supernode", what, dt, dg);
    printf(" (handshakes %.0f/s: %.0f forced rekeys/s, the rest on their own; republishes %.0f/s)",
           (b.w.handshakes - a.w.handshakes) / dt, (b.w.rekeys - a.w.rekeys) / dt,
           (b.w.republishes - a.w.republishes) / dt);
    printf("\n    supernode CPU %.2f%% of a core: %s idle clients per core   target >= 200000\n", 100 * share,
           share > 0 ? si(b.w.attached / share, k, sizeof k) : "inf");
    printf("    clients attached %u, lost in the window %llu, dropped at the supernode's socket %ld, send errors %llu\n",
           b.w.attached, (unsigned long long)(b.w.losses - a.w.losses), b.drops - a.drops,
           (unsigned long long)(b.w.send_errors - a.w.send_errors));
    fflush(stdout);
}

static void phase_idle(pl_test_ca *ca, uint32_t n, double rate, double idle_s, double lookup_s)
{
    supernode s;
    char a[64];
    int port = 20000 + (int)(getpid() % 20000);
    snprintf(a, sizeof a, "127.19.2.1:%d", port);
    make_home(&s, ca, "super0", a);
    /* parleyd's default limit (250,000), unless the swarm needs more or
     * BENCH_SWARM_MAX_CLIENTS says otherwise. */
    uint32_t max_clients = (uint32_t)env_num("BENCH_SWARM_MAX_CLIENTS", 0);
    if (!max_clients && n > PL_SUPER_DEFAULT_MAX_CLIENTS) max_clients = n + n / 4;
    start_supernode(&s, NULL, max_clients);
    sleep_s(1);
    long rss0 = proc_rss_kb(s.pid);
    double cpu0 = proc_cpu(s.pid);
    long drops0 = udp_drops(&s.peer.addr);

    printf("one supernode alone, %u clients attaching at up to %.0f a second (each a real node stack on its own "
           "socket)\n", n, rate);
    fflush(stdout);
    wk ws[MAX_WORKERS];
    int nw = spawn_workers(ws, n, ca);
    uint32_t per = (n + (uint32_t)nw - 1) / (uint32_t)nw;
    double t0 = mono();
    for (int i = 0; i < nw; i++) {
        uint32_t first = (uint32_t)i * per, count = first < n ? (n - first < per ? n - first : per) : 0;
        wcmd m = {.op = CMD_ATTACH, .sn = s.peer, .first = first, .count = count, .rate = rate / nw};
        ask(&ws[i], &m);
    }
    /* Until the supernode says it serves them all. */
    double last_print = t0, last_progress = t0;
    uint32_t last_attached = 0;
    double served = 0;
    for (;;) {
        sleep_s(1);
        wstats st = stats_all(ws, nw);
        double t = mono();
        if (st.attached > last_attached) {
            last_attached = st.attached;
            last_progress = t;
        }
        if (st.attached >= n) {
            served = serving(&s, "clients");
            if (served >= n) break;
        }
        if (t - last_print >= 15) {
            fprintf(stderr, "swarm: %4.0f s: %u attached (%.0f/s), %u published, supernode CPU %.0f%% so far, RSS %ld MB\n",
                    t - t0, st.attached, st.attached / (t - t0), st.published, 100 * (proc_cpu(s.pid) - cpu0) / (t - t0),
                    proc_rss_kb(s.pid) / 1024);
            last_print = t;
        }
        if (t - last_progress > 60) {
            fprintf(stderr, "swarm: no progress for 60 s; measuring what is attached\n");
            served = serving(&s, "clients");
            break;
        }
    }
    double t_att = mono() - t0;
    double cpu_att = proc_cpu(s.pid) - cpu0;
    wstats st = stats_all(ws, nw);
    sleep_s(5); /* the last publishes and their answers */
    long rss1 = proc_rss_kb(s.pid);
    double per_client = st.attached ? (rss1 - rss0) * 1024.0 / st.attached : 0;
    printf("  attached %u in %.0f s (%.0f/s; mean %.0f ms from start to attached), supernode serving %.0f;\n"
           "    published %u; refusals %llu, losses %llu, attaches %llu, handshakes %llu\n",
           st.attached, t_att, st.attached / t_att, st.attaches ? st.attach_us / 1e3 / st.attached : 0, served,
           st.published, (unsigned long long)st.refusals, (unsigned long long)st.losses,
           (unsigned long long)st.attaches, (unsigned long long)st.handshakes);
    printf("    supernode CPU while attaching: %.0f s, %.2f ms per client\n", cpu_att,
           st.attached ? cpu_att * 1e3 / st.attached : 0);
    printf("  memory: supernode RSS %.1f MB before, %.1f MB with %u clients: %.0f bytes per client\n"
           "    %.0f MB for 200,000   target < 1 GiB (1024 MiB) for 200k\n",
           rss0 / 1024.0, rss1 / 1024.0, st.attached, per_client, per_client * 200000 / (1024 * 1024));
    printf("  dropped at the supernode's socket while attaching: %ld\n", udp_drops(&s.peer.addr) - drops0);
    fflush(stdout);

    idle_window("idle, keepalives only", &s, ws, nw, idle_s);
    wcmd churn = {.op = CMD_CHURN, .rekey_rate = (double)st.attached / 600 / nw,
                  .republish_rate = (double)st.attached / 1800 / nw};
    ask_all(ws, nw, &churn);
    sleep_s(2);
    idle_window("idle, steady state: keepalives, rekeys every 600 s, republishes every 1800 s", &s, ws, nw, idle_s);
    churn.rekey_rate = churn.republish_rate = 0;
    ask_all(ws, nw, &churn);
    long rss2 = proc_rss_kb(s.pid);
    printf("  supernode RSS after idling: %.1f MB\n", rss2 / 1024.0);

    if (lookup_s > 0) {
        /* 100 askers per worker, names of anyone in the swarm: every record
         * is on this supernode (it is alone), so every answer is local. */
        enum { ASK_PER_WORKER = 100, WINDOW = 8 };
        for (int i = 0; i < nw; i++) {
            uint32_t first = (uint32_t)i * per;
            wcmd look = {.op = CMD_LOOKUP, .ask_first = first, .ask_count = ASK_PER_WORKER, .window = WINDOW,
                         .name_first = 0, .name_count = n, .filter = NAMES_ANY};
            ask(&ws[i], &look);
        }
        sleep_s(2);
        window a2 = sample(&s, NULL, ws, nw);
        sleep_s(lookup_s);
        window b2 = sample(&s, NULL, ws, nw);
        wcmd stop = {.op = CMD_LOOKUP};
        ask_all(ws, nw, &stop);
        double dt = b2.t - a2.t;
        double rate_l = (b2.w.lookups - a2.w.lookups) / dt, share = (b2.cpu - a2.cpu) / dt;
        printf("look-ups at full load: %u clients attached, %d askers with %d in flight each, names of anyone in the "
               "swarm (all held here)\n", b2.w.attached, ASK_PER_WORKER * nw, WINDOW);
        printf("  %.0f/s answered, %llu of %llu found; supernode CPU %.1f%% of a core: %.0f look-ups per "
               "core-second   (the clients took %.0f%% of a core)\n",
               rate_l, (unsigned long long)(b2.w.found - a2.w.found), (unsigned long long)(b2.w.lookups - a2.w.lookups),
               100 * share, share > 0 ? rate_l / share : 0, 100 * (b2.w.cpu_s - a2.w.cpu_s) / dt);
    }
    wstats fin = stats_all(ws, nw);
    printf("the swarm itself: %d processes, RSS %.0f MB (%.1f KB per client; sockets' kernel memory not counted), "
           "CPU %.0f s in all\n", nw,
           fin.rss_kb / 1024.0, fin.clients ? fin.rss_kb / (double)fin.clients : 0, fin.cpu_s);
    fflush(stdout);
    /* The supernode goes first, so that the clients' sockets closing is no news to anyone. */
    stop_supernode(&s);
    quit_workers(ws, nw);
}

int main(void)
{
    if (!pl_init()) die("cannot initialise the crypto library");
    signal(SIGPIPE, SIG_IGN);
    g_build = getenv("PARLEY_BUILD") ? getenv("PARLEY_BUILD") : "build/release";
    char exe[512];
    snprintf(exe, sizeof exe, "%s/parleyd", g_build);
    if (access(exe, X_OK) != 0) die("no %s (build first, or set PARLEY_BUILD)", exe);
    uint32_t n = (uint32_t)env_num("BENCH_SWARM_CLIENTS", 200000);
    double rate = (double)env_num("BENCH_SWARM_RATE", 1000);
    double idle_s = (double)env_num("BENCH_SWARM_IDLE_S", 60);
    double lookup_s = (double)env_num("BENCH_SWARM_LOOKUP_S", 15);
    if (n == 0 || rate == 0) die("BENCH_SWARM_CLIENTS and BENCH_SWARM_RATE want positive numbers");
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < WORKER_MAX + 100) die("RLIMIT_NOFILE is %lu; a worker needs %d", (unsigned long)rl.rlim_cur, WORKER_MAX + 100);
    snprintf(g_dir, sizeof g_dir, "/tmp/pl-swarm.XXXXXX");
    if (!mkdtemp(g_dir)) die("mkdtemp: %s", strerror(errno));

    pl_test_ca ca;
    pl_test_ca_init(&ca);
    printf("swarm: real parleyd supernodes and real clients on loopback (%ld cores; logs in %s)\n",
           sysconf(_SC_NPROCESSORS_ONLN), g_dir);
    fflush(stdout);
    double t0 = mono();
    if (lookup_s > 0) phase_lookups(&ca, lookup_s);
    phase_idle(&ca, n, rate, idle_s, lookup_s);
    printf("wall time %.0f s\n", mono() - t0);
    if (!getenv("BENCH_SWARM_KEEP")) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
        if (system(cmd) != 0) fprintf(stderr, "swarm: could not remove %s\n", g_dir);
    }
    return 0;
}
