/* contacts.c - contacts in SQLite (contacts.h). */
#include "contacts.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pl_contacts {
    sqlite3 *db;
    char error[256];
};

static pl_contacts_err db_fail(pl_contacts *c)
{
    snprintf(c->error, sizeof c->error, "%s", sqlite3_errmsg(c->db));
    return PL_CONTACTS_ERR_DB;
}

pl_contacts_err pl_contacts_open(pl_contacts **out, const char *path)
{
    *out = NULL;
    pl_contacts *c = calloc(1, sizeof *c);
    if (!c) return PL_CONTACTS_ERR_DB;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
    if (sqlite3_open_v2(path, &c->db, flags, NULL) != SQLITE_OK ||
        sqlite3_exec(c->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                     "CREATE TABLE IF NOT EXISTS contacts ("
                     "  name TEXT PRIMARY KEY, added_at INTEGER NOT NULL, pinned_key BLOB);",
                     NULL, NULL, NULL) != SQLITE_OK) {
        if (c->db) sqlite3_close(c->db);
        free(c);
        return PL_CONTACTS_ERR_DB;
    }
    *out = c;
    return PL_CONTACTS_OK;
}

void pl_contacts_close(pl_contacts *c)
{
    if (!c) return;
    sqlite3_close(c->db);
    free(c);
}

static bool normal(const char *name, char out[PL_NAME_MAX + 1]) { return pl_name_normalize(name, out) == PL_NAME_OK; }

/* Runs one statement with a name (and optionally a key) bound; returns the
 * rows changed, or -1. */
static int run(pl_contacts *c, const char *sql, const char *name, const uint8_t *key, uint64_t when)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (key) sqlite3_bind_blob(st, 2, key, 32, SQLITE_STATIC);
    else if (when) sqlite3_bind_int64(st, 2, (sqlite3_int64)when);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return -1;
    return sqlite3_changes(c->db);
}

pl_contacts_err pl_contacts_add(pl_contacts *c, const char *name, uint64_t now_s)
{
    char n[PL_NAME_MAX + 1];
    if (!normal(name, n)) return PL_CONTACTS_ERR_BAD_NAME;
    int k = run(c, "INSERT OR IGNORE INTO contacts(name, added_at) VALUES(?1, ?2)", n, NULL, now_s ? now_s : 1);
    if (k < 0) return db_fail(c);
    return k == 0 ? PL_CONTACTS_ERR_EXISTS : PL_CONTACTS_OK;
}

pl_contacts_err pl_contacts_remove(pl_contacts *c, const char *name)
{
    char n[PL_NAME_MAX + 1];
    if (!normal(name, n)) return PL_CONTACTS_ERR_BAD_NAME;
    int k = run(c, "DELETE FROM contacts WHERE name = ?1", n, NULL, 0);
    if (k < 0) return db_fail(c);
    return k == 0 ? PL_CONTACTS_ERR_NOT_FOUND : PL_CONTACTS_OK;
}

static void row(sqlite3_stmt *st, pl_contact *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", (const char *)sqlite3_column_text(st, 0));
    out->added_at = (uint64_t)sqlite3_column_int64(st, 1);
    if (sqlite3_column_bytes(st, 2) == 32) {
        out->pinned = true;
        memcpy(out->pinned_key, sqlite3_column_blob(st, 2), 32);
    }
}

pl_contacts_err pl_contacts_each(pl_contacts *c, bool (*fn)(void *ctx, const pl_contact *contact), void *ctx)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(c->db, "SELECT name, added_at, pinned_key FROM contacts ORDER BY name", -1, &st, NULL) !=
        SQLITE_OK)
        return db_fail(c);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        pl_contact x;
        row(st, &x);
        if (!fn(ctx, &x)) break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? PL_CONTACTS_OK : db_fail(c);
}

pl_contacts_err pl_contacts_get(pl_contacts *c, const char *name, pl_contact *out)
{
    char n[PL_NAME_MAX + 1];
    if (!normal(name, n)) return PL_CONTACTS_ERR_BAD_NAME;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(c->db, "SELECT name, added_at, pinned_key FROM contacts WHERE name = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return db_fail(c);
    sqlite3_bind_text(st, 1, n, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) row(st, out);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW) return PL_CONTACTS_OK;
    return rc == SQLITE_DONE ? PL_CONTACTS_ERR_NOT_FOUND : db_fail(c);
}

pl_contacts_err pl_contacts_pin(pl_contacts *c, const char *name, const uint8_t key[32])
{
    char n[PL_NAME_MAX + 1];
    if (!normal(name, n)) return PL_CONTACTS_ERR_BAD_NAME;
    int k = run(c, "UPDATE contacts SET pinned_key = ?2 WHERE name = ?1 AND pinned_key IS NULL", n, key, 0);
    return k < 0 ? db_fail(c) : PL_CONTACTS_OK;
}

pl_contacts_err pl_contacts_repin(pl_contacts *c, const char *name, const uint8_t key[32])
{
    char n[PL_NAME_MAX + 1];
    if (!normal(name, n)) return PL_CONTACTS_ERR_BAD_NAME;
    int k = run(c, "UPDATE contacts SET pinned_key = ?2 WHERE name = ?1", n, key, 0);
    if (k < 0) return db_fail(c);
    return k == 0 ? PL_CONTACTS_ERR_NOT_FOUND : PL_CONTACTS_OK;
}

const char *pl_contacts_last_error(const pl_contacts *c) { return c->error; }
