/*
 * http.c - HTTP/1.1 on a connection, parsed by Debian's http-parser.
 *
 * The raw bytes of the request being served stay in h->in until its response
 * is sent: the parser's callbacks record offsets into that buffer (pieces of
 * one header are contiguous there), a parked long-poll can still read its
 * request's Origin when it answers, and a hand-off to another worker can pass
 * the request on byte for byte. Keep-alive and pipelining are supported; one
 * request is served at a time. The layers above are reached through the
 * worker's gw_http_handler (the Engine.IO path) and the upgrade callback.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cm_cors.h"
#include "gw_http.h"

enum {
    H_ORIGIN,
    H_UPGRADE,
    H_WS_KEY,
    H_WS_VERSION,
    H_AC_REQ_HEADERS,
    H_AUTHORIZATION,
    H_COOKIE,
    H_HOST,
    H_IF_NONE_MATCH,
    H_COUNT,
    H_OTHER = H_COUNT,
};

static const char *const header_names[H_COUNT] = {
    "origin", "upgrade", "sec-websocket-key", "sec-websocket-version",
    "access-control-request-headers", "authorization", "cookie", "host", "if-none-match",
};

typedef struct {
    size_t off, len;
} span;

/* An HTTP connection's state (c->layer.ptr): allocated while it is HTTP. */
typedef struct gw_http gw_http;
struct gw_http {
    http_parser parser;
    pr_buf in;        /* the current request and anything after it */
    size_t parsed;    /* bytes of in fed to the parser */
    span url;
    span field;       /* header name being collected */
    int field_id;     /* which header the values belong to */
    int in_value;
    span hdr[H_COUNT];
    pr_buf body;
    int method;
    gw_http_upgrade_cb upgrade; /* answered 101: how the new protocol takes over */
    uint8_t complete;    /* the parser reached the end of the request */
    uint8_t in_dispatch; /* a handler is running synchronously */
    uint8_t responded;   /* the response to the current request is queued */
    uint8_t too_big;
    uint8_t keep_alive;
    uint8_t dispose_pending; /* closed during dispatch: free when it returns */
};

static http_parser_settings settings;
static const gw_conn_ops http_conn_ops;

static gw_http *conn_http(const gw_conn *c)
{
    return c->layer.ptr;
}

static gw_http *H(http_parser *p)
{
    return GW_CONTAINER_OF(p, gw_http, parser);
}

static size_t off_of(gw_http *h, const char *at)
{
    return (size_t)(at - h->in.ptr);
}

static void span_add(gw_http *h, span *s, const char *at, size_t len)
{
    if (s->len == 0)
        s->off = off_of(h, at);
    s->len += len;
}

static pr_view span_view(const gw_http *h, span s)
{
    return pr_view_make(h->in.ptr + s.off, s.len);
}

static int on_message_begin(http_parser *p)
{
    gw_http *h = H(p);
    memset(&h->url, 0, sizeof h->url);
    memset(h->hdr, 0, sizeof h->hdr);
    h->field.len = 0;
    h->in_value = 0;
    h->field_id = H_OTHER;
    pr_buf_reset(&h->body);
    h->complete = h->responded = h->too_big = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    span_add(H(p), &H(p)->url, at, len);
    return 0;
}

/* RFC 7230 tchar. Debian's http-parser is built lenient and lets spaces
 * into header names ("Content-Length : 0"), a request-smuggling vector. */
static int is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    gw_http *h = H(p);
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)at[i]))
            return -1;
    if (h->in_value) {
        h->in_value = 0;
        h->field.len = 0;
    }
    span_add(h, &h->field, at, len);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    gw_http *h = H(p);
    if (!h->in_value) {
        h->in_value = 1;
        h->field_id = H_OTHER;
        pr_view f = span_view(h, h->field);
        for (int i = 0; i < H_COUNT; i++)
            if (strlen(header_names[i]) == f.len && !strncasecmp(header_names[i], f.ptr, f.len)) {
                h->field_id = i;
                /* a repeated header: keep the first */
                if (h->hdr[i].len)
                    h->field_id = H_OTHER;
                break;
            }
    }
    if (h->field_id != H_OTHER)
        span_add(h, &h->hdr[h->field_id], at, len);
    return 0;
}

/* The lenient parser does not check the "HTTP/" of the request line. */
static int request_line_ok(const gw_http *h)
{
    const char *p = h->in.ptr + h->url.off + h->url.len;
    const char *end = h->in.ptr + h->in.len;
    static const char v[] = " HTTP/1.";
    if ((size_t)(end - p) < sizeof v || memcmp(p, v, sizeof v - 1) != 0)
        return 0;
    p += sizeof v - 1;
    return (*p == '0' || *p == '1') && p + 1 < end && (p[1] == '\r' || p[1] == '\n');
}

static int on_headers_complete(http_parser *p)
{
    gw_http *h = H(p);
    gw_conn *c = p->data;
    if (!request_line_ok(h))
        return -1;
    /* Refuse an oversized body before reading it. */
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->w->cfg->max_payload) {
        h->too_big = 1;
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    gw_http *h = H(p);
    if (pr_buf_append(&h->body, at, len) != 0) {
        h->too_big = 1;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    gw_http *h = H(p);
    h->complete = 1;
    h->method = p->method;
    h->keep_alive = (uint8_t)http_should_keep_alive(p);
    http_parser_pause(p, 1); /* serve one request at a time */
    return 0;
}

static void settings_init(void)
{
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
}

/* ---- responses ---- */

static const char *status_text(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

/* Appends the CORS headers this request earns under --cors-origin; a
 * preflight (OPTIONS) also gets the methods and headers it asked for. */
static void append_cors(const gw_config *cfg, pr_buf *out, const gw_http *h)
{
    pr_view origin = span_view(h, h->hdr[H_ORIGIN]);
    if (!cfg->cors_origin[0] || origin.len == 0)
        return;
    int allowed = !strcmp(cfg->cors_origin, "*") || cm_cors_listed(cfg->cors_origin, origin);
    if (!allowed)
        return;
    if (!strcmp(cfg->cors_origin, "*") && !cfg->cors_credentials) {
        pr_buf_appendf(out, "Access-Control-Allow-Origin: *\r\n");
    } else {
        /* Echo the origin: with credentials the wildcard is not allowed. */
        pr_buf_append(out, "Access-Control-Allow-Origin: ", 29);
        pr_buf_append_view(out, origin);
        pr_buf_append(out, "\r\nVary: Origin\r\n", 16);
    }
    if (cfg->cors_credentials)
        pr_buf_appendf(out, "Access-Control-Allow-Credentials: true\r\n");
    if (h->method == HTTP_OPTIONS && h->complete) {
        pr_view req = span_view(h, h->hdr[H_AC_REQ_HEADERS]);
        pr_buf_appendf(out, "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
                            "Access-Control-Max-Age: 86400\r\n");
        if (req.len && req.len < 256)
            pr_buf_appendf(out, "Access-Control-Allow-Headers: %.*s\r\n", (int)req.len, req.ptr);
    }
}

static void respond_raw(gw_conn *c, int status, const char *ctype, pr_view body, int close,
                        const char *extra)
{
    gw_http *h = conn_http(c);
    gw_worker *w = c->w;
    pr_buf *out = &w->enc;
    pr_buf_reset(out);
    int keep = status == 101 || (h && h->keep_alive && !close);
    pr_buf_appendf(out, "HTTP/1.1 %d %s\r\n", status, status_text(status));
    if (status != 204 && status != 101)
        pr_buf_appendf(out, "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype, body.len);
    if (status != 101)
        pr_buf_appendf(out, "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n%s",
                       keep ? "" : "Connection: close\r\n");
    if (h)
        append_cors(w->cfg, out, h);
    if (extra)
        pr_buf_appendf(out, "%s", extra);
    pr_buf_append(out, "\r\n", 2);
    gw_blob *b = gw__blob_new(out->len + body.len);
    memcpy(b->data, out->ptr, out->len);
    if (body.len)
        memcpy(b->data + out->len, body.ptr, body.len);
    if (h)
        h->responded = 1;
    /* may close c over the output limits, and so free h */
    gw__conn_send_blob(c, b);
    gw__blob_unref(b);
    if (!keep)
        gw__conn_close(c, 1);
}

/* A file from memory: 200 with its bytes (none for HEAD: the length
 * only), or 304 when the client's copy is current. The header block is
 * built per request; the body is the file's shared blob itself. */
static void respond_file(gw_conn *c, int status, const gw_static_file *f, int head)
{
    gw_http *h = conn_http(c);
    pr_buf *out = &c->w->enc;
    pr_buf_reset(out);
    int keep = h->keep_alive;
    pr_buf_appendf(out, "HTTP/1.1 %d %s\r\n", status, status_text(status));
    if (status == 200)
        pr_buf_appendf(out, "Content-Type: %s\r\nContent-Length: %zu\r\n", f->ctype,
                       f->body->len);
    pr_buf_appendf(out, "ETag: %s\r\nCache-Control: %s\r\nX-Content-Type-Options: nosniff\r\n%s",
                   f->etag, f->cache, keep ? "" : "Connection: close\r\n");
    append_cors(c->w->cfg, out, h);
    pr_buf_append(out, "\r\n", 2);
    gw_blob *b = gw__blob_new(out->len);
    memcpy(b->data, out->ptr, out->len);
    h->responded = 1;
    /* may close c over the output limits; the body then is refused too */
    int rc = gw__conn_send_blob(c, b);
    gw__blob_unref(b);
    if (rc == 0 && status == 200 && !head && f->body->len)
        gw__conn_send_blob(c, f->body);
    if (!keep)
        gw__conn_close(c, 1);
}

static void http_process(gw_conn *c);

static void request_done(gw_conn *c)
{
    gw_http *h = conn_http(c);
    pr_buf_consume(&h->in, h->parsed);
    h->parsed = 0;
    h->complete = 0;
    gw__tq_add(&c->w->http_idle_tq, &c->idle);
}

void gw__http_respond(gw_conn *c, int status, const char *ctype, pr_view body, int close)
{
    if (c->state != GW_OPEN || c->ops != &http_conn_ops)
        return;
    respond_raw(c, status, ctype, body, close, NULL);
    if (c->state != GW_OPEN || conn_http(c)->in_dispatch)
        return;
    /* An answer to a parked request: serve whatever was pipelined behind it. */
    request_done(c);
    http_process(c);
}

static void respond_error(gw_conn *c, int status, const char *msg)
{
    pr_view body = pr_view_make(msg, strlen(msg));
    respond_raw(c, status, "text/plain; charset=UTF-8", body, 1, NULL);
}

/* ---- routing ---- */

/* GET and HEAD read a file; OPTIONS (a CORS preflight) is answered like
 * the Engine.IO path's; anything else is 405. */
static void serve_file(gw_conn *c, const gw_static_file *f)
{
    gw_http *h = conn_http(c);
    if (h->method == HTTP_OPTIONS) {
        respond_raw(c, 204, "", pr_view_make("", 0), 0, "Allow: GET, HEAD, OPTIONS\r\n");
        return;
    }
    if (h->method != HTTP_GET && h->method != HTTP_HEAD) {
        respond_raw(c, 405, "text/plain; charset=UTF-8", PR_VIEW_LIT("method not allowed"), 0,
                    "Allow: GET, HEAD, OPTIONS\r\n");
        return;
    }
    pr_view inm = span_view(h, h->hdr[H_IF_NONE_MATCH]);
    if (inm.len && gw__static_etag_match(inm, f->etag))
        respond_file(c, 304, f, 1);
    else
        respond_file(c, 200, f, h->method == HTTP_HEAD);
}

static int path_is(pr_view path, const char *want)
{
    size_t n = strlen(want);
    if (path.len == n && !memcmp(path.ptr, want, n))
        return 1;
    /* "/socket.io" is "/socket.io/" too */
    return n > 1 && want[n - 1] == '/' && path.len == n - 1 && !memcmp(path.ptr, want, n - 1);
}

/*
 * Whether a cookie of this request may be taken as a credential: a browser
 * sends the cookie with a WebSocket or polling request that any page opens
 * (cross-site WebSocket hijacking), and always says which page in Origin.
 * Trusted: no Origin (not a browser, which sends it on every WebSocket and
 * cross-origin request), an origin listed in --cors-origin ("*" lists
 * nothing here: any page is not a credential's page), or the same origin,
 * i.e. the Origin's host[:port] is the request's Host.
 */
static int origin_trusted(const gw_config *cfg, const gw_http *h)
{
    pr_view origin = span_view(h, h->hdr[H_ORIGIN]);
    if (h->hdr[H_ORIGIN].len == 0)
        return 1;
    if (cfg->cors_origin[0] && cm_cors_listed(cfg->cors_origin, origin))
        return 1;
    pr_view host = span_view(h, h->hdr[H_HOST]);
    const char *sep = origin.len > 3 ? memchr(origin.ptr, ':', origin.len) : NULL;
    if (!sep || (size_t)(origin.ptr + origin.len - sep) < 3 || memcmp(sep, "://", 3) != 0)
        return 0; /* "null", or not scheme://host */
    pr_view auth = pr_view_make(sep + 3, (size_t)(origin.ptr + origin.len - sep - 3));
    return auth.len > 0 && auth.len == host.len && !strncasecmp(auth.ptr, host.ptr, auth.len);
}

/* The bearer token of the request: "Authorization: Bearer <t>", else the
 * "token" cookie (*cookie set). Empty when neither is present. */
static pr_view request_token(const gw_http *h, int *cookie)
{
    *cookie = 0;
    pr_view a = span_view(h, h->hdr[H_AUTHORIZATION]);
    if (a.len > 7 && !strncasecmp(a.ptr, "Bearer ", 7)) {
        pr_view t = pr_view_make(a.ptr + 7, a.len - 7);
        while (t.len && t.ptr[0] == ' ') {
            t.ptr++;
            t.len--;
        }
        return t;
    }
    pr_view ck = span_view(h, h->hdr[H_COOKIE]);
    const char *p = ck.ptr, *end = ck.ptr + ck.len;
    while (p && p < end) {
        while (p < end && (*p == ' ' || *p == ';'))
            p++;
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *e = semi ? semi : end;
        if (e - p > 6 && !memcmp(p, "token=", 6)) {
            *cookie = 1;
            return pr_view_make(p + 6, (size_t)(e - p - 6));
        }
        p = semi ? semi + 1 : NULL;
    }
    return pr_view_make("", 0);
}

static void dispatch(gw_conn *c)
{
    gw_http *h = conn_http(c);
    const gw_config *cfg = c->w->cfg;
    pr_view url = span_view(h, h->url), path = url, query = PR_VIEW_LIT("");
    const char *q = memchr(url.ptr, '?', url.len);
    if (q) {
        path.len = (size_t)(q - url.ptr);
        query = pr_view_make(q + 1, url.len - path.len - 1);
    }
    const char *eio_path = c->w->eio_path;
    size_t eio_len = strlen(eio_path);

    /* PATH/socket.io.js and the other client files (gw__static_client
     * knows only what was loaded: nothing with --serve-client off) */
    if (path.len > eio_len && !memcmp(path.ptr, eio_path, eio_len)) {
        const gw_static_file *f =
            gw__static_client(pr_view_make(path.ptr + eio_len, path.len - eio_len));
        if (f) {
            serve_file(c, f);
            return;
        }
    }

    if (path_is(path, eio_path)) {
        if (h->method == HTTP_OPTIONS) { /* CORS preflight */
            respond_raw(c, 204, "", pr_view_make("", 0), 0, NULL);
            return;
        }
        int upgrade = h->parser.upgrade && h->hdr[H_UPGRADE].len == 9 &&
                      !strncasecmp(span_view(h, h->hdr[H_UPGRADE]).ptr, "websocket", 9);
        if (upgrade) {
            pr_view ver = span_view(h, h->hdr[H_WS_VERSION]);
            if (h->method != HTTP_GET || ver.len != 2 || memcmp(ver.ptr, "13", 2) != 0 ||
                h->hdr[H_WS_KEY].len == 0) {
                respond_error(c, 400, "bad websocket handshake");
                return;
            }
        }
        int cookie;
        pr_view token = request_token(h, &cookie);
        int trusted = origin_trusted(cfg, h);
        if (cookie && !trusted)
            token = pr_view_make("", 0); /* not a credential from that page */
        int flags = (cookie && trusted ? GW_REQ_COOKIE : 0) | (trusted ? GW_REQ_ORIGIN_TRUSTED : 0);
        c->w->http_up->eio_request(c, h->method, query, pr_buf_view(&h->body), upgrade,
                                   span_view(h, h->hdr[H_WS_KEY]), token, flags);
        return;
    }
    if (path_is(path, "/healthz") && h->method == HTTP_GET) {
        gw__http_respond(c, 200, "text/plain", PR_VIEW_LIT("ok\n"), 0);
        return;
    }
    if (path_is(path, "/readyz") && h->method == HTTP_GET) {
        int ready = !gw__draining() && c->w->http_up->ready();
        gw__http_respond(c, ready ? 200 : 503, "text/plain",
                         ready ? PR_VIEW_LIT("ready\n") : PR_VIEW_LIT("draining\n"), 0);
        return;
    }
    if (path_is(path, "/metrics") && h->method == HTTP_GET) {
        pr_buf m;
        pr_buf_init(&m, 1 << 20);
        c->w->http_up->metrics(&m);
        gw__http_respond(c, 200, "text/plain; version=0.0.4", pr_buf_view(&m), 0);
        pr_buf_dispose(&m);
        return;
    }
    /* the web root last: it never shadows the endpoints above */
    const gw_static_file *f = NULL;
    int rc = gw__static_web(path, &f);
    if (rc == 0) {
        serve_file(c, f);
        return;
    }
    if (rc == PR_EINVAL) {
        respond_error(c, 400, "bad path");
        return;
    }
    respond_error(c, 404, "not found");
}

static void http_dispose(gw_conn *c);

/* After the 101 went out: the new protocol takes c over. */
static void become_upgraded(gw_conn *c)
{
    gw_http *h = conn_http(c);
    gw_http_upgrade_cb become = h->upgrade;
    /* What the client sent right behind its upgrade request. */
    pr_buf rest;
    pr_buf_init(&rest, (size_t)-1);
    if (h->in.len > h->parsed)
        pr_buf_append(&rest, h->in.ptr + h->parsed, h->in.len - h->parsed);
    http_dispose(c);
    gw__tq_del(&c->w->http_idle_tq, &c->idle);
    become(c, pr_buf_view(&rest));
    pr_buf_dispose(&rest);
}

static void http_process(gw_conn *c)
{
    while (c->state == GW_OPEN && c->ops == &http_conn_ops) {
        gw_http *h = conn_http(c);
        if (h->complete)
            return; /* parked: waiting for the answer to the current request */
        if (h->parsed == h->in.len)
            return;
        size_t got = http_parser_execute(&h->parser, &settings, h->in.ptr + h->parsed,
                                         h->in.len - h->parsed);
        h->parsed += got;
        enum http_errno err = HTTP_PARSER_ERRNO(&h->parser);
        if (err == HPE_PAUSED) {
            http_parser_pause(&h->parser, 0);
            gw__tq_del(&c->w->http_idle_tq, &c->idle);
            h->in_dispatch = 1;
            dispatch(c);
            h->in_dispatch = 0;
            if (c->state != GW_OPEN) { /* closed or handed off */
                if (h->dispose_pending)
                    http_dispose(c);
                return;
            }
            if (h->upgrade) {
                become_upgraded(c);
                return;
            }
            if (!h->responded)
                return; /* parked */
            request_done(c);
            continue;
        }
        if (err != HPE_OK) {
            GW_STAT_ADD(c->w, closed_bad_input, 1);
            if (h->too_big)
                respond_error(c, 413, "payload too large");
            else if (err == HPE_HEADER_OVERFLOW)
                respond_error(c, 431, "request header fields too large");
            else
                respond_error(c, 400, "bad request");
            return;
        }
        return; /* need more bytes */
    }
}

/* ---- connection glue ---- */

void gw__http_init_conn(gw_conn *c)
{
    gw_http *h = pr_calloc(1, sizeof *h);
    http_parser_init(&h->parser, HTTP_REQUEST);
    h->parser.data = c;
    const gw_config *cfg = c->w->cfg;
    pr_buf_init(&h->in, cfg->max_header_bytes + cfg->max_payload + 65536);
    pr_buf_init(&h->body, cfg->max_payload);
    c->ops = &http_conn_ops;
    c->layer.ptr = h;
    gw__tq_add(&c->w->http_idle_tq, &c->idle);
}

static void http_dispose(gw_conn *c)
{
    gw_http *h = conn_http(c);
    if (!h)
        return;
    if (h->in_dispatch) { /* the handler may still read the request */
        h->dispose_pending = 1;
        return;
    }
    pr_buf_dispose(&h->in);
    pr_buf_dispose(&h->body);
    pr_free(h);
    c->layer.ptr = NULL;
}

static void http_on_close(gw_conn *c)
{
    if (c->owner)
        c->w->http_up->owner_closed(c);
    http_dispose(c);
}

static void http_on_data(gw_conn *c, const char *p, size_t n)
{
    gw_http *h = conn_http(c);
    if (pr_buf_append(&h->in, p, n) != 0) {
        GW_STAT_ADD(c->w, closed_bad_input, 1);
        respond_error(c, 413, "payload too large");
        return;
    }
    http_process(c);
}

static const gw_conn_ops http_conn_ops = {
    .on_data = http_on_data,
    .on_close = http_on_close,
};

static void idle_timeout(gw_tq *tq, gw_tq_node *n)
{
    (void)tq;
    gw_conn *c = GW_CONTAINER_OF(n, gw_conn, idle);
    if (c->ops == &http_conn_ops && conn_http(c) && conn_http(c)->in.len > 0)
        respond_error(c, 408, "request timeout");
    else
        gw__conn_close(c, 0);
}

void gw__http_upgrade(gw_conn *c, const char *headers, gw_http_upgrade_cb become)
{
    respond_raw(c, 101, "", pr_view_make("", 0), 0, headers);
    conn_http(c)->upgrade = become;
}

void gw__http_handoff(gw_conn *c, int to_index)
{
    gw_http *h = conn_http(c);
    gw_worker *w = c->w;
    int fd = c->fd;
    /* Detach the socket first so closing c leaves it open for the new owner. */
    event_del(&c->ev);
    c->ev_flags = 0;
    c->fd = -1;
    gw__worker_handoff(w, to_index, fd, pr_buf_view(&h->in));
    gw__conn_close(c, 0);
}

void gw__http_init(size_t max_header_bytes)
{
    settings_init();
    http_parser_set_max_header_size((uint32_t)max_header_bytes);
}

void gw__http_worker_init(gw_worker *w, const gw_http_handler *up)
{
    w->http_up = up;
    gw__tq_init(&w->http_idle_tq, w, w->cfg->http_idle_timeout_ms, idle_timeout);
}

void gw__http_worker_dispose(gw_worker *w)
{
    gw__tq_dispose(&w->http_idle_tq);
}
