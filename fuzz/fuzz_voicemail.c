/*
 * fuzz_voicemail.c - hostile bytes as a voicemail body (voicemail.h): what
 * another user sealed for us, opened and handed to the parser and player.
 *
 * Checks besides crashes: a body the parser accepts plays exactly as many
 * frames as it says (players of long bodies are cut short to keep the
 * fuzzer fast), and the figures it reports add up to the body's length.
 */
#include <stdint.h>
#include <stdlib.h>

#include "voicemail.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pl_vm_info info;
    if (pl_vm_parse(data, size, &info) != PL_VM_OK) return 0;
    if (info.frames == 0 || info.frames > PL_VM_MAX_FRAMES || info.silent_frames > info.frames) abort();
    if ((size_t)PL_VM_HEADER + 2u * info.frames + info.audio_bytes != size) abort();
    pl_vm_player p;
    if (pl_vm_player_init(&p, data, size) != PL_VM_OK) abort();
    int16_t pcm[PL_VOICE_FRAME];
    uint32_t n = 0;
    while (n < 200 && pl_vm_player_next(&p, pcm)) n++;
    if (n != (info.frames < 200 ? info.frames : 200)) abort();
    pl_vm_player_free(&p);
    return 0;
}
