/*
 * identity.c - a user's Ed25519 key, its X25519 twin, and the key file.
 *
 * Key file layout (all integers big-endian):
 *   "PLK1" | kind u8 | 3 zero bytes
 *   kind 0 (plain):     seed[32]
 *   kind 1 (sealed):    opslimit u64 | memlimit u64 | salt[16] | nonce[24] | sealed seed[48]
 * The sealed seed is XChaCha20-Poly1305 under an Argon2id key derived from
 * the passphrase; the 8-byte header and the KDF parameters are the associated
 * data, so none of them can be altered without the open failing.
 */
#include "parley.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wire.h"

#define KEYFILE_MAGIC "PLK1"
#define KIND_PLAIN 0
#define KIND_SEALED 1
#define PLAIN_SIZE (8 + 32)
#define SEALED_AD_SIZE (8 + 8 + 8)
#define SEALED_SIZE (SEALED_AD_SIZE + 16 + 24 + 32 + 16)

pl_identity_err pl_identity_from_seed(pl_identity *id, const uint8_t seed[32])
{
    if (crypto_sign_seed_keypair(id->sign_pk, id->sign_sk, seed) != 0) return PL_IDENTITY_ERR_CRYPTO;
    if (crypto_sign_ed25519_pk_to_curve25519(id->dh_pk, id->sign_pk) != 0 ||
        crypto_sign_ed25519_sk_to_curve25519(id->dh_sk, id->sign_sk) != 0) {
        pl_identity_wipe(id);
        return PL_IDENTITY_ERR_CRYPTO;
    }
    return PL_IDENTITY_OK;
}

void pl_identity_generate(pl_identity *id, const pl_rng *rng)
{
    uint8_t seed[32];
    /* A seed that fails conversion has probability ~0; draw again if so. */
    do {
        rng->fill(rng->ctx, seed, sizeof seed);
    } while (pl_identity_from_seed(id, seed) != PL_IDENTITY_OK);
    sodium_memzero(seed, sizeof seed);
}

void pl_identity_wipe(pl_identity *id) { sodium_memzero(id, sizeof *id); }

static pl_identity_err write_atomically(const char *path, const uint8_t *data, size_t len, bool overwrite)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) return PL_IDENTITY_ERR_IO;
    if (!overwrite && access(path, F_OK) == 0) return PL_IDENTITY_ERR_EXISTS;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return PL_IDENTITY_ERR_IO;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += (size_t)n;
    }
    bool ok = done == len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (ok && !overwrite) {
        /* link() fails if the name exists, so two writers cannot both win. */
        ok = link(tmp, path) == 0;
        unlink(tmp);
        if (!ok) return errno == EEXIST ? PL_IDENTITY_ERR_EXISTS : PL_IDENTITY_ERR_IO;
        return PL_IDENTITY_OK;
    }
    if (ok) ok = rename(tmp, path) == 0;
    if (!ok) {
        unlink(tmp);
        return PL_IDENTITY_ERR_IO;
    }
    return PL_IDENTITY_OK;
}

pl_identity_err pl_identity_save(const pl_identity *id, const char *path, const char *passphrase, bool overwrite)
{
    uint8_t file[SEALED_SIZE];
    pl_writer w = pl_writer_make(file, sizeof file);
    const uint8_t *seed = id->sign_sk; /* libsodium keeps the seed in the first 32 bytes */
    pl_write_bytes(&w, KEYFILE_MAGIC, 4);
    if (!passphrase) {
        pl_write_u8(&w, KIND_PLAIN);
        pl_write_zeros(&w, 3);
        pl_write_bytes(&w, seed, 32);
    } else {
        uint8_t key[32], salt[16], nonce[24];
        uint64_t ops = crypto_pwhash_OPSLIMIT_INTERACTIVE, mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
        randombytes_buf(salt, sizeof salt);
        randombytes_buf(nonce, sizeof nonce);
        pl_write_u8(&w, KIND_SEALED);
        pl_write_zeros(&w, 3);
        pl_write_u64(&w, ops);
        pl_write_u64(&w, mem);
        pl_write_bytes(&w, salt, sizeof salt);
        pl_write_bytes(&w, nonce, sizeof nonce);
        if (crypto_pwhash(key, sizeof key, passphrase, strlen(passphrase), salt, ops, (size_t)mem,
                          crypto_pwhash_ALG_ARGON2ID13) != 0)
            return PL_IDENTITY_ERR_CRYPTO;
        uint8_t *ct = pl_write_reserve(&w, 32 + 16);
        if (!ct) {
            sodium_memzero(key, sizeof key);
            return PL_IDENTITY_ERR_CRYPTO;
        }
        crypto_aead_xchacha20poly1305_ietf_encrypt(ct, NULL, seed, 32, file, SEALED_AD_SIZE, NULL, nonce, key);
        sodium_memzero(key, sizeof key);
    }
    pl_identity_err err = w.err ? PL_IDENTITY_ERR_CRYPTO : write_atomically(path, file, w.off, overwrite);
    sodium_memzero(file, sizeof file);
    return err;
}

pl_identity_err pl_identity_load(pl_identity *id, const char *path, const char *passphrase)
{
    uint8_t file[SEALED_SIZE + 1];
    uint8_t seed[32];
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return PL_IDENTITY_ERR_IO;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return PL_IDENTITY_ERR_IO;
    }
    if (st.st_mode & 077) {
        /* Like ssh: a private key others can read is refused, not used. */
        close(fd);
        return PL_IDENTITY_ERR_PERMISSIONS;
    }
    ssize_t n = read(fd, file, sizeof file);
    close(fd);
    if (n < 0) return PL_IDENTITY_ERR_IO;

    pl_reader r = pl_reader_make(file, (size_t)n);
    uint8_t magic[4];
    pl_read_bytes(&r, magic, 4);
    uint8_t kind = pl_read_u8(&r);
    uint8_t zero[3];
    pl_read_bytes(&r, zero, 3);
    if (r.err || memcmp(magic, KEYFILE_MAGIC, 4) != 0 || zero[0] | zero[1] | zero[2]) return PL_IDENTITY_ERR_FORMAT;

    pl_identity_err err;
    if (kind == KIND_PLAIN && (size_t)n == PLAIN_SIZE) {
        pl_read_bytes(&r, seed, 32);
    } else if (kind == KIND_SEALED && (size_t)n == SEALED_SIZE) {
        if (!passphrase) return PL_IDENTITY_ERR_NEED_PASSPHRASE;
        uint64_t ops = pl_read_u64(&r), mem = pl_read_u64(&r);
        uint8_t salt[16], nonce[24], key[32];
        pl_read_bytes(&r, salt, sizeof salt);
        pl_read_bytes(&r, nonce, sizeof nonce);
        const uint8_t *ct = pl_read_ptr(&r, 48);
        /* Bound the KDF cost a hostile file can demand. */
        if (!ct || ops > crypto_pwhash_OPSLIMIT_SENSITIVE || mem > crypto_pwhash_MEMLIMIT_SENSITIVE ||
            ops < crypto_pwhash_OPSLIMIT_MIN || mem < crypto_pwhash_MEMLIMIT_MIN)
            return PL_IDENTITY_ERR_FORMAT;
        if (crypto_pwhash(key, sizeof key, passphrase, strlen(passphrase), salt, ops, (size_t)mem,
                          crypto_pwhash_ALG_ARGON2ID13) != 0)
            return PL_IDENTITY_ERR_CRYPTO;
        int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(seed, NULL, NULL, ct, 48, file, SEALED_AD_SIZE, nonce, key);
        sodium_memzero(key, sizeof key);
        if (rc != 0) return PL_IDENTITY_ERR_WRONG_PASSPHRASE;
    } else {
        return PL_IDENTITY_ERR_FORMAT;
    }
    err = pl_identity_from_seed(id, seed);
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(file, sizeof file);
    return err;
}

const char *pl_identity_strerror(pl_identity_err err)
{
    switch (err) {
    case PL_IDENTITY_OK: return "ok";
    case PL_IDENTITY_ERR_IO: return "cannot read or write the key file";
    case PL_IDENTITY_ERR_EXISTS: return "a key file already exists there";
    case PL_IDENTITY_ERR_FORMAT: return "not a Parley key file";
    case PL_IDENTITY_ERR_NEED_PASSPHRASE: return "the key is protected by a passphrase";
    case PL_IDENTITY_ERR_WRONG_PASSPHRASE: return "wrong passphrase";
    case PL_IDENTITY_ERR_PERMISSIONS: return "the key file is readable by other users (chmod 600 it)";
    case PL_IDENTITY_ERR_CRYPTO: return "key derivation failed";
    }
    return "unknown identity error";
}
