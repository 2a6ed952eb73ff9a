/* Unit tests of gateway/chat/receipts.c: receipts are coalesced per (room,
 * user), only the highest of each kind kept ("everything so far", -1, wins),
 * and flushed as one XADD per ingest shard; a delivery on long-polling
 * counts once the client has read it (on the fake transport, fake.h). */
#include <stdio.h>
#include <string.h>

#include "fake.h"
#include "t.h"

static void merge(void)
{
    int64_t have = 0;
    gc__receipt_merge(&have, 3);
    CHECK_EQ(have, 3);
    gc__receipt_merge(&have, 2); /* watermarks never move back */
    CHECK_EQ(have, 3);
    gc__receipt_merge(&have, 9);
    CHECK_EQ(have, 9);
    gc__receipt_merge(&have, -1); /* "everything so far" covers any seq */
    CHECK_EQ(have, -1);
    gc__receipt_merge(&have, 100);
    CHECK_EQ(have, -1);
    have = 0;
    gc__receipt_merge(&have, -1);
    CHECK_EQ(have, -1);
}

static const gc_receipt *find(gc_worker *cw, const char *key)
{
    return (const gc_receipt *)gc__map_get(&cw->receipts, key, strlen(key));
}

static void coalescing(void)
{
    fake_chat t;
    const char *flags[] = {"--receipt-interval", "250", NULL};
    fake_chat_start(&t, flags);
    gc_worker *cw = t.cw;
    gc_user ann = {.e = {.key = "ann", .len = 3}}, bob = {.e = {.key = "bob", .len = 3}};

    CHECK(!evtimer_pending(cw->receipt_timer, NULL));
    gc__receipt_add(cw, "r1", &ann, 'd', 3);
    CHECK(evtimer_pending(cw->receipt_timer, NULL)); /* the flush is armed */
    gc__receipt_add(cw, "r1", &ann, 'd', 5);
    gc__receipt_add(cw, "r1", &ann, 'd', 4);
    gc__receipt_add(cw, "r1", &ann, 'v', 2);
    gc__receipt_add(cw, "r1", &ann, 'v', 1);
    gc__receipt_add(cw, "r1", &bob, 'd', 2);
    gc__receipt_add(cw, "r2", &ann, 'v', -1);
    gc__receipt_add(cw, "r2", &ann, 'v', 8);
    CHECK_EQ(cw->receipts.n, 3); /* one entry per (room, user) */
    const gc_receipt *r = find(cw, "r1\tann");
    CHECK(r && r->delivered == 5 && r->seen == 2);
    r = find(cw, "r1\tbob");
    CHECK(r && r->delivered == 2 && r->seen == 0);
    r = find(cw, "r2\tann");
    CHECK(r && r->delivered == 0 && r->seen == -1);

    /* nothing without storage, nor for a socket without a user */
    cw->storage = 0;
    gc__receipt_add(cw, "r3", &ann, 'd', 1);
    cw->storage = 1;
    gc__receipt_add(cw, "r3", NULL, 'd', 1);
    CHECK_EQ(cw->receipts.n, 3);

    /* Redis down: kept (watermarks only move forward) and tried again */
    unsigned sent = fake_redis_count(t.r, " k R ");
    event_del(cw->receipt_timer);
    t.r->ready = 0;
    gc__receipt_flush(-1, 0, cw);
    CHECK_EQ(fake_redis_count(t.r, " k R "), sent);
    CHECK_EQ(cw->receipts.n, 3);
    CHECK(evtimer_pending(cw->receipt_timer, NULL));

    /* back: one XADD per shard, every line once */
    t.r->ready = 1;
    event_del(cw->receipt_timer);
    gc__receipt_flush(-1, 0, cw);
    unsigned s1 = chat_room_shard("r1", 2, cw->nshards), s2 = chat_room_shard("r2", 2, cw->nshards);
    CHECK_EQ(fake_redis_count(t.r, " k R ") - sent, s1 == s2 ? 1u : 2u);
    char key[32];
    snprintf(key, sizeof key, "XADD {i:%u}:in * k R d ", s1);
    int i = fake_redis_find(t.r, 0, key);
    CHECK(i >= 0);
    if (i >= 0) {
        const char *x = t.r->cmds[i].text, *v = strstr(x, " v ");
        const char *d5 = strstr(x, "r1\tann\t5\n"), *d2 = strstr(x, "r1\tbob\t2\n");
        const char *v2 = strstr(x, "r1\tann\t2\n");
        CHECK(v && d5 && d2 && v2 && d5 < v && d2 < v && v2 > v);
        CHECK(!strstr(x, "\t3\n") && !strstr(x, "\t4\n") && !strstr(x, "\t1\n"));
    }
    CHECK_EQ(fake_redis_count(t.r, "r2\tann\t-1\n"), 1);
    CHECK_EQ(fake_redis_count(t.r, "r2\tann\t8\n"), 0);
    CHECK_EQ(cw->receipts.n, 0); /* emptied */
    fake_chat_stop(&t);
}

static void once_read(void)
{
    fake_chat t;
    fake_chat_start(&t, NULL);
    gc_worker *cw = t.cw;
    gw_socket *s = fake_socket_new(t.w, "SIDP");
    gc_user gil = {.e = {.key = "gil", .len = 3}};
    gc_room room = {.e = {.key = "r4", .len = 2}};
    gc_sock cs = {.sock = s, .user = &gil};
    gc_member m = {.room = &room, .cs = &cs, .open = 1};
    s->data = &cs;
    /* long-polling: queued until the client proves it read them */
    s->mark = 5;
    gc__deliver_receipts(cw, &cs, &m, 10);
    s->mark = 6;
    gc__deliver_receipts(cw, &cs, &m, 11);
    CHECK_EQ(cw->receipts.n, 0);
    gc__consumed(s, 4);
    CHECK_EQ(cw->receipts.n, 0);
    gc__consumed(s, 5);
    const gc_receipt *r = find(cw, "r4\tgil");
    CHECK(r && r->delivered == 10 && r->seen == 10); /* open: seen too */
    gc__consumed(s, 6);
    CHECK(r && r->delivered == 11 && r->seen == 11);
    CHECK(cs.unread == NULL && cs.unread_last == NULL);
    /* WebSocket (mark 0): at once; a closed room is delivered, not seen */
    s->mark = 0;
    m.open = 0;
    gc__deliver_receipts(cw, &cs, &m, 12);
    CHECK(r && r->delivered == 12 && r->seen == 11);
    /* a socket that goes with unread deliveries reports nothing for them */
    s->mark = 9;
    gc__deliver_receipts(cw, &cs, &m, 13);
    gc__free_unread(&cs);
    gc__consumed(s, 9);
    CHECK(r && r->delivered == 12);
    fake_socket_free(s);
    fake_chat_stop(&t);
}

int main(void)
{
    merge();
    coalescing();
    once_read();
    T_DONE();
}
