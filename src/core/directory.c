/*
 * directory.c - a supernode's share of the directory and presence
 * (directory.h, docs/directory.md).
 *
 * Tables, each a growable pool of fixed-size entries with a free list and a
 * keymap index:
 *   members  key -> address, for sending to other supernodes
 *   slots    ring key of a name -> the record held as a replica
 *   watches  (name, watching supernode): who to NOTIFY when a record changes
 *   subs     names this supernode watches for its clients, and which clients
 *   clients  per attached client: its name, last published sequence, count
 *            of subscriptions
 *   pending  requests in flight (a publish waiting for STORE_ACKs, a look-up
 *            waiting for a FETCH_REPLY), named on the wire by index and
 *            generation so a late or forged reply cannot hit another request.
 * Deadlines of pending requests are queued in two FIFOs (one per timeout
 * length, so each is in time order); a request whose deadline moved leaves
 * a stale entry behind that is skipped.
 */
#include "directory.h"

#include <sodium.h>
#include <string.h>

#include "keymap.h"
#include "record.h"
#include "ring.h"
#include "wire.h"

#define MAX_R PL_RING_MAX_REPLICAS
#define SWEEP_INTERVAL PL_SEC
#define SWEEP_FRACTION 10
#define WATCH_LIFE (PL_DIR_WATCH_REFRESH * 5 / 2)
/* An expired record's bytes are kept this long after it was issued, so that
 * an older record cannot be replayed into the slot it left. */
#define KEEP_AFTER_ISSUE ((PL_RECORD_MAX_LIFETIME + PL_RECORD_MAX_SKEW) * PL_SEC)
#define MSG_MAX (32 + PL_NAME_MAX + PL_RECORD_MAX_SIZE)

/* ---- pools ------------------------------------------------------------------------ */

typedef struct pool {
    uint8_t *items;
    size_t size; /* bytes per item */
    uint32_t cap, high, max;
    uint32_t *free_list;
    uint32_t n_free;
    uint32_t used;
} pool;

static void *pool_at(const pool *p, uint32_t i) { return p->items + (size_t)i * p->size; }

/* Returns a zeroed item's index, or UINT32_MAX when full or out of memory. */
static uint32_t pool_alloc(pool *p, const pl_mem *mem)
{
    uint32_t i;
    if (p->n_free) {
        i = p->free_list[--p->n_free];
    } else {
        if (p->high == p->cap) {
            uint32_t cap = p->cap ? 2 * p->cap : 16;
            if (cap > p->max) cap = p->max;
            if (cap <= p->cap) return UINT32_MAX;
            uint8_t *items = mem->calloc(mem->ctx, cap, p->size);
            uint32_t *fl = mem->calloc(mem->ctx, cap, sizeof *fl);
            if (!items || !fl) {
                if (items) mem->free(mem->ctx, items);
                if (fl) mem->free(mem->ctx, fl);
                return UINT32_MAX;
            }
            if (p->items) {
                memcpy(items, p->items, (size_t)p->cap * p->size);
                memcpy(fl, p->free_list, p->n_free * sizeof *fl);
                mem->free(mem->ctx, p->items);
                mem->free(mem->ctx, p->free_list);
            }
            p->items = items;
            p->free_list = fl;
            p->cap = cap;
        }
        i = p->high++;
    }
    memset(pool_at(p, i), 0, p->size);
    p->used++;
    return i;
}

static void pool_release(pool *p, uint32_t i)
{
    memset(pool_at(p, i), 0, p->size);
    p->free_list[p->n_free++] = i;
    p->used--;
}

static void pool_free(pool *p, const pl_mem *mem)
{
    if (p->items) mem->free(mem->ctx, p->items);
    if (p->free_list) mem->free(mem->ctx, p->free_list);
    memset(p, 0, sizeof *p);
}

/* ---- tables ----------------------------------------------------------------------------- */

typedef struct member {
    bool used;
    uint8_t pk[32];
    pl_addr addr;
} member;

typedef struct slot {
    bool used;
    bool offline;     /* the user's supernode lost it, or the record expired */
    uint8_t key[32];
    char name[PL_NAME_MAX + 1];
    uint8_t *bytes;   /* the record, or NULL while only watched */
    uint16_t len;
    uint64_t seq;
    pl_time issued_at, expires_at;
    uint32_t watch_head; /* watch index + 1; 0: none */
} slot;

typedef struct watch {
    bool used;
    uint32_t slot;
    uint32_t next; /* watch index + 1 */
    uint8_t pk[32];
    pl_time expires;
} watch;

typedef struct sub {
    bool used;
    bool have;        /* a state was notified */
    bool offline;
    uint8_t key[32];
    char name[PL_NAME_MAX + 1];
    uint64_t seq;
    uint32_t head;    /* subc index + 1 */
    pl_time refresh_at;
} sub;

typedef struct subc {
    bool used;
    uint32_t sub;
    uint32_t next; /* subc index + 1 */
    uint8_t pk[32];
    pl_addr addr;
} subc;

typedef struct client {
    bool used;
    uint8_t pk[32];
    char name[PL_NAME_MAX + 1];
    uint64_t seq; /* of the last record it published through us */
    uint32_t n_subs;
    /* That record, kept so that when membership changes its new replicas
     * get it from us even if every old replica died with it. */
    uint8_t *record;
    uint16_t record_len;
} client;

enum { PEND_FREE = 0, PEND_PUBLISH, PEND_LOOKUP };

typedef struct pend {
    uint8_t kind;
    uint16_t gen;
    uint8_t client_pk[32];
    pl_addr client_addr;
    uint32_t client_req;
    pl_time deadline;
    uint8_t n_rep;
    uint8_t reps[MAX_R][32];
    /* publish */
    uint16_t acked; /* bit per replica */
    uint8_t stored;
    /* look-up */
    char name[PL_NAME_MAX + 1];
    uint8_t key[32];
    uint8_t at;        /* the replica being asked */
    uint8_t not_found; /* replicas that said so */
} pend;

typedef struct deadline_ent {
    pl_time at;
    uint32_t idx;
    uint16_t gen;
} deadline_ent;

/* A FIFO ring of deadlines, grown as needed. */
typedef struct fifo {
    deadline_ent *e;
    uint32_t cap, head, count;
} fifo;

struct pl_dir {
    uint8_t self[32];
    uint8_t ca_pk[32];
    const pl_crl *crl;
    const pl_rng *rng;
    const pl_mem *mem;
    pl_dir_io io;
    uint8_t r;

    pool members, slots, watches, subs, subcs, clients, pending;
    pl_keymap member_by_pk, slot_by_key, watch_by_id, sub_by_key, subc_by_id, client_by_pk;

    /* The ring holds the points of every supernode heard of (it is only
     * added to, and may be shared by the supernodes of a simulation); which
     * of them are members now is the bitmap `alive` over its slots, and
     * `before` is that bitmap when a batch of changes began. */
    pl_ring *ring;
    bool own_ring;
    uint64_t *alive, *before;
    uint32_t nbits; /* bits both bitmaps hold */
    uint32_t n_alive;
    bool change_pending;
    pl_time handover_at;

    uint16_t *pend_gen; /* per pending slot */
    fifo fetch_deadlines, publish_deadlines;
    pl_time next_sweep;
    uint32_t sweep_slot, sweep_sub, sweep_watch;
    pl_dir_stats stats;
};

/* ---- helpers -------------------------------------------------------------------------------- */

static void pair_id(const uint8_t key[32], const uint8_t pk[32], uint8_t out[32])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, key, 32);
    crypto_generichash_update(&st, pk, 32);
    crypto_generichash_final(&st, out, 32);
}

/* A member's address: from the driver's membership when it offers one (the
 * directory then keeps no table of its own), else from the table. */
static bool member_addr(const pl_dir *d, const uint8_t pk[32], pl_addr *out)
{
    if (d->io.addr_of) {
        uint32_t slot_at = pl_ring_slot(d->ring, pk);
        if (slot_at == PL_RING_NO_SLOT || !(slot_at < d->nbits && (d->alive[slot_at / 64] >> (slot_at % 64) & 1)))
            return false;
        return d->io.addr_of(d->io.ctx, pk, out);
    }
    uint32_t i;
    if (!pl_keymap_get(&d->member_by_pk, pk, &i)) return false;
    *out = ((const member *)pool_at(&d->members, i))->addr;
    return true;
}

static bool is_member(const pl_dir *d, const uint8_t pk[32])
{
    pl_addr a;
    return member_addr(d, pk, &a);
}

static bool is_self(const pl_dir *d, const uint8_t pk[32]) { return memcmp(d->self, pk, 32) == 0; }

/* The replicas of key among the members in bitmap `set`. */
static size_t replicas_in(const pl_dir *d, const uint64_t *set, const uint8_t key[32], size_t r, uint8_t out[][32])
{
    uint32_t slots[MAX_R];
    size_t n = pl_ring_replicas_in(d->ring, set, d->nbits, key, r, slots);
    for (size_t k = 0; k < n; k++) memcpy(out[k], pl_ring_slot_key(d->ring, slots[k]), 32);
    return n;
}

static size_t replicas(const pl_dir *d, const uint8_t key[32], size_t r, uint8_t out[][32])
{
    return replicas_in(d, d->alive, key, r, out);
}

static bool in_list(const uint8_t list[][32], size_t n, const uint8_t pk[32])
{
    for (size_t k = 0; k < n; k++)
        if (memcmp(list[k], pk, 32) == 0) return true;
    return false;
}

static bool self_is_replica(const pl_dir *d, const uint8_t key[32])
{
    uint8_t reps[MAX_R][32];
    return in_list(reps, replicas(d, key, d->r, reps), d->self);
}

static bool bit(const uint64_t *set, uint32_t nbits, uint32_t at)
{
    return at < nbits && (set[at / 64] >> (at % 64) & 1);
}

static void send_msg(pl_dir *d, const uint8_t pk[32], const pl_addr *addr, const pl_ovl_dir *m, pl_time now)
{
    uint8_t buf[MSG_MAX];
    size_t len = pl_ovl_encode_dir(buf, sizeof buf, m);
    if (len && addr) d->io.send(d->io.ctx, pk, addr, buf, len, now);
}

/* To another supernode, by key: its address comes from membership. */
static void send_peer(pl_dir *d, const uint8_t pk[32], const pl_ovl_dir *m, pl_time now)
{
    pl_addr a;
    if (member_addr(d, pk, &a)) send_msg(d, pk, &a, m, now);
}

static slot *slot_of(const pl_dir *d, const uint8_t key[32], uint32_t *idx)
{
    uint32_t i;
    if (!pl_keymap_get(&d->slot_by_key, key, &i)) return NULL;
    if (idx) *idx = i;
    return pool_at(&d->slots, i);
}

static slot *slot_new(pl_dir *d, const uint8_t key[32], const char *name, uint32_t *idx)
{
    uint32_t i = pool_alloc(&d->slots, d->mem);
    if (i == UINT32_MAX) return NULL;
    if (!pl_keymap_put(&d->slot_by_key, key, i)) {
        pool_release(&d->slots, i);
        return NULL;
    }
    slot *s = pool_at(&d->slots, i);
    s->used = true;
    memcpy(s->key, key, 32);
    snprintf(s->name, sizeof s->name, "%s", name);
    if (idx) *idx = i;
    return s;
}

static void slot_drop_record(pl_dir *d, slot *s)
{
    if (!s->bytes) return;
    d->mem->free(d->mem->ctx, s->bytes);
    s->bytes = NULL;
    s->len = 0;
    d->stats.records--;
}

static void watch_release(pl_dir *d, uint32_t wi)
{
    watch *w = pool_at(&d->watches, wi);
    slot *s = pool_at(&d->slots, w->slot);
    uint8_t id[32];
    pair_id(s->key, w->pk, id);
    pl_keymap_remove(&d->watch_by_id, id);
    /* Unlink from the slot's list. */
    uint32_t *link = &s->watch_head;
    while (*link && *link != wi + 1) link = &((watch *)pool_at(&d->watches, *link - 1))->next;
    if (*link) *link = w->next;
    pool_release(&d->watches, wi);
    d->stats.watches--;
}

/* Frees a slot that holds no record and no watcher. */
static void slot_maybe_free(pl_dir *d, slot *s, uint32_t idx)
{
    if (s->bytes || s->watch_head) return;
    pl_keymap_remove(&d->slot_by_key, s->key);
    pool_release(&d->slots, idx);
}

static void slot_free_all(pl_dir *d, slot *s, uint32_t idx)
{
    while (s->watch_head) watch_release(d, s->watch_head - 1);
    slot_drop_record(d, s);
    slot_maybe_free(d, s, idx);
}

static client *client_of(pl_dir *d, const uint8_t pk[32], bool create)
{
    uint32_t i;
    if (pl_keymap_get(&d->client_by_pk, pk, &i)) return pool_at(&d->clients, i);
    if (!create) return NULL;
    i = pool_alloc(&d->clients, d->mem);
    if (i == UINT32_MAX) return NULL;
    if (!pl_keymap_put(&d->client_by_pk, pk, i)) {
        pool_release(&d->clients, i);
        return NULL;
    }
    client *c = pool_at(&d->clients, i);
    c->used = true;
    memcpy(c->pk, pk, 32);
    return c;
}

static bool name_key(const char *name, char norm[PL_NAME_MAX + 1], uint8_t key[32])
{
    if (pl_name_normalize(name, norm) != PL_NAME_OK) return false;
    pl_ring_key_for_name(norm, key);
    return true;
}

/* ---- deadlines -------------------------------------------------------------------------------- */

static void fifo_push(pl_dir *d, fifo *f, pl_time at, uint32_t idx, uint16_t gen)
{
    if (f->count == f->cap) {
        uint32_t cap = f->cap ? 2 * f->cap : 64;
        deadline_ent *e = d->mem->calloc(d->mem->ctx, cap, sizeof *e);
        if (!e) return; /* the request then simply never times out early; its slot is reused later */
        for (uint32_t k = 0; k < f->count; k++) e[k] = f->e[(f->head + k) % f->cap];
        if (f->e) d->mem->free(d->mem->ctx, f->e);
        f->e = e;
        f->cap = cap;
        f->head = 0;
    }
    f->e[(f->head + f->count) % f->cap] = (deadline_ent){at, idx, gen};
    f->count++;
}

/* The head of f if it still names a live request with that deadline. */
static bool fifo_live(const pl_dir *d, const deadline_ent *e)
{
    if (e->idx >= d->pending.high) return false;
    const pend *p = pool_at(&d->pending, e->idx);
    return p->kind != PEND_FREE && p->gen == e->gen && p->deadline == e->at;
}

static void fifo_clean(pl_dir *d, fifo *f)
{
    while (f->count && !fifo_live(d, &f->e[f->head])) {
        f->head = (f->head + 1) % f->cap;
        f->count--;
    }
}

/* A request slot; its generation (kept beside the pool, so it survives the
 * slot's reuse) makes the request id unique over time. */
static pend *pend_new(pl_dir *d, uint8_t kind, uint32_t *idx)
{
    uint32_t i = pool_alloc(&d->pending, d->mem);
    if (i == UINT32_MAX) return NULL;
    pend *p = pool_at(&d->pending, i);
    p->kind = kind;
    p->gen = ++d->pend_gen[i];
    *idx = i;
    return p;
}

static uint32_t req_id(uint32_t idx, const pend *p) { return (uint32_t)p->gen << 16 | idx; }

static pend *pend_from_req(pl_dir *d, uint32_t req, uint8_t kind, uint32_t *idx)
{
    uint32_t i = req & 0xffff;
    if (i >= d->pending.high) return NULL;
    pend *p = pool_at(&d->pending, i);
    if (p->kind != kind || p->gen != (uint16_t)(req >> 16)) return NULL;
    *idx = i;
    return p;
}

/* ---- the store (as a replica) ---------------------------------------------------------------- */

static void notify_watchers(pl_dir *d, const slot *s, pl_time now)
{
    pl_ovl_dir m = {.type = PL_OVL_NOTIFY, .flags = s->offline || !s->bytes ? PL_DIR_F_OFFLINE : 0,
                    .record = s->bytes, .record_len = s->len};
    memcpy(m.name, s->name, sizeof m.name);
    for (uint32_t w = s->watch_head; w; w = ((watch *)pool_at(&d->watches, w - 1))->next) {
        const watch *x = pool_at(&d->watches, w - 1);
        if (is_self(d, x->pk)) continue; /* our own subscriptions are served directly */
        send_peer(d, x->pk, &m, now);
        d->stats.notifies_sent++;
    }
}

static void sub_update(pl_dir *d, const char *name, const uint8_t *rec, size_t len, bool offline, pl_time now);

/* Offers a record to the local store; returns the STORE_ACK status.
 * verified: the caller has just verified it (our own client's publish). */
static uint8_t store_record(pl_dir *d, const uint8_t *rec, size_t len, bool verified, pl_time now)
{
    pl_record r;
    if (pl_record_decode(&r, rec, len) != PL_RECORD_OK) {
        d->stats.refused++;
        return PL_DIR_REFUSED;
    }
    char norm[PL_NAME_MAX + 1];
    uint8_t key[32];
    if (!name_key(r.cert.name, norm, key)) {
        d->stats.refused++;
        return PL_DIR_REFUSED;
    }
    if (!self_is_replica(d, key)) {
        d->stats.not_replica++;
        return PL_DIR_NOT_REPLICA;
    }
    uint32_t idx;
    slot *s = slot_of(d, key, &idx);
    pl_record_err why;
    const uint8_t *cur = s && s->bytes ? s->bytes : NULL;
    size_t cur_len = cur ? s->len : 0;
    pl_record_offer o =
        verified ? pl_record_slot_offer_verified(cur, cur_len, rec, len, d->ca_pk, d->crl, now / PL_SEC, norm, &why)
                 : pl_record_slot_offer(cur, cur_len, rec, len, d->ca_pk, d->crl, now / PL_SEC, norm, &why);
    if (o == PL_RECORD_OFFER_KEEP) {
        return PL_DIR_OK;
    }
    if (o == PL_RECORD_OFFER_REFUSE) {
        if (why == PL_RECORD_ERR_STALE || why == PL_RECORD_ERR_CONFLICT) {
            d->stats.stale++;
            return PL_DIR_STALE;
        }
        d->stats.refused++;
        return PL_DIR_REFUSED;
    }
    if (!s && !(s = slot_new(d, key, norm, &idx))) return PL_DIR_BUSY;
    uint8_t *copy = d->mem->calloc(d->mem->ctx, 1, len);
    if (!copy) {
        slot_maybe_free(d, s, idx);
        return PL_DIR_BUSY;
    }
    memcpy(copy, rec, len);
    if (!s->bytes) d->stats.records++;
    else d->mem->free(d->mem->ctx, s->bytes);
    s->bytes = copy;
    s->len = (uint16_t)len;
    s->seq = r.sequence;
    s->issued_at = r.issued_at * PL_SEC;
    s->expires_at = r.expires_at * PL_SEC;
    s->offline = false;
    d->stats.stored++;
    notify_watchers(d, s, now);
    /* We may watch this name for our own clients too. */
    sub_update(d, s->name, s->bytes, s->len, false, now);
    return PL_DIR_OK;
}

/* ---- publishing (for our clients) ----------------------------------------------------------- */

static void publish_done(pl_dir *d, uint32_t idx, pend *p, pl_time now)
{
    pl_ovl_dir m = {.type = PL_OVL_PUBLISH_ACK, .req = p->client_req, .count = p->stored,
                    .status = p->stored ? PL_DIR_OK : PL_DIR_UNREACHABLE};
    send_msg(d, p->client_pk, &p->client_addr, &m, now);
    d->stats.publish_acks++;
    pool_release(&d->pending, idx);
}

static void on_publish(pl_dir *d, const uint8_t pk[32], const pl_cert *cert, const pl_addr *from,
                       const pl_ovl_dir *in, pl_time now)
{
    pl_ovl_dir ack = {.type = PL_OVL_PUBLISH_ACK, .req = in->req};
    d->stats.publishes++;
    pl_record r;
    char norm[PL_NAME_MAX + 1];
    uint8_t key[32];
    /* The record must verify, and be the sender's own: nobody publishes for
     * someone else. */
    if (pl_record_decode(&r, in->record, in->record_len) != PL_RECORD_OK ||
        memcmp(r.cert.sign_pk, pk, 32) != 0 || !cert || !name_key(cert->name, norm, key) ||
        pl_record_verify(&r, d->ca_pk, d->crl, now / PL_SEC, norm, NULL) != PL_RECORD_OK) {
        ack.status = PL_DIR_REFUSED;
        send_msg(d, pk, from, &ack, now);
        d->stats.refused++;
        return;
    }
    client *c = client_of(d, pk, true);
    if (c && r.sequence >= c->seq) {
        snprintf(c->name, sizeof c->name, "%s", norm);
        c->seq = r.sequence;
        if (c->record && c->record_len != in->record_len) {
            d->mem->free(d->mem->ctx, c->record);
            c->record = NULL;
        }
        if (!c->record) c->record = d->mem->calloc(d->mem->ctx, 1, in->record_len);
        if (c->record) {
            memcpy(c->record, in->record, in->record_len);
            c->record_len = (uint16_t)in->record_len;
        }
    }
    uint32_t idx;
    pend *p = pend_new(d, PEND_PUBLISH, &idx);
    if (!p) {
        ack.status = PL_DIR_BUSY;
        send_msg(d, pk, from, &ack, now);
        return;
    }
    memcpy(p->client_pk, pk, 32);
    p->client_addr = *from;
    p->client_req = in->req;
    p->n_rep = (uint8_t)replicas(d, key, d->r, p->reps);
    p->deadline = now + PL_DIR_PUBLISH_TIMEOUT;
    pl_ovl_dir store = {.type = PL_OVL_STORE, .req = req_id(idx, p), .record = in->record,
                        .record_len = in->record_len};
    for (uint8_t i = 0; i < p->n_rep; i++) {
        if (is_self(d, p->reps[i])) {
            uint8_t st = store_record(d, in->record, in->record_len, true, now);
            p->acked |= (uint16_t)(1u << i);
            if (st == PL_DIR_OK) p->stored++;
        } else {
            send_peer(d, p->reps[i], &store, now);
        }
    }
    if (p->acked == (1u << p->n_rep) - 1) {
        publish_done(d, idx, p, now);
        return;
    }
    fifo_push(d, &d->publish_deadlines, p->deadline, idx, p->gen);
}

static void on_store_ack(pl_dir *d, const uint8_t pk[32], const pl_ovl_dir *in, pl_time now)
{
    uint32_t idx;
    pend *p = pend_from_req(d, in->req, PEND_PUBLISH, &idx);
    if (!p) return;
    for (uint8_t i = 0; i < p->n_rep; i++) {
        if (memcmp(p->reps[i], pk, 32) != 0 || (p->acked & (1u << i))) continue;
        p->acked |= (uint16_t)(1u << i);
        /* A replica that already holds this record (or a newer one) has it. */
        if (in->status == PL_DIR_OK) p->stored++;
    }
    if (p->acked == (1u << p->n_rep) - 1) publish_done(d, idx, p, now);
}

/* ---- look-ups (for our clients) -------------------------------------------------------------- */

static void lookup_reply(pl_dir *d, uint32_t idx, pend *p, uint8_t status, uint8_t flags, const uint8_t *rec,
                         size_t len, pl_time now)
{
    pl_ovl_dir m = {.type = PL_OVL_LOOKUP_REPLY, .req = p->client_req, .status = status, .flags = flags,
                    .index = p->at, .count = p->n_rep, .record = rec, .record_len = len};
    send_msg(d, p->client_pk, &p->client_addr, &m, now);
    if (status == PL_DIR_OK) d->stats.lookups_found++;
    else if (status == PL_DIR_NOT_FOUND) d->stats.lookups_not_found++;
    else d->stats.lookups_unreachable++;
    pool_release(&d->pending, idx);
}

/* Asks the replica at p->at, answering locally when it is us; moves on past
 * those that cannot help, and replies when none is left. */
static void lookup_step(pl_dir *d, uint32_t idx, pend *p, pl_time now)
{
    while (p->at < p->n_rep) {
        if (is_self(d, p->reps[p->at])) {
            const slot *s = slot_of(d, p->key, NULL);
            if (s && s->bytes) {
                lookup_reply(d, idx, p, PL_DIR_OK, s->offline ? PL_DIR_F_OFFLINE : 0, s->bytes, s->len, now);
                return;
            }
            p->not_found++;
            p->at++;
            continue;
        }
        if (!is_member(d, p->reps[p->at])) {
            p->at++;
            continue;
        }
        pl_ovl_dir f = {.type = PL_OVL_FETCH, .req = req_id(idx, p)};
        memcpy(f.name, p->name, sizeof f.name);
        send_peer(d, p->reps[p->at], &f, now);
        p->deadline = now + PL_DIR_FETCH_TIMEOUT;
        fifo_push(d, &d->fetch_deadlines, p->deadline, idx, p->gen);
        return;
    }
    lookup_reply(d, idx, p, p->not_found ? PL_DIR_NOT_FOUND : PL_DIR_UNREACHABLE, 0, NULL, 0, now);
}

static void on_lookup(pl_dir *d, const uint8_t pk[32], const pl_addr *from, const pl_ovl_dir *in, pl_time now)
{
    d->stats.lookups++;
    uint32_t idx;
    pend *p = pend_new(d, PEND_LOOKUP, &idx);
    if (!p) {
        pl_ovl_dir m = {.type = PL_OVL_LOOKUP_REPLY, .req = in->req, .status = PL_DIR_BUSY};
        send_msg(d, pk, from, &m, now);
        d->stats.lookups_busy++;
        return;
    }
    memcpy(p->client_pk, pk, 32);
    p->client_addr = *from;
    p->client_req = in->req;
    memcpy(p->name, in->name, sizeof p->name);
    pl_ring_key_for_name(in->name, p->key);
    p->n_rep = (uint8_t)replicas(d, p->key, d->r, p->reps);
    /* The client skips replicas whose answers it could not use. */
    p->at = in->index < p->n_rep ? in->index : p->n_rep;
    lookup_step(d, idx, p, now);
}

static void on_fetch_reply(pl_dir *d, const uint8_t pk[32], const pl_ovl_dir *in, pl_time now)
{
    uint32_t idx;
    pend *p = pend_from_req(d, in->req, PEND_LOOKUP, &idx);
    if (!p || p->at >= p->n_rep || memcmp(p->reps[p->at], pk, 32) != 0) return;
    if (in->status == PL_DIR_OK && in->record_len) {
        lookup_reply(d, idx, p, PL_DIR_OK, in->flags & PL_DIR_F_OFFLINE, in->record, in->record_len, now);
        return;
    }
    if (in->status == PL_DIR_NOT_FOUND) p->not_found++;
    p->at++;
    lookup_step(d, idx, p, now);
}

static void on_fetch(pl_dir *d, const uint8_t pk[32], const pl_addr *from, const pl_ovl_dir *in, pl_time now)
{
    pl_ovl_dir m = {.type = PL_OVL_FETCH_REPLY, .req = in->req};
    uint8_t key[32];
    pl_ring_key_for_name(in->name, key);
    const slot *s = slot_of(d, key, NULL);
    if (s && s->bytes) {
        m.status = PL_DIR_OK;
        m.flags = s->offline ? PL_DIR_F_OFFLINE : 0;
        m.record = s->bytes;
        m.record_len = s->len;
    } else {
        m.status = self_is_replica(d, key) ? PL_DIR_NOT_FOUND : PL_DIR_NOT_REPLICA;
    }
    d->stats.fetches_served++;
    send_msg(d, pk, from, &m, now);
}

/* ---- watches (as a replica) ---------------------------------------------------------------------- */

static void add_watch(pl_dir *d, const uint8_t watcher[32], const char *name, pl_time now)
{
    uint8_t key[32], id[32];
    pl_ring_key_for_name(name, key);
    uint32_t sidx;
    slot *s = slot_of(d, key, &sidx);
    if (!s && !(s = slot_new(d, key, name, &sidx))) return;
    pair_id(key, watcher, id);
    uint32_t wi;
    if (pl_keymap_get(&d->watch_by_id, id, &wi)) {
        ((watch *)pool_at(&d->watches, wi))->expires = now + WATCH_LIFE;
    } else {
        wi = pool_alloc(&d->watches, d->mem);
        if (wi != UINT32_MAX && !pl_keymap_put(&d->watch_by_id, id, wi)) {
            pool_release(&d->watches, wi);
            wi = UINT32_MAX;
        }
        if (wi == UINT32_MAX) {
            slot_maybe_free(d, s, sidx);
            return;
        }
        watch *w = pool_at(&d->watches, wi);
        w->used = true;
        w->slot = sidx;
        memcpy(w->pk, watcher, 32);
        w->expires = now + WATCH_LIFE;
        w->next = s->watch_head;
        s->watch_head = wi + 1;
        d->stats.watches++;
    }
    /* A watch is answered with what we hold now. */
    if (!is_self(d, watcher)) {
        pl_ovl_dir m = {.type = PL_OVL_NOTIFY, .flags = s->offline || !s->bytes ? PL_DIR_F_OFFLINE : 0,
                        .record = s->bytes, .record_len = s->len};
        memcpy(m.name, s->name, sizeof m.name);
        send_peer(d, watcher, &m, now);
        d->stats.notifies_sent++;
    }
}

static void drop_watch(pl_dir *d, const uint8_t watcher[32], const char *name)
{
    uint8_t key[32], id[32];
    uint32_t wi, sidx;
    pl_ring_key_for_name(name, key);
    pair_id(key, watcher, id);
    if (!pl_keymap_get(&d->watch_by_id, id, &wi)) return;
    slot *s = slot_of(d, key, &sidx);
    watch_release(d, wi);
    if (s) slot_maybe_free(d, s, sidx);
}

/* OFFLINE from a user's supernode: believed only from a supernode the
 * record itself names, and only for the record it names. */
static void on_offline(pl_dir *d, const uint8_t pk[32], const pl_ovl_dir *in, pl_time now)
{
    uint8_t key[32];
    pl_ring_key_for_name(in->name, key);
    slot *s = slot_of(d, key, NULL);
    if (!s || !s->bytes || s->offline || s->seq != in->seq) return;
    pl_record r;
    if (pl_record_decode(&r, s->bytes, s->len) != PL_RECORD_OK) return;
    bool named = false;
    for (uint8_t i = 0; i < r.n_supernodes; i++)
        if (memcmp(r.supernodes[i].pk, pk, 32) == 0) named = true;
    if (!named) return;
    s->offline = true;
    notify_watchers(d, s, now);
    sub_update(d, s->name, s->bytes, s->len, true, now);
}

/* ---- subscriptions (for our clients) --------------------------------------------------------------- */

static sub *sub_of(const pl_dir *d, const uint8_t key[32], uint32_t *idx)
{
    uint32_t i;
    if (!pl_keymap_get(&d->sub_by_key, key, &i)) return NULL;
    if (idx) *idx = i;
    return pool_at(&d->subs, i);
}

static void presence_to(pl_dir *d, const subc *c, const sub *s, const uint8_t *rec, size_t len, pl_time now)
{
    pl_ovl_dir m = {.type = PL_OVL_PRESENCE, .flags = s->offline ? PL_DIR_F_OFFLINE : 0, .record = rec,
                    .record_len = len};
    memcpy(m.name, s->name, sizeof m.name);
    send_msg(d, c->pk, &c->addr, &m, now);
    d->stats.presence_sent++;
}

/* Sends WATCH for a subscription to its replicas (ourselves directly). */
static void sub_watch(pl_dir *d, sub *s, uint8_t type, pl_time now)
{
    uint8_t reps[MAX_R][32];
    size_t n = replicas(d, s->key, d->r, reps);
    pl_ovl_dir m = {.type = type};
    memcpy(m.name, s->name, sizeof m.name);
    for (size_t i = 0; i < n; i++) {
        if (is_self(d, reps[i])) {
            if (type == PL_OVL_WATCH) {
                add_watch(d, d->self, s->name, now);
                const slot *sl = slot_of(d, s->key, NULL);
                sub_update(d, s->name, sl ? sl->bytes : NULL, sl ? sl->len : 0, !sl || !sl->bytes || sl->offline,
                           now);
            } else {
                drop_watch(d, d->self, s->name);
            }
        } else {
            send_peer(d, reps[i], &m, now);
        }
    }
    if (type == PL_OVL_WATCH) s->refresh_at = now + PL_DIR_WATCH_REFRESH;
}

/* A replica told us about a watched name. Records are verified here: a
 * lying replica must not push a forged "newer" record past the real ones. */
static void sub_update(pl_dir *d, const char *name, const uint8_t *rec, size_t len, bool offline, pl_time now)
{
    uint8_t key[32];
    pl_ring_key_for_name(name, key);
    sub *s = sub_of(d, key, NULL);
    if (!s) return;
    uint64_t seq = 0;
    if (rec && len) {
        pl_record r;
        if (pl_record_decode(&r, rec, len) != PL_RECORD_OK ||
            pl_record_verify(&r, d->ca_pk, d->crl, now / PL_SEC, name, NULL) != PL_RECORD_OK)
            return;
        seq = r.sequence;
    } else {
        offline = true;
    }
    /* Newer records win; for the same record, offline is news once. A
     * replica without the record (it just joined) does not override one
     * that has it. */
    bool news = !s->have || seq > s->seq || (seq == s->seq && offline && !s->offline);
    if (!news) return;
    if (seq == 0 && s->have && s->seq > 0) return;
    s->have = true;
    s->seq = seq;
    s->offline = offline;
    for (uint32_t c = s->head; c; c = ((subc *)pool_at(&d->subcs, c - 1))->next)
        presence_to(d, pool_at(&d->subcs, c - 1), s, rec, len, now);
}

static void subscribe(pl_dir *d, const uint8_t pk[32], const pl_addr *from, const char *name, pl_time now)
{
    client *cl = client_of(d, pk, true);
    if (!cl || cl->n_subs >= PL_DIR_MAX_SUBSCRIPTIONS_PER_CLIENT) return;
    uint8_t key[32], id[32];
    pl_ring_key_for_name(name, key);
    uint32_t si;
    sub *s = sub_of(d, key, &si);
    bool fresh = false;
    if (!s) {
        si = pool_alloc(&d->subs, d->mem);
        if (si == UINT32_MAX) return;
        if (!pl_keymap_put(&d->sub_by_key, key, si)) {
            pool_release(&d->subs, si);
            return;
        }
        s = pool_at(&d->subs, si);
        s->used = true;
        memcpy(s->key, key, 32);
        snprintf(s->name, sizeof s->name, "%s", name);
        d->stats.subscriptions++;
        fresh = true;
    }
    pair_id(key, pk, id);
    uint32_t ci;
    if (pl_keymap_get(&d->subc_by_id, id, &ci)) {
        ((subc *)pool_at(&d->subcs, ci))->addr = *from;
    } else {
        ci = pool_alloc(&d->subcs, d->mem);
        if (ci == UINT32_MAX) return;
        if (!pl_keymap_put(&d->subc_by_id, id, ci)) {
            pool_release(&d->subcs, ci);
            return;
        }
        subc *c = pool_at(&d->subcs, ci);
        c->used = true;
        c->sub = si;
        memcpy(c->pk, pk, 32);
        c->addr = *from;
        c->next = s->head;
        s->head = ci + 1;
        cl->n_subs++;
    }
    if (fresh) {
        sub_watch(d, s, PL_OVL_WATCH, now);
    } else if (s->have) {
        /* Someone else watches this name already: answer from what we know. */
        const slot *sl = slot_of(d, key, NULL);
        const uint8_t *rec = NULL;
        size_t len = 0;
        if (sl && sl->bytes && sl->seq == s->seq) {
            rec = sl->bytes;
            len = sl->len;
        }
        /* Without the bytes at hand, the next notification brings them; ask
         * the replicas again so it comes now. */
        if (!rec && !s->offline) sub_watch(d, s, PL_OVL_WATCH, now);
        else presence_to(d, pool_at(&d->subcs, ci), s, rec, len, now);
    }
}

static void unsubscribe(pl_dir *d, const uint8_t pk[32], const char *name, pl_time now)
{
    uint8_t key[32], id[32];
    pl_ring_key_for_name(name, key);
    uint32_t si, ci;
    sub *s = sub_of(d, key, &si);
    pair_id(key, pk, id);
    if (!s || !pl_keymap_get(&d->subc_by_id, id, &ci)) return;
    pl_keymap_remove(&d->subc_by_id, id);
    uint32_t *link = &s->head;
    while (*link && *link != ci + 1) link = &((subc *)pool_at(&d->subcs, *link - 1))->next;
    if (*link) *link = ((subc *)pool_at(&d->subcs, ci))->next;
    pool_release(&d->subcs, ci);
    client *cl = client_of(d, pk, false);
    if (cl && cl->n_subs) cl->n_subs--;
    if (!s->head) {
        sub_watch(d, s, PL_OVL_UNWATCH, now);
        pl_keymap_remove(&d->sub_by_key, key);
        pool_release(&d->subs, si);
        d->stats.subscriptions--;
    }
}

/* ---- messages in ---------------------------------------------------------------------------------- */

bool pl_dir_client_message(pl_dir *d, const uint8_t pk[32], const pl_cert *cert, const pl_addr *from,
                           const uint8_t *msg, size_t len, pl_time now)
{
    if (len == 0) return false;
    uint8_t t = msg[0];
    if (t == PL_OVL_SUBSCRIBE || t == PL_OVL_UNSUBSCRIBE) {
        pl_ovl_names n;
        if (pl_ovl_decode_names(&n, msg, len)) return true;
        for (uint8_t i = 0; i < n.n; i++) {
            if (t == PL_OVL_SUBSCRIBE) subscribe(d, pk, from, n.names[i], now);
            else unsubscribe(d, pk, n.names[i], now);
        }
        return true;
    }
    if (t != PL_OVL_PUBLISH && t != PL_OVL_LOOKUP) return false;
    pl_ovl_dir m;
    if (pl_ovl_decode_dir(&m, msg, len)) return true;
    if (t == PL_OVL_PUBLISH) on_publish(d, pk, cert, from, &m, now);
    else on_lookup(d, pk, from, &m, now);
    return true;
}

bool pl_dir_peer_message(pl_dir *d, const uint8_t pk[32], const pl_addr *from, const uint8_t *msg, size_t len,
                         pl_time now)
{
    if (len == 0) return false;
    uint8_t t = msg[0];
    if (t != PL_OVL_STORE && t != PL_OVL_STORE_ACK && t != PL_OVL_FETCH && t != PL_OVL_FETCH_REPLY &&
        t != PL_OVL_WATCH && t != PL_OVL_UNWATCH && t != PL_OVL_NOTIFY && t != PL_OVL_OFFLINE)
        return false;
    /* Only supernodes speak these; anyone else is ignored. */
    if (!is_member(d, pk)) return true;
    pl_ovl_dir m;
    if (pl_ovl_decode_dir(&m, msg, len)) return true;
    switch (t) {
    case PL_OVL_STORE: {
        uint8_t st = store_record(d, m.record, m.record_len, false, now);
        if (!(m.flags & PL_DIR_F_HANDOVER)) {
            pl_ovl_dir ack = {.type = PL_OVL_STORE_ACK, .req = m.req, .status = st};
            send_msg(d, pk, from, &ack, now);
        }
        break;
    }
    case PL_OVL_STORE_ACK: on_store_ack(d, pk, &m, now); break;
    case PL_OVL_FETCH: on_fetch(d, pk, from, &m, now); break;
    case PL_OVL_FETCH_REPLY: on_fetch_reply(d, pk, &m, now); break;
    case PL_OVL_WATCH: add_watch(d, pk, m.name, now); break;
    case PL_OVL_UNWATCH: drop_watch(d, pk, m.name); break;
    case PL_OVL_NOTIFY: sub_update(d, m.name, m.record, m.record_len, m.flags & PL_DIR_F_OFFLINE, now); break;
    case PL_OVL_OFFLINE: on_offline(d, pk, &m, now); break;
    }
    return true;
}

void pl_dir_client_gone(pl_dir *d, const uint8_t pk[32], bool offline, pl_time now)
{
    uint32_t ci;
    if (!pl_keymap_get(&d->client_by_pk, pk, &ci)) return;
    client *c = pool_at(&d->clients, ci);
    /* Its replicas hear that we lost it, for the record it published last. */
    if (offline && c->seq && c->name[0]) {
        uint8_t key[32], reps[MAX_R][32];
        pl_ring_key_for_name(c->name, key);
        size_t n = replicas(d, key, d->r, reps);
        pl_ovl_dir m = {.type = PL_OVL_OFFLINE, .seq = c->seq};
        memcpy(m.name, c->name, sizeof m.name);
        for (size_t i = 0; i < n; i++) {
            if (is_self(d, reps[i])) on_offline(d, d->self, &m, now);
            else send_peer(d, reps[i], &m, now);
            d->stats.offline_sent++;
        }
    }
    /* Its subscriptions end. */
    for (uint32_t i = 0; i < d->subcs.high && c->n_subs; i++) {
        subc *x = pool_at(&d->subcs, i);
        if (!x->used || memcmp(x->pk, pk, 32) != 0) continue;
        char name[PL_NAME_MAX + 1];
        memcpy(name, ((sub *)pool_at(&d->subs, x->sub))->name, sizeof name);
        unsubscribe(d, pk, name, now);
    }
    if (c->record) d->mem->free(d->mem->ctx, c->record);
    pl_keymap_remove(&d->client_by_pk, pk);
    pool_release(&d->clients, ci);
}

/* ---- membership and handover ---------------------------------------------------------------------- */

static void membership_changed(pl_dir *d, pl_time now)
{
    if (d->change_pending) return;
    /* `before` is the membership as it was before this batch of changes. */
    memcpy(d->before, d->alive, d->nbits / 8);
    d->change_pending = true;
    d->handover_at = now + PL_DIR_HANDOVER_DELAY;
}

/* Makes the bitmaps cover slot; false when memory runs out. */
static bool bits_reserve(pl_dir *d, uint32_t at)
{
    if (at < d->nbits) return true;
    uint32_t nbits = d->nbits ? d->nbits : 256;
    while (nbits <= at) nbits *= 2;
    uint64_t *a = d->mem->calloc(d->mem->ctx, nbits / 64, sizeof *a);
    uint64_t *b = d->mem->calloc(d->mem->ctx, nbits / 64, sizeof *b);
    if (!a || !b) {
        if (a) d->mem->free(d->mem->ctx, a);
        if (b) d->mem->free(d->mem->ctx, b);
        return false;
    }
    if (d->alive) {
        memcpy(a, d->alive, d->nbits / 8);
        memcpy(b, d->before, d->nbits / 8);
        d->mem->free(d->mem->ctx, d->alive);
        d->mem->free(d->mem->ctx, d->before);
    }
    d->alive = a;
    d->before = b;
    d->nbits = nbits;
    return true;
}

static void set_alive(pl_dir *d, const uint8_t pk[32], bool alive, pl_time now)
{
    pl_ring_err e = pl_ring_add(d->ring, pk);
    if (e != PL_RING_OK && e != PL_RING_ERR_EXISTS) return;
    uint32_t at = pl_ring_slot(d->ring, pk);
    if (at == PL_RING_NO_SLOT || !bits_reserve(d, at) || bit(d->alive, d->nbits, at) == alive) return;
    membership_changed(d, now);
    if (alive) {
        d->alive[at / 64] |= 1ull << (at % 64);
        d->n_alive++;
    } else {
        d->alive[at / 64] &= ~(1ull << (at % 64));
        d->n_alive--;
    }
}

void pl_dir_member_up(pl_dir *d, const uint8_t pk[32], const pl_addr *addr, pl_time now)
{
    uint32_t i;
    if (d->io.addr_of) {
        set_alive(d, pk, true, now);
        return;
    }
    if (pl_keymap_get(&d->member_by_pk, pk, &i)) {
        ((member *)pool_at(&d->members, i))->addr = *addr;
    } else {
        i = pool_alloc(&d->members, d->mem);
        if (i == UINT32_MAX) return;
        if (!pl_keymap_put(&d->member_by_pk, pk, i)) {
            pool_release(&d->members, i);
            return;
        }
        member *m = pool_at(&d->members, i);
        m->used = true;
        memcpy(m->pk, pk, 32);
        m->addr = *addr;
    }
    set_alive(d, pk, true, now);
}

void pl_dir_member_down(pl_dir *d, const uint8_t pk[32], pl_time now)
{
    uint32_t i;
    if (is_self(d, pk)) return;
    if (d->io.addr_of) {
        set_alive(d, pk, false, now);
        return;
    }
    if (!pl_keymap_get(&d->member_by_pk, pk, &i)) return;
    set_alive(d, pk, false, now);
    pl_keymap_remove(&d->member_by_pk, pk);
    pool_release(&d->members, i);
}

size_t pl_dir_member_count(const pl_dir *d) { return d->n_alive; }

bool pl_dir_is_member(const pl_dir *d, const uint8_t pk[32], pl_addr *addr)
{
    pl_addr a;
    if (!member_addr(d, pk, &a)) return false;
    if (addr) *addr = a;
    return true;
}

size_t pl_dir_standby_for(const pl_dir *d, const uint8_t client_pk[32], pl_ovl_peer *out, size_t n)
{
    uint8_t reps[MAX_R][32];
    size_t k = replicas(d, client_pk, n + 1 < MAX_R ? n + 1 : MAX_R, reps), got = 0;
    for (size_t i = 0; i < k && got < n; i++) {
        if (is_self(d, reps[i]) || !member_addr(d, reps[i], &out[got].addr)) continue;
        memcpy(out[got++].pk, reps[i], 32);
    }
    return got;
}

/* One pass over what we hold after membership settled: push records to new
 * replicas (if we are the one that must: the first old replica still
 * alive), drop those we no longer hold, and re-watch subscriptions whose
 * replicas changed. */
static void hand_over(pl_dir *d, pl_time now)
{
    d->change_pending = false;
    for (uint32_t i = 0; i < d->slots.high; i++) {
        slot *s = pool_at(&d->slots, i);
        if (!s->used || !s->bytes) continue;
        uint8_t a[MAX_R][32], b[MAX_R][32];
        size_t na = replicas_in(d, d->before, s->key, d->r, a);
        size_t nb = replicas(d, s->key, d->r, b);
        if (na == nb && memcmp(a, b, na * 32) == 0) continue;
        /* The sender: the first old replica that is still a member. */
        bool sender = false;
        for (size_t k = 0; k < na; k++) {
            uint32_t sl = pl_ring_slot(d->ring, a[k]);
            if (!bit(d->alive, d->nbits, sl)) continue;
            sender = is_self(d, a[k]);
            break;
        }
        if (sender) {
            pl_ovl_dir m = {.type = PL_OVL_STORE, .flags = PL_DIR_F_HANDOVER, .record = s->bytes,
                            .record_len = s->len};
            for (size_t k = 0; k < nb; k++) {
                if (in_list(a, na, b[k]) || is_self(d, b[k])) continue;
                send_peer(d, b[k], &m, now);
                d->stats.handed_over++;
            }
        }
        if (!in_list(b, nb, d->self)) {
            slot_free_all(d, s, i);
            d->stats.dropped_not_replica++;
        }
    }
    /* Our clients' records go to their new replicas from us too: when
     * every old replica died at once, nobody else has them. A replica that
     * has the record already just keeps it. */
    for (uint32_t i = 0; i < d->clients.high; i++) {
        client *c = pool_at(&d->clients, i);
        if (!c->used || !c->record || !c->name[0]) continue;
        uint8_t key[32], a[MAX_R][32], b[MAX_R][32];
        pl_ring_key_for_name(c->name, key);
        size_t na = replicas_in(d, d->before, key, d->r, a);
        size_t nb = replicas(d, key, d->r, b);
        if (na == nb && memcmp(a, b, na * 32) == 0) continue;
        pl_ovl_dir m = {.type = PL_OVL_STORE, .flags = PL_DIR_F_HANDOVER, .record = c->record,
                        .record_len = c->record_len};
        for (size_t k = 0; k < nb; k++) {
            if (in_list(a, na, b[k])) continue;
            if (is_self(d, b[k])) store_record(d, c->record, c->record_len, false, now);
            else send_peer(d, b[k], &m, now);
            d->stats.handed_over++;
        }
    }
    for (uint32_t i = 0; i < d->subs.high; i++) {
        sub *s = pool_at(&d->subs, i);
        if (!s->used) continue;
        uint8_t a[MAX_R][32], b[MAX_R][32];
        size_t na = replicas_in(d, d->before, s->key, d->r, a);
        size_t nb = replicas(d, s->key, d->r, b);
        if (na != nb || memcmp(a, b, na * 32) != 0) sub_watch(d, s, PL_OVL_WATCH, now);
    }
}

/* ---- time ---------------------------------------------------------------------------------------- */

static void expire_pending(pl_dir *d, fifo *f, pl_time now)
{
    for (;;) {
        fifo_clean(d, f);
        if (!f->count || f->e[f->head].at > now) return;
        deadline_ent e = f->e[f->head];
        f->head = (f->head + 1) % f->cap;
        f->count--;
        pend *p = pool_at(&d->pending, e.idx);
        if (p->kind == PEND_PUBLISH) {
            publish_done(d, e.idx, p, now);
        } else {
            d->stats.fetch_timeouts++;
            p->at++;
            lookup_step(d, e.idx, p, now);
        }
    }
}

static void sweep(pl_dir *d, pl_time now)
{
    uint32_t n = d->slots.high / SWEEP_FRACTION + 1;
    for (uint32_t k = 0; k < n && d->slots.high; k++) {
        if (d->sweep_slot >= d->slots.high) d->sweep_slot = 0;
        uint32_t i = d->sweep_slot++;
        slot *s = pool_at(&d->slots, i);
        if (!s->used) continue;
        for (uint32_t w = s->watch_head; w;) {
            watch *x = pool_at(&d->watches, w - 1);
            uint32_t next = x->next;
            if (now >= x->expires) watch_release(d, w - 1);
            w = next;
        }
        if (s->bytes && !s->offline && now >= s->expires_at) {
            /* Not refreshed: the user is gone. */
            s->offline = true;
            d->stats.expired++;
            notify_watchers(d, s, now);
        }
        if (s->bytes && now >= s->issued_at + KEEP_AFTER_ISSUE) slot_drop_record(d, s);
        slot_maybe_free(d, s, i);
    }
    n = d->subs.high / SWEEP_FRACTION + 1;
    for (uint32_t k = 0; k < n && d->subs.high; k++) {
        if (d->sweep_sub >= d->subs.high) d->sweep_sub = 0;
        sub *s = pool_at(&d->subs, d->sweep_sub++);
        if (s->used && now >= s->refresh_at) sub_watch(d, s, PL_OVL_WATCH, now);
    }
}

void pl_dir_tick(pl_dir *d, pl_time now)
{
    expire_pending(d, &d->fetch_deadlines, now);
    expire_pending(d, &d->publish_deadlines, now);
    if (d->change_pending && now >= d->handover_at) hand_over(d, now);
    if (now >= d->next_sweep) {
        d->next_sweep = now + SWEEP_INTERVAL;
        sweep(d, now);
    }
}

static pl_time fifo_next(const pl_dir *d, const fifo *f)
{
    for (uint32_t k = 0; k < f->count; k++) {
        const deadline_ent *e = &f->e[(f->head + k) % f->cap];
        if (fifo_live(d, e)) return e->at;
    }
    return PL_TIME_NEVER;
}

pl_time pl_dir_next_timeout(const pl_dir *d)
{
    pl_time t = PL_TIME_NEVER, x;
    if ((x = fifo_next(d, &d->fetch_deadlines)) < t) t = x;
    if ((x = fifo_next(d, &d->publish_deadlines)) < t) t = x;
    if (d->change_pending && d->handover_at < t) t = d->handover_at;
    if ((d->slots.used || d->subs.used) && d->next_sweep < t) t = d->next_sweep;
    return t;
}

/* ---- set-up and queries ------------------------------------------------------------------------------ */

pl_dir_err pl_dir_new(pl_dir **out, const pl_dir_config *cfg, const pl_dir_io *io)
{
    *out = NULL;
    if (!cfg || !cfg->self_pk || !cfg->rng || !io || !io->send || cfg->replicas > MAX_R ||
        cfg->max_pending > 65535)
        return PL_DIRECTORY_ERR_CONFIG;
    const pl_mem *mem = cfg->mem ? cfg->mem : pl_mem_system();
    pl_dir *d = mem->calloc(mem->ctx, 1, sizeof *d);
    if (!d) return PL_DIRECTORY_ERR_NOMEM;
    memcpy(d->self, cfg->self_pk, 32);
    memcpy(d->ca_pk, cfg->ca_pk, 32);
    d->rng = cfg->rng;
    d->mem = mem;
    d->io = *io;
    d->r = cfg->replicas ? cfg->replicas : PL_DIR_DEFAULT_REPLICAS;
    uint32_t max_records = cfg->max_records ? cfg->max_records : PL_DIR_DEFAULT_MAX_RECORDS;
    uint32_t max_pending = cfg->max_pending ? cfg->max_pending : PL_DIR_DEFAULT_MAX_PENDING;
    d->members = (pool){.size = sizeof(member), .max = PL_RING_MAX_MEMBERS};
    d->slots = (pool){.size = sizeof(slot), .max = max_records};
    d->watches = (pool){.size = sizeof(watch), .max = 4 * max_records};
    d->subs = (pool){.size = sizeof(sub), .max = max_records};
    d->subcs = (pool){.size = sizeof(subc), .max = 4 * max_records};
    d->clients = (pool){.size = sizeof(client), .max = max_records};
    d->pending = (pool){.size = sizeof(pend), .max = max_pending};
    pl_keymap_init(&d->member_by_pk, mem, cfg->rng);
    pl_keymap_init(&d->slot_by_key, mem, cfg->rng);
    pl_keymap_init(&d->watch_by_id, mem, cfg->rng);
    pl_keymap_init(&d->sub_by_key, mem, cfg->rng);
    pl_keymap_init(&d->subc_by_id, mem, cfg->rng);
    pl_keymap_init(&d->client_by_pk, mem, cfg->rng);
    d->pend_gen = mem->calloc(mem->ctx, max_pending, sizeof *d->pend_gen);
    if (cfg->shared_ring) {
        d->ring = cfg->shared_ring;
    } else if (pl_ring_new(&d->ring, mem, cfg->vpoints) == PL_RING_OK) {
        d->own_ring = true;
    }
    if (!d->pend_gen || !d->ring) {
        pl_dir_free(d);
        return PL_DIRECTORY_ERR_NOMEM;
    }
    set_alive(d, d->self, true, 0);
    d->change_pending = false;
    *out = d;
    return PL_DIRECTORY_OK;
}

void pl_dir_free(pl_dir *d)
{
    if (!d) return;
    const pl_mem *mem = d->mem;
    for (uint32_t i = 0; i < d->slots.high; i++) {
        slot *s = pool_at(&d->slots, i);
        if (s->bytes) mem->free(mem->ctx, s->bytes);
    }
    for (uint32_t i = 0; i < d->clients.high; i++) {
        client *c = pool_at(&d->clients, i);
        if (c->record) mem->free(mem->ctx, c->record);
    }
    pool *pools[] = {&d->members, &d->slots, &d->watches, &d->subs, &d->subcs, &d->clients, &d->pending};
    for (size_t i = 0; i < sizeof pools / sizeof pools[0]; i++) pool_free(pools[i], mem);
    pl_keymap *maps[] = {&d->member_by_pk, &d->slot_by_key, &d->watch_by_id, &d->sub_by_key, &d->subc_by_id,
                         &d->client_by_pk};
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++) pl_keymap_free(maps[i]);
    if (d->fetch_deadlines.e) mem->free(mem->ctx, d->fetch_deadlines.e);
    if (d->publish_deadlines.e) mem->free(mem->ctx, d->publish_deadlines.e);
    if (d->pend_gen) mem->free(mem->ctx, d->pend_gen);
    if (d->own_ring) pl_ring_free(d->ring);
    if (d->alive) mem->free(mem->ctx, d->alive);
    if (d->before) mem->free(mem->ctx, d->before);
    memset(d, 0, sizeof *d);
    mem->free(mem->ctx, d);
}

void pl_dir_set_crl(pl_dir *d, const pl_crl *crl) { d->crl = crl; }

bool pl_dir_held(const pl_dir *d, const char *name, uint8_t *buf, size_t cap, size_t *len, bool *offline)
{
    char norm[PL_NAME_MAX + 1];
    uint8_t key[32];
    if (!name_key(name, norm, key)) return false;
    const slot *s = slot_of(d, key, NULL);
    if (!s || !s->bytes || s->len > cap) return false;
    memcpy(buf, s->bytes, s->len);
    if (len) *len = s->len;
    if (offline) *offline = s->offline;
    return true;
}

size_t pl_dir_replicas_of(const pl_dir *d, const char *name, uint8_t out[][32])
{
    char norm[PL_NAME_MAX + 1];
    uint8_t key[32];
    if (!name_key(name, norm, key)) return 0;
    return replicas(d, key, d->r, out);
}

pl_dir_stats pl_dir_get_stats(const pl_dir *d) { return d->stats; }

const char *pl_dir_strerror(pl_dir_err err)
{
    switch (err) {
    case PL_DIRECTORY_OK: return "ok";
    case PL_DIRECTORY_ERR_CONFIG: return "bad directory configuration";
    case PL_DIRECTORY_ERR_NOMEM: return "out of memory";
    }
    return "unknown directory error";
}
