/*
 * proxy.h - the client side of an outgoing proxy's handshake, sans I/O:
 * HTTP CONNECT (RFC 9110 section 9.3.6, optionally with Basic credentials,
 * RFC 7617) and SOCKS5 (RFC 1928, with no authentication or username and
 * password, RFC 1929).
 *
 * Where a network lets out nothing but TCP through a proxy, a node reaches
 * its supernodes through that proxy: one TCP connection to the proxy, this
 * handshake on its raw bytes, then the connection is a tunnel to the
 * supernode that carries Parley's framed stream (loop.h's
 * pl_stream_connect_via_proxy drives this core for real).
 *
 * The driver:
 *   pl_proxy_client_init(&c, &cfg, &target);
 *   send what pl_proxy_client_output() gives (the first request);
 *   for bytes read from the proxy:
 *       err = pl_proxy_client_input(&c, data, len, &used);
 *       send pl_proxy_client_output() if any (SOCKS5's next request);
 *       if err: fail with it; if pl_proxy_client_done(): the tunnel is up,
 *       and data[used..len) is the tunnel's first bytes;
 *   on end of stream: pl_proxy_client_eof() gives the error;
 *   pl_proxy_client_wipe() at the end either way (it holds the password).
 *
 * Replies are parsed with bounds: an HTTP reply's header block may be at
 * most PL_PROXY_MAX_HTTP_REPLY bytes (1xx interim responses included);
 * SOCKS5 replies have exact sizes. A SOCKS5 reply is checked as far as it
 * is needed: a refusal is reported as soon as its code has arrived. Nothing
 * here allocates, reads a clock or keeps global state.
 */
#ifndef PL_PROXY_H
#define PL_PROXY_H

#include "parley.h"

typedef enum pl_proxy_kind { PL_PROXY_NONE = 0, PL_PROXY_HTTP = 1, PL_PROXY_SOCKS5 = 2 } pl_proxy_kind;

/* RFC 1929 bounds a SOCKS5 username and password at 255 bytes each; the
 * same bound applies to HTTP Basic credentials here. */
#define PL_PROXY_CRED_MAX 255
/* The longest request written (HTTP CONNECT with Basic credentials of
 * 255 + 255 bytes, an IPv6 target). */
#define PL_PROXY_MAX_REQUEST 1024
/* The longest HTTP reply header block accepted. */
#define PL_PROXY_MAX_HTTP_REPLY 4096
/* The longest text pl_proxy_format_url writes (never with the password). */
#define PL_PROXY_URL_TEXT_MAX (16 + PL_PROXY_CRED_MAX + PL_ADDR_TEXT_MAX)

typedef enum pl_proxy_err {
    PL_PROXY_OK = 0,
    PL_PROXY_ERR_CONFIG,        /* bad URL or configuration: kind, target family, credentials */
    PL_PROXY_ERR_REFUSED,       /* the proxy will not connect there (HTTP 400/403/405, SOCKS5 reply 2) */
    PL_PROXY_ERR_AUTH_REQUIRED, /* the proxy wants credentials (or a method) we did not offer */
    PL_PROXY_ERR_AUTH_FAILED,   /* the proxy refused the credentials */
    PL_PROXY_ERR_TARGET,        /* the proxy could not reach the target (HTTP 404/502/503/504, SOCKS5 3-6) */
    PL_PROXY_ERR_UNSUPPORTED,   /* the proxy does not offer this (HTTP 501, SOCKS5 7-8) */
    PL_PROXY_ERR_FAILED,        /* any other failure the proxy reported (SOCKS5 1, other HTTP statuses) */
    PL_PROXY_ERR_BAD_REPLY,     /* not the protocol, malformed, or longer than allowed */
    PL_PROXY_ERR_CLOSED,        /* the proxy closed the connection before the handshake ended */
    PL_PROXY_ERR_TIMEOUT,       /* drivers: the handshake did not end in time */
    PL_PROXY_ERR_CONNECT,       /* drivers: no TCP connection to the proxy */
} pl_proxy_err;
const char *pl_proxy_strerror(pl_proxy_err err);
/* "http" or "socks5" (or "none"). */
const char *pl_proxy_kind_name(pl_proxy_kind kind);

typedef struct pl_proxy_config {
    pl_proxy_kind kind;
    pl_addr server;                   /* the proxy (a TCP address; its transport is ignored) */
    bool auth;                        /* send the credentials below */
    char user[PL_PROXY_CRED_MAX + 1]; /* NUL-terminated; SOCKS5 needs 1..255 bytes */
    char pass[PL_PROXY_CRED_MAX + 1]; /* NUL-terminated; SOCKS5 needs 1..255 bytes */
    pl_time timeout;                  /* drivers: TCP connect and handshake together; 0: 10 s */
} pl_proxy_config;

/* Parses "http://[USER[:PASS]@]IP[:PORT][/]" or "socks5://..." (the IP
 * numeric, an IPv6 one in brackets; default ports 8080 and 1080; USER and
 * PASS may be %XX-encoded). Returns PL_PROXY_ERR_CONFIG for anything else. */
pl_proxy_err pl_proxy_parse_url(pl_proxy_config *out, const char *url);
/* "socks5://user@1.2.3.4:1080": the configuration for logs, no password. */
const char *pl_proxy_format_url(const pl_proxy_config *cfg, char *buf, size_t cap);
/* Wipes a configuration (it holds a password). */
void pl_proxy_config_wipe(pl_proxy_config *cfg);

typedef struct pl_proxy_client {
    pl_proxy_kind kind;
    int state;
    pl_proxy_err err;     /* sticky: the first failure */
    pl_addr target;
    bool auth;
    uint8_t user_len, pass_len;
    char user[PL_PROXY_CRED_MAX];
    char pass[PL_PROXY_CRED_MAX];
    uint8_t out[PL_PROXY_MAX_REQUEST]; /* bytes to send, not yet taken */
    size_t out_len;
    uint8_t in[PL_PROXY_MAX_HTTP_REPLY]; /* the reply in hand */
    size_t in_len;
    size_t taken;         /* HTTP: header bytes seen so far, 1xx responses included */
    int reply_code;       /* the proxy's last code: HTTP status, SOCKS5 method, auth status or REP */
    pl_addr bound;        /* SOCKS5: BND.ADDR and BND.PORT of a success (an IPv4 or IPv6 one) */
} pl_proxy_client;

/* Prepares the handshake for a tunnel to target (IPv4 or IPv6) and its
 * first request. PL_PROXY_ERR_CONFIG for an unknown kind, a target that is
 * not an address, or SOCKS5 credentials with an empty part. */
pl_proxy_err pl_proxy_client_init(pl_proxy_client *c, const pl_proxy_config *cfg, const pl_addr *target);
/* Copies the bytes to send now into buf and forgets (wipes) them; returns
 * how many (0: nothing to send). cap must be PL_PROXY_MAX_REQUEST or more;
 * with less, nothing is copied and 0 is returned. */
size_t pl_proxy_client_output(pl_proxy_client *c, uint8_t *buf, size_t cap);
/* Bytes from the proxy. *used says how many of them belonged to the
 * handshake; once pl_proxy_client_done(), the rest belong to the tunnel.
 * Returns the error that ended the handshake (the same one again on later
 * calls), else PL_PROXY_OK. */
pl_proxy_err pl_proxy_client_input(pl_proxy_client *c, const uint8_t *data, size_t len, size_t *used);
/* The proxy closed its side: PL_PROXY_ERR_CLOSED unless the handshake had
 * already ended (then its result). */
pl_proxy_err pl_proxy_client_eof(pl_proxy_client *c);
bool pl_proxy_client_done(const pl_proxy_client *c);
/* The proxy's last code (for messages): an HTTP status, SOCKS5 reply
 * code..., or -1 before any reply. */
int pl_proxy_client_reply_code(const pl_proxy_client *c);
void pl_proxy_client_wipe(pl_proxy_client *c);

#endif
