/*
 * replay.c - answers the gateways' replay and sync requests from {st}:rpc
 * (docs/storage.md "Replay requests" and "Recovery").
 *
 * Every replica reads the stream in group "storage" as consumer REPLICA, a
 * few entries at a time on its own blocking link (c->rpc_blocking), and
 * answers them concurrently from the database pool; the next read waits
 * until they are answered. XAUTOCLAIM takes over entries another replica
 * read and did not answer within 5 s (it died).
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "cm_clock.h"
#include "cm_log.h"
#include "config.h"
#include "entry.h"
#include "st.h"

#define RPC_STREAM CHAT_KEY_RPC
#define GROUP CHAT_GROUP
#define READ_COUNT "16"
#define CLAIM_IDLE_MS "5000"
/* A request older than this has been given up by its gateway. */
#define MAX_AGE_MS 60000
/* Redis takes at most 512 MB in one value. */
#define REPLY_MAX (256u << 20)

struct st_replay {
    st_ctx *c;
    int reading, claiming, group_ok, group_pending;
    unsigned outstanding;
    uint64_t last_claim_ms;
    uint64_t pause_until;
    struct event *tick;
};

typedef struct {
    st_replay *rp;
    char entry_id[48];
    char kind; /* CHAT_RPC_REPLAY or CHAT_RPC_SYNC */
    char user[CHAT_ID_MAX + 1];
    char channel[CHAT_ID_MAX + 1];
    char req_id[CHAT_ID_MAX + 1];
    unsigned max;
} request;

/* Every room of the user with messages above the vector's position for its
 * shard. Within a room shard positions grow with seq (both are assigned
 * under the room's lock, in order), so the primary key (room_id, seq) finds
 * them: the room's last message says whether there is anything, and the
 * highest seq at or below the position (a backward scan over just the
 * missed messages) is where they start. */
static const char REPLAY_SQL[] =
    "SELECT m.shard, m.shard_pos, m.seq, m.room_id, m.id, m.sender_id, m.first_name, "
    "m.last_name, m.body, chat_iso(m.created_at), m.client_msg_id "
    "FROM room_members rm "
    "CROSS JOIN LATERAL (SELECT x.shard, x.shard_pos, ($2::bigint[])[x.shard + 1] AS above "
    "FROM messages x WHERE x.room_id = rm.room_id ORDER BY x.seq DESC LIMIT 1) s "
    "CROSS JOIN LATERAL (SELECT x.* FROM messages x WHERE x.room_id = rm.room_id "
    "AND s.shard_pos > s.above AND x.shard_pos > s.above "
    "AND x.seq > (SELECT coalesce(max(y.seq), 0) FROM messages y "
    "WHERE y.room_id = rm.room_id AND y.shard_pos <= s.above) "
    "ORDER BY x.seq LIMIT $3) m "
    "WHERE rm.user_id = $1 ORDER BY m.shard, m.shard_pos LIMIT $3";

static const char SYNC_SQL[] =
    "SELECT m.shard, m.shard_pos, m.seq, m.room_id, m.id, m.sender_id, m.first_name, "
    "m.last_name, m.body, chat_iso(m.created_at), m.client_msg_id "
    "FROM room_members rm "
    "CROSS JOIN LATERAL (SELECT x.* FROM messages x WHERE x.room_id = rm.room_id "
    "AND x.seq > rm.delivered_seq AND x.sender_id <> rm.user_id ORDER BY x.seq LIMIT $2) m "
    "WHERE rm.user_id = $1 ORDER BY m.room_id, m.seq LIMIT $2";

static void ack_entry(st_ctx *c, const char *id)
{
    st_stream_done(c, PR_VIEW_LIT(RPC_STREAM), &id, 1, NULL, NULL);
}

static void request_done(request *q)
{
    st_replay *rp = q->rp;
    pr_free(q);
    rp->outstanding--;
}

static const char *val(PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static int64_t num(PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static void reply(st_ctx *c, const request *q, const char *status, PGresult *res, int nrows)
{
    pr_buf out, pkt;
    pr_buf_init(&out, REPLY_MAX);
    pr_buf_init(&pkt, REPLY_MAX);
    int rc = chat_renv_begin(&out, pr_view_make(q->req_id, strlen(q->req_id)),
                             pr_view_make(status, strlen(status)));
    for (int i = 0; i < nrows && rc == 0; i++) {
        chat_message m = {.id = val(res, i, 4),
                          .seq = num(res, i, 2),
                          .room = val(res, i, 3),
                          .user = val(res, i, 5),
                          .first_name = val(res, i, 6),
                          .last_name = val(res, i, 7),
                          .text = val(res, i, 8),
                          .text_len = (size_t)PQgetlength(res, i, 8),
                          .created_at = val(res, i, 9),
                          .client_msg_id = val(res, i, 10)};
        if (!m.id || !m.room || !m.user || !m.text || !m.created_at) {
            rc = PR_EINVAL; /* cannot happen with the schema's NOT NULLs */
            break;
        }
        pr_buf_reset(&pkt);
        rc = chat_message_packet(&pkt, &m);
        chat_replay_item it = {(unsigned)num(res, i, 0), num(res, i, 1), m.seq,
                               pr_view_make(m.room, strlen(m.room)), pr_buf_view(&pkt)};
        if (rc == 0)
            rc = chat_renv_add(&out, &it);
    }
    if (rc != 0) {
        /* too big to send: the gateway starts a fresh session instead */
        pr_buf_reset(&out);
        rc = chat_renv_begin(&out, pr_view_make(q->req_id, strlen(q->req_id)),
                             PR_VIEW_LIT("overflow"));
        c->stats.replay_overflows++;
    }
    if (rc == 0)
        st_publish(c, pr_view_make(q->channel, strlen(q->channel)), pr_buf_view(&out));
    pr_buf_dispose(&out);
    pr_buf_dispose(&pkt);
}

static void query_cb(PGresult *res, const char *error, void *arg)
{
    request *q = arg;
    st_ctx *c = q->rp->c;
    if (!res) {
        c->stats.replay_errors++;
        CM_LOG_RATELIMITED(CM_LOG_ERROR, "event=replay_failed req=%s err=\"%s\"", q->req_id,
                           error ? error : "?");
        /* not acked: XAUTOCLAIM offers it again after CLAIM_IDLE_MS, by
         * which time the gateway may have given up (no harm) */
        request_done(q);
        return;
    }
    int rows = PQntuples(res);
    int overflow = rows > (int)q->max;
    c->stats.replay_requests++;
    if (overflow) {
        c->stats.replay_overflows++;
        reply(c, q, "overflow", NULL, 0);
    } else {
        reply(c, q, "ok", res, rows);
    }
    ack_entry(c, q->entry_id);
    CM_DEBUG("event=replay kind=%s req=%s user=%s rows=%d overflow=%d",
             q->kind == CHAT_RPC_REPLAY ? "replay" : "sync", q->req_id, q->user, rows, overflow);
    request_done(q);
}

/* A view's bytes, NUL-terminated, into dst (CHAT_ID_MAX + 1 bytes; the
 * parser checked it is an id). */
static void copy_id(char *dst, pr_view v)
{
    memcpy(dst, v.ptr, v.len);
    dst[v.len] = '\0';
}

static void handle_entry(st_replay *rp, const redisReply *item)
{
    st_ctx *c = rp->c;
    if (item->type != REDIS_REPLY_ARRAY || item->elements != 2 ||
        item->element[0]->type != REDIS_REPLY_STRING || item->element[0]->len >= 48)
        return;
    const char *id = item->element[0]->str;
    const redisReply *f = item->element[1];
    if (f->type != REDIS_REPLY_ARRAY) { /* deleted: nothing to answer */
        ack_entry(c, id);
        return;
    }
    request *q = pr_calloc(1, sizeof *q);
    q->rp = rp;
    memcpy(q->entry_id, id, item->element[0]->len);
    size_t nf;
    chat_field *fl = st__entry_fields(f, &nf);
    chat_request r;
    int ok = chat_request_parse(fl, nf, &r) == PR_OK;
    pr_free(fl);
    int addressable = r.reply_to.ptr && r.req_id.ptr;
    if (addressable) {
        copy_id(q->channel, r.reply_to);
        copy_id(q->req_id, r.req_id);
    }
    if (ok) {
        copy_id(q->user, r.user);
        q->kind = r.kind;
    }
    unsigned long max = ok ? r.max : 0;
    q->max = max > c->cfg->replay_max ? c->cfg->replay_max : (unsigned)max;
    /* an entry id is "MS-N": a request older than a minute is stale */
    unsigned long long ms = strtoull(id, NULL, 10);
    if (ok && ms + MAX_AGE_MS < cm_wall_ms()) {
        ack_entry(c, id);
        pr_free(q);
        return;
    }
    pr_buf arr;
    pr_buf_init(&arr, 24u * CHAT_SHARDS_MAX + 8);
    if (ok && q->kind == CHAT_RPC_REPLAY) {
        uint64_t vec[CHAT_SHARDS_MAX];
        unsigned n = c->cfg->ingest_shards;
        if (!r.vector.ptr || chat_vec_decode(r.vector, vec, n) != 0) {
            ok = 0;
        } else {
            pr_buf_append_byte(&arr, '{');
            for (unsigned s = 0; s < n; s++)
                pr_buf_appendf(&arr, "%s%llu", s ? "," : "", (unsigned long long)vec[s]);
            pr_buf_append(&arr, "}", 2);
        }
    }
    if (!ok) {
        CM_WARN_RATELIMITED("event=bad_replay_request id=%s", id);
        if (addressable) /* an answer the gateway handles: start afresh */
            reply(c, q, "overflow", NULL, 0);
        ack_entry(c, id);
        pr_buf_dispose(&arr);
        pr_free(q);
        return;
    }
    char limit[16];
    /* one row more than allowed tells an overflow */
    snprintf(limit, sizeof limit, "%u", q->max + 1);
    int rc;
    if (q->kind == CHAT_RPC_REPLAY) {
        const char *params[] = {q->user, arr.ptr, limit};
        rc = st_pg_query(c->db, REPLAY_SQL, 3, params, query_cb, q);
    } else {
        const char *params[] = {q->user, limit};
        rc = st_pg_query(c->db, SYNC_SQL, 2, params, query_cb, q);
    }
    pr_buf_dispose(&arr);
    if (rc != 0) {
        pr_free(q); /* queue full: XAUTOCLAIM offers it again */
        return;
    }
    rp->outstanding++;
}

static void handle_entries(st_replay *rp, const redisReply *items)
{
    if (!items || items->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < items->elements; i++)
        handle_entry(rp, items->element[i]);
}

static void read_cb(cm_redis *redis, redisReply *reply, void *arg)
{
    (void)redis;
    st_replay *rp = arg;
    rp->reading = 0;
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        CM_WARN_RATELIMITED("event=rpc_read_failed err=\"%s\"", reply->str);
        if (!strncmp(reply->str, "NOGROUP", 7))
            rp->group_ok = 0;
        rp->pause_until = cm_now_ms() + 500;
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY)
        return; /* nil: nothing within BLOCK */
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *st = reply->element[i];
        if (st->type == REDIS_REPLY_ARRAY && st->elements == 2)
            handle_entries(rp, st->element[1]);
    }
}

static void claim_cb(cm_redis *redis, redisReply *reply, void *arg)
{
    (void)redis;
    st_replay *rp = arg;
    rp->claiming = 0;
    /* [next cursor, [entries], [deleted ids]] */
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2)
        return;
    handle_entries(rp, reply->element[1]);
}

static void group_cb(cm_redis *redis, redisReply *reply, void *arg)
{
    (void)redis;
    st_replay *rp = arg;
    rp->group_pending = 0;
    if (reply && (reply->type != REDIS_REPLY_ERROR || !strncmp(reply->str, "BUSYGROUP", 9)))
        rp->group_ok = 1;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    st_replay *rp = arg;
    st_ctx *c = rp->c;
    if (c->stopping || !c->migrated || !cm_redis_ready(c->redis))
        return;
    if (!rp->group_ok) {
        if (!rp->group_pending) {
            if (st_stream_create_group(c, PR_VIEW_LIT(RPC_STREAM), group_cb, rp) == 0)
                rp->group_pending = 1;
        }
        return;
    }
    uint64_t now = cm_now_ms();
    if (rp->outstanding || now < rp->pause_until)
        return;
    if (!rp->claiming && now - rp->last_claim_ms >= 1000) {
        rp->last_claim_ms = now;
        const char *argv[] = {"XAUTOCLAIM",  RPC_STREAM, GROUP,   c->replica_id,
                              CLAIM_IDLE_MS, "0-0",      "COUNT", READ_COUNT};
        size_t lens[8];
        for (int i = 0; i < 8; i++)
            lens[i] = strlen(argv[i]);
        if (cm_redis_command(c->redis, claim_cb, rp, 8, argv, lens) == 0)
            rp->claiming = 1;
    }
    if (!rp->reading && cm_redis_ready(c->rpc_blocking)) {
        const char *argv[] = {"XREADGROUP", "GROUP", GROUP,     c->replica_id, "COUNT", READ_COUNT,
                              "BLOCK",      "1000",  "STREAMS", RPC_STREAM,    ">"};
        size_t lens[11];
        for (int i = 0; i < 11; i++)
            lens[i] = strlen(argv[i]);
        if (cm_redis_command(c->rpc_blocking, read_cb, rp, 11, argv, lens) == 0)
            rp->reading = 1;
    }
}

int st_replay_start(st_ctx *c)
{
    st_replay *rp = pr_calloc(1, sizeof *rp);
    rp->c = c;
    rp->tick = event_new(c->base, -1, EV_PERSIST, tick_cb, rp);
    struct timeval tv = {0, 20 * 1000};
    event_add(rp->tick, &tv);
    c->replay = rp;
    return 0;
}

void st_replay_free(st_ctx *c)
{
    st_replay *rp = c->replay;
    if (!rp)
        return;
    event_free(rp->tick);
    pr_free(rp);
    c->replay = NULL;
}
