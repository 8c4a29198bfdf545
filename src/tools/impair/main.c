/*
 * parley-impair - a user-space UDP relay that impairs what it forwards.
 *
 *   parley-impair [relay] --listen ADDR:PORT --to ADDR:PORT [options]
 *   parley-impair echo --listen ADDR:PORT [--json]            (probe.c)
 *   parley-impair probe --to ADDR:PORT [--count N] ...         (probe.c)
 *
 * The kernel here has no netem, so tests put this relay between two real
 * endpoints. A client sends to --listen; the relay forwards each datagram to
 * --to from a socket of its own for that client (so the upstream sees one
 * source port per client, as behind a NAT), and forwards the upstream's
 * replies back to that client. "up" is client -> upstream, "down" the
 * replies. Every decision (loss, delay, reordering...) is made by the
 * sans-I/O core in src/core/impair.c from a seeded generator, so a run is
 * reproducible; this file only moves datagrams on the event loop.
 *
 * Memory is fixed at start: the core's queue has --queue slots (datagrams
 * held at once, both directions; a full queue drops and counts), the client
 * table --max-clients entries (the stalest client is evicted when a new one
 * arrives; idle clients expire after --idle-s seconds). Nothing is allocated
 * per datagram; opening a client's upstream socket is the only allocation
 * after start.
 *
 * Timing: the loop wakes in whole milliseconds, rounded up, so a datagram
 * leaves up to ~1 ms after the time the model gave it ("late" in the
 * statistics says how much, measured).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "impair.h"
#include "impair_tool.h"
#include "loop.h"
#include "parley.h"

#define DEFAULT_MAX_CLIENTS 64
#define DEFAULT_IDLE_S 120
#define DEFAULT_QUEUE 4096
#define DEFAULT_REORDER_GAP_MS 40
#define DEFAULT_RATE_QUEUE_MS 100
#define DEFAULT_BURST_LEN 3.0
#define SWEEP_INTERVAL PL_SEC

typedef struct relay relay;

typedef struct client {
    relay *r;
    bool used;
    uint32_t index;
    uint32_t gen; /* bumped each time the slot is reused, so queued datagrams of a gone client are dropped */
    pl_addr addr;
    pl_udp *up_sock;
    pl_time last;
} client;

typedef struct dir_counters {
    uint64_t send_full, send_errors;
    uint64_t client_gone; /* due, but its client had been evicted or expired */
    double late_sum_us;   /* how long after its due time each datagram left */
    pl_time late_max;
} dir_counters;

struct relay {
    pl_loop *loop;
    pl_impair *core;
    pl_udp *listen_sock;
    pl_addr to, listen_addr, up_bind;
    client *clients;
    uint32_t max_clients;
    pl_time idle;
    pl_timer flush_timer, sweep_timer;
    pl_time flush_due;
    dir_counters dc[PL_IMPAIR_DIRS];
    uint64_t clients_seen, clients_evicted, clients_expired, client_open_failed;
    bool json;
    int sigfd;
};

static void arm_flush(relay *r)
{
    pl_time due = pl_impair_next_due(r->core);
    if (due == r->flush_due) return;
    r->flush_due = due;
    pl_timer_set(r->loop, &r->flush_timer, due);
}

static void count_send(dir_counters *dc, pl_loop_err e)
{
    if (e == PL_LOOP_ERR_FULL) dc->send_full++;
    else if (e != PL_LOOP_OK) dc->send_errors++;
}

/* Sends every datagram that has fallen due. */
static void on_flush(pl_loop *loop, void *ctx)
{
    relay *r = ctx;
    r->flush_due = PL_TIME_NEVER;
    pl_time now = pl_loop_now(loop);
    pl_impair_datagram d;
    while (pl_impair_take(r->core, now, &d)) {
        dir_counters *dc = &r->dc[d.dir];
        pl_time late = now - d.due;
        dc->late_sum_us += (double)late;
        if (late > dc->late_max) dc->late_max = late;
        uint32_t idx = (uint32_t)(d.tag >> 32), gen = (uint32_t)d.tag;
        client *c = idx < r->max_clients ? &r->clients[idx] : NULL;
        if (!c || !c->used || c->gen != gen) {
            dc->client_gone++;
            continue;
        }
        if (d.dir == PL_IMPAIR_UP) count_send(dc, pl_udp_send(c->up_sock, &r->to, d.data, d.len));
        else count_send(dc, pl_udp_send(r->listen_sock, &c->addr, d.data, d.len));
    }
    arm_flush(r);
}

static void close_client(client *c)
{
    if (c->up_sock) pl_udp_close(c->up_sock);
    c->up_sock = NULL;
    c->used = false;
    c->gen++;
}

/* A reply from the upstream to one client's socket. */
static void on_upstream(void *ctx, pl_udp *sock, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    client *c = ctx;
    relay *r = c->r;
    /* Only the upstream may speak on this socket: it is a forwarding path,
     * not an open relay. */
    if (!pl_addr_equal(from, &r->to)) return;
    c->last = now;
    pl_impair_offer(r->core, PL_IMPAIR_DOWN, now, data, len, ((uint64_t)c->index << 32) | c->gen);
    arm_flush(r);
}

static client *find_or_add_client(relay *r, const pl_addr *from, pl_time now)
{
    client *free_slot = NULL, *stalest = NULL;
    for (uint32_t i = 0; i < r->max_clients; i++) {
        client *c = &r->clients[i];
        if (!c->used) {
            if (!free_slot) free_slot = c;
            continue;
        }
        if (pl_addr_equal(&c->addr, from)) return c;
        if (!stalest || c->last < stalest->last) stalest = c;
    }
    client *c = free_slot;
    if (!c) {
        c = stalest;
        close_client(c);
        r->clients_evicted++;
    }
    pl_loop_err e;
    c->up_sock = pl_udp_open(r->loop, &r->up_bind, on_upstream, c, &e);
    if (!c->up_sock) {
        r->client_open_failed++;
        return NULL;
    }
    c->used = true;
    c->addr = *from;
    c->last = now;
    r->clients_seen++;
    return c;
}

static void on_client(void *ctx, pl_udp *sock, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    relay *r = ctx;
    client *c = find_or_add_client(r, from, now);
    if (!c) return;
    c->last = now;
    pl_impair_offer(r->core, PL_IMPAIR_UP, now, data, len, ((uint64_t)c->index << 32) | c->gen);
    arm_flush(r);
}

static void on_sweep(pl_loop *loop, void *ctx)
{
    relay *r = ctx;
    pl_time now = pl_loop_now(loop);
    for (uint32_t i = 0; i < r->max_clients; i++) {
        client *c = &r->clients[i];
        if (c->used && now - c->last > r->idle) {
            close_client(c);
            r->clients_expired++;
        }
    }
    pl_timer_set(loop, &r->sweep_timer, now + SWEEP_INTERVAL);
}

static void on_signal(pl_loop *loop, int fd, unsigned events, void *ctx)
{
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
    }
    pl_loop_stop(loop);
}

/* ---- options ------------------------------------------------------------------ */

typedef struct relay_opts {
    const char *listen, *to;
    uint64_t seed;
    size_t queue;
    uint32_t max_clients;
    uint32_t idle_s;
    bool json;
    pl_impair_link link[PL_IMPAIR_DIRS];
} relay_opts;

/* Applies one impairment option to the directions in mask. Returns 1 if it
 * took a value, 0 for a flag, -1 if unknown or bad. */
static int apply_link_opt(relay_opts *o, unsigned mask, const char *name, const char *val)
{
    double x = 0;
    bool takes_value = strcmp(name, "jitter-fifo") != 0;
    if (takes_value) {
        if (!val) return -1;
        if (strcmp(name, "jitter-dist") != 0 && !pl_tool_parse_double(val, &x)) return -1;
    }
    for (unsigned d = 0; d < PL_IMPAIR_DIRS; d++) {
        if (!(mask & (1u << d))) continue;
        pl_impair_link *l = &o->link[d];
        if (strcmp(name, "delay-ms") == 0 && x >= 0) l->delay = (pl_time)(x * 1000 + 0.5);
        else if (strcmp(name, "jitter-ms") == 0 && x >= 0) l->jitter = (pl_time)(x * 1000 + 0.5);
        else if (strcmp(name, "jitter-dist") == 0) {
            if (!pl_impair_jitter_parse(val, &l->jitter_dist)) return -1;
        } else if (strcmp(name, "jitter-fifo") == 0) l->jitter_fifo = true;
        else if (strcmp(name, "loss") == 0) l->loss = x / 100.0;
        else if (strcmp(name, "burst-loss") == 0) l->burst_loss = x / 100.0;
        else if (strcmp(name, "burst-len") == 0) l->burst_len = x;
        else if (strcmp(name, "reorder") == 0) l->reorder = x / 100.0;
        else if (strcmp(name, "reorder-gap-ms") == 0 && x >= 0) l->reorder_gap = (pl_time)(x * 1000 + 0.5);
        else if (strcmp(name, "dup") == 0) l->dup = x / 100.0;
        else if (strcmp(name, "rate-kbit") == 0 && x >= 0) l->rate_bps = (uint64_t)(x * 1000 + 0.5);
        else if (strcmp(name, "rate-queue-ms") == 0 && x >= 0) l->rate_queue = (pl_time)(x * 1000 + 0.5);
        else return -1;
    }
    return takes_value ? 1 : 0;
}

static void relay_usage(FILE *f)
{
    fprintf(f,
            "usage: parley-impair [relay] --listen ADDR:PORT --to ADDR:PORT [options]\n"
            "       parley-impair echo --listen ADDR:PORT [--json]\n"
            "       parley-impair probe --to ADDR:PORT [--count N] [--interval-ms MS] [--size BYTES]\n"
            "                           [--wait-ms MS] [--json]\n"
            "\n"
            "Impairments, for both directions, or one with an up- or down- prefix\n"
            "(--up-loss 5: client->upstream only; --down-delay-ms 30: replies only):\n"
            "  --delay-ms MS          fixed one-way delay\n"
            "  --jitter-ms MS         extra random delay: uniform in [0, MS], or mean MS for\n"
            "  --jitter-dist D        uniform (default) | exponential | pareto (heavy tail)\n"
            "  --jitter-fifo          jitter keeps order (default: independent delays reorder)\n"
            "  --loss PCT             independent random loss\n"
            "  --burst-loss PCT       Gilbert-Elliott loss: long-run PCT, in bursts of\n"
            "  --burst-len N          mean N datagrams (default %.0f)\n"
            "  --reorder PCT          hold a datagram back by --reorder-gap-ms (default %d)\n"
            "  --dup PCT              send a second copy\n"
            "  --rate-kbit K          serialise at K kbit/s (IPv4+UDP headers counted),\n"
            "  --rate-queue-ms MS     dropping beyond MS of backlog (default %d)\n"
            "Relay:\n"
            "  --seed N               the generator's seed (default 1): same seed, same decisions\n"
            "  --queue N              datagrams held at once (default %d)\n"
            "  --max-clients N        client table size (default %d); --idle-s S expiry (default %d)\n"
            "  --json                 JSON lines on stdout\n"
            "Prints 'listening ADDR to ADDR' when ready; statistics on SIGINT/SIGTERM.\n",
            DEFAULT_BURST_LEN, DEFAULT_REORDER_GAP_MS, DEFAULT_RATE_QUEUE_MS, DEFAULT_QUEUE, DEFAULT_MAX_CLIENTS,
            DEFAULT_IDLE_S);
}

static bool parse_relay_opts(int argc, char **argv, relay_opts *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->queue = DEFAULT_QUEUE;
    o->max_clients = DEFAULT_MAX_CLIENTS;
    o->idle_s = DEFAULT_IDLE_S;
    for (int d = 0; d < PL_IMPAIR_DIRS; d++) {
        o->link[d].reorder_gap = DEFAULT_REORDER_GAP_MS * PL_MSEC;
        o->link[d].rate_queue = DEFAULT_RATE_QUEUE_MS * PL_MSEC;
        o->link[d].burst_len = DEFAULT_BURST_LEN;
    }
    /* Two passes: options for both directions first, then the up-/down-
     * ones, so "--down-loss 0 --loss 5" means what it says whatever the order. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < argc; i++) {
            const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
            if (strncmp(a, "--", 2) != 0) {
                fprintf(stderr, "parley-impair: unexpected argument '%s'\n", a);
                return false;
            }
            const char *name = a + 2;
            unsigned mask = 3;
            bool prefixed = false;
            if (strncmp(name, "up-", 3) == 0) {
                mask = 1u << PL_IMPAIR_UP;
                name += 3;
                prefixed = true;
            } else if (strncmp(name, "down-", 5) == 0) {
                mask = 1u << PL_IMPAIR_DOWN;
                name += 5;
                prefixed = true;
            }
            uint64_t u;
            if (!prefixed && strcmp(name, "json") == 0) {
                o->json = true;
                continue;
            }
            if (!prefixed && (strcmp(name, "listen") == 0 || strcmp(name, "to") == 0 || strcmp(name, "seed") == 0 ||
                              strcmp(name, "queue") == 0 || strcmp(name, "max-clients") == 0 ||
                              strcmp(name, "idle-s") == 0)) {
                if (!v) goto bad;
                i++;
                if (pass == 1) continue;
                if (strcmp(name, "listen") == 0) o->listen = v;
                else if (strcmp(name, "to") == 0) o->to = v;
                else {
                    if (!pl_tool_parse_u64(v, &u)) goto bad;
                    if (strcmp(name, "seed") == 0) o->seed = u;
                    else if (strcmp(name, "queue") == 0 && u > 0 && u <= 1000000) o->queue = (size_t)u;
                    else if (strcmp(name, "max-clients") == 0 && u > 0 && u <= 65536) o->max_clients = (uint32_t)u;
                    else if (strcmp(name, "idle-s") == 0 && u > 0 && u <= 86400) o->idle_s = (uint32_t)u;
                    else goto bad;
                }
                continue;
            }
            relay_opts scratch = *o;
            int took = apply_link_opt(pass == (prefixed ? 1 : 0) ? o : &scratch, mask, name, v);
            if (took < 0) goto bad;
            i += took;
            continue;
        bad:
            fprintf(stderr, "parley-impair: bad or unknown option %s%s%s\n", a, v ? " " : "", v ? v : "");
            return false;
        }
    }
    return true;
}

static void print_dir_stats(const relay *r, unsigned dir, const char *name)
{
    pl_impair_stats s;
    pl_impair_get_stats(r->core, dir, &s);
    const dir_counters *dc = &r->dc[dir];
    double mean_delay = s.delivered ? s.delay_sum_us / (double)s.delivered / 1000.0 : 0;
    double mean_late = s.delivered ? dc->late_sum_us / (double)s.delivered / 1000.0 : 0;
    if (r->json) {
        printf("\"%s\":{\"received\":%llu,\"forwarded\":%llu,\"dropped_burst\":%llu,\"dropped_loss\":%llu,"
               "\"dropped_rate\":%llu,\"dropped_queue_full\":%llu,\"too_big\":%llu,\"duplicated\":%llu,"
               "\"reordered\":%llu,\"client_gone\":%llu,\"send_full\":%llu,\"send_errors\":%llu,"
               "\"bytes\":%llu,\"delay_mean_ms\":%.3f,\"delay_max_ms\":%.3f,\"late_mean_ms\":%.3f,"
               "\"late_max_ms\":%.3f}",
               name, (unsigned long long)s.offered, (unsigned long long)s.delivered,
               (unsigned long long)s.dropped_burst, (unsigned long long)s.dropped_loss,
               (unsigned long long)s.dropped_rate, (unsigned long long)s.dropped_full, (unsigned long long)s.too_big,
               (unsigned long long)s.duplicated, (unsigned long long)s.reordered,
               (unsigned long long)dc->client_gone, (unsigned long long)dc->send_full,
               (unsigned long long)dc->send_errors, (unsigned long long)s.bytes_delivered, mean_delay,
               (double)s.delay_max / 1000.0, mean_late, (double)dc->late_max / 1000.0);
    } else {
        printf("%-4s received %llu, forwarded %llu; dropped: burst %llu, loss %llu, rate %llu, queue full %llu, "
               "too big %llu, client gone %llu; duplicated %llu, reordered %llu; send full %llu, errors %llu; "
               "delay mean %.2f ms, max %.2f ms; left late by %.3f ms mean, %.3f ms max\n",
               name, (unsigned long long)s.offered, (unsigned long long)s.delivered,
               (unsigned long long)s.dropped_burst, (unsigned long long)s.dropped_loss,
               (unsigned long long)s.dropped_rate, (unsigned long long)s.dropped_full, (unsigned long long)s.too_big,
               (unsigned long long)dc->client_gone, (unsigned long long)s.duplicated,
               (unsigned long long)s.reordered, (unsigned long long)dc->send_full,
               (unsigned long long)dc->send_errors, mean_delay, (double)s.delay_max / 1000.0, mean_late,
               (double)dc->late_max / 1000.0);
    }
}

static void print_stats(const relay *r)
{
    if (r->json) {
        printf("{\"event\":\"stats\",");
        print_dir_stats(r, PL_IMPAIR_UP, "up");
        printf(",");
        print_dir_stats(r, PL_IMPAIR_DOWN, "down");
        printf(",\"clients\":{\"seen\":%llu,\"evicted\":%llu,\"expired\":%llu,\"open_failed\":%llu},\"held\":%zu}\n",
               (unsigned long long)r->clients_seen, (unsigned long long)r->clients_evicted,
               (unsigned long long)r->clients_expired, (unsigned long long)r->client_open_failed,
               pl_impair_held(r->core));
    } else {
        print_dir_stats(r, PL_IMPAIR_UP, "up");
        print_dir_stats(r, PL_IMPAIR_DOWN, "down");
        printf("clients seen %llu, evicted %llu, expired %llu, open failed %llu; %zu datagrams still held\n",
               (unsigned long long)r->clients_seen, (unsigned long long)r->clients_evicted,
               (unsigned long long)r->clients_expired, (unsigned long long)r->client_open_failed,
               pl_impair_held(r->core));
    }
    fflush(stdout);
}

static void describe_link(const relay_opts *o, unsigned d, const char *name, bool json)
{
    const pl_impair_link *l = &o->link[d];
    if (json) {
        printf("\"%s\":{\"delay_ms\":%.3f,\"jitter_ms\":%.3f,\"jitter_dist\":\"%s\",\"jitter_fifo\":%s,"
               "\"loss_pct\":%g,\"burst_loss_pct\":%g,\"burst_len\":%g,\"reorder_pct\":%g,\"reorder_gap_ms\":%.3f,"
               "\"dup_pct\":%g,\"rate_kbit\":%g}",
               name, (double)l->delay / 1000, (double)l->jitter / 1000, pl_impair_jitter_name(l->jitter_dist),
               l->jitter_fifo ? "true" : "false", l->loss * 100, l->burst_loss * 100, l->burst_len,
               l->reorder * 100, (double)l->reorder_gap / 1000, l->dup * 100, (double)l->rate_bps / 1000);
        return;
    }
    char rate[48];
    if (l->rate_bps) snprintf(rate, sizeof rate, "%g kbit/s", (double)l->rate_bps / 1000);
    else snprintf(rate, sizeof rate, "unlimited");
    fprintf(stderr,
            "parley-impair: %s: delay %.1f ms, jitter %.1f ms %s%s, loss %g%%, burst loss %g%% (mean %g), "
            "reorder %g%% (+%.1f ms), dup %g%%, rate %s\n",
            name, (double)l->delay / 1000, (double)l->jitter / 1000, pl_impair_jitter_name(l->jitter_dist),
            l->jitter_fifo ? " fifo" : "", l->loss * 100, l->burst_loss * 100, l->burst_len, l->reorder * 100,
            (double)l->reorder_gap / 1000, l->dup * 100, rate);
}

static int run_relay(int argc, char **argv)
{
    relay_opts o;
    if (!parse_relay_opts(argc, argv, &o)) return 2;
    if (!o.listen || !o.to) {
        fprintf(stderr, "parley-impair: --listen and --to are required\n");
        relay_usage(stderr);
        return 2;
    }
    relay r;
    memset(&r, 0, sizeof r);
    r.json = o.json;
    r.sigfd = -1;
    r.flush_due = PL_TIME_NEVER;
    r.idle = (pl_time)o.idle_s * PL_SEC;
    if (!pl_addr_parse(&r.listen_addr, o.listen, 0) || !pl_addr_parse(&r.to, o.to, 0) || r.to.port == 0) {
        fprintf(stderr, "parley-impair: bad --listen or --to address\n");
        return 2;
    }
    /* The per-client sockets speak the upstream's family, on any address. */
    memset(&r.up_bind, 0, sizeof r.up_bind);
    r.up_bind.family = r.to.family;

    pl_impair_config cfg = {.seed = o.seed, .queue_slots = o.queue};
    cfg.link[PL_IMPAIR_UP] = o.link[PL_IMPAIR_UP];
    cfg.link[PL_IMPAIR_DOWN] = o.link[PL_IMPAIR_DOWN];
    pl_impair_err ie;
    r.core = pl_impair_new(&cfg, NULL, &ie);
    if (!r.core) {
        fprintf(stderr, "parley-impair: %s (probabilities are percentages 0..100; a burst loss needs "
                        "burst-loss/(100-burst-loss) <= burst-len)\n", pl_impair_strerror(ie));
        return 2;
    }
    r.max_clients = o.max_clients;
    r.clients = calloc(r.max_clients, sizeof *r.clients);
    r.loop = pl_loop_new();
    if (!r.clients || !r.loop) {
        fprintf(stderr, "parley-impair: out of memory\n");
        return 1;
    }
    for (uint32_t i = 0; i < r.max_clients; i++) {
        r.clients[i].r = &r;
        r.clients[i].index = i;
    }
    pl_timer_init(&r.flush_timer, on_flush, &r);
    pl_timer_init(&r.sweep_timer, on_sweep, &r);
    pl_loop_err le;
    r.listen_sock = pl_udp_open(r.loop, &r.listen_addr, on_client, &r, &le);
    if (!r.listen_sock) {
        fprintf(stderr, "parley-impair: cannot listen on %s: %s\n", o.listen, pl_loop_strerror(le));
        return 1;
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    r.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (r.sigfd < 0 || pl_loop_watch_fd(r.loop, r.sigfd, PL_FD_READ, on_signal, &r) != PL_LOOP_OK) {
        fprintf(stderr, "parley-impair: cannot watch signals\n");
        return 1;
    }
    pl_timer_set(r.loop, &r.sweep_timer, pl_loop_now(r.loop) + SWEEP_INTERVAL);

    pl_addr local;
    pl_udp_local_addr(r.listen_sock, &local);
    char ltext[PL_ADDR_TEXT_MAX], ttext[PL_ADDR_TEXT_MAX];
    pl_addr_format(&local, ltext, sizeof ltext);
    pl_addr_format(&r.to, ttext, sizeof ttext);
    /* Scripts wait for this line to learn the port. */
    if (r.json) {
        printf("{\"event\":\"listening\",\"addr\":\"%s\",\"to\":\"%s\",\"seed\":%llu,", ltext, ttext,
               (unsigned long long)o.seed);
        describe_link(&o, PL_IMPAIR_UP, "up", true);
        printf(",");
        describe_link(&o, PL_IMPAIR_DOWN, "down", true);
        printf("}\n");
    } else {
        printf("listening %s to %s\n", ltext, ttext);
        describe_link(&o, PL_IMPAIR_UP, "up", false);
        describe_link(&o, PL_IMPAIR_DOWN, "down", false);
    }
    fflush(stdout);

    pl_loop_run(r.loop);

    print_stats(&r);
    pl_loop_unwatch_fd(r.loop, r.sigfd);
    close(r.sigfd);
    pl_timer_cancel(r.loop, &r.flush_timer);
    pl_timer_cancel(r.loop, &r.sweep_timer);
    for (uint32_t i = 0; i < r.max_clients; i++) close_client(&r.clients[i]);
    pl_udp_close(r.listen_sock);
    pl_loop_free(r.loop);
    pl_impair_free(r.core);
    free(r.clients);
    return 0;
}

int main(int argc, char **argv)
{
    if (!pl_init()) {
        fprintf(stderr, "parley-impair: cannot initialise the crypto library\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 2 && (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        relay_usage(stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "echo") == 0) return pl_tool_echo(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "probe") == 0) return pl_tool_probe(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "relay") == 0) return run_relay(argc - 2, argv + 2);
    return run_relay(argc - 1, argv + 1);
}
