/* wire.c - bounds-checked cursors; see wire.h. */
#include "wire.h"

#include <string.h>

static const uint8_t *take(pl_reader *r, size_t n)
{
    if (r->err || n > r->len - r->off) {
        r->err = true;
        return NULL;
    }
    const uint8_t *p = r->buf + r->off;
    r->off += n;
    return p;
}

uint8_t pl_read_u8(pl_reader *r)
{
    const uint8_t *p = take(r, 1);
    return p ? p[0] : 0;
}

uint16_t pl_read_u16(pl_reader *r)
{
    const uint8_t *p = take(r, 2);
    return p ? (uint16_t)((p[0] << 8) | p[1]) : 0;
}

uint32_t pl_read_u32(pl_reader *r)
{
    const uint8_t *p = take(r, 4);
    return p ? pl_get_u32be(p) : 0;
}

uint64_t pl_read_u64(pl_reader *r)
{
    const uint8_t *p = take(r, 8);
    return p ? pl_get_u64be(p) : 0;
}

void pl_read_bytes(pl_reader *r, void *out, size_t n)
{
    const uint8_t *p = take(r, n);
    if (p)
        memcpy(out, p, n);
    else if (n)
        memset(out, 0, n);
}

const uint8_t *pl_read_ptr(pl_reader *r, size_t n) { return take(r, n); }

void pl_read_addr(pl_reader *r, pl_addr *out)
{
    memset(out, 0, sizeof *out);
    uint8_t family = pl_read_u8(r);
    out->port = pl_read_u16(r);
    if (family == PL_AF_INET4) {
        pl_read_bytes(r, out->ip, 4);
    } else if (family == PL_AF_INET6) {
        pl_read_bytes(r, out->ip, 16);
    } else {
        r->err = true;
        return;
    }
    out->family = family;
}

static uint8_t *room(pl_writer *w, size_t n)
{
    if (w->err || n > w->cap - w->off) {
        w->err = true;
        return NULL;
    }
    uint8_t *p = w->buf + w->off;
    w->off += n;
    return p;
}

void pl_write_u8(pl_writer *w, uint8_t v)
{
    uint8_t *p = room(w, 1);
    if (p) p[0] = v;
}

void pl_write_u16(pl_writer *w, uint16_t v)
{
    uint8_t *p = room(w, 2);
    if (p) {
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
    }
}

void pl_write_u32(pl_writer *w, uint32_t v)
{
    uint8_t *p = room(w, 4);
    if (p) pl_put_u32be(p, v);
}

void pl_write_u64(pl_writer *w, uint64_t v)
{
    uint8_t *p = room(w, 8);
    if (p) pl_put_u64be(p, v);
}

void pl_write_bytes(pl_writer *w, const void *src, size_t n)
{
    uint8_t *p = room(w, n);
    if (p && n) memcpy(p, src, n);
}

void pl_write_zeros(pl_writer *w, size_t n)
{
    uint8_t *p = room(w, n);
    if (p && n) memset(p, 0, n);
}

void pl_write_addr(pl_writer *w, const pl_addr *a)
{
    if (a->family != PL_AF_INET4 && a->family != PL_AF_INET6) {
        w->err = true;
        return;
    }
    pl_write_u8(w, a->family);
    pl_write_u16(w, a->port);
    pl_write_bytes(w, a->ip, a->family == PL_AF_INET4 ? 4 : 16);
}

uint8_t *pl_write_reserve(pl_writer *w, size_t n) { return room(w, n); }
