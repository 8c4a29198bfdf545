/* mixer.c - the conference mixer and host election (mixer.h). */
#include "mixer.h"

#include <stdlib.h>
#include <string.h>

/* The limiter aims the peak of a mix at THRESHOLD; what still overshoots
 * (the gain moves smoothly within a frame) meets a soft knee at KNEE that
 * approaches full scale without reaching it. */
#define FULL 32767
#define THRESHOLD 29000.0f
#define KNEE 24576
/* Gain recovers towards 1 by this fraction per frame: about 0.4 s. */
#define RELEASE 0.05f
/* RTTs closer than this count as equal in an election. */
#define RTT_BUCKET_MS 20

typedef struct part {
    bool used;
    bool playing;      /* heard; false while (re)filling its queue */
    bool contributed;  /* in the last tick */
    uint32_t id;
    uint8_t head, count;
    uint8_t above_target; /* ticks in a row with the queue above target */
    float gain;
    int16_t queue[PL_MIX_MAX_QUEUE][PL_MIX_FRAME];
    int16_t cur[PL_MIX_FRAME];
    int16_t out[PL_MIX_FRAME];
    pl_mix_stats st;
} part;

struct pl_mix {
    const pl_mem *mem;
    uint32_t max;
    uint8_t prefill, target, max_queue;
    part *p;
    int32_t sum[PL_MIX_FRAME];
};

pl_mix_err pl_mix_new(pl_mix **out, const pl_mix_config *cfg)
{
    *out = NULL;
    pl_mix_config c = cfg ? *cfg : (pl_mix_config){0};
    if (!c.max_participants) c.max_participants = PL_MIX_MAX_PARTICIPANTS;
    if (!c.prefill) c.prefill = PL_MIX_DEFAULT_PREFILL;
    if (!c.target) c.target = PL_MIX_DEFAULT_TARGET;
    if (!c.max_queue) c.max_queue = PL_MIX_DEFAULT_MAX_QUEUE;
    if (c.max_participants > PL_MIX_MAX_PARTICIPANTS || c.max_queue > PL_MIX_MAX_QUEUE || c.prefill > c.max_queue ||
        c.target > c.max_queue || c.target < c.prefill)
        return PL_MIX_ERR_CONFIG;
    const pl_mem *mem = c.mem ? c.mem : pl_mem_system();
    pl_mix *m = mem->calloc(mem->ctx, 1, sizeof *m);
    if (!m) return PL_MIX_ERR_NOMEM;
    m->p = mem->calloc(mem->ctx, c.max_participants, sizeof *m->p);
    if (!m->p) {
        mem->free(mem->ctx, m);
        return PL_MIX_ERR_NOMEM;
    }
    m->mem = mem;
    m->max = c.max_participants;
    m->prefill = c.prefill;
    m->target = c.target;
    m->max_queue = c.max_queue;
    *out = m;
    return PL_MIX_OK;
}

void pl_mix_free(pl_mix *m)
{
    if (!m) return;
    const pl_mem *mem = m->mem;
    mem->free(mem->ctx, m->p);
    mem->free(mem->ctx, m);
}

static part *find(const pl_mix *m, uint32_t id)
{
    for (uint32_t i = 0; i < m->max; i++)
        if (m->p[i].used && m->p[i].id == id) return &m->p[i];
    return NULL;
}

pl_mix_err pl_mix_join(pl_mix *m, uint32_t id)
{
    if (find(m, id)) return PL_MIX_ERR_EXISTS;
    for (uint32_t i = 0; i < m->max; i++) {
        part *p = &m->p[i];
        if (p->used) continue;
        memset(p, 0, sizeof *p);
        p->used = true;
        p->id = id;
        p->gain = 1.0f;
        return PL_MIX_OK;
    }
    return PL_MIX_ERR_FULL;
}

pl_mix_err pl_mix_leave(pl_mix *m, uint32_t id)
{
    part *p = find(m, id);
    if (!p) return PL_MIX_ERR_UNKNOWN;
    memset(p, 0, sizeof *p);
    return PL_MIX_OK;
}

size_t pl_mix_count(const pl_mix *m)
{
    size_t n = 0;
    for (uint32_t i = 0; i < m->max; i++) n += m->p[i].used;
    return n;
}

static void drop_oldest(pl_mix *m, part *p)
{
    p->head = (uint8_t)((p->head + 1) % m->max_queue);
    p->count--;
}

pl_mix_err pl_mix_push(pl_mix *m, uint32_t id, const int16_t pcm[PL_MIX_FRAME])
{
    part *p = find(m, id);
    if (!p) return PL_MIX_ERR_UNKNOWN;
    if (p->count == m->max_queue) {
        drop_oldest(m, p);
        p->st.dropped_overflow++;
    }
    memcpy(p->queue[(p->head + p->count) % m->max_queue], pcm, sizeof p->queue[0]);
    p->count++;
    p->st.frames_in++;
    return PL_MIX_OK;
}

/* Takes this tick's frame of a participant into p->cur; false if it is
 * silent this tick. */
static bool take(pl_mix *m, part *p)
{
    if (!p->playing) {
        if (p->count < m->prefill) return false;
        p->playing = true;
    }
    if (!p->count) {
        /* Ran dry: silent until its queue fills again. */
        p->playing = false;
        p->st.missing++;
        return false;
    }
    /* Bounded delay: a queue that stays above target loses a frame. */
    if (p->count > m->target) {
        if (++p->above_target >= PL_MIX_DRIFT_TICKS) {
            drop_oldest(m, p);
            p->st.dropped_drift++;
            p->above_target = 0;
        }
    } else {
        p->above_target = 0;
    }
    memcpy(p->cur, p->queue[p->head], sizeof p->cur);
    drop_oldest(m, p);
    return true;
}

static int16_t soft_knee(float v)
{
    float a = v < 0 ? -v : v;
    if (a > KNEE) {
        float d = a - KNEE, room = FULL - KNEE;
        a = KNEE + room * d / (d + room);
    }
    int32_t x = (int32_t)(a + 0.5f);
    if (x > FULL) x = FULL;
    return (int16_t)(v < 0 ? -x : x);
}

/* Writes the limited mix into out, moving the gain smoothly from its last
 * value to this frame's over the frame. */
static void limit(part *p, const int32_t *mix)
{
    int32_t peak = 0;
    for (int i = 0; i < PL_MIX_FRAME; i++) {
        int32_t a = mix[i] < 0 ? -mix[i] : mix[i];
        if (a > peak) peak = a;
    }
    float want = peak > THRESHOLD ? THRESHOLD / (float)peak : 1.0f;
    float g0 = p->gain, g1 = want < g0 ? want : g0 + (want - g0) * RELEASE;
    if (g0 == 1.0f && g1 == 1.0f && peak <= KNEE) {
        for (int i = 0; i < PL_MIX_FRAME; i++) p->out[i] = (int16_t)mix[i];
    } else {
        float step = (g1 - g0) / PL_MIX_FRAME;
        for (int i = 0; i < PL_MIX_FRAME; i++) p->out[i] = soft_knee((float)mix[i] * (g0 + step * (float)i));
    }
    p->gain = g1;
    p->st.gain = g1;
}

void pl_mix_tick(pl_mix *m)
{
    memset(m->sum, 0, sizeof m->sum);
    for (uint32_t k = 0; k < m->max; k++) {
        part *p = &m->p[k];
        if (!p->used) continue;
        p->contributed = take(m, p);
        p->st.talking = p->contributed;
        if (!p->contributed) continue;
        p->st.frames_mixed++;
        int32_t peak = 0;
        for (int i = 0; i < PL_MIX_FRAME; i++) {
            m->sum[i] += p->cur[i];
            int32_t a = p->cur[i] < 0 ? -(int32_t)p->cur[i] : p->cur[i];
            if (a > peak) peak = a;
        }
        p->st.peak = peak;
    }
    int32_t minus[PL_MIX_FRAME];
    for (uint32_t k = 0; k < m->max; k++) {
        part *p = &m->p[k];
        if (!p->used) continue;
        if (p->contributed) {
            for (int i = 0; i < PL_MIX_FRAME; i++) minus[i] = m->sum[i] - p->cur[i];
            limit(p, minus);
        } else {
            limit(p, m->sum);
        }
    }
}

const int16_t *pl_mix_output(const pl_mix *m, uint32_t id)
{
    const part *p = find(m, id);
    return p ? p->out : NULL;
}

pl_mix_err pl_mix_get_stats(const pl_mix *m, uint32_t id, pl_mix_stats *out)
{
    const part *p = find(m, id);
    if (!p) return PL_MIX_ERR_UNKNOWN;
    *out = p->st;
    out->queued = p->count;
    return PL_MIX_OK;
}

const char *pl_mix_strerror(pl_mix_err err)
{
    switch (err) {
    case PL_MIX_OK: return "ok";
    case PL_MIX_ERR_CONFIG: return "bad mixer configuration";
    case PL_MIX_ERR_NOMEM: return "out of memory";
    case PL_MIX_ERR_FULL: return "conference full";
    case PL_MIX_ERR_EXISTS: return "participant already in the conference";
    case PL_MIX_ERR_UNKNOWN: return "no such participant";
    }
    return "unknown mixer error";
}

/* ---- host election ------------------------------------------------------------------------ */

typedef struct ranked {
    const pl_mix_candidate *c;
    int index;
    bool feasible;
    uint64_t spare;
} ranked;

/* Negative when a is the better host. A total order: keys differ. */
static int better(const ranked *a, const ranked *b)
{
    if (a->feasible != b->feasible) return a->feasible ? -1 : 1;
    uint8_t na = a->c->nat > PL_MIX_NAT_BLOCKED ? PL_MIX_NAT_BLOCKED : a->c->nat;
    uint8_t nb = b->c->nat > PL_MIX_NAT_BLOCKED ? PL_MIX_NAT_BLOCKED : b->c->nat;
    if (na != nb) return na < nb ? -1 : 1;
    uint32_t ra = a->c->rtt_ms / RTT_BUCKET_MS, rb = b->c->rtt_ms / RTT_BUCKET_MS;
    if (ra != rb) return ra < rb ? -1 : 1;
    if (a->spare != b->spare) return a->spare > b->spare ? -1 : 1;
    int k = memcmp(a->c->key, b->c->key, 32);
    if (k) return k;
    return a->index < b->index ? -1 : a->index > b->index;
}

bool pl_mix_elect(const pl_mix_candidate *c, size_t n, uint32_t leg_kbps, int *host, int *successor)
{
    *host = -1;
    *successor = -1;
    if (n == 0) return false;
    uint64_t need = (uint64_t)leg_kbps * (n - 1);
    ranked best = {0}, second = {0};
    bool have_best = false, have_second = false;
    for (size_t i = 0; i < n; i++) {
        uint64_t low = c[i].up_kbps < c[i].down_kbps ? c[i].up_kbps : c[i].down_kbps;
        ranked r = {&c[i], (int)i, c[i].can_host && low >= need, low > need ? low - need : 0};
        if (!have_best || better(&r, &best) < 0) {
            if (have_best) {
                second = best;
                have_second = true;
            }
            best = r;
            have_best = true;
        } else if (!have_second || better(&r, &second) < 0) {
            second = r;
            have_second = true;
        }
    }
    *host = best.index;
    if (have_second) *successor = second.index;
    return true;
}
