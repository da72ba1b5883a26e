/* cmd_template.c: `edgelm template`: a conversation rendered with a chat
 * template, exactly as the model would be fed it. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli.h"

static const char ABOUT[] =
    "Renders the conversation in FILE.json with the model's chat template\n"
    "(tokenizer.chat_template) or with the Jinja template in --template FILE, and\n"
    "prints the result exactly, with nothing added (no trailing newline).\n"
    "FILE.json is an array of {\"role\": ..., \"content\": ...} objects, or an object\n"
    "whose \"messages\" member is one. bos_token and eos_token are the model's\n"
    "BOS/EOS texts, or --bos/--eos (default \"\" without a model). A template\n"
    "error (raise_exception included) exits 1 with the template's message.";

/* The messages of `root` into a malloc'd array pointing into root. */
static int parse_messages(const char *path, json_t *root, elm_chat_message **out, size_t *n) {
    json_t *arr = json_is_object(root) ? json_object_get(root, "messages") : root;
    if (!json_is_array(arr)) return cli_error(path, "expected an array of messages or {\"messages\": [...]}");
    *n = json_array_size(arr);
    *out = calloc(*n + 1, sizeof **out);
    if (!*out) return cli_error(path, "out of memory");
    for (size_t i = 0; i < *n; i++) {
        json_t *m = json_array_get(arr, i);
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_string(role) || !json_is_string(content))
            return cli_error(path, "message %zu: \"role\" and \"content\" must be strings", i);
        if (strlen(json_string_value(role)) != json_string_length(role) ||
            strlen(json_string_value(content)) != json_string_length(content))
            return cli_error(path, "message %zu: a string holds a NUL character", i);
        (*out)[i].role = json_string_value(role);
        (*out)[i].content = json_string_value(content);
    }
    return CLI_OK;
}

static int render(const elm_model *m, const char *label, const char *tmpl, const elm_chat_message *msgs,
                  size_t n, const elm_chat_params *p) {
    char err[1024] = "", *text = NULL;
    size_t len = 0;
    elm_status st = cli_render_chat(m, tmpl, msgs, n, p, &text, &len, err, sizeof err);
    if (st != ELM_OK) return cli_lib_error(label, st, err);
    bool ok = cli_write(text, len);
    free(text);
    return ok ? CLI_OK : cli_error("stdout", "write error");
}

int cmd_template(int argc, char **argv) {
    const char *model = NULL, *tmpl_path = NULL, *messages = NULL, *bos = NULL, *eos = NULL;
    bool no_gen = false;
    const cli_opt opts[] = {
        CLI_OPT("-m", "--model", CLI_STR, &model, "FILE", "GGUF model whose chat template is used"),
        CLI_OPT(NULL, "--template", CLI_STR, &tmpl_path, "FILE", "Jinja chat template file instead"),
        CLI_REQ(NULL, "--messages", CLI_STR, &messages, "FILE.json", "the conversation"),
        CLI_OPT(NULL, "--no-generation-prompt", CLI_FLAG, &no_gen, NULL,
                "do not open an assistant turn at the end"),
        CLI_OPT(NULL, "--bos", CLI_STR, &bos, "TEXT", "bos_token (default: the model's BOS text)"),
        CLI_OPT(NULL, "--eos", CLI_STR, &eos, "TEXT", "eos_token (default: the model's EOS text)"),
        {0},
    };
    const cli_spec spec = {"template", "(-m FILE | --template FILE) --messages FILE.json [options]", ABOUT, opts};
    int rc;
    if (!cli_parse(&spec, argc, argv, &rc)) return rc;
    if (!model == !tmpl_path) return cli_usage_error(&spec, "give one of -m FILE and --template FILE");

    json_error_t jerr;
    json_t *root = json_load_file(messages, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return cli_error(messages, "line %d: %s", jerr.line, jerr.text);
    elm_chat_message *msgs = NULL;
    size_t n = 0;
    char *tmpl = NULL;
    elm_model *m = NULL;
    rc = parse_messages(messages, root, &msgs, &n);
    if (rc == CLI_OK && tmpl_path && !(tmpl = cli_read_file(tmpl_path))) rc = cli_error(tmpl_path, "cannot read the template");
    if (rc == CLI_OK && model && !(m = cli_load_model(model, NULL, true))) rc = CLI_ERROR;
    if (rc == CLI_OK) {
        elm_chat_params p;
        elm_chat_default_params(&p);
        p.add_generation_prompt = !no_gen;
        p.bos_token = bos;
        p.eos_token = eos;
        rc = render(m, model ? model : tmpl_path, tmpl, msgs, n, &p);
    }
    elm_model_free(m);
    free(tmpl);
    free(msgs);
    json_decref(root);
    return rc;
}
