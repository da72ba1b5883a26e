/* rope.c: rotary position embedding, NORM and NEOX pairings, frequency
 * factors and YaRN context extension.
 *
 * For pair i of n_rot / 2, at position p:
 *   theta_extrap = p * base^(-2i / n_rot) / freq_factor[i]
 *   theta_interp = freq_scale * theta_extrap
 * Without YaRN (ext_factor == 0) theta = theta_interp and both sin and cos
 * are multiplied by attn_factor. With YaRN, pairs below the correction range
 * [low, high] (high frequencies) keep theta_extrap, pairs above it take
 * theta_interp, with a linear ramp in between, weighted by ext_factor:
 *   ramp  = (1 - clamp((i - low) / max(0.001, high - low), 0, 1)) * ext_factor
 *   theta = theta_interp * (1 - ramp) + theta_extrap * ramp
 * and the magnitude gets mscale = attn_factor * (1 + 0.1 ln(1 / freq_scale)).
 * low and high are the pair indices whose wavelength makes beta_fast and
 * beta_slow turns over n_ctx_orig positions:
 *   dim(beta) = n_rot * ln(n_ctx_orig / (2 pi beta)) / (2 ln base)
 *   low = max(0, floor(dim(beta_fast))), high = min(n_rot - 1, ceil(dim(beta_slow)))
 * Angles are computed in double so every backend thread count, and the
 * tests, agree to float rounding.
 */
#include <math.h>
#include <string.h>

#include "backends/cpu/ops.h"
#include "common/status.h"
#include "quant/quant.h"

#define ROPE_MAX_PAIRS 512

typedef struct rope_params {
    int mode;
    int64_t n_rot;
    double theta_scale; /* base^(-2 / n_rot) */
    double freq_scale, ext_factor, attn_factor;
    double low, high; /* YaRN correction range, in pairs */
    const float *freq_factors;
} rope_params;

static double yarn_corr_dim(int64_t n_rot, int n_ctx_orig, double beta, double base) {
    return (double)n_rot * log(n_ctx_orig / (beta * 2.0 * M_PI)) / (2.0 * log(base));
}

static rope_params get_params(const be_node *nd) {
    rope_params p = {
        .mode = nd->iparams[0],
        .n_rot = nd->iparams[1],
        .theta_scale = pow((double)nd->fparams[0], -2.0 / nd->iparams[1]),
        .freq_scale = nd->fparams[1],
        .ext_factor = nd->fparams[2],
        .attn_factor = nd->fparams[3],
        .freq_factors = nd->src[2] ? nd->src[2]->data : NULL,
    };
    if (p.ext_factor != 0.0) {
        double base = nd->fparams[0];
        double lo = floor(yarn_corr_dim(p.n_rot, nd->iparams[2], nd->fparams[4], base));
        double hi = ceil(yarn_corr_dim(p.n_rot, nd->iparams[2], nd->fparams[5], base));
        p.low = fmax(0.0, lo);
        p.high = fmin((double)(p.n_rot - 1), hi);
    }
    return p;
}

/* cos and sin of every pair at position pos, scaled by the magnitude. */
static void rope_table(const rope_params *p, int64_t pos, float *cs, float *sn) {
    double inv_freq = 1.0, mscale = p->attn_factor;
    if (p->ext_factor != 0.0) mscale *= 1.0 + 0.1 * log(1.0 / p->freq_scale);
    for (int64_t i = 0; i < p->n_rot / 2; i++, inv_freq *= p->theta_scale) {
        double extrap = (double)pos * inv_freq;
        if (p->freq_factors) extrap /= p->freq_factors[i];
        double theta = p->freq_scale * extrap;
        if (p->ext_factor != 0.0) {
            double y = ((double)i - p->low) / fmax(0.001, p->high - p->low);
            double ramp = (1.0 - fmin(1.0, fmax(0.0, y))) * p->ext_factor;
            theta = theta * (1.0 - ramp) + extrap * ramp;
        }
        cs[i] = (float)(cos(theta) * mscale);
        sn[i] = (float)(sin(theta) * mscale);
    }
}

/* The last table this thread computed: every ROPE node of a forward pass
 * (two per layer) uses the same positions and parameters, so a one-token
 * pass computes its table once per thread instead of 2 * n_layer times. */
typedef struct rope_cache {
    bool valid;
    rope_params p;
    int64_t pos;
    float ff[ROPE_MAX_PAIRS]; /* the frequency factors' values, when there are some */
    float cs[ROPE_MAX_PAIRS], sn[ROPE_MAX_PAIRS];
} rope_cache;

static _Thread_local rope_cache tls_cache;

/* The cached table's inputs equal p's (the factors compared by value: a
 * buffer freed and reallocated may bring other values at the same address). */
static bool same_params(const rope_cache *c, const rope_params *p) {
    const rope_params *a = &c->p;
    if (a->mode != p->mode || a->n_rot != p->n_rot || a->theta_scale != p->theta_scale ||
        a->freq_scale != p->freq_scale || a->ext_factor != p->ext_factor ||
        a->attn_factor != p->attn_factor || a->low != p->low || a->high != p->high ||
        !a->freq_factors != !p->freq_factors)
        return false;
    return !p->freq_factors ||
           memcmp(c->ff, p->freq_factors, (size_t)(p->n_rot / 2) * sizeof(float)) == 0;
}

/* rope_table through the cache; the values are the same either way. */
static void rope_table_cached(const rope_params *p, int64_t pos, const float **cs,
                              const float **sn) {
    rope_cache *c = &tls_cache;
    if (!c->valid || c->pos != pos || !same_params(c, p)) {
        rope_table(p, pos, c->cs, c->sn);
        c->p = *p;
        if (p->freq_factors)
            memcpy(c->ff, p->freq_factors, (size_t)(p->n_rot / 2) * sizeof(float));
        c->pos = pos;
        c->valid = true;
    }
    *cs = c->cs;
    *sn = c->sn;
}

static void rotate(const rope_params *p, const float *x, float *y, int64_t head_dim,
                   const float *cs, const float *sn) {
    int64_t half = p->n_rot / 2;
    /* NORM rotates (2i, 2i+1), NEOX (i, i + half). */
    int64_t step = p->mode == BE_ROPE_NEOX ? 1 : 2, off = p->mode == BE_ROPE_NEOX ? half : 1;
    for (int64_t i = 0; i < half; i++) {
        int64_t a = i * step, b = a + off;
        float x0 = x[a], x1 = x[b];
        y[a] = x0 * cs[i] - x1 * sn[i];
        y[b] = x0 * sn[i] + x1 * cs[i];
    }
    if (y != x) memmove(y + p->n_rot, x + p->n_rot, (size_t)(head_dim - p->n_rot) * sizeof(float));
}

/* Rotates thread ith's share of (token, head) units; with `store`, each
 * rotated head also goes to its place in the cache row of its token. */
static void rope_units(const be_node *nd, const be_node *store, int ith, int nth) {
    const be_tensor *src = nd->src[0], *dst = nd->dst;
    const int32_t *pos = nd->src[1]->data;
    rope_params p = get_params(nd);
    const float *cs = NULL, *sn = NULL;
    int64_t n_head = src->ne[1], hd = src->ne[0], u0, u1, t_cached = -1;
    elmi_cpu_split(n_head * src->ne[2], ith, nth, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
        int64_t t = u / n_head, h = u % n_head;
        if (t != t_cached) {
            rope_table_cached(&p, pos[t], &cs, &sn);
            t_cached = t;
        }
        float *y = cpu_row(dst, h, t, 0);
        rotate(&p, cpu_row(src, h, t, 0), y, hd, cs, sn);
        if (!store) continue;
        const be_tensor *cache = store->dst;
        char *row = cpu_row(cache, elmi_cpu_kv_row(store, cache, t), 0, 0);
        if (cache->type == QT_F16)
            elmi_cpu_f32_to_fp16_row(y, (uint16_t *)row + h * hd, hd);
        else
            memmove((float *)row + h * hd, y, (size_t)hd * sizeof(float));
    }
}

void elmi_cpu_rope(const be_node *nd, int ith, int nth) {
    rope_units(nd, NULL, ith, nth);
}

void elmi_cpu_rope_store(const be_node *rope, const be_node *store, int ith, int nth) {
    rope_units(rope, store, ith, nth);
}

static elm_status check_params(const cpu_check *c, int64_t head_dim) {
    const be_node *nd = c->node;
    int mode = nd->iparams[0], n_rot = nd->iparams[1];
    const float *f = nd->fparams;
    if (mode != BE_ROPE_NORM && mode != BE_ROPE_NEOX)
        return elmi_cpu_check_fail(c, ELM_ERR_UNSUPPORTED, NULL, "iparams[0]", "rope mode %d", mode);
    if (n_rot < 2 || n_rot % 2 || n_rot > head_dim || n_rot / 2 > ROPE_MAX_PAIRS)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "iparams[1]",
                              "n_rot %d (head_dim %lld)", n_rot, (long long)head_dim);
    if (!(f[0] > 0.0f) || !isfinite(f[0]) || !(f[1] > 0.0f) || !isfinite(f[1]) || !isfinite(f[2]) ||
        !isfinite(f[3]))
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "fparams",
                              "freq_base %g, freq_scale %g, ext_factor %g, attn_factor %g", f[0],
                              f[1], f[2], f[3]);
    if (f[2] != 0.0f && (nd->iparams[2] <= 0 || !(f[4] > 0.0f) || !(f[5] > 0.0f) ||
                         !isfinite(f[4]) || !isfinite(f[5]) || f[0] == 1.0f))
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "YaRN params",
                              "n_ctx_orig %d, beta_fast %g, beta_slow %g, freq_base %g",
                              nd->iparams[2], f[4], f[5], f[0]);
    return ELM_OK;
}

static elm_status check_freq_factors(const cpu_check *c, int n_rot) {
    const be_tensor *ff = c->node->src[2];
    if (!ff) return ELM_OK;
    ELM_TRY(elmi_cpu_check_f32(c, ff, "src2", n_rot / 2, 1, 1, 1));
    const float *v = ff->data;
    for (int i = 0; i < n_rot / 2; i++)
        if (!(v[i] > 0.0f) || !isfinite(v[i]))
            return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, ff, "src2", "factor %d is %g", i, v[i]);
    return ELM_OK;
}

elm_status elmi_cpu_rope_check(const cpu_check *c) {
    const be_node *nd = c->node;
    const be_tensor *x = nd->src[0];
    ELM_TRY(elmi_cpu_check_tensor(c, x, "src0", QT_F32));
    if (x->ne[3] != 1) return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, x, "src0", "must be 3-D");
    ELM_TRY(elmi_cpu_check_f32(c, nd->dst, "dst", x->ne[0], x->ne[1], x->ne[2], 1));
    ELM_TRY(elmi_cpu_check_tensor(c, nd->src[1], "src1", BE_TYPE_I32));
    const be_tensor *pos = nd->src[1];
    if (pos->ne[0] != x->ne[2] || pos->ne[1] != 1 || pos->ne[2] != 1 || pos->ne[3] != 1)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, pos, "src1", "%lld positions for %lld tokens",
                              (long long)pos->ne[0], (long long)x->ne[2]);
    ELM_TRY(check_params(c, x->ne[0]));
    return check_freq_factors(c, nd->iparams[1]);
}
