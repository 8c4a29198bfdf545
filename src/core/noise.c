/* noise.c - Noise symmetric state; see noise.h. */
#include "noise.h"

#include <sodium.h>
#include <string.h>

static const char protocol_name[] = "Noise_IK_25519_ChaChaPoly_SHA256"; /* exactly 32 bytes */
static const char prologue[] = "parley-secure-v1";

static void hmac(uint8_t out[32], const uint8_t key[32], const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, 32);
    crypto_auth_hmacsha256_update(&st, a, alen);
    if (blen) crypto_auth_hmacsha256_update(&st, b, blen);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

/* HKDF as Noise defines it, with two outputs. */
static void hkdf2(uint8_t out1[32], uint8_t out2[32], const uint8_t ck[32], const uint8_t *ikm, size_t len)
{
    uint8_t temp[32], one = 1, two[33];
    hmac(temp, ck, ikm, len, NULL, 0);
    hmac(out1, temp, &one, 1, NULL, 0);
    memcpy(two, out1, 32);
    two[32] = 2;
    hmac(out2, temp, two, sizeof two, NULL, 0);
    sodium_memzero(temp, sizeof temp);
    sodium_memzero(two, sizeof two);
}

void pl_noise_mix_hash(pl_noise *ns, const uint8_t *data, size_t len)
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, ns->h, 32);
    crypto_hash_sha256_update(&st, data, len);
    crypto_hash_sha256_final(&st, ns->h);
}

void pl_noise_init(pl_noise *ns, const uint8_t responder_static[32])
{
    memset(ns, 0, sizeof *ns);
    memcpy(ns->h, protocol_name, 32);
    memcpy(ns->ck, ns->h, 32);
    pl_noise_mix_hash(ns, (const uint8_t *)prologue, sizeof prologue - 1);
    pl_noise_mix_hash(ns, responder_static, 32);
}

void pl_noise_mix_key(pl_noise *ns, const uint8_t dh[32])
{
    uint8_t ck[32];
    hkdf2(ck, ns->k, ns->ck, dh, 32);
    memcpy(ns->ck, ck, 32);
    sodium_memzero(ck, sizeof ck);
    ns->has_k = true;
    ns->n = 0;
}

bool pl_noise_dh(uint8_t out[32], const uint8_t sk[32], const uint8_t pk[32])
{
    /* libsodium refuses (returns -1 for) an all-zero shared secret. */
    return crypto_scalarmult(out, sk, pk) == 0;
}

bool pl_noise_mix_dh(pl_noise *ns, const uint8_t sk[32], const uint8_t pk[32])
{
    uint8_t dh[32];
    bool ok = pl_noise_dh(dh, sk, pk);
    if (ok) pl_noise_mix_key(ns, dh);
    sodium_memzero(dh, sizeof dh);
    return ok;
}

static void noise_nonce(uint8_t nonce[12], uint64_t n)
{
    memset(nonce, 0, 4);
    for (int i = 0; i < 8; i++) nonce[4 + i] = (uint8_t)(n >> (8 * i));
}

void pl_noise_encrypt_and_hash(pl_noise *ns, const uint8_t *plain, size_t len, uint8_t *out)
{
    uint8_t nonce[12];
    noise_nonce(nonce, ns->n++);
    crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, plain, len, ns->h, 32, NULL, nonce, ns->k);
    pl_noise_mix_hash(ns, out, len + PL_NOISE_TAG);
}

bool pl_noise_decrypt_and_hash(pl_noise *ns, const uint8_t *cipher, size_t len, uint8_t *out)
{
    uint8_t nonce[12];
    if (len < PL_NOISE_TAG) return false;
    noise_nonce(nonce, ns->n);
    if (crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, cipher, len, ns->h, 32, nonce, ns->k) != 0)
        return false;
    ns->n++;
    pl_noise_mix_hash(ns, cipher, len);
    return true;
}

void pl_noise_split(const pl_noise *ns, uint8_t k1[32], uint8_t k2[32]) { hkdf2(k1, k2, ns->ck, NULL, 0); }

void pl_noise_wipe(pl_noise *ns) { sodium_memzero(ns, sizeof *ns); }
