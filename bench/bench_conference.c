/*
 * bench_conference.c - what a conference costs its host and what delay its
 * mixing adds, on the simulator: whole stacks (secure sessions, directory,
 * calls, Opus media at the daemon's default complexity, jitter buffers) and
 * the conference core, with no CPU contention and an exact clock.
 *
 *  1. The host's CPU in a 10-party conference, every party sending a
 *     voice-like signal all the time: the thread CPU time of the host's
 *     20 ms audio ticks (nine legs' jitter buffers and Opus decodes, the
 *     mix, nine Opus encodes, sealing and sending), per participant. The
 *     real daemon's whole process is measured by bench/conference.bench.sh.
 *  2. The one-way delay, mouth to ear, of a plain call and of a conference
 *     over the same links (10 ms each way, no jitter): everyone is silent
 *     but one talker, who sends 40 ms bursts of noise; the listener's first
 *     loud sample after each burst gives the delay (the median of eight).
 *     A conference adds, against the plain call: host -> participant and
 *     participant -> host, the mixer; participant -> participant, the host's
 *     jitter buffer, decode, mixer and encode, and the second network hop.
 *
 * Run: build/release/bench/bench_conference [parties, default 10]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conference.h"
#include "simworld.h"

#define T0 (1800000000ull * PL_SEC)
#define MAX_USERS 12
#define TICK (20 * PL_MSEC)
#define LATENCY (10 * PL_MSEC)
#define BURSTS 8
#define BURST_EVERY 40 /* frames between bursts (0.8 s) */
#define BURST_FRAMES 2
#define THRESHOLD 2500

static const char *NAMES[MAX_USERS] = {"alice", "bob",   "carol", "dave", "erin", "frank",
                                       "grace", "heidi", "irene", "judy", "kate", "liam"};

typedef enum { QUIET, VOICE } mode;

typedef struct user {
    pl_simhost *host;
    pl_conf *conf;
    uint64_t rng;
    /* the delay measurement: the first loud sample since `armed_at` */
    bool armed;
    uint64_t heard_at; /* a global sample index; 0: not yet */
} user;

typedef struct lab {
    pl_simworld *w;
    pl_simhost *sn[2];
    user u[MAX_USERS];
    int n;
    uint64_t audio_timer;
    bool audio_on;
    uint64_t frame; /* global audio frame counter: every user ticks together */
    mode mode;
    int talker;             /* QUIET: who sends bursts (-1: nobody) */
    uint64_t burst_at;      /* the frame the current burst starts */
    int timed;              /* whose audio ticks are timed (-1: nobody) */
    double timed_cpu;       /* seconds */
    uint64_t timed_ticks;
} lab;

static void need(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "bench_conference: %s\n", what);
        exit(1);
    }
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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
    (void)ctx;
    (void)ev;
}

static void on_event(void *ctx, pl_simhost *h, const pl_stack_event *ev)
{
    lab *l = ctx;
    user *u = user_of(l, h);
    if (!u || !u->conf || ev->type != PL_STACK_EV_PHONE) return;
    const pl_phone_event *e = ev->phone;
    bool taken = pl_conf_phone_event(u->conf, e);
    if (e->type == PL_PHONE_EV_INCOMING && !taken) pl_phone_answer(phone_of(u), e->id, e->now);
}

static void on_user_message(void *ctx, pl_simhost *h, const uint8_t pk[32], const uint8_t *msg, size_t len,
                            pl_time now)
{
    lab *l = ctx;
    user *u = user_of(l, h);
    if (u && u->conf) pl_conf_message(u->conf, pk, msg, len, now);
}

static double noise(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(int32_t)(*s >> 32) / 2147483648.0;
}

/* A voice-like signal: harmonics of a pitch of its own, a syllable rhythm, noise. */
static void voice(user *u, int p, uint64_t frame, int16_t *out)
{
    double f0 = 110 + 23 * p;
    for (int i = 0; i < PL_VOICE_FRAME; i++) {
        double t = (double)(frame * PL_VOICE_FRAME + (uint64_t)i) / PL_VOICE_RATE;
        double env = 0.5 + 0.5 * sin(2 * M_PI * (2.5 + 0.3 * p) * t);
        double s = 0;
        for (int h = 1; h <= 6; h++) s += sin(2 * M_PI * f0 * h * t + p) / h;
        out[i] = (int16_t)lrint(3000 * env * s + 200 * noise(&u->rng));
    }
}

static void audio_tick(void *ctx, pl_time now)
{
    lab *l = ctx;
    l->audio_timer = 0;
    for (int i = 0; i < l->n; i++) {
        user *u = &l->u[i];
        if (!pl_simhost_running(u->host) || !u->conf) continue;
        pl_conf_tick(u->conf, now);
        int16_t in[PL_VOICE_FRAME], out[PL_VOICE_FRAME];
        memset(in, 0, sizeof in);
        if (l->mode == VOICE) voice(u, i, l->frame, in);
        else if (i == l->talker && l->frame >= l->burst_at && l->frame < l->burst_at + BURST_FRAMES)
            for (int s = 0; s < PL_VOICE_FRAME; s++) in[s] = (int16_t)lrint(12000 * noise(&u->rng));
        memset(out, 0, sizeof out);
        double t0 = i == l->timed ? cpu_now() : 0;
        if (pl_conf_role_of(u->conf) != PL_CONF_NONE) {
            pl_conf_audio(u->conf, in, out, now);
        } else {
            pl_phone *ph = phone_of(u);
            uint32_t ids[PL_PHONE_MAX_CALLS];
            size_t n = pl_phone_list(ph, ids, PL_PHONE_MAX_CALLS);
            for (size_t k = 0; k < n; k++) pl_phone_audio(ph, ids[k], in, out, now);
        }
        if (i == l->timed) {
            l->timed_cpu += cpu_now() - t0;
            l->timed_ticks++;
        }
        if (u->armed && !u->heard_at)
            for (int s = 0; s < PL_VOICE_FRAME; s++)
                if (abs(out[s]) > THRESHOLD) {
                    u->heard_at = l->frame * PL_VOICE_FRAME + (uint64_t)s;
                    break;
                }
        pl_simhost_reschedule(u->host);
    }
    l->frame++;
    if (l->audio_on) l->audio_timer = pl_simnet_timer(pl_simworld_net(l->w), now + TICK, audio_tick, l);
}

/* The daemon's media defaults (Opus complexity, bitrate), without DTX so
 * that a silent party still sends and the bursts meet a running stream. */
static pl_phone_config phone_cfg = {.ring_timeout = 8 * PL_SEC, .silence_timeout = 3 * PL_SEC,
                                    .media = {.no_dtx = true}};

static void lab_up(lab *l, int n)
{
    memset(l, 0, sizeof *l);
    l->talker = -1;
    l->timed = -1;
    pl_simworld_config cfg = {.seed = 5,
                              .start = T0,
                              .secure = true,
                              .link = {LATENCY, 0, 0},
                              .on_event = on_event,
                              .on_user_message = on_user_message,
                              .ctx = l};
    l->w = pl_simworld_new(&cfg);
    need(l->w != NULL, "no world");
    pl_ovl_peer boot[2];
    for (int i = 0; i < 2; i++) {
        char name[24];
        snprintf(name, sizeof name, "super%d", i + 1);
        pl_stack_config c = {.role = PL_ROLE_SUPERNODE, .max_peers = 256};
        pl_addr a = pl_simworld_addr(100, i + 1, 7400);
        l->sn[i] = pl_simworld_add_host(l->w, name, &a, &c);
        need(l->sn[i] != NULL, "no supernode");
        boot[i] = *pl_simhost_peer(l->sn[i]);
        pl_simhost_start(l->sn[i]);
    }
    pl_simworld_introduce_supernodes(l->w);
    static pl_rng_seeded seeded;
    pl_rng_seeded_init(&seeded, 42);
    for (int i = 0; i < n; i++) {
        pl_ovl_peer mine[2] = {boot[i % 2], boot[(i + 1) % 2]};
        pl_stack_config c = {.role = PL_ROLE_NODE, .bootstrap = mine, .n_bootstrap = 2, .max_peers = 64,
                             .phone = &phone_cfg};
        pl_addr a = pl_simworld_addr(1, i + 1, 5000);
        user *u = &l->u[l->n++];
        u->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
        u->host = pl_simworld_add_host(l->w, NAMES[i], &a, &c);
        need(u->host != NULL, "no user");
        pl_simhost_start(u->host);
        pl_conf_config cc = {.identity = pl_simhost_identity(u->host),
                             .name = pl_simhost_name(u->host),
                             .rng = &seeded.rng,
                             .stay_host = true};
        pl_conf_io io = {u, on_conf_event};
        pl_stack *st = pl_simhost_stack(u->host);
        need(pl_conf_new(&u->conf, &cc, &io, pl_stack_phone(st), pl_stack_link(st)) == PL_CONF_OK, "pl_conf_new");
    }
    pl_simnet_run_until(pl_simworld_net(l->w), T0 + 3 * PL_SEC);
    for (int i = 0; i < n; i++)
        need(pl_node_get_status(pl_stack_node(pl_simhost_stack(l->u[i].host))).state == PL_NODE_ATTACHED,
             "a user did not attach");
    l->audio_on = true;
    l->audio_timer = pl_simnet_timer(pl_simworld_net(l->w), now_of(l) + TICK, audio_tick, l);
}

static void lab_down(lab *l)
{
    l->audio_on = false;
    if (l->audio_timer) pl_simnet_timer_cancel(pl_simworld_net(l->w), l->audio_timer);
    for (int i = 0; i < l->n; i++) pl_conf_free(l->u[i].conf);
    pl_simworld_free(l->w);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median one-way delay (ms) from talker to listener over BURSTS bursts. */
static double burst_delay(lab *l, int talker, int listener)
{
    double d[BURSTS];
    int got = 0;
    l->mode = QUIET;
    l->talker = talker;
    run_for(l, 500 * PL_MSEC); /* the voices die away */
    for (int b = 0; b < BURSTS; b++) {
        user *u = &l->u[listener];
        u->armed = true;
        u->heard_at = 0;
        l->burst_at = l->frame + 1;
        run_for(l, BURST_EVERY * TICK);
        u->armed = false;
        if (u->heard_at) d[got++] = (double)(u->heard_at - l->burst_at * PL_VOICE_FRAME) * 1000.0 / PL_VOICE_RATE;
    }
    l->talker = -1;
    need(got >= BURSTS / 2, "the bursts were not heard");
    qsort(d, (size_t)got, sizeof d[0], cmp_double);
    return d[got / 2];
}

/* A difference to one decimal, never printed as -0.0. */
static double tenth(double x) { return round(x * 10) / 10 + 0.0; }

static int connected(const pl_conf *c)
{
    pl_conf_info in;
    pl_conf_get_info(c, &in);
    int n = 0;
    for (size_t m = 0; m < in.n; m++) n += in.members[m].state == PL_CONF_CONNECTED;
    return n;
}

int main(int argc, char **argv)
{
    int parties = argc > 1 ? atoi(argv[1]) : 10;
    if (parties < 3 || parties > MAX_USERS) {
        fprintf(stderr, "usage: bench_conference [parties 3-%d]\n", MAX_USERS);
        return 2;
    }
    static lab l;
    printf("== conferences on the simulator (bench_conference): links %.0f ms one way, no jitter, no loss\n",
           (double)LATENCY / PL_MSEC);

    /* ---- a plain call ---------------------------------------------------------------------- */
    lab_up(&l, 2);
    uint32_t id = 0;
    need(pl_phone_dial(phone_of(&l.u[0]), "bob", now_of(&l), &id) == PL_PHONE_OK, "dial");
    l.mode = VOICE;
    run_for(&l, 3 * PL_SEC);
    double plain_ab = burst_delay(&l, 0, 1), plain_ba = burst_delay(&l, 1, 0);
    double plain = (plain_ab + plain_ba) / 2;
    printf("plain call: one-way delay %.1f ms (alice->bob %.1f, bob->alice %.1f; the network %.0f of it)\n", plain,
           plain_ab, plain_ba, (double)LATENCY / PL_MSEC);
    lab_down(&l);

    /* ---- the conference ------------------------------------------------------------------ */
    lab_up(&l, parties);
    const char *names[MAX_USERS];
    for (int i = 1; i < parties; i++) names[i - 1] = NAMES[i];
    need(pl_conf_start(l.u[0].conf, names, (size_t)parties - 1, now_of(&l)) == PL_CONF_OK, "pl_conf_start");
    l.mode = VOICE;
    for (int i = 0; i < 100 && connected(l.u[0].conf) < parties; i++) run_for(&l, 100 * PL_MSEC);
    need(connected(l.u[0].conf) == parties, "not everyone connected");
    need(pl_conf_role_of(l.u[0].conf) == PL_CONF_HOST, "alice does not host");
    run_for(&l, 2 * PL_SEC);
    l.timed = 0;
    l.timed_cpu = 0;
    l.timed_ticks = 0;
    pl_time window = 10 * PL_SEC;
    run_for(&l, window);
    l.timed = -1;
    double per_s = l.timed_cpu / ((double)l.timed_ticks * TICK / PL_SEC);
    printf("host CPU, its audio ticks (%d legs: jitter buffers and Opus decodes, mix, %d Opus encodes, sealing) over %.0f s "
           "of voice:\n",
           parties - 1, parties - 1, (double)window / PL_SEC);
    printf("  %.2f%% of one core in all; per participant (/%d) %.2f%% = %.2f ms of CPU per second; per tick %.2f ms\n",
           100 * per_s, parties, 100 * per_s / parties, 1000 * per_s / parties, 1000 * l.timed_cpu / (double)l.timed_ticks);
    double hp = burst_delay(&l, 0, 1), ph = burst_delay(&l, 1, 0), pp = burst_delay(&l, 1, 2), pp2 = burst_delay(&l, 2, 1);
    printf("one-way delay in the %d-party conference:\n", parties);
    printf("  host -> participant %.1f ms, participant -> host %.1f ms: mixing adds %+.1f and %+.1f ms to the plain call's "
           "%.1f / %.1f\n",
           hp, ph, tenth(hp - plain_ab), tenth(ph - plain_ba), plain_ab, plain_ba);
    double pmean = (pp + pp2) / 2;
    printf("  participant -> participant (through the host) %.1f and %.1f ms: %.1f ms over the plain call, of which %.0f "
           "the second network hop and %.1f the host (its jitter buffer, decode, mixer, encode)\n",
           pp, pp2, pmean - plain, (double)LATENCY / PL_MSEC, pmean - plain - (double)LATENCY / PL_MSEC);
    lab_down(&l);
    return 0;
}
