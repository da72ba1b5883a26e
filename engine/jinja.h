/* jinja.h: the chat-template interpreter: the subset of Jinja2 that chat
 * templates use, rendered as Hugging Face transformers renders them
 * (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols;
 * tojson with ensure_ascii=False; globals raise_exception and strftime_now).
 * No file or environment access; bounded depth, work, memory and output. */
#ifndef ELM_JINJA_H
#define ELM_JINJA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgelm.h"

typedef struct elmi_jinja_input {
    const char *src;          /* the template, src_len bytes */
    size_t src_len;
    const elm_chat_message *msgs;
    size_t n_msgs;
    bool add_generation_prompt;
    const char *bos_token;    /* NULL: "" */
    const char *eos_token;
    int64_t now;              /* seconds since the epoch for strftime_now; 0: the clock */
} elmi_jinja_input;

/* Renders; *out (elmi_malloc, NUL-terminated, *out_len bytes) is the caller's.
 * A template's raise_exception(msg) gives ELM_ERR_TEMPLATE and msg, as is, in
 * err; other template errors give ELM_ERR_TEMPLATE with "line N: ..."; the
 * limits give ELM_ERR_TEMPLATE too; ELM_ERR_NO_MEMORY when the allocator fails. */
elm_status elmi_jinja_render(const elmi_jinja_input *in, char **out, size_t *out_len, char *err,
                             size_t err_size);

#endif
