/* voice_codec.c - Opus voice encoder and decoder; see voice_codec.h. */
#include "voice_codec.h"

#include <math.h>
#include <opus/opus.h>
#include <stdlib.h>
#include <string.h>

struct pl_voice_enc {
    OpusEncoder *opus;
    int bitrate;
    int loss_perc;
    int lookahead;
    /* The silence gate (voice_codec.h): frame energies (sums of squared
     * samples) at its two levels, the faint frames in a row so far, whether
     * Opus's own DTX is on now, and the last packet's table-of-contents
     * byte, which a skipped frame's one-byte packet repeats. */
    bool gate;
    int64_t faint_energy, loud_energy;
    int faint_run;
    bool opus_dtx;
    uint8_t last_toc;
    uint64_t skipped;
};

/* Concealed frames of digital silence in a row after which concealment
 * stops running Opus. */
#define QUIET_CONCEALS 5
/* Digital silence, give or take Opus's rounding: -84 dBFS. */
#define QUIET_SAMPLE 2

struct pl_voice_dec {
    OpusDecoder *opus;
    int quiet_run;
};

static int64_t gate_energy(double dbfs)
{
    double amplitude = 32768.0 * pow(10.0, dbfs / 20.0);
    return (int64_t)(amplitude * amplitude * PL_VOICE_FRAME);
}

static int64_t frame_energy(const int16_t pcm[PL_VOICE_FRAME])
{
    int64_t e = 0;
    for (int i = 0; i < PL_VOICE_FRAME; i++) e += (int32_t)pcm[i] * pcm[i];
    return e;
}

const char *pl_voice_strerror(pl_voice_err err)
{
    switch (err) {
    case PL_VOICE_OK: return "ok";
    case PL_VOICE_ERR_NOMEM: return "out of memory";
    case PL_VOICE_ERR_ARG: return "a codec setting is out of range";
    case PL_VOICE_ERR_CODEC: return "the Opus library refused the frame";
    case PL_VOICE_ERR_PACKET: return "not a 20 ms mono Opus packet";
    }
    return "unknown voice codec error";
}

/* Each band: its name, Opus's bandwidth, and the table-of-contents
 * configuration of one 20 ms frame of it (RFC 6716 table 2: 9 is SILK
 * wideband, 13 and 15 hybrid super-wideband and full band), which stands
 * for the band until the first packet. */
static const struct {
    const char *name;
    int opus;
    uint8_t toc_config;
} BANDS[] = {
    [PL_VOICE_BAND_DEFAULT] = {"wide", OPUS_BANDWIDTH_WIDEBAND, 9},
    [PL_VOICE_BAND_WIDE] = {"wide", OPUS_BANDWIDTH_WIDEBAND, 9},
    [PL_VOICE_BAND_SUPERWIDE] = {"superwide", OPUS_BANDWIDTH_SUPERWIDEBAND, 13},
    [PL_VOICE_BAND_FULL] = {"full", OPUS_BANDWIDTH_FULLBAND, 15},
};
#define N_BANDS (sizeof BANDS / sizeof BANDS[0])

bool pl_voice_band_parse(const char *text, pl_voice_band *out)
{
    for (size_t i = PL_VOICE_BAND_WIDE; text && i < N_BANDS; i++)
        if (strcmp(text, BANDS[i].name) == 0) {
            *out = (pl_voice_band)i;
            return true;
        }
    return false;
}

const char *pl_voice_band_name(pl_voice_band band)
{
    return (size_t)band < N_BANDS ? BANDS[band].name : "unknown";
}

pl_voice_err pl_voice_enc_new(pl_voice_enc **out, const pl_voice_enc_config *config)
{
    *out = NULL;
    int bitrate = config && config->bitrate ? config->bitrate : 32000;
    int complexity = config && config->complexity >= 0 ? config->complexity : PL_VOICE_DEFAULT_COMPLEXITY;
    if (!config) complexity = PL_VOICE_DEFAULT_COMPLEXITY;
    int loss = config ? config->loss_perc : 0;
    size_t band = config ? (size_t)config->band : PL_VOICE_BAND_DEFAULT;
    if (bitrate < PL_VOICE_BITRATE_MIN || bitrate > PL_VOICE_BITRATE_MAX || complexity > 10 || loss < 0 ||
        loss > 100 || band >= N_BANDS)
        return PL_VOICE_ERR_ARG;
    pl_voice_enc *enc = calloc(1, sizeof *enc);
    if (!enc) return PL_VOICE_ERR_NOMEM;
    int err = 0;
    enc->opus = opus_encoder_create(PL_VOICE_RATE, 1, OPUS_APPLICATION_VOIP, &err);
    if (!enc->opus || err != OPUS_OK) {
        free(enc);
        return err == OPUS_ALLOC_FAIL ? PL_VOICE_ERR_NOMEM : PL_VOICE_ERR_CODEC;
    }
    bool fec = !(config && config->no_fec);
    bool dtx = !(config && config->no_dtx);
    if (opus_encoder_ctl(enc->opus, OPUS_SET_BITRATE(bitrate)) != OPUS_OK ||
        opus_encoder_ctl(enc->opus, OPUS_SET_COMPLEXITY(complexity)) != OPUS_OK ||
        opus_encoder_ctl(enc->opus, OPUS_SET_SIGNAL(OPUS_SIGNAL_VOICE)) != OPUS_OK ||
        opus_encoder_ctl(enc->opus, OPUS_SET_MAX_BANDWIDTH(BANDS[band].opus)) != OPUS_OK ||
        opus_encoder_ctl(enc->opus, OPUS_SET_INBAND_FEC(fec ? 1 : 0)) != OPUS_OK ||
        opus_encoder_ctl(enc->opus, OPUS_SET_PACKET_LOSS_PERC(loss)) != OPUS_OK ||
        opus_encoder_ctl(enc->opus, OPUS_SET_DTX(dtx ? 1 : 0)) != OPUS_OK ||
        opus_encoder_ctl(enc->opus, OPUS_GET_LOOKAHEAD(&enc->lookahead)) != OPUS_OK) {
        pl_voice_enc_free(enc);
        return PL_VOICE_ERR_CODEC;
    }
    enc->bitrate = bitrate;
    enc->loss_perc = loss;
    enc->gate = dtx;
    enc->opus_dtx = dtx;
    enc->faint_energy = gate_energy(PL_VOICE_GATE_FAINT_DBFS);
    enc->loud_energy = gate_energy(PL_VOICE_GATE_LOUD_DBFS);
    enc->last_toc = (uint8_t)(BANDS[band].toc_config << 3);
    *out = enc;
    return PL_VOICE_OK;
}

void pl_voice_enc_free(pl_voice_enc *enc)
{
    if (!enc) return;
    if (enc->opus) opus_encoder_destroy(enc->opus);
    free(enc);
}

pl_voice_err pl_voice_encode(pl_voice_enc *enc, const int16_t pcm[PL_VOICE_FRAME], uint8_t *out, size_t *len,
                             bool *dtx)
{
    *len = 0;
    *dtx = false;
    if (enc->gate) {
        int64_t e = frame_energy(pcm);
        enc->faint_run = e < enc->faint_energy ? enc->faint_run + 1 : 0;
        if (enc->faint_run > PL_VOICE_GATE_HANGOVER) {
            /* Near-silence for a while: nothing to encode. A bare
             * table-of-contents byte (code 0, no frame data) is what Opus
             * itself sends in DTX; the decoder conceals it as silence. When
             * sound returns the encoder carries on from the frame before
             * the silence, which was faint too, so nothing audible joins. */
            out[0] = enc->last_toc & 0xfc;
            *len = 1;
            *dtx = true;
            enc->skipped++;
            return PL_VOICE_OK;
        }
        bool want_dtx = e < enc->loud_energy;
        if (want_dtx != enc->opus_dtx) {
            if (opus_encoder_ctl(enc->opus, OPUS_SET_DTX(want_dtx ? 1 : 0)) != OPUS_OK) return PL_VOICE_ERR_CODEC;
            enc->opus_dtx = want_dtx;
        }
    }
    opus_int32 n = opus_encode(enc->opus, pcm, PL_VOICE_FRAME, out, PL_VOICE_MAX_PACKET);
    if (n < 0) return PL_VOICE_ERR_CODEC;
    if (n >= 1) enc->last_toc = out[0];
    opus_int32 in_dtx = 0;
    if (opus_encoder_ctl(enc->opus, OPUS_GET_IN_DTX(&in_dtx)) != OPUS_OK) in_dtx = 0;
    *len = (size_t)n;
    /* A frame of one or two bytes carries no audio: the encoder is in DTX
     * whatever the flag says. */
    *dtx = in_dtx != 0 || n <= 2;
    return PL_VOICE_OK;
}

pl_voice_err pl_voice_enc_set_bitrate(pl_voice_enc *enc, int bitrate)
{
    if (bitrate < PL_VOICE_BITRATE_MIN || bitrate > PL_VOICE_BITRATE_MAX) return PL_VOICE_ERR_ARG;
    if (bitrate == enc->bitrate) return PL_VOICE_OK;
    if (opus_encoder_ctl(enc->opus, OPUS_SET_BITRATE(bitrate)) != OPUS_OK) return PL_VOICE_ERR_CODEC;
    enc->bitrate = bitrate;
    return PL_VOICE_OK;
}

int pl_voice_enc_bitrate(const pl_voice_enc *enc) { return enc->bitrate; }

pl_voice_err pl_voice_enc_set_loss(pl_voice_enc *enc, int loss_perc)
{
    if (loss_perc < 0 || loss_perc > 100) return PL_VOICE_ERR_ARG;
    if (loss_perc == enc->loss_perc) return PL_VOICE_OK;
    if (opus_encoder_ctl(enc->opus, OPUS_SET_PACKET_LOSS_PERC(loss_perc)) != OPUS_OK) return PL_VOICE_ERR_CODEC;
    enc->loss_perc = loss_perc;
    return PL_VOICE_OK;
}

int pl_voice_enc_loss(const pl_voice_enc *enc) { return enc->loss_perc; }

pl_voice_err pl_voice_enc_set_complexity(pl_voice_enc *enc, int complexity)
{
    if (complexity < 0 || complexity > 10) return PL_VOICE_ERR_ARG;
    return opus_encoder_ctl(enc->opus, OPUS_SET_COMPLEXITY(complexity)) == OPUS_OK ? PL_VOICE_OK
                                                                                   : PL_VOICE_ERR_CODEC;
}

int pl_voice_enc_lookahead(const pl_voice_enc *enc) { return enc->lookahead; }

uint64_t pl_voice_enc_frames_skipped(const pl_voice_enc *enc) { return enc->skipped; }

pl_voice_err pl_voice_dec_new(pl_voice_dec **out)
{
    *out = NULL;
    pl_voice_dec *dec = calloc(1, sizeof *dec);
    if (!dec) return PL_VOICE_ERR_NOMEM;
    int err = 0;
    dec->opus = opus_decoder_create(PL_VOICE_RATE, 1, &err);
    if (!dec->opus || err != OPUS_OK) {
        free(dec);
        return err == OPUS_ALLOC_FAIL ? PL_VOICE_ERR_NOMEM : PL_VOICE_ERR_CODEC;
    }
    *out = dec;
    return PL_VOICE_OK;
}

void pl_voice_dec_free(pl_voice_dec *dec)
{
    if (!dec) return;
    if (dec->opus) opus_decoder_destroy(dec->opus);
    free(dec);
}

void pl_voice_conceal(pl_voice_dec *dec, int16_t pcm[PL_VOICE_FRAME])
{
    /* Concealment that has faded to digital silence stays there: Opus would
     * spend a decoder's time each frame to say so again. */
    if (dec->quiet_run >= QUIET_CONCEALS) {
        memset(pcm, 0, sizeof(int16_t) * PL_VOICE_FRAME);
        return;
    }
    if (opus_decode(dec->opus, NULL, 0, pcm, PL_VOICE_FRAME, 0) != PL_VOICE_FRAME)
        memset(pcm, 0, sizeof(int16_t) * PL_VOICE_FRAME);
    bool silent = true;
    for (int i = 0; i < PL_VOICE_FRAME && silent; i++) silent = pcm[i] >= -QUIET_SAMPLE && pcm[i] <= QUIET_SAMPLE;
    dec->quiet_run = silent ? dec->quiet_run + 1 : 0;
}

pl_voice_err pl_voice_decode(pl_voice_dec *dec, const uint8_t *packet, size_t len, int16_t pcm[PL_VOICE_FRAME])
{
    if (pl_voice_packet_check(packet, len) != PL_VOICE_OK) {
        pl_voice_conceal(dec, pcm);
        return PL_VOICE_ERR_PACKET;
    }
    /* A bare table-of-contents byte is a frame not sent (DTX): Opus
     * conceals it, as it does a lost one. */
    if (len == 1) {
        pl_voice_conceal(dec, pcm);
        return PL_VOICE_OK;
    }
    dec->quiet_run = 0;
    int n = opus_decode(dec->opus, packet, (opus_int32)len, pcm, PL_VOICE_FRAME, 0);
    if (n != PL_VOICE_FRAME) {
        pl_voice_conceal(dec, pcm);
        return PL_VOICE_ERR_CODEC;
    }
    return PL_VOICE_OK;
}

void pl_voice_decode_fec(pl_voice_dec *dec, const uint8_t *next, size_t len, int16_t pcm[PL_VOICE_FRAME],
                         bool *had_fec)
{
    *had_fec = false;
    if (!pl_voice_packet_has_fec(next, len)) {
        pl_voice_conceal(dec, pcm);
        return;
    }
    dec->quiet_run = 0;
    if (opus_decode(dec->opus, next, (opus_int32)len, pcm, PL_VOICE_FRAME, 1) != PL_VOICE_FRAME) {
        pl_voice_conceal(dec, pcm);
        return;
    }
    *had_fec = true;
}

pl_voice_err pl_voice_packet_check(const uint8_t *packet, size_t len)
{
    if (!packet || len < 1 || len > PL_VOICE_MAX_PACKET) return PL_VOICE_ERR_PACKET;
    /* Bit 2 of the table-of-contents byte is the stereo flag. */
    if (packet[0] & 0x04) return PL_VOICE_ERR_PACKET;
    int samples = opus_packet_get_nb_samples(packet, (opus_int32)len, PL_VOICE_RATE);
    if (samples != PL_VOICE_FRAME) return PL_VOICE_ERR_PACKET;
    /* opus_packet_get_nb_samples reads only the TOC and the frame count;
     * parsing the frame lengths catches a truncated or padded-wrong packet
     * before the decoder sees it. */
    const unsigned char *frames[48];
    opus_int16 sizes[48];
    unsigned char toc;
    if (opus_packet_parse(packet, (opus_int32)len, &toc, frames, sizes, NULL) < 1) return PL_VOICE_ERR_PACKET;
    return PL_VOICE_OK;
}

bool pl_voice_packet_has_fec(const uint8_t *packet, size_t len)
{
    if (pl_voice_packet_check(packet, len) != PL_VOICE_OK) return false;
    /* LBRR (Opus's FEC) exists only in SILK and hybrid modes: TOC
     * configurations 0-15. */
    if ((packet[0] >> 3) >= 16) return false;
    const unsigned char *frames[48];
    opus_int16 sizes[48];
    unsigned char toc;
    int nframes = opus_packet_parse(packet, (opus_int32)len, &toc, frames, sizes, NULL);
    if (nframes < 1 || sizes[0] < 1) return false;
    /* RFC 6716 section 4.2.3: the SILK header flags are coded with uniform
     * probability, so they are the high bits of the frame's first byte: one
     * VAD flag per 20 ms SILK frame, then the LBRR flag. A 10 ms packet has
     * one SILK frame, a 20 ms one also one (a 20 ms SILK frame). */
    int silk_frames = 1;
    return ((frames[0][0] >> (7 - silk_frames)) & 1) != 0;
}
