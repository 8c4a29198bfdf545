/* overlay.c - encoding and decoding of overlay messages (overlay.h). */
#include "overlay.h"

#include <string.h>

#include "record.h"
#include "wire.h"

void pl_ovl_proof_bytes(uint8_t out[PL_OVL_PROOF_SIZE], const uint8_t sn_pk[32], const uint8_t node_pk[32],
                        const uint8_t nonce[PL_OVL_NONCE_SIZE])
{
    memcpy(out, PL_OVL_PROOF_CONTEXT, 16);
    memcpy(out + 16, sn_pk, 32);
    memcpy(out + 48, node_pk, 32);
    memcpy(out + 80, nonce, PL_OVL_NONCE_SIZE);
}

/* Every decoder starts by checking the type byte and ends by checking that
 * exactly the whole message was read. */
static bool begin(pl_reader *r, const uint8_t *buf, size_t len, uint8_t type)
{
    *r = pl_reader_make(buf, len);
    return pl_read_u8(r) == type && !r->err;
}

static size_t finish(const pl_writer *w) { return w->err ? 0 : w->off; }

static void write_peers(pl_writer *w, const pl_ovl_peer *peers, uint8_t n)
{
    pl_write_u8(w, n);
    for (uint8_t i = 0; i < n; i++) {
        pl_write_bytes(w, peers[i].pk, 32);
        pl_write_addr(w, &peers[i].addr);
    }
}

static void read_peers(pl_reader *r, pl_ovl_peer *peers, uint8_t *n, uint8_t max)
{
    *n = pl_read_u8(r);
    if (*n > max) {
        r->err = true;
        return;
    }
    for (uint8_t i = 0; i < *n; i++) {
        pl_read_bytes(r, peers[i].pk, 32);
        pl_read_addr(r, &peers[i].addr);
    }
}

/* ---- attach --------------------------------------------------------------------------- */

size_t pl_ovl_encode_attach(uint8_t *buf, size_t cap, const pl_ovl_attach *m)
{
    if (m->flags & ~PL_OVL_ATTACH_F_ALL) return 0;
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_OVL_ATTACH);
    pl_write_u8(&w, m->version);
    pl_write_u8(&w, m->flags);
    pl_write_u32(&w, m->capabilities);
    pl_write_u32(&w, m->uptime_s);
    pl_write_u32(&w, m->up_kbps);
    pl_write_u32(&w, m->down_kbps);
    pl_write_u32(&w, m->memory_mb);
    return finish(&w);
}

pl_ovl_err pl_ovl_decode_attach(pl_ovl_attach *m, const uint8_t *buf, size_t len)
{
    pl_reader r;
    if (!begin(&r, buf, len, PL_OVL_ATTACH)) return PL_OVL_ERR_MALFORMED;
    m->version = pl_read_u8(&r);
    m->flags = pl_read_u8(&r);
    m->capabilities = pl_read_u32(&r);
    m->uptime_s = pl_read_u32(&r);
    m->up_kbps = pl_read_u32(&r);
    m->down_kbps = pl_read_u32(&r);
    m->memory_mb = pl_read_u32(&r);
    if (!pl_reader_done(&r) || (m->flags & ~PL_OVL_ATTACH_F_ALL)) return PL_OVL_ERR_MALFORMED;
    /* An unknown version is answered (with a refusal), not dropped. */
    return PL_OVL_OK;
}

size_t pl_ovl_encode_challenge(uint8_t *buf, size_t cap, const uint8_t nonce[PL_OVL_NONCE_SIZE])
{
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_OVL_ATTACH_CHALLENGE);
    pl_write_bytes(&w, nonce, PL_OVL_NONCE_SIZE);
    return finish(&w);
}

pl_ovl_err pl_ovl_decode_challenge(uint8_t nonce[PL_OVL_NONCE_SIZE], const uint8_t *buf, size_t len)
{
    pl_reader r;
    if (!begin(&r, buf, len, PL_OVL_ATTACH_CHALLENGE)) return PL_OVL_ERR_MALFORMED;
    pl_read_bytes(&r, nonce, PL_OVL_NONCE_SIZE);
    return pl_reader_done(&r) ? PL_OVL_OK : PL_OVL_ERR_MALFORMED;
}

size_t pl_ovl_encode_proof(uint8_t *buf, size_t cap, const uint8_t sig[PL_OVL_SIG_SIZE])
{
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_OVL_ATTACH_PROOF);
    pl_write_bytes(&w, sig, PL_OVL_SIG_SIZE);
    return finish(&w);
}

pl_ovl_err pl_ovl_decode_proof(uint8_t sig[PL_OVL_SIG_SIZE], const uint8_t *buf, size_t len)
{
    pl_reader r;
    if (!begin(&r, buf, len, PL_OVL_ATTACH_PROOF)) return PL_OVL_ERR_MALFORMED;
    pl_read_bytes(&r, sig, PL_OVL_SIG_SIZE);
    return pl_reader_done(&r) ? PL_OVL_OK : PL_OVL_ERR_MALFORMED;
}

size_t pl_ovl_encode_attach_ok(uint8_t *buf, size_t cap, const pl_ovl_attach_ok *m)
{
    if (m->n_standby > 2 || m->n_hosts > PL_OVL_MAX_PEERS || m->keepalive_s == 0) return 0;
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_OVL_ATTACH_OK);
    pl_write_u16(&w, m->keepalive_s);
    pl_write_addr(&w, &m->observed);
    write_peers(&w, m->standby, m->n_standby);
    write_peers(&w, m->hosts, m->n_hosts);
    return finish(&w);
}

pl_ovl_err pl_ovl_decode_attach_ok(pl_ovl_attach_ok *m, const uint8_t *buf, size_t len)
{
    pl_reader r;
    if (!begin(&r, buf, len, PL_OVL_ATTACH_OK)) return PL_OVL_ERR_MALFORMED;
    m->keepalive_s = pl_read_u16(&r);
    pl_read_addr(&r, &m->observed);
    read_peers(&r, m->standby, &m->n_standby, 2);
    read_peers(&r, m->hosts, &m->n_hosts, PL_OVL_MAX_PEERS);
    if (!pl_reader_done(&r) || m->keepalive_s == 0) return PL_OVL_ERR_MALFORMED;
    return PL_OVL_OK;
}

size_t pl_ovl_encode_refused(uint8_t *buf, size_t cap, const pl_ovl_refused *m)
{
    if (m->reason == 0 || m->reason > PL_OVL_REFUSED_MAX || m->n_redirect > PL_OVL_MAX_PEERS) return 0;
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_OVL_ATTACH_REFUSED);
    pl_write_u8(&w, m->reason);
    pl_write_u16(&w, m->retry_after_s);
    write_peers(&w, m->redirect, m->n_redirect);
    return finish(&w);
}

pl_ovl_err pl_ovl_decode_refused(pl_ovl_refused *m, const uint8_t *buf, size_t len)
{
    pl_reader r;
    if (!begin(&r, buf, len, PL_OVL_ATTACH_REFUSED)) return PL_OVL_ERR_MALFORMED;
    m->reason = pl_read_u8(&r);
    m->retry_after_s = pl_read_u16(&r);
    read_peers(&r, m->redirect, &m->n_redirect, PL_OVL_MAX_PEERS);
    if (!pl_reader_done(&r) || m->reason == 0 || m->reason > PL_OVL_REFUSED_MAX) return PL_OVL_ERR_MALFORMED;
    return PL_OVL_OK;
}

/* ---- keepalives, detach, redirect ----------------------------------------------------------- */

size_t pl_ovl_encode_keepalive(uint8_t *buf, size_t cap, uint32_t seq)
{
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_OVL_KEEPALIVE);
    pl_write_u32(&w, seq);
    return finish(&w);
}

pl_ovl_err pl_ovl_decode_keepalive(uint32_t *seq, const uint8_t *buf, size_t len)
{
    pl_reader r;
    if (!begin(&r, buf, len, PL_OVL_KEEPALIVE)) return PL_OVL_ERR_MALFORMED;
    *seq = pl_read_u32(&r);
    return pl_reader_done(&r) ? PL_OVL_OK : PL_OVL_ERR_MALFORMED;
}

size_t pl_ovl_encode_keepalive_ack(uint8_t *buf, size_t cap, uint32_t seq, const pl_addr *observed)
{
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_OVL_KEEPALIVE_ACK);
    pl_write_u32(&w, seq);
    if (observed) pl_write_addr(&w, observed);
    return finish(&w);
}

pl_ovl_err pl_ovl_decode_keepalive_ack(uint32_t *seq, pl_addr *observed, const uint8_t *buf, size_t len)
{
    pl_reader r;
    if (!begin(&r, buf, len, PL_OVL_KEEPALIVE_ACK)) return PL_OVL_ERR_MALFORMED;
    *seq = pl_read_u32(&r);
    memset(observed, 0, sizeof *observed);
    if (pl_reader_left(&r)) pl_read_addr(&r, observed);
    return pl_reader_done(&r) ? PL_OVL_OK : PL_OVL_ERR_MALFORMED;
}

size_t pl_ovl_encode_detach(uint8_t *buf, size_t cap)
{
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_OVL_DETACH);
    return finish(&w);
}

pl_ovl_err pl_ovl_decode_detach(const uint8_t *buf, size_t len)
{
    pl_reader r;
    if (!begin(&r, buf, len, PL_OVL_DETACH)) return PL_OVL_ERR_MALFORMED;
    return pl_reader_done(&r) ? PL_OVL_OK : PL_OVL_ERR_MALFORMED;
}

size_t pl_ovl_encode_redirect(uint8_t *buf, size_t cap, const pl_ovl_redirect *m)
{
    if (m->n == 0 || m->n > PL_OVL_MAX_PEERS) return 0;
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_OVL_REDIRECT);
    write_peers(&w, m->to, m->n);
    return finish(&w);
}

pl_ovl_err pl_ovl_decode_redirect(pl_ovl_redirect *m, const uint8_t *buf, size_t len)
{
    pl_reader r;
    if (!begin(&r, buf, len, PL_OVL_REDIRECT)) return PL_OVL_ERR_MALFORMED;
    read_peers(&r, m->to, &m->n, PL_OVL_MAX_PEERS);
    if (!pl_reader_done(&r) || m->n == 0) return PL_OVL_ERR_MALFORMED;
    return PL_OVL_OK;
}

/* ---- the directory and presence ---------------------------------------------------------- */

static void write_name(pl_writer *w, const char *name)
{
    size_t n = strlen(name);
    char norm[PL_NAME_MAX + 1];
    if (pl_name_normalize(name, norm) != PL_NAME_OK || strcmp(norm, name) != 0) {
        w->err = true;
        return;
    }
    pl_write_u8(w, (uint8_t)n);
    pl_write_bytes(w, name, n);
}

static void read_name(pl_reader *r, char out[PL_NAME_MAX + 1])
{
    uint8_t n = pl_read_u8(r);
    out[0] = 0;
    if (n > PL_NAME_MAX) {
        r->err = true;
        return;
    }
    pl_read_bytes(r, out, n);
    out[n] = 0;
    char norm[PL_NAME_MAX + 1];
    if (r->err || memchr(out, 0, n) || pl_name_normalize(out, norm) != PL_NAME_OK || strcmp(norm, out) != 0)
        r->err = true;
}

/* What follows the type byte, per type: a bit set per field. */
enum { F_REQ = 1, F_STATUS = 2, F_FLAGS = 4, F_INDEX = 8, F_COUNT = 16, F_SEQ = 32, F_NAME = 64, F_RECORD = 128,
       F_RECORD_REQUIRED = 256 };

static unsigned dir_layout(uint8_t type)
{
    switch (type) {
    case PL_OVL_PUBLISH: return F_REQ | F_RECORD | F_RECORD_REQUIRED;
    case PL_OVL_PUBLISH_ACK: return F_REQ | F_STATUS | F_COUNT;
    case PL_OVL_STORE: return F_REQ | F_FLAGS | F_RECORD | F_RECORD_REQUIRED;
    case PL_OVL_STORE_ACK: return F_REQ | F_STATUS;
    case PL_OVL_LOOKUP: return F_REQ | F_INDEX | F_NAME;
    case PL_OVL_LOOKUP_REPLY: return F_REQ | F_STATUS | F_FLAGS | F_INDEX | F_COUNT | F_RECORD;
    case PL_OVL_FETCH: return F_REQ | F_NAME;
    case PL_OVL_FETCH_REPLY: return F_REQ | F_STATUS | F_FLAGS | F_RECORD;
    case PL_OVL_PRESENCE: return F_FLAGS | F_NAME | F_RECORD;
    case PL_OVL_WATCH:
    case PL_OVL_UNWATCH: return F_NAME;
    case PL_OVL_NOTIFY: return F_FLAGS | F_NAME | F_RECORD;
    case PL_OVL_OFFLINE: return F_SEQ | F_NAME;
    default: return 0;
    }
}

size_t pl_ovl_encode_dir(uint8_t *buf, size_t cap, const pl_ovl_dir *m)
{
    unsigned f = dir_layout(m->type);
    if (!f || ((f & F_STATUS) && m->status > PL_DIR_STATUS_MAX) || ((f & F_FLAGS) && (m->flags & ~PL_DIR_F_ALL)) ||
        ((f & F_RECORD_REQUIRED) && m->record_len == 0) || (!(f & F_RECORD) && m->record_len))
        return 0;
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, m->type);
    if (f & F_REQ) pl_write_u32(&w, m->req);
    if (f & F_STATUS) pl_write_u8(&w, m->status);
    if (f & F_FLAGS) pl_write_u8(&w, m->flags);
    if (f & F_INDEX) pl_write_u8(&w, m->index);
    if (f & F_COUNT) pl_write_u8(&w, m->count);
    if (f & F_SEQ) pl_write_u64(&w, m->seq);
    if (f & F_NAME) write_name(&w, m->name);
    if ((f & F_RECORD) && m->record_len) pl_write_bytes(&w, m->record, m->record_len);
    return finish(&w);
}

pl_ovl_err pl_ovl_decode_dir(pl_ovl_dir *m, const uint8_t *buf, size_t len)
{
    memset(m, 0, sizeof *m);
    if (len == 0) return PL_OVL_ERR_MALFORMED;
    unsigned f = dir_layout(buf[0]);
    if (!f) return PL_OVL_ERR_MALFORMED;
    pl_reader r = pl_reader_make(buf, len);
    m->type = pl_read_u8(&r);
    if (f & F_REQ) m->req = pl_read_u32(&r);
    if (f & F_STATUS) m->status = pl_read_u8(&r);
    if (f & F_FLAGS) m->flags = pl_read_u8(&r);
    if (f & F_INDEX) m->index = pl_read_u8(&r);
    if (f & F_COUNT) m->count = pl_read_u8(&r);
    if (f & F_SEQ) m->seq = pl_read_u64(&r);
    if (f & F_NAME) read_name(&r, m->name);
    if (r.err) return PL_OVL_ERR_MALFORMED;
    if (f & F_RECORD) {
        m->record_len = pl_reader_left(&r);
        if (m->record_len > PL_RECORD_MAX_SIZE) return PL_OVL_ERR_MALFORMED;
        m->record = m->record_len ? pl_read_ptr(&r, m->record_len) : NULL;
    }
    if (!pl_reader_done(&r) || ((f & F_STATUS) && m->status > PL_DIR_STATUS_MAX) ||
        ((f & F_FLAGS) && (m->flags & ~PL_DIR_F_ALL)) || ((f & F_RECORD_REQUIRED) && m->record_len == 0))
        return PL_OVL_ERR_MALFORMED;
    return PL_OVL_OK;
}

size_t pl_ovl_encode_names(uint8_t *buf, size_t cap, const pl_ovl_names *m)
{
    if ((m->type != PL_OVL_SUBSCRIBE && m->type != PL_OVL_UNSUBSCRIBE) || m->n == 0 || m->n > PL_OVL_MAX_NAMES)
        return 0;
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, m->type);
    pl_write_u8(&w, m->n);
    for (uint8_t i = 0; i < m->n; i++) write_name(&w, m->names[i]);
    return finish(&w);
}

pl_ovl_err pl_ovl_decode_names(pl_ovl_names *m, const uint8_t *buf, size_t len)
{
    memset(m, 0, sizeof *m);
    pl_reader r = pl_reader_make(buf, len);
    m->type = pl_read_u8(&r);
    m->n = pl_read_u8(&r);
    if (r.err || (m->type != PL_OVL_SUBSCRIBE && m->type != PL_OVL_UNSUBSCRIBE) || m->n == 0 ||
        m->n > PL_OVL_MAX_NAMES)
        return PL_OVL_ERR_MALFORMED;
    for (uint8_t i = 0; i < m->n; i++) read_name(&r, m->names[i]);
    return pl_reader_done(&r) ? PL_OVL_OK : PL_OVL_ERR_MALFORMED;
}

/* ---- qualification and promotion ---------------------------------------------------------- */

size_t pl_ovl_encode_qualify(uint8_t *buf, size_t cap, const pl_ovl_qualify *m)
{
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, m->type);
    switch (m->type) {
    case PL_OVL_QUALIFY_PROBE:
        pl_write_bytes(&w, m->nonce, PL_OVL_PROBE_NONCE);
        pl_write_addr(&w, &m->target);
        break;
    case PL_OVL_QUALIFY_SEEN: pl_write_bytes(&w, m->nonce, PL_OVL_PROBE_NONCE); break;
    case PL_OVL_PROMOTE:
        if (m->n > 4) return 0;
        write_peers(&w, m->seeds, m->n);
        break;
    default: return 0;
    }
    return finish(&w);
}

pl_ovl_err pl_ovl_decode_qualify(pl_ovl_qualify *m, const uint8_t *buf, size_t len)
{
    memset(m, 0, sizeof *m);
    pl_reader r = pl_reader_make(buf, len);
    m->type = pl_read_u8(&r);
    switch (m->type) {
    case PL_OVL_QUALIFY_PROBE:
        pl_read_bytes(&r, m->nonce, PL_OVL_PROBE_NONCE);
        pl_read_addr(&r, &m->target);
        break;
    case PL_OVL_QUALIFY_SEEN: pl_read_bytes(&r, m->nonce, PL_OVL_PROBE_NONCE); break;
    case PL_OVL_PROMOTE: read_peers(&r, m->seeds, &m->n, 4); break;
    default: return PL_OVL_ERR_MALFORMED;
    }
    return pl_reader_done(&r) ? PL_OVL_OK : PL_OVL_ERR_MALFORMED;
}

void pl_ovl_probe_datagram(uint8_t out[PL_OVL_PROBE_SIZE], const uint8_t nonce[PL_OVL_PROBE_NONCE])
{
    out[0] = PL_OVL_PROBE_BYTE;
    memcpy(out + 1, "PLQ", 3);
    memcpy(out + 4, nonce, PL_OVL_PROBE_NONCE);
}

bool pl_ovl_parse_probe(const uint8_t *buf, size_t len, uint8_t nonce[PL_OVL_PROBE_NONCE])
{
    if (len != PL_OVL_PROBE_SIZE || buf[0] != PL_OVL_PROBE_BYTE || memcmp(buf + 1, "PLQ", 3) != 0) return false;
    memcpy(nonce, buf + 4, PL_OVL_PROBE_NONCE);
    return true;
}
