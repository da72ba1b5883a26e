/* alloc.h: every heap allocation of the library goes through these, and so
 * through the allocator set with elm_set_allocator() (libc by default).
 * The live-allocation count lets elm_set_allocator() refuse to swap the
 * allocator while memory from the old one is still out. */
#ifndef ELM_COMMON_ALLOC_H
#define ELM_COMMON_ALLOC_H

#include <stddef.h>

void *elmi_malloc(size_t size);
void *elmi_calloc(size_t count, size_t size); /* checks count * size for overflow */
void *elmi_realloc(void *ptr, size_t size);   /* realloc(NULL, n) allocates */
void elmi_free(void *ptr);                    /* NULL is a no-op */
char *elmi_strdup(const char *s);
char *elmi_strndup(const char *s, size_t n);
/* `align` is a power of two; free the result with elmi_aligned_free. */
void *elmi_aligned_alloc(size_t align, size_t size);
void elmi_aligned_free(void *ptr);

#endif
