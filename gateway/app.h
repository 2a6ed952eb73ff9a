/*
 * app.h - the interface between the protocol layers and the applications
 * that run on them (engine-echo, socketio-echo, chat).
 *
 * An application is a table of callbacks. Engine-level apps see Engine.IO
 * sessions and raw messages; Socket.IO-level apps see sockets (one per
 * connected namespace of a session) and decoded packets.
 *
 * Threading and lifetime: every callback runs on the worker thread that owns
 * the session; the gw_session / gw_socket pointers are valid until the
 * matching close/disconnect callback returns. Asynchronous work must keep an
 * id, not the pointer. Packets passed to callbacks are borrowed until the
 * callback returns.
 */
#ifndef GW_APP_H
#define GW_APP_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "pr.h"
#include "sio.h"

typedef struct gw_session gw_session;
typedef struct gw_socket gw_socket;
typedef struct gw_app_session gw_app_session;
typedef struct gw_worker gw_worker;
typedef struct gw_config gw_config;
typedef struct gw_blob gw_blob;

/* Length of an Engine.IO session id (gw_session_sid): apps keep sids to
 * find their sockets again. */
#define GW_SID_LEN 20

#define GW_CONTAINER_OF(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* ack is NULL when the socket went away before the client acknowledged. */
typedef void (*gw_ack_cb)(gw_socket *sock, void *arg, const sio_packet *ack);

/* A counter of the app, kept per worker and summed into /metrics as
 * chat_gateway_NAME (a Prometheus counter) after the transport's own. */
typedef struct gw_app_counter {
    const char *name; /* e.g. "room_deliveries_total" */
    const char *help;
} gw_app_counter;
#define GW_APP_COUNTERS_MAX 8

typedef struct gw_app {
    const char *name;
    int socketio;                     /* 1: Socket.IO level, 0: Engine.IO level */
    const char *default_path;         /* "/socket.io/" or "/engine.io/" */
    const char *const *namespaces;    /* Socket.IO: accepted namespaces, NULL-terminated */

    /* Optional per-worker state, created on the worker's thread. */
    int (*worker_init)(gw_worker *w, void **state);
    void (*worker_dispose)(gw_worker *w, void *state);
    /* Optional: 0 while the app cannot serve (e.g. Redis down); read from any
     * thread by /readyz, so it must only read atomics. */
    int (*ready)(gw_worker *w);

    /* Engine.IO level */
    void (*on_eio_open)(gw_session *s);
    void (*on_eio_message)(gw_session *s, int binary, pr_view data);
    void (*on_eio_close)(gw_session *s, const char *reason);

    /* Socket.IO level. on_connect decides admission: return 0 to accept,
     * GW_CONNECT_PENDING to decide later with gw_socket_accept() or
     * gw_socket_reject(), or any other non-zero value to refuse, with *error
     * set to the CONNECT_ERROR data (ownership passes; NULL: "unauthorized").
     * While pending, the socket is findable with gw_socket_find, nothing can
     * be sent on it, a packet the client sends for it closes the session
     * (1008), and on_disconnect runs if the session goes away first. */
    int (*on_connect)(gw_socket *sock, const json_t *auth, json_t **error);
    void (*on_connected)(gw_socket *sock); /* after the CONNECT reply was queued */
    void (*on_event)(gw_socket *sock, const char *event, const sio_packet *pkt);
    void (*on_disconnect)(gw_socket *sock, const char *reason);
    /* Optional: the client has read everything queued on sock up to mark
     * (see gw_socket_unread_mark). Never runs for what a session that
     * closed first had not proved read. */
    void (*on_consumed)(gw_socket *sock, uint64_t mark);

    /* Optional: the app's counters (at most GW_APP_COUNTERS_MAX), counted
     * with gw_app_count(w, index into counters, n). */
    const gw_app_counter *counters;
    unsigned ncounters;
} gw_app;

#define GW_CONNECT_PENDING 1 /* on_connect: the app answers later */

const gw_app *gw_app_find(const char *name);
extern const gw_app gw_app_engine_echo;
extern const gw_app gw_app_socketio_echo;
extern const gw_app gw_app_chat;

/* ---- Engine.IO level ---- */
int gw_session_send(gw_session *s, int binary, pr_view data);
const char *gw_session_sid(const gw_session *s);
/* Bearer token of the handshake request (Authorization header or "token"
 * cookie), available to on_connect of the first namespace; NULL if none. */
const char *gw_session_http_token(const gw_session *s);
void gw_session_close(gw_session *s);

/* ---- Socket.IO level ---- */
const char *gw_socket_nsp(const gw_socket *sock);
const char *gw_socket_id(const gw_socket *sock);
gw_session *gw_socket_session(gw_socket *sock);
gw_worker *gw_socket_worker(gw_socket *sock);
void *gw_socket_data(const gw_socket *sock);
void gw_socket_set_data(gw_socket *sock, void *data);

/*
 * Emits event with args (a JSON array of the arguments after the event name,
 * borrowed, may be NULL). Placeholders in args refer to att[0..natt). With cb
 * the packet carries an ack id and cb runs exactly once: with the ack, or
 * with NULL when the socket disconnects first.
 */
int gw_socket_emit(gw_socket *sock, const char *event, const json_t *args,
                   const sio_attachment *att, unsigned natt, gw_ack_cb cb, void *arg);
/* Acknowledges the client's packet id with args (a JSON array, borrowed). */
int gw_socket_ack(gw_socket *sock, int64_t id, const json_t *args, const sio_attachment *att,
                  unsigned natt);
/* The same with args given as JSON text, the array of the ack's arguments
 * (e.g. "[{\"ok\":true}]"), written as it is: for apps that render their
 * acks themselves (proto/chat_packets.h), with no JSON tree in between. */
int gw_socket_ack_raw(gw_socket *sock, int64_t id, pr_view args);
/*
 * Finish a pending CONNECT (on_connect returned GW_CONNECT_PENDING; may also
 * be called from inside on_connect). accept sends the CONNECT reply
 * {"sid": ..} with the members of extra (an object, borrowed, may be NULL)
 * merged in, then runs on_connected. reject sends CONNECT_ERROR with error
 * (an object, borrowed; NULL: "unauthorized") and frees the socket without
 * on_disconnect: sock must not be used afterwards. Both return PR_ESTATE when
 * the socket is not pending.
 */
int gw_socket_accept(gw_socket *sock, const json_t *extra);
int gw_socket_reject(gw_socket *sock, const json_t *error);
/* 1 while the socket's CONNECT is pending. */
int gw_socket_pending(const gw_socket *sock);
/* Queues pre-encoded bytes (one encoded broadcast shared by many sockets). */
int gw_socket_send_blob(gw_socket *sock, struct gw_blob *b);
/*
 * Whether the client has read what was queued on sock so far. 0: it counts
 * as read now (WebSocket: written to the connection). Otherwise a mark that
 * on_consumed(sock, m) with m >= mark confirms later: long-polling, once
 * the client sends the GET after the one whose answer carried it (or
 * upgrades to WebSocket). A session that closes first never confirms it.
 */
uint64_t gw_socket_unread_mark(const gw_socket *sock);
/* The socket of session sid in namespace nsp on worker w, or NULL when it
 * has gone: how asynchronous work finds its socket again. */
gw_socket *gw_socket_find(gw_worker *w, const char *sid, const char *nsp);
/* The arguments after the event name, as a new JSON array (caller decrefs). */
json_t *gw_packet_args(const sio_packet *p);
/* Server-side namespace disconnect: sends DISCONNECT, then on_disconnect.
 * sock must not be used afterwards (nor after gw_socket_drop_transport). */
void gw_socket_disconnect(gw_socket *sock);
/* Drops the whole transport without a close packet (client must reconnect). */
void gw_socket_drop_transport(gw_socket *sock);

/* ---- the worker, for apps ----------------------------------------------
 * What an app needs of the worker its callbacks run on: for that worker's
 * thread, except gw_worker_index and gw_worker_config (immutable). */
int gw_worker_index(const gw_worker *w); /* 0-based, stable: for logs and names */
const gw_config *gw_worker_config(const gw_worker *w); /* read-only, the process's */
struct event_base *gw_worker_base(gw_worker *w);      /* for the app's own timers */
void *gw_worker_app(const gw_worker *w); /* the state worker_init made, or NULL */
/* The worker's monotonic clock in ms (cached per loop turn): what timer
 * heap deadlines are measured on. */
uint64_t gw_worker_now_ms(gw_worker *w);
/* Output queued outside of a transport callback (a timer, a Redis reply)
 * is written in the worker's flush pass: schedule one. */
void gw_worker_schedule_flush(gw_worker *w);
/* Adds n to the app's counter number counter (see gw_app.counters). */
void gw_app_count(gw_worker *w, unsigned counter, uint64_t n);

/* ---- shared output bytes ---------------------------------------------------
 * A packet encoded once and queued on many sockets (gw_socket_send_blob takes
 * its own reference). gw_blob_sio frames the Socket.IO packet text (e.g.
 * "2[\"event\",...]") as one Engine.IO message for either transport; its
 * count is 1. */
gw_blob *gw_blob_sio(pr_view packet);
gw_blob *gw_blob_ref(gw_blob *b);
void gw_blob_unref(gw_blob *b);

/* ---- timer heaps (theap.c) ---------------------------------------------
 * Per-worker timers with a deadline per entry (on gw_worker_now_ms): a
 * min-heap and one libevent timer; O(log n) add and removal. cb runs on the
 * worker's thread with the node already removed, and may add it again or
 * free what holds it; a flush pass follows. */
typedef struct gw_th_node {
    uint64_t deadline_ms;
    size_t idx; /* 1 + position in the heap; 0 when not queued */
} gw_th_node;

typedef struct gw_th gw_th;
typedef void (*gw_th_cb)(gw_th *th, gw_th_node *node);
struct gw_th {
    gw_th_node **v;
    size_t n, cap;
    struct event timer;
    gw_th_cb cb;
    gw_worker *w;
};

void gw_th_init(gw_th *th, gw_worker *w, gw_th_cb cb);
void gw_th_dispose(gw_th *th); /* the nodes left are unqueued, not freed */
void gw_th_add(gw_th *th, gw_th_node *n, uint64_t deadline_ms); /* (re)arms n */
void gw_th_del(gw_th *th, gw_th_node *n); /* no-op when n is not queued */
static inline int gw_th_queued(const gw_th_node *n) { return n->idx != 0; }

/* ---- per-thread pools of records (pool.c) --------------------------------
 * Free lists of one record size carved from slabs, for the records every
 * connection keeps (dense, no malloc header): declare one per type as
 * `static _Thread_local gw_pool p = GW_POOL(type);`. */
typedef struct gw_pool {
    size_t size;
    void *free;
} gw_pool;
#define GW_POOL(type) {(sizeof(type) + 7) & ~(size_t)7, NULL}
void *gw_pool_get(gw_pool *p); /* zeroed */
void gw_pool_put(gw_pool *p, void *obj); /* NULL is fine */

/* ---- per-user rate limits (ratelimit.c) ------------------------------------
 * One token bucket per user id, shared by every worker of the process (any
 * thread may call these). acquire finds or creates the user's bucket (full)
 * and takes a reference; release drops it (NULL is fine); take spends one
 * token if there is one: 1, else 0. */
typedef struct gw_rl gw_rl;
gw_rl *gw_rl_acquire(const char *uid, size_t len, double burst, uint64_t now_ms);
void gw_rl_release(gw_rl *b);
int gw_rl_take(gw_rl *b, uint64_t now_ms, double rate, double burst);

#endif
