/*
 * api/rooms.c - GET /api/rooms (the user's rooms, most active first, by
 * pages) and POST /api/rooms (create a group).
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "cm_log.h"

#define GROUP_MAX 1000 /* members given when a group is created */

/* clang-format off */
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
    "                   'text', g.body, 'createdAt', " ST__API_TS("g.created_at") ")"
    "                 FROM messages g WHERE g.room_id = m.id AND g.seq = m.last_seq),"
    " 'unreadCount', (SELECT count(*) FROM messages u"
    "                 WHERE u.room_id = m.id AND u.seq > m.seen_seq AND u.sender_id <> $1)),"
    " (extract(epoch FROM m.active) * 1000000)::bigint, m.id "
    "FROM mine m ORDER BY m.active DESC, m.id DESC";

static const char SQL_CREATE_GROUP[] =
    "WITH r AS (INSERT INTO rooms (id, kind, name, created_by)"
    "           VALUES ($1, 'group', $2, $3) RETURNING id)"
    "INSERT INTO room_members (room_id, user_id)"
    " SELECT r.id, j.u FROM r, json_array_elements_text($4::json) AS j(u)"
    " ON CONFLICT DO NOTHING RETURNING user_id";
/* clang-format on */

/* ---- GET /api/rooms ---- */

static void rooms_listed(st__api_req *q, PGresult *res)
{
    int rows = PQntuples(res);
    if (PQnfields(res) != 3) {
        st__api_reply_error(q, 500, "internal error");
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
        pr_buf enc;
        pr_buf_init(&enc, 512);
        st__api_make_cursor(&enc, PQgetvalue(res, shown - 1, 1), PQgetvalue(res, shown - 1, 2));
        evhttp_add_header(evhttp_request_get_output_headers(q->req), "X-Next-Cursor", enc.ptr);
        pr_buf_dispose(&enc);
    }
    size_t len = evbuffer_get_length(body);
    st__api_reply(q, 200, (const char *)evbuffer_pullup(body, -1), len);
    evbuffer_free(body);
}

void st__api_list_rooms(st__api_req *q)
{
    char cur[24], lim[16];
    snprintf(lim, sizeof lim, "%ld", q->limit);
    snprintf(cur, sizeof cur, "%lld", (long long)q->cursor_us);
    const char *p[] = {q->user, q->cursor_us >= 0 ? cur : NULL,
                       q->cursor_us >= 0 ? q->cursor_room : NULL, lim};
    st__api_query(q, SQL_ROOMS, 4, p, rooms_listed);
}

/* ---- POST /api/rooms ---- */

static void group_created(st__api_req *q, PGresult *res)
{
    const char *name = json_string_value(json_object_get(q->body, "name"));
    for (int i = 0; i < PQntuples(res); i++)
        st__api_announce_added(q, PQgetvalue(res, i, 0), name, "group");
    json_t *o = json_pack("{ss ss ss sO}", "roomId", q->room, "type", "group", "name", name,
                          "members", q->list);
    st__api_reply_json(q, 201, o);
    json_decref(o);
}

void st__api_create_group(st__api_req *q)
{
    json_t *name = json_object_get(q->body, "name");
    json_t *members = json_object_get(q->body, "members");
    if (!json_is_string(name) || json_string_length(name) == 0 ||
        !chat_name_valid(json_string_value(name), json_string_length(name))) {
        st__api_reply_error(q, 400, "name must be 1..128 bytes of text without control characters");
        return;
    }
    if (members && !json_is_array(members)) {
        st__api_reply_error(q, 400, "members must be an array of user ids");
        return;
    }
    if (json_array_size(members) > GROUP_MAX) {
        st__api_reply_error(q, 400, "too many members");
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
        st__api_reply_error(q, 400, "members must be an array of user ids");
        return;
    }
    unsigned char rnd[16];
    pr_buf id;
    pr_buf_init(&id, sizeof q->room);
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        st__api_reply_error(q, 500, "no randomness");
        pr_buf_dispose(&id);
        return;
    }
    pr_buf_append(&id, "g_", 2);
    pr_base64url_encode(&id, pr_view_make(rnd, sizeof rnd)); /* 22 characters */
    snprintf(q->room, sizeof q->room, "%.*s", (int)id.len, id.ptr);
    pr_buf_dispose(&id);
    char *list = json_dumps(q->list, JSON_COMPACT);
    const char *p[] = {q->room, json_string_value(name), q->user, list};
    st__api_query(q, SQL_CREATE_GROUP, 4, p, group_created);
    pr_free(list);
}
