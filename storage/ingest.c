/*
 * ingest.c - the owner side of the ingest shards (docs/storage.md "Ingest
 * shards" and "Storage's batch").
 *
 * Leases: every lease/3 each shard is renewed (owned) or tried (not owned).
 * Reading: one XREADGROUP at a time on c->blocking over the owned shards; a
 * shard starts in "pending" mode (entries a previous owner read but did not
 * finish, by cursor) and moves to ">" once none are left.
 * Batches: a FIFO per lane (a database connection; shard S uses lane S mod
 * lanes). A lane's head is in PostgreSQL (one call of chat_batch, one
 * transaction); while it is there, reading goes on and what is read joins
 * the batch behind it, which is sent the moment the head commits. Only the
 * head is ever in the database, so each shard's batches commit, publish and
 * are acked in read order. Batches are as big as the load makes them: a
 * message waits for at most the one transaction ahead of it. Lanes hold
 * disjoint shards, hence disjoint rooms, and run side by side. A failed
 * transaction is retried (same batch) with backoff; nothing of it was
 * published or acked.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat.h"
#include "config.h"
#include "entry.h"
#include "log.h"
#include "st.h"

#define GROUP "storage"
#define CONSUMER "owner"
#define BLOCK_MS "100"
/* Batches per lane: the one in the database and the one filling behind it.
 * What is read while a batch is in the database joins the batch behind it
 * (up to --batch-size), which goes as soon as the first commits: a message
 * waits for at most the batch ahead of it, not for a read-ahead batch too. */
#define QUEUE_MAX 2
/* A batch failing with a data error this often is split, a single entry
 * dropped: one bad entry must not stop its shard. */
#define DATA_ERROR_ATTEMPTS 3

static const char RENEW_LUA[] = "if redis.call('get', KEYS[1]) == ARGV[1] then "
                                "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
static const char RELEASE_LUA[] = "if redis.call('get', KEYS[1]) == ARGV[1] then "
                                  "return redis.call('del', KEYS[1]) else return 0 end";
/* {st}:pos only moves forward, even if a deposed owner publishes late */
static const char POS_LUA[] =
    "for i = 1, #ARGV, 2 do "
    "local cur = tonumber(redis.call('hget', KEYS[1], ARGV[i]) or '0') "
    "if tonumber(ARGV[i + 1]) > cur then redis.call('hset', KEYS[1], ARGV[i], ARGV[i + 1]) end "
    "end return 0";

typedef st__entry entry;

typedef struct batch {
    struct batch *next;
    entry **e;
    size_t n, cap;
    uint64_t read_ms;
    uint64_t sent_us; /* last sent to the database */
    unsigned attempts, data_errors;
    int in_db;
} batch;

enum { MODE_PENDING, MODE_LIVE };

typedef struct {
    char in_key[32];
    char lease_key[32];
    int owned;
    int acquiring; /* SET NX / XGROUP / HGET in flight */
    int renewing;
    uint64_t lease_until; /* monotonic ms */
    int mode;
    char cursor[48];   /* pending mode: last id read */
    unsigned inflight; /* entries of this shard in queued batches */
    int64_t published; /* last shard position published */
    /* A batch's commands were lost (link down): the entries come back as
     * 'dup' and every one above this position is published again, even if
     * a later batch got through meanwhile. Until the pending entries drain. */
    int64_t republish_above;
} shard_t;

/* A lane: one database connection and its FIFO of batches. Shard S goes
 * to lane S mod nlanes, so each shard's batches commit in order while the
 * lanes' transactions run side by side (they touch disjoint rooms). */
typedef struct lane {
    st_ingest *g;
    unsigned index;
    st_pg *db;          /* lane 0: c->ingest_db */
    batch *head, *tail; /* head: in the database, or next to go */
    unsigned nbatches;
    struct event *retry_timer; /* database retry of the head batch */
    entry **carry;             /* 'retry' entries for the next batch */
    size_t ncarry;
} lane;

#define MAX_LANES 16

struct st_ingest {
    st_ctx *c;
    unsigned nshards;
    shard_t *shards;
    lane lanes[MAX_LANES];
    unsigned nlanes;
    struct event *lease_timer;
    struct event *kick; /* deferred: read or submit */
    int reading;
    uint64_t read_pause_until;
    struct event *tick; /* reads again after a pause or a reconnect */
    unsigned blocking_epoch, cmd_epoch;
    unsigned seed;
    /* stop */
    int stopping;
    void (*stopped)(void *);
    void *stopped_arg;
    struct event *stop_deadline;
    unsigned releases; /* lease releases in flight */
    int stop_done;
};

uint64_t st_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t st_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void kick(st_ingest *g)
{
    event_active(g->kick, EV_TIMEOUT, 0);
}

/* ---- entries ---- */

static void batch_free(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        st__entry_free(b->e[i]);
    pr_free(b->e);
    pr_free(b);
}

static void batch_add(batch *b, entry *e)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->e = pr_realloc(b->e, b->cap * sizeof *b->e);
    }
    b->e[b->n++] = e;
}

/* ---- leases ---- */

static void lease_lost(st_ingest *g, unsigned s, const char *why)
{
    shard_t *sh = &g->shards[s];
    if (!sh->owned)
        return;
    sh->owned = 0;
    g->c->stats.lease_lost++;
    ST_WARN("event=lease_lost shard=%u why=%s", s, why);
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
    op->sent_ms = st_now_ms();
    return op;
}

static void renew_cb(redisReply *reply, void *arg)
{
    lease_op *op = arg;
    shard_t *sh = &op->g->shards[op->shard];
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

static void pos_cb(redisReply *reply, void *arg)
{
    lease_op *op = arg;
    st_ingest *g = op->g;
    shard_t *sh = &g->shards[op->shard];
    sh->acquiring = 0;
    if (!reply || reply->type == REDIS_REPLY_ERROR || g->stopping) {
        /* tried again next period (the lease is ours meanwhile), or given
         * back when stopping */
        if (g->stopping) {
            const char *argv[] = {"EVAL", RELEASE_LUA, "1", sh->lease_key, g->c->replica_id};
            size_t lens[] = {4, strlen(RELEASE_LUA), 1, strlen(sh->lease_key),
                             strlen(g->c->replica_id)};
            st_redis_command(g->c->redis, NULL, NULL, 5, argv, lens);
        }
        pr_free(op);
        return;
    }
    sh->published = reply->type == REDIS_REPLY_STRING ? strtoll(reply->str, NULL, 10) : 0;
    sh->owned = 1;
    sh->lease_until = op->sent_ms + g->c->cfg->lease_ms;
    sh->mode = MODE_PENDING;
    strcpy(sh->cursor, "0");
    sh->republish_above = INT64_MAX;
    g->c->stats.lease_acquired++;
    ST_INFO("event=lease_acquired shard=%u published=%lld", op->shard, (long long)sh->published);
    pr_free(op);
    kick(g);
}

static void group_cb(redisReply *reply, void *arg)
{
    lease_op *op = arg;
    st_ingest *g = op->g;
    shard_t *sh = &g->shards[op->shard];
    if (!reply || (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9))) {
        ST_WARN("event=xgroup_create_failed shard=%u err=\"%s\"", op->shard,
                reply ? reply->str : "link lost");
        sh->acquiring = 0;
        pr_free(op);
        return;
    }
    char field_name[16];
    snprintf(field_name, sizeof field_name, "%u", op->shard);
    const char *argv[] = {"HGET", "{st}:pos", field_name};
    size_t lens[] = {4, 8, strlen(field_name)};
    if (st_redis_command(g->c->redis, pos_cb, op, 3, argv, lens) != 0) {
        sh->acquiring = 0;
        pr_free(op);
    }
}

static void acquire_cb(redisReply *reply, void *arg)
{
    lease_op *op = arg;
    st_ingest *g = op->g;
    shard_t *sh = &g->shards[op->shard];
    if (!reply || reply->type != REDIS_REPLY_STATUS || g->stopping) {
        sh->acquiring = 0; /* someone else's (nil), or Redis away */
        if (reply && reply->type == REDIS_REPLY_STATUS) {
            /* got it while stopping: give it back */
            const char *argv[] = {"EVAL", RELEASE_LUA, "1", sh->lease_key, g->c->replica_id};
            size_t lens[] = {4, strlen(RELEASE_LUA), 1, strlen(sh->lease_key),
                             strlen(g->c->replica_id)};
            st_redis_command(g->c->redis, NULL, NULL, 5, argv, lens);
        }
        pr_free(op);
        return;
    }
    /* the group starts at 0: entries added before it existed are read too */
    const char *argv[] = {"XGROUP", "CREATE", sh->in_key, GROUP, "0", "MKSTREAM"};
    size_t lens[] = {6, 6, strlen(sh->in_key), strlen(GROUP), 1, 8};
    if (st_redis_command(g->c->redis, group_cb, op, 6, argv, lens) != 0) {
        sh->acquiring = 0;
        pr_free(op);
    }
}

static void lease_tick(st_ingest *g)
{
    st_ctx *c = g->c;
    if (!st_redis_ready(c->redis) || g->stopping)
        return;
    char ms[16];
    snprintf(ms, sizeof ms, "%u", c->cfg->lease_ms);
    uint64_t now = st_now_ms();
    for (unsigned s = 0; s < g->nshards; s++) {
        shard_t *sh = &g->shards[s];
        if (sh->owned && now >= sh->lease_until) {
            lease_lost(g, s, "expired");
        }
        if (sh->owned && !sh->renewing) {
            const char *argv[] = {"EVAL", RENEW_LUA, "1", sh->lease_key, c->replica_id, ms};
            size_t lens[] = {
                4, strlen(RENEW_LUA), 1, strlen(sh->lease_key), strlen(c->replica_id), strlen(ms)};
            lease_op *op = op_new(g, s);
            if (st_redis_command(c->redis, renew_cb, op, 6, argv, lens) == 0)
                sh->renewing = 1;
            else
                pr_free(op);
        } else if (!sh->owned && !sh->acquiring) {
            const char *argv[] = {"SET", sh->lease_key, c->replica_id, "NX", "PX", ms};
            size_t lens[] = {3, strlen(sh->lease_key), strlen(c->replica_id), 2, 2, strlen(ms)};
            lease_op *op = op_new(g, s);
            if (st_redis_command(c->redis, acquire_cb, op, 6, argv, lens) == 0)
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
    kick(g);
}

/* ---- reading ---- */

static void read_cb(redisReply *reply, void *arg);

static int shard_of_key(const st_ingest *g, const char *key, size_t len, unsigned *out)
{
    unsigned s;
    char tail;
    if (len < 8 || sscanf(key, "{i:%u}:i%c", &s, &tail) != 2 || tail != 'n' || s >= g->nshards)
        return -1;
    if (strcmp(key, g->shards[s].in_key) != 0)
        return -1;
    *out = s;
    return 0;
}

static int read_shards(st_ingest *g, unsigned *which)
{
    uint64_t now = st_now_ms();
    int n = 0;
    for (unsigned s = 0; s < g->nshards; s++) {
        shard_t *sh = &g->shards[s];
        if (!sh->owned || now >= sh->lease_until)
            continue;
        /* pending entries are read again only when none of this shard's
         * entries is in a batch of ours: they would be stored twice */
        if (sh->mode == MODE_PENDING && sh->inflight)
            continue;
        which[n++] = s;
    }
    return n;
}

/* The batch of lane L that new entries join: its tail while that is not in
 * the database and has room; NULL when a new batch is needed. */
static batch *open_tail(const lane *L)
{
    batch *t = L->tail;
    return t && !t->in_db && t->n < L->g->c->cfg->batch_size ? t : NULL;
}

static int lane_full(const lane *L)
{
    return L->nbatches >= QUEUE_MAX && !open_tail(L);
}

static void start_read(st_ingest *g)
{
    st_ctx *c = g->c;
    if (g->reading || g->stopping || !st_redis_ready(c->blocking) ||
        st_now_ms() < g->read_pause_until)
        return;
    for (unsigned i = 0; i < g->nlanes; i++)
        if (lane_full(&g->lanes[i]))
            return;
    /* the links' connections changed: what was read or acked on the old
     * ones may be lost, so owned shards read their pending entries again */
    unsigned be = st_redis_epoch(c->blocking), ce = st_redis_epoch(c->redis);
    if (be != g->blocking_epoch || ce != g->cmd_epoch) {
        g->blocking_epoch = be;
        g->cmd_epoch = ce;
        for (unsigned s = 0; s < g->nshards; s++)
            if (g->shards[s].owned) {
                g->shards[s].mode = MODE_PENDING;
                strcpy(g->shards[s].cursor, "0");
            }
    }
    unsigned which[CHAT_SHARDS_MAX];
    int n = read_shards(g, which);
    if (n == 0)
        return;
    int any_pending = 0;
    for (int i = 0; i < n; i++)
        any_pending |= g->shards[which[i]].mode == MODE_PENDING;
    unsigned count = c->cfg->batch_size / (unsigned)n;
    if (count == 0)
        count = 1;
    char count_s[16];
    snprintf(count_s, sizeof count_s, "%u", count);
    const char **argv = pr_malloc((size_t)(10 + 2 * n) * sizeof *argv);
    size_t *lens = pr_malloc((size_t)(10 + 2 * n) * sizeof *lens);
    int k = 0;
#define ARG(s) (argv[k] = (s), lens[k] = strlen(argv[k]), k++)
    ARG("XREADGROUP");
    ARG("GROUP");
    ARG(GROUP);
    ARG(CONSUMER);
    ARG("COUNT");
    ARG(count_s);
    if (!any_pending) { /* a pending read returns at once anyway */
        ARG("BLOCK");
        ARG(BLOCK_MS);
    }
    ARG("STREAMS");
    for (int i = 0; i < n; i++)
        ARG(g->shards[which[i]].in_key);
    for (int i = 0; i < n; i++) {
        shard_t *sh = &g->shards[which[i]];
        ARG(sh->mode == MODE_PENDING ? sh->cursor : ">");
    }
#undef ARG
    if (st_redis_command(c->blocking, read_cb, g, k, argv, lens) == 0)
        g->reading = 1;
    pr_free(argv);
    pr_free(lens);
}

static void submit(lane *L, int may_finish);

static void enqueue(lane *L, batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        L->g->shards[b->e[i]->shard].inflight++;
    if (L->tail)
        L->tail->next = b;
    else
        L->head = b;
    L->tail = b;
    L->nbatches++;
}

/* A new batch of lane L, led by its carried 'retry' entries: they were read
 * before what comes now. */
static batch *lane_batch(lane *L)
{
    batch *b = pr_calloc(1, sizeof *b);
    b->read_ms = st_now_ms();
    for (size_t i = 0; i < L->ncarry; i++) {
        batch_add(b, L->carry[i]);
        L->g->shards[L->carry[i]->shard].inflight--; /* enqueue counts them again */
    }
    L->ncarry = 0;
    return b;
}

static void read_cb(redisReply *reply, void *arg)
{
    st_ingest *g = arg;
    g->reading = 0;
    if (!reply) {
        /* the link broke with the read in flight: what it delivered is
         * pending now, start_read sees the new epoch */
        kick(g);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        ST_WARN_RATELIMITED("event=xreadgroup_failed err=\"%s\"", reply->str);
        if (!strncmp(reply->str, "NOGROUP", 7)) /* a stream was deleted: make it again */
            for (unsigned s = 0; s < g->nshards; s++)
                if (g->shards[s].owned) {
                    const char *argv[] = {"XGROUP", "CREATE", g->shards[s].in_key,
                                          GROUP,    "0",      "MKSTREAM"};
                    size_t lens[] = {6, 6, strlen(g->shards[s].in_key), strlen(GROUP), 1, 8};
                    st_redis_command(g->c->redis, NULL, NULL, 6, argv, lens);
                }
        /* the tick reads again: no tight loop against a failing Redis */
        g->read_pause_until = st_now_ms() + 100;
        return;
    }
    if (reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *st = reply->element[i];
            unsigned s;
            if (st->type != REDIS_REPLY_ARRAY || st->elements != 2 ||
                st->element[0]->type != REDIS_REPLY_STRING ||
                shard_of_key(g, st->element[0]->str, st->element[0]->len, &s) != 0)
                continue;
            const redisReply *items = st->element[1];
            shard_t *sh = &g->shards[s];
            if (items->type != REDIS_REPLY_ARRAY)
                continue;
            if (sh->mode == MODE_PENDING && items->elements == 0) {
                /* the leftovers (a previous owner's, or ours from a broken
                 * link) are done: pending reads wait for the shard's
                 * batches, so everything read again has been published */
                sh->mode = MODE_LIVE;
                sh->republish_above = INT64_MAX;
                ST_DEBUG("event=pending_done shard=%u", s);
            }
            for (size_t j = 0; j < items->elements; j++) {
                entry *e = st__entry_parse(items->element[j], s, g->nshards, g->c->room_key);
                if (!e)
                    continue;
                if (e->status == ST_E_INVALID) {
                    g->c->stats.entries_malformed++;
                    ST_WARN_RATELIMITED("event=malformed_entry shard=%u id=%s kind=%c", s, e->id,
                                        e->kind ? e->kind : '?');
                } else if (e->kind == 'o' && e->status == ST_E_FORBIDDEN) {
                    ST_WARN_RATELIMITED("event=open_refused shard=%u id=%s msg=\"not the direct "
                                        "room of its user and peer\"",
                                        s, e->id);
                }
                if (sh->mode == MODE_PENDING)
                    snprintf(sh->cursor, sizeof sh->cursor, "%s", e->id);
                lane *L = &g->lanes[s % g->nlanes];
                batch *t = open_tail(L);
                if (!t) {
                    t = lane_batch(L);
                    enqueue(L, t);
                }
                batch_add(t, e);
                sh->inflight++;
            }
        }
    }
    kick(g);
}

/* ---- the batch in the database ---- */

static const char BATCH_SQL[] =
    "SELECT k, o, status, id, seq, shard, shard_pos, created_at, room, usr, sender, aggregate "
    "FROM chat_batch($1::jsonb, $2::jsonb)";

/* A row's text column, or "" for NULL. */
static const char *col(PGresult *res, int row, int c)
{
    return PQgetisnull(res, row, c) ? NULL : PQgetvalue(res, row, c);
}

/* ---- publishing a committed batch ---- */

typedef struct {
    const char **argv;
    size_t *lens;
    int n, cap;
} cmd;

static void cmd_add(cmd *m, const char *s, size_t len)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 16;
        m->argv = pr_realloc(m->argv, (size_t)m->cap * sizeof *m->argv);
        m->lens = pr_realloc(m->lens, (size_t)m->cap * sizeof *m->lens);
    }
    m->argv[m->n] = s;
    m->lens[m->n] = len;
    m->n++;
}

static void cmd_dispose(cmd *m)
{
    pr_free(m->argv);
    pr_free(m->lens);
}

static void publish_env(st_ctx *c, const char *channel, pr_view env)
{
    const char *argv[] = {"PUBLISH", channel, env.ptr};
    size_t lens[] = {7, strlen(channel), env.len};
    st_redis_command(c->redis, NULL, NULL, 3, argv, lens);
}

static void append_ack(pr_buf *json, entry *e)
{
    pr_buf_reset(json);
    if (e->kind == 'o' && e->status == ST_E_NONE) {
        /* committed (a batch with a valid open always goes to the
         * database): the room and its two members exist */
        pr_buf_append(json, "{\"roomId\":", 10);
        st__json_str(json, e->r, strlen(e->r));
        pr_buf_append_byte(json, '}');
        return;
    }
    switch (e->status) {
    case ST_E_NEW:
    case ST_E_DUP:
        pr_buf_appendf(json, "{\"id\":\"%s\",\"seq\":%lld,\"roomId\":", e->mid, (long long)e->seq);
        st__json_str(json, e->r, strlen(e->r));
        pr_buf_appendf(json, ",\"createdAt\":\"%s\",\"status\":\"sent\"}", e->created);
        break;
    case ST_E_FORBIDDEN: pr_buf_append(json, "{\"error\":\"not a member\"}", 24); break;
    case ST_E_REUSED: pr_buf_append(json, "{\"error\":\"clientMsgId reused\"}", 30); break;
    default: pr_buf_append(json, "{\"error\":\"invalid payload\"}", 27); break;
    }
}

/* Whether e gets an A1 line: it has a reply address and either an ack id,
 * or (no callback: a = -1) an error its sender must still hear of. */
static int answered(const entry *e)
{
    if ((e->kind != 'm' && e->kind != 'o') || !e->g || e->status == ST_E_RETRY)
        return 0;
    if (e->a >= 0)
        return 1;
    return e->kind == 'm' ? e->status != ST_E_NEW && e->status != ST_E_DUP
                          : e->status != ST_E_NONE;
}

/* One A1 per reply channel, with every ack of the batch for it: messages'
 * and the answers to "open" entries of joinChats that wait for them. */
static void publish_acks(st_ingest *g, batch *b)
{
    size_t n = b->n;
    char *done = pr_calloc(n ? n : 1, 1);
    pr_buf env, json;
    pr_buf_init(&env, 64u << 20);
    pr_buf_init(&json, 4096);
    for (size_t i = 0; i < n; i++) {
        entry *e = b->e[i];
        if (done[i] || !answered(e))
            continue;
        pr_buf_reset(&env);
        chat_aenv_begin(&env);
        for (size_t j = i; j < n; j++) {
            entry *f = b->e[j];
            if (done[j] || !answered(f) || strcmp(f->g, e->g) != 0)
                continue;
            done[j] = 1;
            append_ack(&json, f);
            chat_aenv_add(&env, pr_view_make(f->s, strlen(f->s)), f->a, pr_buf_view(&json));
        }
        publish_env(g->c, e->g, pr_buf_view(&env));
    }
    pr_buf_dispose(&env);
    pr_buf_dispose(&json);
    pr_free(done);
}

static void publish_messages(st_ingest *g, batch *b, int64_t *top)
{
    pr_buf pkt, env;
    pr_buf_init(&pkt, ST_TEXT_HARD_MAX * 6 + 4096);
    pr_buf_init(&env, ST_TEXT_HARD_MAX * 6 + 8192);
    for (size_t i = 0; i < b->n; i++) {
        entry *e = b->e[i];
        if (e->kind != 'm')
            continue;
        /* a dup above the published position was stored by a batch that
         * never got to publish (its owner died after COMMIT, or the link
         * broke under its commands): publish now */
        const shard_t *sh = &g->shards[e->shard];
        if (!(e->status == ST_E_NEW || (e->status == ST_E_DUP && e->rshard == e->shard &&
                                        (e->pos > sh->published || e->pos > sh->republish_above))))
            continue;
        st_msg m = {e->mid, e->seq, e->r, e->u, e->n, e->l, e->x, e->x_len, e->created, e->c};
        pr_buf_reset(&pkt);
        pr_buf_reset(&env);
        chat_menv h = {pr_view_make(e->r, strlen(e->r)), e->seq, e->rshard, e->pos,
                       pr_view_make(e->u, strlen(e->u))};
        if (st_message_packet(&pkt, &m) != 0 || chat_menv_encode(&env, &h, pr_buf_view(&pkt)) != 0)
            continue;
        char channel[CHAT_ID_MAX + 16];
        snprintf(channel, sizeof channel, "room:{%s}", e->r);
        publish_env(g->c, channel, pr_buf_view(&env));
        if (e->pos > top[e->rshard])
            top[e->rshard] = e->pos;
    }
    pr_buf_dispose(&pkt);
    pr_buf_dispose(&env);
}

static void publish_positions(st_ingest *g, const int64_t *top)
{
    cmd m = {0};
    char nums[CHAT_SHARDS_MAX][2][24];
    cmd_add(&m, "EVAL", 4);
    cmd_add(&m, POS_LUA, strlen(POS_LUA));
    cmd_add(&m, "1", 1);
    cmd_add(&m, "{st}:pos", 8);
    int any = 0;
    for (unsigned s = 0; s < g->nshards; s++) {
        if (top[s] <= 0)
            continue;
        if (top[s] > g->shards[s].published)
            g->shards[s].published = top[s];
        snprintf(nums[s][0], sizeof nums[s][0], "%u", s);
        snprintf(nums[s][1], sizeof nums[s][1], "%lld", (long long)top[s]);
        cmd_add(&m, nums[s][0], strlen(nums[s][0]));
        cmd_add(&m, nums[s][1], strlen(nums[s][1]));
        any = 1;
    }
    if (any)
        st_redis_command(g->c->redis, NULL, NULL, m.n, m.argv, m.lens);
    cmd_dispose(&m);
}

static void publish_joins_and_status(st_ingest *g, PGresult *res, char which)
{
    st_ctx *c = g->c;
    int rows = PQntuples(res);
    pr_buf pkt, env;
    pr_buf_init(&pkt, 4096);
    pr_buf_init(&env, 4096);
    for (int i = 0; i < rows; i++) {
        const char *k = col(res, i, 0);
        if (!k || k[0] != which)
            continue;
        const char *room = col(res, i, 8), *usr = col(res, i, 9);
        if (!room || !usr)
            continue;
        if (which == 'j') {
            /* the membership cache only: for direct rooms the gateways
             * publish J1 themselves (docs/storage.md, J1) */
            char members[CHAT_ID_MAX + 16], rooms[CHAT_ID_MAX + 16];
            snprintf(members, sizeof members, "{r:%s}:members", room);
            snprintf(rooms, sizeof rooms, "{u:%s}:rooms", usr);
            const char *a1[] = {"SADD", members, usr};
            size_t l1[] = {4, strlen(members), strlen(usr)};
            const char *a2[] = {"SADD", rooms, room};
            size_t l2[] = {4, strlen(rooms), strlen(room)};
            st_redis_command(c->redis, NULL, NULL, 3, a1, l1);
            st_redis_command(c->redis, NULL, NULL, 3, a2, l2);
            continue;
        }
        const char *status = col(res, i, 2), *sender = col(res, i, 10), *agg = col(res, i, 11),
                   *seq = col(res, i, 4);
        if (!status || !sender || !agg || !seq)
            continue;
        pr_buf_reset(&pkt);
        pr_buf_reset(&env);
        pr_buf_append(&pkt, "2[\"messageStatus\",{\"roomId\":", 28);
        st__json_str(&pkt, room, strlen(room));
        pr_buf_appendf(&pkt, ",\"seq\":%s,\"userId\":", seq);
        st__json_str(&pkt, usr, strlen(usr));
        pr_buf_appendf(&pkt, ",\"status\":\"%s\",\"aggregate\":\"%s\"}]", status, agg);
        if (chat_uenv_encode(&env, pr_view_make(sender, strlen(sender)), pr_buf_view(&pkt)) != 0)
            continue;
        char channel[CHAT_ID_MAX + 16];
        snprintf(channel, sizeof channel, "user:{%s}", sender);
        publish_env(c, channel, pr_buf_view(&env));
        c->stats.status_events++;
    }
    pr_buf_dispose(&pkt);
    pr_buf_dispose(&env);
}

typedef struct {
    st_ingest *g;
    unsigned shard;
    int64_t before; /* the shard's published position before this batch */
} ack_arg;

static void ack_cb(redisReply *reply, void *arg)
{
    ack_arg *x = arg;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        ST_WARN_RATELIMITED("event=xack_failed shard=%u err=\"%s\"", x->shard,
                            reply ? reply->str : "link lost");
        /* The link broke under this batch's commands: its M1s may be lost
         * with them. Its entries are still pending and come back as 'dup'
         * once the shard reads its pending entries again (the link's epoch
         * changed); forgetting that they were published makes them go out
         * then. */
        shard_t *sh = &x->g->shards[x->shard];
        if (x->before < sh->republish_above)
            sh->republish_above = x->before;
        if (sh->owned) { /* read this shard's pending entries again */
            sh->mode = MODE_PENDING;
            strcpy(sh->cursor, "0");
        }
    }
    pr_free(x);
}

static void ack_entries(st_ingest *g, batch *b, const int64_t *before)
{
    for (unsigned s = 0; s < g->nshards; s++) {
        cmd ack = {0}, del = {0};
        for (size_t i = 0; i < b->n; i++) {
            entry *e = b->e[i];
            if (e->shard != s || e->status == ST_E_RETRY)
                continue;
            if (ack.n == 0) {
                cmd_add(&ack, "XACK", 4);
                cmd_add(&ack, g->shards[s].in_key, strlen(g->shards[s].in_key));
                cmd_add(&ack, GROUP, strlen(GROUP));
                cmd_add(&del, "XDEL", 4);
                cmd_add(&del, g->shards[s].in_key, strlen(g->shards[s].in_key));
            }
            cmd_add(&ack, e->id, strlen(e->id));
            cmd_add(&del, e->id, strlen(e->id));
        }
        if (ack.n) {
            ack_arg *x = pr_malloc(sizeof *x);
            x->g = g;
            x->shard = s;
            x->before = before[s];
            if (st_redis_command(g->c->redis, ack_cb, x, ack.n, ack.argv, ack.lens) != 0) {
                ack_cb(NULL, x); /* not even sent: the same as lost */
            } else {
                st_redis_command(g->c->redis, NULL, NULL, del.n, del.argv, del.lens);
            }
        }
        cmd_dispose(&ack);
        cmd_dispose(&del);
    }
}

/* After COMMIT, in the contract's order: the membership cache of new direct
 * rooms, messages (M1), acks (A1), shard positions, statuses (U1), then XACK
 * and XDEL. Commands are pipelined on the command link. */
static void publish_batch(st_ingest *g, batch *b, PGresult *res)
{
    int64_t top[CHAT_SHARDS_MAX] = {0}, before[CHAT_SHARDS_MAX];
    for (unsigned s = 0; s < g->nshards; s++)
        before[s] = g->shards[s].published;
    if (res)
        publish_joins_and_status(g, res, 'j');
    publish_messages(g, b, top);
    publish_acks(g, b);
    publish_positions(g, top);
    if (res)
        publish_joins_and_status(g, res, 's');
    ack_entries(g, b, before);
}

static void apply_rows(st_ingest *g, batch *b, PGresult *res)
{
    st_stats *st = &g->c->stats;
    int rows = PQntuples(res);
    for (int i = 0; i < rows; i++) {
        const char *k = col(res, i, 0), *o = col(res, i, 1), *status = col(res, i, 2);
        if (!k || k[0] != 'm' || !o || !status)
            continue;
        size_t idx = (size_t)strtoul(o, NULL, 10);
        if (idx >= b->n || b->e[idx]->kind != 'm')
            continue;
        entry *e = b->e[idx];
        if (!strcmp(status, "new"))
            e->status = ST_E_NEW;
        else if (!strcmp(status, "dup"))
            e->status = ST_E_DUP;
        else if (!strcmp(status, "forbidden"))
            e->status = ST_E_FORBIDDEN;
        else if (!strcmp(status, "reused"))
            e->status = ST_E_REUSED;
        else
            e->status = ST_E_RETRY;
        if (e->status == ST_E_NEW || e->status == ST_E_DUP) {
            const char *id = col(res, i, 3), *seq = col(res, i, 4), *sh = col(res, i, 5),
                       *pos = col(res, i, 6), *at = col(res, i, 7);
            if (!id || !seq || !sh || !pos || !at) {
                e->status = ST_E_RETRY;
                continue;
            }
            snprintf(e->mid, sizeof e->mid, "%s", id);
            e->seq = strtoll(seq, NULL, 10);
            e->rshard = (unsigned)strtoul(sh, NULL, 10);
            e->pos = strtoll(pos, NULL, 10);
            snprintf(e->created, sizeof e->created, "%s", at);
            if (e->rshard >= g->nshards)
                e->rshard = e->shard;
        }
        switch (e->status) {
        case ST_E_NEW: st->messages_stored++; break;
        case ST_E_DUP: st->messages_duplicate++; break;
        case ST_E_FORBIDDEN: st->messages_forbidden++; break;
        case ST_E_REUSED: st->messages_reused++; break;
        default: st->messages_retried++; break;
        }
    }
    /* a message the function did not answer for is run again */
    for (size_t i = 0; i < b->n; i++)
        if (b->e[i]->kind == 'm' && b->e[i]->status == ST_E_NONE)
            b->e[i]->status = ST_E_RETRY;
}

static void count_batch(st_ingest *g, batch *b)
{
    st_stats *st = &g->c->stats;
    static const size_t le[] = {1, 10, 100, 1000, 10000};
    st->batches++;
    st->batch_entries += b->n;
    st->batch_seconds_us += (st_now_ms() - b->read_ms) * 1000;
    size_t k = 0;
    while (k < 5 && b->n > le[k])
        k++;
    st->batch_size_le[k]++;
    for (size_t i = 0; i < b->n; i++)
        if (b->e[i]->kind == 'R' && b->e[i]->status != ST_E_INVALID)
            st->receipts_applied += b->e[i]->nrc;
}

const unsigned st_latency_le[ST_LATENCY_BUCKETS - 1] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};

/* Time from XADD (the entry id's milliseconds) to now, for each new
 * message: where the ack latency goes, seen from storage. */
static void count_latency(st_ingest *g, const batch *b)
{
    st_stats *st = &g->c->stats;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    for (size_t i = 0; i < b->n; i++) {
        const entry *e = b->e[i];
        if (e->kind != 'm' || e->status != ST_E_NEW)
            continue;
        uint64_t at = strtoull(e->id, NULL, 10);
        uint64_t ms = now > at ? now - at : 0; /* clocks of two hosts */
        size_t k = 0;
        while (k < ST_LATENCY_BUCKETS - 1 && ms > st_latency_le[k])
            k++;
        st->latency_le[k]++;
        st->latency_ms_sum += ms;
    }
}

static batch *detach_head(lane *L)
{
    batch *b = L->head;
    L->head = b->next;
    if (!L->head)
        L->tail = NULL;
    L->nbatches--;
    b->next = NULL;
    return b;
}

/* A batch taken off the queue committed (res) or needed no database (res
 * NULL): publish it, keep its 'retry' entries, free it. */
static void finish_batch(lane *L, batch *b, PGresult *res)
{
    st_ingest *g = L->g;
    if (res)
        apply_rows(g, b, res);
    count_batch(g, b);
    publish_batch(g, b, res);
    count_latency(g, b);
    /* 'retry' entries stay in the stream's pending list and run again in a
     * following batch, ahead of what is read after them */
    for (size_t i = 0; i < b->n; i++) {
        entry *e = b->e[i];
        g->shards[e->shard].inflight--;
        if (e->status == ST_E_RETRY) {
            e->status = ST_E_NONE;
            L->carry = pr_realloc(L->carry, (L->ncarry + 1) * sizeof *L->carry);
            L->carry[L->ncarry++] = e;
            g->shards[e->shard].inflight++;
            b->e[i] = NULL;
        }
    }
    batch_free(b);
    if (L->ncarry && (!L->tail || L->tail->in_db)) {
        /* no batch waiting to take them: one of their own */
        enqueue(L, lane_batch(L));
    } else if (L->ncarry) {
        /* into the first batch not yet in the database, in front */
        batch *w = L->head;
        while (w->in_db)
            w = w->next;
        size_t old = w->n;
        for (size_t i = 0; i < L->ncarry; i++)
            batch_add(w, NULL);
        memmove(w->e + L->ncarry, w->e, old * sizeof *w->e);
        memcpy(w->e, L->carry, L->ncarry * sizeof *L->carry);
        L->ncarry = 0; /* their inflight counts stand: they are queued */
    }
    kick(g);
}

static int data_error(const char *error)
{
    /* SQLSTATE classes 22 (data exception) and 23 (integrity): this batch's
     * content, not the database, is at fault */
    return error && (!strncmp(error, "22", 2) || !strncmp(error, "23", 2)) && error[5] == ':';
}

/* Splits the head batch in two, or drops its only entry (acked with an
 * error), when its data keeps failing. */
static void split_head(lane *L)
{
    st_ingest *g = L->g;
    batch *b = L->head;
    if (b->n == 1) {
        entry *e = b->e[0];
        ST_ERROR("event=entry_dropped shard=%u id=%s msg=\"the database keeps refusing it\"",
                 e->shard, e->id);
        g->c->stats.entries_malformed++;
        e->status = ST_E_INVALID;
        if (e->kind == 'R')
            e->kind = 0;
        finish_batch(L, detach_head(L), NULL);
        return;
    }
    batch *second = pr_calloc(1, sizeof *second);
    second->read_ms = b->read_ms;
    size_t half = b->n / 2;
    for (size_t i = half; i < b->n; i++)
        batch_add(second, b->e[i]);
    b->n = half;
    b->data_errors = 0;
    second->next = b->next;
    b->next = second;
    if (L->tail == b)
        L->tail = second;
    L->nbatches++;
    ST_WARN("event=batch_split lane=%u size=%zu", L->index, half);
}

static void retry_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lane *L = arg;
    if (L->head)
        L->head->in_db = 0;
    kick(L->g);
}

static void db_cb(PGresult *res, const char *error, void *arg)
{
    lane *L = arg;
    st_ingest *g = L->g;
    batch *b = L->head;
    if (!b)
        return;
    if (!res) {
        g->c->stats.db_errors++;
        b->attempts++;
        ST_LOG_RATELIMITED(ST_LOG_ERROR,
                           "event=batch_failed lane=%u entries=%zu attempt=%u err=\"%s\"", L->index,
                           b->n, b->attempts, error ? error : "?");
        if (data_error(error) && ++b->data_errors >= DATA_ERROR_ATTEMPTS) {
            b->in_db = 0;
            split_head(L);
            kick(g);
            return;
        }
        unsigned shift = b->attempts < 6 ? b->attempts : 6;
        unsigned base = 50u << shift;
        if (base > 5000)
            base = 5000;
        unsigned ms = base / 2 + (unsigned)(rand_r(&g->seed) % (base / 2 + 1));
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        evtimer_add(L->retry_timer, &tv); /* in_db stays set until then */
        return;
    }
    b->in_db = 0;
    g->c->stats.batch_db_us += st_now_us() - b->sent_us;
    /* the next batch goes to the database first, then this one is
     * published: the database works while Redis and this process do */
    detach_head(L);
    submit(L, 0);
    finish_batch(L, b, res);
}

/* Sends the head batch to the database. A batch with nothing for it is
 * finished on the spot when may_finish (not while another is published). */
static void submit(lane *L, int may_finish)
{
    st_ingest *g = L->g;
    batch *b = L->head;
    if (!b || b->in_db || evtimer_pending(L->retry_timer, NULL))
        return;
    /* publishing needs the command link: a batch committed while it is down
     * would be acked nowhere; wait for it first */
    if (!st_redis_ready(g->c->redis))
        return;
    int has_db_work = 0;
    for (size_t i = 0; i < b->n && !has_db_work; i++)
        has_db_work =
            ((b->e[i]->kind == 'm' || b->e[i]->kind == 'o') && b->e[i]->status == ST_E_NONE) ||
            (b->e[i]->kind == 'R' && b->e[i]->status != ST_E_INVALID && b->e[i]->rc_len);
    if (!has_db_work) {
        if (may_finish)
            finish_batch(L, detach_head(L), NULL);
        return;
    }
    pr_buf msgs, rcpts;
    pr_buf_init(&msgs, 256u << 20);
    pr_buf_init(&rcpts, 256u << 20);
    if (st__entry_batch_json(b->e, b->n, &msgs, &rcpts) != 0) {
        pr_buf_dispose(&msgs);
        pr_buf_dispose(&rcpts);
        split_head(L); /* too big for the buffers: halve it, or drop one entry */
        kick(g);
        return;
    }
    const char *params[2] = {msgs.ptr, rcpts.ptr};
    b->sent_us = st_now_us();
    if (st_pg_query(L->db, BATCH_SQL, 2, params, db_cb, L) == 0)
        b->in_db = 1;
    pr_buf_dispose(&msgs);
    pr_buf_dispose(&rcpts);
}

/* ---- the loop ---- */

static void maybe_stopped(st_ingest *g);

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    st_ingest *g = arg;
    for (unsigned i = 0; i < g->nlanes; i++)
        submit(&g->lanes[i], 1);
    start_read(g);
    if (g->stopping)
        maybe_stopped(g);
}

int st_ingest_start(st_ctx *c)
{
    st_ingest *g = pr_calloc(1, sizeof *g);
    g->c = c;
    g->nshards = c->cfg->ingest_shards;
    g->shards = pr_calloc(g->nshards, sizeof *g->shards);
    for (unsigned s = 0; s < g->nshards; s++) {
        snprintf(g->shards[s].in_key, sizeof g->shards[s].in_key, "{i:%u}:in", s);
        snprintf(g->shards[s].lease_key, sizeof g->shards[s].lease_key, "{i:%u}:lease", s);
        g->shards[s].republish_above = INT64_MAX;
    }
    g->seed = (unsigned)st_now_ms();
    g->blocking_epoch = st_redis_epoch(c->blocking);
    g->cmd_epoch = st_redis_epoch(c->redis);
    g->kick = event_new(c->base, -1, 0, kick_cb, g);
    g->nlanes = c->cfg->ingest_connections < g->nshards ? c->cfg->ingest_connections : g->nshards;
    if (g->nlanes == 0)
        g->nlanes = 1;
    if (g->nlanes > MAX_LANES)
        g->nlanes = MAX_LANES;
    for (unsigned i = 0; i < g->nlanes; i++) {
        lane *L = &g->lanes[i];
        L->g = g;
        L->index = i;
        L->retry_timer = evtimer_new(c->base, retry_timer_cb, L);
        if (i == 0) {
            L->db = c->ingest_db; /* migrated through, and ready */
        } else {
            char name[24];
            snprintf(name, sizeof name, "ingest-%u", i);
            L->db = st_pg_new(c->base, c->cfg->database_url, 1, name);
        }
    }
    g->lease_timer = event_new(c->base, -1, EV_PERSIST, lease_timer_cb, g);
    g->tick = event_new(c->base, -1, EV_PERSIST, kick_cb, g);
    struct timeval tick = {0, 50 * 1000};
    event_add(g->tick, &tick);
    unsigned period = c->cfg->lease_ms / 3;
    struct timeval tv = {period / 1000, (period % 1000) * 1000};
    event_add(g->lease_timer, &tv);
    c->ingest = g;
    lease_tick(g);
    return 0;
}

unsigned st_ingest_owned(const st_ctx *c)
{
    const st_ingest *g = c->ingest;
    unsigned n = 0;
    if (g)
        for (unsigned s = 0; s < g->nshards; s++)
            n += g->shards[s].owned;
    return n;
}

/* ---- stop ---- */

static void release_cb(redisReply *reply, void *arg)
{
    (void)reply;
    st_ingest *g = arg;
    if (g->releases && --g->releases == 0)
        maybe_stopped(g);
}

static void finish_stop(st_ingest *g)
{
    if (g->stop_done)
        return;
    g->stop_done = 1;
    event_del(g->stop_deadline);
    if (g->stopped)
        g->stopped(g->stopped_arg);
}

static unsigned queued_batches(const st_ingest *g)
{
    unsigned n = 0;
    for (unsigned i = 0; i < g->nlanes; i++)
        n += g->lanes[i].nbatches;
    return n;
}

static void maybe_stopped(st_ingest *g)
{
    if (g->stop_done || g->reading || queued_batches(g))
        return;
    if (g->releases)
        return;
    /* the batches are done: give the shards back so another replica takes
     * them now rather than after the lease runs out */
    st_ctx *c = g->c;
    int released_any = 0;
    for (unsigned s = 0; s < g->nshards; s++) {
        shard_t *sh = &g->shards[s];
        if (!sh->owned)
            continue;
        sh->owned = 0;
        const char *argv[] = {"EVAL", RELEASE_LUA, "1", sh->lease_key, c->replica_id};
        size_t lens[] = {4, strlen(RELEASE_LUA), 1, strlen(sh->lease_key), strlen(c->replica_id)};
        if (st_redis_command(c->redis, release_cb, g, 5, argv, lens) == 0) {
            g->releases++;
            released_any = 1;
        }
    }
    if (!released_any)
        finish_stop(g);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    st_ingest *g = arg;
    ST_WARN("event=stop_deadline batches=%u msg=\"unfinished entries stay pending for the next "
            "owner\"",
            queued_batches(g));
    finish_stop(g);
}

void st_ingest_stop(st_ctx *c, void (*done)(void *arg), void *arg)
{
    st_ingest *g = c->ingest;
    if (!g) {
        done(arg);
        return;
    }
    g->stopping = 1;
    g->stopped = done;
    g->stopped_arg = arg;
    event_del(g->lease_timer);
    /* the batches have a lease's time to finish: after that the shards may
     * belong to someone else anyway */
    g->stop_deadline = evtimer_new(c->base, deadline_cb, g);
    unsigned ms = c->cfg->lease_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(g->stop_deadline, &tv);
    kick(g);
}

void st_ingest_free(st_ctx *c)
{
    st_ingest *g = c->ingest;
    if (!g)
        return;
    /* the extra lanes' connections first: their callbacks (NULL) still find
     * their lane (lane 0's pool is c->ingest_db, freed by main) */
    for (unsigned i = 1; i < g->nlanes; i++)
        st_pg_free(g->lanes[i].db);
    for (unsigned i = 0; i < g->nlanes; i++) {
        lane *L = &g->lanes[i];
        while (L->head) {
            batch *b = L->head;
            L->head = b->next;
            batch_free(b);
        }
        for (size_t k = 0; k < L->ncarry; k++)
            st__entry_free(L->carry[k]);
        pr_free(L->carry);
        event_free(L->retry_timer);
    }
    event_free(g->kick);
    event_free(g->lease_timer);
    event_free(g->tick);
    if (g->stop_deadline)
        event_free(g->stop_deadline);
    pr_free(g->shards);
    pr_free(g);
    c->ingest = NULL;
}
