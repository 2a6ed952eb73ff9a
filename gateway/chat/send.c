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
        gc__reply_error(sock, "sendMessage", ack_id, CHAT_ERR_UNAVAILABLE);
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
    if (sock && x->ack_id >= 0) {
        chat_message m = {.id = x->id, .seq = -1, .room = x->room, .created_at = x->created};
        pr_buf ack;
        pr_buf_init(&ack, 512);
        if (chat_ack_message(&ack, &m) == 0)
            gc__ack(sock, x->ack_id, pr_buf_view(&ack)); /* {id, roomId, createdAt} */
        pr_buf_dispose(&ack);
    }
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
    if (!gc__sock_by_sid(cw, x->sid)) {
        /* the socket went while this waited (its worker lost a subscription
         * and dropped its sockets, or the client left): it got no ack, and
         * its client may have sent more since, on another connection, which
         * this must not overtake in the stream */
        pr_free(x);
        return;
    }
    /* the reply address even without a callback: an error (not a member,
     * clientMsgId reused) then comes back as a chatError, never silence */
    chat_entry m = {
        .kind = CHAT_ENTRY_MESSAGE,
        .room = pr_view_make(x->room, strlen(x->room)),
        .user = pr_view_make(x->user, strlen(x->user)),
        .first_name = pr_view_make(x->first, strlen(x->first)),
        .last_name = x->has_last ? pr_view_make(x->last, strlen(x->last)) : pr_view_make(NULL, 0),
        .text = pr_view_make(x->text, x->text_len),
        .client_msg_id =
            x->cmid[0] ? pr_view_make(x->cmid, strlen(x->cmid)) : pr_view_make(NULL, 0),
        .peer = x->peer[0] ? pr_view_make(x->peer, strlen(x->peer)) : pr_view_make(NULL, 0),
        .reply_to = chat_key_view(&cw->reply_channel),
        .socket = pr_view_make(x->sid, strlen(x->sid)),
        .ack_id = x->ack_id,
    };
    chat_xadd xadd;
    if (chat_xadd_message(&xadd, cw->nshards, &m) != 0 ||
        gc__redis_xadd(cw, &xadd, store_xadd_cb, x) != 0)
        store_failed(x);
}

static void send_relayed(const gc_req *q, const char *room)
{
    gc_worker *cw = q->cw;
    send_ctx *x = pr_calloc(1, sizeof *x);
    x->cw = cw;
    x->ack_id = q->ack_id;
    gc__copy(x->sid, sizeof x->sid, q->cs->sid);
    snprintf(x->id, sizeof x->id, "%s%llx", cw->msg_prefix, (unsigned long long)++cw->msg_counter);
    gc__copy(x->room, sizeof x->room, room);
    gc__iso_time(x->created, cm_wall_ms());

    /* relayed, not stored: no seq, and lastName only when given */
    chat_message m = {
        .id = x->id,
        .seq = -1,
        .room = room,
        .user = q->uid,
        .first_name = q->fname,
        .last_name = q->a->last_name,
        .text = q->a->text,
        .text_len = q->a->text_len,
        .created_at = x->created,
        .client_msg_id = q->a->client_msg_id,
    };
    pr_buf_init(&x->pkt, cw->cfg->max_payload);
    if (chat_message_packet(&x->pkt, &m) != 0) {
        send_ctx_free(x);
        gc__reply_error(q->sock, q->event, q->ack_id, CHAT_ERR_INVALID);
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
    gc__copy(x->sid, sizeof x->sid, q->cs->sid);
    gc__copy(x->room, sizeof x->room, room);
    gc__copy(x->user, sizeof x->user, q->uid);
    gc__copy(x->first, sizeof x->first, q->fname);
    if (q->a->last_name) {
        x->has_last = 1;
        gc__copy(x->last, sizeof x->last, q->a->last_name);
    }
    if (q->a->client_msg_id)
        gc__copy(x->cmid, sizeof x->cmid, q->a->client_msg_id);
    if (q->a->target_user_id)
        gc__copy(x->peer, sizeof x->peer, q->a->target_user_id);
    x->text_len = q->a->text_len;
    memcpy(x->text, q->a->text, q->a->text_len);
    /* as without storage: the sender's socket must get its own message */
    gc__when_room_subscribed(q->cw, room, store_subscribed, x);
}

void gc__on_send_message(const gc_req *q)
{
    gc_worker *cw = q->cw;
    if (!cm_redis_ready(cw->redis)) {
        gc__reply_error(q->sock, q->event, q->ack_id, CHAT_ERR_UNAVAILABLE);
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

