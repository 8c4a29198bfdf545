/*
 * call.h - call signalling: one user's call engine (docs/calls.md).
 *
 * A call goes straight between the two users' nodes, inside the secure
 * session between their certified keys (link.h), so every message here was
 * authenticated before the engine reads it and no supernode ever sees it.
 * Sessions carry datagrams: a message may be lost, duplicated or arrive out
 * of order. The engine therefore numbers the messages of each call and
 * direction, sends one at a time and sends it again (250 ms, doubling,
 * bounded tries) until the other side acknowledges it; every message carries
 * a cumulative acknowledgement, so an answer acknowledges the request, and a
 * message seen before is acknowledged again and never acted on twice.
 *
 * The engine is sans-I/O like the other cores: it sends messages to a peer
 * named by its signing key through pl_call_io (the driver runs them over
 * pl_link, finding a path however it can), and is given the messages that
 * arrive (with the sender's authenticated key and certificate), the time,
 * news that the session with a peer went down, and, from the media layer,
 * that a peer is still sending. It tells its user what happens through
 * events: an incoming call, every change of state, the end and why, and
 * when media should start and stop flowing.
 *
 * Calls are known locally by a handle (a number that stays the same for the
 * life of the call) and on the wire by a random 16-byte call id. The two
 * differ in one case: when both users call each other at once ("glare"),
 * the invite from the lower key wins on both sides, and the other side's
 * call takes over the winner's call id and is answered at once; its handle
 * does not change.
 */
#ifndef PL_CALL_H
#define PL_CALL_H

#include "parley.h"

typedef struct pl_call pl_call;

/* ---- messages (types 0x50-0x5f of the overlay registry) -------------------------------- */

enum {
    PL_CALL_MSG_INVITE = 0x50,    /* caller -> callee: call me (capabilities) */
    PL_CALL_MSG_RINGING = 0x51,   /* callee -> caller: the user is being alerted */
    PL_CALL_MSG_ACCEPT = 0x52,    /* callee -> caller: answered (capabilities) */
    PL_CALL_MSG_REJECT = 0x53,    /* callee -> caller: not answered (reason) */
    PL_CALL_MSG_BUSY = 0x54,      /* callee -> caller: already in a call */
    PL_CALL_MSG_CANCEL = 0x55,    /* caller -> callee: stop ringing (reason) */
    PL_CALL_MSG_BYE = 0x56,       /* either: the answered call is over (reason) */
    PL_CALL_MSG_HOLD = 0x57,      /* either: I put the call on hold */
    PL_CALL_MSG_RESUME = 0x58,    /* either: I took it off hold */
    PL_CALL_MSG_ACK = 0x59,       /* either: acknowledges (cumulatively) */
    PL_CALL_MSG_KEEPALIVE = 0x5a, /* either: are you there? (answered by ACK) */
};
#define PL_CALL_MSG_FIRST 0x50
#define PL_CALL_MSG_LAST 0x5f

#define PL_CALL_ID_SIZE 16
#define PL_CALL_HEADER_SIZE 25 /* type, call id, seq, ack */
#define PL_CALL_MSG_MAX 38     /* the largest message (INVITE) */
#define PL_CALL_VERSION 1

enum { PL_CALL_CODEC_OPUS = 1 };
/* Media flags of the capabilities. */
#define PL_CALL_CAP_FEC 0x01u /* in-band forward error correction */
#define PL_CALL_CAP_DTX 0x02u /* discontinuous transmission in silence */
#define PL_CALL_CAP_ALL (PL_CALL_CAP_FEC | PL_CALL_CAP_DTX)

/* What one side can do; the call uses the intersection. */
typedef struct pl_call_caps {
    uint8_t codec;    /* PL_CALL_CODEC_* */
    uint8_t flags;    /* PL_CALL_CAP_* */
    uint32_t min_bps; /* the bitrate range it can send and receive, bits per second */
    uint32_t max_bps;
} pl_call_caps;

/* REJECT reasons. */
typedef enum pl_call_reject_reason {
    PL_CALL_REJECT_DECLINED = 1,     /* the user said no */
    PL_CALL_REJECT_REFUSED = 2,      /* not allowed (a blocked caller) */
    PL_CALL_REJECT_INCOMPATIBLE = 3, /* no codec or bitrate in common, or an unknown version */
    PL_CALL_REJECT_GLARE = 4,        /* we are calling you too, and our invite wins */
} pl_call_reject_reason;
#define PL_CALL_REJECT_MAX PL_CALL_REJECT_GLARE

/* CANCEL reasons. */
enum { PL_CALL_CANCEL_USER = 1, PL_CALL_CANCEL_TIMEOUT = 2 };
/* BYE reasons. */
enum { PL_CALL_BYE_HANGUP = 1, PL_CALL_BYE_FAILURE = 2 };

/* One structure for every message; which fields travel depends on the type
 * (docs/calls.md). seq is 0 exactly for ACK and KEEPALIVE, which are never
 * sent again; every other type is numbered from 1 in each direction. */
typedef struct pl_call_msg {
    uint8_t type;
    uint8_t call_id[PL_CALL_ID_SIZE];
    uint32_t seq;
    uint32_t ack;            /* the highest seq received in order from the other side */
    uint8_t reason;          /* REJECT, CANCEL, BYE */
    uint8_t version;         /* INVITE */
    uint16_t ring_timeout_s; /* INVITE: the caller gives up after this long */
    pl_call_caps caps;       /* INVITE, ACCEPT */
} pl_call_msg;

/* ---- the engine ------------------------------------------------------------------------- */

typedef enum pl_call_state {
    PL_CALL_IDLE = 0,       /* no call (a free handle) */
    PL_CALL_DIALING,        /* outgoing: invite sent, callee not alerted yet */
    PL_CALL_RINGING,        /* incoming: the local user is being alerted */
    PL_CALL_RINGING_REMOTE, /* outgoing: the callee is being alerted */
    PL_CALL_ACTIVE,         /* answered, media flowing */
    PL_CALL_HELD,           /* answered, on hold (see pl_call_info.hold) */
    PL_CALL_ENDED,          /* over (see the end reason) */
} pl_call_state;

/* Who holds a call on hold (pl_call_info.hold, pl_call_event.hold). */
#define PL_CALL_HOLD_LOCAL 0x01u
#define PL_CALL_HOLD_REMOTE 0x02u

/* Why a call ended, as users are told. */
typedef enum pl_call_end_reason {
    PL_CALL_END_NONE = 0,
    PL_CALL_END_HANGUP_LOCAL,    /* we hung up an answered call */
    PL_CALL_END_HANGUP_REMOTE,   /* they did */
    PL_CALL_END_REJECTED,        /* the callee declined (either side sees this) */
    PL_CALL_END_BUSY,            /* the callee was in another call */
    PL_CALL_END_NO_ANSWER,       /* nobody answered in time (a missed call for the callee) */
    PL_CALL_END_CANCELLED,       /* the caller hung up before an answer */
    PL_CALL_END_UNREACHABLE,     /* the invite got no answer at all, or no session */
    PL_CALL_END_NETWORK_FAILURE, /* the peer went silent or its session went down */
    PL_CALL_END_REFUSED,         /* the callee does not take calls from us */
    PL_CALL_END_INCOMPATIBLE,    /* no codec or bitrate in common */
} pl_call_end_reason;
#define PL_CALL_END_MAX PL_CALL_END_INCOMPATIBLE

typedef enum pl_call_event_type {
    PL_CALL_EV_INCOMING = 1, /* a new incoming call, now RINGING */
    PL_CALL_EV_STATE,        /* the state or the hold flags changed (not for the end) */
    PL_CALL_EV_ENDED,        /* the call is over: the last event for the handle */
    PL_CALL_EV_MEDIA_START,  /* start sending and receiving media (caps: the agreed ones) */
    PL_CALL_EV_MEDIA_STOP,   /* stop: on hold, or over */
} pl_call_event_type;

/* Everything is copied into the event, so it stays valid whatever the
 * callback does to the engine (answering from INCOMING is expected). */
typedef struct pl_call_event {
    pl_call_event_type type;
    uint32_t handle;
    uint8_t call_id[PL_CALL_ID_SIZE];
    uint8_t peer_pk[32];            /* the peer's signing key, authenticated */
    char peer_name[PL_NAME_MAX + 1]; /* its certified name ("" if not known yet) */
    bool outgoing;                  /* the local user placed the call */
    pl_call_state state, prev_state;
    uint8_t hold;                   /* PL_CALL_HOLD_* */
    pl_call_end_reason reason;      /* ENDED */
    bool local;                     /* ENDED: this side's user or engine ended it */
    pl_call_caps caps;              /* INCOMING: the caller's; MEDIA_START: the agreed ones */
    pl_time now;
} pl_call_event;

/* What to do with an incoming call (pl_call_io.admit). */
typedef enum pl_call_admit {
    PL_CALL_ADMIT_RING = 0, /* alert the user */
    PL_CALL_ADMIT_ANSWER,   /* answer at once */
    PL_CALL_ADMIT_REFUSE,   /* refuse (the caller sees "refused"); no event */
} pl_call_admit;

typedef struct pl_call_io {
    void *ctx;
    /* Sends a message to the peer with this key, over the secure session
     * with it (opened to addr if there is none; addr may be NULL when one is
     * up). false: not even queued (it will be sent again anyway). */
    bool (*send)(void *ctx, const uint8_t peer_pk[32], const pl_addr *addr, const uint8_t *msg, size_t len,
                 pl_time now);
    void (*event)(void *ctx, const pl_call_event *ev);
    /* Optional: decides about an incoming call before anyone is alerted
     * (block lists). NULL: ring, or answer with auto_answer. */
    pl_call_admit (*admit)(void *ctx, const uint8_t peer_pk[32], const pl_cert *cert);
} pl_call_io;

/* Retransmission: the first try waits this long, each next twice as long up
 * to the maximum; after this many tries (15.75 s in all) the message is
 * given up. Ten tries make a spurious give-up rare even at 20% loss each
 * way (0.36^10, about 4 in 100,000 messages). */
#define PL_CALL_RTO_FIRST (250 * PL_MSEC)
#define PL_CALL_RTO_MAX (2 * PL_SEC)
#define PL_CALL_TRIES 10
/* A call whose invite got no answer at all (not even an acknowledgement)
 * this long after dialing is unreachable. It outlasts every handshake
 * attempt of the session layer (the last starts about 17 s after the
 * first), so a session that comes up late still carries the invite. */
#define PL_CALL_UNREACHABLE_AFTER (20 * PL_SEC)
/* An unanswered call is cancelled after this long. */
#define PL_CALL_RING_TIMEOUT_DEFAULT (30 * PL_SEC)
/* A callee stops ringing this long after the caller's own timeout, in case
 * the caller's CANCEL never comes. */
#define PL_CALL_RING_MARGIN (5 * PL_SEC)
/* Liveness: with nothing heard from the peer for PROBE_AFTER the engine
 * sends a KEEPALIVE (answered by an ACK), then one every PROBE_EVERY while
 * it still hears nothing; after the silence timeout the call has failed.
 * Media the media layer reports counts as heard, so a call with media
 * flowing sends no keepalives; a call on hold sends one exchange every
 * 2 s, and 16 probes must all fail before a live peer is given up. */
#define PL_CALL_SILENCE_DEFAULT (10 * PL_SEC)
#define PL_CALL_PROBE_AFTER (2 * PL_SEC)
#define PL_CALL_PROBE_EVERY (500 * PL_MSEC)
/* An answered call whose peer has been silent this long ends (network
 * failure) when the same peer invites us again: it lost the call (it
 * restarted). Media and keepalives keep a live peer well inside this. */
#define PL_CALL_LOST_AFTER PL_SEC
/* An ended call is remembered this long, to answer late copies of its
 * messages (longer than a peer's whole retransmission schedule). */
#define PL_CALL_LINGER (24 * PL_SEC)
#define PL_CALL_SLOTS_DEFAULT 16
#define PL_CALL_SLOTS_MAX 1024
/* Messages a call may have waiting to be sent behind the one in flight. */
#define PL_CALL_QUEUE 8

typedef struct pl_call_config {
    uint8_t own_pk[32];       /* our signing key: decides glare */
    const pl_rng *rng;        /* call ids */
    const pl_mem *mem;        /* NULL: the C heap */
    pl_call_caps caps;        /* zero: Opus, FEC and DTX, 6 to 64 kbit/s */
    pl_time ring_timeout;     /* 0: PL_CALL_RING_TIMEOUT_DEFAULT; 1 s .. 600 s */
    pl_time silence_timeout;  /* 0: PL_CALL_SILENCE_DEFAULT; 3 s .. 600 s */
    uint32_t max_calls;       /* calls remembered at once, ended ones too; 0: 16 */
    bool auto_answer;         /* answer incoming calls at once (headless use) */
    bool call_waiting;        /* ring (not BUSY) when already in a call, and allow
                                 dialing a second call */
} pl_call_config;

typedef struct pl_call_info {
    uint32_t handle;
    pl_call_state state;
    uint8_t hold;              /* PL_CALL_HOLD_* */
    bool outgoing;             /* the local user placed it */
    bool muted;                /* the daemon's flag for the media layer; never signalled */
    uint8_t call_id[PL_CALL_ID_SIZE];
    uint8_t peer_pk[32];
    char peer_name[PL_NAME_MAX + 1];
    pl_call_caps caps;         /* agreed, once answered */
    pl_call_end_reason reason; /* ENDED */
    bool end_local;
    pl_time started;           /* dialed, or the invite arrived */
    pl_time answered;          /* 0: never */
    pl_time ended;             /* 0: not yet */
} pl_call_info;

/* Counters for operators and tests. */
typedef struct pl_call_stats {
    uint64_t rx_messages;      /* call messages handed in */
    uint64_t rx_malformed;     /* failed to decode */
    uint64_t rx_unknown_call;  /* a call id we do not know (from that peer) */
    uint64_t rx_duplicates;    /* seen before: acknowledged again, not acted on */
    uint64_t rx_out_of_order;  /* ahead of the next expected, not a final message: dropped */
    uint64_t rx_unexpected;    /* well-formed but meaningless in the call's state or role */
    uint64_t rx_bad_ack;       /* acknowledged something never sent (ignored) */
    uint64_t tx_messages;      /* every send, retransmissions and ACKs included */
    uint64_t retransmissions;
    uint64_t acks_sent;
    uint64_t calls_placed, calls_received;
    uint64_t busy_sent, refused_sent;
    uint64_t glare_won, glare_yielded;
    uint64_t evicted;          /* ended calls forgotten early for room */
} pl_call_stats;

typedef enum pl_call_err {
    PL_CALL_OK = 0,
    PL_CALL_ERR_CONFIG,
    PL_CALL_ERR_NOMEM,
    PL_CALL_ERR_MALFORMED, /* a message that does not decode */
    PL_CALL_ERR_BUFFER,    /* an output buffer too small */
    PL_CALL_ERR_NO_CALL,   /* no call with that handle */
    PL_CALL_ERR_STATE,     /* not allowed in the call's state */
    PL_CALL_ERR_BUSY,      /* already in a call (without call waiting) */
    PL_CALL_ERR_FULL,      /* no room for another call, or too many messages waiting */
    PL_CALL_ERR_SEND,      /* the first message could not even be queued (no address?) */
    PL_CALL_ERR_BAD_KEY,   /* one's own key */
} pl_call_err;

/* Encodes to at most PL_CALL_MSG_MAX bytes; returns the size, or 0 when buf
 * is too small or a field is out of range. */
size_t pl_call_msg_encode(uint8_t *buf, size_t cap, const pl_call_msg *m);
/* Decodes a whole message, type byte included; refuses trailing bytes,
 * unknown flags and out-of-range fields. */
pl_call_err pl_call_msg_decode(pl_call_msg *m, const uint8_t *buf, size_t len);
/* The intersection of two sets of capabilities; false if there is none. */
bool pl_call_caps_agree(const pl_call_caps *a, const pl_call_caps *b, pl_call_caps *out);

pl_call_err pl_call_new(pl_call **out, const pl_call_config *cfg, const pl_call_io *io);
/* Not from inside one of the engine's callbacks. */
void pl_call_free(pl_call *call);

/* Calls the peer with this key (its certified name, when known, for the
 * events; the address for a session if none is up). If that peer is ringing
 * us already, this answers its call instead. *handle gets the call. */
pl_call_err pl_call_dial(pl_call *call, const uint8_t peer_pk[32], const char *peer_name, const pl_addr *addr,
                         pl_time now, uint32_t *handle);
/* Answers a RINGING call. */
pl_call_err pl_call_answer(pl_call *call, uint32_t handle, pl_time now);
/* Declines a RINGING call (DECLINED or REFUSED). */
pl_call_err pl_call_reject(pl_call *call, uint32_t handle, pl_call_reject_reason reason, pl_time now);
/* Ends a call in any live state: cancels an outgoing one, declines an
 * incoming one, says BYE to an answered one. */
pl_call_err pl_call_hangup(pl_call *call, uint32_t handle, pl_time now);
pl_call_err pl_call_hold(pl_call *call, uint32_t handle, pl_time now);
pl_call_err pl_call_resume(pl_call *call, uint32_t handle, pl_time now);
/* Mute is the media layer's business; the engine only keeps the flag. */
pl_call_err pl_call_set_mute(pl_call *call, uint32_t handle, bool muted);
/* Call waiting on or off while the engine runs (a conference host holds
 * several calls at once). Turning it off while more than one call is live
 * fails (PL_CALL_ERR_STATE) and changes nothing. */
pl_call_err pl_call_set_call_waiting(pl_call *call, bool on);

/* An authenticated message from the peer with key pk (cert: its
 * certificate). Returns false when the type is not a call message, for the
 * driver to offer elsewhere. */
bool pl_call_message(pl_call *call, const uint8_t pk[32], const pl_cert *cert, const pl_addr *from,
                     const uint8_t *msg, size_t len, pl_time now);
/* The session with pk went down (no handshake, silence, revocation): its
 * calls end (UNREACHABLE if it never answered, else NETWORK_FAILURE). */
void pl_call_peer_down(pl_call *call, const uint8_t pk[32], pl_time now);
/* The media layer heard from pk (a voice packet or report): its calls are
 * alive. Cheap enough for every packet. */
void pl_call_heard(pl_call *call, const uint8_t pk[32], pl_time now);
void pl_call_tick(pl_call *call, pl_time now);
pl_time pl_call_next_timeout(const pl_call *call);

pl_call_err pl_call_get_info(const pl_call *call, uint32_t handle, pl_call_info *out);
/* The live (not ended) call with this peer, or 0. */
uint32_t pl_call_find(const pl_call *call, const uint8_t peer_pk[32]);
/* Handles of the calls not yet ended; returns how many were written. */
size_t pl_call_list(const pl_call *call, uint32_t *handles, size_t max);
pl_call_stats pl_call_get_stats(const pl_call *call);
/* Checks the engine's internal invariants (tests and fuzzers): true when
 * consistent. */
bool pl_call_selfcheck(const pl_call *call);

const char *pl_call_state_name(pl_call_state state);
/* Short text for users: "hung up", "rejected", "no answer", ... */
const char *pl_call_end_name(pl_call_end_reason reason);
const char *pl_call_strerror(pl_call_err err);

#endif
