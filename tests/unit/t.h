/*
 * t.h - minimal unit test helper. Each CHECK that fails prints file:line and
 * the expression and counts a failure; T_DONE() ends main with a nonzero
 * status if anything failed. Tests keep going after a failure so one run
 * shows every broken expectation.
 */
#ifndef T_H
#define T_H

#include <stdio.h>
#include <string.h>

static int t_failures;
static int t_checks;

#define CHECK(cond)                                                                \
    do {                                                                           \
        t_checks++;                                                                \
        if (!(cond)) {                                                             \
            t_failures++;                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                          \
    } while (0)

/* Integer equality, printing both values on failure. */
#define CHECK_EQ(a, b)                                                                       \
    do {                                                                                     \
        long long t_a = (long long)(a), t_b = (long long)(b);                                \
        t_checks++;                                                                          \
        if (t_a != t_b) {                                                                    \
            t_failures++;                                                                    \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld != %lld)\n", __FILE__,   \
                    __LINE__, #a, #b, t_a, t_b);                                             \
        }                                                                                    \
    } while (0)

/* A byte range (ptr, len) equals a C string literal. */
#define CHECK_MEM(ptr, len, lit)                                                             \
    do {                                                                                     \
        size_t t_len = (len);                                                                \
        const char *t_p = (const char *)(ptr);                                               \
        t_checks++;                                                                          \
        if (t_len != sizeof(lit) - 1 || (t_len && memcmp(t_p, lit, t_len) != 0)) {           \
            t_failures++;                                                                    \
            fprintf(stderr, "%s:%d: CHECK_MEM failed: got \"%.*s\", want \"%s\"\n",          \
                    __FILE__, __LINE__, (int)t_len, t_len ? t_p : "", lit);                  \
        }                                                                                    \
    } while (0)

#define T_DONE()                                                                   \
    do {                                                                           \
        fprintf(stderr, "%s: %d checks, %d failed\n", __FILE__, t_checks, t_failures); \
        return t_failures ? 1 : 0;                                                 \
    } while (0)

#endif
