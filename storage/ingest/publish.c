/*
 * ingest/publish.c - what a committed batch tells the gateways, then the
 * end of its entries (docs/storage.md "Storage's batch", "Envelopes").
 *
 * After COMMIT, in the contract's order: the membership cache of new direct
 * rooms, messages (M1 on room:{ROOM}), acks (A1 on each reply channel),
 * shard positions ({st}:pos), statuses (U1 on user:{SENDER}), then XACK and
 * XDEL. Commands are pipelined on the command link. (storage/publish.c is
 * the other publishing: the messageReceived packet itself, posts over HTTP
 * and membership changes of the API.)
 */
#include <stdio.h>
#include <string.h>

#include "ingest.h"
#include "cm_log.h"

/* {st}:pos only moves forward, even if a deposed owner publishes late */
static const char POS_LUA[] =
    "for i = 1, #ARGV, 2 do "
    "local cur = tonumber(redis.call('hget', KEYS[1], ARGV[i]) or '0') "
    "if tonumber(ARGV[i + 1]) > cur then redis.call('hset', KEYS[1], ARGV[i], ARGV[i + 1]) end "
    "end return 0";

typedef struct {
    const char **argv;
    size_t *lens;
    int n, cap;
} cmd;

static void cmd_add(cmd *m, const char *s, size_t len)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 16;
        m->argv = pr_realloc(m->argv, (size_t)m->cap * sizeof *m->argv);
        m->lens = pr_realloc(m->lens, (size_t)m->cap * sizeof *m->lens);
    }
    m->argv[m->n] = s;
    m->lens[m->n] = len;
    m->n++;
}

static void cmd_dispose(cmd *m)
{
    pr_free(m->argv);
    pr_free(m->lens);
}

static void publish_env(st_ctx *c, const char *channel, pr_view env)
{
    const char *argv[] = {"PUBLISH", channel, env.ptr};
    size_t lens[] = {7, strlen(channel), env.len};
    cm_redis_command(c->redis, NULL, NULL, 3, argv, lens);
}

static void publish_joins_and_status(st_ingest *g, PGresult *res, char which)
{
    st_ctx *c = g->c;
    int rows = PQntuples(res);
    pr_buf pkt, env;
    pr_buf_init(&pkt, 4096);
    pr_buf_init(&env, 4096);
    for (int i = 0; i < rows; i++) {
        const char *k = st__col(res, i, ST__COL_K);
        if (!k || k[0] != which)
            continue;
        const char *room = st__col(res, i, ST__COL_ROOM), *usr = st__col(res, i, ST__COL_USR);
        if (!room || !usr)
            continue;
        if (which == 'j') {
            /* the membership cache only: for direct rooms the gateways
             * publish J1 themselves (docs/storage.md, J1) */
            char members[CHAT_ID_MAX + 16], rooms[CHAT_ID_MAX + 16];
            snprintf(members, sizeof members, "{r:%s}:members", room);
            snprintf(rooms, sizeof rooms, "{u:%s}:rooms", usr);
            const char *a1[] = {"SADD", members, usr};
            size_t l1[] = {4, strlen(members), strlen(usr)};
            const char *a2[] = {"SADD", rooms, room};
            size_t l2[] = {4, strlen(rooms), strlen(room)};
            cm_redis_command(c->redis, NULL, NULL, 3, a1, l1);
            cm_redis_command(c->redis, NULL, NULL, 3, a2, l2);
            continue;
        }
        const char *status = st__col(res, i, ST__COL_STATUS),
                   *sender = st__col(res, i, ST__COL_SENDER),
                   *agg = st__col(res, i, ST__COL_AGGREGATE), *seq = st__col(res, i, ST__COL_SEQ);
        if (!status || !sender || !agg || !seq)
            continue;
        pr_buf_reset(&pkt);
        pr_buf_reset(&env);
        pr_buf_append(&pkt, "2[\"messageStatus\",{\"roomId\":", 28);
        st__json_str(&pkt, room, strlen(room));
        pr_buf_appendf(&pkt, ",\"seq\":%s,\"userId\":", seq);
        st__json_str(&pkt, usr, strlen(usr));
        pr_buf_appendf(&pkt, ",\"status\":\"%s\",\"aggregate\":\"%s\"}]", status, agg);
        if (chat_uenv_encode(&env, pr_view_make(sender, strlen(sender)), pr_buf_view(&pkt)) != 0)
            continue;
        char channel[CHAT_ID_MAX + 16];
        snprintf(channel, sizeof channel, "user:{%s}", sender);
        publish_env(c, channel, pr_buf_view(&env));
        c->stats.status_events++;
    }
    pr_buf_dispose(&pkt);
    pr_buf_dispose(&env);
}

static void publish_messages(st_ingest *g, st__batch *b, int64_t *top)
{
    pr_buf pkt, env;
    pr_buf_init(&pkt, ST_TEXT_HARD_MAX * 6 + 4096);
    pr_buf_init(&env, ST_TEXT_HARD_MAX * 6 + 8192);
    for (size_t i = 0; i < b->n; i++) {
        entry *e = b->e[i];
        if (e->kind != 'm')
            continue;
        /* a dup above the published position was stored by a batch that
         * never got to publish (its owner died after COMMIT, or the link
         * broke under its commands): publish now */
        const st__shard *sh = &g->shards[e->shard];
        if (!(e->status == ST_E_NEW || (e->status == ST_E_DUP && e->rshard == e->shard &&
                                        (e->pos > sh->published || e->pos > sh->republish_above))))
            continue;
        st_msg m = {e->mid, e->seq, e->r, e->u, e->n, e->l, e->x, e->x_len, e->created, e->c};
        pr_buf_reset(&pkt);
        pr_buf_reset(&env);
        chat_menv h = {pr_view_make(e->r, strlen(e->r)), e->seq, e->rshard, e->pos,
                       pr_view_make(e->u, strlen(e->u))};
        if (st_message_packet(&pkt, &m) != 0 || chat_menv_encode(&env, &h, pr_buf_view(&pkt)) != 0)
            continue;
        char channel[CHAT_ID_MAX + 16];
        snprintf(channel, sizeof channel, "room:{%s}", e->r);
        publish_env(g->c, channel, pr_buf_view(&env));
        if (e->pos > top[e->rshard])
            top[e->rshard] = e->pos;
    }
    pr_buf_dispose(&pkt);
    pr_buf_dispose(&env);
}

static void append_ack(pr_buf *json, entry *e)
{
    pr_buf_reset(json);
    if (e->kind == 'o' && e->status == ST_E_NONE) {
        /* committed (a batch with a valid open always goes to the
         * database): the room and its two members exist */
        pr_buf_append(json, "{\"roomId\":", 10);
        st__json_str(json, e->r, strlen(e->r));
        pr_buf_append_byte(json, '}');
        return;
    }
    switch (e->status) {
    case ST_E_NEW:
    case ST_E_DUP:
        pr_buf_appendf(json, "{\"id\":\"%s\",\"seq\":%lld,\"roomId\":", e->mid, (long long)e->seq);
        st__json_str(json, e->r, strlen(e->r));
        pr_buf_appendf(json, ",\"createdAt\":\"%s\",\"status\":\"sent\"}", e->created);
        break;
    case ST_E_FORBIDDEN: pr_buf_append(json, "{\"error\":\"not a member\"}", 24); break;
    case ST_E_REUSED: pr_buf_append(json, "{\"error\":\"clientMsgId reused\"}", 30); break;
    default: pr_buf_append(json, "{\"error\":\"invalid payload\"}", 27); break;
    }
}

/* Whether e gets an A1 line: it has a reply address and either an ack id,
 * or (no callback: a = -1) an error its sender must still hear of. */
static int answered(const entry *e)
{
    if ((e->kind != 'm' && e->kind != 'o') || !e->g || e->status == ST_E_RETRY)
        return 0;
    if (e->a >= 0)
        return 1;
    return e->kind == 'm' ? e->status != ST_E_NEW && e->status != ST_E_DUP : e->status != ST_E_NONE;
}

/* One A1 per reply channel, with every ack of the batch for it: messages'
 * and the answers to "open" entries of joinChats that wait for them. */
static void publish_acks(st_ingest *g, st__batch *b)
{
    size_t n = b->n;
    char *done = pr_calloc(n ? n : 1, 1);
    pr_buf env, json;
    pr_buf_init(&env, 64u << 20);
    pr_buf_init(&json, 4096);
    for (size_t i = 0; i < n; i++) {
        entry *e = b->e[i];
        if (done[i] || !answered(e))
            continue;
        pr_buf_reset(&env);
        chat_aenv_begin(&env);
        for (size_t j = i; j < n; j++) {
            entry *f = b->e[j];
            if (done[j] || !answered(f) || strcmp(f->g, e->g) != 0)
                continue;
            done[j] = 1;
            append_ack(&json, f);
            chat_aenv_add(&env, pr_view_make(f->s, strlen(f->s)), f->a, pr_buf_view(&json));
        }
        publish_env(g->c, e->g, pr_buf_view(&env));
    }
    pr_buf_dispose(&env);
    pr_buf_dispose(&json);
    pr_free(done);
}

static void publish_positions(st_ingest *g, const int64_t *top)
{
    cmd m = {0};
    char nums[CHAT_SHARDS_MAX][2][24];
    cmd_add(&m, "EVAL", 4);
    cmd_add(&m, POS_LUA, strlen(POS_LUA));
    cmd_add(&m, "1", 1);
    cmd_add(&m, "{st}:pos", 8);
    int any = 0;
    for (unsigned s = 0; s < g->nshards; s++) {
        if (top[s] <= 0)
            continue;
        if (top[s] > g->shards[s].published)
            g->shards[s].published = top[s];
        snprintf(nums[s][0], sizeof nums[s][0], "%u", s);
        snprintf(nums[s][1], sizeof nums[s][1], "%lld", (long long)top[s]);
        cmd_add(&m, nums[s][0], strlen(nums[s][0]));
        cmd_add(&m, nums[s][1], strlen(nums[s][1]));
        any = 1;
    }
    if (any)
        cm_redis_command(g->c->redis, NULL, NULL, m.n, m.argv, m.lens);
    cmd_dispose(&m);
}

typedef struct {
    st_ingest *g;
    unsigned shard;
    int64_t before; /* the shard's published position before this batch */
} ack_arg;

static void ack_cb(cm_redis *redis, redisReply *reply, void *arg)
{
    (void)redis;
    ack_arg *x = arg;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        CM_WARN_RATELIMITED("event=xack_failed shard=%u err=\"%s\"", x->shard,
                            reply ? reply->str : "link lost");
        /* The link broke under this batch's commands: its M1s may be lost
         * with them. Its entries are still pending and come back as 'dup'
         * once the shard reads its pending entries again (the link's epoch
         * changed); forgetting that they were published makes them go out
         * then. */
        st__shard *sh = &x->g->shards[x->shard];
        if (x->before < sh->republish_above)
            sh->republish_above = x->before;
        if (sh->owned) { /* read this shard's pending entries again */
            sh->mode = ST__MODE_PENDING;
            strcpy(sh->cursor, "0");
        }
    }
    pr_free(x);
}

static void ack_entries(st_ingest *g, st__batch *b, const int64_t *before)
{
    for (unsigned s = 0; s < g->nshards; s++) {
        cmd ack = {0}, del = {0};
        for (size_t i = 0; i < b->n; i++) {
            entry *e = b->e[i];
            if (e->shard != s || e->status == ST_E_RETRY)
                continue;
            if (ack.n == 0) {
                cmd_add(&ack, "XACK", 4);
                cmd_add(&ack, g->shards[s].in_key, strlen(g->shards[s].in_key));
                cmd_add(&ack, ST__INGEST_GROUP, strlen(ST__INGEST_GROUP));
                cmd_add(&del, "XDEL", 4);
                cmd_add(&del, g->shards[s].in_key, strlen(g->shards[s].in_key));
            }
            cmd_add(&ack, e->id, strlen(e->id));
            cmd_add(&del, e->id, strlen(e->id));
        }
        if (ack.n) {
            ack_arg *x = pr_malloc(sizeof *x);
            x->g = g;
            x->shard = s;
            x->before = before[s];
            if (cm_redis_command(g->c->redis, ack_cb, x, ack.n, ack.argv, ack.lens) != 0) {
                ack_cb(NULL, NULL, x); /* not even sent: the same as lost */
            } else {
                cm_redis_command(g->c->redis, NULL, NULL, del.n, del.argv, del.lens);
            }
        }
        cmd_dispose(&ack);
        cmd_dispose(&del);
    }
}

/* After COMMIT, in the contract's order (see the top of this file). */
void st__publish_batch(st_ingest *g, st__batch *b, PGresult *res)
{
    int64_t top[CHAT_SHARDS_MAX] = {0}, before[CHAT_SHARDS_MAX];
    for (unsigned s = 0; s < g->nshards; s++)
        before[s] = g->shards[s].published;
    if (res)
        publish_joins_and_status(g, res, 'j');
    publish_messages(g, b, top);
    publish_acks(g, b);
    publish_positions(g, top);
    if (res)
        publish_joins_and_status(g, res, 's');
    ack_entries(g, b, before);
}
