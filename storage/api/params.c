/*
 * api/params.c - the API's parameters: ids and the seq of the path, and
 * ?limit=, ?before=, ?cursor= of the lists (the cursor is opaque to
 * clients: base64url of "MICROSECONDS:ROOM", the last room of a page).
 * No I/O: unit-tested in tests/unit/storage/api/test_params.c.
 */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>

#include "api.h"

int st__api_decode_id(const char *s, size_t n, char out[CHAT_ID_MAX + 1])
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (i + 2 >= n)
                return 0;
            int hi = pr_hex_digit(s[i + 1]);
            int lo = pr_hex_digit(s[i + 2]);
            if (hi < 0 || lo < 0)
                return 0;
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (len == CHAT_ID_MAX)
            return 0;
        out[len++] = ch;
    }
    out[len] = '\0';
    return chat_id_valid(out, len);
}

int st__api_parse_int(const char *s, int64_t min, int64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 16 || (n > 1 && s[0] == '0'))
        return 0;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > ST__API_INT_MAX)
        return 0;
    *out = v;
    return 1;
}

int st__api_parse_seq(st__api_req *q, const char *s, size_t n)
{
    char num[24];
    if (n >= sizeof num)
        return 0;
    memcpy(num, s, n);
    num[n] = '\0';
    return st__api_parse_int(num, 1, &q->num);
}

int st__api_parse_cursor(st__api_req *q, const char *s)
{
    pr_buf raw;
    pr_buf_init(&raw, 256);
    int ok = 0;
    /* an empty decode leaves raw.ptr NULL: not a cursor */
    if (pr_base64url_decode(&raw, pr_view_make(s, strlen(s))) == 0 && raw.len > 0) {
        const char *colon = memchr(raw.ptr, ':', raw.len);
        size_t nlen = colon ? (size_t)(colon - raw.ptr) : 0;
        char num[24];
        if (colon && nlen > 0 && nlen < sizeof num) {
            memcpy(num, raw.ptr, nlen);
            num[nlen] = '\0';
            size_t rlen = raw.len - nlen - 1;
            ok = st__api_parse_int(num, 0, &q->cursor_us) && rlen <= CHAT_ID_MAX &&
                 chat_id_valid(colon + 1, rlen);
            if (ok) {
                memcpy(q->cursor_room, colon + 1, rlen);
                q->cursor_room[rlen] = '\0';
            }
        }
    }
    pr_buf_dispose(&raw);
    return ok;
}

void st__api_make_cursor(pr_buf *out, const char *active_us, const char *room)
{
    pr_buf raw;
    pr_buf_init(&raw, 256);
    pr_buf_appendf(&raw, "%s:%s", active_us, room);
    pr_base64url_encode(out, pr_buf_view(&raw));
    pr_buf_append_byte(out, '\0');
    pr_buf_dispose(&raw);
}

int st__api_parse_query(st__api_req *q, const char *query_str, int rooms)
{
    q->limit = ST__API_LIMIT_DEFAULT;
    q->num = 0;
    q->cursor_us = -1;
    if (!query_str || !*query_str)
        return 1;
    struct evkeyvalq kv;
    /* evhttp_parse_query_str initialises kv, and empties it on failure */
    int ok = evhttp_parse_query_str(query_str, &kv) == 0;
    int have_limit = 0, have_before = 0;
    for (struct evkeyval *e = kv.tqh_first; ok && e; e = e->next.tqe_next) {
        int64_t v;
        if (!strcmp(e->key, "limit")) {
            ok = !have_limit++ && st__api_parse_int(e->value, 1, &v) && v <= ST__API_LIMIT_MAX;
            if (ok)
                q->limit = (long)v;
        } else if (!rooms && !strcmp(e->key, "before")) {
            ok = !have_before++ && st__api_parse_int(e->value, 1, &v);
            if (ok)
                q->num = v;
        } else if (rooms && !strcmp(e->key, "cursor")) {
            ok = !have_before++ && st__api_parse_cursor(q, e->value);
        }
        /* other names are ignored (cache busters) */
    }
    evhttp_clear_headers(&kv);
    return ok;
}
