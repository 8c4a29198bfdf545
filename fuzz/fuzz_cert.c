/*
 * fuzz_cert.c - hostile bytes into the certificate and CRL decoders.
 *
 * The first byte chooses: even, the rest is a certificate; odd, a CRL.
 * Checks besides crashes:
 *  - a certificate that decodes encodes back to exactly the input bytes
 *    (the encoding is canonical), and verifying it does not crash;
 *  - a CRL that decodes answers pl_crl_contains correctly for every serial
 *    it lists and for the values between them, and one that verifies under
 *    the fixture CA is byte for byte what pl_crl_build makes of its fields.
 *
 * Set PARLEY_FUZZ_WRITE_SEEDS=dir to write the seed corpus (a valid
 * certificate, a valid CRL, an empty CRL) and exit.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley.h"

#define T0_S 1800000000ull

static uint8_t ca_pk[32], ca_sk[64];
static pl_crl fixed_crl; /* revokes serials 2, 7 and 1000 */
static uint8_t fixed_crl_buf[PL_CRL_SIZE(3)];

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

static void write_seed(const char *dir, const char *name, uint8_t selector, const uint8_t *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fputc(selector, f) == EOF || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static void write_seeds(const char *dir)
{
    pl_identity id;
    uint8_t seed[32] = {1};
    if (pl_identity_from_seed(&id, seed) != PL_IDENTITY_OK) abort();
    pl_cert c;
    memset(&c, 0, sizeof c);
    c.version = PL_CERT_VERSION;
    c.serial = 7;
    c.not_before = T0_S - 3600;
    c.not_after = T0_S + 86400;
    memcpy(c.sign_pk, id.sign_pk, 32);
    memcpy(c.dh_pk, id.dh_pk, 32);
    c.name_len = 5;
    memcpy(c.name, "alice", 5);
    pl_cert_sign(&c, ca_pk, ca_sk);
    uint8_t buf[PL_CERT_MAX_SIZE];
    size_t len;
    if (pl_cert_encode(&c, buf, sizeof buf, &len) != PL_CERT_OK) abort();
    write_seed(dir, "cert_alice", 0, buf, len);
    c.serial = 8;
    c.name_len = 32;
    memcpy(c.name, "a.very-long_name.with-32-chars.9", 32);
    pl_cert_sign(&c, ca_pk, ca_sk);
    if (pl_cert_encode(&c, buf, sizeof buf, &len) != PL_CERT_OK) abort();
    write_seed(dir, "cert_long_name", 0, buf, len);
    write_seed(dir, "crl_three", 1, fixed_crl_buf, sizeof fixed_crl_buf);
    uint8_t empty[PL_CRL_SIZE(0)];
    if (pl_crl_build(empty, sizeof empty, &len, 1, T0_S, NULL, 0, ca_pk, ca_sk) != PL_CERT_OK) abort();
    write_seed(dir, "crl_empty", 1, empty, len);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!pl_init()) abort();
    uint8_t seed[32] = {0xca};
    crypto_sign_seed_keypair(ca_pk, ca_sk, seed);
    uint64_t serials[] = {2, 7, 1000};
    size_t len;
    if (pl_crl_build(fixed_crl_buf, sizeof fixed_crl_buf, &len, 3, T0_S, serials, 3, ca_pk, ca_sk) != PL_CERT_OK ||
        pl_crl_decode(&fixed_crl, fixed_crl_buf, len) != PL_CERT_OK)
        abort();
    const char *dir = getenv("PARLEY_FUZZ_WRITE_SEEDS");
    if (dir) {
        write_seeds(dir);
        exit(0);
    }
    return 0;
}

static void fuzz_cert(const uint8_t *data, size_t size)
{
    pl_cert c;
    if (pl_cert_decode(&c, data, size) != PL_CERT_OK) return;
    uint8_t out[PL_CERT_MAX_SIZE + 1];
    size_t len = 0;
    if (pl_cert_encode(&c, out, sizeof out, &len) != PL_CERT_OK) abort();
    if (len != size || memcmp(out, data, size) != 0) abort(); /* not canonical */
    if (strlen(c.name) != c.name_len) abort();
    pl_cert_err e1 = pl_cert_verify(&c, ca_pk, T0_S, NULL);
    pl_cert_err e2 = pl_cert_verify(&c, ca_pk, T0_S, &fixed_crl);
    /* A CRL can only add the one verdict "revoked", and only to a
     * certificate that was otherwise good. */
    if (e1 != e2 && !(e1 == PL_CERT_OK && e2 == PL_CERT_ERR_REVOKED)) abort();
    (void)pl_cert_verify(&c, ca_pk, c.not_before, NULL);
    (void)pl_cert_verify(&c, ca_pk, c.not_after, NULL);
}

static void fuzz_crl(const uint8_t *data, size_t size)
{
    pl_crl crl;
    if (pl_crl_decode(&crl, data, size) != PL_CERT_OK) return;
    if (size != PL_CRL_SIZE(crl.count)) abort();
    pl_cert_err verified = pl_crl_verify(&crl, ca_pk);
    (void)pl_crl_verify(&crl, fixed_crl.issuer); /* any 32 bytes as a key */
    /* Every listed serial is found, and nothing strictly between two. */
    uint64_t prev = 0;
    for (uint32_t i = 0; i < crl.count; i++) {
        uint64_t s = be64(crl.serials_be + 8 * (size_t)i);
        if (!pl_crl_contains(&crl, s)) abort();
        if (i > 0 && s - prev > 1 && pl_crl_contains(&crl, prev + 1)) abort();
        if (i == 0 && s > 0 && pl_crl_contains(&crl, s - 1)) abort();
        prev = s;
    }
    if (crl.count == 0 && (pl_crl_contains(&crl, 0) || pl_crl_contains(&crl, UINT64_MAX))) abort();
    if (crl.count > 0 && prev < UINT64_MAX && pl_crl_contains(&crl, prev + 1)) abort();
    if (verified == PL_CERT_OK) {
        /* Signed by our CA: the list must be exactly what the CA builds. */
        uint64_t *serials = malloc(sizeof *serials * (crl.count ? crl.count : 1));
        if (!serials) abort();
        for (uint32_t i = 0; i < crl.count; i++) serials[i] = be64(crl.serials_be + 8 * (size_t)i);
        uint8_t *buf = malloc(size);
        size_t len = 0;
        if (!buf || pl_crl_build(buf, size, &len, crl.number, crl.issued_at, serials, crl.count, ca_pk, ca_sk) !=
                        PL_CERT_OK)
            abort();
        if (len != size || memcmp(buf, data, size) != 0) abort();
        free(buf);
        free(serials);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (data[0] & 1) fuzz_crl(data + 1, size - 1);
    else fuzz_cert(data + 1, size - 1);
    return 0;
}
