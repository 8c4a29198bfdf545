/*
 * mailbox.c - a supernode's share of the message store (mailbox.h,
 * docs/messages.md).
 *
 * Tables:
 *   members  key -> address, for sending to other supernodes
 *   boxes    ring key of a recipient -> what this supernode holds for it as
 *            a replica: messages (sorted by id, each with its parts indexed
 *            by part number), tombstones (sorted by id), the recipient's
 *            certificate (to hand tombstones on), and the supernode that
 *            watches it for new messages
 *   clients  per attached client with an open mailbox: its grant and the
 *            merged view of what its replicas hold
 *   pending  requests in flight to replicas, named on the wire by index and
 *            generation so a late or forged reply cannot hit another one
 *   jobs     handovers under way: one box to one new replica, paced
 * Messages to ourselves (we are often one of the replicas we ask) go
 * through a small queue that is drained after each entry point, so every
 * request takes the same path whoever the replica is.
 */
#include "mailbox.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "keymap.h"
#include "ring.h"
#include "wire.h"

#define MAX_R PL_RING_MAX_REPLICAS
/* Messages live a month: a box is looked at every ten minutes, a tenth of
 * the boxes each minute. */
#define SWEEP_INTERVAL (60 * PL_SEC)
#define SWEEP_FRACTION 10
#define LOOP_CAP 64
#define MAX_VIEW 4096
/* A tombstone outlives every copy of its message: those expire at most
 * PL_MBOX_TTL after they were sent, which was before the delete, plus the
 * sender's allowed clock skew. */
#define TOMB_LIFE (PL_MBOX_TTL + PL_ENV_MAX_SKEW)

/* ---- pools (as in directory.c) ------------------------------------------------------ */

typedef struct pool {
    uint8_t *items;
    size_t size;
    uint32_t cap, high, max;
    uint32_t *free_list;
    uint32_t n_free;
    uint32_t used;
} pool;

static void *pool_at(const pool *p, uint32_t i) { return p->items + (size_t)i * p->size; }

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

/* Grows a plain array of `size`-byte items to hold at least `want`. */
static bool grow(const pl_mem *mem, void **arr, uint32_t *cap, uint32_t want, size_t size)
{
    if (want <= *cap) return true;
    uint32_t n = *cap ? *cap : 4;
    while (n < want) n *= 2;
    void *a = mem->calloc(mem->ctx, n, size);
    if (!a) return false;
    if (*arr) {
        memcpy(a, *arr, (size_t)*cap * size);
        mem->free(mem->ctx, *arr);
    }
    *arr = a;
    *cap = n;
    return true;
}

/* ---- tables ------------------------------------------------------------------------------- */

typedef struct member {
    bool used;
    uint8_t pk[32];
    pl_addr addr;
} member;

typedef struct part {
    uint8_t *bytes; /* NULL: not held */
    uint16_t len;
} part;

typedef struct message {
    uint8_t id[PL_ENV_ID_SIZE];
    pl_time stored_at, expires_at;
    uint32_t bytes;
    uint16_t n_parts;
    uint32_t cap; /* parts[] slots: part numbers 0..cap-1 */
    part *parts;
} message;

typedef struct tomb {
    uint8_t id[PL_ENV_ID_SIZE];
    uint8_t sig[64];
    pl_time expires_at;
    bool foreign; /* signed under a certificate other than the box's: not handed on */
} tomb;

typedef struct box {
    bool used;
    bool leaving; /* no longer a replica: freed once its handovers are sent */
    uint32_t jobs;
    uint8_t key[32];
    char name[PL_NAME_MAX + 1];
    message *msgs;
    uint32_t n_msgs, cap_msgs;
    tomb *tombs;
    uint32_t n_tombs, cap_tombs;
    uint8_t cert[PL_CERT_MAX_SIZE];
    uint16_t cert_len;
    uint64_t bytes;
    uint64_t chunk_bytes; /* of parts 1..n: what the byte quota limits */
    uint32_t parts;
    uint8_t watcher[32];
    pl_time watch_until;
} box;

/* One message id in a client's merged view. */
typedef struct vent {
    uint8_t id[PL_ENV_ID_SIZE];
    uint8_t holders; /* bit per replica index */
    uint8_t tombs;   /* replicas holding a tombstone */
    bool deleted;    /* the client deleted it through us */
    uint16_t parts;
    uint32_t bytes;
    uint64_t stored_at;
    uint8_t sig[64]; /* a tombstone's, when tombs */
} vent;

typedef struct client {
    bool used;
    bool ready; /* every replica has been listed */
    uint8_t pk[32];
    pl_addr addr;
    pl_cert cert;
    uint8_t cert_bytes[PL_CERT_MAX_SIZE];
    uint16_t cert_len;
    uint8_t grant[PL_MBOX_GRANT_MAX_SIZE];
    uint16_t grant_len;
    uint64_t grant_expires; /* Unix seconds */
    uint8_t key[32];
    uint8_t n_rep;
    uint8_t reps[MAX_R][32];
    uint8_t listing; /* replicas still being listed */
    uint32_t round;  /* grows with every OPEN, so stale pages are ignored */
    uint32_t open_req;
    vent *view;
    uint32_t n_view, cap_view;
} client;

enum { PEND_FREE = 0, PEND_DEPOSIT, PEND_LIST, PEND_GET, PEND_DELETE };

typedef struct pend {
    uint8_t kind;
    uint16_t gen;
    uint8_t client_pk[32];
    pl_addr client_addr;
    uint32_t client_req;
    pl_time deadline;
    uint8_t n_rep;
    uint8_t reps[MAX_R][32];
    uint16_t acked;  /* bit per replica */
    uint8_t stored;  /* replicas that took it */
    uint8_t worst;   /* the most telling refusal */
    bool all_deleted;
    /* LIST */
    uint32_t round;
    uint8_t rep;     /* replica index being listed */
    /* GET */
    uint8_t id[PL_ENV_ID_SIZE];
    uint16_t part;
    uint8_t at;
    uint8_t saw_deleted, saw_not_found;
} pend;

typedef struct deadline_ent {
    pl_time at;
    uint32_t idx;
    uint16_t gen;
} deadline_ent;

typedef struct fifo {
    deadline_ent *e;
    uint32_t cap, head, count;
} fifo;

typedef struct job {
    uint32_t box;
    uint8_t to[32];
    uint8_t last_id[PL_ENV_ID_SIZE]; /* messages: the one being sent */
    uint32_t next_part;
    bool started;
    bool msgs_done;
    uint32_t tomb_at;  /* tombstones: index of the next */
} job;

typedef struct loop_msg {
    uint16_t len;
    uint8_t bytes[PL_MBOX_MSG_MAX];
} loop_msg;

struct pl_mbox {
    uint8_t self[32];
    pl_addr self_addr;
    uint8_t ca_pk[32];
    const pl_crl *crl;
    const pl_rng *rng;
    const pl_mem *mem;
    pl_mbox_io io;
    uint8_t r;
    uint32_t max_messages, max_bytes, max_tombs;
    uint64_t max_total;

    pool members, boxes, clients, pending;
    pl_keymap member_by_pk, box_by_key, client_by_pk, client_by_key;

    pl_ring *ring, *before;
    bool change_pending;
    pl_time handover_at;

    job *jobs;
    uint32_t n_jobs, cap_jobs;
    pl_time next_job_at;

    uint16_t *pend_gen;
    fifo short_deadlines, long_deadlines;
    pl_time next_sweep;
    uint32_t sweep_box;

    loop_msg *loop;
    uint32_t loop_head, loop_count;
    bool draining;

    pl_mbox_stats stats;
};

/* ---- helpers ---------------------------------------------------------------------------------- */

static bool is_self(const pl_mbox *m, const uint8_t pk[32]) { return memcmp(m->self, pk, 32) == 0; }

static const member *member_of(const pl_mbox *m, const uint8_t pk[32])
{
    uint32_t i;
    return pl_keymap_get(&m->member_by_pk, pk, &i) ? pool_at(&m->members, i) : NULL;
}

static bool name_key(const char *name, char norm[PL_NAME_MAX + 1], uint8_t key[32])
{
    if (pl_name_normalize(name, norm) != PL_NAME_OK) return false;
    pl_ring_key_for_name(norm, key);
    return true;
}

static pl_time min_time(pl_time a, pl_time b) { return a < b ? a : b; }

static void loop_push(pl_mbox *m, const uint8_t *bytes, size_t len)
{
    if (m->loop_count == LOOP_CAP || len > PL_MBOX_MSG_MAX) return; /* as a lost datagram would be */
    loop_msg *l = &m->loop[(m->loop_head + m->loop_count) % LOOP_CAP];
    memcpy(l->bytes, bytes, len);
    l->len = (uint16_t)len;
    m->loop_count++;
}

/* To a client, or to another supernode at a known address; to ourselves
 * through the loop queue. */
static void send_to(pl_mbox *m, const uint8_t pk[32], const pl_addr *addr, const pl_mbox_msg *msg, pl_time now)
{
    uint8_t buf[PL_MBOX_MSG_MAX];
    size_t len = pl_mbox_encode(buf, sizeof buf, msg);
    if (!len) return;
    if (is_self(m, pk)) loop_push(m, buf, len);
    else if (addr) m->io.send(m->io.ctx, pk, addr, buf, len, now);
}

static void send_peer(pl_mbox *m, const uint8_t pk[32], const pl_mbox_msg *msg, pl_time now)
{
    if (is_self(m, pk)) {
        send_to(m, pk, NULL, msg, now);
        return;
    }
    const member *mb = member_of(m, pk);
    if (mb) send_to(m, pk, &mb->addr, msg, now);
}

/* ---- deadlines and pending requests ---------------------------------------------------------- */

static void fifo_push(pl_mbox *m, fifo *f, pl_time at, uint32_t idx, uint16_t gen)
{
    if (f->count == f->cap) {
        uint32_t cap = f->cap ? 2 * f->cap : 64;
        deadline_ent *e = m->mem->calloc(m->mem->ctx, cap, sizeof *e);
        if (!e) return; /* the request then never times out early; its slot is reused later */
        for (uint32_t k = 0; k < f->count; k++) e[k] = f->e[(f->head + k) % f->cap];
        if (f->e) m->mem->free(m->mem->ctx, f->e);
        f->e = e;
        f->cap = cap;
        f->head = 0;
    }
    f->e[(f->head + f->count) % f->cap] = (deadline_ent){at, idx, gen};
    f->count++;
}

static bool fifo_live(const pl_mbox *m, const deadline_ent *e)
{
    if (e->idx >= m->pending.high) return false;
    const pend *p = pool_at(&m->pending, e->idx);
    return p->kind != PEND_FREE && p->gen == e->gen && p->deadline == e->at;
}

static void fifo_clean(pl_mbox *m, fifo *f)
{
    while (f->count && !fifo_live(m, &f->e[f->head])) {
        f->head = (f->head + 1) % f->cap;
        f->count--;
    }
}

static pend *pend_new(pl_mbox *m, uint8_t kind, uint32_t *idx)
{
    uint32_t i = pool_alloc(&m->pending, m->mem);
    if (i == UINT32_MAX) return NULL;
    pend *p = pool_at(&m->pending, i);
    p->kind = kind;
    p->gen = ++m->pend_gen[i];
    *idx = i;
    return p;
}

static uint32_t req_id(uint32_t idx, const pend *p) { return (uint32_t)p->gen << 16 | idx; }

static pend *pend_from_req(pl_mbox *m, uint32_t req, uint8_t kind, uint32_t *idx)
{
    uint32_t i = req & 0xffff;
    if (i >= m->pending.high) return NULL;
    pend *p = pool_at(&m->pending, i);
    if (p->kind != kind || p->gen != (uint16_t)(req >> 16)) return NULL;
    *idx = i;
    return p;
}

static void pend_arm(pl_mbox *m, uint32_t idx, pend *p, pl_time deadline, bool long_timeout)
{
    p->deadline = deadline;
    fifo_push(m, long_timeout ? &m->long_deadlines : &m->short_deadlines, deadline, idx, p->gen);
}

static int rep_index(const pend *p, const uint8_t pk[32])
{
    for (uint8_t i = 0; i < p->n_rep; i++)
        if (memcmp(p->reps[i], pk, 32) == 0) return i;
    return -1;
}

/* ---- boxes (as a replica) ---------------------------------------------------------------------- */

static box *box_of(const pl_mbox *m, const uint8_t key[32], uint32_t *idx)
{
    uint32_t i;
    if (!pl_keymap_get(&m->box_by_key, key, &i)) return NULL;
    if (idx) *idx = i;
    return pool_at(&m->boxes, i);
}

static box *box_new(pl_mbox *m, const uint8_t key[32], const char *name, uint32_t *idx)
{
    uint32_t i = pool_alloc(&m->boxes, m->mem);
    if (i == UINT32_MAX) return NULL;
    if (!pl_keymap_put(&m->box_by_key, key, i)) {
        pool_release(&m->boxes, i);
        return NULL;
    }
    box *b = pool_at(&m->boxes, i);
    b->used = true;
    memcpy(b->key, key, 32);
    snprintf(b->name, sizeof b->name, "%s", name);
    m->stats.boxes++;
    if (idx) *idx = i;
    return b;
}

/* Index of the first message with id >= `id`; *found if equal. */
static uint32_t msg_search(const box *b, const uint8_t id[16], bool *found)
{
    uint32_t lo = 0, hi = b->n_msgs;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (memcmp(b->msgs[mid].id, id, 16) < 0) lo = mid + 1;
        else hi = mid;
    }
    *found = lo < b->n_msgs && memcmp(b->msgs[lo].id, id, 16) == 0;
    return lo;
}

static uint32_t tomb_search(const box *b, const uint8_t id[16], bool *found)
{
    uint32_t lo = 0, hi = b->n_tombs;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (memcmp(b->tombs[mid].id, id, 16) < 0) lo = mid + 1;
        else hi = mid;
    }
    *found = lo < b->n_tombs && memcmp(b->tombs[lo].id, id, 16) == 0;
    return lo;
}

static void msg_remove(pl_mbox *m, box *b, uint32_t i)
{
    message *x = &b->msgs[i];
    for (uint32_t p = 0; p < x->cap; p++) {
        if (!x->parts[p].bytes) continue;
        if (p > 0) b->chunk_bytes -= x->parts[p].len;
        sodium_memzero(x->parts[p].bytes, x->parts[p].len);
        m->mem->free(m->mem->ctx, x->parts[p].bytes);
    }
    if (x->parts) m->mem->free(m->mem->ctx, x->parts);
    b->bytes -= x->bytes;
    b->parts -= x->n_parts;
    m->stats.bytes -= x->bytes;
    m->stats.parts -= x->n_parts;
    m->stats.messages--;
    memmove(&b->msgs[i], &b->msgs[i + 1], (b->n_msgs - i - 1) * sizeof *b->msgs);
    b->n_msgs--;
    memset(&b->msgs[b->n_msgs], 0, sizeof *b->msgs);
}

static void tomb_remove(pl_mbox *m, box *b, uint32_t i)
{
    memmove(&b->tombs[i], &b->tombs[i + 1], (b->n_tombs - i - 1) * sizeof *b->tombs);
    b->n_tombs--;
    m->stats.tombstones--;
}

static void box_free(pl_mbox *m, box *b, uint32_t idx)
{
    while (b->n_msgs) msg_remove(m, b, b->n_msgs - 1);
    m->stats.tombstones -= b->n_tombs;
    if (b->msgs) m->mem->free(m->mem->ctx, b->msgs);
    if (b->tombs) m->mem->free(m->mem->ctx, b->tombs);
    pl_keymap_remove(&m->box_by_key, b->key);
    pool_release(&m->boxes, idx);
    m->stats.boxes--;
}

static void box_maybe_free(pl_mbox *m, box *b, uint32_t idx, pl_time now)
{
    if (b->jobs) return;
    if (b->leaving || (!b->n_msgs && !b->n_tombs && now >= b->watch_until)) box_free(m, b, idx);
}

/* Adds a tombstone; the oldest goes when the box holds too many. */
static void tomb_add(pl_mbox *m, box *b, const uint8_t id[16], const uint8_t sig[64], pl_time now)
{
    bool found;
    uint32_t at = tomb_search(b, id, &found);
    if (found) return;
    if (b->n_tombs >= m->max_tombs) {
        uint32_t oldest = 0;
        for (uint32_t i = 1; i < b->n_tombs; i++)
            if (b->tombs[i].expires_at < b->tombs[oldest].expires_at) oldest = i;
        tomb_remove(m, b, oldest);
        at = tomb_search(b, id, &found);
    }
    if (!grow(m->mem, (void **)&b->tombs, &b->cap_tombs, b->n_tombs + 1, sizeof *b->tombs)) return;
    memmove(&b->tombs[at + 1], &b->tombs[at], (b->n_tombs - at) * sizeof *b->tombs);
    tomb *t = &b->tombs[at];
    memcpy(t->id, id, 16);
    memcpy(t->sig, sig, 64);
    t->expires_at = now + TOMB_LIFE;
    t->foreign = false;
    b->n_tombs++;
    m->stats.tombstones++;
}

/* The box keeps the newest certificate its tombstones were checked under,
 * to hand them on; tombstones under an older one stay but are not handed
 * on (their messages were sealed to a key the user no longer has). */
static void box_set_cert(box *b, const uint8_t *cert, size_t len, const pl_cert *c)
{
    if (b->cert_len == len && memcmp(b->cert, cert, len) == 0) return;
    if (b->cert_len) {
        pl_cert old;
        if (pl_cert_decode(&old, b->cert, b->cert_len) == PL_CERT_OK && memcmp(old.sign_pk, c->sign_pk, 32) != 0) {
            if (old.not_before > c->not_before) return;
            for (uint32_t i = 0; i < b->n_tombs; i++) b->tombs[i].foreign = true;
        }
    }
    memcpy(b->cert, cert, len);
    b->cert_len = (uint16_t)len;
}

static void store_news(pl_mbox *m, box *b, const uint8_t id[16], pl_time now)
{
    if (now >= b->watch_until) return;
    pl_mbox_msg news = {.type = PL_MBOX_NEWS};
    memcpy(news.name, b->name, sizeof news.name);
    memcpy(news.id, id, 16);
    send_peer(m, b->watcher, &news, now);
    m->stats.news_sent++;
}

/* Offers an envelope to the local store; returns the ACK status. */
static uint8_t store_env(pl_mbox *m, const uint8_t *env, size_t len, pl_time now)
{
    pl_env_header h;
    uint8_t key[32];
    char norm[PL_NAME_MAX + 1];
    if (pl_env_peek(&h, env, len) != PL_ENV_OK || !name_key(h.recipient, norm, key)) {
        m->stats.refused++;
        return PL_MBOX_REFUSED;
    }
    if (!pl_ring_is_replica(m->ring, key, m->self, m->r)) {
        m->stats.not_replica++;
        return PL_MBOX_NOT_REPLICA;
    }
    /* Kept PL_MBOX_TTL after it was sent (or now, if the sender's clock
     * runs ahead): a handed-over message does not gain a new month. */
    pl_time expires = min_time(h.sent_at, now) + PL_MBOX_TTL;
    if (expires <= now || h.sent_at > now + PL_ENV_MAX_SKEW) {
        m->stats.refused++;
        return PL_MBOX_REFUSED;
    }
    uint32_t bidx;
    box *b = box_of(m, key, &bidx);
    if (!b && !(b = box_new(m, key, norm, &bidx))) {
        m->stats.busy++;
        return PL_MBOX_BUSY;
    }
    bool found;
    tomb_search(b, h.id, &found);
    if (found) {
        m->stats.after_delete++;
        return PL_MBOX_DELETED;
    }
    uint32_t at = msg_search(b, h.id, &found);
    if (found && at < b->n_msgs && h.part < b->msgs[at].cap && b->msgs[at].parts[h.part].bytes) {
        m->stats.duplicates++;
        return PL_MBOX_OK;
    }
    /* Heads (a chat line, a receipt, the first envelope of a voicemail)
     * count against the number of messages, each at most PL_ENV_MAX_SIZE;
     * chunks (the bulk of voicemail) against the bytes. A box full of
     * voicemail its owner keeps still takes chat. */
    if ((!found && b->n_msgs >= m->max_messages) || (h.part > 0 && b->chunk_bytes + len > m->max_bytes)) {
        m->stats.quota++;
        if (!b->n_msgs && !b->n_tombs) box_maybe_free(m, b, bidx, now);
        return PL_MBOX_QUOTA;
    }
    if (m->stats.bytes + len > m->max_total) {
        m->stats.busy++;
        if (!b->n_msgs && !b->n_tombs) box_maybe_free(m, b, bidx, now);
        return PL_MBOX_BUSY;
    }
    if (!found) {
        if (!grow(m->mem, (void **)&b->msgs, &b->cap_msgs, b->n_msgs + 1, sizeof *b->msgs)) return PL_MBOX_BUSY;
        memmove(&b->msgs[at + 1], &b->msgs[at], (b->n_msgs - at) * sizeof *b->msgs);
        memset(&b->msgs[at], 0, sizeof b->msgs[at]);
        memcpy(b->msgs[at].id, h.id, 16);
        b->msgs[at].stored_at = now;
        b->msgs[at].expires_at = expires;
        b->n_msgs++;
        m->stats.messages++;
    }
    message *x = &b->msgs[at];
    uint8_t *copy = NULL;
    if (!grow(m->mem, (void **)&x->parts, &x->cap, (uint32_t)h.part + 1, sizeof *x->parts) ||
        !(copy = m->mem->calloc(m->mem->ctx, 1, len))) {
        if (!x->n_parts) {
            if (x->parts) m->mem->free(m->mem->ctx, x->parts);
            memmove(&b->msgs[at], &b->msgs[at + 1], (b->n_msgs - at - 1) * sizeof *b->msgs);
            b->n_msgs--;
            m->stats.messages--;
        }
        m->stats.busy++;
        return PL_MBOX_BUSY;
    }
    memcpy(copy, env, len);
    x->parts[h.part].bytes = copy;
    x->parts[h.part].len = (uint16_t)len;
    x->n_parts++;
    x->bytes += (uint32_t)len;
    b->bytes += len;
    if (h.part > 0) b->chunk_bytes += len;
    b->parts++;
    m->stats.bytes += len;
    m->stats.parts++;
    m->stats.stored++;
    if (!found) store_news(m, b, h.id, now);
    return PL_MBOX_OK;
}

/* ---- replica: serving a grant holder -------------------------------------------------------------- */

/* Checks the grant of a LIST or GET; fills the box key and the certificate. */
static bool grant_check(pl_mbox *m, const uint8_t asking[32], const pl_mbox_msg *in, pl_cert *cert, uint8_t key[32],
                        pl_time now)
{
    char norm[PL_NAME_MAX + 1];
    if (!in->has_grant || !pl_mbox_grant_verify(&in->grant, m->ca_pk, m->crl, now / PL_SEC, asking, cert) ||
        !name_key(cert->name, norm, key)) {
        m->stats.grants_refused++;
        return false;
    }
    return true;
}

static void on_list(pl_mbox *m, const uint8_t pk[32], const pl_addr *from, const pl_mbox_msg *in, pl_time now)
{
    pl_mbox_msg out = {.type = PL_MBOX_LIST_REPLY, .req = in->req};
    pl_cert cert;
    uint8_t key[32];
    if (!grant_check(m, pk, in, &cert, key, now)) {
        out.status = PL_MBOX_REFUSED;
    } else if (!pl_ring_is_replica(m->ring, key, m->self, m->r)) {
        out.status = PL_MBOX_NOT_REPLICA;
    } else {
        m->stats.lists_served++;
        uint32_t bidx;
        box *b = box_of(m, key, &bidx);
        if (!b && (in->flags & PL_MBOX_F_WATCH)) b = box_new(m, key, cert.name, &bidx);
        if (b && (in->flags & PL_MBOX_F_WATCH)) {
            memcpy(b->watcher, pk, 32);
            b->watch_until = in->grant.expires_at * PL_SEC;
        }
        /* Messages and tombstones merged by id, after the cursor, until the
         * page is full. */
        size_t used = 0;
        uint32_t i = 0, j = 0;
        bool found;
        if (b) {
            i = msg_search(b, in->after, &found);
            if (found) i++;
            j = tomb_search(b, in->after, &found);
            if (found) j++;
        }
        while (b && (i < b->n_msgs || j < b->n_tombs)) {
            bool take_msg = j >= b->n_tombs || (i < b->n_msgs && memcmp(b->msgs[i].id, b->tombs[j].id, 16) < 0);
            pl_mbox_entry e;
            memset(&e, 0, sizeof e);
            if (take_msg) {
                memcpy(e.id, b->msgs[i].id, 16);
                e.parts = b->msgs[i].n_parts;
                e.bytes = b->msgs[i].bytes;
                e.stored_at = b->msgs[i].stored_at / PL_SEC;
            } else {
                memcpy(e.id, b->tombs[j].id, 16);
                e.flags = PL_MBOX_E_TOMBSTONE;
                memcpy(e.sig, b->tombs[j].sig, 64);
            }
            /* A message and a tombstone with one id (never both, but be
             * sure): the tombstone alone. */
            if (take_msg && j < b->n_tombs && memcmp(b->msgs[i].id, b->tombs[j].id, 16) == 0) {
                i++;
                continue;
            }
            if (out.n_entries == PL_MBOX_MAX_ENTRIES || used + pl_mbox_entry_size(&e) > PL_MBOX_PAGE_BYTES) {
                out.flags = PL_MBOX_F_MORE;
                break;
            }
            out.entries[out.n_entries++] = e;
            used += pl_mbox_entry_size(&e);
            if (take_msg) i++;
            else j++;
        }
        out.status = PL_MBOX_OK;
    }
    if (out.status == PL_MBOX_REFUSED) out.n_entries = 0;
    send_to(m, pk, from, &out, now);
}

static void on_get(pl_mbox *m, const uint8_t pk[32], const pl_addr *from, const pl_mbox_msg *in, pl_time now)
{
    pl_mbox_msg out = {.type = PL_MBOX_GET_REPLY, .req = in->req, .status = PL_MBOX_NOT_FOUND};
    pl_cert cert;
    uint8_t key[32];
    if (!grant_check(m, pk, in, &cert, key, now)) {
        out.status = PL_MBOX_REFUSED;
    } else if (!pl_ring_is_replica(m->ring, key, m->self, m->r)) {
        out.status = PL_MBOX_NOT_REPLICA;
    } else {
        m->stats.gets_served++;
        box *b = box_of(m, key, NULL);
        bool found;
        if (b) {
            uint32_t at = msg_search(b, in->id, &found);
            if (found && in->part < b->msgs[at].cap && b->msgs[at].parts[in->part].bytes) {
                out.status = PL_MBOX_OK;
                out.env = b->msgs[at].parts[in->part].bytes;
                out.env_len = b->msgs[at].parts[in->part].len;
            } else {
                tomb_search(b, in->id, &found);
                if (found) out.status = PL_MBOX_DELETED;
            }
        }
    }
    send_to(m, pk, from, &out, now);
}

/* Applies the signed deletes of a DELETE; returns how many were valid. */
static uint8_t apply_deletes(pl_mbox *m, const pl_mbox_msg *in, pl_time now, uint8_t *status)
{
    pl_cert cert;
    uint8_t key[32];
    char norm[PL_NAME_MAX + 1];
    *status = PL_MBOX_REFUSED;
    if (pl_cert_decode(&cert, in->cert, in->cert_len) != PL_CERT_OK ||
        pl_cert_verify(&cert, m->ca_pk, now / PL_SEC, m->crl) != PL_CERT_OK || !name_key(cert.name, norm, key)) {
        m->stats.deletes_refused += in->n_deletes;
        return 0;
    }
    if (!pl_ring_is_replica(m->ring, key, m->self, m->r)) {
        *status = PL_MBOX_NOT_REPLICA;
        return 0;
    }
    uint32_t bidx;
    box *b = box_of(m, key, &bidx);
    if (!b && !(b = box_new(m, key, norm, &bidx))) {
        *status = PL_MBOX_BUSY;
        return 0;
    }
    uint8_t ok = 0;
    for (uint8_t k = 0; k < in->n_deletes; k++) {
        const pl_mbox_delete *d = &in->deletes[k];
        if (!pl_mbox_delete_verify(d->sig, &cert, d->id)) {
            m->stats.deletes_refused++;
            continue;
        }
        bool found;
        uint32_t at = msg_search(b, d->id, &found);
        if (found) msg_remove(m, b, at);
        tomb_search(b, d->id, &found);
        if (!found) m->stats.deletes_applied++;
        tomb_add(m, b, d->id, d->sig, now);
        ok++;
    }
    if (ok) box_set_cert(b, in->cert, in->cert_len, &cert);
    *status = ok == in->n_deletes ? PL_MBOX_OK : PL_MBOX_REFUSED;
    if (!b->n_msgs && !b->n_tombs) box_maybe_free(m, b, bidx, now);
    return ok;
}

/* ---- the home: deposits --------------------------------------------------------------------------- */

/* Ranks refusals: the one the client can act on wins. */
static uint8_t worse(uint8_t a, uint8_t b)
{
    static const uint8_t rank[PL_MBOX_STATUS_MAX + 1] = {
        [PL_MBOX_OK] = 0, [PL_MBOX_UNREACHABLE] = 1, [PL_MBOX_NOT_FOUND] = 2, [PL_MBOX_NOT_REPLICA] = 3,
        [PL_MBOX_BUSY] = 4, [PL_MBOX_NOT_OPEN] = 5, [PL_MBOX_REFUSED] = 6, [PL_MBOX_DELETED] = 7, [PL_MBOX_QUOTA] = 8};
    if (a > PL_MBOX_STATUS_MAX) return b;
    if (b > PL_MBOX_STATUS_MAX) return a;
    return rank[b] > rank[a] ? b : a;
}

static void request_done(pl_mbox *m, uint32_t idx, pend *p, pl_time now)
{
    pl_mbox_msg ack = {.type = PL_MBOX_ACK, .req = p->client_req, .count = p->stored, .total = p->n_rep};
    if (p->stored) ack.status = p->all_deleted ? PL_MBOX_DELETED : PL_MBOX_OK;
    else ack.status = p->worst ? p->worst : PL_MBOX_UNREACHABLE;
    send_to(m, p->client_pk, &p->client_addr, &ack, now);
    if (p->kind == PEND_DEPOSIT) m->stats.deposit_acks++;
    pool_release(&m->pending, idx);
}

static void on_deposit(pl_mbox *m, const uint8_t pk[32], const pl_addr *from, const pl_mbox_msg *in, pl_time now)
{
    m->stats.deposits++;
    pl_env_header h;
    uint8_t key[32];
    char norm[PL_NAME_MAX + 1];
    pl_mbox_msg ack = {.type = PL_MBOX_ACK, .req = in->req};
    uint32_t idx;
    pend *p;
    if (pl_env_peek(&h, in->env, in->env_len) != PL_ENV_OK || !name_key(h.recipient, norm, key)) {
        ack.status = PL_MBOX_REFUSED;
        send_to(m, pk, from, &ack, now);
        return;
    }
    if (!(p = pend_new(m, PEND_DEPOSIT, &idx))) {
        ack.status = PL_MBOX_BUSY;
        send_to(m, pk, from, &ack, now);
        return;
    }
    memcpy(p->client_pk, pk, 32);
    p->client_addr = *from;
    p->client_req = in->req;
    p->all_deleted = true;
    p->n_rep = (uint8_t)pl_ring_replicas(m->ring, key, m->r, p->reps);
    pl_mbox_msg store = {.type = PL_MBOX_STORE, .req = req_id(idx, p), .env = in->env, .env_len = in->env_len};
    for (uint8_t i = 0; i < p->n_rep; i++) send_peer(m, p->reps[i], &store, now);
    pend_arm(m, idx, p, now + PL_MBOX_REQUEST_TIMEOUT, true);
}

static void on_ack(pl_mbox *m, const uint8_t pk[32], const pl_mbox_msg *in, pl_time now)
{
    uint32_t idx;
    pend *p = pend_from_req(m, in->req, PEND_DEPOSIT, &idx);
    if (!p) p = pend_from_req(m, in->req, PEND_DELETE, &idx);
    if (!p) return;
    int i = rep_index(p, pk);
    if (i < 0 || (p->acked & (1u << i))) return;
    p->acked |= (uint16_t)(1u << i);
    if (in->status == PL_MBOX_OK || in->status == PL_MBOX_DELETED) {
        p->stored++;
        if (in->status != PL_MBOX_DELETED) p->all_deleted = false;
    } else {
        p->worst = worse(p->worst, in->status);
    }
    if (p->acked == (1u << p->n_rep) - 1) request_done(m, idx, p, now);
}

/* ---- the home: open mailboxes --------------------------------------------------------------------- */

static client *client_of(const pl_mbox *m, const uint8_t pk[32], uint32_t *idx)
{
    uint32_t i;
    if (!pl_keymap_get(&m->client_by_pk, pk, &i)) return NULL;
    if (idx) *idx = i;
    return pool_at(&m->clients, i);
}

static void client_free(pl_mbox *m, uint32_t idx)
{
    client *c = pool_at(&m->clients, idx);
    uint32_t other;
    if (pl_keymap_get(&m->client_by_key, c->key, &other) && other == idx) pl_keymap_remove(&m->client_by_key, c->key);
    pl_keymap_remove(&m->client_by_pk, c->pk);
    if (c->view) m->mem->free(m->mem->ctx, c->view);
    pool_release(&m->clients, idx);
}

static uint32_t view_search(const client *c, const uint8_t id[16], bool *found)
{
    uint32_t lo = 0, hi = c->n_view;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (memcmp(c->view[mid].id, id, 16) < 0) lo = mid + 1;
        else hi = mid;
    }
    *found = lo < c->n_view && memcmp(c->view[lo].id, id, 16) == 0;
    return lo;
}

static vent *view_entry(pl_mbox *m, client *c, const uint8_t id[16])
{
    bool found;
    uint32_t at = view_search(c, id, &found);
    if (found) return &c->view[at];
    if (c->n_view >= MAX_VIEW || !grow(m->mem, (void **)&c->view, &c->cap_view, c->n_view + 1, sizeof *c->view))
        return NULL;
    memmove(&c->view[at + 1], &c->view[at], (c->n_view - at) * sizeof *c->view);
    memset(&c->view[at], 0, sizeof c->view[at]);
    memcpy(c->view[at].id, id, 16);
    c->n_view++;
    return &c->view[at];
}

static bool vent_live(const vent *v) { return v->holders && !v->tombs && !v->deleted; }

static void send_notice(pl_mbox *m, client *c, uint32_t req, uint8_t status, pl_time now)
{
    pl_mbox_msg n = {.type = PL_MBOX_NOTICE, .req = req, .status = status};
    uint64_t bytes = 0;
    uint32_t count = 0;
    for (uint32_t i = 0; i < c->n_view; i++) {
        if (!vent_live(&c->view[i])) continue;
        count++;
        bytes += c->view[i].bytes;
    }
    n.messages = count > UINT16_MAX ? UINT16_MAX : (uint16_t)count;
    n.bytes = bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)bytes;
    send_to(m, c->pk, &c->addr, &n, now);
    m->stats.notices_sent++;
}

/* Replicas that still hold a message another replica has a tombstone for
 * get the tombstone: the delete reaches a replica that was away. */
static void read_repair(pl_mbox *m, client *c, pl_time now)
{
    for (uint8_t r = 0; r < c->n_rep; r++) {
        pl_mbox_msg d = {.type = PL_MBOX_DELETE, .flags = PL_MBOX_F_HANDOVER, .cert = c->cert_bytes,
                         .cert_len = c->cert_len};
        for (uint32_t i = 0; i <= c->n_view; i++) {
            if (i < c->n_view) {
                const vent *v = &c->view[i];
                if (!v->tombs || !(v->holders & (1u << r))) continue;
                memcpy(d.deletes[d.n_deletes].id, v->id, 16);
                memcpy(d.deletes[d.n_deletes].sig, v->sig, 64);
                d.n_deletes++;
            }
            if (d.n_deletes && (d.n_deletes == PL_MBOX_MAX_DELETES || i == c->n_view)) {
                send_peer(m, c->reps[r], &d, now);
                m->stats.repairs_sent += d.n_deletes;
                d.n_deletes = 0;
            }
        }
    }
}

static void list_replica(pl_mbox *m, client *c, uint8_t r, const uint8_t after[16], pl_time now)
{
    uint32_t idx;
    pend *p = pend_new(m, PEND_LIST, &idx);
    if (!p) {
        c->listing &= (uint8_t)~(1u << r);
        return;
    }
    memcpy(p->client_pk, c->pk, 32);
    p->round = c->round;
    p->rep = r;
    p->n_rep = 1;
    memcpy(p->reps[0], c->reps[r], 32);
    pl_mbox_msg l = {.type = PL_MBOX_LIST, .req = req_id(idx, p), .flags = PL_MBOX_F_WATCH, .has_grant = true};
    memcpy(l.after, after, 16);
    pl_mbox_grant_decode(&l.grant, c->grant, c->grant_len);
    send_peer(m, c->reps[r], &l, now);
    pend_arm(m, idx, p, now + PL_MBOX_REPLICA_TIMEOUT, false);
}

static void listing_done(pl_mbox *m, client *c, uint8_t r, pl_time now)
{
    c->listing &= (uint8_t)~(1u << r);
    if (c->listing || c->ready) return;
    c->ready = true;
    read_repair(m, c, now);
    /* The first notice answers the OPEN; later ones (a new listing after a
     * membership change) come unasked. */
    send_notice(m, c, c->open_req, PL_MBOX_OK, now);
    c->open_req = 0;
}

static void start_listing(pl_mbox *m, client *c, pl_time now)
{
    c->round++;
    c->ready = false;
    c->n_view = 0;
    c->n_rep = (uint8_t)pl_ring_replicas(m->ring, c->key, m->r, c->reps);
    c->listing = (uint8_t)((1u << c->n_rep) - 1);
    uint8_t zero[16] = {0};
    for (uint8_t r = 0; r < c->n_rep; r++) list_replica(m, c, r, zero, now);
    if (!c->n_rep) listing_done(m, c, 0, now);
}

static void on_open(pl_mbox *m, const uint8_t pk[32], const pl_cert *session, const pl_addr *from,
                    const pl_mbox_msg *in, pl_time now)
{
    m->stats.opens++;
    pl_cert cert;
    char norm[PL_NAME_MAX + 1];
    uint8_t key[32];
    /* The grant must be for us, verify, and be the session's own user. */
    if (!session || !pl_mbox_grant_verify(&in->grant, m->ca_pk, m->crl, now / PL_SEC, m->self, &cert) ||
        memcmp(cert.sign_pk, session->sign_pk, 32) != 0 || memcmp(cert.sign_pk, pk, 32) != 0 ||
        strcmp(cert.name, session->name) != 0 || !name_key(cert.name, norm, key) ||
        in->grant.cert_len > PL_CERT_MAX_SIZE) {
        m->stats.opens_refused++;
        pl_mbox_msg n = {.type = PL_MBOX_NOTICE, .req = in->req, .status = PL_MBOX_REFUSED};
        send_to(m, pk, from, &n, now);
        return;
    }
    uint32_t idx;
    client *c = client_of(m, pk, &idx);
    if (!c) {
        idx = pool_alloc(&m->clients, m->mem);
        if (idx == UINT32_MAX || !pl_keymap_put(&m->client_by_pk, pk, idx)) {
            if (idx != UINT32_MAX) pool_release(&m->clients, idx);
            pl_mbox_msg n = {.type = PL_MBOX_NOTICE, .req = in->req, .status = PL_MBOX_BUSY};
            send_to(m, pk, from, &n, now);
            return;
        }
        c = pool_at(&m->clients, idx);
        c->used = true;
        memcpy(c->pk, pk, 32);
    }
    c->addr = *from;
    c->cert = cert;
    memcpy(c->cert_bytes, in->grant.cert, in->grant.cert_len);
    c->cert_len = (uint16_t)in->grant.cert_len;
    c->grant_len = (uint16_t)pl_mbox_grant_encode(c->grant, sizeof c->grant, &in->grant);
    c->grant_expires = in->grant.expires_at;
    memcpy(c->key, key, 32);
    pl_keymap_put(&m->client_by_key, key, idx);
    c->open_req = in->req;
    start_listing(m, c, now);
}

static void on_list_reply(pl_mbox *m, const uint8_t pk[32], const pl_mbox_msg *in, pl_time now)
{
    uint32_t idx;
    pend *p = pend_from_req(m, in->req, PEND_LIST, &idx);
    if (!p || memcmp(p->reps[0], pk, 32) != 0) return;
    uint8_t r = p->rep;
    uint32_t round = p->round;
    uint8_t cpk[32];
    memcpy(cpk, p->client_pk, 32);
    pool_release(&m->pending, idx);
    client *c = client_of(m, cpk, NULL);
    if (!c || c->round != round) return;
    if (in->status != PL_MBOX_OK) {
        listing_done(m, c, r, now);
        return;
    }
    for (uint8_t k = 0; k < in->n_entries; k++) {
        const pl_mbox_entry *e = &in->entries[k];
        vent *v = view_entry(m, c, e->id);
        if (!v) break;
        if (e->flags & PL_MBOX_E_TOMBSTONE) {
            v->tombs |= (uint8_t)(1u << r);
            memcpy(v->sig, e->sig, 64);
        } else {
            v->holders |= (uint8_t)(1u << r);
            if (e->parts > v->parts) v->parts = e->parts;
            if (e->bytes > v->bytes) v->bytes = e->bytes;
            if (!v->stored_at || e->stored_at < v->stored_at) v->stored_at = e->stored_at;
        }
    }
    if ((in->flags & PL_MBOX_F_MORE) && in->n_entries) list_replica(m, c, r, in->entries[in->n_entries - 1].id, now);
    else listing_done(m, c, r, now);
}

static void on_news(pl_mbox *m, const uint8_t pk[32], const pl_mbox_msg *in, pl_time now)
{
    uint8_t key[32];
    char norm[PL_NAME_MAX + 1];
    uint32_t idx;
    if (!name_key(in->name, norm, key) || !pl_keymap_get(&m->client_by_key, key, &idx)) return;
    client *c = pool_at(&m->clients, idx);
    int r = -1;
    for (uint8_t i = 0; i < c->n_rep; i++)
        if (memcmp(c->reps[i], pk, 32) == 0) r = i;
    if (r < 0) return;
    vent *v = view_entry(m, c, in->id);
    if (!v) return;
    v->holders |= (uint8_t)(1u << r);
    if (!v->parts) v->parts = 1;
    if (!v->stored_at) v->stored_at = now / PL_SEC;
    if (c->ready) send_notice(m, c, 0, PL_MBOX_OK, now);
}

static void on_client_list(pl_mbox *m, const uint8_t pk[32], const pl_addr *from, const pl_mbox_msg *in,
                           pl_time now)
{
    m->stats.client_lists++;
    pl_mbox_msg out = {.type = PL_MBOX_LIST_REPLY, .req = in->req};
    client *c = client_of(m, pk, NULL);
    if (!c || !c->ready || now / PL_SEC >= c->grant_expires) {
        out.status = PL_MBOX_NOT_OPEN;
        send_to(m, pk, from, &out, now);
        return;
    }
    bool found;
    uint32_t i = view_search(c, in->after, &found);
    if (found) i++;
    size_t used = 0;
    for (; i < c->n_view; i++) {
        const vent *v = &c->view[i];
        if (!vent_live(v)) continue;
        if (out.n_entries == PL_MBOX_MAX_ENTRIES || used + PL_MBOX_ENTRY_SIZE > PL_MBOX_PAGE_BYTES) {
            out.flags = PL_MBOX_F_MORE;
            break;
        }
        pl_mbox_entry *e = &out.entries[out.n_entries++];
        memcpy(e->id, v->id, 16);
        e->parts = v->parts;
        e->bytes = v->bytes;
        e->stored_at = v->stored_at;
        used += PL_MBOX_ENTRY_SIZE;
    }
    out.status = PL_MBOX_OK;
    send_to(m, pk, from, &out, now);
}

/* ---- the home: fetching for a client --------------------------------------------------------------- */

static void get_reply(pl_mbox *m, uint32_t idx, pend *p, uint8_t status, const uint8_t *env, size_t len,
                      pl_time now)
{
    pl_mbox_msg out = {.type = PL_MBOX_GET_REPLY, .req = p->client_req, .status = status, .env = env,
                       .env_len = status == PL_MBOX_OK ? len : 0};
    send_to(m, p->client_pk, &p->client_addr, &out, now);
    pool_release(&m->pending, idx);
}

/* Asks the next candidate replica, or answers when none is left. */
static void get_step(pl_mbox *m, uint32_t idx, pend *p, pl_time now)
{
    client *c = client_of(m, p->client_pk, NULL);
    while (c && p->at < p->n_rep) {
        const uint8_t *to = p->reps[p->at];
        if (!is_self(m, to) && !member_of(m, to)) {
            p->at++;
            continue;
        }
        pl_mbox_msg g = {.type = PL_MBOX_GET, .req = req_id(idx, p), .part = p->part, .has_grant = true};
        memcpy(g.id, p->id, 16);
        pl_mbox_grant_decode(&g.grant, c->grant, c->grant_len);
        send_peer(m, to, &g, now);
        pend_arm(m, idx, p, now + PL_MBOX_REPLICA_TIMEOUT, false);
        return;
    }
    uint8_t status = p->saw_deleted ? PL_MBOX_DELETED : p->saw_not_found ? PL_MBOX_NOT_FOUND : PL_MBOX_UNREACHABLE;
    get_reply(m, idx, p, status, NULL, 0, now);
}

static void on_client_get(pl_mbox *m, const uint8_t pk[32], const pl_addr *from, const pl_mbox_msg *in,
                          pl_time now)
{
    m->stats.client_gets++;
    client *c = client_of(m, pk, NULL);
    if (!c || !c->ready || now / PL_SEC >= c->grant_expires) {
        pl_mbox_msg out = {.type = PL_MBOX_GET_REPLY, .req = in->req, .status = PL_MBOX_NOT_OPEN};
        send_to(m, pk, from, &out, now);
        return;
    }
    uint32_t idx;
    pend *p = pend_new(m, PEND_GET, &idx);
    if (!p) {
        pl_mbox_msg out = {.type = PL_MBOX_GET_REPLY, .req = in->req, .status = PL_MBOX_BUSY};
        send_to(m, pk, from, &out, now);
        return;
    }
    memcpy(p->client_pk, pk, 32);
    p->client_addr = *from;
    p->client_req = in->req;
    memcpy(p->id, in->id, 16);
    p->part = in->part;
    /* Replicas that listed the message first, in ring order, then the rest. */
    bool found;
    uint32_t at = view_search(c, in->id, &found);
    uint8_t holders = found ? c->view[at].holders : 0;
    for (int pass = 0; pass < 2; pass++)
        for (uint8_t r = 0; r < c->n_rep; r++)
            if (((holders >> r) & 1) == (pass == 0)) memcpy(p->reps[p->n_rep++], c->reps[r], 32);
    p->at = in->attempt < p->n_rep ? in->attempt : p->n_rep;
    get_step(m, idx, p, now);
}

static void on_get_reply(pl_mbox *m, const uint8_t pk[32], const pl_mbox_msg *in, pl_time now)
{
    uint32_t idx;
    pend *p = pend_from_req(m, in->req, PEND_GET, &idx);
    if (!p || p->at >= p->n_rep || memcmp(p->reps[p->at], pk, 32) != 0) return;
    if (in->status == PL_MBOX_OK) {
        /* What the replica sends must be what was asked for. */
        pl_env_header h;
        client *c = client_of(m, p->client_pk, NULL);
        if (c && pl_env_peek(&h, in->env, in->env_len) == PL_ENV_OK && memcmp(h.id, p->id, 16) == 0 &&
            h.part == p->part && strcmp(h.recipient, c->cert.name) == 0) {
            get_reply(m, idx, p, PL_MBOX_OK, in->env, in->env_len, now);
            return;
        }
    } else if (in->status == PL_MBOX_DELETED) {
        p->saw_deleted = 1;
    } else if (in->status == PL_MBOX_NOT_FOUND) {
        p->saw_not_found = 1;
    }
    p->at++;
    get_step(m, idx, p, now);
}

static void on_client_delete(pl_mbox *m, const uint8_t pk[32], const pl_cert *session, const pl_addr *from,
                             const pl_mbox_msg *in, pl_time now)
{
    m->stats.client_deletes++;
    pl_mbox_msg ack = {.type = PL_MBOX_ACK, .req = in->req};
    pl_cert cert;
    uint8_t key[32];
    char norm[PL_NAME_MAX + 1];
    /* Only for one's own mailbox (the replicas check the signatures). */
    if (!session || pl_cert_decode(&cert, in->cert, in->cert_len) != PL_CERT_OK ||
        memcmp(cert.sign_pk, session->sign_pk, 32) != 0 || strcmp(cert.name, session->name) != 0 ||
        !name_key(cert.name, norm, key) || (in->flags & PL_MBOX_F_HANDOVER)) {
        ack.status = PL_MBOX_REFUSED;
        send_to(m, pk, from, &ack, now);
        return;
    }
    uint32_t idx;
    pend *p = pend_new(m, PEND_DELETE, &idx);
    if (!p) {
        ack.status = PL_MBOX_BUSY;
        send_to(m, pk, from, &ack, now);
        return;
    }
    memcpy(p->client_pk, pk, 32);
    p->client_addr = *from;
    p->client_req = in->req;
    p->n_rep = (uint8_t)pl_ring_replicas(m->ring, key, m->r, p->reps);
    pl_mbox_msg d = *in;
    d.req = req_id(idx, p);
    for (uint8_t i = 0; i < p->n_rep; i++) send_peer(m, p->reps[i], &d, now);
    pend_arm(m, idx, p, now + PL_MBOX_REQUEST_TIMEOUT, true);
    /* The client's view forgets them at once. */
    client *c = client_of(m, pk, NULL);
    for (uint8_t k = 0; c && k < in->n_deletes; k++) {
        bool found;
        uint32_t at = view_search(c, in->deletes[k].id, &found);
        if (found) c->view[at].deleted = true;
    }
}

/* ---- messages in ---------------------------------------------------------------------------------- */

static void peer_message(pl_mbox *m, const uint8_t pk[32], const pl_addr *from, const pl_mbox_msg *in, pl_time now)
{
    switch (in->type) {
    case PL_MBOX_STORE: {
        uint8_t st = store_env(m, in->env, in->env_len, now);
        if (in->flags & PL_MBOX_F_HANDOVER) break;
        pl_mbox_msg ack = {.type = PL_MBOX_ACK, .req = in->req, .status = st, .count = st == PL_MBOX_OK, .total = 1};
        send_to(m, pk, from, &ack, now);
        break;
    }
    case PL_MBOX_DELETE: {
        uint8_t st;
        uint8_t ok = apply_deletes(m, in, now, &st);
        if (in->flags & PL_MBOX_F_HANDOVER) break;
        pl_mbox_msg ack = {.type = PL_MBOX_ACK, .req = in->req, .status = st, .count = ok == in->n_deletes,
                           .total = 1};
        send_to(m, pk, from, &ack, now);
        break;
    }
    case PL_MBOX_ACK: on_ack(m, pk, in, now); break;
    case PL_MBOX_LIST: on_list(m, pk, from, in, now); break;
    case PL_MBOX_LIST_REPLY: on_list_reply(m, pk, in, now); break;
    case PL_MBOX_GET: on_get(m, pk, from, in, now); break;
    case PL_MBOX_GET_REPLY: on_get_reply(m, pk, in, now); break;
    case PL_MBOX_NEWS: on_news(m, pk, in, now); break;
    default: break;
    }
}

static void drain(pl_mbox *m, pl_time now)
{
    if (m->draining) return;
    m->draining = true;
    while (m->loop_count) {
        loop_msg l = m->loop[m->loop_head];
        m->loop_head = (m->loop_head + 1) % LOOP_CAP;
        m->loop_count--;
        pl_mbox_msg in;
        if (pl_mbox_decode(&in, l.bytes, l.len) == PL_MBOX_MSG_OK) peer_message(m, m->self, &m->self_addr, &in, now);
    }
    m->draining = false;
}

static bool is_mbox_type(uint8_t t) { return t >= PL_MBOX_TYPE_FIRST && t <= PL_MBOX_TYPE_LAST; }

bool pl_mbox_client_message(pl_mbox *m, const uint8_t pk[32], const pl_cert *cert, const pl_addr *from,
                            const uint8_t *msg, size_t len, pl_time now)
{
    if (len == 0 || !is_mbox_type(msg[0])) return false;
    pl_mbox_msg in;
    if (pl_mbox_decode(&in, msg, len) != PL_MBOX_MSG_OK) return true;
    switch (in.type) {
    case PL_MBOX_DEPOSIT: on_deposit(m, pk, from, &in, now); break;
    case PL_MBOX_OPEN: on_open(m, pk, cert, from, &in, now); break;
    case PL_MBOX_LIST:
        if (!in.has_grant) on_client_list(m, pk, from, &in, now);
        break;
    case PL_MBOX_GET:
        if (!in.has_grant) on_client_get(m, pk, from, &in, now);
        break;
    case PL_MBOX_DELETE: on_client_delete(m, pk, cert, from, &in, now); break;
    default: break; /* replica messages are for supernodes only */
    }
    drain(m, now);
    return true;
}

bool pl_mbox_peer_message(pl_mbox *m, const uint8_t pk[32], const pl_addr *from, const uint8_t *msg, size_t len,
                          pl_time now)
{
    if (len == 0 || !is_mbox_type(msg[0])) return false;
    /* Only supernodes speak these; anyone else is ignored. Chat is for
     * nodes and never reaches a supernode's store. */
    if (!member_of(m, pk) || is_self(m, pk) || msg[0] == PL_MBOX_CHAT) return true;
    pl_mbox_msg in;
    if (pl_mbox_decode(&in, msg, len) != PL_MBOX_MSG_OK) return true;
    if (in.type == PL_MBOX_DEPOSIT || in.type == PL_MBOX_OPEN || in.type == PL_MBOX_NOTICE) return true;
    peer_message(m, pk, from, &in, now);
    drain(m, now);
    return true;
}

void pl_mbox_client_gone(pl_mbox *m, const uint8_t pk[32], pl_time now)
{
    uint32_t idx;
    if (client_of(m, pk, &idx)) client_free(m, idx);
    (void)now;
}

/* ---- membership and handover ---------------------------------------------------------------------- */

static void membership_changed(pl_mbox *m, pl_time now)
{
    if (m->change_pending) return;
    if (pl_ring_copy(m->before, m->ring) != PL_RING_OK) return;
    m->change_pending = true;
    m->handover_at = now + PL_MBOX_HANDOVER_DELAY;
}

void pl_mbox_member_up(pl_mbox *m, const uint8_t pk[32], const pl_addr *addr, pl_time now)
{
    uint32_t i;
    if (pl_keymap_get(&m->member_by_pk, pk, &i)) {
        ((member *)pool_at(&m->members, i))->addr = *addr;
        if (pl_ring_contains(m->ring, pk)) return;
    } else {
        i = pool_alloc(&m->members, m->mem);
        if (i == UINT32_MAX) return;
        if (!pl_keymap_put(&m->member_by_pk, pk, i)) {
            pool_release(&m->members, i);
            return;
        }
        member *mb = pool_at(&m->members, i);
        mb->used = true;
        memcpy(mb->pk, pk, 32);
        mb->addr = *addr;
    }
    membership_changed(m, now);
    pl_ring_add(m->ring, pk);
}

void pl_mbox_member_down(pl_mbox *m, const uint8_t pk[32], pl_time now)
{
    uint32_t i;
    if (!pl_keymap_get(&m->member_by_pk, pk, &i) || is_self(m, pk)) return;
    membership_changed(m, now);
    pl_ring_remove(m->ring, pk);
    pl_keymap_remove(&m->member_by_pk, pk);
    pool_release(&m->members, i);
}

size_t pl_mbox_member_count(const pl_mbox *m) { return pl_ring_count(m->ring); }

static void job_add(pl_mbox *m, uint32_t bidx, box *b, const uint8_t to[32])
{
    if (!grow(m->mem, (void **)&m->jobs, &m->cap_jobs, m->n_jobs + 1, sizeof *m->jobs)) return;
    job *j = &m->jobs[m->n_jobs++];
    memset(j, 0, sizeof *j);
    j->box = bidx;
    memcpy(j->to, to, 32);
    b->jobs++;
}

/* One message of a handover job; false when the job is finished. */
static bool job_step(pl_mbox *m, job *j, pl_time now)
{
    box *b = pool_at(&m->boxes, j->box);
    while (!j->msgs_done) {
        bool found = false;
        uint32_t at = j->started ? msg_search(b, j->last_id, &found) : 0;
        if (!found) j->next_part = 0;
        if (at >= b->n_msgs) {
            j->msgs_done = true;
            break;
        }
        message *x = &b->msgs[at];
        memcpy(j->last_id, x->id, 16);
        j->started = true;
        while (j->next_part < x->cap && !x->parts[j->next_part].bytes) j->next_part++;
        if (j->next_part >= x->cap) {
            /* Past this message's parts: on to the next id. */
            if (at + 1 >= b->n_msgs) {
                j->msgs_done = true;
                break;
            }
            memcpy(j->last_id, b->msgs[at + 1].id, 16);
            j->next_part = 0;
            continue;
        }
        pl_mbox_msg s = {.type = PL_MBOX_STORE, .flags = PL_MBOX_F_HANDOVER, .env = x->parts[j->next_part].bytes,
                         .env_len = x->parts[j->next_part].len};
        send_peer(m, j->to, &s, now);
        m->stats.handed_over++;
        j->next_part++;
        return true;
    }
    /* Tombstones, a batch at a time, under the box's certificate. */
    if (!b->cert_len) return false;
    pl_mbox_msg d = {.type = PL_MBOX_DELETE, .flags = PL_MBOX_F_HANDOVER, .cert = b->cert, .cert_len = b->cert_len};
    while (j->tomb_at < b->n_tombs && d.n_deletes < PL_MBOX_MAX_DELETES) {
        const tomb *t = &b->tombs[j->tomb_at++];
        if (t->foreign) continue;
        memcpy(d.deletes[d.n_deletes].id, t->id, 16);
        memcpy(d.deletes[d.n_deletes].sig, t->sig, 64);
        d.n_deletes++;
    }
    if (!d.n_deletes) return false;
    send_peer(m, j->to, &d, now);
    m->stats.handover_deletes += d.n_deletes;
    return true;
}

static void run_jobs(pl_mbox *m, pl_time now)
{
    if (!m->n_jobs || now < m->next_job_at) return;
    unsigned budget = PL_MBOX_HANDOVER_BURST;
    uint32_t i = 0;
    while (i < m->n_jobs && budget) {
        job *j = &m->jobs[i];
        if (job_step(m, j, now)) {
            budget--;
            continue;
        }
        /* Finished: the box may go now. */
        uint32_t bidx = j->box;
        box *b = pool_at(&m->boxes, bidx);
        b->jobs--;
        m->jobs[i] = m->jobs[--m->n_jobs];
        box_maybe_free(m, b, bidx, now);
    }
    m->next_job_at = now + PL_MBOX_HANDOVER_TICK;
}

/* One pass after membership settled: for every box whose replicas changed,
 * the sender the ring names pushes it (messages and tombstones) to the new
 * replicas, and a box we no longer hold is dropped once pushed. Open
 * mailboxes whose replicas changed are listed again. */
static void hand_over(pl_mbox *m, pl_time now)
{
    m->change_pending = false;
    pl_ring_handover h;
    for (uint32_t i = 0; i < m->boxes.high; i++) {
        box *b = pool_at(&m->boxes, i);
        if (!b->used) continue;
        pl_ring_handover_for(m->before, m->ring, b->key, m->r, m->self, &h);
        if (!h.changed) continue;
        if (h.sender && (b->n_msgs || b->n_tombs))
            for (size_t k = 0; k < h.n_added; k++) job_add(m, i, b, h.added[k]);
        b->leaving = !h.is_replica;
        if (b->leaving) {
            m->stats.dropped_not_replica++;
            box_maybe_free(m, b, i, now);
        }
    }
    for (uint32_t i = 0; i < m->clients.high; i++) {
        client *c = pool_at(&m->clients, i);
        if (!c->used) continue;
        uint8_t reps[MAX_R][32];
        size_t n = pl_ring_replicas(m->ring, c->key, m->r, reps);
        if (n != c->n_rep || memcmp(reps, c->reps, n * 32) != 0) start_listing(m, c, now);
    }
    m->next_job_at = now;
    run_jobs(m, now);
}

/* ---- time ------------------------------------------------------------------------------------------- */

static void expire_pending(pl_mbox *m, fifo *f, pl_time now)
{
    for (;;) {
        fifo_clean(m, f);
        if (!f->count || f->e[f->head].at > now) return;
        deadline_ent e = f->e[f->head];
        f->head = (f->head + 1) % f->cap;
        f->count--;
        pend *p = pool_at(&m->pending, e.idx);
        switch (p->kind) {
        case PEND_DEPOSIT:
        case PEND_DELETE: request_done(m, e.idx, p, now); break;
        case PEND_LIST: {
            m->stats.replica_timeouts++;
            uint8_t r = p->rep;
            uint32_t round = p->round;
            client *c = client_of(m, p->client_pk, NULL);
            pool_release(&m->pending, e.idx);
            if (c && c->round == round) listing_done(m, c, r, now);
            break;
        }
        case PEND_GET:
            m->stats.replica_timeouts++;
            p->at++;
            get_step(m, e.idx, p, now);
            break;
        }
    }
}

static void sweep(pl_mbox *m, pl_time now)
{
    uint32_t n = m->boxes.high / SWEEP_FRACTION + 1;
    for (uint32_t k = 0; k < n && m->boxes.high; k++) {
        if (m->sweep_box >= m->boxes.high) m->sweep_box = 0;
        uint32_t i = m->sweep_box++;
        box *b = pool_at(&m->boxes, i);
        if (!b->used || b->jobs) continue;
        for (uint32_t x = b->n_msgs; x-- > 0;) {
            if (now < b->msgs[x].expires_at) continue;
            msg_remove(m, b, x);
            m->stats.expired++;
        }
        for (uint32_t x = b->n_tombs; x-- > 0;) {
            if (now < b->tombs[x].expires_at) continue;
            tomb_remove(m, b, x);
            m->stats.tombstones_expired++;
        }
        box_maybe_free(m, b, i, now);
    }
}

void pl_mbox_tick(pl_mbox *m, pl_time now)
{
    expire_pending(m, &m->short_deadlines, now);
    expire_pending(m, &m->long_deadlines, now);
    if (m->change_pending && now >= m->handover_at) hand_over(m, now);
    run_jobs(m, now);
    if (now >= m->next_sweep) {
        m->next_sweep = now + SWEEP_INTERVAL;
        sweep(m, now);
    }
    drain(m, now);
}

static pl_time fifo_next(const pl_mbox *m, const fifo *f)
{
    for (uint32_t k = 0; k < f->count; k++) {
        const deadline_ent *e = &f->e[(f->head + k) % f->cap];
        if (fifo_live(m, e)) return e->at;
    }
    return PL_TIME_NEVER;
}

pl_time pl_mbox_next_timeout(const pl_mbox *m)
{
    pl_time t = PL_TIME_NEVER, x;
    if ((x = fifo_next(m, &m->short_deadlines)) < t) t = x;
    if ((x = fifo_next(m, &m->long_deadlines)) < t) t = x;
    if (m->change_pending && m->handover_at < t) t = m->handover_at;
    if (m->n_jobs && m->next_job_at < t) t = m->next_job_at;
    if (m->boxes.used && m->next_sweep < t) t = m->next_sweep;
    return t;
}

/* ---- set-up and queries ------------------------------------------------------------------------------ */

pl_mbox_err pl_mbox_new(pl_mbox **out, const pl_mbox_config *cfg, const pl_mbox_io *io)
{
    *out = NULL;
    if (!cfg || !cfg->self_pk || !cfg->rng || !io || !io->send || cfg->replicas > MAX_R ||
        cfg->max_pending > 65535)
        return PL_MBOX_E_CONFIG;
    const pl_mem *mem = cfg->mem ? cfg->mem : pl_mem_system();
    pl_mbox *m = mem->calloc(mem->ctx, 1, sizeof *m);
    if (!m) return PL_MBOX_E_NOMEM;
    memcpy(m->self, cfg->self_pk, 32);
    m->self_addr = cfg->self_addr;
    memcpy(m->ca_pk, cfg->ca_pk, 32);
    m->rng = cfg->rng;
    m->mem = mem;
    m->io = *io;
    m->r = cfg->replicas ? cfg->replicas : PL_MBOX_DEFAULT_REPLICAS;
    m->max_messages = cfg->max_messages ? cfg->max_messages : PL_MBOX_DEFAULT_MAX_MESSAGES;
    m->max_bytes = cfg->max_bytes ? cfg->max_bytes : PL_MBOX_DEFAULT_MAX_BYTES;
    m->max_tombs = cfg->max_tombstones ? cfg->max_tombstones : PL_MBOX_DEFAULT_MAX_TOMBSTONES;
    m->max_total = cfg->max_total ? cfg->max_total : PL_MBOX_DEFAULT_MAX_TOTAL;
    uint32_t max_boxes = cfg->max_boxes ? cfg->max_boxes : PL_MBOX_DEFAULT_MAX_BOXES;
    uint32_t max_pending = cfg->max_pending ? cfg->max_pending : PL_MBOX_DEFAULT_MAX_PENDING;
    m->members = (pool){.size = sizeof(member), .max = PL_RING_MAX_MEMBERS};
    m->boxes = (pool){.size = sizeof(box), .max = max_boxes};
    m->clients = (pool){.size = sizeof(client), .max = max_boxes};
    m->pending = (pool){.size = sizeof(pend), .max = max_pending};
    pl_keymap_init(&m->member_by_pk, mem, cfg->rng);
    pl_keymap_init(&m->box_by_key, mem, cfg->rng);
    pl_keymap_init(&m->client_by_pk, mem, cfg->rng);
    pl_keymap_init(&m->client_by_key, mem, cfg->rng);
    m->pend_gen = mem->calloc(mem->ctx, max_pending, sizeof *m->pend_gen);
    m->loop = mem->calloc(mem->ctx, LOOP_CAP, sizeof *m->loop);
    if (!m->pend_gen || !m->loop || pl_ring_new(&m->ring, mem, cfg->vpoints) ||
        pl_ring_new(&m->before, mem, cfg->vpoints)) {
        pl_mbox_free(m);
        return PL_MBOX_E_NOMEM;
    }
    pl_mbox_member_up(m, m->self, &m->self_addr, 0);
    m->change_pending = false;
    *out = m;
    return PL_MBOX_E_OK;
}

void pl_mbox_free(pl_mbox *m)
{
    if (!m) return;
    const pl_mem *mem = m->mem;
    for (uint32_t i = 0; i < m->boxes.high; i++) {
        box *b = pool_at(&m->boxes, i);
        if (b->used) box_free(m, b, i);
    }
    for (uint32_t i = 0; i < m->clients.high; i++) {
        client *c = pool_at(&m->clients, i);
        if (c->used && c->view) mem->free(mem->ctx, c->view);
    }
    pool *pools[] = {&m->members, &m->boxes, &m->clients, &m->pending};
    for (size_t i = 0; i < sizeof pools / sizeof pools[0]; i++) pool_free(pools[i], mem);
    pl_keymap *maps[] = {&m->member_by_pk, &m->box_by_key, &m->client_by_pk, &m->client_by_key};
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++) pl_keymap_free(maps[i]);
    if (m->short_deadlines.e) mem->free(mem->ctx, m->short_deadlines.e);
    if (m->long_deadlines.e) mem->free(mem->ctx, m->long_deadlines.e);
    if (m->jobs) mem->free(mem->ctx, m->jobs);
    if (m->pend_gen) mem->free(mem->ctx, m->pend_gen);
    if (m->loop) mem->free(mem->ctx, m->loop);
    pl_ring_free(m->ring);
    pl_ring_free(m->before);
    memset(m, 0, sizeof *m);
    mem->free(mem->ctx, m);
}

void pl_mbox_set_crl(pl_mbox *m, const pl_crl *crl) { m->crl = crl; }

static const box *box_named(const pl_mbox *m, const char *name)
{
    char norm[PL_NAME_MAX + 1];
    uint8_t key[32];
    if (!name_key(name, norm, key)) return NULL;
    return box_of(m, key, NULL);
}

bool pl_mbox_held_for(const pl_mbox *m, const char *name, pl_mbox_held *out)
{
    memset(out, 0, sizeof *out);
    const box *b = box_named(m, name);
    if (!b) return false;
    out->messages = b->n_msgs;
    out->parts = b->parts;
    out->tombstones = b->n_tombs;
    out->bytes = b->bytes;
    return true;
}

bool pl_mbox_has_message(const pl_mbox *m, const char *name, const uint8_t id[16])
{
    const box *b = box_named(m, name);
    bool found = false;
    if (b) msg_search(b, id, &found);
    return found;
}

bool pl_mbox_has_tombstone(const pl_mbox *m, const char *name, const uint8_t id[16])
{
    const box *b = box_named(m, name);
    bool found = false;
    if (b) tomb_search(b, id, &found);
    return found;
}

void pl_mbox_foreach_bytes(const pl_mbox *m, void (*fn)(void *ctx, const uint8_t *bytes, size_t len), void *ctx)
{
    for (uint32_t i = 0; i < m->boxes.high; i++) {
        const box *b = pool_at(&m->boxes, i);
        if (!b->used) continue;
        fn(ctx, (const uint8_t *)b->name, strlen(b->name));
        if (b->cert_len) fn(ctx, b->cert, b->cert_len);
        for (uint32_t k = 0; k < b->n_msgs; k++)
            for (uint32_t p = 0; p < b->msgs[k].cap; p++)
                if (b->msgs[k].parts[p].bytes) fn(ctx, b->msgs[k].parts[p].bytes, b->msgs[k].parts[p].len);
        if (b->n_tombs) fn(ctx, (const uint8_t *)b->tombs, b->n_tombs * sizeof *b->tombs);
    }
    for (uint32_t i = 0; i < m->clients.high; i++) {
        const client *c = pool_at(&m->clients, i);
        if (!c->used) continue;
        fn(ctx, c->grant, c->grant_len);
        if (c->n_view) fn(ctx, (const uint8_t *)c->view, c->n_view * sizeof *c->view);
    }
}

size_t pl_mbox_replicas_of(const pl_mbox *m, const char *name, uint8_t out[][32])
{
    char norm[PL_NAME_MAX + 1];
    uint8_t key[32];
    if (!name_key(name, norm, key)) return 0;
    return pl_ring_replicas(m->ring, key, m->r, out);
}

pl_mbox_stats pl_mbox_get_stats(const pl_mbox *m) { return m->stats; }

const char *pl_mbox_strerror(pl_mbox_err err)
{
    switch (err) {
    case PL_MBOX_E_OK: return "ok";
    case PL_MBOX_E_CONFIG: return "bad mailbox configuration";
    case PL_MBOX_E_NOMEM: return "out of memory";
    }
    return "unknown mailbox error";
}
