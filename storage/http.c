/*
 * http.c - chat-storage's HTTP server (http.h says what it adds to evhttp).
 *
 * libevent 2.1's evhttp has no hook before a request's headers or when a
 * connection arrives, so connections are followed from the bufferevent
 * evhttp asks us for (evhttp_set_bevcb), which is made for each accepted
 * socket. Once evhttp has wrapped it, the bufferevent's callback argument is
 * the evhttp_connection: that is when a connection is "adopted" (its close
 * callback is ours), on the next turn of the loop. Until then we hold a
 * reference on the bufferevent, so a connection evhttp dropped at once is
 * noticed (its callbacks are cleared) instead of read after its free.
 *
 * A connection is WAITING (for a request: it may be displaced or cut at its
 * deadline; the list is in order of the wait's start, oldest first) or
 * HANDLING (its request is with on_request, or its answer is being written;
 * never cut here: the API has its own timeouts and evhttp a write timeout).
 * Killing a connection is evhttp_connection_free, only ever from our own
 * callbacks (timer, accept, listener error), never inside one of that
 * connection's.
 *
 * Framing is checked when evhttp hands over the request: by then it has read
 * the body by the first Content-Length, or as chunked, but nothing after it;
 * answering 400 with Connection: close makes evhttp close once the answer is
 * written, so the rest is never parsed as another request.
 */
#include "http.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "cm_clock.h"
#include "cm_log.h"
#include "pr.h"

#define HTTP_SLOTS 4096          /* hash of connections by bufferevent */
#define HTTP_ACCEPT_PAUSE_MS 100 /* out of descriptors with nothing to displace */

typedef enum { CONN_WAITING, CONN_HANDLING } conn_state;

typedef struct http_conn http_conn;
struct http_conn {
    st_http *h;
    http_conn *prev, *next;          /* in waiting or handling */
    http_conn *hnext;                /* hash chain */
    http_conn *anext;                /* in unadopted while evcon is NULL */
    struct bufferevent *bev;         /* the key; a reference is held until adopted */
    struct evhttp_connection *evcon; /* NULL until adopted */
    uint64_t since_ms;               /* WAITING: when the wait for a request began */
    conn_state state;
    int refused; /* over the cap with nothing to displace: closed when adopted */
};

typedef struct {
    http_conn *head, *tail;
} conn_list;

struct st_http {
    st_http_options o;
    struct evhttp *http;
    struct evconnlistener *listener;
    int port;
    conn_list waiting, handling;
    http_conn *unadopted;
    http_conn *slots[HTTP_SLOTS];
    unsigned nconns;
    int full;       /* accepting stopped: at the cap, nothing to displace */
    int out_of_fds; /* accepting paused after EMFILE... */
    int closing;    /* st_http_free: the listener is gone */
    struct event *adopt_ev, *deadline_ev, *resume_ev;
    st_http *next; /* in servers */
};

/* Every server of the process, for the listener's error callback, which
 * gets evhttp's argument, not ours. */
static st_http *servers;

/* ---- bookkeeping ---- */

static unsigned slot_of(const struct bufferevent *bev)
{
    return (unsigned)(((uintptr_t)bev >> 4) % HTTP_SLOTS);
}

static http_conn *find(st_http *h, const struct bufferevent *bev)
{
    http_conn *c = h->slots[slot_of(bev)];
    while (c && c->bev != bev)
        c = c->hnext;
    return c;
}

static void list_append(conn_list *l, http_conn *c)
{
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
}

static void list_remove(conn_list *l, http_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
}

static conn_list *list_of(st_http *h, const http_conn *c)
{
    return c->state == CONN_WAITING ? &h->waiting : &h->handling;
}

static void update_listener(st_http *h)
{
    if (h->closing)
        return;
    if (h->full || h->out_of_fds)
        evconnlistener_disable(h->listener);
    else
        evconnlistener_enable(h->listener);
}

/* The oldest wait's deadline, if the timer is not already set for it or
 * for an earlier one (the head only ever gets younger). */
static void arm_deadline(st_http *h)
{
    http_conn *c = h->waiting.head;
    if (!c || evtimer_pending(h->deadline_ev, NULL))
        return;
    uint64_t now = cm_now_ms(), due = c->since_ms + h->o.request_timeout_ms;
    uint64_t ms = due > now ? due - now : 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(h->deadline_ev, &tv);
}

static void start_waiting(st_http *h, http_conn *c)
{
    list_remove(list_of(h, c), c);
    c->state = CONN_WAITING;
    c->since_ms = cm_now_ms();
    list_append(&h->waiting, c);
    arm_deadline(h);
    if (h->full) { /* a connection that can be displaced again */
        h->full = 0;
        update_listener(h);
    }
}

/* Forgets c (its connection is gone or going). */
static void forget(st_http *h, http_conn *c)
{
    list_remove(list_of(h, c), c);
    http_conn **pp = &h->slots[slot_of(c->bev)];
    while (*pp != c)
        pp = &(*pp)->hnext;
    *pp = c->hnext;
    h->nconns--;
    pr_free(c);
    if (h->full) {
        h->full = 0;
        update_listener(h);
    }
}

/* evhttp is freeing the connection; what is still on it goes after this. */
static void closed_cb(struct evhttp_connection *evcon, void *arg)
{
    http_conn *c = arg;
    st_http *h = c->h;
    forget(h, c);
    if (h->o.on_close)
        h->o.on_close(evcon, h->o.arg);
}

/* Closes the connection of c (adopted, WAITING, none of its callbacks
 * running). */
static void kill_conn(http_conn *c)
{
    /* forgotten here rather than by closed_cb: the callers walk the lists
     * and must not depend on evhttp calling back */
    st_http *h = c->h;
    struct evhttp_connection *evcon = c->evcon;
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    forget(h, c);
    if (h->o.on_close)
        h->o.on_close(evcon, h->o.arg);
    evhttp_connection_free(evcon);
}

/* Displaces the connection that has waited longest for its request; 0 when
 * no connection can be (every one is being answered, or is not adopted). */
static int shed_oldest(st_http *h)
{
    for (http_conn *c = h->waiting.head; c; c = c->next) {
        if (c->evcon) {
            kill_conn(c);
            return 1;
        }
    }
    return 0;
}

/* Takes the connections evhttp made since the last turn. `current` is a
 * connection whose callback is running (never freed here), or NULL. */
static void adopt_all(st_http *h, struct evhttp_connection *current)
{
    while (h->unadopted) {
        http_conn *c = h->unadopted;
        h->unadopted = c->anext;
        c->anext = NULL;
        struct bufferevent *bev = c->bev;
        bufferevent_data_cb readcb = NULL;
        void *cbarg = NULL;
        bufferevent_getcb(bev, &readcb, NULL, NULL, &cbarg);
        if (!readcb || !cbarg) {
            /* evhttp let it go already (its callbacks are cleared) */
            forget(h, c);
            bufferevent_decref(bev);
            continue;
        }
        c->evcon = cbarg;
        evhttp_connection_set_closecb(c->evcon, closed_cb, c);
        bufferevent_decref(bev);
        if (c->refused && c->evcon != current)
            kill_conn(c);
    }
}

static void adopt_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    adopt_all(arg, NULL);
}

/* evhttp wants a bufferevent for a socket it just accepted. */
static struct bufferevent *new_bev_cb(struct event_base *base, void *arg)
{
    st_http *h = arg;
    /* the connections accepted before this one in the same pass are set
     * up by now: adopted, they may be displaced */
    adopt_all(h, NULL);
    /* options 0, as evhttp makes its own: evhttp closes the descriptor */
    struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);
    if (!bev)
        return NULL; /* evhttp tries itself, and the connection goes untracked */
    http_conn *c = pr_calloc(1, sizeof *c);
    c->h = h;
    c->bev = bev;
    bufferevent_incref(bev);
    unsigned s = slot_of(bev);
    c->hnext = h->slots[s];
    h->slots[s] = c;
    h->nconns++;
    c->anext = h->unadopted;
    h->unadopted = c;
    event_active(h->adopt_ev, EV_TIMEOUT, 0);
    c->state = CONN_WAITING;
    c->since_ms = cm_now_ms();
    list_append(&h->waiting, c);
    arm_deadline(h);
    if (h->nconns > h->o.max_connections && !shed_oldest(h)) {
        /* every other connection is being answered: this one goes, and
         * the next wait in the kernel's backlog until one is done */
        c->refused = 1;
        h->full = 1;
        update_listener(h);
        CM_WARN_RATELIMITED("event=http_full connections=%u", h->nconns);
    }
    return bev;
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    st_http *h = arg;
    uint64_t now = cm_now_ms();
    http_conn *c;
    while ((c = h->waiting.head) != NULL && c->evcon &&
           now - c->since_ms >= h->o.request_timeout_ms) {
        CM_DEBUG("event=http_request_timeout waited_ms=%llu",
                 (unsigned long long)(now - c->since_ms));
        kill_conn(c);
    }
    arm_deadline(h);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    st_http *h = arg;
    h->out_of_fds = 0;
    update_listener(h);
}

/* accept() failed for a reason that is not "try again". Left enabled, the
 * listener would stay readable and fail again at once, for ever. arg is
 * evhttp's (the listener's one argument is evhttp's own). */
static void accept_error_cb(struct evconnlistener *listener, void *arg)
{
    (void)arg;
    int err = errno;
    st_http *h = servers;
    while (h && h->listener != listener)
        h = h->next;
    if (!h)
        return;
    if ((err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) && shed_oldest(h)) {
        /* a descriptor is free again: the next accept() takes it */
        CM_WARN_RATELIMITED("event=http_accept_shed err=\"%s\" connections=%u", strerror(err),
                            h->nconns);
        return;
    }
    CM_WARN_RATELIMITED("event=http_accept_paused err=\"%s\" connections=%u", strerror(err),
                        h->nconns);
    h->out_of_fds = 1;
    update_listener(h);
    struct timeval tv = {0, HTTP_ACCEPT_PAUSE_MS * 1000};
    evtimer_add(h->resume_ev, &tv);
}

/* ---- framing ---- */

/* A header name is a token (RFC 9110 5.1, 5.6.2). */
static int is_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              strchr("!#$%&'*+-.^_`|~", ch)))
            return 0;
    }
    return 1;
}

static int all_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* Why the request's length could be read two ways, or NULL when it cannot. */
static const char *bad_framing(struct evhttp_request *req)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *cl = NULL, *te = NULL;
    int ncl = 0, nte = 0;
    for (struct evkeyval *e = in->tqh_first; e; e = e->next.tqe_next) {
        if (!is_token(e->key))
            return "malformed header name";
        if (!strcasecmp(e->key, "Content-Length")) {
            cl = e->value;
            ncl++;
        } else if (!strcasecmp(e->key, "Transfer-Encoding")) {
            te = e->value;
            nte++;
        }
    }
    if (ncl > 1)
        return "more than one Content-Length";
    if (nte > 1)
        return "more than one Transfer-Encoding";
    if (ncl && nte)
        return "Content-Length and Transfer-Encoding together";
    if (cl && !all_digits(cl))
        return "malformed Content-Length";
    if (te && strcasecmp(te, "chunked") != 0)
        return "Transfer-Encoding other than chunked";
    return NULL;
}

static void refuse(struct evhttp_request *req, const char *why)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_clear_headers(out);
    evhttp_add_header(out, "Content-Type", "application/json");
    evhttp_add_header(out, "Cache-Control", "no-store");
    /* evhttp closes after writing: nothing after this request is read */
    evhttp_add_header(out, "Connection", "close");
    struct evbuffer *body = evbuffer_new();
    evbuffer_add_printf(body, "{\"error\":\"bad request framing: %s\"}", why);
    evhttp_send_reply(req, 400, "Bad Request", body);
    evbuffer_free(body);
}

/* ---- requests ---- */

static void answered_cb(struct evhttp_request *req, void *arg)
{
    (void)req;
    http_conn *c = arg;
    start_waiting(c->h, c); /* for the next request on this connection */
}

static void request_cb(struct evhttp_request *req, void *arg)
{
    st_http *h = arg;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    http_conn *c = evcon ? find(h, evhttp_connection_get_bufferevent(evcon)) : NULL;
    if (c && !c->evcon) {
        adopt_all(h, evcon); /* it came before the adoption pass */
        c->refused = 0;      /* and is served: it is done in a moment */
    }
    if (c) {
        list_remove(list_of(h, c), c);
        c->state = CONN_HANDLING;
        list_append(&h->handling, c);
        evhttp_request_set_on_complete_cb(req, answered_cb, c);
    }
    const char *why = bad_framing(req);
    if (why) {
        CM_WARN_RATELIMITED("event=http_bad_framing why=\"%s\"", why);
        refuse(req, why);
        return;
    }
    h->o.on_request(req, h->o.arg);
}

/* ---- life ---- */

st_http *st_http_new(struct event_base *base, const st_http_options *o)
{
    st_http *h = pr_calloc(1, sizeof *h);
    h->o = *o;
    h->http = evhttp_new(base);
    evhttp_set_max_body_size(h->http, (ev_ssize_t)o->max_body);
    evhttp_set_max_headers_size(h->http, 16384);
    /* evhttp's own timer is of inactivity: it cuts a reader that stops
     * taking its answer; the deadline above cuts a slow request */
    struct timeval tv = {(time_t)(o->request_timeout_ms / 1000),
                         (suseconds_t)(o->request_timeout_ms % 1000) * 1000};
    evhttp_set_timeout_tv(h->http, &tv);
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(h->http, request_cb, h);
    evhttp_set_bevcb(h->http, new_bev_cb, h);
    h->adopt_ev = event_new(base, -1, 0, adopt_cb, h);
    h->deadline_ev = evtimer_new(base, deadline_cb, h);
    h->resume_ev = evtimer_new(base, resume_cb, h);
    struct evhttp_bound_socket *bound =
        evhttp_bind_socket_with_handle(h->http, o->host, (ev_uint16_t)o->port);
    if (!bound) {
        st_http_free(h);
        return NULL;
    }
    h->listener = evhttp_bound_socket_get_listener(bound);
    h->next = servers;
    servers = h;
    evconnlistener_set_error_cb(h->listener, accept_error_cb);
    /* the port actually bound (HOST:0 picks one) */
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    h->port = o->port;
    if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &sl) == 0)
        h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    return h;
}

int st_http_port(const st_http *h)
{
    return h->port;
}

void st_http_free(st_http *h)
{
    if (!h)
        return;
    h->closing = 1;
    for (st_http **pp = &servers; *pp; pp = &(*pp)->next) {
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    }
    evhttp_free(h->http); /* closed_cb for every adopted connection */
    /* what was never adopted: evhttp has freed it, our reference is left */
    while (h->unadopted) {
        http_conn *c = h->unadopted;
        h->unadopted = c->anext;
        struct bufferevent *bev = c->bev;
        forget(h, c);
        bufferevent_decref(bev);
    }
    event_free(h->adopt_ev);
    event_free(h->deadline_ev);
    event_free(h->resume_ev);
    pr_free(h);
}
