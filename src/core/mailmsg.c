/* mailmsg.c - the message store's overlay messages (mailmsg.h). */
#include "mailmsg.h"

#include <sodium.h>
#include <string.h>

#include "wire.h"

#define GRANT_CONTEXT "parley-mbox-grnt"
#define DELETE_CONTEXT "parley-mbox-del1"

/* ---- grants and delete signatures ------------------------------------------------------ */

static void grant_input(crypto_sign_state *st, const pl_mbox_grant *g, const char *name)
{
    uint8_t fixed[32 + 16 + 1];
    memcpy(fixed, g->home_pk, 32);
    pl_put_u64be(fixed + 32, g->issued_at);
    pl_put_u64be(fixed + 40, g->expires_at);
    fixed[48] = (uint8_t)strlen(name);
    crypto_sign_init(st);
    crypto_sign_update(st, (const uint8_t *)GRANT_CONTEXT, 16);
    crypto_sign_update(st, fixed, sizeof fixed);
    crypto_sign_update(st, (const uint8_t *)name, strlen(name));
}

static bool grant_window_ok(uint64_t issued_at, uint64_t expires_at)
{
    return issued_at < expires_at && expires_at - issued_at <= PL_MBOX_GRANT_MAX_LIFE;
}

bool pl_mbox_grant_sign(pl_mbox_grant *g, const pl_identity *id, const uint8_t *cert, size_t cert_len,
                        const uint8_t home_pk[32], uint64_t issued_at, uint64_t expires_at)
{
    pl_cert c;
    memset(g, 0, sizeof *g);
    if (pl_cert_decode(&c, cert, cert_len) != PL_CERT_OK || memcmp(c.sign_pk, id->sign_pk, 32) != 0 ||
        !grant_window_ok(issued_at, expires_at))
        return false;
    g->cert = cert;
    g->cert_len = cert_len;
    memcpy(g->home_pk, home_pk, 32);
    g->issued_at = issued_at;
    g->expires_at = expires_at;
    crypto_sign_state st;
    grant_input(&st, g, c.name);
    crypto_sign_final_create(&st, g->sig, NULL, id->sign_sk);
    sodium_memzero(&st, sizeof st);
    return true;
}

bool pl_mbox_grant_verify(const pl_mbox_grant *g, const uint8_t ca_pk[32], const pl_crl *crl, uint64_t now_s,
                          const uint8_t asking_pk[32], pl_cert *cert)
{
    if (!g->cert || pl_cert_decode(cert, g->cert, g->cert_len) != PL_CERT_OK ||
        pl_cert_verify(cert, ca_pk, now_s, crl) != PL_CERT_OK || memcmp(g->home_pk, asking_pk, 32) != 0 ||
        !grant_window_ok(g->issued_at, g->expires_at) || g->issued_at > now_s + PL_MBOX_GRANT_SKEW ||
        now_s >= g->expires_at)
        return false;
    crypto_sign_state st;
    grant_input(&st, g, cert->name);
    return crypto_sign_final_verify(&st, g->sig, cert->sign_pk) == 0;
}

static void write_grant(pl_writer *w, const pl_mbox_grant *g)
{
    pl_write_u16(w, (uint16_t)g->cert_len);
    pl_write_bytes(w, g->cert, g->cert_len);
    pl_write_bytes(w, g->home_pk, 32);
    pl_write_u64(w, g->issued_at);
    pl_write_u64(w, g->expires_at);
    pl_write_bytes(w, g->sig, 64);
}

static void read_grant(pl_reader *r, pl_mbox_grant *g)
{
    g->cert_len = pl_read_u16(r);
    if (g->cert_len > PL_CERT_MAX_SIZE) {
        r->err = true;
        return;
    }
    g->cert = pl_read_ptr(r, g->cert_len);
    pl_read_bytes(r, g->home_pk, 32);
    g->issued_at = pl_read_u64(r);
    g->expires_at = pl_read_u64(r);
    pl_read_bytes(r, g->sig, 64);
    pl_cert c;
    if (!r->err && (!g->cert || pl_cert_decode(&c, g->cert, g->cert_len) != PL_CERT_OK ||
                    !grant_window_ok(g->issued_at, g->expires_at)))
        r->err = true;
}

static bool grant_ok(const pl_mbox_grant *g)
{
    pl_cert c;
    return g->cert && g->cert_len <= PL_CERT_MAX_SIZE && pl_cert_decode(&c, g->cert, g->cert_len) == PL_CERT_OK &&
           grant_window_ok(g->issued_at, g->expires_at);
}

size_t pl_mbox_grant_encode(uint8_t *buf, size_t cap, const pl_mbox_grant *g)
{
    if (!grant_ok(g)) return 0;
    pl_writer w = pl_writer_make(buf, cap);
    write_grant(&w, g);
    return w.err ? 0 : w.off;
}

bool pl_mbox_grant_decode(pl_mbox_grant *g, const uint8_t *buf, size_t len)
{
    memset(g, 0, sizeof *g);
    pl_reader r = pl_reader_make(buf, len);
    read_grant(&r, g);
    return pl_reader_done(&r);
}

static void delete_input(crypto_sign_state *st, const char *name, const uint8_t msg_id[16])
{
    uint8_t n = (uint8_t)strlen(name);
    crypto_sign_init(st);
    crypto_sign_update(st, (const uint8_t *)DELETE_CONTEXT, 16);
    crypto_sign_update(st, &n, 1);
    crypto_sign_update(st, (const uint8_t *)name, n);
    crypto_sign_update(st, msg_id, 16);
}

void pl_mbox_delete_sign(uint8_t sig[64], const pl_identity *id, const char *name, const uint8_t msg_id[16])
{
    crypto_sign_state st;
    delete_input(&st, name, msg_id);
    crypto_sign_final_create(&st, sig, NULL, id->sign_sk);
    sodium_memzero(&st, sizeof st);
}

bool pl_mbox_delete_verify(const uint8_t sig[64], const pl_cert *cert, const uint8_t msg_id[16])
{
    crypto_sign_state st;
    delete_input(&st, cert->name, msg_id);
    return crypto_sign_final_verify(&st, sig, cert->sign_pk) == 0;
}

/* ---- layouts --------------------------------------------------------------------------------- */

enum {
    F_REQ = 1 << 0,
    F_STATUS = 1 << 1,
    F_FLAGS = 1 << 2,
    F_COUNTS = 1 << 3,    /* count u8, total u8 */
    F_NOTICE = 1 << 4,    /* messages u16, bytes u32 */
    F_AFTER = 1 << 5,
    F_GET = 1 << 6,       /* id, part u16, attempt u8 */
    F_GRANT = 1 << 7,     /* always present */
    F_GRANT_OPT = 1 << 8, /* u8 present (0 or 1), then the grant */
    F_ENTRIES = 1 << 9,
    F_DELETES = 1 << 10,  /* cert, n, (id, sig) x n */
    F_NEWS = 1 << 11,     /* name, id */
    F_ENV = 1 << 12,      /* the rest: an envelope */
    F_ENV_OPT = 1 << 13,  /* the rest: an envelope, or nothing */
};

static unsigned layout(uint8_t type, uint8_t *allowed_flags)
{
    *allowed_flags = 0;
    switch (type) {
    case PL_MBOX_DEPOSIT: return F_REQ | F_ENV;
    case PL_MBOX_STORE: *allowed_flags = PL_MBOX_F_HANDOVER; return F_REQ | F_FLAGS | F_ENV;
    case PL_MBOX_ACK: return F_REQ | F_STATUS | F_COUNTS;
    case PL_MBOX_OPEN: return F_REQ | F_GRANT;
    case PL_MBOX_NOTICE: return F_REQ | F_STATUS | F_NOTICE;
    case PL_MBOX_LIST: *allowed_flags = PL_MBOX_F_WATCH; return F_REQ | F_FLAGS | F_AFTER | F_GRANT_OPT;
    case PL_MBOX_LIST_REPLY: *allowed_flags = PL_MBOX_F_MORE; return F_REQ | F_STATUS | F_FLAGS | F_ENTRIES;
    case PL_MBOX_GET: return F_REQ | F_GET | F_GRANT_OPT;
    case PL_MBOX_GET_REPLY: return F_REQ | F_STATUS | F_ENV_OPT;
    case PL_MBOX_DELETE: *allowed_flags = PL_MBOX_F_HANDOVER; return F_REQ | F_FLAGS | F_DELETES;
    case PL_MBOX_NEWS: return F_NEWS;
    case PL_MBOX_CHAT: return F_ENV;
    default: return 0;
    }
}

size_t pl_mbox_entry_size(const pl_mbox_entry *e)
{
    return (e->flags & PL_MBOX_E_TOMBSTONE) ? PL_MBOX_TOMB_ENTRY_SIZE : PL_MBOX_ENTRY_SIZE;
}

static void write_name(pl_writer *w, const char *name)
{
    size_t n = strlen(name);
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

static bool env_ok(const uint8_t *env, size_t len)
{
    pl_env_header h;
    return env && len && pl_env_peek(&h, env, len) == PL_ENV_OK;
}

/* Everything the encoder and decoder both check, on a filled message. */
static bool fields_ok(const pl_mbox_msg *m, unsigned f, uint8_t allowed)
{
    if ((f & F_STATUS) && m->status > PL_MBOX_STATUS_MAX) return false;
    if ((f & F_FLAGS) ? (m->flags & ~allowed) != 0 : m->flags != 0) return false;
    if ((f & F_COUNTS) && m->count > m->total) return false;
    if ((f & F_GET) && (m->part > PL_ENV_MAX_CHUNKS)) return false;
    if ((f & F_ENV) && !env_ok(m->env, m->env_len)) return false;
    if ((f & F_ENV_OPT) && (m->env_len ? (m->status != PL_MBOX_OK || !env_ok(m->env, m->env_len)) : false))
        return false;
    if (!(f & (F_ENV | F_ENV_OPT)) && m->env_len) return false;
    if ((f & F_GRANT) && !m->has_grant) return false;
    if (!(f & (F_GRANT | F_GRANT_OPT)) && m->has_grant) return false;
    if (m->has_grant && !grant_ok(&m->grant)) return false;
    if (f & F_ENTRIES) {
        if (m->n_entries > PL_MBOX_MAX_ENTRIES) return false;
        for (uint8_t i = 0; i < m->n_entries; i++) {
            const pl_mbox_entry *e = &m->entries[i];
            if ((e->flags & ~PL_MBOX_E_TOMBSTONE) ||
                (i && memcmp(m->entries[i - 1].id, e->id, PL_ENV_ID_SIZE) >= 0))
                return false;
            /* A tombstone carries only its signature. */
            if ((e->flags & PL_MBOX_E_TOMBSTONE) && (e->parts || e->bytes || e->stored_at)) return false;
            if (!(e->flags & PL_MBOX_E_TOMBSTONE) && e->parts == 0) return false;
        }
    } else if (m->n_entries) {
        return false;
    }
    if (f & F_DELETES) {
        pl_cert c;
        if (m->n_deletes == 0 || m->n_deletes > PL_MBOX_MAX_DELETES || !m->cert || m->cert_len > PL_CERT_MAX_SIZE ||
            pl_cert_decode(&c, m->cert, m->cert_len) != PL_CERT_OK)
            return false;
        for (uint8_t i = 1; i < m->n_deletes; i++)
            if (memcmp(m->deletes[i - 1].id, m->deletes[i].id, PL_ENV_ID_SIZE) >= 0) return false;
    } else if (m->n_deletes || m->cert_len) {
        return false;
    }
    if (f & F_NEWS) {
        char norm[PL_NAME_MAX + 1];
        if (pl_name_normalize(m->name, norm) != PL_NAME_OK || strcmp(norm, m->name) != 0) return false;
    }
    return true;
}

size_t pl_mbox_encode(uint8_t *buf, size_t cap, const pl_mbox_msg *m)
{
    uint8_t allowed;
    unsigned f = layout(m->type, &allowed);
    if (!f || !fields_ok(m, f, allowed)) return 0;
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, m->type);
    if (f & F_REQ) pl_write_u32(&w, m->req);
    if (f & F_STATUS) pl_write_u8(&w, m->status);
    if (f & F_FLAGS) pl_write_u8(&w, m->flags);
    if (f & F_COUNTS) {
        pl_write_u8(&w, m->count);
        pl_write_u8(&w, m->total);
    }
    if (f & F_NOTICE) {
        pl_write_u16(&w, m->messages);
        pl_write_u32(&w, m->bytes);
    }
    if (f & F_AFTER) pl_write_bytes(&w, m->after, PL_ENV_ID_SIZE);
    if (f & F_GET) {
        pl_write_bytes(&w, m->id, PL_ENV_ID_SIZE);
        pl_write_u16(&w, m->part);
        pl_write_u8(&w, m->attempt);
    }
    if (f & F_GRANT_OPT) pl_write_u8(&w, m->has_grant ? 1 : 0);
    if (m->has_grant) write_grant(&w, &m->grant);
    if (f & F_ENTRIES) {
        pl_write_u8(&w, m->n_entries);
        for (uint8_t i = 0; i < m->n_entries; i++) {
            const pl_mbox_entry *e = &m->entries[i];
            pl_write_bytes(&w, e->id, PL_ENV_ID_SIZE);
            pl_write_u8(&w, e->flags);
            if (e->flags & PL_MBOX_E_TOMBSTONE) {
                pl_write_bytes(&w, e->sig, 64);
            } else {
                pl_write_u16(&w, e->parts);
                pl_write_u32(&w, e->bytes);
                pl_write_u64(&w, e->stored_at);
            }
        }
    }
    if (f & F_DELETES) {
        pl_write_u16(&w, (uint16_t)m->cert_len);
        pl_write_bytes(&w, m->cert, m->cert_len);
        pl_write_u8(&w, m->n_deletes);
        for (uint8_t i = 0; i < m->n_deletes; i++) {
            pl_write_bytes(&w, m->deletes[i].id, PL_ENV_ID_SIZE);
            pl_write_bytes(&w, m->deletes[i].sig, 64);
        }
    }
    if (f & F_NEWS) {
        write_name(&w, m->name);
        pl_write_bytes(&w, m->id, PL_ENV_ID_SIZE);
    }
    if (m->env_len) pl_write_bytes(&w, m->env, m->env_len);
    return w.err ? 0 : w.off;
}

pl_mbox_msg_err pl_mbox_decode(pl_mbox_msg *m, const uint8_t *buf, size_t len)
{
    memset(m, 0, sizeof *m);
    if (len == 0 || len > PL_MBOX_MSG_MAX) return PL_MBOX_MSG_MALFORMED;
    uint8_t allowed;
    unsigned f = layout(buf[0], &allowed);
    if (!f) return PL_MBOX_MSG_MALFORMED;
    pl_reader r = pl_reader_make(buf, len);
    m->type = pl_read_u8(&r);
    if (f & F_REQ) m->req = pl_read_u32(&r);
    if (f & F_STATUS) m->status = pl_read_u8(&r);
    if (f & F_FLAGS) m->flags = pl_read_u8(&r);
    if (f & F_COUNTS) {
        m->count = pl_read_u8(&r);
        m->total = pl_read_u8(&r);
    }
    if (f & F_NOTICE) {
        m->messages = pl_read_u16(&r);
        m->bytes = pl_read_u32(&r);
    }
    if (f & F_AFTER) pl_read_bytes(&r, m->after, PL_ENV_ID_SIZE);
    if (f & F_GET) {
        pl_read_bytes(&r, m->id, PL_ENV_ID_SIZE);
        m->part = pl_read_u16(&r);
        m->attempt = pl_read_u8(&r);
    }
    if (f & F_GRANT) m->has_grant = true;
    if (f & F_GRANT_OPT) {
        uint8_t present = pl_read_u8(&r);
        if (present > 1) return PL_MBOX_MSG_MALFORMED;
        m->has_grant = present == 1;
    }
    if (m->has_grant) read_grant(&r, &m->grant);
    if (f & F_ENTRIES) {
        m->n_entries = pl_read_u8(&r);
        if (m->n_entries > PL_MBOX_MAX_ENTRIES) return PL_MBOX_MSG_MALFORMED;
        for (uint8_t i = 0; i < m->n_entries && !r.err; i++) {
            pl_mbox_entry *e = &m->entries[i];
            pl_read_bytes(&r, e->id, PL_ENV_ID_SIZE);
            e->flags = pl_read_u8(&r);
            if (e->flags & PL_MBOX_E_TOMBSTONE) {
                pl_read_bytes(&r, e->sig, 64);
            } else {
                e->parts = pl_read_u16(&r);
                e->bytes = pl_read_u32(&r);
                e->stored_at = pl_read_u64(&r);
            }
        }
    }
    if (f & F_DELETES) {
        m->cert_len = pl_read_u16(&r);
        if (m->cert_len > PL_CERT_MAX_SIZE) return PL_MBOX_MSG_MALFORMED;
        m->cert = pl_read_ptr(&r, m->cert_len);
        m->n_deletes = pl_read_u8(&r);
        if (m->n_deletes > PL_MBOX_MAX_DELETES) return PL_MBOX_MSG_MALFORMED;
        for (uint8_t i = 0; i < m->n_deletes; i++) {
            pl_read_bytes(&r, m->deletes[i].id, PL_ENV_ID_SIZE);
            pl_read_bytes(&r, m->deletes[i].sig, 64);
        }
    }
    if (f & F_NEWS) {
        read_name(&r, m->name);
        pl_read_bytes(&r, m->id, PL_ENV_ID_SIZE);
    }
    if (r.err) return PL_MBOX_MSG_MALFORMED;
    if (f & (F_ENV | F_ENV_OPT)) {
        m->env_len = pl_reader_left(&r);
        m->env = m->env_len ? pl_read_ptr(&r, m->env_len) : NULL;
    }
    if (!pl_reader_done(&r) || !fields_ok(m, f, allowed)) return PL_MBOX_MSG_MALFORMED;
    return PL_MBOX_MSG_OK;
}
