/*
 * store.h - the signing authority's accounts in SQLite.
 *
 * The database runs in WAL mode with synchronous=FULL: a transaction is on
 * disk (the WAL fsynced) before COMMIT returns, so a registration the CA has
 * acknowledged survives kill -9 or a power cut. One file, DIR/accounts.db.
 */
#ifndef PL_CA_STORE_SQL_H
#define PL_CA_STORE_SQL_H

#include "ca_server.h"

typedef struct pl_ca_db pl_ca_db;

/* Opens (and with create, creates) the database and its schema. */
pl_ca_store_err pl_ca_db_open(pl_ca_db **out, const char *path, bool create);
void pl_ca_db_close(pl_ca_db *db);
/* The function table for pl_ca_server_new; valid while db is open. */
pl_ca_store pl_ca_db_store(pl_ca_db *db);
/* The last SQLite error message, for logs. */
const char *pl_ca_db_errmsg(const pl_ca_db *db);

typedef void (*pl_ca_db_list_cb)(void *ctx, const pl_ca_account *acc);
/* Calls cb for every account, in name order. */
pl_ca_store_err pl_ca_db_list(pl_ca_db *db, pl_ca_db_list_cb cb, void *ctx);

#endif
