/*
 * ca_client.h - a user's side of the signing-authority protocol, sans I/O.
 *
 * One pl_ca_client runs one operation: register, renew, revoke, or fetch the
 * CRL. The driver calls start() and sends the bytes it gets; gives every
 * datagram or frame that comes back to handle(); and calls tick() when
 * next_timeout() has passed, which retransmits the same bytes or gives up.
 * The client never touches a socket, so the same code runs over UDP, over a
 * TCP stream after a fallback, and in the simulator.
 *
 * Status returned by start/handle/tick:
 *   PL_CA_CLIENT_SEND - out holds a request to send now;
 *   PL_CA_CLIENT_WAIT - nothing to send (a stale or foreign answer was ignored);
 *   PL_CA_CLIENT_DONE - finished; pl_ca_client_result() says how.
 */
#ifndef PL_CA_CLIENT_H
#define PL_CA_CLIENT_H

#include "ca_proto.h"
#include "parley.h"

/* The client-only operation: fetch and verify the revocation list. */
#define PL_CA_OP_CRL 4

typedef enum pl_ca_client_err {
    PL_CA_CLIENT_OK = 0,
    PL_CA_CLIENT_ERR_BAD_NAME,      /* the name breaks the rules (checked locally first) */
    PL_CA_CLIENT_ERR_RESERVED,
    PL_CA_CLIENT_ERR_NAME_TAKEN,
    PL_CA_CLIENT_ERR_RATE_LIMITED,  /* retry_after_ms says when to try again */
    PL_CA_CLIENT_ERR_BAD_SIGNATURE, /* the CA says our key did not sign the challenge */
    PL_CA_CLIENT_ERR_BAD_TOKEN,     /* the CA kept refusing our tokens */
    PL_CA_CLIENT_ERR_NOT_FOUND,
    PL_CA_CLIENT_ERR_WRONG_KEY,
    PL_CA_CLIENT_ERR_REVOKED,
    PL_CA_CLIENT_ERR_REFUSED,       /* malformed / too small / internal, from the CA */
    PL_CA_CLIENT_ERR_TIMEOUT,       /* no answer after every retransmission */
    PL_CA_CLIENT_ERR_BAD_RESPONSE,  /* the answer does not verify under the pinned CA key */
    PL_CA_CLIENT_ERR_BUFFER,        /* the CRL does not fit the caller's buffer */
    PL_CA_CLIENT_ERR_CONFIG,        /* a bad argument to init */
    PL_CA_CLIENT_ERR_PENDING,       /* not finished yet */
} pl_ca_client_err;
const char *pl_ca_client_strerror(pl_ca_client_err err);

typedef enum pl_ca_client_status {
    PL_CA_CLIENT_SEND = 0,
    PL_CA_CLIENT_WAIT,
    PL_CA_CLIENT_DONE,
} pl_ca_client_status;

typedef struct pl_ca_client_config {
    uint8_t op;                /* PL_CA_OP_REGISTER, _RENEW, _REVOKE or PL_CA_OP_CRL */
    const pl_identity *id;     /* the user's key; unused for PL_CA_OP_CRL */
    const char *name;          /* as typed; normalised here; unused for the CRL */
    uint8_t ca_pk[32];         /* the pinned CA key */
    const pl_rng *rng;         /* request ids */
    /* Every request is padded to pad_size (PL_CA_PAD_SIZE if 0); CRL
     * requests to crl_request_size (pad_size if 0): the CA's answer may be
     * as large as the request, so a larger request over TCP gets larger
     * chunks. */
    size_t pad_size;
    size_t crl_request_size;
    pl_time rto;               /* first retransmission timeout; default 400 ms */
    uint32_t max_tries;        /* sends of one request before giving up; default 4 */
    uint8_t *crl_buf;          /* PL_CA_OP_CRL: where the CRL is assembled */
    size_t crl_cap;
} pl_ca_client_config;

/* The state is a plain struct so drivers can embed it; its fields are not
 * an interface. The identity must outlive the client. */
typedef struct pl_ca_client {
    pl_ca_client_config cfg;
    char name[PL_NAME_MAX + 1];
    int phase;
    uint64_t id;
    uint8_t token[PL_CA_TOKEN_SIZE];
    uint32_t tries;
    pl_time rto_now;
    pl_time deadline;
    uint32_t restarts;
    pl_ca_client_err result;
    uint32_t retry_after_ms;
    uint8_t ca_code; /* the last error code the CA sent, for logs */
    pl_cert cert;
    uint64_t crl_number;
    uint32_t crl_total;
    uint32_t crl_offset;
    size_t crl_len;
} pl_ca_client;

pl_ca_client_err pl_ca_client_init(pl_ca_client *c, const pl_ca_client_config *cfg);
pl_ca_client_status pl_ca_client_start(pl_ca_client *c, pl_time now, uint8_t *out, size_t cap, size_t *out_len);
pl_ca_client_status pl_ca_client_handle(pl_ca_client *c, pl_time now, const uint8_t *resp, size_t len, uint8_t *out,
                                        size_t cap, size_t *out_len);
/* PL_TIME_NEVER when done. */
pl_time pl_ca_client_next_timeout(const pl_ca_client *c);
pl_ca_client_status pl_ca_client_tick(pl_ca_client *c, pl_time now, uint8_t *out, size_t cap, size_t *out_len);

pl_ca_client_err pl_ca_client_result(const pl_ca_client *c);
/* Register/renew: the verified certificate. */
const pl_cert *pl_ca_client_cert(const pl_ca_client *c);
/* CRL: the verified list, in cfg.crl_buf, and its length. */
size_t pl_ca_client_crl_len(const pl_ca_client *c);
/* Revoke and CRL: the CRL number the CA reported. */
uint64_t pl_ca_client_crl_number(const pl_ca_client *c);
uint32_t pl_ca_client_retry_after_ms(const pl_ca_client *c);

#endif
