/* sampler.c: repetition penalty, greedy, top-k, top-p, min-p and the draw. */
#include "engine/sampler.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/alloc.h"

/* One candidate token: v holds its logit, later its unnormalized weight. */
typedef struct cand {
    float v;
    int32_t id;
} cand;

struct elm_sampler {
    elm_sampler_params p;
    uint32_t n_vocab;
    cand *c;          /* n_vocab candidates */
    uint8_t *seen;    /* n_vocab bits: penalize each distinct id only once */
    int32_t *hist;    /* ring of the last hist_cap accepted ids */
    uint32_t hist_cap, hist_len, hist_pos;
    uint64_t rng[4];
};

/* ------------------------------------------------------------- generator */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** */
static uint64_t rng_next(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t s[4]) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

static void rng_seed(uint64_t s[4], uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s[i] = splitmix64(&x);
}

/* ------------------------------------------------------------ lifecycle */

/* The widest penalty window kept: the longest context (context.c refuses
 * n_ctx above 2^24), so a wider one would hold every accepted token anyway.
 * It bounds the history ring (64 MiB) whatever repeat_last_n asks for. */
#define MAX_WINDOW (1u << 24)

static bool params_valid(const elm_sampler_params *p) {
    return !isnan(p->temperature) && !isinf(p->temperature) && !isnan(p->top_p) &&
           !isnan(p->min_p) && p->repeat_penalty > 0 && !isinf(p->repeat_penalty) &&
           p->repeat_last_n >= 0;
}

elm_status elmi_sampler_new(const elm_sampler_params *p, uint32_t n_vocab, elm_sampler **out) {
    if (!out) return ELM_ERR_INVALID_ARG;
    *out = NULL;
    if (!p || n_vocab == 0 || n_vocab > INT32_MAX || !params_valid(p)) return ELM_ERR_INVALID_ARG;
    elm_sampler *s = elmi_calloc(1, sizeof *s);
    if (!s) return ELM_ERR_NO_MEMORY;
    s->p = *p;
    s->n_vocab = n_vocab;
    uint32_t window = (uint32_t)p->repeat_last_n; /* >= 0, checked above */
    s->hist_cap = window < MAX_WINDOW ? window : MAX_WINDOW;
    s->c = elmi_malloc((size_t)n_vocab * sizeof *s->c);
    s->seen = elmi_calloc(((size_t)n_vocab + 7) / 8, 1);
    s->hist = elmi_malloc(((size_t)s->hist_cap + 1) * sizeof *s->hist);
    if (!s->c || !s->seen || !s->hist) {
        elmi_sampler_free(s);
        return ELM_ERR_NO_MEMORY;
    }
    elmi_sampler_reset(s);
    *out = s;
    return ELM_OK;
}

void elmi_sampler_free(elm_sampler *s) {
    if (!s) return;
    elmi_free(s->c);
    elmi_free(s->seen);
    elmi_free(s->hist);
    elmi_free(s);
}

void elmi_sampler_reset(elm_sampler *s) {
    if (!s) return;
    s->hist_len = 0;
    s->hist_pos = 0;
    rng_seed(s->rng, s->p.seed);
}

void elmi_sampler_accept(elm_sampler *s, int32_t token) {
    if (!s || s->hist_cap == 0 || token < 0 || (uint32_t)token >= s->n_vocab) return;
    s->hist[s->hist_pos] = token;
    s->hist_pos = (s->hist_pos + 1) % s->hist_cap;
    if (s->hist_len < s->hist_cap) s->hist_len++;
}

/* ------------------------------------------------------------- ordering */

/* The candidate order everywhere: higher logit first, then lower id. */
static bool better(cand a, cand b) { return a.v > b.v || (a.v == b.v && a.id < b.id); }

static void swap_cand(cand *a, cand *b) {
    cand t = *a;
    *a = *b;
    *b = t;
}

/* worst_top: the root is the worst candidate (top-k selection); otherwise
 * the best (lazy sorting for top-p). */
static bool above(cand a, cand b, bool worst_top) {
    return worst_top ? better(b, a) : better(a, b);
}

static void sift_down(cand *h, uint32_t n, uint32_t i, bool worst_top) {
    for (;;) {
        uint32_t l = 2 * i + 1, m = i;
        if (l < n && above(h[l], h[m], worst_top)) m = l;
        if (l + 1 < n && above(h[l + 1], h[m], worst_top)) m = l + 1;
        if (m == i) return;
        swap_cand(&h[i], &h[m]);
        i = m;
    }
}

static void heapify(cand *h, uint32_t n, bool worst_top) {
    for (uint32_t i = n / 2; i-- > 0;) sift_down(h, n, i, worst_top);
}

/* Candidates in rank order, either already sorted or popped from a max-heap
 * on demand, so top-p on a peaked distribution sorts only what it keeps. */
typedef struct order {
    cand *c;
    uint32_t n, done;
    bool heap;
} order;

static const cand *order_peek(const order *o) {
    if (o->done == o->n) return NULL;
    return o->heap ? &o->c[0] : &o->c[o->done];
}

static void order_pop(order *o) {
    if (o->heap) {
        uint32_t m = o->n - o->done;
        swap_cand(&o->c[0], &o->c[m - 1]);
        sift_down(o->c, m - 1, 0, false);
    }
    o->done++;
}

/* The kept candidates, best first. A heap leaves them at its tail in
 * reverse; turn them around so the draw sees one order. */
static cand *order_kept(order *o) {
    if (!o->heap) return o->c;
    cand *k = o->c + (o->n - o->done);
    for (uint32_t i = 0, j = o->done; i + 1 < j; i++, j--) swap_cand(&k[i], &k[j - 1]);
    return k;
}

/* ------------------------------------------------------------- pipeline */

/* The penalty marks each distinct id of the history once in a bitmap, so
 * repeated ids are penalized once and the logits are read in one pass. */
static void mark_history(elm_sampler *s, bool on) {
    if (s->p.repeat_penalty == 1.0f) return;
    for (uint32_t k = 0; k < s->hist_len; k++) {
        int32_t id = s->hist[k];
        if (on)
            s->seen[id >> 3] |= (uint8_t)(1u << (id & 7));
        else
            s->seen[id >> 3] = 0;
    }
}

/* A penalized finite logit saturates at +-FLT_MAX instead of overflowing:
 * an infinite one would read as a bad logit (+inf) or a masked token (-inf). */
static float logit_at(const elm_sampler *s, const float *logits, uint32_t i) {
    float v = logits[i];
    if (!(s->seen[i >> 3] >> (i & 7) & 1)) return v;
    float r = s->p.repeat_penalty;
    float pv = v > 0 ? v / r : v * r;
    return isinf(pv) && isfinite(v) ? copysignf(FLT_MAX, pv) : pv;
}

/* The id of the highest penalized logit (the lower id on ties), or -1 when a
 * logit is NaN or +inf or none is finite. */
static int32_t scan_best(const elm_sampler *s, const float *logits) {
    uint32_t best = 0;
    float bv = -INFINITY;
    bool bad = false;
    for (uint32_t i = 0; i < s->n_vocab; i++) {
        bad |= isnan(logits[i]) || logits[i] == INFINITY;
        float v = logit_at(s, logits, i);
        if (v > bv) {
            bv = v;
            best = i;
        }
    }
    return bad || !isfinite(bv) ? -1 : (int32_t)best;
}

/* Leaves the k best candidates in c[0..k), sorted best first, in
 * O(n log k): most tokens lose one comparison against the heap's root. */
static void select_top_k(elm_sampler *s, const float *logits, uint32_t k) {
    cand *c = s->c;
    for (uint32_t i = 0; i < k; i++) c[i] = (cand){logit_at(s, logits, i), (int32_t)i};
    heapify(c, k, true);
    for (uint32_t i = k; i < s->n_vocab; i++) {
        cand x = {logit_at(s, logits, i), (int32_t)i};
        if (better(x, c[0])) {
            c[0] = x;
            sift_down(c, k, 0, true);
        }
    }
    for (uint32_t m = k; m > 1; m--) {
        swap_cand(&c[0], &c[m - 1]);
        sift_down(c, m - 1, 0, true);
    }
}

/* Top-p's set is bounded before sorting with a histogram of the weights in
 * bands of -log(weight): on a 150k vocabulary it leaves a few hundred
 * tokens to sort instead of all of them. */
#define N_BUCKETS 64
#define BUCKETS_PER_NAT 2.0f

typedef struct softmax {
    float max, temp;
    double sum;
    double *hist; /* N_BUCKETS sums, or NULL */
} softmax;

/* exp((l - max) / T): the best token weighs exactly 1. */
static float weigh(softmax *sm, float logit) {
    float d = (logit - sm->max) / sm->temp;
    float w = expf(d);
    sm->sum += w;
    if (sm->hist) {
        float x = -d * BUCKETS_PER_NAT;
        sm->hist[x < N_BUCKETS ? (int)x : N_BUCKETS - 1] += w;
    }
    return w;
}

/* A weight below which no token can belong to the top-p set: the buckets
 * above it already hold p of the mass. One bucket of slack absorbs the
 * different rounding of the bucket sums and of the final cut. */
static float top_p_floor(const double *hist, double sum, float top_p) {
    double cum = 0;
    for (int b = 0; b < N_BUCKETS - 2; b++) {
        cum += hist[b];
        if (cum >= (double)top_p * sum) return expf(-(float)(b + 2) / BUCKETS_PER_NAT);
    }
    return 0.0f;
}

/* Weighs every token, keeping those of weight >= floor_w (all when 0). */
static uint32_t weigh_all(elm_sampler *s, const float *logits, softmax *sm, float floor_w) {
    uint32_t m = 0;
    for (uint32_t i = 0; i < s->n_vocab; i++) {
        float w = weigh(sm, logit_at(s, logits, i));
        if (w >= floor_w) s->c[m++] = (cand){w, (int32_t)i};
    }
    return m;
}

/* Drops candidates whose weight is below floor_w, keeping the order. */
static uint32_t compact_above(cand *c, uint32_t n, float floor_w) {
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++)
        if (c[i].v >= floor_w) c[m++] = c[i];
    return m;
}

/* Top-p then min-p over the rank order. Both keep a prefix of the same
 * ranking, so the result is the shorter prefix, never empty. sum is the
 * weight of every candidate the softmax saw. Returns the kept weight. */
static double cut_prefix(order *o, double sum, float top_p, float min_w) {
    double target = top_p < 1 ? (double)top_p * sum : INFINITY;
    double cum = 0;
    for (const cand *x; (x = order_peek(o)) != NULL;) {
        if (o->done > 0 && (cum >= target || x->v < min_w)) break;
        cum += x->v;
        order_pop(o);
    }
    return cum;
}

/* Draws from c[0..n) in order; sum is their total weight, summed in order. */
static int32_t draw(elm_sampler *s, const cand *c, uint32_t n, double sum) {
    double u = rng_uniform(s->rng) * sum, cum = 0;
    int32_t last = -1;
    for (uint32_t i = 0; i < n; i++) {
        if (c[i].v <= 0) continue;
        cum += c[i].v;
        last = c[i].id;
        if (u < cum) return c[i].id;
    }
    return last; /* u rounded up to sum */
}

static int32_t sample_marked(elm_sampler *s, const float *logits) {
    const elm_sampler_params *p = &s->p;
    int32_t best = scan_best(s, logits);
    if (best < 0 || p->temperature <= 0) return best;

    double hist[N_BUCKETS] = {0};
    softmax sm = {.max = logit_at(s, logits, (uint32_t)best), .temp = p->temperature};
    float min_w = p->min_p > 0 ? fminf(p->min_p, 1.0f) : 0.0f;
    bool cut = p->top_p < 1 || min_w > 0;
    order o = {.c = s->c};
    if (p->top_k > 0 && (uint32_t)p->top_k < s->n_vocab) {
        o.n = (uint32_t)p->top_k;
        select_top_k(s, logits, o.n);
        for (uint32_t i = 0; i < o.n; i++) s->c[i].v = weigh(&sm, s->c[i].v);
    } else {
        sm.hist = p->top_p < 1 ? hist : NULL;
        o.n = weigh_all(s, logits, &sm, min_w);
        if (cut) {
            if (sm.hist) o.n = compact_above(s->c, o.n, top_p_floor(hist, sm.sum, p->top_p));
            heapify(s->c, o.n, false);
            o.heap = true;
        }
    }
    if (!cut) return draw(s, s->c, o.n, sm.sum);
    double kept_w = cut_prefix(&o, sm.sum, p->top_p, min_w);
    return draw(s, order_kept(&o), o.done, kept_w);
}

int32_t elmi_sampler_sample(elm_sampler *s, const float *logits) {
    if (!s || !logits) return -1;
    mark_history(s, true);
    int32_t id = sample_marked(s, logits);
    mark_history(s, false);
    return id;
}
