/* keymap.c - 32-byte keys to 32-bit values (keymap.h). */
#include "keymap.h"

#include <sodium.h>
#include <string.h>

void pl_keymap_init(pl_keymap *m, const pl_mem *mem, const pl_rng *rng)
{
    memset(m, 0, sizeof *m);
    m->mem = mem ? mem : pl_mem_system();
    rng->fill(rng->ctx, m->hash_key, sizeof m->hash_key);
}

void pl_keymap_free(pl_keymap *m)
{
    if (m->table) m->mem->free(m->mem->ctx, m->table);
    m->table = NULL;
    m->size = m->count = 0;
}

static uint64_t hash(const pl_keymap *m, const uint8_t key[32])
{
    uint8_t h[8];
    uint64_t v;
    crypto_shorthash(h, key, 32, m->hash_key);
    memcpy(&v, h, 8);
    return v;
}

static pl_keymap_entry *lookup(const pl_keymap *m, const uint8_t key[32])
{
    if (m->size == 0) return NULL;
    uint32_t mask = m->size - 1;
    for (uint64_t i = hash(m, key);; i++) {
        pl_keymap_entry *e = &m->table[i & mask];
        if (!e->used) return NULL;
        if (memcmp(e->key, key, 32) == 0) return e;
    }
}

bool pl_keymap_get(const pl_keymap *m, const uint8_t key[32], uint32_t *value)
{
    const pl_keymap_entry *e = lookup(m, key);
    if (!e) return false;
    if (value) *value = e->value;
    return true;
}

static void place(pl_keymap *m, const uint8_t key[32], uint32_t value)
{
    uint32_t mask = m->size - 1;
    uint64_t i = hash(m, key);
    while (m->table[i & mask].used) i++;
    pl_keymap_entry *e = &m->table[i & mask];
    memcpy(e->key, key, 32);
    e->value = value;
    e->used = 1;
}

static bool grow(pl_keymap *m)
{
    uint32_t size = m->size ? 2 * m->size : 16;
    if (size < m->size) return false;
    pl_keymap_entry *old = m->table;
    uint32_t old_size = m->size;
    m->table = m->mem->calloc(m->mem->ctx, size, sizeof *m->table);
    if (!m->table) {
        m->table = old;
        return false;
    }
    m->size = size;
    for (uint32_t i = 0; i < old_size; i++)
        if (old[i].used) place(m, old[i].key, old[i].value);
    if (old) m->mem->free(m->mem->ctx, old);
    return true;
}

bool pl_keymap_put(pl_keymap *m, const uint8_t key[32], uint32_t value)
{
    pl_keymap_entry *e = lookup(m, key);
    if (e) {
        e->value = value;
        return true;
    }
    if (2 * (m->count + 1) > m->size && !grow(m)) return false;
    place(m, key, value);
    m->count++;
    return true;
}

bool pl_keymap_remove(pl_keymap *m, const uint8_t key[32])
{
    pl_keymap_entry *e = lookup(m, key);
    if (!e) return false;
    uint32_t mask = m->size - 1;
    uint64_t hole = (uint64_t)(e - m->table);
    for (uint64_t j = hole + 1;; j++) {
        pl_keymap_entry *x = &m->table[j & mask];
        if (!x->used) break;
        uint64_t home = hash(m, x->key) & mask;
        /* Move x back into the hole unless its home lies between hole and j. */
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            m->table[hole & mask] = *x;
            hole = j;
        }
    }
    memset(&m->table[hole & mask], 0, sizeof *m->table);
    m->count--;
    return true;
}
