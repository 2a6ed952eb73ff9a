/* Unit tests for proto/jwt.h. */
#include "t.h"
#include "jwt.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>

#define V(lit) PR_VIEW_LIT(lit)
#define SECRET V("test-secret")
#define NOW 1700000000

/*
 * Test vectors signed outside this code base (python3 hmac/hashlib/base64,
 * the first cross-checked with `openssl dgst -sha256 -hmac test-secret`).
 * VEC1: {"alg":"HS256","typ":"JWT"}
 *       {"sub":"alice","name":"Alice","iat":1700000000,"exp":1700003600}
 * VEC2: {"typ":"JWT","alg":"HS256"}
 *       {"exp":1700003600.5,"sub":"u~42?>","name":"Zo\u00eb \u00f1?>"}
 *       (its payload has both '-' and '_' in base64url)
 */
#define VEC1_HP                                                                                    \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                        \
    "eyJzdWIiOiJhbGljZSIsIm5hbWUiOiJBbGljZSIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAzNjAwfQ"
#define VEC1 VEC1_HP ".TQylF409C2CiyBNBMu2d7-fZvo-T8KdchvOq1FwPqUo"
#define VEC2                                                                                       \
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9."                                                        \
    "eyJleHAiOjE3MDAwMDM2MDAuNSwic3ViIjoidX40Mj8-IiwibmFtZSI6Ilpvw6sgw7E_PiJ9."                    \
    "y0MewAd900MXfCLS-dfzne-qBUrPqnMjnQnpE19M6Zw"

/* Token text for the current test, NUL-terminated. */
static char tok[2 * PR_JWT_MAX];

/* base64url of s appended to tok at *n. */
static void put_b64url(size_t *n, const void *s, size_t len)
{
    pr_buf b;
    pr_buf_init(&b, sizeof tok - *n - 1);
    if (pr_base64url_encode(&b, pr_view_make(s, len)) != PR_OK)
        abort();
    if (b.len > 0)
        memcpy(tok + *n, b.ptr, b.len);
    *n += b.len;
    tok[*n] = '\0';
    pr_buf_dispose(&b);
}

/* A correctly signed token with any header and payload text, so that each
 * check after the signature can be reached. */
static pr_view make(const char *header, const char *payload, const char *secret)
{
    size_t n = 0;
    unsigned char md[32];
    unsigned int md_len;
    put_b64url(&n, header, strlen(header));
    tok[n++] = '.';
    put_b64url(&n, payload, strlen(payload));
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)tok, n, md, &md_len);
    tok[n++] = '.';
    put_b64url(&n, md, md_len);
    return pr_view_make(tok, n);
}

#define HS "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define PAYLOAD(fields) "{\"sub\":\"bob\",\"exp\":1700003600" fields "}"

static int verify(pr_view token)
{
    pr_jwt_claims c;
    memset(&c, 0x55, sizeof c);
    int rc = pr_jwt_verify_hs256(token, SECRET, NOW, &c);
    if (rc != PR_OK && (c.sub[0] != '\0' || c.name[0] != '\0' || c.exp != 0))
        return 99; /* a failure leaves the claims cleared */
    return rc;
}

static int verify_hp(const char *header, const char *payload)
{
    return verify(make(header, payload, "test-secret"));
}

/* pr_base64url_*, added to proto/pr_base64.c for JWTs (RFC 4648 section 10 vectors). */
static void b64url_ok(const char *in, const char *want)
{
    pr_buf e, d;
    size_t n = strlen(in);
    pr_buf_init(&e, 64);
    pr_buf_init(&d, 64);
    CHECK_EQ(pr_base64url_encoded_len(n), strlen(want));
    CHECK_EQ(pr_base64url_encode(&e, pr_view_make(in, n)), PR_OK);
    CHECK(pr_view_eq_cstr(pr_buf_view(&e), want));
    CHECK_EQ(pr_base64url_decode(&d, pr_buf_view(&e)), PR_OK);
    CHECK(pr_view_eq(pr_buf_view(&d), pr_view_make(in, n)));
    pr_buf_dispose(&e);
    pr_buf_dispose(&d);
}

static int b64url_decode_rc(const char *s)
{
    pr_buf d;
    pr_buf_init(&d, 64);
    pr_buf_append(&d, "x", 1);
    int rc = pr_base64url_decode(&d, pr_view_make(s, strlen(s)));
    if (rc != PR_OK && d.len != 1)
        rc = 99; /* a failure leaves the buffer unchanged */
    pr_buf_dispose(&d);
    return rc;
}

static void test_base64url(void)
{
    b64url_ok("", "");
    b64url_ok("f", "Zg");
    b64url_ok("fo", "Zm8");
    b64url_ok("foo", "Zm9v");
    b64url_ok("foob", "Zm9vYg");
    b64url_ok("fooba", "Zm9vYmE");
    b64url_ok("foobar", "Zm9vYmFy");
    b64url_ok("\xfb\xff\xbf", "-_-_");
    b64url_ok("?>?", "Pz4_");

    CHECK_EQ(b64url_decode_rc("Zg=="), PR_EINVAL);
    CHECK_EQ(b64url_decode_rc("Zg="), PR_EINVAL);
    CHECK_EQ(b64url_decode_rc("Zm9v="), PR_EINVAL);
    CHECK_EQ(b64url_decode_rc("+/+/"), PR_EINVAL);
    CHECK_EQ(b64url_decode_rc("Z"), PR_EINVAL);
    CHECK_EQ(b64url_decode_rc("Zm9vY"), PR_EINVAL);
    CHECK_EQ(b64url_decode_rc("Zh"), PR_EINVAL);  /* non-canonical: low bits set */
    CHECK_EQ(b64url_decode_rc("Zm9"), PR_EINVAL); /* likewise */
    CHECK_EQ(b64url_decode_rc("Zm 9"), PR_EINVAL);
    CHECK_EQ(b64url_decode_rc("Zm9v\n"), PR_EINVAL);

    pr_buf d;
    pr_buf_init(&d, 2);
    CHECK_EQ(pr_base64url_decode(&d, PR_VIEW_LIT("Zm8")), PR_OK);
    CHECK_EQ(pr_base64url_decode(&d, PR_VIEW_LIT("Zg")), PR_ETOOBIG);
    CHECK_EQ(pr_base64url_encode(&d, PR_VIEW_LIT("f")), PR_ETOOBIG);
    CHECK_EQ(d.len, 2);
    pr_buf_dispose(&d);
    CHECK_EQ(pr_base64url_encoded_len(SIZE_MAX), SIZE_MAX); /* saturates */
}

static void test_vectors(void)
{
    pr_jwt_claims c;
    CHECK_EQ(pr_jwt_verify_hs256(V(VEC1), SECRET, NOW, &c), PR_OK);
    CHECK(strcmp(c.sub, "alice") == 0);
    CHECK(strcmp(c.name, "Alice") == 0);
    CHECK_EQ(c.exp, 1700003600);

    /* Signing the same claims gives the same bytes. */
    pr_buf b;
    pr_buf_init(&b, 4096);
    CHECK_EQ(pr_jwt_sign_hs256(&b, SECRET, "alice", "Alice", NOW, 1700003600), PR_OK);
    CHECK_MEM(b.ptr, b.len, VEC1);
    pr_buf_dispose(&b);

    /* A real exp is rounded up: valid while now < 1700003600.5. */
    CHECK_EQ(pr_jwt_verify_hs256(V(VEC2), SECRET, 1700003600, &c), PR_OK);
    CHECK(strcmp(c.sub, "u~42?>") == 0);
    CHECK(strcmp(c.name, "Zo\xc3\xab \xc3\xb1?>") == 0);
    CHECK_EQ(c.exp, 1700003601);
    CHECK_EQ(pr_jwt_verify_hs256(V(VEC2), SECRET, 1700003601, &c), PR_ESTATE);

    /* The helper agrees with the independent signer. */
    CHECK(pr_view_eq(make(HS,
                          "{\"sub\":\"alice\",\"name\":\"Alice\",\"iat\":1700000000,"
                          "\"exp\":1700003600}",
                          "test-secret"),
                     V(VEC1)));
}

static void test_sign_round_trip(void)
{
    pr_buf b;
    pr_jwt_claims c;
    pr_buf_init(&b, 4096);

    CHECK_EQ(pr_jwt_sign_hs256(&b, SECRET, "user-1", NULL, NOW, NOW + 60), PR_OK);
    CHECK_EQ(pr_jwt_verify_hs256(pr_buf_view(&b), SECRET, NOW, &c), PR_OK);
    CHECK(strcmp(c.sub, "user-1") == 0);
    CHECK(strcmp(c.name, "") == 0);
    CHECK_EQ(c.exp, NOW + 60);
    CHECK_EQ(pr_jwt_verify_hs256(pr_buf_view(&b), SECRET, NOW + 59, &c), PR_OK);
    CHECK_EQ(pr_jwt_verify_hs256(pr_buf_view(&b), SECRET, NOW + 60, &c), PR_ESTATE);
    CHECK_EQ(pr_jwt_verify_hs256(pr_buf_view(&b), SECRET, NOW + 61, &c), PR_ESTATE);
    CHECK_EQ(pr_jwt_verify_hs256(pr_buf_view(&b), V("other-secret"), NOW, &c), PR_EINVAL);
    CHECK_EQ(pr_jwt_verify_hs256(pr_buf_view(&b), V(""), NOW, &c), PR_EINVAL);

    /* Longest id and name, with characters JSON must escape. */
    char sub[PR_JWT_ID_MAX + 1], name[PR_JWT_NAME_MAX + 1];
    memset(sub, '"', PR_JWT_ID_MAX);
    sub[PR_JWT_ID_MAX] = '\0';
    memset(name, '\\', PR_JWT_NAME_MAX);
    name[PR_JWT_NAME_MAX] = '\0';
    pr_buf_reset(&b);
    CHECK_EQ(pr_jwt_sign_hs256(&b, SECRET, sub, name, NOW, INT64_MAX), PR_OK);
    CHECK_EQ(pr_jwt_verify_hs256(pr_buf_view(&b), SECRET, NOW, &c), PR_OK);
    CHECK(strcmp(c.sub, sub) == 0);
    CHECK(strcmp(c.name, name) == 0);
    CHECK_EQ(c.exp, INT64_MAX);

    /* Appends: what was in the buffer stays. */
    pr_buf_reset(&b);
    pr_buf_append(&b, "x", 1);
    CHECK_EQ(pr_jwt_sign_hs256(&b, SECRET, "a", "", NOW, NOW + 1), PR_OK);
    CHECK(b.ptr[0] == 'x');
    CHECK_EQ(pr_jwt_verify_hs256(pr_view_make(b.ptr + 1, b.len - 1), SECRET, NOW, &c), PR_OK);
    pr_buf_dispose(&b);
}

static void test_sign_refuses(void)
{
    pr_buf b;
    pr_buf_init(&b, 4096);
    pr_buf_append(&b, "keep", 4);
    CHECK_EQ(pr_jwt_sign_hs256(&b, SECRET, NULL, NULL, NOW, NOW + 1), PR_EINVAL);
    CHECK_EQ(pr_jwt_sign_hs256(&b, SECRET, "", NULL, NOW, NOW + 1), PR_EINVAL);
    CHECK_EQ(pr_jwt_sign_hs256(&b, SECRET, "a b", NULL, NOW, NOW + 1), PR_EINVAL);
    CHECK_EQ(pr_jwt_sign_hs256(&b, SECRET, "a", "line\nbreak", NOW, NOW + 1), PR_EINVAL);
    CHECK_EQ(pr_jwt_sign_hs256(&b, SECRET, "a", "\xff", NOW, NOW + 1), PR_EINVAL);
    CHECK_EQ(pr_jwt_sign_hs256(&b, V(""), "a", NULL, NOW, NOW + 1), PR_EINVAL);
    CHECK_MEM(b.ptr, b.len, "keep");
    pr_buf_dispose(&b);

    /* A ceiling too small leaves the buffer as it was. */
    pr_buf_init(&b, 20);
    pr_buf_append(&b, "keep", 4);
    CHECK_EQ(pr_jwt_sign_hs256(&b, SECRET, "a", NULL, NOW, NOW + 1), PR_ETOOBIG);
    CHECK_MEM(b.ptr, b.len, "keep");
    pr_buf_dispose(&b);
}

static void test_tampering(void)
{
    char t[sizeof VEC1];
    memcpy(t, VEC1, sizeof t);
    pr_view tv = pr_view_make(t, sizeof t - 1);
    CHECK_EQ(verify(tv), PR_OK);

    /* payload: "alice" -> "alicf" shifts one base64 character */
    size_t pay = sizeof "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." - 1;
    t[pay + 10] ^= 1;
    CHECK_EQ(verify(tv), PR_EINVAL);
    t[pay + 10] ^= 1;
    /* header */
    t[5] ^= 1;
    CHECK_EQ(verify(tv), PR_EINVAL);
    t[5] ^= 1;
    /* signature, in the middle and in the last character (whose two low
     * bits must be zero: 'o' -> 'p' is a non-canonical encoding) */
    t[sizeof t - 10] ^= 1;
    CHECK_EQ(verify(tv), PR_EINVAL);
    t[sizeof t - 10] ^= 1;
    t[sizeof t - 2] = 'p';
    CHECK_EQ(verify(tv), PR_EINVAL);
    t[sizeof t - 2] = 'o';
    CHECK_EQ(verify(tv), PR_OK);

    /* A signature cut short or made longer. */
    CHECK_EQ(verify(pr_view_make(t, sizeof t - 2)), PR_EINVAL);
    CHECK_EQ(verify(V(VEC1 "A")), PR_EINVAL);
    CHECK_EQ(verify(V(VEC1 "AAAA")), PR_EINVAL);
    CHECK_EQ(verify(V(VEC1_HP ".")), PR_EINVAL);

    /* The signature of one token on another's header and payload. */
    CHECK_EQ(verify(V(VEC1_HP ".y0MewAd900MXfCLS-dfzne-qBUrPqnMjnQnpE19M6Zw")), PR_EINVAL);

    /* Signed with another key. */
    CHECK_EQ(verify(make(HS, PAYLOAD(""), "wrong-secret")), PR_EINVAL);
    CHECK_EQ(verify(make(HS, PAYLOAD(""), "test-secret")), PR_OK);
}

static void test_header(void)
{
    const char *p = PAYLOAD("");
    CHECK_EQ(verify_hp("{\"alg\":\"HS256\"}", p), PR_OK);
    CHECK_EQ(verify_hp("{\"alg\":\"HS256\",\"kid\":\"k1\"}", p), PR_OK);
    CHECK_EQ(verify_hp(" {\"alg\" : \"HS256\"} ", p), PR_OK);

    CHECK_EQ(verify_hp("{\"alg\":\"none\"}", p), PR_EINVAL);
    CHECK_EQ(verify_hp("{\"alg\":\"HS512\"}", p), PR_EINVAL);
    CHECK_EQ(verify_hp("{\"alg\":\"RS256\"}", p), PR_EINVAL);
    CHECK_EQ(verify_hp("{\"alg\":\"hs256\"}", p), PR_EINVAL);
    CHECK_EQ(verify_hp("{\"alg\":\"HS256 \"}", p), PR_EINVAL);
    CHECK_EQ(verify_hp("{\"alg\":256}", p), PR_EINVAL);
    CHECK_EQ(verify_hp("{\"alg\":[\"HS256\"]}", p), PR_EINVAL);
    CHECK_EQ(verify_hp("{\"typ\":\"JWT\"}", p), PR_EINVAL);
    CHECK_EQ(verify_hp("{\"alg\":\"HS256\",\"typ\":\"JWS\"}", p), PR_EINVAL);
    CHECK_EQ(verify_hp("{\"alg\":\"HS256\",\"typ\":null}", p), PR_EINVAL);
    CHECK_EQ(verify_hp("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", p), PR_EINVAL);
    CHECK_EQ(verify_hp("{\"alg\":\"HS256\",\"crit\":[]}", p), PR_EINVAL);
    CHECK_EQ(verify_hp("[\"HS256\"]", p), PR_EINVAL);
    CHECK_EQ(verify_hp("\"HS256\"", p), PR_EINVAL);
    CHECK_EQ(verify_hp("{\"alg\":\"HS256\"", p), PR_EINVAL);
    CHECK_EQ(verify_hp("{\"alg\":\"HS256\"}x", p), PR_EINVAL);
    CHECK_EQ(verify_hp("", p), PR_EINVAL);

    /* alg none, with no signature and with one. */
    size_t n = 0;
    put_b64url(&n, "{\"alg\":\"none\"}", 14);
    tok[n++] = '.';
    put_b64url(&n, p, strlen(p));
    tok[n++] = '.';
    CHECK_EQ(verify(pr_view_make(tok, n)), PR_EINVAL);
    CHECK_EQ(verify(pr_view_make(tok, n - 1)), PR_EINVAL);
    pr_view none = make("{\"alg\":\"none\"}", p, "test-secret");
    CHECK_EQ(verify(none), PR_EINVAL);
}

static void test_claims(void)
{
    char big[512];

    CHECK_EQ(verify_hp(HS, PAYLOAD(",\"name\":\"Bob\",\"iat\":1,\"x\":[{}]")), PR_OK);
    CHECK_EQ(verify_hp(HS, PAYLOAD(",\"name\":\"\"")), PR_OK);

    /* exp */
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"bob\"}"), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"bob\",\"exp\":\"1700003600\"}"), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"bob\",\"exp\":null}"), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"bob\",\"exp\":true}"), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"bob\",\"exp\":[1700003600]}"), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"bob\",\"exp\":1e300}"), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"bob\",\"exp\":1.7e9}"), PR_ESTATE);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"bob\",\"exp\":1700000000}"), PR_ESTATE);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"bob\",\"exp\":1700000000.25}"), PR_OK);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"bob\",\"exp\":1700000001}"), PR_OK);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"bob\",\"exp\":-5}"), PR_ESTATE);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"bob\",\"exp\":9223372036854775807}"), PR_OK);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"bob\",\"exp\":9.2e18}"), PR_OK);
    /* nbf (optional): refused while still in the future, same rules as exp */
    CHECK_EQ(verify_hp(HS, PAYLOAD(",\"nbf\":1700000001")), PR_ESTATE);
    CHECK_EQ(verify_hp(HS, PAYLOAD(",\"nbf\":1700000000.25")), PR_ESTATE);
    CHECK_EQ(verify_hp(HS, PAYLOAD(",\"nbf\":1700000000")), PR_OK);
    CHECK_EQ(verify_hp(HS, PAYLOAD(",\"nbf\":1699999999.5")), PR_OK);
    CHECK_EQ(verify_hp(HS, PAYLOAD(",\"nbf\":-5")), PR_OK);
    CHECK_EQ(verify_hp(HS, PAYLOAD(",\"nbf\":9223372036854775807")), PR_ESTATE);
    CHECK_EQ(verify_hp(HS, PAYLOAD(",\"nbf\":\"1\"")), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, PAYLOAD(",\"nbf\":null")), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, PAYLOAD(",\"nbf\":1e300")), PR_EINVAL);
    {
        pr_jwt_claims c;
        CHECK_EQ(pr_jwt_verify_hs256(make(HS, PAYLOAD(",\"nbf\":1699990000"), "test-secret"),
                                     SECRET, NOW, &c),
                 PR_OK);
        CHECK_EQ(c.nbf, 1699990000);
        CHECK_EQ(pr_jwt_verify_hs256(make(HS, PAYLOAD(""), "test-secret"), SECRET, NOW, &c), PR_OK);
        CHECK(c.nbf == INT64_MIN);
    }
    /* Expiry is judged after everything else is valid. */
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"\",\"exp\":1}"), PR_EINVAL);

    /* sub */
    CHECK_EQ(verify_hp(HS, "{\"exp\":1700003600}"), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"\",\"exp\":1700003600}"), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, "{\"sub\":42,\"exp\":1700003600}"), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, "{\"sub\":null,\"exp\":1700003600}"), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"bo b\",\"exp\":1700003600}"), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"bob\\n\",\"exp\":1700003600}"), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"b\\u0000b\",\"exp\":1700003600}"), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"b\xc3\xb6\",\"exp\":1700003600}"), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"\x7f\",\"exp\":1700003600}"), PR_EINVAL);
    snprintf(big, sizeof big, "{\"sub\":\"%0128d\",\"exp\":1700003600}", 0);
    CHECK_EQ(verify_hp(HS, big), PR_OK);
    snprintf(big, sizeof big, "{\"sub\":\"%0129d\",\"exp\":1700003600}", 0);
    CHECK_EQ(verify_hp(HS, big), PR_EINVAL);

    /* name */
    CHECK_EQ(verify_hp(HS, PAYLOAD(",\"name\":7")), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, PAYLOAD(",\"name\":null")), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, PAYLOAD(",\"name\":\"a\\tb\"")), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, PAYLOAD(",\"name\":\"\\u0085\"")), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, PAYLOAD(",\"name\":\"\\u007f\"")), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, PAYLOAD(",\"name\":\"\\u00a0\"")), PR_OK);
    snprintf(big, sizeof big, "{\"sub\":\"a\",\"exp\":1700003600,\"name\":\"%0128d\"}", 0);
    CHECK_EQ(verify_hp(HS, big), PR_OK);
    snprintf(big, sizeof big, "{\"sub\":\"a\",\"exp\":1700003600,\"name\":\"%0129d\"}", 0);
    CHECK_EQ(verify_hp(HS, big), PR_EINVAL);

    /* payload shape */
    CHECK_EQ(verify_hp(HS, "[]"), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, "1700003600"), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, "{\"sub\":\"bob\",\"exp\":1700003600"), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, ""), PR_EINVAL);
    CHECK_EQ(verify_hp(HS, "\xff"), PR_EINVAL);
}

static void test_malformed(void)
{
    CHECK_EQ(verify(V("")), PR_EINVAL);
    CHECK_EQ(verify(pr_view_make(NULL, 0)), PR_EINVAL);
    CHECK_EQ(verify(V("garbage")), PR_EINVAL);
    CHECK_EQ(verify(V(".")), PR_EINVAL);
    CHECK_EQ(verify(V("..")), PR_EINVAL);
    CHECK_EQ(verify(V("...")), PR_EINVAL);
    CHECK_EQ(verify(V("a.b.c.d")), PR_EINVAL);
    CHECK_EQ(verify(V(VEC1 ".")), PR_EINVAL);
    CHECK_EQ(verify(V("." VEC1)), PR_EINVAL);
    CHECK_EQ(verify(V(VEC1 " ")), PR_EINVAL);
    CHECK_EQ(verify(V(" " VEC1)), PR_EINVAL);
    CHECK_EQ(verify(V("Bearer " VEC1)), PR_EINVAL);
    /* Padding, and the plain base64 alphabet, are refused. */
    CHECK_EQ(verify(V(VEC1 "=")), PR_EINVAL);
    CHECK_EQ(verify(V(VEC1_HP ".TQylF409C2CiyBNBMu2d7-fZvo-T8KdchvOq1FwPqUo=")), PR_EINVAL);
    CHECK_EQ(verify(V(VEC1_HP ".TQylF409C2CiyBNBMu2d7+fZvo+T8KdchvOq1FwPqUo")), PR_EINVAL);
    CHECK_EQ(verify(V("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9=."
                      "eyJzdWIiOiJhbGljZSIsIm5hbWUiOiJBbGljZSIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjox"
                      "NzAwMDAzNjAwfQ.TQylF409C2CiyBNBMu2d7-fZvo-T8KdchvOq1FwPqUo")),
             PR_EINVAL);
    /* A NUL inside the view. */
    CHECK_EQ(verify(pr_view_make(VEC1 "\0", sizeof VEC1)), PR_EINVAL);
    /* The view ends before the NUL terminator of the bytes behind it. */
    CHECK_EQ(verify(pr_view_make(VEC1, sizeof VEC1 - 2)), PR_EINVAL);

    /* Length limit first, whatever the content. */
    static char huge[PR_JWT_MAX + 2];
    memset(huge, 'A', sizeof huge);
    CHECK_EQ(verify(pr_view_make(huge, PR_JWT_MAX + 1)), PR_ETOOBIG);
    CHECK_EQ(verify(pr_view_make(huge, PR_JWT_MAX)), PR_EINVAL);
    /* A genuine token made longer than the limit by its payload. */
    char payload[PR_JWT_MAX];
    snprintf(payload, sizeof payload, "{\"sub\":\"a\",\"exp\":1700003600,\"pad\":\"%03100d\"}", 0);
    pr_view t = make(HS, payload, "test-secret");
    CHECK(t.len > PR_JWT_MAX);
    CHECK_EQ(verify(t), PR_ETOOBIG);
    payload[strlen(payload) - 1100] = '\0';
    strcat(payload, "\"}");
    t = make(HS, payload, "test-secret");
    CHECK(t.len <= PR_JWT_MAX);
    CHECK_EQ(verify(t), PR_OK);
}

int main(void)
{
    test_base64url();
    test_vectors();
    test_sign_round_trip();
    test_sign_refuses();
    test_tampering();
    test_header();
    test_claims();
    test_malformed();
    T_DONE();
}
