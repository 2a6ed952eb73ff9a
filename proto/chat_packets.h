/*
 * chat_packets.h - what clients receive from the chat, as JSON text written
 * once for every program that sends it (proto/PROTOCOL.md is the client's
 * view): the messageReceived and messageStatus events and the objects acks
 * carry. Packets are Socket.IO EVENT text without namespace or ack id,
 * `2["event",{...}]`, on one line (they travel in line-based envelopes).
 *
 * No I/O. Every writer appends to out all or nothing (PR_ETOOBIG leaves out
 * as it was). Strings must be valid UTF-8 (ids and names are checked before
 * they get here); quotes, backslashes and control characters are escaped.
 */
#ifndef CHAT_PACKETS_H
#define CHAT_PACKETS_H

#include <stddef.h>
#include <stdint.h>

#include "pr.h"

/* Appends s as a JSON string. */
int chat_json_str(pr_buf *out, const char *s, size_t n);

/*
 * The writer every packet below is written with, for any other JSON object
 * of the chat (storage's batch for chat_batch, its receipts): it stops at
 * the first failure, and chat_jw_end() then takes back everything appended
 * since chat_jw_begin(). Objects are written key by key: chat_jw_obj() opens
 * one, each key after the first gets its comma, chat_jw_obj_end() ends it.
 *
 *   chat_jw x = chat_jw_begin(out);
 *   chat_jw_obj(&x);
 *   chat_jw_str(&x, "roomId", room);
 *   chat_jw_int(&x, "seq", seq);
 *   chat_jw_obj_end(&x);
 *   return chat_jw_end(&x);
 */
typedef struct {
    pr_buf *b;
    size_t mark;
    int rc;    /* the first failure */
    int first; /* no key in the open object yet */
} chat_jw;

chat_jw chat_jw_begin(pr_buf *out);
void chat_jw_lit(chat_jw *x, const char *s); /* s as it is */
void chat_jw_obj(chat_jw *x);
void chat_jw_obj_end(chat_jw *x);
void chat_jw_key(chat_jw *x, const char *name); /* [,]"name": */
/* "name": the string (n bytes), or null when s is NULL */
void chat_jw_strn(chat_jw *x, const char *name, const char *s, size_t n);
void chat_jw_str(chat_jw *x, const char *name, const char *s);
void chat_jw_int(chat_jw *x, const char *name, int64_t n);
int chat_jw_end(chat_jw *x); /* 0, or the failure (out as it was at begin) */

/*
 * A message as clients see it. Stored (seq >= 1), every key is there, in
 * this order, null when absent:
 *   {id, seq, roomId, userId, firstName, lastName, text, createdAt, clientMsgId}
 * Relayed without storage (seq < 0): no seq, and lastName only when given:
 *   {id, roomId, userId, firstName, [lastName], text, createdAt, clientMsgId}
 * status (history API: the reader's own messages) is appended last when set.
 */
typedef struct {
    const char *id; /* decimal when stored */
    int64_t seq;
    const char *room;
    const char *user;
    const char *first_name; /* NULL: "" */
    const char *last_name;  /* NULL: none */
    const char *text;
    size_t text_len;
    const char *created_at;    /* ISO 8601 UTC with milliseconds */
    const char *client_msg_id; /* NULL: none */
    const char *status;        /* NULL: none */
} chat_message;

int chat_message_json(pr_buf *out, const chat_message *m);
/* 2["messageReceived",MESSAGE] (the gateway appends the recovery offset). */
int chat_message_packet(pr_buf *out, const chat_message *m);

/* Appends packet (an EVENT "2[...]") with the shard position vector
 * vec[0..n) added as its last argument, a string (chat_vec_encode): the
 * client's connection-state-recovery offset. PR_EINVAL (out unchanged) when
 * packet is not an event array or vec cannot be encoded. */
int chat_offset_packet(pr_buf *out, pr_view packet, const uint64_t *vec, unsigned n);

/* 2["messageStatus",{roomId, seq, userId, status, aggregate}]: user's
 * status (and the aggregate over the members) of the message seq of room,
 * for its sender. */
typedef struct {
    const char *room;
    int64_t seq;
    const char *user;
    const char *status;    /* "delivered" or "seen" */
    const char *aggregate; /* "sent", "delivered" or "seen" */
} chat_status;
int chat_status_packet(pr_buf *out, const chat_status *s);

/* ---- the other events a room or a user receives ---- */

/* 2["showTyping",{roomId, userId, firstName}] (the room but the typist) */
int chat_typing_packet(pr_buf *out, const char *room, const char *user, const char *first_name);
/* 2["presence",{userId, online}] (the user's rooms) */
int chat_presence_packet(pr_buf *out, const char *user, int online);
/* 2["roomAdded",{roomId, name, type}] (name null for a direct room; type
 * "group" or "dm") and 2["roomRemoved",{roomId}] (the user's sockets) */
int chat_room_added_packet(pr_buf *out, const char *room, const char *name, const char *type);
int chat_room_removed_packet(pr_buf *out, const char *room);

/* ---- ack objects (the ack's one argument) ---- */

/* sendMessage: stored {id, seq, roomId, createdAt, status: "sent"};
 * relayed (seq < 0) {id, roomId, createdAt}. */
int chat_ack_message(pr_buf *out, const chat_message *m);
/* joinChat, joinRoom: {roomId} */
int chat_ack_room(pr_buf *out, const char *room);
/* {error} */
int chat_ack_error(pr_buf *out, const char *error);
/* The chatError event's object, for a client that passed no ack callback:
 * {error, event} */
int chat_error_event(pr_buf *out, const char *error, const char *event);
/* leaveChat, leaveRoom, markSeen, typing */
#define CHAT_ACK_OK "{\"ok\":true}"

/* The errors both programs answer (the HTTP API maps them to statuses). */
#define CHAT_ERR_INVALID "invalid payload"
#define CHAT_ERR_NOT_MEMBER "not a member"
#define CHAT_ERR_CMID_REUSED "clientMsgId reused"
#define CHAT_ERR_TOO_LONG "text too long"
#define CHAT_ERR_UNAVAILABLE "unavailable"

#endif
