/*
 * ca_client.c - the user's side of registration, renewal, revocation and
 * CRL fetching, as a state machine with no I/O.
 *
 * Phases: CHALLENGE (ask for a token) -> OP (send the signed operation) ->
 * DONE; or CRL (fetch chunks from offset 0 to the end) -> DONE. Each request
 * has a fresh random id, kept across its retransmissions, and an answer with
 * another id is ignored: it is a late answer to an earlier request or
 * someone else's packet.
 */
#include "ca_client.h"

#include <sodium.h>
#include <string.h>

enum { PHASE_IDLE = 0, PHASE_CHALLENGE, PHASE_OP, PHASE_CRL, PHASE_DONE };

/* How often a stale token or a CRL that changed under us may restart the
 * operation before the client gives up. */
#define MAX_RESTARTS 3

const char *pl_ca_client_strerror(pl_ca_client_err err)
{
    switch (err) {
    case PL_CA_CLIENT_OK: return "ok";
    case PL_CA_CLIENT_ERR_BAD_NAME: return "the name breaks the naming rules";
    case PL_CA_CLIENT_ERR_RESERVED: return "the name is reserved";
    case PL_CA_CLIENT_ERR_NAME_TAKEN: return "the name is already taken";
    case PL_CA_CLIENT_ERR_RATE_LIMITED: return "the authority is rate limiting this address";
    case PL_CA_CLIENT_ERR_BAD_SIGNATURE: return "the authority refused the signature over its challenge";
    case PL_CA_CLIENT_ERR_BAD_TOKEN: return "the authority kept refusing the challenge token";
    case PL_CA_CLIENT_ERR_NOT_FOUND: return "no account has that name";
    case PL_CA_CLIENT_ERR_WRONG_KEY: return "the account belongs to a different key";
    case PL_CA_CLIENT_ERR_REVOKED: return "the account has been revoked";
    case PL_CA_CLIENT_ERR_REFUSED: return "the authority refused the request";
    case PL_CA_CLIENT_ERR_TIMEOUT: return "the authority did not answer";
    case PL_CA_CLIENT_ERR_BAD_RESPONSE: return "the authority's answer does not verify under the pinned key";
    case PL_CA_CLIENT_ERR_BUFFER: return "the revocation list is too large";
    case PL_CA_CLIENT_ERR_CONFIG: return "invalid client configuration";
    case PL_CA_CLIENT_ERR_PENDING: return "in progress";
    }
    return "unknown client error";
}

pl_ca_client_err pl_ca_client_init(pl_ca_client *c, const pl_ca_client_config *cfg)
{
    memset(c, 0, sizeof *c);
    c->result = PL_CA_CLIENT_ERR_PENDING;
    if (!cfg || !cfg->rng || cfg->op < PL_CA_OP_REGISTER || cfg->op > PL_CA_OP_CRL) return PL_CA_CLIENT_ERR_CONFIG;
    c->cfg = *cfg;
    if (c->cfg.pad_size == 0) c->cfg.pad_size = PL_CA_PAD_SIZE;
    if (c->cfg.crl_request_size == 0) c->cfg.crl_request_size = c->cfg.pad_size;
    if (c->cfg.pad_size > PL_CA_MAX_MESSAGE) c->cfg.pad_size = PL_CA_MAX_MESSAGE;
    if (c->cfg.crl_request_size > PL_CA_MAX_MESSAGE) c->cfg.crl_request_size = PL_CA_MAX_MESSAGE;
    if (c->cfg.rto == 0) c->cfg.rto = 400 * PL_MSEC;
    if (c->cfg.max_tries == 0) c->cfg.max_tries = 4;
    if (cfg->op == PL_CA_OP_CRL) {
        if (!cfg->crl_buf || cfg->crl_cap < PL_CRL_SIZE(0)) return PL_CA_CLIENT_ERR_CONFIG;
        return PL_CA_CLIENT_OK;
    }
    if (!cfg->id || !cfg->name) return PL_CA_CLIENT_ERR_CONFIG;
    /* The same rules the CA applies, checked here first so that a typo
     * needs no network at all. Reserved names can still be renewed. */
    pl_name_err ne = pl_name_normalize(cfg->name, c->name);
    if (ne == PL_NAME_ERR_RESERVED && cfg->op == PL_CA_OP_REGISTER) return PL_CA_CLIENT_ERR_RESERVED;
    if (ne != PL_NAME_OK && ne != PL_NAME_ERR_RESERVED) return PL_CA_CLIENT_ERR_BAD_NAME;
    return PL_CA_CLIENT_OK;
}

/* Writes the request for the current phase. Deterministic for one id, so a
 * retransmission sends the very same bytes (Ed25519 signatures are
 * deterministic too). */
static bool build(pl_ca_client *c, uint8_t *out, size_t cap, size_t *out_len)
{
    pl_ca_msg m;
    memset(&m, 0, sizeof m);
    m.id = c->id;
    size_t pad = c->cfg.pad_size;
    if (c->phase == PHASE_CRL) {
        m.type = PL_CA_MSG_CRL_REQ;
        m.offset = c->crl_offset;
        pad = c->cfg.crl_request_size;
    } else {
        m.type = c->phase == PHASE_CHALLENGE ? PL_CA_MSG_CHALLENGE_REQ : PL_CA_MSG_OP_REQ;
        m.op = c->cfg.op;
        m.name_len = (uint8_t)strlen(c->name);
        memcpy(m.name, c->name, m.name_len);
        memcpy(m.sign_pk, c->cfg.id->sign_pk, 32);
        if (c->phase == PHASE_OP) {
            uint8_t msg[PL_CA_OP_MESSAGE_MAX];
            memcpy(m.token, c->token, PL_CA_TOKEN_SIZE);
            size_t n = pl_ca_op_message(msg, c->cfg.ca_pk, m.op, c->name, m.sign_pk, m.token);
            crypto_sign_detached(m.sig, NULL, msg, n, c->cfg.id->sign_sk);
        }
    }
    return pl_ca_msg_encode(&m, pad, out, cap, out_len) == PL_CA_PROTO_OK;
}

static pl_ca_client_status finish(pl_ca_client *c, pl_ca_client_err err)
{
    c->phase = PHASE_DONE;
    c->result = err;
    c->deadline = PL_TIME_NEVER;
    return PL_CA_CLIENT_DONE;
}

/* Starts a new request in the current phase: a new id, a fresh timer. */
static pl_ca_client_status send_new(pl_ca_client *c, pl_time now, uint8_t *out, size_t cap, size_t *out_len)
{
    c->id = pl_rng_u64(c->cfg.rng);
    c->tries = 1;
    c->rto_now = c->cfg.rto;
    c->deadline = now + c->rto_now;
    if (!build(c, out, cap, out_len)) return finish(c, PL_CA_CLIENT_ERR_BUFFER);
    return PL_CA_CLIENT_SEND;
}

pl_ca_client_status pl_ca_client_start(pl_ca_client *c, pl_time now, uint8_t *out, size_t cap, size_t *out_len)
{
    if (c->result != PL_CA_CLIENT_ERR_PENDING || c->phase != PHASE_IDLE) return finish(c, PL_CA_CLIENT_ERR_CONFIG);
    c->phase = c->cfg.op == PL_CA_OP_CRL ? PHASE_CRL : PHASE_CHALLENGE;
    return send_new(c, now, out, cap, out_len);
}

pl_time pl_ca_client_next_timeout(const pl_ca_client *c)
{
    return c->phase == PHASE_DONE || c->phase == PHASE_IDLE ? PL_TIME_NEVER : c->deadline;
}

pl_ca_client_status pl_ca_client_tick(pl_ca_client *c, pl_time now, uint8_t *out, size_t cap, size_t *out_len)
{
    if (c->phase == PHASE_DONE) return PL_CA_CLIENT_DONE;
    if (c->phase == PHASE_IDLE || now < c->deadline) return PL_CA_CLIENT_WAIT;
    if (c->tries >= c->cfg.max_tries) return finish(c, PL_CA_CLIENT_ERR_TIMEOUT);
    /* Exponential back-off: a congested or slow path gets breathing room. */
    c->tries++;
    c->rto_now *= 2;
    c->deadline = now + c->rto_now;
    if (!build(c, out, cap, out_len)) return finish(c, PL_CA_CLIENT_ERR_BUFFER);
    return PL_CA_CLIENT_SEND;
}

static pl_ca_client_err map_code(uint8_t code)
{
    switch (code) {
    case PL_CA_CODE_NAME_TAKEN: return PL_CA_CLIENT_ERR_NAME_TAKEN;
    case PL_CA_CODE_BAD_NAME: return PL_CA_CLIENT_ERR_BAD_NAME;
    case PL_CA_CODE_RESERVED: return PL_CA_CLIENT_ERR_RESERVED;
    case PL_CA_CODE_RATE_LIMITED: return PL_CA_CLIENT_ERR_RATE_LIMITED;
    case PL_CA_CODE_BAD_SIGNATURE: return PL_CA_CLIENT_ERR_BAD_SIGNATURE;
    case PL_CA_CODE_BAD_TOKEN: return PL_CA_CLIENT_ERR_BAD_TOKEN;
    case PL_CA_CODE_NOT_FOUND: return PL_CA_CLIENT_ERR_NOT_FOUND;
    case PL_CA_CODE_WRONG_KEY: return PL_CA_CLIENT_ERR_WRONG_KEY;
    case PL_CA_CODE_REVOKED: return PL_CA_CLIENT_ERR_REVOKED;
    default: return PL_CA_CLIENT_ERR_REFUSED;
    }
}

static pl_ca_client_status on_cert(pl_ca_client *c, const pl_ca_msg *m)
{
    pl_cert cert;
    if (pl_cert_decode(&cert, m->cert, m->cert_len) != PL_CERT_OK) return finish(c, PL_CA_CLIENT_ERR_BAD_RESPONSE);
    /* Check the signature and issuer now; validity is judged by whoever uses
     * the certificate (this machine's clock may be off). */
    if (pl_cert_verify(&cert, c->cfg.ca_pk, cert.not_before, NULL) != PL_CERT_OK ||
        strcmp(cert.name, c->name) != 0 || sodium_memcmp(cert.sign_pk, c->cfg.id->sign_pk, 32) != 0 ||
        sodium_memcmp(cert.dh_pk, c->cfg.id->dh_pk, 32) != 0)
        return finish(c, PL_CA_CLIENT_ERR_BAD_RESPONSE);
    c->cert = cert;
    return finish(c, PL_CA_CLIENT_OK);
}

static pl_ca_client_status restart_crl(pl_ca_client *c, pl_time now, uint8_t *out, size_t cap, size_t *out_len)
{
    if (++c->restarts > MAX_RESTARTS) return finish(c, PL_CA_CLIENT_ERR_BAD_RESPONSE);
    c->crl_offset = 0;
    c->crl_total = 0;
    c->crl_number = 0;
    return send_new(c, now, out, cap, out_len);
}

static pl_ca_client_status on_chunk(pl_ca_client *c, pl_time now, const pl_ca_msg *m, uint8_t *out, size_t cap,
                                    size_t *out_len)
{
    if (m->offset != c->crl_offset) return PL_CA_CLIENT_WAIT;
    if (m->offset == 0) {
        if (m->crl_total > c->cfg.crl_cap) return finish(c, PL_CA_CLIENT_ERR_BUFFER);
        c->crl_number = m->crl_number;
        c->crl_total = m->crl_total;
    } else if (m->crl_number != c->crl_number || m->crl_total != c->crl_total) {
        /* The list changed between chunks: start again from the top. */
        return restart_crl(c, now, out, cap, out_len);
    }
    if (m->chunk_len == 0 && c->crl_offset < c->crl_total) return finish(c, PL_CA_CLIENT_ERR_BAD_RESPONSE);
    memcpy(c->cfg.crl_buf + c->crl_offset, m->chunk, m->chunk_len);
    c->crl_offset += m->chunk_len;
    if (c->crl_offset < c->crl_total) return send_new(c, now, out, cap, out_len);
    pl_crl crl;
    if (pl_crl_decode(&crl, c->cfg.crl_buf, c->crl_total) != PL_CERT_OK ||
        pl_crl_verify(&crl, c->cfg.ca_pk) != PL_CERT_OK || crl.number != c->crl_number)
        /* Chunks from two signings of one number (a restarted CA) do not
         * verify together; a fresh pass gets one consistent copy. */
        return restart_crl(c, now, out, cap, out_len);
    c->crl_len = c->crl_total;
    return finish(c, PL_CA_CLIENT_OK);
}

pl_ca_client_status pl_ca_client_handle(pl_ca_client *c, pl_time now, const uint8_t *resp, size_t len, uint8_t *out,
                                        size_t cap, size_t *out_len)
{
    if (c->phase == PHASE_DONE) return PL_CA_CLIENT_DONE;
    if (c->phase == PHASE_IDLE) return PL_CA_CLIENT_WAIT;
    pl_ca_msg m;
    if (pl_ca_msg_decode(&m, resp, len) != PL_CA_PROTO_OK || m.id != c->id) return PL_CA_CLIENT_WAIT;
    if (m.type == PL_CA_MSG_ERROR) {
        c->ca_code = m.code;
        if (m.code == PL_CA_CODE_BAD_TOKEN && c->phase == PHASE_OP && c->restarts < MAX_RESTARTS) {
            /* The token went stale (a slow path, a restarted CA with a new
             * secret): ask for a new one. */
            c->restarts++;
            c->phase = PHASE_CHALLENGE;
            return send_new(c, now, out, cap, out_len);
        }
        c->retry_after_ms = m.retry_after_ms;
        return finish(c, map_code(m.code));
    }
    switch (c->phase) {
    case PHASE_CHALLENGE:
        if (m.type != PL_CA_MSG_CHALLENGE) return PL_CA_CLIENT_WAIT;
        memcpy(c->token, m.token, PL_CA_TOKEN_SIZE);
        c->phase = PHASE_OP;
        return send_new(c, now, out, cap, out_len);
    case PHASE_OP:
        if (c->cfg.op == PL_CA_OP_REVOKE) {
            if (m.type != PL_CA_MSG_REVOKED) return PL_CA_CLIENT_WAIT;
            c->crl_number = m.crl_number;
            return finish(c, PL_CA_CLIENT_OK);
        }
        if (m.type != PL_CA_MSG_CERT) return PL_CA_CLIENT_WAIT;
        return on_cert(c, &m);
    case PHASE_CRL:
        if (m.type != PL_CA_MSG_CRL_CHUNK) return PL_CA_CLIENT_WAIT;
        return on_chunk(c, now, &m, out, cap, out_len);
    }
    return PL_CA_CLIENT_WAIT;
}

pl_ca_client_err pl_ca_client_result(const pl_ca_client *c) { return c->result; }
/* Only register and renew bring a certificate; revoke and CRL fetches do not. */
const pl_cert *pl_ca_client_cert(const pl_ca_client *c)
{
    return c->result == PL_CA_CLIENT_OK && c->cert.version == PL_CERT_VERSION ? &c->cert : NULL;
}
size_t pl_ca_client_crl_len(const pl_ca_client *c) { return c->crl_len; }
uint64_t pl_ca_client_crl_number(const pl_ca_client *c) { return c->crl_number; }
uint32_t pl_ca_client_retry_after_ms(const pl_ca_client *c) { return c->retry_after_ms; }
