/*
 * pl_stun - a STUN server and NAT-discovery client for tests, on the real
 * event loop (src/io/loop.h) and the sans-I/O cores (stun.h, natdisc.h).
 *
 *   pl_stun server --primary IP:PORT [--alternate IP:PORT] [--software TEXT] [--verbose]
 *       Answers STUN Binding requests. With an alternate (another IP and
 *       another port), it listens on all four combinations and honours
 *       CHANGE-REQUEST, as RFC 5780 needs. Prints "listening ADDR" per
 *       socket, then "ready"; with --verbose one line per datagram:
 *       "answer CLIENT LOCAL FROM CODE" (CODE 0 for success) or
 *       "drop CLIENT LOCAL REASON". Runs until killed.
 *
 *   pl_stun client --server IP:PORT [--server2 IP:PORT] [--bind IP:PORT]
 *                  [--rto MS] [--tries N] [--no-hairpin] [--json]
 *       Runs NAT discovery from one socket and prints one "key value" line
 *       each: mapped, other, nat (yes/no), udp-blocked (yes/no), refused,
 *       mapping, filtering (RFC 4787 names), hairpin (yes/no/unknown),
 *       type (open, firewalled, full-cone, restricted, port-restricted,
 *       symmetric, udp-blocked or unknown), rtt-ms, requests. With --json,
 *       one JSON object instead. Exit 0 when discovery finished.
 *
 *   pl_stun binding --server IP:PORT [--bind IP:PORT] [--change ip|port|both] [--timeout S]
 *       One Binding request (retransmitted every 250 ms): prints
 *       "mapped ADDR from SOURCE" (SOURCE: where the answer came from) or
 *       "error CODE from SOURCE", or "timeout". Exit 0 on a success answer.
 *
 * Exit status 2 is a usage error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop.h"
#include "natdisc.h"
#include "parley.h"
#include "sockaddr.h"
#include "stun.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: pl_stun server --primary IP:PORT [--alternate IP:PORT] [--software TEXT] [--verbose]\n"
            "       pl_stun client --server IP:PORT [--server2 IP:PORT] [--bind IP:PORT] [--rto MS] [--tries N]\n"
            "                      [--no-hairpin] [--json]\n"
            "       pl_stun binding --server IP:PORT [--bind IP:PORT] [--change ip|port|both] [--timeout S]\n");
    exit(2);
}

static pl_addr parse_addr_or_die(const char *text)
{
    pl_addr a;
    if (!pl_addr_parse(&a, text, 3478)) {
        fprintf(stderr, "pl_stun: not an address: %s\n", text);
        exit(2);
    }
    return a;
}

static long parse_long(const char *text, long min, long max)
{
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if (!end || *end || v < min || v > max) usage();
    return v;
}

static const char *fmt(const pl_addr *a, char buf[PL_ADDR_TEXT_MAX]) { return pl_addr_format(a, buf, PL_ADDR_TEXT_MAX); }

/* ---- server ----------------------------------------------------------------------- */

typedef struct server {
    pl_stun_server cfg;
    pl_udp *socks[4];
    pl_addr locals[4];
    int n;
    bool verbose;
} server;

static const char *drop_reason(pl_stun_drop_reason why)
{
    switch (why) {
    case PL_STUN_DROP_NOT_STUN: return "not-stun";
    case PL_STUN_DROP_NOT_REQUEST: return "not-a-request";
    case PL_STUN_DROP_FINGERPRINT: return "bad-fingerprint";
    case PL_STUN_DROP_BAD_LOCAL: return "bad-local";
    case PL_STUN_DROP_BUFFER: return "buffer";
    default: return "none";
    }
}

static void server_recv(void *ctx, pl_udp *sock, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    (void)now;
    server *s = ctx;
    int at = -1;
    for (int i = 0; i < s->n; i++)
        if (s->socks[i] == sock) at = i;
    if (at < 0) return;
    uint8_t out[PL_STUN_MAX_RESPONSE];
    pl_stun_reply r;
    char c[PL_ADDR_TEXT_MAX], l[PL_ADDR_TEXT_MAX], f[PL_ADDR_TEXT_MAX];
    if (pl_stun_respond(&s->cfg, &s->locals[at], from, data, len, out, sizeof out, &r) != PL_STUN_SEND) {
        if (s->verbose) printf("drop %s %s %s\n", fmt(from, c), fmt(&s->locals[at], l), drop_reason(r.why));
        return;
    }
    for (int i = 0; i < s->n; i++) {
        if (!pl_addr_equal(&s->locals[i], &r.from)) continue;
        pl_udp_send(s->socks[i], from, out, r.len);
        if (s->verbose)
            printf("answer %s %s %s %u\n", fmt(from, c), fmt(&s->locals[at], l), fmt(&r.from, f), r.error_code);
    }
}

static int cmd_server(int argc, char **argv)
{
    server s;
    memset(&s, 0, sizeof s);
    bool have_primary = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--primary") == 0 && i + 1 < argc) {
            s.cfg.primary = parse_addr_or_die(argv[++i]);
            have_primary = true;
        } else if (strcmp(argv[i], "--alternate") == 0 && i + 1 < argc) {
            s.cfg.alternate = parse_addr_or_die(argv[++i]);
        } else if (strcmp(argv[i], "--software") == 0 && i + 1 < argc) {
            s.cfg.software = argv[++i];
        } else if (strcmp(argv[i], "--verbose") == 0) {
            s.verbose = true;
        } else {
            usage();
        }
    }
    if (!have_primary) usage();
    const pl_addr *p = &s.cfg.primary, *a = &s.cfg.alternate;
    s.locals[s.n++] = *p;
    if (a->family != PL_AF_NONE) {
        if (a->family != p->family || pl_addr_same_host(a, p) || a->port == p->port) {
            fprintf(stderr, "pl_stun: the alternate must differ from the primary in both address and port\n");
            return 2;
        }
        pl_addr pa = *p, ap = *a;
        pa.port = a->port;
        ap.port = p->port;
        s.locals[s.n++] = pa;
        s.locals[s.n++] = ap;
        s.locals[s.n++] = *a;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    pl_loop *loop = pl_loop_new();
    if (!loop) return 1;
    for (int i = 0; i < s.n; i++) {
        pl_loop_err err;
        s.socks[i] = pl_udp_open(loop, &s.locals[i], server_recv, &s, &err);
        char b[PL_ADDR_TEXT_MAX];
        if (!s.socks[i]) {
            fprintf(stderr, "pl_stun: cannot bind %s: %s\n", fmt(&s.locals[i], b), pl_loop_strerror(err));
            pl_loop_free(loop);
            return 1;
        }
        printf("listening %s\n", fmt(&s.locals[i], b));
    }
    printf("ready\n");
    pl_loop_run(loop);
    pl_loop_free(loop);
    return 0;
}

/* ---- the client side: one socket, natdisc or a single request ----------------------- */

typedef struct client {
    pl_loop *loop;
    pl_udp *sock;
    pl_timer timer;
    pl_natdisc d;
    bool done;
    /* binding mode */
    uint8_t txid[PL_STUN_TXID_SIZE];
    uint8_t req[32];
    size_t req_len;
    pl_addr server;
    int status;
} client;

static void disc_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    client *c = ctx;
    pl_udp_send(c->sock, to, data, len);
}

static void disc_done(void *ctx, const pl_natdisc_result *r)
{
    (void)r;
    client *c = ctx;
    c->done = true;
    pl_loop_stop(c->loop);
}

static void disc_arm(client *c)
{
    pl_timer_set(c->loop, &c->timer, pl_natdisc_next_timeout(&c->d));
}

static void disc_timer(pl_loop *loop, void *ctx)
{
    client *c = ctx;
    pl_natdisc_tick(&c->d, pl_loop_now(loop));
    disc_arm(c);
}

static void disc_recv(void *ctx, pl_udp *sock, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    (void)sock;
    client *c = ctx;
    pl_natdisc_receive(&c->d, from, data, len, now);
    disc_arm(c);
}

/* The address the kernel would send from towards `to`, for a socket bound
 * to a wildcard address: a connected UDP socket sends nothing. */
static bool source_towards(const pl_addr *to, pl_addr *out)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (!pl_sockaddr_from_addr(to, &ss, &sl)) return false;
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    bool ok = connect(fd, (struct sockaddr *)&ss, sl) == 0;
    socklen_t ol = sizeof ss;
    ok = ok && getsockname(fd, (struct sockaddr *)&ss, &ol) == 0;
    close(fd);
    if (ok) pl_sockaddr_to_addr((struct sockaddr *)&ss, out);
    return ok;
}

static bool is_unspecified(const pl_addr *a)
{
    static const uint8_t zero[16];
    return memcmp(a->ip, zero, a->family == PL_AF_INET4 ? 4 : 16) == 0;
}

static const char *type_name(const pl_natdisc_result *r)
{
    if (r->udp_blocked) return "udp-blocked";
    if (!r->behind_nat)
        return r->filtering == PL_NAT_ENDPOINT_INDEPENDENT ? "open"
               : r->filtering == PL_NAT_UNKNOWN            ? "unknown"
                                                           : "firewalled";
    if (r->mapping == PL_NAT_ADDRESS_DEPENDENT || r->mapping == PL_NAT_ADDRESS_AND_PORT_DEPENDENT) return "symmetric";
    if (r->mapping != PL_NAT_ENDPOINT_INDEPENDENT) return "unknown";
    switch (r->filtering) {
    case PL_NAT_ENDPOINT_INDEPENDENT: return "full-cone";
    case PL_NAT_ADDRESS_DEPENDENT: return "restricted";
    case PL_NAT_ADDRESS_AND_PORT_DEPENDENT: return "port-restricted";
    default: return "unknown";
    }
}

static const char *yes_no(bool b) { return b ? "yes" : "no"; }

static const char *hairpin_name(uint8_t h)
{
    return h == PL_NATDISC_HAIRPIN_YES ? "yes" : h == PL_NATDISC_HAIRPIN_NO ? "no" : "unknown";
}

static void print_result(const pl_natdisc_result *r, bool json)
{
    char m[PL_ADDR_TEXT_MAX], o[PL_ADDR_TEXT_MAX];
    fmt(&r->mapped, m);
    fmt(&r->other, o);
    double rtt = (double)r->rtt / 1000.0;
    if (json) {
        printf("{\"mapped\":\"%s\",\"other\":\"%s\",\"nat\":%s,\"udp_blocked\":%s,\"refused\":%s,\"mapping\":\"%s\","
               "\"filtering\":\"%s\",\"hairpin\":\"%s\",\"type\":\"%s\",\"rtt_ms\":%.3f,\"requests\":%u}\n",
               m, o, r->behind_nat ? "true" : "false", r->udp_blocked ? "true" : "false",
               r->refused ? "true" : "false", pl_nat_behaviour_name(r->mapping),
               pl_nat_behaviour_name(r->filtering), hairpin_name(r->hairpin), type_name(r), rtt, r->requests_sent);
        return;
    }
    printf("mapped %s\nother %s\nnat %s\nudp-blocked %s\nrefused %s\nmapping %s\nfiltering %s\nhairpin %s\n"
           "type %s\nrtt-ms %.3f\nrequests %u\n",
           m, o, yes_no(r->behind_nat), yes_no(r->udp_blocked), yes_no(r->refused), pl_nat_behaviour_name(r->mapping),
           pl_nat_behaviour_name(r->filtering), hairpin_name(r->hairpin), type_name(r), rtt, r->requests_sent);
}

static pl_udp *open_client_socket(client *c, const pl_addr *bind_addr, pl_udp_recv_cb cb)
{
    pl_loop_err err;
    pl_udp *s = pl_udp_open(c->loop, bind_addr, cb, c, &err);
    if (!s) {
        char b[PL_ADDR_TEXT_MAX];
        fprintf(stderr, "pl_stun: cannot bind %s: %s\n", fmt(bind_addr, b), pl_loop_strerror(err));
    }
    return s;
}

static int cmd_client(int argc, char **argv)
{
    pl_natdisc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    pl_addr bind_addr;
    bool have_server = false, have_bind = false, json = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--server") == 0 && i + 1 < argc) {
            cfg.server = parse_addr_or_die(argv[++i]);
            have_server = true;
        } else if (strcmp(argv[i], "--server2") == 0 && i + 1 < argc) {
            cfg.server2 = parse_addr_or_die(argv[++i]);
        } else if (strcmp(argv[i], "--bind") == 0 && i + 1 < argc) {
            bind_addr = parse_addr_or_die(argv[++i]);
            have_bind = true;
        } else if (strcmp(argv[i], "--rto") == 0 && i + 1 < argc) {
            cfg.rto = (pl_time)parse_long(argv[++i], 1, 10000) * PL_MSEC;
        } else if (strcmp(argv[i], "--tries") == 0 && i + 1 < argc) {
            cfg.max_tries = (uint32_t)parse_long(argv[++i], 1, 10);
        } else if (strcmp(argv[i], "--no-hairpin") == 0) {
            cfg.skip_hairpin = true;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else {
            usage();
        }
    }
    if (!have_server) usage();
    if (!have_bind) {
        memset(&bind_addr, 0, sizeof bind_addr);
        bind_addr.family = cfg.server.family;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    client c;
    memset(&c, 0, sizeof c);
    c.loop = pl_loop_new();
    if (!c.loop) return 1;
    c.sock = open_client_socket(&c, &bind_addr, disc_recv);
    if (!c.sock) {
        pl_loop_free(c.loop);
        return 1;
    }
    pl_udp_local_addr(c.sock, &cfg.local);
    if (is_unspecified(&cfg.local)) {
        pl_addr src;
        if (source_towards(&cfg.server, &src)) {
            src.port = cfg.local.port;
            cfg.local = src;
        }
    }
    cfg.rng = pl_rng_system();
    pl_natdisc_io io = {&c, disc_send, disc_done};
    pl_natdisc_err err = pl_natdisc_init(&c.d, &cfg, &io);
    if (err != PL_NATDISC_OK) {
        fprintf(stderr, "pl_stun: %s\n", pl_natdisc_strerror(err));
        pl_loop_free(c.loop);
        return 2;
    }
    pl_timer_init(&c.timer, disc_timer, &c);
    pl_natdisc_start(&c.d, pl_loop_now(c.loop));
    disc_arm(&c);
    pl_udp_flush(c.sock);
    pl_loop_run(c.loop);
    print_result(pl_natdisc_get_result(&c.d), json);
    pl_timer_cancel(c.loop, &c.timer);
    pl_loop_free(c.loop);
    return c.done ? 0 : 1;
}

static void binding_send(client *c)
{
    pl_udp_send(c->sock, &c->server, c->req, c->req_len);
}

static void binding_timer(pl_loop *loop, void *ctx)
{
    client *c = ctx;
    binding_send(c);
    pl_timer_set(loop, &c->timer, pl_loop_now(loop) + 250 * PL_MSEC);
}

static void binding_recv(void *ctx, pl_udp *sock, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    (void)sock;
    (void)now;
    client *c = ctx;
    pl_stun_msg m;
    if (pl_stun_decode(&m, data, len) != PL_STUN_OK || memcmp(m.txid, c->txid, sizeof c->txid) != 0) return;
    char a[PL_ADDR_TEXT_MAX], f[PL_ADDR_TEXT_MAX];
    if (m.cls == PL_STUN_SUCCESS) {
        const pl_addr *mapped = (m.attrs & PL_STUN_HAS_XOR_MAPPED) ? &m.xor_mapped : &m.mapped;
        printf("mapped %s from %s\n", fmt(mapped, a), fmt(from, f));
        c->status = 0;
    } else if (m.cls == PL_STUN_ERROR) {
        printf("error %u from %s\n", m.error_code, fmt(from, f));
        c->status = 1;
    } else {
        return;
    }
    c->done = true;
    pl_loop_stop(c->loop);
}

static void binding_deadline(pl_loop *loop, void *ctx)
{
    (void)ctx;
    pl_loop_stop(loop);
}

static int cmd_binding(int argc, char **argv)
{
    client c;
    memset(&c, 0, sizeof c);
    pl_addr bind_addr;
    bool have_server = false, have_bind = false;
    uint32_t change = 0;
    long timeout_s = 2;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--server") == 0 && i + 1 < argc) {
            c.server = parse_addr_or_die(argv[++i]);
            have_server = true;
        } else if (strcmp(argv[i], "--bind") == 0 && i + 1 < argc) {
            bind_addr = parse_addr_or_die(argv[++i]);
            have_bind = true;
        } else if (strcmp(argv[i], "--change") == 0 && i + 1 < argc) {
            const char *w = argv[++i];
            if (strcmp(w, "ip") == 0) change = PL_STUN_CHANGE_IP;
            else if (strcmp(w, "port") == 0) change = PL_STUN_CHANGE_PORT;
            else if (strcmp(w, "both") == 0) change = PL_STUN_CHANGE_IP | PL_STUN_CHANGE_PORT;
            else usage();
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            timeout_s = parse_long(argv[++i], 1, 60);
        } else {
            usage();
        }
    }
    if (!have_server) usage();
    if (!have_bind) {
        memset(&bind_addr, 0, sizeof bind_addr);
        bind_addr.family = c.server.family;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    c.loop = pl_loop_new();
    if (!c.loop) return 1;
    c.sock = open_client_socket(&c, &bind_addr, binding_recv);
    if (!c.sock) {
        pl_loop_free(c.loop);
        return 1;
    }
    pl_rng_system()->fill(NULL, c.txid, sizeof c.txid);
    c.req_len = pl_stun_binding_request(c.req, sizeof c.req, c.txid, change);
    c.status = 1;
    pl_timer deadline;
    pl_timer_init(&c.timer, binding_timer, &c);
    pl_timer_init(&deadline, binding_deadline, &c);
    pl_timer_set(c.loop, &deadline, pl_loop_now(c.loop) + (pl_time)timeout_s * PL_SEC);
    binding_timer(c.loop, &c);
    pl_udp_flush(c.sock);
    pl_loop_run(c.loop);
    if (!c.done) printf("timeout\n");
    pl_timer_cancel(c.loop, &c.timer);
    pl_timer_cancel(c.loop, &deadline);
    pl_loop_free(c.loop);
    return c.status;
}

int main(int argc, char **argv)
{
    if (!pl_init()) {
        fprintf(stderr, "pl_stun: cannot initialise the crypto library\n");
        return 1;
    }
    if (argc < 2) usage();
    if (strcmp(argv[1], "server") == 0) return cmd_server(argc - 2, argv + 2);
    if (strcmp(argv[1], "client") == 0) return cmd_client(argc - 2, argv + 2);
    if (strcmp(argv[1], "binding") == 0) return cmd_binding(argc - 2, argv + 2);
    usage();
    return 2;
}
