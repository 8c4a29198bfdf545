/*
 * mailmsg.h - the message store's overlay messages (docs/messages.md,
 * section 2): types 0x70-0x7f of the registry in overlay.h.
 *
 * Nodes DEPOSIT envelopes with their supernode, which STOREs them on the R
 * replicas of the recipient's name. A recipient OPENs its mailbox with a
 * grant (its signed permission for its supernode to read the mailbox until
 * a time), and its supernode LISTs and GETs from the replicas on its behalf
 * and merges what they say. A recipient DELETEs what it has taken, with a
 * signature per message id that every replica checks and keeps as a
 * tombstone, so no supernode can delete someone's mail and no replica that
 * missed a delete brings the message back.
 *
 * Encoding and decoding only, through the bounded cursors of wire.h:
 * canonical, trailing bytes refused, fixed maxima, no allocation. The
 * grant and delete signatures are made and checked here too.
 */
#ifndef PL_MAILMSG_H
#define PL_MAILMSG_H

#include "envelope.h"
#include "parley.h"

enum {
    PL_MBOX_DEPOSIT = 0x70,    /* node -> its supernode: keep this envelope for its recipient */
    PL_MBOX_STORE = 0x71,      /* supernode -> replica; replica -> new replica in a handover */
    PL_MBOX_ACK = 0x72,        /* the answer to DEPOSIT, STORE and DELETE */
    PL_MBOX_OPEN = 0x73,       /* node -> its supernode: a grant to read my mailbox */
    PL_MBOX_NOTICE = 0x74,     /* supernode -> node: messages waiting */
    PL_MBOX_LIST = 0x75,       /* node -> its supernode; supernode -> replica (with the grant) */
    PL_MBOX_LIST_REPLY = 0x76,
    PL_MBOX_GET = 0x77,        /* node -> its supernode; supernode -> replica (with the grant) */
    PL_MBOX_GET_REPLY = 0x78,
    PL_MBOX_DELETE = 0x79,     /* node -> supernode -> replicas; replica -> replica in a handover */
    PL_MBOX_NEWS = 0x7a,       /* replica -> the supernode holding the box's grant: a new message */
    PL_MBOX_CHAT = 0x7b,       /* node <-> node over their own session: an envelope */
};
#define PL_MBOX_TYPE_FIRST PL_MBOX_DEPOSIT
#define PL_MBOX_TYPE_LAST PL_MBOX_CHAT

/* Status codes. */
enum {
    PL_MBOX_OK = 0,
    PL_MBOX_NOT_FOUND = 1,   /* no such message or part */
    PL_MBOX_REFUSED = 2,     /* malformed, expired, or a grant or signature that does not verify */
    PL_MBOX_QUOTA = 3,       /* the recipient's mailbox is full */
    PL_MBOX_DELETED = 4,     /* the recipient took this message already (a tombstone) */
    PL_MBOX_NOT_REPLICA = 5,
    PL_MBOX_UNREACHABLE = 6, /* no replica answered */
    PL_MBOX_BUSY = 7,        /* too many requests in flight, or the store is full */
    PL_MBOX_NOT_OPEN = 8,    /* LIST or GET before the mailbox was opened and merged */
};
#define PL_MBOX_STATUS_MAX PL_MBOX_NOT_OPEN

/* Flags. */
#define PL_MBOX_F_HANDOVER 0x01u /* STORE, DELETE: a replica passing data on, not a fresh request */
#define PL_MBOX_F_WATCH 0x02u    /* LIST: tell me of new messages while the grant is valid */
#define PL_MBOX_F_MORE 0x04u     /* LIST_REPLY: another page follows */
#define PL_MBOX_F_ALL (PL_MBOX_F_HANDOVER | PL_MBOX_F_WATCH | PL_MBOX_F_MORE)

/* List entry flags. */
#define PL_MBOX_E_TOMBSTONE 0x01u

#define PL_MBOX_MAX_ENTRIES 32 /* in one LIST_REPLY */
#define PL_MBOX_MAX_DELETES 12 /* ids in one DELETE */
/* A replica fills a LIST_REPLY page up to this many bytes of entries. */
#define PL_MBOX_PAGE_BYTES 1000
#define PL_MBOX_ENTRY_SIZE 31        /* id, flags, parts u16, bytes u32, stored_at u64 */
#define PL_MBOX_TOMB_ENTRY_SIZE 81   /* id, flags, signature */
/* A grant lives at most this long (seconds). */
#define PL_MBOX_GRANT_MAX_LIFE 7200u
#define PL_MBOX_GRANT_SKEW 120u
#define PL_MBOX_GRANT_MAX_SIZE (2 + PL_CERT_MAX_SIZE + 32 + 8 + 8 + 64)
/* The largest mailbox message: a STORE of the largest envelope, or a DELETE
 * with a certificate and PL_MBOX_MAX_DELETES signed ids. */
#define PL_MBOX_MSG_MAX 1300

/* A recipient's permission for one supernode (home_pk) to read its mailbox
 * from issued_at to expires_at (Unix seconds), signed with the key its
 * certificate certifies. */
typedef struct pl_mbox_grant {
    const uint8_t *cert; /* encoded; points into the decoded message */
    size_t cert_len;
    uint8_t home_pk[32];
    uint64_t issued_at, expires_at;
    uint8_t sig[64];
} pl_mbox_grant;

typedef struct pl_mbox_entry {
    uint8_t id[PL_ENV_ID_SIZE];
    uint8_t flags;      /* PL_MBOX_E_* */
    uint16_t parts;     /* parts held */
    uint32_t bytes;     /* their size */
    uint64_t stored_at; /* Unix seconds */
    uint8_t sig[64];    /* a tombstone's delete signature */
} pl_mbox_entry;

typedef struct pl_mbox_delete {
    uint8_t id[PL_ENV_ID_SIZE];
    uint8_t sig[64];
} pl_mbox_delete;

/* One structure for every mailbox message; which fields travel depends on
 * the type (the table in docs/messages.md). Pointers point into the
 * decoded buffer. */
typedef struct pl_mbox_msg {
    uint8_t type;
    uint32_t req;
    uint8_t status;
    uint8_t flags;
    uint8_t count, total;  /* ACK: replicas that took it, replicas asked */
    uint16_t messages;     /* NOTICE */
    uint32_t bytes;        /* NOTICE */
    uint8_t id[PL_ENV_ID_SIZE]; /* GET, NEWS */
    uint16_t part;         /* GET */
    uint8_t attempt;       /* GET: copies to skip */
    uint8_t after[PL_ENV_ID_SIZE]; /* LIST: ids above this */
    char name[PL_NAME_MAX + 1];    /* NEWS */
    const uint8_t *env;    /* DEPOSIT, STORE, GET_REPLY (may be absent), CHAT */
    size_t env_len;
    bool has_grant;        /* OPEN (always), LIST and GET (supernode to replica) */
    pl_mbox_grant grant;
    uint8_t n_entries;     /* LIST_REPLY */
    pl_mbox_entry entries[PL_MBOX_MAX_ENTRIES];
    const uint8_t *cert;   /* DELETE: the recipient's certificate */
    size_t cert_len;
    uint8_t n_deletes;     /* DELETE */
    pl_mbox_delete deletes[PL_MBOX_MAX_DELETES];
} pl_mbox_msg;

typedef enum pl_mbox_msg_err {
    PL_MBOX_MSG_OK = 0,
    PL_MBOX_MSG_MALFORMED,
} pl_mbox_msg_err;

/* Returns the size written, or 0 when buf is too small or a field is out of
 * range. */
size_t pl_mbox_encode(uint8_t *buf, size_t cap, const pl_mbox_msg *m);
/* Takes the whole message, type byte included. */
pl_mbox_msg_err pl_mbox_decode(pl_mbox_msg *m, const uint8_t *buf, size_t len);
/* The size an entry takes in a LIST_REPLY. */
size_t pl_mbox_entry_size(const pl_mbox_entry *e);

/* Grants: signed by the recipient over "parley-mbox-grnt" || home_pk ||
 * issued_at || expires_at || name length || name. */
bool pl_mbox_grant_sign(pl_mbox_grant *g, const pl_identity *id, const uint8_t *cert, size_t cert_len,
                        const uint8_t home_pk[32], uint64_t issued_at, uint64_t expires_at);
/* Checks the certificate (CA, CRL, now_s), the signature, the window, and
 * that home_pk is the supernode asking. Fills *cert. */
bool pl_mbox_grant_verify(const pl_mbox_grant *g, const uint8_t ca_pk[32], const pl_crl *crl, uint64_t now_s,
                          const uint8_t asking_pk[32], pl_cert *cert);
/* Encoded grants, as they travel (and as a supernode keeps one). */
size_t pl_mbox_grant_encode(uint8_t *buf, size_t cap, const pl_mbox_grant *g);
bool pl_mbox_grant_decode(pl_mbox_grant *g, const uint8_t *buf, size_t len);

/* Delete signatures: over "parley-mbox-del1" || name length || name || id. */
void pl_mbox_delete_sign(uint8_t sig[64], const pl_identity *id, const char *name, const uint8_t msg_id[16]);
bool pl_mbox_delete_verify(const uint8_t sig[64], const pl_cert *cert, const uint8_t msg_id[16]);

#endif
