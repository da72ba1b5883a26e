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

#include "engine/sampler.h"

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
 * 2's FLT_MAX by 0.5 into +inf, and sampler_sample returned -1 (a numeric
 * error, ELM_ERR_NUMERIC from elm_generate) on finite logits. A penalized
 * finite logit now saturates at +-FLT_MAX.
 */
Test(fuzz_regress, sampler_penalty_overflow) {
    const float logits[4] = {FLT_MAX, -FLT_MAX, FLT_MAX, -FLT_MAX};
    for (int greedy = 0; greedy < 2; greedy++) {
        elm_sampler_params p = params(greedy ? 0.0f : 2.0f, 0.5f, 1);
        elm_sampler *s = NULL;
        cr_assert_eq(sampler_new(&p, 4, &s), ELM_OK);
        sampler_accept(s, 1);
        sampler_accept(s, 1);
        sampler_accept(s, 2);
        int32_t id = sampler_sample(s, logits);
        cr_assert(id == 0 || id == 2, "sampled %d from finite logits", id);
        if (greedy) cr_assert_eq(id, 0, "a tie at FLT_MAX goes to the lower id");
        sampler_free(s);
    }
    /* The other direction: a penalty of FLT_MAX on negative logits of every
     * token multiplied them into -inf, masking the whole vocabulary. */
    const float neg[3] = {-2.0f, -1.0f, -3.0f};
    elm_sampler_params p = params(1.0f, FLT_MAX, 8);
    elm_sampler *s = NULL;
    cr_assert_eq(sampler_new(&p, 3, &s), ELM_OK);
    for (int32_t i = 0; i < 3; i++) sampler_accept(s, i);
    int32_t id = sampler_sample(s, neg);
    cr_assert(id >= 0 && id < 3, "sampled %d from finite logits", id);
    sampler_free(s);
}
