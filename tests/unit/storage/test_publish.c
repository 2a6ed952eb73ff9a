/* Unit tests of storage/publish.c's encoders: the messageReceived packet as
 * gateways relay it, live and in replays. */
#include <jansson.h>

#include "sio.h"
#include "st.h"
#include "t.h"

static json_t *event_args(pr_view pkt)
{
    sio_packet p;
    if (sio_decode(pkt, &p) != 0)
        return NULL;
    json_t *data = json_incref(p.data);
    sio_packet_dispose(&p);
    return data;
}

int main(void)
{
    pr_alloc_install_jansson();
    pr_buf b;
    pr_buf_init(&b, 1 << 20);
    const char text[] = "quote \" backslash \\ nl \n tab \t bell \x07 del \x7f é \xe2\x80\xa8";
    st_msg m = {
        "42", 7, "g1", "alice", "Al\"ice", NULL, text, sizeof text - 1, "2024-01-02T03:04:05.678Z",
        NULL};
    CHECK_EQ(st_message_packet(&b, &m), 0);
    /* one line: it travels in line-based envelopes */
    CHECK(memchr(b.ptr, '\n', b.len) == NULL);
    CHECK(memchr(b.ptr, '\t', b.len) == NULL);
    json_t *args = event_args(pr_buf_view(&b));
    CHECK(args != NULL);
    CHECK(!strcmp(json_string_value(json_array_get(args, 0)), "messageReceived"));
    json_t *o = json_array_get(args, 1);
    CHECK(!strcmp(json_string_value(json_object_get(o, "id")), "42"));
    CHECK_EQ(json_integer_value(json_object_get(o, "seq")), 7);
    CHECK(!strcmp(json_string_value(json_object_get(o, "roomId")), "g1"));
    CHECK(!strcmp(json_string_value(json_object_get(o, "userId")), "alice"));
    CHECK(!strcmp(json_string_value(json_object_get(o, "firstName")), "Al\"ice"));
    CHECK(json_is_null(json_object_get(o, "lastName")));
    CHECK(json_is_null(json_object_get(o, "clientMsgId")));
    CHECK(!strcmp(json_string_value(json_object_get(o, "text")), text));
    CHECK(!strcmp(json_string_value(json_object_get(o, "createdAt")), "2024-01-02T03:04:05.678Z"));
    /* the documented key order */
    const char *keys[] = {"id",       "seq",  "roomId",    "userId",     "firstName",
                          "lastName", "text", "createdAt", "clientMsgId"};
    size_t k = 0;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        (void)v;
        CHECK(k < 9 && !strcmp(key, keys[k]));
        k++;
    }
    CHECK_EQ(k, 9);
    json_decref(args);

    /* optional fields present */
    pr_buf_reset(&b);
    st_msg m2 = {"1", 1, "r", "u", "", "Smith", "x", 1, "t", "cm-1"};
    CHECK_EQ(st_message_packet(&b, &m2), 0);
    args = event_args(pr_buf_view(&b));
    o = json_array_get(args, 1);
    CHECK(!strcmp(json_string_value(json_object_get(o, "lastName")), "Smith"));
    CHECK(!strcmp(json_string_value(json_object_get(o, "clientMsgId")), "cm-1"));
    CHECK(!strcmp(json_string_value(json_object_get(o, "firstName")), ""));
    json_decref(args);

    /* a buffer too small leaves it as it was */
    pr_buf small;
    pr_buf_init(&small, 16);
    CHECK(st_message_packet(&small, &m) != 0);
    CHECK_EQ(small.len, 0);
    pr_buf_dispose(&small);
    pr_buf_dispose(&b);
    T_DONE();
}
