/*
 * api/receipts.c - GET /api/rooms/{roomId}/messages/{seq}/receipts: where
 * each other member is with one message (sent, delivered, seen, and when).
 */
#include <stdio.h>
#include <string.h>

#include "api.h"

/* clang-format off */
/* A member's time for a watermark kind: the first move at or past the
 * message (watermarks only move forward; docs/storage.md "Status"). An 's'
 * row stands for delivered too, so delivered is the earlier of the two: a
 * move of both to the message logs only 's', and a later 'd' row past it
 * is a later delivery. Moves that covered only the member's own messages
 * are not logged: no message of someone else lies in their range, so the
 * first row at or past such a message is still the move that reached it. */
#define WM_AT(kind)                                                                                \
    "(SELECT w.at FROM watermarks w WHERE w.room_id = $1 AND w.user_id = rm.user_id"               \
    "  AND w.kind = '" kind "' AND w.seq >= msg.seq ORDER BY w.seq LIMIT 1)"

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
    ST__API_TS("LEAST(rc.d_at, rc.s_at)") " END,"
    "     'seenAt', CASE WHEN rc.status = 'seen' THEN " ST__API_TS("rc.s_at") " END)"
    "   ORDER BY rc.user_id) FROM rc), '[]'::json))";
/* clang-format on */

static void receipts_listed(st__api_req *q, PGresult *res)
{
    if (!st__api_one_row(q, res, 3))
        return;
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        st__api_reply_error(q, 403, "not a member");
    else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0)
        st__api_reply_error(q, 404, "no such message");
    else
        st__api_reply(q, 200, PQgetvalue(res, 0, 2), (size_t)PQgetlength(res, 0, 2));
}

void st__api_list_receipts(st__api_req *q)
{
    char seq[24];
    snprintf(seq, sizeof seq, "%lld", (long long)q->num);
    const char *p[] = {q->arg[0], q->user, seq};
    st__api_query(q, SQL_RECEIPTS, 3, p, receipts_listed);
}
