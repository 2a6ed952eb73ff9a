/*
 * theap.c - timer heaps: per-worker timers with arbitrary deadlines.
 *
 * A binary min-heap ordered by deadline, one libevent timer for its root.
 * gw_tq is cheaper (O(1)) but needs one timeout for every entry; token
 * expiry needs a deadline per socket, so it lives here (O(log n) add and
 * removal, one pointer per entry plus the node).
 */
#include "gw_loop.h"

static int before(const gw_th_node *a, const gw_th_node *b)
{
    return a->deadline_ms < b->deadline_ms;
}

static void place(gw_th *th, size_t i, gw_th_node *n)
{
    th->v[i] = n;
    n->idx = i + 1;
}

static void sift_up(gw_th *th, size_t i)
{
    gw_th_node *n = th->v[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(n, th->v[parent]))
            break;
        place(th, i, th->v[parent]);
        i = parent;
    }
    place(th, i, n);
}

static void sift_down(gw_th *th, size_t i)
{
    gw_th_node *n = th->v[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= th->n)
            break;
        if (c + 1 < th->n && before(th->v[c + 1], th->v[c]))
            c++;
        if (!before(th->v[c], n))
            break;
        place(th, i, th->v[c]);
        i = c;
    }
    place(th, i, n);
}

static void th_arm(gw_th *th)
{
    if (th->n == 0) {
        evtimer_del(&th->timer);
        return;
    }
    gw__timer_arm(&th->timer, th->w, th->v[0]->deadline_ms);
}

static void th_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_th *th = arg;
    uint64_t now = gw__now_ms(th->w);
    while (th->n > 0 && th->v[0]->deadline_ms <= now) {
        gw_th_node *n = th->v[0];
        gw_th_del(th, n);
        th->cb(th, n); /* may add n again, or free what holds it */
    }
    th_arm(th);
    gw__worker_schedule_flush(th->w);
}

void gw_th_init(gw_th *th, gw_worker *w, gw_th_cb cb)
{
    th->v = NULL;
    th->n = th->cap = 0;
    th->cb = cb;
    th->w = w;
    evtimer_assign(&th->timer, w->base, th_fire, th);
}

void gw_th_dispose(gw_th *th)
{
    evtimer_del(&th->timer);
    for (size_t i = 0; i < th->n; i++)
        th->v[i]->idx = 0;
    pr_free(th->v);
    th->v = NULL;
    th->n = th->cap = 0;
}

void gw_th_add(gw_th *th, gw_th_node *n, uint64_t deadline_ms)
{
    gw_th_del(th, n);
    if (th->n == th->cap) {
        th->cap = th->cap ? th->cap * 2 : 64;
        th->v = pr_realloc(th->v, th->cap * sizeof *th->v);
    }
    n->deadline_ms = deadline_ms;
    place(th, th->n++, n);
    sift_up(th, th->n - 1);
    if (th->v[0] == n)
        th_arm(th);
}

void gw_th_del(gw_th *th, gw_th_node *n)
{
    if (!gw_th_queued(n))
        return;
    size_t i = n->idx - 1;
    int was_root = i == 0;
    n->idx = 0;
    gw_th_node *last = th->v[--th->n];
    if (last != n) {
        place(th, i, last);
        sift_up(th, i);
        sift_down(th, last->idx - 1);
    }
    /* A later root only makes the timer fire early: th_fire re-arms. */
    if (was_root && th->n == 0)
        evtimer_del(&th->timer);
}
