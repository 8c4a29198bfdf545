/*
 * probe.c - `parley-impair echo` and `parley-impair probe`: the two ends a
 * test puts around the relay to see what it did.
 *
 * The probe sends numbered datagrams at a fixed interval; the echo sends
 * each one straight back, adding the time it arrived and whether it arrived
 * after a higher-numbered one. Both run on this host and read the same
 * CLOCK_MONOTONIC, so the probe can split the round trip into its two
 * one-way delays exactly.
 *
 * Datagram (big-endian): "PLPR", seq u32, sent u64 (monotonic µs), padding
 * up to --size. Reply: the same 16 bytes, echo arrival u64, late u8 (1 when
 * a higher sequence number had already reached the echo), then the rest of
 * the padding.
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "impair_tool.h"
#include "parley.h"
#include "sockaddr.h"

#define MAGIC "PLPR"
#define HEADER 16
#define REPLY_HEADER 25
#define MAX_DGRAM 1500
#define MAX_COUNT 1000000u

bool pl_tool_parse_double(const char *s, double *out)
{
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || !isfinite(v)) return false;
    *out = v;
    return true;
}

bool pl_tool_parse_u64(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9') return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno) return false;
    *out = v;
    return true;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static volatile sig_atomic_t stop_requested;
static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int open_socket(const pl_addr *bind_to, int family)
{
    int fd = socket(family == PL_AF_INET6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int big = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (bind_to) {
        struct sockaddr_storage ss;
        socklen_t len;
        if (!pl_sockaddr_from_addr(bind_to, &ss, &len) || bind(fd, (struct sockaddr *)&ss, len) != 0) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

static bool has_flag(int argc, char **argv, const char *flag)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], flag) == 0) return true;
    return false;
}

/* ---- echo --------------------------------------------------------------------- */

#define ECHO_SOURCES 16

typedef struct source {
    pl_addr addr;
    uint64_t last_turn; /* 0: unused */
    uint32_t max_seq;
    bool any;
    uint8_t *seen;
} source;

static source *find_source(source *t, const struct sockaddr_storage *from, uint64_t turn)
{
    pl_addr a;
    pl_sockaddr_to_addr((const struct sockaddr *)from, &a);
    source *victim = &t[0];
    for (int i = 0; i < ECHO_SOURCES; i++) {
        if (t[i].last_turn && pl_addr_equal(&t[i].addr, &a)) {
            t[i].last_turn = turn;
            return &t[i];
        }
        if (t[i].last_turn < victim->last_turn) victim = &t[i];
    }
    victim->addr = a;
    victim->last_turn = turn;
    victim->max_seq = 0;
    victim->any = false;
    memset(victim->seen, 0, MAX_COUNT / 8 + 1);
    return victim;
}

int pl_tool_echo(int argc, char **argv)
{
    const char *listen = NULL;
    bool json = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) listen = argv[++i];
        else if (strcmp(argv[i], "--json") == 0) json = true;
        else {
            fprintf(stderr, "parley-impair echo: bad option '%s'\n", argv[i]);
            return 2;
        }
    }
    pl_addr at;
    if (!listen || !pl_addr_parse(&at, listen, 0)) {
        fprintf(stderr, "parley-impair echo: --listen ADDR:PORT is required\n");
        return 2;
    }
    int fd = open_socket(&at, at.family);
    if (fd < 0) {
        fprintf(stderr, "parley-impair echo: cannot listen on %s: %s\n", listen, strerror(errno));
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop; /* no SA_RESTART: a signal ends the wait */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    pl_addr local;
    pl_sockaddr_to_addr((struct sockaddr *)&ss, &local);
    char text[PL_ADDR_TEXT_MAX];
    pl_addr_format(&local, text, sizeof text);
    if (json) printf("{\"event\":\"listening\",\"addr\":\"%s\"}\n", text);
    else printf("listening %s\n", text);
    fflush(stdout);

    /* Per source (each probe, or each relay client socket, is one): the
     * highest sequence number seen and one bit per number, for counting
     * late arrivals and duplicates. A fixed table; the stalest source makes
     * room for a new one. */
    source *sources = calloc(ECHO_SOURCES, sizeof *sources);
    uint8_t *bits = calloc(ECHO_SOURCES, MAX_COUNT / 8 + 1);
    if (!sources || !bits) return 1;
    for (int i = 0; i < ECHO_SOURCES; i++) sources[i].seen = bits + (size_t)i * (MAX_COUNT / 8 + 1);
    uint64_t received = 0, unique = 0, duplicates = 0, late = 0, foreign = 0, turn = 0;
    uint8_t buf[MAX_DGRAM];
    while (!stop_requested) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0) continue;
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        if (n < 0) continue;
        uint64_t now = mono_us();
        if (n < HEADER || memcmp(buf, MAGIC, 4) != 0) {
            foreign++;
            continue;
        }
        received++;
        source *src = find_source(sources, &from, ++turn);
        uint32_t seq = get32(buf + 4);
        bool is_late = src->any && seq < src->max_seq;
        if (seq < MAX_COUNT) {
            if (src->seen[seq / 8] & (1u << (seq % 8))) {
                duplicates++;
            } else {
                src->seen[seq / 8] |= (uint8_t)(1u << (seq % 8));
                unique++;
                late += is_late;
            }
        }
        if (!src->any || seq > src->max_seq) src->max_seq = seq;
        src->any = true;
        uint8_t reply[MAX_DGRAM];
        size_t len = (size_t)n < REPLY_HEADER ? REPLY_HEADER : (size_t)n;
        memcpy(reply, buf, HEADER);
        put64(reply + HEADER, now);
        reply[HEADER + 8] = is_late;
        if ((size_t)n > REPLY_HEADER) memcpy(reply + REPLY_HEADER, buf + REPLY_HEADER, (size_t)n - REPLY_HEADER);
        sendto(fd, reply, len, 0, (struct sockaddr *)&from, fl);
    }
    if (json)
        printf("{\"event\":\"stats\",\"received\":%llu,\"unique\":%llu,\"duplicates\":%llu,\"late\":%llu,"
               "\"foreign\":%llu}\n",
               (unsigned long long)received, (unsigned long long)unique, (unsigned long long)duplicates,
               (unsigned long long)late, (unsigned long long)foreign);
    else
        printf("received %llu (unique %llu, duplicates %llu, arrived after a later one %llu, foreign %llu)\n",
               (unsigned long long)received, (unsigned long long)unique, (unsigned long long)duplicates,
               (unsigned long long)late, (unsigned long long)foreign);
    fflush(stdout);
    free(sources);
    free(bits);
    close(fd);
    return 0;
}

/* ---- probe -------------------------------------------------------------------- */

typedef struct reply_rec {
    uint64_t up_us, down_us; /* one-way delays of the first copy back */
    uint16_t copies;
    bool up_late, down_late;
} reply_rec;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Prints min/mean/p50/p95/p99/max in ms of v (sorted here). */
static void print_delays(const char *name, uint64_t *v, size_t n, bool json)
{
    if (n == 0) {
        if (json) printf("\"%s\":null", name);
        else printf("%s delay: no replies\n", name);
        return;
    }
    qsort(v, n, sizeof *v, cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += (double)v[i];
#define PCT(q) ((double)v[(size_t)((q) * (double)(n - 1) + 0.5)] / 1000.0)
    if (json)
        printf("\"%s\":{\"min_ms\":%.3f,\"mean_ms\":%.3f,\"p50_ms\":%.3f,\"p95_ms\":%.3f,\"p99_ms\":%.3f,"
               "\"max_ms\":%.3f}",
               name, (double)v[0] / 1000.0, sum / (double)n / 1000.0, PCT(0.5), PCT(0.95), PCT(0.99),
               (double)v[n - 1] / 1000.0);
    else
        printf("%s delay ms: min %.3f mean %.3f p50 %.3f p95 %.3f p99 %.3f max %.3f\n", name, (double)v[0] / 1000.0,
               sum / (double)n / 1000.0, PCT(0.5), PCT(0.95), PCT(0.99), (double)v[n - 1] / 1000.0);
#undef PCT
}

int pl_tool_probe(int argc, char **argv)
{
    const char *to_text = NULL;
    uint64_t count = 200, interval_us = 5000, size = 64, wait_us = 1000000;
    bool json = has_flag(argc, argv, "--json");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x;
        if (strcmp(a, "--json") == 0) continue;
        if (!v) goto bad;
        i++;
        if (strcmp(a, "--to") == 0) to_text = v;
        else if (strcmp(a, "--count") == 0 && pl_tool_parse_u64(v, &count) && count > 0 && count <= MAX_COUNT) {
        } else if (strcmp(a, "--interval-ms") == 0 && pl_tool_parse_double(v, &x) && x >= 0 && x <= 60000)
            interval_us = (uint64_t)(x * 1000 + 0.5);
        else if (strcmp(a, "--size") == 0 && pl_tool_parse_u64(v, &size) && size >= HEADER && size <= MAX_DGRAM) {
        } else if (strcmp(a, "--wait-ms") == 0 && pl_tool_parse_double(v, &x) && x >= 0 && x <= 600000)
            wait_us = (uint64_t)(x * 1000 + 0.5);
        else
            goto bad;
        continue;
    bad:
        fprintf(stderr, "parley-impair probe: bad or unknown option %s\n", a);
        return 2;
    }
    pl_addr to;
    if (!to_text || !pl_addr_parse(&to, to_text, 0) || to.port == 0) {
        fprintf(stderr, "parley-impair probe: --to ADDR:PORT is required\n");
        return 2;
    }
    int fd = open_socket(NULL, to.family);
    struct sockaddr_storage dst;
    socklen_t dl;
    if (fd < 0 || !pl_sockaddr_from_addr(&to, &dst, &dl) || connect(fd, (struct sockaddr *)&dst, dl) != 0) {
        fprintf(stderr, "parley-impair probe: cannot reach %s: %s\n", to_text, strerror(errno));
        if (fd >= 0) close(fd);
        return 1;
    }
    reply_rec *rec = calloc(count, sizeof *rec);
    uint64_t *tmp = calloc(count, sizeof *tmp);
    if (!rec || !tmp) return 1;

    uint8_t pkt[MAX_DGRAM], buf[MAX_DGRAM];
    memset(pkt, 0x5a, sizeof pkt);
    memcpy(pkt, MAGIC, 4);
    uint64_t start = mono_us(), sent = 0, replies = 0, dup_replies = 0, foreign = 0, down_late = 0;
    uint64_t max_echo_at = 0; /* the latest echo departure among replies back so far */
    uint64_t end = UINT64_MAX;
    for (;;) {
        uint64_t now = mono_us();
        while (sent < count && now >= start + sent * interval_us) {
            put32(pkt + 4, (uint32_t)sent);
            put64(pkt + 8, now);
            if (send(fd, pkt, size, 0) < 0 && errno != ECONNREFUSED) {
                fprintf(stderr, "parley-impair probe: send: %s\n", strerror(errno));
                return 1;
            }
            sent++;
            if (sent == count) end = now + wait_us;
        }
        if (now >= end || replies == count) break;
        uint64_t next = sent < count ? start + sent * interval_us : end;
        uint64_t wait = next > now ? next - now : 0;
        struct timespec ts = {.tv_sec = (time_t)(wait / 1000000u), .tv_nsec = (long)(wait % 1000000u) * 1000};
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (ppoll(&p, 1, &ts, NULL) <= 0) continue;
        for (;;) {
            ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n < 0) break;
            uint64_t at = mono_us();
            if (n < REPLY_HEADER || memcmp(buf, MAGIC, 4) != 0) {
                foreign++;
                continue;
            }
            uint32_t seq = get32(buf + 4);
            if (seq >= sent) {
                foreign++;
                continue;
            }
            reply_rec *r = &rec[seq];
            if (r->copies++ > 0) {
                dup_replies++;
                continue;
            }
            replies++;
            uint64_t sent_at = get64(buf + 8), echo_at = get64(buf + HEADER);
            r->up_us = echo_at - sent_at;
            r->down_us = at - echo_at;
            r->up_late = buf[HEADER + 8] != 0;
            /* Down-direction reordering: this reply left the echo before one
             * that is already back. */
            r->down_late = echo_at < max_echo_at;
            down_late += r->down_late;
            if (echo_at > max_echo_at) max_echo_at = echo_at;
        }
    }
    close(fd);

    /* Runs of sequence numbers that never came back. */
    uint64_t runs = 0, missing = 0, up_late = 0, longest = 0, cur = 0;
    for (uint64_t i = 0; i < count; i++) {
        if (rec[i].copies == 0) {
            missing++;
            if (cur++ == 0) runs++;
            if (cur > longest) longest = cur;
        } else {
            cur = 0;
            up_late += rec[i].up_late;
        }
    }
    double loss = (double)missing / (double)count;
    if (json)
        printf("{\"event\":\"probe\",\"sent\":%llu,\"replies\":%llu,\"duplicate_replies\":%llu,\"loss_pct\":%.4f,"
               "\"loss_runs\":%llu,\"loss_run_mean\":%.3f,\"loss_run_max\":%llu,\"up_late\":%llu,\"down_late\":%llu,"
               "\"foreign\":%llu,",
               (unsigned long long)count, (unsigned long long)replies, (unsigned long long)dup_replies, 100 * loss,
               (unsigned long long)runs, runs ? (double)missing / (double)runs : 0.0, (unsigned long long)longest,
               (unsigned long long)up_late, (unsigned long long)down_late, (unsigned long long)foreign);
    else
        printf("sent %llu, replies %llu (+%llu duplicates), loss %.2f%% in %llu runs (mean %.2f, longest %llu); "
               "arrived after a later one: up %llu, down %llu\n",
               (unsigned long long)count, (unsigned long long)replies, (unsigned long long)dup_replies, 100 * loss,
               (unsigned long long)runs, runs ? (double)missing / (double)runs : 0.0, (unsigned long long)longest,
               (unsigned long long)up_late, (unsigned long long)down_late);
    size_t k = 0;
    for (uint64_t i = 0; i < count; i++)
        if (rec[i].copies) tmp[k++] = rec[i].up_us;
    print_delays("up", tmp, k, json);
    if (json) printf(",");
    k = 0;
    for (uint64_t i = 0; i < count; i++)
        if (rec[i].copies) tmp[k++] = rec[i].down_us;
    print_delays("down", tmp, k, json);
    if (json) printf("}\n");
    fflush(stdout);
    free(rec);
    free(tmp);
    return 0;
}
