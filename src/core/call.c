/*
 * call.c - call signalling: the message codec and one user's call engine
 * (call.h, docs/calls.md).
 */
#include "call.h"

#include <sodium.h>
#include <string.h>

#include "wire.h"

/* ---- the codec ------------------------------------------------------------------------------ */

static bool is_reliable_type(uint8_t type)
{
    return type >= PL_CALL_MSG_INVITE && type <= PL_CALL_MSG_RESUME;
}

/* Messages that end a call. They may overtake an earlier message that was
 * still being sent (the sender drops it), so a receiver acts on them even
 * when they arrive ahead of the next expected number. */
static bool is_final_type(uint8_t type)
{
    return type == PL_CALL_MSG_REJECT || type == PL_CALL_MSG_BUSY || type == PL_CALL_MSG_CANCEL ||
           type == PL_CALL_MSG_BYE;
}

static bool caps_valid(const pl_call_caps *c)
{
    return c->codec != 0 && (c->flags & ~PL_CALL_CAP_ALL) == 0 && c->min_bps != 0 && c->min_bps <= c->max_bps;
}

static uint8_t reason_max(uint8_t type)
{
    switch (type) {
    case PL_CALL_MSG_REJECT: return PL_CALL_REJECT_MAX;
    case PL_CALL_MSG_CANCEL: return PL_CALL_CANCEL_TIMEOUT;
    case PL_CALL_MSG_BYE: return PL_CALL_BYE_FAILURE;
    default: return 0;
    }
}

bool pl_call_caps_agree(const pl_call_caps *a, const pl_call_caps *b, pl_call_caps *out)
{
    if (!caps_valid(a) || !caps_valid(b) || a->codec != b->codec) return false;
    pl_call_caps c;
    c.codec = a->codec;
    c.flags = a->flags & b->flags;
    c.min_bps = a->min_bps > b->min_bps ? a->min_bps : b->min_bps;
    c.max_bps = a->max_bps < b->max_bps ? a->max_bps : b->max_bps;
    if (c.min_bps > c.max_bps) return false;
    if (out) *out = c;
    return true;
}

static void write_caps(pl_writer *w, const pl_call_caps *c)
{
    pl_write_u8(w, c->codec);
    pl_write_u8(w, c->flags);
    pl_write_u32(w, c->min_bps);
    pl_write_u32(w, c->max_bps);
}

static void read_caps(pl_reader *r, pl_call_caps *c)
{
    c->codec = pl_read_u8(r);
    c->flags = pl_read_u8(r);
    c->min_bps = pl_read_u32(r);
    c->max_bps = pl_read_u32(r);
}

/* The fields each type carries besides the header are checked in one place
 * for both directions, so the encoder can never write what the decoder
 * would refuse. */
static bool fields_valid(const pl_call_msg *m)
{
    if (m->type < PL_CALL_MSG_INVITE || m->type > PL_CALL_MSG_KEEPALIVE) return false;
    if (is_reliable_type(m->type) != (m->seq != 0)) return false;
    uint8_t rmax = reason_max(m->type);
    if (rmax && (m->reason == 0 || m->reason > rmax)) return false;
    if (m->type == PL_CALL_MSG_INVITE && (m->version == 0 || m->ring_timeout_s == 0 || !caps_valid(&m->caps)))
        return false;
    if (m->type == PL_CALL_MSG_ACCEPT && !caps_valid(&m->caps)) return false;
    return true;
}

size_t pl_call_msg_encode(uint8_t *buf, size_t cap, const pl_call_msg *m)
{
    if (!fields_valid(m)) return 0;
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, m->type);
    pl_write_bytes(&w, m->call_id, PL_CALL_ID_SIZE);
    pl_write_u32(&w, m->seq);
    pl_write_u32(&w, m->ack);
    switch (m->type) {
    case PL_CALL_MSG_INVITE:
        pl_write_u8(&w, m->version);
        write_caps(&w, &m->caps);
        pl_write_u16(&w, m->ring_timeout_s);
        break;
    case PL_CALL_MSG_ACCEPT: write_caps(&w, &m->caps); break;
    case PL_CALL_MSG_REJECT:
    case PL_CALL_MSG_CANCEL:
    case PL_CALL_MSG_BYE: pl_write_u8(&w, m->reason); break;
    default: break;
    }
    return w.err ? 0 : w.off;
}

pl_call_err pl_call_msg_decode(pl_call_msg *m, const uint8_t *buf, size_t len)
{
    memset(m, 0, sizeof *m);
    pl_reader r = pl_reader_make(buf, len);
    m->type = pl_read_u8(&r);
    pl_read_bytes(&r, m->call_id, PL_CALL_ID_SIZE);
    m->seq = pl_read_u32(&r);
    m->ack = pl_read_u32(&r);
    switch (m->type) {
    case PL_CALL_MSG_INVITE:
        m->version = pl_read_u8(&r);
        read_caps(&r, &m->caps);
        m->ring_timeout_s = pl_read_u16(&r);
        break;
    case PL_CALL_MSG_ACCEPT: read_caps(&r, &m->caps); break;
    case PL_CALL_MSG_REJECT:
    case PL_CALL_MSG_CANCEL:
    case PL_CALL_MSG_BYE: m->reason = pl_read_u8(&r); break;
    default: break;
    }
    if (!pl_reader_done(&r) || !fields_valid(m)) return PL_CALL_ERR_MALFORMED;
    return PL_CALL_OK;
}

/* ---- the engine's state --------------------------------------------------------------------- */

typedef struct qmsg {
    uint8_t type;
    uint8_t reason;
} qmsg;

/* One call, or the memory of an ended one. Slots live in one array made at
 * creation, so pointers to them stay valid; a slot is free when its handle
 * is 0. */
typedef struct slot {
    uint32_t handle;
    pl_call_state state;
    uint8_t hold;
    bool outgoing;   /* the local user placed it */
    bool caller;     /* we sent the INVITE of the current call id (not after a glare take-over) */
    bool silent;     /* never shown to the user: an answer we owe (busy, refused, glare) */
    bool muted;
    bool glare_wait; /* our invite lost the glare rule: the peer's is on its way */
    bool heard;      /* anything authenticated came from the peer in this call */
    bool has_alias;  /* alias: the other call id of a glare, answered but ignored */
    bool has_addr;
    bool end_local;
    uint8_t id[PL_CALL_ID_SIZE], alias[PL_CALL_ID_SIZE];
    uint8_t peer[32];
    char name[PL_NAME_MAX + 1];
    pl_addr addr;
    pl_call_caps remote_caps, agreed;
    pl_call_end_reason reason;
    pl_time started, answered, ended;

    /* Sending, one message at a time: q[0] is in flight (numbered head_seq)
     * and the rest wait for it to be acknowledged. */
    qmsg q[PL_CALL_QUEUE + 1];
    uint8_t qlen;
    uint32_t head_seq, tx_last;
    uint8_t tries;
    pl_time rto, retx_at;
    /* Receiving: the next number expected, and the acknowledgement last
     * sent (so an answer that carried it needs no separate ACK). */
    uint64_t rx_next, ack_out;

    pl_time ring_deadline; /* caller: no answer; callee: the caller's timeout and a margin */
    pl_time last_heard, probe_at;
    pl_time linger_until;  /* ENDED: forgotten at */
} slot;

struct pl_call {
    uint8_t own[32];
    const pl_rng *rng;
    const pl_mem *mem;
    pl_call_io io;
    pl_call_caps caps;
    pl_time ring_timeout, silence_timeout;
    bool auto_answer, call_waiting;
    slot *slots;
    uint32_t n_slots;
    uint32_t next_handle;
    /* Events wait here until the outermost call into the engine is about
     * to return, and go out in the order they happened; a callback that
     * calls the engine adds to the queue behind them. */
    pl_call_event *events;
    uint32_t ev_cap, ev_head, ev_len;
    bool flushing;
    pl_call_stats st;
};

/* ---- events ---------------------------------------------------------------------------------- */

static void push_event(pl_call *c, const slot *s, pl_call_event_type type, pl_call_state prev, pl_time now)
{
    if (s->silent || c->ev_len == c->ev_cap) return;
    pl_call_event *ev = &c->events[(c->ev_head + c->ev_len++) % c->ev_cap];
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    ev->handle = s->handle;
    memcpy(ev->call_id, s->id, PL_CALL_ID_SIZE);
    memcpy(ev->peer_pk, s->peer, 32);
    memcpy(ev->peer_name, s->name, sizeof ev->peer_name);
    ev->outgoing = s->outgoing;
    ev->state = s->state;
    ev->prev_state = prev;
    ev->hold = s->hold;
    ev->reason = s->reason;
    ev->local = s->end_local;
    ev->caps = type == PL_CALL_EV_INCOMING ? s->remote_caps : s->agreed;
    ev->now = now;
}

static void flush_events(pl_call *c)
{
    if (c->flushing) return;
    c->flushing = true;
    while (c->ev_len > 0) {
        pl_call_event ev = c->events[c->ev_head];
        c->ev_head = (c->ev_head + 1) % c->ev_cap;
        c->ev_len--;
        if (c->io.event) c->io.event(c->io.ctx, &ev);
    }
    c->flushing = false;
}

static void set_state(pl_call *c, slot *s, pl_call_state state, pl_time now)
{
    pl_call_state prev = s->state;
    s->state = state;
    push_event(c, s, PL_CALL_EV_STATE, prev, now);
}

/* ---- slots ------------------------------------------------------------------------------------ */

static bool is_live(const slot *s)
{
    return s->handle != 0 && s->state != PL_CALL_ENDED && s->state != PL_CALL_IDLE;
}

static bool unanswered_caller(const slot *s)
{
    return s->caller && (s->state == PL_CALL_DIALING || s->state == PL_CALL_RINGING_REMOTE);
}

static slot *by_handle(const pl_call *c, uint32_t handle)
{
    if (handle == 0) return NULL;
    for (uint32_t i = 0; i < c->n_slots; i++)
        if (c->slots[i].handle == handle) return &c->slots[i];
    return NULL;
}

static slot *find_call(const pl_call *c, const uint8_t pk[32], const uint8_t id[PL_CALL_ID_SIZE])
{
    for (uint32_t i = 0; i < c->n_slots; i++) {
        slot *s = &c->slots[i];
        if (s->handle && memcmp(s->id, id, PL_CALL_ID_SIZE) == 0 && memcmp(s->peer, pk, 32) == 0) return s;
    }
    return NULL;
}

static slot *find_alias(const pl_call *c, const uint8_t pk[32], const uint8_t id[PL_CALL_ID_SIZE])
{
    for (uint32_t i = 0; i < c->n_slots; i++) {
        slot *s = &c->slots[i];
        if (s->handle && s->has_alias && memcmp(s->alias, id, PL_CALL_ID_SIZE) == 0 &&
            memcmp(s->peer, pk, 32) == 0)
            return s;
    }
    return NULL;
}

static slot *live_with(const pl_call *c, const uint8_t pk[32])
{
    for (uint32_t i = 0; i < c->n_slots; i++)
        if (is_live(&c->slots[i]) && memcmp(c->slots[i].peer, pk, 32) == 0) return &c->slots[i];
    return NULL;
}

static uint32_t live_count(const pl_call *c)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->n_slots; i++) n += is_live(&c->slots[i]);
    return n;
}

/* A free slot, or else the memory of the call that ended first. Live calls
 * are never evicted. */
static slot *alloc_slot(pl_call *c)
{
    slot *victim = NULL;
    for (uint32_t i = 0; i < c->n_slots; i++) {
        slot *s = &c->slots[i];
        if (s->handle == 0) {
            victim = s;
            break;
        }
        if (s->state == PL_CALL_ENDED && (!victim || s->ended < victim->ended)) victim = s;
    }
    if (!victim) return NULL;
    if (victim->handle) c->st.evicted++;
    memset(victim, 0, sizeof *victim);
    /* Handles only grow; after 2^32 calls they wrap, skipping 0 and any
     * still in use. */
    uint32_t h;
    do {
        h = c->next_handle++;
        if (c->next_handle == 0) c->next_handle = 1;
    } while (h == 0 || by_handle(c, h) != NULL);
    victim->handle = h;
    victim->rx_next = 1;
    return victim;
}

static void free_slot(slot *s) { memset(s, 0, sizeof *s); }

/* ---- sending ------------------------------------------------------------------------------------ */

static bool send_raw(pl_call *c, const uint8_t pk[32], const pl_addr *addr, const uint8_t id[PL_CALL_ID_SIZE],
                     uint8_t type, uint8_t reason, uint32_t seq, uint32_t ack, const pl_call_caps *caps,
                     pl_time now)
{
    pl_call_msg m;
    memset(&m, 0, sizeof m);
    m.type = type;
    memcpy(m.call_id, id, PL_CALL_ID_SIZE);
    m.seq = seq;
    m.ack = ack;
    m.reason = reason;
    if (type == PL_CALL_MSG_INVITE) {
        m.version = PL_CALL_VERSION;
        uint64_t secs = c->ring_timeout / PL_SEC;
        m.ring_timeout_s = (uint16_t)(secs ? secs : 1);
    }
    if (caps) m.caps = *caps;
    uint8_t buf[PL_CALL_MSG_MAX];
    size_t len = pl_call_msg_encode(buf, sizeof buf, &m);
    if (len == 0) return false;
    c->st.tx_messages++;
    return c->io.send(c->io.ctx, pk, addr, buf, len, now);
}

static uint32_t ack_value(const slot *s)
{
    uint64_t a = s->rx_next - 1;
    return a > UINT32_MAX ? UINT32_MAX : (uint32_t)a;
}

static bool send_msg(pl_call *c, slot *s, uint8_t type, uint8_t reason, uint32_t seq, pl_time now)
{
    s->ack_out = s->rx_next - 1;
    return send_raw(c, s->peer, s->has_addr ? &s->addr : NULL, s->id, type, reason, seq, ack_value(s), &c->caps,
                    now);
}

static void send_ack(pl_call *c, slot *s, pl_time now)
{
    c->st.acks_sent++;
    send_msg(c, s, PL_CALL_MSG_ACK, 0, 0, now);
}

/* Sends the message at the head of the queue for the first time. */
static bool transmit_head(pl_call *c, slot *s, pl_time now)
{
    if (s->qlen == 0) return true;
    s->head_seq = ++s->tx_last;
    s->tries = 1;
    s->rto = PL_CALL_RTO_FIRST;
    s->retx_at = now + s->rto;
    return send_msg(c, s, s->q[0].type, s->q[0].reason, s->head_seq, now);
}

/* Queues a numbered message. A final message replaces everything waiting,
 * the one in flight too: once a call is over nothing else matters, and the
 * receiver acts on a final message even across the gap this leaves. */
static pl_call_err enqueue(pl_call *c, slot *s, uint8_t type, uint8_t reason, pl_time now, bool *sent)
{
    if (is_final_type(type)) {
        s->qlen = 0;
        s->head_seq = 0;
    } else if (s->qlen == PL_CALL_QUEUE + 1) {
        return PL_CALL_ERR_FULL;
    }
    s->q[s->qlen++] = (qmsg){type, reason};
    bool ok = true;
    if (s->qlen == 1) ok = transmit_head(c, s, now);
    if (sent) *sent = ok;
    return PL_CALL_OK;
}

static void clear_queue(slot *s)
{
    s->qlen = 0;
    s->head_seq = 0;
}

/* The peer acknowledged everything up to ack. */
static void on_ack(pl_call *c, slot *s, uint32_t ack, pl_time now)
{
    if (ack > s->tx_last) {
        c->st.rx_bad_ack++;
        return;
    }
    if (s->qlen == 0 || s->head_seq == 0 || ack < s->head_seq) return;
    memmove(&s->q[0], &s->q[1], (size_t)(s->qlen - 1) * sizeof s->q[0]);
    s->qlen--;
    s->head_seq = 0;
    if (s->qlen) transmit_head(c, s, now);
}

/* ---- transitions ------------------------------------------------------------------------------------ */

/* Ends a call: the final message (if any) goes out, the call is remembered
 * for PL_CALL_LINGER to answer late copies, and the user is told. */
static void end_call(pl_call *c, slot *s, pl_call_end_reason reason, bool local, uint8_t final_type,
                     uint8_t final_reason, pl_time now)
{
    if (s->state == PL_CALL_ENDED) return;
    pl_call_state prev = s->state;
    bool had_media = s->state == PL_CALL_ACTIVE;
    s->state = PL_CALL_ENDED;
    s->reason = reason;
    s->end_local = local;
    s->ended = now;
    s->linger_until = now + PL_CALL_LINGER;
    s->hold = 0;
    s->glare_wait = false;
    s->ring_deadline = 0;
    if (final_type) enqueue(c, s, final_type, final_reason, now, NULL);
    else clear_queue(s);
    if (had_media) push_event(c, s, PL_CALL_EV_MEDIA_STOP, prev, now);
    push_event(c, s, PL_CALL_EV_ENDED, prev, now);
}

/* The message that tells the peer a call it knows about is over. */
static uint8_t final_for(const slot *s, uint8_t *reason)
{
    if (s->state == PL_CALL_ACTIVE || s->state == PL_CALL_HELD) {
        *reason = PL_CALL_BYE_HANGUP;
        return PL_CALL_MSG_BYE;
    }
    if (s->caller) {
        *reason = PL_CALL_CANCEL_USER;
        return PL_CALL_MSG_CANCEL;
    }
    *reason = PL_CALL_REJECT_DECLINED;
    return PL_CALL_MSG_REJECT;
}

static void heard_from(slot *s, pl_time now)
{
    s->heard = true;
    s->last_heard = now;
    s->probe_at = now + PL_CALL_PROBE_AFTER;
}

static void do_answer(pl_call *c, slot *s, pl_time now)
{
    pl_call_state prev = s->state;
    s->answered = now;
    s->ring_deadline = 0;
    s->state = PL_CALL_ACTIVE;
    enqueue(c, s, PL_CALL_MSG_ACCEPT, 0, now, NULL);
    push_event(c, s, PL_CALL_EV_STATE, prev, now);
    push_event(c, s, PL_CALL_EV_MEDIA_START, prev, now);
}

/* Remembers a call that is over as far as we are concerned, for
 * PL_CALL_LINGER, with a final message (type, unless 0) to send until it
 * is acknowledged; copies of the peer's messages for it are acknowledged
 * and not taken for new calls. It continues the numbering of both
 * directions (tx_last, rx_next). Such calls are never shown to the user.
 * With no room left the message goes out once, without state; a copy of
 * the peer's message will get it again. */
static void remember_ended(pl_call *c, const uint8_t pk[32], const pl_addr *addr, const uint8_t id[PL_CALL_ID_SIZE],
                           uint64_t rx_next, uint32_t tx_last, uint8_t type, uint8_t reason, pl_time now)
{
    slot *s = alloc_slot(c);
    if (!s) {
        uint64_t ack = rx_next - 1;
        if (type)
            send_raw(c, pk, addr, id, type, reason, tx_last + 1, ack > UINT32_MAX ? UINT32_MAX : (uint32_t)ack, NULL,
                     now);
        return;
    }
    s->silent = true;
    s->state = PL_CALL_ENDED;
    memcpy(s->id, id, PL_CALL_ID_SIZE);
    memcpy(s->peer, pk, 32);
    if (addr) {
        s->addr = *addr;
        s->has_addr = true;
    }
    s->rx_next = rx_next;
    s->tx_last = tx_last;
    s->started = s->ended = now;
    s->linger_until = now + PL_CALL_LINGER;
    if (type) enqueue(c, s, type, reason, now, NULL);
}

/* An answer we owe to an invite without a call to show for it (busy,
 * refused, glare, incompatible). */
static void answer_silently(pl_call *c, const uint8_t pk[32], const pl_addr *from, const pl_call_msg *m,
                            uint8_t type, uint8_t reason, pl_time now)
{
    remember_ended(c, pk, from, m->call_id, (uint64_t)m->seq + 1, 0, type, reason, now);
}

static void copy_name(slot *s, const pl_cert *cert)
{
    if (!cert || s->name[0]) return;
    size_t n = cert->name_len <= PL_NAME_MAX ? cert->name_len : PL_NAME_MAX;
    memcpy(s->name, cert->name, n);
    s->name[n] = 0;
}

/* Glare: our unanswered call to this peer and its invite crossed, and its
 * key is the lower one, so its invite wins. Our call takes over its call id
 * and answers it: the user wanted this call, and gets it without ringing. */
static void take_over(pl_call *c, slot *s, const pl_call_msg *m, pl_time now)
{
    c->st.glare_yielded++;
    uint8_t old_id[PL_CALL_ID_SIZE];
    memcpy(old_id, s->id, PL_CALL_ID_SIZE);
    uint32_t old_tx = s->tx_last;
    uint64_t old_rx = s->rx_next;
    s->has_alias = true;
    memcpy(s->alias, old_id, PL_CALL_ID_SIZE);
    memcpy(s->id, m->call_id, PL_CALL_ID_SIZE);
    s->caller = false;
    s->glare_wait = false;
    clear_queue(s);
    s->tx_last = 0;
    s->rx_next = (uint64_t)m->seq + 1;
    s->ack_out = 0;
    s->remote_caps = m->caps;
    pl_call_caps_agree(&c->caps, &m->caps, &s->agreed);
    do_answer(c, s, now);
    /* Our own invite is dead. If it still reaches the peer after the
     * peer's call ended (the peer hung up at once), it must not ring
     * there: cancel it, numbered after everything sent under that id. */
    remember_ended(c, s->peer, s->has_addr ? &s->addr : NULL, old_id, old_rx, old_tx, PL_CALL_MSG_CANCEL,
                   PL_CALL_CANCEL_USER, now);
}

static void incoming(pl_call *c, const uint8_t pk[32], const pl_cert *cert, const pl_addr *from,
                     const pl_call_msg *m, pl_time now)
{
    if (m->seq != 1) {
        /* An invite is the first message of its call. */
        c->st.rx_unexpected++;
        return;
    }
    pl_call_caps agreed;
    if (m->version != PL_CALL_VERSION || !pl_call_caps_agree(&c->caps, &m->caps, &agreed)) {
        answer_silently(c, pk, from, m, PL_CALL_MSG_REJECT, PL_CALL_REJECT_INCOMPATIBLE, now);
        return;
    }
    pl_call_admit admit = c->io.admit ? c->io.admit(c->io.ctx, pk, cert) : PL_CALL_ADMIT_RING;
    if (admit == PL_CALL_ADMIT_REFUSE) {
        c->st.refused_sent++;
        answer_silently(c, pk, from, m, PL_CALL_MSG_REJECT, PL_CALL_REJECT_REFUSED, now);
        return;
    }
    slot *mine = live_with(c, pk);
    if (mine && (mine->state == PL_CALL_ACTIVE || mine->state == PL_CALL_HELD) &&
        now - mine->last_heard >= PL_CALL_LOST_AFTER) {
        /* A new invite from the peer we were talking to, which has gone
         * quiet on our call: it lost that call (it restarted) and would not
         * invite us otherwise. That call is over; this one is new. (A peer
         * still heard on the call is not: a late copy of a glare invite
         * then meets BUSY, as before.) */
        end_call(c, mine, PL_CALL_END_NETWORK_FAILURE, false, 0, 0, now);
        mine = NULL;
    }
    if (mine) {
        if (unanswered_caller(mine)) {
            /* Both invited each other: the invite from the lower key wins,
             * on both sides, whatever the timing. */
            if (memcmp(c->own, pk, 32) < 0) {
                c->st.glare_won++;
                answer_silently(c, pk, from, m, PL_CALL_MSG_REJECT, PL_CALL_REJECT_GLARE, now);
            } else {
                heard_from(mine, now);
                take_over(c, mine, m, now);
            }
            return;
        }
        c->st.busy_sent++;
        answer_silently(c, pk, from, m, PL_CALL_MSG_BUSY, 0, now);
        return;
    }
    uint32_t others = live_count(c);
    slot *s = NULL;
    if (others == 0 || c->call_waiting) s = alloc_slot(c);
    if (!s) {
        c->st.busy_sent++;
        answer_silently(c, pk, from, m, PL_CALL_MSG_BUSY, 0, now);
        return;
    }
    c->st.calls_received++;
    s->caller = false;
    s->outgoing = false;
    memcpy(s->id, m->call_id, PL_CALL_ID_SIZE);
    memcpy(s->peer, pk, 32);
    copy_name(s, cert);
    if (from) {
        s->addr = *from;
        s->has_addr = true;
    }
    s->remote_caps = m->caps;
    s->agreed = agreed;
    s->started = now;
    s->rx_next = (uint64_t)m->seq + 1;
    uint16_t ring_s = m->ring_timeout_s < 600 ? m->ring_timeout_s : 600;
    s->ring_deadline = now + (pl_time)ring_s * PL_SEC + PL_CALL_RING_MARGIN;
    s->state = PL_CALL_RINGING;
    heard_from(s, now);
    bool answer_now = admit == PL_CALL_ADMIT_ANSWER || (c->auto_answer && others == 0);
    if (!answer_now) enqueue(c, s, PL_CALL_MSG_RINGING, 0, now, NULL);
    push_event(c, s, PL_CALL_EV_INCOMING, PL_CALL_IDLE, now);
    if (answer_now) do_answer(c, s, now);
}

/* A numbered message, in order (or a final one), for a call we know. */
static void act(pl_call *c, slot *s, const pl_call_msg *m, pl_time now)
{
    bool unanswered = s->state == PL_CALL_DIALING || s->state == PL_CALL_RINGING_REMOTE;
    bool answered = s->state == PL_CALL_ACTIVE || s->state == PL_CALL_HELD;
    switch (m->type) {
    case PL_CALL_MSG_RINGING:
        if (s->caller && s->state == PL_CALL_DIALING) {
            s->glare_wait = false;
            set_state(c, s, PL_CALL_RINGING_REMOTE, now);
            return;
        }
        break;
    case PL_CALL_MSG_ACCEPT:
        if (s->caller && unanswered) {
            s->remote_caps = m->caps;
            if (!pl_call_caps_agree(&c->caps, &m->caps, &s->agreed)) {
                end_call(c, s, PL_CALL_END_INCOMPATIBLE, true, PL_CALL_MSG_BYE, PL_CALL_BYE_HANGUP, now);
                return;
            }
            s->glare_wait = false;
            s->answered = now;
            s->ring_deadline = 0;
            pl_call_state prev = s->state;
            s->state = PL_CALL_ACTIVE;
            push_event(c, s, PL_CALL_EV_STATE, prev, now);
            push_event(c, s, PL_CALL_EV_MEDIA_START, prev, now);
            return;
        }
        break;
    case PL_CALL_MSG_REJECT:
        if (s->caller && unanswered) {
            switch (m->reason) {
            case PL_CALL_REJECT_GLARE:
                /* The peer is calling us too and its invite wins: it will
                 * arrive, and our call will take it over. */
                if (s->state != PL_CALL_DIALING) break;
                s->glare_wait = true;
                return;
            case PL_CALL_REJECT_REFUSED: end_call(c, s, PL_CALL_END_REFUSED, false, 0, 0, now); return;
            case PL_CALL_REJECT_INCOMPATIBLE: end_call(c, s, PL_CALL_END_INCOMPATIBLE, false, 0, 0, now); return;
            default: end_call(c, s, PL_CALL_END_REJECTED, false, 0, 0, now); return;
            }
        }
        break;
    case PL_CALL_MSG_BUSY:
        if (s->caller && unanswered) {
            end_call(c, s, PL_CALL_END_BUSY, false, 0, 0, now);
            return;
        }
        break;
    case PL_CALL_MSG_CANCEL:
        if (!s->caller && (s->state == PL_CALL_RINGING || answered)) {
            end_call(c, s, m->reason == PL_CALL_CANCEL_TIMEOUT ? PL_CALL_END_NO_ANSWER : PL_CALL_END_CANCELLED,
                     false, 0, 0, now);
            return;
        }
        break;
    case PL_CALL_MSG_BYE:
        end_call(c, s, m->reason == PL_CALL_BYE_FAILURE ? PL_CALL_END_NETWORK_FAILURE : PL_CALL_END_HANGUP_REMOTE,
                 false, 0, 0, now);
        return;
    case PL_CALL_MSG_HOLD:
        if (answered) {
            if (!(s->hold & PL_CALL_HOLD_REMOTE)) {
                pl_call_state prev = s->state;
                s->hold |= PL_CALL_HOLD_REMOTE;
                s->state = PL_CALL_HELD;
                if (prev == PL_CALL_ACTIVE) push_event(c, s, PL_CALL_EV_MEDIA_STOP, prev, now);
                push_event(c, s, PL_CALL_EV_STATE, prev, now);
            }
            return;
        }
        break;
    case PL_CALL_MSG_RESUME:
        if (answered) {
            if (s->hold & PL_CALL_HOLD_REMOTE) {
                pl_call_state prev = s->state;
                s->hold &= (uint8_t)~PL_CALL_HOLD_REMOTE;
                s->state = s->hold ? PL_CALL_HELD : PL_CALL_ACTIVE;
                push_event(c, s, PL_CALL_EV_STATE, prev, now);
                if (s->state == PL_CALL_ACTIVE) push_event(c, s, PL_CALL_EV_MEDIA_START, prev, now);
            }
            return;
        }
        break;
    default: break;
    }
    c->st.rx_unexpected++;
}

/* ---- messages in ------------------------------------------------------------------------------------ */

static void unknown_call(pl_call *c, const uint8_t pk[32], const pl_cert *cert, const pl_addr *from,
                         const pl_call_msg *m, pl_time now)
{
    /* A glare leftover: the call id we gave up, or the peer's invite that
     * lost. Acknowledged so the peer stops sending it, and ignored. */
    if (find_alias(c, pk, m->call_id)) {
        if (is_reliable_type(m->type)) send_raw(c, pk, from, m->call_id, PL_CALL_MSG_ACK, 0, 0, m->seq, NULL, now);
        return;
    }
    if (m->type == PL_CALL_MSG_INVITE) {
        incoming(c, pk, cert, from, m, now);
        return;
    }
    if (m->type == PL_CALL_MSG_CANCEL) {
        /* Our invite lost a glare and the winner's caller gave up before
         * its invite reached us: our call is cancelled with it. */
        slot *mine = live_with(c, pk);
        if (mine && mine->glare_wait) {
            send_raw(c, pk, from, m->call_id, PL_CALL_MSG_ACK, 0, 0, m->seq, NULL, now);
            end_call(c, mine, PL_CALL_END_CANCELLED, false, 0, 0, now);
            return;
        }
    }
    c->st.rx_unknown_call++;
    if (!is_final_type(m->type)) return;
    /* A final message for a call we do not know: acknowledge it, so the
     * sender stops. A CANCEL may have overtaken its invite; remember the
     * call as over so that the invite, if it comes, does not ring. */
    if (m->type == PL_CALL_MSG_CANCEL) remember_ended(c, pk, from, m->call_id, (uint64_t)m->seq + 1, 0, 0, 0, now);
    send_raw(c, pk, from, m->call_id, PL_CALL_MSG_ACK, 0, 0, m->seq, NULL, now);
}

bool pl_call_message(pl_call *c, const uint8_t pk[32], const pl_cert *cert, const pl_addr *from,
                     const uint8_t *msg, size_t len, pl_time now)
{
    if (len == 0 || msg[0] < PL_CALL_MSG_FIRST || msg[0] > PL_CALL_MSG_LAST) return false;
    c->st.rx_messages++;
    pl_call_msg m;
    if (pl_call_msg_decode(&m, msg, len) != PL_CALL_OK) {
        c->st.rx_malformed++;
        return true;
    }
    slot *s = find_call(c, pk, m.call_id);
    if (!s) {
        unknown_call(c, pk, cert, from, &m, now);
        flush_events(c);
        return true;
    }
    if (s->state != PL_CALL_ENDED) heard_from(s, now);
    copy_name(s, cert);
    on_ack(c, s, m.ack, now);
    if (m.type == PL_CALL_MSG_ACK) {
        flush_events(c);
        return true;
    }
    if (m.type == PL_CALL_MSG_KEEPALIVE) {
        /* An ended call does not answer: the peer is to notice it is gone. */
        if (s->state != PL_CALL_ENDED) send_ack(c, s, now);
        flush_events(c);
        return true;
    }
    if (m.seq < s->rx_next) {
        c->st.rx_duplicates++;
        send_ack(c, s, now);
    } else if (s->state == PL_CALL_ENDED) {
        /* Whatever it is, the call is over: acknowledge it, act on nothing. */
        s->rx_next = (uint64_t)m.seq + 1;
        send_ack(c, s, now);
    } else if (m.seq > s->rx_next && !is_final_type(m.type)) {
        c->st.rx_out_of_order++;
    } else {
        s->rx_next = (uint64_t)m.seq + 1;
        act(c, s, &m, now);
        if (s->handle && s->ack_out + 1 < s->rx_next) send_ack(c, s, now);
    }
    flush_events(c);
    return true;
}

/* ---- local actions ---------------------------------------------------------------------------------- */

pl_call_err pl_call_dial(pl_call *c, const uint8_t peer_pk[32], const char *peer_name, const pl_addr *addr,
                         pl_time now, uint32_t *handle)
{
    if (handle) *handle = 0;
    if (memcmp(peer_pk, c->own, 32) == 0) return PL_CALL_ERR_BAD_KEY;
    slot *mine = live_with(c, peer_pk);
    if (mine) {
        if (handle) *handle = mine->handle;
        if (mine->state != PL_CALL_RINGING) return PL_CALL_ERR_BUSY;
        /* That peer is ringing us: we both want this call. */
        do_answer(c, mine, now);
        flush_events(c);
        return PL_CALL_OK;
    }
    if (!c->call_waiting && live_count(c) > 0) return PL_CALL_ERR_BUSY;
    slot *s = alloc_slot(c);
    if (!s) return PL_CALL_ERR_FULL;
    s->outgoing = true;
    s->caller = true;
    c->rng->fill(c->rng->ctx, s->id, PL_CALL_ID_SIZE);
    memcpy(s->peer, peer_pk, 32);
    if (peer_name) {
        size_t n = strnlen(peer_name, PL_NAME_MAX);
        memcpy(s->name, peer_name, n);
        s->name[n] = 0;
    }
    if (addr) {
        s->addr = *addr;
        s->has_addr = true;
    }
    s->started = now;
    s->ring_deadline = now + c->ring_timeout;
    s->state = PL_CALL_DIALING;
    bool sent = false;
    enqueue(c, s, PL_CALL_MSG_INVITE, 0, now, &sent);
    if (!sent) {
        free_slot(s);
        return PL_CALL_ERR_SEND;
    }
    c->st.calls_placed++;
    if (handle) *handle = s->handle;
    push_event(c, s, PL_CALL_EV_STATE, PL_CALL_IDLE, now);
    flush_events(c);
    return PL_CALL_OK;
}

static slot *live_handle(pl_call *c, uint32_t handle, pl_call_err *err)
{
    slot *s = by_handle(c, handle);
    if (!s || s->silent) {
        *err = PL_CALL_ERR_NO_CALL;
        return NULL;
    }
    *err = PL_CALL_OK;
    return s;
}

pl_call_err pl_call_answer(pl_call *c, uint32_t handle, pl_time now)
{
    pl_call_err err;
    slot *s = live_handle(c, handle, &err);
    if (!s) return err;
    if (s->state != PL_CALL_RINGING) return PL_CALL_ERR_STATE;
    do_answer(c, s, now);
    flush_events(c);
    return PL_CALL_OK;
}

pl_call_err pl_call_reject(pl_call *c, uint32_t handle, pl_call_reject_reason reason, pl_time now)
{
    pl_call_err err;
    slot *s = live_handle(c, handle, &err);
    if (!s) return err;
    if (reason != PL_CALL_REJECT_DECLINED && reason != PL_CALL_REJECT_REFUSED) return PL_CALL_ERR_CONFIG;
    if (s->state != PL_CALL_RINGING) return PL_CALL_ERR_STATE;
    end_call(c, s, reason == PL_CALL_REJECT_REFUSED ? PL_CALL_END_REFUSED : PL_CALL_END_REJECTED, true,
             PL_CALL_MSG_REJECT, (uint8_t)reason, now);
    flush_events(c);
    return PL_CALL_OK;
}

pl_call_err pl_call_hangup(pl_call *c, uint32_t handle, pl_time now)
{
    pl_call_err err;
    slot *s = live_handle(c, handle, &err);
    if (!s) return err;
    if (!is_live(s)) return PL_CALL_ERR_STATE;
    pl_call_end_reason why = PL_CALL_END_HANGUP_LOCAL;
    if (s->state == PL_CALL_RINGING) why = PL_CALL_END_REJECTED;
    else if (s->state == PL_CALL_DIALING || s->state == PL_CALL_RINGING_REMOTE) why = PL_CALL_END_CANCELLED;
    uint8_t reason, type = final_for(s, &reason);
    end_call(c, s, why, true, type, reason, now);
    flush_events(c);
    return PL_CALL_OK;
}

pl_call_err pl_call_hold(pl_call *c, uint32_t handle, pl_time now)
{
    pl_call_err err;
    slot *s = live_handle(c, handle, &err);
    if (!s) return err;
    if ((s->state != PL_CALL_ACTIVE && s->state != PL_CALL_HELD) || (s->hold & PL_CALL_HOLD_LOCAL))
        return PL_CALL_ERR_STATE;
    if (enqueue(c, s, PL_CALL_MSG_HOLD, 0, now, NULL) != PL_CALL_OK) return PL_CALL_ERR_FULL;
    pl_call_state prev = s->state;
    s->hold |= PL_CALL_HOLD_LOCAL;
    s->state = PL_CALL_HELD;
    if (prev == PL_CALL_ACTIVE) push_event(c, s, PL_CALL_EV_MEDIA_STOP, prev, now);
    push_event(c, s, PL_CALL_EV_STATE, prev, now);
    flush_events(c);
    return PL_CALL_OK;
}

pl_call_err pl_call_resume(pl_call *c, uint32_t handle, pl_time now)
{
    pl_call_err err;
    slot *s = live_handle(c, handle, &err);
    if (!s) return err;
    if (s->state != PL_CALL_HELD || !(s->hold & PL_CALL_HOLD_LOCAL)) return PL_CALL_ERR_STATE;
    if (enqueue(c, s, PL_CALL_MSG_RESUME, 0, now, NULL) != PL_CALL_OK) return PL_CALL_ERR_FULL;
    s->hold &= (uint8_t)~PL_CALL_HOLD_LOCAL;
    s->state = s->hold ? PL_CALL_HELD : PL_CALL_ACTIVE;
    push_event(c, s, PL_CALL_EV_STATE, PL_CALL_HELD, now);
    if (s->state == PL_CALL_ACTIVE) push_event(c, s, PL_CALL_EV_MEDIA_START, PL_CALL_HELD, now);
    flush_events(c);
    return PL_CALL_OK;
}

pl_call_err pl_call_set_mute(pl_call *c, uint32_t handle, bool muted)
{
    pl_call_err err;
    slot *s = live_handle(c, handle, &err);
    if (!s) return err;
    if (!is_live(s)) return PL_CALL_ERR_STATE;
    s->muted = muted;
    return PL_CALL_OK;
}

pl_call_err pl_call_set_call_waiting(pl_call *c, bool on)
{
    if (!on && live_count(c) > 1) return PL_CALL_ERR_STATE;
    c->call_waiting = on;
    return PL_CALL_OK;
}

/* ---- the peer's session, liveness and time -------------------------------------------------------------- */

static pl_call_end_reason failure_reason(const slot *s)
{
    return s->caller && s->state == PL_CALL_DIALING && !s->heard ? PL_CALL_END_UNREACHABLE
                                                                 : PL_CALL_END_NETWORK_FAILURE;
}

void pl_call_peer_down(pl_call *c, const uint8_t pk[32], pl_time now)
{
    for (uint32_t i = 0; i < c->n_slots; i++) {
        slot *s = &c->slots[i];
        if (!s->handle || memcmp(s->peer, pk, 32) != 0) continue;
        if (s->state == PL_CALL_ENDED) {
            /* Nothing left to say to a peer that is gone. */
            clear_queue(s);
            continue;
        }
        end_call(c, s, failure_reason(s), true, 0, 0, now);
    }
    flush_events(c);
}

void pl_call_heard(pl_call *c, const uint8_t pk[32], pl_time now)
{
    for (uint32_t i = 0; i < c->n_slots; i++) {
        slot *s = &c->slots[i];
        if (is_live(s) && s->heard && memcmp(s->peer, pk, 32) == 0) heard_from(s, now);
    }
}

/* The message in flight was sent PL_CALL_TRIES times without an answer.
 * An invite that was never answered at all does not end its call here:
 * the copies may be waiting in the link for a session that is still being
 * set up; PL_CALL_UNREACHABLE_AFTER or the session layer's report
 * (pl_call_peer_down) decides. */
static void given_up(pl_call *c, slot *s, pl_time now)
{
    clear_queue(s);
    if (s->state == PL_CALL_ENDED || (s->caller && s->state == PL_CALL_DIALING && !s->heard)) return;
    end_call(c, s, PL_CALL_END_NETWORK_FAILURE, true, 0, 0, now);
}

static bool liveness_applies(const slot *s)
{
    return s->heard && is_live(s);
}

static void tick_slot(pl_call *c, slot *s, pl_time now)
{
    if (s->qlen && s->head_seq && now >= s->retx_at) {
        if (s->tries >= PL_CALL_TRIES) {
            given_up(c, s, now);
        } else {
            s->tries++;
            s->rto = s->rto * 2 > PL_CALL_RTO_MAX ? PL_CALL_RTO_MAX : s->rto * 2;
            s->retx_at = now + s->rto;
            c->st.retransmissions++;
            send_msg(c, s, s->q[0].type, s->q[0].reason, s->head_seq, now);
        }
    }
    if (s->state == PL_CALL_ENDED) {
        if (now >= s->linger_until) free_slot(s);
        return;
    }
    if (s->caller && s->state == PL_CALL_DIALING && !s->heard && now >= s->started + PL_CALL_UNREACHABLE_AFTER) {
        end_call(c, s, PL_CALL_END_UNREACHABLE, true, PL_CALL_MSG_CANCEL, PL_CALL_CANCEL_TIMEOUT, now);
        return;
    }
    if (s->ring_deadline && now >= s->ring_deadline &&
        (s->state == PL_CALL_DIALING || s->state == PL_CALL_RINGING_REMOTE || s->state == PL_CALL_RINGING)) {
        if (!s->caller) end_call(c, s, PL_CALL_END_NO_ANSWER, true, 0, 0, now);
        else if (!s->heard) end_call(c, s, PL_CALL_END_UNREACHABLE, true, PL_CALL_MSG_CANCEL, PL_CALL_CANCEL_TIMEOUT, now);
        else end_call(c, s, PL_CALL_END_NO_ANSWER, true, PL_CALL_MSG_CANCEL, PL_CALL_CANCEL_TIMEOUT, now);
        return;
    }
    if (liveness_applies(s)) {
        if (now - s->last_heard >= c->silence_timeout) {
            bool answered = s->state == PL_CALL_ACTIVE || s->state == PL_CALL_HELD;
            end_call(c, s, PL_CALL_END_NETWORK_FAILURE, true, answered ? PL_CALL_MSG_BYE : 0,
                     answered ? PL_CALL_BYE_FAILURE : 0, now);
        } else if (now >= s->probe_at) {
            s->probe_at = now + PL_CALL_PROBE_EVERY;
            send_msg(c, s, PL_CALL_MSG_KEEPALIVE, 0, 0, now);
        }
    }
}

void pl_call_tick(pl_call *c, pl_time now)
{
    for (uint32_t i = 0; i < c->n_slots; i++)
        if (c->slots[i].handle) tick_slot(c, &c->slots[i], now);
    flush_events(c);
}

static void earliest(pl_time *t, pl_time candidate)
{
    if (candidate < *t) *t = candidate;
}

pl_time pl_call_next_timeout(const pl_call *c)
{
    pl_time t = PL_TIME_NEVER;
    for (uint32_t i = 0; i < c->n_slots; i++) {
        const slot *s = &c->slots[i];
        if (!s->handle) continue;
        if (s->qlen && s->head_seq) earliest(&t, s->retx_at);
        if (s->state == PL_CALL_ENDED) {
            earliest(&t, s->linger_until);
            continue;
        }
        if (s->ring_deadline &&
            (s->state == PL_CALL_DIALING || s->state == PL_CALL_RINGING_REMOTE || s->state == PL_CALL_RINGING))
            earliest(&t, s->ring_deadline);
        if (s->caller && s->state == PL_CALL_DIALING && !s->heard) earliest(&t, s->started + PL_CALL_UNREACHABLE_AFTER);
        if (liveness_applies(s)) {
            earliest(&t, s->probe_at);
            earliest(&t, s->last_heard + c->silence_timeout);
        }
    }
    return t;
}

/* ---- set-up and queries -------------------------------------------------------------------------------- */

pl_call_err pl_call_new(pl_call **out, const pl_call_config *cfg, const pl_call_io *io)
{
    *out = NULL;
    if (!cfg || !cfg->rng || !io || !io->send) return PL_CALL_ERR_CONFIG;
    pl_time ring = cfg->ring_timeout ? cfg->ring_timeout : PL_CALL_RING_TIMEOUT_DEFAULT;
    pl_time silence = cfg->silence_timeout ? cfg->silence_timeout : PL_CALL_SILENCE_DEFAULT;
    uint32_t n = cfg->max_calls ? cfg->max_calls : PL_CALL_SLOTS_DEFAULT;
    pl_call_caps caps = cfg->caps;
    if (caps.codec == 0 && caps.flags == 0 && caps.min_bps == 0 && caps.max_bps == 0)
        caps = (pl_call_caps){PL_CALL_CODEC_OPUS, PL_CALL_CAP_FEC | PL_CALL_CAP_DTX, 6000, 64000};
    if (ring < PL_SEC || ring > 600 * PL_SEC || silence < 3 * PL_SEC || silence > 600 * PL_SEC ||
        n > PL_CALL_SLOTS_MAX || !caps_valid(&caps))
        return PL_CALL_ERR_CONFIG;
    const pl_mem *mem = cfg->mem ? cfg->mem : pl_mem_system();
    pl_call *c = mem->calloc(mem->ctx, 1, sizeof *c);
    if (!c) return PL_CALL_ERR_NOMEM;
    c->mem = mem;
    c->slots = mem->calloc(mem->ctx, n, sizeof *c->slots);
    /* Each call can produce a few events in one step (an end: media stop
     * and ended), and a peer going down ends all of them at once. */
    c->ev_cap = 4 * n + 16;
    c->events = mem->calloc(mem->ctx, c->ev_cap, sizeof *c->events);
    if (!c->slots || !c->events) {
        pl_call_free(c);
        return PL_CALL_ERR_NOMEM;
    }
    memcpy(c->own, cfg->own_pk, 32);
    c->rng = cfg->rng;
    c->io = *io;
    c->caps = caps;
    c->ring_timeout = ring;
    c->silence_timeout = silence;
    c->auto_answer = cfg->auto_answer;
    c->call_waiting = cfg->call_waiting;
    c->n_slots = n;
    c->next_handle = 1;
    *out = c;
    return PL_CALL_OK;
}

void pl_call_free(pl_call *c)
{
    if (!c) return;
    const pl_mem *mem = c->mem;
    if (c->slots) mem->free(mem->ctx, c->slots);
    if (c->events) mem->free(mem->ctx, c->events);
    sodium_memzero(c, sizeof *c);
    mem->free(mem->ctx, c);
}

pl_call_err pl_call_get_info(const pl_call *c, uint32_t handle, pl_call_info *out)
{
    memset(out, 0, sizeof *out);
    const slot *s = by_handle(c, handle);
    if (!s || s->silent) return PL_CALL_ERR_NO_CALL;
    out->handle = s->handle;
    out->state = s->state;
    out->hold = s->hold;
    out->outgoing = s->outgoing;
    out->muted = s->muted;
    memcpy(out->call_id, s->id, PL_CALL_ID_SIZE);
    memcpy(out->peer_pk, s->peer, 32);
    memcpy(out->peer_name, s->name, sizeof out->peer_name);
    if (s->answered) out->caps = s->agreed;
    out->reason = s->reason;
    out->end_local = s->end_local;
    out->started = s->started;
    out->answered = s->answered;
    out->ended = s->state == PL_CALL_ENDED ? s->ended : 0;
    return PL_CALL_OK;
}

uint32_t pl_call_find(const pl_call *c, const uint8_t peer_pk[32])
{
    const slot *s = live_with(c, peer_pk);
    return s ? s->handle : 0;
}

size_t pl_call_list(const pl_call *c, uint32_t *handles, size_t max)
{
    size_t n = 0;
    for (uint32_t i = 0; i < c->n_slots && n < max; i++)
        if (is_live(&c->slots[i])) handles[n++] = c->slots[i].handle;
    return n;
}

pl_call_stats pl_call_get_stats(const pl_call *c) { return c->st; }

bool pl_call_selfcheck(const pl_call *c)
{
    uint32_t live = 0;
    for (uint32_t i = 0; i < c->n_slots; i++) {
        const slot *s = &c->slots[i];
        if (!s->handle) continue;
        if (s->state <= PL_CALL_IDLE || s->state > PL_CALL_ENDED) return false;
        if (s->silent && s->state != PL_CALL_ENDED) return false;
        if (s->qlen > PL_CALL_QUEUE + 1 || (s->qlen != 0) != (s->head_seq != 0)) return false;
        if (s->head_seq > s->tx_last || s->rx_next == 0) return false;
        for (uint8_t k = 0; k < s->qlen; k++)
            if (!is_reliable_type(s->q[k].type)) return false;
        if ((s->hold != 0) != (s->state == PL_CALL_HELD) || (s->hold & ~(PL_CALL_HOLD_LOCAL | PL_CALL_HOLD_REMOTE)))
            return false;
        if (s->glare_wait && !(s->caller && s->state == PL_CALL_DIALING)) return false;
        switch (s->state) {
        case PL_CALL_DIALING:
        case PL_CALL_RINGING_REMOTE:
            if (!s->caller || s->answered) return false;
            break;
        case PL_CALL_RINGING:
            if (s->caller || s->answered) return false;
            break;
        case PL_CALL_ACTIVE:
        case PL_CALL_HELD:
            if (!s->answered || !caps_valid(&s->agreed)) return false;
            break;
        case PL_CALL_ENDED:
            /* Only a final message may still be on its way. */
            if (s->qlen > 1 || (s->qlen == 1 && !is_final_type(s->q[0].type))) return false;
            if (!s->silent && (s->reason == PL_CALL_END_NONE || s->reason > PL_CALL_END_MAX)) return false;
            break;
        default: return false;
        }
        for (uint32_t j = i + 1; j < c->n_slots; j++) {
            const slot *o = &c->slots[j];
            if (!o->handle) continue;
            if (o->handle == s->handle) return false;
            /* One live call per peer. */
            if (is_live(s) && is_live(o) && memcmp(s->peer, o->peer, 32) == 0) return false;
        }
        live += is_live(s);
    }
    if (!c->call_waiting && live > 1) return false;
    return c->ev_len <= c->ev_cap;
}

const char *pl_call_state_name(pl_call_state state)
{
    switch (state) {
    case PL_CALL_IDLE: return "idle";
    case PL_CALL_DIALING: return "dialing";
    case PL_CALL_RINGING: return "ringing";
    case PL_CALL_RINGING_REMOTE: return "ringing-remote";
    case PL_CALL_ACTIVE: return "active";
    case PL_CALL_HELD: return "on-hold";
    case PL_CALL_ENDED: return "ended";
    }
    return "unknown";
}

const char *pl_call_end_name(pl_call_end_reason reason)
{
    switch (reason) {
    case PL_CALL_END_NONE: return "not ended";
    case PL_CALL_END_HANGUP_LOCAL: return "hung up";
    case PL_CALL_END_HANGUP_REMOTE: return "hung up by the other side";
    case PL_CALL_END_REJECTED: return "rejected";
    case PL_CALL_END_BUSY: return "busy";
    case PL_CALL_END_NO_ANSWER: return "no answer";
    case PL_CALL_END_CANCELLED: return "cancelled";
    case PL_CALL_END_UNREACHABLE: return "unreachable";
    case PL_CALL_END_NETWORK_FAILURE: return "network failure";
    case PL_CALL_END_REFUSED: return "refused";
    case PL_CALL_END_INCOMPATIBLE: return "no common codec";
    }
    return "unknown";
}

const char *pl_call_strerror(pl_call_err err)
{
    switch (err) {
    case PL_CALL_OK: return "ok";
    case PL_CALL_ERR_CONFIG: return "bad call configuration or argument";
    case PL_CALL_ERR_NOMEM: return "out of memory";
    case PL_CALL_ERR_MALFORMED: return "malformed call message";
    case PL_CALL_ERR_BUFFER: return "buffer too small";
    case PL_CALL_ERR_NO_CALL: return "no such call";
    case PL_CALL_ERR_STATE: return "not allowed in the call's state";
    case PL_CALL_ERR_BUSY: return "already in a call";
    case PL_CALL_ERR_FULL: return "no room for another call or message";
    case PL_CALL_ERR_SEND: return "the message could not be sent (no session or address)";
    case PL_CALL_ERR_BAD_KEY: return "cannot call one's own key";
    }
    return "unknown call error";
}
