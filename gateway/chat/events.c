/*
 * events.c - the small event handlers (leaveChat/leaveRoom, markSeen,
 * typing) and the room an event names. The dispatch table is in app.c.
 */
#include <stdio.h>
#include <string.h>

#include "gc.h"

/* ---- event handlers ---- */


/* The room an event names: the direct room with targetUserId (joined first
 * when auto_join), or roomId, which the socket must have joined. Fills room
 * (CHAT_ID_MAX + 1 bytes). */
const char *gc__event_room(const gc_req *q, char *room, size_t n, int auto_join)
{
    if (q->a->target_user_id) {
        chat_dm_room_id(q->cw->room_key, q->uid, q->a->target_user_id, room);
        if (auto_join && !gc__membership(q->cs, room)) {
            gc__room_join(q->cw, q->cs, room);
            gc__record_dm(q->cw, room, q->uid, q->a->target_user_id);
        }
        return room;
    }
    if (q->a->room_id) {
        gc__copy(room, n, q->a->room_id);
        if (!gc__membership(q->cs, room)) {
            gc__reply_error(q->sock, q->event, q->ack_id, CHAT_ERR_NOT_MEMBER);
            return NULL;
        }
        return room;
    }
    gc__reply_error(q->sock, q->event, q->ack_id, CHAT_ERR_INVALID);
    return NULL;
}


/* leaveChat/leaveRoom. With storage the socket stays in the room (its user
 * is still a member and gets messages as delivered); it only stops seeing. */
void gc__on_leave(const gc_req *q)
{
    char room[CHAT_ID_MAX + 1]; /* leaveChat has a targetUserId, leaveRoom a roomId */
    if (!strcmp(q->event, "leaveChat"))
        chat_dm_room_id(q->cw->room_key, q->uid, q->a->target_user_id, room);
    else
        snprintf(room, sizeof room, "%s", q->a->room_id);
    if (q->cw->storage) {
        gc_member *m = gc__membership(q->cs, room);
        if (m)
            m->open = 0;
    } else {
        gc__room_leave(q->cw, q->cs, room);
    }
    gc__reply_ok(q->sock, q->ack_id);
}

/* markSeen {roomId, seq?}: the user saw the room up to seq (everything when
 * absent). */
void gc__on_mark_seen(const gc_req *q)
{
    gc_member *m = gc__membership(q->cs, q->a->room_id);
    if (!m) {
        gc__reply_error(q->sock, q->event, q->ack_id, CHAT_ERR_NOT_MEMBER);
        return;
    }
    gc__receipt_add(q->cw, m->room->e.key, q->cs->user, 'v', q->a->seq >= 0 ? q->a->seq : -1);
    gc__reply_ok(q->sock, q->ack_id);
}


void gc__on_typing(const gc_req *q)
{
    char room[CHAT_ID_MAX + 1];
    if (!gc__event_room(q, room, sizeof room, 0))
        return;
    pr_buf pkt;
    pr_buf_init(&pkt, 4096);
    if (chat_typing_packet(&pkt, room, q->uid, q->fname) == 0)
        gc__publish(q->cw, room, q->uid, pr_buf_view(&pkt), NULL, NULL);
    pr_buf_dispose(&pkt);
    gc__reply_ok(q->sock, q->ack_id);
}


