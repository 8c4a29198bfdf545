/*
 * supernode.h - the supernode's side of the overlay: the nodes attached to
 * it (and, as they arrive, the directory, presence and qualification).
 *
 * A node attaches over an authenticated session; the supernode still makes
 * it sign a fresh challenge with its certificate's key, so that only the key
 * holder, live and now, is accepted. Attached nodes send keepalives; one
 * that stays silent for PL_SUPER_LOSS_FACTOR keepalive periods is lost. A
 * full supernode refuses new nodes and names others to try.
 *
 * Sans-I/O like every core: messages in (from the link, already
 * authenticated), messages out through pl_super_io, and the time.
 */
#ifndef PL_SUPERNODE_H
#define PL_SUPERNODE_H

#include "callsvc.h"
#include "directory.h"
#include "mailbox.h"
#include "members.h"
#include "overlay.h"
#include "parley.h"

typedef struct pl_super pl_super;

typedef enum pl_super_event_type {
    PL_SUPER_EV_CLIENT_ATTACHED = 1,
    PL_SUPER_EV_CLIENT_LOST, /* missed its keepalives, or its session went down */
    PL_SUPER_EV_CLIENT_LEFT, /* detached on purpose */
} pl_super_event_type;

typedef struct pl_super_event {
    pl_super_event_type type;
    const uint8_t *client_pk;
    const char *name;    /* the client's certified name */
    const pl_addr *addr; /* where it is seen */
    pl_time now;
} pl_super_event;

typedef struct pl_super_io {
    void *ctx;
    bool (*send)(void *ctx, const uint8_t pk[32], const pl_addr *addr, const uint8_t *msg, size_t len,
                 pl_time now);
    void (*close)(void *ctx, const uint8_t pk[32], pl_time now);
    void (*event)(void *ctx, const pl_super_event *ev);
    /* A bare datagram, outside any session: the qualification probe, which
     * must reach a node from an address it never contacted. */
    void (*send_raw)(void *ctx, const pl_addr *to, const uint8_t *data, size_t len, pl_time now);
} pl_super_io;

#define PL_SUPER_DEFAULT_MAX_CLIENTS 250000
#define PL_SUPER_DEFAULT_KEEPALIVE_S 30
/* A client silent for this many keepalive periods is lost. */
#define PL_SUPER_LOSS_FACTOR 2.5
/* A challenge not answered within this is forgotten. */
#define PL_SUPER_CHALLENGE_LIFE (10 * PL_SEC)
/* Qualification: a candidate client is probed this long after attaching,
 * again after PL_SUPER_PROBE_RETRY if the probe did not arrive, at most
 * PL_SUPER_PROBE_TRIES times. A supernode sends at most PL_SUPER_PROBE_RATE
 * probes a second for others, so nobody can aim a flood through it. */
#define PL_SUPER_PROBE_AFTER (5 * PL_SEC)
#define PL_SUPER_PROBE_RETRY (60 * PL_SEC)
#define PL_SUPER_PROBE_TRIES 3
#define PL_SUPER_PROBE_RATE 50
/* Load: at PL_SUPER_HIGH_WATER percent of its clients a supernode asks a
 * qualified client to become a supernode (one at a time, every
 * PL_SUPER_PROMOTE_COOLDOWN), and sheds clients to it down to
 * PL_SUPER_SHED_TO percent. */
#define PL_SUPER_HIGH_WATER 80
#define PL_SUPER_SHED_TO 60
#define PL_SUPER_PROMOTE_COOLDOWN (30 * PL_SEC)

typedef struct pl_super_config {
    const pl_identity *identity; /* copied */
    pl_addr self_addr;           /* where other supernodes reach this one */
    uint8_t ca_pk[32];           /* checks records */
    uint8_t replicas;            /* records per name; 0: PL_DIR_DEFAULT_REPLICAS */
    unsigned vpoints;            /* ring points per supernode; 0: the ring's default */
    struct pl_ring *shared_ring; /* the simulator's supernodes share one (directory.h) */
    bool no_mailbox;             /* store no messages for others (the simulator at scale) */
    uint32_t mailbox_max_bytes;  /* the mailbox's per-recipient byte quota; 0: the default (mailbox.h) */
    /* Gossip membership (members.h): off, the driver tells the supernode
     * who the others are (pl_super_member_up/down). */
    bool membership;
    const pl_members_config *members; /* timers and limits; NULL: the defaults (identity, address,
                                         rng and mem are filled in here) */
    /* What a candidate must report to be probed (0: the defaults). */
    uint32_t min_uptime_s;  /* 600 */
    uint32_t min_kbps;      /* 1000, up and down */
    uint32_t min_memory_mb; /* 256 */
    uint32_t max_kbps;      /* a bandwidth cap: full above it (pl_super_set_traffic); 0: none */
    const pl_rng *rng;
    const pl_mem *mem;           /* NULL: the C heap */
    uint32_t max_clients;        /* 0: PL_SUPER_DEFAULT_MAX_CLIENTS */
    uint16_t keepalive_s;        /* 0: PL_SUPER_DEFAULT_KEEPALIVE_S */
    /* Calls of others (callsvc.h): the relay's addresses as grants name
     * them (udp: family PL_AF_NONE for self_addr; tcp: PL_AF_NONE for no
     * TCP listener), or no relaying at all. */
    pl_addr relay_udp, relay_tcp;
    bool no_relay;
} pl_super_config;

typedef struct pl_super_stats {
    uint32_t clients;          /* attached now */
    uint32_t challenged;       /* waiting for a proof */
    uint32_t qualified;        /* clients found reachable from another supernode */
    uint64_t probes_asked, probes_sent, probes_refused, promotions_asked, shed;
    uint64_t attaches;
    uint64_t refused_full, refused_proof, refused_version;
    uint64_t lost, left;
    uint64_t keepalives;
} pl_super_stats;

typedef struct pl_super_client_info {
    uint8_t pk[32];
    char name[PL_NAME_MAX + 1];
    pl_addr addr;
    pl_time attached_at, last_heard;
    pl_ovl_attach hello; /* what it said about itself */
} pl_super_client_info;

typedef enum pl_super_err {
    PL_SUPER_OK = 0,
    PL_SUPER_ERR_CONFIG,
    PL_SUPER_ERR_NOMEM,
} pl_super_err;

pl_super_err pl_super_new(pl_super **out, const pl_super_config *cfg, const pl_super_io *io);
void pl_super_free(pl_super *s);

/* An authenticated overlay message; cert is the sender's certificate (the
 * session checked it against the pinned CA and the revocation list).
 * Returns false when the type is not the supernode's. */
bool pl_super_message(pl_super *s, const uint8_t pk[32], const pl_cert *cert, const pl_addr *from,
                      const uint8_t *msg, size_t len, pl_time now);
/* The session with pk went down. */
void pl_super_peer_down(pl_super *s, const uint8_t pk[32], pl_time now);
void pl_super_tick(pl_super *s, pl_time now);
pl_time pl_super_next_timeout(const pl_super *s);

/* What to tell attaching nodes: standby supernodes (up to 2) and others for
 * their host cache (up to PL_OVL_MAX_PEERS). Copied. */
void pl_super_set_standby(pl_super *s, const pl_ovl_peer *standby, uint8_t n);
void pl_super_set_hosts(pl_super *s, const pl_ovl_peer *hosts, uint8_t n);
/* Where a full supernode sends newcomers (up to PL_OVL_MAX_PEERS). */
void pl_super_set_redirects(pl_super *s, const pl_ovl_peer *to, uint8_t n);
/* Tells every attached client to move to one of these supernodes (load
 * shedding, demotion) and forgets them. Returns how many were told. */
uint32_t pl_super_shed(pl_super *s, uint32_t count, const pl_ovl_peer *to, uint8_t n, pl_time now);

/* Membership given by the driver (without gossip). */
void pl_super_member_up(pl_super *s, const uint8_t pk[32], const pl_addr *addr, pl_time now);
void pl_super_member_down(pl_super *s, const uint8_t pk[32], pl_time now);
/* With gossip: supernodes known in advance (the bootstrap list, a host
 * cache), then joining (pulling the membership from one of them). */
void pl_super_add_known(pl_super *s, const uint8_t pk[32], const pl_addr *addr, pl_time now);
pl_members_err pl_super_join(pl_super *s, pl_time now);
/* Leaves the membership politely (a demotion, a shutdown). */
void pl_super_leave(pl_super *s, pl_time now);
/* Up to max live supernodes other than this one, sampled at random from
 * the membership; returns how many. */
uint8_t pl_super_sample(pl_super *s, pl_ovl_peer *out, uint8_t max);
/* The membership instance, or NULL without gossip. */
pl_members *pl_super_members(pl_super *s);
/* The revocation list (the caller keeps it alive). */
void pl_super_set_crl(pl_super *s, const pl_crl *crl);
/* The directory engine (directory.h) and the mailbox (mailbox.h; NULL
 * when configured without). */
pl_dir *pl_super_directory(pl_super *s);
pl_mbox *pl_super_mailbox(pl_super *s);
/* The media relay and the rendezvous for first contact (callsvc.h). */
pl_callsvc *pl_super_calls(pl_super *s);

/* The bandwidth the driver measures (kbit/s); above max_kbps the
 * supernode counts as full. */
void pl_super_set_traffic(pl_super *s, uint32_t kbps);
/* Whether a client passed the qualification probe. */
bool pl_super_client_qualified(const pl_super *s, const uint8_t pk[32]);

pl_super_stats pl_super_get_stats(const pl_super *s);
/* The attached client with this key, if any. */
bool pl_super_client(const pl_super *s, const uint8_t pk[32], pl_super_client_info *out);
/* Iterates attached clients: *cursor starts at 0; false at the end. */
bool pl_super_next_client(const pl_super *s, size_t *cursor, pl_super_client_info *out);
const char *pl_super_strerror(pl_super_err err);

#endif
