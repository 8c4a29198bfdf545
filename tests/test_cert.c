/* test_cert.c - names, key files, certificates and revocation lists. */
#include <sodium.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "parley.h"
#include "test.h"
#include "wire.h"

#define NOW 1800000000ull /* a fixed Unix time for validity checks */

typedef struct ca_keys {
    uint8_t pk[32], sk[64];
} ca_keys;

static ca_keys make_ca(void)
{
    ca_keys ca;
    crypto_sign_keypair(ca.pk, ca.sk);
    return ca;
}

static pl_cert make_cert(const ca_keys *ca, const pl_identity *id, const char *name, uint64_t serial)
{
    pl_cert c;
    memset(&c, 0, sizeof c);
    c.version = PL_CERT_VERSION;
    c.serial = serial;
    c.not_before = NOW - 3600;
    c.not_after = NOW + 365 * 86400ull;
    memcpy(c.sign_pk, id->sign_pk, 32);
    memcpy(c.dh_pk, id->dh_pk, 32);
    c.name_len = (uint8_t)strlen(name);
    memcpy(c.name, name, c.name_len);
    pl_cert_sign(&c, ca->pk, ca->sk);
    return c;
}

static void names_follow_the_rules(void)
{
    char out[PL_NAME_MAX + 1];
    CHECK_EQ(pl_name_normalize("Alice", out), PL_NAME_OK);
    CHECK(strcmp(out, "alice") == 0);
    CHECK_EQ(pl_name_normalize("bob.smith_2-x", out), PL_NAME_OK);
    CHECK_EQ(pl_name_normalize("ab", out), PL_NAME_ERR_LENGTH);
    CHECK_EQ(pl_name_normalize("abcdefghijabcdefghijabcdefghijabc", out), PL_NAME_ERR_LENGTH);
    CHECK_EQ(pl_name_normalize("abcdefghijabcdefghijabcdefghijab", out), PL_NAME_OK);
    CHECK_EQ(pl_name_normalize("al ice", out), PL_NAME_ERR_CHARACTER);
    CHECK_EQ(pl_name_normalize("al\xc3\xa9", out), PL_NAME_ERR_CHARACTER);
    CHECK_EQ(pl_name_normalize(".alice", out), PL_NAME_ERR_EDGE);
    CHECK_EQ(pl_name_normalize("alice-", out), PL_NAME_ERR_EDGE);
    CHECK_EQ(pl_name_normalize("Admin", out), PL_NAME_ERR_RESERVED);
    CHECK_EQ(pl_name_normalize("root", out), PL_NAME_ERR_RESERVED);
}

static void certificate_round_trips_canonically(void)
{
    ca_keys ca = make_ca();
    pl_identity id;
    pl_identity_generate(&id, pl_rng_system());
    pl_cert c = make_cert(&ca, &id, "alice", 7), d;
    uint8_t buf[PL_CERT_MAX_SIZE], buf2[PL_CERT_MAX_SIZE];
    size_t n, n2;
    CHECK_EQ(pl_cert_encode(&c, buf, sizeof buf, &n), PL_CERT_OK);
    CHECK_EQ(n, PL_CERT_FIXED_SIZE + 5);
    CHECK_EQ(pl_cert_decode(&d, buf, n), PL_CERT_OK);
    CHECK_EQ(pl_cert_encode(&d, buf2, sizeof buf2, &n2), PL_CERT_OK);
    CHECK(n == n2 && memcmp(buf, buf2, n) == 0);
    CHECK(strcmp(d.name, "alice") == 0 && d.serial == 7);
    CHECK_EQ(pl_cert_verify(&d, ca.pk, NOW, NULL), PL_CERT_OK);
    /* Trailing bytes and truncation are refused. */
    CHECK_EQ(pl_cert_decode(&d, buf, n - 1), PL_CERT_ERR_MALFORMED);
    uint8_t longer[PL_CERT_MAX_SIZE + 1];
    memcpy(longer, buf, n);
    longer[n] = 0;
    CHECK_EQ(pl_cert_decode(&d, longer, n + 1), PL_CERT_ERR_MALFORMED);
    /* Too small an output buffer is an error, not an overflow. */
    CHECK_EQ(pl_cert_encode(&c, buf2, n - 1, &n2), PL_CERT_ERR_BUFFER);
}

static void every_flipped_bit_is_refused(void)
{
    ca_keys ca = make_ca();
    pl_identity id;
    pl_identity_generate(&id, pl_rng_system());
    pl_cert c = make_cert(&ca, &id, "carol", 99), d;
    uint8_t buf[PL_CERT_MAX_SIZE];
    size_t n;
    CHECK_EQ(pl_cert_encode(&c, buf, sizeof buf, &n), PL_CERT_OK);
    for (size_t bit = 0; bit < n * 8; bit++) {
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        pl_cert_err e = pl_cert_decode(&d, buf, n);
        if (e == PL_CERT_OK) e = pl_cert_verify(&d, ca.pk, NOW, NULL);
        if (e == PL_CERT_OK) {
            fprintf(stderr, "  bit %zu accepted\n", bit);
            CHECK(e != PL_CERT_OK);
        }
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
}

static void wrong_ca_expired_and_not_yet_valid_are_refused(void)
{
    ca_keys ca = make_ca(), other = make_ca();
    pl_identity id;
    pl_identity_generate(&id, pl_rng_system());
    pl_cert c = make_cert(&ca, &id, "dave", 1);
    CHECK_EQ(pl_cert_verify(&c, other.pk, NOW, NULL), PL_CERT_ERR_WRONG_ISSUER);
    /* A certificate "minted elsewhere" that claims our CA's issuer id. */
    pl_cert forged = make_cert(&other, &id, "dave", 1);
    pl_ca_issuer_id(ca.pk, forged.issuer);
    CHECK_EQ(pl_cert_verify(&forged, ca.pk, NOW, NULL), PL_CERT_ERR_SIGNATURE);
    CHECK_EQ(pl_cert_verify(&c, ca.pk, c.not_after, NULL), PL_CERT_ERR_EXPIRED);
    CHECK_EQ(pl_cert_verify(&c, ca.pk, c.not_after - 1, NULL), PL_CERT_OK);
    CHECK_EQ(pl_cert_verify(&c, ca.pk, c.not_before - 1, NULL), PL_CERT_ERR_NOT_YET_VALID);
}

static void revoked_certificates_are_refused(void)
{
    ca_keys ca = make_ca(), other = make_ca();
    pl_identity id;
    pl_identity_generate(&id, pl_rng_system());
    pl_cert c = make_cert(&ca, &id, "erin", 42), ok = make_cert(&ca, &id, "erin", 43);
    uint64_t serials[] = {3, 42, 1000};
    uint8_t buf[PL_CRL_SIZE(3)];
    size_t n;
    CHECK_EQ(pl_crl_build(buf, sizeof buf, &n, 5, NOW, serials, 3, ca.pk, ca.sk), PL_CERT_OK);
    CHECK_EQ(n, sizeof buf);
    pl_crl crl;
    CHECK_EQ(pl_crl_decode(&crl, buf, n), PL_CERT_OK);
    CHECK_EQ(pl_crl_verify(&crl, ca.pk), PL_CERT_OK);
    CHECK_EQ(pl_crl_verify(&crl, other.pk), PL_CERT_ERR_WRONG_ISSUER);
    CHECK_EQ(pl_cert_verify(&c, ca.pk, NOW, &crl), PL_CERT_ERR_REVOKED);
    CHECK_EQ(pl_cert_verify(&ok, ca.pk, NOW, &crl), PL_CERT_OK);
    CHECK(!pl_crl_contains(&crl, 4) && pl_crl_contains(&crl, 3) && pl_crl_contains(&crl, 1000));
    /* A CRL with a flipped bit never verifies (or never decodes). */
    for (size_t bit = 0; bit < n * 8; bit++) {
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        pl_crl bad;
        pl_cert_err e = pl_crl_decode(&bad, buf, n);
        if (e == PL_CERT_OK) e = pl_crl_verify(&bad, ca.pk);
        CHECK(e != PL_CERT_OK);
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* Unsorted serials are refused when building. */
    uint64_t unsorted[] = {5, 4};
    CHECK_EQ(pl_crl_build(buf, sizeof buf, &n, 6, NOW, unsorted, 2, ca.pk, ca.sk), PL_CERT_ERR_MALFORMED);
}

static void key_files_are_private_and_sealed(void)
{
    char dir[] = "/tmp/pl-test-keyXXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char plain[256], sealed[256];
    snprintf(plain, sizeof plain, "%s/plain.key", dir);
    snprintf(sealed, sizeof sealed, "%s/sealed.key", dir);
    pl_identity id, back;
    pl_identity_generate(&id, pl_rng_system());

    CHECK_EQ(pl_identity_save(&id, plain, NULL, false), PL_IDENTITY_OK);
    struct stat st;
    CHECK(stat(plain, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK_EQ(pl_identity_save(&id, plain, NULL, false), PL_IDENTITY_ERR_EXISTS);
    CHECK_EQ(pl_identity_load(&back, plain, NULL), PL_IDENTITY_OK);
    CHECK(memcmp(&id, &back, sizeof id) == 0);

    CHECK_EQ(pl_identity_save(&id, sealed, "correct horse", false), PL_IDENTITY_OK);
    CHECK_EQ(pl_identity_load(&back, sealed, NULL), PL_IDENTITY_ERR_NEED_PASSPHRASE);
    CHECK_EQ(pl_identity_load(&back, sealed, "wrong horse"), PL_IDENTITY_ERR_WRONG_PASSPHRASE);
    CHECK_EQ(pl_identity_load(&back, sealed, "correct horse"), PL_IDENTITY_OK);
    CHECK(memcmp(&id, &back, sizeof id) == 0);

    /* A key file others can read is refused. */
    CHECK(chmod(plain, 0644) == 0);
    CHECK_EQ(pl_identity_load(&back, plain, NULL), PL_IDENTITY_ERR_PERMISSIONS);
    unlink(plain);
    unlink(sealed);
    rmdir(dir);
}

static void wire_reader_never_reads_past_the_end(void)
{
    uint8_t buf[5] = {1, 2, 3, 4, 5};
    pl_reader r = pl_reader_make(buf, sizeof buf);
    CHECK_EQ(pl_read_u32(&r), 0x01020304);
    CHECK(!r.err);
    CHECK_EQ(pl_read_u16(&r), 0);
    CHECK(r.err);
    CHECK_EQ(pl_read_u8(&r), 0); /* sticky */
    pl_addr a;
    uint8_t abuf[32];
    pl_writer w = pl_writer_make(abuf, sizeof abuf);
    CHECK(pl_addr_parse(&a, "[2001:db8::1]:443", 0));
    pl_write_addr(&w, &a);
    pl_reader ar = pl_reader_make(abuf, w.off);
    pl_addr b;
    pl_read_addr(&ar, &b);
    CHECK(pl_reader_done(&ar) && pl_addr_equal(&a, &b));
    char text[PL_ADDR_TEXT_MAX];
    CHECK(strcmp(pl_addr_format(&b, text, sizeof text), "[2001:db8::1]:443") == 0);
    CHECK(pl_addr_parse(&a, "127.0.0.1", 7000) && a.port == 7000);
    CHECK(!pl_addr_parse(&a, "127.0.0.1:99999", 0));
    CHECK(!pl_addr_parse(&a, "example.org", 0));
    /* A transport mark travels in the text form but never on the wire. */
    CHECK(pl_addr_parse(&a, "192.0.2.7:80/tcp", 0) && a.transport == PL_ADDR_TCP && a.port == 80);
    CHECK(strcmp(pl_addr_format(&a, text, sizeof text), "192.0.2.7:80/tcp") == 0);
    CHECK(pl_addr_parse(&b, "192.0.2.7:80/udp", 0) && b.transport == PL_ADDR_UDP);
    CHECK(!pl_addr_equal(&a, &b) && pl_addr_same_host(&a, &b));
    CHECK(!pl_addr_parse(&a, "/tcp", 0));
    CHECK(pl_addr_parse(&a, "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535/tcp", 0));
    CHECK(strlen(pl_addr_format(&a, text, sizeof text)) < sizeof text - 1);
    w = pl_writer_make(abuf, sizeof abuf);
    pl_write_addr(&w, &a);
    ar = pl_reader_make(abuf, w.off);
    pl_read_addr(&ar, &b);
    CHECK(b.transport == PL_ADDR_UDP && pl_addr_same_host(&a, &b) && a.port == b.port);
}

int main(void)
{
    RUN(names_follow_the_rules);
    RUN(certificate_round_trips_canonically);
    RUN(every_flipped_bit_is_refused);
    RUN(wrong_ca_expired_and_not_yet_valid_are_refused);
    RUN(revoked_certificates_are_refused);
    RUN(key_files_are_private_and_sealed);
    RUN(wire_reader_never_reads_past_the_end);
    return pl_test_summary();
}
