/* t_json.h - JSON helpers for the proto unit tests (needs jansson). */
#ifndef T_JSON_H
#define T_JSON_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

/* Parses a JSON literal of the test itself; a typo in it aborts the test. */
static inline json_t *js(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (j == NULL) {
        fprintf(stderr, "bad JSON in test: %s\n", text);
        abort();
    }
    return j;
}

#endif
