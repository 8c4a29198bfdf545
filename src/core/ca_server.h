/*
 * ca_server.h - the signing authority's request handling, sans I/O.
 *
 * pl_ca_server_handle() takes the time, the source address and one request
 * and writes at most one response, never longer than the request. It keeps
 * no state for half-open registrations: the challenge is a token MACed under
 * a secret held in memory, so a flood of challenge requests costs the CA a
 * hash each and no memory. Accounts live behind the pl_ca_store function
 * table (SQLite in the real CA, memory in tests and fuzzers); the server
 * answers a registration only after the store says it is committed.
 */
#ifndef PL_CA_SERVER_H
#define PL_CA_SERVER_H

#include "ca_proto.h"
#include "parley.h"

/* ---- the account store -------------------------------------------------- */

typedef enum pl_ca_store_err {
    PL_CA_STORE_OK = 0,
    PL_CA_STORE_NOT_FOUND,
    PL_CA_STORE_EXISTS, /* the name (case-insensitively) or serial is taken */
    PL_CA_STORE_IO,     /* the database failed; nothing was committed */
} pl_ca_store_err;
const char *pl_ca_store_strerror(pl_ca_store_err err);

typedef struct pl_ca_account {
    char name[PL_NAME_MAX + 1]; /* normalised (lower case) */
    uint8_t sign_pk[32];
    uint64_t serial;    /* serial of the current certificate */
    uint64_t created;   /* Unix seconds */
    uint64_t issued_at; /* when the current certificate was issued */
    uint64_t not_after; /* when the current certificate expires */
    bool revoked;
    uint8_t cert[PL_CERT_MAX_SIZE]; /* the current certificate, encoded */
    size_t cert_len;
} pl_ca_account;

/* Every call returns only after the change is durable: the server tells the
 * user "registered" only after insert() returned OK. */
typedef struct pl_ca_store {
    void *ctx;
    pl_ca_store_err (*lookup)(void *ctx, const char *name, pl_ca_account *out);
    /* A serial never handed out before (greater than every issued one). */
    pl_ca_store_err (*next_serial)(void *ctx, uint64_t *out);
    /* Adds an account with its first certificate; EXISTS if the name is held. */
    pl_ca_store_err (*insert)(void *ctx, const pl_ca_account *acc);
    /* Records a new current certificate for an existing account. */
    pl_ca_store_err (*renew)(void *ctx, const pl_ca_account *acc);
    /* Marks the account and every certificate ever issued to it revoked and
     * advances the CRL number, which is returned. */
    pl_ca_store_err (*revoke)(void *ctx, const char *name, uint64_t *crl_number);
    /* The CRL number: it changes whenever the set of revoked serials does. */
    pl_ca_store_err (*crl_number)(void *ctx, uint64_t *number);
    /* Writes up to cap revoked serials in ascending order; *total gets how
     * many there are, so a caller with too small an array can grow it. */
    pl_ca_store_err (*revoked_serials)(void *ctx, uint64_t *out, uint32_t cap, uint32_t *total);
} pl_ca_store;

/* ---- the server ------------------------------------------------------------ */

typedef struct pl_ca_server pl_ca_server;

typedef enum pl_ca_server_err {
    PL_CA_SERVER_OK = 0,
    PL_CA_SERVER_ERR_CONFIG, /* a configuration value is out of range */
    PL_CA_SERVER_ERR_MEMORY,
} pl_ca_server_err;
const char *pl_ca_server_strerror(pl_ca_server_err err);

typedef struct pl_ca_server_config {
    uint8_t ca_pk[32];
    uint8_t ca_sk[64];
    uint64_t cert_lifetime_s;   /* default 365 days */
    uint64_t backdate_s;        /* not_before = now - backdate, for clock skew; default 300 */
    /* Token bucket per source (IPv4 address or IPv6 /64): a request costs
     * one token (a CRL chunk a fifth of one); the bucket holds `burst`
     * tokens and refills at `rate_milli` thousandths of a token a second. */
    uint32_t burst;             /* default 20 */
    uint32_t rate_milli;        /* default 2000 (two requests a second) */
    uint32_t rate_table_size;   /* sources tracked; default 4096, rounded to the set size */
} pl_ca_server_config;

/* Fills the defaults; the caller then sets the keys. */
void pl_ca_server_config_default(pl_ca_server_config *cfg);

/* What one request did, so that the driver can log it. */
typedef enum pl_ca_event_kind {
    PL_CA_EVENT_NONE = 0,   /* a read-only request (challenge, CRL) or a dropped one */
    PL_CA_EVENT_REGISTERED, /* a new account was committed */
    PL_CA_EVENT_REISSUED,   /* an idempotent retransmit got the existing certificate */
    PL_CA_EVENT_RENEWED,
    PL_CA_EVENT_REVOKED,
    PL_CA_EVENT_REFUSED,    /* an error response was sent; code says why */
    PL_CA_EVENT_DROPPED,    /* no response at all (not ours, or rate limited again) */
} pl_ca_event_kind;

typedef struct pl_ca_event {
    pl_ca_event_kind kind;
    uint8_t op;   /* PL_CA_OP_* for op requests, 0 otherwise */
    uint8_t code; /* PL_CA_CODE_* for REFUSED */
    char name[PL_NAME_MAX + 1];
    uint64_t serial;
} pl_ca_event;

/* Copies the config (including the secret key, wiped at free) and draws the
 * token secret from rng. The store table is copied; its ctx must outlive the
 * server. */
pl_ca_server *pl_ca_server_new(const pl_ca_server_config *cfg, const pl_ca_store *store, const pl_mem *mem,
                               const pl_rng *rng, pl_ca_server_err *err);
void pl_ca_server_free(pl_ca_server *s);

/* Handles one request from `from` at `now`. Writes the response into out and
 * returns its length, or 0 when nothing must be sent. The response is never
 * longer than len (anti-amplification), whatever cap is. ev may be NULL. */
size_t pl_ca_server_handle(pl_ca_server *s, pl_time now, const pl_addr *from, const uint8_t *req, size_t len,
                           uint8_t *out, size_t cap, pl_ca_event *ev);

#endif
