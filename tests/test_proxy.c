/* test_proxy.c - the HTTP CONNECT and SOCKS5 client handshakes (src/core/proxy.c):
 * the exact request bytes, every reply code and what it becomes, replies
 * cut short, split at every byte, oversized or malformed, the tunnel bytes
 * that follow a reply left alone, proxy URLs, and the password wiped. */
#include <stdlib.h>

#include "parley.h"
#include "proxy.h"
#include "test.h"

static pl_addr target4(void)
{
    pl_addr a;
    CHECK(pl_addr_parse(&a, "203.0.113.50:4000", 0));
    return a;
}

static pl_proxy_config config(pl_proxy_kind kind, const char *user, const char *pass)
{
    pl_proxy_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.kind = kind;
    CHECK(pl_addr_parse(&cfg.server, "198.51.100.20:3128", 0));
    if (user) {
        cfg.auth = true;
        snprintf(cfg.user, sizeof cfg.user, "%s", user);
        snprintf(cfg.pass, sizeof cfg.pass, "%s", pass);
    }
    return cfg;
}

/* Starts a client and takes its first request. */
static size_t start(pl_proxy_client *c, pl_proxy_kind kind, const char *user, const char *pass, const pl_addr *to,
                    uint8_t out[PL_PROXY_MAX_REQUEST])
{
    pl_proxy_config cfg = config(kind, user, pass);
    CHECK_EQ(pl_proxy_client_init(c, &cfg, to), PL_PROXY_OK);
    pl_proxy_config_wipe(&cfg);
    size_t n = pl_proxy_client_output(c, out, PL_PROXY_MAX_REQUEST);
    CHECK(n > 0);
    CHECK_EQ(pl_proxy_client_output(c, out + n, PL_PROXY_MAX_REQUEST), 0); /* taken once */
    return n;
}

static pl_proxy_err feed_text(pl_proxy_client *c, const char *text, size_t *used)
{
    return pl_proxy_client_input(c, (const uint8_t *)text, strlen(text), used);
}

/* ---- HTTP CONNECT ------------------------------------------------------------------- */

static void test_http_request_bytes(void)
{
    pl_proxy_client c;
    uint8_t out[PL_PROXY_MAX_REQUEST];
    pl_addr t = target4();
    size_t n = start(&c, PL_PROXY_HTTP, NULL, NULL, &t, out);
    const char *want = "CONNECT 203.0.113.50:4000 HTTP/1.1\r\nHost: 203.0.113.50:4000\r\n\r\n";
    CHECK_EQ(n, strlen(want));
    CHECK(memcmp(out, want, n) == 0);

    /* RFC 7617's example credentials, and an IPv6 target in brackets. */
    pl_addr t6;
    CHECK(pl_addr_parse(&t6, "[2001:db8::7]:443", 0));
    t6.transport = PL_ADDR_TCP; /* never shows in the request */
    n = start(&c, PL_PROXY_HTTP, "Aladdin", "open sesame", &t6, out);
    want = "CONNECT [2001:db8::7]:443 HTTP/1.1\r\nHost: [2001:db8::7]:443\r\n"
           "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n";
    CHECK_EQ(n, strlen(want));
    CHECK(memcmp(out, want, n) == 0);
    pl_proxy_client_wipe(&c);
}

static void test_http_success_leaves_tunnel_bytes(void)
{
    pl_proxy_client c;
    uint8_t out[PL_PROXY_MAX_REQUEST];
    pl_addr t = target4();
    start(&c, PL_PROXY_HTTP, NULL, NULL, &t, out);
    const char *reply = "HTTP/1.1 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n";
    uint8_t buf[256];
    size_t rl = strlen(reply);
    memcpy(buf, reply, rl);
    memcpy(buf + rl, "\x00\x03" "abc", 5); /* the tunnel's first frame, in the same read */
    size_t used = 0;
    CHECK_EQ(pl_proxy_client_input(&c, buf, rl + 5, &used), PL_PROXY_OK);
    CHECK(pl_proxy_client_done(&c));
    CHECK_EQ(used, rl);
    CHECK_EQ(pl_proxy_client_reply_code(&c), 200);
    /* After the handshake nothing more is taken. */
    CHECK_EQ(pl_proxy_client_input(&c, buf + rl, 5, &used), PL_PROXY_OK);
    CHECK_EQ(used, 0);
    CHECK_EQ(pl_proxy_client_eof(&c), PL_PROXY_OK);
}

static void test_http_split_everywhere(void)
{
    /* Bare LF line ends, a 100 Continue first, header lines, any 2xx. */
    const char *reply = "HTTP/1.0 100 Continue\n\nHTTP/1.0 204 OK\nVia: 1.1 squid\n\n";
    size_t rl = strlen(reply);
    pl_addr t = target4();
    for (size_t cut = 0; cut <= rl; cut++) {
        pl_proxy_client c;
        uint8_t out[PL_PROXY_MAX_REQUEST];
        start(&c, PL_PROXY_HTTP, NULL, NULL, &t, out);
        size_t used = 0, used2 = 0;
        CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)reply, cut, &used), PL_PROXY_OK);
        CHECK_EQ(used, cut);
        CHECK(!pl_proxy_client_done(&c) || cut == rl);
        CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)reply + cut, rl - cut, &used2), PL_PROXY_OK);
        CHECK(pl_proxy_client_done(&c));
        CHECK_EQ(used + used2, rl);
        CHECK_EQ(pl_proxy_client_reply_code(&c), 204);
    }
    /* One byte at a time. */
    pl_proxy_client c;
    uint8_t out[PL_PROXY_MAX_REQUEST];
    start(&c, PL_PROXY_HTTP, NULL, NULL, &t, out);
    for (size_t i = 0; i < rl; i++) {
        size_t used;
        CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)reply + i, 1, &used), PL_PROXY_OK);
        CHECK_EQ(used, 1);
        CHECK_EQ(pl_proxy_client_done(&c), i == rl - 1);
    }
}

static void test_http_status_codes(void)
{
    static const struct {
        int code;
        bool auth;
        pl_proxy_err want;
    } cases[] = {
        {200, false, PL_PROXY_OK},
        {299, false, PL_PROXY_OK},
        {407, false, PL_PROXY_ERR_AUTH_REQUIRED},
        {407, true, PL_PROXY_ERR_AUTH_FAILED},
        {401, false, PL_PROXY_ERR_AUTH_REQUIRED},
        {401, true, PL_PROXY_ERR_AUTH_FAILED},
        {400, false, PL_PROXY_ERR_REFUSED},
        {403, false, PL_PROXY_ERR_REFUSED},
        {405, false, PL_PROXY_ERR_REFUSED},
        {404, false, PL_PROXY_ERR_TARGET},
        {502, false, PL_PROXY_ERR_TARGET},
        {503, false, PL_PROXY_ERR_TARGET},
        {504, false, PL_PROXY_ERR_TARGET},
        {501, false, PL_PROXY_ERR_UNSUPPORTED},
        {500, false, PL_PROXY_ERR_FAILED},
        {302, false, PL_PROXY_ERR_FAILED},
        {418, false, PL_PROXY_ERR_FAILED},
        {999, false, PL_PROXY_ERR_FAILED},
    };
    pl_addr t = target4();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pl_proxy_client c;
        uint8_t out[PL_PROXY_MAX_REQUEST];
        start(&c, PL_PROXY_HTTP, cases[i].auth ? "u" : NULL, "p", &t, out);
        char reply[128];
        snprintf(reply, sizeof reply, "HTTP/1.1 %d Whatever\r\nContent-Length: 5\r\n\r\nbody!", cases[i].code);
        size_t used;
        CHECK_EQ(feed_text(&c, reply, &used), cases[i].want);
        CHECK_EQ(pl_proxy_client_reply_code(&c), cases[i].code);
        CHECK_EQ(used, strlen(reply) - 5); /* the body is not part of the header block */
        /* The verdict sticks. */
        CHECK_EQ(feed_text(&c, "more", &used), cases[i].want);
        CHECK_EQ(pl_proxy_client_eof(&c), cases[i].want);
    }
}

static void test_http_bad_replies(void)
{
    static const char *bad[] = {
        "HTTP/2 200 OK\r\n\r\n",          /* not HTTP/1.x */
        "HTTP/1.1 20 OK\r\n\r\n",         /* two digits */
        "HTTP/1.1 2000 OK\r\n\r\n",       /* four */
        "HTTP/1.1 abc OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",
        "HTTP/1.1\r\n\r\n",
        "SSH-2.0-OpenSSH_9.2\r\n\r\n",
        "\r\n",                           /* no status line at all */
        "\n",
        "http/1.1 200 OK\r\n\r\n",        /* the protocol name is case-sensitive */
        "HTTP/1.1 200OK\r\n\r\n",
    };
    pl_addr t = target4();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pl_proxy_client c;
        uint8_t out[PL_PROXY_MAX_REQUEST];
        start(&c, PL_PROXY_HTTP, NULL, NULL, &t, out);
        size_t used;
        CHECK_EQ(feed_text(&c, bad[i], &used), PL_PROXY_ERR_BAD_REPLY);
        CHECK(!pl_proxy_client_done(&c));
    }
    /* A NUL byte. */
    pl_proxy_client c;
    uint8_t out[PL_PROXY_MAX_REQUEST];
    start(&c, PL_PROXY_HTTP, NULL, NULL, &t, out);
    size_t used;
    CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)"HTTP/1.1 200 OK\r\nX: \0\r\n\r\n", 24, &used),
             PL_PROXY_ERR_BAD_REPLY);
    CHECK_EQ(used, 21); /* up to and with the NUL */
}

static void test_http_size_bound(void)
{
    pl_addr t = target4();
    pl_proxy_client c;
    uint8_t out[PL_PROXY_MAX_REQUEST];
    /* Exactly PL_PROXY_MAX_HTTP_REPLY bytes of header block: accepted. */
    static char reply[PL_PROXY_MAX_HTTP_REPLY + 64];
    const char *head = "HTTP/1.1 200 OK\r\nX: ";
    size_t hl = strlen(head);
    memcpy(reply, head, hl);
    size_t fill = PL_PROXY_MAX_HTTP_REPLY - hl - 4;
    memset(reply + hl, 'a', fill);
    memcpy(reply + hl + fill, "\r\n\r\n", 5);
    CHECK_EQ(strlen(reply), PL_PROXY_MAX_HTTP_REPLY);
    start(&c, PL_PROXY_HTTP, NULL, NULL, &t, out);
    size_t used;
    CHECK_EQ(feed_text(&c, reply, &used), PL_PROXY_OK);
    CHECK(pl_proxy_client_done(&c));
    /* One more byte: refused, after reading no more than the bound. */
    memset(reply + hl, 'a', fill + 1);
    memcpy(reply + hl + fill + 1, "\r\n\r\n", 5);
    start(&c, PL_PROXY_HTTP, NULL, NULL, &t, out);
    CHECK_EQ(feed_text(&c, reply, &used), PL_PROXY_ERR_BAD_REPLY);
    CHECK_EQ(used, PL_PROXY_MAX_HTTP_REPLY);
    /* A stream of 1xx responses counts towards the same bound. */
    start(&c, PL_PROXY_HTTP, NULL, NULL, &t, out);
    pl_proxy_err err = PL_PROXY_OK;
    size_t total = 0;
    for (int i = 0; i < 1000 && err == PL_PROXY_OK; i++) {
        err = feed_text(&c, "HTTP/1.1 100 Continue\r\n\r\n", &used);
        total += used;
    }
    CHECK_EQ(err, PL_PROXY_ERR_BAD_REPLY);
    CHECK(total <= PL_PROXY_MAX_HTTP_REPLY);
    /* Cut short: the proxy hangs up in the middle. */
    start(&c, PL_PROXY_HTTP, NULL, NULL, &t, out);
    CHECK_EQ(feed_text(&c, "HTTP/1.1 200 OK\r\n", &used), PL_PROXY_OK);
    CHECK(!pl_proxy_client_done(&c));
    CHECK_EQ(pl_proxy_client_eof(&c), PL_PROXY_ERR_CLOSED);
    CHECK_EQ(feed_text(&c, "\r\n", &used), PL_PROXY_ERR_CLOSED);
}

/* ---- SOCKS5 ---------------------------------------------------------------------------- */

static void test_socks_no_auth(void)
{
    pl_proxy_client c;
    uint8_t out[PL_PROXY_MAX_REQUEST];
    pl_addr t = target4();
    size_t n = start(&c, PL_PROXY_SOCKS5, NULL, NULL, &t, out);
    CHECK_EQ(n, 3);
    CHECK(memcmp(out, "\x05\x01\x00", 3) == 0);
    size_t used;
    CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)"\x05\x00", 2, &used), PL_PROXY_OK);
    CHECK_EQ(used, 2);
    n = pl_proxy_client_output(&c, out, sizeof out);
    CHECK_EQ(n, 10);
    CHECK(memcmp(out, "\x05\x01\x00\x01\xcb\x00\x71\x32\x0f\xa0", 10) == 0);
    /* Success with an IPv4 bound address, and a tunnel byte behind it. */
    const uint8_t reply[] = {5, 0, 0, 1, 198, 51, 100, 20, 0x9c, 0x40, 0xEE};
    CHECK_EQ(pl_proxy_client_input(&c, reply, sizeof reply, &used), PL_PROXY_OK);
    CHECK_EQ(used, 10);
    CHECK(pl_proxy_client_done(&c));
    char b[PL_ADDR_TEXT_MAX];
    pl_addr bound = c.bound;
    bound.transport = PL_ADDR_UDP;
    CHECK(strcmp(pl_addr_format(&bound, b, sizeof b), "198.51.100.20:40000") == 0);
    CHECK_EQ(pl_proxy_client_output(&c, out, sizeof out), 0);
}

static void test_socks_auth_and_ipv6(void)
{
    pl_proxy_client c;
    uint8_t out[PL_PROXY_MAX_REQUEST];
    pl_addr t6;
    CHECK(pl_addr_parse(&t6, "[2001:db8::7]:443", 0));
    size_t n = start(&c, PL_PROXY_SOCKS5, "alice", "s3cret", &t6, out);
    CHECK_EQ(n, 4);
    CHECK(memcmp(out, "\x05\x02\x00\x02", 4) == 0);
    size_t used;
    CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)"\x05\x02", 2, &used), PL_PROXY_OK);
    n = pl_proxy_client_output(&c, out, sizeof out);
    CHECK_EQ(n, 3 + 5 + 6);
    CHECK(memcmp(out, "\x01\x05" "alice" "\x06" "s3cret", n) == 0);
    /* The password is gone from the client once sent. */
    CHECK(memmem(&c, sizeof c, "s3cret", 6) == NULL);
    CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)"\x01\x00", 2, &used), PL_PROXY_OK);
    n = pl_proxy_client_output(&c, out, sizeof out);
    CHECK_EQ(n, 22);
    CHECK(memcmp(out, "\x05\x01\x00\x04\x20\x01\x0d\xb8", 8) == 0);
    CHECK(out[20] == 0x01 && out[21] == 0xbb);
    /* Success with a domain-name bound address (kept as "no address"). */
    const uint8_t reply[] = {5, 0, 0, 3, 4, 'h', 'o', 's', 't', 0x01, 0x02};
    CHECK_EQ(pl_proxy_client_input(&c, reply, sizeof reply, &used), PL_PROXY_OK);
    CHECK_EQ(used, sizeof reply);
    CHECK(pl_proxy_client_done(&c));
    CHECK_EQ(c.bound.family, PL_AF_NONE);
    CHECK_EQ(c.bound.port, 0x0102);

    /* A proxy that needs no authentication may choose "none" though we offered both. */
    start(&c, PL_PROXY_SOCKS5, "alice", "s3cret", &t6, out);
    CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)"\x05\x00", 2, &used), PL_PROXY_OK);
    CHECK_EQ(pl_proxy_client_output(&c, out, sizeof out), 22);
    const uint8_t reply6[] = {5, 0, 0, 4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80};
    CHECK_EQ(pl_proxy_client_input(&c, reply6, sizeof reply6, &used), PL_PROXY_OK);
    CHECK(pl_proxy_client_done(&c));
    CHECK_EQ(c.bound.family, PL_AF_INET6);
    CHECK_EQ(c.bound.port, 80);
}

static void test_socks_whole_exchange_in_one_read(void)
{
    /* Method, auth and connect replies arriving together (a proxy cannot
     * send them before our requests, but a driver may read them late). */
    pl_proxy_client c;
    uint8_t out[PL_PROXY_MAX_REQUEST];
    pl_addr t = target4();
    start(&c, PL_PROXY_SOCKS5, "u", "p", &t, out);
    const uint8_t all[] = {5, 2, 1, 0, 5, 0, 0, 1, 1, 2, 3, 4, 0, 1, 'X'};
    size_t used;
    CHECK_EQ(pl_proxy_client_input(&c, all, sizeof all, &used), PL_PROXY_OK);
    CHECK_EQ(used, sizeof all - 1);
    CHECK(pl_proxy_client_done(&c));
    /* Both requests are waiting, in order. */
    size_t n = pl_proxy_client_output(&c, out, sizeof out);
    CHECK_EQ(n, 5 + 10);
    CHECK(memcmp(out, "\x01\x01u\x01p\x05\x01\x00\x01", 9) == 0);
}

static void test_socks_split_everywhere(void)
{
    const uint8_t replies[] = {5, 2, 1, 0, 5, 0, 0, 4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80};
    pl_addr t = target4();
    for (size_t cut = 0; cut <= sizeof replies; cut++) {
        pl_proxy_client c;
        uint8_t out[PL_PROXY_MAX_REQUEST];
        start(&c, PL_PROXY_SOCKS5, "u", "p", &t, out);
        size_t used, used2;
        CHECK_EQ(pl_proxy_client_input(&c, replies, cut, &used), PL_PROXY_OK);
        CHECK_EQ(used, cut);
        CHECK_EQ(pl_proxy_client_input(&c, replies + cut, sizeof replies - cut, &used2), PL_PROXY_OK);
        CHECK_EQ(used + used2, sizeof replies);
        CHECK(pl_proxy_client_done(&c));
    }
}

static void test_socks_reply_codes(void)
{
    static const pl_proxy_err want[] = {
        PL_PROXY_OK,               /* 0 succeeded */
        PL_PROXY_ERR_FAILED,       /* 1 general SOCKS server failure */
        PL_PROXY_ERR_REFUSED,      /* 2 connection not allowed by ruleset */
        PL_PROXY_ERR_TARGET,       /* 3 network unreachable */
        PL_PROXY_ERR_TARGET,       /* 4 host unreachable */
        PL_PROXY_ERR_TARGET,       /* 5 connection refused */
        PL_PROXY_ERR_TARGET,       /* 6 TTL expired */
        PL_PROXY_ERR_UNSUPPORTED,  /* 7 command not supported */
        PL_PROXY_ERR_UNSUPPORTED,  /* 8 address type not supported */
        PL_PROXY_ERR_BAD_REPLY,    /* 9 and up: unassigned */
    };
    pl_addr t = target4();
    for (int rep = 0; rep < 256; rep++) {
        pl_proxy_client c;
        uint8_t out[PL_PROXY_MAX_REQUEST];
        start(&c, PL_PROXY_SOCKS5, NULL, NULL, &t, out);
        size_t used;
        CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)"\x05\x00", 2, &used), PL_PROXY_OK);
        pl_proxy_client_output(&c, out, sizeof out);
        /* A refusal is judged from its first two bytes: some servers send no more. */
        uint8_t reply[10] = {5, (uint8_t)rep, 0, 1, 0, 0, 0, 0, 0, 0};
        pl_proxy_err expect = want[rep < 9 ? rep : 9];
        if (rep == 0) {
            CHECK_EQ(pl_proxy_client_input(&c, reply, 2, &used), PL_PROXY_OK);
            CHECK(!pl_proxy_client_done(&c));
            CHECK_EQ(pl_proxy_client_eof(&c), PL_PROXY_ERR_CLOSED); /* cut short */
            continue;
        }
        CHECK_EQ(pl_proxy_client_input(&c, reply, sizeof reply, &used), expect);
        CHECK_EQ(used, 2);
        CHECK_EQ(pl_proxy_client_reply_code(&c), rep);
    }
}

static void test_socks_method_and_auth_answers(void)
{
    pl_addr t = target4();
    pl_proxy_client c;
    uint8_t out[PL_PROXY_MAX_REQUEST];
    size_t used;
    /* No acceptable method: credentials wanted (or another method). */
    start(&c, PL_PROXY_SOCKS5, NULL, NULL, &t, out);
    CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)"\x05\xff", 2, &used), PL_PROXY_ERR_AUTH_REQUIRED);
    start(&c, PL_PROXY_SOCKS5, "u", "p", &t, out);
    CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)"\x05\xff", 2, &used), PL_PROXY_ERR_AUTH_REQUIRED);
    /* A method we did not offer: user/pass without credentials, GSSAPI, anything else. */
    static const uint8_t methods[] = {0x01, 0x02, 0x03, 0x80, 0xfe};
    for (size_t i = 0; i < sizeof methods; i++) {
        start(&c, PL_PROXY_SOCKS5, NULL, NULL, &t, out);
        uint8_t m[2] = {5, methods[i]};
        CHECK_EQ(pl_proxy_client_input(&c, m, 2, &used), PL_PROXY_ERR_BAD_REPLY);
    }
    /* Wrong versions: a SOCKS4 server's answer, an HTTP proxy's. */
    start(&c, PL_PROXY_SOCKS5, NULL, NULL, &t, out);
    CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)"\x00\x5a", 2, &used), PL_PROXY_ERR_BAD_REPLY);
    start(&c, PL_PROXY_SOCKS5, NULL, NULL, &t, out);
    CHECK_EQ(feed_text(&c, "HTTP/1.1 400 Bad Request\r\n", &used), PL_PROXY_ERR_BAD_REPLY);
    CHECK_EQ(used, 2);
    /* Credentials refused: any non-zero status; a wrong sub-negotiation version. */
    for (int status = 1; status < 256; status += 37) {
        start(&c, PL_PROXY_SOCKS5, "u", "p", &t, out);
        CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)"\x05\x02", 2, &used), PL_PROXY_OK);
        uint8_t a[2] = {1, (uint8_t)status};
        CHECK_EQ(pl_proxy_client_input(&c, a, 2, &used), PL_PROXY_ERR_AUTH_FAILED);
        CHECK_EQ(pl_proxy_client_reply_code(&c), status);
    }
    start(&c, PL_PROXY_SOCKS5, "u", "p", &t, out);
    CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)"\x05\x02", 2, &used), PL_PROXY_OK);
    CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)"\x05\x00", 2, &used), PL_PROXY_ERR_BAD_REPLY);
    /* CONNECT replies: a wrong version, an unknown address type. */
    start(&c, PL_PROXY_SOCKS5, NULL, NULL, &t, out);
    CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)"\x05\x00", 2, &used), PL_PROXY_OK);
    CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)"\x04\x00\x00\x01", 4, &used), PL_PROXY_ERR_BAD_REPLY);
    start(&c, PL_PROXY_SOCKS5, NULL, NULL, &t, out);
    CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)"\x05\x00", 2, &used), PL_PROXY_OK);
    CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)"\x05\x00\x00\x02\x00", 5, &used), PL_PROXY_ERR_BAD_REPLY);
    CHECK_EQ(used, 4);
    /* Cut short at every point: the proxy closes. */
    const uint8_t replies[] = {5, 0, 5, 0, 0, 1, 1, 2, 3, 4, 0, 1};
    for (size_t cut = 0; cut < sizeof replies; cut++) {
        start(&c, PL_PROXY_SOCKS5, NULL, NULL, &t, out);
        CHECK_EQ(pl_proxy_client_input(&c, replies, cut, &used), PL_PROXY_OK);
        CHECK_EQ(pl_proxy_client_eof(&c), PL_PROXY_ERR_CLOSED);
    }
}

/* ---- configuration ------------------------------------------------------------------------ */

static void test_config_refusals(void)
{
    pl_proxy_client c;
    pl_addr t = target4();
    pl_proxy_config cfg = config(PL_PROXY_SOCKS5, "", "p");
    CHECK_EQ(pl_proxy_client_init(&c, &cfg, &t), PL_PROXY_ERR_CONFIG); /* RFC 1929: 1..255 */
    cfg = config(PL_PROXY_SOCKS5, "u", "");
    CHECK_EQ(pl_proxy_client_init(&c, &cfg, &t), PL_PROXY_ERR_CONFIG);
    cfg = config(PL_PROXY_HTTP, "", ""); /* Basic allows empty parts */
    CHECK_EQ(pl_proxy_client_init(&c, &cfg, &t), PL_PROXY_OK);
    cfg = config(PL_PROXY_NONE, NULL, NULL);
    CHECK_EQ(pl_proxy_client_init(&c, &cfg, &t), PL_PROXY_ERR_CONFIG);
    cfg = config(PL_PROXY_HTTP, NULL, NULL);
    pl_addr none;
    memset(&none, 0, sizeof none);
    CHECK_EQ(pl_proxy_client_init(&c, &cfg, &none), PL_PROXY_ERR_CONFIG);
    size_t used;
    CHECK_EQ(feed_text(&c, "HTTP/1.1 200 OK\r\n\r\n", &used), PL_PROXY_ERR_CONFIG); /* a failed init stays failed */
    uint8_t out[PL_PROXY_MAX_REQUEST];
    CHECK_EQ(pl_proxy_client_output(&c, out, sizeof out), 0);
    /* Longest credentials: the request still fits. */
    cfg = config(PL_PROXY_HTTP, NULL, NULL);
    cfg.auth = true;
    memset(cfg.user, 'u', PL_PROXY_CRED_MAX);
    memset(cfg.pass, 'p', PL_PROXY_CRED_MAX);
    pl_addr t6;
    CHECK(pl_addr_parse(&t6, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", 0));
    CHECK_EQ(pl_proxy_client_init(&c, &cfg, &t6), PL_PROXY_OK);
    CHECK(pl_proxy_client_output(&c, out, sizeof out) > 2 * PL_PROXY_CRED_MAX);
    CHECK_EQ(pl_proxy_client_output(&c, out, 10), 0); /* too small a buffer: nothing */
    cfg.kind = PL_PROXY_SOCKS5;
    CHECK_EQ(pl_proxy_client_init(&c, &cfg, &t6), PL_PROXY_OK);
    pl_proxy_client_output(&c, out, sizeof out);
    CHECK_EQ(pl_proxy_client_input(&c, (const uint8_t *)"\x05\x02", 2, &used), PL_PROXY_OK);
    CHECK_EQ(pl_proxy_client_output(&c, out, sizeof out), 3 + 2 * PL_PROXY_CRED_MAX);
    pl_proxy_client_wipe(&c);
    pl_proxy_config_wipe(&cfg);
}

static void test_urls(void)
{
    pl_proxy_config cfg;
    char b[PL_PROXY_URL_TEXT_MAX];
    CHECK_EQ(pl_proxy_parse_url(&cfg, "http://198.51.100.20:3128"), PL_PROXY_OK);
    CHECK_EQ(cfg.kind, PL_PROXY_HTTP);
    CHECK(!cfg.auth);
    CHECK(strcmp(pl_proxy_format_url(&cfg, b, sizeof b), "http://198.51.100.20:3128") == 0);
    CHECK_EQ(pl_proxy_parse_url(&cfg, "http://198.51.100.20/"), PL_PROXY_OK);
    CHECK_EQ(cfg.server.port, 8080);
    CHECK_EQ(pl_proxy_parse_url(&cfg, "socks5://198.51.100.20"), PL_PROXY_OK);
    CHECK_EQ(cfg.kind, PL_PROXY_SOCKS5);
    CHECK_EQ(cfg.server.port, 1080);
    CHECK_EQ(pl_proxy_parse_url(&cfg, "socks5://alice:s3cret@[2001:db8::1]:1081"), PL_PROXY_OK);
    CHECK(cfg.auth);
    CHECK(strcmp(cfg.user, "alice") == 0 && strcmp(cfg.pass, "s3cret") == 0);
    CHECK_EQ(cfg.server.family, PL_AF_INET6);
    CHECK_EQ(cfg.server.port, 1081);
    CHECK(strcmp(pl_proxy_format_url(&cfg, b, sizeof b), "socks5://alice@[2001:db8::1]:1081") == 0);
    /* Encoded ':' and '@' in the password; the last '@' ends the credentials. */
    CHECK_EQ(pl_proxy_parse_url(&cfg, "http://bob:p%3Aw%40rd@1.2.3.4:80"), PL_PROXY_OK);
    CHECK(strcmp(cfg.user, "bob") == 0 && strcmp(cfg.pass, "p:w@rd") == 0);
    CHECK_EQ(pl_proxy_parse_url(&cfg, "http://bob:p@w@1.2.3.4:80"), PL_PROXY_OK);
    CHECK(strcmp(cfg.pass, "p@w") == 0);
    CHECK_EQ(pl_proxy_parse_url(&cfg, "http://bob@1.2.3.4:80"), PL_PROXY_OK);
    CHECK(cfg.auth && strcmp(cfg.user, "bob") == 0 && cfg.pass[0] == 0);
    static const char *bad[] = {
        NULL, "", "ftp://1.2.3.4:21", "http://", "http://proxy.example:3128", "http://1.2.3.4:0",
        "http://1.2.3.4:70000", "http://1.2.3.4:80/path", "socks4://1.2.3.4:1080", "http://u:%zz@1.2.3.4",
        "http://u:%00@1.2.3.4", "http://u:%4@1.2.3.4", "http://1.2.3.4:80/tcp", "HTTP://1.2.3.4",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK_EQ(pl_proxy_parse_url(&cfg, bad[i]), PL_PROXY_ERR_CONFIG);
    /* A user name longer than 255 bytes. */
    char url[400];
    memset(url, 0, sizeof url);
    memcpy(url, "http://", 7);
    memset(url + 7, 'u', 256);
    memcpy(url + 7 + 256, "@1.2.3.4", 8);
    CHECK_EQ(pl_proxy_parse_url(&cfg, url), PL_PROXY_ERR_CONFIG);
    memset(url + 7, 'u', 255);
    memcpy(url + 7 + 255, "@1.2.3.4", 9);
    CHECK_EQ(pl_proxy_parse_url(&cfg, url), PL_PROXY_OK);
    pl_proxy_config_wipe(&cfg);
    CHECK_EQ(cfg.kind, PL_PROXY_NONE);
}

static void test_password_wiped(void)
{
    pl_proxy_client c;
    uint8_t out[PL_PROXY_MAX_REQUEST];
    pl_addr t = target4();
    start(&c, PL_PROXY_HTTP, "alice", "hunter2hunter2", &t, out);
    /* The HTTP client holds the credentials only inside the request, which
     * is wiped when taken. */
    CHECK(memmem(&c, sizeof c, "hunter2hunter2", 14) == NULL);
    CHECK(memmem(&c, sizeof c, "aHVudGVyMmh1bnRlcj", 18) == NULL);
    pl_proxy_client_wipe(&c);
    const uint8_t zero[sizeof c] = {0};
    CHECK(memcmp(&c, zero, sizeof c) == 0);
}

static void test_strerror(void)
{
    for (int e = PL_PROXY_OK; e <= PL_PROXY_ERR_CONNECT; e++)
        CHECK(strcmp(pl_proxy_strerror((pl_proxy_err)e), "unknown error") != 0);
    CHECK(strcmp(pl_proxy_strerror((pl_proxy_err)99), "unknown error") == 0);
    CHECK(strcmp(pl_proxy_kind_name(PL_PROXY_SOCKS5), "socks5") == 0);
}

int main(void)
{
    RUN(test_http_request_bytes);
    RUN(test_http_success_leaves_tunnel_bytes);
    RUN(test_http_split_everywhere);
    RUN(test_http_status_codes);
    RUN(test_http_bad_replies);
    RUN(test_http_size_bound);
    RUN(test_socks_no_auth);
    RUN(test_socks_auth_and_ipv6);
    RUN(test_socks_whole_exchange_in_one_read);
    RUN(test_socks_split_everywhere);
    RUN(test_socks_reply_codes);
    RUN(test_socks_method_and_auth_answers);
    RUN(test_config_refusals);
    RUN(test_urls);
    RUN(test_password_wiped);
    RUN(test_strerror);
    return pl_test_summary();
}
