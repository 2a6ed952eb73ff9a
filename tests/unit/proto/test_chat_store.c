/* Unit tests for the storage-contract codecs of proto/chat.h
 * (docs/storage.md): shards, direct room ids, vectors, envelopes. */
#include "t.h"
#include "chat.h"

#include <stdlib.h>

#define V(lit) PR_VIEW_LIT(lit)

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

static void test_vec(void)
{
    uint64_t v[3] = {0, 17, 9007199254740991ull}, w[3];
    pr_buf b;
    pr_buf_init(&b, 1024);
    CHECK_EQ(chat_vec_encode(&b, v, 3), PR_OK);
    CHECK_MEM(b.ptr, b.len, "0.17.9007199254740991");
    CHECK_EQ(chat_vec_decode(pr_buf_view(&b), w, 3), PR_OK);
    CHECK(w[0] == 0 && w[1] == 17 && w[2] == v[2]);
    CHECK_EQ(chat_vec_decode(pr_buf_view(&b), w, 2), PR_EINVAL);
    CHECK_EQ(chat_vec_decode(pr_buf_view(&b), w, 4), PR_EINVAL);
    const char *bad[] = {"", ".", "1..2", "1.2.", ".1.2", "1.2.x", "01.2.3", "-1.2.3", "+1.2.3",
                         "1.2.9007199254740992", "1.2.99999999999999999999", "1 .2.3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ(chat_vec_decode(pr_view_make(bad[i], strlen(bad[i])), w, 3), PR_EINVAL);
    v[1] = 9007199254740992ull;
    pr_buf_reset(&b);
    CHECK_EQ(chat_vec_encode(&b, v, 3), PR_EINVAL);
    CHECK_EQ(b.len, 0);
    CHECK_EQ(chat_vec_encode(&b, v, 0), PR_EINVAL);
    pr_buf_dispose(&b);
    pr_buf_init(&b, 4); /* ceiling: refused whole */
    v[1] = 1;
    CHECK_EQ(chat_vec_encode(&b, v, 3), PR_ETOOBIG);
    CHECK_EQ(b.len, 0);
    pr_buf_dispose(&b);
}

static void test_menv(void)
{
    pr_buf b;
    pr_buf_init(&b, 4096);
    chat_menv h = {V("room1"), 42, 3, 1000, V("alice")}, d;
    pr_view pkt;
    CHECK_EQ(chat_menv_encode(&b, &h, V("2[\"messageReceived\",{}]")), PR_OK);
    CHECK_MEM(b.ptr, b.len, "M1\nroom1\n42\n3\n1000\nalice\n2[\"messageReceived\",{}]");
    CHECK_EQ(chat_env_kind(pr_buf_view(&b)), 'M');
    CHECK_EQ(chat_menv_decode(pr_buf_view(&b), &d, &pkt), PR_OK);
    CHECK(pr_view_eq(d.room, V("room1")) && pr_view_eq(d.sender, V("alice")));
    CHECK(d.seq == 42 && d.shard == 3 && d.pos == 1000);
    CHECK_MEM(pkt.ptr, pkt.len, "2[\"messageReceived\",{}]");
    const char *bad[] = {"M1\nroom\n0\n1\n1\nu\np", "M1\nroom\n1\n256\n1\nu\np",
                         "M1\nroom\n1\n1\n0\nu\np", "M1\nroom\n1\n1\n1\nu\n",
                         "M1\nro om\n1\n1\n1\nu\np", "M1\nroom\n1\n1\n1\n\np",
                         "M2\nroom\n1\n1\n1\nu\np", "M1\nroom\nx\n1\n1\nu\np", "M1\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ(chat_menv_decode(pr_view_make(bad[i], strlen(bad[i])), &d, &pkt), PR_EINVAL);
    pr_buf_reset(&b);
    h.seq = 0;
    CHECK_EQ(chat_menv_encode(&b, &h, V("p")), PR_EINVAL);
    h.seq = 1;
    h.sender = V("a b");
    CHECK_EQ(chat_menv_encode(&b, &h, V("p")), PR_EINVAL);
    CHECK_EQ(b.len, 0);
    pr_buf_dispose(&b);
}

static void test_uenv_jenv(void)
{
    pr_buf b;
    pr_buf_init(&b, 4096);
    pr_view u, p, r;
    char k;
    CHECK_EQ(chat_uenv_encode(&b, V("bob"), V("2[\"x\",{}]")), PR_OK);
    CHECK_EQ(chat_env_kind(pr_buf_view(&b)), 'U');
    CHECK_EQ(chat_uenv_decode(pr_buf_view(&b), &u, &p), PR_OK);
    CHECK(pr_view_eq(u, V("bob")));
    CHECK_MEM(p.ptr, p.len, "2[\"x\",{}]");
    CHECK_EQ(chat_uenv_decode(V("U1\nbob\n"), &u, &p), PR_EINVAL);
    CHECK_EQ(chat_uenv_encode(&b, V(""), V("x")), PR_EINVAL);

    pr_buf_reset(&b);
    CHECK_EQ(chat_jenv_encode(&b, 'K', V("g_1"), V("carol")), PR_OK);
    CHECK_MEM(b.ptr, b.len, "K1\ng_1\ncarol");
    CHECK_EQ(chat_jenv_decode(pr_buf_view(&b), &k, &r, &u), PR_OK);
    CHECK(k == 'K' && pr_view_eq(r, V("g_1")) && pr_view_eq(u, V("carol")));
    CHECK_EQ(chat_jenv_decode(V("J1\ng_1\ncarol\n"), &k, &r, &u), PR_EINVAL);
    CHECK_EQ(chat_jenv_decode(V("U1\ng_1\ncarol"), &k, &r, &u), PR_EINVAL);
    CHECK_EQ(chat_jenv_encode(&b, 'X', V("g"), V("c")), PR_EINVAL);
    pr_buf_dispose(&b);
}

static void test_aenv(void)
{
    pr_buf b;
    pr_buf_init(&b, 4096);
    CHECK_EQ(chat_aenv_begin(&b), PR_OK);
    CHECK_EQ(chat_aenv_add(&b, V("sid1"), 7, V("{\"id\":\"1\"}")), PR_OK);
    CHECK_EQ(chat_aenv_add(&b, V("sid2"), 0, V("{\"error\":\"not a member\"}")), PR_OK);
    CHECK_EQ(chat_aenv_add(&b, V("sid3"), -1, V("{\"error\":\"clientMsgId reused\"}")), PR_OK);
    CHECK_EQ(chat_aenv_add(&b, V("sid2"), -2, V("{}")), PR_EINVAL);
    CHECK_EQ(chat_aenv_add(&b, V("sid2"), 1, V("{\n}")), PR_EINVAL);
    pr_view it, s, j;
    int64_t id;
    CHECK_EQ(chat_aenv_begin_decode(pr_buf_view(&b), &it), PR_OK);
    CHECK_EQ(chat_aenv_next(&it, &s, &id, &j), 1);
    CHECK(pr_view_eq(s, V("sid1")) && id == 7);
    CHECK_MEM(j.ptr, j.len, "{\"id\":\"1\"}");
    CHECK_EQ(chat_aenv_next(&it, &s, &id, &j), 1);
    CHECK(pr_view_eq(s, V("sid2")) && id == 0);
    CHECK_EQ(chat_aenv_next(&it, &s, &id, &j), 1);
    CHECK(pr_view_eq(s, V("sid3")) && id == -1);
    CHECK_MEM(j.ptr, j.len, "{\"error\":\"clientMsgId reused\"}");
    CHECK_EQ(chat_aenv_next(&it, &s, &id, &j), 0);
    it = V("sid\t-2\t{}\n");
    CHECK_EQ(chat_aenv_next(&it, &s, &id, &j), PR_EINVAL);
    it = V("sid\t1\t{}"); /* no final newline */
    CHECK_EQ(chat_aenv_next(&it, &s, &id, &j), PR_EINVAL);
    it = V("sid\tx\t{}\n");
    CHECK_EQ(chat_aenv_next(&it, &s, &id, &j), PR_EINVAL);
    it = V("sid\t1\t\n");
    CHECK_EQ(chat_aenv_next(&it, &s, &id, &j), PR_EINVAL);
    CHECK_EQ(chat_aenv_begin_decode(V("R1\n"), &it), PR_EINVAL);
    pr_buf_dispose(&b);
}

static void test_renv(void)
{
    pr_buf b;
    pr_buf_init(&b, 4096);
    CHECK_EQ(chat_renv_begin(&b, V("req1"), V("ok")), PR_OK);
    chat_replay_item in = {2, 99, 5, V("room"), V("2[\"messageReceived\",{}]")}, out;
    CHECK_EQ(chat_renv_add(&b, &in), PR_OK);
    in.pos = 100;
    in.seq = 6;
    CHECK_EQ(chat_renv_add(&b, &in), PR_OK);
    pr_view r, st, it;
    CHECK_EQ(chat_renv_begin_decode(pr_buf_view(&b), &r, &st, &it), PR_OK);
    CHECK(pr_view_eq(r, V("req1")) && pr_view_eq(st, V("ok")));
    CHECK_EQ(chat_renv_next(&it, &out), 1);
    CHECK(out.shard == 2 && out.pos == 99 && out.seq == 5 && pr_view_eq(out.room, V("room")));
    CHECK_EQ(chat_renv_next(&it, &out), 1);
    CHECK(out.pos == 100 && out.seq == 6);
    CHECK_EQ(chat_renv_next(&it, &out), 0);
    it = V("300\t1\t1\troom\tp\n");
    CHECK_EQ(chat_renv_next(&it, &out), PR_EINVAL);
    it = V("1\t1\t1\troom\t\n");
    CHECK_EQ(chat_renv_next(&it, &out), PR_EINVAL);
    CHECK_EQ(chat_renv_begin_decode(V("R1\nreq\n"), &r, &st, &it), PR_EINVAL);
    /* an empty reply is fine */
    CHECK_EQ(chat_renv_begin_decode(V("R1\nreq\noverflow\n"), &r, &st, &it), PR_OK);
    CHECK_EQ(chat_renv_next(&it, &out), 0);
    pr_buf_dispose(&b);
}

static void test_receipts(void)
{
    pr_buf b;
    pr_buf_init(&b, 4096);
    CHECK_EQ(chat_receipt_add(&b, V("r1"), V("bob"), 12), PR_OK);
    CHECK_EQ(chat_receipt_add(&b, V("r2"), V("bob"), -1), PR_OK);
    CHECK_EQ(chat_receipt_add(&b, V("r2"), V("bob"), -2), PR_EINVAL);
    CHECK_MEM(b.ptr, b.len, "r1\tbob\t12\nr2\tbob\t-1\n");
    pr_view it = pr_buf_view(&b), r, u;
    int64_t s;
    CHECK_EQ(chat_receipt_next(&it, &r, &u, &s), 1);
    CHECK(pr_view_eq(r, V("r1")) && pr_view_eq(u, V("bob")) && s == 12);
    CHECK_EQ(chat_receipt_next(&it, &r, &u, &s), 1);
    CHECK(s == -1);
    CHECK_EQ(chat_receipt_next(&it, &r, &u, &s), 0);
    const char *bad[] = {"r\tu\t-2\n", "r\tu\t1", "r\tu\n", "r u\tu\t1\n", "r\tu\t01\n",
                         "r\t\t1\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        it = pr_view_make(bad[i], strlen(bad[i]));
        CHECK_EQ(chat_receipt_next(&it, &r, &u, &s), PR_EINVAL);
    }
    pr_buf_dispose(&b);
}

static void test_kind(void)
{
    CHECK_EQ(chat_env_kind(V("C1\nx")), 'C');
    CHECK_EQ(chat_env_kind(V("A1\n")), 'A');
    CHECK_EQ(chat_env_kind(V("Z1\n")), 0);
    CHECK_EQ(chat_env_kind(V("A2\n")), 0);
    CHECK_EQ(chat_env_kind(V("A1")), 0);
    CHECK_EQ(chat_env_kind(pr_view_make("\0" "1\n", 3)), 0);
}

int main(void)
{
    test_shard();
    test_dm_id();
    test_vec();
    test_menv();
    test_uenv_jenv();
    test_aenv();
    test_renv();
    test_receipts();
    test_kind();
    T_DONE();
}
