/* op_ref.c: see op_ref.h. Deliberately naive: one loop per definition. */
#include "support/op_ref.h"

#include <math.h>
#include <stdlib.h>

#include "backends/backend.h"

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
