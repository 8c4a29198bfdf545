/* stream.c - the media stream of one call; see stream.h. */
#include "stream.h"

#include <string.h>

#include "rxstats.h"

/* Bitrate adaptation (docs/media.md). */
#define LOSS_HIGH 0.10      /* above: cut the bitrate in proportion */
#define LOSS_LOW 0.02       /* below (and no queueing): raise it */
#define RAISE_FACTOR 1.08   /* per report */
#define QUEUE_CUT 0.85
#define QUEUE_DELAY (150 * PL_MSEC) /* RTT this far above its minimum means queues are building */
#define FEC_MAX_PERC 50

struct pl_media {
    pl_media_config cfg;
    pl_media_io io;
    const pl_mem *mem;
    pl_voice_enc *enc;
    pl_voice_dec *dec;
    pl_jitter *jb;
    pl_rxstats rx;

    /* Sending. */
    uint16_t seq;
    uint32_t ts;
    bool prev_dtx;    /* the previous frame was DTX */
    bool skipped;     /* frames went unsent since the last packet */
    bool muted, on_hold;
    int bitrate;
    double loss_fec;  /* the loss FEC is sized for (rises at once, falls slowly) */

    /* Reports. */
    pl_time next_report;
    bool have_lsr;
    uint32_t lsr;          /* the peer's last report timestamp */
    pl_time lsr_arrival;   /* when it arrived */
    bool peer_hold;

    pl_media_stats st;
};

const char *pl_media_strerror(pl_media_err err)
{
    switch (err) {
    case PL_MEDIA_OK: return "ok";
    case PL_MEDIA_ERR_CONFIG: return "bad media stream configuration";
    case PL_MEDIA_ERR_NOMEM: return "out of memory";
    case PL_MEDIA_ERR_CODEC: return "the voice codec failed";
    case PL_MEDIA_ERR_NOT_MEDIA: return "not a media payload";
    case PL_MEDIA_ERR_MALFORMED: return "malformed media payload";
    }
    return "unknown media stream error";
}

static pl_time report_gap(pl_media *m)
{
    pl_time base = m->cfg.report_interval;
    if (!m->cfg.rng) return base;
    /* Uniform in [0.5, 1.5) of the interval. */
    return base / 2 + pl_rng_below(m->cfg.rng, base);
}

pl_media_err pl_media_new(pl_media **out, const pl_media_config *config, const pl_media_io *io, pl_time now)
{
    *out = NULL;
    if (!io || !io->send) return PL_MEDIA_ERR_CONFIG;
    pl_media_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (config) cfg = *config;
    if (!cfg.bitrate_min) cfg.bitrate_min = 16000;
    if (!cfg.bitrate_max) cfg.bitrate_max = 40000;
    if (!cfg.bitrate_start) cfg.bitrate_start = 32000;
    if (!cfg.complexity) cfg.complexity = PL_VOICE_DEFAULT_COMPLEXITY;
    if (!cfg.report_interval) cfg.report_interval = PL_SEC;
    if (cfg.bitrate_min < PL_VOICE_BITRATE_MIN || cfg.bitrate_max > PL_VOICE_BITRATE_MAX ||
        cfg.bitrate_min > cfg.bitrate_max || cfg.bitrate_start < cfg.bitrate_min ||
        cfg.bitrate_start > cfg.bitrate_max || cfg.complexity < 0 || cfg.complexity > 10 ||
        cfg.report_interval < 10 * PL_MSEC || cfg.band < PL_VOICE_BAND_DEFAULT || cfg.band > PL_VOICE_BAND_FULL)
        return PL_MEDIA_ERR_CONFIG;
    const pl_mem *mem = cfg.mem ? cfg.mem : pl_mem_system();
    pl_media *m = mem->calloc(mem->ctx, 1, sizeof *m);
    if (!m) return PL_MEDIA_ERR_NOMEM;
    m->cfg = cfg;
    m->io = *io;
    m->mem = mem;
    pl_voice_enc_config ec = {.bitrate = cfg.bitrate_start, .band = cfg.band, .complexity = cfg.complexity, .loss_perc = 0,
                              .no_fec = cfg.no_fec, .no_dtx = cfg.no_dtx};
    pl_voice_err ve = pl_voice_enc_new(&m->enc, &ec);
    if (ve == PL_VOICE_OK) ve = pl_voice_dec_new(&m->dec);
    m->jb = ve == PL_VOICE_OK ? pl_jitter_new(&cfg.jitter, mem) : NULL;
    if (!m->jb) {
        pl_media_free(m);
        return ve == PL_VOICE_ERR_NOMEM || ve == PL_VOICE_OK ? PL_MEDIA_ERR_NOMEM : PL_MEDIA_ERR_CODEC;
    }
    pl_rxstats_init(&m->rx);
    m->bitrate = cfg.bitrate_start;
    if (cfg.rng) {
        /* Random starting points, as RTP has them: nothing can be learnt
         * from them, and wrapping gets exercised in every call. */
        uint64_t r = pl_rng_u64(cfg.rng);
        m->seq = (uint16_t)r;
        m->ts = (uint32_t)(r >> 16);
    }
    m->next_report = now + report_gap(m);
    *out = m;
    return PL_MEDIA_OK;
}

void pl_media_free(pl_media *m)
{
    if (!m) return;
    pl_voice_enc_free(m->enc);
    pl_voice_dec_free(m->dec);
    pl_jitter_free(m->jb);
    m->mem->free(m->mem->ctx, m);
}

static void send_payload(pl_media *m, const uint8_t *data, size_t len)
{
    m->io.send(m->io.ctx, data, len);
}

pl_media_err pl_media_capture(pl_media *m, const int16_t pcm[PL_VOICE_FRAME], pl_time now)
{
    (void)now;
    m->st.frames_captured++;
    uint32_t ts = m->ts;
    m->ts += PL_VOICE_FRAME;
    if (m->on_hold) {
        m->skipped = true;
        return PL_MEDIA_OK;
    }
    static const int16_t silence[PL_VOICE_FRAME];
    uint8_t opus[PL_VOICE_MAX_PACKET];
    size_t len;
    bool dtx;
    if (pl_voice_encode(m->enc, m->muted ? silence : pcm, opus, &len, &dtx) != PL_VOICE_OK)
        return PL_MEDIA_ERR_CODEC;
    if (dtx) m->st.frames_dtx++;
    /* A frame of one or two bytes carries nothing: only the first one after
     * sound goes out, to tell the peer that silence (not loss) follows.
     * Comfort-noise updates (longer, flagged DTX) always go out. */
    bool send = len > 2 || !m->prev_dtx;
    m->prev_dtx = dtx;
    if (!send) {
        m->skipped = true;
        return PL_MEDIA_OK;
    }
    pl_mpkt_voice v = {.flags = 0, .seq = m->seq, .timestamp = ts, .opus = opus, .opus_len = len};
    if (dtx) v.flags |= PL_MPKT_F_SILENCE;
    if (m->skipped) v.flags |= PL_MPKT_F_MARKER;
    uint8_t buf[PL_MPKT_VOICE_MAX];
    size_t n;
    if (pl_mpkt_voice_encode(&v, buf, sizeof buf, &n) != PL_MPKT_OK) return PL_MEDIA_ERR_CODEC;
    m->seq++;
    m->skipped = false;
    m->st.packets_sent++;
    m->st.bytes_sent += n;
    send_payload(m, buf, n);
    return PL_MEDIA_OK;
}

static void send_report(pl_media *m, pl_time now)
{
    pl_mpkt_report r;
    memset(&r, 0, sizeof r);
    pl_rxstats_fill_report(&m->rx, &r);
    if (r.flags & PL_MPKT_R_RECEPTION) m->st.loss_rx = r.fraction_lost / 256.0;
    r.timestamp = pl_mpkt_compact_time(now);
    if (m->have_lsr) {
        r.flags |= PL_MPKT_R_LSR;
        r.lsr = m->lsr;
        r.dlsr = pl_mpkt_us_to_compact(now - m->lsr_arrival);
    }
    if (m->on_hold) r.flags |= PL_MPKT_R_HOLD;
    uint8_t buf[PL_MPKT_REPORT_SIZE];
    size_t n;
    if (pl_mpkt_report_encode(&r, buf, sizeof buf, &n) != PL_MPKT_OK) return;
    m->st.reports_sent++;
    send_payload(m, buf, n);
}

void pl_media_tick(pl_media *m, pl_time now)
{
    if (now < m->next_report) return;
    send_report(m, now);
    m->next_report = now + report_gap(m);
}

pl_time pl_media_next_timeout(const pl_media *m) { return m->next_report; }

static int clamp_bitrate(const pl_media *m, double b)
{
    if (b < m->cfg.bitrate_min) return m->cfg.bitrate_min;
    if (b > m->cfg.bitrate_max) return m->cfg.bitrate_max;
    return (int)b;
}

/* What the peer's report says about our stream: size the FEC to the loss,
 * and move the bitrate (docs/media.md, "Bitrate adaptation"). */
static void adapt(pl_media *m, const pl_mpkt_report *r)
{
    double loss = r->fraction_lost / 256.0;
    m->st.loss_tx = loss;
    m->st.lost_tx_total = r->cumulative_lost;
    m->st.jitter_tx = (pl_time)r->jitter * 1000 / 48;
    /* FEC follows loss up at once and down slowly: losses come in bursts
     * and the next report is a second away. */
    m->loss_fec = loss > m->loss_fec ? loss : 0.75 * m->loss_fec + 0.25 * loss;
    int perc = (int)(m->loss_fec * 100 + 0.999);
    if (perc > FEC_MAX_PERC) perc = FEC_MAX_PERC;
    pl_voice_enc_set_loss(m->enc, perc);
    if (m->cfg.fixed_bitrate) return;
    double b = m->bitrate;
    bool queueing = m->st.rtt_known && m->st.rtt > m->st.rtt_min + QUEUE_DELAY;
    if (loss > LOSS_HIGH) b *= 1 - 0.5 * loss;
    else if (queueing) b *= QUEUE_CUT;
    else if (loss < LOSS_LOW) b = b * RAISE_FACTOR > b + 1000 ? b * RAISE_FACTOR : b + 1000;
    int nb = clamp_bitrate(m, b);
    if (nb != m->bitrate && pl_voice_enc_set_bitrate(m->enc, nb) == PL_VOICE_OK) m->bitrate = nb;
}

static pl_media_err receive_report(pl_media *m, const uint8_t *data, size_t len, pl_time now)
{
    pl_mpkt_report r;
    if (pl_mpkt_report_decode(&r, data, len) != PL_MPKT_OK) {
        m->st.malformed++;
        return PL_MEDIA_ERR_MALFORMED;
    }
    m->st.reports_received++;
    pl_time rtt;
    if (pl_mpkt_report_rtt(&r, now, &rtt)) {
        if (!m->st.rtt_known) {
            m->st.rtt = m->st.rtt_min = rtt;
            m->st.rtt_known = true;
        } else {
            /* Smoothed as TCP does (RFC 6298): 1/8 of each new sample. */
            m->st.rtt = (pl_time)((int64_t)m->st.rtt + ((int64_t)rtt - (int64_t)m->st.rtt) / 8);
            if (rtt < m->st.rtt_min) m->st.rtt_min = rtt;
        }
    }
    m->have_lsr = true;
    m->lsr = r.timestamp;
    m->lsr_arrival = now;
    m->peer_hold = (r.flags & PL_MPKT_R_HOLD) != 0;
    pl_jitter_set_peer_hold(m->jb, m->peer_hold);
    if (r.flags & PL_MPKT_R_RECEPTION) adapt(m, &r);
    return PL_MEDIA_OK;
}

pl_media_err pl_media_receive(pl_media *m, const uint8_t *data, size_t len, pl_time now)
{
    if (len == 0) return PL_MEDIA_ERR_NOT_MEDIA;
    if (data[0] == PL_MPKT_REPORT) return receive_report(m, data, len, now);
    if (data[0] != PL_MPKT_VOICE) return PL_MEDIA_ERR_NOT_MEDIA;
    pl_mpkt_voice v;
    if (pl_mpkt_voice_decode(&v, data, len) != PL_MPKT_OK || pl_voice_packet_check(v.opus, v.opus_len) != PL_VOICE_OK) {
        m->st.malformed++;
        return PL_MEDIA_ERR_MALFORMED;
    }
    m->st.packets_received++;
    m->st.bytes_received += len;
    if (m->peer_hold) {
        /* Voice means the peer resumed, even if the report that said so was
         * lost. */
        m->peer_hold = false;
        pl_jitter_set_peer_hold(m->jb, false);
    }
    pl_rxstats_packet(&m->rx, v.seq, v.timestamp, now);
    pl_jitter_put(m->jb, v.seq, v.timestamp, v.flags, v.opus, v.opus_len, now);
    return PL_MEDIA_OK;
}

void pl_media_pull(pl_media *m, int16_t pcm[PL_VOICE_FRAME], pl_time now)
{
    pl_jitter_frame f = pl_jitter_pull(m->jb, now);
    bool had_fec;
    switch (f.action) {
    case PL_JITTER_EMPTY:
        memset(pcm, 0, sizeof(int16_t) * PL_VOICE_FRAME);
        m->st.frames_empty++;
        break;
    case PL_JITTER_PLAY:
        pl_voice_decode(m->dec, f.packet, f.len, pcm);
        m->st.frames_played++;
        break;
    case PL_JITTER_FEC:
        pl_voice_decode_fec(m->dec, f.packet, f.len, pcm, &had_fec);
        if (had_fec) m->st.frames_fec++;
        else m->st.frames_concealed++;
        break;
    case PL_JITTER_CONCEAL:
        pl_voice_conceal(m->dec, pcm);
        m->st.frames_concealed++;
        break;
    case PL_JITTER_SILENCE:
        /* Comfort noise continues from the decoder's state; a peer on hold
         * sends nothing to continue, so it is plain silence. */
        if (m->peer_hold) memset(pcm, 0, sizeof(int16_t) * PL_VOICE_FRAME);
        else pl_voice_conceal(m->dec, pcm);
        m->st.frames_silence++;
        break;
    }
}

void pl_media_set_mute(pl_media *m, bool mute) { m->muted = mute; }

void pl_media_set_hold(pl_media *m, bool hold, pl_time now)
{
    if (m->on_hold == hold) return;
    m->on_hold = hold;
    send_report(m, now);
}

pl_media_err pl_media_set_bitrate_range(pl_media *m, int min, int max)
{
    if (min < PL_VOICE_BITRATE_MIN || max > PL_VOICE_BITRATE_MAX || min > max) return PL_MEDIA_ERR_CONFIG;
    m->cfg.bitrate_min = min;
    m->cfg.bitrate_max = max;
    int nb = clamp_bitrate(m, m->bitrate);
    if (nb != m->bitrate && pl_voice_enc_set_bitrate(m->enc, nb) == PL_VOICE_OK) m->bitrate = nb;
    return PL_MEDIA_OK;
}

void pl_media_get_stats(const pl_media *m, pl_media_stats *out)
{
    *out = m->st;
    uint64_t expected = pl_rxstats_expected(&m->rx);
    out->loss_rx_total = expected ? (double)pl_rxstats_lost(&m->rx) / (double)expected : 0;
    out->jitter_rx = pl_rxstats_jitter_us(&m->rx);
    out->bitrate = m->bitrate;
    out->fec_loss_perc = pl_voice_enc_loss(m->enc);
    pl_jitter_stats js = pl_jitter_get_stats(m->jb);
    out->late = js.late;
    out->duplicate = js.duplicate;
    out->inserted = js.inserted;
    out->dropped = js.dropped;
    out->jb_delay = js.delay;
    out->jb_delay_avg = js.delay_avg;
    out->jb_target = js.target;
    out->concealed_ms = out->frames_concealed * PL_VOICE_FRAME_US / PL_MSEC;
    uint64_t voiced = out->frames_played + out->frames_fec + out->frames_concealed;
    out->concealed_fraction = voiced ? (double)out->frames_concealed / (double)voiced : 0;
    out->muted = m->muted;
    out->on_hold = m->on_hold;
    out->peer_on_hold = m->peer_hold;
}
