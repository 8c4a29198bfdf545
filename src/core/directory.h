/*
 * directory.h - a supernode's share of the distributed directory, and the
 * presence service on top of it (docs/directory.md, sections 4-6).
 *
 * Every supernode holds the full membership and so the whole consistent-
 * hash ring (ring.h). A user's record lives on the R supernodes that follow
 * hash(name) on the ring. The directory engine of one supernode:
 *
 *  - takes its clients' PUBLISHes, checks that the record verifies and is
 *    the client's own, and STOREs it on the replicas (itself included when
 *    it is one), answering the client with how many took it;
 *  - as a replica, keeps the newest verified record per name (an older one
 *    never replaces a newer one), answers FETCHes, expires records that
 *    were not refreshed, and hands records over when membership changes;
 *  - proxies its clients' LOOKUPs: asks the replicas in ring order, moving
 *    to the next on silence or "not found", so that a dead replica costs a
 *    timeout, not a failure; the client verifies what comes back and asks
 *    again, skipping that replica, if it does not;
 *  - for presence, registers WATCHes with the replicas of the names its
 *    clients SUBSCRIBE to, and forwards what the replicas NOTIFY (a newer
 *    record, or that the user's own supernode lost it) as PRESENCE.
 *
 * Sans-I/O: messages in (already authenticated by the sessions), messages
 * out through pl_dir_io, and the time.
 */
#ifndef PL_DIRECTORY_H
#define PL_DIRECTORY_H

#include "overlay.h"
#include "parley.h"

typedef struct pl_dir pl_dir;

typedef struct pl_dir_io {
    void *ctx;
    bool (*send)(void *ctx, const uint8_t pk[32], const pl_addr *addr, const uint8_t *msg, size_t len,
                 pl_time now);
    /* Where a supernode is, from the driver's membership table (NULL: the
     * directory keeps the addresses members came up with). */
    bool (*addr_of)(void *ctx, const uint8_t pk[32], pl_addr *out);
} pl_dir_io;

#define PL_DIR_DEFAULT_REPLICAS 3
#define PL_DIR_DEFAULT_MAX_RECORDS (1u << 20)
#define PL_DIR_DEFAULT_MAX_PENDING 8192
/* A replica that has not answered within this is skipped. */
#define PL_DIR_FETCH_TIMEOUT (1 * PL_SEC)
/* A publish is answered within this, with the replicas that took it. */
#define PL_DIR_PUBLISH_TIMEOUT (2 * PL_SEC)
/* Watches are renewed this often, and expire at a replica after 2.5 times
 * it unless renewed; a supernode that died stops being notified on its own. */
#define PL_DIR_WATCH_REFRESH (120 * PL_SEC)
/* Membership changes that come close together are handed over in one pass. */
#define PL_DIR_HANDOVER_DELAY (1 * PL_SEC)
#define PL_DIR_MAX_SUBSCRIPTIONS_PER_CLIENT 2000

typedef struct pl_dir_config {
    const uint8_t *self_pk;  /* this supernode's key (copied) */
    uint8_t ca_pk[32];
    const pl_rng *rng;
    const pl_mem *mem;       /* NULL: the C heap */
    uint8_t replicas;        /* R; 0: PL_DIR_DEFAULT_REPLICAS */
    unsigned vpoints;        /* ring points per supernode; 0: the ring's default */
    /* A ring to share (the simulator's supernodes share one): the directory
     * only adds to it. NULL: its own. */
    struct pl_ring *shared_ring;
    uint32_t max_records;    /* 0: PL_DIR_DEFAULT_MAX_RECORDS */
    uint32_t max_pending;    /* requests in flight; 0: PL_DIR_DEFAULT_MAX_PENDING, at most 65535 */
} pl_dir_config;

typedef struct pl_dir_stats {
    uint64_t records;          /* held now, as a replica */
    uint64_t stored, refused, stale, not_replica;
    uint64_t publishes, publish_acks;
    uint64_t lookups, lookups_found, lookups_not_found, lookups_unreachable, lookups_busy;
    uint64_t fetches_served, fetch_timeouts;
    uint64_t handed_over, dropped_not_replica, expired;
    uint64_t watches;          /* held now, as a replica */
    uint64_t subscriptions;    /* names watched for clients now */
    uint64_t notifies_sent, presence_sent, offline_sent;
} pl_dir_stats;

typedef enum pl_dir_err {
    PL_DIRECTORY_OK = 0,
    PL_DIRECTORY_ERR_CONFIG,
    PL_DIRECTORY_ERR_NOMEM,
} pl_dir_err;

pl_dir_err pl_dir_new(pl_dir **out, const pl_dir_config *cfg, const pl_dir_io *io);
void pl_dir_free(pl_dir *dir);
/* The revocation list to check records against (the caller keeps it). */
void pl_dir_set_crl(pl_dir *dir, const pl_crl *crl);

/* Membership, as the supernode learns it (itself included). Changes are
 * batched: records are handed over PL_DIR_HANDOVER_DELAY after the first. */
void pl_dir_member_up(pl_dir *dir, const uint8_t pk[32], const pl_addr *addr, pl_time now);
void pl_dir_member_down(pl_dir *dir, const uint8_t pk[32], pl_time now);
size_t pl_dir_member_count(const pl_dir *dir);
/* True when pk is a live member (a supernode this one knows); *addr (may be
 * NULL) gets its address. */
bool pl_dir_is_member(const pl_dir *dir, const uint8_t pk[32], pl_addr *addr);
/* Up to n supernodes other than this one, with their addresses, that a
 * client may fall back on: the ring's choice for the client's key, so that
 * standbys spread evenly over the supernodes. */
size_t pl_dir_standby_for(const pl_dir *dir, const uint8_t client_pk[32], pl_ovl_peer *out, size_t n);

/* A message from a client attached to this supernode (the caller checked
 * that it is attached) or from another supernode. Return false when the
 * type is not the directory's. */
bool pl_dir_client_message(pl_dir *dir, const uint8_t pk[32], const pl_cert *cert, const pl_addr *from,
                           const uint8_t *msg, size_t len, pl_time now);
bool pl_dir_peer_message(pl_dir *dir, const uint8_t pk[32], const pl_addr *from, const uint8_t *msg, size_t len,
                         pl_time now);
/* A client left or was lost: its subscriptions end, and when `offline` its
 * replicas hear that it is offline (not when it only moved to another
 * supernode, where it publishes again). */
void pl_dir_client_gone(pl_dir *dir, const uint8_t pk[32], bool offline, pl_time now);

void pl_dir_tick(pl_dir *dir, pl_time now);
pl_time pl_dir_next_timeout(const pl_dir *dir);

/* What this supernode holds for a name as a replica: true and the record
 * (into buf, cap at least PL_RECORD_MAX_SIZE) when it holds one. */
bool pl_dir_held(const pl_dir *dir, const char *name, uint8_t *buf, size_t cap, size_t *len, bool *offline);
/* The replicas of a name as this supernode sees them; returns how many. */
size_t pl_dir_replicas_of(const pl_dir *dir, const char *name, uint8_t out[][32]);
pl_dir_stats pl_dir_get_stats(const pl_dir *dir);
const char *pl_dir_strerror(pl_dir_err err);

#endif
