/* msgstore.c - chat history and voicemail in SQLite (msgstore.h). */
#include "msgstore.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct pl_msgstore {
    sqlite3 *db;
    char error[256];
};

static const char SCHEMA[] =
    "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA secure_delete=ON;"
    "CREATE TABLE IF NOT EXISTS conversations ("
    "  peer TEXT PRIMARY KEY, out_epoch INTEGER NOT NULL, out_next INTEGER NOT NULL,"
    "  in_epoch INTEGER NOT NULL, in_next INTEGER NOT NULL, read_through INTEGER NOT NULL, cert BLOB);"
    "CREATE TABLE IF NOT EXISTS messages ("
    "  n INTEGER PRIMARY KEY AUTOINCREMENT, id BLOB NOT NULL UNIQUE, peer TEXT NOT NULL,"
    "  outgoing INTEGER NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL, sent_at INTEGER NOT NULL,"
    "  at INTEGER NOT NULL, state INTEGER NOT NULL, via_mailbox INTEGER NOT NULL, late INTEGER NOT NULL,"
    "  text BLOB NOT NULL, envelope BLOB);"
    "CREATE INDEX IF NOT EXISTS messages_by_peer ON messages(peer, n);"
    "CREATE TABLE IF NOT EXISTS voicemail ("
    "  id BLOB PRIMARY KEY, peer TEXT NOT NULL, sent_at INTEGER NOT NULL, received_at INTEGER NOT NULL,"
    "  duration_ms INTEGER NOT NULL, heard INTEGER NOT NULL, state INTEGER NOT NULL, body BLOB);";

#define MSG_COLUMNS "id, peer, outgoing, epoch, seq, sent_at, at, state, via_mailbox, late, text"

static pl_msgstore_err db_fail(pl_msgstore *ms)
{
    snprintf(ms->error, sizeof ms->error, "%s", sqlite3_errmsg(ms->db));
    return PL_MSGSTORE_ERR_DB;
}

pl_msgstore_err pl_msgstore_open(pl_msgstore **out, const char *path)
{
    *out = NULL;
    /* Created private before SQLite opens it; its WAL and shared-memory
     * files take the same mode. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return PL_MSGSTORE_ERR_DB;
    fchmod(fd, 0600);
    close(fd);
    pl_msgstore *ms = calloc(1, sizeof *ms);
    if (!ms) return PL_MSGSTORE_ERR_DB;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
    if (sqlite3_open_v2(path, &ms->db, flags, NULL) != SQLITE_OK ||
        sqlite3_exec(ms->db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK) {
        if (ms->db) sqlite3_close(ms->db);
        free(ms);
        return PL_MSGSTORE_ERR_DB;
    }
    *out = ms;
    return PL_MSGSTORE_OK;
}

void pl_msgstore_close(pl_msgstore *ms)
{
    if (!ms) return;
    sqlite3_close(ms->db);
    free(ms);
}

const char *pl_msgstore_last_error(const pl_msgstore *ms) { return ms->error; }

static sqlite3_stmt *prepare(pl_msgstore *ms, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ms->db, sql, -1, &st, NULL) != SQLITE_OK) {
        db_fail(ms);
        return NULL;
    }
    return st;
}

/* Runs a prepared statement that returns no rows; finalises it. */
static pl_msgstore_err finish(pl_msgstore *ms, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? PL_MSGSTORE_OK : db_fail(ms);
}

static bool normal(const char *name, char out[PL_NAME_MAX + 1]) { return pl_name_normalize(name, out) == PL_NAME_OK; }

/* ---- conversations ------------------------------------------------------------------------ */

static pl_msgstore_err put_conv(pl_msgstore *ms, const pl_chat_state *s, const uint8_t *cert, size_t cert_len)
{
    char peer[PL_NAME_MAX + 1];
    if (!normal(s->peer, peer) || cert_len > PL_CERT_MAX_SIZE) return PL_MSGSTORE_ERR_ARG;
    sqlite3_stmt *st = prepare(ms, "INSERT INTO conversations(peer, out_epoch, out_next, in_epoch, in_next, "
                                   "read_through, cert) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                                   "ON CONFLICT(peer) DO UPDATE SET out_epoch = ?2, out_next = ?3, in_epoch = ?4, "
                                   "in_next = ?5, read_through = ?6, cert = coalesce(?7, cert)");
    if (!st) return PL_MSGSTORE_ERR_DB;
    sqlite3_bind_text(st, 1, peer, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)s->out_epoch);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)s->out_next);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)s->in_epoch);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)s->in_next);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)s->read_through);
    if (cert && cert_len) sqlite3_bind_blob(st, 7, cert, (int)cert_len, SQLITE_STATIC);
    else sqlite3_bind_null(st, 7);
    return finish(ms, st);
}

pl_msgstore_err pl_msgstore_put_conv(pl_msgstore *ms, const pl_chat_state *s, const uint8_t *cert, size_t cert_len)
{
    return put_conv(ms, s, cert, cert_len);
}

static void read_conv(sqlite3_stmt *st, pl_chat_state *s, uint8_t *cert, size_t *cert_len)
{
    memset(s, 0, sizeof *s);
    snprintf(s->peer, sizeof s->peer, "%s", (const char *)sqlite3_column_text(st, 0));
    s->out_epoch = (uint64_t)sqlite3_column_int64(st, 1);
    s->out_next = (uint64_t)sqlite3_column_int64(st, 2);
    s->in_epoch = (uint64_t)sqlite3_column_int64(st, 3);
    s->in_next = (uint64_t)sqlite3_column_int64(st, 4);
    s->read_through = (uint64_t)sqlite3_column_int64(st, 5);
    int n = sqlite3_column_bytes(st, 6);
    if (cert_len) *cert_len = 0;
    if (cert && cert_len && n > 0 && n <= PL_CERT_MAX_SIZE) {
        memcpy(cert, sqlite3_column_blob(st, 6), (size_t)n);
        *cert_len = (size_t)n;
    }
}

#define CONV_COLUMNS "peer, out_epoch, out_next, in_epoch, in_next, read_through, cert"

pl_msgstore_err pl_msgstore_get_conv(pl_msgstore *ms, const char *peer, pl_chat_state *s, uint8_t *cert,
                                     size_t *cert_len)
{
    char norm[PL_NAME_MAX + 1];
    if (!normal(peer, norm)) return PL_MSGSTORE_ERR_ARG;
    sqlite3_stmt *st = prepare(ms, "SELECT " CONV_COLUMNS " FROM conversations WHERE peer = ?1");
    if (!st) return PL_MSGSTORE_ERR_DB;
    sqlite3_bind_text(st, 1, norm, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) read_conv(st, s, cert, cert_len);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW) return PL_MSGSTORE_OK;
    return rc == SQLITE_DONE ? PL_MSGSTORE_ERR_NOT_FOUND : db_fail(ms);
}

pl_msgstore_err pl_msgstore_each_conv(pl_msgstore *ms,
                                      bool (*fn)(void *ctx, const pl_chat_state *s, const uint8_t *cert,
                                                 size_t cert_len),
                                      void *ctx)
{
    sqlite3_stmt *st = prepare(ms, "SELECT " CONV_COLUMNS " FROM conversations ORDER BY peer");
    if (!st) return PL_MSGSTORE_ERR_DB;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        pl_chat_state s;
        uint8_t cert[PL_CERT_MAX_SIZE];
        size_t cert_len;
        read_conv(st, &s, cert, &cert_len);
        if (!fn(ctx, &s, cert, cert_len)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? PL_MSGSTORE_OK : db_fail(ms);
}

/* ---- messages ----------------------------------------------------------------------------- */

static void read_msg(sqlite3_stmt *st, int col, pl_msg *m)
{
    memset(m, 0, sizeof *m);
    if (sqlite3_column_bytes(st, col) == PL_ENV_ID_SIZE) memcpy(m->id, sqlite3_column_blob(st, col), PL_ENV_ID_SIZE);
    snprintf(m->peer, sizeof m->peer, "%s", (const char *)sqlite3_column_text(st, col + 1));
    m->outgoing = sqlite3_column_int(st, col + 2) != 0;
    m->epoch = (uint64_t)sqlite3_column_int64(st, col + 3);
    m->seq = (uint64_t)sqlite3_column_int64(st, col + 4);
    m->sent_at = (pl_time)sqlite3_column_int64(st, col + 5);
    m->at = (pl_time)sqlite3_column_int64(st, col + 6);
    m->state = (uint8_t)sqlite3_column_int(st, col + 7);
    m->via_mailbox = sqlite3_column_int(st, col + 8) != 0;
    m->late = sqlite3_column_int(st, col + 9) != 0;
    int n = sqlite3_column_bytes(st, col + 10);
    if (n > PL_CHAT_MAX_TEXT) n = PL_CHAT_MAX_TEXT;
    if (n > 0) memcpy(m->text, sqlite3_column_blob(st, col + 10), (size_t)n);
    m->text[n > 0 ? n : 0] = 0;
    m->text_len = n > 0 ? (size_t)n : 0;
}

pl_msgstore_err pl_msgstore_add(pl_msgstore *ms, const pl_msg *m, const uint8_t *env, size_t env_len,
                                const pl_chat_state *s)
{
    char peer[PL_NAME_MAX + 1];
    if (!normal(m->peer, peer) || m->text_len > PL_CHAT_MAX_TEXT) return PL_MSGSTORE_ERR_ARG;
    if (sqlite3_exec(ms->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) return db_fail(ms);
    sqlite3_stmt *st = prepare(ms, "INSERT OR IGNORE INTO messages(" MSG_COLUMNS ", envelope) "
                                   "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
    pl_msgstore_err err = PL_MSGSTORE_ERR_DB;
    if (st) {
        sqlite3_bind_blob(st, 1, m->id, PL_ENV_ID_SIZE, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, peer, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 3, m->outgoing);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)m->epoch);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)m->seq);
        sqlite3_bind_int64(st, 6, (sqlite3_int64)m->sent_at);
        sqlite3_bind_int64(st, 7, (sqlite3_int64)m->at);
        sqlite3_bind_int(st, 8, m->state);
        sqlite3_bind_int(st, 9, m->via_mailbox);
        sqlite3_bind_int(st, 10, m->late);
        /* A blob: the text is UTF-8 the engine checked, kept byte for byte. */
        sqlite3_bind_blob(st, 11, m->text, (int)m->text_len, SQLITE_STATIC);
        if (env && env_len) sqlite3_bind_blob(st, 12, env, (int)env_len, SQLITE_STATIC);
        else sqlite3_bind_null(st, 12);
        err = finish(ms, st);
        if (!err && sqlite3_changes(ms->db) == 0) err = PL_MSGSTORE_ERR_EXISTS;
    }
    if (!err && s) err = put_conv(ms, s, NULL, 0);
    if (err) {
        sqlite3_exec(ms->db, "ROLLBACK", NULL, NULL, NULL);
        return err;
    }
    if (sqlite3_exec(ms->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        err = db_fail(ms);
        sqlite3_exec(ms->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return err;
}

pl_msgstore_err pl_msgstore_set_state(pl_msgstore *ms, const uint8_t id[PL_ENV_ID_SIZE], uint8_t state)
{
    if (state > PL_MSG_FAILED) return PL_MSGSTORE_ERR_ARG;
    const char *sql = state == PL_MSG_FAILED
                          ? "UPDATE messages SET state = ?2, envelope = NULL WHERE id = ?1 AND outgoing = 1 "
                            "AND state < 2"
                          : "UPDATE messages SET state = ?2, envelope = CASE WHEN ?2 >= 2 THEN NULL ELSE envelope END "
                            "WHERE id = ?1 AND outgoing = 1 AND (state < ?2 OR state = 4)";
    sqlite3_stmt *st = prepare(ms, sql);
    if (!st) return PL_MSGSTORE_ERR_DB;
    sqlite3_bind_blob(st, 1, id, PL_ENV_ID_SIZE, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, state);
    return finish(ms, st);
}

pl_msgstore_err pl_msgstore_peer_read(pl_msgstore *ms, const char *peer, uint64_t epoch, uint64_t through,
                                      int *changed)
{
    char norm[PL_NAME_MAX + 1];
    if (changed) *changed = 0;
    if (!normal(peer, norm)) return PL_MSGSTORE_ERR_ARG;
    sqlite3_stmt *st = prepare(ms, "UPDATE messages SET state = 3, envelope = NULL WHERE peer = ?1 AND outgoing = 1 "
                                   "AND epoch = ?2 AND seq <= ?3 AND state <> 3");
    if (!st) return PL_MSGSTORE_ERR_DB;
    sqlite3_bind_text(st, 1, norm, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)epoch);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)through);
    pl_msgstore_err err = finish(ms, st);
    if (!err && changed) *changed = sqlite3_changes(ms->db);
    return err;
}

pl_msgstore_err pl_msgstore_mark_read(pl_msgstore *ms, const char *peer, uint64_t epoch, uint64_t *through,
                                      int *changed)
{
    char norm[PL_NAME_MAX + 1];
    *through = 0;
    if (changed) *changed = 0;
    if (!normal(peer, norm)) return PL_MSGSTORE_ERR_ARG;
    sqlite3_stmt *st = prepare(ms, "UPDATE messages SET state = 11 WHERE peer = ?1 AND outgoing = 0 AND state = 10");
    if (!st) return PL_MSGSTORE_ERR_DB;
    sqlite3_bind_text(st, 1, norm, -1, SQLITE_TRANSIENT);
    pl_msgstore_err err = finish(ms, st);
    if (err) return err;
    if (changed) *changed = sqlite3_changes(ms->db);
    st = prepare(ms, "SELECT max(seq) FROM messages WHERE peer = ?1 AND outgoing = 0 AND epoch = ?2");
    if (!st) return PL_MSGSTORE_ERR_DB;
    sqlite3_bind_text(st, 1, norm, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)epoch);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *through = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? PL_MSGSTORE_OK : db_fail(ms);
}

pl_msgstore_err pl_msgstore_get(pl_msgstore *ms, const uint8_t id[PL_ENV_ID_SIZE], pl_msg *out)
{
    sqlite3_stmt *st = prepare(ms, "SELECT " MSG_COLUMNS " FROM messages WHERE id = ?1");
    if (!st) return PL_MSGSTORE_ERR_DB;
    sqlite3_bind_blob(st, 1, id, PL_ENV_ID_SIZE, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) read_msg(st, 0, out);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW) return PL_MSGSTORE_OK;
    return rc == SQLITE_DONE ? PL_MSGSTORE_ERR_NOT_FOUND : db_fail(ms);
}

pl_msgstore_err pl_msgstore_history(pl_msgstore *ms, const char *peer, uint32_t limit,
                                    bool (*fn)(void *ctx, const pl_msg *m), void *ctx)
{
    char norm[PL_NAME_MAX + 1];
    if (!normal(peer, norm)) return PL_MSGSTORE_ERR_ARG;
    sqlite3_stmt *st = prepare(ms, "SELECT * FROM (SELECT n, " MSG_COLUMNS " FROM messages WHERE peer = ?1 "
                                   "ORDER BY n DESC LIMIT ?2) ORDER BY n");
    if (!st) return PL_MSGSTORE_ERR_DB;
    sqlite3_bind_text(st, 1, norm, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, limit ? (sqlite3_int64)limit : -1);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        pl_msg m;
        read_msg(st, 1, &m);
        if (!fn(ctx, &m)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? PL_MSGSTORE_OK : db_fail(ms);
}

pl_msgstore_err pl_msgstore_conversations(pl_msgstore *ms, bool (*fn)(void *ctx, const pl_msgstore_summary *s),
                                          void *ctx)
{
    sqlite3_stmt *st = prepare(ms, "SELECT c.total, c.unread, c.last, l.id, l.peer, l.outgoing, l.epoch, l.seq, "
                                   "l.sent_at, l.at, l.state, l.via_mailbox, l.late, l.text FROM (SELECT peer, "
                                   "count(*) AS total, sum(state = 10) AS unread, max(n) AS last FROM messages "
                                   "GROUP BY peer) c JOIN messages l ON l.n = c.last ORDER BY c.last DESC");
    if (!st) return PL_MSGSTORE_ERR_DB;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        pl_msgstore_summary s;
        memset(&s, 0, sizeof s);
        s.messages = (uint32_t)sqlite3_column_int64(st, 0);
        s.unread = (uint32_t)sqlite3_column_int64(st, 1);
        read_msg(st, 3, &s.last);
        snprintf(s.peer, sizeof s.peer, "%s", s.last.peer);
        if (!fn(ctx, &s)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? PL_MSGSTORE_OK : db_fail(ms);
}

pl_msgstore_err pl_msgstore_pending(pl_msgstore *ms,
                                    bool (*fn)(void *ctx, const pl_msg *m, const uint8_t *env, size_t env_len),
                                    void *ctx)
{
    sqlite3_stmt *st = prepare(ms, "SELECT " MSG_COLUMNS ", envelope FROM messages WHERE outgoing = 1 AND state < 2 "
                                   "AND envelope IS NOT NULL ORDER BY n");
    if (!st) return PL_MSGSTORE_ERR_DB;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        pl_msg m;
        read_msg(st, 0, &m);
        if (!fn(ctx, &m, sqlite3_column_blob(st, 11), (size_t)sqlite3_column_bytes(st, 11))) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? PL_MSGSTORE_OK : db_fail(ms);
}

pl_msgstore_err pl_msgstore_recent_ids(pl_msgstore *ms, uint32_t limit,
                                       bool (*fn)(void *ctx, const uint8_t id[PL_ENV_ID_SIZE], pl_time sent_at),
                                       void *ctx)
{
    sqlite3_stmt *st = prepare(ms, "SELECT id, sent_at FROM (SELECT id, sent_at FROM messages WHERE outgoing = 0 "
                                   "ORDER BY sent_at DESC LIMIT ?1) ORDER BY sent_at");
    if (!st) return PL_MSGSTORE_ERR_DB;
    sqlite3_bind_int64(st, 1, limit ? (sqlite3_int64)limit : -1);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) != PL_ENV_ID_SIZE) continue;
        if (!fn(ctx, sqlite3_column_blob(st, 0), (pl_time)sqlite3_column_int64(st, 1))) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? PL_MSGSTORE_OK : db_fail(ms);
}

uint32_t pl_msgstore_unread(pl_msgstore *ms)
{
    sqlite3_stmt *st = prepare(ms, "SELECT count(*) FROM messages WHERE state = 10");
    if (!st) return 0;
    uint32_t n = sqlite3_step(st) == SQLITE_ROW ? (uint32_t)sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return n;
}

/* ---- voicemail ------------------------------------------------------------------------------- */

#define VM_COLUMNS "id, peer, sent_at, received_at, duration_ms, heard, state, length(body)"

static void read_vm(sqlite3_stmt *st, pl_vmail *v)
{
    memset(v, 0, sizeof *v);
    if (sqlite3_column_bytes(st, 0) == PL_ENV_ID_SIZE) memcpy(v->id, sqlite3_column_blob(st, 0), PL_ENV_ID_SIZE);
    snprintf(v->peer, sizeof v->peer, "%s", (const char *)sqlite3_column_text(st, 1));
    v->sent_at = (pl_time)sqlite3_column_int64(st, 2);
    v->received_at = (pl_time)sqlite3_column_int64(st, 3);
    v->duration_ms = (uint32_t)sqlite3_column_int64(st, 4);
    v->heard = sqlite3_column_int(st, 5) != 0;
    v->state = (uint8_t)sqlite3_column_int(st, 6);
    v->body_len = (uint32_t)sqlite3_column_int64(st, 7);
}

pl_msgstore_err pl_msgstore_vm_add(pl_msgstore *ms, const pl_vmail *v, const uint8_t *body, size_t len)
{
    char peer[PL_NAME_MAX + 1];
    if (!normal(v->peer, peer) || !body || !len || len > INT32_MAX) return PL_MSGSTORE_ERR_ARG;
    sqlite3_stmt *st = prepare(ms, "INSERT OR IGNORE INTO voicemail(id, peer, sent_at, received_at, duration_ms, "
                                   "heard, state, body) VALUES(?1, ?2, ?3, ?4, ?5, 0, 0, ?6)");
    if (!st) return PL_MSGSTORE_ERR_DB;
    sqlite3_bind_blob(st, 1, v->id, PL_ENV_ID_SIZE, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, peer, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)v->sent_at);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)v->received_at);
    sqlite3_bind_int64(st, 5, v->duration_ms);
    sqlite3_bind_blob(st, 6, body, (int)len, SQLITE_STATIC);
    pl_msgstore_err err = finish(ms, st);
    if (!err && sqlite3_changes(ms->db) == 0) err = PL_MSGSTORE_ERR_EXISTS;
    return err;
}

pl_msgstore_err pl_msgstore_vm_get(pl_msgstore *ms, const uint8_t id[PL_ENV_ID_SIZE], pl_vmail *out, uint8_t **body)
{
    if (body) *body = NULL;
    sqlite3_stmt *st = prepare(ms, "SELECT " VM_COLUMNS ", body FROM voicemail WHERE id = ?1");
    if (!st) return PL_MSGSTORE_ERR_DB;
    sqlite3_bind_blob(st, 1, id, PL_ENV_ID_SIZE, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    pl_msgstore_err err = PL_MSGSTORE_OK;
    if (rc == SQLITE_ROW) {
        read_vm(st, out);
        int n = sqlite3_column_bytes(st, 8);
        if (body && n > 0) {
            *body = malloc((size_t)n);
            if (*body) memcpy(*body, sqlite3_column_blob(st, 8), (size_t)n);
            else err = PL_MSGSTORE_ERR_DB;
        }
    } else {
        err = rc == SQLITE_DONE ? PL_MSGSTORE_ERR_NOT_FOUND : db_fail(ms);
    }
    sqlite3_finalize(st);
    return err;
}

pl_msgstore_err pl_msgstore_vm_find(pl_msgstore *ms, const char *hex, uint8_t id[PL_ENV_ID_SIZE])
{
    size_t n = strlen(hex);
    if (n < 4 || n > 2 * PL_ENV_ID_SIZE || strspn(hex, "0123456789abcdefABCDEF") != n) return PL_MSGSTORE_ERR_ARG;
    char lower[2 * PL_ENV_ID_SIZE + 1];
    for (size_t i = 0; i <= n; i++) lower[i] = (char)(hex[i] >= 'A' && hex[i] <= 'F' ? hex[i] + 32 : hex[i]);
    sqlite3_stmt *st = prepare(ms, "SELECT id FROM voicemail WHERE state = 0 AND substr(lower(hex(id)), 1, ?2) = ?1 "
                                   "LIMIT 2");
    if (!st) return PL_MSGSTORE_ERR_DB;
    sqlite3_bind_text(st, 1, lower, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, (int)n);
    int found = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) == PL_ENV_ID_SIZE && found++ == 0)
            memcpy(id, sqlite3_column_blob(st, 0), PL_ENV_ID_SIZE);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return db_fail(ms);
    return found == 1 ? PL_MSGSTORE_OK : found ? PL_MSGSTORE_ERR_AMBIGUOUS : PL_MSGSTORE_ERR_NOT_FOUND;
}

pl_msgstore_err pl_msgstore_vm_each(pl_msgstore *ms, uint8_t state, bool (*fn)(void *ctx, const pl_vmail *v),
                                    void *ctx)
{
    sqlite3_stmt *st = prepare(ms, "SELECT " VM_COLUMNS " FROM voicemail WHERE state = ?1 ORDER BY sent_at, id");
    if (!st) return PL_MSGSTORE_ERR_DB;
    sqlite3_bind_int(st, 1, state);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        pl_vmail v;
        read_vm(st, &v);
        if (!fn(ctx, &v)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? PL_MSGSTORE_OK : db_fail(ms);
}

static pl_msgstore_err vm_update(pl_msgstore *ms, const char *sql, const uint8_t id[PL_ENV_ID_SIZE])
{
    sqlite3_stmt *st = prepare(ms, sql);
    if (!st) return PL_MSGSTORE_ERR_DB;
    sqlite3_bind_blob(st, 1, id, PL_ENV_ID_SIZE, SQLITE_STATIC);
    pl_msgstore_err err = finish(ms, st);
    if (!err && sqlite3_changes(ms->db) == 0) err = PL_MSGSTORE_ERR_NOT_FOUND;
    return err;
}

pl_msgstore_err pl_msgstore_vm_heard(pl_msgstore *ms, const uint8_t id[PL_ENV_ID_SIZE])
{
    return vm_update(ms, "UPDATE voicemail SET heard = 1 WHERE id = ?1 AND state = 0", id);
}

pl_msgstore_err pl_msgstore_vm_set_state(pl_msgstore *ms, const uint8_t id[PL_ENV_ID_SIZE], uint8_t state)
{
    if (state == PL_VMAIL_DELETING)
        return vm_update(ms, "UPDATE voicemail SET state = 1, body = NULL WHERE id = ?1 AND state = 0", id);
    if (state == PL_VMAIL_GONE)
        return vm_update(ms, "UPDATE voicemail SET state = 2, body = NULL WHERE id = ?1 AND state IN (0, 1)", id);
    return PL_MSGSTORE_ERR_ARG;
}

void pl_msgstore_vm_count(pl_msgstore *ms, uint32_t *total, uint32_t *unheard)
{
    *total = *unheard = 0;
    sqlite3_stmt *st = prepare(ms, "SELECT count(*), coalesce(sum(heard = 0), 0) FROM voicemail WHERE state = 0");
    if (!st) return;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *total = (uint32_t)sqlite3_column_int64(st, 0);
        *unheard = (uint32_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
}

pl_msgstore_err pl_msgstore_vm_prune(pl_msgstore *ms, pl_time before)
{
    sqlite3_stmt *st = prepare(ms, "DELETE FROM voicemail WHERE state = 2 AND sent_at < ?1");
    if (!st) return PL_MSGSTORE_ERR_DB;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)before);
    return finish(ms, st);
}

const char *pl_msgstore_strerror(pl_msgstore_err err)
{
    switch (err) {
    case PL_MSGSTORE_OK: return "ok";
    case PL_MSGSTORE_ERR_DB: return "database error";
    case PL_MSGSTORE_ERR_EXISTS: return "already there";
    case PL_MSGSTORE_ERR_NOT_FOUND: return "not found";
    case PL_MSGSTORE_ERR_AMBIGUOUS: return "more than one matches";
    case PL_MSGSTORE_ERR_ARG: return "bad argument";
    }
    return "unknown message store error";
}
