/*
 * ingest/publish.c - what a committed batch tells the gateways, then the
 * end of its entries (docs/storage.md "Storage's batch", "Envelopes").
 *
 * After COMMIT, in the contract's order: the members of new direct rooms
 * (the membership cache, then J1), messages (M1 on room:{ROOM}), acks (A1
 * on each reply channel), shard positions ({st}:pos), statuses (one U1 per
 * sender on user:{SENDER}), then XACK and XDEL. Commands are pipelined on
 * the command link (on Redis Cluster the XACKs wait until every command
 * before them was answered, as they go to several masters). The packets
 * are proto's (chat_packets.h); storage/publish.c sends them (st_publish,
 * st_stream_done) and is the other publishing: posts over HTTP and the
 * API's membership changes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"
#include "ingest.h"

/* {st}:pos only moves forward, even if a deposed owner publishes late */
static const char POS_LUA[] =
    "for i = 1, #ARGV, 2 do "
    "local cur = tonumber(redis.call('hget', KEYS[1], ARGV[i]) or '0') "
    "if tonumber(ARGV[i + 1]) > cur then redis.call('hset', KEYS[1], ARGV[i], ARGV[i + 1]) end "
    "end return 0";

/* The 'j' rows (a member of a direct room this batch created): the
 * membership cache, then J1 on user:{USER}. The sender's gateway publishes
 * J1 too, but only when its own SADD is the one that adds the room to the
 * cache; on Redis Cluster that SADD and the message's XADD go to different
 * masters, so this batch's SADD can come first and the gateway's finds the
 * room there already. Without this J1 the peer's online sockets would never
 * join the room. A second J1 is a no-op for a socket already in the room
 * (docs/storage.md J1). */
static void publish_joins(st_ingest *g, PGresult *res)
{
    int rows = PQntuples(res);
    for (int i = 0; i < rows; i++) {
        const char *k = st__col(res, i, ST__COL_K);
        const char *room = st__col(res, i, ST__COL_ROOM), *usr = st__col(res, i, ST__COL_USR);
        if (k && k[0] == 'j' && room && usr && st_publish_membership(g->c, 'J', room, usr) != 0)
            CM_WARN_RATELIMITED("event=join_publish_failed room=%s user=%s", room, usr);
    }
}

static int by_sender(const void *a, const void *b)
{
    const st__event *const *x = a, *const *y = b;
    int c = strcmp((*x)->sender, (*y)->sender);
    return c ? c : (*x > *y) - (*x < *y);
}

/* messageStatus events: one U1 on user:{SENDER} per sender with all of the
 * batch's for them, in the events' order (the receipts' first, then the
 * senders' moves): one PUBLISH per sender and batch, not per event. */
static void publish_status(st_ingest *g, const st__event *ev, size_t nev)
{
    const st__event **by = pr_malloc((nev ? nev : 1) * sizeof *by);
    size_t n = 0;
    for (size_t i = 0; i < nev; i++)
        if (ev[i].sender && chat_id_valid(ev[i].sender, strlen(ev[i].sender)) && ev[i].room &&
            ev[i].member && ev[i].status && ev[i].aggregate)
            by[n++] = &ev[i];
    qsort(by, n, sizeof *by, by_sender);
    pr_buf pkt, env;
    pr_buf_init(&pkt, 4096);
    pr_buf_init(&env, 64u << 20);
    for (size_t i = 0, next; i < n; i = next) {
        const char *sender = by[i]->sender;
        unsigned events = 0;
        for (next = i + 1; next < n && !strcmp(by[next]->sender, sender); next++)
            ;
        pr_buf_reset(&env);
        if (chat_uenv_begin(&env, pr_view_make(sender, strlen(sender))) != 0)
            continue;
        for (size_t j = i; j < next; j++) {
            const st__event *e = by[j];
            chat_status s = {e->room, e->seq, e->member, e->status, e->aggregate};
            pr_buf_reset(&pkt);
            if (chat_status_packet(&pkt, &s) == 0 && chat_uenv_add(&env, pr_buf_view(&pkt)) == 0)
                events++;
        }
        if (events == 0)
            continue;
        chat_key channel = chat_chan_user(sender);
        st_publish(g->c, chat_key_view(&channel), pr_buf_view(&env));
        g->c->stats.status_events += events;
    }
    pr_buf_dispose(&pkt);
    pr_buf_dispose(&env);
    pr_free(by);
}

/* The message of entry e as stored (status new or dup). */
static chat_message stored_message(const entry *e)
{
    return (chat_message){.id = e->mid,
                          .seq = e->seq,
                          .room = e->r,
                          .user = e->u,
                          .first_name = e->n,
                          .last_name = e->l,
                          .text = e->x,
                          .text_len = e->x_len,
                          .created_at = e->created,
                          .client_msg_id = e->c};
}

static void publish_messages(st_ingest *g, st__batch *b, int64_t *top)
{
    pr_buf pkt, env;
    pr_buf_init(&pkt, CHAT_ENTRY_TEXT_MAX * 6 + 4096);
    pr_buf_init(&env, CHAT_ENTRY_TEXT_MAX * 6 + 8192);
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
        chat_message m = stored_message(e);
        pr_buf_reset(&pkt);
        pr_buf_reset(&env);
        chat_menv h = {pr_view_make(e->r, strlen(e->r)), e->seq, e->rshard, e->pos,
                       pr_view_make(e->u, strlen(e->u))};
        if (chat_message_packet(&pkt, &m) != 0 ||
            chat_menv_encode(&env, &h, pr_buf_view(&pkt)) != 0)
            continue;
        chat_key channel = chat_chan_room(e->r);
        st_publish(g->c, chat_key_view(&channel), pr_buf_view(&env));
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
        chat_ack_room(json, e->r);
        return;
    }
    switch (e->status) {
    case ST_E_NEW:
    case ST_E_DUP: {
        chat_message m = stored_message(e);
        chat_ack_message(json, &m);
        break;
    }
    case ST_E_FORBIDDEN: chat_ack_error(json, CHAT_ERR_NOT_MEMBER); break;
    case ST_E_REUSED: chat_ack_error(json, CHAT_ERR_CMID_REUSED); break;
    default: chat_ack_error(json, CHAT_ERR_INVALID); break;
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
        st_publish(g->c, pr_view_make(e->g, strlen(e->g)), pr_buf_view(&env));
    }
    pr_buf_dispose(&env);
    pr_buf_dispose(&json);
    pr_free(done);
}

static void publish_positions(st_ingest *g, const int64_t *top)
{
    const char *argv[4 + 2 * CHAT_SHARDS_MAX] = {"EVAL", POS_LUA, "1", CHAT_KEY_POS};
    size_t lens[4 + 2 * CHAT_SHARDS_MAX] = {4, strlen(POS_LUA), 1, strlen(CHAT_KEY_POS)};
    char nums[CHAT_SHARDS_MAX][2][24];
    int n = 4;
    for (unsigned s = 0; s < g->nshards; s++) {
        if (top[s] <= 0)
            continue;
        if (top[s] > g->shards[s].published)
            g->shards[s].published = top[s];
        snprintf(nums[s][0], sizeof nums[s][0], "%u", s);
        snprintf(nums[s][1], sizeof nums[s][1], "%lld", (long long)top[s]);
        for (int j = 0; j < 2; j++) {
            argv[n] = nums[s][j];
            lens[n++] = strlen(nums[s][j]);
        }
    }
    if (n > 4)
        cm_redis_command(g->c->redis, NULL, NULL, n, argv, lens);
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
    x->g->shards[x->shard].acking--;
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

/* The XACK of one shard's entries of a batch, waiting for a fence (Redis
 * Cluster): the ids are copies, the batch is gone by then. */
typedef struct pending_ack {
    struct pending_ack *next;
    ack_arg *x;
    size_t n;
    char **ids;
} pending_ack;

static void ack_send(st_ingest *g, ack_arg *x, const char *const *ids, size_t n)
{
    if (st_stream_done(g->c, chat_key_view(&g->shards[x->shard].in_key), ids, n, ack_cb, x) != 0)
        ack_cb(NULL, NULL, x); /* not even sent: the same as lost */
}

/* Every command of the batch before the fence was answered (ok), or one
 * failed or the link went: then its entries stay pending, as when an XACK
 * is lost, and go out again. */
static void fence_cb(cm_redis *redis, int ok, void *arg)
{
    (void)redis;
    for (pending_ack *p = arg, *next; p; p = next) {
        next = p->next;
        if (ok)
            ack_send(p->x->g, p->x, (const char *const *)p->ids, p->n);
        else
            ack_cb(NULL, NULL, p->x);
        for (size_t i = 0; i < p->n; i++)
            pr_free(p->ids[i]);
        pr_free(p->ids);
        pr_free(p);
    }
}

/* On one Redis the XACKs follow the batch's PUBLISHes on the one command
 * connection: an answered XACK means they went out. On a cluster the
 * PUBLISHes went to other masters, so the XACKs wait for a fence. */
static void ack_entries(st_ingest *g, st__batch *b, const int64_t *before)
{
    int cluster = cm_redis_is_cluster(g->c->redis);
    pending_ack *fenced = NULL;
    const char **ids = pr_malloc((b->n ? b->n : 1) * sizeof *ids);
    for (unsigned s = 0; s < g->nshards; s++) {
        size_t n = 0;
        for (size_t i = 0; i < b->n; i++) {
            entry *e = b->e[i];
            if (e->shard == s && e->status != ST_E_RETRY)
                ids[n++] = e->id;
        }
        if (n == 0)
            continue;
        ack_arg *x = pr_malloc(sizeof *x);
        x->g = g;
        x->shard = s;
        x->before = before[s];
        g->shards[s].acking++;
        if (!cluster) {
            ack_send(g, x, ids, n);
            continue;
        }
        pending_ack *p = pr_malloc(sizeof *p);
        p->x = x;
        p->n = n;
        p->ids = pr_malloc(n * sizeof *p->ids);
        for (size_t i = 0; i < n; i++)
            p->ids[i] = pr_strndup(ids[i], strlen(ids[i]));
        p->next = fenced;
        fenced = p;
    }
    pr_free(ids);
    if (fenced && cm_redis_fence(g->c->redis, fence_cb, fenced) != 0)
        fence_cb(g->c->redis, 0, fenced);
}

/* After COMMIT, in the contract's order (see the top of this file). */
void st__publish_batch(st_ingest *g, st__batch *b, PGresult *res, const st__event *ev, size_t nev)
{
    int64_t top[CHAT_SHARDS_MAX] = {0}, before[CHAT_SHARDS_MAX];
    for (unsigned s = 0; s < g->nshards; s++)
        before[s] = g->shards[s].published;
    if (res)
        publish_joins(g, res);
    publish_messages(g, b, top);
    publish_acks(g, b);
    publish_positions(g, top);
    publish_status(g, ev, nev);
    ack_entries(g, b, before);
}
