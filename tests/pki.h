/*
 * pki.h - a signing authority for tests: a CA key pair and certificates for
 * fresh identities, with the validity window and serial a test asks for.
 */
#ifndef PL_TEST_PKI_H
#define PL_TEST_PKI_H

#include "parley.h"

typedef struct pl_test_ca {
    uint8_t pk[32], sk[64];
    uint64_t next_serial;
} pl_test_ca;

typedef struct pl_test_user {
    pl_identity id;
    pl_cert cert;
    uint8_t cert_bytes[PL_CERT_MAX_SIZE];
    size_t cert_len;
} pl_test_user;

void pl_test_ca_init(pl_test_ca *ca);
/* A new identity (from rng, or the system generator when NULL) certified as
 * `name` for [from, to) in pl_time. */
void pl_test_user_make(pl_test_user *u, pl_test_ca *ca, const char *name, pl_time from, pl_time to,
                       const pl_rng *rng);

#endif
