/* Unit tests of gateway/chat/deliver.c: the recovery offset appended to
 * relayed events, and the seq filter every stored message passes before it
 * reaches a socket (on the fake transport, fake.h). */
#include <stdint.h>
#include <string.h>

#include "fake.h"
#include "t.h"

static void offset_packet(void)
{
    pr_buf out;
    pr_buf_init(&out, 4096);
    uint64_t v[3] = {0, 17, 9007199254740991ull};
    CHECK_EQ(gc__offset_packet(&out, PR_VIEW_LIT("2[\"messageReceived\",{\"seq\":1}]"), v, 3),
             0);
    CHECK_MEM(out.ptr, out.len, "2[\"messageReceived\",{\"seq\":1},\"0.17.9007199254740991\"]");

    /* appends after what is there, and nothing when refused */
    pr_buf_reset(&out);
    pr_buf_append(&out, "x", 1);
    uint64_t one = 5;
    CHECK_EQ(gc__offset_packet(&out, PR_VIEW_LIT("2[\"e\"]"), &one, 1), 0);
    CHECK_MEM(out.ptr, out.len, "x2[\"e\",\"5\"]");
    size_t before = out.len;
    CHECK_EQ(gc__offset_packet(&out, PR_VIEW_LIT("2[\"e\",{}"), &one, 1), PR_EINVAL);
    CHECK_EQ(gc__offset_packet(&out, PR_VIEW_LIT("3[\"e\"]"), &one, 1), PR_EINVAL);
    CHECK_EQ(gc__offset_packet(&out, PR_VIEW_LIT("2]"), &one, 1), PR_EINVAL);
    CHECK_EQ(gc__offset_packet(&out, PR_VIEW_LIT(""), &one, 1), PR_EINVAL);
    uint64_t huge = 1ull << 60; /* beyond what JSON numbers hold exactly */
    CHECK(gc__offset_packet(&out, PR_VIEW_LIT("2[\"e\"]"), &huge, 1) != 0);
    CHECK_EQ(out.len, before);

    /* a buffer too small leaves it unchanged */
    pr_buf small;
    pr_buf_init(&small, 8);
    CHECK_EQ(gc__offset_packet(&small, PR_VIEW_LIT("2[\"event\"]"), v, 3), PR_ETOOBIG);
    CHECK_EQ(small.len, 0);
    pr_buf_dispose(&small);
    pr_buf_dispose(&out);
}

/* One stored message: written once, never below what was written, and
 * with a delivered receipt unless it is the user's own. */
static void seq_filter(void)
{
    fake_chat t;
    fake_chat_start(&t, NULL);
    gw_socket *s = fake_socket_new(t.w, "SIDF");
    gc_user u = {.e = {.key = "fay", .len = 3}};
    gc_room room = {.e = {.key = "r1", .len = 2}};
    gc_sock cs = {.sock = s, .user = &u};
    gc_member m = {.room = &room, .cs = &cs};
    gw_blob *b = gw_blob_sio(PR_VIEW_LIT("2[\"m\",1]"));
    CHECK_EQ(gc__write_stored(t.cw, &cs, &m, b, 4, 0), 1);
    CHECK_EQ(m.last_seq, 4);
    CHECK_EQ(gc__write_stored(t.cw, &cs, &m, b, 4, 0), 0); /* published again */
    CHECK_EQ(gc__write_stored(t.cw, &cs, &m, b, 2, 0), 0); /* older: a sync overlapping */
    CHECK_EQ(m.last_seq, 4);
    CHECK_EQ(fake_out_count(s, "2[\"m\",1]"), 1);
    CHECK_EQ(t.cw->receipts.n, 1); /* delivered up to 4 */
    CHECK_EQ(gc__write_stored(t.cw, &cs, &m, b, 9, 1), 1); /* own: no receipt of its own */
    CHECK_EQ(m.last_seq, 9);
    CHECK_EQ(fake_out_count(s, "2[\"m\",1]"), 2);
    gc_entry *e = gc__map_get(&t.cw->receipts, "r1\tfay", 6);
    CHECK(e != NULL);
    if (e)
        CHECK_EQ(((gc_receipt *)e)->delivered, 4);
    CHECK_EQ(b->refs, 1); /* the socket took no reference of its own here */
    gw_blob_unref(b);
    fake_socket_free(s);
    fake_chat_stop(&t);
    CHECK_EQ(fake_blobs_live, 0);
}

int main(void)
{
    offset_packet();
    seq_filter();
    T_DONE();
}
