/*
 * reach.c - how a node reaches out and is reached: a port mapping at the
 * home router (src/io/portmap.h: NAT-PMP or UPnP IGD) and an outgoing proxy
 * (src/core/proxy.h: HTTP CONNECT or SOCKS5) for its TCP streams.
 *
 * Port mapping (on by default for a node; --no-portmap turns it off): the
 * home router is asked to forward a public UDP port to the node's socket.
 * Its external address and port is the port-mapped candidate: the node
 * publishes it in its record and offers it in its calls, and a caller whose
 * own NAT could not punch through ours (a symmetric NAT against a filtering
 * one) reaches us directly there. A router whose external address is
 * private is itself behind another NAT: its mapping reaches no further than
 * that NAT, so it is not published. On a clean stop the mapping is removed.
 *
 * Proxy (--proxy URL): every TCP stream the node opens (to its supernodes:
 * attaching, keepalives, the directory, first contact; to relays for calls)
 * goes through the proxy. UDP is still tried first, unless --proxy-only: in
 * a network where only the proxy gets out, each UDP attempt fails within
 * 2 s and the node falls back to TCP through the proxy; its calls are then
 * relayed over TCP (the tunnel) by the supernodes. docs/nat.md, section 7.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sodium.h>
#include <string.h>

#include "daemon.h"
#include "portmap.h"
#include "proxy.h"

/* How long a clean stop waits for the router to remove the mapping. */
#define RELEASE_WAIT (3 * PL_SEC)

struct pd_reach {
    /* port mapping */
    pl_portmap *pm;
    const char *pm_off;        /* why there is no mapping attempt (NULL: there is one) */
    pl_portmap_status st;      /* the last event */
    bool have_st;
    bool published;            /* the mapping is in our record */
    bool released;
    pl_time asked_at;
    /* proxy */
    bool have_proxy;
    pl_proxy_config proxy;
    char proxy_text[PL_PROXY_URL_TEXT_MAX];
    uint64_t proxy_streams;    /* streams opened through it */
    uint64_t proxy_failures;   /* of them, ended before the tunnel opened */
    pl_proxy_err last_err;
    int last_code;
    pl_addr last_target;
    pl_time last_err_at;
};

/* ---- options ----------------------------------------------------------------------------- */

int pd_reach_option(pd_reach_options *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (strcmp(a, "--no-portmap") == 0) {
        o->no_portmap = true;
        return 1;
    }
    if (strcmp(a, "--proxy-only") == 0) {
        o->proxy_only = true;
        return 1;
    }
    if (strcmp(a, "--proxy") != 0) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s: %s needs a value\n", PROG, a);
        return -1;
    }
    char *url = argv[++*i];
    pl_proxy_config check;
    pl_proxy_err e = pl_proxy_parse_url(&check, url);
    pl_proxy_config_wipe(&check);
    if (e) {
        fprintf(stderr, "%s: --proxy wants http://[USER[:PASS]@]IP:PORT or socks5://[USER[:PASS]@]IP:PORT\n", PROG);
        return -1;
    }
    /* Keep the URL (it may hold a password) for the daemon only: a copy is
     * taken, and the command line that `ps` shows is blanked. */
    o->proxy = strdup(url);
    if (!o->proxy) return -1;
    memset(url, 'x', strlen(url));
    return 1;
}

/* ---- port mapping -------------------------------------------------------------------------- */

/* Whether a node bound here may sit behind a home router: a wildcard or a
 * private IPv4 address (a loopback or public one has no router to ask). */
static bool behind_a_router(const pl_addr *a)
{
    if (a->family != PL_AF_INET4) return false;
    const uint8_t *ip = a->ip;
    if (!ip[0] && !ip[1] && !ip[2] && !ip[3]) return true;
    return ip[0] == 10 || (ip[0] == 172 && (ip[1] & 0xf0) == 16) || (ip[0] == 192 && ip[1] == 168) ||
           (ip[0] == 100 && (ip[1] & 0xc0) == 64);
}

static void publish_mapping(parleyd *d, const pl_addr *external)
{
    pl_node *node = pl_stack_node(d->stack);
    if (!node) return;
    pl_node_set_mapped(node, external, pl_loop_now(d->loop));
    d->reach->published = external != NULL;
    pd_rearm(d);
}

static void on_portmap(void *ctx, pl_portmap *pm, const pl_portmap_status *st)
{
    (void)pm;
    parleyd *d = ctx;
    struct pd_reach *r = d->reach;
    r->st = *st;
    r->have_st = true;
    char ext[PL_ADDR_TEXT_MAX];
    pl_addr_format(&st->external, ext, sizeof ext);
    const char *proto = pl_portmap_protocol_name(st->protocol);
    switch (st->event) {
    case PL_PORTMAP_EV_MAPPED:
        if (st->external_private) {
            pd_log(d, "port mapping: %s maps %s to us, but that address is private (the router is behind another "
                      "NAT): not published", proto, ext);
            publish_mapping(d, NULL);
        } else {
            pd_log(d, "port mapping: %s maps %s to our UDP port %u, lease %u s (%.0f ms); published as a port-mapped "
                      "candidate", proto, ext, d->local.port, st->lifetime, (double)st->took / PL_MSEC);
            publish_mapping(d, &st->external);
        }
        break;
    case PL_PORTMAP_EV_RENEWED: pd_log(d, "port mapping: %s lease of %s renewed (%u s)", proto, ext, st->lifetime); break;
    case PL_PORTMAP_EV_FAILED:
    case PL_PORTMAP_EV_LOST:
        pd_log(d, "port mapping: %s: %s%s%s%s", st->event == PL_PORTMAP_EV_LOST ? "lost" : "none",
               pl_portmap_strerror(st->err), st->detail[0] ? " (" : "", st->detail, st->detail[0] ? ")" : "");
        if (r->published) publish_mapping(d, NULL);
        break;
    case PL_PORTMAP_EV_RELEASED:
        r->released = true;
        pd_log(d, "port mapping: released (%s, %.0f ms)", st->err ? pl_portmap_strerror(st->err) : "ok",
               (double)st->took / PL_MSEC);
        break;
    }
}

static void start_portmap(parleyd *d)
{
    struct pd_reach *r = d->reach;
    if (d->opt.reach.no_portmap) r->pm_off = "--no-portmap";
    else if (d->opt.phone.privacy) r->pm_off = "privacy mode publishes no address";
    else if (d->opt.no_udp) r->pm_off = "no UDP";
    else if (!d->udp) r->pm_off = "no UDP socket";
    else if (!behind_a_router(&d->local)) r->pm_off = "not bound to a private or wildcard IPv4 address";
    if (r->pm_off) return;
    pl_portmap_config cfg = {.internal = d->local};
    pl_portmap_err err;
    r->asked_at = pl_loop_now(d->loop);
    r->pm = pl_portmap_new(d->loop, &cfg, on_portmap, d, &err);
    if (!r->pm) {
        r->pm_off = "cannot start";
        pd_log(d, "port mapping: cannot start: %s", pl_portmap_strerror(err));
        return;
    }
    pd_log(d, "port mapping: asking the home router (NAT-PMP, then UPnP IGD) to forward UDP port %u", d->local.port);
}

/* ---- set-up and shut-down ------------------------------------------------------------------ */

int pd_reach_configure(parleyd *d, pl_stack_config *cfg)
{
    d->reach = calloc(1, sizeof *d->reach);
    if (!d->reach) return pd_die("out of memory");
    struct pd_reach *r = d->reach;
    const char *url = d->opt.reach.proxy;
    if (url && d->role != PL_ROLE_NODE) return pd_die("--proxy is for a node (a supernode must be reachable itself)");
    /* The environment's proxy is a node's only; a supernode started with
     * it set ignores it. */
    if (!url && d->role == PL_ROLE_NODE) url = getenv("PARLEY_PROXY");
    if (d->opt.reach.proxy_only && !url) return pd_die("--proxy-only needs --proxy URL (or PARLEY_PROXY)");
    if (!url) return 0;
    if (pl_proxy_parse_url(&r->proxy, url) != PL_PROXY_OK)
        return pd_die("the proxy URL wants http://[USER[:PASS]@]IP:PORT or socks5://[USER[:PASS]@]IP:PORT");
    r->have_proxy = true;
    pl_proxy_format_url(&r->proxy, r->proxy_text, sizeof r->proxy_text);
    if (d->opt.no_tcp) return pd_die("--proxy and --no-tcp leave the proxy unused");
    if (d->opt.reach.proxy_only) {
        /* Everything over TCP through the proxy: no UDP attempt at all. */
        d->opt.no_udp = true;
        cfg->no_udp = true;
    }
    return 0;
}

int pd_reach_open(parleyd *d)
{
    if (d->role != PL_ROLE_NODE) return 0;
    struct pd_reach *r = d->reach;
    if (r->have_proxy)
        pd_log(d, "proxy: TCP to supernodes and relays goes through %s%s", r->proxy_text,
               d->opt.reach.proxy_only ? " (no UDP)" : " (UDP is tried first)");
    start_portmap(d);
    return 0;
}

void pd_reach_close(parleyd *d)
{
    struct pd_reach *r = d->reach;
    if (!r) return;
    if (r->pm) {
        /* Remove the mapping before leaving: the loop runs (nothing else
         * ticks: the stack has stopped) until the router confirms, for a
         * few seconds at most. */
        pl_timer_cancel(d->loop, &d->timer);
        pl_portmap_release(r->pm);
        pl_time deadline = pl_loop_now(d->loop) + RELEASE_WAIT;
        while (!r->released && pl_loop_now(d->loop) < deadline)
            pl_loop_run_once(d->loop, (int)((deadline - pl_loop_now(d->loop)) / PL_MSEC) + 1);
        if (!r->released) pd_log(d, "port mapping: the router did not confirm the removal in time");
        pl_portmap_free(r->pm);
    }
    pl_proxy_config_wipe(&r->proxy);
    free(r);
    d->reach = NULL;
    if (d->opt.reach.proxy) {
        sodium_memzero((char *)d->opt.reach.proxy, strlen(d->opt.reach.proxy));
        free((char *)d->opt.reach.proxy);
        d->opt.reach.proxy = NULL;
    }
}

/* ---- streams ------------------------------------------------------------------------------- */

pl_stream *pd_reach_connect(parleyd *d, const pl_addr *to, const pl_addr *from, pl_loop_err *err)
{
    struct pd_reach *r = d->reach;
    char text[PL_ADDR_TEXT_MAX];
    pl_addr_format(to, text, sizeof text);
    if (!r || !r->have_proxy) {
        pl_stream *s = pl_stream_connect_from(d->loop, to, from, err);
        if (s) pd_log(d, "connecting over TCP to %s", text);
        return s;
    }
    pl_stream *s = pl_stream_connect_via_proxy(d->loop, &r->proxy, to, from, err);
    if (s) {
        r->proxy_streams++;
        pd_log(d, "connecting over TCP to %s through the proxy %s", text, r->proxy_text);
    }
    return s;
}

static const char *proxy_err_kind(pl_proxy_err e)
{
    switch (e) {
    case PL_PROXY_OK: return "ok";
    case PL_PROXY_ERR_CONFIG: return "config";
    case PL_PROXY_ERR_REFUSED: return "refused";
    case PL_PROXY_ERR_AUTH_REQUIRED: return "auth_required";
    case PL_PROXY_ERR_AUTH_FAILED: return "auth_failed";
    case PL_PROXY_ERR_TARGET: return "target_unreachable";
    case PL_PROXY_ERR_UNSUPPORTED: return "unsupported";
    case PL_PROXY_ERR_FAILED: return "failed";
    case PL_PROXY_ERR_BAD_REPLY: return "bad_reply";
    case PL_PROXY_ERR_CLOSED: return "closed";
    case PL_PROXY_ERR_TIMEOUT: return "timeout";
    case PL_PROXY_ERR_CONNECT: return "no_proxy";
    }
    return "unknown";
}

/* "the proxy rejected the credentials (HTTP 407)" */
static const char *proxy_err_text(const struct pd_reach *r, pl_proxy_err e, int code, char *buf, size_t cap)
{
    if (code >= 0 && r->proxy.kind == PL_PROXY_HTTP)
        snprintf(buf, cap, "%s (HTTP %d)", pl_proxy_strerror(e), code);
    else if (code >= 0)
        snprintf(buf, cap, "%s (SOCKS5 code %d)", pl_proxy_strerror(e), code);
    else
        snprintf(buf, cap, "%s", pl_proxy_strerror(e));
    return buf;
}

void pd_reach_stream_failed(parleyd *d, pl_stream *s, const pl_addr *to, int err)
{
    struct pd_reach *r = d->reach;
    char text[PL_ADDR_TEXT_MAX], why[160];
    pl_addr_format(to, text, sizeof text);
    pl_proxy_err pe = pl_stream_proxy_error(s);
    if (!r || !r->have_proxy || pe == PL_PROXY_OK) {
        pd_log(d, "TCP to %s failed: %s", text, strerror(err));
        return;
    }
    r->proxy_failures++;
    r->last_err = pe;
    r->last_code = pl_stream_proxy_reply_code(s);
    r->last_target = *to;
    r->last_err_at = pl_loop_now(d->loop);
    pd_log(d, "TCP to %s through the proxy %s failed: %s", text, r->proxy_text,
           proxy_err_text(r, pe, r->last_code, why, sizeof why));
}

/* ---- what status and calls show ---------------------------------------------------------------- */

void pd_reach_status(parleyd *d, cJSON *status)
{
    struct pd_reach *r = d->reach;
    if (!r || d->role != PL_ROLE_NODE) return;
    pl_time now = pl_loop_now(d->loop);
    char addr[PL_ADDR_TEXT_MAX], why[160];
    cJSON *pm = cJSON_AddObjectToObject(status, "portmap");
    if (r->pm_off) {
        cJSON_AddStringToObject(pm, "state", "off");
        cJSON_AddStringToObject(pm, "reason", r->pm_off);
    } else if (!r->have_st) {
        cJSON_AddStringToObject(pm, "state", "asking");
        cJSON_AddNumberToObject(pm, "for_s", (double)(now - r->asked_at) / PL_SEC);
    } else {
        const pl_portmap_status *st = &r->st;
        bool held = st->event == PL_PORTMAP_EV_MAPPED || st->event == PL_PORTMAP_EV_RENEWED;
        cJSON_AddStringToObject(pm, "state", held ? (st->external_private ? "mapped, private" : "mapped")
                                             : st->event == PL_PORTMAP_EV_RELEASED ? "released"
                                             : st->event == PL_PORTMAP_EV_LOST    ? "lost"
                                                                                  : "failed");
        cJSON_AddStringToObject(pm, "protocol", pl_portmap_protocol_name(st->protocol));
        if (held) {
            cJSON_AddStringToObject(pm, "external", pl_addr_format(&st->external, addr, sizeof addr));
            cJSON_AddBoolToObject(pm, "published", r->published);
            cJSON_AddNumberToObject(pm, "lease_s", st->lifetime);
            if (st->expires != PL_TIME_NEVER)
                cJSON_AddNumberToObject(pm, "expires_in_s", (double)(st->expires - now) / PL_SEC);
            cJSON_AddNumberToObject(pm, "took_ms", (double)st->took / PL_MSEC);
        } else {
            cJSON_AddStringToObject(pm, "reason", pl_portmap_strerror(st->err));
            if (st->detail[0]) cJSON_AddStringToObject(pm, "detail", st->detail);
            if (st->code) cJSON_AddNumberToObject(pm, "code", st->code);
        }
    }
    if (!r->have_proxy) return;
    cJSON *px = cJSON_AddObjectToObject(status, "proxy");
    cJSON_AddStringToObject(px, "url", r->proxy_text);
    cJSON_AddBoolToObject(px, "only", d->opt.reach.proxy_only);
    pl_node_status ns = pl_node_get_status(pl_stack_node(d->stack));
    cJSON_AddBoolToObject(px, "in_use", ns.state == PL_NODE_ATTACHED && ns.tcp);
    cJSON_AddNumberToObject(px, "streams", (double)r->proxy_streams);
    cJSON_AddNumberToObject(px, "failures", (double)r->proxy_failures);
    if (r->last_err) {
        cJSON *e = cJSON_AddObjectToObject(px, "last_error");
        cJSON_AddStringToObject(e, "kind", proxy_err_kind(r->last_err));
        cJSON_AddStringToObject(e, "message", proxy_err_text(r, r->last_err, r->last_code, why, sizeof why));
        if (r->last_code >= 0) cJSON_AddNumberToObject(e, "code", r->last_code);
        cJSON_AddStringToObject(e, "target", pl_addr_format(&r->last_target, addr, sizeof addr));
        cJSON_AddNumberToObject(e, "ago_s", (double)(now - r->last_err_at) / PL_SEC);
    }
}

void pd_reach_path(parleyd *d, cJSON *path, const pl_path_info *p)
{
    struct pd_reach *r = d->reach;
    /* A node opens every TCP stream it uses through its proxy, so a path
     * over TCP is a path through the proxy. */
    if (!r || !r->have_proxy || p->kind != PL_PATH_RELAY_TCP) return;
    cJSON_AddStringToObject(path, "proxy", pl_proxy_kind_name(r->proxy.kind));
    cJSON_AddStringToObject(path, "proxy_url", r->proxy_text);
}
