/*
 * chat.h - the chat application's schemas: event payloads as clients send
 * them, identifiers, and the envelope that carries a room event between
 * gateways through Redis pub/sub.
 *
 * No I/O. Payload parsing borrows strings from the jansson object it is
 * given: they live as long as that object.
 */
#ifndef CHAT_H
#define CHAT_H

#include <jansson.h>
#include <stddef.h>

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

/*
 * The envelope of a room event on a Redis channel:
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

#endif
