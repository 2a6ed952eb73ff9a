/*
 * worker.c - one event loop per thread: accepting, the flush pass, timer
 * queues, deferred frees, and the hand-off of connections between workers.
 *
 * The flush pass (flush_cb) runs after the I/O callbacks of a loop iteration:
 * polling responses are built, queued output is written with writev, and
 * closed connections and sessions are freed. Most writes therefore need no
 * writable event, and nothing is freed while a callback up the stack may
 * still hold it.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gw.h"

static gw_worker **workers;
static int nworkers;
static int max_connections;
static int total_conns; /* across workers; atomic */
static int draining;    /* atomic */

int gw__draining(void)
{
    return __atomic_load_n(&draining, __ATOMIC_RELAXED);
}

void gw__set_draining(void)
{
    __atomic_store_n(&draining, 1, __ATOMIC_RELAXED);
}

gw_worker *gw__worker_get(int index)
{
    return index >= 0 && index < nworkers ? workers[index] : NULL;
}

int gw__worker_count(void)
{
    return nworkers;
}

uint64_t gw__now_ms(gw_worker *w)
{
    (void)w;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- timer queues ---- */

static void tq_arm(gw_tq *tq)
{
    gw_tq_node *first = tq->head.next;
    if (first == &tq->head)
        return;
    uint64_t now = gw__now_ms(tq->w);
    uint64_t wait = first->deadline_ms > now ? first->deadline_ms - now : 0;
    struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)((wait % 1000) * 1000)};
    evtimer_add(&tq->timer, &tv);
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

/* ---- flush pass ---- */

void gw__worker_schedule_flush(gw_worker *w)
{
    if (!w->flush_scheduled) {
        w->flush_scheduled = 1;
        event_active(&w->flush_ev, EV_TIMEOUT, 0);
    }
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_worker *w = arg;
    w->flush_scheduled = 0;
    /* Writing can close a connection, which can queue more output elsewhere
     * (a session's close), so loop until both lists stay empty. */
    while (w->poll_list || w->flush_list) {
        gw__eio_flush_polls(w);
        while (w->flush_list) {
            gw_conn *c = w->flush_list;
            w->flush_list = c->next;
            c->next = NULL;
            c->pending = 0;
            if (c->state != GW_CLOSED)
                gw__conn_flush(c);
        }
    }
    gw__worker_reap(w);
}

void gw__worker_reap(gw_worker *w)
{
    while (w->conn_graveyard) {
        gw_conn *c = w->conn_graveyard;
        w->conn_graveyard = c->next;
        gw__conn_free(c);
        __atomic_fetch_sub(&total_conns, 1, __ATOMIC_RELAXED);
    }
    gw__eio_reap(w);
}

/* ---- accepting ---- */

static void accept_cb(evutil_socket_t fd, short what, void *arg);

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_worker *w = arg;
    event_add(&w->listen_ev, NULL);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    gw_worker *w = arg;
    /* A cap per wakeup keeps one busy listener from starving established
     * connections. */
    for (int i = 0; i < 64; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                errno == ECONNABORTED)
                return;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop accepting for a moment instead of
                 * spinning on a listener that stays readable. */
                GW_STAT_ADD(w, accept_errors, 1);
                GW_WARN_RATELIMITED("event=accept_paused worker=%d err=%s", w->index,
                                    strerror(errno));
                event_del(&w->listen_ev);
                struct timeval tv = {0, 100 * 1000};
                evtimer_add(&w->accept_retry, &tv);
                return;
            }
            GW_WARN_RATELIMITED("event=accept_failed worker=%d err=%s", w->index, strerror(errno));
            return;
        }
        if (__atomic_add_fetch(&total_conns, 1, __ATOMIC_RELAXED) > max_connections) {
            __atomic_fetch_sub(&total_conns, 1, __ATOMIC_RELAXED);
            GW_STAT_ADD(w, accept_errors, 1);
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        gw__http_init_conn(gw__conn_new(w, fd));
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

static void inbox_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_worker *w = arg;
    pthread_mutex_lock(&w->inbox_lock);
    gw_handoff *list = w->inbox;
    w->inbox = NULL;
    pthread_mutex_unlock(&w->inbox_lock);
    /* reverse to arrival order */
    gw_handoff *rev = NULL;
    while (list) {
        gw_handoff *n = list->next;
        list->next = rev;
        rev = list;
        list = n;
    }
    while (rev) {
        gw_handoff *h = rev;
        rev = h->next;
        __atomic_fetch_add(&total_conns, 1, __ATOMIC_RELAXED); /* released by the sender */
        gw_conn *c = gw__conn_new(w, h->fd);
        gw__http_init_conn(c);
        gw__conn_feed(c, h->data, h->len);
        pr_free(h);
    }
    gw__worker_schedule_flush(w);
}

/* ---- life cycle ---- */

gw_worker *gw__worker_new(int index, const gw_config *cfg, const gw_app *app, int listen_fd)
{
    gw_worker *w = pr_calloc(1, sizeof *w);
    w->index = index;
    w->cfg = cfg;
    w->app = app;
    w->listen_fd = listen_fd;
    w->base = event_base_new();
    if (!w->base) {
        GW_ERROR("event=event_base_new_failed");
        abort();
    }
    w->scratch = pr_malloc(GW_SCRATCH);
    pr_buf_init(&w->enc, cfg->max_payload * 2 + 65536);
    pthread_mutex_init(&w->inbox_lock, NULL);
    event_assign(&w->listen_ev, w->base, listen_fd, EV_READ | EV_PERSIST, accept_cb, w);
    evtimer_assign(&w->accept_retry, w->base, accept_retry_cb, w);
    event_assign(&w->flush_ev, w->base, -1, 0, flush_cb, w);
    event_assign(&w->inbox_ev, w->base, -1, EV_PERSIST, inbox_cb, w);
    event_add(&w->listen_ev, NULL);
    gw__tq_init(&w->http_idle_tq, w, cfg->http_idle_timeout_ms, gw__http_idle_timeout);
    gw__tq_init(&w->linger_tq, w, 2000, gw__linger_timeout);
    gw__eio_worker_init(w);
    if (app->worker_init && app->worker_init(w, &w->app_worker) != 0) {
        GW_ERROR("event=app_worker_init_failed app=%s worker=%d", app->name, index);
        abort();
    }
    return w;
}

void gw__workers_set(gw_worker **list, int n, int max_conns)
{
    workers = list;
    nworkers = n;
    max_connections = max_conns;
}

int gw__worker_run(gw_worker *w)
{
    return event_base_dispatch(w->base);
}

void gw__worker_free(gw_worker *w)
{
    /* sessions and connections go first: their close callbacks use the app */
    gw__eio_worker_close_all(w);
    gw__conn_close_all(w);
    gw__worker_reap(w);
    if (w->app->worker_dispose)
        w->app->worker_dispose(w, w->app_worker);
    gw__eio_worker_dispose(w);
    gw__worker_reap(w);
    gw__tq_dispose(&w->http_idle_tq);
    gw__tq_dispose(&w->linger_tq);
    event_del(&w->listen_ev);
    event_del(&w->accept_retry);
    event_del(&w->flush_ev);
    event_del(&w->inbox_ev);
    while (w->inbox) {
        gw_handoff *h = w->inbox;
        w->inbox = h->next;
        close(h->fd);
        pr_free(h);
    }
    pthread_mutex_destroy(&w->inbox_lock);
    event_base_free(w->base);
    pr_buf_dispose(&w->enc);
    pr_free(w->scratch);
    pr_free(w);
}

int gw__app_ready(void)
{
    for (int i = 0; i < nworkers; i++)
        if (workers[i]->app->ready && !workers[i]->app->ready(workers[i]))
            return 0;
    return 1;
}

int gw__total_connections(void)
{
    return __atomic_load_n(&total_conns, __ATOMIC_RELAXED);
}

void gw__metrics_render(pr_buf *out)
{
    gw_stats t = {0};
    for (int i = 0; i < nworkers; i++) {
        const gw_stats *s = &workers[i]->stats;
#define SUM(f) t.f += __atomic_load_n(&s->f, __ATOMIC_RELAXED)
        SUM(conns_open); SUM(conns_total); SUM(sessions_open); SUM(sessions_total);
        SUM(handoffs); SUM(bytes_in); SUM(bytes_out); SUM(eio_packets_in); SUM(eio_packets_out);
        SUM(closed_bad_input); SUM(accept_errors); SUM(conns_dropped_output);
        for (unsigned k = 0; k < GW_APP_COUNTERS_MAX; k++)
            SUM(app[k]);
#undef SUM
    }
#define METRIC(name, type, help, v)                                                                \
    pr_buf_appendf(out, "# HELP chat_gateway_" name " " help "\n# TYPE chat_gateway_" name " " type \
                        "\nchat_gateway_" name " %llu\n", (unsigned long long)(v))
    METRIC("connections", "gauge", "Open TCP connections.", t.conns_open);
    METRIC("connections_total", "counter", "Accepted TCP connections.", t.conns_total);
    METRIC("sessions", "gauge", "Open Engine.IO sessions.", t.sessions_open);
    METRIC("sessions_total", "counter", "Engine.IO sessions opened.", t.sessions_total);
    METRIC("handoffs_total", "counter", "Requests moved to the worker owning their session.",
           t.handoffs);
    METRIC("bytes_received_total", "counter", "Bytes read from clients.", t.bytes_in);
    METRIC("bytes_sent_total", "counter", "Bytes written to clients.", t.bytes_out);
    METRIC("packets_received_total", "counter", "Engine.IO messages received.", t.eio_packets_in);
    METRIC("packets_sent_total", "counter", "Engine.IO packets queued.", t.eio_packets_out);
    METRIC("bad_input_total", "counter", "Connections or sessions closed for bad input.",
           t.closed_bad_input);
    METRIC("accept_errors_total", "counter", "Accepts refused or failed.", t.accept_errors);
    METRIC("output_limit_drops_total", "counter", "Clients cut for exceeding output limits.",
           t.conns_dropped_output);
    /* the app's own counters (gw_app.counters) */
    const gw_app *app = nworkers ? workers[0]->app : NULL;
    for (unsigned k = 0; app && k < app->ncounters && k < GW_APP_COUNTERS_MAX; k++)
        pr_buf_appendf(out,
                       "# HELP chat_gateway_%s %s\n# TYPE chat_gateway_%s counter\n"
                       "chat_gateway_%s %llu\n",
                       app->counters[k].name, app->counters[k].help, app->counters[k].name,
                       app->counters[k].name, (unsigned long long)t.app[k]);
#undef METRIC
}
