/*
 * members.c - SWIM membership with Lifeguard's refinements, signed claims,
 * chunked sync and digest anti-entropy. The message layouts and timers are
 * in docs/membership.md; this file follows it.
 *
 * Data layout, chosen so that 10,000 instances of 10,000 members fit in one
 * simulator process:
 *
 *  - The table is an array of 68-byte entries that never move (a freed slot
 *    goes on a free list), so a slot number names a member for as long as
 *    it is remembered. A hash index of u32 slot numbers, keyed by a
 *    per-instance SipHash key, finds a member by key.
 *  - Signatures (64 bytes) sit in a separate slab and only for members whose
 *    signed claim was verified: members seeded by pl_members_add_known cost
 *    nothing there.
 *  - Anything transient (an update waiting to be gossiped, a suspicion timer)
 *    lives in a "hot" record that exists only while needed, so a quiet table
 *    carries no per-member timers or queue links.
 *  - The probe order is a keyed Feistel permutation of the slot numbers,
 *    rekeyed every round: a fresh random order each round without storing one.
 *  - Anti-entropy digests are XORs of per-entry hashes, kept up to date on
 *    every change, so comparing 256 buckets costs nothing to prepare.
 */
#include "members.h"

#include <math.h>
#include <sodium.h>
#include <string.h>

#include "wire.h"

/* ---- constants (docs/membership.md, "Timers" and "Limits") ----------------- */

#define NONE UINT32_MAX
#define CURSOR_DONE UINT32_MAX
#define ST_FREE 0

#define MAX_PIGGYBACK 32         /* updates per message, at most */
#define MAX_SYNC_ENTRIES 16      /* entries per sync response, at most */
#define MAX_INDIRECT 7           /* k, at most */
#define MAX_CONFIRM (MAX_INDIRECT + 1)
#define RELAYS 32                /* ping-reqs served at once */
#define CHAINS 16                /* sync pulls in flight at once */
#define AE_CHAINS 4              /* of which one anti-entropy exchange uses at most */
#define LEVELS 256               /* transmission counts the queue tells apart */
#define HEALTH_MAX 8
#define SYNC_TIMEOUT (1 * PL_SEC)
#define SYNC_TRIES 4
#define SYNC_SCAN_MAX 4096       /* table slots one sync response looks at */
#define QUEUE_SCAN_MAX 256       /* queued updates one message looks at */
#define INITIAL_CAP 64
#define SYNC_REQ_PIGGYBACK 240    /* room for a joiner's own claim and an accusation or two */
#define AE_MAX_BUCKETS 32        /* buckets one anti-entropy exchange pulls, at most */

#define UPDATE_MIN 37            /* kind, key, incarnation: a "dead" update */
#define ENTRY_DEAD_UNVERIFIED 5  /* sync entry: an unverified member is dead (an accusation) */
#define CLAIM_CONTEXT "parley-members-v1"
#define CLAIM_CONTEXT_LEN 17

/* ---- state ------------------------------------------------------------------- */

typedef struct member {
    uint8_t pk[32];
    uint8_t ip[16];
    uint16_t port;
    uint8_t family;  /* PL_AF_INET4 or PL_AF_INET6 */
    uint8_t state;   /* pl_member_state, or ST_FREE */
    uint32_t inc;    /* incarnation; 0 only while unverified; the free-list link when free */
    uint32_t sig;    /* slot in the signature slab, NONE: no verified claim */
    uint32_t hot;    /* slot of the hot record, NONE: nothing transient */
    uint32_t since;  /* seconds after m->epoch of the last state change */
} member;

_Static_assert(sizeof(member) == 68, "a member entry is 68 bytes");

typedef struct hot {
    uint32_t member;   /* NONE: free (q_next is then the free-list link) */
    uint32_t q_prev, q_next;
    uint32_t heap_pos; /* position in the suspicion heap, NONE: not suspected */
    uint16_t level;    /* how often the update was sent (or heard back) */
    bool queued;
    uint8_t nconfirm;  /* distinct accusers counted, the first included */
    pl_time queued_at; /* an update older than its lifetime is dropped: anti-entropy has it */
    pl_time start, deadline;
    uint8_t accuser[32]; /* the accuser our gossip of the suspicion names */
    uint32_t confirmers[MAX_CONFIRM]; /* first 4 bytes of each accuser's key */
} hot;

_Static_assert(sizeof(hot) == 112, "a hot record is 112 bytes");

typedef struct relay {
    bool used;
    uint8_t from_pk[32];
    pl_addr from_addr;
    uint32_t from_seq;
    uint8_t target_pk[32];
    uint32_t seq;
    pl_time nack_at;
} relay;

typedef struct chain {
    bool used, join;
    uint8_t peer_pk[32];
    pl_addr peer_addr;
    uint8_t buckets[PL_MEMBERS_BUCKETS / 8];
    uint32_t cursor, req_id;
    uint8_t tries;
    pl_time deadline;
} chain;

typedef struct probe {
    bool active, acked, indirect_sent;
    uint32_t target;
    uint8_t pk[32];
    uint32_t inc; /* the incarnation probed: a failure accuses that one only */
    uint32_t seq;
    pl_time indirect_at;
    uint8_t expected_nacks, nacks, nvia;
    uint32_t via[MAX_INDIRECT];
} probe;

struct pl_members {
    pl_members_io io;
    const pl_rng *rng;
    const pl_mem *mem;
    pl_members_verify_fn verify;
    void *verify_ctx;
    uint8_t pk[32], sk[64];

    uint32_t max_members;
    pl_time period, probe_timeout, ae_period, reap_time, gossip_interval;
    uint32_t k, susp_mult, susp_max_mult, lambda, max_message, sync_parallel, sync_rate;
    pl_time epoch;

    member *ent;
    uint32_t cap, hw, count, alive, free_head, self;
    uint32_t *index;
    uint32_t index_cap; /* a power of two */
    uint8_t hash_key[crypto_shorthash_KEYBYTES];

    uint8_t (*sigs)[64];
    uint32_t sig_cap, sig_hw, sig_free;

    hot *hots;
    uint32_t hot_cap, hot_hw, hot_free;
    uint32_t *heap; /* suspicion deadlines, a min-heap of hot slots */
    uint32_t heap_len;
    uint32_t qhead[LEVELS];
    uint32_t queued, qtop;

    uint32_t digest[PL_MEMBERS_BUCKETS];

    uint64_t perm_key;
    uint32_t perm_pos, perm_domain, perm_half;
    probe pr;
    pl_time next_period;
    uint32_t health;

    relay relays[RELAYS];
    chain chains[CHAINS];
    bool joining, synced, left;
    uint8_t seed_pk[32];
    pl_addr seed_addr;
    pl_time next_ae, next_gossip, last_ae;
    pl_time rate_at;
    uint64_t rate_tokens; /* in millionths of a response */

    pl_time now; /* of the call in progress */
    pl_members_stats st;
    uint8_t buf[PL_MEMBERS_MAX_MESSAGE];
};

/* A decoded update or sync entry; the pointers point into the message. */
typedef struct upd {
    uint8_t kind;
    const uint8_t *pk;
    uint32_t inc;
    pl_addr addr;
    const uint8_t *sig;     /* alive and left, and every sync entry */
    const uint8_t *accuser; /* suspect */
} upd;

/* ---- small helpers ------------------------------------------------------------ */

static uint32_t rand32(pl_members *m) { return (uint32_t)pl_rng_u64(m->rng); }

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static uint32_t secs(const pl_members *m, pl_time now) { return now > m->epoch ? (uint32_t)((now - m->epoch) / PL_SEC) : 0; }

static pl_addr entry_addr(const member *e)
{
    pl_addr a;
    memset(&a, 0, sizeof a);
    a.family = e->family;
    a.port = e->port;
    memcpy(a.ip, e->ip, 16);
    return a;
}

static void set_entry_addr(member *e, const pl_addr *a)
{
    e->family = a->family;
    e->port = a->port;
    memset(e->ip, 0, 16);
    memcpy(e->ip, a->ip, a->family == PL_AF_INET4 ? 4 : 16);
}

static size_t addr_len(const pl_addr *a) { return a->family == PL_AF_INET4 ? 7 : 19; }

static bool addr_usable(const pl_addr *a)
{
    if (a->family != PL_AF_INET4 && a->family != PL_AF_INET6) return false;
    return a->port != 0;
}

/* A total order on addresses: the tie-break between two claims a member
 * signed with one incarnation (it restarted and forgot), so that every
 * instance settles on the same one. */
static int addr_cmp(const pl_addr *a, const pl_addr *b)
{
    if (a->family != b->family) return a->family < b->family ? -1 : 1;
    int c = memcmp(a->ip, b->ip, a->family == PL_AF_INET4 ? 4 : 16);
    if (c) return c;
    return a->port == b->port ? 0 : a->port < b->port ? -1 : 1;
}

static bool entry_addr_is(const member *e, const pl_addr *a)
{
    pl_addr ea = entry_addr(e);
    return addr_cmp(&ea, a) == 0;
}

static bool is_live(uint8_t state) { return state == PL_MEMBER_ALIVE || state == PL_MEMBER_SUSPECT; }

/* Precedence of states within one incarnation (SWIM). */
static int rank(uint8_t state)
{
    switch (state) {
    case PL_MEMBER_ALIVE: return 0;
    case PL_MEMBER_SUSPECT: return 1;
    case PL_MEMBER_DEAD: return 2;
    default: return 3; /* left is final for its incarnation */
    }
}

static uint32_t pk_prefix(const uint8_t pk[32])
{
    uint32_t v;
    memcpy(&v, pk, 4);
    return v;
}

/* ---- memory -------------------------------------------------------------------- */

static void *grow(pl_members *m, void *old, size_t old_bytes, size_t new_bytes)
{
    uint8_t *p = m->mem->calloc(m->mem->ctx, 1, new_bytes);
    if (!p) return NULL;
    if (old) {
        memcpy(p, old, old_bytes);
        m->mem->free(m->mem->ctx, old);
    }
    return p;
}

static uint32_t next_cap(uint32_t cap, uint32_t limit)
{
    uint64_t n = cap < INITIAL_CAP ? INITIAL_CAP : (uint64_t)cap + cap / 2;
    return n > limit ? limit : (uint32_t)n;
}

/* ---- the hash index -------------------------------------------------------------- */

static uint32_t pk_hash(const pl_members *m, const uint8_t pk[32])
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, pk, 32, m->hash_key);
    uint32_t v;
    memcpy(&v, h, 4);
    return v;
}

static uint32_t find(const pl_members *m, const uint8_t pk[32])
{
    uint32_t mask = m->index_cap - 1;
    for (uint32_t i = pk_hash(m, pk) & mask;; i = (i + 1) & mask) {
        uint32_t s = m->index[i];
        if (s == NONE) return NONE;
        if (memcmp(m->ent[s].pk, pk, 32) == 0) return s;
    }
}

static void index_put(uint32_t *index, uint32_t cap, uint32_t hash, uint32_t slot)
{
    uint32_t mask = cap - 1;
    uint32_t i = hash & mask;
    while (index[i] != NONE) i = (i + 1) & mask;
    index[i] = slot;
}

static bool index_reserve(pl_members *m, uint32_t count)
{
    /* Linear probing stays short below 70 % load. */
    if ((uint64_t)count * 10 <= (uint64_t)m->index_cap * 7) return true;
    uint32_t cap = m->index_cap ? m->index_cap * 2 : 128;
    while ((uint64_t)count * 10 > (uint64_t)cap * 7) cap *= 2;
    uint32_t *idx = m->mem->calloc(m->mem->ctx, cap, sizeof *idx);
    if (!idx) return false;
    memset(idx, 0xff, (size_t)cap * sizeof *idx);
    for (uint32_t i = 0; i < m->index_cap; i++)
        if (m->index[i] != NONE) index_put(idx, cap, pk_hash(m, m->ent[m->index[i]].pk), m->index[i]);
    if (m->index) m->mem->free(m->mem->ctx, m->index);
    m->index = idx;
    m->index_cap = cap;
    return true;
}

static void index_remove(pl_members *m, uint32_t slot)
{
    uint32_t mask = m->index_cap - 1;
    uint32_t i = pk_hash(m, m->ent[slot].pk) & mask;
    while (m->index[i] != slot) i = (i + 1) & mask;
    /* Backward-shift deletion: no tombstones in the index. */
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (m->index[j] == NONE) break;
        uint32_t home = pk_hash(m, m->ent[m->index[j]].pk) & mask;
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            m->index[i] = m->index[j];
            i = j;
        }
    }
    m->index[i] = NONE;
}

/* ---- signatures ------------------------------------------------------------------ */

static uint32_t sig_alloc(pl_members *m)
{
    if (m->sig_free != NONE) {
        uint32_t s = m->sig_free;
        memcpy(&m->sig_free, m->sigs[s], 4);
        return s;
    }
    if (m->sig_hw == m->sig_cap) {
        uint32_t cap = next_cap(m->sig_cap, m->max_members);
        if (cap == m->sig_cap) return NONE;
        void *p = grow(m, m->sigs, (size_t)m->sig_cap * 64, (size_t)cap * 64);
        if (!p) return NONE;
        m->sigs = p;
        m->sig_cap = cap;
    }
    return m->sig_hw++;
}

static void sig_release(pl_members *m, uint32_t s)
{
    memcpy(m->sigs[s], &m->sig_free, 4);
    m->sig_free = s;
}

/* ---- claims ---------------------------------------------------------------------- */

size_t pl_members_claim_bytes(uint8_t out[PL_MEMBERS_CLAIM_MAX], pl_member_state state, const uint8_t pk[32],
                              const pl_addr *addr, uint32_t incarnation)
{
    pl_writer w = pl_writer_make(out, PL_MEMBERS_CLAIM_MAX);
    pl_write_bytes(&w, CLAIM_CONTEXT, CLAIM_CONTEXT_LEN);
    pl_write_u8(&w, (uint8_t)state);
    pl_write_bytes(&w, pk, 32);
    pl_write_u32(&w, incarnation);
    pl_write_addr(&w, addr);
    return w.err ? 0 : w.off;
}

static bool claim_verifies(pl_members *m, uint8_t status, const uint8_t pk[32], const pl_addr *addr, uint32_t inc,
                           const uint8_t sig[64])
{
    uint8_t msg[PL_MEMBERS_CLAIM_MAX];
    size_t len = pl_members_claim_bytes(msg, (pl_member_state)status, pk, addr, inc);
    bool ok = len > 0 && (m->verify ? m->verify(m->verify_ctx, sig, msg, len, pk)
                                    : crypto_sign_verify_detached(sig, msg, len, pk) == 0);
    if (!ok) m->st.drop_signature++;
    return ok;
}

/* ---- digests ---------------------------------------------------------------------- */

/* What anti-entropy compares, per entry: 0 for an entry left out. Verified
 * entries count by key, incarnation, address and class (live, dead or
 * left; a suspicion is a passing, local matter). Unverified entries (seeded
 * by add_known, incarnation 0) count while live, by key alone (host caches
 * may disagree on the address, and nobody could settle that), and not once
 * dead: a member still holding such an entry alive then differs, pulls,
 * and is told (an unverified "dead" entry in the sync response). */
static uint32_t entry_digest(const member *e)
{
    static const uint8_t key[crypto_shorthash_KEYBYTES] = {0};
    if (e->state == ST_FREE || (e->sig == NONE && !is_live(e->state))) return 0;
    uint8_t buf[56], h[crypto_shorthash_BYTES];
    memset(buf, 0, sizeof buf);
    memcpy(buf, e->pk, 32);
    pl_put_u32be(buf + 32, e->inc);
    buf[36] = is_live(e->state) ? PL_MEMBER_ALIVE : e->state;
    if (e->sig != NONE) {
        buf[37] = e->family;
        buf[38] = (uint8_t)(e->port >> 8);
        buf[39] = (uint8_t)e->port;
        memcpy(buf + 40, e->ip, 16);
    }
    crypto_shorthash(h, buf, sizeof buf, key);
    return pl_get_u32be(h);
}

static void digest_toggle(pl_members *m, const member *e) { m->digest[e->pk[0]] ^= entry_digest(e); }

/* ---- hot records, the gossip queue and the suspicion heap ---------------------------- */

static uint32_t hot_get(pl_members *m, uint32_t slot)
{
    member *e = &m->ent[slot];
    if (e->hot != NONE) return e->hot;
    uint32_t h;
    if (m->hot_free != NONE) {
        h = m->hot_free;
        m->hot_free = m->hots[h].q_next;
    } else {
        if (m->hot_hw == m->hot_cap) {
            uint32_t cap = next_cap(m->hot_cap, m->max_members);
            if (cap == m->hot_cap) return NONE;
            void *p = grow(m, m->hots, (size_t)m->hot_cap * sizeof(hot), (size_t)cap * sizeof(hot));
            if (!p) return NONE;
            m->hots = p;
            void *q = grow(m, m->heap, (size_t)m->hot_cap * sizeof(uint32_t), (size_t)cap * sizeof(uint32_t));
            if (!q) return NONE;
            m->heap = q;
            m->hot_cap = cap;
        }
        h = m->hot_hw++;
    }
    hot *r = &m->hots[h];
    memset(r, 0, sizeof *r);
    r->member = slot;
    r->q_prev = r->q_next = r->heap_pos = NONE;
    e->hot = h;
    return h;
}

static void hot_maybe_free(pl_members *m, uint32_t h)
{
    hot *r = &m->hots[h];
    if (r->queued || r->heap_pos != NONE) return;
    m->ent[r->member].hot = NONE;
    r->member = NONE;
    r->q_next = m->hot_free;
    m->hot_free = h;
}

static void q_unlink(pl_members *m, uint32_t h)
{
    hot *r = &m->hots[h];
    if (r->q_prev != NONE) m->hots[r->q_prev].q_next = r->q_next;
    else m->qhead[r->level] = r->q_next;
    if (r->q_next != NONE) m->hots[r->q_next].q_prev = r->q_prev;
    r->q_prev = r->q_next = NONE;
}

static void q_link(pl_members *m, uint32_t h)
{
    hot *r = &m->hots[h];
    r->q_prev = NONE;
    r->q_next = m->qhead[r->level];
    if (r->q_next != NONE) m->hots[r->q_next].q_prev = h;
    m->qhead[r->level] = h;
    if (r->level > m->qtop) m->qtop = r->level;
}

static void dequeue(pl_members *m, uint32_t h)
{
    if (!m->hots[h].queued) return;
    q_unlink(m, h);
    m->hots[h].queued = false;
    m->queued--;
    hot_maybe_free(m, h);
}

/* Puts the member's current state at the front of the gossip queue. */
static void enqueue(pl_members *m, uint32_t slot)
{
    uint32_t h = hot_get(m, slot);
    if (h == NONE) return;
    hot *r = &m->hots[h];
    if (r->queued) q_unlink(m, h);
    else m->queued++;
    r->queued = true;
    r->level = 0;
    r->queued_at = m->now;
    q_link(m, h);
}

static uint32_t transmit_limit(const pl_members *m);

/* Somebody told us what we were about to tell others: news that comes back
 * is news most members have. Rumour mongering with feedback (Demers et al.,
 * 1987): hearing it back counts as an eighth of its transmissions, so an
 * update nobody needs any more stops after about eight echoes instead of
 * its full lambda * log2(n) sends. The few members it missed get it from
 * anti-entropy, which news brings forward; an accused member is told
 * directly (see piggyback). */
static void heard_again(pl_members *m, uint32_t slot)
{
    uint32_t h = m->ent[slot].hot;
    if (h == NONE || !m->hots[h].queued) return;
    hot *r = &m->hots[h];
    uint32_t limit = transmit_limit(m);
    uint32_t step = limit / 8 ? limit / 8 : 1;
    q_unlink(m, h);
    if (r->level + step >= limit) {
        r->queued = false;
        m->queued--;
        hot_maybe_free(m, h);
        return;
    }
    r->level = (uint16_t)(r->level + step);
    q_link(m, h);
}

static bool heap_less(const pl_members *m, uint32_t a, uint32_t b) { return m->hots[a].deadline < m->hots[b].deadline; }

static void heap_set(pl_members *m, uint32_t pos, uint32_t h)
{
    m->heap[pos] = h;
    m->hots[h].heap_pos = pos;
}

static void heap_up(pl_members *m, uint32_t pos)
{
    uint32_t h = m->heap[pos];
    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (!heap_less(m, h, m->heap[parent])) break;
        heap_set(m, pos, m->heap[parent]);
        pos = parent;
    }
    heap_set(m, pos, h);
}

static void heap_down(pl_members *m, uint32_t pos)
{
    uint32_t h = m->heap[pos];
    for (;;) {
        uint32_t c = 2 * pos + 1;
        if (c >= m->heap_len) break;
        if (c + 1 < m->heap_len && heap_less(m, m->heap[c + 1], m->heap[c])) c++;
        if (!heap_less(m, m->heap[c], h)) break;
        heap_set(m, pos, m->heap[c]);
        pos = c;
    }
    heap_set(m, pos, h);
}

static void heap_remove(pl_members *m, uint32_t h)
{
    uint32_t pos = m->hots[h].heap_pos;
    if (pos == NONE) return;
    m->hots[h].heap_pos = NONE;
    uint32_t last = m->heap[--m->heap_len];
    if (pos < m->heap_len) {
        heap_set(m, pos, last);
        heap_down(m, pos);
        heap_up(m, m->hots[last].heap_pos);
    }
}

/* Suspicion timeout (Lifeguard): from suspicion_max_mult times the minimum
 * down to the minimum as independent accusers confirm, on a log scale. */
static pl_time suspicion_timeout(const pl_members *m, uint32_t confirmations)
{
    double n = m->alive > 1 ? (double)m->alive : 1.0;
    double scale = log10(n);
    if (scale < 1.0) scale = 1.0;
    double lo = (double)m->susp_mult * scale * (double)m->period;
    double hi = (double)m->susp_max_mult * lo;
    uint32_t expected = m->alive > 2 ? m->alive - 2 : 0;
    if (expected > m->k) expected = m->k;
    if (expected < 1) return (pl_time)lo;
    double t = hi - (hi - lo) * log((double)confirmations + 1.0) / log((double)expected + 1.0);
    return (pl_time)(t < lo ? lo : t);
}

/* ---- events --------------------------------------------------------------------- */

static void fill_info(const pl_members *m, uint32_t slot, pl_member_info *out)
{
    const member *e = &m->ent[slot];
    memset(out, 0, sizeof *out);
    memcpy(out->pk, e->pk, 32);
    out->addr = entry_addr(e);
    out->incarnation = e->inc;
    out->state = (pl_member_state)e->state;
    out->verified = e->sig != NONE;
    out->self = slot == m->self;
    out->since = m->epoch + (pl_time)e->since * PL_SEC;
}

static void emit(pl_members *m, pl_members_event_type type, uint32_t slot, const pl_addr *old_addr, pl_time now)
{
    if (!m->io.event || slot == m->self) return;
    pl_member_info info;
    fill_info(m, slot, &info);
    pl_members_event ev = {type, &info, old_addr, now};
    m->io.event(m->io.ctx, &ev);
}

/* ---- table changes ---------------------------------------------------------------- */

static void set_state(pl_members *m, uint32_t slot, uint8_t state, pl_time now)
{
    member *e = &m->ent[slot];
    if (e->state == state) return;
    if (is_live(e->state) && !is_live(state)) m->alive--;
    if (!is_live(e->state) && is_live(state)) m->alive++;
    e->state = state;
    e->since = secs(m, now);
}

static void end_suspicion(pl_members *m, uint32_t slot)
{
    uint32_t h = m->ent[slot].hot;
    if (h == NONE) return;
    heap_remove(m, h);
    m->hots[h].nconfirm = 0;
    hot_maybe_free(m, h);
}

static uint32_t slot_alloc(pl_members *m)
{
    if (m->count >= m->max_members) return NONE;
    if (!index_reserve(m, m->count + 1)) return NONE;
    uint32_t s;
    if (m->free_head != NONE) {
        s = m->free_head;
        m->free_head = m->ent[s].inc;
    } else {
        if (m->hw == m->cap) {
            uint32_t cap = next_cap(m->cap, m->max_members);
            if (cap == m->cap) return NONE;
            void *p = grow(m, m->ent, (size_t)m->cap * sizeof(member), (size_t)cap * sizeof(member));
            if (!p) return NONE;
            m->ent = p;
            m->cap = cap;
        }
        s = m->hw++;
    }
    member *e = &m->ent[s];
    memset(e, 0, sizeof *e);
    e->sig = e->hot = NONE;
    return s;
}

/* Adds a member (state ST_FREE until set_state), indexed. */
static uint32_t insert(pl_members *m, const uint8_t pk[32], const pl_addr *addr, uint32_t inc)
{
    uint32_t s = slot_alloc(m);
    if (s == NONE) {
        m->st.drop_full++;
        return NONE;
    }
    member *e = &m->ent[s];
    memcpy(e->pk, pk, 32);
    set_entry_addr(e, addr);
    e->inc = inc;
    index_put(m->index, m->index_cap, pk_hash(m, pk), s);
    m->count++;
    return s;
}

/* Forgets a dead or left member for good (after dead_reap_time). */
static void reap(pl_members *m, uint32_t slot)
{
    member *e = &m->ent[slot];
    digest_toggle(m, e);
    if (e->hot != NONE) {
        uint32_t h = e->hot;
        heap_remove(m, h);
        dequeue(m, h);
        if (e->hot != NONE) hot_maybe_free(m, h); /* it was not queued */
    }
    if (e->sig != NONE) sig_release(m, e->sig);
    index_remove(m, slot);
    if (is_live(e->state)) m->alive--;
    memset(e, 0, sizeof *e);
    e->state = ST_FREE;
    e->sig = e->hot = NONE;
    e->inc = m->free_head;
    m->free_head = slot;
    m->count--;
}

/* ---- our own claim ------------------------------------------------------------------- */

static void sign_own(pl_members *m, pl_time now)
{
    member *e = &m->ent[m->self];
    pl_addr a = entry_addr(e);
    uint8_t msg[PL_MEMBERS_CLAIM_MAX];
    uint8_t status = e->state == PL_MEMBER_LEFT ? PL_MEMBER_LEFT : PL_MEMBER_ALIVE;
    size_t len = pl_members_claim_bytes(msg, (pl_member_state)status, m->pk, &a, e->inc);
    crypto_sign_detached(m->sigs[e->sig], NULL, msg, len, m->sk);
    (void)now;
}

/* Makes a new claim about ourselves above incarnation `above`. */
static void refute(pl_members *m, uint32_t above, pl_time now)
{
    member *e = &m->ent[m->self];
    if (above == UINT32_MAX) return; /* cannot go higher; only a forger gets here */
    digest_toggle(m, e);
    e->inc = above + 1;
    set_state(m, m->self, PL_MEMBER_ALIVE, now);
    sign_own(m, now);
    digest_toggle(m, e);
    enqueue(m, m->self);
    m->st.refutations++;
    if (m->health < HEALTH_MAX) m->health++;
}

/* Something was said about us. Claims (signed) and accusations at our own
 * incarnation or above make us refute; older news makes us gossip our
 * current claim again so that whoever still repeats it learns better. */
static void about_self(pl_members *m, const upd *u, bool signed_claim, pl_time now)
{
    member *e = &m->ent[m->self];
    if (m->left) return;
    if (u->kind == PL_MEMBER_ALIVE && u->inc == e->inc && entry_addr_is(e, &u->addr)) {
        heard_again(m, m->self);
        return;
    }
    if (u->inc < e->inc) {
        m->st.drop_stale++;
        uint32_t h = e->hot;
        if (h == NONE || !m->hots[h].queued) enqueue(m, m->self);
        return;
    }
    if (signed_claim) {
        uint8_t status = u->kind == PL_MEMBER_LEFT ? PL_MEMBER_LEFT : PL_MEMBER_ALIVE;
        if (!claim_verifies(m, status, u->pk, &u->addr, u->inc, u->sig)) return;
    } else if (u->inc > e->inc) {
        /* An accusation about an incarnation we never signed. */
        m->st.drop_unknown++;
        return;
    }
    refute(m, u->inc, now);
}

/* ---- applying claims and accusations ------------------------------------------------------ */

static void accuse(pl_members *m, uint32_t s, uint32_t inc, const uint8_t accuser[32], pl_time now);
static void pulled_death(pl_members *m, uint32_t s, uint32_t inc, const uint8_t from[32], pl_time now);

/* Gossip brought a membership change (a member came, went or came back):
 * the network is in flux, and pure push gossip always misses a few members,
 * so the next anti-entropy exchange is brought forward to a few periods from
 * now, at most one early exchange per five periods. A quiet network keeps
 * the slow cadence. */
static void news(pl_members *m)
{
    if (m->ae_period == PL_TIME_NEVER) return;
    pl_time t = m->now + 2 * m->period + pl_rng_below(m->rng, 3 * m->period);
    if (t < m->last_ae + 5 * m->period) t = m->last_ae + 5 * m->period;
    if (t < m->next_ae) m->next_ae = t;
}

/* A signed claim: "alive at addr with inc" (or "left"), optionally with the
 * sender's verdict `state` (DEAD) at that incarnation, as sync entries carry
 * it; `from` is then the sender. gossip: re-spread what changed. */
static void apply_claim(pl_members *m, const upd *u, uint8_t state, const uint8_t *from, bool gossip, pl_time now)
{
    uint8_t status = u->kind == PL_MEMBER_LEFT ? PL_MEMBER_LEFT : PL_MEMBER_ALIVE;
    uint32_t s = find(m, u->pk);
    if (s == m->self) {
        upd self_u = *u;
        self_u.kind = state;
        about_self(m, &self_u, true, now);
        return;
    }
    if (s == NONE) {
        if (!claim_verifies(m, status, u->pk, &u->addr, u->inc, u->sig)) return;
        s = insert(m, u->pk, &u->addr, u->inc);
        if (s == NONE) return;
        member *e = &m->ent[s];
        e->sig = sig_alloc(m);
        if (e->sig == NONE) {
            /* Out of memory for the signature: forget the member again. */
            e->state = PL_MEMBER_DEAD;
            reap(m, s);
            m->st.drop_full++;
            return;
        }
        memcpy(m->sigs[e->sig], u->sig, 64);
        set_state(m, s, state, now);
        digest_toggle(m, e);
        if (is_live(state)) emit(m, PL_MEMBERS_EV_UP, s, NULL, now);
        if (gossip) {
            enqueue(m, s);
            news(m);
        }
        return;
    }

    member *e = &m->ent[s];
    bool same_addr = entry_addr_is(e, &u->addr);
    if (u->inc < e->inc) {
        m->st.drop_stale++;
        return;
    }
    bool newer;
    if (u->inc > e->inc) {
        newer = true;
    } else if (!same_addr) {
        /* Two claims signed with one incarnation: the greater address wins
         * everywhere, and the member refutes if that is not where it is. */
        pl_addr cur = entry_addr(e);
        if (addr_cmp(&u->addr, &cur) < 0) {
            m->st.drop_stale++;
            return;
        }
        newer = true;
    } else if (rank(state) > rank(e->state)) {
        newer = false; /* same claim, a graver verdict */
        if (state == PL_MEMBER_DEAD && from && is_live(e->state)) {
            /* A pulled table says dead where ours says alive: that may be
             * the stale view of a node that was cut off, so it counts as
             * the sender's accusation, which the member can refute, rather
             * than as a death. */
            pulled_death(m, s, u->inc, from, now);
            return;
        }
    } else {
        if (rank(state) == rank(e->state)) heard_again(m, s);
        else m->st.drop_stale++;
        return;
    }
    /* The signature must be checked unless it signs the very claim we hold:
     * same incarnation, same address, and an alive claim (a "left" is a
     * different message). */
    bool need_verify = newer || status == PL_MEMBER_LEFT || e->sig == NONE;
    if (need_verify && !claim_verifies(m, status, u->pk, &u->addr, u->inc, u->sig)) return;
    if (e->sig == NONE) {
        e->sig = sig_alloc(m);
        if (e->sig == NONE) {
            m->st.drop_full++;
            return;
        }
    }
    uint8_t old_state = e->state;
    pl_addr old_addr = entry_addr(e);
    digest_toggle(m, e);
    if (newer || status == PL_MEMBER_LEFT) memcpy(m->sigs[e->sig], u->sig, 64);
    e->inc = u->inc;
    set_entry_addr(e, &u->addr);
    if (old_state == PL_MEMBER_SUSPECT) end_suspicion(m, s);
    set_state(m, s, state, now);
    digest_toggle(m, e);
    bool moved = !same_addr;
    if (gossip && is_live(state) != is_live(old_state)) news(m);
    if (is_live(state)) {
        if (!is_live(old_state)) emit(m, PL_MEMBERS_EV_UP, s, NULL, now);
        else {
            if (old_state == PL_MEMBER_SUSPECT && e->state == PL_MEMBER_ALIVE)
                emit(m, PL_MEMBERS_EV_CLEARED, s, NULL, now);
            if (moved) emit(m, PL_MEMBERS_EV_ADDRESS, s, &old_addr, now);
        }
    } else if (is_live(old_state)) {
        emit(m, PL_MEMBERS_EV_DOWN, s, NULL, now);
    }
    if (gossip) enqueue(m, s);
}

static void declare_dead(pl_members *m, uint32_t s, pl_time now)
{
    member *e = &m->ent[s];
    end_suspicion(m, s);
    digest_toggle(m, e);
    set_state(m, s, PL_MEMBER_DEAD, now);
    digest_toggle(m, e);
    m->st.deaths++;
    emit(m, PL_MEMBERS_EV_DOWN, s, NULL, now);
    enqueue(m, s);
    news(m);
}

/* "accuser suspects pk at inc". Our own failed probes come here too. */
static void accuse(pl_members *m, uint32_t s, uint32_t inc, const uint8_t accuser[32], pl_time now)
{
    member *e = &m->ent[s];
    if (inc < e->inc || e->state == PL_MEMBER_DEAD || e->state == PL_MEMBER_LEFT) {
        m->st.drop_stale++;
        return;
    }
    if (inc > e->inc) {
        m->st.drop_unknown++;
        return;
    }
    uint32_t who = pk_prefix(accuser);
    if (e->state == PL_MEMBER_ALIVE) {
        uint32_t h = hot_get(m, s);
        if (h == NONE) return;
        digest_toggle(m, e);
        set_state(m, s, PL_MEMBER_SUSPECT, now);
        digest_toggle(m, e);
        hot *r = &m->hots[h];
        r->start = now;
        r->nconfirm = 1;
        r->confirmers[0] = who;
        memcpy(r->accuser, accuser, 32);
        r->deadline = now + suspicion_timeout(m, 0);
        heap_set(m, m->heap_len++, h);
        heap_up(m, m->heap_len - 1);
        m->st.suspicions++;
        emit(m, PL_MEMBERS_EV_SUSPECT, s, NULL, now);
        enqueue(m, s);
        return;
    }
    /* Already suspected: an accuser we have not counted confirms it, which
     * shortens the timeout, and its accusation is passed on. */
    hot *r = &m->hots[e->hot];
    for (uint32_t i = 0; i < r->nconfirm; i++)
        if (r->confirmers[i] == who) {
            heard_again(m, s);
            return;
        }
    if (r->nconfirm >= m->k + 1 || r->nconfirm >= MAX_CONFIRM) return;
    r->confirmers[r->nconfirm++] = who;
    memcpy(r->accuser, accuser, 32);
    pl_time d = r->start + suspicion_timeout(m, r->nconfirm - 1u);
    if (d < now) d = now;
    if (d < r->deadline) {
        r->deadline = d;
        heap_up(m, r->heap_pos);
    }
    enqueue(m, s);
}

/* A "dead" verdict pulled from another member's table, about a member we
 * hold alive: the sender already waited out its own suspicion, so ours runs
 * the minimum time only, as if fully confirmed. The accused still has that
 * long to refute, which is what keeps a healed partition from killing live
 * members. */
static void pulled_death(pl_members *m, uint32_t s, uint32_t inc, const uint8_t from[32], pl_time now)
{
    accuse(m, s, inc, from, now);
    uint32_t h = m->ent[s].hot;
    if (m->ent[s].state != PL_MEMBER_SUSPECT || h == NONE || m->hots[h].heap_pos == NONE) return;
    hot *r = &m->hots[h];
    pl_time d = r->start + suspicion_timeout(m, MAX_CONFIRM);
    if (d < now) d = now;
    if (d < r->deadline) {
        r->deadline = d;
        heap_up(m, r->heap_pos);
    }
}

static void apply_update(pl_members *m, const upd *u, pl_time now)
{
    m->st.updates_received++;
    if (u->kind == PL_MEMBER_ALIVE || u->kind == PL_MEMBER_LEFT) {
        apply_claim(m, u, u->kind, NULL, true, now);
        return;
    }
    uint32_t s = find(m, u->pk);
    if (s == NONE) {
        m->st.drop_unknown++;
        return;
    }
    if (s == m->self) {
        about_self(m, u, false, now);
        return;
    }
    if (u->kind == PL_MEMBER_SUSPECT) {
        accuse(m, s, u->inc, u->accuser, now);
        return;
    }
    member *e = &m->ent[s]; /* dead */
    if (u->inc < e->inc || e->state == PL_MEMBER_LEFT) {
        m->st.drop_stale++;
    } else if (u->inc > e->inc) {
        m->st.drop_unknown++;
    } else if (e->state == PL_MEMBER_DEAD) {
        heard_again(m, s);
    } else {
        declare_dead(m, s, now);
    }
}

/* ---- encoding ------------------------------------------------------------------------ */

/* The update that tells the member's current state; 0 if there is none to
 * tell (an unverified member that is alive). */
static size_t update_size(const pl_members *m, const member *e)
{
    switch (e->state) {
    case PL_MEMBER_ALIVE:
    case PL_MEMBER_LEFT: {
        if (e->sig == NONE) return 0;
        pl_addr a = entry_addr(e);
        return UPDATE_MIN + addr_len(&a) + 64;
    }
    case PL_MEMBER_SUSPECT: return UPDATE_MIN + 32;
    case PL_MEMBER_DEAD: return UPDATE_MIN;
    default: return 0;
    }
}

static void write_update(pl_writer *w, const pl_members *m, const member *e)
{
    pl_write_u8(w, e->state);
    pl_write_bytes(w, e->pk, 32);
    pl_write_u32(w, e->inc);
    if (e->state == PL_MEMBER_ALIVE || e->state == PL_MEMBER_LEFT) {
        pl_addr a = entry_addr(e);
        pl_write_addr(w, &a);
        pl_write_bytes(w, m->sigs[e->sig], 64);
    } else if (e->state == PL_MEMBER_SUSPECT) {
        pl_write_bytes(w, m->hots[e->hot].accuser, 32);
    }
}

static uint32_t transmit_limit(const pl_members *m)
{
    uint32_t bits = 0;
    while (bits < 32 && ((uint64_t)1 << bits) < (uint64_t)m->alive + 1) bits++;
    uint64_t limit = (uint64_t)m->lambda * (bits ? bits : 1);
    return limit >= LEVELS ? LEVELS - 1 : (uint32_t)limit;
}

/* Appends the count byte and as many queued updates as fit, fewest
 * transmissions first. A message to a member we hold suspect or dead
 * starts with that accusation: the accused is the one member that must
 * hear it, and the others may long have stopped repeating it. */
static void piggyback(pl_members *m, pl_writer *w, const uint8_t to[32], size_t budget)
{
    size_t count_at = w->off;
    /* The writer's capacity is the message cap; the budget may lower it. */
    size_t cap_saved = w->cap;
    if (w->off + 1 + budget < w->cap) w->cap = w->off + 1 + budget;
    pl_write_u8(w, 0);
    if (w->err) return;
    uint32_t picked[MAX_PIGGYBACK];
    uint32_t n = 0, scanned = 0, extra = 0;
    uint32_t dest = find(m, to);
    if (dest != NONE && dest != m->self &&
        (m->ent[dest].state == PL_MEMBER_SUSPECT || m->ent[dest].state == PL_MEMBER_DEAD)) {
        write_update(w, m, &m->ent[dest]);
        extra = 1;
    }
    uint32_t limit = transmit_limit(m);
    /* An update lives as many periods as it may be sent times: news that
     * could not get out by then (a mass join or crash saturates the
     * messages) is left to anti-entropy, which moves it with far less
     * redundancy than gossip would. */
    pl_time lifetime = (pl_time)limit * m->period;
    uint32_t misfits = 0;
    bool room = true;
    for (uint32_t level = 0; level <= m->qtop && room; level++) {
        uint32_t h = m->qhead[level];
        while (h != NONE && room) {
            uint32_t next = m->hots[h].q_next;
            scanned++;
            member *e = &m->ent[m->hots[h].member];
            size_t size = update_size(m, e);
            if (extra && m->hots[h].member == dest) {
                /* already at the front */
            } else if (size == 0 || level >= limit || m->now - m->hots[h].queued_at > lifetime) {
                dequeue(m, h);
            } else if (size <= w->cap - w->off) {
                write_update(w, m, e);
                picked[n++] = h;
            } else {
                misfits++;
            }
            h = next;
            /* Stop once nothing more can fit, or after a few updates that
             * did not: the rest waits for the next message. */
            room = w->cap - w->off >= UPDATE_MIN && n + extra < MAX_PIGGYBACK && scanned < QUEUE_SCAN_MAX &&
                   misfits < 8;
        }
    }
    if (m->qtop > 0 && m->qhead[m->qtop] == NONE) {
        while (m->qtop > 0 && m->qhead[m->qtop] == NONE) m->qtop--;
    }
    w->cap = cap_saved;
    w->buf[count_at] = (uint8_t)(n + extra);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t h = picked[i];
        hot *r = &m->hots[h];
        q_unlink(m, h);
        r->level++;
        if (r->level >= limit) {
            r->queued = false;
            m->queued--;
            hot_maybe_free(m, h);
        } else {
            q_link(m, h);
        }
    }
    m->st.updates_sent += n + extra;
}

static pl_writer start_msg(pl_members *m, uint8_t type)
{
    pl_writer w = pl_writer_make(m->buf, m->max_message);
    pl_write_u8(&w, type);
    return w;
}

static void send_msg(pl_members *m, const uint8_t pk[32], const pl_addr *addr, const pl_writer *w)
{
    if (w->err || w->off == 0) return;
    unsigned kind = w->buf[0] - PL_MEMBERS_MSG_MIN;
    m->st.tx_msgs[kind]++;
    m->st.tx_bytes[kind] += w->off;
    m->io.send(m->io.ctx, pk, addr, w->buf, w->off);
}

/* ping, ack and nack share a layout: type, seq, piggyback. */
static void send_simple(pl_members *m, uint8_t type, const uint8_t pk[32], const pl_addr *addr, uint32_t seq)
{
    pl_writer w = start_msg(m, type);
    pl_write_u32(&w, seq);
    piggyback(m, &w, pk, PL_MEMBERS_MAX_MESSAGE);
    send_msg(m, pk, addr, &w);
}

/* ---- decoding ------------------------------------------------------------------------ */

static bool read_addr_checked(pl_reader *r, pl_addr *a)
{
    pl_read_addr(r, a);
    return !r->err && addr_usable(a);
}

static bool read_update(pl_reader *r, upd *u)
{
    memset(u, 0, sizeof *u);
    u->kind = pl_read_u8(r);
    u->pk = pl_read_ptr(r, 32);
    u->inc = pl_read_u32(r);
    switch (u->kind) {
    case PL_MEMBER_ALIVE:
    case PL_MEMBER_LEFT:
        if (!read_addr_checked(r, &u->addr) || u->inc == 0) return false;
        u->sig = pl_read_ptr(r, 64);
        break;
    case PL_MEMBER_SUSPECT: u->accuser = pl_read_ptr(r, 32); break;
    case PL_MEMBER_DEAD: break;
    default: return false;
    }
    return !r->err;
}

/* A sync entry always carries the signed claim; its kind is the holder's
 * verdict: alive (alive or suspect), dead, or left. */
static bool read_entry(pl_reader *r, upd *u)
{
    memset(u, 0, sizeof *u);
    u->kind = pl_read_u8(r);
    u->pk = pl_read_ptr(r, 32);
    u->inc = pl_read_u32(r);
    if (u->kind == ENTRY_DEAD_UNVERIFIED) return !r->err && u->inc == 0;
    if (u->kind != PL_MEMBER_ALIVE && u->kind != PL_MEMBER_DEAD && u->kind != PL_MEMBER_LEFT) return false;
    if (!read_addr_checked(r, &u->addr) || u->inc == 0) return false;
    u->sig = pl_read_ptr(r, 64);
    return !r->err;
}

static bool read_piggyback(pl_reader *r, upd *ups, uint32_t *n)
{
    *n = pl_read_u8(r);
    if (r->err || *n > MAX_PIGGYBACK) return false;
    for (uint32_t i = 0; i < *n; i++)
        if (!read_update(r, &ups[i])) return false;
    return pl_reader_done(r);
}

/* ---- probing ---------------------------------------------------------------------------- */

static pl_time scaled(const pl_members *m, pl_time t) { return t * (m->health + 1); }

static uint32_t permute(const pl_members *m, uint32_t x)
{
    uint32_t half = m->perm_half, mask = (1u << half) - 1;
    do {
        uint32_t l = x >> half, r = x & mask;
        for (uint64_t i = 0; i < 4; i++) {
            uint32_t f = (uint32_t)mix64(m->perm_key ^ (i << 40) ^ r) & mask;
            uint32_t t = l ^ f;
            l = r;
            r = t;
        }
        x = (l << half) | r;
    } while (x >= m->perm_domain);
    return x;
}

static void new_round(pl_members *m)
{
    m->perm_domain = m->hw ? m->hw : 1;
    uint32_t bits = 1;
    while (((uint64_t)1 << bits) < m->perm_domain) bits++;
    m->perm_half = (bits + 1) / 2;
    m->perm_key = pl_rng_u64(m->rng);
    m->perm_pos = 0;
}

/* The next member to probe in this round's order; reaps old tombstones it
 * walks past. */
static uint32_t next_target(pl_members *m, pl_time now)
{
    uint32_t tries = 2 * m->hw + 2;
    if (tries > 256) tries = 256;
    uint32_t reap_s = (uint32_t)(m->reap_time / PL_SEC);
    for (uint32_t t = 0; t < tries; t++) {
        if (m->perm_pos >= m->perm_domain) new_round(m);
        uint32_t s = permute(m, m->perm_pos++);
        if (s >= m->hw || s == m->self) continue;
        member *e = &m->ent[s];
        if (is_live(e->state)) return s;
        if ((e->state == PL_MEMBER_DEAD || e->state == PL_MEMBER_LEFT) && secs(m, now) - e->since >= reap_s)
            reap(m, s);
    }
    return NONE;
}

/* A random member in one of the wanted states other than self and `not`;
 * NONE after a bounded number of tries. */
static uint32_t random_member(pl_members *m, bool live, uint32_t not, uint32_t tries)
{
    if (m->hw == 0) return NONE;
    for (uint32_t t = 0; t < tries; t++) {
        uint32_t s = (uint32_t)pl_rng_below(m->rng, m->hw);
        if (s == m->self || s == not) continue;
        uint8_t st = m->ent[s].state;
        if (live ? st == PL_MEMBER_ALIVE : st == PL_MEMBER_DEAD) return s;
    }
    return NONE;
}

static void finish_probe(pl_members *m, pl_time now)
{
    probe *p = &m->pr;
    if (!p->active) return;
    p->active = false;
    if (p->acked) {
        if (m->health > 0) m->health--;
        return;
    }
    m->st.probes_failed++;
    /* Lifeguard: intermediaries that did not even nack suggest that the
     * trouble is here, not at the target. */
    uint32_t delta = p->expected_nacks ? (uint32_t)(p->expected_nacks - p->nacks) : 1;
    m->health = m->health + delta > HEALTH_MAX ? HEALTH_MAX : m->health + delta;
    uint32_t s = p->target;
    if (s < m->hw && memcmp(m->ent[s].pk, p->pk, 32) == 0 && is_live(m->ent[s].state))
        accuse(m, s, p->inc, m->pk, now);
}

static void start_probe(pl_members *m, pl_time now)
{
    uint32_t s = next_target(m, now);
    if (s == NONE) return;
    probe *p = &m->pr;
    memset(p, 0, sizeof *p);
    p->active = true;
    p->target = s;
    memcpy(p->pk, m->ent[s].pk, 32);
    p->inc = m->ent[s].inc;
    p->seq = rand32(m);
    p->indirect_at = now + scaled(m, m->probe_timeout);
    m->st.probes++;
    pl_addr a = entry_addr(&m->ent[s]);
    send_simple(m, PL_MEMBERS_MSG_PING, p->pk, &a, p->seq);
}

static void send_ping_reqs(pl_members *m)
{
    probe *p = &m->pr;
    p->indirect_sent = true;
    member *t = &m->ent[p->target];
    pl_addr ta = entry_addr(t);
    for (uint32_t i = 0; i < m->k && p->nvia < MAX_INDIRECT; i++) {
        uint32_t s = random_member(m, true, p->target, 8 * m->k + 8);
        if (s == NONE) break;
        bool dup = false;
        for (uint32_t j = 0; j < p->nvia; j++) dup |= p->via[j] == s;
        if (dup) continue;
        p->via[p->nvia++] = s;
        pl_writer w = start_msg(m, PL_MEMBERS_MSG_PING_REQ);
        pl_write_u32(&w, p->seq);
        pl_write_bytes(&w, t->pk, 32);
        pl_write_addr(&w, &ta);
        piggyback(m, &w, m->ent[s].pk, PL_MEMBERS_MAX_MESSAGE);
        pl_addr va = entry_addr(&m->ent[s]);
        send_msg(m, m->ent[s].pk, &va, &w);
        m->st.indirect_probes++;
    }
    p->expected_nacks = p->nvia;
}

static bool is_via(const pl_members *m, const uint8_t pk[32])
{
    for (uint32_t i = 0; i < m->pr.nvia; i++)
        if (memcmp(m->ent[m->pr.via[i]].pk, pk, 32) == 0) return true;
    return false;
}

/* ---- sync and anti-entropy ------------------------------------------------------------- */

static bool bucket_wanted(const uint8_t *bitmap, uint8_t b) { return bitmap[b >> 3] & (1u << (b & 7)); }

static void send_sync_req(pl_members *m, chain *c, pl_time now)
{
    c->req_id = rand32(m);
    c->deadline = now + scaled(m, SYNC_TIMEOUT);
    pl_writer w = start_msg(m, PL_MEMBERS_MSG_SYNC_REQ);
    pl_write_u32(&w, c->req_id);
    pl_write_u32(&w, c->cursor);
    pl_write_bytes(&w, c->buckets, sizeof c->buckets);
    piggyback(m, &w, c->peer_pk, SYNC_REQ_PIGGYBACK);
    send_msg(m, c->peer_pk, &c->peer_addr, &w);
}

/* Starts up to `ways` pulls of the given buckets from one peer, the buckets
 * split between them so the chunks come in parallel. */
static uint32_t start_pull(pl_members *m, const uint8_t pk[32], const pl_addr *addr, const uint8_t *bitmap,
                           uint32_t ways, bool join, pl_time now)
{
    uint32_t wanted[PL_MEMBERS_BUCKETS], nw = 0;
    for (uint32_t b = 0; b < PL_MEMBERS_BUCKETS; b++)
        if (bucket_wanted(bitmap, (uint8_t)b)) wanted[nw++] = b;
    if (ways > nw) ways = nw;
    uint32_t started = 0, next = 0;
    for (uint32_t i = 0; i < CHAINS && started < ways; i++) {
        chain *c = &m->chains[i];
        if (c->used) continue;
        memset(c, 0, sizeof *c);
        c->used = true;
        c->join = join;
        memcpy(c->peer_pk, pk, 32);
        c->peer_addr = *addr;
        uint32_t end = (uint32_t)((uint64_t)nw * (started + 1) / ways);
        for (; next < end; next++) c->buckets[wanted[next] >> 3] |= (uint8_t)(1u << (wanted[next] & 7));
        send_sync_req(m, c, now);
        started++;
    }
    return started;
}

static uint32_t chains_with(const pl_members *m, bool join)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < CHAINS; i++) n += m->chains[i].used && m->chains[i].join == join;
    return n;
}

static void join_done(pl_members *m, pl_time now)
{
    m->joining = false;
    m->synced = true;
    /* Whoever joined while we were pulling is not in what we pulled: a first
     * anti-entropy round with some other member, a few periods from now,
     * fetches them rather than waiting for gossip to reach us. */
    if (m->ae_period != PL_TIME_NEVER) m->next_ae = now + 2 * m->period + pl_rng_below(m->rng, 3 * m->period);
    if (!m->io.event) return;
    pl_member_info info;
    memset(&info, 0, sizeof info);
    uint32_t s = find(m, m->seed_pk);
    if (s != NONE) fill_info(m, s, &info);
    else {
        memcpy(info.pk, m->seed_pk, 32);
        info.addr = m->seed_addr;
    }
    pl_members_event ev = {PL_MEMBERS_EV_SYNCED, &info, NULL, now};
    m->io.event(m->io.ctx, &ev);
}

static void chain_timeout(pl_members *m, chain *c, pl_time now)
{
    if (++c->tries < SYNC_TRIES) {
        send_sync_req(m, c, now);
        return;
    }
    if (!c->join) {
        c->used = false;
        return;
    }
    /* The seed does not answer: continue the same buckets with another
     * member (cursors are per responder, so from the start). */
    uint32_t s = random_member(m, true, find(m, c->peer_pk), 64);
    if (s != NONE) {
        memcpy(c->peer_pk, m->ent[s].pk, 32);
        c->peer_addr = entry_addr(&m->ent[s]);
        memcpy(m->seed_pk, c->peer_pk, 32);
        m->seed_addr = c->peer_addr;
    }
    c->cursor = 0;
    c->tries = 0;
    send_sync_req(m, c, now);
}

/* Serves one chunk: entries from the cursor on, in the wanted buckets. */
static void serve_sync(pl_members *m, const uint8_t pk[32], const pl_addr *addr, uint32_t req_id, uint32_t cursor,
                       const uint8_t *bitmap, pl_time now)
{
    /* A token bucket caps the bytes we hand out per second. */
    uint64_t cap = (uint64_t)m->sync_rate * 1000000u;
    if (now > m->rate_at) {
        uint64_t add = (now - m->rate_at) * m->sync_rate;
        m->rate_tokens = m->rate_tokens + add > cap ? cap : m->rate_tokens + add;
        m->rate_at = now;
    }
    if (m->rate_tokens < 1000000u) {
        m->st.drop_busy++;
        return;
    }
    m->rate_tokens -= 1000000u;

    pl_writer w = start_msg(m, PL_MEMBERS_MSG_SYNC_RESP);
    pl_write_u32(&w, req_id);
    pl_write_u32(&w, m->count);
    size_t next_at = w.off;
    pl_write_u32(&w, CURSOR_DONE);
    size_t count_at = w.off;
    pl_write_u8(&w, 0);
    uint32_t n = 0, s = cursor, scanned = 0;
    for (; s < m->hw; s++) {
        if (scanned++ >= SYNC_SCAN_MAX || n >= MAX_SYNC_ENTRIES) break;
        member *e = &m->ent[s];
        if (e->state == ST_FREE || !bucket_wanted(bitmap, e->pk[0])) continue;
        if (e->sig == NONE) {
            /* Unverified: only a death can be told, as an accusation. */
            if (e->state != PL_MEMBER_DEAD) continue;
            if (UPDATE_MIN > w.cap - w.off) break;
            pl_write_u8(&w, ENTRY_DEAD_UNVERIFIED);
            pl_write_bytes(&w, e->pk, 32);
            pl_write_u32(&w, e->inc);
            n++;
            continue;
        }
        pl_addr a = entry_addr(e);
        if (UPDATE_MIN + addr_len(&a) + 64 > w.cap - w.off) break;
        pl_write_u8(&w, is_live(e->state) ? PL_MEMBER_ALIVE : e->state);
        pl_write_bytes(&w, e->pk, 32);
        pl_write_u32(&w, e->inc);
        pl_write_addr(&w, &a);
        pl_write_bytes(&w, m->sigs[e->sig], 64);
        n++;
    }
    if (s < m->hw) pl_put_u32be(w.buf + next_at, s);
    w.buf[count_at] = (uint8_t)n;
    send_msg(m, pk, addr, &w);
}

/* The digests two members compare leave out both of them: each is the
 * authority on itself, and a stale view of either is repaired by gossip,
 * refutation and the accusation every message to an accused member
 * carries. Leaving them out also keeps two members whose tables were seeded
 * unverified (add_known) from differing over nothing but their own claims. */
static void digests_without(const pl_members *m, const uint8_t other[32], uint32_t out[PL_MEMBERS_BUCKETS])
{
    memcpy(out, m->digest, sizeof m->digest);
    const member *self = &m->ent[m->self];
    out[self->pk[0]] ^= entry_digest(self);
    uint32_t s = find(m, other);
    if (s != NONE) out[m->ent[s].pk[0]] ^= entry_digest(&m->ent[s]);
}

static uint32_t diff_buckets(const pl_members *m, const uint8_t other[32], const uint32_t theirs[PL_MEMBERS_BUCKETS],
                             uint8_t *bitmap)
{
    uint32_t mine[PL_MEMBERS_BUCKETS], ndiff = 0;
    digests_without(m, other, mine);
    memset(bitmap, 0, PL_MEMBERS_BUCKETS / 8);
    for (uint32_t b = 0; b < PL_MEMBERS_BUCKETS; b++) {
        if (theirs[b] != mine[b]) {
            bitmap[b >> 3] |= (uint8_t)(1u << (b & 7));
            ndiff++;
        }
    }
    return ndiff;
}

static void send_digest(pl_members *m, const uint8_t pk[32], const pl_addr *addr, bool reply)
{
    uint32_t mine[PL_MEMBERS_BUCKETS];
    digests_without(m, pk, mine);
    pl_writer w = start_msg(m, PL_MEMBERS_MSG_DIGEST);
    pl_write_u8(&w, reply ? 1 : 0);
    for (uint32_t b = 0; b < PL_MEMBERS_BUCKETS; b++) pl_write_u32(&w, mine[b]);
    piggyback(m, &w, pk, PL_MEMBERS_MAX_MESSAGE);
    send_msg(m, pk, addr, &w);
}

/* An exchange found our views apart: others may be apart too, so the next
 * exchange (with another random member) comes soon. */
static void soon(pl_members *m)
{
    if (m->ae_period == PL_TIME_NEVER) return;
    pl_time t = m->now + 5 * m->period;
    if (t < m->next_ae) m->next_ae = t;
}

static void anti_entropy(pl_members *m, pl_time now)
{
    uint32_t jitter = (uint32_t)pl_rng_below(m->rng, 1000);
    m->next_ae = now + m->ae_period * 3 / 4 + m->ae_period / 2 * jitter / 1000;
    m->last_ae = now;
    if (chains_with(m, false) > 0) return;
    /* Now and then talk to a member we believe dead: if it is alive on the
     * other side of a healed partition, the exchange tells it so and it
     * refutes. */
    uint32_t s = NONE;
    if (pl_rng_below(m->rng, 4) == 0) s = random_member(m, false, NONE, 16);
    if (s == NONE) s = random_member(m, true, NONE, 64);
    if (s == NONE) return;
    m->st.anti_entropy_rounds++;
    pl_addr a = entry_addr(&m->ent[s]);
    send_digest(m, m->ent[s].pk, &a, false);
}

/* Extra dissemination capacity while updates wait: one message of nothing
 * but updates to a random member. */
static void gossip(pl_members *m, pl_time now)
{
    m->next_gossip = now + m->gossip_interval;
    if (m->queued == 0) return;
    uint32_t s = random_member(m, true, NONE, 16);
    if (s == NONE) return;
    pl_writer w = start_msg(m, PL_MEMBERS_MSG_GOSSIP);
    piggyback(m, &w, m->ent[s].pk, PL_MEMBERS_MAX_MESSAGE);
    if (w.buf[1] == 0) return;
    pl_addr a = entry_addr(&m->ent[s]);
    send_msg(m, m->ent[s].pk, &a, &w);
}

/* ---- receiving --------------------------------------------------------------------------- */

static void apply_all(pl_members *m, const upd *ups, uint32_t n, pl_time now)
{
    for (uint32_t i = 0; i < n; i++) apply_update(m, &ups[i], now);
}

static void on_ack(pl_members *m, const uint8_t from[32], uint32_t seq, pl_time now)
{
    probe *p = &m->pr;
    if (p->active && !p->acked && seq == p->seq && (memcmp(from, p->pk, 32) == 0 || is_via(m, from))) {
        p->acked = true;
        return;
    }
    for (uint32_t i = 0; i < RELAYS; i++) {
        relay *r = &m->relays[i];
        if (r->used && r->seq == seq && memcmp(r->target_pk, from, 32) == 0) {
            r->used = false;
            send_simple(m, PL_MEMBERS_MSG_ACK, r->from_pk, &r->from_addr, r->from_seq);
            return;
        }
    }
    (void)now;
}

static void on_ping_req(pl_members *m, const uint8_t from[32], const pl_addr *from_addr, uint32_t seq,
                        const uint8_t target[32], const pl_addr *target_addr, pl_time now)
{
    if (memcmp(target, m->pk, 32) == 0) {
        send_simple(m, PL_MEMBERS_MSG_ACK, from, from_addr, seq);
        return;
    }
    relay *r = NULL;
    for (uint32_t i = 0; i < RELAYS && !r; i++)
        if (!m->relays[i].used) r = &m->relays[i];
    if (!r) {
        m->st.drop_busy++;
        return;
    }
    r->used = true;
    memcpy(r->from_pk, from, 32);
    r->from_addr = *from_addr;
    r->from_seq = seq;
    memcpy(r->target_pk, target, 32);
    r->seq = rand32(m);
    r->nack_at = now + m->probe_timeout * 4 / 5;
    send_simple(m, PL_MEMBERS_MSG_PING, target, target_addr, r->seq);
}

/* "An unverified member is dead": the responder's accusation against a
 * member we hold at incarnation 0. It creates nothing. */
static void pulled_unverified_death(pl_members *m, const upd *u, const uint8_t from[32], pl_time now)
{
    uint32_t s = find(m, u->pk);
    if (s == NONE) {
        m->st.drop_unknown++;
        return;
    }
    upd dead = *u;
    dead.kind = PL_MEMBER_DEAD;
    if (s == m->self) about_self(m, &dead, false, now);
    else if (m->ent[s].inc == 0 && is_live(m->ent[s].state)) pulled_death(m, s, 0, from, now);
    else m->st.drop_stale++;
}

/* A join starts with one pull of every bucket; once the first answer tells
 * how big the seed's table is, a big table is split across several pulls
 * that run in parallel. The new pulls start from the seed's first slot, so
 * the few entries the first answer already brought come twice (harmless). */
static void split_join_pull(pl_members *m, chain *c, uint32_t total, pl_time now)
{
    uint32_t ways = total / 64 + 1;
    if (ways > m->sync_parallel) ways = m->sync_parallel;
    if (ways < 2) return;
    uint8_t rest[PL_MEMBERS_BUCKETS / 8];
    memset(rest, 0, sizeof rest);
    uint32_t keep = PL_MEMBERS_BUCKETS / ways;
    for (uint32_t b = keep; b < PL_MEMBERS_BUCKETS; b++)
        if (bucket_wanted(c->buckets, (uint8_t)b)) {
            rest[b >> 3] |= (uint8_t)(1u << (b & 7));
            c->buckets[b >> 3] &= (uint8_t)~(1u << (b & 7));
        }
    start_pull(m, c->peer_pk, &c->peer_addr, rest, ways - 1, true, now);
}

static void on_sync_resp(pl_members *m, const uint8_t from[32], uint32_t req_id, uint32_t total, uint32_t next,
                         const upd *ups, uint32_t n, pl_time now)
{
    chain *c = NULL;
    for (uint32_t i = 0; i < CHAINS && !c; i++)
        if (m->chains[i].used && m->chains[i].req_id == req_id && memcmp(m->chains[i].peer_pk, from, 32) == 0)
            c = &m->chains[i];
    if (!c) {
        m->st.drop_stale++;
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        m->st.sync_entries_received++;
        if (ups[i].kind == ENTRY_DEAD_UNVERIFIED) {
            pulled_unverified_death(m, &ups[i], from, now);
            continue;
        }
        upd claim = ups[i];
        uint8_t verdict = claim.kind;
        claim.kind = verdict == PL_MEMBER_LEFT ? PL_MEMBER_LEFT : PL_MEMBER_ALIVE;
        /* What a pull brings is repaired quietly: the others run their
         * own anti-entropy, and re-gossiping every pulled change would turn
         * each exchange into a broadcast. Accusations and refutations that
         * follow from it are gossiped as always. */
        apply_claim(m, &claim, verdict, from, false, now);
    }
    if (next == CURSOR_DONE || next <= c->cursor) {
        bool join = c->join;
        c->used = false;
        if (join && m->joining && chains_with(m, true) == 0) join_done(m, now);
        return;
    }
    bool first = c->cursor == 0 && c->join;
    c->cursor = next;
    c->tries = 0;
    if (first && memchr(c->buckets, 0, sizeof c->buckets) == NULL) split_join_pull(m, c, total, now);
    send_sync_req(m, c, now);
}

void pl_members_receive(pl_members *m, const uint8_t from_pk[32], const pl_addr *from_addr, const uint8_t *msg,
                        size_t len, pl_time now)
{
    if (now > m->now) m->now = now;
    if (len < 1 || msg[0] < PL_MEMBERS_MSG_MIN || msg[0] > PL_MEMBERS_MSG_MAX) {
        m->st.drop_malformed++;
        return;
    }
    unsigned kind = msg[0] - PL_MEMBERS_MSG_MIN;
    m->st.rx_msgs[kind]++;
    m->st.rx_bytes[kind] += len;
    if (memcmp(from_pk, m->pk, 32) == 0 || !addr_usable(from_addr)) {
        m->st.drop_malformed++;
        return;
    }
    pl_reader r = pl_reader_make(msg + 1, len - 1);
    upd ups[MAX_PIGGYBACK > MAX_SYNC_ENTRIES ? MAX_PIGGYBACK : MAX_SYNC_ENTRIES];
    uint32_t n = 0;
    /* Each message is decoded completely before anything in it is used, so
     * a malformed message has no effect at all. */
    switch (msg[0]) {
    case PL_MEMBERS_MSG_PING:
    case PL_MEMBERS_MSG_ACK:
    case PL_MEMBERS_MSG_NACK: {
        uint32_t seq = pl_read_u32(&r);
        if (!read_piggyback(&r, ups, &n)) break;
        apply_all(m, ups, n, now);
        if (msg[0] == PL_MEMBERS_MSG_PING) {
            send_simple(m, PL_MEMBERS_MSG_ACK, from_pk, from_addr, seq);
        } else if (msg[0] == PL_MEMBERS_MSG_ACK) {
            on_ack(m, from_pk, seq, now);
        } else if (m->pr.active && seq == m->pr.seq && is_via(m, from_pk) && m->pr.nacks < m->pr.expected_nacks) {
            m->pr.nacks++;
        }
        return;
    }
    case PL_MEMBERS_MSG_PING_REQ: {
        uint32_t seq = pl_read_u32(&r);
        const uint8_t *target = pl_read_ptr(&r, 32);
        pl_addr ta;
        if (!read_addr_checked(&r, &ta) || !read_piggyback(&r, ups, &n)) break;
        apply_all(m, ups, n, now);
        on_ping_req(m, from_pk, from_addr, seq, target, &ta, now);
        return;
    }
    case PL_MEMBERS_MSG_SYNC_REQ: {
        uint32_t req_id = pl_read_u32(&r);
        uint32_t cursor = pl_read_u32(&r);
        const uint8_t *bitmap = pl_read_ptr(&r, PL_MEMBERS_BUCKETS / 8);
        if (!read_piggyback(&r, ups, &n)) break;
        apply_all(m, ups, n, now);
        serve_sync(m, from_pk, from_addr, req_id, cursor, bitmap, now);
        return;
    }
    case PL_MEMBERS_MSG_SYNC_RESP: {
        uint32_t req_id = pl_read_u32(&r);
        uint32_t total = pl_read_u32(&r);
        uint32_t next = pl_read_u32(&r);
        n = pl_read_u8(&r);
        if (r.err || n > MAX_SYNC_ENTRIES) break;
        bool ok = true;
        for (uint32_t i = 0; i < n && ok; i++) ok = read_entry(&r, &ups[i]);
        if (!ok || !pl_reader_done(&r)) break;
        on_sync_resp(m, from_pk, req_id, total, next, ups, n, now);
        return;
    }
    case PL_MEMBERS_MSG_GOSSIP:
        if (!read_piggyback(&r, ups, &n) || n == 0) break;
        apply_all(m, ups, n, now);
        return;
    case PL_MEMBERS_MSG_DIGEST: {
        uint8_t flags = pl_read_u8(&r);
        if (flags > 1) break;
        uint32_t theirs[PL_MEMBERS_BUCKETS];
        for (uint32_t b = 0; b < PL_MEMBERS_BUCKETS; b++) theirs[b] = pl_read_u32(&r);
        if (!read_piggyback(&r, ups, &n)) break;
        apply_all(m, ups, n, now);
        uint8_t bitmap[PL_MEMBERS_BUCKETS / 8];
        uint32_t ndiff = diff_buckets(m, from_pk, theirs, bitmap);
        if (ndiff == 0) return;
        soon(m);
        if (!flags) send_digest(m, from_pk, from_addr, true);
        bool busy = false;
        for (uint32_t i = 0; i < CHAINS; i++)
            busy |= m->chains[i].used && memcmp(m->chains[i].peer_pk, from_pk, 32) == 0;
        if (busy || chains_with(m, false) > 0) return;
        if (ndiff > AE_MAX_BUCKETS) {
            /* A big difference is pulled a slice at a time, from a random
             * place, so that one exchange stays a modest burst. */
            uint8_t slice[PL_MEMBERS_BUCKETS / 8];
            memset(slice, 0, sizeof slice);
            uint32_t start = (uint32_t)pl_rng_below(m->rng, PL_MEMBERS_BUCKETS), taken = 0;
            for (uint32_t k = 0; k < PL_MEMBERS_BUCKETS && taken < AE_MAX_BUCKETS; k++) {
                uint8_t b = (uint8_t)((start + k) % PL_MEMBERS_BUCKETS);
                if (bucket_wanted(bitmap, b)) {
                    slice[b >> 3] |= (uint8_t)(1u << (b & 7));
                    taken++;
                }
            }
            memcpy(bitmap, slice, sizeof slice);
        }
        m->st.anti_entropy_pulls++;
        start_pull(m, from_pk, from_addr, bitmap, AE_CHAINS, false, now);
        return;
    }
    default: break; /* a type of ours not (yet) defined */
    }
    m->st.drop_malformed++;
}

/* ---- timers ---------------------------------------------------------------------------- */

static void expire_suspicions(pl_members *m, pl_time now)
{
    while (m->heap_len > 0 && m->hots[m->heap[0]].deadline <= now) declare_dead(m, m->hots[m->heap[0]].member, now);
}

void pl_members_tick(pl_members *m, pl_time now)
{
    if (now > m->now) m->now = now;
    expire_suspicions(m, now);
    for (uint32_t i = 0; i < RELAYS; i++) {
        relay *r = &m->relays[i];
        if (r->used && now >= r->nack_at) {
            r->used = false;
            send_simple(m, PL_MEMBERS_MSG_NACK, r->from_pk, &r->from_addr, r->from_seq);
        }
    }
    if (m->pr.active && !m->pr.acked && !m->pr.indirect_sent && now >= m->pr.indirect_at) send_ping_reqs(m);
    if (now >= m->next_period) {
        finish_probe(m, now);
        start_probe(m, now);
        m->next_period = now + scaled(m, m->period);
    }
    for (uint32_t i = 0; i < CHAINS; i++)
        if (m->chains[i].used && now >= m->chains[i].deadline) chain_timeout(m, &m->chains[i], now);
    if (m->joining && chains_with(m, true) == 0) join_done(m, now);
    if (now >= m->next_gossip) gossip(m, now);
    if (now >= m->next_ae) anti_entropy(m, now);
    /* A probe that failed just now may have confirmed a suspicion so often
     * that its time is already up. */
    expire_suspicions(m, now);
}

pl_time pl_members_next_timeout(const pl_members *m)
{
    pl_time t = m->next_period;
    if (m->next_ae < t) t = m->next_ae;
    if (m->queued > 0 && m->next_gossip < t) t = m->next_gossip;
    if (m->heap_len > 0 && m->hots[m->heap[0]].deadline < t) t = m->hots[m->heap[0]].deadline;
    if (m->pr.active && !m->pr.acked && !m->pr.indirect_sent && m->pr.indirect_at < t) t = m->pr.indirect_at;
    for (uint32_t i = 0; i < RELAYS; i++)
        if (m->relays[i].used && m->relays[i].nack_at < t) t = m->relays[i].nack_at;
    for (uint32_t i = 0; i < CHAINS; i++)
        if (m->chains[i].used && m->chains[i].deadline < t) t = m->chains[i].deadline;
    return t;
}

/* ---- life cycle -------------------------------------------------------------------------- */

static pl_time or_default(pl_time v, pl_time d) { return v ? v : d; }
static uint32_t or_default32(uint32_t v, uint32_t d) { return v ? v : d; }

pl_members_err pl_members_new(pl_members **out, const pl_members_config *cfg, const pl_members_io *io, pl_time now)
{
    *out = NULL;
    if (!cfg || !io || !io->send || !cfg->identity || !cfg->rng || !addr_usable(&cfg->addr))
        return PL_MEMBERS_ERR_CONFIG;
    if (cfg->max_members > (1u << 22) || cfg->indirect_probes > MAX_INDIRECT) return PL_MEMBERS_ERR_CONFIG;
    if (cfg->max_message && (cfg->max_message < PL_MEMBERS_MIN_MESSAGE || cfg->max_message > PL_MEMBERS_MAX_MESSAGE))
        return PL_MEMBERS_ERR_CONFIG;
    if (cfg->incarnation == UINT32_MAX) return PL_MEMBERS_ERR_CONFIG;
    const pl_mem *mem = cfg->mem ? cfg->mem : pl_mem_system();
    pl_members *m = mem->calloc(mem->ctx, 1, sizeof *m);
    if (!m) return PL_MEMBERS_ERR_NOMEM;
    m->io = *io;
    m->rng = cfg->rng;
    m->mem = mem;
    m->verify = cfg->verify;
    m->verify_ctx = cfg->verify_ctx;
    memcpy(m->pk, cfg->identity->sign_pk, 32);
    memcpy(m->sk, cfg->identity->sign_sk, 64);
    m->max_members = or_default32(cfg->max_members, 16384);
    if (m->max_members < 2) m->max_members = 2;
    m->period = or_default(cfg->protocol_period, PL_SEC);
    m->probe_timeout = or_default(cfg->probe_timeout, m->period / 2);
    m->k = or_default32(cfg->indirect_probes, 3);
    m->susp_mult = or_default32(cfg->suspicion_mult, 4);
    m->susp_max_mult = or_default32(cfg->suspicion_max_mult, 6);
    m->lambda = or_default32(cfg->retransmit_mult, 3);
    m->ae_period = or_default(cfg->anti_entropy_period, 30 * PL_SEC);
    m->gossip_interval = or_default(cfg->gossip_interval, 200 * PL_MSEC);
    m->reap_time = or_default(cfg->dead_reap_time, 24 * 3600 * PL_SEC);
    m->max_message = or_default32(cfg->max_message, PL_MEMBERS_MAX_MESSAGE);
    m->sync_parallel = or_default32(cfg->sync_parallel, 8);
    if (m->sync_parallel > CHAINS - AE_CHAINS) m->sync_parallel = CHAINS - AE_CHAINS;
    m->sync_rate = or_default32(cfg->sync_serve_rate, 200);
    m->epoch = now;
    m->now = now;
    m->free_head = m->sig_free = m->hot_free = NONE;
    memset(m->qhead, 0xff, sizeof m->qhead);
    m->rng->fill(m->rng->ctx, m->hash_key, sizeof m->hash_key);
    m->rate_at = now;
    m->rate_tokens = (uint64_t)m->sync_rate * 1000000u;

    m->self = insert(m, m->pk, &cfg->addr, cfg->incarnation ? cfg->incarnation : 1);
    if (m->self == NONE || (m->ent[m->self].sig = sig_alloc(m)) == NONE) {
        pl_members_free(m);
        return PL_MEMBERS_ERR_NOMEM;
    }
    set_state(m, m->self, PL_MEMBER_ALIVE, now);
    sign_own(m, now);
    digest_toggle(m, &m->ent[m->self]);
    new_round(m);
    /* Spread the instances' periods so they do not probe in lockstep. */
    m->next_period = now + pl_rng_below(m->rng, m->period);
    m->next_gossip = m->gossip_interval == PL_TIME_NEVER ? PL_TIME_NEVER : now + pl_rng_below(m->rng, m->gossip_interval);
    m->next_ae = m->ae_period == PL_TIME_NEVER ? PL_TIME_NEVER
                                               : now + m->ae_period / 2 + pl_rng_below(m->rng, m->ae_period);
    *out = m;
    return PL_MEMBERS_OK;
}

void pl_members_free(pl_members *m)
{
    if (!m) return;
    const pl_mem *mem = m->mem;
    sodium_memzero(m->sk, sizeof m->sk);
    void *tables[] = {m->ent, m->index, m->sigs, m->hots, m->heap};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        if (tables[i]) mem->free(mem->ctx, tables[i]);
    sodium_memzero(m, sizeof *m);
    mem->free(mem->ctx, m);
}

pl_members_err pl_members_add_known(pl_members *m, const uint8_t pk[32], const pl_addr *addr, pl_time now)
{
    if (now > m->now) m->now = now;
    if (!addr_usable(addr)) return PL_MEMBERS_ERR_ADDR;
    if (memcmp(pk, m->pk, 32) == 0) return PL_MEMBERS_ERR_SELF;
    if (find(m, pk) != NONE) return PL_MEMBERS_ERR_EXISTS;
    uint32_t s = insert(m, pk, addr, 0);
    if (s == NONE) return PL_MEMBERS_ERR_FULL;
    set_state(m, s, PL_MEMBER_ALIVE, now);
    digest_toggle(m, &m->ent[s]);
    emit(m, PL_MEMBERS_EV_UP, s, NULL, now);
    return PL_MEMBERS_OK;
}

/* Sends our latest claim straight to a few members, so a leave or a move
 * does not wait for the next probe to start spreading. */
static void announce(pl_members *m, pl_time now)
{
    for (uint32_t i = 0; i < m->k; i++) {
        uint32_t s = random_member(m, true, NONE, 16);
        if (s == NONE) break;
        pl_addr a = entry_addr(&m->ent[s]);
        send_simple(m, PL_MEMBERS_MSG_PING, m->ent[s].pk, &a, rand32(m));
    }
    (void)now;
}

pl_members_err pl_members_join(pl_members *m, pl_time now)
{
    if (now > m->now) m->now = now;
    uint32_t s = random_member(m, true, NONE, 64);
    if (s == NONE) {
        for (uint32_t i = 0; i < m->hw && s == NONE; i++)
            if (i != m->self && is_live(m->ent[i].state)) s = i;
    }
    if (s == NONE) return PL_MEMBERS_ERR_NO_SEED;
    if (m->left) {
        m->left = false;
        member *e = &m->ent[m->self];
        digest_toggle(m, e);
        e->inc++;
        set_state(m, m->self, PL_MEMBER_ALIVE, now);
        sign_own(m, now);
        digest_toggle(m, e);
    }
    enqueue(m, m->self);
    for (uint32_t i = 0; i < CHAINS; i++)
        if (m->chains[i].join) m->chains[i].used = false;
    memcpy(m->seed_pk, m->ent[s].pk, 32);
    m->seed_addr = entry_addr(&m->ent[s]);
    uint8_t all[PL_MEMBERS_BUCKETS / 8];
    memset(all, 0xff, sizeof all);
    m->joining = true;
    m->synced = false;
    pl_addr seed_addr = m->seed_addr;
    uint8_t seed_pk[32];
    memcpy(seed_pk, m->seed_pk, 32);
    start_pull(m, seed_pk, &seed_addr, all, 1, true, now);
    return PL_MEMBERS_OK;
}

pl_members_err pl_members_leave(pl_members *m, pl_time now)
{
    if (now > m->now) m->now = now;
    if (m->left) return PL_MEMBERS_ERR_LEFT;
    member *e = &m->ent[m->self];
    digest_toggle(m, e);
    set_state(m, m->self, PL_MEMBER_LEFT, now);
    sign_own(m, now);
    digest_toggle(m, e);
    m->left = true;
    m->joining = false;
    enqueue(m, m->self);
    announce(m, now);
    return PL_MEMBERS_OK;
}

pl_members_err pl_members_set_addr(pl_members *m, const pl_addr *addr, pl_time now)
{
    if (now > m->now) m->now = now;
    if (!addr_usable(addr)) return PL_MEMBERS_ERR_ADDR;
    if (m->left) return PL_MEMBERS_ERR_LEFT;
    member *e = &m->ent[m->self];
    if (e->inc == UINT32_MAX) return PL_MEMBERS_ERR_CONFIG;
    digest_toggle(m, e);
    set_entry_addr(e, addr);
    e->inc++;
    sign_own(m, now);
    digest_toggle(m, e);
    enqueue(m, m->self);
    announce(m, now);
    return PL_MEMBERS_OK;
}

/* ---- queries ------------------------------------------------------------------------------ */

uint32_t pl_members_count(const pl_members *m) { return m->count; }
uint32_t pl_members_alive_count(const pl_members *m) { return m->alive; }
uint32_t pl_members_incarnation(const pl_members *m) { return m->ent[m->self].inc; }
uint32_t pl_members_pending_updates(const pl_members *m) { return m->queued; }
bool pl_members_synced(const pl_members *m) { return m->synced; }

bool pl_members_find(const pl_members *m, const uint8_t pk[32], pl_member_info *out)
{
    uint32_t s = find(m, pk);
    if (s == NONE) return false;
    if (out) fill_info(m, s, out);
    return true;
}

bool pl_members_next(const pl_members *m, uint32_t *cursor, pl_member_info *out)
{
    for (uint32_t s = *cursor; s < m->hw; s++) {
        if (m->ent[s].state == ST_FREE) continue;
        fill_info(m, s, out);
        *cursor = s + 1;
        return true;
    }
    *cursor = m->hw;
    return false;
}

pl_members_stats pl_members_get_stats(const pl_members *m)
{
    pl_members_stats s = m->st;
    s.health = m->health;
    return s;
}

size_t pl_members_memory(const pl_members *m)
{
    return sizeof *m + (size_t)m->cap * sizeof(member) + (size_t)m->index_cap * sizeof(uint32_t) +
           (size_t)m->sig_cap * 64 + (size_t)m->hot_cap * (sizeof(hot) + sizeof(uint32_t));
}

const char *pl_members_strerror(pl_members_err err)
{
    switch (err) {
    case PL_MEMBERS_OK: return "ok";
    case PL_MEMBERS_ERR_CONFIG: return "bad membership configuration";
    case PL_MEMBERS_ERR_NOMEM: return "out of memory";
    case PL_MEMBERS_ERR_FULL: return "the member table is full";
    case PL_MEMBERS_ERR_EXISTS: return "the member is already known";
    case PL_MEMBERS_ERR_SELF: return "that is this instance's own key";
    case PL_MEMBERS_ERR_ADDR: return "not a usable address";
    case PL_MEMBERS_ERR_NO_SEED: return "no other member is known to join through";
    case PL_MEMBERS_ERR_LEFT: return "this instance has left";
    }
    return "unknown membership error";
}

const char *pl_member_state_name(pl_member_state state)
{
    switch (state) {
    case PL_MEMBER_ALIVE: return "alive";
    case PL_MEMBER_SUSPECT: return "suspect";
    case PL_MEMBER_DEAD: return "dead";
    case PL_MEMBER_LEFT: return "left";
    }
    return "unknown";
}
