/*
 * fuzz_stun.c - hostile bytes into the STUN codec, the demultiplexer and the
 * Binding responder.
 *
 * The first byte chooses which of the server's addresses the datagram
 * "arrived on" (low three bits: the four of a two-address server, or one
 * that is not the server's) and whether the client is IPv4 or IPv6 (bit 3);
 * the rest is the datagram. Checks besides crashes:
 *  - pl_stun_classify and pl_stun_decode agree on what is STUN;
 *  - a message that decodes encodes again, and that encoding decodes to the
 *    same fields;
 *  - the responder never answers a response or an indication; what it
 *    sends decodes, is a success or error response with the request's
 *    transaction id, goes out from one of the server's own addresses, and
 *    stays small (no amplification beyond a fixed size).
 *
 * Set PARLEY_FUZZ_WRITE_SEEDS=dir to write the seed corpus and exit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley.h"
#include "stun.h"

static pl_stun_server server;
static pl_addr locals[5];

static pl_addr addr(const char *text)
{
    pl_addr a;
    if (!pl_addr_parse(&a, text, 0)) abort();
    return a;
}

static void write_seed(const char *dir, const char *name, uint8_t selector, const uint8_t *data, size_t len)
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
    uint8_t buf[256];
    uint8_t txid[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    size_t len = pl_stun_binding_request(buf, sizeof buf, txid, 0);
    write_seed(dir, "binding", 0, buf, len);
    len = pl_stun_binding_request(buf, sizeof buf, txid, PL_STUN_CHANGE_IP | PL_STUN_CHANGE_PORT);
    write_seed(dir, "binding_change_both", 1, buf, len);
    len = pl_stun_binding_request(buf, sizeof buf, txid, PL_STUN_CHANGE_PORT);
    memcpy(buf + 4, "\xde\xad\xbe\xef", 4);
    write_seed(dir, "classic_change_port", 2, buf, len);
    /* A request with FINGERPRINT, and the answers a responder gives. */
    pl_stun_msg m;
    memset(&m, 0, sizeof m);
    m.method = PL_STUN_METHOD_BINDING;
    m.cookie = PL_STUN_MAGIC_COOKIE;
    memcpy(m.txid, txid, 12);
    m.attrs = PL_STUN_HAS_FINGERPRINT | PL_STUN_HAS_SOFTWARE;
    m.software = (const uint8_t *)"fuzz";
    m.software_len = 4;
    if (pl_stun_encode(&m, buf, sizeof buf, &len) != PL_STUN_OK) abort();
    write_seed(dir, "binding_fingerprint", 8, buf, len);
    uint8_t out[PL_STUN_MAX_RESPONSE];
    pl_stun_reply r;
    pl_addr client = addr("192.0.2.7:40000");
    if (pl_stun_respond(&server, &locals[0], &client, buf, len, out, sizeof out, &r) != PL_STUN_SEND) abort();
    write_seed(dir, "success", 0, out, r.len);
    /* A request with an unknown comprehension-required attribute. */
    len = pl_stun_binding_request(buf, sizeof buf, txid, 0);
    memcpy(buf + len, "\x00\x24\x00\x00", 4);
    buf[3] = 4;
    write_seed(dir, "unknown_attribute", 3, buf, len + 4);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!pl_init()) abort();
    memset(&server, 0, sizeof server);
    server.primary = addr("203.0.113.10:3478");
    server.alternate = addr("198.51.100.10:3479");
    locals[0] = addr("203.0.113.10:3478");
    locals[1] = addr("203.0.113.10:3479");
    locals[2] = addr("198.51.100.10:3478");
    locals[3] = addr("198.51.100.10:3479");
    locals[4] = addr("192.0.2.99:3478");
    const char *dir = getenv("PARLEY_FUZZ_WRITE_SEEDS");
    if (dir) {
        write_seeds(dir);
        exit(0);
    }
    return 0;
}

static bool is_server_address(const pl_addr *a)
{
    for (int i = 0; i < 4; i++)
        if (pl_addr_equal(a, &locals[i])) return true;
    return false;
}

static void check_round_trip(const pl_stun_msg *m)
{
    pl_stun_msg copy = *m, back;
    copy.attrs &= ~PL_STUN_HAS_MESSAGE_INTEGRITY; /* seen, never written */
    if (copy.n_unknown_attrs == 0) copy.attrs &= ~PL_STUN_HAS_UNKNOWN_ATTRIBUTES;
    static uint8_t buf[65536 + 64];
    size_t len = 0;
    if (pl_stun_encode(&copy, buf, sizeof buf, &len) != PL_STUN_OK) abort();
    if (pl_stun_decode(&back, buf, len) != PL_STUN_OK) abort();
    /* An odd classic UNKNOWN-ATTRIBUTES list comes back one longer. */
    if (pl_stun_is_classic(&copy) && copy.n_unknown_attrs % 2 && back.n_unknown_attrs == copy.n_unknown_attrs + 1)
        back.n_unknown_attrs--;
    if (back.method != copy.method || back.cls != copy.cls || back.cookie != copy.cookie ||
        memcmp(back.txid, copy.txid, 12) != 0 || back.attrs != copy.attrs || back.change_flags != copy.change_flags ||
        back.error_code != copy.error_code || back.reason_len != copy.reason_len ||
        back.software_len != copy.software_len || back.n_unknown_attrs != copy.n_unknown_attrs ||
        !pl_addr_equal(&back.mapped, &copy.mapped) || !pl_addr_equal(&back.xor_mapped, &copy.xor_mapped) ||
        !pl_addr_equal(&back.response_origin, &copy.response_origin) ||
        !pl_addr_equal(&back.other_address, &copy.other_address) ||
        !pl_addr_equal(&back.source_address, &copy.source_address) ||
        !pl_addr_equal(&back.changed_address, &copy.changed_address) ||
        memcmp(back.unknown_attrs, copy.unknown_attrs, 2 * (size_t)copy.n_unknown_attrs) != 0 ||
        (copy.reason_len && memcmp(back.reason, copy.reason, copy.reason_len) != 0) ||
        (copy.software_len && memcmp(back.software, copy.software, copy.software_len) != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t sel = data[0];
    data++;
    size--;

    pl_stun_msg m;
    pl_stun_err err = pl_stun_decode(&m, data, size);
    pl_stun_kind kind = pl_stun_classify(data, size);
    if ((err == PL_STUN_ERR_NOT_STUN) != (kind == PL_STUN_KIND_OTHER && (size < 20 || (data[0] & 0xc0) ||
                                                                        ((size_t)data[2] << 8 | data[3]) + 20 != size ||
                                                                        data[3] % 4)))
        abort();
    if (kind == PL_STUN_KIND_STUN && m.cookie != PL_STUN_MAGIC_COOKIE) abort();
    if (err == PL_STUN_OK) check_round_trip(&m);

    const pl_addr *local = &locals[(sel & 7) % 5];
    pl_addr client = addr((sel & 8) ? "[2001:db8::5]:9" : "192.0.2.5:9");
    uint8_t out[PL_STUN_MAX_RESPONSE];
    pl_stun_reply r;
    pl_stun_verdict v = pl_stun_respond(&server, local, &client, data, size, out, sizeof out, &r);
    if (v == PL_STUN_DROP) {
        if (r.len != 0 || r.why == PL_STUN_DROP_NONE) abort();
        return 0;
    }
    if (err == PL_STUN_ERR_NOT_STUN || err == PL_STUN_ERR_FINGERPRINT || m.cls != PL_STUN_REQUEST) abort();
    if (!is_server_address(local) || !is_server_address(&r.from) || r.len > 128 || r.len > sizeof out) abort();
    pl_stun_msg a;
    if (pl_stun_decode(&a, out, r.len) != PL_STUN_OK) abort();
    if (a.cls != (r.error_code ? PL_STUN_ERROR : PL_STUN_SUCCESS) || a.method != m.method ||
        a.cookie != m.cookie || memcmp(a.txid, m.txid, 12) != 0)
        abort();
    if (r.error_code == 0 && !pl_addr_equal(pl_stun_is_classic(&a) ? &a.mapped : &a.xor_mapped, &client)) abort();
    if (r.error_code != 0 && !pl_addr_equal(&r.from, local)) abort();
    return 0;
}
