/*
 * fuzz_record.c - hostile bytes into the directory record decoder, verifier
 * and the store's decision.
 *
 * Checks besides crashes:
 *  - a record that decodes encodes back to exactly the input bytes (the
 *    encoding is canonical), and is already in canonical order (the sort
 *    helpers change nothing);
 *  - verify, newer and slot_offer never crash, with the input as the
 *    candidate and as the record a store holds;
 *  - an empty slot takes the input exactly when it verifies, and a slot
 *    holding the input keeps it when offered the same bytes;
 *  - a CRL changes a verdict only into "certificate revoked".
 *
 * Set PARLEY_FUZZ_WRITE_SEEDS=dir to write the seed corpus (records signed
 * by the fixture user, in several shapes) and exit.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley.h"
#include "record.h"

#define T0_S 1800000000ull

static uint8_t ca_pk[32], ca_sk[64];
static pl_identity alice;
static uint8_t alice_cert[PL_CERT_MAX_SIZE];
static size_t alice_cert_len;
static pl_crl fixed_crl; /* revokes alice's serial (7) and 1000 */
static uint8_t fixed_crl_buf[PL_CRL_SIZE(2)];
static uint8_t held[PL_RECORD_MAX_SIZE]; /* a good record of alice's, sequence 100 */
static size_t held_len;

static pl_addr addr(const char *text)
{
    pl_addr a;
    if (!pl_addr_parse(&a, text, 0)) abort();
    return a;
}

static size_t make_record(uint8_t *out, uint64_t sequence, bool private_mode, unsigned n_sn, unsigned n_cand,
                          const pl_identity *id, const uint8_t *cert, size_t cert_len)
{
    pl_record r;
    memset(&r, 0, sizeof r);
    r.version = PL_RECORD_VERSION;
    r.flags = private_mode ? PL_RECORD_F_PRIVATE : 0;
    r.nat_mapping = PL_NAT_ENDPOINT_INDEPENDENT;
    r.nat_filtering = PL_NAT_ADDRESS_DEPENDENT;
    r.capabilities = PL_CAP_VOICE | PL_CAP_CHAT | 0x80000000u;
    r.sequence = sequence;
    r.issued_at = T0_S;
    r.expires_at = T0_S + 600;
    r.n_supernodes = (uint8_t)n_sn;
    for (unsigned i = 0; i < n_sn; i++) {
        memset(r.supernodes[i].pk, 0x10 * (int)(i + 1), 32);
        r.supernodes[i].addr = addr(i % 2 ? "[2001:db8::1]:7400" : "203.0.113.1:7400");
        r.supernodes[i].addr.ip[3] = (uint8_t)(i + 1);
    }
    r.n_candidates = (uint8_t)n_cand;
    for (unsigned i = 0; i < n_cand; i++) {
        pl_record_candidate *c = &r.candidates[i];
        c->type = (uint8_t)(1 + i % 4);
        c->transport = (uint8_t)(1 + i % 2);
        c->priority = 1000 - 10 * i;
        c->addr = addr(i % 2 ? "[2001:db8::10]:5000" : "198.51.100.10:5000");
        c->addr.port = (uint16_t)(5000 + i);
    }
    pl_record_sort_supernodes(&r);
    pl_record_sort_candidates(&r);
    size_t len = 0;
    if (pl_record_sign(&r, id, cert, cert_len) != PL_RECORD_OK ||
        pl_record_encode(&r, out, PL_RECORD_MAX_SIZE, &len) != PL_RECORD_OK)
        abort();
    return len;
}

static void write_seed(const char *dir, const char *name, const uint8_t *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static void write_seeds(const char *dir)
{
    uint8_t buf[PL_RECORD_MAX_SIZE];
    write_seed(dir, "record_v4_v6", buf, make_record(buf, 100, false, 2, 4, &alice, alice_cert, alice_cert_len));
    write_seed(dir, "record_newer", buf, make_record(buf, 101, false, 2, 4, &alice, alice_cert, alice_cert_len));
    write_seed(dir, "record_private", buf, make_record(buf, 102, true, 1, 0, &alice, alice_cert, alice_cert_len));
    write_seed(dir, "record_empty", buf, make_record(buf, 1, false, 0, 0, &alice, alice_cert, alice_cert_len));
    /* The largest record: every supernode and candidate, a 32-character
     * name. */
    pl_identity id;
    uint8_t seed[32] = {2};
    if (pl_identity_from_seed(&id, seed) != PL_IDENTITY_OK) abort();
    pl_cert c;
    memset(&c, 0, sizeof c);
    c.version = PL_CERT_VERSION;
    c.serial = 8;
    c.not_before = T0_S - 3600;
    c.not_after = T0_S + 86400;
    memcpy(c.sign_pk, id.sign_pk, 32);
    memcpy(c.dh_pk, id.dh_pk, 32);
    c.name_len = 32;
    memcpy(c.name, "a.very-long_name.with-32-chars.9", 32);
    pl_cert_sign(&c, ca_pk, ca_sk);
    uint8_t cert[PL_CERT_MAX_SIZE];
    size_t cert_len;
    if (pl_cert_encode(&c, cert, sizeof cert, &cert_len) != PL_CERT_OK) abort();
    size_t n = make_record(buf, 5, false, PL_RECORD_MAX_SUPERNODES, PL_RECORD_MAX_CANDIDATES, &id, cert, cert_len);
    write_seed(dir, "record_largest", buf, n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!pl_init()) abort();
    uint8_t seed[32] = {0xca};
    crypto_sign_seed_keypair(ca_pk, ca_sk, seed);
    uint8_t user_seed[32] = {1};
    if (pl_identity_from_seed(&alice, user_seed) != PL_IDENTITY_OK) abort();
    pl_cert c;
    memset(&c, 0, sizeof c);
    c.version = PL_CERT_VERSION;
    c.serial = 7;
    c.not_before = T0_S - 3600;
    c.not_after = T0_S + 86400;
    memcpy(c.sign_pk, alice.sign_pk, 32);
    memcpy(c.dh_pk, alice.dh_pk, 32);
    c.name_len = 5;
    memcpy(c.name, "alice", 5);
    pl_cert_sign(&c, ca_pk, ca_sk);
    if (pl_cert_encode(&c, alice_cert, sizeof alice_cert, &alice_cert_len) != PL_CERT_OK) abort();
    uint64_t serials[] = {7, 1000};
    size_t len;
    if (pl_crl_build(fixed_crl_buf, sizeof fixed_crl_buf, &len, 1, T0_S, serials, 2, ca_pk, ca_sk) != PL_CERT_OK ||
        pl_crl_decode(&fixed_crl, fixed_crl_buf, len) != PL_CERT_OK)
        abort();
    held_len = make_record(held, 100, false, 2, 4, &alice, alice_cert, alice_cert_len);
    const char *dir = getenv("PARLEY_FUZZ_WRITE_SEEDS");
    if (dir) {
        write_seeds(dir);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The store's decision, whatever the bytes, both ways round. */
    pl_record_err why;
    pl_record_offer fresh = pl_record_slot_offer(NULL, 0, data, size, ca_pk, NULL, T0_S, "alice", &why);
    (void)pl_record_slot_offer(held, held_len, data, size, ca_pk, NULL, T0_S, "alice", &why);
    (void)pl_record_slot_offer(held, held_len, data, size, ca_pk, &fixed_crl, T0_S + 300, NULL, &why);
    (void)pl_record_slot_offer(data, size, held, held_len, ca_pk, NULL, T0_S, "alice", &why);
    (void)pl_record_slot_offer(data, size, held, held_len, ca_pk, NULL, T0_S + 1000, "ALICE", &why);

    pl_record r;
    if (pl_record_decode(&r, data, size) != PL_RECORD_OK) {
        if (fresh != PL_RECORD_OFFER_REFUSE) abort();
        return 0;
    }
    uint8_t out[PL_RECORD_MAX_SIZE];
    size_t len = 0;
    if (pl_record_encode(&r, out, sizeof out, &len) != PL_RECORD_OK) abort();
    if (len != size || memcmp(out, data, size) != 0) abort(); /* not canonical */
    pl_record sorted = r;
    pl_record_sort_supernodes(&sorted);
    pl_record_sort_candidates(&sorted);
    if (memcmp(sorted.supernodes, r.supernodes, sizeof r.supernodes) != 0 ||
        memcmp(sorted.candidates, r.candidates, sizeof r.candidates) != 0)
        abort();

    pl_cert_err ce;
    pl_record_err v = pl_record_verify(&r, ca_pk, NULL, T0_S, "alice", &ce);
    if ((v == PL_RECORD_ERR_CERT) != (ce != PL_CERT_OK)) abort();
    /* An empty slot takes exactly what verifies. */
    if ((v == PL_RECORD_OK) != (fresh == PL_RECORD_OFFER_REPLACE)) abort();
    pl_record_err vc = pl_record_verify(&r, ca_pk, &fixed_crl, T0_S, "alice", &ce);
    /* The certificate is checked first: a CRL can turn any verdict of the
     * later checks (name, signature, time) into "revoked", and no other. */
    if (v != vc && !(vc == PL_RECORD_ERR_CERT && ce == PL_CERT_ERR_REVOKED && v != PL_RECORD_ERR_CERT &&
                     v != PL_RECORD_ERR_MALFORMED))
        abort();
    (void)pl_record_verify(&r, ca_pk, NULL, r.issued_at, NULL, NULL);
    (void)pl_record_verify(&r, ca_pk, NULL, r.expires_at, NULL, NULL);
    (void)pl_record_verify(&r, ca_pk, NULL, UINT64_MAX, NULL, NULL);
    (void)pl_record_verify(&r, ca_pk, NULL, 0, NULL, NULL);

    /* A slot that holds a good record keeps it when it comes again. */
    if (v == PL_RECORD_OK &&
        pl_record_slot_offer(data, size, data, size, ca_pk, NULL, T0_S, "alice", &why) != PL_RECORD_OFFER_KEEP)
        abort();

    pl_record h;
    int order;
    if (pl_record_decode(&h, held, held_len) != PL_RECORD_OK) abort();
    pl_record_err ne = pl_record_newer(&r, &h, &order);
    if (ne == PL_RECORD_OK && order == 0 && (size != held_len || memcmp(data, held, size) != 0)) abort();
    if (pl_record_newer(&r, &r, &order) != PL_RECORD_OK || order != 0) abort();
    return 0;
}
