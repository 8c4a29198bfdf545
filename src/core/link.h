/*
 * link.h - messages to peers named by their signing key, over secure sessions.
 *
 * The overlay's cores (node, supernode, membership) think in messages to
 * peers they name by key: "send this look-up to the supernode with key K at
 * address A". The link turns that into secure sessions: it opens one when
 * there is none, holds a few messages while the handshake runs, sends them
 * once it is up, and drops them (counted, and reported) if it fails. Every
 * message that comes out of the link was authenticated by the session, so
 * the cores may trust the sender's key and certificate.
 *
 * Like the session layer under it, the link is sans-I/O: datagrams and the
 * time go in, datagrams, events and messages come out through callbacks.
 * Messages handed to the message callback are copies the callback may keep
 * reading while it sends (sending may run a handshake that reuses the
 * session layer's buffers).
 */
#ifndef PL_LINK_H
#define PL_LINK_H

#include "parley.h"

typedef struct pl_link pl_link;

typedef enum pl_link_err {
    PL_LINK_OK = 0,
    PL_LINK_ERR_CONFIG,   /* bad configuration (see the session layer's rules) */
    PL_LINK_ERR_NOMEM,
    PL_LINK_ERR_TOO_BIG,  /* over PL_SEC_MAX_PAYLOAD */
    PL_LINK_ERR_FULL,     /* the peer table, or the queue for peers still connecting, is full */
    PL_LINK_ERR_NO_ADDR,  /* no session with that peer and no address to open one */
    PL_LINK_ERR_BAD_KEY,  /* not a usable key, or one's own */
    PL_LINK_ERR_BAD_CERT, /* the certificate given does not verify */
} pl_link_err;

typedef enum pl_link_event_type {
    PL_LINK_EV_UP = 1, /* a session with the peer is established */
    PL_LINK_EV_DOWN,   /* the peer is gone; see why */
} pl_link_event_type;

typedef enum pl_link_down_reason {
    PL_LINK_DOWN_UNREACHABLE = 1, /* the handshake got no answer */
    PL_LINK_DOWN_SILENT,          /* no key left: the peer stopped talking */
    PL_LINK_DOWN_REVOKED,         /* its certificate is on the revocation list */
    PL_LINK_DOWN_CLOSED,          /* pl_link_close */
} pl_link_down_reason;

typedef struct pl_link_event {
    pl_link_event_type type;
    pl_link_down_reason why; /* DOWN only */
    const uint8_t *peer_pk;  /* the peer's signing key */
    const pl_cert *cert;     /* its certificate when known, else NULL */
    const pl_addr *addr;     /* where it was reached */
    uint32_t dropped;        /* DOWN: queued messages that were never sent */
    pl_time now;
} pl_link_event;

typedef struct pl_link_message {
    const uint8_t *peer_pk; /* the sender's signing key, authenticated */
    const pl_cert *cert;    /* the sender's certificate */
    const pl_addr *from;    /* where the datagram came from */
    const uint8_t *data;    /* valid during the callback */
    size_t len;
    pl_time now;
} pl_link_message;

typedef struct pl_link_io {
    void *ctx;
    /* A datagram for the network (the driver routes TCP-marked addresses to
     * their stream). */
    void (*send)(void *ctx, const pl_addr *to, const uint8_t *data, size_t len);
    void (*message)(void *ctx, const pl_link_message *msg);
    void (*event)(void *ctx, const pl_link_event *ev);
} pl_link_io;

/* Messages held for peers whose session is not up yet. */
#define PL_LINK_PENDING_DEFAULT 256
#define PL_LINK_PENDING_PER_PEER 16

typedef struct pl_link_config {
    pl_sec_config sec;         /* identity, certificate, pinned CA, limits */
    uint32_t pending_max;      /* 0: PL_LINK_PENDING_DEFAULT */
    uint32_t pending_per_peer; /* 0: PL_LINK_PENDING_PER_PEER */
} pl_link_config;

typedef struct pl_link_stats {
    uint64_t messages_sent, messages_received;
    uint64_t queued;       /* messages that waited for a handshake */
    uint64_t dropped_full; /* refused because the queue was full */
    uint64_t dropped_down; /* queued, then the peer was unreachable */
    uint64_t ups, downs;
} pl_link_stats;

pl_link_err pl_link_new(pl_link **out, const pl_link_config *cfg, const pl_link_io *io);
/* Wipes every key and frees the link. */
void pl_link_free(pl_link *link);

/* Sends a message to the peer with this signing key. With a session up it
 * goes at once to the session's address (which follows the peer when it
 * moves); otherwise a handshake to addr starts (addr may be NULL only when a
 * session exists) and the message waits for it. */
pl_link_err pl_link_send(pl_link *link, const uint8_t peer_pk[32], const pl_addr *addr, const uint8_t *msg,
                         size_t len, pl_time now);
/* The same, naming the peer by its certificate (as a directory record
 * carries it): verified first, and no key conversion on the first contact. */
pl_link_err pl_link_send_cert(pl_link *link, const pl_cert *peer_cert, const pl_addr *addr, const uint8_t *msg,
                              size_t len, pl_time now);
/* A datagram from the network. */
void pl_link_receive(pl_link *link, const pl_addr *from, const uint8_t *data, size_t len, pl_time now);
void pl_link_tick(pl_link *link, pl_time now);
pl_time pl_link_next_timeout(const pl_link *link);

/* True when a session with the peer is established. */
bool pl_link_is_up(pl_link *link, const uint8_t peer_pk[32]);
/* The address of the session with the peer, or NULL. */
const pl_addr *pl_link_peer_addr(pl_link *link, const uint8_t peer_pk[32]);
/* Forgets the peer: wipes its keys, drops what waits for it, and reports
 * DOWN (CLOSED) if it was up. */
void pl_link_close(pl_link *link, const uint8_t peer_pk[32], pl_time now);
/* The session endpoint underneath, for its statistics and revocation list. */
pl_sec *pl_link_sec(pl_link *link);
pl_link_stats pl_link_get_stats(const pl_link *link);
const char *pl_link_strerror(pl_link_err err);

#endif
