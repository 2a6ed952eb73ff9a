/*
 * chat_entry.h - the entries of the chat's two Redis streams: the ingest
 * stream of a shard ({i:S}:in, written by gateways and by chat-storage's
 * HTTP API, read by the shard's owner) and the request stream ({st}:rpc,
 * written by gateways, read by any chat-storage replica). docs/storage.md
 * tells the story; this header is the field table.
 *
 * Ingest entries: XADD {i:S}:in * k KIND field value ...  (S: chat_room_shard
 * of the room; every field name is one lowercase letter)
 *
 *   k = 'm', a message:
 *     r  room id
 *     u  sender user id
 *     n  sender first name (may be empty; always written)
 *     l  sender last name (absent when none)
 *     x  text (UTF-8, 1..CHAT_ENTRY_TEXT_MAX bytes, no NUL)
 *     c  clientMsgId (absent: no idempotency), scoped to the sender and room
 *     p  peer user id, for a direct room the sender opened with targetUserId
 *        (storage creates the room and its two members if they do not exist;
 *        r must be chat_dm_room_id(u, p))
 *     g  reply channel for the ack (gw:{NODE.W} or st:{REPLICA}); absent: no ack
 *     s  socket id the ack is for
 *     a  Socket.IO ack id (absent with g and s: the client passed no
 *        callback, so only an error is answered, as a chatError event)
 *
 *   k = 'o', open a direct room (joinChat, and before a first sendMessage
 *   with targetUserId): r room, u user, p peer (r = chat_dm_room_id(u, p)),
 *   and, when the client waits for the joinChat ack, g, s and a (all three)
 *
 *   k = 'R', receipts coalesced by a gateway worker:
 *     d  lines "ROOM\tUSER\tSEQ\n" (chat_receipt_add): USER's client got
 *        every message of ROOM up to SEQ (delivered)
 *     v  the same for seen; SEQ -1: everything sent before this entry
 *     (at least one of d and v; only rooms of the stream's shard count)
 *
 * Request entries: XADD {st}:rpc * k KIND g CHANNEL i REQID u USER [v VECTOR] m MAX
 *   k  "replay" (messages above VECTOR, which is required) or "sync" (what
 *      USER was not delivered yet)
 *   g  reply channel (gw:{NODE.W}); i the request id the R1 reply names
 *   u  user id; v chat_vec_encode of the positions; m the most messages (>= 1)
 *
 * Builders fill a chat_xadd with the XADD's argv; they check that what the
 * kind needs is there (PR_EINVAL otherwise) but not the values: whoever
 * reads a stream checks every entry, from whoever it came. Parsers take the
 * entry's field/value pairs as views and borrow from them.
 */
#ifndef CHAT_ENTRY_H
#define CHAT_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#include "pr.h"

#define CHAT_ENTRY_MESSAGE 'm'
#define CHAT_ENTRY_OPEN 'o'
#define CHAT_ENTRY_RECEIPTS 'R'

/* The gateways enforce the text limit their clients see; this one only
 * keeps an absurd entry from reaching the database. */
#define CHAT_ENTRY_TEXT_MAX (1u << 20)

/* An ingest entry. A view with ptr NULL is an absent field. */
typedef struct {
    char kind; /* CHAT_ENTRY_*; 0: none the parser knows */
    pr_view room, user, first_name, last_name, text, client_msg_id, peer;
    pr_view reply_to;        /* g: the ack's channel */
    pr_view socket;          /* s */
    int64_t ack_id;          /* a; -1: none */
    pr_view delivered, seen; /* 'R': d and v */
} chat_entry;

/* The argv of one XADD, borrowing the views it was built from. */
#define CHAT_XADD_ARGC_MAX 32
typedef struct {
    int argc;
    const char *argv[CHAT_XADD_ARGC_MAX];
    size_t lens[CHAT_XADD_ARGC_MAX];
    unsigned shard; /* ingest entries: the stream's shard */
    char key[32];   /* the stream's name */
    char num[2][24];
} chat_xadd;

/* 'm' into the room's shard of nshards: k r u n [l] x [c] [p] [g s [a]].
 * Needs room, user and text; g and s go together (reply_to without socket
 * is PR_EINVAL); a only when ack_id >= 0 and g is there. */
int chat_xadd_message(chat_xadd *x, unsigned nshards, const chat_entry *m);
/* 'o': k r u p [g s a]. With reply_to, socket and ack_id >= 0 are needed. */
int chat_xadd_open(chat_xadd *x, unsigned nshards, const chat_entry *o);
/* 'R' into shard's stream: k d DELIVERED v SEEN (both written, maybe empty). */
int chat_xadd_receipts(chat_xadd *x, unsigned shard, pr_view delivered, pr_view seen);

/* A stream entry's field and value; value.ptr NULL: the value was not a
 * string (it counts as absent). */
typedef struct {
    pr_view name, value;
} chat_field;

/* What the reader of shard `shard` of nshards checks beyond the fields:
 * nshards 0 skips the shard checks, room_key NULL the direct-room check. */
typedef struct {
    unsigned shard, nshards;
    const unsigned char *room_key; /* chat_dm_key */
} chat_entry_ctx;

enum {
    CHAT_ENTRY_OK = 0,
    CHAT_ENTRY_INVALID = PR_EINVAL, /* malformed, or a room of another shard */
    CHAT_ENTRY_FORBIDDEN = -100,    /* well formed, but r is not the direct room of u and p */
};

/*
 * Parses an ingest entry's fields f[0..n). Only one-letter names count; the
 * last of a name wins. Returns CHAT_ENTRY_OK, CHAT_ENTRY_FORBIDDEN or
 * CHAT_ENTRY_INVALID; out->kind is set whenever k names a known kind, and
 * the views are filled as far as they were read. The ack address (reply_to,
 * socket, ack_id) is kept only when it is valid, even in an invalid entry, so
 * the writer still hears of its error: for 'm' g and s must be ids and a,
 * when present, a decimal 0..2^53-1 (else no address at all); for 'o' all
 * three must be. An absent first name reads as "". For 'R', every line of d
 * and v must be well formed; *nreceipts (may be NULL) counts the lines that
 * apply (chat_entry_receipt_next).
 */
int chat_entry_parse(const chat_field *f, size_t n, const chat_entry_ctx *ctx, chat_entry *out,
                     unsigned *nreceipts);

/*
 * The receipt lines of a parsed 'R' entry that apply to the reader's shard,
 * d's then v's: a delivered SEQ -1 ("everything") is meaningless and
 * skipped, and so are rooms of another shard (they would be applied out of
 * order with that room's messages). Start with it = {0}; each call yields
 * one line (1) with *kind 'd' or 'v', or 0 at the end.
 */
typedef struct {
    int part; /* 0: d, 1: v, 2: done */
    pr_view rest;
} chat_receipt_iter;
int chat_entry_receipt_next(const chat_entry *e, const chat_entry_ctx *ctx, chat_receipt_iter *it,
                            char *kind, pr_view *room, pr_view *user, int64_t *seq);

/*
 * Receipt lines "ROOM\tUSER\tSEQ\n" (SEQ >= -1), the values of d and v.
 * chat_receipt_add appends one; chat_receipt_next yields one per call (1),
 * 0 at the end, PR_EINVAL.
 */
int chat_receipt_add(pr_buf *out, pr_view room, pr_view user, int64_t seq);
int chat_receipt_next(pr_view *it, pr_view *room, pr_view *user, int64_t *seq);

/* ---- {st}:rpc requests ---- */

#define CHAT_RPC_REPLAY 'p'
#define CHAT_RPC_SYNC 's'

typedef struct {
    char kind;        /* CHAT_RPC_* (0: unknown) */
    pr_view reply_to; /* g */
    pr_view req_id;   /* i */
    pr_view user;     /* u */
    pr_view vector;   /* v: ptr NULL when absent */
    unsigned max;     /* m */
} chat_request;

/* XADD {st}:rpc * k replay|sync g i u [v] m; PR_EINVAL for another kind, a
 * replay without vector, or a missing reply_to, req_id or user. */
int chat_xadd_request(chat_xadd *x, const chat_request *r);
/*
 * Parses a request's fields (the last of a name wins). PR_OK when g, i, u
 * are ids, k a known kind and m a decimal >= 1 (saturating at UINT_MAX);
 * v is left to the reader (chat_vec_decode, which needs the shard count,
 * and a replay without one is malformed). PR_EINVAL otherwise; then reply_to and req_id are set
 * only if both are ids (the request can be answered, with "overflow").
 */
int chat_request_parse(const chat_field *f, size_t n, chat_request *out);

#endif
