/* test_stun.c - the STUN codec (RFC 8489) against the RFC 5769 test vectors,
 * round trips, every refusal, the Binding responder's answers (RFC 5780
 * attributes, CHANGE-REQUEST, 400 and 420, RFC 3489 clients) and the
 * demultiplexer that tells STUN from Parley's secure sessions. */
#include <stdlib.h>

#include "parley.h"
#include "stun.h"
#include "test.h"
#include "wire.h"

/* ---- RFC 5769 test vectors ------------------------------------------------------ */

/* 2.1: a request with SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
 * MESSAGE-INTEGRITY and FINGERPRINT. */
static const uint8_t rfc5769_request[108] = {
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87,
    0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73, 0x74, 0x20, 0x63, 0x6c,
    0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f,
    0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76,
    0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
    0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf};

/* 2.2: a success response, XOR-MAPPED-ADDRESS 192.0.2.1:32853. Its SOFTWARE
 * value is padded with spaces, not zeros. */
static const uint8_t rfc5769_response4[80] = {
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96};

/* 2.3: the same with XOR-MAPPED-ADDRESS [2001:db8:1234:5678:11:2233:4455:6677]:32853. */
static const uint8_t rfc5769_response6[92] = {
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87,
    0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20,
    0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25,
    0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14, 0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1,
    0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb,
    0x0b, 0x4c};

static const uint8_t rfc5769_txid[12] = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};

static pl_addr addr(const char *text)
{
    pl_addr a;
    if (!pl_addr_parse(&a, text, 0)) abort();
    return a;
}

static bool text_is(const uint8_t *p, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(p, want, len) == 0;
}

static void test_crc32(void)
{
    CHECK_EQ(pl_stun_crc32((const uint8_t *)"123456789", 9), 0xCBF43926u);
    CHECK_EQ(pl_stun_crc32(NULL, 0), 0);
}

static void test_rfc5769_request(void)
{
    pl_stun_msg m;
    CHECK_EQ(pl_stun_decode(&m, rfc5769_request, sizeof rfc5769_request), PL_STUN_OK);
    CHECK_EQ(m.cls, PL_STUN_REQUEST);
    CHECK_EQ(m.method, PL_STUN_METHOD_BINDING);
    CHECK_EQ(m.cookie, PL_STUN_MAGIC_COOKIE);
    CHECK(memcmp(m.txid, rfc5769_txid, 12) == 0);
    CHECK(m.attrs & PL_STUN_HAS_FINGERPRINT);
    CHECK(m.attrs & PL_STUN_HAS_MESSAGE_INTEGRITY);
    CHECK(m.attrs & PL_STUN_HAS_SOFTWARE);
    CHECK(text_is(m.software, m.software_len, "STUN test client"));
    /* PRIORITY (0x0024) is comprehension-required and not ours; ICE-
     * CONTROLLED (0x8029) is optional; USERNAME is understood. */
    CHECK_EQ(m.n_not_understood, 1);
    CHECK_EQ(m.not_understood[0], 0x0024);
    CHECK_EQ(pl_stun_classify(rfc5769_request, sizeof rfc5769_request), PL_STUN_KIND_STUN);
}

static void test_rfc5769_responses(void)
{
    pl_stun_msg m;
    CHECK_EQ(pl_stun_decode(&m, rfc5769_response4, sizeof rfc5769_response4), PL_STUN_OK);
    CHECK_EQ(m.cls, PL_STUN_SUCCESS);
    CHECK_EQ(m.method, PL_STUN_METHOD_BINDING);
    CHECK(memcmp(m.txid, rfc5769_txid, 12) == 0);
    CHECK(m.attrs & PL_STUN_HAS_XOR_MAPPED);
    pl_addr want = addr("192.0.2.1:32853");
    CHECK(pl_addr_equal(&m.xor_mapped, &want));
    CHECK(text_is(m.software, m.software_len, "test vector"));
    CHECK(m.attrs & PL_STUN_HAS_FINGERPRINT);
    CHECK_EQ(m.n_not_understood, 0);

    CHECK_EQ(pl_stun_decode(&m, rfc5769_response6, sizeof rfc5769_response6), PL_STUN_OK);
    want = addr("[2001:db8:1234:5678:11:2233:4455:6677]:32853");
    CHECK(m.attrs & PL_STUN_HAS_XOR_MAPPED);
    CHECK(pl_addr_equal(&m.xor_mapped, &want));
    CHECK(m.attrs & PL_STUN_HAS_FINGERPRINT);
}

/* FINGERPRINT covers every byte before it, so no single flipped bit goes
 * unnoticed while it is there. */
static void test_every_bit_flip_is_caught(void)
{
    const uint8_t *vectors[3] = {rfc5769_request, rfc5769_response4, rfc5769_response6};
    size_t sizes[3] = {sizeof rfc5769_request, sizeof rfc5769_response4, sizeof rfc5769_response6};
    uint8_t buf[128];
    for (int v = 0; v < 3; v++) {
        for (size_t i = 0; i < sizes[v] * 8; i++) {
            memcpy(buf, vectors[v], sizes[v]);
            buf[i / 8] ^= (uint8_t)(1u << (i % 8));
            pl_stun_msg m;
            pl_stun_err e = pl_stun_decode(&m, buf, sizes[v]);
            /* Refused, or (a flip in FINGERPRINT's type, or a length that
             * now swallows it) a message that no longer carries one. */
            CHECK(e != PL_STUN_OK || !(m.attrs & PL_STUN_HAS_FINGERPRINT));
        }
    }
}

/* ---- round trips ----------------------------------------------------------------- */

static void fill_all(pl_stun_msg *m, bool v6)
{
    memset(m, 0, sizeof *m);
    m->method = PL_STUN_METHOD_BINDING;
    m->cls = PL_STUN_ERROR;
    m->cookie = PL_STUN_MAGIC_COOKIE;
    for (int i = 0; i < 12; i++) m->txid[i] = (uint8_t)(0xa0 + i);
    m->attrs = PL_STUN_HAS_MAPPED | PL_STUN_HAS_XOR_MAPPED | PL_STUN_HAS_RESPONSE_ORIGIN | PL_STUN_HAS_OTHER_ADDRESS |
               PL_STUN_HAS_SOURCE_ADDRESS | PL_STUN_HAS_CHANGED_ADDRESS | PL_STUN_HAS_CHANGE_REQUEST |
               PL_STUN_HAS_ERROR_CODE | PL_STUN_HAS_UNKNOWN_ATTRIBUTES | PL_STUN_HAS_SOFTWARE |
               PL_STUN_HAS_FINGERPRINT;
    m->mapped = addr(v6 ? "[2001:db8::1]:1" : "192.0.2.1:1");
    m->xor_mapped = addr(v6 ? "[2001:db8::2]:65535" : "198.51.100.2:65535");
    m->response_origin = addr("203.0.113.3:3478");
    m->other_address = addr(v6 ? "[2001:db8::4]:3479" : "203.0.113.4:3479");
    m->source_address = addr("203.0.113.5:5");
    m->changed_address = addr("203.0.113.6:6");
    m->change_flags = PL_STUN_CHANGE_IP | PL_STUN_CHANGE_PORT;
    m->error_code = 420;
    m->reason = (const uint8_t *)"Unknown Attribute";
    m->reason_len = 17;
    m->unknown_attrs[0] = 0x0024;
    m->unknown_attrs[1] = 0x0027;
    m->unknown_attrs[2] = 0x7fff;
    m->n_unknown_attrs = 3;
    m->software = (const uint8_t *)"parley";
    m->software_len = 6;
}

static void same_fields(const pl_stun_msg *a, const pl_stun_msg *b)
{
    CHECK_EQ(a->method, b->method);
    CHECK_EQ(a->cls, b->cls);
    CHECK_EQ(a->cookie, b->cookie);
    CHECK(memcmp(a->txid, b->txid, 12) == 0);
    CHECK_EQ(a->attrs, b->attrs);
    CHECK(pl_addr_equal(&a->mapped, &b->mapped));
    CHECK(pl_addr_equal(&a->xor_mapped, &b->xor_mapped));
    CHECK(pl_addr_equal(&a->response_origin, &b->response_origin));
    CHECK(pl_addr_equal(&a->other_address, &b->other_address));
    CHECK(pl_addr_equal(&a->source_address, &b->source_address));
    CHECK(pl_addr_equal(&a->changed_address, &b->changed_address));
    CHECK_EQ(a->change_flags, b->change_flags);
    CHECK_EQ(a->error_code, b->error_code);
    CHECK_EQ(a->reason_len, b->reason_len);
    CHECK(a->reason_len == 0 || memcmp(a->reason, b->reason, a->reason_len) == 0);
    CHECK_EQ(a->software_len, b->software_len);
    CHECK(a->software_len == 0 || memcmp(a->software, b->software, a->software_len) == 0);
    CHECK_EQ(a->n_unknown_attrs, b->n_unknown_attrs);
    CHECK(memcmp(a->unknown_attrs, b->unknown_attrs, a->n_unknown_attrs * 2) == 0);
}

static void test_round_trip(void)
{
    for (int v6 = 0; v6 < 2; v6++) {
        for (int classic = 0; classic < 2; classic++) {
            pl_stun_msg m, back;
            fill_all(&m, v6);
            if (classic) m.cookie = 0x01020304;
            uint8_t buf[512];
            size_t len;
            CHECK_EQ(pl_stun_encode(&m, buf, sizeof buf, &len), PL_STUN_OK);
            CHECK_EQ(len % 4, 0);
            CHECK_EQ(pl_stun_classify(buf, len), classic ? PL_STUN_KIND_OTHER : PL_STUN_KIND_STUN); /* a response */
            CHECK_EQ(pl_stun_decode(&back, buf, len), PL_STUN_OK);
            /* RFC 3489 makes an odd UNKNOWN-ATTRIBUTES list even by
             * repeating the last entry; RFC 8489 pads it. */
            CHECK_EQ(back.n_unknown_attrs, classic ? 4 : 3);
            if (classic) CHECK_EQ(back.unknown_attrs[3], 0x7fff);
            back.n_unknown_attrs = 3;
            same_fields(&m, &back);
            /* Every shorter buffer is refused, never overrun. */
            for (size_t cap = 0; cap < len; cap++) {
                size_t l2 = 99;
                CHECK_EQ(pl_stun_encode(&m, buf, cap, &l2), PL_STUN_ERR_BUFFER);
                CHECK_EQ(l2, 0);
            }
        }
    }
    /* Every class and the highest method survive the type's bit shuffle. */
    for (uint8_t cls = 0; cls < 4; cls++) {
        uint16_t methods[3] = {0x001, 0xfff, 0xa5a};
        for (int i = 0; i < 3; i++) {
            pl_stun_msg m, back;
            memset(&m, 0, sizeof m);
            m.cls = cls;
            m.method = methods[i];
            m.cookie = PL_STUN_MAGIC_COOKIE;
            uint8_t buf[64];
            size_t len;
            CHECK_EQ(pl_stun_encode(&m, buf, sizeof buf, &len), PL_STUN_OK);
            CHECK_EQ(len, 20);
            CHECK_EQ(buf[0] & 0xc0, 0);
            CHECK_EQ(pl_stun_decode(&back, buf, len), PL_STUN_OK);
            CHECK_EQ(back.cls, cls);
            CHECK_EQ(back.method, methods[i]);
        }
    }
    /* A Binding request is 0x0001 with the cookie. */
    uint8_t req[28];
    uint8_t txid[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    CHECK_EQ(pl_stun_binding_request(req, sizeof req, txid, 0), 20);
    CHECK(req[0] == 0 && req[1] == 1 && req[2] == 0 && req[3] == 0);
    CHECK_EQ(pl_get_u32be(req + 4), PL_STUN_MAGIC_COOKIE);
    CHECK(memcmp(req + 8, txid, 12) == 0);
    CHECK_EQ(pl_stun_binding_request(req, sizeof req, txid, PL_STUN_CHANGE_PORT), 28);
    CHECK_EQ(pl_get_u32be(req + 24), PL_STUN_CHANGE_PORT);
    CHECK_EQ(pl_stun_binding_request(req, 27, txid, PL_STUN_CHANGE_PORT), 0);
}

static void test_encode_refusals(void)
{
    pl_stun_msg m;
    uint8_t buf[2048];
    size_t len;
    fill_all(&m, false);
    m.method = 0x1000;
    CHECK_EQ(pl_stun_encode(&m, buf, sizeof buf, &len), PL_STUN_ERR_INVALID);
    fill_all(&m, false);
    m.cls = 4;
    CHECK_EQ(pl_stun_encode(&m, buf, sizeof buf, &len), PL_STUN_ERR_INVALID);
    fill_all(&m, false);
    m.error_code = 299;
    CHECK_EQ(pl_stun_encode(&m, buf, sizeof buf, &len), PL_STUN_ERR_INVALID);
    m.error_code = 700;
    CHECK_EQ(pl_stun_encode(&m, buf, sizeof buf, &len), PL_STUN_ERR_INVALID);
    fill_all(&m, false);
    m.reason_len = PL_STUN_TEXT_MAX + 1;
    CHECK_EQ(pl_stun_encode(&m, buf, sizeof buf, &len), PL_STUN_ERR_INVALID);
    fill_all(&m, false);
    m.software_len = PL_STUN_TEXT_MAX + 1;
    CHECK_EQ(pl_stun_encode(&m, buf, sizeof buf, &len), PL_STUN_ERR_INVALID);
    fill_all(&m, false);
    m.software = NULL;
    CHECK_EQ(pl_stun_encode(&m, buf, sizeof buf, &len), PL_STUN_ERR_INVALID);
    fill_all(&m, false);
    m.n_unknown_attrs = PL_STUN_MAX_UNKNOWN + 1;
    CHECK_EQ(pl_stun_encode(&m, buf, sizeof buf, &len), PL_STUN_ERR_INVALID);
    m.n_unknown_attrs = 0;
    CHECK_EQ(pl_stun_encode(&m, buf, sizeof buf, &len), PL_STUN_ERR_INVALID);
    fill_all(&m, false);
    m.other_address.family = PL_AF_NONE;
    CHECK_EQ(pl_stun_encode(&m, buf, sizeof buf, &len), PL_STUN_ERR_INVALID);
}

/* ---- decode refusals --------------------------------------------------------------- */

/* A request with one attribute (type, value) after the header. */
static size_t with_attr(uint8_t *buf, uint16_t type, const uint8_t *value, uint16_t vlen)
{
    uint8_t txid[12] = {0};
    size_t len = pl_stun_binding_request(buf, 64, txid, 0);
    buf[len++] = (uint8_t)(type >> 8);
    buf[len++] = (uint8_t)type;
    buf[len++] = (uint8_t)(vlen >> 8);
    buf[len++] = (uint8_t)vlen;
    memcpy(buf + len, value, vlen);
    len += vlen;
    while (len % 4) buf[len++] = 0;
    buf[2] = (uint8_t)((len - 20) >> 8);
    buf[3] = (uint8_t)(len - 20);
    return len;
}

static void test_decode_refusals(void)
{
    pl_stun_msg m;
    uint8_t buf[2048];
    uint8_t txid[12] = {7};
    size_t len = pl_stun_binding_request(buf, sizeof buf, txid, 0);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_OK);
    /* The header. */
    CHECK_EQ(pl_stun_decode(&m, buf, 19), PL_STUN_ERR_NOT_STUN);
    CHECK_EQ(pl_stun_decode(&m, buf, 0), PL_STUN_ERR_NOT_STUN);
    buf[0] = 0x40;
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_ERR_NOT_STUN);
    buf[0] = 0x80;
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_ERR_NOT_STUN);
    buf[0] = 0;
    buf[3] = 2; /* not a multiple of 4 */
    memset(buf + 20, 0, 8);
    CHECK_EQ(pl_stun_decode(&m, buf, 22), PL_STUN_ERR_NOT_STUN);
    buf[3] = 4; /* says 4, has 0 or 8 */
    CHECK_EQ(pl_stun_decode(&m, buf, 20), PL_STUN_ERR_NOT_STUN);
    CHECK_EQ(pl_stun_decode(&m, buf, 28), PL_STUN_ERR_NOT_STUN);
    /* An attribute header cut short: 4 bytes of body, the value overruns. */
    buf[20] = 0x80;
    buf[21] = 0x22;
    buf[22] = 0;
    buf[23] = 1;
    CHECK_EQ(pl_stun_decode(&m, buf, 24), PL_STUN_ERR_MALFORMED);
    CHECK_EQ(m.cls, PL_STUN_REQUEST); /* the header was still read */
    CHECK(memcmp(m.txid, txid, 12) == 0);

    /* Address attributes: wrong lengths, families and their mismatch. */
    uint8_t v4[8] = {0, 1, 0x12, 0x34, 192, 0, 2, 1}, v6[20] = {0, 2, 0x12, 0x34};
    len = with_attr(buf, PL_STUN_ATTR_XOR_MAPPED_ADDRESS, v4, 8);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_OK);
    len = with_attr(buf, PL_STUN_ATTR_XOR_MAPPED_ADDRESS, v4, 7);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_ERR_MALFORMED);
    len = with_attr(buf, PL_STUN_ATTR_OTHER_ADDRESS, v6, 20);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_OK);
    len = with_attr(buf, PL_STUN_ATTR_OTHER_ADDRESS, v6, 8); /* family 2 with 4 address bytes */
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_ERR_MALFORMED);
    v4[1] = 2;
    len = with_attr(buf, PL_STUN_ATTR_MAPPED_ADDRESS, v4, 8);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_ERR_MALFORMED);
    v4[1] = 3;
    len = with_attr(buf, PL_STUN_ATTR_MAPPED_ADDRESS, v4, 8);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_ERR_MALFORMED);
    v6[1] = 1;
    len = with_attr(buf, PL_STUN_ATTR_RESPONSE_ORIGIN, v6, 20);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_ERR_MALFORMED);
    /* CHANGE-REQUEST is exactly 4 bytes. */
    uint8_t cr[8] = {0, 0, 0, 6};
    len = with_attr(buf, PL_STUN_ATTR_CHANGE_REQUEST, cr, 3);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_ERR_MALFORMED);
    len = with_attr(buf, PL_STUN_ATTR_CHANGE_REQUEST, cr, 8);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_ERR_MALFORMED);
    len = with_attr(buf, PL_STUN_ATTR_CHANGE_REQUEST, cr, 4);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_OK);
    CHECK_EQ(m.change_flags, PL_STUN_CHANGE_IP | PL_STUN_CHANGE_PORT);
    /* ERROR-CODE: class 3..6, number 0..99, a bounded reason. */
    uint8_t ec[4 + PL_STUN_TEXT_MAX + 1] = {0, 0, 4, 20};
    len = with_attr(buf, PL_STUN_ATTR_ERROR_CODE, ec, 4);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_OK);
    CHECK_EQ(m.error_code, 420);
    len = with_attr(buf, PL_STUN_ATTR_ERROR_CODE, ec, 3);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_ERR_MALFORMED);
    len = with_attr(buf, PL_STUN_ATTR_ERROR_CODE, ec, 4 + PL_STUN_TEXT_MAX);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_OK);
    len = with_attr(buf, PL_STUN_ATTR_ERROR_CODE, ec, 4 + PL_STUN_TEXT_MAX + 1);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_ERR_MALFORMED);
    ec[2] = 2;
    len = with_attr(buf, PL_STUN_ATTR_ERROR_CODE, ec, 4);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_ERR_MALFORMED);
    ec[2] = 7;
    len = with_attr(buf, PL_STUN_ATTR_ERROR_CODE, ec, 4);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_ERR_MALFORMED);
    ec[2] = 4;
    ec[3] = 100;
    len = with_attr(buf, PL_STUN_ATTR_ERROR_CODE, ec, 4);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_ERR_MALFORMED);
    /* UNKNOWN-ATTRIBUTES is a list of 16-bit types. */
    uint8_t ua[4] = {0, 0x24, 0, 0x27};
    len = with_attr(buf, PL_STUN_ATTR_UNKNOWN_ATTRIBUTES, ua, 3);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_ERR_MALFORMED);
    len = with_attr(buf, PL_STUN_ATTR_UNKNOWN_ATTRIBUTES, ua, 4);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_OK);
    CHECK_EQ(m.n_unknown_attrs, 2);
    CHECK_EQ(m.unknown_attrs[1], 0x0027);
    /* SOFTWARE at most PL_STUN_TEXT_MAX bytes. */
    uint8_t sw[PL_STUN_TEXT_MAX + 1];
    memset(sw, 'a', sizeof sw);
    len = with_attr(buf, PL_STUN_ATTR_SOFTWARE, sw, PL_STUN_TEXT_MAX);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_OK);
    len = with_attr(buf, PL_STUN_ATTR_SOFTWARE, sw, PL_STUN_TEXT_MAX + 1);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_ERR_MALFORMED);
}

static void test_fingerprint_rules(void)
{
    pl_stun_msg m, back;
    uint8_t buf[128];
    size_t len;
    memset(&m, 0, sizeof m);
    m.cls = PL_STUN_REQUEST;
    m.method = PL_STUN_METHOD_BINDING;
    m.cookie = PL_STUN_MAGIC_COOKIE;
    m.attrs = PL_STUN_HAS_FINGERPRINT;
    CHECK_EQ(pl_stun_encode(&m, buf, sizeof buf, &len), PL_STUN_OK);
    CHECK_EQ(len, 28);
    CHECK_EQ(pl_stun_decode(&back, buf, len), PL_STUN_OK);
    CHECK(back.attrs & PL_STUN_HAS_FINGERPRINT);
    /* Not last: an attribute after it. */
    memcpy(buf + 28, "\x80\x22\x00\x00", 4);
    buf[3] = 12;
    CHECK_EQ(pl_stun_decode(&back, buf, 32), PL_STUN_ERR_FINGERPRINT);
    /* A FINGERPRINT of the wrong size. */
    len = with_attr(buf, PL_STUN_ATTR_FINGERPRINT, (const uint8_t *)"12345678", 8);
    CHECK_EQ(pl_stun_decode(&back, buf, len), PL_STUN_ERR_MALFORMED);
    /* Right size, wrong value. */
    len = with_attr(buf, PL_STUN_ATTR_FINGERPRINT, (const uint8_t *)"1234", 4);
    CHECK_EQ(pl_stun_decode(&back, buf, len), PL_STUN_ERR_FINGERPRINT);
}

/* What RFC 8489 asks receivers to tolerate. */
static void test_leniency(void)
{
    pl_stun_msg m;
    uint8_t buf[128];
    /* Padding of any value (RFC 5769's own vectors pad with spaces). */
    size_t len = with_attr(buf, PL_STUN_ATTR_SOFTWARE, (const uint8_t *)"abc", 3);
    buf[len - 1] = 0xff;
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_OK);
    CHECK(text_is(m.software, m.software_len, "abc"));
    /* The first of two XOR-MAPPED-ADDRESS counts. */
    uint8_t v4[8] = {0, 1, 0x12, 0x34, 1, 2, 3, 4};
    len = with_attr(buf, PL_STUN_ATTR_XOR_MAPPED_ADDRESS, v4, 8);
    memcpy(buf + len, buf + 20, 12);
    buf[len + 11] = 9;
    len += 12;
    buf[3] = (uint8_t)(len - 20);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_OK);
    CHECK_EQ(m.xor_mapped.ip[3], 4 ^ 0x42);
    /* After MESSAGE-INTEGRITY, other attributes are ignored: neither the
     * unknown 0x0024 nor a MAPPED-ADDRESS. */
    uint8_t mi[20] = {0};
    len = with_attr(buf, PL_STUN_ATTR_MESSAGE_INTEGRITY, mi, 20);
    memcpy(buf + len, "\x00\x24\x00\x04\x00\x00\x00\x01", 8);
    len += 8;
    memcpy(buf + len, "\x00\x01\x00\x08\x00\x01\x00\x05\x01\x02\x03\x04", 12);
    len += 12;
    buf[3] = (uint8_t)(len - 20);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_OK);
    CHECK(m.attrs & PL_STUN_HAS_MESSAGE_INTEGRITY);
    CHECK(!(m.attrs & PL_STUN_HAS_MAPPED));
    CHECK_EQ(m.n_not_understood, 0);
    /* Many unknown comprehension-required attributes: counted, the first
     * few kept, repeats once. */
    len = 20;
    for (uint16_t t = 0x7000; t < 0x7000 + 12; t++) {
        buf[len] = (uint8_t)(t >> 8);
        buf[len + 1] = (uint8_t)t;
        buf[len + 2] = 0;
        buf[len + 3] = 0;
        len += 4;
    }
    memcpy(buf + len, "\x70\x00\x00\x00", 4);
    len += 4;
    buf[2] = 0;
    buf[3] = (uint8_t)(len - 20);
    CHECK_EQ(pl_stun_decode(&m, buf, len), PL_STUN_OK);
    CHECK_EQ(m.n_not_understood, 12);
    CHECK_EQ(m.not_understood[7], 0x7007);
}

/* ---- demultiplexing ------------------------------------------------------------------ */

static void test_classify(void)
{
    uint8_t buf[1500];
    uint8_t txid[12] = {1};
    size_t len = pl_stun_binding_request(buf, sizeof buf, txid, PL_STUN_CHANGE_IP);
    CHECK_EQ(pl_stun_classify(buf, len), PL_STUN_KIND_STUN);
    CHECK_EQ(pl_stun_classify(buf, len - 1), PL_STUN_KIND_OTHER);
    CHECK_EQ(pl_stun_classify(buf, 19), PL_STUN_KIND_OTHER);
    /* An RFC 3489 request: no cookie. */
    buf[4] = 0x99;
    CHECK_EQ(pl_stun_classify(buf, len), PL_STUN_KIND_CLASSIC);
    buf[0] = 0x01; /* a classic response: not something a server takes */
    CHECK_EQ(pl_stun_classify(buf, len), PL_STUN_KIND_OTHER);
    buf[0] = 0x40;
    buf[4] = 0x21;
    CHECK_EQ(pl_stun_classify(buf, len), PL_STUN_KIND_OTHER);

    /* Parley secure-session datagrams: type 1..4, three zero bytes, 32 to
     * 1500 bytes, the rest anything, including the magic cookie where a
     * STUN header has it. None is STUN. */
    pl_rng_seeded r;
    pl_rng_seeded_init(&r, 5769);
    for (int i = 0; i < 20000; i++) {
        size_t n = 32 + (size_t)pl_rng_below(&r.rng, 1500 - 32 + 1);
        r.rng.fill(r.rng.ctx, buf, n);
        buf[0] = (uint8_t)(1 + pl_rng_below(&r.rng, 4));
        buf[1] = buf[2] = buf[3] = 0;
        if (i % 2) pl_put_u32be(buf + 4, PL_STUN_MAGIC_COOKIE);
        CHECK_EQ(pl_stun_classify(buf, n), PL_STUN_KIND_OTHER);
        pl_stun_msg m;
        CHECK_EQ(pl_stun_decode(&m, buf, n), PL_STUN_ERR_NOT_STUN);
    }
    /* classify and decode agree on random bytes shaped like STUN. */
    for (int i = 0; i < 20000; i++) {
        size_t n = 20 + 4 * (size_t)pl_rng_below(&r.rng, 16);
        r.rng.fill(r.rng.ctx, buf, n);
        buf[0] &= 0x3f;
        buf[2] = 0;
        buf[3] = (uint8_t)(n - 20);
        if (i % 2) pl_put_u32be(buf + 4, PL_STUN_MAGIC_COOKIE);
        pl_stun_msg m;
        pl_stun_err e = pl_stun_decode(&m, buf, n);
        CHECK(e != PL_STUN_ERR_NOT_STUN);
        pl_stun_kind k = pl_stun_classify(buf, n);
        CHECK(k == (i % 2 ? PL_STUN_KIND_STUN : buf[0] == 0 ? PL_STUN_KIND_CLASSIC : PL_STUN_KIND_OTHER));
    }
}

/* ---- the responder --------------------------------------------------------------------- */

static pl_stun_server two_address_server(void)
{
    pl_stun_server s;
    memset(&s, 0, sizeof s);
    s.primary = addr("203.0.113.10:3478");
    s.alternate = addr("198.51.100.10:3479");
    return s;
}

static size_t request(uint8_t *buf, uint32_t change, bool fingerprint)
{
    pl_stun_msg m;
    memset(&m, 0, sizeof m);
    m.cls = PL_STUN_REQUEST;
    m.method = PL_STUN_METHOD_BINDING;
    m.cookie = PL_STUN_MAGIC_COOKIE;
    for (int i = 0; i < 12; i++) m.txid[i] = (uint8_t)(i * 17);
    if (change) {
        m.attrs |= PL_STUN_HAS_CHANGE_REQUEST;
        m.change_flags = change;
    }
    if (fingerprint) m.attrs |= PL_STUN_HAS_FINGERPRINT;
    size_t len;
    if (pl_stun_encode(&m, buf, 64, &len) != PL_STUN_OK) abort();
    return len;
}

/* Answers req arriving at local from client; decodes the answer into *a. */
static pl_stun_verdict answer(const pl_stun_server *s, const char *local, const char *client, const uint8_t *req,
                              size_t len, pl_stun_msg *a, pl_stun_reply *reply, uint8_t *out)
{
    pl_addr l = addr(local), c = addr(client);
    pl_stun_verdict v = pl_stun_respond(s, &l, &c, req, len, out, PL_STUN_MAX_RESPONSE, reply);
    memset(a, 0, sizeof *a);
    if (v == PL_STUN_SEND && pl_stun_decode(a, out, reply->len) != PL_STUN_OK) abort();
    return v;
}

static void test_responder_success(void)
{
    pl_stun_server s = two_address_server();
    uint8_t req[64], out[PL_STUN_MAX_RESPONSE];
    size_t len = request(req, 0, false);
    pl_stun_msg a;
    pl_stun_reply r;
    CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:40000", req, len, &a, &r, out), PL_STUN_SEND);
    CHECK_EQ(r.error_code, 0);
    pl_addr want = addr("203.0.113.10:3478");
    CHECK(pl_addr_equal(&r.from, &want));
    CHECK_EQ(a.cls, PL_STUN_SUCCESS);
    CHECK_EQ(a.method, PL_STUN_METHOD_BINDING);
    CHECK(memcmp(a.txid, req + 8, 12) == 0);
    CHECK_EQ(a.attrs, PL_STUN_HAS_XOR_MAPPED | PL_STUN_HAS_RESPONSE_ORIGIN | PL_STUN_HAS_OTHER_ADDRESS);
    want = addr("192.0.2.7:40000");
    CHECK(pl_addr_equal(&a.xor_mapped, &want));
    want = addr("203.0.113.10:3478");
    CHECK(pl_addr_equal(&a.response_origin, &want));
    want = addr("198.51.100.10:3479");
    CHECK(pl_addr_equal(&a.other_address, &want));
    /* Small answers: 56 bytes for a 20-byte request. */
    CHECK_EQ(r.len, 56);

    /* OTHER-ADDRESS is the opposite address and port of where the request
     * arrived, for each of the four. */
    const char *locals[4] = {"203.0.113.10:3478", "203.0.113.10:3479", "198.51.100.10:3478", "198.51.100.10:3479"};
    const char *others[4] = {"198.51.100.10:3479", "198.51.100.10:3478", "203.0.113.10:3479", "203.0.113.10:3478"};
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(answer(&s, locals[i], "192.0.2.7:40000", req, len, &a, &r, out), PL_STUN_SEND);
        want = addr(others[i]);
        CHECK(pl_addr_equal(&a.other_address, &want));
        want = addr(locals[i]);
        CHECK(pl_addr_equal(&r.from, &want));
    }

    /* An IPv6 client gets an IPv6 XOR-MAPPED-ADDRESS. */
    CHECK_EQ(answer(&s, "203.0.113.10:3478", "[2001:db8::77]:1234", req, len, &a, &r, out), PL_STUN_SEND);
    want = addr("[2001:db8::77]:1234");
    CHECK(pl_addr_equal(&a.xor_mapped, &want));
    CHECK_EQ(r.len, 68);

    /* FINGERPRINT in, FINGERPRINT out; SOFTWARE when configured. */
    s.software = "parley-test";
    len = request(req, 0, true);
    CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:40000", req, len, &a, &r, out), PL_STUN_SEND);
    CHECK(a.attrs & PL_STUN_HAS_FINGERPRINT);
    CHECK(text_is(a.software, a.software_len, "parley-test"));

    /* An optional attribute the server does not know changes nothing. */
    len = with_attr(req, 0x8029, (const uint8_t *)"12345678", 8);
    CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:40000", req, len, &a, &r, out), PL_STUN_SEND);
    CHECK_EQ(a.cls, PL_STUN_SUCCESS);
}

static void test_responder_change_request(void)
{
    pl_stun_server s = two_address_server();
    uint8_t req[64], out[PL_STUN_MAX_RESPONSE];
    pl_stun_msg a;
    pl_stun_reply r;
    struct {
        uint32_t flags;
        const char *from;
    } cases[4] = {
        {0, "203.0.113.10:3478"},
        {PL_STUN_CHANGE_PORT, "203.0.113.10:3479"},
        {PL_STUN_CHANGE_IP, "198.51.100.10:3478"},
        {PL_STUN_CHANGE_IP | PL_STUN_CHANGE_PORT, "198.51.100.10:3479"},
    };
    for (int i = 0; i < 4; i++) {
        size_t len = request(req, cases[i].flags, false);
        CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:40000", req, len, &a, &r, out), PL_STUN_SEND);
        pl_addr want = addr(cases[i].from);
        CHECK(pl_addr_equal(&r.from, &want));
        CHECK(pl_addr_equal(&a.response_origin, &want));
    }
    /* Asked at the alternate address, "change both" answers from the
     * primary. */
    size_t len = request(req, PL_STUN_CHANGE_IP | PL_STUN_CHANGE_PORT, false);
    CHECK_EQ(answer(&s, "198.51.100.10:3479", "192.0.2.7:40000", req, len, &a, &r, out), PL_STUN_SEND);
    pl_addr want = addr("203.0.113.10:3478");
    CHECK(pl_addr_equal(&r.from, &want));

    /* Without an alternate, no OTHER-ADDRESS, and CHANGE-REQUEST is an
     * attribute the server cannot honour: 420 naming it. A zero
     * CHANGE-REQUEST asks for nothing and is fine. */
    s.alternate.family = PL_AF_NONE;
    len = request(req, 0, false);
    CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:40000", req, len, &a, &r, out), PL_STUN_SEND);
    CHECK_EQ(a.attrs, PL_STUN_HAS_XOR_MAPPED | PL_STUN_HAS_RESPONSE_ORIGIN);
    len = request(req, PL_STUN_CHANGE_PORT, false);
    CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:40000", req, len, &a, &r, out), PL_STUN_SEND);
    CHECK_EQ(r.error_code, 420);
    CHECK_EQ(a.cls, PL_STUN_ERROR);
    CHECK_EQ(a.error_code, 420);
    CHECK_EQ(a.n_unknown_attrs, 1);
    CHECK_EQ(a.unknown_attrs[0], PL_STUN_ATTR_CHANGE_REQUEST);
    req[27] = 0; /* flags 0 */
    CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:40000", req, len, &a, &r, out), PL_STUN_SEND);
    CHECK_EQ(a.cls, PL_STUN_SUCCESS);
    /* An "alternate" that shares the primary's port is no alternate. */
    s = two_address_server();
    s.alternate.port = s.primary.port;
    len = request(req, 0, false);
    CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:40000", req, len, &a, &r, out), PL_STUN_SEND);
    CHECK(!(a.attrs & PL_STUN_HAS_OTHER_ADDRESS));
}

static void test_responder_refusals(void)
{
    pl_stun_server s = two_address_server();
    uint8_t req[256], out[PL_STUN_MAX_RESPONSE];
    pl_stun_msg a;
    pl_stun_reply r;

    /* RFC 5769's request carries PRIORITY: 420 with UNKNOWN-ATTRIBUTES. */
    CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:1", rfc5769_request, sizeof rfc5769_request, &a, &r, out),
             PL_STUN_SEND);
    CHECK_EQ(r.error_code, 420);
    CHECK_EQ(a.error_code, 420);
    CHECK(a.attrs & PL_STUN_HAS_UNKNOWN_ATTRIBUTES);
    CHECK_EQ(a.unknown_attrs[0], 0x0024);
    CHECK(a.attrs & PL_STUN_HAS_FINGERPRINT);
    CHECK(memcmp(a.txid, rfc5769_txid, 12) == 0);
    CHECK(text_is(a.reason, a.reason_len, "Unknown Attribute"));
    /* So do RESPONSE-PORT and PADDING (RFC 5780 features not offered),
     * and RESPONSE-ADDRESS (RFC 3489: an open reflector). */
    uint16_t refused[3] = {PL_STUN_ATTR_RESPONSE_PORT, PL_STUN_ATTR_PADDING, PL_STUN_ATTR_RESPONSE_ADDRESS};
    for (int i = 0; i < 3; i++) {
        size_t len = with_attr(req, refused[i], (const uint8_t *)"\x12\x34\x00\x00", 4);
        CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:1", req, len, &a, &r, out), PL_STUN_SEND);
        CHECK_EQ(a.error_code, 420);
        CHECK_EQ(a.unknown_attrs[0], refused[i]);
    }

    /* A malformed request: 400. */
    size_t len = with_attr(req, PL_STUN_ATTR_CHANGE_REQUEST, (const uint8_t *)"\0\0\0\0\0\0\0\0", 8);
    CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:1", req, len, &a, &r, out), PL_STUN_SEND);
    CHECK_EQ(r.error_code, 400);
    CHECK_EQ(a.cls, PL_STUN_ERROR);
    CHECK_EQ(a.attrs, PL_STUN_HAS_ERROR_CODE);
    CHECK(text_is(a.reason, a.reason_len, "Bad Request"));
    /* A method other than Binding: 400. */
    len = request(req, 0, false);
    req[1] = 0x03; /* Allocate */
    CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:1", req, len, &a, &r, out), PL_STUN_SEND);
    CHECK_EQ(a.error_code, 400);
    CHECK_EQ(a.method, 0x003);

    /* Never answered: responses, indications, bad fingerprints, not STUN,
     * a local address that is not the server's, no room for the answer. */
    CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:1", rfc5769_response4, sizeof rfc5769_response4, &a, &r,
                    out),
             PL_STUN_DROP);
    CHECK_EQ(r.why, PL_STUN_DROP_NOT_REQUEST);
    len = request(req, 0, false);
    req[1] = 0x11; /* Binding indication */
    CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:1", req, len, &a, &r, out), PL_STUN_DROP);
    CHECK_EQ(r.why, PL_STUN_DROP_NOT_REQUEST);
    req[1] = 0x11;
    req[3] = 4; /* a malformed indication is not answered either */
    memcpy(req + 20, "\x00\x01\x00\x09", 4);
    CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:1", req, 24, &a, &r, out), PL_STUN_DROP);
    CHECK_EQ(r.why, PL_STUN_DROP_NOT_REQUEST);
    len = request(req, 0, true);
    req[len - 1] ^= 1;
    CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:1", req, len, &a, &r, out), PL_STUN_DROP);
    CHECK_EQ(r.why, PL_STUN_DROP_FINGERPRINT);
    len = request(req, 0, false);
    CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:1", req, len - 1, &a, &r, out), PL_STUN_DROP);
    CHECK_EQ(r.why, PL_STUN_DROP_NOT_STUN);
    CHECK_EQ(answer(&s, "203.0.113.11:3478", "192.0.2.7:1", req, len, &a, &r, out), PL_STUN_DROP);
    CHECK_EQ(r.why, PL_STUN_DROP_BAD_LOCAL);
    CHECK_EQ(answer(&s, "203.0.113.10:3477", "192.0.2.7:1", req, len, &a, &r, out), PL_STUN_DROP);
    CHECK_EQ(r.why, PL_STUN_DROP_BAD_LOCAL);
    pl_addr l = addr("203.0.113.10:3478"), c = addr("192.0.2.7:1");
    CHECK_EQ(pl_stun_respond(&s, &l, &c, req, len, out, 55, &r), PL_STUN_DROP);
    CHECK_EQ(r.why, PL_STUN_DROP_BUFFER);
    CHECK_EQ(r.len, 0);
}

static void test_responder_classic(void)
{
    pl_stun_server s = two_address_server();
    uint8_t req[64], out[PL_STUN_MAX_RESPONSE];
    pl_stun_msg a;
    pl_stun_reply r;
    /* An RFC 3489 request: a 128-bit transaction id, no cookie, and the
     * CHANGE-REQUEST that old clients always send. */
    size_t len = request(req, PL_STUN_CHANGE_PORT, false);
    memcpy(req + 4, "\xde\xad\xbe\xef", 4);
    CHECK_EQ(pl_stun_classify(req, len), PL_STUN_KIND_CLASSIC);
    CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:40000", req, len, &a, &r, out), PL_STUN_SEND);
    CHECK_EQ(a.cls, PL_STUN_SUCCESS);
    CHECK(memcmp(out + 4, req + 4, 16) == 0); /* the whole 128-bit id comes back */
    CHECK_EQ(a.attrs, PL_STUN_HAS_MAPPED | PL_STUN_HAS_SOURCE_ADDRESS | PL_STUN_HAS_CHANGED_ADDRESS);
    pl_addr want = addr("192.0.2.7:40000");
    CHECK(pl_addr_equal(&a.mapped, &want));
    want = addr("203.0.113.10:3479");
    CHECK(pl_addr_equal(&a.source_address, &want));
    CHECK(pl_addr_equal(&r.from, &want));
    want = addr("198.51.100.10:3479");
    CHECK(pl_addr_equal(&a.changed_address, &want));
    /* A classic 420 repeats the last unknown attribute as padding. */
    len = with_attr(req, PL_STUN_ATTR_RESPONSE_ADDRESS, (const uint8_t *)"\x00\x01\x00\x01\x01\x02\x03\x04", 8);
    memcpy(req + 4, "\xde\xad\xbe\xef", 4);
    CHECK_EQ(answer(&s, "203.0.113.10:3478", "192.0.2.7:40000", req, len, &a, &r, out), PL_STUN_SEND);
    CHECK_EQ(a.error_code, 420);
    CHECK_EQ(a.n_unknown_attrs, 2);
    CHECK_EQ(a.unknown_attrs[0], PL_STUN_ATTR_RESPONSE_ADDRESS);
    CHECK_EQ(a.unknown_attrs[1], PL_STUN_ATTR_RESPONSE_ADDRESS);
}

static void test_strerror(void)
{
    for (int e = PL_STUN_OK; e <= PL_STUN_ERR_INVALID; e++) CHECK(strcmp(pl_stun_strerror((pl_stun_err)e), "unknown error") != 0);
    CHECK(strcmp(pl_stun_strerror((pl_stun_err)99), "unknown error") == 0);
}

int main(void)
{
    RUN(test_crc32);
    RUN(test_rfc5769_request);
    RUN(test_rfc5769_responses);
    RUN(test_every_bit_flip_is_caught);
    RUN(test_round_trip);
    RUN(test_encode_refusals);
    RUN(test_decode_refusals);
    RUN(test_fingerprint_rules);
    RUN(test_leniency);
    RUN(test_classify);
    RUN(test_responder_success);
    RUN(test_responder_change_request);
    RUN(test_responder_refusals);
    RUN(test_responder_classic);
    RUN(test_strerror);
    return pl_test_summary();
}
