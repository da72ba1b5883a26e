/*
 * main.c: a consumer of an installed edgelm (tests/test_install.c builds it
 * with pkg-config and with CMake).
 *
 *   app             checks that elm_version() matches the header it was
 *                   compiled with, that elm_strerror() names statuses
 *                   and that the op API (edgelm_ops.h) is installed;
 *                   prints "edgelm VERSION: TEXT".
 *   app MODEL.gguf  also loads the model on the CPU, evaluates BOS and
 *                   prints "model: n_vocab=N n_layer=L logits=finite". This
 *                   pulls the whole engine into a static link, so that the
 *                   link flags must name every library it depends on.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <edgelm.h>
#include <edgelm_ops.h>

static int run_model(const char *path) {
    char err[512] = "";
    elm_model_params mp;
    elm_model_default_params(&mp);
    mp.device = "cpu";
    elm_model *model = NULL;
    elm_context *ctx = NULL;
    elm_model_info info = ELM_INIT(elm_model_info);
    elm_context_params cp;
    elm_context_default_params(&cp);
    cp.n_ctx = 16;
    cp.n_threads = 1;
    elm_status st = elm_model_load(path, &mp, &model, err, sizeof err);
    if (st == ELM_OK) st = elm_model_get_info(model, &info);
    if (st == ELM_OK) st = elm_context_new(model, &cp, &ctx, err, sizeof err);
    if (st == ELM_OK) {
        elm_token bos = info.bos >= 0 ? info.bos : 0;
        st = elm_decode(ctx, &bos, 1);
        if (st != ELM_OK) snprintf(err, sizeof err, "%s", elm_context_last_error(ctx));
    }
    if (st != ELM_OK) {
        fprintf(stderr, "%s: %s (%s)\n", path, elm_strerror(st), err);
        elm_context_free(ctx);
        elm_model_free(model);
        return 1;
    }
    const float *logits = elm_get_logits(ctx, -1);
    bool finite = logits != NULL;
    for (uint32_t i = 0; finite && i < info.n_vocab; i++) finite = isfinite(logits[i]);
    printf("model: n_vocab=%u n_layer=%u logits=%s\n", info.n_vocab, info.n_layer,
           finite ? "finite" : "NOT FINITE");
    elm_context_free(ctx);
    elm_model_free(model);
    return finite ? 0 : 1;
}

int main(int argc, char **argv) {
    char header[32];
    snprintf(header, sizeof header, "%d.%d.%d", ELM_VERSION_MAJOR, ELM_VERSION_MINOR,
             ELM_VERSION_PATCH);
    const char *version = elm_version();
    if (!version || strcmp(version, header) != 0) {
        fprintf(stderr, "elm_version() is '%s' but the header says %s\n",
                version ? version : "(null)", header);
        return 1;
    }
    const char *ok = elm_strerror(ELM_OK), *io = elm_strerror(ELM_ERR_IO);
    if (!ok || !*ok || !io || !*io || strcmp(ok, io) == 0) {
        fprintf(stderr, "elm_strerror: '%s' for ELM_OK, '%s' for ELM_ERR_IO\n", ok ? ok : "(null)",
                io ? io : "(null)");
        return 1;
    }
    if (strcmp(elm_type_name(ELM_TYPE_Q4_K), "Q4_K") != 0) {
        fprintf(stderr, "elm_type_name(ELM_TYPE_Q4_K) is '%s'\n", elm_type_name(ELM_TYPE_Q4_K));
        return 1;
    }
    printf("edgelm %s: %s\n", version, ok);
    return argc > 1 ? run_model(argv[1]) : 0;
}
