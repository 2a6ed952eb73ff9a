/* Unit tests of gateway/chat/app.c: the event dispatch table. An event is
 * found by name; what its row needs (storage, targetUserId, roomId, text)
 * is checked before its handler runs, with the answers the handlers used to
 * give themselves (on the fake transport, fake.h). */
#include <stdio.h>
#include <string.h>

#include "fake.h"
#include "t.h"

static sio_packet pkt;

/* Sends event with payload (JSON text) and ack id 1 on s. */
static void event(gw_socket *s, const char *name, const char *payload)
{
    memset(&pkt, 0, sizeof pkt);
    pkt.id = 1;
    pkt.data = json_pack("[so]", name, json_loads(payload, 0, NULL));
    gw_app_chat.on_event(s, name, &pkt);
    json_decref(pkt.data);
}

/* 1 when the last thing written to s is the ack "ack 1 [{"error":ERROR}]". */
static int answered(gw_socket *s, const char *error)
{
    char want[128];
    snprintf(want, sizeof want, "ack 1 [{\"error\":\"%s\"}]\n", error);
    size_t n = strlen(want);
    int ok = s->out.len >= n && !memcmp(s->out.ptr + s->out.len - n, want, n);
    if (!ok)
        fprintf(stderr, "wanted %s got: %.*s\n", want, (int)s->out.len, s->out.ptr);
    pr_buf_reset(&s->out);
    return ok;
}

static void without_storage(void)
{
    fake_chat t;
    const char *flags[] = {"--storage", "off", NULL};
    fake_chat_start(&t, flags);
    int rc;
    gw_socket *s = fake_chat_connect(&t, "SIDA", "amy", &rc);
    CHECK_EQ(rc, 0); /* no session to start: accepted at once */

    event(s, "dance", "{\"userId\":\"amy\"}");
    CHECK(answered(s, "unknown event"));
    event(s, "markSeen", "{\"userId\":\"amy\",\"roomId\":\"r1\"}"); /* needs storage */
    CHECK(answered(s, "unknown event"));
    event(s, "joinChat", "{\"userId\":\"amy\"}"); /* needs targetUserId */
    CHECK(answered(s, "invalid payload"));
    event(s, "leaveChat", "{\"userId\":\"amy\",\"roomId\":\"r1\"}");
    CHECK(answered(s, "invalid payload"));
    event(s, "joinRoom", "{\"userId\":\"amy\",\"targetUserId\":\"bea\"}"); /* needs roomId */
    CHECK(answered(s, "invalid payload"));
    event(s, "leaveRoom", "{\"userId\":\"amy\",\"targetUserId\":\"bea\"}");
    CHECK(answered(s, "invalid payload"));
    event(s, "sendMessage", "{\"userId\":\"amy\",\"roomId\":\"r1\",\"text\":\"\"}"); /* text */
    CHECK(answered(s, "invalid payload"));
    event(s, "sendMessage", "{\"userId\":\"amy\",\"roomId\":\"r1\"}");
    CHECK(answered(s, "invalid payload"));
    /* the row's needs met: the handler answers for itself */
    event(s, "sendMessage", "{\"userId\":\"amy\",\"roomId\":\"r1\",\"text\":\"hi\"}");
    CHECK(answered(s, "not a member"));
    event(s, "typing", "{\"userId\":\"amy\",\"roomId\":\"r1\"}");
    CHECK(answered(s, "not a member"));
    t.r->ready = 0;
    event(s, "sendMessage", "{\"userId\":\"amy\",\"roomId\":\"r1\",\"text\":\"hi\"}");
    CHECK(answered(s, "unavailable"));
    t.r->ready = 1;
    /* leaveChat with its target: ok */
    event(s, "leaveChat", "{\"userId\":\"amy\",\"targetUserId\":\"bea\"}");
    CHECK_EQ(fake_out_count(s, "ack 1 [{\"ok\":true}]"), 1);
    fake_chat_disconnect(&t, s);
    fake_chat_stop(&t);
}

static void with_storage(void)
{
    fake_chat t;
    fake_chat_start(&t, NULL);
    int rc;
    gw_socket *s = fake_chat_connect(&t, "SIDB", "bea", &rc);
    CHECK_EQ(rc, GW_CONNECT_PENDING);
    s->pending = 0; /* answered or not, the dispatch is the same */
    event(s, "markSeen", "{\"userId\":\"bea\"}"); /* known now; needs roomId */
    CHECK(answered(s, "invalid payload"));
    event(s, "markSeen", "{\"userId\":\"bea\",\"roomId\":\"r9\"}");
    CHECK(answered(s, "not a member"));
    fake_chat_disconnect(&t, s);
    fake_chat_stop(&t);
}

/* The answers are proto's objects (chat_packets.h), written as text: an
 * error without an ack callback is a chatError event naming the event, an
 * ack carries its object as the one argument. */
static void answers_as_text(void)
{
    fake_chat t;
    const char *flags[] = {"--storage", "off", NULL};
    fake_chat_start(&t, flags);
    int rc;
    gw_socket *s = fake_chat_connect(&t, "SIDC", "cai", &rc);
    CHECK_EQ(rc, 0);
    memset(&pkt, 0, sizeof pkt);
    pkt.id = -1; /* no callback */
    pkt.data = json_pack("[s{ss}]", "da\"nce", "userId", "cai");
    gw_app_chat.on_event(s, "da\"nce", &pkt);
    json_decref(pkt.data);
    CHECK_EQ(fake_out_count(
                 s, "2[\"chatError\",{\"error\":\"unknown event\",\"event\":\"da\\\"nce\"}]\n"),
             1);
    CHECK_EQ(fake_out_count(s, "ack "), 0);
    pr_buf_reset(&s->out);
    /* typing: its ack, and the showTyping packet published to the room */
    event(s, "typing", "{\"userId\":\"cai\",\"targetUserId\":\"dan\"}");
    CHECK_EQ(fake_out_count(s, "ack 1 [{\"ok\":true}]\n"), 1);
    CHECK(fake_redis_find(t.r, 0, "\n2[\"showTyping\",{\"roomId\":\"dm_") >= 0);
    fake_chat_disconnect(&t, s);
    fake_chat_stop(&t);
}

int main(void)
{
    without_storage();
    with_storage();
    answers_as_text();
    CHECK_EQ(fake_blobs_live, 0);
    T_DONE();
}
