/* voicemail.c - a voicemail's body: recording, checking, playing (voicemail.h). */
#include "voicemail.h"

#include <stdlib.h>
#include <string.h>

#include "wire.h"

struct pl_vm_rec {
    pl_voice_enc *enc;
    uint8_t *buf;
    size_t len, cap;
    uint32_t frames;
};

const char *pl_vm_strerror(pl_vm_err err)
{
    switch (err) {
    case PL_VM_OK: return "ok";
    case PL_VM_ERR_MALFORMED: return "not a well-formed voicemail";
    case PL_VM_ERR_TOO_LONG: return "longer than three minutes";
    case PL_VM_ERR_EMPTY: return "no audio";
    case PL_VM_ERR_CODEC: return "the Opus codec failed";
    case PL_VM_ERR_NOMEM: return "out of memory";
    }
    return "unknown voicemail error";
}

pl_vm_err pl_vm_rec_new(pl_vm_rec **out, int bitrate)
{
    *out = NULL;
    pl_vm_rec *r = calloc(1, sizeof *r);
    if (!r) return PL_VM_ERR_NOMEM;
    /* Stored speech is not lost on the way: no FEC. DTX saves the pauses. */
    pl_voice_enc_config cfg = {.bitrate = bitrate ? bitrate : PL_VM_BITRATE, .complexity = -1, .no_fec = true};
    pl_voice_err e = pl_voice_enc_new(&r->enc, &cfg);
    r->cap = 64 * 1024;
    r->buf = malloc(r->cap);
    if (e || !r->buf) {
        pl_vm_rec_free(r);
        return e == PL_VOICE_ERR_NOMEM || !e ? PL_VM_ERR_NOMEM : PL_VM_ERR_CODEC;
    }
    r->len = PL_VM_HEADER; /* written by pl_vm_rec_body */
    *out = r;
    return PL_VM_OK;
}

void pl_vm_rec_free(pl_vm_rec *r)
{
    if (!r) return;
    pl_voice_enc_free(r->enc);
    free(r->buf);
    free(r);
}

pl_vm_err pl_vm_rec_frame(pl_vm_rec *r, const int16_t pcm[PL_VOICE_FRAME])
{
    if (r->frames >= PL_VM_MAX_FRAMES) return PL_VM_ERR_TOO_LONG;
    uint8_t pkt[PL_VOICE_MAX_PACKET];
    size_t n;
    bool dtx;
    if (pl_voice_encode(r->enc, pcm, pkt, &n, &dtx) != PL_VOICE_OK) return PL_VM_ERR_CODEC;
    /* A packet of one or two bytes is the encoder saying "nothing to send"
     * in a pause: stored as silence. */
    if (n <= 2) n = 0;
    if (r->len + 2 + n > PL_VM_MAX_BODY) return PL_VM_ERR_TOO_LONG;
    if (r->len + 2 + n > r->cap) {
        size_t cap = r->cap * 2 < PL_VM_MAX_BODY ? r->cap * 2 : PL_VM_MAX_BODY;
        uint8_t *grown = realloc(r->buf, cap);
        if (!grown) return PL_VM_ERR_NOMEM;
        r->buf = grown;
        r->cap = cap;
    }
    r->buf[r->len] = (uint8_t)(n >> 8);
    r->buf[r->len + 1] = (uint8_t)n;
    memcpy(r->buf + r->len + 2, pkt, n);
    r->len += 2 + n;
    r->frames++;
    return PL_VM_OK;
}

uint32_t pl_vm_rec_frames(const pl_vm_rec *r) { return r->frames; }

pl_vm_err pl_vm_rec_body(pl_vm_rec *r, const uint8_t **body, size_t *len)
{
    if (!r->frames) return PL_VM_ERR_EMPTY;
    pl_writer w = pl_writer_make(r->buf, PL_VM_HEADER);
    pl_write_u8(&w, PL_VM_VERSION);
    pl_write_u8(&w, PL_VM_FRAME_MS);
    pl_write_u32(&w, PL_VM_RATE);
    pl_write_u32(&w, r->frames);
    *body = r->buf;
    *len = r->len;
    return PL_VM_OK;
}

pl_vm_err pl_vm_parse(const uint8_t *body, size_t len, pl_vm_info *info)
{
    memset(info, 0, sizeof *info);
    if (!body || len > PL_VM_MAX_BODY) return PL_VM_ERR_MALFORMED;
    pl_reader r = pl_reader_make(body, len);
    uint8_t version = pl_read_u8(&r), frame_ms = pl_read_u8(&r);
    uint32_t rate = pl_read_u32(&r), frames = pl_read_u32(&r);
    if (r.err || version != PL_VM_VERSION || frame_ms != PL_VM_FRAME_MS || rate != PL_VM_RATE || frames == 0 ||
        frames > PL_VM_MAX_FRAMES)
        return PL_VM_ERR_MALFORMED;
    for (uint32_t i = 0; i < frames; i++) {
        uint16_t n = pl_read_u16(&r);
        if (n > PL_VOICE_MAX_PACKET) return PL_VM_ERR_MALFORMED;
        const uint8_t *pkt = n ? pl_read_ptr(&r, n) : NULL;
        if (r.err) return PL_VM_ERR_MALFORMED;
        if (!n) {
            info->silent_frames++;
            continue;
        }
        if (pl_voice_packet_check(pkt, n) != PL_VOICE_OK) return PL_VM_ERR_MALFORMED;
        info->audio_bytes += n;
    }
    if (!pl_reader_done(&r)) return PL_VM_ERR_MALFORMED;
    info->frames = frames;
    info->duration_ms = frames * PL_VM_FRAME_MS;
    return PL_VM_OK;
}

pl_vm_err pl_vm_player_init(pl_vm_player *p, const uint8_t *body, size_t len)
{
    memset(p, 0, sizeof *p);
    pl_vm_info info;
    pl_vm_err e = pl_vm_parse(body, len, &info);
    if (e) return e;
    pl_voice_err ve = pl_voice_dec_new(&p->dec);
    if (ve) return ve == PL_VOICE_ERR_NOMEM ? PL_VM_ERR_NOMEM : PL_VM_ERR_CODEC;
    p->body = body;
    p->len = len;
    p->off = PL_VM_HEADER;
    p->frames = info.frames;
    return PL_VM_OK;
}

bool pl_vm_player_next(pl_vm_player *p, int16_t pcm[PL_VOICE_FRAME])
{
    if (!p->dec || p->frame >= p->frames) return false;
    /* pl_vm_parse checked every length against the body. */
    size_t n = (size_t)p->body[p->off] << 8 | p->body[p->off + 1];
    const uint8_t *pkt = p->body + p->off + 2;
    p->off += 2 + n;
    p->frame++;
    if (n) pl_voice_decode(p->dec, pkt, n, pcm);
    else pl_voice_conceal(p->dec, pcm);
    return true;
}

void pl_vm_player_free(pl_vm_player *p)
{
    pl_voice_dec_free(p->dec);
    memset(p, 0, sizeof *p);
}
