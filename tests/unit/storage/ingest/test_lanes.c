/* Unit tests of storage/ingest/lanes.c: batching. Entries join the open
 * tail batch of their lane up to --batch-size, a lane holds at most
 * QUEUE_MAX batches, the shards' in-flight counts follow their entries, a
 * failing head is split in two, and a retired batch's 'retry' entries go
 * ahead of what was read after them; receipts alone wait (--receipt-linger-ms)
 * for a batch that goes anyway. lanes.c does no I/O: it is included
 * (for QUEUE_MAX and open_tail) and driven on a hand-built st_ingest. */
#include <stdio.h>
#include <string.h>

#include "ingest/lanes.c"
#include "t.h"

#define NSHARDS 4

static st_config cfg;
static st_ctx ctx;
static st__shard shards[NSHARDS];
static st_ingest ing;

/* nlanes lanes over NSHARDS shards, batch_size entries per batch. */
static st_ingest *setup(unsigned nlanes, unsigned batch_size)
{
    memset(&cfg, 0, sizeof cfg);
    memset(&ctx, 0, sizeof ctx);
    memset(shards, 0, sizeof shards);
    memset(&ing, 0, sizeof ing);
    cfg.batch_size = batch_size;
    ctx.cfg = &cfg;
    ing.c = &ctx;
    ing.nshards = NSHARDS;
    ing.shards = shards;
    ing.nlanes = nlanes;
    for (unsigned i = 0; i < nlanes; i++) {
        ing.lanes[i].g = &ing;
        ing.lanes[i].index = i;
    }
    return &ing;
}

static void teardown(st_ingest *g)
{
    for (unsigned i = 0; i < g->nlanes; i++)
        st__lane_dispose(&g->lanes[i]);
}

/* An entry of shard s whose stream id is id (it tells entries apart). */
static entry *mk(unsigned s, const char *id)
{
    entry *e = pr_calloc(1, sizeof *e);
    snprintf(e->id, sizeof e->id, "%s", id);
    e->shard = s;
    e->kind = 'm';
    return e;
}

static entry *add(st_ingest *g, unsigned s, const char *id)
{
    entry *e = mk(s, id);
    st__lane_add(g, s, e);
    return e;
}

/* The ids of batch b, comma-separated ("" for none). */
static const char *ids(const st__batch *b)
{
    static char out[256];
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; b && i < b->n; i++)
        used += (size_t)snprintf(out + used, sizeof out - used, "%s%s", i ? "," : "",
                                 b->e[i] ? b->e[i]->id : "NULL");
    return out;
}

static unsigned count(const st__lane *L)
{
    unsigned n = 0;
    for (const st__batch *b = L->head; b; b = b->next)
        n++;
    return n;
}

/* ---- entries join the open tail, up to --batch-size ---- */
static void test_join_tail(void)
{
    st_ingest *g = setup(2, 3);
    st__lane *L0 = &g->lanes[0], *L1 = &g->lanes[1];
    CHECK(L0->head == NULL && L0->tail == NULL && L0->nbatches == 0);
    add(g, 0, "a");
    CHECK(L0->head != NULL && L0->head == L0->tail);
    CHECK_EQ(L0->nbatches, 1);
    CHECK(L0->head->read_ms > 0); /* stamped when the batch opens */
    add(g, 2, "b");               /* shard 2 of 2 lanes: lane 0 */
    add(g, 0, "c");
    CHECK_EQ(L0->nbatches, 1);
    CHECK(!strcmp(ids(L0->head), "a,b,c"));
    CHECK(L1->head == NULL && L1->nbatches == 0); /* lane 1 untouched */
    add(g, 0, "d");                               /* the tail is full: a new batch */
    CHECK_EQ(L0->nbatches, 2);
    CHECK(L0->head->next == L0->tail);
    CHECK(!strcmp(ids(L0->head), "a,b,c"));
    CHECK(!strcmp(ids(L0->tail), "d"));
    add(g, 1, "e"); /* shard 1: lane 1 */
    add(g, 3, "f"); /* shard 3: lane 1 */
    CHECK_EQ(L1->nbatches, 1);
    CHECK(!strcmp(ids(L1->head), "e,f"));
    CHECK_EQ(count(L0), 2);
    /* in-flight counts per shard, whatever the lane and batch */
    CHECK_EQ(g->shards[0].inflight, 3);
    CHECK_EQ(g->shards[1].inflight, 1);
    CHECK_EQ(g->shards[2].inflight, 1);
    CHECK_EQ(g->shards[3].inflight, 1);
    teardown(g);
}

/* ---- a batch in the database takes no more entries ---- */
static void test_in_db(void)
{
    st_ingest *g = setup(1, 10);
    st__lane *L = &g->lanes[0];
    add(g, 0, "a");
    L->head->in_db = 1;
    add(g, 0, "b");
    CHECK_EQ(L->nbatches, 2);
    CHECK(!strcmp(ids(L->head), "a"));
    CHECK(!strcmp(ids(L->tail), "b"));
    add(g, 1, "c"); /* joins the batch behind the head */
    CHECK_EQ(L->nbatches, 2);
    CHECK(!strcmp(ids(L->tail), "b,c"));
    /* a lone batch in the database: the next entry opens a batch behind it */
    st__batch *h = st__lane_detach_head(L);
    st__batch_free(h);
    L->head->in_db = 1;
    add(g, 0, "d");
    CHECK_EQ(L->nbatches, 2);
    CHECK(!strcmp(ids(L->head), "b,c"));
    CHECK(!strcmp(ids(L->tail), "d"));
    teardown(g);
}

/* ---- at most QUEUE_MAX batches: a full lane makes reading wait ---- */
static void test_full(void)
{
    CHECK_EQ(QUEUE_MAX, 2); /* the one in the database and the one filling */
    st_ingest *g = setup(1, 2);
    st__lane *L = &g->lanes[0];
    CHECK(!st__lane_full(L)); /* empty */
    add(g, 0, "a");
    add(g, 0, "b");
    CHECK_EQ(L->nbatches, 1);
    CHECK(!st__lane_full(L)); /* one full batch: room for another */
    L->head->in_db = 1;
    add(g, 0, "c");
    CHECK_EQ(L->nbatches, 2);
    CHECK(!st__lane_full(L)); /* the tail has room */
    add(g, 0, "d");
    CHECK(st__lane_full(L)); /* two batches, the tail at --batch-size */
    /* the tail is open again once the head is gone */
    st__batch_free(st__lane_detach_head(L));
    CHECK_EQ(L->nbatches, 1);
    CHECK(!st__lane_full(L));
    /* two batches, the tail in the database (after a split): full */
    teardown(g);
    g = setup(1, 8);
    L = &g->lanes[0];
    for (int i = 0; i < 4; i++)
        add(g, 0, "x");
    st__lane_split_head(L);
    CHECK_EQ(L->nbatches, 2);
    CHECK(!st__lane_full(L)); /* the tail (2 of 8) has room */
    L->tail->in_db = 1;
    CHECK(st__lane_full(L)); /* no open tail and QUEUE_MAX batches */
    teardown(g);
}

/* ---- detaching the head keeps the FIFO ---- */
static void test_detach(void)
{
    st_ingest *g = setup(1, 1);
    st__lane *L = &g->lanes[0];
    add(g, 0, "a");
    add(g, 0, "b");
    add(g, 0, "c"); /* three batches of one (add does not check full) */
    CHECK_EQ(L->nbatches, 3);
    st__batch *b = st__lane_detach_head(L);
    CHECK(!strcmp(ids(b), "a"));
    CHECK(b->next == NULL);
    CHECK_EQ(L->nbatches, 2);
    CHECK(!strcmp(ids(L->head), "b"));
    CHECK(!strcmp(ids(L->tail), "c"));
    CHECK_EQ(g->shards[0].inflight, 3); /* still counted until retired */
    st__lane_retire(L, b);
    CHECK_EQ(g->shards[0].inflight, 2);
    st__batch_free(st__lane_detach_head(L));
    b = st__lane_detach_head(L);
    CHECK(!strcmp(ids(b), "c"));
    CHECK(L->head == NULL && L->tail == NULL && L->nbatches == 0);
    st__batch_free(b);
    /* an empty lane starts over */
    add(g, 0, "d");
    CHECK(L->head == L->tail && !strcmp(ids(L->head), "d"));
    teardown(g);
}

/* ---- splitting the head: two consecutive batches, same order ---- */
static void test_split(void)
{
    st_ingest *g = setup(1, 5);
    st__lane *L = &g->lanes[0];
    const char *names[] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 5; i++)
        add(g, 0, names[i]);
    add(g, 0, "f"); /* a second batch */
    st__batch *first = L->head, *behind = L->tail;
    first->read_ms = 1234;
    first->data_errors = 3;
    first->failures = 2;
    st__lane_split_head(L);
    CHECK_EQ(L->nbatches, 3);
    CHECK(L->head == first);
    CHECK(!strcmp(ids(L->head), "a,b"));
    CHECK(!strcmp(ids(L->head->next), "c,d,e"));
    CHECK(L->head->next->next == behind);
    CHECK(L->tail == behind);
    CHECK_EQ(L->head->next->read_ms, 1234); /* read together */
    CHECK_EQ(first->data_errors, 0);        /* the halves start over */
    CHECK_EQ(g->shards[0].inflight, 6);     /* nothing lost or counted twice */

    /* splitting the only batch moves the tail */
    teardown(g);
    g = setup(1, 5);
    L = &g->lanes[0];
    for (int i = 0; i < 3; i++)
        add(g, 0, names[i]);
    st__lane_split_head(L);
    CHECK_EQ(L->nbatches, 2);
    CHECK(!strcmp(ids(L->head), "a"));
    CHECK(!strcmp(ids(L->tail), "b,c"));
    CHECK(L->head->next == L->tail && L->tail->next == NULL);
    add(g, 0, "d"); /* joins the new tail */
    CHECK(!strcmp(ids(L->tail), "b,c,d"));
    teardown(g);
}

/* ---- retire: 'retry' entries go ahead of what was read after them ---- */

/* No batch waits behind: the retries make a batch of their own. */
static void test_retire_alone(void)
{
    st_ingest *g = setup(1, 10);
    st__lane *L = &g->lanes[0];
    add(g, 0, "a")->status = ST_E_NEW;
    entry *r1 = add(g, 1, "r1");
    add(g, 0, "b")->status = ST_E_DUP;
    entry *r2 = add(g, 0, "r2");
    add(g, 1, "c")->status = ST_E_FORBIDDEN;
    r1->status = ST_E_RETRY;
    r2->status = ST_E_RETRY;
    L->head->in_db = 1;
    CHECK_EQ(g->shards[0].inflight, 3);
    CHECK_EQ(g->shards[1].inflight, 2);
    st__batch *b = st__lane_detach_head(L);
    st__lane_retire(L, b);
    CHECK_EQ(L->nbatches, 1);
    CHECK(L->head == L->tail && L->head != NULL);
    CHECK(!strcmp(ids(L->head), "r1,r2")); /* in their read order */
    CHECK(!L->head->in_db);
    CHECK(L->head->e[0] == r1 && L->head->e[1] == r2); /* the same entries, kept */
    CHECK_EQ(r1->status, ST_E_NONE);                   /* to be stored again */
    CHECK_EQ(r2->status, ST_E_NONE);
    CHECK_EQ(L->ncarry, 0);
    CHECK_EQ(g->shards[0].inflight, 1); /* r2 */
    CHECK_EQ(g->shards[1].inflight, 1); /* r1 */
    /* what is read next joins them, behind */
    add(g, 0, "d");
    CHECK(!strcmp(ids(L->head), "r1,r2,d"));
    CHECK_EQ(g->shards[0].inflight, 2);
    teardown(g);
}

/* A batch waits behind (not in the database): the retries go in front. */
static void test_retire_in_front(void)
{
    st_ingest *g = setup(1, 3);
    st__lane *L = &g->lanes[0];
    add(g, 0, "a")->status = ST_E_NEW;
    entry *r = add(g, 2, "r");
    r->status = ST_E_RETRY;
    add(g, 0, "b")->status = ST_E_NEW;
    L->head->in_db = 1;
    add(g, 0, "x");
    add(g, 2, "y");
    add(g, 0, "z");
    CHECK_EQ(L->nbatches, 2);
    CHECK(st__lane_full(L));
    st__batch *waiting = L->tail;
    st__lane_retire(L, st__lane_detach_head(L));
    CHECK_EQ(L->nbatches, 1);
    CHECK(L->head == waiting && L->tail == waiting);
    /* in front, even past --batch-size: no batch of their own */
    CHECK(!strcmp(ids(waiting), "r,x,y,z"));
    CHECK_EQ(r->status, ST_E_NONE);
    CHECK_EQ(L->ncarry, 0);
    CHECK_EQ(g->shards[0].inflight, 2); /* x, z */
    CHECK_EQ(g->shards[2].inflight, 2); /* r, y */
    CHECK(!st__lane_full(L));
    add(g, 0, "w"); /* the tail is past --batch-size: a new batch */
    CHECK_EQ(L->nbatches, 2);
    CHECK(!strcmp(ids(L->tail), "w"));
    teardown(g);
}

/* Lane 0 (of one, batches of 10) split into [r,a] [b,c], r to retry. */
static st__lane *split_with_retry(st_ingest *g)
{
    st__lane *L = &g->lanes[0];
    entry *r = add(g, 0, "r");
    add(g, 0, "a");
    add(g, 0, "b");
    add(g, 0, "c");
    st__lane_split_head(L);
    CHECK(!strcmp(ids(L->head), "r,a") && !strcmp(ids(L->tail), "b,c"));
    r->status = ST_E_RETRY;
    return L;
}

/* The batch behind is in the database (the second half of a split): the
 * retries make a batch behind it. */
static void test_retire_behind_in_db(void)
{
    st_ingest *g = setup(1, 10);
    st__lane *L = split_with_retry(g);
    L->tail->in_db = 1;
    st__lane_retire(L, st__lane_detach_head(L));
    CHECK_EQ(L->nbatches, 2);
    CHECK(!strcmp(ids(L->head), "b,c"));
    CHECK(L->head->in_db);
    CHECK(!strcmp(ids(L->tail), "r"));
    CHECK(!L->tail->in_db);
    CHECK_EQ(g->shards[0].inflight, 3); /* r, b, c */
    teardown(g);
}

/* Several batches behind, the first in the database: retries join the first
 * one that is not. */
static void test_retire_first_waiting(void)
{
    st_ingest *g = setup(1, 10);
    st__lane *L = split_with_retry(g);
    L->head->in_db = 1;
    L->head->next->in_db = 1;
    /* a third batch waits behind both */
    add(g, 0, "d");
    CHECK_EQ(L->nbatches, 3);
    st__lane_retire(L, st__lane_detach_head(L));
    CHECK_EQ(L->nbatches, 2);
    CHECK(!strcmp(ids(L->head), "b,c"));
    CHECK(!strcmp(ids(L->tail), "r,d"));
    teardown(g);
}

/* A batch with no retries just goes; its counts fall. */
static void test_retire_plain(void)
{
    st_ingest *g = setup(2, 10);
    st__lane *L = &g->lanes[1];
    add(g, 1, "a")->status = ST_E_NEW;
    add(g, 3, "b")->status = ST_E_INVALID;
    add(g, 1, "c")->status = ST_E_REUSED;
    st__lane_retire(L, st__lane_detach_head(L));
    CHECK(L->head == NULL && L->tail == NULL && L->nbatches == 0);
    CHECK_EQ(g->shards[1].inflight, 0);
    CHECK_EQ(g->shards[3].inflight, 0);
    teardown(g);
}

/* Dispose frees queued batches and carried entries (the sanitizer build
 * reports what it would leak). */
static void test_dispose(void)
{
    st_ingest *g = setup(1, 2);
    st__lane *L = &g->lanes[0];
    add(g, 0, "a");
    add(g, 0, "b");
    add(g, 0, "c");
    L->carry = pr_realloc(L->carry, sizeof *L->carry);
    L->carry[L->ncarry++] = mk(0, "k");
    st__lane_dispose(L);
    CHECK(L->head == NULL);
}

/* ---- receipts alone ride the next batch (--receipt-linger-ms) ---- */

/* A receipt-only entry of shard s (rc: the JSON of its receipts). */
static entry *add_receipt(st_ingest *g, unsigned s, const char *id)
{
    entry *e = mk(s, id);
    e->kind = 'R';
    e->rc_len = 2;
    e->rc = pr_malloc(3);
    memcpy(e->rc, "{}", 3);
    e->nrc = 1;
    st__lane_add(g, s, e);
    return e;
}

/* The one lane of ing over live shards (reading new entries, not
 * recovering), batch_size entries per batch, a linger of linger ms. */
static st__lane *live(unsigned batch_size, unsigned linger)
{
    st_ingest *g = setup(1, batch_size);
    cfg.receipt_linger_ms = linger;
    for (unsigned s = 0; s < NSHARDS; s++)
        shards[s].mode = ST__MODE_LIVE;
    return &g->lanes[0];
}

/* Lane L busy: message "a" of shard 0 in the database, no batch open. */
static void busy(st_ingest *g, st__lane *L)
{
    add(g, 0, "a");
    L->head->in_db = 1;
}

static void test_receipts_held(void)
{
    st_ingest *g = &ing;
    st__lane *L = live(10, 20);
    busy(g, L);
    /* no batch open (the head is in the database): held, counted */
    add_receipt(g, 0, "r1");
    add_receipt(g, 1, "r2");
    CHECK_EQ(L->nbatches, 1);
    CHECK_EQ(L->nheld, 2);
    CHECK(L->held_since > 0);
    CHECK_EQ(g->shards[0].inflight, 2);
    CHECK_EQ(g->shards[1].inflight, 1);
    CHECK(!st__lane_full(L));
    /* a message opens a batch: the receipts go in front of it */
    add(g, 2, "m");
    CHECK_EQ(L->nheld, 0);
    CHECK_EQ(L->nbatches, 2);
    CHECK(!strcmp(ids(L->tail), "r1,r2,m"));
    CHECK_EQ(g->shards[0].inflight, 2);
    CHECK_EQ(g->shards[1].inflight, 1);
    CHECK_EQ(g->shards[2].inflight, 1);
    /* an open batch takes receipts at once */
    add_receipt(g, 3, "r3");
    CHECK_EQ(L->nheld, 0);
    CHECK(!strcmp(ids(L->tail), "r1,r2,m,r3"));
    teardown(g);

    /* an open head not yet sent goes anyway: receipts join it */
    L = live(10, 20);
    add(g, 0, "a");
    add_receipt(g, 0, "r");
    CHECK_EQ(L->nheld, 0);
    CHECK(!strcmp(ids(L->head), "a,r"));
    teardown(g);
}

static void test_receipts_not_held(void)
{
    /* no linger: a batch of their own, as before */
    st_ingest *g = &ing;
    st__lane *L = live(10, 0);
    add_receipt(g, 0, "r");
    CHECK_EQ(L->nheld, 0);
    CHECK(!strcmp(ids(L->head), "r"));
    teardown(g);
    /* recovering (pending mode): recovery does not wait */
    L = live(10, 20);
    g->shards[0].mode = ST__MODE_PENDING;
    add_receipt(g, 0, "p");
    CHECK_EQ(L->nheld, 0);
    CHECK(!strcmp(ids(L->head), "p"));
    teardown(g);
    /* nothing for the database (invalid, or no receipt of this shard) */
    L = live(10, 20);
    add_receipt(g, 0, "x")->status = ST_E_INVALID; /* set after the add: held */
    CHECK_EQ(L->nheld, 1);
    st__lane_dispose(L);
    entry *e = mk(0, "y");
    e->kind = 'R';
    st__lane_add(g, 0, e); /* rc_len 0 */
    entry *f = mk(0, "z");
    f->kind = 'R';
    f->rc_len = 2;
    f->status = ST_E_INVALID;
    st__lane_add(g, 0, f);
    CHECK_EQ(L->nheld, 0);
    CHECK(!strcmp(ids(L->head), "y,z"));
    teardown(g);
}

static void test_receipts_due(void)
{
    st_ingest *g = &ing;
    st__lane *L = live(10, 20);
    CHECK_EQ(st__lane_release_due(L, 1000, 20, 0), 0); /* nothing held */
    add_receipt(g, 0, "r");
    L->held_since = 1000;
    CHECK_EQ(st__lane_release_due(L, 1005, 20, 0), 15);
    CHECK_EQ(L->nheld, 1);
    CHECK(L->head == NULL);
    CHECK_EQ(st__lane_release_due(L, 1020, 20, 0), 0); /* due: a batch of their own */
    CHECK_EQ(L->nheld, 0);
    CHECK(L->head && !strcmp(ids(L->head), "r"));
    CHECK_EQ(g->shards[0].inflight, 1); /* counted once */
    L->head->in_db = 1;
    add_receipt(g, 0, "s");
    CHECK_EQ(L->nheld, 1);
    CHECK(st__lane_release_due(L, L->held_since, 20, 0) > 0);
    CHECK_EQ(st__lane_release_due(L, L->held_since, 20, 1), 0); /* forced (stopping) */
    CHECK_EQ(L->nbatches, 2);
    CHECK(!strcmp(ids(L->tail), "s"));
    teardown(g);

    /* --batch-size of them go at once */
    L = live(3, 20);
    busy(g, L);
    add_receipt(g, 0, "r1");
    add_receipt(g, 0, "r2");
    CHECK_EQ(L->nheld, 2);
    add_receipt(g, 0, "r3");
    CHECK_EQ(L->nheld, 0);
    CHECK(!strcmp(ids(L->tail), "r1,r2,r3"));
    teardown(g);
}

/* Retries make a batch of their own: the held receipts ride it, behind. */
static void test_receipts_ride_retries(void)
{
    st_ingest *g = &ing;
    st__lane *L = live(10, 20);
    entry *r = add(g, 0, "r");
    add(g, 0, "a")->status = ST_E_NEW;
    L->head->in_db = 1;
    add_receipt(g, 1, "h");
    CHECK_EQ(L->nheld, 1);
    r->status = ST_E_RETRY;
    st__lane_retire(L, st__lane_detach_head(L));
    CHECK_EQ(L->nheld, 0);
    CHECK_EQ(L->nbatches, 1);
    CHECK(!strcmp(ids(L->head), "r,h"));
    CHECK_EQ(g->shards[0].inflight, 1);
    CHECK_EQ(g->shards[1].inflight, 1);
    /* dispose frees held entries too (the sanitizer build would tell) */
    L->head->in_db = 1;
    add_receipt(g, 0, "k");
    CHECK_EQ(L->nheld, 1);
    teardown(g);
    CHECK_EQ(L->nheld, 0);
}

int main(void)
{
    test_join_tail();
    test_in_db();
    test_full();
    test_detach();
    test_split();
    test_retire_alone();
    test_retire_in_front();
    test_receipts_held();
    test_receipts_not_held();
    test_receipts_due();
    test_receipts_ride_retries();
    test_retire_behind_in_db();
    test_retire_first_waiting();
    test_retire_plain();
    test_dispose();
    T_DONE();
}
