/* vec_dot.c: the kernel tables and the run-time choice of SIMD level. */
#include "backends/cpu/vec_dot.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static const char *const level_names[CPU_SIMD_COUNT] = {
    [CPU_SIMD_SCALAR] = "scalar",
    [CPU_SIMD_AVX2] = "avx2",
    [CPU_SIMD_AVX512VNNI] = "avx512vnni",
    [CPU_SIMD_NEON] = "neon",
};

/* Each level holds only its own kernels; lookups walk down `lower`. */
static const cpu_simd lower[CPU_SIMD_COUNT] = {
    [CPU_SIMD_SCALAR] = CPU_SIMD_SCALAR,
    [CPU_SIMD_AVX2] = CPU_SIMD_SCALAR,
    [CPU_SIMD_AVX512VNNI] = CPU_SIMD_AVX2,
    [CPU_SIMD_NEON] = CPU_SIMD_SCALAR,
};

static cpu_dot_fn dot_table[CPU_SIMD_COUNT][QT_COUNT];
static cpu_quantize_fn quant_table[CPU_SIMD_COUNT][QT_COUNT];
static cpu_simd detected;
static _Atomic int active = -1;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void scalar_dot(int type, int64_t n, int nr, const char *x, size_t bx, const char *y,
                       size_t by, int nt, float *s, size_t ss) {
    qt_vec_dot_fn f = elmi_qtype_get(type)->vec_dot;
    for (int r = 0; r < nr; r++)
        for (int j = 0; j < nt; j++) f(n, &s[r + (size_t)j * ss], x + r * bx, y + j * by);
}

#define SCALAR_DOT(T)                                                                              \
    static void scalar_##T(int64_t n, int nr, const void *restrict x, size_t bx,                   \
                           const void *restrict y, size_t by, int nt, float *restrict s,           \
                           size_t ss) {                                                            \
        scalar_dot(QT_##T, n, nr, x, bx, y, by, nt, s, ss);                                        \
    }
SCALAR_DOT(F32)
SCALAR_DOT(F16)
SCALAR_DOT(BF16)
SCALAR_DOT(Q4_0)
SCALAR_DOT(Q4_1)
SCALAR_DOT(Q5_0)
SCALAR_DOT(Q5_1)
SCALAR_DOT(Q8_0)
SCALAR_DOT(Q4_K)
SCALAR_DOT(Q5_K)
SCALAR_DOT(Q6_K)

static void add_scalar(int type, cpu_dot_fn fn) {
    const qtype_traits *tr = elmi_qtype_get(type);
    if (!tr || !tr->vec_dot || !tr->to_float) return;
    const qtype_traits *vt = elmi_qtype_get(tr->vec_dot_type);
    if (!vt || !vt->from_float) return;
    dot_table[CPU_SIMD_SCALAR][type] = fn;
    quant_table[CPU_SIMD_SCALAR][tr->vec_dot_type] = vt->from_float;
}

static void fill_scalar(void) {
    add_scalar(QT_F32, scalar_F32);
    add_scalar(QT_F16, scalar_F16);
    add_scalar(QT_BF16, scalar_BF16);
    add_scalar(QT_Q4_0, scalar_Q4_0);
    add_scalar(QT_Q4_1, scalar_Q4_1);
    add_scalar(QT_Q5_0, scalar_Q5_0);
    add_scalar(QT_Q5_1, scalar_Q5_1);
    add_scalar(QT_Q8_0, scalar_Q8_0);
    add_scalar(QT_Q4_K, scalar_Q4_K);
    add_scalar(QT_Q5_K, scalar_Q5_K);
    add_scalar(QT_Q6_K, scalar_Q6_K);
}

static cpu_simd level_by_name(const char *name) {
    for (int l = 0; l < CPU_SIMD_COUNT; l++)
        if (strcmp(name, level_names[l]) == 0) return (cpu_simd)l;
    return CPU_SIMD_COUNT;
}

static void init(void) {
    fill_scalar();
    detected = CPU_SIMD_SCALAR;
    for (int l = CPU_SIMD_SCALAR + 1; l < CPU_SIMD_COUNT; l++) {
        if (!elmi_cpu_simd_supported((cpu_simd)l)) continue;
        elmi_cpu_fill_x86((cpu_simd)l, dot_table[l], quant_table[l]);
        elmi_cpu_fill_quantize_x86((cpu_simd)l, quant_table[l]);
        elmi_cpu_fill_arm((cpu_simd)l, dot_table[l], quant_table[l]);
        detected = (cpu_simd)l;
    }
    int a = detected;
    const char *env = getenv("EDGELM_SIMD");
    if (env && *env) {
        cpu_simd l = level_by_name(env);
        if (l != CPU_SIMD_COUNT && elmi_cpu_simd_supported(l)) a = l;
    }
    atomic_store(&active, a);
}

static void ensure_init(void) { pthread_once(&once, init); }

const char *elmi_cpu_simd_name(cpu_simd level) {
    return (unsigned)level < CPU_SIMD_COUNT ? level_names[level] : "unknown";
}

bool elmi_cpu_simd_supported(cpu_simd level) {
    if (level == CPU_SIMD_SCALAR) return true;
    return elmi_cpu_x86_supports(level) || elmi_cpu_arm_supports(level);
}

cpu_simd elmi_cpu_simd_active(void) {
    ensure_init();
    return (cpu_simd)atomic_load_explicit(&active, memory_order_relaxed);
}

bool elmi_cpu_vec_dot_force_level(const char *name) {
    ensure_init();
    if (!name) {
        atomic_store(&active, (int)detected);
        return true;
    }
    cpu_simd l = level_by_name(name);
    if (l == CPU_SIMD_COUNT || !elmi_cpu_simd_supported(l)) return false;
    atomic_store(&active, (int)l);
    return true;
}

cpu_dot_fn elmi_cpu_vec_dot_at(int type, cpu_simd level) {
    ensure_init();
    if (type < 0 || type >= QT_COUNT || (unsigned)level >= CPU_SIMD_COUNT) return NULL;
    for (cpu_simd l = level;; l = lower[l]) {
        if (dot_table[l][type]) return dot_table[l][type];
        if (l == CPU_SIMD_SCALAR) return NULL;
    }
}

bool elmi_cpu_vec_dot_native(int type, cpu_simd level) {
    ensure_init();
    if (type < 0 || type >= QT_COUNT || (unsigned)level >= CPU_SIMD_COUNT) return false;
    return dot_table[level][type] != NULL;
}

cpu_quantize_fn elmi_cpu_quantize_at(int vdt, cpu_simd level) {
    ensure_init();
    if (vdt < 0 || vdt >= QT_COUNT || (unsigned)level >= CPU_SIMD_COUNT) return NULL;
    for (cpu_simd l = level;; l = lower[l]) {
        if (quant_table[l][vdt]) return quant_table[l][vdt];
        if (l == CPU_SIMD_SCALAR) return NULL;
    }
}
