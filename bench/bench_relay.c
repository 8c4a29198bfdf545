/*
 * bench_relay.c - how many relayed calls one relay process on one core
 * carries without loss: Parley's relay (parley-relayd) against coturn
 * (turnserver), under the same load, in the same run.
 *
 *   bench_relay [--seconds S] [--sessions N,N,...] [--size BYTES] [--loss-max PCT]
 *               [--relayd PATH] [--turnserver PATH] [--turn-threads N] [--ours-only | --coturn-only]
 *
 * A session is one call: side A sends 50 packets/s to side B through the
 * relay and B sends 50 packets/s back, each packet --size bytes of payload
 * (120 by default: an Opus frame sealed by the secure session). So a
 * session is 100 relayed packets a second. Every step runs N sessions,
 * evenly spread over each 20 ms, for S seconds (3 by default) after a
 * half-second warm-up, then waits for stragglers and counts what arrived.
 * Steps grow until the loss passes --loss-max (0.05% by default); the last
 * step below it is the relay's lossless rate.
 *
 * The server runs pinned to CPU 1, this generator to CPU 0 (when there are
 * two). For each step the server's and the generator's CPU use are printed,
 * so a reader can tell which side ran out first.
 *
 * The two servers see the same traffic shape:
 *  - Parley: each session has an allocation (made over parley-relayd's
 *    control socket); A has a socket of its own, B's side of every session
 *    is on one of four shared sockets. A and B both send
 *    [0xF1][channel][token][payload] to the relay's UDP address.
 *  - coturn (--no-auth, one relay thread, which did better here than none):
 *    each session is an allocation made by A's own socket (Allocate, then
 *    ChannelBind to B's socket); A sends ChannelData to the server, B sends
 *    plain UDP to the allocation's relayed address. That is TURN's usual
 *    shape for a client calling a peer, and it costs the server one receive
 *    and one send per packet, as Parley's relay does. (If both ends were TURN clients of one server,
 *    every packet would cross coturn twice.)
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NB 4             /* B's shared sockets */
#define INTERVAL_US 20000 /* 50 packets/s each way */
#define MAX_SESSIONS 8000
#define BATCH 64
#define MAX_PKT 1500
#define STUN_COOKIE 0x2112A442u

enum { OURS = 0, COTURN = 1 };
static const char *server_name[2] = {"parley-relayd", "coturn"};

typedef struct sess {
    int fd_a;
    int b;
    uint32_t channel;
    uint64_t tok_a, tok_b;
    struct sockaddr_in relayed; /* coturn */
    uint64_t next_send;
    uint32_t seq;
    int state; /* coturn set-up: 0 none, 1 allocated, 2 bound */
} sess;

typedef struct gen {
    int kind;
    struct sockaddr_in server;
    sess *s;
    int n_ready;
    int fd_b[NB];
    struct sockaddr_in b_addr[NB];
    int ep;
    size_t payload;
    uint64_t sent_ab, sent_ba, recv_ab, recv_ba, recv_bad;
    uint64_t send_fail;
    pid_t pid;
    FILE *out; /* the server's standard output */
    char control[108];
} gen;

/* ---- small helpers ---------------------------------------------------------------------- */

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)); put16(p + 2, (uint16_t)v); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)(v >> 32)); put32(p + 4, (uint32_t)v); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }

static int udp_socket(struct sockaddr_in *local, int ep, uint32_t tag)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int size = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    /* The generator's sockets live on 127.0.0.2, the servers on 127.0.0.1,
     * so the generator never takes a port coturn wants for a relay. */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1)};
    socklen_t sl = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        close(fd);
        return -1;
    }
    if (local) *local = sa;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = tag};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    return fd;
}

static void pin_to(int cpu)
{
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return 0;
    unsigned long utime = 0, stime = 0;
    /* fields after the command: state(3) ... utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) return 0;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ---- servers --------------------------------------------------------------------------------- */

/* Starts argv pinned to CPU 1 with stdout on a pipe; returns the pipe. */
static FILE *spawn(gen *g, char *const argv[])
{
    int p[2];
    if (pipe(p) != 0) return NULL;
    pid_t pid = fork();
    if (pid < 0) return NULL;
    if (pid == 0) {
        /* A session of its own: with autogroup scheduling, CPU time is
         * shared between sessions first, so the server does not split the
         * generator's share. Both servers are started the same way. */
        setsid();
        pin_to(1);
        dup2(p[1], 1);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, 2);
        close(p[0]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    g->pid = pid;
    g->out = fdopen(p[0], "r");
    return g->out;
}

static void stop_server(gen *g)
{
    if (g->pid <= 0) return;
    kill(g->pid, SIGTERM);
    for (int i = 0; i < 50; i++) {
        if (waitpid(g->pid, NULL, WNOHANG) == g->pid) {
            g->pid = 0;
            return;
        }
        usleep(20000);
    }
    kill(g->pid, SIGKILL);
    waitpid(g->pid, NULL, 0);
    g->pid = 0;
}

/* parley-relayd prints its counters when it stops: show the ones that say
 * where packets went. */
static void server_counters(gen *g)
{
    char line[4096];
    while (g->out && fgets(line, sizeof line, g->out)) {
        if (strncmp(line, "stats ", 6) != 0) continue;
        printf("  %-13s counters:", server_name[g->kind]);
        static const char *keep[] = {"forwarded=", "udp_received=", "udp_sent=", "udp_send_full=", "udp_send_errors=",
                                     "drop_rate=", "drop_unbound=", "drop_channel=", "drop_token=", "drop_source="};
        for (size_t k = 0; k < sizeof keep / sizeof keep[0]; k++) {
            const char *at = strstr(line, keep[k]);
            if (at) printf(" %.*s", (int)strcspn(at, " \n"), at);
        }
        printf("\n");
    }
}

/* A JSON request on the control socket; the reply line in buf. */
static bool control_call(int fd, const char *req, char *buf, size_t cap)
{
    size_t len = strlen(req);
    if (write(fd, req, len) != (ssize_t)len) return false;
    size_t got = 0;
    while (got + 1 < cap) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n <= 0) return false;
        got += (size_t)n;
        buf[got] = 0;
        if (memchr(buf, '\n', got)) return true;
    }
    return false;
}

/* Parses the allocations out of the reply without a JSON library: the
 * fields come in a fixed order. */
static int parse_allocations(gen *g, const char *reply, int first, int max)
{
    int n = 0;
    const char *p = reply;
    while (first + n < max && (p = strstr(p, "\"channel\":")) != NULL) {
        sess *s = &g->s[first + n];
        unsigned long long a, b;
        unsigned long ch;
        if (sscanf(p, "\"channel\":%lu,\"token_a\":\"%llx\",\"token_b\":\"%llx\"", &ch, &a, &b) != 3) break;
        s->channel = (uint32_t)ch;
        s->tok_a = a;
        s->tok_b = b;
        n++;
        p++;
    }
    return n;
}

static bool start_ours(gen *g, const char *relayd, int sessions)
{
    snprintf(g->control, sizeof g->control, "/tmp/bench_relay_%d.sock", (int)getpid());
    char maxs[16];
    snprintf(maxs, sizeof maxs, "%d", sessions + 16);
    /* The per-side rate limits are raised well above a call's 50 packets/s:
     * a generator that falls behind for a moment catches up in a burst, and
     * coturn (--max-bps 0) has no such limit to trip over either. Every
     * session is allocated at the start and the big steps come minutes
     * later, so allocations live as long as a TURN allocation does (600 s,
     * RFC 8656): with parley-relayd's default of 60 s idle, the sessions
     * no step had used yet expired before theirs came, and their packets
     * were dropped as "unknown channel". */
    char *argv[] = {(char *)relayd, "--listen", "127.0.0.1:0", "--control", g->control, "--max-allocations", maxs,
                    "--max-per-client", maxs, "--pps", "2000", "--bps", "2000000", "--idle-s", "600", NULL};
    FILE *out = spawn(g, argv);
    char line[256];
    if (!out || !fgets(line, sizeof line, out)) return false;
    unsigned a, b, c, d, port;
    if (sscanf(line, "listening %u.%u.%u.%u:%u", &a, &b, &c, &d, &port) != 5) return false;
    g->server = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                     .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", g->control);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) return false;
    static char reply[1 << 20];
    for (int done = 0; done < sessions;) {
        int want = sessions - done > 1000 ? 1000 : sessions - done;
        char req[64];
        snprintf(req, sizeof req, "{\"cmd\":\"allocate\",\"count\":%d}\n", want);
        if (!control_call(fd, req, reply, sizeof reply)) return false;
        int got = parse_allocations(g, reply, done, sessions);
        if (got != want) return false;
        done += got;
    }
    close(fd);
    /* Each side binds: A from its own socket, B from its shared one. */
    uint8_t pkt[13];
    for (int i = 0; i < sessions; i++) {
        sess *s = &g->s[i];
        pkt[0] = 0xF1;
        put32(pkt + 1, s->channel);
        put64(pkt + 5, s->tok_a);
        sendto(s->fd_a, pkt, sizeof pkt, 0, (struct sockaddr *)&g->server, sizeof g->server);
        put64(pkt + 5, s->tok_b);
        sendto(g->fd_b[s->b], pkt, sizeof pkt, 0, (struct sockaddr *)&g->server, sizeof g->server);
        if (i % 200 == 199) usleep(2000);
    }
    g->n_ready = sessions;
    return true;
}

/* ---- TURN, the little of it a client needs ------------------------------------------------------ */

static size_t stun_header(uint8_t *p, uint16_t type, uint16_t len, uint32_t idx)
{
    put16(p, type);
    put16(p + 2, len);
    put32(p + 4, STUN_COOKIE);
    put32(p + 8, 0x50415243); /* "PARC" */
    put32(p + 12, idx);
    /* A transaction id per request: a server may answer a repeated id from
     * its cache of the earlier transaction. */
    static uint32_t counter;
    put32(p + 16, ++counter);
    return 20;
}

static void turn_allocate(gen *g, int i)
{
    uint8_t p[64];
    size_t n = stun_header(p, 0x0003, 8, (uint32_t)i);
    put16(p + n, 0x0019); /* REQUESTED-TRANSPORT: UDP */
    put16(p + n + 2, 4);
    put32(p + n + 4, 17u << 24);
    n += 8;
    sendto(g->s[i].fd_a, p, n, 0, (struct sockaddr *)&g->server, sizeof g->server);
}

static void turn_channel_bind(gen *g, int i)
{
    uint8_t p[64];
    size_t n = stun_header(p, 0x0009, 8 + 12, (uint32_t)i);
    put16(p + n, 0x000C); /* CHANNEL-NUMBER */
    put16(p + n + 2, 4);
    put16(p + n + 4, 0x4000);
    put16(p + n + 6, 0);
    n += 8;
    const struct sockaddr_in *peer = &g->b_addr[g->s[i].b];
    put16(p + n, 0x0012); /* XOR-PEER-ADDRESS */
    put16(p + n + 2, 8);
    p[n + 4] = 0;
    p[n + 5] = 1;
    put16(p + n + 6, (uint16_t)(ntohs(peer->sin_port) ^ (STUN_COOKIE >> 16)));
    put32(p + n + 8, ntohl(peer->sin_addr.s_addr) ^ STUN_COOKIE);
    n += 12;
    sendto(g->s[i].fd_a, p, n, 0, (struct sockaddr *)&g->server, sizeof g->server);
}

/* A STUN response on A's socket: moves the session's set-up on. */
static void turn_response(gen *g, const uint8_t *p, size_t len)
{
    if (len < 20 || get32(p + 4) != STUN_COOKIE || get32(p + 8) != 0x50415243) return;
    uint32_t i = get32(p + 12);
    if (i >= MAX_SESSIONS) return;
    sess *s = &g->s[i];
    uint16_t type = get16(p);
    if (type == 0x0103 && s->state == 0) { /* Allocate success */
        for (size_t off = 20; off + 4 <= len;) {
            uint16_t at = get16(p + off), al = get16(p + off + 2);
            if (off + 4 + al > len) break;
            if (at == 0x0016 && al >= 8 && p[off + 5] == 1) { /* XOR-RELAYED-ADDRESS, IPv4 */
                s->relayed.sin_family = AF_INET;
                s->relayed.sin_port = htons((uint16_t)(get16(p + off + 6) ^ (STUN_COOKIE >> 16)));
                s->relayed.sin_addr.s_addr = htonl(get32(p + off + 8) ^ STUN_COOKIE);
                s->state = 1;
            }
            off += 4 + ((al + 3u) & ~3u);
        }
    } else if (type == 0x0109) { /* ChannelBind success */
        if (s->state == 1) s->state = 2;
    } else if (getenv("BENCH_DEBUG")) {
        int code = 0;
        for (size_t off = 20; off + 8 <= len;) {
            uint16_t at = get16(p + off), al = get16(p + off + 2);
            if (at == 0x0009 && al >= 4) code = p[off + 6] * 100 + p[off + 7];
            off += 4 + ((al + 3u) & ~3u);
        }
        fprintf(stderr, "debug: session %u: STUN type 0x%04x error %d\n", (unsigned)i, type, code);
    }
}

static void receive_all(gen *g, int timeout_ms);

/* coturn's relay threads: 1 (a listener thread and one relay thread, both
 * pinned to the one core) did better here than 0 (everything in the
 * listener thread). */
static const char *turn_threads = "1";

static bool start_coturn(gen *g, const char *turnserver, int sessions)
{
    int port = 20000 + (int)(getpid() % 20000);
    char ports[16], pidfile[64];
    snprintf(ports, sizeof ports, "%d", port);
    snprintf(pidfile, sizeof pidfile, "/tmp/bench_relay_turn_%d.pid", (int)getpid());
    char *argv[] = {(char *)turnserver, "-n", "--no-auth", "--listening-ip", "127.0.0.1", "--listening-port", ports,
                    "--relay-ip", "127.0.0.1", "--min-port", "41000", "--max-port", "60000", "--relay-threads", (char *)turn_threads,
                    "--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers", "--no-stdout-log",
                    "--log-file", getenv("BENCH_TURN_LOG") ? getenv("BENCH_TURN_LOG") : "/dev/null", "--simple-log", "--pidfile", pidfile, "--no-rfc5780",
                    "--no-software-attribute", NULL};
    if (!spawn(g, argv)) return false;
    g->server = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                     .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* Ready when it answers an Allocate. */
    for (int tries = 0; tries < 100 && g->s[0].state == 0; tries++) {
        turn_allocate(g, 0);
        receive_all(g, 50);
    }
    if (g->s[0].state == 0) return false;
    /* Allocate, then bind a channel, for every session; requests that got
     * no answer are sent again every half second, until nothing moves for
     * ten seconds. */
    uint64_t last_progress = now_us();
    for (;;) {
        int pending = 0, done = 0;
        for (int i = 0; i < sessions; i++) {
            if (g->s[i].state == 0) turn_allocate(g, i), pending++;
            else if (g->s[i].state == 1) turn_channel_bind(g, i), pending++;
            if (pending % 50 == 49) receive_all(g, 2);
        }
        if (!pending) break;
        for (int t = 0; t < 50; t++) receive_all(g, 10);
        for (int i = 0; i < sessions; i++) done += g->s[i].state;
        static int last_done;
        if (done != last_done) last_progress = now_us();
        last_done = done;
        if (now_us() - last_progress > 10000000) break;
    }
    for (int i = 0; i < sessions; i++)
        if (g->s[i].state != 2) {
            fprintf(stderr, "bench_relay: coturn set-up failed for session %d (state %d)\n", i, g->s[i].state);
            return false;
        }
    g->n_ready = sessions;
    return true;
}

/* ---- the load ----------------------------------------------------------------------------------- */

enum { DIR_AB = 1, DIR_BA = 2 };

/* Payload: session index u32, direction u8, sequence u32, then zeros. */
static void count_payload(gen *g, const uint8_t *p, size_t len, int dir)
{
    if (len < 9 || get32(p) >= MAX_SESSIONS || p[4] != dir) {
        g->recv_bad++;
        return;
    }
    if (dir == DIR_AB) g->recv_ab++;
    else g->recv_ba++;
}

static void on_datagram(gen *g, uint32_t tag, const uint8_t *p, size_t len)
{
    bool at_b = tag >= MAX_SESSIONS;
    if (g->kind == OURS) {
        if (len < 13 || p[0] != 0xF1) {
            g->recv_bad += len != 13; /* 13 bytes: the answer to a bind */
            return;
        }
        uint32_t ch = get32(p + 1);
        uint64_t tok = get64(p + 5);
        uint32_t i = len >= 17 ? get32(p + 13) : MAX_SESSIONS;
        if (i >= MAX_SESSIONS || g->s[i].channel != ch || tok != (at_b ? g->s[i].tok_b : g->s[i].tok_a)) {
            g->recv_bad++;
            return;
        }
        count_payload(g, p + 13, len - 13, at_b ? DIR_AB : DIR_BA);
        return;
    }
    if (at_b) {
        count_payload(g, p, len, DIR_AB);
        return;
    }
    if (len >= 4 && (p[0] & 0xC0) == 0x40) { /* ChannelData */
        size_t dl = get16(p + 2);
        if (dl + 4 <= len) count_payload(g, p + 4, dl, DIR_BA);
        else g->recv_bad++;
        return;
    }
    if (len >= 20 && (p[0] & 0xC0) == 0) {
        turn_response(g, p, len);
        return;
    }
    g->recv_bad++;
}

static void receive_all(gen *g, int timeout_ms)
{
    struct epoll_event evs[512];
    int n = epoll_wait(g->ep, evs, 512, timeout_ms);
    static uint8_t bufs[BATCH][MAX_PKT];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    for (int e = 0; e < n; e++) {
        uint32_t tag = evs[e].data.u32;
        int fd = tag >= MAX_SESSIONS ? g->fd_b[tag - MAX_SESSIONS] : g->s[tag].fd_a;
        for (int rounds = 0; rounds < 8; rounds++) {
            for (int i = 0; i < BATCH; i++) {
                iov[i] = (struct iovec){bufs[i], MAX_PKT};
                msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
            }
            int got = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
            if (got <= 0) break;
            for (int i = 0; i < got; i++) on_datagram(g, tag, bufs[i], msgs[i].msg_len);
            if (got < BATCH) break;
        }
    }
}

typedef struct outq {
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    uint8_t bufs[BATCH][MAX_PKT];
    struct sockaddr_in to[BATCH];
    int n;
} outq;

static void flush_b(gen *g, outq *q, int b)
{
    int off = 0;
    while (off < q->n) {
        int sent = sendmmsg(g->fd_b[b], q->msgs + off, (unsigned)(q->n - off), 0);
        if (sent <= 0) {
            if (sent < 0 && errno == EINTR) continue;
            g->send_fail += (uint64_t)(q->n - off);
            break;
        }
        off += sent;
    }
    q->n = 0;
}

static size_t make_packet(gen *g, uint8_t *p, sess *s, uint32_t idx, int dir)
{
    size_t h = 0;
    if (g->kind == OURS) {
        p[0] = 0xF1;
        put32(p + 1, s->channel);
        put64(p + 5, dir == DIR_AB ? s->tok_a : s->tok_b);
        h = 13;
    } else if (dir == DIR_AB) {
        put16(p, 0x4000);
        put16(p + 2, (uint16_t)g->payload);
        h = 4;
    }
    memset(p + h, 0, g->payload);
    put32(p + h, idx);
    p[h + 4] = (uint8_t)dir;
    put32(p + h + 5, s->seq);
    return h + g->payload;
}

/* Runs n sessions for `us` microseconds; counts what was sent in that time. */
static void run_load(gen *g, int n, uint64_t us)
{
    static outq q[NB];
    uint64_t start = now_us(), end = start + us;
    for (int i = 0; i < n; i++) g->s[i].next_send = start + (uint64_t)i * INTERVAL_US / (uint64_t)n;
    uint8_t pkt[MAX_PKT];
    for (uint64_t now = start; now < end; now = now_us()) {
        for (int i = 0; i < n; i++) {
            sess *s = &g->s[i];
            while (s->next_send <= now) {
                s->next_send += INTERVAL_US;
                s->seq++;
                size_t len = make_packet(g, pkt, s, (uint32_t)i, DIR_AB);
                if (sendto(s->fd_a, pkt, len, 0, (struct sockaddr *)&g->server, sizeof g->server) == (ssize_t)len)
                    g->sent_ab++;
                else g->send_fail++;
                outq *b = &q[s->b];
                int k = b->n++;
                b->iov[k] = (struct iovec){b->bufs[k], make_packet(g, b->bufs[k], s, (uint32_t)i, DIR_BA)};
                b->to[k] = g->kind == OURS ? g->server : s->relayed;
                b->msgs[k] = (struct mmsghdr){.msg_hdr = {.msg_name = &b->to[k], .msg_namelen = sizeof b->to[k],
                                                          .msg_iov = &b->iov[k], .msg_iovlen = 1}};
                g->sent_ba++;
                if (b->n == BATCH) flush_b(g, b, s->b);
            }
        }
        for (int b = 0; b < NB; b++)
            if (q[b].n) flush_b(g, &q[b], b);
        receive_all(g, 0);
        /* Sleep until the next millisecond unless traffic is waiting. */
        receive_all(g, 1);
    }
}

typedef struct step {
    int sessions;
    double offered_pps, delivered_pps, loss_pct, server_cpu, gen_cpu;
    double us_per_pkt; /* server CPU time per relayed packet */
} step;

static step measure(gen *g, int n, double seconds)
{
    step r = {.sessions = n};
    run_load(g, n, 500000); /* warm-up */
    for (int i = 0; i < 20; i++) receive_all(g, 10);
    g->sent_ab = g->sent_ba = g->recv_ab = g->recv_ba = g->recv_bad = g->send_fail = 0;
    double c0 = proc_cpu_s(g->pid), s0 = self_cpu_s();
    uint64_t t0 = now_us();
    run_load(g, n, (uint64_t)(seconds * 1e6));
    uint64_t t1 = now_us();
    double c1 = proc_cpu_s(g->pid), s1 = self_cpu_s();
    for (int i = 0; i < 30; i++) receive_all(g, 10); /* stragglers */
    double secs = (double)(t1 - t0) / 1e6;
    if (getenv("BENCH_DEBUG"))
        fprintf(stderr, "debug: secs %.3f sent_ab %llu sent_ba %llu recv_ab %llu recv_ba %llu\n", secs,
                (unsigned long long)g->sent_ab, (unsigned long long)g->sent_ba, (unsigned long long)g->recv_ab,
                (unsigned long long)g->recv_ba);
    uint64_t sent = g->sent_ab + g->sent_ba, got = g->recv_ab + g->recv_ba;
    r.offered_pps = (double)sent / secs;
    r.delivered_pps = (double)got / secs;
    r.loss_pct = sent ? 100.0 * (double)(sent > got ? sent - got : 0) / (double)sent : 0;
    r.server_cpu = 100.0 * (c1 - c0) / secs;
    r.us_per_pkt = got ? (c1 - c0) * 1e6 / (double)got : 0;
    r.gen_cpu = 100.0 * (s1 - s0) / secs;
    return r;
}

static bool gen_init(gen *g, int kind, int sessions, size_t payload)
{
    memset(g, 0, sizeof *g);
    g->kind = kind;
    g->payload = payload;
    g->ep = epoll_create1(EPOLL_CLOEXEC);
    g->s = calloc((size_t)sessions, sizeof *g->s);
    if (g->ep < 0 || !g->s) return false;
    for (int b = 0; b < NB; b++)
        if ((g->fd_b[b] = udp_socket(&g->b_addr[b], g->ep, (uint32_t)(MAX_SESSIONS + b))) < 0) return false;
    for (int i = 0; i < sessions; i++) {
        g->s[i].b = i % NB;
        if ((g->s[i].fd_a = udp_socket(NULL, g->ep, (uint32_t)i)) < 0) {
            fprintf(stderr, "bench_relay: out of sockets at %d (ulimit -n)\n", i);
            return false;
        }
    }
    return true;
}

static void gen_free(gen *g, int sessions)
{
    stop_server(g);
    if (g->kind == OURS) server_counters(g);
    if (g->out) fclose(g->out);
    if (g->control[0]) unlink(g->control);
    for (int i = 0; i < sessions && g->s; i++)
        if (g->s[i].fd_a > 0) close(g->s[i].fd_a);
    for (int b = 0; b < NB; b++)
        if (g->fd_b[b] > 0) close(g->fd_b[b]);
    if (g->ep >= 0) close(g->ep);
    free(g->s);
}

/* One server under test: its generator, and how far it got. */
typedef struct runner {
    int kind;
    gen g;
    bool running, done;
    step best;
    int max_sessions;
    int n_results;
    step results[32]; /* lossless steps, in order */
} runner;

static bool runner_start(runner *r, int kind, const char *path, int max_sessions, size_t payload)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->max_sessions = max_sessions;
    if (!gen_init(&r->g, kind, max_sessions, payload) ||
        !(kind == OURS ? start_ours(&r->g, path, max_sessions) : start_coturn(&r->g, path, max_sessions))) {
        fprintf(stderr, "bench_relay: cannot start %s (%s)\n", server_name[kind], path);
        gen_free(&r->g, max_sessions);
        r->done = true;
        return false;
    }
    for (int i = 0; i < 20; i++) receive_all(&r->g, 10);
    r->running = true;
    return true;
}

static void runner_step(runner *r, int sessions, double seconds, double loss_max)
{
    if (r->done) return;
    gen *g = &r->g;
    step x = measure(g, sessions, seconds);
    /* A busy shared machine can stall either process for a moment: a step
     * that lost packets is run once more before it counts. */
    bool retried = false;
    if (x.loss_pct > loss_max) {
        step again = measure(g, sessions, seconds);
        if (again.loss_pct < x.loss_pct) x = again;
        retried = true;
    }
    printf("  %-13s sessions %5d  offered %7.0f pkt/s  relayed %7.0f pkt/s  loss %6.3f%%  server cpu %5.1f%%"
           " (%.2f us/pkt)  generator cpu %5.1f%%%s\n",
           server_name[r->kind], x.sessions, x.offered_pps, x.delivered_pps, x.loss_pct, x.server_cpu, x.us_per_pkt,
           x.gen_cpu, retried ? " (best of two)" : "");
    if (g->send_fail) printf("  %-13s %llu sends failed\n", server_name[r->kind], (unsigned long long)g->send_fail);
    if (g->recv_bad)
        printf("  %-13s %llu datagrams did not belong to any session\n", server_name[r->kind],
               (unsigned long long)g->recv_bad);
    fflush(stdout);
    if (x.loss_pct > loss_max) {
        r->done = true;
    } else {
        r->best = x;
        if (r->n_results < 32) r->results[r->n_results++] = x;
    }
}

static void runner_stop(runner *r)
{
    if (!r->running) return;
    gen_free(&r->g, r->max_sessions);
    r->running = false;
}

static int parse_steps(const char *text, int *out, int max)
{
    int n = 0;
    for (const char *p = text; *p && n < max;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > MAX_SESSIONS || (n && v <= out[n - 1])) return 0;
        out[n++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return 0;
    }
    return n;
}

int main(int argc, char **argv)
{
    double seconds = 3, loss_max = 0.05;
    size_t payload = 120;
    int steps[32], n_steps = parse_steps("250,500,625,750,800,850,900,950,1000,1100,1200,1300,1400,1500,1750,2000,2500,3000,4000", steps, 32);
    bool ours = true, coturn = true;
    char relayd[4096];
    /* build/<variant>/bench/bench_relay -> build/<variant>/parley-relayd */
    snprintf(relayd, sizeof relayd, "%s", argv[0]);
    char *slash = strrchr(relayd, '/');
    if (slash) {
        *slash = 0;
        slash = strrchr(relayd, '/');
    }
    if (slash) snprintf(slash + 1, sizeof relayd - (size_t)(slash + 1 - relayd), "parley-relayd");
    else snprintf(relayd, sizeof relayd, "parley-relayd");
    const char *turnserver = "turnserver";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--ours-only") == 0) coturn = false;
        else if (strcmp(a, "--coturn-only") == 0) ours = false;
        else if (strcmp(a, "--seconds") == 0 && v) seconds = atof(argv[++i]);
        else if (strcmp(a, "--size") == 0 && v) payload = (size_t)atoi(argv[++i]);
        else if (strcmp(a, "--loss-max") == 0 && v) loss_max = atof(argv[++i]);
        else if (strcmp(a, "--sessions") == 0 && v) n_steps = parse_steps(argv[++i], steps, 32);
        else if (strcmp(a, "--relayd") == 0 && v) snprintf(relayd, sizeof relayd, "%s", argv[++i]);
        else if (strcmp(a, "--turnserver") == 0 && v) turnserver = argv[++i];
        else if (strcmp(a, "--turn-threads") == 0 && v) turn_threads = argv[++i];
        else {
            fprintf(stderr, "usage: bench_relay [--seconds S] [--sessions N,N,...] [--size BYTES] [--loss-max PCT]\n"
                            "                   [--relayd PATH] [--turnserver PATH] [--turn-threads N]\n"
                            "                   [--ours-only | --coturn-only]\n");
            return 2;
        }
    }
    if (n_steps < 1 || seconds <= 0 || payload < 16 || payload > 1200) {
        fprintf(stderr, "bench_relay: bad arguments\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    pin_to(0);
    printf("bench_relay: calls of 50 packets/s each way, %zu-byte payloads, %.0f s per step, lossless = loss <= %.3f%%\n",
           payload, seconds, loss_max);
    printf("  server pinned to CPU 1, generator to CPU 0 (%ld CPUs online)\n", sysconf(_SC_NPROCESSORS_ONLN));
    fflush(stdout);
    /* Both servers are set up first, then every step runs against each in
     * turn, so the two see the same machine (other work on it comes and
     * goes) at each size. */
    runner run[2];
    memset(run, 0, sizeof run);
    run[OURS].done = run[COTURN].done = true;
    if (coturn && access("/usr/bin/turnserver", X_OK) != 0 && strchr(turnserver, '/') == NULL &&
        system("command -v turnserver >/dev/null 2>&1") != 0) {
        printf("  coturn: turnserver is not installed; skipped\n");
        coturn = false;
    }
    if (ours) runner_start(&run[OURS], OURS, relayd, steps[n_steps - 1], payload);
    if (coturn) runner_start(&run[COTURN], COTURN, turnserver, steps[n_steps - 1], payload);
    for (int k = 0; k < n_steps && !(run[OURS].done && run[COTURN].done); k++)
        for (int i = 0; i < 2; i++) runner_step(&run[i], steps[k], seconds, loss_max);
    runner_stop(&run[OURS]);
    runner_stop(&run[COTURN]);
    step a = run[OURS].best, b = run[COTURN].best;
    /* The load carried without loss is what was offered in that step (what
     * arrived may include a few stragglers of the step before). */
    printf("relay lossless: parley-relayd %.0f pkt/s (%d sessions)", a.offered_pps, a.sessions);
    if (coturn) {
        printf(", coturn %.0f pkt/s (%d sessions)", b.offered_pps, b.sessions);
        if (b.offered_pps > 0) printf(": %.2fx", a.offered_pps / b.offered_pps);
    }
    printf("\n");
    /* CPU per packet at the loads both carried without loss: what a core
     * costs per relayed packet, less sensitive to the machine's other work
     * than the lossless rate (though single steps still wobble: the mean
     * over the common steps is printed too). */
    int common = run[OURS].n_results < run[COTURN].n_results ? run[OURS].n_results : run[COTURN].n_results;
    if (ours && coturn && common > 0) {
        const step *x = &run[OURS].results[common - 1], *y = &run[COTURN].results[common - 1];
        double mx = 0, my = 0;
        for (int i = 0; i < common; i++) {
            mx += run[OURS].results[i].us_per_pkt / common;
            my += run[COTURN].results[i].us_per_pkt / common;
        }
        printf("relay cpu per packet at %d sessions: parley-relayd %.2f us, coturn %.2f us: %.2fx;"
               " mean over %d common steps: %.2f us, %.2f us: %.2fx\n",
               x->sessions, x->us_per_pkt, y->us_per_pkt, x->us_per_pkt > 0 ? y->us_per_pkt / x->us_per_pkt : 0, common,
               mx, my, mx > 0 ? my / mx : 0);
    }
    return 0;
}
