/*
 * contacts.h - a user's contacts, kept on the user's own machine in SQLite
 * (contacts.db in the home directory, WAL, synchronous FULL): nothing about
 * whom a user knows is stored on the network.
 *
 * A contact is a user name, when it was added, and the signing key seen for
 * that name the first time it was looked up (pinned, so that a later change
 * of key can be shown to the user as a warning).
 */
#ifndef PL_CONTACTS_H
#define PL_CONTACTS_H

#include "parley.h"

typedef struct pl_contacts pl_contacts;

typedef struct pl_contact {
    char name[PL_NAME_MAX + 1];
    uint64_t added_at; /* Unix seconds */
    bool pinned;
    uint8_t pinned_key[32];
} pl_contact;

typedef enum pl_contacts_err {
    PL_CONTACTS_OK = 0,
    PL_CONTACTS_ERR_DB,        /* SQLite failed; the message says why */
    PL_CONTACTS_ERR_BAD_NAME,
    PL_CONTACTS_ERR_EXISTS,
    PL_CONTACTS_ERR_NOT_FOUND,
} pl_contacts_err;

pl_contacts_err pl_contacts_open(pl_contacts **out, const char *path);
void pl_contacts_close(pl_contacts *c);
pl_contacts_err pl_contacts_add(pl_contacts *c, const char *name, uint64_t now_s);
pl_contacts_err pl_contacts_remove(pl_contacts *c, const char *name);
/* Calls fn for every contact in name order; stops early if fn returns false. */
pl_contacts_err pl_contacts_each(pl_contacts *c, bool (*fn)(void *ctx, const pl_contact *contact), void *ctx);
pl_contacts_err pl_contacts_get(pl_contacts *c, const char *name, pl_contact *out);
/* Pins the key seen for a contact (only the first one sticks; use
 * pl_contacts_repin to accept a changed key). */
pl_contacts_err pl_contacts_pin(pl_contacts *c, const char *name, const uint8_t key[32]);
pl_contacts_err pl_contacts_repin(pl_contacts *c, const char *name, const uint8_t key[32]);
const char *pl_contacts_last_error(const pl_contacts *c);

#endif
