/*
 * ca_proto.h - the messages spoken between users and the signing authority.
 *
 * Every message has a 16-byte header (magic "PLCA", version, type, body
 * length, request id), a body, and then zero padding up to the end of the
 * datagram or frame. Requests are padded (to PL_CA_PAD_SIZE and beyond) so
 * that the CA can keep its anti-amplification rule: it never answers with
 * more bytes than it was sent. docs/ca.md has every layout with offsets.
 *
 * This module only turns bytes into structs and back, through the bounded
 * cursors of wire.h. It makes no decisions; ca_server.c and ca_client.c do.
 */
#ifndef PL_CA_PROTO_H
#define PL_CA_PROTO_H

#include "parley.h"

#define PL_CA_VERSION 1
#define PL_CA_HEADER_SIZE 16
/* What a client pads every request to, like a QUIC Initial: big enough for
 * any answer but a CRL chunk, small enough for any path's MTU. */
#define PL_CA_PAD_SIZE 1200
/* The largest message: a TCP frame. */
#define PL_CA_MAX_MESSAGE 65535
#define PL_CA_TOKEN_SIZE 40 /* timestamp u64 + MAC[32] */
#define PL_CA_TOKEN_MAC_SIZE 32
/* How long a challenge token stays good, in seconds. */
#define PL_CA_TOKEN_LIFETIME_S 60
/* CRL chunk body: number u64, total u32, offset u32, chunk_len u16. */
#define PL_CA_CRL_CHUNK_OVERHEAD (PL_CA_HEADER_SIZE + 18)
/* Largest signed op message (see pl_ca_op_message). */
#define PL_CA_OP_MESSAGE_MAX (15 + 32 + 1 + 1 + PL_NAME_MAX + 32 + PL_CA_TOKEN_SIZE)

typedef enum pl_ca_msg_type {
    PL_CA_MSG_CHALLENGE_REQ = 1, /* client: op, name, key; asks for a token */
    PL_CA_MSG_CHALLENGE = 2,     /* CA: the stateless token */
    PL_CA_MSG_OP_REQ = 3,        /* client: op, name, key, token, signature */
    PL_CA_MSG_CERT = 4,          /* CA: the signed certificate */
    PL_CA_MSG_REVOKED = 5,       /* CA: the revocation is recorded */
    PL_CA_MSG_CRL_REQ = 6,       /* client: a chunk of the CRL from an offset */
    PL_CA_MSG_CRL_CHUNK = 7,     /* CA: that chunk */
    PL_CA_MSG_ERROR = 8,         /* CA: a coded refusal */
} pl_ca_msg_type;

typedef enum pl_ca_op {
    PL_CA_OP_REGISTER = 1,
    PL_CA_OP_RENEW = 2,
    PL_CA_OP_REVOKE = 3,
} pl_ca_op;

/* Error codes carried in PL_CA_MSG_ERROR. The numbers are wire values. */
typedef enum pl_ca_code {
    PL_CA_CODE_OK = 0,
    PL_CA_CODE_NAME_TAKEN = 1,    /* another key holds the name */
    PL_CA_CODE_BAD_NAME = 2,      /* breaks the name rules */
    PL_CA_CODE_RESERVED = 3,      /* a reserved name */
    PL_CA_CODE_RATE_LIMITED = 4,  /* too many requests from this source */
    PL_CA_CODE_BAD_SIGNATURE = 5, /* the challenge was not signed by the key */
    PL_CA_CODE_BAD_TOKEN = 6,     /* token forged, expired or from another source */
    PL_CA_CODE_NOT_FOUND = 7,     /* renew/revoke of a name nobody holds */
    PL_CA_CODE_WRONG_KEY = 8,     /* renew/revoke with a key that is not the account's */
    PL_CA_CODE_REVOKED = 9,       /* the account was revoked */
    PL_CA_CODE_MALFORMED = 10,    /* the request does not parse */
    PL_CA_CODE_TOO_SMALL = 11,    /* the request is too short to carry the answer */
    PL_CA_CODE_INTERNAL = 12,     /* storage failed; nothing was committed */
} pl_ca_code;
#define PL_CA_CODE_MAX 12
const char *pl_ca_code_str(pl_ca_code code);

typedef enum pl_ca_proto_err {
    PL_CA_PROTO_OK = 0,
    PL_CA_PROTO_ERR_MALFORMED, /* bad magic, length, field or padding */
    PL_CA_PROTO_ERR_VERSION,   /* a version this code does not speak */
    PL_CA_PROTO_ERR_TYPE,      /* an unknown message type */
    PL_CA_PROTO_ERR_BUFFER,    /* the output buffer is too small */
} pl_ca_proto_err;
const char *pl_ca_proto_strerror(pl_ca_proto_err err);

/* One decoded message. Which fields mean something depends on type; the
 * pointers (cert, chunk) point into the buffer that was decoded. */
typedef struct pl_ca_msg {
    uint8_t type;
    uint64_t id; /* chosen by the client, echoed by the CA */
    /* CHALLENGE_REQ, OP_REQ */
    uint8_t op;
    uint8_t name_len;
    char name[PL_NAME_MAX + 1]; /* as sent, NUL-terminated; not yet checked */
    uint8_t sign_pk[32];
    /* CHALLENGE, OP_REQ */
    uint8_t token[PL_CA_TOKEN_SIZE];
    /* OP_REQ */
    uint8_t sig[64];
    /* CERT */
    const uint8_t *cert;
    uint16_t cert_len;
    /* REVOKED */
    uint64_t crl_number;
    /* CRL_REQ (offset), CRL_CHUNK (all four; crl_number above) */
    uint32_t offset;
    uint32_t crl_total;
    const uint8_t *chunk;
    uint16_t chunk_len;
    /* ERROR */
    uint8_t code;
    uint32_t retry_after_ms;
} pl_ca_msg;

/* Encodes m and pads with zeros to at least pad_to bytes (0: no padding).
 * Fails with BUFFER, writing nothing useful, if cap is too small. */
pl_ca_proto_err pl_ca_msg_encode(const pl_ca_msg *m, size_t pad_to, uint8_t *buf, size_t cap, size_t *out_len);
/* Decodes exactly one message; padding after the body must be zero. */
pl_ca_proto_err pl_ca_msg_decode(pl_ca_msg *m, const uint8_t *buf, size_t len);
/* Encoded size of m without padding. */
size_t pl_ca_msg_size(const pl_ca_msg *m);

/* The bytes a user signs to prove possession of the key for an operation:
 *   "parley-ca-op-v1" || ca_pk[32] || op u8 || name_len u8 || name
 *   || sign_pk[32] || token[40]
 * The CA key makes a signature useless at any other CA; the token makes it
 * useless later or from elsewhere. Returns the length written to out. */
size_t pl_ca_op_message(uint8_t out[PL_CA_OP_MESSAGE_MAX], const uint8_t ca_pk[32], uint8_t op, const char *name,
                        const uint8_t sign_pk[32], const uint8_t token[PL_CA_TOKEN_SIZE]);

#endif
