#include "common/alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "edgelm.h"

static void *libc_malloc(void *user, size_t size) { (void)user; return malloc(size); }
static void *libc_realloc(void *user, void *ptr, size_t size) { (void)user; return realloc(ptr, size); }
static void libc_free(void *user, void *ptr) { (void)user; free(ptr); }

static const elm_allocator libc_allocator = {
    .struct_size = sizeof(elm_allocator),
    .malloc = libc_malloc,
    .realloc = libc_realloc,
    .free = libc_free,
    .user = NULL,
};

/* The process-wide allocator: the one setting the library keeps (see
 * elm_set_allocator). `live` counts blocks handed out and not yet freed. */
static elm_allocator current = {
    .struct_size = sizeof(elm_allocator),
    .malloc = libc_malloc,
    .realloc = libc_realloc,
    .free = libc_free,
};
static atomic_size_t live;
static atomic_flag swapping = ATOMIC_FLAG_INIT;

elm_status elm_set_allocator(const elm_allocator *a) {
    if (a && (a->struct_size < offsetof(elm_allocator, user) + sizeof a->user || !a->malloc ||
              !a->realloc || !a->free))
        return ELM_ERR_INVALID_ARG;
    if (atomic_flag_test_and_set(&swapping)) return ELM_ERR_INVALID_ARG;
    elm_status st = ELM_OK;
    if (atomic_load(&live) != 0) {
        st = ELM_ERR_INVALID_ARG; /* memory from the old allocator is still out */
    } else if (a) {
        current.malloc = a->malloc;
        current.realloc = a->realloc;
        current.free = a->free;
        current.user = a->user;
    } else {
        current = libc_allocator;
    }
    atomic_flag_clear(&swapping);
    return st;
}

size_t elm_allocations_live(void) { return atomic_load(&live); }

void *elmi_malloc(size_t size) {
    void *p = current.malloc(current.user, size ? size : 1);
    if (p) atomic_fetch_add(&live, 1);
    return p;
}

void *elmi_calloc(size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) return NULL;
    void *p = elmi_malloc(count * size);
    if (p) memset(p, 0, count * size);
    return p;
}

void *elmi_realloc(void *ptr, size_t size) {
    if (!ptr) return elmi_malloc(size);
    return current.realloc(current.user, ptr, size ? size : 1);
}

void elmi_free(void *ptr) {
    if (!ptr) return;
    atomic_fetch_sub(&live, 1);
    current.free(current.user, ptr);
}

char *elmi_strndup(const char *s, size_t n) {
    size_t len = strnlen(s, n);
    char *p = elmi_malloc(len + 1);
    if (!p) return NULL;
    memcpy(p, s, len);
    p[len] = 0;
    return p;
}

char *elmi_strdup(const char *s) { return elmi_strndup(s, strlen(s)); }

/* The block before the aligned pointer holds the pointer the allocator gave. */
void *elmi_aligned_alloc(size_t align, size_t size) {
    if (align < sizeof(void *) || (align & (align - 1))) return NULL;
    if (size > SIZE_MAX - align - sizeof(void *)) return NULL;
    unsigned char *raw = elmi_malloc(size + align + sizeof(void *));
    if (!raw) return NULL;
    uintptr_t p = ((uintptr_t)(raw + sizeof(void *)) + align - 1) & ~(uintptr_t)(align - 1);
    ((void **)p)[-1] = raw;
    return (void *)p;
}

void elmi_aligned_free(void *ptr) {
    if (ptr) elmi_free(((void **)ptr)[-1]);
}
