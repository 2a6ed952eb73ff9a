/*
 * cm_rcluster.c - the Redis link on a Redis Cluster (cm_redis.h, decision
 * 53): the slot map from CLUSTER SLOTS, commands routed by slot with MOVED,
 * ASK, TRYAGAIN and CLUSTERDOWN followed, and fences.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cm_clock.h"
#include "cm_log.h"
#include "cm_rlink.h"

#define REFRESH_GAP_MS 100 /* between two CLUSTER SLOTS */
#define MAX_REDIRECTS 5    /* MOVED/ASK followed per command */
#define MAX_RETRIES 40     /* TRYAGAIN, CLUSTERDOWN or no node: 50 ms apart */
#define RETRY_MS 50
#define POOL_MAX 64 /* connections per node of a command-only cluster link */

static void cluster_cb(redisAsyncContext *ac, void *reply, void *privdata);
static void retry_later(req *q);
static void release_held(cm_redis *r, unsigned s);

static void apply_map(cm_redis *r, const cm_rslot_range *ranges, int n, const redisReply *rep)
{
    for (rnode *x = r->nodes; x; x = x->next)
        x->mark = 0;
    memset(r->slots, 0, CM_RSLOTS * sizeof *r->slots);
    const char *here = r->addrs[r->addr_next].host;
    for (int i = 0; i < n; i++) {
        rnode *x = cm__node_get(r, ranges[i].host[0] ? ranges[i].host : here, ranges[i].port);
        x->mark = 1;
        for (unsigned s = ranges[i].first; s <= ranges[i].last; s++)
            r->slots[s] = x;
    }
    /* replicas: where the control connection may go when masters are gone */
    for (size_t i = 0; i < rep->elements; i++)
        for (size_t j = 3; j < rep->element[i]->elements; j++) {
            const redisReply *m = rep->element[i]->element[j];
            if (m->type == REDIS_REPLY_ARRAY && m->elements >= 2 &&
                m->element[0]->type == REDIS_REPLY_STRING && m->element[0]->len > 0 &&
                m->element[1]->type == REDIS_REPLY_INTEGER)
                cm__addr_add(r, m->element[0]->str, (int)m->element[1]->integer);
        }
    r->complete = 1;
    for (unsigned s = 0; s < CM_RSLOTS && r->complete; s++)
        r->complete = r->slots[s] != NULL;
    CM_DEBUG("event=redis_cluster_map link=%s ranges=%d complete=%d", r->name, n, r->complete);
    /* channels follow their slot: a confirmed one that moves may have
     * missed messages meanwhile */
    int lost = 0;
    pr_map_iter it = pr_map_iter_make(&r->chans);
    for (chan *c; (c = (chan *)pr_map_next(&it));) {
        rnode *want = r->slots[c->slot];
        if (c->node == want && c->node)
            continue;
        if (c->refs == 0) {
            cm__chan_remove(r, c);
            continue;
        }
        if (c->node) {
            lost |= c->confirmed;
            pr_view name = cm__chan_name(&c->link);
            cm__sub_send(r, c->node, 0, &name, 1);
            cm__chan_fire(r, c, 0);
        }
        cm__chan_send(r, c);
    }
    /* masters no longer in the map go, with NULL for their pending commands */
    for (rnode **pp = &r->nodes; *pp;) {
        rnode *x = *pp;
        if (x->mark) {
            pp = &x->next;
            continue;
        }
        *pp = x->next;
        CM_INFO("event=redis_node_dropped link=%s host=%s port=%d", r->name, x->host, x->port);
        cm__node_free(x);
    }
    if (lost && r->on_lost)
        r->on_lost(r, r->arg);
    cm__update_ready(r);
}

static void slots_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    cconn *k = ac->data;
    if (!k)
        return;
    cm_redis *r = k->r;
    r->refreshing = 0;
    redisReply *rep = reply;
    size_t max = rep && rep->type == REDIS_REPLY_ARRAY ? rep->elements : 0;
    cm_rslot_range *ranges = pr_malloc((max ? max : 1) * sizeof *ranges);
    int n = cm__rslot_parse(rep, ranges, max);
    if (n > 0) {
        apply_map(r, ranges, n, rep);
    } else if (rep) {
        CM_WARN_RATELIMITED("event=redis_cluster_slots_failed link=%s err=\"%s\"", r->name,
                            rep->type == REDIS_REPLY_ERROR ? rep->str : "no slots");
        r->refresh_again = 1;
    } else {
        r->refresh_wanted = 1; /* sent again once the control connection is back */
    }
    pr_free(ranges);
    if (r->refresh_again) {
        r->refresh_again = 0;
        cm__refresh_soon(r);
    }
    cm__after(r);
}

void cm__refresh_send(cm_redis *r)
{
    r->refresh_wanted = 1;
    if (!r->ctl.up || r->refreshing)
        return; /* sent when the control connection is up */
    r->refresh_wanted = 0;
    r->refreshing = 1;
    CM_DEBUG("event=redis_cluster_refresh link=%s via=%s:%d", r->name, r->addrs[r->addr_next].host,
             r->addrs[r->addr_next].port);
    r->last_refresh_ms = cm_now_ms();
    if (redisAsyncCommand(r->ctl.ac, slots_cb, NULL, "CLUSTER SLOTS") != REDIS_OK)
        r->refreshing = 0;
}

void cm__refresh_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cm__refresh_send(arg);
}

/* CLUSTER SLOTS again, at most every REFRESH_GAP_MS. */
void cm__refresh_soon(cm_redis *r)
{
    if (!r->cluster)
        return;
    if (r->refreshing) {
        r->refresh_again = 1;
        return;
    }
    if (evtimer_pending(r->refresh_timer, NULL))
        return;
    uint64_t now = cm_now_ms(), at = r->last_refresh_ms + REFRESH_GAP_MS;
    uint64_t wait = at > now ? at - now : 0;
    struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000};
    evtimer_add(r->refresh_timer, &tv);
}

static void req_free(req *q)
{
    if (q->timer)
        event_free(q->timer);
    pr_free(q);
}

static void inflight_unlink(cm_redis *r, req *q)
{
    if (q->iprev)
        q->iprev->inext = q->inext;
    else
        r->inflight = q->inext;
    if (q->inext)
        q->inext->iprev = q->iprev;
    else
        r->inflight_last = q->iprev;
}

/* Fences with nothing before them in flight any more run, in order. */
static void fences_run(cm_redis *r)
{
    while (r->fences && (!r->inflight || r->inflight->seq > r->fences->seq)) {
        fence *f = r->fences;
        r->fences = f->next;
        if (!r->fences)
            r->fences_last = NULL;
        f->cb(r, !f->failed, f->arg);
        pr_free(f);
    }
}

void cm__req_deliver(req *q, redisReply *reply)
{
    cm_redis *r = q->r;
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        for (fence *f = r->fences; f; f = f->next)
            if (f->seq > q->seq)
                f->failed = 1;
    inflight_unlink(r, q);
    int slot = q->counted ? q->slot : -1;
    if (q->cb) {
        q->cb(r, reply, q->arg);
        cm__after(r);
    }
    req_free(q);
    if (slot >= 0 && --r->slot_inflight[slot] == 0) {
        r->slot_on[slot] = NULL;
        if (r->slot_held[slot] && !r->freeing)
            release_held(r, (unsigned)slot);
    }
    fences_run(r);
}

/* The connection of n for one more command: on a command-only link one
 * that carries nothing (blocking commands run side by side), else cmd[0]. */
static cconn *pick_conn(cm_redis *r, rnode *n)
{
    if (r->subscribing)
        return n->cmd[0];
    for (unsigned i = 0; i < n->ncmd; i++)
        if (n->cmd[i]->ac && n->cmd[i]->pending == 0)
            return n->cmd[i];
    if (n->ncmd == POOL_MAX)
        return n->cmd[0];
    n->cmd = pr_realloc(n->cmd, (n->ncmd + 1) * sizeof *n->cmd);
    cconn *k = pr_calloc(1, sizeof *k);
    n->cmd[n->ncmd++] = k;
    cm__cconn_init(k, r, n, 0); /* commands wait in hiredis until it is up */
    return k;
}

/* q went to n: its slot counts it in flight (a resend may leave the
 * slot's commands on several nodes). */
static void slot_sent(cm_redis *r, req *q, rnode *n)
{
    if (q->slot < 0)
        return;
    unsigned s = (unsigned)q->slot;
    if (!q->counted) {
        q->counted = 1;
        if (r->slot_inflight[s]++ == 0)
            r->slot_on[s] = n;
        else if (r->slot_on[s] != n)
            r->slot_on[s] = NULL;
    } else {
        r->slot_on[s] = r->slot_inflight[s] == 1 ? n : NULL;
    }
}

static int req_send(req *q, rnode *n, int asking)
{
    if (!n)
        return PR_ECLOSED;
    cconn *k = pick_conn(q->r, n);
    if (!k->ac)
        return PR_ECLOSED;
    if (asking)
        redisAsyncCommand(k->ac, NULL, NULL, "ASKING");
    if (redisAsyncCommandArgv(k->ac, cluster_cb, q, q->argc, q->argv, q->lens) != REDIS_OK)
        return PR_ECLOSED;
    q->conn = k;
    k->pending++;
    slot_sent(q->r, q, n);
    return 0;
}

/* Nothing of slot s is in flight any more: its held commands go, in order,
 * to its master now. */
static void release_held(cm_redis *r, unsigned s)
{
    for (req **pp = &r->held; *pp && r->slot_held[s] > 0;) {
        req *q = *pp;
        if ((unsigned)q->slot != s) {
            pp = &q->hnext;
            continue;
        }
        *pp = q->hnext;
        if (r->held_last == q)
            r->held_last = NULL;
        r->slot_held[s]--;
        if (req_send(q, r->slots[s], 0) != 0) {
            /* counted though unsent, so that nothing overtakes it */
            q->counted = 1;
            r->slot_inflight[s]++;
            r->slot_on[s] = NULL;
            retry_later(q);
            break;
        }
    }
    if (!r->held_last) /* recompute the tail */
        for (req *q = r->held; q; q = q->hnext)
            r->held_last = q;
}

static void retry_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    req *q = arg;
    cm_redis *r = q->r;
    if (q->prev)
        q->prev->next = q->next;
    else
        r->retrying = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
    rnode *n = q->slot >= 0 ? r->slots[q->slot] : r->nodes;
    if (req_send(q, n, 0) == 0)
        return;
    if (q->retries < MAX_RETRIES && !r->freeing)
        retry_later(q); /* no node for the slot yet: a failover under way */
    else
        cm__req_deliver(q, NULL);
}

static void retry_later(req *q)
{
    cm_redis *r = q->r;
    q->retries++;
    if (!q->timer)
        q->timer = evtimer_new(r->base, retry_fire, q);
    q->next = r->retrying;
    q->prev = NULL;
    if (r->retrying)
        r->retrying->prev = q;
    r->retrying = q;
    struct timeval tv = {0, RETRY_MS * 1000};
    evtimer_add(q->timer, &tv);
}

static void cluster_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    req *q = privdata;
    cm_redis *r = q->r;
    if (q->conn->pending)
        q->conn->pending--;
    redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_ERROR && ac->data && !r->freeing) {
        unsigned slot;
        char host[128];
        int port;
        int kind = cm__rslot_redirect(rep->str, &slot, host, sizeof host, &port);
        if (kind && q->redirects < MAX_REDIRECTS) {
            q->redirects++;
            rnode *n = cm__node_get(r, host, port);
            if (kind == 1) { /* MOVED: the slot lives there now */
                r->slots[slot] = n;
                cm__refresh_soon(r);
            }
            if (req_send(q, n, kind == 2) == 0)
                return;
        } else if ((!strncmp(rep->str, "TRYAGAIN", 8) || !strncmp(rep->str, "CLUSTERDOWN", 11)) &&
                   q->retries < MAX_RETRIES) {
            retry_later(q); /* a slot in migration, or a failover under way */
            cm__refresh_soon(r);
            return;
        }
    }
    cm__req_deliver(q, rep);
}

int cm__cluster_command(cm_redis *r, cm_redis_reply_cb cb, void *arg, int argc, const char **argv,
                        const size_t *argvlen)
{
    if (r->freeing)
        return PR_ECLOSED;
    pr_view key;
    int slot = cm__rslot_key(argc, argv, argvlen, &key) == 0 ? (int)cm__rslot_of(key) : -1;
    int publish = !strcasecmp(argv[0], "PUBLISH");
    size_t bytes = publish; /* SPUBLISH is one byte longer */
    for (int i = 0; i < argc; i++)
        bytes += (argvlen ? argvlen[i] : strlen(argv[i])) + 1;
    if (!strcasecmp(argv[0], "SCRIPT")) {
        /* every master keeps its own script cache: all load it, cb hears
         * from the first */
        for (rnode *n = r->nodes; n; n = n->next)
            if (n != r->nodes && n->cmd[0]->up)
                redisAsyncCommandArgv(n->cmd[0]->ac, NULL, NULL, argc, argv, argvlen);
    }
    rnode *n = slot >= 0 ? r->slots[slot] : r->nodes;
    if (!n || !n->cmd[0]->up)
        return PR_ECLOSED;
    req *q = pr_calloc(1, sizeof *q + (size_t)argc * (sizeof(char *) + sizeof(size_t)) + bytes);
    q->r = r;
    q->cb = cb;
    q->arg = arg;
    q->argc = argc;
    q->slot = slot;
    q->lens = (size_t *)(q + 1);
    q->argv = (const char **)(q->lens + argc);
    char *p = (char *)(q->argv + argc);
    for (int i = 0; i < argc; i++) {
        const char *s = i == 0 && publish ? "SPUBLISH" : argv[i];
        size_t len = i == 0 && publish ? 8 : argvlen ? argvlen[i] : strlen(argv[i]);
        memcpy(p, s, len);
        p[len] = '\0';
        q->argv[i] = p;
        q->lens[i] = len;
        p += len + 1;
    }
    q->seq = r->next_seq++;
    q->iprev = r->inflight_last;
    if (r->inflight_last)
        r->inflight_last->inext = q;
    else
        r->inflight = q;
    r->inflight_last = q;
    if (slot >= 0 && (r->slot_held[slot] || (r->slot_inflight[slot] && r->slot_on[slot] != n))) {
        /* earlier commands of the slot are still on their way elsewhere (it
         * moved): this one waits for them, to keep the order sent */
        q->hnext = NULL;
        if (r->held_last)
            r->held_last->hnext = q;
        else
            r->held = q;
        r->held_last = q;
        r->slot_held[slot]++;
        return 0;
    }
    if (req_send(q, n, 0) != 0) {
        inflight_unlink(r, q);
        req_free(q);
        return PR_ECLOSED;
    }
    return 0;
}

static void fence_ping_cb(cm_redis *r, redisReply *reply, void *arg)
{
    fence *f = arg;
    f->cb(r, reply && reply->type != REDIS_REPLY_ERROR, f->arg);
    pr_free(f);
}

int cm_redis_fence(cm_redis *r, cm_redis_fence_cb cb, void *arg)
{
    fence *f = pr_calloc(1, sizeof *f);
    f->cb = cb;
    f->arg = arg;
    if (!r->cluster) {
        const char *argv[] = {"PING"};
        int rc = cm_redis_command(r, fence_ping_cb, f, 1, argv, NULL);
        if (rc != 0)
            pr_free(f);
        return rc;
    }
    if (r->freeing) {
        pr_free(f);
        return PR_ECLOSED;
    }
    f->seq = r->next_seq++;
    if (r->fences_last)
        r->fences_last->next = f;
    else
        r->fences = f;
    r->fences_last = f;
    fences_run(r); /* nothing in flight: at once */
    return 0;
}
