/*
 * test_secure.c - the secure session layer, stated as rules.
 *
 * Endpoints here are the real pl_sec cores with real keys and certificates;
 * datagrams are carried by hand (so a test can flip, drop, replay or reflect
 * any of them), through the deterministic simulator, or over real UDP
 * sockets on loopback driven by the event loop.
 */
#include <sodium.h>
#include <stdlib.h>

#include "cookie.h"
#include "loop.h"
#include "parley.h"
#include "replay.h"
#include "simnet.h"
#include "test.h"

#define T0 ((pl_time)1800000000 * PL_SEC)

typedef struct ca_keys {
    uint8_t pk[32], sk[64];
} ca_keys;

typedef struct outbox_entry {
    pl_addr to;
    size_t len;
    uint8_t data[PL_SEC_MAX_DATAGRAM];
} outbox_entry;

typedef struct node {
    pl_sec *sec;
    pl_identity id;
    uint8_t cert[PL_CERT_MAX_SIZE];
    size_t cert_len;
    pl_addr addr;
    outbox_entry out[64];
    int nout;
    int established, data, failed, expired, revoked;
    uint8_t last_data[PL_SEC_MAX_DATAGRAM];
    size_t last_len;
    pl_sec_peer *last_peer;
    pl_simnet *net; /* when driven by the simulator */
    uint64_t timer_id;
    struct node *connect_on_data; /* opens a session to this node from inside a DATA callback */
} node;

static ca_keys ca;
static uint32_t pl_get_u32be_test(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static const pl_rng *node_rng; /* NULL: the system generator */

static void on_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    node *n = ctx;
    if (n->net) {
        pl_simnet_send(n->net, &n->addr, to, data, len);
        return;
    }
    if (n->nout == 64) return;
    outbox_entry *e = &n->out[n->nout++];
    e->to = *to;
    e->len = len;
    memcpy(e->data, data, len);
}

static void on_event(void *ctx, const pl_sec_event *ev)
{
    node *n = ctx;
    n->last_peer = ev->peer;
    switch (ev->type) {
    case PL_SEC_EV_ESTABLISHED: n->established++; break;
    case PL_SEC_EV_DATA:
        n->data++;
        if (n->connect_on_data) {
            pl_sec_connect(n->sec, n->connect_on_data->id.sign_pk, &n->connect_on_data->addr, ev->now, NULL);
            n->connect_on_data = NULL;
        }
        memcpy(n->last_data, ev->data, ev->len);
        n->last_len = ev->len;
        break;
    case PL_SEC_EV_FAILED: n->failed++; break;
    case PL_SEC_EV_EXPIRED: n->expired++; break;
    case PL_SEC_EV_REVOKED: n->revoked++; break;
    }
}

static void make_cert(const ca_keys *issuer, const pl_identity *id, const char *name, uint64_t serial,
                      pl_time valid_from, pl_time valid_to, uint8_t *out, size_t *out_len)
{
    pl_cert c;
    memset(&c, 0, sizeof c);
    c.version = PL_CERT_VERSION;
    c.serial = serial;
    c.not_before = valid_from / PL_SEC;
    c.not_after = valid_to / PL_SEC;
    memcpy(c.sign_pk, id->sign_pk, 32);
    memcpy(c.dh_pk, id->dh_pk, 32);
    c.name_len = (uint8_t)strlen(name);
    memcpy(c.name, name, c.name_len);
    pl_cert_sign(&c, issuer->pk, issuer->sk);
    CHECK_EQ(pl_cert_encode(&c, out, PL_CERT_MAX_SIZE, out_len), PL_CERT_OK);
}

static uint64_t next_serial = 1;
static uint32_t node_key_lifetime_s; /* 0: the default */

/* A node with a certificate from `issuer` valid over [from, to). */
static node *make_node_with(const char *name, const char *addr, const ca_keys *issuer, pl_time from, pl_time to,
                            uint32_t load_threshold, uint8_t ciphers)
{
    node *n = calloc(1, sizeof *n);
    CHECK(n != NULL);
    pl_identity_generate(&n->id, pl_rng_system());
    make_cert(issuer, &n->id, name, next_serial++, from, to, n->cert, &n->cert_len);
    CHECK(pl_addr_parse(&n->addr, addr, 0));
    pl_sec_config cfg = {
        .identity = &n->id,
        .cert = n->cert,
        .cert_len = n->cert_len,
        .rng = node_rng ? node_rng : pl_rng_system(),
        .max_peers = 64,
        .accept_incoming = true,
        .load_threshold = load_threshold,
        .ciphers = ciphers,
        .key_lifetime_s = node_key_lifetime_s,
    };
    memcpy(cfg.ca_pk, ca.pk, 32);
    pl_sec_io io = {n, on_send, on_event};
    CHECK_EQ(pl_sec_new(&n->sec, &cfg, &io), PL_SEC_OK);
    return n;
}

static node *make_node(const char *name, const char *addr)
{
    return make_node_with(name, addr, &ca, T0 - 3600 * PL_SEC, T0 + 3650 * 86400 * PL_SEC, 0, 0);
}

static void free_node(node *n)
{
    pl_sec_free(n->sec);
    pl_identity_wipe(&n->id);
    free(n);
}

/* Delivers everything `from` has queued to `to`; returns how many. */
static int deliver(node *from, node *to, pl_time now)
{
    int count = from->nout;
    outbox_entry *copy = malloc(sizeof from->out);
    memcpy(copy, from->out, sizeof from->out);
    from->nout = 0;
    for (int i = 0; i < count; i++) {
        CHECK(pl_addr_equal(&copy[i].to, &to->addr));
        pl_sec_receive(to->sec, &from->addr, copy[i].data, copy[i].len, now);
    }
    free(copy);
    return count;
}

/* Runs a full handshake a -> b and checks both ends are established. */
static pl_sec_peer *connect_pair(node *a, node *b, pl_time now)
{
    pl_sec_peer *p = NULL;
    CHECK_EQ(pl_sec_connect(a->sec, b->id.sign_pk, &b->addr, now, &p), PL_SEC_OK);
    CHECK_EQ(deliver(a, b, now), 1);  /* initiation */
    CHECK_EQ(deliver(b, a, now), 1);  /* response */
    CHECK_EQ(deliver(a, b, now), 1);  /* key confirmation */
    CHECK(pl_sec_peer_established(p));
    CHECK_EQ(b->established, 1);
    return p;
}

static void a_handshake_takes_one_round_trip_and_carries_data(void)
{
    node *a = make_node("alice", "192.0.2.1:1000"), *b = make_node("bob", "192.0.2.2:2000");
    CHECK(pl_sec_find(a->sec, b->id.sign_pk) == NULL);
    pl_sec_peer *p = connect_pair(a, b, T0);
    CHECK_EQ(a->established, 1);
    /* Both ends find the other by its signing key. */
    CHECK(pl_sec_find(a->sec, b->id.sign_pk) == p);
    CHECK(pl_sec_find(b->sec, a->id.sign_pk) == b->last_peer);
    CHECK(pl_sec_find(a->sec, a->id.sign_pk) == NULL);
    const pl_cert *bc = pl_sec_peer_cert(p);
    CHECK(bc && strcmp(bc->name, "bob") == 0);
    CHECK(strcmp(pl_sec_peer_cert(b->last_peer)->name, "alice") == 0);
    if (crypto_aead_aes256gcm_is_available()) CHECK_EQ(pl_sec_peer_cipher(p), PL_SEC_CIPHER_AES256GCM);

    CHECK_EQ(pl_sec_send(a->sec, p, (const uint8_t *)"hello bob", 9, T0), PL_SEC_OK);
    CHECK_EQ(deliver(a, b, T0), 1);
    CHECK(b->data == 1 && b->last_len == 9 && memcmp(b->last_data, "hello bob", 9) == 0);
    pl_sec_peer *back = b->last_peer;
    CHECK_EQ(pl_sec_send(b->sec, back, (const uint8_t *)"hi alice", 8, T0), PL_SEC_OK);
    CHECK_EQ(deliver(b, a, T0), 1);
    CHECK(a->data == 1 && memcmp(a->last_data, "hi alice", 8) == 0);
    /* The wire never carries the plaintext. */
    CHECK_EQ(pl_sec_send(a->sec, p, (const uint8_t *)"secret words", 12, T0), PL_SEC_OK);
    CHECK(memmem(a->out[0].data, a->out[0].len, "secret", 6) == NULL);
    CHECK_EQ(a->out[0].len, 12 + PL_SEC_DATA_OVERHEAD);
    pl_sec_close(b->sec, b->last_peer);
    CHECK(pl_sec_find(b->sec, a->id.sign_pk) == NULL);
    free_node(a);
    free_node(b);
}

/* A supernode forwards a request to a peer it has no session with yet from
 * inside the callback that handed it the request: the request must survive. */
static void opening_a_session_inside_a_data_callback_keeps_the_data(void)
{
    node *a = make_node("alice", "192.0.2.1:1000"), *b = make_node("bob", "192.0.2.2:2000");
    node *c = make_node("carol", "192.0.2.3:3000");
    pl_sec_peer *p = connect_pair(a, b, T0);
    b->connect_on_data = c;
    CHECK_EQ(pl_sec_send(a->sec, p, (const uint8_t *)"forward me to carol", 19, T0), PL_SEC_OK);
    CHECK_EQ(deliver(a, b, T0), 1);
    CHECK(b->connect_on_data == NULL);
    CHECK_EQ(b->nout, 1); /* the initiation to carol */
    CHECK(b->last_len == 19 && memcmp(b->last_data, "forward me to carol", 19) == 0);
    free_node(a);
    free_node(b);
    free_node(c);
}

static void chacha_is_used_when_one_side_lacks_aes(void)
{
    node *a = make_node_with("alice", "192.0.2.1:1000", &ca, T0 - PL_SEC, T0 + 86400 * PL_SEC, 0,
                             PL_SEC_CIPHER_CHACHA20POLY1305);
    node *b = make_node("bob", "192.0.2.2:2000");
    pl_sec_peer *p = connect_pair(a, b, T0);
    CHECK_EQ(pl_sec_peer_cipher(p), PL_SEC_CIPHER_CHACHA20POLY1305);
    CHECK_EQ(pl_sec_send(a->sec, p, (const uint8_t *)"x", 1, T0), PL_SEC_OK);
    CHECK_EQ(deliver(a, b, T0), 1);
    CHECK_EQ(b->data, 1);
    free_node(a);
    free_node(b);
}

/* Flips every bit of a captured message, one at a time, and feeds each
 * version to `to`: none may produce an answer or an event. */
static void flip_every_bit(node *to, const pl_addr *from, const uint8_t *msg, size_t len, pl_time now)
{
    uint8_t *m = malloc(len);
    int before_est = to->established, before_data = to->data;
    for (size_t bit = 0; bit < len * 8; bit++) {
        memcpy(m, msg, len);
        m[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        pl_sec_receive(to->sec, from, m, len, now);
        if (to->nout != 0 || to->established != before_est || to->data != before_data) {
            fprintf(stderr, "  bit %zu of %zu accepted\n", bit, len * 8);
            CHECK(0);
        }
    }
    free(m);
}

static void a_flipped_bit_anywhere_in_a_handshake_is_refused(void)
{
    node *a = make_node("alice", "192.0.2.1:1000"), *b = make_node("bob", "192.0.2.2:2000");
    pl_sec_peer *p = NULL;
    CHECK_EQ(pl_sec_connect(a->sec, b->id.sign_pk, &b->addr, T0, &p), PL_SEC_OK);
    outbox_entry init = a->out[0];
    a->nout = 0;
    flip_every_bit(b, &a->addr, init.data, init.len, T0);
    /* The untouched initiation still works afterwards. */
    pl_sec_receive(b->sec, &a->addr, init.data, init.len, T0);
    CHECK_EQ(b->nout, 1);
    outbox_entry resp = b->out[0];
    b->nout = 0;
    flip_every_bit(a, &b->addr, resp.data, resp.len, T0);
    CHECK(!pl_sec_peer_established(p));
    /* The cleartext header is in the transcript: a response whose sender
     * index was changed, with mac1 recomputed by whoever changed it, is
     * still refused (found by fuzz_handshake). */
    outbox_entry moved = resp;
    moved.data[7] ^= 0x04;
    pl_cookie_maker mk;
    pl_cookie_maker_init(&mk);
    pl_cookie_add_macs(&mk, a->id.dh_pk, T0, moved.data, moved.len, false);
    pl_sec_receive(a->sec, &b->addr, moved.data, moved.len, T0);
    CHECK(!pl_sec_peer_established(p));
    CHECK_EQ(a->nout, 0);
    pl_sec_receive(a->sec, &b->addr, resp.data, resp.len, T0);
    CHECK(pl_sec_peer_established(p));
    /* And a data packet. */
    a->nout = 0;
    CHECK_EQ(pl_sec_send(a->sec, p, (const uint8_t *)"payload", 7, T0), PL_SEC_OK);
    outbox_entry data = a->out[0];
    a->nout = 0;
    flip_every_bit(b, &a->addr, data.data, data.len, T0);
    pl_sec_stats st = pl_sec_get_stats(b->sec);
    CHECK(st.drop_auth + st.drop_unknown_index + st.drop_malformed > 0);
    free_node(a);
    free_node(b);
}

static void replayed_packets_are_refused(void)
{
    node *a = make_node("alice", "192.0.2.1:1000"), *b = make_node("bob", "192.0.2.2:2000");
    pl_sec_peer *p = NULL;
    CHECK_EQ(pl_sec_connect(a->sec, b->id.sign_pk, &b->addr, T0, &p), PL_SEC_OK);
    outbox_entry init = a->out[0];
    CHECK_EQ(deliver(a, b, T0), 1);
    outbox_entry resp = b->out[0];
    CHECK_EQ(deliver(b, a, T0), 1);
    CHECK_EQ(deliver(a, b, T0), 1);
    /* A replayed initiation, even much later, gets no answer. */
    pl_sec_receive(b->sec, &a->addr, init.data, init.len, T0 + 5 * PL_SEC);
    CHECK_EQ(b->nout, 0);
    CHECK_EQ(pl_sec_get_stats(b->sec).drop_replay, 1);
    /* A replayed response finds no handshake waiting for it. */
    pl_sec_receive(a->sec, &b->addr, resp.data, resp.len, T0 + 5 * PL_SEC);
    CHECK_EQ(pl_sec_get_stats(a->sec).drop_unknown_index, 1);
    /* A replayed data packet is delivered once. */
    CHECK_EQ(pl_sec_send(a->sec, p, (const uint8_t *)"once", 4, T0), PL_SEC_OK);
    outbox_entry d = a->out[0];
    CHECK_EQ(deliver(a, b, T0), 1);
    CHECK_EQ(b->data, 1);
    pl_sec_receive(b->sec, &a->addr, d.data, d.len, T0);
    pl_sec_receive(b->sec, &a->addr, d.data, d.len, T0 + PL_SEC);
    CHECK_EQ(b->data, 1);
    CHECK_EQ(pl_sec_get_stats(b->sec).drop_replay, 3);
    free_node(a);
    free_node(b);
}

static void reflected_packets_are_refused(void)
{
    node *a = make_node("alice", "192.0.2.1:1000"), *b = make_node("bob", "192.0.2.2:2000");
    pl_sec_peer *p = NULL;
    CHECK_EQ(pl_sec_connect(a->sec, b->id.sign_pk, &b->addr, T0, &p), PL_SEC_OK);
    /* Alice's initiation sent back to her is not meant for her (mac1). */
    outbox_entry init = a->out[0];
    pl_sec_receive(a->sec, &b->addr, init.data, init.len, T0);
    CHECK_EQ(pl_sec_get_stats(a->sec).drop_mac, 1);
    CHECK_EQ(deliver(a, b, T0), 1);
    /* Bob's response sent back to Bob. */
    outbox_entry resp = b->out[0];
    pl_sec_receive(b->sec, &a->addr, resp.data, resp.len, T0);
    CHECK_EQ(b->nout, 1);
    CHECK_EQ(deliver(b, a, T0), 1);
    CHECK_EQ(deliver(a, b, T0), 1);
    /* Alice's data sent back to Alice. */
    CHECK_EQ(pl_sec_send(a->sec, p, (const uint8_t *)"echo?", 5, T0), PL_SEC_OK);
    outbox_entry d = a->out[0];
    a->nout = 0;
    pl_sec_receive(a->sec, &b->addr, d.data, d.len, T0);
    CHECK_EQ(a->data, 0);
    pl_sec_stats st = pl_sec_get_stats(a->sec);
    CHECK_EQ(st.drop_unknown_index + st.drop_auth, 1);
    free_node(a);
    free_node(b);
}

static void certificates_from_another_ca_expired_or_revoked_are_refused(void)
{
    ca_keys rogue;
    crypto_sign_keypair(rogue.pk, rogue.sk);
    node *a = make_node("alice", "192.0.2.1:1000");
    node *minted = make_node_with("bob", "192.0.2.2:2000", &rogue, T0 - PL_SEC, T0 + 86400 * PL_SEC, 0, 0);
    node *expired = make_node_with("carol", "192.0.2.3:3000", &ca, T0 - 86400 * PL_SEC, T0 - PL_SEC, 0, 0);
    node *revoked = make_node("dave", "192.0.2.4:4000");

    /* Alice calls a user whose certificate was "minted elsewhere". */
    CHECK_EQ(pl_sec_connect(a->sec, minted->id.sign_pk, &minted->addr, T0, NULL), PL_SEC_OK);
    CHECK_EQ(deliver(a, minted, T0), 1);
    CHECK_EQ(deliver(minted, a, T0), 1); /* the rogue end answers... */
    CHECK_EQ(pl_sec_get_stats(a->sec).drop_cert, 1);  /* ...and is refused */
    CHECK_EQ(pl_sec_get_stats(a->sec).last_cert_err, PL_CERT_ERR_WRONG_ISSUER);
    CHECK_EQ(a->established, 0);
    /* And the other way round: the rogue end calls Alice. */
    CHECK_EQ(pl_sec_connect(minted->sec, a->id.sign_pk, &a->addr, T0, NULL), PL_SEC_OK);
    CHECK_EQ(deliver(minted, a, T0), 1);
    CHECK_EQ(a->nout, 0);
    CHECK_EQ(pl_sec_get_stats(a->sec).last_cert_err, PL_CERT_ERR_WRONG_ISSUER);

    CHECK_EQ(pl_sec_connect(expired->sec, a->id.sign_pk, &a->addr, T0, NULL), PL_SEC_OK);
    CHECK_EQ(deliver(expired, a, T0), 1);
    CHECK_EQ(a->nout, 0);
    CHECK_EQ(pl_sec_get_stats(a->sec).last_cert_err, PL_CERT_ERR_EXPIRED);

    /* Dave talks to Alice, then the CA revokes him. */
    connect_pair(revoked, a, T0);
    pl_cert dc;
    CHECK_EQ(pl_cert_decode(&dc, revoked->cert, revoked->cert_len), PL_CERT_OK);
    uint64_t serials[] = {dc.serial};
    uint8_t crlbuf[PL_CRL_SIZE(1)];
    size_t crllen;
    CHECK_EQ(pl_crl_build(crlbuf, sizeof crlbuf, &crllen, 1, T0 / PL_SEC, serials, 1, ca.pk, ca.sk), PL_CERT_OK);
    pl_crl crl;
    CHECK_EQ(pl_crl_decode(&crl, crlbuf, crllen), PL_CERT_OK);
    pl_sec_set_crl(a->sec, &crl, T0 + PL_SEC);
    CHECK_EQ(a->revoked, 1); /* the running session is closed */
    /* A new user whose certificate the CA has also revoked cannot connect. */
    free_node(revoked);
    revoked = make_node("dave2", "192.0.2.4:4001");
    uint64_t serials2[] = {dc.serial, next_serial - 1};
    uint8_t crlbuf2[PL_CRL_SIZE(2)];
    CHECK_EQ(pl_crl_build(crlbuf2, sizeof crlbuf2, &crllen, 2, T0 / PL_SEC, serials2, 2, ca.pk, ca.sk), PL_CERT_OK);
    pl_crl crl2;
    CHECK_EQ(pl_crl_decode(&crl2, crlbuf2, crllen), PL_CERT_OK);
    pl_sec_set_crl(a->sec, &crl2, T0 + 2 * PL_SEC);
    CHECK_EQ(pl_sec_connect(revoked->sec, a->id.sign_pk, &a->addr, T0 + 3 * PL_SEC, NULL), PL_SEC_OK);
    CHECK_EQ(deliver(revoked, a, T0 + 3 * PL_SEC), 1);
    CHECK_EQ(a->nout, 0);
    CHECK_EQ(pl_sec_get_stats(a->sec).last_cert_err, PL_CERT_ERR_REVOKED);
    free_node(a);
    free_node(minted);
    free_node(expired);
    free_node(revoked);
}

static void an_impersonator_cannot_answer_for_someone_else(void)
{
    node *a = make_node("alice", "192.0.2.1:1000"), *b = make_node("bob", "192.0.2.2:2000");
    node *m = make_node("mallory", "192.0.2.66:6666");
    /* Alice means to reach Bob, but Mallory sits at the address. */
    b->addr = m->addr;
    CHECK_EQ(pl_sec_connect(a->sec, b->id.sign_pk, &b->addr, T0, NULL), PL_SEC_OK);
    CHECK_EQ(deliver(a, m, T0), 1);
    CHECK_EQ(m->nout, 0);
    CHECK_EQ(pl_sec_get_stats(m->sec).drop_mac, 1);
    /* Mallory presenting Bob's certificate with her own key is refused by
     * Bob's partner: the certificate's key is not the handshake key. */
    node *fake = calloc(1, sizeof *fake);
    fake->id = m->id;
    pl_sec_config cfg = {.identity = &m->id, .cert = b->cert, .cert_len = b->cert_len, .rng = pl_rng_system()};
    pl_sec_io io = {fake, on_send, on_event};
    CHECK_EQ(pl_sec_new(&fake->sec, &cfg, &io), PL_SEC_ERR_CONFIG);
    free(fake);
    free_node(a);
    free_node(b);
    free_node(m);
}

static void sessions_rekey_without_losing_a_packet_and_keys_expire(void)
{
    node *a = make_node("alice", "192.0.2.1:1000"), *b = make_node("bob", "192.0.2.2:2000");
    pl_sec_peer *p = connect_pair(a, b, T0);
    pl_sec_peer *q = b->last_peer;
    /* Both talk every second for five minutes: keys renew on the way. */
    int sent = 0;
    for (pl_time t = T0; t < T0 + 300 * PL_SEC; t += PL_SEC) {
        CHECK_EQ(pl_sec_send(a->sec, p, (const uint8_t *)"tick", 4, t), PL_SEC_OK);
        CHECK_EQ(pl_sec_send(b->sec, q, (const uint8_t *)"tock", 4, t), PL_SEC_OK);
        sent++;
        pl_sec_tick(a->sec, t);
        pl_sec_tick(b->sec, t);
        while (a->nout || b->nout) {
            deliver(a, b, t);
            deliver(b, a, t);
        }
    }
    CHECK_EQ(b->data, sent);
    CHECK_EQ(a->data, sent);
    CHECK(pl_sec_get_stats(a->sec).handshakes_completed >= 3);
    /* Silence: after three minutes the keys are refused, after nine wiped. */
    pl_time quiet = T0 + 300 * PL_SEC;
    for (pl_time t = quiet; t < quiet + 600 * PL_SEC; t += PL_SEC) {
        pl_sec_tick(a->sec, t);
        pl_sec_tick(b->sec, t);
        a->nout = b->nout = 0; /* the network is gone */
    }
    CHECK_EQ(pl_sec_send(a->sec, p, (const uint8_t *)"late", 4, quiet + 600 * PL_SEC), PL_SEC_ERR_NOT_READY);
    CHECK_EQ(a->expired, 1);
    CHECK_EQ(b->expired, 1);
    free_node(a);
    free_node(b);
}

/* An idle link (a node and its supernode exchanging a keepalive every 25 s)
 * with ten-minute keys rekeys once in ten minutes, not every two. */
static void a_longer_key_lifetime_rekeys_less_often(void)
{
    node_key_lifetime_s = 660;
    node *a = make_node("alice", "192.0.2.1:1000"), *b = make_node("bob", "192.0.2.2:2000");
    node_key_lifetime_s = 0;
    pl_sec_peer *p = connect_pair(a, b, T0);
    pl_sec_peer *q = b->last_peer;
    int sent = 0;
    uint64_t at_599 = 0;
    for (pl_time t = T0; t <= T0 + 700 * PL_SEC; t += 25 * PL_SEC) {
        if (t - T0 >= 599 * PL_SEC && !at_599) at_599 = pl_sec_get_stats(a->sec).handshakes_completed;
        CHECK_EQ(pl_sec_send(a->sec, p, (const uint8_t *)"ka", 2, t), PL_SEC_OK);
        CHECK_EQ(pl_sec_send(b->sec, q, (const uint8_t *)"ack", 3, t), PL_SEC_OK);
        sent++;
        pl_sec_tick(a->sec, t);
        pl_sec_tick(b->sec, t);
        while (a->nout || b->nout) {
            deliver(a, b, t);
            deliver(b, a, t);
        }
    }
    CHECK_EQ(at_599, 1); /* only the first handshake before ten minutes */
    CHECK_EQ(pl_sec_get_stats(a->sec).handshakes_completed, 2);
    CHECK_EQ(b->data, sent);
    CHECK_EQ(a->data, sent);
    free_node(a);
    free_node(b);
    /* Lifetimes outside 120 s .. 1 h are refused. */
    node *c = make_node("carol", "192.0.2.3:3000");
    pl_sec_config cfg = {.identity = &c->id, .cert = c->cert, .cert_len = c->cert_len, .rng = pl_rng_system(),
                         .key_lifetime_s = 60};
    pl_sec_io io = {c, on_send, on_event};
    pl_sec *bad = NULL;
    CHECK_EQ(pl_sec_new(&bad, &cfg, &io), PL_SEC_ERR_CONFIG);
    cfg.key_lifetime_s = 7200;
    CHECK_EQ(pl_sec_new(&bad, &cfg, &io), PL_SEC_ERR_CONFIG);
    free_node(c);
}

static void an_unanswered_handshake_is_retried_then_fails(void)
{
    node *a = make_node("alice", "192.0.2.1:1000"), *b = make_node("bob", "192.0.2.2:2000");
    CHECK_EQ(pl_sec_connect(a->sec, b->id.sign_pk, &b->addr, T0, NULL), PL_SEC_OK);
    int sent = a->nout;
    a->nout = 0;
    pl_time t = T0;
    while (a->failed == 0 && t < T0 + 60 * PL_SEC) {
        t = pl_sec_next_timeout(a->sec);
        CHECK(t != PL_TIME_NEVER);
        pl_sec_tick(a->sec, t);
        sent += a->nout;
        a->nout = 0;
    }
    CHECK_EQ(a->failed, 1);
    CHECK(t - T0 >= 20 * PL_SEC && t - T0 < 30 * PL_SEC);
    CHECK(sent >= 4 && sent <= 8); /* 1 s, 2 s, 4 s, 8 s ... back-off */
    free_node(a);
    free_node(b);
}

static void under_load_a_responder_answers_with_a_small_stateless_cookie(void)
{
    node *b = make_node_with("bob", "192.0.2.2:2000", &ca, T0 - PL_SEC, T0 + 86400 * PL_SEC, 1, 0);
    node *a1 = make_node("alice", "192.0.2.1:1000"), *a2 = make_node("amy", "192.0.2.5:1000");
    connect_pair(a1, b, T0);
    /* The second initiation in the same second is over the threshold. */
    pl_sec_peer *p2 = NULL;
    CHECK_EQ(pl_sec_connect(a2->sec, b->id.sign_pk, &b->addr, T0, &p2), PL_SEC_OK);
    size_t init_len = a2->out[0].len;
    CHECK_EQ(deliver(a2, b, T0), 1);
    CHECK_EQ(b->nout, 1);
    CHECK(b->out[0].len < init_len); /* no amplification */
    CHECK_EQ(b->out[0].len, 64);
    CHECK_EQ(pl_sec_get_stats(b->sec).cookies_sent, 1);
    CHECK_EQ(b->established, 1); /* no state was made for amy */
    /* Amy retries at once with mac2 and gets through. */
    CHECK_EQ(deliver(b, a2, T0), 1);
    CHECK_EQ(pl_sec_get_stats(a2->sec).cookies_received, 1);
    CHECK_EQ(deliver(a2, b, T0), 1);
    CHECK_EQ(deliver(b, a2, T0), 1);
    CHECK(pl_sec_peer_established(p2));
    /* The cookie is bound to amy's address: her mac2'd initiation from
     * elsewhere is refused. */
    a2->nout = 0;
    CHECK_EQ(pl_sec_rekey(a2->sec, p2, T0 + 2 * PL_SEC), PL_SEC_OK);
    CHECK_EQ(a2->nout, 1);
    outbox_entry moved = a2->out[0];
    a2->nout = 0;
    pl_addr elsewhere;
    CHECK(pl_addr_parse(&elsewhere, "192.0.2.99:1000", 0));
    uint64_t mac_drops = pl_sec_get_stats(b->sec).drop_mac;
    pl_sec_receive(b->sec, &elsewhere, moved.data, moved.len, T0 + 2 * PL_SEC);
    CHECK_EQ(b->nout, 0);
    CHECK_EQ(pl_sec_get_stats(b->sec).drop_mac, mac_drops + 1);
    free_node(a1);
    free_node(a2);
    free_node(b);
}

static void the_replay_window_accepts_each_counter_once(void)
{
    /* The WireGuard self-test sequence, adapted to our window size. */
    pl_replay r;
    pl_replay_reset(&r);
    const uint64_t W = PL_REPLAY_WINDOW;
    struct { uint64_t n; bool ok; } steps[] = {
        {0, true}, {1, true}, {1, false}, {9, true}, {8, true}, {7, true}, {7, false},
        {W, true}, {W + 1, true}, {0, false}, {2, true}, {W + 1, false}, {3 * W, true},
        {2 * W, false}, {2 * W + 1, true}, {3 * W - 1, true}, {3 * W - 1, false},
        {UINT64_MAX - 1, true}, {UINT64_MAX - 2, true}, {UINT64_MAX - 1, false}, {5, false},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        bool got = pl_replay_accept(&r, steps[i].n);
        if (got != steps[i].ok) fprintf(stderr, "  step %zu counter %llu\n", i, (unsigned long long)steps[i].n);
        CHECK(got == steps[i].ok);
    }
    /* Every counter in a shuffled window arrives once. */
    pl_replay_reset(&r);
    for (uint64_t base = 0; base < 10 * W; base += W / 2) {
        for (uint64_t i = 0; i < W / 2; i++) CHECK(pl_replay_accept(&r, base + (i * 37) % (W / 2)));
        for (uint64_t i = 0; i < W / 2; i++) CHECK(!pl_replay_accept(&r, base + i));
    }
}


static void a_known_peer_must_present_the_signing_key_asked_for(void)
{
    node *a = make_node("alice", "192.0.2.1:1000"), *b = make_node("bob", "192.0.2.2:2000");
    /* The other Ed25519 key with the same X25519 key: the sign bit flipped. */
    uint8_t twin[32];
    memcpy(twin, b->id.sign_pk, 32);
    twin[31] ^= 0x80;
    pl_sec_peer *p = NULL;
    CHECK_EQ(pl_sec_connect(a->sec, twin, &b->addr, T0, &p), PL_SEC_OK);
    /* Outgoing: bob's response carries his real signing key: refused. */
    CHECK_EQ(deliver(a, b, T0), 1);
    CHECK_EQ(deliver(b, a, T0), 1);
    CHECK(!pl_sec_peer_established(p));
    CHECK_EQ(pl_sec_get_stats(a->sec).drop_cert, 1);
    /* Incoming: bob calls alice; the peer she opened for the twin key finds
     * bob's certificate names another signing key: refused. */
    a->nout = 0;
    CHECK_EQ(pl_sec_connect(b->sec, a->id.sign_pk, &a->addr, T0 + PL_SEC, NULL), PL_SEC_OK);
    CHECK_EQ(deliver(b, a, T0 + PL_SEC), 1);
    CHECK_EQ(a->nout, 0);
    CHECK_EQ(pl_sec_get_stats(a->sec).drop_cert, 2);
    CHECK_EQ(a->established, 0);
    free_node(a);
    free_node(b);
}

static void connecting_by_certificate_verifies_it_first(void)
{
    node *a = make_node("alice", "192.0.2.1:1000"), *b = make_node("bob", "192.0.2.2:2000");
    pl_cert bc;
    CHECK_EQ(pl_cert_decode(&bc, b->cert, b->cert_len), PL_CERT_OK);
    pl_cert forged = bc;
    forged.dh_pk[0] ^= 1; /* a directory record with another key in it */
    CHECK_EQ(pl_sec_connect_cert(a->sec, &forged, &b->addr, T0, NULL), PL_SEC_ERR_BAD_CERT);
    CHECK_EQ(a->nout, 0);
    pl_sec_peer *p = NULL;
    CHECK_EQ(pl_sec_connect_cert(a->sec, &bc, &b->addr, T0, &p), PL_SEC_OK);
    CHECK_EQ(deliver(a, b, T0), 1);
    CHECK_EQ(deliver(b, a, T0), 1);
    CHECK(pl_sec_peer_established(p));
    CHECK(strcmp(pl_sec_peer_cert(p)->name, "bob") == 0);
    free_node(a);
    free_node(b);
}

static void a_forged_cookie_reply_does_not_stall_a_handshake(void)
{
    node *a = make_node("alice", "192.0.2.1:1000"), *b = make_node("bob", "192.0.2.2:2000");
    pl_sec_peer *p = NULL;
    CHECK_EQ(pl_sec_connect(a->sec, b->id.sign_pk, &b->addr, T0, &p), PL_SEC_OK);
    outbox_entry init = a->out[0];
    a->nout = 0;
    /* Someone who saw the initiation forges a cookie reply: the reply key
     * comes from bob's public key, so this is possible. */
    pl_cookie_checker forger;
    pl_cookie_checker_init(&forger, b->id.dh_pk);
    uint8_t reply[PL_COOKIE_REPLY_SIZE];
    pl_cookie_make_reply(&forger, pl_rng_system(), T0, reply, pl_get_u32be_test(init.data + 4), init.data, init.len,
                         &a->addr);
    pl_sec_receive(a->sec, &b->addr, reply, sizeof reply, T0);
    CHECK_EQ(a->nout, 1); /* alice sends the same initiation with mac2 */
    CHECK(a->out[0].len == init.len && memcmp(a->out[0].data, init.data, init.len - 16) == 0);
    outbox_entry again = a->out[0];
    a->nout = 0;
    /* Bob answers the original; the copy with the forged cookie is dropped. */
    pl_sec_receive(b->sec, &a->addr, init.data, init.len, T0);
    CHECK_EQ(b->nout, 1);
    pl_sec_receive(b->sec, &a->addr, again.data, again.len, T0);
    CHECK_EQ(b->nout, 1);
    CHECK_EQ(deliver(b, a, T0), 1);
    CHECK(pl_sec_peer_established(p));
    free_node(a);
    free_node(b);
}

static void a_cookie_kept_from_before_a_restart_does_not_spoil_responses(void)
{
    node *b = make_node_with("bob", "192.0.2.2:2000", &ca, T0 - PL_SEC, T0 + 86400 * PL_SEC, 1, 0);
    node *a1 = make_node("alice", "192.0.2.1:1000"), *a2 = make_node("amy", "192.0.2.5:1000");
    connect_pair(a1, b, T0);
    pl_sec_peer *p2 = NULL;
    CHECK_EQ(pl_sec_connect(a2->sec, b->id.sign_pk, &b->addr, T0, &p2), PL_SEC_OK);
    CHECK_EQ(deliver(a2, b, T0), 1);
    CHECK_EQ(deliver(b, a2, T0), 1); /* amy now holds a cookie from bob */
    CHECK_EQ(pl_sec_get_stats(a2->sec).cookies_received, 1);
    a2->nout = 0;
    /* Bob restarts (his cookie secret is gone) and calls amy. */
    pl_sec_free(b->sec);
    pl_sec_config cfg = {.identity = &b->id, .cert = b->cert, .cert_len = b->cert_len, .rng = pl_rng_system(),
                         .accept_incoming = true};
    memcpy(cfg.ca_pk, ca.pk, 32);
    pl_sec_io io = {b, on_send, on_event};
    CHECK_EQ(pl_sec_new(&b->sec, &cfg, &io), PL_SEC_OK);
    b->nout = 0;
    pl_sec_peer *q = NULL;
    CHECK_EQ(pl_sec_connect(b->sec, a2->id.sign_pk, &a2->addr, T0 + 2 * PL_SEC, &q), PL_SEC_OK);
    CHECK_EQ(deliver(b, a2, T0 + 2 * PL_SEC), 1);
    CHECK_EQ(deliver(a2, b, T0 + 2 * PL_SEC), 1);
    CHECK(pl_sec_peer_established(q));
    free_node(a1);
    free_node(a2);
    free_node(b);
}

/* ---- the same cores on the simulator -------------------------------------------- */

static void sim_schedule(node *n);
static void sim_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len, pl_time now)
{
    node *n = ctx;
    (void)to;
    pl_sec_receive(n->sec, from, data, len, now);
    sim_schedule(n);
}

static void sim_timer(void *ctx, pl_time now);
static void sim_schedule(node *n)
{
    if (n->timer_id) pl_simnet_timer_cancel(n->net, n->timer_id);
    n->timer_id = 0;
    pl_time t = pl_sec_next_timeout(n->sec);
    if (t != PL_TIME_NEVER) n->timer_id = pl_simnet_timer(n->net, t, sim_timer, n);
}
static void sim_timer(void *ctx, pl_time now)
{
    node *n = ctx;
    n->timer_id = 0;
    pl_sec_tick(n->sec, now);
    sim_schedule(n);
}

static uint64_t run_sim(uint64_t seed, int pairs, int *established_out)
{
    pl_simnet *net = pl_simnet_new(seed, T0);
    pl_simnet_set_default_link(net, (pl_sim_link){40 * PL_MSEC, 20 * PL_MSEC, 100000}); /* 10% loss */
    node **n = calloc((size_t)pairs * 2, sizeof *n);
    node_rng = pl_simnet_rng(net);
    for (int i = 0; i < 2 * pairs; i++) {
        char name[16], addr[32];
        snprintf(name, sizeof name, "user%d", i);
        snprintf(addr, sizeof addr, "198.51.100.%d:%d", 1 + i % 250, 4000 + i);
        n[i] = make_node(name, addr);
        n[i]->net = net;
        CHECK(pl_simnet_attach(net, &n[i]->addr, sim_recv, n[i]));
    }
    for (int i = 0; i < pairs; i++) {
        CHECK_EQ(pl_sec_connect(n[2 * i]->sec, n[2 * i + 1]->id.sign_pk, &n[2 * i + 1]->addr, T0, NULL), PL_SEC_OK);
        sim_schedule(n[2 * i]);
    }
    /* Once a second every established caller says something, as callers do. */
    for (pl_time t = T0 + PL_SEC; t <= T0 + 30 * PL_SEC; t += PL_SEC) {
        pl_simnet_run_until(net, t);
        for (int i = 0; i < pairs; i++) {
            node *c = n[2 * i];
            if (!c->established) continue;
            CHECK_EQ(pl_sec_send(c->sec, c->last_peer, (const uint8_t *)"hi", 2, t), PL_SEC_OK);
            sim_schedule(c);
        }
    }
    node_rng = NULL;
    int established = 0;
    for (int i = 0; i < 2 * pairs; i++) established += n[i]->established;
    *established_out = established;
    pl_sim_stats st = pl_simnet_stats(net);
    uint64_t trace = st.sent * 1000003 + st.delivered * 31 + st.dropped_loss;
    for (int i = 0; i < 2 * pairs; i++) free_node(n[i]);
    free(n);
    pl_simnet_free(net);
    return trace;
}

static void handshakes_complete_over_a_lossy_simulated_network(void)
{
    int est1 = 0, est2 = 0;
    uint64_t t1 = run_sim(7, 40, &est1);
    CHECK_EQ(est1, 80); /* both ends of all 40 pairs, despite 10% loss */
    uint64_t t2 = run_sim(7, 40, &est2);
    CHECK_EQ(est2, 80);
    CHECK(t1 == t2); /* the same seed, the same run */
    run_sim(8, 40, &est2);
    CHECK_EQ(est2, 80);
}

/* ---- and over real UDP on loopback ------------------------------------------------- */

typedef struct udp_node {
    node *n;
    pl_udp *sock;
    pl_loop *loop;
    pl_timer timer;
} udp_node;

static void udp_send(void *ctx, const pl_addr *to, const uint8_t *data, size_t len)
{
    udp_node *u = ctx;
    CHECK_EQ(pl_udp_send(u->sock, to, data, len), PL_LOOP_OK);
}
static void udp_event(void *ctx, const pl_sec_event *ev) { on_event(((udp_node *)ctx)->n, ev); }
static void udp_rearm(udp_node *u)
{
    pl_time t = pl_sec_next_timeout(u->n->sec);
    if (t == PL_TIME_NEVER) pl_timer_cancel(u->loop, &u->timer);
    else pl_timer_set(u->loop, &u->timer, t);
}
static void udp_recv(void *ctx, pl_udp *sock, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    udp_node *u = ctx;
    pl_sec_receive(u->n->sec, from, data, len, now);
    udp_rearm(u);
}
static void udp_timer(pl_loop *loop, void *ctx)
{
    udp_node *u = ctx;
    pl_sec_tick(u->n->sec, pl_loop_now(loop));
    udp_rearm(u);
}

static void udp_node_open(udp_node *u, pl_loop *loop, const char *name)
{
    memset(u, 0, sizeof *u);
    u->loop = loop;
    u->n = calloc(1, sizeof *u->n);
    pl_identity_generate(&u->n->id, pl_rng_system());
    pl_time now = pl_loop_now(loop);
    make_cert(&ca, &u->n->id, name, next_serial++, now - 60 * PL_SEC, now + 86400 * PL_SEC, u->n->cert, &u->n->cert_len);
    pl_addr bind;
    CHECK(pl_addr_parse(&bind, "127.0.0.1:0", 0));
    pl_loop_err err;
    u->sock = pl_udp_open(loop, &bind, udp_recv, u, &err);
    CHECK(u->sock != NULL);
    CHECK(pl_udp_local_addr(u->sock, &u->n->addr));
    pl_sec_config cfg = {.identity = &u->n->id, .cert = u->n->cert, .cert_len = u->n->cert_len,
                         .rng = pl_rng_system(), .accept_incoming = true};
    memcpy(cfg.ca_pk, ca.pk, 32);
    pl_sec_io io = {u, udp_send, udp_event};
    CHECK_EQ(pl_sec_new(&u->n->sec, &cfg, &io), PL_SEC_OK);
    pl_timer_init(&u->timer, udp_timer, u);
}

static void udp_node_close(udp_node *u)
{
    pl_timer_cancel(u->loop, &u->timer);
    pl_udp_close(u->sock);
    free_node(u->n);
}

static void a_session_runs_over_real_udp_sockets(void)
{
    pl_loop *loop = pl_loop_new();
    CHECK(loop != NULL);
    udp_node a, b;
    udp_node_open(&a, loop, "alice");
    udp_node_open(&b, loop, "bob");
    pl_sec_peer *p = NULL;
    CHECK_EQ(pl_sec_connect(a.n->sec, b.n->id.sign_pk, &b.n->addr, pl_loop_now(loop), &p), PL_SEC_OK);
    udp_rearm(&a);
    for (int i = 0; i < 200 && b.n->established == 0; i++) pl_loop_run_once(loop, 10);
    CHECK(pl_sec_peer_established(p));
    CHECK_EQ(b.n->established, 1);
    /* A thousand packets arrive, in order, over real sockets. */
    for (int i = 0; i < 1000; i++) {
        uint8_t msg[100];
        memset(msg, (uint8_t)i, sizeof msg);
        CHECK_EQ(pl_sec_send(a.n->sec, p, msg, sizeof msg, pl_loop_now(loop)), PL_SEC_OK);
        if (i % 32 == 31) pl_loop_run_once(loop, 0);
    }
    for (int i = 0; i < 200 && b.n->data < 1000; i++) pl_loop_run_once(loop, 10);
    CHECK_EQ(b.n->data, 1000);
    CHECK_EQ(pl_sec_get_stats(b.n->sec).drop_auth, 0);
    udp_node_close(&a);
    udp_node_close(&b);
    pl_loop_free(loop);
}

int main(void)
{
    if (!pl_init()) return 1;
    crypto_sign_keypair(ca.pk, ca.sk);
    RUN(a_handshake_takes_one_round_trip_and_carries_data);
    RUN(opening_a_session_inside_a_data_callback_keeps_the_data);
    RUN(chacha_is_used_when_one_side_lacks_aes);
    RUN(a_flipped_bit_anywhere_in_a_handshake_is_refused);
    RUN(replayed_packets_are_refused);
    RUN(reflected_packets_are_refused);
    RUN(certificates_from_another_ca_expired_or_revoked_are_refused);
    RUN(an_impersonator_cannot_answer_for_someone_else);
    RUN(sessions_rekey_without_losing_a_packet_and_keys_expire);
    RUN(a_longer_key_lifetime_rekeys_less_often);
    RUN(an_unanswered_handshake_is_retried_then_fails);
    RUN(under_load_a_responder_answers_with_a_small_stateless_cookie);
    RUN(the_replay_window_accepts_each_counter_once);
    RUN(a_known_peer_must_present_the_signing_key_asked_for);
    RUN(connecting_by_certificate_verifies_it_first);
    RUN(a_forged_cookie_reply_does_not_stall_a_handshake);
    RUN(a_cookie_kept_from_before_a_restart_does_not_spoil_responses);
    RUN(handshakes_complete_over_a_lossy_simulated_network);
    RUN(a_session_runs_over_real_udp_sockets);
    return pl_test_summary();
}
