/*
 * node.h - a user's node: attaching to a supernode and staying attached.
 *
 * A node finds a supernode among, in this order, the standby its last
 * supernode named, its host cache (supernodes seen before, ranked by recent
 * success) and the configured bootstrap list. For each it tries UDP, then
 * TCP (for networks that block UDP). The supernode makes the node prove it
 * holds its certificate's key by signing a fresh challenge; then the node
 * sends a keepalive every keepalive period, which holds its NAT binding open
 * and tells both sides the other is still there. When its supernode stops
 * answering the node goes straight to the standby: one re-attach, not a new
 * bootstrap. When a whole round of candidates fails it waits with
 * exponential back-off and jitter, so that many nodes restarting together
 * do not arrive together.
 *
 * The node is sans-I/O: it sends overlay messages to peers named by key
 * through pl_node_io (the driver runs them over secure sessions, see
 * link.h), and is given the messages that arrive, the time, and news that a
 * session went down.
 */
#ifndef PL_NODE_H
#define PL_NODE_H

#include "dirclient.h"
#include "mailclient.h"
#include "overlay.h"
#include "parley.h"

typedef struct pl_node pl_node;

typedef enum pl_node_state {
    PL_NODE_IDLE = 0,   /* not started, or stopped */
    PL_NODE_ATTACHING,  /* talking to a candidate supernode */
    PL_NODE_ATTACHED,
    PL_NODE_WAITING,    /* every candidate failed: backing off */
} pl_node_state;

typedef enum pl_node_event_type {
    PL_NODE_EV_ATTACHED = 1, /* attached to a supernode (first time or again) */
    PL_NODE_EV_LOST,         /* the supernode stopped answering; re-attaching */
    PL_NODE_EV_REFUSED,      /* a supernode refused us (reason in ev->refusal) */
    PL_NODE_EV_ADDRESS,      /* the address the supernode sees for us changed */
    PL_NODE_EV_HOSTS,        /* the host cache changed: a good time to save it */
    PL_NODE_EV_DIRECTORY,    /* ev->dir: a publish answered, a look-up done, presence news */
    PL_NODE_EV_MAIL,         /* ev->mail: messages waiting, a message, a deposit answered */
    PL_NODE_EV_PROMOTE,      /* ev->promote: our supernode asks us to become one */
} pl_node_event_type;

typedef struct pl_node_event {
    pl_node_event_type type;
    const pl_ovl_peer *supernode; /* ATTACHED, LOST, REFUSED */
    uint8_t refusal;              /* REFUSED: pl_ovl_refusal */
    const pl_addr *observed;      /* ATTACHED, ADDRESS */
    const pl_dirc_event *dir;     /* DIRECTORY */
    const pl_mboxc_event *mail;   /* MAIL */
    const pl_ovl_qualify *promote; /* PROMOTE: the supernodes to join through */
    pl_time now;
} pl_node_event;

typedef struct pl_node_io {
    void *ctx;
    /* Sends an overlay message to the peer with this key, over a secure
     * session opened to addr if there is none. false: not even queued. */
    bool (*send)(void *ctx, const uint8_t pk[32], const pl_addr *addr, const uint8_t *msg, size_t len,
                 pl_time now);
    /* Ends the session with this peer (to retry it over another transport,
     * or after leaving it). */
    void (*close)(void *ctx, const uint8_t pk[32], pl_time now);
    void (*event)(void *ctx, const pl_node_event *ev);
} pl_node_io;

#define PL_NODE_HOST_CACHE_MAX 200
#define PL_NODE_KEEPALIVE_DEFAULT_S 30
/* How long an attempt may take before the next transport or candidate. */
#define PL_NODE_UDP_ATTEMPT (2 * PL_SEC)
#define PL_NODE_TCP_ATTEMPT (5 * PL_SEC)
/* A keepalive unanswered for this long is sent again; after this many
 * unanswered in a row the supernode is lost. */
#define PL_NODE_KEEPALIVE_RETRY (2 * PL_SEC)
#define PL_NODE_KEEPALIVE_TRIES 3
#define PL_NODE_BACKOFF_FIRST (1 * PL_SEC)
#define PL_NODE_BACKOFF_MAX (60 * PL_SEC)

#define PL_NODE_MAX_HOST_ADDRS 4

typedef struct pl_node_config {
    const pl_identity *identity; /* copied; signs attach proofs and records */
    const uint8_t *cert;         /* own certificate, encoded (for the record) */
    size_t cert_len;
    uint8_t ca_pk[32];           /* checks the records of others */
    /* The node's own addresses (host candidates in its record); the
     * address its supernode sees is added as server-reflexive. */
    pl_addr host_addrs[PL_NODE_MAX_HOST_ADDRS];
    uint8_t n_host_addrs;
    const pl_rng *rng;
    const pl_mem *mem;           /* NULL: the C heap */
    const pl_ovl_peer *bootstrap;
    size_t n_bootstrap;
    bool no_tcp;                 /* never fall back to TCP */
    bool no_udp;                 /* only TCP (a network known to block UDP) */
    pl_ovl_attach attach;        /* what the node says about itself (version filled in) */
    bool no_mail;                /* no mail client (the simulator at scale: it holds ~60 KB) */
} pl_node_config;

typedef struct pl_node_host {
    pl_ovl_peer peer;
    pl_time last_success; /* 0: never */
    pl_time last_failure; /* 0: never */
    uint32_t failures;    /* in a row */
} pl_node_host;

typedef struct pl_node_status {
    pl_node_state state;
    pl_ovl_peer supernode;    /* ATTACHED: the supernode; ATTACHING: the candidate */
    bool tcp;                 /* over TCP */
    pl_addr observed;         /* as the supernode sees us */
    pl_addr mapped;           /* the port-mapped candidate (pl_node_set_mapped); family 0: none */
    uint8_t n_standby;
    pl_ovl_peer standby[2];
    pl_time attached_since;
    uint16_t keepalive_s;
    uint32_t attaches;        /* successful attaches so far */
    uint32_t losses;          /* supernodes lost so far */
    pl_time next_attempt;     /* WAITING: when the next round starts */
} pl_node_status;

typedef enum pl_node_err {
    PL_NODE_OK = 0,
    PL_NODE_ERR_CONFIG,
    PL_NODE_ERR_NOMEM,
    PL_NODE_ERR_STATE, /* not allowed in the current state */
} pl_node_err;

pl_node_err pl_node_new(pl_node **out, const pl_node_config *cfg, const pl_node_io *io);
void pl_node_free(pl_node *node);
/* Starts attaching. */
pl_node_err pl_node_start(pl_node *node, pl_time now);
/* Detaches (telling the supernode) and goes idle. */
void pl_node_stop(pl_node *node, pl_time now);

/* An authenticated overlay message from the peer with key pk. Returns false
 * when the type is not the node's, for the driver to offer elsewhere. */
bool pl_node_message(pl_node *node, const uint8_t pk[32], const pl_addr *from, const uint8_t *msg, size_t len,
                     pl_time now);
/* The session with pk went down (handshake failed, silence, revocation). */
void pl_node_peer_down(pl_node *node, const uint8_t pk[32], pl_time now);
/* A bare datagram that may be a qualification probe (first byte
 * PL_OVL_PROBE_BYTE): the node tells its supernode it arrived. Returns
 * false when it is not one. */
bool pl_node_probe(pl_node *node, const uint8_t *data, size_t len, pl_time now);
/* The driver could not reach addr at all (a TCP connect refused): no need
 * to wait for the attempt to time out. */
void pl_node_unreachable(pl_node *node, const pl_addr *addr, pl_time now);
void pl_node_tick(pl_node *node, pl_time now);
pl_time pl_node_next_timeout(const pl_node *node);

pl_node_status pl_node_get_status(const pl_node *node);
/* What NAT discovery found; goes into the node's record (published again). */
void pl_node_set_nat(pl_node *node, uint8_t mapping, uint8_t filtering, uint8_t nat_flags, pl_time now);
/* The port-mapped candidate: the public address and port the home router
 * forwards to the node's UDP socket (NAT-PMP or UPnP IGD, portmap.h), or
 * NULL when there is none any more. It goes into the record (published
 * again when it changed) while the node is attached over UDP, in place of
 * the server-reflexive candidate when the two are the same address. */
void pl_node_set_mapped(pl_node *node, const pl_addr *mapped, pl_time now);
/* Fills c as the port-mapped candidate for mapped (priority 150: between
 * host, 200, and server-reflexive, 100), for records and call offers. */
void pl_node_candidate_mapped(pl_record_candidate *c, const pl_addr *mapped);
/* The directory client: look-ups, subscriptions, presence (dirclient.h). */
pl_dirc *pl_node_directory(pl_node *node);
/* The mail client: deposits for others, this user's mailbox (mailclient.h). */
pl_mboxc *pl_node_mailbox(pl_node *node);
/* The host cache, best first; returns how many were written. */
size_t pl_node_hosts(const pl_node *node, pl_node_host *out, size_t max);
/* Adds or refreshes an entry (loading a saved cache). */
void pl_node_add_host(pl_node *node, const pl_node_host *host);

const char *pl_node_state_name(pl_node_state state);
const char *pl_node_strerror(pl_node_err err);

#endif
