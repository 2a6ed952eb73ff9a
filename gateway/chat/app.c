/*
 * app.c - the chat application's gw_app table (--app chat): worker life,
 * connect (token, recovery, the session's start) and disconnect, the token's
 * expiry, the rate limit, and the event dispatch table. What the chat is
 * and the Redis names it uses: gc.h.
 */
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "gc.h"
#include "jwt.h"

static void cache_seen_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    gc_worker *cw = arg;
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1)
        cw->cache_seen = 1;
}

static void on_redis_ready(cm_redis *r, void *arg)
{
    (void)r;
    gc_worker *cw = arg;
    gc__lua_load(cw); /* before the first EVALSHA on this connection */
    if (cw->storage && !cw->cache_seen) {
        const char *argv[] = {"EXISTS", CHAT_KEY_CACHE};
        gc__redis_cmd(cw, cache_seen_cb, cw, 2, argv);
    }
    gc__presence_tick(-1, 0, cw); /* re-register our users at once */
    if (cw->storage && evtimer_pending(cw->retry_timer, NULL)) {
        struct timeval now = {0, 0}; /* sockets waiting to start */
        evtimer_add(cw->retry_timer, &now);
    }
}

/* ---- the app callbacks ---- */

/* The limit is the user's, across its sockets on every worker of this
 * gateway; a socket that has no user yet (insecure-dev) has its own. */
static int take_token(gc_worker *cw, gc_sock *cs)
{
    uint64_t now = gw_worker_now_ms(cw->w);
    if (cs->user) {
        gc_user *u = cs->user;
        if (!u->rl)
            u->rl = gw_rl_acquire(u->e.key, u->e.len, cw->cfg->rate_burst, now);
        return gw_rl_take(u->rl, now, cw->cfg->rate_limit, cw->cfg->rate_burst);
    }
    return cm_tbucket_take(&cs->bucket, now, cw->cfg->rate_limit, cw->cfg->rate_burst);
}

/* ---- the events: adding one is a row here plus its handler ---- */

/* What an event needs before its handler runs; without it the client gets
 * "invalid payload" (NEEDS_STORAGE: "unknown event" without --storage). */
enum {
    NEEDS_STORAGE = 1, /* only with --storage on */
    NEEDS_TARGET = 2,  /* targetUserId */
    NEEDS_ROOM_ID = 4, /* roomId */
    NEEDS_TEXT = 8,    /* a non-empty text */
};

typedef struct {
    const char *name;
    void (*handler)(const gc_req *q);
    unsigned needs;
} event_def;

static const event_def events[] = {
    {"joinChat", gc__on_join_chat, NEEDS_TARGET},
    {"joinRoom", gc__on_join_room, NEEDS_ROOM_ID},
    {"leaveChat", gc__on_leave, NEEDS_TARGET},
    {"leaveRoom", gc__on_leave, NEEDS_ROOM_ID},
    {"sendMessage", gc__on_send_message, NEEDS_TEXT},
    {"typing", gc__on_typing, 0},
    {"getOnline", gc__on_get_online, 0},
    {"markSeen", gc__on_mark_seen, NEEDS_STORAGE | NEEDS_ROOM_ID},
};

static const event_def *find_event(const char *name, int storage)
{
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
        if (!strcmp(events[i].name, name))
            return (events[i].needs & NEEDS_STORAGE) && !storage ? NULL : &events[i];
    return NULL;
}

static _Thread_local gw_pool sock_pool = GW_POOL(gc_sock);

/* Arms the end of the socket's access at the token's exp (wall-clock
 * seconds), translated to the worker's monotonic clock. */
static void token_arm(gc_worker *cw, gc_sock *cs, int64_t exp)
{
    /* beyond ~30 years: never on this process's watch */
    if (exp > (int64_t)(cm_wall_ms() / 1000) + (1ll << 30))
        return;
    int64_t left = exp * 1000 - (int64_t)cm_wall_ms();
    uint64_t now = gw_worker_now_ms(cw->w);
    gw_th_add(&cw->exp_th, &cs->exp_node, left > 0 ? now + (uint64_t)left : now);
}

/*
 * The token's exp passed: the app hears why (chatError {"error":"token
 * expired"}), then a Socket.IO DISCONNECT ends the socket. socket.io-client
 * reports it as "io server disconnect" and does not reconnect by itself: the
 * app fetches a fresh token and calls connect() (proto/PROTOCOL.md). A socket
 * still connecting cannot be sent anything: its transport is dropped, and the
 * reconnect with the same token is refused ("unauthorized").
 */
static void token_expired(gw_th *th, gw_th_node *n)
{
    (void)th;
    gc_sock *cs = GW_CONTAINER_OF(n, gc_sock, exp_node);
    gw_socket *sock = cs->sock;
    if (gw_socket_pending(sock)) {
        gw_socket_drop_transport(sock);
        return;
    }
    pr_buf obj;
    pr_buf_init(&obj, 64);
    if (chat_ack_error(&obj, "token expired") == 0)
        gc__chat_error(sock, pr_buf_view(&obj)); /* {error}, no event */
    pr_buf_dispose(&obj);
    gw_socket_disconnect(sock); /* frees cs (chat_disconnect) */
}

static int chat_connect(gw_socket *sock, const json_t *auth, json_t **error)
{
    gw_worker *w = gw_socket_worker(sock);
    gc_worker *cw = gc__cw(w);
    pr_jwt_claims claims;
    if (!cw->insecure) {
        const char *token = json_string_value(json_object_get(auth, "token"));
        if (!token)
            token = gw_session_http_token(gw_socket_session(sock));
        int64_t now = (int64_t)(cm_wall_ms() / 1000);
        if (!token ||
            pr_jwt_verify_hs256(pr_view_make(token, strlen(token)),
                                pr_view_make(cw->cfg->jwt_secret, strlen(cw->cfg->jwt_secret)),
                                now, &claims) != 0) {
            *error = json_pack("{ss}", "message", "unauthorized");
            return -1;
        }
    }
    gc_sock *cs = gw_pool_get(&sock_pool);
    cs->sock = sock;
    cm_tbucket_init(&cs->bucket, cw->cfg->rate_burst, gw_worker_now_ms(w));
    cs->held_tail = &cs->held;
    snprintf(cs->sid, sizeof cs->sid, "%s", gw_session_sid(gw_socket_session(sock)));
    cs->next = cw->socks;
    if (cw->socks)
        cw->socks->prev = cs;
    cw->socks = cs;
    gw_socket_set_data(sock, cs);
    if (!cw->insecure) {
        const char *name = claims.name[0] ? claims.name : claims.sub;
        cs->first_name = pr_strndup(name, strlen(name));
        gc__user_attach(cw, cs, claims.sub);
        token_arm(cw, cs, claims.exp);
    } else {
        /* tutorials may already say who they are in the handshake */
        const char *uid = json_string_value(json_object_get(auth, "userId"));
        if (uid && chat_id_valid(uid, strlen(uid)))
            gc__user_attach(cw, cs, uid);
    }
    if (!cw->storage || !cs->user) {
        cs->accepted = 1; /* insecure-dev without a user: rooms come with its first event */
        return 0;
    }
    gc__read_recovery(cw, cs, auth);
    gc__start_session(cw, cs);
    return GW_CONNECT_PENDING;
}

static void chat_event(gw_socket *sock, const char *event, const sio_packet *p)
{
    gc_worker *cw = gc__cw(gw_socket_worker(sock));
    gc_sock *cs = gw_socket_data(sock);
    if (gw_th_queued(&cs->exp_node) && gw_worker_now_ms(cw->w) >= cs->exp_node.deadline_ms) {
        /* exp passed but its timer has not run yet: nothing more is done for
         * this token; the socket ends on the next turn of the loop (not
         * inside its own callback) */
        gc__reply_error(sock, event, p->id, "token expired");
        gw_th_add(&cw->exp_th, &cs->exp_node, gw_worker_now_ms(cw->w));
        return;
    }
    chat_args a;
    int rc = chat_parse_args(json_array_get(p->data, 1), cw->cfg->max_text_length, &a);
    if (cw->insecure && rc == 0 && a.user_id && !cs->user) {
        /* --auth insecure-dev: the socket is the first userId it names, and
         * that user's bucket pays from this event on */
        gc__user_attach(cw, cs, a.user_id);
        if (cw->storage)
            gc__start_session(cw, cs); /* its rooms and undelivered messages */
    }
    if (!take_token(cw, cs)) {
        gc__reply_error(sock, event, p->id, "rate limited");
        return;
    }
    if (rc != 0) {
        gc__reply_error(sock, event, p->id,
                        rc == PR_ETOOBIG ? CHAT_ERR_TOO_LONG : CHAT_ERR_INVALID);
        return;
    }
    gc_req q = {cw, cs, sock, event, p->id, &a, NULL, NULL};
    char fname[CHAT_NAME_MAX + 1];
    if (cw->insecure) {
        /* --auth insecure-dev: whoever the payload says, as the tutorials do */
        if (!a.user_id) {
            gc__reply_error(sock, event, p->id, CHAT_ERR_INVALID);
            return;
        }
        q.uid = a.user_id;
        snprintf(fname, sizeof fname, "%s", a.first_name ? a.first_name : a.user_id);
        q.fname = fname;
    } else {
        q.uid = cs->user->e.key; /* the token's, whatever the payload says */
        q.fname = cs->first_name;
        a.last_name = NULL;
    }
    const event_def *d = find_event(event, cw->storage);
    if (!d) {
        gc__reply_error(sock, event, p->id, "unknown event");
        return;
    }
    if (((d->needs & NEEDS_TARGET) && !a.target_user_id) ||
        ((d->needs & NEEDS_ROOM_ID) && !a.room_id) ||
        ((d->needs & NEEDS_TEXT) && (!a.text || a.text_len == 0))) {
        gc__reply_error(sock, event, p->id, CHAT_ERR_INVALID);
        return;
    }
    d->handler(&q);
}

static void chat_disconnect(gw_socket *sock, const char *reason)
{
    (void)reason;
    gc_worker *cw = gc__cw(gw_socket_worker(sock));
    gc_sock *cs = gw_socket_data(sock);
    if (!cs)
        return;
    /* the record outlives the socket by the window: the client may come back */
    if (cw->storage && cs->accepted && cs->pid)
        gc__pexpire_record(cw, cs);
    gw_th_del(&cw->exp_th, &cs->exp_node);
    if (cw->storage)
        gc__set_phase(cw, cs, GC_GONE); /* drops what waited for the catch-up */
    while (cs->rooms) {
        gc_member *m = cs->rooms;
        cs->rooms = m->snext;
        gc__room_unlink(cw, m);
    }
    gc__free_unread(cs);
    gc__user_detach(cw, cs);
    if (cs->prev)
        cs->prev->next = cs->next;
    else
        cw->socks = cs->next;
    if (cs->next)
        cs->next->prev = cs->prev;
    pr_free(cs->first_name);
    pr_free(cs->pid);
    gw_pool_put(&sock_pool, cs);
}

static void storage_init(gc_worker *cw)
{
    gw_worker *w = cw->w;
    struct event_base *base = gw_worker_base(w);
    const gw_config *cfg = cw->cfg;
    cw->nshards = cfg->ingest_shards;
    cw->pos = pr_calloc(cw->nshards, sizeof *cw->pos);
    pr_buf_init(&cw->relay, GC_RELAY_MAX);
    cw->reply_channel = chat_chan_gateway(cfg->node_id, (unsigned)cw->index);
    gc__receipts_init(cw);
    gw_th_init(&cw->wait_th, w, gc__wait_timeout);
    gc__map_init(&cw->joins);
    gw_th_init(&cw->join_th, w, gc__join_timeout);
    cw->drop_ev = event_new(base, -1, 0, gc__drop_cb, cw);
    cw->retry_timer = evtimer_new(base, gc__retry_tick, cw);
    if (cfg->recovery_window_s) {
        cw->renew_timer = event_new(base, -1, EV_PERSIST, gc__renew_tick, cw);
        unsigned period = cfg->recovery_window_s * 1000u / 3;
        struct timeval tv = {period / 1000, (period % 1000) * 1000};
        event_add(cw->renew_timer, &tv);
    }
    cm_redis_subscribe(cw->redis, chat_key_view(&cw->reply_channel));
    cm_redis_set_lost_cb(cw->redis, gc__on_sub_lost);
}

static void storage_dispose(gc_worker *cw)
{
    if (cw->renew_timer)
        event_free(cw->renew_timer);
    event_free(cw->drop_ev);
    event_free(cw->retry_timer);
    gw_th_dispose(&cw->wait_th);
    gw_th_dispose(&cw->join_th);
    gc__joins_dispose(cw);
    gc__receipts_dispose(cw);
    pr_buf_dispose(&cw->relay);
    pr_free(cw->pos);
}

/* Output queued from a Redis callback is written in the worker's flush pass. */
static void flush_worker(void *w)
{
    gw_worker_schedule_flush(w);
}

static int chat_worker_init(gw_worker *w, void **state)
{
    const gw_config *cfg = gw_worker_config(w);
    gc__presence_init_once();
    gc_worker *cw = pr_calloc(1, sizeof *cw);
    cw->w = w;
    cw->index = gw_worker_index(w);
    cw->cfg = cfg;
    cw->insecure = !strcmp(cfg->auth, "insecure-dev");
    cw->storage = cfg->storage;
    gc__map_init(&cw->rooms);
    gc__map_init(&cw->users);
    chat_dm_key(cfg->room_secret, cfg->jwt_secret, cw->room_key);
    cw->member = chat_presence_member(cfg->node_id, (unsigned)cw->index);
    cw->presence_batch = GC_PRESENCE_BATCH;
    unsigned char rnd[6];
    RAND_bytes(rnd, sizeof rnd);
    snprintf(cw->msg_prefix, sizeof cw->msg_prefix, "%02x%02x%02x%02x%02x%02x%02x-", rnd[0],
             rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], (unsigned)cw->index & 0xff);
    pr_redis_addr addr;
    if (pr_redis_url_parse(cfg->redis_url, &addr) != 0)
        return -1;
    *state = cw; /* before Redis: its callbacks look the worker state up */
    char name[32];
    snprintf(name, sizeof name, "worker-%d", cw->index);
    cm_redis_options ro = {
        .name = name,
        .on_message = gc__on_redis_message,
        .on_ready = on_redis_ready,
        .arg = cw,
        .after_cb = flush_worker,
        .after_arg = w,
    };
    cw->redis = cm_redis_new(gw_worker_base(w), &addr, &ro);
    cm_redis_subscribe(cw->redis, PR_VIEW_LIT(CHAT_CHAN_ALL));
    if (cw->storage)
        storage_init(cw);
    gw_th_init(&cw->exp_th, w, token_expired);
    cw->presence_timer = event_new(gw_worker_base(w), -1, EV_PERSIST, gc__presence_tick, cw);
    unsigned period = cfg->presence_ttl_ms / 3;
    struct timeval tv = {period / 1000, (period % 1000) * 1000};
    event_add(cw->presence_timer, &tv);
    return 0;
}

static void chat_worker_dispose(gw_worker *w, void *state)
{
    (void)w;
    gc_worker *cw = state;
    event_free(cw->presence_timer);
    gw_th_dispose(&cw->exp_th);
    if (cw->storage && evtimer_pending(cw->receipt_timer, NULL))
        gc__receipt_flush(-1, 0, cw); /* what the last sockets saw */
    cm_redis_free(cw->redis); /* pending callbacks run now, with NULL replies */
    if (cw->storage)
        storage_dispose(cw);
    pr_map_dispose(&cw->rooms);
    pr_map_dispose(&cw->users);
    pr_free(cw);
}

static int chat_ready(gw_worker *w)
{
    gc_worker *cw = gc__cw(w);
    return cw && cm_redis_ready(cw->redis);
}

static const char *const chat_namespaces[] = {"/", NULL};

/* In the order of GC_COUNT_* (gc.h). */
static const gw_app_counter chat_counters[] = {
    {"room_events_received_total", "Room events received from Redis."},
    {"room_deliveries_total", "Room events queued on local sockets."},
    {"room_events_published_total", "Room events published to Redis."},
    {"room_publish_failures_total", "Room events Redis did not take."},
};

const gw_app gw_app_chat = {
    .name = "chat",
    .socketio = 1,
    .default_path = "/socket.io/",
    .namespaces = chat_namespaces,
    .worker_init = chat_worker_init,
    .worker_dispose = chat_worker_dispose,
    .ready = chat_ready,
    .on_connect = chat_connect,
    .on_event = chat_event,
    .on_disconnect = chat_disconnect,
    .on_consumed = gc__consumed,
    .counters = chat_counters,
    .ncounters = sizeof chat_counters / sizeof chat_counters[0],
};

