/*
 * trust.h - end-to-end trust between two users: safety numbers and key pins.
 *
 * The certificate authority vouches that a key belongs to a name. A user who
 * does not want to rely on the authority alone (it could be coerced into
 * certifying a second key for the same name) has two more checks:
 *
 *  - The safety number: a 60-digit number computed from both users' signing
 *    keys, the same on both sides whoever computes it. Two users who read
 *    theirs to each other over another channel (in person, or by voice on
 *    the call itself) know that no one sits between them.
 *  - Key pinning: the daemon remembers the key it first saw for each
 *    contact (trust on first use) and warns when a later call or message
 *    comes with another key.
 *
 * The safety number is two 30-digit halves, one per key, in a fixed order
 * (the smaller half first), so it does not depend on who computes it. Each
 * half is 6 groups of 5 digits taken from an iterated BLAKE2b-512 of the key
 * under a domain prefix (docs/calls.md gives the construction and the
 * security argument). To fool two users, someone in the middle must find a
 * key of its own whose half equals a victim's half: about 2^99.7 tries, each
 * costing PL_TRUST_ITERATIONS hashes. Users who compare only the first k
 * groups of each half still get about 16.6 k + 12 bits.
 *
 * Nothing here does I/O; pins live in the daemon's database.
 */
#ifndef PL_TRUST_H
#define PL_TRUST_H

#include "parley.h"

#define PL_TRUST_DIGITS 60          /* digits in a safety number */
#define PL_TRUST_GROUPS 12          /* groups of 5 */
#define PL_TRUST_TEXT_MAX 72        /* "12345 67890 ... 12345" and the terminator */
#define PL_TRUST_ITERATIONS 4096
#define PL_TRUST_CONTEXT "parley-safety-number-v1"
/* "ab12 cd34 ef56 7890 1234 5678 9abc def0" and the terminator: the first
 * 16 bytes of a key, for people to compare by eye in warnings. */
#define PL_TRUST_KEY_TEXT_MAX 40

typedef enum pl_trust_err {
    PL_TRUST_OK = 0,
    PL_TRUST_ERR_BUFFER, /* the output buffer is too small */
} pl_trust_err;

/* The safety number of two signing keys as 60 digits (no spaces) and, if
 * text is not NULL, as 12 groups of 5 separated by single spaces. Either
 * order of the keys gives the same number. */
void pl_trust_safety_number(const uint8_t key_a[32], const uint8_t key_b[32], char digits[PL_TRUST_DIGITS + 1],
                            char text[PL_TRUST_TEXT_MAX]);

typedef enum pl_trust_pin {
    PL_TRUST_PIN_FIRST_SEEN = 1, /* no key pinned for this contact yet: pin this one */
    PL_TRUST_PIN_SAME,           /* the pinned key */
    PL_TRUST_PIN_CHANGED,        /* another key than the pinned one: warn */
} pl_trust_pin;

/* Compares the key seen now with the pinned one (NULL: none pinned). */
pl_trust_pin pl_trust_pin_check(const uint8_t seen[32], const uint8_t *pinned);

/* The first 16 bytes of a key in hex, in groups of four. */
void pl_trust_key_text(const uint8_t key[32], char out[PL_TRUST_KEY_TEXT_MAX]);

/* A warning for people when a contact's key changed: who, both keys, the
 * new safety number (with our own key own_key) and what to do. The name is
 * printed with anything but [a-z0-9._-] replaced by '?'. Returns
 * PL_TRUST_ERR_BUFFER (and a truncated, terminated text) if cap is too
 * small; 1024 bytes are always enough. */
pl_trust_err pl_trust_format_warning(char *buf, size_t cap, const char *name, const uint8_t pinned[32],
                                     const uint8_t seen[32], const uint8_t own_key[32]);

const char *pl_trust_pin_name(pl_trust_pin verdict);
const char *pl_trust_strerror(pl_trust_err err);

#endif
