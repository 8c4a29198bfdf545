/* test_phone.c - calls end to end: whole stacks (link, node, supernode,
 * phone: directory, relay, rendezvous, path manager, call engine, media
 * stream) with real sessions on the simulator. Users call each other by
 * name and talk both ways; hold, mute, reject, busy, no answer, glare,
 * unreachable, network failure, privacy mode (relayed), a changed key, and
 * a tampered and a replayed media packet on the wire. */
#include <math.h>
#include <stdlib.h>

#include "media_packet.h"
#include "simworld.h"
#include "test.h"

#define T0 (1800000000ull * PL_SEC)
#define MAX_USERS 6
#define TICK (20 * PL_MSEC)

enum { ANSWER = 0, REJECT, IGNORE };

typedef struct user_log {
    pl_simhost *host;
    int policy;
    pl_time answer_after; /* ANSWER: this long after the call rings */
    uint32_t incoming_id;
    pl_time ring_at;
    int incoming, dialing, ended, key_events;
    uint32_t ended_id;
    uint8_t end_reason;
    bool end_local;
    pl_phone_call_info last_end; /* info at the last end */
    char warning[1024];
    int media_events;
    double tone_hz;
    double phase;
    /* playout: frames with the peer's tone in them */
    uint64_t frames_out, loud_out;
    uint64_t seq_frames;
} user_log;

typedef struct lab {
    pl_simworld *w;
    pl_simhost *sn[2];
    user_log users[MAX_USERS];
    int n_users;
    uint64_t audio_timer;
    bool audio_on;
    /* the wire */
    pl_simhost *tap_from;
    pl_addr tap_to;
    uint8_t captured[PL_SEC_MAX_DATAGRAM];
    size_t captured_len;
    int captured_n;
    bool hold_next;
    uint64_t direct_from_private; /* datagrams from the private user's address to its peer's */
    pl_simhost *private_user, *private_peer;
    /* no datagram between these two (their direct paths are cut) */
    pl_simhost *cut_a, *cut_b;
    /* voice-sized datagrams sent to the watched host: the longest gap */
    pl_simhost *watch;
    pl_time watch_last, watch_gap, watch_from;
    /* a pinned key, for the trust test */
    bool pin_set;
    uint8_t pinned[32];
    char pinned_name[PL_NAME_MAX + 1];
} lab;

static lab *the_lab; /* the pin callbacks' context (a static config) */

static user_log *log_of(lab *l, pl_simhost *h)
{
    for (int i = 0; i < l->n_users; i++)
        if (l->users[i].host == h) return &l->users[i];
    return NULL;
}

static pl_phone *phone_of(pl_simhost *h) { return pl_stack_phone(pl_simhost_stack(h)); }
static pl_time now_of(lab *l) { return pl_simworld_now(l->w); }
static void run(lab *l, pl_time until) { pl_simnet_run_until(pl_simworld_net(l->w), until); }
static void run_for(lab *l, pl_time d) { run(l, now_of(l) + d); }

static void on_event(void *ctx, pl_simhost *h, const pl_stack_event *ev)
{
    lab *l = ctx;
    user_log *u = log_of(l, h);
    if (!u || ev->type != PL_STACK_EV_PHONE) return;
    const pl_phone_event *e = ev->phone;
    switch (e->type) {
    case PL_PHONE_EV_INCOMING:
        u->incoming++;
        u->incoming_id = e->id;
        u->ring_at = e->now;
        if (u->policy == REJECT) pl_phone_reject(phone_of(h), e->id, e->now);
        else if (u->policy == ANSWER && u->answer_after == 0) pl_phone_answer(phone_of(h), e->id, e->now);
        break;
    case PL_PHONE_EV_DIALING: u->dialing++; break;
    case PL_PHONE_EV_ENDED:
        u->ended++;
        u->ended_id = e->id;
        u->end_reason = e->info->end_reason;
        u->end_local = e->info->end_local;
        u->last_end = *e->info;
        break;
    case PL_PHONE_EV_KEY:
        u->key_events++;
        snprintf(u->warning, sizeof u->warning, "%s", e->warning ? e->warning : "");
        break;
    case PL_PHONE_EV_MEDIA: u->media_events++; break;
    default: break;
    }
}

/* The sound card: every 20 ms each user's phone gets a tone frame and
 * plays what came in; delayed answers are given here too. */
static void audio_tick(void *ctx, pl_time now)
{
    lab *l = ctx;
    l->audio_timer = 0;
    for (int i = 0; i < l->n_users; i++) {
        user_log *u = &l->users[i];
        if (!pl_simhost_running(u->host)) continue;
        pl_phone *ph = phone_of(u->host);
        uint32_t ids[8];
        size_t n = pl_phone_list(ph, ids, 8);
        for (size_t k = 0; k < n; k++) {
            pl_phone_call_info info;
            if (!pl_phone_get_info(ph, ids[k], &info)) continue;
            if (u->policy == ANSWER && u->answer_after && info.state == PL_CALL_RINGING &&
                now >= u->ring_at + u->answer_after)
                pl_phone_answer(ph, ids[k], now);
            int16_t in[PL_VOICE_FRAME], out[PL_VOICE_FRAME];
            for (int s = 0; s < PL_VOICE_FRAME; s++) {
                in[s] = (int16_t)(8000 * sin(u->phase));
                u->phase += 2 * M_PI * u->tone_hz / PL_VOICE_RATE;
            }
            if (!pl_phone_audio(ph, ids[k], in, out, now)) continue;
            double e = 0;
            for (int s = 0; s < PL_VOICE_FRAME; s++) e += (double)out[s] * out[s];
            u->frames_out++;
            if (sqrt(e / PL_VOICE_FRAME) > 1000) u->loud_out++;
        }
        pl_simhost_reschedule(u->host);
    }
    if (l->audio_on) l->audio_timer = pl_simnet_timer(pl_simworld_net(l->w), now + TICK, audio_tick, l);
}

static bool tap(void *ctx, pl_simhost *from, const pl_addr *to, uint8_t *data, size_t *len)
{
    lab *l = ctx;
    if (l->cut_a && ((from == l->cut_a && pl_addr_equal(to, &pl_simhost_peer(l->cut_b)->addr)) ||
                     (from == l->cut_b && pl_addr_equal(to, &pl_simhost_peer(l->cut_a)->addr))))
        return false;
    if (l->watch && pl_addr_equal(to, &pl_simhost_peer(l->watch)->addr) && *len > 90 &&
        (data[0] == PL_RELAY_MAGIC || data[0] == 4)) {
        pl_time t = now_of(l);
        if (l->watch_last && t >= l->watch_from && t - l->watch_last > l->watch_gap) l->watch_gap = t - l->watch_last;
        l->watch_last = t;
    }
    if (l->private_user && from == l->private_user && l->private_peer &&
        pl_addr_equal(to, &pl_simhost_peer(l->private_peer)->addr))
        l->direct_from_private++;
    /* Sealed session data (type 4) long enough to be voice, from the tapped
     * host to the tapped address: keep the last one. */
    if (from == l->tap_from && pl_addr_equal(to, &l->tap_to) && *len > 90 && data[0] == 4) {
        l->captured_n++;
        if (l->hold_next) {
            /* Taken off the wire: the receiver never saw this one. */
            memcpy(l->captured, data, *len);
            l->captured_len = *len;
            l->hold_next = false;
            return false;
        }
    }
    return true;
}

static bool pin_lookup(void *ctx, const char *name, uint8_t key[32])
{
    (void)ctx;
    if (!the_lab || !the_lab->pin_set || strcmp(name, the_lab->pinned_name) != 0) return false;
    memcpy(key, the_lab->pinned, 32);
    return true;
}

static pl_phone_config phone_cfg_normal = {.ring_timeout = 8 * PL_SEC, .pins = {NULL, pin_lookup, NULL}};
static pl_phone_config phone_cfg_private = {.ring_timeout = 8 * PL_SEC, .privacy = true};
static pl_phone_config phone_cfg_strict = {.ring_timeout = 8 * PL_SEC, .block_changed_keys = true,
                                           .pins = {NULL, pin_lookup, NULL}};

/* Two supernodes and n users (alice, bob, carol...), alice on the first
 * supernode and bob on the second, so a call crosses both. */
static void lab_up(lab *l, int n, const pl_phone_config *const *cfgs, uint32_t loss_ppm)
{
    memset(l, 0, sizeof *l);
    the_lab = l;
    const char *shift = getenv("PARLEY_TEST_SEED");
    pl_simworld_config cfg = {.seed = 11 + (shift ? strtoull(shift, NULL, 10) : 0), .start = T0, .secure = true, .link = {10 * PL_MSEC, 2 * PL_MSEC, 0},
                              .on_event = on_event, .ctx = l};
    l->w = pl_simworld_new(&cfg);
    CHECK(l->w);
    pl_simworld_set_datagram_tap(l->w, tap, l);
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
    static const char *names[MAX_USERS] = {"alice", "bob", "carol", "dave", "erin", "frank"};
    static const double tones[MAX_USERS] = {440, 660, 550, 770, 330, 880};
    for (int i = 0; i < n; i++) {
        pl_ovl_peer mine[2] = {boot[i % 2], boot[(i + 1) % 2]};
        const pl_phone_config *pc = cfgs && cfgs[i] ? cfgs[i] : &phone_cfg_normal;
        pl_stack_config c = {.role = PL_ROLE_NODE, .bootstrap = mine, .n_bootstrap = 2, .max_peers = 64, .phone = pc};
        if (pc->privacy) c.attach.flags |= PL_OVL_ATTACH_F_PRIVATE;
        pl_addr a = pl_simworld_addr(1, i + 1, 5000);
        user_log *u = &l->users[l->n_users++];
        u->host = pl_simworld_add_host(l->w, names[i], &a, &c);
        CHECK(u->host);
        u->tone_hz = tones[i];
        pl_simhost_start(u->host);
    }
    run(l, T0 + 3 * PL_SEC);
    for (int i = 0; i < n; i++)
        CHECK_EQ(pl_node_get_status(pl_stack_node(pl_simhost_stack(l->users[i].host))).state, PL_NODE_ATTACHED);
    /* Loss, if any, from now on: attaching under loss is test_attach's. */
    pl_simnet_set_default_link(pl_simworld_net(l->w), (pl_sim_link){10 * PL_MSEC, 2 * PL_MSEC, loss_ppm});
    l->audio_on = true;
    l->audio_timer = pl_simnet_timer(pl_simworld_net(l->w), now_of(l) + TICK, audio_tick, l);
}

static void lab_down(lab *l)
{
    l->audio_on = false;
    if (l->audio_timer) pl_simnet_timer_cancel(pl_simworld_net(l->w), l->audio_timer);
    pl_simworld_free(l->w);
    the_lab = NULL;
}

static uint32_t dial(lab *l, int from, const char *name)
{
    uint32_t id = 0;
    CHECK_EQ(pl_phone_dial(phone_of(l->users[from].host), name, now_of(l), &id), PL_PHONE_OK);
    pl_simhost_reschedule(l->users[from].host);
    return id;
}

static pl_phone_call_info info_of(lab *l, int who, uint32_t id)
{
    pl_phone_call_info info;
    memset(&info, 0, sizeof info);
    CHECK(pl_phone_get_info(phone_of(l->users[who].host), id, &info));
    return info;
}

static pl_sec_stats sec_stats(pl_simhost *h) { return pl_sec_get_stats(pl_link_sec(pl_stack_link(pl_simhost_stack(h)))); }

/* ---- tests ------------------------------------------------------------------------------------ */

static void call_by_name_and_talk_both_ways(void)
{
    lab l;
    lab_up(&l, 2, NULL, 0);
    l.users[1].answer_after = 500 * PL_MSEC;
    pl_time t0 = now_of(&l);
    uint32_t a = dial(&l, 0, "bob");
    run_for(&l, 300 * PL_MSEC);
    pl_phone_call_info ai = info_of(&l, 0, a);
    CHECK_EQ(ai.state, PL_CALL_RINGING_REMOTE);
    CHECK_EQ(l.users[1].incoming, 1);
    /* Dial to ringing: look-up (two supernodes), relay grant, handshake,
     * invite and answer, on 10 ms links. */
    double ring_ms = (ai.responded - t0) / 1e3;
    printf("     dial to ringing %.1f ms (10 ms links: look-up, session, invite)\n", ring_ms);
    CHECK(ring_ms < 200);
    CHECK(strcmp(ai.peer_name, "bob") == 0);
    run_for(&l, 5 * PL_SEC);
    ai = info_of(&l, 0, a);
    pl_phone_call_info bi = info_of(&l, 1, l.users[1].incoming_id);
    CHECK_EQ(ai.state, PL_CALL_ACTIVE);
    CHECK_EQ(bi.state, PL_CALL_ACTIVE);
    CHECK(ai.media && bi.media);
    /* Both sides agree on the safety number, and it is 12 groups. */
    CHECK(strlen(ai.safety_number) == 71);
    CHECK(strcmp(ai.safety_number, bi.safety_number) == 0);
    /* Voice went both ways: 4.5 s of media is about 225 frames each way,
     * nearly all of them carrying the peer's tone. */
    printf("     alice played %llu frames (%llu loud), bob %llu (%llu loud); rtt %.1f ms, path %s\n",
           (unsigned long long)l.users[0].frames_out, (unsigned long long)l.users[0].loud_out,
           (unsigned long long)l.users[1].frames_out, (unsigned long long)l.users[1].loud_out,
           ai.stats.rtt / 1e3, pl_path_kind_name(ai.path.kind));
    CHECK(l.users[0].loud_out > 200 && l.users[1].loud_out > 200);
    CHECK(ai.stats.packets_received > 200 && bi.stats.packets_received > 200);
    CHECK(ai.stats.rtt_known && ai.stats.rtt > 15 * PL_MSEC && ai.stats.rtt < 60 * PL_MSEC);
    CHECK(ai.stats.loss_rx_total < 0.01 && bi.stats.loss_rx_total < 0.01);
    CHECK(ai.stats.concealed_fraction < 0.02);
    CHECK(ai.stats.bitrate >= 16000 && ai.stats.bitrate <= 40000);
    CHECK(ai.have_path && ai.path.kind == PL_PATH_DIRECT);
    CHECK(ai.paths_alive >= 2); /* the direct path and a relay kept warm */
    CHECK_EQ(ai.stats.malformed, 0);
    /* Alice hangs up; both see why. */
    CHECK_EQ(pl_phone_hangup(phone_of(l.users[0].host), a, now_of(&l)), PL_PHONE_OK);
    run_for(&l, PL_SEC);
    CHECK_EQ(l.users[0].end_reason, PL_CALL_END_HANGUP_LOCAL);
    CHECK_EQ(l.users[1].end_reason, PL_CALL_END_HANGUP_REMOTE);
    /* After the linger everything is given back: relay channels too. */
    run_for(&l, 6 * PL_SEC);
    CHECK_EQ(pl_phone_list(phone_of(l.users[0].host), (uint32_t[8]){0}, 8), 0);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(pl_relay_get_stats(pl_callsvc_relay(pl_super_calls(pl_stack_super(pl_simhost_stack(l.sn[i]))))).allocations,
                 0);
    lab_down(&l);
}

static void hold_resume_and_mute(void)
{
    lab l;
    lab_up(&l, 2, NULL, 0);
    uint32_t a = dial(&l, 0, "bob");
    run_for(&l, 2 * PL_SEC);
    CHECK_EQ(info_of(&l, 0, a).state, PL_CALL_ACTIVE);
    pl_phone *pa = phone_of(l.users[0].host);
    CHECK_EQ(pl_phone_hold(pa, a, now_of(&l)), PL_PHONE_OK);
    run_for(&l, 500 * PL_MSEC);
    pl_phone_call_info ai = info_of(&l, 0, a), bi = info_of(&l, 1, l.users[1].incoming_id);
    CHECK_EQ(ai.state, PL_CALL_HELD);
    CHECK_EQ(bi.state, PL_CALL_HELD);
    CHECK(bi.hold & PL_CALL_HOLD_REMOTE);
    CHECK(!ai.media && !bi.media);
    uint64_t a_rx = ai.stats.packets_received, b_rx = bi.stats.packets_received;
    run_for(&l, 3 * PL_SEC);
    /* No voice on hold, either way, and the call is still up (keepalives). */
    ai = info_of(&l, 0, a);
    bi = info_of(&l, 1, l.users[1].incoming_id);
    CHECK_EQ(ai.stats.packets_received, a_rx);
    CHECK_EQ(bi.stats.packets_received, b_rx);
    CHECK_EQ(ai.state, PL_CALL_HELD);
    CHECK_EQ(pl_phone_resume(pa, a, now_of(&l)), PL_PHONE_OK);
    run_for(&l, PL_SEC);
    ai = info_of(&l, 0, a);
    bi = info_of(&l, 1, l.users[1].incoming_id);
    CHECK_EQ(ai.state, PL_CALL_ACTIVE);
    CHECK(bi.stats.packets_received > b_rx + 40);
    /* Mute: the stream encodes silence and DTX stops the packets. */
    CHECK_EQ(pl_phone_mute(pa, a, true, now_of(&l)), PL_PHONE_OK);
    run_for(&l, 500 * PL_MSEC);
    b_rx = info_of(&l, 1, l.users[1].incoming_id).stats.packets_received;
    uint64_t loud = l.users[1].loud_out;
    run_for(&l, 2 * PL_SEC);
    bi = info_of(&l, 1, l.users[1].incoming_id);
    CHECK(info_of(&l, 0, a).muted);
    CHECK(bi.stats.packets_received - b_rx < 20); /* DTX: comfort noise only */
    CHECK(l.users[1].loud_out - loud < 5);
    CHECK_EQ(pl_phone_mute(pa, a, false, now_of(&l)), PL_PHONE_OK);
    run_for(&l, PL_SEC);
    CHECK(l.users[1].loud_out - loud > 30);
    CHECK_EQ(info_of(&l, 0, a).state, PL_CALL_ACTIVE);
    lab_down(&l);
}

static void reject_busy_no_answer(void)
{
    lab l;
    lab_up(&l, 3, NULL, 0);
    /* Rejected. */
    l.users[1].policy = REJECT;
    dial(&l, 0, "bob");
    run_for(&l, PL_SEC);
    CHECK_EQ(l.users[0].ended, 1);
    CHECK_EQ(l.users[0].end_reason, PL_CALL_END_REJECTED);
    CHECK(!l.users[0].end_local);
    CHECK_EQ(l.users[1].end_reason, PL_CALL_END_REJECTED);
    CHECK(l.users[1].end_local);
    run_for(&l, 5 * PL_SEC);
    /* Busy: bob talks with carol, alice calls bob. */
    l.users[1].policy = ANSWER;
    uint32_t c = dial(&l, 2, "bob");
    run_for(&l, PL_SEC);
    CHECK_EQ(info_of(&l, 2, c).state, PL_CALL_ACTIVE);
    dial(&l, 0, "bob");
    run_for(&l, PL_SEC);
    CHECK_EQ(l.users[0].ended, 2);
    CHECK_EQ(l.users[0].end_reason, PL_CALL_END_BUSY);
    CHECK_EQ(l.users[1].incoming, 2); /* bob was never alerted */
    CHECK_EQ(info_of(&l, 2, c).state, PL_CALL_ACTIVE);
    pl_phone_hangup(phone_of(l.users[2].host), c, now_of(&l));
    run_for(&l, 6 * PL_SEC);
    /* No answer: bob lets it ring past alice's ring timeout (8 s). */
    l.users[1].policy = IGNORE;
    pl_time t = now_of(&l);
    dial(&l, 0, "bob");
    run_for(&l, 10 * PL_SEC);
    CHECK_EQ(l.users[0].ended, 3);
    CHECK_EQ(l.users[0].end_reason, PL_CALL_END_NO_ANSWER);
    CHECK(l.users[0].last_end.ended - t >= 8 * PL_SEC);
    CHECK(l.users[0].last_end.ended - t < 9 * PL_SEC);
    CHECK_EQ(l.users[1].end_reason, PL_CALL_END_NO_ANSWER); /* a missed call */
    /* A name nobody has. */
    dial(&l, 0, "nobody-at-all");
    run_for(&l, 5 * PL_SEC);
    CHECK_EQ(l.users[0].end_reason, PL_PHONE_END_NOT_FOUND);
    uint32_t id;
    CHECK_EQ(pl_phone_dial(phone_of(l.users[0].host), "Not A Name!", now_of(&l), &id), PL_PHONE_ERR_BAD_NAME);
    CHECK_EQ(pl_phone_dial(phone_of(l.users[0].host), "alice", now_of(&l), &id), PL_PHONE_ERR_SELF);
    lab_down(&l);
}

static void glare(void)
{
    /* Both dial each other in the same instant, and with one a link's
     * latency apart: one call results on both sides, answered. */
    for (int variant = 0; variant < 3; variant++) {
        lab l;
        lab_up(&l, 2, NULL, 0);
        l.users[0].policy = l.users[1].policy = IGNORE;
        uint32_t a = dial(&l, 0, "bob");
        if (variant == 1) run_for(&l, 10 * PL_MSEC);
        if (variant == 2) run_for(&l, 35 * PL_MSEC);
        uint32_t b = dial(&l, 1, "alice");
        run_for(&l, 3 * PL_SEC);
        pl_phone_call_info ai = info_of(&l, 0, a), bi = info_of(&l, 1, b);
        /* A dial that found the peer's call ringing answered it: that call
         * goes on under its own id (merged). */
        if (ai.state == PL_CALL_ENDED) {
            CHECK_EQ(ai.end_reason, PL_PHONE_END_MERGED);
            ai = info_of(&l, 0, ai.merged_into);
        }
        if (bi.state == PL_CALL_ENDED) {
            CHECK_EQ(bi.end_reason, PL_PHONE_END_MERGED);
            bi = info_of(&l, 1, bi.merged_into);
        }
        CHECK_EQ(ai.state, PL_CALL_ACTIVE);
        CHECK_EQ(bi.state, PL_CALL_ACTIVE);
        CHECK(ai.media && bi.media);
        /* Exactly one call each side is live. */
        uint32_t ids[8];
        int live_a = 0, live_b = 0;
        size_t n = pl_phone_list(phone_of(l.users[0].host), ids, 8);
        for (size_t k = 0; k < n; k++) live_a += info_of(&l, 0, ids[k]).state == PL_CALL_ACTIVE;
        n = pl_phone_list(phone_of(l.users[1].host), ids, 8);
        for (size_t k = 0; k < n; k++) live_b += info_of(&l, 1, ids[k]).state == PL_CALL_ACTIVE;
        CHECK_EQ(live_a, 1);
        CHECK_EQ(live_b, 1);
        run_for(&l, 2 * PL_SEC);
        CHECK(l.users[0].loud_out > 60 && l.users[1].loud_out > 60);
        lab_down(&l);
    }
}

static void unreachable_and_network_failure(void)
{
    lab l;
    lab_up(&l, 3, NULL, 0);
    /* Bob's machine dies; the directory still shows him (his supernode
     * notices after 75 s): the invite gets no answer at all. */
    pl_simhost_crash(l.users[1].host);
    pl_time t = now_of(&l);
    dial(&l, 0, "bob");
    run_for(&l, 25 * PL_SEC);
    CHECK_EQ(l.users[0].ended, 1);
    CHECK_EQ(l.users[0].end_reason, PL_CALL_END_UNREACHABLE);
    CHECK(l.users[0].last_end.ended - t <= 21 * PL_SEC);
    /* Once his supernode has lost him, the directory says so at once. */
    run_for(&l, 80 * PL_SEC);
    t = now_of(&l);
    dial(&l, 0, "bob");
    run_for(&l, 2 * PL_SEC);
    CHECK_EQ(l.users[0].ended, 2);
    CHECK_EQ(l.users[0].end_reason, PL_PHONE_END_OFFLINE);
    CHECK(l.users[0].last_end.ended - t < PL_SEC);
    /* Network failure: carol dies in the middle of a call. */
    uint32_t a = dial(&l, 0, "carol");
    run_for(&l, 2 * PL_SEC);
    CHECK_EQ(info_of(&l, 0, a).state, PL_CALL_ACTIVE);
    pl_simhost_crash(l.users[2].host);
    t = now_of(&l);
    run_for(&l, 15 * PL_SEC);
    CHECK_EQ(l.users[0].ended, 3);
    CHECK_EQ(l.users[0].end_reason, PL_CALL_END_NETWORK_FAILURE);
    printf("     a dead peer is a network failure %.1f s after it went\n", (l.users[0].last_end.ended - t) / 1e6);
    CHECK(l.users[0].last_end.ended - t <= 11 * PL_SEC);
    lab_down(&l);
}

static void private_callee_is_relayed(void)
{
    /* Bob publishes no address: the first contact goes through the
     * supernodes, the call through his supernode's relay, and alice never
     * sees a packet from his address. */
    const pl_phone_config *cfgs[2] = {&phone_cfg_normal, &phone_cfg_private};
    lab l;
    lab_up(&l, 2, cfgs, 0);
    l.private_user = l.users[1].host;
    l.private_peer = l.users[0].host;
    pl_time t0 = now_of(&l);
    uint32_t a = dial(&l, 0, "bob");
    run_for(&l, 4 * PL_SEC);
    pl_phone_call_info ai = info_of(&l, 0, a), bi = info_of(&l, 1, l.users[1].incoming_id);
    CHECK_EQ(ai.state, PL_CALL_ACTIVE);
    printf("     private callee: answered %.1f ms after dialing; alice on %s, bob on %s\n", (ai.answered - t0) / 1e3,
           pl_path_kind_name(ai.path.kind), pl_path_kind_name(bi.path.kind));
    CHECK(ai.path.kind == PL_PATH_RELAY_UDP && bi.path.kind == PL_PATH_RELAY_UDP);
    CHECK(l.users[0].loud_out > 150 && l.users[1].loud_out > 150);
    CHECK_EQ(l.direct_from_private, 0);
    pl_phone_stats ps = pl_phone_get_stats(phone_of(l.users[1].host));
    CHECK(ps.knocks_received >= 1);
    pl_callsvc_stats cs = pl_callsvc_get_stats(pl_super_calls(pl_stack_super(pl_simhost_stack(l.sn[0]))));
    CHECK(cs.notes_forwarded >= 1);
    /* The relays moved the call and saw only sealed packets. */
    pl_relay_stats rs = pl_relay_get_stats(pl_callsvc_relay(pl_super_calls(pl_stack_super(pl_simhost_stack(l.sn[1])))));
    CHECK(rs.forwarded > 300);
    lab_down(&l);
}

/* Alice and carol are both attached to super1 and cannot reach each other
 * directly: without more, every relay of the call is at super1. Each also
 * asks its standby supernode (super2) for a relay, so when the supernode
 * whose relay carries the call dies, the call goes on through the other
 * within a few packet intervals. The control, without standby relays: when
 * super1 dies the call goes silent. */
static void standby_relay_outlives_the_common_supernode(void)
{
    for (int with = 1; with >= 0; with--) {
        pl_phone_config pc = phone_cfg_normal;
        pc.no_standby_relay = !with;
        const pl_phone_config *cfgs[3] = {&pc, &pc, &pc};
        lab l;
        lab_up(&l, 3, cfgs, 0);
        l.cut_a = l.users[0].host;
        l.cut_b = l.users[2].host;
        l.watch = l.users[0].host;
        for (int u = 0; u < 3; u += 2)
            CHECK(memcmp(pl_node_get_status(pl_stack_node(pl_simhost_stack(l.users[u].host))).supernode.pk,
                         pl_simhost_peer(l.sn[0])->pk, 32) == 0);
        uint32_t a = dial(&l, 0, "carol");
        run_for(&l, 3 * PL_SEC);
        pl_phone_call_info ai = info_of(&l, 0, a), ci = info_of(&l, 2, l.users[2].incoming_id);
        CHECK_EQ(ai.state, PL_CALL_ACTIVE);
        CHECK(ai.path.kind == PL_PATH_RELAY_UDP && ci.path.kind == PL_PATH_RELAY_UDP);
        pl_relay_stats r2 = pl_relay_get_stats(pl_callsvc_relay(pl_super_calls(pl_stack_super(pl_simhost_stack(l.sn[1])))));
        CHECK_EQ(r2.standby_allocated, with ? 2u : 0u);
        CHECK_EQ(pl_phone_get_stats(phone_of(l.users[0].host)).standby_grants, with ? 1u : 0u);
        /* Kill the supernode whose relay carries the call. */
        int victim = pl_addr_same_host(&ai.path.remote, &pl_simhost_peer(l.sn[0])->addr) ? 0 : 1;
        CHECK(with || victim == 0);
        uint64_t a_rx = ai.stats.packets_received, c_rx = ci.stats.packets_received;
        l.watch_from = now_of(&l);
        pl_simhost_crash(l.sn[victim]);
        run_for(&l, 3 * PL_SEC);
        ai = info_of(&l, 0, a);
        ci = info_of(&l, 2, l.users[2].incoming_id);
        uint64_t a_got = ai.stats.packets_received - a_rx, c_got = ci.stats.packets_received - c_rx;
        if (with) {
            printf("     super%d (its relay carried the call) dies: alice heard %llu, carol %llu of 150 packets in the "
                   "next 3 s; longest gap at alice %.0f ms; now via %s\n",
                   victim + 1, (unsigned long long)a_got, (unsigned long long)c_got, l.watch_gap / 1e3,
                   pl_addr_same_host(&ai.path.remote, &pl_simhost_peer(l.sn[1 - victim])->addr) ? "the other" : "?");
            CHECK_EQ(ai.state, PL_CALL_ACTIVE);
            CHECK(a_got > 135 && c_got > 135);
            CHECK(l.watch_gap > 0 && l.watch_gap < 300 * PL_MSEC);
            CHECK(pl_addr_same_host(&ai.path.remote, &pl_simhost_peer(l.sn[1 - victim])->addr));
            CHECK(pl_addr_same_host(&ci.path.remote, &pl_simhost_peer(l.sn[1 - victim])->addr));
        } else {
            printf("     without standby relays: alice heard %llu, carol %llu packets in the 3 s after super1 died\n",
                   (unsigned long long)a_got, (unsigned long long)c_got);
            CHECK(a_got < 20 && c_got < 20);
        }
        lab_down(&l);
    }
}

static void changed_key_warns_or_refuses(void)
{
    lab l;
    lab_up(&l, 2, NULL, 0);
    /* Alice pinned another key for bob earlier. */
    l.pin_set = true;
    snprintf(l.pinned_name, sizeof l.pinned_name, "bob");
    memset(l.pinned, 0x42, 32);
    uint32_t a = dial(&l, 0, "bob");
    run_for(&l, 2 * PL_SEC);
    CHECK_EQ(l.users[0].key_events, 1);
    CHECK(strstr(l.users[0].warning, "bob") != NULL);
    CHECK_EQ(info_of(&l, 0, a).key_verdict, PL_TRUST_PIN_CHANGED);
    CHECK_EQ(info_of(&l, 0, a).state, PL_CALL_ACTIVE); /* warned, not refused */
    pl_phone_hangup(phone_of(l.users[0].host), a, now_of(&l));
    lab_down(&l);

    const pl_phone_config *cfgs[2] = {&phone_cfg_strict, &phone_cfg_strict};
    lab_up(&l, 2, cfgs, 0);
    l.pin_set = true;
    snprintf(l.pinned_name, sizeof l.pinned_name, "bob");
    memset(l.pinned, 0x42, 32);
    dial(&l, 0, "bob");
    run_for(&l, 2 * PL_SEC);
    CHECK_EQ(l.users[0].end_reason, PL_PHONE_END_KEY_CHANGED);
    CHECK_EQ(l.users[1].incoming, 0);
    /* And the other way: bob's phone refuses alice if her key is not the
     * one it pinned. */
    snprintf(l.pinned_name, sizeof l.pinned_name, "alice");
    dial(&l, 0 + 1, "alice");
    run_for(&l, 2 * PL_SEC);
    CHECK_EQ(l.users[1].end_reason, PL_PHONE_END_KEY_CHANGED);
    lab_down(&l);
}

static void tampered_and_replayed_media_dropped(void)
{
    lab l;
    lab_up(&l, 2, NULL, 0);
    l.tap_from = l.users[0].host;
    l.tap_to = pl_simhost_peer(l.users[1].host)->addr;
    uint32_t a = dial(&l, 0, "bob");
    run_for(&l, 2 * PL_SEC);
    CHECK_EQ(info_of(&l, 0, a).path.kind, PL_PATH_DIRECT);
    CHECK(l.captured_n > 20);
    pl_simhost *bob = l.users[1].host;
    /* Take one voice packet off the wire before bob sees it. */
    l.hold_next = true;
    run_for(&l, 100 * PL_MSEC);
    CHECK(!l.hold_next);
    pl_sec_stats before = sec_stats(bob);
    pl_phone_call_info bi = info_of(&l, 1, l.users[1].incoming_id);
    const pl_addr *from = &pl_simhost_peer(l.users[0].host)->addr;
    pl_simnet *net = pl_simworld_net(l.w);
    /* Tampered: one bit of its ciphertext flipped. */
    uint8_t bad[PL_SEC_MAX_DATAGRAM];
    memcpy(bad, l.captured, l.captured_len);
    bad[l.captured_len / 2] ^= 0x01;
    pl_simnet_send(net, from, &l.tap_to, bad, l.captured_len);
    run_for(&l, 30 * PL_MSEC);
    pl_sec_stats after = sec_stats(bob);
    CHECK_EQ(after.drop_auth - before.drop_auth, 1);
    CHECK_EQ(after.drop_replay - before.drop_replay, 0);
    /* The packet as it was sealed: taken (late, but inside the window). */
    pl_simnet_send(net, from, &l.tap_to, l.captured, l.captured_len);
    run_for(&l, 30 * PL_MSEC);
    pl_sec_stats after2 = sec_stats(bob);
    CHECK_EQ(after2.drop_auth, after.drop_auth);
    CHECK_EQ(after2.drop_replay, after.drop_replay);
    /* The same again: a replay, dropped. */
    pl_simnet_send(net, from, &l.tap_to, l.captured, l.captured_len);
    run_for(&l, 30 * PL_MSEC);
    pl_sec_stats after3 = sec_stats(bob);
    CHECK_EQ(after3.drop_replay - after2.drop_replay, 1);
    CHECK_EQ(after3.drop_auth, after2.drop_auth);
    pl_phone_call_info bi2 = info_of(&l, 1, l.users[1].incoming_id);
    CHECK_EQ(bi2.stats.malformed, bi.stats.malformed); /* nothing bad reached the stream */
    CHECK_EQ(bi2.state, PL_CALL_ACTIVE);
    lab_down(&l);
}

static void lossy_network(void)
{
    /* 3% loss on every link: set-up still works, voice still flows, the
     * stream reports the loss and conceals it. */
    lab l;
    lab_up(&l, 2, NULL, 30000);
    uint32_t a = dial(&l, 0, "bob");
    run_for(&l, 8 * PL_SEC);
    pl_phone_call_info ai = info_of(&l, 0, a);
    CHECK_EQ(ai.state, PL_CALL_ACTIVE);
    printf("     3%% loss: answered after %.0f ms, rx loss %.1f%%, concealed %.1f%%, played %llu/%llu frames loud, %s\n",
           (ai.answered - ai.dialed) / 1e3, 100 * ai.stats.loss_rx_total, 100 * ai.stats.concealed_fraction,
           (unsigned long long)l.users[0].loud_out, (unsigned long long)l.users[0].frames_out, pl_path_kind_name(ai.path.kind));
    /* A look-up lost on the way waits out the directory client's 4 s
     * timeout: set-up under loss can take that long. */
    CHECK(ai.answered - ai.dialed < 5 * PL_SEC);
    CHECK(ai.stats.loss_rx_total > 0 && ai.stats.loss_rx_total < 0.08);
    CHECK(l.users[0].loud_out > 150 && l.users[1].loud_out > 150);
    CHECK(l.users[0].loud_out > l.users[0].frames_out * 9 / 10);
    lab_down(&l);
}

static void calls_again_after_a_restart(void)
{
    /* Bob's daemon restarts (same identity, new process) right after a
     * call and calls alice back while her side of the last call still
     * lingers: the new call must not inherit the old call's paths. */
    lab l;
    lab_up(&l, 2, NULL, 0);
    uint32_t a = dial(&l, 0, "bob");
    run_for(&l, 2 * PL_SEC);
    CHECK_EQ(info_of(&l, 0, a).state, PL_CALL_ACTIVE);
    pl_simhost_crash(l.users[1].host);
    pl_simhost_restart(l.users[1].host);
    run_for(&l, 1500 * PL_MSEC); /* bob attaches again; alice still has the call */
    CHECK_EQ(pl_node_get_status(pl_stack_node(pl_simhost_stack(l.users[1].host))).state, PL_NODE_ATTACHED);
    pl_time t = now_of(&l);
    uint32_t b = dial(&l, 1, "alice");
    run_for(&l, PL_SEC);
    pl_phone_call_info bi = info_of(&l, 1, b);
    CHECK_EQ(bi.state, PL_CALL_ACTIVE);
    printf("     a restarted peer calls back: ringing %.1f ms, answered %.1f ms after dialing\n", (bi.responded - t) / 1e3, (bi.answered - t) / 1e3);
    /* One retransmission (250 ms) is usual here: the first answer goes out
     * on the paths alice kept from the lost call. */
    CHECK(bi.answered - t < PL_SEC);
    run_for(&l, 2 * PL_SEC);
    pl_phone_call_info ai = info_of(&l, 0, l.users[0].incoming_id);
    CHECK_EQ(ai.state, PL_CALL_ACTIVE);
    CHECK(ai.stats.packets_received > 80);
    /* Alice's old call with bob ended when his new invite came: he had
     * lost it. */
    CHECK_EQ(l.users[0].ended, 1);
    CHECK_EQ(l.users[0].end_reason, PL_CALL_END_NETWORK_FAILURE);
    lab_down(&l);
}

int main(void)
{
    RUN(call_by_name_and_talk_both_ways);
    RUN(hold_resume_and_mute);
    RUN(reject_busy_no_answer);
    RUN(glare);
    RUN(unreachable_and_network_failure);
    RUN(private_callee_is_relayed);
    RUN(standby_relay_outlives_the_common_supernode);
    RUN(changed_key_warns_or_refuses);
    RUN(tampered_and_replayed_media_dropped);
    RUN(lossy_network);
    RUN(calls_again_after_a_restart);
    return pl_test_summary();
}
