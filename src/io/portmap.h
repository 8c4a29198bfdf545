/*
 * portmap.h - a port-mapped candidate: asking the home router to forward a
 * public UDP port to the node's socket, by NAT-PMP (RFC 6886, libnatpmp) or
 * UPnP IGD (libminiupnpc: SSDP discovery, AddPortMapping,
 * GetExternalIPAddress), whichever the router offers.
 *
 * Both libraries block (NAT-PMP waits for answers, UPnP discovers by SSDP
 * and speaks SOAP over HTTP), so every exchange with the router runs on a
 * worker thread that this module starts; the thread hands each result back
 * through a pipe the event loop watches, and callbacks run on the loop's
 * thread like any other. The daemon's loop never waits on the router.
 *
 * What happens, with the default configuration (docs/nat.md, "Port mapping"):
 *   1. At once: NAT-PMP to the default gateway (the external address, then
 *      a mapping of the socket's port, asking for the same external port),
 *      each request retried at 250 ms, 500 ms, 1 s... for at most `timeout`.
 *      No answer, or an answer that refuses: UPnP, SSDP discovery of an
 *      Internet Gateway Device for at most `timeout`, its external address,
 *      AddPortMapping (same external port; on a conflict, AddAnyPortMapping
 *      where the IGD has it, else a few other ports).
 *   2. The first success is reported with PL_PORTMAP_EV_MAPPED: the
 *      external address and port (the port-mapped candidate), the protocol
 *      and the lease. Otherwise PL_PORTMAP_EV_FAILED says why, and the whole
 *      attempt is made again after `retry`.
 *   3. The lease is renewed halfway through (same protocol, same external
 *      port); a renewal that fails is tried again at half the time left. If
 *      the lease runs out first, PL_PORTMAP_EV_LOST, and step 1 again after
 *      `retry`. A renewal that comes back with another external address or
 *      port is reported as MAPPED again, so the driver republishes it.
 *   4. pl_portmap_release removes the mapping (NAT-PMP lifetime 0, UPnP
 *      DeletePortMapping) and reports PL_PORTMAP_EV_RELEASED; nothing
 *      happens after that. pl_portmap_free also removes a mapping still
 *      held, but waits for it.
 *
 * What the driver (the node daemon) does:
 *   - pl_portmap_new with the UDP socket's local address once it knows it;
 *   - on MAPPED: publish `external` as a PL_CAND_PORT_MAPPED candidate of
 *     its record (unless `external_private`: then the router is itself
 *     behind a NAT and the mapping reaches only as far as that NAT);
 *   - on LOST or FAILED: withdraw the candidate, if any;
 *   - on shutdown: pl_portmap_release, run the loop until RELEASED (or a
 *     few seconds), then pl_portmap_free.
 *
 * IPv4 only: NAT-PMP and IGDv1/v2 port mapping are IPv4 mechanisms (IPv6
 * needs no mapping, at most a pinhole, which this module does not ask for).
 * NAT-PMP maps the port for the address its request comes from (the one
 * the host uses towards its default gateway) and asks that gateway only;
 * UPnP maps it for `internal`'s address when one is given.
 */
#ifndef PL_PORTMAP_H
#define PL_PORTMAP_H

#include "loop.h"
#include "parley.h"

typedef struct pl_portmap pl_portmap;

/* Protocols, as a set in the configuration and one of them in a status. */
enum { PL_PORTMAP_NATPMP = 1, PL_PORTMAP_UPNP = 2 };

typedef enum pl_portmap_err {
    PL_PORTMAP_OK = 0,
    PL_PORTMAP_ERR_NO_ROUTER,     /* no NAT-PMP gateway and no UPnP IGD answered */
    PL_PORTMAP_ERR_REFUSED,       /* the router answered but will not map (not authorised, disabled) */
    PL_PORTMAP_ERR_CONFLICT,      /* the external port belongs to another mapping and no other was had */
    PL_PORTMAP_ERR_NO_RESOURCES,  /* the router has no port or table entry left */
    PL_PORTMAP_ERR_NOT_CONNECTED, /* the router has no external address (its WAN is down) */
    PL_PORTMAP_ERR_BAD_REPLY,     /* the router's answer made no sense */
    PL_PORTMAP_ERR_EXPIRED,       /* renewals failed until the lease ran out (EV_LOST) */
    PL_PORTMAP_ERR_SYSTEM,        /* a socket, thread or memory failure on this host */
    PL_PORTMAP_ERR_CONFIG,        /* not an IPv4 socket address, or a value out of range */
} pl_portmap_err;
const char *pl_portmap_strerror(pl_portmap_err err);
/* "natpmp", "upnp" or "none". */
const char *pl_portmap_protocol_name(int protocol);

typedef enum pl_portmap_event {
    PL_PORTMAP_EV_MAPPED = 1, /* a new mapping, or a renewal that changed the external address or port */
    PL_PORTMAP_EV_RENEWED,    /* the lease was extended; nothing else changed */
    PL_PORTMAP_EV_FAILED,     /* no mapping could be had (err says why); tried again after `retry` */
    PL_PORTMAP_EV_LOST,       /* a mapping held until now is gone (err: EXPIRED) */
    PL_PORTMAP_EV_RELEASED,   /* after pl_portmap_release: the mapping is removed (err: how removal went) */
} pl_portmap_event;
const char *pl_portmap_event_name(pl_portmap_event ev);

#define PL_PORTMAP_DETAIL_MAX 96

typedef struct pl_portmap_status {
    pl_portmap_event event;
    pl_portmap_err err;
    int protocol;          /* PL_PORTMAP_NATPMP or PL_PORTMAP_UPNP; 0 when none answered */
    pl_addr external;      /* the port-mapped candidate (MAPPED, RENEWED; the old one on LOST) */
    bool external_private; /* the external address is private or shared (RFC 1918, 100.64/10...) */
    uint32_t lifetime;     /* seconds granted; 0: a permanent UPnP mapping (refreshed anyway) */
    pl_time expires;       /* when the lease runs out (PL_TIME_NEVER for a permanent one) */
    int code;              /* the router's own answer: NAT-PMP result code or UPnP error code */
    pl_time took;          /* how long the exchange with the router took */
    char detail[PL_PORTMAP_DETAIL_MAX]; /* for people: what happened, in a few words */
} pl_portmap_status;

typedef void (*pl_portmap_cb)(void *ctx, pl_portmap *pm, const pl_portmap_status *st);

typedef struct pl_portmap_config {
    pl_addr internal;       /* the UDP socket's local address; an unspecified IP (0.0.0.0) means the
                               address this host uses towards the router */
    unsigned protocols;     /* PL_PORTMAP_NATPMP | PL_PORTMAP_UPNP; 0: both, NAT-PMP first */
    uint16_t external_port; /* wanted external port; 0: the internal port */
    bool exact_port;        /* refuse any other external port (fail with CONFLICT) */
    uint32_t lifetime;      /* seconds asked for; 0: 7200 (RFC 6886's recommendation); 1..604800 */
    pl_time timeout;        /* per protocol: NAT-PMP retries, SSDP discovery; 0: 2 s; at most 60 s */
    pl_time retry;          /* after FAILED or LOST, try again after this; 0: 5 min; PL_TIME_NEVER: not */
    const char *description; /* UPnP NewPortMappingDescription; NULL: "Parley"; copied */
} pl_portmap_config;

/* Starts the worker and the first attempt at once; events come through cb
 * on the loop's thread. NULL on failure, with *err set. */
pl_portmap *pl_portmap_new(pl_loop *loop, const pl_portmap_config *cfg, pl_portmap_cb cb, void *ctx,
                           pl_portmap_err *err);
/* Removes the mapping (if one is held, or as soon as an attempt under way
 * ends) and then reports EV_RELEASED once; stops renewals and retries. */
void pl_portmap_release(pl_portmap *pm);
/* The last status reported (event 0 before the first). */
const pl_portmap_status *pl_portmap_status_get(const pl_portmap *pm);
/* Stops the worker and frees everything; no callback runs from here. A
 * mapping still held is removed first, which blocks for at most one
 * exchange with the router (`timeout`, or the HTTP timeouts of UPnP).
 * Call it before pl_loop_free; it may be called from the callback. */
void pl_portmap_free(pl_portmap *pm);

#endif
