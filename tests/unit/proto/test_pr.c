/* Unit tests for proto/pr.h: errors, views, pr_buf, allocator, base64, UTF-8. */
#include "pr.h"
#include "t.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

static void test_errors_and_views(void)
{
    CHECK(strcmp(pr_strerror(PR_OK), "ok") == 0);
    CHECK(strcmp(pr_strerror(PR_ETOOBIG), "limit exceeded") == 0);
    CHECK(pr_strerror(12345) != NULL);
    CHECK(pr_strerror(PR_ESTATE) != pr_strerror(PR_EIO));

    pr_view a = PR_VIEW_LIT("hello");
    CHECK_EQ(a.len, 5);
    CHECK(pr_view_eq(a, pr_view_make("hello!", 5)));
    CHECK(!pr_view_eq(a, pr_view_make("hello!", 6)));
    CHECK(!pr_view_eq(a, PR_VIEW_LIT("hellO")));
    CHECK(pr_view_eq(pr_view_make(NULL, 0), PR_VIEW_LIT("")));
    CHECK(pr_view_eq_cstr(a, "hello"));
    CHECK(!pr_view_eq_cstr(a, "hell"));
    CHECK(pr_view_eq_cstr(pr_view_make(NULL, 0), ""));
}

static void test_buf_basic(void)
{
    pr_buf b;
    pr_buf_init(&b, 1000);
    CHECK(b.ptr == NULL); /* nothing allocated before the first append */
    CHECK_EQ(pr_buf_append(&b, "abc", 3), PR_OK);
    CHECK_EQ(pr_buf_append_byte(&b, '-'), PR_OK);
    CHECK_EQ(pr_buf_append_view(&b, PR_VIEW_LIT("xyz")), PR_OK);
    CHECK_EQ(pr_buf_appendf(&b, "%d/%s", 42, "q"), PR_OK);
    CHECK_MEM(b.ptr, b.len, "abc-xyz42/q");
    CHECK(pr_view_eq_cstr(pr_buf_view(&b), "abc-xyz42/q"));
    CHECK_EQ(pr_buf_append(&b, NULL, 0), PR_OK);

    pr_buf_consume(&b, 4);
    CHECK_MEM(b.ptr, b.len, "xyz42/q");
    pr_buf_consume(&b, 100); /* past the end: clamps */
    CHECK_EQ(b.len, 0);

    pr_buf_append(&b, "data", 4);
    size_t len = 0;
    char *p = pr_buf_steal(&b, &len);
    CHECK_EQ(len, 4);
    CHECK(memcmp(p, "data", 4) == 0);
    CHECK(b.ptr == NULL && b.len == 0 && b.cap == 0);
    pr_free(p);
    p = pr_buf_steal(&b, &len); /* empty: still a valid pointer */
    CHECK(p != NULL);
    CHECK_EQ(len, 0);
    pr_free(p);

    pr_buf_append(&b, "x", 1);
    pr_buf_reset(&b);
    CHECK_EQ(b.len, 0);
    pr_buf_dispose(&b);
    CHECK(b.ptr == NULL);
    pr_buf_dispose(&b); /* twice is harmless */
}

static void test_buf_ceiling(void)
{
    pr_buf b;
    pr_buf_init(&b, 8);
    CHECK_EQ(pr_buf_append(&b, "12345", 5), PR_OK);
    CHECK_EQ(pr_buf_append(&b, "6789", 4), PR_ETOOBIG);
    CHECK_MEM(b.ptr, b.len, "12345"); /* unchanged */
    CHECK_EQ(pr_buf_append(&b, "678", 3), PR_OK); /* exactly max */
    CHECK_EQ(b.len, 8);
    CHECK_EQ(pr_buf_append_byte(&b, 'x'), PR_ETOOBIG);
    CHECK_EQ(pr_buf_append(&b, "", 0), PR_OK);
    CHECK_EQ(pr_buf_reserve(&b, 1), PR_ETOOBIG);
    CHECK_EQ(pr_buf_reserve(&b, SIZE_MAX), PR_ETOOBIG);
    CHECK_EQ(pr_buf_reserve(&b, 0), PR_OK);
    CHECK(b.cap <= 9); /* never doubles far past the ceiling */
    pr_buf_reset(&b);

    /* appendf fits exactly at max (its NUL is not content) and fails above. */
    CHECK_EQ(pr_buf_appendf(&b, "%s", "abcdefgh"), PR_OK);
    CHECK_MEM(b.ptr, b.len, "abcdefgh");
    pr_buf_reset(&b);
    CHECK_EQ(pr_buf_appendf(&b, "%s", "abcdefghi"), PR_ETOOBIG);
    CHECK_EQ(b.len, 0);
    pr_buf_consume(&b, 0);
    pr_buf_dispose(&b);

    pr_buf_init(&b, 0);
    CHECK_EQ(pr_buf_append_byte(&b, 'x'), PR_ETOOBIG);
    CHECK_EQ(pr_buf_append(&b, "", 0), PR_OK);
    pr_buf_dispose(&b);

    /* Growth across many appends keeps the content. */
    pr_buf_init(&b, 100000);
    for (int i = 0; i < 10000; i++)
        pr_buf_append_byte(&b, (char)('a' + i % 26));
    CHECK_EQ(b.len, 10000);
    CHECK(b.ptr[9999] == (char)('a' + 9999 % 26));
    CHECK(b.cap <= 100000);
    pr_buf_dispose(&b);
}

static void test_alloc(void)
{
    char *s = pr_strndup("hello world", 5);
    CHECK(strcmp(s, "hello") == 0);
    pr_free(s);
    s = pr_strndup("hi", 10); /* stops at the NUL */
    CHECK(strcmp(s, "hi") == 0);
    pr_free(s);
    void *p = pr_malloc(0);
    CHECK(p != NULL);
    p = pr_realloc(p, 0);
    CHECK(p != NULL);
    pr_free(p);
    int *z = pr_calloc(4, sizeof(int));
    CHECK(z[0] == 0 && z[3] == 0);
    pr_free(z);
    pr_free(NULL);

    pr_alloc_install_jansson();
    json_malloc_t m;
    json_free_t f;
    json_get_alloc_funcs(&m, &f);
    CHECK(m == pr_malloc);
    CHECK(f == pr_free);
}

/* Encodes in, checks the text, decodes it back and checks the bytes. */
static void b64_roundtrip(const char *in, size_t n, const char *want)
{
    pr_buf e, d;
    pr_buf_init(&e, 1024);
    pr_buf_init(&d, 1024);
    CHECK_EQ(pr_base64_encoded_len(n), strlen(want));
    CHECK_EQ(pr_base64_encode(&e, pr_view_make(in, n)), PR_OK);
    CHECK(pr_view_eq_cstr(pr_buf_view(&e), want));
    CHECK_EQ(pr_base64_decode(&d, pr_buf_view(&e)), PR_OK);
    CHECK(pr_view_eq(pr_buf_view(&d), pr_view_make(in, n)));
    pr_buf_dispose(&e);
    pr_buf_dispose(&d);
}

static int b64_decode_rc(const char *s)
{
    pr_buf d;
    pr_buf_init(&d, 1024);
    pr_buf_append(&d, "keep", 4);
    int rc = pr_base64_decode(&d, pr_view_make(s, strlen(s)));
    if (rc != PR_OK && !pr_view_eq_cstr(pr_buf_view(&d), "keep"))
        rc = 99; /* a failed decode must leave the buffer as it was */
    pr_buf_dispose(&d);
    return rc;
}

static void test_base64(void)
{
    /* RFC 4648 section 10 vectors, plus the Engine.IO example. */
    b64_roundtrip("", 0, "");
    b64_roundtrip("f", 1, "Zg==");
    b64_roundtrip("fo", 2, "Zm8=");
    b64_roundtrip("foo", 3, "Zm9v");
    b64_roundtrip("foob", 4, "Zm9vYg==");
    b64_roundtrip("fooba", 5, "Zm9vYmE=");
    b64_roundtrip("foobar", 6, "Zm9vYmFy");
    b64_roundtrip("\x01\x02\x03\x04", 4, "AQIDBA==");
    b64_roundtrip("\xff\xfe\x00\xfb", 4, "//4A+w==");

    CHECK_EQ(b64_decode_rc("Zg=="), PR_OK);
    CHECK_EQ(b64_decode_rc("Zg="), PR_EINVAL);   /* bad length */
    CHECK_EQ(b64_decode_rc("Zg"), PR_EINVAL);    /* padding is required */
    CHECK_EQ(b64_decode_rc("Zh=="), PR_EINVAL);  /* non-zero pad bits */
    CHECK_EQ(b64_decode_rc("Zm9="), PR_EINVAL);  /* non-zero pad bits */
    CHECK_EQ(b64_decode_rc("Z==="), PR_EINVAL);  /* too much padding */
    CHECK_EQ(b64_decode_rc("===="), PR_EINVAL);
    CHECK_EQ(b64_decode_rc("Zg=a"), PR_EINVAL);  /* '=' not at the end */
    CHECK_EQ(b64_decode_rc("Zg==Zg=="), PR_EINVAL); /* padding in the middle */
    CHECK_EQ(b64_decode_rc("Zm9v\n"), PR_EINVAL);
    CHECK_EQ(b64_decode_rc("Zm 9"), PR_EINVAL);
    CHECK_EQ(b64_decode_rc("Zm-_"), PR_EINVAL);  /* base64url alphabet */
    CHECK_EQ(b64_decode_rc("Zm9\x80"), PR_EINVAL);

    /* The ceiling applies to the decoded size. */
    pr_buf d;
    pr_buf_init(&d, 3);
    CHECK_EQ(pr_base64_decode(&d, PR_VIEW_LIT("Zm9v")), PR_OK);
    CHECK_EQ(pr_base64_decode(&d, PR_VIEW_LIT("Zg==")), PR_ETOOBIG);
    CHECK_EQ(d.len, 3);
    CHECK_EQ(pr_base64_encode(&d, PR_VIEW_LIT("f")), PR_ETOOBIG);
    pr_buf_dispose(&d);

    CHECK_EQ(pr_base64_encoded_len(SIZE_MAX), SIZE_MAX); /* saturates */
}

#define UTF8(lit) pr_utf8_valid(lit, sizeof(lit) - 1)

static void test_utf8(void)
{
    CHECK(pr_utf8_valid(NULL, 0));
    CHECK(UTF8("plain ascii"));
    CHECK(UTF8("\x00")); /* NUL is a valid code point */
    CHECK(UTF8("\xc2\x80"));         /* U+0080 */
    CHECK(UTF8("\xdf\xbf"));         /* U+07FF */
    CHECK(UTF8("\xe0\xa0\x80"));     /* U+0800 */
    CHECK(UTF8("\xe2\x82\xac"));     /* euro sign */
    CHECK(UTF8("\xed\x9f\xbf"));     /* U+D7FF */
    CHECK(UTF8("\xee\x80\x80"));     /* U+E000 */
    CHECK(UTF8("\xef\xbf\xbf"));     /* U+FFFF */
    CHECK(UTF8("\xf0\x90\x80\x80")); /* U+10000 */
    CHECK(UTF8("\xf0\x9f\x98\x80")); /* emoji */
    CHECK(UTF8("\xf4\x8f\xbf\xbf")); /* U+10FFFF */

    /* overlong forms */
    CHECK(!UTF8("\xc0\x80"));
    CHECK(!UTF8("\xc1\xbf"));
    CHECK(!UTF8("\xe0\x80\x80"));
    CHECK(!UTF8("\xe0\x9f\xbf"));
    CHECK(!UTF8("\xf0\x80\x80\x80"));
    CHECK(!UTF8("\xf0\x8f\xbf\xbf"));
    /* surrogates */
    CHECK(!UTF8("\xed\xa0\x80"));
    CHECK(!UTF8("\xed\xbf\xbf"));
    CHECK(!UTF8("\xed\xa0\xbd\xed\xb8\x80")); /* CESU-8 pair */
    /* above U+10FFFF and invalid lead bytes */
    CHECK(!UTF8("\xf4\x90\x80\x80"));
    CHECK(!UTF8("\xf5\x80\x80\x80"));
    CHECK(!UTF8("\xf8\x88\x80\x80\x80"));
    CHECK(!UTF8("\xff"));
    CHECK(!UTF8("\xfe"));
    /* stray continuation bytes */
    CHECK(!UTF8("\x80"));
    CHECK(!UTF8("a\xbf"));
    /* truncated sequences, at the end and followed by more text */
    CHECK(!UTF8("\xc2"));
    CHECK(!UTF8("\xe2\x82"));
    CHECK(!UTF8("\xf0\x9f\x98"));
    CHECK(!UTF8("\xe2\x82z"));
    CHECK(!UTF8("\xf0\x9f\x98z"));
    CHECK(!UTF8("\xc2\xc2\x80"));
    /* a valid sequence cut by the length argument */
    CHECK(!pr_utf8_valid("\xe2\x82\xac", 2));
}

int main(void)
{
    test_errors_and_views();
    test_buf_basic();
    test_buf_ceiling();
    test_alloc();
    test_base64();
    test_utf8();
    T_DONE();
}
