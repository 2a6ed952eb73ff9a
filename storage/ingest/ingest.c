/*
 * ingest/ingest.c - the ingest loop of a shard owner: start, the kick that
 * drives the steps of ingest.h, and stop.
 *
 * Nothing runs on its own: every step that changes what can be done next
 * (a lease taken, a read answered, a batch committed) kicks the loop, and a
 * tick every 50 ms kicks it after a pause or a reconnect. A kick lets every
 * lane submit its head batch (commit.c), then reads if there is room
 * (read.c).
 */
#include <stdio.h>
#include <string.h>

#include "cm_backoff.h"
#include "cm_clock.h"
#include "cm_log.h"
#include "config.h"
#include "ingest.h"

void st__ingest_kick(st_ingest *g)
{
    event_active(g->kick, EV_TIMEOUT, 0);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    st_ingest *g = arg;
    /* held receipts that waited long enough go (all of them when stopping),
     * then every head; the linger timer wakes us for the next ones due */
    uint64_t now = cm_now_ms(), wait = 0;
    for (unsigned i = 0; i < g->nlanes; i++) {
        uint64_t w =
            st__lane_release_due(&g->lanes[i], now, g->c->cfg->receipt_linger_ms, g->stopping);
        if (w && (!wait || w < wait))
            wait = w;
    }
    for (unsigned i = 0; i < g->nlanes; i++)
        st__commit_submit(&g->lanes[i], 1);
    st__read_start(g);
    st__lease_handover(g);
    if (wait) {
        struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000};
        evtimer_add(g->linger, &tv);
    }
    if (g->stopping)
        st__ingest_maybe_stopped(g);
}

int st_ingest_start(st_ctx *c)
{
    st_ingest *g = pr_calloc(1, sizeof *g);
    g->c = c;
    g->nshards = c->cfg->ingest_shards;
    g->shards = pr_calloc(g->nshards, sizeof *g->shards);
    st__rooms_init(g);
    for (unsigned s = 0; s < g->nshards; s++) {
        g->shards[s].in_key = chat_key_ingest(s);
        g->shards[s].lease_key = chat_key_lease(s);
        g->shards[s].republish_above = INT64_MAX;
    }
    g->seed = cm_backoff_seed(g);
    g->blocking_epoch = cm_redis_epoch(c->blocking);
    g->cmd_epoch = cm_redis_epoch(c->redis);
    g->kick = event_new(c->base, -1, 0, kick_cb, g);
    g->nlanes = c->cfg->ingest_connections < g->nshards ? c->cfg->ingest_connections : g->nshards;
    if (g->nlanes == 0)
        g->nlanes = 1;
    if (g->nlanes > ST__INGEST_MAX_LANES)
        g->nlanes = ST__INGEST_MAX_LANES;
    for (unsigned i = 0; i < g->nlanes; i++) {
        st__lane *L = &g->lanes[i];
        L->g = g;
        L->index = i;
        L->retry_timer = evtimer_new(c->base, st__commit_retry_cb, L);
        if (i == 0) {
            L->db = c->ingest_db; /* migrated through, and ready */
        } else {
            char name[24];
            snprintf(name, sizeof name, "ingest-%u", i);
            L->db = st_pg_new(c->base, c->cfg->database_url, 1, name);
        }
    }
    g->linger = evtimer_new(c->base, kick_cb, g);
    g->tick = event_new(c->base, -1, EV_PERSIST, kick_cb, g);
    struct timeval tick = {0, 50 * 1000};
    event_add(g->tick, &tick);
    c->ingest = g;
    st__lease_start(g);
    return 0;
}

int st_ingest_owns(const st_ctx *c, unsigned shard)
{
    const st_ingest *g = c->ingest;
    return g && shard < g->nshards && g->shards[shard].owned;
}

unsigned st_ingest_view(const st_ctx *c, unsigned *target)
{
    const st_ingest *g = c->ingest;
    *target = 0;
    if (!g || !g->live)
        return 0;
    *target = st__lease_target(g->nshards, g->live, g->rank);
    return g->live;
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
        n += g->lanes[i].nbatches + (g->lanes[i].nheld > 0);
    return n;
}

void st__ingest_maybe_stopped(st_ingest *g)
{
    if (g->stop_done || g->reading || queued_batches(g))
        return;
    if (g->releases)
        return;
    /* the batches are done: give the shards back so another replica takes
     * them now rather than after the lease runs out */
    if (st__lease_release_all(g) == 0)
        finish_stop(g);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    st_ingest *g = arg;
    CM_WARN("event=stop_deadline batches=%u msg=\"unfinished entries stay pending for the next "
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
    st__lease_stop(g);
    /* the batches have a lease's time to finish: after that the shards may
     * belong to someone else anyway */
    g->stop_deadline = evtimer_new(c->base, deadline_cb, g);
    unsigned ms = c->cfg->lease_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(g->stop_deadline, &tv);
    st__ingest_kick(g);
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
        st__lane_dispose(&g->lanes[i]);
        event_free(g->lanes[i].retry_timer);
    }
    event_free(g->kick);
    event_free(g->lease_timer);
    event_free(g->tick);
    event_free(g->linger);
    if (g->stop_deadline)
        event_free(g->stop_deadline);
    st__rooms_dispose(g);
    pr_free(g->shards);
    pr_free(g);
    c->ingest = NULL;
}
