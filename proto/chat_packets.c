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

/* A writer that stops at the first failure; end() undoes everything then.
 * Objects are written key by key: obj() opens one, each key after the first
 * gets its comma, obj_end() ends it. */
typedef struct {
    pr_buf *b;
    size_t mark;
    int rc;
    int first; /* no key in the open object yet */
} w;

static w begin(pr_buf *b)
{
    return (w){b, b->len, 0, 1};
}

static void lit(w *x, const char *s)
{
    if (x->rc == 0)
        x->rc = pr_buf_append(x->b, s, strlen(s));
}

static void obj(w *x)
{
    lit(x, "{");
    x->first = 1;
}

static void obj_end(w *x)
{
    lit(x, "}");
}

/* ,"name": */
static void key(w *x, const char *name)
{
    if (!x->first)
        lit(x, ",");
    x->first = 0;
    lit(x, "\"");
    lit(x, name);
    lit(x, "\":");
}

/* "name": the string (n bytes), or null when s is NULL */
static void kstrn(w *x, const char *name, const char *s, size_t n)
{
    key(x, name);
    if (!s)
        lit(x, "null");
    else if (x->rc == 0)
        x->rc = chat_json_str(x->b, s, n);
}

static void kstr(w *x, const char *name, const char *s)
{
    kstrn(x, name, s, s ? strlen(s) : 0);
}

static void kint(w *x, const char *name, int64_t n)
{
    key(x, name);
    if (x->rc == 0)
        x->rc = pr_buf_appendf(x->b, "%" PRId64, n);
}

static int end(w *x)
{
    if (x->rc != 0)
        x->b->len = x->mark;
    return x->rc;
}

/* 2["event",{...}]: the object between begin_event() and end_event(). */
static void begin_event(w *x, const char *event)
{
    lit(x, "2[\"");
    lit(x, event);
    lit(x, "\",");
    obj(x);
}

static int end_event(w *x)
{
    obj_end(x);
    lit(x, "]");
    return end(x);
}

/* An object of string keys kv = {name, value, ..., NULL} (a NULL value is
 * null), as the packet of event, or bare when event is NULL. */
static int strings(pr_buf *out, const char *event, const char *const *kv)
{
    w x = begin(out);
    if (event)
        begin_event(&x, event);
    else
        obj(&x);
    for (; kv[0]; kv += 2)
        kstr(&x, kv[0], kv[1]);
    if (event)
        return end_event(&x);
    obj_end(&x);
    return end(&x);
}

static void message(w *x, const chat_message *m)
{
    int stored = m->seq >= 0;
    obj(x);
    kstr(x, "id", m->id);
    if (stored)
        kint(x, "seq", m->seq);
    kstr(x, "roomId", m->room);
    kstr(x, "userId", m->user);
    kstr(x, "firstName", m->first_name ? m->first_name : "");
    if (stored || m->last_name)
        kstr(x, "lastName", m->last_name);
    kstrn(x, "text", m->text, m->text_len);
    kstr(x, "createdAt", m->created_at);
    kstr(x, "clientMsgId", m->client_msg_id);
    if (m->status)
        kstr(x, "status", m->status);
    obj_end(x);
}

int chat_message_json(pr_buf *out, const chat_message *m)
{
    w x = begin(out);
    message(&x, m);
    return end(&x);
}

int chat_message_packet(pr_buf *out, const chat_message *m)
{
    w x = begin(out);
    lit(&x, "2[\"messageReceived\",");
    message(&x, m);
    lit(&x, "]");
    return end(&x);
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
    w x = begin(out);
    begin_event(&x, "messageStatus");
    kstr(&x, "roomId", s->room);
    kint(&x, "seq", s->seq);
    kstr(&x, "userId", s->user);
    kstr(&x, "status", s->status);
    kstr(&x, "aggregate", s->aggregate);
    return end_event(&x);
}

int chat_typing_packet(pr_buf *out, const char *room, const char *user, const char *first_name)
{
    const char *kv[] = {"roomId", room, "userId", user, "firstName", first_name, NULL};
    return strings(out, "showTyping", kv);
}

int chat_presence_packet(pr_buf *out, const char *user, int online)
{
    w x = begin(out);
    begin_event(&x, "presence");
    kstr(&x, "userId", user);
    key(&x, "online");
    lit(&x, online ? "true" : "false");
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
    w x = begin(out);
    obj(&x);
    kstr(&x, "id", m->id);
    if (stored)
        kint(&x, "seq", m->seq);
    kstr(&x, "roomId", m->room);
    kstr(&x, "createdAt", m->created_at);
    if (stored)
        kstr(&x, "status", "sent");
    obj_end(&x);
    return end(&x);
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
