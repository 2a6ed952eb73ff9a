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

#include <jansson.h>
#include <stdint.h>

#include "pr.h"
#include "sio.h"

typedef struct gw_session gw_session;
typedef struct gw_socket gw_socket;
typedef struct gw_app_session gw_app_session;
typedef struct gw_worker gw_worker;
struct gw_blob;
struct event_base;

/* ack is NULL when the socket went away before the client acknowledged. */
typedef void (*gw_ack_cb)(gw_socket *sock, void *arg, const sio_packet *ack);

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
} gw_app;

#define GW_CONNECT_PENDING 1 /* on_connect: the app answers later */

const gw_app *gw_app_find(const char *name);
extern const gw_app gw_app_engine_echo;
extern const gw_app gw_app_socketio_echo;
extern const gw_app gw_app_chat;

/* ---- the worker (its thread runs the app's callbacks) ---- */
/* The worker's event loop, for the app's own timers and events. */
struct event_base *gw_worker_base(gw_worker *w);
/* The per-worker state the app's worker_init made. */
void *gw_worker_app_state(gw_worker *w);
/* Asks for the flush pass (output written, closed sockets freed) at the end
 * of this loop iteration: after work done in the app's own events. */
void gw_worker_schedule_flush(gw_worker *w);

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

#endif
