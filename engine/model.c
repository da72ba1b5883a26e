#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/abi.h"
#include "common/alloc.h"
#include "common/status.h"
#include "engine/internal.h"
#include "engine/signature.h"
#include "quant/quant.h"

const elm_model_params elmi_model_defaults = {
    .struct_size = sizeof(elm_model_params), .device = "cpu", .vocab_only = false};

void elm_model_params_init(elm_model_params *p, size_t struct_size) {
    elmi_struct_init(p, struct_size, &elmi_model_defaults, sizeof elmi_model_defaults);
}

static char *str_dup_n(const char *s, size_t n) {
    char *d = elmi_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static elm_status index_tensors(elm_model *m, char *err, size_t err_size) {
    uint64_t n = elmi_gguf_n_tensors(m->gguf);
    m->info.n_tensors = (uint32_t)n;
    if (n == 0) return ELM_OK;
    m->tensors = elmi_calloc(n, sizeof *m->tensors);
    if (!m->tensors) return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        const gguf_tensor *g = elmi_gguf_tensor_at(m->gguf, i);
        elm_tensor_entry *e = &m->tensors[i];
        e->name = str_dup_n(g->name.ptr, g->name.len);
        if (!e->name) return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
        e->info = (elm_tensor_info){.name = e->name, .type = elmi_qtype_name(g->type),
                                    .n_dims = g->n_dims, .nbytes = g->nbytes,
                                    .offset = g->offset};
        memcpy(e->info.ne, g->ne, sizeof e->info.ne);
        m->info.weights_bytes += g->nbytes;
    }
    return ELM_OK;
}

static void add_feature(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_feature(char *buf, size_t cap, const char *fmt, ...) {
    size_t n = strlen(buf);
    if (n && n + 2 < cap) n += (size_t)snprintf(buf + n, cap - n, "; ");
    if (n + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}

/* The layers (up to 8 listed) whose kind field is `value`. */
static void layer_list(const elm_hparams *hp, int field, int value, char *buf, size_t cap) {
    size_t n = 0, count = 0;
    buf[0] = 0;
    for (uint32_t il = 0; il < hp->n_layer && n + 16 < cap; il++) {
        const elm_layer_kind *k = &hp->layer[il];
        int v = field == 0 ? k->attn : field == 1 ? k->rope : k->swa;
        if (v != value) continue;
        if (++count <= 8) n += (size_t)snprintf(buf + n, cap - n, "%s%u", count > 1 ? ", " : "", il);
        else if (count == 9) n += (size_t)snprintf(buf + n, cap - n, ", ...");
    }
}

static void describe(elm_model *m) {
    const elm_hparams *hp = &m->hp;
    char *f = m->features, list[96];
    const size_t cap = sizeof m->features;
    uint32_t n_swa = 0, n_norope = 0;
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        n_swa += hp->layer[il].swa;
        n_norope += !hp->layer[il].rope;
    }
    f[0] = 0;
    if (hp->n_attn_layers < hp->n_layer) {
        layer_list(hp, 0, 1, list, sizeof list);
        add_feature(f, cap, "attention on layers %s, gated short convolution (%u taps) on the other %u",
                    list, hp->conv_L, hp->n_layer - hp->n_attn_layers);
    }
    if (n_swa)
        add_feature(f, cap, "sliding window %u on %u of %u layers (RoPE base %g)", hp->n_swa, n_swa,
                    hp->n_layer, hp->rope_theta_swa);
    if (n_norope) {
        layer_list(hp, 1, 0, list, sizeof list);
        add_feature(f, cap, "no RoPE on layers %s", list);
    }
    if (hp->qk_norm) add_feature(f, cap, "Q/K norms");
    if (hp->post_norms) add_feature(f, cap, "post-attention and post-FFN norms");
    if (hp->fused_qkv) add_feature(f, cap, "fused qkv and gate/up");
    if (m->w.has_longrope) add_feature(f, cap, "LongRoPE factors");
    if (hp->ffn_act == BE_GLU_GELU_TANH) add_feature(f, cap, "GELU(tanh)-gated FFN");
    if (hp->embd_scale != 1.0f) add_feature(f, cap, "embeddings scaled by %g", hp->embd_scale);
    if (hp->attn_softcap > 0) add_feature(f, cap, "attention softcap %g", hp->attn_softcap);
    if (hp->final_softcap > 0) add_feature(f, cap, "final softcap %g", hp->final_softcap);
}

static void fill_info(elm_model *m) {
    elm_model_info *in = &m->info;
    const elm_hparams *hp = &m->hp;
    in->path = m->path;
    in->name = m->name ? m->name : "";
    in->arch = m->arch_name ? m->arch_name : "";
    in->tokenizer_model = elmi_vocab_model_name(m->vocab);
    in->tokenizer_pre = elmi_vocab_pre_name(m->vocab);
    in->file_size = elmi_gguf_file_size(m->gguf);
    in->gguf_version = elmi_gguf_version(m->gguf);
    in->n_vocab = elmi_vocab_n_tokens(m->vocab);
    in->add_bos = elmi_vocab_add_bos(m->vocab);
    in->bos = elmi_vocab_bos(m->vocab);
    in->eos = elmi_vocab_eos(m->vocab);
    in->vocab_only = m->vocab_only;
    in->rope_scaling = "none";
    in->features = m->features;
    if (m->vocab_only) return;
    in->n_ctx_train = hp->n_ctx_train;
    in->n_embd = hp->n_embd;
    in->n_layer = hp->n_layer;
    in->n_head = hp->n_head;
    in->n_head_kv = hp->n_head_kv;
    in->n_ff = hp->n_ff;
    in->head_dim = hp->head_dim;
    in->n_rot = hp->n_rot;
    in->rope_theta = hp->rope_theta;
    in->rope_freq_scale = hp->rope_freq_scale;
    in->rope_scaling = hp->rope_scaling == 2 ? "yarn" : hp->rope_scaling == 1 ? "linear" : "none";
    in->rope_neox = hp->rope_mode == BE_ROPE_NEOX;
    in->has_rope_freqs = m->w.has_rope_freqs;
    in->rms_eps = hp->rms_eps;
    in->tied_embeddings = m->w.tied;
    describe(m);
}

static elm_status load_strings(elm_model *m, char *err, size_t err_size) {
    gguf_str s = {0};
    elm_status st = elmi_gguf_get_str(m->gguf, "general.name", false, &s, err, err_size);
    if (st != ELM_OK) return st;
    m->name = str_dup_n(s.ptr ? s.ptr : "", s.ptr ? s.len : 0);
    s = (gguf_str){0};
    ELM_TRY(elmi_gguf_get_str(m->gguf, "general.architecture", false, &s, err, err_size));
    m->arch_name = str_dup_n(s.ptr ? s.ptr : "", s.ptr ? s.len : 0);
    if (!m->name || !m->arch_name)
        return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    return ELM_OK;
}

/* What check_signature needs: the model's path and the trusted key. */
typedef struct signature_check {
    const char *path, *trusted_key;
} signature_check;

/* elmi_gguf_check_fn: PATH.sig must sign exactly the bytes about to be used. */
static elm_status check_signature(const void *data, size_t size, void *ctx, char *err,
                                  size_t err_size) {
    const signature_check *c = ctx;
    return elmi_sig_verify(c->path, data, size, c->trusted_key, NULL, err, err_size);
}

/* Opens the file, or the memory image when m->owned_data is set; with a
 * trusted key, its signature is checked before anything is parsed. */
static elm_status load(elm_model *m, const char *path, const elm_model_params *p, char *err,
                       size_t err_size) {
    ELM_TRY(elmi_device_resolve(p->device, &m->device, err, err_size));
    signature_check sc = {.path = path, .trusted_key = p->trusted_key};
    if (m->owned_data) {
        if (p->trusted_key)
            ELM_TRY(check_signature(m->owned_data, m->owned_size, &sc, err, err_size));
        ELM_TRY(elmi_gguf_open_memory(m->owned_data, m->owned_size, &m->gguf, err, err_size));
    } else {
        ELM_TRY(elmi_gguf_open_checked(path, p->trusted_key ? check_signature : NULL, &sc,
                                       &m->gguf, err, err_size));
    }
    ELM_TRY(index_tensors(m, err, err_size));
    ELM_TRY(load_strings(m, err, err_size));
    ELM_TRY(elmi_vocab_load(m->gguf, &m->vocab, err, err_size));
    if (m->vocab_only) return ELM_OK;
    ELM_TRY(elmi_hparams_load(m->gguf, &m->hp, err, err_size));
    m->hp.n_vocab = elmi_vocab_n_tokens(m->vocab);
    return elmi_weights_bind(m, err, err_size);
}

static elm_status load_common(const char *path, void *data, size_t size,
                              const elm_model_params *params, elm_model **out, char *err,
                              size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!out) {
        elmi_free(data);
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "out is NULL");
    }
    *out = NULL;
    elm_model_params p = elmi_model_defaults;
    if (params && !elmi_struct_in(&p, sizeof p, params, ELMI_MIN_MODEL_PARAMS)) {
        elmi_free(data);
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG,
                          "elm_model_params.struct_size is %zu: initialize the struct with "
                          "elm_model_default_params", params->struct_size);
    }
    double t0 = elmi_now_ms();
    elm_model *m = elmi_calloc(1, sizeof *m);
    if (!m) {
        elmi_free(data);
        return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    }
    m->owned_data = data;
    m->owned_size = size;
    m->vocab_only = p.vocab_only;
    pthread_mutex_init(&m->dev_lock, NULL);
    m->path = str_dup_n(path, strlen(path));
    char msg[ELM_ERR_LEN] = "";
    elm_status st = m->path ? load(m, path, &p, msg, sizeof msg) : ELM_ERR_NO_MEMORY;
    if (st != ELM_OK) {
        elmi_errorf(err, err_size, st, "%s: %s", path, msg[0] ? msg : elm_strerror(st));
        elm_model_free(m);
        return st;
    }
    fill_info(m);
    m->load_ms = elmi_now_ms() - t0;
    *out = m;
    return ELM_OK;
}

elm_status elm_model_load(const char *path, const elm_model_params *params, elm_model **out,
                          char *err, size_t err_size) {
    if (!path) {
        if (out) *out = NULL;
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "path is NULL");
    }
    return load_common(path, NULL, 0, params, out, err, err_size);
}

elm_status elmi_model_load_memory(const char *label, void *data, size_t size,
                             const elm_model_params *params, elm_model **out, char *err,
                             size_t err_size) {
    return load_common(label, data, size, params, out, err, err_size);
}

void elm_model_free(elm_model *m) {
    if (!m) return;
    elmi_device_model_release(m);
    pthread_mutex_destroy(&m->dev_lock);
    if (m->tensors)
        for (uint32_t i = 0; i < m->info.n_tensors; i++) elmi_free(m->tensors[i].name);
    elmi_free(m->tensors);
    elmi_free(m->w.layers);
    elmi_vocab_free(m->vocab);
    elmi_gguf_close(m->gguf);
    elmi_free(m->owned_data);
    elmi_free(m->name);
    elmi_free(m->arch_name);
    elmi_free(m->path);
    elmi_free(m);
}

elm_status elm_model_get_info(const elm_model *m, elm_model_info *out) {
    if (!m || !out) return ELM_ERR_INVALID_ARG;
    return elmi_struct_out(out, &m->info, sizeof m->info, ELMI_MIN_MODEL_INFO) ? ELM_OK
                                                                             : ELM_ERR_INVALID_ARG;
}

uint32_t elm_model_n_tensors(const elm_model *m) {
    return m ? m->info.n_tensors : 0;
}

elm_status elm_model_tensor(const elm_model *m, uint32_t index, elm_tensor_info *out) {
    if (!m || !out || index >= m->info.n_tensors) return ELM_ERR_INVALID_ARG;
    const elm_tensor_info *t = &m->tensors[index].info;
    return elmi_struct_out(out, t, sizeof *t, ELMI_MIN_TENSOR_INFO) ? ELM_OK : ELM_ERR_INVALID_ARG;
}
