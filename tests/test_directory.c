/* test_directory.c - the distributed directory with whole stacks on the
 * simulator: every node finds every other, records survive losing
 * supernodes, lying supernodes are caught, nobody publishes for someone
 * else, and presence reaches watchers. */
#include <stdlib.h>

#include "record.h"
#include "simworld.h"
#include "test.h"

#define T0 (1800000000ull * PL_SEC)
#define MAX_HOSTS 64

typedef struct result {
    bool done;
    uint8_t status;
    bool offline;
    uint64_t seq;
    pl_record record;
} result;

typedef struct host_log {
    pl_simhost *host;
    result lookups[MAX_HOSTS + 8]; /* by look-up id */
    int published, publish_failed;
    uint8_t last_stored;
    /* presence news, by the watched user's index */
    int presence_events;
    char last_presence_name[PL_NAME_MAX + 1];
    bool last_offline;
    uint8_t last_presence;
    char last_status[PL_RECORD_STATUS_MAX + 1];
    pl_time last_presence_at;
} host_log;

typedef struct lab {
    pl_simworld *w;
    host_log logs[MAX_HOSTS];
    size_t n;
    pl_simhost *sn[8];
    size_t n_sn;
    pl_simhost *users[MAX_HOSTS];
    size_t n_users;
} lab;

static host_log *log_of(lab *l, pl_simhost *h)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->logs[i].host == h) return &l->logs[i];
    return NULL;
}

static void on_event(void *ctx, pl_simhost *h, const pl_stack_event *ev)
{
    lab *l = ctx;
    host_log *lg = log_of(l, h);
    if (!lg || ev->type != PL_STACK_EV_NODE || ev->node->type != PL_NODE_EV_DIRECTORY) return;
    const pl_dirc_event *d = ev->node->dir;
    switch (d->type) {
    case PL_DIRC_EV_PUBLISHED:
        if (d->status == PL_DIR_OK) lg->published++;
        else lg->publish_failed++;
        lg->last_stored = d->stored;
        break;
    case PL_DIRC_EV_LOOKUP:
        {
            result *r = &lg->lookups[d->id % (MAX_HOSTS + 8)];
            r->done = true;
            r->status = d->status;
            r->offline = d->offline;
            if (d->record) {
                r->record = *d->record;
                r->seq = d->record->sequence;
            }
        }
        break;
    case PL_DIRC_EV_PRESENCE:
        lg->presence_events++;
        snprintf(lg->last_presence_name, sizeof lg->last_presence_name, "%s", d->name);
        lg->last_offline = d->offline;
        lg->last_presence = d->record ? d->record->presence : 0;
        snprintf(lg->last_status, sizeof lg->last_status, "%s", d->record ? d->record->status : "");
        lg->last_presence_at = d->now;
        break;
    }
}

/* n_sn supernodes (full membership), n_users nodes spread over them. */
static bool share_ring; /* the next lab's supernodes share one ring */
static bool gossip;     /* the next lab's supernodes run gossip membership */

static void lab_up(lab *l, bool secure, size_t n_sn, size_t n_users)
{
    memset(l, 0, sizeof *l);
    pl_simworld_config cfg = {.seed = 7, .start = T0, .secure = secure, .link = {15 * PL_MSEC, 5 * PL_MSEC, 0},
                              .on_event = on_event, .ctx = l, .share_ring = share_ring};
    l->w = pl_simworld_new(&cfg);
    CHECK(l->w);
    pl_ovl_peer boot[8];
    for (size_t i = 0; i < n_sn; i++) {
        char name[32];
        snprintf(name, sizeof name, "super%zu", i + 1);
        /* With gossip, each supernode knows only the first as its seed and
         * learns the rest. */
        pl_stack_config c = {.role = PL_ROLE_SUPERNODE, .max_peers = 512, .membership = gossip,
                             .bootstrap = boot, .n_bootstrap = gossip && i > 0 ? 1 : 0};
        pl_addr a = pl_simworld_addr(100, (int)i + 1, 7400);
        l->sn[i] = pl_simworld_add_host(l->w, name, &a, &c);
        CHECK(l->sn[i]);
        boot[i] = *pl_simhost_peer(l->sn[i]);
        pl_simhost_start(l->sn[i]);
    }
    l->n_sn = n_sn;
    if (!gossip) pl_simworld_introduce_supernodes(l->w);
    else pl_simnet_run_until(pl_simworld_net(l->w), T0 + 3 * PL_SEC);
    for (size_t i = 0; i < n_users; i++) {
        char name[32];
        snprintf(name, sizeof name, "user%02zu", i);
        /* Each node bootstraps from one supernode (round robin) first. */
        pl_ovl_peer mine[8];
        for (size_t k = 0; k < n_sn; k++) mine[k] = boot[(i + k) % n_sn];
        pl_stack_config c = {.role = PL_ROLE_NODE, .bootstrap = mine, .n_bootstrap = n_sn, .max_peers = 64};
        pl_addr a = pl_simworld_addr(1, (int)i + 1, 5000);
        l->users[i] = pl_simworld_add_host(l->w, name, &a, &c);
        CHECK(l->users[i]);
        l->logs[l->n++].host = l->users[i];
        pl_simhost_start(l->users[i]);
    }
    l->n_users = n_users;
}

static void run(lab *l, pl_time until) { pl_simnet_run_until(pl_simworld_net(l->w), until); }
static pl_time now_of(lab *l) { return pl_simworld_now(l->w); }
static pl_dirc *dirc_of(pl_simhost *h) { return pl_node_directory(pl_stack_node(pl_simhost_stack(h))); }

/* Every user looks up every other; returns how many verified records came
 * back. Look-up ids restart per round (the log is reset). */
static size_t lookup_all(lab *l, pl_time wait)
{
    for (size_t i = 0; i < l->n_users; i++) {
        host_log *lg = log_of(l, l->users[i]);
        memset(lg->lookups, 0, sizeof lg->lookups);
    }
    uint32_t ids[MAX_HOSTS][MAX_HOSTS];
    bool asked[MAX_HOSTS][MAX_HOSTS];
    memset(asked, 0, sizeof asked);
    for (size_t i = 0; i < l->n_users; i++) {
        if (!pl_simhost_running(l->users[i])) continue;
        for (size_t j = 0; j < l->n_users; j++) {
            if (i == j) continue;
            /* A node between supernodes holds look-ups until it attaches;
             * too many held is refused, which counts as not found. */
            pl_dirc_err e = pl_dirc_lookup(dirc_of(l->users[i]), pl_simhost_name(l->users[j]), now_of(l), &ids[i][j]);
            CHECK(e == PL_DIRC_OK || e == PL_DIRC_ERR_BUSY);
            asked[i][j] = e == PL_DIRC_OK;
            /* Ids grow per node; keep them within the log. */
            ids[i][j] %= MAX_HOSTS + 8;
        }
    }
    run(l, now_of(l) + wait);
    size_t found = 0;
    for (size_t i = 0; i < l->n_users; i++) {
        if (!pl_simhost_running(l->users[i])) continue;
        host_log *lg = log_of(l, l->users[i]);
        for (size_t j = 0; j < l->n_users; j++) {
            if (i == j || !asked[i][j]) continue;
            result *r = &lg->lookups[ids[i][j]];
            if (r->done && r->status == PL_DIR_OK && strcmp(r->record.cert.name, pl_simhost_name(l->users[j])) == 0)
                found++;
        }
    }
    return found;
}

static void every_node_finds_every_other(void)
{
    static lab l;
    lab_up(&l, true, 5, 20);
    run(&l, T0 + 3 * PL_SEC);
    for (size_t i = 0; i < l.n_users; i++) {
        host_log *lg = log_of(&l, l.users[i]);
        CHECK_EQ(lg->published, 1);
        CHECK_EQ(lg->last_stored, 3); /* R = 3 replicas took it */
    }
    CHECK_EQ(lookup_all(&l, 5 * PL_SEC), 20 * 19);
    /* A found record says where the user is: its supernode and its address. */
    host_log *a = log_of(&l, l.users[0]);
    const pl_record *bob = NULL;
    for (size_t k = 0; k < MAX_HOSTS + 8; k++)
        if (a->lookups[k].done && strcmp(a->lookups[k].record.cert.name, "user01") == 0) bob = &a->lookups[k].record;
    CHECK(bob);
    CHECK_EQ(bob->n_supernodes, 1);
    CHECK(memcmp(bob->supernodes[0].pk, pl_node_get_status(pl_stack_node(pl_simhost_stack(l.users[1]))).supernode.pk,
                 32) == 0);
    CHECK(bob->n_candidates >= 1);
    CHECK(pl_addr_equal(&bob->candidates[0].addr, &pl_simhost_peer(l.users[1])->addr));
    /* Looking up someone who never registered: not found, after every
     * replica said so. */
    uint32_t id;
    CHECK_EQ(pl_dirc_lookup(dirc_of(l.users[0]), "nobody-here", now_of(&l), &id), PL_DIRC_OK);
    run(&l, now_of(&l) + 3 * PL_SEC);
    CHECK(a->lookups[id % (MAX_HOSTS + 8)].done);
    CHECK_EQ(a->lookups[id % (MAX_HOSTS + 8)].status, PL_DIR_NOT_FOUND);
    CHECK_EQ(pl_dirc_lookup(dirc_of(l.users[0]), "Not A Name!", now_of(&l), &id), PL_DIRC_ERR_BAD_NAME);
    pl_simworld_free(l.w);
}

static void records_stay_resolvable_when_two_supernodes_die(void)
{
    static lab l;
    lab_up(&l, true, 5, 20);
    run(&l, T0 + 3 * PL_SEC);
    CHECK_EQ(lookup_all(&l, 5 * PL_SEC), 20 * 19);
    pl_time crash = now_of(&l);
    pl_simhost_crash(l.sn[0]);
    pl_simhost_crash(l.sn[1]);
    /* Membership learns of it: gossip finds out by itself; without it the
     * test tells the others at once. */
    if (!gossip) {
        pl_simworld_forget_supernode(l.w, l.sn[0]);
        pl_simworld_forget_supernode(l.w, l.sn[1]);
    }
    /* Every record must resolve: check every 5 s until they all do. */
    pl_time recovered = 0;
    for (int round = 0; round < 24 && !recovered; round++) {
        size_t found = lookup_all(&l, 5 * PL_SEC);
        if (found == 20 * 19) recovered = now_of(&l);
    }
    CHECK(recovered);
    printf("     all 380 look-ups succeed again %.1f s after two of five supernodes died\n",
           (recovered - crash) / 1e6);
    /* And every node is attached again. */
    for (size_t i = 0; i < l.n_users; i++)
        CHECK_EQ(pl_node_get_status(pl_stack_node(pl_simhost_stack(l.users[i]))).state, PL_NODE_ATTACHED);
    pl_simworld_free(l.w);
}

/* ---- lying supernodes (external transport, so the test can rewrite what
 * a supernode sends) ---------------------------------------------------------------- */

typedef struct liar {
    pl_simhost *host;
    int mode; /* 1: flip a byte of every record it serves; 2: serve a stale copy */
    uint8_t stale[PL_RECORD_MAX_SIZE];
    size_t stale_len;
    char stale_name[PL_NAME_MAX + 1];
    int lies;
} liar;

static bool tamper(void *ctx, pl_simhost *from, const uint8_t to_pk[32], uint8_t *msg, size_t *len)
{
    liar *x = ctx;
    (void)to_pk;
    if (from != x->host || *len < 1 || msg[0] != PL_OVL_FETCH_REPLY) return true;
    pl_ovl_dir m;
    if (pl_ovl_decode_dir(&m, msg, *len) || !m.record_len) return true;
    size_t at = (size_t)(m.record - msg);
    if (x->mode == 1) {
        msg[at + m.record_len / 2] ^= 0x20; /* alter one byte of the record */
        x->lies++;
    } else if (x->mode == 2 && x->stale_len) {
        pl_record r;
        if (pl_record_decode(&r, m.record, m.record_len) == PL_RECORD_OK && strcmp(r.cert.name, x->stale_name) == 0) {
            memcpy(msg + at, x->stale, x->stale_len);
            *len = at + x->stale_len;
            x->lies++;
        }
    }
    return true;
}

/* Which supernode answers first for a name: the primary replica. */
static pl_simhost *primary_for(lab *l, const char *name)
{
    uint8_t reps[8][32];
    pl_dir *d = pl_super_directory(pl_stack_super(pl_simhost_stack(l->sn[0])));
    CHECK(pl_dir_replicas_of(d, name, reps) == 3);
    for (size_t i = 0; i < l->n_sn; i++)
        if (memcmp(pl_simhost_peer(l->sn[i])->pk, reps[0], 32) == 0) return l->sn[i];
    return NULL;
}

static void a_supernode_that_alters_a_record_is_caught(void)
{
    static lab l;
    lab_up(&l, false, 5, 6);
    run(&l, T0 + 3 * PL_SEC);
    liar x = {.host = primary_for(&l, "user03"), .mode = 1};
    pl_simworld_set_tamper(l.w, tamper, &x);
    host_log *a = log_of(&l, l.users[0]);
    uint32_t id;
    CHECK_EQ(pl_dirc_lookup(dirc_of(l.users[0]), "user03", now_of(&l), &id), PL_DIRC_OK);
    run(&l, now_of(&l) + 5 * PL_SEC);
    /* The altered record was refused, the next replica asked, and the
     * genuine record came back. (If alice's own supernode is the liar's
     * target for a local answer, the lie never leaves it: then there is
     * nothing to catch, so pick a name whose primary is remote.) */
    CHECK(x.lies >= 1);
    CHECK(a->lookups[id % (MAX_HOSTS + 8)].done);
    CHECK_EQ(a->lookups[id % (MAX_HOSTS + 8)].status, PL_DIR_OK);
    CHECK(strcmp(a->lookups[id % (MAX_HOSTS + 8)].record.cert.name, "user03") == 0);
    pl_simworld_set_tamper(l.w, NULL, NULL);
    pl_simworld_free(l.w);
}

static void a_supernode_that_serves_an_old_record_is_caught(void)
{
    static lab l;
    lab_up(&l, false, 5, 6);
    run(&l, T0 + 3 * PL_SEC);
    pl_simhost *bob = l.users[3];
    host_log *a = log_of(&l, l.users[0]);
    /* Alice follows bob; the liar keeps bob's first record. */
    CHECK_EQ(pl_dirc_subscribe(dirc_of(l.users[0]), "user03", now_of(&l)), PL_DIRC_OK);
    run(&l, now_of(&l) + 2 * PL_SEC);
    CHECK(a->presence_events >= 1);
    liar x = {.host = primary_for(&l, "user03"), .mode = 2};
    pl_dir *pd = pl_super_directory(pl_stack_super(pl_simhost_stack(x.host)));
    bool off;
    CHECK(pl_dir_held(pd, "user03", x.stale, sizeof x.stale, &x.stale_len, &off));
    snprintf(x.stale_name, sizeof x.stale_name, "user03");
    /* Bob goes away: a newer record, which alice hears of. */
    CHECK_EQ(pl_dirc_set_presence(dirc_of(bob), PL_PRESENCE_AWAY, "lunch", now_of(&l)), PL_DIRC_OK);
    run(&l, now_of(&l) + 3 * PL_SEC);
    CHECK_EQ(a->last_presence, PL_PRESENCE_AWAY);
    /* Now the liar serves the old record: alice refuses it (older than
     * what she saw) and gets the current one from the next replica. */
    pl_simworld_set_tamper(l.w, tamper, &x);
    uint32_t id;
    CHECK_EQ(pl_dirc_lookup(dirc_of(l.users[0]), "user03", now_of(&l), &id), PL_DIRC_OK);
    run(&l, now_of(&l) + 5 * PL_SEC);
    CHECK(x.lies >= 1);
    CHECK_EQ(a->lookups[id % (MAX_HOSTS + 8)].status, PL_DIR_OK);
    CHECK_EQ(a->lookups[id % (MAX_HOSTS + 8)].record.presence, PL_PRESENCE_AWAY);
    CHECK(strcmp(a->lookups[id % (MAX_HOSTS + 8)].record.status, "lunch") == 0);
    pl_simworld_set_tamper(l.w, NULL, NULL);
    pl_simworld_free(l.w);
}

/* A supernode will not store what its client did not sign for itself, and
 * replicas refuse a record older than the one they hold. */
static void nobody_publishes_for_someone_else_and_old_records_do_not_return(void)
{
    static lab l;
    lab_up(&l, false, 5, 4);
    run(&l, T0 + 3 * PL_SEC);
    pl_simhost *mallory = l.users[0], *bob = l.users[1];
    /* Mallory got hold of bob's record (anyone can look it up) and
     * publishes it as hers: refused. */
    pl_dir *d0 = pl_super_directory(pl_stack_super(pl_simhost_stack(primary_for(&l, "user01"))));
    uint8_t bob_rec[PL_RECORD_MAX_SIZE];
    size_t bob_len;
    bool off;
    CHECK(pl_dir_held(d0, "user01", bob_rec, sizeof bob_rec, &bob_len, &off));
    pl_node_status st = pl_node_get_status(pl_stack_node(pl_simhost_stack(mallory)));
    pl_stack *sn_stack = NULL;
    for (size_t i = 0; i < l.n_sn; i++)
        if (memcmp(pl_simhost_peer(l.sn[i])->pk, st.supernode.pk, 32) == 0) sn_stack = pl_simhost_stack(l.sn[i]);
    CHECK(sn_stack);
    pl_dir *mine = pl_super_directory(pl_stack_super(sn_stack));
    uint64_t refused = pl_dir_get_stats(mine).refused;
    uint8_t msg[16 + PL_RECORD_MAX_SIZE];
    pl_ovl_dir pub = {.type = PL_OVL_PUBLISH, .req = 99, .record = bob_rec, .record_len = bob_len};
    size_t len = pl_ovl_encode_dir(msg, sizeof msg, &pub);
    CHECK(len);
    pl_stack_deliver(sn_stack, pl_simhost_peer(mallory)->pk, pl_simhost_cert(mallory),
                     &pl_simhost_peer(mallory)->addr, msg, len, now_of(&l));
    CHECK_EQ(pl_dir_get_stats(mine).refused, refused + 1);
    /* Bob republishes (newer); the old copy offered again as a handover is
     * refused as stale by every replica. */
    CHECK_EQ(pl_dirc_set_presence(dirc_of(bob), PL_PRESENCE_AWAY, "", now_of(&l)), PL_DIRC_OK);
    run(&l, now_of(&l) + 2 * PL_SEC);
    uint8_t reps[8][32];
    CHECK_EQ(pl_dir_replicas_of(d0, "user01", reps), 3);
    for (size_t i = 0; i < l.n_sn; i++) {
        pl_dir *d = pl_super_directory(pl_stack_super(pl_simhost_stack(l.sn[i])));
        bool replica = false;
        for (int k = 0; k < 3; k++) replica |= memcmp(reps[k], pl_simhost_peer(l.sn[i])->pk, 32) == 0;
        if (!replica) continue;
        uint64_t stale = pl_dir_get_stats(d).stale;
        pl_ovl_dir store = {.type = PL_OVL_STORE, .flags = PL_DIR_F_HANDOVER, .record = bob_rec,
                            .record_len = bob_len};
        len = pl_ovl_encode_dir(msg, sizeof msg, &store);
        /* From another supernode (a member), so it is considered at all. */
        pl_simhost *other = l.sn[(i + 1) % l.n_sn];
        pl_stack_deliver(pl_simhost_stack(l.sn[i]), pl_simhost_peer(other)->pk, pl_simhost_cert(other),
                         &pl_simhost_peer(other)->addr, msg, len, now_of(&l));
        CHECK_EQ(pl_dir_get_stats(d).stale, stale + 1);
        uint8_t held[PL_RECORD_MAX_SIZE];
        size_t hl;
        CHECK(pl_dir_held(d, "user01", held, sizeof held, &hl, &off));
        pl_record r;
        CHECK_EQ(pl_record_decode(&r, held, hl), PL_RECORD_OK);
        CHECK_EQ(r.presence, PL_PRESENCE_AWAY);
    }
    pl_simworld_free(l.w);
}

/* The simulator's supernodes may share one ring, each with its own view of
 * who is alive: the answers must be the same as with rings of their own. */
static void supernodes_sharing_one_ring_behave_the_same(void)
{
    share_ring = true;
    records_stay_resolvable_when_two_supernodes_die();
    share_ring = false;
}

/* The same with supernodes that learn each other by gossip from one seed
 * and find out about the deaths themselves. */
static void with_gossip_membership_supernodes_find_out_by_themselves(void)
{
    gossip = true;
    static lab l;
    lab_up(&l, true, 5, 4);
    for (size_t i = 0; i < l.n_sn; i++)
        CHECK_EQ(pl_dir_member_count(pl_super_directory(pl_stack_super(pl_simhost_stack(l.sn[i])))), 5);
    pl_simworld_free(l.w);
    records_stay_resolvable_when_two_supernodes_die();
    gossip = false;
}

static void presence_reaches_watchers(void)
{
    static lab l;
    lab_up(&l, true, 5, 8);
    run(&l, T0 + 3 * PL_SEC);
    host_log *a = log_of(&l, l.users[0]);
    pl_simhost *bob = l.users[5];
    CHECK_EQ(pl_dirc_subscribe(dirc_of(l.users[0]), "user05", now_of(&l)), PL_DIRC_OK);
    run(&l, now_of(&l) + 2 * PL_SEC);
    /* Subscribing answers at once with bob's current state. */
    CHECK_EQ(a->presence_events, 1);
    CHECK(!a->last_offline);
    CHECK_EQ(a->last_presence, PL_PRESENCE_ONLINE);
    /* Bob goes away with a status text: alice hears it within a second. */
    pl_time change = now_of(&l);
    CHECK_EQ(pl_dirc_set_presence(dirc_of(bob), PL_PRESENCE_AWAY, "back at 3", change), PL_DIRC_OK);
    run(&l, change + 2 * PL_SEC);
    CHECK_EQ(a->presence_events, 2);
    CHECK_EQ(a->last_presence, PL_PRESENCE_AWAY);
    CHECK(strcmp(a->last_status, "back at 3") == 0);
    printf("     a presence change reached a watcher in %.0f ms\n", (a->last_presence_at - change) / 1e3);
    CHECK(a->last_presence_at - change < PL_SEC);
    /* Bob's machine dies: his supernode misses his keepalives and tells
     * the replicas, which tell alice's supernode, which tells alice. */
    pl_time death = now_of(&l);
    pl_simhost_crash(bob);
    run(&l, death + 120 * PL_SEC);
    CHECK(a->last_offline);
    CHECK(strcmp(a->last_presence_name, "user05") == 0);
    printf("     a node's loss reached a watcher %.1f s after it died\n", (a->last_presence_at - death) / 1e6);
    CHECK(a->last_presence_at - death <= 80 * PL_SEC);
    /* Bob comes back: online again. */
    pl_simhost_restart(bob);
    run(&l, now_of(&l) + 5 * PL_SEC);
    CHECK(!a->last_offline);
    pl_simworld_free(l.w);
}

/* One look-up of name by the user at index who; the record, or NULL. */
static const pl_record *lookup_one(lab *l, size_t who, const char *name)
{
    host_log *lg = log_of(l, l->users[who]);
    uint32_t id;
    if (pl_dirc_lookup(dirc_of(l->users[who]), name, now_of(l), &id) != PL_DIRC_OK) return NULL;
    result *r = &lg->lookups[id % (MAX_HOSTS + 8)];
    memset(r, 0, sizeof *r);
    run(l, now_of(l) + 2 * PL_SEC);
    return r->done && r->status == PL_DIR_OK ? &r->record : NULL;
}

static int find_candidate(const pl_record *r, uint8_t type)
{
    for (uint8_t i = 0; i < r->n_candidates; i++)
        if (r->candidates[i].type == type) return i;
    return -1;
}

/* The port the home router forwards (the daemon's portmap) goes into the
 * record as a port-mapped candidate, ahead of the server-reflexive one,
 * replaces it when they are the same address, and is withdrawn again. */
static void a_port_mapped_candidate_is_published_and_withdrawn(void)
{
    static lab l;
    lab_up(&l, true, 3, 2);
    run(&l, T0 + 3 * PL_SEC);
    pl_node *bob = pl_stack_node(pl_simhost_stack(l.users[1]));
    const pl_record *r = lookup_one(&l, 0, "user01");
    CHECK(r);
    if (!r) return;
    CHECK_EQ(find_candidate(r, PL_CAND_PORT_MAPPED), -1);
    int srflx = find_candidate(r, PL_CAND_SERVER_REFLEXIVE);
    CHECK(srflx >= 0);
    pl_addr observed = r->candidates[srflx >= 0 ? srflx : 0].addr;
    uint64_t seq = r->sequence;

    pl_addr mapped;
    CHECK(pl_addr_parse(&mapped, "203.0.113.77:6000", 0));
    pl_node_set_mapped(bob, &mapped, now_of(&l));
    pl_node_status bs = pl_node_get_status(bob);
    CHECK(pl_addr_equal(&bs.mapped, &mapped));
    run(&l, now_of(&l) + PL_SEC); /* the publish reaches the replicas */
    r = lookup_one(&l, 0, "user01");
    CHECK(r);
    if (!r) return;
    CHECK(r->sequence > seq);
    seq = r->sequence;
    CHECK_EQ(find_candidate(r, PL_CAND_PORT_MAPPED), 0); /* the preferred one: first */
    CHECK(pl_addr_equal(&r->candidates[0].addr, &mapped));
    CHECK_EQ(r->candidates[0].transport, PL_TRANSPORT_UDP);
    CHECK(find_candidate(r, PL_CAND_SERVER_REFLEXIVE) > 0);

    /* A NAT that keeps ports maps the address the supernode sees: one
     * candidate, port-mapped. */
    pl_node_set_mapped(bob, &observed, now_of(&l));
    run(&l, now_of(&l) + PL_SEC);
    r = lookup_one(&l, 0, "user01");
    CHECK(r);
    if (!r) return;
    CHECK(r->sequence > seq);
    seq = r->sequence;
    CHECK_EQ(find_candidate(r, PL_CAND_SERVER_REFLEXIVE), -1);
    int pm = find_candidate(r, PL_CAND_PORT_MAPPED);
    CHECK(pm >= 0 && pl_addr_equal(&r->candidates[pm].addr, &observed));

    /* Lost: withdrawn, the server-reflexive candidate is back. Setting the
     * same thing twice publishes nothing new. */
    pl_node_set_mapped(bob, NULL, now_of(&l));
    pl_node_set_mapped(bob, NULL, now_of(&l));
    CHECK_EQ(pl_node_get_status(bob).mapped.family, 0);
    run(&l, now_of(&l) + PL_SEC);
    r = lookup_one(&l, 0, "user01");
    CHECK(r);
    if (!r) return;
    CHECK(r->sequence > seq);
    CHECK_EQ(find_candidate(r, PL_CAND_PORT_MAPPED), -1);
    CHECK(find_candidate(r, PL_CAND_SERVER_REFLEXIVE) >= 0);
    pl_simworld_free(l.w);
}

int main(void)
{
    RUN(every_node_finds_every_other);
    RUN(records_stay_resolvable_when_two_supernodes_die);
    RUN(supernodes_sharing_one_ring_behave_the_same);
    RUN(with_gossip_membership_supernodes_find_out_by_themselves);
    RUN(a_supernode_that_alters_a_record_is_caught);
    RUN(a_supernode_that_serves_an_old_record_is_caught);
    RUN(nobody_publishes_for_someone_else_and_old_records_do_not_return);
    RUN(presence_reaches_watchers);
    RUN(a_port_mapped_candidate_is_published_and_withdrawn);
    return pl_test_summary();
}
