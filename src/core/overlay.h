/*
 * overlay.h - the messages nodes and supernodes exchange (docs/overlay.md).
 *
 * Every overlay message travels as the payload of a secure session, so its
 * sender is authenticated before a byte of it is read here. The first byte
 * is the message type; the registry below assigns ranges to modules so one
 * session can carry them all and a driver can dispatch on that byte:
 *
 *   0x01-0x0f  attaching a node to its supernode, keepalives (this file)
 *   0x10-0x1f  supernode membership (members.h)
 *   0x20-0x2f  the directory: publish, store, look up (this file)
 *   0x30-0x3f  presence (this file)
 *   0x40-0x4f  qualification and promotion (this file)
 *   0x50-0x5f  call signalling (call.h)
 *   0x60-0x6f  paths: candidates, hole punching, relays
 *   0x70-0x7f  the message store: chat and voicemail
 *   0x80-0x8f  media (voice packets, receiver reports)
 *
 * This module only encodes and decodes. Decoders read through the bounded
 * cursors of wire.h, refuse trailing bytes and out-of-range values, and
 * never allocate: variable parts (lists of supernodes) go into fixed arrays
 * with explicit maxima.
 */
#ifndef PL_OVERLAY_H
#define PL_OVERLAY_H

#include "parley.h"

enum {
    PL_OVL_ATTACH = 0x01,
    PL_OVL_ATTACH_CHALLENGE = 0x02,
    PL_OVL_ATTACH_PROOF = 0x03,
    PL_OVL_ATTACH_OK = 0x04,
    PL_OVL_ATTACH_REFUSED = 0x05,
    PL_OVL_KEEPALIVE = 0x06,
    PL_OVL_KEEPALIVE_ACK = 0x07,
    PL_OVL_DETACH = 0x08,
    PL_OVL_REDIRECT = 0x09,
};

/* Conference control between users (conference.h, docs/messages.md
 * section 5.4): no core's; the stack hands it to its driver. */
#define PL_OVL_CONF_FIRST 0x90
#define PL_OVL_CONF_LAST 0x9f

/* The directory (docs/directory.md) and presence. */
enum {
    PL_OVL_PUBLISH = 0x20,      /* node -> its supernode: my record */
    PL_OVL_PUBLISH_ACK = 0x21,  /* supernode -> node: how many replicas took it */
    PL_OVL_STORE = 0x22,        /* supernode -> replica: keep this record */
    PL_OVL_STORE_ACK = 0x23,
    PL_OVL_LOOKUP = 0x24,       /* node -> its supernode: whose record is this name's? */
    PL_OVL_LOOKUP_REPLY = 0x25,
    PL_OVL_FETCH = 0x26,        /* supernode -> replica */
    PL_OVL_FETCH_REPLY = 0x27,
    PL_OVL_SUBSCRIBE = 0x30,    /* node -> its supernode: tell me about these names */
    PL_OVL_UNSUBSCRIBE = 0x31,
    PL_OVL_PRESENCE = 0x32,     /* supernode -> node: a watched user's record, or offline */
    PL_OVL_WATCH = 0x33,        /* supernode -> replica: tell me when this record changes */
    PL_OVL_UNWATCH = 0x34,
    PL_OVL_NOTIFY = 0x35,       /* replica -> watching supernode */
    PL_OVL_OFFLINE = 0x36,      /* a user's supernode -> replicas: it lost the user */
};

/* Status codes of the directory's replies. */
enum {
    PL_DIR_OK = 0,
    PL_DIR_NOT_FOUND = 1,   /* no record for the name */
    PL_DIR_REFUSED = 2,     /* the record does not verify, or is not the sender's */
    PL_DIR_STALE = 3,       /* a newer record is held */
    PL_DIR_UNREACHABLE = 4, /* no replica answered */
    PL_DIR_NOT_REPLICA = 5, /* asked a supernode that does not hold the name */
    PL_DIR_BAD_NAME = 6,
    PL_DIR_BUSY = 7,        /* too many requests in flight */
};
#define PL_DIR_STATUS_MAX PL_DIR_BUSY

/* Directory flags. */
#define PL_DIR_F_OFFLINE 0x01u  /* the user's supernode lost it (NOTIFY, PRESENCE, replies) */
#define PL_DIR_F_HANDOVER 0x02u /* STORE: a replica passing a record on, not a fresh publish */
#define PL_DIR_F_ALL (PL_DIR_F_OFFLINE | PL_DIR_F_HANDOVER)

/* One structure for every directory and presence message but SUBSCRIBE;
 * which fields travel depends on the type (docs/directory.md). record
 * points into the decoded message and is not decoded here. */
typedef struct pl_ovl_dir {
    uint8_t type;
    uint32_t req;
    uint8_t status;
    uint8_t flags;
    uint8_t index; /* LOOKUP: replicas to skip; LOOKUP_REPLY: which replica answered */
    uint8_t count; /* PUBLISH_ACK: replicas that stored; LOOKUP_REPLY: replicas in all */
    uint64_t seq;  /* OFFLINE: the sequence number of the record it ends */
    char name[PL_NAME_MAX + 1];
    const uint8_t *record;
    size_t record_len;
} pl_ovl_dir;

#define PL_OVL_MAX_NAMES 32 /* names in one SUBSCRIBE */
typedef struct pl_ovl_names {
    uint8_t type; /* SUBSCRIBE or UNSUBSCRIBE */
    uint8_t n;
    char names[PL_OVL_MAX_NAMES][PL_NAME_MAX + 1];
} pl_ovl_names;

#define PL_OVL_VERSION 1
#define PL_OVL_MAX_PEERS 16 /* supernodes listed in one message */

/* A supernode as nodes know it: its signing key and where it listens. */
typedef struct pl_ovl_peer {
    uint8_t pk[32];
    pl_addr addr;
} pl_ovl_peer;

/* Qualification and promotion (docs/overlay.md, section 7). */
enum {
    PL_OVL_QUALIFY_PROBE = 0x40, /* supernode -> another supernode: probe this node, unsolicited */
    PL_OVL_QUALIFY_SEEN = 0x41,  /* node -> its supernode: this probe reached me */
    PL_OVL_PROMOTE = 0x42,       /* supernode -> qualified node: become a supernode, please */
};
/* The probe itself is a bare datagram, outside any session (it must come
 * from an address the node never contacted): 0xF2, "PLQ", nonce[16]. */
#define PL_OVL_PROBE_BYTE 0xF2
#define PL_OVL_PROBE_SIZE 20
#define PL_OVL_PROBE_NONCE 16

typedef struct pl_ovl_qualify {
    uint8_t type;                      /* PROBE, SEEN or PROMOTE */
    uint8_t nonce[PL_OVL_PROBE_NONCE]; /* PROBE, SEEN */
    pl_addr target;                    /* PROBE: where to send it */
    uint8_t n;                         /* PROMOTE: supernodes to join through */
    pl_ovl_peer seeds[4];
} pl_ovl_qualify;


/* ATTACH flags. */
#define PL_OVL_ATTACH_F_CANDIDATE 0x01u /* may be asked to become a supernode */
#define PL_OVL_ATTACH_F_PRIVATE 0x02u   /* location privacy: publish no address */
#define PL_OVL_ATTACH_F_ALL (PL_OVL_ATTACH_F_CANDIDATE | PL_OVL_ATTACH_F_PRIVATE)

/* What a node says about itself when it attaches; the supernode uses the
 * last three for qualification, and checks reachability itself. */
typedef struct pl_ovl_attach {
    uint8_t version;
    uint8_t flags;
    uint32_t capabilities; /* PL_CAP_* of record.h */
    uint32_t uptime_s;
    uint32_t up_kbps, down_kbps;
    uint32_t memory_mb;
} pl_ovl_attach;

#define PL_OVL_NONCE_SIZE 32
#define PL_OVL_SIG_SIZE 64

typedef struct pl_ovl_attach_ok {
    uint16_t keepalive_s;   /* how often the node must say it is there */
    pl_addr observed;       /* the node's address as the supernode sees it */
    uint8_t n_standby;
    pl_ovl_peer standby[2]; /* where to go if this supernode is lost */
    uint8_t n_hosts;
    pl_ovl_peer hosts[PL_OVL_MAX_PEERS]; /* other supernodes, for the host cache */
} pl_ovl_attach_ok;

typedef enum pl_ovl_refusal {
    PL_OVL_REFUSED_OVERLOADED = 1, /* try one of the redirects */
    PL_OVL_REFUSED_REVOKED = 2,
    PL_OVL_REFUSED_BAD_PROOF = 3,
    PL_OVL_REFUSED_NOT_SERVING = 4, /* no longer a supernode */
    PL_OVL_REFUSED_VERSION = 5,
} pl_ovl_refusal;
#define PL_OVL_REFUSED_MAX PL_OVL_REFUSED_VERSION

typedef struct pl_ovl_refused {
    uint8_t reason;         /* pl_ovl_refusal */
    uint16_t retry_after_s; /* do not ask this supernode again before */
    uint8_t n_redirect;
    pl_ovl_peer redirect[PL_OVL_MAX_PEERS];
} pl_ovl_refused;

/* REDIRECT: the supernode sheds this node (overload or demotion). */
typedef struct pl_ovl_redirect {
    uint8_t n;
    pl_ovl_peer to[PL_OVL_MAX_PEERS];
} pl_ovl_redirect;

typedef enum pl_ovl_err {
    PL_OVL_OK = 0,
    PL_OVL_ERR_MALFORMED, /* wrong type, size, or a field out of range */
    PL_OVL_ERR_BUFFER,    /* the output buffer is too small */
} pl_ovl_err;

/* The bytes an attach proof signs: a context string, the supernode's key,
 * the node's key and the supernode's nonce. Binding both keys stops a
 * supernode from replaying a node's proof to another supernode. */
#define PL_OVL_PROOF_CONTEXT "parley-attach-v1"
#define PL_OVL_PROOF_SIZE (16 + 32 + 32 + PL_OVL_NONCE_SIZE)
void pl_ovl_proof_bytes(uint8_t out[PL_OVL_PROOF_SIZE], const uint8_t sn_pk[32], const uint8_t node_pk[32],
                        const uint8_t nonce[PL_OVL_NONCE_SIZE]);

/* Encoders return the message size, or 0 when buf is too small or a field
 * is out of range. Decoders take the whole message, type byte included. */
size_t pl_ovl_encode_attach(uint8_t *buf, size_t cap, const pl_ovl_attach *m);
pl_ovl_err pl_ovl_decode_attach(pl_ovl_attach *m, const uint8_t *buf, size_t len);
size_t pl_ovl_encode_challenge(uint8_t *buf, size_t cap, const uint8_t nonce[PL_OVL_NONCE_SIZE]);
pl_ovl_err pl_ovl_decode_challenge(uint8_t nonce[PL_OVL_NONCE_SIZE], const uint8_t *buf, size_t len);
size_t pl_ovl_encode_proof(uint8_t *buf, size_t cap, const uint8_t sig[PL_OVL_SIG_SIZE]);
pl_ovl_err pl_ovl_decode_proof(uint8_t sig[PL_OVL_SIG_SIZE], const uint8_t *buf, size_t len);
size_t pl_ovl_encode_attach_ok(uint8_t *buf, size_t cap, const pl_ovl_attach_ok *m);
pl_ovl_err pl_ovl_decode_attach_ok(pl_ovl_attach_ok *m, const uint8_t *buf, size_t len);
size_t pl_ovl_encode_refused(uint8_t *buf, size_t cap, const pl_ovl_refused *m);
pl_ovl_err pl_ovl_decode_refused(pl_ovl_refused *m, const uint8_t *buf, size_t len);
size_t pl_ovl_encode_keepalive(uint8_t *buf, size_t cap, uint32_t seq);
pl_ovl_err pl_ovl_decode_keepalive(uint32_t *seq, const uint8_t *buf, size_t len);
/* The observed address travels only when it changed since the supernode
 * last told it (observed NULL); decoding leaves family 0 then. */
size_t pl_ovl_encode_keepalive_ack(uint8_t *buf, size_t cap, uint32_t seq, const pl_addr *observed);
pl_ovl_err pl_ovl_decode_keepalive_ack(uint32_t *seq, pl_addr *observed, const uint8_t *buf, size_t len);
size_t pl_ovl_encode_detach(uint8_t *buf, size_t cap);
pl_ovl_err pl_ovl_decode_detach(const uint8_t *buf, size_t len);
size_t pl_ovl_encode_redirect(uint8_t *buf, size_t cap, const pl_ovl_redirect *m);
pl_ovl_err pl_ovl_decode_redirect(pl_ovl_redirect *m, const uint8_t *buf, size_t len);

/* Directory and presence messages. Names travel as a length and the name as
 * pl_name_normalize writes it; anything else is malformed. */
size_t pl_ovl_encode_dir(uint8_t *buf, size_t cap, const pl_ovl_dir *m);
pl_ovl_err pl_ovl_decode_dir(pl_ovl_dir *m, const uint8_t *buf, size_t len);
size_t pl_ovl_encode_names(uint8_t *buf, size_t cap, const pl_ovl_names *m);
size_t pl_ovl_encode_qualify(uint8_t *buf, size_t cap, const pl_ovl_qualify *m);
pl_ovl_err pl_ovl_decode_qualify(pl_ovl_qualify *m, const uint8_t *buf, size_t len);
/* The bare probe datagram. */
void pl_ovl_probe_datagram(uint8_t out[PL_OVL_PROBE_SIZE], const uint8_t nonce[PL_OVL_PROBE_NONCE]);
bool pl_ovl_parse_probe(const uint8_t *buf, size_t len, uint8_t nonce[PL_OVL_PROBE_NONCE]);
pl_ovl_err pl_ovl_decode_names(pl_ovl_names *m, const uint8_t *buf, size_t len);

#endif
