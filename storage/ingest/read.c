/*
 * ingest/read.c - reading the owned shards (docs/storage.md "Ownership").
 *
 * One XREADGROUP at a time on c->blocking over the owned shards, at most
 * --batch-size entries over all of them. On Redis Cluster the shards'
 * streams live on different slots, which one command cannot span: each
 * owned shard has its own XREADGROUP in flight instead (the link gives each
 * a connection of its own to the stream's master). A shard starts in "pending" mode
 * (entries a previous owner read but did not finish, by cursor) and moves
 * to ">" once none are left. Each entry read is parsed (entry.c) and goes to
 * its shard's lane (lanes.c).
 */
#include <stdio.h>
#include <string.h>

#include "cm_clock.h"
#include "cm_log.h"
#include "config.h"
#include "ingest.h"

#define BLOCK_MS "100"

static int read_shards(st_ingest *g, unsigned *which)
{
    uint64_t now = cm_now_ms();
    int n = 0;
    for (unsigned s = 0; s < g->nshards; s++) {
        st__shard *sh = &g->shards[s];
        if (!sh->owned || now >= sh->lease_until)
            continue;
        /* a shard given back reads no new entries (pending ones, yes: they
         * are finished before it goes) */
        if (sh->releasing && sh->mode == ST__MODE_LIVE)
            continue;
        /* pending entries are read again only when none of this shard's
         * entries is in a batch of ours: they would be stored twice */
        if (sh->mode == ST__MODE_PENDING && sh->inflight)
            continue;
        which[n++] = s;
    }
    return n;
}

/* The entries of shard s in one stream of the reply. */
static void take_entries(st_ingest *g, unsigned s, const redisReply *items)
{
    st__shard *sh = &g->shards[s];
    if (sh->mode == ST__MODE_PENDING && items->elements == 0) {
        /* the leftovers (a previous owner's, or ours from a broken
         * link) are done: pending reads wait for the shard's
         * batches, so everything read again has been published */
        sh->mode = ST__MODE_LIVE;
        sh->republish_above = INT64_MAX;
        CM_DEBUG("event=pending_done shard=%u", s);
    }
    for (size_t j = 0; j < items->elements; j++) {
        entry *e = st__entry_parse(items->element[j], s, g->nshards, g->c->room_key);
        if (!e)
            continue;
        if (e->status == ST_E_INVALID) {
            g->c->stats.entries_malformed++;
            CM_WARN_RATELIMITED("event=malformed_entry shard=%u id=%s kind=%c", s, e->id,
                                e->kind ? e->kind : '?');
        } else if (e->kind == 'o' && e->status == ST_E_FORBIDDEN) {
            CM_WARN_RATELIMITED("event=open_refused shard=%u id=%s msg=\"not the direct "
                                "room of its user and peer\"",
                                s, e->id);
        }
        if (sh->mode == ST__MODE_PENDING)
            snprintf(sh->cursor, sizeof sh->cursor, "%s", e->id);
        st__lane_add(g, s, e);
    }
}

/* The read of one shard (Redis Cluster), or of every owned one (shard -1). */
typedef struct {
    st_ingest *g;
    int shard;
} read_ctx;

static void read_cb(cm_redis *redis, redisReply *reply, void *arg)
{
    (void)redis;
    read_ctx *x = arg;
    st_ingest *g = x->g;
    for (unsigned s = 0; s < g->nshards; s++)
        if (x->shard < 0 || (unsigned)x->shard == s)
            g->shards[s].in_read = 0;
    pr_free(x);
    g->reading--;
    if (!reply) {
        /* the link broke with the read in flight: what it delivered is
         * pending now, st__read_start sees the new epoch */
        st__ingest_kick(g);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        CM_WARN_RATELIMITED("event=xreadgroup_failed err=\"%s\"", reply->str);
        if (!strncmp(reply->str, "NOGROUP", 7)) /* a stream was deleted: make it again */
            for (unsigned s = 0; s < g->nshards; s++)
                if (g->shards[s].owned)
                    st_stream_create_group(g->c, chat_key_view(&g->shards[s].in_key), NULL, NULL);
        /* the tick reads again: no tight loop against a failing Redis */
        g->read_pause_until = cm_now_ms() + 100;
        return;
    }
    if (reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *st = reply->element[i];
            unsigned s;
            if (st->type != REDIS_REPLY_ARRAY || st->elements != 2 ||
                st->element[0]->type != REDIS_REPLY_STRING ||
                chat_key_ingest_shard(pr_view_make(st->element[0]->str, st->element[0]->len),
                                      g->nshards, &s) != 0)
                continue;
            if (st->element[1]->type == REDIS_REPLY_ARRAY)
                take_entries(g, s, st->element[1]);
        }
    }
    st__ingest_kick(g);
}

/* XREADGROUP of shards which[0..n), count entries each at most; shard:
 * which[0] when it is that shard's own read, else -1. */
static void send_read(st_ingest *g, const unsigned *which, int n, unsigned count, int shard)
{
    int any_pending = 0;
    for (int i = 0; i < n; i++)
        any_pending |= g->shards[which[i]].mode == ST__MODE_PENDING;
    char count_s[16];
    snprintf(count_s, sizeof count_s, "%u", count);
    const char **argv = pr_malloc((size_t)(10 + 2 * n) * sizeof *argv);
    size_t *lens = pr_malloc((size_t)(10 + 2 * n) * sizeof *lens);
    int k = 0;
#define ARG(s) (argv[k] = (s), lens[k] = strlen(argv[k]), k++)
    ARG("XREADGROUP");
    ARG("GROUP");
    ARG(CHAT_GROUP);
    ARG(CHAT_CONSUMER_OWNER);
    ARG("COUNT");
    ARG(count_s);
    if (!any_pending) { /* a pending read returns at once anyway */
        ARG("BLOCK");
        ARG(BLOCK_MS);
    }
    ARG("STREAMS");
    for (int i = 0; i < n; i++)
        ARG(g->shards[which[i]].in_key.s);
    for (int i = 0; i < n; i++) {
        st__shard *sh = &g->shards[which[i]];
        ARG(sh->mode == ST__MODE_PENDING ? sh->cursor : ">");
    }
#undef ARG
    read_ctx *x = pr_malloc(sizeof *x);
    x->g = g;
    x->shard = shard;
    if (cm_redis_command(g->c->blocking, read_cb, x, k, argv, lens) == 0) {
        g->reading++;
        for (int i = 0; i < n; i++)
            g->shards[which[i]].in_read = 1;
    } else {
        pr_free(x);
    }
    pr_free(argv);
    pr_free(lens);
}

void st__read_start(st_ingest *g)
{
    st_ctx *c = g->c;
    int cluster = cm_redis_is_cluster(c->blocking);
    if ((g->reading && !cluster) || g->stopping || !cm_redis_ready(c->blocking) ||
        cm_now_ms() < g->read_pause_until)
        return;
    for (unsigned i = 0; i < g->nlanes; i++)
        if (st__lane_full(&g->lanes[i]))
            return;
    /* the links' connections changed: what was read or acked on the old
     * ones may be lost, so owned shards read their pending entries again */
    unsigned be = cm_redis_epoch(c->blocking), ce = cm_redis_epoch(c->redis);
    if (be != g->blocking_epoch || ce != g->cmd_epoch) {
        g->blocking_epoch = be;
        g->cmd_epoch = ce;
        for (unsigned s = 0; s < g->nshards; s++)
            g->shards[s].reread = g->shards[s].owned;
    }
    /* a shard whose read is in flight starts again once it is back */
    for (unsigned s = 0; s < g->nshards; s++) {
        st__shard *sh = &g->shards[s];
        if (sh->reread && !sh->in_read) {
            sh->reread = 0;
            sh->mode = ST__MODE_PENDING;
            strcpy(sh->cursor, "0");
        }
    }
    unsigned which[CHAT_SHARDS_MAX];
    int n = read_shards(g, which);
    if (n == 0)
        return;
    unsigned count = c->cfg->batch_size / (unsigned)n;
    if (count == 0)
        count = 1;
    if (!cluster) {
        send_read(g, which, n, count, -1);
        return;
    }
    for (int i = 0; i < n; i++)
        if (!g->shards[which[i]].in_read)
            send_read(g, &which[i], 1, count, (int)which[i]);
}
