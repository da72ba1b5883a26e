/*
 * cli_parse.h: the CLI's parsing functions that tests/fuzz/fuzz_cli.c
 * exercises directly (cli_parse itself is declared in cli.h). They live in
 * cli_parse.c, which uses no library function.
 */
#ifndef ELM_CLI_PARSE_H
#define ELM_CLI_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tools/cli.h"

/* Strict decimal numbers: the whole text, starting with a digit, '.' and a
 * digit, or a sign (no '-' for u64) and one of those; no blanks; in the
 * type's range (finite for double). *out is unspecified on failure. */
bool elmi_parse_i64(const char *s, long long *out);
bool elmi_parse_u64(const char *s, uint64_t *out);
bool elmi_parse_double(const char *s, double *out);

typedef enum elmi_ids_status {
    ELMI_IDS_OK = 0,
    ELMI_IDS_NOT_AN_ID,  /* empty, or a comma not followed by a digit */
    ELMI_IDS_UNEXPECTED, /* *bad: the character after an id that is not ',' */
    ELMI_IDS_NO_MEMORY,
} elmi_ids_status;

/* Parses "ID,ID,...": non-empty runs of the digits 0-9 separated by single
 * commas. Ids above UINT32_MAX saturate at UINT64_MAX (for a later range
 * check). On success *out (malloc'd, freed by the caller) holds *n >= 1 ids;
 * on failure *out and *n are untouched. */
elmi_ids_status elmi_parse_ids(const char *text, uint64_t **out, size_t *n, char *bad);

#endif
