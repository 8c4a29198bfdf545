/*
 * pl_relay_probe - drives a running parley-relayd over real sockets, for
 * tests/relayd.test.sh.
 *
 *   pl_relay_probe --control PATH --udp ADDR:PORT --tcp ADDR:PORT [--count N]
 *
 * Makes one allocation over the control socket, puts side A on a UDP socket
 * and side B on a TCP stream (frames: u16 length + bytes), binds both, and
 * sends N numbered datagrams each way, 100 a second. A third socket plays a stranger: it
 * sends a wrong token, side A's token from its own address, and an unknown
 * channel, and listens for anything coming back. Prints keyword-first lines:
 *   allocated CHANNEL
 *   bound udp|tcp yes|no
 *   udp->tcp GOT/N        (arrived at B with B's token and the right bytes)
 *   tcp->udp GOT/N
 *   stranger GOT          (datagrams the stranger received: must be 0)
 *   stats JSON            (the relay's counters afterwards)
 * Exits 0 when it could run at all (the test judges the lines), 1 otherwise.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "parley.h"
#include "relay.h"
#include "sockaddr.h"

static int die(const char *what)
{
    fprintf(stderr, "pl_relay_probe: %s: %s\n", what, strerror(errno));
    return 1;
}

static bool control(int fd, const char *req, char *buf, size_t cap)
{
    if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) return false;
    size_t got = 0;
    while (got + 1 < cap) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n <= 0) return false;
        got += (size_t)n;
        buf[got] = 0;
        if (memchr(buf, '\n', got)) {
            *strchr(buf, '\n') = 0;
            return true;
        }
    }
    return false;
}

/* Waits up to ms for fd to be readable. */
static bool readable(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, ms) == 1;
}

static bool read_exact(int fd, uint8_t *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        if (!readable(fd, 2000)) return false;
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) return false;
        got += (size_t)r;
    }
    return true;
}

static bool send_frame(int fd, const uint8_t *data, size_t len)
{
    uint8_t hdr[2] = {(uint8_t)(len >> 8), (uint8_t)len};
    return write(fd, hdr, 2) == 2 && write(fd, data, len) == (ssize_t)len;
}

static ssize_t recv_frame(int fd, uint8_t *buf, size_t cap)
{
    uint8_t hdr[2];
    if (!read_exact(fd, hdr, 2)) return -1;
    size_t len = (size_t)hdr[0] << 8 | hdr[1];
    if (len > cap || !read_exact(fd, buf, len)) return -1;
    return (ssize_t)len;
}

static int udp_socket(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) return -1;
    return fd;
}

int main(int argc, char **argv)
{
    const char *ctl = NULL, *udp_text = NULL, *tcp_text = NULL;
    int count = 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--control") == 0) ctl = argv[i + 1];
        else if (strcmp(argv[i], "--udp") == 0) udp_text = argv[i + 1];
        else if (strcmp(argv[i], "--tcp") == 0) tcp_text = argv[i + 1];
        else if (strcmp(argv[i], "--count") == 0) count = atoi(argv[i + 1]);
    }
    pl_addr udp_addr, tcp_addr;
    if (!ctl || !udp_text || !tcp_text || !pl_addr_parse(&udp_addr, udp_text, 0) ||
        !pl_addr_parse(&tcp_addr, tcp_text, 0) || count < 1 || count > 1000) {
        fprintf(stderr, "usage: pl_relay_probe --control PATH --udp ADDR:PORT --tcp ADDR:PORT [--count N]\n");
        return 2;
    }
    struct sockaddr_storage relay_udp, relay_tcp;
    socklen_t udp_len, tcp_len;
    tcp_addr.transport = PL_ADDR_UDP;
    if (!pl_sockaddr_from_addr(&udp_addr, &relay_udp, &udp_len) || !pl_sockaddr_from_addr(&tcp_addr, &relay_tcp, &tcp_len))
        return 2;

    /* The allocation. */
    int cfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    snprintf(su.sun_path, sizeof su.sun_path, "%s", ctl);
    if (cfd < 0 || connect(cfd, (struct sockaddr *)&su, sizeof su) != 0) return die("control socket");
    char reply[4096];
    if (!control(cfd, "{\"cmd\":\"allocate\",\"count\":1}\n", reply, sizeof reply)) return die("allocate");
    unsigned long channel;
    unsigned long long tok_a, tok_b;
    const char *at = strstr(reply, "\"channel\":");
    if (!at || sscanf(at, "\"channel\":%lu,\"token_a\":\"%llx\",\"token_b\":\"%llx\"", &channel, &tok_a, &tok_b) != 3) {
        fprintf(stderr, "pl_relay_probe: unexpected reply %s\n", reply);
        return 1;
    }
    printf("allocated %lu\n", channel);

    /* Side A on UDP, side B on TCP; both bind. */
    int a = udp_socket();
    int b = socket(relay_tcp.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (a < 0 || b < 0 || connect(b, (struct sockaddr *)&relay_tcp, tcp_len) != 0) return die("sockets");
    int one = 1;
    setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint8_t pkt[PL_RELAY_MAX_PACKET], in[PL_RELAY_MAX_PACKET];
    size_t n = pl_relay_wrap(pkt, sizeof pkt, (uint32_t)channel, tok_a, NULL, 0);
    sendto(a, pkt, n, 0, (struct sockaddr *)&relay_udp, udp_len);
    bool bound_a = readable(a, 2000) && recv(a, in, sizeof in, 0) == (ssize_t)n && memcmp(in, pkt, n) == 0;
    printf("bound udp %s\n", bound_a ? "yes" : "no");
    n = pl_relay_wrap(pkt, sizeof pkt, (uint32_t)channel, tok_b, NULL, 0);
    send_frame(b, pkt, n);
    ssize_t got = recv_frame(b, in, sizeof in);
    bool bound_b = got == (ssize_t)n && memcmp(in, pkt, n) == 0;
    printf("bound tcp %s\n", bound_b ? "yes" : "no");

    /* Numbered datagrams both ways, every 10 ms (the relay's per-side rate
     * limit would rightly cut a faster burst short). */
    int ab = 0, ba = 0;
    for (int i = 0; i < count; i++) {
        usleep(10000);
        char text[32];
        int tl = snprintf(text, sizeof text, "ping %d", i);
        n = pl_relay_wrap(pkt, sizeof pkt, (uint32_t)channel, tok_a, (const uint8_t *)text, (size_t)tl);
        sendto(a, pkt, n, 0, (struct sockaddr *)&relay_udp, udp_len);
        got = recv_frame(b, in, sizeof in);
        uint32_t c;
        uint64_t t;
        if (got == (ssize_t)n && pl_relay_parse(in, (size_t)got, &c, &t) && c == channel && t == tok_b &&
            memcmp(in + PL_RELAY_HEADER_SIZE, text, (size_t)tl) == 0)
            ab++;
        tl = snprintf(text, sizeof text, "pong %d", i);
        n = pl_relay_wrap(pkt, sizeof pkt, (uint32_t)channel, tok_b, (const uint8_t *)text, (size_t)tl);
        send_frame(b, pkt, n);
        if (readable(a, 2000)) {
            got = recv(a, in, sizeof in, 0);
            if (got == (ssize_t)n && pl_relay_parse(in, (size_t)got, &c, &t) && c == channel && t == tok_a &&
                memcmp(in + PL_RELAY_HEADER_SIZE, text, (size_t)tl) == 0)
                ba++;
        }
    }
    printf("udp->tcp %d/%d\n", ab, count);
    printf("tcp->udp %d/%d\n", ba, count);

    /* A stranger: a wrong token, A's token from elsewhere, an unknown channel. */
    int s = udp_socket();
    if (s < 0) return die("stranger socket");
    uint64_t tokens[3] = {tok_a ^ 0x5a5a, tok_a, tok_b};
    uint32_t channels[3] = {(uint32_t)channel, (uint32_t)channel, (uint32_t)channel + 1};
    for (int i = 0; i < 3; i++) {
        n = pl_relay_wrap(pkt, sizeof pkt, channels[i], tokens[i], (const uint8_t *)"let me in", 9);
        sendto(s, pkt, n, 0, (struct sockaddr *)&relay_udp, udp_len);
    }
    int stranger = 0;
    while (readable(s, 300)) {
        if (recv(s, in, sizeof in, 0) >= 0) stranger++;
    }
    /* Nothing may have reached A or B from the stranger either. */
    while (readable(a, 50)) {
        if (recv(a, in, sizeof in, 0) >= 0) stranger++;
    }
    if (readable(b, 50)) stranger++;
    printf("stranger %d\n", stranger);
    if (!control(cfd, "{\"cmd\":\"stats\"}\n", reply, sizeof reply)) return die("stats");
    printf("stats %s\n", reply);
    close(a);
    close(b);
    close(s);
    close(cfd);
    return 0;
}
