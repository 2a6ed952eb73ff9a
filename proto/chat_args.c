/*
 * chat_args.c - identifiers and chat event payloads as clients send them.
 *
 * Payload keys (the tutorials' camelCase): targetUserId, roomId, text (alias
 * msg), clientMsgId, userId, firstName, lastName, seq.
 */
#include "chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int chat_id_valid(const char *s, size_t len)
{
    if (len == 0 || len > CHAT_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e)
            return 0;
    }
    return 1;
}

int chat_name_valid(const char *s, size_t len)
{
    if (len > CHAT_NAME_MAX || !pr_utf8_valid(s, len))
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return 0;
        /* C1 controls U+0080..U+009F are C2 80..C2 9F; the UTF-8 is valid,
         * so a C2 always has a continuation byte after it. */
        if (c == 0xc2 && (unsigned char)s[i + 1] <= 0x9f)
            return 0;
    }
    return 1;
}

/*
 * Looks key up. JSON null counts as absent: JavaScript clients send null for
 * "no value" as often as they leave a key out.
 */
static const json_t *field(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

/* An optional string field that must pass valid(); *out stays NULL when absent. */
static int string_field(const json_t *obj, const char *key, int (*valid)(const char *, size_t),
                        const char **out)
{
    const json_t *v = field(obj, key);
    if (v == NULL)
        return PR_OK;
    if (!json_is_string(v) || !valid(json_string_value(v), json_string_length(v)))
        return PR_EINVAL;
    *out = json_string_value(v);
    return PR_OK;
}

/* "text", or "msg" when there is no "text". It may hold newlines, but no NUL:
 * the message ends up in PostgreSQL text, which cannot store one. */
static int text_field(const json_t *obj, size_t max_text, chat_args *out)
{
    const json_t *v = field(obj, "text");
    if (v == NULL)
        v = field(obj, "msg");
    if (v == NULL)
        return PR_OK;
    if (!json_is_string(v))
        return PR_EINVAL;
    size_t len = json_string_length(v);
    if (len > max_text)
        return PR_ETOOBIG;
    const char *s = json_string_value(v);
    if (memchr(s, '\0', len) != NULL)
        return PR_EINVAL;
    out->text = s;
    out->text_len = len;
    return PR_OK;
}

/* "userId": an id string, or an integer that becomes its decimal text. */
static int user_id_field(const json_t *obj, chat_args *out)
{
    const json_t *v = field(obj, "userId");
    if (json_is_integer(v)) {
        snprintf(out->user_id_buf, sizeof out->user_id_buf, "%" JSON_INTEGER_FORMAT,
                 json_integer_value(v));
        out->user_id = out->user_id_buf;
        return PR_OK;
    }
    return string_field(obj, "userId", chat_id_valid, &out->user_id);
}

static int seq_field(const json_t *obj, chat_args *out)
{
    const json_t *v = field(obj, "seq");
    if (v == NULL)
        return PR_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return PR_EINVAL;
    out->seq = json_integer_value(v);
    return PR_OK;
}

int chat_parse_args(const json_t *payload, size_t max_text, chat_args *out)
{
    memset(out, 0, sizeof *out);
    out->seq = -1;
    if (!json_is_object(payload))
        return PR_EINVAL;

    int rc;
    if ((rc = string_field(payload, "targetUserId", chat_id_valid, &out->target_user_id)) ||
        (rc = string_field(payload, "roomId", chat_id_valid, &out->room_id)) ||
        (rc = text_field(payload, max_text, out)) ||
        (rc = string_field(payload, "clientMsgId", chat_id_valid, &out->client_msg_id)) ||
        (rc = user_id_field(payload, out)) ||
        (rc = string_field(payload, "firstName", chat_name_valid, &out->first_name)) ||
        (rc = string_field(payload, "lastName", chat_name_valid, &out->last_name)) ||
        (rc = seq_field(payload, out)))
        return rc;
    return PR_OK;
}
