/* Unit tests of proto/chat_args.c: identifiers and event payloads. */
#include "chat.h"
#include "t.h"
#include "t_json.h"

#include <stdlib.h>

#define S(lit) (lit), sizeof(lit) - 1

static void test_id_valid(void)
{
    char id[CHAT_ID_MAX + 1];
    memset(id, 'x', sizeof id);

    CHECK(chat_id_valid(S("a")));
    CHECK(chat_id_valid(S("!~room:42/general-1_\"'")));
    CHECK(chat_id_valid(id, CHAT_ID_MAX));
    CHECK(!chat_id_valid(id, CHAT_ID_MAX + 1));
    CHECK(!chat_id_valid(S("")));
    CHECK(!chat_id_valid(NULL, 0));
    CHECK(!chat_id_valid(S("a b")));
    CHECK(!chat_id_valid(S("a\tb")));
    CHECK(!chat_id_valid(S("ab\n")));
    CHECK(!chat_id_valid(S("a\0b")));
    CHECK(!chat_id_valid(S("\x7f")));
    CHECK(!chat_id_valid(S("caf\xc3\xa9")));
    /* Only len bytes are looked at. */
    CHECK(chat_id_valid("ab cd", 2));
}

static void test_name_valid(void)
{
    char name[CHAT_NAME_MAX + 1];
    memset(name, 'n', sizeof name);

    CHECK(chat_name_valid(S("")));
    CHECK(chat_name_valid(S("Ada Lovelace")));
    CHECK(chat_name_valid(S("Zo\xc3\xab \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80")));
    CHECK(chat_name_valid(S("\xc2\xa0\xc2\xbf"))); /* U+00A0, U+00BF: not controls */
    CHECK(chat_name_valid(name, CHAT_NAME_MAX));
    CHECK(!chat_name_valid(name, CHAT_NAME_MAX + 1));
    CHECK(!chat_name_valid(S("a\nb")));
    CHECK(!chat_name_valid(S("a\rb")));
    CHECK(!chat_name_valid(S("a\0b")));
    CHECK(!chat_name_valid(S("\x1b[31m")));
    CHECK(!chat_name_valid(S("\x7f")));
    CHECK(!chat_name_valid(S("\xc2\x80")));  /* U+0080 */
    CHECK(!chat_name_valid(S("a\xc2\x85"))); /* NEL */
    CHECK(!chat_name_valid(S("\xc2\x9f")));  /* U+009F */
    CHECK(!chat_name_valid(S("\xff")));
    CHECK(!chat_name_valid(S("\xc3")));         /* truncated */
    CHECK(!chat_name_valid(S("\xc0\xaf")));     /* overlong */
    CHECK(!chat_name_valid(S("\xed\xa0\x80"))); /* surrogate */
}

/* chat_parse_args on JSON text, with max_text 16. The strings in *a are
 * borrowed from the object, which is kept until the next call. */
static json_t *parsed;

static int parse(const char *text, chat_args *a)
{
    json_decref(parsed);
    parsed = js(text);
    return chat_parse_args(parsed, 16, a);
}

static int parse_rc(const char *text)
{
    chat_args a;
    return parse(text, &a);
}

static void test_parse_fields(void)
{
    chat_args a;
    json_t *j = js("{\"targetUserId\":\"u2\",\"roomId\":\"r1\",\"text\":\"hi\\nthere\","
                   "\"clientMsgId\":\"m-1\",\"userId\":\"u1\",\"firstName\":\"Zo\\u00eb\","
                   "\"lastName\":\"O'Neil\",\"seq\":7,\"extra\":{\"ignored\":[1,2]}}");
    CHECK_EQ(chat_parse_args(j, 16, &a), PR_OK);
    CHECK(strcmp(a.target_user_id, "u2") == 0);
    CHECK(strcmp(a.room_id, "r1") == 0);
    CHECK_MEM(a.text, a.text_len, "hi\nthere");
    CHECK(strcmp(a.client_msg_id, "m-1") == 0);
    CHECK(strcmp(a.user_id, "u1") == 0);
    CHECK(strcmp(a.first_name, "Zo\xc3\xab") == 0);
    CHECK(strcmp(a.last_name, "O'Neil") == 0);
    CHECK_EQ(a.seq, 7);
    /* Strings are borrowed from the object. */
    CHECK(a.room_id == json_string_value(json_object_get(j, "roomId")));
    CHECK(a.text == json_string_value(json_object_get(j, "text")));
    json_decref(j);

    /* Everything is optional. */
    CHECK_EQ(parse("{}", &a), PR_OK);
    CHECK(a.target_user_id == NULL && a.room_id == NULL && a.text == NULL && a.text_len == 0);
    CHECK(a.client_msg_id == NULL && a.user_id == NULL);
    CHECK(a.first_name == NULL && a.last_name == NULL);
    CHECK_EQ(a.seq, -1);

    /* null is absent */
    CHECK_EQ(parse("{\"roomId\":null,\"text\":null,\"userId\":null,\"seq\":null}", &a), PR_OK);
    CHECK(a.room_id == NULL && a.text == NULL && a.user_id == NULL);
    CHECK_EQ(a.seq, -1);
}

static void test_parse_text(void)
{
    chat_args a;

    /* "text" wins over "msg", which is otherwise its alias. */
    CHECK_EQ(parse("{\"msg\":\"old\"}", &a), PR_OK);
    CHECK_MEM(a.text, a.text_len, "old");
    CHECK_EQ(parse("{\"text\":\"new\",\"msg\":\"old\"}", &a), PR_OK);
    CHECK_MEM(a.text, a.text_len, "new");
    CHECK_EQ(parse("{\"msg\":\"old\",\"text\":\"new\"}", &a), PR_OK);
    CHECK_MEM(a.text, a.text_len, "new");
    CHECK_EQ(parse("{\"text\":\"new\",\"msg\":5}", &a), PR_OK);
    CHECK_EQ(parse("{\"text\":null,\"msg\":\"old\"}", &a), PR_OK);
    CHECK_MEM(a.text, a.text_len, "old");

    /* Empty text is the handler's business. */
    CHECK_EQ(parse("{\"text\":\"\"}", &a), PR_OK);
    CHECK(a.text != NULL);
    CHECK_EQ(a.text_len, 0);

    /* The limit is in bytes: 16 ASCII, or 8 two-byte characters. */
    CHECK_EQ(parse("{\"text\":\"0123456789abcdef\"}", &a), PR_OK);
    CHECK_EQ(a.text_len, 16);
    CHECK_EQ(parse_rc("{\"text\":\"0123456789abcdefg\"}"), PR_ETOOBIG);
    CHECK_EQ(parse_rc("{\"msg\":\"0123456789abcdefg\"}"), PR_ETOOBIG);
    CHECK_EQ(parse_rc("{\"text\":\"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\"}"),
             PR_OK);
    CHECK_EQ(parse_rc("{\"text\":\"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9!\"}"),
             PR_ETOOBIG);

    CHECK_EQ(parse("{\"text\":\"tab\\there\\r\\n\"}", &a), PR_OK);
    CHECK_EQ(parse_rc("{\"text\":\"nul\\u0000\"}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"text\":5}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"text\":[\"hi\"]}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"msg\":{}}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"text\":true}"), PR_EINVAL);
}

static void test_parse_ids(void)
{
    chat_args a;
    char big[300];

    CHECK_EQ(parse_rc("{\"roomId\":\"\"}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"roomId\":\"a b\"}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"roomId\":\"a\\u0000\"}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"roomId\":\"caf\\u00e9\"}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"roomId\":42}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"targetUserId\":\"x\\ny\"}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"targetUserId\":[]}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"clientMsgId\":\" \"}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"clientMsgId\":1}"), PR_EINVAL);
    snprintf(big, sizeof big, "{\"roomId\":\"%0128d\"}", 0);
    CHECK_EQ(parse_rc(big), PR_OK);
    snprintf(big, sizeof big, "{\"roomId\":\"%0129d\"}", 0);
    CHECK_EQ(parse_rc(big), PR_EINVAL);

    /* userId: a string id or an integer. */
    CHECK_EQ(parse("{\"userId\":42}", &a), PR_OK);
    CHECK(a.user_id == a.user_id_buf);
    CHECK(strcmp(a.user_id, "42") == 0);
    CHECK_EQ(parse("{\"userId\":-9223372036854775808}", &a), PR_OK);
    CHECK(strcmp(a.user_id, "-9223372036854775808") == 0);
    CHECK_EQ(parse("{\"userId\":9223372036854775807}", &a), PR_OK);
    CHECK(strcmp(a.user_id, "9223372036854775807") == 0);
    CHECK_EQ(parse("{\"userId\":\"42\"}", &a), PR_OK);
    CHECK(a.user_id != a.user_id_buf);
    CHECK(strcmp(a.user_id, "42") == 0);
    CHECK_EQ(parse_rc("{\"userId\":4.2}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"userId\":true}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"userId\":\"\"}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"userId\":{\"id\":1}}"), PR_EINVAL);
}

static void test_parse_names_seq(void)
{
    chat_args a;
    char big[300];

    CHECK_EQ(parse("{\"firstName\":\"\",\"lastName\":\"van der Berg\"}", &a), PR_OK);
    CHECK(strcmp(a.first_name, "") == 0);
    CHECK(strcmp(a.last_name, "van der Berg") == 0);
    CHECK_EQ(parse_rc("{\"firstName\":\"a\\nb\"}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"lastName\":\"\\u001b[2J\"}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"lastName\":\"\\u0085\"}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"firstName\":\"\\u0000\"}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"firstName\":1}"), PR_EINVAL);
    snprintf(big, sizeof big, "{\"firstName\":\"%0128d\"}", 0);
    CHECK_EQ(parse_rc(big), PR_OK);
    snprintf(big, sizeof big, "{\"firstName\":\"%0129d\"}", 0);
    CHECK_EQ(parse_rc(big), PR_EINVAL); /* a long name is invalid, not "too big" */

    CHECK_EQ(parse("{\"seq\":0}", &a), PR_OK);
    CHECK_EQ(a.seq, 0);
    CHECK_EQ(parse("{\"seq\":9007199254740993}", &a), PR_OK);
    CHECK_EQ(a.seq, 9007199254740993LL);
    CHECK_EQ(parse_rc("{\"seq\":-1}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"seq\":1.0}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"seq\":\"5\"}"), PR_EINVAL);
    CHECK_EQ(parse_rc("{\"seq\":false}"), PR_EINVAL);
}

static void test_parse_shape(void)
{
    chat_args a;
    memset(&a, 0x55, sizeof a);
    CHECK_EQ(chat_parse_args(NULL, 16, &a), PR_EINVAL);
    CHECK_EQ(a.seq, -1);
    CHECK(a.room_id == NULL);
    CHECK_EQ(parse_rc("[]"), PR_EINVAL);
    CHECK_EQ(parse_rc("[{\"roomId\":\"r\"}]"), PR_EINVAL);
    CHECK_EQ(parse_rc("\"r1\""), PR_EINVAL);
    CHECK_EQ(parse_rc("null"), PR_EINVAL);
    CHECK_EQ(parse_rc("42"), PR_EINVAL);
    /* One bad field spoils the rest. */
    CHECK_EQ(parse_rc("{\"roomId\":\"r1\",\"text\":\"ok\",\"seq\":-3}"), PR_EINVAL);
    /* max_text 0: only empty text. */
    json_t *j = js("{\"text\":\"x\"}");
    CHECK_EQ(chat_parse_args(j, 0, &a), PR_ETOOBIG);
    json_decref(j);
}

int main(void)
{
    pr_alloc_install_jansson();
    test_id_valid();
    test_name_valid();
    test_parse_fields();
    test_parse_text();
    test_parse_ids();
    test_parse_names_seq();
    test_parse_shape();
    T_DONE();
}
