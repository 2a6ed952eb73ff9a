/* Unit tests for proto/eio.h, driven by the Engine.IO v4 specification examples. */
#include "eio.h"
#include "t.h"

#define V(lit) PR_VIEW_LIT(lit)

static void test_decode_text(void)
{
    /* Every packet type, as in the specification's packet table. */
    static const struct {
        const char *frame;
        eio_type type;
        const char *data;
    } ok[] = {
        {"0{\"sid\":\"x\"}", EIO_OPEN, "{\"sid\":\"x\"}"},
        {"1", EIO_CLOSE, ""},
        {"2", EIO_PING, ""},
        {"2probe", EIO_PING, "probe"},
        {"3probe", EIO_PONG, "probe"},
        {"4hello", EIO_MESSAGE, "hello"},
        {"4", EIO_MESSAGE, ""},
        {"4\xe2\x82\xac", EIO_MESSAGE, "\xe2\x82\xac"},
        {"5", EIO_UPGRADE, ""},
        {"6", EIO_NOOP, ""},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        eio_packet p;
        CHECK_EQ(eio_decode_text(pr_view_make(ok[i].frame, strlen(ok[i].frame)), &p), PR_OK);
        CHECK_EQ(p.type, ok[i].type);
        CHECK_EQ(p.binary, 0);
        CHECK(pr_view_eq_cstr(p.data, ok[i].data));
    }

    eio_packet p;
    CHECK_EQ(eio_decode_text(V(""), &p), PR_EINVAL);
    CHECK_EQ(eio_decode_text(pr_view_make(NULL, 0), &p), PR_EINVAL);
    CHECK_EQ(eio_decode_text(V("7"), &p), PR_EINVAL);
    CHECK_EQ(eio_decode_text(V("9hello"), &p), PR_EINVAL);
    CHECK_EQ(eio_decode_text(V("/"), &p), PR_EINVAL);
    CHECK_EQ(eio_decode_text(V("bAQIDBA=="), &p), PR_EINVAL); /* base64 only in payloads */
    CHECK_EQ(eio_decode_text(V("hello"), &p), PR_EINVAL);
    CHECK_EQ(eio_decode_text(V("4\xc0\x80"), &p), PR_EINVAL); /* not UTF-8 */
    CHECK_EQ(eio_decode_text(V("4\xff"), &p), PR_EINVAL);
}

static void test_decode_binary(void)
{
    eio_packet p;
    eio_decode_binary(V("\x01\x02\x03\x04"), &p);
    CHECK_EQ(p.type, EIO_MESSAGE);
    CHECK_EQ(p.binary, 1);
    CHECK(pr_view_eq(p.data, V("\x01\x02\x03\x04")));
    eio_decode_binary(V(""), &p);
    CHECK_EQ(p.binary, 1);
    CHECK_EQ(p.data.len, 0);
}

/* Splits a payload and decodes every record; writes "<type><b?>:<data>|" per
 * packet into desc, so one string comparison checks the whole payload. */
static int split(pr_view payload, pr_buf *desc)
{
    pr_buf bin;
    pr_buf_init(&bin, 1024);
    pr_view rest = payload, rec;
    int rc;
    while ((rc = eio_payload_next(&rest, &rec)) == 1) {
        eio_packet p;
        rc = eio_decode_record(rec, &p, &bin);
        if (rc != PR_OK)
            break;
        /* Not %.*s: binary data may hold NUL bytes. */
        pr_buf_appendf(desc, "%d%s:", (int)p.type, p.binary ? "b" : "");
        pr_buf_append_view(desc, p.data);
        pr_buf_append_byte(desc, '|');
    }
    pr_buf_dispose(&bin);
    return rc;
}

static void check_split(pr_view payload, int want_rc, const char *want_desc)
{
    pr_buf desc;
    pr_buf_init(&desc, 4096);
    CHECK_EQ(split(payload, &desc), want_rc);
    CHECK(pr_view_eq_cstr(pr_buf_view(&desc), want_desc));
    if (!pr_view_eq_cstr(pr_buf_view(&desc), want_desc))
        fprintf(stderr, "  got \"%.*s\"\n", (int)desc.len, desc.len ? desc.ptr : "");
    pr_buf_dispose(&desc);
}

static void test_payload_decode(void)
{
    check_split(V("4hello\x1e" "2\x1e" "4world"), 0, "4:hello|2:|4:world|");
    check_split(V("4hello\x1e" "bAQIDBA=="), 0, "4:hello|4b:\x01\x02\x03\x04|");
    check_split(V("42[\"hello\"]\x1e" "42[\"world\"]"), 0, "4:2[\"hello\"]|4:2[\"world\"]|");
    check_split(V("6"), 0, "6:|");
    check_split(V("b"), 0, "4b:|"); /* an empty binary message */

    check_split(V(""), PR_EINVAL, "");
    check_split(pr_view_make(NULL, 0), PR_EINVAL, "");
    check_split(V("\x1e"), PR_EINVAL, "");
    check_split(V("4a\x1e\x1e" "4b"), PR_EINVAL, "4:a|");
    check_split(V("4a\x1e"), PR_EINVAL, "4:a|");
    check_split(V("\x1e" "4a"), PR_EINVAL, "");
    check_split(V("4a\x1e" "7b"), PR_EINVAL, "4:a|");
    check_split(V("4a\x1e" "bAQIDBA="), PR_EINVAL, "4:a|");
    check_split(V("4a\x1e" "b!!!!"), PR_EINVAL, "4:a|");

    /* The end state is sticky. */
    pr_view rest = V("4x"), rec;
    CHECK_EQ(eio_payload_next(&rest, &rec), 1);
    CHECK_EQ(eio_payload_next(&rest, &rec), 0);
    CHECK_EQ(eio_payload_next(&rest, &rec), 0);

    /* Binary records respect the ceiling of bin. */
    pr_buf bin;
    pr_buf_init(&bin, 3);
    eio_packet p;
    CHECK_EQ(eio_decode_record(V("bAQIDBA=="), &p, &bin), PR_ETOOBIG);
    CHECK_EQ(eio_decode_record(V("bAQID"), &p, &bin), PR_OK);
    CHECK(pr_view_eq(p.data, V("\x01\x02\x03")));
    CHECK_EQ(eio_decode_record(V("4text"), &p, &bin), PR_OK);
    CHECK_EQ(p.binary, 0);
    CHECK(pr_view_eq(p.data, V("text")));
    CHECK_EQ(eio_decode_record(V(""), &p, &bin), PR_EINVAL);
    pr_buf_dispose(&bin);
}

static void test_encode(void)
{
    pr_buf b;
    pr_buf_init(&b, 64);
    CHECK_EQ(eio_encode_text(&b, EIO_MESSAGE, V("hello")), PR_OK);
    CHECK_MEM(b.ptr, b.len, "4hello");
    pr_buf_reset(&b);
    CHECK_EQ(eio_encode_text(&b, EIO_PONG, V("probe")), PR_OK);
    CHECK_EQ(eio_encode_text(&b, EIO_NOOP, V("")), PR_OK);
    CHECK_MEM(b.ptr, b.len, "3probe6");
    CHECK_EQ(eio_encode_text(&b, (eio_type)7, V("")), PR_EINVAL);
    CHECK_EQ(eio_encode_text(&b, (eio_type)-1, V("")), PR_EINVAL);
    CHECK_MEM(b.ptr, b.len, "3probe6");
    pr_buf_dispose(&b);

    /* The specification's payload examples. */
    pr_buf_init(&b, 64);
    CHECK_EQ(eio_payload_append(&b, EIO_MESSAGE, 0, V("hello")), PR_OK);
    CHECK_EQ(eio_payload_append(&b, EIO_PING, 0, V("")), PR_OK);
    CHECK_EQ(eio_payload_append(&b, EIO_MESSAGE, 0, V("world")), PR_OK);
    CHECK_MEM(b.ptr, b.len, "4hello\x1e" "2\x1e" "4world");
    pr_buf_reset(&b);
    CHECK_EQ(eio_payload_append(&b, EIO_MESSAGE, 0, V("hello")), PR_OK);
    CHECK_EQ(eio_payload_append(&b, EIO_MESSAGE, 1, V("\x01\x02\x03\x04")), PR_OK);
    CHECK_MEM(b.ptr, b.len, "4hello\x1e" "bAQIDBA==");
    CHECK_EQ(eio_payload_append(&b, EIO_PING, 1, V("x")), PR_EINVAL); /* binary is message-only */
    CHECK_EQ(eio_payload_append(&b, EIO_MESSAGE, 0, V("a\x1e" "b")), PR_EINVAL);
    CHECK_EQ(eio_payload_append(&b, (eio_type)9, 0, V("")), PR_EINVAL);
    CHECK_MEM(b.ptr, b.len, "4hello\x1e" "bAQIDBA==");
    pr_buf_dispose(&b);

    /* All-or-nothing at the ceiling: "4hello" + sep + "4abc" needs 11. */
    pr_buf_init(&b, 10);
    CHECK_EQ(eio_payload_append(&b, EIO_MESSAGE, 0, V("hello")), PR_OK);
    CHECK_EQ(eio_payload_append(&b, EIO_MESSAGE, 0, V("abc")), PR_ETOOBIG);
    CHECK_MEM(b.ptr, b.len, "4hello");
    CHECK_EQ(eio_payload_append(&b, EIO_MESSAGE, 1, V("\x01\x02")), PR_ETOOBIG);
    CHECK_MEM(b.ptr, b.len, "4hello");
    CHECK_EQ(eio_payload_append(&b, EIO_MESSAGE, 0, V("ab")), PR_OK);
    CHECK_MEM(b.ptr, b.len, "4hello\x1e" "4ab");
    pr_buf_reset(&b);
    CHECK_EQ(eio_encode_text(&b, EIO_MESSAGE, V("0123456789")), PR_ETOOBIG);
    CHECK_EQ(b.len, 0);
    pr_buf_dispose(&b);
}

static void test_payload_roundtrip(void)
{
    pr_buf b, desc;
    pr_buf_init(&b, 256);
    pr_buf_init(&desc, 256);
    eio_payload_append(&b, EIO_MESSAGE, 0, V("2[\"a\"]"));
    eio_payload_append(&b, EIO_MESSAGE, 1, V("\x00\xff\x10"));
    eio_payload_append(&b, EIO_MESSAGE, 1, V(""));
    eio_payload_append(&b, EIO_CLOSE, 0, V(""));
    CHECK_EQ(split(pr_buf_view(&b), &desc), 0);
    CHECK(pr_view_eq(pr_buf_view(&desc), V("4:2[\"a\"]|4b:\x00\xff\x10|4b:|1:|")));
    pr_buf_dispose(&b);
    pr_buf_dispose(&desc);
}

static void test_open(void)
{
    pr_buf b;
    pr_buf_init(&b, 256);
    CHECK_EQ(eio_encode_open(&b, V("lv_VI97HAXpY6yYWAAAC"), 1, 25000, 20000, 1000000), PR_OK);
    CHECK_MEM(b.ptr, b.len,
              "0{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[\"websocket\"],"
              "\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}");
    pr_buf_reset(&b);
    CHECK_EQ(eio_encode_open(&b, V("SID"), 0, 300, 200, 1000000), PR_OK);
    CHECK_MEM(b.ptr, b.len,
              "0{\"sid\":\"SID\",\"upgrades\":[],\"pingInterval\":300,\"pingTimeout\":200,"
              "\"maxPayload\":1000000}");
    pr_buf_reset(&b);
    CHECK_EQ(eio_encode_open(&b, V("a\"b"), 1, 1, 1, 1), PR_EINVAL);
    CHECK_EQ(eio_encode_open(&b, V("a\\b"), 1, 1, 1, 1), PR_EINVAL);
    CHECK_EQ(eio_encode_open(&b, V("a\nb"), 1, 1, 1, 1), PR_EINVAL);
    CHECK_EQ(eio_encode_open(&b, V("\xc3\xa9"), 1, 1, 1, 1), PR_EINVAL);
    CHECK_EQ(b.len, 0);
    pr_buf_dispose(&b);

    pr_buf_init(&b, 20);
    CHECK_EQ(eio_encode_open(&b, V("SID"), 1, 25000, 20000, 1000000), PR_ETOOBIG);
    CHECK_EQ(b.len, 0);
    pr_buf_dispose(&b);
}

int main(void)
{
    test_decode_text();
    test_decode_binary();
    test_payload_decode();
    test_encode();
    test_payload_roundtrip();
    test_open();
    T_DONE();
}
