/*
 * simnet.h - a deterministic network and clock for running the protocol cores
 * in one process.
 *
 * Endpoints are addresses; a datagram sent from one address to another is
 * delivered after a modelled latency (base + seeded jitter) unless the seeded
 * loss model drops it. Timers fire in virtual time. Everything random comes
 * from one seeded generator, so the same seed gives the same run, event for
 * event. Events at the same virtual time run in the order they were created.
 */
#ifndef PL_SIMNET_H
#define PL_SIMNET_H

#include "parley.h"

typedef struct pl_simnet pl_simnet;

typedef void (*pl_sim_recv_cb)(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data,
                               size_t len, pl_time now);
typedef void (*pl_sim_timer_cb)(void *ctx, pl_time now);

typedef struct pl_sim_link {
    pl_time latency;  /* one-way base delay */
    pl_time jitter;   /* extra delay, uniform in [0, jitter]; may reorder */
    uint32_t loss_ppm; /* independent loss, parts per million */
} pl_sim_link;

typedef struct pl_sim_stats {
    uint64_t sent, delivered, dropped_loss, dropped_no_endpoint;
    uint64_t bytes_sent;
} pl_sim_stats;

pl_simnet *pl_simnet_new(uint64_t seed, pl_time start);
void pl_simnet_free(pl_simnet *net);
pl_time pl_simnet_now(const pl_simnet *net);
/* The run's seeded generator, for the cores' pl_rng. */
const pl_rng *pl_simnet_rng(pl_simnet *net);

/* A latency model: the link for a pair without an override, computed (for
 * example from regions the addresses are in) instead of stored, so a
 * million endpoints need no table of pairs. NULL: the default link. */
typedef pl_sim_link (*pl_sim_link_fn)(void *ctx, const pl_addr *from, const pl_addr *to);
void pl_simnet_set_link_model(pl_simnet *net, pl_sim_link_fn fn, void *ctx);

/* The default link for every pair, and an override for one direction. */
void pl_simnet_set_default_link(pl_simnet *net, pl_sim_link link);
void pl_simnet_set_link(pl_simnet *net, const pl_addr *from, const pl_addr *to, pl_sim_link link);

/* Listens at addr (exact address and port). Returns false if taken. */
bool pl_simnet_attach(pl_simnet *net, const pl_addr *addr, pl_sim_recv_cb cb, void *ctx);
/* Stops delivery to addr; datagrams in flight to it are dropped on arrival. */
void pl_simnet_detach(pl_simnet *net, const pl_addr *addr);

/* Copies the datagram; it is delivered later, never during this call. */
void pl_simnet_send(pl_simnet *net, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len);

/* Timers in virtual time. Returns an id (never 0) for cancelling. */
uint64_t pl_simnet_timer(pl_simnet *net, pl_time due, pl_sim_timer_cb cb, void *ctx);
void pl_simnet_timer_cancel(pl_simnet *net, uint64_t id);

/* Runs the next event; false when nothing is left. */
bool pl_simnet_step(pl_simnet *net);
/* Runs every event due at or before t, then sets the clock to t. */
void pl_simnet_run_until(pl_simnet *net, pl_time t);
pl_sim_stats pl_simnet_stats(const pl_simnet *net);

#endif
