/* chat_packets.c - the JSON text of the chat's client packets and acks. */
#include "chat_packets.h"

#include <inttypes.h>
#include <string.h>

#include "chat.h"

int chat_json_str(pr_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t mark = b->len;
    int rc = pr_buf_reserve(b, n + 2);
    if (rc == 0)
        rc = pr_buf_append_byte(b, '"');
    size_t run = 0; /* bytes copied in one go */
    for (size_t i = 0; i < n && rc == 0; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\' && ch != 0x7f)
            continue;
        rc = pr_buf_append(b, s + run, i - run);
        run = i + 1;
        if (rc != 0)
            break;
        switch (ch) {
        case '"': rc = pr_buf_append(b, "\\\"", 2); break;
        case '\\': rc = pr_buf_append(b, "\\\\", 2); break;
        case '\n': rc = pr_buf_append(b, "\\n", 2); break;
        case '\r': rc = pr_buf_append(b, "\\r", 2); break;
        case '\t': rc = pr_buf_append(b, "\\t", 2); break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            rc = pr_buf_append(b, u, 6);
        }
        }
    }
    if (rc == 0)
        rc = pr_buf_append(b, s + run, n - run);
    if (rc == 0)
        rc = pr_buf_append_byte(b, '"');
    if (rc != 0)
        b->len = mark;
    return rc;
}

/* ---- the JSON writer (chat_packets.h) ---- */

chat_jw chat_jw_begin(pr_buf *b)
{
    return (chat_jw){b, b->len, 0, 1};
}

void chat_jw_lit(chat_jw *x, const char *s)
{
    if (x->rc == 0)
        x->rc = pr_buf_append(x->b, s, strlen(s));
}

void chat_jw_obj(chat_jw *x)
{
    chat_jw_lit(x, "{");
    x->first = 1;
}

void chat_jw_obj_end(chat_jw *x)
{
    chat_jw_lit(x, "}");
}

void chat_jw_key(chat_jw *x, const char *name)
{
    if (!x->first)
        chat_jw_lit(x, ",");
    x->first = 0;
    chat_jw_lit(x, "\"");
    chat_jw_lit(x, name);
    chat_jw_lit(x, "\":");
}

void chat_jw_strn(chat_jw *x, const char *name, const char *s, size_t n)
{
    chat_jw_key(x, name);
    if (!s)
        chat_jw_lit(x, "null");
    else if (x->rc == 0)
        x->rc = chat_json_str(x->b, s, n);
}

void chat_jw_str(chat_jw *x, const char *name, const char *s)
{
    chat_jw_strn(x, name, s, s ? strlen(s) : 0);
}

void chat_jw_int(chat_jw *x, const char *name, int64_t n)
{
    chat_jw_key(x, name);
    if (x->rc == 0)
        x->rc = pr_buf_appendf(x->b, "%" PRId64, n);
}

int chat_jw_end(chat_jw *x)
{
    if (x->rc != 0)
        x->b->len = x->mark;
    return x->rc;
}

/* ---- packets ---- */

/* 2["event",{...}]: the object between begin_event() and end_event(). */
static void begin_event(chat_jw *x, const char *event)
{
    chat_jw_lit(x, "2[\"");
    chat_jw_lit(x, event);
    chat_jw_lit(x, "\",");
    chat_jw_obj(x);
}

static int end_event(chat_jw *x)
{
    chat_jw_obj_end(x);
    chat_jw_lit(x, "]");
    return chat_jw_end(x);
}

/* An object of string keys kv = {name, value, ..., NULL} (a NULL value is
 * null), as the packet of event, or bare when event is NULL. */
static int strings(pr_buf *out, const char *event, const char *const *kv)
{
    chat_jw x = chat_jw_begin(out);
    if (event)
        begin_event(&x, event);
    else
        chat_jw_obj(&x);
    for (; kv[0]; kv += 2)
        chat_jw_str(&x, kv[0], kv[1]);
    if (event)
        return end_event(&x);
    chat_jw_obj_end(&x);
    return chat_jw_end(&x);
}

static void message(chat_jw *x, const chat_message *m)
{
    int stored = m->seq >= 0;
    chat_jw_obj(x);
    chat_jw_str(x, "id", m->id);
    if (stored)
        chat_jw_int(x, "seq", m->seq);
    chat_jw_str(x, "roomId", m->room);
    chat_jw_str(x, "userId", m->user);
    chat_jw_str(x, "firstName", m->first_name ? m->first_name : "");
    if (stored || m->last_name)
        chat_jw_str(x, "lastName", m->last_name);
    chat_jw_strn(x, "text", m->text, m->text_len);
    chat_jw_str(x, "createdAt", m->created_at);
    chat_jw_str(x, "clientMsgId", m->client_msg_id);
    if (m->status)
        chat_jw_str(x, "status", m->status);
    chat_jw_obj_end(x);
}

int chat_message_json(pr_buf *out, const chat_message *m)
{
    chat_jw x = chat_jw_begin(out);
    message(&x, m);
    return chat_jw_end(&x);
}

int chat_message_packet(pr_buf *out, const chat_message *m)
{
    chat_jw x = chat_jw_begin(out);
    chat_jw_lit(&x, "2[\"messageReceived\",");
    message(&x, m);
    chat_jw_lit(&x, "]");
    return chat_jw_end(&x);
}

int chat_offset_packet(pr_buf *out, pr_view packet, const uint64_t *vec, unsigned n)
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

int chat_status_packet(pr_buf *out, const chat_status *s)
{
    chat_jw x = chat_jw_begin(out);
    begin_event(&x, "messageStatus");
    chat_jw_str(&x, "roomId", s->room);
    chat_jw_int(&x, "seq", s->seq);
    chat_jw_str(&x, "userId", s->user);
    chat_jw_str(&x, "status", s->status);
    chat_jw_str(&x, "aggregate", s->aggregate);
    return end_event(&x);
}

int chat_typing_packet(pr_buf *out, const char *room, const char *user, const char *first_name)
{
    const char *kv[] = {"roomId", room, "userId", user, "firstName", first_name, NULL};
    return strings(out, "showTyping", kv);
}

int chat_presence_packet(pr_buf *out, const char *user, int online)
{
    chat_jw x = chat_jw_begin(out);
    begin_event(&x, "presence");
    chat_jw_str(&x, "userId", user);
    chat_jw_key(&x, "online");
    chat_jw_lit(&x, online ? "true" : "false");
    return end_event(&x);
}

int chat_room_added_packet(pr_buf *out, const char *room, const char *name, const char *type)
{
    const char *kv[] = {"roomId", room, "name", name, "type", type, NULL};
    return strings(out, "roomAdded", kv);
}

int chat_room_removed_packet(pr_buf *out, const char *room)
{
    const char *kv[] = {"roomId", room, NULL};
    return strings(out, "roomRemoved", kv);
}

int chat_ack_message(pr_buf *out, const chat_message *m)
{
    int stored = m->seq >= 0;
    chat_jw x = chat_jw_begin(out);
    chat_jw_obj(&x);
    chat_jw_str(&x, "id", m->id);
    if (stored)
        chat_jw_int(&x, "seq", m->seq);
    chat_jw_str(&x, "roomId", m->room);
    chat_jw_str(&x, "createdAt", m->created_at);
    if (stored)
        chat_jw_str(&x, "status", "sent");
    chat_jw_obj_end(&x);
    return chat_jw_end(&x);
}

int chat_ack_room(pr_buf *out, const char *room)
{
    const char *kv[] = {"roomId", room, NULL};
    return strings(out, NULL, kv);
}

int chat_ack_error(pr_buf *out, const char *error)
{
    const char *kv[] = {"error", error, NULL};
    return strings(out, NULL, kv);
}

int chat_error_event(pr_buf *out, const char *error, const char *event)
{
    const char *kv[] = {"error", error, "event", event, NULL};
    return strings(out, NULL, kv);
}
