/*
 * pr.h - the base of proto/: byte views, bounded buffers, error codes and the
 * aborting allocator shared by every module of the project.
 *
 * proto/ does no I/O and never prints. Everything here is single-threaded data
 * manipulation; objects belong to whoever embeds them.
 */
#ifndef PR_H
#define PR_H

#include <stddef.h>
#include <stdint.h>

/* One error enum for the whole project: 0 is success, failures are negative. */
enum pr_err {
    PR_OK = 0,
    PR_EINVAL = -1,      /* malformed input */
    PR_ETOOBIG = -2,     /* a limit was exceeded */
    PR_EAGAIN = -3,      /* need more input / would block */
    PR_ECLOSED = -4,     /* peer or object already closed */
    PR_ENOTFOUND = -5,   /* unknown id (sid, namespace, ...) */
    PR_EIO = -6,         /* system call failed; errno is set */
    PR_ESTATE = -7,      /* operation not valid in the current state */
};

/* Name of an error code, for logs. Never NULL. */
const char *pr_strerror(int err);

/* A borrowed byte range. Never assumed NUL-terminated. */
typedef struct {
    const char *ptr;
    size_t len;
} pr_view;

#define PR_VIEW_LIT(s) ((pr_view){(s), sizeof(s) - 1})
static inline pr_view pr_view_make(const void *p, size_t n) { return (pr_view){(const char *)p, n}; }
int pr_view_eq(pr_view a, pr_view b);
int pr_view_eq_cstr(pr_view a, const char *s);

/*
 * A growable buffer with a ceiling fixed at init. Appends that would take it
 * past max fail with PR_ETOOBIG and leave it unchanged. Memory is allocated on
 * first append, so an empty buffer costs nothing but the struct.
 */
typedef struct {
    char *ptr;
    size_t len;
    size_t cap;
    size_t max;
} pr_buf;

void pr_buf_init(pr_buf *b, size_t max);
void pr_buf_dispose(pr_buf *b);           /* frees memory; b may be re-inited */
static inline void pr_buf_reset(pr_buf *b) { b->len = 0; }
int pr_buf_reserve(pr_buf *b, size_t extra); /* ensure cap >= len + extra */
int pr_buf_append(pr_buf *b, const void *p, size_t n);
int pr_buf_append_view(pr_buf *b, pr_view v);
int pr_buf_append_byte(pr_buf *b, char c);
int pr_buf_appendf(pr_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline pr_view pr_buf_view(const pr_buf *b) { return (pr_view){b->ptr, b->len}; }
/* Removes the first n bytes (n <= len). */
void pr_buf_consume(pr_buf *b, size_t n);
/* Hands the memory to the caller (who frees it with pr_free) and empties b. */
char *pr_buf_steal(pr_buf *b, size_t *len);

/* Allocation failure aborts the process: these never return NULL. */
void *pr_malloc(size_t n);
void *pr_calloc(size_t n, size_t size);
void *pr_realloc(void *p, size_t n);
char *pr_strndup(const char *s, size_t n);
void pr_free(void *p);
/* Installs pr_malloc/pr_free into jansson. Call once at start-up. */
void pr_alloc_install_jansson(void);

/* The value of a hexadecimal digit (either case), or -1. */
int pr_hex_digit(char c);

/* Base64 (RFC 4648, with padding). */
size_t pr_base64_encoded_len(size_t n);
int pr_base64_encode(pr_buf *out, pr_view in);
/* Strict: rejects bad characters, bad padding and bad length with PR_EINVAL. */
int pr_base64_decode(pr_buf *out, pr_view in);
/* Base64url (RFC 4648 section 5) without padding, as in JWTs. The decoder is
 * as strict: '=', '+', '/' and non-canonical trailing bits are PR_EINVAL. */
size_t pr_base64url_encoded_len(size_t n);
int pr_base64url_encode(pr_buf *out, pr_view in);
int pr_base64url_decode(pr_buf *out, pr_view in);

/* 1 if the bytes are well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int pr_utf8_valid(const char *p, size_t n);

/* FNV-1a of n bytes, 32 and 64 bits (pr_hash.c). Not for untrusted keys of
 * tables an attacker could flood: it is not keyed. */
uint32_t pr_fnv1a32(const void *p, size_t n);
uint64_t pr_fnv1a64(const void *p, size_t n);

/* ---- Redis URL ----
 * redis://[[user]:password@]host[:port][/db]       one Redis
 * redis-cluster://[[user]:password@]host[:port][,host[:port]...]
 *                                                  seed nodes of a Redis Cluster
 * (no /db: a cluster has only database 0). */
#define PR_REDIS_SEEDS_MAX 16
typedef struct {
    char host[128];
    int port; /* 6379 when absent */
} pr_hostport;
typedef struct {
    char host[256];
    int port; /* 6379 when absent */
    char password[256];
    int db;
    int cluster;     /* redis-cluster://: host/port is seeds[0] */
    unsigned nseeds; /* cluster only */
    pr_hostport seeds[PR_REDIS_SEEDS_MAX];
} pr_redis_addr;
/* Returns 0 or PR_EINVAL (out is zeroed but for the default port). */
int pr_redis_url_parse(const char *url, pr_redis_addr *out);

#endif
