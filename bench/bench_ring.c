/*
 * bench_ring.c - what the directory's consistent-hash ring costs at the
 * simulator's scale: 10,000 supernodes with 8 points each, every supernode
 * holding its own ring, 30% of them failing at once.
 *
 * Prints: time to build a ring, its memory, replica look-ups per second
 * (before and after the failures), time to apply 3,000 removals and to add
 * them back, time to snapshot a ring (pl_ring_copy) and to decide a handover
 * for one record. Figures, not pass/fail.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parley.h"
#include "ring.h"

#define MEMBERS 10000
#define FAILING 3000
#define KEYS 100000
#define LOOKUPS 2000000

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double lookups_per_second(const pl_ring *g, uint8_t (*keys)[32], size_t *sink)
{
    uint8_t out[3][32];
    double t0 = now_s();
    for (size_t i = 0; i < LOOKUPS; i++) *sink += pl_ring_replicas(g, keys[i % KEYS], 3, out) + out[0][0];
    return LOOKUPS / (now_s() - t0);
}

int main(void)
{
    if (!pl_init()) return 1;
    pl_rng_seeded rng;
    pl_rng_seeded_init(&rng, 1);
    uint8_t(*pks)[32] = malloc(MEMBERS * 32);
    uint8_t(*keys)[32] = malloc(KEYS * 32);
    if (!pks || !keys) return 1;
    for (size_t i = 0; i < MEMBERS; i++) rng.rng.fill(rng.rng.ctx, pks[i], 32);
    for (size_t i = 0; i < KEYS; i++) {
        char name[32];
        snprintf(name, sizeof name, "user%zu", i);
        pl_ring_key_for_name(name, keys[i]);
    }
    size_t sink = 0;
    printf("ring: %d supernodes, %d points each, R = 3\n", MEMBERS, PL_RING_DEFAULT_VPOINTS);

    /* Built one member at a time, as gossip would. */
    pl_ring *g = NULL, *reserved = NULL, *snap = NULL;
    if (pl_ring_new(&g, NULL, 0) != PL_RING_OK) return 1;
    double t0 = now_s();
    for (size_t i = 0; i < MEMBERS; i++)
        if (pl_ring_add(g, pks[i]) != PL_RING_OK) return 1;
    double build = now_s() - t0;
    printf("  build by %d single adds:        %8.1f ms (%.2f us an add)\n", MEMBERS, build * 1e3, build * 1e6 / MEMBERS);
    printf("  memory, grown one at a time:     %8.2f MB (%.0f bytes a supernode)\n", pl_ring_memory(g) / 1e6,
           (double)pl_ring_memory(g) / MEMBERS);
    if (pl_ring_new(&reserved, NULL, 0) != PL_RING_OK || pl_ring_reserve(reserved, MEMBERS) != PL_RING_OK) return 1;
    for (size_t i = 0; i < MEMBERS; i++)
        if (pl_ring_add(reserved, pks[i]) != PL_RING_OK) return 1;
    printf("  memory, reserved for %d:      %8.2f MB (%.0f bytes a supernode, %.1f a point)\n", MEMBERS,
           pl_ring_memory(reserved) / 1e6, (double)pl_ring_memory(reserved) / MEMBERS,
           (double)pl_ring_memory(reserved) / (MEMBERS * PL_RING_DEFAULT_VPOINTS));
    printf("  => %d supernodes each with its own ring: %.1f GB\n", MEMBERS,
           (double)pl_ring_memory(reserved) * MEMBERS / 1e9);

    printf("  replicas(key, 3):               %8.2f M look-ups/s\n", lookups_per_second(g, keys, &sink) / 1e6);
    uint8_t self[32];
    memcpy(self, pks[0], 32);
    t0 = now_s();
    for (size_t i = 0; i < LOOKUPS; i++) sink += pl_ring_is_replica(g, keys[i % KEYS], self, 3);
    printf("  is_replica(key, self, 3):       %8.2f M look-ups/s\n", LOOKUPS / (now_s() - t0) / 1e6);

    /* Snapshot before the failures, for the handover. */
    if (pl_ring_new(&snap, NULL, 0) != PL_RING_OK || pl_ring_copy(snap, g) != PL_RING_OK) return 1;
    t0 = now_s();
    for (int i = 0; i < 10; i++)
        if (pl_ring_copy(snap, g) != PL_RING_OK) return 1;
    printf("  copy (snapshot) of the ring:    %8.3f ms\n", (now_s() - t0) * 1e3 / 10);

    /* 30% fail at once. */
    t0 = now_s();
    for (size_t i = 0; i < FAILING; i++)
        if (pl_ring_remove(g, pks[i * 3 + 1]) != PL_RING_OK) return 1;
    double removal = now_s() - t0;
    printf("  %d removals:                  %8.3f ms (%.2f us each, compaction included)\n", FAILING, removal * 1e3,
           removal * 1e6 / FAILING);
    printf("  replicas(key, 3) after them:    %8.2f M look-ups/s\n", lookups_per_second(g, keys, &sink) / 1e6);

    /* What a supernode does with each record it holds after the failures. */
    pl_ring_handover h;
    size_t moved = 0;
    t0 = now_s();
    for (size_t i = 0; i < KEYS; i++) {
        pl_ring_handover_for(snap, g, keys[i], 3, self, &h);
        moved += h.changed;
    }
    double ho = now_s() - t0;
    printf("  handover decision per record:   %8.3f us (%.0f%% of replica sets changed)\n", ho * 1e6 / KEYS,
           100.0 * moved / KEYS);

    t0 = now_s();
    for (size_t i = 0; i < FAILING; i++)
        if (pl_ring_add(g, pks[i * 3 + 1]) != PL_RING_OK) return 1;
    double readd = now_s() - t0;
    printf("  %d re-adds:                   %8.3f ms (%.2f us each)\n", FAILING, readd * 1e3, readd * 1e6 / FAILING);
    printf("  replicas(key, 3) after re-adds: %8.2f M look-ups/s\n", lookups_per_second(g, keys, &sink) / 1e6);

    pl_ring_free(g);
    pl_ring_free(reserved);
    pl_ring_free(snap);
    free(pks);
    free(keys);
    return sink == 42 ? 2 : 0; /* keeps the look-ups from being optimised away */
}
