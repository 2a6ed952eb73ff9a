/* Unit tests of storage/api/params.c: the HTTP API's path and query
 * parameters (ids, seq, ?limit=, ?before=, ?cursor=) and what it refuses. */
#include <string.h>

#include "api/api.h"
#include "t.h"

static int id(const char *s, char out[CHAT_ID_MAX + 1])
{
    return st__api_decode_id(s, strlen(s), out);
}

static int seq(st__api_req *q, const char *s)
{
    return st__api_parse_seq(q, s, strlen(s));
}

static void test_int(void)
{
    int64_t v = -7;
    CHECK(st__api_parse_int("1", 1, &v) && v == 1);
    CHECK(st__api_parse_int("0", 0, &v) && v == 0);
    CHECK(st__api_parse_int("9007199254740991", 1, &v) && v == 9007199254740991LL);
    v = -7;
    CHECK(!st__api_parse_int("0", 1, &v));                 /* below min */
    CHECK(!st__api_parse_int("9007199254740992", 1, &v));  /* not exact in JavaScript */
    CHECK(!st__api_parse_int("12345678901234567", 1, &v)); /* 17 digits */
    CHECK(!st__api_parse_int("", 0, &v));
    CHECK(!st__api_parse_int("01", 0, &v)); /* leading zero */
    CHECK(!st__api_parse_int("00", 0, &v));
    CHECK(!st__api_parse_int("-1", 0, &v));
    CHECK(!st__api_parse_int("+1", 0, &v));
    CHECK(!st__api_parse_int(" 1", 0, &v));
    CHECK(!st__api_parse_int("1 ", 0, &v));
    CHECK(!st__api_parse_int("1e3", 0, &v));
    CHECK(!st__api_parse_int("0x10", 0, &v));
    CHECK_EQ(v, -7); /* untouched by a refusal */
}

static void test_ids(void)
{
    char out[CHAT_ID_MAX + 1];
    CHECK(id("room-1", out) && !strcmp(out, "room-1"));
    CHECK(id("a%2Fb", out) && !strcmp(out, "a/b")); /* escapes, either case */
    CHECK(id("%41%62", out) && !strcmp(out, "Ab"));
    CHECK(id("%7e", out) && !strcmp(out, "~"));
    CHECK(!id("", out));
    CHECK(!id("a%20b", out));  /* decodes to a space: not an id */
    CHECK(!id("a%00b", out));  /* NUL */
    CHECK(!id("%C3%A9", out)); /* non-ASCII */
    CHECK(!id("%", out));
    CHECK(!id("a%4", out)); /* cut escape */
    CHECK(!id("%zz", out));
    CHECK(!id("%4g", out));
    char longest[CHAT_ID_MAX + 2];
    memset(longest, 'x', CHAT_ID_MAX);
    longest[CHAT_ID_MAX] = '\0';
    CHECK(id(longest, out) && strlen(out) == CHAT_ID_MAX);
    longest[CHAT_ID_MAX] = 'x';
    longest[CHAT_ID_MAX + 1] = '\0';
    CHECK(!id(longest, out)); /* one too long */
    /* 128 escapes of one byte each still fit; the length counts decoded bytes */
    char escaped[3 * CHAT_ID_MAX + 1];
    for (int i = 0; i < CHAT_ID_MAX; i++)
        memcpy(escaped + 3 * i, "%61", 3);
    escaped[3 * CHAT_ID_MAX] = '\0';
    CHECK(id(escaped, out) && strlen(out) == CHAT_ID_MAX);
}

static void test_seq(void)
{
    st__api_req q = {0};
    CHECK(seq(&q, "42") && q.num == 42);
    CHECK(!seq(&q, "0")); /* seqs start at 1 */
    CHECK(!seq(&q, "-3"));
    CHECK(!seq(&q, "4x"));
    CHECK(!seq(&q, ""));
    CHECK(!seq(&q, "100000000000000000000000000")); /* longer than any number */
    CHECK_EQ(q.num, 42);
}

static void test_cursor(void)
{
    st__api_req q = {0};
    pr_buf c;
    pr_buf_init(&c, 512);
    st__api_make_cursor(&c, "1700000000123456", "g_room:1");
    CHECK(strchr(c.ptr, ':') == NULL); /* opaque: base64url */
    CHECK(st__api_parse_cursor(&q, c.ptr));
    CHECK_EQ(q.cursor_us, 1700000000123456LL);
    CHECK(!strcmp(q.cursor_room, "g_room:1")); /* the room may hold a colon */
    pr_buf_dispose(&c);

    pr_buf raw, enc;
    pr_buf_init(&raw, 512);
    pr_buf_init(&enc, 1024);
    static const char *const bad[] = {
        "",                           /* nothing */
        "12345",                      /* no colon */
        ":room",                      /* no time */
        "-5:room",                    /* not a number */
        "01:room",                    /* leading zero */
        "12:",                        /* no room */
        "12:a room",                  /* not an id */
        "123456789012345678901234:r", /* a time too long */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pr_buf_reset(&raw);
        pr_buf_reset(&enc);
        pr_buf_append(&raw, bad[i], strlen(bad[i]));
        pr_base64url_encode(&enc, pr_buf_view(&raw));
        pr_buf_append_byte(&enc, '\0');
        if (st__api_parse_cursor(&q, enc.len > 1 ? enc.ptr : "")) {
            CHECK(!"a bad cursor was accepted");
            fprintf(stderr, "  cursor: \"%s\"\n", bad[i]);
        }
    }
    /* a room of 129 bytes */
    pr_buf_reset(&raw);
    pr_buf_reset(&enc);
    pr_buf_append(&raw, "5:", 2);
    for (int i = 0; i <= CHAT_ID_MAX; i++)
        pr_buf_append_byte(&raw, 'r');
    pr_base64url_encode(&enc, pr_buf_view(&raw));
    pr_buf_append_byte(&enc, '\0');
    CHECK(!st__api_parse_cursor(&q, enc.ptr));
    CHECK(!st__api_parse_cursor(&q, "!!!")); /* not base64url */
    CHECK(!st__api_parse_cursor(&q, "MTI6cm9vbQ==x"));
    pr_buf_dispose(&raw);
    pr_buf_dispose(&enc);
}

static void test_query(void)
{
    st__api_req q;
    /* defaults */
    memset(&q, 0, sizeof q);
    CHECK(st__api_parse_query(&q, NULL, 0));
    CHECK_EQ(q.limit, ST__API_LIMIT_DEFAULT);
    CHECK_EQ(q.num, 0);
    CHECK_EQ(q.cursor_us, -1);
    CHECK(st__api_parse_query(&q, "", 1));
    CHECK_EQ(q.limit, 50);

    /* limit in 1..200 */
    CHECK(st__api_parse_query(&q, "limit=1", 0) && q.limit == 1);
    CHECK(st__api_parse_query(&q, "limit=200", 1) && q.limit == ST__API_LIMIT_MAX);
    CHECK(!st__api_parse_query(&q, "limit=0", 0));
    CHECK(!st__api_parse_query(&q, "limit=201", 0));
    CHECK(!st__api_parse_query(&q, "limit=-1", 0));
    CHECK(!st__api_parse_query(&q, "limit=", 0));
    CHECK(!st__api_parse_query(&q, "limit=ten", 0));
    CHECK(!st__api_parse_query(&q, "limit=10&limit=10", 0)); /* twice */

    /* before: messages only */
    CHECK(st__api_parse_query(&q, "before=17&limit=5", 0) && q.num == 17 && q.limit == 5);
    CHECK(!st__api_parse_query(&q, "before=0", 0));
    CHECK(!st__api_parse_query(&q, "before=1&before=2", 0));
    CHECK(st__api_parse_query(&q, "before=0", 1) && q.num == 0); /* not a rooms parameter */

    /* cursor: rooms only */
    pr_buf c;
    pr_buf_init(&c, 512);
    st__api_make_cursor(&c, "99", "r1");
    char qs[600];
    snprintf(qs, sizeof qs, "cursor=%s&limit=3", c.ptr);
    CHECK(st__api_parse_query(&q, qs, 1));
    CHECK(q.cursor_us == 99 && !strcmp(q.cursor_room, "r1") && q.limit == 3);
    CHECK(st__api_parse_query(&q, qs, 0) && q.cursor_us == -1); /* ignored by messages */
    snprintf(qs, sizeof qs, "cursor=%s&cursor=%s", c.ptr, c.ptr);
    CHECK(!st__api_parse_query(&q, qs, 1));
    CHECK(!st__api_parse_query(&q, "cursor=nope!", 1));
    CHECK(!st__api_parse_query(&q, "cursor=", 1));
    pr_buf_dispose(&c);

    /* other names are ignored (cache busters); a broken query string is not */
    CHECK(st__api_parse_query(&q, "_=123&limit=7", 0) && q.limit == 7);
    CHECK(!st__api_parse_query(&q, "limit", 0));
}

int main(void)
{
    test_int();
    test_ids();
    test_seq();
    test_cursor();
    test_query();
    T_DONE();
}
