/* util.c - addresses, hex, the system and seeded generators, memory. */
#include "parley.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool pl_init(void) { return sodium_init() >= 0; }

/* ---- addresses --------------------------------------------------------- */

bool pl_addr_parse(pl_addr *out, const char *text, uint16_t default_port)
{
    char host[64], whole[80];
    const char *port_text = NULL;
    uint8_t transport = PL_ADDR_UDP;
    memset(out, 0, sizeof *out);
    if (!text) return false;
    size_t len = strlen(text);
    if (len == 0 || len >= sizeof whole) return false;
    /* An optional transport suffix: "/tcp" or "/udp". */
    if (len > 4 && (strcmp(text + len - 4, "/tcp") == 0 || strcmp(text + len - 4, "/udp") == 0)) {
        if (text[len - 3] == 't') transport = PL_ADDR_TCP;
        len -= 4;
    }
    memcpy(whole, text, len);
    whole[len] = 0;
    text = whole;
    if (len == 0 || len >= sizeof host) return false;

    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close) return false;
        size_t hl = (size_t)(close - text - 1);
        memcpy(host, text + 1, hl);
        host[hl] = 0;
        if (close[1] == ':') port_text = close + 2;
        else if (close[1] != 0) return false;
    } else {
        const char *colon = strchr(text, ':');
        if (colon && strchr(colon + 1, ':')) {
            /* Bare IPv6 without a port. */
            memcpy(host, text, len + 1);
        } else if (colon) {
            size_t hl = (size_t)(colon - text);
            memcpy(host, text, hl);
            host[hl] = 0;
            port_text = colon + 1;
        } else {
            memcpy(host, text, len + 1);
        }
    }

    uint16_t port = default_port;
    if (port_text) {
        char *end = NULL;
        if (!*port_text) return false;
        unsigned long p = strtoul(port_text, &end, 10);
        if (*end || p > 65535) return false;
        port = (uint16_t)p;
    }
    if (inet_pton(AF_INET, host, out->ip) == 1) {
        out->family = PL_AF_INET4;
    } else if (inet_pton(AF_INET6, host, out->ip) == 1) {
        out->family = PL_AF_INET6;
    } else {
        return false;
    }
    out->port = port;
    out->transport = transport;
    return true;
}

const char *pl_addr_format(const pl_addr *a, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    const char *suffix = a->transport == PL_ADDR_TCP ? "/tcp" : "";
    if (a->family == PL_AF_INET4) {
        inet_ntop(AF_INET, a->ip, ip, sizeof ip);
        snprintf(buf, cap, "%s:%u%s", ip, a->port, suffix);
    } else if (a->family == PL_AF_INET6) {
        inet_ntop(AF_INET6, a->ip, ip, sizeof ip);
        snprintf(buf, cap, "[%s]:%u%s", ip, a->port, suffix);
    } else {
        snprintf(buf, cap, "(none)");
    }
    return buf;
}

bool pl_addr_same_host(const pl_addr *a, const pl_addr *b)
{
    if (a->family != b->family) return false;
    size_t n = a->family == PL_AF_INET4 ? 4 : a->family == PL_AF_INET6 ? 16 : 0;
    return memcmp(a->ip, b->ip, n) == 0;
}

bool pl_addr_equal(const pl_addr *a, const pl_addr *b)
{
    return pl_addr_same_host(a, b) && a->port == b->port && a->transport == b->transport;
}

/* ---- hex ---------------------------------------------------------------- */

void pl_hex_encode(const uint8_t *in, size_t len, char *out)
{
    sodium_bin2hex(out, 2 * len + 1, in, len);
}

bool pl_hex_decode(const char *in, uint8_t *out, size_t len)
{
    size_t got = 0;
    const char *end = NULL;
    if (!in || strlen(in) != 2 * len) return false;
    if (sodium_hex2bin(out, len, in, 2 * len, NULL, &got, &end) != 0) return false;
    return got == len && end && *end == 0;
}

/* ---- randomness ----------------------------------------------------------- */

static void system_fill(void *ctx, uint8_t *buf, size_t len)
{
    (void)ctx;
    randombytes_buf(buf, len);
}

static const pl_rng system_rng = {NULL, system_fill};
const pl_rng *pl_rng_system(void) { return &system_rng; }

static void seeded_fill(void *ctx, uint8_t *buf, size_t len)
{
    pl_rng_seeded *r = ctx;
    static const uint8_t nonce[crypto_stream_chacha20_NONCEBYTES] = {0};
    while (len > 0) {
        if (r->used == sizeof r->buf) {
            /* One 64-byte ChaCha20 block per refill, at an explicit counter. */
            memset(r->buf, 0, sizeof r->buf);
            crypto_stream_chacha20_xor_ic(r->buf, r->buf, sizeof r->buf, nonce, r->block++, r->key);
            r->used = 0;
        }
        size_t n = sizeof r->buf - r->used;
        if (n > len) n = len;
        memcpy(buf, r->buf + r->used, n);
        r->used += n;
        buf += n;
        len -= n;
    }
}

void pl_rng_seeded_init(pl_rng_seeded *r, uint64_t seed)
{
    memset(r, 0, sizeof *r);
    for (int i = 0; i < 8; i++) r->key[i] = (uint8_t)(seed >> (8 * i));
    r->used = sizeof r->buf;
    r->rng.ctx = r;
    r->rng.fill = seeded_fill;
}

uint64_t pl_rng_u64(const pl_rng *rng)
{
    uint8_t b[8];
    uint64_t v = 0;
    rng->fill(rng->ctx, b, sizeof b);
    for (int i = 0; i < 8; i++) v = (v << 8) | b[i];
    return v;
}

uint64_t pl_rng_below(const pl_rng *rng, uint64_t bound)
{
    /* Rejection sampling: draw until the value falls below the largest
     * multiple of bound, so every residue is equally likely. */
    uint64_t limit = UINT64_MAX - (UINT64_MAX % bound);
    for (;;) {
        uint64_t v = pl_rng_u64(rng);
        if (v < limit) return v % bound;
    }
}

/* ---- memory --------------------------------------------------------------- */

static void *system_calloc(void *ctx, size_t count, size_t size)
{
    (void)ctx;
    return calloc(count, size);
}
static void system_free(void *ctx, void *ptr)
{
    (void)ctx;
    free(ptr);
}
static const pl_mem system_mem = {NULL, system_calloc, system_free};
const pl_mem *pl_mem_system(void) { return &system_mem; }

/* ---- names ---------------------------------------------------------------- */

/* Names that would let someone impersonate the service or its staff. */
static const char *const reserved_names[] = {
    "admin", "administrator", "root", "system", "operator", "support", "help", "info",
    "security", "abuse", "postmaster", "hostmaster", "webmaster", "parley", "ca",
    "authority", "gateway", "voicemail", "echo", "test", "null", "nobody", "anonymous",
    "everyone", "all", "supernode", "bootstrap", "official", "staff", "moderator",
};

static bool name_char_ok(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'; }
static bool name_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

pl_name_err pl_name_normalize(const char *in, char out[PL_NAME_MAX + 1])
{
    out[0] = 0;
    if (!in) return PL_NAME_ERR_LENGTH;
    size_t len = strnlen(in, PL_NAME_MAX + 1);
    if (len < PL_NAME_MIN || len > PL_NAME_MAX) return PL_NAME_ERR_LENGTH;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (!name_char_ok(c)) {
            out[0] = 0;
            return PL_NAME_ERR_CHARACTER;
        }
        out[i] = c;
    }
    out[len] = 0;
    if (!name_alnum(out[0]) || !name_alnum(out[len - 1])) return PL_NAME_ERR_EDGE;
    for (size_t i = 0; i < sizeof reserved_names / sizeof reserved_names[0]; i++)
        if (strcmp(out, reserved_names[i]) == 0) return PL_NAME_ERR_RESERVED;
    return PL_NAME_OK;
}

const char *pl_name_strerror(pl_name_err err)
{
    switch (err) {
    case PL_NAME_OK: return "ok";
    case PL_NAME_ERR_LENGTH: return "a name must be 3 to 32 characters long";
    case PL_NAME_ERR_CHARACTER: return "a name may contain only letters a-z, digits, '.', '_' and '-'";
    case PL_NAME_ERR_EDGE: return "a name must start and end with a letter or digit";
    case PL_NAME_ERR_RESERVED: return "that name is reserved";
    }
    return "unknown name error";
}
