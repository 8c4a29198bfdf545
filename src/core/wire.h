/*
 * wire.h - the one place where bytes from the network are read and written.
 *
 * A reader and a writer are cursors over a caller-owned buffer with a sticky
 * error flag: once a read runs past the end (or a write past the capacity),
 * every later call is a no-op that yields zeros, and the caller checks the
 * flag once at the end. That keeps decoders short and makes it impossible to
 * read out of bounds whatever the input.
 */
#ifndef PL_WIRE_H
#define PL_WIRE_H

#include "parley.h"

typedef struct pl_reader {
    const uint8_t *buf;
    size_t len;
    size_t off;
    bool err;
} pl_reader;

typedef struct pl_writer {
    uint8_t *buf;
    size_t cap;
    size_t off;
    bool err;
} pl_writer;

static inline pl_reader pl_reader_make(const uint8_t *buf, size_t len)
{
    pl_reader r = {buf, len, 0, false};
    return r;
}
static inline pl_writer pl_writer_make(uint8_t *buf, size_t cap)
{
    pl_writer w = {buf, cap, 0, false};
    return w;
}

uint8_t pl_read_u8(pl_reader *r);
uint16_t pl_read_u16(pl_reader *r);
uint32_t pl_read_u32(pl_reader *r);
uint64_t pl_read_u64(pl_reader *r);
/* Copies n bytes into out (zero-filled on error). */
void pl_read_bytes(pl_reader *r, void *out, size_t n);
/* Returns a pointer to the next n bytes inside the buffer, or NULL. */
const uint8_t *pl_read_ptr(pl_reader *r, size_t n);
/* An address: family u8 (4 or 6), port u16, then 4 or 16 bytes. */
void pl_read_addr(pl_reader *r, pl_addr *out);
static inline size_t pl_reader_left(const pl_reader *r) { return r->err ? 0 : r->len - r->off; }
/* True when every byte was consumed without error: decoders of canonical
 * formats use this to refuse trailing garbage. */
static inline bool pl_reader_done(const pl_reader *r) { return !r->err && r->off == r->len; }

void pl_write_u8(pl_writer *w, uint8_t v);
void pl_write_u16(pl_writer *w, uint16_t v);
void pl_write_u32(pl_writer *w, uint32_t v);
void pl_write_u64(pl_writer *w, uint64_t v);
void pl_write_bytes(pl_writer *w, const void *src, size_t n);
void pl_write_zeros(pl_writer *w, size_t n);
void pl_write_addr(pl_writer *w, const pl_addr *a);
/* Reserves n bytes and returns where they start, for in-place encryption. */
uint8_t *pl_write_reserve(pl_writer *w, size_t n);

/* Fixed-position helpers for headers that are filled in place. */
static inline void pl_put_u32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline uint32_t pl_get_u32be(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void pl_put_u64be(uint8_t *p, uint64_t v)
{
    pl_put_u32be(p, (uint32_t)(v >> 32)); pl_put_u32be(p + 4, (uint32_t)v);
}
static inline uint64_t pl_get_u64be(const uint8_t *p)
{
    return ((uint64_t)pl_get_u32be(p) << 32) | pl_get_u32be(p + 4);
}
static inline void pl_put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

#endif
