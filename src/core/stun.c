/* stun.c - the STUN codec and Binding responder; see stun.h. */
#include "stun.h"

#include <string.h>

#include "wire.h"

const char *pl_stun_strerror(pl_stun_err err)
{
    switch (err) {
    case PL_STUN_OK: return "ok";
    case PL_STUN_ERR_NOT_STUN: return "not a STUN message";
    case PL_STUN_ERR_MALFORMED: return "malformed STUN attribute";
    case PL_STUN_ERR_FINGERPRINT: return "wrong or misplaced STUN FINGERPRINT";
    case PL_STUN_ERR_BUFFER: return "output buffer too small";
    case PL_STUN_ERR_INVALID: return "STUN field out of range";
    }
    return "unknown error";
}

/* ---- CRC-32 --------------------------------------------------------------------- */

/* The reflected polynomial 0xEDB88320, four bits at a time: a 16-entry
 * table is small enough to write out and fast enough for messages of a
 * few dozen bytes. */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t pl_stun_crc32(const uint8_t *buf, size_t len)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        crc ^= buf[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 15];
        crc = (crc >> 4) ^ crc_nibble[crc & 15];
    }
    return crc ^ 0xFFFFFFFFu;
}

/* ---- header ---------------------------------------------------------------------- */

/* The 14-bit type interleaves the class bits C1 (bit 8) and C0 (bit 4)
 * with the 12 method bits. */
static uint16_t make_type(uint16_t method, uint8_t cls)
{
    return (uint16_t)((method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | ((cls & 1u) << 4) |
                      ((cls & 2u) << 7));
}

static void split_type(uint16_t type, uint16_t *method, uint8_t *cls)
{
    *method = (uint16_t)((type & 0x000F) | ((type >> 1) & 0x0070) | ((type >> 2) & 0x0F80));
    *cls = (uint8_t)(((type >> 4) & 1u) | ((type >> 7) & 2u));
}

pl_stun_kind pl_stun_classify(const uint8_t *buf, size_t len)
{
    if (len < PL_STUN_HEADER_SIZE || (buf[0] & 0xC0) != 0) return PL_STUN_KIND_OTHER;
    size_t body = ((size_t)buf[2] << 8) | buf[3];
    if (body % 4 != 0 || body + PL_STUN_HEADER_SIZE != len) return PL_STUN_KIND_OTHER;
    if (pl_get_u32be(buf + 4) == PL_STUN_MAGIC_COOKIE) return PL_STUN_KIND_STUN;
    /* RFC 3489 requests are types 0x0001 and 0x0002; anything else without
     * the cookie is not worth the ambiguity. */
    return buf[0] == 0x00 ? PL_STUN_KIND_CLASSIC : PL_STUN_KIND_OTHER;
}

/* ---- address attributes ------------------------------------------------------------ */

enum { FAMILY_V4 = 0x01, FAMILY_V6 = 0x02 };

/* Decodes a (XOR-)MAPPED-ADDRESS style value; header is the message's
 * first 20 bytes, whose cookie and transaction id are the XOR key. */
static bool read_address(const uint8_t *v, size_t len, bool xored, const uint8_t *header, pl_addr *out)
{
    memset(out, 0, sizeof *out);
    if (len != 8 && len != 20) return false;
    uint8_t family = v[1];
    if ((family == FAMILY_V4) != (len == 8) || (family != FAMILY_V4 && family != FAMILY_V6)) return false;
    out->port = (uint16_t)((v[2] << 8) | v[3]);
    size_t n = family == FAMILY_V4 ? 4 : 16;
    memcpy(out->ip, v + 4, n);
    if (xored) {
        out->port ^= (uint16_t)((header[4] << 8) | header[5]);
        for (size_t i = 0; i < n; i++) out->ip[i] ^= header[4 + i];
    }
    out->family = family == FAMILY_V4 ? PL_AF_INET4 : PL_AF_INET6;
    return true;
}

static void write_address(pl_writer *w, uint16_t type, const pl_addr *a, bool xored, const uint8_t *header)
{
    size_t n = a->family == PL_AF_INET4 ? 4 : 16;
    uint8_t ip[16];
    uint16_t port = a->port;
    memcpy(ip, a->ip, n);
    if (xored) {
        port ^= (uint16_t)((header[4] << 8) | header[5]);
        for (size_t i = 0; i < n; i++) ip[i] ^= header[4 + i];
    }
    pl_write_u16(w, type);
    pl_write_u16(w, (uint16_t)(4 + n));
    pl_write_u8(w, 0);
    pl_write_u8(w, a->family == PL_AF_INET4 ? FAMILY_V4 : FAMILY_V6);
    pl_write_u16(w, port);
    pl_write_bytes(w, ip, n);
}

/* ---- decoding -------------------------------------------------------------------------- */

static void note_not_understood(pl_stun_msg *m, uint16_t type)
{
    size_t kept = m->n_not_understood < PL_STUN_MAX_UNKNOWN ? m->n_not_understood : PL_STUN_MAX_UNKNOWN;
    for (size_t i = 0; i < kept; i++)
        if (m->not_understood[i] == type) return;
    if (m->n_not_understood < PL_STUN_MAX_UNKNOWN) m->not_understood[m->n_not_understood] = type;
    if (m->n_not_understood < UINT16_MAX) m->n_not_understood++;
}

/* Reads one attribute's value into m. Returns false when it is invalid. */
static bool decode_attribute(pl_stun_msg *m, uint16_t type, const uint8_t *v, size_t len, const uint8_t *header)
{
    pl_addr *addr = NULL;
    uint32_t flag = 0;
    bool xored = false;
    switch (type) {
    case PL_STUN_ATTR_MAPPED_ADDRESS: addr = &m->mapped; flag = PL_STUN_HAS_MAPPED; break;
    case PL_STUN_ATTR_XOR_MAPPED_ADDRESS: addr = &m->xor_mapped; flag = PL_STUN_HAS_XOR_MAPPED; xored = true; break;
    case PL_STUN_ATTR_RESPONSE_ORIGIN: addr = &m->response_origin; flag = PL_STUN_HAS_RESPONSE_ORIGIN; break;
    case PL_STUN_ATTR_OTHER_ADDRESS: addr = &m->other_address; flag = PL_STUN_HAS_OTHER_ADDRESS; break;
    case PL_STUN_ATTR_SOURCE_ADDRESS: addr = &m->source_address; flag = PL_STUN_HAS_SOURCE_ADDRESS; break;
    case PL_STUN_ATTR_CHANGED_ADDRESS: addr = &m->changed_address; flag = PL_STUN_HAS_CHANGED_ADDRESS; break;
    default: break;
    }
    if (addr) {
        pl_addr a;
        if (!read_address(v, len, xored, header, &a)) return false;
        if (!(m->attrs & flag)) *addr = a; /* of repeats, the first counts */
        m->attrs |= flag;
        return true;
    }
    switch (type) {
    case PL_STUN_ATTR_CHANGE_REQUEST:
        if (len != 4) return false;
        if (!(m->attrs & PL_STUN_HAS_CHANGE_REQUEST)) m->change_flags = pl_get_u32be(v);
        m->attrs |= PL_STUN_HAS_CHANGE_REQUEST;
        return true;
    case PL_STUN_ATTR_ERROR_CODE: {
        /* 21 reserved bits, the class (hundreds, 3..6) in 3 bits, the
         * number (0..99) in 8 bits, then the reason phrase. */
        if (len < 4 || len - 4 > PL_STUN_TEXT_MAX) return false;
        unsigned hundreds = v[2] & 0x07u, number = v[3];
        if (hundreds < 3 || hundreds > 6 || number > 99) return false;
        if (!(m->attrs & PL_STUN_HAS_ERROR_CODE)) {
            m->error_code = (uint16_t)(hundreds * 100 + number);
            m->reason = v + 4;
            m->reason_len = (uint16_t)(len - 4);
        }
        m->attrs |= PL_STUN_HAS_ERROR_CODE;
        return true;
    }
    case PL_STUN_ATTR_UNKNOWN_ATTRIBUTES:
        if (len % 2 != 0) return false;
        if (!(m->attrs & PL_STUN_HAS_UNKNOWN_ATTRIBUTES)) {
            for (size_t i = 0; i + 1 < len && m->n_unknown_attrs < PL_STUN_MAX_UNKNOWN; i += 2)
                m->unknown_attrs[m->n_unknown_attrs++] = (uint16_t)((v[i] << 8) | v[i + 1]);
        }
        m->attrs |= PL_STUN_HAS_UNKNOWN_ATTRIBUTES;
        return true;
    case PL_STUN_ATTR_SOFTWARE:
        if (len > PL_STUN_TEXT_MAX) return false;
        if (!(m->attrs & PL_STUN_HAS_SOFTWARE)) {
            m->software = v;
            m->software_len = (uint16_t)len;
        }
        m->attrs |= PL_STUN_HAS_SOFTWARE;
        return true;
    case PL_STUN_ATTR_MESSAGE_INTEGRITY:
    case PL_STUN_ATTR_MESSAGE_INTEGRITY_SHA256:
        m->attrs |= PL_STUN_HAS_MESSAGE_INTEGRITY;
        return true;
    /* Understood and of no consequence to a server without credentials:
     * Parley authenticates in its own sessions, not in STUN. */
    case PL_STUN_ATTR_USERNAME:
    case PL_STUN_ATTR_REALM:
    case PL_STUN_ATTR_NONCE:
    case PL_STUN_ATTR_PASSWORD_ALGORITHM:
    case PL_STUN_ATTR_USERHASH:
        return true;
    default:
        if (type < 0x8000) note_not_understood(m, type);
        return true;
    }
}

pl_stun_err pl_stun_decode(pl_stun_msg *m, const uint8_t *buf, size_t len)
{
    memset(m, 0, sizeof *m);
    if (len < PL_STUN_HEADER_SIZE || (buf[0] & 0xC0) != 0) return PL_STUN_ERR_NOT_STUN;
    size_t body = ((size_t)buf[2] << 8) | buf[3];
    if (body % 4 != 0 || body + PL_STUN_HEADER_SIZE != len) return PL_STUN_ERR_NOT_STUN;
    split_type((uint16_t)((buf[0] << 8) | buf[1]), &m->method, &m->cls);
    m->cookie = pl_get_u32be(buf + 4);
    memcpy(m->txid, buf + 8, PL_STUN_TXID_SIZE);

    pl_reader r = pl_reader_make(buf + PL_STUN_HEADER_SIZE, body);
    bool after_integrity = false;
    while (pl_reader_left(&r) > 0) {
        size_t at = PL_STUN_HEADER_SIZE + r.off;
        uint16_t type = pl_read_u16(&r);
        uint16_t alen = pl_read_u16(&r);
        const uint8_t *v = pl_read_ptr(&r, alen);
        (void)pl_read_ptr(&r, (4u - alen % 4u) % 4u); /* padding: any value */
        if (r.err) return PL_STUN_ERR_MALFORMED;
        if (type == PL_STUN_ATTR_FINGERPRINT) {
            if (alen != 4) return PL_STUN_ERR_MALFORMED;
            if (pl_reader_left(&r) != 0) return PL_STUN_ERR_FINGERPRINT;
            if ((pl_stun_crc32(buf, at) ^ PL_STUN_FINGERPRINT_XOR) != pl_get_u32be(v)) return PL_STUN_ERR_FINGERPRINT;
            m->attrs |= PL_STUN_HAS_FINGERPRINT;
            break;
        }
        /* RFC 8489 14.5: after MESSAGE-INTEGRITY, only MESSAGE-INTEGRITY-
         * SHA256 and FINGERPRINT count; the rest is ignored. */
        if (after_integrity && type != PL_STUN_ATTR_MESSAGE_INTEGRITY_SHA256) continue;
        if (!decode_attribute(m, type, v, alen, buf)) return PL_STUN_ERR_MALFORMED;
        if (type == PL_STUN_ATTR_MESSAGE_INTEGRITY || type == PL_STUN_ATTR_MESSAGE_INTEGRITY_SHA256)
            after_integrity = true;
    }
    return PL_STUN_OK;
}

/* ---- encoding ------------------------------------------------------------------------------ */

static bool address_ok(const pl_addr *a) { return a->family == PL_AF_INET4 || a->family == PL_AF_INET6; }

static void write_text(pl_writer *w, uint16_t type, const uint8_t *text, size_t len)
{
    pl_write_u16(w, type);
    pl_write_u16(w, (uint16_t)len);
    pl_write_bytes(w, text, len);
    pl_write_zeros(w, (4u - len % 4u) % 4u);
}

pl_stun_err pl_stun_encode(const pl_stun_msg *m, uint8_t *buf, size_t cap, size_t *out_len)
{
    *out_len = 0;
    uint32_t a = m->attrs;
    if (m->method > 0x0FFF || m->cls > 3) return PL_STUN_ERR_INVALID;
    if ((a & PL_STUN_HAS_ERROR_CODE) &&
        (m->error_code < 300 || m->error_code > 699 || m->reason_len > PL_STUN_TEXT_MAX || (m->reason_len && !m->reason)))
        return PL_STUN_ERR_INVALID;
    if ((a & PL_STUN_HAS_SOFTWARE) && (m->software_len > PL_STUN_TEXT_MAX || (m->software_len && !m->software)))
        return PL_STUN_ERR_INVALID;
    if ((a & PL_STUN_HAS_UNKNOWN_ATTRIBUTES) && (m->n_unknown_attrs == 0 || m->n_unknown_attrs > PL_STUN_MAX_UNKNOWN))
        return PL_STUN_ERR_INVALID;
    if (((a & PL_STUN_HAS_MAPPED) && !address_ok(&m->mapped)) ||
        ((a & PL_STUN_HAS_XOR_MAPPED) && !address_ok(&m->xor_mapped)) ||
        ((a & PL_STUN_HAS_RESPONSE_ORIGIN) && !address_ok(&m->response_origin)) ||
        ((a & PL_STUN_HAS_OTHER_ADDRESS) && !address_ok(&m->other_address)) ||
        ((a & PL_STUN_HAS_SOURCE_ADDRESS) && !address_ok(&m->source_address)) ||
        ((a & PL_STUN_HAS_CHANGED_ADDRESS) && !address_ok(&m->changed_address)))
        return PL_STUN_ERR_INVALID;

    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u16(&w, make_type(m->method, m->cls));
    pl_write_u16(&w, 0); /* length, filled in below */
    pl_write_u32(&w, m->cookie);
    pl_write_bytes(&w, m->txid, PL_STUN_TXID_SIZE);
    if (w.err) return PL_STUN_ERR_BUFFER;
    const uint8_t *header = buf;

    if (a & PL_STUN_HAS_MAPPED) write_address(&w, PL_STUN_ATTR_MAPPED_ADDRESS, &m->mapped, false, header);
    if (a & PL_STUN_HAS_XOR_MAPPED) write_address(&w, PL_STUN_ATTR_XOR_MAPPED_ADDRESS, &m->xor_mapped, true, header);
    if (a & PL_STUN_HAS_RESPONSE_ORIGIN)
        write_address(&w, PL_STUN_ATTR_RESPONSE_ORIGIN, &m->response_origin, false, header);
    if (a & PL_STUN_HAS_OTHER_ADDRESS) write_address(&w, PL_STUN_ATTR_OTHER_ADDRESS, &m->other_address, false, header);
    if (a & PL_STUN_HAS_SOURCE_ADDRESS)
        write_address(&w, PL_STUN_ATTR_SOURCE_ADDRESS, &m->source_address, false, header);
    if (a & PL_STUN_HAS_CHANGED_ADDRESS)
        write_address(&w, PL_STUN_ATTR_CHANGED_ADDRESS, &m->changed_address, false, header);
    if (a & PL_STUN_HAS_CHANGE_REQUEST) {
        pl_write_u16(&w, PL_STUN_ATTR_CHANGE_REQUEST);
        pl_write_u16(&w, 4);
        pl_write_u32(&w, m->change_flags);
    }
    if (a & PL_STUN_HAS_ERROR_CODE) {
        pl_write_u16(&w, PL_STUN_ATTR_ERROR_CODE);
        pl_write_u16(&w, (uint16_t)(4 + m->reason_len));
        pl_write_u16(&w, 0);
        pl_write_u8(&w, (uint8_t)(m->error_code / 100));
        pl_write_u8(&w, (uint8_t)(m->error_code % 100));
        pl_write_bytes(&w, m->reason, m->reason_len);
        pl_write_zeros(&w, (4u - m->reason_len % 4u) % 4u);
    }
    if (a & PL_STUN_HAS_UNKNOWN_ATTRIBUTES) {
        /* RFC 3489 made an odd list even by repeating an attribute; RFC
         * 8489 pads it like any other value. Old clients get what they
         * expect. */
        size_t n = m->n_unknown_attrs;
        bool repeat = n % 2 && pl_stun_is_classic(m);
        pl_write_u16(&w, PL_STUN_ATTR_UNKNOWN_ATTRIBUTES);
        pl_write_u16(&w, (uint16_t)(2 * (n + repeat)));
        for (size_t i = 0; i < n; i++) pl_write_u16(&w, m->unknown_attrs[i]);
        if (n % 2) pl_write_u16(&w, repeat ? m->unknown_attrs[n - 1] : 0);
    }
    if (a & PL_STUN_HAS_SOFTWARE) write_text(&w, PL_STUN_ATTR_SOFTWARE, m->software, m->software_len);
    if (w.err || w.off - PL_STUN_HEADER_SIZE > 0xFFFF - 8) return PL_STUN_ERR_BUFFER;
    size_t body = w.off - PL_STUN_HEADER_SIZE + ((a & PL_STUN_HAS_FINGERPRINT) ? 8 : 0);
    buf[2] = (uint8_t)(body >> 8);
    buf[3] = (uint8_t)body;
    if (a & PL_STUN_HAS_FINGERPRINT) {
        /* The CRC covers the header with the final length, so the length
         * is set before it is computed. */
        uint32_t crc = pl_stun_crc32(buf, w.off) ^ PL_STUN_FINGERPRINT_XOR;
        pl_write_u16(&w, PL_STUN_ATTR_FINGERPRINT);
        pl_write_u16(&w, 4);
        pl_write_u32(&w, crc);
        if (w.err) return PL_STUN_ERR_BUFFER;
    }
    *out_len = w.off;
    return PL_STUN_OK;
}

size_t pl_stun_binding_request(uint8_t *buf, size_t cap, const uint8_t txid[PL_STUN_TXID_SIZE], uint32_t change_flags)
{
    pl_stun_msg m;
    memset(&m, 0, sizeof m);
    m.method = PL_STUN_METHOD_BINDING;
    m.cls = PL_STUN_REQUEST;
    m.cookie = PL_STUN_MAGIC_COOKIE;
    memcpy(m.txid, txid, PL_STUN_TXID_SIZE);
    if (change_flags) {
        m.attrs |= PL_STUN_HAS_CHANGE_REQUEST;
        m.change_flags = change_flags;
    }
    size_t len = 0;
    return pl_stun_encode(&m, buf, cap, &len) == PL_STUN_OK ? len : 0;
}

/* ---- the responder ---------------------------------------------------------------------------- */

static const char REASON_400[] = "Bad Request";
static const char REASON_420[] = "Unknown Attribute";

static void set_ip(pl_addr *a, const pl_addr *from)
{
    a->family = from->family;
    memcpy(a->ip, from->ip, sizeof a->ip);
}

pl_stun_verdict pl_stun_respond(const pl_stun_server *srv, const pl_addr *local, const pl_addr *client,
                                const uint8_t *req, size_t len, uint8_t *out, size_t cap, pl_stun_reply *reply)
{
    memset(reply, 0, sizeof *reply);
    pl_stun_msg q;
    pl_stun_err err = pl_stun_decode(&q, req, len);
    if (err == PL_STUN_ERR_NOT_STUN) {
        reply->why = PL_STUN_DROP_NOT_STUN;
        return PL_STUN_DROP;
    }
    if (q.cls != PL_STUN_REQUEST) {
        reply->why = PL_STUN_DROP_NOT_REQUEST;
        return PL_STUN_DROP;
    }
    if (err == PL_STUN_ERR_FINGERPRINT) {
        reply->why = PL_STUN_DROP_FINGERPRINT;
        return PL_STUN_DROP;
    }

    /* The alternate counts only when it differs from the primary in both
     * address and port: anything less would make the client's conclusions
     * about its NAT wrong. */
    const pl_addr *p = &srv->primary, *alt = &srv->alternate;
    bool has_alt = (alt->family == PL_AF_INET4 || alt->family == PL_AF_INET6) && alt->family == p->family &&
                   !pl_addr_same_host(alt, p) && alt->port != p->port;
    bool on_p_ip = pl_addr_same_host(local, p), on_a_ip = has_alt && pl_addr_same_host(local, alt);
    bool on_p_port = local->port == p->port, on_a_port = has_alt && local->port == alt->port;
    if (!(on_p_ip || on_a_ip) || !(on_p_port || on_a_port)) {
        reply->why = PL_STUN_DROP_BAD_LOCAL;
        return PL_STUN_DROP;
    }

    pl_stun_msg a;
    memset(&a, 0, sizeof a);
    a.method = q.method;
    a.cookie = q.cookie;
    memcpy(a.txid, q.txid, PL_STUN_TXID_SIZE);
    reply->from = *local;
    uint32_t change = (q.attrs & PL_STUN_HAS_CHANGE_REQUEST) ? q.change_flags & (PL_STUN_CHANGE_IP | PL_STUN_CHANGE_PORT)
                                                              : 0;
    if (err == PL_STUN_ERR_MALFORMED || q.method != PL_STUN_METHOD_BINDING) {
        a.cls = PL_STUN_ERROR;
        a.attrs = PL_STUN_HAS_ERROR_CODE;
        a.error_code = 400;
        a.reason = (const uint8_t *)REASON_400;
        a.reason_len = sizeof REASON_400 - 1;
    } else if (q.n_not_understood > 0 || (change && !has_alt)) {
        a.cls = PL_STUN_ERROR;
        a.attrs = PL_STUN_HAS_ERROR_CODE | PL_STUN_HAS_UNKNOWN_ATTRIBUTES;
        a.error_code = 420;
        a.reason = (const uint8_t *)REASON_420;
        a.reason_len = sizeof REASON_420 - 1;
        size_t n = q.n_not_understood < PL_STUN_MAX_UNKNOWN ? q.n_not_understood : PL_STUN_MAX_UNKNOWN;
        memcpy(a.unknown_attrs, q.not_understood, n * sizeof a.unknown_attrs[0]);
        /* RFC 5780 6.1: a server that cannot change its address says it
         * does not understand CHANGE-REQUEST. */
        if (change && !has_alt && n < PL_STUN_MAX_UNKNOWN) a.unknown_attrs[n++] = PL_STUN_ATTR_CHANGE_REQUEST;
        a.n_unknown_attrs = (uint8_t)n;
    } else {
        a.cls = PL_STUN_SUCCESS;
        pl_addr other;
        memset(&other, 0, sizeof other);
        if (has_alt) {
            set_ip(&other, on_p_ip ? alt : p);
            other.port = on_p_port ? alt->port : p->port;
        }
        if (change & PL_STUN_CHANGE_IP) set_ip(&reply->from, &other);
        if (change & PL_STUN_CHANGE_PORT) reply->from.port = other.port;
        if (pl_stun_is_classic(&q)) {
            a.attrs = PL_STUN_HAS_MAPPED | PL_STUN_HAS_SOURCE_ADDRESS;
            a.mapped = *client;
            a.source_address = reply->from;
            if (has_alt) {
                a.attrs |= PL_STUN_HAS_CHANGED_ADDRESS;
                a.changed_address = other;
            }
        } else {
            a.attrs = PL_STUN_HAS_XOR_MAPPED | PL_STUN_HAS_RESPONSE_ORIGIN;
            a.xor_mapped = *client;
            a.response_origin = reply->from;
            if (has_alt) {
                a.attrs |= PL_STUN_HAS_OTHER_ADDRESS;
                a.other_address = other;
            }
        }
    }
    if (srv->software) {
        size_t n = strlen(srv->software);
        a.attrs |= PL_STUN_HAS_SOFTWARE;
        a.software = (const uint8_t *)srv->software;
        a.software_len = (uint16_t)(n > PL_STUN_TEXT_MAX ? PL_STUN_TEXT_MAX : n);
    }
    if (q.attrs & PL_STUN_HAS_FINGERPRINT) a.attrs |= PL_STUN_HAS_FINGERPRINT;
    if (pl_stun_encode(&a, out, cap, &reply->len) != PL_STUN_OK) {
        memset(reply, 0, sizeof *reply);
        reply->why = PL_STUN_DROP_BUFFER;
        return PL_STUN_DROP;
    }
    reply->error_code = a.cls == PL_STUN_ERROR ? a.error_code : 0;
    return PL_STUN_SEND;
}
