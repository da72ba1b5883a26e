/*
 * sampler.h: picks the next token from a row of logits.
 *
 * Pipeline (elm_sampler_params in edgelm.h names the knobs):
 *   repetition penalty over the last repeat_last_n accepted tokens
 *   -> temperature <= 0: argmax (ties go to the lower id)
 *   -> top-k -> softmax with temperature -> top-p -> min-p
 *   -> renormalize -> draw with a seeded xoshiro256** generator.
 *
 * Candidates are ordered by logit, highest first, ties by lower id, so every
 * step is deterministic: same seed, same logits, same accepted tokens, same
 * draws. The generator's stream is the same on every platform; the weights
 * depend only on IEEE-754 float arithmetic and the C library's expf.
 *
 * A sampler is one stream's state; use it from one thread at a time.
 */
#ifndef ELM_SAMPLER_H
#define ELM_SAMPLER_H

#include <stdint.h>

#include "edgelm.h"

typedef struct elm_sampler elm_sampler;

/*
 * Allocates all work memory for n_vocab up front: sampling allocates nothing.
 * The penalty looks back over at most 2^24 tokens (the longest context), so
 * a larger repeat_last_n costs no more memory than that.
 * Errors: ELM_ERR_INVALID_ARG (NULL, n_vocab 0, NaN or infinite temperature,
 * NaN top_p/min_p, repeat_penalty <= 0, infinite or NaN, repeat_last_n < 0),
 * ELM_ERR_NO_MEMORY. *out is NULL on failure.
 */
elm_status elmi_sampler_new(const elm_sampler_params *p, uint32_t n_vocab, elm_sampler **out);
void elmi_sampler_free(elm_sampler *s);

/* Forgets the history and reseeds the generator from params.seed. */
void elmi_sampler_reset(elm_sampler *s);

/* Adds a token to the repetition-penalty history (ids out of range are ignored). */
void elmi_sampler_accept(elm_sampler *s, int32_t token);

/*
 * Samples one id from n_vocab logits (borrowed, not modified). -inf masks a
 * token. Returns -1 when a logit is NaN or +inf, or when no token has a
 * finite logit: the caller reports that as ELM_ERR_NUMERIC. A penalized
 * finite logit that would overflow saturates at +-FLT_MAX instead, so the
 * penalty never turns finite logits into an error or a masked token.
 */
int32_t elmi_sampler_sample(elm_sampler *s, const float *logits);

#endif
