/*
 * api.c - chat-storage's HTTP API under /api/ (storage/openapi.yaml is its
 * description, docs/storage.md the contract behind it).
 *
 * One request is one api_req: routed, authenticated (JWT, or X-User-Id under
 * --auth insecure-dev), rate limited per user, its body parsed, then served by
 * a chain of asynchronous steps (PostgreSQL queries, st_post_message) with at
 * most one operation outstanding at a time. PostgreSQL builds the JSON of the
 * reads itself, so text goes from the table to the client without being
 * re-encoded here. Every input reaches SQL as a parameter ($1...), never as
 * SQL text.
 *
 * Answering exactly once: a step either answers, or starts the next
 * operation; after_step answers 500 if a step did neither. A request whose
 * connection libevent frees while an operation is outstanding (shutdown,
 * timeout) is forgotten through the connection's close callback, and its
 * operation's callback then only frees the api_req (main.c passes every
 * connection's close to st_api_conn_closed).
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "chat.h"
#include "config.h"
#include "jwt.h"
#include "log.h"
#include "st.h"

#define API_LIMIT_DEFAULT 50
#define API_LIMIT_MAX 200
#define API_GROUP_MAX 1000       /* members given when a group is created */
#define API_POST_TIMEOUT_MS 5000 /* ack of a message posted over HTTP */
#define API_BUCKET_SLOTS 4096
#define API_BUCKETS_MAX 100000 /* users tracked by the rate limiter */
#define API_SWEEP_MS 30000
#define API_INT_MAX 9007199254740991LL /* 2^53-1: exact in a JavaScript number */
#define API_MAX_SEGMENTS 8

typedef struct api_req api_req;
typedef struct api_bucket api_bucket;

/* Rate limiter: a token bucket per user, swept when full (idle). */
struct api_bucket {
    api_bucket *next;
    double tokens;
    uint64_t refill_ms;
    char user[CHAT_ID_MAX + 1];
};

typedef struct st_api {
    st_ctx *c;
    api_req *pending; /* requests with an operation outstanding */
    api_bucket *slots[API_BUCKET_SLOTS];
    unsigned nbuckets;
    struct event *sweep;
} st_api;

/* The one loop's API state (st_ctx has no slot for it). */
static st_api *api_state;

typedef void (*api_pg_step)(api_req *q, PGresult *res);
typedef void (*api_handler)(api_req *q);

typedef struct {
    enum evhttp_cmd_type method;
    const char *path; /* as in openapi.yaml; {x} is one path parameter */
    api_handler fn;
    int body; /* 1: a JSON object body is required */
} api_route;

struct api_req {
    st_ctx *c;
    struct evhttp_request *req; /* NULL once answered or its connection is gone */
    api_req *prev, *next;       /* in pending while busy */
    int busy;                   /* an operation is outstanding */
    api_pg_step step;           /* what runs with the result of the query */
    char user[CHAT_ID_MAX + 1];
    char first_name[CHAT_NAME_MAX + 1];
    char arg[2][CHAT_ID_MAX + 1]; /* path parameters, decoded */
    int64_t num;                  /* seq of the path, or ?before */
    int64_t cursor_us;            /* GET /api/rooms cursor; -1 none */
    char cursor_room[CHAT_ID_MAX + 1];
    long limit;
    json_t *body; /* the request's JSON object, when it has one */
    json_t *list; /* members of a group being created */
    char room[CHAT_ID_MAX + 1];
};

/* ---- the queries ----
 * Each answers one request in one round trip, membership check included;
 * PostgreSQL builds the JSON. $1... are the request's values, never SQL. */

/* clang-format off */
/* A timestamptz as clients get createdAt (ISO 8601 UTC, ms): chat_iso of
 * storage/sql/0002_functions.sql, the one the acks and events use. */
#define TS(x) "chat_iso(" x ")"

#define MSG_FIELDS                                                                                 \
    "'id', n.id::text, 'seq', n.seq, 'roomId', n.room_id, 'userId', n.sender_id,"                  \
    " 'firstName', n.first_name, 'lastName', n.last_name, 'text', n.body,"                         \
    " 'createdAt', " TS("n.created_at") ", 'clientMsgId', n.client_msg_id"

/* A member's time for a watermark kind: the first move at or past the
 * message (watermarks only move forward). */
#define WM_AT(kind)                                                                                \
    "(SELECT w.at FROM watermarks w WHERE w.room_id = $1 AND w.user_id = rm.user_id"               \
    "  AND w.kind = '" kind "' AND w.seq >= msg.seq ORDER BY w.seq LIMIT 1)"

static const char SQL_ROOMS[] =
    "WITH mine AS ("
    " SELECT r.id, r.kind, r.name, r.last_seq, rm.seen_seq,"
    "        COALESCE(r.last_at, r.created_at) AS active"
    " FROM room_members rm JOIN rooms r ON r.id = rm.room_id"
    " WHERE rm.user_id = $1"
    "   AND ($2::bigint IS NULL OR (COALESCE(r.last_at, r.created_at), r.id) <"
    "        (timestamptz 'epoch' + $2::bigint * interval '1 microsecond', $3::text))"
    " ORDER BY active DESC, r.id DESC LIMIT $4::int + 1)"
    "SELECT json_build_object("
    " 'roomId', m.id, 'type', m.kind, 'name', m.name,"
    " 'members', (SELECT json_agg(x.user_id ORDER BY x.joined_at, x.user_id)"
    "             FROM room_members x WHERE x.room_id = m.id),"
    " 'lastMessage', (SELECT json_build_object('id', g.id::text, 'seq', g.seq, 'userId', g.sender_id,"
    "                   'text', g.body, 'createdAt', " TS("g.created_at") ")"
    "                 FROM messages g WHERE g.room_id = m.id AND g.seq = m.last_seq),"
    " 'unreadCount', (SELECT count(*) FROM messages u"
    "                 WHERE u.room_id = m.id AND u.seq > m.seen_seq AND u.sender_id <> $1)),"
    " (extract(epoch FROM m.active) * 1000000)::bigint, m.id "
    "FROM mine m ORDER BY m.active DESC, m.id DESC";

static const char SQL_MESSAGES[] =
    "WITH me AS (SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2),"
    " w AS (SELECT COALESCE(min(delivered_seq), 0) AS d, COALESCE(min(seen_seq), 0) AS s"
    "       FROM room_members WHERE room_id = $1 AND user_id <> $2),"
    " page AS (SELECT g.* FROM messages g"
    "          WHERE g.room_id = $1 AND EXISTS (SELECT 1 FROM me)"
    "            AND ($3::bigint IS NULL OR g.seq < $3::bigint)"
    "          ORDER BY g.seq DESC LIMIT $4::int + 1),"
    " n AS (SELECT p.*, row_number() OVER (ORDER BY p.seq DESC) AS rn FROM page p)"
    "SELECT EXISTS (SELECT 1 FROM me), json_build_object("
    " 'messages', COALESCE((SELECT json_agg(CASE WHEN n.sender_id = $2"
    "   THEN json_build_object(" MSG_FIELDS ", 'status',"
    "        CASE WHEN n.seq <= w.s THEN 'seen' WHEN n.seq <= w.d THEN 'delivered' ELSE 'sent' END)"
    "   ELSE json_build_object(" MSG_FIELDS ") END ORDER BY n.seq DESC)"
    "   FROM n, w WHERE n.rn <= $4::int), '[]'::json),"
    " 'nextBefore', (SELECT n.seq FROM n WHERE n.rn = $4::int"
    "                AND EXISTS (SELECT 1 FROM n x WHERE x.rn = $4::int + 1)))";

static const char SQL_RECEIPTS[] =
    "WITH me AS (SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2),"
    " msg AS (SELECT g.seq, g.sender_id FROM messages g"
    "         WHERE g.room_id = $1 AND g.seq = $3::bigint AND EXISTS (SELECT 1 FROM me)),"
    " rc AS (SELECT rm.user_id, msg.seq,"
    "          CASE WHEN rm.seen_seq >= msg.seq THEN 'seen'"
    "               WHEN rm.delivered_seq >= msg.seq THEN 'delivered' ELSE 'sent' END AS status,"
    "          " WM_AT("d") " AS d_at, " WM_AT("s") " AS s_at"
    "        FROM room_members rm, msg WHERE rm.room_id = $1 AND rm.user_id <> msg.sender_id)"
    "SELECT EXISTS (SELECT 1 FROM me), EXISTS (SELECT 1 FROM msg), json_build_object("
    " 'roomId', $1::text, 'seq', $3::bigint, 'receipts', COALESCE((SELECT json_agg("
    "   json_build_object('userId', rc.user_id, 'status', rc.status,"
    "     'deliveredAt', CASE WHEN rc.status <> 'sent' THEN "
    TS("COALESCE(rc.d_at, rc.s_at)") " END,"
    "     'seenAt', CASE WHEN rc.status = 'seen' THEN " TS("rc.s_at") " END)"
    "   ORDER BY rc.user_id) FROM rc), '[]'::json))";

static const char SQL_MEMBER[] =
    "SELECT r.kind FROM rooms r JOIN room_members m ON m.room_id = r.id"
    " WHERE r.id = $1 AND m.user_id = $2";

static const char SQL_CREATE_GROUP[] =
    "WITH r AS (INSERT INTO rooms (id, kind, name, created_by)"
    "           VALUES ($1, 'group', $2, $3) RETURNING id)"
    "INSERT INTO room_members (room_id, user_id)"
    " SELECT r.id, j.u FROM r, json_array_elements_text($4::json) AS j(u)"
    " ON CONFLICT DO NOTHING RETURNING user_id";

/* A new member's watermarks start at the room's last message: what came
 * before is neither unread for them nor holding back its senders' status. */
static const char SQL_ADD_MEMBER[] =
    "WITH me AS (SELECT r.kind, r.name, r.last_seq FROM rooms r"
    "            JOIN room_members m ON m.room_id = r.id AND m.user_id = $2 WHERE r.id = $1),"
    " ins AS (INSERT INTO room_members (room_id, user_id, delivered_seq, seen_seq)"
    "         SELECT $1, $3, me.last_seq, me.last_seq FROM me WHERE me.kind = 'group'"
    "         ON CONFLICT DO NOTHING RETURNING user_id)"
    "SELECT me.kind, me.name, (SELECT count(*) FROM ins) FROM me";

static const char SQL_REMOVE_MEMBER[] =
    "WITH me AS (SELECT r.kind FROM rooms r"
    "            JOIN room_members m ON m.room_id = r.id AND m.user_id = $2 WHERE r.id = $1),"
    " del AS (DELETE FROM room_members d USING me"
    "         WHERE d.room_id = $1 AND d.user_id = $3 AND me.kind = 'group' RETURNING d.user_id)"
    "SELECT me.kind, (SELECT count(*) FROM del) FROM me";

static const char SQL_DM[] =
    "WITH r AS (INSERT INTO rooms (id, kind, created_by) VALUES ($1, 'dm', $2)"
    "           ON CONFLICT (id) DO NOTHING RETURNING id),"
    " m AS (INSERT INTO room_members (room_id, user_id) VALUES ($1, $2), ($1, $3)"
    "       ON CONFLICT DO NOTHING RETURNING user_id)"
    "SELECT (SELECT count(*) FROM r), m.user_id FROM m "
    "UNION ALL SELECT (SELECT count(*) FROM r), NULL";
/* clang-format on */

/* ---- small helpers ---- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Percent-decodes one path segment into an id; 0 when it is not one (a bad
 * escape, or the result fails chat_id_valid). */
static int decode_id(const char *s, size_t n, char out[CHAT_ID_MAX + 1])
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (i + 2 >= n)
                return 0;
            int hi = pr_hex_digit(s[i + 1]);
            int lo = pr_hex_digit(s[i + 2]);
            if (hi < 0 || lo < 0)
                return 0;
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (len == CHAT_ID_MAX)
            return 0;
        out[len++] = ch;
    }
    out[len] = '\0';
    return chat_id_valid(out, len);
}

/* A decimal integer in [min, API_INT_MAX]: digits only, no sign, no leading
 * zero, nothing around it. */
static int parse_int(const char *s, int64_t min, int64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 16 || (n > 1 && s[0] == '0'))
        return 0;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > API_INT_MAX)
        return 0;
    *out = v;
    return 1;
}

/* ---- answering ---- */

/* The origin's entry in --cors-origin: "*" matches any. */
static int origin_allowed(const st_config *cfg, const char *origin)
{
    if (!cfg->cors_origin[0] || !origin || !origin[0])
        return 0;
    if (!strcmp(cfg->cors_origin, "*"))
        return 1;
    size_t olen = strlen(origin);
    const char *p = cfg->cors_origin;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        while (n && p[0] == ' ') {
            p++;
            n--;
        }
        while (n && p[n - 1] == ' ')
            n--;
        if (n == olen && !memcmp(p, origin, n))
            return 1;
        if (!e)
            return 0;
        p = e + 1;
    }
}

/* The CORS headers this request earns, as the gateway gives them; a
 * preflight also gets the methods and the headers it asked for. */
static void add_cors(const st_config *cfg, struct evhttp_request *req)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    const char *origin = evhttp_find_header(in, "Origin");
    if (!origin_allowed(cfg, origin))
        return;
    if (!strcmp(cfg->cors_origin, "*") && !cfg->cors_credentials) {
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
static void unlink_req(api_req *q)
{
    st_api *a = api_state;
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

static void reply(api_req *q, int code, const char *body, size_t len)
{
    if (!q->req)
        return;
    unlink_req(q);
    struct evhttp_request *req = q->req;
    q->req = NULL;
    send_raw(q->c, req, code, body, len);
}

static void reply_error(api_req *q, int code, const char *msg)
{
    if (!q->req)
        return;
    unlink_req(q);
    struct evhttp_request *req = q->req;
    q->req = NULL;
    send_error(q->c, req, code, msg);
}

static void reply_json(api_req *q, int code, json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text)
        reply(q, code, text, strlen(text));
    else
        reply_error(q, 500, "internal error");
    pr_free(text);
}

static void free_req(api_req *q)
{
    json_decref(q->body);
    json_decref(q->list);
    pr_free(q);
}

/* ---- asynchronous steps ---- */

void st_api_conn_closed(struct evhttp_connection *con)
{
    st_api *a = api_state;
    if (!a)
        return;
    /* libevent frees the requests still on con after this returns */
    for (api_req *q = a->pending; q; q = q->next)
        if (q->req && evhttp_request_get_connection(q->req) == con)
            q->req = NULL;
}

static void go_busy(api_req *q)
{
    st_api *a = api_state;
    q->busy = 1;
    if (q->prev || q->next || a->pending == q)
        return;
    q->next = a->pending;
    if (a->pending)
        a->pending->prev = q;
    a->pending = q;
}

/* After a step: it must have answered or started another operation. */
static void after_step(api_req *q)
{
    if (q->busy)
        return;
    if (q->req) {
        ST_ERROR("event=api_unanswered");
        reply_error(q, 500, "internal error");
    }
    unlink_req(q);
    free_req(q);
}

static void pg_done(PGresult *res, const char *error, void *arg)
{
    api_req *q = arg;
    q->busy = 0;
    if (!q->req) { /* answered at shutdown, or the client is gone */
        after_step(q);
        return;
    }
    if (!res) {
        ST_WARN_RATELIMITED("event=api_query_failed err=\"%s\"", error ? error : "");
        reply_error(q, 503, "database unavailable");
    } else {
        q->step(q, res);
    }
    after_step(q);
}

static void query(api_req *q, const char *sql, int n, const char *const *params, api_pg_step step)
{
    if (!st_pg_ready(q->c->db)) {
        /* queued queries would wait for the database to come back */
        reply_error(q, 503, "database unavailable");
        return;
    }
    q->step = step;
    go_busy(q);
    if (st_pg_query(q->c->db, sql, n, params, pg_done, q) != 0) {
        q->busy = 0;
        reply_error(q, 503, "database unavailable");
    }
}

static const char *val(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* A result of exactly one row of at least ncols columns. */
static int one_row(api_req *q, const PGresult *res, int ncols)
{
    if (PQntuples(res) != 1 || PQnfields(res) < ncols) {
        reply_error(q, 500, "internal error");
        return 0;
    }
    return 1;
}

/* ---- GET /api/rooms ---- */

static void rooms_listed(api_req *q, PGresult *res)
{
    int rows = PQntuples(res);
    if (PQnfields(res) != 3) {
        reply_error(q, 500, "internal error");
        return;
    }
    int shown = rows > q->limit ? (int)q->limit : rows;
    struct evbuffer *body = evbuffer_new();
    evbuffer_add(body, "[", 1);
    for (int i = 0; i < shown; i++) {
        if (i)
            evbuffer_add(body, ",", 1);
        evbuffer_add(body, PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0));
    }
    evbuffer_add(body, "]", 1);
    if (rows > q->limit && shown > 0) {
        /* the cursor is the last room shown: (activity, id), opaque */
        pr_buf raw, enc;
        pr_buf_init(&raw, 256);
        pr_buf_init(&enc, 512);
        pr_buf_appendf(&raw, "%s:%s", PQgetvalue(res, shown - 1, 1), PQgetvalue(res, shown - 1, 2));
        pr_base64url_encode(&enc, pr_buf_view(&raw));
        pr_buf_append_byte(&enc, '\0');
        evhttp_add_header(evhttp_request_get_output_headers(q->req), "X-Next-Cursor", enc.ptr);
        pr_buf_dispose(&raw);
        pr_buf_dispose(&enc);
    }
    size_t len = evbuffer_get_length(body);
    reply(q, 200, (const char *)evbuffer_pullup(body, -1), len);
    evbuffer_free(body);
}

/* cursor: base64url of "MICROSECONDS:ROOM" as X-Next-Cursor gave it */
static int parse_cursor(api_req *q, const char *s)
{
    pr_buf raw;
    pr_buf_init(&raw, 256);
    int ok = 0;
    /* an empty decode leaves raw.ptr NULL: not a cursor */
    if (pr_base64url_decode(&raw, pr_view_make(s, strlen(s))) == 0 && raw.len > 0) {
        const char *colon = memchr(raw.ptr, ':', raw.len);
        size_t nlen = colon ? (size_t)(colon - raw.ptr) : 0;
        char num[24];
        if (colon && nlen > 0 && nlen < sizeof num) {
            memcpy(num, raw.ptr, nlen);
            num[nlen] = '\0';
            size_t rlen = raw.len - nlen - 1;
            ok = parse_int(num, 0, &q->cursor_us) && rlen <= CHAT_ID_MAX &&
                 chat_id_valid(colon + 1, rlen);
            if (ok) {
                memcpy(q->cursor_room, colon + 1, rlen);
                q->cursor_room[rlen] = '\0';
            }
        }
    }
    pr_buf_dispose(&raw);
    return ok;
}

static void list_rooms(api_req *q)
{
    char cur[24], lim[16];
    snprintf(lim, sizeof lim, "%ld", q->limit);
    snprintf(cur, sizeof cur, "%lld", (long long)q->cursor_us);
    const char *p[] = {q->user, q->cursor_us >= 0 ? cur : NULL,
                       q->cursor_us >= 0 ? q->cursor_room : NULL, lim};
    query(q, SQL_ROOMS, 4, p, rooms_listed);
}

/* ---- GET /api/rooms/{roomId}/messages ---- */

static void messages_listed(api_req *q, PGresult *res)
{
    if (!one_row(q, res, 2))
        return;
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        reply_error(q, 403, "not a member");
        return;
    }
    reply(q, 200, PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1));
}

static void list_messages(api_req *q)
{
    char before[24], lim[16];
    snprintf(lim, sizeof lim, "%ld", q->limit);
    snprintf(before, sizeof before, "%lld", (long long)q->num);
    const char *p[] = {q->arg[0], q->user, q->num > 0 ? before : NULL, lim};
    query(q, SQL_MESSAGES, 4, p, messages_listed);
}

/* ---- GET /api/rooms/{roomId}/messages/{seq}/receipts ---- */

static void receipts_listed(api_req *q, PGresult *res)
{
    if (!one_row(q, res, 3))
        return;
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        reply_error(q, 403, "not a member");
    else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0)
        reply_error(q, 404, "no such message");
    else
        reply(q, 200, PQgetvalue(res, 0, 2), (size_t)PQgetlength(res, 0, 2));
}

static void list_receipts(api_req *q)
{
    char seq[24];
    snprintf(seq, sizeof seq, "%lld", (long long)q->num);
    const char *p[] = {q->arg[0], q->user, seq};
    query(q, SQL_RECEIPTS, 3, p, receipts_listed);
}

/* ---- POST /api/rooms/{roomId}/messages ---- */

static void message_acked(json_t *ack, void *arg)
{
    api_req *q = arg;
    q->busy = 0;
    if (q->req) {
        const char *err = json_string_value(json_object_get(ack, "error"));
        if (!ack)
            reply_error(q, 504, "no acknowledgement in time; retry with the same clientMsgId");
        else if (err && (!strcmp(err, "forbidden") || !strcmp(err, "not a member")))
            reply_error(q, 403, "not a member"); /* removed since the check */
        else if (err && !strcmp(err, "invalid payload"))
            reply_error(q, 400, err);
        else if (err && !strcmp(err, "clientMsgId reused"))
            reply_error(q, 409, err); /* another text under a stored clientMsgId */
        else if (err && !strcmp(err, "text too long"))
            reply_error(q, 413, err);
        else if (err)
            reply_error(q, 500, err);
        else
            reply_json(q, 201, ack);
    }
    after_step(q);
}

static void member_checked(api_req *q, PGresult *res)
{
    if (PQntuples(res) != 1) {
        reply_error(q, 403, "not a member");
        return;
    }
    st_post m = {0};
    m.room = q->arg[0];
    m.user = q->user;
    m.first_name = q->first_name;
    m.last_name = NULL;
    m.text = json_string_value(json_object_get(q->body, "text"));
    m.text_len = json_string_length(json_object_get(q->body, "text"));
    m.client_msg_id = json_string_value(json_object_get(q->body, "clientMsgId"));
    m.peer = NULL;
    if (!st_redis_ready(q->c->redis)) {
        reply_error(q, 503, "redis unavailable");
        return;
    }
    go_busy(q);
    if (st_post_message(q->c, &m, API_POST_TIMEOUT_MS, message_acked, q) != 0) {
        q->busy = 0;
        reply_error(q, 503, "redis unavailable");
    }
}

static void post_message(api_req *q)
{
    json_t *text = json_object_get(q->body, "text");
    json_t *cid = json_object_get(q->body, "clientMsgId");
    if (!json_is_string(text) || json_string_length(text) == 0) {
        reply_error(q, 400, "text must be a non-empty string");
        return;
    }
    if (json_string_length(text) > q->c->cfg->max_text_length) {
        reply_error(q, 413, "text too long");
        return;
    }
    if (json_is_null(cid)) {
        json_object_del(q->body, "clientMsgId");
    } else if (cid && (!json_is_string(cid) ||
                       !chat_id_valid(json_string_value(cid), json_string_length(cid)))) {
        reply_error(q, 400, "clientMsgId must be 1..128 printable ASCII characters");
        return;
    }
    const char *p[] = {q->arg[0], q->user};
    query(q, SQL_MEMBER, 2, p, member_checked);
}

/* ---- POST /api/rooms ---- */

/* The database is the truth; a publish that fails leaves the user's sockets
 * to learn of the room when they next connect. */
static void announce_added(api_req *q, const char *user, const char *name, const char *type)
{
    json_t *ev = json_pack("{ss ss? ss}", "roomId", q->room, "name", name, "type", type);
    int rc = st_publish_membership(q->c, 'J', q->room, user);
    rc |= st_publish_user_event(q->c, user, "roomAdded", ev);
    if (rc != 0)
        ST_WARN_RATELIMITED("event=api_publish_failed kind=J room=%s user=%s", q->room, user);
    json_decref(ev);
}

static void group_created(api_req *q, PGresult *res)
{
    const char *name = json_string_value(json_object_get(q->body, "name"));
    for (int i = 0; i < PQntuples(res); i++)
        announce_added(q, PQgetvalue(res, i, 0), name, "group");
    json_t *o = json_pack("{ss ss ss sO}", "roomId", q->room, "type", "group", "name", name,
                          "members", q->list);
    reply_json(q, 201, o);
    json_decref(o);
}

static void create_group(api_req *q)
{
    json_t *name = json_object_get(q->body, "name");
    json_t *members = json_object_get(q->body, "members");
    if (!json_is_string(name) || json_string_length(name) == 0 ||
        !chat_name_valid(json_string_value(name), json_string_length(name))) {
        reply_error(q, 400, "name must be 1..128 bytes of text without control characters");
        return;
    }
    if (members && !json_is_array(members)) {
        reply_error(q, 400, "members must be an array of user ids");
        return;
    }
    if (json_array_size(members) > API_GROUP_MAX) {
        reply_error(q, 400, "too many members");
        return;
    }
    /* the creator first, then the others once each, in the order given */
    json_t *seen = json_object();
    q->list = json_array();
    json_array_append_new(q->list, json_string(q->user));
    json_object_set_new(seen, q->user, json_true());
    size_t i;
    int bad = 0;
    for (i = 0; i < json_array_size(members); i++) {
        json_t *m = json_array_get(members, i);
        const char *u = json_string_value(m);
        if (!u || !chat_id_valid(u, json_string_length(m))) {
            bad = 1;
            break;
        }
        if (!json_object_get(seen, u)) {
            json_object_set_new(seen, u, json_true());
            json_array_append(q->list, m);
        }
    }
    json_decref(seen);
    if (bad) {
        reply_error(q, 400, "members must be an array of user ids");
        return;
    }
    unsigned char rnd[16];
    pr_buf id;
    pr_buf_init(&id, sizeof q->room);
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        reply_error(q, 500, "no randomness");
        pr_buf_dispose(&id);
        return;
    }
    pr_buf_append(&id, "g_", 2);
    pr_base64url_encode(&id, pr_view_make(rnd, sizeof rnd)); /* 22 characters */
    snprintf(q->room, sizeof q->room, "%.*s", (int)id.len, id.ptr);
    pr_buf_dispose(&id);
    char *list = json_dumps(q->list, JSON_COMPACT);
    const char *p[] = {q->room, json_string_value(name), q->user, list};
    query(q, SQL_CREATE_GROUP, 4, p, group_created);
    pr_free(list);
}

/* ---- POST /api/rooms/{roomId}/members ---- */

static void member_added(api_req *q, PGresult *res)
{
    if (PQntuples(res) == 0) {
        reply_error(q, 403, "not a member");
        return;
    }
    if (!one_row(q, res, 3))
        return;
    if (strcmp(PQgetvalue(res, 0, 0), "group") != 0) {
        reply_error(q, 400, "not a group: direct rooms keep their two members");
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 2), "0") == 0) {
        reply_error(q, 409, "already a member");
        return;
    }
    announce_added(q, q->arg[1], val(res, 0, 1), "group");
    json_t *o = json_pack("{ss ss}", "roomId", q->room, "userId", q->arg[1]);
    reply_json(q, 201, o);
    json_decref(o);
}

static void add_member(api_req *q)
{
    json_t *u = json_object_get(q->body, "userId");
    if (!json_is_string(u) || !chat_id_valid(json_string_value(u), json_string_length(u))) {
        reply_error(q, 400, "userId must be a user id");
        return;
    }
    snprintf(q->arg[1], sizeof q->arg[1], "%s", json_string_value(u));
    snprintf(q->room, sizeof q->room, "%s", q->arg[0]);
    const char *p[] = {q->arg[0], q->user, q->arg[1]};
    query(q, SQL_ADD_MEMBER, 3, p, member_added);
}

/* ---- DELETE /api/rooms/{roomId}/members/{userId} ---- */

static void member_removed(api_req *q, PGresult *res)
{
    if (PQntuples(res) == 0) {
        reply_error(q, 403, "not a member");
        return;
    }
    if (!one_row(q, res, 2))
        return;
    if (strcmp(PQgetvalue(res, 0, 0), "group") != 0) {
        reply_error(q, 400, "not a group: direct rooms keep their two members");
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 1), "0") == 0) {
        reply_error(q, 404, "no such member");
        return;
    }
    /* K1 first: the removed user's sockets leave the room at once */
    json_t *ev = json_pack("{ss}", "roomId", q->arg[0]);
    int rc = st_publish_membership(q->c, 'K', q->arg[0], q->arg[1]);
    rc |= st_publish_user_event(q->c, q->arg[1], "roomRemoved", ev);
    if (rc != 0)
        ST_WARN_RATELIMITED("event=api_publish_failed kind=K room=%s user=%s", q->arg[0],
                            q->arg[1]);
    json_decref(ev);
    reply(q, 204, NULL, 0);
}

static void remove_member(api_req *q)
{
    const char *p[] = {q->arg[0], q->user, q->arg[1]};
    query(q, SQL_REMOVE_MEMBER, 3, p, member_removed);
}

/* ---- POST /api/dm ---- */

static void dm_opened(api_req *q, PGresult *res)
{
    int created = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        if (!strcmp(PQgetvalue(res, i, 0), "1"))
            created = 1;
        const char *u = val(res, i, 1);
        if (u)
            announce_added(q, u, NULL, "dm");
    }
    json_t *o = json_pack("{ss}", "roomId", q->room);
    reply_json(q, created ? 201 : 200, o);
    json_decref(o);
}

static void open_dm(api_req *q)
{
    json_t *u = json_object_get(q->body, "userId");
    if (!json_is_string(u) || !chat_id_valid(json_string_value(u), json_string_length(u))) {
        reply_error(q, 400, "userId must be a user id");
        return;
    }
    const char *peer = json_string_value(u);
    if (!strcmp(peer, q->user)) {
        reply_error(q, 400, "a direct room needs two users");
        return;
    }
    char room[CHAT_DM_ID_LEN + 1];
    chat_dm_room_id(q->c->room_key, q->user, peer, room);
    snprintf(q->room, sizeof q->room, "%s", room);
    const char *p[] = {q->room, q->user, peer};
    query(q, SQL_DM, 3, p, dm_opened);
}

/* ---- routing ---- */

/* What the OpenAPI lint compares with storage/openapi.yaml: keep one route
 * per line, as {EVHTTP_REQ_..., "path", ...}. */
static const api_route routes[] = {
    {EVHTTP_REQ_GET, "/api/rooms", list_rooms, 0},
    {EVHTTP_REQ_POST, "/api/rooms", create_group, 1},
    {EVHTTP_REQ_GET, "/api/rooms/{roomId}/messages", list_messages, 0},
    {EVHTTP_REQ_POST, "/api/rooms/{roomId}/messages", post_message, 1},
    {EVHTTP_REQ_GET, "/api/rooms/{roomId}/messages/{seq}/receipts", list_receipts, 0},
    {EVHTTP_REQ_POST, "/api/rooms/{roomId}/members", add_member, 1},
    {EVHTTP_REQ_DELETE, "/api/rooms/{roomId}/members/{userId}", remove_member, 0},
    {EVHTTP_REQ_POST, "/api/dm", open_dm, 1},
};
#define NROUTES (sizeof routes / sizeof routes[0])

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

/* Who is asking: the JWT's sub, or X-User-Id under --auth insecure-dev. */
static int authenticate(api_req *q, struct evhttp_request *req)
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

static unsigned user_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % API_BUCKET_SLOTS;
}

/* Drops the buckets that have refilled: their users are idle. */
static void sweep_buckets(st_api *a, uint64_t now)
{
    const st_config *cfg = a->c->cfg;
    for (unsigned i = 0; i < API_BUCKET_SLOTS; i++) {
        api_bucket **pp = &a->slots[i];
        while (*pp) {
            api_bucket *b = *pp;
            double t = b->tokens + (double)(now - b->refill_ms) * cfg->rate_limit / 1000.0;
            if (t >= cfg->rate_burst) {
                *pp = b->next;
                pr_free(b);
                a->nbuckets--;
            } else {
                pp = &b->next;
            }
        }
    }
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sweep_buckets(arg, mono_ms());
}

/* 1 when user may make one more request now. */
static int take_token(st_api *a, const char *user)
{
    const st_config *cfg = a->c->cfg;
    uint64_t now = mono_ms();
    unsigned slot = user_hash(user);
    api_bucket *b = a->slots[slot];
    while (b && strcmp(b->user, user) != 0)
        b = b->next;
    if (!b) {
        if (a->nbuckets >= API_BUCKETS_MAX)
            sweep_buckets(a, now);
        if (a->nbuckets >= API_BUCKETS_MAX)
            return 0; /* that many users busy at once: shed load */
        b = pr_calloc(1, sizeof *b);
        snprintf(b->user, sizeof b->user, "%s", user);
        b->tokens = cfg->rate_burst;
        b->refill_ms = now;
        b->next = a->slots[slot];
        a->slots[slot] = b;
        a->nbuckets++;
    }
    b->tokens += (double)(now - b->refill_ms) * cfg->rate_limit / 1000.0;
    if (b->tokens > cfg->rate_burst)
        b->tokens = cfg->rate_burst;
    b->refill_ms = now;
    if (b->tokens < 1.0)
        return 0;
    b->tokens -= 1.0;
    return 1;
}

/* ?limit= and ?before= / ?cursor=; every name at most once. */
static int parse_query(api_req *q, const char *query_str, int rooms)
{
    q->limit = API_LIMIT_DEFAULT;
    q->num = 0;
    q->cursor_us = -1;
    if (!query_str || !*query_str)
        return 1;
    struct evkeyvalq kv;
    /* evhttp_parse_query_str initialises kv, and empties it on failure */
    int ok = evhttp_parse_query_str(query_str, &kv) == 0;
    int have_limit = 0, have_before = 0;
    for (struct evkeyval *e = kv.tqh_first; ok && e; e = e->next.tqe_next) {
        int64_t v;
        if (!strcmp(e->key, "limit")) {
            ok = !have_limit++ && parse_int(e->value, 1, &v) && v <= API_LIMIT_MAX;
            if (ok)
                q->limit = (long)v;
        } else if (!rooms && !strcmp(e->key, "before")) {
            ok = !have_before++ && parse_int(e->value, 1, &v);
            if (ok)
                q->num = v;
        } else if (rooms && !strcmp(e->key, "cursor")) {
            ok = !have_before++ && parse_cursor(q, e->value);
        }
        /* other names are ignored (cache busters) */
    }
    evhttp_clear_headers(&kv);
    return ok;
}

int st_api_init(st_ctx *c)
{
    st_api *a = pr_calloc(1, sizeof *a);
    a->c = c;
    a->sweep = event_new(c->base, -1, EV_PERSIST, sweep_cb, a);
    struct timeval tv = {API_SWEEP_MS / 1000, 0};
    event_add(a->sweep, &tv);
    api_state = a;
    return 0;
}

void st_api_dispose(st_ctx *c)
{
    (void)c;
    st_api *a = api_state;
    if (!a)
        return;
    /* answer what still waits; the callbacks to come only free it */
    while (a->pending) {
        api_req *q = a->pending;
        reply_error(q, 503, "shutting down");
        unlink_req(q);
    }
    for (unsigned i = 0; i < API_BUCKET_SLOTS; i++) {
        while (a->slots[i]) {
            api_bucket *b = a->slots[i];
            a->slots[i] = b->next;
            pr_free(b);
        }
    }
    event_free(a->sweep);
    pr_free(a);
    api_state = NULL;
}

void st_api_handle(st_ctx *c, struct evhttp_request *req)
{
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    if (!api_state) {
        send_error(c, req, 503, "shutting down");
        return;
    }
    if (method == EVHTTP_REQ_OPTIONS) { /* CORS preflight */
        send_raw(c, req, 204, NULL, 0);
        return;
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    seg s[API_MAX_SEGMENTS], params[2];
    int ns = path ? split(path, s, API_MAX_SEGMENTS) : -1;
    const api_route *route = NULL;
    char allow[64] = "";
    for (size_t i = 0; ns > 0 && i < NROUTES; i++) {
        if (!route_match(&routes[i], s, ns, params))
            continue;
        if (routes[i].method == method) {
            route = &routes[i];
            break;
        }
        size_t used = strlen(allow);
        snprintf(allow + used, sizeof allow - used, "%s%s", used ? ", " : "",
                 method_name(routes[i].method));
    }
    if (!route) {
        if (allow[0]) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
            send_error(c, req, 405, "method not allowed");
        } else {
            send_error(c, req, 404, "not found");
        }
        return;
    }

    api_req *q = pr_calloc(1, sizeof *q);
    q->c = c;
    q->req = req;
    if (!authenticate(q, req)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
        reply_error(q, 401, "unauthorized");
        goto done;
    }
    if (!take_token(api_state, q->user)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        reply_error(q, 429, "rate limited");
        goto done;
    }
    /* path parameters: ids, and the message seq of the receipts route */
    int np = 0;
    for (const char *t = route->path; (t = strchr(t, '{')) != NULL; t++, np++) {
        int ok;
        if (!strncmp(t, "{seq}", 5)) {
            char num[24];
            ok = params[np].n < sizeof num;
            if (ok) {
                memcpy(num, params[np].p, params[np].n);
                num[params[np].n] = '\0';
                ok = parse_int(num, 1, &q->num);
            }
        } else {
            ok = decode_id(params[np].p, params[np].n, q->arg[np]);
        }
        if (!ok) {
            reply_error(q, 400, "invalid path parameter");
            goto done;
        }
    }
    if (route->fn == list_rooms || route->fn == list_messages) {
        if (!parse_query(q, evhttp_uri_get_query(uri), route->fn == list_rooms)) {
            reply_error(q, 400, "invalid query parameter");
            goto done;
        }
    }
    if (route->body) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        if (len > c->cfg->max_body) {
            reply_error(q, 413, "body too large");
            goto done;
        }
        json_error_t err;
        q->body =
            json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &err);
        if (!json_is_object(q->body)) {
            reply_error(q, 400, q->body ? "body must be a JSON object" : "malformed JSON");
            goto done;
        }
    }
    route->fn(q);
done:
    after_step(q);
}
