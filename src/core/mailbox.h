/*
 * mailbox.h - a supernode's share of the message store: offline chat,
 * receipts and voicemail, kept as end-to-end sealed envelopes on the R
 * supernodes that follow hash(recipient) on the ring (docs/messages.md,
 * section 2). The same shape as the directory engine (directory.h).
 *
 * As a replica, the engine
 *  - keeps the envelopes (and voicemail chunks) STOREd for the names it is
 *    responsible for, within a per-recipient quota of messages and bytes,
 *    for at most PL_MBOX_TTL (30 days after they were sent);
 *  - serves LIST and GET only to a supernode holding the recipient's grant
 *    (its signed permission, checked against the CA), and tells that
 *    supernode of new messages (NEWS) while the grant lasts;
 *  - applies DELETEs signed by the recipient and keeps them as tombstones
 *    until any copy of the message would have expired anyway, so a replica
 *    that missed the delete cannot bring it back;
 *  - hands messages and tombstones over when membership changes, paced.
 *
 * For its own clients (the "home" of a node), it
 *  - takes DEPOSITs and stores them on the recipient's replicas, answering
 *    with how many took it;
 *  - OPENs a client's mailbox with the client's grant: lists every replica,
 *    merges what they hold (a tombstone anywhere wins), sends the stale
 *    ones the tombstones they missed, and tells the client how many
 *    messages wait (NOTICE); then serves the client's LIST from that view
 *    and its GETs from the replicas that hold each message, moving to the
 *    next replica on silence or refusal;
 *  - forwards the client's DELETEs to every replica.
 *
 * Supernodes never hold a key that opens an envelope: what they store and
 * pass on is ciphertext, plus the recipient's name, message ids, sizes and
 * times.
 *
 * Sans-I/O: messages in (already authenticated by the sessions), messages
 * out through pl_mbox_io, and the time.
 */
#ifndef PL_MAILBOX_H
#define PL_MAILBOX_H

#include "mailmsg.h"
#include "parley.h"

typedef struct pl_mbox pl_mbox;

typedef struct pl_mbox_io {
    void *ctx;
    bool (*send)(void *ctx, const uint8_t pk[32], const pl_addr *addr, const uint8_t *msg, size_t len,
                 pl_time now);
} pl_mbox_io;

#define PL_MBOX_DEFAULT_REPLICAS 3
/* Messages are kept this long after they were sent. */
#define PL_MBOX_TTL (30 * 86400 * PL_SEC)
#define PL_MBOX_DEFAULT_MAX_MESSAGES 200          /* per recipient */
/* Per recipient, of voicemail chunks (heads are bounded by the message
 * count): about 7 three-minute voicemails at 24 kbit/s, more with pauses. */
#define PL_MBOX_DEFAULT_MAX_BYTES (4u << 20)
#define PL_MBOX_DEFAULT_MAX_TOMBSTONES 1024       /* per recipient; the oldest go first */
#define PL_MBOX_DEFAULT_MAX_TOTAL ((uint64_t)1 << 30) /* all recipients */
#define PL_MBOX_DEFAULT_MAX_BOXES (1u << 20)
#define PL_MBOX_DEFAULT_MAX_PENDING 8192
/* A replica that has not answered within this is skipped. */
#define PL_MBOX_REPLICA_TIMEOUT (1 * PL_SEC)
/* A deposit or delete is answered within this. */
#define PL_MBOX_REQUEST_TIMEOUT (2 * PL_SEC)
/* Membership changes that come close together are handed over in one pass. */
#define PL_MBOX_HANDOVER_DELAY (1 * PL_SEC)
/* Handover is paced: this many messages every PL_MBOX_HANDOVER_TICK. */
#define PL_MBOX_HANDOVER_BURST 32
#define PL_MBOX_HANDOVER_TICK (10 * PL_MSEC)

typedef struct pl_mbox_config {
    const uint8_t *self_pk; /* this supernode's key (copied) */
    pl_addr self_addr;
    uint8_t ca_pk[32];
    const pl_rng *rng;
    const pl_mem *mem;      /* NULL: the C heap */
    uint8_t replicas;       /* R; 0: PL_MBOX_DEFAULT_REPLICAS */
    unsigned vpoints;       /* ring points per supernode; 0: the ring's default */
    uint32_t max_messages;  /* per recipient; 0: default */
    uint32_t max_bytes;     /* per recipient, chunks (parts 1..n) only; 0: default */
    uint32_t max_tombstones;/* per recipient; 0: default */
    uint64_t max_total;     /* bytes of all envelopes; 0: default */
    uint32_t max_boxes;     /* recipients; 0: default */
    uint32_t max_pending;   /* requests in flight; 0: default, at most 65535 */
} pl_mbox_config;

typedef struct pl_mbox_stats {
    /* as a replica */
    uint64_t boxes, messages, parts, tombstones, bytes; /* held now */
    uint64_t stored, duplicates, refused, quota, after_delete, not_replica, busy;
    uint64_t lists_served, gets_served, grants_refused;
    uint64_t deletes_applied, deletes_refused, expired, tombstones_expired;
    uint64_t handed_over, handover_deletes, dropped_not_replica, news_sent;
    /* for clients */
    uint64_t deposits, deposit_acks, opens, opens_refused, notices_sent;
    uint64_t client_lists, client_gets, client_deletes, replica_timeouts, repairs_sent;
} pl_mbox_stats;

typedef enum pl_mbox_err {
    PL_MBOX_E_OK = 0,
    PL_MBOX_E_CONFIG,
    PL_MBOX_E_NOMEM,
} pl_mbox_err;

pl_mbox_err pl_mbox_new(pl_mbox **out, const pl_mbox_config *cfg, const pl_mbox_io *io);
void pl_mbox_free(pl_mbox *mb);
/* The revocation list to check certificates against (the caller keeps it). */
void pl_mbox_set_crl(pl_mbox *mb, const pl_crl *crl);

/* Membership, as the supernode learns it (itself included from the start).
 * Changes are batched: data is handed over PL_MBOX_HANDOVER_DELAY after the
 * first. */
void pl_mbox_member_up(pl_mbox *mb, const uint8_t pk[32], const pl_addr *addr, pl_time now);
void pl_mbox_member_down(pl_mbox *mb, const uint8_t pk[32], pl_time now);
size_t pl_mbox_member_count(const pl_mbox *mb);

/* A message from a client attached to this supernode (the caller checked
 * that it is attached; cert is its session's certificate) or from another
 * supernode. Return false when the type is not the mailbox's. */
bool pl_mbox_client_message(pl_mbox *mb, const uint8_t pk[32], const pl_cert *cert, const pl_addr *from,
                            const uint8_t *msg, size_t len, pl_time now);
bool pl_mbox_peer_message(pl_mbox *mb, const uint8_t pk[32], const pl_addr *from, const uint8_t *msg, size_t len,
                          pl_time now);
/* A client left or was lost: its open mailbox is closed. */
void pl_mbox_client_gone(pl_mbox *mb, const uint8_t pk[32], pl_time now);

void pl_mbox_tick(pl_mbox *mb, pl_time now);
pl_time pl_mbox_next_timeout(const pl_mbox *mb);

/* What this supernode holds for a name as a replica. */
typedef struct pl_mbox_held {
    uint32_t messages, parts, tombstones;
    uint64_t bytes;
} pl_mbox_held;
bool pl_mbox_held_for(const pl_mbox *mb, const char *name, pl_mbox_held *out);
/* Whether it holds a message, or a tombstone for it. */
bool pl_mbox_has_message(const pl_mbox *mb, const char *name, const uint8_t id[16]);
bool pl_mbox_has_tombstone(const pl_mbox *mb, const char *name, const uint8_t id[16]);
/* Calls fn with every byte string the store holds (names, certificates,
 * envelopes, tombstones): what a disk dump or a memory scan would see. */
void pl_mbox_foreach_bytes(const pl_mbox *mb, void (*fn)(void *ctx, const uint8_t *bytes, size_t len), void *ctx);
/* The replicas of a name as this supernode sees them; returns how many. */
size_t pl_mbox_replicas_of(const pl_mbox *mb, const char *name, uint8_t out[][32]);
pl_mbox_stats pl_mbox_get_stats(const pl_mbox *mb);
const char *pl_mbox_strerror(pl_mbox_err err);

#endif
