/*
 * api/members.c - a group's members: POST /api/rooms/{roomId}/members and
 * DELETE /api/rooms/{roomId}/members/{userId}, and telling the users'
 * sockets (J1/K1 with the membership cache, roomAdded/roomRemoved), which
 * rooms.c and dm.c do too. The database is the truth; a publish that fails
 * leaves the user's sockets to learn of the change when they next connect.
 */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "cm_log.h"

/* clang-format off */
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
/* clang-format on */

/* J1 or K1 (with the membership cache), then the user's packet. */
static void announce(st__api_req *q, char kind, const char *room, const char *user,
                     const pr_buf *packet)
{
    int rc = st_publish_membership(q->c, kind, room, user);
    rc |= st_publish_user_packet(q->c, user, pr_buf_view(packet));
    if (rc != 0)
        CM_WARN_RATELIMITED("event=api_publish_failed kind=%c room=%s user=%s", kind, room, user);
}

void st__api_announce_added(st__api_req *q, const char *user, const char *name, const char *type)
{
    pr_buf pkt;
    pr_buf_init(&pkt, 4 * (CHAT_ID_MAX + CHAT_NAME_MAX) + 64);
    chat_room_added_packet(&pkt, q->room, name, type);
    announce(q, 'J', q->room, user, &pkt);
    pr_buf_dispose(&pkt);
}

/* The row of SQL_ADD_MEMBER or SQL_REMOVE_MEMBER: 1 when the caller is a
 * member of the group and a membership changed (column count_col counts
 * them); else q is answered, with code and msg when nothing changed. */
static int group_changed(st__api_req *q, PGresult *res, int count_col, int code, const char *msg)
{
    if (PQntuples(res) == 0) {
        st__api_reply_error(q, 403, CHAT_ERR_NOT_MEMBER);
        return 0;
    }
    if (!st__api_one_row(q, res, count_col + 1))
        return 0;
    if (strcmp(PQgetvalue(res, 0, 0), "group") != 0) {
        st__api_reply_error(q, 400, "not a group: direct rooms keep their two members");
        return 0;
    }
    if (strcmp(PQgetvalue(res, 0, count_col), "0") == 0) {
        st__api_reply_error(q, code, msg);
        return 0;
    }
    return 1;
}

/* ---- POST /api/rooms/{roomId}/members ---- */

static void member_added(st__api_req *q, PGresult *res)
{
    if (!group_changed(q, res, 2, 409, "already a member"))
        return;
    st__api_announce_added(q, q->arg[1], st__api_val(res, 0, 1), "group");
    json_t *o = json_pack("{ss ss}", "roomId", q->room, "userId", q->arg[1]);
    st__api_reply_json(q, 201, o);
    json_decref(o);
}

void st__api_add_member(st__api_req *q)
{
    if (!st__api_body_user(q, q->arg[1]))
        return;
    snprintf(q->room, sizeof q->room, "%s", q->arg[0]);
    const char *p[] = {q->arg[0], q->user, q->arg[1]};
    st__api_query(q, SQL_ADD_MEMBER, 3, p, member_added);
}

/* ---- DELETE /api/rooms/{roomId}/members/{userId} ---- */

static void member_removed(st__api_req *q, PGresult *res)
{
    if (!group_changed(q, res, 1, 404, "no such member"))
        return;
    /* K1 first: the removed user's sockets leave the room at once */
    pr_buf pkt;
    pr_buf_init(&pkt, 4 * CHAT_ID_MAX + 64);
    chat_room_removed_packet(&pkt, q->arg[0]);
    announce(q, 'K', q->arg[0], q->arg[1], &pkt);
    pr_buf_dispose(&pkt);
    st__api_reply(q, 204, NULL, 0);
}

void st__api_remove_member(st__api_req *q)
{
    const char *p[] = {q->arg[0], q->user, q->arg[1]};
    st__api_query(q, SQL_REMOVE_MEMBER, 3, p, member_removed);
}
