/* natdisc.c - NAT behaviour discovery; see natdisc.h. */
#include "natdisc.h"

#include <string.h>

enum { TXN_IDLE = 0, TXN_PENDING, TXN_ANSWERED, TXN_TIMED_OUT, TXN_REFUSED };
enum { PHASE_IDLE = 0, PHASE_BINDING, PHASE_FILTERING, PHASE_MAPPING, PHASE_DONE };

#define DEFAULT_RTO (200 * PL_MSEC)
#define DEFAULT_TRIES 4

const char *pl_natdisc_strerror(pl_natdisc_err err)
{
    switch (err) {
    case PL_NATDISC_OK: return "ok";
    case PL_NATDISC_ERR_CONFIG: return "bad NAT discovery configuration";
    }
    return "unknown error";
}

const char *pl_nat_behaviour_name(uint8_t behaviour)
{
    switch (behaviour) {
    case PL_NAT_ENDPOINT_INDEPENDENT: return "endpoint-independent";
    case PL_NAT_ADDRESS_DEPENDENT: return "address-dependent";
    case PL_NAT_ADDRESS_AND_PORT_DEPENDENT: return "address-and-port-dependent";
    default: return "unknown";
    }
}

static bool is_ip(const pl_addr *a) { return a->family == PL_AF_INET4 || a->family == PL_AF_INET6; }

/* An address with a real IP (not 0.0.0.0 or ::). */
static bool is_specified(const pl_addr *a)
{
    if (!is_ip(a)) return false;
    size_t n = a->family == PL_AF_INET4 ? 4 : 16;
    for (size_t i = 0; i < n; i++)
        if (a->ip[i]) return true;
    return false;
}

pl_natdisc_err pl_natdisc_init(pl_natdisc *d, const pl_natdisc_config *cfg, const pl_natdisc_io *io)
{
    memset(d, 0, sizeof *d);
    if (!cfg || !io || !io->send || !cfg->rng || !cfg->rng->fill || !is_specified(&cfg->server) ||
        cfg->server.port == 0 || cfg->rto > 10 * PL_SEC || cfg->max_tries > 10)
        return PL_NATDISC_ERR_CONFIG;
    if (cfg->server2.family != PL_AF_NONE && (!is_specified(&cfg->server2) || cfg->server2.port == 0))
        return PL_NATDISC_ERR_CONFIG;
    d->cfg = *cfg;
    d->io = *io;
    if (d->cfg.rto == 0) d->cfg.rto = DEFAULT_RTO;
    if (d->cfg.max_tries == 0) d->cfg.max_tries = DEFAULT_TRIES;
    return PL_NATDISC_OK;
}

/* ---- transactions ----------------------------------------------------------------- */

static void transmit(pl_natdisc *d, pl_natdisc_txn *t, pl_time now)
{
    uint8_t buf[32];
    size_t len = pl_stun_binding_request(buf, sizeof buf, t->txid, t->change);
    if (len) {
        d->io.send(d->io.ctx, &t->to, buf, len);
        d->result.requests_sent++;
    }
    if (t->tries == 0) t->first_sent = now;
    t->tries++;
    /* Waits double: rto, 2 rto, 4 rto... and the last try waits its turn
     * too before the test counts as unanswered. */
    t->next = now + (d->cfg.rto << (t->tries - 1));
}

static void begin(pl_natdisc *d, int which, const pl_addr *to, uint32_t change, pl_time now)
{
    pl_natdisc_txn *t = &d->t[which];
    memset(t, 0, sizeof *t);
    t->state = TXN_PENDING;
    t->to = *to;
    t->change = change;
    d->cfg.rng->fill(d->cfg.rng->ctx, t->txid, sizeof t->txid);
    transmit(d, t, now);
}

/* The hairpin test runs beside the others and holds up only the end: a
 * NAT that does not hairpin would otherwise delay every later phase by a
 * full timeout. */
static bool phase_settled(const pl_natdisc *d)
{
    for (int i = 0; i < PL_NATDISC_TESTS; i++)
        if (d->t[i].state == TXN_PENDING && (i != PL_NATDISC_HAIRPIN || d->phase == PHASE_MAPPING)) return false;
    return true;
}

static bool answered(const pl_natdisc *d, int which) { return d->t[which].state == TXN_ANSWERED; }

static void finish(pl_natdisc *d)
{
    d->phase = PHASE_DONE;
    pl_natdisc_result *r = &d->result;
    r->nat_flags = r->udp_blocked ? PL_NAT_F_UDP_BLOCKED : 0;
    if (d->io.done) d->io.done(d->io.ctx, r);
}

/* ip_of's address with the given port. */
static pl_addr with_ip(const pl_addr *ip_of, uint16_t port)
{
    pl_addr a = *ip_of;
    a.port = port;
    return a;
}

static void start_filtering(pl_natdisc *d, pl_time now)
{
    d->phase = PHASE_FILTERING;
    pl_natdisc_result *r = &d->result;
    if (is_specified(&r->other)) {
        begin(d, PL_NATDISC_FILTER2, &d->cfg.server, PL_STUN_CHANGE_IP | PL_STUN_CHANGE_PORT, now);
        d->t[PL_NATDISC_FILTER2].expect_from = r->other;
        begin(d, PL_NATDISC_FILTER3, &d->cfg.server, PL_STUN_CHANGE_PORT, now);
        d->t[PL_NATDISC_FILTER3].expect_from = with_ip(&d->cfg.server, r->other.port);
    }
    if (!d->cfg.skip_hairpin) begin(d, PL_NATDISC_HAIRPIN, &r->mapped, 0, now);
}

static void start_mapping(pl_natdisc *d, pl_time now)
{
    d->phase = PHASE_MAPPING;
    pl_natdisc_result *r = &d->result;
    if (is_specified(&r->other)) {
        pl_addr alt_ip = with_ip(&r->other, d->cfg.server.port);
        begin(d, PL_NATDISC_MAP2, &alt_ip, 0, now);
        begin(d, PL_NATDISC_MAP3, &r->other, 0, now);
    } else if (is_ip(&d->cfg.server2)) {
        begin(d, PL_NATDISC_MAP2, &d->cfg.server2, 0, now);
    }
}

/* Moves to the next phase once every request of this one is settled. */
static void advance(pl_natdisc *d, pl_time now)
{
    pl_natdisc_result *r = &d->result;
    while (d->phase != PHASE_DONE && phase_settled(d)) {
        switch (d->phase) {
        case PHASE_BINDING:
            if (!answered(d, PL_NATDISC_T1)) {
                r->udp_blocked = !r->refused;
                finish(d);
                return;
            }
            start_filtering(d, now);
            break;
        case PHASE_FILTERING:
            /* A refused change request (the server cannot change after
             * all) leaves the filtering unknown, unless the other test
             * already proved it open. */
            if (!is_specified(&r->other)) r->filtering = PL_NAT_UNKNOWN;
            else if (answered(d, PL_NATDISC_FILTER2)) r->filtering = PL_NAT_ENDPOINT_INDEPENDENT;
            else if (d->t[PL_NATDISC_FILTER2].state == TXN_REFUSED) r->filtering = PL_NAT_UNKNOWN;
            else if (answered(d, PL_NATDISC_FILTER3)) r->filtering = PL_NAT_ADDRESS_DEPENDENT;
            else if (d->t[PL_NATDISC_FILTER3].state == TXN_REFUSED) r->filtering = PL_NAT_UNKNOWN;
            else r->filtering = PL_NAT_ADDRESS_AND_PORT_DEPENDENT;
            start_mapping(d, now);
            break;
        case PHASE_MAPPING: {
            if (d->t[PL_NATDISC_HAIRPIN].state != TXN_IDLE)
                r->hairpin = answered(d, PL_NATDISC_HAIRPIN) ? PL_NATDISC_HAIRPIN_YES : PL_NATDISC_HAIRPIN_NO;
            const pl_addr *m1 = &d->t[PL_NATDISC_T1].mapped;
            if (answered(d, PL_NATDISC_MAP2)) {
                const pl_addr *m2 = &d->t[PL_NATDISC_MAP2].mapped;
                if (pl_addr_equal(m1, m2)) r->mapping = PL_NAT_ENDPOINT_INDEPENDENT;
                else if (answered(d, PL_NATDISC_MAP3) && pl_addr_equal(m2, &d->t[PL_NATDISC_MAP3].mapped))
                    r->mapping = PL_NAT_ADDRESS_DEPENDENT;
                else r->mapping = PL_NAT_ADDRESS_AND_PORT_DEPENDENT;
            } else if (!r->behind_nat) {
                /* Nothing is translated: the mapping is the local address
                 * itself, whoever is asked. */
                r->mapping = PL_NAT_ENDPOINT_INDEPENDENT;
            }
            finish(d);
            return;
        }
        default: return;
        }
    }
}

void pl_natdisc_start(pl_natdisc *d, pl_time now)
{
    if (d->phase != PHASE_IDLE) return;
    d->phase = PHASE_BINDING;
    begin(d, PL_NATDISC_T1, &d->cfg.server, 0, now);
}

/* The answer's reflexive address: XOR-MAPPED-ADDRESS, or from an RFC 3489
 * server, MAPPED-ADDRESS. */
static bool answer_mapped(const pl_stun_msg *m, pl_addr *out)
{
    if (m->attrs & PL_STUN_HAS_XOR_MAPPED) *out = m->xor_mapped;
    else if (m->attrs & PL_STUN_HAS_MAPPED) *out = m->mapped;
    else return false;
    return true;
}

bool pl_natdisc_receive(pl_natdisc *d, const pl_addr *from, const uint8_t *data, size_t len, pl_time now)
{
    if (pl_stun_classify(data, len) != PL_STUN_KIND_STUN) return false;
    pl_stun_msg m;
    if (pl_stun_decode(&m, data, len) != PL_STUN_OK || m.method != PL_STUN_METHOD_BINDING) return false;
    int which = -1;
    for (int i = 0; i < PL_NATDISC_TESTS; i++)
        if (d->t[i].state != TXN_IDLE && memcmp(d->t[i].txid, m.txid, PL_STUN_TXID_SIZE) == 0) which = i;
    if (which < 0) return false;
    pl_natdisc_txn *t = &d->t[which];
    if (t->state != TXN_PENDING) return true; /* a late duplicate */

    if (which == PL_NATDISC_HAIRPIN) {
        /* Our own request, come back through the NAT's public address. */
        if (m.cls != PL_STUN_REQUEST) return true;
    } else {
        if (m.cls != PL_STUN_SUCCESS) {
            /* An error (420: the server cannot change its address) ends the
             * test without a verdict; the phase treats it as no answer. */
            if (m.cls == PL_STUN_ERROR) {
                t->state = TXN_REFUSED;
                if (which == PL_NATDISC_T1) d->result.refused = true;
            }
            advance(d, now);
            return true;
        }
        if (!answer_mapped(&m, &t->mapped)) return true;
        /* A changed answer proves something only if it really came from
         * the other address; a server that ignored CHANGE-REQUEST would
         * otherwise make every NAT look open. */
        if (is_ip(&t->expect_from) && !pl_addr_equal(from, &t->expect_from)) return true;
    }
    t->state = TXN_ANSWERED;

    if (which == PL_NATDISC_T1) {
        pl_natdisc_result *r = &d->result;
        r->mapped = t->mapped;
        if (m.attrs & PL_STUN_HAS_OTHER_ADDRESS) r->other = m.other_address;
        else if (m.attrs & PL_STUN_HAS_CHANGED_ADDRESS) r->other = m.changed_address;
        /* An alternate in another family, or equal to the primary in
         * address or port, cannot run the tests. */
        if (r->other.family != d->cfg.server.family || pl_addr_same_host(&r->other, &d->cfg.server) ||
            r->other.port == d->cfg.server.port)
            memset(&r->other, 0, sizeof r->other);
        r->behind_nat = !(is_specified(&d->cfg.local) && pl_addr_equal(&d->cfg.local, &r->mapped));
        if (t->tries == 1) r->rtt = now - t->first_sent;
    }
    advance(d, now);
    return true;
}

void pl_natdisc_tick(pl_natdisc *d, pl_time now)
{
    if (d->phase == PHASE_IDLE || d->phase == PHASE_DONE) return;
    for (int i = 0; i < PL_NATDISC_TESTS; i++) {
        pl_natdisc_txn *t = &d->t[i];
        if (t->state != TXN_PENDING || now < t->next) continue;
        if (t->tries >= d->cfg.max_tries) t->state = TXN_TIMED_OUT;
        else transmit(d, t, now);
    }
    advance(d, now);
}

pl_time pl_natdisc_next_timeout(const pl_natdisc *d)
{
    pl_time next = PL_TIME_NEVER;
    if (d->phase == PHASE_IDLE || d->phase == PHASE_DONE) return next;
    for (int i = 0; i < PL_NATDISC_TESTS; i++)
        if (d->t[i].state == TXN_PENDING && d->t[i].next < next) next = d->t[i].next;
    return next;
}

bool pl_natdisc_finished(const pl_natdisc *d) { return d->phase == PHASE_DONE; }

const pl_natdisc_result *pl_natdisc_get_result(const pl_natdisc *d) { return &d->result; }
