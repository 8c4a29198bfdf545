/*
 * mailclient.h - a node's side of the message store (docs/messages.md,
 * section 3): depositing sealed messages for others, and taking its own.
 *
 * Depositing: a sealed message (its head, and the chunks of a voicemail)
 * goes to the node's supernode part by part, a few at a time, each retried
 * on silence; the result (how many replicas took every part) comes back
 * as an event.
 *
 * Taking: when the node attaches it OPENs its mailbox with a grant for its
 * supernode; the supernode answers with how many messages wait (NOTICE),
 * and again whenever a new one arrives. The client lists them, fetches each
 * (its head, then its chunks), opens and checks it end to end, and hands it
 * up once per session as PL_MBOXC_EV_MESSAGE. The consumer acknowledges it
 * with pl_mboxc_ack once it has kept it (the daemon: in its database); only
 * then is it deleted, with a signature per message id that every replica
 * checks. Delivery is exactly once from the user's point of view when the
 * consumer also drops message ids it has seen before (pl_env_seen): a
 * crash between keeping and deleting brings the message again, and the
 * consumer must acknowledge such a duplicate too.
 *
 * A copy that does not open (altered by a replica, or garbage someone
 * deposited) is fetched again from the next replica; a message no copy of
 * which opens, seen from two replicas, is deleted and reported.
 */
#ifndef PL_MAILCLIENT_H
#define PL_MAILCLIENT_H

#include "envelope.h"
#include "mailmsg.h"
#include "parley.h"

typedef struct pl_mboxc pl_mboxc;

typedef enum pl_mboxc_event_type {
    PL_MBOXC_EV_NOTICE = 1, /* ev->status, ev->messages, ev->bytes: what waits */
    PL_MBOXC_EV_MESSAGE,    /* ev->opened, ev->body, ev->body_len: acknowledge with pl_mboxc_ack */
    PL_MBOXC_EV_DEPOSITED,  /* ev->id, ev->status, ev->stored (fewest replicas any part reached), ev->total */
    PL_MBOXC_EV_DELETED,    /* ev->id, ev->stored of ev->total replicas keep the tombstone */
    PL_MBOXC_EV_DISCARDED,  /* ev->id, ev->why: no copy opened; deleted */
} pl_mboxc_event_type;

typedef struct pl_mboxc_event {
    pl_mboxc_event_type type;
    const uint8_t *id;
    uint8_t status;          /* PL_MBOX_* */
    uint8_t stored, total;
    uint16_t messages;
    uint32_t bytes;
    const pl_env_opened *opened; /* verified: sender, content type, time */
    const uint8_t *body;     /* the whole body, chunks assembled */
    size_t body_len;
    pl_env_err why;
    pl_time now;
} pl_mboxc_event;

typedef struct pl_mboxc_io {
    void *ctx;
    /* To the node's supernode; false when there is none right now. */
    bool (*send)(void *ctx, const uint8_t *msg, size_t len, pl_time now);
    void (*event)(void *ctx, const pl_mboxc_event *ev);
} pl_mboxc_io;

#define PL_MBOXC_MAX_DEPOSITS 32   /* messages queued for deposit */
#define PL_MBOXC_WINDOW 8          /* parts in flight */
#define PL_MBOXC_TIMEOUT (6 * PL_SEC)
#define PL_MBOXC_TRIES 3
/* A grant lives an hour and is renewed every half hour. */
#define PL_MBOXC_GRANT_LIFE (3600 * PL_SEC)
#define PL_MBOXC_GRANT_RENEW (1800 * PL_SEC)

typedef struct pl_mboxc_config {
    const pl_identity *identity; /* copied */
    const uint8_t *cert;         /* own certificate, encoded */
    size_t cert_len;
    uint8_t ca_pk[32];
    const pl_rng *rng;
    const pl_mem *mem;
} pl_mboxc_config;

typedef struct pl_mboxc_stats {
    uint64_t deposits, deposited, deposit_failed, parts_sent, parts_resent;
    uint64_t opens, notices, lists, gets, delivered, bad_copies, discarded, deletes_sent, deleted;
} pl_mboxc_stats;

typedef enum pl_mboxc_err {
    PL_MBOXC_OK = 0,
    PL_MBOXC_ERR_CONFIG,
    PL_MBOXC_ERR_NOMEM,
    PL_MBOXC_ERR_FULL, /* too many deposits queued */
    PL_MBOXC_ERR_ARG,
} pl_mboxc_err;

pl_mboxc_err pl_mboxc_new(pl_mboxc **out, const pl_mboxc_config *cfg, const pl_mboxc_io *io);
void pl_mboxc_free(pl_mboxc *mc);
void pl_mboxc_set_crl(pl_mboxc *mc, const pl_crl *crl);

/* The node attached to the supernode home_pk (again): open the mailbox and
 * resend what was in flight. */
void pl_mboxc_attached(pl_mboxc *mc, const uint8_t home_pk[32], pl_time now);
void pl_mboxc_detached(pl_mboxc *mc);

/* Deposits a sealed message: its head (as pl_env_seal wrote it) and, for
 * chunks, st (whose body is copied). The result comes as
 * PL_MBOXC_EV_DEPOSITED with the message id. */
pl_mboxc_err pl_mboxc_deposit(pl_mboxc *mc, const pl_env_sealed *st, const uint8_t *head, size_t head_len,
                              pl_time now);
/* The consumer kept this message: delete it from the store. */
void pl_mboxc_ack(pl_mboxc *mc, const uint8_t id[PL_ENV_ID_SIZE], pl_time now);
/* The consumer holds this message already and wants it left in the store
 * (a voicemail stays there until its user deletes it, with pl_mboxc_ack):
 * it is not fetched again in this process. The daemon calls this at start
 * for what it kept in an earlier run. Remembers up to 1024 ids (more than
 * a box holds). */
void pl_mboxc_keep(pl_mboxc *mc, const uint8_t id[PL_ENV_ID_SIZE]);
/* List and fetch now (also done on every NOTICE with messages). */
void pl_mboxc_sync(pl_mboxc *mc, pl_time now);

/* A message from the supernode; false if not the mailbox's. */
bool pl_mboxc_message(pl_mboxc *mc, const uint8_t *msg, size_t len, pl_time now);
void pl_mboxc_tick(pl_mboxc *mc, pl_time now);
pl_time pl_mboxc_next_timeout(const pl_mboxc *mc);
pl_mboxc_stats pl_mboxc_get_stats(const pl_mboxc *mc);
const char *pl_mboxc_strerror(pl_mboxc_err err);

#endif
