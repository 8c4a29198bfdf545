/*
 * relay.h - the media relay a supernode runs for nodes that cannot reach
 * each other directly (docs/paths.md), sans-I/O.
 *
 * A node asks its supernode, over their secure session, for an allocation
 * for a session with a peer (RELAY_ALLOCATE). The supernode answers with a
 * channel id, a random token for each of the two sides and the addresses
 * (UDP, and TCP when it listens on TCP) where the relay takes packets. The
 * node keeps its own token and hands the other to the peer in its call
 * offer. From then on each side sends
 *
 *     [0xF1][channel u32][token u64][inner datagram]
 *
 * to the relay, outside any supernode session: the inner datagram is
 * already sealed end to end by the two users' own session, so the relay
 * adds no cryptography and can read nothing. The relay forwards a packet
 * from one side of a channel to the other side's bound address, with the
 * token rewritten to the receiving side's own (each side only ever sees its
 * own token), and only when:
 *  - the channel exists and has not been idle for longer than its lifetime;
 *  - the token is one of the channel's two tokens (it names the side);
 *  - the packet comes from the side's bound address. A side is bound by its
 *    first valid packet; it is re-bound to a new address only by a bind
 *    packet (an empty inner datagram) carrying the side's token, at most
 *    once per PL_RELAY_REBIND_INTERVAL. A data packet with a valid token from
 *    another address is dropped, never forwarded and never a re-bind;
 *  - the side is within its packet and byte rates.
 * No destination is ever taken from a packet: the relay forwards only
 * between the two parties of an allocation, so it is never an open proxy.
 * A valid bind is answered with its own 13 bytes (so a node learns that its
 * side is bound and its NAT keeps the mapping open); every invalid packet is
 * dropped without an answer, so the relay never reflects or amplifies.
 *
 * Sides may be UDP or TCP: a TCP side is a pl_addr marked PL_ADDR_TCP (one
 * framed stream, as the event loop's pl_stream carries frames), and the
 * relay treats both alike, so one side may be TCP and the other UDP.
 *
 * On one socket a supernode tells the three kinds of datagram apart by
 * their first bytes (pl_relay_is_framed): 0xF1 is relay framing; STUN has
 * its top two bits zero and the magic cookie (pl_stun_classify); the secure
 * session layer's packets start with a type byte 1..4 and three zero bytes.
 *
 * Nothing here reads a clock, does I/O or allocates per packet: the forward
 * path rewrites the packet in place and tells the driver where to send it.
 */
#ifndef PL_RELAY_H
#define PL_RELAY_H

#include "parley.h"

/* ---- framing ------------------------------------------------------------------------ */

#define PL_RELAY_MAGIC 0xF1
#define PL_RELAY_HEADER_SIZE 13 /* magic u8, channel u32, token u64 */
/* The largest framed packet (it fits the event loop's datagram buffer). */
#define PL_RELAY_MAX_PACKET 1500
#define PL_RELAY_MAX_INNER (PL_RELAY_MAX_PACKET - PL_RELAY_HEADER_SIZE)

static inline bool pl_relay_is_framed(const uint8_t *data, size_t len)
{
    return len > 0 && data[0] == PL_RELAY_MAGIC;
}

/* Writes [0xF1][channel][token][inner] into out. Returns its length, or 0
 * when cap is too small or inner is longer than PL_RELAY_MAX_INNER. An
 * empty inner datagram makes a bind packet. out and inner may not overlap. */
size_t pl_relay_wrap(uint8_t *out, size_t cap, uint32_t channel, uint64_t token, const uint8_t *inner,
                     size_t inner_len);
/* Reads the header of a framed packet; false when it is not one (wrong
 * magic, shorter than the header, longer than PL_RELAY_MAX_PACKET). The inner
 * datagram is the PL_RELAY_HEADER_SIZE bytes on. */
bool pl_relay_parse(const uint8_t *pkt, size_t len, uint32_t *channel, uint64_t *token);

/* ---- allocation messages (overlay types 0x60-0x62, node <-> its supernode) ----------- */

enum {
    PL_OVL_RELAY_ALLOCATE = 0x60,  /* node -> supernode: a channel for a session with this peer */
    PL_OVL_RELAY_ALLOCATED = 0x61, /* supernode -> node: the channel, or why not */
    PL_OVL_RELAY_RELEASE = 0x62,   /* node -> supernode: the call is over */
};

/* ALLOCATED status codes. */
typedef enum pl_relay_status {
    PL_RELAY_OK = 0,
    PL_RELAY_FULL = 1,         /* the relay holds as many allocations as it may */
    PL_RELAY_CLIENT_LIMIT = 2, /* this node holds as many as one node may */
    PL_RELAY_NOT_CLIENT = 3,   /* only attached nodes may allocate (a relay with no_standby) */
    PL_RELAY_DISABLED = 4,     /* this supernode does not relay */
} pl_relay_status;
#define PL_RELAY_STATUS_MAX PL_RELAY_DISABLED

typedef struct pl_relay_allocate {
    uint32_t req;
    uint8_t peer_pk[32]; /* the peer the session is with */
} pl_relay_allocate;

#define PL_RELAY_MAX_ADDRS 2 /* one UDP and one TCP address */

typedef struct pl_relay_grant {
    uint32_t req;
    uint8_t status;       /* pl_relay_status; the fields below only with PL_RELAY_OK */
    uint32_t channel;     /* never 0 */
    uint16_t idle_s;      /* the allocation ends after this long without a valid packet */
    uint64_t token_self;  /* the requester's side */
    uint64_t token_peer;  /* the peer's side: hand it over confidentially */
    uint8_t n_addrs;      /* 1..PL_RELAY_MAX_ADDRS */
    pl_addr addrs[PL_RELAY_MAX_ADDRS]; /* where the relay takes packets; transport says UDP or TCP */
} pl_relay_grant;

typedef struct pl_relay_release {
    uint32_t channel;
} pl_relay_release;

typedef enum pl_relay_err {
    PL_RELAY_ERR_OK = 0,
    PL_RELAY_ERR_MALFORMED, /* wrong type, size, or a field out of range */
    PL_RELAY_ERR_CONFIG,
    PL_RELAY_ERR_NOMEM,
} pl_relay_err;
const char *pl_relay_strerror(pl_relay_err err);

/* Encoders return the message size (type byte included), or 0 when buf is
 * too small or a field is out of range. Decoders refuse trailing bytes. */
size_t pl_relay_encode_allocate(uint8_t *buf, size_t cap, const pl_relay_allocate *m);
pl_relay_err pl_relay_decode_allocate(pl_relay_allocate *m, const uint8_t *buf, size_t len);
size_t pl_relay_encode_grant(uint8_t *buf, size_t cap, const pl_relay_grant *m);
pl_relay_err pl_relay_decode_grant(pl_relay_grant *m, const uint8_t *buf, size_t len);
size_t pl_relay_encode_release(uint8_t *buf, size_t cap, const pl_relay_release *m);
pl_relay_err pl_relay_decode_release(pl_relay_release *m, const uint8_t *buf, size_t len);

/* ---- the relay ------------------------------------------------------------------------ */

typedef struct pl_relay pl_relay;

/* Defaults: a call is 50 packets/s of ~100-200 bytes each way, plus path
 * probes; the per-side limits leave room for four times that. */
#define PL_RELAY_DEFAULT_MAX_ALLOCATIONS 4096
#define PL_RELAY_DEFAULT_MAX_PER_CLIENT 8
/* A node attached to another supernode may hold this many allocations here:
 * the standby relay of its calls, at a second supernode, so that a call
 * survives the loss of the supernode both ends are attached to. */
#define PL_RELAY_DEFAULT_MAX_PER_STANDBY 2
#define PL_RELAY_DEFAULT_PPS 200
#define PL_RELAY_DEFAULT_BPS 128000 /* bytes per second: 1 Mbit/s */
#define PL_RELAY_DEFAULT_IDLE (60 * PL_SEC)
/* Bursts: a quarter of a second at the full rate. */
#define PL_RELAY_BURST_DIVISOR 4
#define PL_RELAY_REBIND_INTERVAL PL_SEC
/* The sweep that ends idle allocations runs this often, over a tenth of the
 * table each time. */
#define PL_RELAY_SWEEP_INTERVAL (100 * PL_MSEC)

typedef struct pl_relay_config {
    const pl_rng *rng;         /* channel ids and tokens */
    const pl_mem *mem;         /* NULL: the C heap */
    uint32_t max_allocations;  /* 0: PL_RELAY_DEFAULT_MAX_ALLOCATIONS; at most 1 << 24 */
    uint32_t max_per_client;   /* 0: PL_RELAY_DEFAULT_MAX_PER_CLIENT */
    uint32_t max_per_standby;  /* nodes attached elsewhere; 0: PL_RELAY_DEFAULT_MAX_PER_STANDBY */
    bool no_standby;           /* refuse every node not attached here (PL_RELAY_NOT_CLIENT) */
    uint32_t max_pps;          /* packets per second per side; 0: PL_RELAY_DEFAULT_PPS */
    uint32_t max_bps;          /* bytes per second per side (framing included); 0: PL_RELAY_DEFAULT_BPS */
    pl_time idle_timeout;      /* 0: PL_RELAY_DEFAULT_IDLE; 1 s..1 h */
    /* The relay's own addresses, named in grants (tcp: family PL_AF_NONE when
     * there is no TCP listener). No side is ever bound to one of them, so the
     * relay cannot be made to send to itself. */
    pl_addr udp_addr;
    pl_addr tcp_addr;
} pl_relay_config;

/* What pl_relay_forward decided. PL_RELAY_SEND means: send *len bytes of
 * the packet (rewritten in place) to *to. Everything else is a drop, named
 * by its reason, and nothing is sent. */
typedef enum pl_relay_action {
    PL_RELAY_SEND = 0,
    PL_RELAY_DROP_MALFORMED, /* not relay framing, or too short or too long */
    PL_RELAY_DROP_CHANNEL,   /* no such channel (never allocated, released or swept) */
    PL_RELAY_DROP_TOKEN,     /* the token is neither side's */
    PL_RELAY_DROP_SOURCE,    /* data from an address the side is not bound to */
    PL_RELAY_DROP_EXPIRED,   /* the allocation was idle past its lifetime (it ends now) */
    PL_RELAY_DROP_RATE,      /* over the side's packet or byte rate */
    PL_RELAY_DROP_UNBOUND,   /* the other side has not bound yet: nowhere to send */
    PL_RELAY_DROP_REBIND,    /* a re-bind sooner than PL_RELAY_REBIND_INTERVAL after the last */
    PL_RELAY_DROP_SELF,      /* a side would be bound to the relay's own address */
} pl_relay_action;

typedef struct pl_relay_stats {
    uint32_t allocations;          /* live now */
    uint64_t allocated, released, expired;
    uint64_t refused_full, refused_client_limit, refused_not_client;
    uint64_t standby_allocated;    /* of `allocated`: for nodes attached elsewhere */
    uint64_t forwarded, forwarded_bytes; /* data packets sent on, and their bytes */
    uint64_t binds, rebinds;       /* bind packets answered; of which moved a side */
    uint64_t drop_malformed, drop_channel, drop_token, drop_source, drop_expired, drop_rate, drop_unbound,
        drop_rebind, drop_self;
} pl_relay_stats;

pl_relay_err pl_relay_new(pl_relay **out, const pl_relay_config *cfg);
void pl_relay_free(pl_relay *r);

/* Makes an allocation owned by owner_pk for a session with peer_pk and
 * fills the grant (req is left for the caller). Returns the grant's status:
 * PL_RELAY_FULL or PL_RELAY_CLIENT_LIMIT when a limit is reached. */
pl_relay_status pl_relay_allocate_channel(pl_relay *r, const uint8_t owner_pk[32], const uint8_t peer_pk[32],
                                          pl_time now, pl_relay_grant *grant);
/* Ends an allocation; only its owner may. Returns false when owner_pk owns
 * no such channel. */
bool pl_relay_release_channel(pl_relay *r, const uint8_t owner_pk[32], uint32_t channel);

/* An overlay message from the authenticated peer pk (the stack offers it
 * every message of type 0x60-0x6f; the session layer authenticated pk).
 * `attached` says whether pk is one of this supernode's attached nodes:
 * they may hold max_per_client allocations; any other authenticated node
 * (one attached elsewhere, asking for a standby relay) max_per_standby, or
 * none with no_standby. Returns false when the type is not the relay's.
 * When the message needs an answer, writes it to out and sets *out_len
 * (else *out_len is 0); the caller sends it back to pk over the session.
 * Malformed messages are dropped without an answer. */
bool pl_relay_message(pl_relay *r, const uint8_t pk[32], bool attached, const uint8_t *msg, size_t len,
                      pl_time now, uint8_t *out, size_t cap, size_t *out_len);

/* A datagram of *len bytes that arrived from `from` and starts with
 * PL_RELAY_MAGIC. On PL_RELAY_SEND, pkt has been rewritten in place (the
 * receiving side's token) and the driver sends its first *len bytes to *to
 * (for a bind, back to from). *len and *to change only on PL_RELAY_SEND. */
pl_relay_action pl_relay_forward(pl_relay *r, const pl_addr *from, uint8_t *pkt, size_t *len, pl_time now,
                                 pl_addr *to);

/* Ends allocations idle past their lifetime, a tenth of the table per call. */
void pl_relay_tick(pl_relay *r, pl_time now);
/* When pl_relay_tick next has work; PL_TIME_NEVER with no allocation. */
pl_time pl_relay_next_timeout(const pl_relay *r);

pl_relay_stats pl_relay_get_stats(const pl_relay *r);
const char *pl_relay_action_name(pl_relay_action a);
const char *pl_relay_status_name(uint8_t status);

#endif
