/*
 * app_echo.c - the two test applications the official protocol suites
 * expect (see the READMEs of socketio/engine.io-protocol and
 * socketio/socket.io-protocol), plus two events our own tests use.
 */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "app.h"

/* ---- engine-echo: every message goes back as it came ---- */

static void engine_echo_message(gw_session *s, int binary, pr_view data)
{
    gw_session_send(s, binary, data);
}

const gw_app gw_app_engine_echo = {
    .name = "engine-echo",
    .socketio = 0,
    .default_path = "/engine.io/",
    .on_eio_message = engine_echo_message,
};

/* ---- socketio-echo ---- */

static const char *const echo_namespaces[] = {"/", "/custom", NULL};

/*
 * The `auth` event goes out a millisecond after the CONNECT reply. The
 * official suite reads one message per WebSocket read; the reference server
 * spaces the two by a write callback, and a reply that follows within
 * microseconds would arrive in the same read. Pending emits find their
 * socket again by sid and namespace, since it may be gone by then.
 */
typedef struct pending_auth {
    struct pending_auth *next;
    char sid[32];
    const char *nsp;
    json_t *auth;
} pending_auth;

typedef struct {
    gw_worker *w;
    struct event *timer;
    pending_auth *head, **tail;
} echo_worker;

static void echo_flush_auth(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    echo_worker *ew = arg;
    pending_auth *p = ew->head;
    ew->head = NULL;
    ew->tail = &ew->head;
    while (p) {
        pending_auth *next = p->next;
        gw_socket *sock = gw_socket_find(ew->w, p->sid, p->nsp);
        if (sock) {
            json_t *args = json_pack("[O]", p->auth);
            gw_socket_emit(sock, "auth", args, NULL, 0, NULL, NULL);
            json_decref(args);
        }
        json_decref(p->auth);
        pr_free(p);
        p = next;
    }
    gw_worker_schedule_flush(ew->w);
}

static int echo_worker_init(gw_worker *w, void **state)
{
    echo_worker *ew = pr_calloc(1, sizeof *ew);
    ew->w = w;
    ew->tail = &ew->head;
    ew->timer = evtimer_new(gw_worker_base(w), echo_flush_auth, ew);
    *state = ew;
    return 0;
}

static void echo_worker_dispose(gw_worker *w, void *state)
{
    (void)w;
    echo_worker *ew = state;
    while (ew->head) {
        pending_auth *p = ew->head;
        ew->head = p->next;
        json_decref(p->auth);
        pr_free(p);
    }
    event_free(ew->timer);
    pr_free(ew);
}

static int echo_connect(gw_socket *sock, const json_t *auth, json_t **error)
{
    (void)error;
    gw_worker *w = gw_socket_worker(sock);
    echo_worker *ew = gw_worker_app(w);
    pending_auth *p = pr_calloc(1, sizeof *p);
    snprintf(p->sid, sizeof p->sid, "%s", gw_session_sid(gw_socket_session(sock)));
    p->nsp = gw_socket_nsp(sock);
    p->auth = json_incref((json_t *)auth);
    *ew->tail = p;
    ew->tail = &p->next;
    if (!evtimer_pending(ew->timer, NULL)) {
        struct timeval tv = {0, 1000};
        evtimer_add(ew->timer, &tv);
    }
    return 0;
}

static void callback_acked(gw_socket *sock, void *arg, const sio_packet *ack)
{
    (void)arg;
    if (ack)
        gw_socket_emit(sock, "callback-result", ack->data, ack->att, ack->nattached, NULL, NULL);
}

static void echo_event(gw_socket *sock, const char *event, const sio_packet *p)
{
    if (!strcmp(event, "drop-transport")) {
        gw_socket_drop_transport(sock); /* sock is gone after this */
        return;
    }
    json_t *args = gw_packet_args(p);
    if (!strcmp(event, "message"))
        gw_socket_emit(sock, "message-back", args, p->att, p->nattached, NULL, NULL);
    else if (!strcmp(event, "message-with-ack") && p->id >= 0)
        gw_socket_ack(sock, p->id, args, p->att, p->nattached);
    else if (!strcmp(event, "call-me-back"))
        gw_socket_emit(sock, "callback", args, p->att, p->nattached, callback_acked, NULL);
    json_decref(args);
}

const gw_app gw_app_socketio_echo = {
    .name = "socketio-echo",
    .socketio = 1,
    .default_path = "/socket.io/",
    .namespaces = echo_namespaces,
    .worker_init = echo_worker_init,
    .worker_dispose = echo_worker_dispose,
    .on_connect = echo_connect,
    .on_event = echo_event,
};
