/*
 * stun.h - STUN messages (RFC 8489) and a Binding responder for NAT
 * behaviour discovery (RFC 5780), sans I/O.
 *
 * Supernodes answer standard STUN Binding requests so that ordinary tools
 * work against them, and nodes learn their server-reflexive address and
 * their NAT's behaviour from two supernodes (natdisc.h). This module is the
 * codec and the server side:
 *
 *  - pl_stun_decode / pl_stun_encode: a bounded codec for the header (magic
 *    cookie, transaction id) and the attributes Parley uses: MAPPED-ADDRESS,
 *    XOR-MAPPED-ADDRESS (IPv4 and IPv6), RESPONSE-ORIGIN, OTHER-ADDRESS,
 *    CHANGE-REQUEST, SOFTWARE, ERROR-CODE, UNKNOWN-ATTRIBUTES, FINGERPRINT,
 *    and the RFC 3489 SOURCE-ADDRESS and CHANGED-ADDRESS for old clients.
 *  - pl_stun_respond: given a request, where it came from and which of the
 *    server's addresses it arrived on, the response bytes and the local
 *    address to send them from (CHANGE-REQUEST picks another one).
 *  - pl_stun_classify: tells STUN datagrams from everything else, so that
 *    STUN and Parley's secure sessions can share one socket.
 *
 * Leniency, on purpose (interoperability beats canonical form here, unlike
 * Parley's own formats): padding bytes are ignored whatever their value, as
 * RFC 8489 says receivers must; of a repeated attribute the first counts;
 * attributes after MESSAGE-INTEGRITY other than FINGERPRINT are ignored; the
 * reserved byte of address attributes is ignored. A request without the
 * magic cookie (RFC 3489) is answered in the RFC 3489 way: MAPPED-ADDRESS,
 * SOURCE-ADDRESS and CHANGED-ADDRESS.
 *
 * Nothing here allocates, reads a clock or keeps state.
 */
#ifndef PL_STUN_H
#define PL_STUN_H

#include "parley.h"

#define PL_STUN_MAGIC_COOKIE 0x2112A442u
#define PL_STUN_FINGERPRINT_XOR 0x5354554Eu
#define PL_STUN_HEADER_SIZE 20
#define PL_STUN_TXID_SIZE 12
/* The longest SOFTWARE value and ERROR-CODE reason phrase (128 characters
 * of up to 6 bytes, less one, as RFC 8489 bounds them). */
#define PL_STUN_TEXT_MAX 763
/* Attribute types kept in a list (UNKNOWN-ATTRIBUTES, not understood). */
#define PL_STUN_MAX_UNKNOWN 8
/* The largest message the responder writes: an IPv6 success with every
 * attribute, a SOFTWARE of PL_STUN_TEXT_MAX bytes and FINGERPRINT. */
#define PL_STUN_MAX_RESPONSE 1024

/* Classes (two bits spread over the message type). */
enum { PL_STUN_REQUEST = 0, PL_STUN_INDICATION = 1, PL_STUN_SUCCESS = 2, PL_STUN_ERROR = 3 };
#define PL_STUN_METHOD_BINDING 0x001

/* Attribute types. 0x0000-0x7FFF are comprehension-required: a request
 * carrying one the server does not understand is refused with 420. */
#define PL_STUN_ATTR_MAPPED_ADDRESS 0x0001
#define PL_STUN_ATTR_RESPONSE_ADDRESS 0x0002 /* RFC 3489; never honoured (a reflection vector) */
#define PL_STUN_ATTR_CHANGE_REQUEST 0x0003
#define PL_STUN_ATTR_SOURCE_ADDRESS 0x0004   /* RFC 3489 */
#define PL_STUN_ATTR_CHANGED_ADDRESS 0x0005  /* RFC 3489 */
#define PL_STUN_ATTR_USERNAME 0x0006
#define PL_STUN_ATTR_MESSAGE_INTEGRITY 0x0008
#define PL_STUN_ATTR_ERROR_CODE 0x0009
#define PL_STUN_ATTR_UNKNOWN_ATTRIBUTES 0x000A
#define PL_STUN_ATTR_REALM 0x0014
#define PL_STUN_ATTR_NONCE 0x0015
#define PL_STUN_ATTR_MESSAGE_INTEGRITY_SHA256 0x001C
#define PL_STUN_ATTR_PASSWORD_ALGORITHM 0x001D
#define PL_STUN_ATTR_USERHASH 0x001E
#define PL_STUN_ATTR_XOR_MAPPED_ADDRESS 0x0020
#define PL_STUN_ATTR_PADDING 0x0026          /* RFC 5780; not supported */
#define PL_STUN_ATTR_RESPONSE_PORT 0x0027    /* RFC 5780; not supported */
#define PL_STUN_ATTR_SOFTWARE 0x8022
#define PL_STUN_ATTR_FINGERPRINT 0x8028
#define PL_STUN_ATTR_RESPONSE_ORIGIN 0x802B
#define PL_STUN_ATTR_OTHER_ADDRESS 0x802C

/* CHANGE-REQUEST flags. */
#define PL_STUN_CHANGE_IP 0x4u
#define PL_STUN_CHANGE_PORT 0x2u

/* Which attributes a message carries (pl_stun_msg.attrs). */
#define PL_STUN_HAS_MAPPED (1u << 0)
#define PL_STUN_HAS_XOR_MAPPED (1u << 1)
#define PL_STUN_HAS_RESPONSE_ORIGIN (1u << 2)
#define PL_STUN_HAS_OTHER_ADDRESS (1u << 3)
#define PL_STUN_HAS_SOURCE_ADDRESS (1u << 4)
#define PL_STUN_HAS_CHANGED_ADDRESS (1u << 5)
#define PL_STUN_HAS_CHANGE_REQUEST (1u << 6)
#define PL_STUN_HAS_ERROR_CODE (1u << 7)
#define PL_STUN_HAS_UNKNOWN_ATTRIBUTES (1u << 8)
#define PL_STUN_HAS_SOFTWARE (1u << 9)
#define PL_STUN_HAS_FINGERPRINT (1u << 10)        /* decode: present and correct; encode: append one */
#define PL_STUN_HAS_MESSAGE_INTEGRITY (1u << 11)  /* decode only: seen, not checked */

typedef enum pl_stun_err {
    PL_STUN_OK = 0,
    PL_STUN_ERR_NOT_STUN,    /* the header is not STUN's: top bits, length or size */
    PL_STUN_ERR_MALFORMED,   /* a STUN header, but an attribute is cut short or invalid */
    PL_STUN_ERR_FINGERPRINT, /* FINGERPRINT does not match, or is not the last attribute */
    PL_STUN_ERR_BUFFER,      /* encoding: the output buffer is too small */
    PL_STUN_ERR_INVALID,     /* encoding: a field out of range */
} pl_stun_err;
const char *pl_stun_strerror(pl_stun_err err);

/* One message. Decoding fills the header fields first, so that even a
 * message refused as MALFORMED says its class, method and transaction id
 * (the responder answers such a request with 400). Text fields point into
 * the decoded buffer and live as long as it does. */
typedef struct pl_stun_msg {
    uint16_t method; /* 12 bits */
    uint8_t cls;     /* PL_STUN_REQUEST ... PL_STUN_ERROR */
    uint32_t cookie; /* PL_STUN_MAGIC_COOKIE, or anything else for an RFC 3489 message */
    uint8_t txid[PL_STUN_TXID_SIZE];
    uint32_t attrs; /* PL_STUN_HAS_* */
    pl_addr mapped, xor_mapped, response_origin, other_address, source_address, changed_address;
    uint32_t change_flags; /* PL_STUN_CHANGE_* (other bits kept as received) */
    uint16_t error_code;   /* 300..699 */
    const uint8_t *reason;
    uint16_t reason_len;
    const uint8_t *software;
    uint16_t software_len;
    uint16_t unknown_attrs[PL_STUN_MAX_UNKNOWN]; /* UNKNOWN-ATTRIBUTES: the list it carries */
    uint8_t n_unknown_attrs;
    /* Decoding: comprehension-required attributes this codec does not
     * understand (the first PL_STUN_MAX_UNKNOWN; n_not_understood counts
     * them all). */
    uint16_t not_understood[PL_STUN_MAX_UNKNOWN];
    uint16_t n_not_understood;
} pl_stun_msg;

static inline bool pl_stun_is_classic(const pl_stun_msg *m) { return m->cookie != PL_STUN_MAGIC_COOKIE; }

pl_stun_err pl_stun_decode(pl_stun_msg *m, const uint8_t *buf, size_t len);
/* Writes the attributes flagged in m->attrs in a fixed order, FINGERPRINT
 * last. Refuses a method over 12 bits, a class over 3, an error code
 * outside 300..699, texts over PL_STUN_TEXT_MAX, more than
 * PL_STUN_MAX_UNKNOWN unknown attributes, an address of no family. */
pl_stun_err pl_stun_encode(const pl_stun_msg *m, uint8_t *buf, size_t cap, size_t *out_len);

/* A fresh Binding request (class REQUEST, magic cookie) with the given
 * transaction id and CHANGE-REQUEST flags (0: no attribute), encoded into
 * buf (at least 28 bytes). Returns its length, or 0 if buf is too small. */
size_t pl_stun_binding_request(uint8_t *buf, size_t cap, const uint8_t txid[PL_STUN_TXID_SIZE],
                               uint32_t change_flags);

/* CRC-32 (ISO-HDLC, as zlib) of the bytes, the basis of FINGERPRINT. */
uint32_t pl_stun_crc32(const uint8_t *buf, size_t len);

/* ---- demultiplexing ------------------------------------------------------------ */

typedef enum pl_stun_kind {
    PL_STUN_KIND_OTHER = 0, /* not STUN: hand it to the secure session layer */
    PL_STUN_KIND_STUN,      /* RFC 5389/8489: top bits zero, magic cookie, length a multiple of 4 that matches */
    PL_STUN_KIND_CLASSIC,   /* an RFC 3489 request (type 0x00xx, no cookie) whose length matches */
} pl_stun_kind;

/* Every Parley secure-session datagram starts with a type byte 1..4 and
 * three zero bytes and is at least 32 bytes long, so its "length" field is
 * 0 and never matches its size: no datagram is both. */
pl_stun_kind pl_stun_classify(const uint8_t *buf, size_t len);

/* ---- the responder ----------------------------------------------------------------- */

/* A server's addresses. RFC 5780 needs two IP addresses and two ports: the
 * server listens on all four combinations of (primary or alternate IP) and
 * (primary or alternate port). Without an alternate, the server answers
 * plain Binding requests and refuses CHANGE-REQUEST with 420. */
typedef struct pl_stun_server {
    pl_addr primary;      /* IP P, port p */
    pl_addr alternate;    /* IP A, port a (both differ from P, p); family PL_AF_NONE if none */
    const char *software; /* a SOFTWARE attribute for answers, or NULL (the default: smaller answers) */
} pl_stun_server;

typedef enum pl_stun_verdict {
    PL_STUN_DROP = 0, /* nothing to send */
    PL_STUN_SEND,     /* send out[0..len) to the client from reply.from */
} pl_stun_verdict;

typedef enum pl_stun_drop_reason {
    PL_STUN_DROP_NONE = 0,
    PL_STUN_DROP_NOT_STUN,     /* not a STUN message */
    PL_STUN_DROP_NOT_REQUEST,  /* a response or an indication: never answered */
    PL_STUN_DROP_FINGERPRINT,  /* a wrong FINGERPRINT: discarded silently (RFC 8489) */
    PL_STUN_DROP_BAD_LOCAL,    /* the local address is none of the server's */
    PL_STUN_DROP_BUFFER,       /* the output buffer is too small */
} pl_stun_drop_reason;

typedef struct pl_stun_reply {
    pl_addr from;           /* the local address to send from */
    size_t len;             /* bytes in out */
    uint16_t error_code;    /* 0 for a success response, else 400 or 420 */
    pl_stun_drop_reason why; /* PL_STUN_DROP: why nothing is sent */
} pl_stun_reply;

/* Answers one datagram that arrived at `local` (one of the server's
 * addresses) from `client`. A Binding request gets a success response with
 * XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN and, with an alternate address,
 * OTHER-ADDRESS (RFC 3489 requests: MAPPED-ADDRESS, SOURCE-ADDRESS,
 * CHANGED-ADDRESS), sent from the address CHANGE-REQUEST asks for.
 * Refusals: 420 with UNKNOWN-ATTRIBUTES for comprehension-required
 * attributes not understood (and for CHANGE-REQUEST without an alternate
 * address), 400 for a malformed request or a method other than Binding.
 * Answers carry FINGERPRINT when the request did. Responses and
 * indications are never answered. */
pl_stun_verdict pl_stun_respond(const pl_stun_server *srv, const pl_addr *local, const pl_addr *client,
                                const uint8_t *req, size_t len, uint8_t *out, size_t cap, pl_stun_reply *reply);

#endif
