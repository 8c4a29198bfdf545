/*
 * portmap.c - port mapping by NAT-PMP and UPnP IGD, on a worker thread.
 *
 * Two halves share one small mailbox under a mutex:
 *
 *   - the loop half (pl_portmap_*, timers, the pipe's callback) decides what
 *     to ask for and when: the first mapping, renewals halfway through the
 *     lease, retries after failures, removal on release. It posts one job at
 *     a time and never waits for it;
 *   - the worker thread runs the job with the blocking libraries, writes the
 *     result into the mailbox and a byte into the pipe, which wakes the loop.
 *
 * The worker alone remembers what the router holds for us (`held`), so that
 * whatever the loop half knows or has missed, a worker told to quit removes
 * the mapping it made before it exits.
 */
#include "portmap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <miniupnpc/miniupnpc.h>
#include <miniupnpc/upnpcommands.h>
#include <miniupnpc/upnperrors.h>
#include <natpmp.h>

#define DEFAULT_LIFETIME 7200u           /* RFC 6886 section 3.3 recommends two hours */
#define MAX_LIFETIME 604800u             /* a week: the most IGDv2 grants */
#define DEFAULT_TIMEOUT (2 * PL_SEC)
#define MAX_TIMEOUT (60 * PL_SEC)
#define DEFAULT_RETRY (5 * 60 * PL_SEC)
#define MIN_RENEW_GAP PL_SEC             /* renewal attempts never come closer than this */
#define UPNP_OTHER_PORTS 4               /* ports tried after a conflict on an IGD without AddAnyPortMapping */
#define DESCRIPTION_MAX 64

/* UPnP error codes (UPnP IGD WANIPConnection:2, section 2.5) this module
 * acts on; the others (402 invalid args, 501 action failed, 606 not
 * authorised, 724 same port required...) are refusals. */
#define UPNP_ERR_NO_SUCH_ENTRY 714
#define UPNP_ERR_CONFLICT 718
#define UPNP_ERR_ONLY_PERMANENT 725
#define UPNP_ERR_NO_PORT_MAPS 728
#define UPNP_ERR_CONFLICT_OTHER 729

const char *pl_portmap_strerror(pl_portmap_err err)
{
    switch (err) {
    case PL_PORTMAP_OK: return "ok";
    case PL_PORTMAP_ERR_NO_ROUTER: return "no router answered (neither NAT-PMP nor UPnP IGD)";
    case PL_PORTMAP_ERR_REFUSED: return "the router refused the mapping";
    case PL_PORTMAP_ERR_CONFLICT: return "the external port is mapped to someone else";
    case PL_PORTMAP_ERR_NO_RESOURCES: return "the router has no mapping left";
    case PL_PORTMAP_ERR_NOT_CONNECTED: return "the router has no external address";
    case PL_PORTMAP_ERR_BAD_REPLY: return "the router's answer made no sense";
    case PL_PORTMAP_ERR_EXPIRED: return "the lease ran out before it could be renewed";
    case PL_PORTMAP_ERR_SYSTEM: return "system error";
    case PL_PORTMAP_ERR_CONFIG: return "bad configuration";
    }
    return "unknown error";
}

const char *pl_portmap_protocol_name(int protocol)
{
    switch (protocol) {
    case PL_PORTMAP_NATPMP: return "natpmp";
    case PL_PORTMAP_UPNP: return "upnp";
    default: return "none";
    }
}

const char *pl_portmap_event_name(pl_portmap_event ev)
{
    switch (ev) {
    case PL_PORTMAP_EV_MAPPED: return "mapped";
    case PL_PORTMAP_EV_RENEWED: return "renewed";
    case PL_PORTMAP_EV_FAILED: return "failed";
    case PL_PORTMAP_EV_LOST: return "lost";
    case PL_PORTMAP_EV_RELEASED: return "released";
    }
    return "unknown";
}

/* ---- the mailbox -------------------------------------------------------------- */

enum { JOB_NONE = 0, JOB_MAP, JOB_RENEW, JOB_UNMAP };

typedef struct job {
    int kind;
    unsigned protocols;     /* JOB_MAP: which to try */
    int protocol;           /* JOB_RENEW: the one that holds the mapping */
    uint16_t external_port; /* wanted (JOB_MAP) or held (JOB_RENEW) */
} job;

typedef struct result {
    int kind;           /* the job's */
    pl_portmap_err err;
    int protocol;
    pl_addr external;
    uint32_t lifetime;
    int code;
    pl_time took;
    char detail[PL_PORTMAP_DETAIL_MAX];
} result;

/* What the router holds for us, as the worker made it. */
typedef struct holding {
    int protocol; /* 0: nothing */
    uint16_t external_port;
} holding;

enum { ST_BUSY = 1, ST_HELD, ST_WAITING, ST_RELEASED };

struct pl_portmap {
    pl_loop *loop;
    pl_portmap_cb cb;
    void *ctx;

    /* Fixed at creation, read by both halves. */
    uint8_t internal_ip[4]; /* 0.0.0.0: whatever the route to the router uses */
    uint16_t internal_port;
    unsigned protocols;
    uint16_t want_port;
    bool exact_port;
    uint32_t lifetime;
    pl_time timeout;
    pl_time retry;
    char description[DESCRIPTION_MAX];

    /* The loop half. */
    int state;
    bool release_wanted;
    pl_timer timer;
    pl_portmap_status status;
    int pipe_rd, pipe_wr;
    bool watching;

    /* The mailbox. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool thread_started;
    bool quit;
    job pending; /* kind JOB_NONE when the worker has nothing to do */
    result done;
    bool done_ready;

    /* The worker's own (touched by the worker thread only, and by free after join). */
    holding held;
    bool have_igd;
    struct UPNPUrls urls;
    struct IGDdatas igd;
    char lanaddr[64];
};

/* ---- the worker: helpers ---------------------------------------------------------- */

static pl_time mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (pl_time)ts.tv_sec * PL_SEC + (pl_time)ts.tv_nsec / 1000;
}

static void set_detail(result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_detail(result *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->detail, sizeof r->detail, fmt, ap);
    va_end(ap);
}

static void ipv4_addr(pl_addr *out, const uint8_t ip[4], uint16_t port)
{
    memset(out, 0, sizeof *out);
    out->family = PL_AF_INET4;
    out->transport = PL_ADDR_UDP;
    out->port = port;
    memcpy(out->ip, ip, 4);
}

static bool unspecified(const uint8_t ip[4]) { return !ip[0] && !ip[1] && !ip[2] && !ip[3]; }

/* Private (RFC 1918), shared (RFC 6598), loopback or link-local: an address
 * the rest of the internet cannot send to. */
static bool private_ipv4(const uint8_t ip[4])
{
    return ip[0] == 10 || ip[0] == 127 || (ip[0] == 172 && (ip[1] & 0xF0) == 16) ||
           (ip[0] == 192 && ip[1] == 168) || (ip[0] == 100 && (ip[1] & 0xC0) == 64) ||
           (ip[0] == 169 && ip[1] == 254) || ip[0] == 0;
}

/* ---- the worker: NAT-PMP ---------------------------------------------------------------
 * libnatpmp retries a request at 250 ms, 500 ms, 1 s... up to nine times
 * (about two minutes). A node cannot wait that long to learn there is no
 * NAT-PMP gateway, so each request gets `timeout` in all. A gateway that
 * does not run NAT-PMP usually says so at once with an ICMP port
 * unreachable, which the library reports as "no gateway support". */

static pl_portmap_err natpmp_error(int r, result *res)
{
    switch (r) {
    case NATPMP_ERR_NOGATEWAYSUPPORT:
        set_detail(res, "natpmp: the gateway does not answer NAT-PMP");
        return PL_PORTMAP_ERR_NO_ROUTER;
    case NATPMP_ERR_UNSUPPORTEDVERSION:
        res->code = 1;
        set_detail(res, "natpmp: unsupported version");
        return PL_PORTMAP_ERR_REFUSED;
    case NATPMP_ERR_NOTAUTHORIZED:
        res->code = 2;
        set_detail(res, "natpmp: not authorized/refused (result 2)");
        return PL_PORTMAP_ERR_REFUSED;
    case NATPMP_ERR_NETWORKFAILURE:
        res->code = 3;
        set_detail(res, "natpmp: network failure (result 3)");
        return PL_PORTMAP_ERR_NOT_CONNECTED;
    case NATPMP_ERR_OUTOFRESOURCES:
        res->code = 4;
        set_detail(res, "natpmp: out of resources (result 4)");
        return PL_PORTMAP_ERR_NO_RESOURCES;
    case NATPMP_ERR_UNSUPPORTEDOPCODE:
        res->code = 5;
        set_detail(res, "natpmp: unsupported opcode (result 5)");
        return PL_PORTMAP_ERR_REFUSED;
    case NATPMP_ERR_UNDEFINEDERROR:
        set_detail(res, "natpmp: undefined result code");
        return PL_PORTMAP_ERR_BAD_REPLY;
    case NATPMP_ERR_CANNOTGETGATEWAY:
        set_detail(res, "natpmp: no default gateway");
        return PL_PORTMAP_ERR_NO_ROUTER;
    case NATPMP_ERR_RECVFROM:
    case NATPMP_ERR_SENDERR:
        /* Unreachable gateway, down interface: nobody to ask. */
        set_detail(res, "natpmp: cannot reach the gateway (%s)", strerror(errno));
        return PL_PORTMAP_ERR_NO_ROUTER;
    default:
        set_detail(res, "natpmp: library error %d", r);
        return PL_PORTMAP_ERR_SYSTEM;
    }
}

/* Waits for the answer to the request just sent, retrying on the library's
 * schedule until the deadline. */
static pl_portmap_err natpmp_wait(natpmp_t *n, uint16_t want_type, pl_time deadline, natpmpresp_t *resp,
                                  result *res)
{
    for (;;) {
        struct timeval tv;
        int wait_ms = 0;
        pl_time now = mono_now();
        if (now >= deadline) {
            set_detail(res, "natpmp: no answer from the gateway");
            return PL_PORTMAP_ERR_NO_ROUTER;
        }
        if (getnatpmprequesttimeout(n, &tv) == 0 && tv.tv_sec >= 0) {
            pl_time until = (pl_time)tv.tv_sec * PL_SEC + (pl_time)tv.tv_usec;
            if (until > deadline - now) until = deadline - now;
            wait_ms = (int)((until + 999) / 1000);
        }
        struct pollfd p = {.fd = n->s, .events = POLLIN};
        if (poll(&p, 1, wait_ms) < 0 && errno != EINTR) {
            set_detail(res, "natpmp: poll: %s", strerror(errno));
            return PL_PORTMAP_ERR_SYSTEM;
        }
        int r = readnatpmpresponseorretry(n, resp);
        if (r == NATPMP_TRYAGAIN || r == NATPMP_ERR_WRONGPACKETSOURCE) continue;
        if (r < 0) return natpmp_error(r, res);
        if (resp->type == want_type) return PL_PORTMAP_OK;
        /* A late answer to the previous request: keep waiting for ours. The
         * library has dropped the request, so it must be made pending again. */
        n->has_pending_request = 1;
    }
}

static pl_portmap_err natpmp_map(pl_portmap *pm, uint16_t ext_port, uint32_t lifetime, result *res)
{
    natpmp_t n;
    int r = initnatpmp(&n, 0, 0);
    if (r < 0) return natpmp_error(r, res);
    natpmpresp_t resp;
    pl_portmap_err err = PL_PORTMAP_OK;
    pl_time deadline = mono_now() + pm->timeout;
    uint8_t ext_ip[4] = {0};
    r = sendpublicaddressrequest(&n);
    if (r < 0) err = natpmp_error(r, res);
    if (!err) err = natpmp_wait(&n, NATPMP_RESPTYPE_PUBLICADDRESS, deadline, &resp, res);
    if (!err) {
        memcpy(ext_ip, &resp.pnu.publicaddress.addr, 4);
        if (unspecified(ext_ip)) {
            set_detail(res, "natpmp: the gateway has no external address");
            err = PL_PORTMAP_ERR_NOT_CONNECTED;
        }
    }
    if (!err) {
        deadline = mono_now() + pm->timeout;
        r = sendnewportmappingrequest(&n, NATPMP_PROTOCOL_UDP, pm->internal_port, ext_port, lifetime);
        if (r < 0) err = natpmp_error(r, res);
    }
    if (!err) err = natpmp_wait(&n, NATPMP_RESPTYPE_UDPPORTMAPPING, deadline, &resp, res);
    if (!err && resp.pnu.newportmapping.lifetime == 0) {
        set_detail(res, "natpmp: mapping granted with lifetime 0");
        err = PL_PORTMAP_ERR_BAD_REPLY;
    }
    if (!err) {
        /* From here the gateway holds a mapping: it is ours to remove. */
        pm->held.protocol = PL_PORTMAP_NATPMP;
        pm->held.external_port = resp.pnu.newportmapping.mappedpublicport;
        res->protocol = PL_PORTMAP_NATPMP;
        ipv4_addr(&res->external, ext_ip, resp.pnu.newportmapping.mappedpublicport);
        res->lifetime = resp.pnu.newportmapping.lifetime;
        set_detail(res, "natpmp: port %u for %u s", (unsigned)resp.pnu.newportmapping.mappedpublicport,
                   (unsigned)res->lifetime);
    }
    closenatpmp(&n);
    return err;
}

static pl_portmap_err natpmp_unmap(pl_portmap *pm, result *res)
{
    natpmp_t n;
    int r = initnatpmp(&n, 0, 0);
    if (r < 0) return natpmp_error(r, res);
    natpmpresp_t resp;
    pl_portmap_err err = PL_PORTMAP_OK;
    /* RFC 6886 section 3.4: lifetime 0 and external port 0 delete the mapping. */
    r = sendnewportmappingrequest(&n, NATPMP_PROTOCOL_UDP, pm->internal_port, 0, 0);
    if (r < 0) err = natpmp_error(r, res);
    if (!err) err = natpmp_wait(&n, NATPMP_RESPTYPE_UDPPORTMAPPING, mono_now() + pm->timeout, &resp, res);
    if (!err) set_detail(res, "natpmp: mapping removed");
    closenatpmp(&n);
    return err;
}

/* ---- the worker: UPnP IGD ----------------------------------------------------------------- */

static void upnp_forget(pl_portmap *pm)
{
    if (pm->have_igd) FreeUPNPUrls(&pm->urls);
    pm->have_igd = false;
}

/* An error code from a SOAP action: UPnP's own (positive) or the library's
 * (negative: no HTTP answer, an answer that did not parse). */
static pl_portmap_err upnp_error(int r, const char *action, result *res)
{
    res->code = r;
    const char *what = strupnperror(r);
    set_detail(res, "upnp %s: %d %s", action, r, what ? what : "");
    switch (r) {
    case UPNPCOMMAND_HTTP_ERROR: return PL_PORTMAP_ERR_NO_ROUTER;
    case UPNPCOMMAND_INVALID_RESPONSE:
    case UPNPCOMMAND_UNKNOWN_ERROR: return PL_PORTMAP_ERR_BAD_REPLY;
    case UPNPCOMMAND_MEM_ALLOC_ERROR:
    case UPNPCOMMAND_INVALID_ARGS: return PL_PORTMAP_ERR_SYSTEM;
    case UPNP_ERR_CONFLICT:
    case UPNP_ERR_CONFLICT_OTHER: return PL_PORTMAP_ERR_CONFLICT;
    case UPNP_ERR_NO_PORT_MAPS: return PL_PORTMAP_ERR_NO_RESOURCES;
    default: return PL_PORTMAP_ERR_REFUSED; /* 402, 501, 606, 724... */
    }
}

static pl_portmap_err upnp_discover(pl_portmap *pm, result *res)
{
    if (pm->have_igd) return PL_PORTMAP_OK;
    /* IGDv1 and v2 devices both answer a search for version 1. One device
     * type, so that with no IGD around discovery takes `timeout`, not a
     * multiple of it. */
    static const char *const types[] = {"urn:schemas-upnp-org:device:InternetGatewayDevice:1", NULL};
    char mcastif[INET_ADDRSTRLEN] = "";
    if (!unspecified(pm->internal_ip)) inet_ntop(AF_INET, pm->internal_ip, mcastif, sizeof mcastif);
    int delay_ms = (int)(pm->timeout / PL_MSEC);
    int error = 0;
    struct UPNPDev *devs = upnpDiscoverDevices(types, delay_ms, mcastif[0] ? mcastif : NULL, NULL,
                                               UPNP_LOCAL_PORT_ANY, 0, 2, &error, 0);
    if (!devs) {
        if (error == UPNPDISCOVER_SOCKET_ERROR || error == UPNPDISCOVER_MEMORY_ERROR) {
            set_detail(res, "upnp: discovery failed (%d)", error);
            return PL_PORTMAP_ERR_SYSTEM;
        }
        set_detail(res, "upnp: no IGD answered the SSDP search");
        return PL_PORTMAP_ERR_NO_ROUTER;
    }
    memset(&pm->urls, 0, sizeof pm->urls);
    memset(&pm->igd, 0, sizeof pm->igd);
    pm->lanaddr[0] = '\0';
    int r = UPNP_GetValidIGD(devs, &pm->urls, &pm->igd, pm->lanaddr, sizeof pm->lanaddr);
    freeUPNPDevlist(devs);
    /* 2 is "an IGD, but not connected": the library says so also of an
     * IGD whose external address is private or reserved (a router behind
     * another NAT; the lab's documentation ranges). Its external address is
     * checked below like any other, and a private one is reported as such. */
    if (r == 1 || r == 2) {
        pm->have_igd = true;
        return PL_PORTMAP_OK;
    }
    if (r != 0) FreeUPNPUrls(&pm->urls);
    set_detail(res, r == 3 ? "upnp: a UPnP device answered but it is not an IGD" : "upnp: no valid IGD");
    return PL_PORTMAP_ERR_NO_ROUTER;
}

static void port_text(char out[8], uint16_t port) { snprintf(out, 8, "%u", (unsigned)port); }

/* One AddPortMapping; on 725 (only permanent leases) once more with lease 0. */
static int upnp_add(pl_portmap *pm, const char *client, uint16_t ext_port, uint32_t lifetime, uint32_t *granted)
{
    char ext[8], in[8], lease[16];
    port_text(ext, ext_port);
    port_text(in, pm->internal_port);
    snprintf(lease, sizeof lease, "%u", (unsigned)lifetime);
    const char *ctl = pm->urls.controlURL, *svc = pm->igd.first.servicetype;
    int r = UPNP_AddPortMapping(ctl, svc, ext, in, client, pm->description, "UDP", NULL, lease);
    if (r == UPNP_ERR_ONLY_PERMANENT) {
        r = UPNP_AddPortMapping(ctl, svc, ext, in, client, pm->description, "UDP", NULL, "0");
        lifetime = 0;
    }
    *granted = lifetime;
    return r;
}

/* Whether the IGD's entry for ext_port is this socket's (a renewal that an
 * IGD refuses as a "conflict" with itself). */
static bool upnp_entry_is_ours(pl_portmap *pm, const char *client, uint16_t ext_port, uint32_t *lease)
{
    char ext[8], in[8];
    char int_client[64] = "", int_port[8] = "", desc[96] = "", enabled[8] = "", duration[16] = "";
    port_text(ext, ext_port);
    port_text(in, pm->internal_port);
    int r = UPNP_GetSpecificPortMappingEntry(pm->urls.controlURL, pm->igd.first.servicetype, ext, "UDP", NULL,
                                             int_client, int_port, desc, enabled, duration);
    if (r != 0) return false;
    if (lease) *lease = (uint32_t)strtoul(duration, NULL, 10);
    return strcmp(int_client, client) == 0 && strcmp(int_port, in) == 0;
}

static pl_portmap_err upnp_map_once(pl_portmap *pm, uint16_t want_port, bool renewing, result *res)
{
    pl_portmap_err err = upnp_discover(pm, res);
    if (err) return err;
    const char *ctl = pm->urls.controlURL, *svc = pm->igd.first.servicetype;
    char ext_ip_text[64] = "";
    int r = UPNP_GetExternalIPAddress(ctl, svc, ext_ip_text);
    if (r != 0) return upnp_error(r, "GetExternalIPAddress", res);
    uint8_t ext_ip[4];
    if (inet_pton(AF_INET, ext_ip_text, ext_ip) != 1) {
        set_detail(res, "upnp: external address \"%.40s\" is not IPv4", ext_ip_text);
        return PL_PORTMAP_ERR_BAD_REPLY;
    }
    if (unspecified(ext_ip)) {
        set_detail(res, "upnp: the IGD has no external address");
        return PL_PORTMAP_ERR_NOT_CONNECTED;
    }
    char client[sizeof pm->lanaddr];
    if (unspecified(pm->internal_ip)) snprintf(client, sizeof client, "%s", pm->lanaddr);
    else inet_ntop(AF_INET, pm->internal_ip, client, sizeof client);

    uint32_t granted = 0;
    uint16_t port = want_port;
    r = upnp_add(pm, client, port, pm->lifetime, &granted);
    if ((r == UPNP_ERR_CONFLICT || r == UPNP_ERR_CONFLICT_OTHER) && upnp_entry_is_ours(pm, client, port, NULL)) {
        /* Some IGDs refuse to re-add a mapping that exists, even for its
         * owner: take it down and make it again. */
        char ext[8];
        port_text(ext, port);
        UPNP_DeletePortMapping(ctl, svc, ext, "UDP", NULL);
        r = upnp_add(pm, client, port, pm->lifetime, &granted);
    }
    if ((r == UPNP_ERR_CONFLICT || r == UPNP_ERR_CONFLICT_OTHER) && !pm->exact_port && !renewing) {
        if (strstr(svc, "WANIPConnection:2")) {
            /* IGDv2 picks a free port itself. */
            char ext[8], in[8], lease[16], reserved[8] = "";
            port_text(ext, port);
            port_text(in, pm->internal_port);
            snprintf(lease, sizeof lease, "%u", (unsigned)pm->lifetime);
            r = UPNP_AddAnyPortMapping(ctl, svc, ext, in, client, pm->description, "UDP", NULL, lease, reserved);
            granted = pm->lifetime;
            if (r == 0) {
                unsigned long p = strtoul(reserved, NULL, 10);
                if (p == 0 || p > 65535) {
                    set_detail(res, "upnp: AddAnyPortMapping gave port \"%.8s\"", reserved);
                    return PL_PORTMAP_ERR_BAD_REPLY;
                }
                port = (uint16_t)p;
            }
        } else {
            for (int i = 0; i < UPNP_OTHER_PORTS && (r == UPNP_ERR_CONFLICT || r == UPNP_ERR_CONFLICT_OTHER); i++) {
                port = (uint16_t)(1024 + pl_rng_below(pl_rng_system(), 65536 - 1024));
                r = upnp_add(pm, client, port, pm->lifetime, &granted);
            }
        }
    }
    if (r != 0) return upnp_error(r, "AddPortMapping", res);
    pm->held.protocol = PL_PORTMAP_UPNP;
    pm->held.external_port = port;
    /* The IGD may shorten the lease; the entry says how much is left (a
     * second less than asked is only its clock ticking). */
    uint32_t lease = 0;
    if (granted != 0 && upnp_entry_is_ours(pm, client, port, &lease) && lease > 0 && lease + 1 < granted)
        granted = lease;
    res->protocol = PL_PORTMAP_UPNP;
    ipv4_addr(&res->external, ext_ip, port);
    res->lifetime = granted;
    set_detail(res, "upnp: port %u for %s", (unsigned)port, granted ? "a lease" : "ever (permanent lease)");
    return PL_PORTMAP_OK;
}

static pl_portmap_err upnp_map(pl_portmap *pm, uint16_t want_port, bool renewing, result *res)
{
    bool cached = pm->have_igd;
    pl_portmap_err err = upnp_map_once(pm, want_port, renewing, res);
    if (err == PL_PORTMAP_ERR_NO_ROUTER && cached) {
        /* The IGD we knew stopped answering (rebooted, moved to another
         * port): look for it again, once. */
        upnp_forget(pm);
        memset(res, 0, sizeof *res);
        err = upnp_map_once(pm, want_port, renewing, res);
    }
    if (err == PL_PORTMAP_ERR_NO_ROUTER) upnp_forget(pm);
    return err;
}

static pl_portmap_err upnp_unmap(pl_portmap *pm, result *res)
{
    if (!pm->have_igd) {
        pl_portmap_err err = upnp_discover(pm, res);
        if (err) return err;
    }
    char ext[8];
    port_text(ext, pm->held.external_port);
    int r = UPNP_DeletePortMapping(pm->urls.controlURL, pm->igd.first.servicetype, ext, "UDP", NULL);
    if (r != 0 && r != UPNP_ERR_NO_SUCH_ENTRY) return upnp_error(r, "DeletePortMapping", res);
    set_detail(res, "upnp: mapping removed");
    return PL_PORTMAP_OK;
}

/* ---- the worker: jobs ---------------------------------------------------------------------- */

static void run_unmap(pl_portmap *pm, result *res);

static void run_map(pl_portmap *pm, const job *j, result *res)
{
    static const int order[] = {PL_PORTMAP_NATPMP, PL_PORTMAP_UPNP};
    bool any = false;
    int silent = 0;
    for (size_t i = 0; i < 2; i++) {
        int proto = order[i];
        if (j->kind == JOB_RENEW ? proto != j->protocol : !(j->protocols & (unsigned)proto)) continue;
        result attempt;
        memset(&attempt, 0, sizeof attempt);
        attempt.kind = j->kind;
        pl_portmap_err err;
        if (proto == PL_PORTMAP_NATPMP) {
            err = natpmp_map(pm, j->external_port, pm->lifetime, &attempt);
            if (!err && pm->exact_port && attempt.external.port != j->external_port) {
                /* NAT-PMP offers another port instead of saying "conflict". */
                uint16_t offered = attempt.external.port;
                result ignored;
                memset(&ignored, 0, sizeof ignored);
                run_unmap(pm, &ignored);
                memset(&attempt, 0, sizeof attempt);
                attempt.kind = j->kind;
                set_detail(&attempt, "natpmp: port %u is taken (offered %u)", (unsigned)j->external_port,
                           (unsigned)offered);
                err = PL_PORTMAP_ERR_CONFLICT;
            }
        } else {
            err = upnp_map(pm, j->external_port, j->kind == JOB_RENEW, &attempt);
        }
        attempt.err = err;
        attempt.protocol = proto;
        if (!err) {
            *res = attempt;
            return;
        }
        /* Of two failures the one that says more is kept: a router that
         * answered and refused beats one that did not answer. */
        if (err == PL_PORTMAP_ERR_NO_ROUTER) silent++;
        if (!any || (res->err == PL_PORTMAP_ERR_NO_ROUTER && err != PL_PORTMAP_ERR_NO_ROUTER)) *res = attempt;
        any = true;
    }
    if (!any) {
        res->err = PL_PORTMAP_ERR_CONFIG;
        set_detail(res, "no protocol to try");
    } else if (res->err == PL_PORTMAP_ERR_NO_ROUTER) {
        res->protocol = 0;
        if (silent == 2) set_detail(res, "neither a NAT-PMP gateway nor a UPnP IGD answered");
    }
}

static void run_unmap(pl_portmap *pm, result *res)
{
    res->protocol = pm->held.protocol;
    if (pm->held.protocol == 0) {
        res->err = PL_PORTMAP_OK;
        set_detail(res, "no mapping was held");
        return;
    }
    if (pm->held.protocol == PL_PORTMAP_NATPMP) res->err = natpmp_unmap(pm, res);
    else res->err = upnp_unmap(pm, res);
    /* Removed or not, it is not ours to remove again: a router that did not
     * answer lets the lease run out. */
    pm->held.protocol = 0;
}

static void *worker_main(void *arg)
{
    pl_portmap *pm = arg;
    pthread_mutex_lock(&pm->mu);
    for (;;) {
        while (!pm->quit && pm->pending.kind == JOB_NONE) pthread_cond_wait(&pm->cv, &pm->mu);
        if (pm->quit) break;
        job j = pm->pending;
        pm->pending.kind = JOB_NONE;
        pthread_mutex_unlock(&pm->mu);

        result res;
        memset(&res, 0, sizeof res);
        res.kind = j.kind;
        pl_time t0 = mono_now();
        if (j.kind == JOB_UNMAP) run_unmap(pm, &res);
        else run_map(pm, &j, &res);
        res.took = mono_now() - t0;

        pthread_mutex_lock(&pm->mu);
        pm->done = res;
        pm->done_ready = true;
        /* The pipe only wakes the loop; a full pipe already has a wake-up in it. */
        uint8_t one = 1;
        if (write(pm->pipe_wr, &one, 1) < 0) { /* EAGAIN: already signalled */
        }
    }
    pthread_mutex_unlock(&pm->mu);
    /* Leaving: what the router still holds for us goes. */
    result res;
    memset(&res, 0, sizeof res);
    run_unmap(pm, &res);
    upnp_forget(pm);
    return NULL;
}

/* ---- the loop half ---------------------------------------------------------------------------- */

static void post_job(pl_portmap *pm, const job *j)
{
    pthread_mutex_lock(&pm->mu);
    pm->pending = *j;
    pthread_cond_signal(&pm->cv);
    pthread_mutex_unlock(&pm->mu);
    pm->state = ST_BUSY;
}

static void post_map(pl_portmap *pm)
{
    job j = {.kind = JOB_MAP, .protocols = pm->protocols, .external_port = pm->want_port};
    post_job(pm, &j);
}

static void post_unmap(pl_portmap *pm)
{
    job j = {.kind = JOB_UNMAP};
    post_job(pm, &j);
}

static void report(pl_portmap *pm, pl_portmap_event ev, pl_portmap_err err)
{
    pm->status.event = ev;
    pm->status.err = err;
    if (pm->cb) pm->cb(pm->ctx, pm, &pm->status);
}

static void wait_retry(pl_portmap *pm)
{
    pm->state = ST_WAITING;
    if (pm->retry == PL_TIME_NEVER) pl_timer_cancel(pm->loop, &pm->timer);
    else pl_timer_set(pm->loop, &pm->timer, pl_loop_now(pm->loop) + pm->retry);
}

/* The next renewal: halfway through the lease; a permanent UPnP lease is
 * refreshed as often as a requested one would be, so that a router that
 * rebooted and forgot it gets it back. */
static void schedule_renewal(pl_portmap *pm, pl_time now)
{
    pm->state = ST_HELD;
    pl_time half = pm->status.lifetime ? (pl_time)pm->status.lifetime * PL_SEC / 2 : (pl_time)pm->lifetime * PL_SEC / 2;
    if (half < MIN_RENEW_GAP) half = MIN_RENEW_GAP;
    pl_timer_set(pm->loop, &pm->timer, now + half);
}

static void on_result(pl_portmap *pm, const result *res)
{
    pl_time now = pl_loop_now(pm->loop);
    if (res->kind == JOB_UNMAP) {
        pm->state = ST_RELEASED;
        pm->status.code = res->code;
        pm->status.took = res->took;
        memcpy(pm->status.detail, res->detail, sizeof pm->status.detail);
        report(pm, PL_PORTMAP_EV_RELEASED, res->err);
        return;
    }
    bool renewal = res->kind == JOB_RENEW;
    if (pm->release_wanted) {
        /* Released while this was under way: undo it, if it made anything. */
        post_unmap(pm);
        return;
    }
    pm->status.code = res->code;
    pm->status.took = res->took;
    memcpy(pm->status.detail, res->detail, sizeof pm->status.detail);
    if (res->err == PL_PORTMAP_OK) {
        bool changed = !renewal || !pl_addr_equal(&res->external, &pm->status.external);
        pm->status.protocol = res->protocol;
        pm->status.external = res->external;
        pm->status.external_private = private_ipv4(res->external.ip);
        pm->status.lifetime = res->lifetime;
        pm->status.expires = res->lifetime ? now + (pl_time)res->lifetime * PL_SEC : PL_TIME_NEVER;
        schedule_renewal(pm, now);
        report(pm, changed ? PL_PORTMAP_EV_MAPPED : PL_PORTMAP_EV_RENEWED, PL_PORTMAP_OK);
        return;
    }
    if (!renewal) {
        memset(&pm->status.external, 0, sizeof pm->status.external);
        pm->status.protocol = res->protocol;
        pm->status.lifetime = 0;
        pm->status.expires = 0;
        wait_retry(pm);
        report(pm, PL_PORTMAP_EV_FAILED, res->err);
        return;
    }
    /* A renewal failed: the lease still runs. Try again at half the time
     * left, until it is gone. */
    pm->state = ST_HELD;
    pl_time expires = pm->status.expires;
    if (expires == PL_TIME_NEVER) expires = now + (pl_time)pm->lifetime * PL_SEC;
    pl_time next = now + (expires > now ? (expires - now) / 2 : 0);
    if (next < now + MIN_RENEW_GAP) next = now + MIN_RENEW_GAP;
    if (next >= expires) next = expires;
    pl_timer_set(pm->loop, &pm->timer, next);
}

static void on_timer(pl_loop *loop, void *ctx)
{
    pl_portmap *pm = ctx;
    pl_time now = pl_loop_now(loop);
    if (pm->state == ST_WAITING) {
        post_map(pm);
        return;
    }
    if (pm->state != ST_HELD) return;
    if (pm->status.expires != PL_TIME_NEVER && now >= pm->status.expires) {
        /* Renewals failed until the end: whatever the router says later,
         * the candidate is gone. The router has dropped the mapping too, so
         * nothing is left to remove. */
        snprintf(pm->status.detail, sizeof pm->status.detail, "the %u s lease ran out",
                 (unsigned)pm->status.lifetime);
        wait_retry(pm);
        report(pm, PL_PORTMAP_EV_LOST, PL_PORTMAP_ERR_EXPIRED);
        return;
    }
    job j = {.kind = JOB_RENEW, .protocol = pm->status.protocol, .external_port = pm->status.external.port};
    post_job(pm, &j);
}

static void on_pipe(pl_loop *loop, int fd, unsigned events, void *ctx)
{
    (void)loop;
    (void)events;
    pl_portmap *pm = ctx;
    uint8_t buf[64];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    pthread_mutex_lock(&pm->mu);
    bool ready = pm->done_ready;
    result res = pm->done;
    pm->done_ready = false;
    pthread_mutex_unlock(&pm->mu);
    if (ready) on_result(pm, &res);
}

pl_portmap *pl_portmap_new(pl_loop *loop, const pl_portmap_config *cfg, pl_portmap_cb cb, void *ctx,
                           pl_portmap_err *err)
{
    pl_portmap_err dummy;
    if (!err) err = &dummy;
    if (cfg->internal.family != PL_AF_INET4 || cfg->internal.port == 0 ||
        (cfg->protocols & ~(unsigned)(PL_PORTMAP_NATPMP | PL_PORTMAP_UPNP)) || cfg->lifetime > MAX_LIFETIME ||
        cfg->timeout > MAX_TIMEOUT) {
        *err = PL_PORTMAP_ERR_CONFIG;
        return NULL;
    }
    pl_portmap *pm = calloc(1, sizeof *pm);
    if (!pm) {
        *err = PL_PORTMAP_ERR_SYSTEM;
        return NULL;
    }
    pm->loop = loop;
    pm->cb = cb;
    pm->ctx = ctx;
    memcpy(pm->internal_ip, cfg->internal.ip, 4);
    pm->internal_port = cfg->internal.port;
    pm->protocols = cfg->protocols ? cfg->protocols : (PL_PORTMAP_NATPMP | PL_PORTMAP_UPNP);
    pm->want_port = cfg->external_port ? cfg->external_port : cfg->internal.port;
    pm->exact_port = cfg->exact_port;
    pm->lifetime = cfg->lifetime ? cfg->lifetime : DEFAULT_LIFETIME;
    pm->timeout = cfg->timeout ? cfg->timeout : DEFAULT_TIMEOUT;
    pm->retry = cfg->retry ? cfg->retry : DEFAULT_RETRY;
    snprintf(pm->description, sizeof pm->description, "%s", cfg->description ? cfg->description : "Parley");
    pl_timer_init(&pm->timer, on_timer, pm);
    pm->pipe_rd = pm->pipe_wr = -1;
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) goto fail;
    pm->pipe_rd = fds[0];
    pm->pipe_wr = fds[1];
    if (pl_loop_watch_fd(loop, pm->pipe_rd, PL_FD_READ, on_pipe, pm) != PL_LOOP_OK) goto fail;
    pm->watching = true;
    if (pthread_mutex_init(&pm->mu, NULL) != 0) goto fail;
    if (pthread_cond_init(&pm->cv, NULL) != 0) {
        pthread_mutex_destroy(&pm->mu);
        goto fail;
    }
    if (pthread_create(&pm->thread, NULL, worker_main, pm) != 0) {
        pthread_cond_destroy(&pm->cv);
        pthread_mutex_destroy(&pm->mu);
        goto fail;
    }
    pm->thread_started = true;
    post_map(pm);
    *err = PL_PORTMAP_OK;
    return pm;
fail:
    if (pm->watching) pl_loop_unwatch_fd(loop, pm->pipe_rd);
    if (pm->pipe_rd >= 0) close(pm->pipe_rd);
    if (pm->pipe_wr >= 0) close(pm->pipe_wr);
    free(pm);
    *err = PL_PORTMAP_ERR_SYSTEM;
    return NULL;
}

void pl_portmap_release(pl_portmap *pm)
{
    if (!pm || pm->release_wanted) return;
    pm->release_wanted = true;
    pl_timer_cancel(pm->loop, &pm->timer);
    /* Under way: the result's handler undoes it. Otherwise the worker
     * removes what it holds, if anything, and says so. */
    if (pm->state != ST_BUSY) post_unmap(pm);
}

const pl_portmap_status *pl_portmap_status_get(const pl_portmap *pm) { return &pm->status; }

void pl_portmap_free(pl_portmap *pm)
{
    if (!pm) return;
    pl_timer_cancel(pm->loop, &pm->timer);
    if (pm->thread_started) {
        pthread_mutex_lock(&pm->mu);
        pm->quit = true;
        pthread_cond_signal(&pm->cv);
        pthread_mutex_unlock(&pm->mu);
        pthread_join(pm->thread, NULL);
        pthread_cond_destroy(&pm->cv);
        pthread_mutex_destroy(&pm->mu);
    }
    if (pm->watching) pl_loop_unwatch_fd(pm->loop, pm->pipe_rd);
    close(pm->pipe_rd);
    close(pm->pipe_wr);
    free(pm);
}
