/*
 * ingest/lease.c - which shards this replica owns (docs/storage.md
 * "Ownership (leases)").
 *
 * Every lease/3 each shard is renewed (owned: a compare-and-pexpire script)
 * or tried (not owned: SET NX PX). A shard taken is made ready before it is
 * read: its consumer group exists (XGROUP CREATE) and its last published
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

static void lease_lost(st_ingest *g, unsigned s, const char *why)
{
    st__shard *sh = &g->shards[s];
    if (!sh->owned)
        return;
    sh->owned = 0;
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
        pr_free(op);
        return;
    }
    char field_name[16];
    snprintf(field_name, sizeof field_name, "%u", op->shard);
    const char *argv[] = {"HGET", CHAT_KEY_POS, field_name};
    size_t lens[] = {4, strlen(CHAT_KEY_POS), strlen(field_name)};
    if (cm_redis_command(g->c->redis, pos_cb, op, 3, argv, lens) != 0) {
        sh->acquiring = 0;
        pr_free(op);
    }
}

static void acquire_cb(cm_redis *redis, redisReply *reply, void *arg)
{
    (void)redis;
    lease_op *op = arg;
    st_ingest *g = op->g;
    st__shard *sh = &g->shards[op->shard];
    if (!reply || reply->type != REDIS_REPLY_STATUS || g->stopping) {
        sh->acquiring = 0; /* someone else's (nil), or Redis away */
        if (reply && reply->type == REDIS_REPLY_STATUS)
            release(g, sh, NULL, NULL); /* got it while stopping: give it back */
        pr_free(op);
        return;
    }
    if (st_stream_create_group(g->c, chat_key_view(&sh->in_key), group_cb, op) != 0) {
        sh->acquiring = 0;
        pr_free(op);
    }
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
        } else if (!sh->owned && !sh->acquiring) {
            const char *argv[] = {"SET", sh->lease_key.s, c->replica_id, "NX", "PX", ms};
            size_t lens[] = {3, sh->lease_key.len, strlen(c->replica_id), 2, 2, strlen(ms)};
            lease_op *op = op_new(g, s);
            if (cm_redis_command(c->redis, acquire_cb, op, 6, argv, lens) == 0)
                sh->acquiring = 1;
            else
                pr_free(op);
        }
    }
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
        if (release(g, sh, release_cb, g) == 0) {
            g->releases++;
            n++;
        }
    }
    return n;
}
