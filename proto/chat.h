/*
 * chat.h - the chat contract between clients, chat-gateway and chat-storage
 * (docs/storage.md tells the story). One home per concept:
 *
 *   chat.h          identifiers and event payloads as clients send them
 *                   (chat_args.c); the ingest shard and direct room ids of a
 *                   room (chat_room.c); shard position vectors (chat_vec.c);
 *                   the envelopes on Redis channels (chat_env.c)
 *   chat_keys.h     every Redis key and channel name, and the values both
 *                   programs read (chat_keys.c)
 *   chat_entry.h    the stream entries: ingest ('m', 'o', 'R') and replay
 *                   requests; their field table, XADD argv and parser
 *                   (chat_entry.c)
 *   chat_packets.h  what clients receive: messageReceived, messageStatus,
 *                   the ack objects (chat_packets.c)
 *
 * chat.h includes the other three, so one include gives the whole contract.
 * No I/O. Payload parsing borrows strings from the jansson object it is
 * given: they live as long as that object.
 */
#ifndef CHAT_H
#define CHAT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "pr.h"

#define CHAT_ID_MAX 128   /* user ids, room ids, client message ids */
#define CHAT_NAME_MAX 128 /* first and last names */

/* An identifier: 1..CHAT_ID_MAX bytes of printable ASCII (0x21..0x7e), so it
 * is safe in Redis keys, channel names, logs and the envelope. */
int chat_id_valid(const char *s, size_t len);

/* A display name: 0..CHAT_NAME_MAX bytes of well-formed UTF-8 with no
 * control characters (C0, DEL or C1), so it cannot forge log lines. */
int chat_name_valid(const char *s, size_t len);

/*
 * The fields a chat event payload may carry. Every field is optional here;
 * each event's handler says which it needs. A present field of the wrong
 * type, an invalid id, a name over CHAT_NAME_MAX or text over max_text bytes
 * makes the whole payload invalid (PR_EINVAL, or PR_ETOOBIG for long text).
 * Unknown fields are ignored. "text" wins over its tutorial alias "msg".
 * userId/firstName/lastName are read for --auth insecure-dev only; "userId"
 * may be a string or an integer (tutorials use both) and is returned as text
 * in user_id_buf.
 */
typedef struct {
    const char *target_user_id;
    const char *room_id;
    const char *text;
    size_t text_len;
    const char *client_msg_id;
    const char *user_id; /* points into user_id_buf when given as a number */
    const char *first_name;
    const char *last_name;
    long long seq;       /* "seq" (markSeen, later); -1 when absent */
    char user_id_buf[24];
} chat_args;

int chat_parse_args(const json_t *payload, size_t max_text, chat_args *out);

/* ---- envelopes on Redis channels (chat_env.c) ----
 * C1: the envelope of a room event on a Redis channel:
 *
 *   "C1\n" <room> "\n" <except socket id or empty> "\n" <except user id or empty> "\n"
 *   <the Socket.IO packet text, exactly as written to clients>
 *
 * Receivers frame the packet once and write the same bytes to every local
 * member, without parsing JSON. Ids obey chat_id_valid (empty for "none").
 */
typedef struct {
    pr_view room;
    pr_view except_socket; /* len 0: nobody */
    pr_view except_user;   /* len 0: nobody */
} chat_env;

int chat_env_encode(pr_buf *out, const chat_env *h, pr_view packet);
/* Views in h and packet point into in. */
int chat_env_decode(pr_view in, chat_env *h, pr_view *packet);

/* ---- rooms: shards and direct room ids (chat_room.c) ---- */

#define CHAT_SHARDS_MAX 256

/* The ingest shard of a room: FNV-1a 32 of the id, modulo nshards (>= 1). */
unsigned chat_room_shard(const char *room, size_t len, unsigned nshards);

/* The direct room of users a and b: "dm_" + 22 base64url characters of
 * HMAC-SHA256(key, sorted "a\nb"), NUL-terminated in out. Both orders give
 * the same id. */
#define CHAT_DM_ID_LEN 25
void chat_dm_room_id(const unsigned char key[32], const char *a, const char *b,
                     char out[CHAT_DM_ID_LEN + 1]);
/* The 32-byte key for chat_dm_room_id from the settings: SHA-256 of
 * room_secret when set, else HMAC(jwt_secret, "chat direct room ids v1") when
 * set, else a fixed key (insecure-dev: guessable ids). */
void chat_dm_key(const char *room_secret, const char *jwt_secret, unsigned char key[32]);

/* ---- shard position vectors (chat_vec.c) ----
 * Shard position vector: n unsigned decimal numbers separated by '.'
 * ("0.17.3"). Decode demands exactly n entries, each at most 2^53-1, and no
 * leading '+', sign or empty entry.
 */
int chat_vec_encode(pr_buf *out, const uint64_t *v, unsigned n);
int chat_vec_decode(pr_view in, uint64_t *v, unsigned n);

/* ---- the storage envelopes (chat_env.c, docs/storage.md "Envelopes") ---- */

/* The tag of an envelope: 'C', 'M', 'U', 'J', 'K', 'A' or 'R'; 0 if none. */
char chat_env_kind(pr_view in);

/* M1: a stored message for a room (see docs/storage.md). */
typedef struct {
    pr_view room;
    int64_t seq;
    unsigned shard;
    int64_t pos;
    pr_view sender;
} chat_menv;
int chat_menv_encode(pr_buf *out, const chat_menv *h, pr_view packet);
int chat_menv_decode(pr_view in, chat_menv *h, pr_view *packet);

/*
 * U1: packets for every local socket of a user, written in their order:
 * "U1\nUSER\nPACKET[\nPACKET...]". Packets are lines (not empty, no
 * newline: compact JSON has none), so a one-packet U1 reads as it did when
 * U1 carried exactly one. Encode with chat_uenv_begin then chat_uenv_add per
 * packet (at least one), or chat_uenv_encode for a single packet. Decode:
 * chat_uenv_begin_decode checks the tag and user and returns the packets in
 * *it; chat_uenv_next yields one per call: 1 when it produced one, 0 at the
 * end, PR_EINVAL on an empty packet or a trailing newline.
 */
int chat_uenv_begin(pr_buf *out, pr_view user);
int chat_uenv_add(pr_buf *out, pr_view packet);
int chat_uenv_encode(pr_buf *out, pr_view user, pr_view packet);
int chat_uenv_begin_decode(pr_view in, pr_view *user, pr_view *it);
int chat_uenv_next(pr_view *it, pr_view *packet);

/* J1 / K1: user joined (kind 'J') or was removed from (kind 'K') room. */
int chat_jenv_encode(pr_buf *out, char kind, pr_view room, pr_view user);
int chat_jenv_decode(pr_view in, char *kind, pr_view *room, pr_view *user);

/*
 * A1: acks. Encode with chat_aenv_begin then chat_aenv_add per ack (json is
 * compact JSON text without newlines). Decode: chat_aenv_begin_decode checks
 * the tag and returns the rest in *it; chat_aenv_next yields one ack per call:
 * 1 when it produced one, 0 at the end, PR_EINVAL on a malformed line.
 * ack_id -1: the client passed no ack callback; only errors come so, and the
 * gateway tells the socket by a chatError event.
 */
int chat_aenv_begin(pr_buf *out);
int chat_aenv_add(pr_buf *out, pr_view socket, int64_t ack_id, pr_view json);
int chat_aenv_begin_decode(pr_view in, pr_view *it);
int chat_aenv_next(pr_view *it, pr_view *socket, int64_t *ack_id, pr_view *json);

/* R1: a replay reply. status "ok" or "overflow". */
typedef struct {
    unsigned shard;
    int64_t pos;
    int64_t seq;
    pr_view room;
    pr_view packet;
} chat_replay_item;
int chat_renv_begin(pr_buf *out, pr_view req_id, pr_view status);
int chat_renv_add(pr_buf *out, const chat_replay_item *item);
int chat_renv_begin_decode(pr_view in, pr_view *req_id, pr_view *status, pr_view *it);
int chat_renv_next(pr_view *it, chat_replay_item *item);

/* The rest of the contract (see the top). */
#include "chat_entry.h"
#include "chat_keys.h"
#include "chat_packets.h"

#endif
