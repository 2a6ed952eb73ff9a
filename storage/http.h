/*
 * http.h - chat-storage's HTTP server: libevent 2.1's evhttp with what it
 * lacks when exposed directly (docs/decisions.md, "chat-storage's HTTP
 * server when exposed directly").
 *
 * - Framing: a request whose length two parsers could read two ways (more
 *   than one Content-Length, Content-Length with Transfer-Encoding, a
 *   Transfer-Encoding other than one "chunked", a Content-Length that is
 *   not digits, a header name that is not a token such as
 *   "Transfer-Encoding :") is answered 400 with Connection: close; what
 *   follows it on the connection is never read as another request.
 * - A whole-request deadline: from accept, or from the end of the previous
 *   answer on a kept-alive connection, until the request's last byte has
 *   arrived, at most request_timeout_ms; then the connection is closed
 *   (bytes trickled one at a time do not extend it).
 * - A connection cap: a connection beyond max_connections displaces the one
 *   that has waited longest for its request. When every connection is being
 *   answered, accepting stops until one is done (the kernel's backlog
 *   holds the newcomers).
 * - accept() failing for want of descriptors (EMFILE...) displaces the
 *   longest-waiting connection too, or pauses accepting for 100 ms when
 *   there is none: the loop never spins on a listener it cannot serve.
 *
 * Owner: main.c, on the loop's thread; every callback runs there. on_request
 * gets each well-framed request (evhttp's gencb contract: answer it once,
 * now or later). on_close runs when a connection is gone, before libevent
 * frees what is still on it (evhttp's close callback contract).
 */
#ifndef ST_HTTP_H
#define ST_HTTP_H

#include <event2/event.h>
#include <event2/http.h>
#include <stddef.h>

typedef struct st_http st_http;
typedef void (*st_http_request_cb)(struct evhttp_request *req, void *arg);
typedef void (*st_http_close_cb)(struct evhttp_connection *con, void *arg);

typedef struct {
    const char *host;
    int port;                    /* 0: any free port */
    unsigned max_connections;    /* >= 1 */
    unsigned request_timeout_ms; /* >= 1 */
    size_t max_body;
    st_http_request_cb on_request;
    st_http_close_cb on_close; /* may be NULL */
    void *arg;
} st_http_options;

/* Listens at once; NULL when it cannot (the address is taken...). */
st_http *st_http_new(struct event_base *base, const st_http_options *o);
/* The port actually bound. */
int st_http_port(const st_http *h);
/* Closes the listener and every connection (on_close runs for each). */
void st_http_free(st_http *h);

#endif
