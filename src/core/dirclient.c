/* dirclient.c - a node's side of the directory (dirclient.h). */
#include "dirclient.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define SEEN_CACHE 256
#define MSG_MAX (32 + PL_RECORD_MAX_SIZE)

typedef struct lookup {
    bool used;
    uint32_t id;
    char name[PL_NAME_MAX + 1];
    uint8_t skip;
    uint8_t tries;
    pl_time deadline;
    pl_time started;
} lookup;

/* The newest sequence number seen per name, so a replayed older record is
 * refused even by a node that just asked for the first time in a while. */
typedef struct seen {
    char name[PL_NAME_MAX + 1];
    uint64_t seq;
} seen;

typedef struct subscription {
    char name[PL_NAME_MAX + 1];
} subscription;

struct pl_dirc {
    pl_identity id;
    uint8_t cert[PL_CERT_MAX_SIZE];
    size_t cert_len;
    uint8_t ca_pk[32];
    const pl_rng *rng;
    const pl_mem *mem;
    pl_dirc_io io;

    bool attached;
    pl_dirc_where where;
    uint8_t presence;
    char status[PL_RECORD_STATUS_MAX + 1];
    uint64_t seq;
    uint32_t publish_req;
    pl_time next_publish;
    pl_time publish_deadline; /* an answer is due by then, or we publish again */
    uint32_t publish_failures;

    /* Both grow on demand (to PL_DIRC_MAX_LOOKUPS and SEEN_CACHE): a
     * simulated million nodes mostly never look anyone up. */
    lookup *lookups;
    uint32_t n_lookups;
    uint32_t next_id;
    seen *seen;
    uint32_t n_seen, seen_next;
    subscription *subs;
    size_t n_subs, cap_subs;
};

/* ---- helpers --------------------------------------------------------------------------- */

static bool send_dir(pl_dirc *dc, const pl_ovl_dir *m, pl_time now)
{
    uint8_t buf[MSG_MAX];
    size_t len = pl_ovl_encode_dir(buf, sizeof buf, m);
    return len && dc->attached && dc->io.send(dc->io.ctx, buf, len, now);
}

static void emit(pl_dirc *dc, const pl_dirc_event *ev)
{
    if (dc->io.event) dc->io.event(dc->io.ctx, ev);
}

static seen *seen_of(pl_dirc *dc, const char *name)
{
    for (size_t i = 0; i < dc->n_seen; i++)
        if (strcmp(dc->seen[i].name, name) == 0) return &dc->seen[i];
    return NULL;
}

/* A slot for a name not seen yet: a new one while the cache grows, then
 * the oldest. */
static seen *seen_slot(pl_dirc *dc)
{
    if (!dc->seen) {
        dc->seen = dc->mem->calloc(dc->mem->ctx, SEEN_CACHE, sizeof *dc->seen);
        if (!dc->seen) return NULL;
    }
    if (dc->n_seen < SEEN_CACHE) return &dc->seen[dc->n_seen++];
    return &dc->seen[dc->seen_next++ % SEEN_CACHE];
}

/* Checks a record for name: it verifies and is not older than one seen.
 * Remembers its sequence number. */
static bool accept_record(pl_dirc *dc, const char *name, const uint8_t *bytes, size_t len, pl_record *r,
                          pl_time now)
{
    if (pl_record_decode(r, bytes, len) != PL_RECORD_OK ||
        pl_record_verify(r, dc->ca_pk, NULL, now / PL_SEC, name, NULL) != PL_RECORD_OK)
        return false;
    seen *s = seen_of(dc, name);
    if (s && r->sequence < s->seq) return false;
    if (!s && (s = seen_slot(dc)) != NULL) snprintf(s->name, sizeof s->name, "%s", name);
    if (s) s->seq = r->sequence;
    return true;
}

/* ---- publishing -------------------------------------------------------------------------------- */

static void publish(pl_dirc *dc, pl_time now)
{
    if (!dc->attached) return;
    pl_record r;
    memset(&r, 0, sizeof r);
    r.version = PL_RECORD_VERSION;
    const pl_dirc_where *w = &dc->where;
    r.flags = w->private_mode ? PL_RECORD_F_PRIVATE : 0;
    r.nat_mapping = w->nat_mapping;
    r.nat_filtering = w->nat_filtering;
    r.nat_flags = w->nat_flags;
    r.capabilities = w->capabilities;
    r.n_supernodes = w->n_supernodes;
    memcpy(r.supernodes, w->supernodes, sizeof r.supernodes);
    r.n_candidates = w->private_mode ? 0 : w->n_candidates;
    memcpy(r.candidates, w->candidates, sizeof r.candidates);
    pl_record_sort_supernodes(&r);
    pl_record_sort_candidates(&r);
    r.presence = dc->presence;
    r.status_len = (uint8_t)strlen(dc->status);
    memcpy(r.status, dc->status, sizeof r.status);
    /* The sequence only grows, across restarts too: it follows the clock in
     * milliseconds, and at least one past the last. */
    uint64_t ms = now / PL_MSEC;
    dc->seq = ms > dc->seq ? ms : dc->seq + 1;
    r.sequence = dc->seq;
    r.issued_at = now / PL_SEC;
    r.expires_at = r.issued_at + PL_DIRC_RECORD_LIFETIME / PL_SEC;
    uint8_t bytes[PL_RECORD_MAX_SIZE];
    size_t len;
    if (pl_record_sign(&r, &dc->id, dc->cert, dc->cert_len) != PL_RECORD_OK ||
        pl_record_encode(&r, bytes, sizeof bytes, &len) != PL_RECORD_OK)
        return;
    pl_ovl_dir m = {.type = PL_OVL_PUBLISH, .req = ++dc->publish_req, .record = bytes, .record_len = len};
    send_dir(dc, &m, now);
    dc->next_publish = now + PL_DIRC_REPUBLISH;
    dc->publish_deadline = now + PL_DIRC_PUBLISH_RETRY;
}

/* A publish that failed or got no answer is tried again, backing off from
 * 5 s to 5 minutes: a record no replica took is a user nobody can find. */
static void publish_failed(pl_dirc *dc, pl_time now)
{
    uint32_t shift = dc->publish_failures < 6 ? dc->publish_failures : 6;
    dc->publish_failures++;
    pl_time wait = PL_DIRC_PUBLISH_RETRY << shift;
    if (wait > 300 * PL_SEC) wait = 300 * PL_SEC;
    dc->next_publish = now + wait;
    dc->publish_deadline = PL_TIME_NEVER;
}

void pl_dirc_attached(pl_dirc *dc, const pl_dirc_where *where, pl_time now)
{
    dc->attached = true;
    dc->where = *where;
    publish(dc, now);
    /* Subscriptions live at the supernode: a new one must hear them all. */
    pl_ovl_names n = {.type = PL_OVL_SUBSCRIBE};
    uint8_t buf[8 + PL_OVL_MAX_NAMES * (PL_NAME_MAX + 1)];
    for (size_t i = 0; i < dc->n_subs; i++) {
        snprintf(n.names[n.n++], PL_NAME_MAX + 1, "%s", dc->subs[i].name);
        if (n.n == PL_OVL_MAX_NAMES || i + 1 == dc->n_subs) {
            size_t len = pl_ovl_encode_names(buf, sizeof buf, &n);
            if (len) dc->io.send(dc->io.ctx, buf, len, now);
            n.n = 0;
        }
    }
    /* Look-ups that were waiting go out now. */
    for (size_t i = 0; i < dc->n_lookups; i++) {
        lookup *l = &dc->lookups[i];
        if (!l->used) continue;
        pl_ovl_dir m = {.type = PL_OVL_LOOKUP, .req = l->id, .index = l->skip};
        memcpy(m.name, l->name, sizeof m.name);
        send_dir(dc, &m, now);
        l->deadline = now + PL_DIRC_LOOKUP_TIMEOUT;
    }
}

void pl_dirc_detached(pl_dirc *dc)
{
    dc->attached = false;
    dc->publish_deadline = PL_TIME_NEVER;
}

void pl_dirc_update(pl_dirc *dc, const pl_dirc_where *where, pl_time now)
{
    dc->where = *where;
    publish(dc, now);
}

pl_dirc_err pl_dirc_set_presence(pl_dirc *dc, uint8_t presence, const char *status, pl_time now)
{
    size_t n = status ? strlen(status) : 0;
    if (presence > PL_PRESENCE_MAX || n > PL_RECORD_STATUS_MAX) return PL_DIRC_ERR_STATUS;
    for (size_t i = 0; i < n; i++)
        if ((uint8_t)status[i] < 0x20 || (uint8_t)status[i] == 0x7f) return PL_DIRC_ERR_STATUS;
    dc->presence = presence;
    memcpy(dc->status, status ? status : "", n);
    dc->status[n] = 0;
    publish(dc, now);
    return PL_DIRC_OK;
}

/* ---- look-ups and subscriptions -------------------------------------------------------------------- */

static void lookup_done(pl_dirc *dc, lookup *l, uint8_t status, const pl_record *r, const uint8_t *bytes,
                        size_t len, bool offline, pl_time now)
{
    char name[PL_NAME_MAX + 1];
    memcpy(name, l->name, sizeof name);
    uint32_t id = l->id;
    memset(l, 0, sizeof *l);
    pl_dirc_event ev = {.type = PL_DIRC_EV_LOOKUP, .id = id, .name = name, .status = status, .record = r,
                        .record_bytes = bytes, .record_len = len, .offline = offline, .now = now};
    emit(dc, &ev);
}

pl_dirc_err pl_dirc_lookup(pl_dirc *dc, const char *name, pl_time now, uint32_t *id)
{
    char norm[PL_NAME_MAX + 1];
    if (pl_name_normalize(name, norm) != PL_NAME_OK) return PL_DIRC_ERR_BAD_NAME;
    lookup *l = NULL;
    for (size_t i = 0; i < dc->n_lookups && !l; i++)
        if (!dc->lookups[i].used) l = &dc->lookups[i];
    if (!l) {
        if (dc->n_lookups == PL_DIRC_MAX_LOOKUPS) return PL_DIRC_ERR_BUSY;
        if (!dc->lookups) {
            dc->lookups = dc->mem->calloc(dc->mem->ctx, PL_DIRC_MAX_LOOKUPS, sizeof *dc->lookups);
            if (!dc->lookups) return PL_DIRC_ERR_NOMEM;
        }
        l = &dc->lookups[dc->n_lookups++];
    }
    l->used = true;
    l->id = ++dc->next_id;
    memcpy(l->name, norm, sizeof l->name);
    l->deadline = now + PL_DIRC_LOOKUP_TIMEOUT;
    l->started = now;
    l->tries = 0;
    if (id) *id = l->id;
    pl_ovl_dir m = {.type = PL_OVL_LOOKUP, .req = l->id};
    memcpy(m.name, norm, sizeof m.name);
    send_dir(dc, &m, now); /* if not attached, it goes out on attaching */
    return PL_DIRC_OK;
}

static void send_names(pl_dirc *dc, uint8_t type, const char *name, pl_time now)
{
    pl_ovl_names n = {.type = type, .n = 1};
    snprintf(n.names[0], PL_NAME_MAX + 1, "%s", name);
    uint8_t buf[64];
    size_t len = pl_ovl_encode_names(buf, sizeof buf, &n);
    if (len && dc->attached) dc->io.send(dc->io.ctx, buf, len, now);
}

pl_dirc_err pl_dirc_subscribe(pl_dirc *dc, const char *name, pl_time now)
{
    char norm[PL_NAME_MAX + 1];
    if (pl_name_normalize(name, norm) != PL_NAME_OK) return PL_DIRC_ERR_BAD_NAME;
    for (size_t i = 0; i < dc->n_subs; i++)
        if (strcmp(dc->subs[i].name, norm) == 0) return PL_DIRC_OK;
    if (dc->n_subs == PL_DIRC_MAX_SUBSCRIPTIONS) return PL_DIRC_ERR_FULL;
    if (dc->n_subs == dc->cap_subs) {
        size_t cap = dc->cap_subs ? 2 * dc->cap_subs : 16;
        subscription *grown = dc->mem->calloc(dc->mem->ctx, cap, sizeof *grown);
        if (!grown) return PL_DIRC_ERR_NOMEM;
        if (dc->subs) {
            memcpy(grown, dc->subs, dc->n_subs * sizeof *grown);
            dc->mem->free(dc->mem->ctx, dc->subs);
        }
        dc->subs = grown;
        dc->cap_subs = cap;
    }
    memcpy(dc->subs[dc->n_subs++].name, norm, sizeof norm);
    send_names(dc, PL_OVL_SUBSCRIBE, norm, now);
    return PL_DIRC_OK;
}

pl_dirc_err pl_dirc_unsubscribe(pl_dirc *dc, const char *name, pl_time now)
{
    char norm[PL_NAME_MAX + 1];
    if (pl_name_normalize(name, norm) != PL_NAME_OK) return PL_DIRC_ERR_BAD_NAME;
    for (size_t i = 0; i < dc->n_subs; i++) {
        if (strcmp(dc->subs[i].name, norm) != 0) continue;
        dc->subs[i] = dc->subs[--dc->n_subs];
        send_names(dc, PL_OVL_UNSUBSCRIBE, norm, now);
        return PL_DIRC_OK;
    }
    return PL_DIRC_OK;
}

/* ---- messages ------------------------------------------------------------------------------------- */

static void on_lookup_reply(pl_dirc *dc, const pl_ovl_dir *m, pl_time now)
{
    lookup *l = NULL;
    for (size_t i = 0; i < dc->n_lookups && !l; i++)
        if (dc->lookups[i].used && dc->lookups[i].id == m->req) l = &dc->lookups[i];
    if (!l) return;
    if (m->status != PL_DIR_OK) {
        lookup_done(dc, l, m->status, NULL, NULL, 0, false, now);
        return;
    }
    pl_record r;
    if (accept_record(dc, l->name, m->record, m->record_len, &r, now)) {
        lookup_done(dc, l, PL_DIR_OK, &r, m->record, m->record_len, m->flags & PL_DIR_F_OFFLINE, now);
        return;
    }
    /* A forged, altered or old record: ask the next replica. */
    if (m->index + 1 < m->count) {
        l->skip = (uint8_t)(m->index + 1);
        l->deadline = now + PL_DIRC_LOOKUP_TIMEOUT;
        pl_ovl_dir again = {.type = PL_OVL_LOOKUP, .req = l->id, .index = l->skip};
        memcpy(again.name, l->name, sizeof again.name);
        send_dir(dc, &again, now);
        return;
    }
    lookup_done(dc, l, PL_DIR_REFUSED, NULL, NULL, 0, false, now);
}

static void on_presence(pl_dirc *dc, const pl_ovl_dir *m, pl_time now)
{
    bool subscribed = false;
    for (size_t i = 0; i < dc->n_subs && !subscribed; i++) subscribed = strcmp(dc->subs[i].name, m->name) == 0;
    if (!subscribed) return;
    pl_record r;
    const pl_record *rec = NULL;
    if (m->record_len) {
        if (!accept_record(dc, m->name, m->record, m->record_len, &r, now)) return;
        rec = &r;
    }
    pl_dirc_event ev = {.type = PL_DIRC_EV_PRESENCE, .name = m->name, .record = rec, .record_bytes = m->record,
                        .record_len = m->record_len, .offline = (m->flags & PL_DIR_F_OFFLINE) || !rec, .now = now};
    emit(dc, &ev);
}

bool pl_dirc_message(pl_dirc *dc, const uint8_t *msg, size_t len, pl_time now)
{
    if (len == 0) return false;
    uint8_t t = msg[0];
    if (t != PL_OVL_PUBLISH_ACK && t != PL_OVL_LOOKUP_REPLY && t != PL_OVL_PRESENCE) return false;
    pl_ovl_dir m;
    if (pl_ovl_decode_dir(&m, msg, len)) return true;
    if (t == PL_OVL_PUBLISH_ACK) {
        if (m.req != dc->publish_req) return true;
        dc->publish_deadline = PL_TIME_NEVER;
        if (m.status == PL_DIR_OK) dc->publish_failures = 0;
        else publish_failed(dc, now);
        pl_dirc_event ev = {.type = PL_DIRC_EV_PUBLISHED, .status = m.status, .stored = m.count, .now = now};
        emit(dc, &ev);
    } else if (t == PL_OVL_LOOKUP_REPLY) {
        on_lookup_reply(dc, &m, now);
    } else {
        on_presence(dc, &m, now);
    }
    return true;
}

void pl_dirc_tick(pl_dirc *dc, pl_time now)
{
    if (dc->attached && now >= dc->publish_deadline) publish_failed(dc, now);
    if (dc->attached && now >= dc->next_publish) publish(dc, now);
    for (size_t i = 0; i < dc->n_lookups; i++) {
        lookup *l = &dc->lookups[i];
        if (!l->used || now < l->deadline) continue;
        /* Unanswered: the supernode may be gone, so the node checks it at
         * once; the look-up is asked again (of the next supernode if this
         * one is lost) until PL_DIRC_LOOKUP_GIVE_UP has passed. */
        if (now - l->started >= PL_DIRC_LOOKUP_GIVE_UP) {
            lookup_done(dc, l, PL_DIR_UNREACHABLE, NULL, NULL, 0, false, now);
        } else if (!dc->attached) {
            l->deadline = now + PL_DIRC_LOOKUP_TIMEOUT;
        } else {
            l->tries++;
            if (dc->io.suspect) dc->io.suspect(dc->io.ctx, now);
            pl_ovl_dir m = {.type = PL_OVL_LOOKUP, .req = l->id, .index = l->skip};
            memcpy(m.name, l->name, sizeof m.name);
            send_dir(dc, &m, now);
            l->deadline = now + PL_DIRC_LOOKUP_TIMEOUT;
            if (l->deadline > l->started + PL_DIRC_LOOKUP_GIVE_UP) l->deadline = l->started + PL_DIRC_LOOKUP_GIVE_UP;
        }
    }
}

pl_time pl_dirc_next_timeout(const pl_dirc *dc)
{
    pl_time t = dc->attached ? dc->next_publish : PL_TIME_NEVER;
    if (dc->attached && dc->publish_deadline < t) t = dc->publish_deadline;
    for (size_t i = 0; i < dc->n_lookups; i++)
        if (dc->lookups[i].used && dc->lookups[i].deadline < t) t = dc->lookups[i].deadline;
    return t;
}

/* ---- set-up ----------------------------------------------------------------------------------------- */

pl_dirc_err pl_dirc_new(pl_dirc **out, const pl_dirc_config *cfg, const pl_dirc_io *io)
{
    *out = NULL;
    if (!cfg || !cfg->identity || !cfg->cert || cfg->cert_len > PL_CERT_MAX_SIZE || !cfg->rng || !io || !io->send)
        return PL_DIRC_ERR_CONFIG;
    const pl_mem *mem = cfg->mem ? cfg->mem : pl_mem_system();
    pl_dirc *dc = mem->calloc(mem->ctx, 1, sizeof *dc);
    if (!dc) return PL_DIRC_ERR_NOMEM;
    dc->id = *cfg->identity;
    memcpy(dc->cert, cfg->cert, cfg->cert_len);
    dc->cert_len = cfg->cert_len;
    memcpy(dc->ca_pk, cfg->ca_pk, 32);
    dc->rng = cfg->rng;
    dc->mem = mem;
    dc->io = *io;
    dc->publish_deadline = PL_TIME_NEVER;
    *out = dc;
    return PL_DIRC_OK;
}

void pl_dirc_free(pl_dirc *dc)
{
    if (!dc) return;
    const pl_mem *mem = dc->mem;
    if (dc->subs) mem->free(mem->ctx, dc->subs);
    if (dc->lookups) mem->free(mem->ctx, dc->lookups);
    if (dc->seen) mem->free(mem->ctx, dc->seen);
    sodium_memzero(dc, sizeof *dc);
    mem->free(mem->ctx, dc);
}

uint64_t pl_dirc_sequence(const pl_dirc *dc) { return dc->seq; }

uint8_t pl_dirc_presence(const pl_dirc *dc, const char **status)
{
    if (status) *status = dc->status;
    return dc->presence;
}

const char *pl_dirc_strerror(pl_dirc_err err)
{
    switch (err) {
    case PL_DIRC_OK: return "ok";
    case PL_DIRC_ERR_CONFIG: return "bad directory client configuration";
    case PL_DIRC_ERR_NOMEM: return "out of memory";
    case PL_DIRC_ERR_BAD_NAME: return "not a valid user name";
    case PL_DIRC_ERR_BUSY: return "too many look-ups in flight";
    case PL_DIRC_ERR_FULL: return "too many subscriptions";
    case PL_DIRC_ERR_STATUS: return "a status text is at most 64 bytes, without control characters";
    }
    return "unknown directory client error";
}
