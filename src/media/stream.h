/*
 * stream.h - the media stream of one call: the sans-I/O core between audio
 * frames and the payloads the secure session seals.
 *
 * Sending: every 20 ms the driver hands in the captured frame
 * (pl_media_capture); the stream encodes it and, unless DTX says the frame
 * need not go out, calls io.send with a voice payload (media_packet.h) for
 * the driver to seal with pl_sec_send. Receiving: every payload the secure
 * session delivers whose first byte is 0x80 or 0x81 goes to
 * pl_media_receive; voice waits in the jitter buffer, reports update the
 * statistics. Playing: every 20 ms the driver asks for the frame to play
 * (pl_media_pull), which decodes, rebuilds from FEC or conceals.
 *
 * Every report interval (1 s by default, randomised by half either way as
 * RTCP does, so two ends do not fall into step) pl_media_tick sends a
 * receiver report: what arrived from the peer, plus the timestamps that give
 * both ends the round-trip time. Reports from the peer drive the encoder:
 * the FEC is sized to the loss the peer sees, and the bitrate follows loss
 * and queueing delay (docs/media.md, "Bitrate adaptation").
 *
 * Mute keeps the call flowing but encodes silence, so DTX soon stops the
 * packets. Hold sends no voice at all (reports go on, flagged "hold", so the
 * peer plays silence rather than concealing a loss); the driver keeps calling
 * pl_media_capture on hold so the media clock runs on.
 *
 * Times are the driver's pl_time; nothing here reads a clock, does I/O or
 * allocates after pl_media_new.
 */
#ifndef PL_MEDIA_STREAM_H
#define PL_MEDIA_STREAM_H

#include "jitter.h"
#include "media_packet.h"
#include "parley.h"
#include "voice_codec.h"

typedef struct pl_media pl_media;

typedef struct pl_media_io {
    void *ctx;
    /* A payload to seal and send to the peer; valid during the call. */
    void (*send)(void *ctx, const uint8_t *payload, size_t len);
} pl_media_io;

typedef struct pl_media_config {
    const pl_rng *rng;       /* random first sequence number, timestamp, report times; NULL: fixed */
    const pl_mem *mem;       /* NULL: the C heap */
    int bitrate_min;         /* bit/s; 0: 16000 */
    int bitrate_max;         /* 0: 40000 */
    int bitrate_start;       /* 0: 32000 */
    bool fixed_bitrate;      /* no adaptation (tests, a link known to be good) */
    int complexity;          /* Opus complexity 1..10; 0: PL_VOICE_DEFAULT_COMPLEXITY */
    pl_voice_band band;      /* the widest audio band to code; 0: wideband (voice_codec.h) */
    bool no_fec, no_dtx;
    pl_time report_interval; /* 0: 1 s */
    pl_jitter_config jitter;
} pl_media_config;

typedef enum pl_media_err {
    PL_MEDIA_OK = 0,
    PL_MEDIA_ERR_CONFIG,    /* a bad configuration value */
    PL_MEDIA_ERR_NOMEM,
    PL_MEDIA_ERR_CODEC,     /* the codec failed (see pl_voice_err) */
    PL_MEDIA_ERR_NOT_MEDIA, /* a payload whose type byte belongs to another module */
    PL_MEDIA_ERR_MALFORMED, /* a media payload that does not parse, or voice that is not 20 ms mono Opus */
} pl_media_err;

const char *pl_media_strerror(pl_media_err err);

typedef struct pl_media_stats {
    /* Round trip, from report timestamps; 0 until measured. */
    pl_time rtt, rtt_min;
    bool rtt_known;
    /* Loss of the peer's packets on the way here: over the last report
     * interval, and since the call began. */
    double loss_rx, loss_rx_total;
    /* Loss of our packets on the way there, as the peer last reported it. */
    double loss_tx;
    uint64_t lost_tx_total; /* the peer's cumulative count */
    pl_time jitter_rx;      /* interarrival jitter of the peer's packets (RFC 3550) */
    pl_time jitter_tx;      /* of ours, as the peer reports */
    int bitrate;            /* the encoder's target now */
    int fec_loss_perc;      /* the loss the encoder's FEC is sized for */
    uint64_t packets_sent, bytes_sent, frames_captured, frames_dtx;
    uint64_t packets_received, bytes_received;
    uint64_t reports_sent, reports_received;
    uint64_t malformed;     /* media payloads refused */
    /* Playout. */
    uint64_t frames_played, frames_fec, frames_concealed, frames_silence, frames_empty;
    uint64_t late, duplicate, inserted, dropped;
    pl_time concealed_ms;      /* audio made up because packets were missing */
    double concealed_fraction; /* of the frames that should have carried the peer's voice */
    pl_time jb_delay, jb_delay_avg, jb_target; /* added by the jitter buffer */
    bool muted, on_hold, peer_on_hold;
} pl_media_stats;

pl_media_err pl_media_new(pl_media **out, const pl_media_config *config, const pl_media_io *io, pl_time now);
void pl_media_free(pl_media *m);

/* One captured 20 ms frame (48 kHz mono); may call io.send. */
pl_media_err pl_media_capture(pl_media *m, const int16_t pcm[PL_VOICE_FRAME], pl_time now);
/* A payload from the peer (after the secure session opened it). */
pl_media_err pl_media_receive(pl_media *m, const uint8_t *data, size_t len, pl_time now);
/* The frame to play now; call every 20 ms of the playout clock. */
void pl_media_pull(pl_media *m, int16_t pcm[PL_VOICE_FRAME], pl_time now);
/* Sends a report when one is due; may call io.send. */
void pl_media_tick(pl_media *m, pl_time now);
/* When pl_media_tick next has work. */
pl_time pl_media_next_timeout(const pl_media *m);

void pl_media_set_mute(pl_media *m, bool mute);
/* Hold or resume; sends a report at once so the peer knows. */
void pl_media_set_hold(pl_media *m, bool hold, pl_time now);
/* The range bitrate adaptation keeps to (e.g. a user's data-saving setting). */
pl_media_err pl_media_set_bitrate_range(pl_media *m, int min, int max);

void pl_media_get_stats(const pl_media *m, pl_media_stats *out);

#endif
