/* test_mailbox.c - the message store with five supernodes on the simulator:
 * messages stored on R replicas and taken exactly once by their recipient
 * only, quotas and expiry, deletes that reach a replica that was away,
 * replicas that crash, handover when membership changes, voicemail in
 * chunks, and no plaintext anywhere a supernode could look. */
#include <sodium.h>
#include <stdlib.h>

#include "mboxlab.h"
#include "test.h"

#define T0 (1800000000ull * PL_SEC)
#define DAY (86400ull * PL_SEC)
#define MAX_IDS 64

typedef struct got {
    uint8_t id[16];
    uint8_t sender[PL_NAME_MAX + 1];
    size_t len;
    uint8_t *body;
} got;

typedef struct mail_log {
    int notices;
    uint16_t last_notice;
    uint8_t last_notice_status;
    int messages;       /* MESSAGE events from the mail client */
    int delivered;      /* to the user: duplicates dropped by message id */
    got msgs[MAX_IDS];
    int deposited, deposit_ok;
    uint8_t last_status, last_stored, last_total;
    uint8_t last_deposit_id[16];
    int deleted;
    uint8_t last_deleted_stored, last_deleted_total;
    int discarded;
    bool auto_ack;
    pl_env_seen seen;   /* the consumer's memory of message ids */
} mail_log;

typedef struct world {
    mlab l;
    mail_log log[MLAB_MAX_USERS];
} world;

static void on_mail(void *ctx, mlab_user *u, const pl_mboxc_event *ev)
{
    world *w = ctx;
    mail_log *lg = &w->log[u - w->l.users];
    switch (ev->type) {
    case PL_MBOXC_EV_NOTICE:
        lg->notices++;
        lg->last_notice = ev->messages;
        lg->last_notice_status = ev->status;
        break;
    case PL_MBOXC_EV_MESSAGE:
        lg->messages++;
        /* The consumer: keep it unless seen, then acknowledge either way. */
        if (pl_env_seen_check(&lg->seen, ev->opened->id, ev->opened->sent_at, ev->now) == PL_ENV_OK) {
            pl_env_seen_add(&lg->seen, ev->opened->id, ev->opened->sent_at, ev->now);
            if (lg->delivered < MAX_IDS) {
                got *g = &lg->msgs[lg->delivered];
                memcpy(g->id, ev->opened->id, 16);
                snprintf((char *)g->sender, sizeof g->sender, "%s", ev->opened->sender.name);
                g->len = ev->body_len;
                g->body = malloc(ev->body_len + 1);
                memcpy(g->body, ev->body, ev->body_len);
            }
            lg->delivered++;
        }
        if (lg->auto_ack) pl_mboxc_ack(u->mc, ev->opened->id, ev->now);
        break;
    case PL_MBOXC_EV_DEPOSITED:
        lg->deposited++;
        if (ev->status == PL_MBOX_OK) lg->deposit_ok++;
        lg->last_status = ev->status;
        lg->last_stored = ev->stored;
        lg->last_total = ev->total;
        memcpy(lg->last_deposit_id, ev->id, 16);
        break;
    case PL_MBOXC_EV_DELETED:
        lg->deleted++;
        lg->last_deleted_stored = ev->stored;
        lg->last_deleted_total = ev->total;
        break;
    case PL_MBOXC_EV_DISCARDED: lg->discarded++; break;
    }
}

static void world_up(world *w, size_t n_sn, size_t n_users, const pl_mbox_config *limits)
{
    memset(w, 0, sizeof *w);
    mlab_init(&w->l, 11, T0, n_sn, n_users, 3, limits);
    w->l.ctx = w;
    w->l.on_mail = on_mail;
    for (size_t i = 0; i < n_users; i++) {
        w->log[i].auto_ack = true;
        pl_env_seen_init(&w->log[i].seen, 1024, NULL, pl_simnet_rng(w->l.net));
    }
}

static void world_down(world *w)
{
    for (size_t i = 0; i < w->l.n_users; i++) {
        for (int k = 0; k < MAX_IDS; k++) free(w->log[i].msgs[k].body);
        pl_env_seen_free(&w->log[i].seen);
    }
    mlab_free(&w->l);
}

static void run_for(world *w, pl_time d) { mlab_run(&w->l, mlab_now(&w->l) + d); }

/* User `from` seals body for user `to` and deposits it; returns the id. */
static void send_mail(world *w, size_t from, size_t to, uint8_t type, const uint8_t *body, size_t len,
                      uint8_t id[16])
{
    mlab_user *a = &w->l.users[from], *b = &w->l.users[to];
    uint8_t head[PL_ENV_MAX_SIZE];
    size_t head_len;
    pl_env_sealed st;
    CHECK_EQ(pl_env_seal(&st, head, sizeof head, &head_len, &a->u.id, a->u.cert_bytes, a->u.cert_len, &b->u.cert,
                         type, body, len, mlab_now(&w->l), pl_simnet_rng(w->l.net)),
             PL_ENV_OK);
    CHECK_EQ(pl_mboxc_deposit(a->mc, &st, head, head_len, mlab_now(&w->l)), PL_MBOXC_OK);
    if (id) memcpy(id, st.id, 16);
    pl_env_sealed_wipe(&st);
    mlab_user_poke(&w->l, from);
}

static size_t holders_of(world *w, const char *name, const uint8_t id[16], bool tombstone)
{
    size_t n = 0;
    for (size_t i = 0; i < w->l.n_sn; i++) {
        const pl_mbox *mb = w->l.sn[i].mb;
        if (mb && (tombstone ? pl_mbox_has_tombstone(mb, name, id) : pl_mbox_has_message(mb, name, id))) n++;
    }
    return n;
}

typedef struct scan {
    const uint8_t *needle;
    size_t len;
    size_t hits, bytes;
} scan;

static void scan_fn(void *ctx, const uint8_t *bytes, size_t len)
{
    scan *s = ctx;
    s->bytes += len;
    for (size_t i = 0; i + s->len <= len; i++)
        if (memcmp(bytes + i, s->needle, s->len) == 0) {
            s->hits++;
            return;
        }
}

static size_t plaintext_in_stores(world *w, const void *needle, size_t len, size_t *bytes)
{
    scan s = {needle, len, 0, 0};
    for (size_t i = 0; i < w->l.n_sn; i++)
        if (w->l.sn[i].mb) pl_mbox_foreach_bytes(w->l.sn[i].mb, scan_fn, &s);
    if (bytes) *bytes = s.bytes;
    return s.hits;
}

/* ---------------------------------------------------------------------------------------------------- */

static void stored_on_r_replicas_and_taken_once(void)
{
    world w;
    world_up(&w, 5, 3, NULL);
    const char *text = "The vault code is 4711-ZEBRA; do not tell anyone.";
    w.l.needle = (const uint8_t *)"4711-ZEBRA";
    w.l.needle_len = 10;
    mlab_online(&w.l, 0, 0);
    run_for(&w, PL_SEC);
    uint8_t id[16];
    send_mail(&w, 0, 1, PL_ENV_CHAT, (const uint8_t *)text, strlen(text), id);
    run_for(&w, 2 * PL_SEC);
    CHECK_EQ(w.log[0].deposit_ok, 1);
    CHECK_EQ(w.log[0].last_stored, 3);
    CHECK_EQ(w.log[0].last_total, 3);
    /* On exactly the three replicas the ring names. */
    int reps[8];
    CHECK_EQ(mlab_replicas(&w.l, "user01", reps), 3);
    for (size_t i = 0; i < 5; i++) {
        bool replica = reps[0] == (int)i || reps[1] == (int)i || reps[2] == (int)i;
        CHECK_EQ(pl_mbox_has_message(w.l.sn[i].mb, "user01", id), replica);
    }
    /* No plaintext in any store, nor on the wire. */
    size_t bytes;
    CHECK_EQ(plaintext_in_stores(&w, "4711-ZEBRA", 10, &bytes), 0);
    CHECK(bytes > 3 * strlen(text));
    CHECK_EQ(w.l.needle_hits, 0);
    /* Bob logs in at a supernode that is not a replica: told of one
     * message, given it once, and it is deleted everywhere. */
    int home = 0;
    while (home == reps[0] || home == reps[1] || home == reps[2]) home++;
    mlab_online(&w.l, 1, home);
    run_for(&w, 3 * PL_SEC);
    CHECK(w.log[1].notices >= 1);
    CHECK_EQ(w.log[1].messages, 1);
    CHECK_EQ(w.log[1].delivered, 1);
    CHECK(strcmp((char *)w.log[1].msgs[0].sender, "user00") == 0);
    CHECK_EQ(w.log[1].msgs[0].len, strlen(text));
    CHECK(memcmp(w.log[1].msgs[0].body, text, strlen(text)) == 0);
    CHECK_EQ(w.log[1].deleted, 1);
    CHECK_EQ(w.log[1].last_deleted_stored, 3);
    CHECK_EQ(holders_of(&w, "user01", id, false), 0);
    CHECK_EQ(holders_of(&w, "user01", id, true), 3);
    CHECK_EQ(plaintext_in_stores(&w, "4711-ZEBRA", 10, NULL), 0);
    CHECK_EQ(w.l.needle_hits, 0);
    /* Logging in again: nothing waits, nothing comes twice. */
    mlab_offline(&w.l, 1);
    mlab_online(&w.l, 1, reps[1]);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(w.log[1].last_notice, 0);
    CHECK_EQ(w.log[1].messages, 1);
    world_down(&w);
}

/* Deposits the same bytes twice: the second is answered DELETED. */
static void a_deposit_after_the_delete_does_not_resurrect(void)
{
    world w;
    world_up(&w, 5, 2, NULL);
    mlab_online(&w.l, 0, 0);
    mlab_online(&w.l, 1, 1);
    run_for(&w, PL_SEC);
    mlab_user *a = &w.l.users[0], *b = &w.l.users[1];
    uint8_t head[PL_ENV_MAX_SIZE];
    size_t head_len;
    pl_env_sealed st;
    CHECK_EQ(pl_env_seal(&st, head, sizeof head, &head_len, &a->u.id, a->u.cert_bytes, a->u.cert_len, &b->u.cert,
                         PL_ENV_CHAT, (const uint8_t *)"once", 4, mlab_now(&w.l), pl_simnet_rng(w.l.net)),
             PL_ENV_OK);
    CHECK_EQ(pl_mboxc_deposit(a->mc, &st, head, head_len, mlab_now(&w.l)), PL_MBOXC_OK);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(w.log[1].delivered, 1);
    CHECK_EQ(w.log[1].deleted, 1);
    CHECK_EQ(pl_mboxc_deposit(a->mc, &st, head, head_len, mlab_now(&w.l)), PL_MBOXC_OK);
    mlab_user_poke(&w.l, 0);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(w.log[0].deposited, 2);
    CHECK_EQ(w.log[0].last_status, PL_MBOX_DELETED);
    CHECK_EQ(holders_of(&w, "user01", st.id, false), 0);
    CHECK_EQ(w.log[1].messages, 1);
    pl_env_sealed_wipe(&st);
    world_down(&w);
}

static void only_the_recipient_takes_its_mail(void)
{
    world w;
    world_up(&w, 5, 3, NULL);
    mlab_online(&w.l, 0, 0);
    run_for(&w, PL_SEC);
    uint8_t id[16];
    send_mail(&w, 0, 1, PL_ENV_CHAT, (const uint8_t *)"for bob", 7, id);
    run_for(&w, 2 * PL_SEC);
    CHECK_EQ(w.log[0].deposit_ok, 1);
    /* Mallory (user02) at supernode 2 opens a mailbox with bob's
     * certificate in a grant she signed: refused. */
    mlab_online(&w.l, 2, 2);
    run_for(&w, 2 * PL_SEC);
    CHECK_EQ(w.log[2].last_notice_status, PL_MBOX_OK);
    CHECK_EQ(w.log[2].last_notice, 0); /* her own mailbox is empty */
    mlab_user *bob = &w.l.users[1], *mal = &w.l.users[2];
    pl_mbox *sn2 = w.l.sn[2].mb;
    uint64_t refused = pl_mbox_get_stats(sn2).opens_refused;
    pl_mbox_msg open = {.type = PL_MBOX_OPEN, .req = 7, .has_grant = true};
    pl_identity forger = mal->u.id;
    memcpy(forger.sign_pk, bob->u.id.sign_pk, 32);
    uint64_t t = mlab_now(&w.l) / PL_SEC;
    CHECK(pl_mbox_grant_sign(&open.grant, &forger, bob->u.cert_bytes, bob->u.cert_len, w.l.sn[2].u.id.sign_pk, t,
                             t + 600));
    uint8_t msg[PL_MBOX_MSG_MAX];
    size_t len = pl_mbox_encode(msg, sizeof msg, &open);
    CHECK(len);
    pl_mbox_client_message(sn2, mal->u.id.sign_pk, &mal->u.cert, &mal->addr, msg, len, mlab_now(&w.l));
    CHECK_EQ(pl_mbox_get_stats(sn2).opens_refused, refused + 1);
    /* Even bob's genuine grant, replayed by mallory over her own session,
     * is refused: the grant is not her session's. */
    CHECK(pl_mbox_grant_sign(&open.grant, &bob->u.id, bob->u.cert_bytes, bob->u.cert_len, w.l.sn[2].u.id.sign_pk, t,
                             t + 600));
    len = pl_mbox_encode(msg, sizeof msg, &open);
    pl_mbox_client_message(sn2, mal->u.id.sign_pk, &mal->u.cert, &mal->addr, msg, len, mlab_now(&w.l));
    CHECK_EQ(pl_mbox_get_stats(sn2).opens_refused, refused + 2);
    /* A supernode cannot list or fetch bob's mail at a replica without his
     * grant, nor with a grant he gave another supernode. */
    int reps[8];
    mlab_replicas(&w.l, "user01", reps);
    int other = 0;
    while (other == reps[0]) other++;
    pl_mbox *rep = w.l.sn[reps[0]].mb;
    pl_mbox_stats before = pl_mbox_get_stats(rep);
    pl_mbox_msg list = {.type = PL_MBOX_LIST, .req = 9, .has_grant = true};
    CHECK(pl_mbox_grant_sign(&list.grant, &forger, bob->u.cert_bytes, bob->u.cert_len, w.l.sn[other].u.id.sign_pk,
                             t, t + 600));
    len = pl_mbox_encode(msg, sizeof msg, &list);
    pl_mbox_peer_message(rep, w.l.sn[other].u.id.sign_pk, &w.l.sn[other].addr, msg, len, mlab_now(&w.l));
    CHECK(pl_mbox_grant_sign(&list.grant, &bob->u.id, bob->u.cert_bytes, bob->u.cert_len, w.l.sn[2].u.id.sign_pk, t,
                             t + 600));
    len = pl_mbox_encode(msg, sizeof msg, &list);
    pl_mbox_peer_message(rep, w.l.sn[other].u.id.sign_pk, &w.l.sn[other].addr, msg, len, mlab_now(&w.l));
    pl_mbox_msg get = {.type = PL_MBOX_GET, .req = 10, .has_grant = true, .grant = list.grant};
    memcpy(get.id, id, 16);
    len = pl_mbox_encode(msg, sizeof msg, &get);
    pl_mbox_peer_message(rep, w.l.sn[other].u.id.sign_pk, &w.l.sn[other].addr, msg, len, mlab_now(&w.l));
    pl_mbox_stats after = pl_mbox_get_stats(rep);
    CHECK_EQ(after.grants_refused, before.grants_refused + 3);
    CHECK_EQ(after.lists_served, before.lists_served);
    CHECK_EQ(after.gets_served, before.gets_served);
    /* Mallory deletes bob's message with a signature of her own: every
     * replica refuses, and the message stays. */
    pl_mbox_msg del = {.type = PL_MBOX_DELETE, .req = 11, .cert = bob->u.cert_bytes, .cert_len = bob->u.cert_len,
                       .n_deletes = 1};
    memcpy(del.deletes[0].id, id, 16);
    pl_mbox_delete_sign(del.deletes[0].sig, &mal->u.id, "user01", id);
    len = pl_mbox_encode(msg, sizeof msg, &del);
    pl_mbox_peer_message(rep, w.l.sn[other].u.id.sign_pk, &w.l.sn[other].addr, msg, len, mlab_now(&w.l));
    CHECK_EQ(pl_mbox_get_stats(rep).deletes_refused, before.deletes_refused + 1);
    /* ... and through her own supernode, as a client, it is refused before
     * it leaves (not her certificate). */
    uint64_t cd = pl_mbox_get_stats(sn2).client_deletes;
    pl_mbox_client_message(sn2, mal->u.id.sign_pk, &mal->u.cert, &mal->addr, msg, len, mlab_now(&w.l));
    CHECK_EQ(pl_mbox_get_stats(sn2).client_deletes, cd + 1);
    for (size_t i = 0; i < 5; i++) mlab_sn_poke(&w.l, i);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(holders_of(&w, "user01", id, false), 3);
    CHECK_EQ(holders_of(&w, "user01", id, true), 0);
    /* Bob himself gets it. */
    mlab_online(&w.l, 1, 4);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(w.log[1].delivered, 1);
    CHECK_EQ(w.log[2].messages, 0);
    world_down(&w);
}

static void quotas_and_expiry(void)
{
    world w;
    pl_mbox_config limits = {.max_messages = 5, .max_bytes = 6000};
    world_up(&w, 5, 4, &limits);
    mlab_online(&w.l, 0, 0);
    run_for(&w, PL_SEC);
    uint8_t ids[6][16];
    for (int i = 0; i < 6; i++) {
        char text[32];
        snprintf(text, sizeof text, "message %d", i);
        send_mail(&w, 0, 1, PL_ENV_CHAT, (const uint8_t *)text, strlen(text), ids[i]);
        run_for(&w, PL_SEC);
        CHECK_EQ(w.log[0].last_status, i < 5 ? PL_MBOX_OK : PL_MBOX_QUOTA);
        CHECK_EQ(w.log[0].last_stored, i < 5 ? 3 : 0);
    }
    /* Bytes: another user's box is small too; an 8 KB voicemail does not fit. */
    uint8_t vm[8000];
    randombytes_buf(vm, sizeof vm);
    send_mail(&w, 0, 2, PL_ENV_VOICEMAIL, vm, sizeof vm, NULL);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(w.log[0].last_status, PL_MBOX_QUOTA);
    pl_mbox_held held;
    int reps[8];
    mlab_replicas(&w.l, "user01", reps);
    CHECK(pl_mbox_held_for(w.l.sn[reps[0]].mb, "user01", &held));
    CHECK_EQ(held.messages, 5);
    /* A box whose voicemail fills the byte quota still takes chat: heads
     * count against the number of messages, chunks against the bytes. */
    uint8_t vm2[5000];
    randombytes_buf(vm2, sizeof vm2);
    send_mail(&w, 0, 3, PL_ENV_VOICEMAIL, vm2, sizeof vm2, NULL);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(w.log[0].last_status, PL_MBOX_OK);
    send_mail(&w, 0, 3, PL_ENV_VOICEMAIL, vm2, sizeof vm2, NULL);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(w.log[0].last_status, PL_MBOX_QUOTA);
    send_mail(&w, 0, 3, PL_ENV_CHAT, (const uint8_t *)"still room for chat", 19, NULL);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(w.log[0].last_status, PL_MBOX_OK);
    CHECK_EQ(w.log[0].last_stored, 3);
    /* A month passes without bob: all of it expires. */
    uint64_t expired = 0;
    run_for(&w, 30 * DAY + 20 * 60 * PL_SEC);
    for (size_t i = 0; i < 5; i++) expired += pl_mbox_get_stats(w.l.sn[i].mb).expired;
    CHECK(expired >= 15);
    for (size_t i = 0; i < 5; i++) CHECK(!pl_mbox_held_for(w.l.sn[i].mb, "user01", &held) || held.messages == 0);
    /* Bob comes back to an empty mailbox. */
    mlab_online(&w.l, 1, 1);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(w.log[1].messages, 0);
    CHECK_EQ(w.log[1].last_notice, 0);
    world_down(&w);
}

static void a_delete_reaches_a_replica_that_was_away(void)
{
    world w;
    world_up(&w, 5, 2, NULL);
    mlab_online(&w.l, 0, 0);
    run_for(&w, PL_SEC);
    uint8_t id[16];
    send_mail(&w, 0, 1, PL_ENV_CHAT, (const uint8_t *)"hello", 5, id);
    run_for(&w, 2 * PL_SEC);
    int reps[8];
    mlab_replicas(&w.l, "user01", reps);
    int away = reps[2], home = 0;
    while (home == reps[0] || home == reps[1] || home == reps[2]) home++;
    /* One replica drops off the network (membership does not notice). */
    mlab_sn_down(&w.l, (size_t)away);
    mlab_online(&w.l, 1, home);
    run_for(&w, 5 * PL_SEC);
    CHECK_EQ(w.log[1].delivered, 1);
    CHECK_EQ(w.log[1].deleted, 1);
    CHECK_EQ(w.log[1].last_deleted_stored, 2);
    CHECK_EQ(w.log[1].last_deleted_total, 3);
    CHECK(pl_mbox_has_message(w.l.sn[away].mb, "user01", id));
    /* It comes back with the message; bob's next login lists it there and
     * a tombstone elsewhere: the tombstone wins, and the stale replica is
     * sent it. */
    mlab_sn_up(&w.l, (size_t)away);
    mlab_offline(&w.l, 1);
    mlab_online(&w.l, 1, home);
    run_for(&w, 5 * PL_SEC);
    CHECK_EQ(w.log[1].messages, 1);
    CHECK_EQ(w.log[1].last_notice, 0);
    CHECK(!pl_mbox_has_message(w.l.sn[away].mb, "user01", id));
    CHECK(pl_mbox_has_tombstone(w.l.sn[away].mb, "user01", id));
    CHECK(pl_mbox_get_stats(w.l.sn[home].mb).repairs_sent >= 1);
    world_down(&w);
}

static void a_delete_reaches_a_replica_that_left_and_came_back(void)
{
    world w;
    world_up(&w, 5, 2, NULL);
    mlab_online(&w.l, 0, 0);
    run_for(&w, PL_SEC);
    uint8_t id[16];
    send_mail(&w, 0, 1, PL_ENV_CHAT, (const uint8_t *)"hello again", 11, id);
    run_for(&w, 2 * PL_SEC);
    int reps[8];
    mlab_replicas(&w.l, "user01", reps);
    int away = reps[1];
    /* It leaves, and this time membership notices: its share moves on. */
    mlab_sn_down(&w.l, (size_t)away);
    mlab_forget(&w.l, (size_t)away);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(holders_of(&w, "user01", id, false), 4); /* three replicas, and the one away */
    int home = 0;
    while (home == away) home++;
    mlab_online(&w.l, 1, home);
    run_for(&w, 5 * PL_SEC);
    CHECK_EQ(w.log[1].delivered, 1);
    CHECK_EQ(w.log[1].last_deleted_stored, 3);
    CHECK_EQ(holders_of(&w, "user01", id, false), 1); /* only the one away */
    /* Back, and introduced: the replica that hands it its share sends the
     * tombstone, which removes the stale copy without bob doing a thing. */
    mlab_sn_up(&w.l, (size_t)away);
    mlab_introduce(&w.l, (size_t)away);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(holders_of(&w, "user01", id, false), 0);
    CHECK(pl_mbox_has_tombstone(w.l.sn[away].mb, "user01", id));
    world_down(&w);
}

static void a_replica_crash_before_the_fetch_loses_nothing(void)
{
    for (int forget = 0; forget < 2; forget++) {
        world w;
        world_up(&w, 5, 2, NULL);
        mlab_online(&w.l, 0, 0);
        run_for(&w, PL_SEC);
        uint8_t id[16];
        send_mail(&w, 0, 1, PL_ENV_CHAT, (const uint8_t *)"survive", 7, id);
        run_for(&w, 2 * PL_SEC);
        CHECK_EQ(w.log[0].last_stored, 3);
        int reps[8];
        mlab_replicas(&w.l, "user01", reps);
        /* The primary dies with its state; with `forget`, membership learns
         * of it and the message is handed to a new third replica. */
        mlab_sn_crash(&w.l, (size_t)reps[0]);
        if (forget) mlab_forget(&w.l, (size_t)reps[0]);
        run_for(&w, 3 * PL_SEC);
        CHECK_EQ(holders_of(&w, "user01", id, false), forget ? 3 : 2);
        int home = 0;
        while (home == reps[0]) home++;
        mlab_online(&w.l, 1, home);
        run_for(&w, 6 * PL_SEC);
        CHECK_EQ(w.log[1].messages, 1);
        CHECK_EQ(w.log[1].delivered, 1);
        CHECK_EQ(w.log[1].deleted, 1);
        CHECK_EQ(holders_of(&w, "user01", id, false), 0);
        /* Logging in again brings nothing. */
        mlab_offline(&w.l, 1);
        mlab_online(&w.l, 1, home);
        run_for(&w, 4 * PL_SEC);
        CHECK_EQ(w.log[1].messages, 1);
        world_down(&w);
    }
}

/* The recipient's consumer crashes after keeping a message and before
 * acknowledging it: the store gives it again, the consumer recognises the
 * id, acknowledges, and the user sees it once. */
static void a_lost_acknowledgement_brings_the_message_again_not_twice(void)
{
    world w;
    world_up(&w, 5, 2, NULL);
    mlab_online(&w.l, 0, 0);
    run_for(&w, PL_SEC);
    uint8_t id[16];
    send_mail(&w, 0, 1, PL_ENV_CHAT, (const uint8_t *)"exactly once", 12, id);
    run_for(&w, 2 * PL_SEC);
    w.log[1].auto_ack = false;
    mlab_online(&w.l, 1, 3);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(w.log[1].messages, 1);
    CHECK_EQ(w.log[1].delivered, 1);
    CHECK_EQ(holders_of(&w, "user01", id, false), 3);
    mlab_user_restart(&w.l, 1);
    w.log[1].auto_ack = true;
    mlab_online(&w.l, 1, 2);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(w.log[1].messages, 2);  /* the store delivered it again */
    CHECK_EQ(w.log[1].delivered, 1); /* the user saw it once */
    CHECK_EQ(holders_of(&w, "user01", id, false), 0);
    world_down(&w);
}

static void a_kept_message_stays_and_is_not_fetched_again(void)
{
    world w;
    world_up(&w, 5, 2, NULL);
    mlab_online(&w.l, 0, 0);
    run_for(&w, PL_SEC);
    uint8_t id[16], vm[3000];
    randombytes_buf(vm, sizeof vm);
    send_mail(&w, 0, 1, PL_ENV_VOICEMAIL, vm, sizeof vm, id);
    run_for(&w, 2 * PL_SEC);
    /* Bob keeps his voicemail in the store: not acknowledged. */
    w.log[1].auto_ack = false;
    mlab_online(&w.l, 1, 3);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(w.log[1].messages, 1);
    uint64_t gets = pl_mboxc_get_stats(w.l.users[1].mc).gets;
    /* His process restarts; it tells the client what it kept: nothing is
     * fetched again, and the store still holds it on every replica. */
    mlab_user_restart(&w.l, 1);
    pl_mboxc_keep(w.l.users[1].mc, id);
    mlab_online(&w.l, 1, 2);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(w.log[1].messages, 1);
    CHECK_EQ(w.log[1].last_notice, 1);
    CHECK_EQ(pl_mboxc_get_stats(w.l.users[1].mc).gets, 0);
    CHECK(gets > 1);
    CHECK_EQ(holders_of(&w, "user01", id, false), 3);
    /* He deletes it: every replica keeps a tombstone instead. */
    pl_mboxc_ack(w.l.users[1].mc, id, mlab_now(&w.l));
    mlab_user_poke(&w.l, 1);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(w.log[1].deleted, 1);
    CHECK_EQ(w.log[1].last_deleted_stored, 3);
    CHECK_EQ(holders_of(&w, "user01", id, false), 0);
    CHECK_EQ(holders_of(&w, "user01", id, true), 3);
    world_down(&w);
}

static void handover_when_membership_changes(void)
{
    world w;
    world_up(&w, 6, 10, NULL);
    /* Supernode 5 is not a member yet. */
    mlab_sn_crash(&w.l, 5);
    mlab_forget(&w.l, 5);
    run_for(&w, 3 * PL_SEC);
    mlab_online(&w.l, 0, 0);
    run_for(&w, PL_SEC);
    uint8_t ids[9][16];
    uint8_t vm[20000];
    randombytes_buf(vm, sizeof vm);
    for (size_t to = 1; to < 10; to++) {
        if (to == 9) send_mail(&w, 0, to, PL_ENV_VOICEMAIL, vm, sizeof vm, ids[to - 1]);
        else send_mail(&w, 0, to, PL_ENV_CHAT, (const uint8_t *)"hi", 2, ids[to - 1]);
        run_for(&w, 500 * PL_MSEC);
    }
    run_for(&w, 2 * PL_SEC);
    CHECK_EQ(w.log[0].deposit_ok, 9);
    /* Each message lives on exactly its replicas, whole. */
#define CHECK_PLACEMENT()                                                                          \
    for (size_t to = 1; to < 10; to++) {                                                           \
        char name[16];                                                                             \
        snprintf(name, sizeof name, "user%02zu", to);                                              \
        int reps[8];                                                                               \
        CHECK_EQ(mlab_replicas(&w.l, name, reps), 3);                                              \
        for (size_t i = 0; i < w.l.n_sn; i++) {                                                    \
            if (!w.l.sn[i].mb) continue;                                                           \
            bool replica = reps[0] == (int)i || reps[1] == (int)i || reps[2] == (int)i;            \
            CHECK_EQ(pl_mbox_has_message(w.l.sn[i].mb, name, ids[to - 1]), replica);               \
            pl_mbox_held h;                                                                        \
            if (replica && to == 9) {                                                              \
                CHECK(pl_mbox_held_for(w.l.sn[i].mb, name, &h));                                   \
                CHECK_EQ(h.parts, 1 + pl_env_chunks_for(sizeof vm));                               \
            }                                                                                      \
        }                                                                                          \
    }
    CHECK_PLACEMENT();
    /* A sixth supernode joins. */
    mlab_sn_restart(&w.l, 5);
    mlab_introduce(&w.l, 5);
    run_for(&w, 3 * PL_SEC);
    CHECK_PLACEMENT();
    uint64_t handed = 0;
    for (size_t i = 0; i < 6; i++) handed += pl_mbox_get_stats(w.l.sn[i].mb).handed_over;
    CHECK(handed >= 1);
    /* One leaves for good. */
    mlab_sn_crash(&w.l, 2);
    mlab_forget(&w.l, 2);
    run_for(&w, 3 * PL_SEC);
    CHECK_PLACEMENT();
    /* Everyone takes their mail, once. */
    for (size_t to = 1; to < 10; to++) mlab_online(&w.l, to, (int)(to % 2 ? 1 : 3));
    run_for(&w, 8 * PL_SEC);
    for (size_t to = 1; to < 10; to++) {
        CHECK_EQ(w.log[to].delivered, 1);
        CHECK_EQ(w.log[to].messages, 1);
    }
    CHECK_EQ(w.log[9].msgs[0].len, sizeof vm);
    CHECK(memcmp(w.log[9].msgs[0].body, vm, sizeof vm) == 0);
    world_down(&w);
}

static void a_three_minute_voicemail(void)
{
    world w;
    world_up(&w, 5, 2, NULL);
    mlab_online(&w.l, 0, 0);
    run_for(&w, PL_SEC);
    size_t n = 180 * 24000 / 8;
    uint8_t *vm = malloc(n);
    CHECK(vm);
    /* A recognisable pattern stands in for the Opus frames. */
    for (size_t i = 0; i < n; i++) vm[i] = (uint8_t)("VOICE-OF-ALICE-"[i % 15]);
    w.l.needle = (const uint8_t *)"VOICE-OF-ALICE";
    w.l.needle_len = 14;
    pl_time t0 = mlab_now(&w.l);
    send_mail(&w, 0, 1, PL_ENV_VOICEMAIL, vm, n, NULL);
    while (!w.log[0].deposited && mlab_now(&w.l) < t0 + 120 * PL_SEC) run_for(&w, 100 * PL_MSEC);
    CHECK_EQ(w.log[0].last_status, PL_MBOX_OK);
    CHECK_EQ(w.log[0].last_stored, 3);
    printf("     a 3-minute voicemail (%zu bytes, %u parts) deposited on 3 replicas in %.1f s (simulated)\n", n,
           1 + pl_env_chunks_for(n), (mlab_now(&w.l) - t0) / 1e6);
    size_t bytes;
    CHECK_EQ(plaintext_in_stores(&w, "VOICE-OF-ALICE", 14, &bytes), 0);
    CHECK(bytes > 3 * n);
    t0 = mlab_now(&w.l);
    mlab_online(&w.l, 1, 2);
    while (!w.log[1].delivered && mlab_now(&w.l) < t0 + 120 * PL_SEC) run_for(&w, 100 * PL_MSEC);
    CHECK_EQ(w.log[1].delivered, 1);
    CHECK_EQ(w.log[1].msgs[0].len, n);
    CHECK(memcmp(w.log[1].msgs[0].body, vm, n) == 0);
    printf("     and fetched by its recipient in %.1f s (simulated, 10 ms links)\n", (mlab_now(&w.l) - t0) / 1e6);
    run_for(&w, 2 * PL_SEC);
    CHECK_EQ(w.l.needle_hits, 0);
    pl_mbox_held h;
    for (size_t i = 0; i < 5; i++) CHECK(!pl_mbox_held_for(w.l.sn[i].mb, "user01", &h) || h.messages == 0);
    free(vm);
    world_down(&w);
}

/* A replica that alters what it serves: the client fetches the next copy. */
typedef struct liar {
    pl_addr from;
    int lies;
} liar;

static bool lie(void *ctx, const pl_addr *from, const pl_addr *to, uint8_t *data, size_t *len)
{
    liar *x = ctx;
    (void)to;
    if (!pl_addr_equal(from, &x->from) || *len < 33 || data[32] != PL_MBOX_GET_REPLY) return true;
    pl_mbox_msg m;
    if (pl_mbox_decode(&m, data + 32, *len - 32) != PL_MBOX_MSG_OK || !m.env_len) return true;
    data[*len - 5] ^= 0x40; /* inside the ciphertext */
    x->lies++;
    return true;
}

static void an_altered_copy_is_fetched_again_elsewhere(void)
{
    world w;
    world_up(&w, 5, 2, NULL);
    mlab_online(&w.l, 0, 0);
    run_for(&w, PL_SEC);
    uint8_t id[16];
    send_mail(&w, 0, 1, PL_ENV_CHAT, (const uint8_t *)"genuine", 7, id);
    run_for(&w, 2 * PL_SEC);
    int reps[8];
    mlab_replicas(&w.l, "user01", reps);
    int home = 0;
    while (home == reps[0] || home == reps[1] || home == reps[2]) home++;
    liar x = {w.l.sn[reps[0]].addr, 0};
    w.l.tamper = lie;
    w.l.tamper_ctx = &x;
    mlab_online(&w.l, 1, home);
    run_for(&w, 4 * PL_SEC);
    w.l.tamper = NULL;
    CHECK(x.lies >= 1);
    pl_mboxc_stats cs = pl_mboxc_get_stats(w.l.users[1].mc);
    CHECK_EQ(cs.bad_copies, 1);
    CHECK_EQ(cs.delivered, 1);
    CHECK_EQ(cs.discarded, 0);
    CHECK_EQ(w.log[1].delivered, 1);
    CHECK(w.log[1].msgs[0].len == 7 && memcmp(w.log[1].msgs[0].body, "genuine", 7) == 0);
    CHECK_EQ(holders_of(&w, "user01", id, false), 0);
    world_down(&w);
}

int main(void)
{
    if (!pl_init()) return 1;
    RUN(stored_on_r_replicas_and_taken_once);
    RUN(a_deposit_after_the_delete_does_not_resurrect);
    RUN(only_the_recipient_takes_its_mail);
    RUN(quotas_and_expiry);
    RUN(a_delete_reaches_a_replica_that_was_away);
    RUN(a_delete_reaches_a_replica_that_left_and_came_back);
    RUN(a_replica_crash_before_the_fetch_loses_nothing);
    RUN(a_lost_acknowledgement_brings_the_message_again_not_twice);
    RUN(a_kept_message_stays_and_is_not_fetched_again);
    RUN(handover_when_membership_changes);
    RUN(a_three_minute_voicemail);
    RUN(an_altered_copy_is_fetched_again_elsewhere);
    return pl_test_summary();
}
