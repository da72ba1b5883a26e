/* op_ref.c: see op_ref.h. Deliberately naive: one loop per definition. */
#include "support/op_ref.h"

#include <math.h>
#include <stdlib.h>

#include "backends/backend.h"
#include "quant/quant.h"

void elm_ref_rms_norm(const float *x, const float *w, float eps, int64_t n, int64_t rows,
                      double *out) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        double ss = 0;
        for (int64_t i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        double inv = 1.0 / sqrt(ss / (double)n + eps);
        for (int64_t i = 0; i < n; i++) out[r * n + i] = xr[i] * inv * w[i];
    }
}

double elm_ref_silu(double x) {
    return x / (1.0 + exp(-x));
}

double elm_ref_gelu_tanh(double x) {
    const double k = 0.79788456080286535588; /* sqrt(2 / pi) */
    return 0.5 * x * (1.0 + tanh(k * (x + 0.044715 * x * x * x)));
}

void elm_ref_glu(int act, const float *g, const float *u, int64_t n, double *out) {
    for (int64_t i = 0; i < n; i++)
        out[i] = (act == BE_GLU_GELU_TANH ? elm_ref_gelu_tanh(g[i]) : elm_ref_silu(g[i])) * u[i];
}

void elm_ref_scale(const float *x, int64_t n, float s, float softcap, double *out) {
    for (int64_t i = 0; i < n; i++) {
        double v = (double)s * x[i];
        out[i] = softcap > 0 ? softcap * tanh(v / softcap) : v;
    }
}

void elm_ref_mul(const float *x, const float *y, int64_t n, int64_t rows, int64_t y_rows,
                 double *out) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++)
            out[r * n + i] = (double)x[r * n + i] * y[(y_rows == 1 ? 0 : r) * n + i];
}

void elm_ref_softmax(const float *x, float s, int64_t n, int64_t rows, double *out) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        double m = -INFINITY, sum = 0;
        for (int64_t i = 0; i < n; i++) m = fmax(m, (double)s * xr[i]);
        for (int64_t i = 0; i < n; i++) sum += exp((double)s * xr[i] - m);
        for (int64_t i = 0; i < n; i++) out[r * n + i] = exp((double)s * xr[i] - m) / sum;
    }
}

void elm_ref_mul_mat(const float *w, const float *x, const float *bias, int64_t K, int64_t N,
                     int64_t T, double *out) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < N; j++) {
            double acc = bias ? bias[j] : 0.0;
            for (int64_t k = 0; k < K; k++) acc += (double)w[j * K + k] * x[t * K + k];
            out[t * N + j] = acc;
        }
}

void elm_ref_rope_apply(const elm_ref_rope *r, const float *x, const int32_t *pos, const float *ff,
                        double *out) {
    for (int64_t t = 0; t < r->T; t++)
        for (int64_t h = 0; h < r->nh; h++) {
            const float *xr = x + (t * r->nh + h) * r->hd;
            double *yr = out + (t * r->nh + h) * r->hd;
            for (int i = 0; i < r->hd; i++) yr[i] = xr[i];
            for (int i = 0; i < r->n_rot / 2; i++) {
                double theta = r->freq_scale * pos[t] * pow(r->freq_base, -2.0 * i / r->n_rot) /
                               (ff ? ff[i] : 1.0);
                int a = r->mode == BE_ROPE_NEOX ? i : 2 * i;
                int b = r->mode == BE_ROPE_NEOX ? i + r->n_rot / 2 : 2 * i + 1;
                double c = cos(theta) * r->attn_factor, s = sin(theta) * r->attn_factor;
                yr[a] = xr[a] * c - xr[b] * s;
                yr[b] = xr[a] * s + xr[b] * c;
            }
        }
}

void elm_ref_kv_rows(int pos, int T, int n_rows, bool ring, int64_t *row) {
    for (int t = 0; t < T; t++) row[t] = ring ? (pos + t) % n_rows : pos + t;
}

void elm_ref_attention(const elm_ref_attn *a, const float *q, const float *K, const float *V,
                       double *out) {
    const int group = a->nh / a->nkv, row_len = a->hd * a->nkv;
    double *s = malloc((size_t)(a->pos + a->T) * sizeof *s);
    for (int t = 0; t < a->T; t++) {
        const int p = a->pos + t;
        const int lo = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
        for (int h = 0; h < a->nh; h++) {
            const int g = h / group;
            const float *qr = q + ((int64_t)t * a->nh + h) * a->hd;
            double m = -INFINITY, sum = 0;
            for (int j = lo; j <= p; j++) {
                const float *kr = K + (int64_t)(a->ring ? j % a->n_rows : j) * row_len + g * a->hd;
                double d = 0;
                for (int k = 0; k < a->hd; k++) d += (double)qr[k] * kr[k];
                d *= a->scale;
                if (a->softcap > 0) d = a->softcap * tanh(d / a->softcap);
                s[j] = d;
                m = fmax(m, d);
            }
            for (int j = lo; j <= p; j++) sum += s[j] = exp(s[j] - m);
            for (int k = 0; k < a->hd; k++) {
                double acc = 0;
                for (int j = lo; j <= p; j++)
                    acc += s[j] * V[(int64_t)(a->ring ? j % a->n_rows : j) * row_len + g * a->hd + k];
                out[((int64_t)t * a->nh + h) * a->hd + k] = acc / sum;
            }
        }
    }
    free(s);
}

void elm_ref_shortconv(const float *bcx, const float *w, float *state, int n, int L, int T,
                       int pos, int n_rows, double *out) {
    for (int t = 0; t < T; t++)
        for (int i = 0; i < n; i++) {
            const float *col = bcx + (int64_t)t * 3 * n;
            state[(int64_t)((pos + t) % n_rows) * n + i] = col[i] * col[2 * n + i];
        }
    for (int t = 0; t < T; t++)
        for (int i = 0; i < n; i++) {
            double acc = 0;
            for (int k = 0; k < L; k++) {
                int p = pos + t - (L - 1) + k;
                if (p >= 0) acc += (double)w[(int64_t)i * L + k] * state[(int64_t)(p % n_rows) * n + i];
            }
            out[(int64_t)t * n + i] = bcx[(int64_t)t * 3 * n + n + i] * acc;
        }
}

void *elm_ref_quantize_rows(int type, const float *src, int64_t rows, int64_t k, float *deq) {
    const qtype_traits *tr = elmi_qtype_get(type);
    size_t rb;
    if (!tr || !tr->from_float || !tr->to_float || !elmi_qtype_row_bytes(type, k, &rb)) return NULL;
    uint8_t *q = malloc(rb * (size_t)rows);
    if (!q) return NULL;
    for (int64_t r = 0; r < rows; r++) {
        tr->from_float(src + r * k, q + rb * (size_t)r, k);
        tr->to_float(q + rb * (size_t)r, deq + r * k, k);
    }
    return q;
}
