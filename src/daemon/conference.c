/*
 * conference.c - conference calls in parleyd: the conference core
 * (src/core/conference.h) beside the phone, on real audio, and the
 * `conference` control command.
 *
 * While we are in a conference the user's audio is the conference's: one
 * source (a WAV file, a tone, silence, the sound card) and one sink, kept
 * across hand-overs. A host mixes it in as one more participant; a
 * participant sends it on its leg to the host. The source and sink come
 * from `conference` (--from/--to) when we start one, or are taken over from
 * the call that turned into a conference (an invitation we answered with
 * its audio, or a plain call we added someone to).
 *
 * The phone's own 20 ms clock (phone.c) drives the audio: it calls
 * pd_conf_audio once a frame and leaves the calls we own alone. Phone
 * events come through pd_conf_on_phone, conference messages through the
 * stack's user_message hook, and the core's timers run on a timer here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audio.h"
#include "conference.h"
#include "daemon.h"
#include "dsp.h"

struct pd_conf {
    pl_conf *core;
    pl_timer timer;
    /* the user's audio while in a conference */
    pl_audio_source *src;
    pl_audio_sink *sink;
    pl_dsp *dsp;
    int16_t played[PL_VOICE_FRAME];
    bool have_played;
    uint32_t take_from; /* a call whose audio becomes ours at the next frame */
    uint64_t frames;
    pl_time ended_at;
};

static pl_conf *core(parleyd *d) { return d->conf ? d->conf->core : NULL; }

static void close_audio(struct pd_conf *k)
{
    pl_audio_source_close(k->src);
    pl_audio_sink_close(k->sink);
    pl_dsp_free(k->dsp);
    k->src = NULL;
    k->sink = NULL;
    k->dsp = NULL;
    k->have_played = false;
}

static void rearm(parleyd *d)
{
    if (!d->conf) return;
    pl_time t = pl_conf_next_timeout(d->conf->core);
    if (t == PL_TIME_NEVER) pl_timer_cancel(d->loop, &d->conf->timer);
    else pl_timer_set(d->loop, &d->conf->timer, t);
}

/* What we tell the others about ourselves: the operator's bandwidth and
 * what NAT discovery found (a port mapping would make us open; the NAT
 * class is the election's second criterion). */
static void update_report(parleyd *d)
{
    pl_conf_report r = {.up_kbps = d->opt.bandwidth_kbps, .down_kbps = d->opt.bandwidth_kbps, .can_host = true};
    if (!d->natdisc_done) r.nat = PL_MIX_NAT_SYMMETRIC; /* not known: assume the worst but blocked */
    else if (d->nat.udp_blocked) r.nat = PL_MIX_NAT_BLOCKED;
    else if (!d->nat.behind_nat) r.nat = PL_MIX_NAT_OPEN;
    else if (d->nat.mapping == PL_NAT_ENDPOINT_INDEPENDENT) r.nat = PL_MIX_NAT_CONE;
    else r.nat = PL_MIX_NAT_SYMMETRIC;
    pl_conf_set_report(d->conf->core, &r);
}

static void on_timer(pl_loop *loop, void *ctx)
{
    parleyd *d = ctx;
    update_report(d);
    pl_conf_tick(d->conf->core, pl_loop_now(loop));
    pd_rearm(d);
    rearm(d);
}

static const char *nat_name(uint8_t nat)
{
    switch (nat) {
    case PL_MIX_NAT_OPEN: return "open";
    case PL_MIX_NAT_CONE: return "cone";
    case PL_MIX_NAT_SYMMETRIC: return "symmetric";
    default: return "blocked";
    }
}

static void on_event(void *ctx, const pl_conf_event *ev)
{
    parleyd *d = ctx;
    struct pd_conf *k = d->conf;
    pl_conf_info info;
    switch (ev->type) {
    case PL_CONF_EV_STARTED:
        pd_log(d, "conference: started as %s", pl_conf_role_name(ev->role));
        if (ev->call) k->take_from = ev->call;
        k->frames = 0;
        break;
    case PL_CONF_EV_ROSTER: {
        pl_conf_get_info(k->core, &info);
        char line[PL_CONF_MAX * (PL_NAME_MAX + 4) + 64];
        size_t n = 0;
        for (size_t i = 0; i < info.n && n < sizeof line - PL_NAME_MAX - 4; i++)
            n += (size_t)snprintf(line + n, sizeof line - n, "%s%s%s%s", i ? " " : "", info.members[i].name,
                                  info.members[i].is_host ? "*" : info.members[i].is_successor ? "+" : "",
                                  info.members[i].state == PL_CONF_CONNECTED ? "" : "?");
        pd_log(d, "conference: roster v%u: %s (* host, + successor, ? not connected)", info.version, line);
        break;
    }
    case PL_CONF_EV_HOST:
        pl_conf_get_info(k->core, &info);
        pd_log(d, "conference: the host is now %s", info.host >= 0 ? info.members[info.host].name : "?");
        break;
    case PL_CONF_EV_JOINED: pd_log(d, "conference: %s joined", ev->name); break;
    case PL_CONF_EV_LEFT:
        pd_log(d, "conference: %s left (%s)", ev->name, ev->reason ? pl_phone_end_name(ev->reason) : "did not call in");
        break;
    case PL_CONF_EV_ADD_RESULT:
        pd_log(d, "conference: the host about %s: %s", ev->name, pl_conf_add_status_name(ev->status));
        break;
    case PL_CONF_EV_ENDED:
        pd_log(d, "conference: over (%s) after %llu frames of audio", pl_conf_end_name(ev->end),
               (unsigned long long)k->frames);
        close_audio(k);
        k->take_from = 0;
        k->ended_at = ev->now;
        break;
    }
}

/* ---- the daemon's hooks --------------------------------------------------------------------------------- */

int pd_conf_open(parleyd *d)
{
    pl_phone *ph = pl_stack_phone(d->stack);
    pl_link *link = pl_stack_link(d->stack);
    if (!ph || !link) return 0;
    struct pd_conf *k = calloc(1, sizeof *k);
    if (!k) return pd_die("out of memory");
    pl_conf_config cc = {.identity = &d->id, .name = d->cert.name, .rng = pl_rng_system()};
    pl_conf_io io = {d, on_event};
    pl_conf_err e = pl_conf_new(&k->core, &cc, &io, ph, link);
    if (e) {
        free(k);
        return pd_die("cannot start the conference core: %s", pl_conf_strerror(e));
    }
    pl_timer_init(&k->timer, on_timer, d);
    d->conf = k;
    update_report(d);
    return 0;
}

void pd_conf_close(parleyd *d)
{
    struct pd_conf *k = d->conf;
    if (!k) return;
    if (pl_conf_role_of(k->core) != PL_CONF_NONE) {
        pl_conf_leave(k->core, pl_loop_now(d->loop));
        pl_conf_tick(k->core, pl_loop_now(d->loop));
    }
    close_audio(k);
    pl_timer_cancel(d->loop, &k->timer);
    pl_conf_free(k->core);
    free(k);
    d->conf = NULL;
}

bool pd_conf_on_phone(parleyd *d, const pl_phone_event *ev)
{
    if (!core(d)) return false;
    bool taken = pl_conf_phone_event(core(d), ev);
    rearm(d);
    return taken;
}

void pd_conf_message(void *ctx, const uint8_t pk[32], const pl_cert *cert, const uint8_t *msg, size_t len,
                     pl_time now)
{
    parleyd *d = ctx;
    (void)cert;
    if (!core(d)) return;
    pl_conf_message(core(d), pk, msg, len, now);
    rearm(d);
}

bool pd_conf_owns(parleyd *d, uint32_t call) { return core(d) && pl_conf_owns(core(d), call); }

bool pd_conf_audio(parleyd *d, pl_time now)
{
    struct pd_conf *k = d->conf;
    if (!k || pl_conf_role_of(k->core) == PL_CONF_NONE) return false;
    if (k->take_from) {
        /* The audio of the call that became the conference is ours now. */
        pl_audio_source *src;
        pl_audio_sink *sink;
        pl_dsp *dsp;
        if (pd_phone_take_audio(d, k->take_from, &src, &sink, &dsp)) {
            if (!k->src && !k->sink) {
                k->src = src;
                k->sink = sink;
                k->dsp = dsp;
            } else {
                pl_audio_source_close(src);
                pl_audio_sink_close(sink);
                pl_dsp_free(dsp);
            }
        }
        pl_conf_info info;
        pl_conf_get_info(k->core, &info);
        /* An invitation's audio is opened at the answer: wait for it. */
        if (k->src || k->sink || pl_conf_role_of(k->core) == PL_CONF_HOST) k->take_from = 0;
        else k->take_from = info.leg;
    }
    int16_t in[PL_VOICE_FRAME], out[PL_VOICE_FRAME];
    if (!k->src || pl_audio_read(k->src, in) != PL_AUDIO_OK) memset(in, 0, sizeof in);
    else if (k->dsp) pl_dsp_process(k->dsp, in, k->have_played ? k->played : NULL, in);
    pl_conf_audio(k->core, in, out, now);
    memcpy(k->played, out, sizeof out);
    k->have_played = true;
    if (k->sink) pl_audio_write(k->sink, out);
    k->frames++;
    return true;
}

/* ---- what `conference` and `calls` show ------------------------------------------------------------------------ */

static double ms(pl_time t) { return (double)t / 1000.0; }

static cJSON *conf_json(parleyd *d)
{
    pl_conf_info info;
    pl_conf_get_info(core(d), &info);
    pl_time now = pl_loop_now(d->loop);
    cJSON *o = cJSON_CreateObject();
    char hex[65];
    cJSON_AddStringToObject(o, "role", pl_conf_role_name(info.role));
    if (info.role == PL_CONF_NONE) {
        if (info.last_end) cJSON_AddStringToObject(o, "last_end", pl_conf_end_name(info.last_end));
        return o;
    }
    pl_hex_encode(info.conf_id, PL_CONF_ID_SIZE, hex);
    cJSON_AddStringToObject(o, "id", hex);
    cJSON_AddNumberToObject(o, "version", info.version);
    cJSON_AddNumberToObject(o, "duration_s", (double)(now - info.started) / PL_SEC);
    cJSON_AddStringToObject(o, "host", info.host >= 0 ? info.members[info.host].name : "");
    cJSON_AddStringToObject(o, "successor", info.successor >= 0 ? info.members[info.successor].name : "");
    cJSON_AddBoolToObject(o, "handing_over", info.handing_over || info.next_leg != 0);
    if (info.leg) cJSON_AddNumberToObject(o, "leg", info.leg);
    cJSON_AddNumberToObject(o, "audio_frames", (double)d->conf->frames);
    cJSON *arr = cJSON_AddArrayToObject(o, "members");
    for (size_t i = 0; i < info.n; i++) {
        const pl_conf_member_info *m = &info.members[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", m->name);
        pl_hex_encode(m->key, 32, hex);
        cJSON_AddStringToObject(e, "fingerprint", hex);
        cJSON_AddStringToObject(e, "state", pl_conf_state_name(m->state));
        cJSON_AddBoolToObject(e, "self", m->is_self);
        cJSON_AddBoolToObject(e, "host", m->is_host);
        cJSON_AddBoolToObject(e, "successor", m->is_successor);
        cJSON *r = cJSON_AddObjectToObject(e, "report");
        cJSON_AddNumberToObject(r, "up_kbps", m->report.up_kbps);
        cJSON_AddNumberToObject(r, "down_kbps", m->report.down_kbps);
        cJSON_AddNumberToObject(r, "rtt_ms", m->report.rtt_ms);
        cJSON_AddStringToObject(r, "nat", nat_name(m->report.nat));
        cJSON_AddBoolToObject(r, "can_host", m->report.can_host);
        /* The leg's own figures: the host's call with this participant, or
         * a participant's call with the host. */
        uint32_t call = m->call ? m->call : (m->is_host && !m->is_self ? info.leg : 0);
        pl_phone_call_info ci;
        if (call && pl_phone_get_info(pl_stack_phone(d->stack), call, &ci)) {
            cJSON *l = cJSON_AddObjectToObject(e, "leg");
            cJSON_AddNumberToObject(l, "call", call);
            cJSON_AddBoolToObject(l, "media", ci.media);
            if (ci.have_path)
                cJSON_AddStringToObject(l, "path", ci.path.kind == PL_PATH_DIRECT ? "direct"
                                                   : ci.path.kind == PL_PATH_RELAY_TCP ? "relayed/tcp"
                                                                                       : "relayed/udp");
            if (ci.stats.rtt_known) cJSON_AddNumberToObject(l, "rtt_ms", ms(ci.stats.rtt));
            cJSON_AddNumberToObject(l, "loss_rx", ci.stats.loss_rx_total);
            cJSON_AddNumberToObject(l, "loss_tx", ci.stats.loss_tx);
            cJSON_AddNumberToObject(l, "jitter_rx_ms", ms(ci.stats.jitter_rx));
            cJSON_AddNumberToObject(l, "bitrate", ci.stats.bitrate);
            cJSON_AddNumberToObject(l, "concealed_fraction", ci.stats.concealed_fraction);
            cJSON_AddNumberToObject(l, "packets_sent", (double)ci.stats.packets_sent);
            cJSON_AddNumberToObject(l, "packets_received", (double)ci.stats.packets_received);
        }
        if (m->in_mix) {
            cJSON *x = cJSON_AddObjectToObject(e, "mix");
            cJSON_AddBoolToObject(x, "talking", m->mix.talking);
            cJSON_AddNumberToObject(x, "frames_mixed", (double)m->mix.frames_mixed);
            cJSON_AddNumberToObject(x, "missing", (double)m->mix.missing);
            cJSON_AddNumberToObject(x, "dropped", (double)(m->mix.dropped_overflow + m->mix.dropped_drift));
            cJSON_AddNumberToObject(x, "queued", m->mix.queued);
            cJSON_AddNumberToObject(x, "gain", m->mix.gain);
        }
        cJSON_AddItemToArray(arr, e);
    }
    cJSON *s = cJSON_AddObjectToObject(o, "stats");
    cJSON_AddNumberToObject(s, "rosters_sent", (double)info.stats.rosters_sent);
    cJSON_AddNumberToObject(s, "rosters_received", (double)info.stats.rosters_received);
    cJSON_AddNumberToObject(s, "reports_received", (double)info.stats.reports_received);
    cJSON_AddNumberToObject(s, "handovers", (double)info.stats.handovers);
    cJSON_AddNumberToObject(s, "moves", (double)info.stats.moves);
    cJSON_AddNumberToObject(s, "malformed", (double)info.stats.malformed);
    return o;
}

void pd_conf_json(parleyd *d, cJSON *reply)
{
    if (!core(d) || (pl_conf_role_of(core(d)) == PL_CONF_NONE && !d->conf->ended_at)) return;
    cJSON_AddItemToObject(reply, "conference", conf_json(d));
}

/* ---- the command ------------------------------------------------------------------------------------------------- */

static const char *req_string(const cJSON *req, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static cJSON *conf_error(pl_conf_err e)
{
    switch (e) {
    case PL_CONF_ERR_BAD_NAME: return pd_error_reply("bad_name", "not a valid user name");
    case PL_CONF_ERR_BUSY: return pd_error_reply("busy", pl_conf_strerror(e));
    case PL_CONF_ERR_NONE: return pd_error_reply("no_conference", "not in a conference");
    case PL_CONF_ERR_FULL: return pd_error_reply("full", "the conference is full");
    case PL_CONF_ERR_ALREADY: return pd_error_reply("already", "that user takes part already");
    case PL_CONF_ERR_SELF: return pd_error_reply("bad_request", "you take part yourself");
    case PL_CONF_ERR_STATE: return pd_error_reply("state", pl_conf_strerror(e));
    default: return pd_error_reply("failed", pl_conf_strerror(e));
    }
}

/* {"cmd":"conference","op":"start","names":[...],"from":...,"to":...},
 * {"op":"add","name":...}, {"op":"leave"}, {"op":"show"} (the default). */
cJSON *pd_cmd_conference(parleyd *d, int fd, const cJSON *req)
{
    (void)fd;
    struct pd_conf *k = d->conf;
    if (!k) return pd_error_reply("failed", "this daemon has no phone");
    const char *op = req_string(req, "op");
    pl_time now = pl_loop_now(d->loop);
    pl_conf_err e = PL_CONF_OK;
    if (!op || strcmp(op, "show") == 0) {
        cJSON *r = pd_ok_reply();
        cJSON_AddItemToObject(r, "conference", conf_json(d));
        return r;
    }
    if (pl_node_get_status(pl_stack_node(d->stack)).state != PL_NODE_ATTACHED && strcmp(op, "leave") != 0)
        return pd_error_reply("offline", "not attached to a supernode yet");
    if (strcmp(op, "start") == 0) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(req, "names");
        const char *names[PL_CONF_MAX];
        size_t n = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, arr) {
            if (!cJSON_IsString(v) || n >= PL_CONF_MAX) return pd_error_reply("bad_request", "too many names");
            names[n++] = v->valuestring;
        }
        if (n == 0) return pd_error_reply("bad_request", "a conference needs at least one name");
        const char *from = req_string(req, "from"), *to = req_string(req, "to");
        pl_audio_source *src = NULL;
        pl_audio_sink *sink = NULL;
        pl_dsp *dsp = NULL;
        char msg[300];
        if ((from || to) && !pd_phone_open_audio(from, to, &src, &sink, &dsp, msg, sizeof msg))
            return pd_error_reply("audio", msg);
        update_report(d);
        e = pl_conf_start(k->core, names, n, now);
        if (e) {
            pl_audio_source_close(src);
            pl_audio_sink_close(sink);
            pl_dsp_free(dsp);
        } else if (src || sink) {
            close_audio(k);
            k->src = src;
            k->sink = sink;
            k->dsp = dsp;
            k->take_from = 0; /* given audio wins over an adopted call's */
        }
        if (!e) pd_log(d, "conference: calling %zu users (audio from %s, to %s)", n, from ? from : "silence", to ? to : "null");
    } else if (strcmp(op, "add") == 0) {
        const char *name = req_string(req, "name");
        if (!name) return pd_error_reply("bad_request", "add needs a \"name\"");
        update_report(d);
        e = pl_conf_add(k->core, name, now);
        if (!e) pd_log(d, "conference: adding %s", name);
    } else if (strcmp(op, "leave") == 0) {
        e = pl_conf_leave(k->core, now);
        if (!e) pd_log(d, "conference: leaving");
    } else {
        return pd_error_reply("bad_request", "op must be start, add, leave or show");
    }
    if (e) return conf_error(e);
    pl_conf_tick(k->core, now);
    pd_rearm(d);
    rearm(d);
    cJSON *r = pd_ok_reply();
    cJSON_AddItemToObject(r, "conference", conf_json(d));
    return r;
}
