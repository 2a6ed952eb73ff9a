/*
 * jwt.h - JSON Web Tokens, HS256 only (RFC 7519 / RFC 7515 compact form).
 *
 * Pure functions, no I/O; HMAC-SHA256 from OpenSSL. Verification is strict:
 * the header must say {"alg":"HS256"} (a "typ" of "JWT" is allowed), so
 * "none" and every other algorithm are refused; the signature is compared in
 * constant time; "sub" must be a non-empty string of at most PR_JWT_ID_MAX
 * bytes, "name" (optional) a string of at most PR_JWT_NAME_MAX bytes, "exp"
 * a number of seconds that is still in the future at `now`, "nbf"
 * (optional) a number of seconds not after `now`.
 */
#ifndef PR_JWT_H
#define PR_JWT_H

#include <stdint.h>

#include "pr.h"

#define PR_JWT_MAX 4096 /* longest token accepted */
#define PR_JWT_ID_MAX 128
#define PR_JWT_NAME_MAX 128

typedef struct {
    char sub[PR_JWT_ID_MAX + 1];   /* NUL-terminated */
    char name[PR_JWT_NAME_MAX + 1]; /* NUL-terminated; "" when absent */
    int64_t exp;                    /* seconds since the epoch */
    int64_t nbf;                    /* seconds since the epoch; INT64_MIN when absent */
} pr_jwt_claims;

/* Returns 0 and fills out; PR_EINVAL for anything malformed or wrongly
 * signed, PR_ETOOBIG for an oversized token, PR_ESTATE when expired or not valid
 * yet (nbf after now). */
int pr_jwt_verify_hs256(pr_view token, pr_view secret, int64_t now, pr_jwt_claims *out);

/* Appends a token for {"sub":sub,"name":name,"iat":now,"exp":exp}. */
int pr_jwt_sign_hs256(pr_buf *out, pr_view secret, const char *sub, const char *name,
                      int64_t now, int64_t exp);

#endif
