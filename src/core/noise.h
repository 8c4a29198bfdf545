/*
 * noise.h - the Noise symmetric and handshake state for
 * Noise_IK_25519_ChaChaPoly_SHA256 (noiseprotocol.org, revision 34).
 *
 * This file knows the Noise rules (MixHash, MixKey, EncryptAndHash, Split);
 * secure.c knows the message layouts and when each token is processed.
 */
#ifndef PL_NOISE_H
#define PL_NOISE_H

#include "parley.h"

#define PL_NOISE_KEY 32
#define PL_NOISE_TAG 16

typedef struct pl_noise {
    uint8_t ck[32];
    uint8_t h[32];
    uint8_t k[32];
    bool has_k;
    uint64_t n;
} pl_noise;

/* h = protocol name, ck = h, MixHash(prologue), MixHash(responder static). */
void pl_noise_init(pl_noise *ns, const uint8_t responder_static[32]);
void pl_noise_mix_hash(pl_noise *ns, const uint8_t *data, size_t len);
/* MixKey(DH(sk, pk)); false when the result is the all-zero value a
 * low-order point produces. */
bool pl_noise_mix_dh(pl_noise *ns, const uint8_t sk[32], const uint8_t pk[32]);
/* MixKey of a DH result computed earlier (the precomputed static-static). */
void pl_noise_mix_key(pl_noise *ns, const uint8_t dh[32]);
/* out receives len + 16 bytes. */
void pl_noise_encrypt_and_hash(pl_noise *ns, const uint8_t *plain, size_t len, uint8_t *out);
/* out receives len - 16 bytes; false if authentication fails. */
bool pl_noise_decrypt_and_hash(pl_noise *ns, const uint8_t *cipher, size_t len, uint8_t *out);
/* The two transport keys: k1 for initiator-to-responder, k2 the other way. */
void pl_noise_split(const pl_noise *ns, uint8_t k1[32], uint8_t k2[32]);
void pl_noise_wipe(pl_noise *ns);

/* X25519 with the all-zero check. */
bool pl_noise_dh(uint8_t out[32], const uint8_t sk[32], const uint8_t pk[32]);

#endif
