/*
 * gw_loop.h - the bottom layer of the gateway's transport: a worker's event
 * loop and what every layer above uses on it (gw__ namespace, private to
 * gateway/). Files: loop.c, theap.c, pool.c, blob.c.
 *
 * Layers of the transport, bottom to top; a file includes only the private
 * header of its own layer and of layers below it, and calls upward only
 * through callbacks that the layer above hands down (scripts/check-layers.py
 * enforces the includes):
 *
 *   app.h        (implemented above)           what applications see of the gateway
 *   gw_loop.h    loop.c theap.c pool.c blob.c  worker loop, timers, pools, blobs
 *   gw_conn.h    conn.c                        a TCP connection, its ops table
 *   gw_static.h  static.c                      files served from memory
 *   gw_http.h    http.c                        HTTP/1.1 on a connection
 *   gw_ws.h      ws.c                          WebSocket on an upgraded connection
 *   gw_engine.h  engine.c                      Engine.IO sessions
 *   gw_sio.h     socketio.c                    Socket.IO on a session
 *   gw_worker.h  worker.c services.c           accepting, the flush pass, wiring
 *
 * app.h, the applications' interface, is the bottom: it includes only proto
 * and declares what several layers implement for apps (sockets: engine.c
 * and socketio.c; timer heaps, pools, blobs: this layer; the worker:
 * services.c). Applications include nothing else of the gateway.
 *
 * Threading: the gateway runs one worker per event loop (one thread each).
 * Every object belongs to exactly one worker and is touched only on that
 * worker's thread; the only cross-thread path is the hand-off inbox
 * (gw__worker_handoff), guarded by its mutex.
 *
 * Lifetimes: connections and sessions are never freed inside their own
 * callbacks. Closing marks them, unlinks them from everything that could reach
 * them, and queues them on the worker's graveyard, which is emptied at the end
 * of the flush pass (Redis' freeClientAsync model).
 */
#ifndef GW_LOOP_H
#define GW_LOOP_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "app.h"
#include "config.h"
#include "eio.h"
#include "cm_log.h"
#include "pr.h"
#include "pr_map.h"

typedef struct gw_worker gw_worker;
typedef struct gw_conn gw_conn;
typedef struct gw_session gw_session;
typedef struct gw_app gw_app;

/* ---- timer queues (loop.c) ---------------------------------------------------
 * All entries of one queue share one timeout, so deadlines are FIFO and a
 * queue needs one libevent timer, O(1) insert and O(1) removal. A node is in
 * at most one queue at a time. */
typedef struct gw_tq_node {
    struct gw_tq_node *prev, *next;
    uint64_t deadline_ms; /* 0 when not queued */
} gw_tq_node;

typedef struct gw_tq gw_tq;
typedef void (*gw_tq_cb)(gw_tq *tq, gw_tq_node *node);
struct gw_tq {
    gw_tq_node head; /* sentinel */
    uint64_t timeout_ms;
    struct event timer;
    gw_tq_cb cb;
    gw_worker *w;
    uint64_t fired_deadline_ms; /* during cb: the deadline that expired */
};

void gw__tq_init(gw_tq *tq, gw_worker *w, uint64_t timeout_ms, gw_tq_cb cb);
void gw__tq_dispose(gw_tq *tq);
void gw__tq_add(gw_tq *tq, gw_tq_node *n); /* (re)arms n: deadline = now + timeout */
/* Queues must stay FIFO: start_ms may not be earlier than the last add's. */
void gw__tq_add_from(gw_tq *tq, gw_tq_node *n, uint64_t start_ms);
/* No-op when n is not queued; tq is not used, so any queue's removes a node
 * from whichever queue holds it. */
void gw__tq_del(gw_tq *tq, gw_tq_node *n);
static inline int gw__tq_queued(const gw_tq_node *n) { return n->deadline_ms != 0; }
uint64_t gw__now_ms(gw_worker *w);
/* Arms a libevent timer for deadline_ms on the gw__now_ms clock (at once when
 * it has passed). */
void gw__timer_arm(struct event *timer, gw_worker *w, uint64_t deadline_ms);

/* Timer heaps (theap.c), record pools (pool.c) and the per-user rate limits
 * (ratelimit.c) are lent to applications: declared in app.h. */

/* ---- shared output bytes (blob.c) ------------------------------------------
 * Immutable once built; refcounted so one encoded broadcast is written to many
 * sockets. data = [ws frame header (hdr bytes)][payload (len - hdr bytes)]. */
struct gw_blob {
    uint32_t refs;
    uint16_t hdr;    /* bytes of WebSocket header in front of the payload */
    uint8_t binary;  /* payload is a binary Engine.IO message (no type byte) */
    size_t len;      /* total bytes in data */
    char data[];
};

gw_blob *gw__blob_new(size_t len);
/* A blob with this count is never counted nor freed: static files, built
 * before the workers start and shared read-only by all of them (a count
 * written by several threads would race). */
#define GW_BLOB_IMMORTAL UINT32_MAX
static inline gw_blob *gw__blob_ref(gw_blob *b)
{
    if (b->refs != GW_BLOB_IMMORTAL)
        b->refs++;
    return b;
}
void gw__blob_unref(gw_blob *b);
/* A WebSocket frame (FIN set, unmasked) with room for payload_len bytes, which
 * the caller writes at data + hdr. */
gw_blob *gw__blob_ws_frame(int opcode, size_t payload_len);
/* An Engine.IO packet ready for either transport: a text frame holding
 * "<type><data>", or a binary frame holding the bytes. */
gw_blob *gw__blob_eio(eio_type type, int binary, pr_view data);

/* A place in an output queue (a connection's, or a polling session's). */
typedef struct gw_onode {
    struct gw_onode *next;
    gw_blob *blob;
    size_t off;
} gw_onode;
gw_onode *gw__onode_alloc(void); /* zeroed, from the thread's pool (pool.c) */
void gw__onode_release(gw_onode *n);
/* Drops a whole queue: unrefs the blob of every node from head on and
 * releases the nodes (the caller resets its head, tail and byte count). */
void gw__onode_release_all(gw_onode *head);

/* ---- the worker (loop.c; made and run by worker.c) --------------------------
 * One per thread. The struct holds the per-worker state of every layer, so
 * that no layer needs a global; each layer touches only its own fields, and
 * the handlers below are how a layer reaches the one above it (set during
 * gw__worker_new by that layer or by worker.c). */
typedef struct gw_handoff {
    struct gw_handoff *next;
    int fd;
    size_t len;
    char data[];
} gw_handoff;

typedef struct {
    uint64_t conns_open, conns_total, sessions_open, sessions_total, handoffs;
    uint64_t bytes_in, bytes_out, eio_packets_in, eio_packets_out, closed_bad_input;
    uint64_t accept_errors, conns_dropped_output;
    uint64_t app[GW_APP_COUNTERS_MAX]; /* the app's counters (gw_app.counters) */
} gw_stats;

struct gw_http_handler;
struct gw_ws_handler;
struct gw_eio_handler;

struct gw_worker {
    int index;
    const gw_config *cfg;
    const gw_app *app;
    const char *eio_path;    /* --path, else the app's default path */
    struct event_base *base;
    int listen_fd;
    struct event listen_ev;
    struct event accept_retry;
    struct event flush_ev;     /* activated when anything waits for the flush pass */
    int flush_scheduled;
    struct event inbox_ev;
    pthread_mutex_t inbox_lock;
    gw_handoff *inbox;
    /* conn.c */
    uint32_t next_conn_id;
    uint64_t nconns;
    gw_conn *flush_list;
    gw_conn *conn_graveyard;
    gw_tq linger_tq;
    /* http.c */
    gw_tq http_idle_tq;
    const struct gw_http_handler *http_up; /* what HTTP serves above it (worker.c) */
    /* ws.c */
    const struct gw_ws_handler *ws_up;     /* where messages go (engine.c) */
    struct {
        const char *p;
        size_t n;
    } feed;                  /* bytes wslay_event_recv may read next */
    /* engine.c */
    const struct gw_eio_handler *eio_up;   /* the session's owner (socketio.c, or the app) */
    gw_session *poll_list;
    gw_session *session_graveyard;
    pr_map sessions; /* sid -> session (gw_session.map_link) */
    gw_tq ping_tq, pong_tq;
    /* socketio.c */
    gw_tq connect_tq;
    /* every layer */
    char *scratch;           /* read buffer, GW_SCRATCH bytes */
    pr_buf enc;              /* encoding scratch for the current packet */
    gw_stats stats;
    void *app_worker;        /* per-worker state of the app */
    pthread_t thread;
};

#define GW_SCRATCH (256 * 1024)

#define GW_STAT_ADD(w, f, n)                                                                      \
    __atomic_store_n(&(w)->stats.f, (w)->stats.f + (uint64_t)(n), __ATOMIC_RELAXED)

/* Asks for the flush pass (worker.c) at the end of this loop iteration. */
void gw__worker_schedule_flush(gw_worker *w);
/* The workers of the process, set once before they start (by worker.c's
 * gw__workers_set). */
void gw__loop_set_workers(gw_worker **list, int n);
gw_worker *gw__worker_get(int index);
int gw__worker_count(void);
/* Queues fd, with bytes already read from it, on worker to_index's inbox;
 * that worker adopts it (any thread may call this). */
void gw__worker_handoff(gw_worker *from, int to_index, int fd, pr_view bytes);
int gw__draining(void); /* 1 after SIGTERM: /readyz fails */
void gw__set_draining(void);

#endif
