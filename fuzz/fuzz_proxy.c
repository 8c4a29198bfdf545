/*
 * fuzz_proxy.c - hostile proxy replies into the HTTP CONNECT and SOCKS5
 * client handshakes (src/core/proxy.c).
 *
 * The first byte chooses the handshake: bit 0 HTTP or SOCKS5, bit 1 with
 * credentials, bit 2 an IPv6 target, bits 3-7 the size of the pieces the
 * rest is fed in (1..32 bytes: a reply split anywhere). The rest is what
 * the "proxy" sends. Checks besides crashes:
 *  - input never takes more bytes than it was given, takes every byte while
 *    the handshake goes on, and none once it is over;
 *  - an HTTP reply never takes more than PL_PROXY_MAX_HTTP_REPLY bytes;
 *  - a verdict sticks: later input and end of stream give the same error,
 *    and a finished handshake stays finished;
 *  - every request handed out fits PL_PROXY_MAX_REQUEST, and a SOCKS5
 *    request after the greeting is one of the three the protocol has.
 *
 * Set PARLEY_FUZZ_WRITE_SEEDS=dir to write the seed corpus and exit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley.h"
#include "proxy.h"

static void write_seed(const char *dir, const char *name, uint8_t selector, const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fputc(selector, f) == EOF || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static void write_seeds(const char *dir)
{
    /* selector: kind | auth << 1 | ipv6 << 2 | (piece - 1) << 3 */
    static const char ok[] = "HTTP/1.1 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n\x00\x02hi";
    static const char interim[] = "HTTP/1.0 100 Continue\n\nHTTP/1.0 200 OK\nVia: x\n\n";
    static const char denied[] = "HTTP/1.1 407 Proxy Authentication Required\r\n"
                                 "Proxy-Authenticate: Basic realm=\"p\"\r\nContent-Length: 0\r\n\r\n";
    static const char forbidden[] = "HTTP/1.0 403 Access violation\r\nServer: tinyproxy/1.11.1\r\n\r\n<html>";
    write_seed(dir, "http-ok", 0 | (31 << 3), ok, sizeof ok - 1);
    write_seed(dir, "http-ok-bytewise", 2 | 4, ok, sizeof ok - 1);
    write_seed(dir, "http-interim", 0 | (3 << 3), interim, sizeof interim - 1);
    write_seed(dir, "http-407", 2 | (31 << 3), denied, sizeof denied - 1);
    write_seed(dir, "http-403", 0 | (7 << 3), forbidden, sizeof forbidden - 1);
    static const uint8_t socks_none[] = {5, 0, 5, 0, 0, 1, 198, 51, 100, 20, 0x9c, 0x40, 0, 2, 'h', 'i'};
    static const uint8_t socks_auth[] = {5, 2, 1, 0, 5, 0, 0, 4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80};
    static const uint8_t socks_domain[] = {5, 0, 5, 0, 0, 3, 4, 'h', 'o', 's', 't', 0, 80};
    static const uint8_t socks_refused[] = {5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0};
    static const uint8_t socks_badauth[] = {5, 2, 1, 1};
    static const uint8_t socks_nomethod[] = {5, 0xff};
    write_seed(dir, "socks-none", 1 | (31 << 3), socks_none, sizeof socks_none);
    write_seed(dir, "socks-auth-v6", 1 | 2 | 4 | (1 << 3), socks_auth, sizeof socks_auth);
    write_seed(dir, "socks-domain", 1, socks_domain, sizeof socks_domain);
    write_seed(dir, "socks-refused", 1 | (5 << 3), socks_refused, sizeof socks_refused);
    write_seed(dir, "socks-bad-credentials", 1 | 2, socks_badauth, sizeof socks_badauth);
    write_seed(dir, "socks-no-method", 1, socks_nomethod, sizeof socks_nomethod);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!pl_init()) abort();
    const char *dir = getenv("PARLEY_FUZZ_WRITE_SEEDS");
    if (dir) {
        write_seeds(dir);
        exit(0);
    }
    return 0;
}

/* A SOCKS5 request after the greeting: user/pass sub-negotiation (version
 * 1) or CONNECT (version 5, command 1). */
static void check_socks_request(const uint8_t *out, size_t n)
{
    size_t off = 0;
    while (off < n) {
        if (out[off] == 1) {
            if (off + 2 > n) abort();
            size_t ul = out[off + 1];
            if (ul == 0 || off + 2 + ul + 1 > n) abort();
            size_t pl = out[off + 2 + ul];
            if (pl == 0) abort();
            off += 3 + ul + pl;
        } else if (out[off] == 5) {
            if (off + 4 > n || out[off + 1] != 1 || out[off + 2] != 0) abort();
            off += out[off + 3] == 1 ? 10 : 22;
        } else {
            abort();
        }
    }
    if (off != n) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    pl_proxy_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.kind = (sel & 1) ? PL_PROXY_SOCKS5 : PL_PROXY_HTTP;
    if (sel & 2) {
        cfg.auth = true;
        strcpy(cfg.user, "alice");
        strcpy(cfg.pass, "s3cret");
    }
    pl_addr target;
    if (!pl_addr_parse(&target, (sel & 4) ? "[2001:db8::7]:443" : "203.0.113.50:4000", 0)) abort();
    size_t piece = 1 + (size_t)(sel >> 3);

    static pl_proxy_client c;
    if (pl_proxy_client_init(&c, &cfg, &target) != PL_PROXY_OK) abort();
    uint8_t out[PL_PROXY_MAX_REQUEST];
    size_t n = pl_proxy_client_output(&c, out, sizeof out);
    if (n == 0 || n > PL_PROXY_MAX_REQUEST) abort();

    size_t off = 0, taken = 0;
    pl_proxy_err verdict = PL_PROXY_OK;
    bool done = false;
    while (off < size) {
        size_t len = size - off < piece ? size - off : piece;
        size_t used = 12345;
        pl_proxy_err err = pl_proxy_client_input(&c, data + off, len, &used);
        if (used > len) abort();
        if (verdict != PL_PROXY_OK && (err != verdict || used != 0)) abort(); /* the verdict sticks */
        if (done && (err != PL_PROXY_OK || used != 0 || !pl_proxy_client_done(&c))) abort();
        if (err == PL_PROXY_OK && !pl_proxy_client_done(&c) && used != len) abort(); /* all taken while going on */
        if (err != PL_PROXY_OK && pl_proxy_client_done(&c)) abort();
        taken += used;
        if (cfg.kind == PL_PROXY_HTTP && taken > PL_PROXY_MAX_HTTP_REPLY) abort();
        n = pl_proxy_client_output(&c, out, sizeof out);
        if (n > PL_PROXY_MAX_REQUEST) abort();
        if (n > 0) {
            if (cfg.kind == PL_PROXY_HTTP) abort(); /* HTTP sends one request */
            check_socks_request(out, n);
        }
        if (err != PL_PROXY_OK) verdict = err;
        if (pl_proxy_client_done(&c)) done = true;
        off += len;
    }
    pl_proxy_err end = pl_proxy_client_eof(&c);
    if (done && end != PL_PROXY_OK) abort();
    if (verdict != PL_PROXY_OK && end != verdict) abort();
    if (!done && verdict == PL_PROXY_OK && end != PL_PROXY_ERR_CLOSED) abort();
    (void)pl_proxy_strerror(end);
    (void)pl_proxy_client_reply_code(&c);
    pl_proxy_client_wipe(&c);
    return 0;
}
