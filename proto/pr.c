/*
 * pr.c - error names, byte views, bounded buffers and the aborting allocator.
 */
#include "pr.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Smallest allocation a buffer grows to; avoids a realloc per tiny append. */
#define PR_BUF_MIN_CAP 64

const char *pr_strerror(int err)
{
    switch (err) {
    case PR_OK: return "ok";
    case PR_EINVAL: return "invalid input";
    case PR_ETOOBIG: return "limit exceeded";
    case PR_EAGAIN: return "try again";
    case PR_ECLOSED: return "closed";
    case PR_ENOTFOUND: return "not found";
    case PR_EIO: return "i/o error";
    case PR_ESTATE: return "invalid state";
    default: return "unknown error";
    }
}

int pr_view_eq(pr_view a, pr_view b)
{
    /* memcmp with a NULL pointer is undefined even for length 0. */
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

int pr_view_eq_cstr(pr_view a, const char *s)
{
    return pr_view_eq(a, pr_view_make(s, strlen(s)));
}

/* ---- allocator ---- */

/* Out of memory is not a condition any caller can handle sensibly; proto/
 * never prints, so abort() is the whole report. malloc(0) may return NULL,
 * which must not be mistaken for failure, hence the n ? n : 1. */
void *pr_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

void *pr_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        abort();
    return p;
}

void *pr_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        abort();
    return q;
}

char *pr_strndup(const char *s, size_t n)
{
    const char *nul = memchr(s, '\0', n);
    size_t len = nul ? (size_t)(nul - s) : n;
    char *d = pr_malloc(len + 1);
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

void pr_free(void *p) { free(p); }

void pr_alloc_install_jansson(void) { json_set_alloc_funcs(pr_malloc, pr_free); }

/* ---- pr_buf ---- */

void pr_buf_init(pr_buf *b, size_t max)
{
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void pr_buf_dispose(pr_buf *b)
{
    pr_free(b->ptr);
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
}

/* Grows the allocation to at least need bytes. Does not look at max: callers
 * check the ceiling on content, and appendf needs one byte past it for the
 * NUL that vsnprintf writes. */
static void buf_grow(pr_buf *b, size_t need)
{
    if (need <= b->cap)
        return;
    size_t cap = b->cap < PR_BUF_MIN_CAP ? PR_BUF_MIN_CAP : b->cap;
    while (cap < need && cap <= SIZE_MAX / 2)
        cap *= 2;
    if (cap < need)
        cap = need;
    /* Doubling past the ceiling would only waste memory. */
    if (cap > b->max && need <= b->max)
        cap = b->max;
    b->ptr = pr_realloc(b->ptr, cap);
    b->cap = cap;
}

int pr_buf_reserve(pr_buf *b, size_t extra)
{
    if (extra > b->max - b->len)
        return PR_ETOOBIG;
    buf_grow(b, b->len + extra);
    return PR_OK;
}

int pr_buf_append(pr_buf *b, const void *p, size_t n)
{
    int rc = pr_buf_reserve(b, n);
    if (rc != PR_OK)
        return rc;
    if (n > 0)
        memcpy(b->ptr + b->len, p, n);
    b->len += n;
    return PR_OK;
}

int pr_buf_append_view(pr_buf *b, pr_view v) { return pr_buf_append(b, v.ptr, v.len); }

int pr_buf_append_byte(pr_buf *b, char c) { return pr_buf_append(b, &c, 1); }

int pr_buf_appendf(pr_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return PR_EINVAL;
    if ((size_t)n > b->max - b->len)
        return PR_ETOOBIG;
    buf_grow(b, b->len + (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return PR_OK;
}

void pr_buf_consume(pr_buf *b, size_t n)
{
    /* The contract says n <= len; clamping keeps a caller bug from turning
     * into a buffer overrun. */
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->ptr, b->ptr + n, b->len - n);
    b->len -= n;
}

char *pr_buf_steal(pr_buf *b, size_t *len)
{
    /* Never hand out NULL, so callers need no special case for "empty". */
    char *p = b->ptr ? b->ptr : pr_malloc(1);
    if (len)
        *len = b->len;
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

int pr_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
