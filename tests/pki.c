/* pki.c - the test signing authority (pki.h). */
#include "pki.h"

#include <sodium.h>
#include <string.h>

void pl_test_ca_init(pl_test_ca *ca)
{
    crypto_sign_keypair(ca->pk, ca->sk);
    ca->next_serial = 1;
}

void pl_test_user_make(pl_test_user *u, pl_test_ca *ca, const char *name, pl_time from, pl_time to,
                       const pl_rng *rng)
{
    memset(u, 0, sizeof *u);
    pl_identity_generate(&u->id, rng ? rng : pl_rng_system());
    pl_cert *c = &u->cert;
    c->version = PL_CERT_VERSION;
    c->serial = ca->next_serial++;
    c->not_before = from / PL_SEC;
    c->not_after = to / PL_SEC;
    memcpy(c->sign_pk, u->id.sign_pk, 32);
    memcpy(c->dh_pk, u->id.dh_pk, 32);
    c->name_len = (uint8_t)strlen(name);
    memcpy(c->name, name, c->name_len);
    pl_cert_sign(c, ca->pk, ca->sk);
    pl_cert_encode(c, u->cert_bytes, sizeof u->cert_bytes, &u->cert_len);
}
