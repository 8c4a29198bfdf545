/*
 * store.c - the SQLite account store behind pl_ca_store.
 *
 * Schema:
 *   accounts(name PRIMARY KEY, lower case and unique case-insensitively,
 *            sign_pk, serial of the current certificate, created, issued_at,
 *            not_after, revoked, cert)
 *   certs(serial PRIMARY KEY, name, issued_at, not_after, cert): every
 *            certificate ever issued, so that revoking an account revokes
 *            the certificates an earlier renewal left valid, too.
 *   meta(key, value): the CRL number.
 * Each change is one IMMEDIATE transaction; the CA is single-threaded, and
 * the busy timeout lets the operator's `parley-ca revoke` run beside it.
 */
#include "store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pl_ca_db {
    sqlite3 *db;
};

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS accounts("
    " name TEXT PRIMARY KEY COLLATE NOCASE"
    "  CHECK (name = lower(name) AND length(name) BETWEEN 3 AND 32),"
    " sign_pk BLOB NOT NULL CHECK (length(sign_pk) = 32),"
    " serial INTEGER NOT NULL,"
    " created INTEGER NOT NULL,"
    " issued_at INTEGER NOT NULL,"
    " not_after INTEGER NOT NULL,"
    " revoked INTEGER NOT NULL DEFAULT 0,"
    " cert BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS certs("
    " serial INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL REFERENCES accounts(name),"
    " issued_at INTEGER NOT NULL,"
    " not_after INTEGER NOT NULL,"
    " cert BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO meta VALUES('schema', 1), ('crl_number', 0);";

static pl_ca_db *self(void *ctx) { return ctx; }

pl_ca_store_err pl_ca_db_open(pl_ca_db **out, const char *path, bool create)
{
    *out = NULL;
    pl_ca_db *d = calloc(1, sizeof *d);
    if (!d) return PL_CA_STORE_IO;
    int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &d->db, flags, NULL) != SQLITE_OK) {
        if (d->db) sqlite3_close(d->db);
        free(d);
        return create ? PL_CA_STORE_IO : PL_CA_STORE_NOT_FOUND;
    }
    sqlite3_busy_timeout(d->db, 5000);
    /* WAL + FULL: COMMIT returns only after the WAL is fsynced. */
    if (sqlite3_exec(d->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", NULL, NULL,
                     NULL) != SQLITE_OK ||
        sqlite3_exec(d->db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_close(d->db);
        free(d);
        return PL_CA_STORE_IO;
    }
    *out = d;
    return PL_CA_STORE_OK;
}

void pl_ca_db_close(pl_ca_db *d)
{
    if (!d) return;
    sqlite3_close(d->db);
    free(d);
}

const char *pl_ca_db_errmsg(const pl_ca_db *d) { return d ? sqlite3_errmsg(d->db) : "no database"; }

static sqlite3_stmt *prepare(pl_ca_db *d, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d->db, sql, -1, &st, NULL) != SQLITE_OK) return NULL;
    return st;
}

static void row_to_account(sqlite3_stmt *st, pl_ca_account *a)
{
    memset(a, 0, sizeof *a);
    const unsigned char *name = sqlite3_column_text(st, 0);
    if (name) snprintf(a->name, sizeof a->name, "%s", (const char *)name);
    if (sqlite3_column_bytes(st, 1) == 32) memcpy(a->sign_pk, sqlite3_column_blob(st, 1), 32);
    a->serial = (uint64_t)sqlite3_column_int64(st, 2);
    a->created = (uint64_t)sqlite3_column_int64(st, 3);
    a->issued_at = (uint64_t)sqlite3_column_int64(st, 4);
    a->not_after = (uint64_t)sqlite3_column_int64(st, 5);
    a->revoked = sqlite3_column_int(st, 6) != 0;
    int n = sqlite3_column_bytes(st, 7);
    if (n > 0 && (size_t)n <= sizeof a->cert) {
        memcpy(a->cert, sqlite3_column_blob(st, 7), (size_t)n);
        a->cert_len = (size_t)n;
    }
}

#define ACCOUNT_COLUMNS "name, sign_pk, serial, created, issued_at, not_after, revoked, cert"

static pl_ca_store_err db_lookup(void *ctx, const char *name, pl_ca_account *out)
{
    sqlite3_stmt *st = prepare(self(ctx), "SELECT " ACCOUNT_COLUMNS " FROM accounts WHERE name = ?1");
    if (!st) return PL_CA_STORE_IO;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    pl_ca_store_err e = PL_CA_STORE_IO;
    if (rc == SQLITE_ROW) {
        row_to_account(st, out);
        e = PL_CA_STORE_OK;
    } else if (rc == SQLITE_DONE) {
        e = PL_CA_STORE_NOT_FOUND;
    }
    sqlite3_finalize(st);
    return e;
}

static pl_ca_store_err db_next_serial(void *ctx, uint64_t *out)
{
    /* Certificates are never deleted, so one past the largest serial is a
     * serial never issued. The CA is the only writer of certs. */
    sqlite3_stmt *st = prepare(self(ctx), "SELECT COALESCE(MAX(serial), 0) + 1 FROM certs");
    if (!st) return PL_CA_STORE_IO;
    pl_ca_store_err e = PL_CA_STORE_IO;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *out = (uint64_t)sqlite3_column_int64(st, 0);
        e = PL_CA_STORE_OK;
    }
    sqlite3_finalize(st);
    return e;
}

static bool exec(pl_ca_db *d, const char *sql) { return sqlite3_exec(d->db, sql, NULL, NULL, NULL) == SQLITE_OK; }

static pl_ca_store_err rollback(pl_ca_db *d, pl_ca_store_err e)
{
    exec(d, "ROLLBACK");
    return e;
}

static pl_ca_store_err commit(pl_ca_db *d)
{
    if (!exec(d, "COMMIT")) return rollback(d, PL_CA_STORE_IO);
    return PL_CA_STORE_OK;
}

/* Runs one write statement; maps constraint failures to EXISTS. */
static pl_ca_store_err step_write(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE) return PL_CA_STORE_OK;
    if ((rc & 0xff) == SQLITE_CONSTRAINT) return PL_CA_STORE_EXISTS;
    return PL_CA_STORE_IO;
}

static pl_ca_store_err insert_cert(pl_ca_db *d, const pl_ca_account *a)
{
    sqlite3_stmt *st = prepare(d, "INSERT INTO certs(serial, name, issued_at, not_after, cert) VALUES(?1,?2,?3,?4,?5)");
    if (!st) return PL_CA_STORE_IO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)a->serial);
    sqlite3_bind_text(st, 2, a->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)a->issued_at);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)a->not_after);
    sqlite3_bind_blob(st, 5, a->cert, (int)a->cert_len, SQLITE_STATIC);
    return step_write(st);
}

static pl_ca_store_err db_insert(void *ctx, const pl_ca_account *a)
{
    pl_ca_db *d = self(ctx);
    if (!exec(d, "BEGIN IMMEDIATE")) return PL_CA_STORE_IO;
    sqlite3_stmt *st = prepare(d, "INSERT INTO accounts(" ACCOUNT_COLUMNS ") VALUES(?1,?2,?3,?4,?5,?6,?7,?8)");
    if (!st) return rollback(d, PL_CA_STORE_IO);
    sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, a->sign_pk, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)a->serial);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)a->created);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)a->issued_at);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)a->not_after);
    sqlite3_bind_int(st, 7, a->revoked ? 1 : 0);
    sqlite3_bind_blob(st, 8, a->cert, (int)a->cert_len, SQLITE_STATIC);
    pl_ca_store_err e = step_write(st);
    if (e == PL_CA_STORE_OK) e = insert_cert(d, a);
    if (e != PL_CA_STORE_OK) return rollback(d, e);
    return commit(d);
}

static pl_ca_store_err db_renew(void *ctx, const pl_ca_account *a)
{
    pl_ca_db *d = self(ctx);
    if (!exec(d, "BEGIN IMMEDIATE")) return PL_CA_STORE_IO;
    sqlite3_stmt *st = prepare(d, "UPDATE accounts SET serial = ?2, issued_at = ?3, not_after = ?4, cert = ?5 "
                                  "WHERE name = ?1 AND revoked = 0");
    if (!st) return rollback(d, PL_CA_STORE_IO);
    sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)a->serial);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)a->issued_at);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)a->not_after);
    sqlite3_bind_blob(st, 5, a->cert, (int)a->cert_len, SQLITE_STATIC);
    pl_ca_store_err e = step_write(st);
    if (e == PL_CA_STORE_OK && sqlite3_changes(d->db) != 1) e = PL_CA_STORE_NOT_FOUND;
    if (e == PL_CA_STORE_OK) e = insert_cert(d, a);
    if (e != PL_CA_STORE_OK) return rollback(d, e);
    return commit(d);
}

static pl_ca_store_err read_crl_number(pl_ca_db *d, uint64_t *number)
{
    sqlite3_stmt *st = prepare(d, "SELECT value FROM meta WHERE key = 'crl_number'");
    if (!st) return PL_CA_STORE_IO;
    pl_ca_store_err e = PL_CA_STORE_IO;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *number = (uint64_t)sqlite3_column_int64(st, 0);
        e = PL_CA_STORE_OK;
    }
    sqlite3_finalize(st);
    return e;
}

static pl_ca_store_err db_revoke(void *ctx, const char *name, uint64_t *crl_number)
{
    pl_ca_db *d = self(ctx);
    if (!exec(d, "BEGIN IMMEDIATE")) return PL_CA_STORE_IO;
    sqlite3_stmt *st = prepare(d, "UPDATE accounts SET revoked = 1 WHERE name = ?1 AND revoked = 0");
    if (!st) return rollback(d, PL_CA_STORE_IO);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    pl_ca_store_err e = step_write(st);
    if (e != PL_CA_STORE_OK) return rollback(d, e);
    if (sqlite3_changes(d->db) == 1) {
        if (!exec(d, "UPDATE meta SET value = value + 1 WHERE key = 'crl_number'")) return rollback(d, PL_CA_STORE_IO);
    } else {
        /* Nothing changed: revoked already, or no such account. */
        pl_ca_account acc;
        e = db_lookup(ctx, name, &acc);
        if (e != PL_CA_STORE_OK) return rollback(d, e);
    }
    uint64_t number = 0;
    e = read_crl_number(d, &number);
    if (e != PL_CA_STORE_OK) return rollback(d, e);
    e = commit(d);
    if (e == PL_CA_STORE_OK && crl_number) *crl_number = number;
    return e;
}

static pl_ca_store_err db_crl_number(void *ctx, uint64_t *number) { return read_crl_number(self(ctx), number); }

static pl_ca_store_err db_revoked_serials(void *ctx, uint64_t *out, uint32_t cap, uint32_t *total)
{
    sqlite3_stmt *st = prepare(self(ctx), "SELECT c.serial FROM certs c JOIN accounts a ON a.name = c.name "
                                          "WHERE a.revoked = 1 ORDER BY c.serial");
    if (!st) return PL_CA_STORE_IO;
    uint32_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n < cap) out[n] = (uint64_t)sqlite3_column_int64(st, 0);
        if (n < UINT32_MAX) n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return PL_CA_STORE_IO;
    *total = n;
    return PL_CA_STORE_OK;
}

pl_ca_store pl_ca_db_store(pl_ca_db *d)
{
    return (pl_ca_store){.ctx = d,
                         .lookup = db_lookup,
                         .next_serial = db_next_serial,
                         .insert = db_insert,
                         .renew = db_renew,
                         .revoke = db_revoke,
                         .crl_number = db_crl_number,
                         .revoked_serials = db_revoked_serials};
}

pl_ca_store_err pl_ca_db_list(pl_ca_db *d, pl_ca_db_list_cb cb, void *ctx)
{
    sqlite3_stmt *st = prepare(d, "SELECT " ACCOUNT_COLUMNS " FROM accounts ORDER BY name");
    if (!st) return PL_CA_STORE_IO;
    int rc;
    pl_ca_account acc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        row_to_account(st, &acc);
        cb(ctx, &acc);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? PL_CA_STORE_OK : PL_CA_STORE_IO;
}
