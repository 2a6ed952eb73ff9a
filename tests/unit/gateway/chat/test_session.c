/* Unit tests of gateway/chat/session.c: the phase machine of a storage
 * socket. Every change goes through gc__set_phase, which starts a new
 * generation (older callbacks and replies are stale) and settles the wait
 * queues: the replay timeout, the held messages, the opens' receipts and the
 * join acks that wait for the catch-up. Driven through the real app
 * callbacks on the fake transport (fake.h). */
#include <stdio.h>
#include <string.h>

#include "fake.h"
#include "t.h"

static fake_chat t;

/* M1 for room, seq, on shard 0 at pos, sent by sender. */
static void stored(const char *room, int64_t seq, int64_t pos, const char *sender)
{
    char packet[128];
    snprintf(packet, sizeof packet, "2[\"messageReceived\",{\"seq\":%lld}]", (long long)seq);
    chat_menv h = {pr_view_make(room, strlen(room)), seq, 0, pos,
                   pr_view_make(sender, strlen(sender))};
    pr_buf env;
    pr_buf_init(&env, 4096);
    CHECK_EQ(chat_menv_encode(&env, &h, pr_view_make(packet, strlen(packet))), 0);
    gc__on_redis_message(t.r, PR_VIEW_LIT("room:{x}"), pr_buf_view(&env), t.cw);
    pr_buf_dispose(&env);
}

/* R1 answering request req with one item of room at seq (or none). */
static void replay_reply(const char *req, const char *room, int64_t seq)
{
    pr_buf env;
    pr_buf_init(&env, 4096);
    CHECK_EQ(chat_renv_begin(&env, pr_view_make(req, strlen(req)), PR_VIEW_LIT("ok")), 0);
    if (room) {
        char packet[128];
        snprintf(packet, sizeof packet, "2[\"messageReceived\",{\"seq\":%lld}]", (long long)seq);
        chat_replay_item it = {0, seq, seq, pr_view_make(room, strlen(room)),
                               pr_view_make(packet, strlen(packet))};
        CHECK_EQ(chat_renv_add(&env, &it), 0);
    }
    gc__on_redis_message(t.r, PR_VIEW_LIT("gw:{x}"), pr_buf_view(&env), t.cw);
    pr_buf_dispose(&env);
}

/* Connects sid as user with rooms r1 and r2, and answers its start: the
 * socket is accepted and its sync asked (GC_CATCHUP). */
static gw_socket *catching_up(const char *sid, const char *user)
{
    int rc;
    unsigned from = t.r->ncmds;
    gw_socket *s = fake_chat_connect(&t, sid, user, &rc);
    CHECK_EQ(rc, GW_CONNECT_PENDING);
    gc_sock *cs = s->data;
    CHECK_EQ(cs->phase, GC_STARTING);
    redisReply *one = fake_int(1), *nil = fake_nil();
    const char *rooms[] = {"r1", "r2", NULL};
    redisReply *list = fake_strings(rooms);
    fake_redis_reply(t.r, fake_redis_find(t.r, from, "EVALSHA"), one); /* presence */
    fake_redis_reply(t.r, fake_redis_find(t.r, from, "GET {st}:cache"), nil);
    char key[64];
    snprintf(key, sizeof key, "SMEMBERS {u:%s}:rooms", user);
    fake_redis_reply(t.r, fake_redis_find(t.r, from, key), list);
    fake_reply_free(one);
    fake_reply_free(nil);
    fake_reply_free(list);
    CHECK_EQ(cs->phase, GC_STARTING); /* until every channel is confirmed */
    CHECK_EQ(s->accepted, 0);
    fake_redis_confirm(t.r, 1);
    CHECK_EQ(s->accepted, 1);
    CHECK_EQ(cs->phase, GC_CATCHUP);
    return s;
}

/* A join ack of cs waiting for the catch-up (as join.c queues it). */
static gc_join *due_join(gc_sock *cs, int64_t ack_id, const char *room)
{
    gc_join *j = pr_calloc(1, sizeof *j);
    j->cw = t.cw;
    j->ack_id = ack_id;
    snprintf(j->sid, sizeof j->sid, "%s", cs->sid);
    snprintf(j->room, sizeof j->room, "%s", room);
    cs->acks_due = j;
    return j;
}

static void generation_and_timeout(void)
{
    gw_socket *s = catching_up("SID1", "alice");
    gc_sock *cs = s->data;
    /* the sync request names the socket's current generation */
    char req[64], field[80];
    snprintf(req, sizeof req, "SID1.%u", cs->gen);
    snprintf(field, sizeof field, " i %s ", req);
    CHECK(fake_redis_find(t.r, 0, "XADD {st}:rpc * k sync") >= 0);
    CHECK(fake_redis_find(t.r, 0, field) >= 0);
    CHECK_EQ(cs->gen, t.cw->gen);
    /* CATCHUP arms the replay timeout */
    CHECK(gw_th_queued(&cs->wait));
    CHECK_EQ(cs->wait.deadline_ms, t.w->now_ms + t.cfg.replay_timeout_ms);

    /* a ref taken now goes stale with the next phase */
    gc_ref *old = gc__ref_new(t.cw, cs);
    gc_ref *same = gc__ref_new(t.cw, cs);
    CHECK(gc__ref_take(same) == cs);
    uint32_t gen = cs->gen;
    gc__set_phase(t.cw, cs, GC_LIVE);
    CHECK_EQ(cs->gen, gen + 1);
    CHECK(gc__ref_take(old) == NULL);
    CHECK(!gw_th_queued(&cs->wait)); /* LIVE disarms it */

    /* a reply to the old request is late: ignored */
    replay_reply(req, "r1", 3);
    CHECK_EQ(fake_out_count(s, "\"seq\":3"), 0);

    /* a request that Redis refuses changes nothing */
    t.r->fail_next = 1;
    gen = cs->gen;
    CHECK(gc__request(t.cw, cs, "sync", NULL) != 0);
    CHECK_EQ(cs->phase, GC_LIVE);
    CHECK_EQ(cs->gen, gen);

    /* a sync that never comes: LIVE at the timeout */
    CHECK_EQ(gc__request(t.cw, cs, "sync", NULL), 0);
    CHECK_EQ(cs->phase, GC_CATCHUP);
    t.w->now_ms += t.cfg.replay_timeout_ms - 1;
    fake_th_fire(&t.cw->wait_th);
    CHECK_EQ(cs->phase, GC_CATCHUP);
    t.w->now_ms += 1;
    fake_th_fire(&t.cw->wait_th);
    CHECK_EQ(cs->phase, GC_LIVE);
    fake_chat_disconnect(&t, s);
}

static void held_messages(void)
{
    gw_socket *s = catching_up("SID2", "bob");
    gc_sock *cs = s->data;
    unsigned blobs = fake_blobs_live;
    /* live messages wait while the sync is in flight */
    stored("r1", 5, 50, "carol");
    stored("r1", 6, 51, "carol");
    stored("r2", 1, 52, "bob"); /* its own */
    CHECK_EQ(cs->nheld, 3);
    CHECK_EQ(fake_out_count(s, "messageReceived"), 0);
    CHECK_EQ(fake_blobs_live, blobs + 3);

    /* the sync brings seq 5; the held 5 is not written twice */
    char req[64];
    snprintf(req, sizeof req, "SID2.%u", cs->gen);
    uint64_t deliveries = t.w->counters[GC_COUNT_DELIVERIES];
    replay_reply(req, "r1", 5);
    CHECK_EQ(cs->phase, GC_LIVE);
    CHECK_EQ(cs->nheld, 0);
    CHECK(cs->held == NULL);
    CHECK_EQ(fake_out_count(s, "{\"seq\":5}"), 1);
    CHECK_EQ(fake_out_count(s, "{\"seq\":6}"), 1);
    CHECK_EQ(fake_out_count(s, "{\"seq\":1}"), 1);
    /* in the order they came, after the sync's */
    const char *p5 = strstr(s->out.ptr, "{\"seq\":5}"), *p6 = strstr(s->out.ptr, "{\"seq\":6}");
    CHECK(p5 && p6 && p5 < p6);
    CHECK_EQ(fake_blobs_live, blobs); /* the held blobs were released */
    /* the sync's item (1) and two held ones written (6 and the own 1) */
    CHECK_EQ(t.w->counters[GC_COUNT_DELIVERIES] - deliveries, 3);
    /* delivered receipts: seq 6 of r1 (the own message has none) */
    CHECK_EQ(t.cw->receipts.n, 1);

    /* live now: written at once, and never twice */
    stored("r1", 7, 53, "carol");
    stored("r1", 7, 53, "carol");
    stored("r1", 4, 49, "carol");
    CHECK_EQ(fake_out_count(s, "{\"seq\":7}"), 1);
    CHECK_EQ(fake_out_count(s, "{\"seq\":4}"), 0);
    fake_chat_disconnect(&t, s);
}

static void waiting_and_gone(void)
{
    gw_socket *s = catching_up("SID3", "dave");
    gc_sock *cs = s->data;
    unsigned blobs = fake_blobs_live;
    stored("r1", 9, 60, "carol");
    CHECK_EQ(cs->nheld, 1);
    /* Redis failed the start: the socket waits, its held messages stay */
    CHECK(!evtimer_pending(t.cw->retry_timer, NULL));
    gc__set_phase(t.cw, cs, GC_WAITING);
    CHECK(evtimer_pending(t.cw->retry_timer, NULL));
    CHECK(!gw_th_queued(&cs->wait));
    CHECK_EQ(cs->nheld, 1);
    stored("r1", 10, 61, "carol");
    CHECK_EQ(cs->nheld, 2);
    CHECK_EQ(fake_out_count(s, "messageReceived"), 0);
    /* STARTING again keeps them too */
    gc__set_phase(t.cw, cs, GC_STARTING);
    CHECK_EQ(cs->nheld, 2);
    CHECK(!gw_th_queued(&cs->wait));
    /* a join ack that waits for the catch-up */
    due_join(cs, 4, "r1");
    /* the socket goes: nothing is written, everything is released */
    gc__set_phase(t.cw, cs, GC_GONE);
    CHECK_EQ(cs->nheld, 0);
    CHECK(cs->acks_due == NULL);
    CHECK_EQ(fake_blobs_live, blobs);
    CHECK_EQ(fake_out_count(s, "messageReceived"), 0);
    CHECK_EQ(fake_out_count(s, "ack 4"), 0);
    fake_chat_disconnect(&t, s);
    event_del(t.cw->retry_timer);
}

static void due_opens_and_acks(void)
{
    gw_socket *s = catching_up("SID4", "erin");
    gc_sock *cs = s->data;
    gc_member *m = gc__membership(cs, "r2");
    CHECK(m != NULL);
    /* opened while the sync is in flight: its receipt and ack wait */
    gc__room_open(t.cw, cs, m);
    CHECK_EQ(m->open_due, 1);
    gc_join *j = due_join(cs, 7, "r2");
    unsigned opens = fake_redis_count(t.r, "v r2\terin\t-1");
    /* a room joined meanwhile owes a sync: going live asks it first */
    cs->resync = 1;
    gc__set_phase(t.cw, cs, GC_LIVE);
    CHECK_EQ(cs->phase, GC_CATCHUP);
    CHECK_EQ(cs->resync, 0);
    CHECK(gw_th_queued(&cs->wait));
    CHECK_EQ(fake_redis_count(t.r, "v r2\terin\t-1"), opens);
    CHECK_EQ(fake_out_count(s, "ack 7"), 0);
    CHECK(cs->acks_due == j);
    /* that sync answered: the open's receipt goes, then the ack */
    char req[64];
    snprintf(req, sizeof req, "SID4.%u", cs->gen);
    replay_reply(req, NULL, 0);
    CHECK_EQ(cs->phase, GC_LIVE);
    CHECK_EQ(m->open_due, 0);
    CHECK_EQ(fake_redis_count(t.r, "v r2\terin\t-1"), opens + 1);
    CHECK_EQ(fake_out_count(s, "ack 7 [{\"roomId\":\"r2\"}]"), 1);
    CHECK(cs->acks_due == NULL);
    fake_chat_disconnect(&t, s);
}

int main(void)
{
    fake_chat_start(&t, NULL);
    generation_and_timeout();
    held_messages();
    waiting_and_gone();
    due_opens_and_acks();
    fake_chat_stop(&t);
    CHECK_EQ(fake_blobs_live, 0);
    T_DONE();
}
