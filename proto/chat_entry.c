/* chat_entry.c - ingest and request stream entries: XADD argv and parsing. */
#include "chat_entry.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "chat.h"
#include "chat_int.h"
#include "chat_keys.h"

/* ---- receipt lines ---- */

int chat_receipt_add(pr_buf *out, pr_view room, pr_view user, int64_t seq)
{
    if (!chat__id_ok(room) || !chat__id_ok(user) || seq < -1 || seq > CHAT_NUM_MAX)
        return PR_EINVAL;
    char a[24];
    pr_view tab = PR_VIEW_LIT("\t");
    pr_view parts[] = {room, tab, user, tab, chat__num_view(a, seq), PR_VIEW_LIT("\n")};
    return chat__append_all(out, parts, 6);
}

int chat_receipt_next(pr_view *it, pr_view *room, pr_view *user, int64_t *seq)
{
    if (it->len == 0)
        return 0;
    pr_view rest = *it, r, u;
    int64_t s;
    if (chat__take_id(&rest, '\t', &r) || chat__take_id(&rest, '\t', &u) ||
        chat__take_num(&rest, '\n', 1, &s))
        return PR_EINVAL;
    *it = rest;
    *room = r;
    *user = u;
    *seq = s;
    return 1;
}

/* ---- building ---- */

static void arg(chat_xadd *x, const char *p, size_t n)
{
    x->argv[x->argc] = p ? p : "";
    x->lens[x->argc] = n;
    x->argc++;
}

static void arg_view(chat_xadd *x, pr_view v)
{
    arg(x, v.ptr, v.len);
}

/* "name" value */
static void field(chat_xadd *x, const char *name, pr_view v)
{
    arg(x, name, strlen(name));
    arg_view(x, v);
}

static void head(chat_xadd *x, const char *kind)
{
    x->argc = 0;
    arg(x, "XADD", 4);
    arg(x, x->key, strlen(x->key));
    arg(x, "*", 1);
    field(x, "k", pr_view_make(kind, strlen(kind)));
}

static int set_ingest_key(chat_xadd *x, unsigned shard)
{
    if (shard >= CHAT_SHARDS_MAX)
        return PR_EINVAL;
    chat_key k = chat_key_ingest(shard);
    memcpy(x->key, k.s, k.len + 1);
    x->shard = shard;
    return PR_OK;
}

static pr_view num(chat_xadd *x, int slot, int64_t n)
{
    int len = snprintf(x->num[slot], sizeof x->num[slot], "%" PRId64, n);
    return pr_view_make(x->num[slot], (size_t)len);
}

int chat_xadd_message(chat_xadd *x, unsigned nshards, const chat_entry *m)
{
    if (nshards == 0 || !m->room.ptr || !m->user.ptr || !m->text.ptr ||
        (m->reply_to.ptr != NULL) != (m->socket.ptr != NULL) ||
        set_ingest_key(x, chat_room_shard(m->room.ptr, m->room.len, nshards)) != PR_OK)
        return PR_EINVAL;
    head(x, "m");
    field(x, "r", m->room);
    field(x, "u", m->user);
    field(x, "n", m->first_name); /* always: "" when none */
    if (m->last_name.ptr)
        field(x, "l", m->last_name);
    field(x, "x", m->text);
    if (m->client_msg_id.ptr)
        field(x, "c", m->client_msg_id);
    if (m->peer.ptr)
        field(x, "p", m->peer);
    /* the reply address even without a callback: an error then comes back
     * as a chatError, never silence */
    if (m->reply_to.ptr) {
        field(x, "g", m->reply_to);
        field(x, "s", m->socket);
        if (m->ack_id >= 0)
            field(x, "a", num(x, 0, m->ack_id));
    }
    return PR_OK;
}

int chat_xadd_open(chat_xadd *x, unsigned nshards, const chat_entry *o)
{
    if (nshards == 0 || !o->room.ptr || !o->user.ptr || !o->peer.ptr ||
        (o->reply_to.ptr && (!o->socket.ptr || o->ack_id < 0)) ||
        set_ingest_key(x, chat_room_shard(o->room.ptr, o->room.len, nshards)) != PR_OK)
        return PR_EINVAL;
    head(x, "o");
    field(x, "r", o->room);
    field(x, "u", o->user);
    field(x, "p", o->peer);
    if (o->reply_to.ptr) {
        field(x, "g", o->reply_to);
        field(x, "s", o->socket);
        field(x, "a", num(x, 0, o->ack_id));
    }
    return PR_OK;
}

int chat_xadd_receipts(chat_xadd *x, unsigned shard, pr_view delivered, pr_view seen)
{
    if (set_ingest_key(x, shard) != PR_OK)
        return PR_EINVAL;
    head(x, "R");
    field(x, "d", delivered);
    field(x, "v", seen);
    return PR_OK;
}

int chat_xadd_request(chat_xadd *x, const chat_request *r)
{
    const char *kind = r->kind == CHAT_RPC_REPLAY ? "replay"
                       : r->kind == CHAT_RPC_SYNC ? "sync"
                                                  : NULL;
    if (!kind || !r->reply_to.ptr || !r->req_id.ptr || !r->user.ptr ||
        (r->kind == CHAT_RPC_REPLAY && !r->vector.ptr))
        return PR_EINVAL;
    memcpy(x->key, CHAT_KEY_RPC, sizeof CHAT_KEY_RPC);
    x->shard = 0;
    head(x, kind);
    field(x, "g", r->reply_to);
    field(x, "i", r->req_id);
    field(x, "u", r->user);
    if (r->vector.ptr)
        field(x, "v", r->vector);
    field(x, "m", num(x, 1, r->max));
    return PR_OK;
}

/* ---- parsing ---- */

/* Every field name of the contract is one lowercase letter: one pass files
 * each value under its letter (the last one wins), so no lookup scans the
 * list again. */
typedef struct {
    pr_view v[26];
} fields;

static void scan(const chat_field *f, size_t n, fields *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++)
        if (f[i].name.len == 1 && f[i].name.ptr[0] >= 'a' && f[i].name.ptr[0] <= 'z')
            out->v[f[i].name.ptr[0] - 'a'] = f[i].value;
}

static pr_view get(const fields *f, char name)
{
    return f->v[name - 'a'];
}

static int has(pr_view v)
{
    return v.ptr != NULL;
}

static int id_ok(pr_view v)
{
    return v.ptr && chat_id_valid(v.ptr, v.len);
}

static int name_ok(pr_view v)
{
    return !v.ptr || chat_name_valid(v.ptr, v.len);
}

/* An ack id: decimal 0..2^53-1 (leading zeros allowed, as storage always
 * took them). */
static int ack_id(pr_view v, int64_t *out)
{
    return chat__parse_digits(v, out);
}

static int text_ok(pr_view x)
{
    return x.ptr && x.len > 0 && x.len <= CHAT_ENTRY_TEXT_MAX && !memchr(x.ptr, '\0', x.len) &&
           pr_utf8_valid(x.ptr, x.len);
}

static int in_shard(const chat_entry_ctx *ctx, pr_view room)
{
    return ctx->nshards == 0 || chat_room_shard(room.ptr, room.len, ctx->nshards) == ctx->shard;
}

/* a direct room must be the one of its two users (docs/decisions.md 13) */
static int is_dm(const chat_entry_ctx *ctx, pr_view room, pr_view a, pr_view b)
{
    if (!ctx->room_key)
        return 1;
    char sa[CHAT_ID_MAX + 1], sb[CHAT_ID_MAX + 1], dm[CHAT_DM_ID_LEN + 1];
    memcpy(sa, a.ptr, a.len); /* ids: at most CHAT_ID_MAX */
    sa[a.len] = '\0';
    memcpy(sb, b.ptr, b.len);
    sb[b.len] = '\0';
    chat_dm_room_id(ctx->room_key, sa, sb, dm);
    return room.len == CHAT_DM_ID_LEN && !memcmp(dm, room.ptr, room.len);
}

/* Every field checked, so nothing from the stream can make the batch's SQL
 * fail or forge an envelope. */
static int parse_message(const chat_entry_ctx *ctx, const fields *f, chat_entry *e)
{
    pr_view g = get(f, 'g'), s = get(f, 's'), a = get(f, 'a');
    /* the reply address first, so a malformed message still gets its error;
     * g and s without a: the client passed no callback, so only an error is
     * answered (a = -1), which its gateway turns into a chatError event */
    int64_t id = -1;
    if (id_ok(g) && id_ok(s) && (!has(a) || ack_id(a, &id) == PR_OK)) {
        e->reply_to = g;
        e->socket = s;
        e->ack_id = has(a) ? id : -1;
    }
    e->room = get(f, 'r');
    e->user = get(f, 'u');
    e->first_name = get(f, 'n');
    e->last_name = get(f, 'l');
    e->text = get(f, 'x');
    e->client_msg_id = get(f, 'c');
    e->peer = get(f, 'p');
    if (!id_ok(e->room) || !id_ok(e->user) || !name_ok(e->first_name) || !name_ok(e->last_name) ||
        !text_ok(e->text) || (has(e->client_msg_id) && !id_ok(e->client_msg_id)) ||
        (has(e->peer) && !id_ok(e->peer)))
        return CHAT_ENTRY_INVALID;
    if (!in_shard(ctx, e->room))
        return CHAT_ENTRY_INVALID; /* in another shard's stream it would break that room's order */
    if (!has(e->first_name))
        e->first_name = PR_VIEW_LIT("");
    if (has(e->peer) && !is_dm(ctx, e->room, e->user, e->peer))
        return CHAT_ENTRY_FORBIDDEN;
    return CHAT_ENTRY_OK;
}

/* Opening a direct room: room, user and peer, and the ack's address when
 * the joinChat waits for the answer; nothing else of a message's fields. */
static int parse_open(const chat_entry_ctx *ctx, const fields *f, chat_entry *e)
{
    pr_view g = get(f, 'g'), s = get(f, 's');
    int64_t id;
    if (id_ok(g) && id_ok(s) && ack_id(get(f, 'a'), &id) == PR_OK) {
        e->reply_to = g;
        e->socket = s;
        e->ack_id = id;
    }
    e->room = get(f, 'r');
    e->user = get(f, 'u');
    e->peer = get(f, 'p');
    if (!id_ok(e->room) || !id_ok(e->user) || !id_ok(e->peer) || !in_shard(ctx, e->room))
        return CHAT_ENTRY_INVALID;
    return is_dm(ctx, e->room, e->user, e->peer) ? CHAT_ENTRY_OK : CHAT_ENTRY_FORBIDDEN;
}

static int applies(const chat_entry_ctx *ctx, char kind, pr_view room, int64_t seq)
{
    if (kind == 'd' && seq < 0)
        return 0; /* "everything" is for seen only */
    return in_shard(ctx, room);
}

/* Every line well formed; counts those that apply. */
static int parse_receipts(const chat_entry_ctx *ctx, const fields *f, chat_entry *e,
                          unsigned *count)
{
    e->delivered = get(f, 'd');
    e->seen = get(f, 'v');
    if (!has(e->delivered) && !has(e->seen))
        return CHAT_ENTRY_INVALID;
    pr_view parts[2] = {e->delivered, e->seen};
    for (int i = 0; i < 2; i++) {
        pr_view it = parts[i], room, user;
        int64_t seq;
        int rc;
        while ((rc = chat_receipt_next(&it, &room, &user, &seq)) == 1)
            *count += (unsigned)applies(ctx, i ? 'v' : 'd', room, seq);
        if (rc != 0)
            return CHAT_ENTRY_INVALID;
    }
    return CHAT_ENTRY_OK;
}

int chat_entry_parse(const chat_field *fl, size_t n, const chat_entry_ctx *ctx, chat_entry *out,
                     unsigned *nreceipts)
{
    fields f;
    unsigned count = 0;
    memset(out, 0, sizeof *out);
    out->ack_id = -1;
    if (nreceipts)
        *nreceipts = 0;
    scan(fl, n, &f);
    pr_view k = get(&f, 'k');
    if (!k.ptr || k.len != 1)
        return CHAT_ENTRY_INVALID;
    int rc;
    switch (k.ptr[0]) {
    case CHAT_ENTRY_MESSAGE: out->kind = CHAT_ENTRY_MESSAGE; return parse_message(ctx, &f, out);
    case CHAT_ENTRY_OPEN: out->kind = CHAT_ENTRY_OPEN; return parse_open(ctx, &f, out);
    case CHAT_ENTRY_RECEIPTS:
        out->kind = CHAT_ENTRY_RECEIPTS;
        rc = parse_receipts(ctx, &f, out, &count);
        if (rc == CHAT_ENTRY_OK && nreceipts)
            *nreceipts = count;
        return rc;
    default: return CHAT_ENTRY_INVALID;
    }
}

int chat_entry_receipt_next(const chat_entry *e, const chat_entry_ctx *ctx, chat_receipt_iter *it,
                            char *kind, pr_view *room, pr_view *user, int64_t *seq)
{
    for (;;) {
        if (it->part >= 2)
            return 0;
        if (!it->rest.ptr) {
            it->rest = it->part == 0 ? e->delivered : e->seen;
            if (!it->rest.ptr) {
                it->part++;
                continue;
            }
        }
        char k = it->part == 0 ? 'd' : 'v';
        int rc = chat_receipt_next(&it->rest, room, user, seq);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            it->part++;
            it->rest = pr_view_make(NULL, 0);
            continue;
        }
        if (!applies(ctx, k, *room, *seq))
            continue;
        *kind = k;
        return 1;
    }
}

/* ---- requests ---- */

/* m: a decimal >= 1, saturating. */
static int parse_max(pr_view v, unsigned *out)
{
    if (!v.ptr || v.len == 0)
        return PR_EINVAL;
    unsigned long long x = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9')
            return PR_EINVAL;
        x = x * 10 + (unsigned)(v.ptr[i] - '0');
        if (x > UINT_MAX)
            x = UINT_MAX;
    }
    if (x == 0)
        return PR_EINVAL;
    *out = (unsigned)x;
    return PR_OK;
}

int chat_request_parse(const chat_field *fl, size_t n, chat_request *out)
{
    fields f;
    memset(out, 0, sizeof *out);
    scan(fl, n, &f);
    pr_view g = get(&f, 'g'), i = get(&f, 'i'), k = get(&f, 'k');
    if (!id_ok(g) || !id_ok(i))
        return PR_EINVAL; /* nobody to answer */
    out->reply_to = g;
    out->req_id = i;
    out->user = get(&f, 'u');
    out->vector = get(&f, 'v');
    if (pr_view_eq_cstr(k, "replay"))
        out->kind = CHAT_RPC_REPLAY;
    else if (pr_view_eq_cstr(k, "sync"))
        out->kind = CHAT_RPC_SYNC;
    if (!id_ok(out->user) || !out->kind || parse_max(get(&f, 'm'), &out->max) != PR_OK)
        return PR_EINVAL;
    return PR_OK;
}
