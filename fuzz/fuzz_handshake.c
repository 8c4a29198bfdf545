/*
 * fuzz_handshake.c - hostile handshake messages into responders and into an
 * initiator waiting for its answer.
 *
 * Three endpoints are built once and restored from an arena snapshot
 * (sec_fixture.h) before every input:
 *  - r1: bob, a fresh responder (accept_incoming, no peers yet);
 *  - r2: bob again with load_threshold = 1, already past its threshold for
 *    this second (it answered carol's initiation and sent her a cookie), so
 *    initiations without a valid mac2 get cookie replies;
 *  - iw: alice, who has sent an initiation to bob and waits for a response.
 * Bob's endpoints take the datagram as if from alice (or, with bit 0x80 of
 * the first byte, from another address); alice's as if from bob. Then all
 * three tick 25 s later, when alice's unanswered handshake gives up.
 *
 * The first input byte picks how the rest becomes a datagram (low two bits):
 *  0: as is. Seeds are the genuine initiation, response, cookie reply, the
 *     initiation with mac2 that follows the cookie, and data packets.
 *  1: as is, but with mac1 (and, with bit 0x40, mac2 from bob's cookie)
 *     computed afresh for each receiver, so mutations get past the MACs to
 *     the Noise and certificate code.
 *  2: the rest is the plaintext payload of an initiation (timestamp,
 *     ciphers, certificate) that the target encrypts from alice's key to
 *     bob's (bit 0x40: with a valid mac2), so the responder parses hostile
 *     certificates inside authentic handshakes. With bit 0x20 the initiation
 *     is carol's, from her address: r2 already has a session with her, so
 *     the known-peer paths run (timestamp replay, the certificate cache, the
 *     reused key slot).
 *  3: the rest is the plaintext payload of a response (cipher, certificate)
 *     that the target seals as bob would answer alice's initiation.
 *
 * Checks besides crashes: bob's endpoints never report anything; alice
 * reports ESTABLISHED only for a genuine response (mode 0/1: r1's, or r2's
 * to her initiation repeated with mac2, which answers the same handshake) or, in mode 3,
 * exactly when the payload is acceptable (a cipher she allows and a valid
 * certificate for bob's keys); she never reports DATA, and reports FAILED
 * after 25 s exactly when she did not get established. In mode 2, r1 answers
 * exactly when the certificate is valid for alice's keys, a cipher is in
 * common and no mac2 is claimed; r2 answers every initiation without mac2 with one cookie reply,
 * and one with a valid mac2 from the sender's address exactly as r1 would
 * (for carol: only with a timestamp after her first initiation's).
 *
 * Set PARLEY_FUZZ_WRITE_SEEDS=dir to write the seed corpus and exit.
 */
#include "cookie.h"
#include "noise.h"
#include "sec_fixture.h"
#include "wire.h"

#define T1 (FX_T0 + 100 * PL_MSEC) /* inside r2's busy second */
#define T_GIVE_UP (T1 + 25 * PL_SEC)
#define INIT_PREFIX (8 + 32 + 48) /* header, e, encrypted static */
#define RESP_PREFIX 44            /* header, receiver, e */
#define MACS 32
/* An initiation carries a timestamp, the ciphers byte and a certificate. */
#define INIT_MIN (INIT_PREFIX + 9 + PL_CERT_FIXED_SIZE + PL_NAME_MIN + 16 + MACS)
#define INIT_MAX (INIT_PREFIX + 9 + PL_CERT_MAX_SIZE + 16 + MACS)

static fx_node *r1, *r2, *iw, *carol;
static pl_addr other_addr;
static pl_sec_peer *iw_peer;

typedef struct msg {
    uint8_t b[PL_SEC_MAX_DATAGRAM];
    size_t len;
} msg;
static msg init_i, resp1, cookie2, init_i2, resp2, conf, data1;

/* Bob's side of alice's initiation, to seal mode-3 responses with. */
static pl_noise ns_bob;
static uint8_t init_payload[PL_SEC_MAX_DATAGRAM];
static size_t init_payload_len;
/* mode 2: alice's fixed ephemeral key; a cookie maker holding bob's cookie. */
static uint8_t e_sk[32], e_pk[32], er_sk[32], er_pk[32];
static pl_cookie_maker maker_plain, maker_cookie, maker_carol;

static void take(fx_node *n, msg *m)
{
    if (n->nsent != 1) {
        fprintf(stderr, "fuzz_handshake: expected one datagram from %s, have %d\n", n == iw ? "alice" : "bob",
                n->nsent);
        abort();
    }
    m->len = n->sent_len[0];
    memcpy(m->b, n->sent[0], m->len);
    n->nsent = 0;
}

static void reset_all(void)
{
    fx_snapshot_restore();
    fx_reset_counters(r1);
    fx_reset_counters(r2);
    fx_reset_counters(iw);
}

static bool same(const uint8_t *a, size_t alen, const msg *m) { return alen == m->len && memcmp(a, m->b, alen) == 0; }

/* Builds an initiation from alice to bob around a chosen payload. */
static size_t build_initiation(uint8_t *m, const pl_identity *from, const uint8_t *payload, size_t plen,
                               const pl_cookie_maker *maker)
{
    uint8_t ss[32];
    pl_noise ns;
    pl_noise_init(&ns, r1->id.dh_pk);
    m[0] = 1;
    m[1] = m[2] = m[3] = 0;
    m[4] = 0x5a, m[5] = 0, m[6] = 0, m[7] = 1;
    pl_noise_mix_hash(&ns, m, 8);
    memcpy(m + 8, e_pk, 32);
    pl_noise_mix_hash(&ns, e_pk, 32);
    if (!pl_noise_mix_dh(&ns, e_sk, r1->id.dh_pk)) abort();
    pl_noise_encrypt_and_hash(&ns, from->dh_pk, 32, m + 40);
    if (!pl_noise_dh(ss, from->dh_sk, r1->id.dh_pk)) abort();
    pl_noise_mix_key(&ns, ss);
    pl_noise_encrypt_and_hash(&ns, payload, plen, m + INIT_PREFIX);
    size_t len = INIT_PREFIX + plen + 16 + MACS;
    pl_cookie_maker mk = *maker;
    pl_cookie_add_macs(&mk, r1->id.dh_pk, T1, m, len, true);
    return len;
}

/* Builds bob's response to alice's initiation around a chosen payload. */
static size_t build_response(uint8_t *r, const uint8_t *payload, size_t plen)
{
    pl_noise ns = ns_bob;
    r[0] = 2;
    r[1] = r[2] = r[3] = 0;
    r[4] = 0x33, r[5] = 0, r[6] = 0, r[7] = 2;
    memcpy(r + 8, init_i.b + 4, 4);
    memcpy(r + 12, er_pk, 32);
    pl_noise_mix_hash(&ns, r, 12);
    pl_noise_mix_hash(&ns, er_pk, 32);
    if (!pl_noise_mix_dh(&ns, er_sk, init_i.b + 8) || !pl_noise_mix_dh(&ns, er_sk, iw->id.dh_pk)) abort();
    pl_noise_encrypt_and_hash(&ns, payload, plen, r + RESP_PREFIX);
    size_t len = RESP_PREFIX + plen + 16 + MACS;
    pl_cookie_maker mk = maker_plain;
    pl_cookie_add_macs(&mk, iw->id.dh_pk, T1, r, len, false);
    return len;
}

/* Is this certificate one the handshake must take for the holder of id? */
static bool cert_good_for(const uint8_t *bytes, size_t len, const pl_identity *id)
{
    pl_cert c;
    if (pl_cert_decode(&c, bytes, len) != PL_CERT_OK) return false;
    if (memcmp(c.dh_pk, id->dh_pk, 32) != 0 || memcmp(c.sign_pk, id->sign_pk, 32) != 0) return false;
    return pl_cert_verify(&c, fx_ca_pk, T1 / PL_SEC, NULL) == PL_CERT_OK;
}

static bool response_acceptable(const uint8_t *p, size_t plen)
{
    if (plen < 1) return false;
    uint8_t chosen = p[0];
    if (chosen != PL_SEC_CIPHER_CHACHA20POLY1305 && chosen != PL_SEC_CIPHER_AES256GCM) return false;
    if (!(chosen & fx_ciphers_here())) return false;
    return cert_good_for(p + 1, plen - 1, &r1->id);
}

static void set_up(void)
{
    fx_init();
    fx_node_config bob = {.id_seed = 2, .name = "bob", .serial = 2, .addr = "192.0.2.2:2000",
                          .accept_incoming = true, .rng_seed = 21};
    r1 = fx_node_new(&bob);
    bob.load_threshold = 1;
    bob.rng_seed = 22;
    r2 = fx_node_new(&bob);
    iw = fx_node_new(&(fx_node_config){.id_seed = 1, .name = "alice", .serial = 1, .addr = "192.0.2.1:1000",
                                       .accept_incoming = true, .rng_seed = 23});
    carol = fx_node_new(&(fx_node_config){.id_seed = 3, .name = "carol", .serial = 3, .addr = "198.51.100.3:3000",
                                          .accept_incoming = true, .rng_seed = 24});
    if (!pl_addr_parse(&other_addr, "[2001:db8::66]:6666", 0)) abort();

    /* r2 takes carol's initiation, then the same again: over the threshold,
     * so it answers with a cookie and has a cookie secret from now on. */
    msg m, reply;
    if (pl_sec_connect(carol->sec, r2->id.sign_pk, &r2->addr, FX_T0, NULL) != PL_SEC_OK) abort();
    take(carol, &m);
    pl_sec_receive(r2->sec, &carol->addr, m.b, m.len, FX_T0);
    take(r2, &reply);
    if (reply.b[0] != 2) abort();
    pl_sec_receive(r2->sec, &carol->addr, m.b, m.len, FX_T0);
    take(r2, &reply);
    if (reply.len != PL_COOKIE_REPLY_SIZE || pl_sec_get_stats(r2->sec).cookies_sent != 1) abort();
    /* carol keeps that cookie, for mode 2 initiations in her name. */
    pl_cookie_maker_init(&maker_carol);
    memcpy(maker_carol.last_mac1, m.b + m.len - MACS, 16);
    maker_carol.have_last_mac1 = true;
    if (!pl_cookie_consume_reply(&maker_carol, r2->id.dh_pk, T1, reply.b, reply.len)) abort();

    /* Alice calls bob and waits: the state every input starts from. */
    if (pl_sec_connect(iw->sec, r1->id.sign_pk, &r1->addr, FX_T0, &iw_peer) != PL_SEC_OK) abort();
    take(iw, &init_i);
    fx_reset_counters(r1);
    fx_reset_counters(r2);
    fx_reset_counters(iw);
    fx_snapshot_take();

    /* The genuine messages that can follow, each from the snapshot. */
    pl_sec_receive(r1->sec, &iw->addr, init_i.b, init_i.len, T1);
    take(r1, &resp1);
    reset_all();
    pl_sec_receive(r2->sec, &iw->addr, init_i.b, init_i.len, T1);
    take(r2, &cookie2);
    if (cookie2.len != PL_COOKIE_REPLY_SIZE) abort();
    reset_all();
    pl_sec_receive(iw->sec, &r2->addr, cookie2.b, cookie2.len, T1);
    take(iw, &init_i2); /* alice retries at once, with mac2 */
    if (pl_sec_get_stats(iw->sec).cookies_received != 1) abort();
    reset_all();
    pl_sec_receive(r2->sec, &iw->addr, init_i2.b, init_i2.len, T1);
    take(r2, &resp2);
    if (resp2.b[0] != 2) abort();
    reset_all();
    pl_sec_receive(iw->sec, &r1->addr, resp1.b, resp1.len, T1);
    take(iw, &conf);
    if (iw->established != 1) abort();
    if (pl_sec_send(iw->sec, iw_peer, (const uint8_t *)"hello", 5, T1) != PL_SEC_OK) abort();
    take(iw, &data1);
    reset_all();

    /* Bob's half of alice's initiation, as mode 3 continues it. */
    uint8_t s[32], ss[32];
    pl_noise_init(&ns_bob, r1->id.dh_pk);
    pl_noise_mix_hash(&ns_bob, init_i.b, 8);
    pl_noise_mix_hash(&ns_bob, init_i.b + 8, 32);
    init_payload_len = init_i.len - INIT_PREFIX - 16 - MACS;
    if (!pl_noise_mix_dh(&ns_bob, r1->id.dh_sk, init_i.b + 8) ||
        !pl_noise_decrypt_and_hash(&ns_bob, init_i.b + 40, 48, s) || memcmp(s, iw->id.dh_pk, 32) != 0 ||
        !pl_noise_dh(ss, r1->id.dh_sk, s))
        abort();
    pl_noise_mix_key(&ns_bob, ss);
    if (!pl_noise_decrypt_and_hash(&ns_bob, init_i.b + INIT_PREFIX, init_payload_len + 16, init_payload)) abort();

    /* Fixed ephemeral keys for the messages the target builds. */
    for (int i = 0; i < 32; i++) e_sk[i] = (uint8_t)(0x40 + i), er_sk[i] = (uint8_t)(0x80 + i);
    crypto_scalarmult_base(e_pk, e_sk);
    crypto_scalarmult_base(er_pk, er_sk);
    pl_cookie_maker_init(&maker_plain);
    /* A maker holding the cookie r2 gave alice (bound to her mac1). */
    pl_cookie_maker_init(&maker_cookie);
    memcpy(maker_cookie.last_mac1, init_i.b + init_i.len - MACS, 16);
    maker_cookie.have_last_mac1 = true;
    if (!pl_cookie_consume_reply(&maker_cookie, r1->id.dh_pk, T1, cookie2.b, cookie2.len)) abort();
}

static void write_seeds(void)
{
    fx_write_seed2("m0_initiation", 0x00, init_i.b, init_i.len);
    fx_write_seed2("m0_response", 0x00, resp1.b, resp1.len);
    fx_write_seed2("m0_cookie_reply", 0x00, cookie2.b, cookie2.len);
    fx_write_seed2("m0_initiation_mac2", 0x00, init_i2.b, init_i2.len);
    fx_write_seed2("m0_response_to_mac2", 0x00, resp2.b, resp2.len);
    fx_write_seed2("m0_keepalive", 0x00, conf.b, conf.len);
    fx_write_seed2("m0_data", 0x00, data1.b, data1.len);
    fx_write_seed2("m1_initiation", 0x01, init_i.b, init_i.len);
    fx_write_seed2("m1_initiation_mac2", 0x41, init_i.b, init_i.len);
    fx_write_seed2("m1_response", 0x01, resp1.b, resp1.len);
    fx_write_seed2("m2_payload", 0x02, init_payload, init_payload_len);
    fx_write_seed2("m2_payload_mac2", 0x42, init_payload, init_payload_len);
    fx_write_seed2("m2_payload_mac2_elsewhere", 0xc2, init_payload, init_payload_len);
    /* carol's payload: a later timestamp, her certificate. */
    uint8_t cp[9 + PL_CERT_MAX_SIZE];
    pl_put_u64be(cp, T1);
    cp[8] = fx_ciphers_here();
    memcpy(cp + 9, carol->cert, carol->cert_len);
    fx_write_seed2("m2_carol_mac2", 0x62, cp, 9 + carol->cert_len);
    pl_put_u64be(cp, FX_T0);
    fx_write_seed2("m2_carol_mac2_replayed", 0x62, cp, 9 + carol->cert_len);
    uint8_t p[1 + PL_CERT_MAX_SIZE];
    p[0] = PL_SEC_CIPHER_CHACHA20POLY1305;
    memcpy(p + 1, r1->cert, r1->cert_len);
    fx_write_seed2("m3_payload_chacha", 0x03, p, 1 + r1->cert_len);
    p[0] = PL_SEC_CIPHER_AES256GCM;
    fx_write_seed2("m3_payload_aes", 0x03, p, 1 + r1->cert_len);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    set_up();
    if (getenv("PARLEY_FUZZ_WRITE_SEEDS")) {
        write_seeds();
        exit(0);
    }
    return 0;
}

static void check(bool ok, const char *what)
{
    if (ok) return;
    fprintf(stderr, "fuzz_handshake: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    reset_all();
    unsigned mode = data[0] & 3;
    bool mac2 = data[0] & 0x40;
    bool as_carol = mode == 2 && (data[0] & 0x20);
    const pl_identity *sender = as_carol ? &carol->id : &iw->id;
    const pl_addr *sender_addr = as_carol ? &carol->addr : &iw->addr;
    const pl_addr *alice_at = (data[0] & 0x80) ? &other_addr : sender_addr;
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    static uint8_t to_bob[PL_SEC_MAX_DATAGRAM + 64], to_alice[PL_SEC_MAX_DATAGRAM + 64];
    size_t bob_len = n, alice_len = n;
    bool expect_established = false, judged = false;
    bool r1_should_answer = false, r2_should_answer = false, built_initiation = false;

    switch (mode) {
    case 0:
    case 1:
        if (n > PL_SEC_MAX_DATAGRAM) return 0;
        memcpy(to_bob, in, n);
        memcpy(to_alice, in, n);
        if (mode == 1 && n >= MACS) {
            pl_cookie_maker mk = mac2 ? maker_cookie : maker_plain;
            pl_cookie_add_macs(&mk, r1->id.dh_pk, T1, to_bob, n, true);
            mk = maker_plain;
            pl_cookie_add_macs(&mk, iw->id.dh_pk, T1, to_alice, n, false);
        }
        break;
    case 2:
        if (n > PL_SEC_MAX_DATAGRAM - INIT_PREFIX - 16 - MACS) return 0;
        bob_len = alice_len =
            build_initiation(to_bob, sender, in, n, !mac2 ? &maker_plain : as_carol ? &maker_carol : &maker_cookie);
        memcpy(to_alice, to_bob, bob_len);
        built_initiation = true;
        r1_should_answer = n >= 9 && (in[8] & fx_ciphers_here()) && cert_good_for(in + 9, n - 9, sender);
        /* r2 saw carol's first initiation, timestamped FX_T0. */
        r2_should_answer = r1_should_answer && (!as_carol || pl_get_u64be(in) > FX_T0);
        break;
    default:
        if (n > PL_SEC_MAX_DATAGRAM - RESP_PREFIX - 16 - MACS) return 0;
        bob_len = alice_len = build_response(to_alice, in, n);
        memcpy(to_bob, to_alice, bob_len);
        expect_established = response_acceptable(in, n);
        judged = true;
        break;
    }
    /* r2's answer to the initiation repeated with mac2 answers the same
     * handshake (same ephemeral key and index), so it is genuine too. */
    if (!judged) expect_established = same(to_alice, alice_len, &resp1) || same(to_alice, alice_len, &resp2);

    pl_sec_receive(r1->sec, alice_at, to_bob, bob_len, T1);
    pl_sec_receive(r2->sec, alice_at, to_bob, bob_len, T1);
    pl_sec_receive(iw->sec, &r1->addr, to_alice, alice_len, T1);
    int r1_sent = r1->nsent, r2_sent = r2->nsent;
    size_t r2_len = r2_sent ? r2->sent_len[0] : 0;
    uint8_t r2_type = r2_sent ? r2->sent[0][0] : 0;
    int established = iw->established;
    pl_sec_tick(r1->sec, T_GIVE_UP);
    pl_sec_tick(r2->sec, T_GIVE_UP);
    pl_sec_tick(iw->sec, T_GIVE_UP);

    check(r1->established == 0 && r1->data == 0 && r2->established == 0 && r2->data == 0,
          "a responder reported a session from one datagram");
    check(iw->data == 0, "alice reported data");
    check(iw->established == (expect_established ? 1 : 0),
          expect_established ? "alice refused a good response" : "alice took a response she must refuse");
    check(established == iw->established, "alice got established by a timer");
    check(iw->failed == (expect_established ? 0 : 1), "alice's handshake did not end as it should");
    if (built_initiation) {
        bool r1_answers = r1_should_answer && !mac2;
        check(r1_sent == (r1_answers ? 1 : 0), r1_answers ? "r1 ignored a good initiation" : "r1 answered a bad one");
        if (bob_len < INIT_MIN || bob_len > INIT_MAX)
            check(r2_sent == 0, "r2 answered an initiation of the wrong size");
        else if (!mac2)
            check(r2_sent == 1 && r2_len == PL_COOKIE_REPLY_SIZE && r2_type == PL_COOKIE_TYPE,
                  "r2 under load did not answer with a cookie");
        else if (alice_at != sender_addr)
            check(r2_sent == 0, "r2 took a mac2 from the wrong address");
        else
            check(r2_sent == (r2_should_answer ? 1 : 0) && (!r2_sent || r2_type == 2),
                  "r2 with a valid mac2 did not behave as an unloaded responder");
    }
    return 0;
}
