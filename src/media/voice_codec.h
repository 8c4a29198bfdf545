/*
 * voice_codec.h - the voice codec: Opus at 48 kHz, mono, 20 ms frames.
 *
 * The encoder is set up for conversation (OPUS_APPLICATION_VOIP): in-band
 * forward error correction (each packet also carries a coarse copy of the
 * previous frame, used when the far side reports loss), discontinuous
 * transmission (during silence the encoder stops producing packets except a
 * comfort-noise update every 400 ms, and in near-silence stops encoding
 * altogether), and a bitrate that the media stream
 * changes while the call runs.
 *
 * The decoder turns a packet into one frame, conceals a lost frame (Opus
 * packet-loss concealment, which also continues comfort noise during
 * silence), or rebuilds a lost frame from the forward error correction data
 * inside the packet that follows it.
 *
 * Wraps libopus; no I/O, no clock. One encoder and one decoder per call.
 */
#ifndef PL_VOICE_CODEC_H
#define PL_VOICE_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PL_VOICE_RATE 48000
#define PL_VOICE_FRAME 960 /* samples in 20 ms at 48 kHz */
#define PL_VOICE_FRAME_US 20000
/* The largest Opus packet a voice frame may take (204 kbit/s at 20 ms,
 * five times the highest bitrate the stream asks for). */
#define PL_VOICE_MAX_PACKET 512

#define PL_VOICE_BITRATE_MIN 6000
#define PL_VOICE_BITRATE_MAX 128000

typedef enum pl_voice_err {
    PL_VOICE_OK = 0,
    PL_VOICE_ERR_NOMEM,
    PL_VOICE_ERR_ARG,     /* a setting out of range */
    PL_VOICE_ERR_CODEC,   /* libopus refused (a corrupt packet when decoding) */
    PL_VOICE_ERR_PACKET,  /* not a 20 ms mono Opus packet */
} pl_voice_err;

const char *pl_voice_strerror(pl_voice_err err);

/* How much of the spectrum the encoder may code. Wideband (8 kHz of
 * audio, "HD voice", what Skype's SILK and the PSTN's G.722 and AMR-WB
 * carry) is the default: Opus then codes speech with SILK alone, while
 * above it Opus runs SILK and CELT side by side (hybrid mode). On espeak-ng
 * speech at 32 kbit/s, complexity 5, this machine: hybrid costs 0.28 ms of
 * encoding and 0.08 ms of decoding per frame at a call's pace, wideband
 * 0.23 and 0.05 ms, and wideband also scores better (STOI 0.996 against
 * 0.989, log-spectral distance 3.2 against 4.2 dB), because the bits that
 * hybrid spends above 8 kHz come out of the speech band. Super-wideband
 * (12 kHz) and full band (20 kHz) are for music and for a listener with a
 * good headset, at that cost. The receiver decodes any of them. */
typedef enum pl_voice_band {
    PL_VOICE_BAND_DEFAULT = 0, /* PL_VOICE_BAND_WIDE */
    PL_VOICE_BAND_WIDE,
    PL_VOICE_BAND_SUPERWIDE,
    PL_VOICE_BAND_FULL,
} pl_voice_band;

/* "wide", "superwide", "full"; and back. parse returns false for any other. */
bool pl_voice_band_parse(const char *text, pl_voice_band *out);
const char *pl_voice_band_name(pl_voice_band band);

typedef struct pl_voice_enc_config {
    int bitrate;    /* bit/s; 0: 32000 */
    pl_voice_band band;
    int complexity; /* 0..10; -1: PL_VOICE_DEFAULT_COMPLEXITY */
    int loss_perc;  /* expected packet loss, 0..100: how much FEC to spend */
    bool no_fec;    /* turn in-band FEC off (tests, comparisons) */
    bool no_dtx;    /* turn DTX off */
} pl_voice_enc_config;

/* Complexity 5. Each step above it costs encoder time at every frame of a
 * call (on espeak-ng speech at 32 kbit/s, this machine: 0.20 ms a frame at
 * 5, 0.25 at 6, 0.27 at 7, 0.40 at 8) and the speech barely changes (STOI
 * 0.989 at 5, 0.993 at 7). What 7 bought was Opus's signal analysis, which
 * DTX used to tell a steady tone from silence; below 7 DTX judges by SILK's
 * voice detector alone, which took a held tone for silence and faint noise
 * for sound. The silence gate (voice_codec.c) now makes both calls by
 * level instead, so 7 is no longer needed. */
#define PL_VOICE_DEFAULT_COMPLEXITY 5

/* The silence gate, by the frame's RMS level in dB below full scale. Below
 * FAINT a frame is silence whatever Opus thinks; after GATE_HANGOVER such
 * frames in a row the encoder is not run at all until sound returns (a call
 * end spends most of a conversation listening). Above LOUD a frame is
 * sound: Opus's DTX is off for it, so a held tone or music on hold keeps
 * going out. Between the two, Opus's voice detector decides. */
#define PL_VOICE_GATE_FAINT_DBFS (-50)
#define PL_VOICE_GATE_LOUD_DBFS (-40)
#define PL_VOICE_GATE_HANGOVER 10 /* frames: 200 ms, as Opus's own DTX waits */

typedef struct pl_voice_enc pl_voice_enc;

pl_voice_err pl_voice_enc_new(pl_voice_enc **out, const pl_voice_enc_config *config);
void pl_voice_enc_free(pl_voice_enc *enc);

/* Encodes one 20 ms frame into out (PL_VOICE_MAX_PACKET bytes). *len gets
 * the packet size. *dtx is set when the encoder is in discontinuous
 * transmission: either the frame need not be sent at all (*len <= 2, a bare
 * table-of-contents byte), or it is a comfort-noise update during silence.
 * Speech gives *dtx false. */
pl_voice_err pl_voice_encode(pl_voice_enc *enc, const int16_t pcm[PL_VOICE_FRAME], uint8_t *out, size_t *len,
                             bool *dtx);

pl_voice_err pl_voice_enc_set_bitrate(pl_voice_enc *enc, int bitrate);
int pl_voice_enc_bitrate(const pl_voice_enc *enc);
pl_voice_err pl_voice_enc_set_loss(pl_voice_enc *enc, int loss_perc);
int pl_voice_enc_loss(const pl_voice_enc *enc);
pl_voice_err pl_voice_enc_set_complexity(pl_voice_enc *enc, int complexity);
/* Samples of delay the encoder adds (its lookahead): 312 in VOIP mode. */
int pl_voice_enc_lookahead(const pl_voice_enc *enc);
/* Frames the silence gate answered without running Opus, since creation. */
uint64_t pl_voice_enc_frames_skipped(const pl_voice_enc *enc);

typedef struct pl_voice_dec pl_voice_dec;

pl_voice_err pl_voice_dec_new(pl_voice_dec **out);
void pl_voice_dec_free(pl_voice_dec *dec);

/* Decodes a packet into one frame. A packet of one or two bytes (a DTX
 * frame) yields comfort noise. On PL_VOICE_ERR_CODEC the frame is concealed
 * instead, so pcm always holds 20 ms of audio. */
pl_voice_err pl_voice_decode(pl_voice_dec *dec, const uint8_t *packet, size_t len, int16_t pcm[PL_VOICE_FRAME]);
/* Conceals one lost frame (or continues comfort noise in silence). Once
 * concealment has faded to digital silence for a few frames it stays
 * silent without running Opus, until the next packet is decoded. */
void pl_voice_conceal(pl_voice_dec *dec, int16_t pcm[PL_VOICE_FRAME]);
/* Rebuilds the lost frame just before `next` from next's FEC data. When next
 * carries none, Opus conceals instead; *had_fec tells which happened. */
void pl_voice_decode_fec(pl_voice_dec *dec, const uint8_t *next, size_t len, int16_t pcm[PL_VOICE_FRAME],
                         bool *had_fec);

/* Checks that a packet is well-formed Opus and holds exactly one 20 ms of
 * audio, whatever its mode: what the media stream accepts. */
pl_voice_err pl_voice_packet_check(const uint8_t *packet, size_t len);
/* Whether the packet carries in-band FEC for the frame before it. */
bool pl_voice_packet_has_fec(const uint8_t *packet, size_t len);

#endif
