/* Unit tests of proto/chat_vec.c: shard position vectors. */
#include "chat.h"
#include "t.h"

#define V(lit) PR_VIEW_LIT(lit)

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
    const char *bad[] = {"",
                         ".",
                         "1..2",
                         "1.2.",
                         ".1.2",
                         "1.2.x",
                         "01.2.3",
                         "-1.2.3",
                         "+1.2.3",
                         "1.2.9007199254740992",
                         "1.2.99999999999999999999",
                         "1 .2.3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ(chat_vec_decode(pr_view_make(bad[i], strlen(bad[i])), w, 3), PR_EINVAL);
    v[1] = 9007199254740992ull;
    pr_buf_reset(&b);
    CHECK_EQ(chat_vec_encode(&b, v, 3), PR_EINVAL);
    CHECK_EQ(b.len, 0);
    CHECK_EQ(chat_vec_encode(&b, v, 0), PR_EINVAL);
    /* every digit count, 0 and powers of ten (the digits written by hand) */
    uint64_t d[6] = {0, 9, 10, 99, 100, 1234567890123456ull};
    pr_buf_reset(&b);
    CHECK_EQ(chat_vec_encode(&b, d, 6), PR_OK);
    CHECK_MEM(b.ptr, b.len, "0.9.10.99.100.1234567890123456");
    pr_buf_reset(&b);
    CHECK_EQ(chat_vec_encode(&b, d + 5, 1), PR_OK);
    CHECK_MEM(b.ptr, b.len, "1234567890123456");
    pr_buf_dispose(&b);
    pr_buf_init(&b, 4); /* ceiling: refused whole */
    v[1] = 1;
    CHECK_EQ(chat_vec_encode(&b, v, 3), PR_ETOOBIG);
    CHECK_EQ(b.len, 0);
    pr_buf_dispose(&b);
}

int main(void)
{
    test_vec();
    T_DONE();
}
