/*
 * cookie.h - mac1, mac2 and the stateless cookie retry (the WireGuard
 * design, section 5.4.7 of its paper).
 *
 * mac1 = BLAKE2b-128(key = BLAKE2b-256("mac1----" || responder X25519 key),
 *                    message up to mac1). Anyone can compute it who knows
 * whom they are talking to, so a responder cheaply drops packets that were
 * not meant for it before doing any Diffie-Hellman.
 *
 * Under load a responder answers an initiation that has no valid mac2 with a
 * 64-byte cookie reply instead of doing the handshake. The cookie is a MAC of
 * the sender's address under a secret that changes every two minutes, so the
 * responder keeps no state for it; it is encrypted to the initiator (keyed by
 * the responder's public key, bound to the initiation's mac1) so only the
 * real sender at that address can use it. The initiator then puts
 * mac2 = BLAKE2b-128(key = cookie, message up to mac2) on its next initiation,
 * which proves it receives packets at its claimed address.
 */
#ifndef PL_COOKIE_H
#define PL_COOKIE_H

#include "parley.h"

#define PL_COOKIE_MAC_SIZE 16
#define PL_COOKIE_SECRET_LIFE (120 * PL_SEC)
#define PL_COOKIE_REPLY_SIZE 64
#define PL_COOKIE_TYPE 3

typedef struct pl_cookie_checker {
    uint8_t mac1_key[32];
    uint8_t reply_key[32];
    uint8_t secret[32];
    uint8_t previous_secret[32];
    bool have_previous;
    pl_time secret_born; /* PL_TIME_NEVER: no secret yet */
} pl_cookie_checker;

typedef enum pl_cookie_result {
    PL_COOKIE_BAD_MAC1 = 0,
    PL_COOKIE_BAD_MAC2, /* mac1 valid, mac2 present but wrong: refused */
    PL_COOKIE_MAC1_OK,  /* mac1 valid, mac2 all zero (no cookie held) */
    PL_COOKIE_MAC2_OK,  /* both valid: the source address is proven */
} pl_cookie_result;

void pl_cookie_checker_init(pl_cookie_checker *c, const uint8_t own_dh_pk[32]);
/* msg ends with mac1 and mac2 (32 bytes). A non-zero mac2 must verify
 * under the current or the previous secret, so that no bit of a message
 * goes unchecked; a cookie therefore stays good for at least one secret
 * life after it was handed out. */
pl_cookie_result pl_cookie_check(pl_cookie_checker *c, const pl_rng *rng, pl_time now, const uint8_t *msg,
                                 size_t len, const pl_addr *src);
/* Writes a PL_COOKIE_REPLY_SIZE reply to an initiation from src. */
void pl_cookie_make_reply(pl_cookie_checker *c, const pl_rng *rng, pl_time now, uint8_t out[PL_COOKIE_REPLY_SIZE],
                          uint32_t receiver_index, const uint8_t *msg, size_t len, const pl_addr *src);
void pl_cookie_checker_wipe(pl_cookie_checker *c);

/* Initiator side, one per peer. */
typedef struct pl_cookie_maker {
    uint8_t cookie[PL_COOKIE_MAC_SIZE];
    pl_time cookie_at; /* PL_TIME_NEVER: none */
    uint8_t last_mac1[PL_COOKIE_MAC_SIZE];
    bool have_last_mac1;
} pl_cookie_maker;

void pl_cookie_maker_init(pl_cookie_maker *m);
/* Fills the last 32 bytes of msg: mac1, and mac2 when use_cookie is set and
 * a fresh cookie is held (initiations only: responses always carry a zero
 * mac2, so a cookie kept from before a restart cannot spoil them). */
void pl_cookie_add_macs(pl_cookie_maker *m, const uint8_t peer_dh_pk[32], pl_time now, uint8_t *msg, size_t len,
                        bool use_cookie);
/* Forgets the cookie (an initiation that used it went unanswered: the
 * responder may have restarted and lost the secret). */
void pl_cookie_maker_forget(pl_cookie_maker *m);
/* Takes a cookie reply (after its receiver index matched); false if it does
 * not open. */
bool pl_cookie_consume_reply(pl_cookie_maker *m, const uint8_t peer_dh_pk[32], pl_time now, const uint8_t *reply,
                             size_t len);

#endif
