/*
 * parleyd - the Parley daemon: one user's node or supernode, for real.
 *
 *   parleyd [--home DIR] [--role node|supernode] [--listen ADDR:PORT]
 *           [--bootstrap HEX@ADDR:PORT]... [--bootstrap-file FILE]
 *           [--control PATH] [--max-clients N] [--keepalive S]
 *           [--no-udp] [--no-tcp] [--passphrase-file F] [--quiet]
 *           [--no-portmap] [--proxy URL] [--proxy-only]
 *
 * It loads the identity, certificate and pinned authority that `parley
 * keygen` and `parley register` left in the home directory, opens a UDP
 * socket (and, for a supernode, a TCP listener on the same address), and
 * runs the protocol stack (src/core/stack.h) on the event loop. The `parley`
 * client drives it over a Unix control socket, one JSON object per line
 * each way (docs/overlay.md, "Control socket").
 *
 * Logs go to stderr, one line per event, with the time. The first line on
 * stdout is "listening ADDR ROLE" once the sockets are open, for scripts.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sodium.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

static int signal_fd = -1;
static void on_signal(int sig)
{
    (void)sig;
    if (signal_fd >= 0) {
        ssize_t n = write(signal_fd, "s", 1);
        (void)n;
    }
}

/* ---- logging -------------------------------------------------------------------- */

void pd_log(parleyd *d, const char *fmt, ...)
{
    if (d->quiet) return;
    char when[32];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ld %s: ", when, ts.tv_nsec / 1000000, PROG);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int pd_die(const char *fmt, ...)
{
    fprintf(stderr, "%s: ", PROG);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

static void hex8(const uint8_t *pk, char out[17]) { pl_hex_encode(pk, 8, out); }

/* ---- peers: "HEX@ADDR:PORT" ------------------------------------------------------------ */

static bool parse_peer(const char *text, pl_ovl_peer *out)
{
    const char *at = strchr(text, '@');
    if (!at || at - text != 64) return false;
    char hex[65];
    memcpy(hex, text, 64);
    hex[64] = 0;
    return pl_hex_decode(hex, out->pk, 32) && pl_addr_parse(&out->addr, at + 1, 7400);
}

static int load_bootstrap(parleyd *d)
{
    for (int i = 0; i < d->opt.n_bootstrap; i++) {
        if (!parse_peer(d->opt.bootstrap[i], &d->bootstrap[d->n_bootstrap]))
            return pd_die("--bootstrap wants HEX@ADDR:PORT (the supernode's fingerprint from 'parley show'), not '%s'",
                       d->opt.bootstrap[i]);
        d->n_bootstrap++;
    }
    if (d->opt.bootstrap_file) {
        FILE *f = fopen(d->opt.bootstrap_file, "r");
        if (!f) return pd_die("cannot read %s: %s", d->opt.bootstrap_file, strerror(errno));
        char line[512];
        int no = 0;
        while (fgets(line, sizeof line, f)) {
            no++;
            line[strcspn(line, "\r\n#")] = 0;
            char *p = line;
            while (*p == ' ' || *p == '\t') p++;
            if (!*p) continue;
            char *sp = strpbrk(p, " \t");
            if (sp) {
                *sp = '@';
                char *q = sp + 1;
                while (*q == ' ' || *q == '\t') q++;
                memmove(sp + 1, q, strlen(q) + 1);
            }
            if (d->n_bootstrap == MAX_BOOTSTRAP) break;
            if (!parse_peer(p, &d->bootstrap[d->n_bootstrap])) {
                fclose(f);
                return pd_die("%s:%d: expected 'HEX ADDR:PORT'", d->opt.bootstrap_file, no);
            }
            d->n_bootstrap++;
        }
        fclose(f);
    }
    return 0;
}

/* ---- the host cache file: "HEX ADDR last_success last_failure failures" --------------- */

static void load_hosts(parleyd *d)
{
    pl_node *node = pl_stack_node(d->stack);
    if (!node) return;
    char path[PL_HOME_PATH_MAX + 16];
    pl_home_path(d->home, "hosts", path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char hex[80], addr[128];
        unsigned long long ok_at, fail_at;
        unsigned failures;
        if (sscanf(line, "%79s %127s %llu %llu %u", hex, addr, &ok_at, &fail_at, &failures) != 5) continue;
        pl_node_host h;
        memset(&h, 0, sizeof h);
        if (!pl_hex_decode(hex, h.peer.pk, 32) || !pl_addr_parse(&h.peer.addr, addr, 7400)) continue;
        h.last_success = ok_at;
        h.last_failure = fail_at;
        h.failures = failures;
        pl_node_add_host(node, &h);
        n++;
    }
    fclose(f);
    if (n) pd_log(d, "host cache: %d supernodes from %s", n, path);
}

static void save_hosts(parleyd *d)
{
    pl_node *node = pl_stack_node(d->stack);
    if (!node) return;
    static pl_node_host hosts[PL_NODE_HOST_CACHE_MAX];
    size_t n = pl_node_hosts(node, hosts, PL_NODE_HOST_CACHE_MAX);
    static char buf[PL_NODE_HOST_CACHE_MAX * 200];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        char hex[65], addr[PL_ADDR_TEXT_MAX];
        pl_hex_encode(hosts[i].peer.pk, 32, hex);
        pl_addr plain = hosts[i].peer.addr;
        plain.transport = PL_ADDR_UDP;
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s %s %llu %llu %u\n", hex,
                                pl_addr_format(&plain, addr, sizeof addr), (unsigned long long)hosts[i].last_success,
                                (unsigned long long)hosts[i].last_failure, hosts[i].failures);
    }
    char path[PL_HOME_PATH_MAX + 16];
    pl_home_path(d->home, "hosts", path, sizeof path);
    if (!pl_file_write_atomic(path, buf, len, 0600)) pd_log(d, "cannot save the host cache to %s", path);
    d->hosts_dirty = false;
    d->hosts_saved_at = pl_loop_now(d->loop);
}

/* ---- driving the stack ------------------------------------------------------------------- */

void pd_rearm(parleyd *d)
{
    pl_time t = pl_stack_next_timeout(d->stack);
    if (d->hosts_dirty) {
        pl_time save_at = d->hosts_saved_at + HOSTS_SAVE_INTERVAL;
        if (save_at < t) t = save_at;
    }
    if (t == PL_TIME_NEVER) pl_timer_cancel(d->loop, &d->timer);
    else pl_timer_set(d->loop, &d->timer, pd_phone_align_timer(d, t));
}

static void on_timer(pl_loop *loop, void *ctx)
{
    parleyd *d = ctx;
    pl_time now = pl_loop_now(loop);
    pl_stack_tick(d->stack, now);
    if (d->hosts_dirty && now >= d->hosts_saved_at + HOSTS_SAVE_INTERVAL) save_hosts(d);
    pd_rearm(d);
}

static void addr_key(const pl_addr *a, uint8_t key[32])
{
    memset(key, 0, 32);
    key[0] = a->family;
    key[1] = a->transport;
    key[2] = (uint8_t)(a->port >> 8);
    key[3] = (uint8_t)a->port;
    memcpy(key + 4, a->ip, a->family == PL_AF_INET4 ? 4 : 16);
}

static tcp_conn *conn_find(parleyd *d, const pl_addr *a)
{
    uint8_t key[32];
    uint32_t i;
    addr_key(a, key);
    return pl_keymap_get(&d->conn_by_addr, key, &i) ? &d->conns[i] : NULL;
}

static tcp_conn *conn_add(parleyd *d, pl_stream *s, const pl_addr *a, bool outgoing)
{
    size_t i;
    for (i = 0; i < d->n_conns && d->conns[i].used; i++) {
    }
    if (i == d->n_conns) {
        tcp_conn *grown = realloc(d->conns, (d->n_conns + 16) * sizeof *grown);
        if (!grown) return NULL;
        memset(grown + d->n_conns, 0, 16 * sizeof *grown);
        d->conns = grown;
        d->n_conns += 16;
    }
    uint8_t key[32];
    addr_key(a, key);
    if (!pl_keymap_put(&d->conn_by_addr, key, (uint32_t)i)) return NULL;
    d->conns[i] = (tcp_conn){s, *a, outgoing, true};
    return &d->conns[i];
}

static void conn_forget(parleyd *d, tcp_conn *c)
{
    uint8_t key[32];
    addr_key(&c->addr, key);
    pl_keymap_remove(&d->conn_by_addr, key);
    memset(c, 0, sizeof *c);
}

static void on_frame(void *ctx, pl_stream *s, const uint8_t *frame, size_t len, pl_time now);
static void on_conn_close(void *ctx, pl_stream *s, int err);

static void send_datagram(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    parleyd *d = ctx;
    if (to->transport != PL_ADDR_TCP) {
        if (d->udp) pl_udp_send(d->udp, to, data, len);
        return;
    }
    tcp_conn *c = conn_find(d, to);
    if (!c) {
        /* Only a node opens streams (to a supernode it cannot reach over
         * UDP); a supernode answers on the streams its clients opened. */
        if (!pl_stack_node(d->stack)) return;
        pl_addr plain = *to;
        plain.transport = PL_ADDR_UDP;
        pl_loop_err err;
        /* From the address we listen on, unless that is a wildcard. */
        static const uint8_t any[16];
        bool wildcard = memcmp(d->local.ip, any, d->local.family == PL_AF_INET4 ? 4 : 16) == 0;
        pl_stream *s = pd_reach_connect(d, &plain, wildcard || d->local.family != plain.family ? NULL : &d->local, &err);
        if (!s) {
            pl_stack_unreachable(d->stack, to, pl_loop_now(d->loop));
            return;
        }
        c = conn_add(d, s, to, true);
        if (!c) {
            pl_stream_close(s, true);
            return;
        }
        pl_stream_set_callbacks(s, on_frame, on_conn_close, d);
        pl_stream_set_max_frame(s, PL_SEC_MAX_DATAGRAM);
    }
    if (pl_stream_send(c->stream, data, len) != PL_LOOP_OK) {
        pl_stream_close(c->stream, true);
        conn_forget(d, c);
    }
}

static void on_frame(void *ctx, pl_stream *s, const uint8_t *frame, size_t len, pl_time now)
{
    parleyd *d = ctx;
    pl_addr from;
    if (!pl_stream_peer_addr(s, &from)) return;
    from.transport = PL_ADDR_TCP;
    pl_stack_receive(d->stack, &from, frame, len, now);
    pd_rearm(d);
}

static void on_conn_close(void *ctx, pl_stream *s, int err)
{
    parleyd *d = ctx;
    for (size_t i = 0; i < d->n_conns; i++) {
        tcp_conn *c = &d->conns[i];
        if (!c->used || c->stream != s) continue;
        pl_addr a = c->addr;
        bool outgoing = c->outgoing;
        conn_forget(d, c);
        if (outgoing && err) {
            pd_reach_stream_failed(d, s, &a, err);
            pl_stack_unreachable(d->stack, &a, pl_loop_now(d->loop));
            pd_rearm(d);
        }
        return;
    }
}

static void on_accept(void *ctx, pl_listener *l, pl_stream *accepted, const pl_addr *peer)
{
    parleyd *d = ctx;
    (void)l;
    pl_addr a = *peer;
    a.transport = PL_ADDR_TCP;
    tcp_conn *old = conn_find(d, &a);
    if (old) {
        pl_stream_close(old->stream, true);
        conn_forget(d, old);
    }
    if (!conn_add(d, accepted, &a, false)) {
        pl_stream_close(accepted, true);
        return;
    }
    pl_stream_set_callbacks(accepted, on_frame, on_conn_close, d);
    pl_stream_set_max_frame(accepted, PL_SEC_MAX_DATAGRAM);
}

/* ---- STUN and NAT discovery ------------------------------------------------------------ */

/* The socket bound to a local address of the supernode's four. */
static pl_udp *sock_for(parleyd *d, const pl_addr *local)
{
    if (pl_addr_equal(local, &d->local)) return d->udp;
    for (int i = 0; i < 3; i++) {
        pl_addr a;
        if (d->stun_socks[i] && pl_udp_local_addr(d->stun_socks[i], &a) && pl_addr_equal(&a, local))
            return d->stun_socks[i];
    }
    return NULL;
}

static bool answer_stun(parleyd *d, pl_udp *sock, const pl_addr *from, const uint8_t *data, size_t len)
{
    if (pl_stun_classify(data, len) == PL_STUN_KIND_OTHER) return false;
    if (!pl_stack_super(d->stack)) return true; /* nodes serve no STUN */
    pl_addr local;
    if (!pl_udp_local_addr(sock, &local)) return true;
    uint8_t out[512];
    pl_stun_reply reply;
    if (pl_stun_respond(&d->stun, &local, from, data, len, out, sizeof out, &reply) == PL_STUN_SEND) {
        pl_udp *via = sock_for(d, &reply.from);
        if (via) pl_udp_send(via, from, out, reply.len);
    }
    return true;
}

static void on_stun_sock(void *ctx, pl_udp *sock, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    (void)now;
    answer_stun(ctx, sock, from, data, len);
}

static void natdisc_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    parleyd *d = ctx;
    if (d->udp) pl_udp_send(d->udp, to, data, len);
}

static void natdisc_done(void *ctx, const pl_natdisc_result *r)
{
    parleyd *d = ctx;
    d->natdisc_running = false;
    d->natdisc_done = true;
    d->nat = *r;
    char addr[PL_ADDR_TEXT_MAX];
    if (r->udp_blocked) {
        pd_log(d, "NAT discovery: no STUN answer over UDP (UDP blocked, or the supernode serves no STUN)");
    } else {
        pd_log(d, "NAT discovery: %s; mapping %s, filtering %s, seen as %s", r->behind_nat ? "behind a NAT" : "no NAT",
               pl_nat_behaviour_name(r->mapping), pl_nat_behaviour_name(r->filtering),
               pl_addr_format(&r->mapped, addr, sizeof addr));
    }
    pl_node *node = pl_stack_node(d->stack);
    if (node) pl_node_set_nat(node, r->behind_nat ? r->mapping : PL_NAT_ENDPOINT_INDEPENDENT,
                              r->behind_nat ? r->filtering : PL_NAT_ENDPOINT_INDEPENDENT, r->nat_flags,
                              pl_loop_now(d->loop));
    pd_rearm(d);
}

static void natdisc_timer(pl_loop *loop, void *ctx)
{
    parleyd *d = ctx;
    pl_natdisc_tick(&d->natdisc, pl_loop_now(loop));
    pl_time t = pl_natdisc_next_timeout(&d->natdisc);
    if (t != PL_TIME_NEVER && d->natdisc_running) pl_timer_set(loop, &d->natdisc_timer, t);
}

/* Runs discovery against the supernode we attached to (and the standby, for
 * the mapping test when the supernode has one address). */
static void start_natdisc(parleyd *d)
{
    if (d->natdisc_running || d->opt.no_udp) return;
    pl_node_status st = pl_node_get_status(pl_stack_node(d->stack));
    if (st.state != PL_NODE_ATTACHED || st.tcp) return;
    pl_natdisc_config cfg = {.server = st.supernode.addr, .local = d->local, .rng = pl_rng_system()};
    cfg.server.transport = PL_ADDR_UDP;
    if (st.n_standby) cfg.server2 = st.standby[0].addr;
    pl_natdisc_io io = {d, natdisc_send, natdisc_done};
    if (pl_natdisc_init(&d->natdisc, &cfg, &io) != PL_NATDISC_OK) return;
    d->natdisc_running = true;
    pl_natdisc_start(&d->natdisc, pl_loop_now(d->loop));
    if (d->udp) pl_udp_flush(d->udp);
    pl_timer_set(d->loop, &d->natdisc_timer, pl_natdisc_next_timeout(&d->natdisc));
}

static void on_udp(void *ctx, pl_udp *sock, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    parleyd *d = ctx;
    if (d->natdisc_running && pl_natdisc_receive(&d->natdisc, from, data, len, now)) return;
    if (answer_stun(d, sock, from, data, len)) return;
    pl_stack_receive(d->stack, from, data, len, now);
    pd_rearm(d);
}

const char *pd_peer_name(parleyd *d, const uint8_t pk[32])
{
    pl_link *link = pl_stack_link(d->stack);
    pl_sec_peer *p = link ? pl_sec_find(pl_link_sec(link), pk) : NULL;
    const pl_cert *c = p ? pl_sec_peer_cert(p) : NULL;
    return c ? c->name : "?";
}

/* A promoted node serves over TCP too, on the address it listens on. */
static void open_supernode_tcp(parleyd *d)
{
    if (d->tcp || d->opt.no_tcp) return;
    pl_loop_err le;
    d->tcp = pl_stream_listen(d->loop, &d->local, on_accept, d, &le);
    if (!d->tcp) pd_log(d, "cannot listen on TCP as a supernode: %s (UDP only)", pl_loop_strerror(le));
}

/* A message between users that no core takes: chat goes to messages.c,
 * conference control to conference.c (stack.h says which types). */
static void on_user_message(void *ctx, const uint8_t pk[32], const pl_cert *cert, const uint8_t *msg, size_t len,
                            pl_time now)
{
    if (len && msg[0] == PL_MBOX_CHAT) pd_messages_user_message(ctx, pk, cert, msg, len, now);
    else pd_conf_message(ctx, pk, cert, msg, len, now);
}

static void on_event(void *ctx, const pl_stack_event *ev)
{
    parleyd *d = ctx;
    char hex[17], addr[PL_ADDR_TEXT_MAX];
    if (ev->type == PL_STACK_EV_NODE) {
        const pl_node_event *e = ev->node;
        if (e->supernode) {
            hex8(e->supernode->pk, hex);
            pl_addr_format(&e->supernode->addr, addr, sizeof addr);
        }
        switch (e->type) {
        case PL_NODE_EV_ATTACHED: {
            pl_node_status st = pl_node_get_status(pl_stack_node(d->stack));
            char seen[PL_ADDR_TEXT_MAX];
            pd_log(d, "attached to supernode %s (%s) at %s over %s; seen as %s", pd_peer_name(d, e->supernode->pk), hex,
                  addr, st.tcp ? "TCP" : "UDP", pl_addr_format(e->observed, seen, sizeof seen));
            if (!d->natdisc_done) start_natdisc(d);
            break;
        }
        case PL_NODE_EV_LOST: pd_log(d, "lost supernode %s at %s; re-attaching", hex, addr); break;
        case PL_NODE_EV_REFUSED: pd_log(d, "supernode %s at %s refused us (reason %u)", hex, addr, e->refusal); break;
        case PL_NODE_EV_ADDRESS: pd_log(d, "our address as seen: %s", pl_addr_format(e->observed, addr, sizeof addr)); break;
        case PL_NODE_EV_HOSTS: d->hosts_dirty = true; break;
        case PL_NODE_EV_DIRECTORY: pd_on_directory(d, e->dir); break;
        case PL_NODE_EV_MAIL: pd_on_mail(d, e->mail); break;
        case PL_NODE_EV_PROMOTE: pd_log(d, "our supernode asks us to become a supernode too"); break;
        }
    } else if (ev->type == PL_STACK_EV_PHONE) {
        pd_on_phone(d, ev->phone);
    } else if (ev->type == PL_STACK_EV_SUPER) {
        const pl_super_event *e = ev->super;
        hex8(e->client_pk, hex);
        pl_addr_format(e->addr, addr, sizeof addr);
        const char *what = e->type == PL_SUPER_EV_CLIENT_ATTACHED ? "attached"
                           : e->type == PL_SUPER_EV_CLIENT_LOST   ? "lost"
                                                                  : "left";
        pd_log(d, "client %s (%s) at %s %s", e->name, hex, addr, what);
    } else if (ev->type == PL_STACK_EV_LINK) {
        pd_messages_on_link(d, ev->link);
    } else if (ev->type == PL_STACK_EV_PROMOTED) {
        pd_log(d, "promoted: serving as a supernode too, on %s", pl_addr_format(&d->local, addr, sizeof addr));
        open_supernode_tcp(d);
    } else if (ev->type == PL_STACK_EV_DEMOTED) {
        pd_log(d, "demoted: nobody to serve for %d minutes; a node only again", (int)(PL_STACK_DEMOTE_IDLE / PL_SEC / 60));
    }
}

/* ---- set-up ------------------------------------------------------------------------------------ */

static int load_credentials(parleyd *d)
{
    char path[PL_HOME_PATH_MAX + 32], pass[1024];
    bool bad;
    const char *p = pl_passphrase_read(d->opt.passphrase_file, pass, sizeof pass, &bad);
    if (bad) return pd_die("cannot read the passphrase file %s", d->opt.passphrase_file);
    pl_home_path(d->home, "identity.key", path, sizeof path);
    pl_identity_err ie = pl_identity_load(&d->id, path, p);
    sodium_memzero(pass, sizeof pass);
    if (ie == PL_IDENTITY_ERR_IO && access(path, F_OK) != 0)
        return pd_die("no identity at %s (run 'parley keygen' and 'parley register' first)", path);
    if (ie == PL_IDENTITY_ERR_NEED_PASSPHRASE)
        return pd_die("the identity key is sealed: give --passphrase-file or PARLEY_PASSPHRASE");
    if (ie) return pd_die("%s: %s", path, pl_identity_strerror(ie));
    pl_home_path(d->home, "identity.cert", path, sizeof path);
    long n = pl_file_read(path, d->cert_bytes, sizeof d->cert_bytes);
    if (n < 0) return pd_die("no certificate at %s (run 'parley register NAME' first)", path);
    d->cert_len = (size_t)n;
    if (pl_cert_decode(&d->cert, d->cert_bytes, d->cert_len) != PL_CERT_OK)
        return pd_die("%s is not a valid certificate", path);
    if (memcmp(d->cert.sign_pk, d->id.sign_pk, 32) != 0) return pd_die("%s certifies another key", path);
    pl_home_pin pin;
    pl_home_read_pin(d->home, &pin);
    if (!pin.have_key) return pd_die("no authority pinned in %s (run 'parley register' first)", d->home);
    memcpy(d->ca_pk, pin.key, 32);
    pl_cert_err ce = pl_cert_verify(&d->cert, d->ca_pk, (uint64_t)time(NULL), NULL);
    if (ce) return pd_die("our certificate does not verify: %s (run 'parley renew')", pl_cert_strerror(ce));
    /* The last revocation list fetched, if any: refused users stay out. */
    size_t cap = PL_CRL_SIZE(1u << 16);
    d->crl_bytes = malloc(cap);
    pl_home_path(d->home, "crl", path, sizeof path);
    n = d->crl_bytes ? pl_file_read(path, d->crl_bytes, cap) : -1;
    if (n > 0 && pl_crl_decode(&d->crl, d->crl_bytes, (size_t)n) == PL_CERT_OK &&
        pl_crl_verify(&d->crl, d->ca_pk) == PL_CERT_OK)
        d->have_crl = true;
    return 0;
}

static void on_stop_signal(pl_loop *loop, int fd, unsigned events, void *ctx)
{
    (void)events;
    (void)ctx;
    uint8_t buf[64];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    pl_loop_stop(loop);
}

static int usage(void)
{
    fprintf(stderr,
            "usage: %s [--home DIR] [--role node|supernode] [--listen ADDR:PORT]\n"
            "          [--bootstrap HEX@ADDR:PORT]... [--bootstrap-file FILE] [--control PATH]\n"
            "          [--max-clients N] [--keepalive S] [--no-udp] [--no-tcp]\n"
            "          [--passphrase-file F] [--alt-listen ADDR:PORT] [--quiet]\n"
            "          [--supernode never|auto|always] [--bandwidth KBPS] [--max-bandwidth KBPS]\n"
            "          [--candidate-min-uptime S] [--candidate-min-kbps K] [--candidate-min-memory MB]\n"
            "          [--mailbox-quota BYTES]\n"
            "          calls: [--auto-answer] [--answer-from WAV|tone:HZ|silence|device[:NAME]]\n"
            "          [--answer-to WAV|null|device[:NAME]] [--private] [--ring-timeout S]\n"
            "          [--block-changed-keys] [--voice-band wide|superwide|full] [--media-trace FILE]\n"
            "          reach: [--no-portmap] [--proxy http://|socks5://[USER:PASS@]IP:PORT] [--proxy-only]\n",
            PROG);
    return 2;
}

static int parse_options(options *o, int argc, char **argv)
{
    int rc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        const char *value = NULL;
        if (strcmp(a, "--no-udp") == 0) o->no_udp = true;
        else if (strcmp(a, "--no-tcp") == 0) o->no_tcp = true;
        else if (strcmp(a, "--quiet") == 0) o->quiet = true;
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return usage();
        else if (strcmp(a, "--home") == 0) slot = &o->home;
        else if (strcmp(a, "--role") == 0) slot = &o->role;
        else if (strcmp(a, "--listen") == 0) slot = &o->listen;
        else if (strcmp(a, "--control") == 0) slot = &o->control;
        else if (strcmp(a, "--passphrase-file") == 0) slot = &o->passphrase_file;
        else if (strcmp(a, "--bootstrap-file") == 0) slot = &o->bootstrap_file;
        else if (strcmp(a, "--alt-listen") == 0) slot = &o->alt_listen;
        else if (strcmp(a, "--supernode") == 0) slot = &o->supernode;
        else if (strcmp(a, "--bootstrap") == 0 || strcmp(a, "--max-clients") == 0 || strcmp(a, "--keepalive") == 0 ||
                 strcmp(a, "--bandwidth") == 0 || strcmp(a, "--candidate-min-uptime") == 0 ||
                 strcmp(a, "--candidate-min-kbps") == 0 || strcmp(a, "--candidate-min-memory") == 0 ||
                 strcmp(a, "--max-bandwidth") == 0 || strcmp(a, "--mailbox-quota") == 0)
            slot = &value;
        else if ((rc = pd_phone_option(&o->phone, argc, argv, &i)) != 0) {
            if (rc < 0) return 2;
        } else if ((rc = pd_reach_option(&o->reach, argc, argv, &i)) != 0) {
            if (rc < 0) return 2;
        } else {
            fprintf(stderr, "%s: unknown option '%s'\n", PROG, a);
            return usage();
        }
        if (slot) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: %s needs a value\n", PROG, a);
                return 2;
            }
            *slot = argv[++i];
        }
        if (value) {
            char *end;
            if (strcmp(a, "--bootstrap") == 0) {
                if (o->n_bootstrap == MAX_BOOTSTRAP) return pd_die("at most %d --bootstrap entries", MAX_BOOTSTRAP);
                o->bootstrap[o->n_bootstrap++] = value;
            } else if (strcmp(a, "--bandwidth") == 0 || strcmp(a, "--candidate-min-uptime") == 0 ||
                       strcmp(a, "--candidate-min-kbps") == 0 || strcmp(a, "--candidate-min-memory") == 0 ||
                       strcmp(a, "--max-bandwidth") == 0) {
                unsigned long v = strtoul(value, &end, 10);
                if (*end || v > 100000000) return pd_die("%s wants a number", a);
                if (strcmp(a, "--bandwidth") == 0) o->bandwidth_kbps = (uint32_t)v;
                else if (strcmp(a, "--candidate-min-uptime") == 0) o->min_uptime_s = v ? (uint32_t)v : 1;
                else if (strcmp(a, "--candidate-min-kbps") == 0) o->min_kbps = v ? (uint32_t)v : 1;
                else if (strcmp(a, "--candidate-min-memory") == 0) o->min_memory_mb = v ? (uint32_t)v : 1;
                else o->max_bandwidth_kbps = (uint32_t)v;
            } else if (strcmp(a, "--mailbox-quota") == 0) {
                unsigned long v = strtoul(value, &end, 10);
                if (*end || v < 1024 || v > (1ul << 30)) return pd_die("--mailbox-quota wants 1024..1073741824 bytes");
                o->mailbox_quota = (uint32_t)v;
            } else if (strcmp(a, "--max-clients") == 0) {
                unsigned long v = strtoul(value, &end, 10);
                if (*end || v == 0 || v > (1u << 22)) return pd_die("--max-clients wants 1..4194304");
                o->max_clients = (uint32_t)v;
            } else {
                unsigned long v = strtoul(value, &end, 10);
                if (*end || v < 5 || v > 600) return pd_die("--keepalive wants 5..600 seconds");
                o->keepalive_s = (uint16_t)v;
            }
        }
    }
    if (o->role && strcmp(o->role, "node") && strcmp(o->role, "supernode"))
        return pd_die("--role must be node or supernode");
    if (o->supernode && strcmp(o->supernode, "never") && strcmp(o->supernode, "auto") && strcmp(o->supernode, "always"))
        return pd_die("--supernode must be never, auto or always");
    /* --supernode always is the same as --role supernode. */
    if (o->supernode && strcmp(o->supernode, "always") == 0) o->role = "supernode";
    if (o->no_udp && o->no_tcp) return pd_die("--no-udp and --no-tcp leave nothing to talk over");
    return 0;
}

int main(int argc, char **argv)
{
    static parleyd d;
    umask(077);
    signal(SIGPIPE, SIG_IGN);
    if (!pl_init()) return pd_die("cannot initialise the crypto library");
    int rc = parse_options(&d.opt, argc, argv);
    if (rc) return rc;
    d.quiet = d.opt.quiet;
    if (!pl_home_resolve(d.opt.home, d.home, sizeof d.home)) return pd_die("set HOME, PARLEY_HOME or --home");
    d.role = d.opt.role && strcmp(d.opt.role, "supernode") == 0 ? PL_ROLE_SUPERNODE : PL_ROLE_NODE;
    if ((rc = load_credentials(&d)) || (rc = load_bootstrap(&d))) return rc;
    if (d.role == PL_ROLE_NODE && d.n_bootstrap == 0) {
        char path[PL_HOME_PATH_MAX + 16];
        pl_home_path(d.home, "hosts", path, sizeof path);
        if (access(path, R_OK) != 0) return pd_die("a node needs --bootstrap or --bootstrap-file (no host cache yet)");
    }

    d.loop = pl_loop_new();
    if (!d.loop) return pd_die("cannot create the event loop");
    d.started_at = pl_loop_now(d.loop);
    pl_keymap_init(&d.conn_by_addr, NULL, pl_rng_system());
    const char *listen_text = d.opt.listen ? d.opt.listen : d.role == PL_ROLE_SUPERNODE ? "0.0.0.0:7400" : "0.0.0.0:0";
    pl_addr bind;
    if (!pl_addr_parse(&bind, listen_text, d.role == PL_ROLE_SUPERNODE ? 7400 : 0))
        return pd_die("--listen wants ADDR:PORT, not '%s'", listen_text);
    pl_loop_err le;
    if (!(d.role == PL_ROLE_SUPERNODE && d.opt.no_udp)) {
        d.udp = pl_udp_open(d.loop, &bind, on_udp, &d, &le);
        if (!d.udp) return pd_die("cannot listen on %s (UDP): %s", listen_text, pl_loop_strerror(le));
        pl_udp_local_addr(d.udp, &d.local);
    } else {
        d.local = bind;
    }
    if (d.role == PL_ROLE_SUPERNODE && !d.opt.no_tcp) {
        pl_addr tcp_bind = d.udp ? d.local : bind;
        d.tcp = pl_stream_listen(d.loop, &tcp_bind, on_accept, &d, &le);
        if (!d.tcp) return pd_die("cannot listen on %s (TCP): %s", listen_text, pl_loop_strerror(le));
        if (!d.udp) pl_listener_local_addr(d.tcp, &d.local);
    }

    /* STUN: a supernode answers on its own address; with a second one it
     * answers on all four pairs, for the RFC 5780 tests. */
    d.stun.primary = d.local;
    if (d.role == PL_ROLE_SUPERNODE && d.opt.alt_listen && d.udp) {
        pl_addr alt;
        if (!pl_addr_parse(&alt, d.opt.alt_listen, 0) || alt.family != d.local.family ||
            pl_addr_same_host(&alt, &d.local) || alt.port == d.local.port || alt.port == 0)
            return pd_die("--alt-listen wants another address of this host, with another port");
        pl_addr pairs[3] = {d.local, alt, alt};
        pairs[0].port = alt.port;
        pairs[1].port = d.local.port;
        for (int i = 0; i < 3; i++) {
            d.stun_socks[i] = pl_udp_open(d.loop, &pairs[i], on_stun_sock, &d, &le);
            if (!d.stun_socks[i]) return pd_die("cannot listen on the STUN alternate address: %s", pl_loop_strerror(le));
        }
        d.stun.alternate = alt;
    }
    pl_timer_init(&d.natdisc_timer, natdisc_timer, &d);

    /* What this node says about itself when it attaches: the machine's
     * uptime and memory, and the bandwidth its operator says it has. The
     * supernode checks reachability itself. */
    pl_ovl_attach hello = {.up_kbps = d.opt.bandwidth_kbps, .down_kbps = d.opt.bandwidth_kbps};
    struct sysinfo si;
    if (sysinfo(&si) == 0) {
        hello.uptime_s = (uint32_t)si.uptime;
        hello.memory_mb = (uint32_t)((uint64_t)si.totalram * si.mem_unit / (1024 * 1024));
    }
    pl_stack_config cfg = {.identity = &d.id,
                           .self_addr = d.local,
                           .cert = d.cert_bytes,
                           .cert_len = d.cert_len,
                           .rng = pl_rng_system(),
                           .role = d.role,
                           .bootstrap = d.bootstrap,
                           .n_bootstrap = d.n_bootstrap,
                           .no_tcp = d.opt.no_tcp,
                           .no_udp = d.opt.no_udp,
                           .attach = hello,
                           .promote = d.opt.supernode && strcmp(d.opt.supernode, "never") == 0 ? PL_PROMOTE_NEVER
                                                                                               : PL_PROMOTE_AUTO,
                           .min_uptime_s = d.opt.min_uptime_s,
                           .min_kbps = d.opt.min_kbps,
                           .min_memory_mb = d.opt.min_memory_mb,
                           .max_kbps = d.opt.max_bandwidth_kbps,
                           .mailbox_max_bytes = d.opt.mailbox_quota,
                           .max_clients = d.opt.max_clients,
                           .keepalive_s = d.opt.keepalive_s,
                           /* Supernodes find each other by gossip, from the
                            * bootstrap list as seeds. */
                           .membership = d.role == PL_ROLE_SUPERNODE};
    memcpy(cfg.ca_pk, d.ca_pk, 32);
    pd_phone_configure(&d, &cfg);
    pl_stack_io io = {&d, send_datagram, NULL, NULL, on_event, on_user_message};
    if ((rc = pd_reach_configure(&d, &cfg))) return rc;
    pl_stack_err se = pl_stack_new(&d.stack, &cfg, &io);
    if (se) return pd_die("cannot start the protocol stack: %s", pl_stack_strerror(se));
    if (d.have_crl) pl_sec_set_crl(pl_link_sec(pl_stack_link(d.stack)), &d.crl, pl_loop_now(d.loop));
    if (d.role == PL_ROLE_SUPERNODE) {
        /* The configured supernodes are what nodes are told before gossip
         * has found more (standby, host cache, redirects). */
        pl_ovl_peer others[PL_OVL_MAX_PEERS];
        uint8_t n = 0;
        for (size_t i = 0; i < d.n_bootstrap && n < PL_OVL_MAX_PEERS; i++)
            if (memcmp(d.bootstrap[i].pk, d.id.sign_pk, 32) != 0) others[n++] = d.bootstrap[i];
        pl_super *s = pl_stack_super(d.stack);
        pl_super_set_standby(s, others, n < 2 ? n : 2);
        pl_super_set_hosts(s, others, n);
        pl_super_set_redirects(s, others, n);
    }
    load_hosts(&d);
    if ((rc = pd_control_open(&d))) return rc;
    if (d.role == PL_ROLE_NODE && (rc = pd_people_open(&d))) return rc;
    if (d.role == PL_ROLE_NODE && (rc = pd_phone_open(&d))) return rc;
    if (d.role == PL_ROLE_NODE && (rc = pd_messages_open(&d))) return rc;
    if ((rc = pd_reach_open(&d))) return rc;
    if (pipe2(d.signal_pipe, O_NONBLOCK | O_CLOEXEC) == 0) {
        pl_loop_watch_fd(d.loop, d.signal_pipe[0], PL_FD_READ, on_stop_signal, NULL);
        signal_fd = d.signal_pipe[1];
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
    }
    pl_timer_init(&d.timer, on_timer, &d);

    char text[PL_ADDR_TEXT_MAX], hex[17];
    pl_addr_format(&d.local, text, sizeof text);
    hex8(d.id.sign_pk, hex);
    printf("listening %s %s\n", text, d.role == PL_ROLE_SUPERNODE ? "supernode" : "node");
    fflush(stdout);
    pd_log(&d, "%s (%s) running as %s on %s; control socket %s", d.cert.name, hex,
          d.role == PL_ROLE_SUPERNODE ? "supernode" : "node", text, d.control_path);

    pl_stack_start(d.stack, pl_loop_now(d.loop));
    pd_rearm(&d);
    pl_loop_run(d.loop);

    pd_log(&d, "stopping");
    pd_phone_close(&d);
    pl_stack_stop(d.stack, pl_loop_now(d.loop));
    if (d.udp) pl_udp_flush(d.udp);
    pd_reach_close(&d);
    if (pl_stack_node(d.stack)) save_hosts(&d);
    pd_control_close(&d);
    pd_messages_close(&d);
    pd_people_close(&d);
    pl_stack_free(d.stack);
    pl_loop_free(d.loop);
    pl_keymap_free(&d.conn_by_addr);
    free(d.conns);
    free(d.crl_bytes);
    pl_identity_wipe(&d.id);
    return 0;
}
