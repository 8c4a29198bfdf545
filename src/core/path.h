/*
 * path.h - how the datagrams of one secure session with a peer get there:
 * directly or through relays, with a standby kept warm (docs/paths.md),
 * sans-I/O.
 *
 * A call runs over a secure session between two users' keys (pl_sec): that
 * session authenticates, encrypts and orders-within-a-window every datagram.
 * The path manager decides where those datagrams go. It holds up to
 * PL_PATH_MAX candidate paths to the peer:
 *  - direct: UDP to one of the peer's addresses (from its offer, or one its
 *    authenticated packets came from: peer-reflexive);
 *  - relayed: through a relay channel (relay.h) at this node's supernode or
 *    at the peer's, over UDP or over the node's TCP stream to the relay.
 *
 * Addresses. The session (pl_sec) names where it sends with a pl_addr. The
 * manager gives the session one *session address* and each relayed path a
 * *path address* of its own; these are virtual: IPv6 addresses in 100::/64,
 * the discard-only prefix (RFC 6666), carrying the manager's id, so a
 * driver tells them from real addresses (pl_path_virtual_owner) and one
 * that leaked to a socket would go nowhere. A direct path's address is the
 * peer's real address. The driver keeps the session pointed at the session
 * address; everything the session sends there goes out on the active path
 * (or, before any path works, on every path at once: the handshake itself
 * is what punches holes and finds the first working path).
 *
 * Checks. Every probe and answer is a small message *inside* the session
 * (types 0x63/0x64), so it is authenticated, encrypted and replay-protected;
 * nothing unauthenticated is ever answered, so no path check can be forged
 * or used to reflect traffic. Before the session is up there are no probes:
 * the handshake, fanned out over every path, is the first check.
 *  - Paths being checked are probed every 100 ms for 2 s, then every 500 ms
 *    until 10 s, then they are failed and retried every 5 s.
 *  - Working paths other than the active one (the standbys) are probed once
 *    a second; one silent for 3.5 s is failed.
 *  - The active path is watched through everything that arrives on it
 *    (media, probes, answers). When this side has sent nothing on it for
 *    `keepalive` (40 ms) it sends a probe that asks for no answer, so the
 *    peer always hears something at least that often, even during silence
 *    suppression.
 *  - Failover: nothing heard on the active path for `fail_after` (150 ms)
 *    while a standby answered within the last 2.5 s: switch to the best
 *    such standby at once. With 50 packets/s of media the peer hears the
 *    first packet on the new path about fail_after plus one one-way delay
 *    after the last one on the old path.
 *
 * Choosing. The caller's side is *controlling*: it chooses the active path
 * (direct before relayed UDP before relayed TCP; among equals the lowest
 * smoothed round trip, with hysteresis) and says so by a NOMINATE flag on
 * its probes on that path, repeated until answered. The callee follows the
 * nominations. Either side fails over by itself when its active path goes
 * silent; the controlled side then flags its probes LOST, and the
 * controlling side moves to the path such a probe came on, so both sides end
 * on one path within a round trip.
 *
 * Privacy mode: a node that publishes no address offers only relays at its
 * own supernodes, and its manager never creates a direct path, never
 * accepts a peer-reflexive one, and never uses a relay the peer offered (a
 * relay the peer runs itself would learn the node's address): every datagram
 * of the session goes to the node's own supernodes' relays, and the peer
 * sees only their addresses.
 *
 * What the driver does (docs/paths.md, section 6, has the whole recipe):
 *  - makes one manager per session with a peer (a call), with a process-wide
 *    unique id, adds the offered candidates and relays, and opens the
 *    session (pl_sec_connect) to pl_path_session_addr();
 *  - in pl_sec's send callback: a virtual address of a manager goes to
 *    pl_path_send(); any other address to the socket as before;
 *  - a datagram that starts with PL_RELAY_MAGIC goes to pl_path_unwrap() of
 *    the manager with that channel, and what it returns to pl_sec_receive()
 *    with the path address as the source;
 *  - after pl_sec_receive() and in pl_sec's event callback, points the
 *    peer's session back at pl_path_session_addr() (pl_sec moves a session
 *    to wherever an authenticated packet came from);
 *  - on PL_SEC_EV_ESTABLISHED calls pl_path_session_up(); every
 *    PL_SEC_EV_DATA payload from the peer goes to pl_path_receive() first,
 *    which keeps path messages and says so;
 *  - io.send_message(): points the session at the given path address, calls
 *    pl_sec_send(), points it back;
 *  - io.send(): real datagrams for the socket (or the TCP stream for a
 *    TCP-marked address);
 *  - calls pl_path_tick() when pl_path_next_timeout() is due.
 */
#ifndef PL_PATH_H
#define PL_PATH_H

#include "parley.h"
#include "record.h"

#define PL_PATH_MAX 16

/* Session payload types (the paths' range of the registry in overlay.h). */
enum {
    PL_PATH_MSG_PROBE = 0x63,
    PL_PATH_MSG_ACK = 0x64,
    PL_PATH_MSG_OFFER = 0x65, /* candidates and relays, as a call invite or answer carries them */
};

/* PROBE flags. */
#define PL_PATH_F_ACK_REQ 0x01u  /* answer with an ACK on the path it came on */
#define PL_PATH_F_NOMINATE 0x02u /* the controlling side sends on this path: follow */
#define PL_PATH_F_LOST 0x04u     /* the sender hears nothing on its active path any more */
#define PL_PATH_F_ALL (PL_PATH_F_ACK_REQ | PL_PATH_F_NOMINATE | PL_PATH_F_LOST)

#define PL_PATH_PROBE_SIZE 11 /* type, flags, tag, stamp u64 */
#define PL_PATH_ACK_SIZE 10   /* type, tag, stamp u64 */

/* Timers (docs/paths.md, section 4). */
#define PL_PATH_DEFAULT_FAIL_AFTER (150 * PL_MSEC)
#define PL_PATH_DEFAULT_KEEPALIVE (40 * PL_MSEC)
#define PL_PATH_DEFAULT_STANDBY_INTERVAL PL_SEC
#define PL_PATH_CHECK_INTERVAL (100 * PL_MSEC)
#define PL_PATH_CHECK_FAST_FOR (2 * PL_SEC)
#define PL_PATH_CHECK_SLOW_INTERVAL (500 * PL_MSEC)
#define PL_PATH_CHECK_GIVE_UP (10 * PL_SEC)
#define PL_PATH_FAILED_RETRY (5 * PL_SEC)
#define PL_PATH_STANDBY_DEAD (3500 * PL_MSEC)
#define PL_PATH_STANDBY_FRESH (2500 * PL_MSEC)
#define PL_PATH_NOMINATE_RETRY (40 * PL_MSEC)
#define PL_PATH_NOMINATE_TRIES 10
#define PL_PATH_BIND_RETRY (500 * PL_MSEC)
/* A better path of the same kind must beat the active one's smoothed round
 * trip by this much (and a fifth), and switches for it are this far apart. */
#define PL_PATH_RTT_MARGIN (10 * PL_MSEC)
#define PL_PATH_RTT_DWELL (5 * PL_SEC)

typedef enum pl_path_kind {
    PL_PATH_DIRECT = 1,
    PL_PATH_RELAY_UDP = 2,
    PL_PATH_RELAY_TCP = 3,
} pl_path_kind;

typedef enum pl_path_state {
    PL_PATH_CHECKING = 1, /* not (or no longer) known to work: probed often */
    PL_PATH_ALIVE,        /* answered recently */
    PL_PATH_FAILED,       /* gave no answer: retried now and then */
} pl_path_state;

typedef enum pl_path_reason {
    PL_PATH_REASON_FIRST = 1, /* the first path to work */
    PL_PATH_REASON_BETTER,    /* a better path works (direct, or a shorter round trip) */
    PL_PATH_REASON_FAILOVER,  /* the active path went silent */
    PL_PATH_REASON_PEER,      /* the peer nominated it, or reported it hears nothing on ours */
} pl_path_reason;

typedef struct pl_path_info {
    int slot;          /* stable for the path's life; -1 when none */
    uint8_t kind;      /* pl_path_kind */
    uint8_t state;     /* pl_path_state */
    bool active;
    bool own_relay;    /* a relay this node allocated (else the peer's) */
    bool peer_reflexive;
    pl_addr addr;      /* the path address in the session (direct: the peer's address) */
    pl_addr remote;    /* where datagrams go: the peer, or the relay */
    uint32_t channel;  /* relayed paths */
    pl_time srtt;      /* smoothed round trip; 0 before the first answer */
    pl_time last_rx, last_ack;
    uint64_t tx, rx, probes, acks;
} pl_path_info;

typedef enum pl_path_event_type {
    PL_PATH_EV_ACTIVE = 1, /* the session now sends on ev->path (ev->reason) */
    PL_PATH_EV_UP,         /* a path answered (first time, or again) */
    PL_PATH_EV_DOWN,       /* a path stopped answering */
    PL_PATH_EV_ADDED,      /* a peer-reflexive path was found */
} pl_path_event_type;

typedef struct pl_path_event {
    pl_path_event_type type;
    pl_path_reason reason; /* ACTIVE */
    const pl_path_info *path;
    pl_time now;
} pl_path_event;

typedef struct pl_path_io {
    void *ctx;
    /* A real datagram for the network (a TCP-marked address: the stream). */
    void (*send)(void *ctx, const pl_addr *to, const uint8_t *data, size_t len);
    /* Seal msg in the session with the peer and send it on the path whose
     * address is path_addr (point the session there, pl_sec_send, point it
     * back). false when the session could not take it. */
    bool (*send_message)(void *ctx, const pl_addr *path_addr, const uint8_t *msg, size_t len, pl_time now);
    /* News about paths (may be NULL). It may call pl_path_* queries and
     * pl_path_send, but must not free the manager. */
    void (*event)(void *ctx, const pl_path_event *ev);
} pl_path_io;

typedef struct pl_path_config {
    uint32_t id;              /* names this manager's virtual addresses; unique among a process's live managers */
    bool controlling;         /* the caller's side */
    bool privacy;             /* location privacy: relays at own supernodes only */
    bool tcp_only;            /* no UDP gets out (natdisc said so): relays over TCP only, no direct paths */
    const pl_mem *mem;        /* NULL: the C heap */
    pl_time fail_after;       /* 0: PL_PATH_DEFAULT_FAIL_AFTER; 20 ms..10 s */
    pl_time keepalive;        /* 0: PL_PATH_DEFAULT_KEEPALIVE; below fail_after */
    pl_time standby_interval; /* 0: PL_PATH_DEFAULT_STANDBY_INTERVAL; 100 ms..10 s */
} pl_path_config;

typedef enum pl_path_err {
    PL_PATH_OK = 0,
    PL_PATH_ERR_CONFIG,    /* a bad configuration or argument */
    PL_PATH_ERR_NOMEM,
    PL_PATH_ERR_FULL,      /* PL_PATH_MAX paths already */
    PL_PATH_ERR_PRIVACY,   /* refused in privacy mode: a direct path, or the peer's relay */
    PL_PATH_ERR_EXISTS,    /* that path is already there */
    PL_PATH_ERR_MALFORMED, /* an offer that does not decode */
} pl_path_err;
const char *pl_path_strerror(pl_path_err err);

typedef struct pl_path_stats {
    uint64_t probes_sent, acks_sent, acks_received;
    uint64_t switches, failovers, peer_switches;
    uint64_t fanout_datagrams; /* sent on every path before one worked */
    uint64_t binds_sent, binds_answered;
    uint64_t malformed;        /* path messages that did not decode, or answers that fit no probe */
    uint64_t prflx_added;
} pl_path_stats;

typedef struct pl_path pl_path;

pl_path_err pl_path_new(pl_path **out, const pl_path_config *cfg, const pl_path_io *io);
void pl_path_free(pl_path *pm);

/* A direct path to one of the peer's UDP addresses. */
pl_path_err pl_path_add_direct(pl_path *pm, const pl_addr *peer_addr, pl_time now);
/* A relayed path: channel and this side's token at the relay address (TCP-
 * marked for the node's stream to the relay). own: this node allocated it
 * (else the peer's offer named it). A bind goes out at once, so the relay
 * knows where to forward the peer's packets. */
pl_path_err pl_path_add_relay(pl_path *pm, const pl_addr *relay, uint32_t channel, uint64_t token, bool own,
                              pl_time now);

/* The address the session must send to, always the same for this manager. */
const pl_addr *pl_path_session_addr(const pl_path *pm);
/* True when a is a virtual address of some path manager; *id says whose. */
bool pl_path_virtual_owner(const pl_addr *a, uint32_t *id);

/* A datagram the session sent to one of this manager's virtual addresses:
 * out on the active path (every path before one works) for the session
 * address, on that relay for a path address. false when `to` is not one of
 * this manager's addresses or the datagram is too long to relay. */
bool pl_path_send(pl_path *pm, const pl_addr *to, const uint8_t *data, size_t len, pl_time now);

typedef enum pl_path_unwrapped {
    PL_PATH_NOT_MINE = 0, /* none of this manager's relay channels (or a wrong token) */
    PL_PATH_INNER,        /* give *inner to the session, from *path_addr */
    PL_PATH_CONSUMED,     /* the relay's answer to a bind: nothing for the session */
} pl_path_unwrapped;
/* A relay-framed datagram from `from`. */
pl_path_unwrapped pl_path_unwrap(pl_path *pm, const pl_addr *from, const uint8_t *pkt, size_t len,
                                 pl_addr *path_addr, const uint8_t **inner, size_t *inner_len, pl_time now);

/* The session with the peer is established; from is where the packet that
 * established it came from (that path works). Checks start. */
void pl_path_session_up(pl_path *pm, const pl_addr *from, pl_time now);
/* Every authenticated payload from the peer, with the address it came from
 * (a path address for relayed packets). Returns true when it was a path
 * message (kept here); false for anything else, which is the caller's. */
bool pl_path_receive(pl_path *pm, const pl_addr *from, const uint8_t *payload, size_t len, pl_time now);

void pl_path_tick(pl_path *pm, pl_time now);
pl_time pl_path_next_timeout(const pl_path *pm);

/* The active path (info->slot -1 when none), and every path by slot. */
void pl_path_active(const pl_path *pm, pl_path_info *info);
bool pl_path_get(const pl_path *pm, int slot, pl_path_info *info);
pl_path_stats pl_path_get_stats(const pl_path *pm);
const char *pl_path_kind_name(uint8_t kind);

/* ---- offers: what a call invite and its answer carry ------------------------------------ */

#define PL_PATH_OFFER_VERSION 1
#define PL_PATH_OFFER_MAX_CANDIDATES PL_RECORD_MAX_CANDIDATES
#define PL_PATH_OFFER_MAX_RELAYS 4
#define PL_PATH_OFFER_F_PRIVATE 0x01u /* the sender is in privacy mode: no candidates, its relays only */

typedef struct pl_path_offer_relay {
    pl_addr addr;     /* the relay; transport UDP or TCP */
    uint32_t channel;
    uint64_t token;   /* the receiver's token for the channel */
} pl_path_offer_relay;

typedef struct pl_path_offer {
    uint8_t flags;
    uint8_t n_candidates;
    pl_record_candidate candidates[PL_PATH_OFFER_MAX_CANDIDATES];
    uint8_t n_relays;
    pl_path_offer_relay relays[PL_PATH_OFFER_MAX_RELAYS];
} pl_path_offer;

/* The offer as a PL_PATH_MSG_OFFER message. It carries tokens: it must
 * travel confidentially (sealed for the peer), since a token lets its holder
 * send through the channel and move the peer's side of it. */
size_t pl_path_encode_offer(uint8_t *buf, size_t cap, const pl_path_offer *offer);
pl_path_err pl_path_decode_offer(pl_path_offer *offer, const uint8_t *buf, size_t len);
/* Adds what the peer offered that this side may use: its UDP candidates as
 * direct paths (not in privacy mode, nor TCP-only), its relays. A relay
 * channel offered at a UDP and a TCP address becomes one path: the UDP one,
 * or the TCP one for a TCP-only node (a side of a channel is bound to one
 * address; using both would move it back and forth). A PRIVATE offer also
 * retires this side's own relays, which the peer will not use. Paths that
 * exist already are skipped; returns the first other error. */
pl_path_err pl_path_apply_offer(pl_path *pm, const pl_path_offer *offer, pl_time now);

#endif
