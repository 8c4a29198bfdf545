/* test_voicemail.c - a voicemail's body: speech recorded and played back
 * matches (correlation after the codec's delay), the three-minute limit,
 * sizes, and a parser that refuses every malformed body. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "parley.h"
#include "speech.h"
#include "test.h"
#include "voicemail.h"

static int16_t *speech;
static size_t speech_n;

static pl_vm_rec *record(const int16_t *pcm, size_t n, uint32_t *frames)
{
    pl_vm_rec *r;
    CHECK_EQ(pl_vm_rec_new(&r, 0), PL_VM_OK);
    int16_t frame[PL_VOICE_FRAME];
    for (size_t off = 0; off < n; off += PL_VOICE_FRAME) {
        size_t k = n - off < PL_VOICE_FRAME ? n - off : PL_VOICE_FRAME;
        memset(frame, 0, sizeof frame);
        memcpy(frame, pcm + off, k * sizeof *pcm);
        CHECK_EQ(pl_vm_rec_frame(r, frame), PL_VM_OK);
    }
    *frames = pl_vm_rec_frames(r);
    return r;
}

static void speech_round_trip(void)
{
    if (!speech) {
        printf("     (no espeak-ng or sox: skipped)\n");
        return;
    }
    uint32_t frames;
    pl_vm_rec *r = record(speech, speech_n, &frames);
    const uint8_t *body;
    size_t len;
    CHECK_EQ(pl_vm_rec_body(r, &body, &len), PL_VM_OK);
    pl_vm_info info;
    CHECK_EQ(pl_vm_parse(body, len, &info), PL_VM_OK);
    CHECK_EQ(info.frames, frames);
    CHECK_EQ(info.duration_ms, frames * 20);
    CHECK_EQ(len, PL_VM_HEADER + 2 * (size_t)frames + info.audio_bytes);
    pl_vm_player p;
    CHECK_EQ(pl_vm_player_init(&p, body, len), PL_VM_OK);
    int16_t *out = calloc((size_t)frames * PL_VOICE_FRAME, sizeof *out);
    uint32_t played = 0;
    while (pl_vm_player_next(&p, out + (size_t)played * PL_VOICE_FRAME)) played++;
    CHECK_EQ(played, frames);
    pl_vm_player_free(&p);
    double corr;
    size_t lag = pl_test_best_lag_fast(speech, out, speech_n - 4800, 4800, &corr);
    CHECK(corr > 0.85);
    CHECK(lag < 1000);
    printf("     %.1f s of speech: %zu bytes (%.1f kbit/s, %u of %u frames silent), correlation %.3f at a lag of "
           "%.1f ms\n",
           frames / 50.0, len, len * 8.0 / (frames / 50.0) / 1000, info.silent_frames, frames, corr, lag / 48.0);
    free(out);
    pl_vm_rec_free(r);
}

static void three_minutes_and_no_more(void)
{
    pl_vm_rec *r;
    CHECK_EQ(pl_vm_rec_new(&r, 0), PL_VM_OK);
    const uint8_t *body;
    size_t len;
    CHECK_EQ(pl_vm_rec_body(r, &body, &len), PL_VM_ERR_EMPTY);
    int16_t frame[PL_VOICE_FRAME];
    uint32_t seed = 7;
    for (uint32_t i = 0; i < PL_VM_MAX_FRAMES; i++) {
        /* Loud noise: the encoder's worst case for size. */
        for (int k = 0; k < PL_VOICE_FRAME; k++) {
            seed = seed * 1103515245u + 12345u;
            frame[k] = (int16_t)((int32_t)(seed >> 16) - 32768) / 2;
        }
        CHECK_EQ(pl_vm_rec_frame(r, frame), PL_VM_OK);
    }
    CHECK_EQ(pl_vm_rec_frame(r, frame), PL_VM_ERR_TOO_LONG);
    CHECK_EQ(pl_vm_rec_frames(r), PL_VM_MAX_FRAMES);
    CHECK_EQ(pl_vm_rec_body(r, &body, &len), PL_VM_OK);
    CHECK(len <= PL_VM_MAX_BODY);
    pl_vm_info info;
    CHECK_EQ(pl_vm_parse(body, len, &info), PL_VM_OK);
    CHECK_EQ(info.duration_ms, 180000);
    printf("     three minutes of loud noise: %zu bytes\n", len);
    pl_vm_rec_free(r);
}

static void malformed_bodies_are_refused(void)
{
    /* A small valid body: silence and a tone. */
    pl_vm_rec *r;
    CHECK_EQ(pl_vm_rec_new(&r, 0), PL_VM_OK);
    int16_t frame[PL_VOICE_FRAME];
    for (int i = 0; i < 25; i++) {
        for (int k = 0; k < PL_VOICE_FRAME; k++) frame[k] = i < 5 ? 0 : (int16_t)((k * 37 % 200) * 40 - 4000);
        CHECK_EQ(pl_vm_rec_frame(r, frame), PL_VM_OK);
    }
    const uint8_t *body;
    size_t len;
    CHECK_EQ(pl_vm_rec_body(r, &body, &len), PL_VM_OK);
    pl_vm_info info;
    CHECK_EQ(pl_vm_parse(body, len, &info), PL_VM_OK);
    uint8_t *b = malloc(len + 8);
    /* Every truncation and an extra byte. */
    for (size_t cut = 0; cut < len; cut++) CHECK_EQ(pl_vm_parse(body, cut, &info), PL_VM_ERR_MALFORMED);
    memcpy(b, body, len);
    b[len] = 0;
    CHECK_EQ(pl_vm_parse(b, len + 1, &info), PL_VM_ERR_MALFORMED);
    /* Header fields. */
    const size_t fields[] = {0, 1, 2, 5, 9};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        memcpy(b, body, len);
        b[fields[i]] ^= 0x01;
        CHECK_EQ(pl_vm_parse(b, len, &info), PL_VM_ERR_MALFORMED);
    }
    /* Zero frames; more than three minutes' worth. */
    memcpy(b, body, len);
    memset(b + 6, 0, 4);
    CHECK_EQ(pl_vm_parse(b, PL_VM_HEADER, &info), PL_VM_ERR_MALFORMED);
    b[8] = (PL_VM_MAX_FRAMES + 1) >> 8;
    b[9] = (PL_VM_MAX_FRAMES + 1) & 0xff;
    CHECK_EQ(pl_vm_parse(b, len, &info), PL_VM_ERR_MALFORMED);
    /* A length that is too long for a packet, and a packet that is not a
     * 20 ms mono Opus frame (a code-3 packet of several frames). */
    memcpy(b, body, len);
    size_t first = PL_VM_HEADER;
    while ((b[first] << 8 | b[first + 1]) == 0) first += 2;
    b[first] = 0x7f;
    CHECK_EQ(pl_vm_parse(b, len, &info), PL_VM_ERR_MALFORMED);
    memcpy(b, body, len);
    b[first + 2] |= 0x03;
    CHECK_EQ(pl_vm_parse(b, len, &info), PL_VM_ERR_MALFORMED);
    /* A player refuses what the parser refuses. */
    pl_vm_player p;
    CHECK_EQ(pl_vm_player_init(&p, b, len), PL_VM_ERR_MALFORMED);
    CHECK(!pl_vm_player_next(&p, frame));
    free(b);
    pl_vm_rec_free(r);
}

int main(void)
{
    if (!pl_init()) return 1;
    speech = pl_test_speech("The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background.",
                            &speech_n);
    RUN(speech_round_trip);
    RUN(three_minutes_and_no_more);
    RUN(malformed_bodies_are_refused);
    free(speech);
    return pl_test_summary();
}
