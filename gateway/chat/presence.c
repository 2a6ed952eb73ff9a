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

/*
 * One presence shard's tick, for one worker: renews the listed users'
 * entries (ARGV[6..]), then, when ARGV[5] is "1", sweeps the shard's entries
 * past their expiry (gateways that died). KEYS[1] = {pN}:exp; ARGV: member,
 * expiry, now, the on-key prefix {pN}:on:, the sweep flag, users. Keys built
 * here share KEYS[1]'s hash tag, so the script stays within one slot.
 *
 * A renewal is one ZADD of the user's on-key, and the expiry set gets one
 * ZADD for all of them. Only when our entry was not there (Redis lost it, or
 * a sweep took it while this worker stalled past the TTL: then the user was
 * announced offline) is the user checked as the online script would: with
 * no other live entry it is announced online again. An entry of ours still
 * there but expired announces nothing: nobody announced it offline (the
 * sweep removes what it announces). Renewals come before the sweep, so our
 * own users are never swept. Returns {users announced online again, users
 * the sweep left with no live entry}.
 */
static const char presence_tick_lua[] =
    "local member, expiry, now, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
    "local lost, gone, exp = {}, {}, {}\n"
    "for i = 6, #ARGV do\n"
    "  local uid = ARGV[i]\n"
    "  local on = prefix .. uid\n"
    "  if redis.call('ZADD', on, expiry, member) == 1 then\n"
    "    redis.call('ZREMRANGEBYSCORE', on, '-inf', now)\n"
    "    if redis.call('ZCARD', on) == 1 then lost[#lost + 1] = uid end\n"
    "  end\n"
    "  exp[#exp + 1] = expiry\n"
    "  exp[#exp + 1] = uid .. ' ' .. member\n"
    "end\n"
    "if #exp > 0 then redis.call('ZADD', KEYS[1], unpack(exp)) end\n"
    "if ARGV[5] == '1' then\n"
    "  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 500)\n"
    "  for _, e in ipairs(due) do\n"
    "    redis.call('ZREM', KEYS[1], e)\n"
    "    local sp = string.find(e, ' ', 1, true)\n"
    "    if sp then\n"
    "      local uid = string.sub(e, 1, sp - 1)\n"
    "      local on = prefix .. uid\n"
    "      redis.call('ZREM', on, string.sub(e, sp + 1))\n"
    "      redis.call('ZREMRANGEBYSCORE', on, '-inf', now)\n"
    "      if redis.call('ZCARD', on) == 0 then gone[#gone + 1] = uid end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return {lost, gone}\n";

/* The scripts run by hash (EVALSHA): the body, a few hundred bytes, is not
 * sent with every renewal. Each command connection loads them when it
 * connects; a NOSCRIPT reply (the cache was flushed) loads them again, and a
 * presence update that got one is sent once more with EVAL. */
enum { LUA_ONLINE, LUA_OFFLINE, LUA_TICK, LUA_COUNT };
static struct {
    const char *body;
    char sha[41];
} lua[LUA_COUNT] = {{presence_online_lua, ""}, {presence_offline_lua, ""}, {presence_tick_lua, ""}};
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

/* A tick's script call for one presence shard, with copies of its
 * arguments: a NOSCRIPT reply sends it once more with EVAL. */
typedef struct {
    gc_worker *cw;
    int argc;
    uint8_t eval;
    const char **argv; /* after lens[argc], then the arguments' bytes */
    size_t lens[];
} tick_ctx;

static void tick_send(tick_ctx *x);

static void tick_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    tick_ctx *x = arg;
    if (is_noscript(rep) && !x->eval) {
        gc__lua_load(x->cw);
        x->eval = 1;
        tick_send(x);
        return;
    }
    if (rep && rep->type == REDIS_REPLY_ERROR)
        CM_WARN_RATELIMITED("event=presence_script_error err=\"%s\"", rep->str);
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2)
        for (int k = 0; k < 2; k++) { /* {lost: online again, gone: offline} */
            const redisReply *l = rep->element[k];
            if (l->type != REDIS_REPLY_ARRAY)
                continue;
            for (size_t i = 0; i < l->elements; i++)
                if (l->element[i]->type == REDIS_REPLY_STRING)
                    publish_presence(x->cw, l->element[i]->str, k == 0);
        }
    pr_free(x);
}

static void tick_send(tick_ctx *x)
{
    x->argv[0] = x->eval ? "EVAL" : "EVALSHA";
    x->lens[0] = strlen(x->argv[0]);
    x->argv[1] = x->eval ? lua[LUA_TICK].body : lua[LUA_TICK].sha;
    x->lens[1] = strlen(x->argv[1]);
    if (cm_redis_command(x->cw->redis, tick_cb, x, x->argc, x->argv, x->lens) != 0)
        pr_free(x); /* Redis is down: the tick after reconnecting catches up */
}

/* Sends the script for pshard with users[0..n); sweep: this is the shard's
 * last call of the tick. */
static void tick_shard(gc_worker *cw, unsigned pshard, gc_entry **users, size_t n, int sweep,
                       const char *expiry, const char *now)
{
    enum { FIXED = 9 }; /* EVALSHA sha 1 exp member expiry now prefix sweep */
    chat_key exp = chat_key_presence_exp(pshard), prefix = chat_key_presence_on_prefix(pshard);
    const char *fixed[FIXED] = {"",        "",  "1",    exp.s, cw->member.s, expiry,
                                now,       prefix.s, sweep ? "1" : "0"};
    size_t bytes = 0, argc = FIXED + n;
    for (int i = 2; i < FIXED; i++)
        bytes += strlen(fixed[i]);
    for (size_t i = 0; i < n; i++)
        bytes += users[i]->len;
    tick_ctx *x = pr_malloc(sizeof *x + argc * (sizeof *x->lens + sizeof *x->argv) + bytes);
    x->cw = cw;
    x->argc = (int)argc;
    x->eval = 0;
    x->argv = (const char **)(void *)(x->lens + argc);
    char *p = (char *)(x->argv + argc);
    for (size_t i = 2; i < argc; i++) {
        const char *src = i < FIXED ? fixed[i] : users[i - FIXED]->key;
        size_t len = i < FIXED ? strlen(src) : users[i - FIXED]->len;
        memcpy(p, src, len);
        x->argv[i] = p;
        x->lens[i] = len;
        p += len;
    }
    tick_send(x);
}

/*
 * Every third of the TTL: renew our users' entries (re-announcing users
 * Redis lost) and sweep the entries of gateways that died, with one script
 * call per presence shard (cw->presence_batch users a call at most), all
 * pipelined on the command connection: in order with the online and offline
 * updates sent before and after.
 */
void gc__presence_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gc_worker *cw = arg;
    if (cm_redis_ready(cw->redis)) {
        /* the users by presence shard (a counting sort) */
        size_t n = cw->users.n, start[CHAT_PRESENCE_SHARDS + 1] = {0};
        gc_entry **by = pr_malloc((n ? n : 1) * sizeof *by);
        unsigned char *shard = pr_malloc(n ? n : 1);
        pr_map_iter it = pr_map_iter_make(&cw->users);
        size_t k = 0;
        for (gc_entry *e; k < n && (e = (gc_entry *)pr_map_next(&it)); k++) {
            by[k] = e;
            shard[k] = (unsigned char)chat_presence_shard(e->key);
            start[shard[k] + 1]++;
        }
        n = k;
        for (unsigned s = 0; s < CHAT_PRESENCE_SHARDS; s++)
            start[s + 1] += start[s];
        gc_entry **sorted = pr_malloc((n ? n : 1) * sizeof *sorted);
        size_t fill[CHAT_PRESENCE_SHARDS];
        memcpy(fill, start, sizeof fill);
        for (size_t i = 0; i < n; i++)
            sorted[fill[shard[i]]++] = by[i];
        char now[24], expiry[24];
        uint64_t t = cm_wall_ms();
        snprintf(now, sizeof now, "%llu", (unsigned long long)t);
        snprintf(expiry, sizeof expiry, "%llu", (unsigned long long)(t + cw->cfg->presence_ttl_ms));
        for (unsigned s = 0; s < CHAT_PRESENCE_SHARDS; s++) {
            size_t from = start[s], to = start[s + 1];
            do { /* at least one call: the sweep */
                size_t m = to - from < cw->presence_batch ? to - from : cw->presence_batch;
                tick_shard(cw, s, sorted + from, m, from + m == to, expiry, now);
                from += m;
            } while (from < to);
        }
        pr_free(sorted);
        pr_free(shard);
        pr_free(by);
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

