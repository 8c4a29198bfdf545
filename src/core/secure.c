/*
 * secure.c - the secure session endpoint: Noise IK handshakes between holders
 * of CA certificates, then sealed data packets. The message layouts, states
 * and timers are written down in docs/protocol.md; this file follows it.
 *
 * The design follows WireGuard closely: receiver indices instead of
 * connection lookups, three key slots per peer (current, previous and next)
 * so that rekeying never drops a packet in flight, a timestamp in every
 * initiation against replays, mac1/mac2 cookies under load, and keys that
 * are rejected after three minutes and wiped after nine.
 */
#include <sodium.h>
#include <string.h>

#include "cookie.h"
#include "noise.h"
#include "parley.h"
#include "ratelimit.h"
#include "replay.h"
#include "wire.h"

/* ---- constants (docs/protocol.md, "Timers") ------------------------------ */

enum { MSG_INITIATION = 1, MSG_RESPONSE = 2, MSG_COOKIE = PL_COOKIE_TYPE, MSG_DATA = 4 };

/* Key lifetimes derive from one setting, the reject time (default 180 s;
 * pl_sec_config.key_lifetime_s): rekey 60 s before it on send (50 s for the
 * responder's keys, so both ends rarely rekey at once), 15 s before it on
 * receive, wipe at three times it. */
#define DEFAULT_KEY_LIFETIME (180 * PL_SEC)
#define REKEY_AFTER_TIME (sec->reject_after - 60 * PL_SEC)
#define REKEY_AFTER_TIME_RESPONDER (sec->reject_after - 50 * PL_SEC)
#define REJECT_AFTER_TIME (sec->reject_after)
#define WIPE_AFTER_TIME (3 * REJECT_AFTER_TIME)
#define REKEY_ON_RECEIVE_TIME (REJECT_AFTER_TIME - 15 * PL_SEC)
#define REKEY_AFTER_MESSAGES (1ull << 60)
#define REJECT_AFTER_MESSAGES (UINT64_MAX - (1ull << 13))
#define RETRY_FIRST (1 * PL_SEC)
#define RETRY_MAX (8 * PL_SEC)
#define GIVE_UP_AFTER (20 * PL_SEC)
#define KEEPALIVE_AFTER (10 * PL_SEC)
#define MIN_INITIATION_GAP (20 * PL_MSEC)
#define LOAD_WINDOW PL_SEC

#define HEADER_SIZE 8
#define MACS_SIZE (2 * PL_COOKIE_MAC_SIZE)
#define TIMESTAMP_SIZE 8
/* Initiation: header(8) e(32) static(32+16) payload(ts 8, ciphers 1, cert, +16) macs(32) */
#define INITIATION_FIXED (HEADER_SIZE + 32 + 48 + TIMESTAMP_SIZE + 1 + 16 + MACS_SIZE)
/* Response: header(8) receiver(4) e(32) payload(cipher 1, cert, +16) macs(32) */
#define RESPONSE_FIXED (HEADER_SIZE + 4 + 32 + 1 + 16 + MACS_SIZE)
#define CERT_MIN (PL_CERT_FIXED_SIZE + PL_NAME_MIN)
#define DATA_HEADER 16
#define SLOT_BITS 22
#define KEY_SLOTS 4

/* ---- state ----------------------------------------------------------------- */

typedef struct keypair {
    uint8_t send_key[32];
    uint8_t recv_key[32];
    uint64_t send_counter;
    pl_replay replay;
    pl_time created;
    uint32_t local_index;
    uint32_t remote_index;
    uint8_t cipher;
    bool initiator;
    bool valid;
} keypair;

enum { HS_NONE = 0, HS_INITIATION_SENT };

typedef struct handshake {
    pl_noise ns;
    uint8_t e_sk[32];
    uint8_t e_pk[32];
    uint32_t local_index; /* also the index of the keypair it will make */
    uint64_t timestamp;
    int8_t kp_slot;       /* the key slot reserved for that keypair */
    uint8_t state;
    pl_time first_sent;
    pl_time next_retry;
    pl_time retry_interval;
} handshake;

struct pl_sec_peer {
    bool used;
    bool want_session;    /* we connected: retry and rekey on our side */
    bool reported;        /* ESTABLISHED was reported and no EXPIRED since */
    bool have_cert;
    uint32_t slot;
    uint8_t sign_pk[32];
    uint8_t dh_pk[32];
    uint8_t ss[32];       /* precomputed static-static DH */
    uint8_t cert_digest[16]; /* the certificate bytes last verified */
    pl_cert cert;
    pl_addr addr;
    uint64_t latest_timestamp;
    pl_time last_initiation_rx;
    pl_cookie_maker cookie;
    handshake hs;
    keypair kp[KEY_SLOTS];
    int8_t current, previous, next;
    pl_time last_sent, last_received;
    pl_time deadline;
    size_t heap_pos;
    void *user;
};

struct pl_sec {
    pl_identity id;
    uint8_t cert[PL_CERT_MAX_SIZE];
    size_t cert_len;
    uint8_t ca_pk[32];
    const pl_rng *rng;
    const pl_mem *mem;
    pl_sec_io io;
    bool accept_incoming;
    uint8_t ciphers;
    uint32_t load_threshold;
    pl_time reject_after; /* a key's lifetime */
    bool passive_keepalive;
    const pl_crl *crl;

    pl_sec_peer *peers;
    uint32_t max_peers;
    uint32_t *free_slots;
    uint32_t free_count;

    /* Peers by X25519 key: open addressing, slot+1 (0 = empty). */
    uint32_t *by_key;  /* by X25519 key */
    uint32_t *by_sign; /* by signing key */
    uint32_t by_key_size;
    uint8_t hash_key[16];

    /* Peers by next deadline: a binary min-heap of slots. */
    uint32_t *heap;
    size_t heap_len;

    pl_cookie_checker cookies;
    pl_ratelimit ratelimit;
    pl_time load_window_start;
    uint32_t load_count;
    pl_time under_load_until;
    uint64_t last_timestamp;

    pl_sec_stats stats;
    uint8_t out[PL_SEC_MAX_DATAGRAM];
    uint8_t plain[PL_SEC_MAX_DATAGRAM];
};

/* ---- small helpers ------------------------------------------------------------- */

static void emit(pl_sec *sec, pl_sec_event_type type, pl_sec_peer *p, const pl_addr *from, const uint8_t *data,
                 size_t len, pl_time now)
{
    if (!sec->io.event) return;
    pl_sec_event ev = {type, p, p->have_cert ? &p->cert : NULL, from, data, len, now};
    sec->io.event(sec->io.ctx, &ev);
}

static void send_datagram(pl_sec *sec, const pl_addr *to, const uint8_t *data, size_t len)
{
    if (sec->io.send) sec->io.send(sec->io.ctx, to, data, len);
}

static uint32_t make_index(pl_sec *sec, uint32_t slot, uint32_t which)
{
    uint8_t r;
    sec->rng->fill(sec->rng->ctx, &r, 1);
    return ((uint32_t)r << 24) | (slot << 2) | which;
}

/* Two indexes over the peer table, open addressing with slot+1 (0 = empty):
 * by X25519 key, which handshakes name, and by signing key, which the
 * application names. A peer is in both from its creation to its close. */
static const uint8_t *peer_key(const pl_sec_peer *p, bool by_sign) { return by_sign ? p->sign_pk : p->dh_pk; }

static uint64_t key_hash(const pl_sec *sec, const uint8_t key[32])
{
    uint8_t h[8];
    uint64_t v;
    crypto_shorthash(h, key, 32, sec->hash_key);
    memcpy(&v, h, 8);
    return v;
}

static pl_sec_peer *index_find(const pl_sec *sec, bool by_sign, const uint8_t key[32])
{
    const uint32_t *table = by_sign ? sec->by_sign : sec->by_key;
    uint32_t mask = sec->by_key_size - 1;
    for (uint64_t i = key_hash(sec, key);; i++) {
        uint32_t v = table[i & mask];
        if (v == 0) return NULL;
        pl_sec_peer *p = &sec->peers[v - 1];
        if (sodium_memcmp(peer_key(p, by_sign), key, 32) == 0) return p;
    }
}

static pl_sec_peer *find_by_key(pl_sec *sec, const uint8_t dh_pk[32]) { return index_find(sec, false, dh_pk); }

static void index_insert(pl_sec *sec, bool by_sign, pl_sec_peer *p)
{
    uint32_t *table = by_sign ? sec->by_sign : sec->by_key;
    uint32_t mask = sec->by_key_size - 1;
    uint64_t i = key_hash(sec, peer_key(p, by_sign));
    while (table[i & mask]) i++;
    table[i & mask] = p->slot + 1;
}

static void index_remove(pl_sec *sec, bool by_sign, pl_sec_peer *p)
{
    /* Linear probing with backward-shift deletion: no tombstones. */
    uint32_t *table = by_sign ? sec->by_sign : sec->by_key;
    uint32_t mask = sec->by_key_size - 1;
    uint64_t i = key_hash(sec, peer_key(p, by_sign));
    while (table[i & mask] != p->slot + 1) i++;
    uint64_t hole = i;
    for (uint64_t j = i + 1;; j++) {
        uint32_t v = table[j & mask];
        if (v == 0) break;
        uint64_t home = key_hash(sec, peer_key(&sec->peers[v - 1], by_sign)) & mask;
        /* Move v back into the hole if its home is not between hole and j. */
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            table[hole & mask] = v;
            hole = j;
        }
    }
    table[hole & mask] = 0;
}

/* ---- the deadline heap ------------------------------------------------------------ */

static void heap_swap(pl_sec *sec, size_t a, size_t b)
{
    uint32_t t = sec->heap[a];
    sec->heap[a] = sec->heap[b];
    sec->heap[b] = t;
    sec->peers[sec->heap[a]].heap_pos = a;
    sec->peers[sec->heap[b]].heap_pos = b;
}

static pl_time heap_key(const pl_sec *sec, size_t i) { return sec->peers[sec->heap[i]].deadline; }

static void heap_fix(pl_sec *sec, size_t i)
{
    while (i > 0 && heap_key(sec, (i - 1) / 2) > heap_key(sec, i)) {
        heap_swap(sec, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < sec->heap_len && heap_key(sec, l) < heap_key(sec, m)) m = l;
        if (r < sec->heap_len && heap_key(sec, r) < heap_key(sec, m)) m = r;
        if (m == i) break;
        heap_swap(sec, i, m);
        i = m;
    }
}

static void heap_remove(pl_sec *sec, pl_sec_peer *p)
{
    size_t i = p->heap_pos;
    if (i == SIZE_MAX) return;
    heap_swap(sec, i, sec->heap_len - 1);
    sec->heap_len--;
    p->heap_pos = SIZE_MAX;
    if (i < sec->heap_len) heap_fix(sec, i);
}

/* The earliest moment this peer needs attention. */
static pl_time compute_deadline(const pl_sec *sec, const pl_sec_peer *p)
{
    pl_time d = PL_TIME_NEVER;
    if (p->hs.state == HS_INITIATION_SENT && p->hs.next_retry < d) d = p->hs.next_retry;
    for (int i = 0; i < KEY_SLOTS; i++)
        if (p->kp[i].valid && p->kp[i].created + WIPE_AFTER_TIME < d) d = p->kp[i].created + WIPE_AFTER_TIME;
    if (sec->passive_keepalive && p->current >= 0 && p->last_received > p->last_sent &&
        p->last_received + KEEPALIVE_AFTER < d)
        d = p->last_received + KEEPALIVE_AFTER;
    return d;
}

static void reschedule(pl_sec *sec, pl_sec_peer *p)
{
    p->deadline = compute_deadline(sec, p);
    if (p->deadline == PL_TIME_NEVER) {
        heap_remove(sec, p);
        return;
    }
    if (p->heap_pos == SIZE_MAX) {
        p->heap_pos = sec->heap_len;
        sec->heap[sec->heap_len++] = p->slot;
    }
    heap_fix(sec, p->heap_pos);
}

/* ---- keypairs ----------------------------------------------------------------------- */

static void wipe_keypair(keypair *kp)
{
    sodium_memzero(kp, sizeof *kp);
}

static keypair *usable_current(const pl_sec *sec, pl_sec_peer *p, pl_time now)
{
    if (p->current < 0) return NULL;
    keypair *kp = &p->kp[p->current];
    if (!kp->valid || now - kp->created >= REJECT_AFTER_TIME || kp->send_counter >= REJECT_AFTER_MESSAGES)
        return NULL;
    return kp;
}

/* Four key slots hold four roles: current, previous, next (a responder's key
 * not yet confirmed) and the one a pending initiation will fill. A free slot
 * for one role therefore always exists. */
static int free_slot(const pl_sec_peer *p, int8_t keep)
{
    for (int i = 0; i < KEY_SLOTS; i++)
        if (i != p->current && i != p->previous && i != keep &&
            !(p->hs.state == HS_INITIATION_SENT && i == p->hs.kp_slot))
            return i;
    return -1; /* unreachable: four slots, at most three taken */
}

static void install_keypair(pl_sec_peer *p, int slot, const uint8_t send[32], const uint8_t recv[32],
                            uint32_t local_index, uint32_t remote_index, uint8_t cipher, bool initiator, pl_time now)
{
    keypair *kp = &p->kp[slot];
    wipe_keypair(kp);
    memcpy(kp->send_key, send, 32);
    memcpy(kp->recv_key, recv, 32);
    kp->local_index = local_index;
    kp->remote_index = remote_index;
    kp->cipher = cipher;
    kp->initiator = initiator;
    kp->created = now;
    kp->valid = true;
    pl_replay_reset(&kp->replay);
}

/* The initiator uses a new keypair at once: current moves to previous. */
static void rotate_in_as_current(pl_sec_peer *p, int slot)
{
    if (p->previous >= 0 && p->previous != slot) wipe_keypair(&p->kp[p->previous]);
    p->previous = p->current;
    p->current = (int8_t)slot;
    if (p->next == slot) p->next = -1;
}

/* ---- sealing ------------------------------------------------------------------------ */

static size_t seal(const keypair *kp, uint8_t *out, uint64_t counter, const uint8_t *plain, size_t len)
{
    out[0] = MSG_DATA;
    out[1] = out[2] = out[3] = 0;
    pl_put_u32be(out + 4, kp->remote_index);
    pl_put_u64be(out + 8, counter);
    uint8_t nonce[12] = {0};
    pl_put_u64be(nonce + 4, counter);
    unsigned long long clen = 0;
    if (kp->cipher == PL_SEC_CIPHER_AES256GCM)
        crypto_aead_aes256gcm_encrypt(out + DATA_HEADER, &clen, plain, len, out, DATA_HEADER, NULL, nonce, kp->send_key);
    else
        crypto_aead_chacha20poly1305_ietf_encrypt(out + DATA_HEADER, &clen, plain, len, out, DATA_HEADER, NULL, nonce,
                                                  kp->send_key);
    return DATA_HEADER + (size_t)clen;
}

static bool open_sealed(const keypair *kp, uint8_t *plain, const uint8_t *pkt, size_t len, uint64_t counter)
{
    uint8_t nonce[12] = {0};
    pl_put_u64be(nonce + 4, counter);
    if (kp->cipher == PL_SEC_CIPHER_AES256GCM)
        return crypto_aead_aes256gcm_decrypt(plain, NULL, NULL, pkt + DATA_HEADER, len - DATA_HEADER, pkt, DATA_HEADER,
                                             nonce, kp->recv_key) == 0;
    return crypto_aead_chacha20poly1305_ietf_decrypt(plain, NULL, NULL, pkt + DATA_HEADER, len - DATA_HEADER, pkt,
                                                     DATA_HEADER, nonce, kp->recv_key) == 0;
}

static void send_on(pl_sec *sec, pl_sec_peer *p, keypair *kp, const uint8_t *data, size_t len, pl_time now)
{
    size_t n = seal(kp, sec->out, kp->send_counter++, data, len);
    p->last_sent = now;
    send_datagram(sec, &p->addr, sec->out, n);
}

/* ---- certificates ----------------------------------------------------------------------- */

/* Checks a certificate received in a handshake. The signature is verified
 * once per distinct certificate; validity and revocation every time. */
static pl_cert_err check_cert(pl_sec *sec, pl_sec_peer *known, const uint8_t *bytes, size_t len,
                              const uint8_t dh_pk[32], pl_cert *out, uint8_t digest[16], pl_time now)
{
    pl_cert_err err = pl_cert_decode(out, bytes, len);
    if (err) return err;
    if (sodium_memcmp(out->dh_pk, dh_pk, 32) != 0) return PL_CERT_ERR_MALFORMED;
    crypto_generichash(digest, 16, bytes, len, NULL, 0);
    uint64_t now_s = now / PL_SEC;
    if (known && known->have_cert && sodium_memcmp(known->cert_digest, digest, 16) == 0) {
        if (now_s < out->not_before) return PL_CERT_ERR_NOT_YET_VALID;
        if (now_s >= out->not_after) return PL_CERT_ERR_EXPIRED;
        if (sec->crl && pl_crl_contains(sec->crl, out->serial)) return PL_CERT_ERR_REVOKED;
        return PL_CERT_OK;
    }
    return pl_cert_verify(out, sec->ca_pk, now_s, sec->crl);
}

static void refuse_cert(pl_sec *sec, pl_cert_err err)
{
    sec->stats.drop_cert++;
    sec->stats.last_cert_err = err;
}

/* ---- peers ------------------------------------------------------------------------------ */

/* ss, when not NULL, is the static-static DH the caller already computed
 * (a responder needs it to open the initiation before the peer exists), so
 * that a first contact pays for it once. */
static pl_sec_peer *new_peer(pl_sec *sec, const uint8_t sign_pk[32], const uint8_t dh_pk[32], const uint8_t *ss)
{
    if (sec->free_count == 0) return NULL;
    uint32_t slot = sec->free_slots[--sec->free_count];
    pl_sec_peer *p = &sec->peers[slot];
    memset(p, 0, sizeof *p);
    p->used = true;
    p->slot = slot;
    p->current = p->previous = p->next = -1;
    p->heap_pos = SIZE_MAX;
    p->deadline = PL_TIME_NEVER;
    memcpy(p->dh_pk, dh_pk, 32);
    memcpy(p->sign_pk, sign_pk, 32);
    pl_cookie_maker_init(&p->cookie);
    if (ss) {
        memcpy(p->ss, ss, 32);
    } else if (!pl_noise_dh(p->ss, sec->id.dh_sk, dh_pk)) {
        p->used = false;
        sec->free_slots[sec->free_count++] = slot;
        return NULL;
    }
    index_insert(sec, false, p);
    index_insert(sec, true, p);
    return p;
}

void pl_sec_close(pl_sec *sec, pl_sec_peer *p)
{
    if (!p || !p->used) return;
    heap_remove(sec, p);
    index_remove(sec, false, p);
    index_remove(sec, true, p);
    uint32_t slot = p->slot;
    sodium_memzero(p, sizeof *p);
    p->heap_pos = SIZE_MAX;
    sec->free_slots[sec->free_count++] = slot;
}

/* ---- initiations ------------------------------------------------------------------------- */

/* Writes the initiation for the handshake state in p->hs (ephemeral key,
 * index and timestamp already chosen) into sec->out and returns its size.
 * Building is deterministic, so the same initiation can be rebuilt with a
 * cookie's mac2 without changing anything the responder may have seen. */
static size_t build_initiation(pl_sec *sec, pl_sec_peer *p, pl_time now)
{
    handshake *hs = &p->hs;
    uint8_t *m = sec->out;
    size_t len = INITIATION_FIXED + sec->cert_len;

    pl_noise_wipe(&hs->ns);
    pl_noise_init(&hs->ns, p->dh_pk);
    m[0] = MSG_INITIATION;
    m[1] = m[2] = m[3] = 0;
    pl_put_u32be(m + 4, hs->local_index);
    /* The cleartext header goes into the transcript, so that every byte of a
     * handshake message is authenticated, the indices included. */
    pl_noise_mix_hash(&hs->ns, m, HEADER_SIZE);
    memcpy(m + 8, hs->e_pk, 32);
    pl_noise_mix_hash(&hs->ns, hs->e_pk, 32);
    if (!pl_noise_mix_dh(&hs->ns, hs->e_sk, p->dh_pk)) return 0; /* cannot happen: the key was checked */
    pl_noise_encrypt_and_hash(&hs->ns, sec->id.dh_pk, 32, m + 40);
    pl_noise_mix_key(&hs->ns, p->ss);
    /* Its own buffer, not sec->plain: an application that opens a session
     * from inside a DATA callback must not overwrite the data it was given. */
    uint8_t payload[9 + PL_CERT_MAX_SIZE];
    pl_put_u64be(payload, hs->timestamp);
    payload[8] = sec->ciphers;
    memcpy(payload + 9, sec->cert, sec->cert_len);
    pl_noise_encrypt_and_hash(&hs->ns, payload, 9 + sec->cert_len, m + 88);
    pl_cookie_add_macs(&p->cookie, p->dh_pk, now, m, len, true);
    return len;
}

static void send_initiation(pl_sec *sec, pl_sec_peer *p, pl_time now)
{
    handshake *hs = &p->hs;
    sec->rng->fill(sec->rng->ctx, hs->e_sk, 32);
    crypto_scalarmult_base(hs->e_pk, hs->e_sk);
    if (hs->state != HS_INITIATION_SENT) hs->kp_slot = (int8_t)free_slot(p, p->next);
    hs->local_index = make_index(sec, p->slot, (uint32_t)hs->kp_slot);
    /* The timestamp only has to grow, across restarts too: the time does. */
    hs->timestamp = now > sec->last_timestamp ? now : sec->last_timestamp + 1;
    sec->last_timestamp = hs->timestamp;
    size_t len = build_initiation(sec, p, now);
    if (len == 0) return;

    if (hs->state != HS_INITIATION_SENT) {
        hs->state = HS_INITIATION_SENT;
        hs->first_sent = now;
        hs->retry_interval = RETRY_FIRST;
    } else {
        hs->retry_interval = hs->retry_interval * 2 > RETRY_MAX ? RETRY_MAX : hs->retry_interval * 2;
    }
    /* Up to an eighth of jitter so that peers restarted together spread out. */
    hs->next_retry = now + hs->retry_interval + pl_rng_below(sec->rng, hs->retry_interval / 8 + 1);
    sec->stats.handshakes_initiated++;
    send_datagram(sec, &p->addr, sec->out, len);
    reschedule(sec, p);
}

static void start_handshake(pl_sec *sec, pl_sec_peer *p, pl_time now)
{
    if (p->hs.state == HS_INITIATION_SENT) return;
    send_initiation(sec, p, now);
}

static void consume_initiation(pl_sec *sec, const pl_addr *from, const uint8_t *m, size_t len, pl_time now)
{
    if (len < INITIATION_FIXED + CERT_MIN || len > INITIATION_FIXED + PL_CERT_MAX_SIZE || m[1] | m[2] | m[3]) {
        sec->stats.drop_malformed++;
        return;
    }
    pl_cookie_result mac = pl_cookie_check(&sec->cookies, sec->rng, now, m, len, from);
    if (mac == PL_COOKIE_BAD_MAC1 || mac == PL_COOKIE_BAD_MAC2) {
        sec->stats.drop_mac++;
        return;
    }

    /* Load: count initiations per second; over the threshold, demand proof
     * of address (mac2) before any Diffie-Hellman, and rate-limit sources. */
    if (now - sec->load_window_start >= LOAD_WINDOW) {
        sec->load_window_start = now;
        sec->load_count = 0;
    }
    if (++sec->load_count > sec->load_threshold) sec->under_load_until = now + LOAD_WINDOW;
    if (now < sec->under_load_until) {
        if (mac != PL_COOKIE_MAC2_OK) {
            uint8_t reply[PL_COOKIE_REPLY_SIZE];
            pl_cookie_make_reply(&sec->cookies, sec->rng, now, reply, pl_get_u32be(m + 4), m, len, from);
            sec->stats.cookies_sent++;
            send_datagram(sec, from, reply, sizeof reply);
            return;
        }
        if (!pl_ratelimit_allow(&sec->ratelimit, from, now)) {
            sec->stats.drop_ratelimit++;
            return;
        }
    }

    pl_noise ns;
    uint8_t s[32], ss[32], e_r_sk[32], e_r_pk[32];
    uint8_t *payload = sec->plain;
    size_t payload_len = len - (HEADER_SIZE + 32 + 48 + MACS_SIZE) - 16;
    pl_sec_peer *p = NULL;
    pl_cert cert;
    uint8_t digest[16];

    pl_noise_init(&ns, sec->id.dh_pk);
    pl_noise_mix_hash(&ns, m, HEADER_SIZE);
    const uint8_t *e_i = m + 8;
    pl_noise_mix_hash(&ns, e_i, 32);
    if (!pl_noise_mix_dh(&ns, sec->id.dh_sk, e_i) || !pl_noise_decrypt_and_hash(&ns, m + 40, 48, s)) {
        sec->stats.drop_handshake++;
        goto out;
    }
    if (sodium_memcmp(s, sec->id.dh_pk, 32) == 0) {
        /* Our own initiation reflected back at us. */
        sec->stats.drop_handshake++;
        goto out;
    }
    p = find_by_key(sec, s);
    if (p) {
        memcpy(ss, p->ss, 32);
    } else if (!pl_noise_dh(ss, sec->id.dh_sk, s)) {
        sec->stats.drop_handshake++;
        goto out;
    }
    pl_noise_mix_key(&ns, ss);
    if (!pl_noise_decrypt_and_hash(&ns, m + 88, payload_len + 16, payload)) {
        sec->stats.drop_handshake++;
        goto out;
    }
    uint64_t ts = pl_get_u64be(payload);
    uint8_t their_ciphers = payload[8];
    pl_cert_err cerr = check_cert(sec, p, payload + 9, payload_len - 9, s, &cert, digest, now);
    if (cerr) {
        refuse_cert(sec, cerr);
        goto out;
    }
    /* A peer the application opened by signing key must present that key:
     * a certificate binding its X25519 key to another signing key (a forged
     * directory record, or the other of the two Ed25519 keys that map to one
     * X25519 key) is refused. */
    static const uint8_t no_key[32];
    if (p && sodium_memcmp(p->sign_pk, no_key, 32) != 0 && sodium_memcmp(p->sign_pk, cert.sign_pk, 32) != 0) {
        refuse_cert(sec, PL_CERT_ERR_MALFORMED);
        goto out;
    }
    if (p && ts <= p->latest_timestamp) {
        sec->stats.drop_replay++;
        goto out;
    }
    if (p && p->last_initiation_rx && now - p->last_initiation_rx < MIN_INITIATION_GAP) {
        sec->stats.drop_flood++;
        goto out;
    }
    if (!p) {
        if (!sec->accept_incoming) {
            sec->stats.drop_handshake++;
            goto out;
        }
        p = new_peer(sec, cert.sign_pk, s, ss);
        if (!p) {
            sec->stats.drop_flood++;
            goto out;
        }
    }
    p->latest_timestamp = ts;
    p->last_initiation_rx = now;
    p->cert = cert;
    p->have_cert = true;
    memcpy(p->cert_digest, digest, 16);
    p->addr = *from;

    /* The response. */
    uint8_t common = their_ciphers & sec->ciphers;
    uint8_t chosen = (common & PL_SEC_CIPHER_AES256GCM) ? PL_SEC_CIPHER_AES256GCM : PL_SEC_CIPHER_CHACHA20POLY1305;
    if (!(common & chosen)) {
        sec->stats.drop_handshake++; /* no cipher in common */
        goto out;
    }
    int slot = p->next >= 0 ? p->next : free_slot(p, -1);
    uint32_t local_index = make_index(sec, p->slot, (uint32_t)slot);
    uint8_t *r = sec->out;
    size_t rlen = RESPONSE_FIXED + sec->cert_len;
    sec->rng->fill(sec->rng->ctx, e_r_sk, 32);
    crypto_scalarmult_base(e_r_pk, e_r_sk);
    r[0] = MSG_RESPONSE;
    r[1] = r[2] = r[3] = 0;
    pl_put_u32be(r + 4, local_index);
    memcpy(r + 8, m + 4, 4); /* receiver = the initiator's index */
    memcpy(r + 12, e_r_pk, 32);
    pl_noise_mix_hash(&ns, r, HEADER_SIZE + 4);
    pl_noise_mix_hash(&ns, e_r_pk, 32);
    if (!pl_noise_mix_dh(&ns, e_r_sk, e_i) || !pl_noise_mix_dh(&ns, e_r_sk, s)) {
        sec->stats.drop_handshake++;
        goto out;
    }
    uint8_t rp[1 + PL_CERT_MAX_SIZE];
    rp[0] = chosen;
    memcpy(rp + 1, sec->cert, sec->cert_len);
    pl_noise_encrypt_and_hash(&ns, rp, 1 + sec->cert_len, r + 44);
    pl_cookie_add_macs(&p->cookie, p->dh_pk, now, r, rlen, false);

    uint8_t k1[32], k2[32];
    pl_noise_split(&ns, k1, k2);
    install_keypair(p, slot, k2, k1, local_index, pl_get_u32be(m + 4), chosen, false, now);
    p->next = (int8_t)slot;
    sodium_memzero(k1, sizeof k1);
    sodium_memzero(k2, sizeof k2);
    send_datagram(sec, from, r, rlen);
    reschedule(sec, p);
out:
    pl_noise_wipe(&ns);
    sodium_memzero(ss, sizeof ss);
    sodium_memzero(e_r_sk, sizeof e_r_sk);
    sodium_memzero(payload, PL_SEC_MAX_DATAGRAM);
}

static pl_sec_peer *peer_for_index(pl_sec *sec, uint32_t index, uint32_t *which)
{
    uint32_t slot = (index >> 2) & ((1u << SLOT_BITS) - 1);
    *which = index & 3;
    if (slot >= sec->max_peers || !sec->peers[slot].used) return NULL;
    return &sec->peers[slot];
}

static void consume_response(pl_sec *sec, const pl_addr *from, const uint8_t *m, size_t len, pl_time now)
{
    if (len < RESPONSE_FIXED + CERT_MIN || len > RESPONSE_FIXED + PL_CERT_MAX_SIZE || m[1] | m[2] | m[3]) {
        sec->stats.drop_malformed++;
        return;
    }
    uint32_t which, index = pl_get_u32be(m + 8);
    pl_sec_peer *p = peer_for_index(sec, index, &which);
    if (!p || p->hs.state != HS_INITIATION_SENT || p->hs.local_index != index) {
        sec->stats.drop_unknown_index++;
        return;
    }
    pl_cookie_result mac = pl_cookie_check(&sec->cookies, sec->rng, now, m, len, from);
    if (mac == PL_COOKIE_BAD_MAC1 || mac == PL_COOKIE_BAD_MAC2) {
        sec->stats.drop_mac++;
        return;
    }
    pl_noise ns = p->hs.ns; /* work on a copy: a forged response must not spoil the real one */
    uint8_t *payload = sec->plain;
    size_t payload_len = len - RESPONSE_FIXED + 1;
    pl_cert cert;
    uint8_t digest[16];
    const uint8_t *e_r = m + 12;
    pl_noise_mix_hash(&ns, m, HEADER_SIZE + 4);
    pl_noise_mix_hash(&ns, e_r, 32);
    if (!pl_noise_mix_dh(&ns, p->hs.e_sk, e_r) || !pl_noise_mix_dh(&ns, sec->id.dh_sk, e_r) ||
        !pl_noise_decrypt_and_hash(&ns, m + 44, payload_len + 16, payload)) {
        sec->stats.drop_handshake++;
        goto out;
    }
    uint8_t chosen = payload[0];
    if (!(chosen & sec->ciphers) || (chosen != PL_SEC_CIPHER_AES256GCM && chosen != PL_SEC_CIPHER_CHACHA20POLY1305)) {
        sec->stats.drop_handshake++;
        goto out;
    }
    pl_cert_err cerr = check_cert(sec, p, payload + 1, payload_len - 1, p->dh_pk, &cert, digest, now);
    if (!cerr && sodium_memcmp(cert.sign_pk, p->sign_pk, 32) != 0) cerr = PL_CERT_ERR_MALFORMED;
    if (cerr) {
        refuse_cert(sec, cerr);
        goto out;
    }
    p->cert = cert;
    p->have_cert = true;
    memcpy(p->cert_digest, digest, 16);

    uint8_t k1[32], k2[32];
    pl_noise_split(&ns, k1, k2);
    int slot = p->hs.kp_slot;
    install_keypair(p, slot, k1, k2, p->hs.local_index, pl_get_u32be(m + 4), chosen, true, now);
    rotate_in_as_current(p, slot);
    sodium_memzero(k1, sizeof k1);
    sodium_memzero(k2, sizeof k2);
    pl_noise_wipe(&p->hs.ns);
    sodium_memzero(p->hs.e_sk, 32);
    p->hs.state = HS_NONE;
    p->addr = *from;
    sec->stats.handshakes_completed++;

    bool first = !p->reported;
    p->reported = true;
    uint64_t sent_before = p->kp[slot].send_counter;
    if (first) emit(sec, PL_SEC_EV_ESTABLISHED, p, from, NULL, 0, now);
    /* Confirm the new key to the responder at once, so that it may use it,
     * unless the application already sent something on it. */
    if (p->used && p->current == slot && p->kp[slot].send_counter == sent_before)
        send_on(sec, p, &p->kp[slot], NULL, 0, now);
    if (p->used) reschedule(sec, p);
out:
    pl_noise_wipe(&ns);
    sodium_memzero(payload, PL_SEC_MAX_DATAGRAM);
}

static void consume_cookie(pl_sec *sec, const pl_addr *from, const uint8_t *m, size_t len, pl_time now)
{
    if (len != PL_COOKIE_REPLY_SIZE || m[1] | m[2] | m[3]) {
        sec->stats.drop_malformed++;
        return;
    }
    uint32_t which, index = pl_get_u32be(m + 4);
    pl_sec_peer *p = peer_for_index(sec, index, &which);
    if (!p || p->hs.state != HS_INITIATION_SENT || p->hs.local_index != index) {
        sec->stats.drop_unknown_index++;
        return;
    }
    if (!pl_cookie_consume_reply(&p->cookie, p->dh_pk, now, m, len)) {
        sec->stats.drop_mac++;
        return;
    }
    sec->stats.cookies_received++;
    /* Send the same initiation again at once, now with mac2: same index,
     * ephemeral key and timestamp. If the reply was forged by someone who saw
     * the initiation, nothing is lost: a response to the original is still
     * accepted, and the responder drops this copy as a replay. */
    size_t again = build_initiation(sec, p, now);
    if (again) send_datagram(sec, &p->addr, sec->out, again);
}

static void consume_data(pl_sec *sec, const pl_addr *from, const uint8_t *m, size_t len, pl_time now)
{
    if (len < DATA_HEADER + 16 || len > PL_SEC_MAX_DATAGRAM || m[1] | m[2] | m[3]) {
        sec->stats.drop_malformed++;
        return;
    }
    uint32_t which, index = pl_get_u32be(m + 4);
    pl_sec_peer *p = peer_for_index(sec, index, &which);
    if (!p || !p->kp[which].valid || p->kp[which].local_index != index) {
        sec->stats.drop_unknown_index++;
        return;
    }
    keypair *kp = &p->kp[which];
    uint64_t counter = pl_get_u64be(m + 8);
    if (now - kp->created >= REJECT_AFTER_TIME || counter >= REJECT_AFTER_MESSAGES) {
        sec->stats.drop_expired_key++;
        return;
    }
    if (!pl_replay_check(&kp->replay, counter)) {
        sec->stats.drop_replay++;
        return;
    }
    size_t plen = len - DATA_HEADER - 16;
    if (!open_sealed(kp, sec->plain, m, len, counter)) {
        sec->stats.drop_auth++;
        return;
    }
    pl_replay_accept(&kp->replay, counter);

    /* The first packet on the responder's new key confirms it. */
    if (p->next == (int8_t)which) {
        if (p->previous >= 0) wipe_keypair(&p->kp[p->previous]);
        p->previous = p->current;
        p->current = (int8_t)which;
        p->next = -1;
        sec->stats.handshakes_completed++;
    }
    p->addr = *from;
    p->last_received = now;
    bool first = !p->reported;
    p->reported = true;
    if (first) emit(sec, PL_SEC_EV_ESTABLISHED, p, from, NULL, 0, now);
    if (!p->used) return;
    if (plen == 0) {
        sec->stats.rx_keepalive++;
    } else {
        sec->stats.rx_data++;
        emit(sec, PL_SEC_EV_DATA, p, from, sec->plain, plen, now);
        if (!p->used) return;
    }
    /* The side that made a key renews it before the other side stops
     * taking it, even if only the other side is sending. */
    keypair *cur = p->current >= 0 ? &p->kp[p->current] : NULL;
    if (cur && cur->initiator && now - cur->created >= REKEY_ON_RECEIVE_TIME) start_handshake(sec, p, now);
    reschedule(sec, p);
}

void pl_sec_receive(pl_sec *sec, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    if (len < 4) {
        sec->stats.drop_malformed++;
        return;
    }
    switch (data[0]) {
    case MSG_INITIATION: consume_initiation(sec, from, data, len, now); break;
    case MSG_RESPONSE: consume_response(sec, from, data, len, now); break;
    case MSG_COOKIE: consume_cookie(sec, from, data, len, now); break;
    case MSG_DATA: consume_data(sec, from, data, len, now); break;
    default: sec->stats.drop_malformed++; break;
    }
}

/* ---- sending and timers ---------------------------------------------------------------- */

pl_sec_err pl_sec_send(pl_sec *sec, pl_sec_peer *p, const uint8_t *data, size_t len, pl_time now)
{
    if (len > PL_SEC_MAX_PAYLOAD) return PL_SEC_ERR_TOO_BIG;
    keypair *kp = usable_current(sec, p, now);
    if (!kp) {
        if (p->want_session || p->reported) start_handshake(sec, p, now);
        return PL_SEC_ERR_NOT_READY;
    }
    pl_time rekey_at = kp->initiator ? REKEY_AFTER_TIME : REKEY_AFTER_TIME_RESPONDER;
    if (now - kp->created >= rekey_at || kp->send_counter >= REKEY_AFTER_MESSAGES) start_handshake(sec, p, now);
    send_on(sec, p, kp, data, len, now);
    sec->stats.tx_data++;
    reschedule(sec, p);
    return PL_SEC_OK;
}

static void peer_timers(pl_sec *sec, pl_sec_peer *p, pl_time now)
{
    handshake *hs = &p->hs;
    if (hs->state == HS_INITIATION_SENT && now >= hs->next_retry) {
        if (now - hs->first_sent >= GIVE_UP_AFTER) {
            hs->state = HS_NONE;
            pl_noise_wipe(&hs->ns);
            sodium_memzero(hs->e_sk, 32);
            if (!usable_current(sec, p, now)) {
                emit(sec, PL_SEC_EV_FAILED, p, &p->addr, NULL, 0, now);
                if (!p->used) return;
            }
        } else {
            pl_cookie_maker_forget(&p->cookie);
            send_initiation(sec, p, now);
        }
    }
    for (int i = 0; i < KEY_SLOTS; i++) {
        if (p->kp[i].valid && now - p->kp[i].created >= WIPE_AFTER_TIME) {
            wipe_keypair(&p->kp[i]);
            if (p->current == i) p->current = -1;
            if (p->previous == i) p->previous = -1;
            if (p->next == i) p->next = -1;
        }
    }
    if (p->reported && p->current < 0 && p->next < 0) {
        p->reported = false;
        emit(sec, PL_SEC_EV_EXPIRED, p, &p->addr, NULL, 0, now);
        if (!p->used) return;
    }
    /* Passive keepalive: tell a peer that talks to us that we still hear it. */
    if (sec->passive_keepalive && p->last_received > p->last_sent && now >= p->last_received + KEEPALIVE_AFTER) {
        keypair *kp = usable_current(sec, p, now);
        if (kp) send_on(sec, p, kp, NULL, 0, now);
        else p->last_sent = now;
    }
}

void pl_sec_tick(pl_sec *sec, pl_time now)
{
    while (sec->heap_len > 0) {
        pl_sec_peer *p = &sec->peers[sec->heap[0]];
        if (p->deadline > now) break;
        peer_timers(sec, p, now);
        if (p->used) reschedule(sec, p);
        /* A peer whose deadline did not move forward would spin; push it. */
        if (p->used && p->deadline <= now) {
            p->deadline = now + 1;
            heap_fix(sec, p->heap_pos);
        }
    }
}

pl_time pl_sec_next_timeout(const pl_sec *sec)
{
    return sec->heap_len ? sec->peers[sec->heap[0]].deadline : PL_TIME_NEVER;
}

pl_sec_err pl_sec_rekey(pl_sec *sec, pl_sec_peer *p, pl_time now)
{
    p->want_session = true;
    start_handshake(sec, p, now);
    return PL_SEC_OK;
}

/* ---- set-up --------------------------------------------------------------------------------- */

static pl_sec_err connect_keys(pl_sec *sec, const uint8_t sign_pk[32], const uint8_t dh_pk[32], const pl_addr *addr,
                               pl_time now, pl_sec_peer **out)
{
    if (sodium_memcmp(dh_pk, sec->id.dh_pk, 32) == 0) return PL_SEC_ERR_SELF;
    pl_sec_peer *p = find_by_key(sec, dh_pk);
    if (!p) {
        if (sec->free_count == 0) return PL_SEC_ERR_FULL;
        p = new_peer(sec, sign_pk, dh_pk, NULL);
        if (!p) return PL_SEC_ERR_BAD_KEY;
    } else if (sodium_memcmp(p->sign_pk, sign_pk, 32) != 0) {
        return PL_SEC_ERR_BAD_KEY;
    }
    p->want_session = true;
    p->addr = *addr;
    if (out) *out = p;
    if (!usable_current(sec, p, now)) start_handshake(sec, p, now);
    return PL_SEC_OK;
}

pl_sec_err pl_sec_connect(pl_sec *sec, const uint8_t peer_sign_pk[32], const pl_addr *addr, pl_time now,
                          pl_sec_peer **out)
{
    uint8_t dh_pk[32];
    if (crypto_sign_ed25519_pk_to_curve25519(dh_pk, peer_sign_pk) != 0) return PL_SEC_ERR_BAD_KEY;
    return connect_keys(sec, peer_sign_pk, dh_pk, addr, now, out);
}

pl_sec_err pl_sec_connect_cert(pl_sec *sec, const pl_cert *peer_cert, const pl_addr *addr, pl_time now,
                               pl_sec_peer **out)
{
    uint8_t bytes[PL_CERT_MAX_SIZE];
    size_t len;
    pl_cert_err cerr = pl_cert_encode(peer_cert, bytes, sizeof bytes, &len);
    if (!cerr) cerr = pl_cert_verify(peer_cert, sec->ca_pk, now / PL_SEC, sec->crl);
    if (cerr) {
        refuse_cert(sec, cerr);
        return PL_SEC_ERR_BAD_CERT;
    }
    pl_sec_peer *p = NULL;
    pl_sec_err err = connect_keys(sec, peer_cert->sign_pk, peer_cert->dh_pk, addr, now, &p);
    if (err) return err;
    /* Remember the verified certificate: when the peer presents the same
     * bytes in its response, the signature need not be checked again. */
    if (!p->have_cert) {
        p->cert = *peer_cert;
        p->have_cert = true;
        crypto_generichash(p->cert_digest, 16, bytes, len, NULL, 0);
    }
    if (out) *out = p;
    return PL_SEC_OK;
}

/* Sources tracked by the per-source limit under load: 4096 for an endpoint
 * that serves many peers, fewer for one that has few (a node holds a few
 * sessions, and a simulation holds a great many nodes). */
static uint32_t ratelimit_size(uint32_t max_peers)
{
    uint32_t n = 64;
    while (n < 4096 && n < 4 * max_peers) n <<= 1;
    return n;
}

pl_sec_err pl_sec_new(pl_sec **out, const pl_sec_config *cfg, const pl_sec_io *io)
{
    *out = NULL;
    if (!cfg || !cfg->identity || !cfg->rng || !cfg->cert || cfg->cert_len > PL_CERT_MAX_SIZE || !io)
        return PL_SEC_ERR_CONFIG;
    pl_cert own;
    if (pl_cert_decode(&own, cfg->cert, cfg->cert_len) != PL_CERT_OK ||
        sodium_memcmp(own.dh_pk, cfg->identity->dh_pk, 32) != 0)
        return PL_SEC_ERR_CONFIG;
    uint32_t max = cfg->max_peers ? cfg->max_peers : 1024;
    if (max > (1u << SLOT_BITS)) return PL_SEC_ERR_CONFIG;
    if (cfg->key_lifetime_s && (cfg->key_lifetime_s < 120 || cfg->key_lifetime_s > 3600)) return PL_SEC_ERR_CONFIG;
    const pl_mem *mem = cfg->mem ? cfg->mem : pl_mem_system();

    pl_sec *sec = mem->calloc(mem->ctx, 1, sizeof *sec);
    if (!sec) return PL_SEC_ERR_NOMEM;
    sec->mem = mem;
    sec->id = *cfg->identity;
    memcpy(sec->cert, cfg->cert, cfg->cert_len);
    sec->cert_len = cfg->cert_len;
    memcpy(sec->ca_pk, cfg->ca_pk, 32);
    sec->rng = cfg->rng;
    sec->io = *io;
    sec->accept_incoming = cfg->accept_incoming;
    sec->load_threshold = cfg->load_threshold ? cfg->load_threshold : 1000;
    sec->passive_keepalive = !cfg->no_passive_keepalive;
    sec->reject_after = cfg->key_lifetime_s ? (pl_time)cfg->key_lifetime_s * PL_SEC : DEFAULT_KEY_LIFETIME;
    uint8_t have = PL_SEC_CIPHER_CHACHA20POLY1305 | (crypto_aead_aes256gcm_is_available() ? PL_SEC_CIPHER_AES256GCM : 0);
    sec->ciphers = cfg->ciphers ? (uint8_t)(cfg->ciphers & have) : have;
    if (!sec->ciphers) sec->ciphers = PL_SEC_CIPHER_CHACHA20POLY1305;
    sec->max_peers = max;
    sec->by_key_size = 16;
    while (sec->by_key_size < 2 * max) sec->by_key_size <<= 1;
    sec->peers = mem->calloc(mem->ctx, max, sizeof *sec->peers);
    sec->free_slots = mem->calloc(mem->ctx, max, sizeof *sec->free_slots);
    sec->by_key = mem->calloc(mem->ctx, sec->by_key_size, sizeof *sec->by_key);
    sec->by_sign = mem->calloc(mem->ctx, sec->by_key_size, sizeof *sec->by_sign);
    sec->heap = mem->calloc(mem->ctx, max, sizeof *sec->heap);
    if (!sec->peers || !sec->free_slots || !sec->by_key || !sec->by_sign || !sec->heap ||
        !pl_ratelimit_init(&sec->ratelimit, mem, cfg->rng, ratelimit_size(max), 20, 5)) {
        pl_sec_free(sec);
        return PL_SEC_ERR_NOMEM;
    }
    /* Hand out low slots first: the stack pops from the end. */
    for (uint32_t i = 0; i < max; i++) sec->free_slots[i] = max - 1 - i;
    sec->free_count = max;
    sec->rng->fill(sec->rng->ctx, sec->hash_key, sizeof sec->hash_key);
    pl_cookie_checker_init(&sec->cookies, sec->id.dh_pk);
    *out = sec;
    return PL_SEC_OK;
}

void pl_sec_free(pl_sec *sec)
{
    if (!sec) return;
    const pl_mem *mem = sec->mem;
    if (sec->peers) {
        sodium_memzero(sec->peers, (size_t)sec->max_peers * sizeof *sec->peers);
        mem->free(mem->ctx, sec->peers);
    }
    if (sec->free_slots) mem->free(mem->ctx, sec->free_slots);
    if (sec->by_key) mem->free(mem->ctx, sec->by_key);
    if (sec->by_sign) mem->free(mem->ctx, sec->by_sign);
    if (sec->heap) mem->free(mem->ctx, sec->heap);
    pl_ratelimit_free(&sec->ratelimit);
    pl_cookie_checker_wipe(&sec->cookies);
    sodium_memzero(sec, sizeof *sec);
    mem->free(mem->ctx, sec);
}

void pl_sec_set_crl(pl_sec *sec, const pl_crl *crl, pl_time now)
{
    sec->crl = crl;
    if (!crl) return;
    for (uint32_t i = 0; i < sec->max_peers; i++) {
        pl_sec_peer *p = &sec->peers[i];
        if (p->used && p->have_cert && pl_crl_contains(crl, p->cert.serial)) {
            emit(sec, PL_SEC_EV_REVOKED, p, &p->addr, NULL, 0, now);
            pl_sec_close(sec, p);
        }
    }
}

pl_sec_stats pl_sec_get_stats(const pl_sec *sec) { return sec->stats; }

pl_sec_peer *pl_sec_find(pl_sec *sec, const uint8_t sign_pk[32]) { return index_find(sec, true, sign_pk); }

const pl_cert *pl_sec_peer_cert(const pl_sec_peer *p) { return p->have_cert ? &p->cert : NULL; }
const pl_addr *pl_sec_peer_addr(const pl_sec_peer *p) { return &p->addr; }
const uint8_t *pl_sec_peer_key(const pl_sec_peer *p) { return p->sign_pk; }
void pl_sec_peer_set_addr(pl_sec_peer *p, const pl_addr *addr) { p->addr = *addr; }
bool pl_sec_peer_established(const pl_sec_peer *p) { return p->reported; }
uint8_t pl_sec_peer_cipher(const pl_sec_peer *p) { return p->current >= 0 ? p->kp[p->current].cipher : 0; }
void pl_sec_peer_set_user(pl_sec_peer *p, void *user) { p->user = user; }
void *pl_sec_peer_user(const pl_sec_peer *p) { return p->user; }

const char *pl_sec_strerror(pl_sec_err err)
{
    switch (err) {
    case PL_SEC_OK: return "ok";
    case PL_SEC_ERR_CONFIG: return "bad secure-session configuration";
    case PL_SEC_ERR_NOMEM: return "out of memory";
    case PL_SEC_ERR_FULL: return "the peer table is full";
    case PL_SEC_ERR_NOT_READY: return "no session key yet";
    case PL_SEC_ERR_TOO_BIG: return "payload too large";
    case PL_SEC_ERR_BAD_KEY: return "not a usable public key";
    case PL_SEC_ERR_SELF: return "cannot open a session to oneself";
    case PL_SEC_ERR_BAD_CERT: return "the certificate does not verify";
    }
    return "unknown secure-session error";
}
