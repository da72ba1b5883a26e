/*
 * test_fuzz_regress.c: one test per failure the libFuzzer targets of
 * tests/fuzz/ found (docs/fuzzing.md lists them). Each feeds the reproducer
 * through the same API as its target and checks the outcome the fix gives:
 * a clean error status or a valid result, never a crash. The reproducer
 * files themselves are kept as seeds in tests/fuzz/corpus/<target>/.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "engine/sampler.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#endif

/* Limits this test process's address space to what it maps now plus
 * `extra` bytes, so that an oversized allocation fails instead of being
 * overcommitted. Not under the sanitizers, which reserve terabytes of
 * shadow memory. Criterion runs each test in its own process. */
static bool limit_address_space(size_t extra) {
#ifdef SANITIZED
    (void)extra;
    return false;
#else
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    bool ok = f && fscanf(f, "%lu", &pages) == 1;
    if (f) fclose(f);
    if (!ok) return false;
    rlim_t lim = (rlim_t)pages * 4096 + extra;
    struct rlimit rl = {lim, lim};
    return setrlimit(RLIMIT_AS, &rl) == 0;
#endif
}

static elm_sampler_params params(float temp, float penalty, int32_t last_n) {
    return (elm_sampler_params){.temperature = temp, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
                                .repeat_penalty = penalty, .repeat_last_n = last_n,
                                .seed = 0x5eed07};
}

/*
 * fuzz_sampler crash-05e88e41f99c5bf2a2e9301207e113736b7bc8c2:
 *   90 00 02 00 04 01 00 00 5e ed 07 00 04 03 09 09 0a 0b 0c 0b 0c 00 00 00 00
 * temperature 2, penalty 0.5 over the last token, n_vocab 4, accepted 1 1 2,
 * logits {FLT_MAX, -FLT_MAX, FLT_MAX, -FLT_MAX}. The penalty divided token
 * 2's FLT_MAX by 0.5 into +inf, and elmi_sampler_sample returned -1 (a numeric
 * error, ELM_ERR_NUMERIC from elm_generate) on finite logits. A penalized
 * finite logit now saturates at +-FLT_MAX.
 */
Test(fuzz_regress, sampler_penalty_overflow) {
    const float logits[4] = {FLT_MAX, -FLT_MAX, FLT_MAX, -FLT_MAX};
    for (int greedy = 0; greedy < 2; greedy++) {
        elm_sampler_params p = params(greedy ? 0.0f : 2.0f, 0.5f, 1);
        elm_sampler *s = NULL;
        cr_assert_eq(elmi_sampler_new(&p, 4, &s), ELM_OK);
        elmi_sampler_accept(s, 1);
        elmi_sampler_accept(s, 1);
        elmi_sampler_accept(s, 2);
        int32_t id = elmi_sampler_sample(s, logits);
        cr_assert(id == 0 || id == 2, "sampled %d from finite logits", id);
        if (greedy) cr_assert_eq(id, 0, "a tie at FLT_MAX goes to the lower id");
        elmi_sampler_free(s);
    }
    /* The other direction: a penalty of FLT_MAX on negative logits of every
     * token multiplied them into -inf, masking the whole vocabulary. */
    const float neg[3] = {-2.0f, -1.0f, -3.0f};
    elm_sampler_params p = params(1.0f, FLT_MAX, 8);
    elm_sampler *s = NULL;
    cr_assert_eq(elmi_sampler_new(&p, 3, &s), ELM_OK);
    for (int32_t i = 0; i < 3; i++) elmi_sampler_accept(s, i);
    int32_t id = elmi_sampler_sample(s, neg);
    cr_assert(id >= 0 && id < 3, "sampled %d from finite logits", id);
    elmi_sampler_free(s);
}

/*
 * fuzz_sampler oom-0bcf16a565f9fc56e02ed6958715f96b6c6c7f5f: repeat_last_n
 * INT32_MAX made elmi_sampler_new allocate an 8 GiB history ring (libFuzzer:
 * out-of-memory (malloc(8589934592))); where that fails, elm_generate failed
 * with ELM_ERR_NO_MEMORY. The window is now kept at most 2^24 tokens (the
 * longest context), which changes nothing: it still covers every token.
 */
Test(fuzz_regress, sampler_huge_window) {
    bool limited = limit_address_space((size_t)1 << 30);
    elm_sampler_params p = params(0.0f, 2.0f, INT32_MAX);
    elm_sampler *s = NULL;
    cr_assert_eq(elmi_sampler_new(&p, 4, &s), ELM_OK, "repeat_last_n INT32_MAX refused%s",
                 limited ? " within 1 GiB of address space" : "");
    /* Token 0 accepted first, then 5000 others: still in the window. */
    elmi_sampler_accept(s, 0);
    for (int i = 0; i < 5000; i++) elmi_sampler_accept(s, 3);
    const float logits[4] = {4.0f, 3.0f, 2.5f, 1.0f}; /* penalized: 2, 3, 2.5, 0.5 */
    cr_assert_eq(elmi_sampler_sample(s, logits), 1);
    elmi_sampler_free(s);
}
