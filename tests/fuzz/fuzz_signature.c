/*
 * fuzz_signature.c: libFuzzer target for the .sig parser (engine/signature.c).
 * fuzz-srcs: engine/signature.c common/alloc.c common/status.c
 * fuzz-options: -max_len=2048
 *
 * Feeds the input to elmi_sig_parse. Besides crashes it checks the parser
 * against the format signature.h documents: an accepted input is at most
 * ELMI_SIG_MAX_FILE bytes and starts with the v1 header, every refusal is
 * ELM_ERR_SIGNATURE with a message, and an accepted record written back with
 * elmi_sig_format parses to the same record (hex case and "\r\n" aside, the
 * format has one spelling).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/signature.h"

#define CHECK(c)                                                                                  \
    do {                                                                                          \
        if (!(c)) {                                                                               \
            fprintf(stderr, "fuzz_signature: %s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    /* A copy of exactly `size` bytes, so that ASan sees any read past the end. */
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    memcpy(text, data, size);
    elmi_sig_record r;
    char err[512] = "";
    elm_status st = elmi_sig_parse(text, size, &r, err, sizeof err);
    if (st != ELM_OK) {
        CHECK(st == ELM_ERR_SIGNATURE);
        CHECK(err[0] != 0);
        free(text);
        return 0;
    }
    CHECK(size <= ELMI_SIG_MAX_FILE);
    CHECK(size >= 20 && memcmp(text, "edgelm-signature v1", 19) == 0);
    CHECK(r.signed_at >= 0 && r.signed_at <= ELMI_SIG_MAX_TIME);
    char again[ELMI_SIG_MAX_FILE];
    size_t n = elmi_sig_format(&r, again, sizeof again);
    CHECK(n > 0 && n < sizeof again);
    elmi_sig_record r2;
    CHECK(elmi_sig_parse(again, n, &r2, err, sizeof err) == ELM_OK);
    CHECK(memcmp(&r, &r2, sizeof r) == 0);
    free(text);
    return 0;
}
