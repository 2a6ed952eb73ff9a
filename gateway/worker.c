/*
 * worker.c - one event loop per thread: accepting, the flush pass, deferred
 * frees, adopting connections handed over by other workers, and the wiring
 * of the layers (each gets the handler of the layer above it here). The
 * loop's primitives (timer queues, clock, hand-off inbox) are loop.c's.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cm_metrics.h"
#include "gw_worker.h"

/* The same list as loop.c's, for the walks over all workers below. */
static gw_worker **workers;
static int nworkers;
static int max_connections;
static int total_conns; /* across workers; atomic */

/* ---- flush pass ---- */

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
                CM_WARN_RATELIMITED("event=accept_paused worker=%d err=%s", w->index,
                                    strerror(errno));
                event_del(&w->listen_ev);
                struct timeval tv = {0, 100 * 1000};
                evtimer_add(&w->accept_retry, &tv);
                return;
            }
            CM_WARN_RATELIMITED("event=accept_failed worker=%d err=%s", w->index, strerror(errno));
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

/* ---- connections handed over by other workers ---- */

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

/* ---- wiring ---- */

static const gw_http_handler http_handler = {
    .eio_request = gw__eio_handle_request,
    .owner_closed = gw__eio_on_poll_closed,
    .ready = gw__app_ready,
    .metrics = gw__metrics_render,
};

/* The sessions of an Engine.IO level app go to its on_eio_* callbacks. */
static void eio_app_open(gw_session *s)
{
    if (s->w->app->on_eio_open)
        s->w->app->on_eio_open(s);
}

static void eio_app_message(gw_session *s, int binary, pr_view data)
{
    if (s->w->app->on_eio_message)
        s->w->app->on_eio_message(s, binary, data);
}

static void eio_app_close(gw_session *s, const char *reason)
{
    if (s->w->app->on_eio_close)
        s->w->app->on_eio_close(s, reason);
}

static const gw_eio_handler eio_app_handler = {
    .on_open = eio_app_open,
    .on_message = eio_app_message,
    .on_close = eio_app_close,
};

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
        CM_ERROR("event=event_base_new_failed");
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
    w->eio_path = cfg->path[0] ? cfg->path : app->default_path;
    gw__conn_worker_init(w);
    gw__http_worker_init(w, &http_handler);
    gw__eio_worker_init(w); /* the WebSocket layer's handler is the engine's */
    if (app->socketio)
        gw__sio_worker_init(w);
    else
        w->eio_up = &eio_app_handler;
    if (app->worker_init && app->worker_init(w, &w->app_worker) != 0) {
        CM_ERROR("event=app_worker_init_failed app=%s worker=%d", app->name, index);
        abort();
    }
    return w;
}

void gw__workers_set(gw_worker **list, int n, int max_conns)
{
    workers = list;
    nworkers = n;
    max_connections = max_conns;
    gw__loop_set_workers(list, n);
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
    if (w->app->socketio)
        gw__sio_worker_dispose(w);
    gw__worker_reap(w);
    gw__http_worker_dispose(w);
    gw__conn_worker_dispose(w);
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
#define GAUGE(name, help, v) cm_metric_gauge(out, "chat_gateway_" name, help, (double)(v))
#define COUNTER(name, help, v) cm_metric_counter(out, "chat_gateway_" name, help, (v))
    GAUGE("connections", "Open TCP connections.", t.conns_open);
    COUNTER("connections_total", "Accepted TCP connections.", t.conns_total);
    GAUGE("sessions", "Open Engine.IO sessions.", t.sessions_open);
    COUNTER("sessions_total", "Engine.IO sessions opened.", t.sessions_total);
    COUNTER("handoffs_total", "Requests moved to the worker owning their session.", t.handoffs);
    COUNTER("bytes_received_total", "Bytes read from clients.", t.bytes_in);
    COUNTER("bytes_sent_total", "Bytes written to clients.", t.bytes_out);
    COUNTER("packets_received_total", "Engine.IO messages received.", t.eio_packets_in);
    COUNTER("packets_sent_total", "Engine.IO packets queued.", t.eio_packets_out);
    COUNTER("bad_input_total", "Connections or sessions closed for bad input.", t.closed_bad_input);
    COUNTER("accept_errors_total", "Accepts refused or failed.", t.accept_errors);
    COUNTER("output_limit_drops_total", "Clients cut for exceeding output limits.",
            t.conns_dropped_output);
#undef GAUGE
#undef COUNTER
    /* the app's own counters (gw_app.counters) */
    const gw_app *app = nworkers ? workers[0]->app : NULL;
    for (unsigned k = 0; app && k < app->ncounters && k < GW_APP_COUNTERS_MAX; k++) {
        char name[96];
        snprintf(name, sizeof name, "chat_gateway_%s", app->counters[k].name);
        cm_metric_counter(out, name, app->counters[k].help, t.app[k]);
    }
}
