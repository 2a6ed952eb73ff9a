/*
 * chat_keys.h - every Redis key and pub/sub channel name of the chat, and the
 * values that chat-gateway and chat-storage both read (docs/storage.md
 * "Keys"). These names are a data contract with deployed Redis data: change
 * one and a running system loses track of what it stored (the unit test
 * pins every byte).
 *
 * Every key and channel carries a hash tag ({...}), so each command touches
 * one Redis Cluster slot:
 *
 *   {r:ROOM}:members   set: the room's user ids (cache of room_members)
 *   {u:USER}:rooms     set: the user's room ids (cache)
 *   {i:S}:in           ingest stream of shard S (chat_entry.h)
 *   {i:S}:lease        owner of shard S: a chat-storage replica id
 *   {st}:rpc           replay and sync requests (chat_entry.h)
 *   {st}:pos           hash: shard -> last published shard position
 *   {st}:cache         mark: the membership cache is whole ("WALL_MS REPLICA")
 *   {c:PID}:sess       a recoverable session ("USER\nVECTOR")
 *   {pN}:on:USER       zset: "NODE/WORKER" -> expiry (wall ms); N: presence shard
 *   {pN}:exp           zset: "USER NODE/WORKER" -> expiry (wall ms)
 *
 * Channels: room:{ROOM} (C1, M1), user:{USER} (U1, J1, K1), gw:{NODE.W}
 * (A1, R1 for one gateway worker), st:{REPLICA} (A1 for messages a storage
 * replica posted over HTTP), chat:all (announcements).
 *
 * No I/O. A name is returned by value in a chat_key; an input too long for
 * CHAT_KEY_MAX gives the empty name (len 0), which no caller sends: ids are
 * checked with chat_id_valid first.
 */
#ifndef CHAT_KEYS_H
#define CHAT_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "pr.h"

#define CHAT_KEY_MAX 192 /* an id (or node/replica name) and at most 32 bytes around it */

typedef struct {
    char s[CHAT_KEY_MAX + 1]; /* NUL-terminated */
    size_t len;
} chat_key;

static inline pr_view chat_key_view(const chat_key *k)
{
    return pr_view_make(k->s, k->len);
}

/* ---- keys ---- */
chat_key chat_key_room_members(const char *room); /* {r:ROOM}:members */
chat_key chat_key_user_rooms(const char *user);   /* {u:USER}:rooms */
chat_key chat_key_ingest(unsigned shard);         /* {i:S}:in */
chat_key chat_key_lease(unsigned shard);          /* {i:S}:lease */
chat_key chat_key_session(const char *pid);       /* {c:PID}:sess */
/* The shard S of an ingest stream name "{i:S}:in" (canonical decimal, below
 * nshards); PR_EINVAL for any other name. */
int chat_key_ingest_shard(pr_view key, unsigned nshards, unsigned *shard);

#define CHAT_KEY_RPC "{st}:rpc"     /* replay and sync requests */
#define CHAT_KEY_POS "{st}:pos"     /* hash: shard -> last published position */
/* Set by chat-storage once {r:ROOM}:members and {u:USER}:rooms hold every
 * membership of PostgreSQL; absent after Redis lost its data, until the
 * rebuild is over. While absent, a cache miss proves nothing. */
#define CHAT_KEY_CACHE "{st}:cache" /* the membership cache is whole */
/* The live chat-storage replicas: a sorted set, replica id -> when its
 * heartbeat runs out (Redis' clock, ms); each takes its share of the
 * ingest shards among them (docs/storage.md "Ownership (leases)"). */
#define CHAT_KEY_REPLICAS "{st}:replicas"

/* The consumer group of both streams ({i:S}:in and {st}:rpc), and the one
 * consumer of an ingest stream (whoever holds its lease reads as "owner",
 * so a new owner inherits the pending entries of the last). */
#define CHAT_GROUP "storage"
#define CHAT_CONSUMER_OWNER "owner"

/* ---- presence ---- */
#define CHAT_PRESENCE_SHARDS 16
/* The presence shard of a user: FNV-1a 64 of the id, modulo 16. */
unsigned chat_presence_shard(const char *user);
chat_key chat_key_presence_on(const char *user);       /* {pN}:on:USER */
chat_key chat_key_presence_exp(unsigned pshard);       /* {pN}:exp */
chat_key chat_key_presence_on_prefix(unsigned pshard); /* {pN}:on: (the sweep adds USER) */
chat_key chat_presence_member(const char *node, unsigned worker); /* NODE/WORKER */

/* ---- channels ---- */
chat_key chat_chan_room(const char *room);                     /* room:{ROOM} */
chat_key chat_chan_user(const char *user);                     /* user:{USER} */
chat_key chat_chan_gateway(const char *node, unsigned worker); /* gw:{NODE.W} */
chat_key chat_chan_storage(const char *replica);               /* st:{REPLICA} */
#define CHAT_CHAN_ALL "chat:all"
/* The room C1 envelopes on CHAT_CHAN_ALL name: every socket gets them. */
#define CHAT_ROOM_ALL "all"

/* ---- values ---- */

/* {st}:cache = "WALL_MS REPLICA": when the cache was last rebuilt (Redis
 * lost its data then, and the session records with it). Decode reads
 * WALL_MS (decimal, at most 19 digits, then a space); PR_EINVAL otherwise. */
int chat_cache_mark_encode(pr_buf *out, uint64_t wall_ms, const char *replica);
int chat_cache_mark_decode(pr_view in, uint64_t *wall_ms);

/* {st}:pos, field SHARD -> value POS (both decimal): the last position
 * published of each shard. Decodes one field/value pair of the hash: PR_OK
 * when both are decimals of at most 19 digits and SHARD < nshards,
 * PR_EINVAL otherwise. */
int chat_pos_decode(pr_view field, pr_view value, unsigned nshards, unsigned *shard, uint64_t *pos);

/* {c:PID}:sess = "USER\nVECTOR" (VECTOR: chat_vec_encode of n positions).
 * Decode splits at the first '\n' (PR_EINVAL without one); the vector is
 * left to chat_vec_decode, which needs the shard count. */
int chat_session_encode(pr_buf *out, pr_view user, const uint64_t *vec, unsigned n);
int chat_session_decode(pr_view in, pr_view *user, pr_view *vec);

#endif
