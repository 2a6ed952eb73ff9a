/* Unit tests of proto/chat_packets.c: the exact JSON text clients get. */
#include <jansson.h>

#include "chat.h"
#include "sio.h"
#include "t.h"

static pr_buf b;

#define TEXT(call, lit)                                                                            \
    do {                                                                                           \
        pr_buf_reset(&b);                                                                          \
        CHECK_EQ((call), 0);                                                                       \
        CHECK_MEM(b.ptr, b.len, lit);                                                              \
    } while (0)

/* What the gateway wrote with jansson before: 2["event",payload]. */
static int same_as_jansson(const char *event, json_t *payload)
{
    pr_buf j;
    pr_buf_init(&j, 1 << 16);
    json_t *data = json_pack("[sO]", event, payload);
    int rc = sio_encode(&j, SIO_EVENT, "/", -1, 0, data);
    json_decref(data);
    json_decref(payload);
    int same = rc == 0 && j.len == b.len && !memcmp(j.ptr, b.ptr, b.len);
    if (!same)
        fprintf(stderr, "jansson: %.*s\nours:    %.*s\n", (int)j.len, j.ptr, (int)b.len, b.ptr);
    pr_buf_dispose(&j);
    return same;
}

static void test_json_str(void)
{
    const char s[] = "q\" b\\ n\n r\r t\t bell\x07 del\x7f \xc3\xa9 \xe2\x80\xa8 /";
    TEXT(chat_json_str(&b, s, sizeof s - 1),
         "\"q\\\" b\\\\ n\\n r\\r t\\t bell\\u0007 del\\u007f \xc3\xa9 \xe2\x80\xa8 /\"");
    TEXT(chat_json_str(&b, "", 0), "\"\"");
}

static void test_message(void)
{
    chat_message m = {
        "42", 7, "g1", "alice", "Al\"ice", NULL, "hi\n", 3, "2024-01-02T03:04:05.678Z", NULL, NULL};
    TEXT(chat_message_packet(&b, &m),
         "2[\"messageReceived\",{\"id\":\"42\",\"seq\":7,\"roomId\":\"g1\",\"userId\":\"alice\","
         "\"firstName\":\"Al\\\"ice\",\"lastName\":null,\"text\":\"hi\\n\","
         "\"createdAt\":\"2024-01-02T03:04:05.678Z\",\"clientMsgId\":null}]");
    chat_message m2 = {"1", 1, "r", "u", NULL, "Smith", "x", 1, "t", "cm-1", NULL};
    TEXT(chat_message_json(&b, &m2),
         "{\"id\":\"1\",\"seq\":1,\"roomId\":\"r\",\"userId\":\"u\",\"firstName\":\"\","
         "\"lastName\":\"Smith\",\"text\":\"x\",\"createdAt\":\"t\",\"clientMsgId\":\"cm-1\"}");
    /* the history API adds the reader's own messages' status */
    m2.status = "seen";
    TEXT(chat_message_json(&b, &m2),
         "{\"id\":\"1\",\"seq\":1,\"roomId\":\"r\",\"userId\":\"u\",\"firstName\":\"\","
         "\"lastName\":\"Smith\",\"text\":\"x\",\"createdAt\":\"t\",\"clientMsgId\":\"cm-1\","
         "\"status\":\"seen\"}");

    /* relayed without storage: no seq, lastName only when given; the text
     * the gateway's jansson wrote */
    chat_message r = {
        "ab12-1", -1,  "dm_x", "bob", "Bob", NULL, "hello", 5, "2024-01-02T03:04:05.678Z",
        NULL,     NULL};
    TEXT(chat_message_packet(&b, &r),
         "2[\"messageReceived\",{\"id\":\"ab12-1\",\"roomId\":\"dm_x\",\"userId\":\"bob\","
         "\"firstName\":\"Bob\",\"text\":\"hello\",\"createdAt\":\"2024-01-02T03:04:05.678Z\","
         "\"clientMsgId\":null}]");
    json_t *o = json_pack("{ssssssss}", "id", "ab12-1", "roomId", "dm_x", "userId", "bob",
                          "firstName", "Bob");
    json_object_set_new(o, "text", json_string("hello"));
    json_object_set_new(o, "createdAt", json_string("2024-01-02T03:04:05.678Z"));
    json_object_set_new(o, "clientMsgId", json_null());
    CHECK(same_as_jansson("messageReceived", o));
    r.last_name = "Li";
    r.client_msg_id = "c9";
    r.text = "tab\there \"q\" \xc3\xa9";
    r.text_len = strlen(r.text);
    pr_buf_reset(&b);
    CHECK_EQ(chat_message_packet(&b, &r), 0);
    o = json_pack("{ssssssss}", "id", "ab12-1", "roomId", "dm_x", "userId", "bob", "firstName",
                  "Bob");
    json_object_set_new(o, "lastName", json_string("Li"));
    json_object_set_new(o, "text", json_string(r.text));
    json_object_set_new(o, "createdAt", json_string("2024-01-02T03:04:05.678Z"));
    json_object_set_new(o, "clientMsgId", json_string("c9"));
    CHECK(same_as_jansson("messageReceived", o));

    /* all or nothing */
    pr_buf small;
    pr_buf_init(&small, 16);
    pr_buf_append(&small, "abc", 3);
    CHECK(chat_message_packet(&small, &m) != 0);
    CHECK_MEM(small.ptr, small.len, "abc");
    pr_buf_dispose(&small);
}

static void test_status(void)
{
    chat_status s = {"g1", 12, "bob", "delivered", "sent"};
    TEXT(chat_status_packet(&b, &s),
         "2[\"messageStatus\",{\"roomId\":\"g1\",\"seq\":12,\"userId\":\"bob\","
         "\"status\":\"delivered\",\"aggregate\":\"sent\"}]");
}

static void test_events(void)
{
    TEXT(chat_typing_packet(&b, "g1", "bob", "B\"ob"),
         "2[\"showTyping\",{\"roomId\":\"g1\",\"userId\":\"bob\",\"firstName\":\"B\\\"ob\"}]");
    CHECK(same_as_jansson("showTyping", json_pack("{ssssss}", "roomId", "g1", "userId", "bob",
                                                  "firstName", "B\"ob")));
    TEXT(chat_presence_packet(&b, "bob", 1),
         "2[\"presence\",{\"userId\":\"bob\",\"online\":true}]");
    CHECK(same_as_jansson("presence", json_pack("{sssb}", "userId", "bob", "online", 1)));
    TEXT(chat_presence_packet(&b, "bob", 0),
         "2[\"presence\",{\"userId\":\"bob\",\"online\":false}]");
    CHECK(same_as_jansson("presence", json_pack("{sssb}", "userId", "bob", "online", 0)));
    TEXT(chat_room_added_packet(&b, "g_1", "Team", "group"),
         "2[\"roomAdded\",{\"roomId\":\"g_1\",\"name\":\"Team\",\"type\":\"group\"}]");
    CHECK(same_as_jansson(
        "roomAdded", json_pack("{ss ss? ss}", "roomId", "g_1", "name", "Team", "type", "group")));
    TEXT(chat_room_added_packet(&b, "dm_1", NULL, "dm"),
         "2[\"roomAdded\",{\"roomId\":\"dm_1\",\"name\":null,\"type\":\"dm\"}]");
    CHECK(same_as_jansson("roomAdded",
                          json_pack("{ss ss? ss}", "roomId", "dm_1", "name", NULL, "type", "dm")));
    TEXT(chat_room_removed_packet(&b, "g_1"), "2[\"roomRemoved\",{\"roomId\":\"g_1\"}]");
    CHECK(same_as_jansson("roomRemoved", json_pack("{ss}", "roomId", "g_1")));
}

static void test_acks(void)
{
    chat_message m = {"42", 7,   "g1", "alice", "A", NULL, "x", 1, "2024-01-02T03:04:05.678Z",
                      NULL, NULL};
    TEXT(chat_ack_message(&b, &m),
         "{\"id\":\"42\",\"seq\":7,\"roomId\":\"g1\","
         "\"createdAt\":\"2024-01-02T03:04:05.678Z\",\"status\":\"sent\"}");
    m.seq = -1;
    TEXT(chat_ack_message(&b, &m),
         "{\"id\":\"42\",\"roomId\":\"g1\",\"createdAt\":\"2024-01-02T03:04:05.678Z\"}");
    TEXT(chat_ack_room(&b, "dm_abc"), "{\"roomId\":\"dm_abc\"}");
    TEXT(chat_ack_error(&b, CHAT_ERR_NOT_MEMBER), "{\"error\":\"not a member\"}");
    TEXT(chat_ack_error(&b, CHAT_ERR_CMID_REUSED), "{\"error\":\"clientMsgId reused\"}");
    TEXT(chat_ack_error(&b, CHAT_ERR_INVALID), "{\"error\":\"invalid payload\"}");
    TEXT(chat_ack_error(&b, CHAT_ERR_UNAVAILABLE), "{\"error\":\"unavailable\"}");
    TEXT(chat_ack_error(&b, CHAT_ERR_TOO_LONG), "{\"error\":\"text too long\"}");
    TEXT(chat_error_event(&b, "rate limited", "sendMessage"),
         "{\"error\":\"rate limited\",\"event\":\"sendMessage\"}");
    CHECK(!strcmp(CHAT_ACK_OK, "{\"ok\":true}"));
    /* jansson wrote {"ok":true} the same way */
    json_t *ok = json_pack("{sb}", "ok", 1);
    char *s = json_dumps(ok, JSON_COMPACT);
    CHECK(!strcmp(s, CHAT_ACK_OK));
    pr_free(s);
    json_decref(ok);
}

/* The recovery offset the gateway appends to a relayed event. */
static void test_offset(void)
{
    pr_buf out;
    pr_buf_init(&out, 4096);
    uint64_t v[3] = {0, 17, 9007199254740991ull};
    CHECK_EQ(chat_offset_packet(&out, PR_VIEW_LIT("2[\"messageReceived\",{\"seq\":1}]"), v, 3), 0);
    CHECK_MEM(out.ptr, out.len, "2[\"messageReceived\",{\"seq\":1},\"0.17.9007199254740991\"]");

    /* appends after what is there, and nothing when refused */
    pr_buf_reset(&out);
    pr_buf_append(&out, "x", 1);
    uint64_t one = 5;
    CHECK_EQ(chat_offset_packet(&out, PR_VIEW_LIT("2[\"e\"]"), &one, 1), 0);
    CHECK_MEM(out.ptr, out.len, "x2[\"e\",\"5\"]");
    size_t before = out.len;
    CHECK_EQ(chat_offset_packet(&out, PR_VIEW_LIT("2[\"e\",{}"), &one, 1), PR_EINVAL);
    CHECK_EQ(chat_offset_packet(&out, PR_VIEW_LIT("3[\"e\"]"), &one, 1), PR_EINVAL);
    CHECK_EQ(chat_offset_packet(&out, PR_VIEW_LIT("2]"), &one, 1), PR_EINVAL);
    CHECK_EQ(chat_offset_packet(&out, PR_VIEW_LIT(""), &one, 1), PR_EINVAL);
    uint64_t huge = 1ull << 60; /* beyond what JSON numbers hold exactly */
    CHECK(chat_offset_packet(&out, PR_VIEW_LIT("2[\"e\"]"), &huge, 1) != 0);
    CHECK_EQ(out.len, before);

    /* a buffer too small leaves it unchanged */
    pr_buf small;
    pr_buf_init(&small, 8);
    CHECK_EQ(chat_offset_packet(&small, PR_VIEW_LIT("2[\"event\"]"), v, 3), PR_ETOOBIG);
    CHECK_EQ(small.len, 0);
    pr_buf_dispose(&small);
    pr_buf_dispose(&out);
}

int main(void)
{
    pr_alloc_install_jansson();
    pr_buf_init(&b, 1 << 16);
    test_json_str();
    test_message();
    test_status();
    test_events();
    test_acks();
    test_offset();
    pr_buf_dispose(&b);
    T_DONE();
}
