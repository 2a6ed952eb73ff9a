/*
 * ingest/lanes.c - batching (docs/storage.md "Storage's batch").
 *
 * A FIFO of batches per lane (a database connection; shard S uses lane
 * S mod lanes). A lane's head is in PostgreSQL (commit.c); while it is
 * there, what is read joins the batch behind it, which is sent the moment
 * the head commits. Only the head is ever in the database, so each shard's
 * batches commit, publish and are acked in read order. Batches are as big
 * as the load makes them: a message waits for at most the one transaction
 * ahead of it. Lanes hold disjoint shards, hence disjoint rooms, and run
 * side by side.
 *
 * Receipts ride: an entry of receipts alone, read while no batch is open,
 * waits up to --receipt-linger-ms for one (a message read meanwhile opens
 * it) rather than cost a transaction of its own. chat_batch counts the
 * lines of one (room, member) as their maximum and applies receipts before
 * messages, so a late "seen everything" never covers messages of the batch
 * it joins.
 */
#include <string.h>

#include "cm_clock.h"
#include "cm_log.h"
#include "config.h"
#include "ingest.h"

/* Batches per lane: the one in the database and the one filling behind it.
 * What is read while a batch is in the database joins the batch behind it
 * (up to --batch-size), which goes as soon as the first commits: a message
 * waits for at most the batch ahead of it, not for a read-ahead batch too. */
#define QUEUE_MAX 2

void st__batch_free(st__batch *b)
{
    st__fast_free(b->fast);
    for (size_t i = 0; i < b->n; i++)
        st__entry_free(b->e[i]);
    pr_free(b->e);
    pr_free(b);
}

static void batch_add(st__batch *b, entry *e)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->e = pr_realloc(b->e, b->cap * sizeof *b->e);
    }
    b->e[b->n++] = e;
}

/* The batch of lane L that new entries join: its tail while that is not in
 * the database and has room; NULL when a new batch is needed. */
static st__batch *open_tail(const st__lane *L)
{
    st__batch *t = L->tail;
    return t && !t->in_db && t->n < L->g->c->cfg->batch_size ? t : NULL;
}

int st__lane_full(const st__lane *L)
{
    return L->nbatches >= QUEUE_MAX && !open_tail(L);
}

static void enqueue(st__lane *L, st__batch *b)
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
static st__batch *lane_batch(st__lane *L)
{
    st__batch *b = pr_calloc(1, sizeof *b);
    b->read_ms = cm_now_ms();
    for (size_t i = 0; i < L->ncarry; i++) {
        batch_add(b, L->carry[i]);
        L->g->shards[L->carry[i]->shard].inflight--; /* enqueue counts them again */
    }
    L->ncarry = 0;
    return b;
}

/* The batch new work of lane L joins: its open tail, or a new batch
 * (led by the carried retries) at the end of its queue. */
static st__batch *work_batch(st__lane *L)
{
    st__batch *t = open_tail(L);
    if (!t) {
        t = lane_batch(L);
        enqueue(L, t);
    }
    return t;
}

/* The held receipts join batch t, behind what it has (read before them).
 * Their inflight counts stand: they were counted when held. */
static void release_into(st__lane *L, st__batch *t)
{
    for (size_t i = 0; i < L->nheld; i++)
        batch_add(t, L->held[i]);
    L->nheld = 0;
}

/* A batch opened without st__lane_add (a split, retries): it goes anyway,
 * the held receipts ride it. */
static void ride_open_tail(st__lane *L)
{
    st__batch *t = open_tail(L);
    if (L->nheld && t)
        release_into(L, t);
}

/* Whether entry e of shard s is receipts alone that may wait for a batch
 * going anyway: not while recovering (pending mode), nor without a linger. */
static int holdable(const st_ingest *g, unsigned s, const entry *e)
{
    return e->kind == 'R' && e->status != ST_E_INVALID && e->rc_len &&
           g->c->cfg->receipt_linger_ms > 0 && g->shards[s].mode == ST__MODE_LIVE;
}

void st__lane_add(st_ingest *g, unsigned s, entry *e)
{
    st__lane *L = &g->lanes[s % g->nlanes];
    g->shards[s].inflight++;
    if (holdable(g, s, e) && !open_tail(L)) {
        if (L->nheld == 0)
            L->held_since = cm_now_ms();
        L->held = pr_realloc(L->held, (L->nheld + 1) * sizeof *L->held);
        L->held[L->nheld++] = e;
        if (L->nheld >= g->c->cfg->batch_size) /* enough for a batch of their own */
            release_into(L, work_batch(L));
        return;
    }
    st__batch *t = work_batch(L);
    release_into(L, t);
    batch_add(t, e);
}

uint64_t st__lane_release_due(st__lane *L, uint64_t now, unsigned linger_ms, int force)
{
    if (L->nheld == 0)
        return 0;
    uint64_t due = L->held_since + linger_ms;
    if (!force && now < due)
        return due - now;
    release_into(L, work_batch(L));
    return 0;
}

st__batch *st__lane_detach_head(st__lane *L)
{
    st__batch *b = L->head;
    L->head = b->next;
    if (!L->head)
        L->tail = NULL;
    L->nbatches--;
    b->next = NULL;
    return b;
}

void st__lane_split_head(st__lane *L)
{
    st__batch *b = L->head;
    st__batch *second = pr_calloc(1, sizeof *second);
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
    ride_open_tail(L);
    CM_WARN("event=batch_split lane=%u size=%zu", L->index, half);
}

void st__lane_retire(st__lane *L, st__batch *b)
{
    st_ingest *g = L->g;
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
    st__batch_free(b);
    if (L->ncarry && (!L->tail || L->tail->in_db)) {
        /* no batch waiting to take them: one of their own */
        enqueue(L, lane_batch(L));
    } else if (L->ncarry) {
        /* into the first batch not yet in the database, in front */
        st__batch *w = L->head;
        while (w->in_db)
            w = w->next;
        size_t old = w->n;
        for (size_t i = 0; i < L->ncarry; i++)
            batch_add(w, NULL);
        memmove(w->e + L->ncarry, w->e, old * sizeof *w->e);
        memcpy(w->e, L->carry, L->ncarry * sizeof *L->carry);
        L->ncarry = 0; /* their inflight counts stand: they are queued */
    }
    ride_open_tail(L);
}

void st__lane_dispose(st__lane *L)
{
    while (L->head) {
        st__batch *b = L->head;
        L->head = b->next;
        st__batch_free(b);
    }
    for (size_t k = 0; k < L->ncarry; k++)
        st__entry_free(L->carry[k]);
    pr_free(L->carry);
    for (size_t k = 0; k < L->nheld; k++)
        st__entry_free(L->held[k]);
    pr_free(L->held);
    L->held = NULL;
    L->nheld = 0;
}
