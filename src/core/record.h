/*
 * record.h - signed directory records (docs/directory.md).
 *
 * A directory record is what a user publishes so that others can reach it:
 * the supernodes it is attached to, the addresses it can be reached at
 * (none in privacy mode), what its NAT does, what it can do, a sequence
 * number and a short validity window. The user signs it with its own key
 * and embeds its CA certificate, so a reader checks it end to end without
 * trusting the supernode that stored it and without another look-up: a
 * supernode that forges or alters a record breaks the signature, and one
 * that serves an old record loses to the sequence number.
 *
 * The module is sans-I/O and keeps no state: it encodes, decodes, signs and
 * verifies records, orders two records of one user, and decides whether a
 * record offered to a store replaces the one it holds.
 */
#ifndef PL_RECORD_H
#define PL_RECORD_H

#include "parley.h"

#define PL_RECORD_VERSION 1
#define PL_RECORD_MAX_SUPERNODES 3
#define PL_RECORD_MAX_CANDIDATES 8
/* A record lives at most an hour; the node refreshes it well before then,
 * so a node that vanished drops out of the directory on its own. */
#define PL_RECORD_MAX_LIFETIME 3600u
/* How far in the future issued_at may lie, for clocks that disagree. */
#define PL_RECORD_MAX_SKEW 120u

/* Record flags. */
#define PL_RECORD_F_PRIVATE 0x01u /* privacy mode: no addresses published */
#define PL_RECORD_F_ALL PL_RECORD_F_PRIVATE

/* Presence, as the user publishes it. "Offline" is not published: it is
 * what readers conclude when the user's supernode reports it lost, or the
 * record expires. */
enum { PL_PRESENCE_ONLINE = 0, PL_PRESENCE_AWAY = 1 };
#define PL_PRESENCE_MAX PL_PRESENCE_AWAY
/* A status text ("in a meeting"): UTF-8 bytes, no control characters. */
#define PL_RECORD_STATUS_MAX 64

/* NAT behaviour in RFC 4787 terms, for mapping and for filtering alike. */
typedef enum pl_nat_behaviour {
    PL_NAT_UNKNOWN = 0,
    PL_NAT_ENDPOINT_INDEPENDENT = 1,
    PL_NAT_ADDRESS_DEPENDENT = 2,
    PL_NAT_ADDRESS_AND_PORT_DEPENDENT = 3,
} pl_nat_behaviour;
#define PL_NAT_BEHAVIOUR_MAX PL_NAT_ADDRESS_AND_PORT_DEPENDENT

/* NAT flags. */
#define PL_NAT_F_UDP_BLOCKED 0x01u /* no UDP gets out: only TCP relaying works */
#define PL_NAT_F_ALL PL_NAT_F_UDP_BLOCKED

/* Capabilities. Unknown bits are kept and signed, not refused, so that a
 * newer client can advertise features older readers simply ignore. */
#define PL_CAP_VOICE 0x00000001u
#define PL_CAP_CHAT 0x00000002u
#define PL_CAP_VOICEMAIL_STORE 0x00000004u /* stores voicemail for others */
#define PL_CAP_RELAY 0x00000008u           /* relays media for others */
#define PL_CAP_CONFERENCE 0x00000010u      /* can mix a conference */
#define PL_CAP_SUPERNODE 0x00000020u       /* currently serves as a supernode */

/* Candidate types (ICE terms) and transports. Zero is never valid, so an
 * all-zero candidate is caught. */
enum { PL_CAND_HOST = 1, PL_CAND_SERVER_REFLEXIVE = 2, PL_CAND_PORT_MAPPED = 3, PL_CAND_RELAYED = 4 };
enum { PL_TRANSPORT_UDP = 1, PL_TRANSPORT_TCP = 2 };

/* Wire sizes; see the offset table in docs/directory.md. */
#define PL_RECORD_HEADER_SIZE 38
#define PL_RECORD_ADDR_MAX 19 /* family u8, port u16, 16 address bytes */
#define PL_RECORD_SUPERNODE_MAX (PL_RECORD_ADDR_MAX + 32)
#define PL_RECORD_CANDIDATE_MAX (6 + PL_RECORD_ADDR_MAX)
#define PL_RECORD_SIG_SIZE 64
#define PL_RECORD_MAX_SIZE                                                                          \
    (PL_RECORD_HEADER_SIZE + PL_CERT_MAX_SIZE + PL_RECORD_MAX_SUPERNODES * PL_RECORD_SUPERNODE_MAX + \
     PL_RECORD_MAX_CANDIDATES * PL_RECORD_CANDIDATE_MAX + 1 + PL_RECORD_STATUS_MAX + PL_RECORD_SIG_SIZE)

typedef struct pl_record_supernode {
    pl_addr addr;
    uint8_t pk[32]; /* the supernode's Ed25519 key */
} pl_record_supernode;

typedef struct pl_record_candidate {
    uint8_t type;      /* PL_CAND_* */
    uint8_t transport; /* PL_TRANSPORT_* */
    uint32_t priority; /* higher is preferred */
    pl_addr addr;
} pl_record_candidate;

typedef struct pl_record {
    uint8_t version;       /* PL_RECORD_VERSION */
    uint8_t flags;         /* PL_RECORD_F_* */
    uint8_t nat_mapping;   /* pl_nat_behaviour */
    uint8_t nat_filtering; /* pl_nat_behaviour */
    uint8_t nat_flags;     /* PL_NAT_F_* */
    uint8_t n_supernodes;
    uint8_t n_candidates;
    uint8_t presence;      /* PL_PRESENCE_* */
    uint8_t status_len;
    char status[PL_RECORD_STATUS_MAX + 1]; /* status_len bytes, then a terminator */
    uint32_t capabilities; /* PL_CAP_* */
    uint64_t sequence;
    uint64_t issued_at;  /* Unix seconds */
    uint64_t expires_at; /* Unix seconds, exclusive */
    pl_record_supernode supernodes[PL_RECORD_MAX_SUPERNODES]; /* ascending by pk */
    pl_record_candidate candidates[PL_RECORD_MAX_CANDIDATES]; /* canonical order */
    uint16_t cert_len;
    uint8_t cert_bytes[PL_CERT_MAX_SIZE]; /* the user's certificate, encoded */
    pl_cert cert;                         /* cert_bytes decoded: set by decode and sign */
    uint8_t sig[PL_RECORD_SIG_SIZE];
} pl_record;

typedef enum pl_record_err {
    PL_RECORD_OK = 0,
    PL_RECORD_ERR_MALFORMED,     /* not a canonical encoding, or fields out of range */
    PL_RECORD_ERR_BUFFER,        /* output buffer too small */
    PL_RECORD_ERR_CERT,          /* the embedded certificate is refused (see cert_err) */
    PL_RECORD_ERR_WRONG_NAME,    /* the certificate names someone else */
    PL_RECORD_ERR_SIGNATURE,     /* not signed by the certificate's key */
    PL_RECORD_ERR_NOT_YET_VALID, /* issued further in the future than the skew allows */
    PL_RECORD_ERR_EXPIRED,
    PL_RECORD_ERR_WRONG_KEY,     /* signing: the identity is not the certificate's */
    PL_RECORD_ERR_OTHER_USER,    /* comparing records of two different users */
    PL_RECORD_ERR_STALE,         /* an older record than the one held: a replay */
    PL_RECORD_ERR_CONFLICT,      /* two different records with one sequence number */
} pl_record_err;

/* Encodes a signed record; refuses (MALFORMED) any record the decoder would
 * refuse, so every encoded record decodes back to itself. */
pl_record_err pl_record_encode(const pl_record *r, uint8_t *buf, size_t cap, size_t *out_len);
/* Structural decoding: layout, ranges, canonical order, certificate layout.
 * No signature, certificate or time is checked here. Every refusal is
 * PL_RECORD_ERR_MALFORMED (an unknown version, an address with port 0 and a
 * certificate that does not decode included). */
pl_record_err pl_record_decode(pl_record *r, const uint8_t *buf, size_t len);
/* Put the candidates (highest priority first, then by type, transport,
 * family, port and address bytes) and the supernodes (ascending by pk) into
 * canonical order, for builders of records. Duplicates stay duplicates, and
 * encode refuses them. */
void pl_record_sort_candidates(pl_record *r);
void pl_record_sort_supernodes(pl_record *r);
/* Embeds the certificate (which must carry id's key) and signs. The caller
 * fills every other field first. A certificate that does not decode is
 * PL_RECORD_ERR_CERT; one for another key PL_RECORD_ERR_WRONG_KEY; fields
 * the decoder would refuse PL_RECORD_ERR_MALFORMED. */
pl_record_err pl_record_sign(pl_record *r, const pl_identity *id, const uint8_t *cert, size_t cert_len);
/* Checks the certificate against the pinned CA and the CRL (may be NULL; the
 * caller has verified it) at now_s, the name when expected_name is not NULL
 * (any case), the user's signature, and freshness, in that order, returning
 * the first failure. On PL_RECORD_ERR_CERT, *cert_err (if not NULL) says why.
 * The certificate is taken from cert_bytes (what the signature covers), not
 * from r->cert. */
pl_record_err pl_record_verify(const pl_record *r, const uint8_t ca_pk[32], const pl_crl *crl, uint64_t now_s,
                               const char *expected_name, pl_cert_err *cert_err);
/* Orders two records of one user (same key and name): *order > 0 when a is
 * newer, < 0 when b is newer, 0 when they are byte for byte the same. Equal
 * sequence numbers on different records are PL_RECORD_ERR_CONFLICT, since a
 * user never signs two records with one number. */
pl_record_err pl_record_newer(const pl_record *a, const pl_record *b, int *order);

typedef enum pl_record_offer {
    PL_RECORD_OFFER_REPLACE = 1, /* store the candidate */
    PL_RECORD_OFFER_KEEP,        /* the same record again: nothing to do */
    PL_RECORD_OFFER_REFUSE,      /* keep the current record; *why says why */
} pl_record_offer;

/* Decides what a store holding `current` (NULL when it holds nothing) does
 * with a candidate that arrived from the network for expected_name. The
 * candidate must verify; of one user's records an older one never replaces
 * a newer one, even after the newer one expired. A record under a different
 * key (the user re-registered) replaces the current one only once that no
 * longer verifies (expired, or its certificate expired or was revoked).
 * A current record that does not decode is replaced. *why (may be NULL)
 * says why on REFUSE: the candidate's decode or verify error, STALE,
 * CONFLICT (the first record seen is kept), or OTHER_USER (the slot's
 * current holder still verifies); it is PL_RECORD_OK otherwise. */
pl_record_offer pl_record_slot_offer(const uint8_t *current, size_t current_len, const uint8_t *candidate,
                                     size_t candidate_len, const uint8_t ca_pk[32], const pl_crl *crl,
                                     uint64_t now_s, const char *expected_name, pl_record_err *why);
/* The same for a candidate the caller has just verified with pl_record_verify
 * against the same CA, CRL, time and name (a supernode storing its own
 * client's publish as one of the replicas): the candidate's signature and
 * certificate are not checked a second time. Ed25519 verification is most of
 * what a publish costs a supernode. */
pl_record_offer pl_record_slot_offer_verified(const uint8_t *current, size_t current_len, const uint8_t *candidate,
                                              size_t candidate_len, const uint8_t ca_pk[32], const pl_crl *crl,
                                              uint64_t now_s, const char *expected_name, pl_record_err *why);

const char *pl_record_strerror(pl_record_err err);

#endif
