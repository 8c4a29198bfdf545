/*
 * phone.c - calls in parleyd: the phone core (src/core/phone.h) on real
 * audio, and the control commands that drive it.
 *
 * Each call the phone knows gets a record here with its audio: a source
 * (a WAV file, a tone, silence, a sound device) and a sink (a WAV file,
 * nothing, a sound device). A 20 ms timer, running while any call has
 * audio, reads one frame from each source, hands it to the phone with
 * pl_phone_audio and writes what comes back to the sink. Device audio goes
 * through the echo canceller and noise suppressor (dsp.h); files and tones
 * do not need them.
 *
 * Commands answer at once; `parley call` then follows the call by asking
 * for it (`calls`) until it ends. Ended calls stay listed for a minute, so
 * a client that looks late still learns how the call ended.
 *
 * Voicemail from a call (docs/calls.md, section 12): a caller who asked for
 * it ("voicemail": true) and whose call ends declined, unanswered or with
 * the callee offline or unreachable hands the call's source over to
 * voicemail.c instead of closing it; the call's record shows "leaving", then
 * the voicemail's id (or why it was not left), and stays until a minute
 * after that. A hang-up while it records ends the recording, and what was
 * said is stored.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audio.h"
#include "audio_device.h"
#include "daemon.h"
#include "dsp.h"

#define KEEP_ENDED (60 * PL_SEC)
#define FRAME (20 * PL_MSEC)
/* A timer that fired late (a loaded machine) is caught up frame by frame:
 * a file's audio must not lose frames. Only beyond this much (half a
 * second) does the clock skip ahead. */
#define MAX_CATCH_UP 25
/* A caller playing a file hangs up this long after the file ended, so
 * that what the other side said last still arrives. */
#define FILE_END_TAIL (1500 * PL_MSEC)

typedef struct pd_call {
    bool used;
    uint32_t id;
    pl_audio_source *src;
    pl_audio_sink *sink;
    pl_dsp *dsp;              /* device sources only */
    int16_t played[PL_VOICE_FRAME];
    bool have_played;
    bool src_ended;
    bool hangup_when_src_ends; /* a caller with a file and no duration */
    double duration_s;         /* > 0: hang up this long after the answer */
    pl_time hangup_at;
    bool ended;
    pl_time ended_at;
    pl_phone_call_info last;   /* the latest info (what `calls` shows once the phone forgot the call) */
    pl_time path_at;           /* when the active path was taken (the last PATH event) */
    uint32_t path_changes;     /* PATH events: the first path, then every move */
    uint64_t frames_in, frames_out;
    bool voicemail;            /* the caller asked: leave one if the call cannot be taken */
    bool gave_up;              /* the caller's own ring timeout hung up (counts as no answer) */
    bool vm_leaving;           /* the source went to voicemail.c; recording or storing */
    uint32_t vm_job;
    cJSON *vm_result;          /* how the voicemail went (voicemail.c's reply) */
} pd_call;

static pl_phone *phone(parleyd *d) { return pl_stack_phone(d->stack); }

/* ---- options ----------------------------------------------------------------------------- */

int pd_phone_option(pd_phone_options *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char **slot = NULL;
    if (strcmp(a, "--auto-answer") == 0) o->auto_answer = true;
    else if (strcmp(a, "--private") == 0) o->privacy = true;
    else if (strcmp(a, "--block-changed-keys") == 0) o->block_changed_keys = true;
    else if (strcmp(a, "--answer-from") == 0) slot = &o->answer_from;
    else if (strcmp(a, "--answer-to") == 0) slot = &o->answer_to;
    else if (strcmp(a, "--media-trace") == 0) slot = &o->media_trace;
    else if (strcmp(a, "--ring-timeout") == 0) slot = &o->ring_timeout;
    else if (strcmp(a, "--voice-band") == 0) {
        if (*i + 1 >= argc || !pl_voice_band_parse(argv[*i + 1], &o->voice_band)) {
            fprintf(stderr, "%s: --voice-band wants wide, superwide or full\n", PROG);
            return -1;
        }
        ++*i;
    } else return 0;
    if (slot) {
        if (*i + 1 >= argc) {
            fprintf(stderr, "%s: %s needs a value\n", PROG, a);
            return -1;
        }
        *slot = argv[++*i];
    }
    if (slot == &o->ring_timeout) {
        char *end;
        long v = strtol(o->ring_timeout, &end, 10);
        if (*end || v < 1 || v > 600) {
            fprintf(stderr, "%s: --ring-timeout wants 1..600 seconds\n", PROG);
            return -1;
        }
    }
    return 1;
}

/* ---- audio specifications: "FILE.wav", "tone:HZ", "silence", "null", "device[:NAME]" ------------ */

static pl_audio_err open_source(const char *spec, pl_audio_source **out)
{
    if (!spec || !*spec || strcmp(spec, "silence") == 0) return pl_audio_silence_open(out, 0);
    if (strncmp(spec, "tone:", 5) == 0) {
        char *end;
        double hz = strtod(spec + 5, &end);
        if (*end || hz <= 0 || hz >= 24000) return PL_AUDIO_ERR_ARG;
        return pl_audio_tone_open(out, hz, 0.3, 0);
    }
    if (strcmp(spec, "null") == 0) return pl_audio_null_source_open(out);
    if (strcmp(spec, "device") == 0) return pl_audio_device_source_open(out, NULL);
    if (strncmp(spec, "device:", 7) == 0) return pl_audio_device_source_open(out, spec + 7);
    return pl_audio_wav_source_open(out, spec);
}

static pl_audio_err open_sink(const char *spec, pl_audio_sink **out)
{
    if (!spec || !*spec || strcmp(spec, "null") == 0) return pl_audio_null_sink_open(out);
    if (strcmp(spec, "device") == 0) return pl_audio_device_sink_open(out, NULL);
    if (strncmp(spec, "device:", 7) == 0) return pl_audio_device_sink_open(out, spec + 7);
    return pl_audio_wav_sink_open(out, spec);
}

static bool is_file(const char *spec)
{
    return spec && *spec && strcmp(spec, "silence") && strcmp(spec, "null") && strncmp(spec, "tone:", 5) &&
           strncmp(spec, "device", 6);
}

/* ---- call records ------------------------------------------------------------------------------ */

static pd_call *call_of(parleyd *d, uint32_t id)
{
    for (size_t i = 0; i < d->n_calls; i++)
        if (d->calls[i].used && d->calls[i].id == id) return &d->calls[i];
    return NULL;
}

static pd_call *call_add(parleyd *d, uint32_t id)
{
    pd_call *c = call_of(d, id);
    if (c) return c;
    size_t i;
    for (i = 0; i < d->n_calls && d->calls[i].used; i++) {
    }
    if (i == d->n_calls) {
        pd_call *grown = realloc(d->calls, (d->n_calls + 8) * sizeof *grown);
        if (!grown) return NULL;
        memset(grown + d->n_calls, 0, 8 * sizeof *grown);
        d->calls = grown;
        d->n_calls += 8;
    }
    c = &d->calls[i];
    memset(c, 0, sizeof *c);
    c->used = true;
    c->id = id;
    return c;
}

static void push_call(parleyd *d, const pd_call *c);

/* Forgets a call's record (ended, and listed long enough). */
static void call_drop(pd_call *c)
{
    cJSON_Delete(c->vm_result);
    c->vm_result = NULL;
    c->used = false;
}

static void close_audio(pd_call *c)
{
    pl_audio_source_close(c->src);
    pl_audio_sink_close(c->sink);
    pl_dsp_free(c->dsp);
    c->src = NULL;
    c->sink = NULL;
    c->dsp = NULL;
}

/* Opens a call's audio; on failure writes why into msg. */
static bool open_audio(pd_call *c, const char *from, const char *to, char *msg, size_t cap)
{
    pl_audio_source *src = NULL;
    pl_audio_sink *sink = NULL;
    pl_audio_err e = open_source(from, &src);
    if (e) {
        snprintf(msg, cap, "cannot use '%s' as the audio source: %s%s%s", from ? from : "", pl_audio_strerror(e),
                 e == PL_AUDIO_ERR_OPEN ? ": " : "", e == PL_AUDIO_ERR_OPEN ? strerror(errno) : "");
        return false;
    }
    e = open_sink(to, &sink);
    if (e) {
        snprintf(msg, cap, "cannot use '%s' as the audio sink: %s%s%s", to ? to : "", pl_audio_strerror(e),
                 e == PL_AUDIO_ERR_OPEN ? ": " : "", e == PL_AUDIO_ERR_OPEN ? strerror(errno) : "");
        pl_audio_source_close(src);
        return false;
    }
    close_audio(c);
    c->src = src;
    c->sink = sink;
    /* Echo cancellation and noise suppression belong on a live microphone. */
    if (src->device) {
        pl_dsp_config dc = {.no_echo = !sink->device};
        if (pl_dsp_new(&c->dsp, &dc) != PL_DSP_OK) c->dsp = NULL;
    }
    return true;
}

bool pd_phone_take_audio(parleyd *d, uint32_t id, pl_audio_source **src, pl_audio_sink **sink, pl_dsp **dsp)
{
    pd_call *c = call_of(d, id);
    if (!c || (!c->src && !c->sink)) return false;
    *src = c->src;
    *sink = c->sink;
    *dsp = c->dsp;
    c->src = NULL;
    c->sink = NULL;
    c->dsp = NULL;
    return true;
}

bool pd_phone_open_audio(const char *from, const char *to, pl_audio_source **src, pl_audio_sink **sink, pl_dsp **dsp,
                         char *msg, size_t cap)
{
    pd_call staged;
    memset(&staged, 0, sizeof staged);
    if (!open_audio(&staged, from, to, msg, cap)) return false;
    *src = staged.src;
    *sink = staged.sink;
    *dsp = staged.dsp;
    return true;
}

/* ---- the 20 ms audio clock ------------------------------------------------------------------------ */

static bool wants_audio(const pd_call *c)
{
    return !c->ended && (c->last.state == PL_CALL_ACTIVE || c->last.state == PL_CALL_HELD);
}

static void audio_frame(parleyd *d, pd_call *c, pl_time now)
{
    int16_t in[PL_VOICE_FRAME], out[PL_VOICE_FRAME];
    pl_audio_err e = c->src ? pl_audio_read(c->src, in) : PL_AUDIO_END;
    if (e != PL_AUDIO_OK) {
        memset(in, 0, sizeof in);
        if (e != PL_AUDIO_AGAIN && !c->src_ended) {
            c->src_ended = true;
            if (c->hangup_when_src_ends && !c->hangup_at) c->hangup_at = now + FILE_END_TAIL;
        }
    } else if (c->dsp) {
        pl_dsp_process(c->dsp, in, c->have_played ? c->played : NULL, in);
    }
    c->frames_in++;
    pl_phone_audio(phone(d), c->id, in, out, now);
    memcpy(c->played, out, sizeof out);
    c->have_played = true;
    if (c->sink && pl_audio_write(c->sink, out) == PL_AUDIO_OK) c->frames_out++;
}

/* While the audio clock runs, an ordinary node reads its socket on the
 * clock's tick rather than waking for every datagram: one wake-up per frame
 * instead of two, the biggest cost of a call end after the codec
 * (docs/calls.md). Nothing waits more than a frame, and the loop hands each
 * datagram over with its arrival time, so the jitter buffer is not fooled.
 * A supernode serves others from that socket and keeps answering at once. */
static void defer_reading(parleyd *d)
{
    if (d->udp) pl_udp_set_deferred(d->udp, d->audio_running && d->role == PL_ROLE_NODE);
}

/* The protocol's timers (keepalives, path probes, receiver reports,
 * retransmissions) fire about fifteen times a second during a call, each a
 * wake-up of its own between two ticks of the clock. None of them minds a
 * frame's delay (the datagrams they answer already wait that long while
 * reading is deferred), so they join the clock's tick instead: one wake-up
 * per frame, whatever else is due (docs/calls.md, "CPU"). */
pl_time pd_phone_align_timer(const parleyd *d, pl_time t)
{
    if (!d->audio_running || d->role != PL_ROLE_NODE || t == PL_TIME_NEVER) return t;
    if (t <= pl_loop_now(d->loop)) return t;
    if (t <= d->audio_next) return d->audio_next;
    pl_time ticks = (t - d->audio_next + FRAME - 1) / FRAME;
    return d->audio_next + ticks * FRAME;
}

static void audio_tick(pl_loop *loop, void *ctx)
{
    parleyd *d = ctx;
    pl_time now = pl_loop_now(loop);
    bool any = false;
    for (int k = 0; k < MAX_CATCH_UP && d->audio_next <= now; k++) {
        if (pd_conf_audio(d, now)) any = true; /* the conference's legs, mixed */
        for (size_t i = 0; i < d->n_calls; i++) {
            pd_call *c = &d->calls[i];
            if (!c->used || !wants_audio(c) || pd_conf_owns(d, c->id)) continue;
            audio_frame(d, c, now);
            any = true;
        }
        d->audio_next += FRAME;
    }
    /* Fell behind by more than the catch-up allows: skip ahead rather
     * than burst. */
    if (d->audio_next <= now) d->audio_next = now + FRAME;
    for (size_t i = 0; i < d->n_calls; i++) {
        pd_call *c = &d->calls[i];
        if (c->used && !c->ended && c->hangup_at && now >= c->hangup_at) {
            c->hangup_at = 0;
            pd_log(d, "call %u: hanging up (%s)", c->id, c->src_ended ? "the audio file ended" : "--duration reached");
            pl_phone_hangup(phone(d), c->id, now);
        }
        if (c->used && c->ended && !c->vm_leaving && now >= c->ended_at + KEEP_ENDED) {
            call_drop(c);
            push_call(d, c);
        }
        any |= c->used && wants_audio(c);
    }
    if (any) pl_timer_set(loop, &d->audio_timer, d->audio_next);
    else d->audio_running = false;
    defer_reading(d);
    pd_rearm(d);
}

static void audio_start(parleyd *d)
{
    if (d->audio_running) return;
    d->audio_running = true;
    d->audio_next = pl_loop_now(d->loop) + FRAME;
    pl_timer_set(d->loop, &d->audio_timer, d->audio_next);
    defer_reading(d);
}

/* ---- events ----------------------------------------------------------------------------------------- */

static const char *path_text(const pl_path_info *p, char *buf, size_t cap)
{
    char a[PL_ADDR_TEXT_MAX];
    snprintf(buf, cap, "%s via %s", p->kind == PL_PATH_DIRECT ? "direct" : "relayed",
             pl_addr_format(&p->remote, a, sizeof a));
    return buf;
}

/* The ends a voicemail is for, as on a telephone: declined, not answered
 * (also the caller's own --timeout), the callee offline or unreachable.
 * Not busy (the callee is there and can be called back), not refused or a
 * changed key (the callee does not take our calls, or is not who we
 * pinned), not an unknown name, not when the directory failed us. */
static bool voicemail_due(const pd_call *c, const pl_phone_call_info *in)
{
    if (in->answered) return false;
    switch (in->end_reason) {
    case PL_CALL_END_REJECTED:
    case PL_CALL_END_NO_ANSWER:
    case PL_CALL_END_UNREACHABLE:
    case PL_PHONE_END_OFFLINE: return true;
    case PL_CALL_END_CANCELLED: return c->gave_up;
    default: return false;
    }
}

static void leave_voicemail(parleyd *d, pd_call *c, const pl_phone_call_info *in)
{
    pl_audio_source *src = c->src;
    c->src = NULL; /* voicemail.c owns it now */
    close_audio(c);
    c->vm_leaving = true;
    cJSON_Delete(c->vm_result);
    c->vm_result = NULL;
    pd_log(d, "call %u: %s; leaving voicemail for %s", c->id, pl_phone_end_name(in->end_reason), in->peer_name);
    if (!src) {
        pd_phone_voicemail_done(d, c->id, pd_error_reply("local", "the call has no audio to record"));
        return;
    }
    c->vm_job = pd_voicemail_leave_call(d, in->peer_name, src, c->id);
}

void pd_on_phone(parleyd *d, const pl_phone_event *ev)
{
    const pl_phone_call_info *in = ev->info;
    bool conference = pd_conf_on_phone(d, ev); /* a call the conference answers or keeps ringing */
    pd_call *c = call_add(d, ev->id);
    if (!c) return;
    c->last = *in;
    char buf[160];
    switch (ev->type) {
    case PL_PHONE_EV_DIALING:
        pd_log(d, "call %u: calling %s; safety number %s", ev->id, in->peer_name, in->safety_number);
        break;
    case PL_PHONE_EV_INCOMING:
        pd_log(d, "call %u: incoming call from %s; safety number %s", ev->id, in->peer_name, in->safety_number);
        if (d->opt.phone.auto_answer && !conference) {
            char msg[256];
            if (!open_audio(c, d->opt.phone.answer_from, d->opt.phone.answer_to, msg, sizeof msg)) {
                pd_log(d, "call %u: not answering: %s", ev->id, msg);
                break;
            }
            pl_phone_answer(phone(d), ev->id, ev->now);
        }
        break;
    case PL_PHONE_EV_STATE:
        if (in->state == PL_CALL_RINGING_REMOTE)
            pd_log(d, "call %u: ringing at %s (%.1f ms after dialing)", ev->id, in->peer_name,
                   (in->responded - in->dialed) / 1e3);
        else if (in->state == PL_CALL_ACTIVE && in->hold == 0)
            pd_log(d, "call %u: %s with %s", ev->id, in->answered == ev->now ? "answered" : "resumed", in->peer_name);
        else if (in->state == PL_CALL_HELD)
            pd_log(d, "call %u: on hold (%s)", ev->id,
                   in->hold == PL_CALL_HOLD_LOCAL ? "by us" : in->hold == PL_CALL_HOLD_REMOTE ? "by the other side" : "both");
        if (in->state == PL_CALL_ACTIVE && c->duration_s > 0 && !c->hangup_at)
            c->hangup_at = ev->now + (pl_time)(c->duration_s * PL_SEC);
        break;
    case PL_PHONE_EV_MEDIA:
        if (in->media) audio_start(d);
        break;
    case PL_PHONE_EV_PATH:
        c->path_at = ev->now;
        c->path_changes++;
        pd_log(d, "call %u: media path %s", ev->id, path_text(&in->path, buf, sizeof buf));
        break;
    case PL_PHONE_EV_KEY:
        pd_log(d, "call %u: WARNING: %s", ev->id, ev->warning ? ev->warning : "the key changed");
        break;
    case PL_PHONE_EV_ENDED:
        pd_log(d, "call %u: ended: %s%s; sent %llu packets, received %llu, concealed %.1f%%", ev->id,
               pl_phone_end_name(in->end_reason),
               in->end_reason > PL_CALL_END_MAX ? "" : in->end_local ? " (here)" : " (there)",
               (unsigned long long)in->stats.packets_sent, (unsigned long long)in->stats.packets_received,
               100 * in->stats.concealed_fraction);
        c->ended = true;
        c->ended_at = ev->now;
        if (c->voicemail && in->outgoing && voicemail_due(c, in)) leave_voicemail(d, c, in);
        else close_audio(c);
        break;
    }
    (void)buf;
    push_call(d, c);
}

void pd_phone_voicemail_done(parleyd *d, uint32_t call, cJSON *reply)
{
    pd_call *c = call_of(d, call);
    if (!c || !c->vm_leaving) {
        cJSON_Delete(reply);
        return;
    }
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(reply, "message");
    bool queued = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "queued"));
    if (cJSON_IsString(err))
        pd_log(d, "call %u: no voicemail left for %s: %s", call, c->last.peer_name, err->valuestring);
    else
        pd_log(d, "call %u: voicemail %.8s for %s %s", call,
               cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "id")), c->last.peer_name,
               queued ? "recorded; stored once this node is online" : "left");
    cJSON_Delete(c->vm_result);
    c->vm_result = reply;
    /* Queued: still to be stored, and the record waits for that too. */
    c->vm_leaving = queued;
    c->ended_at = pl_loop_now(d->loop); /* listed for a minute from now */
    push_call(d, c);
}

/* ---- the phone's configuration and life ----------------------------------------------------------- */

static bool pin_lookup(void *ctx, const char *name, uint8_t key[32])
{
    parleyd *d = ctx;
    pl_contact c;
    if (!d->contacts || pl_contacts_get(d->contacts, name, &c) != PL_CONTACTS_OK || !c.pinned) return false;
    memcpy(key, c.pinned_key, 32);
    return true;
}

static void pin_first_seen(void *ctx, const char *name, const uint8_t key[32])
{
    parleyd *d = ctx;
    if (d->contacts) pl_contacts_pin(d->contacts, name, key); /* only contacts have a row to pin in */
}

static void media_sent(void *ctx, uint32_t id, const uint8_t *payload, size_t len)
{
    parleyd *d = ctx;
    if (!d->media_trace || len < 1 || payload[0] != 0x80) return;
    fprintf(d->media_trace, "%u ", id);
    for (size_t i = 0; i < len; i++) fprintf(d->media_trace, "%02x", payload[i]);
    fputc('\n', d->media_trace);
}

void pd_phone_configure(parleyd *d, pl_stack_config *cfg)
{
    if (d->role != PL_ROLE_NODE) return;
    pl_phone_config *pc = &d->phone_cfg;
    memset(pc, 0, sizeof *pc);
    pc->privacy = d->opt.phone.privacy;
    pc->block_changed_keys = d->opt.phone.block_changed_keys;
    if (d->opt.phone.ring_timeout) pc->ring_timeout = (pl_time)atoi(d->opt.phone.ring_timeout) * PL_SEC;
    pc->media.band = d->opt.phone.voice_band;
    pc->pins = (pl_phone_pins){d, pin_lookup, pin_first_seen};
    pc->media_sent = media_sent;
    pc->media_sent_ctx = d;
    if (d->opt.phone.privacy) cfg->attach.flags |= PL_OVL_ATTACH_F_PRIVATE;
    cfg->phone = pc;
}

int pd_phone_open(parleyd *d)
{
    pl_timer_init(&d->audio_timer, audio_tick, d);
    int rc = pd_conf_open(d);
    if (rc) return rc;
    if (d->opt.phone.media_trace) {
        d->media_trace = fopen(d->opt.phone.media_trace, "w");
        if (!d->media_trace) return pd_die("cannot write %s: %s", d->opt.phone.media_trace, strerror(errno));
        setvbuf(d->media_trace, NULL, _IOLBF, 0);
    }
    if (d->opt.phone.auto_answer) {
        /* Check the answering audio now rather than at the first call. */
        pd_call probe;
        memset(&probe, 0, sizeof probe);
        char msg[256];
        bool ok = open_audio(&probe, d->opt.phone.answer_from, NULL, msg, sizeof msg);
        close_audio(&probe);
        if (!ok) return pd_die("--answer-from: %s", msg);
    }
    return 0;
}

void pd_phone_close(parleyd *d)
{
    if (d->role != PL_ROLE_NODE) return;
    pd_conf_close(d);
    pl_phone *ph = d->stack ? phone(d) : NULL;
    for (size_t i = 0; i < d->n_calls; i++) {
        pd_call *c = &d->calls[i];
        if (!c->used) continue;
        if (ph && !c->ended) pl_phone_hangup(ph, c->id, pl_loop_now(d->loop));
        close_audio(c);
        call_drop(c);
    }
    free(d->calls);
    d->calls = NULL;
    d->n_calls = 0;
    if (d->loop) pl_timer_cancel(d->loop, &d->audio_timer);
    if (d->media_trace) fclose(d->media_trace);
    d->media_trace = NULL;
}

/* ---- commands ------------------------------------------------------------------------------------------ */

static const char *req_string(const cJSON *req, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static cJSON *phone_error(pl_phone_err e)
{
    switch (e) {
    case PL_PHONE_ERR_BAD_NAME: return pd_error_reply("bad_name", "not a valid user name");
    case PL_PHONE_ERR_OFFLINE: return pd_error_reply("offline", "not attached to a supernode yet");
    case PL_PHONE_ERR_BUSY: return pd_error_reply("busy", "already in a call");
    case PL_PHONE_ERR_SELF: return pd_error_reply("bad_request", "you cannot call yourself");
    case PL_PHONE_ERR_NO_CALL: return pd_error_reply("no_call", "no such call");
    case PL_PHONE_ERR_STATE: return pd_error_reply("state", "not possible in the call's state");
    default: return pd_error_reply("failed", pl_phone_strerror(e));
    }
}

/* The call a command means: the one given, else the only live one (a
 * ringing one for answer and reject; for hangup, also one whose voicemail
 * is being recorded). */
static bool pick_call(parleyd *d, const cJSON *req, bool ringing_only, bool recording_too, uint32_t *id,
                      cJSON **err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, "id");
    if (cJSON_IsNumber(v)) {
        *id = (uint32_t)v->valuedouble;
        return true;
    }
    uint32_t ids[16];
    size_t n = pl_phone_list(phone(d), ids, 16), found = 0;
    for (size_t i = 0; i < n; i++) {
        pl_phone_call_info info;
        if (!pl_phone_get_info(phone(d), ids[i], &info) || info.state == PL_CALL_ENDED) continue;
        if (ringing_only && info.state != PL_CALL_RINGING) continue;
        *id = ids[i];
        found++;
    }
    for (size_t i = 0; recording_too && i < d->n_calls; i++) {
        const pd_call *c = &d->calls[i];
        if (!c->used || !c->vm_leaving || c->vm_result) continue;
        *id = c->id;
        found++;
    }
    if (found == 1) return true;
    *err = pd_error_reply("no_call", found ? "more than one call: give its id" : ringing_only ? "no call is ringing"
                                                                                               : "no call");
    return false;
}

cJSON *pd_cmd_call(parleyd *d, int fd, const cJSON *req)
{
    (void)fd;
    const char *name = req_string(req, "name");
    if (!name) return pd_error_reply("bad_request", "call needs a \"name\"");
    const char *from = req_string(req, "from"), *to = req_string(req, "to");
    const cJSON *dur = cJSON_GetObjectItemCaseSensitive(req, "duration");
    pd_call staged;
    memset(&staged, 0, sizeof staged);
    char msg[300];
    if (!open_audio(&staged, from, to, msg, sizeof msg)) return pd_error_reply("audio", msg);
    uint32_t id;
    pl_phone_err e = pl_phone_dial(phone(d), name, pl_loop_now(d->loop), &id);
    if (e) {
        close_audio(&staged);
        return phone_error(e);
    }
    pd_call *c = call_add(d, id);
    if (!c) {
        close_audio(&staged);
        pl_phone_hangup(phone(d), id, pl_loop_now(d->loop));
        return pd_error_reply("failed", "out of memory");
    }
    close_audio(c);
    c->src = staged.src;
    c->sink = staged.sink;
    c->dsp = staged.dsp;
    c->duration_s = cJSON_IsNumber(dur) && dur->valuedouble > 0 ? dur->valuedouble : 0;
    c->hangup_when_src_ends = is_file(from) && c->duration_s == 0;
    c->voicemail = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req, "voicemail"));
    pl_phone_get_info(phone(d), id, &c->last);
    pd_log(d, "call %u: looking up %s (audio from %s, to %s%s)", id, name, from ? from : "silence", to ? to : "null",
           c->voicemail ? "; voicemail if not taken" : "");
    cJSON *r = pd_ok_reply();
    cJSON_AddNumberToObject(r, "id", id);
    return r;
}

cJSON *pd_cmd_answer(parleyd *d, int fd, const cJSON *req)
{
    (void)fd;
    uint32_t id;
    cJSON *err = NULL;
    if (!pick_call(d, req, true, false, &id, &err)) return err;
    pd_call *c = call_add(d, id);
    if (!c) return pd_error_reply("failed", "out of memory");
    const char *from = req_string(req, "from"), *to = req_string(req, "to");
    char msg[300];
    if (!open_audio(c, from ? from : d->opt.phone.answer_from, to ? to : d->opt.phone.answer_to, msg, sizeof msg))
        return pd_error_reply("audio", msg);
    const cJSON *dur = cJSON_GetObjectItemCaseSensitive(req, "duration");
    c->duration_s = cJSON_IsNumber(dur) && dur->valuedouble > 0 ? dur->valuedouble : 0;
    pl_phone_err e = pl_phone_answer(phone(d), id, pl_loop_now(d->loop));
    if (e) return phone_error(e);
    cJSON *r = pd_ok_reply();
    cJSON_AddNumberToObject(r, "id", id);
    return r;
}

/* reject, hangup, hold, resume, mute, unmute: one call, one action. */
cJSON *pd_cmd_call_action(parleyd *d, int fd, const cJSON *req)
{
    (void)fd;
    const char *cmd = req_string(req, "cmd");
    bool reject = strcmp(cmd, "reject") == 0;
    uint32_t id;
    cJSON *err = NULL;
    if (!pick_call(d, req, reject, strcmp(cmd, "hangup") == 0, &id, &err)) return err;
    pl_time now = pl_loop_now(d->loop);
    pd_call *c = call_of(d, id);
    if (strcmp(cmd, "hangup") == 0 && c && c->vm_leaving) {
        /* The caller hangs up while talking to the voicemail: what was
         * said so far is stored. */
        if (!c->vm_result) {
            pd_log(d, "call %u: hung up; the voicemail ends here", id);
            pd_voicemail_stop(d, c->vm_job);
        }
        cJSON *r = pd_ok_reply();
        cJSON_AddNumberToObject(r, "id", id);
        return r;
    }
    /* The caller's own ring timeout: a voicemail is left as for no answer. */
    if (strcmp(cmd, "hangup") == 0 && c && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req, "gave_up")))
        c->gave_up = true;
    pl_phone_err e;
    if (reject) e = pl_phone_reject(phone(d), id, now);
    else if (strcmp(cmd, "hangup") == 0) e = pl_phone_hangup(phone(d), id, now);
    else if (strcmp(cmd, "hold") == 0) e = pl_phone_hold(phone(d), id, now);
    else if (strcmp(cmd, "resume") == 0) e = pl_phone_resume(phone(d), id, now);
    else if (strcmp(cmd, "mute") == 0) e = pl_phone_mute(phone(d), id, true, now);
    else e = pl_phone_mute(phone(d), id, false, now);
    if (e) return phone_error(e);
    if (strcmp(cmd, "mute") == 0 || strcmp(cmd, "unmute") == 0) pd_log(d, "call %u: %sd", id, cmd);
    cJSON *r = pd_ok_reply();
    cJSON_AddNumberToObject(r, "id", id);
    return r;
}

static const char *state_name(const pl_phone_call_info *in)
{
    if (in->looking_up) return "looking up";
    switch (in->state) {
    case PL_CALL_DIALING: return "calling";
    case PL_CALL_RINGING: return "ringing";
    case PL_CALL_RINGING_REMOTE: return "ringing at the other end";
    case PL_CALL_ACTIVE: return "active";
    case PL_CALL_HELD: return "on hold";
    case PL_CALL_ENDED: return "ended";
    default: return "idle";
    }
}

static const char *end_kind(uint8_t r)
{
    switch (r) {
    case PL_CALL_END_HANGUP_LOCAL:
    case PL_CALL_END_HANGUP_REMOTE: return "hangup";
    case PL_CALL_END_REJECTED:
    case PL_CALL_END_REFUSED:
    case PL_PHONE_END_KEY_CHANGED: return "rejected";
    case PL_CALL_END_BUSY: return "busy";
    case PL_CALL_END_NO_ANSWER: return "no_answer";
    case PL_CALL_END_CANCELLED: return "cancelled";
    case PL_CALL_END_UNREACHABLE:
    case PL_PHONE_END_OFFLINE:
    case PL_PHONE_END_NO_DIRECTORY: return "unreachable";
    case PL_CALL_END_NETWORK_FAILURE: return "network_failure";
    case PL_PHONE_END_NOT_FOUND: return "not_found";
    case PL_PHONE_END_MERGED: return "merged";
    default: return "failed";
    }
}

static double ms(pl_time t) { return (double)t / 1000.0; }

static cJSON *call_json(parleyd *d, const pd_call *c, const pl_phone_call_info *in, pl_time now)
{
    cJSON *o = cJSON_CreateObject();
    char hex[65], addr[PL_ADDR_TEXT_MAX];
    cJSON_AddNumberToObject(o, "id", in->id);
    cJSON_AddStringToObject(o, "peer", in->peer_name);
    pl_hex_encode(in->peer_pk, 32, hex);
    cJSON_AddStringToObject(o, "peer_fingerprint", hex);
    cJSON_AddStringToObject(o, "direction", in->outgoing ? "outgoing" : "incoming");
    cJSON_AddStringToObject(o, "state", state_name(in));
    cJSON_AddBoolToObject(o, "held_here", (in->hold & PL_CALL_HOLD_LOCAL) != 0);
    cJSON_AddBoolToObject(o, "held_there", (in->hold & PL_CALL_HOLD_REMOTE) != 0);
    cJSON_AddBoolToObject(o, "muted", in->muted);
    cJSON_AddStringToObject(o, "safety_number", in->safety_number);
    cJSON_AddStringToObject(o, "key", in->key_verdict == PL_TRUST_PIN_CHANGED     ? "CHANGED"
                                      : in->key_verdict == PL_TRUST_PIN_SAME      ? "same as pinned"
                                      : in->key_verdict == PL_TRUST_PIN_FIRST_SEEN ? "not pinned before"
                                                                                  : "");
    if (in->state == PL_CALL_ENDED) {
        cJSON_AddStringToObject(o, "end", end_kind(in->end_reason));
        cJSON_AddStringToObject(o, "reason", pl_phone_end_name(in->end_reason));
        cJSON_AddBoolToObject(o, "ended_here", in->end_local);
        if (in->merged_into) cJSON_AddNumberToObject(o, "merged_into", in->merged_into);
    }
    if (in->responded) cJSON_AddNumberToObject(o, "dial_to_ringing_ms", ms(in->responded - in->dialed));
    if (in->answered) {
        cJSON_AddNumberToObject(o, "answered_after_ms", ms(in->answered - in->dialed));
        pl_time end = in->ended ? in->ended : now;
        cJSON_AddNumberToObject(o, "duration_s", (double)(end - in->answered) / PL_SEC);
    }
    if (in->have_path) {
        cJSON *p = cJSON_AddObjectToObject(o, "path");
        cJSON_AddStringToObject(p, "kind", in->path.kind == PL_PATH_DIRECT ? "direct" : "relayed");
        cJSON_AddStringToObject(p, "transport", in->path.kind == PL_PATH_RELAY_TCP ? "tcp" : "udp");
        cJSON_AddStringToObject(p, "via", pl_addr_format(&in->path.remote, addr, sizeof addr));
        cJSON_AddNumberToObject(p, "paths_alive", in->paths_alive);
        /* When the call took this path (from the dial or the incoming
         * call), and how many times it chose one: a call that went direct
         * after starting relayed says 2. */
        if (c && c->path_at >= in->dialed && c->path_changes) {
            cJSON_AddNumberToObject(p, "since_ms", ms(c->path_at - in->dialed));
            cJSON_AddNumberToObject(p, "changes", c->path_changes);
        }
        pd_reach_path(d, p, &in->path);
    }
    /* Dial (or incoming call) to the first voice packet heard. */
    if (in->first_media_rx) cJSON_AddNumberToObject(o, "first_media_ms", ms(in->first_media_rx - in->dialed));
    const pl_media_stats *s = &in->stats;
    cJSON_AddBoolToObject(o, "media", in->media);
    cJSON *m = cJSON_AddObjectToObject(o, "stats");
    if (s->rtt_known) cJSON_AddNumberToObject(m, "rtt_ms", ms(s->rtt));
    cJSON_AddNumberToObject(m, "loss_rx", s->loss_rx_total);
    cJSON_AddNumberToObject(m, "loss_rx_recent", s->loss_rx);
    cJSON_AddNumberToObject(m, "loss_tx", s->loss_tx);
    cJSON_AddNumberToObject(m, "jitter_rx_ms", ms(s->jitter_rx));
    cJSON_AddNumberToObject(m, "jitter_tx_ms", ms(s->jitter_tx));
    cJSON_AddNumberToObject(m, "bitrate", s->bitrate);
    cJSON_AddNumberToObject(m, "concealed_ms", ms(s->concealed_ms));
    cJSON_AddNumberToObject(m, "concealed_fraction", s->concealed_fraction);
    cJSON_AddNumberToObject(m, "jitter_buffer_ms", ms(s->jb_delay_avg));
    cJSON_AddNumberToObject(m, "packets_sent", (double)s->packets_sent);
    cJSON_AddNumberToObject(m, "packets_received", (double)s->packets_received);
    cJSON_AddNumberToObject(m, "frames_played", (double)s->frames_played);
    cJSON_AddNumberToObject(m, "frames_fec", (double)s->frames_fec);
    if (c) {
        cJSON_AddNumberToObject(m, "audio_frames_in", (double)c->frames_in);
        cJSON_AddNumberToObject(m, "audio_frames_out", (double)c->frames_out);
    }
    if (c && c->voicemail) cJSON_AddBoolToObject(o, "voicemail_asked", true);
    if (c && (c->vm_leaving || c->vm_result)) {
        /* leaving (recording, then storing) -> left | queued | failed */
        cJSON *v = cJSON_AddObjectToObject(o, "voicemail");
        const cJSON *r = c->vm_result;
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(r, "message");
        bool queued = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "queued"));
        cJSON_AddStringToObject(v, "state", !r ? "leaving" : cJSON_IsString(msg) ? "failed" : queued ? "queued" : "left");
        cJSON_AddStringToObject(v, "to", in->peer_name);
        static const char *const keys[] = {"id", "duration_s", "bytes", "replicas", "of", "error", "message"};
        for (size_t k = 0; r && k < sizeof keys / sizeof keys[0]; k++) {
            const cJSON *x = cJSON_GetObjectItemCaseSensitive(r, keys[k]);
            if (x) cJSON_AddItemToObject(v, keys[k], cJSON_Duplicate(x, true));
        }
    }
    (void)d;
    return o;
}

/* What a follower of the call is sent: the `calls` reply with this call
 * alone, as the event left it (no fresh statistics: nothing calls into
 * the phone while it reports), or with none once the record is gone. */
static void push_call(parleyd *d, const pd_call *c)
{
    for (size_t i = 0; i < MAX_CONTROL_CLIENTS; i++) {
        if (!d->call_followers[i].call || d->call_followers[i].call != c->id) continue;
        cJSON *r = pd_ok_reply();
        cJSON *arr = cJSON_AddArrayToObject(r, "calls");
        if (c->used) cJSON_AddItemToArray(arr, call_json(d, c, &c->last, pl_loop_now(d->loop)));
        else d->call_followers[i].call = 0;
        pd_control_reply(d, d->call_followers[i].fd, r);
    }
}

void pd_phone_client_gone(parleyd *d, int fd)
{
    for (size_t i = 0; i < MAX_CONTROL_CLIENTS; i++)
        if (d->call_followers[i].call && d->call_followers[i].fd == fd) d->call_followers[i].call = 0;
}

/* "follow": true with an "id" keeps the connection: after this reply, the
 * call's record comes again whenever the call changes (a state, the path,
 * its end, its voicemail), so that `parley call` need not ask over and
 * over; each asking costs the daemon a connection during the call. One
 * call per connection: a new follow replaces the last. */
static cJSON *add_call_follower(parleyd *d, int fd, uint32_t id)
{
    size_t slot = MAX_CONTROL_CLIENTS;
    for (size_t i = 0; i < MAX_CONTROL_CLIENTS; i++) {
        if (d->call_followers[i].call && d->call_followers[i].fd == fd) {
            slot = i;
            break;
        }
        if (!d->call_followers[i].call && slot == MAX_CONTROL_CLIENTS) slot = i;
    }
    if (slot == MAX_CONTROL_CLIENTS) return pd_error_reply("busy", "too many clients follow calls already");
    d->call_followers[slot].fd = fd;
    d->call_followers[slot].call = id;
    return NULL;
}

cJSON *pd_cmd_calls(parleyd *d, int fd, const cJSON *req)
{
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(req, "id");
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req, "follow"))) {
        if (!cJSON_IsNumber(want) || want->valuedouble < 1 || want->valuedouble > UINT32_MAX)
            return pd_error_reply("bad_request", "follow needs the call's \"id\"");
        pd_call *c = call_of(d, (uint32_t)want->valuedouble);
        cJSON *err = c ? add_call_follower(d, fd, c->id) : NULL;
        if (err) return err;
    }
    pl_time now = pl_loop_now(d->loop);
    cJSON *r = pd_ok_reply();
    cJSON *arr = cJSON_AddArrayToObject(r, "calls");
    uint32_t ids[32];
    size_t n = pl_phone_list(phone(d), ids, 32);
    /* The phone's live calls, with fresh statistics. */
    for (size_t i = 0; i < n; i++) {
        if (cJSON_IsNumber(want) && (uint32_t)want->valuedouble != ids[i]) continue;
        pl_phone_call_info info;
        if (!pl_phone_get_info(phone(d), ids[i], &info)) continue;
        pd_call *c = call_of(d, ids[i]);
        if (c && !c->ended) c->last = info;
        if (c && c->ended) continue; /* shown below from the record */
        cJSON_AddItemToArray(arr, call_json(d, c, &info, now));
    }
    /* Ended ones, as they were at the end. */
    for (size_t i = 0; i < d->n_calls; i++) {
        pd_call *c = &d->calls[i];
        if (!c->used || !c->ended) continue;
        if (cJSON_IsNumber(want) && (uint32_t)want->valuedouble != c->id) continue;
        cJSON_AddItemToArray(arr, call_json(d, c, &c->last, now));
    }
    pd_conf_json(d, r);
    return r;
}

void pd_phone_status(parleyd *d, cJSON *r)
{
    uint32_t ids[16];
    size_t n = pl_phone_list(phone(d), ids, 16), live = 0;
    for (size_t i = 0; i < n; i++) {
        pl_phone_call_info info;
        if (pl_phone_get_info(phone(d), ids[i], &info) && info.state != PL_CALL_ENDED) live++;
    }
    cJSON_AddNumberToObject(r, "calls", (double)live);
    cJSON_AddBoolToObject(r, "auto_answer", d->opt.phone.auto_answer);
    cJSON_AddBoolToObject(r, "private", d->opt.phone.privacy);
}
