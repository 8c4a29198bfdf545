/* chat.c - one-to-one text chat (chat.h, docs/messages.md). */
#include "chat.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "keymap.h"
#include "mailmsg.h"
#include "wire.h"

#define CHAT_HEADER 18 /* epoch, seq, text length */
#define RECEIPT_MAX_LIST 16

enum { OUT_FREE = 0, OUT_DIRECT, OUT_DEPOSITING, OUT_STORED };

typedef struct outmsg {
    uint8_t state;
    uint8_t direct_tries, deposit_tries;
    uint32_t conv;
    pl_time probe_every;
    uint64_t seq;
    pl_time next_at; /* PL_TIME_NEVER: waiting for someone else */
    pl_env_sealed st; /* no chunks: the head is all */
    uint8_t env[PL_ENV_MAX_SIZE];
    uint16_t env_len;
} outmsg;

typedef struct held {
    bool used;
    bool via_mailbox;
    uint32_t conv;
    uint64_t seq;
    uint8_t id[PL_ENV_ID_SIZE];
    pl_time sent_at;
    uint16_t len;
    char text[PL_CHAT_MAX_TEXT];
} held;

typedef struct conv {
    bool used;
    bool have_cert;
    char peer[PL_NAME_MAX + 1];
    pl_cert cert;
    uint64_t out_epoch, out_next, read_reported;
    uint64_t in_epoch, in_next, read_through;
    uint32_t n_held;
    pl_time gap_deadline;
    uint64_t missing[PL_CHAT_MAX_MISSING];
    uint8_t n_missing;
    bool receipt_due;
    pl_time receipt_at;
} conv;

struct pl_chat {
    pl_identity id;
    uint8_t cert[PL_CERT_MAX_SIZE];
    size_t cert_len;
    pl_cert own;
    uint8_t ca_pk[32];
    const pl_crl *crl;
    const pl_rng *rng;
    const pl_mem *mem;
    pl_chat_io io;
    conv *convs;
    uint32_t n_convs, cap_convs;
    pl_keymap conv_by_name;
    outmsg *out;
    held *held;
    pl_env_seen seen;
    pl_env_opened scratch; /* the envelope being opened: no allocation per message */
    pl_chat_stats stats;
};

/* ---- helpers ---------------------------------------------------------------------------------- */

static void emit(pl_chat *c, const pl_chat_event *ev)
{
    if (c->io.event) c->io.event(c->io.ctx, ev);
}

/* Well-formed UTF-8 (no overlong forms, surrogates or values past
 * U+10FFFF) without NUL. */
static bool utf8_ok(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t b = s[i];
        size_t k;
        uint32_t cp;
        if (b == 0) return false;
        if (b < 0x80) {
            i++;
            continue;
        }
        if (b >= 0xc2 && b <= 0xdf) k = 1, cp = b & 0x1f;
        else if (b >= 0xe0 && b <= 0xef) k = 2, cp = b & 0x0f;
        else if (b >= 0xf0 && b <= 0xf4) k = 3, cp = b & 0x07;
        else return false;
        if (i + k >= n) return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += k + 1;
    }
    return true;
}

static void name_hash(const char *name, uint8_t key[32])
{
    crypto_generichash(key, 32, (const uint8_t *)name, strlen(name), NULL, 0);
}

static conv *conv_of(pl_chat *c, const char *peer, bool create, uint32_t *idx)
{
    char norm[PL_NAME_MAX + 1];
    uint8_t key[32];
    uint32_t i;
    if (pl_name_normalize(peer, norm) != PL_NAME_OK) return NULL;
    name_hash(norm, key);
    if (pl_keymap_get(&c->conv_by_name, key, &i)) {
        if (idx) *idx = i;
        return &c->convs[i];
    }
    if (!create || c->n_convs >= PL_CHAT_MAX_CONVERSATIONS) return NULL;
    if (c->n_convs == c->cap_convs) {
        uint32_t cap = c->cap_convs ? 2 * c->cap_convs : 16;
        conv *a = c->mem->calloc(c->mem->ctx, cap, sizeof *a);
        if (!a) return NULL;
        if (c->convs) {
            memcpy(a, c->convs, c->n_convs * sizeof *a);
            c->mem->free(c->mem->ctx, c->convs);
        }
        c->convs = a;
        c->cap_convs = cap;
    }
    i = c->n_convs;
    if (!pl_keymap_put(&c->conv_by_name, key, i)) return NULL;
    c->n_convs++;
    conv *v = &c->convs[i];
    memset(v, 0, sizeof *v);
    v->used = true;
    snprintf(v->peer, sizeof v->peer, "%s", norm);
    /* A fresh numbering, unlike any this user had with this peer before:
     * a reinstalled node does not collide with its old sequence numbers. */
    do v->out_epoch = pl_rng_u64(c->rng) >> 1;
    while (!v->out_epoch);
    v->out_next = 1;
    v->in_next = 1;
    v->gap_deadline = PL_TIME_NEVER;
    v->receipt_at = PL_TIME_NEVER;
    if (idx) *idx = i;
    return v;
}

/* ---- sending ----------------------------------------------------------------------------------- */

static bool send_env_direct(pl_chat *c, const conv *v, const uint8_t *env, size_t len, pl_time now)
{
    uint8_t msg[PL_MBOX_MSG_MAX];
    pl_mbox_msg m = {.type = PL_MBOX_CHAT, .env = env, .env_len = len};
    size_t n = pl_mbox_encode(msg, sizeof msg, &m);
    return n && v->have_cert && c->io.send_direct && c->io.send_direct(c->io.ctx, &v->cert, msg, n, now);
}

static void go_to_mailbox(pl_chat *c, outmsg *o, pl_time now)
{
    if (c->io.deposit && c->io.deposit(c->io.ctx, &o->st, o->env, o->env_len, now)) {
        o->state = OUT_DEPOSITING;
        o->next_at = PL_TIME_NEVER;
        o->deposit_tries++;
        c->stats.deposited++;
    } else {
        o->state = OUT_DEPOSITING;
        o->deposit_tries++;
        o->next_at = now + PL_CHAT_DEPOSIT_RETRY;
    }
}

static void out_done(pl_chat *c, outmsg *o, pl_chat_event_type type, uint8_t status, pl_time now)
{
    const conv *v = &c->convs[o->conv];
    uint8_t id[16];
    memcpy(id, o->st.id, 16);
    pl_chat_event ev = {.type = type, .peer = v->peer, .id = id, .seq = o->seq, .status = status, .now = now};
    pl_env_sealed_wipe(&o->st);
    memset(o, 0, sizeof *o);
    emit(c, &ev);
}

pl_chat_err pl_chat_send(pl_chat *c, const pl_cert *peer, const char *text, size_t len, pl_time now,
                         uint8_t id[PL_ENV_ID_SIZE], uint64_t *seq)
{
    if (!text || len == 0 || len > PL_CHAT_MAX_TEXT || !utf8_ok((const uint8_t *)text, len)) return PL_CHAT_ERR_TEXT;
    if (!peer || pl_cert_verify(peer, c->ca_pk, now / PL_SEC, c->crl) != PL_CERT_OK ||
        memcmp(peer->sign_pk, c->id.sign_pk, 32) == 0)
        return PL_CHAT_ERR_PEER;
    outmsg *o = NULL;
    for (size_t i = 0; i < PL_CHAT_MAX_PENDING && !o; i++)
        if (c->out[i].state == OUT_FREE) o = &c->out[i];
    uint32_t ci;
    conv *v = conv_of(c, peer->name, true, &ci);
    if (!o || !v) return PL_CHAT_ERR_FULL;
    v->cert = *peer;
    v->have_cert = true;
    uint8_t body[CHAT_HEADER + PL_CHAT_MAX_TEXT];
    pl_writer w = pl_writer_make(body, sizeof body);
    pl_write_u64(&w, v->out_epoch);
    pl_write_u64(&w, v->out_next);
    pl_write_u16(&w, (uint16_t)len);
    pl_write_bytes(&w, text, len);
    size_t env_len;
    if (w.err || pl_env_seal(&o->st, o->env, sizeof o->env, &env_len, &c->id, c->cert, c->cert_len, peer,
                             PL_ENV_CHAT, body, w.off, now, c->rng) != PL_ENV_OK) {
        sodium_memzero(body, sizeof body);
        memset(o, 0, sizeof *o);
        return PL_CHAT_ERR_PEER;
    }
    sodium_memzero(body, sizeof body);
    o->st.body = NULL; /* no chunks: nothing to keep */
    o->env_len = (uint16_t)env_len;
    o->conv = ci;
    o->seq = v->out_next++;
    c->stats.sent++;
    if (id) memcpy(id, o->st.id, 16);
    if (seq) *seq = o->seq;
    if (send_env_direct(c, v, o->env, o->env_len, now)) {
        c->stats.sent_direct++;
        o->state = OUT_DIRECT;
        o->direct_tries = 1;
        o->next_at = now + PL_CHAT_RESEND;
    } else {
        go_to_mailbox(c, o, now);
    }
    return PL_CHAT_OK;
}

void pl_chat_deposited(pl_chat *c, const uint8_t id[PL_ENV_ID_SIZE], uint8_t status, pl_time now)
{
    for (size_t i = 0; i < PL_CHAT_MAX_PENDING; i++) {
        outmsg *o = &c->out[i];
        if (o->state != OUT_DEPOSITING || memcmp(o->st.id, id, 16) != 0) continue;
        if (status == PL_MBOX_OK || status == PL_MBOX_DELETED) {
            /* In the mailbox (or taken from it already): a receipt will come. */
            o->state = OUT_STORED;
            o->probe_every = PL_CHAT_PROBE;
            o->next_at = now + o->probe_every;
            pl_chat_event ev = {.type = PL_CHAT_EV_STORED, .peer = c->convs[o->conv].peer, .id = o->st.id,
                                .seq = o->seq, .now = now};
            emit(c, &ev);
        } else if (o->deposit_tries < PL_CHAT_DEPOSIT_TRIES) {
            o->next_at = now + PL_CHAT_DEPOSIT_RETRY;
        } else {
            c->stats.failed++;
            out_done(c, o, PL_CHAT_EV_FAILED, status, now);
        }
        return;
    }
}

/* ---- receipts ----------------------------------------------------------------------------------- */

static void queue_receipt(conv *v, pl_time now)
{
    v->receipt_due = true;
    if (v->receipt_at > now + PL_CHAT_RECEIPT_DELAY) v->receipt_at = now + PL_CHAT_RECEIPT_DELAY;
}

/* Through: the next expected, minus one. Missing: skipped after a gap.
 * Extra: received and held, not yet in order. */
static void send_receipt(pl_chat *c, uint32_t ci, pl_time now)
{
    conv *v = &c->convs[ci];
    v->receipt_due = false;
    v->receipt_at = PL_TIME_NEVER;
    if (!v->have_cert || !v->in_epoch) return;
    uint8_t body[8 * 3 + 2 + 8 * 2 * RECEIPT_MAX_LIST];
    pl_writer w = pl_writer_make(body, sizeof body);
    pl_write_u64(&w, v->in_epoch);
    pl_write_u64(&w, v->in_next - 1);
    pl_write_u64(&w, v->read_through < v->in_next ? v->read_through : v->in_next - 1);
    pl_write_u8(&w, v->n_missing);
    for (uint8_t i = 0; i < v->n_missing; i++) pl_write_u64(&w, v->missing[i]);
    uint8_t n_extra = 0;
    size_t at = w.off;
    pl_write_u8(&w, 0);
    for (size_t i = 0; i < PL_CHAT_MAX_HELD && n_extra < RECEIPT_MAX_LIST; i++) {
        if (!c->held[i].used || c->held[i].conv != ci) continue;
        pl_write_u64(&w, c->held[i].seq);
        n_extra++;
    }
    body[at] = n_extra;
    uint8_t env[PL_ENV_MAX_SIZE];
    size_t env_len;
    pl_env_sealed st;
    if (w.err || pl_env_seal(&st, env, sizeof env, &env_len, &c->id, c->cert, c->cert_len, &v->cert, PL_ENV_RECEIPT,
                             body, w.off, now, c->rng) != PL_ENV_OK)
        return;
    c->stats.receipts_sent++;
    if (!send_env_direct(c, v, env, env_len, now) && c->io.deposit) c->io.deposit(c->io.ctx, &st, env, env_len, now);
    pl_env_sealed_wipe(&st);
}

static bool in_list(const uint64_t *list, size_t n, uint64_t x)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == x) return true;
    return false;
}

static void on_receipt(pl_chat *c, uint32_t ci, const uint8_t *body, size_t len, pl_time now)
{
    conv *v = &c->convs[ci];
    pl_reader r = pl_reader_make(body, len);
    uint64_t epoch = pl_read_u64(&r), through = pl_read_u64(&r), read = pl_read_u64(&r);
    uint64_t missing[RECEIPT_MAX_LIST], extra[RECEIPT_MAX_LIST];
    uint8_t n_missing = pl_read_u8(&r);
    if (n_missing > RECEIPT_MAX_LIST) return;
    for (uint8_t i = 0; i < n_missing; i++) missing[i] = pl_read_u64(&r);
    uint8_t n_extra = pl_read_u8(&r);
    if (n_extra > RECEIPT_MAX_LIST) return;
    for (uint8_t i = 0; i < n_extra; i++) extra[i] = pl_read_u64(&r);
    if (!pl_reader_done(&r) || read > through || epoch != v->out_epoch) {
        c->stats.refused += !pl_reader_done(&r) || read > through;
        return;
    }
    c->stats.receipts_received++;
    for (size_t i = 0; i < PL_CHAT_MAX_PENDING; i++) {
        outmsg *o = &c->out[i];
        if (o->state == OUT_FREE || o->conv != ci) continue;
        if ((o->seq <= through && !in_list(missing, n_missing, o->seq)) || in_list(extra, n_extra, o->seq)) {
            c->stats.delivered++;
            out_done(c, o, PL_CHAT_EV_DELIVERED, PL_MBOX_OK, now);
            v = &c->convs[ci];
        }
    }
    if (read > v->read_reported && read < v->out_next) {
        v->read_reported = read;
        c->stats.read_reports++;
        pl_chat_event ev = {.type = PL_CHAT_EV_READ, .peer = v->peer, .seq = read, .now = now};
        emit(c, &ev);
    }
}

/* ---- receiving ----------------------------------------------------------------------------------- */

static void deliver(pl_chat *c, conv *v, uint64_t seq, const uint8_t id[16], pl_time sent_at, const char *text,
                    size_t len, bool late, bool via_mailbox, pl_time now)
{
    c->stats.received++;
    c->stats.late += late;
    pl_chat_event ev = {.type = PL_CHAT_EV_RECEIVED, .peer = v->peer, .id = id, .seq = seq, .text = text, .len = len,
                        .sent_at = sent_at, .late = late, .via_mailbox = via_mailbox, .now = now};
    emit(c, &ev);
}

static held *held_find(pl_chat *c, uint32_t ci, uint64_t seq)
{
    for (size_t i = 0; i < PL_CHAT_MAX_HELD; i++)
        if (c->held[i].used && c->held[i].conv == ci && c->held[i].seq == seq) return &c->held[i];
    return NULL;
}

static held *held_first(pl_chat *c, uint32_t ci)
{
    held *best = NULL;
    for (size_t i = 0; i < PL_CHAT_MAX_HELD; i++)
        if (c->held[i].used && c->held[i].conv == ci && (!best || c->held[i].seq < best->seq)) best = &c->held[i];
    return best;
}

static void held_release(pl_chat *c, uint32_t ci, held *h, pl_time now)
{
    held copy = *h;
    memset(h, 0, sizeof *h);
    c->convs[ci].n_held--;
    deliver(c, &c->convs[ci], copy.seq, copy.id, copy.sent_at, copy.text, copy.len, false, copy.via_mailbox, now);
    sodium_memzero(&copy, sizeof copy);
}

/* Hands up held messages that are now next in order. */
static void drain_held(pl_chat *c, uint32_t ci, pl_time now)
{
    held *h;
    while ((h = held_find(c, ci, c->convs[ci].in_next))) {
        c->convs[ci].in_next++;
        held_release(c, ci, h, now);
    }
    conv *v = &c->convs[ci];
    v->gap_deadline = v->n_held ? (v->gap_deadline == PL_TIME_NEVER ? now + PL_CHAT_GAP_WAIT : v->gap_deadline)
                                : PL_TIME_NEVER;
}

/* The wait for missing messages is over: report the gap and go on from
 * the first message held. */
static void skip_gap(pl_chat *c, uint32_t ci, pl_time now)
{
    conv *v = &c->convs[ci];
    held *h = held_first(c, ci);
    if (!h) {
        v->gap_deadline = PL_TIME_NEVER;
        return;
    }
    uint64_t from = v->in_next, to = h->seq - 1;
    for (uint64_t s = from; s <= to && v->n_missing < PL_CHAT_MAX_MISSING; s++) v->missing[v->n_missing++] = s;
    v->in_next = h->seq;
    c->stats.gaps++;
    pl_chat_event ev = {.type = PL_CHAT_EV_GAP, .peer = v->peer, .seq = from, .seq_to = to, .now = now};
    emit(c, &ev);
    v = &c->convs[ci];
    v->gap_deadline = PL_TIME_NEVER;
    drain_held(c, ci, now);
    queue_receipt(&c->convs[ci], now);
}

static void on_chat(pl_chat *c, uint32_t ci, const pl_env_opened *o, const uint8_t *body, size_t len,
                    bool via_mailbox, pl_time now)
{
    conv *v = &c->convs[ci];
    pl_reader r = pl_reader_make(body, len);
    uint64_t epoch = pl_read_u64(&r), seq = pl_read_u64(&r);
    uint16_t tlen = pl_read_u16(&r);
    const uint8_t *text = tlen <= PL_CHAT_MAX_TEXT ? pl_read_ptr(&r, tlen) : NULL;
    if (!pl_reader_done(&r) || !text || !tlen || !utf8_ok(text, tlen) || epoch == 0 || seq == 0) {
        c->stats.refused++;
        return;
    }
    pl_env_seen_add(&c->seen, o->id, o->sent_at, now);
    if (epoch < v->in_epoch) {
        /* From an earlier numbering of the sender's: no order to keep. */
        deliver(c, v, seq, o->id, o->sent_at, (const char *)text, tlen, true, via_mailbox, now);
        return;
    }
    if (epoch > v->in_epoch) {
        /* The sender started a new numbering: what waits is handed up. */
        held *h;
        while ((h = held_first(c, ci))) held_release(c, ci, h, now);
        v = &c->convs[ci];
        v->in_epoch = epoch;
        v->in_next = 1;
        v->read_through = 0;
        v->n_missing = 0;
        v->gap_deadline = PL_TIME_NEVER;
    }
    queue_receipt(v, now);
    if (seq < v->in_next) {
        for (uint8_t i = 0; i < v->n_missing; i++) {
            if (v->missing[i] != seq) continue;
            v->missing[i] = v->missing[--v->n_missing];
            deliver(c, v, seq, o->id, o->sent_at, (const char *)text, tlen, true, via_mailbox, now);
            return;
        }
        c->stats.duplicates++;
        return;
    }
    if (seq == v->in_next) {
        v->in_next++;
        deliver(c, v, seq, o->id, o->sent_at, (const char *)text, tlen, false, via_mailbox, now);
        drain_held(c, ci, now);
        return;
    }
    if (held_find(c, ci, seq)) {
        c->stats.duplicates++;
        return;
    }
    held *h = NULL;
    for (size_t i = 0; i < PL_CHAT_MAX_HELD && !h; i++)
        if (!c->held[i].used) h = &c->held[i];
    if (!h) {
        /* No room to wait: stop waiting for this conversation's gap. */
        skip_gap(c, ci, now);
        v = &c->convs[ci];
        if (seq == v->in_next) {
            v->in_next++;
            deliver(c, v, seq, o->id, o->sent_at, (const char *)text, tlen, false, via_mailbox, now);
            drain_held(c, ci, now);
            return;
        }
        for (size_t i = 0; i < PL_CHAT_MAX_HELD && !h; i++)
            if (!c->held[i].used) h = &c->held[i];
        if (!h) {
            deliver(c, v, seq, o->id, o->sent_at, (const char *)text, tlen, true, via_mailbox, now);
            return;
        }
    }
    h->used = true;
    h->via_mailbox = via_mailbox;
    h->conv = ci;
    h->seq = seq;
    memcpy(h->id, o->id, 16);
    h->sent_at = o->sent_at;
    h->len = tlen;
    memcpy(h->text, text, tlen);
    v->n_held++;
    c->stats.held++;
    if (v->gap_deadline == PL_TIME_NEVER) v->gap_deadline = now + PL_CHAT_GAP_WAIT;
}

/* An opened envelope, by either path. */
static bool on_envelope(pl_chat *c, const pl_env_opened *o, const uint8_t *body, size_t len, bool via_mailbox,
                        pl_time now)
{
    if (o->content_type != PL_ENV_CHAT && o->content_type != PL_ENV_RECEIPT) return false;
    uint32_t ci;
    conv *v = conv_of(c, o->sender.name, true, &ci);
    if (!v) return true;
    /* The newest certificate the peer signed with is the one to answer to. */
    if (!v->have_cert || o->sender.not_before >= v->cert.not_before) {
        v->cert = o->sender;
        v->have_cert = true;
    }
    pl_env_err seen = pl_env_seen_check(&c->seen, o->id, o->sent_at, now);
    if (seen != PL_ENV_OK) {
        c->stats.duplicates++;
        /* A message the sender still retries: our receipt was lost. */
        if (o->content_type == PL_ENV_CHAT && seen == PL_ENV_ERR_REPLAY) queue_receipt(v, now);
        return true;
    }
    if (via_mailbox) c->stats.received_mailbox++;
    else c->stats.received_direct++;
    if (o->content_type == PL_ENV_RECEIPT) {
        pl_env_seen_add(&c->seen, o->id, o->sent_at, now);
        on_receipt(c, ci, body, len, now);
    } else {
        on_chat(c, ci, o, body, len, via_mailbox, now);
    }
    return true;
}

bool pl_chat_direct(pl_chat *c, const uint8_t from_pk[32], const uint8_t *msg, size_t len, pl_time now)
{
    if (len == 0 || msg[0] != PL_MBOX_CHAT) return false;
    pl_mbox_msg m;
    if (pl_mbox_decode(&m, msg, len) != PL_MBOX_MSG_OK) return true;
    pl_env_opened *o = &c->scratch;
    pl_env_recipient me = {&c->id, c->own.name};
    /* Straight from the peer: its session key must be the signer's. */
    if (pl_env_open(o, m.env, m.env_len, &me, c->ca_pk, c->crl, now, NULL) != PL_ENV_OK || o->n_chunks ||
        memcmp(o->sender.sign_pk, from_pk, 32) != 0)
        c->stats.refused++;
    else
        on_envelope(c, o, o->body, o->body_len, false, now);
    pl_env_opened_wipe(o);
    return true;
}

bool pl_chat_mailbox(pl_chat *c, const pl_env_opened *o, const uint8_t *body, size_t len, pl_time now)
{
    if (strcmp(o->recipient, c->own.name) != 0) return false;
    return on_envelope(c, o, body, len, true, now);
}

void pl_chat_peer_online(pl_chat *c, const char *peer, pl_time now)
{
    uint32_t ci;
    if (!conv_of(c, peer, false, &ci)) return;
    for (size_t i = 0; i < PL_CHAT_MAX_PENDING; i++) {
        outmsg *o = &c->out[i];
        if (o->conv != ci || o->state != OUT_STORED) continue;
        if (send_env_direct(c, &c->convs[ci], o->env, o->env_len, now)) c->stats.probes++;
        o->probe_every = PL_CHAT_PROBE;
        o->next_at = now + o->probe_every;
    }
}

void pl_chat_mark_read(pl_chat *c, const char *peer, uint64_t through, pl_time now)
{
    conv *v = conv_of(c, peer, false, NULL);
    if (!v || through <= v->read_through) return;
    v->read_through = through < v->in_next ? through : v->in_next - 1;
    queue_receipt(v, now);
}

/* ---- time ----------------------------------------------------------------------------------------- */

void pl_chat_tick(pl_chat *c, pl_time now)
{
    for (size_t i = 0; i < PL_CHAT_MAX_PENDING; i++) {
        outmsg *o = &c->out[i];
        if (o->state == OUT_FREE || now < o->next_at) continue;
        if (o->state == OUT_DIRECT) {
            /* Unanswered: once more directly, then into the mailbox. */
            const conv *v = &c->convs[o->conv];
            if (o->direct_tries < 2 && send_env_direct(c, v, o->env, o->env_len, now)) {
                c->stats.resent_direct++;
                o->direct_tries++;
                o->next_at = now + (PL_CHAT_DIRECT_TIMEOUT - PL_CHAT_RESEND);
            } else {
                go_to_mailbox(c, o, now);
            }
        } else if (o->state == OUT_STORED) {
            /* Offer it again if we can reach the peer: should it have it,
             * its receipt comes again. */
            if (send_env_direct(c, &c->convs[o->conv], o->env, o->env_len, now)) {
                c->stats.probes++;
                if (o->probe_every < PL_CHAT_PROBE_MAX) o->probe_every *= 2;
            }
            o->next_at = now + o->probe_every;
        } else if (o->state == OUT_DEPOSITING) {
            if (o->deposit_tries < PL_CHAT_DEPOSIT_TRIES) {
                go_to_mailbox(c, o, now);
            } else {
                c->stats.failed++;
                out_done(c, o, PL_CHAT_EV_FAILED, PL_MBOX_UNREACHABLE, now);
            }
        }
    }
    for (uint32_t i = 0; i < c->n_convs; i++) {
        if (c->convs[i].gap_deadline <= now) skip_gap(c, i, now);
        if (c->convs[i].receipt_due && c->convs[i].receipt_at <= now) send_receipt(c, i, now);
    }
}

pl_time pl_chat_next_timeout(const pl_chat *c)
{
    pl_time t = PL_TIME_NEVER;
    for (size_t i = 0; i < PL_CHAT_MAX_PENDING; i++)
        if (c->out[i].state != OUT_FREE && c->out[i].next_at < t) t = c->out[i].next_at;
    for (uint32_t i = 0; i < c->n_convs; i++) {
        if (c->convs[i].gap_deadline < t) t = c->convs[i].gap_deadline;
        if (c->convs[i].receipt_due && c->convs[i].receipt_at < t) t = c->convs[i].receipt_at;
    }
    return t;
}

/* ---- set-up, persistence ---------------------------------------------------------------------------- */

pl_chat_err pl_chat_new(pl_chat **out, const pl_chat_config *cfg, const pl_chat_io *io)
{
    *out = NULL;
    if (!cfg || !cfg->identity || !cfg->cert || cfg->cert_len > PL_CERT_MAX_SIZE || !cfg->rng || !io)
        return PL_CHAT_ERR_CONFIG;
    const pl_mem *mem = cfg->mem ? cfg->mem : pl_mem_system();
    pl_chat *c = mem->calloc(mem->ctx, 1, sizeof *c);
    if (!c) return PL_CHAT_ERR_NOMEM;
    c->mem = mem;
    if (pl_cert_decode(&c->own, cfg->cert, cfg->cert_len) != PL_CERT_OK ||
        memcmp(c->own.sign_pk, cfg->identity->sign_pk, 32) != 0) {
        mem->free(mem->ctx, c);
        return PL_CHAT_ERR_CONFIG;
    }
    c->id = *cfg->identity;
    memcpy(c->cert, cfg->cert, cfg->cert_len);
    c->cert_len = cfg->cert_len;
    memcpy(c->ca_pk, cfg->ca_pk, 32);
    c->rng = cfg->rng;
    c->io = *io;
    pl_keymap_init(&c->conv_by_name, mem, cfg->rng);
    c->out = mem->calloc(mem->ctx, PL_CHAT_MAX_PENDING, sizeof *c->out);
    c->held = mem->calloc(mem->ctx, PL_CHAT_MAX_HELD, sizeof *c->held);
    if (!c->out || !c->held ||
        pl_env_seen_init(&c->seen, cfg->seen_capacity ? cfg->seen_capacity : 8192, mem, cfg->rng) != PL_ENV_OK) {
        pl_chat_free(c);
        return PL_CHAT_ERR_NOMEM;
    }
    *out = c;
    return PL_CHAT_OK;
}

void pl_chat_free(pl_chat *c)
{
    if (!c) return;
    const pl_mem *mem = c->mem;
    if (c->out) {
        sodium_memzero(c->out, PL_CHAT_MAX_PENDING * sizeof *c->out);
        mem->free(mem->ctx, c->out);
    }
    if (c->held) {
        sodium_memzero(c->held, PL_CHAT_MAX_HELD * sizeof *c->held);
        mem->free(mem->ctx, c->held);
    }
    if (c->convs) mem->free(mem->ctx, c->convs);
    pl_keymap_free(&c->conv_by_name);
    pl_env_seen_free(&c->seen);
    sodium_memzero(c, sizeof *c);
    mem->free(mem->ctx, c);
}

void pl_chat_set_crl(pl_chat *c, const pl_crl *crl) { c->crl = crl; }

bool pl_chat_get_state(const pl_chat *c, const char *peer, pl_chat_state *out)
{
    memset(out, 0, sizeof *out);
    const conv *v = conv_of((pl_chat *)c, peer, false, NULL);
    if (!v) return false;
    snprintf(out->peer, sizeof out->peer, "%s", v->peer);
    out->out_epoch = v->out_epoch;
    out->out_next = v->out_next;
    out->in_epoch = v->in_epoch;
    out->in_next = v->in_next;
    out->read_through = v->read_through;
    return true;
}

pl_chat_err pl_chat_set_state(pl_chat *c, const pl_chat_state *st)
{
    if (!st->out_epoch || !st->out_next || !st->in_next) return PL_CHAT_ERR_PEER;
    conv *v = conv_of(c, st->peer, true, NULL);
    if (!v) return PL_CHAT_ERR_FULL;
    v->out_epoch = st->out_epoch;
    v->out_next = st->out_next;
    v->in_epoch = st->in_epoch;
    v->in_next = st->in_next;
    v->read_through = st->read_through;
    return PL_CHAT_OK;
}

void pl_chat_seen_add(pl_chat *c, const uint8_t id[PL_ENV_ID_SIZE], pl_time sent_at, pl_time now)
{
    pl_env_seen_add(&c->seen, id, sent_at, now);
}

pl_chat_err pl_chat_set_cert(pl_chat *c, const pl_cert *peer, pl_time now)
{
    if (!peer || pl_cert_verify(peer, c->ca_pk, now / PL_SEC, c->crl) != PL_CERT_OK ||
        memcmp(peer->sign_pk, c->id.sign_pk, 32) == 0)
        return PL_CHAT_ERR_PEER;
    conv *v = conv_of(c, peer->name, true, NULL);
    if (!v) return PL_CHAT_ERR_FULL;
    if (!v->have_cert || peer->not_before >= v->cert.not_before) {
        v->cert = *peer;
        v->have_cert = true;
    }
    return PL_CHAT_OK;
}

bool pl_chat_peer_cert(const pl_chat *c, const char *peer, pl_cert *out)
{
    const conv *v = conv_of((pl_chat *)c, peer, false, NULL);
    if (!v || !v->have_cert) return false;
    *out = v->cert;
    return true;
}

size_t pl_chat_pending(const pl_chat *c)
{
    size_t n = 0;
    for (size_t i = 0; i < PL_CHAT_MAX_PENDING; i++) n += c->out[i].state != OUT_FREE;
    return n;
}

bool pl_chat_envelope(const pl_chat *c, const uint8_t id[PL_ENV_ID_SIZE], uint8_t *out, size_t cap, size_t *len)
{
    for (size_t i = 0; i < PL_CHAT_MAX_PENDING; i++) {
        const outmsg *o = &c->out[i];
        if (o->state == OUT_FREE || memcmp(o->st.id, id, PL_ENV_ID_SIZE) != 0) continue;
        if (o->env_len > cap) return false;
        memcpy(out, o->env, o->env_len);
        *len = o->env_len;
        return true;
    }
    return false;
}

pl_chat_err pl_chat_resume(pl_chat *c, const pl_cert *peer, const uint8_t *env, size_t len, uint64_t seq, bool stored,
                           pl_time now)
{
    pl_env_header h;
    char norm[PL_NAME_MAX + 1];
    if (!peer || pl_cert_verify(peer, c->ca_pk, now / PL_SEC, c->crl) != PL_CERT_OK ||
        memcmp(peer->sign_pk, c->id.sign_pk, 32) == 0 || pl_name_normalize(peer->name, norm) != PL_NAME_OK)
        return PL_CHAT_ERR_PEER;
    /* Only a head of ours to this peer: what pl_chat_envelope gave. */
    if (!env || len > PL_ENV_MAX_SIZE || pl_env_peek(&h, env, len) != PL_ENV_OK || h.part != 0 ||
        strcmp(h.recipient, norm) != 0 || seq == 0)
        return PL_CHAT_ERR_PEER;
    uint32_t ci;
    conv *v = conv_of(c, norm, true, &ci);
    if (!v) return PL_CHAT_ERR_FULL;
    if (seq >= v->out_next) return PL_CHAT_ERR_PEER;
    outmsg *o = NULL;
    for (size_t i = 0; i < PL_CHAT_MAX_PENDING; i++) {
        if (c->out[i].state != OUT_FREE && memcmp(c->out[i].st.id, h.id, PL_ENV_ID_SIZE) == 0) return PL_CHAT_OK;
        if (!o && c->out[i].state == OUT_FREE) o = &c->out[i];
    }
    if (!o) return PL_CHAT_ERR_FULL;
    v->cert = *peer;
    v->have_cert = true;
    memset(o, 0, sizeof *o);
    memcpy(o->st.id, h.id, PL_ENV_ID_SIZE);
    memcpy(o->st.recipient, h.recipient, sizeof o->st.recipient);
    o->st.sent_at = h.sent_at;
    o->st.content_type = PL_ENV_CHAT;
    memcpy(o->env, env, len);
    o->env_len = (uint16_t)len;
    o->conv = ci;
    o->seq = seq;
    if (stored) {
        o->state = OUT_STORED;
        o->probe_every = PL_CHAT_PROBE;
        o->next_at = now + o->probe_every;
    } else if (send_env_direct(c, v, o->env, o->env_len, now)) {
        c->stats.sent_direct++;
        o->state = OUT_DIRECT;
        o->direct_tries = 1;
        o->next_at = now + PL_CHAT_RESEND;
    } else {
        go_to_mailbox(c, o, now);
    }
    return PL_CHAT_OK;
}

pl_chat_stats pl_chat_get_stats(const pl_chat *c) { return c->stats; }

const char *pl_chat_strerror(pl_chat_err err)
{
    switch (err) {
    case PL_CHAT_OK: return "ok";
    case PL_CHAT_ERR_CONFIG: return "bad chat configuration";
    case PL_CHAT_ERR_NOMEM: return "out of memory";
    case PL_CHAT_ERR_TEXT: return "text empty, too long or not UTF-8";
    case PL_CHAT_ERR_PEER: return "bad peer certificate";
    case PL_CHAT_ERR_FULL: return "too many messages or conversations";
    }
    return "unknown chat error";
}
