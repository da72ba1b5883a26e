/* edgelm.c: the command-line entry point: dispatches to a subcommand. */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "tools/cli.h"

/* Every subcommand. A new one is a function with the cli_command signature
 * and one row here; help and dispatch follow from the table. */
static const cli_command commands[] = {
    {"run", cmd_run, "generate text from a prompt"},
    {"chat", cmd_chat, "chat with a model through its chat template"},
    {"serve", cmd_serve, "serve a model over HTTP with an OpenAI-compatible API"},
    {"eval", cmd_eval, "print the top logits of a token sequence as JSON"},
    {"tokenize", cmd_tokenize, "print the token ids of stdin"},
    {"template", cmd_template, "render a conversation with a chat template, as the model is fed it"},
    {"info", cmd_info, "describe a GGUF model: hyperparameters, tokenizer, tensors"},
    {"devices", cmd_devices, "list the devices edgelm can run on, with their limits"},
    {"keygen", cmd_keygen, "write a new key pair for signing models"},
    {"sign", cmd_sign, "sign a model file (writes MODEL.sig)"},
    {"verify", cmd_verify, "check a model file's signature against a public key"},
    {"bench", bench_main, "measure the devices on this machine and recommend one"},
    {"make-model", make_model_main, "write a synthetic GGUF model of a popular shape"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const cli_command *find_command(const char *name) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static void print_overview(FILE *f) {
    fprintf(f, "usage: edgelm COMMAND [options]\n"
               "       edgelm help COMMAND | --help | --version\n\n"
               "Runs small language models stored as GGUF files, locally.\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nExit status: 0 success, 1 error, 2 usage error.\n");
}

static int unknown_command(const char *name) {
    fprintf(stderr, "edgelm: unknown command '%s'\n", name);
    fprintf(stderr, "usage: edgelm COMMAND [options]; try 'edgelm --help'\n");
    return CLI_USAGE;
}

static int help(int argc, char **argv) {
    if (argc < 3) {
        print_overview(stdout);
        return CLI_OK;
    }
    if (argc > 3) {
        fprintf(stderr, "edgelm: help: unexpected argument '%s'\nusage: edgelm help COMMAND\n",
                argv[3]);
        return CLI_USAGE;
    }
    const cli_command *c = find_command(argv[2]);
    if (!c) return unknown_command(argv[2]);
    char name[64], flag[] = "--help";
    snprintf(name, sizeof name, "%s", c->name);
    char *sub[] = {name, flag, NULL};
    return c->fn(2, sub);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_overview(stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0)
        return help(argc, argv);
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("edgelm %s\n", elm_version());
        return CLI_OK;
    }
    const cli_command *c = find_command(cmd);
    if (!c) return unknown_command(cmd);
    return c->fn(argc - 1, argv + 1);
}
