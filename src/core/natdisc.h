/*
 * natdisc.h - NAT behaviour discovery (RFC 5780 tests, RFC 4787 terms),
 * sans I/O.
 *
 * A node learns, from one socket, its server-reflexive address and what its
 * NAT does: how it maps (endpoint-independent, address-dependent, or
 * address-and-port-dependent) and how it filters unsolicited packets (the
 * same three), whether it hairpins, and whether UDP gets out at all. The
 * tests need a STUN server with two addresses and two ports (stun.h's
 * responder: a supernode with a second address), or, for the mapping alone,
 * two servers at different addresses.
 *
 * The procedure, in three phases on one socket (docs/nat.md):
 *   1. Binding request to the server: the mapped address M1 and the
 *      server's OTHER-ADDRESS. No answer at all: UDP is blocked.
 *   2. At once, to the server: CHANGE-REQUEST "change IP and port" (an
 *      answer means endpoint-independent filtering), "change port" (an
 *      answer means address-dependent filtering; neither:
 *      address-and-port-dependent). These come first, while only the
 *      server's primary address has been contacted. Beside them, a Binding
 *      request to M1 itself: it arrives back here if the NAT hairpins (this
 *      test runs on through phase 3 and holds up only the end).
 *   3. Binding requests to (alternate IP, primary port) giving M2, and to
 *      (alternate IP, alternate port) giving M3: M2 = M1 means
 *      endpoint-independent mapping, else M3 = M2 address-dependent, else
 *      address-and-port-dependent.
 * Every request is retransmitted with a doubling timeout; a test whose
 * answer never comes counts as "no answer" only after the last try.
 *
 * The driver owns the socket and the clock: it calls start(), gives every
 * datagram that arrives to receive() (which says whether it was one of
 * ours), calls tick() when next_timeout() has passed, and sends what the
 * io.send callback hands it. io.done is called once with the result.
 */
#ifndef PL_NATDISC_H
#define PL_NATDISC_H

#include "parley.h"
#include "record.h"
#include "stun.h"

typedef enum pl_natdisc_err {
    PL_NATDISC_OK = 0,
    PL_NATDISC_ERR_CONFIG, /* no server address, no rng, or a value out of range */
} pl_natdisc_err;
const char *pl_natdisc_strerror(pl_natdisc_err err);

enum { PL_NATDISC_HAIRPIN_UNKNOWN = 0, PL_NATDISC_HAIRPIN_YES, PL_NATDISC_HAIRPIN_NO };

typedef struct pl_natdisc_result {
    bool udp_blocked;          /* the server never answered: no UDP gets through (or the server is down) */
    bool refused;              /* the server answered test I with an error: nothing could be tested */
    bool behind_nat;           /* the mapped address is not the local one (true when the local one is unknown) */
    pl_addr mapped;            /* the server-reflexive address (test I) */
    pl_addr other;             /* the server's OTHER-ADDRESS; family PL_AF_NONE when it has none */
    uint8_t mapping;           /* pl_nat_behaviour; PL_NAT_UNKNOWN when it could not be told */
    uint8_t filtering;         /* pl_nat_behaviour */
    uint8_t hairpin;           /* PL_NATDISC_HAIRPIN_* */
    uint8_t nat_flags;         /* PL_NAT_F_*, as a directory record carries them */
    pl_time rtt;               /* test I's round trip when its first try was answered, else 0 */
    uint32_t requests_sent;    /* datagrams sent, retransmissions included */
} pl_natdisc_result;

typedef struct pl_natdisc_io {
    void *ctx;
    void (*send)(void *ctx, const pl_addr *to, const uint8_t *data, size_t len);
    void (*done)(void *ctx, const pl_natdisc_result *result);
} pl_natdisc_io;

typedef struct pl_natdisc_config {
    pl_addr server;    /* the STUN server (ideally with an alternate address and port) */
    pl_addr server2;   /* optional (family PL_AF_NONE: none): a second server at another address, used
                          for the mapping test when the first has no OTHER-ADDRESS; it can tell
                          endpoint-independent mapping from the rest, not address-dependent from
                          address-and-port-dependent (reported as the latter) */
    pl_addr local;     /* the socket's own address, to tell "no NAT"; PL_AF_NONE (or an unspecified
                          IP) when unknown */
    const pl_rng *rng; /* transaction ids */
    pl_time rto;       /* first retransmission timeout; 0: 200 ms; at most 10 s */
    uint32_t max_tries; /* sends per request; 0: 4 (so a silent test ends after 15 rto); at most 10 */
    bool skip_hairpin; /* do not test hairpinning */
} pl_natdisc_config;

/* The tests, one transaction each (internal, listed for the struct). */
enum { PL_NATDISC_T1, PL_NATDISC_FILTER2, PL_NATDISC_FILTER3, PL_NATDISC_HAIRPIN, PL_NATDISC_MAP2,
       PL_NATDISC_MAP3, PL_NATDISC_TESTS };

typedef struct pl_natdisc_txn {
    uint8_t state; /* idle, pending, answered, timed out, refused (an error answer) */
    uint8_t txid[PL_STUN_TXID_SIZE];
    uint32_t change;
    pl_addr to;
    pl_addr expect_from; /* filtering tests: where a changed answer must come from */
    uint32_t tries;
    pl_time first_sent, next;
    pl_addr mapped;
} pl_natdisc_txn;

/* A plain struct so that drivers can embed it; its fields are not an
 * interface. */
typedef struct pl_natdisc {
    pl_natdisc_config cfg;
    pl_natdisc_io io;
    int phase;
    pl_natdisc_txn t[PL_NATDISC_TESTS];
    pl_natdisc_result result;
} pl_natdisc;

pl_natdisc_err pl_natdisc_init(pl_natdisc *d, const pl_natdisc_config *cfg, const pl_natdisc_io *io);
/* Sends the first request. */
void pl_natdisc_start(pl_natdisc *d, pl_time now);
/* Gives it a datagram from the socket. Returns true when it was one of its
 * answers (or its own hairpinned request); false for anything else, which
 * the driver handles as it would without discovery running. */
bool pl_natdisc_receive(pl_natdisc *d, const pl_addr *from, const uint8_t *data, size_t len, pl_time now);
void pl_natdisc_tick(pl_natdisc *d, pl_time now);
/* When tick() next has work; PL_TIME_NEVER once done. */
pl_time pl_natdisc_next_timeout(const pl_natdisc *d);
bool pl_natdisc_finished(const pl_natdisc *d);
const pl_natdisc_result *pl_natdisc_get_result(const pl_natdisc *d);

/* "endpoint-independent", "address-dependent", "address-and-port-dependent", "unknown". */
const char *pl_nat_behaviour_name(uint8_t behaviour);

#endif
