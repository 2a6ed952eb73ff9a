/*
 * presence.c - who is online: each worker renews its users' entries in the
 * presence shards with Lua scripts (EVALSHA), sweeps the entries of gateways
 * that died, tells a user's rooms when the user comes or goes, and answers
 * getOnline.
 */
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "gc.h"

/* ---- presence ---- */

/* Returns how many live entries the user had before ours was added or
 * renewed: 0 means the user has just come online. */
static const char presence_online_lua[] =
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])\n"
    "local before = redis.call('ZCARD', KEYS[1])\n"
    "redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])\n"
    "redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4] .. ' ' .. ARGV[1])\n"
    "return before\n";

static const char presence_offline_lua[] =
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "redis.call('ZREM', KEYS[2], ARGV[3] .. ' ' .. ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])\n"
    "return redis.call('ZCARD', KEYS[1])\n";

/* Entries past their expiry belong to gateways that died: drop them and
 * return the users left with no live entry. Keys built here share KEYS[1]'s
 * hash tag, so the script stays within one slot. */
static const char presence_sweep_lua[] =
    "local gone = {}\n"
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)\n"
    "for _, e in ipairs(due) do\n"
    "  redis.call('ZREM', KEYS[1], e)\n"
    "  local sp = string.find(e, ' ', 1, true)\n"
    "  if sp then\n"
    "    local uid = string.sub(e, 1, sp - 1)\n"
    "    local on = ARGV[2] .. uid\n"
    "    redis.call('ZREM', on, string.sub(e, sp + 1))\n"
    "    redis.call('ZREMRANGEBYSCORE', on, '-inf', ARGV[1])\n"
    "    if redis.call('ZCARD', on) == 0 then table.insert(gone, uid) end\n"
    "  end\n"
    "end\n"
    "return gone\n";

/* The scripts run by hash (EVALSHA): the body, a few hundred bytes, is not
 * sent with every renewal. Each command connection loads them when it
 * connects; a NOSCRIPT reply (the cache was flushed) loads them again, and a
 * presence update that got one is sent once more with EVAL. */
enum { LUA_ONLINE, LUA_OFFLINE, LUA_SWEEP, LUA_COUNT };
static struct {
    const char *body;
    char sha[41];
} lua[LUA_COUNT] = {{presence_online_lua, ""}, {presence_offline_lua, ""}, {presence_sweep_lua, ""}};
static pthread_once_t lua_once = PTHREAD_ONCE_INIT;

static void lua_hash(void)
{
    for (int i = 0; i < LUA_COUNT; i++) {
        unsigned char d[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)lua[i].body, strlen(lua[i].body), d);
        for (int j = 0; j < SHA_DIGEST_LENGTH; j++)
            snprintf(lua[i].sha + 2 * j, 3, "%02x", d[j]);
    }
}

void gc__presence_init_once(void)
{
    pthread_once(&lua_once, lua_hash);
}

static void lua_loaded_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    (void)arg;
    if (rep && rep->type == REDIS_REPLY_ERROR)
        CM_WARN_RATELIMITED("event=script_load_error err=\"%s\"", rep->str);
}

void gc__lua_load(gc_worker *cw)
{
    for (int i = 0; i < LUA_COUNT; i++) {
        const char *argv[] = {"SCRIPT", "LOAD", lua[i].body};
        gc__redis_cmd(cw, lua_loaded_cb, NULL, 3, argv);
    }
}

static int is_noscript(const redisReply *rep)
{
    return rep && rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "NOSCRIPT", 8);
}

typedef struct {
    gc_worker *cw;
    int online;
    int eval; /* sent with the script's body */
    char uid[]; /* exact size: a connection burst queues one per user */
} presence_ctx;

static presence_ctx *presence_ctx_new(gc_worker *cw, const char *uid, int online)
{
    size_t n = strlen(uid) + 1;
    presence_ctx *x = pr_malloc(sizeof *x + n);
    x->cw = cw;
    x->online = online;
    x->eval = 0;
    memcpy(x->uid, uid, n);
    return x;
}

static void presence_send(gc_worker *cw, const char *uid, int online, int eval);

static void presence_rooms_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    presence_ctx *x = arg;
    if (rep && rep->type == REDIS_REPLY_ARRAY) {
        pr_buf pkt;
        pr_buf_init(&pkt, 4096);
        if (chat_presence_packet(&pkt, x->uid, x->online) == 0)
            for (size_t i = 0; i < rep->elements; i++)
                if (rep->element[i]->type == REDIS_REPLY_STRING)
                    gc__publish(x->cw, rep->element[i]->str, x->uid, pr_buf_view(&pkt), NULL,
                                NULL);
        pr_buf_dispose(&pkt);
    }
    pr_free(x);
}

/* Tells the user's rooms that the user came online or went offline. */
static void publish_presence(gc_worker *cw, const char *uid, int online)
{
    presence_ctx *x = presence_ctx_new(cw, uid, online);
    chat_key key = chat_key_user_rooms(uid);
    const char *argv[] = {"SMEMBERS", key.s};
    if (gc__redis_cmd(cw, presence_rooms_cb, x, 2, argv) != 0)
        pr_free(x);
}

static void presence_changed_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    presence_ctx *x = arg;
    if (is_noscript(rep) && !x->eval) {
        gc__lua_load(x->cw);
        presence_send(x->cw, x->uid, x->online, 1);
        pr_free(x);
        return;
    }
    /* online: nobody else had the user (0 before); offline: nobody left */
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0)
        publish_presence(x->cw, x->uid, x->online);
    else if (rep && rep->type == REDIS_REPLY_ERROR)
        CM_WARN_RATELIMITED("event=presence_script_error err=\"%s\"", rep->str);
    pr_free(x);
}

static void presence_send(gc_worker *cw, const char *uid, int online, int eval)
{
    char expiry[24], now[24], numkeys[] = "2";
    chat_key on = chat_key_presence_on(uid), exp = chat_key_presence_exp(chat_presence_shard(uid));
    uint64_t t = cm_wall_ms();
    snprintf(now, sizeof now, "%llu", (unsigned long long)t);
    snprintf(expiry, sizeof expiry, "%llu", (unsigned long long)(t + cw->cfg->presence_ttl_ms));
    presence_ctx *x = presence_ctx_new(cw, uid, online);
    x->eval = eval;
    int rc, i = online ? LUA_ONLINE : LUA_OFFLINE;
    const char *how = eval ? "EVAL" : "EVALSHA", *script = eval ? lua[i].body : lua[i].sha;
    if (online) {
        const char *argv[] = {how, script, numkeys, on.s, exp.s, cw->member.s, expiry, now, uid};
        rc = gc__redis_cmd(cw, presence_changed_cb, x, 9, argv);
    } else {
        const char *argv[] = {how, script, numkeys, on.s, exp.s, cw->member.s, now, uid};
        rc = gc__redis_cmd(cw, presence_changed_cb, x, 8, argv);
    }
    if (rc != 0)
        pr_free(x); /* Redis is down: the refresh after reconnecting catches up */
}

void gc__presence_update(gc_worker *cw, const char *uid, int online)
{
    presence_send(cw, uid, online, 0);
}

static void sweep_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    gc_worker *cw = arg;
    if (is_noscript(rep))
        gc__lua_load(cw); /* the next sweep finds it */
    if (!rep || rep->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < rep->elements; i++)
        if (rep->element[i]->type == REDIS_REPLY_STRING)
            publish_presence(cw, rep->element[i]->str, 0);
}

/* Every third of the TTL: renew our entries (re-announcing users Redis lost)
 * and sweep the entries of gateways that died. */
void gc__presence_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gc_worker *cw = arg;
    if (cm_redis_ready(cw->redis)) {
        pr_map_iter it = pr_map_iter_make(&cw->users);
        for (gc_entry *e; (e = (gc_entry *)pr_map_next(&it));)
            gc__presence_update(cw, e->key, 1);
        char now[24];
        snprintf(now, sizeof now, "%llu", (unsigned long long)cm_wall_ms());
        for (unsigned s = 0; s < CHAT_PRESENCE_SHARDS; s++) {
            chat_key key = chat_key_presence_exp(s), prefix = chat_key_presence_on_prefix(s);
            const char *argv[] = {"EVALSHA", lua[LUA_SWEEP].sha, "1", key.s, now, prefix.s};
            gc__redis_cmd(cw, sweep_cb, cw, 6, argv);
        }
    }
    gw_worker_schedule_flush(cw->w);
}

typedef struct {
    gc_worker *cw;
    int64_t ack_id;
    char sid[GW_SID_LEN + 1];
    unsigned pending;
    unsigned n;    /* users in online */
    pr_buf online; /* the ack's object so far: {"online":["USER",... */
} online_ctx;

static void online_free(online_ctx *x)
{
    pr_buf_dispose(&x->online);
    pr_free(x);
}

/* {"online": [users]} */
static void online_done(online_ctx *x)
{
    gw_socket *sock = gw_socket_find(x->cw->w, x->sid, "/");
    if (sock && pr_buf_append(&x->online, "]}", 2) == 0)
        gc__ack(sock, x->ack_id, pr_buf_view(&x->online));
    online_free(x);
}

typedef struct {
    online_ctx *x;
    char uid[CHAT_ID_MAX + 1];
} online_member;

static void online_count_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    online_member *m = arg;
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer > 0) {
        pr_buf *b = &m->x->online;
        size_t mark = b->len;
        if ((m->x->n == 0 || pr_buf_append_byte(b, ',') == 0) &&
            chat_json_str(b, m->uid, strlen(m->uid)) == 0)
            m->x->n++;
        else
            b->len = mark;
    }
    if (--m->x->pending == 0)
        online_done(m->x);
    pr_free(m);
}

static void online_members_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    online_ctx *x = arg;
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        gw_socket *sock = gw_socket_find(x->cw->w, x->sid, "/");
        if (sock)
            gc__reply_error(sock, "getOnline", x->ack_id, CHAT_ERR_UNAVAILABLE);
        online_free(x);
        return;
    }
    char now[24];
    snprintf(now, sizeof now, "%llu", (unsigned long long)cm_wall_ms());
    x->pending = 1; /* held until every count is asked */
    for (size_t i = 0; i < rep->elements; i++) {
        if (rep->element[i]->type != REDIS_REPLY_STRING ||
            !chat_id_valid(rep->element[i]->str, rep->element[i]->len))
            continue;
        online_member *m = pr_calloc(1, sizeof *m);
        m->x = x;
        snprintf(m->uid, sizeof m->uid, "%s", rep->element[i]->str);
        chat_key on = chat_key_presence_on(m->uid);
        const char *argv[] = {"ZCOUNT", on.s, now, "+inf"};
        if (gc__redis_cmd(x->cw, online_count_cb, m, 4, argv) == 0)
            x->pending++;
        else
            pr_free(m);
    }
    if (--x->pending == 0)
        online_done(x);
}

void gc__on_get_online(const gc_req *q)
{
    char room[CHAT_ID_MAX + 1];
    if (!gc__event_room(q, room, sizeof room, 0))
        return;
    online_ctx *x = pr_calloc(1, sizeof *x);
    x->cw = q->cw;
    x->ack_id = q->ack_id;
    snprintf(x->sid, sizeof x->sid, "%s", gw_session_sid(gw_socket_session(q->sock)));
    pr_buf_init(&x->online, (size_t)1 << 28);
    pr_buf_append(&x->online, "{\"online\":[", 11);
    chat_key key = chat_key_room_members(room);
    const char *argv[] = {"SMEMBERS", key.s};
    if (gc__redis_cmd(q->cw, online_members_cb, x, 2, argv) != 0) {
        online_free(x);
        gc__reply_error(q->sock, q->event, q->ack_id, CHAT_ERR_UNAVAILABLE);
    }
}

