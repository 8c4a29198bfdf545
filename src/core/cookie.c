/* cookie.c - mac1/mac2 and cookie replies; see cookie.h. */
#include "cookie.h"

#include <sodium.h>
#include <string.h>

#include "wire.h"

static void derive_key(uint8_t out[32], const char label[8], const uint8_t pk[32])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)label, 8);
    crypto_generichash_update(&st, pk, 32);
    crypto_generichash_final(&st, out, 32);
}

static void mac16(uint8_t out[16], const uint8_t *key, size_t keylen, const uint8_t *msg, size_t len)
{
    crypto_generichash(out, 16, msg, len, key, keylen);
}

static size_t addr_bytes(const pl_addr *a, uint8_t out[19])
{
    pl_writer w = pl_writer_make(out, 19);
    pl_write_addr(&w, a);
    return w.err ? 0 : w.off;
}

void pl_cookie_checker_init(pl_cookie_checker *c, const uint8_t own_dh_pk[32])
{
    memset(c, 0, sizeof *c);
    derive_key(c->mac1_key, "mac1----", own_dh_pk);
    derive_key(c->reply_key, "cookie--", own_dh_pk);
    c->secret_born = PL_TIME_NEVER;
}

void pl_cookie_checker_wipe(pl_cookie_checker *c) { sodium_memzero(c, sizeof *c); }

static void rotate_secret(pl_cookie_checker *c, const pl_rng *rng, pl_time now)
{
    if (c->secret_born != PL_TIME_NEVER && now - c->secret_born < PL_COOKIE_SECRET_LIFE) return;
    if (c->secret_born != PL_TIME_NEVER && now - c->secret_born < 2 * PL_COOKIE_SECRET_LIFE) {
        memcpy(c->previous_secret, c->secret, 32);
        c->have_previous = true;
    } else {
        c->have_previous = false;
    }
    rng->fill(rng->ctx, c->secret, sizeof c->secret);
    c->secret_born = now;
}

static void cookie_for(const uint8_t secret[32], const pl_addr *src, uint8_t out[16])
{
    uint8_t ab[19];
    size_t n = addr_bytes(src, ab);
    mac16(out, secret, 32, ab, n);
}

pl_cookie_result pl_cookie_check(pl_cookie_checker *c, const pl_rng *rng, pl_time now, const uint8_t *msg,
                                 size_t len, const pl_addr *src)
{
    uint8_t mac[16], cookie[16];
    static const uint8_t zero[16];
    if (len < 2 * PL_COOKIE_MAC_SIZE) return PL_COOKIE_BAD_MAC1;
    size_t mac1_at = len - 2 * PL_COOKIE_MAC_SIZE, mac2_at = len - PL_COOKIE_MAC_SIZE;
    mac16(mac, c->mac1_key, 32, msg, mac1_at);
    if (sodium_memcmp(mac, msg + mac1_at, 16) != 0) return PL_COOKIE_BAD_MAC1;
    if (sodium_memcmp(msg + mac2_at, zero, 16) == 0) return PL_COOKIE_MAC1_OK;
    if (c->secret_born == PL_TIME_NEVER) return PL_COOKIE_BAD_MAC2;
    rotate_secret(c, rng, now);
    cookie_for(c->secret, src, cookie);
    mac16(mac, cookie, 16, msg, mac2_at);
    if (sodium_memcmp(mac, msg + mac2_at, 16) == 0) return PL_COOKIE_MAC2_OK;
    if (c->have_previous) {
        cookie_for(c->previous_secret, src, cookie);
        mac16(mac, cookie, 16, msg, mac2_at);
        if (sodium_memcmp(mac, msg + mac2_at, 16) == 0) return PL_COOKIE_MAC2_OK;
    }
    return PL_COOKIE_BAD_MAC2;
}

void pl_cookie_make_reply(pl_cookie_checker *c, const pl_rng *rng, pl_time now, uint8_t out[PL_COOKIE_REPLY_SIZE],
                          uint32_t receiver_index, const uint8_t *msg, size_t len, const pl_addr *src)
{
    uint8_t cookie[16];
    rotate_secret(c, rng, now);
    cookie_for(c->secret, src, cookie);
    const uint8_t *mac1 = msg + len - 2 * PL_COOKIE_MAC_SIZE;
    out[0] = PL_COOKIE_TYPE;
    out[1] = out[2] = out[3] = 0;
    pl_put_u32be(out + 4, receiver_index);
    uint8_t *nonce = out + 8;
    rng->fill(rng->ctx, nonce, 24);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + 32, NULL, cookie, 16, mac1, 16, NULL, nonce, c->reply_key);
    sodium_memzero(cookie, sizeof cookie);
}

void pl_cookie_maker_init(pl_cookie_maker *m)
{
    memset(m, 0, sizeof *m);
    m->cookie_at = PL_TIME_NEVER;
}

void pl_cookie_add_macs(pl_cookie_maker *m, const uint8_t peer_dh_pk[32], pl_time now, uint8_t *msg, size_t len,
                        bool use_cookie)
{
    uint8_t key[32];
    size_t mac1_at = len - 2 * PL_COOKIE_MAC_SIZE, mac2_at = len - PL_COOKIE_MAC_SIZE;
    derive_key(key, "mac1----", peer_dh_pk);
    mac16(msg + mac1_at, key, 32, msg, mac1_at);
    if (!use_cookie) {
        memset(msg + mac2_at, 0, 16);
        return;
    }
    memcpy(m->last_mac1, msg + mac1_at, 16);
    m->have_last_mac1 = true;
    /* A cookie is used only while the responder's secret that made it can
     * still be current, a little less than its life to allow for delay. */
    if (m->cookie_at != PL_TIME_NEVER && now - m->cookie_at < PL_COOKIE_SECRET_LIFE - 5 * PL_SEC)
        mac16(msg + mac2_at, m->cookie, 16, msg, mac2_at);
    else
        memset(msg + mac2_at, 0, 16);
}

void pl_cookie_maker_forget(pl_cookie_maker *m) { m->cookie_at = PL_TIME_NEVER; }

bool pl_cookie_consume_reply(pl_cookie_maker *m, const uint8_t peer_dh_pk[32], pl_time now, const uint8_t *reply,
                             size_t len)
{
    uint8_t key[32], cookie[16];
    if (len != PL_COOKIE_REPLY_SIZE || !m->have_last_mac1) return false;
    derive_key(key, "cookie--", peer_dh_pk);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(cookie, NULL, NULL, reply + 32, 32, m->last_mac1, 16, reply + 8,
                                                   key) != 0)
        return false;
    memcpy(m->cookie, cookie, 16);
    m->cookie_at = now;
    m->have_last_mac1 = false; /* one reply per initiation */
    return true;
}
