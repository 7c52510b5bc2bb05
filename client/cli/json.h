/*
 * client/cli/json.h - the little JSON the `slm` command writes: strings escaped (invalid
 * UTF-8 becomes U+FFFD, so the output always parses), numbers, and flat objects of fields.
 */
#ifndef SLM_CLI_JSON_H
#define SLM_CLI_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Writes s[0..n) as a JSON string, quotes included. */
void slm_json_string(FILE *f, const char *s, size_t n);

/* Writes a finite double ("%.9g"), or null for NaN and infinities. */
void slm_json_number(FILE *f, double v);

/* One named value of a flat record, printed either as `name: value` lines or as one JSON object. */
enum slm_field_kind { SLM_FIELD_STR, SLM_FIELD_INT, SLM_FIELD_REAL };
struct slm_field {
    const char *name;
    enum slm_field_kind kind;
    const char *str;
    uint64_t u;
    double real;
};

/* Prints the fields: one `name: value` line each, or (json) one object on one line. */
void slm_fields_print(FILE *f, const struct slm_field *fields, int n, int json);

#endif
