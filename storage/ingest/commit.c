/*
 * ingest/commit.c - a lane's head batch in PostgreSQL (docs/storage.md
 * "Storage's batch").
 *
 * One call of chat_batch (one round trip, one transaction) per batch, with
 * the entries turned into its two JSON arguments (entry.c), as a statement
 * prepared once per connection, under the session settings the batch
 * functions' plans need (st__batch_session). Its rows say
 * what became of each message; the batch then goes to publish.c and back to
 * its lane (lanes.c). A failed transaction is retried (same batch) with
 * backoff; nothing of it was published or acked. A batch that keeps failing
 * with a data error is split, a single entry dropped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_backoff.h"
#include "cm_clock.h"
#include "cm_log.h"
#include "config.h"
#include "ingest.h"

/* A batch failing with a data error this often is split, a single entry
 * dropped: one bad entry must not stop its shard. */
#define DATA_ERROR_ATTEMPTS 3

/* Set once per ingest connection, before the statement is prepared:
 * storage/sql/functions/README.md says why the batch functions need them.
 * They were SET clauses of each function (decision 50), which a function
 * saves and restores at every call. Only ingest
 * connections run with them (the API's pool keeps the defaults). */
const char st__batch_session[] = "SET plan_cache_mode = force_generic_plan; SET jit = off; "
                                    "SET enable_hashjoin = off; SET enable_mergejoin = off; "
                                    "SET enable_seqscan = off";

/* the columns are ST__COL_* of ingest.h; with --room-cache 0 */
static const char BATCH_SQL[] =
    "SELECT k, o, status, id, seq, shard, shard_pos, created_at, room, usr, sender, aggregate "
    "FROM chat_batch($1::jsonb, $2::jsonb)";
/* the same, then the batch's rooms and shards read back for the room cache */
static const char LOAD_SQL[] =
    "SELECT k, o, status, id, seq, shard, shard_pos, created_at, room, usr, sender, aggregate "
    "FROM chat_batch_load($1::jsonb, $2::jsonb, $3::text[], $4::int[], $5::int)";

/* The 'm' rows: what became of each message of b. */
static void apply_rows(st_ingest *g, st__batch *b, PGresult *res)
{
    st_stats *st = &g->c->stats;
    int rows = PQntuples(res);
    for (int i = 0; i < rows; i++) {
        const char *k = st__col(res, i, ST__COL_K), *o = st__col(res, i, ST__COL_O),
                   *status = st__col(res, i, ST__COL_STATUS);
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
            const char *id = st__col(res, i, ST__COL_ID), *seq = st__col(res, i, ST__COL_SEQ),
                       *sh = st__col(res, i, ST__COL_SHARD), *pos = st__col(res, i, ST__COL_POS),
                       *at = st__col(res, i, ST__COL_CREATED);
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

static void count_batch(st_ingest *g, st__batch *b)
{
    st_stats *st = &g->c->stats;
    static const size_t le[] = {1, 10, 100, 1000, 10000};
    st->batches++;
    st->batch_entries += b->n;
    st->batch_seconds_us += (cm_now_ms() - b->read_ms) * 1000;
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
static void count_latency(st_ingest *g, const st__batch *b)
{
    st_stats *st = &g->c->stats;
    uint64_t now = cm_wall_ms();
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

/* The 's' rows of chat_batch: its messageStatus events, in order. */
static st__event *row_events(PGresult *res, size_t *n)
{
    int rows = PQntuples(res);
    st__event *ev = pr_malloc((size_t)(rows ? rows : 1) * sizeof *ev);
    *n = 0;
    for (int i = 0; i < rows; i++) {
        const char *k = st__col(res, i, ST__COL_K), *seq = st__col(res, i, ST__COL_SEQ);
        if (!k || k[0] != 's' || !seq)
            continue;
        ev[(*n)++] = (st__event){st__col(res, i, ST__COL_ROOM), st__col(res, i, ST__COL_USR),
                                 st__col(res, i, ST__COL_STATUS), st__col(res, i, ST__COL_SENDER),
                                 st__col(res, i, ST__COL_AGGREGATE), strtoll(seq, NULL, 10)};
    }
    return ev;
}

/* A batch taken off the queue committed (res: chat_batch's rows, or the
 * fast statement's, already applied) or needed no database (res NULL): its
 * answers, its publishing, then back to its lane. */
static void finish_batch(st__lane *L, st__batch *b, PGresult *res)
{
    st_ingest *g = L->g;
    size_t nev = 0;
    st__event *rows_ev = NULL;
    const st__event *ev = NULL;
    if (b->fast) {
        ev = st__fast_events(b->fast, &nev);
        res = NULL;
    } else if (res) {
        apply_rows(g, b, res);
        ev = rows_ev = row_events(res, &nev);
    }
    count_batch(g, b);
    st__publish_batch(g, b, res, ev, nev);
    pr_free(rows_ev);
    count_latency(g, b);
    st__lane_retire(L, b);
    st__ingest_kick(g);
}

static int data_error(const char *error)
{
    /* SQLSTATE classes 22 (data exception) and 23 (integrity): this batch's
     * content, not the database, is at fault */
    return error && (!strncmp(error, "22", 2) || !strncmp(error, "23", 2)) && error[5] == ':';
}

/* Splits the head batch in two, or drops its only entry (acked with an
 * error), when its data keeps failing. */
static void split_head(st__lane *L)
{
    st__batch *b = L->head;
    if (b->n == 1) {
        entry *e = b->e[0];
        CM_ERROR("event=entry_dropped shard=%u id=%s msg=\"the database keeps refusing it\"",
                 e->shard, e->id);
        L->g->c->stats.entries_malformed++;
        e->status = ST_E_INVALID;
        if (e->kind == 'R')
            e->kind = 0;
        finish_batch(L, st__lane_detach_head(L), NULL);
        return;
    }
    st__lane_split_head(L);
}

void st__commit_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    st__lane *L = arg;
    if (L->head)
        L->head->in_db = 0;
    st__ingest_kick(L->g);
}

void st__commit_db_cb(PGresult *res, const char *error, void *arg)
{
    st__lane *L = arg;
    st_ingest *g = L->g;
    st__batch *b = L->head;
    if (!b)
        return;
    if (!res && b->fast) {
        /* a guard found the cache stale (or the statement failed): nothing
         * was written; at once through chat_batch_load, which reloads */
        g->c->stats.fast_aborts++;
        CM_LOG_RATELIMITED(CM_LOG_INFO, "event=fast_batch_refused lane=%u entries=%zu err=\"%s\"",
                           L->index, b->n, error ? error : "?");
        st__fast_abandon(g, b);
        b->slow = 1;
        b->in_db = 0;
        st__ingest_kick(g);
        return;
    }
    if (!res) {
        g->c->stats.db_errors++;
        CM_LOG_RATELIMITED(CM_LOG_ERROR,
                           "event=batch_failed lane=%u entries=%zu attempt=%u err=\"%s\"", L->index,
                           b->n, b->failures + 1, error ? error : "?");
        if (data_error(error) && ++b->data_errors >= DATA_ERROR_ATTEMPTS) {
            b->failures++;
            b->in_db = 0;
            split_head(L);
            st__ingest_kick(g);
            return;
        }
        /* counts the failure; in_db stays set until the timer fires */
        cm_backoff_arm(L->retry_timer, &b->failures, &g->seed);
        return;
    }
    b->in_db = 0;
    g->c->stats.batch_db_us += cm_now_us() - b->sent_us;
    /* the cache takes what the batch did (the next batch is planned on
     * it); the next batch goes to the database first, then this one is
     * published: the database works while Redis and this process do */
    st__lane_detach_head(L);
    if (b->fast)
        st__fast_apply(g, b, res);
    else if (g->c->cfg->room_cache)
        st__rooms_load(g, res);
    st__commit_submit(L, 0);
    finish_batch(L, b, res);
}

void st__commit_submit(st__lane *L, int may_finish)
{
    st_ingest *g = L->g;
    st__batch *b = L->head;
    if (!b || b->in_db || evtimer_pending(L->retry_timer, NULL))
        return;
    /* publishing needs the command link: a batch committed while it is down
     * would be acked nowhere; wait for it first */
    if (!cm_redis_ready(g->c->redis))
        return;
    int has_db_work = 0;
    for (size_t i = 0; i < b->n && !has_db_work; i++)
        has_db_work =
            ((b->e[i]->kind == 'm' || b->e[i]->kind == 'o') && b->e[i]->status == ST_E_NONE) ||
            (b->e[i]->kind == 'R' && b->e[i]->status != ST_E_INVALID && b->e[i]->rc_len);
    if (!has_db_work) {
        if (may_finish)
            finish_batch(L, st__lane_detach_head(L), NULL);
        return;
    }
    if (st__fast_submit(L, b))
        return;
    pr_buf msgs, rcpts, rooms, shards;
    pr_buf_init(&msgs, 256u << 20);
    pr_buf_init(&rcpts, 256u << 20);
    pr_buf_init(&rooms, 256u << 20);
    pr_buf_init(&shards, 1u << 20);
    if (st__entry_batch_json(b->e, b->n, &msgs, &rcpts) != 0) {
        pr_buf_dispose(&msgs);
        pr_buf_dispose(&rcpts);
        split_head(L); /* too big for the buffers: halve it, or drop one entry */
        st__ingest_kick(g);
        return;
    }
    int load = g->c->cfg->room_cache > 0;
    if (load) /* the batch changes its rooms: forgotten now, read back after it */
        st__rooms_forget_batch(g, b, &rooms, &shards);
    const char *params[5] = {msgs.ptr, rcpts.ptr, rooms.ptr, shards.ptr,
                             st__rooms_ring_text(g)};
    b->sent_us = cm_now_us();
    if (st_pg_query_prepared(L->db, load ? "chat_batch_load" : "chat_batch", st__batch_session,
                             load ? LOAD_SQL : BATCH_SQL, load ? 5 : 2, params, st__commit_db_cb,
                             L) == 0)
        b->in_db = 1;
    pr_buf_dispose(&msgs);
    pr_buf_dispose(&rcpts);
    pr_buf_dispose(&rooms);
    pr_buf_dispose(&shards);
}
