/*
 * stack.h - one Parley process's whole protocol stack, sans-I/O.
 *
 * A stack holds the secure link (sessions with every peer), the node core
 * (attached to a supernode) or the supernode core (serving nodes), and,
 * as they arrive, membership, the directory and presence. It takes
 * datagrams and the time and gives back datagrams, and it is what both the
 * daemon (src/daemon, over real sockets) and the simulator (src/sim, over a
 * virtual network) drive: one piece of code, two drivers.
 *
 * The simulator may also run a stack with an external transport: instead of
 * sealing messages into datagrams, the stack hands each message to the
 * driver, and the driver hands messages in as already authenticated. That
 * skips the handshakes that would otherwise dominate a million-node run; the
 * protocol cores above the link are the same. The daemon never does this.
 */
#ifndef PL_STACK_H
#define PL_STACK_H

#include "link.h"
#include "node.h"
#include "parley.h"
#include "phone.h"
#include "supernode.h"

typedef struct pl_stack pl_stack;

typedef enum pl_role { PL_ROLE_NODE = 1, PL_ROLE_SUPERNODE = 2 } pl_role;

typedef enum pl_stack_event_type {
    PL_STACK_EV_NODE = 1, /* ev->node is set */
    PL_STACK_EV_SUPER,    /* ev->super is set */
    PL_STACK_EV_LINK,     /* ev->link is set */
    PL_STACK_EV_PROMOTED, /* this node became a supernode too (the driver opens what a supernode needs) */
    PL_STACK_EV_DEMOTED,  /* it is a node only again */
    PL_STACK_EV_PHONE,    /* ev->phone is set */
} pl_stack_event_type;

/* Whether a node may become a supernode when asked (operators choose). */
typedef enum pl_promote_mode { PL_PROMOTE_NEVER = 0, PL_PROMOTE_AUTO = 1 } pl_promote_mode;
/* A promoted supernode that has served at most one client this long steps
 * down, sending that one elsewhere first. */
#define PL_STACK_DEMOTE_IDLE (30 * 60 * PL_SEC)

typedef struct pl_stack_event {
    pl_stack_event_type type;
    const pl_node_event *node;
    const pl_super_event *super;
    const pl_link_event *link;
    const pl_phone_event *phone;
} pl_stack_event;

typedef struct pl_stack_io {
    void *ctx;
    /* A datagram for the network (secure link mode). */
    void (*send_datagram)(void *ctx, const pl_addr *to, const uint8_t *data, size_t len);
    /* External transport mode only: a message for the peer with key pk. */
    bool (*send_message)(void *ctx, const uint8_t pk[32], const pl_addr *addr, const uint8_t *msg, size_t len,
                         pl_time now);
    void (*close_peer)(void *ctx, const uint8_t pk[32], pl_time now);
    void (*event)(void *ctx, const pl_stack_event *ev);
    /* A node: a message between users that the driver handles (chat, type
     * PL_MBOX_CHAT; conference control, types 0x90-0x9f, conference.h),
     * from the authenticated peer pk; NULL: dropped. */
    void (*user_message)(void *ctx, const uint8_t pk[32], const pl_cert *cert, const uint8_t *msg, size_t len,
                         pl_time now);
} pl_stack_io;

typedef struct pl_stack_config {
    const pl_identity *identity;
    const uint8_t *cert; /* own certificate, encoded */
    size_t cert_len;
    uint8_t ca_pk[32];
    const pl_rng *rng;
    const pl_mem *mem;
    pl_role role;
    bool external_transport; /* the simulator at scale; see above */
    uint32_t max_peers;      /* sessions; 0: 1024 for a node, max_clients + 4096 for a supernode */
    pl_addr self_addr;       /* where this process listens (a node's host candidate,
                                a supernode's address in membership) */
    /* node role */
    const pl_ovl_peer *bootstrap;
    size_t n_bootstrap;
    bool no_tcp, no_udp;
    pl_ovl_attach attach;
    /* The node's telephone (phone.h), secure link mode only; NULL: none.
     * The stack fills identity, certificate, CA, RNG, memory, host address,
     * privacy (attach flags) and TCP-only (no_udp); the rest is the
     * driver's. */
    const pl_phone_config *phone;
    /* supernode role */
    uint32_t max_clients;
    uint16_t keepalive_s;
    pl_promote_mode promote; /* a node: offer to serve when asked (AUTO), or not */
    uint32_t min_uptime_s, min_kbps, min_memory_mb; /* a supernode: what candidates must report */
    uint32_t max_kbps;       /* a supernode's bandwidth cap (0: none) */
    uint8_t replicas;        /* 0: 3 */
    unsigned vpoints;        /* 0: the ring's default */
    struct pl_ring *shared_ring; /* the simulator's supernodes share one ring (directory.h) */
    bool no_mailbox;         /* no mailbox (supernode) or mail client (node): the simulator at scale */
    uint32_t mailbox_max_bytes; /* a supernode's per-recipient mailbox quota in bytes (0: the default) */
    /* Gossip membership among supernodes (members.h); the bootstrap list is
     * its seeds. Off: the driver tells the supernode who the others are. */
    bool membership;
    const pl_members_config *members; /* timers; NULL: defaults */
} pl_stack_config;

typedef enum pl_stack_err {
    PL_STACK_OK = 0,
    PL_STACK_ERR_CONFIG,
    PL_STACK_ERR_NOMEM,
} pl_stack_err;

pl_stack_err pl_stack_new(pl_stack **out, const pl_stack_config *cfg, const pl_stack_io *io);
void pl_stack_free(pl_stack *st);
/* Starts the role: a node begins attaching. */
void pl_stack_start(pl_stack *st, pl_time now);
/* Leaves politely (a node detaches). */
void pl_stack_stop(pl_stack *st, pl_time now);

/* A datagram from the network (secure link mode). */
void pl_stack_receive(pl_stack *st, const pl_addr *from, const uint8_t *data, size_t len, pl_time now);
/* External transport: an authenticated message, and a peer gone. */
void pl_stack_deliver(pl_stack *st, const uint8_t pk[32], const pl_cert *cert, const pl_addr *from,
                      const uint8_t *msg, size_t len, pl_time now);
void pl_stack_peer_down(pl_stack *st, const uint8_t pk[32], pl_time now);
/* The driver could not reach addr (a TCP connect failed). */
void pl_stack_unreachable(pl_stack *st, const pl_addr *addr, pl_time now);

void pl_stack_tick(pl_stack *st, pl_time now);
pl_time pl_stack_next_timeout(const pl_stack *st);

pl_role pl_stack_role(const pl_stack *st);
/* Becomes a supernode too (the node core stays, for the user's own
 * presence through another supernode), joining through the seeds. */
pl_stack_err pl_stack_promote(pl_stack *st, const pl_ovl_peer *seeds, size_t n, pl_time now);
pl_node *pl_stack_node(pl_stack *st);   /* NULL for a supernode */
pl_super *pl_stack_super(pl_stack *st); /* NULL for a node (not promoted) */
pl_link *pl_stack_link(pl_stack *st);   /* NULL with an external transport */
pl_phone *pl_stack_phone(pl_stack *st); /* NULL without a phone */
const char *pl_stack_strerror(pl_stack_err err);

#endif
