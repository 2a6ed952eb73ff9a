/*
 * api/api.h - private to storage/api/: chat-storage's HTTP API under /api/
 * (storage/openapi.yaml is its description, docs/storage.md the contract
 * behind it).
 *
 *   api.c        routing, authentication, the request's life, answering
 *   params.c     path and query parameters (ids, seq, limit, cursors)
 *   ratelimit.c  a token bucket per user (common's cm_tbucket)
 *   rooms.c messages.c receipts.c members.c dm.c   the handlers, by resource
 *
 * One request is one st__api_req: routed, authenticated, rate limited, its
 * parameters and body parsed (api.c), then served by its handler through a
 * chain of asynchronous steps (PostgreSQL queries, st_post_message) with at
 * most one operation outstanding at a time. PostgreSQL builds the JSON of
 * the reads itself, so text goes from the table to the client without being
 * re-encoded here, except for messages: those are rendered as clients get
 * them live (chat_message_json), one writer for every program. Every input reaches SQL as a
 * parameter ($1...), never as SQL text.
 *
 * Answering exactly once: a step either answers (st__api_reply*), or starts
 * the next operation (st__api_query, or st__api_go_busy before its own);
 * st__api_after_step answers 500 if a step did neither. A request whose
 * connection libevent frees while an operation is outstanding (shutdown,
 * timeout) is forgotten through the connection's close callback, and its
 * operation's callback then only frees the request (main.c passes every
 * connection's close to st_api_conn_closed).
 *
 * The state (st_api) belongs to st_ctx (c->api), on the loop thread: from
 * st_api_init to st_api_dispose.
 */
#ifndef ST_API_API_H
#define ST_API_API_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdint.h>

#include "chat.h"
#include "st.h"

#define ST__API_LIMIT_DEFAULT 50
#define ST__API_LIMIT_MAX 200
#define ST__API_INT_MAX 9007199254740991LL /* 2^53-1: exact in a JavaScript number */

typedef struct st__api_req st__api_req;
typedef struct st__api_limiter st__api_limiter; /* ratelimit.c */

struct st_api {
    st_ctx *c;
    st__api_req *pending; /* requests with an operation outstanding */
    st__api_limiter *limiter;
};

typedef void (*st__api_pg_step)(st__api_req *q, PGresult *res);

struct st__api_req {
    st_ctx *c;
    struct evhttp_request *req; /* NULL once answered or its connection is gone */
    st__api_req *prev, *next;   /* in c->api->pending while busy */
    int busy;                   /* an operation is outstanding */
    st__api_pg_step step;       /* what runs with the result of the query */
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

/* ---- api.c: the request's life ---- */
/* Answers q (once: later calls do nothing). */
void st__api_reply(st__api_req *q, int code, const char *body, size_t len);
void st__api_reply_error(st__api_req *q, int code, const char *msg);
void st__api_reply_json(st__api_req *q, int code, json_t *o); /* o NULL: 500 */
/* Runs sql with params; step gets the result, or q is answered 503. */
void st__api_query(st__api_req *q, const char *sql, int n, const char *const *params,
                   st__api_pg_step step);
/* q starts an operation of its own (st_post_message): it stays pending. */
void st__api_go_busy(st__api_req *q);
/* After a step: it must have answered or started another operation;
 * frees q when it is done. */
void st__api_after_step(st__api_req *q);
/* A result of exactly one row of at least ncols columns, else answered 500. */
int st__api_one_row(st__api_req *q, const PGresult *res, int ncols);
/* The body's "userId" into out; else answers 400 and returns 0. */
int st__api_body_user(st__api_req *q, char out[CHAT_ID_MAX + 1]);
/* A column's text, NULL for SQL NULL. */
const char *st__api_val(const PGresult *res, int row, int col);

/* ---- params.c: parameters (no I/O) ---- */
/* A decimal integer in [min, ST__API_INT_MAX]: digits only, no sign, no
 * leading zero, nothing around it. 1 with *out set, else 0. */
int st__api_parse_int(const char *s, int64_t min, int64_t *out);
/* Percent-decodes one path segment into an id; 0 when it is not one (a bad
 * escape, or the result fails chat_id_valid). */
int st__api_decode_id(const char *s, size_t n, char out[CHAT_ID_MAX + 1]);
/* The path parameter {seq}: a message seq (>= 1) into q->num. */
int st__api_parse_seq(st__api_req *q, const char *s, size_t n);
/* GET /api/rooms ?cursor=: base64url of "MICROSECONDS:ROOM" as X-Next-Cursor
 * gave it, into q->cursor_us and q->cursor_room. */
int st__api_parse_cursor(st__api_req *q, const char *s);
/* The cursor of the page that follows the room (active_us, room). */
void st__api_make_cursor(pr_buf *out, const char *active_us, const char *room);
/* ?limit= and ?before= (rooms 0) or ?cursor= (rooms 1); each at most once,
 * other names ignored. Sets q->limit, q->num, q->cursor_us; 0 when bad. */
int st__api_parse_query(st__api_req *q, const char *query, int rooms);

/* ---- ratelimit.c ---- */
st__api_limiter *st__api_limiter_new(st_ctx *c);
void st__api_limiter_free(st__api_limiter *l);
/* 1 when user may make one more request now. */
int st__api_take_token(st__api_limiter *l, const char *user);

/* ---- the handlers: each answers q or starts its first operation ---- */
void st__api_list_rooms(st__api_req *q);    /* rooms.c */
void st__api_create_group(st__api_req *q);  /* rooms.c */
void st__api_list_messages(st__api_req *q); /* messages.c */
void st__api_post_message(st__api_req *q);  /* messages.c */
void st__api_list_receipts(st__api_req *q); /* receipts.c */
void st__api_add_member(st__api_req *q);    /* members.c */
void st__api_remove_member(st__api_req *q); /* members.c */
void st__api_open_dm(st__api_req *q);       /* dm.c */
/* members.c: tells user's sockets it joined q->room (J1, roomAdded). */
void st__api_announce_added(st__api_req *q, const char *user, const char *name, const char *type);

/* clang-format off */
/* A timestamptz as clients get createdAt (ISO 8601 UTC, ms): chat_iso of
 * storage/sql/functions/chat_iso.sql, the one the acks and events use. */
#define ST__API_TS(x) "chat_iso(" x ")"
/* clang-format on */

#endif
