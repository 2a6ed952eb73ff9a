/* Unit tests of proto/chat_room.c: ingest shards and direct room ids. */
#include "chat.h"
#include "t.h"

#include <stdio.h>

static void test_shard(void)
{
    /* FNV-1a 32 of "a" is 0xe40c292c */
    CHECK_EQ(chat_room_shard("a", 1, 0xffffffffu), 0xe40c292cu % 0xffffffffu);
    CHECK_EQ(chat_room_shard("a", 1, 1), 0);
    CHECK_EQ(chat_room_shard("a", 1, 8), 0xe40c292cu % 8);
    unsigned seen[8] = {0};
    char room[16];
    for (int i = 0; i < 800; i++) {
        int n = snprintf(room, sizeof room, "room%d", i);
        unsigned s = chat_room_shard(room, (size_t)n, 8);
        CHECK(s < 8);
        seen[s]++;
    }
    for (int i = 0; i < 8; i++)
        CHECK(seen[i] > 50); /* spread, roughly */
}

static void test_dm_id(void)
{
    unsigned char k1[32], k2[32];
    char a[CHAT_DM_ID_LEN + 1], b[CHAT_DM_ID_LEN + 1], c[CHAT_DM_ID_LEN + 1];
    chat_dm_key("secret", NULL, k1);
    chat_dm_key(NULL, "jwt", k2);
    chat_dm_room_id(k1, "alice", "bob", a);
    chat_dm_room_id(k1, "bob", "alice", b);
    CHECK(strcmp(a, b) == 0);
    CHECK_EQ(strlen(a), CHAT_DM_ID_LEN);
    CHECK(strncmp(a, "dm_", 3) == 0);
    CHECK(chat_id_valid(a, strlen(a)));
    chat_dm_room_id(k2, "alice", "bob", c);
    CHECK(strcmp(a, c) != 0);
    chat_dm_room_id(k1, "alice", "carol", c);
    CHECK(strcmp(a, c) != 0);
    /* "a\nb" vs "a" + "\nb" style ambiguity cannot arise: ids have no '\n' */
    unsigned char k3[32];
    chat_dm_key("", "", k3);
    chat_dm_key(NULL, NULL, k2);
    CHECK(memcmp(k2, k3, 32) == 0);
}

int main(void)
{
    test_shard();
    test_dm_id();
    T_DONE();
}
