/*
 * pl_mediascan - does any of these datagrams carry voice in the clear?
 *
 *   pl_mediascan [--trace] < lines
 *
 * Reads one datagram per line in hex (UDP payloads from a capture, as
 * `tshark -T fields -e udp.payload` prints them) and tries to read each as
 * a Parley voice packet (docs/media.md: type 0x80, a 20 ms mono Opus frame
 * that decodes structurally) at every place one could sit: the start of
 * the datagram, after relay framing (13 bytes), after a session data
 * header (16 bytes) and after both (29 bytes). It also sorts the datagrams
 * by what they are: relay framing (0xF1), sealed session data (type 4 with
 * three zero bytes), handshakes, STUN, other.
 *
 * With --trace the lines are "ID HEX" as parleyd --media-trace writes
 * them (voice payloads before sealing): the positive control, where every
 * line must parse.
 *
 * Prints one JSON object: {"datagrams":N,"relay_framed":N,"sealed_data":N,
 * "handshakes":N,"stun":N,"other":N,"clear_voice":N}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "media_packet.h"
#include "parley.h"
#include "relay.h"
#include "voice_codec.h"

static bool voice_at(const uint8_t *p, size_t len)
{
    pl_mpkt_voice v;
    if (pl_mpkt_voice_decode(&v, p, len) != PL_MPKT_OK) return false;
    return pl_voice_packet_check(v.opus, v.opus_len) == PL_VOICE_OK;
}

int main(int argc, char **argv)
{
    bool trace = argc > 1 && strcmp(argv[1], "--trace") == 0;
    static char line[8192];
    static uint8_t buf[4096];
    unsigned long n = 0, relay = 0, sealed = 0, hs = 0, stun = 0, other = 0, clear = 0;
    while (fgets(line, sizeof line, stdin)) {
        char *hex = line;
        if (trace) {
            hex = strchr(line, ' ');
            if (!hex) continue;
            hex++;
        }
        /* tshark may print several payloads of one frame separated by ','. */
        hex[strcspn(hex, "\r\n,")] = 0;
        size_t hl = strlen(hex);
        if (hl == 0 || hl % 2 || hl / 2 > sizeof buf || !pl_hex_decode(hex, buf, hl / 2)) continue;
        size_t len = hl / 2;
        n++;
        if (buf[0] == PL_RELAY_MAGIC) relay++;
        else if (len >= 4 && buf[0] == 4 && !buf[1] && !buf[2] && !buf[3]) sealed++;
        else if (len >= 4 && buf[0] >= 1 && buf[0] <= 3 && !buf[1] && !buf[2] && !buf[3]) hs++;
        else if ((buf[0] & 0xc0) == 0 && len >= 8 && buf[4] == 0x21 && buf[5] == 0x12 && buf[6] == 0xa4 && buf[7] == 0x42)
            stun++;
        else other++;
        static const size_t offsets[] = {0, PL_RELAY_HEADER_SIZE, 16, PL_RELAY_HEADER_SIZE + 16};
        for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
            if (len > offsets[i] && voice_at(buf + offsets[i], len - offsets[i])) {
                clear++;
                break;
            }
        }
    }
    printf("{\"datagrams\":%lu,\"relay_framed\":%lu,\"sealed_data\":%lu,\"handshakes\":%lu,\"stun\":%lu,\"other\":%lu,"
           "\"clear_voice\":%lu}\n",
           n, relay, sealed, hs, stun, other, clear);
    return 0;
}
