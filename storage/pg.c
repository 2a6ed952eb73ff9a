/*
 * pg.c - a pool of non-blocking libpq connections on the event loop.
 *
 * Each connection is a small state machine: DOWN (waiting for its retry
 * timer), CONNECTING (PQconnectPoll), IDLE, BUSY (one query sent, results
 * being read). Queries wait in one FIFO; an idle connection takes the head.
 * Callbacks never run inside st_pg_query: sending is deferred to a dispatch
 * event, results arrive from socket events.
 *
 * A prepared query (st_pg_query_prepared) takes up to three steps on a
 * connection that has not run it yet: its setup SQL (session settings),
 * PQsendPrepare, then PQsendQueryPrepared; the connection remembers the
 * names it prepared until it is lost. Later calls are one step: no parse
 * or plan of the statement in the server.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cm_backoff.h"
#include "cm_log.h"
#include "st.h"

/* Queries may pile up while PostgreSQL is down; past this the caller is told
 * at once instead of the process growing without bound. */
#define PG_QUEUE_MAX 100000
/* Prepared statements a connection remembers (storage has one today). */
#define PG_PREPARED_MAX 8

enum { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY };

typedef struct pgq {
    struct pgq *next;
    char *sql;
    int nparams;
    char **values;
    char *name;  /* prepared statement's name, or NULL */
    char *setup; /* run before preparing it, or NULL */
    st_pg_cb cb;
    void *arg;
} pgq;

typedef struct {
    st_pg *pg;
    unsigned index;
    int state;
    PGconn *conn;
    struct event *ev; /* on the connection's socket; re-created when it changes */
    evutil_socket_t ev_fd;
    short ev_what;
    struct event *retry;
    unsigned failures;
    pgq *cur;
    PGresult *keep; /* the result the callback will get */
    char *error;    /* the first error of the current query */
    /* prepared query: the step whose results are being read */
    enum { STEP_QUERY, STEP_SETUP, STEP_PREPARE, STEP_EXECUTE } step;
    char *prepared[PG_PREPARED_MAX]; /* names prepared on this connection */
} pgconn;

struct st_pg {
    struct event_base *base;
    char *conninfo;
    char name[32];
    unsigned nconns;
    pgconn *conns;
    pgq *head, *tail;
    unsigned queued;
    unsigned seed;
    struct event *dispatch;
    int was_ready;
};

static void conn_start(pgconn *k);
static void conn_arm(pgconn *k, short what);
static int conn_send_step(pgconn *k, pgq *q);

static void q_free(pgq *q)
{
    for (int i = 0; i < q->nparams; i++)
        pr_free(q->values[i]);
    pr_free(q->values);
    pr_free(q->sql);
    pr_free(q->name);
    pr_free(q->setup);
    pr_free(q);
}

static void q_finish(pgq *q, PGresult *res, const char *error)
{
    q->cb(res, error, q->arg);
    q_free(q);
}

static void note_ready(st_pg *pg)
{
    int ready = st_pg_ready(pg);
    if (ready && !pg->was_ready)
        CM_INFO("event=pg_ready pool=%s", pg->name);
    else if (!ready && pg->was_ready)
        CM_WARN("event=pg_down pool=%s", pg->name);
    pg->was_ready = ready;
}

static void schedule_dispatch(st_pg *pg)
{
    if (pg->head)
        event_active(pg->dispatch, EV_TIMEOUT, 0);
}

/* ---- connection lifecycle ---- */

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_start(arg);
}

static void conn_disarm(pgconn *k)
{
    if (k->ev) {
        event_free(k->ev);
        k->ev = NULL;
    }
    k->ev_fd = -1;
    k->ev_what = 0;
}

/* The connection is gone: the running query fails (it may or may not have
 * committed; the caller decides), queued ones wait for the next connection. */
static void conn_lost(pgconn *k, const char *why)
{
    st_pg *pg = k->pg;
    if (k->state == C_IDLE || k->state == C_BUSY)
        CM_WARN("event=pg_connection_lost pool=%s conn=%u err=\"%s\"", pg->name, k->index, why);
    conn_disarm(k);
    if (k->conn) {
        PQfinish(k->conn);
        k->conn = NULL;
    }
    k->state = C_DOWN;
    pgq *q = k->cur;
    k->cur = NULL;
    if (k->keep) {
        PQclear(k->keep);
        k->keep = NULL;
    }
    pr_free(k->error);
    k->error = NULL;
    k->step = STEP_QUERY;
    for (unsigned i = 0; i < PG_PREPARED_MAX; i++) {
        pr_free(k->prepared[i]);
        k->prepared[i] = NULL;
    }
    cm_backoff_arm(k->retry, &k->failures, &k->pg->seed);
    note_ready(pg);
    if (q)
        q_finish(q, NULL, "connection lost");
}

/* libpq messages end in "\n" and may carry DETAIL lines: logs keep the
 * first line, with no double quote to break the key="value" field. */
static void first_line(char *s)
{
    for (char *p = s; *p; p++) {
        if (*p == '\n' || *p == '\r') {
            *p = '\0';
            return;
        }
        if (*p == '"')
            *p = '\'';
    }
}

static int is_prepared(const pgconn *k, const char *name)
{
    for (unsigned i = 0; i < PG_PREPARED_MAX; i++)
        if (k->prepared[i] && !strcmp(k->prepared[i], name))
            return 1;
    return 0;
}

/* A setup or prepare step finished without error: on to the next step of
 * the same query. 0, or -1 when the connection was lost meanwhile. */
static int step_done(pgconn *k)
{
    pgq *q = k->cur;
    if (k->keep) {
        PQclear(k->keep);
        k->keep = NULL;
    }
    if (k->step == STEP_PREPARE) {
        unsigned i = 0;
        while (k->prepared[i]) /* conn_send checked there is room */
            i++;
        k->prepared[i] = pr_strndup(q->name, strlen(q->name));
    }
    /* STEP_SETUP is not remembered: it precedes every PQsendPrepare */
    k->step = k->step == STEP_SETUP ? STEP_PREPARE : STEP_EXECUTE;
    if (conn_send_step(k, q) != 0) {
        char err[256];
        snprintf(err, sizeof err, "%s", PQerrorMessage(k->conn));
        first_line(err);
        conn_lost(k, err);
        return -1;
    }
    return 0;
}

static void query_done(pgconn *k)
{
    pgq *q = k->cur;
    if ((k->step == STEP_SETUP || k->step == STEP_PREPARE) && !k->error) {
        step_done(k);
        return;
    }
    k->step = STEP_QUERY;
    PGresult *res = k->keep;
    char *error = k->error;
    k->cur = NULL;
    k->keep = NULL;
    k->error = NULL;
    k->state = C_IDLE;
    conn_arm(k, EV_READ); /* notices and a server-side close arrive here */
    schedule_dispatch(k->pg);
    if (error)
        q_finish(q, NULL, error);
    else
        q_finish(q, res, NULL);
    if (res)
        PQclear(res);
    pr_free(error);
}

/* Reads what arrived; completes the query when libpq has every result. */
static void conn_read(pgconn *k)
{
    if (!PQconsumeInput(k->conn)) {
        char err[256];
        snprintf(err, sizeof err, "%s", PQerrorMessage(k->conn));
        first_line(err);
        conn_lost(k, err);
        return;
    }
    /* notices and notifications are not used; drop them */
    PGnotify *n;
    while ((n = PQnotifies(k->conn)))
        PQfreemem(n);
    if (k->state != C_BUSY) {
        if (PQstatus(k->conn) == CONNECTION_BAD)
            conn_lost(k, "closed by the server");
        return;
    }
    while (!PQisBusy(k->conn)) {
        PGresult *res = PQgetResult(k->conn);
        if (!res) {
            int more = (k->step == STEP_SETUP || k->step == STEP_PREPARE) && !k->error;
            query_done(k);
            /* a step of a prepared query sent the next one: read on */
            if (more && k->state == C_BUSY)
                continue;
            return;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR) {
            if (!k->error && st != PGRES_NONFATAL_ERROR) {
                /* "SQLSTATE: message": callers tell data errors (classes
                 * 22 and 23) from the database's by the code */
                const char *msg = PQresultErrorMessage(res);
                const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
                pr_buf e;
                pr_buf_init(&e, 1u << 20);
                pr_buf_appendf(&e, "%s: %s", code ? code : "?????", msg);
                k->error = pr_buf_steal(&e, NULL);
                first_line(k->error);
            }
            PQclear(res);
            continue;
        }
        /* several statements (nparams 0): keep the last result with rows,
         * else the last result */
        if (!k->keep || st == PGRES_TUPLES_OK || PQresultStatus(k->keep) != PGRES_TUPLES_OK) {
            if (k->keep)
                PQclear(k->keep);
            k->keep = res;
        } else {
            PQclear(res);
        }
    }
    if (PQstatus(k->conn) == CONNECTION_BAD)
        conn_lost(k, "closed by the server");
}

static void conn_flush(pgconn *k)
{
    int rc = PQflush(k->conn);
    if (rc < 0) {
        char err[256];
        snprintf(err, sizeof err, "%s", PQerrorMessage(k->conn));
        first_line(err);
        conn_lost(k, err);
        return;
    }
    conn_arm(k, rc == 1 ? EV_READ | EV_WRITE : EV_READ);
}

static void connect_poll(pgconn *k);

static void io_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    pgconn *k = arg;
    if (k->state == C_CONNECTING) {
        connect_poll(k);
        return;
    }
    if (what & EV_WRITE) {
        conn_flush(k);
        if (k->state == C_DOWN)
            return;
    }
    if (what & EV_READ)
        conn_read(k);
}

/* Watches the connection's socket for what; the socket can change while
 * connecting (libpq tries each address) and after a reconnect. */
static void conn_arm(pgconn *k, short what)
{
    evutil_socket_t fd = PQsocket(k->conn);
    if (fd < 0) {
        conn_lost(k, "no socket");
        return;
    }
    if (k->ev && k->ev_fd == fd && k->ev_what == what)
        return;
    conn_disarm(k);
    k->ev = event_new(k->pg->base, fd, what | EV_PERSIST, io_cb, k);
    k->ev_fd = fd;
    k->ev_what = what;
    event_add(k->ev, NULL);
}

/* Notices ("already exists, skipping") go to the log, not raw to stderr. */
static void notice_cb(void *arg, const char *message)
{
    pgconn *k = arg;
    char line[256];
    snprintf(line, sizeof line, "%s", message);
    first_line(line);
    CM_DEBUG("event=pg_notice pool=%s conn=%u msg=\"%s\"", k->pg->name, k->index, line);
}

static void connect_poll(pgconn *k)
{
    switch (PQconnectPoll(k->conn)) {
    case PGRES_POLLING_READING: conn_arm(k, EV_READ); return;
    case PGRES_POLLING_WRITING: conn_arm(k, EV_WRITE); return;
    case PGRES_POLLING_OK: break;
    default: {
        char err[256];
        snprintf(err, sizeof err, "%s", PQerrorMessage(k->conn));
        first_line(err);
        if (k->failures == 0)
            CM_WARN("event=pg_connect_failed pool=%s conn=%u err=\"%s\"", k->pg->name, k->index,
                    err);
        conn_disarm(k);
        PQfinish(k->conn);
        k->conn = NULL;
        k->state = C_DOWN;
        cm_backoff_arm(k->retry, &k->failures, &k->pg->seed);
        return;
    }
    }
    PQsetNoticeProcessor(k->conn, notice_cb, k);
    if (PQsetnonblocking(k->conn, 1) != 0) {
        conn_lost(k, "cannot set non-blocking");
        return;
    }
    k->state = C_IDLE;
    k->failures = 0;
    CM_DEBUG("event=pg_connected pool=%s conn=%u", k->pg->name, k->index);
    conn_arm(k, EV_READ);
    note_ready(k->pg);
    schedule_dispatch(k->pg);
}

static void conn_start(pgconn *k)
{
    st_pg *pg = k->pg;
    /* Keepalives so a vanished server (host down, network cut) fails the
     * running query in about a minute instead of hanging the pool. The URL
     * comes last and wins over these defaults. PQconnectStartParams resolves
     * host names synchronously: use addresses or a local resolver. */
    const char *const keys[] = {"keepalives",
                                "keepalives_idle",
                                "keepalives_interval",
                                "keepalives_count",
                                "connect_timeout",
                                "application_name",
                                "dbname",
                                NULL};
    const char *const vals[] = {"1", "30", "10", "3", "10", "chat-storage", pg->conninfo, NULL};
    k->conn = PQconnectStartParams(keys, vals, 1);
    if (!k->conn || PQstatus(k->conn) == CONNECTION_BAD) {
        if (k->failures == 0)
            CM_WARN("event=pg_connect_failed pool=%s conn=%u err=\"%s\"", pg->name, k->index,
                    k->conn ? "bad connection string" : "out of memory");
        if (k->conn)
            PQfinish(k->conn);
        k->conn = NULL;
        cm_backoff_arm(k->retry, &k->failures, &k->pg->seed);
        return;
    }
    k->state = C_CONNECTING;
    /* libpq: before the first PQconnectPoll, act as if it returned WRITING */
    conn_arm(k, EV_WRITE);
}

/* ---- dispatch ---- */

/* Sends k->step of q (a plain query is one STEP_QUERY). */
static int conn_send_step(pgconn *k, pgq *q)
{
    int ok;
    if (k->step == STEP_QUERY)
        ok = q->nparams == 0 ? PQsendQuery(k->conn, q->sql)
                             : PQsendQueryParams(k->conn, q->sql, q->nparams, NULL,
                                                 (const char *const *)q->values, NULL, NULL, 0);
    else if (k->step == STEP_SETUP)
        ok = PQsendQuery(k->conn, q->setup);
    else if (k->step == STEP_PREPARE)
        ok = PQsendPrepare(k->conn, q->name, q->sql, q->nparams, NULL);
    else
        ok = PQsendQueryPrepared(k->conn, q->name, q->nparams, (const char *const *)q->values, NULL,
                                 NULL, 0);
    if (!ok)
        return -1;
    k->cur = q;
    k->state = C_BUSY;
    conn_flush(k);
    return 0;
}

static int conn_send(pgconn *k, pgq *q)
{
    k->step = STEP_QUERY;
    if (q->name && is_prepared(k, q->name))
        k->step = STEP_EXECUTE;
    else if (q->name && !k->prepared[PG_PREPARED_MAX - 1]) /* else no room: unprepared */
        k->step = q->setup ? STEP_SETUP : STEP_PREPARE;
    return conn_send_step(k, q);
}

static void dispatch_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    st_pg *pg = arg;
    for (unsigned i = 0; i < pg->nconns && pg->head; i++) {
        pgconn *k = &pg->conns[i];
        if (k->state != C_IDLE)
            continue;
        pgq *q = pg->head;
        pg->head = q->next;
        if (!pg->head)
            pg->tail = NULL;
        pg->queued--;
        q->next = NULL;
        if (conn_send(k, q) != 0) {
            /* never sent: back to the head of the queue, and this
             * connection is reopened */
            q->next = pg->head;
            pg->head = q;
            if (!pg->tail)
                pg->tail = q;
            pg->queued++;
            char err[256];
            snprintf(err, sizeof err, "%s", PQerrorMessage(k->conn));
            first_line(err);
            conn_lost(k, err);
        }
    }
}

/* ---- public ---- */

st_pg *st_pg_new(struct event_base *base, const char *conninfo, unsigned nconns, const char *name)
{
    st_pg *pg = pr_calloc(1, sizeof *pg);
    pg->base = base;
    pg->conninfo = pr_strndup(conninfo, strlen(conninfo));
    snprintf(pg->name, sizeof pg->name, "%s", name);
    pg->nconns = nconns ? nconns : 1;
    pg->conns = pr_calloc(pg->nconns, sizeof *pg->conns);
    pg->seed = cm_backoff_seed(pg);
    pg->dispatch = event_new(base, -1, 0, dispatch_cb, pg);
    for (unsigned i = 0; i < pg->nconns; i++) {
        pgconn *k = &pg->conns[i];
        k->pg = pg;
        k->index = i;
        k->ev_fd = -1;
        k->retry = evtimer_new(base, retry_cb, k);
        conn_start(k);
    }
    return pg;
}

void st_pg_free(st_pg *pg)
{
    if (!pg)
        return;
    for (unsigned i = 0; i < pg->nconns; i++) {
        pgconn *k = &pg->conns[i];
        conn_disarm(k);
        event_free(k->retry);
        if (k->keep)
            PQclear(k->keep);
        pr_free(k->error);
        for (unsigned j = 0; j < PG_PREPARED_MAX; j++)
            pr_free(k->prepared[j]);
        if (k->conn)
            PQfinish(k->conn);
        if (k->cur)
            q_finish(k->cur, NULL, "shutting down");
    }
    while (pg->head) {
        pgq *q = pg->head;
        pg->head = q->next;
        q_finish(q, NULL, "shutting down");
    }
    event_free(pg->dispatch);
    pr_free(pg->conns);
    pr_free(pg->conninfo);
    pr_free(pg);
}

int st_pg_query(st_pg *pg, const char *sql, int nparams, const char *const *values, st_pg_cb cb,
                void *arg)
{
    return st_pg_query_prepared(pg, NULL, NULL, sql, nparams, values, cb, arg);
}

int st_pg_query_prepared(st_pg *pg, const char *name, const char *setup, const char *sql,
                         int nparams, const char *const *values, st_pg_cb cb, void *arg)
{
    if (pg->queued >= PG_QUEUE_MAX)
        return PR_ETOOBIG;
    pgq *q = pr_calloc(1, sizeof *q);
    q->sql = pr_strndup(sql, strlen(sql));
    q->name = name ? pr_strndup(name, strlen(name)) : NULL;
    q->setup = name && setup ? pr_strndup(setup, strlen(setup)) : NULL;
    q->nparams = nparams;
    if (nparams > 0) {
        q->values = pr_calloc((size_t)nparams, sizeof *q->values);
        for (int i = 0; i < nparams; i++)
            q->values[i] = values[i] ? pr_strndup(values[i], strlen(values[i])) : NULL;
    }
    q->cb = cb;
    q->arg = arg;
    if (pg->tail)
        pg->tail->next = q;
    else
        pg->head = q;
    pg->tail = q;
    pg->queued++;
    schedule_dispatch(pg);
    return 0;
}

int st_pg_ready(const st_pg *pg)
{
    for (unsigned i = 0; i < pg->nconns; i++)
        if (pg->conns[i].state == C_IDLE || pg->conns[i].state == C_BUSY)
            return 1;
    return 0;
}

unsigned st_pg_queued(const st_pg *pg)
{
    unsigned n = pg->queued;
    for (unsigned i = 0; i < pg->nconns; i++)
        n += pg->conns[i].state == C_BUSY;
    return n;
}
