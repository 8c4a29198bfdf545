/*
 * ca_proto.c - encoding and decoding of signing-authority messages.
 *
 * Header (16 bytes, big-endian):
 *   0 magic "PLCA" | 4 version u8 | 5 type u8 | 6 body_len u16 | 8 id u64
 * then body_len bytes of body, then zero padding to the end. The body
 * length is explicit so that padding can be told from the body and checked
 * to be zero: one message has one meaning, whatever the padding.
 */
#include "ca_proto.h"

#include <string.h>

#include "wire.h"

static const uint8_t MAGIC[4] = {'P', 'L', 'C', 'A'};
#define OP_DOMAIN "parley-ca-op-v1"

const char *pl_ca_code_str(pl_ca_code code)
{
    switch (code) {
    case PL_CA_CODE_OK: return "ok";
    case PL_CA_CODE_NAME_TAKEN: return "the name is already taken";
    case PL_CA_CODE_BAD_NAME: return "the name breaks the naming rules";
    case PL_CA_CODE_RESERVED: return "the name is reserved";
    case PL_CA_CODE_RATE_LIMITED: return "too many requests from this address";
    case PL_CA_CODE_BAD_SIGNATURE: return "the challenge was not signed by the key";
    case PL_CA_CODE_BAD_TOKEN: return "the challenge token is invalid or expired";
    case PL_CA_CODE_NOT_FOUND: return "no account has that name";
    case PL_CA_CODE_WRONG_KEY: return "the account belongs to a different key";
    case PL_CA_CODE_REVOKED: return "the account has been revoked";
    case PL_CA_CODE_MALFORMED: return "the request was malformed";
    case PL_CA_CODE_TOO_SMALL: return "the request was too small for its answer";
    case PL_CA_CODE_INTERNAL: return "the authority had an internal error";
    }
    return "unknown error code";
}

const char *pl_ca_proto_strerror(pl_ca_proto_err err)
{
    switch (err) {
    case PL_CA_PROTO_OK: return "ok";
    case PL_CA_PROTO_ERR_MALFORMED: return "malformed message";
    case PL_CA_PROTO_ERR_VERSION: return "unsupported protocol version";
    case PL_CA_PROTO_ERR_TYPE: return "unknown message type";
    case PL_CA_PROTO_ERR_BUFFER: return "buffer too small";
    }
    return "unknown protocol error";
}

static void write_body(pl_writer *w, const pl_ca_msg *m)
{
    switch (m->type) {
    case PL_CA_MSG_CHALLENGE_REQ:
        pl_write_u8(w, m->op);
        pl_write_u8(w, m->name_len);
        pl_write_bytes(w, m->name, m->name_len);
        pl_write_bytes(w, m->sign_pk, 32);
        break;
    case PL_CA_MSG_CHALLENGE:
        pl_write_bytes(w, m->token, PL_CA_TOKEN_SIZE);
        break;
    case PL_CA_MSG_OP_REQ:
        pl_write_u8(w, m->op);
        pl_write_u8(w, m->name_len);
        pl_write_bytes(w, m->name, m->name_len);
        pl_write_bytes(w, m->sign_pk, 32);
        pl_write_bytes(w, m->token, PL_CA_TOKEN_SIZE);
        pl_write_bytes(w, m->sig, 64);
        break;
    case PL_CA_MSG_CERT:
        pl_write_u16(w, m->cert_len);
        pl_write_bytes(w, m->cert, m->cert_len);
        break;
    case PL_CA_MSG_REVOKED:
        pl_write_u64(w, m->crl_number);
        break;
    case PL_CA_MSG_CRL_REQ:
        pl_write_u32(w, m->offset);
        break;
    case PL_CA_MSG_CRL_CHUNK:
        pl_write_u64(w, m->crl_number);
        pl_write_u32(w, m->crl_total);
        pl_write_u32(w, m->offset);
        pl_write_u16(w, m->chunk_len);
        pl_write_bytes(w, m->chunk, m->chunk_len);
        break;
    case PL_CA_MSG_ERROR:
        pl_write_u8(w, m->code);
        pl_write_zeros(w, 3);
        pl_write_u32(w, m->retry_after_ms);
        break;
    default:
        w->err = true;
        break;
    }
}

size_t pl_ca_msg_size(const pl_ca_msg *m)
{
    switch (m->type) {
    case PL_CA_MSG_CHALLENGE_REQ: return PL_CA_HEADER_SIZE + 2u + m->name_len + 32u;
    case PL_CA_MSG_CHALLENGE: return PL_CA_HEADER_SIZE + PL_CA_TOKEN_SIZE;
    case PL_CA_MSG_OP_REQ: return PL_CA_HEADER_SIZE + 2u + m->name_len + 32u + PL_CA_TOKEN_SIZE + 64u;
    case PL_CA_MSG_CERT: return PL_CA_HEADER_SIZE + 2u + m->cert_len;
    case PL_CA_MSG_REVOKED: return PL_CA_HEADER_SIZE + 8u;
    case PL_CA_MSG_CRL_REQ: return PL_CA_HEADER_SIZE + 4u;
    case PL_CA_MSG_CRL_CHUNK: return PL_CA_CRL_CHUNK_OVERHEAD + (size_t)m->chunk_len;
    case PL_CA_MSG_ERROR: return PL_CA_HEADER_SIZE + 8u;
    }
    return 0;
}

pl_ca_proto_err pl_ca_msg_encode(const pl_ca_msg *m, size_t pad_to, uint8_t *buf, size_t cap, size_t *out_len)
{
    size_t size = pl_ca_msg_size(m);
    if (size == 0) return PL_CA_PROTO_ERR_TYPE;
    if (m->name_len > PL_NAME_MAX || size > PL_CA_MAX_MESSAGE) return PL_CA_PROTO_ERR_MALFORMED;
    if (pad_to > PL_CA_MAX_MESSAGE) pad_to = PL_CA_MAX_MESSAGE;
    size_t total = size > pad_to ? size : pad_to;
    if (total > cap) return PL_CA_PROTO_ERR_BUFFER;
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_bytes(&w, MAGIC, 4);
    pl_write_u8(&w, PL_CA_VERSION);
    pl_write_u8(&w, m->type);
    pl_write_u16(&w, (uint16_t)(size - PL_CA_HEADER_SIZE));
    pl_write_u64(&w, m->id);
    write_body(&w, m);
    pl_write_zeros(&w, total - size);
    if (w.err || w.off != total) return PL_CA_PROTO_ERR_BUFFER;
    if (out_len) *out_len = total;
    return PL_CA_PROTO_OK;
}

/* Reads name_len and the name; refuses lengths over the maximum and
 * embedded NULs (which would make the C string and the bytes disagree). */
static bool read_name(pl_reader *r, pl_ca_msg *m)
{
    m->name_len = pl_read_u8(r);
    if (r->err || m->name_len > PL_NAME_MAX) return false;
    pl_read_bytes(r, m->name, m->name_len);
    m->name[m->name_len] = 0;
    return !r->err && memchr(m->name, 0, m->name_len) == NULL;
}

pl_ca_proto_err pl_ca_msg_decode(pl_ca_msg *m, const uint8_t *buf, size_t len)
{
    memset(m, 0, sizeof *m);
    if (len > PL_CA_MAX_MESSAGE) return PL_CA_PROTO_ERR_MALFORMED;
    pl_reader r = pl_reader_make(buf, len);
    uint8_t magic[4];
    pl_read_bytes(&r, magic, 4);
    uint8_t version = pl_read_u8(&r);
    m->type = pl_read_u8(&r);
    uint16_t body_len = pl_read_u16(&r);
    m->id = pl_read_u64(&r);
    if (r.err || memcmp(magic, MAGIC, 4) != 0) return PL_CA_PROTO_ERR_MALFORMED;
    if (version != PL_CA_VERSION) return PL_CA_PROTO_ERR_VERSION;
    if (body_len > pl_reader_left(&r)) return PL_CA_PROTO_ERR_MALFORMED;

    /* The body gets its own reader so that a body must be consumed exactly. */
    pl_reader b = pl_reader_make(pl_read_ptr(&r, body_len), body_len);
    switch (m->type) {
    case PL_CA_MSG_CHALLENGE_REQ:
        m->op = pl_read_u8(&b);
        if (!read_name(&b, m)) return PL_CA_PROTO_ERR_MALFORMED;
        pl_read_bytes(&b, m->sign_pk, 32);
        break;
    case PL_CA_MSG_CHALLENGE:
        pl_read_bytes(&b, m->token, PL_CA_TOKEN_SIZE);
        break;
    case PL_CA_MSG_OP_REQ:
        m->op = pl_read_u8(&b);
        if (!read_name(&b, m)) return PL_CA_PROTO_ERR_MALFORMED;
        pl_read_bytes(&b, m->sign_pk, 32);
        pl_read_bytes(&b, m->token, PL_CA_TOKEN_SIZE);
        pl_read_bytes(&b, m->sig, 64);
        break;
    case PL_CA_MSG_CERT:
        m->cert_len = pl_read_u16(&b);
        m->cert = pl_read_ptr(&b, m->cert_len);
        break;
    case PL_CA_MSG_REVOKED:
        m->crl_number = pl_read_u64(&b);
        break;
    case PL_CA_MSG_CRL_REQ:
        m->offset = pl_read_u32(&b);
        break;
    case PL_CA_MSG_CRL_CHUNK:
        m->crl_number = pl_read_u64(&b);
        m->crl_total = pl_read_u32(&b);
        m->offset = pl_read_u32(&b);
        m->chunk_len = pl_read_u16(&b);
        m->chunk = pl_read_ptr(&b, m->chunk_len);
        if (!b.err && ((uint64_t)m->offset + m->chunk_len > m->crl_total)) return PL_CA_PROTO_ERR_MALFORMED;
        break;
    case PL_CA_MSG_ERROR: {
        m->code = pl_read_u8(&b);
        uint8_t zero[3];
        pl_read_bytes(&b, zero, 3);
        m->retry_after_ms = pl_read_u32(&b);
        if (zero[0] | zero[1] | zero[2]) return PL_CA_PROTO_ERR_MALFORMED;
        break;
    }
    default:
        return PL_CA_PROTO_ERR_TYPE;
    }
    if (!pl_reader_done(&b)) return PL_CA_PROTO_ERR_MALFORMED;
    /* Padding: every byte after the body must be zero. */
    size_t pad = pl_reader_left(&r);
    const uint8_t *p = pl_read_ptr(&r, pad);
    uint8_t acc = 0;
    for (size_t i = 0; i < pad; i++) acc |= p[i];
    if (acc != 0) return PL_CA_PROTO_ERR_MALFORMED;
    return PL_CA_PROTO_OK;
}

size_t pl_ca_op_message(uint8_t out[PL_CA_OP_MESSAGE_MAX], const uint8_t ca_pk[32], uint8_t op, const char *name,
                        const uint8_t sign_pk[32], const uint8_t token[PL_CA_TOKEN_SIZE])
{
    size_t name_len = strnlen(name, PL_NAME_MAX + 1);
    if (name_len > PL_NAME_MAX) return 0;
    pl_writer w = pl_writer_make(out, PL_CA_OP_MESSAGE_MAX);
    pl_write_bytes(&w, OP_DOMAIN, sizeof OP_DOMAIN - 1);
    pl_write_bytes(&w, ca_pk, 32);
    pl_write_u8(&w, op);
    pl_write_u8(&w, (uint8_t)name_len);
    pl_write_bytes(&w, name, name_len);
    pl_write_bytes(&w, sign_pk, 32);
    pl_write_bytes(&w, token, PL_CA_TOKEN_SIZE);
    return w.err ? 0 : w.off;
}
