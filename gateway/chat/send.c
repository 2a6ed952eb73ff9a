/*
 * send.c - sendMessage: without storage a messageReceived is published to
 * the room at once; with storage it is XADDed to the room's ingest shard and
 * storage acks it (A1) and publishes it (M1) after COMMIT. Either way only
 * once the room's subscription is confirmed, so the sender gets its own.
 */
#include <stdio.h>
#include <string.h>

#include "gc.h"

/* ---- sendMessage without storage: relayed at once ---- */

typedef struct {
    gc_worker *cw;
    int64_t ack_id;
    char sid[GW_SID_LEN + 1];
    char id[48];
    char room[CHAT_ID_MAX + 1];
    char created[48];
    pr_buf pkt; /* the encoded messageReceived */
} send_ctx;

static void send_ctx_free(send_ctx *x)
{
    pr_buf_dispose(&x->pkt);
    pr_free(x);
}

/* sendMessage could not reach Redis: tell the socket, if it is still there. */
static void send_unavailable(gc_worker *cw, const char *sid, int64_t ack_id)
{
    gw_socket *sock = gw_socket_find(cw->w, sid, "/");
    if (sock)
        gc__reply_error(sock, "sendMessage", ack_id, "unavailable");
}

static void send_failed(send_ctx *x)
{
    send_unavailable(x->cw, x->sid, x->ack_id);
    send_ctx_free(x);
}

static void published_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    send_ctx *x = arg;
    if (!rep || rep->type != REDIS_REPLY_INTEGER) {
        send_failed(x);
        return;
    }
    gw_socket *sock = gw_socket_find(x->cw->w, x->sid, "/");
    if (sock)
        gc__reply_ok(sock, x->ack_id,
                 json_pack("{ssssss}", "id", x->id, "roomId", x->room, "createdAt", x->created));
    send_ctx_free(x);
}

/* The sender's own socket is subscribed to the room: publish. */
static void send_subscribed(cm_redis *r, int ok, void *arg)
{
    (void)r;
    send_ctx *x = arg;
    if (!ok || gc__publish(x->cw, x->room, NULL, pr_buf_view(&x->pkt), published_cb, x) != 0)
        send_failed(x);
}


/* ---- sendMessage with storage: into the room's ingest stream ---- */

typedef struct {
    gc_worker *cw;
    int64_t ack_id;            /* -1: the client wants no ack */
    char sid[GW_SID_LEN + 1];
    char room[CHAT_ID_MAX + 1];
    char user[CHAT_ID_MAX + 1];
    char first[CHAT_NAME_MAX + 1];
    char last[CHAT_NAME_MAX + 1];
    char cmid[CHAT_ID_MAX + 1]; /* "" none */
    char peer[CHAT_ID_MAX + 1]; /* "" none */
    uint8_t has_last;
    size_t text_len;
    char text[];
} store_ctx;

static void store_failed(store_ctx *x)
{
    send_unavailable(x->cw, x->sid, x->ack_id);
    pr_free(x);
}

static void store_xadd_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    store_ctx *x = arg;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        store_failed(x);
        return;
    }
    pr_free(x); /* the ack comes from storage after COMMIT (A1) */
}

static void store_subscribed(cm_redis *r, int ok, void *arg)
{
    (void)r;
    store_ctx *x = arg;
    gc_worker *cw = x->cw;
    if (!ok) {
        store_failed(x);
        return;
    }
    char key[32], ack[24];
    gc_cmd c = {.n = 0};
    gc__cmd_ingest(&c, key, chat_room_shard(x->room, strlen(x->room), cw->nshards), "m");
    gc__cmd_adds(&c, "r");
    gc__cmd_adds(&c, x->room);
    gc__cmd_adds(&c, "u");
    gc__cmd_adds(&c, x->user);
    gc__cmd_adds(&c, "n");
    gc__cmd_adds(&c, x->first);
    if (x->has_last) {
        gc__cmd_adds(&c, "l");
        gc__cmd_adds(&c, x->last);
    }
    gc__cmd_adds(&c, "x");
    gc__cmd_add(&c, x->text, x->text_len);
    if (x->cmid[0]) {
        gc__cmd_adds(&c, "c");
        gc__cmd_adds(&c, x->cmid);
    }
    if (x->peer[0]) {
        gc__cmd_adds(&c, "p");
        gc__cmd_adds(&c, x->peer);
    }
    /* the reply address even without a callback: an error (not a member,
     * clientMsgId reused) then comes back as a chatError, never silence */
    gc__cmd_adds(&c, "g");
    gc__cmd_adds(&c, cw->reply_channel);
    gc__cmd_adds(&c, "s");
    gc__cmd_adds(&c, x->sid);
    if (x->ack_id >= 0) {
        snprintf(ack, sizeof ack, "%lld", (long long)x->ack_id);
        gc__cmd_adds(&c, "a");
        gc__cmd_adds(&c, ack);
    }
    if (gc__cmd_send(cw, &c, store_xadd_cb, x) != 0)
        store_failed(x);
}

static void send_relayed(const gc_req *q, const char *room)
{
    gc_worker *cw = q->cw;
    send_ctx *x = pr_calloc(1, sizeof *x);
    x->cw = cw;
    x->ack_id = q->ack_id;
    snprintf(x->sid, sizeof x->sid, "%s", q->cs->sid);
    snprintf(x->id, sizeof x->id, "%s%llx", cw->msg_prefix, (unsigned long long)++cw->msg_counter);
    snprintf(x->room, sizeof x->room, "%s", room);
    gc__iso_time(x->created, gc__wall_ms());

    json_t *msg = json_pack("{ssssssss}", "id", x->id, "roomId", room, "userId", q->uid,
                            "firstName", q->fname);
    if (q->a->last_name)
        json_object_set_new(msg, "lastName", json_string(q->a->last_name));
    json_object_set_new(msg, "text", json_stringn(q->a->text, q->a->text_len));
    json_object_set_new(msg, "createdAt", json_string(x->created));
    json_object_set_new(msg, "clientMsgId",
                        q->a->client_msg_id ? json_string(q->a->client_msg_id) : json_null());
    pr_buf_init(&x->pkt, cw->cfg->max_payload);
    int rc = gc__encode_event(&x->pkt, "messageReceived", msg);
    json_decref(msg);
    if (rc != 0) {
        send_ctx_free(x);
        gc__reply_error(q->sock, q->event, q->ack_id, "invalid payload");
        return;
    }
    /* the sender's socket is in the room: wait until the room's channel is
     * confirmed, or the sender could miss its own message */
    gc__when_room_subscribed(cw, room, send_subscribed, x);
}

static void send_stored(const gc_req *q, const char *room)
{
    store_ctx *x = pr_calloc(1, sizeof *x + q->a->text_len);
    x->cw = q->cw;
    x->ack_id = q->ack_id;
    snprintf(x->sid, sizeof x->sid, "%s", q->cs->sid);
    snprintf(x->room, sizeof x->room, "%s", room);
    snprintf(x->user, sizeof x->user, "%s", q->uid);
    snprintf(x->first, sizeof x->first, "%s", q->fname);
    if (q->a->last_name) {
        x->has_last = 1;
        snprintf(x->last, sizeof x->last, "%s", q->a->last_name);
    }
    if (q->a->client_msg_id)
        snprintf(x->cmid, sizeof x->cmid, "%s", q->a->client_msg_id);
    if (q->a->target_user_id)
        snprintf(x->peer, sizeof x->peer, "%s", q->a->target_user_id);
    x->text_len = q->a->text_len;
    memcpy(x->text, q->a->text, q->a->text_len);
    /* as without storage: the sender's socket must get its own message */
    gc__when_room_subscribed(q->cw, room, store_subscribed, x);
}

void gc__on_send_message(const gc_req *q)
{
    gc_worker *cw = q->cw;
    if (!cm_redis_ready(cw->redis)) {
        gc__reply_error(q->sock, q->event, q->ack_id, "unavailable");
        return;
    }
    char room[CHAT_ID_MAX + 1];
    if (!gc__event_room(q, room, sizeof room, 1))
        return;
    if (cw->storage)
        send_stored(q, room);
    else
        send_relayed(q, room);
}

