/* Unit tests of proto/chat_env.c: the envelopes on Redis channels. */
#include "chat.h"
#include "t.h"

#include <stdlib.h>

#define V(lit) PR_VIEW_LIT(lit)

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
    const char *bad[] = {
        "M1\nroom\n0\n1\n1\nu\np", "M1\nroom\n1\n256\n1\nu\np", "M1\nroom\n1\n1\n0\nu\np",
        "M1\nroom\n1\n1\n1\nu\n",  "M1\nro om\n1\n1\n1\nu\np",  "M1\nroom\n1\n1\n1\n\np",
        "M2\nroom\n1\n1\n1\nu\np", "M1\nroom\nx\n1\n1\nu\np",   "M1\n"};
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
    pr_view it;
    CHECK_EQ(chat_uenv_encode(&b, V("bob"), V("2[\"x\",{}]")), PR_OK);
    /* one packet: the bytes of the single-packet U1 of earlier versions */
    CHECK_MEM(b.ptr, b.len, "U1\nbob\n2[\"x\",{}]");
    CHECK_EQ(chat_env_kind(pr_buf_view(&b)), 'U');
    CHECK_EQ(chat_uenv_begin_decode(pr_buf_view(&b), &u, &it), PR_OK);
    CHECK(pr_view_eq(u, V("bob")));
    CHECK_EQ(chat_uenv_next(&it, &p), 1);
    CHECK_MEM(p.ptr, p.len, "2[\"x\",{}]");
    CHECK_EQ(chat_uenv_next(&it, &p), 0);
    CHECK_EQ(chat_uenv_begin_decode(V("U1\nbob\n"), &u, &it), PR_EINVAL); /* no packet */
    CHECK_EQ(chat_uenv_begin_decode(V("U1\nbob"), &u, &it), PR_EINVAL);
    CHECK_EQ(chat_uenv_begin_decode(V("A1\nbob\nx"), &u, &it), PR_EINVAL);
    CHECK_EQ(chat_uenv_encode(&b, V(""), V("x")), PR_EINVAL);
    pr_buf_reset(&b);
    CHECK_EQ(chat_uenv_encode(&b, V("bob"), V("a\nb")), PR_EINVAL); /* a packet is a line */
    CHECK_EQ(chat_uenv_encode(&b, V("bob"), V("")), PR_EINVAL);
    CHECK_EQ(b.len, 0);

    /* several packets, in order */
    CHECK_EQ(chat_uenv_begin(&b, V("bob")), PR_OK);
    CHECK_EQ(chat_uenv_add(&b, V("42[\"d\"]")), PR_OK);
    CHECK_EQ(chat_uenv_add(&b, V("42[\"s\"]")), PR_OK);
    CHECK_EQ(chat_uenv_add(&b, V("x\ny")), PR_EINVAL);
    CHECK_EQ(chat_uenv_add(&b, V("")), PR_EINVAL);
    CHECK_EQ(chat_uenv_add(&b, V("3")), PR_OK);
    CHECK_MEM(b.ptr, b.len, "U1\nbob\n42[\"d\"]\n42[\"s\"]\n3");
    CHECK_EQ(chat_uenv_begin_decode(pr_buf_view(&b), &u, &it), PR_OK);
    CHECK(pr_view_eq(u, V("bob")));
    CHECK_EQ(chat_uenv_next(&it, &p), 1);
    CHECK_MEM(p.ptr, p.len, "42[\"d\"]");
    CHECK_EQ(chat_uenv_next(&it, &p), 1);
    CHECK_MEM(p.ptr, p.len, "42[\"s\"]");
    CHECK_EQ(chat_uenv_next(&it, &p), 1);
    CHECK_MEM(p.ptr, p.len, "3");
    CHECK_EQ(chat_uenv_next(&it, &p), 0);
    CHECK_EQ(chat_uenv_begin(&b, V("a b")), PR_EINVAL);
    /* an empty packet, last or not, is refused: decoding and encoding
     * again gives the same bytes */
    CHECK_EQ(chat_uenv_begin_decode(V("U1\nbob\nx\n"), &u, &it), PR_OK);
    CHECK_EQ(chat_uenv_next(&it, &p), PR_EINVAL);
    CHECK_EQ(chat_uenv_begin_decode(V("U1\nbob\nx\n\ny"), &u, &it), PR_OK);
    CHECK_EQ(chat_uenv_next(&it, &p), 1);
    CHECK_EQ(chat_uenv_next(&it, &p), PR_EINVAL);

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

static void test_kind(void)
{
    CHECK_EQ(chat_env_kind(V("C1\nx")), 'C');
    CHECK_EQ(chat_env_kind(V("A1\n")), 'A');
    CHECK_EQ(chat_env_kind(V("Z1\n")), 0);
    CHECK_EQ(chat_env_kind(V("A2\n")), 0);
    CHECK_EQ(chat_env_kind(V("A1")), 0);
    CHECK_EQ(chat_env_kind(pr_view_make("\0"
                                        "1\n",
                                        3)),
             0);
}

int main(void)
{
    test_env_round_trip();
    test_env_encode_refuses();
    test_env_decode_refuses();
    test_menv();
    test_uenv_jenv();
    test_aenv();
    test_renv();
    test_kind();
    T_DONE();
}
