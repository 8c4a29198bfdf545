/*
 * members.h - supernode membership: who the supernodes are, where they are,
 * and which of them are alive (docs/membership.md).
 *
 * Every supernode runs one instance and knows every other supernode. The
 * protocol is SWIM with the Lifeguard refinements:
 *
 *  - Failure detection. Each protocol period (1 s) the instance pings one
 *    member, walking a fresh random order every round. No ack within the
 *    probe timeout: k other members are asked to ping it (ping-req). Still
 *    no ack by the end of the period: the member is suspected. A suspicion
 *    that nobody refutes turns into "dead" after a timeout that grows with
 *    log10(n) and shrinks as independent members confirm it. A member that
 *    hears itself suspected or declared dead refutes by raising its
 *    incarnation number. A local health score stretches the instance's own
 *    timeouts while it misses acks and nacks, so a slow or overloaded
 *    instance accuses others less.
 *  - Dissemination. Changes (alive, suspect, dead, left) ride on pings,
 *    acks, ping-reqs and nacks, newest first, each sent about
 *    lambda * log2(n) times, within a byte cap per message. While changes
 *    are waiting, a gossip message every 200 ms to a random member adds
 *    capacity (nothing waits in a quiet network, so it costs nothing then);
 *    hearing a change back from others counts as sending it once.
 *  - Authenticity. "X is alive at address A with incarnation i" and "X left
 *    at incarnation i" are signed by X's own Ed25519 key, and every instance
 *    checks the signature before it believes one, so nobody can resurrect
 *    or move another member. "Suspect" and "dead" are accusations anybody
 *    may make; the accused answers them with a new signed claim. An
 *    accusation only ever names an incarnation that the accused signed, so
 *    nobody can push another member's incarnation out of reach.
 *  - Join and repair. A joining instance pulls the whole table from a seed
 *    in chunks (sync request and response, with a cursor), several chunks in
 *    flight at once, then announces itself. Every 30 s an anti-entropy round
 *    compares per-bucket digests with one random member (sometimes one
 *    believed dead, which is how a healed partition finds itself again) and
 *    both sides pull only the buckets that differ.
 *
 * Transport. Membership messages travel between supernodes inside secure
 * sessions that the driver owns, so the sender's key is already
 * authenticated when a message reaches pl_members_receive. The first byte
 * of every message is its type, in 0x10..0x1f (PL_MEMBERS_MSG_MIN..MAX); the
 * driver dispatches on it. The instance never allocates per message, never
 * reads a clock and never draws randomness except through the pl_rng it is
 * given.
 *
 * Scale. One process of the simulator runs 10,000 instances of 10,000
 * members each, so a member costs 68 bytes in the table plus about 6 in the
 * hash index; the 64-byte signature of a member's claim is stored only once
 * the instance has verified one (members seeded with pl_members_add_known
 * carry none until they sign something). Work per message is bounded by the
 * message; work per protocol period is O(1) amortised.
 */
#ifndef PL_MEMBERS_H
#define PL_MEMBERS_H

#include "parley.h"

/* The message type range this module owns (first byte of each message). */
#define PL_MEMBERS_MSG_MIN 0x10
#define PL_MEMBERS_MSG_MAX 0x1f
/* Message types, for drivers and tests; layouts in docs/membership.md. */
enum {
    PL_MEMBERS_MSG_PING = 0x10,
    PL_MEMBERS_MSG_ACK = 0x11,
    PL_MEMBERS_MSG_PING_REQ = 0x12,
    PL_MEMBERS_MSG_NACK = 0x13,
    PL_MEMBERS_MSG_SYNC_REQ = 0x14,
    PL_MEMBERS_MSG_SYNC_RESP = 0x15,
    PL_MEMBERS_MSG_DIGEST = 0x16,
    PL_MEMBERS_MSG_GOSSIP = 0x17,
};
#define PL_MEMBERS_MSG_KINDS 16 /* counters are indexed by type - PL_MEMBERS_MSG_MIN */

/* The largest message the instance ever sends: 1,200 bytes on the wire less
 * the secure-session overhead (32) and an IPv6 + UDP header (48). */
#define PL_MEMBERS_MAX_MESSAGE 1120
#define PL_MEMBERS_MIN_MESSAGE 1100 /* the smallest cap a config may set (a digest needs 1,027) */

/* Anti-entropy buckets: a member's bucket is the first byte of its key. */
#define PL_MEMBERS_BUCKETS 256

typedef struct pl_members pl_members;

typedef enum pl_member_state {
    PL_MEMBER_ALIVE = 1,
    PL_MEMBER_SUSPECT = 2,
    PL_MEMBER_DEAD = 3,
    PL_MEMBER_LEFT = 4,
} pl_member_state;

typedef struct pl_member_info {
    uint8_t pk[32];
    pl_addr addr;
    uint32_t incarnation; /* 0: seeded by pl_members_add_known, no claim seen yet */
    pl_member_state state;
    bool verified;        /* a signed claim from the member itself is held */
    bool self;
    pl_time since;        /* when the state last changed (to the second) */
} pl_member_info;

typedef enum pl_members_event_type {
    PL_MEMBERS_EV_UP = 1,   /* a new member, or one back from dead or left */
    PL_MEMBERS_EV_SUSPECT,  /* an alive member became suspect */
    PL_MEMBERS_EV_CLEARED,  /* a suspect member refuted and is alive again */
    PL_MEMBERS_EV_DOWN,     /* a member is dead or left (info.state says which) */
    PL_MEMBERS_EV_ADDRESS,  /* a live member moved (old_addr -> info.addr) */
    PL_MEMBERS_EV_SYNCED,   /* the join's full pull from a seed finished */
} pl_members_event_type;

typedef struct pl_members_event {
    pl_members_event_type type;
    const pl_member_info *info; /* the member after the change; SYNCED: the seed */
    const pl_addr *old_addr;    /* ADDRESS only */
    pl_time now;
} pl_members_event;

/* Callbacks run synchronously inside pl_members_* calls and must not call
 * back into the same instance. */
typedef struct pl_members_io {
    void *ctx;
    /* Sends msg to the supernode with this key, at this address, over the
     * secure session the driver keeps with it. */
    void (*send)(void *ctx, const uint8_t to_pk[32], const pl_addr *to_addr, const uint8_t *msg, size_t len);
    void (*event)(void *ctx, const pl_members_event *ev); /* may be NULL */
} pl_members_io;

/* Verifies an Ed25519 signature; true when it is good. The default is
 * crypto_sign_verify_detached. A simulator that runs thousands of instances
 * in one process may pass a memoising verifier (verification is a pure
 * function of its inputs), since every instance checks every claim. */
typedef bool (*pl_members_verify_fn)(void *ctx, const uint8_t sig[64], const uint8_t *msg, size_t len,
                                     const uint8_t pk[32]);

typedef struct pl_members_config {
    const pl_identity *identity; /* the supernode's own key; the signing key is copied and wiped on free */
    pl_addr addr;                /* where other supernodes reach this one */
    /* The first incarnation to claim; 0 means 1. A restarted instance that
     * finds an older claim of its own in the network raises it on its own,
     * but a driver that persists the last incarnation (or passes the Unix
     * time in seconds) rejoins without a refutation round. */
    uint32_t incarnation;
    const pl_rng *rng;
    const pl_mem *mem;           /* NULL: the C heap */
    uint32_t max_members;        /* including self; 0: 16384; at most 1 << 22 */
    /* Timers; 0 picks the default in brackets. */
    pl_time protocol_period;     /* [1 s] one probe per period */
    pl_time probe_timeout;       /* [period / 2] wait for a direct ack before ping-req */
    uint32_t indirect_probes;    /* [3] k members asked to probe on our behalf */
    uint32_t suspicion_mult;     /* [4] minimum suspicion = mult * max(1, log10 n) periods */
    uint32_t suspicion_max_mult; /* [6] maximum suspicion = this * the minimum */
    uint32_t retransmit_mult;    /* [3] lambda: each update is sent lambda * ceil(log2(n + 1)) times */
    pl_time gossip_interval;     /* [200 ms] while updates are queued, one gossip message per interval
                                    to a random member; PL_TIME_NEVER: piggyback only */
    pl_time anti_entropy_period; /* [30 s] one digest exchange per period, +-25 %; PL_TIME_NEVER: off */
    pl_time dead_reap_time;      /* [24 h] how long dead and left members are remembered */
    uint32_t max_message;        /* [PL_MEMBERS_MAX_MESSAGE] byte cap per message */
    uint32_t sync_parallel;      /* [8] sync requests in flight while joining */
    uint32_t sync_serve_rate;    /* [200] sync responses served per second, at most */
    pl_members_verify_fn verify; /* NULL: crypto_sign_verify_detached */
    void *verify_ctx;
} pl_members_config;

typedef enum pl_members_err {
    PL_MEMBERS_OK = 0,
    PL_MEMBERS_ERR_CONFIG,  /* a bad or missing configuration field */
    PL_MEMBERS_ERR_NOMEM,
    PL_MEMBERS_ERR_FULL,    /* max_members reached */
    PL_MEMBERS_ERR_EXISTS,  /* add_known: the member is already known */
    PL_MEMBERS_ERR_SELF,    /* add_known: that is our own key */
    PL_MEMBERS_ERR_ADDR,    /* not a usable address */
    PL_MEMBERS_ERR_NO_SEED, /* join: no other member is known */
    PL_MEMBERS_ERR_LEFT,    /* the instance has left; join again first */
} pl_members_err;

/* Traffic and decisions, for operators, tests and the simulator's
 * "membership traffic per supernode" figure. Message counters are indexed by
 * type - PL_MEMBERS_MSG_MIN; bytes are message bytes (no IP, UDP or session
 * overhead). */
typedef struct pl_members_stats {
    uint64_t tx_msgs[PL_MEMBERS_MSG_KINDS], tx_bytes[PL_MEMBERS_MSG_KINDS];
    uint64_t rx_msgs[PL_MEMBERS_MSG_KINDS], rx_bytes[PL_MEMBERS_MSG_KINDS];
    uint64_t updates_sent, updates_received;
    uint64_t drop_malformed;  /* refused by the decoder (incl. unknown types) */
    uint64_t drop_signature;  /* a claim whose signature does not verify */
    uint64_t drop_stale;      /* a claim or accusation older than what is held */
    uint64_t drop_unknown;    /* an accusation about a member we do not know, or naming an
                                 incarnation it never signed */
    uint64_t drop_full;       /* a new member while the table was full */
    uint64_t drop_busy;       /* ping-req or sync request refused for lack of room or rate */
    uint64_t probes, probes_failed, indirect_probes;
    uint64_t suspicions, deaths, refutations;
    uint64_t sync_entries_received, anti_entropy_rounds, anti_entropy_pulls;
    uint32_t health; /* the local health score (Lifeguard), 0 is best */
} pl_members_stats;

pl_members_err pl_members_new(pl_members **out, const pl_members_config *config, const pl_members_io *io,
                              pl_time now);
/* Wipes the signing key and frees everything. */
void pl_members_free(pl_members *m);

/* A message from the supernode whose key the secure session authenticated,
 * arriving from from_addr. Malformed messages are counted and dropped. */
void pl_members_receive(pl_members *m, const uint8_t from_pk[32], const pl_addr *from_addr, const uint8_t *msg,
                        size_t len, pl_time now);
void pl_members_tick(pl_members *m, pl_time now);
/* When pl_members_tick next has work (never PL_TIME_NEVER once running). */
pl_time pl_members_next_timeout(const pl_members *m);

/* Seeds the table with a supernode known from a host cache or the shipped
 * bootstrap list: alive, incarnation 0, unverified. Any claim it signs
 * replaces this; it is probed like every member, and it is a candidate
 * seed for pl_members_join. Sends nothing. */
pl_members_err pl_members_add_known(pl_members *m, const uint8_t pk[32], const pl_addr *addr, pl_time now);
/* Pulls the full table from one known member (retrying others when it does
 * not answer) and announces this instance. After a leave it rejoins with a
 * new incarnation. */
pl_members_err pl_members_join(pl_members *m, pl_time now);
/* Gracefully leaves: spreads a signed "left" claim. Keep calling tick and
 * receive for a few periods (until pl_members_pending_updates is 0) so the
 * claim gets out, then free the instance. */
pl_members_err pl_members_leave(pl_members *m, pl_time now);
/* Moves this instance to a new address: a new signed claim with a new
 * incarnation. */
pl_members_err pl_members_set_addr(pl_members *m, const pl_addr *addr, pl_time now);

/* Queries. */
uint32_t pl_members_count(const pl_members *m);       /* entries, any state, self included */
uint32_t pl_members_alive_count(const pl_members *m); /* alive or suspect, self included */
uint32_t pl_members_incarnation(const pl_members *m); /* our own */
bool pl_members_find(const pl_members *m, const uint8_t pk[32], pl_member_info *out);
/* Iterates the table: start with *cursor = 0; false at the end. */
bool pl_members_next(const pl_members *m, uint32_t *cursor, pl_member_info *out);
uint32_t pl_members_pending_updates(const pl_members *m); /* updates still to be gossiped */
bool pl_members_synced(const pl_members *m);              /* the join's pull finished */
pl_members_stats pl_members_get_stats(const pl_members *m);
/* Bytes of memory the instance holds. */
size_t pl_members_memory(const pl_members *m);

/* The byte string a member signs for a claim (docs/membership.md); exposed
 * so that tests and tools can forge and check claims. state is ALIVE or LEFT.
 * Returns the length, at most PL_MEMBERS_CLAIM_MAX. */
#define PL_MEMBERS_CLAIM_MAX 80
size_t pl_members_claim_bytes(uint8_t out[PL_MEMBERS_CLAIM_MAX], pl_member_state state, const uint8_t pk[32],
                              const pl_addr *addr, uint32_t incarnation);

const char *pl_members_strerror(pl_members_err err);
const char *pl_member_state_name(pl_member_state state);

#endif
