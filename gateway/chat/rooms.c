/*
 * rooms.c - users and rooms on this worker: a user with local sockets is
 * registered online (and, with storage, subscribed to user:{USER}); a room
 * with local members is subscribed to room:{ROOM}. Direct rooms are recorded
 * in Redis (and, with storage, opened in storage before any message).
 */
#include <stdio.h>
#include <string.h>

#include "gc.h"

/* ---- users and rooms ---- */

void gc__user_attach(gc_worker *cw, gc_sock *cs, const char *uid)
{
    size_t len = strlen(uid);
    gc_user *u = (gc_user *)gc__map_get(&cw->users, uid, len);
    if (!u) {
        u = pr_calloc(1, sizeof *u);
        gc__map_put(&cw->users, &u->e, uid, len);
        /* u->rl: taken with the user's first event (take_token), so an idle
         * user costs no bucket */
        if (cw->storage) { /* messageStatus, membership changes */
            chat_key channel = chat_chan_user(uid);
            cm_redis_subscribe(cw->redis, chat_key_view(&channel));
        }
    }
    cs->user = u;
    cs->unext = u->socks;
    u->socks = cs;
    if (u->nsockets++ == 0)
        gc__presence_update(cw, uid, 1);
}

void gc__user_detach(gc_worker *cw, gc_sock *cs)
{
    gc_user *u = cs->user;
    cs->user = NULL;
    if (!u)
        return;
    for (gc_sock **pp = &u->socks; *pp; pp = &(*pp)->unext)
        if (*pp == cs) {
            *pp = cs->unext;
            break;
        }
    if (--u->nsockets > 0)
        return;
    gc__presence_update(cw, u->e.key, 0);
    if (cw->storage) {
        chat_key channel = chat_chan_user(u->e.key);
        cm_redis_unsubscribe(cw->redis, chat_key_view(&channel));
    }
    gc__map_del(&cw->users, &u->e);
    gw_rl_release(u->rl);
    pr_free(u);
}

gc_member *gc__membership(gc_sock *cs, const char *room)
{
    for (gc_member *m = cs->rooms; m; m = m->snext)
        if (!strcmp(m->room->e.key, room))
            return m;
    return NULL;
}

gc_member *gc__room_join(gc_worker *cw, gc_sock *cs, const char *room_id)
{
    gc_member *m = gc__membership(cs, room_id);
    if (m)
        return m;
    size_t len = strlen(room_id);
    gc_room *room = (gc_room *)gc__map_get(&cw->rooms, room_id, len);
    if (!room) {
        room = pr_calloc(1, sizeof *room);
        gc__map_put(&cw->rooms, &room->e, room_id, len);
        chat_key channel = chat_chan_room(room_id);
        cm_redis_subscribe(cw->redis, chat_key_view(&channel));
    }
    m = pr_calloc(1, sizeof *m);
    m->room = room;
    m->cs = cs;
    m->rnext = room->members;
    if (room->members)
        room->members->rprev = m;
    room->members = m;
    room->nmembers++;
    m->snext = cs->rooms;
    cs->rooms = m;
    return m;
}

void gc__room_unlink(gc_worker *cw, gc_member *m)
{
    gc_room *room = m->room;
    if (m->rprev)
        m->rprev->rnext = m->rnext;
    else
        room->members = m->rnext;
    if (m->rnext)
        m->rnext->rprev = m->rprev;
    if (--room->nmembers == 0) {
        chat_key channel = chat_chan_room(room->e.key);
        cm_redis_unsubscribe(cw->redis, chat_key_view(&channel));
        gc__map_del(&cw->rooms, &room->e);
        pr_free(room);
    }
    pr_free(m);
}

void gc__room_leave(gc_worker *cw, gc_sock *cs, const char *room_id)
{
    for (gc_member **pp = &cs->rooms; *pp; pp = &(*pp)->snext)
        if (!strcmp((*pp)->room->e.key, room_id)) {
            gc_member *m = *pp;
            *pp = m->snext;
            gc__room_unlink(cw, m);
            return;
        }
}

/* While the socket's sync (or replay) is in flight the open's receipt waits
 * until it goes live (gc__set_phase): storage answers a sync with what the
 * user was not delivered yet, and a "seen everything" processed first would
 * take the room's messages out of it, so the socket would never be written
 * them. */
void gc__room_open(gc_worker *cw, gc_sock *cs, gc_member *m)
{
    m->open = 1;
    if (!cw->storage || !cs->user)
        return;
    if (cs->phase != GC_LIVE) {
        m->open_due = 1;
        return;
    }
    gc__open_receipt(cw, cs, m);
}

typedef struct {
    gc_worker *cw;
    char room[CHAT_ID_MAX + 1];
    char user[CHAT_ID_MAX + 1];
} dm_ctx;

/* A direct room new to the user's cache: the user's sockets everywhere join
 * it (J1), so they receive its first message live. */
static void dm_added_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    dm_ctx *x = arg;
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1) {
        pr_buf env;
        pr_buf_init(&env, 2 * CHAT_ID_MAX + 8);
        chat_key channel = chat_chan_user(x->user);
        if (chat_jenv_encode(&env, 'J', pr_view_make(x->room, strlen(x->room)),
                             pr_view_make(x->user, strlen(x->user))) == 0)
            gc__redis_publish(x->cw, chat_key_view(&channel), pr_buf_view(&env), NULL, NULL);
        pr_buf_dispose(&env);
    }
    pr_free(x);
}


/* The XADD of an "open" entry whose answer a joinChat waits for. */
typedef struct {
    gc_worker *cw;
    char key[]; /* the waiting join's key in cw->joins */
} open_ctx;

static void dm_open_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    open_ctx *o = arg;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        CM_WARN_RATELIMITED("event=dm_open_failed worker=%d", o->cw->index);
        gc__join_storage_failed(o->cw, o->key); /* no answer will come */
    }
    pr_free(o);
}

/* Remembers in Redis who belongs to a direct room (for presence, getOnline
 * and joinRoom); the room id itself is the proof of membership. */
/* With storage: XADD {i:S}:in * k o r ROOM u A p B, so storage creates the
 * direct room (and its two members) before any message of the room that
 * follows in the same stream: a chat opened with joinChat and then written
 * to by roomId must find its room. Idempotent. With wait (a joinChat whose
 * client wants the ack), the entry carries the ack's address (g, s, a) and
 * storage answers it after COMMIT (A1); otherwise failures only log (the
 * first message with targetUserId creates the room too). */
static void open_dm_in_storage(gc_worker *cw, const char *room, const char *a, const char *b,
                               const gc_join *wait);

void gc__record_dm_for(gc_worker *cw, const char *room, const char *a, const char *b,
                          const gc_join *wait)
{
    if (cw->storage)
        open_dm_in_storage(cw, room, a, b, wait);
    chat_key rk = chat_key_room_members(room);
    const char *m[] = {"SADD", rk.s, a, b};
    gc__redis_cmd(cw, NULL, NULL, 4, m);
    const char *users[2] = {a, b};
    for (int i = 0; i < 2 && (i == 0 || strcmp(a, b)); i++) {
        chat_key uk = chat_key_user_rooms(users[i]);
        const char *x[] = {"SADD", uk.s, room};
        dm_ctx *d = NULL;
        if (cw->storage) {
            d = pr_calloc(1, sizeof *d);
            d->cw = cw;
            snprintf(d->room, sizeof d->room, "%s", room);
            snprintf(d->user, sizeof d->user, "%s", users[i]);
        }
        if (gc__redis_cmd(cw, d ? dm_added_cb : NULL, d, 3, x) != 0)
            pr_free(d);
    }
}

void gc__record_dm(gc_worker *cw, const char *room, const char *a, const char *b)
{
    gc__record_dm_for(cw, room, a, b, NULL);
}

/* Runs done once the room's subscription is confirmed, so nothing published
 * after it can miss this worker's members. */
void gc__when_room_subscribed(gc_worker *cw, const char *room, cm_redis_subscribed_cb done,
                                 void *arg)
{
    chat_key channel = chat_chan_room(room);
    cm_redis_when_subscribed(cw->redis, chat_key_view(&channel), done, arg);
}

static void open_dm_in_storage(gc_worker *cw, const char *room, const char *a, const char *b,
                               const gc_join *wait)
{
    chat_entry e = {
        .kind = CHAT_ENTRY_OPEN,
        .room = pr_view_make(room, strlen(room)),
        .user = pr_view_make(a, strlen(a)),
        .peer = pr_view_make(b, strlen(b)),
        .ack_id = -1,
    };
    open_ctx *o = NULL;
    if (wait) { /* the ack's address */
        e.reply_to = chat_key_view(&cw->reply_channel);
        e.socket = pr_view_make(wait->sid, strlen(wait->sid));
        e.ack_id = wait->ack_id;
        o = pr_malloc(sizeof *o + wait->e.len + 1);
        o->cw = cw;
        memcpy(o->key, wait->e.key, wait->e.len + 1);
    }
    chat_xadd x;
    if (chat_xadd_open(&x, cw->nshards, &e) != 0 ||
        gc__redis_xadd(cw, &x, o ? dm_open_cb : NULL, o) != 0) {
        CM_WARN_RATELIMITED("event=dm_open_failed worker=%d room=%s", cw->index, room);
        if (o)
            gc__join_storage_failed(cw, o->key);
        pr_free(o);
    }
}

