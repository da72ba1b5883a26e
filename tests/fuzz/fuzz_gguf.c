/* fuzz_gguf.c: libFuzzer target for the GGUF reader. Whatever opens is walked
 * completely, so that the sanitizers see any pointer the reader vouched for
 * that lies outside the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"

static unsigned walk_kv(const gguf_kv *kv) {
    unsigned sum = (unsigned)kv->key.len + (unsigned char)kv->key.ptr[kv->key.len - 1];
    if (kv->type == GGUF_TYPE_STRING && kv->v.str.len)
        sum += (unsigned char)kv->v.str.ptr[kv->v.str.len - 1];
    if (kv->type != GGUF_TYPE_ARRAY) return sum;
    if (kv->arr_type == GGUF_TYPE_STRING) {
        for (uint64_t j = 0; j < kv->arr_n; j++)
            if (kv->arr_strs[j].len)
                sum += (unsigned char)kv->arr_strs[j].ptr[kv->arr_strs[j].len - 1];
    } else if (kv->arr_n) {
        const uint8_t *d = kv->arr_data;
        sum += d[0] + d[kv->arr_n * gguf_type_size(kv->arr_type) - 1];
    }
    return sum;
}

/* A name the lookups can take: no NUL inside, short. */
static bool as_cstr(gguf_str s, char *buf, size_t cap) {
    if (s.len >= cap || memchr(s.ptr, 0, s.len)) return false;
    memcpy(buf, s.ptr, s.len);
    buf[s.len] = 0;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *f = NULL;
    char err[256], name[256];
    if (gguf_open_memory(data, size, &f, err, sizeof err) != ELM_OK) return 0;
    volatile unsigned sum = 0;
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        sum += walk_kv(kv);
        if (as_cstr(kv->key, name, sizeof name) && gguf_find(f, name) != kv) abort();
    }
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const uint8_t *d = t->data;
        sum += d[0] + d[t->nbytes - 1];
        if (as_cstr(t->name, name, sizeof name) && gguf_find_tensor(f, name) != t) abort();
    }
    uint32_t u = 0;
    gguf_get_u32(f, "general.alignment", false, &u, err, sizeof err);
    (void)sum;
    gguf_close(f);
    return 0;
}

#ifdef FUZZ_WRITE_SEEDS
/* Built without libFuzzer by scripts/fuzz.sh: writes small valid files into
 * argv[1], since the shared files are too large to mutate quickly. */
#include <stdio.h>

#include "quant/quant.h"
#include "support/tiny_model.h"

static int write_model(const char *dir, const char *name, tiny_model_opts o) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, name);
    return tiny_model_write(&o, path);
}

static int write_values(const char *dir) {
    gguf_writer *w = gguf_writer_new();
    if (!w) return -1;
    uint8_t bytes[16] = {1, 0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    for (int t = 0; t < GGUF_TYPE_COUNT; t++) {
        char key[32];
        if (!gguf_type_size((gguf_type)t)) continue;
        snprintf(key, sizeof key, "v.%s", gguf_type_name((gguf_type)t));
        gguf_set_val(w, key, (gguf_type)t, bytes);
        snprintf(key, sizeof key, "a.%s", gguf_type_name((gguf_type)t));
        gguf_set_arr_data(w, key, (gguf_type)t, bytes, 2);
    }
    const char *strs[] = {"", "x", "\xE2\x96\x81y"};
    gguf_set_str(w, "v.str", "s");
    gguf_set_arr_str(w, "a.str", strs, 3);
    gguf_set_u32(w, "general.alignment", 64);
    int64_t ne[4] = {32, 2, 1, 1};
    uint8_t data[256] = {0};
    gguf_add_tensor(w, "q8", QT_Q8_0, 2, ne, data, 68);
    gguf_add_tensor(w, "f16", QT_F16, 4, ne, data, 128);
    char path[4096], err[256];
    snprintf(path, sizeof path, "%s/values.gguf", dir);
    int rc = gguf_write_file(w, path, err, sizeof err) == ELM_OK ? 0 : -1;
    gguf_writer_free(w);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    tiny_model_opts o = tiny_model_default();
    o.n_embd = 32, o.n_ff = 32, o.n_layer = 1, o.n_head = 2, o.n_head_kv = 1, o.n_vocab = 262;
    o.wtype = QT_Q8_0;
    tiny_model_opts q = o;
    q.arch = "qwen2", q.tied = true, q.wtype = QT_F16;
    int rc = write_model(argv[1], "tiny-llama", o) | write_model(argv[1], "tiny-qwen2", q);
    gguf_writer *w = gguf_writer_new();
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab-only.gguf", argv[1]);
    if (!w || tiny_model_add_vocab(w, 262) != ELM_OK ||
        gguf_write_file(w, path, NULL, 0) != ELM_OK)
        rc = -1;
    gguf_writer_free(w);
    return (rc | write_values(argv[1])) ? 1 : 0;
}
#endif
