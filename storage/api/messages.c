/*
 * api/messages.c - GET /api/rooms/{roomId}/messages (history, newest first,
 * by pages; the caller's own messages with their status) and POST
 * /api/rooms/{roomId}/messages (post through the ingest stream, like a
 * gateway's sendMessage, and answer with its ack).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "config.h"

#define POST_TIMEOUT_MS 5000 /* ack of a message posted over HTTP */

/* clang-format off */
/* One row per message of the page, newest first (one row of NULLs when there
 * is none): whether the caller is a member, the page's nextBefore, then the
 * message's columns (MSG_*) and, for the caller's own messages, their
 * status over the other members. */
static const char SQL_MESSAGES[] =
    "WITH me AS (SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2),"
    " w AS (SELECT COALESCE(min(delivered_seq), 0) AS d, COALESCE(min(seen_seq), 0) AS s"
    "       FROM room_members WHERE room_id = $1 AND user_id <> $2),"
    " page AS (SELECT g.* FROM messages g"
    "          WHERE g.room_id = $1 AND EXISTS (SELECT 1 FROM me)"
    "            AND ($3::bigint IS NULL OR g.seq < $3::bigint)"
    "          ORDER BY g.seq DESC LIMIT $4::int + 1),"
    " n AS (SELECT p.*, row_number() OVER (ORDER BY p.seq DESC) AS rn FROM page p),"
    " shown AS (SELECT n.id::text AS id, n.seq, n.room_id, n.sender_id, n.first_name, n.last_name,"
    "           n.body, " ST__API_TS("n.created_at") " AS created_at, n.client_msg_id,"
    "           CASE WHEN n.sender_id = $2 THEN CASE WHEN n.seq <= w.s THEN 'seen'"
    "             WHEN n.seq <= w.d THEN 'delivered' ELSE 'sent' END END AS status"
    "           FROM n, w WHERE n.rn <= $4::int)"
    "SELECT EXISTS (SELECT 1 FROM me), (SELECT n.seq FROM n WHERE n.rn = $4::int"
    "   AND EXISTS (SELECT 1 FROM n x WHERE x.rn = $4::int + 1)),"
    " m.id, m.seq, m.room_id, m.sender_id, m.first_name, m.last_name, m.body, m.created_at,"
    " m.client_msg_id, m.status"
    " FROM (SELECT 1) one LEFT JOIN shown m ON true ORDER BY m.seq DESC";

static const char SQL_MEMBER[] =
    "SELECT r.kind FROM rooms r JOIN room_members m ON m.room_id = r.id"
    " WHERE r.id = $1 AND m.user_id = $2";
/* clang-format on */

/* ---- GET /api/rooms/{roomId}/messages ---- */

/* SQL_MESSAGES' columns */
enum {
    MSG_MEMBER,
    MSG_NEXT,
    MSG_ID,
    MSG_SEQ,
    MSG_ROOM,
    MSG_USER,
    MSG_FIRST,
    MSG_LAST,
    MSG_TEXT,
    MSG_CREATED,
    MSG_CMID,
    MSG_STATUS,
    MSG_NCOLS
};

/* {"messages":[MESSAGE,...],"nextBefore":SEQ or null}, each MESSAGE as
 * clients get it live (chat_message_json), with its status when the
 * caller sent it. */
static int render_page(pr_buf *out, const PGresult *res)
{
    int rc = pr_buf_append(out, "{\"messages\":[", 13);
    int rows = PQntuples(res), shown = 0;
    for (int i = 0; i < rows && rc == 0; i++) {
        if (PQgetisnull(res, i, MSG_ID))
            continue; /* the one row of an empty page */
        chat_message m = {.id = st__api_val(res, i, MSG_ID),
                          .seq = strtoll(PQgetvalue(res, i, MSG_SEQ), NULL, 10),
                          .room = st__api_val(res, i, MSG_ROOM),
                          .user = st__api_val(res, i, MSG_USER),
                          .first_name = st__api_val(res, i, MSG_FIRST),
                          .last_name = st__api_val(res, i, MSG_LAST),
                          .text = st__api_val(res, i, MSG_TEXT),
                          .text_len = (size_t)PQgetlength(res, i, MSG_TEXT),
                          .created_at = st__api_val(res, i, MSG_CREATED),
                          .client_msg_id = st__api_val(res, i, MSG_CMID),
                          .status = st__api_val(res, i, MSG_STATUS)};
        if (shown++)
            rc = pr_buf_append_byte(out, ',');
        if (rc == 0)
            rc = chat_message_json(out, &m);
    }
    const char *next = st__api_val(res, 0, MSG_NEXT);
    if (rc == 0)
        rc = pr_buf_appendf(out, "],\"nextBefore\":%s}", next ? next : "null");
    return rc;
}

static void messages_listed(st__api_req *q, PGresult *res)
{
    if (PQntuples(res) < 1 || PQnfields(res) != MSG_NCOLS) {
        st__api_reply_error(q, 500, "internal error");
        return;
    }
    if (strcmp(PQgetvalue(res, 0, MSG_MEMBER), "t") != 0) {
        st__api_reply_error(q, 403, CHAT_ERR_NOT_MEMBER);
        return;
    }
    pr_buf body; /* a page of the longest texts, each escaped at worst 6 times */
    pr_buf_init(&body, ST__API_LIMIT_MAX * ((size_t)CHAT_ENTRY_TEXT_MAX * 6 + 4096) + 64);
    if (render_page(&body, res) == 0)
        st__api_reply(q, 200, body.ptr, body.len);
    else
        st__api_reply_error(q, 500, "internal error");
    pr_buf_dispose(&body);
}

void st__api_list_messages(st__api_req *q)
{
    char before[24], lim[16];
    snprintf(lim, sizeof lim, "%ld", q->limit);
    snprintf(before, sizeof before, "%lld", (long long)q->num);
    const char *p[] = {q->arg[0], q->user, q->num > 0 ? before : NULL, lim};
    st__api_query(q, SQL_MESSAGES, 4, p, messages_listed);
}

/* ---- POST /api/rooms/{roomId}/messages ---- */

static void message_acked(json_t *ack, void *arg)
{
    st__api_req *q = arg;
    q->busy = 0;
    if (q->req) {
        const char *err = json_string_value(json_object_get(ack, "error"));
        if (!ack)
            st__api_reply_error(q, 504,
                                "no acknowledgement in time; retry with the same clientMsgId");
        else if (err && (!strcmp(err, "forbidden") || !strcmp(err, CHAT_ERR_NOT_MEMBER)))
            st__api_reply_error(q, 403, CHAT_ERR_NOT_MEMBER); /* removed since the check */
        else if (err && !strcmp(err, CHAT_ERR_INVALID))
            st__api_reply_error(q, 400, err);
        else if (err && !strcmp(err, CHAT_ERR_CMID_REUSED))
            st__api_reply_error(q, 409, err); /* another text under a stored clientMsgId */
        else if (err && !strcmp(err, CHAT_ERR_TOO_LONG))
            st__api_reply_error(q, 413, err);
        else if (err)
            st__api_reply_error(q, 500, err);
        else
            st__api_reply_json(q, 201, ack);
    }
    st__api_after_step(q);
}

static void member_checked(st__api_req *q, PGresult *res)
{
    if (PQntuples(res) != 1) {
        st__api_reply_error(q, 403, "not a member");
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
    if (!cm_redis_ready(q->c->redis)) {
        st__api_reply_error(q, 503, "redis unavailable");
        return;
    }
    st__api_go_busy(q);
    if (st_post_message(q->c, &m, POST_TIMEOUT_MS, message_acked, q) != 0) {
        q->busy = 0;
        st__api_reply_error(q, 503, "redis unavailable");
    }
}

void st__api_post_message(st__api_req *q)
{
    json_t *text = json_object_get(q->body, "text");
    json_t *cid = json_object_get(q->body, "clientMsgId");
    if (!json_is_string(text) || json_string_length(text) == 0) {
        st__api_reply_error(q, 400, "text must be a non-empty string");
        return;
    }
    if (json_string_length(text) > q->c->cfg->max_text_length) {
        st__api_reply_error(q, 413, "text too long");
        return;
    }
    if (json_is_null(cid)) {
        json_object_del(q->body, "clientMsgId");
    } else if (cid && (!json_is_string(cid) ||
                       !chat_id_valid(json_string_value(cid), json_string_length(cid)))) {
        st__api_reply_error(q, 400, "clientMsgId must be 1..128 printable ASCII characters");
        return;
    }
    const char *p[] = {q->arg[0], q->user};
    st__api_query(q, SQL_MEMBER, 2, p, member_checked);
}
