/*
 * voicemail.h - the body of a voicemail (docs/messages.md, section 1.6):
 * speech as Opus frames of 20 ms at 48 kHz mono, up to three minutes.
 *
 *   version u8 (1) | frame_ms u8 (20) | rate u32 (48000) | frames u32
 *   then per frame: length u16 (0: silence) | an Opus packet of that length
 *
 * The recorder encodes frames as they come (from a WAV file, or the rest of
 * a call) and refuses the frame after PL_VM_MAX_FRAMES; frames the encoder
 * leaves out in silence (DTX) are stored as length 0 and played as comfort
 * noise. The body is sealed in an envelope (content type 2) for the callee;
 * the envelope is what keeps it secret and authentic, this module only
 * keeps it well-formed.
 *
 * A body comes from another user, so the parser checks everything before a
 * frame is decoded: header fields, the frame count, every length, that the
 * lengths cover the body exactly, and that every packet is one 20 ms mono
 * Opus frame. No I/O.
 */
#ifndef PL_VOICEMAIL_H
#define PL_VOICEMAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "voice_codec.h"

#define PL_VM_VERSION 1
#define PL_VM_FRAME_MS 20
#define PL_VM_RATE 48000
#define PL_VM_MAX_SECONDS 180
#define PL_VM_MAX_FRAMES (PL_VM_MAX_SECONDS * 1000 / PL_VM_FRAME_MS) /* 9000 */
#define PL_VM_HEADER 10
/* Speech at 24 kbit/s: three minutes are about 0.55 MB. */
#define PL_VM_BITRATE 24000
/* Whatever the encoder does, a body fits one envelope's largest body. */
#define PL_VM_MAX_BODY (1024u * 1024u)

typedef enum pl_vm_err {
    PL_VM_OK = 0,
    PL_VM_ERR_MALFORMED, /* not a well-formed voicemail body */
    PL_VM_ERR_TOO_LONG,  /* over PL_VM_MAX_FRAMES, or PL_VM_MAX_BODY */
    PL_VM_ERR_EMPTY,     /* no frame recorded */
    PL_VM_ERR_CODEC,     /* the Opus library failed */
    PL_VM_ERR_NOMEM,
} pl_vm_err;

const char *pl_vm_strerror(pl_vm_err err);

/* ---- recording -------------------------------------------------------------------- */

typedef struct pl_vm_rec pl_vm_rec;

/* bitrate 0: PL_VM_BITRATE. */
pl_vm_err pl_vm_rec_new(pl_vm_rec **out, int bitrate);
void pl_vm_rec_free(pl_vm_rec *r);
/* Encodes one 20 ms frame; TOO_LONG (nothing added) once the recording is
 * full. */
pl_vm_err pl_vm_rec_frame(pl_vm_rec *r, const int16_t pcm[PL_VOICE_FRAME]);
uint32_t pl_vm_rec_frames(const pl_vm_rec *r);
/* The finished body, valid until the recorder is freed; EMPTY with no
 * frame. */
pl_vm_err pl_vm_rec_body(pl_vm_rec *r, const uint8_t **body, size_t *len);

/* ---- reading and playing ------------------------------------------------------------- */

typedef struct pl_vm_info {
    uint32_t frames;
    uint32_t duration_ms;
    uint32_t silent_frames; /* stored as length 0 */
    uint32_t audio_bytes;   /* of Opus packets */
} pl_vm_info;

/* Checks a body completely (see above). */
pl_vm_err pl_vm_parse(const uint8_t *body, size_t len, pl_vm_info *info);

typedef struct pl_vm_player {
    const uint8_t *body; /* not copied */
    size_t len, off;
    uint32_t frame, frames;
    pl_voice_dec *dec;
} pl_vm_player;

/* Parses the body (which must outlive the player) and opens a decoder. */
pl_vm_err pl_vm_player_init(pl_vm_player *p, const uint8_t *body, size_t len);
/* The next 20 ms; false after the last frame. */
bool pl_vm_player_next(pl_vm_player *p, int16_t pcm[PL_VOICE_FRAME]);
void pl_vm_player_free(pl_vm_player *p);

#endif
