/*
 * fuzz_jwt.c - HS256 verification with a fixed secret and a fixed clock.
 *
 * Input: a token, or 0x01 followed by "<header JSON>\n<payload JSON>" (no
 * '\n': the payload alone, under the usual header), which this harness signs
 * with the right key so the claims parser is reached too; random bytes never
 * carry a valid HMAC.
 *
 * Oracles: a verified token's claims obey the documented rules; signing the
 * same claims again gives a token that verifies to the same claims; a
 * failure leaves the claims cleared.
 */
#include "chat.h"
#include "fuzz.h"
#include "jwt.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#define SECRET PR_VIEW_LIT("fuzz-secret")
#define NOW 1700000000

/* Builds "<b64url header>.<b64url payload>.<b64url HMAC>" in tok. */
static void sign_raw(pr_buf *tok, pr_view header, pr_view payload)
{
    unsigned char md[32];
    unsigned int md_len = 0;
    FUZZ_CHECK(pr_base64url_encode(tok, header) == PR_OK);
    FUZZ_CHECK(pr_buf_append_byte(tok, '.') == PR_OK);
    FUZZ_CHECK(pr_base64url_encode(tok, payload) == PR_OK);
    FUZZ_CHECK(HMAC(EVP_sha256(), SECRET.ptr, (int)SECRET.len, (const unsigned char *)tok->ptr,
                    tok->len, md, &md_len) != NULL);
    FUZZ_CHECK(pr_buf_append_byte(tok, '.') == PR_OK);
    FUZZ_CHECK(pr_base64url_encode(tok, pr_view_make(md, md_len)) == PR_OK);
}

static int claims_cleared(const pr_jwt_claims *c)
{
    return c->sub[0] == '\0' && c->name[0] == '\0' && c->exp == 0;
}

static void check_claims(const pr_jwt_claims *c)
{
    size_t sub_len = strnlen(c->sub, sizeof c->sub);
    size_t name_len = strnlen(c->name, sizeof c->name);
    FUZZ_CHECK(sub_len < sizeof c->sub && chat_id_valid(c->sub, sub_len));
    FUZZ_CHECK(name_len < sizeof c->name && chat_name_valid(c->name, name_len));
    FUZZ_CHECK(c->exp > NOW);
}

static void resign(const pr_jwt_claims *c)
{
    pr_buf b;
    pr_jwt_claims again;
    pr_buf_init(&b, PR_JWT_MAX);
    FUZZ_CHECK(pr_jwt_sign_hs256(&b, SECRET, c->sub, c->name[0] ? c->name : NULL, NOW, c->exp) ==
               PR_OK);
    FUZZ_CHECK(pr_jwt_verify_hs256(pr_buf_view(&b), SECRET, NOW, &again) == PR_OK);
    FUZZ_CHECK(strcmp(again.sub, c->sub) == 0 && strcmp(again.name, c->name) == 0 &&
               again.exp == c->exp);
    /* The same token under another key or one second after exp. */
    FUZZ_CHECK(pr_jwt_verify_hs256(pr_buf_view(&b), PR_VIEW_LIT("other"), NOW, &again) ==
               PR_EINVAL);
    FUZZ_CHECK(pr_jwt_verify_hs256(pr_buf_view(&b), SECRET, c->exp, &again) == PR_ESTATE);
    pr_buf_dispose(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int installed;
    if (!installed) {
        pr_alloc_install_jansson();
        installed = 1;
    }

    pr_buf tok;
    pr_buf_init(&tok, SIZE_MAX);
    pr_view token = pr_view_make(data, size);
    if (size > 0 && data[0] == 0x01) {
        pr_view rest = pr_view_make(data + 1, size - 1);
        const char *nl = memchr(rest.ptr, '\n', rest.len);
        if (nl == NULL) {
            sign_raw(&tok, PR_VIEW_LIT("{\"alg\":\"HS256\",\"typ\":\"JWT\"}"), rest);
        } else {
            size_t hlen = (size_t)(nl - rest.ptr);
            sign_raw(&tok, pr_view_make(rest.ptr, hlen), pr_view_make(nl + 1, rest.len - hlen - 1));
        }
        token = pr_buf_view(&tok);
    }

    pr_jwt_claims c;
    int rc = pr_jwt_verify_hs256(token, SECRET, NOW, &c);
    FUZZ_CHECK(rc == PR_OK || rc == PR_EINVAL || rc == PR_ETOOBIG || rc == PR_ESTATE);
    FUZZ_CHECK((rc == PR_ETOOBIG) == (token.len > PR_JWT_MAX));
    if (rc == PR_OK) {
        check_claims(&c);
        resign(&c);
    } else {
        FUZZ_CHECK(claims_cleared(&c));
    }
    pr_buf_dispose(&tok);
    return 0;
}
