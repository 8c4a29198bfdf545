/*
 * ca_server.c - the signing authority's decisions, with no I/O.
 *
 * Order of work for one request, cheapest first, so that a flood costs the
 * CA as little as possible:
 *   1. not our magic, or shorter than a header: dropped, no answer;
 *   2. the source's token bucket: an empty bucket gets one RATE_LIMITED
 *      answer, then silence until it refills;
 *   3. full decode; responses arriving here are dropped (never answer an
 *      answer: two servers must not be made to talk to each other forever);
 *   4. for an operation: the token MAC (a hash), then the Ed25519
 *      signature (the expensive check), then the name rules and the store.
 * Every answer goes through respond(), which refuses to write more bytes
 * than the request carried.
 */
#include "ca_server.h"

#include <sodium.h>
#include <string.h>

#include "wire.h"

#define TOKEN_DOMAIN "parley-ca-token-v1"
#define RATE_WAYS 8
#define MICRO 1000000ull
/* A CRL chunk costs a fifth of a token: a client fetching a large list
 * should not lock itself out of registering. */
#define COST_REQUEST MICRO
#define COST_CRL (MICRO / 5)

typedef struct rate_entry {
    uint8_t key[9]; /* family, then 4 bytes of IPv4 or the IPv6 /64 */
    bool used;
    bool told; /* RATE_LIMITED already sent for this empty spell */
    uint64_t tokens; /* millionths of a token */
    pl_time last;
} rate_entry;

struct pl_ca_server {
    pl_mem mem;
    pl_ca_store store;
    pl_ca_server_config cfg;
    uint8_t token_key[32];
    uint8_t rate_hash_key[crypto_shorthash_KEYBYTES];
    rate_entry *rate;
    uint32_t rate_sets;
    /* The CRL is signed once per change of the store's CRL number and then
     * served in chunks: every chunk of one version comes from the same bytes. */
    bool crl_valid;
    uint64_t crl_number;
    uint8_t *crl;
    size_t crl_len, crl_cap;
    uint64_t *serials;
    uint32_t serials_cap;
};

const char *pl_ca_store_strerror(pl_ca_store_err err)
{
    switch (err) {
    case PL_CA_STORE_OK: return "ok";
    case PL_CA_STORE_NOT_FOUND: return "no such account";
    case PL_CA_STORE_EXISTS: return "the name is already taken";
    case PL_CA_STORE_IO: return "the account database failed";
    }
    return "unknown store error";
}

const char *pl_ca_server_strerror(pl_ca_server_err err)
{
    switch (err) {
    case PL_CA_SERVER_OK: return "ok";
    case PL_CA_SERVER_ERR_CONFIG: return "invalid signing-authority configuration";
    case PL_CA_SERVER_ERR_MEMORY: return "out of memory";
    }
    return "unknown server error";
}

void pl_ca_server_config_default(pl_ca_server_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->cert_lifetime_s = 365ull * 86400;
    cfg->backdate_s = 300;
    cfg->burst = 20;
    cfg->rate_milli = 2000;
    cfg->rate_table_size = 4096;
}

pl_ca_server *pl_ca_server_new(const pl_ca_server_config *cfg, const pl_ca_store *store, const pl_mem *mem,
                               const pl_rng *rng, pl_ca_server_err *err)
{
    pl_ca_server_err dummy;
    if (!err) err = &dummy;
    if (!cfg || !store || !mem || !rng || cfg->cert_lifetime_s == 0 || cfg->burst == 0 || cfg->rate_milli == 0 ||
        cfg->rate_table_size < RATE_WAYS || cfg->rate_table_size > (1u << 24) || !store->lookup ||
        !store->next_serial || !store->insert || !store->renew || !store->revoke || !store->crl_number ||
        !store->revoked_serials) {
        *err = PL_CA_SERVER_ERR_CONFIG;
        return NULL;
    }
    pl_ca_server *s = mem->calloc(mem->ctx, 1, sizeof *s);
    if (!s) {
        *err = PL_CA_SERVER_ERR_MEMORY;
        return NULL;
    }
    s->mem = *mem;
    s->store = *store;
    s->cfg = *cfg;
    /* A power-of-two number of sets keeps the index a mask. */
    uint32_t sets = 1;
    while (sets * 2 * RATE_WAYS <= cfg->rate_table_size) sets *= 2;
    s->rate_sets = sets;
    s->rate = mem->calloc(mem->ctx, (size_t)sets * RATE_WAYS, sizeof *s->rate);
    if (!s->rate) {
        mem->free(mem->ctx, s);
        *err = PL_CA_SERVER_ERR_MEMORY;
        return NULL;
    }
    rng->fill(rng->ctx, s->token_key, sizeof s->token_key);
    rng->fill(rng->ctx, s->rate_hash_key, sizeof s->rate_hash_key);
    *err = PL_CA_SERVER_OK;
    return s;
}

void pl_ca_server_free(pl_ca_server *s)
{
    if (!s) return;
    pl_mem mem = s->mem;
    if (s->crl) mem.free(mem.ctx, s->crl);
    if (s->serials) mem.free(mem.ctx, s->serials);
    mem.free(mem.ctx, s->rate);
    sodium_memzero(s, sizeof *s);
    mem.free(mem.ctx, s);
}

/* ---- source identity ---------------------------------------------------------- */

static const uint8_t V4_MAPPED[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* The host part that a token is bound to: the IPv4 address (also when it
 * arrives IPv4-mapped) or the full IPv6 address. The port is left out on
 * purpose: a client that falls back from UDP to TCP, or whose NAT rebinds,
 * keeps its address but not its port. */
static size_t source_host(const pl_addr *a, uint8_t out[17])
{
    if (a->family == PL_AF_INET4) {
        out[0] = 4;
        memcpy(out + 1, a->ip, 4);
        return 5;
    }
    if (a->family == PL_AF_INET6 && memcmp(a->ip, V4_MAPPED, 12) == 0) {
        out[0] = 4;
        memcpy(out + 1, a->ip + 12, 4);
        return 5;
    }
    if (a->family == PL_AF_INET6) {
        out[0] = 6;
        memcpy(out + 1, a->ip, 16);
        return 17;
    }
    out[0] = 0;
    return 1;
}

/* ---- rate limiting ---------------------------------------------------------------- */

/* The rate-limit key: an IPv4 address, or an IPv6 /64 (one subscriber
 * usually holds a whole /64, so keying on full addresses would give each of
 * them 2^64 buckets). */
static void rate_key(const pl_addr *a, uint8_t key[9])
{
    uint8_t host[17];
    size_t n = source_host(a, host);
    memset(key, 0, 9);
    memcpy(key, host, n < 9 ? n : 9);
}

typedef enum { RATE_PASS, RATE_TELL, RATE_SILENT } rate_verdict;

static rate_verdict rate_check(pl_ca_server *s, const pl_addr *from, pl_time now, uint64_t cost,
                               uint32_t *retry_ms)
{
    uint8_t key[9], h[crypto_shorthash_BYTES];
    rate_key(from, key);
    /* A keyed hash, so that nobody can aim many sources at one set to evict
     * a victim's bucket. */
    crypto_shorthash(h, key, sizeof key, s->rate_hash_key);
    uint32_t set = (uint32_t)(((uint64_t)h[0] | (uint64_t)h[1] << 8 | (uint64_t)h[2] << 16 | (uint64_t)h[3] << 24) &
                              (s->rate_sets - 1));
    rate_entry *ways = s->rate + (size_t)set * RATE_WAYS;
    rate_entry *e = NULL, *victim = &ways[0];
    for (int i = 0; i < RATE_WAYS; i++) {
        if (ways[i].used && memcmp(ways[i].key, key, sizeof key) == 0) {
            e = &ways[i];
            break;
        }
        /* Evict a free way first, else the one idle longest. */
        if (!ways[i].used) {
            if (victim->used) victim = &ways[i];
        } else if (victim->used && ways[i].last < victim->last) {
            victim = &ways[i];
        }
    }
    uint64_t full = (uint64_t)s->cfg.burst * MICRO;
    if (!e) {
        e = victim;
        memset(e, 0, sizeof *e);
        memcpy(e->key, key, sizeof key);
        e->used = true;
        e->tokens = full;
        e->last = now;
    }
    if (now > e->last) {
        pl_time elapsed = now - e->last;
        if (elapsed > 3600 * PL_SEC) elapsed = 3600 * PL_SEC; /* keeps the product below 2^64 */
        uint64_t add = elapsed * s->cfg.rate_milli / 1000;
        e->tokens = e->tokens + add > full ? full : e->tokens + add;
        e->last = now;
    }
    if (e->tokens >= cost) {
        e->tokens -= cost;
        e->told = false;
        return RATE_PASS;
    }
    uint64_t need_us = (cost - e->tokens) * 1000 / s->cfg.rate_milli;
    *retry_ms = (uint32_t)(need_us / 1000 + 1);
    if (e->told) return RATE_SILENT;
    e->told = true;
    return RATE_TELL;
}

/* ---- tokens ------------------------------------------------------------------------- */

static void token_mac(const pl_ca_server *s, uint64_t ts, const pl_addr *from, uint8_t op, const char *name,
                      const uint8_t sign_pk[32], uint8_t mac[PL_CA_TOKEN_MAC_SIZE])
{
    uint8_t host[17], ts_be[8];
    size_t host_len = source_host(from, host);
    uint8_t name_len = (uint8_t)strlen(name);
    pl_put_u64be(ts_be, ts);
    crypto_generichash_state st;
    crypto_generichash_init(&st, s->token_key, sizeof s->token_key, PL_CA_TOKEN_MAC_SIZE);
    crypto_generichash_update(&st, (const uint8_t *)TOKEN_DOMAIN, sizeof TOKEN_DOMAIN - 1);
    crypto_generichash_update(&st, ts_be, 8);
    crypto_generichash_update(&st, host, host_len);
    crypto_generichash_update(&st, &op, 1);
    crypto_generichash_update(&st, &name_len, 1);
    crypto_generichash_update(&st, (const uint8_t *)name, name_len);
    crypto_generichash_update(&st, sign_pk, 32);
    crypto_generichash_final(&st, mac, PL_CA_TOKEN_MAC_SIZE);
}

static void token_make(const pl_ca_server *s, uint64_t now_s, const pl_addr *from, uint8_t op, const char *name,
                       const uint8_t sign_pk[32], uint8_t token[PL_CA_TOKEN_SIZE])
{
    pl_put_u64be(token, now_s);
    token_mac(s, now_s, from, op, name, sign_pk, token + 8);
}

/* True if the token was made by this CA process, for this source, op, name
 * and key, within the last PL_CA_TOKEN_LIFETIME_S seconds. */
static bool token_check(const pl_ca_server *s, uint64_t now_s, const pl_addr *from, uint8_t op, const char *name,
                        const uint8_t sign_pk[32], const uint8_t token[PL_CA_TOKEN_SIZE], uint64_t *ts_out)
{
    uint64_t ts = pl_get_u64be(token);
    if (ts > now_s || now_s - ts > PL_CA_TOKEN_LIFETIME_S) return false;
    uint8_t mac[PL_CA_TOKEN_MAC_SIZE];
    token_mac(s, ts, from, op, name, sign_pk, mac);
    if (sodium_memcmp(mac, token + 8, sizeof mac) != 0) return false;
    *ts_out = ts;
    return true;
}

/* ---- responses ----------------------------------------------------------------------- */

typedef struct req_ctx {
    uint64_t id;
    size_t req_len;
    uint8_t *out;
    size_t cap;
    pl_ca_event *ev;
} req_ctx;

/* Encodes m into at most min(cap, request length) bytes. If the answer does
 * not fit, a TOO_SMALL error goes instead (it is smaller than any request
 * that could need it); if even that does not fit, nothing is sent. */
static size_t respond(req_ctx *rc, pl_ca_msg *m)
{
    size_t limit = rc->cap < rc->req_len ? rc->cap : rc->req_len;
    size_t n = 0;
    m->id = rc->id;
    if (pl_ca_msg_encode(m, 0, rc->out, limit, &n) == PL_CA_PROTO_OK) return n;
    pl_ca_msg e = {.type = PL_CA_MSG_ERROR, .id = rc->id, .code = PL_CA_CODE_TOO_SMALL};
    if (rc->ev) {
        rc->ev->kind = PL_CA_EVENT_REFUSED;
        rc->ev->code = PL_CA_CODE_TOO_SMALL;
    }
    if (pl_ca_msg_encode(&e, 0, rc->out, limit, &n) == PL_CA_PROTO_OK) return n;
    if (rc->ev) rc->ev->kind = PL_CA_EVENT_DROPPED;
    return 0;
}

static size_t respond_error(req_ctx *rc, pl_ca_code code, uint32_t retry_ms)
{
    pl_ca_msg m = {.type = PL_CA_MSG_ERROR, .code = (uint8_t)code, .retry_after_ms = retry_ms};
    if (rc->ev) {
        rc->ev->kind = PL_CA_EVENT_REFUSED;
        rc->ev->code = (uint8_t)code;
    }
    return respond(rc, &m);
}

static size_t respond_cert(req_ctx *rc, const pl_ca_account *acc)
{
    pl_ca_msg m = {.type = PL_CA_MSG_CERT, .cert = acc->cert, .cert_len = (uint16_t)acc->cert_len};
    if (rc->ev) rc->ev->serial = acc->serial;
    return respond(rc, &m);
}

/* ---- names and accounts ----------------------------------------------------------------- */

/* Normalises a requested name. Reserved names may not be registered, but an
 * account that already holds one (registered before the name was reserved,
 * or created by the operator) may still renew and revoke it. */
static pl_ca_code check_name(const pl_ca_msg *m, char norm[PL_NAME_MAX + 1])
{
    pl_name_err ne = pl_name_normalize(m->name, norm);
    if (ne == PL_NAME_ERR_RESERVED) return m->op == PL_CA_OP_REGISTER ? PL_CA_CODE_RESERVED : PL_CA_CODE_OK;
    return ne == PL_NAME_OK ? PL_CA_CODE_OK : PL_CA_CODE_BAD_NAME;
}

/* What the account table says about (name, key) for an op, before any
 * token is issued or after it is checked. *found tells whether acc is set. */
static pl_ca_code account_check(pl_ca_server *s, uint8_t op, const char *name, const uint8_t sign_pk[32],
                                pl_ca_account *acc, bool *found)
{
    pl_ca_store_err se = s->store.lookup(s->store.ctx, name, acc);
    *found = se == PL_CA_STORE_OK;
    if (se != PL_CA_STORE_OK && se != PL_CA_STORE_NOT_FOUND) return PL_CA_CODE_INTERNAL;
    if (!*found) return op == PL_CA_OP_REGISTER ? PL_CA_CODE_OK : PL_CA_CODE_NOT_FOUND;
    bool same_key = sodium_memcmp(acc->sign_pk, sign_pk, 32) == 0;
    if (!same_key) return op == PL_CA_OP_REGISTER ? PL_CA_CODE_NAME_TAKEN : PL_CA_CODE_WRONG_KEY;
    /* Revoking a revoked account is answered as success (idempotent). */
    if (acc->revoked && op != PL_CA_OP_REVOKE) return PL_CA_CODE_REVOKED;
    return PL_CA_CODE_OK;
}

/* Signs a fresh certificate for acc->name and acc->sign_pk into acc. */
static pl_ca_code issue(pl_ca_server *s, uint64_t now_s, pl_ca_account *acc)
{
    uint64_t serial;
    if (s->store.next_serial(s->store.ctx, &serial) != PL_CA_STORE_OK) return PL_CA_CODE_INTERNAL;
    pl_cert c;
    memset(&c, 0, sizeof c);
    c.version = PL_CERT_VERSION;
    c.serial = serial;
    c.not_before = now_s > s->cfg.backdate_s ? now_s - s->cfg.backdate_s : 0;
    c.not_after = now_s + s->cfg.cert_lifetime_s;
    memcpy(c.sign_pk, acc->sign_pk, 32);
    /* The CA derives the X25519 key itself: a user cannot get a certificate
     * naming a DH key that does not belong to the signing key. */
    if (crypto_sign_ed25519_pk_to_curve25519(c.dh_pk, acc->sign_pk) != 0) return PL_CA_CODE_BAD_SIGNATURE;
    c.name_len = (uint8_t)strlen(acc->name);
    memcpy(c.name, acc->name, c.name_len);
    pl_cert_sign(&c, s->cfg.ca_pk, s->cfg.ca_sk);
    if (pl_cert_encode(&c, acc->cert, sizeof acc->cert, &acc->cert_len) != PL_CERT_OK) return PL_CA_CODE_INTERNAL;
    acc->serial = serial;
    acc->issued_at = now_s;
    acc->not_after = c.not_after;
    return PL_CA_CODE_OK;
}

/* ---- request handlers ---------------------------------------------------------------------- */

static size_t on_challenge_req(pl_ca_server *s, req_ctx *rc, uint64_t now_s, const pl_addr *from,
                               const pl_ca_msg *m)
{
    char name[PL_NAME_MAX + 1];
    if (m->op < PL_CA_OP_REGISTER || m->op > PL_CA_OP_REVOKE) return respond_error(rc, PL_CA_CODE_MALFORMED, 0);
    pl_ca_code code = check_name(m, name);
    if (code != PL_CA_CODE_OK) return respond_error(rc, code, 0);
    if (rc->ev) memcpy(rc->ev->name, name, sizeof name);
    /* Refusing early (name taken, unknown account) saves the user a round
     * trip and a signature; the op request checks all of it again. */
    pl_ca_account acc;
    bool found;
    code = account_check(s, m->op, name, m->sign_pk, &acc, &found);
    if (code != PL_CA_CODE_OK) return respond_error(rc, code, 0);
    pl_ca_msg r = {.type = PL_CA_MSG_CHALLENGE};
    token_make(s, now_s, from, m->op, name, m->sign_pk, r.token);
    return respond(rc, &r);
}

static size_t on_op_req(pl_ca_server *s, req_ctx *rc, uint64_t now_s, const pl_addr *from, const pl_ca_msg *m)
{
    char name[PL_NAME_MAX + 1];
    if (m->op < PL_CA_OP_REGISTER || m->op > PL_CA_OP_REVOKE) return respond_error(rc, PL_CA_CODE_MALFORMED, 0);
    pl_ca_code code = check_name(m, name);
    if (code != PL_CA_CODE_OK) return respond_error(rc, code, 0);
    if (rc->ev) memcpy(rc->ev->name, name, sizeof name);
    uint64_t ts;
    if (!token_check(s, now_s, from, m->op, name, m->sign_pk, m->token, &ts))
        return respond_error(rc, PL_CA_CODE_BAD_TOKEN, 0);
    uint8_t msg[PL_CA_OP_MESSAGE_MAX];
    size_t msg_len = pl_ca_op_message(msg, s->cfg.ca_pk, m->op, name, m->sign_pk, m->token);
    if (msg_len == 0 || crypto_sign_verify_detached(m->sig, msg, msg_len, m->sign_pk) != 0)
        return respond_error(rc, PL_CA_CODE_BAD_SIGNATURE, 0);

    pl_ca_account acc;
    bool found;
    code = account_check(s, m->op, name, m->sign_pk, &acc, &found);
    if (code != PL_CA_CODE_OK) return respond_error(rc, code, 0);

    if (m->op == PL_CA_OP_REGISTER) {
        if (found) {
            /* The same key asks again for its name: a retransmit whose answer
             * was lost. Hand back the certificate it already has. */
            if (rc->ev) rc->ev->kind = PL_CA_EVENT_REISSUED;
            return respond_cert(rc, &acc);
        }
        memset(&acc, 0, sizeof acc);
        memcpy(acc.name, name, sizeof acc.name);
        memcpy(acc.sign_pk, m->sign_pk, 32);
        acc.created = now_s;
        code = issue(s, now_s, &acc);
        if (code != PL_CA_CODE_OK) return respond_error(rc, code, 0);
        pl_ca_store_err se = s->store.insert(s->store.ctx, &acc);
        if (se == PL_CA_STORE_EXISTS) {
            /* Lost a race with another registration of the name: say what
             * the table says now. */
            code = account_check(s, m->op, name, m->sign_pk, &acc, &found);
            if (code != PL_CA_CODE_OK) return respond_error(rc, code, 0);
            if (!found) return respond_error(rc, PL_CA_CODE_INTERNAL, 0);
            if (rc->ev) rc->ev->kind = PL_CA_EVENT_REISSUED;
            return respond_cert(rc, &acc);
        }
        if (se != PL_CA_STORE_OK) return respond_error(rc, PL_CA_CODE_INTERNAL, 0);
        if (rc->ev) rc->ev->kind = PL_CA_EVENT_REGISTERED;
        return respond_cert(rc, &acc);
    }

    if (m->op == PL_CA_OP_RENEW) {
        /* A certificate issued at or after this token's time already answers
         * this renewal: a retransmit must not mint a second one. */
        if (acc.issued_at >= ts) {
            if (rc->ev) rc->ev->kind = PL_CA_EVENT_REISSUED;
            return respond_cert(rc, &acc);
        }
        code = issue(s, now_s, &acc);
        if (code != PL_CA_CODE_OK) return respond_error(rc, code, 0);
        if (s->store.renew(s->store.ctx, &acc) != PL_CA_STORE_OK) return respond_error(rc, PL_CA_CODE_INTERNAL, 0);
        if (rc->ev) rc->ev->kind = PL_CA_EVENT_RENEWED;
        return respond_cert(rc, &acc);
    }

    /* PL_CA_OP_REVOKE */
    pl_ca_msg r = {.type = PL_CA_MSG_REVOKED};
    if (acc.revoked) {
        if (s->store.crl_number(s->store.ctx, &r.crl_number) != PL_CA_STORE_OK)
            return respond_error(rc, PL_CA_CODE_INTERNAL, 0);
    } else if (s->store.revoke(s->store.ctx, name, &r.crl_number) != PL_CA_STORE_OK) {
        return respond_error(rc, PL_CA_CODE_INTERNAL, 0);
    }
    if (rc->ev) {
        rc->ev->kind = PL_CA_EVENT_REVOKED;
        rc->ev->serial = acc.serial;
    }
    return respond(rc, &r);
}

/* Makes sure the cached CRL matches the store's CRL number. */
static bool crl_refresh(pl_ca_server *s, uint64_t now_s)
{
    uint64_t number;
    if (s->store.crl_number(s->store.ctx, &number) != PL_CA_STORE_OK) return false;
    if (s->crl_valid && number == s->crl_number) return true;
    uint32_t total = 0;
    for (;;) {
        if (s->store.revoked_serials(s->store.ctx, s->serials, s->serials_cap, &total) != PL_CA_STORE_OK)
            return false;
        if (total <= s->serials_cap) break;
        if (total > PL_CRL_MAX_COUNT) return false;
        /* The table grows only when revocations do, never per request. */
        uint64_t *grown = s->mem.calloc(s->mem.ctx, total, sizeof *grown);
        if (!grown) return false;
        if (s->serials) s->mem.free(s->mem.ctx, s->serials);
        s->serials = grown;
        s->serials_cap = total;
    }
    size_t need = PL_CRL_SIZE(total);
    if (need > s->crl_cap) {
        uint8_t *grown = s->mem.calloc(s->mem.ctx, need, 1);
        if (!grown) return false;
        if (s->crl) s->mem.free(s->mem.ctx, s->crl);
        s->crl = grown;
        s->crl_cap = need;
    }
    if (pl_crl_build(s->crl, s->crl_cap, &s->crl_len, number, now_s, s->serials, total, s->cfg.ca_pk,
                     s->cfg.ca_sk) != PL_CERT_OK)
        return false;
    s->crl_number = number;
    s->crl_valid = true;
    return true;
}

static size_t on_crl_req(pl_ca_server *s, req_ctx *rc, uint64_t now_s, const pl_ca_msg *m)
{
    if (!crl_refresh(s, now_s)) return respond_error(rc, PL_CA_CODE_INTERNAL, 0);
    if (m->offset > s->crl_len) return respond_error(rc, PL_CA_CODE_MALFORMED, 0);
    size_t limit = rc->cap < rc->req_len ? rc->cap : rc->req_len;
    if (limit > PL_CA_MAX_MESSAGE) limit = PL_CA_MAX_MESSAGE;
    if (limit <= PL_CA_CRL_CHUNK_OVERHEAD) return respond_error(rc, PL_CA_CODE_TOO_SMALL, 0);
    size_t room = limit - PL_CA_CRL_CHUNK_OVERHEAD;
    size_t left = s->crl_len - m->offset;
    size_t n = left < room ? left : room;
    /* A chunk that cannot make progress would loop the client forever. */
    if (n == 0 && left > 0) return respond_error(rc, PL_CA_CODE_TOO_SMALL, 0);
    pl_ca_msg r = {.type = PL_CA_MSG_CRL_CHUNK,
                   .crl_number = s->crl_number,
                   .crl_total = (uint32_t)s->crl_len,
                   .offset = m->offset,
                   .chunk = s->crl + m->offset,
                   .chunk_len = (uint16_t)n};
    return respond(rc, &r);
}

size_t pl_ca_server_handle(pl_ca_server *s, pl_time now, const pl_addr *from, const uint8_t *req, size_t len,
                           uint8_t *out, size_t cap, pl_ca_event *ev)
{
    pl_ca_event dummy;
    if (!ev) ev = &dummy;
    memset(ev, 0, sizeof *ev);
    ev->kind = PL_CA_EVENT_DROPPED;
    if (!req || len < PL_CA_HEADER_SIZE || memcmp(req, "PLCA", 4) != 0 || len > PL_CA_MAX_MESSAGE) return 0;
    /* Only request types are worth anything; never answer an answer. */
    uint8_t type = req[5];
    if (type != PL_CA_MSG_CHALLENGE_REQ && type != PL_CA_MSG_OP_REQ && type != PL_CA_MSG_CRL_REQ) return 0;

    req_ctx rc = {.id = pl_get_u64be(req + 8), .req_len = len, .out = out, .cap = cap, .ev = ev};
    uint32_t retry_ms = 0;
    switch (rate_check(s, from, now, type == PL_CA_MSG_CRL_REQ ? COST_CRL : COST_REQUEST, &retry_ms)) {
    case RATE_PASS: break;
    case RATE_TELL: return respond_error(&rc, PL_CA_CODE_RATE_LIMITED, retry_ms);
    case RATE_SILENT: return 0;
    }

    ev->kind = PL_CA_EVENT_NONE;
    pl_ca_msg m;
    if (pl_ca_msg_decode(&m, req, len) != PL_CA_PROTO_OK) return respond_error(&rc, PL_CA_CODE_MALFORMED, 0);
    ev->op = m.type == PL_CA_MSG_CRL_REQ ? 0 : m.op;
    uint64_t now_s = now / PL_SEC;
    switch (m.type) {
    case PL_CA_MSG_CHALLENGE_REQ: return on_challenge_req(s, &rc, now_s, from, &m);
    case PL_CA_MSG_OP_REQ: return on_op_req(s, &rc, now_s, from, &m);
    case PL_CA_MSG_CRL_REQ: return on_crl_req(s, &rc, now_s, &m);
    }
    return 0;
}
