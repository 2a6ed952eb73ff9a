/* Unit tests for proto/sio.h, driven by the Socket.IO v5 specification examples. */
#include "sio.h"
#include "t_json.h"
#include "t.h"

#include <stdlib.h>

#define V(lit) PR_VIEW_LIT(lit)
#define PH(n) "{\"_placeholder\":true,\"num\":" #n "}"


/*
 * Decodes text and checks every field; json is the expected data (NULL: none).
 * Then re-encodes and checks the result against canon (the canonical form;
 * NULL means text itself).
 */
#define DECODE_OK(text, type_, nsp_, id_, att_, json, canon) \
    decode_ok(__LINE__, V(text), type_, nsp_, id_, att_, json, canon)

static void decode_ok(int line, pr_view text, sio_type type, const char *nsp, int64_t id,
                      unsigned attachments, const char *json, const char *canon)
{
    sio_packet p;
    int rc = sio_decode(text, &p);
    CHECK_EQ(rc, PR_OK);
    if (rc != PR_OK) {
        fprintf(stderr, "  line %d: decode of \"%.*s\" failed\n", line, (int)text.len, text.ptr);
        return;
    }
    int before = t_failures;
    CHECK_EQ(p.type, type);
    CHECK(strcmp(p.nsp, nsp) == 0);
    CHECK_EQ(p.id, id);
    CHECK_EQ(p.attachments, attachments);
    CHECK_EQ(p.nattached, 0);
    if (json == NULL) {
        CHECK(p.data == NULL);
    } else {
        json_t *want = js(json);
        CHECK(json_equal(p.data, want));
        json_decref(want);
    }

    pr_buf b;
    pr_buf_init(&b, 4096);
    CHECK_EQ(sio_encode(&b, p.type, p.nsp, p.id, p.attachments, p.data), PR_OK);
    pr_view want = canon ? pr_view_make(canon, strlen(canon)) : text;
    CHECK(pr_view_eq(pr_buf_view(&b), want));
    if (t_failures != before)
        fprintf(stderr, "  line %d: \"%.*s\" -> \"%.*s\"\n", line, (int)text.len, text.ptr,
                (int)b.len, b.len ? b.ptr : "");
    pr_buf_dispose(&b);
    sio_packet_dispose(&p);
}

static int decode_rc(pr_view text)
{
    sio_packet p;
    int rc = sio_decode(text, &p);
    if (rc != PR_OK && p.data != NULL)
        rc = 99; /* an error must leave nothing to free */
    sio_packet_dispose(&p);
    return rc;
}

#define DECODE_FAILS(text, rc) CHECK_EQ(decode_rc(V(text)), rc)

static void test_decode_spec_examples(void)
{
    /* connection */
    DECODE_OK("0", SIO_CONNECT, "/", -1, 0, NULL, NULL);
    DECODE_OK("0/admin,", SIO_CONNECT, "/admin", -1, 0, NULL, NULL);
    DECODE_OK("0/admin,{\"token\":\"123\"}", SIO_CONNECT, "/admin", -1, 0, "{\"token\":\"123\"}", NULL);
    DECODE_OK("0{\"token\":\"123\"}", SIO_CONNECT, "/", -1, 0, "{\"token\":\"123\"}", NULL);
    /* sending data */
    DECODE_OK("2[\"foo\"]", SIO_EVENT, "/", -1, 0, "[\"foo\"]", NULL);
    DECODE_OK("2/admin,[\"bar\"]", SIO_EVENT, "/admin", -1, 0, "[\"bar\"]", NULL);
    DECODE_OK("2[\"hey\",\"Jude\"]", SIO_EVENT, "/", -1, 0, "[\"hey\",\"Jude\"]", NULL);
    DECODE_OK("51-[\"baz\"," PH(0) "]", SIO_BINARY_EVENT, "/", -1, 1, "[\"baz\"," PH(0) "]", NULL);
    DECODE_OK("51-[\"hello\"," PH(0) "]", SIO_BINARY_EVENT, "/", -1, 1, "[\"hello\"," PH(0) "]", NULL);
    DECODE_OK("52-/admin,[\"baz\"," PH(0) "," PH(1) "]", SIO_BINARY_EVENT, "/admin", -1, 2,
              "[\"baz\"," PH(0) "," PH(1) "]", NULL);
    /* acknowledgement */
    DECODE_OK("212[\"foo\"]", SIO_EVENT, "/", 12, 0, "[\"foo\"]", NULL);
    DECODE_OK("2/admin,456[\"bar\"]", SIO_EVENT, "/admin", 456, 0, "[\"bar\"]", NULL);
    DECODE_OK("2/admin,1[\"tellme\"]", SIO_EVENT, "/admin", 1, 0, "[\"tellme\"]", NULL);
    DECODE_OK("312[]", SIO_ACK, "/", 12, 0, "[]", NULL);
    DECODE_OK("3/admin,456[]", SIO_ACK, "/admin", 456, 0, "[]", NULL);
    DECODE_OK("3/admin,13[\"bar\"]", SIO_ACK, "/admin", 13, 0, "[\"bar\"]", NULL);
    DECODE_OK("61-15[\"bar\"," PH(0) "]", SIO_BINARY_ACK, "/", 15, 1, "[\"bar\"," PH(0) "]", NULL);
    DECODE_OK("61-/admin,456[" PH(0) "]", SIO_BINARY_ACK, "/admin", 456, 1, "[" PH(0) "]", NULL);
    DECODE_OK("61-/admin,1[" PH(0) "]", SIO_BINARY_ACK, "/admin", 1, 1, "[" PH(0) "]", NULL);
    /* disconnection */
    DECODE_OK("1", SIO_DISCONNECT, "/", -1, 0, NULL, NULL);
    DECODE_OK("1/admin,", SIO_DISCONNECT, "/admin", -1, 0, NULL, NULL);
}

static void test_decode_edge_cases(void)
{
    /* A namespace without ',' runs to the end of the text (reference parser). */
    DECODE_OK("1/admin", SIO_DISCONNECT, "/admin", -1, 0, NULL, "1/admin,");
    DECODE_OK("0/random", SIO_CONNECT, "/random", -1, 0, NULL, "0/random,");
    DECODE_OK("0/admin{}", SIO_CONNECT, "/admin{}", -1, 0, NULL, "0/admin{},");
    /* An explicit main namespace is dropped on re-encoding. */
    DECODE_OK("2/,[\"x\"]", SIO_EVENT, "/", -1, 0, "[\"x\"]", "2[\"x\"]");
    DECODE_OK("0/", SIO_CONNECT, "/", -1, 0, NULL, "0");
    /* Non-ASCII namespace, NUL inside a JSON string, leading zeros in an id. */
    DECODE_OK("2/caf\xc3\xa9,[\"x\"]", SIO_EVENT, "/caf\xc3\xa9", -1, 0, "[\"x\"]", NULL);
    DECODE_OK("2[\"a\\u0000b\"]", SIO_EVENT, "/", -1, 0, "[\"a\\u0000b\"]", NULL);
    DECODE_OK("2007[\"a\"]", SIO_EVENT, "/", 7, 0, "[\"a\"]", "27[\"a\"]");
    DECODE_OK("20[\"a\"]", SIO_EVENT, "/", 0, 0, "[\"a\"]", NULL);
    /* The largest id a JavaScript peer can represent. */
    DECODE_OK("29007199254740991[\"a\"]", SIO_EVENT, "/", 9007199254740991LL, 0, "[\"a\"]", NULL);
    /* UTF-8 in data is kept as is, keys keep their order. */
    DECODE_OK("2[\"\xc3\xa9\",{\"b\":1,\"a\":[true,null,1.5]}]", SIO_EVENT, "/", -1, 0,
              "[\"\xc3\xa9\",{\"b\":1,\"a\":[true,null,1.5]}]", NULL);
    /* Placeholder-like objects in a non-binary packet are plain data. */
    DECODE_OK("2[\"a\"," PH(5) "]", SIO_EVENT, "/", -1, 0, "[\"a\"," PH(5) "]", NULL);
    /* Placeholders may repeat and nest; not every attachment must be used. */
    DECODE_OK("53-[\"a\",{\"x\":[" PH(2) "]}," PH(2) "]", SIO_BINARY_EVENT, "/", -1, 3,
              "[\"a\",{\"x\":[" PH(2) "]}," PH(2) "]", NULL);
    DECODE_OK("564-[\"a\"]", SIO_BINARY_EVENT, "/", -1, 64, "[\"a\"]", NULL);
}

static void test_decode_invalid(void)
{
    DECODE_FAILS("", PR_EINVAL);
    CHECK_EQ(decode_rc(pr_view_make(NULL, 0)), PR_EINVAL);
    /* Engine.IO "4abc" carries Socket.IO text "abc": unknown type 'a'. */
    DECODE_FAILS("abc", PR_EINVAL);
    DECODE_FAILS("7", PR_EINVAL);
    DECODE_FAILS("8[\"a\"]", PR_EINVAL);
    DECODE_FAILS("9", PR_EINVAL);
    DECODE_FAILS("/", PR_EINVAL);
    DECODE_FAILS(" 2[\"a\"]", PR_EINVAL);
    /* CONNECT_ERROR only travels from server to client. */
    DECODE_FAILS("4{\"message\":\"Not authorized\"}", PR_EINVAL);
    DECODE_FAILS("4", PR_EINVAL);

    /* shapes */
    DECODE_FAILS("2{}", PR_EINVAL);         /* payload not an array */
    DECODE_FAILS("2", PR_EINVAL);           /* event without payload */
    DECODE_FAILS("2[]", PR_EINVAL);         /* empty event */
    DECODE_FAILS("2[1]", PR_EINVAL);        /* event name not a string */
    DECODE_FAILS("2[null,\"a\"]", PR_EINVAL);
    DECODE_FAILS("2\"foo\"", PR_EINVAL);
    DECODE_FAILS("212", PR_EINVAL);
    DECODE_FAILS("2abc[\"x\"]", PR_EINVAL); /* invalid id */
    DECODE_FAILS("2-1[\"x\"]", PR_EINVAL);
    DECODE_FAILS("3[]", PR_EINVAL);         /* ack without id */
    DECODE_FAILS("3/admin,[\"bar\"]", PR_EINVAL);
    DECODE_FAILS("312", PR_EINVAL);         /* ack without payload */
    DECODE_FAILS("312{}", PR_EINVAL);
    DECODE_FAILS("0[]", PR_EINVAL);         /* connect payload must be an object */
    DECODE_FAILS("0\"x\"", PR_EINVAL);
    DECODE_FAILS("05{}", PR_EINVAL);        /* connect with an id */
    DECODE_FAILS("1{}", PR_EINVAL);         /* disconnect with a payload */
    DECODE_FAILS("1/admin,[]", PR_EINVAL);
    DECODE_FAILS("15", PR_EINVAL);          /* disconnect with an id */

    /* ids: at most 2^53-1 */
    DECODE_FAILS("29007199254740992[\"a\"]", PR_EINVAL);
    DECODE_FAILS("218446744073709551616[\"a\"]", PR_EINVAL);
    DECODE_FAILS("299999999999999999999999999999999999[\"a\"]", PR_EINVAL);

    /* attachments */
    DECODE_FAILS("21-[\"x\"]", PR_EINVAL);  /* prefix on a non-binary type */
    DECODE_FAILS("31-1[]", PR_EINVAL);
    DECODE_FAILS("01-{}", PR_EINVAL);
    DECODE_FAILS("5[\"a\"]", PR_EINVAL);    /* binary type without a count */
    DECODE_FAILS("50-[\"a\"]", PR_EINVAL);  /* binary type with 0 attachments */
    DECODE_FAILS("51[\"a\"]", PR_EINVAL);   /* count without '-' */
    DECODE_FAILS("51-", PR_EINVAL);
    DECODE_FAILS("5-[\"a\"]", PR_EINVAL);
    DECODE_FAILS("565-[\"a\"]", PR_ETOOBIG);
    DECODE_FAILS("599999999999999999999999-[\"a\"]", PR_ETOOBIG);
    DECODE_FAILS("51-[\"a\"," PH(1) "]", PR_EINVAL); /* num >= attachments */
    DECODE_FAILS("52-[\"a\",[{\"k\":" PH(2) "}]]", PR_EINVAL);
    DECODE_FAILS("51-[\"a\"," PH(-1) "]", PR_EINVAL);
    DECODE_FAILS("51-[\"a\",{\"_placeholder\":true,\"num\":\"0\"}]", PR_EINVAL);
    DECODE_FAILS("51-[\"a\",{\"_placeholder\":true,\"num\":0.0}]", PR_EINVAL);
    DECODE_FAILS("51-[\"a\",{\"_placeholder\":true}]", PR_EINVAL);
    DECODE_FAILS("51-[\"a\",{\"_placeholder\":true,\"num\":0,\"x\":1}]", PR_EINVAL);
    DECODE_FAILS("61-[" PH(0) "]", PR_EINVAL); /* binary ack without id */
    DECODE_FAILS("51-[" PH(0) "]", PR_EINVAL); /* event name must be a string */

    /* namespaces */
    DECODE_FAILS("2/a\x1e" "b,[\"x\"]", PR_EINVAL);
    DECODE_FAILS("2/a\nb,[\"x\"]", PR_EINVAL);
    CHECK_EQ(decode_rc(V("2/a\0b,[\"x\"]")), PR_EINVAL);
    DECODE_FAILS("2/\xff,[\"x\"]", PR_EINVAL);
    DECODE_FAILS("2/\xc0\xaf,[\"x\"]", PR_EINVAL);

    /* JSON */
    DECODE_FAILS("2[\"a\"]x", PR_EINVAL);   /* trailing garbage */
    DECODE_FAILS("2[\"a\"][", PR_EINVAL);
    DECODE_FAILS("2[\"a\"][\"b\"]", PR_EINVAL);
    DECODE_FAILS("2[\"a\"", PR_EINVAL);
    DECODE_FAILS("2[\"\xff\"]", PR_EINVAL); /* invalid UTF-8 */
    DECODE_FAILS("2[\"\xc0\x80\"]", PR_EINVAL);
    DECODE_FAILS("2[\"\xed\xa0\x80\"]", PR_EINVAL);
    DECODE_FAILS("2[\"a\",1e400]", PR_EINVAL);
    DECODE_FAILS("2[\"a\",99999999999999999999999]", PR_EINVAL);
}

static void test_namespace_length(void)
{
    char text[SIO_NSP_MAX + 16];
    /* "0" + nsp of SIO_NSP_MAX - 1 bytes + "," fits... */
    text[0] = '0';
    text[1] = '/';
    memset(text + 2, 'a', SIO_NSP_MAX - 2);
    text[SIO_NSP_MAX] = ',';
    sio_packet p;
    CHECK_EQ(sio_decode(pr_view_make(text, SIO_NSP_MAX + 1), &p), PR_OK);
    CHECK_EQ(strlen(p.nsp), SIO_NSP_MAX - 1);
    sio_packet_dispose(&p);
    /* ...one byte more does not, with or without the ','. */
    memset(text + 2, 'a', SIO_NSP_MAX - 1);
    text[SIO_NSP_MAX + 1] = ',';
    CHECK_EQ(decode_rc(pr_view_make(text, SIO_NSP_MAX + 2)), PR_ETOOBIG);
    CHECK_EQ(decode_rc(pr_view_make(text, SIO_NSP_MAX + 1)), PR_ETOOBIG);
}

/* Decodes 2["e",<nest>] where nest is depth arrays around "a": ["a"], [["a"]], ... */
static int decode_depth(int depth)
{
    pr_buf b;
    pr_buf_init(&b, 2048);
    pr_buf_append(&b, "2[\"e\",", 6);
    for (int i = 0; i < depth; i++)
        pr_buf_append_byte(&b, '[');
    pr_buf_append(&b, "\"a\"", 3);
    for (int i = 0; i < depth; i++)
        pr_buf_append_byte(&b, ']');
    pr_buf_append_byte(&b, ']');
    int rc = decode_rc(pr_buf_view(&b));
    pr_buf_dispose(&b);
    return rc;
}

static void test_depth(void)
{
    /* The outer array is level 1, so a nest of 31 reaches the limit of 32. */
    CHECK_EQ(decode_depth(31), PR_OK);
    CHECK_EQ(decode_depth(32), PR_EINVAL);
    CHECK_EQ(decode_depth(500), PR_EINVAL);
}

static void test_attachments(void)
{
    sio_packet p;
    CHECK_EQ(sio_decode(V("52-/admin,[\"baz\"," PH(0) "," PH(1) "]"), &p), PR_OK);
    CHECK(!sio_packet_complete(&p));
    CHECK_EQ(sio_add_attachment(&p, V("\x01\x02"), 4), PR_OK);
    CHECK(!sio_packet_complete(&p));
    CHECK_EQ(sio_add_attachment(&p, V("\x03\x04\x05"), 4), PR_ETOOBIG); /* 2 + 3 > 4 */
    CHECK_EQ(p.nattached, 1);
    CHECK_EQ(sio_add_attachment(&p, V("\x03\x04"), 4), PR_OK);
    CHECK(sio_packet_complete(&p));
    CHECK_EQ(sio_add_attachment(&p, V("x"), 100), PR_ESTATE);
    CHECK(p.att[0].len == 2 && memcmp(p.att[0].ptr, "\x01\x02", 2) == 0);
    CHECK(p.att[1].len == 2 && memcmp(p.att[1].ptr, "\x03\x04", 2) == 0);
    sio_packet_dispose(&p);
    CHECK(p.data == NULL && p.nattached == 0);
    sio_packet_dispose(&p); /* twice is harmless */

    /* Empty attachments are legal (an empty Buffer). */
    CHECK_EQ(sio_decode(V("51-[\"a\"," PH(0) "]"), &p), PR_OK);
    CHECK_EQ(sio_add_attachment(&p, V(""), 0), PR_OK);
    CHECK(sio_packet_complete(&p));
    sio_packet_dispose(&p);

    CHECK_EQ(sio_decode(V("2[\"a\"]"), &p), PR_OK);
    CHECK(sio_packet_complete(&p));
    CHECK_EQ(sio_add_attachment(&p, V("x"), 100), PR_ESTATE);
    sio_packet_dispose(&p);
}

static void test_is_placeholder(void)
{
    int64_t num = -5;
    json_t *j = js(PH(3));
    CHECK(sio_is_placeholder(j, &num));
    CHECK_EQ(num, 3);
    CHECK(sio_is_placeholder(j, NULL));
    json_decref(j);
    j = js("{\"num\":0,\"_placeholder\":true}");
    CHECK(sio_is_placeholder(j, NULL));
    json_decref(j);
    static const char *const no[] = {
        "{\"_placeholder\":false,\"num\":0}", "{\"_placeholder\":1,\"num\":0}",
        "{\"_placeholder\":true,\"num\":\"0\"}", "{\"_placeholder\":true,\"n\":0}",
        "{\"_placeholder\":true,\"num\":0,\"x\":0}", "[true,0]", "\"_placeholder\"",
    };
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        j = js(no[i]);
        CHECK(!sio_is_placeholder(j, &num));
        json_decref(j);
    }
    CHECK(!sio_is_placeholder(NULL, &num));
}

/* Encodes and compares with want; data is JSON text or NULL. */
#define ENCODE(type, nsp, id, att, data, want) encode_check(__LINE__, type, nsp, id, att, data, want)

static void encode_check(int line, sio_type type, const char *nsp, int64_t id, unsigned att,
                         const char *data, const char *want)
{
    json_t *j = data ? js(data) : NULL;
    pr_buf b;
    pr_buf_init(&b, 4096);
    CHECK_EQ(sio_encode(&b, type, nsp, id, att, j), PR_OK);
    CHECK(pr_view_eq_cstr(pr_buf_view(&b), want));
    if (!pr_view_eq_cstr(pr_buf_view(&b), want))
        fprintf(stderr, "  line %d: got \"%.*s\"\n", line, (int)b.len, b.len ? b.ptr : "");
    pr_buf_dispose(&b);
    json_decref(j);
}

static void test_encode(void)
{
    /* Spec examples and what the protocol test suite expects of a server. */
    ENCODE(SIO_CONNECT, "/", -1, 0, NULL, "0");
    ENCODE(SIO_CONNECT, "/", -1, 0, "{\"sid\":\"wZX3oN0bSVIhsaknAAAI\"}", "0{\"sid\":\"wZX3oN0bSVIhsaknAAAI\"}");
    ENCODE(SIO_CONNECT, "/admin", -1, 0, "{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}",
           "0/admin,{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}");
    ENCODE(SIO_CONNECT, "/custom", -1, 0, "{\"sid\":\"x\"}", "0/custom,{\"sid\":\"x\"}");
    ENCODE(SIO_CONNECT_ERROR, "/", -1, 0, "{\"message\":\"Not authorized\"}",
           "4{\"message\":\"Not authorized\"}");
    ENCODE(SIO_CONNECT_ERROR, "/random", -1, 0, "{\"message\":\"Invalid namespace\"}",
           "4/random,{\"message\":\"Invalid namespace\"}");
    ENCODE(SIO_EVENT, "/", -1, 0, "[\"auth\",{\"token\":\"123\"}]", "2[\"auth\",{\"token\":\"123\"}]");
    ENCODE(SIO_EVENT, "/admin", -1, 0, "[\"bar\"]", "2/admin,[\"bar\"]");
    ENCODE(SIO_EVENT, "/", 12, 0, "[\"foo\"]", "212[\"foo\"]");
    ENCODE(SIO_ACK, "/", 456, 0, "[1,\"2\",{\"3\":[false]}]", "3456[1,\"2\",{\"3\":[false]}]");
    ENCODE(SIO_ACK, "/admin", 13, 0, "[\"bar\"]", "3/admin,13[\"bar\"]");
    ENCODE(SIO_ACK, "/", 12, 0, "[]", "312[]");
    ENCODE(SIO_BINARY_EVENT, "/", -1, 2, "[\"message-back\"," PH(0) "," PH(1) "]",
           "52-[\"message-back\"," PH(0) "," PH(1) "]");
    ENCODE(SIO_BINARY_EVENT, "/admin", -1, 2, "[\"baz\"," PH(0) "," PH(1) "]",
           "52-/admin,[\"baz\"," PH(0) "," PH(1) "]");
    ENCODE(SIO_BINARY_ACK, "/", 789, 2, "[" PH(0) "," PH(1) "]", "62-789[" PH(0) "," PH(1) "]");
    ENCODE(SIO_BINARY_ACK, "/admin", 1, 1, "[" PH(0) "]", "61-/admin,1[" PH(0) "]");
    ENCODE(SIO_DISCONNECT, "/", -1, 0, NULL, "1");
    ENCODE(SIO_DISCONNECT, "/admin", -1, 0, NULL, "1/admin,");
    ENCODE(SIO_DISCONNECT, "/custom", -1, 0, NULL, "1/custom,");
    /* nsp NULL or "" is the main namespace */
    ENCODE(SIO_EVENT, NULL, -1, 0, "[\"a\"]", "2[\"a\"]");
    ENCODE(SIO_EVENT, "", 0, 0, "[\"a\"]", "20[\"a\"]");
    /* UTF-8 stays raw, '/' is not escaped, key order is kept, NUL is escaped */
    ENCODE(SIO_EVENT, "/", -1, 0, "[\"\xc3\xa9/\",{\"z\":1,\"a\":2}]", "2[\"\xc3\xa9/\",{\"z\":1,\"a\":2}]");
    ENCODE(SIO_EVENT, "/", -1, 0, "[\"a\\u0000\\u001e\"]", "2[\"a\\u0000\\u001E\"]");
    ENCODE(SIO_EVENT, "/", 9007199254740991LL, 0, "[\"a\"]", "29007199254740991[\"a\"]");

    pr_buf b;
    pr_buf_init(&b, 16);
    json_t *j = js("[\"a\"]");
    CHECK_EQ(sio_encode(&b, SIO_EVENT, "/", -1, 1, j), PR_EINVAL);        /* attachments on EVENT */
    CHECK_EQ(sio_encode(&b, SIO_BINARY_EVENT, "/", -1, 0, j), PR_EINVAL); /* none on BINARY_EVENT */
    CHECK_EQ(sio_encode(&b, (sio_type)7, "/", -1, 0, j), PR_EINVAL);
    CHECK_EQ(sio_encode(&b, (sio_type)-1, "/", -1, 0, j), PR_EINVAL);
    CHECK_EQ(sio_encode(&b, SIO_EVENT, "/", INT64_C(9007199254740992), 0, j), PR_EINVAL);
    CHECK_EQ(b.len, 0);
    json_decref(j);
    /* At the ceiling the buffer is left as it was, even when JSON overflows it midway. */
    pr_buf_append(&b, "xx", 2);
    j = js("[\"a long event name\"]");
    CHECK_EQ(sio_encode(&b, SIO_EVENT, "/", -1, 0, j), PR_ETOOBIG);
    CHECK_MEM(b.ptr, b.len, "xx");
    CHECK_EQ(sio_encode(&b, SIO_EVENT, "/a-rather-long-namespace", -1, 0, NULL), PR_ETOOBIG);
    CHECK_EQ(sio_encode(&b, SIO_EVENT, "/", 123456789012345, 0, NULL), PR_ETOOBIG);
    CHECK_MEM(b.ptr, b.len, "xx");
    json_decref(j);
    pr_buf_dispose(&b);
}

/* JSON.stringify("\ud83d\ude00".slice(0, 1)) is "\ud83d": a lone surrogate
 * decodes as U+FFFD (EF BF BD), a valid pair stays the character it is. */
static void test_lone_surrogates(void)
{
    DECODE_OK("2[\"m\",\"a\\ud83d\"]", SIO_EVENT, "/", -1, 0, "[\"m\",\"a\xef\xbf\xbd\"]",
              "2[\"m\",\"a\xef\xbf\xbd\"]");
    DECODE_OK("2[\"m\",\"\\uDE00b\"]", SIO_EVENT, "/", -1, 0, "[\"m\",\"\xef\xbf\xbd" "b\"]",
              "2[\"m\",\"\xef\xbf\xbd" "b\"]");
    /* high then high: the first is lone, the second pairs with what follows */
    DECODE_OK("2[\"m\",\"\\ud83d\\ud83d\\ude00\"]", SIO_EVENT, "/", -1, 0,
              "[\"m\",\"\xef\xbf\xbd\xf0\x9f\x98\x80\"]", "2[\"m\",\"\xef\xbf\xbd\xf0\x9f\x98\x80\"]");
    DECODE_OK("2[\"m\",{\"\\udc00\":\"\\ud800\"}]", SIO_EVENT, "/", -1, 0,
              "[\"m\",{\"\xef\xbf\xbd\":\"\xef\xbf\xbd\"}]", "2[\"m\",{\"\xef\xbf\xbd\":\"\xef\xbf\xbd\"}]");
    /* an escaped backslash makes "ud83d" plain text */
    DECODE_OK("2[\"m\",\"\\\\ud83d\"]", SIO_EVENT, "/", -1, 0, "[\"m\",\"\\\\ud83d\"]", NULL);
    DECODE_OK("2[\"m\",\"\\\"\\ud83d\"]", SIO_EVENT, "/", -1, 0, "[\"m\",\"\\\"\xef\xbf\xbd\"]",
              "2[\"m\",\"\\\"\xef\xbf\xbd\"]");

    const char pair[] = "[\"\\ud83d\\ude00\",\"\\\\udc00\"]";
    CHECK_EQ(sio_lone_surrogates(pair, sizeof pair - 1, NULL), 0);
    /* outside strings nothing is touched; a cut escape is left to jansson */
    const char cut[] = "[\"\\ud83\"] \\ud800";
    CHECK_EQ(sio_lone_surrogates(cut, sizeof cut - 1, NULL), 0);
    const char end[] = "[\"x\\ud83d";
    CHECK_EQ(sio_lone_surrogates(end, sizeof end - 1, NULL), 1);
    char fixed[sizeof end];
    memcpy(fixed, end, sizeof end);
    CHECK_EQ(sio_lone_surrogates(end, sizeof end - 1, fixed), 1);
    CHECK_MEM(fixed, sizeof end - 1, "[\"x\\uFFFD");
    /* still invalid JSON after the rewrite: refused as before */
    CHECK_EQ(decode_rc(V("2[\"m\",\"\\ud83\"]")), PR_EINVAL);
    CHECK_EQ(decode_rc(V("2[\"m\",\"\\ud83d")), PR_EINVAL);
}

int main(void)
{
    pr_alloc_install_jansson();
    test_decode_spec_examples();
    test_decode_edge_cases();
    test_decode_invalid();
    test_namespace_length();
    test_depth();
    test_attachments();
    test_is_placeholder();
    test_encode();
    test_lone_surrogates();
    T_DONE();
}
