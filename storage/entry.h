/*
 * entry.h - ingest stream entries (the field table is proto/chat_entry.h's):
 * taken from an XREADGROUP reply, parsed and checked by chat_entry_parse, and
 * turned into the JSON arguments of chat_batch. Private to storage/ingest/
 * (and its unit test, and replay.c for the request stream's fields); no I/O.
 */
#ifndef ST_ENTRY_H
#define ST_ENTRY_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "pr.h"

#include "chat_entry.h"

/* What became of an entry. ST_E_REUSED: its (sender, room, clientMsgId)
 * names a message with another text, so it is no retry: refused. */
enum { ST_E_NONE, ST_E_NEW, ST_E_DUP, ST_E_FORBIDDEN, ST_E_RETRY, ST_E_INVALID, ST_E_REUSED };

/* One receipt line: member user of room got ('d') or saw ('s') every
 * message up to seq; seen -1: everything stored so far. */
typedef struct {
    char kind; /* 'd' or 's' */
    int64_t seq;
    const char *room, *user;
} st__rline;

typedef struct st__entry {
    char id[48]; /* stream entry id */
    unsigned shard;
    char kind;  /* 'm' message, 'R' receipts, 'o' open a direct room, 0 ack only */
    int status; /* ST_E_* */
    /* message fields ('o': r, u, p, g, s), NUL-terminated, in buf; l, c,
     * p, g, s may be NULL */
    const char *r, *u, *n, *l, *x, *c, *p, *g, *s;
    size_t x_len;
    int64_t a; /* ack id; -1: no ack callback (with g and s: errors only, else nothing) */
    char *buf;
    /* receipts: JSON objects "{...},{...}" for chat_receipts, in rc; the
     * same lines parsed in rl[0..nrc) (room and user NUL-terminated, in
     * rl's allocation), for the room cache's path (ingest/fast.c) */
    char *rc;
    size_t rc_len;
    unsigned nrc;
    st__rline *rl;
    /* the database's answer for a message */
    char mid[24];
    int64_t seq, pos;
    unsigned rshard;
    char created[32];
} st__entry;

/*
 * Parses one [id, [field, value, ...]] item of stream shard (of nshards).
 * NULL when it has no usable id (it cannot even be acked). Otherwise the
 * entry: kind 0 for an entry deleted while pending (ack only); status
 * ST_E_INVALID for a malformed one (kind 'm', and 'o' with an ack address,
 * keep their reply address, for an error ack); ST_E_FORBIDDEN for a direct room (message with p, or
 * 'o') that is not chat_dm_room_id of its user and peer. Receipt lines for rooms of other shards
 * are dropped.
 */
st__entry *st__entry_parse(const redisReply *item, unsigned shard, unsigned nshards,
                           const unsigned char room_key[32]);
void st__entry_free(st__entry *e);

/* A stream entry's [field, value, ...] array as views into it (non-string
 * names and values: empty views), for proto's parsers; *n pairs. pr_free it. */
chat_field *st__entry_fields(const redisReply *f, size_t *n);

/*
 * The arguments of chat_batch for entries e[0..n): msgs gets the messages
 * still to store (status ST_E_NONE) as [{o,sh,r,u,n,l,x,c,p},...] with o the
 * index in e, and direct rooms to open as {o,sh,k:"o",r,u,p}; rcpts the
 * receipts of valid 'R' entries. Both NUL-terminated.
 */
int st__entry_batch_json(st__entry *const *e, size_t n, pr_buf *msgs, pr_buf *rcpts);

#endif
