/*
 * parleyd - the Parley daemon: one user's node or supernode, for real.
 *
 *   parleyd [--home DIR] [--role node|supernode] [--listen ADDR:PORT]
 *           [--bootstrap HEX@ADDR:PORT]... [--bootstrap-file FILE]
 *           [--control PATH] [--max-clients N] [--keepalive S]
 *           [--no-udp] [--no-tcp] [--passphrase-file F] [--quiet]
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
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sodium.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "home.h"
#include "keymap.h"
#include "loop.h"
#include "parley.h"
#include "stack.h"

#define PROG "parleyd"
#define MAX_BOOTSTRAP 32
#define MAX_CONTROL_CLIENTS 16
#define CONTROL_LINE_MAX 4096
#define HOSTS_SAVE_INTERVAL (10 * PL_SEC)

typedef struct options {
    const char *home;
    const char *role;
    const char *listen;
    const char *control;
    const char *passphrase_file;
    const char *bootstrap_file;
    const char *bootstrap[MAX_BOOTSTRAP];
    int n_bootstrap;
    uint32_t max_clients;
    uint16_t keepalive_s;
    bool no_udp, no_tcp, quiet;
} options;

/* A TCP stream the daemon holds, named by its peer's address marked TCP. */
typedef struct tcp_conn {
    pl_stream *stream;
    pl_addr addr;
    bool outgoing;
    bool used;
} tcp_conn;

typedef struct control_client {
    int fd;
    char buf[CONTROL_LINE_MAX];
    size_t len;
} control_client;

typedef struct parleyd {
    options opt;
    char home[PL_HOME_PATH_MAX];
    pl_loop *loop;
    pl_udp *udp;
    pl_listener *tcp;
    pl_addr local;
    pl_identity id;
    pl_cert cert;
    uint8_t cert_bytes[PL_CERT_MAX_SIZE];
    size_t cert_len;
    uint8_t ca_pk[32];
    pl_crl crl;
    uint8_t *crl_bytes;
    bool have_crl;
    pl_stack *stack;
    pl_role role;
    pl_timer timer;
    pl_ovl_peer bootstrap[MAX_BOOTSTRAP];
    size_t n_bootstrap;
    tcp_conn *conns;
    size_t n_conns;
    pl_keymap conn_by_addr;
    int control_fd;
    char control_path[PL_HOME_PATH_MAX + 32];
    control_client clients[MAX_CONTROL_CLIENTS];
    int signal_pipe[2];
    bool hosts_dirty;
    pl_time hosts_saved_at;
    pl_time started_at;
} parleyd;

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

static bool quiet;

static void logf_(const char *fmt, ...)
{
    if (quiet) return;
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

static int die(const char *fmt, ...)
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
            return die("--bootstrap wants HEX@ADDR:PORT (the supernode's fingerprint from 'parley show'), not '%s'",
                       d->opt.bootstrap[i]);
        d->n_bootstrap++;
    }
    if (d->opt.bootstrap_file) {
        FILE *f = fopen(d->opt.bootstrap_file, "r");
        if (!f) return die("cannot read %s: %s", d->opt.bootstrap_file, strerror(errno));
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
                return die("%s:%d: expected 'HEX ADDR:PORT'", d->opt.bootstrap_file, no);
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
    if (n) logf_("host cache: %d supernodes from %s", n, path);
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
    if (!pl_file_write_atomic(path, buf, len, 0600)) logf_("cannot save the host cache to %s", path);
    d->hosts_dirty = false;
    d->hosts_saved_at = pl_loop_now(d->loop);
}

/* ---- driving the stack ------------------------------------------------------------------- */

static void rearm(parleyd *d)
{
    pl_time t = pl_stack_next_timeout(d->stack);
    if (d->hosts_dirty) {
        pl_time save_at = d->hosts_saved_at + HOSTS_SAVE_INTERVAL;
        if (save_at < t) t = save_at;
    }
    if (t == PL_TIME_NEVER) pl_timer_cancel(d->loop, &d->timer);
    else pl_timer_set(d->loop, &d->timer, t);
}

static void on_timer(pl_loop *loop, void *ctx)
{
    parleyd *d = ctx;
    pl_time now = pl_loop_now(loop);
    pl_stack_tick(d->stack, now);
    if (d->hosts_dirty && now >= d->hosts_saved_at + HOSTS_SAVE_INTERVAL) save_hosts(d);
    rearm(d);
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
        if (d->role != PL_ROLE_NODE) return;
        pl_addr plain = *to;
        plain.transport = PL_ADDR_UDP;
        pl_loop_err err;
        /* From the address we listen on, unless that is a wildcard. */
        static const uint8_t any[16];
        bool wildcard = memcmp(d->local.ip, any, d->local.family == PL_AF_INET4 ? 4 : 16) == 0;
        pl_stream *s = pl_stream_connect_from(d->loop, &plain, wildcard || d->local.family != plain.family ? NULL : &d->local,
                                              &err);
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
        char text[PL_ADDR_TEXT_MAX];
        logf_("connecting over TCP to %s", pl_addr_format(to, text, sizeof text));
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
    rearm(d);
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
            char text[PL_ADDR_TEXT_MAX];
            logf_("TCP to %s failed: %s", pl_addr_format(&a, text, sizeof text), strerror(err));
            pl_stack_unreachable(d->stack, &a, pl_loop_now(d->loop));
            rearm(d);
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

static void on_udp(void *ctx, pl_udp *sock, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    parleyd *d = ctx;
    (void)sock;
    pl_stack_receive(d->stack, from, data, len, now);
    rearm(d);
}

static const char *peer_name(parleyd *d, const uint8_t pk[32])
{
    pl_link *link = pl_stack_link(d->stack);
    pl_sec_peer *p = link ? pl_sec_find(pl_link_sec(link), pk) : NULL;
    const pl_cert *c = p ? pl_sec_peer_cert(p) : NULL;
    return c ? c->name : "?";
}

static void on_directory(parleyd *d, const pl_dirc_event *ev);

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
            logf_("attached to supernode %s (%s) at %s over %s; seen as %s", peer_name(d, e->supernode->pk), hex,
                  addr, st.tcp ? "TCP" : "UDP", pl_addr_format(e->observed, seen, sizeof seen));
            break;
        }
        case PL_NODE_EV_LOST: logf_("lost supernode %s at %s; re-attaching", hex, addr); break;
        case PL_NODE_EV_REFUSED: logf_("supernode %s at %s refused us (reason %u)", hex, addr, e->refusal); break;
        case PL_NODE_EV_ADDRESS: logf_("our address as seen: %s", pl_addr_format(e->observed, addr, sizeof addr)); break;
        case PL_NODE_EV_HOSTS: d->hosts_dirty = true; break;
        case PL_NODE_EV_DIRECTORY: on_directory(d, e->dir); break;
        }
    } else if (ev->type == PL_STACK_EV_SUPER) {
        const pl_super_event *e = ev->super;
        hex8(e->client_pk, hex);
        pl_addr_format(e->addr, addr, sizeof addr);
        const char *what = e->type == PL_SUPER_EV_CLIENT_ATTACHED ? "attached"
                           : e->type == PL_SUPER_EV_CLIENT_LOST   ? "lost"
                                                                  : "left";
        logf_("client %s (%s) at %s %s", e->name, hex, addr, what);
    }
}

/* ---- the directory: publishing, look-ups, presence ---------------------------------------------- */

static void on_directory(parleyd *d, const pl_dirc_event *ev)
{
    (void)d;
    if (ev->type == PL_DIRC_EV_PUBLISHED) {
        if (ev->status == PL_DIR_OK) logf_("record published on %u replicas", ev->stored);
        else logf_("publishing our record failed (status %u)", ev->status);
    }
}

/* ---- the control socket -------------------------------------------------------------------- */

static void control_write(parleyd *d, control_client *c, cJSON *reply)
{
    (void)d;
    char *text = cJSON_PrintUnformatted(reply);
    cJSON_Delete(reply);
    if (!text) return;
    size_t len = strlen(text);
    text[len] = '\n';
    /* Replies are small; a client that does not read them is dropped. */
    ssize_t n = send(c->fd, text, len + 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
    free(text);
}

static cJSON *error_reply(const char *kind, const char *message)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", false);
    cJSON_AddStringToObject(r, "error", kind);
    cJSON_AddStringToObject(r, "message", message);
    return r;
}

static void add_peer(cJSON *obj, const char *key, parleyd *d, const pl_ovl_peer *p)
{
    char hex[65], addr[PL_ADDR_TEXT_MAX];
    cJSON *o = cJSON_AddObjectToObject(obj, key);
    pl_hex_encode(p->pk, 32, hex);
    cJSON_AddStringToObject(o, "fingerprint", hex);
    cJSON_AddStringToObject(o, "name", peer_name(d, p->pk));
    cJSON_AddStringToObject(o, "addr", pl_addr_format(&p->addr, addr, sizeof addr));
}

static cJSON *cmd_status(parleyd *d)
{
    cJSON *r = cJSON_CreateObject();
    char hex[65], addr[PL_ADDR_TEXT_MAX];
    pl_time now = pl_loop_now(d->loop);
    cJSON_AddBoolToObject(r, "ok", true);
    cJSON_AddStringToObject(r, "name", d->cert.name);
    pl_hex_encode(d->id.sign_pk, 32, hex);
    cJSON_AddStringToObject(r, "fingerprint", hex);
    cJSON_AddStringToObject(r, "role", d->role == PL_ROLE_SUPERNODE ? "supernode" : "node");
    cJSON_AddStringToObject(r, "listen", pl_addr_format(&d->local, addr, sizeof addr));
    cJSON_AddNumberToObject(r, "uptime_s", (double)(now - d->started_at) / PL_SEC);
    /* Discovery of the NAT's behaviour arrives with the NAT work; until then
     * a node reports what it knows: the address its supernode sees. */
    cJSON_AddStringToObject(r, "nat", "unknown");
    if (d->role == PL_ROLE_NODE) {
        pl_node_status st = pl_node_get_status(pl_stack_node(d->stack));
        cJSON_AddStringToObject(r, "state", pl_node_state_name(st.state));
        cJSON_AddBoolToObject(r, "online", st.state == PL_NODE_ATTACHED);
        if (st.state == PL_NODE_ATTACHED || st.state == PL_NODE_ATTACHING) {
            add_peer(r, "supernode", d, &st.supernode);
            cJSON_AddStringToObject(r, "transport", st.tcp ? "tcp" : "udp");
        }
        if (st.state == PL_NODE_ATTACHED) {
            cJSON_AddStringToObject(r, "observed", pl_addr_format(&st.observed, addr, sizeof addr));
            cJSON_AddNumberToObject(r, "attached_s", (double)(now - st.attached_since) / PL_SEC);
            cJSON_AddNumberToObject(r, "keepalive_s", st.keepalive_s);
        }
        cJSON *sb = cJSON_AddArrayToObject(r, "standby");
        for (uint8_t i = 0; i < st.n_standby; i++) {
            cJSON *o = cJSON_CreateObject();
            pl_hex_encode(st.standby[i].pk, 32, hex);
            cJSON_AddStringToObject(o, "fingerprint", hex);
            cJSON_AddStringToObject(o, "addr", pl_addr_format(&st.standby[i].addr, addr, sizeof addr));
            cJSON_AddItemToArray(sb, o);
        }
        cJSON_AddNumberToObject(r, "attaches", st.attaches);
        cJSON_AddNumberToObject(r, "losses", st.losses);
        if (st.state == PL_NODE_WAITING)
            cJSON_AddNumberToObject(r, "retry_in_s", (double)(st.next_attempt - now) / PL_SEC);
    } else {
        pl_super_stats ss = pl_super_get_stats(pl_stack_super(d->stack));
        cJSON_AddStringToObject(r, "state", "serving");
        cJSON_AddBoolToObject(r, "online", true);
        cJSON_AddNumberToObject(r, "clients", ss.clients);
        cJSON_AddNumberToObject(r, "max_clients", d->opt.max_clients ? d->opt.max_clients : PL_SUPER_DEFAULT_MAX_CLIENTS);
        cJSON_AddNumberToObject(r, "attaches", (double)ss.attaches);
        cJSON_AddNumberToObject(r, "lost", (double)ss.lost);
        cJSON_AddNumberToObject(r, "refused_full", (double)ss.refused_full);
        cJSON_AddNumberToObject(r, "refused_proof", (double)ss.refused_proof);
    }
    return r;
}

static cJSON *cmd_clients(parleyd *d)
{
    pl_super *s = pl_stack_super(d->stack);
    if (!s) return error_reply("not_supernode", "this daemon is not a supernode");
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", true);
    cJSON *arr = cJSON_AddArrayToObject(r, "clients");
    size_t cursor = 0;
    pl_super_client_info info;
    char hex[65], addr[PL_ADDR_TEXT_MAX];
    while (pl_super_next_client(s, &cursor, &info)) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", info.name);
        pl_hex_encode(info.pk, 32, hex);
        cJSON_AddStringToObject(o, "fingerprint", hex);
        cJSON_AddStringToObject(o, "addr", pl_addr_format(&info.addr, addr, sizeof addr));
        cJSON_AddItemToArray(arr, o);
    }
    return r;
}

typedef struct control_command {
    const char *name;
    cJSON *(*run)(parleyd *d, const cJSON *req);
} control_command;

static cJSON *run_status(parleyd *d, const cJSON *req) { (void)req; return cmd_status(d); }
static cJSON *run_clients(parleyd *d, const cJSON *req) { (void)req; return cmd_clients(d); }
static cJSON *run_stop(parleyd *d, const cJSON *req)
{
    (void)req;
    pl_loop_stop(d->loop);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", true);
    return r;
}

static const control_command CONTROL_COMMANDS[] = {
    {"status", run_status},
    {"clients", run_clients},
    {"stop", run_stop},
};

static void control_line(parleyd *d, control_client *c, const char *line)
{
    cJSON *req = cJSON_Parse(line);
    const cJSON *cmd = req ? cJSON_GetObjectItemCaseSensitive(req, "cmd") : NULL;
    cJSON *reply = NULL;
    if (!cJSON_IsString(cmd)) {
        reply = error_reply("bad_request", "expected a JSON object with \"cmd\"");
    } else {
        for (size_t i = 0; i < sizeof CONTROL_COMMANDS / sizeof CONTROL_COMMANDS[0]; i++)
            if (strcmp(cmd->valuestring, CONTROL_COMMANDS[i].name) == 0) reply = CONTROL_COMMANDS[i].run(d, req);
        if (!reply) reply = error_reply("unknown_command", cmd->valuestring);
    }
    cJSON_Delete(req);
    control_write(d, c, reply);
    rearm(d);
}

static void control_drop(parleyd *d, control_client *c)
{
    pl_loop_unwatch_fd(d->loop, c->fd);
    close(c->fd);
    c->fd = -1;
    c->len = 0;
}

static void on_control_client(pl_loop *loop, int fd, unsigned events, void *ctx)
{
    parleyd *d = ctx;
    (void)loop;
    (void)events;
    control_client *c = NULL;
    for (int i = 0; i < MAX_CONTROL_CLIENTS; i++)
        if (d->clients[i].fd == fd) c = &d->clients[i];
    if (!c) return;
    ssize_t n = recv(fd, c->buf + c->len, sizeof c->buf - 1 - c->len, MSG_DONTWAIT);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        control_drop(d, c);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = 0;
    char *nl;
    while ((nl = memchr(c->buf, '\n', c->len)) != NULL) {
        *nl = 0;
        control_line(d, c, c->buf);
        if (c->fd < 0) return;
        size_t used = (size_t)(nl - c->buf) + 1;
        memmove(c->buf, nl + 1, c->len - used);
        c->len -= used;
        c->buf[c->len] = 0;
    }
    if (c->len == sizeof c->buf - 1) control_drop(d, c); /* a line too long */
}

static void on_control_accept(pl_loop *loop, int fd, unsigned events, void *ctx)
{
    parleyd *d = ctx;
    (void)events;
    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (cfd < 0) return;
    for (int i = 0; i < MAX_CONTROL_CLIENTS; i++) {
        if (d->clients[i].fd < 0) {
            d->clients[i].fd = cfd;
            d->clients[i].len = 0;
            pl_loop_watch_fd(loop, cfd, PL_FD_READ, on_control_client, d);
            return;
        }
    }
    close(cfd);
}

static int open_control(parleyd *d)
{
    for (int i = 0; i < MAX_CONTROL_CLIENTS; i++) d->clients[i].fd = -1;
    if (d->opt.control) snprintf(d->control_path, sizeof d->control_path, "%s", d->opt.control);
    else pl_home_path(d->home, "control.sock", d->control_path, sizeof d->control_path);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(d->control_path) >= sizeof sa.sun_path)
        return die("the control socket path %s is too long (use --control)", d->control_path);
    strcpy(sa.sun_path, d->control_path);
    /* A socket left by a daemon that died is removed; one that answers
     * belongs to a daemon that is still running. */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
        close(probe);
        return die("a daemon is already running for %s (control socket %s)", d->home, d->control_path);
    }
    if (probe >= 0) close(probe);
    unlink(d->control_path);
    d->control_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (d->control_fd < 0 || bind(d->control_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(d->control_fd, 16) != 0)
        return die("cannot open the control socket %s: %s", d->control_path, strerror(errno));
    chmod(d->control_path, 0600);
    pl_loop_watch_fd(d->loop, d->control_fd, PL_FD_READ, on_control_accept, d);
    return 0;
}

static void close_control(parleyd *d)
{
    for (int i = 0; i < MAX_CONTROL_CLIENTS; i++)
        if (d->clients[i].fd >= 0) control_drop(d, &d->clients[i]);
    if (d->control_fd >= 0) {
        pl_loop_unwatch_fd(d->loop, d->control_fd);
        close(d->control_fd);
        unlink(d->control_path);
    }
}

/* ---- set-up ------------------------------------------------------------------------------------ */

static int load_credentials(parleyd *d)
{
    char path[PL_HOME_PATH_MAX + 32], pass[1024];
    bool bad;
    const char *p = pl_passphrase_read(d->opt.passphrase_file, pass, sizeof pass, &bad);
    if (bad) return die("cannot read the passphrase file %s", d->opt.passphrase_file);
    pl_home_path(d->home, "identity.key", path, sizeof path);
    pl_identity_err ie = pl_identity_load(&d->id, path, p);
    sodium_memzero(pass, sizeof pass);
    if (ie == PL_IDENTITY_ERR_IO && access(path, F_OK) != 0)
        return die("no identity at %s (run 'parley keygen' and 'parley register' first)", path);
    if (ie == PL_IDENTITY_ERR_NEED_PASSPHRASE)
        return die("the identity key is sealed: give --passphrase-file or PARLEY_PASSPHRASE");
    if (ie) return die("%s: %s", path, pl_identity_strerror(ie));
    pl_home_path(d->home, "identity.cert", path, sizeof path);
    long n = pl_file_read(path, d->cert_bytes, sizeof d->cert_bytes);
    if (n < 0) return die("no certificate at %s (run 'parley register NAME' first)", path);
    d->cert_len = (size_t)n;
    if (pl_cert_decode(&d->cert, d->cert_bytes, d->cert_len) != PL_CERT_OK)
        return die("%s is not a valid certificate", path);
    if (memcmp(d->cert.sign_pk, d->id.sign_pk, 32) != 0) return die("%s certifies another key", path);
    pl_home_pin pin;
    pl_home_read_pin(d->home, &pin);
    if (!pin.have_key) return die("no authority pinned in %s (run 'parley register' first)", d->home);
    memcpy(d->ca_pk, pin.key, 32);
    pl_cert_err ce = pl_cert_verify(&d->cert, d->ca_pk, (uint64_t)time(NULL), NULL);
    if (ce) return die("our certificate does not verify: %s (run 'parley renew')", pl_cert_strerror(ce));
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
            "          [--passphrase-file F] [--quiet]\n",
            PROG);
    return 2;
}

static int parse_options(options *o, int argc, char **argv)
{
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
        else if (strcmp(a, "--bootstrap") == 0 || strcmp(a, "--max-clients") == 0 || strcmp(a, "--keepalive") == 0)
            slot = &value;
        else {
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
                if (o->n_bootstrap == MAX_BOOTSTRAP) return die("at most %d --bootstrap entries", MAX_BOOTSTRAP);
                o->bootstrap[o->n_bootstrap++] = value;
            } else if (strcmp(a, "--max-clients") == 0) {
                unsigned long v = strtoul(value, &end, 10);
                if (*end || v == 0 || v > (1u << 22)) return die("--max-clients wants 1..4194304");
                o->max_clients = (uint32_t)v;
            } else {
                unsigned long v = strtoul(value, &end, 10);
                if (*end || v < 5 || v > 600) return die("--keepalive wants 5..600 seconds");
                o->keepalive_s = (uint16_t)v;
            }
        }
    }
    if (o->role && strcmp(o->role, "node") && strcmp(o->role, "supernode"))
        return die("--role must be node or supernode");
    if (o->no_udp && o->no_tcp) return die("--no-udp and --no-tcp leave nothing to talk over");
    return 0;
}

int main(int argc, char **argv)
{
    static parleyd d;
    umask(077);
    signal(SIGPIPE, SIG_IGN);
    if (!pl_init()) return die("cannot initialise the crypto library");
    int rc = parse_options(&d.opt, argc, argv);
    if (rc) return rc;
    quiet = d.opt.quiet;
    if (!pl_home_resolve(d.opt.home, d.home, sizeof d.home)) return die("set HOME, PARLEY_HOME or --home");
    d.role = d.opt.role && strcmp(d.opt.role, "supernode") == 0 ? PL_ROLE_SUPERNODE : PL_ROLE_NODE;
    if ((rc = load_credentials(&d)) || (rc = load_bootstrap(&d))) return rc;
    if (d.role == PL_ROLE_NODE && d.n_bootstrap == 0) {
        char path[PL_HOME_PATH_MAX + 16];
        pl_home_path(d.home, "hosts", path, sizeof path);
        if (access(path, R_OK) != 0) return die("a node needs --bootstrap or --bootstrap-file (no host cache yet)");
    }

    d.loop = pl_loop_new();
    if (!d.loop) return die("cannot create the event loop");
    d.started_at = pl_loop_now(d.loop);
    pl_keymap_init(&d.conn_by_addr, NULL, pl_rng_system());
    const char *listen_text = d.opt.listen ? d.opt.listen : d.role == PL_ROLE_SUPERNODE ? "0.0.0.0:7400" : "0.0.0.0:0";
    pl_addr bind;
    if (!pl_addr_parse(&bind, listen_text, d.role == PL_ROLE_SUPERNODE ? 7400 : 0))
        return die("--listen wants ADDR:PORT, not '%s'", listen_text);
    pl_loop_err le;
    if (!(d.role == PL_ROLE_SUPERNODE && d.opt.no_udp)) {
        d.udp = pl_udp_open(d.loop, &bind, on_udp, &d, &le);
        if (!d.udp) return die("cannot listen on %s (UDP): %s", listen_text, pl_loop_strerror(le));
        pl_udp_local_addr(d.udp, &d.local);
    } else {
        d.local = bind;
    }
    if (d.role == PL_ROLE_SUPERNODE && !d.opt.no_tcp) {
        pl_addr tcp_bind = d.udp ? d.local : bind;
        d.tcp = pl_stream_listen(d.loop, &tcp_bind, on_accept, &d, &le);
        if (!d.tcp) return die("cannot listen on %s (TCP): %s", listen_text, pl_loop_strerror(le));
        if (!d.udp) pl_listener_local_addr(d.tcp, &d.local);
    }

    pl_stack_config cfg = {.identity = &d.id,
                           .cert = d.cert_bytes,
                           .cert_len = d.cert_len,
                           .rng = pl_rng_system(),
                           .role = d.role,
                           .bootstrap = d.bootstrap,
                           .n_bootstrap = d.n_bootstrap,
                           .no_tcp = d.opt.no_tcp,
                           .no_udp = d.opt.no_udp,
                           .attach = {.capabilities = 0},
                           .max_clients = d.opt.max_clients,
                           .keepalive_s = d.opt.keepalive_s};
    memcpy(cfg.ca_pk, d.ca_pk, 32);
    pl_stack_io io = {&d, send_datagram, NULL, NULL, on_event};
    pl_stack_err se = pl_stack_new(&d.stack, &cfg, &io);
    if (se) return die("cannot start the protocol stack: %s", pl_stack_strerror(se));
    if (d.have_crl) pl_sec_set_crl(pl_link_sec(pl_stack_link(d.stack)), &d.crl, pl_loop_now(d.loop));
    if (d.role == PL_ROLE_SUPERNODE) {
        /* Until membership spreads the list of supernodes, the configured
         * ones are what nodes are told: standby, host cache, redirects. */
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
    if ((rc = open_control(&d))) return rc;
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
    logf_("%s (%s) running as %s on %s; control socket %s", d.cert.name, hex,
          d.role == PL_ROLE_SUPERNODE ? "supernode" : "node", text, d.control_path);

    pl_stack_start(d.stack, pl_loop_now(d.loop));
    rearm(&d);
    pl_loop_run(d.loop);

    logf_("stopping");
    pl_stack_stop(d.stack, pl_loop_now(d.loop));
    if (d.udp) pl_udp_flush(d.udp);
    if (pl_stack_node(d.stack)) save_hosts(&d);
    close_control(&d);
    pl_stack_free(d.stack);
    pl_loop_free(d.loop);
    pl_keymap_free(&d.conn_by_addr);
    free(d.conns);
    free(d.crl_bytes);
    pl_identity_wipe(&d.id);
    return 0;
}
