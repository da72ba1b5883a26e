#include "engine/signature.h"
#include "edgelm_tools.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/status.h"

#define SIG_MAGIC "edgelm-signature v1"
#define SIG_MAGIC_PREFIX "edgelm-signature v"
#define SIG_ALGORITHM "ed25519-blake2b256"
#define PUBLIC_MAGIC "edgelm-ed25519-public v1"
#define SECRET_MAGIC "edgelm-ed25519-secret v1"
#define KEY_MAX_FILE 512
#define HASH_CHUNK (1u << 20)

elm_status elmi_sig_init(char *err, size_t err_size) {
    if (sodium_init() < 0)
        return elmi_errorf(err, err_size, ELM_ERR_INTERNAL, "libsodium failed to initialize");
    return ELM_OK;
}

/* ------------------------------------------------------------------ hex */

static void to_hex(const uint8_t *bin, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bin[i] >> 4];
        out[2 * i + 1] = digits[bin[i] & 15];
    }
    out[2 * n] = 0;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Exactly 2*n hex digits in s (len bytes) into bin. */
static bool from_hex(const char *s, size_t len, uint8_t *bin, size_t n) {
    if (len != 2 * n) return false;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        bin[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

void elmi_sig_key_id_hex(const uint8_t id[ELMI_SIG_KEYID_BYTES], char out[17]) {
    to_hex(id, ELMI_SIG_KEYID_BYTES, out);
}

static void key_id_of(const uint8_t pk[ELMI_SIG_PUBLIC_BYTES], uint8_t id[ELMI_SIG_KEYID_BYTES]) {
    uint8_t h[32];
    crypto_generichash(h, sizeof h, pk, ELMI_SIG_PUBLIC_BYTES, NULL, 0);
    memcpy(id, h, ELMI_SIG_KEYID_BYTES);
}

/* ---------------------------------------------------------------- lines */

/* Splits text into lines: the next line's start and length (without "\n" or
 * "\r\n"); false at the end or when a line does not end in "\n". */
typedef struct line_reader {
    const char *p, *end;
    int number;
} line_reader;

static bool next_line(line_reader *r, const char **line, size_t *len) {
    if (r->p >= r->end) return false;
    const char *nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
    if (!nl) return false;
    *line = r->p;
    *len = (size_t)(nl - r->p);
    if (*len && (*line)[*len - 1] == '\r') (*len)--;
    r->p = nl + 1;
    r->number++;
    return true;
}

/* "KEY: VALUE" with the expected key: the value and its length. */
static bool field_value(const char *line, size_t len, const char *key, const char **value,
                        size_t *vlen) {
    size_t k = strlen(key);
    if (len < k + 2 || memcmp(line, key, k) != 0 || line[k] != ':' || line[k + 1] != ' ')
        return false;
    *value = line + k + 2;
    *vlen = len - k - 2;
    return true;
}

/* ------------------------------------------------------------- sig file */

static bool parse_time(const char *s, size_t len, int64_t *out) {
    if (len == 0 || len > 16) return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    if (len > 1 && s[0] == '0') return false;
    if (v > ELMI_SIG_MAX_TIME) return false;
    *out = v;
    return true;
}

static elm_status sig_line_error(char *err, size_t err_size, int line, const char *what) {
    return elmi_errorf(err, err_size, ELM_ERR_SIGNATURE, "malformed signature file: line %d: %s",
                       line, what);
}

static elm_status parse_header(line_reader *r, char *err, size_t err_size) {
    const char *line;
    size_t len;
    if (!next_line(r, &line, &len))
        return sig_line_error(err, err_size, 1, "no \"" SIG_MAGIC "\" header");
    size_t mp = strlen(SIG_MAGIC_PREFIX);
    if (len < mp || memcmp(line, SIG_MAGIC_PREFIX, mp) != 0)
        return sig_line_error(err, err_size, 1, "not an edgelm signature (no \"" SIG_MAGIC "\" header)");
    if (len != strlen(SIG_MAGIC) || memcmp(line, SIG_MAGIC, len) != 0) {
        char msg[96];
        snprintf(msg, sizeof msg, "unsupported version \"%.*s\" (this edgelm reads v1)",
                 (int)(len - mp < 16 ? len - mp : 16), line + mp);
        return sig_line_error(err, err_size, 1, msg);
    }
    return ELM_OK;
}

/* The next line must be "KEY: VALUE"; the value goes to *value. */
static elm_status expect_field(line_reader *r, const char *key, const char **value, size_t *vlen,
                               char *err, size_t err_size) {
    const char *line;
    size_t len;
    char msg[96];
    if (!next_line(r, &line, &len)) {
        snprintf(msg, sizeof msg, "missing \"%s:\" (the file is truncated)", key);
        return sig_line_error(err, err_size, r->number + 1, msg);
    }
    if (!field_value(line, len, key, value, vlen)) {
        snprintf(msg, sizeof msg, "expected \"%s: ...\"", key);
        return sig_line_error(err, err_size, r->number, msg);
    }
    return ELM_OK;
}

static elm_status expect_hex(line_reader *r, const char *key, uint8_t *bin, size_t n, char *err,
                             size_t err_size) {
    const char *v;
    size_t vlen;
    ELM_TRY(expect_field(r, key, &v, &vlen, err, err_size));
    if (!from_hex(v, vlen, bin, n)) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s must be %zu hex digits", key, 2 * n);
        return sig_line_error(err, err_size, r->number, msg);
    }
    return ELM_OK;
}

elm_status elmi_sig_parse(const char *text, size_t len, elmi_sig_record *out, char *err,
                          size_t err_size) {
    if (!text || !out) return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "NULL argument");
    memset(out, 0, sizeof *out);
    if (len > ELMI_SIG_MAX_FILE)
        return elmi_errorf(err, err_size, ELM_ERR_SIGNATURE,
                           "malformed signature file: %zu bytes, more than the %d a signature has",
                           len, ELMI_SIG_MAX_FILE);
    line_reader r = {.p = text, .end = text + len};
    ELM_TRY(parse_header(&r, err, err_size));
    const char *v;
    size_t vlen;
    ELM_TRY(expect_field(&r, "algorithm", &v, &vlen, err, err_size));
    if (vlen != strlen(SIG_ALGORITHM) || memcmp(v, SIG_ALGORITHM, vlen) != 0)
        return sig_line_error(err, err_size, r.number,
                              "unsupported algorithm (this edgelm reads " SIG_ALGORITHM ")");
    ELM_TRY(expect_hex(&r, "key-id", out->key_id, ELMI_SIG_KEYID_BYTES, err, err_size));
    ELM_TRY(expect_field(&r, "signed-at", &v, &vlen, err, err_size));
    if (!parse_time(v, vlen, &out->signed_at))
        return sig_line_error(err, err_size, r.number,
                              "signed-at must be UTC seconds (decimal, no sign or leading zero)");
    ELM_TRY(expect_hex(&r, "hash", out->hash, ELMI_SIG_HASH_BYTES, err, err_size));
    ELM_TRY(expect_hex(&r, "signature", out->sig, ELMI_SIG_BYTES, err, err_size));
    if (r.p != r.end)
        return sig_line_error(err, err_size, r.number + 1, "unexpected data after the signature");
    return ELM_OK;
}

size_t elmi_sig_format(const elmi_sig_record *r, char *buf, size_t cap) {
    char id[2 * ELMI_SIG_KEYID_BYTES + 1], hash[2 * ELMI_SIG_HASH_BYTES + 1],
        sig[2 * ELMI_SIG_BYTES + 1];
    to_hex(r->key_id, sizeof r->key_id, id);
    to_hex(r->hash, sizeof r->hash, hash);
    to_hex(r->sig, sizeof r->sig, sig);
    int n = snprintf(buf, cap,
                     SIG_MAGIC "\nalgorithm: " SIG_ALGORITHM "\nkey-id: %s\nsigned-at: %" PRId64
                               "\nhash: %s\nsignature: %s\n",
                     id, r->signed_at, hash, sig);
    return n < 0 ? 0 : (size_t)n;
}

/* The 68 bytes Ed25519 signs (see the header). */
static void signed_message(const elmi_sig_record *r, uint8_t msg[68]) {
    memcpy(msg, SIG_MAGIC, sizeof SIG_MAGIC); /* with its NUL: 20 bytes */
    memcpy(msg + 20, r->hash, 32);
    memcpy(msg + 52, r->key_id, 8);
    uint64_t t = (uint64_t)r->signed_at;
    for (int i = 0; i < 8; i++) msg[60 + i] = (uint8_t)(t >> (8 * i));
}

/* ---------------------------------------------------------------- files */

/* Reads a whole small file (at most cap bytes; more is ELM_ERR_FORMAT).
 * *missing tells ENOENT apart. */
static elm_status read_small(const char *path, char *buf, size_t cap, size_t *len, bool *missing,
                             const char *what, char *err, size_t err_size) {
    *missing = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *missing = errno == ENOENT;
        return elmi_errorf(err, err_size, ELM_ERR_IO, "cannot open the %s %s: %s", what, path,
                           strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return elmi_errorf(err, err_size, ELM_ERR_IO, "the %s %s is not a regular file", what, path);
    }
    size_t n = 0;
    for (;;) {
        ssize_t got = read(fd, buf + n, cap + 1 - n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            int e = errno;
            close(fd);
            return elmi_errorf(err, err_size, ELM_ERR_IO, "cannot read the %s %s: %s", what, path,
                               strerror(e));
        }
        if (got == 0) break;
        n += (size_t)got;
        if (n > cap) {
            close(fd);
            return elmi_errorf(err, err_size, ELM_ERR_FORMAT,
                               "the %s %s is too large (more than %zu bytes)", what, path, cap);
        }
    }
    close(fd);
    *len = n;
    return ELM_OK;
}

/* A key file: the magic line, then exactly n bytes in hex, then the end. */
static elm_status read_key(const char *path, const char *magic, uint8_t *key, size_t n,
                           const char *what, char *err, size_t err_size) {
    ELM_TRY(elmi_sig_init(err, err_size));
    char buf[KEY_MAX_FILE + 1];
    size_t len;
    bool missing;
    ELM_TRY(read_small(path, buf, KEY_MAX_FILE, &len, &missing, what, err, err_size));
    line_reader r = {.p = buf, .end = buf + len};
    const char *line;
    size_t llen;
    elm_status st = ELM_OK;
    if (!next_line(&r, &line, &llen) || llen != strlen(magic) || memcmp(line, magic, llen) != 0)
        st = elmi_errorf(err, err_size, ELM_ERR_FORMAT, "%s is not an edgelm %s (no \"%s\" line)",
                         path, what, magic);
    else if (!next_line(&r, &line, &llen) || !from_hex(line, llen, key, n) || r.p != r.end)
        st = elmi_errorf(err, err_size, ELM_ERR_FORMAT,
                         "%s: malformed %s: line 2 must be %zu hex digits, and nothing after it",
                         path, what, 2 * n);
    sodium_memzero(buf, sizeof buf);
    return st;
}

elm_status elmi_sig_read_public(const char *path, elmi_sig_public_key *out, char *err,
                                size_t err_size) {
    if (!path || !out) return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "NULL argument");
    ELM_TRY(read_key(path, PUBLIC_MAGIC, out->key, sizeof out->key, "public key file", err,
                     err_size));
    key_id_of(out->key, out->id);
    return ELM_OK;
}

elm_status elmi_sig_read_secret(const char *path, elmi_sig_secret_key *out, char *err,
                                size_t err_size) {
    if (!path || !out) return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "NULL argument");
    ELM_TRY(read_key(path, SECRET_MAGIC, out->key, sizeof out->key, "secret key file", err,
                     err_size));
    /* The public half must derive from the seed, or signatures would not verify. */
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_seed_keypair(pk, sk, out->key);
    bool ok = sodium_memcmp(sk, out->key, sizeof sk) == 0;
    sodium_memzero(sk, sizeof sk);
    if (!ok) {
        sodium_memzero(out->key, sizeof out->key);
        return elmi_errorf(err, err_size, ELM_ERR_FORMAT,
                           "%s: corrupted secret key (its public half does not match its seed)",
                           path);
    }
    key_id_of(pk, out->id);
    return ELM_OK;
}

/* Writes text to a new file with `mode`; O_EXCL when exclusive. */
static elm_status write_file(const char *path, const char *text, size_t len, mode_t mode,
                             bool exclusive, char *err, size_t err_size) {
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC);
    int fd = open(path, flags, mode);
    if (fd < 0)
        return elmi_errorf(err, err_size, ELM_ERR_IO, "cannot create %s: %s%s", path,
                           strerror(errno),
                           errno == EEXIST ? " (refusing to overwrite a key)" : "");
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = errno;
            close(fd);
            return elmi_errorf(err, err_size, ELM_ERR_IO, "cannot write %s: %s", path, strerror(e));
        }
        done += (size_t)n;
    }
    if (close(fd) != 0)
        return elmi_errorf(err, err_size, ELM_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    return ELM_OK;
}

/* prefix + suffix into buf, or ELM_ERR_INVALID_ARG when too long. */
static elm_status join(char *buf, size_t cap, const char *a, const char *b, char *err,
                       size_t err_size) {
    if ((size_t)snprintf(buf, cap, "%s%s", a, b) >= cap)
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "the path %s%s is too long", a, b);
    return ELM_OK;
}

elm_status elmi_sig_keygen(const char *prefix, char *err, size_t err_size) {
    if (!prefix || !*prefix)
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "no key file prefix");
    ELM_TRY(elmi_sig_init(err, err_size));
    char pub_path[4096], key_path[4096];
    ELM_TRY(join(pub_path, sizeof pub_path, prefix, ".pub", err, err_size));
    ELM_TRY(join(key_path, sizeof key_path, prefix, ".key", err, err_size));
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_keypair(pk, sk);
    char text[KEY_MAX_FILE];
    to_hex(sk, sizeof sk, text + snprintf(text, sizeof text, "%s\n", SECRET_MAGIC));
    strcat(text, "\n");
    elm_status st = write_file(key_path, text, strlen(text), 0600, true, err, err_size);
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(text, sizeof text);
    if (st != ELM_OK) return st;
    to_hex(pk, sizeof pk, text + snprintf(text, sizeof text, "%s\n", PUBLIC_MAGIC));
    strcat(text, "\n");
    st = write_file(pub_path, text, strlen(text), 0644, true, err, err_size);
    if (st != ELM_OK) unlink(key_path); /* no half pair left behind */
    return st;
}

/* ---------------------------------------------------------------- hashes */

elm_status elmi_sig_hash_file(const char *path, uint8_t hash[ELMI_SIG_HASH_BYTES], char *err,
                              size_t err_size) {
    ELM_TRY(elmi_sig_init(err, err_size));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return elmi_errorf(err, err_size, ELM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    uint8_t *buf = elmi_malloc(HASH_CHUNK);
    if (!buf) {
        close(fd);
        return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    }
    crypto_generichash_state state;
    crypto_generichash_init(&state, NULL, 0, ELMI_SIG_HASH_BYTES);
    elm_status st = ELM_OK;
    for (;;) {
        ssize_t n = read(fd, buf, HASH_CHUNK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            st = elmi_errorf(err, err_size, ELM_ERR_IO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (n == 0) break;
        crypto_generichash_update(&state, buf, (unsigned long long)n);
    }
    crypto_generichash_final(&state, hash, ELMI_SIG_HASH_BYTES);
    elmi_free(buf);
    close(fd);
    return st;
}

void elmi_sig_hash_memory(const void *data, size_t size, uint8_t hash[ELMI_SIG_HASH_BYTES]) {
    crypto_generichash_state state;
    crypto_generichash_init(&state, NULL, 0, ELMI_SIG_HASH_BYTES);
    const uint8_t *p = data;
    for (size_t done = 0; done < size; done += HASH_CHUNK) {
        size_t n = size - done < HASH_CHUNK ? size - done : HASH_CHUNK;
        crypto_generichash_update(&state, p + done, n);
    }
    crypto_generichash_final(&state, hash, ELMI_SIG_HASH_BYTES);
}

/* ----------------------------------------------------------- sign, verify */

elm_status elmi_sig_sign_file(const char *model, const char *secret_key_path,
                              elmi_sig_record *out, char *err, size_t err_size) {
    if (!model || !secret_key_path)
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "NULL argument");
    char sig_path[4096];
    ELM_TRY(join(sig_path, sizeof sig_path, model, ".sig", err, err_size));
    elmi_sig_secret_key sk;
    ELM_TRY(elmi_sig_read_secret(secret_key_path, &sk, err, err_size));
    time_t now = time(NULL);
    elmi_sig_record r = {.signed_at = now > 0 ? (int64_t)now : 0}; /* a clock before 1970 says 0 */
    memcpy(r.key_id, sk.id, sizeof r.key_id);
    elm_status st = elmi_sig_hash_file(model, r.hash, err, err_size);
    if (st == ELM_OK) {
        uint8_t msg[68];
        signed_message(&r, msg);
        crypto_sign_detached(r.sig, NULL, msg, sizeof msg, sk.key);
    }
    sodium_memzero(&sk, sizeof sk);
    ELM_TRY(st);
    char text[ELMI_SIG_MAX_FILE];
    size_t len = elmi_sig_format(&r, text, sizeof text);
    ELM_TRY(write_file(sig_path, text, len, 0644, false, err, err_size));
    if (out) *out = r;
    return ELM_OK;
}

static elm_status read_sig(const char *sig_path, elmi_sig_record *r, char *err, size_t err_size) {
    char text[ELMI_SIG_MAX_FILE + 1], why[512];
    size_t len;
    bool missing;
    elm_status st = read_small(sig_path, text, ELMI_SIG_MAX_FILE, &len, &missing, "signature file",
                               why, sizeof why);
    if (st != ELM_OK && missing)
        return elmi_errorf(err, err_size, ELM_ERR_SIGNATURE,
                           "no signature file %s (sign the model with `edgelm sign`)", sig_path);
    if (st == ELM_ERR_FORMAT)
        return elmi_errorf(err, err_size, ELM_ERR_SIGNATURE, "malformed signature file: %s", why);
    if (st != ELM_OK) return elmi_errorf(err, err_size, ELM_ERR_SIGNATURE, "%s", why);
    return elmi_sig_parse(text, len, r, err, err_size);
}

elm_status elmi_sig_verify(const char *model, const void *data, size_t size,
                           const char *public_key_path, elmi_sig_record *out, char *err,
                           size_t err_size) {
    if (!model || !public_key_path)
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "NULL argument");
    char sig_path[4096];
    ELM_TRY(join(sig_path, sizeof sig_path, model, ".sig", err, err_size));
    elmi_sig_public_key pk;
    ELM_TRY(elmi_sig_read_public(public_key_path, &pk, err, err_size));
    elmi_sig_record r;
    ELM_TRY(read_sig(sig_path, &r, err, err_size));
    char want[17], got[17];
    elmi_sig_key_id_hex(pk.id, want);
    elmi_sig_key_id_hex(r.key_id, got);
    if (memcmp(pk.id, r.key_id, sizeof pk.id) != 0)
        return elmi_errorf(err, err_size, ELM_ERR_SIGNATURE,
                           "signed by another key: %s names key %s, the trusted key is %s",
                           sig_path, got, want);
    uint8_t hash[ELMI_SIG_HASH_BYTES];
    if (data)
        elmi_sig_hash_memory(data, size, hash);
    else
        ELM_TRY(elmi_sig_hash_file(model, hash, err, err_size));
    if (sodium_memcmp(hash, r.hash, sizeof hash) != 0)
        return elmi_errorf(err, err_size, ELM_ERR_SIGNATURE,
                           "hash mismatch: the file changed since it was signed (its BLAKE2b-256 "
                           "differs from the one in %s)", sig_path);
    uint8_t msg[68];
    signed_message(&r, msg);
    if (crypto_sign_verify_detached(r.sig, msg, sizeof msg, pk.key) != 0)
        return elmi_errorf(err, err_size, ELM_ERR_SIGNATURE,
                           "bad signature: %s is not a valid signature by key %s", sig_path, want);
    if (out) *out = r;
    return ELM_OK;
}

/* ------------------------------------------- edgelm_tools.h entry points */

elm_status elm_sign_keygen(const char *prefix, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    return elmi_sig_keygen(prefix, err, err_size);
}

elm_status elm_sign_file(const char *model, const char *secret_key, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    return elmi_sig_sign_file(model, secret_key, NULL, err, err_size);
}

elm_status elm_sign_verify(const char *model, const char *public_key, char *key_id,
                           int64_t *signed_at, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    elmi_sig_record r;
    ELM_TRY(elmi_sig_verify(model, NULL, 0, public_key, &r, err, err_size));
    if (key_id) elmi_sig_key_id_hex(r.key_id, key_id);
    if (signed_at) *signed_at = r.signed_at;
    return ELM_OK;
}
