/* test_msgstore.c - chat history and voicemail in SQLite: a message id once
 * only, states that only move forward, read marks both ways, conversations
 * with unread counts, what survives closing and reopening (the engine's
 * state, the envelopes of undelivered messages), voicemail kept, found by
 * prefix, deleted (the body erased from the file), and the file's mode. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "msgstore.h"
#include "test.h"

static char dir[64], path[128];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/pl-msgstore.XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/messages.db", dir);
}

static void teardown(void)
{
    char p[160];
    const char *files[] = {"messages.db", "messages.db-wal", "messages.db-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static pl_msg make(const char *peer, bool out, uint64_t epoch, uint64_t seq, const char *text, uint8_t tag)
{
    pl_msg m;
    memset(&m, 0, sizeof m);
    memset(m.id, tag, sizeof m.id);
    snprintf(m.peer, sizeof m.peer, "%s", peer);
    m.outgoing = out;
    m.epoch = epoch;
    m.seq = seq;
    m.sent_at = 1000000 * (pl_time)tag;
    m.at = m.sent_at + 5;
    m.state = out ? PL_MSG_SENDING : PL_MSG_UNREAD;
    m.text_len = strlen(text);
    memcpy(m.text, text, m.text_len);
    return m;
}

typedef struct collect {
    pl_msg m[16];
    int n;
    uint8_t env[16][64];
    size_t env_len[16];
} collect;

static bool collect_one(void *ctx, const pl_msg *m)
{
    collect *c = ctx;
    if (c->n < 16) c->m[c->n] = *m;
    c->n++;
    return true;
}

static bool collect_pending(void *ctx, const pl_msg *m, const uint8_t *env, size_t len)
{
    collect *c = ctx;
    if (c->n < 16) {
        c->m[c->n] = *m;
        c->env_len[c->n] = len < 64 ? len : 64;
        memcpy(c->env[c->n], env, c->env_len[c->n]);
    }
    c->n++;
    return true;
}

typedef struct sums {
    pl_msgstore_summary s[8];
    int n;
} sums;

static bool collect_summary(void *ctx, const pl_msgstore_summary *s)
{
    sums *x = ctx;
    if (x->n < 8) x->s[x->n] = *s;
    x->n++;
    return true;
}

static void chat_history(void)
{
    setup();
    pl_msgstore *ms;
    CHECK_EQ(pl_msgstore_open(&ms, path), PL_MSGSTORE_OK);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    pl_chat_state st = {.peer = "bob", .out_epoch = 77, .out_next = 3, .in_epoch = 99, .in_next = 2};
    pl_msg a = make("bob", true, 77, 1, "hello bob", 1);
    pl_msg b = make("Bob", true, 77, 2, "are you there?", 2);
    pl_msg c = make("bob", false, 99, 1, "yes, here", 3);
    pl_msg d = make("carol", false, 5, 1, "hi from carol", 4);
    const uint8_t env_a[] = "sealed-a", env_b[] = "sealed-b";
    CHECK_EQ(pl_msgstore_add(ms, &a, env_a, sizeof env_a, &st), PL_MSGSTORE_OK);
    CHECK_EQ(pl_msgstore_add(ms, &b, env_b, sizeof env_b, &st), PL_MSGSTORE_OK);
    CHECK_EQ(pl_msgstore_add(ms, &c, NULL, 0, &st), PL_MSGSTORE_OK);
    CHECK_EQ(pl_msgstore_add(ms, &d, NULL, 0, NULL), PL_MSGSTORE_OK);
    /* The same id again is refused, and changes nothing (not even the
     * state passed with it). */
    pl_chat_state other = st;
    other.out_next = 50;
    pl_msg dup = make("bob", false, 99, 7, "a replay", 3);
    CHECK_EQ(pl_msgstore_add(ms, &dup, NULL, 0, &other), PL_MSGSTORE_ERR_EXISTS);
    pl_chat_state back;
    CHECK_EQ(pl_msgstore_get_conv(ms, "BOB", &back, NULL, NULL), PL_MSGSTORE_OK);
    CHECK_EQ(back.out_next, 3);
    CHECK_EQ(pl_msgstore_get_conv(ms, "dave", &back, NULL, NULL), PL_MSGSTORE_ERR_NOT_FOUND);
    CHECK_EQ(pl_msgstore_unread(ms), 2);
    /* States move forward only; delivery drops the envelope. */
    CHECK_EQ(pl_msgstore_set_state(ms, a.id, PL_MSG_STORED), PL_MSGSTORE_OK);
    CHECK_EQ(pl_msgstore_set_state(ms, a.id, PL_MSG_SENDING), PL_MSGSTORE_OK);
    pl_msg got;
    CHECK_EQ(pl_msgstore_get(ms, a.id, &got), PL_MSGSTORE_OK);
    CHECK_EQ(got.state, PL_MSG_STORED);
    collect p = {0};
    CHECK_EQ(pl_msgstore_pending(ms, collect_pending, &p), PL_MSGSTORE_OK);
    CHECK_EQ(p.n, 2);
    CHECK(memcmp(p.env[0], env_a, sizeof env_a) == 0 && p.m[0].seq == 1 && p.m[0].state == PL_MSG_STORED);
    CHECK_EQ(pl_msgstore_set_state(ms, a.id, PL_MSG_DELIVERED), PL_MSGSTORE_OK);
    CHECK_EQ(pl_msgstore_set_state(ms, a.id, PL_MSG_FAILED), PL_MSGSTORE_OK); /* too late to fail */
    CHECK_EQ(pl_msgstore_get(ms, a.id, &got), PL_MSGSTORE_OK);
    CHECK_EQ(got.state, PL_MSG_DELIVERED);
    memset(&p, 0, sizeof p);
    CHECK_EQ(pl_msgstore_pending(ms, collect_pending, &p), PL_MSGSTORE_OK);
    CHECK_EQ(p.n, 1);
    /* Bob read ours up to 2; we read his. */
    int changed;
    CHECK_EQ(pl_msgstore_peer_read(ms, "bob", 77, 2, &changed), PL_MSGSTORE_OK);
    CHECK_EQ(changed, 2);
    CHECK_EQ(pl_msgstore_peer_read(ms, "bob", 12, 2, &changed), PL_MSGSTORE_OK); /* another numbering */
    CHECK_EQ(changed, 0);
    uint64_t through;
    CHECK_EQ(pl_msgstore_mark_read(ms, "bob", 99, &through, &changed), PL_MSGSTORE_OK);
    CHECK_EQ(through, 1);
    CHECK_EQ(changed, 1);
    CHECK_EQ(pl_msgstore_unread(ms), 1);
    /* Conversations, the most recent first, with the last message. */
    sums s = {0};
    CHECK_EQ(pl_msgstore_conversations(ms, collect_summary, &s), PL_MSGSTORE_OK);
    CHECK_EQ(s.n, 2);
    CHECK(strcmp(s.s[0].peer, "carol") == 0 && s.s[0].unread == 1 && s.s[0].messages == 1);
    CHECK(strcmp(s.s[1].peer, "bob") == 0 && s.s[1].unread == 0 && s.s[1].messages == 3);
    CHECK(strcmp(s.s[1].last.text, "yes, here") == 0);
    pl_msgstore_close(ms);

    /* Reopened: history in order, a limit keeps the newest. */
    CHECK_EQ(pl_msgstore_open(&ms, path), PL_MSGSTORE_OK);
    collect h = {0};
    CHECK_EQ(pl_msgstore_history(ms, "bob", 0, collect_one, &h), PL_MSGSTORE_OK);
    CHECK_EQ(h.n, 3);
    CHECK(strcmp(h.m[0].text, "hello bob") == 0 && h.m[0].state == PL_MSG_READ && h.m[0].outgoing);
    CHECK(strcmp(h.m[2].text, "yes, here") == 0 && h.m[2].state == PL_MSG_SEEN && !h.m[2].outgoing);
    CHECK_EQ(h.m[2].sent_at, 3000000);
    memset(&h, 0, sizeof h);
    CHECK_EQ(pl_msgstore_history(ms, "bob", 2, collect_one, &h), PL_MSGSTORE_OK);
    CHECK_EQ(h.n, 2);
    CHECK(strcmp(h.m[0].text, "are you there?") == 0);
    /* A certificate kept with the state, and not lost by a later save
     * without one. */
    const uint8_t cert[] = {1, 2, 3, 4, 5};
    CHECK_EQ(pl_msgstore_put_conv(ms, &st, cert, sizeof cert), PL_MSGSTORE_OK);
    st.in_next = 9;
    CHECK_EQ(pl_msgstore_put_conv(ms, &st, NULL, 0), PL_MSGSTORE_OK);
    uint8_t cb[PL_CERT_MAX_SIZE];
    size_t cl;
    CHECK_EQ(pl_msgstore_get_conv(ms, "bob", &back, cb, &cl), PL_MSGSTORE_OK);
    CHECK(cl == sizeof cert && memcmp(cb, cert, cl) == 0 && back.in_next == 9);
    pl_msgstore_close(ms);
    teardown();
}

static bool count_vm(void *ctx, const pl_vmail *v)
{
    (void)v;
    (*(int *)ctx)++;
    return true;
}

/* Whether the file holds these bytes anywhere. */
static bool file_has(const char *file, const uint8_t *needle, size_t n)
{
    FILE *f = fopen(file, "rb");
    if (!f) return false;
    static uint8_t buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(buf + i, needle, n) == 0) return true;
    return false;
}

static void voicemail(void)
{
    setup();
    pl_msgstore *ms;
    CHECK_EQ(pl_msgstore_open(&ms, path), PL_MSGSTORE_OK);
    uint8_t body[3000];
    for (size_t i = 0; i < sizeof body; i++) body[i] = (uint8_t)(i * 7 + 3);
    memcpy(body + 100, "UNIQUE-VOICE-MARKER", 19);
    pl_vmail v = {.peer = "alice", .sent_at = 5, .received_at = 6, .duration_ms = 4000};
    memset(v.id, 0xab, 16);
    v.id[15] = 1;
    CHECK_EQ(pl_msgstore_vm_add(ms, &v, body, sizeof body), PL_MSGSTORE_OK);
    CHECK_EQ(pl_msgstore_vm_add(ms, &v, body, sizeof body), PL_MSGSTORE_ERR_EXISTS);
    pl_vmail w = v;
    w.id[15] = 2;
    w.sent_at = 7;
    CHECK_EQ(pl_msgstore_vm_add(ms, &w, body, 10), PL_MSGSTORE_OK);
    uint32_t total, unheard;
    pl_msgstore_vm_count(ms, &total, &unheard);
    CHECK(total == 2 && unheard == 2);
    uint8_t id[16];
    CHECK_EQ(pl_msgstore_vm_find(ms, "abab", id), PL_MSGSTORE_ERR_AMBIGUOUS);
    CHECK_EQ(pl_msgstore_vm_find(ms, "ABABABABABABABABABABABABABABAB01", id), PL_MSGSTORE_OK);
    CHECK(memcmp(id, v.id, 16) == 0);
    CHECK_EQ(pl_msgstore_vm_find(ms, "abc", id), PL_MSGSTORE_ERR_ARG);
    CHECK_EQ(pl_msgstore_vm_find(ms, "cdcd", id), PL_MSGSTORE_ERR_NOT_FOUND);
    pl_vmail got;
    uint8_t *b;
    CHECK_EQ(pl_msgstore_vm_get(ms, v.id, &got, &b), PL_MSGSTORE_OK);
    CHECK(b && got.body_len == sizeof body && memcmp(b, body, sizeof body) == 0 && got.duration_ms == 4000);
    free(b);
    CHECK_EQ(pl_msgstore_vm_heard(ms, v.id), PL_MSGSTORE_OK);
    pl_msgstore_vm_count(ms, &total, &unheard);
    CHECK(total == 2 && unheard == 1);
    pl_msgstore_close(ms);
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", path);
    CHECK(file_has(path, (const uint8_t *)"UNIQUE-VOICE-MARKER", 19) ||
          file_has(wal, (const uint8_t *)"UNIQUE-VOICE-MARKER", 19));
    /* Deleted: gone from the list and from the files (secure_delete, and
     * a checkpoint of the WAL at close). */
    CHECK_EQ(pl_msgstore_open(&ms, path), PL_MSGSTORE_OK);
    CHECK_EQ(pl_msgstore_vm_set_state(ms, v.id, PL_VMAIL_DELETING), PL_MSGSTORE_OK);
    CHECK_EQ(pl_msgstore_vm_set_state(ms, v.id, PL_VMAIL_DELETING), PL_MSGSTORE_ERR_NOT_FOUND);
    CHECK_EQ(pl_msgstore_vm_get(ms, v.id, &got, &b), PL_MSGSTORE_OK);
    CHECK(!b && got.state == PL_VMAIL_DELETING);
    int n = 0;
    CHECK_EQ(pl_msgstore_vm_each(ms, PL_VMAIL_DELETING, count_vm, &n), PL_MSGSTORE_OK);
    CHECK_EQ(n, 1);
    CHECK_EQ(pl_msgstore_vm_find(ms, "ababababababababababababababab01", id), PL_MSGSTORE_ERR_NOT_FOUND);
    CHECK_EQ(pl_msgstore_vm_set_state(ms, v.id, PL_VMAIL_GONE), PL_MSGSTORE_OK);
    /* A copy handed out again is known. */
    CHECK_EQ(pl_msgstore_vm_add(ms, &v, body, sizeof body), PL_MSGSTORE_ERR_EXISTS);
    n = 0;
    CHECK_EQ(pl_msgstore_vm_each(ms, PL_VMAIL_KEPT, count_vm, &n), PL_MSGSTORE_OK);
    CHECK_EQ(n, 1);
    pl_msgstore_close(ms);
    CHECK(!file_has(path, (const uint8_t *)"UNIQUE-VOICE-MARKER", 19));
    CHECK(!file_has(wal, (const uint8_t *)"UNIQUE-VOICE-MARKER", 19));
    /* A month on, the id is forgotten. */
    CHECK_EQ(pl_msgstore_open(&ms, path), PL_MSGSTORE_OK);
    CHECK_EQ(pl_msgstore_vm_prune(ms, 6), PL_MSGSTORE_OK);
    CHECK_EQ(pl_msgstore_vm_add(ms, &v, body, sizeof body), PL_MSGSTORE_OK);
    pl_msgstore_close(ms);
    teardown();
}

int main(void)
{
    if (!pl_init()) return 1;
    RUN(chat_history);
    RUN(voicemail);
    return pl_test_summary();
}
