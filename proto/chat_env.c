/* chat_env.c - the envelopes of events on Redis pub/sub channels (C1, M1,
 * U1, J1, K1, A1, R1; docs/storage.md "Envelopes"). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "chat.h"
#include "chat_int.h"

#define CHAT_ENV_TAG "C1\n"

/* ---- C1: a transient room event ---- */

static int optional_id_valid(pr_view v)
{
    return v.len == 0 || chat_id_valid(v.ptr, v.len);
}

int chat_env_encode(pr_buf *out, const chat_env *h, pr_view packet)
{
    if (!chat_id_valid(h->room.ptr, h->room.len) || !optional_id_valid(h->except_socket) ||
        !optional_id_valid(h->except_user) || packet.len == 0)
        return PR_EINVAL;

    /* Reserve everything first, so a refusal leaves out unchanged. */
    size_t head =
        sizeof CHAT_ENV_TAG - 1 + h->room.len + h->except_socket.len + h->except_user.len + 3;
    if (packet.len > SIZE_MAX - head)
        return PR_ETOOBIG;
    int rc = pr_buf_reserve(out, head + packet.len);
    if (rc != PR_OK)
        return rc;
    pr_buf_append(out, CHAT_ENV_TAG, sizeof CHAT_ENV_TAG - 1);
    pr_buf_append_view(out, h->room);
    pr_buf_append_byte(out, '\n');
    pr_buf_append_view(out, h->except_socket);
    pr_buf_append_byte(out, '\n');
    pr_buf_append_view(out, h->except_user);
    pr_buf_append_byte(out, '\n');
    pr_buf_append_view(out, packet);
    return PR_OK;
}

/*
 * Cuts the line at *pos (advancing past its '\n') into *line. An id is at
 * most CHAT_ID_MAX bytes, so the search for '\n' stops there.
 */
static int env_line(pr_view in, size_t *pos, pr_view *line)
{
    size_t avail = in.len - *pos;
    size_t scan = avail < CHAT_ID_MAX + 1 ? avail : CHAT_ID_MAX + 1;
    const char *start = in.ptr + *pos;
    const char *nl = memchr(start, '\n', scan);
    if (nl == NULL)
        return PR_EINVAL;
    *line = pr_view_make(start, (size_t)(nl - start));
    *pos += line->len + 1;
    return PR_OK;
}

int chat_env_decode(pr_view in, chat_env *h, pr_view *packet)
{
    chat_env e;
    size_t pos = sizeof CHAT_ENV_TAG - 1;

    memset(h, 0, sizeof *h);
    *packet = pr_view_make(NULL, 0);
    if (in.len < pos || memcmp(in.ptr, CHAT_ENV_TAG, pos) != 0)
        return PR_EINVAL;
    if (env_line(in, &pos, &e.room) != PR_OK || env_line(in, &pos, &e.except_socket) != PR_OK ||
        env_line(in, &pos, &e.except_user) != PR_OK)
        return PR_EINVAL;
    if (!chat_id_valid(e.room.ptr, e.room.len) || !optional_id_valid(e.except_socket) ||
        !optional_id_valid(e.except_user) || pos == in.len)
        return PR_EINVAL;
    *h = e;
    *packet = pr_view_make(in.ptr + pos, in.len - pos);
    return PR_OK;
}

char chat_env_kind(pr_view in)
{
    if (in.len < 3 || in.ptr[1] != '1' || in.ptr[2] != '\n')
        return 0;
    return strchr("CMUJKAR", in.ptr[0]) && in.ptr[0] ? in.ptr[0] : 0;
}

int chat_menv_encode(pr_buf *out, const chat_menv *h, pr_view packet)
{
    if (!chat__id_ok(h->room) || !chat__id_ok(h->sender) || h->seq < 1 || h->seq > CHAT_NUM_MAX ||
        h->pos < 1 || h->pos > CHAT_NUM_MAX || h->shard >= CHAT_SHARDS_MAX || packet.len == 0)
        return PR_EINVAL;
    char a[24], b[24], c[24];
    pr_view nl = PR_VIEW_LIT("\n");
    pr_view parts[] = {PR_VIEW_LIT("M1\n"), h->room, nl, chat__num_view(a, h->seq), nl,
                       chat__num_view(b, h->shard), nl, chat__num_view(c, h->pos), nl, h->sender,
                       nl, packet};
    return chat__append_all(out, parts, sizeof parts / sizeof parts[0]);
}

int chat_menv_decode(pr_view in, chat_menv *h, pr_view *packet)
{
    chat_menv e;
    int64_t shard;
    memset(h, 0, sizeof *h);
    *packet = pr_view_make(NULL, 0);
    if (chat_env_kind(in) != 'M')
        return PR_EINVAL;
    pr_view it = pr_view_make(in.ptr + 3, in.len - 3);
    if (chat__take_id(&it, '\n', &e.room) || chat__take_num(&it, '\n', 0, &e.seq) ||
        chat__take_num(&it, '\n', 0, &shard) || chat__take_num(&it, '\n', 0, &e.pos) ||
        chat__take_id(&it, '\n', &e.sender) || it.len == 0 || e.seq < 1 || e.pos < 1 ||
        shard >= CHAT_SHARDS_MAX)
        return PR_EINVAL;
    e.shard = (unsigned)shard;
    *h = e;
    *packet = it;
    return PR_OK;
}

int chat_uenv_begin(pr_buf *out, pr_view user)
{
    if (!chat__id_ok(user))
        return PR_EINVAL;
    pr_view parts[] = {PR_VIEW_LIT("U1\n"), user};
    return chat__append_all(out, parts, 2);
}

int chat_uenv_add(pr_buf *out, pr_view packet)
{
    if (!chat__line_ok(packet))
        return PR_EINVAL;
    pr_view parts[] = {PR_VIEW_LIT("\n"), packet};
    return chat__append_all(out, parts, 2);
}

int chat_uenv_encode(pr_buf *out, pr_view user, pr_view packet)
{
    if (!chat__id_ok(user) || !chat__line_ok(packet))
        return PR_EINVAL;
    pr_view parts[] = {PR_VIEW_LIT("U1\n"), user, PR_VIEW_LIT("\n"), packet};
    return chat__append_all(out, parts, 4);
}

int chat_uenv_begin_decode(pr_view in, pr_view *user, pr_view *it)
{
    pr_view u;
    *user = *it = pr_view_make(NULL, 0);
    if (chat_env_kind(in) != 'U')
        return PR_EINVAL;
    pr_view rest = pr_view_make(in.ptr + 3, in.len - 3);
    if (chat__take_id(&rest, '\n', &u) || rest.len == 0)
        return PR_EINVAL;
    *user = u;
    *it = rest;
    return PR_OK;
}

int chat_uenv_next(pr_view *it, pr_view *packet)
{
    if (it->len == 0)
        return 0;
    const char *nl = memchr(it->ptr, '\n', it->len);
    size_t len = nl ? (size_t)(nl - it->ptr) : it->len;
    if (len == 0 || (nl && len + 1 == it->len)) /* empty, or a trailing newline */
        return PR_EINVAL;
    *packet = pr_view_make(it->ptr, len);
    *it = nl ? pr_view_make(nl + 1, it->len - len - 1) : pr_view_make(it->ptr + len, 0);
    return 1;
}

int chat_jenv_encode(pr_buf *out, char kind, pr_view room, pr_view user)
{
    if ((kind != 'J' && kind != 'K') || !chat__id_ok(room) || !chat__id_ok(user))
        return PR_EINVAL;
    char tag[3] = {kind, '1', '\n'};
    pr_view parts[] = {pr_view_make(tag, 3), room, PR_VIEW_LIT("\n"), user};
    return chat__append_all(out, parts, 4);
}

int chat_jenv_decode(pr_view in, char *kind, pr_view *room, pr_view *user)
{
    char k = chat_env_kind(in);
    pr_view r;
    *kind = 0;
    *room = *user = pr_view_make(NULL, 0);
    if (k != 'J' && k != 'K')
        return PR_EINVAL;
    pr_view it = pr_view_make(in.ptr + 3, in.len - 3);
    if (chat__take_id(&it, '\n', &r) || !chat__id_ok(it))
        return PR_EINVAL;
    *kind = k;
    *room = r;
    *user = it;
    return PR_OK;
}

int chat_aenv_begin(pr_buf *out)
{
    return pr_buf_append(out, "A1\n", 3);
}

int chat_aenv_add(pr_buf *out, pr_view socket, int64_t ack_id, pr_view json)
{
    if (!chat__id_ok(socket) || ack_id < -1 || ack_id > CHAT_NUM_MAX || !chat__line_ok(json))
        return PR_EINVAL;
    char a[24];
    pr_view tab = PR_VIEW_LIT("\t");
    pr_view parts[] = {socket, tab, chat__num_view(a, ack_id), tab, json, PR_VIEW_LIT("\n")};
    return chat__append_all(out, parts, 6);
}

int chat_aenv_begin_decode(pr_view in, pr_view *it)
{
    *it = pr_view_make(NULL, 0);
    if (chat_env_kind(in) != 'A')
        return PR_EINVAL;
    *it = pr_view_make(in.ptr + 3, in.len - 3);
    return PR_OK;
}

int chat_aenv_next(pr_view *it, pr_view *socket, int64_t *ack_id, pr_view *json)
{
    if (it->len == 0)
        return 0;
    pr_view rest = *it, s, j;
    int64_t id;
    if (chat__take_id(&rest, '\t', &s) || chat__take_num(&rest, '\t', 1, &id) ||
        chat__take(&rest, '\n', 0, &j) || j.len == 0)
        return PR_EINVAL;
    *it = rest;
    *socket = s;
    *ack_id = id;
    *json = j;
    return 1;
}

int chat_renv_begin(pr_buf *out, pr_view req_id, pr_view status)
{
    if (!chat__id_ok(req_id) || !chat__id_ok(status))
        return PR_EINVAL;
    pr_view nl = PR_VIEW_LIT("\n");
    pr_view parts[] = {PR_VIEW_LIT("R1\n"), req_id, nl, status, nl};
    return chat__append_all(out, parts, 5);
}

int chat_renv_add(pr_buf *out, const chat_replay_item *item)
{
    if (item->shard >= CHAT_SHARDS_MAX || item->pos < 1 || item->pos > CHAT_NUM_MAX ||
        item->seq < 1 || item->seq > CHAT_NUM_MAX || !chat__id_ok(item->room) ||
        !chat__line_ok(item->packet))
        return PR_EINVAL;
    char a[24], b[24], c[24];
    pr_view tab = PR_VIEW_LIT("\t");
    pr_view parts[] = {chat__num_view(a, item->shard), tab, chat__num_view(b, item->pos), tab,
                       chat__num_view(c, item->seq), tab, item->room, tab, item->packet,
                       PR_VIEW_LIT("\n")};
    return chat__append_all(out, parts, sizeof parts / sizeof parts[0]);
}

int chat_renv_begin_decode(pr_view in, pr_view *req_id, pr_view *status, pr_view *it)
{
    pr_view r, s;
    *req_id = *status = *it = pr_view_make(NULL, 0);
    if (chat_env_kind(in) != 'R')
        return PR_EINVAL;
    pr_view rest = pr_view_make(in.ptr + 3, in.len - 3);
    if (chat__take_id(&rest, '\n', &r) || chat__take_id(&rest, '\n', &s))
        return PR_EINVAL;
    *req_id = r;
    *status = s;
    *it = rest;
    return PR_OK;
}

int chat_renv_next(pr_view *it, chat_replay_item *item)
{
    if (it->len == 0)
        return 0;
    pr_view rest = *it;
    chat_replay_item x;
    int64_t shard;
    if (chat__take_num(&rest, '\t', 0, &shard) || chat__take_num(&rest, '\t', 0, &x.pos) ||
        chat__take_num(&rest, '\t', 0, &x.seq) || chat__take_id(&rest, '\t', &x.room) ||
        chat__take(&rest, '\n', 0, &x.packet) || x.packet.len == 0 || shard >= CHAT_SHARDS_MAX ||
        x.pos < 1 || x.seq < 1)
        return PR_EINVAL;
    x.shard = (unsigned)shard;
    *it = rest;
    *item = x;
    return 1;
}
