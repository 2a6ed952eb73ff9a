/* Unit tests of the pure helpers of gateway/app_chat.c: the recovery offset
 * appended to relayed events, and the merging of receipts. */
#include <stdint.h>

#include "gw.h"
#include "t.h"

static void offset_packet(void)
{
    pr_buf out;
    pr_buf_init(&out, 4096);
    uint64_t v[3] = {0, 17, 9007199254740991ull};
    CHECK_EQ(gw__chat_offset_packet(&out, PR_VIEW_LIT("2[\"messageReceived\",{\"seq\":1}]"), v, 3),
             0);
    CHECK_MEM(out.ptr, out.len, "2[\"messageReceived\",{\"seq\":1},\"0.17.9007199254740991\"]");

    /* appends after what is there, and nothing when refused */
    pr_buf_reset(&out);
    pr_buf_append(&out, "x", 1);
    uint64_t one = 5;
    CHECK_EQ(gw__chat_offset_packet(&out, PR_VIEW_LIT("2[\"e\"]"), &one, 1), 0);
    CHECK_MEM(out.ptr, out.len, "x2[\"e\",\"5\"]");
    size_t before = out.len;
    CHECK_EQ(gw__chat_offset_packet(&out, PR_VIEW_LIT("2[\"e\",{}"), &one, 1), PR_EINVAL);
    CHECK_EQ(gw__chat_offset_packet(&out, PR_VIEW_LIT("3[\"e\"]"), &one, 1), PR_EINVAL);
    CHECK_EQ(gw__chat_offset_packet(&out, PR_VIEW_LIT("2]"), &one, 1), PR_EINVAL);
    CHECK_EQ(gw__chat_offset_packet(&out, PR_VIEW_LIT(""), &one, 1), PR_EINVAL);
    uint64_t huge = 1ull << 60; /* beyond what JSON numbers hold exactly */
    CHECK(gw__chat_offset_packet(&out, PR_VIEW_LIT("2[\"e\"]"), &huge, 1) != 0);
    CHECK_EQ(out.len, before);

    /* a buffer too small leaves it unchanged */
    pr_buf small;
    pr_buf_init(&small, 8);
    CHECK_EQ(gw__chat_offset_packet(&small, PR_VIEW_LIT("2[\"event\"]"), v, 3), PR_ETOOBIG);
    CHECK_EQ(small.len, 0);
    pr_buf_dispose(&small);
    pr_buf_dispose(&out);
}

static void receipt_merge(void)
{
    int64_t have = 0;
    gw__chat_receipt_merge(&have, 3);
    CHECK_EQ(have, 3);
    gw__chat_receipt_merge(&have, 2); /* watermarks never move back */
    CHECK_EQ(have, 3);
    gw__chat_receipt_merge(&have, 9);
    CHECK_EQ(have, 9);
    gw__chat_receipt_merge(&have, -1); /* "everything so far" covers any seq */
    CHECK_EQ(have, -1);
    gw__chat_receipt_merge(&have, 100);
    CHECK_EQ(have, -1);
    have = 0;
    gw__chat_receipt_merge(&have, -1);
    CHECK_EQ(have, -1);
}

int main(void)
{
    offset_packet();
    receipt_merge();
    T_DONE();
}
