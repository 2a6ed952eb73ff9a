/*
 * join.c - joinChat and joinRoom: a join is acked once the room's
 * subscription is confirmed and, for joinChat with storage, once storage
 * answered the "open" entry (or --join-timeout). While the socket catches
 * up the ack waits for the catch-up (cs->acks_due, released by
 * gc__set_phase).
 */
#include <stdio.h>
#include <string.h>

#include "gc.h"

static gc_join *join_ctx_new(const gc_req *q, const char *room)
{
    gc_join *x = pr_calloc(1, sizeof *x);
    x->cw = q->cw;
    x->ack_id = q->ack_id;
    snprintf(x->sid, sizeof x->sid, "%s", q->cs->sid);
    snprintf(x->room, sizeof x->room, "%s", room);
    return x;
}

/* The ack of a join means "you will receive what is sent from now on",
 * and for joinChat with storage also "the room exists for every API"
 * (history right after the ack must not say "not a member"). */
static void join_finish(gc_join *x)
{
    gw_socket *sock = gw_socket_find(x->cw->w, x->sid, "/");
    gc_sock *cs = sock ? gw_socket_data(sock) : NULL;
    if (cs && x->cw->storage && cs->phase != GC_LIVE) {
        /* The open takes effect when the ack goes out: its receipt waits for
         * the socket's sync (gc__room_open), so the ack does too, or a message
         * sent in reply to the ack could come before the open in the stream
         * and be taken for seen. going live (gc__set_phase) finishes it, in order. */
        gc_join **tail = &cs->acks_due;
        while (*tail)
            tail = &(*tail)->next_due;
        x->next_due = NULL;
        *tail = x;
        return;
    }
    if (sock && x->answer) {
        gc__ack(sock, x->ack_id, pr_view_make(x->answer, strlen(x->answer)));
    } else if (sock) {
        pr_buf ack;
        pr_buf_init(&ack, 2 * CHAT_ID_MAX + 32);
        if (chat_ack_room(&ack, x->room) == 0)
            gc__ack(sock, x->ack_id, pr_buf_view(&ack)); /* {roomId} */
        pr_buf_dispose(&ack);
    }
    pr_free(x->answer);
    pr_free(x);
}

/* The join acks a catch-up held, in order (the socket is live now). */
void gc__finish_due_joins(gc_sock *cs)
{
    gc_join *x = cs->acks_due;
    cs->acks_due = NULL;
    while (x) {
        gc_join *next = x->next_due;
        join_finish(x);
        x = next;
    }
}

/* The socket goes: its held acks have nobody to reach. */
void gc__free_due_joins(gc_sock *cs)
{
    while (cs->acks_due) {
        gc_join *x = cs->acks_due;
        cs->acks_due = x->next_due;
        pr_free(x->answer);
        pr_free(x);
    }
}

static void join_subscribed(cm_redis *r, int ok, void *arg)
{
    (void)r;
    (void)ok; /* Redis down: joined locally; sends fail until it is back */
    gc_join *x = arg;
    x->subscribed = 1;
    if (!x->waiting)
        join_finish(x);
}

static void join_key(char *out, size_t n, const char *sid, size_t sid_len, int64_t ack_id)
{
    snprintf(out, n, "%.*s\t%lld", (int)sid_len, sid, (long long)ack_id);
}

/* Waits for storage's answer to x's "open" entry; -1 when the client
 * already has a joinChat pending under that ack id. */
static int join_wait(gc_worker *cw, gc_join *x)
{
    char key[GW_SID_LEN + 24];
    join_key(key, sizeof key, x->sid, strlen(x->sid), x->ack_id);
    if (gc__map_get(&cw->joins, key, strlen(key)))
        return -1;
    gc__map_put(&cw->joins, &x->e, key, strlen(key));
    gw_th_add(&cw->join_th, &x->wait, gw_worker_now_ms(cw->w) + cw->cfg->join_timeout_ms);
    x->waiting = 1;
    return 0;
}

/* The wait is over (answer: the ack's object, storage's error or ours,
 * taken; NULL: the room exists). */
static void join_done_waiting(gc_worker *cw, gc_join *x, char *answer)
{
    gc__map_del(&cw->joins, &x->e);
    gw_th_del(&cw->join_th, &x->wait);
    x->waiting = 0;
    x->answer = answer;
    if (x->subscribed)
        join_finish(x);
}

static gc_join *join_waiting(gc_worker *cw, const char *key)
{
    gc_entry *e = gc__map_get(&cw->joins, key, strlen(key));
    return e ? GW_CONTAINER_OF(e, gc_join, e) : NULL;
}

/* {error: "unavailable"}, as an answer. */
static char *unavailable(void)
{
    pr_buf b;
    pr_buf_init(&b, 64);
    chat_ack_error(&b, CHAT_ERR_UNAVAILABLE);
    char *s = pr_strndup(b.ptr, b.len);
    pr_buf_dispose(&b);
    return s;
}

void gc__join_storage_failed(gc_worker *cw, const char *key)
{
    gc_join *x = join_waiting(cw, key);
    if (x)
        join_done_waiting(cw, x, unavailable());
}

/* An A1 line: 1 when it answers a waiting joinChat (then it is used up). */
int gc__join_answered(gc_worker *cw, pr_view sid, int64_t ack_id, pr_view json)
{
    if (cw->joins.n == 0 || ack_id < 0)
        return 0; /* the usual case: message acks only */
    char key[GW_SID_LEN + 24];
    join_key(key, sizeof key, sid.ptr, sid.len, ack_id);
    gc_join *x = join_waiting(cw, key);
    if (!x)
        return 0;
    /* storage's error goes to the client as it came; an answer that is
     * no object is no answer */
    json_t *arg = json_loadb(json.ptr, json.len, 0, NULL);
    char *answer = NULL;
    if (!json_is_object(arg))
        answer = unavailable();
    else if (json_object_get(arg, "error"))
        answer = pr_strndup(json.ptr, json.len);
    json_decref(arg);
    join_done_waiting(cw, x, answer);
    return 1;
}

/* Storage did not answer within --join-timeout: the room may not exist. */
void gc__join_timeout(gw_th *th, gw_th_node *n)
{
    gc_join *x = GW_CONTAINER_OF(n, gc_join, wait);
    gc_worker *cw = GW_CONTAINER_OF(th, gc_worker, join_th);
    CM_WARN_RATELIMITED("event=gc__join_timeout worker=%d sid=%s room=%s", cw->index, x->sid,
                        x->room);
    join_done_waiting(cw, x, unavailable());
}


/* Joins (with storage: opens) the room and acks once it is subscribed. */
static void join_and_ack(gc_worker *cw, gc_sock *cs, gc_join *x)
{
    gc_member *m = gc__room_join(cw, cs, x->room);
    if (cw->storage)
        gc__room_open(cw, cs, m);
    gc__when_room_subscribed(cw, x->room, join_subscribed, x);
}

void gc__on_join_chat(const gc_req *q)
{
    char room[CHAT_ID_MAX + 1];
    chat_dm_room_id(q->cw->room_key, q->uid, q->a->target_user_id, room);
    gc_join *x = join_ctx_new(q, room);
    /* with storage the ack also waits for the room's COMMIT */
    if (q->cw->storage && q->ack_id >= 0 && join_wait(q->cw, x) != 0) {
        pr_free(x);
        gc__reply_error(q->sock, q->event, q->ack_id, "ack id in use");
        return;
    }
    gc__record_dm_for(q->cw, room, q->uid, q->a->target_user_id, x->waiting ? x : NULL);
    join_and_ack(q->cw, q->cs, x);
}

/* joinRoom missed {r:ROOM}:members: "not a member" only if the cache is
 * whole; while storage rebuilds it, "unavailable" (try again), never a false
 * refusal. */
static void member_mark_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    gc_join *x = arg;
    gw_socket *sock = gw_socket_find(x->cw->w, x->sid, "/");
    int whole = rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    if (whole)
        x->cw->cache_seen = 1;
    if (sock && gw_socket_data(sock) && !gw_socket_pending(sock))
        gc__reply_error(sock, "joinRoom", x->ack_id,
                        whole ? CHAT_ERR_NOT_MEMBER : CHAT_ERR_UNAVAILABLE);
    pr_free(x);
}

static void member_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    gc_join *x = arg;
    gw_socket *sock = gw_socket_find(x->cw->w, x->sid, "/");
    gc_sock *cs = sock ? gw_socket_data(sock) : NULL;
    if (!cs || gw_socket_pending(sock)) {
        pr_free(x);
        return;
    }
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1) {
        join_and_ack(x->cw, cs, x);
        return;
    }
    if (rep && rep->type == REDIS_REPLY_INTEGER && x->cw->storage && x->cw->cache_seen) {
        /* a miss is only an answer when the cache is whole */
        const char *argv[] = {"EXISTS", CHAT_KEY_CACHE};
        if (gc__redis_cmd(x->cw, member_mark_cb, x, 2, argv) == 0)
            return;
        rep = NULL;
    }
    gc__reply_error(sock, "joinRoom", x->ack_id,
                    rep && rep->type == REDIS_REPLY_INTEGER ? CHAT_ERR_NOT_MEMBER
                                                            : CHAT_ERR_UNAVAILABLE);
    pr_free(x);
}

/* joinRoom {roomId}: any room the user belongs to (groups, direct rooms). */
void gc__on_join_room(const gc_req *q)
{
    gc_join *x = join_ctx_new(q, q->a->room_id);
    if (gc__membership(q->cs, q->a->room_id)) { /* one of its rooms since connect */
        join_and_ack(q->cw, q->cs, x);
        return;
    }
    chat_key key = chat_key_room_members(q->a->room_id);
    const char *argv[] = {"SISMEMBER", key.s, q->uid};
    if (gc__redis_cmd(q->cw, member_cb, x, 3, argv) != 0) {
        pr_free(x);
        gc__reply_error(q->sock, q->event, q->ack_id, CHAT_ERR_UNAVAILABLE);
    }
}



static void join_free(gc_entry *e)
{
    gc_join *x = GW_CONTAINER_OF(e, gc_join, e);
    pr_free(x->answer);
    pr_free(x);
}

/* At the worker's end: the joins still waiting for storage (their
 * subscription callbacks ran in cm_redis_free). */
void gc__joins_dispose(gc_worker *cw)
{
    gc__map_free(&cw->joins, join_free);
}
