/*
 * simworld.h - whole Parley processes on the simulated network.
 *
 * A world is a simulated network (simnet.h), a signing authority, and hosts:
 * each host is one user's protocol stack (stack.h) at one address, exactly
 * the code the daemon runs, driven by virtual time. Hosts can be started,
 * crashed (gone without a word, like kill -9) and restarted with the same
 * identity.
 *
 * In secure mode, hosts exchange real sealed datagrams and every session
 * runs a real handshake. In external-transport mode (for runs of a million
 * users) a message travels as a datagram of its own bytes and the receiver
 * is told the sender's key and certificate from the sender's address, which
 * stands in for the session layer that secure mode exercises.
 */
#ifndef PL_SIMWORLD_H
#define PL_SIMWORLD_H

#include "simnet.h"
#include "stack.h"

typedef struct pl_simworld pl_simworld;
typedef struct pl_simhost pl_simhost;

typedef void (*pl_simworld_event_cb)(void *ctx, pl_simhost *host, const pl_stack_event *ev);
/* A message between users that the host's stack hands its driver
 * (pl_stack_io.user_message: conference control). */
typedef void (*pl_simworld_user_message_cb)(void *ctx, pl_simhost *host, const uint8_t pk[32], const uint8_t *msg,
                                            size_t len, pl_time now);
/* External transport only: sees (and may rewrite in place, up to
 * PL_SEC_MAX_PAYLOAD bytes, or drop by returning false) every message a
 * host sends: how tests make a supernode lie. */
typedef bool (*pl_simworld_tamper_cb)(void *ctx, pl_simhost *from, const uint8_t to_pk[32], uint8_t *msg,
                                      size_t *len);

/* Secure mode: sees (and may rewrite in place, up to PL_SEC_MAX_DATAGRAM
 * bytes, or drop by returning false) every datagram a host sends: how tests
 * tamper with sealed packets on the wire. */
typedef bool (*pl_simworld_datagram_cb)(void *ctx, pl_simhost *from, const pl_addr *to, uint8_t *data,
                                        size_t *len);

typedef struct pl_simworld_config {
    uint64_t seed;
    pl_time start;
    bool secure;              /* real sessions (true) or the external transport */
    pl_sim_link link;         /* the default link */
    pl_simworld_event_cb on_event;
    void *ctx;
    /* Supernodes share one consistent-hash ring (each keeps only a bitmap
     * of who is alive), which is what lets 10,000 of them fit in memory. */
    bool share_ring;
    unsigned vpoints; /* ring points per supernode; 0: the default */
    pl_simworld_user_message_cb on_user_message; /* NULL: such messages are dropped */
} pl_simworld_config;

pl_simworld *pl_simworld_new(const pl_simworld_config *cfg);
void pl_simworld_free(pl_simworld *w);
pl_simnet *pl_simworld_net(pl_simworld *w);
pl_time pl_simworld_now(const pl_simworld *w);
const uint8_t *pl_simworld_ca_pk(const pl_simworld *w);
size_t pl_simworld_host_count(const pl_simworld *w);
pl_simhost *pl_simworld_host(pl_simworld *w, size_t i);

/* An address on the simulated internet, 198.51.a.b:port (tests and
 * benchmarks number their hosts this way). */
pl_addr pl_simworld_addr(int a, int b, int port);

/* A new user certified as name, at addr, configured from tmpl (role,
 * bootstrap, limits; identity, certificate, CA, RNG and memory are the
 * world's). Not started. NULL if the address is taken. */
pl_simhost *pl_simworld_add_host(pl_simworld *w, const char *name, const pl_addr *addr,
                                 const pl_stack_config *tmpl);

/* The CA revokes h's certificate and every host (running or started later)
 * gets the new revocation list at once. */
void pl_simworld_revoke(pl_simworld *w, pl_simhost *h);

/* Tells every running supernode about every supernode (full membership,
 * as if gossip had spread it), or about one that is gone. */
void pl_simworld_introduce_supernodes(pl_simworld *w);
void pl_simworld_set_tamper(pl_simworld *w, pl_simworld_tamper_cb cb, void *ctx);
void pl_simworld_set_datagram_tap(pl_simworld *w, pl_simworld_datagram_cb cb, void *ctx);
void pl_simworld_forget_supernode(pl_simworld *w, pl_simhost *gone);

void pl_simhost_start(pl_simhost *h);
/* Gone at once: no goodbye, state lost, address silent. */
void pl_simhost_crash(pl_simhost *h);
/* Back with the same identity and configuration, from a blank state (its
 * host cache kept, as a real node keeps it on disk). */
void pl_simhost_restart(pl_simhost *h);
bool pl_simhost_running(const pl_simhost *h);
/* After calling into h's stack from outside its callbacks (a look-up, a
 * presence change), so that a timer the call armed is seen. */
void pl_simhost_poke(pl_simhost *h);
/* Benchmarks: measure the thread CPU time h's stack takes (its inputs and
 * timers, the sends they make included). */
void pl_simhost_account_cpu(pl_simhost *h, bool on);
uint64_t pl_simhost_cpu_ns(const pl_simhost *h);
pl_stack *pl_simhost_stack(pl_simhost *h); /* NULL while crashed */
/* Re-arms the host's timer after the test drove its stack directly (a
 * phone's audio tick, a dial). */
void pl_simhost_reschedule(pl_simhost *h);
const pl_ovl_peer *pl_simhost_peer(const pl_simhost *h);
const char *pl_simhost_name(const pl_simhost *h);
const pl_cert *pl_simhost_cert(const pl_simhost *h);
const pl_identity *pl_simhost_identity(const pl_simhost *h);
/* A pointer of the caller's, kept with the host. */
void pl_simhost_set_user(pl_simhost *h, void *user);
void *pl_simhost_user(const pl_simhost *h);

#endif
