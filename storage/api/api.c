/*
 * api/api.c - routing and the life of a request of the HTTP API (api.h
 * tells the whole story): the route table, authentication, rate limiting,
 * parsing the path, query and body, answering (with the CORS headers), and
 * the asynchronous steps that keep the "answered exactly once" promise.
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api.h"
#include "cm_cors.h"
#include "cm_log.h"
#include "config.h"
#include "jwt.h"

#define API_MAX_SEGMENTS 8

typedef void (*api_handler)(st__api_req *q);

/* Which query parameters a route reads (st__api_parse_query). */
enum { QUERY_NONE, QUERY_BEFORE, QUERY_CURSOR };

typedef struct {
    enum evhttp_cmd_type method;
    const char *path; /* as in openapi.yaml; {x} is one path parameter */
    api_handler fn;
    int body;  /* 1: a JSON object body is required */
    int query; /* QUERY_* */
} api_route;

/* What the OpenAPI lint compares with storage/openapi.yaml: keep one route
 * per line, as {EVHTTP_REQ_..., "path", ...}. */
/* clang-format off */
static const api_route routes[] = {
    {EVHTTP_REQ_GET, "/api/rooms", st__api_list_rooms, 0, QUERY_CURSOR},
    {EVHTTP_REQ_POST, "/api/rooms", st__api_create_group, 1, QUERY_NONE},
    {EVHTTP_REQ_GET, "/api/rooms/{roomId}/messages", st__api_list_messages, 0, QUERY_BEFORE},
    {EVHTTP_REQ_POST, "/api/rooms/{roomId}/messages", st__api_post_message, 1, QUERY_NONE},
    {EVHTTP_REQ_GET, "/api/rooms/{roomId}/messages/{seq}/receipts", st__api_list_receipts, 0, QUERY_NONE},
    {EVHTTP_REQ_POST, "/api/rooms/{roomId}/members", st__api_add_member, 1, QUERY_NONE},
    {EVHTTP_REQ_DELETE, "/api/rooms/{roomId}/members/{userId}", st__api_remove_member, 0, QUERY_NONE},
    {EVHTTP_REQ_POST, "/api/dm", st__api_open_dm, 1, QUERY_NONE},
};
/* clang-format on */
#define NROUTES (sizeof routes / sizeof routes[0])

/* ---- answering ---- */

/* The CORS headers this request earns, as the gateway gives them; a
 * preflight also gets the methods and the headers it asked for. */
static void add_cors(const st_config *cfg, struct evhttp_request *req)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    const char *origin = evhttp_find_header(in, "Origin");
    cm_cors_allow allow = cm_cors_check(cfg->cors_origin, cfg->cors_credentials,
                                        pr_view_make(origin, origin ? strlen(origin) : 0));
    if (allow == CM_CORS_NONE)
        return;
    if (allow == CM_CORS_ANY) {
        evhttp_add_header(out, "Access-Control-Allow-Origin", "*");
    } else {
        /* with credentials the wildcard is not allowed: echo the origin */
        evhttp_add_header(out, "Access-Control-Allow-Origin", origin);
        evhttp_add_header(out, "Vary", "Origin");
    }
    if (cfg->cors_credentials)
        evhttp_add_header(out, "Access-Control-Allow-Credentials", "true");
    if (evhttp_request_get_command(req) == EVHTTP_REQ_OPTIONS) {
        const char *h = evhttp_find_header(in, "Access-Control-Request-Headers");
        evhttp_add_header(out, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
        evhttp_add_header(out, "Access-Control-Max-Age", "86400");
        if (h && strlen(h) < 256)
            evhttp_add_header(out, "Access-Control-Allow-Headers", h);
    } else {
        evhttp_add_header(out, "Access-Control-Expose-Headers", "X-Next-Cursor, Retry-After");
    }
}

static void send_raw(st_ctx *c, struct evhttp_request *req, int code, const char *body, size_t len)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    if (code != 204)
        evhttp_add_header(out, "Content-Type", "application/json");
    evhttp_add_header(out, "Cache-Control", "no-store");
    evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
    add_cors(c->cfg, req);
    struct evbuffer *buf = evbuffer_new();
    if (len)
        evbuffer_add(buf, body, len);
    evhttp_send_reply(req, code, NULL, buf);
    evbuffer_free(buf);
}

static void send_error(st_ctx *c, struct evhttp_request *req, int code, const char *msg)
{
    json_t *o = json_pack("{ss}", "error", msg);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text)
        send_raw(c, req, code, text, strlen(text));
    else /* msg was not UTF-8 */
        send_raw(c, req, code, "{\"error\":\"error\"}", 17);
    pr_free(text);
    json_decref(o);
}

/* The request leaves the pending list. */
static void unlink_req(st__api_req *q)
{
    st_api *a = q->c->api;
    if (!a || (!q->prev && !q->next && a->pending != q))
        return;
    if (q->prev)
        q->prev->next = q->next;
    else
        a->pending = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
}

void st__api_reply(st__api_req *q, int code, const char *body, size_t len)
{
    if (!q->req)
        return;
    unlink_req(q);
    struct evhttp_request *req = q->req;
    q->req = NULL;
    send_raw(q->c, req, code, body, len);
}

void st__api_reply_error(st__api_req *q, int code, const char *msg)
{
    if (!q->req)
        return;
    unlink_req(q);
    struct evhttp_request *req = q->req;
    q->req = NULL;
    send_error(q->c, req, code, msg);
}

void st__api_reply_json(st__api_req *q, int code, json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text)
        st__api_reply(q, code, text, strlen(text));
    else
        st__api_reply_error(q, 500, "internal error");
    pr_free(text);
}

static void free_req(st__api_req *q)
{
    json_decref(q->body);
    json_decref(q->list);
    pr_free(q);
}

/* ---- asynchronous steps ---- */

void st_api_conn_closed(st_ctx *c, struct evhttp_connection *con)
{
    st_api *a = c->api;
    if (!a)
        return;
    /* libevent frees the requests still on con after this returns */
    for (st__api_req *q = a->pending; q; q = q->next)
        if (q->req && evhttp_request_get_connection(q->req) == con)
            q->req = NULL;
}

void st__api_go_busy(st__api_req *q)
{
    st_api *a = q->c->api;
    q->busy = 1;
    if (q->prev || q->next || a->pending == q)
        return;
    q->next = a->pending;
    if (a->pending)
        a->pending->prev = q;
    a->pending = q;
}

void st__api_after_step(st__api_req *q)
{
    if (q->busy)
        return;
    if (q->req) {
        CM_ERROR("event=api_unanswered");
        st__api_reply_error(q, 500, "internal error");
    }
    unlink_req(q);
    free_req(q);
}

static void pg_done(PGresult *res, const char *error, void *arg)
{
    st__api_req *q = arg;
    q->busy = 0;
    if (!q->req) { /* answered at shutdown, or the client is gone */
        st__api_after_step(q);
        return;
    }
    if (!res) {
        CM_WARN_RATELIMITED("event=api_query_failed err=\"%s\"", error ? error : "");
        st__api_reply_error(q, 503, "database unavailable");
    } else {
        q->step(q, res);
    }
    st__api_after_step(q);
}

void st__api_query(st__api_req *q, const char *sql, int n, const char *const *params,
                   st__api_pg_step step)
{
    if (!st_pg_ready(q->c->db)) {
        /* queued queries would wait for the database to come back */
        st__api_reply_error(q, 503, "database unavailable");
        return;
    }
    q->step = step;
    st__api_go_busy(q);
    if (st_pg_query(q->c->db, sql, n, params, pg_done, q) != 0) {
        q->busy = 0;
        st__api_reply_error(q, 503, "database unavailable");
    }
}

const char *st__api_val(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

int st__api_one_row(st__api_req *q, const PGresult *res, int ncols)
{
    if (PQntuples(res) != 1 || PQnfields(res) < ncols) {
        st__api_reply_error(q, 500, "internal error");
        return 0;
    }
    return 1;
}

/* ---- routing ---- */

typedef struct {
    const char *p;
    size_t n;
} seg;

/* Splits "/a/b/c" into segments; -1 when there are too many. */
static int split(const char *path, seg *out, int max)
{
    int n = 0;
    if (*path != '/')
        return -1;
    const char *p = path + 1;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (n == max)
            return -1;
        out[n++] = (seg){p, len};
        if (!e)
            return n;
        p = e + 1;
    }
}

/* 1 when path fits the route's template; the {x} segments are copied raw
 * into params (at most 2). */
static int route_match(const api_route *r, const seg *s, int ns, seg params[2])
{
    seg t[API_MAX_SEGMENTS];
    int nt = split(r->path, t, API_MAX_SEGMENTS);
    if (nt != ns)
        return 0;
    int np = 0;
    for (int i = 0; i < nt; i++) {
        if (t[i].n > 0 && t[i].p[0] == '{') {
            if (s[i].n == 0 || np == 2)
                return 0;
            params[np++] = s[i];
        } else if (t[i].n != s[i].n || memcmp(t[i].p, s[i].p, s[i].n) != 0) {
            return 0;
        }
    }
    return 1;
}

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_DELETE: return "DELETE";
    default: return "?";
    }
}

/* The route of method and path; NULL with allow set to the methods the
 * path has (405), or empty (404). */
static const api_route *find_route(enum evhttp_cmd_type method, const char *path, seg params[2],
                                   char *allow, size_t allow_size)
{
    seg s[API_MAX_SEGMENTS];
    int ns = path ? split(path, s, API_MAX_SEGMENTS) : -1;
    allow[0] = '\0';
    for (size_t i = 0; ns > 0 && i < NROUTES; i++) {
        if (!route_match(&routes[i], s, ns, params))
            continue;
        if (routes[i].method == method)
            return &routes[i];
        size_t used = strlen(allow);
        snprintf(allow + used, allow_size - used, "%s%s", used ? ", " : "",
                 method_name(routes[i].method));
    }
    return NULL;
}

/* Who is asking: the JWT's sub, or X-User-Id under --auth insecure-dev. */
static int authenticate(st__api_req *q, struct evhttp_request *req)
{
    const st_config *cfg = q->c->cfg;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    if (!strcmp(cfg->auth, "insecure-dev")) {
        const char *u = evhttp_find_header(in, "X-User-Id");
        const char *name = evhttp_find_header(in, "X-User-Name");
        if (!u || !chat_id_valid(u, strlen(u)))
            return 0;
        snprintf(q->user, sizeof q->user, "%s", u);
        snprintf(q->first_name, sizeof q->first_name, "%s",
                 name && chat_name_valid(name, strlen(name)) ? name : u);
        return 1;
    }
    const char *h = evhttp_find_header(in, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    const char *token = h + 7;
    while (*token == ' ')
        token++;
    pr_jwt_claims claims;
    int64_t now = (int64_t)time(NULL);
    if (pr_jwt_verify_hs256(pr_view_make(token, strlen(token)),
                            pr_view_make(cfg->jwt_secret, strlen(cfg->jwt_secret)), now,
                            &claims) != 0 ||
        !chat_id_valid(claims.sub, strlen(claims.sub)))
        return 0;
    snprintf(q->user, sizeof q->user, "%s", claims.sub);
    snprintf(q->first_name, sizeof q->first_name, "%s",
             claims.name[0] && chat_name_valid(claims.name, strlen(claims.name)) ? claims.name
                                                                                 : claims.sub);
    return 1;
}

/* The path parameters: ids, and the message seq of the receipts route. */
static int parse_path(st__api_req *q, const api_route *route, const seg params[2])
{
    int np = 0;
    for (const char *t = route->path; (t = strchr(t, '{')) != NULL; t++, np++) {
        int ok = !strncmp(t, "{seq}", 5)
                     ? st__api_parse_seq(q, params[np].p, params[np].n)
                     : st__api_decode_id(params[np].p, params[np].n, q->arg[np]);
        if (!ok)
            return 0;
    }
    return 1;
}

/* A JSON object body into q->body; answers and returns 0 when there is none. */
static int parse_body(st__api_req *q, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len > q->c->cfg->max_body) {
        st__api_reply_error(q, 413, "body too large");
        return 0;
    }
    json_error_t err;
    q->body = json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_object(q->body)) {
        st__api_reply_error(q, 400, q->body ? "body must be a JSON object" : "malformed JSON");
        return 0;
    }
    return 1;
}

int st__api_body_user(st__api_req *q, char out[CHAT_ID_MAX + 1])
{
    json_t *u = json_object_get(q->body, "userId");
    if (!json_is_string(u) || !chat_id_valid(json_string_value(u), json_string_length(u))) {
        st__api_reply_error(q, 400, "userId must be a user id");
        return 0;
    }
    memcpy(out, json_string_value(u), json_string_length(u) + 1);
    return 1;
}

int st_api_init(st_ctx *c)
{
    st_api *a = pr_calloc(1, sizeof *a);
    a->c = c;
    a->limiter = st__api_limiter_new(c);
    c->api = a;
    return 0;
}

void st_api_dispose(st_ctx *c)
{
    st_api *a = c->api;
    if (!a)
        return;
    /* answer what still waits; the callbacks to come only free it */
    while (a->pending) {
        st__api_req *q = a->pending;
        st__api_reply_error(q, 503, "shutting down");
        unlink_req(q);
    }
    st__api_limiter_free(a->limiter);
    pr_free(a);
    c->api = NULL;
}

void st_api_handle(st_ctx *c, struct evhttp_request *req)
{
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    if (!c->api) {
        send_error(c, req, 503, "shutting down");
        return;
    }
    if (method == EVHTTP_REQ_OPTIONS) { /* CORS preflight */
        send_raw(c, req, 204, NULL, 0);
        return;
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    seg params[2];
    char allow[64];
    const api_route *route =
        find_route(method, uri ? evhttp_uri_get_path(uri) : NULL, params, allow, sizeof allow);
    if (!route) {
        if (allow[0]) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
            send_error(c, req, 405, "method not allowed");
        } else {
            send_error(c, req, 404, "not found");
        }
        return;
    }

    st__api_req *q = pr_calloc(1, sizeof *q);
    q->c = c;
    q->req = req;
    if (!authenticate(q, req)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
        st__api_reply_error(q, 401, "unauthorized");
    } else if (!st__api_take_token(c->api->limiter, q->user)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        st__api_reply_error(q, 429, "rate limited");
    } else if (!parse_path(q, route, params)) {
        st__api_reply_error(q, 400, "invalid path parameter");
    } else if (route->query != QUERY_NONE &&
               !st__api_parse_query(q, evhttp_uri_get_query(uri), route->query == QUERY_CURSOR)) {
        st__api_reply_error(q, 400, "invalid query parameter");
    } else if (!route->body || parse_body(q, req)) {
        route->fn(q);
    }
    st__api_after_step(q);
}
