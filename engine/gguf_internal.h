/* gguf_internal.h: what the GGUF reader and writer share. */
#ifndef ELM_GGUF_INTERNAL_H
#define ELM_GGUF_INTERNAL_H

#include "engine/gguf.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "edgelm reads and writes GGUF on little-endian hosts only"
#endif

#define GGUF_MAGIC "GGUF"
#define GGUF_WRITE_VERSION 3u
#define GGUF_HEADER_BYTES 24u /* magic, version, n_tensors, n_kv */
#define GGUF_KEY_ALIGNMENT "general.alignment"

static inline bool gguf_is_pow2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

#endif /* ELM_GGUF_INTERNAL_H */
