/*
 * node.c - attaching to a supernode and staying attached (node.h).
 */
#include "node.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BOOTSTRAP 32
/* A round may start over this many times for redirects before it must end
 * in a back-off, so two full supernodes cannot bounce a node between them. */
#define MAX_REDIRECTS_PER_ROUND 3

struct pl_node {
    pl_identity id;
    const pl_rng *rng;
    const pl_mem *mem;
    pl_node_io io;
    bool no_tcp, no_udp;
    bool udp_worked;      /* attached over UDP before: a silent supernode is dead, not blocked */
    pl_ovl_attach attach;
    pl_ovl_peer *bootstrap;
    size_t n_bootstrap;
    /* The host cache grows as the node hears of supernodes, up to
     * PL_NODE_HOST_CACHE_MAX, so a simulated million nodes stay small. */
    pl_node_host *hosts;
    size_t n_hosts, hosts_cap;

    pl_node_state state;

    /* ATTACHING: a round walks the candidates in order (redirects, standby,
     * host cache best first, bootstrap) without listing them: cand_index
     * counts positions in that sequence, and cand is the current one. */
    size_t cand_index;
    pl_ovl_peer cand;
    bool cand_tcp;
    pl_time attempt_deadline;
    uint8_t redirects_this_round;
    /* Supernodes to try first in the round (a redirect). */
    pl_ovl_peer preferred[PL_OVL_MAX_PEERS];
    uint8_t n_preferred;

    /* ATTACHED */
    pl_ovl_peer sn;
    bool sn_tcp;
    pl_addr observed;
    pl_ovl_peer standby[2];
    uint8_t n_standby;
    uint16_t keepalive_s;
    pl_time attached_since;
    pl_time ka_due;        /* when the next keepalive goes out */
    pl_time ka_retry_at;   /* when an unanswered one is sent again */
    uint32_t ka_seq;       /* the last keepalive sent */
    uint32_t ka_first_seq; /* the first of the unanswered ones */
    uint8_t ka_tries;      /* unanswered in a row; 0: none outstanding */

    /* WAITING */
    uint32_t failed_rounds;
    pl_time next_attempt;

    uint32_t attaches, losses;

    pl_dirc *dirc;   /* NULL without a certificate: attach only */
    pl_mboxc *mboxc; /* the same */
    uint8_t nat_mapping, nat_filtering, nat_flags;
    pl_addr host_addrs[PL_NODE_MAX_HOST_ADDRS];
    uint8_t n_host_addrs;
    pl_addr mapped; /* the port-mapped candidate (family 0: none) */
};

/* ---- events ------------------------------------------------------------------------- */

static void emit(pl_node *n, pl_node_event_type type, const pl_ovl_peer *sn, uint8_t refusal, pl_time now)
{
    if (!n->io.event) return;
    pl_node_event ev = {type, sn, refusal, &n->observed, NULL, NULL, NULL, now};
    n->io.event(n->io.ctx, &ev);
}

/* ---- the directory client's wiring ------------------------------------------------------ */

static bool dirc_send(void *ctx, const uint8_t *msg, size_t len, pl_time now)
{
    pl_node *n = ctx;
    if (n->state != PL_NODE_ATTACHED) return false;
    pl_addr to = n->sn.addr;
    to.transport = n->sn_tcp ? PL_ADDR_TCP : PL_ADDR_UDP;
    return n->io.send(n->io.ctx, n->sn.pk, &to, msg, len, now);
}

static void dirc_event(void *ctx, const pl_dirc_event *dev)
{
    pl_node *n = ctx;
    if (!n->io.event) return;
    pl_node_event ev = {PL_NODE_EV_DIRECTORY, &n->sn, 0, &n->observed, dev, NULL, NULL, dev->now};
    n->io.event(n->io.ctx, &ev);
}

static void mboxc_event(void *ctx, const pl_mboxc_event *mev)
{
    pl_node *n = ctx;
    if (!n->io.event) return;
    pl_node_event ev = {PL_NODE_EV_MAIL, &n->sn, 0, &n->observed, NULL, mev, NULL, mev->now};
    n->io.event(n->io.ctx, &ev);
}

static void send_keepalive(pl_node *n, pl_time now);

/* The directory got no answer: check the supernode now rather than at the
 * next keepalive, so an active user notices a dead supernode in seconds. */
static void dirc_suspect(void *ctx, pl_time now)
{
    pl_node *n = ctx;
    if (n->state == PL_NODE_ATTACHED && n->ka_tries == 0) send_keepalive(n, now);
}

/* What the node's record says: its supernode, and where it can be reached
 * (unless the user chose location privacy). */
static void where_now(const pl_node *n, pl_dirc_where *w)
{
    memset(w, 0, sizeof *w);
    w->n_supernodes = 1;
    memcpy(w->supernodes[0].pk, n->sn.pk, 32);
    w->supernodes[0].addr = n->sn.addr;
    w->supernodes[0].addr.transport = PL_ADDR_UDP;
    w->private_mode = (n->attach.flags & PL_OVL_ATTACH_F_PRIVATE) != 0;
    w->capabilities = n->attach.capabilities;
    w->nat_mapping = n->nat_mapping;
    w->nat_filtering = n->nat_filtering;
    w->nat_flags = n->nat_flags;
    if (w->private_mode) return;
    /* The port the home router forwards to us reaches us whatever its NAT
     * filters; when it is the address the supernode sees anyway (a NAT
     * that keeps ports), it replaces the server-reflexive candidate. */
    bool mapped = !n->sn_tcp && n->mapped.family;
    if (mapped) pl_node_candidate_mapped(&w->candidates[w->n_candidates++], &n->mapped);
    if (!n->sn_tcp && n->observed.family && !(mapped && pl_addr_equal(&n->mapped, &n->observed))) {
        pl_record_candidate *c = &w->candidates[w->n_candidates++];
        c->type = PL_CAND_SERVER_REFLEXIVE;
        c->transport = PL_TRANSPORT_UDP;
        c->priority = 100;
        c->addr = n->observed;
        c->addr.transport = PL_ADDR_UDP;
    }
    for (uint8_t i = 0; i < n->n_host_addrs && w->n_candidates < PL_RECORD_MAX_CANDIDATES; i++) {
        bool dup = false;
        for (uint8_t j = 0; j < w->n_candidates; j++) dup |= pl_addr_equal(&n->host_addrs[i], &w->candidates[j].addr);
        if (dup) continue;
        pl_record_candidate *c = &w->candidates[w->n_candidates++];
        c->type = PL_CAND_HOST;
        c->transport = PL_TRANSPORT_UDP;
        c->priority = 200;
        c->addr = n->host_addrs[i];
        c->addr.transport = PL_ADDR_UDP;
    }
}

static bool send_to(pl_node *n, const pl_ovl_peer *peer, bool tcp, const uint8_t *msg, size_t len, pl_time now)
{
    if (len == 0) return false;
    pl_addr to = peer->addr;
    to.transport = tcp ? PL_ADDR_TCP : PL_ADDR_UDP;
    return n->io.send(n->io.ctx, peer->pk, &to, msg, len, now);
}

static bool send_attach(pl_node *n, pl_time now)
{
    uint8_t msg[64];
    return send_to(n, &n->cand, n->cand_tcp, msg, pl_ovl_encode_attach(msg, sizeof msg, &n->attach), now);
}

static void close_peer(pl_node *n, const uint8_t pk[32], pl_time now)
{
    if (n->io.close) n->io.close(n->io.ctx, pk, now);
}

/* ---- the host cache --------------------------------------------------------------------- */

/* Better first: a recent success, then fewer failures in a row, then the
 * least recent failure. */
static int host_rank(const void *a, const void *b)
{
    const pl_node_host *x = a, *y = b;
    if (x->last_success != y->last_success) return x->last_success > y->last_success ? -1 : 1;
    if (x->failures != y->failures) return x->failures < y->failures ? -1 : 1;
    if (x->last_failure != y->last_failure) return x->last_failure < y->last_failure ? -1 : 1;
    return memcmp(x->peer.pk, y->peer.pk, 32);
}

static pl_node_host *find_host(pl_node *n, const uint8_t pk[32])
{
    for (size_t i = 0; i < n->n_hosts; i++)
        if (memcmp(n->hosts[i].peer.pk, pk, 32) == 0) return &n->hosts[i];
    return NULL;
}

/* Adds a supernode we heard of; when the cache is full the worst entry
 * makes room, unless the newcomer would rank below it. */
static pl_node_host *learn_host(pl_node *n, const pl_ovl_peer *peer)
{
    if (memcmp(peer->pk, n->id.sign_pk, 32) == 0) return NULL;
    pl_node_host *h = find_host(n, peer->pk);
    if (h) {
        h->peer.addr = peer->addr;
        return h;
    }
    pl_node_host fresh = {*peer, 0, 0, 0};
    if (n->n_hosts == n->hosts_cap && n->hosts_cap < PL_NODE_HOST_CACHE_MAX) {
        size_t cap = n->hosts_cap ? 2 * n->hosts_cap : 8;
        if (cap > PL_NODE_HOST_CACHE_MAX) cap = PL_NODE_HOST_CACHE_MAX;
        pl_node_host *grown = n->mem->calloc(n->mem->ctx, cap, sizeof *grown);
        if (grown) {
            if (n->hosts) memcpy(grown, n->hosts, n->n_hosts * sizeof *grown);
            n->mem->free(n->mem->ctx, n->hosts);
            n->hosts = grown;
            n->hosts_cap = cap;
        }
    }
    if (n->n_hosts < n->hosts_cap) {
        n->hosts[n->n_hosts] = fresh;
        return &n->hosts[n->n_hosts++];
    }
    if (n->n_hosts == 0) return NULL;
    qsort(n->hosts, n->n_hosts, sizeof *n->hosts, host_rank);
    pl_node_host *worst = &n->hosts[n->n_hosts - 1];
    if (host_rank(&fresh, worst) >= 0) return NULL;
    *worst = fresh;
    return worst;
}

static void host_result(pl_node *n, const pl_ovl_peer *peer, bool ok, pl_time now)
{
    pl_node_host *h = learn_host(n, peer);
    if (!h) return;
    if (ok) {
        h->last_success = now;
        h->failures = 0;
    } else {
        h->last_failure = now;
        h->failures++;
    }
}

/* ---- rounds of attempts ------------------------------------------------------------------ */

/* The candidate at position i of this round's sequence, or NULL past its
 * end. The host cache is sorted when the round starts. */
static const pl_ovl_peer *candidate_at(const pl_node *n, size_t i)
{
    if (i < n->n_preferred) return &n->preferred[i];
    i -= n->n_preferred;
    if (i < n->n_standby) return &n->standby[i];
    i -= n->n_standby;
    if (i < n->n_hosts) return &n->hosts[i].peer;
    i -= n->n_hosts;
    if (i < n->n_bootstrap) return &n->bootstrap[i];
    return NULL;
}

/* A supernode listed twice (standby and host cache, say) is tried once. */
static bool seen_earlier(const pl_node *n, size_t i, const uint8_t pk[32])
{
    for (size_t j = 0; j < i; j++)
        if (memcmp(candidate_at(n, j)->pk, pk, 32) == 0) return true;
    return false;
}

static void start_attempt(pl_node *n, pl_time now);

static void start_round(pl_node *n, pl_time now)
{
    if (n->hosts) qsort(n->hosts, n->n_hosts, sizeof *n->hosts, host_rank);
    n->cand_index = 0;
    n->state = PL_NODE_ATTACHING;
    start_attempt(n, now);
}

/* Every candidate failed: wait, doubling each round up to a minute, with a
 * random part so that nodes which failed together retry apart. */
static void back_off(pl_node *n, pl_time now)
{
    uint32_t shift = n->failed_rounds < 6 ? n->failed_rounds : 6;
    pl_time delay = PL_NODE_BACKOFF_FIRST << shift;
    if (delay > PL_NODE_BACKOFF_MAX) delay = PL_NODE_BACKOFF_MAX;
    n->failed_rounds++;
    n->n_preferred = 0;
    n->redirects_this_round = 0;
    n->state = PL_NODE_WAITING;
    n->next_attempt = now + delay / 2 + pl_rng_below(n->rng, delay / 2 + 1);
}

static void start_attempt(pl_node *n, pl_time now)
{
    for (const pl_ovl_peer *c; (c = candidate_at(n, n->cand_index)) != NULL; n->cand_index++) {
        if (memcmp(c->pk, n->id.sign_pk, 32) == 0 || seen_earlier(n, n->cand_index, c->pk)) continue;
        n->cand = *c;
        n->cand_tcp = n->no_udp;
        n->attempt_deadline = now + (n->cand_tcp ? PL_NODE_TCP_ATTEMPT : PL_NODE_UDP_ATTEMPT);
        if (send_attach(n, now)) return;
    }
    back_off(n, now);
}

/* The current attempt failed: try TCP if UDP was tried, else the next one. */
static void attempt_failed(pl_node *n, pl_time now)
{
    close_peer(n, n->cand.pk, now);
    /* TCP is for networks that block UDP. A node whose UDP worked before
     * tries TCP only once a whole round over UDP has failed (the network may
     * have changed); meanwhile a silent supernode is simply dead. */
    if (!n->cand_tcp && !n->no_tcp && (!n->udp_worked || n->failed_rounds > 0)) {
        n->cand_tcp = true;
        n->attempt_deadline = now + PL_NODE_TCP_ATTEMPT;
        if (send_attach(n, now)) return;
    }
    /* Recording the failure may reorder the host cache under the round's
     * feet; the round only moves forward, so at worst a supernode is tried
     * twice or skipped until the next round. */
    host_result(n, &n->cand, false, now);
    n->cand_index++;
    start_attempt(n, now);
}

static void attached(pl_node *n, const pl_ovl_attach_ok *ok, pl_time now)
{
    n->sn = n->cand;
    n->sn_tcp = n->cand_tcp;
    n->n_preferred = 0;
    n->redirects_this_round = 0;
    n->observed = ok->observed;
    n->n_standby = 0;
    for (uint8_t i = 0; i < ok->n_standby; i++)
        if (memcmp(ok->standby[i].pk, n->id.sign_pk, 32) != 0 && memcmp(ok->standby[i].pk, n->sn.pk, 32) != 0)
            n->standby[n->n_standby++] = ok->standby[i];
    n->keepalive_s = ok->keepalive_s;
    n->attached_since = now;
    n->ka_due = now + (pl_time)n->keepalive_s * PL_SEC;
    n->ka_tries = 0;
    n->failed_rounds = 0;
    if (!n->sn_tcp) n->udp_worked = true;
    n->state = PL_NODE_ATTACHED;
    n->attaches++;
    host_result(n, &n->sn, true, now);
    for (uint8_t i = 0; i < ok->n_hosts; i++) learn_host(n, &ok->hosts[i]);
    for (uint8_t i = 0; i < n->n_standby; i++) learn_host(n, &n->standby[i]);
    emit(n, PL_NODE_EV_ATTACHED, &n->sn, 0, now);
    emit(n, PL_NODE_EV_HOSTS, &n->sn, 0, now);
    if (n->dirc) {
        pl_dirc_where w;
        where_now(n, &w);
        pl_dirc_attached(n->dirc, &w, now);
    }
    if (n->mboxc) pl_mboxc_attached(n->mboxc, n->sn.pk, now);
}

static void lost(pl_node *n, pl_time now)
{
    pl_ovl_peer gone = n->sn;
    n->losses++;
    n->state = PL_NODE_ATTACHING;
    if (n->dirc) pl_dirc_detached(n->dirc);
    if (n->mboxc) pl_mboxc_detached(n->mboxc);
    host_result(n, &gone, false, now);
    close_peer(n, gone.pk, now);
    emit(n, PL_NODE_EV_LOST, &gone, 0, now);
    start_round(n, now);
}

static void send_keepalive(pl_node *n, pl_time now)
{
    n->ka_seq++;
    if (n->ka_tries == 0) n->ka_first_seq = n->ka_seq;
    n->ka_tries++;
    n->ka_retry_at = now + PL_NODE_KEEPALIVE_RETRY;
    uint8_t msg[8];
    send_to(n, &n->sn, n->sn_tcp, msg, pl_ovl_encode_keepalive(msg, sizeof msg, n->ka_seq), now);
}

/* ---- messages ------------------------------------------------------------------------------ */

static bool from_candidate(const pl_node *n, const uint8_t pk[32])
{
    return n->state == PL_NODE_ATTACHING && memcmp(n->cand.pk, pk, 32) == 0;
}

static bool from_supernode(const pl_node *n, const uint8_t pk[32])
{
    return n->state == PL_NODE_ATTACHED && memcmp(n->sn.pk, pk, 32) == 0;
}

bool pl_node_message(pl_node *n, const uint8_t pk[32], const pl_addr *from, const uint8_t *msg, size_t len,
                     pl_time now)
{
    (void)from;
    if (len == 0) return false;
    switch (msg[0]) {
    case PL_OVL_ATTACH_CHALLENGE: {
        uint8_t nonce[PL_OVL_NONCE_SIZE], proof[PL_OVL_PROOF_SIZE], sig[PL_OVL_SIG_SIZE], out[80];
        if (!from_candidate(n, pk) || pl_ovl_decode_challenge(nonce, msg, len)) return true;
        pl_ovl_proof_bytes(proof, pk, n->id.sign_pk, nonce);
        crypto_sign_detached(sig, NULL, proof, sizeof proof, n->id.sign_sk);
        send_to(n, &n->cand, n->cand_tcp, out, pl_ovl_encode_proof(out, sizeof out, sig), now);
        return true;
    }
    case PL_OVL_ATTACH_OK: {
        pl_ovl_attach_ok ok;
        if (!from_candidate(n, pk) || pl_ovl_decode_attach_ok(&ok, msg, len)) return true;
        attached(n, &ok, now);
        return true;
    }
    case PL_OVL_ATTACH_REFUSED: {
        pl_ovl_refused r;
        if (!from_candidate(n, pk) || pl_ovl_decode_refused(&r, msg, len)) return true;
        const pl_ovl_peer c = n->cand;
        emit(n, PL_NODE_EV_REFUSED, &c, r.reason, now);
        close_peer(n, c.pk, now);
        host_result(n, &c, false, now);
        /* The supernodes it sends us to are tried first, in a round that
         * starts over (a bounded number of times). */
        if (r.n_redirect > 0 && n->redirects_this_round < MAX_REDIRECTS_PER_ROUND) {
            n->redirects_this_round++;
            n->n_preferred = 0;
            for (uint8_t i = 0; i < r.n_redirect; i++) {
                n->preferred[n->n_preferred++] = r.redirect[i];
                learn_host(n, &r.redirect[i]);
            }
            start_round(n, now);
        } else {
            n->cand_index++;
            start_attempt(n, now);
        }
        return true;
    }
    case PL_OVL_KEEPALIVE_ACK: {
        uint32_t seq;
        pl_addr seen;
        if (!from_supernode(n, pk) || pl_ovl_decode_keepalive_ack(&seq, &seen, msg, len)) return true;
        if (n->ka_tries == 0 || seq - n->ka_first_seq > n->ka_seq - n->ka_first_seq) return true;
        n->ka_tries = 0;
        n->ka_due = now + (pl_time)n->keepalive_s * PL_SEC;
        if (seen.family && !pl_addr_equal(&seen, &n->observed)) {
            n->observed = seen;
            emit(n, PL_NODE_EV_ADDRESS, &n->sn, 0, now);
            if (n->dirc) {
                pl_dirc_where w;
                where_now(n, &w);
                pl_dirc_update(n->dirc, &w, now);
            }
        }
        return true;
    }
    case PL_OVL_REDIRECT: {
        pl_ovl_redirect r;
        if (!from_supernode(n, pk) || pl_ovl_decode_redirect(&r, msg, len)) return true;
        n->n_preferred = 0;
        for (uint8_t i = 0; i < r.n; i++) {
            n->preferred[n->n_preferred++] = r.to[i];
            learn_host(n, &r.to[i]);
        }
        /* Leaving on request is not a failure of that supernode. */
        close_peer(n, n->sn.pk, now);
        n->state = PL_NODE_ATTACHING;
        if (n->dirc) pl_dirc_detached(n->dirc);
    if (n->mboxc) pl_mboxc_detached(n->mboxc);
        start_round(n, now);
        return true;
    }
    case PL_OVL_PROMOTE: {
        pl_ovl_qualify q;
        if (!from_supernode(n, pk) || pl_ovl_decode_qualify(&q, msg, len) || q.type != PL_OVL_PROMOTE) return true;
        /* Only a node that offered to serve is asked; the driver decides. */
        if (!(n->attach.flags & PL_OVL_ATTACH_F_CANDIDATE) || !n->io.event) return true;
        pl_node_event ev = {PL_NODE_EV_PROMOTE, &n->sn, 0, &n->observed, NULL, NULL, &q, now};
        n->io.event(n->io.ctx, &ev);
        return true;
    }
    default:
        if (!from_supernode(n, pk)) return false;
        if (msg[0] >= 0x70 && msg[0] <= 0x7f) return n->mboxc && pl_mboxc_message(n->mboxc, msg, len, now);
        return n->dirc && pl_dirc_message(n->dirc, msg, len, now);
    }
}

void pl_node_peer_down(pl_node *n, const uint8_t pk[32], pl_time now)
{
    if (from_supernode(n, pk)) lost(n, now);
    else if (from_candidate(n, pk)) attempt_failed(n, now);
}

bool pl_node_probe(pl_node *n, const uint8_t *data, size_t len, pl_time now)
{
    pl_ovl_qualify q = {.type = PL_OVL_QUALIFY_SEEN};
    if (!pl_ovl_parse_probe(data, len, q.nonce)) return false;
    if (n->state != PL_NODE_ATTACHED) return true;
    uint8_t out[32];
    send_to(n, &n->sn, n->sn_tcp, out, pl_ovl_encode_qualify(out, sizeof out, &q), now);
    return true;
}

void pl_node_unreachable(pl_node *n, const pl_addr *addr, pl_time now)
{
    if (n->state != PL_NODE_ATTACHING) return;
    pl_addr tried = n->cand.addr;
    tried.transport = n->cand_tcp ? PL_ADDR_TCP : PL_ADDR_UDP;
    if (pl_addr_equal(&tried, addr)) attempt_failed(n, now);
}

/* ---- time ------------------------------------------------------------------------------------ */

void pl_node_tick(pl_node *n, pl_time now)
{
    if (n->dirc) pl_dirc_tick(n->dirc, now);
    if (n->mboxc) pl_mboxc_tick(n->mboxc, now);
    switch (n->state) {
    case PL_NODE_ATTACHING:
        if (now >= n->attempt_deadline) attempt_failed(n, now);
        break;
    case PL_NODE_ATTACHED:
        if (n->ka_tries == 0 && now >= n->ka_due) {
            send_keepalive(n, now);
        } else if (n->ka_tries > 0 && now >= n->ka_retry_at) {
            if (n->ka_tries >= PL_NODE_KEEPALIVE_TRIES) lost(n, now);
            else send_keepalive(n, now);
        }
        break;
    case PL_NODE_WAITING:
        if (now >= n->next_attempt) start_round(n, now);
        break;
    case PL_NODE_IDLE: break;
    }
}

static pl_time state_timeout(const pl_node *n)
{
    switch (n->state) {
    case PL_NODE_ATTACHING: return n->attempt_deadline;
    case PL_NODE_ATTACHED: return n->ka_tries ? n->ka_retry_at : n->ka_due;
    case PL_NODE_WAITING: return n->next_attempt;
    case PL_NODE_IDLE: break;
    }
    return PL_TIME_NEVER;
}

pl_time pl_node_next_timeout(const pl_node *n)
{
    pl_time t = state_timeout(n);
    pl_time d;
    if (n->dirc && (d = pl_dirc_next_timeout(n->dirc)) < t) t = d;
    if (n->mboxc && (d = pl_mboxc_next_timeout(n->mboxc)) < t) t = d;
    return t;
}

/* ---- set-up and queries ------------------------------------------------------------------------ */

pl_node_err pl_node_new(pl_node **out, const pl_node_config *cfg, const pl_node_io *io)
{
    *out = NULL;
    if (!cfg || !cfg->identity || !cfg->rng || !io || !io->send || cfg->n_bootstrap > MAX_BOOTSTRAP ||
        (cfg->no_tcp && cfg->no_udp))
        return PL_NODE_ERR_CONFIG;
    const pl_mem *mem = cfg->mem ? cfg->mem : pl_mem_system();
    pl_node *n = mem->calloc(mem->ctx, 1, sizeof *n);
    if (!n) return PL_NODE_ERR_NOMEM;
    if (cfg->n_bootstrap) {
        n->bootstrap = mem->calloc(mem->ctx, cfg->n_bootstrap, sizeof *n->bootstrap);
        if (!n->bootstrap) {
            mem->free(mem->ctx, n);
            return PL_NODE_ERR_NOMEM;
        }
    }
    n->id = *cfg->identity;
    n->rng = cfg->rng;
    n->mem = mem;
    n->io = *io;
    n->no_tcp = cfg->no_tcp;
    n->no_udp = cfg->no_udp;
    n->attach = cfg->attach;
    n->attach.version = PL_OVL_VERSION;
    n->attach.flags &= PL_OVL_ATTACH_F_ALL;
    for (size_t i = 0; i < cfg->n_bootstrap; i++) n->bootstrap[n->n_bootstrap++] = cfg->bootstrap[i];
    n->n_host_addrs = cfg->n_host_addrs < PL_NODE_MAX_HOST_ADDRS ? cfg->n_host_addrs : PL_NODE_MAX_HOST_ADDRS;
    memcpy(n->host_addrs, cfg->host_addrs, sizeof n->host_addrs);
    /* Without a certificate the node can attach but not publish. */
    if (cfg->cert && cfg->cert_len) {
        pl_dirc_config dc = {.identity = cfg->identity, .cert = cfg->cert, .cert_len = cfg->cert_len,
                             .rng = cfg->rng, .mem = mem};
        memcpy(dc.ca_pk, cfg->ca_pk, 32);
        pl_dirc_io dio = {n, dirc_send, dirc_event, dirc_suspect};
        pl_mboxc_config mc = {.identity = cfg->identity, .cert = cfg->cert, .cert_len = cfg->cert_len,
                              .rng = cfg->rng, .mem = mem};
        memcpy(mc.ca_pk, cfg->ca_pk, 32);
        pl_mboxc_io mio = {n, dirc_send, mboxc_event};
        if (pl_dirc_new(&n->dirc, &dc, &dio) != PL_DIRC_OK ||
            (!cfg->no_mail && pl_mboxc_new(&n->mboxc, &mc, &mio) != PL_MBOXC_OK)) {
            pl_node_free(n);
            return PL_NODE_ERR_NOMEM;
        }
    }
    *out = n;
    return PL_NODE_OK;
}

void pl_node_free(pl_node *n)
{
    if (!n) return;
    const pl_mem *mem = n->mem;
    if (n->bootstrap) mem->free(mem->ctx, n->bootstrap);
    if (n->hosts) mem->free(mem->ctx, n->hosts);
    pl_dirc_free(n->dirc);
    pl_mboxc_free(n->mboxc);
    sodium_memzero(n, sizeof *n);
    mem->free(mem->ctx, n);
}

pl_node_err pl_node_start(pl_node *n, pl_time now)
{
    if (n->state != PL_NODE_IDLE) return PL_NODE_ERR_STATE;
    start_round(n, now);
    return PL_NODE_OK;
}

void pl_node_stop(pl_node *n, pl_time now)
{
    if (n->state == PL_NODE_ATTACHED) {
        uint8_t msg[4];
        send_to(n, &n->sn, n->sn_tcp, msg, pl_ovl_encode_detach(msg, sizeof msg), now);
    } else if (n->state == PL_NODE_ATTACHING) {
        close_peer(n, n->cand.pk, now);
    }
    n->state = PL_NODE_IDLE;
}

pl_dirc *pl_node_directory(pl_node *n) { return n->dirc; }
pl_mboxc *pl_node_mailbox(pl_node *n) { return n->mboxc; }

void pl_node_set_nat(pl_node *n, uint8_t mapping, uint8_t filtering, uint8_t nat_flags, pl_time now)
{
    if (mapping > PL_NAT_BEHAVIOUR_MAX || filtering > PL_NAT_BEHAVIOUR_MAX) return;
    if (n->nat_mapping == mapping && n->nat_filtering == filtering && n->nat_flags == (nat_flags & PL_NAT_F_ALL)) return;
    n->nat_mapping = mapping;
    n->nat_filtering = filtering;
    n->nat_flags = nat_flags & PL_NAT_F_ALL;
    if (n->dirc && n->state == PL_NODE_ATTACHED) {
        pl_dirc_where w;
        where_now(n, &w);
        pl_dirc_update(n->dirc, &w, now);
    }
}

void pl_node_candidate_mapped(pl_record_candidate *c, const pl_addr *mapped)
{
    memset(c, 0, sizeof *c);
    c->type = PL_CAND_PORT_MAPPED;
    c->transport = PL_TRANSPORT_UDP;
    c->priority = 150;
    c->addr = *mapped;
    c->addr.transport = PL_ADDR_UDP;
}

void pl_node_set_mapped(pl_node *n, const pl_addr *mapped, pl_time now)
{
    pl_addr next;
    memset(&next, 0, sizeof next);
    if (mapped && (mapped->family == PL_AF_INET4 || mapped->family == PL_AF_INET6) && mapped->port) {
        next = *mapped;
        next.transport = PL_ADDR_UDP;
    }
    if (pl_addr_equal(&next, &n->mapped) || (!next.family && !n->mapped.family)) return;
    n->mapped = next;
    if (n->dirc && n->state == PL_NODE_ATTACHED) {
        pl_dirc_where w;
        where_now(n, &w);
        pl_dirc_update(n->dirc, &w, now);
    }
}

pl_node_status pl_node_get_status(const pl_node *n)
{
    pl_node_status s;
    memset(&s, 0, sizeof s);
    s.state = n->state;
    if (n->state == PL_NODE_ATTACHED) {
        s.supernode = n->sn;
        s.tcp = n->sn_tcp;
    } else if (n->state == PL_NODE_ATTACHING) {
        s.supernode = n->cand;
        s.tcp = n->cand_tcp;
    }
    s.observed = n->observed;
    s.mapped = n->mapped;
    s.n_standby = n->n_standby;
    memcpy(s.standby, n->standby, sizeof s.standby);
    s.attached_since = n->attached_since;
    s.keepalive_s = n->keepalive_s;
    s.attaches = n->attaches;
    s.losses = n->losses;
    s.next_attempt = n->state == PL_NODE_WAITING ? n->next_attempt : 0;
    return s;
}

size_t pl_node_hosts(const pl_node *n, pl_node_host *out, size_t max)
{
    size_t k = n->n_hosts < max ? n->n_hosts : max;
    pl_node_host sorted[PL_NODE_HOST_CACHE_MAX];
    if (n->n_hosts) memcpy(sorted, n->hosts, n->n_hosts * sizeof *sorted);
    qsort(sorted, n->n_hosts, sizeof *sorted, host_rank);
    if (k) memcpy(out, sorted, k * sizeof *out);
    return k;
}

void pl_node_add_host(pl_node *n, const pl_node_host *host)
{
    pl_node_host *h = learn_host(n, &host->peer);
    if (!h) return;
    if (host->last_success > h->last_success) h->last_success = host->last_success;
    if (host->last_failure > h->last_failure) h->last_failure = host->last_failure;
    h->failures = host->failures;
}

const char *pl_node_state_name(pl_node_state s)
{
    switch (s) {
    case PL_NODE_IDLE: return "idle";
    case PL_NODE_ATTACHING: return "attaching";
    case PL_NODE_ATTACHED: return "attached";
    case PL_NODE_WAITING: return "waiting";
    }
    return "unknown";
}

const char *pl_node_strerror(pl_node_err err)
{
    switch (err) {
    case PL_NODE_OK: return "ok";
    case PL_NODE_ERR_CONFIG: return "bad node configuration";
    case PL_NODE_ERR_NOMEM: return "out of memory";
    case PL_NODE_ERR_STATE: return "not allowed in this state";
    }
    return "unknown node error";
}
