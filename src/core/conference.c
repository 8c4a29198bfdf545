/*
 * conference.c - conference calls over ordinary calls (conference.h).
 *
 * One record per participant (member), the host's own included; on the
 * host a member also names its leg (the phone call with it) and its place
 * in the mixer. A participant keeps the roster the host sent, in the same
 * records, so that it can take over as host with what it knows.
 *
 * Actions that call into the phone (dial, answer, reject, hang up) are
 * flagged where they are decided and done in pl_conf_tick: phone events
 * reach us from inside the phone, which must not be re-entered there. The
 * phone's events for a call we hang up in the tick do come back to us at
 * once; every record is cleared before such a call so that they find
 * nothing of ours.
 */
#include "conference.h"

#include <sodium.h>
#include <string.h>

#include "wire.h"

#define NO_INDEX 0xffu
#define NAT_CLASSES (PL_MIX_NAT_BLOCKED + 1)
#define HANDOVER_RESEND (100 * PL_MSEC)

typedef struct member {
    bool used;
    bool self;
    bool have_key;
    uint8_t key[32];
    char name[PL_NAME_MAX + 1];
    uint8_t state;          /* PL_CONF_CONNECTED ... */
    pl_conf_report report;
    bool reported;          /* host: a REPORT came (or it is us) */
    /* the host's side of the leg */
    uint32_t call;          /* the phone's call id; 0: none */
    pl_call_state leg_state;
    bool media;             /* the leg's media flows */
    bool dial_due, answer_due;
    bool in_mix;
    uint32_t mix_id;
    uint32_t acked;         /* the highest roster version it acknowledged */
    pl_time next_roster;
    pl_time await_until;    /* AWAITED: dropped then */
    bool have_add;
    uint32_t add_req;
    uint8_t add_status;
} member;

typedef struct early {
    uint32_t call; /* 0: a free entry */
    uint8_t key[32];
    pl_time until;
} early;

struct pl_conf {
    uint8_t own_pk[32];
    char own_name[PL_NAME_MAX + 1];
    const pl_rng *rng;
    const pl_mem *mem;
    uint32_t max;
    uint32_t leg_kbps;
    bool stay_host;
    pl_mix_config mix_cfg;
    pl_conf_io io;
    pl_phone *ph;
    pl_link *link;
    pl_time now;

    pl_conf_role role;
    uint8_t id[PL_CONF_ID_SIZE];
    uint32_t version;
    pl_time started;
    member m[PL_CONF_MAX];
    bool have_host, have_successor;
    uint8_t host_key[32], successor_key[32];
    pl_conf_report own;
    pl_mix *mix;
    uint32_t next_mix_id;
    bool end_due;
    pl_conf_end end_reason;
    pl_conf_end last_end;
    bool multi_off_due;
    /* the host */
    bool move_decided;
    pl_time settle_by;
    bool handing_over, moving, resent;
    pl_time handover_resend, hangup_at;
    /* a participant */
    uint32_t leg, next_leg;
    uint8_t leg_peer[32];
    pl_call_state leg_state;
    bool leg_media, leg_answered;
    bool have_new_host, dial_due;
    uint8_t new_host_key[32];
    char new_host_name[PL_NAME_MAX + 1];
    uint32_t hangup_old; /* a leg to an old host, to hang up at the next tick */
    bool report_due;
    pl_time next_report;
    /* a roster arriving in pages */
    bool asm_active;
    uint8_t asm_from[32];
    uint32_t asm_version, asm_got;
    uint8_t roster_from[32]; /* who sent the roster we hold (versions are per host) */
    uint8_t asm_flags, asm_host, asm_successor, asm_total;
    pl_conf_entry asm_e[PL_CONF_MAX];
    /* our ADD to the host */
    bool add_pending;
    uint32_t add_req, next_req;
    uint8_t add_tries;
    pl_time add_next;
    char add_name[PL_NAME_MAX + 1];

    early early[PL_CONF_MAX];
    pl_conf_stats st;
    uint8_t buf[PL_CONF_MSG_MAX];
    pl_conf_msg msg;
};

/* ---- the messages' codec --------------------------------------------------------------------------------- */

static bool canonical_name(const char *name)
{
    char norm[PL_NAME_MAX + 1];
    return pl_name_normalize(name, norm) == PL_NAME_OK && strcmp(norm, name) == 0;
}

static void write_name(pl_writer *w, const char *name)
{
    size_t n = strlen(name);
    pl_write_u8(w, (uint8_t)n);
    pl_write_bytes(w, name, n);
}

static bool read_name(pl_reader *r, char out[PL_NAME_MAX + 1])
{
    uint8_t n = pl_read_u8(r);
    if (n < PL_NAME_MIN || n > PL_NAME_MAX) return false;
    pl_read_bytes(r, out, n);
    if (r->err) return false;
    out[n] = 0;
    return memchr(out, 0, n) == NULL && canonical_name(out);
}

static void write_report(pl_writer *w, const pl_conf_report *r)
{
    pl_write_u32(w, r->up_kbps);
    pl_write_u32(w, r->down_kbps);
    pl_write_u16(w, r->rtt_ms);
    pl_write_u8(w, r->nat);
    pl_write_u8(w, r->can_host ? PL_CONF_R_CAN_HOST : 0);
}

static bool read_report(pl_reader *r, pl_conf_report *out)
{
    out->up_kbps = pl_read_u32(r);
    out->down_kbps = pl_read_u32(r);
    out->rtt_ms = pl_read_u16(r);
    out->nat = pl_read_u8(r);
    uint8_t flags = pl_read_u8(r);
    out->can_host = flags & PL_CONF_R_CAN_HOST;
    return !r->err && out->nat < NAT_CLASSES && !(flags & ~PL_CONF_R_CAN_HOST);
}

size_t pl_conf_msg_encode(uint8_t *buf, size_t cap, const pl_conf_msg *m)
{
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, m->type);
    pl_write_u8(&w, PL_CONF_VERSION);
    pl_write_bytes(&w, m->conf_id, PL_CONF_ID_SIZE);
    switch (m->type) {
    case PL_CONF_MSG_ROSTER:
        if ((m->flags & ~(PL_CONF_F_HANDOVER | PL_CONF_F_MOVE)) ||
            ((m->flags & PL_CONF_F_MOVE) && !(m->flags & PL_CONF_F_HANDOVER)))
            return 0;
        if (m->total == 0 || m->total > PL_CONF_MAX || m->count == 0 || m->count > PL_CONF_PAGE ||
            (unsigned)m->first + m->count > m->total || m->host >= m->total)
            return 0;
        if (m->successor != NO_INDEX && (m->successor >= m->total || m->successor == m->host)) return 0;
        if ((m->flags & PL_CONF_F_HANDOVER) && m->successor == NO_INDEX) return 0;
        pl_write_u32(&w, m->version);
        pl_write_u8(&w, m->flags);
        pl_write_u8(&w, m->host);
        pl_write_u8(&w, m->successor);
        pl_write_u8(&w, m->total);
        pl_write_u8(&w, m->first);
        pl_write_u8(&w, m->count);
        for (uint8_t i = 0; i < m->count; i++) {
            const pl_conf_entry *e = &m->entries[i];
            if (!canonical_name(e->name) || e->state > PL_CONF_AWAITED || e->report.nat >= NAT_CLASSES) return 0;
            pl_write_bytes(&w, e->key, 32);
            write_name(&w, e->name);
            pl_write_u8(&w, e->state);
            write_report(&w, &e->report);
        }
        break;
    case PL_CONF_MSG_REPORT:
        if (m->report.nat >= NAT_CLASSES) return 0;
        pl_write_u32(&w, m->version);
        write_report(&w, &m->report);
        break;
    case PL_CONF_MSG_ADD:
        if (!canonical_name(m->name)) return 0;
        pl_write_u32(&w, m->req);
        write_name(&w, m->name);
        break;
    case PL_CONF_MSG_ADD_RESULT:
        if (m->status > PL_CONF_ADD_NOT_HOST) return 0;
        pl_write_u32(&w, m->req);
        pl_write_u8(&w, m->status);
        break;
    default: return 0;
    }
    return w.err ? 0 : w.off;
}

bool pl_conf_msg_decode(pl_conf_msg *m, const uint8_t *buf, size_t len)
{
    memset(m, 0, sizeof *m);
    pl_reader r = pl_reader_make(buf, len);
    m->type = pl_read_u8(&r);
    uint8_t version = pl_read_u8(&r);
    pl_read_bytes(&r, m->conf_id, PL_CONF_ID_SIZE);
    if (r.err || version != PL_CONF_VERSION) return false;
    switch (m->type) {
    case PL_CONF_MSG_ROSTER:
        m->version = pl_read_u32(&r);
        m->flags = pl_read_u8(&r);
        m->host = pl_read_u8(&r);
        m->successor = pl_read_u8(&r);
        m->total = pl_read_u8(&r);
        m->first = pl_read_u8(&r);
        m->count = pl_read_u8(&r);
        if (r.err || (m->flags & ~(PL_CONF_F_HANDOVER | PL_CONF_F_MOVE)) ||
            ((m->flags & PL_CONF_F_MOVE) && !(m->flags & PL_CONF_F_HANDOVER)))
            return false;
        if (m->total == 0 || m->total > PL_CONF_MAX || m->count == 0 || m->count > PL_CONF_PAGE ||
            (unsigned)m->first + m->count > m->total || m->host >= m->total)
            return false;
        if (m->successor != NO_INDEX && (m->successor >= m->total || m->successor == m->host)) return false;
        if ((m->flags & PL_CONF_F_HANDOVER) && m->successor == NO_INDEX) return false;
        for (uint8_t i = 0; i < m->count; i++) {
            pl_conf_entry *e = &m->entries[i];
            pl_read_bytes(&r, e->key, 32);
            if (!read_name(&r, e->name)) return false;
            e->state = pl_read_u8(&r);
            if (!read_report(&r, &e->report) || e->state > PL_CONF_AWAITED) return false;
        }
        break;
    case PL_CONF_MSG_REPORT:
        m->version = pl_read_u32(&r);
        if (!read_report(&r, &m->report)) return false;
        break;
    case PL_CONF_MSG_ADD:
        m->req = pl_read_u32(&r);
        if (!read_name(&r, m->name)) return false;
        break;
    case PL_CONF_MSG_ADD_RESULT:
        m->req = pl_read_u32(&r);
        m->status = pl_read_u8(&r);
        if (m->status > PL_CONF_ADD_NOT_HOST) return false;
        break;
    default: return false;
    }
    return pl_reader_done(&r);
}

/* ---- members ------------------------------------------------------------------------------------------------ */

static member *find_key(pl_conf *c, const uint8_t key[32])
{
    for (uint32_t i = 0; i < PL_CONF_MAX; i++)
        if (c->m[i].used && c->m[i].have_key && memcmp(c->m[i].key, key, 32) == 0) return &c->m[i];
    return NULL;
}

static member *find_name(pl_conf *c, const char *name)
{
    for (uint32_t i = 0; i < PL_CONF_MAX; i++)
        if (c->m[i].used && strcmp(c->m[i].name, name) == 0) return &c->m[i];
    return NULL;
}

static member *find_call(pl_conf *c, uint32_t call)
{
    if (!call) return NULL;
    for (uint32_t i = 0; i < PL_CONF_MAX; i++)
        if (c->m[i].used && c->m[i].call == call) return &c->m[i];
    return NULL;
}

static member *self_of(pl_conf *c)
{
    for (uint32_t i = 0; i < PL_CONF_MAX; i++)
        if (c->m[i].used && c->m[i].self) return &c->m[i];
    return NULL;
}

static uint32_t count_members(const pl_conf *c)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < PL_CONF_MAX; i++) n += c->m[i].used;
    return n;
}

static uint32_t count_others(const pl_conf *c, int state)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < PL_CONF_MAX; i++)
        n += c->m[i].used && !c->m[i].self && (state < 0 || c->m[i].state == state);
    return n;
}

static member *add_member(pl_conf *c, const uint8_t *key, const char *name, uint8_t state)
{
    if (count_members(c) >= c->max) return NULL;
    for (uint32_t i = 0; i < PL_CONF_MAX; i++) {
        member *m = &c->m[i];
        if (m->used) continue;
        memset(m, 0, sizeof *m);
        m->used = true;
        if (key) {
            memcpy(m->key, key, 32);
            m->have_key = true;
        }
        snprintf(m->name, sizeof m->name, "%s", name);
        m->state = state;
        m->mix_id = ++c->next_mix_id;
        return m;
    }
    return NULL;
}

static void drop_member(pl_conf *c, member *m)
{
    if (m->in_mix && c->mix) pl_mix_leave(c->mix, m->mix_id);
    memset(m, 0, sizeof *m);
}

/* ---- events ---------------------------------------------------------------------------------------------------- */

static void emit(pl_conf *c, pl_conf_event_type type, uint32_t call, const char *name, uint8_t reason,
                 uint8_t status)
{
    if (!c->io.event) return;
    pl_conf_event ev = {type, c->role, call, name, reason, status, c->end_reason, c->now};
    c->io.event(c->io.ctx, &ev);
}

/* ---- the host's choice -------------------------------------------------------------------------------------------- */

static void add_rtt(const pl_conf *c, uint32_t call, uint64_t *sum, uint64_t *n)
{
    pl_phone_call_info info;
    if (call && pl_phone_get_info(c->ph, call, &info) && info.stats.rtt_known) {
        *sum += info.stats.rtt;
        (*n)++;
    }
}

static pl_conf_report report_of(const pl_conf *c, const member *m)
{
    if (!m->self) return m->report;
    pl_conf_report r = c->own;
    /* Our RTT: the mean over our legs (a participant has one). */
    uint64_t sum = 0, n = 0;
    if (c->role == PL_CONF_HOST) {
        for (uint32_t i = 0; i < PL_CONF_MAX; i++)
            if (c->m[i].used && !c->m[i].self) add_rtt(c, c->m[i].call, &sum, &n);
    } else {
        add_rtt(c, c->leg, &sum, &n);
    }
    uint64_t ms = n ? sum / n / PL_MSEC : 0;
    r.rtt_ms = (uint16_t)(ms > 65535 ? 65535 : ms);
    return r;
}

static pl_mix_candidate candidate_of(const pl_conf *c, const member *m)
{
    pl_mix_candidate x;
    memset(&x, 0, sizeof x);
    pl_conf_report r = report_of(c, m);
    memcpy(x.key, m->key, 32);
    x.up_kbps = r.up_kbps;
    x.down_kbps = r.down_kbps;
    x.rtt_ms = r.rtt_ms;
    x.nat = r.nat;
    x.can_host = r.can_host;
    return x;
}

/* The host and everyone connected, as election candidates; *self_at: our
 * index. Returns how many. */
static size_t candidates(pl_conf *c, pl_mix_candidate *out, const member **who, int *self_at)
{
    size_t n = 0;
    *self_at = -1;
    for (uint32_t i = 0; i < PL_CONF_MAX; i++) {
        const member *m = &c->m[i];
        if (!m->used || !m->have_key || (!m->self && m->state != PL_CONF_CONNECTED)) continue;
        if (m->self) *self_at = (int)n;
        who[n] = m;
        out[n++] = candidate_of(c, m);
    }
    return n;
}

/* The successor: the best-ranked connected participant that is not the
 * host, in a conference of everyone connected. */
static void elect_successor(pl_conf *c)
{
    pl_mix_candidate cand[PL_CONF_MAX];
    const member *who[PL_CONF_MAX];
    int self_at, host, second;
    size_t n = candidates(c, cand, who, &self_at);
    c->have_successor = false;
    if (n < 2 || !pl_mix_elect(cand, n, c->leg_kbps, &host, &second)) return;
    int pick = host == self_at ? second : host;
    if (pick < 0) return;
    memcpy(c->successor_key, who[pick]->key, 32);
    c->have_successor = true;
}

static bool feasible(const pl_conf *c, const pl_mix_candidate *x, size_t n)
{
    uint64_t low = x->up_kbps < x->down_kbps ? x->up_kbps : x->down_kbps;
    return x->can_host && low >= (uint64_t)c->leg_kbps * (n - 1);
}

/* A new roster version: everyone gets it (again) soon. */
static void bump(pl_conf *c)
{
    c->version++;
    if (c->role == PL_CONF_HOST && !c->handing_over) elect_successor(c);
    for (uint32_t i = 0; i < PL_CONF_MAX; i++)
        if (c->m[i].used && !c->m[i].self) c->m[i].next_roster = c->now;
    emit(c, PL_CONF_EV_ROSTER, 0, NULL, 0, 0);
}

/* ---- sending ----------------------------------------------------------------------------------------------------- */

static bool send_msg(pl_conf *c, const uint8_t pk[32], const pl_conf_msg *m)
{
    size_t n = pl_conf_msg_encode(c->buf, sizeof c->buf, m);
    if (!n || !pl_link_is_up(c->link, pk)) return false;
    return pl_link_send(c->link, pk, NULL, c->buf, n, c->now) == PL_LINK_OK;
}

static void send_roster(pl_conf *c, const member *to, uint8_t flags)
{
    pl_conf_entry all[PL_CONF_MAX];
    uint8_t n = 0, host = NO_INDEX, successor = NO_INDEX;
    for (uint32_t i = 0; i < PL_CONF_MAX; i++) {
        member *m = &c->m[i];
        if (!m->used || !m->have_key) continue;
        pl_conf_entry *e = &all[n];
        memcpy(e->key, m->key, 32);
        memcpy(e->name, m->name, sizeof e->name);
        e->state = m->state;
        e->report = report_of(c, m);
        if (m->self) host = n;
        if (c->have_successor && memcmp(m->key, c->successor_key, 32) == 0) successor = n;
        n++;
    }
    if (host == NO_INDEX) return;
    if (successor == NO_INDEX) flags = 0;
    pl_conf_msg *msg = &c->msg;
    for (uint8_t first = 0; first < n; first += PL_CONF_PAGE) {
        memset(msg, 0, sizeof *msg);
        msg->type = PL_CONF_MSG_ROSTER;
        memcpy(msg->conf_id, c->id, PL_CONF_ID_SIZE);
        msg->version = c->version;
        msg->flags = flags;
        msg->host = host;
        msg->successor = successor;
        msg->total = n;
        msg->first = first;
        msg->count = (uint8_t)(n - first < PL_CONF_PAGE ? n - first : PL_CONF_PAGE);
        memcpy(msg->entries, all + first, msg->count * sizeof all[0]);
        if (send_msg(c, to->key, msg)) c->st.pages_sent++;
    }
    c->st.rosters_sent++;
}

/* A leg that can carry messages: the call reached the other side. */
static bool leg_up(const member *m)
{
    return m->call && (m->leg_state == PL_CALL_RINGING_REMOTE || m->leg_state == PL_CALL_ACTIVE ||
                       m->leg_state == PL_CALL_HELD || m->leg_state == PL_CALL_RINGING);
}

static void send_report(pl_conf *c)
{
    pl_conf_msg *msg = &c->msg;
    memset(msg, 0, sizeof *msg);
    msg->type = PL_CONF_MSG_REPORT;
    memcpy(msg->conf_id, c->id, PL_CONF_ID_SIZE);
    msg->version = c->version;
    member *me = self_of(c);
    if (me) msg->report = report_of(c, me);
    else msg->report = c->own;
    if (send_msg(c, c->leg_peer, msg)) c->st.reports_sent++;
}

static void send_add_result(pl_conf *c, const uint8_t to[32], uint32_t req, uint8_t status)
{
    pl_conf_msg *msg = &c->msg;
    memset(msg, 0, sizeof *msg);
    msg->type = PL_CONF_MSG_ADD_RESULT;
    memcpy(msg->conf_id, c->id, PL_CONF_ID_SIZE);
    msg->req = req;
    msg->status = status;
    send_msg(c, to, msg);
}

/* ---- roles ------------------------------------------------------------------------------------------------------- */

static bool ensure_mix(pl_conf *c)
{
    if (c->mix) return true;
    pl_mix_config mc = c->mix_cfg;
    mc.mem = c->mem;
    if (mc.max_participants == 0) mc.max_participants = c->max;
    return pl_mix_new(&c->mix, &mc) == PL_MIX_OK;
}

static void free_mix(pl_conf *c)
{
    pl_mix_free(c->mix);
    c->mix = NULL;
    for (uint32_t i = 0; i < PL_CONF_MAX; i++) c->m[i].in_mix = false;
}

/* The conference is over for us (done in the tick: it hangs up). */
static void end_soon(pl_conf *c, pl_conf_end why)
{
    if (c->end_due) return;
    c->end_due = true;
    c->end_reason = why;
}

static member *add_self(pl_conf *c)
{
    member *me = self_of(c);
    if (!me) me = add_member(c, c->own_pk, c->own_name, PL_CONF_CONNECTED);
    if (me) me->self = true;
    return me;
}

static void begin(pl_conf *c, pl_conf_role role)
{
    memset(c->m, 0, sizeof c->m);
    memset(c->early, 0, sizeof c->early);
    c->role = role;
    c->version = 0;
    c->started = c->now;
    c->have_host = c->have_successor = false;
    c->end_due = false;
    c->end_reason = PL_CONF_END_NONE;
    c->move_decided = c->handing_over = c->moving = c->resent = false;
    c->settle_by = c->now + PL_CONF_SETTLE;
    c->leg = c->next_leg = c->hangup_old = 0;
    c->leg_media = c->leg_answered = false;
    c->have_new_host = c->dial_due = false;
    c->report_due = false;
    c->asm_active = false;
    c->add_pending = false;
    c->multi_off_due = false;
    pl_phone_set_multi_call(c->ph, true);
}

/* We host now: after a hand-over (keep_old: the old host moves and calls
 * in too), or at the start. */
static void become_host(pl_conf *c, bool keep_old)
{
    uint8_t old[32];
    bool had_old = c->have_host;
    memcpy(old, c->host_key, 32);
    if (!ensure_mix(c)) {
        end_soon(c, PL_CONF_END_HOST_LOST);
        return;
    }
    c->role = PL_CONF_HOST;
    memcpy(c->host_key, c->own_pk, 32);
    c->have_host = true;
    c->have_successor = false;
    c->move_decided = true; /* hosting moves at most once, at the start */
    for (uint32_t i = 0; i < PL_CONF_MAX; i++) {
        member *m = &c->m[i];
        if (!m->used) continue;
        if (m->self) {
            m->state = PL_CONF_CONNECTED;
            continue;
        }
        bool was_host = had_old && m->have_key && memcmp(m->key, old, 32) == 0;
        if (was_host && !keep_old) {
            drop_member(c, m);
            continue;
        }
        uint8_t was = m->state;
        m->call = 0;
        m->leg_state = PL_CALL_IDLE;
        m->media = false;
        m->acked = 0;
        m->reported = false;
        if (was == PL_CONF_JOINING && !was_host) {
            /* The old host was still calling it: we call it now. */
            m->dial_due = true;
        } else {
            m->state = PL_CONF_AWAITED;
            m->await_until = c->now + PL_CONF_AWAIT;
        }
    }
    member *me = add_self(c);
    if (me && !me->in_mix && pl_mix_join(c->mix, me->mix_id) == PL_MIX_OK) me->in_mix = true;
    /* Our leg to the old host goes (a moving old host calls us anew). */
    if (c->leg) c->hangup_old = c->leg;
    if (c->next_leg && !c->hangup_old) c->hangup_old = c->next_leg;
    c->leg = c->next_leg = 0;
    c->leg_media = false;
    c->have_new_host = c->dial_due = false;
    c->add_pending = false;
    /* Those who called early are answered now. */
    for (uint32_t i = 0; i < PL_CONF_MAX; i++) {
        early *e = &c->early[i];
        if (!e->call) continue;
        member *m = find_key(c, e->key);
        if (m && m->state == PL_CONF_AWAITED && !m->call) {
            m->call = e->call;
            m->state = PL_CONF_JOINING;
            m->leg_state = PL_CALL_RINGING;
            m->answer_due = true;
            e->call = 0;
        }
    }
    c->st.handovers++;
    bump(c);
    emit(c, PL_CONF_EV_HOST, 0, NULL, 0, 0);
}

/* A participant lost its host: the successor takes over (or we do). */
static void go_to_successor(pl_conf *c, bool move)
{
    if (c->have_new_host) return;
    if (!c->have_successor) {
        end_soon(c, PL_CONF_END_HOST_LOST);
        return;
    }
    if (memcmp(c->successor_key, c->own_pk, 32) == 0) {
        become_host(c, move);
        return;
    }
    member *s = find_key(c, c->successor_key);
    if (!s) {
        end_soon(c, PL_CONF_END_HOST_LOST);
        return;
    }
    c->have_new_host = true;
    memcpy(c->new_host_key, c->successor_key, 32);
    snprintf(c->new_host_name, sizeof c->new_host_name, "%s", s->name);
    c->dial_due = true;
}

/* ---- the user's side ------------------------------------------------------------------------------------------------ */

/* The one answered call we are in (to adopt into a conference), or 0;
 * *more: there is more than one live call. */
static uint32_t sole_active_call(pl_conf *c, bool *more)
{
    uint32_t ids[PL_PHONE_MAX_CALLS], found = 0;
    size_t n = pl_phone_list(c->ph, ids, PL_PHONE_MAX_CALLS), live = 0;
    for (size_t i = 0; i < n; i++) {
        pl_phone_call_info info;
        if (!pl_phone_get_info(c->ph, ids[i], &info) || info.state == PL_CALL_ENDED) continue;
        live++;
        if (info.state == PL_CALL_ACTIVE || info.state == PL_CALL_HELD) found = ids[i];
    }
    *more = live > 1;
    return live == 1 ? found : 0;
}

static pl_conf_err host_add(pl_conf *c, const char *name, uint8_t *status)
{
    char norm[PL_NAME_MAX + 1];
    *status = PL_CONF_ADD_BAD_NAME;
    if (!name || pl_name_normalize(name, norm) != PL_NAME_OK) return PL_CONF_ERR_BAD_NAME;
    if (strcmp(norm, c->own_name) == 0) {
        *status = PL_CONF_ADD_ALREADY;
        return PL_CONF_ERR_SELF;
    }
    if (find_name(c, norm)) {
        *status = PL_CONF_ADD_ALREADY;
        return PL_CONF_ERR_ALREADY;
    }
    member *m = add_member(c, NULL, norm, PL_CONF_JOINING);
    if (!m) {
        *status = PL_CONF_ADD_FULL;
        return PL_CONF_ERR_FULL;
    }
    m->dial_due = true;
    *status = PL_CONF_ADD_DIALING;
    return PL_CONF_OK;
}

/* Starts hosting; an answered call we are in becomes the first leg. */
static pl_conf_err start_hosting(pl_conf *c, uint32_t adopt)
{
    begin(c, PL_CONF_HOST);
    if (!ensure_mix(c)) {
        c->role = PL_CONF_NONE;
        pl_phone_set_multi_call(c->ph, false);
        return PL_CONF_ERR_NOMEM;
    }
    c->rng->fill(c->rng->ctx, c->id, PL_CONF_ID_SIZE);
    memcpy(c->host_key, c->own_pk, 32);
    c->have_host = true;
    member *me = add_self(c);
    if (me && pl_mix_join(c->mix, me->mix_id) == PL_MIX_OK) me->in_mix = true;
    if (adopt) {
        pl_phone_call_info info;
        if (pl_phone_get_info(c->ph, adopt, &info)) {
            member *m = add_member(c, info.peer_pk, info.peer_name, PL_CONF_CONNECTED);
            if (m) {
                m->call = adopt;
                m->leg_state = info.state;
                m->media = info.media;
            }
        }
    }
    emit(c, PL_CONF_EV_STARTED, adopt, NULL, 0, 0);
    return PL_CONF_OK;
}

pl_conf_err pl_conf_start(pl_conf *c, const char *const *names, size_t n, pl_time now)
{
    c->now = now;
    if (c->role != PL_CONF_NONE) return PL_CONF_ERR_BUSY;
    if (n == 0 || n + 1 > c->max) return n ? PL_CONF_ERR_FULL : PL_CONF_ERR_BAD_NAME;
    char norm[PL_NAME_MAX + 1];
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || pl_name_normalize(names[i], norm) != PL_NAME_OK) return PL_CONF_ERR_BAD_NAME;
        if (strcmp(norm, c->own_name) == 0) return PL_CONF_ERR_SELF;
    }
    bool more;
    uint32_t adopt = sole_active_call(c, &more);
    if (more) return PL_CONF_ERR_BUSY;
    pl_conf_err e = start_hosting(c, adopt);
    if (e) return e;
    uint8_t status;
    for (size_t i = 0; i < n; i++) host_add(c, names[i], &status); /* a name twice is called once */
    bump(c);
    return PL_CONF_OK;
}

pl_conf_err pl_conf_add(pl_conf *c, const char *name, pl_time now)
{
    c->now = now;
    char norm[PL_NAME_MAX + 1];
    if (!name || pl_name_normalize(name, norm) != PL_NAME_OK) return PL_CONF_ERR_BAD_NAME;
    if (strcmp(norm, c->own_name) == 0) return PL_CONF_ERR_SELF;
    uint8_t status;
    switch (c->role) {
    case PL_CONF_NONE: {
        bool more;
        uint32_t adopt = sole_active_call(c, &more);
        if (!adopt) return more ? PL_CONF_ERR_BUSY : PL_CONF_ERR_NONE;
        pl_conf_err e = start_hosting(c, adopt);
        if (e) return e;
        e = host_add(c, norm, &status);
        bump(c);
        return e;
    }
    case PL_CONF_HOST: {
        if (c->handing_over) return PL_CONF_ERR_STATE;
        pl_conf_err e = host_add(c, norm, &status);
        if (!e) bump(c);
        return e;
    }
    case PL_CONF_PARTICIPANT:
        if (find_name(c, norm)) return PL_CONF_ERR_ALREADY;
        if (c->add_pending || c->have_new_host || !c->leg) return PL_CONF_ERR_STATE;
        c->add_pending = true;
        c->add_req = ++c->next_req;
        c->add_tries = 0;
        c->add_next = now;
        snprintf(c->add_name, sizeof c->add_name, "%s", norm);
        return PL_CONF_OK;
    }
    return PL_CONF_ERR_NONE;
}

pl_conf_err pl_conf_leave(pl_conf *c, pl_time now)
{
    c->now = now;
    if (c->role == PL_CONF_NONE) return PL_CONF_ERR_NONE;
    if (c->role == PL_CONF_PARTICIPANT || c->handing_over) {
        end_soon(c, PL_CONF_END_LEFT);
        return PL_CONF_OK;
    }
    /* The host hands over to its successor, if anyone is connected. */
    if (!c->have_successor) elect_successor(c);
    if (!c->have_successor) {
        end_soon(c, PL_CONF_END_LEFT);
        return PL_CONF_OK;
    }
    c->handing_over = true;
    c->moving = false;
    c->resent = false;
    c->handover_resend = now; /* the first copy goes at the next tick */
    c->hangup_at = now + PL_CONF_HANDOVER_LINGER;
    bump(c); /* HANDOVER is a roster of its own: a copy of the last would be ignored */
    return PL_CONF_OK;
}

void pl_conf_set_report(pl_conf *c, const pl_conf_report *r)
{
    pl_conf_report old = c->own;
    c->own = *r;
    if (c->own.nat >= NAT_CLASSES) c->own.nat = PL_MIX_NAT_BLOCKED;
    bool changed = old.up_kbps != c->own.up_kbps || old.down_kbps != c->own.down_kbps || old.nat != c->own.nat ||
                   old.can_host != c->own.can_host;
    if (!changed) return;
    if (c->role == PL_CONF_HOST) bump(c);
    else if (c->role == PL_CONF_PARTICIPANT) c->report_due = true;
}

/* ---- phone events ------------------------------------------------------------------------------------------------ */

static bool host_phone_event(pl_conf *c, const pl_phone_event *ev)
{
    const pl_phone_call_info *in = ev->info;
    member *m = find_call(c, ev->id);
    if (!m) {
        if (ev->type != PL_PHONE_EV_INCOMING) return false;
        member *a = find_key(c, in->peer_pk);
        if (!a || a->self || a->state != PL_CONF_AWAITED || a->call) return false;
        /* A participant calling in after a hand-over. */
        a->call = ev->id;
        a->state = PL_CONF_JOINING;
        a->leg_state = PL_CALL_RINGING;
        a->answer_due = true;
        return true;
    }
    switch (ev->type) {
    case PL_PHONE_EV_DIALING: {
        member *dup = find_key(c, in->peer_pk);
        if (dup && dup != m) {
            /* Added twice under another name form: one leg is enough. */
            m->answer_due = false;
            m->dial_due = false;
            m->state = PL_CONF_JOINING;
            m->leg_state = PL_CALL_ENDED; /* hung up at the next tick */
            break;
        }
        memcpy(m->key, in->peer_pk, 32);
        m->have_key = true;
        snprintf(m->name, sizeof m->name, "%s", in->peer_name);
        m->leg_state = in->state;
        break;
    }
    case PL_PHONE_EV_STATE:
        m->leg_state = in->state;
        if (in->state == PL_CALL_RINGING_REMOTE) m->next_roster = c->now;
        if (in->state == PL_CALL_ACTIVE && m->state != PL_CONF_CONNECTED) {
            m->state = PL_CONF_CONNECTED;
            emit(c, PL_CONF_EV_JOINED, ev->id, m->name, 0, 0);
            bump(c);
        }
        break;
    case PL_PHONE_EV_MEDIA: m->media = in->media; break;
    case PL_PHONE_EV_ENDED: {
        if (c->handing_over) {
            /* The roster stands until we are gone: the participants are
             * on their way to the new host. */
            if (m->in_mix && c->mix) pl_mix_leave(c->mix, m->mix_id);
            m->in_mix = m->media = false;
            m->call = 0;
            m->leg_state = PL_CALL_ENDED;
            break;
        }
        char name[PL_NAME_MAX + 1];
        snprintf(name, sizeof name, "%s", m->name);
        drop_member(c, m);
        emit(c, PL_CONF_EV_LEFT, ev->id, name, in->end_reason, 0);
        bump(c);
        break;
    }
    default: break;
    }
    return true;
}

static bool participant_phone_event(pl_conf *c, const pl_phone_event *ev)
{
    const pl_phone_call_info *in = ev->info;
    if (ev->id && ev->id == c->leg) {
        switch (ev->type) {
        case PL_PHONE_EV_STATE:
            c->leg_state = in->state;
            if (in->state == PL_CALL_ACTIVE) {
                c->leg_answered = true;
                c->report_due = true;
            }
            break;
        case PL_PHONE_EV_MEDIA: c->leg_media = in->media; break;
        case PL_PHONE_EV_ENDED:
            c->leg = 0;
            c->leg_media = false;
            if (in->end_local && (in->end_reason == PL_CALL_END_HANGUP_LOCAL || in->end_reason == PL_CALL_END_CANCELLED))
                end_soon(c, PL_CONF_END_LEFT); /* our user hung up: that is leaving */
            else if (!c->leg_answered && !c->have_new_host)
                end_soon(c, PL_CONF_END_DECLINED);
            else
                go_to_successor(c, false);
            break;
        default: break;
        }
        return true;
    }
    if (ev->id && ev->id == c->next_leg) {
        switch (ev->type) {
        case PL_PHONE_EV_DIALING:
            if (memcmp(in->peer_pk, c->new_host_key, 32) != 0) {
                /* The name now belongs to another key: not the host we expect. */
                c->hangup_old = c->next_leg;
                c->next_leg = 0;
                end_soon(c, PL_CONF_END_HOST_LOST);
            }
            break;
        case PL_PHONE_EV_STATE:
            if (in->state == PL_CALL_ACTIVE) {
                /* The new host answered: our leg from now on. */
                if (c->leg) c->hangup_old = c->leg;
                c->leg = c->next_leg;
                c->next_leg = 0;
                memcpy(c->leg_peer, c->new_host_key, 32);
                memcpy(c->host_key, c->new_host_key, 32);
                c->have_host = true;
                c->have_new_host = false;
                c->leg_state = in->state;
                c->leg_answered = true;
                c->leg_media = in->media;
                c->report_due = true;
                emit(c, PL_CONF_EV_HOST, c->leg, NULL, 0, 0);
            }
            break;
        case PL_PHONE_EV_MEDIA: break;
        case PL_PHONE_EV_ENDED:
            c->next_leg = 0;
            end_soon(c, PL_CONF_END_HOST_LOST);
            break;
        default: break;
        }
        return true;
    }
    if (ev->type == PL_PHONE_EV_INCOMING) {
        /* A participant calling us, the successor, before we know that the
         * host is gone: it rings until we do. */
        bool successor = c->have_successor && memcmp(c->successor_key, c->own_pk, 32) == 0;
        member *m = find_key(c, in->peer_pk);
        if (!successor || !m || m->self) return false;
        for (uint32_t i = 0; i < PL_CONF_MAX; i++) {
            early *e = &c->early[i];
            if (e->call) continue;
            e->call = ev->id;
            memcpy(e->key, in->peer_pk, 32);
            e->until = c->now + PL_CONF_EARLY_WAIT;
            return true;
        }
        return false;
    }
    if (ev->type == PL_PHONE_EV_ENDED) {
        for (uint32_t i = 0; i < PL_CONF_MAX; i++)
            if (c->early[i].call == ev->id) {
                c->early[i].call = 0;
                return true;
            }
        if (ev->id == c->hangup_old) c->hangup_old = 0;
    }
    return false;
}

bool pl_conf_phone_event(pl_conf *c, const pl_phone_event *ev)
{
    c->now = ev->now;
    switch (c->role) {
    case PL_CONF_HOST: return host_phone_event(c, ev);
    case PL_CONF_PARTICIPANT: return participant_phone_event(c, ev);
    default: return false;
    }
}

/* ---- messages ------------------------------------------------------------------------------------------------------- */

/* The live call we have with pk, or 0. */
static uint32_t call_with(pl_conf *c, const uint8_t pk[32], pl_phone_call_info *info)
{
    uint32_t ids[PL_PHONE_MAX_CALLS];
    size_t n = pl_phone_list(c->ph, ids, PL_PHONE_MAX_CALLS);
    for (size_t i = 0; i < n; i++)
        if (pl_phone_get_info(c->ph, ids[i], info) && info->state != PL_CALL_ENDED &&
            memcmp(info->peer_pk, pk, 32) == 0)
            return ids[i];
    return 0;
}

/* A whole roster arrived: it replaces ours. */
static void apply_roster(pl_conf *c)
{
    memset(c->m, 0, sizeof c->m);
    for (uint8_t i = 0; i < c->asm_total; i++) {
        const pl_conf_entry *e = &c->asm_e[i];
        member *m = &c->m[i];
        m->used = true;
        m->have_key = true;
        memcpy(m->key, e->key, 32);
        memcpy(m->name, e->name, sizeof m->name);
        m->state = e->state;
        m->report = e->report;
        m->mix_id = ++c->next_mix_id;
        m->self = memcmp(e->key, c->own_pk, 32) == 0;
    }
    memcpy(c->host_key, c->asm_e[c->asm_host].key, 32);
    c->have_host = true;
    c->have_successor = c->asm_successor != NO_INDEX;
    if (c->have_successor) memcpy(c->successor_key, c->asm_e[c->asm_successor].key, 32);
    c->version = c->asm_version;
    memcpy(c->roster_from, c->asm_from, 32);
    c->st.rosters_received++;
    c->report_due = true;
    emit(c, PL_CONF_EV_ROSTER, 0, NULL, 0, 0);
    /* An invitation not answered yet ends with its call: the new host
     * calls again. */
    if ((c->asm_flags & PL_CONF_F_HANDOVER) && c->leg_answered) {
        c->st.handovers++;
        go_to_successor(c, (c->asm_flags & PL_CONF_F_MOVE) != 0);
    }
}

static bool entries_hold(const pl_conf_entry *e, uint8_t n, const uint8_t key[32])
{
    for (uint8_t i = 0; i < n; i++)
        if (memcmp(e[i].key, key, 32) == 0) return true;
    return false;
}

static void on_roster(pl_conf *c, const uint8_t pk[32], const pl_conf_msg *msg)
{
    if (c->role == PL_CONF_HOST) {
        c->st.ignored++;
        return;
    }
    pl_phone_call_info info;
    if (c->role == PL_CONF_NONE) {
        /* An invitation: the peer of a live call of ours hosts a conference. */
        uint32_t call = call_with(c, pk, &info);
        if (!call) {
            c->st.ignored++;
            return;
        }
        begin(c, PL_CONF_PARTICIPANT);
        memcpy(c->id, msg->conf_id, PL_CONF_ID_SIZE);
        c->leg = call;
        memcpy(c->leg_peer, pk, 32);
        c->leg_state = info.state;
        c->leg_media = info.media;
        c->leg_answered = info.state == PL_CALL_ACTIVE || info.state == PL_CALL_HELD;
        memcpy(c->host_key, pk, 32);
        c->have_host = true;
        emit(c, PL_CONF_EV_STARTED, call, NULL, 0, 0);
    } else {
        bool from_leg = c->leg && memcmp(pk, c->leg_peer, 32) == 0;
        bool from_new = c->next_leg && c->have_new_host && memcmp(pk, c->new_host_key, 32) == 0;
        if (memcmp(msg->conf_id, c->id, PL_CONF_ID_SIZE) != 0 || (!from_leg && !from_new)) {
            c->st.ignored++;
            return;
        }
        if (from_leg && memcmp(pk, c->roster_from, 32) == 0 && msg->version <= c->version) {
            /* One we hold: acknowledge again (our report may have been lost). */
            c->report_due = true;
            return;
        }
    }
    if (!c->asm_active || c->asm_version != msg->version || memcmp(c->asm_from, pk, 32) != 0 ||
        c->asm_total != msg->total) {
        c->asm_active = true;
        memcpy(c->asm_from, pk, 32);
        c->asm_version = msg->version;
        c->asm_total = msg->total;
        c->asm_got = 0;
    }
    c->asm_flags = msg->flags;
    c->asm_host = msg->host;
    c->asm_successor = msg->successor;
    for (uint8_t i = 0; i < msg->count; i++) {
        c->asm_e[msg->first + i] = msg->entries[i];
        c->asm_got |= 1u << (msg->first + i);
    }
    uint32_t all = c->asm_total >= 32 ? 0xffffffffu : (1u << c->asm_total) - 1;
    if (c->asm_got != all) return;
    c->asm_active = false;
    /* The sender must be the host it names, and we must be in it. */
    if (memcmp(c->asm_e[c->asm_host].key, pk, 32) != 0 || !entries_hold(c->asm_e, c->asm_total, c->own_pk)) {
        c->st.ignored++;
        return;
    }
    apply_roster(c);
}

static void on_report(pl_conf *c, const uint8_t pk[32], const pl_conf_msg *msg)
{
    member *m = c->role == PL_CONF_HOST ? find_key(c, pk) : NULL;
    if (!m || m->self || !m->call || memcmp(msg->conf_id, c->id, PL_CONF_ID_SIZE) != 0) {
        c->st.ignored++;
        return;
    }
    c->st.reports_received++;
    bool changed = !m->reported || m->report.up_kbps != msg->report.up_kbps ||
                   m->report.down_kbps != msg->report.down_kbps || m->report.nat != msg->report.nat ||
                   m->report.can_host != msg->report.can_host;
    m->report = msg->report;
    m->reported = true;
    if (msg->version > m->acked && msg->version <= c->version) m->acked = msg->version;
    if (changed && m->state == PL_CONF_CONNECTED) bump(c);
}

static void on_add(pl_conf *c, const uint8_t pk[32], const pl_conf_msg *msg)
{
    if (c->role == PL_CONF_NONE || memcmp(msg->conf_id, c->id, PL_CONF_ID_SIZE) != 0) {
        c->st.ignored++;
        return;
    }
    c->st.adds_received++;
    member *m = find_key(c, pk);
    if (c->role != PL_CONF_HOST || c->handing_over || !m || m->self || m->state != PL_CONF_CONNECTED) {
        send_add_result(c, pk, msg->req, PL_CONF_ADD_NOT_HOST);
        return;
    }
    if (!m->have_add || m->add_req != msg->req) {
        /* A new request (a copy of one we answered gets the same answer). */
        uint8_t status;
        if (host_add(c, msg->name, &status) == PL_CONF_OK) bump(c);
        m = find_key(c, pk); /* bump may not move records, but be sure */
        if (!m) return;
        m->have_add = true;
        m->add_req = msg->req;
        m->add_status = status;
    }
    send_add_result(c, pk, msg->req, m->add_status);
}

static void on_add_result(pl_conf *c, const uint8_t pk[32], const pl_conf_msg *msg)
{
    if (c->role != PL_CONF_PARTICIPANT || !c->add_pending || msg->req != c->add_req ||
        memcmp(msg->conf_id, c->id, PL_CONF_ID_SIZE) != 0 || memcmp(pk, c->leg_peer, 32) != 0) {
        c->st.ignored++;
        return;
    }
    c->add_pending = false;
    emit(c, PL_CONF_EV_ADD_RESULT, 0, c->add_name, 0, msg->status);
}

bool pl_conf_message(pl_conf *c, const uint8_t pk[32], const uint8_t *msg, size_t len, pl_time now)
{
    if (len == 0 || msg[0] < PL_OVL_CONF_FIRST || msg[0] > PL_OVL_CONF_LAST) return false;
    c->now = now;
    pl_conf_msg *m = &c->msg;
    if (!pl_conf_msg_decode(m, msg, len)) {
        c->st.malformed++;
        return true;
    }
    /* The handlers send with c->msg: work on a copy. */
    pl_conf_msg copy = *m;
    switch (copy.type) {
    case PL_CONF_MSG_ROSTER: on_roster(c, pk, &copy); break;
    case PL_CONF_MSG_REPORT: on_report(c, pk, &copy); break;
    case PL_CONF_MSG_ADD: on_add(c, pk, &copy); break;
    case PL_CONF_MSG_ADD_RESULT: on_add_result(c, pk, &copy); break;
    default: break;
    }
    sodium_memzero(&copy, sizeof copy);
    return true;
}

/* ---- audio ------------------------------------------------------------------------------------------------------------- */

bool pl_conf_audio(pl_conf *c, const int16_t *in, int16_t *out, pl_time now)
{
    c->now = now;
    static const int16_t silence[PL_MIX_FRAME];
    if (c->role == PL_CONF_PARTICIPANT) {
        if (c->leg && c->leg_media) return pl_phone_audio(c->ph, c->leg, in, out, now);
        memset(out, 0, PL_MIX_FRAME * sizeof *out);
        return c->leg != 0 || c->next_leg != 0;
    }
    if (c->role != PL_CONF_HOST || !c->mix) {
        memset(out, 0, PL_MIX_FRAME * sizeof *out);
        return false;
    }
    int16_t frame[PL_MIX_FRAME];
    member *me = NULL;
    /* Every leg's frame first: its jitter buffer plays at a steady pace,
     * so the mixer takes it in the same tick. */
    for (uint32_t i = 0; i < PL_CONF_MAX; i++) {
        member *m = &c->m[i];
        if (!m->used) continue;
        if (m->self) {
            me = m;
            continue;
        }
        bool flowing = m->call && m->media;
        if (flowing && !m->in_mix && pl_mix_join(c->mix, m->mix_id) == PL_MIX_OK) m->in_mix = true;
        if (!flowing && m->in_mix) {
            pl_mix_leave(c->mix, m->mix_id);
            m->in_mix = false;
        }
        if (!m->in_mix) continue;
        pl_phone_pull(c->ph, m->call, frame, now);
        pl_mix_push(c->mix, m->mix_id, frame);
    }
    if (me && !me->in_mix && pl_mix_join(c->mix, me->mix_id) == PL_MIX_OK) me->in_mix = true;
    if (me) pl_mix_push(c->mix, me->mix_id, in ? in : silence);
    pl_mix_tick(c->mix);
    c->st.ticks_mixed++;
    for (uint32_t i = 0; i < PL_CONF_MAX; i++) {
        member *m = &c->m[i];
        if (!m->used || m->self || !m->in_mix) continue;
        pl_phone_capture(c->ph, m->call, pl_mix_output(c->mix, m->mix_id), now);
    }
    const int16_t *mine = me ? pl_mix_output(c->mix, me->mix_id) : NULL;
    if (mine) memcpy(out, mine, PL_MIX_FRAME * sizeof *out);
    else memset(out, 0, PL_MIX_FRAME * sizeof *out);
    return true;
}

bool pl_conf_owns(const pl_conf *c, uint32_t call)
{
    if (!call || c->role == PL_CONF_NONE) return false;
    if (call == c->leg || call == c->next_leg || call == c->hangup_old) return true;
    for (uint32_t i = 0; i < PL_CONF_MAX; i++) {
        if (c->m[i].used && c->m[i].call == call) return true;
        if (c->early[i].call == call) return true;
    }
    return false;
}

/* ---- time ---------------------------------------------------------------------------------------------------------------- */

/* Everything we own goes, and the conference with it. */
static void finish(pl_conf *c)
{
    uint32_t calls[2 * PL_CONF_MAX + 3];
    size_t n = 0;
    for (uint32_t i = 0; i < PL_CONF_MAX; i++) {
        if (c->m[i].used && c->m[i].call) calls[n++] = c->m[i].call;
        if (c->early[i].call) calls[n++] = c->early[i].call;
    }
    if (c->leg) calls[n++] = c->leg;
    if (c->next_leg) calls[n++] = c->next_leg;
    if (c->hangup_old) calls[n++] = c->hangup_old;
    pl_conf_end why = c->end_reason;
    for (uint32_t i = 0; i < PL_CONF_MAX; i++)
        if (c->m[i].used) drop_member(c, &c->m[i]);
    memset(c->early, 0, sizeof c->early);
    free_mix(c);
    c->role = PL_CONF_NONE;
    c->leg = c->next_leg = c->hangup_old = 0;
    c->have_host = c->have_successor = c->have_new_host = false;
    c->handing_over = c->dial_due = c->add_pending = c->end_due = false;
    c->last_end = why;
    for (size_t i = 0; i < n; i++) pl_phone_hangup(c->ph, calls[i], c->now);
    c->multi_off_due = pl_phone_set_multi_call(c->ph, false) != PL_PHONE_OK;
    c->end_reason = why;
    emit(c, PL_CONF_EV_ENDED, 0, NULL, 0, 0);
    c->end_reason = PL_CONF_END_NONE;
}

/* The host hands over: HANDOVER to every leg (twice), then the legs go. */
static void handover_tick(pl_conf *c)
{
    uint8_t flags = PL_CONF_F_HANDOVER | (c->moving ? PL_CONF_F_MOVE : 0);
    if (c->now >= c->handover_resend && !c->resent) {
        for (uint32_t i = 0; i < PL_CONF_MAX; i++)
            if (c->m[i].used && !c->m[i].self && leg_up(&c->m[i])) send_roster(c, &c->m[i], flags);
        if (c->handover_resend + HANDOVER_RESEND < c->hangup_at) c->handover_resend += HANDOVER_RESEND;
        else c->resent = true;
    }
    if (c->now < c->hangup_at) return;
    if (!c->moving) {
        end_soon(c, PL_CONF_END_LEFT);
        return;
    }
    /* We stay, as a participant of the new host. */
    member *s = find_key(c, c->successor_key);
    if (!s) {
        end_soon(c, PL_CONF_END_HOST_LOST);
        return;
    }
    snprintf(c->new_host_name, sizeof c->new_host_name, "%s", s->name);
    uint32_t calls[PL_CONF_MAX];
    size_t n = 0;
    for (uint32_t i = 0; i < PL_CONF_MAX; i++) {
        member *m = &c->m[i];
        if (!m->used) continue;
        if (m->call) calls[n++] = m->call;
        m->call = 0;
        m->media = false;
        m->in_mix = false;
    }
    free_mix(c);
    c->handing_over = false;
    c->role = PL_CONF_PARTICIPANT;
    c->have_new_host = true;
    memcpy(c->new_host_key, c->successor_key, 32);
    c->dial_due = true;
    c->st.moves++;
    for (size_t i = 0; i < n; i++) pl_phone_hangup(c->ph, calls[i], c->now);
}

/* At the start, once: hosting moves to a clearly better-connected participant. */
static void consider_move(pl_conf *c)
{
    c->move_decided = true;
    if (c->stay_host) return;
    pl_mix_candidate cand[PL_CONF_MAX];
    const member *who[PL_CONF_MAX];
    int self_at, best, second;
    size_t n = candidates(c, cand, who, &self_at);
    if (n < 2 || self_at < 0 || !pl_mix_elect(cand, n, c->leg_kbps, &best, &second) || best == self_at) return;
    bool f_best = feasible(c, &cand[best], n), f_self = feasible(c, &cand[self_at], n);
    bool clearly = (f_best && !f_self) || (f_best == f_self && cand[best].nat < cand[self_at].nat);
    if (!clearly) return;
    memcpy(c->successor_key, who[best]->key, 32);
    c->have_successor = true;
    c->handing_over = true;
    c->moving = true;
    c->resent = false;
    c->handover_resend = c->now;
    c->hangup_at = c->now + PL_CONF_HANDOVER_LINGER;
    bump(c);
}

static void host_tick(pl_conf *c)
{
    pl_time now = c->now;
    if (c->handing_over) {
        handover_tick(c);
        return;
    }
    /* Calls to make, answer, or end. */
    for (uint32_t i = 0; i < PL_CONF_MAX && c->role == PL_CONF_HOST; i++) {
        member *m = &c->m[i];
        if (!m->used || m->self) continue;
        if (m->dial_due) {
            m->dial_due = false;
            uint32_t id = 0;
            pl_phone_err e = pl_phone_dial(c->ph, m->name, now, &id);
            if (e != PL_PHONE_OK) {
                char name[PL_NAME_MAX + 1];
                snprintf(name, sizeof name, "%s", m->name);
                drop_member(c, m);
                emit(c, PL_CONF_EV_LEFT, 0, name, PL_PHONE_END_FAILED, 0);
                bump(c);
                continue;
            }
            m->call = id;
            m->leg_state = PL_CALL_DIALING;
        } else if (m->answer_due) {
            m->answer_due = false;
            pl_phone_answer(c->ph, m->call, now);
        } else if (m->call && m->leg_state == PL_CALL_ENDED) {
            uint32_t id = m->call;
            drop_member(c, m);
            pl_phone_hangup(c->ph, id, now);
            bump(c);
        }
    }
    if (c->role != PL_CONF_HOST) return;
    /* Participants who did not call the new host in time. */
    for (uint32_t i = 0; i < PL_CONF_MAX; i++) {
        member *m = &c->m[i];
        if (m->used && m->state == PL_CONF_AWAITED && now >= m->await_until) {
            char name[PL_NAME_MAX + 1];
            snprintf(name, sizeof name, "%s", m->name);
            drop_member(c, m);
            emit(c, PL_CONF_EV_LEFT, 0, name, 0, 0);
            bump(c);
        }
    }
    if (count_others(c, -1) == 0) {
        end_soon(c, PL_CONF_END_ALONE);
        return;
    }
    /* The roster, to each leg until it acknowledges it. */
    for (uint32_t i = 0; i < PL_CONF_MAX; i++) {
        member *m = &c->m[i];
        if (!m->used || m->self || !leg_up(m) || m->acked >= c->version || now < m->next_roster) continue;
        send_roster(c, m, 0);
        m->next_roster = now + PL_CONF_ROSTER_EVERY;
    }
    if (!c->move_decided) {
        bool settled = count_others(c, PL_CONF_JOINING) == 0 && count_others(c, PL_CONF_AWAITED) == 0;
        for (uint32_t i = 0; i < PL_CONF_MAX; i++)
            if (c->m[i].used && !c->m[i].self && !c->m[i].reported) settled = false;
        if (settled || now >= c->settle_by) consider_move(c);
    }
}

static void participant_tick(pl_conf *c)
{
    pl_time now = c->now;
    if (c->hangup_old) {
        uint32_t id = c->hangup_old;
        c->hangup_old = 0;
        pl_phone_hangup(c->ph, id, now);
    }
    if (c->dial_due && c->role == PL_CONF_PARTICIPANT) {
        c->dial_due = false;
        uint32_t id = 0;
        if (pl_phone_dial(c->ph, c->new_host_name, now, &id) != PL_PHONE_OK) {
            end_soon(c, PL_CONF_END_HOST_LOST);
            return;
        }
        c->next_leg = id;
    }
    /* Early callers: answered when we host (become_host), refused when the
     * host never went. */
    for (uint32_t i = 0; i < PL_CONF_MAX; i++) {
        early *e = &c->early[i];
        if (e->call && now >= e->until) {
            uint32_t id = e->call;
            e->call = 0;
            pl_phone_reject(c->ph, id, now);
        }
    }
    if (c->leg && pl_link_is_up(c->link, c->leg_peer) && (c->report_due || now >= c->next_report)) {
        c->report_due = false;
        c->next_report = now + PL_CONF_REPORT_EVERY;
        send_report(c);
    }
    if (c->add_pending && now >= c->add_next) {
        if (c->add_tries >= PL_CONF_ADD_TRIES) {
            c->add_pending = false;
            emit(c, PL_CONF_EV_ADD_RESULT, 0, c->add_name, 0, 0xff);
        } else {
            pl_conf_msg *msg = &c->msg;
            memset(msg, 0, sizeof *msg);
            msg->type = PL_CONF_MSG_ADD;
            memcpy(msg->conf_id, c->id, PL_CONF_ID_SIZE);
            msg->req = c->add_req;
            snprintf(msg->name, sizeof msg->name, "%s", c->add_name);
            if (send_msg(c, c->leg_peer, msg)) c->st.adds_sent++;
            c->add_tries++;
            c->add_next = now + PL_CONF_ADD_EVERY;
        }
    }
}

void pl_conf_tick(pl_conf *c, pl_time now)
{
    c->now = now;
    if (c->multi_off_due && c->role == PL_CONF_NONE)
        c->multi_off_due = pl_phone_set_multi_call(c->ph, false) != PL_PHONE_OK;
    if (c->role == PL_CONF_HOST) host_tick(c);
    else if (c->role == PL_CONF_PARTICIPANT) participant_tick(c);
    /* A participant that became host in its tick answers at once. */
    if (c->role == PL_CONF_HOST && !c->end_due) {
        for (uint32_t i = 0; i < PL_CONF_MAX; i++) {
            member *m = &c->m[i];
            if (m->used && m->answer_due) {
                m->answer_due = false;
                pl_phone_answer(c->ph, m->call, now);
            }
        }
        if (c->hangup_old) {
            uint32_t id = c->hangup_old;
            c->hangup_old = 0;
            pl_phone_hangup(c->ph, id, now);
        }
    }
    if (c->end_due && c->role != PL_CONF_NONE) finish(c);
}

pl_time pl_conf_next_timeout(const pl_conf *c)
{
    if (c->role == PL_CONF_NONE) return c->multi_off_due ? c->now + PL_SEC : PL_TIME_NEVER;
    if (c->end_due || c->dial_due || c->hangup_old) return c->now;
    pl_time t = PL_TIME_NEVER;
    if (c->role == PL_CONF_HOST) {
        if (c->handing_over) return c->resent ? c->hangup_at : c->handover_resend;
        if (count_others(c, -1) == 0) return c->now; /* alone: the conference ends */
        if (!c->move_decided && c->settle_by < t) t = c->settle_by;
        for (uint32_t i = 0; i < PL_CONF_MAX; i++) {
            const member *m = &c->m[i];
            if (!m->used || m->self) continue;
            if (m->dial_due || m->answer_due || (m->call && m->leg_state == PL_CALL_ENDED)) return c->now;
            if (m->state == PL_CONF_AWAITED && m->await_until < t) t = m->await_until;
            if (leg_up(m) && m->acked < c->version && m->next_roster < t) t = m->next_roster;
        }
        /* The move decision waits on reports and answers: look again soon. */
        if (!c->move_decided && c->now + 100 * PL_MSEC < t) t = c->now + 100 * PL_MSEC;
        return t;
    }
    for (uint32_t i = 0; i < PL_CONF_MAX; i++) {
        if (c->early[i].call && c->early[i].until < t) t = c->early[i].until;
        if (c->m[i].used && c->m[i].answer_due) return c->now;
    }
    if (c->leg) {
        pl_time r = c->report_due ? c->now + 20 * PL_MSEC : c->next_report;
        if (r < t) t = r;
    }
    if (c->add_pending && c->add_next < t) t = c->add_next;
    return t;
}

/* ---- information ------------------------------------------------------------------------------------------------------- */

pl_conf_role pl_conf_role_of(const pl_conf *c) { return c->role; }

void pl_conf_get_info(const pl_conf *c, pl_conf_info *info)
{
    memset(info, 0, sizeof *info);
    info->role = c->role;
    memcpy(info->conf_id, c->id, PL_CONF_ID_SIZE);
    info->version = c->version;
    info->host = info->successor = -1;
    info->leg = c->leg;
    info->next_leg = c->next_leg;
    info->handing_over = c->handing_over;
    info->started = c->started;
    info->last_end = c->last_end;
    info->stats = c->st;
    if (c->role == PL_CONF_NONE) return;
    for (uint32_t i = 0; i < PL_CONF_MAX; i++) {
        const member *m = &c->m[i];
        if (!m->used || !m->have_key) continue;
        pl_conf_member_info *o = &info->members[info->n];
        memcpy(o->key, m->key, 32);
        memcpy(o->name, m->name, sizeof o->name);
        o->state = m->state;
        o->report = report_of(c, m);
        o->is_self = m->self;
        o->is_host = c->have_host && memcmp(m->key, c->host_key, 32) == 0;
        o->is_successor = c->have_successor && memcmp(m->key, c->successor_key, 32) == 0;
        o->call = c->role == PL_CONF_HOST ? m->call : 0;
        o->media = m->media;
        o->in_mix = m->in_mix;
        if (m->in_mix && c->mix) pl_mix_get_stats(c->mix, m->mix_id, &o->mix);
        if (o->is_host) info->host = (int)info->n;
        if (o->is_successor) info->successor = (int)info->n;
        info->n++;
    }
    /* Members being looked up have no key yet: shown by name. */
    for (uint32_t i = 0; i < PL_CONF_MAX && info->n < PL_CONF_MAX; i++) {
        const member *m = &c->m[i];
        if (!m->used || m->have_key) continue;
        pl_conf_member_info *o = &info->members[info->n++];
        memcpy(o->name, m->name, sizeof o->name);
        o->state = m->state;
        o->call = m->call;
    }
}

/* ---- set-up -------------------------------------------------------------------------------------------------------------- */

pl_conf_err pl_conf_new(pl_conf **out, const pl_conf_config *cfg, const pl_conf_io *io, pl_phone *phone,
                        pl_link *link)
{
    *out = NULL;
    if (!cfg || !cfg->identity || !cfg->name || !cfg->rng || !phone || !link) return PL_CONF_ERR_CONFIG;
    if (cfg->max_participants > PL_CONF_MAX) return PL_CONF_ERR_CONFIG;
    char norm[PL_NAME_MAX + 1];
    if (pl_name_normalize(cfg->name, norm) != PL_NAME_OK) return PL_CONF_ERR_CONFIG;
    const pl_mem *mem = cfg->mem ? cfg->mem : pl_mem_system();
    pl_conf *c = mem->calloc(mem->ctx, 1, sizeof *c);
    if (!c) return PL_CONF_ERR_NOMEM;
    memcpy(c->own_pk, cfg->identity->sign_pk, 32);
    memcpy(c->own_name, norm, sizeof c->own_name);
    c->rng = cfg->rng;
    c->mem = mem;
    c->max = cfg->max_participants ? cfg->max_participants : PL_CONF_MAX;
    c->leg_kbps = cfg->leg_kbps ? cfg->leg_kbps : PL_CONF_LEG_KBPS;
    c->stay_host = cfg->stay_host;
    c->mix_cfg = cfg->mix;
    if (io) c->io = *io;
    c->ph = phone;
    c->link = link;
    c->own = (pl_conf_report){.nat = PL_MIX_NAT_CONE, .can_host = true};
    /* The mixer's settings are checked now, not at the first conference. */
    pl_mix *probe;
    pl_mix_config mc = c->mix_cfg;
    mc.mem = mem;
    mc.max_participants = 2;
    if (pl_mix_new(&probe, &mc) != PL_MIX_OK) {
        mem->free(mem->ctx, c);
        return PL_CONF_ERR_CONFIG;
    }
    pl_mix_free(probe);
    *out = c;
    return PL_CONF_OK;
}

void pl_conf_free(pl_conf *c)
{
    if (!c) return;
    const pl_mem *mem = c->mem;
    pl_mix_free(c->mix);
    sodium_memzero(c, sizeof *c);
    mem->free(mem->ctx, c);
}

/* ---- names ------------------------------------------------------------------------------------------------------------------ */

const char *pl_conf_role_name(pl_conf_role role)
{
    switch (role) {
    case PL_CONF_NONE: return "none";
    case PL_CONF_HOST: return "host";
    case PL_CONF_PARTICIPANT: return "participant";
    }
    return "?";
}

const char *pl_conf_end_name(pl_conf_end end)
{
    switch (end) {
    case PL_CONF_END_NONE: return "";
    case PL_CONF_END_LEFT: return "left";
    case PL_CONF_END_ALONE: return "everyone else left";
    case PL_CONF_END_HOST_LOST: return "the host left and no successor took over";
    case PL_CONF_END_DECLINED: return "the invitation was not answered";
    }
    return "?";
}

const char *pl_conf_state_name(uint8_t state)
{
    switch (state) {
    case PL_CONF_CONNECTED: return "connected";
    case PL_CONF_JOINING: return "joining";
    case PL_CONF_AWAITED: return "awaited";
    }
    return "?";
}

const char *pl_conf_add_status_name(uint8_t status)
{
    switch (status) {
    case PL_CONF_ADD_DIALING: return "the host is calling them";
    case PL_CONF_ADD_ALREADY: return "already in the conference";
    case PL_CONF_ADD_FULL: return "the conference is full";
    case PL_CONF_ADD_BAD_NAME: return "not a valid user name";
    case PL_CONF_ADD_NOT_HOST: return "asked a participant that does not host";
    case 0xff: return "the host did not answer";
    }
    return "?";
}

const char *pl_conf_strerror(pl_conf_err err)
{
    switch (err) {
    case PL_CONF_OK: return "ok";
    case PL_CONF_ERR_CONFIG: return "bad conference configuration";
    case PL_CONF_ERR_NOMEM: return "out of memory";
    case PL_CONF_ERR_BAD_NAME: return "not a valid user name";
    case PL_CONF_ERR_BUSY: return "already in a conference or in several calls";
    case PL_CONF_ERR_NONE: return "not in a conference";
    case PL_CONF_ERR_FULL: return "the conference is full";
    case PL_CONF_ERR_ALREADY: return "that user is in the conference already";
    case PL_CONF_ERR_SELF: return "you are in it yourself";
    case PL_CONF_ERR_STATE: return "not possible now (a hand-over is under way)";
    }
    return "unknown conference error";
}
