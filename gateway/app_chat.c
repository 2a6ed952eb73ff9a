/*
 * app_chat.c - the chat application (--app chat): identity, direct rooms,
 * messages, typing, presence, shared between gateways through Redis.
 *
 * Per worker: a map of rooms with local members (each subscribed on Redis
 * while it has one), a map of users with local sockets (each registered as
 * online in Redis while it has one), and the worker's Redis connections.
 * A room event is one PUBLISH of an envelope holding the Socket.IO packet
 * text; every worker subscribed to the room frames it once and queues the
 * same bytes on each local member (gw_blob).
 *
 * Emit semantics (all used below):
 *   to the sender only          emit_to_sender()   chatError
 *   to a room, sender included  publish_room()     messageReceived
 *   to a room except the sender publish_room(except user) showTyping, presence
 *   to every socket             deliver_all()      announcement (chat-gateway announce)
 *
 * Redis keys carry hash tags so each command touches one slot:
 *   {r:ROOM}:members   set of the room's user ids
 *   {u:USER}:rooms     set of the user's room ids
 *   {pN}:on:USER       zset: member "NODE/WORKER", score = expiry (ms)
 *   {pN}:exp           zset: member "USER NODE/WORKER", score = expiry (ms)
 * Channels: room:{ROOM} per room, chat:all for announcements.
 */
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
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

typedef struct chat_member chat_member;

/* An entry of a string-keyed map (rooms, users). */
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
} chat_user;

typedef struct chat_sock {
    gw_socket *sock;
    chat_user *user;    /* NULL until known (insecure-dev before its first event) */
    chat_member *rooms; /* via snext */
    struct chat_sock *prev, *next; /* every chat socket of the worker */
    double tokens;      /* rate-limit bucket */
    uint64_t refill_ms;
    char first_name[CHAT_NAME_MAX + 1]; /* from the token (jwt) */
} chat_sock;

struct chat_member {
    chat_room *room;
    chat_sock *cs;
    chat_member *rprev, *rnext; /* in room->members */
    chat_member *snext;         /* in cs->rooms */
};

typedef struct {
    gw_worker *w;
    const gw_config *cfg;
    int insecure;
    gw_redis *redis;
    smap rooms, users;
    chat_sock *socks;
    struct event *presence_timer;
    unsigned char room_key[32];
    char member[96]; /* "NODE/WORKER": this worker in presence sets */
    uint64_t msg_counter;
    char msg_prefix[24];
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

static unsigned presence_shard(const char *uid)
{
    return (unsigned)(str_hash(uid, strlen(uid)) % PRESENCE_SHARDS);
}

/* Direct room of two users: a keyed hash of the sorted pair, so both orders
 * give the same id and nobody can compute it without the key. */
static void dm_room_id(const chat_worker *cw, const char *a, const char *b, char out[32])
{
    if (strcmp(a, b) > 0) {
        const char *t = a;
        a = b;
        b = t;
    }
    pr_buf in;
    pr_buf_init(&in, 2 * CHAT_ID_MAX + 2);
    pr_buf_append(&in, a, strlen(a));
    pr_buf_append_byte(&in, '\n');
    pr_buf_append(&in, b, strlen(b));
    unsigned char mac[32];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), cw->room_key, sizeof cw->room_key, (const unsigned char *)in.ptr, in.len,
         mac, &maclen);
    pr_buf_dispose(&in);
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    memcpy(out, "dm_", 3);
    for (int i = 0; i < 22; i++) /* 132 bits */
        out[3 + i] = b64[mac[i] & 63];
    out[25] = '\0';
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

/* ---- delivery of room events (from Redis) ---- */

/* Frames the packet once; the same blob goes to every local recipient. */
static gw_blob *packet_blob(pr_view packet)
{
    gw_blob *b = gw__blob_ws_frame(WSLAY_TEXT_FRAME, packet.len + 1);
    b->data[b->hdr] = '4'; /* Engine.IO message */
    memcpy(b->data + b->hdr + 1, packet.ptr, packet.len);
    return b;
}

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

static void on_redis_message(gw_redis *r, pr_view channel, pr_view message, void *arg)
{
    (void)r;
    (void)channel;
    chat_worker *cw = arg;
    chat_env h;
    pr_view packet;
    GW_STAT_ADD(cw->w, room_events_in, 1);
    if (chat_env_decode(message, &h, &packet) != 0) {
        GW_WARN_RATELIMITED("event=bad_envelope worker=%d len=%zu", cw->w->index, message.len);
        return;
    }
    if (pr_view_eq_cstr(h.room, ALL_ROOM))
        deliver_all(cw, packet);
    else
        deliver_room(cw, &h, packet);
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

static void presence_keys(const char *uid, char *on, size_t on_n, char *exp, size_t exp_n)
{
    unsigned s = presence_shard(uid);
    snprintf(on, on_n, "{p%u}:on:%s", s, uid);
    snprintf(exp, exp_n, "{p%u}:exp", s);
}

typedef struct {
    chat_worker *cw;
    int online;
    char uid[CHAT_ID_MAX + 1];
} presence_ctx;

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
    presence_ctx *x = pr_calloc(1, sizeof *x);
    x->cw = cw;
    x->online = online;
    snprintf(x->uid, sizeof x->uid, "%s", uid);
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
    /* online: nobody else had the user (0 before); offline: nobody left */
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0)
        publish_presence(x->cw, x->uid, x->online);
    else if (rep && rep->type == REDIS_REPLY_ERROR)
        GW_WARN_RATELIMITED("event=presence_script_error err=\"%s\"", rep->str);
    pr_free(x);
}

static void presence_update(chat_worker *cw, const char *uid, int online)
{
    char on[CHAT_ID_MAX + 32], exp[32], expiry[24], now[24], numkeys[] = "2";
    presence_keys(uid, on, sizeof on, exp, sizeof exp);
    uint64_t t = wall_ms();
    snprintf(now, sizeof now, "%llu", (unsigned long long)t);
    snprintf(expiry, sizeof expiry, "%llu", (unsigned long long)(t + cw->cfg->presence_ttl_ms));
    presence_ctx *x = pr_calloc(1, sizeof *x);
    x->cw = cw;
    x->online = online;
    snprintf(x->uid, sizeof x->uid, "%s", uid);
    int rc;
    if (online) {
        const char *argv[] = {"EVAL", presence_online_lua, numkeys, on, exp, cw->member, expiry,
                              now, uid};
        rc = redis_cmd(cw, presence_changed_cb, x, 9, argv);
    } else {
        const char *argv[] = {"EVAL", presence_offline_lua, numkeys, on, exp, cw->member, now,
                              uid};
        rc = redis_cmd(cw, presence_changed_cb, x, 8, argv);
    }
    if (rc != 0)
        pr_free(x); /* Redis is down: the refresh after reconnecting catches up */
}

static void sweep_cb(gw_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    chat_worker *cw = arg;
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
            const char *argv[] = {"EVAL", presence_sweep_lua, "1", key, now, prefix};
            redis_cmd(cw, sweep_cb, cw, 6, argv);
        }
    }
    gw__worker_schedule_flush(cw->w);
}

static void on_redis_ready(gw_redis *r, void *arg)
{
    (void)r;
    presence_tick(-1, 0, arg); /* re-register our users at once */
}

/* ---- users and rooms ---- */

static void user_attach(chat_worker *cw, chat_sock *cs, const char *uid)
{
    size_t len = strlen(uid);
    chat_user *u = (chat_user *)smap_get(&cw->users, uid, len);
    if (!u) {
        u = pr_calloc(1, sizeof *u);
        smap_put(&cw->users, &u->e, uid, len);
    }
    cs->user = u;
    if (u->nsockets++ == 0)
        presence_update(cw, uid, 1);
}

static void user_detach(chat_worker *cw, chat_sock *cs)
{
    chat_user *u = cs->user;
    cs->user = NULL;
    if (!u || --u->nsockets > 0)
        return;
    presence_update(cw, u->e.key, 0);
    smap_del(&cw->users, &u->e);
    pr_free(u);
}

static chat_member *find_membership(chat_sock *cs, const char *room)
{
    for (chat_member *m = cs->rooms; m; m = m->snext)
        if (!strcmp(m->room->e.key, room))
            return m;
    return NULL;
}

static void room_join(chat_worker *cw, chat_sock *cs, const char *room_id)
{
    if (find_membership(cs, room_id))
        return;
    size_t len = strlen(room_id);
    chat_room *room = (chat_room *)smap_get(&cw->rooms, room_id, len);
    if (!room) {
        room = pr_calloc(1, sizeof *room);
        smap_put(&cw->rooms, &room->e, room_id, len);
        char channel[CHAT_ID_MAX + 16];
        room_channel(channel, sizeof channel, room_id);
        gw_redis_subscribe(cw->redis, pr_view_make(channel, strlen(channel)));
    }
    chat_member *m = pr_calloc(1, sizeof *m);
    m->room = room;
    m->cs = cs;
    m->rnext = room->members;
    if (room->members)
        room->members->rprev = m;
    room->members = m;
    room->nmembers++;
    m->snext = cs->rooms;
    cs->rooms = m;
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

/* Remembers in Redis who belongs to a direct room (for presence and
 * getOnline); the room id itself is the proof of membership. */
static void record_dm(chat_worker *cw, const char *room, const char *a, const char *b)
{
    char rk[CHAT_ID_MAX + 16], ua[CHAT_ID_MAX + 16], ub[CHAT_ID_MAX + 16];
    snprintf(rk, sizeof rk, "{r:%s}:members", room);
    snprintf(ua, sizeof ua, "{u:%s}:rooms", a);
    snprintf(ub, sizeof ub, "{u:%s}:rooms", b);
    const char *m[] = {"SADD", rk, a, b};
    const char *x[] = {"SADD", ua, room};
    const char *y[] = {"SADD", ub, room};
    redis_cmd(cw, NULL, NULL, 4, m);
    redis_cmd(cw, NULL, NULL, 3, x);
    redis_cmd(cw, NULL, NULL, 3, y);
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

/* ---- sendMessage ---- */

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

static void send_failed(send_ctx *x)
{
    gw_socket *sock = gw_socket_find(x->cw->w, x->sid, "/");
    if (sock)
        reply_error(sock, "sendMessage", x->ack_id, "unavailable");
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
 * (>= 32 bytes). */
static const char *event_room(const req *q, char *room, size_t n, int auto_join)
{
    if (q->a->target_user_id) {
        dm_room_id(q->cw, q->uid, q->a->target_user_id, room);
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

typedef struct {
    chat_worker *cw;
    int64_t ack_id;
    char sid[GW_SID_LEN + 1];
    char room[32];
} join_ctx;

/* The ack of a join means "you will receive what is sent from now on". */
static void join_subscribed(gw_redis *r, int ok, void *arg)
{
    (void)r;
    (void)ok; /* Redis down: joined locally; sends fail until it is back */
    join_ctx *x = arg;
    gw_socket *sock = gw_socket_find(x->cw->w, x->sid, "/");
    if (sock)
        reply_ok(sock, x->ack_id, json_pack("{ss}", "roomId", x->room));
    pr_free(x);
}

static void on_join_chat(const req *q)
{
    if (!q->a->target_user_id) {
        reply_error(q->sock, q->event, q->ack_id, "invalid payload");
        return;
    }
    join_ctx *x = pr_calloc(1, sizeof *x);
    x->cw = q->cw;
    x->ack_id = q->ack_id;
    snprintf(x->sid, sizeof x->sid, "%s", gw_session_sid(gw_socket_session(q->sock)));
    dm_room_id(q->cw, q->uid, q->a->target_user_id, x->room);
    room_join(q->cw, q->cs, x->room);
    record_dm(q->cw, x->room, q->uid, q->a->target_user_id);
    when_room_subscribed(q->cw, x->room, join_subscribed, x);
}

static void on_leave(const req *q)
{
    char room[CHAT_ID_MAX + 1];
    if (q->a->target_user_id && !strcmp(q->event, "leaveChat"))
        dm_room_id(q->cw, q->uid, q->a->target_user_id, room);
    else if (q->a->room_id && !strcmp(q->event, "leaveRoom"))
        snprintf(room, sizeof room, "%s", q->a->room_id);
    else {
        reply_error(q->sock, q->event, q->ack_id, "invalid payload");
        return;
    }
    room_leave(q->cw, q->cs, room);
    reply_ok(q->sock, q->ack_id, json_pack("{sb}", "ok", 1));
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
    send_ctx *x = pr_calloc(1, sizeof *x);
    x->cw = cw;
    x->ack_id = q->ack_id;
    snprintf(x->sid, sizeof x->sid, "%s", gw_session_sid(gw_socket_session(q->sock)));
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

static int take_token(chat_worker *cw, chat_sock *cs)
{
    uint64_t now = gw__now_ms(cw->w);
    cs->tokens += (double)(now - cs->refill_ms) * cw->cfg->rate_limit / 1000.0;
    if (cs->tokens > cw->cfg->rate_burst)
        cs->tokens = cw->cfg->rate_burst;
    cs->refill_ms = now;
    if (cs->tokens < 1.0)
        return 0;
    cs->tokens -= 1.0;
    return 1;
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
    chat_sock *cs = pr_calloc(1, sizeof *cs);
    cs->sock = sock;
    cs->tokens = cw->cfg->rate_burst;
    cs->refill_ms = gw__now_ms(w);
    cs->next = cw->socks;
    if (cw->socks)
        cw->socks->prev = cs;
    cw->socks = cs;
    gw_socket_set_data(sock, cs);
    if (!cw->insecure) {
        snprintf(cs->first_name, sizeof cs->first_name, "%s",
                 claims.name[0] ? claims.name : claims.sub);
        user_attach(cw, cs, claims.sub);
    } else {
        /* tutorials may already say who they are in the handshake */
        const char *uid = json_string_value(json_object_get(auth, "userId"));
        if (uid && chat_id_valid(uid, strlen(uid)))
            user_attach(cw, cs, uid);
    }
    return 0;
}

static void chat_event(gw_socket *sock, const char *event, const sio_packet *p)
{
    chat_worker *cw = CW(gw_socket_worker(sock));
    chat_sock *cs = gw_socket_data(sock);
    if (!take_token(cw, cs)) {
        reply_error(sock, event, p->id, "rate limited");
        return;
    }
    chat_args a;
    int rc = chat_parse_args(json_array_get(p->data, 1), cw->cfg->max_text_length, &a);
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
        if (!cs->user)
            user_attach(cw, cs, a.user_id);
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
    else if (!strcmp(event, "leaveChat") || !strcmp(event, "leaveRoom"))
        on_leave(&q);
    else if (!strcmp(event, "sendMessage"))
        on_send_message(&q);
    else if (!strcmp(event, "typing"))
        on_typing(&q);
    else if (!strcmp(event, "getOnline"))
        on_get_online(&q);
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
    while (cs->rooms) {
        chat_member *m = cs->rooms;
        cs->rooms = m->snext;
        room_unlink(cw, m);
    }
    user_detach(cw, cs);
    if (cs->prev)
        cs->prev->next = cs->next;
    else
        cw->socks = cs->next;
    if (cs->next)
        cs->next->prev = cs->prev;
    pr_free(cs);
}

/* ---- worker life ---- */

static int chat_worker_init(gw_worker *w, void **state)
{
    const gw_config *cfg = w->cfg;
    chat_worker *cw = pr_calloc(1, sizeof *cw);
    cw->w = w;
    cw->cfg = cfg;
    cw->insecure = !strcmp(cfg->auth, "insecure-dev");
    smap_init(&cw->rooms);
    smap_init(&cw->users);
    if (cfg->room_secret[0])
        SHA256((const unsigned char *)cfg->room_secret, strlen(cfg->room_secret), cw->room_key);
    else if (cfg->jwt_secret[0])
        HMAC(EVP_sha256(), cfg->jwt_secret, (int)strlen(cfg->jwt_secret),
             (const unsigned char *)"chat direct room ids v1", 23, cw->room_key, NULL);
    else /* insecure-dev without secrets: room ids are guessable, as everything else is */
        SHA256((const unsigned char *)"insecure-dev room ids", 21, cw->room_key);
    snprintf(cw->member, sizeof cw->member, "%s/%d", cfg->node_id, w->index);
    unsigned char rnd[6];
    RAND_bytes(rnd, sizeof rnd);
    snprintf(cw->msg_prefix, sizeof cw->msg_prefix, "%02x%02x%02x%02x%02x%02x%02x-", rnd[0],
             rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], (unsigned)w->index & 0xff);
    gw_redis_addr addr;
    if (gw_redis_parse_url(cfg->redis_url, &addr) != 0)
        return -1;
    *state = cw; /* before Redis: its callbacks look the worker state up */
    cw->redis = gw_redis_new(w, &addr, on_redis_message, on_redis_ready, cw);
    gw_redis_subscribe(cw->redis, PR_VIEW_LIT(ALL_CHANNEL));
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
    gw_redis_free(cw->redis); /* pending callbacks run now, with NULL replies */
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
};
