/* cmd_sign.c: `edgelm keygen`, `edgelm sign` and `edgelm verify`: signed
 * model files (README "Signed models"). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tools/cli.h"

static const char KEYGEN_ABOUT[] =
    "Writes a new Ed25519 key pair: PREFIX.pub (the public key, to give to\n"
    "whoever loads your models) and PREFIX.key (the secret key, mode 0600, kept\n"
    "by whoever signs). Existing files are never overwritten.";

static const char SIGN_ABOUT[] =
    "Signs MODEL with a secret key from `edgelm keygen`: writes MODEL.sig, an\n"
    "Ed25519 signature over the BLAKE2b-256 hash of the whole file, with the\n"
    "key's id and the signing time.";

static const char VERIFY_ABOUT[] =
    "Checks MODEL.sig against a public key over the whole file. Exit status 0\n"
    "and \"MODEL: signature OK by key ID, signed TIME\" when it verifies; 1 and\n"
    "the reason (missing or malformed .sig, another key, the file changed, a\n"
    "bad signature) when it does not.";

/* True when arg names an option of spec that takes a value (as "--key", not "--key=F"). */
static bool takes_value(const cli_spec *spec, const char *arg) {
    for (const cli_opt *o = spec->opts; o->lng; o++)
        if (o->kind != CLI_FLAG && (strcmp(arg, o->lng) == 0 || (o->shrt && strcmp(arg, o->shrt) == 0)))
            return true;
    return false;
}

/* Parses the options and the model: the last argument when it is not an
 * option or an option's value, else -m/--model. */
static bool parse_with_model(const cli_spec *spec, int argc, char **argv, const char **model,
                             int *rc) {
    const char *last = argc >= 2 ? argv[argc - 1] : NULL;
    if (last && last[0] != '-' && (argc == 2 || !takes_value(spec, argv[argc - 2]))) {
        *model = last;
        argc--;
    }
    if (!cli_parse(spec, argc, argv, rc)) return false;
    if (!*model) {
        *rc = cli_usage_error(spec, "missing MODEL");
        return false;
    }
    return true;
}

int cmd_keygen(int argc, char **argv) {
    const char *prefix = NULL;
    const cli_opt opts[] = {
        CLI_REQ(NULL, "--out", CLI_STR, &prefix, "PREFIX", "writes PREFIX.pub and PREFIX.key"),
        {0},
    };
    const cli_spec spec = {"keygen", "--out PREFIX", KEYGEN_ABOUT, opts};
    int rc;
    if (!cli_parse(&spec, argc, argv, &rc)) return rc;
    char err[1024] = "";
    elm_status st = elm_sign_keygen(prefix, err, sizeof err);
    if (st != ELM_OK) return cli_lib_error(prefix, st, err);
    printf("%s.pub: public key\n%s.key: secret key (keep it private)\n", prefix, prefix);
    return CLI_OK;
}

int cmd_sign(int argc, char **argv) {
    const char *key = NULL, *model = NULL;
    const cli_opt opts[] = {
        CLI_REQ(NULL, "--key", CLI_STR, &key, "SECRET_KEY_FILE", "the secret key (PREFIX.key)"),
        CLI_OPT("-m", "--model", CLI_STR, &model, "FILE", "the model (or give it last)"),
        {0},
    };
    const cli_spec spec = {"sign", "--key SECRET_KEY_FILE MODEL", SIGN_ABOUT, opts};
    int rc;
    if (!parse_with_model(&spec, argc, argv, &model, &rc)) return rc;
    char err[1024] = "";
    elm_status st = elm_sign_file(model, key, err, sizeof err);
    if (st != ELM_OK) return cli_lib_error(model, st, err);
    printf("%s.sig: written\n", model);
    return CLI_OK;
}

int cmd_verify(int argc, char **argv) {
    const char *pub = NULL, *model = NULL;
    const cli_opt opts[] = {
        CLI_REQ(NULL, "--pub", CLI_STR, &pub, "PUBLIC_KEY_FILE", "the public key (PREFIX.pub)"),
        CLI_OPT("-m", "--model", CLI_STR, &model, "FILE", "the model (or give it last)"),
        {0},
    };
    const cli_spec spec = {"verify", "--pub PUBLIC_KEY_FILE MODEL", VERIFY_ABOUT, opts};
    int rc;
    if (!parse_with_model(&spec, argc, argv, &model, &rc)) return rc;
    char err[1024] = "", key_id[17] = "";
    int64_t signed_at = 0;
    elm_status st = elm_sign_verify(model, pub, key_id, &signed_at, err, sizeof err);
    if (st != ELM_OK) return cli_lib_error(model, st, err);
    time_t t = (time_t)signed_at;
    struct tm tm;
    char when[32] = "?";
    if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("%s: signature OK by key %s, signed %s\n", model, key_id, when);
    return fflush(stdout) == 0 ? CLI_OK : cli_error("stdout", "write error");
}
