/* test_link.c - messages to peers named by key, on the simulated network:
 * queued behind the handshake and sent in order, reported lost when the
 * peer cannot be reached, bounded, and safe to send from inside a callback. */
#include <sodium.h>
#include <stdlib.h>

#include "link.h"
#include "pki.h"
#include "simnet.h"
#include "test.h"

#define T0 (1800000000ull * PL_SEC)

static pl_test_ca ca;

typedef struct lnode {
    pl_test_user user;
    pl_link *link;
    pl_simnet *net;
    pl_addr addr;
    uint64_t timer_id;
    /* what came out */
    int messages, ups, downs;
    char texts[32][64];
    uint8_t last_from_pk[32];
    char last_from_name[PL_NAME_MAX + 1];
    pl_link_down_reason last_why;
    uint32_t last_dropped;
    struct lnode *forward_to; /* forwards every message to this node */
} lnode;

static void schedule(lnode *n);

static void on_timer(void *ctx, pl_time now)
{
    lnode *n = ctx;
    n->timer_id = 0;
    pl_link_tick(n->link, now);
    schedule(n);
}

static void schedule(lnode *n)
{
    if (n->timer_id) pl_simnet_timer_cancel(n->net, n->timer_id);
    n->timer_id = 0;
    pl_time t = pl_link_next_timeout(n->link);
    if (t != PL_TIME_NEVER) n->timer_id = pl_simnet_timer(n->net, t, on_timer, n);
}

static void on_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len, pl_time now)
{
    lnode *n = ctx;
    (void)to;
    pl_link_receive(n->link, from, data, len, now);
    schedule(n);
}

static void io_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    lnode *n = ctx;
    pl_simnet_send(n->net, &n->addr, to, data, len);
}

static void io_message(void *ctx, const pl_link_message *m)
{
    lnode *n = ctx;
    if (n->messages < 32) {
        size_t k = m->len < 63 ? m->len : 63;
        memcpy(n->texts[n->messages], m->data, k);
        n->texts[n->messages][k] = 0;
    }
    n->messages++;
    memcpy(n->last_from_pk, m->peer_pk, 32);
    snprintf(n->last_from_name, sizeof n->last_from_name, "%s", m->cert ? m->cert->name : "");
    if (n->forward_to) {
        pl_link_send(n->link, n->forward_to->user.id.sign_pk, &n->forward_to->addr, m->data, m->len, m->now);
        schedule(n);
    }
}

static void io_event(void *ctx, const pl_link_event *ev)
{
    lnode *n = ctx;
    if (ev->type == PL_LINK_EV_UP) {
        n->ups++;
    } else {
        n->downs++;
        n->last_why = ev->why;
        n->last_dropped = ev->dropped;
    }
}

static lnode *make(pl_simnet *net, const char *name, const char *addr, uint32_t pending_max)
{
    lnode *n = calloc(1, sizeof *n);
    CHECK(n);
    n->net = net;
    pl_test_user_make(&n->user, &ca, name, T0 - 3600 * PL_SEC, T0 + 86400 * PL_SEC, NULL);
    CHECK(pl_addr_parse(&n->addr, addr, 0));
    pl_link_config cfg = {.sec = {.identity = &n->user.id,
                                  .cert = n->user.cert_bytes,
                                  .cert_len = n->user.cert_len,
                                  .rng = pl_simnet_rng(net),
                                  .max_peers = 16,
                                  .accept_incoming = true},
                          .pending_max = pending_max};
    memcpy(cfg.sec.ca_pk, ca.pk, 32);
    pl_link_io io = {n, io_send, io_message, io_event};
    CHECK_EQ(pl_link_new(&n->link, &cfg, &io), PL_LINK_OK);
    CHECK(pl_simnet_attach(net, &n->addr, on_recv, n));
    return n;
}

static void drop(lnode *n)
{
    if (n->timer_id) pl_simnet_timer_cancel(n->net, n->timer_id);
    pl_simnet_detach(n->net, &n->addr);
    pl_link_free(n->link);
    pl_identity_wipe(&n->user.id);
    free(n);
}

static pl_link_err say(lnode *from, lnode *to, const char *text)
{
    pl_link_err err = pl_link_send(from->link, to->user.id.sign_pk, &to->addr, (const uint8_t *)text, strlen(text),
                                   pl_simnet_now(from->net));
    schedule(from);
    return err;
}

static pl_simnet *new_net(void)
{
    pl_simnet *net = pl_simnet_new(7, T0);
    pl_simnet_set_default_link(net, (pl_sim_link){20 * PL_MSEC, 0, 0});
    return net;
}

static void messages_sent_before_the_session_is_up_arrive_in_order(void)
{
    pl_simnet *net = new_net();
    lnode *a = make(net, "alice", "192.0.2.1:1000", 0), *b = make(net, "bob", "192.0.2.2:2000", 0);
    CHECK_EQ(say(a, b, "one"), PL_LINK_OK);
    CHECK_EQ(say(a, b, "two"), PL_LINK_OK);
    CHECK_EQ(say(a, b, "three"), PL_LINK_OK);
    CHECK(!pl_link_is_up(a->link, b->user.id.sign_pk));
    pl_simnet_run_until(net, T0 + PL_SEC);
    CHECK_EQ(b->messages, 3);
    CHECK(strcmp(b->texts[0], "one") == 0 && strcmp(b->texts[1], "two") == 0 && strcmp(b->texts[2], "three") == 0);
    /* The receiver knows who sent them, by key and certified name. */
    CHECK(memcmp(b->last_from_pk, a->user.id.sign_pk, 32) == 0);
    CHECK(strcmp(b->last_from_name, "alice") == 0);
    CHECK(pl_link_is_up(a->link, b->user.id.sign_pk) && pl_link_is_up(b->link, a->user.id.sign_pk));
    CHECK_EQ(a->ups, 1);
    CHECK_EQ(b->ups, 1);
    /* Once up, a reply needs no address: the session has one. */
    CHECK_EQ(pl_link_send(b->link, a->user.id.sign_pk, NULL, (const uint8_t *)"back", 4, pl_simnet_now(net)),
             PL_LINK_OK);
    schedule(b);
    pl_simnet_run_until(net, T0 + 2 * PL_SEC);
    CHECK_EQ(a->messages, 1);
    CHECK(strcmp(a->texts[0], "back") == 0);
    pl_link_stats st = pl_link_get_stats(a->link);
    CHECK_EQ(st.queued, 3);
    CHECK_EQ(st.messages_sent, 3);
    drop(a);
    drop(b);
    pl_simnet_free(net);
}

static void a_message_forwarded_from_inside_the_callback_reaches_a_third_peer(void)
{
    pl_simnet *net = new_net();
    lnode *a = make(net, "alice", "192.0.2.1:1000", 0), *b = make(net, "bob", "192.0.2.2:2000", 0);
    lnode *c = make(net, "carol", "192.0.2.3:3000", 0);
    b->forward_to = c;
    CHECK_EQ(say(a, b, "look up dave"), PL_LINK_OK);
    pl_simnet_run_until(net, T0 + PL_SEC);
    CHECK_EQ(b->messages, 1);
    CHECK_EQ(c->messages, 1);
    CHECK(strcmp(c->texts[0], "look up dave") == 0);
    CHECK(strcmp(c->last_from_name, "bob") == 0);
    drop(a);
    drop(b);
    drop(c);
    pl_simnet_free(net);
}

static void an_unreachable_peer_is_reported_with_the_messages_lost(void)
{
    pl_simnet *net = new_net();
    lnode *a = make(net, "alice", "192.0.2.1:1000", 0), *b = make(net, "bob", "192.0.2.2:2000", 0);
    pl_simnet_detach(net, &b->addr); /* bob is gone */
    CHECK_EQ(say(a, b, "hello?"), PL_LINK_OK);
    CHECK_EQ(say(a, b, "anyone?"), PL_LINK_OK);
    pl_simnet_run_until(net, T0 + 40 * PL_SEC);
    CHECK_EQ(a->downs, 1);
    CHECK_EQ(a->last_why, PL_LINK_DOWN_UNREACHABLE);
    CHECK_EQ(a->last_dropped, 2);
    CHECK_EQ(pl_link_get_stats(a->link).dropped_down, 2);
    CHECK(pl_link_peer_addr(a->link, b->user.id.sign_pk) == NULL); /* forgotten */
    /* Bob comes back: the next message starts afresh and gets through. */
    CHECK(pl_simnet_attach(net, &b->addr, on_recv, b));
    CHECK_EQ(say(a, b, "there you are"), PL_LINK_OK);
    pl_simnet_run_until(net, T0 + 41 * PL_SEC);
    CHECK_EQ(b->messages, 1);
    CHECK(strcmp(b->texts[0], "there you are") == 0);
    drop(a);
    drop(b);
    pl_simnet_free(net);
}

static void queues_are_bounded_per_peer_and_in_total(void)
{
    pl_simnet *net = new_net();
    lnode *a = make(net, "alice", "192.0.2.1:1000", 20);
    lnode *b = make(net, "bob", "192.0.2.2:2000", 0), *c = make(net, "carol", "192.0.2.3:3000", 0);
    char text[16];
    int accepted = 0;
    for (int i = 0; i < PL_LINK_PENDING_PER_PEER + 5; i++) {
        snprintf(text, sizeof text, "m%d", i);
        if (say(a, b, text) == PL_LINK_OK) accepted++;
    }
    CHECK_EQ(accepted, PL_LINK_PENDING_PER_PEER);
    /* The pool holds 20 in all: carol gets the four that are left. */
    int to_carol = 0;
    for (int i = 0; i < 10; i++)
        if (say(a, c, "x") == PL_LINK_OK) to_carol++;
    CHECK_EQ(to_carol, 20 - PL_LINK_PENDING_PER_PEER);
    CHECK_EQ(pl_link_get_stats(a->link).dropped_full, 5 + 10 - to_carol);
    pl_simnet_run_until(net, T0 + PL_SEC);
    CHECK_EQ(b->messages, PL_LINK_PENDING_PER_PEER);
    CHECK(strcmp(b->texts[PL_LINK_PENDING_PER_PEER - 1], "m15") == 0);
    CHECK_EQ(c->messages, to_carol);
    /* Everything went out, so the pool has room again. */
    CHECK_EQ(say(a, c, "more"), PL_LINK_OK);
    CHECK_EQ(pl_link_send(a->link, b->user.id.sign_pk, NULL, (const uint8_t *)"", 0, T0), PL_LINK_ERR_CONFIG);
    uint8_t big[PL_SEC_MAX_PAYLOAD + 1] = {0};
    CHECK_EQ(pl_link_send(a->link, b->user.id.sign_pk, NULL, big, sizeof big, T0), PL_LINK_ERR_TOO_BIG);
    drop(a);
    drop(b);
    drop(c);
    pl_simnet_free(net);
}

static void a_peer_without_a_session_needs_an_address(void)
{
    pl_simnet *net = new_net();
    lnode *a = make(net, "alice", "192.0.2.1:1000", 0), *b = make(net, "bob", "192.0.2.2:2000", 0);
    CHECK_EQ(pl_link_send(a->link, b->user.id.sign_pk, NULL, (const uint8_t *)"x", 1, T0), PL_LINK_ERR_NO_ADDR);
    CHECK_EQ(pl_link_send(a->link, a->user.id.sign_pk, &a->addr, (const uint8_t *)"x", 1, T0), PL_LINK_ERR_BAD_KEY);
    /* By certificate: a forged one is refused before any packet. */
    pl_cert forged = b->user.cert;
    forged.name[0] = 'r';
    CHECK_EQ(pl_link_send_cert(a->link, &forged, &b->addr, (const uint8_t *)"x", 1, T0), PL_LINK_ERR_BAD_CERT);
    CHECK_EQ(pl_link_send_cert(a->link, &b->user.cert, &b->addr, (const uint8_t *)"by cert", 7, T0), PL_LINK_OK);
    schedule(a);
    pl_simnet_run_until(net, T0 + PL_SEC);
    CHECK_EQ(b->messages, 1);
    drop(a);
    drop(b);
    pl_simnet_free(net);
}

static void silent_closed_and_revoked_peers_go_down(void)
{
    pl_simnet *net = new_net();
    lnode *a = make(net, "alice", "192.0.2.1:1000", 0), *b = make(net, "bob", "192.0.2.2:2000", 0);
    lnode *c = make(net, "carol", "192.0.2.3:3000", 0);
    say(a, b, "hi");
    say(a, c, "hi");
    pl_simnet_run_until(net, T0 + PL_SEC);
    CHECK_EQ(a->ups, 2);
    /* Closing reports the peer down at once and forgets it. */
    pl_link_close(a->link, c->user.id.sign_pk, pl_simnet_now(net));
    CHECK_EQ(a->downs, 1);
    CHECK_EQ(a->last_why, PL_LINK_DOWN_CLOSED);
    CHECK(!pl_link_is_up(a->link, c->user.id.sign_pk));
    /* Bob is revoked: his session ends. */
    uint8_t crl_buf[PL_CRL_SIZE(1)];
    size_t crl_len;
    uint64_t serial = b->user.cert.serial;
    CHECK_EQ(pl_crl_build(crl_buf, sizeof crl_buf, &crl_len, 1, T0 / PL_SEC, &serial, 1, ca.pk, ca.sk), PL_CERT_OK);
    pl_crl crl;
    CHECK_EQ(pl_crl_decode(&crl, crl_buf, crl_len), PL_CERT_OK);
    pl_sec_set_crl(pl_link_sec(a->link), &crl, pl_simnet_now(net));
    CHECK_EQ(a->downs, 2);
    CHECK_EQ(a->last_why, PL_LINK_DOWN_REVOKED);
    pl_sec_set_crl(pl_link_sec(a->link), NULL, pl_simnet_now(net));
    /* Carol talks again, then goes silent: once her keys are gone she is
     * reported down. */
    say(a, c, "again");
    pl_simnet_run_until(net, T0 + 2 * PL_SEC);
    CHECK_EQ(c->messages, 2);
    CHECK(pl_link_is_up(a->link, c->user.id.sign_pk));
    pl_simnet_detach(net, &c->addr);
    pl_simnet_run_until(net, T0 + 700 * PL_SEC);
    CHECK_EQ(a->downs, 3);
    CHECK_EQ(a->last_why, PL_LINK_DOWN_SILENT);
    drop(a);
    drop(b);
    c->net = net;
    pl_link_free(c->link);
    if (c->timer_id) pl_simnet_timer_cancel(net, c->timer_id);
    free(c);
    pl_simnet_free(net);
}

int main(void)
{
    if (!pl_init()) return 1;
    pl_test_ca_init(&ca);
    RUN(messages_sent_before_the_session_is_up_arrive_in_order);
    RUN(a_message_forwarded_from_inside_the_callback_reaches_a_third_peer);
    RUN(an_unreachable_peer_is_reported_with_the_messages_lost);
    RUN(queues_are_bounded_per_peer_and_in_total);
    RUN(a_peer_without_a_session_needs_an_address);
    RUN(silent_closed_and_revoked_peers_go_down);
    return pl_test_summary();
}
