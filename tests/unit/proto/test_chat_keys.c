/* Unit tests of proto/chat_keys.c: every Redis key and channel name, byte
 * for byte (deployed Redis data is named so), and the values both programs
 * read. */
#include "chat.h"
#include "t.h"

#define K(expr, lit)                                                                               \
    do {                                                                                           \
        chat_key t_k = (expr);                                                                     \
        CHECK_MEM(t_k.s, t_k.len, lit);                                                            \
        CHECK_EQ(strlen(t_k.s), t_k.len);                                                          \
    } while (0)

static void test_names(void)
{
    K(chat_key_room_members("g_abc"), "{r:g_abc}:members");
    K(chat_key_user_rooms("alice"), "{u:alice}:rooms");
    K(chat_key_ingest(0), "{i:0}:in");
    K(chat_key_ingest(255), "{i:255}:in");
    K(chat_key_lease(7), "{i:7}:lease");
    K(chat_key_session("Pid-_1"), "{c:Pid-_1}:sess");
    CHECK(!strcmp(CHAT_KEY_RPC, "{st}:rpc"));
    CHECK(!strcmp(CHAT_KEY_POS, "{st}:pos"));
    CHECK(!strcmp(CHAT_KEY_CACHE, "{st}:cache"));
    CHECK(!strcmp(CHAT_KEY_REPLICAS, "{st}:replicas"));
    CHECK(!strcmp(CHAT_GROUP, "storage"));
    CHECK(!strcmp(CHAT_CONSUMER_OWNER, "owner"));

    K(chat_chan_room("g_abc"), "room:{g_abc}");
    K(chat_chan_user("alice"), "user:{alice}");
    K(chat_chan_gateway("node-1", 3), "gw:{node-1.3}");
    K(chat_chan_storage("host-12-00af"), "st:{host-12-00af}");
    CHECK(!strcmp(CHAT_CHAN_ALL, "chat:all"));
    CHECK(!strcmp(CHAT_ROOM_ALL, "all"));

    /* presence: FNV-1a 64 of the id modulo 16 (the gateways' shards) */
    CHECK_EQ(CHAT_PRESENCE_SHARDS, 16);
    CHECK_EQ(chat_presence_shard("alice"), 5);
    CHECK_EQ(chat_presence_shard("bob"), 2);
    CHECK_EQ(chat_presence_shard("u1"), 9);
    K(chat_key_presence_on("alice"), "{p5}:on:alice");
    K(chat_key_presence_on("u1"), "{p9}:on:u1");
    K(chat_key_presence_exp(15), "{p15}:exp");
    K(chat_key_presence_on_prefix(0), "{p0}:on:");
    K(chat_presence_member("node-1", 2), "node-1/2");

    /* the longest id fits; anything longer is the empty name */
    char id[CHAT_ID_MAX + 1], big[CHAT_KEY_MAX + 2];
    memset(id, 'x', CHAT_ID_MAX);
    id[CHAT_ID_MAX] = '\0';
    CHECK_EQ(chat_key_room_members(id).len, CHAT_ID_MAX + 12);
    CHECK_EQ(chat_chan_room(id).len, CHAT_ID_MAX + 7);
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    chat_key k = chat_key_room_members(big);
    CHECK_EQ(k.len, 0);
    CHECK_EQ(k.s[0], '\0');
    k = chat_chan_room("r1");
    pr_view v = chat_key_view(&k);
    CHECK_MEM(v.ptr, v.len, "room:{r1}");
}

static void test_ingest_shard(void)
{
    unsigned s = 99;
    CHECK_EQ(chat_key_ingest_shard(PR_VIEW_LIT("{i:0}:in"), 8, &s), 0);
    CHECK_EQ(s, 0);
    CHECK_EQ(chat_key_ingest_shard(PR_VIEW_LIT("{i:7}:in"), 8, &s), 0);
    CHECK_EQ(s, 7);
    CHECK_EQ(chat_key_ingest_shard(PR_VIEW_LIT("{i:255}:in"), 256, &s), 0);
    CHECK_EQ(s, 255);
    for (unsigned i = 0; i < 256; i++) {
        chat_key k = chat_key_ingest(i);
        CHECK(chat_key_ingest_shard(chat_key_view(&k), 256, &s) == 0 && s == i);
    }
    const char *bad[] = {"{i:8}:in",  "{i:07}:in", "{i:+7}:in", "{i:}:in",     "{i:7}:lease",
                         "{i:7}:inx", "{i:a}:in",  "i:7:in",    "{i:1000}:in", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ(chat_key_ingest_shard(pr_view_make(bad[i], strlen(bad[i])), 8, &s), PR_EINVAL);
}

static void test_values(void)
{
    pr_buf b;
    pr_buf_init(&b, 256);
    CHECK_EQ(chat_cache_mark_encode(&b, 1700000000123ull, "rep-1"), 0);
    CHECK_MEM(b.ptr, b.len, "1700000000123 rep-1");
    uint64_t at = 0;
    CHECK_EQ(chat_cache_mark_decode(pr_buf_view(&b), &at), 0);
    CHECK_EQ(at, 1700000000123ll);
    const char *bad[] = {"", "1700000000123", " rep", "17x0 rep", "12345678901234567890 rep"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ(chat_cache_mark_decode(pr_view_make(bad[i], strlen(bad[i])), &at), PR_EINVAL);
    CHECK_EQ(chat_cache_mark_decode(PR_VIEW_LIT("1234567890123456789 r"), &at), 0);

    pr_buf_reset(&b);
    uint64_t vec[3] = {0, 17, 3};
    CHECK_EQ(chat_session_encode(&b, PR_VIEW_LIT("alice"), vec, 3), 0);
    CHECK_MEM(b.ptr, b.len, "alice\n0.17.3");
    pr_view user, v;
    CHECK_EQ(chat_session_decode(pr_buf_view(&b), &user, &v), 0);
    CHECK_MEM(user.ptr, user.len, "alice");
    CHECK_MEM(v.ptr, v.len, "0.17.3");
    CHECK_EQ(chat_session_decode(PR_VIEW_LIT("alice"), &user, &v), PR_EINVAL);
    /* all or nothing */
    pr_buf small;
    pr_buf_init(&small, 8);
    CHECK(chat_session_encode(&small, PR_VIEW_LIT("alice"), vec, 3) != 0);
    CHECK_EQ(small.len, 0);
    uint64_t huge = 1ull << 60;
    CHECK_EQ(chat_session_encode(&b, PR_VIEW_LIT("alice"), &huge, 1), PR_EINVAL);
    CHECK_EQ(b.len, 12);
    pr_buf_dispose(&small);
    pr_buf_dispose(&b);
}

/* {st}:pos as HGETALL returns it: one pair at a time. */
static void test_positions(void)
{
    unsigned shard = 99;
    uint64_t pos = 0;
    CHECK_EQ(chat_pos_decode(PR_VIEW_LIT("3"), PR_VIEW_LIT("1234567890123456789"), 4, &shard, &pos),
             0);
    CHECK_EQ(shard, 3);
    CHECK_EQ(pos, 1234567890123456789ull);
    CHECK_EQ(chat_pos_decode(PR_VIEW_LIT("0"), PR_VIEW_LIT("0"), 1, &shard, &pos), 0);
    CHECK_EQ(shard, 0);
    CHECK_EQ(pos, 0);
    const char *bad[][2] = {{"4", "1"},  {"", "1"},   {"1", ""},   {"-1", "1"},
                            {"1", "+1"}, {"1", "1x"}, {"1 ", "1"}, {"1", "12345678901234567890"}};
    shard = 99;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ(chat_pos_decode(pr_view_make(bad[i][0], strlen(bad[i][0])),
                                 pr_view_make(bad[i][1], strlen(bad[i][1])), 4, &shard, &pos),
                 PR_EINVAL);
    CHECK_EQ(shard, 99); /* untouched when refused */
}

int main(void)
{
    test_names();
    test_ingest_shard();
    test_values();
    test_positions();
    T_DONE();
}
