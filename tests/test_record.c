/*
 * test_record.c - signed directory records, as docs/directory.md specifies
 * them: the layout, every refusal of the decoder, what verification checks,
 * and what a directory store does with a record offered to it.
 *
 * The layout is written out a second time here (raw_encode), independently
 * of record.c, so that the tests pin the byte format and can build the
 * non-canonical encodings the decoder must refuse.
 */
#include <sodium.h>
#include <stdlib.h>

#include "parley.h"
#include "record.h"
#include "test.h"
#include "wire.h"

#define NOW 1800000000ull /* a fixed Unix time */

typedef struct ca_keys {
    uint8_t pk[32], sk[64];
} ca_keys;

/* A registered user: key, certificate and its encoding. */
typedef struct user {
    pl_identity id;
    pl_cert cert;
    uint8_t cert_bytes[PL_CERT_MAX_SIZE];
    size_t cert_len;
} user;

static ca_keys make_ca(void)
{
    ca_keys ca;
    crypto_sign_keypair(ca.pk, ca.sk);
    return ca;
}

static void make_user_valid(user *u, const ca_keys *ca, const char *name, uint64_t serial, uint64_t not_before,
                            uint64_t not_after)
{
    pl_identity_generate(&u->id, pl_rng_system());
    memset(&u->cert, 0, sizeof u->cert);
    u->cert.version = PL_CERT_VERSION;
    u->cert.serial = serial;
    u->cert.not_before = not_before;
    u->cert.not_after = not_after;
    memcpy(u->cert.sign_pk, u->id.sign_pk, 32);
    memcpy(u->cert.dh_pk, u->id.dh_pk, 32);
    u->cert.name_len = (uint8_t)strlen(name);
    memcpy(u->cert.name, name, u->cert.name_len);
    pl_cert_sign(&u->cert, ca->pk, ca->sk);
    if (pl_cert_encode(&u->cert, u->cert_bytes, sizeof u->cert_bytes, &u->cert_len) != PL_CERT_OK) abort();
}

static void make_user(user *u, const ca_keys *ca, const char *name, uint64_t serial)
{
    make_user_valid(u, ca, name, serial, NOW - 86400, NOW + 365 * 86400ull);
}

static pl_addr addr(const char *text)
{
    pl_addr a;
    if (!pl_addr_parse(&a, text, 0)) abort();
    return a;
}

/* Alice's usual record: attached to two supernodes (one reached over IPv4,
 * one over IPv6), four candidates in both families, given out of order and
 * put in order by the sort helpers. Not signed yet. */
static pl_record base_record(uint64_t sequence, uint64_t issued_at, uint32_t lifetime)
{
    pl_record r;
    memset(&r, 0, sizeof r);
    r.version = PL_RECORD_VERSION;
    r.nat_mapping = PL_NAT_ENDPOINT_INDEPENDENT;
    r.nat_filtering = PL_NAT_ADDRESS_AND_PORT_DEPENDENT;
    r.capabilities = PL_CAP_VOICE | PL_CAP_CHAT;
    r.sequence = sequence;
    r.issued_at = issued_at;
    r.expires_at = issued_at + lifetime;
    r.n_supernodes = 2;
    memset(r.supernodes[0].pk, 0x22, 32);
    r.supernodes[0].addr = addr("[2001:db8::5]:7400");
    memset(r.supernodes[1].pk, 0x11, 32);
    r.supernodes[1].addr = addr("203.0.113.5:7400");
    r.n_candidates = 4;
    r.candidates[0] = (pl_record_candidate){PL_CAND_RELAYED, PL_TRANSPORT_TCP, 100, addr("203.0.113.5:443")};
    r.candidates[1] = (pl_record_candidate){PL_CAND_SERVER_REFLEXIVE, PL_TRANSPORT_UDP, 200, addr("198.51.100.7:40000")};
    r.candidates[2] = (pl_record_candidate){PL_CAND_HOST, PL_TRANSPORT_UDP, 300, addr("[2001:db8::10]:5000")};
    r.candidates[3] = (pl_record_candidate){PL_CAND_HOST, PL_TRANSPORT_UDP, 250, addr("192.0.2.10:5000")};
    pl_record_sort_supernodes(&r);
    pl_record_sort_candidates(&r);
    return r;
}

static pl_record signed_record(const user *u, uint64_t sequence, uint64_t issued_at, uint32_t lifetime)
{
    pl_record r = base_record(sequence, issued_at, lifetime);
    if (pl_record_sign(&r, &u->id, u->cert_bytes, u->cert_len) != PL_RECORD_OK) abort();
    return r;
}

static size_t encode(const pl_record *r, uint8_t buf[PL_RECORD_MAX_SIZE])
{
    size_t n = 0;
    if (pl_record_encode(r, buf, PL_RECORD_MAX_SIZE, &n) != PL_RECORD_OK) abort();
    return n;
}

/* The layout of docs/directory.md, written without any check. */
static void raw_addr(pl_writer *w, const pl_addr *a)
{
    pl_write_u8(w, a->family);
    pl_write_u16(w, a->port);
    pl_write_bytes(w, a->ip, a->family == PL_AF_INET4 ? 4 : 16);
}

static size_t raw_encode(const pl_record *r, uint8_t *buf, size_t cap)
{
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, r->version);
    pl_write_u8(&w, r->flags);
    pl_write_u8(&w, r->nat_mapping);
    pl_write_u8(&w, r->nat_filtering);
    pl_write_u8(&w, r->nat_flags);
    pl_write_u8(&w, r->n_supernodes);
    pl_write_u8(&w, r->n_candidates);
    pl_write_u8(&w, r->presence);
    pl_write_u32(&w, r->capabilities);
    pl_write_u64(&w, r->sequence);
    pl_write_u64(&w, r->issued_at);
    pl_write_u64(&w, r->expires_at);
    pl_write_u16(&w, r->cert_len);
    for (size_t i = 0; i < r->n_supernodes && i < PL_RECORD_MAX_SUPERNODES; i++) {
        pl_write_bytes(&w, r->supernodes[i].pk, 32);
        raw_addr(&w, &r->supernodes[i].addr);
    }
    for (size_t i = 0; i < r->n_candidates && i < PL_RECORD_MAX_CANDIDATES; i++) {
        pl_write_u8(&w, r->candidates[i].type);
        pl_write_u8(&w, r->candidates[i].transport);
        pl_write_u32(&w, r->candidates[i].priority);
        raw_addr(&w, &r->candidates[i].addr);
    }
    pl_write_u8(&w, r->status_len);
    pl_write_bytes(&w, r->status, r->status_len < sizeof r->status ? r->status_len : sizeof r->status);
    pl_write_bytes(&w, r->cert_bytes, r->cert_len);
    pl_write_bytes(&w, r->sig, 64);
    if (w.err) abort();
    return w.off;
}

/* A record the decoder refuses, and the encoder refuses too: nothing that
 * cannot be read back can be written. */
static bool refused_both_ways(const pl_record *r)
{
    uint8_t buf[PL_RECORD_MAX_SIZE + 64], out[PL_RECORD_MAX_SIZE];
    size_t n = raw_encode(r, buf, sizeof buf), m;
    pl_record back;
    return pl_record_decode(&back, buf, n) == PL_RECORD_ERR_MALFORMED &&
           pl_record_encode(r, out, sizeof out, &m) == PL_RECORD_ERR_MALFORMED;
}

static pl_record_offer offer(const uint8_t *cur, size_t cur_len, const pl_record *cand, const ca_keys *ca,
                             const pl_crl *crl, uint64_t now, const char *name, pl_record_err *why)
{
    uint8_t buf[PL_RECORD_MAX_SIZE];
    size_t n = encode(cand, buf);
    return pl_record_slot_offer(cur, cur_len, buf, n, ca->pk, crl, now, name, why);
}

/* ---- layout ------------------------------------------------------------------- */

static void a_record_round_trips_byte_for_byte(void)
{
    ca_keys ca = make_ca();
    user alice;
    make_user(&alice, &ca, "alice", 1);
    pl_record r = signed_record(&alice, 7, NOW, 600), back;
    uint8_t buf[PL_RECORD_MAX_SIZE], buf2[PL_RECORD_MAX_SIZE], raw[PL_RECORD_MAX_SIZE];
    size_t n = encode(&r, buf);
    /* 38 header + supernodes (32+7, 32+19) + candidates (6+19, 3 x 6+7)
     * + an empty status (1) + certificate (172 + "alice") + signature. */
    CHECK_EQ(n, 38 + 39 + 51 + 25 + 3 * 13 + 1 + (PL_CERT_FIXED_SIZE + 5) + 64);
    CHECK(n <= PL_RECORD_MAX_SIZE);
    /* The encoder writes exactly the documented layout. */
    CHECK_EQ(raw_encode(&r, raw, sizeof raw), n);
    CHECK(memcmp(raw, buf, n) == 0);
    CHECK_EQ(buf[0], PL_RECORD_VERSION);
    CHECK_EQ(pl_get_u64be(buf + 12), 7);
    CHECK_EQ(pl_get_u64be(buf + 20), NOW);
    CHECK_EQ(pl_get_u64be(buf + 28), NOW + 600);
    CHECK_EQ((buf[36] << 8) | buf[37], PL_CERT_FIXED_SIZE + 5);
    CHECK_EQ(buf[38], 0x11); /* supernodes ascending by key */
    CHECK_EQ(buf[38 + 32], PL_AF_INET4);

    CHECK_EQ(pl_record_decode(&back, buf, n), PL_RECORD_OK);
    size_t n2 = encode(&back, buf2);
    CHECK(n2 == n && memcmp(buf, buf2, n) == 0);
    CHECK_EQ(back.sequence, 7);
    CHECK_EQ(back.presence, PL_PRESENCE_ONLINE);
    CHECK_EQ(back.status_len, 0);
    /* Away, with a status text (UTF-8 allowed), is signed like the rest. */
    pl_record away = r;
    away.presence = PL_PRESENCE_AWAY;
    const char *text = "in a meeting \xe2\x80\x94 back at 3";
    away.status_len = (uint8_t)strlen(text);
    memcpy(away.status, text, away.status_len + 1);
    CHECK_EQ(pl_record_sign(&away, &alice.id, alice.cert_bytes, alice.cert_len), PL_RECORD_OK);
    n2 = encode(&away, buf2);
    CHECK_EQ(n2, n + away.status_len);
    CHECK_EQ(raw_encode(&away, raw, sizeof raw), n2);
    CHECK(memcmp(raw, buf2, n2) == 0);
    CHECK_EQ(pl_record_decode(&back, buf2, n2), PL_RECORD_OK);
    CHECK(back.presence == PL_PRESENCE_AWAY && strcmp(back.status, text) == 0);
    CHECK_EQ(back.n_supernodes, 2);
    CHECK(pl_addr_equal(&back.supernodes[0].addr, &r.supernodes[0].addr));
    CHECK(pl_addr_equal(&back.supernodes[1].addr, &r.supernodes[1].addr));
    CHECK_EQ(back.supernodes[1].addr.family, PL_AF_INET6);
    /* Candidates come highest priority first, IPv4 and IPv6 alike. */
    CHECK_EQ(back.n_candidates, 4);
    CHECK_EQ(back.candidates[0].priority, 300);
    CHECK_EQ(back.candidates[0].addr.family, PL_AF_INET6);
    CHECK_EQ(back.candidates[1].priority, 250);
    CHECK_EQ(back.candidates[3].type, PL_CAND_RELAYED);
    CHECK_EQ(back.candidates[3].transport, PL_TRANSPORT_TCP);
    CHECK(strcmp(back.cert.name, "alice") == 0);
    CHECK(memcmp(back.cert.sign_pk, alice.id.sign_pk, 32) == 0);
    CHECK_EQ(pl_record_verify(&back, ca.pk, NULL, NOW, "alice", NULL), PL_RECORD_OK);

    /* Truncated at any length, or with a byte more, it is refused. */
    for (size_t cut = 0; cut < n; cut++) CHECK_EQ(pl_record_decode(&back, buf, cut), PL_RECORD_ERR_MALFORMED);
    uint8_t longer[PL_RECORD_MAX_SIZE + 1];
    memcpy(longer, buf, n);
    longer[n] = 0;
    CHECK_EQ(pl_record_decode(&back, longer, n + 1), PL_RECORD_ERR_MALFORMED);
    /* Too small an output buffer is an error, not an overflow. */
    CHECK_EQ(pl_record_encode(&r, buf2, n - 1, &n2), PL_RECORD_ERR_BUFFER);
}

static void a_privacy_mode_record_names_only_supernodes(void)
{
    ca_keys ca = make_ca();
    user alice;
    make_user(&alice, &ca, "alice", 1);
    pl_record r = base_record(3, NOW, 600), back;
    r.flags = PL_RECORD_F_PRIVATE;
    r.n_candidates = 0;
    CHECK_EQ(pl_record_sign(&r, &alice.id, alice.cert_bytes, alice.cert_len), PL_RECORD_OK);
    uint8_t buf[PL_RECORD_MAX_SIZE], buf2[PL_RECORD_MAX_SIZE];
    size_t n = encode(&r, buf);
    CHECK_EQ(n, 38 + 39 + 51 + 1 + PL_CERT_FIXED_SIZE + 5 + 64);
    CHECK_EQ(pl_record_decode(&back, buf, n), PL_RECORD_OK);
    CHECK(back.flags & PL_RECORD_F_PRIVATE);
    CHECK_EQ(back.n_candidates, 0);
    CHECK_EQ(encode(&back, buf2), n);
    CHECK(memcmp(buf, buf2, n) == 0);
    CHECK_EQ(pl_record_verify(&back, ca.pk, NULL, NOW, "alice", NULL), PL_RECORD_OK);
    /* Privacy mode with an address in it is a contradiction. */
    r.n_candidates = 1;
    CHECK(refused_both_ways(&r));
}

static void unknown_capabilities_are_kept_and_signed(void)
{
    ca_keys ca = make_ca();
    user alice;
    make_user(&alice, &ca, "alice", 1);
    pl_record r = base_record(1, NOW, 600), back;
    r.capabilities = 0xfff00000u | PL_CAP_SUPERNODE | PL_CAP_RELAY;
    r.nat_flags = PL_NAT_F_UDP_BLOCKED;
    r.nat_mapping = PL_NAT_UNKNOWN;
    r.nat_filtering = PL_NAT_BEHAVIOUR_MAX;
    CHECK_EQ(pl_record_sign(&r, &alice.id, alice.cert_bytes, alice.cert_len), PL_RECORD_OK);
    uint8_t buf[PL_RECORD_MAX_SIZE];
    size_t n = encode(&r, buf);
    CHECK_EQ(pl_record_decode(&back, buf, n), PL_RECORD_OK);
    CHECK_EQ(back.capabilities, r.capabilities);
    CHECK_EQ(back.nat_flags, PL_NAT_F_UDP_BLOCKED);
    CHECK_EQ(pl_record_verify(&back, ca.pk, NULL, NOW, "alice", NULL), PL_RECORD_OK);
}

/* ---- what the decoder refuses ------------------------------------------------------ */

static void the_decoder_refuses_bad_header_fields(void)
{
    ca_keys ca = make_ca();
    user alice;
    make_user(&alice, &ca, "alice", 1);
    pl_record good = signed_record(&alice, 1, NOW, 600), r;

    r = good, r.version = 0;
    CHECK(refused_both_ways(&r));
    r = good, r.version = 2;
    CHECK(refused_both_ways(&r));
    r = good, r.flags = 0x02; /* unknown flag bit */
    CHECK(refused_both_ways(&r));
    r = good, r.flags = 0x80;
    CHECK(refused_both_ways(&r));
    r = good, r.nat_mapping = PL_NAT_BEHAVIOUR_MAX + 1;
    CHECK(refused_both_ways(&r));
    r = good, r.nat_filtering = 0xff;
    CHECK(refused_both_ways(&r));
    r = good, r.nat_flags = 0x02;
    CHECK(refused_both_ways(&r));

    /* Presence is online or away; the status text is short and has no
     * control characters. */
    r = good, r.presence = PL_PRESENCE_MAX + 1;
    CHECK(refused_both_ways(&r));
    r = good, r.status_len = 4, memcpy(r.status, "ok\x1b[", 4), r.status[4] = 0;
    CHECK(refused_both_ways(&r));
    r = good, r.status_len = 3, memcpy(r.status, "ok\x7f", 3), r.status[3] = 0;
    CHECK(refused_both_ways(&r));

    /* Counts above the maxima are refused before anything is read into the
     * arrays. */
    uint8_t buf[PL_RECORD_MAX_SIZE + 64];
    size_t n = encode(&good, buf);
    pl_record back;
    buf[7] = PL_PRESENCE_MAX + 1;
    CHECK_EQ(pl_record_decode(&back, buf, n), PL_RECORD_ERR_MALFORMED);
    buf[7] = 0;
    buf[5] = PL_RECORD_MAX_SUPERNODES + 1;
    CHECK_EQ(pl_record_decode(&back, buf, n), PL_RECORD_ERR_MALFORMED);
    buf[5] = 2;
    buf[6] = PL_RECORD_MAX_CANDIDATES + 1;
    CHECK_EQ(pl_record_decode(&back, buf, n), PL_RECORD_ERR_MALFORMED);
    buf[6] = 4;
    CHECK_EQ(pl_record_decode(&back, buf, n), PL_RECORD_OK);
    r = good, r.n_supernodes = PL_RECORD_MAX_SUPERNODES + 1;
    CHECK_EQ(pl_record_encode(&r, buf, sizeof buf, &n), PL_RECORD_ERR_MALFORMED);
    r = good, r.n_candidates = PL_RECORD_MAX_CANDIDATES + 1;
    CHECK_EQ(pl_record_encode(&r, buf, sizeof buf, &n), PL_RECORD_ERR_MALFORMED);
}

static void the_decoder_refuses_bad_validity_windows(void)
{
    ca_keys ca = make_ca();
    user alice;
    make_user(&alice, &ca, "alice", 1);
    pl_record good = signed_record(&alice, 1, NOW, 600), r;

    r = good, r.expires_at = r.issued_at; /* empty */
    CHECK(refused_both_ways(&r));
    r = good, r.expires_at = r.issued_at - 1; /* backwards */
    CHECK(refused_both_ways(&r));
    r = good, r.expires_at = r.issued_at + PL_RECORD_MAX_LIFETIME + 1; /* too long */
    CHECK(refused_both_ways(&r));
    r = good, r.issued_at = UINT64_MAX - 10, r.expires_at = 5; /* no wrap-around */
    CHECK(refused_both_ways(&r));
    /* The longest lifetime allowed is allowed. */
    r = good, r.expires_at = r.issued_at + PL_RECORD_MAX_LIFETIME;
    CHECK_EQ(pl_record_sign(&r, &alice.id, alice.cert_bytes, alice.cert_len), PL_RECORD_OK);
}

static void the_decoder_refuses_supernodes_out_of_order(void)
{
    ca_keys ca = make_ca();
    user alice;
    make_user(&alice, &ca, "alice", 1);
    pl_record good = signed_record(&alice, 1, NOW, 600), r;

    r = good; /* descending */
    r.supernodes[0] = good.supernodes[1];
    r.supernodes[1] = good.supernodes[0];
    CHECK(refused_both_ways(&r));
    r = good; /* the same supernode twice */
    r.supernodes[1] = good.supernodes[0];
    CHECK(refused_both_ways(&r));
    r = good; /* the same key at two addresses */
    memcpy(r.supernodes[1].pk, r.supernodes[0].pk, 32);
    CHECK(refused_both_ways(&r));
    r = good, r.supernodes[0].addr.port = 0;
    CHECK(refused_both_ways(&r));
    /* Sorting puts a shuffled list right. */
    r = good;
    r.supernodes[0] = good.supernodes[1];
    r.supernodes[1] = good.supernodes[0];
    pl_record_sort_supernodes(&r);
    CHECK(memcmp(&r.supernodes, &good.supernodes, sizeof r.supernodes) == 0);
}

static void the_decoder_refuses_candidates_out_of_order_or_invalid(void)
{
    ca_keys ca = make_ca();
    user alice;
    make_user(&alice, &ca, "alice", 1);
    pl_record good = signed_record(&alice, 1, NOW, 600), r;

    r = good; /* ascending priority */
    r.candidates[0] = good.candidates[1];
    r.candidates[1] = good.candidates[0];
    CHECK(refused_both_ways(&r));
    r = good; /* a duplicate */
    r.candidates[1] = good.candidates[0];
    CHECK(refused_both_ways(&r));
    /* Equal priority: ordered by type, transport, family, port, address. */
    r = good;
    r.candidates[1] = good.candidates[0];
    r.candidates[1].addr.ip[15] ^= 1;
    pl_record_sort_candidates(&r);
    CHECK_EQ(pl_record_sign(&r, &alice.id, alice.cert_bytes, alice.cert_len), PL_RECORD_OK);
    CHECK(memcmp(r.candidates[0].addr.ip, r.candidates[1].addr.ip, 16) < 0);
    pl_record_candidate t = r.candidates[0];
    r.candidates[0] = r.candidates[1];
    r.candidates[1] = t;
    CHECK(refused_both_ways(&r));
    r = good, r.candidates[2].priority = r.candidates[1].priority, r.candidates[2].type = PL_CAND_HOST;
    r.candidates[2].addr = good.candidates[1].addr;
    r.candidates[2].transport = PL_TRANSPORT_TCP; /* same address, other transport: allowed, sorted */
    pl_record_sort_candidates(&r);
    CHECK_EQ(pl_record_sign(&r, &alice.id, alice.cert_bytes, alice.cert_len), PL_RECORD_OK);

    r = good, r.candidates[0].type = 0;
    CHECK(refused_both_ways(&r));
    r = good, r.candidates[3].type = PL_CAND_RELAYED + 1;
    CHECK(refused_both_ways(&r));
    r = good, r.candidates[0].transport = 0;
    CHECK(refused_both_ways(&r));
    r = good, r.candidates[0].transport = PL_TRANSPORT_TCP + 1;
    CHECK(refused_both_ways(&r));
    r = good, r.candidates[2].addr.port = 0;
    CHECK(refused_both_ways(&r));
}

static void the_decoder_refuses_unknown_address_families(void)
{
    ca_keys ca = make_ca();
    user alice;
    make_user(&alice, &ca, "alice", 1);
    pl_record good = signed_record(&alice, 1, NOW, 600), back;
    uint8_t buf[PL_RECORD_MAX_SIZE], out[PL_RECORD_MAX_SIZE];
    size_t n = encode(&good, buf), m;
    /* The first supernode's family byte (after its key), then the first
     * candidate's (after type, transport and priority). */
    size_t sn_family = PL_RECORD_HEADER_SIZE + 32;
    size_t cand0 = PL_RECORD_HEADER_SIZE + (32 + 7) + (32 + 19);
    size_t cand_family = cand0 + 6;
    CHECK_EQ(buf[sn_family], PL_AF_INET4);
    CHECK_EQ(buf[cand_family], PL_AF_INET6);
    uint8_t families[] = {0, 5, 1, 41, 0xff};
    for (size_t i = 0; i < sizeof families; i++) {
        uint8_t keep = buf[sn_family];
        buf[sn_family] = families[i];
        CHECK_EQ(pl_record_decode(&back, buf, n), PL_RECORD_ERR_MALFORMED);
        buf[sn_family] = keep;
        keep = buf[cand_family];
        buf[cand_family] = families[i];
        CHECK_EQ(pl_record_decode(&back, buf, n), PL_RECORD_ERR_MALFORMED);
        buf[cand_family] = keep;
    }
    CHECK_EQ(pl_record_decode(&back, buf, n), PL_RECORD_OK);
    pl_record r = good;
    r.candidates[0].addr.family = PL_AF_NONE;
    CHECK_EQ(pl_record_encode(&r, out, sizeof out, &m), PL_RECORD_ERR_MALFORMED);
    r = good;
    r.supernodes[1].addr.family = 5;
    CHECK_EQ(pl_record_encode(&r, out, sizeof out, &m), PL_RECORD_ERR_MALFORMED);
}

static void the_decoder_refuses_a_certificate_that_does_not_decode(void)
{
    ca_keys ca = make_ca();
    user alice;
    make_user(&alice, &ca, "alice", 1);
    pl_record good = signed_record(&alice, 1, NOW, 600), r;

    r = good, r.cert_bytes[1] = 1; /* certificate flags */
    CHECK(refused_both_ways(&r));
    r = good, r.cert_bytes[r.cert_len - 64 - 5] = 'A'; /* a name not in normal form */
    CHECK(refused_both_ways(&r));
    r = good, r.cert_len--; /* one byte short */
    CHECK(refused_both_ways(&r));
    r = good, r.cert_len = 0;
    CHECK(refused_both_ways(&r));
    /* A certificate length over the maximum is refused before reading. */
    uint8_t buf[PL_RECORD_MAX_SIZE];
    size_t n = encode(&good, buf);
    buf[36] = (uint8_t)((PL_CERT_MAX_SIZE + 1) >> 8);
    buf[37] = (uint8_t)(PL_CERT_MAX_SIZE + 1);
    pl_record back;
    CHECK_EQ(pl_record_decode(&back, buf, n), PL_RECORD_ERR_MALFORMED);
    r = good, r.cert_len = PL_CERT_MAX_SIZE + 1;
    CHECK_EQ(pl_record_encode(&r, buf, sizeof buf, &n), PL_RECORD_ERR_MALFORMED);
}

/* ---- signing -------------------------------------------------------------------------- */

static void signing_needs_the_certificate_of_the_signing_key(void)
{
    ca_keys ca = make_ca();
    user alice, mallory;
    make_user(&alice, &ca, "alice", 1);
    make_user(&mallory, &ca, "mallory", 2);
    pl_record r = base_record(1, NOW, 600);
    /* Mallory cannot sign a record that carries Alice's certificate. */
    CHECK_EQ(pl_record_sign(&r, &mallory.id, alice.cert_bytes, alice.cert_len), PL_RECORD_ERR_WRONG_KEY);
    /* Nor with an identity whose secret key is not its public key's. */
    pl_identity mixed = alice.id;
    memcpy(mixed.sign_sk, mallory.id.sign_sk, 64);
    CHECK_EQ(pl_record_sign(&r, &mixed, alice.cert_bytes, alice.cert_len), PL_RECORD_ERR_WRONG_KEY);
    uint8_t broken[PL_CERT_MAX_SIZE];
    memcpy(broken, alice.cert_bytes, alice.cert_len);
    broken[0] = 9;
    CHECK_EQ(pl_record_sign(&r, &alice.id, broken, alice.cert_len), PL_RECORD_ERR_CERT);
    CHECK_EQ(pl_record_sign(&r, &alice.id, alice.cert_bytes, PL_CERT_MAX_SIZE + 1), PL_RECORD_ERR_CERT);
    /* Fields the decoder would refuse are not signed. */
    r.flags = 0x40;
    CHECK_EQ(pl_record_sign(&r, &alice.id, alice.cert_bytes, alice.cert_len), PL_RECORD_ERR_MALFORMED);
    r.flags = 0;
    CHECK_EQ(pl_record_sign(&r, &alice.id, alice.cert_bytes, alice.cert_len), PL_RECORD_OK);
    /* sign sets the decoded certificate too. */
    CHECK(strcmp(r.cert.name, "alice") == 0 && r.cert.serial == 1);
}

/* ---- verification ------------------------------------------------------------------------ */

static void every_flipped_bit_is_refused(void)
{
    ca_keys ca = make_ca();
    user alice;
    make_user(&alice, &ca, "alice", 1);
    pl_record r = signed_record(&alice, 1, NOW, 600), back;
    uint8_t buf[PL_RECORD_MAX_SIZE];
    size_t n = encode(&r, buf);
    CHECK_EQ(pl_record_decode(&back, buf, n), PL_RECORD_OK);
    CHECK_EQ(pl_record_verify(&back, ca.pk, NULL, NOW, "alice", NULL), PL_RECORD_OK);
    for (size_t bit = 0; bit < n * 8; bit++) {
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        pl_record_err e = pl_record_decode(&back, buf, n);
        if (e == PL_RECORD_OK) e = pl_record_verify(&back, ca.pk, NULL, NOW, "alice", NULL);
        if (e == PL_RECORD_OK) fprintf(stderr, "  bit %zu accepted\n", bit);
        CHECK(e != PL_RECORD_OK);
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
}

static void a_supernode_cannot_alter_a_record(void)
{
    ca_keys ca = make_ca();
    user alice;
    make_user(&alice, &ca, "alice", 1);
    pl_record r = signed_record(&alice, 1, NOW, 600);
    /* A well-formed record, but the supernode put its own address in. */
    r.candidates[0].addr = addr("[2001:db8::666]:5000");
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW, "alice", NULL), PL_RECORD_ERR_SIGNATURE);
    /* Or stretched the lifetime. */
    r = signed_record(&alice, 1, NOW, 600);
    r.expires_at += 60;
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW, "alice", NULL), PL_RECORD_ERR_SIGNATURE);
    /* Or swapped the certificate for another of the same user. */
    user alice_renewed = alice;
    alice_renewed.cert.serial = 2;
    pl_cert_sign(&alice_renewed.cert, ca.pk, ca.sk);
    CHECK_EQ(pl_cert_encode(&alice_renewed.cert, alice_renewed.cert_bytes, sizeof alice_renewed.cert_bytes,
                            &alice_renewed.cert_len),
             PL_CERT_OK);
    r = signed_record(&alice, 1, NOW, 600);
    memcpy(r.cert_bytes, alice_renewed.cert_bytes, alice_renewed.cert_len);
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW, "alice", NULL), PL_RECORD_ERR_SIGNATURE);
    /* verify reads the certificate from the signed bytes: a different
     * decoded certificate in r.cert changes nothing. */
    r = signed_record(&alice, 1, NOW, 600);
    r.cert.sign_pk[0] ^= 1;
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW, "alice", NULL), PL_RECORD_OK);
}

static void the_certificate_must_verify_under_the_pinned_ca(void)
{
    ca_keys ca = make_ca(), other = make_ca();
    user alice, expired, early, revoked;
    make_user(&alice, &ca, "alice", 1);
    make_user_valid(&expired, &ca, "alice", 2, NOW - 86400, NOW - 1);
    make_user_valid(&early, &ca, "alice", 3, NOW + 86400, NOW + 2 * 86400);
    make_user(&revoked, &ca, "alice", 42);
    pl_cert_err ce;
    pl_record r = signed_record(&alice, 1, NOW, 600);
    CHECK_EQ(pl_record_verify(&r, other.pk, NULL, NOW, "alice", &ce), PL_RECORD_ERR_CERT);
    CHECK_EQ(ce, PL_CERT_ERR_WRONG_ISSUER);

    /* A record signed by a user "minted elsewhere". */
    user forged;
    make_user(&forged, &other, "alice", 1);
    r = signed_record(&forged, 1, NOW, 600);
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW, "alice", &ce), PL_RECORD_ERR_CERT);
    CHECK_EQ(ce, PL_CERT_ERR_WRONG_ISSUER);

    r = signed_record(&expired, 1, NOW, 600);
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW, "alice", &ce), PL_RECORD_ERR_CERT);
    CHECK_EQ(ce, PL_CERT_ERR_EXPIRED);
    r = signed_record(&early, 1, NOW, 600);
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW, "alice", &ce), PL_RECORD_ERR_CERT);
    CHECK_EQ(ce, PL_CERT_ERR_NOT_YET_VALID);

    uint64_t serials[] = {7, 42, 1000};
    uint8_t crl_buf[PL_CRL_SIZE(3)];
    size_t crl_len;
    pl_crl crl;
    CHECK_EQ(pl_crl_build(crl_buf, sizeof crl_buf, &crl_len, 1, NOW, serials, 3, ca.pk, ca.sk), PL_CERT_OK);
    CHECK_EQ(pl_crl_decode(&crl, crl_buf, crl_len), PL_CERT_OK);
    r = signed_record(&revoked, 1, NOW, 600);
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW, "alice", &ce), PL_RECORD_OK);
    CHECK_EQ(ce, PL_CERT_OK);
    CHECK_EQ(pl_record_verify(&r, ca.pk, &crl, NOW, "alice", &ce), PL_RECORD_ERR_CERT);
    CHECK_EQ(ce, PL_CERT_ERR_REVOKED);
    r = signed_record(&alice, 1, NOW, 600);
    CHECK_EQ(pl_record_verify(&r, ca.pk, &crl, NOW, "alice", &ce), PL_RECORD_OK);
}

static void the_record_must_be_for_the_name_looked_up(void)
{
    ca_keys ca = make_ca();
    user alice;
    make_user(&alice, &ca, "alice", 1);
    pl_record r = signed_record(&alice, 1, NOW, 600);
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW, "alice", NULL), PL_RECORD_OK);
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW, "Alice", NULL), PL_RECORD_OK); /* names ignore case */
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW, "ALICE", NULL), PL_RECORD_OK);
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW, NULL, NULL), PL_RECORD_OK);     /* no name to check */
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW, "bob", NULL), PL_RECORD_ERR_WRONG_NAME);
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW, "alicea", NULL), PL_RECORD_ERR_WRONG_NAME);
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW, "al", NULL), PL_RECORD_ERR_WRONG_NAME);
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW, "ali ce", NULL), PL_RECORD_ERR_WRONG_NAME);
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW, "", NULL), PL_RECORD_ERR_WRONG_NAME);
}

static void a_record_is_fresh_only_in_its_window(void)
{
    ca_keys ca = make_ca();
    user alice;
    make_user(&alice, &ca, "alice", 1);
    pl_record r = signed_record(&alice, 1, NOW, 600);
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW + 599, "alice", NULL), PL_RECORD_OK);
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW + 600, "alice", NULL), PL_RECORD_ERR_EXPIRED);
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW + 100000, "alice", NULL), PL_RECORD_ERR_EXPIRED);
    /* A reader whose clock is behind accepts a record issued up to the
     * skew ahead of it, and no further. */
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW - PL_RECORD_MAX_SKEW, "alice", NULL), PL_RECORD_OK);
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW - PL_RECORD_MAX_SKEW - 1, "alice", NULL),
             PL_RECORD_ERR_NOT_YET_VALID);
    r = signed_record(&alice, 1, NOW + PL_RECORD_MAX_SKEW + 1, 600);
    CHECK_EQ(pl_record_verify(&r, ca.pk, NULL, NOW, "alice", NULL), PL_RECORD_ERR_NOT_YET_VALID);
}

/* ---- ordering and the store ----------------------------------------------------------------- */

static void records_of_one_user_are_ordered_by_sequence(void)
{
    ca_keys ca = make_ca();
    user alice, bob;
    make_user(&alice, &ca, "alice", 1);
    make_user(&bob, &ca, "bob", 2);
    pl_record a5 = signed_record(&alice, 5, NOW, 600), a6 = signed_record(&alice, 6, NOW + 10, 600);
    int order = 99;
    CHECK_EQ(pl_record_newer(&a6, &a5, &order), PL_RECORD_OK);
    CHECK(order > 0);
    CHECK_EQ(pl_record_newer(&a5, &a6, &order), PL_RECORD_OK);
    CHECK(order < 0);
    CHECK_EQ(pl_record_newer(&a5, &a5, &order), PL_RECORD_OK);
    CHECK_EQ(order, 0);
    pl_record other5 = signed_record(&alice, 5, NOW + 1, 600);
    CHECK_EQ(pl_record_newer(&other5, &a5, &order), PL_RECORD_ERR_CONFLICT);
    pl_record b5 = signed_record(&bob, 5, NOW, 600);
    CHECK_EQ(pl_record_newer(&b5, &a5, &order), PL_RECORD_ERR_OTHER_USER);
}

static void a_store_keeps_the_newest_record_of_a_user(void)
{
    ca_keys ca = make_ca();
    user alice;
    make_user(&alice, &ca, "alice", 1);
    pl_record a5 = signed_record(&alice, 5, NOW, 600), a6 = signed_record(&alice, 6, NOW + 10, 600);
    uint8_t cur[PL_RECORD_MAX_SIZE];
    size_t cur_len = encode(&a5, cur);
    pl_record_err why = PL_RECORD_ERR_BUFFER;

    /* An empty slot takes a record that verifies. */
    CHECK_EQ(offer(NULL, 0, &a5, &ca, NULL, NOW, "alice", &why), PL_RECORD_OFFER_REPLACE);
    CHECK_EQ(why, PL_RECORD_OK);
    /* A newer record replaces it. */
    CHECK_EQ(offer(cur, cur_len, &a6, &ca, NULL, NOW + 10, "alice", &why), PL_RECORD_OFFER_REPLACE);
    CHECK_EQ(why, PL_RECORD_OK);
    /* The same record again changes nothing. */
    CHECK_EQ(offer(cur, cur_len, &a5, &ca, NULL, NOW, "Alice", &why), PL_RECORD_OFFER_KEEP);
    CHECK_EQ(why, PL_RECORD_OK);
    /* Slot bytes that are not a record are replaced. */
    uint8_t junk[10] = {1, 2, 3};
    CHECK_EQ(offer(junk, sizeof junk, &a5, &ca, NULL, NOW, "alice", &why), PL_RECORD_OFFER_REPLACE);
    /* A record that does not verify is refused, with the reason. */
    CHECK_EQ(offer(NULL, 0, &a5, &ca, NULL, NOW + 600, "alice", &why), PL_RECORD_OFFER_REFUSE);
    CHECK_EQ(why, PL_RECORD_ERR_EXPIRED);
    CHECK_EQ(offer(cur, cur_len, &a6, &ca, NULL, NOW + 10, "bob", &why), PL_RECORD_OFFER_REFUSE);
    CHECK_EQ(why, PL_RECORD_ERR_WRONG_NAME);
    uint8_t bad[PL_RECORD_MAX_SIZE];
    size_t bad_len = encode(&a6, bad);
    bad[bad_len - 1] ^= 1;
    CHECK_EQ(pl_record_slot_offer(cur, cur_len, bad, bad_len, ca.pk, NULL, NOW + 10, "alice", &why),
             PL_RECORD_OFFER_REFUSE);
    CHECK_EQ(why, PL_RECORD_ERR_SIGNATURE);
    CHECK_EQ(pl_record_slot_offer(cur, cur_len, bad, bad_len - 1, ca.pk, NULL, NOW + 10, "alice", NULL),
             PL_RECORD_OFFER_REFUSE);
}

static void a_store_refuses_replays_even_after_the_newer_record_expired(void)
{
    ca_keys ca = make_ca();
    user alice;
    make_user(&alice, &ca, "alice", 1);
    /* Record 4 lives an hour; record 5, issued later, only a minute. */
    pl_record a4 = signed_record(&alice, 4, NOW - 100, 3600), a5 = signed_record(&alice, 5, NOW, 60);
    uint8_t cur[PL_RECORD_MAX_SIZE];
    size_t cur_len = encode(&a5, cur);
    pl_record_err why;
    CHECK_EQ(offer(cur, cur_len, &a4, &ca, NULL, NOW, "alice", &why), PL_RECORD_OFFER_REFUSE);
    CHECK_EQ(why, PL_RECORD_ERR_STALE);
    /* Record 5 has expired, record 4 still verifies: it still loses. */
    CHECK_EQ(pl_record_verify(&a4, ca.pk, NULL, NOW + 120, "alice", NULL), PL_RECORD_OK);
    CHECK_EQ(pl_record_verify(&a5, ca.pk, NULL, NOW + 120, "alice", NULL), PL_RECORD_ERR_EXPIRED);
    CHECK_EQ(offer(cur, cur_len, &a4, &ca, NULL, NOW + 120, "alice", &why), PL_RECORD_OFFER_REFUSE);
    CHECK_EQ(why, PL_RECORD_ERR_STALE);
    /* While a fresh record 6 is welcome. */
    pl_record a6 = signed_record(&alice, 6, NOW + 120, 600);
    CHECK_EQ(offer(cur, cur_len, &a6, &ca, NULL, NOW + 120, "alice", &why), PL_RECORD_OFFER_REPLACE);
}

/* A candidate the caller verified already (a supernode storing its own
 * client's publish) goes through the same ordering rules, without a second
 * verification: stale and conflicting records are still refused. */
static void a_store_orders_records_it_verified_itself_the_same_way(void)
{
    ca_keys ca = make_ca();
    user alice;
    make_user(&alice, &ca, "alice", 1);
    pl_record a4 = signed_record(&alice, 4, NOW - 100, 3600), a5 = signed_record(&alice, 5, NOW, 600);
    uint8_t cur[PL_RECORD_MAX_SIZE], b4[PL_RECORD_MAX_SIZE], b5[PL_RECORD_MAX_SIZE];
    size_t cur_len = encode(&a5, cur), n4 = encode(&a4, b4), n5 = encode(&a5, b5);
    pl_record_err why;
    CHECK_EQ(pl_record_slot_offer_verified(NULL, 0, b5, n5, ca.pk, NULL, NOW, "alice", &why), PL_RECORD_OFFER_REPLACE);
    CHECK_EQ(why, PL_RECORD_OK);
    CHECK_EQ(pl_record_slot_offer_verified(cur, cur_len, b5, n5, ca.pk, NULL, NOW, "alice", &why), PL_RECORD_OFFER_KEEP);
    CHECK_EQ(pl_record_slot_offer_verified(cur, cur_len, b4, n4, ca.pk, NULL, NOW, "alice", &why),
             PL_RECORD_OFFER_REFUSE);
    CHECK_EQ(why, PL_RECORD_ERR_STALE);
    /* Bytes that do not decode are still refused. */
    CHECK_EQ(pl_record_slot_offer_verified(cur, cur_len, b4, n4 - 1, ca.pk, NULL, NOW, "alice", &why),
             PL_RECORD_OFFER_REFUSE);
    CHECK_EQ(why, PL_RECORD_ERR_MALFORMED);
    /* The signature is the caller's business: it is not checked again (the
     * plain offer refuses the same bytes). */
    b5[n5 - 1] ^= 1;
    CHECK_EQ(pl_record_slot_offer_verified(NULL, 0, b5, n5, ca.pk, NULL, NOW, "alice", &why), PL_RECORD_OFFER_REPLACE);
    CHECK_EQ(pl_record_slot_offer(NULL, 0, b5, n5, ca.pk, NULL, NOW, "alice", &why), PL_RECORD_OFFER_REFUSE);
    CHECK_EQ(why, PL_RECORD_ERR_SIGNATURE);
}

static void two_records_with_one_sequence_number_conflict(void)
{
    ca_keys ca = make_ca();
    user alice;
    make_user(&alice, &ca, "alice", 1);
    pl_record a7 = signed_record(&alice, 7, NOW, 600), b7 = a7;
    b7.candidates[0].addr = addr("[2001:db8::77]:5000");
    pl_record_sort_candidates(&b7);
    CHECK_EQ(pl_record_sign(&b7, &alice.id, alice.cert_bytes, alice.cert_len), PL_RECORD_OK);
    uint8_t cur[PL_RECORD_MAX_SIZE];
    size_t cur_len = encode(&a7, cur);
    pl_record_err why;
    CHECK_EQ(offer(cur, cur_len, &b7, &ca, NULL, NOW, "alice", &why), PL_RECORD_OFFER_REFUSE);
    CHECK_EQ(why, PL_RECORD_ERR_CONFLICT);
}

static void a_new_key_takes_the_name_over_only_once_the_old_record_stops_verifying(void)
{
    ca_keys ca = make_ca();
    user old_alice, new_alice;
    make_user(&old_alice, &ca, "alice", 10);
    make_user(&new_alice, &ca, "alice", 11); /* re-registered: a new key, a new certificate */
    pl_record old_rec = signed_record(&old_alice, 900, NOW, 600);
    pl_record new_rec = signed_record(&new_alice, 1, NOW + 60, 600); /* sequence starts over */
    uint8_t cur[PL_RECORD_MAX_SIZE];
    size_t cur_len = encode(&old_rec, cur);
    pl_record_err why;

    CHECK_EQ(offer(cur, cur_len, &new_rec, &ca, NULL, NOW + 60, "alice", &why), PL_RECORD_OFFER_REFUSE);
    CHECK_EQ(why, PL_RECORD_ERR_OTHER_USER);
    /* A newer sequence number does not help another key either. */
    pl_record new_high = signed_record(&new_alice, 5000, NOW + 60, 600);
    CHECK_EQ(offer(cur, cur_len, &new_high, &ca, NULL, NOW + 60, "alice", &why), PL_RECORD_OFFER_REFUSE);
    CHECK_EQ(why, PL_RECORD_ERR_OTHER_USER);
    /* Once the old record expired, the new key gets the slot. */
    CHECK_EQ(offer(cur, cur_len, &new_rec, &ca, NULL, NOW + 600, "alice", &why), PL_RECORD_OFFER_REPLACE);
    CHECK_EQ(why, PL_RECORD_OK);
    /* Or as soon as the old certificate is revoked. */
    uint64_t serials[] = {10};
    uint8_t crl_buf[PL_CRL_SIZE(1)];
    size_t crl_len;
    pl_crl crl;
    CHECK_EQ(pl_crl_build(crl_buf, sizeof crl_buf, &crl_len, 1, NOW, serials, 1, ca.pk, ca.sk), PL_CERT_OK);
    CHECK_EQ(pl_crl_decode(&crl, crl_buf, crl_len), PL_CERT_OK);
    CHECK_EQ(offer(cur, cur_len, &new_rec, &ca, &crl, NOW + 60, "alice", &why), PL_RECORD_OFFER_REPLACE);
    /* And the old key cannot come back while the new record holds the slot. */
    uint8_t now_held[PL_RECORD_MAX_SIZE];
    size_t now_held_len = encode(&new_rec, now_held);
    pl_record old_again = signed_record(&old_alice, 901, NOW + 70, 600);
    CHECK_EQ(offer(now_held, now_held_len, &old_again, &ca, NULL, NOW + 70, "alice", &why), PL_RECORD_OFFER_REFUSE);
    CHECK_EQ(why, PL_RECORD_ERR_OTHER_USER);
    CHECK_EQ(offer(now_held, now_held_len, &old_again, &ca, &crl, NOW + 70, "alice", &why), PL_RECORD_OFFER_REFUSE);
    CHECK_EQ(why, PL_RECORD_ERR_CERT);
}

static void errors_have_messages(void)
{
    for (int e = PL_RECORD_OK; e <= PL_RECORD_ERR_CONFLICT; e++) {
        const char *s = pl_record_strerror((pl_record_err)e);
        CHECK(s && strcmp(s, "unknown record error") != 0);
    }
    CHECK(strcmp(pl_record_strerror((pl_record_err)99), "unknown record error") == 0);
}

int main(void)
{
    RUN(a_record_round_trips_byte_for_byte);
    RUN(a_privacy_mode_record_names_only_supernodes);
    RUN(unknown_capabilities_are_kept_and_signed);
    RUN(the_decoder_refuses_bad_header_fields);
    RUN(the_decoder_refuses_bad_validity_windows);
    RUN(the_decoder_refuses_supernodes_out_of_order);
    RUN(the_decoder_refuses_candidates_out_of_order_or_invalid);
    RUN(the_decoder_refuses_unknown_address_families);
    RUN(the_decoder_refuses_a_certificate_that_does_not_decode);
    RUN(signing_needs_the_certificate_of_the_signing_key);
    RUN(every_flipped_bit_is_refused);
    RUN(a_supernode_cannot_alter_a_record);
    RUN(the_certificate_must_verify_under_the_pinned_ca);
    RUN(the_record_must_be_for_the_name_looked_up);
    RUN(a_record_is_fresh_only_in_its_window);
    RUN(records_of_one_user_are_ordered_by_sequence);
    RUN(a_store_keeps_the_newest_record_of_a_user);
    RUN(a_store_refuses_replays_even_after_the_newer_record_expired);
    RUN(a_store_orders_records_it_verified_itself_the_same_way);
    RUN(two_records_with_one_sequence_number_conflict);
    RUN(a_new_key_takes_the_name_over_only_once_the_old_record_stops_verifying);
    RUN(errors_have_messages);
    return pl_test_summary();
}
