/* test_conference.c - conference calls end to end on the simulator: whole
 * stacks (sessions, directory, relays, paths, calls, Opus media) and the
 * conference core (conference.h) on each user, every user sending its own
 * tone. What each user hears is correlated against every user's tone: a
 * participant must hear every other participant and never itself. Shown:
 * ten parties, the tenth added mid-conference at a participant's request; a participant leaving; the host leaving
 * (hand-over to the elected successor, who mixes from then on); the new
 * host crashing (the participants go to the next successor); hosting moving
 * at the start to a better-connected participant; a declined invitation and
 * a host left alone; the messages' codec. */
#include <math.h>
#include <stdlib.h>

#include "conference.h"
#include "simworld.h"
#include "test.h"

#define T0 (1800000000ull * PL_SEC)
#define MAX_USERS 12
#define TICK (20 * PL_MSEC)
#define AMPLITUDE 2000.0

/* Tones far enough apart that a few seconds tell them apart cleanly. */
static const double TONES[MAX_USERS] = {300, 370, 450, 530, 620, 710, 810, 920, 1040, 1170, 1300, 1440};
static const char *NAMES[MAX_USERS] = {"alice", "bob",   "carol", "dave", "erin", "frank",
                                       "grace", "heidi", "irene", "judy", "kate", "liam"};

typedef struct user {
    pl_simhost *host;
    pl_conf *conf;
    bool decline; /* invitations: reject instead of answering */
    uint64_t t;   /* samples sent so far: the tone's phase */
    uint64_t rx;  /* samples played so far */
    /* the measuring window: projections of what we played on each tone */
    bool measuring;
    double re[MAX_USERS], im[MAX_USERS], energy;
    uint64_t n;
    /* conference events */
    int started, ended, host_changes, joined, left, add_results;
    uint8_t add_status;
    pl_conf_end end;
} user;

typedef struct lab {
    pl_simworld *w;
    pl_simhost *sn[2];
    user u[MAX_USERS];
    int n;
    uint64_t audio_timer;
    bool audio_on;
    pl_conf_report reports[MAX_USERS];
} lab;

static user *user_of(lab *l, pl_simhost *h)
{
    for (int i = 0; i < l->n; i++)
        if (l->u[i].host == h) return &l->u[i];
    return NULL;
}

static pl_phone *phone_of(user *u) { return pl_stack_phone(pl_simhost_stack(u->host)); }
static pl_time now_of(lab *l) { return pl_simworld_now(l->w); }
static void run_for(lab *l, pl_time d) { pl_simnet_run_until(pl_simworld_net(l->w), now_of(l) + d); }

static void on_conf_event(void *ctx, const pl_conf_event *ev)
{
    user *u = ctx;
    switch (ev->type) {
    case PL_CONF_EV_STARTED: u->started++; break;
    case PL_CONF_EV_HOST: u->host_changes++; break;
    case PL_CONF_EV_JOINED: u->joined++; break;
    case PL_CONF_EV_LEFT: u->left++; break;
    case PL_CONF_EV_ADD_RESULT:
        u->add_results++;
        u->add_status = ev->status;
        break;
    case PL_CONF_EV_ENDED:
        u->ended++;
        u->end = ev->end;
        break;
    default: break;
    }
}

static void make_conf(lab *l, user *u, int i)
{
    /* Conference ids from a seeded generator: the run stays reproducible. */
    static pl_rng_seeded seeded;
    static bool seeded_once;
    if (!seeded_once) {
        pl_rng_seeded_init(&seeded, 42);
        seeded_once = true;
    }
    pl_conf_config cc = {.identity = pl_simhost_identity(u->host), .name = pl_simhost_name(u->host), .rng = &seeded.rng};
    pl_conf_io io = {u, on_conf_event};
    pl_stack *st = pl_simhost_stack(u->host);
    CHECK_EQ(pl_conf_new(&u->conf, &cc, &io, pl_stack_phone(st), pl_stack_link(st)), PL_CONF_OK);
    pl_conf_set_report(u->conf, &l->reports[i]);
}

static void on_event(void *ctx, pl_simhost *h, const pl_stack_event *ev)
{
    lab *l = ctx;
    user *u = user_of(l, h);
    if (!u || !u->conf || ev->type != PL_STACK_EV_PHONE) return;
    const pl_phone_event *e = ev->phone;
    bool taken = pl_conf_phone_event(u->conf, e);
    /* Auto-answer, as the daemons in the lab tests do. */
    if (e->type == PL_PHONE_EV_INCOMING && !taken) {
        if (u->decline) pl_phone_reject(phone_of(u), e->id, e->now);
        else pl_phone_answer(phone_of(u), e->id, e->now);
    }
}

static void on_user_message(void *ctx, pl_simhost *h, const uint8_t pk[32], const uint8_t *msg, size_t len,
                            pl_time now)
{
    lab *l = ctx;
    user *u = user_of(l, h);
    if (u && u->conf) pl_conf_message(u->conf, pk, msg, len, now);
}

static void measure(user *u, const int16_t *out, int n_users)
{
    for (int s = 0; s < PL_VOICE_FRAME; s++) {
        double t = (double)(u->rx + (uint64_t)s) / PL_VOICE_RATE, x = out[s];
        u->energy += x * x;
        for (int k = 0; k < n_users; k++) {
            u->re[k] += x * cos(2 * M_PI * TONES[k] * t);
            u->im[k] += x * sin(2 * M_PI * TONES[k] * t);
        }
    }
    u->n += PL_VOICE_FRAME;
}

/* The sound card of every user: its tone in, what it plays measured. */
static void audio_tick(void *ctx, pl_time now)
{
    lab *l = ctx;
    l->audio_timer = 0;
    for (int i = 0; i < l->n; i++) {
        user *u = &l->u[i];
        if (!pl_simhost_running(u->host) || !u->conf) continue;
        pl_conf_tick(u->conf, now);
        int16_t in[PL_VOICE_FRAME], out[PL_VOICE_FRAME];
        for (int s = 0; s < PL_VOICE_FRAME; s++)
            in[s] = (int16_t)lrint(AMPLITUDE * sin(2 * M_PI * TONES[i] * (double)(u->t + (uint64_t)s) / PL_VOICE_RATE));
        u->t += PL_VOICE_FRAME;
        memset(out, 0, sizeof out);
        if (pl_conf_role_of(u->conf) != PL_CONF_NONE) {
            pl_conf_audio(u->conf, in, out, now);
        } else {
            /* Calls outside a conference (an invitation not yet known as one). */
            pl_phone *ph = phone_of(u);
            uint32_t ids[PL_PHONE_MAX_CALLS];
            size_t n = pl_phone_list(ph, ids, PL_PHONE_MAX_CALLS);
            for (size_t k = 0; k < n; k++) pl_phone_audio(ph, ids[k], in, out, now);
        }
        if (u->measuring) measure(u, out, l->n);
        u->rx += PL_VOICE_FRAME;
        pl_simhost_reschedule(u->host);
    }
    if (l->audio_on) l->audio_timer = pl_simnet_timer(pl_simworld_net(l->w), now + TICK, audio_tick, l);
}

/* Faster failure detection than a daemon's default, and a cheap encoder:
 * a dozen Opus streams per simulated 20 ms. */
static pl_phone_config phone_cfg = {.ring_timeout = 8 * PL_SEC, .silence_timeout = 3 * PL_SEC,
                                    .media = {.complexity = 2, .no_dtx = true}};

static void lab_up(lab *l, int n)
{
    lab keep = *l; /* reports set before */
    memset(l, 0, sizeof *l);
    memcpy(l->reports, keep.reports, sizeof l->reports);
    const char *shift = getenv("PARLEY_TEST_SEED");
    pl_simworld_config cfg = {.seed = 23 + (shift ? strtoull(shift, NULL, 10) : 0),
                              .start = T0,
                              .secure = true,
                              .link = {10 * PL_MSEC, 2 * PL_MSEC, 0},
                              .on_event = on_event,
                              .on_user_message = on_user_message,
                              .ctx = l};
    l->w = pl_simworld_new(&cfg);
    CHECK(l->w);
    pl_ovl_peer boot[2];
    for (int i = 0; i < 2; i++) {
        char name[24];
        snprintf(name, sizeof name, "super%d", i + 1);
        pl_stack_config c = {.role = PL_ROLE_SUPERNODE, .max_peers = 256};
        pl_addr a = pl_simworld_addr(100, i + 1, 7400);
        l->sn[i] = pl_simworld_add_host(l->w, name, &a, &c);
        CHECK(l->sn[i]);
        boot[i] = *pl_simhost_peer(l->sn[i]);
        pl_simhost_start(l->sn[i]);
    }
    pl_simworld_introduce_supernodes(l->w);
    for (int i = 0; i < n; i++) {
        pl_ovl_peer mine[2] = {boot[i % 2], boot[(i + 1) % 2]};
        pl_stack_config c = {.role = PL_ROLE_NODE, .bootstrap = mine, .n_bootstrap = 2, .max_peers = 64,
                             .phone = &phone_cfg};
        pl_addr a = pl_simworld_addr(1, i + 1, 5000);
        user *u = &l->u[l->n++];
        u->host = pl_simworld_add_host(l->w, NAMES[i], &a, &c);
        CHECK(u->host);
        pl_simhost_start(u->host);
        make_conf(l, u, i);
    }
    pl_simnet_run_until(pl_simworld_net(l->w), T0 + 3 * PL_SEC);
    for (int i = 0; i < n; i++)
        CHECK_EQ(pl_node_get_status(pl_stack_node(pl_simhost_stack(l->u[i].host))).state, PL_NODE_ATTACHED);
    l->audio_on = true;
    l->audio_timer = pl_simnet_timer(pl_simworld_net(l->w), now_of(l) + TICK, audio_tick, l);
}

static void lab_down(lab *l)
{
    l->audio_on = false;
    if (l->audio_timer) pl_simnet_timer_cancel(pl_simworld_net(l->w), l->audio_timer);
    for (int i = 0; i < l->n; i++) pl_conf_free(l->u[i].conf);
    pl_simworld_free(l->w);
    memset(l->reports, 0, sizeof l->reports);
}

static pl_conf_info info_of(user *u)
{
    pl_conf_info in;
    pl_conf_get_info(u->conf, &in);
    return in;
}

static int index_of(const char *name)
{
    for (int i = 0; i < MAX_USERS; i++)
        if (strcmp(NAMES[i], name) == 0) return i;
    return -1;
}

/* Measures for `window` and checks that each user in `in` hears exactly the
 * others in `in`: the normalised correlation of its playout with each other
 * user's tone is near the ideal 1/sqrt(k) for k voices, with its own near
 * zero, and with the tone of anyone outside near zero too. */
static void check_hearing(lab *l, const bool *in, pl_time window, const char *what)
{
    int k = 0;
    for (int i = 0; i < l->n; i++) {
        user *u = &l->u[i];
        memset(u->re, 0, sizeof u->re);
        memset(u->im, 0, sizeof u->im);
        u->energy = 0;
        u->n = 0;
        u->measuring = in[i];
        k += in[i];
    }
    run_for(l, window);
    double ideal = 1 / sqrt(k - 1), worst_other = 1, worst_self = 0, worst_out = 0;
    int failures = 0;
    for (int i = 0; i < l->n; i++) {
        user *u = &l->u[i];
        u->measuring = false;
        if (!in[i]) continue;
        double rms = sqrt(u->energy / (double)(u->n ? u->n : 1));
        for (int j = 0; j < l->n; j++) {
            double a = 2 * sqrt(u->re[j] * u->re[j] + u->im[j] * u->im[j]) / (double)(u->n ? u->n : 1);
            double rho = rms > 0 ? a / (sqrt(2) * rms) : 0;
            bool ok;
            if (j == i) {
                ok = rho < 0.05;
                if (rho > worst_self) worst_self = rho;
            } else if (in[j]) {
                ok = rho > 0.75 * ideal;
                if (rho < worst_other) worst_other = rho;
            } else {
                ok = rho < 0.05;
                if (rho > worst_out) worst_out = rho;
            }
            if (!ok) {
                failures++;
                printf("     %s: %s hears %s at %.3f\n", what, NAMES[i], NAMES[j], rho);
            }
        }
    }
    printf("     %s (%d parties): others heard at >= %.3f (ideal %.3f), own voice <= %.3f, absent <= %.3f\n", what, k,
           worst_other, ideal, worst_self, worst_out);
    CHECK_EQ(failures, 0);
}

/* Everyone in `in` agrees on the host, the successor and the roster. */
static void check_roster(lab *l, const bool *in, const char *host)
{
    int k = 0;
    for (int i = 0; i < l->n; i++) k += in[i];
    char successor[PL_NAME_MAX + 1] = "";
    for (int i = 0; i < l->n; i++) {
        if (!in[i]) continue;
        pl_conf_info ci = info_of(&l->u[i]);
        CHECK(ci.role == (strcmp(NAMES[i], host) == 0 ? PL_CONF_HOST : PL_CONF_PARTICIPANT));
        CHECK_EQ((int)ci.n, k);
        CHECK(ci.host >= 0 && strcmp(ci.members[ci.host].name, host) == 0);
        CHECK(ci.successor >= 0);
        if (ci.successor < 0 || ci.host < 0) continue;
        if (!*successor) snprintf(successor, sizeof successor, "%s", ci.members[ci.successor].name);
        CHECK(strcmp(ci.members[ci.successor].name, successor) == 0);
        for (size_t m = 0; m < ci.n; m++) {
            int who = index_of(ci.members[m].name);
            CHECK(who >= 0 && in[who]);
            CHECK_EQ(ci.members[m].state, PL_CONF_CONNECTED);
        }
    }
}

static int count_connected(const pl_conf_info *ci)
{
    int n = 0;
    for (size_t m = 0; m < ci->n; m++) n += ci->members[m].state == PL_CONF_CONNECTED;
    return n;
}

static int count_in(const bool *in)
{
    int n = 0;
    for (int i = 0; i < MAX_USERS; i++) n += in[i];
    return n;
}

static const char *successor_of(user *u)
{
    static pl_conf_info in;
    pl_conf_get_info(u->conf, &in);
    return in.successor >= 0 ? in.members[in.successor].name : "";
}

/* ---- tests ------------------------------------------------------------------------------------------ */

static void ten_parties_join_leave_handover(void)
{
    lab l;
    memset(&l, 0, sizeof l);
    for (int i = 0; i < 11; i++) l.reports[i] = (pl_conf_report){.nat = PL_MIX_NAT_CONE, .can_host = true};
    lab_up(&l, 11); /* alice .. judy, and kate (never invited) */
    bool in[MAX_USERS] = {0};
    /* alice calls eight users at once. */
    const char *names[8];
    for (int i = 1; i <= 8; i++) names[i - 1] = NAMES[i];
    CHECK_EQ(pl_conf_start(l.u[0].conf, names, 8, now_of(&l)), PL_CONF_OK);
    CHECK_EQ(pl_conf_start(l.u[0].conf, names, 8, now_of(&l)), PL_CONF_ERR_BUSY);
    run_for(&l, 4 * PL_SEC);
    for (int i = 0; i <= 8; i++) in[i] = true;
    check_roster(&l, in, "alice");
    /* A participant asks the host to add judy: the tenth. */
    CHECK_EQ(pl_conf_add(l.u[1].conf, "judy", now_of(&l)), PL_CONF_OK);
    CHECK_EQ(pl_conf_add(l.u[2].conf, "alice", now_of(&l)), PL_CONF_ERR_ALREADY);
    run_for(&l, 3 * PL_SEC);
    CHECK_EQ(l.u[1].add_results, 1);
    CHECK_EQ(l.u[1].add_status, PL_CONF_ADD_DIALING);
    in[9] = true;
    check_roster(&l, in, "alice");
    pl_conf_info hi = info_of(&l.u[0]);
    printf("     ten parties: host alice, successor %s, roster version %u, %llu roster pages sent\n", successor_of(&l.u[0]),
           hi.version, (unsigned long long)hi.stats.pages_sent);
    check_hearing(&l, in, 3 * PL_SEC, "ten parties");
    /* Mixing cost nothing in clipping: the limiter stayed at unity. */
    for (size_t m = 0; m < hi.n; m++) CHECK(hi.members[m].mix.gain > 0.99f);

    /* carol leaves. */
    CHECK_EQ(pl_conf_leave(l.u[2].conf, now_of(&l)), PL_CONF_OK);
    run_for(&l, PL_SEC);
    CHECK_EQ(l.u[2].ended, 1);
    CHECK_EQ(l.u[2].end, PL_CONF_END_LEFT);
    CHECK_EQ(pl_conf_role_of(l.u[2].conf), PL_CONF_NONE);
    in[2] = false;
    check_roster(&l, in, "alice");
    check_hearing(&l, in, 2 * PL_SEC, "carol left");

    /* The host leaves: the successor takes over and the rest call it. */
    char next[PL_NAME_MAX + 1];
    snprintf(next, sizeof next, "%s", successor_of(&l.u[0]));
    int s = index_of(next);
    CHECK(s > 0);
    if (s <= 0) {
        lab_down(&l);
        return;
    }
    pl_time t_leave = now_of(&l);
    CHECK_EQ(pl_conf_leave(l.u[0].conf, t_leave), PL_CONF_OK);
    in[0] = false;
    /* How long until every participant is connected to the new host. */
    pl_time switched = 0;
    while (!switched && now_of(&l) < t_leave + 4 * PL_SEC) {
        run_for(&l, 10 * PL_MSEC);
        pl_conf_info hi2 = info_of(&l.u[s]);
        if (hi2.role == PL_CONF_HOST && count_connected(&hi2) == count_in(in)) switched = now_of(&l);
    }
    CHECK(switched);
    run_for(&l, 2 * PL_SEC);
    CHECK_EQ(l.u[0].end, PL_CONF_END_LEFT);
    check_roster(&l, in, next);
    pl_conf_info ni = info_of(&l.u[s]);
    printf("     alice left: %s hosts (%zu parties) %.0f ms later, its successor %s\n", next, ni.n,
           (switched - t_leave) / 1e3, successor_of(&l.u[s]));
    check_hearing(&l, in, 2 * PL_SEC, "after the hand-over");

    /* The new host crashes: its legs go silent, and everyone calls the
     * next successor. */
    snprintf(next, sizeof next, "%s", successor_of(&l.u[s]));
    int s2 = index_of(next);
    CHECK(s2 > 0 && s2 != s);
    pl_conf_free(l.u[s].conf);
    l.u[s].conf = NULL;
    pl_simhost_crash(l.u[s].host);
    in[s] = false;
    run_for(&l, 8 * PL_SEC);
    if (s2 > 0) {
        check_roster(&l, in, next);
        printf("     %s crashed: %s hosts (%zu parties)\n", NAMES[s], next, info_of(&l.u[s2]).n);
        check_hearing(&l, in, 2 * PL_SEC, "after the host crashed");
    }
    /* kate was never invited and heard nothing of it. */
    CHECK_EQ(l.u[10].started, 0);
    lab_down(&l);
}

static void hosting_moves_to_the_best_connected(void)
{
    lab l;
    memset(&l, 0, sizeof l);
    /* alice starts, but she is behind a symmetric NAT; dave has a public
     * address and bandwidth for everyone. */
    for (int i = 0; i < 5; i++) l.reports[i] = (pl_conf_report){.nat = PL_MIX_NAT_CONE, .can_host = true};
    l.reports[0].nat = PL_MIX_NAT_SYMMETRIC;
    l.reports[3] = (pl_conf_report){.up_kbps = 10000, .down_kbps = 10000, .nat = PL_MIX_NAT_OPEN, .can_host = true};
    lab_up(&l, 5);
    const char *names[] = {"bob", "carol", "dave", "erin"};
    CHECK_EQ(pl_conf_start(l.u[0].conf, names, 4, now_of(&l)), PL_CONF_OK);
    run_for(&l, 8 * PL_SEC);
    bool in[MAX_USERS] = {true, true, true, true, true};
    check_roster(&l, in, "dave");
    CHECK_EQ(info_of(&l.u[0]).stats.moves, 1);
    CHECK_EQ(l.u[0].ended, 0);
    check_hearing(&l, in, 2 * PL_SEC, "hosting moved to dave");
    /* dave stays host when alice's report changes: no flapping. */
    pl_conf_report better = {.up_kbps = 100000, .down_kbps = 100000, .nat = PL_MIX_NAT_OPEN, .can_host = true};
    pl_conf_set_report(l.u[0].conf, &better);
    run_for(&l, 7 * PL_SEC);
    check_roster(&l, in, "dave");
    CHECK(strcmp(successor_of(&l.u[3]), "alice") == 0);
    lab_down(&l);
}

static void declined_and_alone(void)
{
    lab l;
    memset(&l, 0, sizeof l);
    for (int i = 0; i < 3; i++) l.reports[i] = (pl_conf_report){.nat = PL_MIX_NAT_CONE, .can_host = true};
    lab_up(&l, 3);
    l.u[1].decline = true;
    const char *names[] = {"bob", "carol", "nobody-here"};
    CHECK_EQ(pl_conf_start(l.u[0].conf, names, 3, now_of(&l)), PL_CONF_OK);
    run_for(&l, 4 * PL_SEC);
    pl_conf_info ai = info_of(&l.u[0]);
    CHECK_EQ((int)ai.n, 2); /* bob declined, nobody-here does not exist */
    CHECK_EQ(l.u[0].left, 2);
    CHECK_EQ(pl_conf_role_of(l.u[2].conf), PL_CONF_PARTICIPANT);
    CHECK_EQ(pl_conf_role_of(l.u[1].conf), PL_CONF_NONE);
    /* Two people: alice hears carol and carol alice. */
    bool in[MAX_USERS] = {true, false, true};
    check_hearing(&l, in, 2 * PL_SEC, "alice and carol");
    /* carol hangs up her leg herself: she left; alice is alone and the
     * conference ends. */
    pl_conf_info ci = info_of(&l.u[2]);
    CHECK_EQ(pl_phone_hangup(phone_of(&l.u[2]), ci.leg, now_of(&l)), PL_PHONE_OK);
    pl_simhost_reschedule(l.u[2].host);
    run_for(&l, PL_SEC);
    CHECK_EQ(l.u[2].end, PL_CONF_END_LEFT);
    CHECK_EQ(l.u[0].end, PL_CONF_END_ALONE);
    CHECK_EQ(pl_conf_role_of(l.u[0].conf), PL_CONF_NONE);
    /* A plain call grows into a conference when one side adds someone. */
    uint32_t id;
    CHECK_EQ(pl_phone_dial(phone_of(&l.u[0]), "carol", now_of(&l), &id), PL_PHONE_OK);
    pl_simhost_reschedule(l.u[0].host);
    run_for(&l, 2 * PL_SEC);
    l.u[1].decline = false;
    CHECK_EQ(pl_conf_add(l.u[2].conf, "bob", now_of(&l)), PL_CONF_OK);
    run_for(&l, 3 * PL_SEC);
    bool all[MAX_USERS] = {true, true, true};
    check_roster(&l, all, "carol");
    check_hearing(&l, all, 2 * PL_SEC, "a call grown into a conference");
    lab_down(&l);
}

/* ---- the messages -------------------------------------------------------------------------------------- */

static void codec(void)
{
    pl_conf_msg m, d;
    uint8_t buf[PL_CONF_MSG_MAX + 8];
    memset(&m, 0, sizeof m);
    m.type = PL_CONF_MSG_ROSTER;
    for (int i = 0; i < 16; i++) m.conf_id[i] = (uint8_t)i;
    m.version = 7;
    m.flags = PL_CONF_F_HANDOVER;
    m.total = 14;
    m.first = 12;
    m.count = 2;
    m.host = 0;
    m.successor = 13;
    for (int i = 0; i < 2; i++) {
        memset(m.entries[i].key, 0x40 + i, 32);
        snprintf(m.entries[i].name, sizeof m.entries[i].name, "%s", i ? "bob.b" : "alice-a");
        m.entries[i].state = (uint8_t)(i + 1);
        m.entries[i].report = (pl_conf_report){1000, 2000, 42, PL_MIX_NAT_SYMMETRIC, i == 1};
    }
    size_t n = pl_conf_msg_encode(buf, sizeof buf, &m);
    CHECK_EQ(n, (size_t)PL_CONF_ROSTER_HEADER + 2 * 46 + 7 + 5);
    CHECK(pl_conf_msg_decode(&d, buf, n));
    CHECK_EQ(d.version, 7);
    CHECK_EQ(d.successor, 13);
    CHECK(strcmp(d.entries[1].name, "bob.b") == 0 && d.entries[1].report.can_host && d.entries[1].report.rtt_ms == 42);
    uint8_t again[PL_CONF_MSG_MAX];
    CHECK_EQ(pl_conf_msg_encode(again, sizeof again, &d), n);
    CHECK(memcmp(again, buf, n) == 0);
    /* Trailing bytes, a short message, a page past the end, a bad name, an
     * unknown flag, HANDOVER without a successor. */
    buf[n] = 0;
    CHECK(!pl_conf_msg_decode(&d, buf, n + 1));
    CHECK(!pl_conf_msg_decode(&d, buf, n - 1));
    uint8_t bad[PL_CONF_MSG_MAX];
    memcpy(bad, buf, n);
    bad[26] = 13; /* first 13 + count 2 > total 14 */
    CHECK(!pl_conf_msg_decode(&d, bad, n));
    memcpy(bad, buf, n);
    bad[PL_CONF_ROSTER_HEADER + 33] = 'A'; /* upper case: not canonical */
    CHECK(!pl_conf_msg_decode(&d, bad, n));
    memcpy(bad, buf, n);
    bad[22] = 0x04;
    CHECK(!pl_conf_msg_decode(&d, bad, n));
    m.successor = 0xff;
    CHECK_EQ(pl_conf_msg_encode(buf, sizeof buf, &m), 0);
    m.flags = 0;
    CHECK(pl_conf_msg_encode(buf, sizeof buf, &m) > 0);
    /* A full page of the longest names fits the bound. */
    m.first = 0;
    m.count = PL_CONF_PAGE;
    m.total = PL_CONF_MAX;
    for (int i = 0; i < PL_CONF_PAGE; i++) {
        memset(m.entries[i].name, 'a', PL_NAME_MAX);
        m.entries[i].name[PL_NAME_MAX] = 0;
    }
    n = pl_conf_msg_encode(buf, sizeof buf, &m);
    CHECK_EQ(n, (size_t)PL_CONF_MSG_MAX);
    CHECK(pl_conf_msg_decode(&d, buf, n));
    /* The other types. */
    memset(&m, 0, sizeof m);
    m.type = PL_CONF_MSG_REPORT;
    m.version = 3;
    m.report = (pl_conf_report){5, 6, 7, PL_MIX_NAT_OPEN, true};
    n = pl_conf_msg_encode(buf, sizeof buf, &m);
    CHECK_EQ(n, 34);
    CHECK(pl_conf_msg_decode(&d, buf, n) && d.report.down_kbps == 6 && d.version == 3);
    buf[33] = 0x03; /* an unknown report flag */
    CHECK(!pl_conf_msg_decode(&d, buf, n));
    m.type = PL_CONF_MSG_ADD;
    m.req = 9;
    snprintf(m.name, sizeof m.name, "judy");
    n = pl_conf_msg_encode(buf, sizeof buf, &m);
    CHECK(pl_conf_msg_decode(&d, buf, n) && strcmp(d.name, "judy") == 0 && d.req == 9);
    snprintf(m.name, sizeof m.name, "Judy");
    CHECK_EQ(pl_conf_msg_encode(buf, sizeof buf, &m), 0);
    m.type = PL_CONF_MSG_ADD_RESULT;
    m.status = PL_CONF_ADD_FULL;
    n = pl_conf_msg_encode(buf, sizeof buf, &m);
    CHECK(pl_conf_msg_decode(&d, buf, n) && d.status == PL_CONF_ADD_FULL);
    buf[n - 1] = 9;
    CHECK(!pl_conf_msg_decode(&d, buf, n));
    buf[0] = 0x9f;
    CHECK(!pl_conf_msg_decode(&d, buf, n));
}

int main(void)
{
    pl_init();
    RUN(codec);
    RUN(ten_parties_join_leave_handover);
    RUN(hosting_moves_to_the_best_connected);
    RUN(declined_and_alone);
    return pl_test_summary();
}
