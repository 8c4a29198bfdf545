/*
 * callsvc.c - a supernode's services for calls: the relay and the
 * rendezvous for first contact (callsvc.h).
 */
#include "callsvc.h"

#include <sodium.h>
#include <string.h>

#include "wire.h"

/* Per-client note budgets live in a fixed table indexed by a keyed hash of
 * the client's key: no allocation per client, and two clients that share a
 * bucket only share a budget (a stricter limit, never a looser one). */
#define BUCKETS 1024

typedef struct bucket {
    pl_time refilled;
    uint64_t credit; /* notes times PL_SEC, so refills need no division */
} bucket;

struct pl_callsvc {
    uint8_t self[32];
    const pl_mem *mem;
    pl_callsvc_io io;
    pl_relay *relay; /* NULL: relaying disabled */
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    bucket buckets[BUCKETS];
    pl_callsvc_stats stats;
    uint8_t out[PL_CALLSVC_NOTE_MAX];
};

/* ---- the NOTE codec ------------------------------------------------------------------ */

size_t pl_callsvc_encode_note(uint8_t *buf, size_t cap, const pl_callsvc_note *n)
{
    if (n->hop > 2 || n->body_len == 0 || n->body_len > PL_CALLSVC_NOTE_MAX_BODY || !n->body) return 0;
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_CALLSVC_MSG_NOTE);
    pl_write_u8(&w, PL_CALLSVC_NOTE_VERSION);
    pl_write_u8(&w, n->hop);
    pl_write_bytes(&w, n->to, 32);
    pl_write_bytes(&w, n->via, 32);
    pl_write_u16(&w, (uint16_t)n->body_len);
    pl_write_bytes(&w, n->body, n->body_len);
    return w.err ? 0 : w.off;
}

bool pl_callsvc_decode_note(pl_callsvc_note *n, const uint8_t *buf, size_t len)
{
    memset(n, 0, sizeof *n);
    pl_reader r = pl_reader_make(buf, len);
    if (pl_read_u8(&r) != PL_CALLSVC_MSG_NOTE || pl_read_u8(&r) != PL_CALLSVC_NOTE_VERSION) return false;
    n->hop = pl_read_u8(&r);
    pl_read_bytes(&r, n->to, 32);
    pl_read_bytes(&r, n->via, 32);
    n->body_len = pl_read_u16(&r);
    n->body = pl_read_ptr(&r, n->body_len);
    return pl_reader_done(&r) && n->hop <= 2 && n->body_len > 0 && n->body_len <= PL_CALLSVC_NOTE_MAX_BODY;
}

/* ---- the rendezvous ---------------------------------------------------------------------- */

static bool take_note_token(pl_callsvc *cs, const uint8_t pk[32], pl_time now)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, pk, 32, cs->hash_key);
    bucket *b = &cs->buckets[(h[0] | (uint32_t)h[1] << 8) % BUCKETS];
    const uint64_t full = (uint64_t)PL_CALLSVC_NOTE_BURST * PL_SEC;
    if (b->refilled == 0) {
        b->credit = full;
    } else if (now > b->refilled) {
        uint64_t elapsed = now - b->refilled;
        if (elapsed > 10 * PL_SEC) elapsed = 10 * PL_SEC; /* a full refill takes 2 s */
        b->credit += elapsed * PL_CALLSVC_NOTE_RATE;
        if (b->credit > full) b->credit = full;
    }
    b->refilled = now;
    if (b->credit < PL_SEC) return false;
    b->credit -= PL_SEC;
    return true;
}

static void pass_on(pl_callsvc *cs, pl_callsvc_note *n, uint8_t hop, const uint8_t to_pk[32], const pl_addr *addr,
                    pl_time now)
{
    n->hop = hop;
    size_t len = pl_callsvc_encode_note(cs->out, sizeof cs->out, n);
    if (len) cs->io.send(cs->io.ctx, to_pk, addr, cs->out, len, now);
}

static void on_note(pl_callsvc *cs, const uint8_t pk[32], bool attached, const uint8_t *msg, size_t len, pl_time now)
{
    pl_callsvc_note n;
    if (!pl_callsvc_decode_note(&n, msg, len)) {
        cs->stats.notes_malformed++;
        return;
    }
    bool for_here = memcmp(n.via, cs->self, 32) == 0;
    if (attached && n.hop == 0) {
        if (!take_note_token(cs, pk, now)) {
            cs->stats.notes_rate_limited++;
            return;
        }
        if (for_here) {
            if (!cs->io.attached(cs->io.ctx, n.to)) {
                cs->stats.notes_not_here++;
                return;
            }
            cs->stats.notes_delivered++;
            pass_on(cs, &n, 2, n.to, NULL, now);
            return;
        }
        pl_addr at;
        if (!cs->io.member || !cs->io.member(cs->io.ctx, n.via, &at)) {
            cs->stats.notes_unknown_via++;
            return;
        }
        cs->stats.notes_forwarded++;
        pass_on(cs, &n, 1, n.via, &at, now);
        return;
    }
    /* From another supernode: only for one of our clients. */
    if (n.hop != 1 || attached || !cs->io.member || !cs->io.member(cs->io.ctx, pk, NULL) || !for_here) {
        cs->stats.notes_refused++;
        return;
    }
    if (!cs->io.attached(cs->io.ctx, n.to)) {
        cs->stats.notes_not_here++;
        return;
    }
    cs->stats.notes_delivered++;
    pass_on(cs, &n, 2, n.to, NULL, now);
}

/* ---- the API ------------------------------------------------------------------------------ */

bool pl_callsvc_message(pl_callsvc *cs, const uint8_t pk[32], bool attached, const uint8_t *msg, size_t len,
                        pl_time now)
{
    if (len == 0 || !pl_callsvc_claims(msg[0])) return false;
    if (msg[0] == PL_CALLSVC_MSG_NOTE) {
        on_note(cs, pk, attached, msg, len, now);
        return true;
    }
    uint8_t out[128];
    size_t out_len = 0;
    if (cs->relay) {
        pl_relay_message(cs->relay, pk, attached, msg, len, now, out, sizeof out, &out_len);
    } else if (msg[0] == PL_OVL_RELAY_ALLOCATE) {
        pl_relay_allocate m;
        if (pl_relay_decode_allocate(&m, msg, len) != PL_RELAY_ERR_OK) return true;
        pl_relay_grant g = {.req = m.req, .status = PL_RELAY_DISABLED};
        cs->stats.relay_refused_disabled++;
        out_len = pl_relay_encode_grant(out, sizeof out, &g);
    }
    if (out_len) cs->io.send(cs->io.ctx, pk, NULL, out, out_len, now);
    return true;
}

bool pl_callsvc_datagram(pl_callsvc *cs, const pl_addr *from, uint8_t *pkt, size_t *len, pl_time now, pl_addr *to)
{
    if (!cs->relay) return false;
    return pl_relay_forward(cs->relay, from, pkt, len, now, to) == PL_RELAY_SEND;
}

void pl_callsvc_tick(pl_callsvc *cs, pl_time now)
{
    if (cs->relay) pl_relay_tick(cs->relay, now);
}

pl_time pl_callsvc_next_timeout(const pl_callsvc *cs)
{
    return cs->relay ? pl_relay_next_timeout(cs->relay) : PL_TIME_NEVER;
}

pl_callsvc_err pl_callsvc_new(pl_callsvc **out, const pl_callsvc_config *cfg, const pl_callsvc_io *io)
{
    *out = NULL;
    if (!cfg || !cfg->rng || !io || !io->send || !io->attached) return PL_CALLSVC_ERR_CONFIG;
    const pl_mem *mem = cfg->mem ? cfg->mem : pl_mem_system();
    pl_callsvc *cs = mem->calloc(mem->ctx, 1, sizeof *cs);
    if (!cs) return PL_CALLSVC_ERR_NOMEM;
    cs->mem = mem;
    cs->io = *io;
    memcpy(cs->self, cfg->self_pk, 32);
    cfg->rng->fill(cfg->rng->ctx, cs->hash_key, sizeof cs->hash_key);
    if (!cfg->no_relay) {
        pl_relay_config rc = cfg->relay;
        rc.rng = cfg->rng;
        rc.mem = mem;
        pl_relay_err e = pl_relay_new(&cs->relay, &rc);
        if (e) {
            mem->free(mem->ctx, cs);
            return e == PL_RELAY_ERR_NOMEM ? PL_CALLSVC_ERR_NOMEM : PL_CALLSVC_ERR_CONFIG;
        }
    }
    *out = cs;
    return PL_CALLSVC_OK;
}

void pl_callsvc_free(pl_callsvc *cs)
{
    if (!cs) return;
    const pl_mem *mem = cs->mem;
    pl_relay_free(cs->relay);
    sodium_memzero(cs, sizeof *cs);
    mem->free(mem->ctx, cs);
}

pl_relay *pl_callsvc_relay(pl_callsvc *cs) { return cs->relay; }
pl_callsvc_stats pl_callsvc_get_stats(const pl_callsvc *cs) { return cs->stats; }

const char *pl_callsvc_strerror(pl_callsvc_err err)
{
    switch (err) {
    case PL_CALLSVC_OK: return "ok";
    case PL_CALLSVC_ERR_CONFIG: return "bad call-services configuration";
    case PL_CALLSVC_ERR_NOMEM: return "out of memory";
    }
    return "unknown call-services error";
}
