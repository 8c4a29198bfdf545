/*
 * ring.h - the consistent-hash ring of the distributed directory
 * (docs/directory.md, section 3).
 *
 * Supernodes are members, known by their 32-byte Ed25519 public key. Each
 * member owns `vpoints` points on a 64-bit circle, at positions derived from
 * its key; a user's record lives on the R distinct members whose points come
 * first clockwise from the point of hash(user name). Every supernode holds
 * the full membership (spread by gossip), so any of them answers "who holds
 * alice?" locally, and a look-up is one overlay hop.
 *
 * The answer depends only on the set of members, never on the order they
 * were added or removed in: two supernodes that agree on membership agree
 * on every replica set.
 *
 * Costs, with n members, v points each and P = n * v points in all:
 *   memory          about 12 bytes a point (a u64 position and a u32
 *                   member index) plus 44 bytes a member: about 140 bytes a
 *                   member at v = 8, 1.4 MB at 10,000 members (see
 *                   bench/bench_ring.c; pl_ring_memory says exactly);
 *   add             O(v * sqrt(P)) amortised: new points go into a small
 *                   sorted side table that is merged into the main table,
 *                   O(P), once it holds 2 sqrt(P) points; plus an O(n) move
 *                   of 4-byte entries in the key index and v BLAKE2b hashes.
 *                   About 4 us at 10,000 members; building a 10,000-member
 *                   ring one add at a time takes about 40 ms, copying one
 *                   0.1 ms;
 *   remove          O(log n): the member is marked dead and its points are
 *                   skipped; once dead points exceed a quarter of all
 *                   points one O(P + n) pass drops them, so O(v) amortised;
 *   contains        O(log n);
 *   replicas,
 *   is_replica      O(log P + the points walked), about r * (1 + r / n) +
 *                   the dead points in the way: well under a microsecond;
 *   copy            O(P) memcpy, no allocation when dst is big enough.
 * No operation sorts the whole table, and none allocates except add, copy
 * and reserve when a table has to grow.
 *
 * A ring is not thread-safe; const functions may run concurrently.
 */
#ifndef PL_RING_H
#define PL_RING_H

#include "parley.h"

#define PL_RING_DEFAULT_VPOINTS 8
#define PL_RING_MAX_VPOINTS 256
#define PL_RING_DEFAULT_REPLICAS 3
/* replicas() and is_replica() answer for r up to this; larger r is clamped. */
#define PL_RING_MAX_REPLICAS 8
#define PL_RING_MAX_MEMBERS (1u << 24)

typedef struct pl_ring pl_ring;

typedef enum pl_ring_err {
    PL_RING_OK = 0,
    PL_RING_ERR_CONFIG,    /* vpoints out of range */
    PL_RING_ERR_NOMEM,     /* the ring is unchanged */
    PL_RING_ERR_EXISTS,    /* add: already a member */
    PL_RING_ERR_NOT_FOUND, /* remove: not a member */
    PL_RING_ERR_FULL,      /* PL_RING_MAX_MEMBERS reached */
} pl_ring_err;

/* The ring key of a user: BLAKE2b-256("parley-ring-name-v1" || name), name
 * as pl_name_normalize writes it. Its first 8 bytes, big-endian, are its
 * point on the circle. */
void pl_ring_key_for_name(const char *normalized_name, uint8_t key[32]);

/* mem NULL: the C heap. vpoints 0: PL_RING_DEFAULT_VPOINTS; at most
 * PL_RING_MAX_VPOINTS. Rings that are compared must use the same vpoints. */
pl_ring_err pl_ring_new(pl_ring **out, const pl_mem *mem, unsigned vpoints);
void pl_ring_free(pl_ring *ring);
/* Makes room for this many members, so that adding up to that many never
 * allocates (and the tables carry no slack). */
pl_ring_err pl_ring_reserve(pl_ring *ring, size_t members);
/* Makes dst (which keeps its own pl_mem) an exact copy of src, vpoints
 * included: a snapshot to compare against after changes. On NOMEM dst is
 * unchanged. */
pl_ring_err pl_ring_copy(pl_ring *dst, const pl_ring *src);

pl_ring_err pl_ring_add(pl_ring *ring, const uint8_t pk[32]);
pl_ring_err pl_ring_remove(pl_ring *ring, const uint8_t pk[32]);
bool pl_ring_contains(const pl_ring *ring, const uint8_t pk[32]);
size_t pl_ring_count(const pl_ring *ring);
unsigned pl_ring_vpoints(const pl_ring *ring);
/* Bytes the ring holds, its tables' spare capacity included. */
size_t pl_ring_memory(const pl_ring *ring);

/* The first r distinct members clockwise from key's point (the first point
 * at or after it, wrapping round), in that order: out[0] is the primary.
 * Returns how many were written: min(r, count, PL_RING_MAX_REPLICAS). */
size_t pl_ring_replicas(const pl_ring *ring, const uint8_t key[32], size_t r, uint8_t out[][32]);
/* Whether pk is among those r; stops walking as soon as it knows. */
bool pl_ring_is_replica(const pl_ring *ring, const uint8_t key[32], const uint8_t pk[32], size_t r);

/* ---- views: one ring, membership decided by the caller ----------------------------
 * A supernode that keeps its members' liveness elsewhere (membership.h) can
 * use a ring only as the table of points of every supernode it has heard
 * of, added and never removed, and say per call which members count, by a
 * bitmap over member slots. Slots of a ring that is only added to never
 * change, so many supernodes of one simulation may share one ring, each
 * with its own bitmap (1,250 bytes at 10,000 supernodes instead of 1.4 MB).
 * PL_RING_NO_SLOT: not a member. */
#define PL_RING_NO_SLOT UINT32_MAX
uint32_t pl_ring_slot(const pl_ring *ring, const uint8_t pk[32]);
/* Slots are below this. */
uint32_t pl_ring_slot_limit(const pl_ring *ring);
const uint8_t *pl_ring_slot_key(const pl_ring *ring, uint32_t slot);
/* pl_ring_replicas counting only members whose slot's bit is set in alive
 * (bit s of alive[s / 64]; slots at or past nbits count as absent). */
size_t pl_ring_replicas_in(const pl_ring *ring, const uint64_t *alive, uint32_t nbits, const uint8_t key[32],
                           size_t r, uint32_t out_slots[]);

/* What one supernode does with one record when membership changed from
 * `before` to `after` (one change or a batch; before is a pl_ring_copy made
 * earlier). The rule that keeps pushes few: of the old replicas still in
 * `after`, the first in ring order (the sender) pushes the record to every
 * new replica; the others only keep or drop their copy. If no old replica
 * is left the record is lost until its owner publishes again, which it does
 * well within PL_RECORD_MAX_LIFETIME. */
typedef struct pl_ring_handover {
    bool was_replica;    /* self held the key's record under `before` */
    bool is_replica;     /* self holds it under `after`: keep it, else drop it once pushed */
    bool changed;        /* the replica set differs (as a set) */
    bool sender;         /* self pushes the record to added[] */
    size_t n_before, n_after, n_added;
    uint8_t before[PL_RING_MAX_REPLICAS][32];
    uint8_t after[PL_RING_MAX_REPLICAS][32];
    uint8_t added[PL_RING_MAX_REPLICAS][32]; /* in after, not in before; never self */
} pl_ring_handover;

void pl_ring_handover_for(const pl_ring *before, const pl_ring *after, const uint8_t key[32], size_t r,
                          const uint8_t self_pk[32], pl_ring_handover *out);

const char *pl_ring_strerror(pl_ring_err err);

#endif
