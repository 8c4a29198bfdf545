/* test_envelope.c - end-to-end envelopes: round trips inline and in chunks,
 * every flipped bit refused, wrong recipient, forged sender and another
 * CA refused, no plaintext in the sealed bytes, replays recognised. */
#include <sodium.h>
#include <stdlib.h>
#include <time.h>

#include "envelope.h"
#include "pki.h"
#include "test.h"

#define T0 (1800000000ull * PL_SEC)
#define DAY (86400ull * PL_SEC)

static pl_test_ca ca, other_ca;
static pl_test_user alice, bob, carol, mallory, alice_elsewhere;

static void setup(void)
{
    static bool done;
    if (done) return;
    done = true;
    pl_test_ca_init(&ca);
    pl_test_ca_init(&other_ca);
    pl_test_user_make(&alice, &ca, "alice", T0 - 30 * DAY, T0 + 365 * DAY, NULL);
    pl_test_user_make(&bob, &ca, "bob", T0 - 30 * DAY, T0 + 365 * DAY, NULL);
    pl_test_user_make(&carol, &ca, "carol", T0 - 30 * DAY, T0 + 365 * DAY, NULL);
    pl_test_user_make(&mallory, &ca, "mallory", T0 - 30 * DAY, T0 + 365 * DAY, NULL);
    /* "alice" as certified by a CA nobody pinned. */
    pl_test_user_make(&alice_elsewhere, &other_ca, "alice", T0 - 30 * DAY, T0 + 365 * DAY, NULL);
}

static pl_env_err open_as(pl_test_user *u, pl_env_opened *o, const uint8_t *env, size_t len, pl_time now)
{
    pl_env_recipient me = {&u->id, u->cert.name};
    return pl_env_open(o, env, len, &me, ca.pk, NULL, now, NULL);
}

static bool contains(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0) return true;
    return false;
}

static void chat_round_trip(void)
{
    setup();
    const char *text = "Hello Bob, this is a secret about the surprise party on Friday.";
    uint8_t env[PL_ENV_MAX_SIZE];
    size_t len;
    pl_env_sealed st;
    CHECK_EQ(pl_env_seal(&st, env, sizeof env, &len, &alice.id, alice.cert_bytes, alice.cert_len, &bob.cert,
                         PL_ENV_CHAT, (const uint8_t *)text, strlen(text), T0, pl_rng_system()),
             PL_ENV_OK);
    CHECK_EQ(st.n_chunks, 0);
    CHECK(len <= PL_ENV_MAX_SIZE);
    /* A store can read who it is for and the id, nothing else. */
    pl_env_header h;
    CHECK_EQ(pl_env_peek(&h, env, len), PL_ENV_OK);
    CHECK(strcmp(h.recipient, "bob") == 0);
    CHECK(memcmp(h.id, st.id, 16) == 0);
    CHECK_EQ(h.part, 0);
    CHECK(!contains(env, len, "secret", 6));
    CHECK(!contains(env, len, "alice", 5)); /* the sender is hidden too */
    CHECK(!contains(env, len, alice.id.sign_pk, 8));
    pl_env_opened o;
    CHECK_EQ(open_as(&bob, &o, env, len, T0 + PL_SEC), PL_ENV_OK);
    CHECK(strcmp(o.sender.name, "alice") == 0);
    CHECK(memcmp(o.sender.sign_pk, alice.id.sign_pk, 32) == 0);
    CHECK_EQ(o.content_type, PL_ENV_CHAT);
    CHECK_EQ(o.body_len, strlen(text));
    CHECK(memcmp(o.body, text, strlen(text)) == 0);
    CHECK(o.sent_at == T0);
    CHECK(memcmp(o.id, st.id, 16) == 0);
    pl_env_opened_wipe(&o);
    /* The largest inline body fits; one byte more goes to chunks. */
    uint8_t body[PL_ENV_INLINE_MAX + 1];
    memset(body, 'x', sizeof body);
    pl_test_user longname;
    pl_test_user_make(&longname, &ca, "abcdefghijklmnopqrstuvwxyz012345", T0 - DAY, T0 + DAY, NULL);
    CHECK_EQ(pl_env_seal(&st, env, sizeof env, &len, &longname.id, longname.cert_bytes, longname.cert_len,
                         &longname.cert, PL_ENV_CHAT, body, PL_ENV_INLINE_MAX, T0, pl_rng_system()),
             PL_ENV_OK);
    CHECK_EQ(len, PL_ENV_MAX_SIZE);
    CHECK_EQ(pl_env_chunks_for(PL_ENV_INLINE_MAX + 1), 1);
    pl_env_sealed_wipe(&st);
}

static void voicemail_in_chunks(void)
{
    setup();
    /* Three minutes at 24 kbit/s. */
    size_t n = 180 * 24000 / 8;
    uint8_t *body = malloc(n), *got = malloc(n);
    CHECK(body && got);
    for (size_t i = 0; i < n; i++) body[i] = (uint8_t)(i * 7 + i / 251);
    uint8_t head[PL_ENV_MAX_SIZE];
    size_t head_len;
    pl_env_sealed st;
    CHECK_EQ(pl_env_seal(&st, head, sizeof head, &head_len, &alice.id, alice.cert_bytes, alice.cert_len, &bob.cert,
                         PL_ENV_VOICEMAIL, body, n, T0, pl_rng_system()),
             PL_ENV_OK);
    CHECK_EQ(st.n_chunks, (n + PL_ENV_CHUNK_BODY - 1) / PL_ENV_CHUNK_BODY);
    pl_env_opened o;
    CHECK_EQ(open_as(&bob, &o, head, head_len, T0 + DAY), PL_ENV_OK);
    CHECK_EQ(o.n_chunks, st.n_chunks);
    CHECK_EQ(o.body_len, n);
    size_t total_wire = head_len;
    /* Open the chunks in reverse, as a store might hand them out. */
    for (uint16_t p = st.n_chunks; p >= 1; p--) {
        uint8_t env[PL_ENV_MAX_SIZE];
        size_t len;
        CHECK_EQ(pl_env_seal_chunk(&st, p, env, sizeof env, &len), PL_ENV_OK);
        CHECK(len <= PL_ENV_MAX_SIZE);
        total_wire += len;
        uint16_t part;
        size_t blen;
        uint8_t chunk[PL_ENV_CHUNK_BODY];
        CHECK_EQ(pl_env_open_chunk(&o, env, len, chunk, sizeof chunk, &part, &blen), PL_ENV_OK);
        CHECK_EQ(part, p);
        CHECK_EQ(blen, pl_env_chunk_len(o.body_len, o.n_chunks, p));
        memcpy(got + pl_env_chunk_offset(p), chunk, blen);
        /* Every bit of a few chunks, flipped, is refused. */
        if (p == 1 || p == st.n_chunks) {
            for (size_t bit = 0; bit < len * 8; bit++) {
                env[bit / 8] ^= (uint8_t)(1u << (bit % 8));
                CHECK(pl_env_open_chunk(&o, env, len, chunk, sizeof chunk, &part, &blen) != PL_ENV_OK);
                env[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            }
        }
        if (p == 1) break;
    }
    CHECK(memcmp(got, body, n) == 0);
    printf("     a 3-minute voicemail (%zu bytes): %u chunks, %zu bytes sealed (%.1f%% overhead)\n", n, st.n_chunks,
           total_wire, 100.0 * (double)(total_wire - n) / (double)n);
    /* A chunk of another message under the same recipient is refused. */
    pl_env_sealed st2;
    uint8_t head2[PL_ENV_MAX_SIZE], env[PL_ENV_MAX_SIZE];
    size_t head2_len, len, blen;
    uint16_t part;
    uint8_t chunk[PL_ENV_CHUNK_BODY];
    CHECK_EQ(pl_env_seal(&st2, head2, sizeof head2, &head2_len, &alice.id, alice.cert_bytes, alice.cert_len,
                         &bob.cert, PL_ENV_VOICEMAIL, body, n, T0, pl_rng_system()),
             PL_ENV_OK);
    CHECK_EQ(pl_env_seal_chunk(&st2, 1, env, sizeof env, &len), PL_ENV_OK);
    CHECK_EQ(pl_env_open_chunk(&o, env, len, chunk, sizeof chunk, &part, &blen), PL_ENV_ERR_WRONG_MESSAGE);
    /* Too big a body is refused. */
    uint8_t *big = calloc(1, PL_ENV_MAX_BODY + 1);
    CHECK(big);
    CHECK_EQ(pl_env_seal(&st2, head2, sizeof head2, &head2_len, &alice.id, alice.cert_bytes, alice.cert_len,
                         &bob.cert, PL_ENV_VOICEMAIL, big, PL_ENV_MAX_BODY + 1, T0, pl_rng_system()),
             PL_ENV_ERR_TOO_BIG);
    free(big);
    pl_env_sealed_wipe(&st);
    pl_env_sealed_wipe(&st2);
    pl_env_opened_wipe(&o);
    free(body);
    free(got);
}

static void every_flipped_bit_is_refused(void)
{
    setup();
    const char *text = "meet me at noon";
    uint8_t env[PL_ENV_MAX_SIZE];
    size_t len;
    pl_env_sealed st;
    CHECK_EQ(pl_env_seal(&st, env, sizeof env, &len, &alice.id, alice.cert_bytes, alice.cert_len, &bob.cert,
                         PL_ENV_CHAT, (const uint8_t *)text, strlen(text), T0, pl_rng_system()),
             PL_ENV_OK);
    pl_env_opened o;
    size_t refused = 0;
    for (size_t bit = 0; bit < len * 8; bit++) {
        env[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (open_as(&bob, &o, env, len, T0) != PL_ENV_OK) refused++;
        env[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    CHECK_EQ(refused, len * 8);
    /* Truncated or extended: refused. */
    for (size_t cut = 0; cut < len; cut++) CHECK(open_as(&bob, &o, env, cut, T0) != PL_ENV_OK);
    env[len] = 0;
    CHECK(open_as(&bob, &o, env, len + 1, T0) != PL_ENV_OK);
    CHECK_EQ(open_as(&bob, &o, env, len, T0), PL_ENV_OK);
    pl_env_opened_wipe(&o);
}

static void wrong_recipient_forged_sender_and_other_ca_are_refused(void)
{
    setup();
    const char *text = "for bob only";
    uint8_t env[PL_ENV_MAX_SIZE];
    size_t len;
    pl_env_sealed st;
    pl_env_opened o;
    CHECK_EQ(pl_env_seal(&st, env, sizeof env, &len, &alice.id, alice.cert_bytes, alice.cert_len, &bob.cert,
                         PL_ENV_CHAT, (const uint8_t *)text, strlen(text), T0, pl_rng_system()),
             PL_ENV_OK);
    /* Carol is not bob. */
    CHECK_EQ(open_as(&carol, &o, env, len, T0), PL_ENV_ERR_WRONG_RECIPIENT);
    /* Carol claiming to be bob still lacks his key. */
    pl_env_recipient fake = {&carol.id, "bob"};
    CHECK_EQ(pl_env_open(&o, env, len, &fake, ca.pk, NULL, T0, NULL), PL_ENV_ERR_AUTH);
    /* A supernode relabels it for carol: the header is authenticated, so
     * carol cannot open it either. */
    {
        pl_env_header h;
        CHECK_EQ(pl_env_peek(&h, env, len), PL_ENV_OK);
        uint8_t relabelled[PL_ENV_MAX_SIZE];
        size_t at = h.header_len - 3, rest = len - h.header_len;
        memcpy(relabelled, env, at);
        relabelled[at - 1] = 5;
        memcpy(relabelled + at, "carol", 5);
        memcpy(relabelled + at + 5, env + h.header_len, rest);
        CHECK_EQ(pl_env_peek(&h, relabelled, at + 5 + rest), PL_ENV_OK);
        CHECK(strcmp(h.recipient, "carol") == 0);
        CHECK_EQ(open_as(&carol, &o, relabelled, at + 5 + rest, T0), PL_ENV_ERR_AUTH);
    }

    /* Mallory seals to bob in alice's name: alice's certificate, mallory's
     * signing key. The certificate verifies; the signature does not. */
    pl_identity forger = mallory.id;
    CHECK(pl_env_seal(&st, env, sizeof env, &len, &forger, alice.cert_bytes, alice.cert_len, &bob.cert, PL_ENV_CHAT,
                      (const uint8_t *)text, strlen(text), T0, pl_rng_system()) == PL_ENV_ERR_ARG);
    /* The sealer refuses that, so forge by hand: seal as mallory, then
     * swap alice's certificate in and re-encrypt, as a supernode that
     * knows bob's public key could. */
    {
        /* Build the plaintext mallory would: alice's cert, mallory's signature. */
        pl_identity m2 = mallory.id;
        memcpy(m2.sign_pk, alice.id.sign_pk, 32); /* claims alice's key; signs with mallory's secret */
        uint8_t env2[PL_ENV_MAX_SIZE];
        size_t len2;
        CHECK_EQ(pl_env_seal(&st, env2, sizeof env2, &len2, &m2, alice.cert_bytes, alice.cert_len, &bob.cert,
                             PL_ENV_CHAT, (const uint8_t *)text, strlen(text), T0, pl_rng_system()),
                 PL_ENV_OK);
        CHECK_EQ(open_as(&bob, &o, env2, len2, T0), PL_ENV_ERR_SIGNATURE);
    }
    /* "alice" certified by another CA: refused as a certificate. */
    CHECK_EQ(pl_env_seal(&st, env, sizeof env, &len, &alice_elsewhere.id, alice_elsewhere.cert_bytes,
                         alice_elsewhere.cert_len, &bob.cert, PL_ENV_CHAT, (const uint8_t *)text, strlen(text), T0,
                         pl_rng_system()),
             PL_ENV_OK);
    pl_cert_err ce;
    pl_env_recipient me = {&bob.id, "bob"};
    CHECK_EQ(pl_env_open(&o, env, len, &me, ca.pk, NULL, T0, &ce), PL_ENV_ERR_CERT);
    CHECK_EQ(ce, PL_CERT_ERR_WRONG_ISSUER);
    /* A revoked sender: refused with the CRL. */
    CHECK_EQ(pl_env_seal(&st, env, sizeof env, &len, &alice.id, alice.cert_bytes, alice.cert_len, &bob.cert,
                         PL_ENV_CHAT, (const uint8_t *)text, strlen(text), T0, pl_rng_system()),
             PL_ENV_OK);
    uint8_t crl_buf[PL_CRL_SIZE(1)];
    size_t crl_len;
    uint64_t serial = alice.cert.serial;
    CHECK_EQ(pl_crl_build(crl_buf, sizeof crl_buf, &crl_len, 1, T0 / PL_SEC, &serial, 1, ca.pk, ca.sk), PL_CERT_OK);
    pl_crl crl;
    CHECK_EQ(pl_crl_decode(&crl, crl_buf, crl_len), PL_CERT_OK);
    CHECK_EQ(pl_env_open(&o, env, len, &me, ca.pk, &crl, T0, &ce), PL_ENV_ERR_CERT);
    CHECK_EQ(ce, PL_CERT_ERR_REVOKED);
    /* Too old, or from the future. */
    CHECK_EQ(open_as(&bob, &o, env, len, T0 + PL_ENV_MAX_AGE + PL_SEC), PL_ENV_ERR_TOO_OLD);
    CHECK_EQ(open_as(&bob, &o, env, len, T0 - PL_ENV_MAX_SKEW - PL_SEC), PL_ENV_ERR_FUTURE);
    CHECK_EQ(open_as(&bob, &o, env, len, T0 + 29 * DAY), PL_ENV_OK);
    pl_env_opened_wipe(&o);
    pl_env_sealed_wipe(&st);
}

static void replays_are_recognised(void)
{
    setup();
    pl_env_seen seen;
    CHECK_EQ(pl_env_seen_init(&seen, 8, NULL, pl_rng_system()), PL_ENV_OK);
    uint8_t env[PL_ENV_MAX_SIZE];
    size_t len;
    pl_env_sealed st;
    pl_env_opened o;
    CHECK_EQ(pl_env_seal(&st, env, sizeof env, &len, &alice.id, alice.cert_bytes, alice.cert_len, &bob.cert,
                         PL_ENV_CHAT, (const uint8_t *)"hi", 2, T0, pl_rng_system()),
             PL_ENV_OK);
    CHECK_EQ(open_as(&bob, &o, env, len, T0), PL_ENV_OK);
    CHECK_EQ(pl_env_seen_check(&seen, o.id, o.sent_at, T0), PL_ENV_OK);
    CHECK_EQ(pl_env_seen_add(&seen, o.id, o.sent_at, T0), PL_ENV_OK);
    /* The same bytes again, an hour later: opens, and is a replay. */
    CHECK_EQ(open_as(&bob, &o, env, len, T0 + 3600 * PL_SEC), PL_ENV_OK);
    CHECK_EQ(pl_env_seen_check(&seen, o.id, o.sent_at, T0 + 3600 * PL_SEC), PL_ENV_ERR_REPLAY);
    /* Fill the set: the oldest is forgotten, and the floor makes sure it
     * cannot come back as new. */
    uint8_t first[16];
    memcpy(first, o.id, 16);
    for (int i = 1; i <= 8; i++) {
        uint8_t id[16];
        randombytes_buf(id, sizeof id);
        CHECK_EQ(pl_env_seen_add(&seen, id, T0 + (pl_time)i * PL_SEC, T0 + 10 * PL_SEC), PL_ENV_OK);
    }
    CHECK_EQ(seen.count, 8);
    CHECK_EQ(pl_env_seen_check(&seen, first, T0, T0 + 10 * PL_SEC), PL_ENV_ERR_TOO_OLD);
    /* Something newer than the floor is still accepted. */
    uint8_t id[16];
    randombytes_buf(id, sizeof id);
    CHECK_EQ(pl_env_seen_check(&seen, id, T0 + 20 * PL_SEC, T0 + 20 * PL_SEC), PL_ENV_OK);
    pl_env_seen_free(&seen);
    pl_env_opened_wipe(&o);
    pl_env_sealed_wipe(&st);
}

static void sealing_costs(void)
{
    setup();
    uint8_t env[PL_ENV_MAX_SIZE];
    size_t len;
    pl_env_sealed st;
    pl_env_opened o;
    const char *text = "a typical chat line of some forty bytes";
    struct timespec a, b;
    int n = 200;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++)
        CHECK_EQ(pl_env_seal(&st, env, sizeof env, &len, &alice.id, alice.cert_bytes, alice.cert_len, &bob.cert,
                             PL_ENV_CHAT, (const uint8_t *)text, strlen(text), T0, pl_rng_system()),
                 PL_ENV_OK);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double seal_us = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e3 / n;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) CHECK_EQ(open_as(&bob, &o, env, len, T0), PL_ENV_OK);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double open_us = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e3 / n;
    printf("     a %zu-byte chat envelope (%zu bytes of text): seal %.0f us, open %.0f us\n", len, strlen(text),
           seal_us, open_us);
    pl_env_opened_wipe(&o);
}

int main(void)
{
    if (!pl_init()) return 1;
    RUN(chat_round_trip);
    RUN(voicemail_in_chunks);
    RUN(every_flipped_bit_is_refused);
    RUN(wrong_recipient_forged_sender_and_other_ca_are_refused);
    RUN(replays_are_recognised);
    RUN(sealing_costs);
    return pl_test_summary();
}
