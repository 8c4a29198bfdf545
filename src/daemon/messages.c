/*
 * messages.c - chat in the daemon (docs/messages.md, section 6): the chat
 * engine (src/core/chat.c) driven by the node's link and mail client, its
 * history in messages.db (src/io/msgstore.c), the `chat` control command,
 * clients that follow new messages, and a supernode's `mailbox` command.
 *
 * Sending: the peer is looked up (its record gives the certificate to seal
 * for and the address to open a session to); a message goes straight over
 * the session when there is one or the peer is online, else into the
 * peer's mailbox, and the engine moves it to the mailbox when the direct
 * copy is not acknowledged. Every message and its conversation's state are
 * committed before anything is acknowledged: a mailbox copy is deleted only
 * once the message is in the history, and the history's key (the message
 * id) is the last guard against a duplicate.
 *
 * Restarting: the engine's numbering, the peers' certificates, the ids of
 * recent messages and the envelopes of messages not yet delivered come back
 * from the history, so numbering goes on, a message the mailbox gives again
 * is recognised, and an undelivered one goes out again unchanged.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "messages.h"

/* ---- small things ----------------------------------------------------------------------------- */

void pd_id_hex(const uint8_t id[PL_ENV_ID_SIZE], char out[2 * PL_ENV_ID_SIZE + 1])
{
    pl_hex_encode(id, PL_ENV_ID_SIZE, out);
}

pl_mboxc *pd_mailclient(parleyd *d)
{
    pl_node *n = pl_stack_node(d->stack);
    return n ? pl_node_mailbox(n) : NULL;
}

static pl_dirc *dirc(parleyd *d) { return pl_node_directory(pl_stack_node(d->stack)); }

static const char *req_string(const cJSON *req, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double seconds(pl_time t) { return (double)t / PL_SEC; }

static const char *state_name(uint8_t s)
{
    switch (s) {
    case PL_MSG_SENDING: return "sending";
    case PL_MSG_STORED: return "stored";
    case PL_MSG_DELIVERED: return "delivered";
    case PL_MSG_READ: return "read";
    case PL_MSG_FAILED: return "failed";
    case PL_MSG_UNREAD: return "new";
    case PL_MSG_SEEN: return "seen";
    }
    return "?";
}

static cJSON *msg_json(const pl_msg *m)
{
    char hex[2 * PL_ENV_ID_SIZE + 1];
    cJSON *o = cJSON_CreateObject();
    pd_id_hex(m->id, hex);
    cJSON_AddStringToObject(o, "id", hex);
    cJSON_AddStringToObject(o, "peer", m->peer);
    cJSON_AddStringToObject(o, "dir", m->outgoing ? "out" : "in");
    cJSON_AddNumberToObject(o, "seq", (double)m->seq);
    cJSON_AddStringToObject(o, "text", m->text);
    cJSON_AddNumberToObject(o, "sent_at", seconds(m->sent_at));
    cJSON_AddNumberToObject(o, "at", seconds(m->at));
    cJSON_AddStringToObject(o, "state", state_name(m->state));
    cJSON_AddStringToObject(o, "via", m->via_mailbox ? "mailbox" : "direct");
    if (m->late) cJSON_AddBoolToObject(o, "late", true);
    return o;
}

/* ---- peers ------------------------------------------------------------------------------------ */

pd_peer *pd_peer_of(parleyd *d, const char *name, bool create)
{
    pd_messages *m = d->msg;
    char norm[PL_NAME_MAX + 1];
    if (pl_name_normalize(name, norm) != PL_NAME_OK) return NULL;
    for (size_t i = 0; i < m->n_peers; i++)
        if (strcmp(m->peers[i].name, norm) == 0) return &m->peers[i];
    if (!create) return NULL;
    if (m->n_peers == m->cap_peers) {
        size_t cap = m->cap_peers ? 2 * m->cap_peers : 16;
        pd_peer *grown = realloc(m->peers, cap * sizeof *grown);
        if (!grown) return NULL;
        m->peers = grown;
        m->cap_peers = cap;
    }
    pd_peer *p = &m->peers[m->n_peers++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", norm);
    return p;
}

static void peer_set_cert(parleyd *d, pd_peer *p, const pl_cert *cert)
{
    uint8_t bytes[PL_CERT_MAX_SIZE];
    size_t len;
    if (p->have_cert && cert->not_before < p->cert.not_before) return;
    if (pl_cert_encode(cert, bytes, sizeof bytes, &len) != PL_CERT_OK) return;
    bool changed = !p->have_cert || p->cert_len != len || memcmp(p->cert_bytes, bytes, len) != 0;
    if (changed) p->cert_saved = false;
    p->cert = *cert;
    p->have_cert = true;
    memcpy(p->cert_bytes, bytes, len);
    p->cert_len = (uint16_t)len;
    if (changed && d->msg->chat) pl_chat_set_cert(d->msg->chat, cert, pl_loop_now(d->loop));
}

/* Where a session with the peer can be opened: a UDP candidate of its
 * record, the one its supernode saw first (it crossed the peer's NAT),
 * else its own address, else a mapped port. A private record has none. */
static bool pick_addr(const pl_record *r, pl_addr *out)
{
    static const uint8_t order[] = {PL_CAND_SERVER_REFLEXIVE, PL_CAND_HOST, PL_CAND_PORT_MAPPED};
    for (size_t k = 0; k < sizeof order; k++)
        for (uint8_t i = 0; i < r->n_candidates; i++)
            if (r->candidates[i].type == order[k] && r->candidates[i].transport == PL_TRANSPORT_UDP) {
                *out = r->candidates[i].addr;
                out->transport = PL_ADDR_UDP;
                return true;
            }
    return false;
}

static void peer_heard(parleyd *d, pd_peer *p, const pl_dirc_event *ev)
{
    p->heard_at = ev->now;
    if (ev->status == PL_DIR_NOT_FOUND) {
        /* No record at all: not online. */
        p->offline = true;
        p->have_addr = false;
    }
    if (ev->status != PL_DIR_OK || !ev->record) return;
    peer_set_cert(d, p, &ev->record->cert);
    p->offline = ev->offline;
    p->have_addr = !ev->offline && pick_addr(ev->record, &p->addr);
}

/* The peer's certificate as far as we know it: this run, or the history. */
static bool peer_cert(parleyd *d, const char *name, pl_cert *out)
{
    pd_peer *p = pd_peer_of(d, name, true);
    if (p && p->have_cert) {
        *out = p->cert;
        return true;
    }
    pl_chat_state st;
    uint8_t bytes[PL_CERT_MAX_SIZE];
    size_t len;
    if (pl_msgstore_get_conv(d->msg->store, name, &st, bytes, &len) != PL_MSGSTORE_OK || !len ||
        pl_cert_decode(out, bytes, len) != PL_CERT_OK)
        return false;
    if (p) peer_set_cert(d, p, out);
    return true;
}

/* ---- requests waiting on the network ------------------------------------------------------------ */

pd_req *pd_req_new(parleyd *d, pd_req_kind kind, int fd, const char *peer)
{
    for (size_t i = 0; i < PD_MAX_REQS; i++) {
        pd_req *r = &d->msg->reqs[i];
        if (r->kind != PD_REQ_FREE) continue;
        memset(r, 0, sizeof *r);
        r->kind = kind;
        r->fd = fd;
        r->deadline = PL_TIME_NEVER;
        if (peer) snprintf(r->peer, sizeof r->peer, "%s", peer);
        return r;
    }
    return NULL;
}

void pd_req_free(pd_req *r)
{
    free(r->text);
    memset(r, 0, sizeof *r);
}

bool pd_req_lookup(parleyd *d, pd_req *r)
{
    return pl_dirc_lookup(dirc(d), r->peer, pl_loop_now(d->loop), &r->lookup) == PL_DIRC_OK;
}

/* A background look-up for a peer's address (for receipts and replies to
 * go directly), at most every PD_LEARN_EVERY. */
static void learn(parleyd *d, const char *name)
{
    pd_peer *p = pd_peer_of(d, name, true);
    pl_time now = pl_loop_now(d->loop);
    if (!p || (p->learn_at && now - p->learn_at < PD_LEARN_EVERY)) return;
    if (p->have_addr && now - p->heard_at < PD_ADDR_FRESH) return;
    p->learn_at = now;
    pd_req *r = pd_req_new(d, PD_REQ_LEARN, -1, name);
    if (r && !pd_req_lookup(d, r)) pd_req_free(r);
}

/* ---- following ---------------------------------------------------------------------------------- */

static void mark_read(parleyd *d, const char *peer);

void pd_follow_push(parleyd *d, const char *peer, cJSON *event)
{
    pd_messages *m = d->msg;
    bool read = false;
    for (size_t i = 0; i < MAX_CONTROL_CLIENTS; i++) {
        pd_follower *f = &m->followers[i];
        if (f->fd < 0 || (f->peer[0] && strcmp(f->peer, peer) != 0)) continue;
        pd_control_reply(d, f->fd, cJSON_Duplicate(event, true));
        read |= f->mark_read;
    }
    const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(event, "event"));
    bool shown = read && kind && strcmp(kind, "message") == 0;
    cJSON_Delete(event);
    /* Someone was shown the message: it is read. */
    if (shown) mark_read(d, peer);
}

void pd_messages_client_gone(parleyd *d, int fd)
{
    pd_messages *m = d->msg;
    if (!m) return;
    for (size_t i = 0; i < MAX_CONTROL_CLIENTS; i++)
        if (m->followers[i].fd == fd) m->followers[i].fd = -1;
    for (size_t i = 0; i < PD_MAX_REQS; i++)
        if (m->reqs[i].kind != PD_REQ_FREE && m->reqs[i].fd == fd) m->reqs[i].fd = -1;
    for (size_t i = 0; i < PD_MAX_VM_JOBS; i++)
        if (m->jobs[i].state != VM_FREE && m->jobs[i].fd == fd) m->jobs[i].fd = -1;
}

/* ---- the chat engine's I/O ------------------------------------------------------------------------ */

static bool chat_send_direct(void *ctx, const pl_cert *peer, const uint8_t *msg, size_t len, pl_time now)
{
    parleyd *d = ctx;
    pl_link *link = pl_stack_link(d->stack);
    pd_peer *p = pd_peer_of(d, peer->name, false);
    bool ok = false;
    /* The directory says the peer left: a session that looks up is one it
     * has not timed out yet. */
    bool gone = p && p->offline && now - p->heard_at < PD_ADDR_FRESH;
    if (gone) {
        ok = false;
    } else if (pl_link_is_up(link, peer->sign_pk)) {
        ok = pl_link_send(link, peer->sign_pk, NULL, msg, len, now) == PL_LINK_OK;
    } else {
        if (p && p->have_addr && now - p->heard_at < PD_ADDR_FRESH)
            ok = pl_link_send_cert(link, peer, &p->addr, msg, len, now) == PL_LINK_OK;
    }
    d->msg->direct_sent = ok;
    return ok;
}

static bool chat_deposit(void *ctx, const pl_env_sealed *st, const uint8_t *head, size_t len, pl_time now)
{
    parleyd *d = ctx;
    pl_mboxc *mc = pd_mailclient(d);
    return mc && pl_mboxc_deposit(mc, st, head, len, now) == PL_MBOXC_OK;
}

static void save_state(parleyd *d, const char *peer)
{
    pl_chat_state st;
    pl_cert cert;
    uint8_t bytes[PL_CERT_MAX_SIZE];
    size_t len = 0;
    if (!pl_chat_get_state(d->msg->chat, peer, &st)) return;
    if (pl_chat_peer_cert(d->msg->chat, peer, &cert) && pl_cert_encode(&cert, bytes, sizeof bytes, &len) != PL_CERT_OK)
        len = 0;
    if (pl_msgstore_put_conv(d->msg->store, &st, bytes, len) != PL_MSGSTORE_OK) {
        pd_log(d, "messages.db: %s", pl_msgstore_last_error(d->msg->store));
        return;
    }
    pd_peer *p = pd_peer_of(d, peer, false);
    if (p && len && p->have_cert && len == p->cert_len && memcmp(bytes, p->cert_bytes, len) == 0) p->cert_saved = true;
}

/* Saves the state unless the history has it with the certificate already. */
static void save_cert_once(parleyd *d, const char *peer)
{
    pd_peer *p = pd_peer_of(d, peer, false);
    if (!p || !p->cert_saved) save_state(d, peer);
}

static void ack_if_waiting(parleyd *d, const uint8_t id[PL_ENV_ID_SIZE])
{
    pd_messages *m = d->msg;
    for (size_t i = 0; i < m->n_ack_later; i++) {
        if (memcmp(m->ack_later[i], id, PL_ENV_ID_SIZE) != 0) continue;
        pl_mboxc *mc = pd_mailclient(d);
        if (mc) pl_mboxc_ack(mc, id, pl_loop_now(d->loop));
        memmove(m->ack_later[i], m->ack_later[i + 1], (m->n_ack_later - i - 1) * PL_ENV_ID_SIZE);
        m->n_ack_later--;
        return;
    }
}

static void on_received(parleyd *d, const pl_chat_event *ev)
{
    pd_messages *m = d->msg;
    pl_chat_state st;
    pl_chat_get_state(m->chat, ev->peer, &st);
    pl_msg msg;
    memset(&msg, 0, sizeof msg);
    memcpy(msg.id, ev->id, PL_ENV_ID_SIZE);
    snprintf(msg.peer, sizeof msg.peer, "%s", ev->peer);
    msg.epoch = st.in_epoch;
    msg.seq = ev->seq;
    msg.sent_at = ev->sent_at;
    msg.at = ev->now;
    msg.state = PL_MSG_UNREAD;
    msg.via_mailbox = ev->via_mailbox;
    msg.late = ev->late;
    msg.text_len = ev->len;
    memcpy(msg.text, ev->text, ev->len);
    pl_msgstore_err e = pl_msgstore_add(m->store, &msg, NULL, 0, &st);
    save_cert_once(d, ev->peer);
    if (e == PL_MSGSTORE_OK) {
        pd_log(d, "chat: message %llu from %s (%zu bytes, %s%s)", (unsigned long long)ev->seq, ev->peer, ev->len,
               ev->via_mailbox ? "from the mailbox" : "direct", ev->late ? ", late" : "");
        cJSON *o = msg_json(&msg);
        cJSON_AddStringToObject(o, "event", "message");
        pd_follow_push(d, ev->peer, o);
    } else if (e != PL_MSGSTORE_ERR_EXISTS) {
        /* Not kept: the mailbox copy stays for the next run. */
        pd_log(d, "messages.db: cannot keep a message: %s", pl_msgstore_last_error(m->store));
        m->not_kept = true;
        return;
    }
    ack_if_waiting(d, ev->id);
    if (ev->via_mailbox) learn(d, ev->peer);
}

static void push_receipt(parleyd *d, const char *kind, const pl_chat_event *ev)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", kind);
    cJSON_AddStringToObject(o, "peer", ev->peer);
    if (ev->id) {
        char hex[2 * PL_ENV_ID_SIZE + 1];
        pd_id_hex(ev->id, hex);
        cJSON_AddStringToObject(o, "id", hex);
    }
    cJSON_AddNumberToObject(o, "seq", (double)ev->seq);
    if (ev->type == PL_CHAT_EV_GAP) cJSON_AddNumberToObject(o, "to", (double)ev->seq_to);
    pd_follow_push(d, ev->peer, o);
}

static void chat_event(void *ctx, const pl_chat_event *ev)
{
    parleyd *d = ctx;
    pd_messages *m = d->msg;
    switch (ev->type) {
    case PL_CHAT_EV_RECEIVED: on_received(d, ev); break;
    case PL_CHAT_EV_STORED:
        pl_msgstore_set_state(m->store, ev->id, PL_MSG_STORED);
        push_receipt(d, "stored", ev);
        break;
    case PL_CHAT_EV_DELIVERED:
        pl_msgstore_set_state(m->store, ev->id, PL_MSG_DELIVERED);
        push_receipt(d, "delivered", ev);
        break;
    case PL_CHAT_EV_READ: {
        pl_chat_state st;
        pl_chat_get_state(m->chat, ev->peer, &st);
        pl_msgstore_peer_read(m->store, ev->peer, st.out_epoch, ev->seq, NULL);
        push_receipt(d, "read", ev);
        break;
    }
    case PL_CHAT_EV_FAILED:
        pl_msgstore_set_state(m->store, ev->id, PL_MSG_FAILED);
        pd_log(d, "chat: message %llu to %s failed: neither %s nor the mailbox took it (status %u)",
               (unsigned long long)ev->seq, ev->peer, ev->peer, ev->status);
        push_receipt(d, "failed", ev);
        break;
    case PL_CHAT_EV_GAP:
        save_state(d, ev->peer);
        pd_log(d, "chat: messages %llu..%llu from %s did not come in time", (unsigned long long)ev->seq,
               (unsigned long long)ev->seq_to, ev->peer);
        push_receipt(d, "gap", ev);
        break;
    }
}

/* ---- time ------------------------------------------------------------------------------------------- */

static void on_timer(pl_loop *loop, void *ctx)
{
    parleyd *d = ctx;
    pd_messages *m = d->msg;
    pl_time now = pl_loop_now(loop);
    pl_chat_tick(m->chat, now);
    pd_vm_tick(d, now);
    for (size_t i = 0; i < PD_MAX_REQS; i++)
        if (m->reqs[i].kind != PD_REQ_FREE && m->reqs[i].deadline <= now) pd_vm_req_expired(d, &m->reqs[i]);
    pd_messages_arm(d);
    pd_rearm(d);
}

void pd_messages_arm(parleyd *d)
{
    pd_messages *m = d->msg;
    if (!m) return;
    pl_time t = pl_chat_next_timeout(m->chat), x;
    if ((x = pd_vm_next(d)) < t) t = x;
    for (size_t i = 0; i < PD_MAX_REQS; i++)
        if (m->reqs[i].kind != PD_REQ_FREE && m->reqs[i].deadline < t) t = m->reqs[i].deadline;
    if (t == PL_TIME_NEVER) pl_timer_cancel(d->loop, &m->timer);
    else pl_timer_set(d->loop, &m->timer, t);
}

/* ---- from the stack ------------------------------------------------------------------------------------ */

void pd_messages_user_message(void *ctx, const uint8_t pk[32], const pl_cert *cert, const uint8_t *msg, size_t len,
                              pl_time now)
{
    parleyd *d = ctx;
    if (!d->msg) return;
    if (cert) {
        pd_peer *p = pd_peer_of(d, cert->name, true);
        if (p) {
            peer_set_cert(d, p, cert);
            p->offline = false; /* it speaks to us */
        }
    }
    pl_chat_direct(d->msg->chat, pk, msg, len, now);
    pd_messages_arm(d);
}

void pd_messages_on_link(parleyd *d, const pl_link_event *ev)
{
    if (!d->msg || !ev->cert) return;
    pd_peer *p = pd_peer_of(d, ev->cert->name, false);
    if (ev->type == PL_LINK_EV_UP) {
        if (p) p->offline = false;
        pl_chat_peer_online(d->msg->chat, ev->cert->name, ev->now);
        pd_messages_arm(d);
    } else if (p && ev->why == PL_LINK_DOWN_UNREACHABLE) {
        /* Its record's address did not answer: the mailbox until the next
         * look-up says otherwise. */
        p->have_addr = false;
    }
}

void pd_messages_on_mail(parleyd *d, const pl_mboxc_event *ev)
{
    pd_messages *m = d->msg;
    if (!m) return;
    pl_mboxc *mc = pd_mailclient(d);
    switch (ev->type) {
    case PL_MBOXC_EV_NOTICE:
        if (ev->messages)
            pd_log(d, "mailbox: %u message%s waiting (%u bytes)", ev->messages, ev->messages == 1 ? "" : "s",
                   ev->bytes);
        break;
    case PL_MBOXC_EV_MESSAGE: {
        uint8_t type = ev->opened->content_type;
        if (type == PL_ENV_VOICEMAIL) {
            pd_vm_received(d, ev);
            break;
        }
        if (type == PL_ENV_CHAT || type == PL_ENV_RECEIPT) {
            pd_peer *p = pd_peer_of(d, ev->opened->sender.name, true);
            if (p) peer_set_cert(d, p, &ev->opened->sender);
            uint64_t held = pl_chat_get_stats(m->chat).held;
            m->not_kept = false;
            bool mine = pl_chat_mailbox(m->chat, ev->opened, ev->body, ev->body_len, ev->now);
            if (m->not_kept) break; /* the history could not take it: left in the store */
            /* One the engine holds back for order is acknowledged once it
             * is handed up (and so in the history). */
            if (mine && pl_chat_get_stats(m->chat).held > held && m->n_ack_later < PL_CHAT_MAX_HELD) {
                memcpy(m->ack_later[m->n_ack_later++], ev->opened->id, PL_ENV_ID_SIZE);
                break;
            }
            if (!mine) break; /* addressed to another name: left alone */
        } else {
            pd_log(d, "mailbox: a message of a kind this version does not know (%u) from %s; deleted", type,
                   ev->opened->sender.name);
        }
        if (mc) pl_mboxc_ack(mc, ev->opened->id, ev->now);
        break;
    }
    case PL_MBOXC_EV_DEPOSITED:
        if (!pd_vm_mail_event(d, ev)) pl_chat_deposited(m->chat, ev->id, ev->status, ev->now);
        break;
    case PL_MBOXC_EV_DELETED: pd_vm_mail_event(d, ev); break;
    case PL_MBOXC_EV_DISCARDED:
        pd_log(d, "mailbox: a message no copy of which opened was deleted (%s)", pl_env_strerror(ev->why));
        break;
    }
    pd_messages_arm(d);
}

/* ---- sending -------------------------------------------------------------------------------------------- */

static cJSON *send_now(parleyd *d, const pl_cert *cert, const char *text, size_t len)
{
    pd_messages *m = d->msg;
    pl_time now = pl_loop_now(d->loop);
    uint8_t id[PL_ENV_ID_SIZE];
    uint64_t seq;
    m->direct_sent = false;
    pl_chat_err e = pl_chat_send(m->chat, cert, text, len, now, id, &seq);
    if (e == PL_CHAT_ERR_TEXT)
        return pd_error_reply("bad_text", "the text must be UTF-8 without NUL characters");
    if (e == PL_CHAT_ERR_PEER) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s's certificate does not verify (expired or revoked)", cert->name);
        return pd_error_reply("bad_peer", msg);
    }
    if (e) return pd_error_reply("busy", pl_chat_strerror(e));
    bool direct = m->direct_sent;
    pl_chat_state st;
    pl_chat_get_state(m->chat, cert->name, &st);
    uint8_t env[PL_ENV_MAX_SIZE];
    size_t env_len = 0;
    pl_chat_envelope(m->chat, id, env, sizeof env, &env_len);
    pl_msg msg;
    memset(&msg, 0, sizeof msg);
    memcpy(msg.id, id, PL_ENV_ID_SIZE);
    snprintf(msg.peer, sizeof msg.peer, "%s", st.peer);
    msg.outgoing = true;
    msg.epoch = st.out_epoch;
    msg.seq = seq;
    msg.sent_at = msg.at = now;
    msg.state = PL_MSG_SENDING;
    msg.text_len = len;
    memcpy(msg.text, text, len);
    if (pl_msgstore_add(m->store, &msg, env, env_len, &st) != PL_MSGSTORE_OK)
        pd_log(d, "messages.db: cannot keep a message sent: %s", pl_msgstore_last_error(m->store));
    save_cert_once(d, st.peer);
    cJSON *o = msg_json(&msg);
    cJSON_AddStringToObject(o, "event", "sent");
    pd_follow_push(d, msg.peer, o);
    cJSON *r = pd_ok_reply();
    char hex[2 * PL_ENV_ID_SIZE + 1];
    pd_id_hex(id, hex);
    cJSON_AddStringToObject(r, "id", hex);
    cJSON_AddStringToObject(r, "peer", msg.peer);
    cJSON_AddNumberToObject(r, "seq", (double)seq);
    cJSON_AddStringToObject(r, "path", direct ? "direct" : "mailbox");
    return r;
}

bool pd_messages_on_lookup(parleyd *d, const pl_dirc_event *ev)
{
    pd_messages *m = d->msg;
    if (!m) return false;
    pd_req *r = NULL;
    for (size_t i = 0; i < PD_MAX_REQS && !r; i++)
        if (m->reqs[i].kind != PD_REQ_FREE && m->reqs[i].lookup == ev->id && m->reqs[i].kind != PD_REQ_VM_DELETE)
            r = &m->reqs[i];
    if (!r) return false;
    pd_peer *p = pd_peer_of(d, r->peer, true);
    if (p) peer_heard(d, p, ev);
    if (r->kind == PD_REQ_VM_LEAVE) {
        pd_vm_on_lookup(d, r, ev);
    } else if (r->kind == PD_REQ_CHAT_SEND) {
        pl_cert cert;
        cJSON *reply;
        bool found = ev->status == PL_DIR_OK && ev->record;
        if (found) cert = ev->record->cert;
        /* Not in the directory now (offline for long, its record expired)
         * or no directory at all: someone we talked to before is still
         * reachable through the mailbox. */
        if (found || (ev->status != PL_DIR_REFUSED && peer_cert(d, r->peer, &cert))) {
            reply = send_now(d, &cert, r->text, r->len);
        } else if (ev->status == PL_DIR_NOT_FOUND) {
            char msg[96];
            snprintf(msg, sizeof msg, "no user '%s' in the directory", r->peer);
            reply = pd_error_reply("not_found", msg);
        } else if (ev->status == PL_DIR_REFUSED) {
            reply = pd_error_reply("bad_record", "every record the directory returned failed verification");
        } else {
            reply = pd_error_reply("unreachable", "the directory did not answer (no supernode, or none of the "
                                                  "name's replicas)");
        }
        if (r->fd >= 0) pd_control_reply(d, r->fd, reply);
        else cJSON_Delete(reply);
        pd_req_free(r);
    } else {
        pd_req_free(r);
    }
    pd_messages_arm(d);
    return true;
}

/* ---- reading -------------------------------------------------------------------------------------------- */

static void mark_read(parleyd *d, const char *peer)
{
    pd_messages *m = d->msg;
    pl_chat_state st;
    if (!pl_chat_get_state(m->chat, peer, &st)) return;
    uint64_t through;
    int changed;
    if (pl_msgstore_mark_read(m->store, peer, st.in_epoch, &through, &changed) != PL_MSGSTORE_OK || !changed ||
        !through)
        return;
    pl_chat_mark_read(m->chat, peer, through, pl_loop_now(d->loop));
    save_state(d, peer);
    pd_messages_arm(d);
}

static bool history_one(void *ctx, const pl_msg *m)
{
    cJSON_AddItemToArray(ctx, msg_json(m));
    return true;
}

static bool summary_one(void *ctx, const pl_msgstore_summary *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "peer", s->peer);
    cJSON_AddNumberToObject(o, "messages", s->messages);
    cJSON_AddNumberToObject(o, "unread", s->unread);
    cJSON_AddItemToObject(o, "last", msg_json(&s->last));
    cJSON_AddItemToArray(ctx, o);
    return true;
}

/* A reply goes out in one non-blocking send (control.c): a long history is
 * cut to what a socket buffer surely takes, oldest first for a history,
 * least recent last for the conversation list, and says so. */
#define PD_REPLY_MAX (96 * 1024)

static void fit_reply(cJSON *r, cJSON *arr, bool drop_first)
{
    for (;;) {
        char *text = cJSON_PrintUnformatted(r);
        size_t len = text ? strlen(text) : 0;
        free(text);
        int n = cJSON_GetArraySize(arr);
        if (len <= PD_REPLY_MAX || n == 0) return;
        int drop = n / 4 ? n / 4 : 1;
        for (int i = 0; i < drop; i++) cJSON_DeleteItemFromArray(arr, drop_first ? 0 : cJSON_GetArraySize(arr) - 1);
        if (!cJSON_GetObjectItemCaseSensitive(r, "more")) cJSON_AddBoolToObject(r, "more", true);
    }
}

static cJSON *bad_name(const char *name)
{
    char msg[96];
    snprintf(msg, sizeof msg, "'%.40s' is not a valid user name", name);
    return pd_error_reply("bad_name", msg);
}

cJSON *pd_cmd_chat(parleyd *d, int fd, const cJSON *req)
{
    pd_messages *m = d->msg;
    if (!m) return pd_error_reply("not_a_node", "chat needs a node's daemon");
    const char *op = req_string(req, "op");
    const char *name = req_string(req, "name");
    char norm[PL_NAME_MAX + 1];
    if (name && pl_name_normalize(name, norm) != PL_NAME_OK) return bad_name(name);
    if (!op || strcmp(op, "list") == 0) {
        cJSON *r = pd_ok_reply();
        cJSON *arr = cJSON_AddArrayToObject(r, "conversations");
        if (pl_msgstore_conversations(m->store, summary_one, arr) != PL_MSGSTORE_OK) {
            cJSON_Delete(r);
            return pd_error_reply("db", pl_msgstore_last_error(m->store));
        }
        fit_reply(r, arr, false);
        return r;
    }
    if (strcmp(op, "follow") == 0) {
        for (size_t i = 0; i < MAX_CONTROL_CLIENTS; i++) {
            pd_follower *f = &m->followers[i];
            if (f->fd >= 0 && f->fd != fd) continue;
            f->fd = fd;
            snprintf(f->peer, sizeof f->peer, "%s", name ? norm : "");
            f->mark_read = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(req, "mark_read"));
            cJSON *r = pd_ok_reply();
            cJSON_AddStringToObject(r, "following", name ? norm : "*");
            return r;
        }
        return pd_error_reply("busy", "too many clients follow already");
    }
    if (!name) return pd_error_reply("bad_request", "this chat command needs a \"name\"");
    if (strcmp(norm, d->cert.name) == 0) return pd_error_reply("bad_request", "that is you");
    if (strcmp(op, "history") == 0) {
        const cJSON *lim = cJSON_GetObjectItemCaseSensitive(req, "limit");
        uint32_t limit = cJSON_IsNumber(lim) && lim->valuedouble >= 1 && lim->valuedouble < 1e9 ? (uint32_t)lim->valuedouble : 0;
        cJSON *r = pd_ok_reply();
        cJSON_AddStringToObject(r, "me", d->cert.name);
        cJSON_AddStringToObject(r, "peer", norm);
        cJSON *arr = cJSON_AddArrayToObject(r, "messages");
        if (pl_msgstore_history(m->store, norm, limit, history_one, arr) != PL_MSGSTORE_OK) {
            cJSON_Delete(r);
            return pd_error_reply("db", pl_msgstore_last_error(m->store));
        }
        fit_reply(r, arr, true);
        /* Shown is read: the peer gets a read receipt. */
        if (!cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(req, "mark_read"))) mark_read(d, norm);
        return r;
    }
    if (strcmp(op, "read") == 0) {
        mark_read(d, norm);
        return pd_ok_reply();
    }
    if (strcmp(op, "send") != 0) return pd_error_reply("bad_request", "chat op must be send, list, history, read or follow");
    const char *text = req_string(req, "text");
    size_t len = text ? strlen(text) : 0;
    if (!len) return pd_error_reply("bad_request", "chat send needs a \"text\"");
    if (len > PL_CHAT_MAX_TEXT) {
        char msg[128];
        snprintf(msg, sizeof msg, "the text is %zu bytes; a chat message holds at most %d", len, PL_CHAT_MAX_TEXT);
        return pd_error_reply("too_long", msg);
    }
    /* Looked up every time: the record says whether the peer is online
     * (a session may outlive a peer that left) and carries its newest
     * certificate. One overlay hop. */
    pd_req *r = pd_req_new(d, PD_REQ_CHAT_SEND, fd, norm);
    if (!r || !(r->text = malloc(len + 1))) {
        if (r) pd_req_free(r);
        return pd_error_reply("busy", "too many requests waiting");
    }
    memcpy(r->text, text, len + 1);
    r->len = len;
    if (!pd_req_lookup(d, r)) {
        pd_req_free(r);
        pl_cert cert;
        if (!peer_cert(d, norm, &cert)) return pd_error_reply("busy", "too many look-ups in flight");
        cJSON *reply = send_now(d, &cert, text, len);
        pd_messages_arm(d);
        return reply;
    }
    return NULL; /* answered when the directory is */
}

void pd_messages_status(parleyd *d, cJSON *status)
{
    pd_messages *m = d->msg;
    if (!m) return;
    cJSON *c = cJSON_AddObjectToObject(status, "chat");
    cJSON_AddNumberToObject(c, "unread", pl_msgstore_unread(m->store));
    cJSON_AddNumberToObject(c, "pending", (double)pl_chat_pending(m->chat));
    uint32_t total, unheard;
    pl_msgstore_vm_count(m->store, &total, &unheard);
    cJSON *v = cJSON_AddObjectToObject(status, "voicemail");
    cJSON_AddNumberToObject(v, "kept", total);
    cJSON_AddNumberToObject(v, "new", unheard);
}

/* ---- opening and closing ------------------------------------------------------------------------------- */

typedef struct restore_ctx {
    parleyd *d;
    pl_time now;
    uint32_t convs, ids, resumed, skipped;
} restore_ctx;

static bool restore_conv(void *ctx, const pl_chat_state *st, const uint8_t *cert, size_t cert_len)
{
    restore_ctx *x = ctx;
    if (pl_chat_set_state(x->d->msg->chat, st) != PL_CHAT_OK) return true;
    x->convs++;
    pl_cert c;
    if (cert_len && pl_cert_decode(&c, cert, cert_len) == PL_CERT_OK) {
        pd_peer *p = pd_peer_of(x->d, c.name, true);
        if (p) {
            peer_set_cert(x->d, p, &c);
            p->cert_saved = true;
        }
    }
    return true;
}

static bool restore_id(void *ctx, const uint8_t id[PL_ENV_ID_SIZE], pl_time sent_at)
{
    restore_ctx *x = ctx;
    pl_chat_seen_add(x->d->msg->chat, id, sent_at, x->now);
    x->ids++;
    return true;
}

static bool restore_pending(void *ctx, const pl_msg *m, const uint8_t *env, size_t env_len)
{
    restore_ctx *x = ctx;
    pd_messages *msg = x->d->msg;
    pl_chat_state st;
    pl_cert cert;
    /* Only messages of the numbering the peer's receipts will speak of. */
    if (!pl_chat_get_state(msg->chat, m->peer, &st) || st.out_epoch != m->epoch || !peer_cert(x->d, m->peer, &cert) ||
        pl_chat_resume(msg->chat, &cert, env, env_len, m->seq, m->state == PL_MSG_STORED, x->now) != PL_CHAT_OK) {
        x->skipped++;
        return true;
    }
    x->resumed++;
    return true;
}

int pd_messages_open(parleyd *d)
{
    pd_messages *m = calloc(1, sizeof *m);
    if (!m) return pd_die("out of memory");
    d->msg = m;
    for (size_t i = 0; i < MAX_CONTROL_CLIENTS; i++) m->followers[i].fd = -1;
    char path[PL_HOME_PATH_MAX + 16];
    pl_home_path(d->home, "messages.db", path, sizeof path);
    if (pl_msgstore_open(&m->store, path) != PL_MSGSTORE_OK) return pd_die("cannot open %s", path);
    pl_chat_config cfg = {.identity = &d->id, .cert = d->cert_bytes, .cert_len = d->cert_len, .rng = pl_rng_system()};
    memcpy(cfg.ca_pk, d->ca_pk, 32);
    pl_chat_io io = {d, chat_send_direct, chat_deposit, chat_event};
    if (pl_chat_new(&m->chat, &cfg, &io) != PL_CHAT_OK) return pd_die("cannot start the chat engine");
    if (d->have_crl) pl_chat_set_crl(m->chat, &d->crl);
    pl_timer_init(&m->timer, on_timer, d);
    restore_ctx x = {d, pl_loop_now(d->loop), 0, 0, 0, 0};
    pl_msgstore_each_conv(m->store, restore_conv, &x);
    pl_msgstore_recent_ids(m->store, 8192, restore_id, &x);
    pl_msgstore_pending(m->store, restore_pending, &x);
    if (x.convs)
        pd_log(d, "chat: %u conversation%s, %u message%s not yet delivered", x.convs, x.convs == 1 ? "" : "s",
               x.resumed, x.resumed == 1 ? "" : "s");
    int rc = pd_vm_open(d);
    if (rc) return rc;
    pd_messages_arm(d);
    return 0;
}

void pd_messages_close(parleyd *d)
{
    pd_messages *m = d->msg;
    if (!m) return;
    pd_vm_close(d);
    for (size_t i = 0; i < PD_MAX_REQS; i++) pd_req_free(&m->reqs[i]);
    pl_timer_cancel(d->loop, &m->timer);
    pl_chat_free(m->chat);
    pl_msgstore_close(m->store);
    free(m->peers);
    free(m);
    d->msg = NULL;
}

/* ---- a supernode's mailbox, for its operator ------------------------------------------------------------- */

void pd_mailbox_status(parleyd *d, cJSON *serving)
{
    pl_super *s = pl_stack_super(d->stack);
    pl_mbox *mb = s ? pl_super_mailbox(s) : NULL;
    if (!mb) return;
    pl_mbox_stats st = pl_mbox_get_stats(mb);
    cJSON *o = cJSON_AddObjectToObject(serving, "mailbox");
    cJSON_AddNumberToObject(o, "boxes", (double)st.boxes);
    cJSON_AddNumberToObject(o, "messages", (double)st.messages);
    cJSON_AddNumberToObject(o, "parts", (double)st.parts);
    cJSON_AddNumberToObject(o, "bytes", (double)st.bytes);
    cJSON_AddNumberToObject(o, "tombstones", (double)st.tombstones);
    cJSON_AddNumberToObject(o, "stored", (double)st.stored);
    cJSON_AddNumberToObject(o, "quota_refused", (double)st.quota);
    cJSON_AddNumberToObject(o, "expired", (double)st.expired);
    cJSON_AddNumberToObject(o, "deletes_applied", (double)st.deletes_applied);
}

typedef struct dump_ctx {
    int fd;
    uint64_t strings, bytes;
    bool failed;
} dump_ctx;

static void dump_one(void *ctx, const uint8_t *bytes, size_t len)
{
    dump_ctx *x = ctx;
    x->strings++;
    x->bytes += len;
    while (len && !x->failed) {
        ssize_t n = write(x->fd, bytes, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) x->failed = true;
        else {
            bytes += n;
            len -= (size_t)n;
        }
    }
}

cJSON *pd_cmd_mailbox(parleyd *d, int fd, const cJSON *req)
{
    (void)fd;
    pl_super *s = pl_stack_super(d->stack);
    pl_mbox *mb = s ? pl_super_mailbox(s) : NULL;
    if (!mb) return pd_error_reply("not_supernode", "this daemon keeps no mailbox (not a supernode)");
    const char *op = req_string(req, "op");
    if (op && strcmp(op, "dump") == 0) {
        /* Every byte string the store holds (names, certificates,
         * envelopes, tombstones), back to back: what a disk image or a
         * memory dump of this supernode would show. */
        const char *path = req_string(req, "path");
        if (!path || path[0] != '/') return pd_error_reply("bad_request", "mailbox dump needs an absolute \"path\"");
        dump_ctx x = {open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), 0, 0, false};
        if (x.fd < 0) return pd_error_reply("local", strerror(errno));
        pl_mbox_foreach_bytes(mb, dump_one, &x);
        close(x.fd);
        if (x.failed) return pd_error_reply("local", "writing the dump failed");
        cJSON *r = pd_ok_reply();
        cJSON_AddStringToObject(r, "path", path);
        cJSON_AddNumberToObject(r, "strings", (double)x.strings);
        cJSON_AddNumberToObject(r, "bytes", (double)x.bytes);
        return r;
    }
    const char *name = req_string(req, "name");
    char norm[PL_NAME_MAX + 1];
    if (!name || (op && strcmp(op, "held") != 0)) return pd_error_reply("bad_request", "mailbox op must be held (with a \"name\") or dump");
    if (pl_name_normalize(name, norm) != PL_NAME_OK) return bad_name(name);
    pl_mbox_held h;
    memset(&h, 0, sizeof h);
    bool any = pl_mbox_held_for(mb, norm, &h);
    uint8_t reps[8][32];
    size_t n = pl_mbox_replicas_of(mb, norm, reps);
    cJSON *r = pd_ok_reply();
    cJSON_AddStringToObject(r, "name", norm);
    bool replica = false;
    cJSON *arr = cJSON_AddArrayToObject(r, "replicas");
    for (size_t i = 0; i < n && i < 8; i++) {
        char hex[65];
        cJSON *o = cJSON_CreateObject();
        pl_hex_encode(reps[i], 32, hex);
        cJSON_AddStringToObject(o, "fingerprint", hex);
        bool self = memcmp(reps[i], d->id.sign_pk, 32) == 0;
        cJSON_AddStringToObject(o, "name", self ? d->cert.name : pd_peer_name(d, reps[i]));
        replica |= self;
        cJSON_AddItemToArray(arr, o);
    }
    cJSON_AddBoolToObject(r, "replica", replica);
    cJSON_AddBoolToObject(r, "box", any);
    cJSON_AddNumberToObject(r, "messages", h.messages);
    cJSON_AddNumberToObject(r, "parts", h.parts);
    cJSON_AddNumberToObject(r, "tombstones", h.tombstones);
    cJSON_AddNumberToObject(r, "bytes", (double)h.bytes);
    return r;
}
