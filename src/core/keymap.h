/*
 * keymap.h - a hash table from 32-byte keys (public keys, name hashes) to
 * 32-bit values, for the tables the overlay keeps: attached clients, stored
 * records, watchers. Open addressing with linear probing and backward-shift
 * deletion (no tombstones); SipHash under a random key, so that nobody who
 * picks keys (and anyone can make key pairs) can pile them into one chain.
 * It grows by doubling, keeping the load at most one half.
 */
#ifndef PL_KEYMAP_H
#define PL_KEYMAP_H

#include "parley.h"

typedef struct pl_keymap_entry {
    uint8_t key[32];
    uint32_t value;
    uint32_t used;
} pl_keymap_entry;

typedef struct pl_keymap {
    pl_keymap_entry *table;
    uint32_t size;  /* a power of two, or 0 before the first insert */
    uint32_t count;
    uint8_t hash_key[16];
    const pl_mem *mem;
} pl_keymap;

void pl_keymap_init(pl_keymap *m, const pl_mem *mem, const pl_rng *rng);
void pl_keymap_free(pl_keymap *m);
/* Finds key; true and *value when present. */
bool pl_keymap_get(const pl_keymap *m, const uint8_t key[32], uint32_t *value);
/* Inserts or replaces; false only when memory runs out. */
bool pl_keymap_put(pl_keymap *m, const uint8_t key[32], uint32_t value);
/* Removes key; true if it was there. */
bool pl_keymap_remove(pl_keymap *m, const uint8_t key[32]);

#endif
