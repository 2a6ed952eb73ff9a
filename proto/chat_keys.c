/* chat_keys.c - Redis key and channel names, and the values both programs read. */
#include "chat_keys.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "chat.h"

/* The name, or the empty name when it does not fit. */
static chat_key name(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static chat_key name(const char *fmt, ...)
{
    chat_key k;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(k.s, sizeof k.s, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof k.s) {
        k.s[0] = '\0';
        n = 0;
    }
    k.len = (size_t)n;
    return k;
}

chat_key chat_key_room_members(const char *room)
{
    return name("{r:%s}:members", room);
}

chat_key chat_key_user_rooms(const char *user)
{
    return name("{u:%s}:rooms", user);
}

chat_key chat_key_ingest(unsigned shard)
{
    return name("{i:%u}:in", shard);
}

chat_key chat_key_lease(unsigned shard)
{
    return name("{i:%u}:lease", shard);
}

chat_key chat_key_session(const char *pid)
{
    return name("{c:%s}:sess", pid);
}

int chat_key_ingest_shard(pr_view key, unsigned nshards, unsigned *shard)
{
    /* "{i:" digits "}:in", the digits as chat_key_ingest writes them */
    if (key.len < 8 || memcmp(key.ptr, "{i:", 3) != 0 ||
        memcmp(key.ptr + key.len - 4, "}:in", 4) != 0)
        return PR_EINVAL;
    size_t nd = key.len - 7;
    if (nd > 3 || (nd > 1 && key.ptr[3] == '0'))
        return PR_EINVAL;
    unsigned s = 0;
    for (size_t i = 0; i < nd; i++) {
        char c = key.ptr[3 + i];
        if (c < '0' || c > '9')
            return PR_EINVAL;
        s = s * 10 + (unsigned)(c - '0');
    }
    if (s >= nshards)
        return PR_EINVAL;
    *shard = s;
    return PR_OK;
}

unsigned chat_presence_shard(const char *user)
{
    return (unsigned)(pr_fnv1a64(user, strlen(user)) % CHAT_PRESENCE_SHARDS);
}

chat_key chat_key_presence_on(const char *user)
{
    return name("{p%u}:on:%s", chat_presence_shard(user), user);
}

chat_key chat_key_presence_exp(unsigned pshard)
{
    return name("{p%u}:exp", pshard);
}

chat_key chat_key_presence_on_prefix(unsigned pshard)
{
    return name("{p%u}:on:", pshard);
}

chat_key chat_presence_member(const char *node, unsigned worker)
{
    return name("%s/%u", node, worker);
}

chat_key chat_chan_room(const char *room)
{
    return name("room:{%s}", room);
}

chat_key chat_chan_user(const char *user)
{
    return name("user:{%s}", user);
}

chat_key chat_chan_gateway(const char *node, unsigned worker)
{
    return name("gw:{%s.%u}", node, worker);
}

chat_key chat_chan_storage(const char *replica)
{
    return name("st:{%s}", replica);
}

int chat_cache_mark_encode(pr_buf *out, uint64_t wall_ms, const char *replica)
{
    size_t mark = out->len;
    int rc = pr_buf_appendf(out, "%" PRIu64 " %s", wall_ms, replica);
    if (rc != PR_OK)
        out->len = mark;
    return rc;
}

/* 1..19 decimal digits, nothing else. */
static int decimal(pr_view in, uint64_t *out)
{
    if (in.len == 0 || in.len > 19)
        return PR_EINVAL;
    uint64_t x = 0;
    for (size_t i = 0; i < in.len; i++) {
        if (in.ptr[i] < '0' || in.ptr[i] > '9')
            return PR_EINVAL;
        x = x * 10 + (uint64_t)(in.ptr[i] - '0');
    }
    *out = x;
    return PR_OK;
}

int chat_cache_mark_decode(pr_view in, uint64_t *wall_ms)
{
    const char *sp = in.len ? memchr(in.ptr, ' ', in.len) : NULL;
    return sp ? decimal(pr_view_make(in.ptr, (size_t)(sp - in.ptr)), wall_ms) : PR_EINVAL;
}

int chat_pos_decode(pr_view field, pr_view value, unsigned nshards, unsigned *shard, uint64_t *pos)
{
    uint64_t s, p;
    if (decimal(field, &s) != PR_OK || decimal(value, &p) != PR_OK || s >= nshards)
        return PR_EINVAL;
    *shard = (unsigned)s;
    *pos = p;
    return PR_OK;
}

int chat_session_encode(pr_buf *out, pr_view user, const uint64_t *vec, unsigned n)
{
    size_t mark = out->len;
    int rc = pr_buf_append_view(out, user);
    if (rc == PR_OK)
        rc = pr_buf_append_byte(out, '\n');
    if (rc == PR_OK)
        rc = chat_vec_encode(out, vec, n);
    if (rc != PR_OK)
        out->len = mark;
    return rc;
}

int chat_session_decode(pr_view in, pr_view *user, pr_view *vec)
{
    const char *nl = in.len ? memchr(in.ptr, '\n', in.len) : NULL;
    if (!nl)
        return PR_EINVAL;
    *user = pr_view_make(in.ptr, (size_t)(nl - in.ptr));
    *vec = pr_view_make(nl + 1, in.len - user->len - 1);
    return PR_OK;
}
