/* Unit tests for proto/chat.h. */
#include "t.h"
#include "chat.h"
#include "t_json.h"

#include <stdlib.h>

#define V(lit) PR_VIEW_LIT(lit)
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

/* ---- envelope ---- */

static void env_round_trip(const char *room, const char *sock, const char *user, pr_view packet,
                           pr_view want)
{
    chat_env h = {pr_view_make(room, strlen(room)), pr_view_make(sock, strlen(sock)),
                  pr_view_make(user, strlen(user))};
    pr_buf b;
    pr_buf_init(&b, 4096);
    CHECK_EQ(chat_env_encode(&b, &h, packet), PR_OK);
    CHECK(pr_view_eq(pr_buf_view(&b), want));

    /* Decode from an exact-size copy, so ASan sees any read past the end. */
    char *copy = malloc(b.len);
    memcpy(copy, b.ptr, b.len);
    chat_env d;
    pr_view p;
    CHECK_EQ(chat_env_decode(pr_view_make(copy, b.len), &d, &p), PR_OK);
    CHECK(pr_view_eq(d.room, h.room));
    CHECK(pr_view_eq(d.except_socket, h.except_socket));
    CHECK(pr_view_eq(d.except_user, h.except_user));
    CHECK(pr_view_eq(p, packet));
    CHECK(p.ptr == copy + b.len - packet.len);
    free(copy);
    pr_buf_dispose(&b);
}

static void test_env_round_trip(void)
{
    env_round_trip("room-1", "", "", V("2[\"messageReceived\",{\"text\":\"hi\"}]"),
                   V("C1\nroom-1\n\n\n2[\"messageReceived\",{\"text\":\"hi\"}]"));
    env_round_trip("r", "sid:abc", "user-7", V("2[\"x\"]"), V("C1\nr\nsid:abc\nuser-7\n2[\"x\"]"));
    env_round_trip("r", "", "u", V("x"), V("C1\nr\n\nu\nx"));
    /* The packet is opaque: newlines, NULs and a nested envelope are fine. */
    env_round_trip("r", "s", "", V("a\nb\n\0C1\nr\n\n\nz\n"),
                   V("C1\nr\ns\n\na\nb\n\0C1\nr\n\n\nz\n"));

    char id[CHAT_ID_MAX + 1], want[3 * CHAT_ID_MAX + 16];
    memset(id, '~', CHAT_ID_MAX);
    id[CHAT_ID_MAX] = '\0';
    int n = snprintf(want, sizeof want, "C1\n%s\n%s\n%s\nP", id, id, id);
    env_round_trip(id, id, id, V("P"), pr_view_make(want, (size_t)n));
}

static void test_env_encode_refuses(void)
{
    pr_buf b;
    pr_buf_init(&b, 4096);
    pr_buf_append(&b, "keep", 4);
    char id[CHAT_ID_MAX + 1];
    memset(id, 'i', sizeof id);

    chat_env h = {V("r"), V(""), V("")};
    CHECK_EQ(chat_env_encode(&b, &h, V("")), PR_EINVAL);
    h.room = V("");
    CHECK_EQ(chat_env_encode(&b, &h, V("p")), PR_EINVAL);
    h.room = V("a b");
    CHECK_EQ(chat_env_encode(&b, &h, V("p")), PR_EINVAL);
    h.room = V("r\n");
    CHECK_EQ(chat_env_encode(&b, &h, V("p")), PR_EINVAL);
    h.room = pr_view_make(id, CHAT_ID_MAX + 1);
    CHECK_EQ(chat_env_encode(&b, &h, V("p")), PR_EINVAL);
    h.room = V("r");
    h.except_socket = V("s\n");
    CHECK_EQ(chat_env_encode(&b, &h, V("p")), PR_EINVAL);
    h.except_socket = V("");
    h.except_user = V("\xc3\xa9");
    CHECK_EQ(chat_env_encode(&b, &h, V("p")), PR_EINVAL);
    CHECK_MEM(b.ptr, b.len, "keep");
    pr_buf_dispose(&b);

    /* Over the ceiling by one byte, then exactly at it. */
    pr_buf_init(&b, 13);
    pr_buf_append(&b, "k", 1);
    h.except_user = V("");
    CHECK_EQ(chat_env_encode(&b, &h, V("pppppp")), PR_ETOOBIG);
    CHECK_MEM(b.ptr, b.len, "k");
    CHECK_EQ(chat_env_encode(&b, &h, V("ppppp")), PR_OK);
    CHECK_MEM(b.ptr, b.len, "kC1\nr\n\n\nppppp");
    pr_buf_dispose(&b);
}

static int decode_rc(pr_view in)
{
    chat_env h;
    pr_view p;
    /* Exact-size copy: ASan catches a read past in.len. */
    char *copy = malloc(in.len ? in.len : 1);
    if (in.len)
        memcpy(copy, in.ptr, in.len);
    int rc = chat_env_decode(pr_view_make(copy, in.len), &h, &p);
    if (rc != PR_OK && (h.room.len || h.except_socket.len || h.except_user.len || p.len))
        rc = 99; /* a failure leaves empty views */
    free(copy);
    return rc;
}

static void test_env_decode_refuses(void)
{
    CHECK_EQ(decode_rc(V("C1\nr\n\n\np")), PR_OK);
    CHECK_EQ(decode_rc(V("")), PR_EINVAL);
    CHECK_EQ(decode_rc(V("C")), PR_EINVAL);
    CHECK_EQ(decode_rc(V("C1")), PR_EINVAL);
    CHECK_EQ(decode_rc(V("C1\n")), PR_EINVAL);
    CHECK_EQ(decode_rc(V("C2\nr\n\n\np")), PR_EINVAL);
    CHECK_EQ(decode_rc(V("c1\nr\n\n\np")), PR_EINVAL);
    CHECK_EQ(decode_rc(V("C1\r\nr\n\n\np")), PR_EINVAL);
    CHECK_EQ(decode_rc(V("C1\nr")), PR_EINVAL);
    CHECK_EQ(decode_rc(V("C1\nr\n")), PR_EINVAL);
    CHECK_EQ(decode_rc(V("C1\nr\n\n")), PR_EINVAL);
    CHECK_EQ(decode_rc(V("C1\nr\n\n\n")), PR_EINVAL); /* empty packet */
    CHECK_EQ(decode_rc(V("C1\n\n\n\np")), PR_EINVAL); /* empty room */
    CHECK_EQ(decode_rc(V("C1\nr r\n\n\np")), PR_EINVAL);
    CHECK_EQ(decode_rc(V("C1\nr\r\n\n\np")), PR_EINVAL);
    CHECK_EQ(decode_rc(V("C1\nr\ns s\n\np")), PR_EINVAL);
    CHECK_EQ(decode_rc(V("C1\nr\n\nu\tv\np")), PR_EINVAL);
    CHECK_EQ(decode_rc(V("C1\nr\n\n\0\np")), PR_EINVAL);
    CHECK_EQ(decode_rc(V("C1\nr\n\xff\n\np")), PR_EINVAL);

    /* An id one byte too long, in each position. */
    char in[3 * CHAT_ID_MAX + 32], id[CHAT_ID_MAX + 2];
    memset(id, 'i', CHAT_ID_MAX + 1);
    id[CHAT_ID_MAX + 1] = '\0';
    int n = snprintf(in, sizeof in, "C1\n%s\n\n\np", id);
    CHECK_EQ(decode_rc(pr_view_make(in, (size_t)n)), PR_EINVAL);
    n = snprintf(in, sizeof in, "C1\nr\n%s\n\np", id);
    CHECK_EQ(decode_rc(pr_view_make(in, (size_t)n)), PR_EINVAL);
    n = snprintf(in, sizeof in, "C1\nr\n\n%s\np", id);
    CHECK_EQ(decode_rc(pr_view_make(in, (size_t)n)), PR_EINVAL);
    id[CHAT_ID_MAX] = '\0';
    n = snprintf(in, sizeof in, "C1\n%s\n%s\n%s\np", id, id, id);
    CHECK_EQ(decode_rc(pr_view_make(in, (size_t)n)), PR_OK);

    /* The view ends where the text goes on: nothing past len is read. */
    const char *full = "C1\nr\n\n\npacket";
    CHECK_EQ(decode_rc(pr_view_make(full, 7)), PR_EINVAL);
    chat_env h;
    pr_view p;
    CHECK_EQ(chat_env_decode(pr_view_make(full, 9), &h, &p), PR_OK);
    CHECK_MEM(p.ptr, p.len, "pa");
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
    test_env_round_trip();
    test_env_encode_refuses();
    test_env_decode_refuses();
    json_decref(parsed);
    T_DONE();
}
