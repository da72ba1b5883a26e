/*
 * quant_fit.c: per-sub-block scale (and min) search shared by the k-quant
 * quantizers. For each candidate grid the values are rounded, then the
 * scale (and offset) minimising the squared error for those integers is
 * solved in closed form; the best candidate wins. This is a plain
 * least-squares search, not a copy of any other tool's heuristics.
 */
#include <math.h>

#include "quant/quant_impl.h"

/* Candidate grids: the extreme value lands on level nmax + k/10. */
#define FIT_STEPS 12
#define FIT_REFINE 4

typedef struct {
    double n, sq, sqq, sx, sqx;
} fit_sums;

static fit_sums asym_sums(const float *x, int n, float lo, float iscale, int nmax) {
    fit_sums f = {n, 0, 0, 0, 0};
    for (int i = 0; i < n; i++) {
        int q = qref_clamp_nearest(iscale * (x[i] - lo), 0, nmax);
        f.sq += q;
        f.sqq += (double)q * q;
        f.sx += x[i];
        f.sqx += (double)q * x[i];
    }
    return f;
}

/* Least squares x ~ s*q + o subject to s >= 0, o <= 0; returns the error
 * minus sum(x^2), which is the same for every candidate. */
static double asym_solve(const fit_sums *f, double *s, double *o) {
    const double det = f->n * f->sqq - f->sq * f->sq;
    *s = 0;
    *o = 0;
    if (det > 0) {
        *s = (f->n * f->sqx - f->sq * f->sx) / det;
        *o = (f->sx - *s * f->sq) / f->n;
    }
    if (!(det > 0) || *o > 0 || *s < 0) {
        if (f->sqq > 0) {
            *s = fmax(f->sqx / f->sqq, 0);
            *o = 0;
        } else { /* every q is 0: only the offset can fit */
            *s = 0;
            *o = fmin(f->sx / f->n, 0);
        }
    }
    return *s * *s * f->sqq + f->n * *o * *o + 2 * *s * *o * f->sq - 2 * *s * f->sqx -
           2 * *o * f->sx;
}

float elmi_qfit_asym(const float *x, int n, int nmax, float *m) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    if (lo > 0) lo = 0; /* the offset can only be subtracted */
    if (!(hi > lo)) {
        *m = -lo;
        return 0.0f;
    }
    double best = INFINITY, best_s = 0, best_o = lo;
    for (int k = -FIT_STEPS; k <= FIT_STEPS / 2; k++) {
        float iscale = (nmax + 0.1f * k) / (hi - lo);
        fit_sums f = asym_sums(x, n, lo, iscale, nmax);
        double s, o, err = asym_solve(&f, &s, &o);
        if (err < best) {
            best = err;
            best_s = s;
            best_o = o;
        }
    }
    /* Alternate rounding and solving from the best grid while it helps. */
    for (int it = 0; it < FIT_REFINE && best_s > 0; it++) {
        fit_sums f = asym_sums(x, n, (float)best_o, (float)(1 / best_s), nmax);
        double s, o, err = asym_solve(&f, &s, &o);
        if (!(err < best)) break;
        best = err;
        best_s = s;
        best_o = o;
    }
    *m = (float)-best_o;
    return (float)best_s;
}

float elmi_qfit_sym(const float *x, int n, int nmax) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++) {
        if (amax < fabsf(x[i])) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax == 0.0f) return 0.0f;
    double best = -1.0, best_s = 0.0;
    /* The extreme goes either to the extra negative level or to the top. */
    for (int side = 0; side < 2; side++) {
        for (int k = -FIT_STEPS; k <= FIT_STEPS / 2; k++) {
            float level = side ? nmax - 1 + 0.1f * k : -(nmax + 0.1f * k);
            if (side && level <= 0.5f) continue;
            float iscale = level / max;
            double sqq = 0, sqx = 0;
            for (int i = 0; i < n; i++) {
                int q = qref_clamp_nearest(iscale * x[i], -nmax, nmax - 1);
                sqq += (double)q * q;
                sqx += (double)q * x[i];
            }
            /* error = sum x^2 - sqx^2 / sqq: maximise the gain */
            double gain = sqq > 0 ? sqx * sqx / sqq : 0;
            if (gain > best) {
                best = gain;
                best_s = sqq > 0 ? sqx / sqq : 0;
            }
        }
    }
    return (float)best_s;
}
