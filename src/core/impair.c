/* impair.c - a seeded model of a bad network path; see impair.h. */
#include "impair.h"

#include <math.h>
#include <string.h>

#define DEFAULT_SLOTS 4096
#define PARETO_SHAPE 2.5
/* Random draws per datagram, always all of them (see impair.h). */
enum { DRAW_BURST, DRAW_LOSS, DRAW_REORDER, DRAW_DUP, DRAW_JITTER, DRAW_JITTER_DUP, DRAWS };

const char *pl_impair_strerror(pl_impair_err err)
{
    switch (err) {
    case PL_IMPAIR_OK: return "ok";
    case PL_IMPAIR_ERR_CONFIG: return "impossible impairment settings";
    case PL_IMPAIR_ERR_MEMORY: return "out of memory";
    }
    return "unknown error";
}

bool pl_impair_jitter_parse(const char *text, pl_impair_jitter *out)
{
    if (strcmp(text, "uniform") == 0) *out = PL_IMPAIR_JITTER_UNIFORM;
    else if (strcmp(text, "exponential") == 0 || strcmp(text, "exp") == 0) *out = PL_IMPAIR_JITTER_EXPONENTIAL;
    else if (strcmp(text, "pareto") == 0) *out = PL_IMPAIR_JITTER_PARETO;
    else return false;
    return true;
}

const char *pl_impair_jitter_name(pl_impair_jitter dist)
{
    switch (dist) {
    case PL_IMPAIR_JITTER_UNIFORM: return "uniform";
    case PL_IMPAIR_JITTER_EXPONENTIAL: return "exponential";
    case PL_IMPAIR_JITTER_PARETO: return "pareto";
    }
    return "?";
}

static bool is_probability(double p)
{
    return p >= 0.0 && p <= 1.0; /* also false for NaN */
}

/* The Gilbert-Elliott transition probabilities for a long-run loss P and a
 * mean burst of L datagrams: leaving the bad state has probability 1/L (the
 * sojourn is geometric), and the stationary share of the bad state,
 * enter / (enter + leave), must equal P. */
static void burst_chain(double loss, double len, double *enter, double *leave)
{
    *leave = 1.0 / len;
    *enter = loss >= 1.0 ? 1.0 : loss * *leave / (1.0 - loss);
}

pl_impair_err pl_impair_link_check(const pl_impair_link *l)
{
    if (!is_probability(l->loss) || !is_probability(l->burst_loss) || !is_probability(l->reorder) ||
        !is_probability(l->dup))
        return PL_IMPAIR_ERR_CONFIG;
    if (l->jitter_dist != PL_IMPAIR_JITTER_UNIFORM && l->jitter_dist != PL_IMPAIR_JITTER_EXPONENTIAL &&
        l->jitter_dist != PL_IMPAIR_JITTER_PARETO)
        return PL_IMPAIR_ERR_CONFIG;
    if (l->burst_loss > 0.0) {
        if (!(l->burst_len >= 1.0) || l->burst_loss >= 1.0) return PL_IMPAIR_ERR_CONFIG;
        double enter, leave;
        burst_chain(l->burst_loss, l->burst_len, &enter, &leave);
        /* Short bursts at a high loss need an entry probability above 1:
         * no chain loses that much in bursts that short. */
        if (enter > 1.0) return PL_IMPAIR_ERR_CONFIG;
    }
    /* Keep every sum of times far from overflowing. */
    pl_time limit = 3600 * PL_SEC;
    if (l->delay > limit || l->jitter > limit || l->reorder_gap > limit || l->rate_queue > limit)
        return PL_IMPAIR_ERR_CONFIG;
    return PL_IMPAIR_OK;
}

void pl_impair_model_init(pl_impair_model *m, const pl_impair_link *link, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    m->link = *link;
    pl_rng_seeded_init(&m->rng, seed);
    if (link->burst_loss > 0.0) burst_chain(link->burst_loss, link->burst_len, &m->ge_enter, &m->ge_leave);
}

/* A uniform double in [0, 1) from 53 random bits. */
static double unit(uint64_t v)
{
    return (double)(v >> 11) * (1.0 / 9007199254740992.0);
}

static pl_time jitter_sample(const pl_impair_link *l, double u)
{
    if (l->jitter == 0) return 0;
    double j = (double)l->jitter, x;
    switch (l->jitter_dist) {
    case PL_IMPAIR_JITTER_EXPONENTIAL:
        x = -j * log1p(-u);
        break;
    case PL_IMPAIR_JITTER_PARETO:
        /* Lomax: scale j (shape - 1) gives mean j. */
        x = j * (PARETO_SHAPE - 1.0) * (pow(1.0 - u, -1.0 / PARETO_SHAPE) - 1.0);
        break;
    default:
        x = j * u;
        break;
    }
    double cap = j * PL_IMPAIR_JITTER_CAP;
    if (x > cap) x = cap;
    return (pl_time)(x + 0.5);
}

void pl_impair_model_decide(pl_impair_model *m, pl_time now, size_t len, pl_impair_verdict *out)
{
    const pl_impair_link *l = &m->link;
    uint64_t draw[DRAWS];
    for (int i = 0; i < DRAWS; i++) draw[i] = pl_rng_u64(&m->rng.rng);
    memset(out, 0, sizeof *out);

    /* The chain moves first, then the state decides this datagram. */
    if (l->burst_loss > 0.0) {
        double u = unit(draw[DRAW_BURST]);
        m->ge_bad = m->ge_bad ? u >= m->ge_leave : u < m->ge_enter;
        if (m->ge_bad) {
            out->fate = PL_IMPAIR_DROP_BURST;
            return;
        }
    }
    if (l->loss > 0.0 && unit(draw[DRAW_LOSS]) < l->loss) {
        out->fate = PL_IMPAIR_DROP_LOSS;
        return;
    }

    pl_time depart = now;
    if (l->rate_bps > 0) {
        pl_time start = m->link_free > now ? m->link_free : now;
        if (start - now > l->rate_queue) {
            out->fate = PL_IMPAIR_DROP_RATE;
            return;
        }
        uint64_t bits = (uint64_t)(len + PL_IMPAIR_HEADER_BYTES) * 8;
        pl_time serialise = (bits * PL_SEC + l->rate_bps - 1) / l->rate_bps;
        m->link_free = start + serialise;
        depart = m->link_free;
    }

    out->fate = PL_IMPAIR_DELIVER;
    out->copies = 1;
    pl_time due = depart + l->delay + jitter_sample(l, unit(draw[DRAW_JITTER]));
    if (l->jitter_fifo) {
        if (due < m->last_due) due = m->last_due;
        m->last_due = due;
    }
    /* The held-back datagram does not move last_due: the point is that the
     * ones behind it overtake. */
    if (l->reorder > 0.0 && unit(draw[DRAW_REORDER]) < l->reorder) {
        due += l->reorder_gap;
        out->reordered = true;
    }
    out->due[0] = due;

    if (l->dup > 0.0 && unit(draw[DRAW_DUP]) < l->dup) {
        pl_time due2 = depart + l->delay + jitter_sample(l, unit(draw[DRAW_JITTER_DUP]));
        if (l->jitter_fifo) {
            if (due2 < m->last_due) due2 = m->last_due;
            m->last_due = due2;
        }
        out->due[1] = due2;
        out->copies = 2;
    }
}

/* ---- the queue ------------------------------------------------------------------ */

typedef struct slot {
    pl_time due, offered;
    uint64_t order; /* breaks ties between equal due times: first queued, first out */
    uint64_t tag;
    uint16_t len;
    uint8_t dir;
    uint8_t data[PL_IMPAIR_MAX_DATAGRAM];
} slot;

struct pl_impair {
    pl_mem mem;
    pl_impair_model model[PL_IMPAIR_DIRS];
    pl_impair_stats stats[PL_IMPAIR_DIRS];
    slot *slots;
    uint32_t *heap; /* slot indices, a binary min-heap on (due, order) */
    uint32_t *free_list;
    size_t cap, heap_len, free_len;
    uint64_t next_order;
    uint32_t lent; /* the slot pl_impair_take handed out last; UINT32_MAX when none */
};

pl_impair *pl_impair_new(const pl_impair_config *cfg, const pl_mem *mem, pl_impair_err *err)
{
    pl_impair_err e = PL_IMPAIR_OK;
    for (int d = 0; d < PL_IMPAIR_DIRS && !e; d++) e = pl_impair_link_check(&cfg->link[d]);
    size_t cap = cfg->queue_slots ? cfg->queue_slots : DEFAULT_SLOTS;
    if (!e && cap >= UINT32_MAX) e = PL_IMPAIR_ERR_CONFIG;
    if (e) {
        if (err) *err = e;
        return NULL;
    }
    if (!mem) mem = pl_mem_system();
    pl_impair *im = mem->calloc(mem->ctx, 1, sizeof *im);
    if (!im) goto oom;
    im->mem = *mem;
    im->slots = mem->calloc(mem->ctx, cap, sizeof *im->slots);
    im->heap = mem->calloc(mem->ctx, cap, sizeof *im->heap);
    im->free_list = mem->calloc(mem->ctx, cap, sizeof *im->free_list);
    if (!im->slots || !im->heap || !im->free_list) {
        pl_impair_free(im);
        goto oom;
    }
    im->cap = cap;
    for (size_t i = 0; i < cap; i++) im->free_list[i] = (uint32_t)(cap - 1 - i);
    im->free_len = cap;
    im->lent = UINT32_MAX;
    /* Each direction has its own stream, derived from the one seed. */
    for (int d = 0; d < PL_IMPAIR_DIRS; d++)
        pl_impair_model_init(&im->model[d], &cfg->link[d], cfg->seed * 2 + (uint64_t)d);
    if (err) *err = PL_IMPAIR_OK;
    return im;
oom:
    if (err) *err = PL_IMPAIR_ERR_MEMORY;
    return NULL;
}

void pl_impair_free(pl_impair *im)
{
    if (!im) return;
    pl_mem mem = im->mem;
    if (im->slots) mem.free(mem.ctx, im->slots);
    if (im->heap) mem.free(mem.ctx, im->heap);
    if (im->free_list) mem.free(mem.ctx, im->free_list);
    mem.free(mem.ctx, im);
}

static bool before(const pl_impair *im, uint32_t a, uint32_t b)
{
    const slot *x = &im->slots[a], *y = &im->slots[b];
    return x->due < y->due || (x->due == y->due && x->order < y->order);
}

static void heap_push(pl_impair *im, uint32_t s)
{
    size_t i = im->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(im, s, im->heap[parent])) break;
        im->heap[i] = im->heap[parent];
        i = parent;
    }
    im->heap[i] = s;
}

static uint32_t heap_pop(pl_impair *im)
{
    uint32_t top = im->heap[0];
    uint32_t last = im->heap[--im->heap_len];
    size_t i = 0, n = im->heap_len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(im, im->heap[c + 1], im->heap[c])) c++;
        if (!before(im, im->heap[c], last)) break;
        im->heap[i] = im->heap[c];
        i = c;
    }
    if (n > 0) im->heap[i] = last;
    return top;
}

/* The slot lent out by the last take goes back to the free list. */
static void reclaim(pl_impair *im)
{
    if (im->lent != UINT32_MAX) {
        im->free_list[im->free_len++] = im->lent;
        im->lent = UINT32_MAX;
    }
}

unsigned pl_impair_offer(pl_impair *im, unsigned dir, pl_time now, const uint8_t *data, size_t len, uint64_t tag)
{
    reclaim(im);
    if (dir >= PL_IMPAIR_DIRS) return 0;
    pl_impair_stats *st = &im->stats[dir];
    st->offered++;
    if (len > PL_IMPAIR_MAX_DATAGRAM) {
        st->too_big++;
        return 0;
    }
    pl_impair_verdict v;
    pl_impair_model_decide(&im->model[dir], now, len, &v);
    switch (v.fate) {
    case PL_IMPAIR_DROP_BURST: st->dropped_burst++; return 0;
    case PL_IMPAIR_DROP_LOSS: st->dropped_loss++; return 0;
    case PL_IMPAIR_DROP_RATE: st->dropped_rate++; return 0;
    case PL_IMPAIR_DELIVER: break;
    }
    if (v.reordered) st->reordered++;
    if (v.copies == 2) st->duplicated++;
    unsigned queued = 0;
    for (unsigned c = 0; c < v.copies; c++) {
        if (im->free_len == 0) {
            st->dropped_full++;
            continue;
        }
        uint32_t s = im->free_list[--im->free_len];
        slot *sl = &im->slots[s];
        sl->due = v.due[c];
        sl->offered = now;
        sl->order = im->next_order++;
        sl->tag = tag;
        sl->len = (uint16_t)len;
        sl->dir = (uint8_t)dir;
        if (len) memcpy(sl->data, data, len);
        heap_push(im, s);
        queued++;
    }
    return queued;
}

pl_time pl_impair_next_due(const pl_impair *im)
{
    return im->heap_len ? im->slots[im->heap[0]].due : PL_TIME_NEVER;
}

bool pl_impair_take(pl_impair *im, pl_time now, pl_impair_datagram *out)
{
    reclaim(im);
    if (im->heap_len == 0 || im->slots[im->heap[0]].due > now) return false;
    uint32_t s = heap_pop(im);
    const slot *sl = &im->slots[s];
    im->lent = s;
    out->dir = sl->dir;
    out->tag = sl->tag;
    out->data = sl->data;
    out->len = sl->len;
    out->offered = sl->offered;
    out->due = sl->due;
    pl_impair_stats *st = &im->stats[sl->dir];
    st->delivered++;
    st->bytes_delivered += sl->len;
    pl_time delay = sl->due - sl->offered;
    st->delay_sum_us += (double)delay;
    if (delay > st->delay_max) st->delay_max = delay;
    return true;
}

size_t pl_impair_held(const pl_impair *im)
{
    return im->heap_len;
}

void pl_impair_get_stats(const pl_impair *im, unsigned dir, pl_impair_stats *out)
{
    if (dir >= PL_IMPAIR_DIRS) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = im->stats[dir];
}
