/*
 * cache.c - the membership cache in Redis ({r:ROOM}:members and
 * {u:USER}:rooms, docs/storage.md "Keys") is rebuilt from PostgreSQL
 * whenever Redis has lost it.
 *
 * The marker {st}:cache is set after a complete rebuild; Redis losing its
 * data (a restart without persistence, a failover to an empty replica, a
 * flush) loses the marker too. Every CACHE_PERIOD_MS each replica asks
 * whether it is there; when it is not, the replica walks room_members in
 * primary-key order, CACHE_CHUNK rows at a time:
 *
 *   1. read a chunk, SADD each row to both sets (pipelined);
 *   2. once Redis has answered, ask PostgreSQL which of those rows are gone
 *      and SREM them. A removal that committed after step 1 read the row
 *      may have done its own SREM before our SADD; read again after the SADD,
 *      it is either gone (we SREM it) or committed later (its SREM comes
 *      after our SADD). Joins are never undone: they only add.
 *
 * then sets the marker. Gateways treat a membership miss as unknown while
 * the marker is absent (gateway/app_chat.c). Several replicas may rebuild at
 * once: SADD and SREM are idempotent. A rebuild interrupted by a lost Redis
 * link (which may have been a restart) or a database error starts over at
 * the next check.
 */
#include <string.h>

#include "chat.h"
#include "cm_clock.h"
#include "cm_log.h"
#include "config.h"
#include "st.h"

#define CACHE_CHUNK 2000
#define CACHE_PERIOD_MS 1000u

static const char CHUNK_SQL[] =
    "SELECT room_id, user_id FROM room_members WHERE (room_id, user_id) > ($1, $2)"
    " ORDER BY room_id, user_id LIMIT 2000";
_Static_assert(CACHE_CHUNK == 2000, "the LIMIT above");

/* $1: [{"r":ROOM,"u":USER},...] the rows written; answers those now gone. */
static const char GONE_SQL[] =
    "SELECT t.r, t.u FROM json_to_recordset($1::json) AS t(r text, u text)"
    " WHERE NOT EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = t.r AND m.user_id = t.u)";

enum { STEP_ADD, STEP_REMOVE };

struct st_cache {
    st_ctx *c;
    struct event *timer;
    int busy;                    /* a check or a rebuild in flight */
    int step;                    /* STEP_*: what the Redis replies awaited are for */
    int failed;                  /* a command of the current step failed */
    unsigned pending;            /* Redis replies the current step waits for */
    unsigned epoch;              /* the Redis link's epoch when the rebuild began */
    int nrows;                   /* rows of the current chunk */
    json_t *rows;                /* the chunk written: [{"r","u"}] */
    char *last_room, *last_user; /* the keyset position */
    uint64_t started_ms;
    uint64_t total;
};

static void chunk_read(st_cache *k);
static void gone_cb(PGresult *res, const char *error, void *arg);

static void set_pos(st_cache *k, const char *room, const char *user)
{
    pr_free(k->last_room);
    pr_free(k->last_user);
    k->last_room = pr_strndup(room, strlen(room));
    k->last_user = pr_strndup(user, strlen(user));
}

static void done(st_cache *k)
{
    json_decref(k->rows);
    k->rows = NULL;
    k->busy = 0;
}

static void give_up(st_cache *k, const char *why)
{
    CM_WARN("event=cache_rebuild_failed why=\"%s\" rows=%llu", why, (unsigned long long)k->total);
    done(k);
}

static int redis_ok(const redisReply *r)
{
    return r && r->type != REDIS_REPLY_ERROR;
}

static void marker_cb(cm_redis *redis, redisReply *reply, void *arg)
{
    (void)redis;
    st_cache *k = arg;
    if (!redis_ok(reply)) {
        give_up(k, "marker");
        return;
    }
    k->c->stats.cache_rebuilds++;
    CM_INFO("event=cache_rebuilt rows=%llu ms=%llu", (unsigned long long)k->total,
            (unsigned long long)(cm_now_ms() - k->started_ms));
    done(k);
}

static void finish(st_cache *k)
{
    st_ctx *c = k->c;
    /* The link reconnected meanwhile: Redis may have restarted (empty) after
     * some chunks were written. Start over rather than vouch for them. */
    if (cm_redis_epoch(c->redis) != k->epoch) {
        give_up(k, "redis reconnected");
        return;
    }
    /* "WALL_MS REPLICA": when Redis lost its data, so gateways know the
     * recovery records went with it (docs/storage.md, Membership cache) */
    pr_buf value;
    pr_buf_init(&value, CHAT_ID_MAX + 32);
    chat_cache_mark_encode(&value, cm_wall_ms(), c->replica_id);
    const char *argv[] = {"SET", CHAT_KEY_CACHE, value.ptr ? value.ptr : ""};
    size_t lens[] = {3, strlen(CHAT_KEY_CACHE), value.len};
    if (cm_redis_command(c->redis, marker_cb, k, 3, argv, lens) != 0)
        give_up(k, "redis down");
    pr_buf_dispose(&value);
}

/* After a chunk's writes: the next chunk, or the marker after the last. */
static void chunk_done(st_cache *k)
{
    k->total += (uint64_t)k->nrows;
    json_decref(k->rows);
    k->rows = NULL;
    if (k->nrows < CACHE_CHUNK)
        finish(k);
    else
        chunk_read(k);
}

static void write_cb(cm_redis *redis, redisReply *reply, void *arg)
{
    (void)redis;
    st_cache *k = arg;
    if (!redis_ok(reply))
        k->failed = 1;
    if (--k->pending > 0)
        return;
    if (k->failed) {
        give_up(k, "redis write");
        return;
    }
    if (k->step == STEP_REMOVE) {
        chunk_done(k);
        return;
    }
    /* the SADDs are in: which of those rows left meanwhile? */
    char *json = json_dumps(k->rows, JSON_COMPACT);
    const char *params[] = {json};
    int rc = st_pg_query(k->c->db, GONE_SQL, 1, params, gone_cb, k);
    pr_free(json);
    if (rc != 0)
        give_up(k, "database busy");
}

unsigned st_cache_write(st_ctx *c, const char *verb, const char *room, const char *user,
                        cm_redis_reply_cb cb, void *arg)
{
    chat_key members = chat_key_room_members(room), rooms = chat_key_user_rooms(user);
    const char *a1[] = {verb, members.s, user};
    size_t l1[] = {strlen(verb), members.len, strlen(user)};
    const char *a2[] = {verb, rooms.s, room};
    size_t l2[] = {strlen(verb), rooms.len, strlen(room)};
    unsigned sent = 0;
    sent += cm_redis_command(c->redis, cb, arg, 3, a1, l1) == 0;
    sent += cm_redis_command(c->redis, cb, arg, 3, a2, l2) == 0;
    return sent;
}

/* Sends verb (SADD/SREM) for one membership to both sets; counts replies. */
static void write_pair(st_cache *k, const char *verb, const char *room, const char *user)
{
    unsigned sent = st_cache_write(k->c, verb, room, user, write_cb, k);
    k->pending += sent;
    if (sent < 2)
        k->failed = 1;
}

static int row_valid(PGresult *res, int i)
{
    return !PQgetisnull(res, i, 0) && !PQgetisnull(res, i, 1) &&
           chat_id_valid(PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0)) &&
           chat_id_valid(PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1));
}

/* Ends a step whose commands were all sent: waits for their replies, or
 * moves on at once when none were sent. */
static void step_sent(st_cache *k, void (*next)(st_cache *k))
{
    if (k->pending > 0)
        return; /* write_cb moves on (or gives up) after the last reply */
    if (k->failed)
        give_up(k, "redis down");
    else
        next(k);
}

static void gone_cb(PGresult *res, const char *error, void *arg)
{
    st_cache *k = arg;
    if (!res) {
        give_up(k, error ? error : "database");
        return;
    }
    k->step = STEP_REMOVE;
    k->failed = 0;
    for (int i = 0; i < PQntuples(res); i++)
        if (row_valid(res, i))
            write_pair(k, "SREM", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
    if (PQntuples(res) > 0)
        CM_INFO("event=cache_rebuild_retracted rows=%d", PQntuples(res));
    step_sent(k, chunk_done);
}

static void chunk_cb(PGresult *res, const char *error, void *arg)
{
    st_cache *k = arg;
    if (!res) {
        give_up(k, error ? error : "database");
        return;
    }
    k->nrows = PQntuples(res);
    k->step = STEP_ADD;
    k->failed = 0;
    k->rows = json_array();
    for (int i = 0; i < k->nrows; i++) {
        if (!row_valid(res, i))
            continue; /* not an id the chat accepts: nothing looks it up */
        const char *room = PQgetvalue(res, i, 0), *user = PQgetvalue(res, i, 1);
        json_array_append_new(k->rows, json_pack("{ssss}", "r", room, "u", user));
        write_pair(k, "SADD", room, user);
    }
    if (k->nrows > 0)
        set_pos(k, PQgetvalue(res, k->nrows - 1, 0), PQgetvalue(res, k->nrows - 1, 1));
    step_sent(k, chunk_done); /* nothing written (no valid rows): no re-read */
}

static void chunk_read(st_cache *k)
{
    const char *params[] = {k->last_room, k->last_user};
    if (st_pg_query(k->c->db, CHUNK_SQL, 2, params, chunk_cb, k) != 0)
        give_up(k, "database busy");
}

static void exists_cb(cm_redis *redis, redisReply *reply, void *arg)
{
    (void)redis;
    st_cache *k = arg;
    if (!reply || reply->type != REDIS_REPLY_INTEGER || reply->integer != 0 || k->c->stopping) {
        k->busy = 0; /* there, or Redis away: asked again next period */
        return;
    }
    k->epoch = cm_redis_epoch(k->c->redis);
    k->started_ms = cm_now_ms();
    k->total = 0;
    set_pos(k, "", "");
    CM_WARN("event=cache_rebuild_start why=marker_missing key=%s", CHAT_KEY_CACHE);
    chunk_read(k);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    st_cache *k = arg;
    st_ctx *c = k->c;
    if (k->busy || c->stopping || !cm_redis_ready(c->redis) || !st_pg_ready(c->db))
        return;
    const char *argv[] = {"EXISTS", CHAT_KEY_CACHE};
    size_t lens[] = {6, strlen(CHAT_KEY_CACHE)};
    if (cm_redis_command(c->redis, exists_cb, k, 2, argv, lens) == 0)
        k->busy = 1;
}

int st_cache_start(st_ctx *c)
{
    st_cache *k = pr_calloc(1, sizeof *k);
    k->c = c;
    c->cache = k;
    k->timer = event_new(c->base, -1, EV_PERSIST, tick, k);
    unsigned period =
        c->cfg->lease_ms / 3 < CACHE_PERIOD_MS ? c->cfg->lease_ms / 3 : CACHE_PERIOD_MS;
    struct timeval tv = {period / 1000, (period % 1000) * 1000};
    event_add(k->timer, &tv);
    tick(-1, 0, k); /* at once: a fresh Redis gets its cache before anyone asks */
    return 0;
}

void st_cache_free(st_ctx *c)
{
    st_cache *k = c->cache;
    if (!k)
        return;
    event_free(k->timer);
    json_decref(k->rows);
    pr_free(k->last_room);
    pr_free(k->last_user);
    pr_free(k);
    c->cache = NULL;
}
