/*
 * fuzz_wav.c - hostile bytes into the quality harness's WAV reader.
 *
 * The recordings it reads come from test runs, not the network, but a
 * parser is a parser: it must never read out of bounds, and what it returns
 * must be sane. Checks besides crashes: a parse that succeeds gives a rate
 * in 8..192 kHz, no more samples than the bytes could hold, and every
 * sample a finite value in [-1, 1].
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "quality.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pl_quality_audio a;
    if (pl_quality_wav_parse(data, size, &a) != PL_QUALITY_OK) {
        if (a.samples != NULL) abort();
        return 0;
    }
    if (a.rate < 8000 || a.rate > 192000) abort();
    if (a.len > size) abort(); /* at least one byte per sample */
    for (size_t i = 0; i < a.len; i++)
        if (!isfinite(a.samples[i]) || a.samples[i] < -1.0f || a.samples[i] > 1.0f) abort();
    pl_quality_audio_free(&a);
    return 0;
}
