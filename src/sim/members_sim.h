/*
 * members_sim.h - a cluster of supernode membership instances on the
 * deterministic simulator, for tests and benchmarks.
 *
 * Node i has a fixed identity (derived from the run's seed) and IP address
 * (in 198.18.0.0/15, the benchmarking range) and listens on port 7400 unless
 * it moved. A running node is one
 * pl_members instance attached to the simulated network. A datagram carries
 * one membership message; the receiving side learns the sender's key from
 * the source address, standing in for the secure session that authenticates
 * it in the real system. Crashing a node frees its instance and detaches it;
 * restarting makes a fresh instance with the same key.
 *
 * Faults beyond simnet's links: partitions (nodes in different groups do not
 * hear each other) and extra loss on every datagram to or from one node.
 * Traffic is counted per node, with a fixed overhead per datagram standing
 * in for IP, UDP and the secure-session header and tag. Every event of every
 * instance feeds a trace hash, so two runs can be compared for determinism.
 */
#ifndef PL_MEMBERS_SIM_H
#define PL_MEMBERS_SIM_H

#include "members.h"
#include "simnet.h"

typedef struct pl_msim pl_msim;

typedef struct pl_msim_config {
    uint32_t nodes;             /* identities in the run (at most 1 << 17) */
    uint64_t seed;
    pl_time start;              /* virtual start time; 0: a fixed date */
    pl_sim_link link;           /* every link */
    pl_members_config members;  /* timers and limits; identity, addr, rng and verify are filled in */
    uint32_t datagram_overhead; /* bytes added per datagram in the counters; 0: 60 */
    unsigned sigcache_log2;     /* size of the shared memoising verifier; 0: 2^16 answers */
} pl_msim_config;

typedef struct pl_msim_traffic {
    uint64_t datagrams_tx, bytes_tx, datagrams_rx, bytes_rx; /* bytes include the overhead */
} pl_msim_traffic;

/* Called for every event of every instance, after the trace hash took it. */
typedef void (*pl_msim_event_hook)(void *ctx, uint32_t node, const pl_members_event *ev);

pl_msim *pl_msim_new(const pl_msim_config *cfg);
void pl_msim_free(pl_msim *s);
pl_simnet *pl_msim_net(pl_msim *s);
pl_time pl_msim_now(const pl_msim *s);
uint32_t pl_msim_nodes(const pl_msim *s);

/* Starts node i with a fresh instance claiming `incarnation` (0: 1). */
bool pl_msim_start(pl_msim *s, uint32_t i, uint32_t incarnation);
/* Stops node i abruptly: no leave, its instance is gone. */
void pl_msim_crash(pl_msim *s, uint32_t i);
bool pl_msim_running(const pl_msim *s, uint32_t i);
pl_members *pl_msim_instance(pl_msim *s, uint32_t i); /* NULL when not running */
const uint8_t *pl_msim_pk(const pl_msim *s, uint32_t i);
const pl_identity *pl_msim_identity(const pl_msim *s, uint32_t i);
pl_addr pl_msim_addr(const pl_msim *s, uint32_t i);
/* The node at an address, or UINT32_MAX. */
uint32_t pl_msim_node_at(const pl_msim *s, const pl_addr *addr);

/* Driving instances; these re-arm the node's timer afterwards. */
pl_members_err pl_msim_add_known(pl_msim *s, uint32_t i, uint32_t j);
pl_members_err pl_msim_join(pl_msim *s, uint32_t i);
pl_members_err pl_msim_leave(pl_msim *s, uint32_t i);
/* Moves node i to another port (its instance announces the new address). */
pl_members_err pl_msim_move(pl_msim *s, uint32_t i, uint16_t port);
/* Delivers a raw message to node i as if node `from` had sent it. */
void pl_msim_inject(pl_msim *s, uint32_t i, uint32_t from, const uint8_t *msg, size_t len);
void pl_msim_run_until(pl_msim *s, pl_time t);

void pl_msim_set_group(pl_msim *s, uint32_t i, uint32_t group); /* default 0 */
void pl_msim_set_loss(pl_msim *s, uint32_t i, uint32_t loss_ppm);
void pl_msim_set_event_hook(pl_msim *s, pl_msim_event_hook hook, void *ctx);

/* Views. */
/* How many running nodes other than j hold j in state st. */
uint32_t pl_msim_count_seeing(pl_msim *s, uint32_t j, pl_member_state st);
/* True when every running node holds every running node alive (or suspect
 * when suspect_ok) and no node that is down as alive or suspect. */
bool pl_msim_converged(pl_msim *s, bool suspect_ok);

pl_msim_traffic pl_msim_traffic_of(const pl_msim *s, uint32_t i);
void pl_msim_reset_traffic(pl_msim *s);
uint64_t pl_msim_trace_hash(const pl_msim *s);
uint64_t pl_msim_events(const pl_msim *s);

#endif
