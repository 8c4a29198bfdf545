/*
 * ring.c - the consistent-hash ring; see ring.h for the costs and
 * docs/directory.md for the rules.
 *
 * Points live in two sorted tables, each a pair of parallel arrays (u64
 * positions, u32 member slots) so that a binary search touches only
 * positions: `main`, large, and `pend`, at most about 2 sqrt(P) points, where
 * a new member's points go. When pend grows past its bound it is merged
 * into main from the back, in place. Removing a member only marks its slot
 * dead; walks skip dead points, and when they pass a quarter of all points
 * one pass drops them and frees the slots. A member's points depend only on
 * its key, so a member removed and added back before that pass is simply
 * marked alive again.
 *
 * Points are ordered by (position, member key): the key breaks ties between
 * equal positions, so the order, and every answer, depends only on the set
 * of members and never on slot numbers or history.
 */
#include "ring.h"

#include <sodium.h>
#include <string.h>

#include "wire.h"

#define POINT_DOMAIN "parley-ring-point-v1"
#define NAME_DOMAIN "parley-ring-name-v1"

enum { SLOT_FREE = 0, SLOT_ALIVE = 1, SLOT_DEAD = 2 };
#define NO_SLOT UINT32_MAX
#define PEND_MIN 64

typedef struct ring_member {
    uint8_t pk[32];
    uint32_t next_free; /* SLOT_FREE: the next free slot */
    uint8_t state;
} ring_member;

typedef struct point_table {
    uint64_t *pos;
    uint32_t *owner;
    size_t n, cap;
} point_table;

struct pl_ring {
    pl_mem mem;
    uint32_t vpoints;
    ring_member *members; /* slots */
    uint32_t n_slots, cap_slots, free_head;
    uint32_t n_alive, n_dead;
    uint32_t *by_pk; /* slots of alive and dead members, ascending by key */
    uint32_t cap_by_pk;
    point_table main, pend;
    size_t dead_points;
};

/* ---- hashing ---------------------------------------------------------------------- */

void pl_ring_key_for_name(const char *normalized_name, uint8_t key[32])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)NAME_DOMAIN, sizeof NAME_DOMAIN - 1);
    crypto_generichash_update(&st, (const uint8_t *)normalized_name, strlen(normalized_name));
    crypto_generichash_final(&st, key, 32);
}

/* Position of a member's i-th point: the first 8 bytes, big-endian, of
 * BLAKE2b-128("parley-ring-point-v1" || pk || i as u32 big-endian). */
static uint64_t point_position(const uint8_t pk[32], uint32_t i)
{
    uint8_t msg[sizeof POINT_DOMAIN - 1 + 32 + 4], out[16];
    memcpy(msg, POINT_DOMAIN, sizeof POINT_DOMAIN - 1);
    memcpy(msg + sizeof POINT_DOMAIN - 1, pk, 32);
    pl_put_u32be(msg + sizeof POINT_DOMAIN - 1 + 32, i);
    crypto_generichash(out, sizeof out, msg, sizeof msg, NULL, 0);
    return pl_get_u64be(out);
}

/* ---- tables ---------------------------------------------------------------------------- */

static void *mem_calloc(const pl_ring *g, size_t count, size_t size)
{
    if (count == 0) count = 1;
    return g->mem.calloc(g->mem.ctx, count, size);
}

static void mem_free(const pl_ring *g, void *p)
{
    if (p) g->mem.free(g->mem.ctx, p);
}

/* Grows a point table to hold at least `need` points; the contents stay. */
static bool points_reserve(pl_ring *g, point_table *t, size_t need, bool exact)
{
    if (need <= t->cap) return true;
    size_t cap = exact ? need : t->cap + t->cap / 4 + 64;
    if (cap < need) cap = need;
    uint64_t *pos = mem_calloc(g, cap, sizeof *pos);
    uint32_t *owner = mem_calloc(g, cap, sizeof *owner);
    if (!pos || !owner) {
        mem_free(g, pos);
        mem_free(g, owner);
        return false;
    }
    if (t->n) {
        memcpy(pos, t->pos, t->n * sizeof *pos);
        memcpy(owner, t->owner, t->n * sizeof *owner);
    }
    mem_free(g, t->pos);
    mem_free(g, t->owner);
    t->pos = pos;
    t->owner = owner;
    t->cap = cap;
    return true;
}

/* Grows the slot array and the key index to hold `need` members. */
static bool members_reserve(pl_ring *g, uint32_t need, bool exact)
{
    if (need <= g->cap_slots && need <= g->cap_by_pk) return true;
    uint32_t cap = exact ? need : g->cap_slots + g->cap_slots / 4 + 16;
    if (cap < need) cap = need;
    if (cap > PL_RING_MAX_MEMBERS) cap = PL_RING_MAX_MEMBERS;
    ring_member *members = mem_calloc(g, cap, sizeof *members);
    uint32_t *by_pk = mem_calloc(g, cap, sizeof *by_pk);
    if (!members || !by_pk) {
        mem_free(g, members);
        mem_free(g, by_pk);
        return false;
    }
    if (g->n_slots) memcpy(members, g->members, g->n_slots * sizeof *members);
    if (g->n_alive + g->n_dead) memcpy(by_pk, g->by_pk, (g->n_alive + g->n_dead) * sizeof *by_pk);
    mem_free(g, g->members);
    mem_free(g, g->by_pk);
    g->members = members;
    g->by_pk = by_pk;
    g->cap_slots = g->cap_by_pk = cap;
    return true;
}

/* (position, key) order of two points. */
static bool point_before(const pl_ring *g, uint64_t pa, uint32_t oa, uint64_t pb, uint32_t ob)
{
    if (pa != pb) return pa < pb;
    return memcmp(g->members[oa].pk, g->members[ob].pk, 32) < 0;
}

/* Index of the first point at or after position p (n if none). */
static size_t lower_bound(const uint64_t *pos, size_t n, uint64_t p)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pos[mid] < p) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Finds pk in the key index: true and its index position, or false and
 * where it would go. */
static bool find_pk(const pl_ring *g, const uint8_t pk[32], size_t *at)
{
    size_t lo = 0, hi = g->n_alive + g->n_dead;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(g->members[g->by_pk[mid]].pk, pk, 32);
        if (c == 0) {
            *at = mid;
            return true;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    *at = lo;
    return false;
}

static void pend_insert(pl_ring *g, uint64_t p, uint32_t owner)
{
    point_table *t = &g->pend;
    size_t at = lower_bound(t->pos, t->n, p);
    while (at < t->n && !point_before(g, p, owner, t->pos[at], t->owner[at])) at++;
    memmove(t->pos + at + 1, t->pos + at, (t->n - at) * sizeof *t->pos);
    memmove(t->owner + at + 1, t->owner + at, (t->n - at) * sizeof *t->owner);
    t->pos[at] = p;
    t->owner[at] = owner;
    t->n++;
}

/* Merges pend into main from the back, in place (main has the room). */
static void merge_pending(pl_ring *g)
{
    point_table *m = &g->main, *p = &g->pend;
    size_t i = m->n, j = p->n, k = m->n + p->n;
    while (j > 0) {
        if (i > 0 && point_before(g, p->pos[j - 1], p->owner[j - 1], m->pos[i - 1], m->owner[i - 1])) {
            k--, i--;
            m->pos[k] = m->pos[i];
            m->owner[k] = m->owner[i];
        } else {
            k--, j--;
            m->pos[k] = p->pos[j];
            m->owner[k] = p->owner[j];
        }
    }
    m->n += p->n;
    p->n = 0;
}

static void drop_dead_points(pl_ring *g, point_table *t)
{
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (g->members[t->owner[i]].state != SLOT_ALIVE) continue;
        t->pos[k] = t->pos[i];
        t->owner[k] = t->owner[i];
        k++;
    }
    t->n = k;
}

/* Drops every dead member's points and frees their slots. */
static void compact(pl_ring *g)
{
    drop_dead_points(g, &g->main);
    drop_dead_points(g, &g->pend);
    merge_pending(g); /* main had room for both before, so it still has */
    uint32_t k = 0, n = g->n_alive + g->n_dead;
    for (uint32_t i = 0; i < n; i++)
        if (g->members[g->by_pk[i]].state == SLOT_ALIVE) g->by_pk[k++] = g->by_pk[i];
    for (uint32_t s = 0; s < g->n_slots; s++) {
        if (g->members[s].state != SLOT_DEAD) continue;
        memset(&g->members[s], 0, sizeof g->members[s]);
        g->members[s].state = SLOT_FREE;
        g->members[s].next_free = g->free_head;
        g->free_head = s;
    }
    g->n_dead = 0;
    g->dead_points = 0;
}

static size_t isqrt(size_t x)
{
    size_t r = 0, bit = (size_t)1 << (sizeof(size_t) * 8 - 2);
    while (bit > x) bit >>= 2;
    while (bit) {
        if (x >= r + bit) {
            x -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
    }
    return r;
}

/* How many points pend may hold before it is merged. Inserting into pend
 * costs O(pend) (a memmove), merging O(P) once every pend points, so about
 * sqrt(P) balances the two; a merge step costs more than a moved entry, and
 * 2 sqrt(P) measured a little faster (bench/bench_ring.c). */
static size_t pend_limit_for(size_t points)
{
    size_t s = 2 * isqrt(points);
    return s > PEND_MIN ? s : PEND_MIN;
}

static size_t pend_limit(const pl_ring *g) { return pend_limit_for(g->main.n + g->pend.n); }

/* ---- life cycle -------------------------------------------------------------------------- */

pl_ring_err pl_ring_new(pl_ring **out, const pl_mem *mem, unsigned vpoints)
{
    *out = NULL;
    if (!mem) mem = pl_mem_system();
    if (vpoints == 0) vpoints = PL_RING_DEFAULT_VPOINTS;
    if (vpoints > PL_RING_MAX_VPOINTS) return PL_RING_ERR_CONFIG;
    pl_ring *g = mem->calloc(mem->ctx, 1, sizeof *g);
    if (!g) return PL_RING_ERR_NOMEM;
    g->mem = *mem;
    g->vpoints = vpoints;
    g->free_head = NO_SLOT;
    *out = g;
    return PL_RING_OK;
}

void pl_ring_free(pl_ring *g)
{
    if (!g) return;
    mem_free(g, g->members);
    mem_free(g, g->by_pk);
    mem_free(g, g->main.pos);
    mem_free(g, g->main.owner);
    mem_free(g, g->pend.pos);
    mem_free(g, g->pend.owner);
    pl_mem mem = g->mem;
    mem.free(mem.ctx, g);
}

pl_ring_err pl_ring_reserve(pl_ring *g, size_t members)
{
    if (members > PL_RING_MAX_MEMBERS) return PL_RING_ERR_FULL;
    /* pend is merged once it holds more than its limit, so it never holds
     * more than the limit plus one member's points. */
    size_t points = members * g->vpoints;
    if (!members_reserve(g, (uint32_t)members, true) || !points_reserve(g, &g->main, points, true) ||
        !points_reserve(g, &g->pend, pend_limit_for(points) + g->vpoints, true))
        return PL_RING_ERR_NOMEM;
    return PL_RING_OK;
}

pl_ring_err pl_ring_copy(pl_ring *dst, const pl_ring *src)
{
    if (dst == src) return PL_RING_OK;
    uint32_t n_index = src->n_alive + src->n_dead;
    /* Each reserve either grows a table keeping its contents or changes
     * nothing, so a failure leaves dst as it was. main gets room for a merge
     * of pend, as pl_ring_add keeps it. */
    if (!points_reserve(dst, &dst->main, src->main.n + src->pend.n, false) ||
        !points_reserve(dst, &dst->pend, src->pend.n + src->vpoints, false) ||
        !members_reserve(dst, src->n_slots > n_index ? src->n_slots : n_index, false))
        return PL_RING_ERR_NOMEM;
    dst->vpoints = src->vpoints;
    dst->n_slots = src->n_slots;
    dst->free_head = src->free_head;
    dst->n_alive = src->n_alive;
    dst->n_dead = src->n_dead;
    dst->dead_points = src->dead_points;
    if (src->n_slots) memcpy(dst->members, src->members, src->n_slots * sizeof *src->members);
    if (n_index) memcpy(dst->by_pk, src->by_pk, n_index * sizeof *src->by_pk);
    dst->main.n = src->main.n;
    dst->pend.n = src->pend.n;
    if (src->main.n) {
        memcpy(dst->main.pos, src->main.pos, src->main.n * sizeof *src->main.pos);
        memcpy(dst->main.owner, src->main.owner, src->main.n * sizeof *src->main.owner);
    }
    if (src->pend.n) {
        memcpy(dst->pend.pos, src->pend.pos, src->pend.n * sizeof *src->pend.pos);
        memcpy(dst->pend.owner, src->pend.owner, src->pend.n * sizeof *src->pend.owner);
    }
    return PL_RING_OK;
}

/* ---- membership ------------------------------------------------------------------------------ */

pl_ring_err pl_ring_add(pl_ring *g, const uint8_t pk[32])
{
    size_t at;
    if (find_pk(g, pk, &at)) {
        ring_member *m = &g->members[g->by_pk[at]];
        if (m->state == SLOT_ALIVE) return PL_RING_ERR_EXISTS;
        /* Removed but not yet compacted: its points are all still there. */
        m->state = SLOT_ALIVE;
        g->n_dead--;
        g->n_alive++;
        g->dead_points -= g->vpoints;
        return PL_RING_OK;
    }
    uint32_t n_index = g->n_alive + g->n_dead;
    if (n_index >= PL_RING_MAX_MEMBERS) return PL_RING_ERR_FULL;
    /* Reserve everything first, so that running out of memory leaves the
     * ring as it was; main gets room for a merge of pend. */
    uint32_t need_slots = g->free_head != NO_SLOT ? g->n_slots : g->n_slots + 1;
    if (!members_reserve(g, need_slots > n_index + 1 ? need_slots : n_index + 1, false) ||
        !points_reserve(g, &g->pend, g->pend.n + g->vpoints, false) ||
        !points_reserve(g, &g->main, g->main.n + g->pend.n + g->vpoints, false))
        return PL_RING_ERR_NOMEM;

    uint32_t slot;
    if (g->free_head != NO_SLOT) {
        slot = g->free_head;
        g->free_head = g->members[slot].next_free;
    } else {
        slot = g->n_slots++;
    }
    ring_member *m = &g->members[slot];
    memcpy(m->pk, pk, 32);
    m->state = SLOT_ALIVE;
    m->next_free = NO_SLOT;
    memmove(g->by_pk + at + 1, g->by_pk + at, (n_index - at) * sizeof *g->by_pk);
    g->by_pk[at] = slot;
    g->n_alive++;
    for (uint32_t i = 0; i < g->vpoints; i++) pend_insert(g, point_position(pk, i), slot);
    if (g->pend.n > pend_limit(g)) merge_pending(g);
    return PL_RING_OK;
}

pl_ring_err pl_ring_remove(pl_ring *g, const uint8_t pk[32])
{
    size_t at;
    if (!find_pk(g, pk, &at) || g->members[g->by_pk[at]].state != SLOT_ALIVE) return PL_RING_ERR_NOT_FOUND;
    g->members[g->by_pk[at]].state = SLOT_DEAD;
    g->n_alive--;
    g->n_dead++;
    g->dead_points += g->vpoints;
    if (g->dead_points * 4 > g->main.n + g->pend.n) compact(g);
    return PL_RING_OK;
}

bool pl_ring_contains(const pl_ring *g, const uint8_t pk[32])
{
    size_t at;
    return find_pk(g, pk, &at) && g->members[g->by_pk[at]].state == SLOT_ALIVE;
}

size_t pl_ring_count(const pl_ring *g) { return g->n_alive; }
unsigned pl_ring_vpoints(const pl_ring *g) { return g->vpoints; }

size_t pl_ring_memory(const pl_ring *g)
{
    return sizeof *g + (size_t)g->cap_slots * sizeof *g->members + (size_t)g->cap_by_pk * sizeof *g->by_pk +
           (g->main.cap + g->pend.cap) * (sizeof *g->main.pos + sizeof *g->main.owner);
}

/* ---- look-ups ------------------------------------------------------------------------------------- */

/* A clockwise walk over both tables at once, from a position round the
 * circle once. Each table is read as a circular list starting at its first
 * point at or after the start; a point reached after its table wrapped
 * counts as lying one turn further (position + 2^64). */
typedef struct walk {
    const pl_ring *g;
    size_t i, j, left_i, left_j;
    bool wrapped_i, wrapped_j;
} walk;

static void walk_start(walk *w, const pl_ring *g, uint64_t from)
{
    w->g = g;
    w->i = lower_bound(g->main.pos, g->main.n, from);
    w->j = lower_bound(g->pend.pos, g->pend.n, from);
    w->wrapped_i = w->i == g->main.n;
    w->wrapped_j = w->j == g->pend.n;
    if (w->wrapped_i) w->i = 0;
    if (w->wrapped_j) w->j = 0;
    w->left_i = g->main.n;
    w->left_j = g->pend.n;
}

/* The next point's member slot; false once round the circle. */
static bool walk_next(walk *w, uint32_t *slot)
{
    const pl_ring *g = w->g;
    bool take_main;
    if (w->left_i == 0 && w->left_j == 0) return false;
    if (w->left_j == 0) take_main = true;
    else if (w->left_i == 0) take_main = false;
    else if (w->wrapped_i != w->wrapped_j) take_main = !w->wrapped_i;
    else take_main = point_before(g, g->main.pos[w->i], g->main.owner[w->i], g->pend.pos[w->j], g->pend.owner[w->j]);
    if (take_main) {
        *slot = g->main.owner[w->i];
        w->left_i--;
        if (++w->i == g->main.n) w->i = 0, w->wrapped_i = true;
    } else {
        *slot = g->pend.owner[w->j];
        w->left_j--;
        if (++w->j == g->pend.n) w->j = 0, w->wrapped_j = true;
    }
    return true;
}

/* The first r distinct live members from key's point; their slots. */
static size_t replica_slots(const pl_ring *g, const uint8_t key[32], size_t r, uint32_t out[PL_RING_MAX_REPLICAS])
{
    if (r > PL_RING_MAX_REPLICAS) r = PL_RING_MAX_REPLICAS;
    if (r > g->n_alive) r = g->n_alive;
    size_t n = 0;
    walk w;
    uint32_t slot;
    walk_start(&w, g, pl_get_u64be(key));
    while (n < r && walk_next(&w, &slot)) {
        if (g->members[slot].state != SLOT_ALIVE) continue;
        bool seen = false;
        for (size_t k = 0; k < n && !seen; k++) seen = out[k] == slot;
        if (!seen) out[n++] = slot;
    }
    return n;
}

size_t pl_ring_replicas(const pl_ring *g, const uint8_t key[32], size_t r, uint8_t out[][32])
{
    uint32_t slots[PL_RING_MAX_REPLICAS];
    size_t n = replica_slots(g, key, r, slots);
    for (size_t k = 0; k < n; k++) memcpy(out[k], g->members[slots[k]].pk, 32);
    return n;
}

bool pl_ring_is_replica(const pl_ring *g, const uint8_t key[32], const uint8_t pk[32], size_t r)
{
    size_t at;
    if (!find_pk(g, pk, &at)) return false;
    uint32_t target = g->by_pk[at];
    if (g->members[target].state != SLOT_ALIVE) return false;
    if (r > PL_RING_MAX_REPLICAS) r = PL_RING_MAX_REPLICAS;
    uint32_t seen_slots[PL_RING_MAX_REPLICAS];
    size_t n = 0;
    walk w;
    uint32_t slot;
    walk_start(&w, g, pl_get_u64be(key));
    while (n < r && walk_next(&w, &slot)) {
        if (g->members[slot].state != SLOT_ALIVE) continue;
        if (slot == target) return true;
        bool seen = false;
        for (size_t k = 0; k < n && !seen; k++) seen = seen_slots[k] == slot;
        if (!seen) seen_slots[n++] = slot;
    }
    return false;
}

/* ---- views ----------------------------------------------------------------------------------------- */

uint32_t pl_ring_slot(const pl_ring *g, const uint8_t pk[32])
{
    size_t at;
    if (!find_pk(g, pk, &at) || g->members[g->by_pk[at]].state != SLOT_ALIVE) return PL_RING_NO_SLOT;
    return g->by_pk[at];
}

uint32_t pl_ring_slot_limit(const pl_ring *g) { return g->n_slots; }

const uint8_t *pl_ring_slot_key(const pl_ring *g, uint32_t slot)
{
    return slot < g->n_slots && g->members[slot].state == SLOT_ALIVE ? g->members[slot].pk : NULL;
}

size_t pl_ring_replicas_in(const pl_ring *g, const uint64_t *alive, uint32_t nbits, const uint8_t key[32], size_t r,
                           uint32_t out[])
{
    if (r > PL_RING_MAX_REPLICAS) r = PL_RING_MAX_REPLICAS;
    size_t n = 0;
    walk w;
    uint32_t slot;
    walk_start(&w, g, pl_get_u64be(key));
    while (n < r && walk_next(&w, &slot)) {
        if (g->members[slot].state != SLOT_ALIVE || slot >= nbits || !(alive[slot / 64] >> (slot % 64) & 1)) continue;
        bool seen = false;
        for (size_t k = 0; k < n && !seen; k++) seen = out[k] == slot;
        if (!seen) out[n++] = slot;
    }
    return n;
}

/* ---- handover -------------------------------------------------------------------------------------- */

static bool in_set(const uint8_t set[][32], size_t n, const uint8_t pk[32])
{
    for (size_t k = 0; k < n; k++)
        if (memcmp(set[k], pk, 32) == 0) return true;
    return false;
}

void pl_ring_handover_for(const pl_ring *before, const pl_ring *after, const uint8_t key[32], size_t r,
                          const uint8_t self_pk[32], pl_ring_handover *out)
{
    memset(out, 0, sizeof *out);
    out->n_before = pl_ring_replicas(before, key, r, out->before);
    out->n_after = pl_ring_replicas(after, key, r, out->after);
    out->was_replica = in_set(out->before, out->n_before, self_pk);
    out->is_replica = in_set(out->after, out->n_after, self_pk);
    for (size_t k = 0; k < out->n_after; k++) {
        if (in_set(out->before, out->n_before, out->after[k])) continue;
        out->changed = true;
        if (memcmp(out->after[k], self_pk, 32) != 0) memcpy(out->added[out->n_added++], out->after[k], 32);
    }
    if (out->n_before != out->n_after) out->changed = true;
    for (size_t k = 0; k < out->n_before && !out->changed; k++)
        if (!in_set(out->after, out->n_after, out->before[k])) out->changed = true;
    /* The sender: the first old replica that is still a member. */
    if (out->was_replica && out->n_added > 0) {
        for (size_t k = 0; k < out->n_before; k++) {
            if (!pl_ring_contains(after, out->before[k])) continue;
            out->sender = memcmp(out->before[k], self_pk, 32) == 0;
            break;
        }
    }
}

const char *pl_ring_strerror(pl_ring_err err)
{
    switch (err) {
    case PL_RING_OK: return "ok";
    case PL_RING_ERR_CONFIG: return "bad ring configuration";
    case PL_RING_ERR_NOMEM: return "out of memory";
    case PL_RING_ERR_EXISTS: return "already a member of the ring";
    case PL_RING_ERR_NOT_FOUND: return "not a member of the ring";
    case PL_RING_ERR_FULL: return "the ring is full";
    }
    return "unknown ring error";
}
