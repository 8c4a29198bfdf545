/* test_chat.c - chat between users on the simulator, directly and through
 * five mailbox supernodes: order kept through reordering and duplicates,
 * receipts, gaps reported and filled late, the offline path, a direct send
 * that is not acknowledged, and no message twice. */
#include <sodium.h>
#include <stdlib.h>

#include "chat.h"
#include "mboxlab.h"
#include "test.h"

#define T0 (1800000000ull * PL_SEC)
#define MAXR 128

typedef struct rx {
    uint64_t seq;
    char text[PL_CHAT_MAX_TEXT + 1];
    bool late, via_mailbox;
} rx;

typedef struct chat_log {
    rx got[MAXR];
    int n_got;
    int gaps;
    uint64_t gap_from, gap_to;
    int stored, delivered, failed, reads;
    uint64_t last_read;
    uint64_t delivered_seq[MAXR];
} chat_log;

typedef struct world {
    mlab l;
    pl_chat *chat[MLAB_MAX_USERS];
    chat_log log[MLAB_MAX_USERS];
    /* Direct paths that drop (from -> to), until a time. */
    bool drop_direct[MLAB_MAX_USERS][MLAB_MAX_USERS];
    pl_time drop_until;
    bool duplicate_direct;
    /* The message sent at this time is dropped on the direct path (and in
     * deposits, with drop_msg_deposits) until drop_msg_until. */
    pl_time drop_msg_sent_at, drop_msg_until;
    bool drop_msg_deposits;
} world;

static size_t user_of_pk(world *w, const uint8_t pk[32])
{
    for (size_t i = 0; i < w->l.n_users; i++)
        if (memcmp(w->l.users[i].u.id.sign_pk, pk, 32) == 0) return i;
    return SIZE_MAX;
}

static size_t user_index(world *w, mlab_user *u) { return (size_t)(u - w->l.users); }

/* ---- the chat core's I/O ------------------------------------------------------------------ */

typedef struct uctx {
    world *w;
    size_t i;
} uctx;
static uctx uctxs[MLAB_MAX_USERS];

static bool chat_send_direct(void *ctx, const pl_cert *peer, const uint8_t *msg, size_t len, pl_time now)
{
    uctx *x = ctx;
    (void)now;
    size_t to = user_of_pk(x->w, peer->sign_pk);
    /* A session exists while both are online. */
    if (to == SIZE_MAX || x->w->l.users[to].home < 0 || x->w->l.users[x->i].home < 0) return false;
    mlab_send_direct(&x->w->l, x->i, to, msg, len);
    return true;
}

static bool chat_deposit(void *ctx, const pl_env_sealed *st, const uint8_t *head, size_t len, pl_time now)
{
    uctx *x = ctx;
    bool ok = pl_mboxc_deposit(x->w->l.users[x->i].mc, st, head, len, now) == PL_MBOXC_OK;
    mlab_user_poke(&x->w->l, x->i);
    return ok;
}

static void chat_event(void *ctx, const pl_chat_event *ev)
{
    uctx *x = ctx;
    chat_log *lg = &x->w->log[x->i];
    switch (ev->type) {
    case PL_CHAT_EV_RECEIVED:
        if (lg->n_got < MAXR) {
            rx *r = &lg->got[lg->n_got];
            r->seq = ev->seq;
            memcpy(r->text, ev->text, ev->len);
            r->text[ev->len] = 0;
            r->late = ev->late;
            r->via_mailbox = ev->via_mailbox;
        }
        lg->n_got++;
        break;
    case PL_CHAT_EV_GAP:
        lg->gaps++;
        lg->gap_from = ev->seq;
        lg->gap_to = ev->seq_to;
        break;
    case PL_CHAT_EV_STORED: lg->stored++; break;
    case PL_CHAT_EV_DELIVERED:
        if (lg->delivered < MAXR) lg->delivered_seq[lg->delivered] = ev->seq;
        lg->delivered++;
        break;
    case PL_CHAT_EV_READ:
        lg->reads++;
        lg->last_read = ev->seq;
        break;
    case PL_CHAT_EV_FAILED: lg->failed++; break;
    }
}

/* ---- the lab's hooks ----------------------------------------------------------------------- */

static void on_mail(void *ctx, mlab_user *u, const pl_mboxc_event *ev)
{
    world *w = ctx;
    size_t i = user_index(w, u);
    if (!w->chat[i]) return;
    if (ev->type == PL_MBOXC_EV_MESSAGE) {
        if (pl_chat_mailbox(w->chat[i], ev->opened, ev->body, ev->body_len, ev->now))
            pl_mboxc_ack(u->mc, ev->opened->id, ev->now);
    } else if (ev->type == PL_MBOXC_EV_DEPOSITED) {
        pl_chat_deposited(w->chat[i], ev->id, ev->status, ev->now);
    }
}

static void on_direct(void *ctx, mlab_user *to, const uint8_t from_pk[32], const uint8_t *msg, size_t len,
                      pl_time now)
{
    world *w = ctx;
    if (w->chat[user_index(w, to)]) pl_chat_direct(w->chat[user_index(w, to)], from_pk, msg, len, now);
}

static pl_time app_next(void *ctx, mlab_user *u)
{
    world *w = ctx;
    pl_chat *c = w->chat[user_index(w, u)];
    return c ? pl_chat_next_timeout(c) : PL_TIME_NEVER;
}

static void app_tick(void *ctx, mlab_user *u, pl_time now)
{
    world *w = ctx;
    pl_chat *c = w->chat[user_index(w, u)];
    if (c) pl_chat_tick(c, now);
}

/* The sending time in the outer header of the envelope a message carries. */
static bool env_sent_at(const uint8_t *msg, size_t len, pl_time *at)
{
    pl_mbox_msg m;
    pl_env_header h;
    if (pl_mbox_decode(&m, msg, len) != PL_MBOX_MSG_OK || !m.env_len || pl_env_peek(&h, m.env, m.env_len) != PL_ENV_OK)
        return false;
    *at = h.sent_at;
    return true;
}

static bool tamper(void *ctx, const pl_addr *from, const pl_addr *to, uint8_t *data, size_t *len)
{
    world *w = ctx;
    if (*len < 33) return true;
    size_t a = user_of_pk(w, data);
    if (a == SIZE_MAX) return true;
    pl_time now = mlab_now(&w->l), at;
    bool chat = data[32] == PL_MBOX_CHAT, deposit = data[32] == PL_MBOX_DEPOSIT;
    if ((chat || (deposit && w->drop_msg_deposits)) && w->drop_msg_sent_at && now < w->drop_msg_until &&
        env_sent_at(data + 32, *len - 32, &at) && at == w->drop_msg_sent_at)
        return false;
    if (chat) {
        size_t b = SIZE_MAX;
        for (size_t i = 0; i < w->l.n_users; i++)
            if (pl_addr_equal(&w->l.users[i].addr, to)) b = i;
        if (b != SIZE_MAX && w->drop_direct[a][b] && now < w->drop_until) return false;
        if (w->duplicate_direct) pl_simnet_send(w->l.net, from, to, data, *len);
    }
    return true;
}

static void world_up(world *w, size_t n_users)
{
    memset(w, 0, sizeof *w);
    mlab_init(&w->l, 23, T0, 5, n_users, 3, NULL);
    w->l.ctx = w;
    w->l.on_mail = on_mail;
    w->l.on_direct = on_direct;
    w->l.app_next = app_next;
    w->l.app_tick = app_tick;
    w->l.tamper = tamper;
    w->l.tamper_ctx = w;
    for (size_t i = 0; i < n_users; i++) {
        mlab_user *u = &w->l.users[i];
        uctxs[i] = (uctx){w, i};
        pl_chat_config cfg = {.identity = &u->u.id, .cert = u->u.cert_bytes, .cert_len = u->u.cert_len,
                              .rng = pl_simnet_rng(w->l.net)};
        memcpy(cfg.ca_pk, w->l.ca.pk, 32);
        pl_chat_io io = {&uctxs[i], chat_send_direct, chat_deposit, chat_event};
        CHECK_EQ(pl_chat_new(&w->chat[i], &cfg, &io), PL_CHAT_OK);
    }
}

static void world_down(world *w)
{
    for (size_t i = 0; i < w->l.n_users; i++) pl_chat_free(w->chat[i]);
    mlab_free(&w->l);
}

static void run_for(world *w, pl_time d) { mlab_run(&w->l, mlab_now(&w->l) + d); }

static void say(world *w, size_t from, size_t to, const char *text, uint64_t *seq)
{
    CHECK_EQ(pl_chat_send(w->chat[from], &w->l.users[to].u.cert, text, strlen(text), mlab_now(&w->l), NULL, seq),
             PL_CHAT_OK);
    mlab_user_poke(&w->l, from);
}

static void check_in_order(const chat_log *lg, int n, const char *prefix)
{
    CHECK_EQ(lg->n_got, n);
    for (int i = 0; i < n; i++) {
        char want[64];
        snprintf(want, sizeof want, "%s %d", prefix, i + 1);
        CHECK_EQ(lg->got[i].seq, (uint64_t)i + 1);
        CHECK(strcmp(lg->got[i].text, want) == 0);
    }
}

/* ---------------------------------------------------------------------------------------------------- */

static void direct_in_order_with_receipts(void)
{
    world w;
    world_up(&w, 2);
    mlab_online(&w.l, 0, 0);
    mlab_online(&w.l, 1, 1);
    run_for(&w, PL_SEC);
    for (int i = 1; i <= 20; i++) {
        char text[32];
        snprintf(text, sizeof text, "line %d", i);
        say(&w, 0, 1, text, NULL);
        run_for(&w, 30 * PL_MSEC);
    }
    run_for(&w, PL_SEC);
    check_in_order(&w.log[1], 20, "line");
    for (int i = 0; i < 20; i++) CHECK(!w.log[1].got[i].via_mailbox);
    CHECK_EQ(w.log[0].delivered, 20);
    CHECK_EQ(w.log[0].stored, 0);
    CHECK_EQ(pl_chat_pending(w.chat[0]), 0);
    /* Bob reads up to 15, then everything. */
    pl_chat_mark_read(w.chat[1], "user00", 15, mlab_now(&w.l));
    mlab_user_poke(&w.l, 1);
    run_for(&w, PL_SEC);
    CHECK_EQ(w.log[0].last_read, 15);
    pl_chat_mark_read(w.chat[1], "user00", 20, mlab_now(&w.l));
    mlab_user_poke(&w.l, 1);
    run_for(&w, PL_SEC);
    CHECK_EQ(w.log[0].last_read, 20);
    CHECK_EQ(w.log[0].reads, 2);
    pl_chat_stats s = pl_chat_get_stats(w.chat[1]);
    printf("     20 messages sent 30 ms apart: %llu receipts for them (coalesced)\n",
           (unsigned long long)s.receipts_sent - 2);
    world_down(&w);
}

static void reordered_and_duplicated_direct_delivery(void)
{
    world w;
    world_up(&w, 2);
    mlab_online(&w.l, 0, 0);
    mlab_online(&w.l, 1, 1);
    run_for(&w, PL_SEC);
    /* Every datagram twice, and a path that reorders heavily. */
    w.duplicate_direct = true;
    pl_simnet_set_link(w.l.net, &w.l.users[0].addr, &w.l.users[1].addr, (pl_sim_link){10 * PL_MSEC, 150 * PL_MSEC, 0});
    for (int i = 1; i <= 40; i++) {
        char text[32];
        snprintf(text, sizeof text, "msg %d", i);
        say(&w, 0, 1, text, NULL);
        run_for(&w, 5 * PL_MSEC);
    }
    run_for(&w, 3 * PL_SEC);
    check_in_order(&w.log[1], 40, "msg");
    pl_chat_stats s = pl_chat_get_stats(w.chat[1]);
    CHECK(s.duplicates >= 40);
    CHECK(s.held >= 5); /* reordering happened, and was undone */
    CHECK_EQ(w.log[1].gaps, 0);
    CHECK_EQ(w.log[0].delivered, 40);
    printf("     40 messages duplicated and reordered: %llu duplicates dropped, %llu held back for order\n",
           (unsigned long long)s.duplicates, (unsigned long long)s.held);
    world_down(&w);
}

static void a_lost_message_comes_through_the_mailbox_in_order(void)
{
    world w;
    world_up(&w, 2);
    mlab_online(&w.l, 0, 0);
    mlab_online(&w.l, 1, 1);
    run_for(&w, PL_SEC);
    for (int i = 1; i <= 10; i++) {
        char text[32];
        snprintf(text, sizeof text, "m %d", i);
        /* Message 5 is lost on the direct path, both tries. */
        if (i == 5) {
            w.drop_msg_sent_at = mlab_now(&w.l);
            w.drop_msg_until = PL_TIME_NEVER;
        }
        say(&w, 0, 1, text, NULL);
        run_for(&w, 20 * PL_MSEC);
    }
    /* 6..10 wait for 5, which goes to the mailbox after 5 s; bob hears of
     * it (NEWS) and fetches it within the gap wait. */
    run_for(&w, 9 * PL_SEC);
    check_in_order(&w.log[1], 10, "m");
    CHECK(w.log[1].got[4].via_mailbox);
    CHECK(!w.log[1].got[5].via_mailbox);
    CHECK_EQ(w.log[1].gaps, 0);
    CHECK_EQ(w.log[0].stored, 1);
    CHECK_EQ(w.log[0].delivered, 10);
    world_down(&w);
}

static void a_gap_is_reported_and_filled_late(void)
{
    world w;
    world_up(&w, 2);
    mlab_online(&w.l, 0, 0);
    mlab_online(&w.l, 1, 1);
    run_for(&w, PL_SEC);
    pl_time start = mlab_now(&w.l);
    for (int i = 1; i <= 8; i++) {
        char text[32];
        snprintf(text, sizeof text, "g %d", i);
        /* Message 3 gets through neither way for 14 s. */
        if (i == 3) {
            w.drop_msg_sent_at = mlab_now(&w.l);
            w.drop_msg_until = w.drop_msg_sent_at + 14 * PL_SEC;
            w.drop_msg_deposits = true;
        }
        say(&w, 0, 1, text, NULL);
        run_for(&w, 20 * PL_MSEC);
    }
    /* Bob waits PL_CHAT_GAP_WAIT for it, then reports the gap and goes on. */
    run_for(&w, PL_CHAT_GAP_WAIT);
    CHECK_EQ(w.log[1].gaps, 1);
    CHECK_EQ(w.log[1].gap_from, 3);
    CHECK_EQ(w.log[1].gap_to, 3);
    CHECK_EQ(w.log[1].n_got, 7);
    uint64_t order[7] = {1, 2, 4, 5, 6, 7, 8};
    for (int i = 0; i < 7; i++) CHECK_EQ(w.log[1].got[i].seq, order[i]);
    /* The sender knows 7 arrived and 3 did not (yet). */
    CHECK_EQ(w.log[0].delivered, 7);
    CHECK_EQ(pl_chat_pending(w.chat[0]), 1);
    /* Message 3 reaches the mailbox once the path clears, and bob gets it
     * late, once. */
    pl_time filled = 0;
    for (int k = 0; k < 400 && !filled; k++) {
        run_for(&w, 100 * PL_MSEC);
        if (w.log[1].n_got == 8) filled = mlab_now(&w.l);
    }
    run_for(&w, 2 * PL_SEC);
    CHECK_EQ(w.log[1].n_got, 8);
    CHECK_EQ(w.log[1].got[7].seq, 3);
    CHECK(w.log[1].got[7].late);
    CHECK(w.log[1].got[7].via_mailbox);
    CHECK_EQ(w.log[0].delivered, 8);
    CHECK_EQ(pl_chat_pending(w.chat[0]), 0);
    printf("     a message lost for 14 s: gap reported after %.1f s, filled %.1f s after it was sent\n",
           PL_CHAT_GAP_WAIT / 1e6, (double)(filled - start) / 1e6);
    world_down(&w);
}

static void offline_path_through_the_mailbox(void)
{
    world w;
    world_up(&w, 2);
    mlab_online(&w.l, 0, 0);
    run_for(&w, PL_SEC);
    /* Bob is away: everything goes to his mailbox. */
    for (int i = 1; i <= 3; i++) {
        char text[32];
        snprintf(text, sizeof text, "away %d", i);
        say(&w, 0, 1, text, NULL);
        run_for(&w, 100 * PL_MSEC);
    }
    run_for(&w, 2 * PL_SEC);
    CHECK_EQ(w.log[0].stored, 3);
    CHECK_EQ(w.log[0].delivered, 0);
    /* He logs in: the three, in order, and alice learns they arrived. */
    mlab_online(&w.l, 1, 3);
    run_for(&w, 3 * PL_SEC);
    check_in_order(&w.log[1], 3, "away");
    for (int i = 0; i < 3; i++) CHECK(w.log[1].got[i].via_mailbox);
    CHECK_EQ(w.log[0].delivered, 3);
    CHECK_EQ(pl_chat_pending(w.chat[0]), 0);
    /* Alice leaves; bob reads; the read receipt waits in her mailbox. */
    mlab_offline(&w.l, 0);
    pl_chat_mark_read(w.chat[1], "user00", 3, mlab_now(&w.l));
    mlab_user_poke(&w.l, 1);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(w.log[0].reads, 0);
    mlab_online(&w.l, 0, 4);
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(w.log[0].reads, 1);
    CHECK_EQ(w.log[0].last_read, 3);
    /* Nothing is left in either mailbox. */
    for (size_t i = 0; i < 5; i++) {
        pl_mbox_held h;
        CHECK(!pl_mbox_held_for(w.l.sn[i].mb, "user00", &h) || h.messages == 0);
        CHECK(!pl_mbox_held_for(w.l.sn[i].mb, "user01", &h) || h.messages == 0);
    }
    world_down(&w);
}

static void an_unacknowledged_direct_send_goes_to_the_mailbox_once(void)
{
    world w;
    world_up(&w, 2);
    mlab_online(&w.l, 0, 0);
    mlab_online(&w.l, 1, 1);
    run_for(&w, PL_SEC);
    /* Bob's receipts do not reach alice for 6 s: she resends, then
     * deposits; bob gets the message directly and again from his mailbox,
     * and his user sees it once. */
    w.drop_direct[1][0] = true;
    w.drop_until = mlab_now(&w.l) + 6 * PL_SEC;
    say(&w, 0, 1, "only once", NULL);
    run_for(&w, 10 * PL_SEC);
    /* Every receipt was lost (the one for the mailbox's copy too): alice
     * knows the message is stored, and probes bob directly later. */
    CHECK_EQ(w.log[0].stored, 1);
    CHECK_EQ(w.log[0].delivered, 0);
    run_for(&w, PL_CHAT_PROBE);
    CHECK_EQ(w.log[1].n_got, 1);
    CHECK(!w.log[1].got[0].via_mailbox);
    pl_chat_stats s = pl_chat_get_stats(w.chat[1]);
    CHECK(s.duplicates >= 2); /* the resend, and the mailbox's copy */
    CHECK(s.received_mailbox == 0);
    CHECK_EQ(w.log[0].stored, 1);
    CHECK_EQ(w.log[0].delivered, 1);
    CHECK_EQ(pl_chat_pending(w.chat[0]), 0);
    /* The mailbox copy was acknowledged and deleted all the same. */
    for (size_t i = 0; i < 5; i++) {
        pl_mbox_held h;
        CHECK(!pl_mbox_held_for(w.l.sn[i].mb, "user01", &h) || h.messages == 0);
    }
    world_down(&w);
}

static void limits_and_restarts(void)
{
    world w;
    world_up(&w, 2);
    mlab_online(&w.l, 0, 0);
    mlab_online(&w.l, 1, 1);
    run_for(&w, PL_SEC);
    const pl_cert *bob = &w.l.users[1].u.cert, *alice = &w.l.users[0].u.cert;
    pl_time now = mlab_now(&w.l);
    char big[PL_CHAT_MAX_TEXT + 1];
    memset(big, 'a', sizeof big);
    CHECK_EQ(pl_chat_send(w.chat[0], bob, big, sizeof big, now, NULL, NULL), PL_CHAT_ERR_TEXT);
    CHECK_EQ(pl_chat_send(w.chat[0], bob, big, PL_CHAT_MAX_TEXT, now, NULL, NULL), PL_CHAT_OK);
    CHECK_EQ(pl_chat_send(w.chat[0], bob, "", 0, now, NULL, NULL), PL_CHAT_ERR_TEXT);
    CHECK_EQ(pl_chat_send(w.chat[0], bob, "\xc3\x28", 2, now, NULL, NULL), PL_CHAT_ERR_TEXT);      /* bad UTF-8 */
    CHECK_EQ(pl_chat_send(w.chat[0], bob, "\xed\xa0\x80", 3, now, NULL, NULL), PL_CHAT_ERR_TEXT);  /* a surrogate */
    CHECK_EQ(pl_chat_send(w.chat[0], bob, "\xc0\xaf", 2, now, NULL, NULL), PL_CHAT_ERR_TEXT);      /* overlong */
    CHECK_EQ(pl_chat_send(w.chat[0], bob, "a\0b", 3, now, NULL, NULL), PL_CHAT_ERR_TEXT);
    CHECK_EQ(pl_chat_send(w.chat[0], bob, "gr\xc3\xbc\xc3\x9f \xf0\x9f\x98\x80", 11, now, NULL, NULL), PL_CHAT_OK);
    CHECK_EQ(pl_chat_send(w.chat[0], alice, "me", 2, now, NULL, NULL), PL_CHAT_ERR_PEER);
    mlab_user_poke(&w.l, 0);
    run_for(&w, PL_SEC);
    CHECK_EQ(w.log[1].n_got, 2);
    /* Alice's node restarts with its state restored: numbering goes on. */
    pl_chat_state st;
    CHECK(pl_chat_get_state(w.chat[0], "user01", &st));
    CHECK_EQ(st.out_next, 3);
    pl_chat_free(w.chat[0]);
    pl_chat_config cfg = {.identity = &w.l.users[0].u.id, .cert = w.l.users[0].u.cert_bytes,
                          .cert_len = w.l.users[0].u.cert_len, .rng = pl_simnet_rng(w.l.net)};
    memcpy(cfg.ca_pk, w.l.ca.pk, 32);
    pl_chat_io io = {&uctxs[0], chat_send_direct, chat_deposit, chat_event};
    CHECK_EQ(pl_chat_new(&w.chat[0], &cfg, &io), PL_CHAT_OK);
    CHECK_EQ(pl_chat_set_state(w.chat[0], &st), PL_CHAT_OK);
    uint64_t seq;
    say(&w, 0, 1, "after restart", &seq);
    CHECK_EQ(seq, 3);
    run_for(&w, PL_SEC);
    CHECK_EQ(w.log[1].n_got, 3);
    CHECK_EQ(w.log[1].got[2].seq, 3);
    CHECK(!w.log[1].got[2].late);
    /* Restarted without its state (a new install): a new epoch, and bob
     * takes its messages as a new numbering, not as old duplicates. */
    pl_chat_free(w.chat[0]);
    CHECK_EQ(pl_chat_new(&w.chat[0], &cfg, &io), PL_CHAT_OK);
    say(&w, 0, 1, "new install", &seq);
    CHECK_EQ(seq, 1);
    run_for(&w, PL_SEC);
    CHECK_EQ(w.log[1].n_got, 4);
    CHECK(strcmp(w.log[1].got[3].text, "new install") == 0);
    world_down(&w);
}

/* Alice's node is killed with messages in flight: one stored in bob's
 * mailbox, one only sent directly and never acknowledged. Her daemon kept
 * their envelopes (pl_chat_envelope); restarted with its state and those,
 * it delivers both, once each, and learns that they arrived. */
static void a_restart_resumes_what_was_not_delivered(void)
{
    world w;
    world_up(&w, 2);
    mlab_online(&w.l, 0, 0);
    run_for(&w, PL_SEC);
    uint8_t id1[16], id2[16], env1[PL_ENV_MAX_SIZE], env2[PL_ENV_MAX_SIZE];
    size_t len1, len2;
    uint64_t seq1, seq2;
    const pl_cert *bob = &w.l.users[1].u.cert;
    /* Bob is away: the first goes to his mailbox. */
    CHECK_EQ(pl_chat_send(w.chat[0], bob, "stored before", 13, mlab_now(&w.l), id1, &seq1), PL_CHAT_OK);
    mlab_user_poke(&w.l, 0);
    run_for(&w, 2 * PL_SEC);
    CHECK_EQ(w.log[0].stored, 1);
    CHECK(pl_chat_envelope(w.chat[0], id1, env1, sizeof env1, &len1));
    /* Bob comes online but his receipts are lost; the second is sent
     * directly and alice dies before anything else happens. */
    mlab_online(&w.l, 1, 2);
    w.drop_direct[1][0] = true;
    w.drop_until = PL_TIME_NEVER;
    run_for(&w, 50 * PL_MSEC);
    CHECK_EQ(pl_chat_send(w.chat[0], bob, "sent directly", 13, mlab_now(&w.l), id2, &seq2), PL_CHAT_OK);
    CHECK(pl_chat_envelope(w.chat[0], id2, env2, sizeof env2, &len2));
    uint8_t junk[8];
    size_t junk_len;
    CHECK(!pl_chat_envelope(w.chat[0], id2, junk, sizeof junk, &junk_len)); /* too small a buffer */
    mlab_user_poke(&w.l, 0);
    run_for(&w, 300 * PL_MSEC);
    pl_chat_state st;
    CHECK(pl_chat_get_state(w.chat[0], "user01", &st));
    pl_chat_free(w.chat[0]);
    w.chat[0] = NULL;
    mlab_offline(&w.l, 0);
    run_for(&w, 3 * PL_SEC);
    /* Bob has both already (the first from his mailbox). */
    CHECK_EQ(w.log[1].n_got, 2);
    w.drop_until = 0;
    /* Alice restarts with her state and the two envelopes. */
    pl_chat_config cfg = {.identity = &w.l.users[0].u.id, .cert = w.l.users[0].u.cert_bytes,
                          .cert_len = w.l.users[0].u.cert_len, .rng = pl_simnet_rng(w.l.net)};
    memcpy(cfg.ca_pk, w.l.ca.pk, 32);
    pl_chat_io io = {&uctxs[0], chat_send_direct, chat_deposit, chat_event};
    CHECK_EQ(pl_chat_new(&w.chat[0], &cfg, &io), PL_CHAT_OK);
    CHECK_EQ(pl_chat_set_state(w.chat[0], &st), PL_CHAT_OK);
    pl_time now = mlab_now(&w.l);
    /* Refused: a sequence not yet used, an envelope for someone else, our
     * own certificate. */
    CHECK_EQ(pl_chat_resume(w.chat[0], bob, env1, len1, st.out_next, true, now), PL_CHAT_ERR_PEER);
    CHECK_EQ(pl_chat_resume(w.chat[0], &w.l.users[0].u.cert, env1, len1, seq1, true, now), PL_CHAT_ERR_PEER);
    CHECK_EQ(pl_chat_resume(w.chat[0], bob, env1, 10, seq1, true, now), PL_CHAT_ERR_PEER);
    mlab_online(&w.l, 0, 0);
    run_for(&w, 200 * PL_MSEC);
    now = mlab_now(&w.l);
    CHECK_EQ(pl_chat_resume(w.chat[0], bob, env1, len1, seq1, true, now), PL_CHAT_OK);
    CHECK_EQ(pl_chat_resume(w.chat[0], bob, env2, len2, seq2, false, now), PL_CHAT_OK);
    CHECK_EQ(pl_chat_resume(w.chat[0], bob, env2, len2, seq2, false, now), PL_CHAT_OK); /* once only */
    CHECK_EQ(pl_chat_pending(w.chat[0]), 2);
    mlab_user_poke(&w.l, 0);
    /* The direct copy of the second brings a receipt covering both; the
     * first is offered again when the session comes up. */
    pl_chat_peer_online(w.chat[0], "user01", mlab_now(&w.l));
    run_for(&w, 3 * PL_SEC);
    CHECK_EQ(w.log[1].n_got, 2);
    CHECK_EQ(pl_chat_pending(w.chat[0]), 0);
    CHECK_EQ(w.log[0].delivered, 2);
    /* Bob restarts too, and reads: his read receipt needs alice's
     * certificate, which his daemon restores with the state. */
    CHECK(pl_chat_get_state(w.chat[1], "user00", &st));
    pl_chat_free(w.chat[1]);
    cfg = (pl_chat_config){.identity = &w.l.users[1].u.id, .cert = w.l.users[1].u.cert_bytes,
                           .cert_len = w.l.users[1].u.cert_len, .rng = pl_simnet_rng(w.l.net)};
    memcpy(cfg.ca_pk, w.l.ca.pk, 32);
    io.ctx = &uctxs[1];
    CHECK_EQ(pl_chat_new(&w.chat[1], &cfg, &io), PL_CHAT_OK);
    CHECK_EQ(pl_chat_set_state(w.chat[1], &st), PL_CHAT_OK);
    CHECK_EQ(pl_chat_set_cert(w.chat[1], &w.l.users[1].u.cert, mlab_now(&w.l)), PL_CHAT_ERR_PEER);
    CHECK_EQ(pl_chat_set_cert(w.chat[1], &w.l.users[0].u.cert, mlab_now(&w.l)), PL_CHAT_OK);
    pl_chat_mark_read(w.chat[1], "user00", 2, mlab_now(&w.l));
    mlab_user_poke(&w.l, 1);
    run_for(&w, PL_SEC);
    CHECK_EQ(w.log[0].last_read, 2);
    world_down(&w);
}

/* Whoever can put envelopes in bob's mailbox (any user, any supernode: a
 * supernode may STORE whatever it likes on a replica) cannot make him see
 * a line in alice's name: mallory seals one with alice's certificate and
 * her own key, as a supernode knowing only public keys could. Bob's node
 * refuses every copy and deletes it; alice's genuine line arrives. */
static void a_forged_message_in_the_mailbox_is_never_shown(void)
{
    world w;
    world_up(&w, 3);
    mlab_online(&w.l, 0, 0);
    mlab_online(&w.l, 2, 2);
    run_for(&w, PL_SEC);
    mlab_user *alice = &w.l.users[0], *bob = &w.l.users[1], *mallory = &w.l.users[2];
    /* The body a chat line carries: epoch, seq 1, text. */
    uint8_t body[64];
    const char *text = "send the money to mallory";
    size_t n = 0;
    for (int i = 0; i < 8; i++) body[n++] = (uint8_t)(i == 7);
    for (int i = 0; i < 8; i++) body[n++] = (uint8_t)(i == 7);
    body[n++] = 0;
    body[n++] = (uint8_t)strlen(text);
    memcpy(body + n, text, strlen(text));
    n += strlen(text);
    pl_identity forger = mallory->u.id;
    memcpy(forger.sign_pk, alice->u.id.sign_pk, 32); /* claims alice's key, signs with mallory's */
    uint8_t head[PL_ENV_MAX_SIZE];
    size_t head_len;
    pl_env_sealed st;
    CHECK_EQ(pl_env_seal(&st, head, sizeof head, &head_len, &forger, alice->u.cert_bytes, alice->u.cert_len,
                         &bob->u.cert, PL_ENV_CHAT, body, n, mlab_now(&w.l), pl_simnet_rng(w.l.net)),
             PL_ENV_OK);
    CHECK_EQ(pl_mboxc_deposit(mallory->mc, &st, head, head_len, mlab_now(&w.l)), PL_MBOXC_OK);
    pl_env_sealed_wipe(&st);
    mlab_user_poke(&w.l, 2);
    run_for(&w, 2 * PL_SEC);
    say(&w, 0, 1, "the genuine one", NULL);
    run_for(&w, 2 * PL_SEC);
    mlab_online(&w.l, 1, 4);
    run_for(&w, 5 * PL_SEC);
    CHECK_EQ(w.log[1].n_got, 1);
    CHECK(strcmp(w.log[1].got[0].text, "the genuine one") == 0);
    pl_mboxc_stats ms = pl_mboxc_get_stats(bob->mc);
    CHECK(ms.bad_copies >= 2);
    CHECK_EQ(ms.discarded, 1);
    /* And nothing of either is left in the store. */
    for (size_t i = 0; i < 5; i++) {
        pl_mbox_held h;
        CHECK(!pl_mbox_held_for(w.l.sn[i].mb, "user01", &h) || h.messages == 0);
    }
    world_down(&w);
}

int main(void)
{
    if (!pl_init()) return 1;
    RUN(direct_in_order_with_receipts);
    RUN(reordered_and_duplicated_direct_delivery);
    RUN(a_lost_message_comes_through_the_mailbox_in_order);
    RUN(a_gap_is_reported_and_filled_late);
    RUN(offline_path_through_the_mailbox);
    RUN(an_unacknowledged_direct_send_goes_to_the_mailbox_once);
    RUN(limits_and_restarts);
    RUN(a_restart_resumes_what_was_not_delivered);
    RUN(a_forged_message_in_the_mailbox_is_never_shown);
    return pl_test_summary();
}
