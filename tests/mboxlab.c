/* mboxlab.c - mailbox supernodes and mail clients on the simulator (mboxlab.h). */
#include "mboxlab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY (86400ull * PL_SEC)

static void xmit(mlab *l, const pl_addr *from, const pl_addr *to, const uint8_t pk[32], const uint8_t *msg,
                 size_t len)
{
    uint8_t frame[32 + PL_SEC_MAX_PAYLOAD];
    if (len > PL_SEC_MAX_PAYLOAD) {
        fprintf(stderr, "mboxlab: a message of %zu bytes does not fit a session payload\n", len);
        abort();
    }
    memcpy(frame, pk, 32);
    memcpy(frame + 32, msg, len);
    size_t n = 32 + len;
    l->datagrams++;
    if (l->needle_len)
        for (size_t i = 0; i + l->needle_len <= n; i++)
            if (memcmp(frame + i, l->needle, l->needle_len) == 0) {
                l->needle_hits++;
                break;
            }
    if (l->tamper && !l->tamper(l->tamper_ctx, from, to, frame, &n)) return;
    pl_simnet_send(l->net, from, to, frame, n);
}

/* ---- timers ---------------------------------------------------------------------------------- */

static void sn_arm(mlab_sn *s);
static void user_arm(mlab_user *u);

static void sn_timer(void *ctx, pl_time now)
{
    mlab_sn *s = ctx;
    s->timer = 0;
    if (s->mb) pl_mbox_tick(s->mb, now);
    sn_arm(s);
}

static void sn_arm(mlab_sn *s)
{
    mlab *l = s->lab;
    if (s->timer) pl_simnet_timer_cancel(l->net, s->timer);
    s->timer = 0;
    if (!s->mb) return;
    pl_time t = pl_mbox_next_timeout(s->mb), now = pl_simnet_now(l->net);
    if (t == PL_TIME_NEVER) return;
    s->timer = pl_simnet_timer(l->net, t > now ? t : now, sn_timer, s);
}

static void user_timer(void *ctx, pl_time now)
{
    mlab_user *u = ctx;
    u->timer = 0;
    pl_mboxc_tick(u->mc, now);
    if (u->lab->app_tick) u->lab->app_tick(u->lab->ctx, u, now);
    user_arm(u);
}

static void user_arm(mlab_user *u)
{
    mlab *l = u->lab;
    if (u->timer) pl_simnet_timer_cancel(l->net, u->timer);
    u->timer = 0;
    pl_time t = pl_mboxc_next_timeout(u->mc), now = pl_simnet_now(l->net);
    if (l->app_next) {
        pl_time a = l->app_next(l->ctx, u);
        if (a < t) t = a;
    }
    if (t == PL_TIME_NEVER) return;
    u->timer = pl_simnet_timer(l->net, t > now ? t : now, user_timer, u);
}

/* ---- supernodes -------------------------------------------------------------------------------- */

static bool sn_send(void *ctx, const uint8_t pk[32], const pl_addr *addr, const uint8_t *msg, size_t len, pl_time now)
{
    mlab_sn *s = ctx;
    (void)pk;
    (void)now;
    if (!s->on_net) return false;
    xmit(s->lab, &s->addr, addr, s->u.id.sign_pk, msg, len);
    return true;
}

static void sn_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len, pl_time now)
{
    mlab_sn *s = ctx;
    mlab *l = s->lab;
    (void)to;
    if (!s->mb || len < 32) return;
    const uint8_t *pk = data;
    int me = (int)(s - l->sn);
    bool client = false;
    for (size_t i = 0; i < l->n_users; i++) {
        mlab_user *u = &l->users[i];
        if (memcmp(u->u.id.sign_pk, pk, 32) != 0) continue;
        if (u->home != me) return; /* not attached here */
        pl_mbox_client_message(s->mb, pk, &u->u.cert, from, data + 32, len - 32, now);
        client = true;
    }
    if (!client) pl_mbox_peer_message(s->mb, pk, from, data + 32, len - 32, now);
    sn_arm(s);
}

static void sn_start(mlab *l, size_t i)
{
    mlab_sn *s = &l->sn[i];
    pl_mbox_config cfg = l->tmpl;
    cfg.self_pk = s->u.id.sign_pk;
    cfg.self_addr = s->addr;
    memcpy(cfg.ca_pk, l->ca.pk, 32);
    cfg.rng = pl_simnet_rng(l->net);
    cfg.replicas = l->replicas;
    pl_mbox_io io = {s, sn_send};
    if (pl_mbox_new(&s->mb, &cfg, &io) != PL_MBOX_E_OK) abort();
    if (!s->on_net) pl_simnet_attach(l->net, &s->addr, sn_recv, s);
    s->on_net = true;
}

/* ---- users ---------------------------------------------------------------------------------------- */

static bool user_send(void *ctx, const uint8_t *msg, size_t len, pl_time now)
{
    mlab_user *u = ctx;
    (void)now;
    if (u->home < 0) return false;
    xmit(u->lab, &u->addr, &u->lab->sn[u->home].addr, u->u.id.sign_pk, msg, len);
    return true;
}

static void user_event(void *ctx, const pl_mboxc_event *ev)
{
    mlab_user *u = ctx;
    if (u->lab->on_mail) u->lab->on_mail(u->lab->ctx, u, ev);
}

static void user_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len, pl_time now)
{
    mlab_user *u = ctx;
    mlab *l = u->lab;
    (void)from;
    (void)to;
    if (len < 32) return;
    if (u->home >= 0 && memcmp(data, l->sn[u->home].u.id.sign_pk, 32) == 0) {
        pl_mboxc_message(u->mc, data + 32, len - 32, now);
    } else if (l->on_direct) {
        for (size_t i = 0; i < l->n_users; i++)
            if (memcmp(l->users[i].u.id.sign_pk, data, 32) == 0)
                l->on_direct(l->ctx, u, data, data + 32, len - 32, now);
    }
    user_arm(u);
}

static void user_client(mlab *l, mlab_user *u)
{
    pl_mboxc_config cfg = {.identity = &u->u.id, .cert = u->u.cert_bytes, .cert_len = u->u.cert_len,
                           .rng = pl_simnet_rng(l->net)};
    memcpy(cfg.ca_pk, l->ca.pk, 32);
    pl_mboxc_io io = {u, user_send, user_event};
    if (pl_mboxc_new(&u->mc, &cfg, &io) != PL_MBOXC_OK) abort();
}

void mlab_user_restart(mlab *l, size_t i)
{
    mlab_user *u = &l->users[i];
    mlab_offline(l, i);
    pl_mboxc_free(u->mc);
    user_client(l, u);
}

/* ---- the lab ----------------------------------------------------------------------------------------- */

void mlab_init(mlab *l, uint64_t seed, pl_time start, size_t n_sn, size_t n_users, uint8_t replicas,
               const pl_mbox_config *limits)
{
    memset(l, 0, sizeof *l);
    l->net = pl_simnet_new(seed, start);
    pl_simnet_set_default_link(l->net, (pl_sim_link){10 * PL_MSEC, 4 * PL_MSEC, 0});
    pl_test_ca_init(&l->ca);
    l->replicas = replicas;
    if (limits) l->tmpl = *limits;
    const pl_rng *rng = pl_simnet_rng(l->net);
    for (size_t i = 0; i < n_sn; i++) {
        mlab_sn *s = &l->sn[i];
        char name[32], text[40];
        snprintf(name, sizeof name, "super%zu", i);
        pl_test_user_make(&s->u, &l->ca, name, start - DAY, start + 400 * DAY, rng);
        snprintf(text, sizeof text, "198.51.100.%zu:7400", i + 1);
        pl_addr_parse(&s->addr, text, 0);
        s->lab = l;
        sn_start(l, i);
    }
    l->n_sn = n_sn;
    for (size_t i = 0; i < n_sn; i++)
        for (size_t j = 0; j < n_sn; j++)
            if (i != j) pl_mbox_member_up(l->sn[i].mb, l->sn[j].u.id.sign_pk, &l->sn[j].addr, start);
    for (size_t i = 0; i < n_sn; i++) sn_arm(&l->sn[i]);
    for (size_t i = 0; i < n_users; i++) {
        mlab_user *u = &l->users[i];
        char name[32], text[40];
        snprintf(name, sizeof name, "user%02zu", i);
        pl_test_user_make(&u->u, &l->ca, name, start - DAY, start + 400 * DAY, rng);
        snprintf(text, sizeof text, "192.0.2.%zu:5000", i + 1);
        pl_addr_parse(&u->addr, text, 0);
        u->lab = l;
        u->home = -1;
        user_client(l, u);
    }
    l->n_users = n_users;
    /* Membership settles before anything is stored. */
    pl_simnet_run_until(l->net, start + 2 * PL_SEC);
}

void mlab_free(mlab *l)
{
    for (size_t i = 0; i < l->n_sn; i++) pl_mbox_free(l->sn[i].mb);
    for (size_t i = 0; i < l->n_users; i++) pl_mboxc_free(l->users[i].mc);
    pl_simnet_free(l->net);
    memset(l, 0, sizeof *l);
}

pl_time mlab_now(mlab *l) { return pl_simnet_now(l->net); }
void mlab_run(mlab *l, pl_time until) { pl_simnet_run_until(l->net, until); }

void mlab_online(mlab *l, size_t i, int home)
{
    mlab_user *u = &l->users[i];
    if (u->home >= 0) mlab_offline(l, i);
    pl_simnet_attach(l->net, &u->addr, user_recv, u);
    u->home = home;
    pl_mboxc_attached(u->mc, l->sn[home].u.id.sign_pk, mlab_now(l));
    user_arm(u);
}

void mlab_offline(mlab *l, size_t i)
{
    mlab_user *u = &l->users[i];
    if (u->home < 0) return;
    pl_mboxc_detached(u->mc);
    if (l->sn[u->home].mb) pl_mbox_client_gone(l->sn[u->home].mb, u->u.id.sign_pk, mlab_now(l));
    u->home = -1;
    pl_simnet_detach(l->net, &u->addr);
    user_arm(u);
}

void mlab_sn_down(mlab *l, size_t i)
{
    if (!l->sn[i].on_net) return;
    pl_simnet_detach(l->net, &l->sn[i].addr);
    l->sn[i].on_net = false;
}

void mlab_sn_up(mlab *l, size_t i)
{
    if (l->sn[i].on_net || !l->sn[i].mb) return;
    pl_simnet_attach(l->net, &l->sn[i].addr, sn_recv, &l->sn[i]);
    l->sn[i].on_net = true;
}

void mlab_sn_crash(mlab *l, size_t i)
{
    mlab_sn *s = &l->sn[i];
    mlab_sn_down(l, i);
    pl_mbox_free(s->mb);
    s->mb = NULL;
    sn_arm(s);
}

void mlab_sn_restart(mlab *l, size_t i)
{
    mlab_sn *s = &l->sn[i];
    if (s->mb) return;
    sn_start(l, i);
    for (size_t j = 0; j < l->n_sn; j++)
        if (j != i && l->sn[j].mb) pl_mbox_member_up(s->mb, l->sn[j].u.id.sign_pk, &l->sn[j].addr, mlab_now(l));
    sn_arm(s);
}

void mlab_forget(mlab *l, size_t i)
{
    for (size_t j = 0; j < l->n_sn; j++) {
        if (j == i || !l->sn[j].mb) continue;
        pl_mbox_member_down(l->sn[j].mb, l->sn[i].u.id.sign_pk, mlab_now(l));
        sn_arm(&l->sn[j]);
    }
}

void mlab_introduce(mlab *l, size_t i)
{
    for (size_t j = 0; j < l->n_sn; j++) {
        if (j == i || !l->sn[j].mb) continue;
        pl_mbox_member_up(l->sn[j].mb, l->sn[i].u.id.sign_pk, &l->sn[i].addr, mlab_now(l));
        if (l->sn[i].mb) pl_mbox_member_up(l->sn[i].mb, l->sn[j].u.id.sign_pk, &l->sn[j].addr, mlab_now(l));
        sn_arm(&l->sn[j]);
    }
    sn_arm(&l->sn[i]);
}

void mlab_sn_poke(mlab *l, size_t i) { sn_arm(&l->sn[i]); }
void mlab_user_poke(mlab *l, size_t i) { user_arm(&l->users[i]); }

void mlab_send_direct(mlab *l, size_t from, size_t to, const uint8_t *msg, size_t len)
{
    xmit(l, &l->users[from].addr, &l->users[to].addr, l->users[from].u.id.sign_pk, msg, len);
}

int mlab_sn_index(mlab *l, const uint8_t pk[32])
{
    for (size_t i = 0; i < l->n_sn; i++)
        if (memcmp(l->sn[i].u.id.sign_pk, pk, 32) == 0) return (int)i;
    return -1;
}

size_t mlab_replicas(mlab *l, const char *name, int out[8])
{
    uint8_t reps[8][32];
    const pl_mbox *any = NULL;
    for (size_t i = 0; i < l->n_sn && !any; i++) any = l->sn[i].mb;
    size_t n = any ? pl_mbox_replicas_of(any, name, reps) : 0;
    for (size_t i = 0; i < n; i++) out[i] = mlab_sn_index(l, reps[i]);
    return n;
}
