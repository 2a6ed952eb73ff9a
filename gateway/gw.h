/*
 * gw.h - internals shared by the files of gateway/ (the gw__ namespace).
 *
 * Threading: the gateway runs one worker per event loop (one thread each).
 * Every object below belongs to exactly one worker and is touched only on that
 * worker's thread; the only cross-thread path is the hand-off inbox
 * (gw__worker_handoff), guarded by its mutex.
 *
 * Lifetimes: connections and sessions are never freed inside their own
 * callbacks. Closing marks them, unlinks them from everything that could reach
 * them, and queues them on the worker's graveyard, which is emptied at the end
 * of the flush pass (Redis' freeClientAsync model).
 */
#ifndef GW_H
#define GW_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <http_parser.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <wslay/wslay.h>

#include "app.h"
#include "config.h"
#include "eio.h"
#include "log.h"
#include "pr.h"
#include "sio.h"

typedef struct gw_worker gw_worker;
typedef struct gw_conn gw_conn;

/* ---- timer queues ---------------------------------------------------------
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
void gw__tq_del(gw_tq *tq, gw_tq_node *n); /* no-op when n is not queued */
static inline int gw__tq_queued(const gw_tq_node *n) { return n->deadline_ms != 0; }
uint64_t gw__now_ms(gw_worker *w);

/* ---- shared output bytes --------------------------------------------------
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

typedef struct gw_onode {
    struct gw_onode *next;
    gw_blob *blob;
    size_t off;
} gw_onode;
gw_onode *gw__onode_alloc(void); /* zeroed, from the thread's pool */
void gw__onode_release(gw_onode *n);

/* ---- connections ---------------------------------------------------------- */
enum { GW_CONN_HTTP = 0, GW_CONN_WS = 1 };
/* OPEN -> [CLOSE_AFTER_WRITE ->] [LINGER ->] CLOSED; only OPEN accepts output. */
enum { GW_OPEN = 0, GW_CLOSE_AFTER_WRITE = 1, GW_LINGER = 2, GW_CLOSED = 3 };

typedef struct gw_http gw_http; /* request parsing state, allocated while HTTP */

typedef struct {
    pr_buf rbuf;              /* bytes of an incomplete frame; empty when idle */
    wslay_event_context_ptr ctx; /* held only while a frame or message is open */
    uint8_t fragmented;       /* a fragmented message is in progress */
    uint8_t close_sent;
    uint8_t in_wslay;         /* inside wslay_event_recv: ctx must not be freed */
    uint8_t peer_closed;      /* the client's close frame arrived */
} gw_ws;

struct gw_conn {
    gw_worker *w;
    int fd;
    uint32_t id;
    uint8_t kind;       /* GW_CONN_* */
    uint8_t state;      /* GW_OPEN, GW_CLOSE_AFTER_WRITE, GW_CLOSED */
    uint8_t ev_flags;   /* EV_READ/EV_WRITE the event is registered with */
    uint8_t read_paused;  /* closing: input is no longer wanted */
    uint8_t backpressure; /* output above the soft limit: not reading */
    uint8_t doomed;       /* over an output limit: closed in the flush pass */
    uint8_t pending;    /* on the worker's flush list */
    struct event ev;
    gw_onode *out_head, *out_tail;
    size_t out_bytes;
    uint64_t soft_since_ms; /* when out_bytes first went over the soft limit */
    gw_conn *next;          /* flush list or graveyard */
    gw_tq_node idle;        /* HTTP: header/idle timeout */
    struct gw_session *session; /* WS: its session; HTTP: session whose poll is parked here */
    union {
        gw_http *http;
        gw_ws ws;
    } u;
};

gw_conn *gw__conn_new(gw_worker *w, int fd);
/* Queues bytes; they are written in the flush pass. Closes the connection
 * (and returns PR_ETOOBIG) when the output limits are exceeded. */
int gw__conn_send_blob(gw_conn *c, gw_blob *b); /* takes a reference */
int gw__conn_send(gw_conn *c, const void *p, size_t n);
void gw__conn_close(gw_conn *c, int after_write);
void gw__conn_set_reading(gw_conn *c, int on);
void gw__conn_free(gw_conn *c);
void gw__conn_close_all(gw_worker *w); /* at shutdown */
/* Writes queued output now; returns 0 or a negative error. */
int gw__conn_flush(gw_conn *c);
void gw__conn_feed(gw_conn *c, const char *p, size_t n); /* bytes read from the socket */
/* Reads and processes what is already in c's socket buffer, now. */
void gw__conn_read_now(gw_conn *c);

/* ---- HTTP ----------------------------------------------------------------- */
void gw__http_init(size_t max_header_bytes); /* once, before workers start */
void gw__http_init_conn(gw_conn *c);
/* Answers the current request with 101 and the given header lines. */
void gw__http_upgrade(gw_conn *c, const char *headers);
int gw__draining(void); /* 1 after SIGTERM: /readyz fails */
void gw__set_draining(void);
void gw__http_dispose_conn(gw_conn *c);
void gw__http_on_data(gw_conn *c, const char *p, size_t n);
/* Starts an HTTP response with status, content type and CORS headers for the
 * request currently being served on c; then body. keep-alive follows the
 * request unless close is set. */
void gw__http_respond(gw_conn *c, int status, const char *ctype, pr_view body, int close);
/* Resumes parsing pipelined bytes after a parked request was answered. */
void gw__http_resume(gw_conn *c);
void gw__http_idle_timeout(gw_tq *tq, gw_tq_node *n);
void gw__linger_timeout(gw_tq *tq, gw_tq_node *n);
/* Moves the connection, with every byte of the request it is serving, to
 * another worker; c is closed here. */
void gw__http_handoff(gw_conn *c, int to_index);

/* ---- WebSocket ------------------------------------------------------------ */
/* Answers the upgrade request on c with 101; c becomes a WebSocket
 * connection when the HTTP layer returns from the request. */
void gw__ws_accept(gw_conn *c, pr_view key);
void gw__ws_on_data(gw_conn *c, const char *p, size_t n);
void gw__ws_dispose(gw_conn *c);
/* Sends a close frame with code and closes after it is written. */
void gw__ws_close(gw_conn *c, uint16_t code);
/* After gw__ws_accept, still inside the upgrade request: close at once. */
void gw__ws_reject(gw_conn *c, uint16_t code);

/* Result of scanning the start of a buffer for one complete client frame. */
typedef struct {
    uint8_t fin, opcode;
    uint64_t payload_len;
    size_t frame_len; /* header + payload */
} gw_ws_frame;
/* Returns 1 and fills f when a complete frame is at the start of p, 0 when more
 * bytes are needed, or a negative WebSocket close code (-1002, -1009) when the
 * frame can never be valid (unmasked, reserved bits, control frame too long or
 * fragmented, payload over max_payload). Pure; fuzzed. */
int gw__ws_scan(const char *p, size_t n, size_t max_payload, gw_ws_frame *f);

/* ---- Engine.IO sessions ----------------------------------------------------- */
enum { GW_T_POLLING = 0, GW_T_WEBSOCKET = 1 };

struct gw_session {
    char sid[GW_SID_LEN + 1];
    uint8_t transport;     /* GW_T_* */
    uint8_t upgrading;     /* a probe WebSocket is attached */
    uint8_t closed;
    uint8_t poll_dirty;    /* on the worker's poll flush list */
    uint8_t client_closed; /* the client sent a close packet */
    uint8_t probe_acked;   /* 3probe sent on the probe WebSocket */
    uint8_t awaiting_pong; /* hb is in pong_tq (else in ping_tq) */
    uint8_t tombstone;     /* closed by the client, sid kept for a late GET */
    uint8_t doomed;        /* polling queue over the limit: closed in the flush pass */
    uint8_t cookie_auth;   /* the handshake's credential was a cookie: Origin is checked */
    /* Polling: what the client has provably read. Packets queued for a GET
     * are numbered (out_seq); a GET's answer takes them up to answered_seq,
     * and they count as read (consumed_seq) when the client sends its next
     * GET, or upgrades. WebSocket packets count as read when queued. */
    uint64_t out_seq, answered_seq, consumed_seq;
    gw_worker *w;
    gw_conn *conn;         /* WebSocket transport, or the parked polling GET */
    gw_conn *probe;        /* WebSocket being upgraded to */
    gw_onode *pollq_head, *pollq_tail; /* packets waiting for a GET (polling) */
    size_t pollq_bytes;
    gw_tq_node hb;         /* in ping_tq (waiting to ping) or pong_tq */
    struct gw_session *map_next;
    struct gw_session *next; /* poll flush list or graveyard */
    gw_app_session *app;   /* owned by the app layer (socket.io) */
    char *http_token;      /* bearer token of the handshake request, until CONNECT */
};

/* HTTP entry points of the engine; c is the request's connection. token is
 * the request's bearer token (empty when none, or when it was a cookie sent
 * from an untrusted Origin); flags are GW_REQ_*. */
#define GW_REQ_COOKIE 1         /* token came from the "token" cookie */
#define GW_REQ_ORIGIN_TRUSTED 2 /* no Origin, a listed one, or the same origin */
void gw__eio_handle_request(gw_conn *c, int method, pr_view query, pr_view body, int is_upgrade,
                            pr_view ws_key, pr_view token, int flags);
void gw__eio_on_ws_text(gw_conn *c, pr_view data);
void gw__eio_on_ws_binary(gw_conn *c, pr_view data);
void gw__eio_on_ws_closed(gw_conn *c);      /* the WebSocket went away */
void gw__eio_on_poll_closed(gw_conn *c);    /* a parked GET's connection went away */
gw_session *gw__eio_find(gw_worker *w, pr_view sid);
int gw__eio_sid_worker(pr_view sid);        /* worker index encoded in sid, or -1 */
void gw__eio_flush_polls(gw_worker *w);
void gw__eio_worker_init(gw_worker *w);
void gw__eio_worker_dispose(gw_worker *w);
void gw__eio_reap(gw_worker *w);
void gw__eio_worker_close_all(gw_worker *w);

/* ---- static files (static.c) ------------------------------------------------
 * Read into memory at start-up and immutable after: safe to read from every
 * worker without locks. */
typedef struct gw_static_file {
    char *name;          /* path under its root, no leading '/' */
    const char *ctype;   /* Content-Type */
    const char *cache;   /* Cache-Control */
    char etag[20];       /* quoted: a prefix of the SHA-256 of the bytes */
    gw_blob *body;       /* immortal (GW_BLOB_IMMORTAL), shared by every worker */
} gw_static_file;

/* On the main thread before the workers start: the Socket.IO client (with
 * --serve-client on, for Socket.IO apps) and the --web-root. -1 when a
 * setting is wrong (an error naming it was printed). */
int gw__static_load(const gw_config *cfg, const gw_app *app);
void gw__static_free(void);
/* The client file NAME (what follows the Engine.IO path), or NULL. */
const gw_static_file *gw__static_client(pr_view name);
/* The web root's file for a request path: 0 and *f; PR_ENOTFOUND (also when
 * there is no web root); PR_EINVAL for a path that can name no file. */
int gw__static_web(pr_view path, const gw_static_file **f);
/* Pure, exposed for unit tests. clean_path turns a request path ("/a/b%20c",
 * no query) into the name it stands for ("a/b c"; "/" and "dir/" name
 * index.html) in out (NUL-terminated); returns its length, PR_EINVAL for a
 * path that is not '/'-rooted, has a bad escape, a NUL or control byte, a
 * backslash, or an empty, "." or ".." segment (encoded or not), PR_ETOOBIG
 * when it does not fit. mime is the Content-Type for a name's extension.
 * etag_match: whether an If-None-Match value matches etag (weakly; "*"). */
int gw__static_clean_path(pr_view path, char *out, size_t cap);
const char *gw__static_mime(const char *name);
int gw__static_etag_match(pr_view header, const char *etag);

/* ---- worker --------------------------------------------------------------- */
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

struct gw_worker {
    int index;
    const gw_config *cfg;
    const gw_app *app;
    struct event_base *base;
    int listen_fd;
    struct event listen_ev;
    struct event accept_retry;
    struct event flush_ev;     /* activated when anything waits for the flush pass */
    int flush_scheduled;
    struct event inbox_ev;
    pthread_mutex_t inbox_lock;
    gw_handoff *inbox;
    uint32_t next_conn_id;
    uint64_t nconns;
    gw_conn *flush_list;
    gw_conn *conn_graveyard;
    struct gw_session *poll_list;
    struct gw_session *session_graveyard;
    struct gw_session **map; /* sid -> session, chained */
    size_t map_size, map_count;
    gw_tq http_idle_tq, linger_tq;
    gw_tq ping_tq, pong_tq, connect_tq;
    char *scratch;           /* read buffer, GW_SCRATCH bytes */
    pr_buf enc;              /* encoding scratch for the current packet */
    struct {
        const char *p;
        size_t n;
    } feed;                  /* bytes wslay_event_recv may read next */
    gw_stats stats;
    void *app_worker;        /* per-worker state of the app */
    pthread_t thread;
};

#define GW_SCRATCH (256 * 1024)

#define GW_STAT_ADD(w, f, n)                                                                      \
    __atomic_store_n(&(w)->stats.f, (w)->stats.f + (uint64_t)(n), __ATOMIC_RELAXED)

gw_worker *gw__worker_new(int index, const gw_config *cfg, const gw_app *app, int listen_fd);
void gw__workers_set(gw_worker **list, int n, int max_conns);
int gw__worker_run(gw_worker *w);
void gw__worker_free(gw_worker *w);
void gw__worker_reap(gw_worker *w); /* frees the graveyards */
int gw__total_connections(void);
int gw__app_ready(void); /* every worker's app says ready (e.g. Redis is up) */
void gw__worker_schedule_flush(gw_worker *w);
void gw__worker_handoff(gw_worker *from, int to_index, int fd, pr_view bytes);
gw_worker *gw__worker_get(int index);
int gw__worker_count(void);

/* ---- Socket.IO layer (socketio.c) ----------------------------------------- */
/* Called by the engine when the app is Socket.IO level. */
void gw__sio_on_open(gw_session *s);
void gw__sio_on_message(gw_session *s, int binary, pr_view data);
void gw__sio_on_close(gw_session *s, const char *reason);
void gw__sio_connect_timeout(gw_tq *tq, gw_tq_node *n);
/* The client has read every packet of s up to mark (app's on_consumed). */
void gw__sio_on_consumed(gw_session *s, uint64_t mark);

/* ---- engine send/close, used by socketio.c and apps ------------------------ */
int gw__eio_send(gw_session *s, eio_type type, int binary, pr_view data);
int gw__eio_send_blob(gw_session *s, gw_blob *b);
/* 0 when everything queued on s counts as read by the client (WebSocket),
 * else the mark gw__sio_on_consumed reports once it does (polling). */
uint64_t gw__eio_unread_mark(const gw_session *s);
void gw__eio_close(gw_session *s, const char *reason); /* WebSocket close code 1000 */
void gw__eio_close_code(gw_session *s, const char *reason, uint16_t ws_code);
/* The client sent something invalid: count it and close with 1008. */
void gw__eio_bad_input(gw_session *s);
/* Drops the transport abruptly, without a close packet (tests of reconnection). */
void gw__eio_drop_transport(gw_session *s);

/* metrics text for /metrics (Prometheus exposition format) */
void gw__metrics_render(pr_buf *out);

#endif
