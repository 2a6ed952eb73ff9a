/* Unit tests of gateway/chat/deliver.c: the seq filter every stored message
 * passes before it reaches a socket (on the fake transport, fake.h). The
 * recovery offset appended to relayed events: tests/unit/proto/
 * test_chat_packets.c. */
#include <stdint.h>
#include <string.h>

#include "fake.h"
#include "t.h"

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

/* A1: storage's ack text goes to the client unparsed (small or large);
 * a non-object is dropped; an ack nobody waits for (-1) becomes a
 * chatError only when it is an error; acks of gone sockets vanish. */
static void acks(void)
{
    fake_chat t;
    fake_chat_start(&t, NULL);
    gw_socket *s = fake_socket_new(t.w, "SIDA");
    char big[700];
    memset(big, 'x', sizeof big);
    pr_buf msg;
    pr_buf_init(&msg, 4096);
    pr_buf_appendf(&msg,
                   "A1\nSIDA\t7\t{\"id\":\"m1\",\"seq\":3}\nSIDA\t8\tnot json\n"
                   "SIDA\t9\t{\"half\"\nSIDX\t10\t{}\n"
                   "SIDA\t-1\t{\"error\":\"not a member\"}\nSIDA\t-1\t{\"id\":\"m2\"}\n"
                   "SIDA\t11\t{\"id\":\"%.*s\"}\n",
                   (int)sizeof big, big);
    gc__on_redis_message(t.r, PR_VIEW_LIT("gw:{n.0}"), pr_buf_view(&msg), t.cw);
    CHECK_EQ(fake_out_count(s, "ack 7 [{\"id\":\"m1\",\"seq\":3}]\n"), 1);
    CHECK_EQ(fake_out_count(s, "ack 8"), 0);
    CHECK_EQ(fake_out_count(s, "ack 9"), 0);
    CHECK_EQ(fake_out_count(s, "not a member"), 1);
    CHECK_EQ(fake_out_count(s, "m2"), 0);
    CHECK_EQ(fake_out_count(s, "ack 11 [{\"id\":\"xxxxxxxx"), 1);
    CHECK_EQ(fake_out_count(s, "xxx\"}]\n"), 1);
    CHECK_EQ(fake_out_count(s, "ack "), 2);
    pr_buf_dispose(&msg);
    fake_socket_free(s);
    fake_chat_stop(&t);
    CHECK_EQ(fake_blobs_live, 0);
}

int main(void)
{
    seq_filter();
    acks();
    T_DONE();
}
