/*
 * gc.h - private header of the chat application (gateway/chat/, --app chat):
 * identity, rooms, messages, typing, presence, shared between gateways
 * through Redis; with --storage on (the default) messages are stored by
 * chat-storage before anyone sees them (docs/storage.md is the contract).
 *
 * Names: gc_ types, gc__ functions shared between the files of gateway/chat
 * (never used outside it), static otherwise. The chat reaches the transport
 * only through app.h (never a gw_*.h), and Redis through cm_redis.h. What it
 * writes to Redis and to clients is proto's chat contract (chat.h): key and
 * channel names (chat_keys.h), stream entries (chat_entry.h), packets and
 * ack objects (chat_packets.h).
 *
 * Files: app.c (gw_app table, connect/disconnect, event dispatch table,
 * worker life), events.c, send.c, join.c (event handlers), rooms.c (users,
 * rooms, direct rooms), session.c (a storage socket's phases), deliver.c
 * (envelopes from Redis, writing to sockets), receipts.c, presence.c,
 * util.c (maps, names, Redis commands, replies, finding sockets again).
 *
 * Per worker: a map of rooms with local members (each subscribed on Redis
 * while it has one), a map of users with local sockets (each registered as
 * online in Redis, and subscribed to user:{USER} with storage, while it has
 * one), and the worker's Redis connections. A room event is one PUBLISH of an
 * envelope holding the Socket.IO packet text; every worker subscribed to the
 * room frames it once and queues the same bytes on each local member
 * (gw_blob).
 *
 * Emit semantics:
 *   to the sender only          gc__reply_error()  chatError
 *   to a room, sender included  gc__publish() / M1 from storage   messageReceived
 *   to a room except the sender gc__publish(except user) showTyping, presence
 *   to every socket of a user   U1 from storage    messageStatus, roomAdded, roomRemoved
 *   to every socket             chat:all (deliver.c) announcement (chat-gateway announce)
 * Acks and chatError carry the objects proto renders (gc__ack, gc__reply_*).
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
 * The Redis keys and channels the chat uses, and what they hold:
 * proto/chat_keys.h.
 */
#ifndef GC_H
#define GC_H

#include <event2/event.h>
#include <jansson.h>
#include <stdint.h>

#include "app.h"
#include "chat.h"
#include "cm_clock.h"
#include "cm_log.h"
#include "cm_redis.h"
#include "cm_tbucket.h"
#include "config.h"
#include "pr.h"
#include "pr_map.h"

#define PID_LEN 22       /* 132 random bits, base64url */
#define PID_MAX 64       /* longest pid accepted from a client */
#define REQ_ID_MAX 48    /* "SID.GEN" */
#define RECEIPT_BUF_MAX (1u << 20) /* lines per XADD field, then another XADD */
#define GC_PRESENCE_BATCH 200 /* users renewed per script call (presence.c) */
#define GC_RELAY_MAX (1u << 26) /* a stored packet with its offset (deliver.c) */

typedef struct gc_member gc_member;
typedef struct gc_sock gc_sock;

/* An entry of a map that owns copies of its keys (rooms, users, receipts,
 * joins): a pr_map whose records start with a gc_entry. */
typedef struct gc_entry {
    pr_map_entry link;
    size_t len;
    char *key; /* NUL-terminated, owned */
} gc_entry;

typedef pr_map gc_map;

typedef struct {
    gc_entry e;
    gc_member *members; /* local sockets in the room */
    unsigned nmembers;
} gc_room;

typedef struct {
    gc_entry e;
    unsigned nsockets; /* local sockets of this user on this worker */
    gc_sock *socks;  /* via unext */
    gw_rl *rl;         /* the user's rate-limit bucket, shared by the workers */
} gc_user;

/* A stored message held for a socket that is catching up. */
typedef struct gc_held {
    struct gc_held *next;
    gw_blob *blob; /* the packet as relayed live, offset included */
    int64_t seq;
    uint8_t own;   /* sent by the socket's user: no receipt */
    char room[];
} gc_held;

/* A delivery the client has not proved it read yet (long-polling): its
 * receipts wait for the transport's on_consumed. */
typedef struct gc_unread {
    struct gc_unread *next;
    uint64_t mark; /* gw_socket_unread_mark after it was queued */
    int64_t seq;
    uint8_t open; /* the room was open: seen once read */
    char room[];
} gc_unread;

/* Phases of a storage socket (docs/storage.md, Recovery); session.c. */
enum {
    GC_LIVE = 0,  /* messages are written as they come */
    GC_STARTING,  /* reading the session record, positions and rooms; subscribing */
    GC_CATCHUP,   /* waiting for storage's sync or replay: live messages held */
    GC_WAITING,   /* Redis failed the start: it starts again once Redis is back */
    GC_GONE,      /* disconnected: whatever waited is dropped */
};

struct gc_sock {
    gw_socket *sock;
    gc_user *user;    /* NULL until known (insecure-dev before its first event) */
    gc_member *rooms; /* via snext */
    struct gc_sock *prev, *next; /* every chat socket of the worker */
    struct gc_sock *unext;       /* the user's sockets */
    cm_tbucket bucket;  /* rate limit while the socket has no user */
    char *first_name;   /* from the token (jwt); NULL under insecure-dev */
    gw_th_node exp_node; /* the token's exp (jwt): the socket ends then */
    char sid[GW_SID_LEN + 1]; /* the session: how asynchronous work finds us */
    /* storage */
    uint8_t phase;      /* GC_*, written only by gc__set_phase */
    uint8_t accepted;   /* the CONNECT reply went out */
    uint8_t recovering; /* the CONNECT waits for a replay */
    uint8_t have_record; /* rec holds a valid session record of this user */
    uint8_t record_gone; /* the client brought a pid whose record is not there */
    struct gc_join *acks_due; /* join acks held until the catch-up is over (gc__set_phase) */
    uint8_t resync;     /* a room's subscription was confirmed while not live: the
                         * sync in flight may predate it, so sync again once live */
    uint32_t gen;       /* callbacks of an older generation are stale */
    unsigned subs_pending; /* start: reads and subscriptions still out (session.c) */
    char *pid;          /* recovery: the session's pid; NULL when none */
    uint64_t *offset;   /* the client's offset (recovery), or NULL */
    uint64_t *rec;      /* the session record's vector (recovery) */
    uint64_t *fresh;    /* {st}:pos when the session started */
    gc_held *held, **held_tail;
    unsigned nheld;
    gw_th_node wait;    /* replay timeout, in cw->wait_th while GC_CATCHUP */
    gc_unread *unread, *unread_last; /* receipts waiting for on_consumed */
};

struct gc_member {
    gc_room *room;
    gc_sock *cs;
    gc_member *rprev, *rnext; /* in room->members */
    gc_member *snext;         /* in cs->rooms */
    uint8_t open;               /* opened (joinChat/joinRoom): deliveries are seen */
    uint8_t open_due;           /* opened while a sync was in flight: receipt once live */
    int64_t last_seq;           /* highest seq written to this socket: never twice */
};

/* Receipts waiting for the next flush, per (room, user). */
typedef struct {
    gc_entry e;       /* key "ROOM\tUSER" */
    size_t room_len;
    int64_t delivered; /* 0: none */
    int64_t seen;      /* 0: none; -1: everything so far */
} gc_receipt;

/* A socket found again by asynchronous work. */
typedef struct gc_ref {
    struct gc_worker *cw;
    uint32_t gen;
    char sid[GW_SID_LEN + 1];
} gc_ref;

typedef struct gc_worker {
    gw_worker *w;
    int index;              /* the worker's, for logs */
    const gw_config *cfg;
    int insecure;
    int storage;
    cm_redis *redis;
    gc_map rooms, users, receipts;
    gc_sock *socks;
    struct event *presence_timer;
    unsigned presence_batch; /* users per renewal call: GC_PRESENCE_BATCH (tests: fewer) */
    gw_th exp_th;           /* sockets by their token's exp (jwt) */
    unsigned char room_key[32];
    chat_key member;        /* "NODE/WORKER": this worker in presence sets */
    uint64_t msg_counter;
    char msg_prefix[24];
    /* storage */
    unsigned nshards;
    uint64_t *pos;          /* last shard position received, per shard */
    pr_buf relay;           /* scratch of deliver.c: a packet with its offset */
    chat_key reply_channel; /* "gw:{NODE.W}": acks and replay replies */
    uint32_t gen;
    struct event *receipt_timer; /* armed while receipts wait */
    pr_buf *rbufs;          /* flush scratch: d and v lines per shard */
    struct event *renew_timer;   /* session records */
    gw_th wait_th;          /* sockets waiting for a sync or replay (GC_CATCHUP) */
    struct event *drop_ev;  /* drops every session: the subscription link was lost */
    struct event *retry_timer; /* starts GC_WAITING sockets again */
    gc_map joins;             /* joinChat acks waiting for storage's answer (gc_join) */
    gw_th join_th;          /* ... until --join-timeout */
    uint8_t cache_seen;     /* {st}:cache was there once: now its absence means a loss */
    uint64_t cache_built_ms; /* when storage last rebuilt the cache (wall clock), 0: unknown */
} gc_worker;

/* An event being handled: who sent it, what it says, where to answer. */
typedef struct {
    gc_worker *cw;
    gc_sock *cs;
    gw_socket *sock;
    const char *event;
    int64_t ack_id;
    const chat_args *a;
    const char *uid;   /* who is acting */
    const char *fname; /* their first name */
} gc_req;

typedef struct gc_join gc_join;
/* A join waiting for its room's subscription and, for a joinChat with
 * storage whose client wants the ack, for storage's answer to the "open"
 * entry too (waiting: in cw->joins by "SID\tACKID" and in cw->join_th).
 * Freed by whichever of the two comes last: join_subscribed always runs
 * once; the answer, a failed XADD or the timeout end the wait. */
struct gc_join {
    gc_entry e;
    gw_th_node wait;
    gc_worker *cw;
    int64_t ack_id;
    uint8_t waiting;    /* for storage's answer */
    uint8_t subscribed; /* join_subscribed ran */
    char *answer;       /* the ack's object: storage's error (or ours), NULL: the room exists */
    gc_join *next_due; /* in the socket's acks_due */
    char sid[GW_SID_LEN + 1];
    char room[CHAT_ID_MAX + 1];
};

/* The app's counters (gw_app.counters, in this order). */
enum { GC_COUNT_EVENTS_IN, GC_COUNT_DELIVERIES, GC_COUNT_PUBLISHED, GC_COUNT_PUBLISH_FAILURES };

static inline gc_worker *gc__cw(gw_worker *w)
{
    return gw_worker_app(w);
}

/* ---- util.c: string maps, time stamps, Redis commands, replies, refs ---- */
void gc__map_init(gc_map *m);
gc_entry *gc__map_get(gc_map *m, const char *key, size_t len);
void gc__map_put(gc_map *m, gc_entry *e, const char *key, size_t len); /* key is copied */
void gc__map_del(gc_map *m, gc_entry *e); /* unlinks e and frees its key, not e */
/* Frees every entry (its key, then free_entry(e)) and the table. */
void gc__map_free(gc_map *m, void (*free_entry)(gc_entry *e));
void gc__iso_time(char out[48], uint64_t ms);
int gc__view_is(pr_view v, const char *s, size_t len);
/* snprintf(dst, n, "%s", src) without the printf machinery (per message). */
void gc__copy(char *dst, size_t n, const char *src);
/* Redis commands; cb may be NULL. argv: NUL-terminated strings (at most 16). */
int gc__redis_cmd(gc_worker *cw, cm_redis_reply_cb cb, void *arg, int argc, const char **argv);
int gc__redis_xadd(gc_worker *cw, chat_xadd *x, cm_redis_reply_cb cb, void *arg);
int gc__redis_publish(gc_worker *cw, pr_view channel, pr_view message, cm_redis_reply_cb cb,
                      void *arg);
/* PUBLISH a C envelope to room's channel (chat:all for CHAT_ROOM_ALL),
 * counted in the app's counters; cb may be NULL. */
int gc__publish(gc_worker *cw, const char *room, const char *except_user, pr_view packet,
                cm_redis_reply_cb cb, void *arg);
/* Acks ack_id with one argument, obj (a JSON object's text, e.g. from
 * proto/chat_packets.h); nothing when ack_id < 0 (the client wants none). */
void gc__ack(gw_socket *sock, int64_t ack_id, pr_view obj);
/* 2["chatError",obj] to sock. */
void gc__chat_error(gw_socket *sock, pr_view obj);
/* {error} as the ack, or {error, event} as a chatError without ack_id. */
void gc__reply_error(gw_socket *sock, const char *event, int64_t ack_id, const char *error);
void gc__reply_ok(gw_socket *sock, int64_t ack_id); /* CHAT_ACK_OK */
gc_ref *gc__ref_new(gc_worker *cw, const gc_sock *cs);
gc_sock *gc__sock_by_sid(gc_worker *cw, const char *sid);
gc_sock *gc__ref_take(gc_ref *r);         /* NULL when gone or stale; frees r */
gc_sock *gc__ref_take_session(gc_ref *r); /* NULL when gone; frees r */

/* ---- receipts.c ---- */
/* Merges receipt seq into *have (0: none): the highest wins, and -1
 * ("everything so far") wins over any number. Pure; for the unit tests. */
void gc__receipt_merge(int64_t *have, int64_t seq);
void gc__receipts_init(gc_worker *cw);
void gc__receipts_dispose(gc_worker *cw);
void gc__receipt_add(gc_worker *cw, const char *room, const gc_user *u, char kind, int64_t seq);
void gc__receipt_flush(evutil_socket_t fd, short what, void *arg);
void gc__open_receipt(gc_worker *cw, gc_sock *cs, gc_member *m);
void gc__deliver_receipts(gc_worker *cw, gc_sock *cs, gc_member *m, int64_t seq);
void gc__consumed(gw_socket *sock, uint64_t mark);
void gc__free_unread(gc_sock *cs);

/* ---- presence.c ---- */
void gc__presence_init_once(void);
void gc__lua_load(gc_worker *cw);
void gc__presence_update(gc_worker *cw, const char *uid, int online);
void gc__presence_tick(evutil_socket_t fd, short what, void *arg);
void gc__on_get_online(const gc_req *q);

/* ---- rooms.c ---- */
void gc__user_attach(gc_worker *cw, gc_sock *cs, const char *uid);
void gc__user_detach(gc_worker *cw, gc_sock *cs);
gc_member *gc__membership(gc_sock *cs, const char *room);
gc_member *gc__room_join(gc_worker *cw, gc_sock *cs, const char *room_id);
void gc__room_unlink(gc_worker *cw, gc_member *m);
void gc__room_leave(gc_worker *cw, gc_sock *cs, const char *room_id);
void gc__room_open(gc_worker *cw, gc_sock *cs, gc_member *m);
void gc__record_dm_for(gc_worker *cw, const char *room, const char *a, const char *b,
                       const gc_join *wait);
void gc__record_dm(gc_worker *cw, const char *room, const char *a, const char *b);
void gc__when_room_subscribed(gc_worker *cw, const char *room, cm_redis_subscribed_cb done,
                              void *arg);

/* ---- join.c ---- */
void gc__on_join_chat(const gc_req *q);
void gc__on_join_room(const gc_req *q);
void gc__finish_due_joins(gc_sock *cs);
void gc__free_due_joins(gc_sock *cs);
void gc__join_storage_failed(gc_worker *cw, const char *key);
int gc__join_answered(gc_worker *cw, pr_view sid, int64_t ack_id, pr_view json);
void gc__join_timeout(gw_th *th, gw_th_node *n);
void gc__joins_dispose(gc_worker *cw);

/* ---- session.c: the phases of a storage socket ---- */
/*
 * The one way a socket changes phase. Every call starts a new generation
 * (callbacks and replies of the old one are stale) and settles the wait
 * queues: GC_CATCHUP (re)arms the replay timeout; any other phase disarms
 * it. GC_WAITING arms the retry timer. GC_LIVE writes the held messages
 * (never a seq twice), then either asks the sync a room joined meanwhile
 * owes (back to GC_CATCHUP) or releases what waited for the catch-up: the
 * opens' receipts and the join acks. GC_GONE drops the held messages, the
 * join acks and the vectors.
 */
void gc__set_phase(gc_worker *cw, gc_sock *cs, int phase);
/* The id of a request of cs's generation gen, "SID.GEN": the R1 reply
 * names it, and only the current generation's counts. */
void gc__req_id(char out[REQ_ID_MAX], const gc_sock *cs, uint32_t gen);
/* XADD {st}:rpc: kind "sync" (vec NULL) or "replay" above vec; then
 * GC_CATCHUP. */
int gc__request(gc_worker *cw, gc_sock *cs, const char *kind, const uint64_t *vec);
void gc__accept(gc_sock *cs);
void gc__go_fresh(gc_worker *cw, gc_sock *cs, int with_sync);
void gc__pexpire_record(gc_worker *cw, const gc_sock *cs);
void gc__start_session(gc_worker *cw, gc_sock *cs);
void gc__read_recovery(gc_worker *cw, gc_sock *cs, const json_t *auth);
void gc__hold(gc_worker *cw, gc_sock *cs, gw_blob *b, const char *room, int64_t seq, int own);
void gc__drop_cb(evutil_socket_t fd, short what, void *arg);
void gc__on_sub_lost(cm_redis *r, void *arg);
void gc__retry_tick(evutil_socket_t fd, short what, void *arg);
void gc__renew_tick(evutil_socket_t fd, short what, void *arg);
void gc__wait_timeout(gw_th *th, gw_th_node *n);

/* ---- deliver.c: what comes from Redis, and writing it to sockets ---- */
/* The seq filter: writes stored message seq of m's room to cs unless it
 * was written already (by seq: a batch published again, a sync or replay
 * overlapping live traffic), then its receipts (not for own messages).
 * 1 when written. The only place a stored message reaches a socket. */
int gc__write_stored(gc_worker *cw, gc_sock *cs, gc_member *m, gw_blob *b, int64_t seq, int own);
void gc__on_redis_message(cm_redis *r, pr_view channel, pr_view message, void *arg);

/* ---- send.c, events.c: event handlers ---- */
void gc__on_send_message(const gc_req *q);
const char *gc__event_room(const gc_req *q, char *room, size_t n, int auto_join);
void gc__on_leave(const gc_req *q);
void gc__on_mark_seen(const gc_req *q);
void gc__on_typing(const gc_req *q);

#endif
