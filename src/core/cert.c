/*
 * cert.c - canonical certificates and revocation lists.
 *
 * Certificate layout (big-endian, 172 + name_len bytes):
 *   0 version u8 | 1 flags u8 | 2 name_len u8 | 3 zero u8
 *   4 serial u64 | 12 not_before u64 | 20 not_after u64
 *   28 issuer[16] | 44 sign_pk[32] | 76 dh_pk[32] | 108 name[name_len]
 *   108+name_len signature[64] over "parley-cert-v1" || bytes 0..108+name_len
 *
 * The decoder accepts exactly one encoding per certificate: unknown flags,
 * a non-zero pad byte, a name that is not already normalised, an empty
 * validity window or trailing bytes are all refused.
 */
#include <sodium.h>
#include <string.h>

#include "parley.h"
#include "wire.h"

#define CERT_DOMAIN "parley-cert-v1"
#define CRL_DOMAIN "parley-crl-v1"
#define TBS_MAX (sizeof CERT_DOMAIN - 1 + PL_CERT_FIXED_SIZE - 64 + PL_NAME_MAX)

void pl_ca_issuer_id(const uint8_t ca_pk[32], uint8_t out[PL_ISSUER_ID_SIZE])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, PL_ISSUER_ID_SIZE);
    crypto_generichash_update(&st, (const uint8_t *)"parley-ca-id", 12);
    crypto_generichash_update(&st, ca_pk, 32);
    crypto_generichash_final(&st, out, PL_ISSUER_ID_SIZE);
}

/* Writes the to-be-signed part (everything before the signature). */
static void write_tbs(pl_writer *w, const pl_cert *c)
{
    pl_write_u8(w, c->version);
    pl_write_u8(w, c->flags);
    pl_write_u8(w, c->name_len);
    pl_write_u8(w, 0);
    pl_write_u64(w, c->serial);
    pl_write_u64(w, c->not_before);
    pl_write_u64(w, c->not_after);
    pl_write_bytes(w, c->issuer, PL_ISSUER_ID_SIZE);
    pl_write_bytes(w, c->sign_pk, 32);
    pl_write_bytes(w, c->dh_pk, 32);
    pl_write_bytes(w, c->name, c->name_len);
}

static size_t signed_message(const pl_cert *c, uint8_t out[TBS_MAX])
{
    pl_writer w = pl_writer_make(out, TBS_MAX);
    pl_write_bytes(&w, CERT_DOMAIN, sizeof CERT_DOMAIN - 1);
    write_tbs(&w, c);
    return w.err ? 0 : w.off;
}

pl_cert_err pl_cert_encode(const pl_cert *c, uint8_t *buf, size_t cap, size_t *out_len)
{
    if (c->name_len > PL_NAME_MAX) return PL_CERT_ERR_MALFORMED;
    pl_writer w = pl_writer_make(buf, cap);
    write_tbs(&w, c);
    pl_write_bytes(&w, c->sig, 64);
    if (w.err) return PL_CERT_ERR_BUFFER;
    if (out_len) *out_len = w.off;
    return PL_CERT_OK;
}

pl_cert_err pl_cert_decode(pl_cert *c, const uint8_t *buf, size_t len)
{
    memset(c, 0, sizeof *c);
    pl_reader r = pl_reader_make(buf, len);
    c->version = pl_read_u8(&r);
    if (!r.err && c->version != PL_CERT_VERSION) return PL_CERT_ERR_VERSION;
    c->flags = pl_read_u8(&r);
    c->name_len = pl_read_u8(&r);
    uint8_t pad = pl_read_u8(&r);
    c->serial = pl_read_u64(&r);
    c->not_before = pl_read_u64(&r);
    c->not_after = pl_read_u64(&r);
    pl_read_bytes(&r, c->issuer, PL_ISSUER_ID_SIZE);
    pl_read_bytes(&r, c->sign_pk, 32);
    pl_read_bytes(&r, c->dh_pk, 32);
    if (r.err || c->flags != 0 || pad != 0 || c->name_len > PL_NAME_MAX) return PL_CERT_ERR_MALFORMED;
    pl_read_bytes(&r, c->name, c->name_len);
    c->name[c->name_len] = 0;
    pl_read_bytes(&r, c->sig, 64);
    if (!pl_reader_done(&r) || c->not_before >= c->not_after) return PL_CERT_ERR_MALFORMED;
    if (strlen(c->name) != c->name_len) return PL_CERT_ERR_MALFORMED; /* embedded NUL */
    char norm[PL_NAME_MAX + 1];
    pl_name_err ne = pl_name_normalize(c->name, norm);
    if ((ne != PL_NAME_OK && ne != PL_NAME_ERR_RESERVED) || strcmp(norm, c->name) != 0) return PL_CERT_ERR_MALFORMED;
    return PL_CERT_OK;
}

void pl_cert_sign(pl_cert *c, const uint8_t ca_pk[32], const uint8_t ca_sk[64])
{
    uint8_t msg[TBS_MAX];
    pl_ca_issuer_id(ca_pk, c->issuer);
    size_t n = signed_message(c, msg);
    crypto_sign_detached(c->sig, NULL, msg, n, ca_sk);
}

pl_cert_err pl_cert_verify(const pl_cert *c, const uint8_t ca_pk[32], uint64_t now_s, const pl_crl *crl)
{
    uint8_t issuer[PL_ISSUER_ID_SIZE];
    uint8_t msg[TBS_MAX];
    if (c->version != PL_CERT_VERSION) return PL_CERT_ERR_VERSION;
    pl_ca_issuer_id(ca_pk, issuer);
    if (sodium_memcmp(issuer, c->issuer, sizeof issuer) != 0) return PL_CERT_ERR_WRONG_ISSUER;
    size_t n = signed_message(c, msg);
    if (n == 0) return PL_CERT_ERR_MALFORMED;
    if (crypto_sign_verify_detached(c->sig, msg, n, ca_pk) != 0) return PL_CERT_ERR_SIGNATURE;
    if (now_s < c->not_before) return PL_CERT_ERR_NOT_YET_VALID;
    if (now_s >= c->not_after) return PL_CERT_ERR_EXPIRED;
    if (crl && pl_crl_contains(crl, c->serial)) return PL_CERT_ERR_REVOKED;
    return PL_CERT_OK;
}

const char *pl_cert_strerror(pl_cert_err err)
{
    switch (err) {
    case PL_CERT_OK: return "ok";
    case PL_CERT_ERR_MALFORMED: return "malformed certificate";
    case PL_CERT_ERR_VERSION: return "unknown certificate version";
    case PL_CERT_ERR_WRONG_ISSUER: return "certificate issued by a different authority";
    case PL_CERT_ERR_SIGNATURE: return "certificate signature does not verify";
    case PL_CERT_ERR_NOT_YET_VALID: return "certificate not yet valid";
    case PL_CERT_ERR_EXPIRED: return "certificate expired";
    case PL_CERT_ERR_REVOKED: return "certificate revoked";
    case PL_CERT_ERR_BUFFER: return "buffer too small";
    }
    return "unknown certificate error";
}

/* ---- revocation lists ------------------------------------------------------ */

pl_cert_err pl_crl_decode(pl_crl *crl, const uint8_t *buf, size_t len)
{
    memset(crl, 0, sizeof *crl);
    pl_reader r = pl_reader_make(buf, len);
    crl->version = pl_read_u8(&r);
    uint8_t pad[3];
    pl_read_bytes(&r, pad, 3);
    pl_read_bytes(&r, crl->issuer, PL_ISSUER_ID_SIZE);
    crl->number = pl_read_u64(&r);
    crl->issued_at = pl_read_u64(&r);
    crl->count = pl_read_u32(&r);
    if (r.err) return PL_CERT_ERR_MALFORMED;
    if (crl->version != 1) return PL_CERT_ERR_VERSION;
    if (pad[0] | pad[1] | pad[2] || crl->count > PL_CRL_MAX_COUNT) return PL_CERT_ERR_MALFORMED;
    crl->serials_be = pl_read_ptr(&r, 8 * (size_t)crl->count);
    pl_read_bytes(&r, crl->sig, 64);
    if (!pl_reader_done(&r)) return PL_CERT_ERR_MALFORMED;
    for (uint32_t i = 1; i < crl->count; i++)
        if (pl_get_u64be(crl->serials_be + 8 * (i - 1)) >= pl_get_u64be(crl->serials_be + 8 * i))
            return PL_CERT_ERR_MALFORMED;
    return PL_CERT_OK;
}

static void crl_hash(const pl_crl *crl, uint8_t out[64])
{
    /* The CRL may be large, so it is signed in Ed25519ph-free style over a
     * BLAKE2b-512 digest of the domain and the header and serials. */
    uint8_t hdr[PL_CRL_HEADER_SIZE];
    pl_writer w = pl_writer_make(hdr, sizeof hdr);
    pl_write_u8(&w, crl->version);
    pl_write_zeros(&w, 3);
    pl_write_bytes(&w, crl->issuer, PL_ISSUER_ID_SIZE);
    pl_write_u64(&w, crl->number);
    pl_write_u64(&w, crl->issued_at);
    pl_write_u32(&w, crl->count);
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 64);
    crypto_generichash_update(&st, (const uint8_t *)CRL_DOMAIN, sizeof CRL_DOMAIN - 1);
    crypto_generichash_update(&st, hdr, sizeof hdr);
    if (crl->count) crypto_generichash_update(&st, crl->serials_be, 8 * (size_t)crl->count);
    crypto_generichash_final(&st, out, 64);
}

pl_cert_err pl_crl_verify(const pl_crl *crl, const uint8_t ca_pk[32])
{
    uint8_t issuer[PL_ISSUER_ID_SIZE], digest[64];
    pl_ca_issuer_id(ca_pk, issuer);
    if (sodium_memcmp(issuer, crl->issuer, sizeof issuer) != 0) return PL_CERT_ERR_WRONG_ISSUER;
    crl_hash(crl, digest);
    if (crypto_sign_verify_detached(crl->sig, digest, sizeof digest, ca_pk) != 0) return PL_CERT_ERR_SIGNATURE;
    return PL_CERT_OK;
}

bool pl_crl_contains(const pl_crl *crl, uint64_t serial)
{
    size_t lo = 0, hi = crl->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t v = pl_get_u64be(crl->serials_be + 8 * mid);
        if (v == serial) return true;
        if (v < serial) lo = mid + 1;
        else hi = mid;
    }
    return false;
}

pl_cert_err pl_crl_build(uint8_t *buf, size_t cap, size_t *out_len, uint64_t number, uint64_t issued_at,
                         const uint64_t *serials, uint32_t count, const uint8_t ca_pk[32], const uint8_t ca_sk[64])
{
    if (count > PL_CRL_MAX_COUNT) return PL_CERT_ERR_MALFORMED;
    for (uint32_t i = 1; i < count; i++)
        if (serials[i - 1] >= serials[i]) return PL_CERT_ERR_MALFORMED;
    pl_writer w = pl_writer_make(buf, cap);
    pl_crl crl = {.version = 1, .number = number, .issued_at = issued_at, .count = count};
    pl_ca_issuer_id(ca_pk, crl.issuer);
    pl_write_u8(&w, 1);
    pl_write_zeros(&w, 3);
    pl_write_bytes(&w, crl.issuer, PL_ISSUER_ID_SIZE);
    pl_write_u64(&w, number);
    pl_write_u64(&w, issued_at);
    pl_write_u32(&w, count);
    uint8_t *ser = pl_write_reserve(&w, 8 * (size_t)count);
    uint8_t *sig = pl_write_reserve(&w, 64);
    if (w.err) return PL_CERT_ERR_BUFFER;
    for (uint32_t i = 0; i < count; i++) pl_put_u64be(ser + 8 * i, serials[i]);
    crl.serials_be = ser;
    uint8_t digest[64];
    crl_hash(&crl, digest);
    crypto_sign_detached(sig, NULL, digest, sizeof digest, ca_sk);
    if (out_len) *out_len = w.off;
    return PL_CERT_OK;
}
