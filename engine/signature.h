/*
 * signature.h: signed model files (libsodium). Internal.
 *
 * A model is signed by an Ed25519 key over the BLAKE2b-256 hash of the whole
 * file; the signature sits next to it in MODEL.sig. What Ed25519 signs is
 * not the bare hash but a 68-byte message that also binds the key id and the
 * signing time, so neither can be edited in the .sig file:
 *
 *   "edgelm-signature v1\0" (20 bytes) | hash (32) | key id (8) | time (8, LE)
 *
 * Key id: the first 8 bytes of BLAKE2b-256(public key), written as 16 hex
 * digits. It only names the key in messages; trust comes from the signature.
 *
 * File formats (text, lowercase hex, each line ending in "\n"; readers also
 * accept uppercase hex and "\r\n", nothing else):
 *
 *   PREFIX.pub (public key)            PREFIX.key (secret key, mode 0600)
 *     edgelm-ed25519-public v1           edgelm-ed25519-secret v1
 *     <64 hex: 32-byte public key>       <128 hex: 64-byte libsodium secret
 *                                         key, the 32-byte seed then the
 *                                         public key>
 *
 *   MODEL.sig (at most ELMI_SIG_MAX_FILE bytes), lines in this order:
 *     edgelm-signature v1
 *     algorithm: ed25519-blake2b256
 *     key-id: <16 hex>
 *     signed-at: <UTC seconds since 1970, decimal, 0..2^53>
 *     hash: <64 hex>
 *     signature: <128 hex>
 *
 * The readers treat every file as hostile: size caps, exact line order,
 * strict hex, known versions only; errors name the line and the problem.
 * A secret key whose public half does not derive from its seed is refused.
 */
#ifndef ELM_ENGINE_SIGNATURE_H
#define ELM_ENGINE_SIGNATURE_H

#include <stddef.h>
#include <stdint.h>

#include "edgelm.h"

#define ELMI_SIG_HASH_BYTES 32
#define ELMI_SIG_KEYID_BYTES 8
#define ELMI_SIG_PUBLIC_BYTES 32
#define ELMI_SIG_SECRET_BYTES 64
#define ELMI_SIG_BYTES 64
#define ELMI_SIG_MAX_FILE 1024 /* a .sig file is ~330 bytes */
#define ELMI_SIG_MAX_TIME 9007199254740992LL /* 2^53: fits a double exactly */

typedef struct elmi_sig_public_key {
    uint8_t key[ELMI_SIG_PUBLIC_BYTES];
    uint8_t id[ELMI_SIG_KEYID_BYTES];
} elmi_sig_public_key;

typedef struct elmi_sig_secret_key {
    uint8_t key[ELMI_SIG_SECRET_BYTES];
    uint8_t id[ELMI_SIG_KEYID_BYTES]; /* of its public half */
} elmi_sig_secret_key;

/* The content of a .sig file. */
typedef struct elmi_sig_record {
    uint8_t hash[ELMI_SIG_HASH_BYTES];
    uint8_t key_id[ELMI_SIG_KEYID_BYTES];
    int64_t signed_at; /* UTC seconds */
    uint8_t sig[ELMI_SIG_BYTES];
} elmi_sig_record;

/* libsodium's sodium_init (thread-safe, idempotent); ELM_ERR_INTERNAL when
 * it fails. Every function below calls it. */
elm_status elmi_sig_init(char *err, size_t err_size);

/* Makes a key pair and writes PREFIX.pub and PREFIX.key (mode 0600). Refuses
 * to overwrite either (ELM_ERR_IO). */
elm_status elmi_sig_keygen(const char *prefix, char *err, size_t err_size);

/* Key files. ELM_ERR_IO when unreadable, ELM_ERR_FORMAT when malformed. */
elm_status elmi_sig_read_public(const char *path, elmi_sig_public_key *out, char *err,
                                size_t err_size);
elm_status elmi_sig_read_secret(const char *path, elmi_sig_secret_key *out, char *err,
                                size_t err_size);

/* Parses a .sig file's `len` bytes (not NUL-terminated). ELM_ERR_SIGNATURE
 * with "line N: ..." when malformed. */
elm_status elmi_sig_parse(const char *text, size_t len, elmi_sig_record *out, char *err,
                          size_t err_size);
/* Writes r in the .sig format into buf (cap >= ELMI_SIG_MAX_FILE); returns
 * the length. */
size_t elmi_sig_format(const elmi_sig_record *r, char *buf, size_t cap);

/* BLAKE2b-256 of a file, read in 1 MiB chunks (ELM_ERR_IO), or of memory. */
elm_status elmi_sig_hash_file(const char *path, uint8_t hash[ELMI_SIG_HASH_BYTES], char *err,
                              size_t err_size);
void elmi_sig_hash_memory(const void *data, size_t size, uint8_t hash[ELMI_SIG_HASH_BYTES]);

/* Signs the file `model` with the secret key file and writes MODEL.sig,
 * signed now. *out (when not NULL) receives the record. */
elm_status elmi_sig_sign_file(const char *model, const char *secret_key_path,
                              elmi_sig_record *out, char *err, size_t err_size);

/* Checks `model`'s signature MODEL.sig against the public key file. With
 * data != NULL the hash is taken over those `size` bytes (the model's
 * mapping, so that what is checked is what is used) instead of the file.
 * ELM_ERR_SIGNATURE with one of: the .sig is missing; it is malformed; it is
 * by another key (key ids differ); the hash differs (the file changed since
 * it was signed); the signature is bad. ELM_ERR_IO / ELM_ERR_FORMAT for the
 * key file. *out (when not NULL) receives the record once it verifies. */
elm_status elmi_sig_verify(const char *model, const void *data, size_t size,
                           const char *public_key_path, elmi_sig_record *out, char *err,
                           size_t err_size);

/* 16 hex digits and a NUL. */
void elmi_sig_key_id_hex(const uint8_t id[ELMI_SIG_KEYID_BYTES], char out[17]);

#endif
