/*
 * ingest/lease.c - which shards this replica owns (docs/storage.md
 * "Ownership (leases)").
 *
 * Every lease/3 this replica says it is alive in {st}:replicas (a sorted set
 * id -> expiry, on Redis' clock) and reads who else is: with K live
 * replicas, the one of rank R (ids in byte order) wants N/K shards, one more
 * when R < N mod K. Each owned shard is renewed (a compare-and-pexpire
 * script). Short of its target, a replica tries the free shards (SET NX PX)
 * and gives back at once any it gets beyond the target; over it, it gives
 * back the highest ones: such a shard is no longer read, its batches commit
 * and publish, then its lease is released (st__lease_handover) and another
 * replica takes it in pending mode. A shard taken is made ready before it
 * is read: its consumer group exists (XGROUP CREATE) and its last published
 * position is known ({st}:pos), then it starts in pending mode (read.c). A
 * lease that was not renewed in time is lost by the clock, without Redis.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_clock.h"
#include "cm_log.h"
#include "config.h"
#include "ingest.h"

static const char RENEW_LUA[] = "if redis.call('get', KEYS[1]) == ARGV[1] then "
                                "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
static const char RELEASE_LUA[] = "if redis.call('get', KEYS[1]) == ARGV[1] then "
                                  "return redis.call('del', KEYS[1]) else return 0 end";
/* KEYS[1] the live replicas (member id, score its expiry in Redis' ms);
 * ARGV[1] this replica's id, ARGV[2] its time to live: drops the expired,
 * adds or refreshes this one and returns the live ids. */
static const char HEARTBEAT_LUA[] =
    "redis.replicate_commands() " /* TIME before writes (a no-op from Redis 7) */
    "local t = redis.call('time') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "redis.call('zremrangebyscore', KEYS[1], '-inf', now) "
    "redis.call('zadd', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) "
    "redis.call('pexpire', KEYS[1], 2 * tonumber(ARGV[2])) "
    "return redis.call('zrange', KEYS[1], 0, -1)";

unsigned st__lease_target(unsigned nshards, unsigned live, unsigned rank)
{
    if (live == 0 || rank >= live)
        return 0;
    return nshards / live + (rank < nshards % live ? 1 : 0);
}

static void lease_lost(st_ingest *g, unsigned s, const char *why)
{
    st__shard *sh = &g->shards[s];
    if (!sh->owned)
        return;
    sh->owned = 0;
    sh->releasing = 0;
    st__rooms_clear(g);
    g->c->stats.lease_lost++;
    CM_WARN("event=lease_lost shard=%u why=%s", s, why);
}

/* Gives shard sh's lease back if it is still ours. */
static int release(st_ingest *g, const st__shard *sh, cm_redis_reply_cb cb, void *arg)
{
    const char *id = g->c->replica_id;
    const char *argv[] = {"EVAL", RELEASE_LUA, "1", sh->lease_key.s, id};
    size_t lens[] = {4, strlen(RELEASE_LUA), 1, sh->lease_key.len, strlen(id)};
    return cm_redis_command(g->c->redis, cb, arg, 5, argv, lens);
}

typedef struct {
    st_ingest *g;
    unsigned shard;
    uint64_t sent_ms;
} lease_op;

static lease_op *op_new(st_ingest *g, unsigned s)
{
    lease_op *op = pr_malloc(sizeof *op);
    op->g = g;
    op->shard = s;
    op->sent_ms = cm_now_ms();
    return op;
}

/* The shards this replica wants now, or -1 while it does not know who is
 * alive (no heartbeat answered within a lease): then it neither takes nor
 * gives back. */
static int target(const st_ingest *g)
{
    if (!g->live || cm_now_ms() >= g->view_until)
        return -1;
    return (int)st__lease_target(g->nshards, g->live, g->rank);
}

/* Shards held and kept: owned and not being given back, or taken and being
 * made ready. */
static unsigned kept(const st_ingest *g)
{
    unsigned n = 0;
    for (unsigned s = 0; s < g->nshards; s++) {
        const st__shard *sh = &g->shards[s];
        n += (sh->owned && !sh->releasing) || (sh->acquiring && sh->taken);
    }
    return n;
}

static void renew_cb(cm_redis *redis, redisReply *reply, void *arg)
{
    (void)redis;
    lease_op *op = arg;
    st__shard *sh = &op->g->shards[op->shard];
    sh->renewing = 0;
    if (reply && reply->type == REDIS_REPLY_INTEGER) {
        if (reply->integer == 1)
            sh->lease_until = op->sent_ms + op->g->c->cfg->lease_ms;
        else
            lease_lost(op->g, op->shard, "taken");
    }
    /* no reply: Redis is away; the lease runs out by the clock */
    pr_free(op);
}

/* The last step of taking a shard: its published position is known. */
static void pos_cb(cm_redis *redis, redisReply *reply, void *arg)
{
    (void)redis;
    lease_op *op = arg;
    st_ingest *g = op->g;
    st__shard *sh = &g->shards[op->shard];
    sh->acquiring = 0;
    sh->taken = 0;
    if (!reply || reply->type == REDIS_REPLY_ERROR || g->stopping) {
        /* tried again next period (the lease is ours meanwhile), or given
         * back when stopping */
        if (g->stopping)
            release(g, sh, NULL, NULL);
        pr_free(op);
        return;
    }
    sh->published = reply->type == REDIS_REPLY_STRING ? strtoll(reply->str, NULL, 10) : 0;
    sh->owned = 1;
    sh->releasing = 0;
    st__rooms_clear(g); /* another owner may have written its rooms meanwhile */
    sh->lease_until = op->sent_ms + g->c->cfg->lease_ms;
    sh->mode = ST__MODE_PENDING;
    strcpy(sh->cursor, "0");
    sh->republish_above = INT64_MAX;
    g->c->stats.lease_acquired++;
    CM_INFO("event=lease_acquired shard=%u published=%lld", op->shard, (long long)sh->published);
    pr_free(op);
    st__ingest_kick(g);
}

static void group_cb(cm_redis *redis, redisReply *reply, void *arg)
{
    (void)redis;
    lease_op *op = arg;
    st_ingest *g = op->g;
    st__shard *sh = &g->shards[op->shard];
    if (!reply || (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9))) {
        CM_WARN("event=xgroup_create_failed shard=%u err=\"%s\"", op->shard,
                reply ? reply->str : "link lost");
        sh->acquiring = 0;
        sh->taken = 0;
        pr_free(op);
        return;
    }
    char field_name[16];
    snprintf(field_name, sizeof field_name, "%u", op->shard);
    const char *argv[] = {"HGET", CHAT_KEY_POS, field_name};
    size_t lens[] = {4, strlen(CHAT_KEY_POS), strlen(field_name)};
    if (cm_redis_command(g->c->redis, pos_cb, op, 3, argv, lens) != 0) {
        sh->acquiring = 0;
        sh->taken = 0;
        pr_free(op);
    }
}

static void acquire_cb(cm_redis *redis, redisReply *reply, void *arg)
{
    (void)redis;
    lease_op *op = arg;
    st_ingest *g = op->g;
    st__shard *sh = &g->shards[op->shard];
    int t = target(g);
    if (!reply || reply->type != REDIS_REPLY_STATUS || g->stopping || t < 0 ||
        kept(g) >= (unsigned)t) {
        sh->acquiring = 0; /* someone else's (nil), or Redis away */
        /* got it while stopping, or beyond this replica's share (several
         * free shards were tried at once): give it back, nothing was read */
        if (reply && reply->type == REDIS_REPLY_STATUS)
            release(g, sh, NULL, NULL);
        pr_free(op);
        return;
    }
    sh->taken = 1;
    if (st_stream_create_group(g->c, chat_key_view(&sh->in_key), group_cb, op) != 0) {
        sh->acquiring = 0;
        sh->taken = 0;
        pr_free(op);
    }
}

/* Brings the shards held to this replica's target: the highest ones over
 * it are given back (st__lease_handover finishes that), short of it the
 * ones being given back are kept, then every free shard is tried. */
static void balance(st_ingest *g)
{
    st_ctx *c = g->c;
    int t = target(g);
    if (t < 0 || g->stopping || !cm_redis_ready(c->redis))
        return;
    unsigned want = (unsigned)t, have = kept(g);
    for (unsigned i = g->nshards; i-- > 0 && have > want;) {
        st__shard *sh = &g->shards[i];
        if (sh->owned && !sh->releasing) {
            sh->releasing = 1;
            have--;
            CM_INFO("event=shard_give_back shard=%u target=%u live=%u", i, want, g->live);
        }
    }
    for (unsigned i = 0; i < g->nshards && have < want; i++) {
        st__shard *sh = &g->shards[i];
        if (sh->owned && sh->releasing) {
            sh->releasing = 0;
            have++;
        }
    }
    if (have >= want)
        return;
    char ms[16];
    snprintf(ms, sizeof ms, "%u", c->cfg->lease_ms);
    /* from a place of its own, so that replicas short together meet less */
    unsigned from = g->live ? g->rank * g->nshards / g->live : 0;
    for (unsigned k = 0; k < g->nshards; k++) {
        unsigned s = (from + k) % g->nshards;
        st__shard *sh = &g->shards[s];
        if (sh->owned || sh->acquiring)
            continue;
        const char *argv[] = {"SET", sh->lease_key.s, c->replica_id, "NX", "PX", ms};
        size_t lens[] = {3, sh->lease_key.len, strlen(c->replica_id), 2, 2, strlen(ms)};
        lease_op *op = op_new(g, s);
        if (cm_redis_command(c->redis, acquire_cb, op, 6, argv, lens) == 0)
            sh->acquiring = 1;
        else
            pr_free(op);
    }
}

static void heartbeat_cb(cm_redis *redis, redisReply *reply, void *arg)
{
    (void)redis;
    lease_op *op = arg;
    st_ingest *g = op->g;
    g->heartbeating = 0;
    if (reply && reply->type == REDIS_REPLY_ARRAY) {
        const char *id = g->c->replica_id;
        unsigned live = 0, rank = 0;
        int me = 0;
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *e = reply->element[i];
            if (e->type != REDIS_REPLY_STRING)
                continue;
            live++;
            int cmp = strcmp(e->str, id);
            rank += cmp < 0;
            me |= cmp == 0;
        }
        if (me) {
            if (live != g->live || rank != g->rank)
                CM_INFO("event=replicas live=%u rank=%u target=%u", live, rank,
                        st__lease_target(g->nshards, live, rank));
            g->live = live;
            g->rank = rank;
            g->view_until = op->sent_ms + g->c->cfg->lease_ms;
            balance(g);
        }
    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        CM_WARN_RATELIMITED("event=heartbeat_failed err=\"%s\"", reply->str);
    }
    pr_free(op);
}

static void heartbeat(st_ingest *g)
{
    st_ctx *c = g->c;
    if (g->heartbeating)
        return;
    char ms[16];
    snprintf(ms, sizeof ms, "%u", c->cfg->lease_ms);
    const char *argv[] = {"EVAL", HEARTBEAT_LUA, "1", CHAT_KEY_REPLICAS, c->replica_id, ms};
    size_t lens[] = {4, strlen(HEARTBEAT_LUA), 1, strlen(CHAT_KEY_REPLICAS), strlen(c->replica_id),
                     strlen(ms)};
    lease_op *op = op_new(g, 0);
    if (cm_redis_command(c->redis, heartbeat_cb, op, 6, argv, lens) == 0)
        g->heartbeating = 1;
    else
        pr_free(op);
}

static void lease_tick(st_ingest *g)
{
    st_ctx *c = g->c;
    if (!cm_redis_ready(c->redis) || g->stopping)
        return;
    char ms[16];
    snprintf(ms, sizeof ms, "%u", c->cfg->lease_ms);
    uint64_t now = cm_now_ms();
    for (unsigned s = 0; s < g->nshards; s++) {
        st__shard *sh = &g->shards[s];
        if (sh->owned && now >= sh->lease_until) {
            lease_lost(g, s, "expired");
        }
        if (sh->owned && !sh->renewing) {
            const char *argv[] = {"EVAL", RENEW_LUA, "1", sh->lease_key.s, c->replica_id, ms};
            size_t lens[] = {
                4, strlen(RENEW_LUA), 1, sh->lease_key.len, strlen(c->replica_id), strlen(ms)};
            lease_op *op = op_new(g, s);
            if (cm_redis_command(c->redis, renew_cb, op, 6, argv, lens) == 0)
                sh->renewing = 1;
            else
                pr_free(op);
        }
    }
    /* taking and giving back wait for the answer: who is alive now */
    heartbeat(g);
}

static void lease_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    st_ingest *g = arg;
    lease_tick(g);
    st__ingest_kick(g);
}

void st__lease_start(st_ingest *g)
{
    st_ctx *c = g->c;
    g->lease_timer = event_new(c->base, -1, EV_PERSIST, lease_timer_cb, g);
    unsigned period = c->cfg->lease_ms / 3;
    struct timeval tv = {period / 1000, (period % 1000) * 1000};
    event_add(g->lease_timer, &tv);
    lease_tick(g);
}

void st__lease_stop(st_ingest *g)
{
    event_del(g->lease_timer);
    /* out of the live replicas at once: the others' targets grow now, and
     * they take the shards as they are released */
    const char *id = g->c->replica_id;
    const char *argv[] = {"ZREM", CHAT_KEY_REPLICAS, id};
    size_t lens[] = {4, strlen(CHAT_KEY_REPLICAS), strlen(id)};
    cm_redis_command(g->c->redis, NULL, NULL, 3, argv, lens);
    g->live = 0;
}

void st__lease_handover(st_ingest *g)
{
    if (g->stopping)
        return; /* st__lease_release_all gives back everything */
    for (unsigned s = 0; s < g->nshards; s++) {
        st__shard *sh = &g->shards[s];
        /* not read any more (a releasing shard reads only its pending
         * entries), nothing of it queued, committing or being acked */
        if (!sh->owned || !sh->releasing || sh->mode != ST__MODE_LIVE || sh->inflight ||
            sh->in_read || sh->acking)
            continue;
        sh->owned = 0;
        sh->releasing = 0;
        st__rooms_clear(g); /* the next owner writes its rooms */
        g->c->stats.lease_released++;
        CM_INFO("event=lease_handed_over shard=%u", s);
        release(g, sh, NULL, NULL);
    }
}

static void release_cb(cm_redis *redis, redisReply *reply, void *arg)
{
    (void)redis;
    (void)reply;
    st_ingest *g = arg;
    if (g->releases && --g->releases == 0)
        st__ingest_maybe_stopped(g);
}

unsigned st__lease_release_all(st_ingest *g)
{
    unsigned n = 0;
    for (unsigned s = 0; s < g->nshards; s++) {
        st__shard *sh = &g->shards[s];
        if (!sh->owned)
            continue;
        sh->owned = 0;
        sh->releasing = 0;
        if (release(g, sh, release_cb, g) == 0) {
            g->releases++;
            n++;
        }
    }
    return n;
}
