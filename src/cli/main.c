/*
 * parley - the command-line client.
 *
 *   parley [--home DIR] [--json] COMMAND [args]
 *     keygen                                  make the identity key
 *     register NAME --ca ADDR:PORT --ca-key HEX
 *     renew | revoke | crl                    talk to the pinned authority again
 *     show                                    identity, certificate and status
 *     listen [--listen ADDR:PORT] [--count N]  answer secure sessions, echo messages
 *     ping ADDR:PORT --peer-key HEX [TEXT]     open a secure session, send, wait for the echo
 *     help
 *
 * Files in the home directory ($PARLEY_HOME, else ~/.parley):
 *   identity.key  the Ed25519 seed (0600, optionally sealed by a passphrase)
 *   identity.pub  the public key in hex, readable without the passphrase
 *   identity.cert the certificate from the authority
 *   ca            the pinned authority: "key HEX" and "addr ADDR:PORT"
 *   crl           the last revocation list fetched and verified
 *
 * People get one line on stderr per error, "parley: CMD: what went wrong",
 * and an exit code per kind of failure (see EXIT_* below and `parley help`);
 * with --json, stdout also carries a JSON object for machines. The protocol
 * decisions are all in ca_client.c: this file is a small blocking driver
 * that tries UDP (with the client's retransmissions) and falls back to TCP.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ca_client.h"
#include "home.h"
#include "loop.h"
#include "parley.h"
#include "sockaddr.h"

#define PROG "parley"

/* The write end of `listen`'s self-pipe: a signal handler can only write. */
static int listen_signal_fd = -1;
static void on_listen_signal(int sig)
{
    (void)sig;
    if (listen_signal_fd >= 0) {
        ssize_t n = write(listen_signal_fd, "s", 1);
        (void)n;
    }
}

/* Exit codes, one per kind of failure a script may want to act on. */
enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,        /* anything else */
    EXIT_USAGE = 2,       /* bad command line */
    EXIT_BAD_NAME = 3,    /* the name breaks the rules or is reserved */
    EXIT_NAME_TAKEN = 4,
    EXIT_UNREACHABLE = 5, /* no answer from the authority over UDP or TCP */
    EXIT_PASSPHRASE = 6,  /* wrong or missing passphrase */
    EXIT_REFUSED = 7,     /* the authority refused: proof failed, wrong key, revoked... */
    EXIT_RATE_LIMITED = 8,
    EXIT_BAD_CA = 9,      /* the answer does not verify, or the CA key does not match the pin */
    EXIT_LOCAL = 10,      /* missing or unreadable local files */
    EXIT_REVOKED = 11,    /* `crl`: our own certificate is on the list */
    EXIT_NO_DAEMON = 12,  /* no daemon answers on the control socket */
    EXIT_NOT_FOUND = 13,  /* no such user in the directory */
    EXIT_REJECTED = 14,   /* `call`: the callee declined (or refuses our calls) */
    EXIT_BUSY = 15,       /* `call`: the callee is in another call */
    EXIT_NO_ANSWER = 16,  /* `call`: nobody answered (or --timeout passed) */
    EXIT_NETWORK = 17,    /* `call`: the network failed during the call */
};

/* ---- options ------------------------------------------------------------------ */

typedef struct opts {
    const char *cmd;
    const char *home;
    const char *ca;
    const char *ca_key;
    const char *passphrase_file;
    const char *transport; /* auto, udp, tcp */
    const char *listen;    /* listen: ADDR:PORT */
    const char *peer_key;  /* ping: the callee's public key (hex) */
    const char *count;     /* listen: stop after this many messages */
    const char *timeout;   /* ping: seconds to wait */
    const char *control;   /* the daemon's control socket */
    const char *from;      /* call/answer: audio source: WAV, tone:HZ, silence, device[:NAME]; voicemail leave: a WAV */
    const char *to;        /* call/answer: audio sink: WAV, null, device[:NAME]; voicemail play: WAV or device */
    const char *duration;  /* call/answer: hang up this many seconds after the answer */
    const char *limit;     /* chat history: the last N messages */
    bool keep_unread;      /* chat history, follow: do not mark what is shown read */
    bool voicemail;        /* call: leave a voicemail if the callee declines, does not answer or is offline */
    const char *args[40];  /* conference: the names of up to 31 others */
    int nargs;
    bool json;
    bool force;
} opts;

static opts g; /* filled once in main; read-only afterwards */

/* Prints the one-line error for people (and a JSON object with --json). */
static int fail(int code, const char *kind, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s: %s\n", PROG, g.cmd ? g.cmd : "error", msg);
    if (g.json) {
        printf("{\"ok\":false,\"error\":\"%s\",\"exit\":%d,\"message\":\"", kind, code);
        for (const char *p = msg; *p; p++) {
            if (*p == '"' || *p == '\\') putchar('\\');
            if ((unsigned char)*p >= 0x20) putchar(*p);
        }
        printf("\"}\n");
    }
    return code;
}

/* ---- files in the home directory ---------------------------------------------------- */

static char home_dir[PL_HOME_PATH_MAX];

static void home_path(char *out, size_t cap, const char *file) { pl_home_path(home_dir, file, out, cap); }
static bool resolve_home(void) { return pl_home_resolve(g.home, home_dir, sizeof home_dir); }
static bool write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    return pl_file_write_atomic(path, data, len, mode);
}
static long read_file(const char *path, uint8_t *buf, size_t cap) { return pl_file_read(path, buf, cap); }
static const char *passphrase(char *buf, size_t cap, bool *bad)
{
    return pl_passphrase_read(g.passphrase_file, buf, cap, bad);
}

static int load_identity(pl_identity *id)
{
    char path[4200], pass[1024];
    bool bad;
    home_path(path, sizeof path, "identity.key");
    const char *p = passphrase(pass, sizeof pass, &bad);
    if (bad) return fail(EXIT_PASSPHRASE, "passphrase", "cannot read the passphrase file %s", g.passphrase_file);
    pl_identity_err e = pl_identity_load(id, path, p);
    memset(pass, 0, sizeof pass);
    switch (e) {
    case PL_IDENTITY_OK: return 0;
    case PL_IDENTITY_ERR_IO:
        if (access(path, F_OK) != 0)
            return fail(EXIT_LOCAL, "no_identity", "no identity at %s (run 'parley keygen' first)", path);
        return fail(EXIT_LOCAL, "io", "cannot read %s", path);
    case PL_IDENTITY_ERR_NEED_PASSPHRASE:
        return fail(EXIT_PASSPHRASE, "passphrase_needed",
                    "the identity key is protected by a passphrase (give --passphrase-file or PARLEY_PASSPHRASE)");
    case PL_IDENTITY_ERR_WRONG_PASSPHRASE:
        return fail(EXIT_PASSPHRASE, "wrong_passphrase", "wrong passphrase for %s", path);
    default: return fail(EXIT_LOCAL, "identity", "%s: %s", path, pl_identity_strerror(e));
    }
}

typedef pl_home_pin ca_pin;
static void read_pin(ca_pin *pin) { pl_home_read_pin(home_dir, pin); }
static bool write_pin(const ca_pin *pin) { return pl_home_write_pin(home_dir, pin); }

/* Works out which authority to talk to: --ca/--ca-key if given (the key must
 * match an existing pin: a changed CA key is an attack until proven
 * otherwise), else the pin. */
static int resolve_ca(ca_pin *pin, pl_addr *addr, bool require_flags)
{
    ca_pin old;
    read_pin(&old);
    *pin = old;
    if (g.ca_key) {
        uint8_t k[32];
        if (!pl_hex_decode(g.ca_key, k, 32))
            return fail(EXIT_USAGE, "usage", "--ca-key must be the 64 hex digits 'parley-ca init' printed");
        if (old.have_key && memcmp(old.key, k, 32) != 0)
            return fail(EXIT_BAD_CA, "ca_key_mismatch",
                        "--ca-key does not match the authority key pinned in %s/ca (remove that file to re-pin)",
                        home_dir);
        memcpy(pin->key, k, 32);
        pin->have_key = true;
    }
    if (g.ca) {
        snprintf(pin->addr, sizeof pin->addr, "%s", g.ca);
        pin->have_addr = true;
    }
    if (require_flags && (!g.ca || !g.ca_key) && !(pin->have_key && pin->have_addr))
        return fail(EXIT_USAGE, "usage", "give the authority with --ca ADDR:PORT --ca-key HEX");
    if (!pin->have_key || !pin->have_addr)
        return fail(EXIT_LOCAL, "no_ca", "no authority is pinned in %s (register first, or give --ca and --ca-key)",
                    home_dir);
    if (!pl_addr_parse(addr, pin->addr, 7400)) return fail(EXIT_USAGE, "usage", "bad authority address '%s'", pin->addr);
    return 0;
}

/* ---- the blocking driver around pl_ca_client ------------------------------------------- */

static pl_time mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (pl_time)ts.tv_sec * PL_SEC + (pl_time)ts.tv_nsec / 1000;
}

typedef enum { DRIVE_DONE, DRIVE_UNREACHABLE } drive_result;

static int wait_ms_until(pl_time deadline)
{
    pl_time now = mono_now();
    if (deadline == PL_TIME_NEVER) return 1000;
    if (deadline <= now) return 0;
    pl_time ms = (deadline - now + 999) / 1000;
    return ms > 60000 ? 60000 : (int)ms;
}

/* UDP: one connected socket, so the kernel filters other senders and
 * reports an ICMP port-unreachable as ECONNREFUSED. */
static drive_result drive_udp(pl_ca_client *c, const pl_addr *to, uint8_t *buf, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (!pl_sockaddr_from_addr(to, &ss, &sl)) return DRIVE_UNREACHABLE;
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return DRIVE_UNREACHABLE;
    if (connect(fd, (struct sockaddr *)&ss, sl) != 0) {
        close(fd);
        return DRIVE_UNREACHABLE;
    }
    size_t len = 0;
    pl_ca_client_status st = pl_ca_client_start(c, mono_now(), buf, cap, &len);
    static uint8_t in[PL_CA_MAX_MESSAGE];
    for (;;) {
        if (st == PL_CA_CLIENT_SEND && send(fd, buf, len, 0) < 0 && errno == ECONNREFUSED) break;
        if (st == PL_CA_CLIENT_DONE) break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, wait_ms_until(pl_ca_client_next_timeout(c)));
        if (r < 0 && errno != EINTR) break;
        if (r > 0) {
            ssize_t n = recv(fd, in, sizeof in, 0);
            if (n < 0 && errno == ECONNREFUSED) break;
            st = n < 0 ? PL_CA_CLIENT_WAIT : pl_ca_client_handle(c, mono_now(), in, (size_t)n, buf, cap, &len);
        } else {
            st = pl_ca_client_tick(c, mono_now(), buf, cap, &len);
        }
    }
    close(fd);
    if (st == PL_CA_CLIENT_DONE && pl_ca_client_result(c) != PL_CA_CLIENT_ERR_TIMEOUT) return DRIVE_DONE;
    return DRIVE_UNREACHABLE;
}

static bool write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool send_frame(int fd, const uint8_t *data, size_t len)
{
    uint8_t hdr[2] = {(uint8_t)(len >> 8), (uint8_t)len};
    return write_all(fd, hdr, 2) && write_all(fd, data, len);
}

/* TCP: u16-framed messages, as pl_stream speaks them. */
static drive_result drive_tcp(pl_ca_client *c, const pl_addr *to, uint8_t *buf, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (!pl_sockaddr_from_addr(to, &ss, &sl)) return DRIVE_UNREACHABLE;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return DRIVE_UNREACHABLE;
    if (connect(fd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS) {
        close(fd);
        return DRIVE_UNREACHABLE;
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t el = sizeof err;
    if (poll(&p, 1, 5000) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
        close(fd);
        return DRIVE_UNREACHABLE;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    static uint8_t in[2 + PL_CA_MAX_MESSAGE];
    size_t have = 0;
    size_t len = 0;
    pl_ca_client_status st = pl_ca_client_start(c, mono_now(), buf, cap, &len);
    bool broken = false;
    while (st != PL_CA_CLIENT_DONE) {
        if (st == PL_CA_CLIENT_SEND && !send_frame(fd, buf, len)) {
            broken = true;
            break;
        }
        p = (struct pollfd){.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, wait_ms_until(pl_ca_client_next_timeout(c)));
        if (r < 0 && errno != EINTR) break;
        if (r <= 0) {
            st = pl_ca_client_tick(c, mono_now(), buf, cap, &len);
            continue;
        }
        ssize_t n = recv(fd, in + have, sizeof in - have, 0);
        if (n <= 0) {
            broken = true;
            break;
        }
        have += (size_t)n;
        st = PL_CA_CLIENT_WAIT;
        /* Hand every complete frame to the client. */
        while (have >= 2 && st != PL_CA_CLIENT_DONE) {
            size_t flen = ((size_t)in[0] << 8) | in[1];
            if (have < 2 + flen) break;
            st = pl_ca_client_handle(c, mono_now(), in + 2, flen, buf, cap, &len);
            memmove(in, in + 2 + flen, have - 2 - flen);
            have -= 2 + flen;
            if (st == PL_CA_CLIENT_SEND && !send_frame(fd, buf, len)) {
                broken = true;
                break;
            }
            if (st == PL_CA_CLIENT_SEND) st = PL_CA_CLIENT_WAIT;
        }
        if (broken) break;
    }
    close(fd);
    if (!broken && st == PL_CA_CLIENT_DONE && pl_ca_client_result(c) != PL_CA_CLIENT_ERR_TIMEOUT) return DRIVE_DONE;
    return DRIVE_UNREACHABLE;
}

static uint8_t crl_buf[PL_CRL_SIZE(1u << 16)];

/* Runs one operation: UDP first (unless --transport tcp), then TCP. On
 * return the client holds the result; *used says which transport got it. */
static int run_op(pl_ca_client *c, pl_ca_client_config *cfg, const pl_addr *to, const char **used)
{
    static uint8_t buf[PL_CA_MAX_MESSAGE];
    const char *t = g.transport ? g.transport : "auto";
    if (strcmp(t, "auto") && strcmp(t, "udp") && strcmp(t, "tcp"))
        return fail(EXIT_USAGE, "usage", "--transport must be auto, udp or tcp");
    pl_ca_client_err e;
    if (strcmp(t, "tcp") != 0) {
        cfg->pad_size = PL_CA_PAD_SIZE;
        cfg->crl_request_size = PL_CA_PAD_SIZE;
        cfg->rto = 400 * PL_MSEC;
        cfg->max_tries = 3;
        if ((e = pl_ca_client_init(c, cfg)) != PL_CA_CLIENT_OK) {
            c->result = e;
            return 1;
        }
        *used = "udp";
        if (drive_udp(c, to, buf, sizeof buf) == DRIVE_DONE) return 0;
        if (strcmp(t, "udp") == 0) {
            if (pl_ca_client_result(c) == PL_CA_CLIENT_ERR_PENDING) c->result = PL_CA_CLIENT_ERR_TIMEOUT;
            return 0;
        }
    }
    /* Over TCP nothing is lost, and nobody can be reflected at: one long
     * timeout, and CRL requests padded for big chunks. */
    cfg->pad_size = PL_CA_PAD_SIZE;
    cfg->crl_request_size = 60000;
    cfg->rto = 10 * PL_SEC;
    cfg->max_tries = 1;
    if ((e = pl_ca_client_init(c, cfg)) != PL_CA_CLIENT_OK) {
        c->result = e;
        return 1;
    }
    *used = "tcp";
    drive_tcp(c, to, buf, sizeof buf);
    if (pl_ca_client_result(c) == PL_CA_CLIENT_ERR_PENDING) c->result = PL_CA_CLIENT_ERR_TIMEOUT;
    return 0;
}

/* Turns a client failure into the one-line message and exit code. */
static int report_client_error(const pl_ca_client *c, const char *name, const char *ca_addr)
{
    char norm[PL_NAME_MAX + 1];
    pl_name_err ne;
    switch (pl_ca_client_result(c)) {
    case PL_CA_CLIENT_OK: return 0;
    case PL_CA_CLIENT_ERR_BAD_NAME:
        ne = pl_name_normalize(name, norm);
        return fail(EXIT_BAD_NAME, "bad_name", "'%s' is not a valid name: %s", name,
                    ne == PL_NAME_OK ? "the authority refused it" : pl_name_strerror(ne));
    case PL_CA_CLIENT_ERR_RESERVED:
        return fail(EXIT_BAD_NAME, "reserved_name", "the name '%s' is reserved", name);
    case PL_CA_CLIENT_ERR_NAME_TAKEN:
        return fail(EXIT_NAME_TAKEN, "name_taken", "the name '%s' is already taken", name);
    case PL_CA_CLIENT_ERR_TIMEOUT:
        return fail(EXIT_UNREACHABLE, "ca_unreachable",
                    "cannot reach the signing authority at %s (no answer over UDP or TCP)", ca_addr);
    case PL_CA_CLIENT_ERR_RATE_LIMITED:
        return fail(EXIT_RATE_LIMITED, "rate_limited",
                    "the signing authority is rate limiting this address; try again in %u s",
                    (unsigned)(pl_ca_client_retry_after_ms(c) / 1000 + 1));
    case PL_CA_CLIENT_ERR_BAD_SIGNATURE:
        return fail(EXIT_REFUSED, "challenge_failed",
                    "the signing authority refused the proof of key possession (bad signature over its challenge)");
    case PL_CA_CLIENT_ERR_BAD_TOKEN:
        return fail(EXIT_REFUSED, "bad_token", "the signing authority kept refusing its own challenge (clock or path trouble)");
    case PL_CA_CLIENT_ERR_NOT_FOUND:
        return fail(EXIT_REFUSED, "not_found", "the signing authority has no account named '%s'", name);
    case PL_CA_CLIENT_ERR_WRONG_KEY:
        return fail(EXIT_REFUSED, "wrong_key", "the account '%s' belongs to a different key", name);
    case PL_CA_CLIENT_ERR_REVOKED:
        return fail(EXIT_REFUSED, "revoked", "the account '%s' has been revoked", name);
    case PL_CA_CLIENT_ERR_REFUSED:
        return fail(EXIT_REFUSED, "refused", "the signing authority refused the request: %s",
                    pl_ca_code_str((pl_ca_code)c->ca_code));
    case PL_CA_CLIENT_ERR_BAD_RESPONSE:
        return fail(EXIT_BAD_CA, "bad_response",
                    "the answer from %s does not verify under the pinned authority key", ca_addr);
    default:
        return fail(EXIT_FAIL, "client", "%s", pl_ca_client_strerror(pl_ca_client_result(c)));
    }
}

static void fmt_time(uint64_t t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- commands ------------------------------------------------------------------------------ */

static int ensure_home(void)
{
    if (mkdir(home_dir, 0700) != 0 && errno != EEXIST)
        return fail(EXIT_LOCAL, "io", "cannot create %s: %s", home_dir, strerror(errno));
    return 0;
}

static int cmd_keygen(void)
{
    int rc = ensure_home();
    if (rc) return rc;
    char path[4200], pub[4200], pass[1024], hex[65];
    bool bad;
    home_path(path, sizeof path, "identity.key");
    home_path(pub, sizeof pub, "identity.pub");
    const char *p = passphrase(pass, sizeof pass, &bad);
    if (bad) return fail(EXIT_PASSPHRASE, "passphrase", "cannot read the passphrase file %s", g.passphrase_file);
    pl_identity id;
    pl_identity_generate(&id, pl_rng_system());
    pl_identity_err e = pl_identity_save(&id, path, p, g.force);
    memset(pass, 0, sizeof pass);
    pl_hex_encode(id.sign_pk, 32, hex);
    pl_identity_wipe(&id);
    if (e == PL_IDENTITY_ERR_EXISTS)
        return fail(EXIT_LOCAL, "exists", "an identity already exists at %s (use --force to replace it)", path);
    if (e != PL_IDENTITY_OK) return fail(EXIT_LOCAL, "io", "%s: %s", path, pl_identity_strerror(e));
    char line[80];
    int n = snprintf(line, sizeof line, "%s\n", hex);
    if (!write_file(pub, line, (size_t)n, 0644)) return fail(EXIT_LOCAL, "io", "cannot write %s", pub);
    if (g.force) {
        /* A new key makes the old certificate someone else's. */
        char cert[4200];
        home_path(cert, sizeof cert, "identity.cert");
        unlink(cert);
    }
    if (g.json) printf("{\"ok\":true,\"fingerprint\":\"%s\",\"path\":\"%s\",\"sealed\":%s}\n", hex, path, p ? "true" : "false");
    else printf("identity %s\nfingerprint %s%s\n", path, hex, p ? "\n(sealed with a passphrase)" : "");
    return 0;
}

static int load_cert(pl_cert *cert, bool *present)
{
    char path[4200];
    uint8_t buf[PL_CERT_MAX_SIZE + 1];
    home_path(path, sizeof path, "identity.cert");
    long n = read_file(path, buf, sizeof buf);
    *present = n >= 0;
    if (n < 0) return 0;
    if (pl_cert_decode(cert, buf, (size_t)n) != PL_CERT_OK)
        return fail(EXIT_LOCAL, "bad_cert", "%s is not a valid certificate", path);
    return 0;
}

static int save_cert(const pl_cert *cert)
{
    char path[4200];
    uint8_t buf[PL_CERT_MAX_SIZE];
    size_t n;
    home_path(path, sizeof path, "identity.cert");
    if (pl_cert_encode(cert, buf, sizeof buf, &n) != PL_CERT_OK || !write_file(path, buf, n, 0644))
        return fail(EXIT_LOCAL, "io", "cannot write %s", path);
    return 0;
}

static void print_cert_json(const pl_cert *c, const char *transport, const char *extra_key, const char *extra_val)
{
    char hex[65];
    pl_hex_encode(c->sign_pk, 32, hex);
    printf("{\"ok\":true,\"name\":\"%s\",\"serial\":%llu,\"not_before\":%llu,\"not_after\":%llu,\"fingerprint\":\"%s\","
           "\"transport\":\"%s\"",
           c->name, (unsigned long long)c->serial, (unsigned long long)c->not_before,
           (unsigned long long)c->not_after, hex, transport);
    if (extra_key) printf(",\"%s\":\"%s\"", extra_key, extra_val);
    printf("}\n");
}

/* register and renew: the same flow, a different op. */
static int issue_cert(uint8_t op)
{
    const char *name = NULL;
    pl_cert old;
    bool have_old = false;
    int rc = load_cert(&old, &have_old);
    if (rc) return rc;
    if (op == PL_CA_OP_REGISTER) {
        if (g.nargs != 1) return fail(EXIT_USAGE, "usage", "usage: parley register NAME --ca ADDR:PORT --ca-key HEX");
        name = g.args[0];
        /* Check the name before anything else: a typo needs no network, no
         * passphrase and no authority. */
        char norm[PL_NAME_MAX + 1];
        pl_name_err ne = pl_name_normalize(name, norm);
        if (ne == PL_NAME_ERR_RESERVED) return fail(EXIT_BAD_NAME, "reserved_name", "the name '%s' is reserved", name);
        if (ne != PL_NAME_OK)
            return fail(EXIT_BAD_NAME, "bad_name", "'%s' is not a valid name: %s", name, pl_name_strerror(ne));
        if (have_old && strcmp(old.name, norm) != 0 && !g.force)
            return fail(EXIT_USAGE, "already_registered",
                        "this identity is already registered as '%s' (use --force to register another name)",
                        old.name);
    } else {
        if (!have_old) return fail(EXIT_LOCAL, "not_registered", "this identity is not registered (run 'parley register NAME')");
        name = old.name;
    }
    ca_pin pin;
    pl_addr to;
    if ((rc = resolve_ca(&pin, &to, op == PL_CA_OP_REGISTER))) return rc;
    pl_identity id;
    if ((rc = load_identity(&id))) return rc;

    pl_ca_client c;
    pl_ca_client_config cfg = {.op = op, .id = &id, .name = name, .rng = pl_rng_system()};
    memcpy(cfg.ca_pk, pin.key, 32);
    const char *used = "udp";
    rc = run_op(&c, &cfg, &to, &used);
    pl_identity_wipe(&id);
    if (rc) return report_client_error(&c, name, pin.addr);
    if (pl_ca_client_result(&c) != PL_CA_CLIENT_OK) return report_client_error(&c, name, pin.addr);
    /* Pin only now: an authority that never answered is not worth pinning. */
    if ((rc = ensure_home())) return rc;
    if (!write_pin(&pin)) return fail(EXIT_LOCAL, "io", "cannot write %s/ca", home_dir);
    const pl_cert *cert = pl_ca_client_cert(&c);
    if ((rc = save_cert(cert))) return rc;
    char until[32];
    fmt_time(cert->not_after, until, sizeof until);
    if (g.json) print_cert_json(cert, used, NULL, NULL);
    else
        printf("%s %s: serial %llu, valid until %s (via %s)\n", op == PL_CA_OP_REGISTER ? "registered" : "renewed",
               cert->name, (unsigned long long)cert->serial, until, used);
    return 0;
}

static int cmd_register(void) { return issue_cert(PL_CA_OP_REGISTER); }
static int cmd_renew(void) { return issue_cert(PL_CA_OP_RENEW); }

static int cmd_revoke(void)
{
    pl_cert cert;
    bool have = false;
    int rc = load_cert(&cert, &have);
    if (rc) return rc;
    if (!have) return fail(EXIT_LOCAL, "not_registered", "this identity is not registered");
    ca_pin pin;
    pl_addr to;
    if ((rc = resolve_ca(&pin, &to, false))) return rc;
    pl_identity id;
    if ((rc = load_identity(&id))) return rc;
    pl_ca_client c;
    pl_ca_client_config cfg = {.op = PL_CA_OP_REVOKE, .id = &id, .name = cert.name, .rng = pl_rng_system()};
    memcpy(cfg.ca_pk, pin.key, 32);
    const char *used = "udp";
    rc = run_op(&c, &cfg, &to, &used);
    pl_identity_wipe(&id);
    if (rc || pl_ca_client_result(&c) != PL_CA_CLIENT_OK) return report_client_error(&c, cert.name, pin.addr);
    if (g.json)
        printf("{\"ok\":true,\"revoked\":\"%s\",\"serial\":%llu,\"crl_number\":%llu,\"transport\":\"%s\"}\n", cert.name,
               (unsigned long long)cert.serial, (unsigned long long)pl_ca_client_crl_number(&c), used);
    else
        printf("revoked %s (every certificate of the account; revocation list number %llu)\n", cert.name,
               (unsigned long long)pl_ca_client_crl_number(&c));
    return 0;
}

static int cmd_crl(void)
{
    ca_pin pin;
    pl_addr to;
    int rc = resolve_ca(&pin, &to, false);
    if (rc) return rc;
    pl_ca_client c;
    pl_ca_client_config cfg = {.op = PL_CA_OP_CRL, .rng = pl_rng_system(), .crl_buf = crl_buf, .crl_cap = sizeof crl_buf};
    memcpy(cfg.ca_pk, pin.key, 32);
    const char *used = "udp";
    rc = run_op(&c, &cfg, &to, &used);
    if (rc || pl_ca_client_result(&c) != PL_CA_CLIENT_OK) return report_client_error(&c, "", pin.addr);
    size_t len = pl_ca_client_crl_len(&c);
    pl_crl crl;
    if (pl_crl_decode(&crl, crl_buf, len) != PL_CERT_OK) return fail(EXIT_BAD_CA, "bad_response", "bad revocation list");
    char path[4200];
    home_path(path, sizeof path, "crl");
    if (!write_file(path, crl_buf, len, 0644)) return fail(EXIT_LOCAL, "io", "cannot write %s", path);
    pl_cert cert;
    bool have = false;
    const char *status = "not registered";
    if ((rc = load_cert(&cert, &have))) return rc;
    if (have) status = pl_crl_contains(&crl, cert.serial) ? "revoked" : "not revoked";
    if (g.json)
        printf("{\"ok\":true,\"crl_number\":%llu,\"count\":%u,\"issued_at\":%llu,\"own_status\":\"%s\",\"transport\":\"%s\"}\n",
               (unsigned long long)crl.number, crl.count, (unsigned long long)crl.issued_at, status, used);
    else
        printf("revocation list %llu: %u revoked certificate%s, verified; this identity's certificate: %s\n",
               (unsigned long long)crl.number, crl.count, crl.count == 1 ? "" : "s", status);
    return have && strcmp(status, "revoked") == 0 ? EXIT_REVOKED : 0;
}

static int cmd_show(void)
{
    char path[4200], pubhex[80] = "";
    home_path(path, sizeof path, "identity.pub");
    long n = read_file(path, (uint8_t *)pubhex, sizeof pubhex - 1);
    if (n < 0) {
        char key[4200];
        home_path(key, sizeof key, "identity.key");
        if (access(key, F_OK) != 0)
            return fail(EXIT_LOCAL, "no_identity", "no identity in %s (run 'parley keygen' first)", home_dir);
        /* An older home without the .pub file: derive it from the key. */
        pl_identity id;
        int rc = load_identity(&id);
        if (rc) return rc;
        pl_hex_encode(id.sign_pk, 32, pubhex);
        pl_identity_wipe(&id);
    } else {
        pubhex[n] = 0;
        pubhex[strcspn(pubhex, "\r\n")] = 0;
    }
    uint8_t pk[32];
    if (!pl_hex_decode(pubhex, pk, 32)) return fail(EXIT_LOCAL, "bad_identity", "%s is damaged", path);
    pl_cert cert;
    bool have = false;
    int rc = load_cert(&cert, &have);
    if (rc) return rc;
    ca_pin pin;
    read_pin(&pin);
    const char *status = "not registered";
    uint64_t now = (uint64_t)time(NULL);
    static uint8_t crlbuf[sizeof crl_buf];
    if (have) {
        pl_crl crl;
        bool have_crl = false;
        home_path(path, sizeof path, "crl");
        long cl = read_file(path, crlbuf, sizeof crlbuf);
        if (cl > 0 && pin.have_key && pl_crl_decode(&crl, crlbuf, (size_t)cl) == PL_CERT_OK &&
            pl_crl_verify(&crl, pin.key) == PL_CERT_OK)
            have_crl = true;
        if (memcmp(cert.sign_pk, pk, 32) != 0) status = "certificate is for a different key";
        else if (!pin.have_key) status = "no authority pinned";
        else {
            pl_cert_err ce = pl_cert_verify(&cert, pin.key, now, have_crl ? &crl : NULL);
            status = ce == PL_CERT_OK ? "valid" : pl_cert_strerror(ce);
        }
    }
    char nb[32] = "", na[32] = "", issuer[PL_ISSUER_ID_SIZE * 2 + 1] = "", cahex[65] = "";
    if (have) {
        fmt_time(cert.not_before, nb, sizeof nb);
        fmt_time(cert.not_after, na, sizeof na);
        pl_hex_encode(cert.issuer, PL_ISSUER_ID_SIZE, issuer);
    }
    if (pin.have_key) pl_hex_encode(pin.key, 32, cahex);
    if (g.json) {
        printf("{\"ok\":true,\"fingerprint\":\"%s\",\"registered\":%s", pubhex, have ? "true" : "false");
        if (have)
            printf(",\"name\":\"%s\",\"serial\":%llu,\"not_before\":%llu,\"not_after\":%llu,\"issuer\":\"%s\"", cert.name,
                   (unsigned long long)cert.serial, (unsigned long long)cert.not_before,
                   (unsigned long long)cert.not_after, issuer);
        printf(",\"ca_key\":\"%s\",\"ca_addr\":\"%s\",\"status\":\"%s\"}\n", cahex, pin.have_addr ? pin.addr : "",
               status);
    } else {
        printf("fingerprint  %s\n", pubhex);
        if (have) {
            printf("name         %s\nserial       %llu\nvalid        %s .. %s\nissuer       %s\n", cert.name,
                   (unsigned long long)cert.serial, nb, na, issuer);
        }
        if (pin.have_key) printf("authority    %s at %s\n", cahex, pin.have_addr ? pin.addr : "?");
        printf("status       %s\n", status);
    }
    return 0;
}


/* ---- secure sessions: listen and ping ------------------------------------------
 * These two commands run the real session layer over real UDP with the
 * registered identity: `listen` answers any user certified by the pinned
 * authority and echoes what it hears; `ping` opens a session to a user
 * whose public key it is given, sends one message and waits for the echo. */

#define DEFAULT_LISTEN "127.0.0.1:7400"
#define PING_TIMEOUT (10 * PL_SEC)

typedef struct session_app {
    pl_loop *loop;
    pl_udp *sock;
    pl_sec *sec;
    pl_timer timer;
    pl_crl crl;
    uint8_t crl_bytes[PL_CRL_SIZE(1u << 12)];
    /* listen */
    long messages, max_messages;
    /* ping */
    pl_sec_peer *peer;
    const char *text;
    pl_time started, established_at, sent_at, answered_at;
    char reply[PL_SEC_MAX_PAYLOAD + 1];
    char peer_name[PL_NAME_MAX + 1];
    bool failed;
} session_app;

static void app_rearm(session_app *a)
{
    pl_time t = pl_sec_next_timeout(a->sec);
    if (t == PL_TIME_NEVER) pl_timer_cancel(a->loop, &a->timer);
    else pl_timer_set(a->loop, &a->timer, t);
}

static void app_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    session_app *a = ctx;
    pl_udp_send(a->sock, to, data, len);
}

static void app_timer(pl_loop *loop, void *ctx)
{
    session_app *a = ctx;
    pl_sec_tick(a->sec, pl_loop_now(loop));
    app_rearm(a);
}

static void app_recv(void *ctx, pl_udp *sock, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    session_app *a = ctx;
    (void)sock;
    pl_sec_receive(a->sec, from, data, len, now);
    app_rearm(a);
}

static void listen_event(void *ctx, const pl_sec_event *ev)
{
    session_app *a = ctx;
    char from[PL_ADDR_TEXT_MAX];
    const char *name = ev->cert ? ev->cert->name : "?";
    pl_addr_format(ev->from, from, sizeof from);
    if (ev->type == PL_SEC_EV_ESTABLISHED) {
        if (g.json) printf("{\"event\":\"session\",\"peer\":\"%s\",\"from\":\"%s\"}\n", name, from);
        else printf("session with %s at %s\n", name, from);
    } else if (ev->type == PL_SEC_EV_DATA) {
        char text[PL_SEC_MAX_PAYLOAD + 1];
        size_t n = ev->len;
        memcpy(text, ev->data, n);
        text[n] = 0;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)text[i] < 0x20 || text[i] == '"' || text[i] == '\\') text[i] = '?';
        if (g.json) printf("{\"event\":\"message\",\"peer\":\"%s\",\"text\":\"%s\"}\n", name, text);
        else printf("%s: %s\n", name, text);
        pl_sec_send(a->sec, ev->peer, ev->data, ev->len, ev->now);
        if (a->max_messages && ++a->messages >= a->max_messages) pl_loop_stop(a->loop);
    }
    fflush(stdout);
}

static void ping_event(void *ctx, const pl_sec_event *ev)
{
    session_app *a = ctx;
    if (ev->peer != a->peer) return;
    if (ev->type == PL_SEC_EV_ESTABLISHED) {
        a->established_at = ev->now;
        snprintf(a->peer_name, sizeof a->peer_name, "%s", ev->cert ? ev->cert->name : "?");
        a->sent_at = ev->now;
        pl_sec_send(a->sec, a->peer, (const uint8_t *)a->text, strlen(a->text), ev->now);
    } else if (ev->type == PL_SEC_EV_DATA) {
        memcpy(a->reply, ev->data, ev->len);
        a->reply[ev->len] = 0;
        a->answered_at = ev->now;
        pl_loop_stop(a->loop);
    } else if (ev->type == PL_SEC_EV_FAILED || ev->type == PL_SEC_EV_REVOKED) {
        a->failed = true;
        pl_loop_stop(a->loop);
    }
}

static void ping_deadline(pl_loop *loop, void *ctx)
{
    session_app *a = ctx;
    a->failed = true;
    pl_loop_stop(loop);
}

/* Loads identity, certificate, pinned CA key and the last CRL, then makes
 * the endpoint and its socket. */
static int session_setup(session_app *a, pl_identity *id, const char *bind_text, bool accept,
                         void (*on_event)(void *, const pl_sec_event *))
{
    int rc = load_identity(id);
    if (rc) return rc;
    pl_cert cert;
    bool present;
    rc = load_cert(&cert, &present);
    if (rc) return rc;
    if (!present) return fail(EXIT_LOCAL, "no_cert", "no certificate yet (run 'parley register NAME' first)");
    ca_pin pin;
    read_pin(&pin);
    if (!pin.have_key) return fail(EXIT_LOCAL, "no_ca", "no pinned authority (run 'parley register' first)");
    uint8_t cert_bytes[PL_CERT_MAX_SIZE];
    size_t cert_len;
    pl_cert_encode(&cert, cert_bytes, sizeof cert_bytes, &cert_len);

    a->loop = pl_loop_new();
    if (!a->loop) return fail(EXIT_FAIL, "system", "cannot create the event loop");
    pl_addr bind;
    if (!pl_addr_parse(&bind, bind_text, 0)) return fail(EXIT_USAGE, "usage", "'%s' is not ADDR:PORT", bind_text);
    pl_loop_err lerr;
    a->sock = pl_udp_open(a->loop, &bind, app_recv, a, &lerr);
    if (!a->sock) return fail(EXIT_FAIL, "socket", "cannot listen on %s: %s", bind_text, pl_loop_strerror(lerr));

    pl_sec_config cfg = {.identity = id, .cert = cert_bytes, .cert_len = cert_len, .rng = pl_rng_system(),
                         .accept_incoming = accept};
    memcpy(cfg.ca_pk, pin.key, 32);
    pl_sec_io io = {a, app_send, on_event};
    pl_sec_err serr = pl_sec_new(&a->sec, &cfg, &io);
    if (serr) return fail(EXIT_LOCAL, "session", "%s (does the certificate match the key?)", pl_sec_strerror(serr));
    char path[4200];
    home_path(path, sizeof path, "crl");
    long n = read_file(path, a->crl_bytes, sizeof a->crl_bytes);
    if (n > 0 && pl_crl_decode(&a->crl, a->crl_bytes, (size_t)n) == PL_CERT_OK && pl_crl_verify(&a->crl, pin.key) == PL_CERT_OK)
        pl_sec_set_crl(a->sec, &a->crl, pl_loop_now(a->loop));
    pl_timer_init(&a->timer, app_timer, a);
    return 0;
}

static void session_teardown(session_app *a, pl_identity *id)
{
    if (a->sec) pl_sec_free(a->sec);
    if (a->loop) pl_loop_free(a->loop);
    pl_identity_wipe(id);
}

static void on_stop_signal(pl_loop *loop, int fd, unsigned events, void *ctx)
{
    (void)events;
    (void)ctx;
    uint8_t buf[128];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    pl_loop_stop(loop);
}

static int cmd_listen(void)
{
    static session_app a;
    pl_identity id;
    const char *bind_text = g.listen ? g.listen : DEFAULT_LISTEN;
    if (g.count) a.max_messages = strtol(g.count, NULL, 10);
    int rc = session_setup(&a, &id, bind_text, true, listen_event);
    if (rc) {
        session_teardown(&a, &id);
        return rc;
    }
    /* SIGINT and SIGTERM stop the loop cleanly through a self-pipe. */
    int sig_pipe[2];
    if (pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) == 0) {
        pl_loop_watch_fd(a.loop, sig_pipe[0], PL_FD_READ, on_stop_signal, NULL);
        listen_signal_fd = sig_pipe[1];
        signal(SIGINT, on_listen_signal);
        signal(SIGTERM, on_listen_signal);
    }
    pl_addr local;
    char text[PL_ADDR_TEXT_MAX];
    pl_udp_local_addr(a.sock, &local);
    if (g.json) printf("{\"event\":\"listening\",\"addr\":\"%s\"}\n", pl_addr_format(&local, text, sizeof text));
    else printf("listening on %s\n", pl_addr_format(&local, text, sizeof text));
    fflush(stdout);
    pl_loop_run(a.loop);
    session_teardown(&a, &id);
    return EXIT_OK;
}

static int cmd_ping(void)
{
    static session_app a;
    pl_identity id;
    uint8_t peer_pk[32];
    pl_addr to;
    if (g.nargs < 1 || !pl_addr_parse(&to, g.args[0], 7400))
        return fail(EXIT_USAGE, "usage", "usage: parley ping ADDR:PORT --peer-key HEX [TEXT]");
    if (!g.peer_key || !pl_hex_decode(g.peer_key, peer_pk, 32))
        return fail(EXIT_USAGE, "usage", "--peer-key needs the callee's public key (64 hex digits, 'parley show')");
    a.text = g.nargs >= 2 ? g.args[1] : "ping";
    if (strlen(a.text) > PL_SEC_MAX_PAYLOAD) return fail(EXIT_USAGE, "usage", "the message is too long");
    int rc = session_setup(&a, &id, to.family == PL_AF_INET6 ? "[::]:0" : "0.0.0.0:0", false, ping_event);
    if (rc) {
        session_teardown(&a, &id);
        return rc;
    }
    a.started = pl_loop_now(a.loop);
    pl_sec_err serr = pl_sec_connect(a.sec, peer_pk, &to, a.started, &a.peer);
    if (serr) {
        session_teardown(&a, &id);
        return fail(EXIT_USAGE, "bad_key", "cannot open a session: %s", pl_sec_strerror(serr));
    }
    app_rearm(&a);
    pl_timer deadline;
    pl_timer_init(&deadline, ping_deadline, &a);
    pl_time timeout = PING_TIMEOUT;
    if (g.timeout) timeout = (pl_time)(strtod(g.timeout, NULL) * (double)PL_SEC);
    pl_timer_set(a.loop, &deadline, a.started + timeout);
    pl_loop_run(a.loop);
    pl_timer_cancel(a.loop, &deadline);
    char addr_text[PL_ADDR_TEXT_MAX];
    pl_addr_format(&to, addr_text, sizeof addr_text);
    if (a.failed || !a.answered_at) {
        pl_sec_stats st = pl_sec_get_stats(a.sec);
        session_teardown(&a, &id);
        if (st.drop_cert)
            return fail(EXIT_REFUSED, "refused", "%s answered with a certificate we refuse: %s", addr_text,
                        pl_cert_strerror((pl_cert_err)st.last_cert_err));
        return fail(EXIT_UNREACHABLE, "unreachable", "no secure session with %s (no answer in %.1f s)", addr_text,
                    (double)timeout / PL_SEC);
    }
    double hs_ms = (double)(a.established_at - a.started) / 1000.0;
    double rtt_ms = (double)(a.answered_at - a.sent_at) / 1000.0;
    const char *cipher = pl_sec_peer_cipher(a.peer) == PL_SEC_CIPHER_AES256GCM ? "AES-256-GCM" : "ChaCha20-Poly1305";
    if (g.json)
        printf("{\"ok\":true,\"peer\":\"%s\",\"addr\":\"%s\",\"handshake_ms\":%.3f,\"rtt_ms\":%.3f,"
               "\"cipher\":\"%s\",\"reply\":\"%s\"}\n", a.peer_name, addr_text, hs_ms, rtt_ms, cipher,
               strchr(a.reply, '"') ? "?" : a.reply);
    else
        printf("secure session with %s at %s: handshake %.3f ms, echo round trip %.3f ms, %s\nreply: %s\n",
               a.peer_name, addr_text, hs_ms, rtt_ms, cipher, a.reply);
    session_teardown(&a, &id);
    return EXIT_OK;
}

/* ---- talking to the daemon ------------------------------------------------------------
 * The daemon (parleyd) listens on a Unix socket in the home directory; a
 * request and its reply are one JSON object per line. */

#define CONTROL_TIMEOUT_MS 15000
/* Longer for a request that does a lot of work before it answers (a
 * three-minute voicemail is encoded and stored first). */
static int control_timeout_ms = CONTROL_TIMEOUT_MS;

/* Connects to the daemon and sends {"cmd": name, ...extra} (extra is
 * consumed). Returns the connection, or -1 after printing the error (with
 * *rc set). */
static int exit_for(const char *kind);
static int control_send(const char *name, cJSON *extra, int *rc)
{
    char path[PL_HOME_PATH_MAX + 32];
    if (g.control) snprintf(path, sizeof path, "%s", g.control);
    else home_path(path, sizeof path, "control.sock");
    cJSON *req = extra ? extra : cJSON_CreateObject();
    cJSON_AddStringToObject(req, "cmd", name);
    char *line = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) {
        cJSON_free(line);
        *rc = fail(EXIT_USAGE, "usage", "the control socket path %s is too long (use --control)", path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0) close(fd);
        free(line);
        *rc = fail(EXIT_NO_DAEMON, "no_daemon", "the daemon is not running (nothing answers at %s; start parleyd)", path);
        return -1;
    }
    bool sent = line && write_all(fd, (const uint8_t *)line, strlen(line)) && write_all(fd, (const uint8_t *)"\n", 1);
    free(line);
    if (!sent) {
        close(fd);
        *rc = fail(EXIT_NO_DAEMON, "no_reply", "the daemon at %s did not answer", path);
        return -1;
    }
    return fd;
}

/* A connection the daemon keeps writing lines to (a follow). */
typedef struct control_lines {
    int fd;
    size_t have;
    char buf[1 << 16];
} control_lines;

enum { LINE_CLOSED = -1, LINE_NONE = 0, LINE_GOT = 1 };

/* The next line, parsed into *out (NULL when it is not JSON): LINE_GOT;
 * LINE_NONE when nothing came within wait_ms or a signal came first;
 * LINE_CLOSED when the daemon closed the connection. */
static int control_next_line(control_lines *l, int wait_ms, cJSON **out)
{
    *out = NULL;
    for (;;) {
        char *nl = memchr(l->buf, '\n', l->have);
        if (nl) {
            *nl = 0;
            *out = cJSON_Parse(l->buf);
            size_t used = (size_t)(nl - l->buf) + 1;
            memmove(l->buf, nl + 1, l->have - used);
            l->have -= used;
            return LINE_GOT;
        }
        if (l->have == sizeof l->buf - 1) l->have = 0; /* a line too long: dropped */
        struct pollfd p = {.fd = l->fd, .events = POLLIN};
        int r = poll(&p, 1, wait_ms);
        if (r < 0 && errno != EINTR) return LINE_CLOSED;
        if (r <= 0) return LINE_NONE;
        ssize_t n = recv(l->fd, l->buf + l->have, sizeof l->buf - 1 - l->have, 0);
        if (n <= 0) return LINE_CLOSED;
        l->have += (size_t)n;
    }
}

/* A reply that says ok: itself. Otherwise NULL after printing the error
 * (with *rc set); the reply is consumed either way. */
static cJSON *reply_ok(cJSON *reply, int *rc)
{
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(reply, "ok");
    if (!cJSON_IsTrue(ok)) {
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(reply, "message");
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(reply, "error");
        const char *k = cJSON_IsString(kind) ? kind->valuestring : "error";
        *rc = fail(exit_for(k), k, "%s", cJSON_IsString(msg) ? msg->valuestring : "the daemon refused");
        cJSON_Delete(reply);
        return NULL;
    }
    *rc = 0;
    return reply;
}

/* Sends {"cmd": name, ...extra} and returns the parsed reply, or NULL after
 * printing the error (with *rc set). */
static cJSON *control_call(const char *name, cJSON *extra, int *rc)
{
    int fd = control_send(name, extra, rc);
    if (fd < 0) return NULL;
    static char buf[1 << 20];
    size_t have = 0;
    while (have < sizeof buf - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, control_timeout_ms) != 1) break;
        ssize_t n = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (n <= 0) break;
        have += (size_t)n;
        if (memchr(buf, '\n', have)) break;
    }
    close(fd);
    buf[have] = 0;
    cJSON *reply = have ? cJSON_Parse(buf) : NULL;
    if (!reply) {
        *rc = fail(EXIT_NO_DAEMON, "no_reply", "the daemon did not answer");
        return NULL;
    }
    return reply_ok(reply, rc);
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double jnum(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* With --json the daemon's reply is the output, as it came. */
static void print_json(const cJSON *reply)
{
    char *text = cJSON_PrintUnformatted(reply);
    if (text) printf("%s\n", text);
    free(text);
}

/* status: the port mapping and the proxy (a node's). */
static void print_reach(const cJSON *r)
{
    const cJSON *pm = cJSON_GetObjectItemCaseSensitive(r, "portmap");
    if (pm && strncmp(jstr(pm, "state"), "mapped", 6) == 0)
        printf("portmap      %s %s, lease %.0f s (%.0f s left)%s\n", jstr(pm, "protocol"), jstr(pm, "external"),
               jnum(pm, "lease_s"), jnum(pm, "expires_in_s"),
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pm, "published")) ? ", published" : ", not published (private)");
    else if (pm && *jstr(pm, "reason"))
        printf("portmap      %s: %s%s%s%s\n", jstr(pm, "state"), jstr(pm, "reason"), *jstr(pm, "detail") ? " (" : "",
               jstr(pm, "detail"), *jstr(pm, "detail") ? ")" : "");
    else if (pm)
        printf("portmap      %s\n", jstr(pm, "state"));
    const cJSON *px = cJSON_GetObjectItemCaseSensitive(r, "proxy");
    if (px) {
        printf("proxy        %s%s, %s\n", jstr(px, "url"), cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(px, "only")) ? " (only)" : "",
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(px, "in_use")) ? "in use" : "not in use");
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(px, "last_error");
        if (e)
            printf("proxy error  %s: %s (%.0f s ago)\n", jstr(e, "target"), jstr(e, "message"), jnum(e, "ago_s"));
    }
}

static int cmd_status(void)
{
    int rc;
    cJSON *r = control_call("status", NULL, &rc);
    if (!r) return rc;
    if (g.json) {
        print_json(r);
        cJSON_Delete(r);
        return 0;
    }
    const cJSON *online = cJSON_GetObjectItemCaseSensitive(r, "online");
    printf("name         %s\n", jstr(r, "name"));
    printf("role         %s\n", jstr(r, "role"));
    printf("state        %s (%s)\n", cJSON_IsTrue(online) ? "online" : "offline", jstr(r, "state"));
    const cJSON *sn = cJSON_GetObjectItemCaseSensitive(r, "supernode");
    if (sn)
        printf("supernode    %s at %s over %s\n", jstr(sn, "name"), jstr(sn, "addr"), jstr(r, "transport"));
    if (*jstr(r, "observed")) printf("seen as      %s\n", jstr(r, "observed"));
    const cJSON *sb = cJSON_GetObjectItemCaseSensitive(r, "standby");
    const cJSON *e;
    cJSON_ArrayForEach(e, sb) printf("standby      %.16s... at %s\n", jstr(e, "fingerprint"), jstr(e, "addr"));
    printf("nat          %s\n", jstr(r, "nat"));
    printf("listening    %s\n", jstr(r, "listen"));
    print_reach(r);
    const cJSON *sv = cJSON_GetObjectItemCaseSensitive(r, "serving");
    if (sv) {
        printf("clients      %.0f of at most %.0f (%.0f qualified to serve)\n", jnum(sv, "clients"),
               jnum(sv, "max_clients"), jnum(sv, "qualified"));
        printf("supernodes   %.0f alive of %.0f known (gossip)\n", jnum(sv, "supernodes_alive"),
               jnum(sv, "supernodes_known"));
        printf("records      %.0f held as a replica\n", jnum(sv, "records"));
        const cJSON *mb = cJSON_GetObjectItemCaseSensitive(sv, "mailbox");
        if (mb)
            printf("mailbox      %.0f messages for %.0f users (%.0f bytes), %.0f deletes kept\n", jnum(mb, "messages"),
                   jnum(mb, "boxes"), jnum(mb, "bytes"), jnum(mb, "tombstones"));
    }
    const cJSON *chat = cJSON_GetObjectItemCaseSensitive(r, "chat");
    const cJSON *vm = cJSON_GetObjectItemCaseSensitive(r, "voicemail");
    if (chat) printf("chat         %.0f unread, %.0f sent not yet delivered\n", jnum(chat, "unread"), jnum(chat, "pending"));
    if (vm) printf("voicemail    %.0f waiting (%.0f new)\n", jnum(vm, "kept"), jnum(vm, "new"));
    cJSON_Delete(r);
    return 0;
}

static int cmd_clients(void)
{
    int rc;
    cJSON *r = control_call("clients", NULL, &rc);
    if (!r) return rc;
    if (g.json) {
        print_json(r);
    } else {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(r, "clients"))
            printf("%-32s %s %.16s...\n", jstr(e, "name"), jstr(e, "addr"), jstr(e, "fingerprint"));
    }
    cJSON_Delete(r);
    return 0;
}

/* Maps the daemon's error kinds to exit codes. */
static int exit_for(const char *kind)
{
    if (strcmp(kind, "not_found") == 0) return EXIT_NOT_FOUND;
    if (strcmp(kind, "bad_name") == 0) return EXIT_BAD_NAME;
    if (strcmp(kind, "unreachable") == 0) return EXIT_UNREACHABLE;
    if (strcmp(kind, "bad_request") == 0 || strcmp(kind, "bad_status") == 0) return EXIT_USAGE;
    if (strcmp(kind, "too_long") == 0 || strcmp(kind, "bad_text") == 0) return EXIT_USAGE;
    if (strcmp(kind, "local") == 0) return EXIT_LOCAL;
    if (strcmp(kind, "quota") == 0) return EXIT_REFUSED;
    return EXIT_FAIL;
}

static int cmd_lookup(void)
{
    if (g.nargs != 1) return fail(EXIT_USAGE, "usage", "usage: parley lookup NAME");
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "name", g.args[0]);
    int rc;
    cJSON *r = control_call("lookup", req, &rc);
    if (!r) return rc;
    if (g.json) {
        print_json(r);
        cJSON_Delete(r);
        return 0;
    }
    printf("name         %s\n", jstr(r, "name"));
    printf("presence     %s%s%s%s\n", jstr(r, "presence"), *jstr(r, "status") ? " (" : "", jstr(r, "status"),
           *jstr(r, "status") ? ")" : "");
    printf("fingerprint  %s (%s)\n", jstr(r, "fingerprint"), jstr(r, "key"));
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(r, "supernodes"))
        printf("supernode    %.16s... at %s\n", jstr(e, "fingerprint"), jstr(e, "addr"));
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(r, "candidates"))
        printf("reachable    %s %s (%s)\n", jstr(e, "addr"), jstr(e, "transport"), jstr(e, "type"));
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "private"))) printf("reachable    only through relays (private)\n");
    const cJSON *nat = cJSON_GetObjectItemCaseSensitive(r, "nat");
    printf("nat          mapping %s, filtering %s\n", jstr(nat, "mapping"), jstr(nat, "filtering"));
    cJSON_Delete(r);
    return 0;
}

static int cmd_contacts(void)
{
    const char *op = g.nargs >= 1 ? g.args[0] : "list";
    if (strcmp(op, "list") && strcmp(op, "add") && strcmp(op, "remove"))
        return fail(EXIT_USAGE, "usage", "usage: parley contacts [list | add NAME | remove NAME]");
    if (strcmp(op, "list") != 0 && g.nargs != 2)
        return fail(EXIT_USAGE, "usage", "usage: parley contacts %s NAME", op);
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "op", op);
    if (g.nargs == 2) cJSON_AddStringToObject(req, "name", g.args[1]);
    int rc;
    cJSON *r = control_call("contacts", req, &rc);
    if (!r) return rc;
    if (g.json) {
        print_json(r);
    } else if (strcmp(op, "list") == 0) {
        const cJSON *e;
        int n = 0;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(r, "contacts")) {
            printf("%-32s %-8s %s%s\n", jstr(e, "name"), jstr(e, "presence"), jstr(e, "status"),
                   cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "key_changed")) ? "  [KEY CHANGED]" : "");
            n++;
        }
        if (n == 0) printf("no contacts yet (parley contacts add NAME)\n");
    } else {
        printf("%s %s\n", strcmp(op, "add") == 0 ? "added" : "removed", g.args[1]);
    }
    cJSON_Delete(r);
    return 0;
}

static int cmd_presence(void)
{
    if (g.nargs < 1 || (strcmp(g.args[0], "online") && strcmp(g.args[0], "away")))
        return fail(EXIT_USAGE, "usage", "usage: parley presence online|away [STATUS TEXT]");
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "state", g.args[0]);
    if (g.nargs >= 2) cJSON_AddStringToObject(req, "status", g.args[1]);
    int rc;
    cJSON *r = control_call("presence", req, &rc);
    if (!r) return rc;
    if (g.json) print_json(r);
    else printf("presence %s%s%s\n", g.args[0], g.nargs >= 2 ? ": " : "", g.nargs >= 2 ? g.args[1] : "");
    cJSON_Delete(r);
    return 0;
}

static int cmd_stop(void)
{
    int rc;
    cJSON *r = control_call("stop", NULL, &rc);
    if (!r) return rc;
    if (g.json) print_json(r);
    else printf("the daemon is stopping\n");
    cJSON_Delete(r);
    return 0;
}

/* ---- calls ----------------------------------------------------------------------------------- */

static volatile sig_atomic_t call_interrupted;
static void on_call_signal(int sig)
{
    (void)sig;
    call_interrupted = 1;
}

/* Adds the audio options to a request. */
static void add_audio(cJSON *req)
{
    if (g.from) cJSON_AddStringToObject(req, "from", g.from);
    if (g.to) cJSON_AddStringToObject(req, "to", g.to);
    if (g.duration) cJSON_AddNumberToObject(req, "duration", atof(g.duration));
}

/* Asks the daemon for call id's record now and again whenever the call
 * changes, on one connection (l; any earlier one is closed). */
static void call_follow_close(control_lines *l)
{
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
}

static bool call_follow_open(control_lines *l, uint32_t id, int *rc)
{
    call_follow_close(l);
    cJSON *req = cJSON_CreateObject();
    cJSON_AddNumberToObject(req, "id", id);
    cJSON_AddBoolToObject(req, "follow", true);
    l->have = 0;
    l->fd = control_send("calls", req, rc);
    return l->fd >= 0;
}

static int exit_for_end(const char *end)
{
    if (strcmp(end, "hangup") == 0) return EXIT_OK;
    if (strcmp(end, "rejected") == 0) return EXIT_REJECTED;
    if (strcmp(end, "busy") == 0) return EXIT_BUSY;
    if (strcmp(end, "no_answer") == 0 || strcmp(end, "cancelled") == 0) return EXIT_NO_ANSWER;
    if (strcmp(end, "unreachable") == 0) return EXIT_UNREACHABLE;
    if (strcmp(end, "network_failure") == 0) return EXIT_NETWORK;
    if (strcmp(end, "not_found") == 0) return EXIT_NOT_FOUND;
    return EXIT_FAIL;
}

/* The ends `--voicemail` leaves a message for (the daemon decides; this
 * only says so when it was not asked). */
static bool voicemail_end(const char *end)
{
    return strcmp(end, "rejected") == 0 || strcmp(end, "no_answer") == 0 || strcmp(end, "unreachable") == 0;
}

static void print_path(const cJSON *c)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(c, "path");
    if (p)
        printf("path         %s over %s via %s%s%s\n", jstr(p, "kind"), jstr(p, "transport"), jstr(p, "via"),
               *jstr(p, "proxy") ? " through the proxy " : "", jstr(p, "proxy_url"));
}

/* Follows a call until it ends, telling people what happens; returns the
 * exit code its end calls for. The daemon sends the call's record whenever
 * it changes; between records we look at Ctrl-C and --timeout at least
 * once a second. */
static int follow_call(uint32_t id, bool outgoing)
{
    signal(SIGINT, on_call_signal);
    signal(SIGTERM, on_call_signal);
    char last_state[64] = "";
    bool hung_up = false, rang = false, was_answered = false, answered = false;
    bool said_end = false, said_leaving = false, vm_stopped = false, leaving_vm = false;
    pl_time started = mono_now();
    double timeout = g.timeout ? atof(g.timeout) : 0;
    static control_lines l = {.fd = -1};
    int rc;
    if (!call_follow_open(&l, id, &rc)) return rc;
    for (;;) {
        double left_s = timeout - (double)(mono_now() - started) / PL_SEC;
        int wait_ms = timeout > 0 && !answered && left_s < 1 ? (int)(left_s * 1000) + 1 : 1000;
        if (wait_ms < 1) wait_ms = 1;
        cJSON *reply = NULL;
        int got = control_next_line(&l, wait_ms, &reply);
        if (got == LINE_CLOSED) {
            call_follow_close(&l);
            return fail(EXIT_NO_DAEMON, "no_reply", "the daemon stopped answering during call %u", id);
        }
        if (got == LINE_GOT && reply && !reply_ok(reply, &rc)) {
            call_follow_close(&l);
            return rc;
        }
        cJSON *c = reply ? cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(reply, "calls"), 0) : NULL;
        if (reply && !c) {
            cJSON_Delete(reply);
            call_follow_close(&l);
            return fail(EXIT_FAIL, "gone", "the daemon no longer knows call %u", id);
        }
        if (c) {
            const char *state = jstr(c, "state");
            answered = cJSON_GetObjectItemCaseSensitive(c, "answered_after_ms") != NULL;
            leaving_vm = false;
            if (strcmp(state, "ended") == 0) {
                const cJSON *merged = cJSON_GetObjectItemCaseSensitive(c, "merged_into");
                if (cJSON_IsNumber(merged)) {
                    /* We were calling each other: the other's call is the one. */
                    id = (uint32_t)merged->valuedouble;
                    cJSON_Delete(reply);
                    if (!call_follow_open(&l, id, &rc)) return rc;
                    continue;
                }
                int code = exit_for_end(jstr(c, "end"));
                const cJSON *vm = cJSON_GetObjectItemCaseSensitive(c, "voicemail");
                const char *vm_state = jstr(vm, "state");
                if (!g.json && !said_end) {
                    said_end = true;
                    const cJSON *st = cJSON_GetObjectItemCaseSensitive(c, "stats");
                    if (answered)
                        printf("call ended: %s (%s) after %.1f s; received %.0f packets, lost %.1f%%, concealed %.1f%%\n",
                               jstr(c, "reason"), cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "ended_here")) ? "here" : "by the other side",
                               jnum(c, "duration_s"), jnum(st, "packets_received"), 100 * jnum(st, "loss_rx"),
                               100 * jnum(st, "concealed_fraction"));
                    else
                        printf("call ended: %s\n", jstr(c, "reason"));
                }
                if (strcmp(vm_state, "leaving") == 0) {
                    /* The call's audio goes to the callee's voicemail; Ctrl-C
                     * (or `parley hangup`) ends the message, which is kept. */
                    if (!g.json && !said_leaving) {
                        said_leaving = true;
                        printf("leaving a voicemail for %s (Ctrl-C ends it)\n", jstr(c, "peer"));
                    }
                    fflush(stdout);
                    leaving_vm = true;
                } else {
                    if (vm) code = strcmp(vm_state, "failed") == 0 ? exit_for(jstr(vm, "error")) : EXIT_OK;
                    if (g.json) {
                        print_json(c);
                    } else if (strcmp(vm_state, "left") == 0) {
                        printf("voicemail left for %s: %.1f s, stored on %.0f of %.0f replicas (id %.8s)\n", jstr(c, "peer"),
                               jnum(vm, "duration_s"), jnum(vm, "replicas"), jnum(vm, "of"), jstr(vm, "id"));
                    } else if (strcmp(vm_state, "queued") == 0) {
                        printf("voicemail for %s recorded (%.1f s); it will be stored once this node is online (id %.8s)\n",
                               jstr(c, "peer"), jnum(vm, "duration_s"), jstr(vm, "id"));
                    } else if (vm) {
                        fail(code, jstr(vm, "error"), "no voicemail left for %s: %s", jstr(c, "peer"), jstr(vm, "message"));
                    } else if (outgoing && !answered && voicemail_end(jstr(c, "end"))) {
                        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "voicemail_asked")))
                            printf("(to leave a message: parley call %s --voicemail, or parley voicemail leave %s --from FILE.wav)\n",
                                   jstr(c, "peer"), jstr(c, "peer"));
                    } else if (outgoing && strcmp(jstr(c, "end"), "busy") == 0 &&
                               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "voicemail_asked"))) {
                        printf("no voicemail: %s is in another call and can be called again\n", jstr(c, "peer"));
                    }
                    fflush(stdout);
                    cJSON_Delete(reply);
                    call_follow_close(&l);
                    signal(SIGINT, SIG_DFL);
                    signal(SIGTERM, SIG_DFL);
                    return code;
                }
            } else {
                /* The callee's phone rang (or answered at once): said once,
                 * even if the answer came before we looked. */
                if (!g.json && !rang && outgoing && cJSON_GetObjectItemCaseSensitive(c, "dial_to_ringing_ms")) {
                    rang = true;
                    printf("ringing %s (%.0f ms after dialing)\n", jstr(c, "peer"), jnum(c, "dial_to_ringing_ms"));
                }
                if (!g.json && strcmp(state, last_state) != 0) {
                    if (strcmp(state, "active") == 0 && !was_answered) {
                        was_answered = true;
                        if (outgoing) printf("answered by %s after %.0f ms\n", jstr(c, "peer"), jnum(c, "answered_after_ms"));
                        else printf("connected with %s\n", jstr(c, "peer"));
                        printf("safety number %s\n", jstr(c, "safety_number"));
                        print_path(c);
                    } else if (strcmp(state, "active") == 0) printf("resumed\n");
                    else if (strcmp(state, "on hold") == 0) printf("on hold\n");
                    fflush(stdout);
                    snprintf(last_state, sizeof last_state, "%s", state);
                }
            }
        }
        cJSON_Delete(reply);
        if (leaving_vm) {
            /* Ctrl-C ends the message, which is kept. */
            if (call_interrupted && !vm_stopped) {
                vm_stopped = true;
                cJSON *req = cJSON_CreateObject();
                cJSON_AddNumberToObject(req, "id", id);
                cJSON *r = control_call("hangup", req, &rc);
                if (r) cJSON_Delete(r);
            }
            continue;
        }
        bool too_long = timeout > 0 && !answered && (double)(mono_now() - started) / PL_SEC > timeout;
        if ((call_interrupted || too_long) && !hung_up) {
            hung_up = true;
            cJSON *req = cJSON_CreateObject();
            cJSON_AddNumberToObject(req, "id", id);
            /* Our own ring timeout counts as no answer (for --voicemail). */
            if (too_long && !call_interrupted) cJSON_AddBoolToObject(req, "gave_up", true);
            cJSON *r = control_call("hangup", req, &rc);
            if (r) cJSON_Delete(r);
        }
    }
}

static int cmd_call(void)
{
    if (g.nargs != 1)
        return fail(EXIT_USAGE, "usage",
                    "usage: parley call NAME [--from WAV|--tone HZ|--silence|--device] [--to WAV|--null|--device] "
                    "[--duration S] [--timeout S] [--voicemail]");
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "name", g.args[0]);
    add_audio(req);
    if (g.voicemail) cJSON_AddBoolToObject(req, "voicemail", true);
    int rc;
    cJSON *r = control_call("call", req, &rc);
    if (!r) return rc;
    uint32_t id = (uint32_t)jnum(r, "id");
    cJSON_Delete(r);
    if (!g.json) {
        printf("calling %s (call %u)\n", g.args[0], id);
        fflush(stdout);
    }
    return follow_call(id, true);
}

static int cmd_answer(void)
{
    cJSON *req = cJSON_CreateObject();
    if (g.nargs >= 1) cJSON_AddNumberToObject(req, "id", atoi(g.args[0]));
    add_audio(req);
    int rc;
    cJSON *r = control_call("answer", req, &rc);
    if (!r) return rc;
    uint32_t id = (uint32_t)jnum(r, "id");
    cJSON_Delete(r);
    if (!g.json) printf("answered call %u\n", id);
    fflush(stdout);
    return EXIT_OK;
}

/* reject, hangup, hold, resume, mute, unmute [ID] */
static int call_action(const char *cmd, const char *done)
{
    cJSON *req = cJSON_CreateObject();
    if (g.nargs >= 1) cJSON_AddNumberToObject(req, "id", atoi(g.args[0]));
    int rc;
    cJSON *r = control_call(cmd, req, &rc);
    if (!r) return rc;
    if (g.json) print_json(r);
    else printf("call %.0f %s\n", jnum(r, "id"), done);
    cJSON_Delete(r);
    return EXIT_OK;
}
static int cmd_reject(void) { return call_action("reject", "rejected"); }
static int cmd_hangup(void) { return call_action("hangup", "hung up"); }
static int cmd_hold(void) { return call_action("hold", "on hold"); }
static int cmd_resume(void) { return call_action("resume", "resumed"); }
static int cmd_mute(void) { return call_action("mute", "muted"); }
static int cmd_unmute(void) { return call_action("unmute", "unmuted"); }

static void print_conference(const cJSON *conf);

static int cmd_calls(void)
{
    int rc;
    cJSON *r = control_call("calls", NULL, &rc);
    if (!r) return rc;
    if (g.json) {
        print_json(r);
        cJSON_Delete(r);
        return 0;
    }
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(r, "calls")) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(c, "stats");
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(c, "path");
        printf("call %.0f  %s %s  %s%s%s%s\n", jnum(c, "id"), strcmp(jstr(c, "direction"), "outgoing") ? "from" : "to",
               jstr(c, "peer"), jstr(c, "state"), *jstr(c, "reason") ? ": " : "", jstr(c, "reason"),
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "muted")) ? " (muted)" : "");
        if (p)
            printf("  path      %s, %s, via %s%s%s\n", jstr(p, "kind"), jstr(p, "transport"), jstr(p, "via"),
                   *jstr(p, "proxy") ? ", through the proxy " : "", jstr(p, "proxy_url"));
        if (cJSON_GetObjectItemCaseSensitive(st, "rtt_ms")) printf("  rtt       %.1f ms\n", jnum(st, "rtt_ms"));
        printf("  loss      %.1f%% in, %.1f%% out\n", 100 * jnum(st, "loss_rx"), 100 * jnum(st, "loss_tx"));
        printf("  jitter    %.1f ms in, %.1f ms out\n", jnum(st, "jitter_rx_ms"), jnum(st, "jitter_tx_ms"));
        printf("  bitrate   %.1f kbit/s\n", jnum(st, "bitrate") / 1000);
        printf("  concealed %.0f ms (%.1f%%)\n", jnum(st, "concealed_ms"), 100 * jnum(st, "concealed_fraction"));
        if (*jstr(c, "safety_number")) printf("  safety    %s\n", jstr(c, "safety_number"));
        n++;
    }
    if (n == 0) printf("no calls\n");
    const cJSON *conf = cJSON_GetObjectItemCaseSensitive(r, "conference");
    if (conf && strcmp(jstr(conf, "role"), "none") != 0) print_conference(conf);
    cJSON_Delete(r);
    return 0;
}

/* ---- chat and voicemail ------------------------------------------------------------------------ */

static void print_time(double t)
{
    time_t s = (time_t)t;
    struct tm tm;
    char buf[32];
    localtime_r(&s, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    fputs(buf, stdout);
}

/* One message of a history, for people. */
static void print_message(const cJSON *m, const char *me, bool mark_new)
{
    bool out = strcmp(jstr(m, "dir"), "out") == 0;
    const char *state = jstr(m, "state");
    print_time(jnum(m, out ? "at" : "sent_at"));
    printf("  %s: %s", out ? me : jstr(m, "peer"), jstr(m, "text"));
    if (out) printf("  [%s]", strcmp(state, "failed") == 0 ? "FAILED" : state);
    else if (mark_new && strcmp(state, "new") == 0) printf("  [new]");
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "late"))) printf("  (late)");
    putchar('\n');
}

/* The text of `chat send`: the arguments after the name, joined by spaces. */
static const char *chat_text(char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = 0;
    for (int i = 2; i < g.nargs; i++) {
        int n = snprintf(buf + len, cap - len, "%s%s", i > 2 ? " " : "", g.args[i]);
        if (n < 0 || (size_t)n >= cap - len) return NULL;
        len += (size_t)n;
    }
    return buf;
}

static volatile sig_atomic_t follow_stop;
static void on_follow_signal(int sig)
{
    (void)sig;
    follow_stop = 1;
}

static void print_event(const cJSON *e)
{
    const char *kind = jstr(e, "event");
    const char *peer = jstr(e, "peer");
    if (strcmp(kind, "message") == 0) {
        print_message(e, "", false);
    } else if (strcmp(kind, "sent") == 0) {
        print_time(jnum(e, "at"));
        printf("  to %s: %s\n", peer, jstr(e, "text"));
    } else if (strcmp(kind, "stored") == 0) {
        printf("  -- #%.0f is in %s's mailbox\n", jnum(e, "seq"), peer);
    } else if (strcmp(kind, "delivered") == 0) {
        printf("  -- #%.0f delivered to %s\n", jnum(e, "seq"), peer);
    } else if (strcmp(kind, "read") == 0) {
        printf("  -- %s read up to #%.0f\n", peer, jnum(e, "seq"));
    } else if (strcmp(kind, "failed") == 0) {
        printf("  -- #%.0f NOT delivered to %s (neither directly nor through the mailbox)\n", jnum(e, "seq"), peer);
    } else if (strcmp(kind, "gap") == 0) {
        printf("  -- messages #%.0f..#%.0f from %s did not come in time\n", jnum(e, "seq"), jnum(e, "to"), peer);
    } else if (strcmp(kind, "voicemail") == 0) {
        printf("  -- voicemail from %s (%.1f s): parley voicemail play %.8s\n", peer, jnum(e, "duration_s"),
               jstr(e, "id"));
    }
    fflush(stdout);
}

/* `chat follow`: the control connection stays open and the daemon writes
 * one event per line until we go (SIGINT, SIGTERM, or the daemon stops). */
static int chat_follow(void)
{
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "op", "follow");
    if (g.nargs >= 2) cJSON_AddStringToObject(req, "name", g.args[1]);
    if (g.keep_unread) cJSON_AddBoolToObject(req, "mark_read", false);
    int rc = EXIT_OK;
    static control_lines l;
    l.fd = control_send("chat", req, &rc);
    l.have = 0;
    if (l.fd < 0) return rc;
    struct sigaction sig = {.sa_handler = on_follow_signal};
    sigaction(SIGINT, &sig, NULL);
    sigaction(SIGTERM, &sig, NULL);
    bool first = true;
    while (!follow_stop) {
        cJSON *e;
        int got = control_next_line(&l, 500, &e);
        if (got == LINE_CLOSED) break;
        if (got == LINE_NONE) continue;
        if (e && first) {
            first = false;
            if (!reply_ok(e, &rc)) {
                close(l.fd);
                return rc;
            }
            if (!g.json) {
                printf("following %s (Ctrl-C to stop)\n",
                       strcmp(jstr(e, "following"), "*") == 0 ? "every conversation" : jstr(e, "following"));
                fflush(stdout);
            }
        } else if (e) {
            if (g.json) {
                char *text = cJSON_PrintUnformatted(e);
                if (text) printf("%s\n", text);
                free(text);
                fflush(stdout);
            } else {
                print_event(e);
            }
        }
        cJSON_Delete(e);
    }
    close(l.fd);
    return rc;
}

static int cmd_chat(void)
{
    const char *op = g.nargs >= 1 ? g.args[0] : "list";
    static const char *usage = "usage: parley chat send NAME TEXT | list | history NAME [--limit N] | follow [NAME]";
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "op", op);
    char text[4096];
    if (strcmp(op, "send") == 0) {
        if (g.nargs < 3) {
            cJSON_Delete(req);
            return fail(EXIT_USAGE, "usage", "%s", usage);
        }
        if (!chat_text(text, sizeof text)) {
            cJSON_Delete(req);
            return fail(EXIT_USAGE, "too_long", "the text is too long; a chat message holds at most 640 bytes");
        }
        cJSON_AddStringToObject(req, "name", g.args[1]);
        cJSON_AddStringToObject(req, "text", text);
    } else if (strcmp(op, "history") == 0 || strcmp(op, "read") == 0) {
        if (g.nargs != 2) {
            cJSON_Delete(req);
            return fail(EXIT_USAGE, "usage", "%s", usage);
        }
        cJSON_AddStringToObject(req, "name", g.args[1]);
        if (g.limit) {
            char *end;
            long n = strtol(g.limit, &end, 10);
            if (*end || n < 1) {
                cJSON_Delete(req);
                return fail(EXIT_USAGE, "usage", "--limit wants a positive number");
            }
            cJSON_AddNumberToObject(req, "limit", (double)n);
        }
        if (g.keep_unread) cJSON_AddBoolToObject(req, "mark_read", false);
    } else if (strcmp(op, "follow") == 0) {
        cJSON_Delete(req);
        if (g.nargs > 2) return fail(EXIT_USAGE, "usage", "%s", usage);
        return chat_follow();
    } else if (strcmp(op, "list") != 0) {
        cJSON_Delete(req);
        return fail(EXIT_USAGE, "usage", "%s", usage);
    }
    int rc;
    cJSON *r = control_call("chat", req, &rc);
    if (!r) return rc;
    if (g.json) {
        print_json(r);
    } else if (strcmp(op, "send") == 0) {
        printf("sent to %s (#%.0f, %s)\n", jstr(r, "peer"), jnum(r, "seq"),
               strcmp(jstr(r, "path"), "direct") == 0 ? "directly" : "into the mailbox");
    } else if (strcmp(op, "history") == 0) {
        const cJSON *m;
        int n = 0;
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(r, "messages")) {
            print_message(m, jstr(r, "me"), true);
            n++;
        }
        if (!n) printf("no messages with %s yet\n", jstr(r, "peer"));
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "more")))
            printf("(older messages not shown: too many for one reply)\n");
    } else if (strcmp(op, "list") == 0) {
        const cJSON *c;
        int n = 0;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(r, "conversations")) {
            const cJSON *last = cJSON_GetObjectItemCaseSensitive(c, "last");
            bool out = strcmp(jstr(last, "dir"), "out") == 0;
            printf("%-20s %3.0f unread  ", jstr(c, "peer"), jnum(c, "unread"));
            print_time(jnum(last, out ? "at" : "sent_at"));
            printf("  %s%.60s%s\n", out ? "you: " : "", jstr(last, "text"), strlen(jstr(last, "text")) > 60 ? "..." : "");
            n++;
        }
        if (!n) printf("no conversations yet (parley chat send NAME TEXT)\n");
    }
    cJSON_Delete(r);
    return EXIT_OK;
}

/* A path for the daemon, which does not run in our directory. */
static const char *absolute(const char *path, char *buf, size_t cap)
{
    if (path[0] == '/') return path;
    char cwd[PL_HOME_PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return NULL;
    int n = snprintf(buf, cap, "%s/%s", cwd, path);
    return n > 0 && (size_t)n < cap ? buf : NULL;
}

static int cmd_voicemail(void)
{
    const char *op = g.nargs >= 1 ? g.args[0] : "list";
    static const char *usage = "usage: parley voicemail leave NAME --from FILE.wav | list | play ID [--to FILE.wav|device] "
                               "| delete ID";
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "op", op);
    char path[PL_HOME_PATH_MAX + 64];
    if (strcmp(op, "leave") == 0) {
        if (g.nargs != 2 || !g.from) {
            cJSON_Delete(req);
            return fail(EXIT_USAGE, "usage", "%s", usage);
        }
        const char *from = absolute(g.from, path, sizeof path);
        if (!from || access(from, R_OK) != 0) {
            cJSON_Delete(req);
            return fail(EXIT_LOCAL, "local", "cannot read %s: %s", g.from, from ? strerror(errno) : "path too long");
        }
        cJSON_AddStringToObject(req, "name", g.args[1]);
        cJSON_AddStringToObject(req, "from", from);
        control_timeout_ms = 120000;
    } else if (strcmp(op, "play") == 0 || strcmp(op, "delete") == 0) {
        if (g.nargs != 2) {
            cJSON_Delete(req);
            return fail(EXIT_USAGE, "usage", "%s", usage);
        }
        cJSON_AddStringToObject(req, "id", g.args[1]);
        if (strcmp(op, "play") == 0) {
            const char *to = g.to ? g.to : "device";
            if (strcmp(to, "device") != 0 && strncmp(to, "device:", 7) != 0) to = absolute(to, path, sizeof path);
            if (!to) {
                cJSON_Delete(req);
                return fail(EXIT_LOCAL, "local", "the path %s is too long", g.to);
            }
            cJSON_AddStringToObject(req, "to", to);
        }
    } else if (strcmp(op, "list") != 0) {
        cJSON_Delete(req);
        return fail(EXIT_USAGE, "usage", "%s", usage);
    }
    int rc;
    cJSON *r = control_call("voicemail", req, &rc);
    if (!r) return rc;
    if (g.json) {
        print_json(r);
    } else if (strcmp(op, "leave") == 0) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "queued")))
            printf("voicemail for %s recorded; it will be stored once this node is online (id %.8s)\n", jstr(r, "to"),
                   jstr(r, "id"));
        else
            printf("voicemail for %s: %.1f s (%.0f bytes), stored on %.0f of %.0f replicas (id %.8s)\n", jstr(r, "to"),
                   jnum(r, "duration_s"), jnum(r, "bytes"), jnum(r, "replicas"), jnum(r, "of"), jstr(r, "id"));
    } else if (strcmp(op, "list") == 0) {
        const cJSON *v;
        int n = 0;
        cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(r, "voicemail")) {
            printf("%.8s  %-20s ", jstr(v, "id"), jstr(v, "from"));
            print_time(jnum(v, "sent_at"));
            printf("  %5.1f s%s\n", jnum(v, "duration_s"),
                   cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "heard")) ? "" : "  [new]");
            n++;
        }
        if (!n) printf("no voicemail\n");
    } else if (strcmp(op, "play") == 0) {
        printf("%s voicemail from %s (%.1f s) %s %s\n",
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "playing")) ? "playing" : "played", jstr(r, "from"),
               jnum(r, "duration_s"), cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "playing")) ? "on" : "to",
               jstr(r, "to"));
    } else {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "pending")))
            printf("deleted voicemail %.8s here; the store will be told (it did not confirm yet)\n", jstr(r, "id"));
        else
            printf("deleted voicemail %.8s (%.0f of %.0f replicas keep the delete)\n", jstr(r, "id"),
                   jnum(r, "replicas"), jnum(r, "of"));
    }
    cJSON_Delete(r);
    return EXIT_OK;
}

static int cmd_mailbox(void)
{
    const char *op = g.nargs >= 1 ? g.args[0] : "";
    cJSON *req = cJSON_CreateObject();
    char path[PL_HOME_PATH_MAX + 64];
    if (strcmp(op, "held") == 0 && g.nargs == 2) {
        cJSON_AddStringToObject(req, "op", "held");
        cJSON_AddStringToObject(req, "name", g.args[1]);
    } else if (strcmp(op, "dump") == 0 && g.nargs == 2 && absolute(g.args[1], path, sizeof path)) {
        cJSON_AddStringToObject(req, "op", "dump");
        cJSON_AddStringToObject(req, "path", absolute(g.args[1], path, sizeof path));
    } else {
        cJSON_Delete(req);
        return fail(EXIT_USAGE, "usage", "usage: parley mailbox held NAME | dump FILE   (a supernode's operator)");
    }
    int rc;
    cJSON *r = control_call("mailbox", req, &rc);
    if (!r) return rc;
    if (g.json) {
        print_json(r);
    } else if (strcmp(op, "dump") == 0) {
        printf("wrote %.0f byte strings (%.0f bytes) to %s\n", jnum(r, "strings"), jnum(r, "bytes"), jstr(r, "path"));
    } else {
        printf("%s: %.0f messages (%.0f parts, %.0f bytes), %.0f deletes kept; this supernode is %sa replica\n",
               jstr(r, "name"), jnum(r, "messages"), jnum(r, "parts"), jnum(r, "bytes"), jnum(r, "tombstones"),
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "replica")) ? "" : "not ");
        const cJSON *e;
        printf("replicas:");
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(r, "replicas")) printf(" %s", jstr(e, "name"));
        printf("\n");
    }
    cJSON_Delete(r);
    return EXIT_OK;
}

/* ---- conferences ------------------------------------------------------------------------------ */

/* The roster, the host and its successor, and each leg's figures. */
static void print_conference(const cJSON *conf)
{
    const char *role = jstr(conf, "role");
    if (strcmp(role, "none") == 0) {
        if (*jstr(conf, "last_end")) printf("no conference (the last one: %s)\n", jstr(conf, "last_end"));
        else printf("no conference\n");
        return;
    }
    printf("conference (%s), %.0f s: host %s, successor %s%s\n", role, jnum(conf, "duration_s"), jstr(conf, "host"),
           *jstr(conf, "successor") ? jstr(conf, "successor") : "none",
           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(conf, "handing_over")) ? " (handing over)" : "");
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(conf, "members")) {
        const cJSON *rep = cJSON_GetObjectItemCaseSensitive(m, "report");
        const cJSON *leg = cJSON_GetObjectItemCaseSensitive(m, "leg");
        const char *tag = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "host"))        ? "host"
                          : cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "successor")) ? "successor"
                                                                                           : "";
        printf("  %-20s %-9s %-10s %s nat, rtt %.0f ms%s\n", jstr(m, "name"), tag, jstr(m, "state"), jstr(rep, "nat"),
               jnum(rep, "rtt_ms"), cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "self")) ? "  (you)" : "");
        if (leg)
            printf("  %-20s leg: %s, rtt %.1f ms, loss %.1f%% in / %.1f%% out, %.1f kbit/s, concealed %.1f%%\n", "",
                   *jstr(leg, "path") ? jstr(leg, "path") : "no path", jnum(leg, "rtt_ms"), 100 * jnum(leg, "loss_rx"),
                   100 * jnum(leg, "loss_tx"), jnum(leg, "bitrate") / 1000, 100 * jnum(leg, "concealed_fraction"));
    }
}

static volatile sig_atomic_t conf_interrupted;
static void on_conf_signal(int sig)
{
    (void)sig;
    conf_interrupted = 1;
}

/* Follows the conference we started until it is over for us: who joins
 * and leaves, who hosts. Ctrl-C or --duration leaves it. */
static int follow_conference(void)
{
    signal(SIGINT, on_conf_signal);
    signal(SIGTERM, on_conf_signal);
    pl_time started = mono_now();
    double duration = g.duration ? atof(g.duration) : 0;
    bool left = false;
    char host[64] = "", seen[4096] = ",";
    cJSON *last = NULL;
    for (;;) {
        int rc;
        cJSON *r = control_call("conference", NULL, &rc);
        if (!r) {
            cJSON_Delete(last);
            return rc;
        }
        const cJSON *conf = cJSON_GetObjectItemCaseSensitive(r, "conference");
        if (strcmp(jstr(conf, "role"), "none") == 0) {
            if (g.json) print_json(last ? last : r);
            else printf("conference over: %s\n", *jstr(conf, "last_end") ? jstr(conf, "last_end") : "ended");
            cJSON_Delete(r);
            cJSON_Delete(last);
            signal(SIGINT, SIG_DFL);
            signal(SIGTERM, SIG_DFL);
            return EXIT_OK;
        }
        if (!g.json) {
            if (strcmp(host, jstr(conf, "host")) != 0 && *jstr(conf, "host")) {
                snprintf(host, sizeof host, "%s", jstr(conf, "host"));
                printf("host %s (successor %s)\n", host, *jstr(conf, "successor") ? jstr(conf, "successor") : "none");
            }
            /* Who is connected now, against who was. */
            char now_in[4096] = ",";
            const cJSON *m;
            cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(conf, "members")) {
                if (strcmp(jstr(m, "state"), "connected") != 0 || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "self")))
                    continue;
                char item[80];
                snprintf(item, sizeof item, "%s,", jstr(m, "name"));
                if (strlen(now_in) + strlen(item) < sizeof now_in) strcat(now_in, item);
                char probe[82];
                snprintf(probe, sizeof probe, ",%s", item);
                if (!strstr(seen, probe)) printf("joined %s\n", jstr(m, "name"));
            }
            for (char *p = seen + 1; *p;) {
                char *comma = strchr(p, ',');
                if (!comma) break;
                char name[80];
                snprintf(name, sizeof name, ",%.*s,", (int)(comma - p), p);
                if (!strstr(now_in, name)) printf("left %.*s\n", (int)(comma - p), p);
                p = comma + 1;
            }
            snprintf(seen, sizeof seen, "%s", now_in);
            fflush(stdout);
        }
        cJSON_Delete(last);
        last = r;
        bool due = duration > 0 && (double)(mono_now() - started) / PL_SEC >= duration;
        if ((conf_interrupted || due) && !left) {
            left = true;
            cJSON *req = cJSON_CreateObject();
            cJSON_AddStringToObject(req, "op", "leave");
            cJSON *x = control_call("conference", req, &rc);
            if (x) cJSON_Delete(x);
            if (!g.json) printf("leaving\n");
        }
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static int cmd_conference(void)
{
    const char *op = g.nargs >= 1 ? g.args[0] : "show";
    cJSON *req = cJSON_CreateObject();
    int rc;
    if (strcmp(op, "show") == 0 && g.nargs <= 1) {
        cJSON_AddStringToObject(req, "op", "show");
    } else if (strcmp(op, "add") == 0) {
        if (g.nargs != 2) {
            cJSON_Delete(req);
            return fail(EXIT_USAGE, "usage", "usage: parley conference add NAME");
        }
        cJSON_AddStringToObject(req, "op", "add");
        cJSON_AddStringToObject(req, "name", g.args[1]);
    } else if (strcmp(op, "leave") == 0 && g.nargs == 1) {
        cJSON_AddStringToObject(req, "op", "leave");
    } else {
        cJSON_AddStringToObject(req, "op", "start");
        cJSON *arr = cJSON_AddArrayToObject(req, "names");
        for (int i = 0; i < g.nargs; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(g.args[i]));
        if (g.from) cJSON_AddStringToObject(req, "from", g.from);
        if (g.to) cJSON_AddStringToObject(req, "to", g.to);
        cJSON *r = control_call("conference", req, &rc);
        if (!r) return rc;
        cJSON_Delete(r);
        if (!g.json) {
            printf("conference: calling");
            for (int i = 0; i < g.nargs; i++) printf(" %s", g.args[i]);
            printf("\n");
            fflush(stdout);
        }
        return follow_conference();
    }
    cJSON *r = control_call("conference", req, &rc);
    if (!r) return rc;
    if (g.json) print_json(r);
    else if (strcmp(op, "add") == 0) printf("adding %s (%s)\n", g.args[1], strcmp(jstr(cJSON_GetObjectItemCaseSensitive(r, "conference"), "role"), "participant") == 0 ? "asked the host" : "calling");
    else if (strcmp(op, "leave") == 0) printf("leaving the conference\n");
    else print_conference(cJSON_GetObjectItemCaseSensitive(r, "conference"));
    cJSON_Delete(r);
    return EXIT_OK;
}

typedef struct command {
    const char *name;
    int (*run)(void);
    const char *usage;
} command;

static int cmd_help(void);

static const command COMMANDS[] = {
    {"keygen", cmd_keygen, "keygen [--force]                          make the identity key"},
    {"register", cmd_register, "register NAME --ca ADDR:PORT --ca-key HEX  register NAME with the authority (pins its key)"},
    {"renew", cmd_renew, "renew                                     get a fresh certificate"},
    {"revoke", cmd_revoke, "revoke                                    revoke this identity's account"},
    {"show", cmd_show, "show                                      identity, certificate and status"},
    {"crl", cmd_crl, "crl                                       fetch and verify the revocation list"},
    {"listen", cmd_listen, "listen [--listen ADDR:PORT] [--count N]  answer secure sessions and echo messages"},
    {"ping", cmd_ping, "ping ADDR:PORT --peer-key HEX [TEXT] [--timeout S]  secure session to a user, send, await the echo"},
    {"status", cmd_status, "status                                    the daemon: role, supernode, address, online"},
    {"clients", cmd_clients, "clients                                   a supernode's attached nodes"},
    {"lookup", cmd_lookup, "lookup NAME                               find a user in the directory (verified record)"},
    {"contacts", cmd_contacts, "contacts [list | add NAME | remove NAME]  contacts and their presence"},
    {"presence", cmd_presence, "presence online|away [TEXT]               set your presence and status text"},
    {"call", cmd_call, "call NAME [--from WAV|--tone HZ|--silence|--device] [--to WAV|--null|--device]\n"
                       "       [--duration S] [--timeout S]            call a user by name; waits for the end\n"
                       "       [--voicemail]                           declined, no answer or offline: the audio\n"
                       "                                               becomes a voicemail (Ctrl-C ends it)"},
    {"answer", cmd_answer, "answer [ID] [--from ...] [--to ...]       answer the ringing call"},
    {"reject", cmd_reject, "reject [ID]                               decline the ringing call"},
    {"hangup", cmd_hangup, "hangup [ID]                               end the call"},
    {"hold", cmd_hold, "hold [ID] | resume [ID]                   put the call on hold, take it off"},
    {"resume", cmd_resume, NULL},
    {"mute", cmd_mute, "mute [ID] | unmute [ID]                   stop sending our voice, or send it again"},
    {"unmute", cmd_unmute, NULL},
    {"calls", cmd_calls, "calls                                     calls and their live statistics"},
    {"chat", cmd_chat, "chat send NAME TEXT | list | history NAME [--limit N] | follow [NAME]\n"
                       "                                            chat: send, conversations, history, new messages;\n"
                       "                                            what is shown is marked read (--keep-unread: not)"},
    {"voicemail", cmd_voicemail, "voicemail leave NAME --from FILE.wav | list | play ID [--to FILE.wav|device] | delete ID"},
    {"mailbox", cmd_mailbox, "mailbox held NAME | dump FILE             a supernode's share of the mailbox (operators)"},
    {"conference", cmd_conference, "conference NAME NAME... [--from ...] [--to ...] [--duration S]\n"
                                   "                                            start a conference (you host) and follow it\n"
                                   "  conference add NAME | leave               add someone (a participant asks the host), leave\n"
                                   "  conference                                the roster: host, successor, each leg's figures"},
    {"stop", cmd_stop, "stop                                      stop the daemon"},
    {"help", cmd_help, "help                                      this text"},
};

static int cmd_help(void)
{
    printf("usage: %s [--home DIR] [--json] COMMAND [options]\n\n", PROG);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (COMMANDS[i].usage) printf("  %s\n", COMMANDS[i].usage);
    printf("\noptions: --home DIR (default $PARLEY_HOME or ~/.parley), --json, --passphrase-file F\n"
           "         (or PARLEY_PASSPHRASE), --transport auto|udp|tcp, --ca ADDR:PORT, --ca-key HEX, --force\n"
           "exit codes: 0 ok, 1 other, 2 usage, 3 bad name, 4 name taken, 5 authority unreachable,\n"
           "            6 passphrase, 7 refused by the authority, 8 rate limited, 9 authority does not\n"
           "            verify, 10 local files, 11 own certificate revoked, 12 no daemon running,\n"
           "            13 no such user; calls: 5 unreachable, 14 rejected, 15 busy, 16 no answer,\n"
           "            17 network failure\n"
           "the daemon: parleyd --home DIR [--role node|supernode] (see README.md); --control PATH\n");
    return 0;
}

int main(int argc, char **argv)
{
    umask(077);
    if (!pl_init()) {
        fprintf(stderr, "%s: cannot initialise the crypto library\n", PROG);
        return EXIT_FAIL;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (strcmp(a, "--json") == 0) g.json = true;
        else if (strcmp(a, "--force") == 0) g.force = true;
        else if (strcmp(a, "--home") == 0) slot = &g.home;
        else if (strcmp(a, "--ca") == 0) slot = &g.ca;
        else if (strcmp(a, "--ca-key") == 0) slot = &g.ca_key;
        else if (strcmp(a, "--passphrase-file") == 0) slot = &g.passphrase_file;
        else if (strcmp(a, "--transport") == 0) slot = &g.transport;
        else if (strcmp(a, "--listen") == 0) slot = &g.listen;
        else if (strcmp(a, "--peer-key") == 0) slot = &g.peer_key;
        else if (strcmp(a, "--count") == 0) slot = &g.count;
        else if (strcmp(a, "--timeout") == 0) slot = &g.timeout;
        else if (strcmp(a, "--control") == 0) slot = &g.control;
        else if (strcmp(a, "--from") == 0) slot = &g.from;
        else if (strcmp(a, "--to") == 0) slot = &g.to;
        else if (strcmp(a, "--duration") == 0) slot = &g.duration;
        else if (strcmp(a, "--tone") == 0) {
            if (i + 1 >= argc) return fail(EXIT_USAGE, "usage", "--tone needs a frequency in Hz");
            static char tone[64];
            snprintf(tone, sizeof tone, "tone:%s", argv[++i]);
            g.from = tone;
        } else if (strcmp(a, "--silence") == 0) g.from = "silence";
        else if (strcmp(a, "--null") == 0) g.to = "null";
        else if (strcmp(a, "--device") == 0) {
            /* The sound card both ways (a --from or --to given too wins). */
            if (!g.from) g.from = "device";
            if (!g.to) g.to = "device";
        }
        else if (strcmp(a, "--limit") == 0) slot = &g.limit;
        else if (strcmp(a, "--keep-unread") == 0) g.keep_unread = true;
        else if (strcmp(a, "--voicemail") == 0) g.voicemail = true;
        else if (a[0] == '-' && a[1] == '-') return fail(EXIT_USAGE, "usage", "unknown option '%s' (see 'parley help')", a);
        else if (!g.cmd) g.cmd = a;
        else if (g.nargs < (int)(sizeof g.args / sizeof g.args[0])) g.args[g.nargs++] = a;
        else return fail(EXIT_USAGE, "usage", "too many arguments");
        if (slot) {
            if (i + 1 >= argc) return fail(EXIT_USAGE, "usage", "%s needs a value", a);
            *slot = argv[++i];
        }
    }
    if (!g.cmd) {
        cmd_help();
        return EXIT_USAGE;
    }
    if (!resolve_home()) return fail(EXIT_LOCAL, "no_home", "set HOME, PARLEY_HOME or --home");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(g.cmd, COMMANDS[i].name) == 0) return COMMANDS[i].run();
    return fail(EXIT_USAGE, "usage", "unknown command '%s' (see 'parley help')", g.cmd);
}
