/*
 * callsvc.h - what a supernode does for the calls of others (docs/calls.md,
 * "Setting a call up"), sans-I/O: the media relay (relay.h) and the
 * rendezvous that carries a caller's first contact to a callee it cannot
 * reach directly.
 *
 * The relay. Allocation messages (overlay types 0x60-0x62) from attached
 * clients go to pl_relay_message; relay-framed datagrams (first byte 0xF1,
 * on the supernode's UDP socket or as frames of its TCP streams) go to
 * pl_relay_forward. The supernode adds no cryptography: what it forwards is
 * sealed end to end by the two users' own session.
 *
 * The rendezvous. A caller behind a NAT that filters, or calling a callee
 * whose NAT filters or who publishes no address at all (privacy mode),
 * cannot open a session to the callee's address: nothing the caller sends
 * gets in before the callee has sent something out. Both can always reach
 * their own supernodes, and the supernodes reach each other. So the first
 * contact goes the long way, as a NOTE:
 *
 *     caller --NOTE--> caller's supernode --NOTE--> callee's supernode --NOTE--> callee
 *
 * A NOTE names its recipient and the recipient's supernode (from the
 * callee's directory record) in the clear, for routing, and carries an
 * envelope (envelope.h) sealed to the recipient and signed by the sender:
 * the supernodes on the way can route it but neither read it (it holds the
 * sender's relay tokens) nor forge or alter it. The callee answers the same
 * way. What the envelopes say is the phone's business (phone.h).
 *
 * Routing rules, which keep a supernode from being an open message relay:
 *  - a NOTE from an attached client (hop 0) is delivered to the recipient if
 *    it is attached here, or forwarded (hop 1) to the recipient's supernode
 *    if that is a supernode this one knows (membership); each client may
 *    send PL_CALLSVC_NOTE_RATE notes a second (burst PL_CALLSVC_NOTE_BURST);
 *  - a NOTE from a member supernode (hop 1) must name this supernode and a
 *    recipient attached here, and is delivered (hop 2);
 *  - everything else is dropped and counted, never answered.
 */
#ifndef PL_CALLSVC_H
#define PL_CALLSVC_H

#include "parley.h"
#include "relay.h"

/* The rendezvous message (paths' range of the overlay registry). */
#define PL_CALLSVC_MSG_NOTE 0x66
#define PL_CALLSVC_NOTE_VERSION 1
#define PL_CALLSVC_NOTE_HEADER 69 /* type, version, hop, to[32], via[32], envelope length u16 */
#define PL_CALLSVC_NOTE_MAX_BODY 1100 /* PL_ENV_MAX_SIZE */
#define PL_CALLSVC_NOTE_MAX (PL_CALLSVC_NOTE_HEADER + PL_CALLSVC_NOTE_MAX_BODY)
#define PL_CALLSVC_NOTE_RATE 10
#define PL_CALLSVC_NOTE_BURST 20

typedef struct pl_callsvc_note {
    uint8_t hop;          /* 0: from the sending node; 1: from its supernode; 2: delivered */
    uint8_t to[32];       /* the recipient's signing key */
    uint8_t via[32];      /* the recipient's supernode's key */
    const uint8_t *body;  /* the sealed envelope (points into the decoded buffer) */
    size_t body_len;      /* 1..PL_CALLSVC_NOTE_MAX_BODY */
} pl_callsvc_note;

/* Encodes into buf (PL_CALLSVC_NOTE_MAX is always enough); 0 when a field is
 * out of range or cap too small. */
size_t pl_callsvc_encode_note(uint8_t *buf, size_t cap, const pl_callsvc_note *n);
/* Decodes a whole NOTE, type byte included; false on anything else
 * (unknown version, hop over 2, empty or oversized body, trailing bytes). */
bool pl_callsvc_decode_note(pl_callsvc_note *n, const uint8_t *buf, size_t len);

typedef struct pl_callsvc pl_callsvc;

typedef struct pl_callsvc_io {
    void *ctx;
    /* An overlay message to the peer with key pk (over the session with it,
     * opened to addr if there is none; addr NULL when one is up). */
    bool (*send)(void *ctx, const uint8_t pk[32], const pl_addr *addr, const uint8_t *msg, size_t len, pl_time now);
    /* Is pk attached to this supernode? */
    bool (*attached)(void *ctx, const uint8_t pk[32]);
    /* Is pk a supernode this one knows, and at which address? */
    bool (*member)(void *ctx, const uint8_t pk[32], pl_addr *addr);
} pl_callsvc_io;

typedef struct pl_callsvc_config {
    uint8_t self_pk[32];
    const pl_rng *rng;
    const pl_mem *mem;  /* NULL: the C heap */
    bool no_relay;      /* answer allocations DISABLED and forward nothing */
    pl_relay_config relay; /* rng and mem are filled from the above */
} pl_callsvc_config;

typedef struct pl_callsvc_stats {
    uint64_t notes_delivered, notes_forwarded;
    uint64_t notes_malformed, notes_rate_limited, notes_unknown_via, notes_not_here, notes_refused;
    uint64_t relay_refused_disabled;
} pl_callsvc_stats;

typedef enum pl_callsvc_err {
    PL_CALLSVC_OK = 0,
    PL_CALLSVC_ERR_CONFIG,
    PL_CALLSVC_ERR_NOMEM,
} pl_callsvc_err;

pl_callsvc_err pl_callsvc_new(pl_callsvc **out, const pl_callsvc_config *cfg, const pl_callsvc_io *io);
void pl_callsvc_free(pl_callsvc *cs);

/* True for the overlay types this module takes (0x60-0x62 and NOTE). */
static inline bool pl_callsvc_claims(uint8_t type)
{
    return (type >= PL_OVL_RELAY_ALLOCATE && type <= PL_OVL_RELAY_RELEASE) || type == PL_CALLSVC_MSG_NOTE;
}
/* An authenticated overlay message from pk; attached: pk is a client of
 * this supernode. Returns false when the type is not this module's. */
bool pl_callsvc_message(pl_callsvc *cs, const uint8_t pk[32], bool attached, const uint8_t *msg, size_t len,
                        pl_time now);
/* A relay-framed datagram of *len bytes from `from`, in a buffer the
 * driver may let us rewrite (at least PL_RELAY_MAX_PACKET bytes). True
 * when the driver must send *len bytes of pkt to *to. */
bool pl_callsvc_datagram(pl_callsvc *cs, const pl_addr *from, uint8_t *pkt, size_t *len, pl_time now, pl_addr *to);
void pl_callsvc_tick(pl_callsvc *cs, pl_time now);
pl_time pl_callsvc_next_timeout(const pl_callsvc *cs);

pl_relay *pl_callsvc_relay(pl_callsvc *cs); /* NULL with no_relay */
pl_callsvc_stats pl_callsvc_get_stats(const pl_callsvc *cs);
const char *pl_callsvc_strerror(pl_callsvc_err err);

#endif
