/*
 * parley.h - the one public header of libparley.
 *
 * Parley is a telephone network run by its users. This header is what other
 * programs build on: identities, certificates, the signing-authority client,
 * and the secure session layer. Every protocol core here is sans-I/O: it is
 * given the time and the datagrams that arrived, and it hands back datagrams
 * to send, the next time it wants to be woken, and events. It never makes a
 * system call, reads a clock or keeps global state, so the daemon and the
 * deterministic simulator drive exactly the same code.
 *
 * Conventions:
 *  - Every exported symbol starts with pl_.
 *  - Functions that can fail return an error enum specific to their module,
 *    with 0 meaning success, and a pl_<module>_strerror() for people.
 *  - The caller owns every buffer it passes in.
 *  - Multi-byte integers on the wire are big-endian. The Noise handshake's
 *    AEAD nonces follow the Noise specification (little-endian counter);
 *    data-packet nonces are the packet's own big-endian counter.
 */
#ifndef PARLEY_H
#define PARLEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Time                                                                       */
/* ------------------------------------------------------------------------ */

/* Microseconds since the Unix epoch. Drivers pass a value that never goes
 * backwards; the simulator passes virtual time on the same scale. */
typedef uint64_t pl_time;
#define PL_MSEC ((pl_time)1000)
#define PL_SEC ((pl_time)1000000)
#define PL_TIME_NEVER UINT64_MAX

/* ------------------------------------------------------------------------ */
/* Addresses                                                                  */
/* ------------------------------------------------------------------------ */

enum { PL_AF_NONE = 0, PL_AF_INET4 = 4, PL_AF_INET6 = 6 };

/* How a driver reaches an address. Datagrams are the default; an address
 * marked TCP stands for one framed TCP stream (a node whose UDP is blocked),
 * so the cores above treat both alike and only the driver tells them apart.
 * It is not part of the wire encoding of an address. */
enum { PL_ADDR_UDP = 0, PL_ADDR_TCP = 1 };

typedef struct pl_addr {
    uint8_t family;    /* PL_AF_INET4, PL_AF_INET6 or PL_AF_NONE */
    uint8_t transport; /* PL_ADDR_UDP or PL_ADDR_TCP */
    uint16_t port;     /* host byte order */
    uint8_t ip[16];    /* IPv4 uses the first 4 bytes */
} pl_addr;

/* Longest text pl_addr_format writes: "[v6]:port/tcp" plus the terminator. */
#define PL_ADDR_TEXT_MAX 64

/* Parses "1.2.3.4", "1.2.3.4:5", "::1", "[::1]:5", each optionally followed
 * by "/tcp" or "/udp". A missing port becomes default_port. Returns false on
 * anything else. */
bool pl_addr_parse(pl_addr *out, const char *text, uint16_t default_port);
/* Writes "1.2.3.4:5" or "[::1]:5", with "/tcp" for a TCP address; returns buf. */
const char *pl_addr_format(const pl_addr *addr, char *buf, size_t cap);
/* Same host, port and transport. */
bool pl_addr_equal(const pl_addr *a, const pl_addr *b);
/* Same host, any port or transport. */
bool pl_addr_same_host(const pl_addr *a, const pl_addr *b);

/* ------------------------------------------------------------------------ */
/* OS services, passed in as function tables                                  */
/* ------------------------------------------------------------------------ */

/* Randomness. The daemon uses the kernel's generator; the simulator uses a
 * seeded stream so that every run is reproducible. */
typedef struct pl_rng {
    void *ctx;
    void (*fill)(void *ctx, uint8_t *buf, size_t len);
} pl_rng;

/* Memory. Cores allocate only when they are created or grow a table, never
 * per packet. */
typedef struct pl_mem {
    void *ctx;
    void *(*calloc)(void *ctx, size_t count, size_t size);
    void (*free)(void *ctx, void *ptr);
} pl_mem;

/* The process's real services: libsodium's generator and the C heap. */
const pl_rng *pl_rng_system(void);
const pl_mem *pl_mem_system(void);

/* A deterministic generator: a ChaCha20 stream keyed by the seed. */
typedef struct pl_rng_seeded {
    pl_rng rng;
    uint8_t key[32];
    uint64_t block;
    uint8_t buf[64];
    size_t used;
} pl_rng_seeded;
void pl_rng_seeded_init(pl_rng_seeded *r, uint64_t seed);
uint64_t pl_rng_u64(const pl_rng *rng);
/* Uniform in [0, bound) without modulo bias; bound > 0. */
uint64_t pl_rng_below(const pl_rng *rng, uint64_t bound);

/* Must be called once before anything else (initialises libsodium).
 * Returns false if the crypto library cannot start. */
bool pl_init(void);

/* ------------------------------------------------------------------------ */
/* User names                                                                 */
/* ------------------------------------------------------------------------ */

#define PL_NAME_MIN 3
#define PL_NAME_MAX 32

typedef enum pl_name_err {
    PL_NAME_OK = 0,
    PL_NAME_ERR_LENGTH,     /* not 3..32 characters */
    PL_NAME_ERR_CHARACTER,  /* a character outside [a-z0-9._-] */
    PL_NAME_ERR_EDGE,       /* does not start and end with a letter or digit */
    PL_NAME_ERR_RESERVED,   /* a reserved name such as "admin" */
} pl_name_err;

/* Lower-cases `in` into `out` (PL_NAME_MAX + 1 bytes) and checks the rules.
 * Names are unique case-insensitively: "Alice" and "alice" are one name. */
pl_name_err pl_name_normalize(const char *in, char out[PL_NAME_MAX + 1]);
const char *pl_name_strerror(pl_name_err err);

/* ------------------------------------------------------------------------ */
/* Identity: an Ed25519 signing key and the X25519 key derived from it       */
/* ------------------------------------------------------------------------ */

typedef struct pl_identity {
    uint8_t sign_pk[32];
    uint8_t sign_sk[64];
    uint8_t dh_pk[32];
    uint8_t dh_sk[32];
} pl_identity;

typedef enum pl_identity_err {
    PL_IDENTITY_OK = 0,
    PL_IDENTITY_ERR_IO,              /* cannot read or write the file */
    PL_IDENTITY_ERR_EXISTS,          /* refusing to overwrite a key */
    PL_IDENTITY_ERR_FORMAT,          /* not a Parley key file */
    PL_IDENTITY_ERR_NEED_PASSPHRASE, /* the file is encrypted */
    PL_IDENTITY_ERR_WRONG_PASSPHRASE,
    PL_IDENTITY_ERR_PERMISSIONS,     /* the file is readable by others */
    PL_IDENTITY_ERR_CRYPTO,
} pl_identity_err;

void pl_identity_generate(pl_identity *id, const pl_rng *rng);
pl_identity_err pl_identity_from_seed(pl_identity *id, const uint8_t seed[32]);
/* Writes the key with mode 0600, atomically. With a passphrase, the seed is
 * sealed with XChaCha20-Poly1305 under an Argon2id-derived key. */
pl_identity_err pl_identity_save(const pl_identity *id, const char *path,
                                 const char *passphrase, bool overwrite);
pl_identity_err pl_identity_load(pl_identity *id, const char *path, const char *passphrase);
void pl_identity_wipe(pl_identity *id);
const char *pl_identity_strerror(pl_identity_err err);

/* ------------------------------------------------------------------------ */
/* Certificates and revocation lists                                          */
/* ------------------------------------------------------------------------ */

#define PL_CERT_VERSION 1
#define PL_CERT_FIXED_SIZE 172 /* everything but the name */
#define PL_CERT_MAX_SIZE (PL_CERT_FIXED_SIZE + PL_NAME_MAX)
#define PL_ISSUER_ID_SIZE 16

/* A certificate binds a user name to a signing key and the X25519 key derived
 * from it, for a validity window, under a CA. The encoding is canonical: one
 * certificate has exactly one byte string (see docs/protocol.md). */
typedef struct pl_cert {
    uint8_t version;
    uint8_t flags; /* reserved, 0 */
    uint64_t serial;
    uint64_t not_before; /* Unix seconds, inclusive */
    uint64_t not_after;  /* Unix seconds, exclusive */
    uint8_t issuer[PL_ISSUER_ID_SIZE];
    uint8_t sign_pk[32];
    uint8_t dh_pk[32];
    uint8_t name_len;
    char name[PL_NAME_MAX + 1];
    uint8_t sig[64];
} pl_cert;

typedef enum pl_cert_err {
    PL_CERT_OK = 0,
    PL_CERT_ERR_MALFORMED,     /* not a canonical encoding */
    PL_CERT_ERR_VERSION,       /* an unknown version */
    PL_CERT_ERR_WRONG_ISSUER,  /* signed by a CA other than the pinned one */
    PL_CERT_ERR_SIGNATURE,     /* the signature does not verify */
    PL_CERT_ERR_NOT_YET_VALID,
    PL_CERT_ERR_EXPIRED,
    PL_CERT_ERR_REVOKED,
    PL_CERT_ERR_BUFFER,        /* output buffer too small */
} pl_cert_err;

/* The issuer id of a CA: the first 16 bytes of BLAKE2b("parley-ca-id" || pk). */
void pl_ca_issuer_id(const uint8_t ca_pk[32], uint8_t out[PL_ISSUER_ID_SIZE]);

/* Encodes to at most PL_CERT_MAX_SIZE bytes; *out_len gets the size. */
pl_cert_err pl_cert_encode(const pl_cert *cert, uint8_t *buf, size_t cap, size_t *out_len);
pl_cert_err pl_cert_decode(pl_cert *cert, const uint8_t *buf, size_t len);
/* Fills issuer and signs; used by the CA only. */
void pl_cert_sign(pl_cert *cert, const uint8_t ca_pk[32], const uint8_t ca_sk[64]);

typedef struct pl_crl pl_crl;
/* Checks issuer, signature, validity at now_s (Unix seconds) and, when a CRL
 * is given, revocation. Returns the first failure. */
pl_cert_err pl_cert_verify(const pl_cert *cert, const uint8_t ca_pk[32], uint64_t now_s,
                           const pl_crl *crl);
const char *pl_cert_strerror(pl_cert_err err);

/* A signed list of revoked serials. Decoding keeps a pointer into the
 * caller's buffer, which must outlive the pl_crl. */
struct pl_crl {
    uint8_t version;
    uint8_t issuer[PL_ISSUER_ID_SIZE];
    uint64_t number;    /* grows with every revocation */
    uint64_t issued_at; /* Unix seconds */
    uint32_t count;
    const uint8_t *serials_be; /* count big-endian u64, strictly ascending */
    uint8_t sig[64];
};

#define PL_CRL_HEADER_SIZE 40
#define PL_CRL_SIZE(count) (PL_CRL_HEADER_SIZE + 8 * (size_t)(count) + 64)
#define PL_CRL_MAX_COUNT (1u << 20)

pl_cert_err pl_crl_decode(pl_crl *crl, const uint8_t *buf, size_t len);
pl_cert_err pl_crl_verify(const pl_crl *crl, const uint8_t ca_pk[32]);
bool pl_crl_contains(const pl_crl *crl, uint64_t serial);
/* Builds and signs a CRL into buf from ascending serials. */
pl_cert_err pl_crl_build(uint8_t *buf, size_t cap, size_t *out_len, uint64_t number,
                         uint64_t issued_at, const uint64_t *serials, uint32_t count,
                         const uint8_t ca_pk[32], const uint8_t ca_sk[64]);

/* Hex helpers for keys and fingerprints. */
void pl_hex_encode(const uint8_t *in, size_t len, char *out /* 2*len+1 */);
bool pl_hex_decode(const char *in, uint8_t *out, size_t len);

/* ------------------------------------------------------------------------ */
/* Secure sessions (docs/protocol.md)                                         */
/* ------------------------------------------------------------------------ */

/* One endpoint holds one identity and a table of peers. The handshake is
 * Noise IK over X25519, ChaCha20-Poly1305 and SHA-256, one round trip, with
 * each side's CA certificate inside the encrypted payloads. Data packets are
 * sealed with AES-256-GCM where both CPUs have it, else ChaCha20-Poly1305,
 * with 64-bit counters and a sliding replay window. The endpoint is sans-I/O:
 * datagrams and the time go in through pl_sec_receive / pl_sec_tick, and
 * datagrams and events come out through the pl_sec_io callbacks. */

typedef struct pl_sec pl_sec;
typedef struct pl_sec_peer pl_sec_peer;

#define PL_SEC_MAX_PAYLOAD 1400
#define PL_SEC_DATA_OVERHEAD 32 /* 16-byte header + 16-byte tag */
#define PL_SEC_MAX_DATAGRAM 1500

enum { PL_SEC_CIPHER_CHACHA20POLY1305 = 1, PL_SEC_CIPHER_AES256GCM = 2 };

typedef enum pl_sec_event_type {
    PL_SEC_EV_ESTABLISHED = 1, /* a first session key with this peer */
    PL_SEC_EV_DATA,            /* an authenticated data packet */
    PL_SEC_EV_FAILED,          /* the handshake got no answer in time */
    PL_SEC_EV_EXPIRED,         /* no key left: the peer went silent */
    PL_SEC_EV_REVOKED,         /* the peer's certificate was revoked */
} pl_sec_event_type;

typedef struct pl_sec_event {
    pl_sec_event_type type;
    pl_sec_peer *peer;
    const pl_cert *cert;    /* the peer's certificate, once known */
    const pl_addr *from;    /* where the packet came from */
    const uint8_t *data;    /* PL_SEC_EV_DATA: valid during the callback */
    size_t len;
    pl_time now;
} pl_sec_event;

typedef struct pl_sec_io {
    void *ctx;
    void (*send)(void *ctx, const pl_addr *to, const uint8_t *data, size_t len);
    void (*event)(void *ctx, const pl_sec_event *ev);
} pl_sec_io;

typedef struct pl_sec_config {
    const pl_identity *identity; /* copied; wiped by pl_sec_free */
    const uint8_t *cert;         /* own certificate, encoded */
    size_t cert_len;
    uint8_t ca_pk[32];           /* the pinned CA key */
    const pl_rng *rng;
    const pl_mem *mem;           /* NULL: the C heap */
    uint32_t max_peers;          /* 0: 1024; at most 1 << 22 */
    bool accept_incoming;        /* answer handshakes from unknown peers */
    uint32_t load_threshold;     /* initiations per second before cookies are demanded; 0: 1000 */
    uint8_t ciphers;             /* allowed data ciphers (bit mask); 0: all this CPU has */
    bool no_passive_keepalive;   /* the application keeps its own keepalives: do not
                                    answer a quiet peer with empty packets after 10 s */
    uint32_t key_lifetime_s;     /* 0: 180 s (rekey at 120 s); 120..3600. Links that idle
                                    for long (a node and its supernode) use longer keys so
                                    rekeying does not dominate their traffic */
} pl_sec_config;

typedef enum pl_sec_err {
    PL_SEC_OK = 0,
    PL_SEC_ERR_CONFIG,     /* a bad or missing configuration field */
    PL_SEC_ERR_NOMEM,
    PL_SEC_ERR_FULL,       /* the peer table is full */
    PL_SEC_ERR_NOT_READY,  /* no session key yet: wait for ESTABLISHED */
    PL_SEC_ERR_TOO_BIG,    /* payload over PL_SEC_MAX_PAYLOAD */
    PL_SEC_ERR_BAD_KEY,    /* not a usable public key */
    PL_SEC_ERR_SELF,       /* a connection to one's own key */
    PL_SEC_ERR_BAD_CERT,   /* the certificate given does not verify */
} pl_sec_err;

/* Counters for operators and tests: every dropped packet is counted once
 * under the reason it was dropped. */
typedef struct pl_sec_stats {
    uint64_t rx_data, tx_data, rx_keepalive;
    uint64_t handshakes_initiated, handshakes_completed;
    uint64_t drop_malformed;     /* wrong size or type */
    uint64_t drop_mac;           /* bad mac1 (not meant for us), bad mac2, or a cookie reply that does not open */
    uint64_t drop_handshake;     /* failed decryption, a bad DH value, a reflection, an unknown caller
                                    when not accepting, no cipher in common */
    uint64_t drop_cert;          /* certificate refused (any pl_cert_err) */
    uint64_t drop_replay;        /* handshake timestamp or data counter seen before */
    uint64_t drop_unknown_index; /* no session with that index */
    uint64_t drop_auth;          /* data that failed authentication */
    uint64_t drop_ratelimit;     /* per-source limit while under load */
    uint64_t drop_flood;         /* initiations < 20 ms apart from one peer, or a full peer table */
    uint64_t drop_expired_key;
    uint64_t cookies_sent, cookies_received;
    uint64_t last_cert_err;      /* the pl_cert_err of the last refused certificate */
} pl_sec_stats;

pl_sec_err pl_sec_new(pl_sec **out, const pl_sec_config *config, const pl_sec_io *io);
/* Wipes every key and frees the endpoint. */
void pl_sec_free(pl_sec *sec);
/* Adds (or finds) the peer with this signing key and starts a handshake to
 * addr. The peer's own certificate, checked during the handshake, must carry
 * this key. */
pl_sec_err pl_sec_connect(pl_sec *sec, const uint8_t peer_sign_pk[32], const pl_addr *addr, pl_time now,
                          pl_sec_peer **out);
/* The same with the peer's certificate (as a directory record carries it):
 * it is verified against the pinned CA and the revocation list, and its
 * X25519 key is used without converting the signing key. The peer must then
 * present a certificate with the same two keys, in either direction. */
pl_sec_err pl_sec_connect_cert(pl_sec *sec, const pl_cert *peer_cert, const pl_addr *addr, pl_time now,
                               pl_sec_peer **out);
pl_sec_err pl_sec_send(pl_sec *sec, pl_sec_peer *peer, const uint8_t *data, size_t len, pl_time now);
void pl_sec_receive(pl_sec *sec, const pl_addr *from, const uint8_t *data, size_t len, pl_time now);
void pl_sec_tick(pl_sec *sec, pl_time now);
/* When pl_sec_tick next has work; PL_TIME_NEVER if none. */
pl_time pl_sec_next_timeout(const pl_sec *sec);
/* Starts a new handshake now (e.g. after the path changed), unless one is
 * already under way; the current key stays in use until it completes. */
pl_sec_err pl_sec_rekey(pl_sec *sec, pl_sec_peer *peer, pl_time now);
/* Forgets the peer and wipes its keys. */
void pl_sec_close(pl_sec *sec, pl_sec_peer *peer);
/* The peer with this signing key, or NULL: what pl_sec_connect made, or a
 * caller that came in. A hash look-up, cheap enough for every message. */
pl_sec_peer *pl_sec_find(pl_sec *sec, const uint8_t sign_pk[32]);
/* Uses this revocation list from now on (the caller keeps it alive) and
 * closes sessions with peers it revokes. */
void pl_sec_set_crl(pl_sec *sec, const pl_crl *crl, pl_time now);
pl_sec_stats pl_sec_get_stats(const pl_sec *sec);

const pl_cert *pl_sec_peer_cert(const pl_sec_peer *peer); /* NULL before the handshake */
const pl_addr *pl_sec_peer_addr(const pl_sec_peer *peer);
/* The peer's signing key (the one it was opened with, or its certificate's). */
const uint8_t *pl_sec_peer_key(const pl_sec_peer *peer);
/* Moves the peer to a new address (the path layer decides); packets that
 * authenticate from elsewhere also move it. */
void pl_sec_peer_set_addr(pl_sec_peer *peer, const pl_addr *addr);
bool pl_sec_peer_established(const pl_sec_peer *peer);
uint8_t pl_sec_peer_cipher(const pl_sec_peer *peer);
void pl_sec_peer_set_user(pl_sec_peer *peer, void *user);
void *pl_sec_peer_user(const pl_sec_peer *peer);
const char *pl_sec_strerror(pl_sec_err err);

#ifdef __cplusplus
}
#endif
#endif /* PARLEY_H */
