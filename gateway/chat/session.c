/*
 * session.c - the phases of a storage socket (docs/storage.md, Recovery).
 *
 *   connect -> STARTING: read the session record, positions, cache mark and
 *              the user's rooms; subscribe them (the CONNECT is pending)
 *   STARTING -> CATCHUP: ask storage for a replay (recovery) or a sync;
 *              live messages are held meanwhile
 *   CATCHUP -> LIVE: the reply (or --replay-timeout) came; the held
 *              messages are written, then what waited for the catch-up
 *   STARTING/CATCHUP -> WAITING: Redis failed the start; retried when back
 *   any -> GONE: the socket disconnected
 *
 * gc__set_phase() is the only writer of cs->phase.
 */
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gc.h"

static void start_failed(gc_worker *cw, gc_sock *cs, const char *why);

/* The subscription link was lost: what was published meanwhile never came,
 * yet the next offset would claim it. Dropping the transports (outside of
 * any Redis callback) makes each client reconnect and recover from its last
 * offset, which is still true. Sockets still connecting start again once
 * Redis is back. */
void gc__drop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gc_worker *cw = arg;
    unsigned n = 0;
    for (gc_sock *cs = cw->socks, *next; cs; cs = next) {
        next = cs->next; /* one socket per session here: next survives */
        if (!cs->user)
            continue;
        if (cs->accepted) {
            gw_socket_drop_transport(cs->sock);
            n++;
        } else if (cs->phase == GC_STARTING || cs->phase == GC_CATCHUP) {
            start_failed(cw, cs, "subscription lost");
        }
    }
    if (n)
        CM_WARN("event=sessions_dropped worker=%d count=%u why=redis_subscription_lost",
                cw->index, n);
    gw_worker_schedule_flush(cw->w);
}

void gc__on_sub_lost(cm_redis *r, void *arg)
{
    (void)r;
    gc_worker *cw = arg;
    event_active(cw->drop_ev, EV_TIMEOUT, 0);
}

static void retry_arm(gc_worker *cw, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(cw->retry_timer, &tv);
}

/* Redis failed a socket's start: its CONNECT stays pending (a client only
 * waits; dropping it could strand a polling client in the middle of its
 * upgrade) until Redis is back, or until --connect-timeout. */
static void start_failed(gc_worker *cw, gc_sock *cs, const char *why)
{
    CM_WARN_RATELIMITED("event=session_start_failed worker=%d sid=%s why=%s", cw->index,
                        cs->sid, why);
    gc__set_phase(cw, cs, GC_WAITING);
}

static void free_vectors(gc_sock *cs)
{
    pr_free(cs->offset);
    pr_free(cs->rec);
    pr_free(cs->fresh);
    cs->offset = cs->rec = cs->fresh = NULL;
}

static void free_held(gc_sock *cs)
{
    while (cs->held) {
        gc_held *h = cs->held;
        cs->held = h->next;
        gw_blob_unref(h->blob);
        pr_free(h);
    }
    cs->held_tail = &cs->held;
    cs->nheld = 0;
}

/* The held messages, in the order they came, except those the sync or
 * replay already brought (by room seq). */
static void write_held(gc_worker *cw, gc_sock *cs)
{
    gc_held *h = cs->held;
    cs->held = NULL;
    cs->held_tail = &cs->held;
    cs->nheld = 0;
    while (h) {
        gc_held *next = h->next;
        gc_member *m = gc__membership(cs, h->room); /* NULL: removed from the room meanwhile */
        if (m && gc__write_stored(cw, cs, m, h->blob, h->seq, h->own))
            gw_app_count(cw->w, GC_COUNT_DELIVERIES, 1);
        gw_blob_unref(h->blob);
        pr_free(h);
        h = next;
    }
}

/* From now on messages are written as they come; the held ones first. */
static void go_live(gc_worker *cw, gc_sock *cs)
{
    cs->recovering = 0;
    write_held(cw, cs);
    free_vectors(cs);
    if (cs->resync) {
        /* a room joined during the catch-up: what it published before its
         * subscription was confirmed is in no reply yet */
        cs->resync = 0;
        if (gc__request(cw, cs, "sync", NULL) == 0)
            return; /* rooms opened meanwhile wait for that sync too */
        CM_WARN_RATELIMITED("event=sync_failed worker=%d sid=%s", cw->index, cs->sid);
    }
    /* the sync was answered and written: the opens may say seen now, and
     * then their acks go out */
    for (gc_member *m = cs->rooms; m; m = m->snext)
        if (m->open_due) {
            m->open_due = 0;
            gc__open_receipt(cw, cs, m);
        }
    gc__finish_due_joins(cs);
}

void gc__set_phase(gc_worker *cw, gc_sock *cs, int phase)
{
    cs->phase = (uint8_t)phase;
    cs->gen = ++cw->gen; /* what the old phase asked for is stale now */
    if (phase == GC_CATCHUP)
        gw_th_add(&cw->wait_th, &cs->wait,
                  gw_worker_now_ms(cw->w) + cw->cfg->replay_timeout_ms);
    else
        gw_th_del(&cw->wait_th, &cs->wait);
    switch (phase) {
    case GC_WAITING:
        if (!evtimer_pending(cw->retry_timer, NULL))
            retry_arm(cw, 1000);
        break;
    case GC_LIVE:
        go_live(cw, cs);
        break;
    case GC_GONE:
        free_held(cs);
        free_vectors(cs);
        gc__free_due_joins(cs);
        break;
    default:
        break;
    }
}

void gc__accept(gc_sock *cs)
{
    json_t *extra = cs->pid ? json_pack("{ss}", "pid", cs->pid) : NULL;
    cs->accepted = 1;
    gw_socket_accept(cs->sock, extra);
    json_decref(extra);
}

void gc__req_id(char out[REQ_ID_MAX], const gc_sock *cs, uint32_t gen)
{
    snprintf(out, REQ_ID_MAX, "%s.%u", cs->sid, gen);
}

int gc__request(gc_worker *cw, gc_sock *cs, const char *kind, const uint64_t *vec)
{
    /* a reply names the request; only the latest counts: the generation
     * the catch-up gets below (set_phase bumps cw->gen by one) */
    char req[REQ_ID_MAX];
    gc__req_id(req, cs, cw->gen + 1);
    pr_buf v;
    pr_buf_init(&v, (size_t)cw->nshards * 17 + 1);
    chat_request r = {
        .kind = !strcmp(kind, "replay") ? CHAT_RPC_REPLAY
                : !strcmp(kind, "sync") ? CHAT_RPC_SYNC
                                        : 0,
        .reply_to = chat_key_view(&cw->reply_channel),
        .req_id = pr_view_make(req, strlen(req)),
        .user = pr_view_make(cs->user->e.key, cs->user->e.len),
        .max = cw->cfg->replay_max,
    };
    if (vec) {
        chat_vec_encode(&v, vec, cw->nshards);
        r.vector = pr_view_make(v.ptr ? v.ptr : "", v.len);
    }
    chat_xadd x;
    int rc = chat_xadd_request(&x, &r);
    if (rc == 0)
        rc = gc__redis_xadd(cw, &x, NULL, NULL);
    pr_buf_dispose(&v);
    if (rc != 0)
        return rc;
    gc__set_phase(cw, cs, GC_CATCHUP);
    return 0;
}

static void new_pid(char out[PID_LEN + 1])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char rnd[PID_LEN];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        abort();
    for (int i = 0; i < PID_LEN; i++)
        out[i] = b64[rnd[i] & 63];
    out[PID_LEN] = '\0';
}

/* {c:PID}:sess = "USER\nVECTOR" for the recovery window; without it the pid
 * simply cannot be recovered. */
static void write_record(gc_worker *cw, const gc_sock *cs, const uint64_t *vec)
{
    pr_buf rec;
    pr_buf_init(&rec, CHAT_ID_MAX + 2 + (size_t)cw->nshards * 17);
    if (chat_session_encode(&rec, pr_view_make(cs->user->e.key, cs->user->e.len), vec,
                            cw->nshards) == 0) {
        chat_key key = chat_key_session(cs->pid);
        char px[24];
        snprintf(px, sizeof px, "%u", cw->cfg->recovery_window_s * 1000u);
        const char *argv[] = {"SET", key.s, rec.ptr, "PX", px};
        size_t lens[] = {3, key.len, rec.len, 2, strlen(px)};
        cm_redis_command(cw->redis, NULL, NULL, 5, argv, lens);
    }
    pr_buf_dispose(&rec);
}

/* A new session: a new pid whose record holds the positions read at the
 * start, the CONNECT reply, then (with_sync) the messages the user has not
 * been delivered yet, before anything live. */
void gc__go_fresh(gc_worker *cw, gc_sock *cs, int with_sync)
{
    cs->recovering = 0;
    if (!cs->accepted) {
        pr_free(cs->pid);
        cs->pid = NULL;
        if (cw->cfg->recovery_window_s && cs->fresh) {
            cs->pid = pr_malloc(PID_LEN + 1);
            new_pid(cs->pid);
            write_record(cw, cs, cs->fresh);
        }
        gc__accept(cs);
    }
    if (with_sync && gc__request(cw, cs, "sync", NULL) == 0)
        return;
    gc__set_phase(cw, cs, GC_LIVE);
}

void gc__pexpire_record(gc_worker *cw, const gc_sock *cs)
{
    chat_key key = chat_key_session(cs->pid);
    char px[24];
    snprintf(px, sizeof px, "%u", cw->cfg->recovery_window_s * 1000u);
    const char *argv[] = {"PEXPIRE", key.s, px};
    gc__redis_cmd(cw, NULL, NULL, 3, argv);
}

/* Every room is subscribed: ask storage for what the socket missed. */
static void started(gc_worker *cw, gc_sock *cs)
{
    if (!cs->have_record && cs->record_gone && cs->offset && cw->cache_built_ms &&
        cm_wall_ms() - cw->cache_built_ms < cw->cfg->recovery_window_s * 1000ull) {
        /* Redis lost its data (storage rebuilt the cache) within the
         * window, and the session records with it: the client's offset still
         * says what it has, so it recovers from that alone rather than
         * starting fresh, whose sync skips what the user's other sockets got */
        cs->rec = pr_calloc(cw->nshards, sizeof *cs->rec);
        memcpy(cs->rec, cs->offset, cw->nshards * sizeof *cs->rec);
        cs->have_record = 1;
        write_record(cw, cs, cs->rec);
    }
    if (cs->have_record) {
        /* the client has everything at or below its offset, and everything
         * before its session started */
        for (unsigned s = 0; s < cw->nshards; s++)
            if (cs->offset && cs->offset[s] > cs->rec[s])
                cs->rec[s] = cs->offset[s];
        if (gc__request(cw, cs, "replay", cs->rec) == 0) {
            cs->recovering = 1;
            return;
        }
    }
    gc__go_fresh(cw, cs, 1);
}

/* The socket a callback of its start was made for, if it is still in that
 * start (not gone, no newer generation); frees ref. */
static gc_sock *still_starting(void *ref, gc_worker **cw)
{
    *cw = ((gc_ref *)ref)->cw;
    gc_sock *cs = gc__ref_take(ref);
    return cs && cs->phase == GC_STARTING ? cs : NULL;
}

/* still_starting, for a reply that must be an array: otherwise the start
 * failed (Redis, or the link, refused the read). */
static gc_sock *starting_array(void *ref, const redisReply *rep, const char *what, gc_worker **cw)
{
    gc_sock *cs = still_starting(ref, cw);
    if (cs && (!rep || rep->type != REDIS_REPLY_ARRAY)) {
        start_failed(*cw, cs, what);
        return NULL;
    }
    return cs;
}

static void subs_step(gc_worker *cw, gc_sock *cs)
{
    if (cs->phase == GC_STARTING && --cs->subs_pending == 0)
        started(cw, cs);
}

static void subscribed_cb(cm_redis *r, int ok, void *arg)
{
    (void)r;
    gc_worker *cw;
    gc_sock *cs = still_starting(arg, &cw);
    if (!cs)
        return;
    if (!ok)
        start_failed(cw, cs, "subscribe");
    else
        subs_step(cw, cs);
}

static void wait_channel(gc_worker *cw, gc_sock *cs, const chat_key *channel)
{
    cs->subs_pending++;
    cm_redis_when_subscribed(cw->redis, chat_key_view(channel), subscribed_cb, gc__ref_new(cw, cs));
}

static void rooms_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    gc_worker *cw;
    gc_sock *cs = starting_array(arg, rep, "rooms", &cw);
    if (!cs)
        return;
    for (size_t i = 0; i < rep->elements; i++) {
        redisReply *e = rep->element[i];
        if (e->type == REDIS_REPLY_STRING && chat_id_valid(e->str, e->len))
            gc__room_join(cw, cs, e->str);
    }
    chat_key channel;
    cs->subs_pending++; /* held until every wait is registered */
    for (gc_member *m = cs->rooms; m && cs->phase == GC_STARTING; m = m->snext) {
        channel = chat_chan_room(m->room->e.key);
        wait_channel(cw, cs, &channel);
    }
    if (cs->phase != GC_STARTING)
        return;
    channel = chat_chan_user(cs->user->e.key);
    wait_channel(cw, cs, &channel);
    if (cs->phase == GC_STARTING)
        wait_channel(cw, cs, &cw->reply_channel);
    subs_step(cw, cs); /* the hold */
    subs_step(cw, cs); /* this read */
}

static void record_take(gc_worker *cw, gc_sock *cs, const redisReply *rep)
{
    if (rep->type != REDIS_REPLY_STRING) {
        cs->record_gone = 1; /* expired, never ours, or lost with Redis's data: started() */
        return;
    }
    pr_view user, v; /* "USER\nVECTOR" */
    if (chat_session_decode(pr_view_make(rep->str, rep->len), &user, &v) != 0 ||
        !gc__view_is(user, cs->user->e.key, cs->user->e.len))
        return; /* another user's pid */
    cs->rec = pr_calloc(cw->nshards, sizeof *cs->rec);
    cs->have_record = chat_vec_decode(v, cs->rec, cw->nshards) == 0;
}

static void record_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    gc_worker *cw;
    gc_sock *cs = still_starting(arg, &cw);
    if (!cs)
        return;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        start_failed(cw, cs, "session record");
        return;
    }
    record_take(cw, cs, rep);
    subs_step(cw, cs);
}


static void positions_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    gc_worker *cw;
    gc_sock *cs = starting_array(arg, rep, "positions", &cw);
    if (!cs)
        return;
    cs->fresh = pr_calloc(cw->nshards, sizeof *cs->fresh); /* missing shards: 0 */
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        redisReply *k = rep->element[i], *v = rep->element[i + 1];
        unsigned shard;
        uint64_t pos;
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
            chat_pos_decode(pr_view_make(k->str, k->len), pr_view_make(v->str, v->len), cw->nshards,
                            &shard, &pos) == 0)
            cs->fresh[shard] = pos;
    }
    subs_step(cw, cs);
}

/* {st}:cache is chat-storage's mark of a complete membership cache
 * (docs/storage.md, "Membership cache"). Absent once this worker has seen
 * it, Redis lost the cache and storage is rebuilding it: {u:USER}:rooms may
 * be empty or partial, and a socket started from it would miss its rooms'
 * messages. The start waits as if Redis had failed it (GC_WAITING, the
 * CONNECT stays pending) and tries again. (Never seen: no chat-storage has
 * run on this Redis yet, and nothing was lost.) Read on the same link just
 * before the rooms, so a Redis that restarts in between fails the rooms read
 * too. */
static void cache_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    gc_worker *cw;
    gc_sock *cs = still_starting(arg, &cw);
    if (!cs)
        return;
    if (rep && rep->type == REDIS_REPLY_STRING) {
        cw->cache_seen = 1;
        uint64_t at;
        if (chat_cache_mark_decode(pr_view_make(rep->str, rep->len), &at) == 0)
            cw->cache_built_ms = at;
    } else if (rep && rep->type == REDIS_REPLY_NIL && cw->cache_seen) {
        start_failed(cw, cs, "membership cache rebuilding"); /* rooms_cb is stale now */
        return;
    }
    subs_step(cw, cs);
}

/* Reads the session record (when the client brings a pid), the shard
 * positions (for a new record), the cache mark and the user's rooms. On
 * Redis Cluster the replies come from different nodes in any order:
 * subs_pending counts the reads (and then the subscriptions) still out, and
 * started() runs after the last. */
void gc__start_session(gc_worker *cw, gc_sock *cs)
{
    gc__set_phase(cw, cs, GC_STARTING);
    cs->have_record = 0;
    cs->record_gone = 0;
    pr_free(cs->rec); /* from an attempt Redis failed */
    pr_free(cs->fresh);
    cs->rec = cs->fresh = NULL;
    const char *user = cs->user->e.key;
    int rc = 0;
    cs->subs_pending = 1; /* held until every read is sent */
    if (cs->pid) {
        chat_key key = chat_key_session(cs->pid);
        const char *argv[] = {"GET", key.s};
        gc_ref *r = gc__ref_new(cw, cs);
        if ((rc = gc__redis_cmd(cw, record_cb, r, 2, argv)) != 0)
            pr_free(r);
        else
            cs->subs_pending++;
    }
    if (rc == 0 && cw->cfg->recovery_window_s) {
        const char *argv[] = {"HGETALL", CHAT_KEY_POS};
        gc_ref *r = gc__ref_new(cw, cs);
        if ((rc = gc__redis_cmd(cw, positions_cb, r, 2, argv)) != 0)
            pr_free(r);
        else
            cs->subs_pending++;
    }
    if (rc == 0) {
        const char *argv[] = {"GET", CHAT_KEY_CACHE};
        gc_ref *r = gc__ref_new(cw, cs);
        if ((rc = gc__redis_cmd(cw, cache_cb, r, 2, argv)) != 0)
            pr_free(r);
        else
            cs->subs_pending++;
    }
    if (rc == 0) {
        chat_key key = chat_key_user_rooms(user);
        const char *argv[] = {"SMEMBERS", key.s};
        gc_ref *r = gc__ref_new(cw, cs);
        if ((rc = gc__redis_cmd(cw, rooms_cb, r, 2, argv)) != 0)
            pr_free(r);
        else
            cs->subs_pending++;
    }
    if (rc != 0)
        start_failed(cw, cs, "redis down");
    else
        subs_step(cw, cs); /* the hold */
}

void gc__retry_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gc_worker *cw = arg;
    if (!cm_redis_ready(cw->redis)) {
        retry_arm(cw, 1000);
        return;
    }
    for (gc_sock *cs = cw->socks; cs; cs = cs->next)
        if (cs->phase == GC_WAITING)
            gc__start_session(cw, cs); /* may fail again: then it re-arms */
    gw_worker_schedule_flush(cw->w);
}

void gc__wait_timeout(gw_th *th, gw_th_node *n)
{
    gc_sock *cs = GW_CONTAINER_OF(n, gc_sock, wait);
    gc_worker *cw = GW_CONTAINER_OF(th, gc_worker, wait_th);
    if (cs->phase != GC_CATCHUP)
        return;
    CM_WARN_RATELIMITED("event=replay_timeout worker=%d sid=%s kind=%s", cw->index, cs->sid,
                        cs->recovering ? "replay" : "sync");
    if (cs->recovering)
        gc__go_fresh(cw, cs, 1);
    else
        gc__set_phase(cw, cs, GC_LIVE);
}

/* A live message for a socket that is not live yet. */
void gc__hold(gc_worker *cw, gc_sock *cs, gw_blob *b, const char *room, int64_t seq,
                 int own)
{
    if (cs->nheld >= cw->cfg->replay_max) {
        /* more than a replay may bring: give up catching up */
        CM_WARN_RATELIMITED("event=held_overflow worker=%d sid=%s", cw->index, cs->sid);
        if (cs->recovering || !cs->accepted)
            gc__go_fresh(cw, cs, 0);
        else
            gc__set_phase(cw, cs, GC_LIVE);
        gw_socket_send_blob(cs->sock, b);
        return;
    }
    size_t rl = strlen(room);
    gc_held *h = pr_malloc(sizeof *h + rl + 1);
    h->next = NULL;
    h->blob = gw_blob_ref(b);
    h->seq = seq;
    h->own = (uint8_t)own;
    memcpy(h->room, room, rl + 1);
    *cs->held_tail = h;
    cs->held_tail = &h->next;
    cs->nheld++;
}

/* A reconnecting socket.io-client merges {pid, offset} into its auth: the
 * session it wants back and the offset of the last event it got. A pid
 * without an offset (no message came) recovers from the record alone. */
void gc__read_recovery(gc_worker *cw, gc_sock *cs, const json_t *auth)
{
    const char *pid = json_string_value(json_object_get(auth, "pid"));
    if (!cw->cfg->recovery_window_s || !pid || strlen(pid) > PID_MAX ||
        !chat_id_valid(pid, strlen(pid)))
        return;
    const json_t *off = json_object_get(auth, "offset");
    if (off && !json_is_null(off)) {
        cs->offset = pr_calloc(cw->nshards, sizeof *cs->offset);
        if (!json_is_string(off) ||
            chat_vec_decode(pr_view_make(json_string_value(off), json_string_length(off)),
                            cs->offset, cw->nshards) != 0) {
            pr_free(cs->offset); /* not ours (or another shard count): a fresh session */
            cs->offset = NULL;
            return;
        }
    }
    cs->pid = pr_strndup(pid, strlen(pid));
}

/* Every third of the window: the records of connected sessions stay. */
void gc__renew_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gc_worker *cw = arg;
    if (!cm_redis_ready(cw->redis))
        return;
    for (gc_sock *cs = cw->socks; cs; cs = cs->next)
        if (cs->accepted && cs->pid)
            gc__pexpire_record(cw, cs);
}

