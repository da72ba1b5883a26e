/*
 * test_signature.c: signed model files (engine/signature.c, README "Signed
 * models"): keys, the .sig format, elm_model_load with trusted_key, and
 * `edgelm keygen/sign/verify` (run as a separate process).
 *
 * Independent expectations: BLAKE2b-256 against the RFC 7693 / Python
 * hashlib value of "abc", the streamed file hash against libsodium's one-shot
 * hash of the whole file, the key id and the signature recomputed with
 * libsodium from the documented formats, and refusals from the contract
 * (which error, which reason).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/abi.h"
#include "edgelm.h"
#include "edgelm_tools.h"
#include "engine/signature.h"
#include "support/paths.h"
#include "support/tiny_model.h"

/* ============================================================== helpers */

static void tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", test_tmp_dir(), name);
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

static void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

static char *slurp(const char *path, size_t *len) {
    char *s = test_read_file(path, len);
    cr_assert_not_null(s, "cannot read %s", path);
    return s;
}

/* A fresh tiny llama model at tmp/NAME. */
static void make_model(char *path, size_t cap, const char *name) {
    tmp_path(path, cap, name);
    tiny_model_opts o = tiny_model_default();
    cr_assert_eq(tiny_model_write(&o, path), 0, "cannot write the tiny model");
}

/* A fresh key pair tmp/NAME.pub, tmp/NAME.key (old ones removed first). */
static void make_keys(char *prefix, size_t cap, const char *name) {
    tmp_path(prefix, cap, name);
    char p[4200];
    snprintf(p, sizeof p, "%s.pub", prefix);
    unlink(p);
    snprintf(p, sizeof p, "%s.key", prefix);
    unlink(p);
    char err[512] = "";
    cr_assert_eq(elm_sign_keygen(prefix, err, sizeof err), ELM_OK, "keygen: %s", err);
}

static void key_file(char *out, size_t cap, const char *prefix, const char *ext) {
    snprintf(out, cap, "%s.%s", prefix, ext);
}

static void sign(const char *model, const char *prefix) {
    char key[4200], err[512] = "";
    key_file(key, sizeof key, prefix, "key");
    cr_assert_eq(elm_sign_file(model, key, err, sizeof err), ELM_OK, "sign: %s", err);
}

/* elm_model_load with trusted_key = PREFIX.pub; the status, message in err. */
static elm_status load_trusted(const char *model, const char *prefix, char *err, size_t cap) {
    char pub[4200];
    key_file(pub, sizeof pub, prefix, "pub");
    elm_model_params mp;
    elm_model_default_params(&mp);
    mp.trusted_key = pub;
    elm_model *m = NULL;
    err[0] = 0;
    elm_status st = elm_model_load(model, &mp, &m, err, cap);
    cr_assert(st == ELM_OK ? m != NULL : m == NULL);
    elm_model_free(m);
    return st;
}

static void expect_refused(const char *model, const char *prefix, const char *reason) {
    char err[1024];
    elm_status st = load_trusted(model, prefix, err, sizeof err);
    cr_assert_eq(st, ELM_ERR_SIGNATURE, "%s: status %d (%s), want ELM_ERR_SIGNATURE", model, st, err);
    cr_assert(strstr(err, reason), "message \"%s\" lacks \"%s\"", err, reason);
    char pub[4200], id[17] = "";
    key_file(pub, sizeof pub, prefix, "pub");
    st = elm_sign_verify(model, pub, id, NULL, err, sizeof err);
    cr_assert_eq(st, ELM_ERR_SIGNATURE, "elm_sign_verify: status %d (%s)", st, err);
    cr_assert(strstr(err, reason), "elm_sign_verify: \"%s\" lacks \"%s\"", err, reason);
}

static void copy_file(const char *from, const char *to) {
    size_t n;
    char *data = slurp(from, &n);
    unlink(to);
    write_bytes(to, data, n);
    free(data);
}

static void flip_byte(const char *path, size_t at) {
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    unsigned char b;
    cr_assert_eq(pread(fd, &b, 1, (off_t)at), 1);
    b ^= 0x01;
    cr_assert_eq(pwrite(fd, &b, 1, (off_t)at), 1);
    close(fd);
}

static size_t file_size(const char *path) {
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s", path);
    return (size_t)st.st_size;
}

static void hex_of(const uint8_t *b, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

/* ================================================================ hashes */

Test(signature, blake2b_256_matches_the_known_value) {
    cr_assert_eq(sodium_init() >= 0, 1);
    uint8_t h[32];
    char hex[65];
    elmi_sig_hash_memory("abc", 3, h);
    hex_of(h, 32, hex);
    /* BLAKE2b with a 32-byte digest of "abc" (hashlib.blake2b(b"abc", digest_size=32)) */
    cr_assert_str_eq(hex, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
}

Test(signature, streamed_file_hash_equals_the_one_shot_hash) {
    cr_assert_eq(sodium_init() >= 0, 1);
    /* Over 2 MiB, not a multiple of the 1 MiB chunk. */
    size_t n = (2u << 20) + 12345;
    uint8_t *data = malloc(n);
    cr_assert_not_null(data);
    for (size_t i = 0; i < n; i++) data[i] = (uint8_t)(i * 2654435761u >> 13);
    char path[4096];
    tmp_path(path, sizeof path, "big.bin");
    write_bytes(path, data, n);
    uint8_t want[32], got[32], mem[32];
    crypto_generichash(want, 32, data, n, NULL, 0);
    char err[256];
    cr_assert_eq(elmi_sig_hash_file(path, got, err, sizeof err), ELM_OK, "%s", err);
    elmi_sig_hash_memory(data, n, mem);
    cr_assert_eq(memcmp(want, got, 32), 0, "streamed hash differs");
    cr_assert_eq(memcmp(want, mem, 32), 0, "chunked memory hash differs");
    free(data);
}

/* ============================================================ round trip */

/* The .sig of `model` recomputed from the documented format: its hash is the
 * file's, its key id names the public key, its signature verifies. */
static void check_sig_independently(const char *model, const char *prefix) {
    char path[4200], err[512];
    snprintf(path, sizeof path, "%s.sig", model);
    size_t len;
    char *text = slurp(path, &len);
    elmi_sig_record r;
    cr_assert_eq(elmi_sig_parse(text, len, &r, err, sizeof err), ELM_OK, "%s", err);
    free(text);
    size_t n;
    char *data = slurp(model, &n);
    uint8_t hash[32];
    crypto_generichash(hash, 32, (const uint8_t *)data, n, NULL, 0);
    free(data);
    cr_assert_eq(memcmp(hash, r.hash, 32), 0, "the .sig hash is not the file's BLAKE2b-256");
    /* The public key file: the magic line, then 64 hex digits. */
    key_file(path, sizeof path, prefix, "pub");
    char *pubtext = slurp(path, &len);
    const char *magic = "edgelm-ed25519-public v1\n";
    cr_assert_eq(strncmp(pubtext, magic, strlen(magic)), 0);
    uint8_t pk[32];
    size_t bin_len;
    cr_assert_eq(sodium_hex2bin(pk, 32, pubtext + strlen(magic), 64, NULL, &bin_len, NULL), 0);
    cr_assert_eq(bin_len, 32);
    free(pubtext);
    uint8_t id[32];
    crypto_generichash(id, 32, pk, 32, NULL, 0);
    cr_assert_eq(memcmp(id, r.key_id, 8), 0, "key id is not BLAKE2b-256(pk)[0..8)");
    /* The signed message: "edgelm-signature v1\0" | hash | key id | time LE. */
    uint8_t msg[68];
    memcpy(msg, "edgelm-signature v1", 20);
    memcpy(msg + 20, hash, 32);
    memcpy(msg + 52, id, 8);
    for (int i = 0; i < 8; i++) msg[60 + i] = (uint8_t)((uint64_t)r.signed_at >> (8 * i));
    cr_assert_eq(crypto_sign_verify_detached(r.sig, msg, sizeof msg, pk), 0,
                 "the signature does not verify over the documented message");
    time_t now = time(NULL);
    cr_assert(r.signed_at <= now && r.signed_at > now - 600, "signed_at %lld", (long long)r.signed_at);
}

Test(signature, keygen_sign_verify_round_trip_on_a_tiny_model) {
    char model[4096], prefix[4096], key[4200], pub[4200], err[1024];
    make_model(model, sizeof model, "tiny.gguf");
    make_keys(prefix, sizeof prefix, "alice");
    key_file(key, sizeof key, prefix, "key");
    key_file(pub, sizeof pub, prefix, "pub");
    struct stat st;
    cr_assert_eq(stat(key, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "secret key mode %o", st.st_mode & 0777);
    sign(model, prefix);
    check_sig_independently(model, prefix);
    char id[17] = "";
    int64_t when = 0;
    cr_assert_eq(elm_sign_verify(model, pub, id, &when, err, sizeof err), ELM_OK, "%s", err);
    cr_assert_eq(strlen(id), 16);
    cr_assert_eq(load_trusted(model, prefix, err, sizeof err), ELM_OK, "%s", err);
}

Test(signature, round_trip_on_stories260K) {
    char src[4096];
    if (!test_shared_path("models/stories260K.gguf", src, sizeof src)) {
        fprintf(stderr, "skip: %s not found\n", src);
        cr_skip_test("no shared stories260K");
    }
    char model[4096], prefix[4096], err[1024];
    tmp_path(model, sizeof model, "stories260K.gguf");
    copy_file(src, model);
    make_keys(prefix, sizeof prefix, "stories");
    sign(model, prefix);
    check_sig_independently(model, prefix);
    cr_assert_eq(load_trusted(model, prefix, err, sizeof err), ELM_OK, "%s", err);
    /* The same file changed at one byte in the middle is refused. */
    flip_byte(model, file_size(model) / 2);
    expect_refused(model, prefix, "hash mismatch");
}

/* ============================================================ refusals */

Test(signature, a_flipped_byte_anywhere_is_refused) {
    char prefix[4096];
    make_keys(prefix, sizeof prefix, "flip");
    const char *names[] = {"flip-start.gguf", "flip-middle.gguf", "flip-end.gguf"};
    for (int i = 0; i < 3; i++) {
        char model[4096];
        make_model(model, sizeof model, names[i]);
        sign(model, prefix);
        size_t n = file_size(model);
        size_t at = i == 0 ? 0 : i == 1 ? n / 2 : n - 1;
        flip_byte(model, at);
        expect_refused(model, prefix, "hash mismatch");
    }
}

Test(signature, another_key_is_refused) {
    char model[4096], alice[4096], bob[4096];
    make_model(model, sizeof model, "other.gguf");
    make_keys(alice, sizeof alice, "other-alice");
    make_keys(bob, sizeof bob, "other-bob");
    sign(model, alice);
    expect_refused(model, bob, "signed by another key");
}

Test(signature, a_missing_sig_is_refused) {
    char model[4096], prefix[4096];
    make_model(model, sizeof model, "unsigned.gguf");
    make_keys(prefix, sizeof prefix, "unsigned");
    expect_refused(model, prefix, "no signature file");
}

/* The .sig's text with `field`'s line replaced by `line` (NULL: removed). */
static void edit_sig(const char *model, const char *field, const char *line) {
    char path[4200];
    snprintf(path, sizeof path, "%s.sig", model);
    size_t len;
    char *text = slurp(path, &len);
    char out[4096] = "";
    for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
        if (strncmp(l, field, strlen(field)) == 0) {
            if (line) strcat(strcat(out, line), "\n");
        } else {
            strcat(strcat(out, l), "\n");
        }
    }
    free(text);
    write_text(path, out);
}

Test(signature, forged_fields_are_a_bad_signature) {
    char model[4096], prefix[4096], path[4200], err[512];
    make_model(model, sizeof model, "forged.gguf");
    make_keys(prefix, sizeof prefix, "forged");
    sign(model, prefix);
    snprintf(path, sizeof path, "%s.sig", model);
    size_t len;
    char *text = slurp(path, &len);
    elmi_sig_record r;
    cr_assert_eq(elmi_sig_parse(text, len, &r, err, sizeof err), ELM_OK, "%s", err);
    free(text);
    /* The signing time is signed too: a later one does not verify. */
    char line[64];
    snprintf(line, sizeof line, "signed-at: %lld", (long long)r.signed_at + 1);
    edit_sig(model, "signed-at:", line);
    expect_refused(model, prefix, "bad signature");
    /* One bit of a fresh signature. */
    sign(model, prefix);
    text = slurp(path, &len);
    cr_assert_eq(elmi_sig_parse(text, len, &r, err, sizeof err), ELM_OK, "%s", err);
    free(text);
    char hex[129];
    r.sig[10] ^= 0x40;
    hex_of(r.sig, 64, hex);
    char sigline[160];
    snprintf(sigline, sizeof sigline, "signature: %s", hex);
    edit_sig(model, "signature:", sigline);
    expect_refused(model, prefix, "bad signature");
}

Test(signature, truncated_or_garbage_sig_files_are_malformed) {
    char model[4096], prefix[4096], path[4200];
    make_model(model, sizeof model, "garbage.gguf");
    make_keys(prefix, sizeof prefix, "garbage");
    sign(model, prefix);
    snprintf(path, sizeof path, "%s.sig", model);
    size_t len;
    char *good = slurp(path, &len);
    /* Every truncation of a valid .sig. */
    for (size_t cut = 0; cut < len; cut++) {
        write_bytes(path, good, cut);
        char err[1024];
        cr_assert_eq(load_trusted(model, prefix, err, sizeof err), ELM_ERR_SIGNATURE,
                     "cut at %zu: %s", cut, err);
        cr_assert(strstr(err, "malformed signature file"), "cut at %zu: %s", cut, err);
    }
    const char *garbage[] = {
        "hello\n",
        "edgelm-signature v2\nalgorithm: ed25519-blake2b256\n",
        "\x7f" "ELF\x02\x01\x01",
        "edgelm-signature v1\nalgorithm: rsa\n",
        "edgelm-signature v1\nalgorithm: ed25519-blake2b256\nkey-id: zz2bcfec136ef1bc\n",
        "edgelm-signature v1\nalgorithm: ed25519-blake2b256\nkey-id: 052bcfec136ef1b\n",
        "edgelm-signature v1\nalgorithm: ed25519-blake2b256\nkey-id: 052bcfec136ef1bc\n"
        "signed-at: -5\n",
        "edgelm-signature v1\nalgorithm: ed25519-blake2b256\nkey-id: 052bcfec136ef1bc\n"
        "signed-at: 99999999999999999999\n",
    };
    for (size_t i = 0; i < sizeof garbage / sizeof *garbage; i++) {
        write_text(path, garbage[i]);
        char err[1024];
        cr_assert_eq(load_trusted(model, prefix, err, sizeof err), ELM_ERR_SIGNATURE, "%zu: %s", i,
                     err);
        cr_assert(strstr(err, "malformed signature file"), "%zu: %s", i, err);
    }
    write_text(path, "edgelm-signature v2\n");
    char err[1024];
    load_trusted(model, prefix, err, sizeof err);
    cr_assert(strstr(err, "unsupported version"), "%s", err);
    /* Data after the signature, and a huge file. */
    char *extra = malloc(len + 8);
    memcpy(extra, good, len);
    memcpy(extra + len, "more\n", 6);
    write_text(path, extra);
    cr_assert_eq(load_trusted(model, prefix, err, sizeof err), ELM_ERR_SIGNATURE);
    cr_assert(strstr(err, "unexpected data"), "%s", err);
    free(extra);
    char *huge = malloc(1 << 20);
    memset(huge, 'a', 1 << 20);
    write_bytes(path, huge, 1 << 20);
    free(huge);
    cr_assert_eq(load_trusted(model, prefix, err, sizeof err), ELM_ERR_SIGNATURE);
    cr_assert(strstr(err, "malformed signature file"), "%s", err);
    /* The good one again still verifies (the loop did not damage the model). */
    write_bytes(path, good, len);
    cr_assert_eq(load_trusted(model, prefix, err, sizeof err), ELM_OK, "%s", err);
    free(good);
}

Test(signature, garbage_key_files_are_clear_errors) {
    char model[4096], prefix[4096], path[4200], err[1024];
    make_model(model, sizeof model, "keys.gguf");
    make_keys(prefix, sizeof prefix, "keys");
    sign(model, prefix);
    elm_model_params mp;
    elm_model_default_params(&mp);
    elm_model *m = NULL;
    /* No key file. */
    mp.trusted_key = "/nonexistent/key.pub";
    cr_assert_eq(elm_model_load(model, &mp, &m, err, sizeof err), ELM_ERR_IO, "%s", err);
    cr_assert(strstr(err, "/nonexistent/key.pub"), "%s", err);
    /* Garbage, a secret key where a public one belongs, bad hex, truncated. */
    key_file(path, sizeof path, prefix, "key");
    size_t len;
    char *secret = slurp(path, &len);
    const char *bad[] = {"", "garbage\n", secret,
                         "edgelm-ed25519-public v1\nxyz\n",
                         "edgelm-ed25519-public v1\n0123\n",
                         "edgelm-ed25519-public v1\n"};
    tmp_path(path, sizeof path, "bad.pub");
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_text(path, bad[i]);
        mp.trusted_key = path;
        cr_assert_eq(elm_model_load(model, &mp, &m, err, sizeof err), ELM_ERR_FORMAT, "%zu: %s", i,
                     err);
        cr_assert(strstr(err, "public key file"), "%zu: %s", i, err);
        cr_assert_null(m);
    }
    free(secret);
    /* A secret key whose public half is not its seed's. */
    key_file(path, sizeof path, prefix, "key");
    secret = slurp(path, &len);
    char *last = secret + strlen("edgelm-ed25519-secret v1\n") + 127;
    *last = *last == '0' ? '1' : '0';
    tmp_path(path, sizeof path, "bad.key");
    write_text(path, secret);
    free(secret);
    cr_assert_eq(elm_sign_file(model, path, err, sizeof err), ELM_ERR_FORMAT, "%s", err);
    cr_assert(strstr(err, "corrupted secret key"), "%s", err);
    /* A public key where the secret one belongs. */
    key_file(path, sizeof path, prefix, "pub");
    cr_assert_eq(elm_sign_file(model, path, err, sizeof err), ELM_ERR_FORMAT, "%s", err);
}

Test(signature, keygen_refuses_to_overwrite) {
    char prefix[4096], err[512];
    make_keys(prefix, sizeof prefix, "twice");
    cr_assert_eq(elm_sign_keygen(prefix, err, sizeof err), ELM_ERR_IO);
    cr_assert(strstr(err, "refusing to overwrite"), "%s", err);
}

/* ================================================================== ABI */

Test(signature, first_release_params_ignore_trusted_key) {
    char model[4096], err[1024];
    make_model(model, sizeof model, "old-abi.gguf"); /* unsigned */
    /* A caller built before trusted_key existed: its struct ends at
     * vocab_only, and what follows in memory is none of the library's business. */
    union {
        elm_model_params p;
        unsigned char bytes[sizeof(elm_model_params)];
    } u;
    memset(u.bytes, 0xA5, sizeof u.bytes);
    elm_model_params_init(&u.p, ELMI_MIN_MODEL_PARAMS);
    cr_assert_eq(u.p.struct_size, ELMI_MIN_MODEL_PARAMS);
    u.p.trusted_key = "/nonexistent/key.pub"; /* beyond its struct_size */
    elm_model *m = NULL;
    cr_assert_eq(elm_model_load(model, &u.p, &m, err, sizeof err), ELM_OK, "%s", err);
    elm_model_free(m);
    /* The current size reads it. */
    elm_model_params mp;
    elm_model_default_params(&mp);
    cr_assert_null(mp.trusted_key);
    mp.trusted_key = "/nonexistent/key.pub";
    cr_assert_neq(elm_model_load(model, &mp, &m, err, sizeof err), ELM_OK);
    cr_assert_null(m);
}

/* ================================================================== CLI */

typedef struct result {
    int rc;
    char *out, *err;
} result;

static result cli(const char *const *args) {
    const char *exe = test_cli();
    if (!exe) cr_skip_test("ELM_CLI is not set: run this test through ctest");
    const char *argv[16];
    size_t n = 0;
    argv[n++] = exe;
    while (args[n - 1] && n < 15) {
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;
    result r = {0};
    r.rc = test_run(argv, NULL, 0, &r.out, &r.err);
    cr_assert(r.out && r.err);
    cr_assert_neq(r.rc, -1, "edgelm %s crashed: %s", args[0], r.err);
    cr_assert(!strstr(r.err, "Sanitizer") && !strstr(r.err, "runtime error:"),
              "edgelm %s: sanitizer report:\n%s", args[0], r.err);
    return r;
}
#define EDGELM(...) cli((const char *const[]){__VA_ARGS__, NULL})

static void result_free(result *r) {
    free(r->out);
    free(r->err);
}

Test(signature_cli, keygen_sign_verify_and_trusted_key) {
    char model[4096], prefix[4096], pub[4200], key[4200], other[4096], other_pub[4200];
    make_model(model, sizeof model, "cli.gguf");
    tmp_path(prefix, sizeof prefix, "cli-key");
    key_file(pub, sizeof pub, prefix, "pub");
    key_file(key, sizeof key, prefix, "key");
    unlink(pub);
    unlink(key);
    result r = EDGELM("keygen", "--out", prefix);
    cr_assert_eq(r.rc, 0, "keygen: %s", r.err);
    result_free(&r);
    r = EDGELM("keygen", "--out", prefix);
    cr_assert_eq(r.rc, 1, "keygen over existing keys: rc %d", r.rc);
    result_free(&r);
    r = EDGELM("sign", "--key", key, model);
    cr_assert_eq(r.rc, 0, "sign: %s", r.err);
    result_free(&r);
    check_sig_independently(model, prefix);

    r = EDGELM("verify", "--pub", pub, model);
    cr_assert_eq(r.rc, 0, "verify: %s", r.err);
    char pubid[17];
    elmi_sig_public_key pk;
    char err[512];
    cr_assert_eq(elmi_sig_read_public(pub, &pk, err, sizeof err), ELM_OK, "%s", err);
    elmi_sig_key_id_hex(pk.id, pubid);
    char want[4400];
    snprintf(want, sizeof want, "%s: signature OK by key %s, signed ", model, pubid);
    cr_assert(strncmp(r.out, want, strlen(want)) == 0, "verify said: %s", r.out);
    result_free(&r);

    r = EDGELM("info", "-m", model, "--trusted-key", pub);
    cr_assert_eq(r.rc, 0, "info --trusted-key: %s", r.err);
    result_free(&r);
    r = EDGELM("run", "-m", model, "-p", "a", "-n", "2", "--trusted-key", pub);
    cr_assert_eq(r.rc, 0, "run --trusted-key: %s", r.err);
    result_free(&r);

    make_keys(other, sizeof other, "cli-other");
    key_file(other_pub, sizeof other_pub, other, "pub");
    r = EDGELM("verify", "--pub", other_pub, model);
    cr_assert_eq(r.rc, 1);
    cr_assert(strstr(r.err, "signed by another key"), "%s", r.err);
    result_free(&r);
    r = EDGELM("run", "-m", model, "-p", "a", "-n", "2", "--trusted-key", other_pub);
    cr_assert_eq(r.rc, 1);
    cr_assert_str_empty(r.out);
    cr_assert(strstr(r.err, "signed by another key"), "%s", r.err);
    result_free(&r);
    r = EDGELM("info", "-m", model, "--trusted-key", other_pub);
    cr_assert_eq(r.rc, 1);
    cr_assert(strstr(r.err, "signed by another key"), "%s", r.err);
    result_free(&r);

    flip_byte(model, file_size(model) - 1);
    r = EDGELM("verify", "--pub", pub, model);
    cr_assert_eq(r.rc, 1);
    cr_assert(strstr(r.err, "hash mismatch"), "%s", r.err);
    result_free(&r);
}

Test(signature_cli, usage_errors) {
    result r = EDGELM("verify", "--pub", "x.pub");
    cr_assert_eq(r.rc, 2, "verify without MODEL: rc %d", r.rc);
    cr_assert(strstr(r.err, "missing MODEL"), "%s", r.err);
    result_free(&r);
    r = EDGELM("sign", "model.gguf");
    cr_assert_eq(r.rc, 2, "sign without --key: rc %d", r.rc);
    result_free(&r);
    r = EDGELM("keygen");
    cr_assert_eq(r.rc, 2);
    result_free(&r);
    r = EDGELM("verify", "--pub", "/nonexistent.pub", "/nonexistent.gguf");
    cr_assert_eq(r.rc, 1);
    cr_assert(strstr(r.err, "/nonexistent.pub"), "%s", r.err);
    result_free(&r);
}
