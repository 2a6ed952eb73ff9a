/* chat_packets.c - the JSON text of the chat's client packets and acks. */
#include "chat_packets.h"

#include <inttypes.h>
#include <string.h>

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

/* A writer that stops at the first failure; end() undoes everything then. */
typedef struct {
    pr_buf *b;
    size_t mark;
    int rc;
} w;

static w begin(pr_buf *b)
{
    return (w){b, b->len, 0};
}

static void lit(w *x, const char *s)
{
    if (x->rc == 0)
        x->rc = pr_buf_append(x->b, s, strlen(s));
}

static void str(w *x, const char *s, size_t n)
{
    if (x->rc == 0)
        x->rc = chat_json_str(x->b, s, n);
}

static void cstr(w *x, const char *s)
{
    str(x, s, strlen(s));
}

static void cstr_or_null(w *x, const char *s)
{
    if (s)
        cstr(x, s);
    else
        lit(x, "null");
}

static void int64(w *x, int64_t n)
{
    if (x->rc == 0)
        x->rc = pr_buf_appendf(x->b, "%" PRId64, n);
}

static int end(w *x)
{
    if (x->rc != 0)
        x->b->len = x->mark;
    return x->rc;
}

static void message(w *x, const chat_message *m)
{
    int stored = m->seq >= 0;
    lit(x, "{\"id\":");
    cstr_or_null(x, m->id);
    if (stored) {
        lit(x, ",\"seq\":");
        int64(x, m->seq);
    }
    lit(x, ",\"roomId\":");
    cstr_or_null(x, m->room);
    lit(x, ",\"userId\":");
    cstr_or_null(x, m->user);
    lit(x, ",\"firstName\":");
    cstr(x, m->first_name ? m->first_name : "");
    if (stored || m->last_name) {
        lit(x, ",\"lastName\":");
        cstr_or_null(x, m->last_name);
    }
    lit(x, ",\"text\":");
    str(x, m->text, m->text_len);
    lit(x, ",\"createdAt\":");
    cstr_or_null(x, m->created_at);
    lit(x, ",\"clientMsgId\":");
    cstr_or_null(x, m->client_msg_id);
    if (m->status) {
        lit(x, ",\"status\":");
        cstr(x, m->status);
    }
    lit(x, "}");
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

int chat_status_packet(pr_buf *out, const chat_status *s)
{
    w x = begin(out);
    lit(&x, "2[\"messageStatus\",{\"roomId\":");
    cstr(&x, s->room);
    lit(&x, ",\"seq\":");
    int64(&x, s->seq);
    lit(&x, ",\"userId\":");
    cstr(&x, s->user);
    lit(&x, ",\"status\":");
    cstr(&x, s->status);
    lit(&x, ",\"aggregate\":");
    cstr(&x, s->aggregate);
    lit(&x, "}]");
    return end(&x);
}

int chat_ack_message(pr_buf *out, const chat_message *m)
{
    int stored = m->seq >= 0;
    w x = begin(out);
    lit(&x, "{\"id\":");
    cstr_or_null(&x, m->id);
    if (stored) {
        lit(&x, ",\"seq\":");
        int64(&x, m->seq);
    }
    lit(&x, ",\"roomId\":");
    cstr_or_null(&x, m->room);
    lit(&x, ",\"createdAt\":");
    cstr_or_null(&x, m->created_at);
    if (stored)
        lit(&x, ",\"status\":\"sent\"");
    lit(&x, "}");
    return end(&x);
}

int chat_ack_room(pr_buf *out, const char *room)
{
    w x = begin(out);
    lit(&x, "{\"roomId\":");
    cstr(&x, room);
    lit(&x, "}");
    return end(&x);
}

int chat_ack_error(pr_buf *out, const char *error)
{
    w x = begin(out);
    lit(&x, "{\"error\":");
    cstr(&x, error);
    lit(&x, "}");
    return end(&x);
}

int chat_error_event(pr_buf *out, const char *error, const char *event)
{
    w x = begin(out);
    lit(&x, "{\"error\":");
    cstr(&x, error);
    lit(&x, ",\"event\":");
    cstr(&x, event);
    lit(&x, "}");
    return end(&x);
}
