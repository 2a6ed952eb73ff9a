/*
 * api/dm.c - POST /api/dm: opens the direct room of the caller and another
 * user (its id is chat_dm_room_id of the two), creating it and its two
 * members if needed: 201 when created, 200 when it existed.
 */
#include <stdio.h>
#include <string.h>

#include "api.h"

static const char SQL_DM[] =
    "WITH r AS (INSERT INTO rooms (id, kind, created_by) VALUES ($1, 'dm', $2)"
    "           ON CONFLICT (id) DO NOTHING RETURNING id),"
    " m AS (INSERT INTO room_members (room_id, user_id) VALUES ($1, $2), ($1, $3)"
    "       ON CONFLICT DO NOTHING RETURNING user_id)"
    "SELECT (SELECT count(*) FROM r), m.user_id FROM m "
    "UNION ALL SELECT (SELECT count(*) FROM r), NULL";

static void dm_opened(st__api_req *q, PGresult *res)
{
    int created = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        if (!strcmp(PQgetvalue(res, i, 0), "1"))
            created = 1;
        const char *u = st__api_val(res, i, 1);
        if (u)
            st__api_announce_added(q, u, NULL, "dm");
    }
    json_t *o = json_pack("{ss}", "roomId", q->room);
    st__api_reply_json(q, created ? 201 : 200, o);
    json_decref(o);
}

void st__api_open_dm(st__api_req *q)
{
    if (!st__api_body_user(q, q->arg[1]))
        return;
    const char *peer = q->arg[1];
    if (!strcmp(peer, q->user)) {
        st__api_reply_error(q, 400, "a direct room needs two users");
        return;
    }
    char room[CHAT_DM_ID_LEN + 1];
    chat_dm_room_id(q->c->room_key, q->user, peer, room);
    snprintf(q->room, sizeof q->room, "%s", room);
    const char *p[] = {q->room, q->user, peer};
    st__api_query(q, SQL_DM, 3, p, dm_opened);
}
