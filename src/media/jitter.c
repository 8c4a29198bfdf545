/* jitter.c - adaptive jitter buffer; see jitter.h for how it decides. */
#include "jitter.h"

#include <stdlib.h>
#include <string.h>

#include "media_packet.h"
#include "rxstats.h"

#define FRAME_TS PL_VOICE_FRAME
#define FRAME_US ((int64_t)PL_VOICE_FRAME_US)
/* Extended counters start here so that reordering at the start never
 * underflows (as in rxstats.c). */
#define EXT_OFFSET (1ull << 32)
/* A packet this far from the play pointer means the peer's clock jumped. */
#define RESYNC_TS ((uint64_t)PL_VOICE_RATE)
/* Persistent excess delay is shed even in speech after this many ticks. */
#define EXCESS_TICKS 50
/* Once more than 1% of recent speech frames are lost, the target keeps one
 * frame more so that the packet after a lost one is usually here in time to
 * rebuild it from FEC. */
#define FEC_LOSS_Q16 655
/* Excess delay shed at once even in speech. */
#define EXCESS_LARGE (60 * (int64_t)PL_MSEC)

typedef struct slot {
    bool used;
    uint8_t flags;
    uint16_t len;
    uint64_t seq; /* extended */
    uint64_t ts;  /* extended */
    pl_time arrival;
    uint8_t data[PL_VOICE_MAX_PACKET];
} slot;

struct pl_jitter {
    pl_jitter_config cfg;
    const pl_mem *mem;
    slot slots[PL_JITTER_SLOTS];
    /* Delay samples: a ring in arrival order and the same values sorted. */
    int64_t ring[PL_JITTER_WINDOW];
    int64_t sorted[PL_JITTER_WINDOW];
    int count, head;

    bool started;  /* a packet arrived since the last reset */
    bool playing;  /* the first frame was played */
    uint64_t max_seq, max_ts;
    uint64_t next_ts; /* the frame the play pointer is at */
    bool have_last_seq;
    uint64_t last_seq; /* of the last packet played or dropped */
    bool in_silence;   /* the last packet played said DTX */
    bool peer_hold;
    int far_behind_run;
    int excess_ticks;
    uint32_t loss_q16; /* recent fraction of speech frames lost, times 65536 (EWMA) */
    pl_replay seen;

    pl_jitter_stats st;
    uint64_t delay_sum, delay_n, wait_sum, wait_n;
};

static int64_t ts_us(uint64_t ts) { return (int64_t)(ts * 1000 / 48); }

pl_jitter *pl_jitter_new(const pl_jitter_config *config, const pl_mem *mem)
{
    if (!mem) mem = pl_mem_system();
    pl_jitter *jb = mem->calloc(mem->ctx, 1, sizeof *jb);
    if (!jb) return NULL;
    jb->mem = mem;
    if (config) jb->cfg = *config;
    if (!jb->cfg.quantile_permille || jb->cfg.quantile_permille > 1000) jb->cfg.quantile_permille = 950;
    if (!jb->cfg.margin) jb->cfg.margin = 3 * PL_MSEC;
    if (!jb->cfg.max_delay) jb->cfg.max_delay = 500 * PL_MSEC;
    if (!jb->cfg.hysteresis) jb->cfg.hysteresis = 5 * PL_MSEC;
    pl_jitter_reset(jb);
    return jb;
}

void pl_jitter_free(pl_jitter *jb)
{
    if (jb) jb->mem->free(jb->mem->ctx, jb);
}

/* Forgets packets and estimates but keeps the counters and settings. */
static void restart(pl_jitter *jb)
{
    for (int i = 0; i < PL_JITTER_SLOTS; i++) jb->slots[i].used = false;
    jb->count = jb->head = 0;
    jb->started = jb->playing = false;
    jb->have_last_seq = false;
    jb->in_silence = false;
    jb->far_behind_run = 0;
    jb->excess_ticks = 0;
    jb->loss_q16 = 0;
    pl_replay_reset(&jb->seen);
}

void pl_jitter_reset(pl_jitter *jb)
{
    restart(jb);
    jb->peer_hold = false;
    memset(&jb->st, 0, sizeof jb->st);
    jb->delay_sum = jb->delay_n = jb->wait_sum = jb->wait_n = 0;
}

void pl_jitter_set_peer_hold(pl_jitter *jb, bool hold) { jb->peer_hold = hold; }

/* Binary search: the first index in sorted[0..count) whose value is >= v. */
static int lower_bound(const int64_t *a, int n, int64_t v)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (a[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static void window_add(pl_jitter *jb, int64_t d)
{
    if (jb->count == PL_JITTER_WINDOW) {
        int64_t old = jb->ring[jb->head];
        int i = lower_bound(jb->sorted, jb->count, old);
        memmove(&jb->sorted[i], &jb->sorted[i + 1], sizeof(int64_t) * (size_t)(jb->count - i - 1));
        jb->count--;
    }
    jb->ring[jb->head] = d;
    jb->head = (jb->head + 1) % PL_JITTER_WINDOW;
    int i = lower_bound(jb->sorted, jb->count, d);
    memmove(&jb->sorted[i + 1], &jb->sorted[i], sizeof(int64_t) * (size_t)(jb->count - i));
    jb->sorted[i] = d;
    jb->count++;
}

#define RECENT 50 /* samples: one second of talk */

static int64_t recent_min(const pl_jitter *jb)
{
    int n = jb->count < RECENT ? jb->count : RECENT;
    int64_t m = INT64_MAX;
    for (int i = 1; i <= n; i++) {
        int64_t d = jb->ring[(jb->head - i + PL_JITTER_WINDOW) % PL_JITTER_WINDOW];
        if (d < m) m = d;
    }
    return m;
}

static slot *find_frame(pl_jitter *jb, uint64_t ts)
{
    for (int i = 0; i < PL_JITTER_SLOTS; i++) {
        slot *s = &jb->slots[i];
        if (s->used && s->ts >= ts && s->ts < ts + FRAME_TS) return s;
    }
    return NULL;
}

static slot *find_earliest(pl_jitter *jb)
{
    slot *best = NULL;
    for (int i = 0; i < PL_JITTER_SLOTS; i++) {
        slot *s = &jb->slots[i];
        if (s->used && (!best || s->ts < best->ts)) best = s;
    }
    return best;
}

void pl_jitter_put(pl_jitter *jb, uint16_t seq, uint32_t timestamp, uint8_t flags, const uint8_t *opus, size_t len,
                   pl_time now)
{
    if (len == 0 || len > PL_VOICE_MAX_PACKET) return;
    uint64_t ext_seq = 0, ext_ts = 0;
    if (jb->started) {
        ext_seq = pl_rxstats_extend16(jb->max_seq, seq);
        ext_ts = pl_rxstats_extend32(jb->max_ts, timestamp);
        bool far_ahead = ext_ts > jb->next_ts + RESYNC_TS;
        bool far_behind = ext_ts + RESYNC_TS < jb->next_ts;
        if (far_behind) jb->far_behind_run++;
        else jb->far_behind_run = 0;
        /* A far-behind packet that is also old by sequence number is just
         * very late; a newer one (or a run of them) means the peer's
         * timestamps jumped back. */
        if (far_ahead || (far_behind && (ext_seq > jb->max_seq || jb->far_behind_run >= 3))) {
            restart(jb);
            jb->st.resyncs++;
        }
    }
    if (!jb->started) {
        ext_seq = EXT_OFFSET + seq;
        ext_ts = EXT_OFFSET + timestamp;
        jb->started = true;
        jb->max_seq = ext_seq;
        jb->max_ts = ext_ts;
        jb->next_ts = ext_ts;
    }
    if (!pl_replay_accept(&jb->seen, ext_seq)) {
        jb->st.duplicate++;
        return;
    }
    if (ext_seq > jb->max_seq) jb->max_seq = ext_seq;
    if (ext_ts > jb->max_ts) jb->max_ts = ext_ts;
    window_add(jb, (int64_t)now - ts_us(ext_ts));

    if (!jb->playing) {
        /* Still priming: start from the earliest frame that arrived. */
        if (ext_ts < jb->next_ts) jb->next_ts = ext_ts;
    } else if (ext_ts + FRAME_TS <= jb->next_ts) {
        jb->st.late++;
        return;
    }
    slot *free_slot = NULL;
    for (int i = 0; i < PL_JITTER_SLOTS && !free_slot; i++)
        if (!jb->slots[i].used) free_slot = &jb->slots[i];
    if (!free_slot) {
        jb->st.overflow++;
        return;
    }
    free_slot->used = true;
    free_slot->flags = flags;
    free_slot->len = (uint16_t)len;
    free_slot->seq = ext_seq;
    free_slot->ts = ext_ts;
    free_slot->arrival = now;
    memcpy(free_slot->data, opus, len);
    jb->st.received++;
}

/* Frees slots whose frame the pointer has passed (skipped, or misaligned
 * timestamps overlapping a frame already played). */
static void evict_passed(pl_jitter *jb)
{
    for (int i = 0; i < PL_JITTER_SLOTS; i++) {
        slot *s = &jb->slots[i];
        if (s->used && s->ts < jb->next_ts) s->used = false;
    }
}

static bool should_drop(const pl_jitter *jb, int64_t slack, bool silent)
{
    int64_t excess = slack - FRAME_US - (int64_t)jb->cfg.hysteresis;
    if (excess < 0) return false;
    return silent || jb->excess_ticks >= EXCESS_TICKS || excess >= EXCESS_LARGE;
}

static void note_delay(pl_jitter *jb, pl_time now, uint64_t ts, int64_t dmin)
{
    int64_t delay = (int64_t)now - ts_us(ts) - dmin;
    if (delay < 0) delay = 0;
    jb->st.delay = (pl_time)delay;
    jb->delay_sum += (uint64_t)delay;
    jb->delay_n++;
}

pl_jitter_frame pl_jitter_pull(pl_jitter *jb, pl_time now)
{
    pl_jitter_frame f = {PL_JITTER_EMPTY, NULL, 0, false};
    if (!jb->started || jb->count == 0) {
        jb->st.empty++;
        return f;
    }
    /* The fastest packet of the last second is the reference the delay is
     * measured from: the whole window's fastest would be stale when the two
     * clocks drift apart. */
    int64_t dmin = recent_min(jb);
    int idx = (int)(((int64_t)(jb->count - 1) * jb->cfg.quantile_permille + 500) / 1000);
    int64_t target = jb->sorted[idx] - dmin + (int64_t)jb->cfg.margin;
    if (target < (int64_t)jb->cfg.margin) target = (int64_t)jb->cfg.margin;
    if (jb->loss_q16 > FEC_LOSS_Q16) target += FRAME_US;
    if (target > (int64_t)jb->cfg.max_delay) target = (int64_t)jb->cfg.max_delay;
    jb->st.target = (pl_time)target;
    int64_t play_offset = dmin + target; /* target play time = ts_us(ts) + play_offset */

    int64_t slack0 = (int64_t)now - (ts_us(jb->next_ts) + play_offset);
    if (slack0 - FRAME_US - (int64_t)jb->cfg.hysteresis >= 0) jb->excess_ticks++;
    else jb->excess_ticks = 0;

    if (!jb->playing) {
        if (slack0 < 0) {
            jb->st.empty++;
            return f;
        }
        jb->playing = true;
    }

    /* In silence the delay is set a little above the target (by the
     * hysteresis), so that a receiver clock running fast has room to drift
     * through the next talk spurt before a frame must be inserted in it. */
    const int64_t headroom = (int64_t)jb->cfg.hysteresis;
    for (int pass = 0; pass < 2; pass++) {
        int64_t slack = (int64_t)now - (ts_us(jb->next_ts) + play_offset);
        bool silent = jb->peer_hold || jb->in_silence;
        slot *p = find_frame(jb, jb->next_ts);
        if (p) {
            bool p_silent = silent || (p->flags & PL_MPKT_F_SILENCE);
            if ((p_silent && slack < headroom) || slack < -FRAME_US / 2) {
                f.action = p_silent ? PL_JITTER_SILENCE : PL_JITTER_CONCEAL;
                f.inserted = true;
                break;
            }
            if (pass == 0 && should_drop(jb, slack, p_silent)) {
                jb->next_ts = p->ts + FRAME_TS;
                jb->last_seq = p->seq;
                jb->have_last_seq = true;
                jb->in_silence = (p->flags & PL_MPKT_F_SILENCE) != 0;
                p->used = false;
                jb->st.dropped++;
                jb->excess_ticks = 0;
                continue;
            }
            note_delay(jb, now, jb->next_ts, dmin);
            f.action = PL_JITTER_PLAY;
            f.packet = p->data;
            f.len = p->len;
            jb->wait_sum += now > p->arrival ? now - p->arrival : 0;
            jb->wait_n++;
            jb->next_ts = p->ts + FRAME_TS;
            jb->last_seq = p->seq;
            jb->have_last_seq = true;
            jb->in_silence = (p->flags & PL_MPKT_F_SILENCE) != 0;
            p->used = false; /* its bytes stay put until the next put */
            break;
        }
        slot *e = find_earliest(jb);
        bool dtx_gap = silent || (e && jb->have_last_seq && e->seq == jb->last_seq + 1);
        if (slack < (dtx_gap ? headroom : 0)) {
            f.action = dtx_gap ? PL_JITTER_SILENCE : PL_JITTER_CONCEAL;
            f.inserted = true;
            break;
        }
        if (pass == 0 && should_drop(jb, slack, dtx_gap)) {
            jb->next_ts += FRAME_TS;
            jb->st.dropped++;
            jb->excess_ticks = 0;
            continue;
        }
        note_delay(jb, now, jb->next_ts, dmin);
        if (dtx_gap) {
            f.action = PL_JITTER_SILENCE;
        } else {
            slot *n = find_frame(jb, jb->next_ts + FRAME_TS);
            if (n && n->ts == jb->next_ts + FRAME_TS) {
                f.action = PL_JITTER_FEC;
                f.packet = n->data;
                f.len = n->len;
            } else {
                f.action = PL_JITTER_CONCEAL;
            }
        }
        jb->next_ts += FRAME_TS;
        break;
    }
    evict_passed(jb);

    switch (f.action) {
    case PL_JITTER_EMPTY: jb->st.empty++; break;
    case PL_JITTER_PLAY: jb->st.played++; break;
    case PL_JITTER_FEC: jb->st.fec++; break;
    case PL_JITTER_CONCEAL: jb->st.concealed++; break;
    case PL_JITTER_SILENCE: jb->st.silence++; break;
    }
    if (f.inserted) {
        jb->st.inserted++;
    } else if (f.action == PL_JITTER_PLAY || f.action == PL_JITTER_FEC || f.action == PL_JITTER_CONCEAL) {
        uint32_t lost = f.action == PL_JITTER_PLAY ? 0 : 65536;
        jb->loss_q16 = (uint32_t)((int64_t)jb->loss_q16 + (((int64_t)lost - jb->loss_q16) >> 6));
    }
    return f;
}

pl_jitter_stats pl_jitter_get_stats(const pl_jitter *jb)
{
    pl_jitter_stats s = jb->st;
    s.buffered = 0;
    for (int i = 0; i < PL_JITTER_SLOTS; i++) s.buffered += jb->slots[i].used;
    s.delay_avg = jb->delay_n ? (pl_time)(jb->delay_sum / jb->delay_n) : 0;
    s.wait_avg = jb->wait_n ? (pl_time)(jb->wait_sum / jb->wait_n) : 0;
    return s;
}
