/*
 * app_chat.c - the chat application (--app chat): identity, rooms, messages,
 * typing, presence, shared between gateways through Redis; with --storage on
 * (the default) messages are stored by chat-storage before anyone sees them
 * (docs/storage.md is the contract).
 *
 * Per worker: a map of rooms with local members (each subscribed on Redis
 * while it has one), a map of users with local sockets (each registered as
 * online in Redis, and subscribed to user:{USER} with storage, while it has
 * one), and the worker's Redis connections. A room event is one PUBLISH of an
 * envelope holding the Socket.IO packet text; every worker subscribed to the
 * room frames it once and queues the same bytes on each local member
 * (gw_blob).
 *
 * Emit semantics (all used below):
 *   to the sender only          emit_to_sender()   chatError
 *   to a room, sender included  publish_room() / M1 from storage   messageReceived
 *   to a room except the sender publish_room(except user) showTyping, presence
 *   to every socket of a user   U1 from storage    messageStatus, roomAdded, roomRemoved
 *   to every socket             deliver_all()      announcement (chat-gateway announce)
 *
 * With storage, sendMessage is an XADD to the room's ingest shard; the ack
 * comes back from storage (A1 on this worker's channel gw:{NODE.W}) after
 * COMMIT, and the message itself as M1 on room:{ROOM}. Each messageReceived
 * relayed carries this worker's shard position vector as its last argument:
 * the client's connection-state-recovery offset. Delivered/seen receipts are
 * coalesced per (room, user) and written to the ingest shards every
 * --receipt-interval.
 *
 * A storage socket starts in phases: its CONNECT is pending while its rooms
 * are read and subscribed (and, when it recovers a session, until storage
 * replayed what it missed); then storage's sync (or replay) is written before
 * any live message, which is held until then (cs->held).
 *
 * Redis keys carry hash tags so each command touches one slot:
 *   {r:ROOM}:members   set of the room's user ids
 *   {u:USER}:rooms     set of the user's room ids
 *   {pN}:on:USER       zset: member "NODE/WORKER", score = expiry (ms)
 *   {pN}:exp           zset: member "USER NODE/WORKER", score = expiry (ms)
 *   {i:S}:in           ingest stream of shard S (storage)
 *   {st}:rpc, {st}:pos sync/replay requests, published shard positions
 *   {st}:cache         storage's mark: the membership cache is whole
 *   {c:PID}:sess       a recoverable session: "USER\nVECTOR"
 * Channels: room:{ROOM} per room, user:{USER} per user, gw:{NODE.W} per
 * worker, chat:all for announcements.
 */
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat.h"
#include "gw.h"
#include "jwt.h"
#include "redis.h"

#define PRESENCE_SHARDS 16
#define ALL_CHANNEL "chat:all"
#define ALL_ROOM "all"
#define PID_LEN 22       /* 132 random bits, base64url */
#define PID_MAX 64       /* longest pid accepted from a client */
#define REQ_ID_MAX 48    /* "SID.GEN" */
#define RECEIPT_BUF_MAX (1u << 20) /* lines per XADD field, then another XADD */

typedef struct chat_member chat_member;
typedef struct chat_sock chat_sock;

/* An entry of a string-keyed map (rooms, users, receipts). */
typedef struct sentry {
    struct sentry *next;
    size_t len;
    char *key; /* NUL-terminated, owned */
} sentry;

typedef struct {
    sentry **b;
    size_t nb, n;
} smap;

typedef struct {
    sentry e;
    chat_member *members; /* local sockets in the room */
    unsigned nmembers;
} chat_room;

typedef struct {
    sentry e;
    unsigned nsockets; /* local sockets of this user on this worker */
    chat_sock *socks;  /* via unext */
    gw_rl *rl;         /* the user's rate-limit bucket, shared by the workers */
} chat_user;

/* A stored message held for a socket that is catching up. */
typedef struct held_msg {
    struct held_msg *next;
    gw_blob *blob; /* the packet as relayed live, offset included */
    int64_t seq;
    uint8_t own;   /* sent by the socket's user: no receipt */
    char room[];
} held_msg;

/* A delivery the client has not proved it read yet (long-polling): its
 * receipts wait for the transport's on_consumed. */
typedef struct unread_msg {
    struct unread_msg *next;
    uint64_t mark; /* gw_socket_unread_mark after it was queued */
    int64_t seq;
    uint8_t open; /* the room was open: seen once read */
    char room[];
} unread_msg;

/* Phases of a storage socket (docs/storage.md, Recovery). */
enum {
    CS_LIVE = 0,  /* messages are written as they come */
    CS_STARTING,  /* reading the session record, positions and rooms; subscribing */
    CS_CATCHUP,   /* waiting for storage's sync or replay: live messages held */
    CS_WAITING,   /* Redis failed the start: it starts again once Redis is back */
};

struct chat_sock {
    gw_socket *sock;
    chat_user *user;    /* NULL until known (insecure-dev before its first event) */
    chat_member *rooms; /* via snext */
    struct chat_sock *prev, *next; /* every chat socket of the worker */
    struct chat_sock *unext;       /* the user's sockets */
    double tokens;      /* rate-limit bucket while the socket has no user */
    uint64_t refill_ms;
    char *first_name;   /* from the token (jwt); NULL under insecure-dev */
    gw_th_node exp_node; /* the token's exp (jwt): the socket ends then */
    char sid[GW_SID_LEN + 1]; /* the session: how asynchronous work finds us */
    /* storage */
    uint8_t phase;      /* CS_* */
    uint8_t accepted;   /* the CONNECT reply went out */
    uint8_t recovering; /* the CONNECT waits for a replay */
    uint8_t have_record; /* rec holds a valid session record of this user */
    uint8_t record_gone; /* the client brought a pid whose record is not there */
    struct join_ctx *acks_due; /* join acks held until the catch-up is over (go_live) */
    uint8_t resync;     /* a room's subscription was confirmed while not live: the
                         * sync in flight may predate it, so sync again once live */
    uint32_t gen;       /* callbacks of an older generation are stale */
    unsigned subs_pending;
    char *pid;          /* recovery: the session's pid; NULL when none */
    uint64_t *offset;   /* the client's offset (recovery), or NULL */
    uint64_t *rec;      /* the session record's vector (recovery) */
    uint64_t *fresh;    /* {st}:pos when the session started */
    held_msg *held, **held_tail;
    unsigned nheld;
    gw_tq_node wait;    /* replay timeout */
    unread_msg *unread, *unread_last; /* receipts waiting for on_consumed */
};

struct chat_member {
    chat_room *room;
    chat_sock *cs;
    chat_member *rprev, *rnext; /* in room->members */
    chat_member *snext;         /* in cs->rooms */
    uint8_t open;               /* opened (joinChat/joinRoom): deliveries are seen */
    uint8_t open_due;           /* opened while a sync was in flight: receipt at go_live */
    int64_t last_seq;           /* highest seq written to this socket: never twice */
};

/* Receipts waiting for the next flush, per (room, user). */
typedef struct {
    sentry e;       /* key "ROOM\tUSER" */
    size_t room_len;
    int64_t delivered; /* 0: none */
    int64_t seen;      /* 0: none; -1: everything so far */
} chat_receipt;

/* A socket found again by asynchronous work. */
typedef struct sock_ref {
    struct chat_worker *cw;
    uint32_t gen;
    char sid[GW_SID_LEN + 1];
} sock_ref;

typedef struct chat_worker {
    gw_worker *w;
    const gw_config *cfg;
    int insecure;
    int storage;
    gw_redis *redis;
    smap rooms, users, receipts;
    chat_sock *socks;
    struct event *presence_timer;
    gw_th exp_th;           /* sockets by their token's exp (jwt) */
    unsigned char room_key[32];
    char member[96];        /* "NODE/WORKER": this worker in presence sets */
    uint64_t msg_counter;
    char msg_prefix[24];
    /* storage */
    unsigned nshards;
    uint64_t *pos;          /* last shard position received, per shard */
    char reply_channel[96]; /* "gw:{NODE.W}": acks and replay replies */
    uint32_t gen;
    struct event *receipt_timer; /* armed while receipts wait */
    pr_buf *rbufs;          /* flush scratch: d and v lines per shard */
    struct event *renew_timer;   /* session records */
    gw_tq wait_tq;          /* sockets waiting for a sync or replay */
    struct event *drop_ev;  /* drops every session: the subscription link was lost */
    struct event *retry_timer; /* starts CS_WAITING sockets again */
    smap joins;             /* joinChat acks waiting for storage's answer (join_ctx) */
    gw_tq join_tq;          /* ... until --join-timeout */
    uint8_t cache_seen;     /* {st}:cache was there once: now its absence means a loss */
    uint64_t cache_built_ms; /* when storage last rebuilt the cache (wall clock), 0: unknown */
} chat_worker;

/* ---- string maps ---- */

static size_t str_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return (size_t)h;
}

static void smap_init(smap *m)
{
    m->nb = 256;
    m->n = 0;
    m->b = pr_calloc(m->nb, sizeof *m->b);
}

static sentry **smap_slot(smap *m, const char *key, size_t len)
{
    sentry **pp = &m->b[str_hash(key, len) & (m->nb - 1)];
    while (*pp && !((*pp)->len == len && !memcmp((*pp)->key, key, len)))
        pp = &(*pp)->next;
    return pp;
}

static sentry *smap_get(smap *m, const char *key, size_t len)
{
    return *smap_slot(m, key, len);
}

static void smap_put(smap *m, sentry *e, const char *key, size_t len)
{
    e->key = pr_strndup(key, len);
    e->len = len;
    e->next = NULL;
    *smap_slot(m, key, len) = e;
    if (++m->n > m->nb) {
        size_t nb = m->nb * 2;
        sentry **b = pr_calloc(nb, sizeof *b);
        for (size_t i = 0; i < m->nb; i++)
            for (sentry *x = m->b[i], *next; x; x = next) {
                next = x->next;
                size_t k = str_hash(x->key, x->len) & (nb - 1);
                x->next = b[k];
                b[k] = x;
            }
        pr_free(m->b);
        m->b = b;
        m->nb = nb;
    }
}

static void smap_del(smap *m, sentry *e)
{
    sentry **pp = smap_slot(m, e->key, e->len);
    if (*pp == e) {
        *pp = e->next;
        m->n--;
    }
    pr_free(e->key);
}

/* ---- small helpers ---- */

static chat_worker *CW(gw_worker *w)
{
    return w->app_worker;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void iso_time(char out[48], uint64_t ms)
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(out, 48, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
}

static void room_channel(char *out, size_t n, const char *room)
{
    snprintf(out, n, "room:{%s}", room);
}

static void user_channel(char *out, size_t n, const char *user)
{
    snprintf(out, n, "user:{%s}", user);
}

static unsigned presence_shard(const char *uid)
{
    return (unsigned)(str_hash(uid, strlen(uid)) % PRESENCE_SHARDS);
}

static int view_is(pr_view v, const char *s, size_t len)
{
    return v.len == len && !memcmp(v.ptr, s, len);
}

/* ---- Redis helpers ---- */

static int redis_cmd(chat_worker *cw, gw_redis_reply_cb cb, void *arg, int argc,
                     const char **argv)
{
    size_t lens[16];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    return gw_redis_command(cw->redis, cb, arg, argc, argv, lens);
}

/* A command built field by field (XADD with optional fields). */
typedef struct {
    const char *v[40];
    size_t l[40];
    int n;
} cmdv;

static void cmd_add(cmdv *c, const char *p, size_t n)
{
    c->v[c->n] = p;
    c->l[c->n++] = n;
}

static void cmd_adds(cmdv *c, const char *s)
{
    cmd_add(c, s, strlen(s));
}

static int cmd_send(chat_worker *cw, cmdv *c, gw_redis_reply_cb cb, void *arg)
{
    return gw_redis_command(cw->redis, cb, arg, c->n, c->v, c->l);
}

/* PUBLISH an envelope; cb (may be NULL) gets the reply. */
static int publish_env(chat_worker *cw, const char *room, const char *except_user,
                       pr_view packet, gw_redis_reply_cb cb, void *arg)
{
    pr_buf env;
    pr_buf_init(&env, packet.len + 3 * CHAT_ID_MAX + 16);
    chat_env h = {pr_view_make(room, strlen(room)),
                  pr_view_make("", 0),
                  pr_view_make(except_user ? except_user : "", except_user ? strlen(except_user) : 0)};
    int rc = chat_env_encode(&env, &h, packet);
    if (rc == 0) {
        char channel[CHAT_ID_MAX + 16];
        if (!strcmp(room, ALL_ROOM))
            snprintf(channel, sizeof channel, "%s", ALL_CHANNEL);
        else
            room_channel(channel, sizeof channel, room);
        const char *argv[] = {"PUBLISH", channel, env.ptr};
        size_t lens[] = {7, strlen(channel), env.len};
        rc = gw_redis_command(cw->redis, cb, arg, 3, argv, lens);
    }
    GW_STAT_ADD(cw->w, published, rc == 0);
    GW_STAT_ADD(cw->w, publish_failures, rc != 0);
    pr_buf_dispose(&env);
    return rc;
}

/* Encodes 2["event", payload] once into buf. */
static int encode_event(pr_buf *buf, const char *event, json_t *payload)
{
    json_t *data = json_pack("[sO]", event, payload);
    int rc = sio_encode(buf, SIO_EVENT, "/", -1, 0, data);
    json_decref(data);
    return rc;
}

/* ---- packets with a recovery offset ---- */

int gw__chat_offset_packet(pr_buf *out, pr_view packet, const uint64_t *vec, unsigned n)
{
    /* an event's arguments are a JSON array: the offset goes before its ']' */
    if (packet.len < 3 || packet.ptr[0] != '2' || packet.ptr[packet.len - 1] != ']')
        return PR_EINVAL;
    size_t mark = out->len;
    int rc = pr_buf_append(out, packet.ptr, packet.len - 1);
    if (rc == 0)
        rc = pr_buf_append(out, ",\"", 2);
    if (rc == 0)
        rc = chat_vec_encode(out, vec, n);
    if (rc == 0)
        rc = pr_buf_append(out, "\"]", 2);
    if (rc != 0)
        out->len = mark;
    return rc;
}

/* Frames the packet once; the same blob goes to every local recipient. */
static gw_blob *packet_blob(pr_view packet)
{
    gw_blob *b = gw__blob_ws_frame(WSLAY_TEXT_FRAME, packet.len + 1);
    b->data[b->hdr] = '4'; /* Engine.IO message */
    memcpy(b->data + b->hdr + 1, packet.ptr, packet.len);
    return b;
}

/* The packet with vec appended as its last argument; unchanged when it does
 * not look like an event (storage's packets always do). */
static gw_blob *offset_blob(chat_worker *cw, pr_view packet, const uint64_t *vec)
{
    pr_buf out;
    pr_buf_init(&out, packet.len + (size_t)cw->nshards * 17 + 8);
    gw_blob *b;
    if (vec && gw__chat_offset_packet(&out, packet, vec, cw->nshards) == 0) {
        b = packet_blob(pr_buf_view(&out));
    } else {
        GW_WARN_RATELIMITED("event=no_offset worker=%d len=%zu", cw->w->index, packet.len);
        b = packet_blob(packet);
    }
    pr_buf_dispose(&out);
    return b;
}

/* ---- receipts ----
 * Delivered and seen watermarks only move forward, so per (room, user) only
 * the highest of each kind since the last flush matters. */

void gw__chat_receipt_merge(int64_t *have, int64_t seq)
{
    /* -1 ("everything so far", a room was opened) covers any number */
    if (*have == -1 || seq == -1)
        *have = -1;
    else if (seq > *have)
        *have = seq;
}

static void receipt_flush(evutil_socket_t fd, short what, void *arg);

static void receipt_arm(chat_worker *cw)
{
    if (evtimer_pending(cw->receipt_timer, NULL))
        return;
    unsigned ms = cw->cfg->receipt_interval_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(cw->receipt_timer, &tv);
}

/* kind 'd' delivered, 'v' seen. */
static void receipt_add(chat_worker *cw, const char *room, const chat_user *u, char kind,
                        int64_t seq)
{
    if (!cw->storage || !u)
        return;
    char key[2 * CHAT_ID_MAX + 2];
    size_t rl = strlen(room);
    int n = snprintf(key, sizeof key, "%s\t%s", room, u->e.key);
    if (n < 0 || (size_t)n >= sizeof key)
        return;
    chat_receipt *r = (chat_receipt *)smap_get(&cw->receipts, key, (size_t)n);
    if (!r) {
        r = pr_calloc(1, sizeof *r);
        r->room_len = rl;
        smap_put(&cw->receipts, &r->e, key, (size_t)n);
    }
    gw__chat_receipt_merge(kind == 'd' ? &r->delivered : &r->seen, seq);
    receipt_arm(cw);
}

static void receipt_xadd_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    chat_worker *cw = arg;
    if (!rep || rep->type == REDIS_REPLY_ERROR)
        GW_WARN_RATELIMITED("event=receipts_lost worker=%d err=\"%s\"", cw->w->index,
                            rep ? rep->str : "link lost");
}

/* One XADD {i:S}:in * k R d LINES v LINES; the buffers are emptied. */
static void receipt_send(chat_worker *cw, unsigned shard)
{
    pr_buf *d = &cw->rbufs[2 * shard], *v = &cw->rbufs[2 * shard + 1];
    if (d->len == 0 && v->len == 0)
        return;
    char key[32];
    snprintf(key, sizeof key, "{i:%u}:in", shard);
    cmdv c = {.n = 0};
    cmd_adds(&c, "XADD");
    cmd_adds(&c, key);
    cmd_adds(&c, "*");
    cmd_adds(&c, "k");
    cmd_adds(&c, "R");
    cmd_adds(&c, "d");
    cmd_add(&c, d->len ? d->ptr : "", d->len);
    cmd_adds(&c, "v");
    cmd_add(&c, v->len ? v->ptr : "", v->len);
    if (cmd_send(cw, &c, receipt_xadd_cb, cw) != 0)
        GW_WARN_RATELIMITED("event=receipts_lost worker=%d err=\"redis down\"", cw->w->index);
    pr_buf_reset(d);
    pr_buf_reset(v);
}

static void receipt_line(chat_worker *cw, unsigned shard, int which, pr_view room, pr_view user,
                         int64_t seq)
{
    pr_buf *b = &cw->rbufs[2 * shard + which];
    if (chat_receipt_add(b, room, user, seq) == PR_ETOOBIG) {
        receipt_send(cw, shard);
        chat_receipt_add(b, room, user, seq);
    }
}

static void receipt_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    chat_worker *cw = arg;
    if (!gw_redis_ready(cw->redis)) {
        receipt_arm(cw); /* kept until Redis is back: watermarks only move forward */
        return;
    }
    for (size_t i = 0; i < cw->receipts.nb; i++) {
        sentry *e = cw->receipts.b[i];
        cw->receipts.b[i] = NULL;
        while (e) {
            sentry *next = e->next;
            chat_receipt *r = (chat_receipt *)e;
            pr_view room = pr_view_make(e->key, r->room_len);
            pr_view user = pr_view_make(e->key + r->room_len + 1, e->len - r->room_len - 1);
            unsigned shard = chat_room_shard(room.ptr, room.len, cw->nshards);
            if (r->delivered)
                receipt_line(cw, shard, 0, room, user, r->delivered);
            if (r->seen)
                receipt_line(cw, shard, 1, room, user, r->seen);
            pr_free(e->key);
            pr_free(r);
            e = next;
        }
    }
    cw->receipts.n = 0;
    for (unsigned s = 0; s < cw->nshards; s++)
        receipt_send(cw, s);
}

/* ---- presence ---- */

/* Returns how many live entries the user had before ours was added or
 * renewed: 0 means the user has just come online. */
static const char presence_online_lua[] =
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])\n"
    "local before = redis.call('ZCARD', KEYS[1])\n"
    "redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])\n"
    "redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4] .. ' ' .. ARGV[1])\n"
    "return before\n";

static const char presence_offline_lua[] =
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "redis.call('ZREM', KEYS[2], ARGV[3] .. ' ' .. ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])\n"
    "return redis.call('ZCARD', KEYS[1])\n";

/* Entries past their expiry belong to gateways that died: drop them and
 * return the users left with no live entry. Keys built here share KEYS[1]'s
 * hash tag, so the script stays within one slot. */
static const char presence_sweep_lua[] =
    "local gone = {}\n"
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)\n"
    "for _, e in ipairs(due) do\n"
    "  redis.call('ZREM', KEYS[1], e)\n"
    "  local sp = string.find(e, ' ', 1, true)\n"
    "  if sp then\n"
    "    local uid = string.sub(e, 1, sp - 1)\n"
    "    local on = ARGV[2] .. uid\n"
    "    redis.call('ZREM', on, string.sub(e, sp + 1))\n"
    "    redis.call('ZREMRANGEBYSCORE', on, '-inf', ARGV[1])\n"
    "    if redis.call('ZCARD', on) == 0 then table.insert(gone, uid) end\n"
    "  end\n"
    "end\n"
    "return gone\n";

/* The scripts run by hash (EVALSHA): the body, a few hundred bytes, is not
 * sent with every renewal. Each command connection loads them when it
 * connects; a NOSCRIPT reply (the cache was flushed) loads them again, and a
 * presence update that got one is sent once more with EVAL. */
enum { LUA_ONLINE, LUA_OFFLINE, LUA_SWEEP, LUA_COUNT };
static struct {
    const char *body;
    char sha[41];
} lua[LUA_COUNT] = {{presence_online_lua, ""}, {presence_offline_lua, ""}, {presence_sweep_lua, ""}};
static pthread_once_t lua_once = PTHREAD_ONCE_INIT;

static void lua_hash(void)
{
    for (int i = 0; i < LUA_COUNT; i++) {
        unsigned char d[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)lua[i].body, strlen(lua[i].body), d);
        for (int j = 0; j < SHA_DIGEST_LENGTH; j++)
            snprintf(lua[i].sha + 2 * j, 3, "%02x", d[j]);
    }
}

static void lua_loaded_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    (void)arg;
    if (rep && rep->type == REDIS_REPLY_ERROR)
        GW_WARN_RATELIMITED("event=script_load_error err=\"%s\"", rep->str);
}

static void lua_load(chat_worker *cw)
{
    for (int i = 0; i < LUA_COUNT; i++) {
        const char *argv[] = {"SCRIPT", "LOAD", lua[i].body};
        redis_cmd(cw, lua_loaded_cb, NULL, 3, argv);
    }
}

static int is_noscript(const redisReply *rep)
{
    return rep && rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "NOSCRIPT", 8);
}

static void presence_keys(const char *uid, char *on, size_t on_n, char *exp, size_t exp_n)
{
    unsigned s = presence_shard(uid);
    snprintf(on, on_n, "{p%u}:on:%s", s, uid);
    snprintf(exp, exp_n, "{p%u}:exp", s);
}

typedef struct {
    chat_worker *cw;
    int online;
    int eval; /* sent with the script's body */
    char uid[]; /* exact size: a connection burst queues one per user */
} presence_ctx;

static presence_ctx *presence_ctx_new(chat_worker *cw, const char *uid, int online)
{
    size_t n = strlen(uid) + 1;
    presence_ctx *x = pr_malloc(sizeof *x + n);
    x->cw = cw;
    x->online = online;
    x->eval = 0;
    memcpy(x->uid, uid, n);
    return x;
}

static void presence_send(chat_worker *cw, const char *uid, int online, int eval);

static void presence_rooms_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    presence_ctx *x = arg;
    if (rep && rep->type == REDIS_REPLY_ARRAY) {
        json_t *payload = json_pack("{sssb}", "userId", x->uid, "online", x->online);
        pr_buf pkt;
        pr_buf_init(&pkt, 4096);
        if (encode_event(&pkt, "presence", payload) == 0)
            for (size_t i = 0; i < rep->elements; i++)
                if (rep->element[i]->type == REDIS_REPLY_STRING)
                    publish_env(x->cw, rep->element[i]->str, x->uid, pr_buf_view(&pkt), NULL,
                                NULL);
        pr_buf_dispose(&pkt);
        json_decref(payload);
    }
    pr_free(x);
}

/* Tells the user's rooms that the user came online or went offline. */
static void publish_presence(chat_worker *cw, const char *uid, int online)
{
    presence_ctx *x = presence_ctx_new(cw, uid, online);
    char key[CHAT_ID_MAX + 16];
    snprintf(key, sizeof key, "{u:%s}:rooms", uid);
    const char *argv[] = {"SMEMBERS", key};
    if (redis_cmd(cw, presence_rooms_cb, x, 2, argv) != 0)
        pr_free(x);
}

static void presence_changed_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    presence_ctx *x = arg;
    if (is_noscript(rep) && !x->eval) {
        lua_load(x->cw);
        presence_send(x->cw, x->uid, x->online, 1);
        pr_free(x);
        return;
    }
    /* online: nobody else had the user (0 before); offline: nobody left */
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0)
        publish_presence(x->cw, x->uid, x->online);
    else if (rep && rep->type == REDIS_REPLY_ERROR)
        GW_WARN_RATELIMITED("event=presence_script_error err=\"%s\"", rep->str);
    pr_free(x);
}

static void presence_send(chat_worker *cw, const char *uid, int online, int eval)
{
    char on[CHAT_ID_MAX + 32], exp[32], expiry[24], now[24], numkeys[] = "2";
    presence_keys(uid, on, sizeof on, exp, sizeof exp);
    uint64_t t = wall_ms();
    snprintf(now, sizeof now, "%llu", (unsigned long long)t);
    snprintf(expiry, sizeof expiry, "%llu", (unsigned long long)(t + cw->cfg->presence_ttl_ms));
    presence_ctx *x = presence_ctx_new(cw, uid, online);
    x->eval = eval;
    int rc, i = online ? LUA_ONLINE : LUA_OFFLINE;
    const char *how = eval ? "EVAL" : "EVALSHA", *script = eval ? lua[i].body : lua[i].sha;
    if (online) {
        const char *argv[] = {how, script, numkeys, on, exp, cw->member, expiry, now, uid};
        rc = redis_cmd(cw, presence_changed_cb, x, 9, argv);
    } else {
        const char *argv[] = {how, script, numkeys, on, exp, cw->member, now, uid};
        rc = redis_cmd(cw, presence_changed_cb, x, 8, argv);
    }
    if (rc != 0)
        pr_free(x); /* Redis is down: the refresh after reconnecting catches up */
}

static void presence_update(chat_worker *cw, const char *uid, int online)
{
    presence_send(cw, uid, online, 0);
}

static void sweep_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    chat_worker *cw = arg;
    if (is_noscript(rep))
        lua_load(cw); /* the next sweep finds it */
    if (!rep || rep->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < rep->elements; i++)
        if (rep->element[i]->type == REDIS_REPLY_STRING)
            publish_presence(cw, rep->element[i]->str, 0);
}

/* Every third of the TTL: renew our entries (re-announcing users Redis lost)
 * and sweep the entries of gateways that died. */
static void presence_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    chat_worker *cw = arg;
    if (gw_redis_ready(cw->redis)) {
        for (size_t i = 0; i < cw->users.nb; i++)
            for (sentry *e = cw->users.b[i]; e; e = e->next)
                presence_update(cw, e->key, 1);
        char now[24], key[32], prefix[32];
        snprintf(now, sizeof now, "%llu", (unsigned long long)wall_ms());
        for (unsigned s = 0; s < PRESENCE_SHARDS; s++) {
            snprintf(key, sizeof key, "{p%u}:exp", s);
            snprintf(prefix, sizeof prefix, "{p%u}:on:", s);
            const char *argv[] = {"EVALSHA", lua[LUA_SWEEP].sha, "1", key, now, prefix};
            redis_cmd(cw, sweep_cb, cw, 6, argv);
        }
    }
    gw__worker_schedule_flush(cw->w);
}

static void cache_seen_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    chat_worker *cw = arg;
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1)
        cw->cache_seen = 1;
}

static void on_redis_ready(gw_redis *r, void *arg)
{
    (void)r;
    chat_worker *cw = arg;
    lua_load(cw); /* before the first EVALSHA on this connection */
    if (cw->storage && !cw->cache_seen) {
        const char *argv[] = {"EXISTS", CHAT_CACHE_MARK_KEY};
        redis_cmd(cw, cache_seen_cb, cw, 2, argv);
    }
    presence_tick(-1, 0, cw); /* re-register our users at once */
    if (cw->storage && evtimer_pending(cw->retry_timer, NULL)) {
        struct timeval now = {0, 0}; /* sockets waiting to start */
        evtimer_add(cw->retry_timer, &now);
    }
}

/* ---- users and rooms ---- */

static void user_attach(chat_worker *cw, chat_sock *cs, const char *uid)
{
    size_t len = strlen(uid);
    chat_user *u = (chat_user *)smap_get(&cw->users, uid, len);
    if (!u) {
        u = pr_calloc(1, sizeof *u);
        smap_put(&cw->users, &u->e, uid, len);
        /* u->rl: taken with the user's first event (take_token), so an idle
         * user costs no bucket */
        if (cw->storage) { /* messageStatus, membership changes */
            char channel[CHAT_ID_MAX + 16];
            user_channel(channel, sizeof channel, uid);
            gw_redis_subscribe(cw->redis, pr_view_make(channel, strlen(channel)));
        }
    }
    cs->user = u;
    cs->unext = u->socks;
    u->socks = cs;
    if (u->nsockets++ == 0)
        presence_update(cw, uid, 1);
}

static void user_detach(chat_worker *cw, chat_sock *cs)
{
    chat_user *u = cs->user;
    cs->user = NULL;
    if (!u)
        return;
    for (chat_sock **pp = &u->socks; *pp; pp = &(*pp)->unext)
        if (*pp == cs) {
            *pp = cs->unext;
            break;
        }
    if (--u->nsockets > 0)
        return;
    presence_update(cw, u->e.key, 0);
    if (cw->storage) {
        char channel[CHAT_ID_MAX + 16];
        user_channel(channel, sizeof channel, u->e.key);
        gw_redis_unsubscribe(cw->redis, pr_view_make(channel, strlen(channel)));
    }
    smap_del(&cw->users, &u->e);
    gw__rl_release(u->rl);
    pr_free(u);
}

static chat_member *find_membership(chat_sock *cs, const char *room)
{
    for (chat_member *m = cs->rooms; m; m = m->snext)
        if (!strcmp(m->room->e.key, room))
            return m;
    return NULL;
}

static chat_member *room_join(chat_worker *cw, chat_sock *cs, const char *room_id)
{
    chat_member *m = find_membership(cs, room_id);
    if (m)
        return m;
    size_t len = strlen(room_id);
    chat_room *room = (chat_room *)smap_get(&cw->rooms, room_id, len);
    if (!room) {
        room = pr_calloc(1, sizeof *room);
        smap_put(&cw->rooms, &room->e, room_id, len);
        char channel[CHAT_ID_MAX + 16];
        room_channel(channel, sizeof channel, room_id);
        gw_redis_subscribe(cw->redis, pr_view_make(channel, strlen(channel)));
    }
    m = pr_calloc(1, sizeof *m);
    m->room = room;
    m->cs = cs;
    m->rnext = room->members;
    if (room->members)
        room->members->rprev = m;
    room->members = m;
    room->nmembers++;
    m->snext = cs->rooms;
    cs->rooms = m;
    return m;
}

static void room_unlink(chat_worker *cw, chat_member *m)
{
    chat_room *room = m->room;
    if (m->rprev)
        m->rprev->rnext = m->rnext;
    else
        room->members = m->rnext;
    if (m->rnext)
        m->rnext->rprev = m->rprev;
    if (--room->nmembers == 0) {
        char channel[CHAT_ID_MAX + 16];
        room_channel(channel, sizeof channel, room->e.key);
        gw_redis_unsubscribe(cw->redis, pr_view_make(channel, strlen(channel)));
        smap_del(&cw->rooms, &room->e);
        pr_free(room);
    }
    pr_free(m);
}

static void room_leave(chat_worker *cw, chat_sock *cs, const char *room_id)
{
    for (chat_member **pp = &cs->rooms; *pp; pp = &(*pp)->snext)
        if (!strcmp((*pp)->room->e.key, room_id)) {
            chat_member *m = *pp;
            *pp = m->snext;
            room_unlink(cw, m);
            return;
        }
}

/*
 * Opening a room: what the socket receives there from now on is seen, and
 * so is everything sent before the open (-1, "opened it later"). "Before"
 * is the room's ingest stream order, so this receipt is XADDed at once
 * rather than coalesced: storage applies it ahead of any message that
 * follows it in the stream, and a message sent after the open becomes seen
 * only once it is written to an open socket. (Coalesced, it reached storage
 * up to --receipt-interval later and could mark seen a message sent after
 * the open that the client never got.) Redis down: coalesced, as before.
 */
static void open_receipt(chat_worker *cw, chat_sock *cs, chat_member *m)
{
    const char *room = m->room->e.key;
    size_t rl = strlen(room);
    pr_buf line;
    pr_buf_init(&line, 2 * CHAT_ID_MAX + 8);
    int rc = chat_receipt_add(&line, pr_view_make(room, rl),
                              pr_view_make(cs->user->e.key, cs->user->e.len), -1);
    if (rc == 0 && gw_redis_ready(cw->redis)) {
        char key[32];
        snprintf(key, sizeof key, "{i:%u}:in", chat_room_shard(room, rl, cw->nshards));
        cmdv c = {.n = 0};
        cmd_adds(&c, "XADD");
        cmd_adds(&c, key);
        cmd_adds(&c, "*");
        cmd_adds(&c, "k");
        cmd_adds(&c, "R");
        cmd_adds(&c, "d");
        cmd_adds(&c, "");
        cmd_adds(&c, "v");
        cmd_add(&c, line.ptr, line.len);
        rc = cmd_send(cw, &c, receipt_xadd_cb, cw);
    } else {
        rc = -1;
    }
    pr_buf_dispose(&line);
    if (rc != 0)
        receipt_add(cw, room, cs->user, 'v', -1);
}

/* While the socket's sync (or replay) is in flight the open's receipt waits
 * for go_live(): storage answers a sync with what the user was not delivered
 * yet, and a "seen everything" processed first would take the room's
 * messages out of it, so the socket would never be written them. */
static void room_open(chat_worker *cw, chat_sock *cs, chat_member *m)
{
    m->open = 1;
    if (!cw->storage || !cs->user)
        return;
    if (cs->phase != CS_LIVE) {
        m->open_due = 1;
        return;
    }
    open_receipt(cw, cs, m);
}

typedef struct {
    chat_worker *cw;
    char room[CHAT_ID_MAX + 1];
    char user[CHAT_ID_MAX + 1];
} dm_ctx;

/* A direct room new to the user's cache: the user's sockets everywhere join
 * it (J1), so they receive its first message live. */
static void dm_added_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    dm_ctx *x = arg;
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1) {
        pr_buf env;
        pr_buf_init(&env, 2 * CHAT_ID_MAX + 8);
        char channel[CHAT_ID_MAX + 16];
        user_channel(channel, sizeof channel, x->user);
        if (chat_jenv_encode(&env, 'J', pr_view_make(x->room, strlen(x->room)),
                             pr_view_make(x->user, strlen(x->user))) == 0) {
            const char *argv[] = {"PUBLISH", channel, env.ptr};
            size_t lens[] = {7, strlen(channel), env.len};
            gw_redis_command(x->cw->redis, NULL, NULL, 3, argv, lens);
        }
        pr_buf_dispose(&env);
    }
    pr_free(x);
}

typedef struct join_ctx join_ctx;
static void join_storage_failed(chat_worker *cw, const char *key);
static int join_answered(chat_worker *cw, pr_view sid, int64_t ack_id, pr_view json);

/* The XADD of an "open" entry whose answer a joinChat waits for. */
typedef struct {
    chat_worker *cw;
    char key[]; /* the waiting join's key in cw->joins */
} open_ctx;

static void dm_open_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    open_ctx *o = arg;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        GW_WARN_RATELIMITED("event=dm_open_failed worker=%d", o->cw->w->index);
        join_storage_failed(o->cw, o->key); /* no answer will come */
    }
    pr_free(o);
}

/* Remembers in Redis who belongs to a direct room (for presence, getOnline
 * and joinRoom); the room id itself is the proof of membership. */
/* With storage: XADD {i:S}:in * k o r ROOM u A p B, so storage creates the
 * direct room (and its two members) before any message of the room that
 * follows in the same stream: a chat opened with joinChat and then written
 * to by roomId must find its room. Idempotent. With wait (a joinChat whose
 * client wants the ack), the entry carries the ack's address (g, s, a) and
 * storage answers it after COMMIT (A1); otherwise failures only log (the
 * first message with targetUserId creates the room too). */
static void open_dm_in_storage(chat_worker *cw, const char *room, const char *a, const char *b,
                               const join_ctx *wait);

static void record_dm_for(chat_worker *cw, const char *room, const char *a, const char *b,
                          const join_ctx *wait)
{
    if (cw->storage)
        open_dm_in_storage(cw, room, a, b, wait);
    char rk[CHAT_ID_MAX + 16];
    snprintf(rk, sizeof rk, "{r:%s}:members", room);
    const char *m[] = {"SADD", rk, a, b};
    redis_cmd(cw, NULL, NULL, 4, m);
    const char *users[2] = {a, b};
    for (int i = 0; i < 2 && (i == 0 || strcmp(a, b)); i++) {
        char uk[CHAT_ID_MAX + 16];
        snprintf(uk, sizeof uk, "{u:%s}:rooms", users[i]);
        const char *x[] = {"SADD", uk, room};
        dm_ctx *d = NULL;
        if (cw->storage) {
            d = pr_calloc(1, sizeof *d);
            d->cw = cw;
            snprintf(d->room, sizeof d->room, "%s", room);
            snprintf(d->user, sizeof d->user, "%s", users[i]);
        }
        if (redis_cmd(cw, d ? dm_added_cb : NULL, d, 3, x) != 0)
            pr_free(d);
    }
}

static void record_dm(chat_worker *cw, const char *room, const char *a, const char *b)
{
    record_dm_for(cw, room, a, b, NULL);
}

/* ---- replies ---- */

static void ack_json(gw_socket *sock, int64_t id, json_t *payload)
{
    json_t *args = json_pack("[O]", payload);
    gw_socket_ack(sock, id, args, NULL, 0);
    json_decref(args);
}

/* An error goes back as the ack when the client asked for one, else as a
 * chatError event to the sender only. */
static void reply_error(gw_socket *sock, const char *event, int64_t ack_id, const char *error)
{
    json_t *e = json_pack("{ss}", "error", error);
    if (ack_id >= 0) {
        ack_json(sock, ack_id, e);
    } else {
        json_object_set_new(e, "event", json_string(event));
        json_t *args = json_pack("[O]", e);
        gw_socket_emit(sock, "chatError", args, NULL, 0, NULL, NULL);
        json_decref(args);
    }
    json_decref(e);
}

static void reply_ok(gw_socket *sock, int64_t ack_id, json_t *payload)
{
    if (ack_id >= 0)
        ack_json(sock, ack_id, payload);
    json_decref(payload);
}

/* ---- finding sockets again ---- */

static sock_ref *ref_new(chat_worker *cw, const chat_sock *cs)
{
    sock_ref *r = pr_calloc(1, sizeof *r);
    r->cw = cw;
    r->gen = cs->gen;
    memcpy(r->sid, cs->sid, sizeof r->sid);
    return r;
}

static chat_sock *sock_by_sid(chat_worker *cw, const char *sid)
{
    gw_socket *sock = gw_socket_find(cw->w, sid, "/");
    return sock ? gw_socket_data(sock) : NULL;
}

/* The socket r was made for, if nothing made r stale since (a new phase or
 * request bumps cs->gen). Frees r. */
static chat_sock *ref_take(sock_ref *r)
{
    chat_sock *cs = sock_by_sid(r->cw, r->sid);
    if (cs && cs->gen != r->gen)
        cs = NULL;
    pr_free(r);
    return cs;
}

/* The socket r was made for, whatever its phase or generation since (the
 * session is the same: sids are never reused). Frees r. */
static chat_sock *ref_take_session(sock_ref *r)
{
    chat_sock *cs = sock_by_sid(r->cw, r->sid);
    pr_free(r);
    return cs;
}

static void start_failed(chat_worker *cw, chat_sock *cs, const char *why);

/* The subscription link was lost: what was published meanwhile never came,
 * yet the next offset would claim it. Dropping the transports (outside of
 * any Redis callback) makes each client reconnect and recover from its last
 * offset, which is still true. Sockets still connecting start again once
 * Redis is back. */
static void drop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    chat_worker *cw = arg;
    unsigned n = 0;
    for (chat_sock *cs = cw->socks, *next; cs; cs = next) {
        next = cs->next; /* one socket per session here: next survives */
        if (!cs->user)
            continue;
        if (cs->accepted) {
            gw_socket_drop_transport(cs->sock);
            n++;
        } else if (cs->phase == CS_STARTING || cs->phase == CS_CATCHUP) {
            start_failed(cw, cs, "subscription lost");
        }
    }
    if (n)
        GW_WARN("event=sessions_dropped worker=%d count=%u why=redis_subscription_lost",
                cw->w->index, n);
    gw__worker_schedule_flush(cw->w);
}

static void on_sub_lost(gw_redis *r, void *arg)
{
    (void)r;
    chat_worker *cw = arg;
    event_active(cw->drop_ev, EV_TIMEOUT, 0);
}

static void retry_arm(chat_worker *cw, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(cw->retry_timer, &tv);
}

/* Redis failed a socket's start: its CONNECT stays pending (a client only
 * waits; dropping it could strand a polling client in the middle of its
 * upgrade) until Redis is back, or until --connect-timeout. */
static void start_failed(chat_worker *cw, chat_sock *cs, const char *why)
{
    GW_WARN_RATELIMITED("event=session_start_failed worker=%d sid=%s why=%s", cw->w->index,
                        cs->sid, why);
    cs->phase = CS_WAITING;
    cs->gen = ++cw->gen;
    if (!evtimer_pending(cw->retry_timer, NULL))
        retry_arm(cw, 1000);
}

/* ---- writing what a socket missed ---- */

static void hold(chat_worker *cw, chat_sock *cs, gw_blob *b, const char *room, int64_t seq,
                 int own);
static void go_live(chat_worker *cw, chat_sock *cs);
static void finish_due_joins(chat_sock *cs);
static void free_due_joins(chat_sock *cs);
static int send_request(chat_worker *cw, chat_sock *cs, const char *kind, const uint64_t *vec);
static void when_room_subscribed(chat_worker *cw, const char *room, gw_redis_subscribed_cb done,
                                 void *arg);
static void joined_room_subscribed(gw_redis *r, int ok, void *arg);

/* Called right after message seq of m's room was queued on cs: delivered
 * (and seen when the room is open) once the client has read it, which on
 * WebSocket is now and on long-polling when it polls again. */
static void deliver_receipts(chat_worker *cw, chat_sock *cs, chat_member *m, int64_t seq)
{
    if (!cw->storage || !cs->user)
        return;
    uint64_t mark = gw_socket_unread_mark(cs->sock);
    if (mark == 0) {
        receipt_add(cw, m->room->e.key, cs->user, 'd', seq);
        if (m->open)
            receipt_add(cw, m->room->e.key, cs->user, 'v', seq);
        return;
    }
    /* bounded: what is unread sits in the session's polling queue or in its
     * last answer, both under the output limit */
    size_t rl = m->room->e.len;
    unread_msg *u = pr_malloc(sizeof *u + rl + 1);
    u->next = NULL;
    u->mark = mark;
    u->seq = seq;
    u->open = m->open;
    memcpy(u->room, m->room->e.key, rl + 1);
    if (cs->unread_last)
        cs->unread_last->next = u;
    else
        cs->unread = u;
    cs->unread_last = u;
}

static void chat_consumed(gw_socket *sock, uint64_t mark)
{
    chat_worker *cw = CW(gw_socket_worker(sock));
    chat_sock *cs = gw_socket_data(sock);
    if (!cs)
        return;
    while (cs->unread && cs->unread->mark <= mark) {
        unread_msg *u = cs->unread;
        cs->unread = u->next;
        receipt_add(cw, u->room, cs->user, 'd', u->seq);
        if (u->open)
            receipt_add(cw, u->room, cs->user, 'v', u->seq);
        pr_free(u);
    }
    if (!cs->unread)
        cs->unread_last = NULL;
}

/* A socket that goes with unread deliveries reports nothing for them: the
 * next connect's sync brings them again. */
static void free_unread(chat_sock *cs)
{
    while (cs->unread) {
        unread_msg *u = cs->unread;
        cs->unread = u->next;
        pr_free(u);
    }
    cs->unread_last = NULL;
}

static int item_cmp(const void *pa, const void *pb)
{
    const chat_replay_item *a = pa, *b = pb;
    if (a->shard != b->shard)
        return a->shard < b->shard ? -1 : 1;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/*
 * Writes the items of an R1 reply in (shard, position) order (a replay comes
 * so; a sync comes by room and seq, and a room's seq order is its position
 * order, so sorting keeps every room's order). Each item carries base raised
 * by what was written so far: once a client has read an item it has every
 * message of its rooms up to that vector, even if the rest never reaches it.
 * base: the replay's, the positions when a fresh session started (what
 * is above them came live or in this reply), or the worker's live vector
 * for a sync on a socket already live.
 */
static void write_items(chat_worker *cw, chat_sock *cs, pr_view it, const uint64_t *base)
{
    uint64_t *cur = pr_calloc(cw->nshards, sizeof *cur);
    if (base)
        memcpy(cur, base, cw->nshards * sizeof *cur);
    size_t n = 0, cap = 0;
    chat_replay_item *items = NULL, item;
    int rc;
    while ((rc = chat_renv_next(&it, &item)) == 1) {
        if (item.shard >= cw->nshards) {
            GW_WARN_RATELIMITED("event=bad_replay_item worker=%d shard=%u", cw->w->index,
                                item.shard);
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            items = pr_realloc(items, cap * sizeof *items);
        }
        items[n++] = item;
    }
    if (rc < 0)
        GW_WARN_RATELIMITED("event=bad_replay worker=%d sid=%s", cw->w->index, cs->sid);
    if (n > 1)
        qsort(items, n, sizeof *items, item_cmp);
    for (size_t i = 0; i < n; i++) {
        const chat_replay_item *x = &items[i];
        if ((uint64_t)x->pos > cur[x->shard])
            cur[x->shard] = (uint64_t)x->pos;
        char room[CHAT_ID_MAX + 1];
        memcpy(room, x->room.ptr, x->room.len);
        room[x->room.len] = '\0';
        gw_blob *b = offset_blob(cw, x->packet, cur);
        chat_member *m = find_membership(cs, room);
        if (!m) {
            /* storage knows the user is a member even if the cache did not;
             * what the room publishes before its subscription is confirmed
             * needs a sync too */
            m = room_join(cw, cs, room);
            when_room_subscribed(cw, room, joined_room_subscribed, ref_new(cw, cs));
        }
        if (x->seq <= m->last_seq) {
            gw__blob_unref(b);
            continue;
        }
        m->last_seq = x->seq;
        gw_socket_send_blob(cs->sock, b);
        gw__blob_unref(b);
        deliver_receipts(cw, cs, m, x->seq);
    }
    GW_STAT_ADD(cw->w, room_deliveries, n);
    pr_free(items);
    pr_free(cur);
}

static void free_vectors(chat_sock *cs)
{
    pr_free(cs->offset);
    pr_free(cs->rec);
    pr_free(cs->fresh);
    cs->offset = cs->rec = cs->fresh = NULL;
}

static void free_held(chat_sock *cs)
{
    while (cs->held) {
        held_msg *h = cs->held;
        cs->held = h->next;
        gw__blob_unref(h->blob);
        pr_free(h);
    }
    cs->held_tail = &cs->held;
    cs->nheld = 0;
}

/* From now on messages are written as they come; the held ones first,
 * except those the sync or replay already brought (by room seq). */
static void go_live(chat_worker *cw, chat_sock *cs)
{
    gw__tq_del(&cw->wait_tq, &cs->wait);
    cs->phase = CS_LIVE;
    cs->gen = ++cw->gen;
    cs->recovering = 0;
    held_msg *h = cs->held;
    cs->held = NULL;
    cs->held_tail = &cs->held;
    cs->nheld = 0;
    while (h) {
        held_msg *next = h->next;
        chat_member *m = find_membership(cs, h->room);
        if (m && h->seq > m->last_seq) { /* !m: removed from the room meanwhile */
            m->last_seq = h->seq;
            gw_socket_send_blob(cs->sock, h->blob);
            GW_STAT_ADD(cw->w, room_deliveries, 1);
            if (!h->own)
                deliver_receipts(cw, cs, m, h->seq);
        }
        gw__blob_unref(h->blob);
        pr_free(h);
        h = next;
    }
    free_vectors(cs);
    if (cs->resync) {
        /* a room joined during the catch-up: what it published before its
         * subscription was confirmed is in no reply yet */
        cs->resync = 0;
        if (send_request(cw, cs, "sync", NULL) == 0)
            return; /* rooms opened meanwhile wait for that sync too */
        GW_WARN_RATELIMITED("event=sync_failed worker=%d sid=%s", cw->w->index, cs->sid);
    }
    /* the sync was answered and written: the opens may say seen now, and
     * then their acks go out */
    for (chat_member *m = cs->rooms; m; m = m->snext)
        if (m->open_due) {
            m->open_due = 0;
            open_receipt(cw, cs, m);
        }
    finish_due_joins(cs);
}

static void accept_socket(chat_sock *cs)
{
    json_t *extra = cs->pid ? json_pack("{ss}", "pid", cs->pid) : NULL;
    cs->accepted = 1;
    gw_socket_accept(cs->sock, extra);
    json_decref(extra);
}

/* XADD {st}:rpc: a sync (vec NULL) or a replay above vec. */
static int send_request(chat_worker *cw, chat_sock *cs, const char *kind, const uint64_t *vec)
{
    cs->gen = ++cw->gen;
    char req[REQ_ID_MAX]; /* a reply names it; only the latest counts */
    snprintf(req, sizeof req, "%s.%u", cs->sid, cs->gen);
    char max[16];
    snprintf(max, sizeof max, "%u", cw->cfg->replay_max);
    pr_buf v;
    pr_buf_init(&v, (size_t)cw->nshards * 17 + 1);
    cmdv c = {.n = 0};
    cmd_adds(&c, "XADD");
    cmd_adds(&c, "{st}:rpc");
    cmd_adds(&c, "*");
    cmd_adds(&c, "k");
    cmd_adds(&c, kind);
    cmd_adds(&c, "g");
    cmd_adds(&c, cw->reply_channel);
    cmd_adds(&c, "i");
    cmd_adds(&c, req);
    cmd_adds(&c, "u");
    cmd_add(&c, cs->user->e.key, cs->user->e.len);
    if (vec) {
        chat_vec_encode(&v, vec, cw->nshards);
        cmd_adds(&c, "v");
        cmd_add(&c, v.ptr ? v.ptr : "", v.len);
    }
    cmd_adds(&c, "m");
    cmd_adds(&c, max);
    int rc = cmd_send(cw, &c, NULL, NULL);
    pr_buf_dispose(&v);
    if (rc != 0)
        return rc;
    cs->phase = CS_CATCHUP;
    gw__tq_add(&cw->wait_tq, &cs->wait);
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
static void write_record(chat_worker *cw, const chat_sock *cs, const uint64_t *vec)
{
    pr_buf rec;
    pr_buf_init(&rec, CHAT_ID_MAX + 2 + (size_t)cw->nshards * 17);
    pr_buf_append(&rec, cs->user->e.key, cs->user->e.len);
    pr_buf_append_byte(&rec, '\n');
    chat_vec_encode(&rec, vec, cw->nshards);
    char key[PID_MAX + 16], px[24];
    snprintf(key, sizeof key, "{c:%s}:sess", cs->pid);
    snprintf(px, sizeof px, "%u", cw->cfg->recovery_window_s * 1000u);
    const char *argv[] = {"SET", key, rec.ptr, "PX", px};
    size_t lens[] = {3, strlen(key), rec.len, 2, strlen(px)};
    gw_redis_command(cw->redis, NULL, NULL, 5, argv, lens);
    pr_buf_dispose(&rec);
}

/* A new session: a new pid whose record holds the positions read at the
 * start, the CONNECT reply, then (with_sync) the messages the user has not
 * been delivered yet, before anything live. */
static void go_fresh(chat_worker *cw, chat_sock *cs, int with_sync)
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
        accept_socket(cs);
    }
    if (with_sync && send_request(cw, cs, "sync", NULL) == 0)
        return;
    go_live(cw, cs);
}

static void pexpire_record(chat_worker *cw, const chat_sock *cs)
{
    char key[PID_MAX + 16], px[24];
    snprintf(key, sizeof key, "{c:%s}:sess", cs->pid);
    snprintf(px, sizeof px, "%u", cw->cfg->recovery_window_s * 1000u);
    const char *argv[] = {"PEXPIRE", key, px};
    redis_cmd(cw, NULL, NULL, 3, argv);
}

/* Every room is subscribed: ask storage for what the socket missed. */
static void started(chat_worker *cw, chat_sock *cs)
{
    if (!cs->have_record && cs->record_gone && cs->offset && cw->cache_built_ms &&
        wall_ms() - cw->cache_built_ms < cw->cfg->recovery_window_s * 1000ull) {
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
        if (send_request(cw, cs, "replay", cs->rec) == 0) {
            cs->recovering = 1;
            return;
        }
    }
    go_fresh(cw, cs, 1);
}

static void subs_step(chat_worker *cw, chat_sock *cs)
{
    if (cs->phase == CS_STARTING && --cs->subs_pending == 0)
        started(cw, cs);
}

static void subscribed_cb(gw_redis *r, int ok, void *arg)
{
    (void)r;
    chat_worker *cw = ((sock_ref *)arg)->cw;
    chat_sock *cs = ref_take(arg);
    if (!cs || cs->phase != CS_STARTING)
        return;
    if (!ok)
        start_failed(cw, cs, "subscribe");
    else
        subs_step(cw, cs);
}

static void wait_channel(chat_worker *cw, chat_sock *cs, const char *channel)
{
    cs->subs_pending++;
    gw_redis_when_subscribed(cw->redis, pr_view_make(channel, strlen(channel)), subscribed_cb,
                             ref_new(cw, cs));
}

static void rooms_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    chat_worker *cw = ((sock_ref *)arg)->cw;
    chat_sock *cs = ref_take(arg);
    if (!cs || cs->phase != CS_STARTING)
        return;
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        start_failed(cw, cs, "rooms");
        return;
    }
    for (size_t i = 0; i < rep->elements; i++) {
        redisReply *e = rep->element[i];
        if (e->type == REDIS_REPLY_STRING && chat_id_valid(e->str, e->len))
            room_join(cw, cs, e->str);
    }
    char channel[CHAT_ID_MAX + 16];
    cs->subs_pending = 1; /* held until every wait is registered */
    for (chat_member *m = cs->rooms; m && cs->phase == CS_STARTING; m = m->snext) {
        room_channel(channel, sizeof channel, m->room->e.key);
        wait_channel(cw, cs, channel);
    }
    if (cs->phase != CS_STARTING)
        return;
    user_channel(channel, sizeof channel, cs->user->e.key);
    wait_channel(cw, cs, channel);
    if (cs->phase == CS_STARTING)
        wait_channel(cw, cs, cw->reply_channel);
    subs_step(cw, cs);
}

static void record_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    chat_worker *cw = ((sock_ref *)arg)->cw;
    chat_sock *cs = ref_take(arg);
    if (!cs || cs->phase != CS_STARTING)
        return;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        start_failed(cw, cs, "session record");
        return;
    }
    if (rep->type != REDIS_REPLY_STRING) {
        cs->record_gone = 1; /* expired, never ours, or lost with Redis's data: started() */
        return;
    }
    const char *nl = memchr(rep->str, '\n', rep->len);
    if (!nl || !view_is(pr_view_make(rep->str, (size_t)(nl - rep->str)), cs->user->e.key,
                        cs->user->e.len))
        return; /* another user's pid */
    cs->rec = pr_calloc(cw->nshards, sizeof *cs->rec);
    pr_view v = pr_view_make(nl + 1, rep->len - (size_t)(nl + 1 - rep->str));
    cs->have_record = chat_vec_decode(v, cs->rec, cw->nshards) == 0;
}

/* Strict unsigned decimal. */
static int parse_u64(const char *p, size_t n, uint64_t *out)
{
    if (n == 0 || n > 19)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        x = x * 10 + (uint64_t)(p[i] - '0');
    }
    *out = x;
    return 0;
}

static void positions_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    chat_worker *cw = ((sock_ref *)arg)->cw;
    chat_sock *cs = ref_take(arg);
    if (!cs || cs->phase != CS_STARTING)
        return;
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        start_failed(cw, cs, "positions");
        return;
    }
    cs->fresh = pr_calloc(cw->nshards, sizeof *cs->fresh); /* missing shards: 0 */
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        redisReply *k = rep->element[i], *v = rep->element[i + 1];
        uint64_t shard, pos;
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
            parse_u64(k->str, k->len, &shard) == 0 && parse_u64(v->str, v->len, &pos) == 0 &&
            shard < cw->nshards)
            cs->fresh[shard] = pos;
    }
}

/* {st}:cache is chat-storage's mark of a complete membership cache
 * (docs/storage.md, "Membership cache"). Absent once this worker has seen
 * it, Redis lost the cache and storage is rebuilding it: {u:USER}:rooms may
 * be empty or partial, and a socket started from it would miss its rooms'
 * messages. The start waits as if Redis had failed it (CS_WAITING, the
 * CONNECT stays pending) and tries again. (Never seen: no chat-storage has
 * run on this Redis yet, and nothing was lost.) Read on the same link just
 * before the rooms, so a Redis that restarts in between fails the rooms read
 * too. */
static void cache_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    chat_worker *cw = ((sock_ref *)arg)->cw;
    chat_sock *cs = ref_take(arg);
    if (!cs || cs->phase != CS_STARTING)
        return;
    if (rep && rep->type == REDIS_REPLY_STRING) {
        cw->cache_seen = 1;
        uint64_t at; /* "WALL_MS REPLICA" */
        const char *sp = memchr(rep->str, ' ', rep->len);
        if (sp && parse_u64(rep->str, (size_t)(sp - rep->str), &at) == 0)
            cw->cache_built_ms = at;
    } else if (rep && rep->type == REDIS_REPLY_NIL && cw->cache_seen) {
        start_failed(cw, cs, "membership cache rebuilding"); /* rooms_cb is stale now */
    }
}

/* Reads the session record (when the client brings a pid), the shard
 * positions (for a new record), the cache mark and the user's rooms; the
 * replies come back in this order on the one command link. */
static void start_session(chat_worker *cw, chat_sock *cs)
{
    cs->phase = CS_STARTING;
    cs->gen = ++cw->gen;
    cs->have_record = 0;
    cs->record_gone = 0;
    pr_free(cs->rec); /* from an attempt Redis failed */
    pr_free(cs->fresh);
    cs->rec = cs->fresh = NULL;
    const char *user = cs->user->e.key;
    int rc = 0;
    if (cs->pid) {
        char key[PID_MAX + 16];
        snprintf(key, sizeof key, "{c:%s}:sess", cs->pid);
        const char *argv[] = {"GET", key};
        sock_ref *r = ref_new(cw, cs);
        if ((rc = redis_cmd(cw, record_cb, r, 2, argv)) != 0)
            pr_free(r);
    }
    if (rc == 0 && cw->cfg->recovery_window_s) {
        const char *argv[] = {"HGETALL", "{st}:pos"};
        sock_ref *r = ref_new(cw, cs);
        if ((rc = redis_cmd(cw, positions_cb, r, 2, argv)) != 0)
            pr_free(r);
    }
    if (rc == 0) {
        const char *argv[] = {"GET", CHAT_CACHE_MARK_KEY};
        sock_ref *r = ref_new(cw, cs);
        if ((rc = redis_cmd(cw, cache_cb, r, 2, argv)) != 0)
            pr_free(r);
    }
    if (rc == 0) {
        char key[CHAT_ID_MAX + 16];
        snprintf(key, sizeof key, "{u:%s}:rooms", user);
        const char *argv[] = {"SMEMBERS", key};
        sock_ref *r = ref_new(cw, cs);
        if ((rc = redis_cmd(cw, rooms_cb, r, 2, argv)) != 0)
            pr_free(r);
    }
    if (rc != 0)
        start_failed(cw, cs, "redis down");
}

static void retry_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    chat_worker *cw = arg;
    if (!gw_redis_ready(cw->redis)) {
        retry_arm(cw, 1000);
        return;
    }
    for (chat_sock *cs = cw->socks; cs; cs = cs->next)
        if (cs->phase == CS_WAITING)
            start_session(cw, cs); /* may fail again: then it re-arms */
    gw__worker_schedule_flush(cw->w);
}

static void wait_timeout(gw_tq *tq, gw_tq_node *n)
{
    chat_sock *cs = GW_CONTAINER_OF(n, chat_sock, wait);
    chat_worker *cw = CW(tq->w);
    if (cs->phase != CS_CATCHUP)
        return;
    GW_WARN_RATELIMITED("event=replay_timeout worker=%d sid=%s kind=%s", cw->w->index, cs->sid,
                        cs->recovering ? "replay" : "sync");
    if (cs->recovering)
        go_fresh(cw, cs, 1);
    else
        go_live(cw, cs);
}

/* A live message for a socket that is not live yet. */
static void hold(chat_worker *cw, chat_sock *cs, gw_blob *b, const char *room, int64_t seq,
                 int own)
{
    if (cs->nheld >= cw->cfg->replay_max) {
        /* more than a replay may bring: give up catching up */
        GW_WARN_RATELIMITED("event=held_overflow worker=%d sid=%s", cw->w->index, cs->sid);
        if (cs->recovering || !cs->accepted)
            go_fresh(cw, cs, 0);
        else
            go_live(cw, cs);
        gw_socket_send_blob(cs->sock, b);
        return;
    }
    size_t rl = strlen(room);
    held_msg *h = pr_malloc(sizeof *h + rl + 1);
    h->next = NULL;
    h->blob = gw__blob_ref(b);
    h->seq = seq;
    h->own = (uint8_t)own;
    memcpy(h->room, room, rl + 1);
    *cs->held_tail = h;
    cs->held_tail = &h->next;
    cs->nheld++;
}

/* ---- envelopes from Redis ---- */

static void deliver_room(chat_worker *cw, const chat_env *h, pr_view packet)
{
    chat_room *room = (chat_room *)smap_get(&cw->rooms, h->room.ptr, h->room.len);
    if (!room)
        return; /* our last member left while the message was in flight */
    gw_blob *b = packet_blob(packet);
    for (chat_member *m = room->members, *next; m; m = next) {
        next = m->rnext;
        chat_sock *cs = m->cs;
        if (h->except_user.len && cs->user && cs->user->e.len == h->except_user.len &&
            !memcmp(cs->user->e.key, h->except_user.ptr, h->except_user.len))
            continue;
        if (h->except_socket.len && pr_view_eq_cstr(h->except_socket, gw_socket_id(cs->sock)))
            continue;
        gw_socket_send_blob(cs->sock, b);
        GW_STAT_ADD(cw->w, room_deliveries, 1);
    }
    gw__blob_unref(b);
}

static void deliver_all(chat_worker *cw, pr_view packet)
{
    gw_blob *b = packet_blob(packet);
    for (chat_sock *cs = cw->socks, *next; cs; cs = next) {
        next = cs->next;
        gw_socket_send_blob(cs->sock, b);
    }
    gw__blob_unref(b);
}

/* M1: a stored message. One blob, offset included, for every local member. */
static void on_stored(chat_worker *cw, pr_view msg)
{
    chat_menv h;
    pr_view packet;
    if (chat_menv_decode(msg, &h, &packet) != 0) {
        GW_WARN_RATELIMITED("event=bad_envelope kind=M worker=%d len=%zu", cw->w->index, msg.len);
        return;
    }
    int known_shard = h.shard < cw->nshards;
    if (!known_shard)
        GW_WARN_RATELIMITED("event=shard_out_of_range worker=%d shard=%u shards=%u "
                            "hint=--ingest-shards",
                            cw->w->index, h.shard, cw->nshards);
    else if ((uint64_t)h.pos > cw->pos[h.shard])
        cw->pos[h.shard] = (uint64_t)h.pos;
    chat_room *room = (chat_room *)smap_get(&cw->rooms, h.room.ptr, h.room.len);
    if (!room)
        return;
    gw_blob *b = offset_blob(cw, packet, known_shard ? cw->pos : NULL);
    for (chat_member *m = room->members, *next; m; m = next) {
        next = m->rnext;
        chat_sock *cs = m->cs;
        int own = cs->user && view_is(h.sender, cs->user->e.key, cs->user->e.len);
        if (cs->phase != CS_LIVE) {
            hold(cw, cs, b, room->e.key, h.seq, own);
            continue;
        }
        /* a batch published again (storage died between its PUBLISH and
         * its XACK) or a sync that overlaps live traffic: never twice */
        if (h.seq <= m->last_seq)
            continue;
        m->last_seq = h.seq;
        gw_socket_send_blob(cs->sock, b);
        GW_STAT_ADD(cw->w, room_deliveries, 1);
        if (!own)
            deliver_receipts(cw, cs, m, h.seq);
    }
    gw__blob_unref(b);
}

static chat_user *find_user(chat_worker *cw, pr_view user)
{
    return (chat_user *)smap_get(&cw->users, user.ptr, user.len);
}

/* U1: a packet for every local socket of a user. */
static void on_user_packet(chat_worker *cw, pr_view msg)
{
    pr_view user, packet;
    if (chat_uenv_decode(msg, &user, &packet) != 0) {
        GW_WARN_RATELIMITED("event=bad_envelope kind=U worker=%d len=%zu", cw->w->index, msg.len);
        return;
    }
    chat_user *u = find_user(cw, user);
    if (!u)
        return;
    gw_blob *b = packet_blob(packet);
    for (chat_sock *cs = u->socks; cs; cs = cs->unext)
        gw_socket_send_blob(cs->sock, b); /* refused while a CONNECT is pending */
    gw__blob_unref(b);
}

/* A room that J1 (or a sync) added is subscribed now; what it published
 * before (its first message, typically: J1 and M1 race) comes by a sync
 * asked after this confirmation, held live messages deduplicated by seq as
 * on connect. A socket that is not live (its connect-time sync or another
 * room's is in flight, and may have been read before that message was
 * stored) or whose generation moved on meanwhile still owes that sync:
 * go_live asks it. */
static void joined_room_subscribed(gw_redis *r, int ok, void *arg)
{
    (void)r;
    sock_ref *ref = arg;
    chat_worker *cw = ref->cw;
    chat_sock *cs = ref_take_session(ref);
    if (!ok || !cs)
        return; /* link down: every session is dropped and recovers */
    if (cs->phase != CS_LIVE)
        cs->resync = 1;
    else if (send_request(cw, cs, "sync", NULL) != 0)
        GW_WARN_RATELIMITED("event=sync_failed worker=%d sid=%s", cw->w->index, cs->sid);
}

/* J1/K1: membership changes apply to the user's local sockets at once. */
static void on_membership(chat_worker *cw, pr_view msg)
{
    char kind;
    pr_view room, user;
    if (chat_jenv_decode(msg, &kind, &room, &user) != 0) {
        GW_WARN_RATELIMITED("event=bad_envelope kind=J worker=%d len=%zu", cw->w->index, msg.len);
        return;
    }
    chat_user *u = find_user(cw, user);
    if (!u)
        return;
    char id[CHAT_ID_MAX + 1];
    memcpy(id, room.ptr, room.len);
    id[room.len] = '\0';
    for (chat_sock *cs = u->socks; cs; cs = cs->unext) {
        if (kind != 'J') {
            room_leave(cw, cs, id);
        } else if (!find_membership(cs, id)) {
            room_join(cw, cs, id); /* whatever the phase: see joined_room_subscribed */
            when_room_subscribed(cw, id, joined_room_subscribed, ref_new(cw, cs));
        }
    }
}

/* A1: acks of messages this worker's sockets sent, after storage's COMMIT. */
static void on_acks(chat_worker *cw, pr_view msg)
{
    pr_view it, sid, json;
    int64_t id;
    if (chat_aenv_begin_decode(msg, &it) != 0)
        return;
    int rc;
    while ((rc = chat_aenv_next(&it, &sid, &id, &json)) == 1) {
        if (sid.len > GW_SID_LEN)
            continue;
        if (join_answered(cw, sid, id, json))
            continue;
        char s[GW_SID_LEN + 1];
        memcpy(s, sid.ptr, sid.len);
        s[sid.len] = '\0';
        gw_socket *sock = gw_socket_find(cw->w, s, "/");
        if (!sock)
            continue; /* gone: the client's ack callback died with it */
        json_t *arg = json_loadb(json.ptr, json.len, 0, NULL);
        const char *error = json_string_value(json_object_get(arg, "error"));
        if (!arg)
            GW_WARN_RATELIMITED("event=bad_ack worker=%d", cw->w->index);
        else if (id >= 0)
            ack_json(sock, id, arg);
        else if (error) /* no callback: the error as a chatError event */
            reply_error(sock, "sendMessage", -1, error);
        json_decref(arg);
    }
    if (rc < 0)
        GW_WARN_RATELIMITED("event=bad_envelope kind=A worker=%d len=%zu", cw->w->index, msg.len);
}

/* R1: storage's answer to a sync or replay request. */
static void on_replay_reply(chat_worker *cw, pr_view msg)
{
    pr_view req, status, it;
    if (chat_renv_begin_decode(msg, &req, &status, &it) != 0) {
        GW_WARN_RATELIMITED("event=bad_envelope kind=R worker=%d len=%zu", cw->w->index, msg.len);
        return;
    }
    const char *dot = memchr(req.ptr, '.', req.len);
    if (!dot || (size_t)(dot - req.ptr) > GW_SID_LEN)
        return;
    char sid[GW_SID_LEN + 1];
    memcpy(sid, req.ptr, (size_t)(dot - req.ptr));
    sid[dot - req.ptr] = '\0';
    chat_sock *cs = sock_by_sid(cw, sid);
    char want[REQ_ID_MAX];
    if (cs)
        snprintf(want, sizeof want, "%s.%u", cs->sid, cs->gen);
    if (!cs || cs->phase != CS_CATCHUP || !view_is(req, want, strlen(want))) {
        GW_DEBUG("event=late_replay worker=%d sid=%s", cw->w->index, sid);
        return; /* timed out, or the socket is gone */
    }
    gw__tq_del(&cw->wait_tq, &cs->wait);
    int ok = pr_view_eq_cstr(status, "ok");
    if (cs->recovering) {
        if (!ok) {
            GW_INFO("event=recovery_refused worker=%d sid=%s status=%.*s", cw->w->index, cs->sid,
                    (int)status.len, status.ptr);
            go_fresh(cw, cs, 1);
            return;
        }
        accept_socket(cs); /* the same pid: socket.recovered */
        pexpire_record(cw, cs);
        write_items(cw, cs, it, cs->rec);
        GW_DEBUG("event=session_recovered worker=%d sid=%s", cw->w->index, cs->sid);
    } else if (ok) {
        /* a sync on a live socket (a room added by J1) starts from what the
         * worker's live offsets already claim: never below them */
        write_items(cw, cs, it, cs->fresh ? cs->fresh : cw->pos);
    } else {
        GW_INFO("event=sync_incomplete worker=%d sid=%s status=%.*s", cw->w->index, cs->sid,
                (int)status.len, status.ptr);
    }
    go_live(cw, cs);
}

static void on_redis_message(gw_redis *r, pr_view channel, pr_view message, void *arg)
{
    (void)r;
    (void)channel;
    chat_worker *cw = arg;
    GW_STAT_ADD(cw->w, room_events_in, 1);
    char kind = chat_env_kind(message);
    if (kind != 'C' && !cw->storage)
        kind = 0;
    switch (kind) {
    case 'C': {
        chat_env h;
        pr_view packet;
        if (chat_env_decode(message, &h, &packet) != 0)
            break;
        if (pr_view_eq_cstr(h.room, ALL_ROOM))
            deliver_all(cw, packet);
        else
            deliver_room(cw, &h, packet);
        return;
    }
    case 'M':
        on_stored(cw, message);
        return;
    case 'U':
        on_user_packet(cw, message);
        return;
    case 'J':
    case 'K':
        on_membership(cw, message);
        return;
    case 'A':
        on_acks(cw, message);
        return;
    case 'R':
        on_replay_reply(cw, message);
        return;
    default:
        break;
    }
    GW_WARN_RATELIMITED("event=bad_envelope worker=%d len=%zu", cw->w->index, message.len);
}

/* ---- sendMessage without storage: relayed at once ---- */

typedef struct {
    chat_worker *cw;
    int64_t ack_id;
    char sid[GW_SID_LEN + 1];
    char id[48];
    char room[CHAT_ID_MAX + 1];
    char created[48];
    pr_buf pkt; /* the encoded messageReceived */
} send_ctx;

static void send_ctx_free(send_ctx *x)
{
    pr_buf_dispose(&x->pkt);
    pr_free(x);
}

/* sendMessage could not reach Redis: tell the socket, if it is still there. */
static void send_unavailable(chat_worker *cw, const char *sid, int64_t ack_id)
{
    gw_socket *sock = gw_socket_find(cw->w, sid, "/");
    if (sock)
        reply_error(sock, "sendMessage", ack_id, "unavailable");
}

static void send_failed(send_ctx *x)
{
    send_unavailable(x->cw, x->sid, x->ack_id);
    send_ctx_free(x);
}

static void published_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    send_ctx *x = arg;
    if (!rep || rep->type != REDIS_REPLY_INTEGER) {
        send_failed(x);
        return;
    }
    gw_socket *sock = gw_socket_find(x->cw->w, x->sid, "/");
    if (sock)
        reply_ok(sock, x->ack_id,
                 json_pack("{ssssss}", "id", x->id, "roomId", x->room, "createdAt", x->created));
    send_ctx_free(x);
}

/* The sender's own socket is subscribed to the room: publish. */
static void send_subscribed(gw_redis *r, int ok, void *arg)
{
    (void)r;
    send_ctx *x = arg;
    if (!ok || publish_env(x->cw, x->room, NULL, pr_buf_view(&x->pkt), published_cb, x) != 0)
        send_failed(x);
}

/* Runs done once the room's subscription is confirmed, so nothing published
 * after it can miss this worker's members. */
static void when_room_subscribed(chat_worker *cw, const char *room, gw_redis_subscribed_cb done,
                                 void *arg)
{
    char channel[CHAT_ID_MAX + 16];
    room_channel(channel, sizeof channel, room);
    gw_redis_when_subscribed(cw->redis, pr_view_make(channel, strlen(channel)), done, arg);
}

/* ---- sendMessage with storage: into the room's ingest stream ---- */

typedef struct {
    chat_worker *cw;
    int64_t ack_id;            /* -1: the client wants no ack */
    char sid[GW_SID_LEN + 1];
    char room[CHAT_ID_MAX + 1];
    char user[CHAT_ID_MAX + 1];
    char first[CHAT_NAME_MAX + 1];
    char last[CHAT_NAME_MAX + 1];
    char cmid[CHAT_ID_MAX + 1]; /* "" none */
    char peer[CHAT_ID_MAX + 1]; /* "" none */
    uint8_t has_last;
    size_t text_len;
    char text[];
} store_ctx;

static void store_failed(store_ctx *x)
{
    send_unavailable(x->cw, x->sid, x->ack_id);
    pr_free(x);
}

static void store_xadd_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    store_ctx *x = arg;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        store_failed(x);
        return;
    }
    pr_free(x); /* the ack comes from storage after COMMIT (A1) */
}

static void store_subscribed(gw_redis *r, int ok, void *arg)
{
    (void)r;
    store_ctx *x = arg;
    chat_worker *cw = x->cw;
    if (!ok) {
        store_failed(x);
        return;
    }
    char key[32], ack[24];
    snprintf(key, sizeof key, "{i:%u}:in", chat_room_shard(x->room, strlen(x->room), cw->nshards));
    cmdv c = {.n = 0};
    cmd_adds(&c, "XADD");
    cmd_adds(&c, key);
    cmd_adds(&c, "*");
    cmd_adds(&c, "k");
    cmd_adds(&c, "m");
    cmd_adds(&c, "r");
    cmd_adds(&c, x->room);
    cmd_adds(&c, "u");
    cmd_adds(&c, x->user);
    cmd_adds(&c, "n");
    cmd_adds(&c, x->first);
    if (x->has_last) {
        cmd_adds(&c, "l");
        cmd_adds(&c, x->last);
    }
    cmd_adds(&c, "x");
    cmd_add(&c, x->text, x->text_len);
    if (x->cmid[0]) {
        cmd_adds(&c, "c");
        cmd_adds(&c, x->cmid);
    }
    if (x->peer[0]) {
        cmd_adds(&c, "p");
        cmd_adds(&c, x->peer);
    }
    /* the reply address even without a callback: an error (not a member,
     * clientMsgId reused) then comes back as a chatError, never silence */
    cmd_adds(&c, "g");
    cmd_adds(&c, cw->reply_channel);
    cmd_adds(&c, "s");
    cmd_adds(&c, x->sid);
    if (x->ack_id >= 0) {
        snprintf(ack, sizeof ack, "%lld", (long long)x->ack_id);
        cmd_adds(&c, "a");
        cmd_adds(&c, ack);
    }
    if (cmd_send(cw, &c, store_xadd_cb, x) != 0)
        store_failed(x);
}

/* ---- event handlers ---- */

typedef struct {
    chat_worker *cw;
    chat_sock *cs;
    gw_socket *sock;
    const char *event;
    int64_t ack_id;
    const chat_args *a;
    const char *uid;   /* who is acting */
    const char *fname; /* their first name */
} req;

/* The room an event names: the direct room with targetUserId (joined first
 * when auto_join), or roomId, which the socket must have joined. Fills room
 * (CHAT_ID_MAX + 1 bytes). */
static const char *event_room(const req *q, char *room, size_t n, int auto_join)
{
    if (q->a->target_user_id) {
        chat_dm_room_id(q->cw->room_key, q->uid, q->a->target_user_id, room);
        if (auto_join && !find_membership(q->cs, room)) {
            room_join(q->cw, q->cs, room);
            record_dm(q->cw, room, q->uid, q->a->target_user_id);
        }
        return room;
    }
    if (q->a->room_id) {
        snprintf(room, n, "%s", q->a->room_id);
        if (!find_membership(q->cs, room)) {
            reply_error(q->sock, q->event, q->ack_id, "not a member");
            return NULL;
        }
        return room;
    }
    reply_error(q->sock, q->event, q->ack_id, "invalid payload");
    return NULL;
}

/* A join waiting for its room's subscription and, for a joinChat with
 * storage whose client wants the ack, for storage's answer to the "open"
 * entry too (waiting: in cw->joins by "SID\tACKID" and in cw->join_tq).
 * Freed by whichever of the two comes last: join_subscribed always runs
 * once; the answer, a failed XADD or the timeout end the wait. */
struct join_ctx {
    sentry e;
    gw_tq_node wait;
    chat_worker *cw;
    int64_t ack_id;
    uint8_t waiting;    /* for storage's answer */
    uint8_t subscribed; /* join_subscribed ran */
    json_t *answer;     /* storage's error (or ours), NULL: the room exists */
    join_ctx *next_due; /* in the socket's acks_due */
    char sid[GW_SID_LEN + 1];
    char room[CHAT_ID_MAX + 1];
};

static join_ctx *join_ctx_new(const req *q, const char *room)
{
    join_ctx *x = pr_calloc(1, sizeof *x);
    x->cw = q->cw;
    x->ack_id = q->ack_id;
    snprintf(x->sid, sizeof x->sid, "%s", q->cs->sid);
    snprintf(x->room, sizeof x->room, "%s", room);
    return x;
}

/* The ack of a join means "you will receive what is sent from now on",
 * and for joinChat with storage also "the room exists for every API"
 * (history right after the ack must not say "not a member"). */
static void join_finish(join_ctx *x)
{
    gw_socket *sock = gw_socket_find(x->cw->w, x->sid, "/");
    chat_sock *cs = sock ? gw_socket_data(sock) : NULL;
    if (cs && x->cw->storage && cs->phase != CS_LIVE) {
        /* The open takes effect when the ack goes out: its receipt waits for
         * the socket's sync (room_open), so the ack does too, or a message
         * sent in reply to the ack could come before the open in the stream
         * and be taken for seen. go_live() finishes it, in order. */
        join_ctx **tail = &cs->acks_due;
        while (*tail)
            tail = &(*tail)->next_due;
        x->next_due = NULL;
        *tail = x;
        return;
    }
    if (sock && x->answer)
        ack_json(sock, x->ack_id, x->answer);
    else if (sock)
        reply_ok(sock, x->ack_id, json_pack("{ss}", "roomId", x->room));
    json_decref(x->answer);
    pr_free(x);
}

/* The join acks a catch-up held, in order (the socket is live now). */
static void finish_due_joins(chat_sock *cs)
{
    join_ctx *x = cs->acks_due;
    cs->acks_due = NULL;
    while (x) {
        join_ctx *next = x->next_due;
        join_finish(x);
        x = next;
    }
}

/* The socket goes: its held acks have nobody to reach. */
static void free_due_joins(chat_sock *cs)
{
    while (cs->acks_due) {
        join_ctx *x = cs->acks_due;
        cs->acks_due = x->next_due;
        json_decref(x->answer);
        pr_free(x);
    }
}

static void join_subscribed(gw_redis *r, int ok, void *arg)
{
    (void)r;
    (void)ok; /* Redis down: joined locally; sends fail until it is back */
    join_ctx *x = arg;
    x->subscribed = 1;
    if (!x->waiting)
        join_finish(x);
}

static void join_key(char *out, size_t n, const char *sid, size_t sid_len, int64_t ack_id)
{
    snprintf(out, n, "%.*s\t%lld", (int)sid_len, sid, (long long)ack_id);
}

/* Waits for storage's answer to x's "open" entry; -1 when the client
 * already has a joinChat pending under that ack id. */
static int join_wait(chat_worker *cw, join_ctx *x)
{
    char key[GW_SID_LEN + 24];
    join_key(key, sizeof key, x->sid, strlen(x->sid), x->ack_id);
    if (smap_get(&cw->joins, key, strlen(key)))
        return -1;
    smap_put(&cw->joins, &x->e, key, strlen(key));
    gw__tq_add(&cw->join_tq, &x->wait);
    x->waiting = 1;
    return 0;
}

/* The wait is over (answer: storage's error, or NULL: the room exists). */
static void join_done_waiting(chat_worker *cw, join_ctx *x, json_t *answer)
{
    smap_del(&cw->joins, &x->e);
    gw__tq_del(&cw->join_tq, &x->wait);
    x->waiting = 0;
    x->answer = answer;
    if (x->subscribed)
        join_finish(x);
}

static join_ctx *join_waiting(chat_worker *cw, const char *key)
{
    sentry *e = smap_get(&cw->joins, key, strlen(key));
    return e ? GW_CONTAINER_OF(e, join_ctx, e) : NULL;
}

static void join_storage_failed(chat_worker *cw, const char *key)
{
    join_ctx *x = join_waiting(cw, key);
    if (x)
        join_done_waiting(cw, x, json_pack("{ss}", "error", "unavailable"));
}

/* An A1 line: 1 when it answers a waiting joinChat (then it is used up). */
static int join_answered(chat_worker *cw, pr_view sid, int64_t ack_id, pr_view json)
{
    if (cw->joins.n == 0 || ack_id < 0)
        return 0; /* the usual case: message acks only */
    char key[GW_SID_LEN + 24];
    join_key(key, sizeof key, sid.ptr, sid.len, ack_id);
    join_ctx *x = join_waiting(cw, key);
    if (!x)
        return 0;
    json_t *arg = json_loadb(json.ptr, json.len, 0, NULL);
    json_t *answer = NULL;
    if (!json_is_object(arg) || json_object_get(arg, "error"))
        answer = json_is_object(arg) ? json_incref(arg)
                                     : json_pack("{ss}", "error", "unavailable");
    json_decref(arg);
    join_done_waiting(cw, x, answer);
    return 1;
}

/* Storage did not answer within --join-timeout: the room may not exist. */
static void join_timeout(gw_tq *tq, gw_tq_node *n)
{
    join_ctx *x = GW_CONTAINER_OF(n, join_ctx, wait);
    chat_worker *cw = CW(tq->w);
    GW_WARN_RATELIMITED("event=join_timeout worker=%d sid=%s room=%s", cw->w->index, x->sid,
                        x->room);
    join_done_waiting(cw, x, json_pack("{ss}", "error", "unavailable"));
}

static void open_dm_in_storage(chat_worker *cw, const char *room, const char *a, const char *b,
                               const join_ctx *wait)
{
    char key[32], ack[24];
    snprintf(key, sizeof key, "{i:%u}:in", chat_room_shard(room, strlen(room), cw->nshards));
    cmdv c = {.n = 0};
    const char *head[] = {"XADD", key, "*", "k", "o", "r", room, "u", a, "p", b};
    for (size_t i = 0; i < sizeof head / sizeof head[0]; i++)
        cmd_adds(&c, head[i]);
    open_ctx *o = NULL;
    if (wait) {
        snprintf(ack, sizeof ack, "%lld", (long long)wait->ack_id);
        cmd_adds(&c, "g");
        cmd_adds(&c, cw->reply_channel);
        cmd_adds(&c, "s");
        cmd_adds(&c, wait->sid);
        cmd_adds(&c, "a");
        cmd_adds(&c, ack);
        o = pr_malloc(sizeof *o + wait->e.len + 1);
        o->cw = cw;
        memcpy(o->key, wait->e.key, wait->e.len + 1);
    }
    if (cmd_send(cw, &c, o ? dm_open_cb : NULL, o) != 0) {
        GW_WARN_RATELIMITED("event=dm_open_failed worker=%d room=%s", cw->w->index, room);
        if (o)
            join_storage_failed(cw, o->key);
        pr_free(o);
    }
}

/* Joins (with storage: opens) the room and acks once it is subscribed. */
static void join_and_ack(chat_worker *cw, chat_sock *cs, join_ctx *x)
{
    chat_member *m = room_join(cw, cs, x->room);
    if (cw->storage)
        room_open(cw, cs, m);
    when_room_subscribed(cw, x->room, join_subscribed, x);
}

static void on_join_chat(const req *q)
{
    if (!q->a->target_user_id) {
        reply_error(q->sock, q->event, q->ack_id, "invalid payload");
        return;
    }
    char room[CHAT_ID_MAX + 1];
    chat_dm_room_id(q->cw->room_key, q->uid, q->a->target_user_id, room);
    join_ctx *x = join_ctx_new(q, room);
    /* with storage the ack also waits for the room's COMMIT */
    if (q->cw->storage && q->ack_id >= 0 && join_wait(q->cw, x) != 0) {
        pr_free(x);
        reply_error(q->sock, q->event, q->ack_id, "ack id in use");
        return;
    }
    record_dm_for(q->cw, room, q->uid, q->a->target_user_id, x->waiting ? x : NULL);
    join_and_ack(q->cw, q->cs, x);
}

/* joinRoom missed {r:ROOM}:members: "not a member" only if the cache is
 * whole; while storage rebuilds it, "unavailable" (try again), never a false
 * refusal. */
static void member_mark_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    join_ctx *x = arg;
    gw_socket *sock = gw_socket_find(x->cw->w, x->sid, "/");
    int whole = rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    if (whole)
        x->cw->cache_seen = 1;
    if (sock && gw_socket_data(sock) && !gw_socket_pending(sock))
        reply_error(sock, "joinRoom", x->ack_id, whole ? "not a member" : "unavailable");
    pr_free(x);
}

static void member_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    join_ctx *x = arg;
    gw_socket *sock = gw_socket_find(x->cw->w, x->sid, "/");
    chat_sock *cs = sock ? gw_socket_data(sock) : NULL;
    if (!cs || gw_socket_pending(sock)) {
        pr_free(x);
        return;
    }
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1) {
        join_and_ack(x->cw, cs, x);
        return;
    }
    if (rep && rep->type == REDIS_REPLY_INTEGER && x->cw->storage && x->cw->cache_seen) {
        /* a miss is only an answer when the cache is whole */
        const char *argv[] = {"EXISTS", CHAT_CACHE_MARK_KEY};
        if (redis_cmd(x->cw, member_mark_cb, x, 2, argv) == 0)
            return;
        rep = NULL;
    }
    reply_error(sock, "joinRoom", x->ack_id,
                rep && rep->type == REDIS_REPLY_INTEGER ? "not a member" : "unavailable");
    pr_free(x);
}

/* joinRoom {roomId}: any room the user belongs to (groups, direct rooms). */
static void on_join_room(const req *q)
{
    if (!q->a->room_id) {
        reply_error(q->sock, q->event, q->ack_id, "invalid payload");
        return;
    }
    join_ctx *x = join_ctx_new(q, q->a->room_id);
    if (find_membership(q->cs, q->a->room_id)) { /* one of its rooms since connect */
        join_and_ack(q->cw, q->cs, x);
        return;
    }
    char key[CHAT_ID_MAX + 16];
    snprintf(key, sizeof key, "{r:%s}:members", q->a->room_id);
    const char *argv[] = {"SISMEMBER", key, q->uid};
    if (redis_cmd(q->cw, member_cb, x, 3, argv) != 0) {
        pr_free(x);
        reply_error(q->sock, q->event, q->ack_id, "unavailable");
    }
}

/* leaveChat/leaveRoom. With storage the socket stays in the room (its user
 * is still a member and gets messages as delivered); it only stops seeing. */
static void on_leave(const req *q)
{
    char room[CHAT_ID_MAX + 1];
    if (q->a->target_user_id && !strcmp(q->event, "leaveChat"))
        chat_dm_room_id(q->cw->room_key, q->uid, q->a->target_user_id, room);
    else if (q->a->room_id && !strcmp(q->event, "leaveRoom"))
        snprintf(room, sizeof room, "%s", q->a->room_id);
    else {
        reply_error(q->sock, q->event, q->ack_id, "invalid payload");
        return;
    }
    if (q->cw->storage) {
        chat_member *m = find_membership(q->cs, room);
        if (m)
            m->open = 0;
    } else {
        room_leave(q->cw, q->cs, room);
    }
    reply_ok(q->sock, q->ack_id, json_pack("{sb}", "ok", 1));
}

/* markSeen {roomId, seq?}: the user saw the room up to seq (everything when
 * absent). */
static void on_mark_seen(const req *q)
{
    if (!q->a->room_id) {
        reply_error(q->sock, q->event, q->ack_id, "invalid payload");
        return;
    }
    chat_member *m = find_membership(q->cs, q->a->room_id);
    if (!m) {
        reply_error(q->sock, q->event, q->ack_id, "not a member");
        return;
    }
    receipt_add(q->cw, m->room->e.key, q->cs->user, 'v', q->a->seq >= 0 ? q->a->seq : -1);
    reply_ok(q->sock, q->ack_id, json_pack("{sb}", "ok", 1));
}

static void send_relayed(const req *q, const char *room)
{
    chat_worker *cw = q->cw;
    send_ctx *x = pr_calloc(1, sizeof *x);
    x->cw = cw;
    x->ack_id = q->ack_id;
    snprintf(x->sid, sizeof x->sid, "%s", q->cs->sid);
    snprintf(x->id, sizeof x->id, "%s%llx", cw->msg_prefix, (unsigned long long)++cw->msg_counter);
    snprintf(x->room, sizeof x->room, "%s", room);
    iso_time(x->created, wall_ms());

    json_t *msg = json_pack("{ssssssss}", "id", x->id, "roomId", room, "userId", q->uid,
                            "firstName", q->fname);
    if (q->a->last_name)
        json_object_set_new(msg, "lastName", json_string(q->a->last_name));
    json_object_set_new(msg, "text", json_stringn(q->a->text, q->a->text_len));
    json_object_set_new(msg, "createdAt", json_string(x->created));
    json_object_set_new(msg, "clientMsgId",
                        q->a->client_msg_id ? json_string(q->a->client_msg_id) : json_null());
    pr_buf_init(&x->pkt, cw->cfg->max_payload);
    int rc = encode_event(&x->pkt, "messageReceived", msg);
    json_decref(msg);
    if (rc != 0) {
        send_ctx_free(x);
        reply_error(q->sock, q->event, q->ack_id, "invalid payload");
        return;
    }
    /* the sender's socket is in the room: wait until the room's channel is
     * confirmed, or the sender could miss its own message */
    when_room_subscribed(cw, room, send_subscribed, x);
}

static void send_stored(const req *q, const char *room)
{
    store_ctx *x = pr_calloc(1, sizeof *x + q->a->text_len);
    x->cw = q->cw;
    x->ack_id = q->ack_id;
    snprintf(x->sid, sizeof x->sid, "%s", q->cs->sid);
    snprintf(x->room, sizeof x->room, "%s", room);
    snprintf(x->user, sizeof x->user, "%s", q->uid);
    snprintf(x->first, sizeof x->first, "%s", q->fname);
    if (q->a->last_name) {
        x->has_last = 1;
        snprintf(x->last, sizeof x->last, "%s", q->a->last_name);
    }
    if (q->a->client_msg_id)
        snprintf(x->cmid, sizeof x->cmid, "%s", q->a->client_msg_id);
    if (q->a->target_user_id)
        snprintf(x->peer, sizeof x->peer, "%s", q->a->target_user_id);
    x->text_len = q->a->text_len;
    memcpy(x->text, q->a->text, q->a->text_len);
    /* as without storage: the sender's socket must get its own message */
    when_room_subscribed(q->cw, room, store_subscribed, x);
}

static void on_send_message(const req *q)
{
    chat_worker *cw = q->cw;
    if (!q->a->text || q->a->text_len == 0) {
        reply_error(q->sock, q->event, q->ack_id, "invalid payload");
        return;
    }
    if (!gw_redis_ready(cw->redis)) {
        reply_error(q->sock, q->event, q->ack_id, "unavailable");
        return;
    }
    char room[CHAT_ID_MAX + 1];
    if (!event_room(q, room, sizeof room, 1))
        return;
    if (cw->storage)
        send_stored(q, room);
    else
        send_relayed(q, room);
}

static void on_typing(const req *q)
{
    char room[CHAT_ID_MAX + 1];
    if (!event_room(q, room, sizeof room, 0))
        return;
    json_t *p = json_pack("{ssssss}", "roomId", room, "userId", q->uid, "firstName", q->fname);
    pr_buf pkt;
    pr_buf_init(&pkt, 4096);
    if (encode_event(&pkt, "showTyping", p) == 0)
        publish_env(q->cw, room, q->uid, pr_buf_view(&pkt), NULL, NULL);
    pr_buf_dispose(&pkt);
    json_decref(p);
    if (q->ack_id >= 0)
        reply_ok(q->sock, q->ack_id, json_pack("{sb}", "ok", 1));
}

typedef struct {
    chat_worker *cw;
    int64_t ack_id;
    char sid[GW_SID_LEN + 1];
    unsigned pending;
    json_t *online;
} online_ctx;

static void online_done(online_ctx *x)
{
    gw_socket *sock = gw_socket_find(x->cw->w, x->sid, "/");
    if (sock)
        reply_ok(sock, x->ack_id, json_pack("{sO}", "online", x->online));
    json_decref(x->online);
    pr_free(x);
}

typedef struct {
    online_ctx *x;
    char uid[CHAT_ID_MAX + 1];
} online_member;

static void online_count_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    online_member *m = arg;
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer > 0)
        json_array_append_new(m->x->online, json_string(m->uid));
    if (--m->x->pending == 0)
        online_done(m->x);
    pr_free(m);
}

static void online_members_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    online_ctx *x = arg;
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        gw_socket *sock = gw_socket_find(x->cw->w, x->sid, "/");
        if (sock)
            reply_error(sock, "getOnline", x->ack_id, "unavailable");
        json_decref(x->online);
        pr_free(x);
        return;
    }
    char now[24];
    snprintf(now, sizeof now, "%llu", (unsigned long long)wall_ms());
    x->pending = 1; /* held until every count is asked */
    for (size_t i = 0; i < rep->elements; i++) {
        if (rep->element[i]->type != REDIS_REPLY_STRING ||
            !chat_id_valid(rep->element[i]->str, rep->element[i]->len))
            continue;
        online_member *m = pr_calloc(1, sizeof *m);
        m->x = x;
        snprintf(m->uid, sizeof m->uid, "%s", rep->element[i]->str);
        char on[CHAT_ID_MAX + 32], exp[32];
        presence_keys(m->uid, on, sizeof on, exp, sizeof exp);
        const char *argv[] = {"ZCOUNT", on, now, "+inf"};
        if (redis_cmd(x->cw, online_count_cb, m, 4, argv) == 0)
            x->pending++;
        else
            pr_free(m);
    }
    if (--x->pending == 0)
        online_done(x);
}

static void on_get_online(const req *q)
{
    char room[CHAT_ID_MAX + 1];
    if (!event_room(q, room, sizeof room, 0))
        return;
    online_ctx *x = pr_calloc(1, sizeof *x);
    x->cw = q->cw;
    x->ack_id = q->ack_id;
    snprintf(x->sid, sizeof x->sid, "%s", gw_session_sid(gw_socket_session(q->sock)));
    x->online = json_array();
    char key[CHAT_ID_MAX + 16];
    snprintf(key, sizeof key, "{r:%s}:members", room);
    const char *argv[] = {"SMEMBERS", key};
    if (redis_cmd(q->cw, online_members_cb, x, 2, argv) != 0) {
        json_decref(x->online);
        pr_free(x);
        reply_error(q->sock, q->event, q->ack_id, "unavailable");
    }
}

/* ---- the app callbacks ---- */

/* The limit is the user's, across its sockets on every worker of this
 * gateway; a socket that has no user yet (insecure-dev) has its own. */
static int take_token(chat_worker *cw, chat_sock *cs)
{
    uint64_t now = gw__now_ms(cw->w);
    if (cs->user) {
        chat_user *u = cs->user;
        if (!u->rl)
            u->rl = gw__rl_acquire(u->e.key, u->e.len, cw->cfg->rate_burst, now);
        return gw__rl_take(u->rl, now, cw->cfg->rate_limit, cw->cfg->rate_burst);
    }
    cs->tokens += (double)(now - cs->refill_ms) * cw->cfg->rate_limit / 1000.0;
    if (cs->tokens > cw->cfg->rate_burst)
        cs->tokens = cw->cfg->rate_burst;
    cs->refill_ms = now;
    if (cs->tokens < 1.0)
        return 0;
    cs->tokens -= 1.0;
    return 1;
}

/* A reconnecting socket.io-client merges {pid, offset} into its auth: the
 * session it wants back and the offset of the last event it got. A pid
 * without an offset (no message came) recovers from the record alone. */
static void read_recovery(chat_worker *cw, chat_sock *cs, const json_t *auth)
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

static _Thread_local gw_pool sock_pool = GW_POOL(chat_sock);

/* Arms the end of the socket's access at the token's exp (wall-clock
 * seconds), translated to the worker's monotonic clock. */
static void token_arm(chat_worker *cw, chat_sock *cs, int64_t exp)
{
    /* beyond ~30 years: never on this process's watch */
    if (exp > (int64_t)(wall_ms() / 1000) + (1ll << 30))
        return;
    int64_t left = exp * 1000 - (int64_t)wall_ms();
    uint64_t now = gw__now_ms(cw->w);
    gw__th_add(&cw->exp_th, &cs->exp_node, left > 0 ? now + (uint64_t)left : now);
}

/*
 * The token's exp passed: the app hears why (chatError {"error":"token
 * expired"}), then a Socket.IO DISCONNECT ends the socket. socket.io-client
 * reports it as "io server disconnect" and does not reconnect by itself: the
 * app fetches a fresh token and calls connect() (proto/PROTOCOL.md). A socket
 * still connecting cannot be sent anything: its transport is dropped, and the
 * reconnect with the same token is refused ("unauthorized").
 */
static void token_expired(gw_th *th, gw_th_node *n)
{
    (void)th;
    chat_sock *cs = GW_CONTAINER_OF(n, chat_sock, exp_node);
    gw_socket *sock = cs->sock;
    if (gw_socket_pending(sock)) {
        gw_socket_drop_transport(sock);
        return;
    }
    json_t *args = json_pack("[{ss}]", "error", "token expired");
    gw_socket_emit(sock, "chatError", args, NULL, 0, NULL, NULL);
    json_decref(args);
    gw_socket_disconnect(sock); /* frees cs (chat_disconnect) */
}

static int chat_connect(gw_socket *sock, const json_t *auth, json_t **error)
{
    gw_worker *w = gw_socket_worker(sock);
    chat_worker *cw = CW(w);
    pr_jwt_claims claims;
    if (!cw->insecure) {
        const char *token = json_string_value(json_object_get(auth, "token"));
        if (!token)
            token = gw_session_http_token(gw_socket_session(sock));
        int64_t now = (int64_t)(wall_ms() / 1000);
        if (!token ||
            pr_jwt_verify_hs256(pr_view_make(token, strlen(token)),
                                pr_view_make(cw->cfg->jwt_secret, strlen(cw->cfg->jwt_secret)),
                                now, &claims) != 0) {
            *error = json_pack("{ss}", "message", "unauthorized");
            return -1;
        }
    }
    chat_sock *cs = gw__pool_get(&sock_pool);
    cs->sock = sock;
    cs->tokens = cw->cfg->rate_burst;
    cs->refill_ms = gw__now_ms(w);
    cs->held_tail = &cs->held;
    snprintf(cs->sid, sizeof cs->sid, "%s", gw_session_sid(gw_socket_session(sock)));
    cs->next = cw->socks;
    if (cw->socks)
        cw->socks->prev = cs;
    cw->socks = cs;
    gw_socket_set_data(sock, cs);
    if (!cw->insecure) {
        const char *name = claims.name[0] ? claims.name : claims.sub;
        cs->first_name = pr_strndup(name, strlen(name));
        user_attach(cw, cs, claims.sub);
        token_arm(cw, cs, claims.exp);
    } else {
        /* tutorials may already say who they are in the handshake */
        const char *uid = json_string_value(json_object_get(auth, "userId"));
        if (uid && chat_id_valid(uid, strlen(uid)))
            user_attach(cw, cs, uid);
    }
    if (!cw->storage || !cs->user) {
        cs->accepted = 1; /* insecure-dev without a user: rooms come with its first event */
        return 0;
    }
    read_recovery(cw, cs, auth);
    start_session(cw, cs);
    return GW_CONNECT_PENDING;
}

static void chat_event(gw_socket *sock, const char *event, const sio_packet *p)
{
    chat_worker *cw = CW(gw_socket_worker(sock));
    chat_sock *cs = gw_socket_data(sock);
    if (gw__th_queued(&cs->exp_node) && gw__now_ms(cw->w) >= cs->exp_node.deadline_ms) {
        /* exp passed but its timer has not run yet: nothing more is done for
         * this token; the socket ends on the next turn of the loop (not
         * inside its own callback) */
        reply_error(sock, event, p->id, "token expired");
        gw__th_add(&cw->exp_th, &cs->exp_node, gw__now_ms(cw->w));
        return;
    }
    chat_args a;
    int rc = chat_parse_args(json_array_get(p->data, 1), cw->cfg->max_text_length, &a);
    if (cw->insecure && rc == 0 && a.user_id && !cs->user) {
        /* --auth insecure-dev: the socket is the first userId it names, and
         * that user's bucket pays from this event on */
        user_attach(cw, cs, a.user_id);
        if (cw->storage)
            start_session(cw, cs); /* its rooms and undelivered messages */
    }
    if (!take_token(cw, cs)) {
        reply_error(sock, event, p->id, "rate limited");
        return;
    }
    if (rc != 0) {
        reply_error(sock, event, p->id, rc == PR_ETOOBIG ? "text too long" : "invalid payload");
        return;
    }
    req q = {cw, cs, sock, event, p->id, &a, NULL, NULL};
    char fname[CHAT_NAME_MAX + 1];
    if (cw->insecure) {
        /* --auth insecure-dev: whoever the payload says, as the tutorials do */
        if (!a.user_id) {
            reply_error(sock, event, p->id, "invalid payload");
            return;
        }
        q.uid = a.user_id;
        snprintf(fname, sizeof fname, "%s", a.first_name ? a.first_name : a.user_id);
        q.fname = fname;
    } else {
        q.uid = cs->user->e.key; /* the token's, whatever the payload says */
        q.fname = cs->first_name;
        a.last_name = NULL;
    }
    if (!strcmp(event, "joinChat"))
        on_join_chat(&q);
    else if (!strcmp(event, "joinRoom"))
        on_join_room(&q);
    else if (!strcmp(event, "leaveChat") || !strcmp(event, "leaveRoom"))
        on_leave(&q);
    else if (!strcmp(event, "sendMessage"))
        on_send_message(&q);
    else if (!strcmp(event, "typing"))
        on_typing(&q);
    else if (!strcmp(event, "getOnline"))
        on_get_online(&q);
    else if (!strcmp(event, "markSeen") && cw->storage)
        on_mark_seen(&q);
    else
        reply_error(sock, event, p->id, "unknown event");
}

static void chat_disconnect(gw_socket *sock, const char *reason)
{
    (void)reason;
    chat_worker *cw = CW(gw_socket_worker(sock));
    chat_sock *cs = gw_socket_data(sock);
    if (!cs)
        return;
    /* the record outlives the socket by the window: the client may come back */
    if (cw->storage && cs->accepted && cs->pid)
        pexpire_record(cw, cs);
    gw__th_del(&cw->exp_th, &cs->exp_node);
    if (cw->storage) {
        gw__tq_del(&cw->wait_tq, &cs->wait);
        free_held(cs);
        free_vectors(cs);
        free_due_joins(cs);
    }
    while (cs->rooms) {
        chat_member *m = cs->rooms;
        cs->rooms = m->snext;
        room_unlink(cw, m);
    }
    free_unread(cs);
    user_detach(cw, cs);
    if (cs->prev)
        cs->prev->next = cs->next;
    else
        cw->socks = cs->next;
    if (cs->next)
        cs->next->prev = cs->prev;
    pr_free(cs->first_name);
    pr_free(cs->pid);
    gw__pool_put(&sock_pool, cs);
}

/* ---- worker life ---- */

/* Every third of the window: the records of connected sessions stay. */
static void renew_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    chat_worker *cw = arg;
    if (!gw_redis_ready(cw->redis))
        return;
    for (chat_sock *cs = cw->socks; cs; cs = cs->next)
        if (cs->accepted && cs->pid)
            pexpire_record(cw, cs);
}

static void storage_init(chat_worker *cw)
{
    gw_worker *w = cw->w;
    const gw_config *cfg = cw->cfg;
    cw->nshards = cfg->ingest_shards;
    cw->pos = pr_calloc(cw->nshards, sizeof *cw->pos);
    snprintf(cw->reply_channel, sizeof cw->reply_channel, "gw:{%s.%d}", cfg->node_id, w->index);
    smap_init(&cw->receipts);
    cw->rbufs = pr_calloc(2 * (size_t)cw->nshards, sizeof *cw->rbufs);
    for (unsigned i = 0; i < 2 * cw->nshards; i++)
        pr_buf_init(&cw->rbufs[i], RECEIPT_BUF_MAX);
    cw->receipt_timer = evtimer_new(w->base, receipt_flush, cw);
    gw__tq_init(&cw->wait_tq, w, cfg->replay_timeout_ms, wait_timeout);
    smap_init(&cw->joins);
    gw__tq_init(&cw->join_tq, w, cfg->join_timeout_ms, join_timeout);
    cw->drop_ev = event_new(w->base, -1, 0, drop_cb, cw);
    cw->retry_timer = evtimer_new(w->base, retry_tick, cw);
    if (cfg->recovery_window_s) {
        cw->renew_timer = event_new(w->base, -1, EV_PERSIST, renew_tick, cw);
        unsigned period = cfg->recovery_window_s * 1000u / 3;
        struct timeval tv = {period / 1000, (period % 1000) * 1000};
        event_add(cw->renew_timer, &tv);
    }
    gw_redis_subscribe(cw->redis, pr_view_make(cw->reply_channel, strlen(cw->reply_channel)));
    gw_redis_set_lost_cb(cw->redis, on_sub_lost);
}

static void storage_dispose(chat_worker *cw)
{
    if (cw->renew_timer)
        event_free(cw->renew_timer);
    event_free(cw->receipt_timer);
    event_free(cw->drop_ev);
    event_free(cw->retry_timer);
    gw__tq_dispose(&cw->wait_tq);
    gw__tq_dispose(&cw->join_tq);
    /* joins still waiting: their subscription callbacks ran in gw_redis_free */
    for (size_t i = 0; i < cw->joins.nb; i++)
        for (sentry *e = cw->joins.b[i], *next; e; e = next) {
            next = e->next;
            join_ctx *x = GW_CONTAINER_OF(e, join_ctx, e);
            pr_free(e->key);
            json_decref(x->answer);
            pr_free(x);
        }
    pr_free(cw->joins.b);
    for (size_t i = 0; i < cw->receipts.nb; i++)
        for (sentry *e = cw->receipts.b[i], *next; e; e = next) {
            next = e->next;
            pr_free(e->key);
            pr_free(e);
        }
    pr_free(cw->receipts.b);
    for (unsigned i = 0; i < 2 * cw->nshards; i++)
        pr_buf_dispose(&cw->rbufs[i]);
    pr_free(cw->rbufs);
    pr_free(cw->pos);
}

static int chat_worker_init(gw_worker *w, void **state)
{
    const gw_config *cfg = w->cfg;
    pthread_once(&lua_once, lua_hash);
    chat_worker *cw = pr_calloc(1, sizeof *cw);
    cw->w = w;
    cw->cfg = cfg;
    cw->insecure = !strcmp(cfg->auth, "insecure-dev");
    cw->storage = cfg->storage;
    smap_init(&cw->rooms);
    smap_init(&cw->users);
    chat_dm_key(cfg->room_secret, cfg->jwt_secret, cw->room_key);
    snprintf(cw->member, sizeof cw->member, "%s/%d", cfg->node_id, w->index);
    unsigned char rnd[6];
    RAND_bytes(rnd, sizeof rnd);
    snprintf(cw->msg_prefix, sizeof cw->msg_prefix, "%02x%02x%02x%02x%02x%02x%02x-", rnd[0],
             rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], (unsigned)w->index & 0xff);
    gw_redis_addr addr;
    if (pr_redis_url_parse(cfg->redis_url, &addr) != 0)
        return -1;
    *state = cw; /* before Redis: its callbacks look the worker state up */
    cw->redis = gw_redis_new(w, &addr, on_redis_message, on_redis_ready, cw);
    gw_redis_subscribe(cw->redis, PR_VIEW_LIT(ALL_CHANNEL));
    if (cw->storage)
        storage_init(cw);
    gw__th_init(&cw->exp_th, w, token_expired);
    cw->presence_timer = event_new(w->base, -1, EV_PERSIST, presence_tick, cw);
    unsigned period = cfg->presence_ttl_ms / 3;
    struct timeval tv = {period / 1000, (period % 1000) * 1000};
    event_add(cw->presence_timer, &tv);
    return 0;
}

static void chat_worker_dispose(gw_worker *w, void *state)
{
    (void)w;
    chat_worker *cw = state;
    event_free(cw->presence_timer);
    gw__th_dispose(&cw->exp_th);
    if (cw->storage && evtimer_pending(cw->receipt_timer, NULL))
        receipt_flush(-1, 0, cw); /* what the last sockets saw */
    gw_redis_free(cw->redis); /* pending callbacks run now, with NULL replies */
    if (cw->storage)
        storage_dispose(cw);
    pr_free(cw->rooms.b);
    pr_free(cw->users.b);
    pr_free(cw);
}

static int chat_ready(gw_worker *w)
{
    chat_worker *cw = CW(w);
    return cw && gw_redis_ready(cw->redis);
}

static const char *const chat_namespaces[] = {"/", NULL};

const gw_app gw_app_chat = {
    .name = "chat",
    .socketio = 1,
    .default_path = "/socket.io/",
    .namespaces = chat_namespaces,
    .worker_init = chat_worker_init,
    .worker_dispose = chat_worker_dispose,
    .ready = chat_ready,
    .on_connect = chat_connect,
    .on_event = chat_event,
    .on_disconnect = chat_disconnect,
    .on_consumed = chat_consumed,
};
