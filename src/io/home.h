/*
 * home.h - the files a user's Parley home directory holds, shared by the
 * command-line client and the daemon:
 *
 *   identity.key   the Ed25519 seed (0600, optionally sealed by a passphrase)
 *   identity.pub   the public key in hex, readable without the passphrase
 *   identity.cert  the certificate from the authority
 *   ca             the pinned authority: "key HEX" and "addr ADDR:PORT"
 *   crl            the last revocation list fetched and verified
 *   hosts          the daemon's host cache (supernodes seen before)
 *   contacts.db    the daemon's contacts (SQLite)
 *   control.sock   the daemon's control socket
 */
#ifndef PL_HOME_H
#define PL_HOME_H

#include <sys/types.h>

#include "parley.h"

#define PL_HOME_PATH_MAX 4096

/* The home directory: explicit if given, else $PARLEY_HOME, else ~/.parley. */
bool pl_home_resolve(const char *explicit_dir, char *out, size_t cap);
/* dir/file into out. */
void pl_home_path(const char *dir, const char *file, char *out, size_t cap);

/* Reads a whole small file; its length, or -1 (missing, unreadable, or
 * larger than cap). */
long pl_file_read(const char *path, uint8_t *buf, size_t cap);
/* Writes through a temporary file, fsync and rename: the old content or the
 * new, never a torn mix. */
bool pl_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* The passphrase from a file (its first line) or $PARLEY_PASSPHRASE; NULL
 * when neither is given. *bad is set when the file cannot be read. */
const char *pl_passphrase_read(const char *file, char *buf, size_t cap, bool *bad);

typedef struct pl_home_pin {
    bool have_key, have_addr;
    uint8_t key[32];
    char addr[128];
} pl_home_pin;

/* The pinned authority; fields absent from the file stay unset. */
void pl_home_read_pin(const char *dir, pl_home_pin *pin);
bool pl_home_write_pin(const char *dir, const pl_home_pin *pin);

#endif
