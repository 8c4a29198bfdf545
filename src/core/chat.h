/*
 * chat.h - one-to-one text chat, node side (docs/messages.md, section 4).
 *
 * Every chat message and every receipt is an end-to-end envelope
 * (envelope.h), so it reads the same whichever way it travels:
 *  - straight to the contact over the users' own secure session (overlay
 *    message PL_MBOX_CHAT) when the contact is online;
 *  - into the contact's mailbox (mailclient.h) when it is not, or when the
 *    direct send is not acknowledged in time (PL_CHAT_DIRECT_TIMEOUT).
 * The receiver acknowledges with a delivery receipt, and later a read
 * receipt when its user marks the conversation read. Receipts are
 * cumulative, so a lost one is made good by the next.
 *
 * Ordering: the sender numbers its messages per conversation (a random
 * epoch, chosen when its conversation state is created, and a sequence from
 * 1). The receiver hands them up in that order; one that overtakes a
 * missing one waits up to PL_CHAT_GAP_WAIT, after which the receiver
 * reports the gap and goes on; a missing message that turns up later is
 * handed up marked late. Duplicates (the same message by both paths, or a
 * replay) are dropped by message id and sequence.
 *
 * The daemon keeps history in its database: the core emits events
 * (received, stored, delivered, read, gap, failed) and takes "mark read";
 * pl_chat_get_state / pl_chat_set_state and pl_chat_seen_add let it persist
 * and restore what the core must remember across restarts.
 *
 * Event callbacks may call pl_chat_send, pl_chat_mark_read and the other
 * requests, but not hand the core another incoming message
 * (pl_chat_direct, pl_chat_mailbox): queue those.
 */
#ifndef PL_CHAT_H
#define PL_CHAT_H

#include "envelope.h"
#include "parley.h"

typedef struct pl_chat pl_chat;

/* Text is UTF-8, no NUL, at most this many bytes (one envelope holds it). */
#define PL_CHAT_MAX_TEXT 640
#define PL_CHAT_MAX_CONVERSATIONS 4096
#define PL_CHAT_MAX_PENDING 512     /* sent and not yet delivered, all conversations */
#define PL_CHAT_MAX_HELD 128        /* received out of order, all conversations */
#define PL_CHAT_MAX_MISSING 16      /* per conversation, remembered after a gap */
#define PL_CHAT_RESEND (2 * PL_SEC)            /* a direct send unanswered: once more */
#define PL_CHAT_DIRECT_TIMEOUT (5 * PL_SEC)    /* then into the mailbox */
#define PL_CHAT_GAP_WAIT (10 * PL_SEC)
#define PL_CHAT_RECEIPT_DELAY (100 * PL_MSEC)  /* receipts for a burst go as one */
#define PL_CHAT_DEPOSIT_RETRY (30 * PL_SEC)
/* A stored message not yet acknowledged is offered directly again this
 * long after (doubling up to an hour) while there is a session: a receipt
 * lost on the way back is then sent again. */
#define PL_CHAT_PROBE (60 * PL_SEC)
#define PL_CHAT_PROBE_MAX (3600 * PL_SEC)
#define PL_CHAT_DEPOSIT_TRIES 3

typedef enum pl_chat_event_type {
    PL_CHAT_EV_RECEIVED = 1, /* peer, id, seq, text, len, sent_at, late, via_mailbox */
    PL_CHAT_EV_GAP,          /* peer, seq..seq_to did not come in time */
    PL_CHAT_EV_STORED,       /* peer, id, seq: in the peer's mailbox */
    PL_CHAT_EV_DELIVERED,    /* peer, id, seq: on the peer's device */
    PL_CHAT_EV_READ,         /* peer, seq: the peer read everything up to seq */
    PL_CHAT_EV_FAILED,       /* peer, id, seq, status (PL_MBOX_*): neither path took it */
} pl_chat_event_type;

typedef struct pl_chat_event {
    pl_chat_event_type type;
    const char *peer;
    const uint8_t *id;
    uint64_t seq, seq_to;
    const char *text;
    size_t len;
    pl_time sent_at;
    bool late;
    bool via_mailbox;
    uint8_t status;
    pl_time now;
} pl_chat_event;

typedef struct pl_chat_io {
    void *ctx;
    /* Over the session with the peer; false when there is none now. */
    bool (*send_direct)(void *ctx, const pl_cert *peer, const uint8_t *msg, size_t len, pl_time now);
    /* Into the peer's mailbox (pl_mboxc_deposit); false when it cannot be
     * taken now. Its result comes back through pl_chat_deposited. */
    bool (*deposit)(void *ctx, const pl_env_sealed *st, const uint8_t *head, size_t len, pl_time now);
    void (*event)(void *ctx, const pl_chat_event *ev);
} pl_chat_io;

typedef struct pl_chat_config {
    const pl_identity *identity; /* copied */
    const uint8_t *cert;         /* own certificate, encoded */
    size_t cert_len;
    uint8_t ca_pk[32];
    const pl_rng *rng;
    const pl_mem *mem;
    uint32_t seen_capacity;      /* message ids remembered; 0: 8192 */
} pl_chat_config;

/* What the daemon persists per conversation. */
typedef struct pl_chat_state {
    char peer[PL_NAME_MAX + 1];
    uint64_t out_epoch, out_next; /* our numbering */
    uint64_t in_epoch, in_next;   /* theirs: the next we expect */
    uint64_t read_through;        /* we read theirs up to */
} pl_chat_state;

typedef struct pl_chat_stats {
    uint64_t sent, sent_direct, resent_direct, probes, deposited, delivered, read_reports, failed;
    uint64_t received, received_direct, received_mailbox, duplicates, held, gaps, late;
    uint64_t receipts_sent, receipts_received, refused;
} pl_chat_stats;

typedef enum pl_chat_err {
    PL_CHAT_OK = 0,
    PL_CHAT_ERR_CONFIG,
    PL_CHAT_ERR_NOMEM,
    PL_CHAT_ERR_TEXT, /* empty, too long, NUL, or not UTF-8 */
    PL_CHAT_ERR_PEER, /* a certificate that does not verify, or one's own */
    PL_CHAT_ERR_FULL, /* too many messages pending, or conversations */
} pl_chat_err;

pl_chat_err pl_chat_new(pl_chat **out, const pl_chat_config *cfg, const pl_chat_io *io);
void pl_chat_free(pl_chat *chat);
void pl_chat_set_crl(pl_chat *chat, const pl_crl *crl);

/* Sends text to the peer (its certificate, as the directory gave it).
 * *id and *seq (either may be NULL) name the message in later events. */
pl_chat_err pl_chat_send(pl_chat *chat, const pl_cert *peer, const char *text, size_t len, pl_time now,
                         uint8_t id[PL_ENV_ID_SIZE], uint64_t *seq);
/* A PL_MBOX_CHAT message over the session with the peer whose key is
 * from_pk. Returns false if it is not a chat message. */
bool pl_chat_direct(pl_chat *chat, const uint8_t from_pk[32], const uint8_t *msg, size_t len, pl_time now);
/* A message the mail client delivered (PL_MBOXC_EV_MESSAGE). True when it
 * was chat's (a message or a receipt): the caller then acknowledges it to
 * the mail client, duplicates included. */
bool pl_chat_mailbox(pl_chat *chat, const pl_env_opened *opened, const uint8_t *body, size_t len, pl_time now);
/* The mail client's answer to a deposit (PL_MBOXC_EV_DEPOSITED). */
void pl_chat_deposited(pl_chat *chat, const uint8_t id[PL_ENV_ID_SIZE], uint8_t status, pl_time now);
/* A session with the peer came up: what waits for its receipt is offered
 * to it directly now. */
void pl_chat_peer_online(pl_chat *chat, const char *peer, pl_time now);
/* The user read the peer's messages up to seq: a read receipt goes out. */
void pl_chat_mark_read(pl_chat *chat, const char *peer, uint64_t through_seq, pl_time now);

void pl_chat_tick(pl_chat *chat, pl_time now);
pl_time pl_chat_next_timeout(const pl_chat *chat);

/* Persistence: state per conversation, and message ids already handled
 * (from the history) so a message the mailbox gives again is recognised. */
bool pl_chat_get_state(const pl_chat *chat, const char *peer, pl_chat_state *out);
pl_chat_err pl_chat_set_state(pl_chat *chat, const pl_chat_state *st);
void pl_chat_seen_add(pl_chat *chat, const uint8_t id[PL_ENV_ID_SIZE], pl_time sent_at, pl_time now);
/* The peer's certificate as last seen (kept by the daemon, or from the
 * directory): after a restart, receipts (a read receipt above all) can go
 * before the peer has sent anything. Refused unless it verifies; an older
 * one than the core holds is ignored. */
pl_chat_err pl_chat_set_cert(pl_chat *chat, const pl_cert *peer, pl_time now);
/* The certificate the core answers the peer to (for the daemon to keep). */
bool pl_chat_peer_cert(const pl_chat *chat, const char *peer, pl_cert *out);
/* Messages sent and not yet delivered. */
size_t pl_chat_pending(const pl_chat *chat);
/* The sealed envelope of a message sent and not yet delivered: the daemon
 * keeps it with the message, so that after a restart pl_chat_resume can
 * offer the very same message again. False when the id is not pending. */
bool pl_chat_envelope(const pl_chat *chat, const uint8_t id[PL_ENV_ID_SIZE], uint8_t *out, size_t cap,
                      size_t *len);
/* After a restart (and pl_chat_set_state): a message sent before and not
 * yet delivered is pending again, unchanged, so a receiver that has it
 * already recognises it by its id and only answers with a receipt.
 * `stored`: a replica took it; it waits for its receipt (offered directly
 * now and then, as any stored message). Otherwise it goes out again as if
 * just sent. `seq` is the number it was sent under (below the restored
 * numbering's next). */
pl_chat_err pl_chat_resume(pl_chat *chat, const pl_cert *peer, const uint8_t *env, size_t len, uint64_t seq,
                           bool stored, pl_time now);
pl_chat_stats pl_chat_get_stats(const pl_chat *chat);
const char *pl_chat_strerror(pl_chat_err err);

#endif
