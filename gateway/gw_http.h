/*
 * gw_http.h - HTTP/1.1 on a connection (http.c): parsing, routing, responses,
 * the upgrade to another protocol and the hand-off of a request to another
 * worker. One layer of the transport (the order is in gw_loop.h).
 *
 * http.c serves static files and /healthz itself; what lies above it (the
 * Engine.IO path, readiness, metrics) it reaches through the worker's
 * gw_http_handler, set by worker.c.
 */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <http_parser.h>

#include "gw_conn.h"
#include "gw_static.h"

/* flags of gw_http_handler.eio_request */
#define GW_REQ_COOKIE 1         /* token came from the "token" cookie */
#define GW_REQ_ORIGIN_TRUSTED 2 /* no Origin, a listed one, or the same origin */

/* Everything runs on the worker's thread, inside the request's dispatch. */
typedef struct gw_http_handler {
    /* A request for the Engine.IO path (w->eio_path); c is its connection and
     * method an HTTP_* of http_parser. It is answered with gw__http_respond,
     * now or later (the request stays parked meanwhile), upgraded with
     * gw__http_upgrade, or handed off. token is the request's bearer token
     * (empty when none, or when it was a cookie sent from an untrusted
     * Origin); flags are GW_REQ_*. */
    void (*eio_request)(gw_conn *c, int method, pr_view query, pr_view body, int is_upgrade,
                        pr_view ws_key, pr_view token, int flags);
    /* c is closing while c->owner is set (a parked request's): detach. */
    void (*owner_closed)(gw_conn *c);
    int (*ready)(void);           /* /readyz: 1 when the apps can serve */
    void (*metrics)(pr_buf *out); /* /metrics: appends the exposition text */
} gw_http_handler;

void gw__http_init(size_t max_header_bytes); /* once, before workers start */
void gw__http_worker_init(gw_worker *w, const gw_http_handler *up);
void gw__http_worker_dispose(gw_worker *w);
/* Makes c an HTTP connection (its first owner). */
void gw__http_init_conn(gw_conn *c);
/* Starts an HTTP response with status, content type and CORS headers for the
 * request currently being served on c; then body. keep-alive follows the
 * request unless close is set. */
void gw__http_respond(gw_conn *c, int status, const char *ctype, pr_view body, int close);
/* Answers the current request with 101 and the given header lines. When the
 * request's dispatch returns, the HTTP state is freed and become(c, rest)
 * makes c a connection of the new protocol (sets c->ops); rest holds the
 * bytes the client sent behind the request (borrowed). */
typedef void (*gw_http_upgrade_cb)(gw_conn *c, pr_view rest);
void gw__http_upgrade(gw_conn *c, const char *headers, gw_http_upgrade_cb become);
/* Moves the connection, with every byte of the request it is serving, to
 * another worker; c is closed here. */
void gw__http_handoff(gw_conn *c, int to_index);

#endif
