/*
 * dirclient.h - a node's side of the directory: publishing its own record,
 * looking others up, and following its contacts' presence.
 *
 * Everything goes through the node's supernode. The node trusts none of
 * what comes back: every record is verified (certificate against the pinned
 * CA, signature, name, freshness), and a record older than one already seen
 * for that name is refused as a replay. A look-up whose answer does not
 * verify is asked again of the next replica.
 *
 * The node core owns one of these and tells it when the node attaches (to
 * publish and re-subscribe) and what to put in the record.
 */
#ifndef PL_DIRCLIENT_H
#define PL_DIRCLIENT_H

#include "overlay.h"
#include "parley.h"
#include "record.h"

typedef struct pl_dirc pl_dirc;

typedef enum pl_dirc_event_type {
    PL_DIRC_EV_PUBLISHED = 1, /* ev->status, ev->stored */
    PL_DIRC_EV_LOOKUP,        /* ev->id, ev->name, ev->status, ev->record when found */
    PL_DIRC_EV_PRESENCE,      /* ev->name, ev->record (or NULL), ev->offline */
} pl_dirc_event_type;

typedef struct pl_dirc_event {
    pl_dirc_event_type type;
    uint32_t id;
    const char *name;
    uint8_t status;           /* PL_DIR_* */
    uint8_t stored;           /* PUBLISHED: replicas that took the record */
    const pl_record *record;  /* verified */
    const uint8_t *record_bytes;
    size_t record_len;
    bool offline;             /* the user's supernode lost it, or it expired */
    pl_time now;
} pl_dirc_event;

typedef struct pl_dirc_io {
    void *ctx;
    /* To the node's supernode; false when there is none right now. */
    bool (*send)(void *ctx, const uint8_t *msg, size_t len, pl_time now);
    void (*event)(void *ctx, const pl_dirc_event *ev);
    /* A request went unanswered: the supernode may be gone (may be NULL).
     * The node checks at once instead of waiting for its next keepalive. */
    void (*suspect)(void *ctx, pl_time now);
} pl_dirc_io;

#define PL_DIRC_MAX_LOOKUPS 64
#define PL_DIRC_MAX_SUBSCRIPTIONS 2000
#define PL_DIRC_LOOKUP_TIMEOUT (4 * PL_SEC)
/* A look-up still unanswered this long after it was asked has failed. */
#define PL_DIRC_LOOKUP_GIVE_UP (20 * PL_SEC)
/* A record lives an hour and is published again every half hour. */
#define PL_DIRC_RECORD_LIFETIME (3600 * PL_SEC)
#define PL_DIRC_REPUBLISH (1800 * PL_SEC)
/* A publish not answered by then (or refused) is tried again, backing off. */
#define PL_DIRC_PUBLISH_RETRY (5 * PL_SEC)

typedef struct pl_dirc_config {
    const pl_identity *identity; /* copied: signs records */
    const uint8_t *cert;         /* own certificate, encoded */
    size_t cert_len;
    uint8_t ca_pk[32];
    const pl_rng *rng;
    const pl_mem *mem;
} pl_dirc_config;

/* What the node's record says besides presence (the node core fills it). */
typedef struct pl_dirc_where {
    uint8_t n_supernodes;
    pl_record_supernode supernodes[PL_RECORD_MAX_SUPERNODES];
    uint8_t n_candidates;
    pl_record_candidate candidates[PL_RECORD_MAX_CANDIDATES];
    bool private_mode;
    uint8_t nat_mapping, nat_filtering, nat_flags;
    uint32_t capabilities;
} pl_dirc_where;

typedef enum pl_dirc_err {
    PL_DIRC_OK = 0,
    PL_DIRC_ERR_CONFIG,
    PL_DIRC_ERR_NOMEM,
    PL_DIRC_ERR_BAD_NAME,
    PL_DIRC_ERR_BUSY,    /* too many look-ups in flight */
    PL_DIRC_ERR_FULL,    /* too many subscriptions */
    PL_DIRC_ERR_STATUS,  /* a status text too long or with control characters */
} pl_dirc_err;

pl_dirc_err pl_dirc_new(pl_dirc **out, const pl_dirc_config *cfg, const pl_dirc_io *io);
void pl_dirc_free(pl_dirc *dc);

/* The node is attached (again): publish now, re-subscribe, re-send look-ups. */
void pl_dirc_attached(pl_dirc *dc, const pl_dirc_where *where, pl_time now);
void pl_dirc_detached(pl_dirc *dc);
/* Where the node is changed (an address, the NAT): publish again. */
void pl_dirc_update(pl_dirc *dc, const pl_dirc_where *where, pl_time now);
pl_dirc_err pl_dirc_set_presence(pl_dirc *dc, uint8_t presence, const char *status, pl_time now);

/* Starts a look-up; its result comes as a PL_DIRC_EV_LOOKUP event with *id. */
pl_dirc_err pl_dirc_lookup(pl_dirc *dc, const char *name, pl_time now, uint32_t *id);
pl_dirc_err pl_dirc_subscribe(pl_dirc *dc, const char *name, pl_time now);
pl_dirc_err pl_dirc_unsubscribe(pl_dirc *dc, const char *name, pl_time now);

/* A message from the supernode; false if not the directory's. */
bool pl_dirc_message(pl_dirc *dc, const uint8_t *msg, size_t len, pl_time now);
void pl_dirc_tick(pl_dirc *dc, pl_time now);
pl_time pl_dirc_next_timeout(const pl_dirc *dc);

/* The last record published (for status), and its sequence number. */
uint64_t pl_dirc_sequence(const pl_dirc *dc);
uint8_t pl_dirc_presence(const pl_dirc *dc, const char **status);
const char *pl_dirc_strerror(pl_dirc_err err);

#endif
