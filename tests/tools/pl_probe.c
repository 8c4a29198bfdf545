/*
 * pl_probe - a small UDP/TCP probe for the network lab (tests/netlab/).
 *
 * The lab's tests ask the kernel's NATs what they do; this tool is how they
 * ask. Every line it prints starts with a keyword and is made of
 * space-separated fields, so bash can grep and cut it:
 *
 *   pl_probe reflect [--tcp] ADDR:PORT...
 *       Binds every address (UDP, and TCP too with --tcp) and answers. A
 *       datagram "ping TOKEN [from=ADDR:PORT]..." gets the answer
 *       "seen SRC TOKEN LOCAL" (SRC: the source address the reflector saw,
 *       LOCAL: the socket that answers) from the socket it arrived on and
 *       also from each listed from= socket that the reflector bound: that is
 *       how a test makes "unsolicited" packets come from a new port or a new
 *       address of a host the client contacted. Any other datagram gets
 *       "seen SRC - LOCAL". A TCP connection gets one line
 *       "seen SRC - LOCAL\n" and is closed. Prints "ready" once bound, then
 *       "got SRC LOCAL PAYLOAD" per datagram. Runs until killed.
 *
 *   pl_probe client --bind ADDR:PORT [--timeout S] [--listen S] TARGET...
 *       TARGET is ADDR:PORT[,from=ADDR:PORT]... From the one bound port,
 *       pings each target in turn (every 200 ms until it answers or the
 *       timeout passes) and prints "mapped TARGET SEEN" (the address the
 *       target saw: the NAT's mapping towards it) or "nomapping TARGET".
 *       Every datagram received is printed as "recv FROM PAYLOAD". After the
 *       last target it keeps listening --listen seconds. Prints "bound
 *       LOCAL" first. Exit 0 when every target answered.
 *
 *   pl_probe send --bind ADDR:PORT --to ADDR:PORT [--text TEXT] [--count N]
 *       Sends TEXT (default "hello") N times (default 1), 50 ms apart.
 *
 *   pl_probe wait --bind ADDR:PORT [--timeout S] [--count N]
 *       Prints "bound LOCAL", then "recv FROM PAYLOAD" per datagram until N
 *       arrived (default 1) or the timeout (default 2 s). Exit 0 when N
 *       arrived, 1 otherwise.
 *
 *   pl_probe tcp --to ADDR:PORT [--bind ADDR:PORT] [--timeout S]
 *       Connects; prints "tcp-ok TO LINE" with the first line the peer sent
 *       (a reflector's "seen ..."), or "tcp-fail TO REASON". Exit 0 / 1.
 *
 * Payloads are printed with anything outside printable ASCII replaced by
 * '.', so one datagram is always one line. Exit status 2 is a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "parley.h"
#include "sockaddr.h"

#define MAX_SOCKS 16
#define MAX_TARGETS 16
#define MAX_FROM 4
#define DGRAM_MAX 1500

static void usage(void)
{
    fprintf(stderr,
            "usage: pl_probe reflect [--tcp] ADDR:PORT...\n"
            "       pl_probe client --bind ADDR:PORT [--timeout S] [--listen S] TARGET[,from=ADDR:PORT]...\n"
            "       pl_probe send --bind ADDR:PORT --to ADDR:PORT [--text TEXT] [--count N]\n"
            "       pl_probe wait --bind ADDR:PORT [--timeout S] [--count N]\n"
            "       pl_probe tcp --to ADDR:PORT [--bind ADDR:PORT] [--timeout S]\n");
    exit(2);
}

static pl_time now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (pl_time)ts.tv_sec * PL_SEC + (pl_time)ts.tv_nsec / 1000;
}

static pl_addr parse_addr_or_die(const char *text)
{
    pl_addr a;
    if (!pl_addr_parse(&a, text, 0)) {
        fprintf(stderr, "pl_probe: not an address: %s\n", text);
        exit(2);
    }
    return a;
}

static double parse_seconds(const char *text)
{
    char *end = NULL;
    double s = strtod(text, &end);
    if (!end || *end || s < 0 || s > 3600) {
        fprintf(stderr, "pl_probe: not a number of seconds: %s\n", text);
        exit(2);
    }
    return s;
}

static const char *fmt(const pl_addr *a, char buf[PL_ADDR_TEXT_MAX])
{
    return pl_addr_format(a, buf, PL_ADDR_TEXT_MAX);
}

/* Copies a payload into printable text: one datagram stays one line. */
static void printable(const uint8_t *data, size_t len, char *out, size_t cap)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++) out[i] = (data[i] >= 0x21 && data[i] < 0x7f) || data[i] == ' ' ? (char)data[i] : '.';
    out[n] = 0;
    if (n == 0) snprintf(out, cap, "-");
}

static int open_socket(int type, const pl_addr *bind_addr, bool listen_too)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (!pl_sockaddr_from_addr(bind_addr, &ss, &sl)) return -1;
    int fd = socket(ss.ss_family, type | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || (listen_too && listen(fd, 16) != 0)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static pl_addr local_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    pl_addr a;
    memset(&a, 0, sizeof a);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) pl_sockaddr_to_addr((struct sockaddr *)&ss, &a);
    return a;
}

static int open_udp_or_die(const pl_addr *a)
{
    int fd = open_socket(SOCK_DGRAM, a, false);
    if (fd < 0) {
        char b[PL_ADDR_TEXT_MAX];
        fprintf(stderr, "pl_probe: cannot bind udp %s: %s\n", fmt(a, b), strerror(errno));
        exit(1);
    }
    return fd;
}

static void send_to(int fd, const pl_addr *to, const void *data, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (!pl_sockaddr_from_addr(to, &ss, &sl)) return;
    /* A lost datagram is what the tests measure; an error here (e.g. an
     * ICMP unreachable reported on the socket) is not fatal. */
    (void)sendto(fd, data, len, 0, (struct sockaddr *)&ss, sl);
}

/* Receives one datagram if there is one; returns its length or -1. */
static ssize_t recv_from(int fd, uint8_t *buf, size_t cap, pl_addr *from)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    ssize_t n = recvfrom(fd, buf, cap, MSG_DONTWAIT, (struct sockaddr *)&ss, &sl);
    if (n >= 0) pl_sockaddr_to_addr((struct sockaddr *)&ss, from);
    return n;
}

/* ---- reflect ----------------------------------------------------------------- */

static int cmd_reflect(int argc, char **argv)
{
    bool tcp = false;
    pl_addr addrs[MAX_SOCKS];
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--tcp") == 0) tcp = true;
        else if (n < MAX_SOCKS) addrs[n++] = parse_addr_or_die(argv[i]);
        else usage();
    }
    if (n == 0) usage();
    int udp[MAX_SOCKS], lst[MAX_SOCKS];
    struct pollfd pfd[2 * MAX_SOCKS];
    for (int i = 0; i < n; i++) {
        udp[i] = open_udp_or_die(&addrs[i]);
        lst[i] = -1;
        if (tcp) {
            lst[i] = open_socket(SOCK_STREAM, &addrs[i], true);
            if (lst[i] >= 0) fcntl(lst[i], F_SETFL, fcntl(lst[i], F_GETFL) | O_NONBLOCK);
            if (lst[i] < 0) {
                char b[PL_ADDR_TEXT_MAX];
                fprintf(stderr, "pl_probe: cannot listen tcp %s: %s\n", fmt(&addrs[i], b), strerror(errno));
                return 1;
            }
        }
        addrs[i] = local_of(udp[i]);
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        int np = 0;
        for (int i = 0; i < n; i++) {
            pfd[np++] = (struct pollfd){.fd = udp[i], .events = POLLIN};
            if (lst[i] >= 0) pfd[np++] = (struct pollfd){.fd = lst[i], .events = POLLIN};
        }
        if (poll(pfd, (nfds_t)np, -1) < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        for (int i = 0; i < n; i++) {
            char src[PL_ADDR_TEXT_MAX], loc[PL_ADDR_TEXT_MAX], text[DGRAM_MAX + 1], reply[256];
            if (lst[i] >= 0) {
                /* The listener is non-blocking: accept returns at once when
                 * nothing is pending. */
                struct sockaddr_storage ss;
                socklen_t sl = sizeof ss;
                int c = accept4(lst[i], (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (c >= 0) {
                    pl_addr from;
                    pl_sockaddr_to_addr((struct sockaddr *)&ss, &from);
                    int len = snprintf(reply, sizeof reply, "seen %s - %s\n", fmt(&from, src), fmt(&addrs[i], loc));
                    (void)!write(c, reply, (size_t)len);
                    close(c);
                    printf("tcp %s %s\n", src, loc);
                    fflush(stdout);
                }
            }
            uint8_t buf[DGRAM_MAX];
            pl_addr from;
            ssize_t got;
            while ((got = recv_from(udp[i], buf, sizeof buf - 1, &from)) >= 0) {
                printable(buf, (size_t)got, text, sizeof text);
                printf("got %s %s %s\n", fmt(&from, src), fmt(&addrs[i], loc), text);
                /* "ping TOKEN [from=ADDR:PORT]...": split on spaces. */
                char *save = NULL, *word = strtok_r(text, " ", &save);
                const char *token = "-";
                pl_addr extra[MAX_FROM];
                int n_extra = 0;
                if (word && strcmp(word, "ping") == 0) {
                    char *t = strtok_r(NULL, " ", &save);
                    if (t) token = t;
                    while ((word = strtok_r(NULL, " ", &save)) != NULL && n_extra < MAX_FROM)
                        if (strncmp(word, "from=", 5) == 0 && pl_addr_parse(&extra[n_extra], word + 5, 0)) n_extra++;
                }
                int len = snprintf(reply, sizeof reply, "seen %s %s %s", src, token, loc);
                send_to(udp[i], &from, reply, (size_t)len);
                for (int e = 0; e < n_extra; e++) {
                    for (int j = 0; j < n; j++) {
                        if (!pl_addr_equal(&addrs[j], &extra[e])) continue;
                        len = snprintf(reply, sizeof reply, "seen %s %s %s", src, token, fmt(&addrs[j], loc));
                        send_to(udp[j], &from, reply, (size_t)len);
                    }
                }
            }
        }
        fflush(stdout);
    }
}

/* ---- client ------------------------------------------------------------------- */

typedef struct target {
    pl_addr to;
    char spec[256]; /* the ping's tail: " from=..." */
    bool answered;
} target;

/* Prints and handles every datagram waiting on fd; marks answered targets. */
static void client_drain(int fd, target *t, int n_targets)
{
    uint8_t buf[DGRAM_MAX];
    pl_addr from;
    ssize_t got;
    while ((got = recv_from(fd, buf, sizeof buf - 1, &from)) >= 0) {
        char src[PL_ADDR_TEXT_MAX], text[DGRAM_MAX + 1];
        printable(buf, (size_t)got, text, sizeof text);
        printf("recv %s %s\n", fmt(&from, src), text);
        /* "seen SEEN TOKEN LOCAL" from the target itself is its answer. */
        char seen[PL_ADDR_TEXT_MAX + 1], token[32];
        if (sscanf(text, "seen %48s %31s", seen, token) == 2 && token[0] == 't') {
            int idx = atoi(token + 1);
            if (idx >= 0 && idx < n_targets && !t[idx].answered && pl_addr_equal(&from, &t[idx].to)) {
                t[idx].answered = true;
                char to[PL_ADDR_TEXT_MAX];
                printf("mapped %s %s\n", fmt(&t[idx].to, to), seen);
            }
        }
    }
    fflush(stdout);
}

static void wait_readable(int fd, pl_time until)
{
    pl_time now = now_us();
    if (now >= until) return;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    (void)poll(&p, 1, (int)((until - now + 999) / 1000));
}

static int cmd_client(int argc, char **argv)
{
    pl_addr bind_addr;
    bool have_bind = false;
    double timeout = 2.0, listen_s = 0;
    target t[MAX_TARGETS];
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--bind") == 0 && i + 1 < argc) {
            bind_addr = parse_addr_or_die(argv[++i]);
            have_bind = true;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            timeout = parse_seconds(argv[++i]);
        } else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_s = parse_seconds(argv[++i]);
        } else if (argv[i][0] != '-' && n < MAX_TARGETS) {
            char spec[256];
            snprintf(spec, sizeof spec, "%s", argv[i]);
            char *comma = strchr(spec, ',');
            if (comma) *comma = 0;
            memset(&t[n], 0, sizeof t[n]);
            t[n].to = parse_addr_or_die(spec);
            size_t off = 0;
            for (char *p = comma ? comma + 1 : NULL; p && *p;) {
                char *next = strchr(p, ',');
                if (next) *next = 0;
                if (strncmp(p, "from=", 5) != 0) usage();
                (void)parse_addr_or_die(p + 5);
                off += (size_t)snprintf(t[n].spec + off, sizeof t[n].spec - off, " %s", p);
                if (off >= sizeof t[n].spec) usage();
                p = next ? next + 1 : NULL;
            }
            n++;
        } else {
            usage();
        }
    }
    if (!have_bind || n == 0) usage();
    int fd = open_udp_or_die(&bind_addr);
    char loc[PL_ADDR_TEXT_MAX];
    pl_addr local = local_of(fd);
    printf("bound %s\n", fmt(&local, loc));
    fflush(stdout);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        pl_time end = now_us() + (pl_time)(timeout * 1e6);
        char msg[320];
        int len = snprintf(msg, sizeof msg, "ping t%d%s", i, t[i].spec);
        while (!t[i].answered && now_us() < end) {
            send_to(fd, &t[i].to, msg, (size_t)len);
            pl_time next = now_us() + 200 * PL_MSEC;
            if (next > end) next = end;
            while (!t[i].answered && now_us() < next) {
                wait_readable(fd, next);
                client_drain(fd, t, n);
            }
        }
        if (!t[i].answered) {
            char to[PL_ADDR_TEXT_MAX];
            printf("nomapping %s\n", fmt(&t[i].to, to));
            fflush(stdout);
            failed++;
        }
    }
    pl_time end = now_us() + (pl_time)(listen_s * 1e6);
    while (now_us() < end) {
        wait_readable(fd, end);
        client_drain(fd, t, n);
    }
    close(fd);
    return failed ? 1 : 0;
}

/* ---- send, wait, tcp ------------------------------------------------------------ */

static int cmd_send(int argc, char **argv)
{
    pl_addr bind_addr, to;
    bool have_bind = false, have_to = false;
    const char *text = "hello";
    long count = 1;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--bind") == 0 && i + 1 < argc) {
            bind_addr = parse_addr_or_die(argv[++i]);
            have_bind = true;
        } else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) {
            to = parse_addr_or_die(argv[++i]);
            have_to = true;
        } else if (strcmp(argv[i], "--text") == 0 && i + 1 < argc) {
            text = argv[++i];
        } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            count = strtol(argv[++i], NULL, 10);
            if (count < 1 || count > 1000) usage();
        } else {
            usage();
        }
    }
    if (!have_bind || !have_to) usage();
    int fd = open_udp_or_die(&bind_addr);
    for (long i = 0; i < count; i++) {
        if (i > 0) usleep(50000);
        send_to(fd, &to, text, strlen(text));
    }
    close(fd);
    return 0;
}

static int cmd_wait(int argc, char **argv)
{
    pl_addr bind_addr;
    bool have_bind = false;
    double timeout = 2.0;
    long count = 1;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--bind") == 0 && i + 1 < argc) {
            bind_addr = parse_addr_or_die(argv[++i]);
            have_bind = true;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            timeout = parse_seconds(argv[++i]);
        } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            count = strtol(argv[++i], NULL, 10);
            if (count < 1 || count > 1000000) usage();
        } else {
            usage();
        }
    }
    if (!have_bind) usage();
    int fd = open_udp_or_die(&bind_addr);
    char loc[PL_ADDR_TEXT_MAX];
    pl_addr local = local_of(fd);
    printf("bound %s\n", fmt(&local, loc));
    fflush(stdout);
    long got = 0;
    pl_time end = now_us() + (pl_time)(timeout * 1e6);
    while (got < count && now_us() < end) {
        wait_readable(fd, end);
        uint8_t buf[DGRAM_MAX];
        pl_addr from;
        ssize_t n;
        while (got < count && (n = recv_from(fd, buf, sizeof buf - 1, &from)) >= 0) {
            char src[PL_ADDR_TEXT_MAX], text[DGRAM_MAX + 1];
            printable(buf, (size_t)n, text, sizeof text);
            printf("recv %s %s\n", fmt(&from, src), text);
            got++;
        }
        fflush(stdout);
    }
    close(fd);
    return got >= count ? 0 : 1;
}

static int cmd_tcp(int argc, char **argv)
{
    pl_addr to, bind_addr;
    bool have_to = false, have_bind = false;
    double timeout = 2.0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) {
            to = parse_addr_or_die(argv[++i]);
            have_to = true;
        } else if (strcmp(argv[i], "--bind") == 0 && i + 1 < argc) {
            bind_addr = parse_addr_or_die(argv[++i]);
            have_bind = true;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            timeout = parse_seconds(argv[++i]);
        } else {
            usage();
        }
    }
    if (!have_to) usage();
    char tb[PL_ADDR_TEXT_MAX];
    fmt(&to, tb);
    struct sockaddr_storage ss;
    socklen_t sl;
    if (!pl_sockaddr_from_addr(&to, &ss, &sl)) usage();
    int fd;
    if (have_bind) {
        fd = open_socket(SOCK_STREAM, &bind_addr, false);
    } else {
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    }
    if (fd < 0) {
        printf("tcp-fail %s socket:%s\n", tb, strerror(errno));
        return 1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    pl_time end = now_us() + (pl_time)(timeout * 1e6);
    if (connect(fd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS) {
        printf("tcp-fail %s connect:%s\n", tb, strerror(errno));
        close(fd);
        return 1;
    }
    char line[512];
    size_t have = 0;
    bool connected = false;
    while (now_us() < end) {
        struct pollfd p = {.fd = fd, .events = connected ? POLLIN : POLLOUT};
        int ms = (int)((end - now_us() + 999) / 1000);
        if (poll(&p, 1, ms) <= 0) continue;
        if (!connected) {
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
            if (err) {
                printf("tcp-fail %s connect:%s\n", tb, strerror(err));
                close(fd);
                return 1;
            }
            connected = true;
            continue;
        }
        ssize_t n = read(fd, line + have, sizeof line - 1 - have);
        if (n > 0) have += (size_t)n;
        if (n <= 0 || memchr(line, '\n', have) || have == sizeof line - 1) break;
    }
    close(fd);
    if (!connected) {
        printf("tcp-fail %s timeout\n", tb);
        return 1;
    }
    line[have] = 0;
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    printf("tcp-ok %s %s\n", tb, have ? line : "-");
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) usage();
    if (strcmp(argv[1], "reflect") == 0) return cmd_reflect(argc - 2, argv + 2);
    if (strcmp(argv[1], "client") == 0) return cmd_client(argc - 2, argv + 2);
    if (strcmp(argv[1], "send") == 0) return cmd_send(argc - 2, argv + 2);
    if (strcmp(argv[1], "wait") == 0) return cmd_wait(argc - 2, argv + 2);
    if (strcmp(argv[1], "tcp") == 0) return cmd_tcp(argc - 2, argv + 2);
    usage();
    return 2;
}
