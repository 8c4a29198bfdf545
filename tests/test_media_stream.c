/*
 * test_media_stream.c - media payload formats, receiver reports (loss,
 * jitter, round-trip time), bitrate adaptation, mute and hold, and two media
 * streams talking over the deterministic simulator with loss and jitter.
 */
#include <math.h>
#include <stdlib.h>

#include "media_packet.h"
#include "rxstats.h"
#include "simnet.h"
#include "speech.h"
#include "stream.h"
#include "test.h"

#define T0 ((pl_time)1800000000 * PL_SEC)
#define FRAME PL_VOICE_FRAME

/* ---- formats ----------------------------------------------------------------- */

static void test_voice_packet_format(void)
{
    uint8_t opus[3] = {0x78, 0xaa, 0xbb};
    pl_mpkt_voice v = {.flags = PL_MPKT_F_MARKER, .seq = 0x1234, .timestamp = 0x89abcdef, .opus = opus,
                       .opus_len = 3};
    uint8_t buf[PL_MPKT_VOICE_MAX];
    size_t n;
    CHECK_EQ(pl_mpkt_voice_encode(&v, buf, sizeof buf, &n), PL_MPKT_OK);
    /* The layout docs/media.md gives. */
    uint8_t want[] = {0x80, 0x01, 0x12, 0x34, 0x89, 0xab, 0xcd, 0xef, 0x78, 0xaa, 0xbb};
    CHECK_EQ(n, sizeof want);
    CHECK(memcmp(buf, want, n) == 0);
    pl_mpkt_voice d;
    CHECK_EQ(pl_mpkt_voice_decode(&d, buf, n), PL_MPKT_OK);
    CHECK_EQ(d.flags, PL_MPKT_F_MARKER);
    CHECK_EQ(d.seq, 0x1234);
    CHECK_EQ(d.timestamp, 0x89abcdef);
    CHECK_EQ(d.opus_len, 3);
    CHECK(d.opus == buf + 8);
    CHECK(pl_mpkt_is_media(buf, n));

    /* Refusals. */
    CHECK_EQ(pl_mpkt_voice_decode(&d, buf, 8), PL_MPKT_ERR_MALFORMED); /* no Opus bytes */
    CHECK_EQ(pl_mpkt_voice_decode(&d, buf, 3), PL_MPKT_ERR_MALFORMED);
    CHECK_EQ(pl_mpkt_voice_decode(&d, buf, 0), PL_MPKT_ERR_MALFORMED);
    buf[1] = 0x04; /* a reserved flag */
    CHECK_EQ(pl_mpkt_voice_decode(&d, buf, n), PL_MPKT_ERR_MALFORMED);
    buf[1] = 0;
    buf[0] = 0x01; /* another module's payload */
    CHECK_EQ(pl_mpkt_voice_decode(&d, buf, n), PL_MPKT_ERR_TYPE);
    CHECK(!pl_mpkt_is_media(buf, n));
    uint8_t big[PL_MPKT_VOICE_MAX + 1] = {0x80};
    CHECK_EQ(pl_mpkt_voice_decode(&d, big, sizeof big), PL_MPKT_ERR_MALFORMED);
    CHECK_EQ(pl_mpkt_voice_decode(&d, big, sizeof big - 1), PL_MPKT_OK);
    CHECK_EQ(pl_mpkt_voice_encode(&v, buf, 10, &n), PL_MPKT_ERR_BUFFER);
    v.flags = 0x80;
    CHECK_EQ(pl_mpkt_voice_encode(&v, buf, sizeof buf, &n), PL_MPKT_ERR_MALFORMED);
}

static void test_report_format(void)
{
    pl_mpkt_report r = {.flags = PL_MPKT_R_RECEPTION | PL_MPKT_R_LSR, .fraction_lost = 0x19,
                        .cumulative_lost = 0x01020304, .highest_seq = 0x00010005, .jitter = 0x1e0,
                        .timestamp = 0xa0b0c0d0, .lsr = 0x11223344, .dlsr = 0x00008000};
    uint8_t buf[64];
    size_t n;
    CHECK_EQ(pl_mpkt_report_encode(&r, buf, sizeof buf, &n), PL_MPKT_OK);
    uint8_t want[] = {0x81, 0x03, 0x19, 0x00, 0x01, 0x02, 0x03, 0x04, 0x00, 0x01, 0x00, 0x05, 0x00, 0x00,
                      0x01, 0xe0, 0xa0, 0xb0, 0xc0, 0xd0, 0x11, 0x22, 0x33, 0x44, 0x00, 0x00, 0x80, 0x00};
    CHECK_EQ(n, PL_MPKT_REPORT_SIZE);
    CHECK_EQ(sizeof want, PL_MPKT_REPORT_SIZE);
    CHECK(memcmp(buf, want, n) == 0);
    pl_mpkt_report d;
    CHECK_EQ(pl_mpkt_report_decode(&d, buf, n), PL_MPKT_OK);
    CHECK(memcmp(&d, &r, sizeof r) == 0 || (d.flags == r.flags && d.lsr == r.lsr && d.dlsr == r.dlsr &&
                                            d.jitter == r.jitter && d.highest_seq == r.highest_seq));
    CHECK_EQ(pl_mpkt_report_decode(&d, buf, n - 1), PL_MPKT_ERR_MALFORMED);
    uint8_t longer[PL_MPKT_REPORT_SIZE + 1];
    memcpy(longer, buf, n);
    longer[n] = 0;
    CHECK_EQ(pl_mpkt_report_decode(&d, longer, n + 1), PL_MPKT_ERR_MALFORMED);
    buf[3] = 1; /* reserved byte */
    CHECK_EQ(pl_mpkt_report_decode(&d, buf, n), PL_MPKT_ERR_MALFORMED);
    buf[3] = 0;
    buf[1] = PL_MPKT_R_LSR; /* reception fields set but not flagged: not canonical */
    CHECK_EQ(pl_mpkt_report_decode(&d, buf, n), PL_MPKT_ERR_MALFORMED);
    buf[1] = PL_MPKT_R_RECEPTION; /* lsr set but not flagged */
    CHECK_EQ(pl_mpkt_report_decode(&d, buf, n), PL_MPKT_ERR_MALFORMED);
    buf[1] = 0x0b; /* an unknown flag */
    CHECK_EQ(pl_mpkt_report_decode(&d, buf, n), PL_MPKT_ERR_MALFORMED);

    /* Compact time: 1/65536 s, and the RTT arithmetic across a wrap. */
    CHECK_EQ(pl_mpkt_us_to_compact(PL_SEC), 65536);
    CHECK_EQ(pl_mpkt_us_to_compact(500 * PL_MSEC), 32768);
    CHECK_EQ(pl_mpkt_compact_to_us(65536), PL_SEC);
    pl_time t = (pl_time)65536 * PL_SEC - 100 * PL_MSEC; /* just before a wrap */
    pl_mpkt_report rr = {.flags = PL_MPKT_R_LSR, .lsr = pl_mpkt_compact_time(t),
                         .dlsr = pl_mpkt_us_to_compact(30 * PL_MSEC)};
    pl_time rtt;
    CHECK(pl_mpkt_report_rtt(&rr, t + 250 * PL_MSEC, &rtt));
    CHECK(rtt >= 219 * PL_MSEC && rtt <= 221 * PL_MSEC);
    CHECK(!pl_mpkt_report_rtt(&rr, t + 10 * PL_MSEC, &rtt)); /* negative */
    rr.flags = 0;
    CHECK(!pl_mpkt_report_rtt(&rr, t + 250 * PL_MSEC, &rtt));
}

/* ---- receiver statistics on known patterns ---------------------------------- */

static void test_rxstats_loss_and_jitter(void)
{
    pl_rxstats st;
    pl_rxstats_init(&st);
    /* 200 packets from seq 65500 (wrapping), every 10th lost, one duplicate;
     * arrival alternates 0 and 10 ms late, so the transit differences are
     * 10 ms (480 units) except across a lost packet (0). The reference is
     * RFC 3550's estimator J += (|D| - J) / 16 in floating point. */
    double ref = 0, prev_transit = 0;
    bool have_prev = false;
    uint16_t seq = 65500;
    uint32_t ts = 4294960000u;
    int lost = 0;
    for (int i = 0; i < 200; i++, seq++, ts += FRAME) {
        if (i % 10 == 5) {
            lost++;
            continue;
        }
        pl_time arrival = T0 + (pl_time)i * 20 * PL_MSEC + (i % 2 ? 10 * PL_MSEC : 0);
        CHECK(pl_rxstats_packet(&st, seq, ts, arrival));
        double transit = (double)(arrival - T0) * 48 / 1000 - (double)i * FRAME;
        if (have_prev) ref += (fabs(transit - prev_transit) - ref) / 16;
        prev_transit = transit;
        have_prev = true;
        if (i == 100) CHECK(!pl_rxstats_packet(&st, seq, ts, arrival + PL_MSEC));
    }
    CHECK_EQ(pl_rxstats_expected(&st), 200); /* i = 0 and i = 199 both arrived */
    CHECK_EQ(pl_rxstats_lost(&st), lost);
    CHECK_EQ(st.duplicates, 1);
    pl_mpkt_report r;
    memset(&r, 0, sizeof r);
    pl_rxstats_fill_report(&st, &r);
    CHECK(r.flags & PL_MPKT_R_RECEPTION);
    CHECK_EQ(r.cumulative_lost, 20);
    /* 20 of 200 expected: 25.6/256, rounded down as RFC 3550 does. */
    CHECK_EQ(r.fraction_lost, 25);
    /* Extended highest: the sequence wrapped once. */
    CHECK_EQ(r.highest_seq, (1u << 16) | (uint16_t)(65500 + 199));
    printf("  jitter estimate %u units (reference %.1f)\n", r.jitter, ref);
    CHECK(fabs(r.jitter - ref) <= 2);
    CHECK(r.jitter > 400 && r.jitter < 480);
    CHECK(pl_rxstats_jitter_us(&st) == (pl_time)r.jitter * 1000 / 48);

    /* The next interval: 10 packets, none lost, so the fraction is 0 while
     * the cumulative count stays. */
    for (int i = 200; i < 210; i++, seq++, ts += FRAME)
        pl_rxstats_packet(&st, seq, ts, T0 + (pl_time)i * 20 * PL_MSEC);
    pl_rxstats_fill_report(&st, &r);
    CHECK_EQ(r.fraction_lost, 0);
    CHECK_EQ(r.cumulative_lost, 20);
    /* Half of the next 20 lost: 128/256. */
    for (int i = 210; i < 230; i++, seq++, ts += FRAME)
        if (i % 2) pl_rxstats_packet(&st, seq, ts, T0 + (pl_time)i * 20 * PL_MSEC);
    pl_rxstats_fill_report(&st, &r);
    CHECK_EQ(r.fraction_lost, 128);
    CHECK_EQ(r.cumulative_lost, 30);
    /* Packets from before the first one (reordered at the start). */
    pl_rxstats_init(&st);
    pl_rxstats_packet(&st, 10, 9600, T0);
    pl_rxstats_packet(&st, 9, 8640, T0);
    pl_rxstats_packet(&st, 11, 10560, T0);
    CHECK_EQ(pl_rxstats_expected(&st), 3);
    CHECK_EQ(pl_rxstats_lost(&st), 0);
    /* Nothing yet: no reception block. */
    pl_rxstats_init(&st);
    memset(&r, 0, sizeof r);
    pl_rxstats_fill_report(&st, &r);
    CHECK_EQ(r.flags, 0);
}

/* ---- two streams carried by hand -------------------------------------------- */

typedef struct box {
    uint8_t data[16][PL_MPKT_VOICE_MAX];
    size_t len[16];
    int n;
} box;

static void box_send(void *ctx, const uint8_t *payload, size_t len)
{
    box *b = ctx;
    if (b->n == 16) return;
    memcpy(b->data[b->n], payload, len);
    b->len[b->n++] = len;
}

/* Returns the last report in the box and empties it. */
static bool take_report(box *b, uint8_t *out, size_t *len)
{
    bool found = false;
    for (int i = 0; i < b->n; i++)
        if (b->data[i][0] == PL_MPKT_REPORT) {
            memcpy(out, b->data[i], b->len[i]);
            *len = b->len[i];
            found = true;
        }
    b->n = 0;
    return found;
}

/* A report round trip with known delays: A's report takes 30 ms to B, B
 * answers 200 ms later, B's report takes 50 ms back. A measures 80 ms. */
static void test_rtt_from_report_round_trip(void)
{
    box ba = {0}, bb = {0};
    pl_media_io ia = {&ba, box_send}, ib = {&bb, box_send};
    pl_media *a, *b;
    pl_media_config cfg = {.report_interval = PL_SEC};
    CHECK_EQ(pl_media_new(&a, &cfg, &ia, T0), PL_MEDIA_OK);
    CHECK_EQ(pl_media_new(&b, &cfg, &ib, T0 + 333 * PL_MSEC), PL_MEDIA_OK);
    CHECK_EQ(pl_media_next_timeout(a), T0 + PL_SEC);
    pl_time t = T0 + PL_SEC;
    pl_media_tick(a, t - 1);
    CHECK_EQ(ba.n, 0);
    pl_media_tick(a, t);
    uint8_t rep[64];
    size_t n;
    CHECK(take_report(&ba, rep, &n));
    CHECK_EQ(pl_media_receive(b, rep, n, t + 30 * PL_MSEC), PL_MEDIA_OK);
    pl_media_set_hold(b, true, t + 230 * PL_MSEC); /* any report will do: hold sends one at once */
    CHECK(take_report(&bb, rep, &n));
    pl_mpkt_report r;
    CHECK_EQ(pl_mpkt_report_decode(&r, rep, n), PL_MPKT_OK);
    CHECK(r.flags & PL_MPKT_R_LSR);
    CHECK(r.flags & PL_MPKT_R_HOLD);
    CHECK_EQ(pl_media_receive(a, rep, n, t + 280 * PL_MSEC), PL_MEDIA_OK);
    pl_media_stats st;
    pl_media_get_stats(a, &st);
    printf("  RTT measured %.3f ms (80 expected)\n", st.rtt / 1000.0);
    CHECK(st.rtt_known);
    CHECK(st.rtt >= 79900 && st.rtt <= 80100);
    CHECK(st.peer_on_hold);
    /* B measures too, once A answers. */
    pl_media_tick(a, t + 2 * PL_SEC);
    CHECK(take_report(&ba, rep, &n));
    CHECK_EQ(pl_media_receive(b, rep, n, t + 2 * PL_SEC + 40 * PL_MSEC), PL_MEDIA_OK);
    pl_media_get_stats(b, &st);
    /* B's report left at t+230, A's answer at t+2000 after 1720 ms of delay,
     * arriving at t+2040: 90 ms. */
    CHECK(st.rtt >= 89900 && st.rtt <= 90100);
    pl_media_free(a);
    pl_media_free(b);
}

/* Reports of loss cut the bitrate and size the FEC; clean reports bring the
 * bitrate back up to the maximum. */
static void test_bitrate_follows_reported_loss(void)
{
    box bx = {0};
    pl_media_io io = {&bx, box_send};
    pl_media *m;
    CHECK_EQ(pl_media_new(&m, NULL, &io, T0), PL_MEDIA_OK);
    pl_media_stats st;
    pl_media_get_stats(m, &st);
    CHECK_EQ(st.bitrate, 32000);
    CHECK_EQ(st.fec_loss_perc, 0);
    uint8_t buf[64];
    size_t n;
    pl_time t = T0;
    pl_mpkt_report r = {.flags = PL_MPKT_R_RECEPTION, .fraction_lost = 51 /* 20% */};
    int prev = 32000, reports = 0;
    while (st.bitrate > 16000 && reports < 20) {
        reports++;
        t += PL_SEC;
        r.timestamp = pl_mpkt_compact_time(t);
        CHECK_EQ(pl_mpkt_report_encode(&r, buf, sizeof buf, &n), PL_MPKT_OK);
        CHECK_EQ(pl_media_receive(m, buf, n, t), PL_MEDIA_OK);
        pl_media_get_stats(m, &st);
        CHECK(st.bitrate < prev);
        prev = st.bitrate;
    }
    printf("  after %d reports of 20%% loss: %d bit/s, FEC sized for %d%%\n", reports, st.bitrate,
           st.fec_loss_perc);
    /* Each report of 20% loss takes 10% off: 32 to 16 kbit/s in 7. */
    CHECK_EQ(st.bitrate, 16000);
    CHECK(reports <= 8);
    CHECK_EQ(st.fec_loss_perc, 20);
    CHECK(st.loss_tx > 0.19 && st.loss_tx < 0.21);
    /* 5% loss: hold the bitrate. */
    r.fraction_lost = 13;
    t += PL_SEC;
    CHECK_EQ(pl_mpkt_report_encode(&r, buf, sizeof buf, &n), PL_MPKT_OK);
    CHECK_EQ(pl_media_receive(m, buf, n, t), PL_MEDIA_OK);
    pl_media_get_stats(m, &st);
    CHECK_EQ(st.bitrate, 16000);
    /* Clean: back up, one step per report. */
    r.fraction_lost = 0;
    reports = 0;
    while (st.bitrate < 40000 && reports < 30) {
        t += PL_SEC;
        CHECK_EQ(pl_mpkt_report_encode(&r, buf, sizeof buf, &n), PL_MPKT_OK);
        CHECK_EQ(pl_media_receive(m, buf, n, t), PL_MEDIA_OK);
        pl_media_get_stats(m, &st);
        reports++;
    }
    printf("  back to %d bit/s after %d clean reports; FEC sized for %d%%\n", st.bitrate, reports,
           st.fec_loss_perc);
    CHECK_EQ(st.bitrate, 40000);
    CHECK(reports >= 5 && reports <= 15);
    CHECK(st.fec_loss_perc <= 1);
    /* The range can be narrowed at run time. */
    CHECK_EQ(pl_media_set_bitrate_range(m, 16000, 24000), PL_MEDIA_OK);
    pl_media_get_stats(m, &st);
    CHECK_EQ(st.bitrate, 24000);
    CHECK_EQ(pl_media_set_bitrate_range(m, 30000, 20000), PL_MEDIA_ERR_CONFIG);
    pl_media_free(m);
}

static void test_hostile_payloads_refused(void)
{
    box bx = {0};
    pl_media_io io = {&bx, box_send};
    pl_media *m;
    CHECK_EQ(pl_media_new(&m, NULL, &io, T0), PL_MEDIA_OK);
    uint8_t p[16] = {0x80, 0, 0, 1, 0, 0, 0, 0, 0x04 /* stereo Opus */, 1, 2};
    CHECK_EQ(pl_media_receive(m, p, 11, T0), PL_MEDIA_ERR_MALFORMED);
    p[8] = 0x18; /* SILK 60 ms */
    CHECK_EQ(pl_media_receive(m, p, 11, T0), PL_MEDIA_ERR_MALFORMED);
    CHECK_EQ(pl_media_receive(m, p, 0, T0), PL_MEDIA_ERR_NOT_MEDIA);
    p[0] = 0x05;
    CHECK_EQ(pl_media_receive(m, p, 11, T0), PL_MEDIA_ERR_NOT_MEDIA);
    p[0] = 0x81;
    CHECK_EQ(pl_media_receive(m, p, 11, T0), PL_MEDIA_ERR_MALFORMED);
    pl_media_stats st;
    pl_media_get_stats(m, &st);
    CHECK_EQ(st.malformed, 3);
    CHECK_EQ(st.packets_received, 0);
    int16_t pcm[FRAME];
    pl_media_pull(m, pcm, T0);
    for (int i = 0; i < FRAME; i++) CHECK_EQ(pcm[i], 0);
    pl_media_config bad = {.bitrate_min = 30000, .bitrate_max = 20000};
    pl_media *m2;
    CHECK_EQ(pl_media_new(&m2, &bad, &io, T0), PL_MEDIA_ERR_CONFIG);
    CHECK_EQ(pl_media_new(&m2, NULL, NULL, T0), PL_MEDIA_ERR_CONFIG);
    CHECK(strcmp(pl_media_strerror(PL_MEDIA_ERR_NOT_MEDIA), "not a media payload") == 0);
    pl_media_free(m);
}

/* ---- two streams over the simulator ----------------------------------------- */

static int16_t *speech;
static size_t speech_frames;

static void load_speech(void)
{
    if (speech) return;
    size_t n;
    speech = pl_test_speech("Hello Bob, this is Alice calling over Parley. Can you hear me well? "
                            "Let us count: one, two, three, four, five, six.",
                            &n);
    CHECK(speech != NULL);
    speech_frames = n / FRAME;
}

typedef struct endpoint {
    pl_media *m;
    pl_simnet *net;
    pl_addr addr, peer;
    const int16_t *src;
    size_t src_frames, pos;
    int16_t *out;
    size_t out_frames, out_pos;
    pl_time period;
    pl_time stop;
    bool mute_at_half, hold_at_half;
    size_t resume_at; /* frame at which a hold ends (0: never) */
} endpoint;

static void ep_send(void *ctx, const uint8_t *payload, size_t len)
{
    endpoint *e = ctx;
    pl_simnet_send(e->net, &e->addr, &e->peer, payload, len);
}

static void ep_recv(void *ctx, const pl_addr *from, const pl_addr *to, const uint8_t *data, size_t len, pl_time now)
{
    endpoint *e = ctx;
    (void)from;
    (void)to;
    pl_media_receive(e->m, data, len, now);
}

static void ep_timer(void *ctx, pl_time now)
{
    endpoint *e = ctx;
    int16_t frame[FRAME];
    if (e->pos < e->src_frames) memcpy(frame, e->src + e->pos * FRAME, sizeof frame);
    else memset(frame, 0, sizeof frame);
    if (e->pos == e->src_frames / 2) {
        if (e->mute_at_half) pl_media_set_mute(e->m, true);
        if (e->hold_at_half) pl_media_set_hold(e->m, true, now);
    }
    if (e->resume_at && e->pos == e->resume_at) pl_media_set_hold(e->m, false, now);
    e->pos++;
    pl_media_capture(e->m, frame, now);
    pl_media_pull(e->m, frame, now);
    if (e->out_pos < e->out_frames) memcpy(e->out + e->out_pos++ * FRAME, frame, sizeof frame);
    pl_media_tick(e->m, now);
    if (now + e->period < e->stop) pl_simnet_timer(e->net, now + e->period, ep_timer, e);
}

static void ep_init(endpoint *e, pl_simnet *net, const char *addr, const char *peer, const int16_t *src,
                    size_t src_frames, size_t out_frames, pl_time start, pl_time stop)
{
    memset(e, 0, sizeof *e);
    e->net = net;
    CHECK(pl_addr_parse(&e->addr, addr, 0));
    CHECK(pl_addr_parse(&e->peer, peer, 0));
    e->src = src;
    e->src_frames = src_frames;
    e->out = calloc(out_frames * FRAME, sizeof(int16_t));
    CHECK(e->out != NULL);
    e->out_frames = out_frames;
    e->period = 20 * PL_MSEC;
    e->stop = stop;
    pl_media_config cfg = {.rng = pl_simnet_rng(net)};
    pl_media_io io = {e, ep_send};
    CHECK_EQ(pl_media_new(&e->m, &cfg, &io, start), PL_MEDIA_OK);
    CHECK(pl_simnet_attach(net, &e->addr, ep_recv, e));
    pl_simnet_timer(net, start, ep_timer, e);
}

/* The mean, over one-second pieces of speech, of the best correlation of
 * each piece with the output at any delay up to 400 ms: the jitter buffer
 * moves the delay during the call, so one global lag will not do. */
static double piecewise_corr(const int16_t *src, size_t src_frames, const int16_t *out, size_t out_frames)
{
    double sum = 0;
    int pieces = 0;
    size_t piece = 48000, max_lag = 400 * 48;
    for (size_t start = 0; start + piece + max_lag <= out_frames * FRAME && start + piece <= src_frames * FRAME;
         start += piece) {
        if (pl_test_rms(src + start, piece) < 500) continue; /* mostly silence */
        double best;
        pl_test_best_lag_fast(src + start, out + start, piece, max_lag, &best);
        sum += best;
        pieces++;
    }
    return pieces ? sum / pieces : 0;
}

static void run_call_drift(pl_sim_link link, uint64_t seed, pl_time b_period, pl_media_stats *sa,
                           pl_media_stats *sb, double *corr_ab, double *corr_ba);

static void run_call(pl_sim_link link, uint64_t seed, pl_media_stats *sa, pl_media_stats *sb, double *corr_ab,
                     double *corr_ba)
{
    run_call_drift(link, seed, 20 * PL_MSEC, sa, sb, corr_ab, corr_ba);
}

/* B's sound card runs at b_period per frame (A's at exactly 20 ms). */
static void run_call_drift(pl_sim_link link, uint64_t seed, pl_time b_period, pl_media_stats *sa,
                           pl_media_stats *sb, double *corr_ab, double *corr_ba)
{
    load_speech();
    pl_simnet *net = pl_simnet_new(seed, T0);
    CHECK(net != NULL);
    pl_simnet_set_default_link(net, link);
    pl_time stop = T0 + (pl_time)(speech_frames + 50) * 20 * PL_MSEC;
    endpoint a, b;
    size_t out_frames = speech_frames + 50;
    ep_init(&a, net, "192.0.2.1:5000", "192.0.2.2:5000", speech, speech_frames, out_frames, T0, stop);
    /* B talks too (the same words), its clock 7 ms out of phase. */
    ep_init(&b, net, "192.0.2.2:5000", "192.0.2.1:5000", speech, speech_frames, out_frames, T0 + 7 * PL_MSEC,
            stop);
    b.period = b_period;
    pl_simnet_run_until(net, stop + PL_SEC);
    pl_media_get_stats(a.m, sa);
    pl_media_get_stats(b.m, sb);
    *corr_ab = piecewise_corr(speech, speech_frames, b.out, out_frames);
    *corr_ba = piecewise_corr(speech, speech_frames, a.out, out_frames);
    pl_media_free(a.m);
    pl_media_free(b.m);
    free(a.out);
    free(b.out);
    pl_simnet_free(net);
}

static void print_stats(const char *who, const pl_media_stats *s)
{
    printf("  %s: sent %llu pkts (%llu DTX frames), rtt %.1f ms, loss rx %.1f%% (total %.1f%%) tx %.1f%%, "
           "jitter rx %.1f ms, bitrate %d, FEC %d%%, played %llu fec %llu concealed %llu (%.1f%%) silence "
           "%llu, late %llu, jb delay avg %.1f ms\n",
           who, (unsigned long long)s->packets_sent, (unsigned long long)s->frames_dtx, s->rtt / 1000.0,
           s->loss_rx * 100, s->loss_rx_total * 100, s->loss_tx * 100, s->jitter_rx / 1000.0, s->bitrate,
           s->fec_loss_perc, (unsigned long long)s->frames_played, (unsigned long long)s->frames_fec,
           (unsigned long long)s->frames_concealed, s->concealed_fraction * 100,
           (unsigned long long)s->frames_silence, (unsigned long long)s->late, s->jb_delay_avg / 1000.0);
}

static void test_call_over_clean_network(void)
{
    pl_sim_link link = {.latency = 40 * PL_MSEC};
    pl_media_stats sa, sb;
    double cab, cba;
    run_call(link, 1, &sa, &sb, &cab, &cba);
    print_stats("clean A", &sa);
    printf("  speech correlation A->B %.3f, B->A %.3f\n", cab, cba);
    CHECK(cab >= 0.9 && cba >= 0.9);
    CHECK(sa.rtt_known && sa.rtt >= 79 * PL_MSEC && sa.rtt <= 81 * PL_MSEC);
    CHECK_EQ(sa.frames_concealed, 0);
    CHECK_EQ(sb.frames_concealed, 0);
    CHECK(sa.loss_tx == 0 && sb.loss_rx_total == 0);
    CHECK(sa.jb_delay_avg <= 25 * PL_MSEC);
    CHECK(sa.bitrate == 40000); /* clean reports raised it from 32000 */
    CHECK(sa.frames_dtx > 0);   /* the pauses in speech */
}

static void test_call_over_lossy_jittery_network(void)
{
    pl_sim_link link = {.latency = 40 * PL_MSEC, .jitter = 30 * PL_MSEC, .loss_ppm = 50000};
    pl_media_stats sa, sb;
    double cab, cba;
    run_call(link, 2, &sa, &sb, &cab, &cba);
    print_stats("lossy A", &sa);
    print_stats("lossy B", &sb);
    printf("  speech correlation A->B %.3f, B->A %.3f\n", cab, cba);
    /* Bound: 5% loss concealed or rebuilt keeps most of the waveform. */
    CHECK(cab >= 0.6 && cba >= 0.6);
    /* RTT 80 ms plus up to 60 ms of jitter on the two legs. */
    CHECK(sa.rtt >= 80 * PL_MSEC && sa.rtt <= 140 * PL_MSEC);
    CHECK(sa.loss_rx_total > 0.02 && sa.loss_rx_total < 0.09);
    CHECK(sb.loss_tx > 0 || sb.lost_tx_total > 0);
    /* Uniform 0-30 ms jitter: RFC 3550's estimator gives about a third of it. */
    CHECK(sa.jitter_rx >= 5 * PL_MSEC && sa.jitter_rx <= 15 * PL_MSEC);
    /* Loss was reported: FEC is on and the bitrate came down from 32 kbit/s. */
    CHECK(sa.fec_loss_perc >= 2);
    CHECK(sa.bitrate < 40000);
    CHECK(sb.frames_fec > 0);
    /* Concealment stays near the loss rate; little is late. */
    CHECK(sb.concealed_fraction < 0.08);
    CHECK(sb.late <= sa.packets_sent / 20);
    CHECK(sb.jb_delay_avg <= 80 * PL_MSEC);
}

/* The two sound cards' clocks differ by 0.5% (fifty times what cards
 * usually do): each jitter buffer follows,
 * one by dropping frames and the other by inserting them, mostly in the
 * pauses, and the speech still comes through. */
static void test_call_with_clock_drift(void)
{
    pl_sim_link link = {.latency = 30 * PL_MSEC, .jitter = 5 * PL_MSEC};
    pl_media_stats sa, sb;
    double cab, cba;
    run_call_drift(link, 4, 20100, &sa, &sb, &cab, &cba);
    print_stats("B 0.5% slow: A", &sa);
    print_stats("B 0.5% slow: B", &sb);
    printf("  inserted by A %llu, dropped by B %llu; speech correlation A->B %.3f, B->A %.3f\n",
           (unsigned long long)sa.inserted, (unsigned long long)sb.dropped, cab, cba);
    /* About 8 s at 0.5%: 40 ms, two frames each way. */
    CHECK(sa.inserted >= 2);
    CHECK(sb.dropped >= 2);
    CHECK(sa.frames_concealed + sb.frames_concealed <= 6);
    CHECK(sa.jb_delay <= 60 * PL_MSEC && sb.jb_delay <= 60 * PL_MSEC);
    CHECK(cab >= 0.85 && cba >= 0.85);
}

/* Mute: packets dwindle to DTX. Hold: no voice at all, the peer plays
 * silence and does not count it as concealment; after resuming the voice
 * comes back. */
static void test_mute_and_hold(void)
{
    load_speech();
    for (int mode = 0; mode < 2; mode++) {
        pl_simnet *net = pl_simnet_new(3, T0);
        pl_sim_link link = {.latency = 20 * PL_MSEC};
        pl_simnet_set_default_link(net, link);
        /* A repeats a constant tone so that every frame is sound. */
        size_t frames = 500;
        int16_t *tone = malloc(frames * FRAME * sizeof *tone);
        CHECK(tone != NULL);
        for (size_t i = 0; i < frames * FRAME; i++) tone[i] = (int16_t)(6000 * sin(2 * M_PI * 440 * i / 48000.0));
        pl_time stop = T0 + frames * 20 * PL_MSEC;
        endpoint a, b;
        ep_init(&a, net, "192.0.2.1:5000", "192.0.2.2:5000", tone, frames, frames, T0, stop);
        ep_init(&b, net, "192.0.2.2:5000", "192.0.2.1:5000", NULL, 0, frames, T0 + 3 * PL_MSEC, stop);
        if (mode == 0) {
            a.mute_at_half = true;
        } else {
            a.hold_at_half = true;
            a.resume_at = frames * 3 / 4;
        }
        pl_simnet_run_until(net, T0 + frames / 2 * 20 * PL_MSEC);
        pl_media_stats half;
        pl_media_get_stats(a.m, &half);
        pl_media_stats bhalf;
        pl_media_get_stats(b.m, &bhalf);
        pl_simnet_run_until(net, stop + PL_SEC);
        pl_media_stats sa, sb;
        pl_media_get_stats(a.m, &sa);
        pl_media_get_stats(b.m, &sb);
        uint64_t second_half = sa.packets_sent - half.packets_sent;
        printf("  %s: first half %llu packets, second half %llu; B silence %llu, concealed %llu\n",
               mode ? "hold" : "mute", (unsigned long long)half.packets_sent, (unsigned long long)second_half,
               (unsigned long long)sb.frames_silence, (unsigned long long)sb.frames_concealed);
        CHECK(half.packets_sent >= 240);
        if (mode == 0) {
            CHECK(sa.muted);
            CHECK(second_half <= 40);
            /* The last tenth of B's output is comfort noise at most, not a tone. */
            CHECK(pl_test_rms(b.out + (frames - 50) * FRAME, 40 * FRAME) < 100);
        } else {
            /* Held for a quarter of the call, then resumed. */
            CHECK(!sa.on_hold);
            CHECK(!sb.peer_on_hold);
            CHECK(second_half >= 120 && second_half <= 126);
            CHECK(sb.frames_silence >= 120);
            CHECK(sb.frames_concealed <= 3);
            for (size_t i = (frames * 55 / 100) * FRAME; i < (frames * 70 / 100) * FRAME; i++) CHECK_EQ(b.out[i], 0);
            CHECK(pl_test_rms(b.out + (frames - 40) * FRAME, 30 * FRAME) > 2000);
            /* Reports flowed while on hold. */
            CHECK(sa.reports_sent >= 8);
        }
        CHECK(bhalf.frames_played >= 230);
        pl_media_free(a.m);
        pl_media_free(b.m);
        free(a.out);
        free(b.out);
        free(tone);
        pl_simnet_free(net);
    }
}

int main(void)
{
    RUN(test_voice_packet_format);
    RUN(test_report_format);
    RUN(test_rxstats_loss_and_jitter);
    RUN(test_rtt_from_report_round_trip);
    RUN(test_bitrate_follows_reported_loss);
    RUN(test_hostile_payloads_refused);
    RUN(test_call_over_clean_network);
    RUN(test_call_over_lossy_jittery_network);
    RUN(test_call_with_clock_drift);
    RUN(test_mute_and_hold);
    free(speech);
    return pl_test_summary();
}
