/*
 * supernode.c - the nodes attached to a supernode (supernode.h).
 *
 * Clients live in a growable array indexed by key (keymap.h). Instead of a
 * timer per client, a sweep walks a tenth of the table each second, so a
 * supernode with 200,000 clients spends its timer work evenly and notices a
 * silent client within a few seconds of its deadline.
 */
#include "supernode.h"

#include <sodium.h>
#include <string.h>

#include "keymap.h"

#define SWEEP_INTERVAL PL_SEC
#define SWEEP_FRACTION 10

enum { CLIENT_FREE = 0, CLIENT_CHALLENGED, CLIENT_ATTACHED };

typedef struct client {
    uint8_t state;
    uint8_t pk[32];
    char name[PL_NAME_MAX + 1];
    pl_addr addr;
    uint8_t nonce[PL_OVL_NONCE_SIZE];
    pl_time since;      /* challenged or attached at */
    pl_time last_heard;
    pl_ovl_attach hello;
    pl_addr told;       /* the address last told to the client */
    bool qualified;     /* a probe from another supernode reached it */
    bool asked_promote;
    uint8_t probe_tries;
    pl_time probe_due;  /* 0: no probe planned */
    uint8_t probe_nonce[PL_OVL_PROBE_NONCE];
} client;

struct pl_super {
    pl_identity id;
    const pl_rng *rng;
    const pl_mem *mem;
    pl_super_io io;
    uint32_t max_clients;
    uint16_t keepalive_s;

    client *clients;
    uint32_t cap, high;  /* allocated; slots ever used (free ones below are on the list) */
    uint32_t *free_list;
    uint32_t n_free;
    pl_keymap by_key;
    uint32_t sweep_at;
    pl_time next_sweep;

    pl_ovl_peer standby[2];
    uint8_t n_standby;
    pl_ovl_peer hosts[PL_OVL_MAX_PEERS];
    uint8_t n_hosts;
    pl_ovl_peer redirects[PL_OVL_MAX_PEERS];
    uint8_t n_redirects;

    pl_addr self_addr;
    uint32_t min_uptime_s, min_kbps, min_memory_mb, max_kbps, traffic_kbps;
    pl_time next_promote;
    uint8_t promoting[32]; /* the client last asked to become a supernode */
    bool promoting_pending;
    pl_time probe_window;  /* probes sent for others in the current second */
    uint32_t probes_in_window;
    pl_dir *dir;
    pl_mbox *mbox;       /* NULL: no mailbox */
    pl_members *members; /* NULL: membership given by the driver */
    pl_time now;         /* of the input being handled: membership's sends carry no time */
    pl_callsvc *calls;   /* relay and rendezvous (callsvc.h) */
    pl_super_stats stats;
};

/* ---- the client table ------------------------------------------------------------- */

static client *find(const pl_super *s, const uint8_t pk[32])
{
    uint32_t i;
    return pl_keymap_get(&s->by_key, pk, &i) ? &s->clients[i] : NULL;
}

static client *add(pl_super *s, const uint8_t pk[32])
{
    uint32_t i;
    if (s->n_free > 0) {
        i = s->free_list[--s->n_free];
    } else {
        if (s->high == s->cap) {
            uint32_t cap = s->cap ? 2 * s->cap : 64;
            if (cap > s->max_clients) cap = s->max_clients;
            if (cap <= s->cap) return NULL;
            client *grown = s->mem->calloc(s->mem->ctx, cap, sizeof *grown);
            uint32_t *fl = s->mem->calloc(s->mem->ctx, cap, sizeof *fl);
            if (!grown || !fl) {
                if (grown) s->mem->free(s->mem->ctx, grown);
                if (fl) s->mem->free(s->mem->ctx, fl);
                return NULL;
            }
            if (s->clients) {
                memcpy(grown, s->clients, s->cap * sizeof *grown);
                memcpy(fl, s->free_list, s->n_free * sizeof *fl);
                s->mem->free(s->mem->ctx, s->clients);
                s->mem->free(s->mem->ctx, s->free_list);
            }
            s->clients = grown;
            s->free_list = fl;
            s->cap = cap;
        }
        i = s->high++;
    }
    if (!pl_keymap_put(&s->by_key, pk, i)) {
        s->free_list[s->n_free++] = i;
        return NULL;
    }
    client *c = &s->clients[i];
    memset(c, 0, sizeof *c);
    memcpy(c->pk, pk, 32);
    return c;
}

static void forget(pl_super *s, client *c)
{
    if (c->qualified) s->stats.qualified--;
    if (c->state == CLIENT_ATTACHED) s->stats.clients--;
    else if (c->state == CLIENT_CHALLENGED) s->stats.challenged--;
    pl_keymap_remove(&s->by_key, c->pk);
    s->free_list[s->n_free++] = (uint32_t)(c - s->clients);
    memset(c, 0, sizeof *c);
}

static void emit(pl_super *s, pl_super_event_type type, const client *c, pl_time now)
{
    if (!s->io.event) return;
    pl_super_event ev = {type, c->pk, c->name, &c->addr, now};
    s->io.event(s->io.ctx, &ev);
}

static void reply(pl_super *s, const uint8_t pk[32], const pl_addr *to, const uint8_t *msg, size_t len, pl_time now)
{
    if (len) s->io.send(s->io.ctx, pk, to, msg, len, now);
}

/* Up to max live supernodes other than this one, from a random place in
 * the membership table. */
static uint8_t sample_members(pl_super *s, pl_ovl_peer *out, uint8_t max)
{
    uint32_t total = pl_members_count(s->members);
    if (!total || !max) return 0;
    uint32_t start = (uint32_t)pl_rng_below(s->rng, total), cursor = start;
    uint8_t n = 0;
    pl_member_info info;
    for (uint32_t seen = 0; seen < total && n < max; seen++) {
        if (!pl_members_next(s->members, &cursor, &info)) {
            cursor = 0;
            if (!pl_members_next(s->members, &cursor, &info)) break;
        }
        if (info.self || info.state != PL_MEMBER_ALIVE) continue;
        memcpy(out[n].pk, info.pk, 32);
        out[n++].addr = info.addr;
    }
    return n;
}

static void refuse(pl_super *s, const uint8_t pk[32], const pl_addr *to, uint8_t reason, pl_time now)
{
    pl_ovl_refused r;
    memset(&r, 0, sizeof r);
    r.reason = reason;
    r.retry_after_s = reason == PL_OVL_REFUSED_OVERLOADED ? 60 : 0;
    if (reason == PL_OVL_REFUSED_OVERLOADED) {
        r.n_redirect = s->n_redirects;
        memcpy(r.redirect, s->redirects, s->n_redirects * sizeof *r.redirect);
        if (s->members) r.n_redirect += sample_members(s, r.redirect + r.n_redirect, 4);
    }
    uint8_t msg[8 + PL_OVL_MAX_PEERS * 52];
    reply(s, pk, to, msg, pl_ovl_encode_refused(msg, sizeof msg, &r), now);
}

/* ---- messages --------------------------------------------------------------------------- */

static void on_attach(pl_super *s, const uint8_t pk[32], const pl_cert *cert, const pl_addr *from,
                      const uint8_t *msg, size_t len, pl_time now)
{
    pl_ovl_attach hello;
    if (pl_ovl_decode_attach(&hello, msg, len)) return;
    if (hello.version != PL_OVL_VERSION) {
        s->stats.refused_version++;
        refuse(s, pk, from, PL_OVL_REFUSED_VERSION, now);
        return;
    }
    client *c = find(s, pk);
    if (!c) {
        bool over_bandwidth = s->max_kbps && s->traffic_kbps >= s->max_kbps;
        if (over_bandwidth || s->stats.clients + s->stats.challenged >= s->max_clients || !(c = add(s, pk))) {
            s->stats.refused_full++;
            refuse(s, pk, from, PL_OVL_REFUSED_OVERLOADED, now);
            return;
        }
    } else if (c->state == CLIENT_ATTACHED) {
        /* Attaching again (the node restarted): it proves itself again. */
        s->stats.clients--;
    } else {
        s->stats.challenged--;
    }
    c->state = CLIENT_CHALLENGED;
    s->stats.challenged++;
    snprintf(c->name, sizeof c->name, "%s", cert ? cert->name : "");
    c->addr = *from;
    c->hello = hello;
    c->since = now;
    s->rng->fill(s->rng->ctx, c->nonce, sizeof c->nonce);
    uint8_t out[64];
    reply(s, pk, from, out, pl_ovl_encode_challenge(out, sizeof out, c->nonce), now);
}

static void on_proof(pl_super *s, const uint8_t pk[32], const pl_cert *cert, const pl_addr *from, const uint8_t *msg,
                     size_t len, pl_time now)
{
    uint8_t sig[PL_OVL_SIG_SIZE], proof[PL_OVL_PROOF_SIZE];
    client *c = find(s, pk);
    if (!c || c->state != CLIENT_CHALLENGED || pl_ovl_decode_proof(sig, msg, len)) return;
    pl_ovl_proof_bytes(proof, s->id.sign_pk, pk, c->nonce);
    /* The proof must verify under the key the certificate certifies. */
    if (!cert || memcmp(cert->sign_pk, pk, 32) != 0 ||
        crypto_sign_verify_detached(sig, proof, sizeof proof, cert->sign_pk) != 0) {
        s->stats.refused_proof++;
        forget(s, c);
        refuse(s, pk, from, PL_OVL_REFUSED_BAD_PROOF, now);
        return;
    }
    s->stats.challenged--;
    s->stats.clients++;
    s->stats.attaches++;
    c->state = CLIENT_ATTACHED;
    c->since = c->last_heard = now;
    c->addr = *from;
    sodium_memzero(c->nonce, sizeof c->nonce);

    pl_ovl_attach_ok ok;
    memset(&ok, 0, sizeof ok);
    ok.keepalive_s = s->keepalive_s;
    ok.observed = *from;
    ok.observed.transport = PL_ADDR_UDP;
    /* Standbys: the ring's choice for this client when membership is
     * known, so that the clients of a lost supernode spread out; else the
     * configured ones. */
    ok.n_standby = (uint8_t)pl_dir_standby_for(s->dir, pk, ok.standby, 2);
    for (uint8_t i = 0; i < s->n_standby && ok.n_standby == 0; i++)
        if (memcmp(s->standby[i].pk, pk, 32) != 0) ok.standby[ok.n_standby++] = s->standby[i];
    c->told = ok.observed;
    for (uint8_t i = 0; i < s->n_hosts; i++)
        if (memcmp(s->hosts[i].pk, pk, 32) != 0) ok.hosts[ok.n_hosts++] = s->hosts[i];
    /* With gossip, a random sample of the live supernodes, so that host
     * caches spread over all of them rather than the bootstrap few. */
    if (s->members) ok.n_hosts += sample_members(s, ok.hosts + ok.n_hosts, PL_OVL_MAX_PEERS - ok.n_hosts);
    uint8_t out[16 + 18 * 52 + 32];
    reply(s, pk, from, out, pl_ovl_encode_attach_ok(out, sizeof out, &ok), now);
    /* A client that offers to serve and reports enough uptime, bandwidth
     * and memory gets probed, from another supernode, to see whether the
     * internet can reach it unasked. What it says is not taken on trust:
     * reachability is what counts, and it is measured. */
    const pl_ovl_attach *h = &c->hello;
    if ((h->flags & PL_OVL_ATTACH_F_CANDIDATE) && !(h->flags & PL_OVL_ATTACH_F_PRIVATE) && !from->transport &&
        h->uptime_s >= s->min_uptime_s && h->up_kbps >= s->min_kbps && h->down_kbps >= s->min_kbps &&
        h->memory_mb >= s->min_memory_mb)
        c->probe_due = now + PL_SUPER_PROBE_AFTER;
    emit(s, PL_SUPER_EV_CLIENT_ATTACHED, c, now);
}

/* ---- qualification and promotion ------------------------------------------------------------ */

static bool is_live_member(pl_super *s, const uint8_t pk[32])
{
    pl_member_info info;
    return s->members && pl_members_find(s->members, pk, &info) && !info.self && info.state == PL_MEMBER_ALIVE;
}

/* Another supernode asks us to probe one of its clients. Only members are
 * heard, and only so many a second: a probe is a datagram to an address of
 * someone else's choosing, so it must never become a flood. */
static void on_probe_request(pl_super *s, const uint8_t pk[32], const uint8_t *msg, size_t len, pl_time now)
{
    pl_ovl_qualify q;
    if (!is_live_member(s, pk) || pl_ovl_decode_qualify(&q, msg, len) || q.type != PL_OVL_QUALIFY_PROBE) return;
    if (now - s->probe_window >= PL_SEC) {
        s->probe_window = now;
        s->probes_in_window = 0;
    }
    if (++s->probes_in_window > PL_SUPER_PROBE_RATE || !s->io.send_raw) {
        s->stats.probes_refused++;
        return;
    }
    uint8_t d[PL_OVL_PROBE_SIZE];
    pl_ovl_probe_datagram(d, q.nonce);
    q.target.transport = PL_ADDR_UDP;
    s->io.send_raw(s->io.ctx, &q.target, d, sizeof d, now);
    s->stats.probes_sent++;
}

/* Asks a random other supernode to probe client c. */
static void ask_probe(pl_super *s, client *c, pl_time now)
{
    pl_ovl_peer prober;
    if (sample_members(s, &prober, 1) != 1) {
        c->probe_due = now + PL_SUPER_PROBE_RETRY; /* nobody to ask yet */
        return;
    }
    pl_ovl_qualify q = {.type = PL_OVL_QUALIFY_PROBE, .target = c->addr};
    s->rng->fill(s->rng->ctx, c->probe_nonce, sizeof c->probe_nonce);
    memcpy(q.nonce, c->probe_nonce, sizeof q.nonce);
    uint8_t out[64];
    reply(s, prober.pk, &prober.addr, out, pl_ovl_encode_qualify(out, sizeof out, &q), now);
    s->stats.probes_asked++;
    c->probe_tries++;
    c->probe_due = c->probe_tries < PL_SUPER_PROBE_TRIES ? now + PL_SUPER_PROBE_RETRY : 0;
}

/* Full enough: ask one qualified client to help ("can you help me out?"). */
static void manage_load(pl_super *s, pl_time now)
{
    uint32_t high = s->max_clients * PL_SUPER_HIGH_WATER / 100;
    bool over_bandwidth = s->max_kbps && s->traffic_kbps >= s->max_kbps * PL_SUPER_HIGH_WATER / 100;
    if ((s->stats.clients < high && !over_bandwidth) || now < s->next_promote || !s->members) return;
    /* The scan below walks the whole client table: not at every tick of a
     * full supernode (hundreds a second with 200,000 sessions' timers),
     * only when someone qualified and at most once a second. */
    if (!s->stats.qualified) return;
    s->next_promote = now + PL_SEC;
    for (uint32_t i = 0; i < s->high; i++) {
        client *c = &s->clients[i];
        if (c->state != CLIENT_ATTACHED || !c->qualified || c->asked_promote) continue;
        pl_ovl_qualify q = {.type = PL_OVL_PROMOTE};
        memcpy(q.seeds[0].pk, s->id.sign_pk, 32);
        q.seeds[0].addr = s->self_addr;
        q.n = (uint8_t)(1 + sample_members(s, q.seeds + 1, 3));
        uint8_t out[8 + 4 * 52];
        reply(s, c->pk, &c->addr, out, pl_ovl_encode_qualify(out, sizeof out, &q), now);
        c->asked_promote = true;
        memcpy(s->promoting, c->pk, 32);
        s->promoting_pending = true;
        s->stats.promotions_asked++;
        s->next_promote = now + PL_SUPER_PROMOTE_COOLDOWN;
        return;
    }
}

/* Sends up to count clients (never `keep`) to another supernode. */
static uint32_t shed_to(pl_super *s, uint32_t count, const pl_ovl_peer *to, uint8_t n, const uint8_t *keep,
                        pl_time now);

bool pl_super_message(pl_super *s, const uint8_t pk[32], const pl_cert *cert, const pl_addr *from,
                      const uint8_t *msg, size_t len, pl_time now)
{
    if (len == 0) return false;
    switch (msg[0]) {
    case PL_OVL_ATTACH: on_attach(s, pk, cert, from, msg, len, now); return true;
    case PL_OVL_ATTACH_PROOF: on_proof(s, pk, cert, from, msg, len, now); return true;
    case PL_OVL_KEEPALIVE: {
        uint32_t seq;
        client *c = find(s, pk);
        if (!c || c->state != CLIENT_ATTACHED || pl_ovl_decode_keepalive(&seq, msg, len)) return true;
        s->stats.keepalives++;
        c->last_heard = now;
        c->addr = *from;
        pl_addr seen = *from;
        seen.transport = PL_ADDR_UDP;
        /* The address only when it changed: keepalives are most of an idle
         * node's traffic. */
        bool moved = !pl_addr_equal(&seen, &c->told);
        c->told = seen;
        uint8_t out[32];
        reply(s, pk, from, out, pl_ovl_encode_keepalive_ack(out, sizeof out, seq, moved ? &seen : NULL), now);
        return true;
    }
    case PL_OVL_DETACH: {
        client *c = find(s, pk);
        if (!c || pl_ovl_decode_detach(msg, len)) return true;
        bool was_attached = c->state == CLIENT_ATTACHED;
        client copy = *c;
        forget(s, c);
        if (was_attached) {
            s->stats.left++;
            pl_dir_client_gone(s->dir, pk, true, now);
            if (s->mbox) pl_mbox_client_gone(s->mbox, pk, now);
            emit(s, PL_SUPER_EV_CLIENT_LEFT, &copy, now);
        }
        if (s->io.close) s->io.close(s->io.ctx, pk, now);
        return true;
    }
    case PL_OVL_QUALIFY_PROBE: on_probe_request(s, pk, msg, len, now); return true;
    case PL_OVL_QUALIFY_SEEN: {
        pl_ovl_qualify q;
        client *c = find(s, pk);
        if (!c || c->state != CLIENT_ATTACHED || c->qualified || !c->probe_tries || pl_ovl_decode_qualify(&q, msg, len) ||
            q.type != PL_OVL_QUALIFY_SEEN || sodium_memcmp(q.nonce, c->probe_nonce, PL_OVL_PROBE_NONCE) != 0)
            return true;
        c->qualified = true;
        c->probe_due = 0;
        s->stats.qualified++;
        return true;
    }
    default: {
        if (msg[0] >= PL_MEMBERS_MSG_MIN && msg[0] <= PL_MEMBERS_MSG_MAX) {
            if (!s->members) return false;
            s->now = now;
            pl_members_receive(s->members, pk, from, msg, len, now);
            return true;
        }
        /* The directory and the mailbox: from an attached client, or from
         * a supernode (they check it is one). */
        const client *c = find(s, pk);
        bool attached = c && c->state == CLIENT_ATTACHED;
        if (pl_callsvc_claims(msg[0])) return pl_callsvc_message(s->calls, pk, attached, msg, len, now);
        if (msg[0] >= 0x70 && msg[0] <= 0x7f) {
            if (!s->mbox) return false;
            return attached ? pl_mbox_client_message(s->mbox, pk, cert, from, msg, len, now)
                            : pl_mbox_peer_message(s->mbox, pk, from, msg, len, now);
        }
        if (attached) return pl_dir_client_message(s->dir, pk, cert, from, msg, len, now);
        return pl_dir_peer_message(s->dir, pk, from, msg, len, now);
    }
    }
}

static void lose(pl_super *s, client *c, pl_time now)
{
    bool was_attached = c->state == CLIENT_ATTACHED;
    client copy = *c;
    forget(s, c);
    if (was_attached) {
        s->stats.lost++;
        pl_dir_client_gone(s->dir, copy.pk, true, now);
        if (s->mbox) pl_mbox_client_gone(s->mbox, copy.pk, now);
        emit(s, PL_SUPER_EV_CLIENT_LOST, &copy, now);
    }
}

void pl_super_peer_down(pl_super *s, const uint8_t pk[32], pl_time now)
{
    client *c = find(s, pk);
    if (c) lose(s, c, now);
}

void pl_super_tick(pl_super *s, pl_time now)
{
    s->now = now;
    if (s->members) pl_members_tick(s->members, now);
    pl_dir_tick(s->dir, now);
    if (s->mbox) pl_mbox_tick(s->mbox, now);
    pl_callsvc_tick(s->calls, now);
    if (now < s->next_sweep) return;
    s->next_sweep = now + SWEEP_INTERVAL;
    if (s->high == 0) return;
    pl_time loss_after = (pl_time)(PL_SUPER_LOSS_FACTOR * s->keepalive_s * PL_SEC);
    uint32_t n = s->high / SWEEP_FRACTION + 1;
    for (uint32_t k = 0; k < n; k++) {
        if (s->sweep_at >= s->high) s->sweep_at = 0;
        client *c = &s->clients[s->sweep_at++];
        if (c->state == CLIENT_CHALLENGED && now - c->since > PL_SUPER_CHALLENGE_LIFE) forget(s, c);
        else if (c->state == CLIENT_ATTACHED && now - c->last_heard > loss_after) lose(s, c, now);
        else if (c->state == CLIENT_ATTACHED && c->probe_due && now >= c->probe_due && !c->qualified)
            ask_probe(s, c, now);
    }
    manage_load(s, now);
}

pl_time pl_super_next_timeout(const pl_super *s)
{
    pl_time t = s->high ? s->next_sweep : PL_TIME_NEVER;
    pl_time d = pl_dir_next_timeout(s->dir);
    if (d < t) t = d;
    if (s->mbox && (d = pl_mbox_next_timeout(s->mbox)) < t) t = d;
    if (s->members && (d = pl_members_next_timeout(s->members)) < t) t = d;
    if ((d = pl_callsvc_next_timeout(s->calls)) < t) t = d;
    return t;
}

/* ---- gossip membership -------------------------------------------------------------------- */

static void members_send(void *ctx, const uint8_t to_pk[32], const pl_addr *to_addr, const uint8_t *msg, size_t len)
{
    pl_super *s = ctx;
    s->io.send(s->io.ctx, to_pk, to_addr, msg, len, s->now);
}

/* What membership learns is what the directory and the mailbox place
 * records by. */
static void members_event(void *ctx, const pl_members_event *ev)
{
    pl_super *s = ctx;
    const pl_member_info *m = ev->info;
    if (!m || m->self) return;
    switch (ev->type) {
    case PL_MEMBERS_EV_UP:
    case PL_MEMBERS_EV_ADDRESS:
        pl_dir_member_up(s->dir, m->pk, &m->addr, ev->now);
        if (s->mbox) pl_mbox_member_up(s->mbox, m->pk, &m->addr, ev->now);
        /* The client we asked for help is a supernode now: send it some of
         * our clients (never itself: it is still our client as a user). */
        if (ev->type == PL_MEMBERS_EV_UP && s->promoting_pending && memcmp(m->pk, s->promoting, 32) == 0) {
            s->promoting_pending = false;
            uint32_t target = s->max_clients * PL_SUPER_SHED_TO / 100;
            pl_ovl_peer to;
            memcpy(to.pk, m->pk, 32);
            to.addr = m->addr;
            if (s->stats.clients > target) shed_to(s, s->stats.clients - target, &to, 1, m->pk, ev->now);
        }
        break;
    case PL_MEMBERS_EV_DOWN:
        pl_dir_member_down(s->dir, m->pk, ev->now);
        if (s->mbox) pl_mbox_member_down(s->mbox, m->pk, ev->now);
        break;
    case PL_MEMBERS_EV_SUSPECT:
    case PL_MEMBERS_EV_CLEARED:
    case PL_MEMBERS_EV_SYNCED: break;
    }
}

/* The directory asks where a supernode is: membership knows. */
static bool members_addr_of(void *ctx, const uint8_t pk[32], pl_addr *out)
{
    pl_super *s = ctx;
    pl_member_info info;
    if (!pl_members_find(s->members, pk, &info)) return false;
    *out = info.addr;
    return info.state == PL_MEMBER_ALIVE || info.state == PL_MEMBER_SUSPECT;
}

void pl_super_add_known(pl_super *s, const uint8_t pk[32], const pl_addr *addr, pl_time now)
{
    if (!s->members) {
        pl_super_member_up(s, pk, addr, now);
        return;
    }
    s->now = now;
    if (pl_members_add_known(s->members, pk, addr, now) == PL_MEMBERS_OK) {
        pl_dir_member_up(s->dir, pk, addr, now);
        if (s->mbox) pl_mbox_member_up(s->mbox, pk, addr, now);
    }
}

pl_members_err pl_super_join(pl_super *s, pl_time now)
{
    if (!s->members) return PL_MEMBERS_OK;
    s->now = now;
    return pl_members_join(s->members, now);
}

void pl_super_leave(pl_super *s, pl_time now)
{
    if (!s->members) return;
    s->now = now;
    pl_members_leave(s->members, now);
}

pl_members *pl_super_members(pl_super *s) { return s->members; }

uint8_t pl_super_sample(pl_super *s, pl_ovl_peer *out, uint8_t max) { return s->members ? sample_members(s, out, max) : 0; }

void pl_super_member_up(pl_super *s, const uint8_t pk[32], const pl_addr *addr, pl_time now)
{
    pl_dir_member_up(s->dir, pk, addr, now);
    if (s->mbox) pl_mbox_member_up(s->mbox, pk, addr, now);
}

void pl_super_member_down(pl_super *s, const uint8_t pk[32], pl_time now)
{
    pl_dir_member_down(s->dir, pk, now);
    if (s->mbox) pl_mbox_member_down(s->mbox, pk, now);
}

void pl_super_set_crl(pl_super *s, const pl_crl *crl)
{
    pl_dir_set_crl(s->dir, crl);
    if (s->mbox) pl_mbox_set_crl(s->mbox, crl);
}

pl_dir *pl_super_directory(pl_super *s) { return s->dir; }
pl_mbox *pl_super_mailbox(pl_super *s) { return s->mbox; }
pl_callsvc *pl_super_calls(pl_super *s) { return s->calls; }

static bool calls_attached(void *ctx, const uint8_t pk[32]) { return pl_super_client(ctx, pk, NULL); }
static bool calls_member(void *ctx, const uint8_t pk[32], pl_addr *addr)
{
    pl_super *s = ctx;
    return pl_dir_is_member(s->dir, pk, addr);
}

static bool dir_send(void *ctx, const uint8_t pk[32], const pl_addr *addr, const uint8_t *msg, size_t len,
                     pl_time now)
{
    pl_super *s = ctx;
    return s->io.send(s->io.ctx, pk, addr, msg, len, now);
}

/* ---- configuration ---------------------------------------------------------------------------- */

static void copy_peers(pl_ovl_peer *dst, uint8_t *n_dst, uint8_t max, const pl_ovl_peer *src, uint8_t n)
{
    *n_dst = n < max ? n : max;
    if (*n_dst) memcpy(dst, src, *n_dst * sizeof *dst);
}

void pl_super_set_standby(pl_super *s, const pl_ovl_peer *p, uint8_t n) { copy_peers(s->standby, &s->n_standby, 2, p, n); }
void pl_super_set_hosts(pl_super *s, const pl_ovl_peer *p, uint8_t n)
{
    copy_peers(s->hosts, &s->n_hosts, PL_OVL_MAX_PEERS, p, n);
}
void pl_super_set_redirects(pl_super *s, const pl_ovl_peer *p, uint8_t n)
{
    copy_peers(s->redirects, &s->n_redirects, PL_OVL_MAX_PEERS, p, n);
}

static uint32_t shed_to(pl_super *s, uint32_t count, const pl_ovl_peer *to, uint8_t n, const uint8_t *keep,
                        pl_time now)
{
    pl_ovl_redirect r;
    memset(&r, 0, sizeof r);
    copy_peers(r.to, &r.n, PL_OVL_MAX_PEERS, to, n);
    uint8_t msg[4 + PL_OVL_MAX_PEERS * 52];
    size_t len = pl_ovl_encode_redirect(msg, sizeof msg, &r);
    if (len == 0) return 0;
    uint32_t told = 0;
    for (uint32_t i = 0; i < s->high && told < count; i++) {
        client *c = &s->clients[i];
        if (c->state != CLIENT_ATTACHED || (keep && memcmp(c->pk, keep, 32) == 0)) continue;
        reply(s, c->pk, &c->addr, msg, len, now);
        client copy = *c;
        forget(s, c);
        s->stats.left++;
        s->stats.shed++;
        /* Moving, not gone: no "offline" for its watchers. */
        pl_dir_client_gone(s->dir, copy.pk, false, now);
        if (s->mbox) pl_mbox_client_gone(s->mbox, copy.pk, now);
        emit(s, PL_SUPER_EV_CLIENT_LEFT, &copy, now);
        told++;
    }
    return told;
}

uint32_t pl_super_shed(pl_super *s, uint32_t count, const pl_ovl_peer *to, uint8_t n, pl_time now)
{
    return shed_to(s, count, to, n, NULL, now);
}

void pl_super_set_traffic(pl_super *s, uint32_t kbps) { s->traffic_kbps = kbps; }

bool pl_super_client_qualified(const pl_super *s, const uint8_t pk[32])
{
    const client *c = find(s, pk);
    return c && c->state == CLIENT_ATTACHED && c->qualified;
}

pl_super_err pl_super_new(pl_super **out, const pl_super_config *cfg, const pl_super_io *io)
{
    *out = NULL;
    if (!cfg || !cfg->identity || !cfg->rng || !io || !io->send) return PL_SUPER_ERR_CONFIG;
    const pl_mem *mem = cfg->mem ? cfg->mem : pl_mem_system();
    pl_super *s = mem->calloc(mem->ctx, 1, sizeof *s);
    if (!s) return PL_SUPER_ERR_NOMEM;
    s->id = *cfg->identity;
    s->rng = cfg->rng;
    s->mem = mem;
    s->io = *io;
    s->max_clients = cfg->max_clients ? cfg->max_clients : PL_SUPER_DEFAULT_MAX_CLIENTS;
    s->keepalive_s = cfg->keepalive_s ? cfg->keepalive_s : PL_SUPER_DEFAULT_KEEPALIVE_S;
    s->self_addr = cfg->self_addr;
    s->min_uptime_s = cfg->min_uptime_s ? cfg->min_uptime_s : 600;
    s->min_kbps = cfg->min_kbps ? cfg->min_kbps : 1000;
    s->min_memory_mb = cfg->min_memory_mb ? cfg->min_memory_mb : 256;
    s->max_kbps = cfg->max_kbps;
    pl_keymap_init(&s->by_key, mem, cfg->rng);
    pl_dir_config dc = {.self_pk = s->id.sign_pk, .rng = cfg->rng, .mem = mem, .replicas = cfg->replicas,
                        .vpoints = cfg->vpoints, .shared_ring = cfg->shared_ring};
    memcpy(dc.ca_pk, cfg->ca_pk, 32);
    if (cfg->membership) {
        pl_members_config mcfg;
        if (cfg->members) mcfg = *cfg->members;
        else memset(&mcfg, 0, sizeof mcfg);
        mcfg.identity = cfg->identity;
        mcfg.addr = cfg->self_addr;
        mcfg.rng = cfg->rng;
        mcfg.mem = mem;
        pl_members_io mio = {s, members_send, members_event};
        if (pl_members_new(&s->members, &mcfg, &mio, 0) != PL_MEMBERS_OK) {
            pl_super_free(s);
            return PL_SUPER_ERR_CONFIG;
        }
    }
    pl_dir_io dio = {s, dir_send, s->members ? members_addr_of : NULL};
    if (pl_dir_new(&s->dir, &dc, &dio) != PL_DIRECTORY_OK) {
        pl_super_free(s);
        return PL_SUPER_ERR_NOMEM;
    }
    pl_dir_member_up(s->dir, s->id.sign_pk, &cfg->self_addr, 0);
    if (!cfg->no_mailbox) {
        pl_mbox_config mc = {.self_pk = s->id.sign_pk, .self_addr = cfg->self_addr, .rng = cfg->rng, .mem = mem,
                             .replicas = cfg->replicas, .vpoints = cfg->vpoints,
                             .max_bytes = cfg->mailbox_max_bytes};
        memcpy(mc.ca_pk, cfg->ca_pk, 32);
        pl_mbox_io mbio = {s, dir_send};
        if (pl_mbox_new(&s->mbox, &mc, &mbio) != PL_MBOX_E_OK) {
            pl_super_free(s);
            return PL_SUPER_ERR_NOMEM;
        }
        pl_mbox_member_up(s->mbox, s->id.sign_pk, &cfg->self_addr, 0);
    }
    pl_callsvc_config cc = {.rng = cfg->rng, .mem = mem, .no_relay = cfg->no_relay};
    memcpy(cc.self_pk, s->id.sign_pk, 32);
    cc.relay.udp_addr = cfg->relay_udp.family ? cfg->relay_udp : cfg->self_addr;
    cc.relay.udp_addr.transport = PL_ADDR_UDP;
    cc.relay.tcp_addr = cfg->relay_tcp;
    if (cc.relay.tcp_addr.family) cc.relay.tcp_addr.transport = PL_ADDR_TCP;
    pl_callsvc_io cio = {s, dir_send, calls_attached, calls_member};
    if (pl_callsvc_new(&s->calls, &cc, &cio) != PL_CALLSVC_OK) {
        pl_super_free(s);
        return PL_SUPER_ERR_NOMEM;
    }
    *out = s;
    return PL_SUPER_OK;
}

void pl_super_free(pl_super *s)
{
    if (!s) return;
    const pl_mem *mem = s->mem;
    if (s->clients) mem->free(mem->ctx, s->clients);
    if (s->free_list) mem->free(mem->ctx, s->free_list);
    pl_keymap_free(&s->by_key);
    pl_dir_free(s->dir);
    pl_mbox_free(s->mbox);
    pl_members_free(s->members);
    pl_callsvc_free(s->calls);
    sodium_memzero(s, sizeof *s);
    mem->free(mem->ctx, s);
}

pl_super_stats pl_super_get_stats(const pl_super *s) { return s->stats; }

static void info_of(const client *c, pl_super_client_info *out)
{
    memcpy(out->pk, c->pk, 32);
    memcpy(out->name, c->name, sizeof out->name);
    out->addr = c->addr;
    out->attached_at = c->since;
    out->last_heard = c->last_heard;
    out->hello = c->hello;
}

bool pl_super_client(const pl_super *s, const uint8_t pk[32], pl_super_client_info *out)
{
    const client *c = find(s, pk);
    if (!c || c->state != CLIENT_ATTACHED) return false;
    if (out) info_of(c, out);
    return true;
}

bool pl_super_next_client(const pl_super *s, size_t *cursor, pl_super_client_info *out)
{
    while (*cursor < s->high) {
        const client *c = &s->clients[(*cursor)++];
        if (c->state == CLIENT_ATTACHED) {
            info_of(c, out);
            return true;
        }
    }
    return false;
}

const char *pl_super_strerror(pl_super_err err)
{
    switch (err) {
    case PL_SUPER_OK: return "ok";
    case PL_SUPER_ERR_CONFIG: return "bad supernode configuration";
    case PL_SUPER_ERR_NOMEM: return "out of memory";
    }
    return "unknown supernode error";
}
