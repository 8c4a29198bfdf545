/*
 * msgstore.h - a user's chat history and voicemail, on the user's own
 * machine in SQLite (messages.db in the home directory: 0600, WAL,
 * synchronous FULL, secure_delete so that deleted voicemail is overwritten
 * in the file).
 *
 * What the daemon keeps here, and why:
 *  - every chat line either way, with its delivery state (sending, stored
 *    in the peer's mailbox, delivered, read by the peer, failed) or its
 *    read mark here; a message id appears once (the table's key is the
 *    envelope's id), which is the last guard against a duplicate;
 *  - per conversation, the chat engine's numbering (pl_chat_state) and the
 *    peer's certificate, so that a restarted daemon goes on where it
 *    stopped and can send receipts before the peer speaks;
 *  - the sealed envelope of each outgoing message until it is delivered,
 *    so that after a restart the very same message goes out again
 *    (pl_chat_resume), and the receiver recognises it if it has it;
 *  - voicemail received: its Opus body, who left it and when, whether it
 *    was heard, and whether its user deleted it (the store is then told;
 *    the row stays, without the body, until the store confirmed, and a
 *    month after that, so that a copy the store hands out again is known).
 *
 * Message ids are 16 bytes; times are microseconds since the epoch.
 */
#ifndef PL_MSGSTORE_H
#define PL_MSGSTORE_H

#include "chat.h"
#include "parley.h"

typedef struct pl_msgstore pl_msgstore;

typedef enum pl_msgstore_err {
    PL_MSGSTORE_OK = 0,
    PL_MSGSTORE_ERR_DB,        /* SQLite failed; pl_msgstore_last_error says why */
    PL_MSGSTORE_ERR_EXISTS,    /* that message id is there already */
    PL_MSGSTORE_ERR_NOT_FOUND,
    PL_MSGSTORE_ERR_AMBIGUOUS, /* an id prefix that names more than one */
    PL_MSGSTORE_ERR_ARG,
} pl_msgstore_err;

/* Delivery states. Outgoing ones only move forward (SENDING < STORED <
 * DELIVERED < READ; FAILED only from SENDING or STORED). */
enum {
    PL_MSG_SENDING = 0,
    PL_MSG_STORED = 1,
    PL_MSG_DELIVERED = 2,
    PL_MSG_READ = 3,
    PL_MSG_FAILED = 4,
    PL_MSG_UNREAD = 10, /* incoming */
    PL_MSG_SEEN = 11,   /* incoming, read here */
};

typedef struct pl_msg {
    uint8_t id[PL_ENV_ID_SIZE];
    char peer[PL_NAME_MAX + 1];
    bool outgoing;
    uint64_t epoch, seq;
    pl_time sent_at; /* by the sender's clock */
    pl_time at;      /* sent from here, or arrived here */
    uint8_t state;
    bool via_mailbox, late;
    char text[PL_CHAT_MAX_TEXT + 1];
    size_t text_len;
} pl_msg;

pl_msgstore_err pl_msgstore_open(pl_msgstore **out, const char *path);
void pl_msgstore_close(pl_msgstore *ms);
const char *pl_msgstore_last_error(const pl_msgstore *ms);

/* ---- conversations -------------------------------------------------------------------- */

/* Saves the chat engine's state for st->peer; a certificate (cert_len > 0)
 * replaces the one kept. */
pl_msgstore_err pl_msgstore_put_conv(pl_msgstore *ms, const pl_chat_state *st, const uint8_t *cert, size_t cert_len);
/* cert: PL_CERT_MAX_SIZE bytes, or NULL; *cert_len 0 when none is kept. */
pl_msgstore_err pl_msgstore_get_conv(pl_msgstore *ms, const char *peer, pl_chat_state *st, uint8_t *cert,
                                     size_t *cert_len);
pl_msgstore_err pl_msgstore_each_conv(pl_msgstore *ms,
                                      bool (*fn)(void *ctx, const pl_chat_state *st, const uint8_t *cert,
                                                 size_t cert_len),
                                      void *ctx);

/* ---- chat messages ----------------------------------------------------------------------- */

/* Adds a message and (st not NULL) saves its conversation's state, in one
 * transaction. env: an outgoing message's sealed envelope, kept until it is
 * delivered. EXISTS (nothing changed) when the id is known. */
pl_msgstore_err pl_msgstore_add(pl_msgstore *ms, const pl_msg *m, const uint8_t *env, size_t env_len,
                                const pl_chat_state *st);
/* An outgoing message's new state (ignored unless it moves forward);
 * DELIVERED, READ and FAILED drop the envelope. */
pl_msgstore_err pl_msgstore_set_state(pl_msgstore *ms, const uint8_t id[PL_ENV_ID_SIZE], uint8_t state);
/* The peer read our messages of this numbering up to through_seq. */
pl_msgstore_err pl_msgstore_peer_read(pl_msgstore *ms, const char *peer, uint64_t epoch, uint64_t through_seq,
                                      int *changed);
/* Our user read the peer's messages: marks them read; *through_seq gets
 * the highest sequence number of those in `epoch` (0: none), for the read
 * receipt. */
pl_msgstore_err pl_msgstore_mark_read(pl_msgstore *ms, const char *peer, uint64_t epoch, uint64_t *through_seq,
                                      int *changed);
pl_msgstore_err pl_msgstore_get(pl_msgstore *ms, const uint8_t id[PL_ENV_ID_SIZE], pl_msg *out);
/* The last `limit` messages with a peer (0: all), oldest first. */
pl_msgstore_err pl_msgstore_history(pl_msgstore *ms, const char *peer, uint32_t limit,
                                    bool (*fn)(void *ctx, const pl_msg *m), void *ctx);

typedef struct pl_msgstore_summary {
    char peer[PL_NAME_MAX + 1];
    uint32_t messages, unread;
    pl_msg last;
} pl_msgstore_summary;

/* Every conversation with messages, the most recent first. */
pl_msgstore_err pl_msgstore_conversations(pl_msgstore *ms, bool (*fn)(void *ctx, const pl_msgstore_summary *s),
                                          void *ctx);
/* Outgoing messages not yet delivered that still have their envelope, in
 * the order they were sent. */
pl_msgstore_err pl_msgstore_pending(pl_msgstore *ms,
                                    bool (*fn)(void *ctx, const pl_msg *m, const uint8_t *env, size_t env_len),
                                    void *ctx);
/* The ids of the newest `limit` incoming messages, oldest first (to
 * refill the engine's memory of ids seen). */
pl_msgstore_err pl_msgstore_recent_ids(pl_msgstore *ms, uint32_t limit,
                                       bool (*fn)(void *ctx, const uint8_t id[PL_ENV_ID_SIZE], pl_time sent_at),
                                       void *ctx);
uint32_t pl_msgstore_unread(pl_msgstore *ms);

/* ---- voicemail ------------------------------------------------------------------------------ */

enum {
    PL_VMAIL_KEPT = 0,     /* here and in the store */
    PL_VMAIL_DELETING = 1, /* deleted by the user; the store not yet confirmed */
    PL_VMAIL_GONE = 2,     /* the store confirmed; the id is remembered a while */
};

typedef struct pl_vmail {
    uint8_t id[PL_ENV_ID_SIZE];
    char peer[PL_NAME_MAX + 1];
    pl_time sent_at, received_at;
    uint32_t duration_ms;
    uint32_t body_len;
    bool heard;
    uint8_t state;
} pl_vmail;

/* EXISTS when the id is known (in any state). */
pl_msgstore_err pl_msgstore_vm_add(pl_msgstore *ms, const pl_vmail *v, const uint8_t *body, size_t len);
/* *body (may be NULL) is malloc'ed; NULL when the voicemail was deleted. */
pl_msgstore_err pl_msgstore_vm_get(pl_msgstore *ms, const uint8_t id[PL_ENV_ID_SIZE], pl_vmail *out, uint8_t **body);
/* The kept voicemail whose id starts with these hex digits (at least 4). */
pl_msgstore_err pl_msgstore_vm_find(pl_msgstore *ms, const char *hex_prefix, uint8_t id[PL_ENV_ID_SIZE]);
/* Every voicemail in `state`, oldest first. */
pl_msgstore_err pl_msgstore_vm_each(pl_msgstore *ms, uint8_t state, bool (*fn)(void *ctx, const pl_vmail *v),
                                    void *ctx);
pl_msgstore_err pl_msgstore_vm_heard(pl_msgstore *ms, const uint8_t id[PL_ENV_ID_SIZE]);
/* KEPT -> DELETING (the body is erased), DELETING -> GONE. */
pl_msgstore_err pl_msgstore_vm_set_state(pl_msgstore *ms, const uint8_t id[PL_ENV_ID_SIZE], uint8_t state);
/* Kept voicemail: how many, and how many not heard yet. */
void pl_msgstore_vm_count(pl_msgstore *ms, uint32_t *total, uint32_t *unheard);
/* Forgets GONE entries whose message was sent before `before`. */
pl_msgstore_err pl_msgstore_vm_prune(pl_msgstore *ms, pl_time before);

const char *pl_msgstore_strerror(pl_msgstore_err err);

#endif
