/*
 * loop.c - what every layer of the transport uses on its worker's loop: the
 * clock, timer queues, asking for the flush pass, the list of workers, the
 * drain flag and the hand-off inbox. The flush pass itself, accepting and
 * the workers' life cycle are worker.c's.
 */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "cm_clock.h"
#include "gw_loop.h"

static gw_worker **workers;
static int nworkers;
static int draining; /* atomic */

void gw__loop_set_workers(gw_worker **list, int n)
{
    workers = list;
    nworkers = n;
}

gw_worker *gw__worker_get(int index)
{
    return index >= 0 && index < nworkers ? workers[index] : NULL;
}

int gw__worker_count(void)
{
    return nworkers;
}

int gw__draining(void)
{
    return __atomic_load_n(&draining, __ATOMIC_RELAXED);
}

void gw__set_draining(void)
{
    __atomic_store_n(&draining, 1, __ATOMIC_RELAXED);
}

uint64_t gw__now_ms(gw_worker *w)
{
    (void)w;
    return cm_now_ms();
}

void gw__timer_arm(struct event *timer, gw_worker *w, uint64_t deadline_ms)
{
    uint64_t now = gw__now_ms(w);
    uint64_t wait = deadline_ms > now ? deadline_ms - now : 0;
    struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)((wait % 1000) * 1000)};
    evtimer_add(timer, &tv);
}

/* ---- timer queues ---- */

static void tq_arm(gw_tq *tq)
{
    gw_tq_node *first = tq->head.next;
    if (first != &tq->head)
        gw__timer_arm(&tq->timer, tq->w, first->deadline_ms);
}

static void tq_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_tq *tq = arg;
    uint64_t now = gw__now_ms(tq->w);
    while (tq->head.next != &tq->head && tq->head.next->deadline_ms <= now) {
        gw_tq_node *n = tq->head.next;
        tq->fired_deadline_ms = n->deadline_ms;
        gw__tq_del(tq, n);
        tq->cb(tq, n); /* may re-add n; its new deadline is later than now */
    }
    tq_arm(tq);
    gw__worker_schedule_flush(tq->w);
}

void gw__tq_init(gw_tq *tq, gw_worker *w, uint64_t timeout_ms, gw_tq_cb cb)
{
    tq->head.next = tq->head.prev = &tq->head;
    tq->timeout_ms = timeout_ms;
    tq->cb = cb;
    tq->w = w;
    evtimer_assign(&tq->timer, w->base, tq_fire, tq);
}

void gw__tq_dispose(gw_tq *tq)
{
    evtimer_del(&tq->timer);
}

void gw__tq_add(gw_tq *tq, gw_tq_node *n)
{
    gw__tq_add_from(tq, n, gw__now_ms(tq->w));
}

void gw__tq_add_from(gw_tq *tq, gw_tq_node *n, uint64_t start_ms)
{
    if (gw__tq_queued(n))
        gw__tq_del(tq, n);
    int was_empty = tq->head.next == &tq->head;
    n->deadline_ms = start_ms + tq->timeout_ms;
    if (n->deadline_ms == 0)
        n->deadline_ms = 1; /* 0 means "not queued" */
    n->prev = tq->head.prev;
    n->next = &tq->head;
    tq->head.prev->next = n;
    tq->head.prev = n;
    if (was_empty)
        tq_arm(tq);
}

void gw__tq_del(gw_tq *tq, gw_tq_node *n)
{
    (void)tq;
    if (!gw__tq_queued(n))
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
    n->deadline_ms = 0;
    /* The timer may now fire early for the old head; tq_fire finds nothing
     * expired and re-arms for the new head. */
}

void gw__worker_schedule_flush(gw_worker *w)
{
    if (!w->flush_scheduled) {
        w->flush_scheduled = 1;
        event_active(&w->flush_ev, EV_TIMEOUT, 0);
    }
}

/* ---- hand-off between workers ---- */

void gw__worker_handoff(gw_worker *from, int to_index, int fd, pr_view bytes)
{
    gw_worker *to = workers[to_index];
    gw_handoff *h = pr_malloc(sizeof *h + bytes.len);
    h->fd = fd;
    h->len = bytes.len;
    if (bytes.len)
        memcpy(h->data, bytes.ptr, bytes.len);
    pthread_mutex_lock(&to->inbox_lock);
    h->next = to->inbox;
    to->inbox = h;
    pthread_mutex_unlock(&to->inbox_lock);
    GW_STAT_ADD(from, handoffs, 1);
    /* The connection's count moves with it: it was counted at accept. */
    event_active(&to->inbox_ev, EV_READ, 0);
}
