/*
 * parley-ca - the signing authority program.
 *
 *   parley-ca init --dir DIR                  create DIR (0700), the CA key, the database
 *   parley-ca serve --dir DIR --listen A:P    answer registrations over UDP and TCP
 *   parley-ca list --dir DIR [--json]         show the accounts
 *   parley-ca revoke --dir DIR NAME           the operator revokes an account
 *   parley-ca fingerprint --dir DIR           print the key fingerprint nodes pin
 *
 * The key is read from DIR/ca.key and never written anywhere else; nothing
 * here sends it or prints it. All protocol decisions are in ca_server.c; this
 * file only moves bytes between sockets and the core and logs what happened.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ca_server.h"
#include "loop.h"
#include "parley.h"
#include "store.h"

#define PROG "parley-ca"
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define MAX_CONNS 256
#define CONN_IDLE (30 * PL_SEC)

/* ---- options ----------------------------------------------------------------- */

typedef struct opts {
    const char *dir;
    const char *listen;
    const char *passphrase_file;
    const char *arg; /* the one positional argument (revoke NAME) */
    bool json;
    bool no_udp;
    double rate;
    unsigned long burst;
} opts;

static int usage_error(const char *cmd, const char *msg)
{
    fprintf(stderr, "%s: %s: %s (see '%s help')\n", PROG, cmd, msg, PROG);
    return EXIT_USAGE;
}

/* Parses the options every subcommand shares; returns false after printing
 * why on a bad one. */
static bool parse_opts(const char *cmd, int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->rate = 2.0;
    o->burst = 20;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (strcmp(a, "--json") == 0) { o->json = true; continue; }
        if (strcmp(a, "--no-udp") == 0) { o->no_udp = true; continue; }
        if (strcmp(a, "--dir") == 0) slot = &o->dir;
        else if (strcmp(a, "--listen") == 0) slot = &o->listen;
        else if (strcmp(a, "--passphrase-file") == 0) slot = &o->passphrase_file;
        else if (strcmp(a, "--rate") == 0 || strcmp(a, "--burst") == 0) {
            if (i + 1 >= argc) { usage_error(cmd, "missing value"); return false; }
            char *end;
            errno = 0;
            if (a[2] == 'r') {
                o->rate = strtod(argv[++i], &end);
                if (*end || errno || !(o->rate > 0 && o->rate <= 1e6)) { usage_error(cmd, "bad --rate"); return false; }
            } else {
                o->burst = strtoul(argv[++i], &end, 10);
                if (*end || errno || o->burst == 0 || o->burst > 1000000) { usage_error(cmd, "bad --burst"); return false; }
            }
            continue;
        } else if (a[0] == '-' && a[1] == '-') {
            char msg[128];
            snprintf(msg, sizeof msg, "unknown option '%s'", a);
            usage_error(cmd, msg);
            return false;
        } else if (!o->arg) {
            o->arg = a;
            continue;
        } else {
            usage_error(cmd, "too many arguments");
            return false;
        }
        if (i + 1 >= argc) { usage_error(cmd, "missing value"); return false; }
        *slot = argv[++i];
    }
    if (!o->dir) { usage_error(cmd, "--dir DIR is required"); return false; }
    return true;
}

static void path_in(char *out, size_t cap, const char *dir, const char *file) { snprintf(out, cap, "%s/%s", dir, file); }

/* Reads a passphrase from --passphrase-file or PARLEY_CA_PASSPHRASE; NULL
 * when there is none. The buffer is the caller's. */
static const char *passphrase(const opts *o, char *buf, size_t cap, bool *bad)
{
    *bad = false;
    if (o->passphrase_file) {
        FILE *f = fopen(o->passphrase_file, "r");
        if (!f || !fgets(buf, (int)cap, f)) {
            if (f) fclose(f);
            *bad = true;
            return NULL;
        }
        fclose(f);
        buf[strcspn(buf, "\r\n")] = 0;
        return buf;
    }
    const char *env = getenv("PARLEY_CA_PASSPHRASE");
    return env && *env ? env : NULL;
}

static int load_key(const char *cmd, const opts *o, pl_identity *id)
{
    char path[4096], pass[1024];
    bool bad;
    path_in(path, sizeof path, o->dir, "ca.key");
    const char *p = passphrase(o, pass, sizeof pass, &bad);
    if (bad) {
        fprintf(stderr, "%s: %s: cannot read the passphrase file\n", PROG, cmd);
        return EXIT_FAIL;
    }
    pl_identity_err e = pl_identity_load(id, path, p);
    memset(pass, 0, sizeof pass);
    if (e != PL_IDENTITY_OK) {
        fprintf(stderr, "%s: %s: %s: %s\n", PROG, cmd, path, pl_identity_strerror(e));
        return EXIT_FAIL;
    }
    return 0;
}

static pl_ca_db *open_db(const char *cmd, const char *dir, bool create)
{
    char path[4096];
    pl_ca_db *db = NULL;
    path_in(path, sizeof path, dir, "accounts.db");
    if (!create && access(path, F_OK) != 0) {
        fprintf(stderr, "%s: %s: %s is not a CA directory (run '%s init --dir %s')\n", PROG, cmd, dir, PROG, dir);
        return NULL;
    }
    pl_ca_store_err e = pl_ca_db_open(&db, path, create);
    if (e != PL_CA_STORE_OK) {
        fprintf(stderr, "%s: %s: cannot open %s: %s\n", PROG, cmd, path, pl_ca_store_strerror(e));
        return NULL;
    }
    return db;
}

/* ---- init / fingerprint ----------------------------------------------------------- */

static int cmd_init(int argc, char **argv)
{
    opts o;
    if (!parse_opts("init", argc, argv, &o)) return EXIT_USAGE;
    char path[4096], pass[1024];
    if (mkdir(o.dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "%s: init: cannot create %s: %s\n", PROG, o.dir, strerror(errno));
        return EXIT_FAIL;
    }
    /* The directory holds the key: nobody else may even list it. */
    if (chmod(o.dir, 0700) != 0) {
        fprintf(stderr, "%s: init: cannot restrict %s: %s\n", PROG, o.dir, strerror(errno));
        return EXIT_FAIL;
    }
    path_in(path, sizeof path, o.dir, "ca.key");
    bool bad;
    const char *p = passphrase(&o, pass, sizeof pass, &bad);
    if (bad) {
        fprintf(stderr, "%s: init: cannot read the passphrase file\n", PROG);
        return EXIT_FAIL;
    }
    pl_identity id;
    pl_identity_generate(&id, pl_rng_system());
    pl_identity_err e = pl_identity_save(&id, path, p, false);
    memset(pass, 0, sizeof pass);
    if (e != PL_IDENTITY_OK) {
        pl_identity_wipe(&id);
        fprintf(stderr, "%s: init: %s: %s\n", PROG, path, e == PL_IDENTITY_ERR_EXISTS ? "already initialised (a CA key exists)" : pl_identity_strerror(e));
        return EXIT_FAIL;
    }
    pl_ca_db *db = open_db("init", o.dir, true);
    if (!db) {
        pl_identity_wipe(&id);
        return EXIT_FAIL;
    }
    pl_ca_db_close(db);
    char hex[65];
    pl_hex_encode(id.sign_pk, 32, hex);
    pl_identity_wipe(&id);
    if (o.json) printf("{\"fingerprint\":\"%s\",\"dir\":\"%s\"}\n", hex, o.dir);
    else printf("%s\n", hex);
    return 0;
}

static int cmd_fingerprint(int argc, char **argv)
{
    opts o;
    if (!parse_opts("fingerprint", argc, argv, &o)) return EXIT_USAGE;
    pl_identity id;
    int rc = load_key("fingerprint", &o, &id);
    if (rc) return rc;
    char hex[65];
    pl_hex_encode(id.sign_pk, 32, hex);
    pl_identity_wipe(&id);
    if (o.json) printf("{\"fingerprint\":\"%s\"}\n", hex);
    else printf("%s\n", hex);
    return 0;
}

/* ---- list / revoke ----------------------------------------------------------------- */

static void format_time(uint64_t t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

typedef struct list_ctx {
    bool json;
    int count;
} list_ctx;

static void list_one(void *ctx, const pl_ca_account *a)
{
    list_ctx *lc = ctx;
    char pk[65], created[32], expires[32];
    pl_hex_encode(a->sign_pk, 32, pk);
    format_time(a->created, created, sizeof created);
    format_time(a->not_after, expires, sizeof expires);
    if (lc->json) {
        /* Names are [a-z0-9._-] only, so they need no JSON escaping. */
        printf("%s{\"name\":\"%s\",\"serial\":%llu,\"status\":\"%s\",\"created\":%llu,\"not_after\":%llu,"
               "\"sign_pk\":\"%s\"}",
               lc->count ? "," : "", a->name, (unsigned long long)a->serial, a->revoked ? "revoked" : "active",
               (unsigned long long)a->created, (unsigned long long)a->not_after, pk);
    } else {
        printf("%-32s %8llu  %-7s  %s  %s  %s\n", a->name, (unsigned long long)a->serial,
               a->revoked ? "revoked" : "active", created, expires, pk);
    }
    lc->count++;
}

static int cmd_list(int argc, char **argv)
{
    opts o;
    if (!parse_opts("list", argc, argv, &o)) return EXIT_USAGE;
    pl_ca_db *db = open_db("list", o.dir, false);
    if (!db) return EXIT_FAIL;
    list_ctx lc = {.json = o.json};
    if (o.json) printf("{\"accounts\":[");
    else printf("%-32s %8s  %-7s  %-20s  %-20s  %s\n", "NAME", "SERIAL", "STATUS", "CREATED", "EXPIRES", "KEY");
    pl_ca_store_err e = pl_ca_db_list(db, list_one, &lc);
    if (o.json) printf("],\"count\":%d}\n", lc.count);
    pl_ca_db_close(db);
    if (e != PL_CA_STORE_OK) {
        fprintf(stderr, "%s: list: %s\n", PROG, pl_ca_store_strerror(e));
        return EXIT_FAIL;
    }
    return 0;
}

static int cmd_revoke(int argc, char **argv)
{
    opts o;
    if (!parse_opts("revoke", argc, argv, &o)) return EXIT_USAGE;
    if (!o.arg) return usage_error("revoke", "which NAME?");
    char name[PL_NAME_MAX + 1];
    pl_name_err ne = pl_name_normalize(o.arg, name);
    if (ne != PL_NAME_OK && ne != PL_NAME_ERR_RESERVED) {
        fprintf(stderr, "%s: revoke: '%s': %s\n", PROG, o.arg, pl_name_strerror(ne));
        return EXIT_FAIL;
    }
    pl_ca_db *db = open_db("revoke", o.dir, false);
    if (!db) return EXIT_FAIL;
    pl_ca_store st = pl_ca_db_store(db);
    uint64_t number = 0;
    pl_ca_store_err e = st.revoke(st.ctx, name, &number);
    pl_ca_db_close(db);
    if (e == PL_CA_STORE_NOT_FOUND) {
        fprintf(stderr, "%s: revoke: no account is named '%s'\n", PROG, name);
        return EXIT_FAIL;
    }
    if (e != PL_CA_STORE_OK) {
        fprintf(stderr, "%s: revoke: %s\n", PROG, pl_ca_store_strerror(e));
        return EXIT_FAIL;
    }
    if (o.json) printf("{\"revoked\":\"%s\",\"crl_number\":%llu}\n", name, (unsigned long long)number);
    else printf("revoked %s (revocation list number %llu)\n", name, (unsigned long long)number);
    return 0;
}

/* ---- serve ------------------------------------------------------------------------------ */

typedef struct server server;

typedef struct conn {
    server *srv;
    pl_stream *stream;
    pl_addr peer;
    pl_timer idle;
    bool used;
} conn;

struct server {
    pl_loop *loop;
    pl_ca_server *core;
    pl_udp *udp;
    pl_listener *tcp;
    conn conns[MAX_CONNS];
    uint8_t out[PL_CA_MAX_MESSAGE];
    int sigfd;
};

static const char *op_name(uint8_t op)
{
    switch (op) {
    case PL_CA_OP_REGISTER: return "register";
    case PL_CA_OP_RENEW: return "renew";
    case PL_CA_OP_REVOKE: return "revoke";
    }
    return "crl";
}

/* One line per registration, renewal, revocation or refusal. */
static void log_event(const pl_ca_event *ev, const pl_addr *from, const char *transport)
{
    char addr[PL_ADDR_TEXT_MAX];
    pl_addr_format(from, addr, sizeof addr);
    switch (ev->kind) {
    case PL_CA_EVENT_REGISTERED:
        fprintf(stderr, "%s: registered %s serial %llu from %s/%s\n", PROG, ev->name, (unsigned long long)ev->serial,
                addr, transport);
        break;
    case PL_CA_EVENT_REISSUED:
        fprintf(stderr, "%s: re-sent certificate of %s serial %llu to %s/%s\n", PROG, ev->name,
                (unsigned long long)ev->serial, addr, transport);
        break;
    case PL_CA_EVENT_RENEWED:
        fprintf(stderr, "%s: renewed %s serial %llu from %s/%s\n", PROG, ev->name, (unsigned long long)ev->serial,
                addr, transport);
        break;
    case PL_CA_EVENT_REVOKED:
        fprintf(stderr, "%s: revoked %s at its owner's request from %s/%s\n", PROG, ev->name, addr, transport);
        break;
    case PL_CA_EVENT_REFUSED:
        fprintf(stderr, "%s: refused %s%s%s from %s/%s: %s\n", PROG, op_name(ev->op), ev->name[0] ? " of " : "",
                ev->name, addr, transport, pl_ca_code_str((pl_ca_code)ev->code));
        break;
    default:
        break;
    }
}

static void on_udp(void *ctx, pl_udp *sock, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    server *srv = ctx;
    pl_ca_event ev;
    size_t n = pl_ca_server_handle(srv->core, now, from, data, len, srv->out, sizeof srv->out, &ev);
    log_event(&ev, from, "udp");
    if (n) pl_udp_send(sock, from, srv->out, n);
}

static void conn_release(conn *c)
{
    pl_timer_cancel(c->srv->loop, &c->idle);
    c->used = false;
    c->stream = NULL;
}

static void on_conn_idle(pl_loop *loop, void *ctx)
{
    conn *c = ctx;
    /* A connection that says nothing for a while gives its slot back. */
    pl_stream_close(c->stream, true);
    conn_release(c);
}

static void on_frame(void *ctx, pl_stream *s, const uint8_t *frame, size_t len, pl_time now)
{
    conn *c = ctx;
    server *srv = c->srv;
    pl_ca_event ev;
    size_t n = pl_ca_server_handle(srv->core, now, &c->peer, frame, len, srv->out, sizeof srv->out, &ev);
    log_event(&ev, &c->peer, "tcp");
    if (n && pl_stream_send(s, srv->out, n) != PL_LOOP_OK) {
        /* A peer that does not read its answers loses the connection. */
        pl_stream_close(s, true);
        conn_release(c);
        return;
    }
    pl_timer_set(srv->loop, &c->idle, now + CONN_IDLE);
}

static void on_conn_close(void *ctx, pl_stream *s, int err)
{
    conn_release(ctx);
}

static void on_accept(void *ctx, pl_listener *l, pl_stream *accepted, const pl_addr *peer)
{
    server *srv = ctx;
    conn *c = NULL;
    for (int i = 0; i < MAX_CONNS; i++)
        if (!srv->conns[i].used) {
            c = &srv->conns[i];
            break;
        }
    if (!c) {
        /* Full: refusing a newcomer keeps the memory bounded. */
        pl_stream_close(accepted, true);
        return;
    }
    c->used = true;
    c->stream = accepted;
    c->peer = *peer;
    pl_stream_set_callbacks(accepted, on_frame, on_conn_close, c);
    pl_timer_set(srv->loop, &c->idle, pl_loop_now(srv->loop) + CONN_IDLE);
}

static void on_signal(pl_loop *loop, int fd, unsigned events, void *ctx)
{
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
    }
    pl_loop_stop(loop);
}

static int cmd_serve(int argc, char **argv)
{
    opts o;
    if (!parse_opts("serve", argc, argv, &o)) return EXIT_USAGE;
    if (!o.listen) return usage_error("serve", "--listen ADDR:PORT is required");
    pl_addr bind_addr;
    if (!pl_addr_parse(&bind_addr, o.listen, 7400)) return usage_error("serve", "bad --listen address");

    /* One server per directory: a second would hand out the same serials. */
    char lock_path[4096];
    path_in(lock_path, sizeof lock_path, o.dir, "lock");
    int lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "%s: serve: %s\n", PROG,
                lock_fd < 0 ? "cannot open the lock file" : "another parley-ca is already serving this directory");
        if (lock_fd >= 0) close(lock_fd);
        return EXIT_FAIL;
    }

    pl_identity key;
    int rc = load_key("serve", &o, &key);
    if (rc) return rc;
    pl_ca_db *db = open_db("serve", o.dir, false);
    if (!db) {
        pl_identity_wipe(&key);
        return EXIT_FAIL;
    }
    pl_ca_store store = pl_ca_db_store(db);
    pl_ca_server_config cfg;
    pl_ca_server_config_default(&cfg);
    memcpy(cfg.ca_pk, key.sign_pk, 32);
    memcpy(cfg.ca_sk, key.sign_sk, 64);
    pl_identity_wipe(&key);
    cfg.burst = (uint32_t)o.burst;
    cfg.rate_milli = (uint32_t)(o.rate * 1000.0 + 0.5);
    if (cfg.rate_milli == 0) cfg.rate_milli = 1;
    pl_ca_server_err se;
    server *srv = calloc(1, sizeof *srv);
    if (!srv) return EXIT_FAIL;
    srv->core = pl_ca_server_new(&cfg, &store, pl_mem_system(), pl_rng_system(), &se);
    memset(cfg.ca_sk, 0, sizeof cfg.ca_sk);
    if (!srv->core) {
        fprintf(stderr, "%s: serve: %s\n", PROG, pl_ca_server_strerror(se));
        return EXIT_FAIL;
    }
    srv->loop = pl_loop_new();
    if (!srv->loop) {
        fprintf(stderr, "%s: serve: cannot start the event loop\n", PROG);
        return EXIT_FAIL;
    }
    for (int i = 0; i < MAX_CONNS; i++) {
        srv->conns[i].srv = srv;
        pl_timer_init(&srv->conns[i].idle, on_conn_idle, &srv->conns[i]);
    }

    /* TCP first: with port 0 it picks the port, and UDP then takes the same. */
    pl_loop_err le;
    srv->tcp = pl_stream_listen(srv->loop, &bind_addr, on_accept, srv, &le);
    if (!srv->tcp) {
        fprintf(stderr, "%s: serve: cannot listen on %s (tcp): %s\n", PROG, o.listen, pl_loop_strerror(le));
        return EXIT_FAIL;
    }
    pl_addr local;
    pl_listener_local_addr(srv->tcp, &local);
    if (!o.no_udp) {
        srv->udp = pl_udp_open(srv->loop, &local, on_udp, srv, &le);
        if (!srv->udp) {
            fprintf(stderr, "%s: serve: cannot listen on %s (udp): %s\n", PROG, o.listen, pl_loop_strerror(le));
            return EXIT_FAIL;
        }
    }

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    srv->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (srv->sigfd < 0 || pl_loop_watch_fd(srv->loop, srv->sigfd, PL_FD_READ, on_signal, srv) != PL_LOOP_OK) {
        fprintf(stderr, "%s: serve: cannot watch signals\n", PROG);
        return EXIT_FAIL;
    }

    char text[PL_ADDR_TEXT_MAX];
    pl_addr_format(&local, text, sizeof text);
    /* Scripts wait for this line to know the port. */
    printf("listening %s %s\n", text, o.no_udp ? "tcp" : "udp+tcp");
    fflush(stdout);
    fprintf(stderr, "%s: serving %s on %s (%s)\n", PROG, o.dir, text, o.no_udp ? "tcp only" : "udp and tcp");

    pl_loop_run(srv->loop);

    fprintf(stderr, "%s: stopping\n", PROG);
    pl_loop_unwatch_fd(srv->loop, srv->sigfd);
    close(srv->sigfd);
    pl_loop_free(srv->loop);
    pl_ca_server_free(srv->core);
    pl_ca_db_close(db);
    free(srv);
    close(lock_fd);
    return 0;
}

/* ---- dispatch ---------------------------------------------------------------------------- */

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
} command;

static int cmd_help(int argc, char **argv);

static const command COMMANDS[] = {
    {"init", cmd_init, "init --dir DIR [--passphrase-file F]    create the CA key and database, print the fingerprint"},
    {"serve", cmd_serve,
     "serve --dir DIR --listen ADDR:PORT [--rate R] [--burst N] [--no-udp]\n"
     "                                          answer registrations over UDP and TCP"},
    {"list", cmd_list, "list --dir DIR [--json]                 show every account"},
    {"revoke", cmd_revoke, "revoke --dir DIR NAME                   revoke an account and its certificates"},
    {"fingerprint", cmd_fingerprint, "fingerprint --dir DIR                   print the CA key that nodes pin"},
    {"help", cmd_help, "help                                    this text"},
};

static int cmd_help(int argc, char **argv)
{
    printf("usage: %s COMMAND [options]\n\n", PROG);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) printf("  %s\n", COMMANDS[i].usage);
    printf("\nThe key passphrase, if any, comes from --passphrase-file or PARLEY_CA_PASSPHRASE.\n");
    return 0;
}

int main(int argc, char **argv)
{
    /* Everything the CA writes (key, database, WAL, lock) is for its eyes only. */
    umask(077);
    if (!pl_init()) {
        fprintf(stderr, "%s: cannot initialise the crypto library\n", PROG);
        return EXIT_FAIL;
    }
    if (argc < 2) {
        cmd_help(0, NULL);
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0) return COMMANDS[i].run(argc - 2, argv + 2);
    fprintf(stderr, "%s: unknown command '%s' (see '%s help')\n", PROG, argv[1], PROG);
    return EXIT_USAGE;
}
