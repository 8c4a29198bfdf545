/* envelope.c - end-to-end sealed messages (envelope.h, docs/messages.md). */
#include "envelope.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "wire.h"

#define SIG_CONTEXT "parley-envelope1" /* 16 bytes, no terminator */
#define KEY_CONTEXT "parley-env-key-1"
#define NONCE_SIZE crypto_aead_xchacha20poly1305_ietf_NPUBBYTES

/* ---- the outer header ------------------------------------------------------------------ */

static bool name_ok(const char *name)
{
    char norm[PL_NAME_MAX + 1];
    return pl_name_normalize(name, norm) == PL_NAME_OK && strcmp(norm, name) == 0;
}

static size_t write_header(uint8_t *out, const uint8_t id[PL_ENV_ID_SIZE], uint16_t part, pl_time sent_at,
                           const char *recipient)
{
    size_t n = strlen(recipient);
    pl_writer w = pl_writer_make(out, PL_ENV_HEADER_MAX);
    pl_write_u8(&w, PL_ENV_VERSION);
    pl_write_bytes(&w, id, PL_ENV_ID_SIZE);
    pl_write_u16(&w, part);
    pl_write_u64(&w, sent_at);
    pl_write_u8(&w, (uint8_t)n);
    pl_write_bytes(&w, recipient, n);
    return w.err ? 0 : w.off;
}

pl_env_err pl_env_peek(pl_env_header *h, const uint8_t *env, size_t len)
{
    memset(h, 0, sizeof *h);
    if (len > PL_ENV_MAX_SIZE) return PL_ENV_ERR_MALFORMED;
    pl_reader r = pl_reader_make(env, len);
    h->version = pl_read_u8(&r);
    pl_read_bytes(&r, h->id, PL_ENV_ID_SIZE);
    h->part = pl_read_u16(&r);
    h->sent_at = pl_read_u64(&r);
    uint8_t n = pl_read_u8(&r);
    if (r.err || h->version != PL_ENV_VERSION || n > PL_NAME_MAX || h->part > PL_ENV_MAX_CHUNKS)
        return PL_ENV_ERR_MALFORMED;
    pl_read_bytes(&r, h->recipient, n);
    h->recipient[n] = 0;
    if (r.err || memchr(h->recipient, 0, n) || !name_ok(h->recipient)) return PL_ENV_ERR_MALFORMED;
    h->header_len = r.off;
    if (h->part == 0) h->eph_pk = pl_read_ptr(&r, 32);
    h->ct_len = pl_reader_left(&r);
    /* The smallest head plaintext is its fixed fields and a certificate with
     * the shortest name; a chunk holds at least one byte. */
    size_t min_ct = h->part == 0 ? PL_ENV_TAG_SIZE + 4 + 6 + 2 + 64 + PL_CERT_FIXED_SIZE + PL_NAME_MIN
                                 : PL_ENV_TAG_SIZE + 1;
    if (r.err || h->ct_len < min_ct || (h->part && h->ct_len > PL_ENV_TAG_SIZE + PL_ENV_CHUNK_BODY))
        return PL_ENV_ERR_MALFORMED;
    h->ct = pl_read_ptr(&r, h->ct_len);
    return PL_ENV_OK;
}

/* ---- keys ------------------------------------------------------------------------------------ */

/* The head's key: BLAKE2b-256 of the context, the shared secret and both
 * public keys, so the key belongs to exactly this ephemeral and recipient. */
static bool head_key(uint8_t key[32], const uint8_t eph_sk_or_dh_sk[32], const uint8_t peer_pk[32],
                     const uint8_t eph_pk[32], const uint8_t recipient_dh_pk[32])
{
    uint8_t shared[32];
    if (crypto_scalarmult(shared, eph_sk_or_dh_sk, peer_pk) != 0) {
        sodium_memzero(shared, sizeof shared);
        return false;
    }
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)KEY_CONTEXT, 16);
    crypto_generichash_update(&st, shared, 32);
    crypto_generichash_update(&st, eph_pk, 32);
    crypto_generichash_update(&st, recipient_dh_pk, 32);
    crypto_generichash_final(&st, key, 32);
    sodium_memzero(shared, sizeof shared);
    sodium_memzero(&st, sizeof st);
    return true;
}

static void nonce_for(uint8_t nonce[NONCE_SIZE], const uint8_t id[PL_ENV_ID_SIZE], uint16_t part)
{
    memset(nonce, 0, NONCE_SIZE);
    memcpy(nonce, id, PL_ENV_ID_SIZE);
    nonce[PL_ENV_ID_SIZE] = (uint8_t)(part >> 8);
    nonce[PL_ENV_ID_SIZE + 1] = (uint8_t)part;
}

/* The bytes the sender signs: context, outer header, ephemeral key, the
 * recipient's X25519 key, and the plaintext up to the signature. */
static void sig_input(crypto_sign_state *st, const uint8_t *header, size_t header_len, const uint8_t eph_pk[32],
                      const uint8_t recipient_dh_pk[32], const uint8_t *plain, size_t plain_len)
{
    crypto_sign_init(st);
    crypto_sign_update(st, (const uint8_t *)SIG_CONTEXT, 16);
    crypto_sign_update(st, header, header_len);
    crypto_sign_update(st, eph_pk, 32);
    crypto_sign_update(st, recipient_dh_pk, 32);
    crypto_sign_update(st, plain, plain_len);
}

/* ---- sizes ---------------------------------------------------------------------------------- */

uint16_t pl_env_chunks_for(size_t body_len)
{
    if (body_len <= PL_ENV_INLINE_MAX) return 0;
    return (uint16_t)((body_len + PL_ENV_CHUNK_BODY - 1) / PL_ENV_CHUNK_BODY);
}

size_t pl_env_chunk_offset(uint16_t part) { return part ? (size_t)(part - 1) * PL_ENV_CHUNK_BODY : 0; }

size_t pl_env_chunk_len(uint32_t body_len, uint16_t n_chunks, uint16_t part)
{
    if (part == 0 || part > n_chunks) return 0;
    size_t off = pl_env_chunk_offset(part);
    size_t left = body_len > off ? body_len - off : 0;
    return left < PL_ENV_CHUNK_BODY ? left : PL_ENV_CHUNK_BODY;
}

/* ---- sealing ---------------------------------------------------------------------------------- */

pl_env_err pl_env_seal(pl_env_sealed *st, uint8_t *out, size_t cap, size_t *out_len, const pl_identity *sender,
                       const uint8_t *sender_cert, size_t sender_cert_len, const pl_cert *recipient,
                       uint8_t content_type, const uint8_t *body, size_t body_len, pl_time now, const pl_rng *rng)
{
    memset(st, 0, sizeof *st);
    *out_len = 0;
    pl_cert check;
    if (!sender || !recipient || !rng || content_type == 0 || sender_cert_len > PL_CERT_MAX_SIZE ||
        pl_cert_decode(&check, sender_cert, sender_cert_len) != PL_CERT_OK ||
        memcmp(check.sign_pk, sender->sign_pk, 32) != 0 || !name_ok(recipient->name) || (body_len && !body))
        return PL_ENV_ERR_ARG;
    if (body_len > PL_ENV_MAX_BODY) return PL_ENV_ERR_TOO_BIG;

    rng->fill(rng->ctx, st->id, sizeof st->id);
    snprintf(st->recipient, sizeof st->recipient, "%s", recipient->name);
    st->sent_at = now;
    st->content_type = content_type;
    st->n_chunks = pl_env_chunks_for(body_len);
    st->body = body;
    st->body_len = body_len;
    if (st->n_chunks) rng->fill(rng->ctx, st->key, sizeof st->key);

    uint8_t header[PL_ENV_HEADER_MAX];
    size_t hlen = write_header(header, st->id, 0, now, st->recipient);
    size_t inline_len = st->n_chunks ? 0 : body_len;
    size_t plain_len = 4 + sender_cert_len + 6 + (st->n_chunks ? 32 : 0) + 2 + inline_len + 64;
    size_t total = hlen + 32 + plain_len + PL_ENV_TAG_SIZE;
    if (total > PL_ENV_MAX_SIZE || total > cap) return PL_ENV_ERR_BUFFER;

    /* The plaintext is built in place, where the ciphertext will be. */
    uint8_t eph_pk[32], eph_sk[32], key[32];
    rng->fill(rng->ctx, eph_sk, sizeof eph_sk);
    crypto_scalarmult_base(eph_pk, eph_sk);
    memcpy(out, header, hlen);
    memcpy(out + hlen, eph_pk, 32);
    uint8_t *plain = out + hlen + 32;
    pl_writer w = pl_writer_make(plain, plain_len);
    pl_write_u8(&w, content_type);
    pl_write_u8(&w, 0);
    pl_write_u16(&w, (uint16_t)sender_cert_len);
    pl_write_bytes(&w, sender_cert, sender_cert_len);
    pl_write_u16(&w, st->n_chunks);
    pl_write_u32(&w, (uint32_t)body_len);
    if (st->n_chunks) pl_write_bytes(&w, st->key, 32);
    pl_write_u16(&w, (uint16_t)inline_len);
    pl_write_bytes(&w, body, inline_len);
    crypto_sign_state ss;
    sig_input(&ss, header, hlen, eph_pk, recipient->dh_pk, plain, w.off);
    uint8_t *sig = pl_write_reserve(&w, 64);
    pl_env_err err = PL_ENV_OK;
    if (w.err || !sig || crypto_sign_final_create(&ss, sig, NULL, sender->sign_sk) != 0 ||
        !head_key(key, eph_sk, recipient->dh_pk, eph_pk, recipient->dh_pk)) {
        err = PL_ENV_ERR_ARG;
    } else {
        uint8_t nonce[NONCE_SIZE];
        nonce_for(nonce, st->id, 0);
        unsigned long long clen;
        crypto_aead_xchacha20poly1305_ietf_encrypt(plain, &clen, plain, plain_len, out, hlen + 32, NULL, nonce,
                                                   key);
        *out_len = total;
    }
    sodium_memzero(eph_sk, sizeof eph_sk);
    sodium_memzero(key, sizeof key);
    sodium_memzero(&ss, sizeof ss);
    if (err) {
        sodium_memzero(out, total);
        pl_env_sealed_wipe(st);
    }
    return err;
}

pl_env_err pl_env_seal_chunk(const pl_env_sealed *st, uint16_t part, uint8_t *out, size_t cap, size_t *out_len)
{
    *out_len = 0;
    if (part == 0 || part > st->n_chunks) return PL_ENV_ERR_WRONG_MESSAGE;
    size_t off = pl_env_chunk_offset(part), n = pl_env_chunk_len((uint32_t)st->body_len, st->n_chunks, part);
    uint8_t header[PL_ENV_HEADER_MAX];
    size_t hlen = write_header(header, st->id, part, st->sent_at, st->recipient);
    if (hlen + n + PL_ENV_TAG_SIZE > cap) return PL_ENV_ERR_BUFFER;
    memcpy(out, header, hlen);
    uint8_t nonce[NONCE_SIZE];
    nonce_for(nonce, st->id, part);
    unsigned long long clen;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + hlen, &clen, st->body + off, n, header, hlen, NULL, nonce,
                                               st->key);
    *out_len = hlen + (size_t)clen;
    return PL_ENV_OK;
}

void pl_env_sealed_wipe(pl_env_sealed *st) { sodium_memzero(st, sizeof *st); }

/* ---- opening ---------------------------------------------------------------------------------- */

pl_env_err pl_env_open(pl_env_opened *o, const uint8_t *env, size_t len, const pl_env_recipient *me,
                       const uint8_t ca_pk[32], const pl_crl *crl, pl_time now, pl_cert_err *cert_err)
{
    memset(o, 0, sizeof *o);
    if (cert_err) *cert_err = PL_CERT_OK;
    pl_env_header h;
    if (pl_env_peek(&h, env, len) != PL_ENV_OK || h.part != 0) return PL_ENV_ERR_MALFORMED;
    if (!me || !me->identity || !me->name) return PL_ENV_ERR_ARG;
    char mine[PL_NAME_MAX + 1];
    if (pl_name_normalize(me->name, mine) != PL_NAME_OK) return PL_ENV_ERR_ARG;
    if (strcmp(mine, h.recipient) != 0) return PL_ENV_ERR_WRONG_RECIPIENT;

    uint8_t key[32], nonce[NONCE_SIZE];
    size_t plain_len = h.ct_len - PL_ENV_TAG_SIZE;
    if (!head_key(key, me->identity->dh_sk, h.eph_pk, h.eph_pk, me->identity->dh_pk)) return PL_ENV_ERR_AUTH;
    nonce_for(nonce, h.id, 0);
    int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(o->plain, NULL, NULL, h.ct, h.ct_len, env,
                                                        h.header_len + 32, nonce, key);
    sodium_memzero(key, sizeof key);
    if (rc != 0) {
        sodium_memzero(o->plain, sizeof o->plain);
        return PL_ENV_ERR_AUTH;
    }

    /* The plaintext, canonical. */
    pl_env_err err = PL_ENV_ERR_MALFORMED;
    pl_reader r = pl_reader_make(o->plain, plain_len);
    o->content_type = pl_read_u8(&r);
    uint8_t flags = pl_read_u8(&r);
    uint16_t cert_len = pl_read_u16(&r);
    const uint8_t *cert = NULL;
    if (!r.err && cert_len <= PL_CERT_MAX_SIZE) cert = pl_read_ptr(&r, cert_len);
    o->n_chunks = pl_read_u16(&r);
    o->body_len = pl_read_u32(&r);
    if (!r.err && o->n_chunks) pl_read_bytes(&r, o->key, 32);
    uint16_t inline_len = pl_read_u16(&r);
    o->body = inline_len ? pl_read_ptr(&r, inline_len) : NULL;
    size_t signed_len = r.off;
    const uint8_t *sig = pl_read_ptr(&r, 64);
    if (!pl_reader_done(&r) || !cert || o->content_type == 0 || flags != 0 || o->n_chunks > PL_ENV_MAX_CHUNKS ||
        o->n_chunks != pl_env_chunks_for(o->body_len) || (o->n_chunks ? inline_len != 0 : inline_len != o->body_len) ||
        pl_cert_decode(&o->sender, cert, cert_len) != PL_CERT_OK)
        goto fail;
    /* Who sent it, and when: the certificate must have been valid when the
     * message was signed (a voicemail may wait a month), and not revoked. */
    pl_cert_err ce = pl_cert_verify(&o->sender, ca_pk, h.sent_at / PL_SEC, crl);
    if (ce != PL_CERT_OK) {
        if (cert_err) *cert_err = ce;
        err = PL_ENV_ERR_CERT;
        goto fail;
    }
    crypto_sign_state ss;
    sig_input(&ss, env, h.header_len, h.eph_pk, me->identity->dh_pk, o->plain, signed_len);
    rc = crypto_sign_final_verify(&ss, sig, o->sender.sign_pk);
    sodium_memzero(&ss, sizeof ss);
    if (rc != 0) {
        err = PL_ENV_ERR_SIGNATURE;
        goto fail;
    }
    if (h.sent_at > now + PL_ENV_MAX_SKEW) {
        err = PL_ENV_ERR_FUTURE;
        goto fail;
    }
    if (now > PL_ENV_MAX_AGE && h.sent_at < now - PL_ENV_MAX_AGE) {
        err = PL_ENV_ERR_TOO_OLD;
        goto fail;
    }
    memcpy(o->id, h.id, PL_ENV_ID_SIZE);
    o->sent_at = h.sent_at;
    memcpy(o->recipient, h.recipient, sizeof o->recipient);
    return PL_ENV_OK;
fail:
    pl_env_opened_wipe(o);
    return err;
}

pl_env_err pl_env_open_chunk(const pl_env_opened *head, const uint8_t *env, size_t len, uint8_t *body, size_t cap,
                             uint16_t *part, size_t *body_len)
{
    *part = 0;
    *body_len = 0;
    pl_env_header h;
    if (pl_env_peek(&h, env, len) != PL_ENV_OK || h.part == 0) return PL_ENV_ERR_MALFORMED;
    if (memcmp(h.id, head->id, PL_ENV_ID_SIZE) != 0 || h.part > head->n_chunks ||
        h.ct_len - PL_ENV_TAG_SIZE != pl_env_chunk_len(head->body_len, head->n_chunks, h.part))
        return PL_ENV_ERR_WRONG_MESSAGE;
    if (cap < h.ct_len - PL_ENV_TAG_SIZE) return PL_ENV_ERR_BUFFER;
    uint8_t nonce[NONCE_SIZE];
    nonce_for(nonce, h.id, h.part);
    /* The header (sent_at and recipient included) must match the head's;
     * as associated data, any difference fails the tag. */
    uint8_t header[PL_ENV_HEADER_MAX];
    size_t hlen = write_header(header, head->id, h.part, head->sent_at, head->recipient);
    if (hlen != h.header_len || memcmp(header, env, hlen) != 0) return PL_ENV_ERR_WRONG_MESSAGE;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(body, NULL, NULL, h.ct, h.ct_len, env, h.header_len, nonce,
                                                   head->key) != 0) {
        sodium_memzero(body, h.ct_len - PL_ENV_TAG_SIZE);
        return PL_ENV_ERR_AUTH;
    }
    *part = h.part;
    *body_len = h.ct_len - PL_ENV_TAG_SIZE;
    return PL_ENV_OK;
}

void pl_env_opened_wipe(pl_env_opened *o) { sodium_memzero(o, sizeof *o); }

/* ---- seen message ids ------------------------------------------------------------------------- */

static void seen_key(const uint8_t id[PL_ENV_ID_SIZE], uint8_t key[32])
{
    memset(key, 0, 32);
    memcpy(key, id, PL_ENV_ID_SIZE);
}

pl_env_err pl_env_seen_init(pl_env_seen *s, uint32_t capacity, const pl_mem *mem, const pl_rng *rng)
{
    memset(s, 0, sizeof *s);
    if (capacity == 0 || !rng) return PL_ENV_ERR_ARG;
    s->mem = mem ? mem : pl_mem_system();
    s->e = s->mem->calloc(s->mem->ctx, capacity, sizeof *s->e);
    if (!s->e) return PL_ENV_ERR_NOMEM;
    s->cap = capacity;
    pl_keymap_init(&s->index, s->mem, rng);
    return PL_ENV_OK;
}

void pl_env_seen_free(pl_env_seen *s)
{
    if (s->e) s->mem->free(s->mem->ctx, s->e);
    pl_keymap_free(&s->index);
    memset(s, 0, sizeof *s);
}

static bool too_old(const pl_env_seen *s, pl_time sent_at, pl_time now)
{
    return (s->floor && sent_at <= s->floor) || (now > PL_ENV_MAX_AGE && sent_at < now - PL_ENV_MAX_AGE);
}

pl_env_err pl_env_seen_check(const pl_env_seen *s, const uint8_t id[PL_ENV_ID_SIZE], pl_time sent_at, pl_time now)
{
    uint8_t key[32];
    uint32_t i;
    seen_key(id, key);
    if (pl_keymap_get(&s->index, key, &i)) return PL_ENV_ERR_REPLAY;
    if (too_old(s, sent_at, now)) return PL_ENV_ERR_TOO_OLD;
    return PL_ENV_OK;
}

static void seen_drop(pl_env_seen *s, uint32_t i)
{
    uint8_t key[32];
    seen_key(s->e[i].id, key);
    pl_keymap_remove(&s->index, key);
    memset(&s->e[i], 0, sizeof s->e[i]);
    s->count--;
}

pl_env_err pl_env_seen_add(pl_env_seen *s, const uint8_t id[PL_ENV_ID_SIZE], pl_time sent_at, pl_time now)
{
    pl_env_err err = pl_env_seen_check(s, id, sent_at, now);
    if (err) return err;
    if (s->count == s->cap) {
        /* Forget what pl_env_open refuses anyway, else the oldest. */
        uint32_t oldest = 0;
        for (uint32_t i = 0; i < s->cap; i++) {
            if (!s->e[i].used) continue;
            if (now > PL_ENV_MAX_AGE && s->e[i].sent_at < now - PL_ENV_MAX_AGE) {
                seen_drop(s, i);
                continue;
            }
            if (!s->e[oldest].used || s->e[i].sent_at < s->e[oldest].sent_at) oldest = i;
        }
        if (s->count == s->cap) {
            if (s->e[oldest].sent_at > s->floor) s->floor = s->e[oldest].sent_at;
            seen_drop(s, oldest);
            /* The new id itself may now lie below the floor. */
            if (sent_at <= s->floor) return PL_ENV_ERR_TOO_OLD;
        }
    }
    uint32_t slot = 0;
    while (s->e[slot].used) slot++;
    uint8_t key[32];
    seen_key(id, key);
    if (!pl_keymap_put(&s->index, key, slot)) return PL_ENV_ERR_NOMEM;
    memcpy(s->e[slot].id, id, PL_ENV_ID_SIZE);
    s->e[slot].sent_at = sent_at;
    s->e[slot].used = true;
    s->count++;
    return PL_ENV_OK;
}

const char *pl_env_strerror(pl_env_err err)
{
    switch (err) {
    case PL_ENV_OK: return "ok";
    case PL_ENV_ERR_MALFORMED: return "malformed envelope";
    case PL_ENV_ERR_WRONG_RECIPIENT: return "envelope addressed to someone else";
    case PL_ENV_ERR_AUTH: return "envelope does not decrypt (altered, or not for this key)";
    case PL_ENV_ERR_CERT: return "sender certificate refused";
    case PL_ENV_ERR_SIGNATURE: return "sender signature does not verify";
    case PL_ENV_ERR_TOO_OLD: return "envelope too old";
    case PL_ENV_ERR_FUTURE: return "envelope sent in the future";
    case PL_ENV_ERR_REPLAY: return "message seen before";
    case PL_ENV_ERR_WRONG_MESSAGE: return "chunk of another message";
    case PL_ENV_ERR_TOO_BIG: return "message body too big";
    case PL_ENV_ERR_BUFFER: return "buffer too small";
    case PL_ENV_ERR_ARG: return "bad argument";
    case PL_ENV_ERR_NOMEM: return "out of memory";
    }
    return "unknown envelope error";
}
