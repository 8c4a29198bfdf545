/* test_attach.c - nodes attaching to supernodes, whole stacks on the
 * simulated network with real secure sessions: the proof of key, refusals,
 * keepalives and what they cost, losing a supernode, redirects and back-off. */
#include <sodium.h>
#include <stdlib.h>

#include "link.h"
#include "overlay.h"
#include "simworld.h"
#include "test.h"

#define T0 (1800000000ull * PL_SEC)

static pl_addr addr_of(int host, int port)
{
    pl_addr a;
    char text[32];
    snprintf(text, sizeof text, "192.0.2.%d:%d", host, port);
    pl_addr_parse(&a, text, 0);
    return a;
}

typedef struct watch {
    int attached, lost, refused;
    uint8_t last_refusal;
    pl_time last_attached_at;
    int client_attached, client_lost, client_left;
} watch;

static void on_event(void *ctx, pl_simhost *h, const pl_stack_event *ev)
{
    watch *w = ctx;
    (void)h;
    if (ev->type == PL_STACK_EV_NODE) {
        if (ev->node->type == PL_NODE_EV_ATTACHED) {
            w->attached++;
            w->last_attached_at = ev->node->now;
        }
        if (ev->node->type == PL_NODE_EV_LOST) w->lost++;
        if (ev->node->type == PL_NODE_EV_REFUSED) {
            w->refused++;
            w->last_refusal = ev->node->refusal;
        }
    } else if (ev->type == PL_STACK_EV_SUPER) {
        if (ev->super->type == PL_SUPER_EV_CLIENT_ATTACHED) w->client_attached++;
        if (ev->super->type == PL_SUPER_EV_CLIENT_LOST) w->client_lost++;
        if (ev->super->type == PL_SUPER_EV_CLIENT_LEFT) w->client_left++;
    }
}

static pl_simworld *world(watch *w, bool secure)
{
    pl_simworld_config cfg = {.seed = 42, .start = T0, .secure = secure,
                              .link = {10 * PL_MSEC, 2 * PL_MSEC, 0}, .on_event = on_event, .ctx = w};
    return pl_simworld_new(&cfg);
}

static pl_simhost *supernode(pl_simworld *w, const char *name, int host, uint32_t max_clients)
{
    pl_stack_config c = {.role = PL_ROLE_SUPERNODE, .max_clients = max_clients, .max_peers = 256};
    pl_addr a = addr_of(host, 7400);
    pl_simhost *h = pl_simworld_add_host(w, name, &a, &c);
    CHECK(h);
    pl_simhost_start(h);
    return h;
}

static pl_simhost *node(pl_simworld *w, const char *name, int host, const pl_ovl_peer *boot, size_t n_boot)
{
    pl_stack_config c = {.role = PL_ROLE_NODE, .bootstrap = boot, .n_bootstrap = n_boot};
    pl_addr a = addr_of(host, 5000);
    pl_simhost *h = pl_simworld_add_host(w, name, &a, &c);
    CHECK(h);
    return h;
}

static pl_node_status status_of(pl_simhost *h) { return pl_node_get_status(pl_stack_node(pl_simhost_stack(h))); }

static void a_node_attaches_after_proving_its_key(void)
{
    watch seen = {0};
    pl_simworld *w = world(&seen, true);
    pl_simhost *sn = supernode(w, "supernode1", 1, 0);
    pl_simhost *alice = node(w, "alice", 10, pl_simhost_peer(sn), 1);
    pl_simhost_start(alice);
    pl_simnet_run_until(pl_simworld_net(w), T0 + PL_SEC);
    pl_node_status st = status_of(alice);
    CHECK_EQ(st.state, PL_NODE_ATTACHED);
    CHECK(memcmp(st.supernode.pk, pl_simhost_peer(sn)->pk, 32) == 0);
    /* The supernode saw the node's address and says so. */
    CHECK(pl_addr_equal(&st.observed, &pl_simhost_peer(alice)->addr));
    CHECK_EQ(st.keepalive_s, PL_SUPER_DEFAULT_KEEPALIVE_S);
    pl_super_stats ss = pl_super_get_stats(pl_simhost_stack(sn) ? pl_stack_super(pl_simhost_stack(sn)) : NULL);
    CHECK_EQ(ss.clients, 1);
    CHECK_EQ(ss.attaches, 1);
    pl_super_client_info info;
    CHECK(pl_super_client(pl_stack_super(pl_simhost_stack(sn)), pl_simhost_peer(alice)->pk, &info));
    CHECK(strcmp(info.name, "alice") == 0);
    /* Attaching took one handshake and two round trips: well under 200 ms
     * at 10-12 ms per hop. */
    CHECK(seen.last_attached_at - T0 < 200 * PL_MSEC);
    CHECK_EQ(seen.client_attached, 1);
    pl_simworld_free(w);
}

/* A node that answers the challenge with a signature from another key is
 * refused, and is not counted as attached. Driven by hand through a link. */
typedef struct raw_peer {
    pl_link *link;
    pl_simnet *net;
    pl_addr addr;
    uint8_t sn_pk[32];
    uint8_t node_pk[32];
    pl_identity wrong;
    int refusals;
    uint8_t reason;
    bool sent_proof;
} raw_peer;

static void raw_send(void *ctx, const pl_addr *to, const uint8_t *d, size_t n)
{
    raw_peer *r = ctx;
    pl_simnet_send(r->net, &r->addr, to, d, n);
}

static void raw_message(void *ctx, const pl_link_message *m)
{
    raw_peer *r = ctx;
    uint8_t nonce[PL_OVL_NONCE_SIZE];
    if (pl_ovl_decode_challenge(nonce, m->data, m->len) == PL_OVL_OK) {
        uint8_t proof[PL_OVL_PROOF_SIZE], sig[64], out[80];
        pl_ovl_proof_bytes(proof, r->sn_pk, r->node_pk, nonce);
        /* Right message, wrong key: an impersonator's signature. */
        crypto_sign_detached(sig, NULL, proof, sizeof proof, r->wrong.sign_sk);
        size_t len = pl_ovl_encode_proof(out, sizeof out, sig);
        pl_link_send(r->link, m->peer_pk, NULL, out, len, m->now);
        r->sent_proof = true;
        return;
    }
    pl_ovl_refused ref;
    if (pl_ovl_decode_refused(&ref, m->data, m->len) == PL_OVL_OK) {
        r->refusals++;
        r->reason = ref.reason;
    }
}

static void raw_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *d, size_t n, pl_time now)
{
    raw_peer *r = ctx;
    (void)to;
    pl_link_receive(r->link, from, d, n, now);
}

static void a_wrong_proof_is_refused(void)
{
    watch seen = {0};
    pl_simworld *w = world(&seen, true);
    pl_simhost *sn = supernode(w, "supernode1", 1, 0);
    /* Mallory holds a real certificate (the world's CA issues it to a
     * host we never start) but signs the challenge with another key. */
    pl_simhost *mallory = node(w, "mallory", 20, NULL, 0);
    raw_peer r = {0};
    r.net = pl_simworld_net(w);
    r.addr = addr_of(21, 5000);
    memcpy(r.sn_pk, pl_simhost_peer(sn)->pk, 32);
    memcpy(r.node_pk, pl_simhost_peer(mallory)->pk, 32);
    pl_identity_generate(&r.wrong, pl_rng_system());
    uint8_t cert[PL_CERT_MAX_SIZE];
    size_t cert_len;
    CHECK_EQ(pl_cert_encode(pl_simhost_cert(mallory), cert, sizeof cert, &cert_len), PL_CERT_OK);
    pl_link_config lc = {.sec = {.identity = pl_simhost_identity(mallory), .cert = cert, .cert_len = cert_len,
                                 .rng = pl_rng_system(), .accept_incoming = true}};
    memcpy(lc.sec.ca_pk, pl_simworld_ca_pk(w), 32);
    pl_link_io io = {&r, raw_send, raw_message, NULL};
    CHECK_EQ(pl_link_new(&r.link, &lc, &io), PL_LINK_OK);
    CHECK(pl_simnet_attach(r.net, &r.addr, raw_recv, &r));
    pl_ovl_attach hello = {.version = PL_OVL_VERSION};
    uint8_t msg[64];
    size_t len = pl_ovl_encode_attach(msg, sizeof msg, &hello);
    CHECK_EQ(pl_link_send(r.link, r.sn_pk, &pl_simhost_peer(sn)->addr, msg, len, T0), PL_LINK_OK);
    pl_simnet_run_until(r.net, T0 + PL_SEC);
    CHECK(r.sent_proof);
    CHECK_EQ(r.refusals, 1);
    CHECK_EQ(r.reason, PL_OVL_REFUSED_BAD_PROOF);
    pl_super_stats ss = pl_super_get_stats(pl_stack_super(pl_simhost_stack(sn)));
    CHECK_EQ(ss.clients, 0);
    CHECK_EQ(ss.refused_proof, 1);
    CHECK_EQ(seen.client_attached, 0);
    pl_simnet_detach(r.net, &r.addr);
    pl_link_free(r.link);
    pl_identity_wipe(&r.wrong);
    pl_simworld_free(w);
}

static void a_revoked_user_cannot_attach(void)
{
    watch seen = {0};
    pl_simworld *w = world(&seen, true);
    pl_simhost *sn = supernode(w, "supernode1", 1, 0);
    pl_simhost *eve = node(w, "eve", 30, pl_simhost_peer(sn), 1);
    pl_simhost *bob = node(w, "bob", 31, pl_simhost_peer(sn), 1);
    pl_simhost_start(eve);
    pl_simhost_start(bob);
    pl_simnet_run_until(pl_simworld_net(w), T0 + PL_SEC);
    CHECK_EQ(seen.client_attached, 2);
    /* Eve is revoked: the supernode drops her at once, and her attempts to
     * come back die in the handshake. Bob is untouched. */
    pl_simworld_revoke(w, eve);
    pl_simnet_run_until(pl_simworld_net(w), T0 + 300 * PL_SEC);
    pl_super *s = pl_stack_super(pl_simhost_stack(sn));
    CHECK(!pl_super_client(s, pl_simhost_peer(eve)->pk, NULL));
    CHECK(pl_super_client(s, pl_simhost_peer(bob)->pk, NULL));
    CHECK(status_of(eve).state != PL_NODE_ATTACHED);
    CHECK_EQ(status_of(eve).attaches, 1);
    CHECK_EQ(status_of(bob).state, PL_NODE_ATTACHED);
    CHECK(pl_sec_get_stats(pl_link_sec(pl_stack_link(pl_simhost_stack(sn)))).drop_cert > 0);
    /* A revoked user who starts afresh cannot attach either. */
    pl_simhost_restart(eve);
    pl_simnet_run_until(pl_simworld_net(w), T0 + 400 * PL_SEC);
    CHECK_EQ(status_of(eve).attaches, 0);
    pl_simworld_free(w);
}

/* An idle node and its supernode: keepalives every 30 s, answered, and a
 * rekey every ten minutes. Over an hour, counting 28 bytes of IPv4 and UDP
 * header per datagram, the link must average at most 50 bit/s. */
static void an_idle_node_costs_at_most_50_bits_per_second(void)
{
    watch seen = {0};
    pl_simworld *w = world(&seen, true);
    pl_simhost *sn = supernode(w, "supernode1", 1, 0);
    pl_simhost *alice = node(w, "alice", 10, pl_simhost_peer(sn), 1);
    pl_simhost_start(alice);
    pl_simnet *net = pl_simworld_net(w);
    pl_simnet_run_until(net, T0 + 60 * PL_SEC); /* attached and settled */
    pl_sim_stats before = pl_simnet_stats(net);
    pl_time hour = 3600 * PL_SEC;
    pl_simnet_run_until(net, T0 + 60 * PL_SEC + hour);
    pl_sim_stats after = pl_simnet_stats(net);
    uint64_t datagrams = after.sent - before.sent;
    uint64_t bytes = after.bytes_sent - before.bytes_sent + 28 * datagrams;
    double bps = bytes * 8.0 / 3600.0;
    printf("     idle node <-> supernode: %.1f bit/s (%llu datagrams, %llu bytes in an hour)\n", bps,
           (unsigned long long)datagrams, (unsigned long long)bytes);
    CHECK(bps <= 50.0);
    /* ...and it was still attached throughout, never lost. */
    CHECK_EQ(status_of(alice).state, PL_NODE_ATTACHED);
    CHECK_EQ(seen.lost, 0);
    CHECK_EQ(seen.client_lost, 0);
    /* Keepalives really flowed: 120 in an hour, each answered. */
    CHECK(datagrams >= 240);
    pl_simworld_free(w);
}

/* The supernode named a standby when the node attached. When the supernode
 * dies the node goes straight there: one re-attach, no new bootstrap. */
static void a_lost_supernode_costs_one_reattach_to_the_standby(void)
{
    watch seen = {0};
    pl_simworld *w = world(&seen, true);
    pl_simhost *sn1 = supernode(w, "supernode1", 1, 0);
    pl_simhost *sn2 = supernode(w, "supernode2", 2, 0);
    pl_simhost *sn3 = supernode(w, "supernode3", 3, 0);
    pl_super_set_standby(pl_stack_super(pl_simhost_stack(sn1)), pl_simhost_peer(sn2), 1);
    /* The node bootstraps from sn1 and sn3 only: sn2 it learns as standby. */
    pl_ovl_peer boot[2] = {*pl_simhost_peer(sn1), *pl_simhost_peer(sn3)};
    pl_simhost *alice = node(w, "alice", 10, boot, 2);
    pl_simhost_start(alice);
    pl_simnet *net = pl_simworld_net(w);
    pl_simnet_run_until(net, T0 + PL_SEC);
    pl_node_status st = status_of(alice);
    CHECK_EQ(st.state, PL_NODE_ATTACHED);
    CHECK(memcmp(st.supernode.pk, pl_simhost_peer(sn1)->pk, 32) == 0);
    CHECK_EQ(st.n_standby, 1);
    pl_time crash = T0 + 10 * PL_SEC;
    pl_simnet_run_until(net, crash);
    pl_simhost_crash(sn1);
    pl_simnet_run_until(net, crash + 60 * PL_SEC);
    st = status_of(alice);
    CHECK_EQ(st.state, PL_NODE_ATTACHED);
    CHECK(memcmp(st.supernode.pk, pl_simhost_peer(sn2)->pk, 32) == 0);
    CHECK_EQ(st.attaches, 2);
    CHECK_EQ(st.losses, 1);
    CHECK_EQ(seen.refused, 0);
    /* Detection is bounded by one keepalive period plus the retries. */
    pl_time gap = seen.last_attached_at - crash;
    printf("     re-attached %.1f s after the supernode died\n", gap / 1e6);
    CHECK(gap <= (PL_SUPER_DEFAULT_KEEPALIVE_S + 7) * PL_SEC);
    pl_simworld_free(w);
}

static void a_full_supernode_refuses_and_redirects(void)
{
    watch seen = {0};
    pl_simworld *w = world(&seen, true);
    pl_simhost *sn1 = supernode(w, "supernode1", 1, 1);
    pl_simhost *sn2 = supernode(w, "supernode2", 2, 0);
    pl_super_set_redirects(pl_stack_super(pl_simhost_stack(sn1)), pl_simhost_peer(sn2), 1);
    pl_simhost *a = node(w, "alice", 10, pl_simhost_peer(sn1), 1);
    pl_simhost *b = node(w, "bob", 11, pl_simhost_peer(sn1), 1);
    pl_simhost_start(a);
    pl_simnet_run_until(pl_simworld_net(w), T0 + PL_SEC);
    pl_simhost_start(b);
    pl_simnet_run_until(pl_simworld_net(w), T0 + 2 * PL_SEC);
    CHECK(memcmp(status_of(a).supernode.pk, pl_simhost_peer(sn1)->pk, 32) == 0);
    CHECK_EQ(status_of(b).state, PL_NODE_ATTACHED);
    CHECK(memcmp(status_of(b).supernode.pk, pl_simhost_peer(sn2)->pk, 32) == 0);
    CHECK_EQ(seen.refused, 1);
    CHECK_EQ(seen.last_refusal, PL_OVL_REFUSED_OVERLOADED);
    CHECK_EQ(pl_super_get_stats(pl_stack_super(pl_simhost_stack(sn1))).refused_full, 1);
    /* Shedding: sn1 sends its client to sn2. */
    CHECK_EQ(pl_super_shed(pl_stack_super(pl_simhost_stack(sn1)), 1, pl_simhost_peer(sn2), 1,
                           pl_simworld_now(w)),
             1);
    pl_simnet_run_until(pl_simworld_net(w), T0 + 3 * PL_SEC);
    CHECK(memcmp(status_of(a).supernode.pk, pl_simhost_peer(sn2)->pk, 32) == 0);
    CHECK_EQ(pl_super_get_stats(pl_stack_super(pl_simhost_stack(sn2))).clients, 2);
    pl_simworld_free(w);
}

/* Two hundred nodes find no supernode: their retries spread out over time
 * and back off exponentially, instead of arriving in waves. */
static void nodes_that_cannot_attach_back_off_with_jitter(void)
{
    watch seen = {0};
    pl_simworld *w = world(&seen, true);
    pl_ovl_peer nobody;
    pl_identity ghost;
    pl_identity_generate(&ghost, pl_rng_system());
    memcpy(nobody.pk, ghost.sign_pk, 32);
    nobody.addr = addr_of(99, 7400);
    enum { N = 200 };
    pl_simhost *nodes[N];
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "user%03d", i);
        pl_stack_config c = {.role = PL_ROLE_NODE, .bootstrap = &nobody, .n_bootstrap = 1, .no_tcp = true};
        pl_addr a = addr_of(10, 6000 + i);
        nodes[i] = pl_simworld_add_host(w, name, &a, &c);
        CHECK(nodes[i]);
        pl_simhost_start(nodes[i]);
    }
    pl_simnet *net = pl_simworld_net(w);
    /* After the first failed attempts (PL_NODE_UDP_ATTEMPT each), every node waits. */
    pl_time t = T0 + PL_NODE_UDP_ATTEMPT + PL_MSEC;
    pl_simnet_run_until(net, t);
    pl_time min = PL_TIME_NEVER, max = 0;
    for (int i = 0; i < N; i++) {
        pl_node_status st = status_of(nodes[i]);
        CHECK_EQ(st.state, PL_NODE_WAITING);
        if (st.next_attempt < min) min = st.next_attempt;
        if (st.next_attempt > max) max = st.next_attempt;
    }
    /* First back-off: 0.5..1 s, spread across that window. */
    CHECK(min >= t - PL_MSEC + 500 * PL_MSEC - PL_MSEC && max <= t + PL_SEC);
    CHECK(max - min > 300 * PL_MSEC);
    /* Much later the waits have grown towards the one-minute cap. */
    pl_simnet_run_until(net, T0 + 600 * PL_SEC);
    int long_waits = 0;
    for (int i = 0; i < N; i++) {
        pl_node_status st = status_of(nodes[i]);
        if (st.state == PL_NODE_WAITING && st.next_attempt - pl_simworld_now(w) > 10 * PL_SEC) long_waits++;
    }
    CHECK(long_waits > N / 4);
    pl_identity_wipe(&ghost);
    pl_simworld_free(w);
}

int main(void)
{
    RUN(a_node_attaches_after_proving_its_key);
    RUN(a_wrong_proof_is_refused);
    RUN(a_revoked_user_cannot_attach);
    RUN(an_idle_node_costs_at_most_50_bits_per_second);
    RUN(a_lost_supernode_costs_one_reattach_to_the_standby);
    RUN(a_full_supernode_refuses_and_redirects);
    RUN(nodes_that_cannot_attach_back_off_with_jitter);
    return pl_test_summary();
}
