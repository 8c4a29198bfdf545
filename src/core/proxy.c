/*
 * proxy.c - HTTP CONNECT and SOCKS5 client handshakes, sans I/O.
 *
 * Each reply is collected in c->in until it is whole (HTTP: the blank line
 * that ends the header block; SOCKS5: the exact size its first bytes
 * announce), never past its bound, and only then judged. Bytes after the
 * last reply are not taken: they are the tunnel's.
 */
#include "proxy.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

enum { ST_HTTP_REPLY = 1, ST_SOCKS_METHOD, ST_SOCKS_AUTH, ST_SOCKS_CONNECT, ST_DONE, ST_FAILED };

#define SOCKS_VERSION 5
#define SOCKS_AUTH_VERSION 1 /* RFC 1929's sub-negotiation */
#define SOCKS_METHOD_NONE 0x00
#define SOCKS_METHOD_USERPASS 0x02
#define SOCKS_METHOD_NO_ACCEPTABLE 0xFF
#define SOCKS_CMD_CONNECT 1
#define SOCKS_ATYP_IPV4 1
#define SOCKS_ATYP_DOMAIN 3
#define SOCKS_ATYP_IPV6 4

const char *pl_proxy_strerror(pl_proxy_err err)
{
    switch (err) {
    case PL_PROXY_OK: return "ok";
    case PL_PROXY_ERR_CONFIG: return "bad proxy configuration";
    case PL_PROXY_ERR_REFUSED: return "the proxy refused to connect to the target";
    case PL_PROXY_ERR_AUTH_REQUIRED: return "the proxy requires authentication";
    case PL_PROXY_ERR_AUTH_FAILED: return "the proxy rejected the credentials";
    case PL_PROXY_ERR_TARGET: return "the proxy could not reach the target";
    case PL_PROXY_ERR_UNSUPPORTED: return "the proxy does not support the request";
    case PL_PROXY_ERR_FAILED: return "the proxy reported a failure";
    case PL_PROXY_ERR_BAD_REPLY: return "bad reply from the proxy";
    case PL_PROXY_ERR_CLOSED: return "the proxy closed the connection during the handshake";
    case PL_PROXY_ERR_TIMEOUT: return "the proxy handshake timed out";
    case PL_PROXY_ERR_CONNECT: return "cannot connect to the proxy";
    }
    return "unknown error";
}

const char *pl_proxy_kind_name(pl_proxy_kind kind)
{
    switch (kind) {
    case PL_PROXY_HTTP: return "http";
    case PL_PROXY_SOCKS5: return "socks5";
    default: return "none";
    }
}

/* ---- configuration ------------------------------------------------------------ */

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes [s, s+n) into out (a C string of at most
 * PL_PROXY_CRED_MAX bytes); refuses %00 and a broken escape. */
static bool decode_part(const char *s, size_t n, char out[PL_PROXY_CRED_MAX + 1])
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '%') {
            if (i + 2 >= n) return false;
            int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
            if (hi < 0 || lo < 0) return false;
            ch = hi * 16 + lo;
            if (ch == 0) return false;
            i += 2;
        }
        if (o == PL_PROXY_CRED_MAX) return false;
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return true;
}

pl_proxy_err pl_proxy_parse_url(pl_proxy_config *out, const char *url)
{
    memset(out, 0, sizeof *out);
    if (!url) return PL_PROXY_ERR_CONFIG;
    uint16_t default_port;
    const char *rest;
    if (strncmp(url, "http://", 7) == 0) {
        out->kind = PL_PROXY_HTTP;
        default_port = 8080;
        rest = url + 7;
    } else if (strncmp(url, "socks5://", 9) == 0) {
        out->kind = PL_PROXY_SOCKS5;
        default_port = 1080;
        rest = url + 9;
    } else {
        return PL_PROXY_ERR_CONFIG;
    }
    /* Credentials end at the last '@' (a password may hold an encoded one,
     * and an address never holds one). */
    const char *at = strrchr(rest, '@');
    if (at) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        size_t user_len = colon ? (size_t)(colon - rest) : (size_t)(at - rest);
        if (!decode_part(rest, user_len, out->user) ||
            (colon && !decode_part(colon + 1, (size_t)(at - colon - 1), out->pass))) {
            pl_proxy_config_wipe(out);
            return PL_PROXY_ERR_CONFIG;
        }
        out->auth = true;
        rest = at + 1;
    }
    char host[PL_ADDR_TEXT_MAX];
    size_t n = strlen(rest);
    if (n > 0 && rest[n - 1] == '/') n--;
    if (n == 0 || n >= sizeof host || memchr(rest, '/', n)) {
        pl_proxy_config_wipe(out);
        return PL_PROXY_ERR_CONFIG;
    }
    memcpy(host, rest, n);
    host[n] = '\0';
    if (!pl_addr_parse(&out->server, host, default_port) || out->server.port == 0) {
        pl_proxy_config_wipe(out);
        return PL_PROXY_ERR_CONFIG;
    }
    out->server.transport = PL_ADDR_TCP;
    return PL_PROXY_OK;
}

const char *pl_proxy_format_url(const pl_proxy_config *cfg, char *buf, size_t cap)
{
    char addr[PL_ADDR_TEXT_MAX];
    pl_addr a = cfg->server;
    a.transport = PL_ADDR_UDP; /* no "/tcp" suffix */
    pl_addr_format(&a, addr, sizeof addr);
    snprintf(buf, cap, "%s://%s%s%s", pl_proxy_kind_name(cfg->kind), cfg->auth ? cfg->user : "",
             cfg->auth ? "@" : "", addr);
    return buf;
}

void pl_proxy_config_wipe(pl_proxy_config *cfg) { sodium_memzero(cfg, sizeof *cfg); }

/* ---- requests -------------------------------------------------------------------- */

static pl_proxy_err fail(pl_proxy_client *c, pl_proxy_err err)
{
    if (c->state != ST_FAILED) {
        c->state = ST_FAILED;
        c->err = err;
    }
    return c->err;
}

/* Appends to the output; every request fits by construction (the bounds in
 * proxy.h), so running out of room is a bug caught as a config error. */
static bool out_append(pl_proxy_client *c, const void *data, size_t n)
{
    if (c->out_len + n > sizeof c->out) return false;
    memcpy(c->out + c->out_len, data, n);
    c->out_len += n;
    return true;
}

static bool http_request(pl_proxy_client *c)
{
    char target[PL_ADDR_TEXT_MAX];
    pl_addr t = c->target;
    t.transport = PL_ADDR_UDP;
    pl_addr_format(&t, target, sizeof target);
    char line[160];
    int n = snprintf(line, sizeof line, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", target, target);
    if (n < 0 || (size_t)n >= sizeof line || !out_append(c, line, (size_t)n)) return false;
    if (c->auth) {
        /* RFC 7617: base64 of "user:pass". */
        uint8_t plain[2 * PL_PROXY_CRED_MAX + 1];
        size_t pl = 0;
        memcpy(plain, c->user, c->user_len);
        pl += c->user_len;
        plain[pl++] = ':';
        memcpy(plain + pl, c->pass, c->pass_len);
        pl += c->pass_len;
        char b64[sodium_base64_ENCODED_LEN(2 * PL_PROXY_CRED_MAX + 1, sodium_base64_VARIANT_ORIGINAL)];
        sodium_bin2base64(b64, sizeof b64, plain, pl, sodium_base64_VARIANT_ORIGINAL);
        static const char head[] = "Proxy-Authorization: Basic ";
        bool okay = out_append(c, head, sizeof head - 1) && out_append(c, b64, strlen(b64)) && out_append(c, "\r\n", 2);
        sodium_memzero(plain, sizeof plain);
        sodium_memzero(b64, sizeof b64);
        if (!okay) return false;
    }
    return out_append(c, "\r\n", 2);
}

static bool socks_greeting(pl_proxy_client *c)
{
    /* With credentials both methods are offered, so that a proxy that needs
     * none still works; without, only "no authentication". */
    uint8_t g[4] = {SOCKS_VERSION, 1, SOCKS_METHOD_NONE, 0};
    size_t n = 3;
    if (c->auth) {
        g[1] = 2;
        g[3] = SOCKS_METHOD_USERPASS;
        n = 4;
    }
    return out_append(c, g, n);
}

static bool socks_auth(pl_proxy_client *c)
{
    uint8_t buf[3 + 2 * PL_PROXY_CRED_MAX];
    pl_writer w = pl_writer_make(buf, sizeof buf);
    pl_write_u8(&w, SOCKS_AUTH_VERSION);
    pl_write_u8(&w, c->user_len);
    pl_write_bytes(&w, c->user, c->user_len);
    pl_write_u8(&w, c->pass_len);
    pl_write_bytes(&w, c->pass, c->pass_len);
    bool okay = !w.err && out_append(c, buf, w.off);
    sodium_memzero(buf, sizeof buf);
    /* Sent once; not needed again. */
    sodium_memzero(c->user, sizeof c->user);
    sodium_memzero(c->pass, sizeof c->pass);
    return okay;
}

static bool socks_connect(pl_proxy_client *c)
{
    uint8_t buf[22];
    pl_writer w = pl_writer_make(buf, sizeof buf);
    pl_write_u8(&w, SOCKS_VERSION);
    pl_write_u8(&w, SOCKS_CMD_CONNECT);
    pl_write_u8(&w, 0);
    if (c->target.family == PL_AF_INET4) {
        pl_write_u8(&w, SOCKS_ATYP_IPV4);
        pl_write_bytes(&w, c->target.ip, 4);
    } else {
        pl_write_u8(&w, SOCKS_ATYP_IPV6);
        pl_write_bytes(&w, c->target.ip, 16);
    }
    pl_write_u16(&w, c->target.port);
    return !w.err && out_append(c, buf, w.off);
}

pl_proxy_err pl_proxy_client_init(pl_proxy_client *c, const pl_proxy_config *cfg, const pl_addr *target)
{
    memset(c, 0, sizeof *c);
    c->reply_code = -1;
    c->state = ST_FAILED;
    c->err = PL_PROXY_ERR_CONFIG;
    if (target->family != PL_AF_INET4 && target->family != PL_AF_INET6) return PL_PROXY_ERR_CONFIG;
    size_t ul = strnlen(cfg->user, sizeof cfg->user), pl = strnlen(cfg->pass, sizeof cfg->pass);
    if (ul > PL_PROXY_CRED_MAX || pl > PL_PROXY_CRED_MAX) return PL_PROXY_ERR_CONFIG;
    c->kind = cfg->kind;
    c->target = *target;
    c->auth = cfg->auth;
    if (c->auth) {
        c->user_len = (uint8_t)ul;
        c->pass_len = (uint8_t)pl;
        memcpy(c->user, cfg->user, ul);
        memcpy(c->pass, cfg->pass, pl);
    }
    bool okay;
    switch (cfg->kind) {
    case PL_PROXY_HTTP:
        okay = http_request(c);
        /* The credentials are in the request now. */
        sodium_memzero(c->user, sizeof c->user);
        sodium_memzero(c->pass, sizeof c->pass);
        c->state = ST_HTTP_REPLY;
        break;
    case PL_PROXY_SOCKS5:
        /* RFC 1929: both parts are 1..255 bytes. */
        okay = (!c->auth || (ul > 0 && pl > 0)) && socks_greeting(c);
        c->state = ST_SOCKS_METHOD;
        break;
    default: okay = false; break;
    }
    if (!okay) {
        pl_proxy_client_wipe(c);
        c->reply_code = -1;
        c->state = ST_FAILED;
        c->err = PL_PROXY_ERR_CONFIG;
        return PL_PROXY_ERR_CONFIG;
    }
    c->err = PL_PROXY_OK;
    return PL_PROXY_OK;
}

size_t pl_proxy_client_output(pl_proxy_client *c, uint8_t *buf, size_t cap)
{
    if (cap < PL_PROXY_MAX_REQUEST || c->out_len == 0) return 0;
    size_t n = c->out_len;
    memcpy(buf, c->out, n);
    sodium_memzero(c->out, n);
    c->out_len = 0;
    return n;
}

/* ---- replies ------------------------------------------------------------------------ */

/* A status line: "HTTP/1.x SP 3DIGIT" and then SP, CR or LF. */
static int http_status(const uint8_t *line, size_t len)
{
    if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[7] < '0' || line[7] > '9' || line[8] != ' ') return -1;
    int code = 0;
    for (size_t i = 9; i < 12; i++) {
        if (line[i] < '0' || line[i] > '9') return -1;
        code = code * 10 + (line[i] - '0');
    }
    if (len > 12 && line[12] != ' ' && line[12] != '\r' && line[12] != '\n') return -1;
    if (code < 100) return -1;
    return code;
}

static pl_proxy_err http_judge(pl_proxy_client *c, int code)
{
    c->reply_code = code;
    if (code >= 200 && code < 300) {
        c->state = ST_DONE;
        return PL_PROXY_OK;
    }
    switch (code) {
    case 401: /* some proxies answer as if they were the origin */
    case 407: return fail(c, c->auth ? PL_PROXY_ERR_AUTH_FAILED : PL_PROXY_ERR_AUTH_REQUIRED);
    case 400:
    case 403:
    case 405: return fail(c, PL_PROXY_ERR_REFUSED);
    case 404:
    case 502:
    case 503:
    case 504: return fail(c, PL_PROXY_ERR_TARGET);
    case 501: return fail(c, PL_PROXY_ERR_UNSUPPORTED);
    default: return fail(c, PL_PROXY_ERR_FAILED);
    }
}

static pl_proxy_err http_input(pl_proxy_client *c, const uint8_t *data, size_t len, size_t *used)
{
    size_t i = 0;
    while (i < len && c->state == ST_HTTP_REPLY) {
        if (c->taken == PL_PROXY_MAX_HTTP_REPLY) {
            *used = i;
            return fail(c, PL_PROXY_ERR_BAD_REPLY);
        }
        uint8_t b = data[i++];
        c->taken++;
        if (b == 0) {
            *used = i;
            return fail(c, PL_PROXY_ERR_BAD_REPLY);
        }
        c->in[c->in_len++] = b;
        if (b != '\n') continue;
        /* A line ended: the block ends with an empty one (LF or CR LF
         * alone; RFC 9112 section 2.2 lets a recipient take a bare LF). */
        size_t start = c->in_len - 1;
        while (start > 0 && c->in[start - 1] != '\n') start--;
        size_t line_len = c->in_len - start;
        bool empty = line_len == 1 || (line_len == 2 && c->in[start] == '\r');
        if (!empty) continue;
        if (start == 0) {
            *used = i;
            return fail(c, PL_PROXY_ERR_BAD_REPLY); /* no status line */
        }
        int code = http_status(c->in, c->in_len);
        if (code < 0) {
            *used = i;
            return fail(c, PL_PROXY_ERR_BAD_REPLY);
        }
        if (code < 200) {
            /* An interim response: the real one follows. */
            c->reply_code = code;
            c->in_len = 0;
            continue;
        }
        pl_proxy_err err = http_judge(c, code);
        *used = i;
        return err;
    }
    *used = i;
    return c->state == ST_FAILED ? c->err : PL_PROXY_OK;
}

static pl_proxy_err socks_rep(pl_proxy_client *c, uint8_t rep)
{
    c->reply_code = rep;
    switch (rep) {
    case 1: return fail(c, PL_PROXY_ERR_FAILED);
    case 2: return fail(c, PL_PROXY_ERR_REFUSED);
    case 3:
    case 4:
    case 5:
    case 6: return fail(c, PL_PROXY_ERR_TARGET);
    case 7:
    case 8: return fail(c, PL_PROXY_ERR_UNSUPPORTED);
    default: return fail(c, PL_PROXY_ERR_BAD_REPLY);
    }
}

/* How long the SOCKS5 reply in hand must be, as far as its first bytes
 * tell; 0 when they say it is malformed. */
static size_t socks_need(const pl_proxy_client *c)
{
    switch (c->state) {
    case ST_SOCKS_METHOD:
    case ST_SOCKS_AUTH: return 2;
    default: break;
    }
    if (c->in_len < 4) return 4;
    switch (c->in[3]) {
    case SOCKS_ATYP_IPV4: return 4 + 4 + 2;
    case SOCKS_ATYP_IPV6: return 4 + 16 + 2;
    case SOCKS_ATYP_DOMAIN: return c->in_len < 5 ? 5 : 5 + (size_t)c->in[4] + 2;
    default: return 0;
    }
}

/* Judges a whole SOCKS5 reply (or, for CONNECT, its first two bytes). */
static pl_proxy_err socks_step(pl_proxy_client *c)
{
    switch (c->state) {
    case ST_SOCKS_METHOD: {
        uint8_t version = c->in[0], method = c->in[1];
        c->reply_code = method;
        c->in_len = 0;
        if (version != SOCKS_VERSION) return fail(c, PL_PROXY_ERR_BAD_REPLY);
        if (method == SOCKS_METHOD_NONE) {
            c->state = ST_SOCKS_CONNECT;
            return socks_connect(c) ? PL_PROXY_OK : fail(c, PL_PROXY_ERR_CONFIG);
        }
        if (method == SOCKS_METHOD_USERPASS && c->auth) {
            c->state = ST_SOCKS_AUTH;
            return socks_auth(c) ? PL_PROXY_OK : fail(c, PL_PROXY_ERR_CONFIG);
        }
        if (method == SOCKS_METHOD_NO_ACCEPTABLE) return fail(c, PL_PROXY_ERR_AUTH_REQUIRED);
        return fail(c, PL_PROXY_ERR_BAD_REPLY); /* a method we did not offer */
    }
    case ST_SOCKS_AUTH: {
        uint8_t version = c->in[0], status = c->in[1];
        c->reply_code = status;
        c->in_len = 0;
        if (version != SOCKS_AUTH_VERSION) return fail(c, PL_PROXY_ERR_BAD_REPLY);
        if (status != 0) return fail(c, PL_PROXY_ERR_AUTH_FAILED);
        c->state = ST_SOCKS_CONNECT;
        return socks_connect(c) ? PL_PROXY_OK : fail(c, PL_PROXY_ERR_CONFIG);
    }
    case ST_SOCKS_CONNECT: {
        if (c->in[0] != SOCKS_VERSION) return fail(c, PL_PROXY_ERR_BAD_REPLY);
        if (c->in[1] != 0) return socks_rep(c, c->in[1]);
        size_t need = socks_need(c);
        if (need == 0) return fail(c, PL_PROXY_ERR_BAD_REPLY);
        if (c->in_len < need) return PL_PROXY_OK; /* the rest of it is on its way */
        c->reply_code = 0;
        pl_reader r = pl_reader_make(c->in + 4, need - 4);
        memset(&c->bound, 0, sizeof c->bound);
        if (c->in[3] == SOCKS_ATYP_IPV4) {
            c->bound.family = PL_AF_INET4;
            pl_read_bytes(&r, c->bound.ip, 4);
        } else if (c->in[3] == SOCKS_ATYP_IPV6) {
            c->bound.family = PL_AF_INET6;
            pl_read_bytes(&r, c->bound.ip, 16);
        } else {
            pl_read_ptr(&r, 1 + (size_t)c->in[4]); /* a name: kept as "no address" */
        }
        c->bound.port = pl_read_u16(&r);
        c->bound.transport = PL_ADDR_TCP;
        if (!pl_reader_done(&r)) return fail(c, PL_PROXY_ERR_BAD_REPLY);
        c->in_len = 0;
        c->state = ST_DONE;
        return PL_PROXY_OK;
    }
    default: return fail(c, PL_PROXY_ERR_BAD_REPLY);
    }
}

static pl_proxy_err socks_input(pl_proxy_client *c, const uint8_t *data, size_t len, size_t *used)
{
    size_t i = 0;
    while (i < len && c->state != ST_DONE && c->state != ST_FAILED) {
        size_t need = socks_need(c);
        if (need == 0) {
            *used = i;
            return fail(c, PL_PROXY_ERR_BAD_REPLY);
        }
        /* One byte at a time up to the size known so far: the size of a
         * CONNECT reply is only known from its fourth (or fifth) byte. */
        c->in[c->in_len++] = data[i++];
        bool whole = c->in_len >= need;
        bool verdict_due = c->state == ST_SOCKS_CONNECT && c->in_len == 2; /* a refusal needs no more */
        if (!whole && !verdict_due) continue;
        if (c->state == ST_SOCKS_CONNECT && !whole) {
            if (c->in[0] != SOCKS_VERSION) {
                *used = i;
                return fail(c, PL_PROXY_ERR_BAD_REPLY);
            }
            if (c->in[1] != 0) {
                *used = i;
                return socks_rep(c, c->in[1]);
            }
            continue;
        }
        pl_proxy_err err = socks_step(c);
        if (err) {
            *used = i;
            return err;
        }
    }
    *used = i;
    return c->state == ST_FAILED ? c->err : PL_PROXY_OK;
}

pl_proxy_err pl_proxy_client_input(pl_proxy_client *c, const uint8_t *data, size_t len, size_t *used)
{
    size_t dummy;
    if (!used) used = &dummy;
    *used = 0;
    switch (c->state) {
    case ST_DONE: return PL_PROXY_OK;
    case ST_FAILED: return c->err;
    case ST_HTTP_REPLY: return http_input(c, data, len, used);
    default: return socks_input(c, data, len, used);
    }
}

pl_proxy_err pl_proxy_client_eof(pl_proxy_client *c)
{
    if (c->state == ST_DONE) return PL_PROXY_OK;
    return fail(c, PL_PROXY_ERR_CLOSED);
}

bool pl_proxy_client_done(const pl_proxy_client *c) { return c->state == ST_DONE; }

int pl_proxy_client_reply_code(const pl_proxy_client *c) { return c->reply_code; }

void pl_proxy_client_wipe(pl_proxy_client *c) { sodium_memzero(c, sizeof *c); }
