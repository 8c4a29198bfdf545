/*
 * voicemail.c - voicemail in the daemon (docs/messages.md, section 6.3).
 *
 * Leaving one: the audio (a WAV file, or the rest of a call handed over by
 * the call code through pd_voicemail_leave) is encoded as it is read, a
 * turn of the event loop at a time, while the callee is looked up for the
 * certificate to seal for; the body is sealed (content type voicemail) and
 * deposited on the callee's R replicas by the mail client, in chunks. The
 * caller's control client is answered with how many replicas took it.
 *
 * Receiving: the mail client fetches a voicemail when its owner logs in or
 * while online; it is checked (it must play), kept in messages.db, logged
 * ("voicemail from alice ... waiting") and shown by `status` and `voicemail
 * list`. It is not acknowledged: the store keeps it until its owner deletes
 * it, and at the next start the mail client is told it is here
 * (pl_mboxc_keep) so it is not fetched again. Deleting erases it here and
 * sends the signed delete through the supernode to every replica; until
 * the store confirms, the delete is sent again at every start.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audio_device.h"
#include "messages.h"

/* ---- jobs ------------------------------------------------------------------------------------- */

static pd_vm_job *job_of(parleyd *d, uint32_t job)
{
    for (size_t i = 0; i < PD_MAX_VM_JOBS; i++)
        if (d->msg->jobs[i].state != VM_FREE && d->msg->jobs[i].job == job) return &d->msg->jobs[i];
    return NULL;
}

static void job_free(pd_vm_job *j)
{
    pl_audio_source_close(j->src);
    pl_vm_rec_free(j->rec);
    memset(j, 0, sizeof *j);
}

/* Tells whoever waits on the job how it went (the reply is consumed): the
 * control client that asked, and the call it was left from. */
static void job_answer(parleyd *d, pd_vm_job *j, cJSON *reply)
{
    if (j->call) pd_phone_voicemail_done(d, j->call, cJSON_Duplicate(reply, true));
    if (j->fd >= 0) pd_control_reply(d, j->fd, reply);
    else cJSON_Delete(reply);
}

static void job_fail(parleyd *d, pd_vm_job *j, const char *kind, const char *msg)
{
    pd_log(d, "voicemail for %s not left: %s", j->to, msg);
    job_answer(d, j, pd_error_reply(kind, msg));
    job_free(j);
}

static bool attached(parleyd *d)
{
    pl_node *n = pl_stack_node(d->stack);
    return n && pl_node_get_status(n).state == PL_NODE_ATTACHED;
}

static void seal_and_deposit(parleyd *d, pd_vm_job *j)
{
    const uint8_t *body;
    size_t len;
    if (pl_vm_rec_body(j->rec, &body, &len) != PL_VM_OK) {
        job_fail(d, j, "empty", "the recording holds no audio");
        return;
    }
    pl_mboxc *mc = pd_mailclient(d);
    pl_time now = pl_loop_now(d->loop);
    uint8_t head[PL_ENV_MAX_SIZE];
    size_t head_len;
    pl_env_sealed st;
    pl_env_err e = pl_env_seal(&st, head, sizeof head, &head_len, &d->id, d->cert_bytes, d->cert_len, &j->cert,
                               PL_ENV_VOICEMAIL, body, len, now, pl_rng_system());
    if (e) {
        job_fail(d, j, "bad_peer", pl_env_strerror(e));
        return;
    }
    pl_mboxc_err me = mc ? pl_mboxc_deposit(mc, &st, head, head_len, now) : PL_MBOXC_ERR_CONFIG;
    memcpy(j->id, st.id, PL_ENV_ID_SIZE);
    pl_env_sealed_wipe(&st);
    if (me) {
        job_fail(d, j, "busy", pl_mboxc_strerror(me));
        return;
    }
    j->frames = pl_vm_rec_frames(j->rec);
    j->bytes = len;
    pl_vm_rec_free(j->rec);
    j->rec = NULL;
    j->state = VM_DEPOSITING;
    pd_log(d, "voicemail for %s: %.1f s in %zu bytes, sealed for %s's key; storing it on %s's replicas", j->to,
           j->frames * PL_VM_FRAME_MS / 1000.0, len, j->to, j->to);
    if (!attached(d) && (j->fd >= 0 || j->call)) {
        /* The mail client sends it once the node is attached again. */
        char hex[2 * PL_ENV_ID_SIZE + 1];
        pd_id_hex(j->id, hex);
        cJSON *r = pd_ok_reply();
        cJSON_AddStringToObject(r, "id", hex);
        cJSON_AddStringToObject(r, "to", j->to);
        cJSON_AddNumberToObject(r, "duration_s", j->frames * PL_VM_FRAME_MS / 1000.0);
        cJSON_AddBoolToObject(r, "queued", true);
        job_answer(d, j, r);
        j->fd = -1; /* answered; the call still hears when it is stored */
    }
}

static void record_some(parleyd *d, pd_vm_job *j, pl_time now)
{
    int16_t frame[PL_AUDIO_FRAME];
    for (int k = 0; k < PD_VM_FRAMES_PER_TURN && !j->recorded; k++) {
        /* A call's file or tone plays at the pace of speech: the caller
         * talks to the voicemail until done, and a hang-up cuts it there. */
        if (j->paced && j->next_frame > now) return;
        pl_audio_err ae = pl_audio_read(j->src, frame);
        if (j->paced) j->next_frame += PL_VM_FRAME_MS * PL_MSEC;
        if (ae == PL_AUDIO_AGAIN) return;
        if (ae == PL_AUDIO_END) {
            j->recorded = true;
            break;
        }
        if (ae != PL_AUDIO_OK) {
            job_fail(d, j, "local", pl_audio_strerror(ae));
            return;
        }
        pl_vm_err ve = pl_vm_rec_frame(j->rec, frame);
        if (ve == PL_VM_ERR_TOO_LONG) {
            if (j->refuse_long) {
                job_fail(d, j, "too_long", "the recording is longer than three minutes");
                return;
            }
            j->recorded = true; /* cut at three minutes */
        } else if (ve) {
            job_fail(d, j, "codec", pl_vm_strerror(ve));
            return;
        }
    }
    if (!j->recorded) return;
    pl_audio_source_close(j->src);
    j->src = NULL;
    if (j->have_cert) seal_and_deposit(d, j);
}

static uint32_t leave(parleyd *d, const char *name, pl_audio_source *src, bool refuse_long, int reply_fd,
                      uint32_t call)
{
    pd_messages *m = d->msg;
    char norm[PL_NAME_MAX + 1];
    pd_vm_job *j = NULL;
    for (size_t i = 0; m && i < PD_MAX_VM_JOBS && !j; i++)
        if (m->jobs[i].state == VM_FREE) j = &m->jobs[i];
    if (!j || pl_name_normalize(name, norm) != PL_NAME_OK || pl_vm_rec_new(&j->rec, 0) != PL_VM_OK) {
        pl_audio_source_close(src);
        const char *why = !m ? "voicemail needs a node's daemon" : "too many voicemails being left at once";
        if (reply_fd >= 0) pd_control_reply(d, reply_fd, pd_error_reply("busy", why));
        if (call) pd_phone_voicemail_done(d, call, pd_error_reply("busy", why));
        return 0;
    }
    if (++m->next_job == 0) m->next_job = 1;
    j->job = m->next_job;
    j->state = VM_RECORDING;
    j->fd = reply_fd;
    j->src = src;
    j->refuse_long = refuse_long;
    j->call = call;
    j->started = pl_loop_now(d->loop);
    j->paced = call && !src->device; /* a device keeps its own pace */
    j->next_frame = j->started;
    snprintf(j->to, sizeof j->to, "%s", norm);
    /* The callee's certificate: from its record (fresh, and it checks the
     * name), else from an earlier conversation. */
    pd_req *r = pd_req_new(d, PD_REQ_VM_LEAVE, -1, norm);
    if (r) r->job = j->job;
    if (!r || !pd_req_lookup(d, r)) {
        if (r) pd_req_free(r);
        pd_peer *p = pd_peer_of(d, norm, false);
        if (!p || !p->have_cert) {
            job_fail(d, j, "busy", "the directory cannot take another look-up now");
            return 0;
        }
        j->cert = p->cert;
        j->have_cert = true;
    }
    pd_messages_arm(d);
    return j->job;
}

uint32_t pd_voicemail_leave(parleyd *d, const char *name, pl_audio_source *src, bool refuse_long, int reply_fd)
{
    return leave(d, name, src, refuse_long, reply_fd, 0);
}

uint32_t pd_voicemail_leave_call(parleyd *d, const char *name, pl_audio_source *src, uint32_t call)
{
    return leave(d, name, src, false, -1, call);
}

void pd_voicemail_stop(parleyd *d, uint32_t job)
{
    pd_vm_job *j = d->msg ? job_of(d, job) : NULL;
    if (!j || j->state != VM_RECORDING || j->recorded) return;
    j->recorded = true;
    pl_audio_source_close(j->src);
    j->src = NULL;
    if (j->have_cert) seal_and_deposit(d, j);
    pd_messages_arm(d);
}

void pd_vm_on_lookup(parleyd *d, pd_req *r, const pl_dirc_event *ev)
{
    pd_vm_job *j = job_of(d, r->job);
    char to[PL_NAME_MAX + 1];
    snprintf(to, sizeof to, "%s", r->peer);
    pd_req_free(r);
    if (!j) return;
    pd_peer *p = pd_peer_of(d, to, false);
    if (ev->status == PL_DIR_OK && ev->record) {
        j->cert = ev->record->cert;
    } else if (ev->status != PL_DIR_REFUSED && p && p->have_cert) {
        j->cert = p->cert;
    } else {
        char msg[96];
        if (ev->status == PL_DIR_NOT_FOUND) snprintf(msg, sizeof msg, "no user '%s' in the directory", to);
        else snprintf(msg, sizeof msg, "cannot find %s's certificate (the directory did not answer)", to);
        job_fail(d, j, ev->status == PL_DIR_NOT_FOUND ? "not_found" : "unreachable", msg);
        return;
    }
    j->have_cert = true;
    if (j->state == VM_RECORDING && j->recorded) seal_and_deposit(d, j);
}

/* ---- players on a sound device --------------------------------------------------------------------- */

static void player_free(pd_player *p)
{
    pl_vm_player_free(&p->p);
    pl_audio_sink_close(p->sink);
    free(p->body);
    memset(p, 0, sizeof *p);
}

void pd_vm_tick(parleyd *d, pl_time now)
{
    pd_messages *m = d->msg;
    for (size_t i = 0; i < PD_MAX_VM_JOBS; i++)
        if (m->jobs[i].state == VM_RECORDING && !m->jobs[i].recorded) record_some(d, &m->jobs[i], now);
    /* A device plays at its own pace: a frame every 20 ms, a few ahead. */
    for (size_t i = 0; i < PD_MAX_PLAYERS; i++) {
        pd_player *p = &m->players[i];
        if (!p->used || now < p->next) continue;
        int16_t frame[PL_AUDIO_FRAME];
        bool more = true;
        while (more && p->next <= now + 60 * PL_MSEC) {
            more = pl_vm_player_next(&p->p, frame);
            if (more) pl_audio_write(p->sink, frame);
            p->next += PL_VM_FRAME_MS * PL_MSEC;
        }
        if (!more) player_free(p);
    }
}

pl_time pd_vm_next(parleyd *d)
{
    pd_messages *m = d->msg;
    pl_time t = PL_TIME_NEVER, now = pl_loop_now(d->loop);
    for (size_t i = 0; i < PD_MAX_VM_JOBS; i++) {
        const pd_vm_job *j = &m->jobs[i];
        if (j->state != VM_RECORDING || j->recorded || !j->src) continue;
        pl_time x = j->paced ? j->next_frame : j->src->device ? now + 10 * PL_MSEC : now;
        if (x < t) t = x;
    }
    for (size_t i = 0; i < PD_MAX_PLAYERS; i++)
        if (m->players[i].used && m->players[i].next < t) t = m->players[i].next;
    return t;
}

/* ---- from the mail client ---------------------------------------------------------------------------- */

static void reply_deletes(parleyd *d, const uint8_t id[PL_ENV_ID_SIZE], cJSON *reply)
{
    pd_messages *m = d->msg;
    for (size_t i = 0; i < PD_MAX_REQS; i++) {
        pd_req *r = &m->reqs[i];
        if (r->kind != PD_REQ_VM_DELETE || memcmp(r->id, id, PL_ENV_ID_SIZE) != 0) continue;
        if (r->fd >= 0) pd_control_reply(d, r->fd, cJSON_Duplicate(reply, true));
        pd_req_free(r);
    }
    cJSON_Delete(reply);
}

bool pd_vm_mail_event(parleyd *d, const pl_mboxc_event *ev)
{
    pd_messages *m = d->msg;
    char hex[2 * PL_ENV_ID_SIZE + 1];
    pd_id_hex(ev->id, hex);
    if (ev->type == PL_MBOXC_EV_DEPOSITED) {
        pd_vm_job *j = NULL;
        for (size_t i = 0; i < PD_MAX_VM_JOBS && !j; i++)
            if (m->jobs[i].state == VM_DEPOSITING && memcmp(m->jobs[i].id, ev->id, PL_ENV_ID_SIZE) == 0)
                j = &m->jobs[i];
        if (!j) return false;
        if (ev->status == PL_MBOX_OK || ev->status == PL_MBOX_DELETED) {
            pd_log(d, "voicemail for %s stored on %u of %u replicas", j->to, ev->stored, ev->total);
            cJSON *r = pd_ok_reply();
            cJSON_AddStringToObject(r, "id", hex);
            cJSON_AddStringToObject(r, "to", j->to);
            cJSON_AddNumberToObject(r, "duration_s", j->frames * PL_VM_FRAME_MS / 1000.0);
            cJSON_AddNumberToObject(r, "bytes", (double)j->bytes);
            cJSON_AddNumberToObject(r, "replicas", ev->stored);
            cJSON_AddNumberToObject(r, "of", ev->total);
            job_answer(d, j, r);
            job_free(j);
        } else {
            char msg[128];
            if (ev->status == PL_MBOX_QUOTA) snprintf(msg, sizeof msg, "%s's mailbox is full", j->to);
            else snprintf(msg, sizeof msg, "the store did not take it (status %u)", ev->status);
            job_fail(d, j, ev->status == PL_MBOX_QUOTA ? "quota" : "unreachable", msg);
        }
        return true;
    }
    if (ev->type != PL_MBOXC_EV_DELETED) return false;
    pl_vmail v;
    if (pl_msgstore_vm_get(m->store, ev->id, &v, NULL) != PL_MSGSTORE_OK || v.state == PL_VMAIL_KEPT) return false;
    cJSON *r = pd_ok_reply();
    cJSON_AddStringToObject(r, "id", hex);
    if (ev->status == PL_MBOX_OK) {
        pl_msgstore_vm_set_state(m->store, ev->id, PL_VMAIL_GONE);
        pd_log(d, "voicemail %.8s deleted from the store (%u of %u replicas keep the delete)", hex, ev->stored,
               ev->total);
        cJSON_AddNumberToObject(r, "replicas", ev->stored);
        cJSON_AddNumberToObject(r, "of", ev->total);
    } else {
        pd_log(d, "voicemail %.8s: the store did not confirm the delete (status %u); sent again at the next start",
               hex, ev->status);
        cJSON_AddBoolToObject(r, "pending", true);
    }
    reply_deletes(d, ev->id, r);
    return true;
}

void pd_vm_received(parleyd *d, const pl_mboxc_event *ev)
{
    pd_messages *m = d->msg;
    pl_mboxc *mc = pd_mailclient(d);
    const pl_env_opened *o = ev->opened;
    char hex[2 * PL_ENV_ID_SIZE + 1];
    pd_id_hex(o->id, hex);
    pl_vm_info info;
    if (pl_vm_parse(ev->body, ev->body_len, &info) != PL_VM_OK) {
        pd_log(d, "voicemail from %s does not play (malformed); deleted", o->sender.name);
        if (mc) pl_mboxc_ack(mc, o->id, ev->now);
        return;
    }
    pl_vmail v = {.sent_at = o->sent_at, .received_at = ev->now, .duration_ms = info.duration_ms};
    memcpy(v.id, o->id, PL_ENV_ID_SIZE);
    snprintf(v.peer, sizeof v.peer, "%s", o->sender.name);
    pl_msgstore_err e = pl_msgstore_vm_add(m->store, &v, ev->body, ev->body_len);
    if (e == PL_MSGSTORE_OK) {
        char when[32];
        time_t t = (time_t)(o->sent_at / PL_SEC);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
        pd_log(d, "voicemail from %s (%.1f s, left %s) waiting: parley voicemail play %.8s", v.peer,
               info.duration_ms / 1000.0, when, hex);
        cJSON *o2 = cJSON_CreateObject();
        cJSON_AddStringToObject(o2, "event", "voicemail");
        cJSON_AddStringToObject(o2, "peer", v.peer);
        cJSON_AddStringToObject(o2, "id", hex);
        cJSON_AddNumberToObject(o2, "duration_s", info.duration_ms / 1000.0);
        cJSON_AddNumberToObject(o2, "sent_at", (double)o->sent_at / PL_SEC);
        pd_follow_push(d, v.peer, o2);
        return;
    }
    if (e == PL_MSGSTORE_ERR_EXISTS) {
        pl_vmail old;
        /* Deleted here already: the store is told again. Kept: it stays. */
        if (pl_msgstore_vm_get(m->store, o->id, &old, NULL) == PL_MSGSTORE_OK && old.state != PL_VMAIL_KEPT && mc)
            pl_mboxc_ack(mc, o->id, ev->now);
        else if (mc)
            pl_mboxc_keep(mc, o->id);
        return;
    }
    pd_log(d, "messages.db: cannot keep a voicemail: %s", pl_msgstore_last_error(m->store));
}

void pd_vm_req_expired(parleyd *d, pd_req *r)
{
    if (r->kind == PD_REQ_VM_DELETE) {
        char hex[2 * PL_ENV_ID_SIZE + 1];
        pd_id_hex(r->id, hex);
        cJSON *reply = pd_ok_reply();
        cJSON_AddStringToObject(reply, "id", hex);
        cJSON_AddBoolToObject(reply, "pending", true);
        if (r->fd >= 0) pd_control_reply(d, r->fd, reply);
        else cJSON_Delete(reply);
    }
    pd_req_free(r);
}

/* ---- commands ------------------------------------------------------------------------------------------ */

static const char *req_string(const cJSON *req, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool list_one(void *ctx, const pl_vmail *v)
{
    char hex[2 * PL_ENV_ID_SIZE + 1];
    pd_id_hex(v->id, hex);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", hex);
    cJSON_AddStringToObject(o, "from", v->peer);
    cJSON_AddNumberToObject(o, "sent_at", (double)v->sent_at / PL_SEC);
    cJSON_AddNumberToObject(o, "received_at", (double)v->received_at / PL_SEC);
    cJSON_AddNumberToObject(o, "duration_s", v->duration_ms / 1000.0);
    cJSON_AddNumberToObject(o, "bytes", v->body_len);
    cJSON_AddBoolToObject(o, "heard", v->heard);
    cJSON_AddItemToArray(ctx, o);
    return true;
}

static cJSON *find(parleyd *d, const cJSON *req, uint8_t id[PL_ENV_ID_SIZE])
{
    const char *hex = req_string(req, "id");
    if (!hex) return pd_error_reply("bad_request", "this voicemail command needs an \"id\"");
    pl_msgstore_err e = pl_msgstore_vm_find(d->msg->store, hex, id);
    char msg[128];
    switch (e) {
    case PL_MSGSTORE_OK: return NULL;
    case PL_MSGSTORE_ERR_ARG:
        return pd_error_reply("bad_request", "a voicemail id is hex digits (at least 4, from 'parley voicemail list')");
    case PL_MSGSTORE_ERR_AMBIGUOUS:
        snprintf(msg, sizeof msg, "'%.32s' names more than one voicemail; give more digits", hex);
        return pd_error_reply("bad_request", msg);
    case PL_MSGSTORE_ERR_NOT_FOUND:
        snprintf(msg, sizeof msg, "no voicemail '%.32s'", hex);
        return pd_error_reply("no_voicemail", msg);
    default: return pd_error_reply("db", pl_msgstore_last_error(d->msg->store));
    }
}

/* How long a WAV file plays, from its header; < 0 when unknown. */
static double wav_seconds(const char *path)
{
    static uint8_t buf[PL_WAV_HEADER_MAX];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    pl_wav_info w;
    if (n <= 0 || pl_wav_parse(buf, (size_t)n, &w) != PL_AUDIO_OK || w.data_len == PL_WAV_DATA_TO_EOF ||
        !w.block_align || !w.rate)
        return -1;
    return (double)(w.data_len / w.block_align) / w.rate;
}

static cJSON *cmd_leave(parleyd *d, int fd, const cJSON *req)
{
    const char *name = req_string(req, "name"), *from = req_string(req, "from");
    char norm[PL_NAME_MAX + 1], msg[PL_HOME_PATH_MAX + 128];
    if (!name || !from) return pd_error_reply("bad_request", "voicemail leave needs a \"name\" and \"from\" (a WAV file)");
    if (pl_name_normalize(name, norm) != PL_NAME_OK) {
        snprintf(msg, sizeof msg, "'%.40s' is not a valid user name", name);
        return pd_error_reply("bad_name", msg);
    }
    if (strcmp(norm, d->cert.name) == 0) return pd_error_reply("bad_request", "that is you");
    double s = wav_seconds(from);
    /* A partial last frame is padded: three minutes and a few samples fit. */
    if (s > PL_VM_MAX_SECONDS + PL_VM_FRAME_MS / 1000.0) {
        snprintf(msg, sizeof msg, "%s is %.1f s long; a voicemail holds at most %d minutes", from, s,
                 PL_VM_MAX_SECONDS / 60);
        return pd_error_reply("too_long", msg);
    }
    pl_audio_source *src;
    pl_audio_err ae = pl_audio_wav_source_open(&src, from);
    if (ae) {
        snprintf(msg, sizeof msg, "%s: %s%s%s", from, pl_audio_strerror(ae), ae == PL_AUDIO_ERR_OPEN ? ": " : "",
                 ae == PL_AUDIO_ERR_OPEN ? strerror(errno) : "");
        return pd_error_reply("local", msg);
    }
    pd_voicemail_leave(d, norm, src, true, fd);
    return NULL; /* answered once stored (or refused) */
}

static cJSON *cmd_play(parleyd *d, const cJSON *req)
{
    pd_messages *m = d->msg;
    uint8_t id[PL_ENV_ID_SIZE];
    cJSON *err = find(d, req, id);
    if (err) return err;
    const char *to = req_string(req, "to");
    if (!to) return pd_error_reply("bad_request", "voicemail play needs \"to\": a WAV file, or device[:NAME]");
    pl_vmail v;
    uint8_t *body;
    if (pl_msgstore_vm_get(m->store, id, &v, &body) != PL_MSGSTORE_OK || !body)
        return pd_error_reply("db", "the voicemail's audio is gone");
    pd_player *p = NULL;
    for (size_t i = 0; i < PD_MAX_PLAYERS && !p; i++)
        if (!m->players[i].used) p = &m->players[i];
    bool device = strcmp(to, "device") == 0 || strncmp(to, "device:", 7) == 0;
    if (device && !p) {
        free(body);
        return pd_error_reply("busy", "too many voicemails playing");
    }
    pl_vm_player player;
    if (pl_vm_player_init(&player, body, v.body_len) != PL_VM_OK) {
        free(body);
        return pd_error_reply("codec", "the voicemail does not decode");
    }
    pl_audio_sink *sink;
    pl_audio_err ae = device ? pl_audio_device_sink_open(&sink, to[6] == ':' ? to + 7 : NULL)
                             : pl_audio_wav_sink_open(&sink, to);
    if (ae) {
        pl_vm_player_free(&player);
        free(body);
        char msg[PL_HOME_PATH_MAX + 96];
        snprintf(msg, sizeof msg, "%s: %s", to, pl_audio_strerror(ae));
        return pd_error_reply(ae == PL_AUDIO_ERR_NO_DEVICE ? "no_device" : "local", msg);
    }
    cJSON *r = pd_ok_reply();
    char hex[2 * PL_ENV_ID_SIZE + 1];
    pd_id_hex(id, hex);
    cJSON_AddStringToObject(r, "id", hex);
    cJSON_AddStringToObject(r, "from", v.peer);
    cJSON_AddNumberToObject(r, "duration_s", v.duration_ms / 1000.0);
    cJSON_AddStringToObject(r, "to", to);
    pl_msgstore_vm_heard(m->store, id);
    if (device) {
        /* Played in real time from the event loop. */
        p->used = true;
        p->sink = sink;
        p->body = body;
        p->p = player;
        p->p.body = body;
        p->next = pl_loop_now(d->loop);
        cJSON_AddBoolToObject(r, "playing", true);
        pd_messages_arm(d);
        return r;
    }
    /* A file: decoded at once (three minutes take a fraction of a second). */
    int16_t frame[PL_AUDIO_FRAME];
    pl_audio_err we = PL_AUDIO_OK;
    while (!we && pl_vm_player_next(&player, frame)) we = pl_audio_write(sink, frame);
    pl_audio_sink_close(sink);
    pl_vm_player_free(&player);
    free(body);
    if (we) {
        cJSON_Delete(r);
        return pd_error_reply("local", pl_audio_strerror(we));
    }
    return r;
}

static cJSON *cmd_delete(parleyd *d, int fd, const cJSON *req)
{
    pd_messages *m = d->msg;
    uint8_t id[PL_ENV_ID_SIZE];
    cJSON *err = find(d, req, id);
    if (err) return err;
    if (pl_msgstore_vm_set_state(m->store, id, PL_VMAIL_DELETING) != PL_MSGSTORE_OK)
        return pd_error_reply("db", pl_msgstore_last_error(m->store));
    char hex[2 * PL_ENV_ID_SIZE + 1];
    pd_id_hex(id, hex);
    pd_log(d, "voicemail %.8s deleted here; telling the store", hex);
    pl_mboxc *mc = pd_mailclient(d);
    if (mc) pl_mboxc_ack(mc, id, pl_loop_now(d->loop));
    pd_req *r = attached(d) ? pd_req_new(d, PD_REQ_VM_DELETE, fd, NULL) : NULL;
    if (!r) {
        cJSON *reply = pd_ok_reply();
        cJSON_AddStringToObject(reply, "id", hex);
        cJSON_AddBoolToObject(reply, "pending", true);
        return reply;
    }
    memcpy(r->id, id, PL_ENV_ID_SIZE);
    r->deadline = pl_loop_now(d->loop) + PD_DELETE_WAIT;
    pd_messages_arm(d);
    return NULL; /* answered when the store is, or after PD_DELETE_WAIT */
}

cJSON *pd_cmd_voicemail(parleyd *d, int fd, const cJSON *req)
{
    pd_messages *m = d->msg;
    if (!m) return pd_error_reply("not_a_node", "voicemail needs a node's daemon");
    const char *op = req_string(req, "op");
    if (!op || strcmp(op, "list") == 0) {
        cJSON *r = pd_ok_reply();
        cJSON *arr = cJSON_AddArrayToObject(r, "voicemail");
        pl_msgstore_vm_each(m->store, PL_VMAIL_KEPT, list_one, arr);
        return r;
    }
    if (strcmp(op, "leave") == 0) return cmd_leave(d, fd, req);
    if (strcmp(op, "play") == 0) return cmd_play(d, req);
    if (strcmp(op, "delete") == 0) return cmd_delete(d, fd, req);
    return pd_error_reply("bad_request", "voicemail op must be leave, list, play or delete");
}

/* ---- opening and closing --------------------------------------------------------------------------------- */

typedef struct open_ctx {
    parleyd *d;
    uint32_t kept, unheard, deleting;
} open_ctx;

static bool keep_one(void *ctx, const pl_vmail *v)
{
    open_ctx *x = ctx;
    pl_mboxc *mc = pd_mailclient(x->d);
    if (mc) pl_mboxc_keep(mc, v->id);
    x->kept++;
    x->unheard += !v->heard;
    return true;
}

static bool delete_again(void *ctx, const pl_vmail *v)
{
    open_ctx *x = ctx;
    pl_mboxc *mc = pd_mailclient(x->d);
    if (mc) pl_mboxc_ack(mc, v->id, pl_loop_now(x->d->loop));
    x->deleting++;
    return true;
}

int pd_vm_open(parleyd *d)
{
    pd_messages *m = d->msg;
    open_ctx x = {d, 0, 0, 0};
    /* What we have is not fetched again; what we deleted is deleted again
     * until the store confirms; ids confirmed gone a month ago are
     * forgotten (the store's copies expired by then). */
    pl_msgstore_vm_each(m->store, PL_VMAIL_KEPT, keep_one, &x);
    pl_msgstore_vm_each(m->store, PL_VMAIL_DELETING, delete_again, &x);
    pl_msgstore_vm_prune(m->store, pl_loop_now(d->loop) - PL_ENV_MAX_AGE);
    if (x.kept)
        pd_log(d, "voicemail: %u waiting (%u new): parley voicemail list", x.kept, x.unheard);
    return 0;
}

void pd_vm_close(parleyd *d)
{
    pd_messages *m = d->msg;
    for (size_t i = 0; i < PD_MAX_VM_JOBS; i++)
        if (m->jobs[i].state != VM_FREE) job_free(&m->jobs[i]);
    for (size_t i = 0; i < PD_MAX_PLAYERS; i++)
        if (m->players[i].used) player_free(&m->players[i]);
}
