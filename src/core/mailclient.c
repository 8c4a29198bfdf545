/* mailclient.c - a node's side of the message store (mailclient.h). */
#include "mailclient.h"

#include <sodium.h>
#include <string.h>

#define MAX_REQ 48
#define MAX_TODO 256
#define DONE_RING 1024
#define MAX_ACKS 64

enum { REQ_FREE = 0, REQ_PART, REQ_OPEN, REQ_LIST, REQ_GET, REQ_DELETE };

typedef struct request {
    uint8_t kind;
    uint8_t tries;
    uint32_t req;
    pl_time deadline;
    /* PART */
    uint32_t job;
    uint16_t part;
    /* GET */
    uint8_t attempt;
    /* DELETE */
    uint8_t n_ids;
    uint8_t ids[PL_MBOX_MAX_DELETES][PL_ENV_ID_SIZE];
} request;

typedef struct deposit_job {
    bool used;
    uint8_t head[PL_ENV_MAX_SIZE];
    uint16_t head_len;
    pl_env_sealed st; /* its body points to `body` */
    uint8_t *body;
    uint32_t n_parts, next, done;
    uint8_t min_stored, total, worst;
} deposit_job;

/* The message being fetched. */
typedef struct fetch {
    bool active;
    bool have_head;
    uint8_t id[PL_ENV_ID_SIZE];
    uint8_t attempt;     /* head copies tried */
    uint8_t bad_copies;  /* head copies that did not open */
    pl_env_err why;
    pl_env_opened head;
    uint8_t *body;
    uint32_t next_part;  /* next chunk to ask for */
    uint32_t have, outstanding;
    uint8_t got[PL_ENV_MAX_CHUNKS / 8 + 1];
} fetch;

struct pl_mboxc {
    pl_identity id;
    uint8_t cert[PL_CERT_MAX_SIZE];
    size_t cert_len;
    pl_cert c;
    uint8_t ca_pk[32];
    const pl_crl *crl;
    const pl_rng *rng;
    const pl_mem *mem;
    pl_mboxc_io io;

    bool attached;
    uint8_t home[32];
    uint32_t next_req;
    request reqs[MAX_REQ];

    deposit_job jobs[PL_MBOXC_MAX_DEPOSITS];

    bool open;          /* the supernode merged our replicas */
    pl_time renew_at;
    bool listing, want_sync;
    uint8_t todo[MAX_TODO][PL_ENV_ID_SIZE];
    uint32_t n_todo, todo_at;
    fetch f;
    uint8_t done[DONE_RING][PL_ENV_ID_SIZE];
    uint32_t done_next, done_count;

    uint8_t acks[MAX_ACKS][PL_ENV_ID_SIZE];
    uint32_t n_acks;
    uint32_t in_callback;
    pl_mboxc_stats stats;
};

/* ---- helpers -------------------------------------------------------------------------------- */

static void emit(pl_mboxc *mc, pl_mboxc_event *ev)
{
    if (!mc->io.event) return;
    mc->in_callback++;
    mc->io.event(mc->io.ctx, ev);
    mc->in_callback--;
}

static bool send_msg(pl_mboxc *mc, const pl_mbox_msg *m, pl_time now)
{
    uint8_t buf[PL_MBOX_MSG_MAX];
    size_t len = pl_mbox_encode(buf, sizeof buf, m);
    return len && mc->attached && mc->io.send(mc->io.ctx, buf, len, now);
}

static request *req_new(pl_mboxc *mc, uint8_t kind)
{
    for (size_t i = 0; i < MAX_REQ; i++) {
        if (mc->reqs[i].kind != REQ_FREE) continue;
        memset(&mc->reqs[i], 0, sizeof mc->reqs[i]);
        mc->reqs[i].kind = kind;
        mc->reqs[i].req = ++mc->next_req;
        return &mc->reqs[i];
    }
    return NULL;
}

static request *req_find(pl_mboxc *mc, uint32_t req, uint8_t kind)
{
    for (size_t i = 0; i < MAX_REQ; i++)
        if (mc->reqs[i].kind == kind && mc->reqs[i].req == req) return &mc->reqs[i];
    return NULL;
}

static size_t req_count(const pl_mboxc *mc, uint8_t kind)
{
    size_t n = 0;
    for (size_t i = 0; i < MAX_REQ; i++) n += mc->reqs[i].kind == kind;
    return n;
}

static bool done_has(const pl_mboxc *mc, const uint8_t id[16])
{
    for (uint32_t i = 0; i < mc->done_count; i++)
        if (memcmp(mc->done[i], id, 16) == 0) return true;
    return false;
}

static void done_add(pl_mboxc *mc, const uint8_t id[16])
{
    if (done_has(mc, id)) return;
    memcpy(mc->done[mc->done_next], id, 16);
    mc->done_next = (mc->done_next + 1) % DONE_RING;
    if (mc->done_count < DONE_RING) mc->done_count++;
}

/* ---- depositing ------------------------------------------------------------------------------- */

static void send_part(pl_mboxc *mc, request *r, pl_time now)
{
    deposit_job *j = &mc->jobs[r->job];
    uint8_t env[PL_ENV_MAX_SIZE];
    size_t len = 0;
    if (r->part == 0) {
        memcpy(env, j->head, j->head_len);
        len = j->head_len;
    } else if (pl_env_seal_chunk(&j->st, r->part, env, sizeof env, &len) != PL_ENV_OK) {
        len = 0;
    }
    pl_mbox_msg m = {.type = PL_MBOX_DEPOSIT, .req = r->req, .env = env, .env_len = len};
    r->deadline = now + PL_MBOXC_TIMEOUT;
    if (len && send_msg(mc, &m, now)) mc->stats.parts_sent++;
}

static void job_finish(pl_mboxc *mc, deposit_job *j, pl_time now)
{
    pl_mboxc_event ev = {.type = PL_MBOXC_EV_DEPOSITED, .id = j->st.id, .stored = j->min_stored,
                         .total = j->total, .now = now};
    ev.status = j->worst ? j->worst : PL_MBOX_OK;
    if (ev.status == PL_MBOX_OK || ev.status == PL_MBOX_DELETED) mc->stats.deposited++;
    else mc->stats.deposit_failed++;
    uint8_t id[16];
    memcpy(id, j->st.id, 16);
    ev.id = id;
    /* Drop the job first: the consumer may deposit again from the event. */
    uint32_t k = (uint32_t)(j - mc->jobs);
    for (size_t i = 0; i < MAX_REQ; i++)
        if (mc->reqs[i].kind == REQ_PART && mc->reqs[i].job == k) mc->reqs[i].kind = REQ_FREE;
    if (j->body) {
        sodium_memzero(j->body, j->st.body_len);
        mc->mem->free(mc->mem->ctx, j->body);
    }
    sodium_memzero(j, sizeof *j);
    emit(mc, &ev);
}

static void pump_deposits(pl_mboxc *mc, pl_time now)
{
    if (!mc->attached) return;
    for (size_t k = 0; k < PL_MBOXC_MAX_DEPOSITS; k++) {
        deposit_job *j = &mc->jobs[k];
        while (j->used && j->next < j->n_parts && req_count(mc, REQ_PART) < PL_MBOXC_WINDOW) {
            request *r = req_new(mc, REQ_PART);
            if (!r) return;
            r->job = (uint32_t)k;
            r->part = (uint16_t)j->next++;
            send_part(mc, r, now);
        }
    }
}

pl_mboxc_err pl_mboxc_deposit(pl_mboxc *mc, const pl_env_sealed *st, const uint8_t *head, size_t head_len,
                              pl_time now)
{
    pl_env_header h;
    if (!st || !head || head_len > PL_ENV_MAX_SIZE || pl_env_peek(&h, head, head_len) != PL_ENV_OK || h.part ||
        memcmp(h.id, st->id, 16) != 0 || (st->n_chunks && !st->body))
        return PL_MBOXC_ERR_ARG;
    deposit_job *j = NULL;
    for (size_t k = 0; k < PL_MBOXC_MAX_DEPOSITS && !j; k++)
        if (!mc->jobs[k].used) j = &mc->jobs[k];
    if (!j) return PL_MBOXC_ERR_FULL;
    memset(j, 0, sizeof *j);
    j->st = *st;
    j->st.body = NULL;
    if (st->n_chunks) {
        if (!(j->body = mc->mem->calloc(mc->mem->ctx, 1, st->body_len))) {
            sodium_memzero(j, sizeof *j);
            return PL_MBOXC_ERR_NOMEM;
        }
        memcpy(j->body, st->body, st->body_len);
        j->st.body = j->body;
    }
    memcpy(j->head, head, head_len);
    j->head_len = (uint16_t)head_len;
    j->n_parts = 1u + st->n_chunks;
    j->min_stored = UINT8_MAX;
    j->used = true;
    mc->stats.deposits++;
    pump_deposits(mc, now);
    return PL_MBOXC_OK;
}

static void on_part_ack(pl_mboxc *mc, request *r, const pl_mbox_msg *in, pl_time now)
{
    deposit_job *j = &mc->jobs[r->job];
    if (!j->used) {
        r->kind = REQ_FREE;
        return;
    }
    bool ok = in->status == PL_MBOX_OK || in->status == PL_MBOX_DELETED;
    bool retry = !ok && (in->status == PL_MBOX_BUSY || in->status == PL_MBOX_UNREACHABLE) && r->tries + 1 < PL_MBOXC_TRIES;
    if (retry) {
        /* Try again at the next timeout, not at once. */
        r->tries++;
        r->req = ++mc->next_req;
        r->deadline = now + PL_MBOXC_TIMEOUT / 2;
        return;
    }
    r->kind = REQ_FREE;
    j->done++;
    if (in->total > j->total) j->total = in->total;
    if (ok) {
        if (in->count < j->min_stored) j->min_stored = in->count;
        if (in->status == PL_MBOX_DELETED && j->worst == 0 && r->part == 0) j->worst = PL_MBOX_DELETED;
    } else {
        j->min_stored = 0;
        j->worst = in->status;
    }
    if (j->done == j->n_parts) job_finish(mc, j, now);
    else pump_deposits(mc, now);
}

/* ---- deleting ---------------------------------------------------------------------------------- */

static void send_delete(pl_mboxc *mc, request *r, pl_time now)
{
    pl_mbox_msg m = {.type = PL_MBOX_DELETE, .req = r->req, .cert = mc->cert, .cert_len = mc->cert_len};
    for (uint8_t i = 0; i < r->n_ids; i++) {
        memcpy(m.deletes[i].id, r->ids[i], 16);
        pl_mbox_delete_sign(m.deletes[i].sig, &mc->id, mc->c.name, r->ids[i]);
    }
    m.n_deletes = r->n_ids;
    r->deadline = now + PL_MBOXC_TIMEOUT;
    if (send_msg(mc, &m, now)) mc->stats.deletes_sent++;
}

static int id_cmp(const void *a, const void *b) { return memcmp(a, b, PL_ENV_ID_SIZE); }

static void flush_acks(pl_mboxc *mc, pl_time now)
{
    while (mc->n_acks) {
        request *r = req_new(mc, REQ_DELETE);
        if (!r) return; /* sent when a request slot frees up */
        uint32_t n = mc->n_acks < PL_MBOX_MAX_DELETES ? mc->n_acks : PL_MBOX_MAX_DELETES;
        /* Ascending and distinct, as the message requires. */
        qsort(mc->acks, n, PL_ENV_ID_SIZE, id_cmp);
        uint32_t k = 0;
        for (uint32_t i = 0; i < n; i++)
            if (!k || memcmp(r->ids[k - 1], mc->acks[i], 16) != 0) memcpy(r->ids[k++], mc->acks[i], 16);
        r->n_ids = (uint8_t)k;
        memmove(mc->acks, mc->acks + n, (mc->n_acks - n) * PL_ENV_ID_SIZE);
        mc->n_acks -= n;
        send_delete(mc, r, now);
    }
}

void pl_mboxc_ack(pl_mboxc *mc, const uint8_t id[PL_ENV_ID_SIZE], pl_time now)
{
    done_add(mc, id);
    if (mc->n_acks == MAX_ACKS) flush_acks(mc, now);
    if (mc->n_acks < MAX_ACKS) memcpy(mc->acks[mc->n_acks++], id, 16);
    if (!mc->in_callback) flush_acks(mc, now);
}

void pl_mboxc_keep(pl_mboxc *mc, const uint8_t id[PL_ENV_ID_SIZE]) { done_add(mc, id); }

static void on_delete_ack(pl_mboxc *mc, request *r, const pl_mbox_msg *in, pl_time now)
{
    if (in->status != PL_MBOX_OK && (in->status == PL_MBOX_BUSY || in->status == PL_MBOX_UNREACHABLE) &&
        r->tries + 1 < PL_MBOXC_TRIES) {
        r->tries++;
        r->req = ++mc->next_req;
        r->deadline = now + PL_MBOXC_TIMEOUT / 2;
        return;
    }
    request copy = *r;
    r->kind = REQ_FREE;
    for (uint8_t i = 0; i < copy.n_ids; i++) {
        mc->stats.deleted++;
        pl_mboxc_event ev = {.type = PL_MBOXC_EV_DELETED, .id = copy.ids[i], .status = in->status,
                             .stored = in->count, .total = in->total, .now = now};
        emit(mc, &ev);
    }
}

/* ---- taking: open, list, fetch ------------------------------------------------------------------ */

static void send_open(pl_mboxc *mc, pl_time now)
{
    for (size_t i = 0; i < MAX_REQ; i++)
        if (mc->reqs[i].kind == REQ_OPEN) mc->reqs[i].kind = REQ_FREE;
    request *r = req_new(mc, REQ_OPEN);
    if (!r) return;
    pl_mbox_msg m = {.type = PL_MBOX_OPEN, .req = r->req, .has_grant = true};
    uint64_t t = now / PL_SEC;
    if (!pl_mbox_grant_sign(&m.grant, &mc->id, mc->cert, mc->cert_len, mc->home, t, t + PL_MBOXC_GRANT_LIFE / PL_SEC)) {
        r->kind = REQ_FREE;
        return;
    }
    r->deadline = now + PL_MBOXC_TIMEOUT;
    mc->renew_at = now + PL_MBOXC_GRANT_RENEW;
    if (send_msg(mc, &m, now)) mc->stats.opens++;
}

static void send_list(pl_mboxc *mc, const uint8_t after[16], pl_time now)
{
    request *r = req_new(mc, REQ_LIST);
    if (!r) {
        mc->listing = false;
        mc->want_sync = true;
        return;
    }
    pl_mbox_msg m = {.type = PL_MBOX_LIST, .req = r->req};
    memcpy(m.after, after, 16);
    r->deadline = now + PL_MBOXC_TIMEOUT;
    mc->listing = true;
    if (send_msg(mc, &m, now)) mc->stats.lists++;
}

static void fetch_next(pl_mboxc *mc, pl_time now);

void pl_mboxc_sync(pl_mboxc *mc, pl_time now)
{
    if (!mc->attached || !mc->open) return;
    if (mc->listing || mc->f.active || mc->todo_at < mc->n_todo) {
        mc->want_sync = true;
        return;
    }
    mc->want_sync = false;
    mc->n_todo = mc->todo_at = 0;
    uint8_t zero[16] = {0};
    send_list(mc, zero, now);
}

static void send_get(pl_mboxc *mc, uint16_t part, uint8_t attempt, pl_time now)
{
    request *r = req_new(mc, REQ_GET);
    if (!r) return;
    r->part = part;
    r->attempt = attempt;
    pl_mbox_msg m = {.type = PL_MBOX_GET, .req = r->req, .part = part, .attempt = attempt};
    memcpy(m.id, mc->f.id, 16);
    r->deadline = now + PL_MBOXC_TIMEOUT;
    if (send_msg(mc, &m, now)) mc->stats.gets++;
    if (part) mc->f.outstanding++;
}

static void fetch_clear(pl_mboxc *mc)
{
    fetch *f = &mc->f;
    for (size_t i = 0; i < MAX_REQ; i++)
        if (mc->reqs[i].kind == REQ_GET) mc->reqs[i].kind = REQ_FREE;
    if (f->body) {
        sodium_memzero(f->body, f->head.body_len);
        mc->mem->free(mc->mem->ctx, f->body);
    }
    sodium_memzero(f, sizeof *f);
}

static void fetch_deliver(pl_mboxc *mc, pl_time now)
{
    fetch *f = &mc->f;
    done_add(mc, f->id);
    mc->stats.delivered++;
    pl_mboxc_event ev = {.type = PL_MBOXC_EV_MESSAGE, .id = f->id, .opened = &f->head, .now = now};
    ev.body = f->head.n_chunks ? f->body : f->head.body;
    ev.body_len = f->head.body_len;
    emit(mc, &ev);
    fetch_clear(mc);
    flush_acks(mc, now);
    fetch_next(mc, now);
}

/* The head of the current message could not be had from any replica. */
static void fetch_give_up(pl_mboxc *mc, uint8_t status, pl_time now)
{
    fetch *f = &mc->f;
    /* No copy opened: garbage, or copies altered. Delete it only when two
     * copies failed, or the others are known not to exist, so that one
     * lying replica cannot have a message deleted while the honest ones are
     * away. */
    if (f->bad_copies >= 2 || (f->bad_copies && (status == PL_MBOX_NOT_FOUND || status == PL_MBOX_DELETED))) {
        mc->stats.discarded++;
        uint8_t id[16];
        memcpy(id, f->id, 16);
        pl_mboxc_event ev = {.type = PL_MBOXC_EV_DISCARDED, .id = id, .why = f->why, .now = now};
        pl_mboxc_ack(mc, id, now);
        emit(mc, &ev);
    }
    fetch_clear(mc);
    flush_acks(mc, now);
    fetch_next(mc, now);
}

static void fetch_next(pl_mboxc *mc, pl_time now)
{
    while (!mc->f.active && mc->todo_at < mc->n_todo) {
        const uint8_t *id = mc->todo[mc->todo_at++];
        if (done_has(mc, id)) continue;
        memset(&mc->f, 0, sizeof mc->f);
        mc->f.active = true;
        memcpy(mc->f.id, id, 16);
        send_get(mc, 0, 0, now);
        return;
    }
    if (!mc->f.active && !mc->listing && mc->want_sync) pl_mboxc_sync(mc, now);
}

static void ask_chunks(pl_mboxc *mc, pl_time now)
{
    fetch *f = &mc->f;
    while (f->next_part <= f->head.n_chunks && f->outstanding < PL_MBOXC_WINDOW) send_get(mc, (uint16_t)f->next_part++, 0, now);
}

static void on_head(pl_mboxc *mc, const pl_mbox_msg *in, pl_time now)
{
    fetch *f = &mc->f;
    pl_env_recipient me = {&mc->id, mc->c.name};
    pl_env_err err = pl_env_open(&f->head, in->env, in->env_len, &me, mc->ca_pk, mc->crl, now, NULL);
    if (err == PL_ENV_OK && memcmp(f->head.id, f->id, 16) != 0) err = PL_ENV_ERR_WRONG_MESSAGE;
    if (err) {
        mc->stats.bad_copies++;
        f->bad_copies++;
        f->why = err;
        send_get(mc, 0, ++f->attempt, now);
        return;
    }
    f->have_head = true;
    if (!f->head.n_chunks) {
        fetch_deliver(mc, now);
        return;
    }
    if (!(f->body = mc->mem->calloc(mc->mem->ctx, 1, f->head.body_len))) {
        fetch_clear(mc);
        fetch_next(mc, now);
        return;
    }
    f->next_part = 1;
    ask_chunks(mc, now);
}

static void on_chunk(pl_mboxc *mc, request *r, const pl_mbox_msg *in, pl_time now)
{
    fetch *f = &mc->f;
    uint16_t part;
    size_t len;
    uint8_t chunk[PL_ENV_CHUNK_BODY];
    f->outstanding--;
    if (pl_env_open_chunk(&f->head, in->env, in->env_len, chunk, sizeof chunk, &part, &len) != PL_ENV_OK ||
        part != r->part) {
        mc->stats.bad_copies++;
        send_get(mc, r->part, (uint8_t)(r->attempt + 1), now);
        return;
    }
    if (!(f->got[part / 8] & (1u << (part % 8)))) {
        f->got[part / 8] |= (uint8_t)(1u << (part % 8));
        memcpy(f->body + pl_env_chunk_offset(part), chunk, len);
        f->have++;
    }
    sodium_memzero(chunk, sizeof chunk);
    if (f->have == f->head.n_chunks) fetch_deliver(mc, now);
    else ask_chunks(mc, now);
}

static void on_get_reply(pl_mboxc *mc, request *r, const pl_mbox_msg *in, pl_time now)
{
    request copy = *r;
    r->kind = REQ_FREE;
    fetch *f = &mc->f;
    if (!f->active) return;
    if (in->status == PL_MBOX_OK) {
        if (copy.part == 0) {
            if (!f->have_head) on_head(mc, in, now);
        } else if (f->have_head) {
            on_chunk(mc, &copy, in, now);
        }
        return;
    }
    if (copy.part == 0) {
        fetch_give_up(mc, in->status, now);
        return;
    }
    /* A chunk no replica has (yet): leave the message for a later sync. */
    f->outstanding--;
    fetch_clear(mc);
    mc->want_sync = true;
    fetch_next(mc, now);
}

static void on_list_reply(pl_mboxc *mc, request *r, const pl_mbox_msg *in, pl_time now)
{
    r->kind = REQ_FREE;
    if (in->status == PL_MBOX_NOT_OPEN) {
        mc->listing = false;
        mc->open = false;
        send_open(mc, now);
        return;
    }
    if (in->status != PL_MBOX_OK) {
        mc->listing = false;
        return;
    }
    for (uint8_t k = 0; k < in->n_entries && mc->n_todo < MAX_TODO; k++)
        if (!done_has(mc, in->entries[k].id)) memcpy(mc->todo[mc->n_todo++], in->entries[k].id, 16);
    if ((in->flags & PL_MBOX_F_MORE) && in->n_entries && mc->n_todo < MAX_TODO) {
        send_list(mc, in->entries[in->n_entries - 1].id, now);
        return;
    }
    mc->listing = false;
    if (mc->n_todo == MAX_TODO) mc->want_sync = true;
    fetch_next(mc, now);
}

static void on_notice(pl_mboxc *mc, const pl_mbox_msg *in, pl_time now)
{
    mc->stats.notices++;
    request *r = in->req ? req_find(mc, in->req, REQ_OPEN) : NULL;
    if (r) r->kind = REQ_FREE;
    if (in->req && !r) return; /* an answer to an OPEN we no longer wait for */
    pl_mboxc_event ev = {.type = PL_MBOXC_EV_NOTICE, .status = in->status, .messages = in->messages,
                         .bytes = in->bytes, .now = now};
    if (in->status == PL_MBOX_OK) mc->open = true;
    emit(mc, &ev);
    if (in->status == PL_MBOX_OK && in->messages) pl_mboxc_sync(mc, now);
}

/* ---- messages, time, set-up --------------------------------------------------------------------- */

bool pl_mboxc_message(pl_mboxc *mc, const uint8_t *msg, size_t len, pl_time now)
{
    if (len == 0 || msg[0] < PL_MBOX_TYPE_FIRST || msg[0] > PL_MBOX_TYPE_LAST) return false;
    pl_mbox_msg in;
    if (pl_mbox_decode(&in, msg, len) != PL_MBOX_MSG_OK) return true;
    request *r;
    switch (in.type) {
    case PL_MBOX_ACK:
        if ((r = req_find(mc, in.req, REQ_PART))) on_part_ack(mc, r, &in, now);
        else if ((r = req_find(mc, in.req, REQ_DELETE))) on_delete_ack(mc, r, &in, now);
        break;
    case PL_MBOX_NOTICE: on_notice(mc, &in, now); break;
    case PL_MBOX_LIST_REPLY:
        if ((r = req_find(mc, in.req, REQ_LIST))) on_list_reply(mc, r, &in, now);
        break;
    case PL_MBOX_GET_REPLY:
        if ((r = req_find(mc, in.req, REQ_GET))) on_get_reply(mc, r, &in, now);
        break;
    default: break;
    }
    flush_acks(mc, now);
    return true;
}

void pl_mboxc_attached(pl_mboxc *mc, const uint8_t home_pk[32], pl_time now)
{
    mc->attached = true;
    memcpy(mc->home, home_pk, 32);
    mc->open = false;
    send_open(mc, now);
    /* What was in flight goes again, under new request ids. */
    for (size_t i = 0; i < MAX_REQ; i++) {
        request *r = &mc->reqs[i];
        if (r->kind != REQ_PART && r->kind != REQ_DELETE) continue;
        r->req = ++mc->next_req;
        if (r->kind == REQ_PART) send_part(mc, r, now);
        else send_delete(mc, r, now);
    }
    pump_deposits(mc, now);
    flush_acks(mc, now);
}

void pl_mboxc_detached(pl_mboxc *mc)
{
    mc->attached = false;
    mc->open = false;
    mc->listing = false;
    mc->want_sync = false;
    mc->n_todo = mc->todo_at = 0;
    fetch_clear(mc);
    for (size_t i = 0; i < MAX_REQ; i++) {
        request *r = &mc->reqs[i];
        if (r->kind == REQ_OPEN || r->kind == REQ_LIST) r->kind = REQ_FREE;
        else if (r->kind != REQ_FREE) r->deadline = PL_TIME_NEVER;
    }
}

void pl_mboxc_tick(pl_mboxc *mc, pl_time now)
{
    if (!mc->attached) return;
    for (size_t i = 0; i < MAX_REQ; i++) {
        request *r = &mc->reqs[i];
        if (r->kind == REQ_FREE || now < r->deadline) continue;
        if (r->tries + 1 >= PL_MBOXC_TRIES && r->kind != REQ_OPEN) {
            /* Given up: answer as the supernode would have. */
            pl_mbox_msg fake = {.req = r->req, .status = PL_MBOX_UNREACHABLE};
            switch (r->kind) {
            case REQ_PART: r->tries = PL_MBOXC_TRIES; on_part_ack(mc, r, &fake, now); break;
            case REQ_DELETE: r->tries = PL_MBOXC_TRIES; on_delete_ack(mc, r, &fake, now); break;
            case REQ_LIST: on_list_reply(mc, r, &fake, now); break;
            case REQ_GET:
                on_get_reply(mc, r, &fake, now);
                break;
            }
            continue;
        }
        r->tries++;
        r->req = ++mc->next_req;
        switch (r->kind) {
        case REQ_PART: mc->stats.parts_resent++; send_part(mc, r, now); break;
        case REQ_DELETE: send_delete(mc, r, now); break;
        case REQ_OPEN: r->kind = REQ_FREE; send_open(mc, now); break;
        case REQ_LIST: {
            /* Start the listing over. */
            r->kind = REQ_FREE;
            mc->listing = false;
            mc->n_todo = mc->todo_at = 0;
            uint8_t zero[16] = {0};
            send_list(mc, zero, now);
            break;
        }
        case REQ_GET: {
            pl_mbox_msg m = {.type = PL_MBOX_GET, .req = r->req, .part = r->part, .attempt = r->attempt};
            memcpy(m.id, mc->f.id, 16);
            r->deadline = now + PL_MBOXC_TIMEOUT;
            send_msg(mc, &m, now);
            break;
        }
        }
    }
    if (mc->open && now >= mc->renew_at) send_open(mc, now);
    pump_deposits(mc, now);
    flush_acks(mc, now);
}

pl_time pl_mboxc_next_timeout(const pl_mboxc *mc)
{
    if (!mc->attached) return PL_TIME_NEVER;
    pl_time t = mc->open ? mc->renew_at : PL_TIME_NEVER;
    for (size_t i = 0; i < MAX_REQ; i++)
        if (mc->reqs[i].kind != REQ_FREE && mc->reqs[i].deadline < t) t = mc->reqs[i].deadline;
    return t;
}

pl_mboxc_err pl_mboxc_new(pl_mboxc **out, const pl_mboxc_config *cfg, const pl_mboxc_io *io)
{
    *out = NULL;
    if (!cfg || !cfg->identity || !cfg->cert || cfg->cert_len > PL_CERT_MAX_SIZE || !cfg->rng || !io || !io->send)
        return PL_MBOXC_ERR_CONFIG;
    const pl_mem *mem = cfg->mem ? cfg->mem : pl_mem_system();
    pl_mboxc *mc = mem->calloc(mem->ctx, 1, sizeof *mc);
    if (!mc) return PL_MBOXC_ERR_NOMEM;
    if (pl_cert_decode(&mc->c, cfg->cert, cfg->cert_len) != PL_CERT_OK ||
        memcmp(mc->c.sign_pk, cfg->identity->sign_pk, 32) != 0) {
        mem->free(mem->ctx, mc);
        return PL_MBOXC_ERR_CONFIG;
    }
    mc->id = *cfg->identity;
    memcpy(mc->cert, cfg->cert, cfg->cert_len);
    mc->cert_len = cfg->cert_len;
    memcpy(mc->ca_pk, cfg->ca_pk, 32);
    mc->rng = cfg->rng;
    mc->mem = mem;
    mc->io = *io;
    *out = mc;
    return PL_MBOXC_OK;
}

void pl_mboxc_free(pl_mboxc *mc)
{
    if (!mc) return;
    const pl_mem *mem = mc->mem;
    fetch_clear(mc);
    for (size_t k = 0; k < PL_MBOXC_MAX_DEPOSITS; k++)
        if (mc->jobs[k].body) {
            sodium_memzero(mc->jobs[k].body, mc->jobs[k].st.body_len);
            mem->free(mem->ctx, mc->jobs[k].body);
        }
    sodium_memzero(mc, sizeof *mc);
    mem->free(mem->ctx, mc);
}

void pl_mboxc_set_crl(pl_mboxc *mc, const pl_crl *crl) { mc->crl = crl; }
pl_mboxc_stats pl_mboxc_get_stats(const pl_mboxc *mc) { return mc->stats; }

const char *pl_mboxc_strerror(pl_mboxc_err err)
{
    switch (err) {
    case PL_MBOXC_OK: return "ok";
    case PL_MBOXC_ERR_CONFIG: return "bad mail client configuration";
    case PL_MBOXC_ERR_NOMEM: return "out of memory";
    case PL_MBOXC_ERR_FULL: return "too many deposits queued";
    case PL_MBOXC_ERR_ARG: return "bad argument";
    }
    return "unknown mail client error";
}
