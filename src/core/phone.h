/*
 * phone.h - one user's telephone (docs/calls.md, "Setting a call up"),
 * sans-I/O.
 *
 * The phone ties together what a call needs, for the node the stack runs:
 *  - the call engine (call.h): signalling, its reliability and timers;
 *  - per call, a path manager (path.h) that carries the end-to-end session
 *    with the peer directly or through relays, and a media stream
 *    (stream.h) that turns 20 ms audio frames into sealed payloads and back;
 *  - the directory client, to find the callee by name (a verified record:
 *    its certificate, its supernode, its addresses, its NAT);
 *  - the supernode's relay (relay.h), asked for an allocation at each end;
 *  - the rendezvous through the supernodes (callsvc.h) for a first contact
 *    that cannot go direct: a callee behind a filtering NAT, or in privacy
 *    mode;
 *  - trust (trust.h): the pinned key of the peer (a changed key is reported
 *    as an event) and the call's safety number.
 *
 * The end-to-end session is the link's session with the peer (link.h): one
 * identity, one socket, one pl_sec. The phone points that session at its
 * path manager's virtual session address for the whole call, routes what
 * the session sends there (pl_phone_route), unwraps relayed datagrams for
 * it (pl_phone_datagram), and closes the session when the call is over.
 *
 * Audio is the driver's: every 20 ms it hands each live call a captured
 * frame and gets the frame to play (pl_phone_audio). Everything else runs
 * on the messages, datagrams and timers the stack hands in.
 */
#ifndef PL_PHONE_H
#define PL_PHONE_H

#include "call.h"
#include "link.h"
#include "node.h"
#include "parley.h"
#include "path.h"
#include "stream.h"
#include "trust.h"

typedef struct pl_phone pl_phone;

/* Envelope content types of the rendezvous (envelope.h): a caller's first
 * contact and the callee's answer, each carrying the sender's offer. */
enum { PL_PHONE_ENV_KNOCK = 16, PL_PHONE_ENV_KNOCK_ANSWER = 17 };

/* What a knock and its answer carry, inside the envelope: the sender's
 * supernode (where the answer goes) and its offer (path.h). */
#define PL_PHONE_KNOCK_VERSION 1
#define PL_PHONE_KNOCK_FIXED 34 /* version, flags (0), the supernode's key */
typedef struct pl_phone_knock {
    uint8_t supernode[32];
    pl_path_offer offer;
} pl_phone_knock;

/* Encodes a knock body (0 when cap is too small or the offer invalid). */
size_t pl_phone_encode_knock(uint8_t *buf, size_t cap, const pl_phone_knock *k);
/* Decodes one; false on an unknown version, flags, or an offer that does
 * not decode (path.h's rules: canonical, no trailing bytes). */
bool pl_phone_decode_knock(pl_phone_knock *k, const uint8_t *buf, size_t len);

/* Timers. */
#define PL_PHONE_ALLOC_TIMEOUT PL_SEC        /* a relay grant not here by then: go on without it */
#define PL_PHONE_STANDBY_ALLOC_TIMEOUT (3 * PL_SEC) /* the standby relay's grant (a new session first) */
#define PL_PHONE_KNOCK_EVERY PL_SEC          /* first contact again, while no session is up */
#define PL_PHONE_KNOCK_TRIES 6
#define PL_PHONE_KNOCK_MAX_AGE (60 * PL_SEC) /* a knock sealed longer ago (or ahead) is refused */
#define PL_PHONE_PREPARED_LIFE (25 * PL_SEC) /* a knock never followed by an invite is forgotten */
#define PL_PHONE_OFFER_EVERY PL_SEC          /* our offer again in the session ... */
#define PL_PHONE_OFFER_TRIES 3               /* ... this many times in all */
#define PL_PHONE_LINGER (4 * PL_SEC)         /* an ended call keeps its paths for the last messages */
#define PL_PHONE_MAX_CALLS 40                /* a conference host holds a call per participant (32) */
#define PL_PHONE_MAX_PREPARED 4              /* callers knocking at once, not yet inviting */

/* Why a call ended: the call engine's reasons (1..PL_CALL_END_MAX, call.h)
 * and the phone's own, before the engine had the call. */
enum {
    PL_PHONE_END_NOT_FOUND = 32, /* no such user in the directory */
    PL_PHONE_END_OFFLINE,        /* the directory says the user is offline */
    PL_PHONE_END_NO_DIRECTORY,   /* the look-up failed: not attached, or no replica answered */
    PL_PHONE_END_KEY_CHANGED,    /* the user's key is not the pinned one (block_changed_keys) */
    PL_PHONE_END_SELF,           /* calling oneself */
    PL_PHONE_END_FAILED,         /* no room, no memory */
    PL_PHONE_END_MERGED,         /* the peer was calling us: its call was answered instead (merged_into) */
};

typedef enum pl_phone_event_type {
    PL_PHONE_EV_DIALING = 1, /* the callee is found: invite sent (peer, safety number known) */
    PL_PHONE_EV_INCOMING,    /* a call for us: ringing (or answered at once with auto-answer) */
    PL_PHONE_EV_STATE,       /* the call's state or hold flags changed */
    PL_PHONE_EV_MEDIA,       /* media started or stopped (info->media) */
    PL_PHONE_EV_PATH,        /* the session moved to another path (info->path) */
    PL_PHONE_EV_KEY,         /* the peer's key against the pin (key_verdict; warning when CHANGED) */
    PL_PHONE_EV_ENDED,       /* over (info->end_reason); the last event for the call */
} pl_phone_event_type;

typedef struct pl_phone_call_info {
    uint32_t id;                     /* the phone's handle: stable for the call's life */
    pl_call_state state;             /* DIALING from the dial on (look-up included), ENDED at the end */
    bool looking_up;                 /* the callee is being looked up */
    bool outgoing;
    uint8_t hold;                    /* PL_CALL_HOLD_* */
    bool muted;
    char peer_name[PL_NAME_MAX + 1];
    uint8_t peer_pk[32];             /* zero until known */
    char safety_number[PL_TRUST_TEXT_MAX]; /* "" until the peer's key is known */
    uint8_t key_verdict;             /* pl_trust_pin, 0 when nothing was pinned or compared */
    uint8_t end_reason;              /* pl_call_end_reason or PL_PHONE_END_* */
    bool end_local;
    uint32_t merged_into;            /* END_MERGED: the call that goes on */
    pl_time dialed, responded, answered, ended; /* responded: ringing (or answered) heard */
    pl_time first_media_rx;
    bool media;                      /* a stream is sending and playing */
    bool have_path;
    pl_path_info path;               /* the active path */
    uint32_t paths_alive;
    pl_media_stats stats;
} pl_phone_call_info;

typedef struct pl_phone_event {
    pl_phone_event_type type;
    uint32_t id;
    const pl_phone_call_info *info; /* valid during the callback */
    const char *warning;            /* KEY with CHANGED: text for people (trust.h) */
    pl_time now;
} pl_phone_event;

/* The driver's trust store (the daemon's contacts.db). */
typedef struct pl_phone_pins {
    void *ctx;
    /* The key pinned for name; false when none. */
    bool (*lookup)(void *ctx, const char *name, uint8_t key[32]);
    /* Called when a key is seen for the first time (pin it, if name is a
     * contact). May be NULL. */
    void (*first_seen)(void *ctx, const char *name, const uint8_t key[32]);
} pl_phone_pins;

typedef struct pl_phone_config {
    /* Filled by the stack. */
    const pl_identity *identity; /* copied */
    const uint8_t *cert;         /* own certificate, encoded */
    size_t cert_len;
    uint8_t ca_pk[32];
    const pl_rng *rng;
    const pl_mem *mem;
    pl_addr host_addr;           /* own host candidate; PL_AF_NONE or a wildcard: none */
    bool privacy;                /* location privacy: no addresses offered, own relays only */
    bool tcp_only;               /* no UDP: relays over TCP only */
    /* The driver's choices. */
    bool relay_only;             /* no direct paths (tests and measurements) */
    bool no_standby_relay;       /* no second relay at a standby supernode (tests and measurements) */
    bool auto_answer;
    bool block_changed_keys;     /* refuse calls with a key that is not the pinned one */
    pl_time ring_timeout;        /* 0: the engine's default (30 s) */
    pl_time silence_timeout;     /* 0: the engine's default (10 s) */
    pl_media_config media;       /* rng and mem are filled in */
    pl_phone_pins pins;
    /* Optional tap: every media payload sent, in the clear, before sealing
     * (traces for tests that prove a relay never sees them). */
    void (*media_sent)(void *ctx, uint32_t id, const uint8_t *payload, size_t len);
    void *media_sent_ctx;
} pl_phone_config;

typedef struct pl_phone_io {
    void *ctx;
    /* A real datagram for the network (TCP-marked: the stream). */
    void (*send_datagram)(void *ctx, const pl_addr *to, const uint8_t *data, size_t len);
    void (*event)(void *ctx, const pl_phone_event *ev);
} pl_phone_io;

typedef struct pl_phone_stats {
    uint64_t dials, incoming;
    uint64_t knocks_sent, knocks_received, knock_answers_sent, knock_answers_received;
    uint64_t knocks_refused;     /* envelopes that did not open, too old, replays, not for us */
    uint64_t offers_sent, offers_received, offers_malformed;
    uint64_t relay_grants, relay_refusals, relay_timeouts;
    uint64_t standby_requests, standby_grants, standby_refusals, standby_timeouts; /* relays at a standby supernode */
    uint64_t init_replays;       /* a pending handshake sent again on paths added since */
    uint64_t media_unrouted;     /* media from a peer with no stream */
    uint64_t datagrams_unrouted; /* relay framing for no call of ours */
} pl_phone_stats;

typedef enum pl_phone_err {
    PL_PHONE_OK = 0,
    PL_PHONE_ERR_CONFIG,
    PL_PHONE_ERR_NOMEM,
    PL_PHONE_ERR_BAD_NAME, /* not a valid user name */
    PL_PHONE_ERR_OFFLINE,  /* not attached to a supernode: no directory */
    PL_PHONE_ERR_FULL,     /* too many calls */
    PL_PHONE_ERR_NO_CALL,  /* no such call */
    PL_PHONE_ERR_STATE,    /* not allowed in the call's state */
    PL_PHONE_ERR_BUSY,     /* already in a call */
    PL_PHONE_ERR_SELF,     /* calling oneself */
} pl_phone_err;

pl_phone_err pl_phone_new(pl_phone **out, const pl_phone_config *cfg, const pl_phone_io *io, pl_link *link,
                          pl_node *node);
void pl_phone_free(pl_phone *ph);

/* ---- the user's side ---------------------------------------------------------------------- */

/* Calls a user by name; *id names the call from now on (events, info). A
 * user who is ringing us is answered instead (the ringing call's id). */
pl_phone_err pl_phone_dial(pl_phone *ph, const char *name, pl_time now, uint32_t *id);
pl_phone_err pl_phone_answer(pl_phone *ph, uint32_t id, pl_time now);
pl_phone_err pl_phone_reject(pl_phone *ph, uint32_t id, pl_time now);
pl_phone_err pl_phone_hangup(pl_phone *ph, uint32_t id, pl_time now);
pl_phone_err pl_phone_hold(pl_phone *ph, uint32_t id, pl_time now);
pl_phone_err pl_phone_resume(pl_phone *ph, uint32_t id, pl_time now);
pl_phone_err pl_phone_mute(pl_phone *ph, uint32_t id, bool mute, pl_time now);
/* The 20 ms audio tick of a call: `in` is the captured frame (NULL: silence),
 * `out` gets the frame to play (silence when no media flows). Returns true
 * when media flows (answered and not on hold). */
bool pl_phone_audio(pl_phone *ph, uint32_t id, const int16_t *in, int16_t *out, pl_time now);
/* The two halves of pl_phone_audio, for a driver that must have every
 * call's incoming frame before it can make any call's outgoing one (a
 * conference host mixes): pull first, capture after, once each per 20 ms
 * tick. Each returns true when media flows. */
bool pl_phone_pull(pl_phone *ph, uint32_t id, int16_t *out, pl_time now);
bool pl_phone_capture(pl_phone *ph, uint32_t id, const int16_t *in, pl_time now);
/* Several calls at once (a conference): dialing is allowed while other
 * calls are live, and a new incoming call rings (call waiting) instead of
 * meeting BUSY. Turning it off while more than one call is live fails
 * (PL_PHONE_ERR_STATE). Off by default. */
pl_phone_err pl_phone_set_multi_call(pl_phone *ph, bool on);

bool pl_phone_get_info(const pl_phone *ph, uint32_t id, pl_phone_call_info *info);
/* The calls the phone knows (ended ones until their linger is over). */
size_t pl_phone_list(const pl_phone *ph, uint32_t *ids, size_t max);
pl_phone_stats pl_phone_get_stats(const pl_phone *ph);
pl_call *pl_phone_engine(pl_phone *ph);

/* ---- the stack's side --------------------------------------------------------------------- */

/* The current time, before anything that may make the session send. */
void pl_phone_set_time(pl_phone *ph, pl_time now);
/* An authenticated message from pk: calls, paths, media, and (from our
 * supernode) relay grants and rendezvous notes. False: not the phone's. */
bool pl_phone_message(pl_phone *ph, const uint8_t pk[32], const pl_cert *cert, const pl_addr *from,
                      const uint8_t *msg, size_t len, pl_time now);
/* A datagram the session layer sends to a virtual address (path.h): true
 * when it was one of the phone's (sent, or dropped). */
bool pl_phone_route(pl_phone *ph, const pl_addr *to, const uint8_t *data, size_t len);
/* A relay-framed datagram from the network; false when it is no call's. */
bool pl_phone_datagram(pl_phone *ph, const pl_addr *from, const uint8_t *data, size_t len, pl_time now);
/* After the session layer handled datagrams or timers: every call's
 * session is pointed back at its path manager. */
void pl_phone_repin(pl_phone *ph);
void pl_phone_link_event(pl_phone *ph, const pl_link_event *ev);
void pl_phone_node_event(pl_phone *ph, const pl_node_event *ev);
void pl_phone_tick(pl_phone *ph, pl_time now);
pl_time pl_phone_next_timeout(const pl_phone *ph);

const char *pl_phone_end_name(uint8_t reason);
const char *pl_phone_strerror(pl_phone_err err);

#endif
