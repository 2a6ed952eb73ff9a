/*
 * jwt.c - HS256 JSON Web Tokens (compact form, base64url without padding).
 *
 * Verification checks the header before anything else and the signature
 * before the payload is parsed, so unauthenticated bytes only ever reach the
 * header parser.
 */
#include "jwt.h"

#include "chat.h"

#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#define JWT_SIG_LEN 32 /* HMAC-SHA256 */
#define JWT_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* sub and name follow the chat rules for ids and names. */
_Static_assert(PR_JWT_ID_MAX == CHAT_ID_MAX, "sub is a chat user id");
_Static_assert(PR_JWT_NAME_MAX == CHAT_NAME_MAX, "name is a chat name");

static int hmac_sha256(pr_view secret, pr_view data, unsigned char md[JWT_SIG_LEN])
{
    unsigned int md_len = 0;
    /* An empty secret would let anyone mint tokens. */
    if (secret.len == 0 || secret.len > INT_MAX)
        return PR_EINVAL;
    if (HMAC(EVP_sha256(), secret.ptr, (int)secret.len, (const unsigned char *)data.ptr, data.len,
             md, &md_len) == NULL ||
        md_len != JWT_SIG_LEN)
        return PR_EINVAL;
    return PR_OK;
}

/* Decodes one base64url part and parses it as a JSON object. NULL if either fails. */
static json_t *load_part(pr_view part)
{
    pr_buf b;
    json_t *j = NULL;
    json_error_t jerr;

    pr_buf_init(&b, PR_JWT_MAX);
    if (pr_base64url_decode(&b, part) != PR_OK || b.len == 0)
        goto done;
    /* Flags 0: an object or array only, no NUL inside strings. */
    j = json_loadb(b.ptr, b.len, 0, &jerr);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
done:
    pr_buf_dispose(&b);
    return j;
}

/* {"alg":"HS256"} with an optional "typ":"JWT"; "crit" names extensions we
 * do not implement, so its presence alone is a refusal (RFC 7515 4.1.11). */
static int header_valid(const json_t *h)
{
    const json_t *alg = json_object_get(h, "alg");
    const json_t *typ = json_object_get(h, "typ");
    return json_is_string(alg) && strcmp(json_string_value(alg), "HS256") == 0 &&
           (typ == NULL || (json_is_string(typ) && strcmp(json_string_value(typ), "JWT") == 0)) &&
           json_object_get(h, "crit") == NULL;
}

/*
 * "exp" or "nbf" as whole seconds. A fractional time is rounded up: for a
 * whole number `now`, now >= t exactly when now >= ceil(t), which is the
 * comparison both claims need (expired: now >= exp; valid: now >= nbf).
 * Reals outside the int64_t range are refused.
 */
static int time_claim(const json_t *v, int64_t *exp)
{
    if (json_is_integer(v)) {
        *exp = json_integer_value(v);
        return PR_OK;
    }
    if (!json_is_real(v))
        return PR_EINVAL;
    double d = json_real_value(v);
    if (!(d >= -0x1p63 && d < 0x1p63))
        return PR_EINVAL;
    int64_t t = (int64_t)d;
    if ((double)t < d)
        t++; /* cannot overflow: doubles this close to 2^63 are whole */
    *exp = t;
    return PR_OK;
}

static int claims_parse(const json_t *p, pr_jwt_claims *out)
{
    const json_t *sub = json_object_get(p, "sub");
    const json_t *name = json_object_get(p, "name");

    if (!json_is_string(sub) || !chat_id_valid(json_string_value(sub), json_string_length(sub)))
        return PR_EINVAL;
    if (name != NULL && (!json_is_string(name) ||
                         !chat_name_valid(json_string_value(name), json_string_length(name))))
        return PR_EINVAL;
    if (time_claim(json_object_get(p, "exp"), &out->exp) != PR_OK)
        return PR_EINVAL;
    /* RFC 7519 4.1.5: optional, but once present it is honoured. */
    const json_t *nbf = json_object_get(p, "nbf");
    out->nbf = INT64_MIN;
    if (nbf != NULL && time_claim(nbf, &out->nbf) != PR_OK)
        return PR_EINVAL;
    memcpy(out->sub, json_string_value(sub), json_string_length(sub));
    if (name != NULL)
        memcpy(out->name, json_string_value(name), json_string_length(name));
    return PR_OK;
}

int pr_jwt_verify_hs256(pr_view token, pr_view secret, int64_t now, pr_jwt_claims *out)
{
    int rc = PR_EINVAL;
    json_t *header = NULL, *payload = NULL;
    pr_buf sig;

    memset(out, 0, sizeof *out);
    pr_buf_init(&sig, JWT_SIG_LEN);
    if (token.len > PR_JWT_MAX) {
        rc = PR_ETOOBIG;
        goto done;
    }

    /* memchr on a NULL pointer is undefined even for length 0. */
    const char *dot1 = token.len ? memchr(token.ptr, '.', token.len) : NULL;
    if (dot1 == NULL)
        goto done;
    const char *after1 = dot1 + 1;
    const char *end = token.ptr + token.len;
    const char *dot2 = memchr(after1, '.', (size_t)(end - after1));
    if (dot2 == NULL || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)) != NULL)
        goto done;

    header = load_part(pr_view_make(token.ptr, (size_t)(dot1 - token.ptr)));
    if (header == NULL || !header_valid(header))
        goto done;

    unsigned char md[JWT_SIG_LEN];
    if (hmac_sha256(secret, pr_view_make(token.ptr, (size_t)(dot2 - token.ptr)), md) != PR_OK)
        goto done;
    /* sig's ceiling is 32 bytes: a longer signature fails to decode. */
    if (pr_base64url_decode(&sig, pr_view_make(dot2 + 1, (size_t)(end - dot2 - 1))) != PR_OK ||
        sig.len != JWT_SIG_LEN || CRYPTO_memcmp(sig.ptr, md, JWT_SIG_LEN) != 0)
        goto done;

    payload = load_part(pr_view_make(after1, (size_t)(dot2 - after1)));
    if (payload == NULL || claims_parse(payload, out) != PR_OK)
        goto done;
    /* No leeway: a token minted with nbf = iat by a server whose clock runs
     * ahead is refused until ours catches up, as RFC 7519 says. */
    rc = now >= out->exp || now < out->nbf ? PR_ESTATE : PR_OK;

done:
    if (rc != PR_OK)
        memset(out, 0, sizeof *out);
    json_decref(header);
    json_decref(payload);
    pr_buf_dispose(&sig);
    return rc;
}

int pr_jwt_sign_hs256(pr_buf *out, pr_view secret, const char *sub, const char *name, int64_t now,
                      int64_t exp)
{
    int rc = PR_EINVAL;
    json_t *claims = NULL;
    pr_buf tok;
    char json[1024];
    unsigned char md[JWT_SIG_LEN];

    /* Built aside and appended whole, so out is unchanged on failure. */
    pr_buf_init(&tok, PR_JWT_MAX * 2);
    if (sub == NULL || !chat_id_valid(sub, strlen(sub)) ||
        (name != NULL && !chat_name_valid(name, strlen(name))))
        goto done;

    claims = json_object();
    json_object_set_new(claims, "sub", json_string(sub));
    if (name != NULL)
        json_object_set_new(claims, "name", json_string(name));
    json_object_set_new(claims, "iat", json_integer(now));
    json_object_set_new(claims, "exp", json_integer(exp));
    /* At most 2 * 128 escaped bytes per string plus keys and two numbers. */
    size_t n = json_dumpb(claims, json, sizeof json, JSON_COMPACT);
    if (n == 0 || n > sizeof json)
        goto done;

    if ((rc = pr_base64url_encode(&tok, PR_VIEW_LIT(JWT_HEADER))) != PR_OK ||
        (rc = pr_buf_append_byte(&tok, '.')) != PR_OK ||
        (rc = pr_base64url_encode(&tok, pr_view_make(json, n))) != PR_OK ||
        (rc = hmac_sha256(secret, pr_buf_view(&tok), md)) != PR_OK ||
        (rc = pr_buf_append_byte(&tok, '.')) != PR_OK ||
        (rc = pr_base64url_encode(&tok, pr_view_make(md, sizeof md))) != PR_OK)
        goto done;
    rc = pr_buf_append_view(out, pr_buf_view(&tok));

done:
    json_decref(claims);
    pr_buf_dispose(&tok);
    return rc;
}
