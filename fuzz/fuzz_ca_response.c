/*
 * fuzz_ca_response.c - hostile bytes into the user's side of the protocol.
 *
 * A client for each operation is started, so it waits for an answer in every
 * phase; the input is split into answers (u16 length prefixes). To reach the
 * later phases, the fuzzer's bytes get the current request id patched in
 * when the first input byte says so. Checks: no crash, and a client that
 * reports success holds a certificate that verifies under the pinned key.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "ca_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    static pl_identity id;
    static uint8_t ca_pk[32], ca_sk[64];
    static pl_rng_seeded rng;
    if (!ready) {
        if (!pl_init()) abort();
        uint8_t seed[32] = {3}, cseed[32] = {1};
        pl_identity_from_seed(&id, seed);
        crypto_sign_seed_keypair(ca_pk, ca_sk, cseed);
        ready = true;
    }
    if (size < 1) return 0;
    pl_rng_seeded_init(&rng, 5);
    static uint8_t crl[PL_CRL_SIZE(256)];
    pl_ca_client c;
    pl_ca_client_config cfg = {.op = (uint8_t)(1 + data[0] % 4), .id = &id, .name = "alice", .rng = &rng.rng,
                               .crl_buf = crl, .crl_cap = sizeof crl};
    memcpy(cfg.ca_pk, ca_pk, 32);
    if (pl_ca_client_init(&c, &cfg) != PL_CA_CLIENT_OK) abort();
    static uint8_t out[PL_CA_MAX_MESSAGE], msg[PL_CA_MAX_MESSAGE];
    size_t len;
    pl_ca_client_status st = pl_ca_client_start(&c, 0, out, sizeof out, &len);
    bool patch_id = data[0] & 0x80;
    size_t off = 1;
    pl_time now = 0;
    while (st != PL_CA_CLIENT_DONE && off + 2 <= size) {
        size_t n = ((size_t)data[off] << 8) | data[off + 1];
        off += 2;
        if (n > size - off) n = size - off;
        memcpy(msg, data + off, n);
        off += n;
        if (patch_id && n >= 16) {
            for (int i = 0; i < 8; i++) msg[8 + i] = (uint8_t)(c.id >> (56 - 8 * i));
        }
        st = pl_ca_client_handle(&c, now, msg, n, out, sizeof out, &len);
        if (st == PL_CA_CLIENT_WAIT && (n & 7) == 0) {
            now = pl_ca_client_next_timeout(&c);
            if (now == PL_TIME_NEVER) break;
            st = pl_ca_client_tick(&c, now, out, sizeof out, &len);
        }
    }
    if (pl_ca_client_result(&c) == PL_CA_CLIENT_OK) {
        const pl_cert *cert = pl_ca_client_cert(&c);
        /* Success without the CA's signature would be a forgery accepted. */
        if (cert && pl_cert_verify(cert, ca_pk, cert->not_before, NULL) != PL_CERT_OK) abort();
        if (cfg.op == PL_CA_OP_CRL) {
            pl_crl l;
            if (pl_crl_decode(&l, crl, pl_ca_client_crl_len(&c)) != PL_CERT_OK || pl_crl_verify(&l, ca_pk) != PL_CERT_OK)
                abort();
        }
    }
    return 0;
}
