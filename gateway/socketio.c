/*
 * socketio.c - Socket.IO v5 on top of an Engine.IO session: namespaces,
 * CONNECT with its auth payload, the connect timeout, acknowledgements in
 * both directions and binary attachments.
 *
 * A session carries one gw_app_session; each namespace the client joined is
 * a gw_socket. A binary packet waits, decoded, for its attachments in
 * as->pending; any other packet in between is a protocol error.
 *
 * An app may answer a CONNECT later (GW_CONNECT_PENDING): the socket is then
 * in the session's list, so gw_socket_find and on_disconnect work as for any
 * socket, but it is marked pending: nothing goes out on it and the client may
 * send nothing for it (socket.io-client sends nothing before the reply).
 */
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "gw_sio.h"

typedef struct gw_ack {
    struct gw_ack *next;
    int64_t id;
    gw_ack_cb cb;
    void *arg;
} gw_ack;

struct gw_socket {
    gw_socket *next;
    gw_app_session *as;
    const char *nsp; /* one of the app's namespace strings */
    void *data;
    gw_ack *acks;
    int64_t next_ack_id;
    uint8_t pending; /* CONNECT not answered yet */
    char id[GW_SID_LEN + 1];
};

struct gw_app_session {
    gw_session *s;
    gw_socket *sockets;
    sio_packet *pending; /* binary packet waiting for attachments */
    gw_tq_node connect_node;
};

static _Thread_local gw_pool socket_pool = GW_POOL(gw_socket);
static _Thread_local gw_pool app_session_pool = GW_POOL(gw_app_session);

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void random_id(char *out, size_t n)
{
    unsigned char rnd[32];
    if (n > sizeof rnd || RAND_bytes(rnd, (int)n) != 1)
        abort();
    for (size_t i = 0; i < n; i++)
        out[i] = b64url[rnd[i] & 63];
    out[n] = '\0';
}

/* ---- sending ---- */

static int send_packet(gw_socket *sock, sio_type type, int64_t id, const json_t *data,
                       const sio_attachment *att, unsigned natt)
{
    gw_session *s = sock->as->s;
    if (sock->pending && type != SIO_CONNECT)
        return PR_ESTATE;
    pr_buf *enc = &s->w->enc;
    pr_buf_reset(enc);
    int rc = sio_encode(enc, type, sock->nsp, id, natt, data);
    if (rc != 0)
        return rc;
    rc = gw__eio_send(s, EIO_MESSAGE, 0, pr_buf_view(enc));
    for (unsigned i = 0; rc == 0 && i < natt; i++)
        rc = gw__eio_send(s, EIO_MESSAGE, 1, pr_view_make(att[i].ptr, att[i].len));
    return rc;
}

/* Packets for a namespace the client is not connected to (CONNECT_ERROR). */
static void send_connect_error(gw_session *s, const char *nsp, const json_t *data)
{
    pr_buf *enc = &s->w->enc;
    pr_buf_reset(enc);
    if (sio_encode(enc, SIO_CONNECT_ERROR, nsp, -1, 0, data) == 0)
        gw__eio_send(s, EIO_MESSAGE, 0, pr_buf_view(enc));
}

int gw_socket_emit(gw_socket *sock, const char *event, const json_t *args,
                   const sio_attachment *att, unsigned natt, gw_ack_cb cb, void *arg)
{
    if (sock->pending)
        return PR_ESTATE; /* before the ack is registered: its callback never runs */
    json_t *data = json_array();
    json_array_append_new(data, json_string(event));
    if (args)
        json_array_extend(data, (json_t *)args);
    int64_t id = -1;
    if (cb) {
        gw_ack *a = pr_malloc(sizeof *a);
        a->id = id = sock->next_ack_id++;
        a->cb = cb;
        a->arg = arg;
        a->next = sock->acks;
        sock->acks = a;
    }
    int rc = send_packet(sock, natt ? SIO_BINARY_EVENT : SIO_EVENT, id, data, att, natt);
    json_decref(data);
    return rc;
}

int gw_socket_ack(gw_socket *sock, int64_t id, const json_t *args, const sio_attachment *att,
                  unsigned natt)
{
    json_t *empty = NULL;
    if (!args)
        args = empty = json_array();
    int rc = send_packet(sock, natt ? SIO_BINARY_ACK : SIO_ACK, id, args, att, natt);
    json_decref(empty);
    return rc;
}

int gw_socket_ack_raw(gw_socket *sock, int64_t id, pr_view args)
{
    gw_session *s = sock->as->s;
    if (sock->pending)
        return PR_ESTATE;
    pr_buf *enc = &s->w->enc;
    pr_buf_reset(enc);
    int rc = sio_encode(enc, SIO_ACK, sock->nsp, id, 0, NULL); /* "3" [nsp ","] id */
    if (rc == 0)
        rc = pr_buf_append_view(enc, args);
    if (rc == 0)
        rc = gw__eio_send(s, EIO_MESSAGE, 0, pr_buf_view(enc));
    return rc;
}

int gw_socket_send_blob(gw_socket *sock, gw_blob *b)
{
    if (sock->pending)
        return PR_ESTATE;
    return gw__eio_send_blob(sock->as->s, b);
}

uint64_t gw_socket_unread_mark(const gw_socket *sock)
{
    return gw__eio_unread_mark(sock->as->s);
}

static void sio_on_consumed(gw_session *s, uint64_t mark)
{
    const gw_app *app = s->w->app;
    if (!s->app || !app->on_consumed)
        return;
    for (gw_socket *sock = s->app->sockets, *next; sock; sock = next) {
        next = sock->next;
        if (!sock->pending)
            app->on_consumed(sock, mark);
    }
}

/* ---- sockets ---- */

static void socket_free(gw_socket *sock)
{
    /* every ack callback runs exactly once: here with NULL if never acked */
    while (sock->acks) {
        gw_ack *a = sock->acks;
        sock->acks = a->next;
        a->cb(sock, a->arg, NULL);
        pr_free(a);
    }
    gw_pool_put(&socket_pool, sock);
}

static void socket_unlink(gw_socket *sock)
{
    for (gw_socket **pp = &sock->as->sockets; *pp; pp = &(*pp)->next)
        if (*pp == sock) {
            *pp = sock->next;
            return;
        }
}

static gw_socket *find_socket(gw_app_session *as, const char *nsp)
{
    for (gw_socket *x = as->sockets; x; x = x->next)
        if (!strcmp(x->nsp, nsp))
            return x;
    return NULL;
}

static const char *app_namespace(const gw_app *app, const char *nsp)
{
    for (const char *const *n = app->namespaces; n && *n; n++)
        if (!strcmp(*n, nsp))
            return *n;
    return NULL;
}

static void on_connect(gw_app_session *as, sio_packet *p)
{
    gw_session *s = as->s;
    const gw_app *app = s->w->app;
    const char *nsp = app_namespace(app, p->nsp);
    if (!nsp) {
        json_t *err = json_pack("{s:s}", "message", "Invalid namespace");
        send_connect_error(s, p->nsp, err);
        json_decref(err);
        return;
    }
    gw_socket *sock = gw_pool_get(&socket_pool);
    sock->as = as;
    sock->nsp = nsp;
    sock->pending = 1;
    random_id(sock->id, GW_SID_LEN);
    /* linked first, so the app can find it while it decides */
    sock->next = as->sockets;
    as->sockets = sock;
    json_t *auth = p->data ? json_incref(p->data) : json_object();
    json_t *err = NULL;
    int rc = app->on_connect ? app->on_connect(sock, auth, &err) : 0;
    json_decref(auth);
    if (rc == GW_CONNECT_PENDING) {
        json_decref(err); /* sock may be gone already: accepted or rejected inside */
        return;
    }
    if (rc != 0) {
        gw_socket_reject(sock, err);
        json_decref(err);
        return;
    }
    gw_socket_accept(sock, NULL);
}

int gw_socket_pending(const gw_socket *sock)
{
    return sock->pending;
}

int gw_socket_accept(gw_socket *sock, const json_t *extra)
{
    if (!sock->pending)
        return PR_ESTATE;
    gw_session *s = sock->as->s;
    const gw_app *app = s->w->app;
    sock->pending = 0;
    gw__tq_del(&s->w->connect_tq, &sock->as->connect_node);
    pr_free(s->http_token); /* the app has had it; idle sessions keep no token */
    s->http_token = NULL;
    json_t *reply = json_pack("{s:s}", "sid", sock->id);
    if (json_is_object(extra))
        json_object_update_missing(reply, (json_t *)extra); /* sid stays ours */
    int rc = send_packet(sock, SIO_CONNECT, -1, reply, NULL, 0);
    json_decref(reply);
    if (app->on_connected && !s->closed)
        app->on_connected(sock);
    return rc;
}

int gw_socket_reject(gw_socket *sock, const json_t *error)
{
    if (!sock->pending)
        return PR_ESTATE;
    gw_session *s = sock->as->s;
    json_t *dflt = NULL;
    if (!error)
        error = dflt = json_pack("{s:s}", "message", "unauthorized");
    send_connect_error(s, sock->nsp, error);
    json_decref(dflt);
    socket_unlink(sock);
    socket_free(sock);
    return 0;
}

static void on_ack(gw_socket *sock, const sio_packet *p)
{
    for (gw_ack **pp = &sock->acks; *pp; pp = &(*pp)->next) {
        gw_ack *a = *pp;
        if (a->id == p->id) {
            *pp = a->next;
            a->cb(sock, a->arg, p);
            pr_free(a);
            return;
        }
    }
    /* an ack for nothing we asked: ignored, as the reference server does */
}

/* Returns 0, or PR_EINVAL when the packet is not valid in this state. */
static int dispatch(gw_app_session *as, sio_packet *p)
{
    const gw_app *app = as->s->w->app;
    gw_socket *sock = find_socket(as, p->nsp);
    if (sock && sock->pending && p->type != SIO_DISCONNECT)
        return PR_EINVAL; /* nothing may come before the CONNECT reply */
    switch (p->type) {
    case SIO_CONNECT:
        if (sock)
            return PR_EINVAL;
        on_connect(as, p);
        return 0;
    case SIO_DISCONNECT:
        if (!sock)
            return PR_EINVAL;
        socket_unlink(sock);
        if (app->on_disconnect)
            app->on_disconnect(sock, "client namespace disconnect");
        socket_free(sock);
        return 0;
    case SIO_EVENT:
    case SIO_BINARY_EVENT:
        if (!sock)
            return PR_EINVAL;
        if (app->on_event)
            app->on_event(sock, json_string_value(json_array_get(p->data, 0)), p);
        return 0;
    case SIO_ACK:
    case SIO_BINARY_ACK:
        if (!sock)
            return PR_EINVAL;
        on_ack(sock, p);
        return 0;
    default:
        return PR_EINVAL;
    }
}

/* ---- engine callbacks ---- */

static void sio_on_open(gw_session *s)
{
    gw_app_session *as = gw_pool_get(&app_session_pool);
    as->s = s;
    s->app = as;
    gw__tq_add(&s->w->connect_tq, &as->connect_node);
}

static void sio_on_message(gw_session *s, int binary, pr_view data)
{
    gw_app_session *as = s->app;
    if (binary) {
        if (!as->pending ||
            sio_add_attachment(as->pending, data, s->w->cfg->max_payload) != 0) {
            gw__eio_bad_input(s);
            return;
        }
        if (sio_packet_complete(as->pending)) {
            sio_packet *p = as->pending;
            as->pending = NULL;
            if (dispatch(as, p) != 0)
                gw__eio_bad_input(s);
            sio_packet_dispose(p);
            pr_free(p);
        }
        return;
    }
    if (as->pending) { /* attachments were announced, text came */
        gw__eio_bad_input(s);
        return;
    }
    sio_packet *p = pr_malloc(sizeof *p);
    if (sio_decode(data, p) != 0) {
        pr_free(p);
        gw__eio_bad_input(s);
        return;
    }
    if (!sio_packet_complete(p)) {
        as->pending = p;
        return;
    }
    if (dispatch(as, p) != 0)
        gw__eio_bad_input(s);
    sio_packet_dispose(p);
    pr_free(p);
}

static void sio_on_close(gw_session *s, const char *reason)
{
    gw_app_session *as = s->app;
    if (!as)
        return;
    const gw_app *app = s->w->app;
    gw__tq_del(&s->w->connect_tq, &as->connect_node);
    while (as->sockets) {
        gw_socket *sock = as->sockets;
        as->sockets = sock->next;
        if (app->on_disconnect)
            app->on_disconnect(sock, reason);
        socket_free(sock);
    }
    if (as->pending) {
        sio_packet_dispose(as->pending);
        pr_free(as->pending);
    }
    gw_pool_put(&app_session_pool, as);
    s->app = NULL;
}

static void connect_timeout(gw_tq *tq, gw_tq_node *n)
{
    (void)tq;
    gw_app_session *as = GW_CONTAINER_OF(n, gw_app_session, connect_node);
    for (gw_socket *x = as->sockets; x; x = x->next)
        if (!x->pending)
            return;
    /* nothing connected, or the app still deciding: on_disconnect tells it */
    gw__eio_close(as->s, "connect timeout");
}

static const gw_eio_handler sio_handler = {
    .on_open = sio_on_open,
    .on_message = sio_on_message,
    .on_close = sio_on_close,
    .on_consumed = sio_on_consumed,
};

void gw__sio_worker_init(gw_worker *w)
{
    w->eio_up = &sio_handler;
    gw__tq_init(&w->connect_tq, w, w->cfg->connect_timeout_ms, connect_timeout);
}

void gw__sio_worker_dispose(gw_worker *w)
{
    gw__tq_dispose(&w->connect_tq);
}

/* ---- socket accessors ---- */

const char *gw_socket_nsp(const gw_socket *sock) { return sock->nsp; }
const char *gw_socket_id(const gw_socket *sock) { return sock->id; }
gw_session *gw_socket_session(gw_socket *sock) { return sock->as->s; }
gw_worker *gw_socket_worker(gw_socket *sock) { return sock->as->s->w; }
void *gw_socket_data(const gw_socket *sock) { return sock->data; }
void gw_socket_set_data(gw_socket *sock, void *data) { sock->data = data; }

void gw_socket_disconnect(gw_socket *sock)
{
    gw_app_session *as = sock->as;
    const gw_app *app = as->s->w->app;
    if (!sock->pending)
        send_packet(sock, SIO_DISCONNECT, -1, NULL, NULL, 0);
    socket_unlink(sock);
    if (app->on_disconnect)
        app->on_disconnect(sock, "server namespace disconnect");
    socket_free(sock);
}

void gw_socket_drop_transport(gw_socket *sock)
{
    gw__eio_drop_transport(sock->as->s);
}

gw_socket *gw_socket_find(gw_worker *w, const char *sid, const char *nsp)
{
    gw_session *s = gw__eio_find(w, pr_view_make(sid, strlen(sid)));
    if (!s || s->closed || !s->app)
        return NULL;
    return find_socket(s->app, nsp);
}

json_t *gw_packet_args(const sio_packet *p)
{
    json_t *args = json_array();
    size_t n = json_array_size(p->data);
    for (size_t i = 1; i < n; i++)
        json_array_append(args, json_array_get(p->data, i));
    return args;
}
