/*
 * test_ca.c - the signing authority's protocol cores, in memory: the server
 * (ca_server.c) behind the in-memory store and the SQLite store, and the
 * client state machine (ca_client.c) talking to it with no sockets.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ca_client.h"
#include "ca_memstore.h"
#include "ca_proto.h"
#include "ca_server.h"
#include "../src/ca/store.h"
#include "test.h"

#define T0 ((pl_time)1800000000 * PL_SEC)

typedef struct harness {
    uint8_t ca_pk[32], ca_sk[64];
    pl_ca_memstore ms;
    pl_ca_server *srv;
    pl_rng_seeded rng;
    pl_addr src;
    uint8_t out[PL_CA_MAX_MESSAGE];
    pl_ca_event ev;
} harness;

static void harness_init_with(harness *h, const pl_ca_store *store, uint32_t burst, uint32_t rate_milli,
                              uint32_t table)
{
    memset(h, 0, sizeof *h);
    crypto_sign_keypair(h->ca_pk, h->ca_sk);
    /* Each harness is its own CA process, with its own token secret. */
    static uint64_t seed = 42;
    pl_rng_seeded_init(&h->rng, seed++);
    pl_ca_memstore_init(&h->ms, pl_mem_system(), 100000);
    pl_ca_server_config cfg;
    pl_ca_server_config_default(&cfg);
    memcpy(cfg.ca_pk, h->ca_pk, 32);
    memcpy(cfg.ca_sk, h->ca_sk, 64);
    if (burst) cfg.burst = burst;
    if (rate_milli) cfg.rate_milli = rate_milli;
    if (table) cfg.rate_table_size = table;
    pl_ca_server_err err;
    h->srv = pl_ca_server_new(&cfg, store ? store : &h->ms.store, pl_mem_system(), &h->rng.rng, &err);
    CHECK(h->srv != NULL);
    CHECK(pl_addr_parse(&h->src, "192.0.2.10:4000", 0));
}

static void harness_init(harness *h) { harness_init_with(h, NULL, 1000, 1000000, 0); }

static void harness_free(harness *h)
{
    pl_ca_server_free(h->srv);
    pl_ca_memstore_free(&h->ms);
}

/* Sends a request and returns the decoded answer (type 0 when none). */
static size_t exchange(harness *h, pl_time now, const pl_addr *from, const uint8_t *req, size_t len, pl_ca_msg *resp)
{
    size_t n = pl_ca_server_handle(h->srv, now, from, req, len, h->out, sizeof h->out, &h->ev);
    CHECK(n <= len); /* the anti-amplification rule, on every exchange */
    memset(resp, 0, sizeof *resp);
    if (n) CHECK_EQ(pl_ca_msg_decode(resp, h->out, n), PL_CA_PROTO_OK);
    return n;
}

static size_t encode(const pl_ca_msg *m, uint8_t *buf, size_t cap)
{
    size_t n = 0;
    CHECK_EQ(pl_ca_msg_encode(m, PL_CA_PAD_SIZE, buf, cap, &n), PL_CA_PROTO_OK);
    return n;
}

static pl_ca_msg challenge_req(uint8_t op, const char *name, const pl_identity *id, uint64_t rid)
{
    pl_ca_msg m;
    memset(&m, 0, sizeof m);
    m.type = PL_CA_MSG_CHALLENGE_REQ;
    m.id = rid;
    m.op = op;
    m.name_len = (uint8_t)strlen(name);
    memcpy(m.name, name, m.name_len);
    memcpy(m.sign_pk, id->sign_pk, 32);
    return m;
}

/* Builds the op request for a token, signed by `signer` (normally the key
 * that asked; a different one to fake a failed proof). */
static pl_ca_msg op_req(const harness *h, uint8_t op, const char *name, const pl_identity *id,
                        const pl_identity *signer, const uint8_t token[PL_CA_TOKEN_SIZE], uint64_t rid)
{
    pl_ca_msg m = challenge_req(op, name, id, rid);
    m.type = PL_CA_MSG_OP_REQ;
    memcpy(m.token, token, PL_CA_TOKEN_SIZE);
    char norm[PL_NAME_MAX + 1];
    pl_name_normalize(name, norm);
    uint8_t msg[PL_CA_OP_MESSAGE_MAX];
    size_t n = pl_ca_op_message(msg, h->ca_pk, op, norm, id->sign_pk, token);
    crypto_sign_detached(m.sig, NULL, msg, n, signer->sign_sk);
    return m;
}

/* Asks for a token; fails the test unless one comes back. */
static void get_token(harness *h, pl_time now, const pl_addr *from, uint8_t op, const char *name,
                      const pl_identity *id, uint8_t token[PL_CA_TOKEN_SIZE])
{
    uint8_t buf[PL_CA_MAX_MESSAGE];
    pl_ca_msg m = challenge_req(op, name, id, 7), r;
    size_t n = encode(&m, buf, sizeof buf);
    CHECK(exchange(h, now, from, buf, n, &r) > 0);
    CHECK_EQ(r.type, PL_CA_MSG_CHALLENGE);
    CHECK_EQ(r.id, 7);
    memcpy(token, r.token, PL_CA_TOKEN_SIZE);
}

/* The whole flow by hand; returns the answer to the op request. */
static pl_ca_msg do_op(harness *h, pl_time now, uint8_t op, const char *name, const pl_identity *id)
{
    uint8_t token[PL_CA_TOKEN_SIZE], buf[PL_CA_MAX_MESSAGE];
    get_token(h, now, &h->src, op, name, id, token);
    pl_ca_msg m = op_req(h, op, name, id, id, token, 8), r;
    size_t n = encode(&m, buf, sizeof buf);
    exchange(h, now, &h->src, buf, n, &r);
    return r;
}

/* Asks only for the challenge and returns the error code (0 if a token came). */
static uint8_t challenge_code(harness *h, pl_time now, uint8_t op, const char *name, const pl_identity *id)
{
    uint8_t buf[PL_CA_MAX_MESSAGE];
    pl_ca_msg m = challenge_req(op, name, id, 9), r;
    size_t n = encode(&m, buf, sizeof buf);
    CHECK(exchange(h, now, &h->src, buf, n, &r) > 0);
    return r.type == PL_CA_MSG_ERROR ? r.code : 0;
}

static pl_cert decode_cert(const pl_ca_msg *r)
{
    pl_cert c;
    CHECK_EQ(r->type, PL_CA_MSG_CERT);
    CHECK_EQ(pl_cert_decode(&c, r->cert, r->cert_len), PL_CERT_OK);
    return c;
}

static pl_identity new_id(void)
{
    pl_identity id;
    pl_identity_generate(&id, pl_rng_system());
    return id;
}

/* ---- protocol encoding ------------------------------------------------------------ */

static void messages_round_trip_and_padding_must_be_zero(void)
{
    pl_identity id = new_id();
    uint8_t buf[PL_CA_MAX_MESSAGE], buf2[PL_CA_MAX_MESSAGE];
    uint8_t token[PL_CA_TOKEN_SIZE];
    memset(token, 0xab, sizeof token);
    harness h;
    harness_init(&h);
    pl_ca_msg m = op_req(&h, PL_CA_OP_REGISTER, "alice", &id, &id, token, 0x0102030405060708ull), d;
    size_t n = encode(&m, buf, sizeof buf);
    CHECK_EQ(n, PL_CA_PAD_SIZE);
    CHECK(memcmp(buf, "PLCA", 4) == 0);
    CHECK_EQ(pl_ca_msg_decode(&d, buf, n), PL_CA_PROTO_OK);
    CHECK(d.type == PL_CA_MSG_OP_REQ && d.id == m.id && strcmp(d.name, "alice") == 0);
    CHECK(memcmp(d.sig, m.sig, 64) == 0 && memcmp(d.token, token, sizeof token) == 0);
    size_t n2 = 0;
    CHECK_EQ(pl_ca_msg_encode(&d, PL_CA_PAD_SIZE, buf2, sizeof buf2, &n2), PL_CA_PROTO_OK);
    CHECK(n == n2 && memcmp(buf, buf2, n) == 0);
    /* A non-zero padding byte, a truncated body, a bad magic or version are refused. */
    buf[n - 1] = 1;
    CHECK_EQ(pl_ca_msg_decode(&d, buf, n), PL_CA_PROTO_ERR_MALFORMED);
    buf[n - 1] = 0;
    CHECK_EQ(pl_ca_msg_decode(&d, buf, pl_ca_msg_size(&m) - 1), PL_CA_PROTO_ERR_MALFORMED);
    buf[4] = 2;
    CHECK_EQ(pl_ca_msg_decode(&d, buf, n), PL_CA_PROTO_ERR_VERSION);
    buf[4] = 1;
    buf[0] = 'X';
    CHECK_EQ(pl_ca_msg_decode(&d, buf, n), PL_CA_PROTO_ERR_MALFORMED);
    /* A name longer than the maximum never decodes. */
    buf[0] = 'P';
    buf[17] = PL_NAME_MAX + 1;
    CHECK(pl_ca_msg_decode(&d, buf, n) != PL_CA_PROTO_OK);
    /* Too small an output buffer is an error, not an overflow. */
    CHECK_EQ(pl_ca_msg_encode(&m, 0, buf2, pl_ca_msg_size(&m) - 1, &n2), PL_CA_PROTO_ERR_BUFFER);
    harness_free(&h);
}

/* ---- registration --------------------------------------------------------------------- */

static void registration_proves_possession_and_issues_a_certificate(void)
{
    harness h;
    harness_init(&h);
    pl_identity alice = new_id();
    pl_ca_msg r = do_op(&h, T0, PL_CA_OP_REGISTER, "Alice", &alice);
    pl_cert c = decode_cert(&r);
    CHECK_EQ(h.ev.kind, PL_CA_EVENT_REGISTERED);
    CHECK(strcmp(h.ev.name, "alice") == 0);
    CHECK(strcmp(c.name, "alice") == 0); /* canonical lower case */
    CHECK_EQ(pl_cert_verify(&c, h.ca_pk, T0 / PL_SEC, NULL), PL_CERT_OK);
    CHECK(memcmp(c.sign_pk, alice.sign_pk, 32) == 0);
    CHECK(memcmp(c.dh_pk, alice.dh_pk, 32) == 0); /* derived by the CA */
    CHECK_EQ(c.serial, 1);
    CHECK(c.not_after >= T0 / PL_SEC + 364 * 86400ull);
    pl_ca_account acc;
    CHECK_EQ(h.ms.store.lookup(h.ms.store.ctx, "alice", &acc), PL_CA_STORE_OK);
    CHECK_EQ(acc.serial, 1);

    pl_identity bob = new_id();
    r = do_op(&h, T0, PL_CA_OP_REGISTER, "bob", &bob);
    pl_cert cb = decode_cert(&r);
    CHECK_EQ(cb.serial, 2);
    harness_free(&h);
}

static void a_key_that_fails_the_challenge_is_refused(void)
{
    harness h;
    harness_init(&h);
    pl_identity victim = new_id(), attacker = new_id();
    uint8_t token[PL_CA_TOKEN_SIZE], buf[PL_CA_MAX_MESSAGE];
    /* The attacker asks for a token for the victim's public key and signs
     * with its own: the CA must sign nothing. */
    get_token(&h, T0, &h.src, PL_CA_OP_REGISTER, "mallory", &victim, token);
    pl_ca_msg m = op_req(&h, PL_CA_OP_REGISTER, "mallory", &victim, &attacker, token, 5), r;
    exchange(&h, T0, &h.src, buf, encode(&m, buf, sizeof buf), &r);
    CHECK_EQ(r.type, PL_CA_MSG_ERROR);
    CHECK_EQ(r.code, PL_CA_CODE_BAD_SIGNATURE);
    CHECK_EQ(h.ev.kind, PL_CA_EVENT_REFUSED);
    /* A signature for another CA's key does not count here either. */
    uint8_t other_pk[32], other_sk[64], msg[PL_CA_OP_MESSAGE_MAX];
    crypto_sign_keypair(other_pk, other_sk);
    m = op_req(&h, PL_CA_OP_REGISTER, "mallory", &victim, &victim, token, 6);
    size_t mn = pl_ca_op_message(msg, other_pk, PL_CA_OP_REGISTER, "mallory", victim.sign_pk, token);
    crypto_sign_detached(m.sig, NULL, msg, mn, victim.sign_sk);
    exchange(&h, T0, &h.src, buf, encode(&m, buf, sizeof buf), &r);
    CHECK_EQ(r.code, PL_CA_CODE_BAD_SIGNATURE);
    CHECK_EQ(h.ms.count, 0);
    harness_free(&h);
}

static void tokens_are_bound_to_source_time_and_request(void)
{
    harness h;
    harness_init(&h);
    pl_identity a = new_id(), b = new_id();
    uint8_t token[PL_CA_TOKEN_SIZE], buf[PL_CA_MAX_MESSAGE];
    pl_ca_msg m, r;
    get_token(&h, T0, &h.src, PL_CA_OP_REGISTER, "alice", &a, token);

    /* From another address. */
    pl_addr other;
    CHECK(pl_addr_parse(&other, "198.51.100.7:4000", 0));
    m = op_req(&h, PL_CA_OP_REGISTER, "alice", &a, &a, token, 1);
    exchange(&h, T0, &other, buf, encode(&m, buf, sizeof buf), &r);
    CHECK_EQ(r.code, PL_CA_CODE_BAD_TOKEN);
    /* Same host, another port (UDP to TCP fallback): fine, tested below. */
    /* Too late: 61 seconds on. */
    exchange(&h, T0 + 61 * PL_SEC, &h.src, buf, encode(&m, buf, sizeof buf), &r);
    CHECK_EQ(r.code, PL_CA_CODE_BAD_TOKEN);
    /* From the future (a token is never newer than the clock). */
    exchange(&h, T0 - 2 * PL_SEC, &h.src, buf, encode(&m, buf, sizeof buf), &r);
    CHECK_EQ(r.code, PL_CA_CODE_BAD_TOKEN);
    /* For another name, another key, another op. */
    m = op_req(&h, PL_CA_OP_REGISTER, "alicia", &a, &a, token, 1);
    exchange(&h, T0, &h.src, buf, encode(&m, buf, sizeof buf), &r);
    CHECK_EQ(r.code, PL_CA_CODE_BAD_TOKEN);
    m = op_req(&h, PL_CA_OP_REGISTER, "alice", &b, &b, token, 1);
    exchange(&h, T0, &h.src, buf, encode(&m, buf, sizeof buf), &r);
    CHECK_EQ(r.code, PL_CA_CODE_BAD_TOKEN);
    m = op_req(&h, PL_CA_OP_RENEW, "alice", &a, &a, token, 1);
    exchange(&h, T0, &h.src, buf, encode(&m, buf, sizeof buf), &r);
    CHECK_EQ(r.code, PL_CA_CODE_BAD_TOKEN);
    /* A forged token (a flipped MAC bit, a moved timestamp). */
    uint8_t forged[PL_CA_TOKEN_SIZE];
    memcpy(forged, token, sizeof forged);
    forged[20] ^= 1;
    m = op_req(&h, PL_CA_OP_REGISTER, "alice", &a, &a, forged, 1);
    exchange(&h, T0, &h.src, buf, encode(&m, buf, sizeof buf), &r);
    CHECK_EQ(r.code, PL_CA_CODE_BAD_TOKEN);
    memcpy(forged, token, sizeof forged);
    forged[7] ^= 1;
    m = op_req(&h, PL_CA_OP_REGISTER, "alice", &a, &a, forged, 1);
    exchange(&h, T0, &h.src, buf, encode(&m, buf, sizeof buf), &r);
    CHECK_EQ(r.code, PL_CA_CODE_BAD_TOKEN);
    /* Another CA process (another token secret) does not accept it. */
    harness h2;
    harness_init(&h2);
    m = op_req(&h2, PL_CA_OP_REGISTER, "alice", &a, &a, token, 1);
    exchange(&h2, T0, &h.src, buf, encode(&m, buf, sizeof buf), &r);
    CHECK_EQ(r.code, PL_CA_CODE_BAD_TOKEN);
    harness_free(&h2);
    CHECK_EQ(h.ms.count, 0);
    /* The genuine one, from the same host on another port, within 60 s. */
    pl_addr moved = h.src;
    moved.port = 5555;
    m = op_req(&h, PL_CA_OP_REGISTER, "alice", &a, &a, token, 1);
    exchange(&h, T0 + 60 * PL_SEC, &moved, buf, encode(&m, buf, sizeof buf), &r);
    CHECK_EQ(r.type, PL_CA_MSG_CERT);
    harness_free(&h);
}

static void names_are_checked_and_unique_case_insensitively(void)
{
    harness h;
    harness_init(&h);
    pl_identity a = new_id(), b = new_id();
    CHECK_EQ(do_op(&h, T0, PL_CA_OP_REGISTER, "Carol", &a).type, PL_CA_MSG_CERT);
    /* Taken, whatever the case, refused already at the challenge. */
    CHECK_EQ(challenge_code(&h, T0, PL_CA_OP_REGISTER, "carol", &b), PL_CA_CODE_NAME_TAKEN);
    CHECK_EQ(challenge_code(&h, T0, PL_CA_OP_REGISTER, "CAROL", &b), PL_CA_CODE_NAME_TAKEN);
    CHECK_EQ(challenge_code(&h, T0, PL_CA_OP_REGISTER, "ab", &b), PL_CA_CODE_BAD_NAME);
    CHECK_EQ(challenge_code(&h, T0, PL_CA_OP_REGISTER, "bad name", &b), PL_CA_CODE_BAD_NAME);
    CHECK_EQ(challenge_code(&h, T0, PL_CA_OP_REGISTER, "-edge", &b), PL_CA_CODE_BAD_NAME);
    CHECK_EQ(challenge_code(&h, T0, PL_CA_OP_REGISTER, "Admin", &b), PL_CA_CODE_RESERVED);
    CHECK_EQ(challenge_code(&h, T0, PL_CA_OP_REGISTER, "root", &b), PL_CA_CODE_RESERVED);
    /* The op request checks all of it again (a token cannot be had for a
     * taken name, so forge the race: token first, then someone registers). */
    uint8_t token[PL_CA_TOKEN_SIZE], buf[PL_CA_MAX_MESSAGE];
    get_token(&h, T0, &h.src, PL_CA_OP_REGISTER, "dave", &b, token);
    CHECK_EQ(do_op(&h, T0, PL_CA_OP_REGISTER, "DAVE", &a).type, PL_CA_MSG_CERT);
    pl_ca_msg m = op_req(&h, PL_CA_OP_REGISTER, "dave", &b, &b, token, 3), r;
    exchange(&h, T0, &h.src, buf, encode(&m, buf, sizeof buf), &r);
    CHECK_EQ(r.code, PL_CA_CODE_NAME_TAKEN);
    CHECK_EQ(h.ms.count, 2);
    harness_free(&h);
}

static void a_retransmitted_registration_gets_the_same_certificate(void)
{
    harness h;
    harness_init(&h);
    pl_identity a = new_id();
    uint8_t token[PL_CA_TOKEN_SIZE], buf[PL_CA_MAX_MESSAGE];
    get_token(&h, T0, &h.src, PL_CA_OP_REGISTER, "erin", &a, token);
    pl_ca_msg m = op_req(&h, PL_CA_OP_REGISTER, "erin", &a, &a, token, 3), r1, r2;
    size_t n = encode(&m, buf, sizeof buf);
    exchange(&h, T0, &h.src, buf, n, &r1);
    pl_cert c1 = decode_cert(&r1);
    CHECK_EQ(h.ev.kind, PL_CA_EVENT_REGISTERED);
    exchange(&h, T0 + 2 * PL_SEC, &h.src, buf, n, &r2);
    pl_cert c2 = decode_cert(&r2);
    CHECK_EQ(h.ev.kind, PL_CA_EVENT_REISSUED);
    CHECK(c1.serial == c2.serial && memcmp(c1.sig, c2.sig, 64) == 0);
    CHECK_EQ(r2.id, 3);
    CHECK_EQ(h.ms.count, 1);
    harness_free(&h);
}

static void nothing_is_acknowledged_when_the_store_fails(void)
{
    harness h;
    harness_init(&h);
    pl_identity a = new_id();
    h.ms.fail_writes = true;
    pl_ca_msg r = do_op(&h, T0, PL_CA_OP_REGISTER, "frank", &a);
    CHECK_EQ(r.type, PL_CA_MSG_ERROR);
    CHECK_EQ(r.code, PL_CA_CODE_INTERNAL);
    h.ms.fail_writes = false;
    CHECK_EQ(do_op(&h, T0, PL_CA_OP_REGISTER, "frank", &a).type, PL_CA_MSG_CERT);
    harness_free(&h);
}

/* ---- renew, revoke, CRL ------------------------------------------------------------------- */

static void renew_issues_a_new_serial_and_revoke_lists_every_serial(void)
{
    harness h;
    harness_init(&h);
    pl_identity a = new_id(), b = new_id();
    pl_ca_msg r = do_op(&h, T0, PL_CA_OP_REGISTER, "grace", &a);
    pl_cert c1 = decode_cert(&r);
    r = do_op(&h, T0, PL_CA_OP_REGISTER, "heidi", &b);
    pl_cert other = decode_cert(&r);
    /* Renewal: a new serial, same name and key. */
    r = do_op(&h, T0 + 5 * PL_SEC, PL_CA_OP_RENEW, "grace", &a);
    pl_cert c2 = decode_cert(&r);
    CHECK_EQ(h.ev.kind, PL_CA_EVENT_RENEWED);
    CHECK(c2.serial > c1.serial && c2.serial != other.serial);
    CHECK(c2.not_after > c1.not_after);
    /* Only the key holder can renew or revoke. */
    CHECK_EQ(challenge_code(&h, T0, PL_CA_OP_RENEW, "grace", &b), PL_CA_CODE_WRONG_KEY);
    CHECK_EQ(challenge_code(&h, T0, PL_CA_OP_REVOKE, "grace", &b), PL_CA_CODE_WRONG_KEY);
    CHECK_EQ(challenge_code(&h, T0, PL_CA_OP_RENEW, "nobody", &b), PL_CA_CODE_NOT_FOUND);
    /* Revocation covers the certificate before the renewal, too. */
    r = do_op(&h, T0 + 6 * PL_SEC, PL_CA_OP_REVOKE, "grace", &a);
    CHECK_EQ(r.type, PL_CA_MSG_REVOKED);
    CHECK_EQ(r.crl_number, 1);
    CHECK_EQ(h.ev.kind, PL_CA_EVENT_REVOKED);
    /* Revoking again is answered the same way (idempotent). */
    r = do_op(&h, T0 + 7 * PL_SEC, PL_CA_OP_REVOKE, "grace", &a);
    CHECK_EQ(r.type, PL_CA_MSG_REVOKED);
    CHECK_EQ(r.crl_number, 1);
    /* A revoked account can neither renew nor re-register the name. */
    CHECK_EQ(challenge_code(&h, T0, PL_CA_OP_RENEW, "grace", &a), PL_CA_CODE_REVOKED);
    CHECK_EQ(challenge_code(&h, T0, PL_CA_OP_REGISTER, "grace", &a), PL_CA_CODE_REVOKED);
    CHECK_EQ(challenge_code(&h, T0, PL_CA_OP_REGISTER, "grace", &b), PL_CA_CODE_NAME_TAKEN);

    /* The CRL, through the client state machine. */
    uint8_t crlbuf[4096], req[PL_CA_MAX_MESSAGE], out[PL_CA_MAX_MESSAGE];
    pl_ca_client c;
    pl_ca_client_config cfg = {.op = PL_CA_OP_CRL, .rng = &h.rng.rng, .crl_buf = crlbuf, .crl_cap = sizeof crlbuf};
    memcpy(cfg.ca_pk, h.ca_pk, 32);
    CHECK_EQ(pl_ca_client_init(&c, &cfg), PL_CA_CLIENT_OK);
    size_t len;
    pl_ca_client_status st = pl_ca_client_start(&c, 0, req, sizeof req, &len);
    while (st == PL_CA_CLIENT_SEND) {
        size_t n = pl_ca_server_handle(h.srv, T0 + 8 * PL_SEC, &h.src, req, len, out, sizeof out, NULL);
        CHECK(n > 0 && n <= len);
        st = pl_ca_client_handle(&c, 0, out, n, req, sizeof req, &len);
    }
    CHECK_EQ(st, PL_CA_CLIENT_DONE);
    CHECK_EQ(pl_ca_client_result(&c), PL_CA_CLIENT_OK);
    pl_crl crl;
    CHECK_EQ(pl_crl_decode(&crl, crlbuf, pl_ca_client_crl_len(&c)), PL_CERT_OK);
    CHECK_EQ(pl_crl_verify(&crl, h.ca_pk), PL_CERT_OK);
    CHECK_EQ(crl.number, 1);
    CHECK_EQ(crl.count, 2);
    CHECK(pl_crl_contains(&crl, c1.serial) && pl_crl_contains(&crl, c2.serial) && !pl_crl_contains(&crl, other.serial));
    CHECK_EQ(pl_cert_verify(&c1, h.ca_pk, T0 / PL_SEC, &crl), PL_CERT_ERR_REVOKED);
    CHECK_EQ(pl_cert_verify(&other, h.ca_pk, T0 / PL_SEC, &crl), PL_CERT_OK);
    harness_free(&h);
}

static void a_large_crl_comes_in_chunks_no_larger_than_the_requests(void)
{
    harness h;
    harness_init(&h);
    /* 300 revoked accounts: 2.5 KB of CRL, so several 1200-byte exchanges. */
    char name[32];
    for (int i = 0; i < 300; i++) {
        pl_identity id = new_id();
        snprintf(name, sizeof name, "user%03d", i);
        CHECK_EQ(do_op(&h, T0, PL_CA_OP_REGISTER, name, &id).type, PL_CA_MSG_CERT);
        CHECK_EQ(h.ms.store.revoke(h.ms.store.ctx, name, NULL), PL_CA_STORE_OK); /* the operator's revoke */
    }
    static uint8_t crlbuf[PL_CRL_SIZE(400)];
    uint8_t req[PL_CA_MAX_MESSAGE], out[PL_CA_MAX_MESSAGE];
    pl_ca_client c;
    pl_ca_client_config cfg = {.op = PL_CA_OP_CRL, .rng = &h.rng.rng, .crl_buf = crlbuf, .crl_cap = sizeof crlbuf};
    memcpy(cfg.ca_pk, h.ca_pk, 32);
    CHECK_EQ(pl_ca_client_init(&c, &cfg), PL_CA_CLIENT_OK);
    size_t len;
    int exchanges = 0;
    pl_ca_client_status st = pl_ca_client_start(&c, 0, req, sizeof req, &len);
    while (st == PL_CA_CLIENT_SEND) {
        CHECK_EQ(len, PL_CA_PAD_SIZE);
        size_t n = pl_ca_server_handle(h.srv, T0 + PL_SEC, &h.src, req, len, out, sizeof out, NULL);
        CHECK(n > 0 && n <= len);
        exchanges++;
        st = pl_ca_client_handle(&c, 0, out, n, req, sizeof req, &len);
    }
    CHECK_EQ(pl_ca_client_result(&c), PL_CA_CLIENT_OK);
    CHECK_EQ(pl_ca_client_crl_len(&c), PL_CRL_SIZE(300));
    CHECK(exchanges >= 3);
    pl_crl crl;
    CHECK_EQ(pl_crl_decode(&crl, crlbuf, pl_ca_client_crl_len(&c)), PL_CERT_OK);
    CHECK_EQ(crl.count, 300);
    CHECK_EQ(crl.number, 300);
    harness_free(&h);
}

/* ---- anti-amplification and rate limits -------------------------------------------------------- */

static void no_response_is_larger_than_its_request(void)
{
    harness h;
    harness_init(&h);
    pl_identity a = new_id();
    CHECK_EQ(do_op(&h, T0, PL_CA_OP_REGISTER, "ivan", &a).type, PL_CA_MSG_CERT);
    uint8_t buf[PL_CA_MAX_MESSAGE], token[PL_CA_TOKEN_SIZE];
    pl_ca_msg r;
    /* An unpadded challenge request (53 bytes) cannot carry its 56-byte
     * answer: it gets the 24-byte TOO_SMALL error instead. */
    pl_ca_msg m = challenge_req(PL_CA_OP_REGISTER, "ivan", &a, 1);
    size_t n = 0;
    CHECK_EQ(pl_ca_msg_encode(&m, 0, buf, sizeof buf, &n), PL_CA_PROTO_OK);
    CHECK(exchange(&h, T0, &h.src, buf, n, &r) > 0);
    CHECK_EQ(r.type, PL_CA_MSG_ERROR);
    CHECK_EQ(r.code, PL_CA_CODE_TOO_SMALL);
    /* An unpadded op request is too small for a certificate. */
    get_token(&h, T0, &h.src, PL_CA_OP_REGISTER, "ivan", &a, token);
    m = op_req(&h, PL_CA_OP_REGISTER, "ivan", &a, &a, token, 2);
    CHECK_EQ(pl_ca_msg_encode(&m, 0, buf, sizeof buf, &n), PL_CA_PROTO_OK);
    exchange(&h, T0, &h.src, buf, n, &r);
    CHECK_EQ(r.code, PL_CA_CODE_TOO_SMALL);
    /* A bare header gets nothing at all: not even an error fits... */
    memset(buf, 0, 16);
    memcpy(buf, "PLCA", 4);
    buf[4] = 1;
    buf[5] = PL_CA_MSG_CHALLENGE_REQ;
    CHECK_EQ(exchange(&h, T0, &h.src, buf, 16, &r), 0);
    /* ...and answers are never answered (no ping-pong between servers). */
    pl_ca_msg e = {.type = PL_CA_MSG_ERROR, .code = 1};
    CHECK_EQ(pl_ca_msg_encode(&e, PL_CA_PAD_SIZE, buf, sizeof buf, &n), PL_CA_PROTO_OK);
    CHECK_EQ(exchange(&h, T0, &h.src, buf, n, &r), 0);
    /* Random mutations of valid requests, at every length: the rule holds. */
    pl_rng_seeded rng;
    pl_rng_seeded_init(&rng, 7);
    m = op_req(&h, PL_CA_OP_REGISTER, "ivan", &a, &a, token, 2);
    size_t full = encode(&m, buf, sizeof buf);
    for (int i = 0; i < 20000; i++) {
        uint8_t mut[PL_CA_PAD_SIZE];
        memcpy(mut, buf, full);
        size_t len = 16 + (size_t)pl_rng_below(&rng.rng, full - 15);
        int flips = (int)pl_rng_below(&rng.rng, 4);
        for (int f = 0; f < flips; f++) mut[pl_rng_below(&rng.rng, len)] ^= (uint8_t)(1 + pl_rng_below(&rng.rng, 255));
        if (i % 3 == 0) mut[5] = (uint8_t)(1 + pl_rng_below(&rng.rng, 8));
        size_t out = pl_ca_server_handle(h.srv, T0, &h.src, mut, len, h.out, sizeof h.out, NULL);
        CHECK(out <= len);
    }
    harness_free(&h);
}

static void each_source_has_a_token_bucket(void)
{
    harness h;
    /* Three requests of burst, one a second after that. */
    harness_init_with(&h, NULL, 3, 1000, 64);
    pl_identity a = new_id();
    uint8_t buf[PL_CA_MAX_MESSAGE];
    pl_ca_msg m = challenge_req(PL_CA_OP_REGISTER, "judy", &a, 1), r;
    size_t n = encode(&m, buf, sizeof buf);
    for (int i = 0; i < 3; i++) {
        exchange(&h, T0, &h.src, buf, n, &r);
        CHECK_EQ(r.type, PL_CA_MSG_CHALLENGE);
    }
    /* The fourth is told to slow down, with a retry hint; the fifth gets silence. */
    exchange(&h, T0, &h.src, buf, n, &r);
    CHECK_EQ(r.type, PL_CA_MSG_ERROR);
    CHECK_EQ(r.code, PL_CA_CODE_RATE_LIMITED);
    CHECK(r.retry_after_ms > 0 && r.retry_after_ms <= 1001);
    CHECK_EQ(exchange(&h, T0, &h.src, buf, n, &r), 0);
    /* Another port of the same host shares the bucket... */
    pl_addr port = h.src;
    port.port++;
    CHECK_EQ(exchange(&h, T0, &port, buf, n, &r), 0);
    /* ...another host does not. */
    pl_addr other;
    CHECK(pl_addr_parse(&other, "192.0.2.11:4000", 0));
    exchange(&h, T0, &other, buf, n, &r);
    CHECK_EQ(r.type, PL_CA_MSG_CHALLENGE);
    /* A second later there is a token again. */
    exchange(&h, T0 + PL_SEC, &h.src, buf, n, &r);
    CHECK_EQ(r.type, PL_CA_MSG_CHALLENGE);
    /* IPv6: one bucket per /64. */
    pl_addr v6a, v6b, v6c;
    CHECK(pl_addr_parse(&v6a, "[2001:db8:1:2::1]:5", 0));
    CHECK(pl_addr_parse(&v6b, "[2001:db8:1:2:ffff::9]:6", 0));
    CHECK(pl_addr_parse(&v6c, "[2001:db8:1:3::1]:5", 0));
    for (int i = 0; i < 3; i++) exchange(&h, T0, i % 2 ? &v6a : &v6b, buf, n, &r);
    exchange(&h, T0, &v6b, buf, n, &r);
    CHECK_EQ(r.code, PL_CA_CODE_RATE_LIMITED);
    exchange(&h, T0, &v6c, buf, n, &r);
    CHECK_EQ(r.type, PL_CA_MSG_CHALLENGE);
    /* A flood from many sources only recycles entries: the table stays its size. */
    for (uint32_t i = 0; i < 5000; i++) {
        pl_addr s = {.family = PL_AF_INET4, .port = 1};
        s.ip[0] = 10;
        s.ip[1] = (uint8_t)(i >> 16);
        s.ip[2] = (uint8_t)(i >> 8);
        s.ip[3] = (uint8_t)i;
        exchange(&h, T0 + 2 * PL_SEC, &s, buf, n, &r);
        CHECK_EQ(r.type, PL_CA_MSG_CHALLENGE);
    }
    harness_free(&h);
}

/* ---- the client state machine -------------------------------------------------------------------- */

/* Runs a client against the server in memory, with a virtual clock and a
 * lossy "network"; returns the result. */
static pl_ca_client_err run_client(harness *h, pl_ca_client *c, const pl_ca_client_config *cfg, int drops,
                                   pl_time *clock, int *sends)
{
    static uint8_t req[PL_CA_MAX_MESSAGE], out[PL_CA_MAX_MESSAGE];
    size_t len = 0;
    CHECK_EQ(pl_ca_client_init(c, cfg), PL_CA_CLIENT_OK);
    pl_ca_client_status st = pl_ca_client_start(c, *clock, req, sizeof req, &len);
    *sends = 0;
    while (st != PL_CA_CLIENT_DONE) {
        if (st == PL_CA_CLIENT_SEND) {
            (*sends)++;
            size_t n = pl_ca_server_handle(h->srv, T0 + *clock, &h->src, req, len, out, sizeof out, &h->ev);
            CHECK(n <= len);
            if (n && drops > 0) {
                drops--;
                n = 0;
            }
            if (n) {
                st = pl_ca_client_handle(c, *clock, out, n, req, sizeof req, &len);
                continue;
            }
        }
        pl_time t = pl_ca_client_next_timeout(c);
        CHECK(t != PL_TIME_NEVER);
        *clock = t;
        st = pl_ca_client_tick(c, *clock, req, sizeof req, &len);
    }
    return pl_ca_client_result(c);
}

static void the_client_registers_retransmits_and_gives_up(void)
{
    harness h;
    harness_init(&h);
    pl_identity a = new_id(), b = new_id();
    pl_ca_client c;
    pl_ca_client_config cfg = {.op = PL_CA_OP_REGISTER, .id = &a, .name = "Kim", .rng = &h.rng.rng};
    memcpy(cfg.ca_pk, h.ca_pk, 32);
    pl_time clock = 0;
    int sends;
    /* Two answers lost: the client retransmits and still succeeds. */
    CHECK_EQ(run_client(&h, &c, &cfg, 2, &clock, &sends), PL_CA_CLIENT_OK);
    CHECK_EQ(sends, 4);
    CHECK(clock >= 400 * PL_MSEC); /* waited at least one RTO */
    CHECK(pl_ca_client_cert(&c) != NULL);
    pl_cert first = *pl_ca_client_cert(&c);
    CHECK(strcmp(first.name, "kim") == 0);
    /* The lost op answer case ended in a retransmit that got the same cert. */
    CHECK_EQ(h.ms.count, 1);

    /* Someone else's name: a clear error. */
    cfg.id = &b;
    CHECK_EQ(run_client(&h, &c, &cfg, 0, &clock, &sends), PL_CA_CLIENT_ERR_NAME_TAKEN);
    /* Local name checks need no network. */
    cfg.name = "no spaces";
    CHECK_EQ(pl_ca_client_init(&c, &cfg), PL_CA_CLIENT_ERR_BAD_NAME);
    cfg.name = "admin";
    CHECK_EQ(pl_ca_client_init(&c, &cfg), PL_CA_CLIENT_ERR_RESERVED);
    /* A dead authority: every try goes unanswered, then TIMEOUT. */
    cfg.name = "lou";
    cfg.max_tries = 3;
    clock = 0;
    CHECK_EQ(run_client(&h, &c, &cfg, 1000, &clock, &sends), PL_CA_CLIENT_ERR_TIMEOUT);
    CHECK_EQ(sends, 3);
    CHECK_EQ(clock, (400 + 800 + 1600) * PL_MSEC); /* exponential back-off */
    CHECK_EQ(pl_ca_client_next_timeout(&c), PL_TIME_NEVER);

    /* Renew and revoke through the client. */
    cfg = (pl_ca_client_config){.op = PL_CA_OP_RENEW, .id = &a, .name = "kim", .rng = &h.rng.rng};
    memcpy(cfg.ca_pk, h.ca_pk, 32);
    clock = 10 * PL_SEC;
    CHECK_EQ(run_client(&h, &c, &cfg, 0, &clock, &sends), PL_CA_CLIENT_OK);
    CHECK(pl_ca_client_cert(&c)->serial > first.serial);
    cfg.op = PL_CA_OP_REVOKE;
    CHECK_EQ(run_client(&h, &c, &cfg, 0, &clock, &sends), PL_CA_CLIENT_OK);
    CHECK_EQ(pl_ca_client_crl_number(&c), 1);
    CHECK(pl_ca_client_cert(&c) == NULL); /* a revoke brings no certificate */
    cfg.op = PL_CA_OP_RENEW;
    CHECK_EQ(run_client(&h, &c, &cfg, 0, &clock, &sends), PL_CA_CLIENT_ERR_REVOKED);
    harness_free(&h);
}

static void the_client_ignores_stale_and_forged_answers(void)
{
    harness h;
    harness_init(&h);
    pl_identity a = new_id();
    pl_ca_client c;
    pl_ca_client_config cfg = {.op = PL_CA_OP_REGISTER, .id = &a, .name = "mia", .rng = &h.rng.rng};
    memcpy(cfg.ca_pk, h.ca_pk, 32);
    CHECK_EQ(pl_ca_client_init(&c, &cfg), PL_CA_CLIENT_OK);
    uint8_t req[PL_CA_MAX_MESSAGE], out[PL_CA_MAX_MESSAGE], junk[64];
    size_t len, n;
    CHECK_EQ(pl_ca_client_start(&c, 0, req, sizeof req, &len), PL_CA_CLIENT_SEND);
    /* Garbage and an answer with the wrong id change nothing. */
    memset(junk, 0x55, sizeof junk);
    CHECK_EQ(pl_ca_client_handle(&c, 0, junk, sizeof junk, req, sizeof req, &len), PL_CA_CLIENT_WAIT);
    pl_ca_msg wrong = {.type = PL_CA_MSG_ERROR, .id = c.id ^ 1, .code = PL_CA_CODE_NAME_TAKEN};
    CHECK_EQ(pl_ca_msg_encode(&wrong, 0, out, sizeof out, &n), PL_CA_PROTO_OK);
    CHECK_EQ(pl_ca_client_handle(&c, 0, out, n, req, sizeof req, &len), PL_CA_CLIENT_WAIT);
    /* The real exchange, but the certificate comes from another CA. */
    n = pl_ca_server_handle(h.srv, T0, &h.src, req, len, out, sizeof out, NULL);
    CHECK_EQ(pl_ca_client_handle(&c, 0, out, n, req, sizeof req, &len), PL_CA_CLIENT_SEND);
    pl_ca_msg opm;
    CHECK_EQ(pl_ca_msg_decode(&opm, req, len), PL_CA_PROTO_OK);
    uint8_t other_pk[32], other_sk[64], certbuf[PL_CERT_MAX_SIZE];
    crypto_sign_keypair(other_pk, other_sk);
    pl_cert fake;
    memset(&fake, 0, sizeof fake);
    fake.version = PL_CERT_VERSION;
    fake.serial = 1;
    fake.not_before = 1;
    fake.not_after = 2;
    memcpy(fake.sign_pk, a.sign_pk, 32);
    memcpy(fake.dh_pk, a.dh_pk, 32);
    fake.name_len = 3;
    memcpy(fake.name, "mia", 3);
    pl_cert_sign(&fake, other_pk, other_sk);
    size_t cl;
    CHECK_EQ(pl_cert_encode(&fake, certbuf, sizeof certbuf, &cl), PL_CERT_OK);
    pl_ca_msg cm = {.type = PL_CA_MSG_CERT, .id = opm.id, .cert = certbuf, .cert_len = (uint16_t)cl};
    CHECK_EQ(pl_ca_msg_encode(&cm, 0, out, sizeof out, &n), PL_CA_PROTO_OK);
    CHECK_EQ(pl_ca_client_handle(&c, 0, out, n, req, sizeof req, &len), PL_CA_CLIENT_DONE);
    CHECK_EQ(pl_ca_client_result(&c), PL_CA_CLIENT_ERR_BAD_RESPONSE);
    CHECK(pl_ca_client_cert(&c) == NULL);
    harness_free(&h);
}

static void a_stale_token_makes_the_client_ask_again(void)
{
    harness h;
    harness_init(&h);
    pl_identity a = new_id();
    pl_ca_client c;
    pl_ca_client_config cfg = {.op = PL_CA_OP_REGISTER, .id = &a, .name = "ned", .rng = &h.rng.rng};
    memcpy(cfg.ca_pk, h.ca_pk, 32);
    CHECK_EQ(pl_ca_client_init(&c, &cfg), PL_CA_CLIENT_OK);
    uint8_t req[PL_CA_MAX_MESSAGE], out[PL_CA_MAX_MESSAGE];
    size_t len, n;
    CHECK_EQ(pl_ca_client_start(&c, 0, req, sizeof req, &len), PL_CA_CLIENT_SEND);
    n = pl_ca_server_handle(h.srv, T0, &h.src, req, len, out, sizeof out, NULL);
    CHECK_EQ(pl_ca_client_handle(&c, 0, out, n, req, sizeof req, &len), PL_CA_CLIENT_SEND);
    /* The op request arrives 90 s later: BAD_TOKEN, and the client starts over. */
    n = pl_ca_server_handle(h.srv, T0 + 90 * PL_SEC, &h.src, req, len, out, sizeof out, NULL);
    CHECK_EQ(pl_ca_client_handle(&c, 0, out, n, req, sizeof req, &len), PL_CA_CLIENT_SEND);
    pl_ca_msg m;
    CHECK_EQ(pl_ca_msg_decode(&m, req, len), PL_CA_PROTO_OK);
    CHECK_EQ(m.type, PL_CA_MSG_CHALLENGE_REQ);
    n = pl_ca_server_handle(h.srv, T0 + 91 * PL_SEC, &h.src, req, len, out, sizeof out, NULL);
    CHECK_EQ(pl_ca_client_handle(&c, 0, out, n, req, sizeof req, &len), PL_CA_CLIENT_SEND);
    n = pl_ca_server_handle(h.srv, T0 + 91 * PL_SEC, &h.src, req, len, out, sizeof out, NULL);
    CHECK_EQ(pl_ca_client_handle(&c, 0, out, n, req, sizeof req, &len), PL_CA_CLIENT_DONE);
    CHECK_EQ(pl_ca_client_result(&c), PL_CA_CLIENT_OK);
    harness_free(&h);
}

/* ---- the SQLite store ---------------------------------------------------------------------------- */

static void sqlite_store_round_trip(void)
{
    char dir[] = "/tmp/pl-test-caXXXXXX", path[256];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/accounts.db", dir);
    pl_ca_db *db = NULL;
    CHECK_EQ(pl_ca_db_open(&db, path, true), PL_CA_STORE_OK);
    pl_ca_store st = pl_ca_db_store(db);
    harness h;
    harness_init_with(&h, &st, 1000, 1000000, 0);
    pl_identity a = new_id(), b = new_id();
    pl_ca_msg r = do_op(&h, T0, PL_CA_OP_REGISTER, "Olga", &a);
    pl_cert c1 = decode_cert(&r);
    CHECK_EQ(challenge_code(&h, T0, PL_CA_OP_REGISTER, "OLGA", &b), PL_CA_CODE_NAME_TAKEN);
    r = do_op(&h, T0, PL_CA_OP_REGISTER, "pat", &b);
    pl_cert c2 = decode_cert(&r);
    CHECK_EQ(c2.serial, c1.serial + 1);
    r = do_op(&h, T0 + 3 * PL_SEC, PL_CA_OP_RENEW, "olga", &a);
    pl_cert c3 = decode_cert(&r);
    CHECK_EQ(c3.serial, 3);
    r = do_op(&h, T0 + 4 * PL_SEC, PL_CA_OP_REVOKE, "pat", &b);
    CHECK_EQ(r.type, PL_CA_MSG_REVOKED);
    CHECK_EQ(r.crl_number, 1);
    harness_free(&h);
    pl_ca_db_close(db);

    /* Reopened: everything acknowledged is there, and uniqueness holds in
     * the database itself, whatever the case. */
    CHECK_EQ(pl_ca_db_open(&db, path, false), PL_CA_STORE_OK);
    st = pl_ca_db_store(db);
    pl_ca_account acc;
    CHECK_EQ(st.lookup(st.ctx, "olga", &acc), PL_CA_STORE_OK);
    CHECK_EQ(acc.serial, 3);
    CHECK(!acc.revoked && memcmp(acc.sign_pk, a.sign_pk, 32) == 0);
    pl_cert stored;
    CHECK_EQ(pl_cert_decode(&stored, acc.cert, acc.cert_len), PL_CERT_OK);
    CHECK_EQ(stored.serial, 3);
    CHECK_EQ(st.lookup(st.ctx, "pat", &acc), PL_CA_STORE_OK);
    CHECK(acc.revoked);
    acc.serial = 99;
    CHECK_EQ(st.insert(st.ctx, &acc), PL_CA_STORE_EXISTS);
    snprintf(acc.name, sizeof acc.name, "PAT");
    CHECK_EQ(st.insert(st.ctx, &acc), PL_CA_STORE_EXISTS);
    uint64_t serials[8], next;
    uint32_t total;
    CHECK_EQ(st.revoked_serials(st.ctx, serials, 8, &total), PL_CA_STORE_OK);
    CHECK_EQ(total, 1);
    CHECK_EQ(serials[0], c2.serial);
    CHECK_EQ(st.next_serial(st.ctx, &next), PL_CA_STORE_OK);
    CHECK_EQ(next, 4);
    CHECK_EQ(st.revoke(st.ctx, "nobody", NULL), PL_CA_STORE_NOT_FOUND);
    pl_ca_db_close(db);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    RUN(messages_round_trip_and_padding_must_be_zero);
    RUN(registration_proves_possession_and_issues_a_certificate);
    RUN(a_key_that_fails_the_challenge_is_refused);
    RUN(tokens_are_bound_to_source_time_and_request);
    RUN(names_are_checked_and_unique_case_insensitively);
    RUN(a_retransmitted_registration_gets_the_same_certificate);
    RUN(nothing_is_acknowledged_when_the_store_fails);
    RUN(renew_issues_a_new_serial_and_revoke_lists_every_serial);
    RUN(a_large_crl_comes_in_chunks_no_larger_than_the_requests);
    RUN(no_response_is_larger_than_its_request);
    RUN(each_source_has_a_token_bucket);
    RUN(the_client_registers_retransmits_and_gives_up);
    RUN(the_client_ignores_stale_and_forged_answers);
    RUN(a_stale_token_makes_the_client_ask_again);
    RUN(sqlite_store_round_trip);
    return pl_test_summary();
}
