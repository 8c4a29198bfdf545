/*
 * phone.c - one user's telephone (phone.h): the call engine, a path
 * manager and a media stream per call, the directory, relays, rendezvous
 * and trust, glued together. docs/calls.md, "Setting a call up", tells the
 * story this file implements.
 *
 * A call's record here (pcall) goes through phases:
 *   LOOKUP    dialed by name; waiting for the directory
 *   PREPARED  a caller knocked (rendezvous) but its invite has not come yet:
 *             paths and a session are being set up, nothing is shown
 *   LIVE      the call engine has it (dialing, ringing, answered)
 *   LINGER    over (the ENDED event went out); its paths stay a few seconds
 *             for the last signalling messages, then the session is closed,
 *             the relay released and the record freed
 * One record per peer at a time: a new call with a peer whose record
 * lingers, or who knocked first, takes the record's paths over.
 */
#include "phone.h"

#include <sodium.h>
#include <string.h>

#include "callsvc.h"
#include "envelope.h"
#include "media_packet.h"
#include "relay.h"
#include "wire.h"

enum { PH_FREE = 0, PH_LOOKUP, PH_PREPARED, PH_LIVE, PH_LINGER };

#define SLOTS (PL_PHONE_MAX_CALLS + PL_PHONE_MAX_PREPARED)
#define OFFER_MAX 512
#define SESSION_INITIATION 1 /* the session layer's type byte of a handshake initiation */

typedef struct pcall pcall;

struct pcall {
    pl_phone *ph;
    uint8_t phase;
    uint32_t id;
    uint32_t handle; /* the engine's; 0 before it has the call */
    bool outgoing;
    char name[PL_NAME_MAX + 1];
    bool have_pk, have_cert, have_via;
    uint8_t pk[32];
    pl_cert cert;
    uint8_t via[32];   /* the peer's supernode (rendezvous) */
    uint32_t lookup_id;
    /* paths */
    pl_path *pm;
    uint32_t pm_id;
    bool session_up;
    uint8_t init[PL_SEC_MAX_DATAGRAM]; /* the last handshake initiation, before the session is up */
    size_t init_len;
    /* the relay at our supernode */
    bool alloc_pending, alloc_done, granted;
    uint32_t alloc_req;
    pl_time alloc_deadline;
    pl_relay_grant grant;
    uint8_t grant_sn[32];
    pl_addr relay_at; /* where our supernode's relay is, as we reach it */
    /* the standby relay, at a standby supernode of ours: a call whose relays
     * are all at one supernode (both ends attached to it) would not survive
     * the loss of that supernode */
    bool sb_asked, sb_pending, sb_granted;
    uint32_t sb_req;
    pl_time sb_deadline;
    pl_relay_grant sb_grant;
    uint8_t sb_sn[32];
    pl_addr sb_at; /* where we reach the standby supernode (UDP) */
    /* first contact */
    uint8_t knocks;
    pl_time next_knock;
    bool answer_due;
    /* offers in the session */
    uint8_t offers_left;
    pl_time next_offer;
    /* media */
    pl_media *media;
    bool media_on, muted;
    /* what people see */
    pl_call_state state;
    uint8_t hold;
    uint8_t key_verdict;
    char safety[PL_TRUST_TEXT_MAX];
    uint8_t end_reason;
    bool end_local;
    uint32_t merged_into;
    pl_time dialed, responded, answered, ended, first_media_rx;
    pl_time expires; /* PREPARED: forgotten then; LINGER: freed then */
    bool announced;  /* DIALING or INCOMING went out: later events may follow */
    bool have_path_event; /* a path became active before that */
};

struct pl_phone {
    pl_identity id;
    uint8_t cert[PL_CERT_MAX_SIZE];
    size_t cert_len;
    pl_cert own_cert;
    uint8_t ca_pk[32];
    const pl_rng *rng;
    const pl_mem *mem;
    pl_phone_config cfg;
    pl_phone_io io;
    pl_link *link;
    pl_node *node;
    pl_call *engine;
    pcall calls[SLOTS];
    uint32_t next_id, next_pm_id, next_req;
    pl_time now;
    pl_env_seen seen;
    uint8_t admit_verdict; /* the pin verdict of the invite being admitted */
    bool multi_call;       /* pl_phone_set_multi_call */
    pl_phone_stats stats;
    pl_phone_call_info info; /* for events */
    pl_phone_knock knock;    /* the last one decoded */
    pl_env_opened opened;    /* the last note opened (wiped after use) */
    uint8_t env[PL_ENV_MAX_SIZE];
    uint8_t note[PL_CALLSVC_NOTE_MAX];
};

static pl_sec *sec_of(pl_phone *ph) { return pl_link_sec(ph->link); }
static bool from_supernode(pl_phone *ph, const uint8_t pk[32]);

/* ---- the call table ------------------------------------------------------------------------ */

static pcall *by_id(pl_phone *ph, uint32_t id)
{
    for (int i = 0; i < SLOTS; i++)
        if (ph->calls[i].phase != PH_FREE && ph->calls[i].id == id) return &ph->calls[i];
    return NULL;
}

static const pcall *by_id_const(const pl_phone *ph, uint32_t id)
{
    for (int i = 0; i < SLOTS; i++)
        if (ph->calls[i].phase != PH_FREE && ph->calls[i].id == id) return &ph->calls[i];
    return NULL;
}

/* The record for a peer (at most one has it), except `not`. */
static pcall *by_pk(pl_phone *ph, const uint8_t pk[32], const pcall *not)
{
    for (int i = 0; i < SLOTS; i++) {
        pcall *pc = &ph->calls[i];
        /* A record that ended before it had paths (a failed look-up, a
         * merged dial) holds nothing of the peer's any more. */
        if (pc->phase == PH_FREE || pc == not || !pc->have_pk || (pc->phase == PH_LINGER && !pc->pm)) continue;
        if (memcmp(pc->pk, pk, 32) == 0) return pc;
    }
    return NULL;
}

static pcall *by_handle(pl_phone *ph, uint32_t handle)
{
    for (int i = 0; i < SLOTS; i++)
        if (ph->calls[i].phase != PH_FREE && ph->calls[i].handle == handle && handle) return &ph->calls[i];
    return NULL;
}

static pcall *by_pm(pl_phone *ph, uint32_t pm_id)
{
    for (int i = 0; i < SLOTS; i++)
        if (ph->calls[i].phase != PH_FREE && ph->calls[i].pm && ph->calls[i].pm_id == pm_id) return &ph->calls[i];
    return NULL;
}

static int count_phase(const pl_phone *ph, uint8_t phase)
{
    int n = 0;
    for (int i = 0; i < SLOTS; i++) n += ph->calls[i].phase == phase;
    return n;
}

static pcall *new_call(pl_phone *ph, uint8_t phase)
{
    /* PREPARED records have slots of their own beyond the calls' share, so
     * strangers knocking cannot take the room of real calls. */
    int visible = 0;
    for (int i = 0; i < SLOTS; i++)
        visible += ph->calls[i].phase != PH_FREE && ph->calls[i].phase != PH_PREPARED;
    if (phase == PH_PREPARED ? count_phase(ph, PH_PREPARED) >= PL_PHONE_MAX_PREPARED
                             : visible >= PL_PHONE_MAX_CALLS)
        return NULL;
    for (int i = 0; i < SLOTS; i++) {
        pcall *pc = &ph->calls[i];
        if (pc->phase != PH_FREE) continue;
        memset(pc, 0, sizeof *pc);
        pc->ph = ph;
        pc->phase = phase;
        pc->id = ++ph->next_id;
        if (pc->id == 0) pc->id = ++ph->next_id;
        pc->state = PL_CALL_DIALING;
        return pc;
    }
    return NULL;
}

/* ---- events ----------------------------------------------------------------------------------- */

static void fill_info(const pl_phone *ph, const pcall *pc, pl_phone_call_info *info)
{
    memset(info, 0, sizeof *info);
    info->id = pc->id;
    info->state = pc->state;
    info->looking_up = pc->phase == PH_LOOKUP;
    info->outgoing = pc->outgoing;
    info->hold = pc->hold;
    info->muted = pc->muted;
    memcpy(info->peer_name, pc->name, sizeof info->peer_name);
    if (pc->have_pk) memcpy(info->peer_pk, pc->pk, 32);
    memcpy(info->safety_number, pc->safety, sizeof info->safety_number);
    info->key_verdict = pc->key_verdict;
    info->end_reason = pc->end_reason;
    info->end_local = pc->end_local;
    info->merged_into = pc->merged_into;
    info->dialed = pc->dialed;
    info->responded = pc->responded;
    info->answered = pc->answered;
    info->ended = pc->ended;
    info->first_media_rx = pc->first_media_rx;
    info->media = pc->media && pc->media_on;
    info->path.slot = -1;
    if (pc->pm) {
        pl_path_active(pc->pm, &info->path);
        info->have_path = info->path.slot >= 0;
        for (int s = 0; s < PL_PATH_MAX; s++) {
            pl_path_info pi;
            if (pl_path_get(pc->pm, s, &pi) && pi.state == PL_PATH_ALIVE) info->paths_alive++;
        }
    }
    if (pc->media) pl_media_get_stats(pc->media, &info->stats);
    (void)ph;
}

static void emit(pl_phone *ph, pcall *pc, pl_phone_event_type type, const char *warning)
{
    if (!ph->io.event) return;
    fill_info(ph, pc, &ph->info);
    pl_phone_event ev = {type, pc->id, &ph->info, warning, ph->now};
    ph->io.event(ph->io.ctx, &ev);
}

/* Ends a call the engine never had (a look-up that failed, a refused key). */
static void end_early(pl_phone *ph, pcall *pc, uint8_t reason, bool local)
{
    pc->end_reason = reason;
    pc->end_local = local;
    pc->state = PL_CALL_ENDED;
    pc->ended = ph->now;
    pc->phase = PH_LINGER;
    pc->expires = ph->now + PL_PHONE_LINGER; /* so the driver can still read it */
    emit(ph, pc, PL_PHONE_EV_ENDED, NULL);
}

/* ---- sending ----------------------------------------------------------------------------------- */

/* An overlay message to our supernode; false when not attached. */
static bool to_supernode(pl_phone *ph, const uint8_t *msg, size_t len, uint8_t sn_pk[32])
{
    pl_node_status st = pl_node_get_status(ph->node);
    if (st.state != PL_NODE_ATTACHED || len == 0) return false;
    pl_addr a = st.supernode.addr;
    a.transport = st.tcp ? PL_ADDR_TCP : PL_ADDR_UDP;
    if (sn_pk) memcpy(sn_pk, st.supernode.pk, 32);
    return pl_link_send(ph->link, st.supernode.pk, &a, msg, len, ph->now) == PL_LINK_OK;
}

/* A message to the peer over the end-to-end session, which starts at the
 * path manager's session address when there is none yet. */
static bool to_peer(pl_phone *ph, pcall *pc, const uint8_t *msg, size_t len)
{
    const pl_addr *at = pc->pm ? pl_path_session_addr(pc->pm) : NULL;
    pl_link_err e = pc->have_cert ? pl_link_send_cert(ph->link, &pc->cert, at, msg, len, ph->now)
                                  : pl_link_send(ph->link, pc->pk, at, msg, len, ph->now);
    return e == PL_LINK_OK;
}

static void repin_one(pl_phone *ph, pcall *pc)
{
    if (!pc->pm || !pc->have_pk) return;
    pl_sec_peer *p = pl_sec_find(sec_of(ph), pc->pk);
    const pl_addr *sa = pl_path_session_addr(pc->pm);
    if (p && !pl_addr_equal(pl_sec_peer_addr(p), sa)) pl_sec_peer_set_addr(p, sa);
}

/* A relay grant's addresses in an offer, with the peer's token. */
static void offer_relays(pl_path_offer *o, const pl_relay_grant *g, const pl_addr *reached_at)
{
    for (uint8_t i = 0; i < g->n_addrs && o->n_relays < PL_PATH_OFFER_MAX_RELAYS; i++) {
        pl_path_offer_relay *r = &o->relays[o->n_relays++];
        r->addr = g->addrs[i];
        /* A relay bound to a wildcard names no address: the peer reaches
         * it where we reach its supernode. */
        static const uint8_t any[16];
        if (memcmp(r->addr.ip, any, r->addr.family == PL_AF_INET4 ? 4 : 16) == 0 &&
            r->addr.family == reached_at->family)
            memcpy(r->addr.ip, reached_at->ip, 16);
        r->channel = g->channel;
        r->token = g->token_peer;
    }
}

/* What this side offers the peer: its candidates (not in privacy mode) and
 * its relay allocations (at its supernode and at a standby supernode) with
 * the peer's tokens. */
static size_t own_offer(pl_phone *ph, const pcall *pc, uint8_t *buf, size_t cap)
{
    pl_path_offer o;
    memset(&o, 0, sizeof o);
    pl_node_status st = pl_node_get_status(ph->node);
    bool tcp = ph->cfg.tcp_only || st.tcp;
    if (ph->cfg.privacy) {
        o.flags = PL_PATH_OFFER_F_PRIVATE;
    } else if (!tcp) {
        /* The port the home router forwards to us (portmap), if any. */
        bool mapped = st.state == PL_NODE_ATTACHED && st.mapped.family;
        if (mapped) pl_node_candidate_mapped(&o.candidates[o.n_candidates++], &st.mapped);
        if (st.state == PL_NODE_ATTACHED && st.observed.family && !(mapped && pl_addr_equal(&st.mapped, &st.observed))) {
            pl_record_candidate *c = &o.candidates[o.n_candidates++];
            c->type = PL_CAND_SERVER_REFLEXIVE;
            c->transport = PL_TRANSPORT_UDP;
            c->priority = 100;
            c->addr = st.observed;
            c->addr.transport = PL_ADDR_UDP;
        }
        static const uint8_t any[16];
        const pl_addr *h = &ph->cfg.host_addr;
        bool dup = false;
        for (uint8_t i = 0; i < o.n_candidates; i++) dup |= pl_addr_equal(h, &o.candidates[i].addr);
        if ((h->family == PL_AF_INET4 || h->family == PL_AF_INET6) && h->port &&
            memcmp(h->ip, any, h->family == PL_AF_INET4 ? 4 : 16) != 0 && !dup) {
            pl_record_candidate *c = &o.candidates[o.n_candidates++];
            c->type = PL_CAND_HOST;
            c->transport = PL_TRANSPORT_UDP;
            c->priority = 200;
            c->addr = *h;
            c->addr.transport = PL_ADDR_UDP;
        }
    }
    if (pc->granted) offer_relays(&o, &pc->grant, &pc->relay_at);
    if (pc->sb_granted) offer_relays(&o, &pc->sb_grant, &pc->sb_at);
    return pl_path_encode_offer(buf, cap, &o);
}

static void send_offer(pl_phone *ph, pcall *pc)
{
    uint8_t buf[OFFER_MAX];
    size_t n = own_offer(ph, pc, buf, sizeof buf);
    if (n && to_peer(ph, pc, buf, n)) ph->stats.offers_sent++;
}

/* Sends the pending handshake again, now that paths were added: the copies
 * that went out before had nowhere to arrive (a relay side not yet bound,
 * a NAT not yet open). The responder takes the first copy and drops the
 * rest as replays. */
static void replay_initiation(pl_phone *ph, pcall *pc)
{
    if (pc->session_up || !pc->init_len || !pc->pm) return;
    pl_path_send(pc->pm, pl_path_session_addr(pc->pm), pc->init, pc->init_len, ph->now);
    ph->stats.init_replays++;
}

/* ---- the rendezvous: knocks and their answers ------------------------------------------------------ */

/* Our offer as a decoded structure (own_offer encodes it). */
static bool own_offer_struct(pl_phone *ph, const pcall *pc, pl_path_offer *o)
{
    uint8_t buf[OFFER_MAX];
    size_t n = own_offer(ph, pc, buf, sizeof buf);
    return n && pl_path_decode_offer(o, buf, n) == PL_PATH_OK;
}

static void send_note(pl_phone *ph, pcall *pc, uint8_t content_type)
{
    if (!pc->have_cert || !pc->have_via) return;
    pl_node_status st = pl_node_get_status(ph->node);
    if (st.state != PL_NODE_ATTACHED) return;
    pl_phone_knock k;
    memcpy(k.supernode, st.supernode.pk, 32);
    if (!own_offer_struct(ph, pc, &k.offer)) return;
    uint8_t body[PL_PHONE_KNOCK_FIXED + OFFER_MAX];
    size_t n = pl_phone_encode_knock(body, sizeof body, &k);
    if (!n) return;
    pl_env_sealed sealed;
    size_t env_len;
    pl_env_err e = pl_env_seal(&sealed, ph->env, sizeof ph->env, &env_len, &ph->id, ph->cert, ph->cert_len,
                               &pc->cert, content_type, body, n, ph->now, ph->rng);
    pl_env_sealed_wipe(&sealed);
    if (e) return;
    pl_callsvc_note note = {.hop = 0, .body = ph->env, .body_len = env_len};
    memcpy(note.to, pc->pk, 32);
    memcpy(note.via, pc->via, 32);
    size_t len = pl_callsvc_encode_note(ph->note, sizeof ph->note, &note);
    if (!len || !to_supernode(ph, ph->note, len, NULL)) return;
    if (content_type == PL_PHONE_ENV_KNOCK) ph->stats.knocks_sent++;
    else ph->stats.knock_answers_sent++;
}

static void knock(pl_phone *ph, pcall *pc)
{
    send_note(ph, pc, PL_PHONE_ENV_KNOCK);
    pc->knocks++;
    pc->next_knock = ph->now + PL_PHONE_KNOCK_EVERY;
}

/* ---- paths ---------------------------------------------------------------------------------------- */

static void pm_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    pcall *pc = ctx;
    pc->ph->io.send_datagram(pc->ph->io.ctx, to, data, len);
}

static bool pm_send_message(void *ctx, const pl_addr *path_addr, const uint8_t *msg, size_t len, pl_time now)
{
    pcall *pc = ctx;
    pl_sec *sec = sec_of(pc->ph);
    pl_sec_peer *p = pl_sec_find(sec, pc->pk);
    if (!p || !pl_sec_peer_established(p)) return false;
    pl_sec_peer_set_addr(p, path_addr);
    pl_sec_err err = pl_sec_send(sec, p, msg, len, now);
    pl_sec_peer_set_addr(p, pl_path_session_addr(pc->pm));
    return err == PL_SEC_OK;
}

static void pm_event(void *ctx, const pl_path_event *ev)
{
    pcall *pc = ctx;
    if (ev->type != PL_PATH_EV_ACTIVE) return;
    if (pc->phase == PH_LIVE && pc->announced) emit(pc->ph, pc, PL_PHONE_EV_PATH, NULL);
    else pc->have_path_event = true; /* told once the call is */
}

/* Adds our own relay: at the address where we reach our supernode (the
 * relay shares its socket), over TCP when our UDP does not get out. */
static void add_own_relay(pl_phone *ph, pcall *pc)
{
    if (!pc->pm || !pc->granted) return;
    pl_node_status st = pl_node_get_status(ph->node);
    bool tcp = ph->cfg.tcp_only || st.tcp;
    bool have_tcp = false;
    for (uint8_t i = 0; i < pc->grant.n_addrs; i++) have_tcp |= pc->grant.addrs[i].transport == PL_ADDR_TCP;
    if (tcp && !have_tcp) return;
    pl_addr at = pc->relay_at;
    at.transport = tcp ? PL_ADDR_TCP : PL_ADDR_UDP;
    pl_path_add_relay(pc->pm, &at, pc->grant.channel, pc->grant.token_self, true, ph->now);
}

static bool create_pm(pl_phone *ph, pcall *pc)
{
    if (pc->pm) return true;
    pl_node_status st = pl_node_get_status(ph->node);
    pl_path_config cfg = {.id = ++ph->next_pm_id,
                          /* The lower key controls, whoever called: both sides agree
                           * even when both dialed at once (glare). */
                          .controlling = memcmp(ph->id.sign_pk, pc->pk, 32) < 0,
                          .privacy = ph->cfg.privacy,
                          .tcp_only = ph->cfg.tcp_only || st.tcp,
                          .mem = ph->mem};
    if (cfg.id == 0) cfg.id = ++ph->next_pm_id;
    pl_path_io io = {pc, pm_send, pm_send_message, pm_event};
    if (pl_path_new(&pc->pm, &cfg, &io) != PL_PATH_OK) return false;
    pc->pm_id = cfg.id;
    pc->session_up = false;
    pl_sec_peer *p = pl_sec_find(sec_of(ph), pc->pk);
    if (p && pl_sec_peer_established(p)) {
        /* A session is up already (the peer's handshake came straight to
         * our address): that address is a working path. */
        pl_addr from = *pl_sec_peer_addr(p);
        pc->session_up = true;
        pl_path_session_up(pc->pm, &from, ph->now);
    }
    repin_one(ph, pc);
    return true;
}

static void add_direct_candidates(pl_phone *ph, pcall *pc, const pl_record *rec)
{
    pl_node_status st = pl_node_get_status(ph->node);
    if (ph->cfg.privacy || ph->cfg.tcp_only || st.tcp || (rec->flags & PL_RECORD_F_PRIVATE)) return;
    for (uint8_t i = 0; i < rec->n_candidates; i++)
        if (rec->candidates[i].transport == PL_TRANSPORT_UDP)
            pl_path_add_direct(pc->pm, &rec->candidates[i].addr, ph->now);
}

static void apply_decoded_offer(pl_phone *ph, pcall *pc, const pl_path_offer *o)
{
    if (!pc->pm) return;
    ph->stats.offers_received++;
    pl_path_apply_offer(pc->pm, o, ph->now);
    replay_initiation(ph, pc);
}

static void apply_offer(pl_phone *ph, pcall *pc, const uint8_t *msg, size_t len)
{
    pl_path_offer o;
    if (pl_path_decode_offer(&o, msg, len) != PL_PATH_OK) {
        ph->stats.offers_malformed++;
        return;
    }
    apply_decoded_offer(ph, pc, &o);
}

/* Asks a standby supernode of ours (one we are not attached to) for a
 * second relay channel, so that the call has a relay at two different
 * supernodes even when both ends are attached to the same one. The request
 * goes over a session of its own with that supernode (opened now if there
 * is none); nothing waits for the answer. Not over TCP: a node whose UDP
 * is blocked keeps to its one stream. */
static void allocate_standby(pl_phone *ph, pcall *pc)
{
    if (pc->sb_asked) return;
    pc->sb_asked = true;
    pl_node_status st = pl_node_get_status(ph->node);
    if (ph->cfg.no_standby_relay || st.state != PL_NODE_ATTACHED || st.tcp || ph->cfg.tcp_only || !st.n_standby ||
        memcmp(st.standby[0].pk, st.supernode.pk, 32) == 0)
        return;
    pl_relay_allocate m = {.req = ++ph->next_req};
    memcpy(m.peer_pk, pc->pk, 32);
    uint8_t buf[64];
    size_t n = pl_relay_encode_allocate(buf, sizeof buf, &m);
    pl_addr at = st.standby[0].addr;
    at.transport = PL_ADDR_UDP;
    if (!n || pl_link_send(ph->link, st.standby[0].pk, &at, buf, n, ph->now) != PL_LINK_OK) return;
    memcpy(pc->sb_sn, st.standby[0].pk, 32);
    pc->sb_at = at;
    pc->sb_req = m.req;
    pc->sb_pending = true;
    pc->sb_deadline = ph->now + PL_PHONE_STANDBY_ALLOC_TIMEOUT;
    ph->stats.standby_requests++;
}

/* The standby grant came: a relayed path of ours through it, and the peer
 * is told (offers in the session, or the handshake sent again on it). */
static void standby_settled(pl_phone *ph, pcall *pc, const pl_relay_grant *g)
{
    pc->sb_pending = false;
    if (g->status != PL_RELAY_OK) {
        ph->stats.standby_refusals++;
        return;
    }
    pc->sb_granted = true;
    pc->sb_grant = *g;
    ph->stats.standby_grants++;
    if (pc->pm) pl_path_add_relay(pc->pm, &pc->sb_at, g->channel, g->token_self, true, ph->now);
    replay_initiation(ph, pc);
    if (pc->session_up && pc->alloc_done) {
        pc->offers_left = PL_PHONE_OFFER_TRIES;
        pc->next_offer = ph->now;
    }
}

/* Asks our supernode for a relay channel for the call with pc's peer. */
static void allocate(pl_phone *ph, pcall *pc)
{
    if (pc->alloc_pending || pc->alloc_done) return;
    pl_relay_allocate m = {.req = ++ph->next_req};
    memcpy(m.peer_pk, pc->pk, 32);
    uint8_t buf[64];
    size_t n = pl_relay_encode_allocate(buf, sizeof buf, &m);
    pl_node_status st = pl_node_get_status(ph->node);
    pc->relay_at = st.supernode.addr;
    if (!to_supernode(ph, buf, n, pc->grant_sn)) {
        pc->alloc_done = true; /* no supernode: go on without a relay of ours */
        return;
    }
    pc->alloc_req = m.req;
    pc->alloc_pending = true;
    pc->alloc_deadline = ph->now + PL_PHONE_ALLOC_TIMEOUT;
    allocate_standby(ph, pc);
}

/* After the grant came (or did not): everything that waited for it. */
static void allocation_settled(pl_phone *ph, pcall *pc)
{
    pc->alloc_pending = false;
    pc->alloc_done = true;
    add_own_relay(ph, pc);
    replay_initiation(ph, pc);
    if (pc->session_up) {
        pc->offers_left = PL_PHONE_OFFER_TRIES;
        pc->next_offer = ph->now;
    }
    if (pc->outgoing && !pc->session_up && pc->knocks == 0) knock(ph, pc);
    if (pc->answer_due) {
        pc->answer_due = false;
        send_note(ph, pc, PL_PHONE_ENV_KNOCK_ANSWER);
    }
}

static void release(pl_phone *ph, pcall *pc)
{
    uint8_t buf[16];
    if (pc->granted) {
        pl_relay_release m = {pc->grant.channel};
        size_t n = pl_relay_encode_release(buf, sizeof buf, &m);
        if (n) pl_link_send(ph->link, pc->grant_sn, NULL, buf, n, ph->now);
        pc->granted = false;
    }
    if (pc->sb_granted) {
        pl_relay_release m = {pc->sb_grant.channel};
        size_t n = pl_relay_encode_release(buf, sizeof buf, &m);
        if (n) pl_link_send(ph->link, pc->sb_sn, &pc->sb_at, buf, n, ph->now);
        pc->sb_granted = false;
    }
}

/* Forgets a record: paths, session, relay, stream. */
static void free_call(pl_phone *ph, pcall *pc)
{
    release(ph, pc);
    if (pc->media) pl_media_free(pc->media);
    if (pc->pm) {
        pl_path_free(pc->pm);
        /* The session pointed into the freed manager: close it. A later
         * call or message to the peer opens a new one. */
        if (pc->have_pk) pl_link_close(ph->link, pc->pk, ph->now);
    }
    sodium_memzero(pc, sizeof *pc);
}

/* A record the user sees (`user`: its id, name, handle, look-up) meets the
 * record that holds paths to the same peer (`paths`: a knock that came
 * first, or a call that lingers): the two become one, in the slot of
 * `paths`, because the path manager's callbacks point at that slot. `user`
 * has no paths, relay or stream of its own. Returns the merged record. */
static pcall *adopt(pl_phone *ph, pcall *user, pcall *paths)
{
    (void)ph;
    pcall merged = *user;
    merged.pm = paths->pm;
    merged.pm_id = paths->pm_id;
    merged.session_up = paths->session_up;
    memcpy(merged.init, paths->init, paths->init_len);
    merged.init_len = paths->init_len;
    merged.alloc_pending = paths->alloc_pending;
    merged.alloc_done = paths->alloc_done;
    merged.granted = paths->granted;
    merged.alloc_req = paths->alloc_req;
    merged.alloc_deadline = paths->alloc_deadline;
    merged.grant = paths->grant;
    memcpy(merged.grant_sn, paths->grant_sn, 32);
    merged.relay_at = paths->relay_at;
    merged.sb_asked = paths->sb_asked;
    merged.sb_pending = paths->sb_pending;
    merged.sb_granted = paths->sb_granted;
    merged.sb_req = paths->sb_req;
    merged.sb_deadline = paths->sb_deadline;
    merged.sb_grant = paths->sb_grant;
    memcpy(merged.sb_sn, paths->sb_sn, 32);
    merged.sb_at = paths->sb_at;
    merged.answer_due = paths->answer_due;
    merged.have_path_event = paths->have_path_event;
    if (!merged.have_via && paths->have_via) {
        memcpy(merged.via, paths->via, 32);
        merged.have_via = true;
    }
    if (!merged.have_cert && paths->have_cert) {
        merged.cert = paths->cert;
        merged.have_cert = true;
    }
    if (paths->media) pl_media_free(paths->media);
    *paths = merged;
    sodium_memzero(user, sizeof *user);
    return paths;
}

/* ---- media ------------------------------------------------------------------------------------- */

static void media_send(void *ctx, const uint8_t *payload, size_t len)
{
    pcall *pc = ctx;
    pl_phone *ph = pc->ph;
    pl_sec *sec = sec_of(ph);
    pl_sec_peer *p = pl_sec_find(sec, pc->pk);
    if (!p || !pl_sec_peer_established(p)) return;
    if (ph->cfg.media_sent) ph->cfg.media_sent(ph->cfg.media_sent_ctx, pc->id, payload, len);
    pl_sec_send(sec, p, payload, len, ph->now);
}

static void media_start(pl_phone *ph, pcall *pc)
{
    if (!pc->media) {
        pl_media_config mc = ph->cfg.media;
        mc.rng = ph->rng;
        mc.mem = ph->mem;
        pl_media_io io = {pc, media_send};
        if (pl_media_new(&pc->media, &mc, &io, ph->now) != PL_MEDIA_OK) {
            pc->media = NULL;
            return;
        }
    } else {
        pl_media_set_hold(pc->media, false, ph->now);
    }
    pl_media_set_mute(pc->media, pc->muted);
    pc->media_on = true;
}

/* ---- the call engine ------------------------------------------------------------------------------ */

static bool engine_send(void *ctx, const uint8_t peer_pk[32], const pl_addr *addr, const uint8_t *msg, size_t len,
                        pl_time now)
{
    pl_phone *ph = ctx;
    ph->now = now;
    pcall *pc = by_pk(ph, peer_pk, NULL);
    if (pc && pc->pm) return to_peer(ph, pc, msg, len);
    /* An answer to a caller we keep no record of (busy): over the session
     * its invite came on. */
    (void)addr;
    return pl_link_send(ph->link, peer_pk, NULL, msg, len, now) == PL_LINK_OK;
}

/* The key a peer shows, against the one pinned for its name. */
static uint8_t check_pin(pl_phone *ph, const char *name, const uint8_t key[32], char *warning, size_t cap)
{
    uint8_t pinned[32];
    bool have = ph->cfg.pins.lookup && ph->cfg.pins.lookup(ph->cfg.pins.ctx, name, pinned);
    pl_trust_pin v = pl_trust_pin_check(key, have ? pinned : NULL);
    if (v == PL_TRUST_PIN_FIRST_SEEN && ph->cfg.pins.first_seen) ph->cfg.pins.first_seen(ph->cfg.pins.ctx, name, key);
    if (v == PL_TRUST_PIN_CHANGED && warning)
        pl_trust_format_warning(warning, cap, name, pinned, key, ph->id.sign_pk);
    return (uint8_t)v;
}

static pl_call_admit engine_admit(void *ctx, const uint8_t peer_pk[32], const pl_cert *cert)
{
    pl_phone *ph = ctx;
    ph->admit_verdict = cert ? check_pin(ph, cert->name, peer_pk, NULL, 0) : 0;
    if (ph->admit_verdict == PL_TRUST_PIN_CHANGED && ph->cfg.block_changed_keys) return PL_CALL_ADMIT_REFUSE;
    return PL_CALL_ADMIT_RING;
}

static void on_incoming(pl_phone *ph, const pl_call_event *ev)
{
    pcall *pc = by_pk(ph, ev->peer_pk, NULL);
    if (pc && pc->phase == PH_LOOKUP) {
        /* We are dialing this peer too and its invite came first: our user
         * asked for this call, so it is answered at once. */
        pc->handle = ev->handle;
        pc->phase = PH_LIVE;
        pc->state = PL_CALL_RINGING;
        create_pm(ph, pc);
        allocate(ph, pc);
        pl_call_answer(ph->engine, ev->handle, ev->now);
        return;
    }
    if (pc && pc->phase == PH_LIVE) return; /* cannot happen: the engine has one live call per peer */
    pcall *fresh = new_call(ph, PH_LIVE);
    if (!fresh) {
        pl_call_hangup(ph->engine, ev->handle, ev->now);
        return;
    }
    memcpy(fresh->pk, ev->peer_pk, 32);
    fresh->have_pk = true;
    if (pc) fresh = adopt(ph, fresh, pc);
    pc = fresh;
    pc->phase = PH_LIVE;
    pc->handle = ev->handle;
    pc->outgoing = false;
    snprintf(pc->name, sizeof pc->name, "%s", ev->peer_name);
    if (!pc->have_cert) {
        pl_sec_peer *p = pl_sec_find(sec_of(ph), ev->peer_pk);
        const pl_cert *c = p ? pl_sec_peer_cert(p) : NULL;
        if (c) {
            pc->cert = *c;
            pc->have_cert = true;
        }
    }
    pc->state = PL_CALL_RINGING;
    pc->dialed = ev->now;
    pc->key_verdict = ph->admit_verdict;
    pl_trust_safety_number(ph->id.sign_pk, pc->pk, (char[PL_TRUST_DIGITS + 1]){0}, pc->safety);
    ph->stats.incoming++;
    create_pm(ph, pc);
    allocate(ph, pc);
    pc->announced = true;
    emit(ph, pc, PL_PHONE_EV_INCOMING, NULL);
    if (pc->have_path_event) {
        pc->have_path_event = false;
        emit(ph, pc, PL_PHONE_EV_PATH, NULL);
    }
    if (pc->key_verdict == PL_TRUST_PIN_CHANGED) {
        uint8_t pinned[32];
        char warning[1024] = "";
        if (ph->cfg.pins.lookup && ph->cfg.pins.lookup(ph->cfg.pins.ctx, pc->name, pinned))
            pl_trust_format_warning(warning, sizeof warning, pc->name, pinned, pc->pk, ph->id.sign_pk);
        emit(ph, pc, PL_PHONE_EV_KEY, warning);
    }
}

static void engine_event(void *ctx, const pl_call_event *ev)
{
    pl_phone *ph = ctx;
    ph->now = ev->now;
    if (ev->type == PL_CALL_EV_INCOMING) {
        on_incoming(ph, ev);
        return;
    }
    pcall *pc = by_handle(ph, ev->handle);
    if (!pc) return;
    switch (ev->type) {
    case PL_CALL_EV_STATE:
        pc->state = ev->state;
        pc->hold = ev->hold;
        if (!pc->responded && (ev->state == PL_CALL_RINGING_REMOTE || ev->state == PL_CALL_ACTIVE) && pc->outgoing)
            pc->responded = ev->now;
        if (!pc->answered && ev->state == PL_CALL_ACTIVE) pc->answered = ev->now;
        emit(ph, pc, PL_PHONE_EV_STATE, NULL);
        break;
    case PL_CALL_EV_MEDIA_START:
        media_start(ph, pc);
        emit(ph, pc, PL_PHONE_EV_MEDIA, NULL);
        break;
    case PL_CALL_EV_MEDIA_STOP:
        if (pc->media) pl_media_set_hold(pc->media, true, ev->now);
        pc->media_on = false;
        emit(ph, pc, PL_PHONE_EV_MEDIA, NULL);
        break;
    case PL_CALL_EV_ENDED:
        pc->state = PL_CALL_ENDED;
        pc->end_reason = (uint8_t)ev->reason;
        pc->end_local = ev->local;
        pc->ended = ev->now;
        pc->media_on = false;
        pc->phase = PH_LINGER;
        pc->expires = ev->now + PL_PHONE_LINGER;
        emit(ph, pc, PL_PHONE_EV_ENDED, NULL);
        /* The stream's statistics went out with the event; its memory goes now. */
        if (pc->media) {
            pl_media_free(pc->media);
            pc->media = NULL;
        }
        pc->handle = 0;
        break;
    default: break;
    }
}

/* ---- dialing: the look-up's answer -------------------------------------------------------------------- */

static void on_lookup(pl_phone *ph, pcall *pc, const pl_dirc_event *ev)
{
    if (ev->status == PL_DIR_NOT_FOUND) {
        end_early(ph, pc, PL_PHONE_END_NOT_FOUND, false);
        return;
    }
    if (ev->status != PL_DIR_OK || !ev->record) {
        end_early(ph, pc, PL_PHONE_END_NO_DIRECTORY, false);
        return;
    }
    const pl_record *rec = ev->record;
    if (memcmp(rec->cert.sign_pk, ph->id.sign_pk, 32) == 0) {
        end_early(ph, pc, PL_PHONE_END_SELF, true);
        return;
    }
    memcpy(pc->pk, rec->cert.sign_pk, 32);
    pc->have_pk = true;
    pc->cert = rec->cert;
    pc->have_cert = true;
    snprintf(pc->name, sizeof pc->name, "%s", rec->cert.name);
    pl_trust_safety_number(ph->id.sign_pk, pc->pk, (char[PL_TRUST_DIGITS + 1]){0}, pc->safety);
    char warning[1024] = "";
    pc->key_verdict = check_pin(ph, pc->name, pc->pk, warning, sizeof warning);
    if (pc->key_verdict == PL_TRUST_PIN_CHANGED) {
        emit(ph, pc, PL_PHONE_EV_KEY, warning);
        if (ph->cfg.block_changed_keys) {
            end_early(ph, pc, PL_PHONE_END_KEY_CHANGED, true);
            return;
        }
    }
    if (ev->offline) {
        end_early(ph, pc, PL_PHONE_END_OFFLINE, false);
        return;
    }
    if (rec->n_supernodes) {
        memcpy(pc->via, rec->supernodes[0].pk, 32);
        pc->have_via = true;
    }
    pcall *other = by_pk(ph, pc->pk, pc);
    if (other && other->phase == PH_LIVE) {
        /* The peer is calling us (or we are in a call with it already):
         * that call is the one; answer it if it rings. */
        pc->merged_into = other->id;
        if (other->state == PL_CALL_RINGING) pl_call_answer(ph->engine, other->handle, ph->now);
        end_early(ph, pc, PL_PHONE_END_MERGED, true);
        return;
    }
    if (other && other->phase == PH_LINGER) {
        /* The last call with this peer lingers: start afresh (its paths may
         * be stale: the peer may have restarted elsewhere). */
        free_call(ph, other);
        other = NULL;
    }
    if (other) pc = adopt(ph, pc, other);
    if (!create_pm(ph, pc)) {
        end_early(ph, pc, PL_PHONE_END_FAILED, true);
        return;
    }
    add_direct_candidates(ph, pc, rec);
    /* The offer goes first, so that it precedes the invite in the queue
     * behind the handshake. */
    send_offer(ph, pc);
    uint32_t handle;
    pl_call_err ce = pl_call_dial(ph->engine, pc->pk, pc->name, pl_path_session_addr(pc->pm), ph->now, &handle);
    if (ce) {
        end_early(ph, pc, ce == PL_CALL_ERR_BUSY ? PL_CALL_END_BUSY : PL_PHONE_END_FAILED, true);
        return;
    }
    pc->phase = PH_LIVE;
    pc->handle = handle;
    pc->state = PL_CALL_DIALING;
    pc->announced = true;
    emit(ph, pc, PL_PHONE_EV_DIALING, NULL);
    if (pc->have_path_event && pc->phase == PH_LIVE) {
        pc->have_path_event = false;
        emit(ph, pc, PL_PHONE_EV_PATH, NULL);
    }
    if (pc->phase != PH_LIVE) return; /* the driver hung up from the event */
    allocate(ph, pc);
    /* Without a supernode of our own to allocate at, knock at once. */
    if (pc->alloc_done && !pc->session_up && pc->knocks == 0) knock(ph, pc);
}

/* ---- the rendezvous, receiving ---------------------------------------------------------------------- */

static void on_note(pl_phone *ph, const uint8_t *msg, size_t len)
{
    pl_callsvc_note note;
    if (!pl_callsvc_decode_note(&note, msg, len) || memcmp(note.to, ph->id.sign_pk, 32) != 0) {
        ph->stats.knocks_refused++;
        return;
    }
    pl_env_opened *o = &ph->opened;
    pl_env_recipient me = {&ph->id, ph->own_cert.name};
    pl_env_err e = pl_env_open(o, note.body, note.body_len, &me, ph->ca_pk, NULL, ph->now, NULL);
    bool ok = e == PL_ENV_OK && o->n_chunks == 0 &&
              (o->content_type == PL_PHONE_ENV_KNOCK || o->content_type == PL_PHONE_ENV_KNOCK_ANSWER) &&
              o->sent_at + PL_PHONE_KNOCK_MAX_AGE >= ph->now && o->sent_at <= ph->now + PL_PHONE_KNOCK_MAX_AGE &&
              pl_phone_decode_knock(&ph->knock, o->body, o->body_len) &&
              memcmp(o->sender.sign_pk, ph->id.sign_pk, 32) != 0 &&
              pl_env_seen_check(&ph->seen, o->id, o->sent_at, ph->now) == PL_ENV_OK;
    if (!ok) {
        ph->stats.knocks_refused++;
        pl_env_opened_wipe(o);
        return;
    }
    pl_env_seen_add(&ph->seen, o->id, o->sent_at, ph->now);
    bool is_knock = o->content_type == PL_PHONE_ENV_KNOCK;
    if (is_knock) ph->stats.knocks_received++;
    else ph->stats.knock_answers_received++;
    const uint8_t *pk = o->sender.sign_pk;
    pcall *pc = by_pk(ph, pk, NULL);
    if (!pc) {
        if (!is_knock) goto done; /* an answer to a call we no longer have */
        pc = new_call(ph, PH_PREPARED);
        if (!pc) {
            ph->stats.knocks_refused++;
            goto done;
        }
        memcpy(pc->pk, pk, 32);
        pc->have_pk = true;
        snprintf(pc->name, sizeof pc->name, "%s", o->sender.name);
        pc->expires = ph->now + PL_PHONE_PREPARED_LIFE;
    } else if (pc->phase == PH_LINGER) {
        if (!is_knock) goto done;
        /* A new call from a peer whose last one lingers: the peer starts
         * from scratch (it may be a new process at a new address), so do
         * we. This is not inside the peer's session, so closing it is safe. */
        free_call(ph, pc);
        pc = new_call(ph, PH_PREPARED);
        if (!pc) {
            ph->stats.knocks_refused++;
            goto done;
        }
        memcpy(pc->pk, pk, 32);
        pc->have_pk = true;
        snprintf(pc->name, sizeof pc->name, "%s", o->sender.name);
        pc->expires = ph->now + PL_PHONE_PREPARED_LIFE;
    }
    if (!pc->have_cert) {
        pc->cert = o->sender;
        pc->have_cert = true;
    }
    memcpy(pc->via, ph->knock.supernode, 32);
    pc->have_via = true;
    if (!create_pm(ph, pc)) goto done;
    apply_decoded_offer(ph, pc, &ph->knock.offer);
    if (is_knock) {
        allocate(ph, pc);
        if (pc->alloc_done) send_note(ph, pc, PL_PHONE_ENV_KNOCK_ANSWER);
        else pc->answer_due = true;
        /* Open the session from this side too: the caller cannot get
         * through our NAT, but we can get through its relay (or its NAT,
         * which our packets open). The handshake crosses the caller's. */
        if (!pc->session_up) send_offer(ph, pc);
    }
done:
    pl_env_opened_wipe(o);
}

/* A grant from pk: our supernode's (the call's relay) or a standby
 * supernode's we asked. */
static void on_grant(pl_phone *ph, const uint8_t pk[32], const uint8_t *msg, size_t len)
{
    pl_relay_grant g;
    if (pl_relay_decode_grant(&g, msg, len) != PL_RELAY_ERR_OK) return;
    bool ours = from_supernode(ph, pk);
    for (int i = 0; i < SLOTS; i++) {
        pcall *pc = &ph->calls[i];
        if (pc->phase == PH_FREE) continue;
        if (pc->sb_pending && pc->sb_req == g.req && memcmp(pc->sb_sn, pk, 32) == 0) {
            standby_settled(ph, pc, &g);
            return;
        }
        if (!ours || !pc->alloc_pending || pc->alloc_req != g.req) continue;
        if (g.status == PL_RELAY_OK) {
            pc->granted = true;
            pc->grant = g;
            ph->stats.relay_grants++;
        } else {
            ph->stats.relay_refusals++;
        }
        allocation_settled(ph, pc);
        return;
    }
    /* A grant nobody waits for any more: give it back. */
    if (g.status == PL_RELAY_OK) {
        pl_relay_release m = {g.channel};
        uint8_t buf[16];
        size_t n = pl_relay_encode_release(buf, sizeof buf, &m);
        if (n) pl_link_send(ph->link, pk, NULL, buf, n, ph->now);
    }
}

/* Did we ask pk for a standby relay (for a call we still have)? */
static bool standby_supernode(const pl_phone *ph, const uint8_t pk[32])
{
    for (int i = 0; i < SLOTS; i++) {
        const pcall *pc = &ph->calls[i];
        if (pc->phase != PH_FREE && pc->sb_asked && pc->sb_at.family && memcmp(pc->sb_sn, pk, 32) == 0) return true;
    }
    return false;
}

/* ---- the knock's codec ----------------------------------------------------------------------------------- */

size_t pl_phone_encode_knock(uint8_t *buf, size_t cap, const pl_phone_knock *k)
{
    if (cap < PL_PHONE_KNOCK_FIXED) return 0;
    buf[0] = PL_PHONE_KNOCK_VERSION;
    buf[1] = 0;
    memcpy(buf + 2, k->supernode, 32);
    size_t n = pl_path_encode_offer(buf + PL_PHONE_KNOCK_FIXED, cap - PL_PHONE_KNOCK_FIXED, &k->offer);
    return n ? PL_PHONE_KNOCK_FIXED + n : 0;
}

bool pl_phone_decode_knock(pl_phone_knock *k, const uint8_t *buf, size_t len)
{
    memset(k, 0, sizeof *k);
    if (len <= PL_PHONE_KNOCK_FIXED || buf[0] != PL_PHONE_KNOCK_VERSION || buf[1] != 0) return false;
    memcpy(k->supernode, buf + 2, 32);
    return pl_path_decode_offer(&k->offer, buf + PL_PHONE_KNOCK_FIXED, len - PL_PHONE_KNOCK_FIXED) == PL_PATH_OK;
}

/* ---- the stack's side ------------------------------------------------------------------------------ */

void pl_phone_set_time(pl_phone *ph, pl_time now) { ph->now = now; }

static bool from_supernode(pl_phone *ph, const uint8_t pk[32])
{
    pl_node_status st = pl_node_get_status(ph->node);
    return st.state == PL_NODE_ATTACHED && memcmp(st.supernode.pk, pk, 32) == 0;
}

bool pl_phone_message(pl_phone *ph, const uint8_t pk[32], const pl_cert *cert, const pl_addr *from,
                      const uint8_t *msg, size_t len, pl_time now)
{
    if (len == 0) return false;
    ph->now = now;
    uint8_t t = msg[0];
    if (t == PL_OVL_RELAY_ALLOCATED && (from_supernode(ph, pk) || standby_supernode(ph, pk))) {
        on_grant(ph, pk, msg, len);
        return true;
    }
    if (from_supernode(ph, pk)) {
        if (t == PL_CALLSVC_MSG_NOTE) {
            on_note(ph, msg, len);
            return true;
        }
        return false;
    }
    bool call_msg = t >= PL_CALL_MSG_FIRST && t <= PL_CALL_MSG_LAST;
    bool path_msg = t == PL_PATH_MSG_PROBE || t == PL_PATH_MSG_ACK || t == PL_PATH_MSG_OFFER;
    bool media_msg = pl_mpkt_is_media(msg, len);
    if (!call_msg && !path_msg && !media_msg) return false;
    pcall *pc = by_pk(ph, pk, NULL);
    if (pc && pc->pm) {
        repin_one(ph, pc);
        if (pl_path_receive(pc->pm, from, msg, len, now)) return true;
    }
    if (t == PL_PATH_MSG_OFFER) {
        if (pc && pc->pm) apply_offer(ph, pc, msg, len);
        return true;
    }
    if (path_msg) return true;
    if (media_msg) {
        if (pc && pc->media && pc->phase == PH_LIVE) {
            if (!pc->first_media_rx && t == PL_MPKT_VOICE) pc->first_media_rx = now;
            pl_media_receive(pc->media, msg, len, now);
        } else {
            ph->stats.media_unrouted++;
        }
        /* Media, even on hold (reports), says the peer is there. */
        pl_call_heard(ph->engine, pk, now);
        return true;
    }
    bool prepared = pc && pc->phase == PH_PREPARED && t == PL_CALL_MSG_INVITE;
    bool handled = pl_call_message(ph->engine, pk, cert, from, msg, len, now);
    if (prepared && pc->phase == PH_PREPARED) {
        /* The engine answered the invite without taking the call (busy,
         * refused): the paths stay only for that answer. */
        pc->phase = PH_LINGER;
        pc->expires = now + PL_PHONE_LINGER;
    }
    return handled;
}

bool pl_phone_route(pl_phone *ph, const pl_addr *to, const uint8_t *data, size_t len)
{
    uint32_t id;
    if (!pl_path_virtual_owner(to, &id)) return false;
    pcall *pc = by_pm(ph, id);
    if (!pc) return true; /* a manager that is gone: nowhere to send */
    if (!pc->session_up && len && len <= sizeof pc->init && data[0] == SESSION_INITIATION &&
        pl_addr_equal(to, pl_path_session_addr(pc->pm))) {
        memcpy(pc->init, data, len);
        pc->init_len = len;
    }
    pl_path_send(pc->pm, to, data, len, ph->now);
    return true;
}

bool pl_phone_datagram(pl_phone *ph, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    ph->now = now;
    for (int i = 0; i < SLOTS; i++) {
        pcall *pc = &ph->calls[i];
        if (pc->phase == PH_FREE || !pc->pm) continue;
        pl_addr path_addr;
        const uint8_t *inner;
        size_t inner_len;
        switch (pl_path_unwrap(pc->pm, from, data, len, &path_addr, &inner, &inner_len, now)) {
        case PL_PATH_INNER: pl_link_receive(ph->link, &path_addr, inner, inner_len, now); return true;
        case PL_PATH_CONSUMED: return true;
        case PL_PATH_NOT_MINE: break;
        }
    }
    ph->stats.datagrams_unrouted++;
    return false;
}

void pl_phone_repin(pl_phone *ph)
{
    for (int i = 0; i < SLOTS; i++)
        if (ph->calls[i].phase != PH_FREE) repin_one(ph, &ph->calls[i]);
}

void pl_phone_link_event(pl_phone *ph, const pl_link_event *ev)
{
    ph->now = ev->now;
    pcall *pc = by_pk(ph, ev->peer_pk, NULL);
    if (ev->type == PL_LINK_EV_UP) {
        if (!pc || !pc->pm) return;
        pc->session_up = true;
        pl_path_session_up(pc->pm, ev->addr, ev->now);
        repin_one(ph, pc);
        /* Our offer, now that the session carries it (again a few times:
         * datagrams get lost, and applying an offer twice does nothing). */
        if (pc->alloc_done) {
            pc->offers_left = PL_PHONE_OFFER_TRIES;
            pc->next_offer = ev->now;
        }
        return;
    }
    if (ev->why == PL_LINK_DOWN_CLOSED) return;
    /* The session failed or went silent: the engine ends its calls with the
     * peer; a record without a call goes. */
    if (pc) pc->session_up = false;
    pl_call_peer_down(ph->engine, ev->peer_pk, ev->now);
    if (pc && pc->phase == PH_PREPARED) {
        pc->phase = PH_LINGER;
        pc->expires = ev->now;
    }
}

void pl_phone_node_event(pl_phone *ph, const pl_node_event *ev)
{
    ph->now = ev->now;
    if (ev->type != PL_NODE_EV_DIRECTORY || ev->dir->type != PL_DIRC_EV_LOOKUP) return;
    for (int i = 0; i < SLOTS; i++) {
        pcall *pc = &ph->calls[i];
        if (pc->phase == PH_LOOKUP && pc->lookup_id == ev->dir->id) {
            on_lookup(ph, pc, ev->dir);
            return;
        }
    }
}

void pl_phone_tick(pl_phone *ph, pl_time now)
{
    ph->now = now;
    pl_call_tick(ph->engine, now);
    for (int i = 0; i < SLOTS; i++) {
        pcall *pc = &ph->calls[i];
        if (pc->phase == PH_FREE) continue;
        if ((pc->phase == PH_LINGER || pc->phase == PH_PREPARED) && now >= pc->expires) {
            free_call(ph, pc);
            continue;
        }
        if (pc->pm) pl_path_tick(pc->pm, now);
        if (pc->media) pl_media_tick(pc->media, now);
        if (pc->alloc_pending && now >= pc->alloc_deadline) {
            ph->stats.relay_timeouts++;
            allocation_settled(ph, pc);
        }
        if (pc->sb_pending && now >= pc->sb_deadline) {
            pc->sb_pending = false;
            ph->stats.standby_timeouts++;
        }
        if (pc->phase == PH_LIVE && pc->outgoing && !pc->session_up && pc->knocks &&
            pc->knocks < PL_PHONE_KNOCK_TRIES && now >= pc->next_knock)
            knock(ph, pc);
        if (pc->offers_left && pc->session_up && now >= pc->next_offer) {
            pc->offers_left--;
            pc->next_offer = now + PL_PHONE_OFFER_EVERY;
            send_offer(ph, pc);
        }
    }
    pl_phone_repin(ph);
}

pl_time pl_phone_next_timeout(const pl_phone *ph)
{
    pl_time t = pl_call_next_timeout(ph->engine), x;
    for (int i = 0; i < SLOTS; i++) {
        const pcall *pc = &ph->calls[i];
        if (pc->phase == PH_FREE) continue;
        if ((pc->phase == PH_LINGER || pc->phase == PH_PREPARED) && pc->expires < t) t = pc->expires;
        if (pc->pm && (x = pl_path_next_timeout(pc->pm)) < t) t = x;
        if (pc->media && (x = pl_media_next_timeout(pc->media)) < t) t = x;
        if (pc->alloc_pending && pc->alloc_deadline < t) t = pc->alloc_deadline;
        if (pc->sb_pending && pc->sb_deadline < t) t = pc->sb_deadline;
        if (pc->phase == PH_LIVE && pc->outgoing && !pc->session_up && pc->knocks &&
            pc->knocks < PL_PHONE_KNOCK_TRIES && pc->next_knock < t)
            t = pc->next_knock;
        if (pc->offers_left && pc->session_up && pc->next_offer < t) t = pc->next_offer;
    }
    return t;
}

/* ---- the user's side -------------------------------------------------------------------------------- */

static pcall *live(pl_phone *ph, uint32_t id)
{
    pcall *pc = by_id(ph, id);
    return pc && (pc->phase == PH_LIVE || pc->phase == PH_LOOKUP) ? pc : NULL;
}

static pl_phone_err map_call_err(pl_call_err e)
{
    switch (e) {
    case PL_CALL_OK: return PL_PHONE_OK;
    case PL_CALL_ERR_NO_CALL: return PL_PHONE_ERR_NO_CALL;
    case PL_CALL_ERR_BUSY: return PL_PHONE_ERR_BUSY;
    case PL_CALL_ERR_FULL: return PL_PHONE_ERR_FULL;
    case PL_CALL_ERR_NOMEM: return PL_PHONE_ERR_NOMEM;
    default: return PL_PHONE_ERR_STATE;
    }
}

pl_phone_err pl_phone_dial(pl_phone *ph, const char *name, pl_time now, uint32_t *id)
{
    ph->now = now;
    char norm[PL_NAME_MAX + 1];
    if (!name || pl_name_normalize(name, norm) != PL_NAME_OK) return PL_PHONE_ERR_BAD_NAME;
    if (strcmp(norm, ph->own_cert.name) == 0) return PL_PHONE_ERR_SELF;
    for (int i = 0; i < SLOTS; i++) {
        pcall *pc = &ph->calls[i];
        if (pc->phase == PH_LIVE && pc->state == PL_CALL_RINGING && strcmp(pc->name, norm) == 0) {
            *id = pc->id;
            return map_call_err(pl_call_answer(ph->engine, pc->handle, now));
        }
    }
    if (!ph->multi_call && (count_phase(ph, PH_LOOKUP) || count_phase(ph, PH_LIVE))) return PL_PHONE_ERR_BUSY;
    if (pl_node_get_status(ph->node).state != PL_NODE_ATTACHED) return PL_PHONE_ERR_OFFLINE;
    pcall *pc = new_call(ph, PH_LOOKUP);
    if (!pc) return PL_PHONE_ERR_FULL;
    if (pl_dirc_lookup(pl_node_directory(ph->node), norm, now, &pc->lookup_id) != PL_DIRC_OK) {
        memset(pc, 0, sizeof *pc);
        return PL_PHONE_ERR_FULL;
    }
    snprintf(pc->name, sizeof pc->name, "%s", norm);
    pc->outgoing = true;
    pc->dialed = now;
    ph->stats.dials++;
    *id = pc->id;
    return PL_PHONE_OK;
}

pl_phone_err pl_phone_answer(pl_phone *ph, uint32_t id, pl_time now)
{
    ph->now = now;
    pcall *pc = live(ph, id);
    if (!pc || !pc->handle) return PL_PHONE_ERR_NO_CALL;
    return map_call_err(pl_call_answer(ph->engine, pc->handle, now));
}

pl_phone_err pl_phone_reject(pl_phone *ph, uint32_t id, pl_time now)
{
    ph->now = now;
    pcall *pc = live(ph, id);
    if (!pc || !pc->handle) return PL_PHONE_ERR_NO_CALL;
    return map_call_err(pl_call_reject(ph->engine, pc->handle, PL_CALL_REJECT_DECLINED, now));
}

pl_phone_err pl_phone_hangup(pl_phone *ph, uint32_t id, pl_time now)
{
    ph->now = now;
    pcall *pc = live(ph, id);
    if (!pc) return PL_PHONE_ERR_NO_CALL;
    if (pc->phase == PH_LOOKUP) {
        end_early(ph, pc, PL_CALL_END_CANCELLED, true);
        return PL_PHONE_OK;
    }
    return map_call_err(pl_call_hangup(ph->engine, pc->handle, now));
}

pl_phone_err pl_phone_hold(pl_phone *ph, uint32_t id, pl_time now)
{
    ph->now = now;
    pcall *pc = live(ph, id);
    if (!pc || !pc->handle) return PL_PHONE_ERR_NO_CALL;
    return map_call_err(pl_call_hold(ph->engine, pc->handle, now));
}

pl_phone_err pl_phone_resume(pl_phone *ph, uint32_t id, pl_time now)
{
    ph->now = now;
    pcall *pc = live(ph, id);
    if (!pc || !pc->handle) return PL_PHONE_ERR_NO_CALL;
    return map_call_err(pl_call_resume(ph->engine, pc->handle, now));
}

pl_phone_err pl_phone_mute(pl_phone *ph, uint32_t id, bool mute, pl_time now)
{
    ph->now = now;
    pcall *pc = live(ph, id);
    if (!pc) return PL_PHONE_ERR_NO_CALL;
    pc->muted = mute;
    if (pc->handle) pl_call_set_mute(ph->engine, pc->handle, mute);
    if (pc->media) pl_media_set_mute(pc->media, mute);
    return PL_PHONE_OK;
}

bool pl_phone_audio(pl_phone *ph, uint32_t id, const int16_t *in, int16_t *out, pl_time now)
{
    ph->now = now;
    pcall *pc = by_id(ph, id);
    if (!pc || pc->phase != PH_LIVE || !pc->media) {
        if (out) memset(out, 0, PL_VOICE_FRAME * sizeof *out);
        return false;
    }
    static const int16_t silence[PL_VOICE_FRAME];
    /* On hold the stream drops the frame but its clock runs on. */
    pl_media_capture(pc->media, in ? in : silence, now);
    int16_t scratch[PL_VOICE_FRAME];
    pl_media_pull(pc->media, out ? out : scratch, now);
    return pc->media_on;
}

bool pl_phone_pull(pl_phone *ph, uint32_t id, int16_t *out, pl_time now)
{
    ph->now = now;
    pcall *pc = by_id(ph, id);
    if (!pc || pc->phase != PH_LIVE || !pc->media) {
        memset(out, 0, PL_VOICE_FRAME * sizeof *out);
        return false;
    }
    pl_media_pull(pc->media, out, now);
    return pc->media_on;
}

bool pl_phone_capture(pl_phone *ph, uint32_t id, const int16_t *in, pl_time now)
{
    ph->now = now;
    pcall *pc = by_id(ph, id);
    if (!pc || pc->phase != PH_LIVE || !pc->media) return false;
    static const int16_t silence[PL_VOICE_FRAME];
    pl_media_capture(pc->media, in ? in : silence, now);
    return pc->media_on;
}

pl_phone_err pl_phone_set_multi_call(pl_phone *ph, bool on)
{
    if (pl_call_set_call_waiting(ph->engine, on) != PL_CALL_OK) return PL_PHONE_ERR_STATE;
    ph->multi_call = on;
    return PL_PHONE_OK;
}

bool pl_phone_get_info(const pl_phone *ph, uint32_t id, pl_phone_call_info *info)
{
    const pcall *pc = by_id_const(ph, id);
    if (!pc || pc->phase == PH_PREPARED) return false;
    fill_info(ph, pc, info);
    return true;
}

size_t pl_phone_list(const pl_phone *ph, uint32_t *ids, size_t max)
{
    size_t n = 0;
    for (int i = 0; i < SLOTS && n < max; i++)
        if (ph->calls[i].phase != PH_FREE && ph->calls[i].phase != PH_PREPARED) ids[n++] = ph->calls[i].id;
    return n;
}

pl_phone_stats pl_phone_get_stats(const pl_phone *ph) { return ph->stats; }
pl_call *pl_phone_engine(pl_phone *ph) { return ph->engine; }

/* ---- set-up ------------------------------------------------------------------------------------------------ */

pl_phone_err pl_phone_new(pl_phone **out, const pl_phone_config *cfg, const pl_phone_io *io, pl_link *link,
                          pl_node *node)
{
    *out = NULL;
    if (!cfg || !cfg->identity || !cfg->cert || !cfg->cert_len || cfg->cert_len > PL_CERT_MAX_SIZE || !cfg->rng ||
        !io || !io->send_datagram || !link || !node)
        return PL_PHONE_ERR_CONFIG;
    const pl_mem *mem = cfg->mem ? cfg->mem : pl_mem_system();
    pl_phone *ph = mem->calloc(mem->ctx, 1, sizeof *ph);
    if (!ph) return PL_PHONE_ERR_NOMEM;
    ph->id = *cfg->identity;
    memcpy(ph->cert, cfg->cert, cfg->cert_len);
    ph->cert_len = cfg->cert_len;
    memcpy(ph->ca_pk, cfg->ca_pk, 32);
    ph->rng = cfg->rng;
    ph->mem = mem;
    ph->cfg = *cfg;
    ph->cfg.identity = NULL;
    ph->cfg.cert = NULL;
    ph->io = *io;
    ph->link = link;
    ph->node = node;
    pl_phone_err err = PL_PHONE_OK;
    if (pl_cert_decode(&ph->own_cert, ph->cert, ph->cert_len) != PL_CERT_OK) err = PL_PHONE_ERR_CONFIG;
    pl_call_config cc = {.rng = cfg->rng,
                         .mem = mem,
                         .max_calls = PL_PHONE_MAX_CALLS + 8, /* live calls and a few that ended */
                         .ring_timeout = cfg->ring_timeout,
                         .silence_timeout = cfg->silence_timeout,
                         .auto_answer = cfg->auto_answer};
    memcpy(cc.own_pk, ph->id.sign_pk, 32);
    pl_call_io cio = {ph, engine_send, engine_event, engine_admit};
    if (!err) {
        pl_call_err ce = pl_call_new(&ph->engine, &cc, &cio);
        if (ce) err = ce == PL_CALL_ERR_NOMEM ? PL_PHONE_ERR_NOMEM : PL_PHONE_ERR_CONFIG;
    }
    if (!err && pl_env_seen_init(&ph->seen, 256, mem, cfg->rng) != PL_ENV_OK) err = PL_PHONE_ERR_NOMEM;
    if (err) {
        pl_phone_free(ph);
        return err;
    }
    *out = ph;
    return PL_PHONE_OK;
}

void pl_phone_free(pl_phone *ph)
{
    if (!ph) return;
    const pl_mem *mem = ph->mem;
    for (int i = 0; i < SLOTS; i++) {
        pcall *pc = &ph->calls[i];
        if (pc->media) pl_media_free(pc->media);
        if (pc->pm) pl_path_free(pc->pm);
    }
    if (ph->engine) pl_call_free(ph->engine);
    if (ph->seen.e) pl_env_seen_free(&ph->seen);
    sodium_memzero(ph, sizeof *ph);
    mem->free(mem->ctx, ph);
}

/* ---- names ------------------------------------------------------------------------------------------------- */

const char *pl_phone_end_name(uint8_t reason)
{
    switch (reason) {
    case PL_PHONE_END_NOT_FOUND: return "no such user";
    case PL_PHONE_END_OFFLINE: return "unreachable (offline)";
    case PL_PHONE_END_NO_DIRECTORY: return "unreachable (the directory did not answer)";
    case PL_PHONE_END_KEY_CHANGED: return "refused: the user's key changed";
    case PL_PHONE_END_SELF: return "cannot call oneself";
    case PL_PHONE_END_FAILED: return "failed (no room for the call)";
    case PL_PHONE_END_MERGED: return "merged with the incoming call";
    default: return pl_call_end_name((pl_call_end_reason)reason);
    }
}

const char *pl_phone_strerror(pl_phone_err err)
{
    switch (err) {
    case PL_PHONE_OK: return "ok";
    case PL_PHONE_ERR_CONFIG: return "bad phone configuration";
    case PL_PHONE_ERR_NOMEM: return "out of memory";
    case PL_PHONE_ERR_BAD_NAME: return "not a valid user name";
    case PL_PHONE_ERR_OFFLINE: return "not attached to a supernode";
    case PL_PHONE_ERR_FULL: return "too many calls";
    case PL_PHONE_ERR_NO_CALL: return "no such call";
    case PL_PHONE_ERR_STATE: return "not possible in the call's state";
    case PL_PHONE_ERR_BUSY: return "already in a call";
    case PL_PHONE_ERR_SELF: return "cannot call oneself";
    }
    return "unknown phone error";
}
