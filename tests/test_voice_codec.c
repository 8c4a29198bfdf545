/*
 * test_voice_codec.c - the Opus voice codec on real (synthetic) speech:
 * it keeps the signal, FEC rebuilds a lost frame better than concealment,
 * DTX stops packets in silence, the silence gate skips the encoder in
 * near-silence and keeps a held tone going, the bitrate follows the setting, the
 * coded band is wideband unless a wider one is asked for, and the packet check refuses what the media stream must not decode.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "speech.h"
#include "test.h"
#include "voice_codec.h"

#define FRAME PL_VOICE_FRAME

static int16_t *speech;
static size_t speech_n; /* whole frames only */

static void load_speech(void)
{
    if (speech) return;
    size_t n = 0;
    speech = pl_test_speech("The quick brown fox jumps over the lazy dog. "
                            "Parley carries voice between two users, end to end encrypted. "
                            "Seven hundred and forty two.",
                            &n);
    CHECK(speech != NULL);
    speech_n = n / FRAME * FRAME;
    CHECK(speech_n >= 5 * 48000);
}

/* Encodes and decodes every frame; returns the decoded signal. */
static int16_t *round_trip(int bitrate, size_t *bytes)
{
    pl_voice_enc_config cfg = {.bitrate = bitrate, .complexity = -1};
    pl_voice_enc *enc;
    pl_voice_dec *dec;
    CHECK_EQ(pl_voice_enc_new(&enc, &cfg), PL_VOICE_OK);
    CHECK_EQ(pl_voice_dec_new(&dec), PL_VOICE_OK);
    int16_t *out = calloc(speech_n, sizeof *out);
    CHECK(out != NULL);
    *bytes = 0;
    for (size_t f = 0; f < speech_n / FRAME; f++) {
        uint8_t pkt[PL_VOICE_MAX_PACKET];
        size_t len;
        bool dtx;
        CHECK_EQ(pl_voice_encode(enc, speech + f * FRAME, pkt, &len, &dtx), PL_VOICE_OK);
        CHECK(len >= 1 && len <= PL_VOICE_MAX_PACKET);
        *bytes += len;
        CHECK_EQ(pl_voice_packet_check(pkt, len), PL_VOICE_OK);
        CHECK_EQ(pl_voice_decode(dec, pkt, len, out + f * FRAME), PL_VOICE_OK);
    }
    pl_voice_enc_free(enc);
    pl_voice_dec_free(dec);
    return out;
}

/* Bound: speech through Opus at 32 kbit/s (wideband/hybrid SILK, which
 * keeps the waveform) correlates with the source at 0.93 or more once the
 * codec's delay is taken out (0.96 measured); at 16 kbit/s at 0.90 or more
 * (0.945 measured). */
static void test_round_trip_keeps_speech(void)
{
    load_speech();
    pl_voice_enc *enc;
    CHECK_EQ(pl_voice_enc_new(&enc, NULL), PL_VOICE_OK);
    int lookahead = pl_voice_enc_lookahead(enc);
    pl_voice_enc_free(enc);
    CHECK(lookahead > 0 && lookahead < FRAME);

    size_t bytes;
    int16_t *out = round_trip(32000, &bytes);
    size_t n = speech_n - 2 * FRAME;
    double best;
    size_t lag = pl_test_best_lag(speech, out, n, FRAME, &best);
    printf("  32 kbit/s: lookahead %d samples, best correlation %.3f at lag %zu; %.1f kbit/s\n", lookahead, best,
           lag, bytes * 8.0 / (speech_n / 48000.0) / 1000);
    /* The codec's delay is its lookahead, give or take the resampling
     * filters' few samples. */
    CHECK(lag + 8 >= (size_t)lookahead && lag <= (size_t)lookahead + 8);
    CHECK(best >= 0.93);
    /* DTX keeps the average well under the set bitrate; it never goes far over. */
    CHECK(bytes * 8.0 / (speech_n / 48000.0) < 32000 * 1.15);
    free(out);

    out = round_trip(16000, &bytes);
    double c16;
    lag = pl_test_best_lag(speech, out, n, FRAME, &c16);
    CHECK(lag + 8 >= (size_t)lookahead && lag <= (size_t)lookahead + 8);
    printf("  16 kbit/s: correlation %.3f; %.1f kbit/s\n", c16, bytes * 8.0 / (speech_n / 48000.0) / 1000);
    CHECK(c16 >= 0.90);
    free(out);
}

static double frame_snr(const int16_t *ref, const int16_t *x)
{
    double s = 0, e = 0;
    for (int i = 0; i < FRAME; i++) {
        s += (double)ref[i] * ref[i];
        e += ((double)ref[i] - x[i]) * ((double)ref[i] - x[i]);
    }
    return 10 * log10((s + 1) / (e + 1));
}

/* A frame lost in speech: the decoder that uses the FEC inside the next
 * packet gets much closer to the lossless decode than plain concealment. */
static void test_fec_recovers_lost_frame(void)
{
    load_speech();
    pl_voice_enc_config cfg = {.bitrate = 32000, .complexity = -1, .loss_perc = 20};
    pl_voice_enc *enc;
    CHECK_EQ(pl_voice_enc_new(&enc, &cfg), PL_VOICE_OK);
    size_t frames = speech_n / FRAME;
    uint8_t(*pkts)[PL_VOICE_MAX_PACKET] = calloc(frames, PL_VOICE_MAX_PACKET);
    size_t *lens = calloc(frames, sizeof *lens);
    CHECK(pkts && lens);
    for (size_t f = 0; f < frames; f++) {
        bool dtx;
        CHECK_EQ(pl_voice_encode(enc, speech + f * FRAME, pkts[f], &lens[f], &dtx), PL_VOICE_OK);
    }
    pl_voice_enc_free(enc);

    pl_voice_dec *ref, *with_fec, *with_plc;
    CHECK_EQ(pl_voice_dec_new(&ref), PL_VOICE_OK);
    CHECK_EQ(pl_voice_dec_new(&with_fec), PL_VOICE_OK);
    CHECK_EQ(pl_voice_dec_new(&with_plc), PL_VOICE_OK);
    int16_t r[FRAME], a[FRAME], b[FRAME];
    double snr_fec = 0, snr_plc = 0;
    int lost = 0, had = 0;
    for (size_t f = 0; f + 1 < frames; f++) {
        pl_voice_decode(ref, pkts[f], lens[f], r);
        /* Lose every 5th frame that is speech (loud enough to matter). */
        bool lose = f % 5 == 2 && pl_test_rms(speech + f * FRAME, FRAME) > 1000;
        if (lose) {
            bool had_fec;
            pl_voice_decode_fec(with_fec, pkts[f + 1], lens[f + 1], a, &had_fec);
            pl_voice_conceal(with_plc, b);
            snr_fec += frame_snr(r, a);
            snr_plc += frame_snr(r, b);
            lost++;
            had += had_fec;
            CHECK_EQ(had_fec, pl_voice_packet_has_fec(pkts[f + 1], lens[f + 1]));
        } else {
            pl_voice_decode(with_fec, pkts[f], lens[f], a);
            pl_voice_decode(with_plc, pkts[f], lens[f], b);
        }
    }
    snr_fec /= lost;
    snr_plc /= lost;
    printf("  %d lost speech frames, %d with FEC: SNR against lossless decode %.1f dB (FEC) vs %.1f dB (PLC)\n",
           lost, had, snr_fec, snr_plc);
    CHECK(lost >= 20);
    CHECK(had >= lost * 9 / 10);
    CHECK(snr_fec > snr_plc + 3);
    CHECK(snr_fec > 3);

    /* Without FEC on the encoder, the packets carry none. */
    pl_voice_enc_config nofec = {.bitrate = 32000, .complexity = -1, .loss_perc = 20, .no_fec = true};
    CHECK_EQ(pl_voice_enc_new(&enc, &nofec), PL_VOICE_OK);
    int with = 0;
    for (size_t f = 0; f < frames; f++) {
        bool dtx;
        size_t len;
        uint8_t p[PL_VOICE_MAX_PACKET];
        CHECK_EQ(pl_voice_encode(enc, speech + f * FRAME, p, &len, &dtx), PL_VOICE_OK);
        with += pl_voice_packet_has_fec(p, len);
    }
    CHECK_EQ(with, 0);
    pl_voice_enc_free(enc);
    pl_voice_dec_free(ref);
    pl_voice_dec_free(with_fec);
    pl_voice_dec_free(with_plc);
    free(pkts);
    free(lens);
}

/* Counts the frames the media stream would send from a run of input: every
 * frame of more than two bytes (speech, and comfort-noise updates in DTX),
 * plus the first DTX frame after speech (it tells the receiver that silence
 * begins). */
static int frames_sent(pl_voice_enc *enc, const int16_t *pcm, size_t frames, int *dtx_frames)
{
    int sent = 0;
    bool prev_dtx = false;
    *dtx_frames = 0;
    for (size_t f = 0; f < frames; f++) {
        uint8_t p[PL_VOICE_MAX_PACKET];
        size_t len;
        bool dtx;
        CHECK_EQ(pl_voice_encode(enc, pcm + f * FRAME, p, &len, &dtx), PL_VOICE_OK);
        *dtx_frames += dtx;
        if (len > 2 || !prev_dtx) sent++;
        prev_dtx = dtx;
    }
    return sent;
}

static void test_dtx_silence_sends_few_packets(void)
{
    load_speech();
    pl_voice_enc *enc;
    CHECK_EQ(pl_voice_enc_new(&enc, NULL), PL_VOICE_OK);
    int dtx;
    /* Speech first, so the encoder is warm. */
    int sent = frames_sent(enc, speech, 100, &dtx);
    CHECK(sent >= 90);
    /* Ten seconds of digital silence. */
    size_t frames = 500;
    int16_t *quiet = calloc(frames * FRAME, sizeof *quiet);
    CHECK(quiet != NULL);
    sent = frames_sent(enc, quiet, frames, &dtx);
    printf("  10 s of silence: %d of %zu frames sent, %d DTX\n", sent, frames, dtx);
    CHECK(sent <= (int)frames / 10);
    CHECK(dtx >= (int)frames * 8 / 10);
    /* Faint noise (-60 dBFS) is silence too. */
    uint32_t x = 1;
    for (size_t i = 0; i < frames * FRAME; i++) {
        x = x * 1103515245u + 12345u;
        quiet[i] = (int16_t)((int)((x >> 16) % 65) - 32);
    }
    sent = frames_sent(enc, quiet, frames, &dtx);
    printf("  10 s of -60 dBFS noise: %d of %zu frames sent\n", sent, frames);
    CHECK(sent <= (int)frames / 8);
    /* Without DTX every frame goes out. */
    pl_voice_enc_free(enc);
    pl_voice_enc_config no = {.no_dtx = true, .complexity = -1};
    CHECK_EQ(pl_voice_enc_new(&enc, &no), PL_VOICE_OK);
    sent = frames_sent(enc, quiet, 100, &dtx);
    CHECK_EQ(sent, 100);
    CHECK_EQ(dtx, 0);
    pl_voice_enc_free(enc);
    free(quiet);
}

/* The silence gate: a held tone is sound at any complexity (SILK's voice
 * detector alone calls it silence), near-silence stops the encoder, and
 * speech after a long silence comes through as well as before it. */
static void test_gate_keeps_tones_and_skips_silence(void)
{
    load_speech();
    pl_voice_enc *enc;
    CHECK_EQ(pl_voice_enc_new(&enc, NULL), PL_VOICE_OK);
    size_t frames = 500;
    int16_t *tone = malloc(frames * FRAME * sizeof *tone);
    CHECK(tone != NULL);
    for (double dbfs = -20; dbfs >= -36; dbfs -= 15) {
        double a = 32767 * pow(10, dbfs / 20);
        for (size_t i = 0; i < frames * FRAME; i++) tone[i] = (int16_t)(a * sin(2 * M_PI * 440 * i / 48000.0));
        int dtx;
        int sent = frames_sent(enc, tone, frames, &dtx);
        printf("  10 s of a 440 Hz tone at %.0f dBFS: %d of %zu frames sent, %d DTX\n", dbfs, sent, frames, dtx);
        CHECK_EQ(sent, (int)frames);
        CHECK_EQ(dtx, 0);
    }
    CHECK_EQ(pl_voice_enc_frames_skipped(enc), 0);
    pl_voice_enc_free(enc);
    free(tone);

    /* 3 s of speech, 4 s of digital silence, the same 3 s again. */
    size_t part = 150 * FRAME, gap = 200 * FRAME, n = 2 * part + gap;
    int16_t *in = calloc(n, sizeof *in), *out = calloc(n, sizeof *out);
    CHECK(in != NULL && out != NULL);
    memcpy(in, speech, part * sizeof *in);
    memcpy(in + part + gap, speech, part * sizeof *in);
    pl_voice_dec *dec;
    CHECK_EQ(pl_voice_enc_new(&enc, NULL), PL_VOICE_OK);
    CHECK_EQ(pl_voice_dec_new(&dec), PL_VOICE_OK);
    for (size_t f = 0; f < n / FRAME; f++) {
        uint8_t pkt[PL_VOICE_MAX_PACKET];
        size_t len;
        bool dtx;
        CHECK_EQ(pl_voice_encode(enc, in + f * FRAME, pkt, &len, &dtx), PL_VOICE_OK);
        CHECK_EQ(pl_voice_packet_check(pkt, len), PL_VOICE_OK);
        CHECK_EQ(pl_voice_decode(dec, pkt, len, out + f * FRAME), PL_VOICE_OK);
    }
    uint64_t skipped = pl_voice_enc_frames_skipped(enc);
    /* The gap, less the hangover, plus the speech's own pauses. */
    CHECK(skipped >= 200 - PL_VOICE_GATE_HANGOVER - 1);
    CHECK(skipped < n / FRAME - 150);
    /* Concealment in the middle of the gap is digital silence. */
    for (size_t i = part + gap / 2; i < part + gap - FRAME; i++) CHECK_EQ(out[i], 0);
    double before, after;
    size_t cmp = part - 2 * FRAME;
    size_t lag1 = pl_test_best_lag(in, out, cmp, FRAME, &before);
    size_t lag2 = pl_test_best_lag(in + part + gap, out + part + gap, cmp, FRAME, &after);
    printf("  speech, 4 s of silence, speech: %llu of %zu frames not encoded; correlation %.3f before, %.3f after\n",
           (unsigned long long)skipped, n / FRAME, before, after);
    CHECK_EQ(lag1, lag2);
    CHECK(before >= 0.9);
    CHECK(after >= before - 0.03);
    pl_voice_enc_free(enc);
    pl_voice_dec_free(dec);
    free(in);
    free(out);
}

static void test_bitrate_follows_setting(void)
{
    load_speech();
    pl_voice_enc_config cfg = {.bitrate = 40000, .complexity = -1, .no_dtx = true};
    pl_voice_enc *enc;
    CHECK_EQ(pl_voice_enc_new(&enc, &cfg), PL_VOICE_OK);
    size_t frames = 200, hi = 0, lo = 0;
    for (size_t f = 0; f < frames; f++) {
        uint8_t p[PL_VOICE_MAX_PACKET];
        size_t len;
        bool dtx;
        CHECK_EQ(pl_voice_encode(enc, speech + f * FRAME, p, &len, &dtx), PL_VOICE_OK);
        hi += len;
    }
    CHECK_EQ(pl_voice_enc_set_bitrate(enc, 16000), PL_VOICE_OK);
    CHECK_EQ(pl_voice_enc_bitrate(enc), 16000);
    for (size_t f = 0; f < frames; f++) {
        uint8_t p[PL_VOICE_MAX_PACKET];
        size_t len;
        bool dtx;
        CHECK_EQ(pl_voice_encode(enc, speech + f * FRAME, p, &len, &dtx), PL_VOICE_OK);
        lo += len;
    }
    double khi = hi * 8.0 / (frames * 0.02) / 1000, klo = lo * 8.0 / (frames * 0.02) / 1000;
    printf("  set 40 kbit/s: %.1f; set 16 kbit/s: %.1f\n", khi, klo);
    CHECK(khi > 32 && khi < 46);
    CHECK(klo > 12 && klo < 19);
    CHECK_EQ(pl_voice_enc_set_bitrate(enc, 1000), PL_VOICE_ERR_ARG);
    CHECK_EQ(pl_voice_enc_set_loss(enc, 101), PL_VOICE_ERR_ARG);
    CHECK_EQ(pl_voice_enc_set_loss(enc, 15), PL_VOICE_OK);
    CHECK_EQ(pl_voice_enc_loss(enc), 15);
    CHECK_EQ(pl_voice_enc_set_complexity(enc, 11), PL_VOICE_ERR_ARG);
    pl_voice_enc_free(enc);
    pl_voice_enc_config bad = {.bitrate = 1000000};
    CHECK_EQ(pl_voice_enc_new(&enc, &bad), PL_VOICE_ERR_ARG);
    CHECK(enc == NULL);
}

/* The audio band a packet's table-of-contents byte declares (RFC 6716
 * table 2), in kHz of audio: 4, 6, 8, 12 or 20. */
static int toc_band_khz(uint8_t toc)
{
    int config = toc >> 3;
    static const int silk[3] = {4, 6, 8}, hybrid[2] = {12, 20}, celt[4] = {4, 8, 12, 20};
    if (config < 12) return silk[config / 4];
    if (config < 16) return hybrid[(config - 12) / 2];
    return celt[(config - 16) / 4];
}

/* Speech at 32 kbit/s: by default every packet is wideband (SILK alone);
 * asked for full band, Opus codes most speech as hybrid full band. A
 * band the codec does not know is refused, by name and by value. */
static void test_band_is_wide_unless_asked(void)
{
    load_speech();
    static const struct {
        pl_voice_band band;
        int widest_khz;
    } cases[] = {{PL_VOICE_BAND_DEFAULT, 8}, {PL_VOICE_BAND_WIDE, 8}, {PL_VOICE_BAND_SUPERWIDE, 12},
                 {PL_VOICE_BAND_FULL, 20}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        pl_voice_enc_config cfg = {.bitrate = 32000, .complexity = -1, .band = cases[c].band};
        pl_voice_enc *enc;
        CHECK_EQ(pl_voice_enc_new(&enc, &cfg), PL_VOICE_OK);
        size_t frames = speech_n / FRAME, coded = 0, at_widest = 0, over = 0;
        for (size_t f = 0; f < frames; f++) {
            uint8_t p[PL_VOICE_MAX_PACKET];
            size_t len;
            bool dtx;
            CHECK_EQ(pl_voice_encode(enc, speech + f * FRAME, p, &len, &dtx), PL_VOICE_OK);
            if (dtx) continue;
            coded++;
            int khz = toc_band_khz(p[0]);
            if (khz == cases[c].widest_khz) at_widest++;
            if (khz > cases[c].widest_khz) over++;
        }
        printf("  %s: %zu of %zu coded frames at %d kHz, %zu wider\n", pl_voice_band_name(cases[c].band), at_widest,
               coded, cases[c].widest_khz, over);
        CHECK(coded > frames / 2);
        CHECK_EQ(over, 0);
        CHECK(at_widest > coded / 2);
        pl_voice_enc_free(enc);
    }
    pl_voice_band b;
    CHECK(pl_voice_band_parse("full", &b) && b == PL_VOICE_BAND_FULL);
    CHECK(pl_voice_band_parse("wide", &b) && b == PL_VOICE_BAND_WIDE);
    CHECK(!pl_voice_band_parse("narrow", &b));
    CHECK(!pl_voice_band_parse(NULL, &b));
    pl_voice_enc_config bad = {.band = (pl_voice_band)7};
    pl_voice_enc *enc;
    CHECK_EQ(pl_voice_enc_new(&enc, &bad), PL_VOICE_ERR_ARG);
    CHECK(enc == NULL);
}

static void test_packet_check(void)
{
    pl_voice_enc *enc;
    pl_voice_dec *dec;
    CHECK_EQ(pl_voice_enc_new(&enc, NULL), PL_VOICE_OK);
    CHECK_EQ(pl_voice_dec_new(&dec), PL_VOICE_OK);
    int16_t pcm[FRAME];
    for (int i = 0; i < FRAME; i++) pcm[i] = (int16_t)(8000 * sin(i * 2 * M_PI * 300 / 48000));
    uint8_t p[PL_VOICE_MAX_PACKET];
    size_t len;
    bool dtx;
    CHECK_EQ(pl_voice_encode(enc, pcm, p, &len, &dtx), PL_VOICE_OK);
    CHECK_EQ(pl_voice_packet_check(p, len), PL_VOICE_OK);
    CHECK_EQ(pl_voice_packet_check(p, 0), PL_VOICE_ERR_PACKET);
    CHECK_EQ(pl_voice_packet_check(NULL, 10), PL_VOICE_ERR_PACKET);
    CHECK_EQ(pl_voice_packet_check(p, PL_VOICE_MAX_PACKET + 1), PL_VOICE_ERR_PACKET);
    uint8_t q[PL_VOICE_MAX_PACKET];
    memcpy(q, p, len);
    q[0] |= 0x04; /* stereo */
    CHECK_EQ(pl_voice_packet_check(q, len), PL_VOICE_ERR_PACKET);
    memcpy(q, p, len);
    q[0] = (uint8_t)((q[0] & 0x07) | (0 << 3)); /* SILK NB 10 ms */
    CHECK_EQ(pl_voice_packet_check(q, len), PL_VOICE_ERR_PACKET);
    q[0] = (uint8_t)((3 << 3) | 0); /* SILK NB 60 ms */
    CHECK_EQ(pl_voice_packet_check(q, len), PL_VOICE_ERR_PACKET);
    /* Code 3 (several frames) with a frame count that does not fit. */
    q[0] = (uint8_t)((p[0] & 0xf8) | 3);
    q[1] = 0x3f;
    CHECK_EQ(pl_voice_packet_check(q, len), PL_VOICE_ERR_PACKET);
    /* A refused packet decodes as concealment: 20 ms of audio, an error. */
    CHECK_EQ(pl_voice_decode(dec, q, len, pcm), PL_VOICE_ERR_PACKET);
    /* A bare TOC byte (DTX) is accepted and decodes to comfort noise. */
    q[0] = p[0] & 0xfc;
    CHECK_EQ(pl_voice_packet_check(q, 1), PL_VOICE_OK);
    CHECK_EQ(pl_voice_decode(dec, q, 1, pcm), PL_VOICE_OK);
    CHECK(!pl_voice_packet_has_fec(q, 1));
    CHECK(strcmp(pl_voice_strerror(PL_VOICE_ERR_PACKET), "not a 20 ms mono Opus packet") == 0);
    pl_voice_enc_free(enc);
    pl_voice_dec_free(dec);
}

int main(void)
{
    RUN(test_round_trip_keeps_speech);
    RUN(test_fec_recovers_lost_frame);
    RUN(test_dtx_silence_sends_few_packets);
    RUN(test_gate_keeps_tones_and_skips_silence);
    RUN(test_bitrate_follows_setting);
    RUN(test_band_is_wide_unless_asked);
    RUN(test_packet_check);
    free(speech);
    return pl_test_summary();
}
