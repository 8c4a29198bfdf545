/*
 * envelope.h - end-to-end sealed messages between two users
 * (docs/messages.md, section 1).
 *
 * An envelope carries a chat message, a receipt or a voicemail from a sender
 * S to a recipient R so that only R can read it and R can tell that S wrote
 * it, whatever path it took: straight over the users' session, or through
 * the supernodes' mailbox, which can file it by recipient and message id but
 * can neither read, forge nor alter it.
 *
 *  - A fresh X25519 key pair per message; its Diffie-Hellman with R's
 *    certified X25519 key gives the message key (XChaCha20-Poly1305), so
 *    only the holder of R's key opens it, and a compromise of S's keys later
 *    opens nothing.
 *  - Inside the ciphertext: S's certificate, the content type, the body (or
 *    the key of its chunks) and S's Ed25519 signature over everything,
 *    the outer header, the ephemeral key and R's X25519 key included. R
 *    checks the certificate against the pinned CA: a supernode that seals
 *    something to R in S's name cannot sign it, and a message S sealed to R
 *    cannot be passed off as sealed to someone else.
 *  - The outer header (version, message id, part, time, recipient) is
 *    authenticated as associated data, so a flipped bit anywhere is refused.
 *
 * A message whose body does not fit one envelope (a voicemail: three
 * minutes of Opus is about 0.5 MB) is split: the head envelope carries a
 * random content key and the number of chunks, and each chunk is an
 * envelope of its own (part 1..n) holding up to PL_ENV_CHUNK_BODY bytes
 * sealed under that key. Every envelope fits one overlay message.
 *
 * Replays: the recipient remembers message ids (pl_env_seen) for as long as
 * an envelope is accepted at all (PL_ENV_MAX_AGE), so a message delivered
 * twice, by two paths or by a replaying supernode, is recognised.
 *
 * The module keeps no state, reads no clock and makes no system calls.
 */
#ifndef PL_ENVELOPE_H
#define PL_ENVELOPE_H

#include "keymap.h"
#include "parley.h"

#define PL_ENV_VERSION 1
#define PL_ENV_ID_SIZE 16
/* The largest envelope, so that a mailbox message carrying one (about 10
 * bytes more) fits a session payload (PL_SEC_MAX_PAYLOAD) with room. */
#define PL_ENV_MAX_SIZE 1100
/* Body bytes per chunk; every chunk but the last is exactly this long. */
#define PL_ENV_CHUNK_BODY 1024
#define PL_ENV_MAX_CHUNKS 1024
#define PL_ENV_MAX_BODY ((size_t)PL_ENV_MAX_CHUNKS * PL_ENV_CHUNK_BODY)
/* Outer header: version, id, part, sent_at, name length, then the name. */
#define PL_ENV_HEADER_FIXED 28
#define PL_ENV_HEADER_MAX (PL_ENV_HEADER_FIXED + PL_NAME_MAX)
#define PL_ENV_TAG_SIZE 16
/* A head without its certificate and inline body: header, ephemeral key,
 * tag, and the plaintext's fixed fields and signature. */
#define PL_ENV_HEAD_FIXED (PL_ENV_HEADER_MAX + 32 + PL_ENV_TAG_SIZE + 4 + 6 + 2 + 64)
/* The longest body carried in the head itself: what is left of the largest
 * envelope with the largest certificate. Longer bodies go in chunks. */
#define PL_ENV_INLINE_MAX (PL_ENV_MAX_SIZE - PL_ENV_HEAD_FIXED - PL_CERT_MAX_SIZE)
/* Envelopes older than this are refused; the mailbox keeps them 30 days. */
#define PL_ENV_MAX_AGE (31 * 86400 * PL_SEC)
/* How far in the future sent_at may lie, for clocks that disagree. */
#define PL_ENV_MAX_SKEW (600 * PL_SEC)

/* Content types. Others decode (a newer sender may know more); the
 * receiving application ignores what it does not know. */
enum { PL_ENV_CHAT = 1, PL_ENV_VOICEMAIL = 2, PL_ENV_RECEIPT = 3 };

typedef enum pl_env_err {
    PL_ENV_OK = 0,
    PL_ENV_ERR_MALFORMED,       /* not a canonical envelope */
    PL_ENV_ERR_WRONG_RECIPIENT, /* addressed to another name */
    PL_ENV_ERR_AUTH,            /* does not decrypt: altered, or sealed to another key */
    PL_ENV_ERR_CERT,            /* the sender's certificate is refused (wrong CA, expired, revoked) */
    PL_ENV_ERR_SIGNATURE,       /* not signed by the certificate's key: a forged sender */
    PL_ENV_ERR_TOO_OLD,         /* sent_at older than PL_ENV_MAX_AGE, or below the replay floor */
    PL_ENV_ERR_FUTURE,          /* sent_at beyond now + PL_ENV_MAX_SKEW */
    PL_ENV_ERR_REPLAY,          /* pl_env_seen: this message id was seen */
    PL_ENV_ERR_WRONG_MESSAGE,   /* a chunk of another message, or a part out of range */
    PL_ENV_ERR_TOO_BIG,         /* a body over PL_ENV_MAX_BODY */
    PL_ENV_ERR_BUFFER,          /* an output buffer too small */
    PL_ENV_ERR_ARG,             /* a bad argument: a certificate that does not decode, a bad name */
    PL_ENV_ERR_NOMEM,
} pl_env_err;

/* The outer header, which anyone (a store) can read. */
typedef struct pl_env_header {
    uint8_t version;
    uint8_t id[PL_ENV_ID_SIZE];
    uint16_t part;          /* 0: the head; 1..n: chunks */
    pl_time sent_at;        /* the sender's clock, microseconds since the epoch */
    char recipient[PL_NAME_MAX + 1];
    size_t header_len;      /* bytes of the outer header */
    const uint8_t *eph_pk;  /* the head's ephemeral key, NULL for a chunk */
    const uint8_t *ct;      /* the ciphertext, tag included */
    size_t ct_len;
} pl_env_header;

/* Reads and checks the outer header of any envelope (no key needed): what a
 * store files it by. Points into env. */
pl_env_err pl_env_peek(pl_env_header *h, const uint8_t *env, size_t len);

/* What the sender keeps to seal the chunks of a message after its head.
 * Holds the content key: wipe it with pl_env_sealed_wipe. The body is not
 * copied and must outlive the sealing of the chunks. */
typedef struct pl_env_sealed {
    uint8_t id[PL_ENV_ID_SIZE];
    char recipient[PL_NAME_MAX + 1];
    pl_time sent_at;
    uint8_t content_type;
    uint16_t n_chunks;
    const uint8_t *body;
    size_t body_len;
    uint8_t key[32];
} pl_env_sealed;

/* Seals a message from `sender` (its identity and encoded certificate) to
 * `recipient` (its verified certificate): writes the head into out
 * (PL_ENV_MAX_SIZE is always enough) and fills st for the chunks. The id is
 * random; sent_at is `now`. */
pl_env_err pl_env_seal(pl_env_sealed *st, uint8_t *out, size_t cap, size_t *out_len, const pl_identity *sender,
                       const uint8_t *sender_cert, size_t sender_cert_len, const pl_cert *recipient,
                       uint8_t content_type, const uint8_t *body, size_t body_len, pl_time now, const pl_rng *rng);
/* Chunk `part` (1..st->n_chunks) of a sealed message. */
pl_env_err pl_env_seal_chunk(const pl_env_sealed *st, uint16_t part, uint8_t *out, size_t cap, size_t *out_len);
void pl_env_sealed_wipe(pl_env_sealed *st);

/* An opened head. Holds the content key and the plaintext: wipe it with
 * pl_env_opened_wipe. */
typedef struct pl_env_opened {
    uint8_t id[PL_ENV_ID_SIZE];
    pl_time sent_at;
    char recipient[PL_NAME_MAX + 1];
    uint8_t content_type;
    pl_cert sender;            /* verified against the CA */
    uint16_t n_chunks;         /* 0: the body is inline */
    uint32_t body_len;
    const uint8_t *body;       /* inline body (n_chunks == 0), points into plain */
    uint8_t key[32];           /* the chunks' key */
    uint8_t plain[PL_ENV_MAX_SIZE];
} pl_env_opened;

/* The recipient, to open: its identity and its own name. */
typedef struct pl_env_recipient {
    const pl_identity *identity;
    const char *name;
} pl_env_recipient;

/* Opens a head: checks the header, that it is addressed to me, decrypts,
 * checks the sender's certificate against ca_pk (and crl, when given) at
 * the time it was sent, the signature, and the age. *cert_err (may be NULL)
 * says why a certificate was refused. */
pl_env_err pl_env_open(pl_env_opened *out, const uint8_t *env, size_t len, const pl_env_recipient *me,
                       const uint8_t ca_pk[32], const pl_crl *crl, pl_time now, pl_cert_err *cert_err);
/* Opens a chunk of an opened message into body (cap at least
 * PL_ENV_CHUNK_BODY); *part says which, *body_len how long it is. */
pl_env_err pl_env_open_chunk(const pl_env_opened *head, const uint8_t *env, size_t len, uint8_t *body, size_t cap,
                             uint16_t *part, size_t *body_len);
void pl_env_opened_wipe(pl_env_opened *o);

/* Where chunk `part` goes in the body, and how long it is. */
size_t pl_env_chunk_offset(uint16_t part);
size_t pl_env_chunk_len(uint32_t body_len, uint16_t n_chunks, uint16_t part);
/* How many chunks a body of this length takes (0: inline). */
uint16_t pl_env_chunks_for(size_t body_len);

/* ---- the message ids a recipient has seen ------------------------------------------ */

/* A bounded set of (id, sent_at). When full it forgets the oldest entry and
 * raises a floor: from then on anything sent at or before the floor is
 * refused as TOO_OLD, so a forgotten id can never come back as new. Entries
 * older than PL_ENV_MAX_AGE go first, since pl_env_open refuses those
 * anyway. The daemon persists ids (its history) and adds them back at
 * start. */
typedef struct pl_env_seen_entry {
    uint8_t id[PL_ENV_ID_SIZE];
    pl_time sent_at;
    bool used;
} pl_env_seen_entry;

typedef struct pl_env_seen {
    pl_env_seen_entry *e;
    uint32_t cap, count;
    pl_time floor;
    pl_keymap index; /* id (zero-padded to 32 bytes) -> entry */
    const pl_mem *mem;
} pl_env_seen;

pl_env_err pl_env_seen_init(pl_env_seen *s, uint32_t capacity, const pl_mem *mem, const pl_rng *rng);
void pl_env_seen_free(pl_env_seen *s);
/* OK for an id not seen and not too old; REPLAY or TOO_OLD otherwise. */
pl_env_err pl_env_seen_check(const pl_env_seen *s, const uint8_t id[PL_ENV_ID_SIZE], pl_time sent_at, pl_time now);
/* Remembers an id (after the message was handled). */
pl_env_err pl_env_seen_add(pl_env_seen *s, const uint8_t id[PL_ENV_ID_SIZE], pl_time sent_at, pl_time now);

const char *pl_env_strerror(pl_env_err err);

#endif
