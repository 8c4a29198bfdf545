/*
 * record.c - signed directory records; see record.h and docs/directory.md.
 *
 * Layout (big-endian; section 1 of docs/directory.md has the full table):
 *   header (38 bytes)
 *     0 version u8 | 1 flags u8 | 2 nat_mapping u8 | 3 nat_filtering u8
 *     4 nat_flags u8 | 5 n_supernodes u8 | 6 n_candidates u8 | 7 presence u8
 *     8 capabilities u32 | 12 sequence u64 | 20 issued_at u64
 *     28 expires_at u64 | 36 cert_len u16
 *   n_supernodes x (pk[32], address)             ascending by pk
 *   n_candidates x (type u8, transport u8, priority u32, address)
 *                                                 canonical order
 *   status_len u8, status[status_len]             UTF-8, no control characters
 *   certificate[cert_len]                         as pl_cert_encode writes it
 *   signature[64]  Ed25519 by the certificate's key over
 *                  "parley-record-v1" || every byte before the signature
 * An address is family u8 (4 or 6), port u16 (never 0), then 4 or 16 bytes.
 *
 * One check function, check_fields, decides what a valid record is; the
 * decoder runs it on what it read and the encoder on what it is given, so
 * the two cannot disagree and every encoded record decodes back to itself.
 */
#include "record.h"

#include <sodium.h>
#include <string.h>

#include "wire.h"

#define RECORD_DOMAIN "parley-record-v1"
#define DOMAIN_LEN (sizeof RECORD_DOMAIN - 1)
#define SIGNED_MAX (DOMAIN_LEN + PL_RECORD_MAX_SIZE - PL_RECORD_SIG_SIZE)

/* ---- canonical order --------------------------------------------------------- */

static size_t addr_ip_len(const pl_addr *a) { return a->family == PL_AF_INET4 ? 4 : 16; }

/* Orders addresses the way their encodings sort: family, port, then the
 * address bytes (equal families have equal lengths). */
static int addr_cmp(const pl_addr *a, const pl_addr *b)
{
    if (a->family != b->family) return a->family < b->family ? -1 : 1;
    if (a->port != b->port) return a->port < b->port ? -1 : 1;
    return memcmp(a->ip, b->ip, addr_ip_len(a));
}

/* Candidates: the preferred (highest priority) first, so that a reader can
 * try them in the order they come; ties by type, transport and address, so
 * that the order is total and a duplicate shows up as an equal neighbour. */
static int candidate_cmp(const pl_record_candidate *a, const pl_record_candidate *b)
{
    if (a->priority != b->priority) return a->priority > b->priority ? -1 : 1;
    if (a->type != b->type) return a->type < b->type ? -1 : 1;
    if (a->transport != b->transport) return a->transport < b->transport ? -1 : 1;
    return addr_cmp(&a->addr, &b->addr);
}

void pl_record_sort_candidates(pl_record *r)
{
    size_t n = r->n_candidates < PL_RECORD_MAX_CANDIDATES ? r->n_candidates : PL_RECORD_MAX_CANDIDATES;
    for (size_t i = 1; i < n; i++) {
        pl_record_candidate c = r->candidates[i];
        size_t j = i;
        for (; j > 0 && candidate_cmp(&r->candidates[j - 1], &c) > 0; j--) r->candidates[j] = r->candidates[j - 1];
        r->candidates[j] = c;
    }
}

void pl_record_sort_supernodes(pl_record *r)
{
    size_t n = r->n_supernodes < PL_RECORD_MAX_SUPERNODES ? r->n_supernodes : PL_RECORD_MAX_SUPERNODES;
    for (size_t i = 1; i < n; i++) {
        pl_record_supernode s = r->supernodes[i];
        size_t j = i;
        for (; j > 0 && memcmp(r->supernodes[j - 1].pk, s.pk, 32) > 0; j--) r->supernodes[j] = r->supernodes[j - 1];
        r->supernodes[j] = s;
    }
}

/* ---- validity ------------------------------------------------------------------ */

static bool addr_ok(const pl_addr *a)
{
    return (a->family == PL_AF_INET4 || a->family == PL_AF_INET6) && a->port != 0;
}

/* Every rule a record must follow to be encoded or decoded, except the
 * certificate, which the callers check (the decoder while reading it).
 * Signature, certificate validity and time are verify's business. */
static bool check_fields(const pl_record *r)
{
    if (r->version != PL_RECORD_VERSION) return false;
    if (r->flags & ~PL_RECORD_F_ALL) return false;
    if (r->nat_mapping > PL_NAT_BEHAVIOUR_MAX || r->nat_filtering > PL_NAT_BEHAVIOUR_MAX) return false;
    if (r->nat_flags & ~PL_NAT_F_ALL) return false;
    if (r->n_supernodes > PL_RECORD_MAX_SUPERNODES || r->n_candidates > PL_RECORD_MAX_CANDIDATES) return false;
    if (r->presence > PL_PRESENCE_MAX || r->status_len > PL_RECORD_STATUS_MAX) return false;
    /* Status text is shown to people: no control characters (which could
     * rewrite a terminal), and the terminator where the length says. */
    for (size_t i = 0; i < r->status_len; i++)
        if ((uint8_t)r->status[i] < 0x20 || (uint8_t)r->status[i] == 0x7f) return false;
    if (r->status[r->status_len] != 0) return false;
    /* Privacy mode publishes no address of the user: only its supernodes. */
    if ((r->flags & PL_RECORD_F_PRIVATE) && r->n_candidates != 0) return false;
    if (r->expires_at <= r->issued_at || r->expires_at - r->issued_at > PL_RECORD_MAX_LIFETIME) return false;
    for (size_t i = 0; i < r->n_supernodes; i++) {
        if (!addr_ok(&r->supernodes[i].addr)) return false;
        if (i > 0 && memcmp(r->supernodes[i - 1].pk, r->supernodes[i].pk, 32) >= 0) return false;
    }
    for (size_t i = 0; i < r->n_candidates; i++) {
        const pl_record_candidate *c = &r->candidates[i];
        if (c->type < PL_CAND_HOST || c->type > PL_CAND_RELAYED) return false;
        if (c->transport < PL_TRANSPORT_UDP || c->transport > PL_TRANSPORT_TCP) return false;
        if (!addr_ok(&c->addr)) return false;
        if (i > 0 && candidate_cmp(&r->candidates[i - 1], c) >= 0) return false;
    }
    return true;
}

/* The embedded certificate, decoded from the bytes the signature covers
 * (never from r->cert, which a caller building a record may not have set). */
static bool embedded_cert(const pl_record *r, pl_cert *out)
{
    return r->cert_len <= PL_CERT_MAX_SIZE && pl_cert_decode(out, r->cert_bytes, r->cert_len) == PL_CERT_OK;
}

/* ---- encoding --------------------------------------------------------------------- */

static void write_body(pl_writer *w, const pl_record *r)
{
    pl_write_u8(w, r->version);
    pl_write_u8(w, r->flags);
    pl_write_u8(w, r->nat_mapping);
    pl_write_u8(w, r->nat_filtering);
    pl_write_u8(w, r->nat_flags);
    pl_write_u8(w, r->n_supernodes);
    pl_write_u8(w, r->n_candidates);
    pl_write_u8(w, r->presence);
    pl_write_u32(w, r->capabilities);
    pl_write_u64(w, r->sequence);
    pl_write_u64(w, r->issued_at);
    pl_write_u64(w, r->expires_at);
    pl_write_u16(w, r->cert_len);
    for (size_t i = 0; i < r->n_supernodes; i++) {
        pl_write_bytes(w, r->supernodes[i].pk, 32);
        pl_write_addr(w, &r->supernodes[i].addr);
    }
    for (size_t i = 0; i < r->n_candidates; i++) {
        const pl_record_candidate *c = &r->candidates[i];
        pl_write_u8(w, c->type);
        pl_write_u8(w, c->transport);
        pl_write_u32(w, c->priority);
        pl_write_addr(w, &c->addr);
    }
    pl_write_u8(w, r->status_len);
    pl_write_bytes(w, r->status, r->status_len);
    pl_write_bytes(w, r->cert_bytes, r->cert_len);
}

/* What the signature covers: the domain, then the record up to the
 * signature. Refuses records the decoder would refuse. */
static pl_record_err signed_message(const pl_record *r, uint8_t out[SIGNED_MAX], size_t *len, pl_cert *c)
{
    if (!check_fields(r) || !embedded_cert(r, c)) return PL_RECORD_ERR_MALFORMED;
    pl_writer w = pl_writer_make(out, SIGNED_MAX);
    pl_write_bytes(&w, RECORD_DOMAIN, DOMAIN_LEN);
    write_body(&w, r);
    if (w.err) return PL_RECORD_ERR_MALFORMED; /* cannot happen: SIGNED_MAX bounds every valid record */
    *len = w.off;
    return PL_RECORD_OK;
}

pl_record_err pl_record_encode(const pl_record *r, uint8_t *buf, size_t cap, size_t *out_len)
{
    pl_cert c;
    if (!check_fields(r) || !embedded_cert(r, &c)) return PL_RECORD_ERR_MALFORMED;
    pl_writer w = pl_writer_make(buf, cap);
    write_body(&w, r);
    pl_write_bytes(&w, r->sig, PL_RECORD_SIG_SIZE);
    if (w.err) return PL_RECORD_ERR_BUFFER;
    if (out_len) *out_len = w.off;
    return PL_RECORD_OK;
}

/* ---- decoding ----------------------------------------------------------------------- */

/* Reads an address and refuses what pl_read_addr lets through but a record
 * may not carry (port 0). */
static bool read_addr(pl_reader *rd, pl_addr *a)
{
    pl_read_addr(rd, a);
    return !rd->err && addr_ok(a);
}

pl_record_err pl_record_decode(pl_record *r, const uint8_t *buf, size_t len)
{
    memset(r, 0, sizeof *r);
    pl_reader rd = pl_reader_make(buf, len);
    r->version = pl_read_u8(&rd);
    r->flags = pl_read_u8(&rd);
    r->nat_mapping = pl_read_u8(&rd);
    r->nat_filtering = pl_read_u8(&rd);
    r->nat_flags = pl_read_u8(&rd);
    r->n_supernodes = pl_read_u8(&rd);
    r->n_candidates = pl_read_u8(&rd);
    r->presence = pl_read_u8(&rd);
    r->capabilities = pl_read_u32(&rd);
    r->sequence = pl_read_u64(&rd);
    r->issued_at = pl_read_u64(&rd);
    r->expires_at = pl_read_u64(&rd);
    r->cert_len = pl_read_u16(&rd);
    /* The counts bound the arrays below: check them before using them. */
    if (rd.err || r->n_supernodes > PL_RECORD_MAX_SUPERNODES ||
        r->n_candidates > PL_RECORD_MAX_CANDIDATES || r->cert_len > PL_CERT_MAX_SIZE)
        return PL_RECORD_ERR_MALFORMED;
    for (size_t i = 0; i < r->n_supernodes; i++) {
        pl_read_bytes(&rd, r->supernodes[i].pk, 32);
        if (!read_addr(&rd, &r->supernodes[i].addr)) return PL_RECORD_ERR_MALFORMED;
    }
    for (size_t i = 0; i < r->n_candidates; i++) {
        pl_record_candidate *c = &r->candidates[i];
        c->type = pl_read_u8(&rd);
        c->transport = pl_read_u8(&rd);
        c->priority = pl_read_u32(&rd);
        if (!read_addr(&rd, &c->addr)) return PL_RECORD_ERR_MALFORMED;
    }
    r->status_len = pl_read_u8(&rd);
    if (r->status_len > PL_RECORD_STATUS_MAX) return PL_RECORD_ERR_MALFORMED;
    pl_read_bytes(&rd, r->status, r->status_len);
    r->status[r->status_len] = 0;
    pl_read_bytes(&rd, r->cert_bytes, r->cert_len);
    pl_read_bytes(&rd, r->sig, PL_RECORD_SIG_SIZE);
    if (!pl_reader_done(&rd) || !check_fields(r)) return PL_RECORD_ERR_MALFORMED;
    if (pl_cert_decode(&r->cert, r->cert_bytes, r->cert_len) != PL_CERT_OK) return PL_RECORD_ERR_MALFORMED;
    return PL_RECORD_OK;
}

/* ---- signing and verification ---------------------------------------------------------- */

pl_record_err pl_record_sign(pl_record *r, const pl_identity *id, const uint8_t *cert, size_t cert_len)
{
    pl_cert c;
    if (cert_len > PL_CERT_MAX_SIZE || pl_cert_decode(&c, cert, cert_len) != PL_CERT_OK) return PL_RECORD_ERR_CERT;
    /* The certificate must name the key that signs, and the identity's
     * secret key must belong to its public key (libsodium keeps the public
     * key in the second half of the secret key). */
    if (sodium_memcmp(c.sign_pk, id->sign_pk, 32) != 0 || sodium_memcmp(id->sign_sk + 32, id->sign_pk, 32) != 0)
        return PL_RECORD_ERR_WRONG_KEY;
    memcpy(r->cert_bytes, cert, cert_len);
    r->cert_len = (uint16_t)cert_len;
    r->cert = c;
    uint8_t msg[SIGNED_MAX];
    size_t n = 0;
    pl_record_err e = signed_message(r, msg, &n, &c);
    if (e != PL_RECORD_OK) return e;
    crypto_sign_detached(r->sig, NULL, msg, n, id->sign_sk);
    return PL_RECORD_OK;
}

/* True when expected_name (any case) is the certificate's name. */
static bool name_matches(const pl_cert *c, const char *expected_name)
{
    char norm[PL_NAME_MAX + 1];
    pl_name_err ne = pl_name_normalize(expected_name, norm);
    /* Reserved names are still names: the CA may have issued one. */
    if (ne != PL_NAME_OK && ne != PL_NAME_ERR_RESERVED) return false;
    return strcmp(norm, c->name) == 0;
}

pl_record_err pl_record_verify(const pl_record *r, const uint8_t ca_pk[32], const pl_crl *crl, uint64_t now_s,
                               const char *expected_name, pl_cert_err *cert_err)
{
    if (cert_err) *cert_err = PL_CERT_OK;
    uint8_t msg[SIGNED_MAX];
    size_t n = 0;
    pl_cert c;
    pl_record_err e = signed_message(r, msg, &n, &c);
    if (e != PL_RECORD_OK) return e;
    pl_cert_err ce = pl_cert_verify(&c, ca_pk, now_s, crl);
    if (ce != PL_CERT_OK) {
        if (cert_err) *cert_err = ce;
        return PL_RECORD_ERR_CERT;
    }
    if (expected_name && !name_matches(&c, expected_name)) return PL_RECORD_ERR_WRONG_NAME;
    if (crypto_sign_verify_detached(r->sig, msg, n, c.sign_pk) != 0) return PL_RECORD_ERR_SIGNATURE;
    /* Written without now_s + skew, which could overflow. */
    if (r->issued_at > now_s && r->issued_at - now_s > PL_RECORD_MAX_SKEW) return PL_RECORD_ERR_NOT_YET_VALID;
    if (now_s >= r->expires_at) return PL_RECORD_ERR_EXPIRED;
    return PL_RECORD_OK;
}

/* ---- ordering and the store's decision ---------------------------------------------------- */

static bool same_user(const pl_cert *a, const pl_cert *b)
{
    return memcmp(a->sign_pk, b->sign_pk, 32) == 0 && strcmp(a->name, b->name) == 0;
}

pl_record_err pl_record_newer(const pl_record *a, const pl_record *b, int *order)
{
    pl_cert ca, cb;
    *order = 0;
    if (!embedded_cert(a, &ca) || !embedded_cert(b, &cb)) return PL_RECORD_ERR_MALFORMED;
    if (!same_user(&ca, &cb)) return PL_RECORD_ERR_OTHER_USER;
    if (a->sequence != b->sequence) {
        *order = a->sequence > b->sequence ? 1 : -1;
        return PL_RECORD_OK;
    }
    /* One sequence number: the two must be the very same record. Comparing
     * encodings (signature included) catches a difference in any field. */
    uint8_t ea[PL_RECORD_MAX_SIZE], eb[PL_RECORD_MAX_SIZE];
    size_t na = 0, nb = 0;
    if (pl_record_encode(a, ea, sizeof ea, &na) != PL_RECORD_OK || pl_record_encode(b, eb, sizeof eb, &nb) != PL_RECORD_OK)
        return PL_RECORD_ERR_MALFORMED;
    if (na != nb || memcmp(ea, eb, na) != 0) return PL_RECORD_ERR_CONFLICT;
    return PL_RECORD_OK;
}

static pl_record_offer slot_offer(const uint8_t *current, size_t current_len, const uint8_t *candidate,
                                  size_t candidate_len, bool candidate_verified, const uint8_t ca_pk[32],
                                  const pl_crl *crl, uint64_t now_s, const char *expected_name, pl_record_err *why)
{
    pl_record_err dummy;
    if (!why) why = &dummy;
    /* Two records are large (about 1.2 KB each); they live on the stack of
     * this one call, never in the store. */
    pl_record cand, cur;
    *why = pl_record_decode(&cand, candidate, candidate_len);
    if (*why != PL_RECORD_OK) return PL_RECORD_OFFER_REFUSE;
    if (!candidate_verified) *why = pl_record_verify(&cand, ca_pk, crl, now_s, expected_name, NULL);
    if (*why != PL_RECORD_OK) return PL_RECORD_OFFER_REFUSE;
    /* An empty slot, or one holding something that is not a record (a store
     * that lost bytes), takes any record that verifies. */
    if (!current || pl_record_decode(&cur, current, current_len) != PL_RECORD_OK) return PL_RECORD_OFFER_REPLACE;

    int order = 0;
    pl_record_err e = pl_record_newer(&cand, &cur, &order);
    if (e == PL_RECORD_ERR_OTHER_USER) {
        /* The name changed hands (a new key after re-registration, or the
         * slot held a stranger). The holder of the current record keeps it
         * as long as that record is good, so no one takes over a live
         * user's slot; once it stops verifying, the newcomer gets it. */
        if (pl_record_verify(&cur, ca_pk, crl, now_s, expected_name, NULL) == PL_RECORD_OK) {
            *why = PL_RECORD_ERR_OTHER_USER;
            return PL_RECORD_OFFER_REFUSE;
        }
        *why = PL_RECORD_OK;
        return PL_RECORD_OFFER_REPLACE;
    }
    if (e != PL_RECORD_OK) {
        /* CONFLICT: keep the first one seen; the user gets past it by
         * signing a higher sequence number. */
        *why = e;
        return PL_RECORD_OFFER_REFUSE;
    }
    if (order > 0) return PL_RECORD_OFFER_REPLACE;
    if (order == 0) return PL_RECORD_OFFER_KEEP;
    /* An older record of the same user never wins, even when the newer one
     * has expired: otherwise a replayed old record could bring back
     * addresses the user left. */
    *why = PL_RECORD_ERR_STALE;
    return PL_RECORD_OFFER_REFUSE;
}

pl_record_offer pl_record_slot_offer(const uint8_t *current, size_t current_len, const uint8_t *candidate,
                                     size_t candidate_len, const uint8_t ca_pk[32], const pl_crl *crl,
                                     uint64_t now_s, const char *expected_name, pl_record_err *why)
{
    return slot_offer(current, current_len, candidate, candidate_len, false, ca_pk, crl, now_s, expected_name, why);
}

pl_record_offer pl_record_slot_offer_verified(const uint8_t *current, size_t current_len, const uint8_t *candidate,
                                              size_t candidate_len, const uint8_t ca_pk[32], const pl_crl *crl,
                                              uint64_t now_s, const char *expected_name, pl_record_err *why)
{
    return slot_offer(current, current_len, candidate, candidate_len, true, ca_pk, crl, now_s, expected_name, why);
}

const char *pl_record_strerror(pl_record_err err)
{
    switch (err) {
    case PL_RECORD_OK: return "ok";
    case PL_RECORD_ERR_MALFORMED: return "malformed directory record";
    case PL_RECORD_ERR_BUFFER: return "buffer too small";
    case PL_RECORD_ERR_CERT: return "the record's certificate is refused";
    case PL_RECORD_ERR_WRONG_NAME: return "the record belongs to a different name";
    case PL_RECORD_ERR_SIGNATURE: return "the record's signature does not verify";
    case PL_RECORD_ERR_NOT_YET_VALID: return "the record is issued in the future";
    case PL_RECORD_ERR_EXPIRED: return "the record has expired";
    case PL_RECORD_ERR_WRONG_KEY: return "the certificate is not for this identity's key";
    case PL_RECORD_ERR_OTHER_USER: return "the records belong to different users";
    case PL_RECORD_ERR_STALE: return "an older record than the one held";
    case PL_RECORD_ERR_CONFLICT: return "two different records with one sequence number";
    }
    return "unknown record error";
}
