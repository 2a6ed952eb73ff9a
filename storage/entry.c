/* entry.c - parsing and checking ingest stream entries; chat_batch's JSON. */
#include "entry.h"

#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "st.h"

typedef st__entry entry;

typedef struct {
    unsigned nshards;
    const unsigned char *room_key;
} pctx;

void st__entry_free(st__entry *e)
{
    if (!e)
        return;
    pr_free(e->buf);
    pr_free(e->rc);
    pr_free(e);
}

/* Every field name of the contract is one letter: one pass over the
 * entry's fields files each string value under its letter (the last one
 * wins), so no lookup scans the list again. */
typedef struct {
    const redisReply *v[26];
} fields;

static void scan_fields(const redisReply *f, fields *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && k->len == 1 && k->str[0] >= 'a' && k->str[0] <= 'z')
            out->v[k->str[0] - 'a'] = v->type == REDIS_REPLY_STRING ? v : NULL;
    }
}

static const redisReply *field(const fields *f, char name)
{
    return f->v[name - 'a'];
}

static int valid_id(const redisReply *v)
{
    return v && chat_id_valid(v->str, v->len);
}

/* Parses "123" (0..2^53-1). */
static int parse_ack_id(const redisReply *v, int64_t *out)
{
    if (!v || v->len == 0 || v->len > 16)
        return -1;
    int64_t x = 0;
    for (size_t i = 0; i < v->len; i++) {
        if (v->str[i] < '0' || v->str[i] > '9')
            return -1;
        x = x * 10 + (v->str[i] - '0');
    }
    if (x > (((int64_t)1) << 53) - 1)
        return -1;
    *out = x;
    return 0;
}

/* Copies the fields a message needs into one allocation. */
static void copy_fields(entry *e, const redisReply *const *v, const char **dst[], size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += v[i] ? v[i]->len + 1 : 0;
    e->buf = pr_malloc(total ? total : 1);
    char *p = e->buf;
    for (size_t i = 0; i < n; i++) {
        if (!v[i]) {
            *dst[i] = NULL;
            continue;
        }
        memcpy(p, v[i]->str, v[i]->len);
        p[v[i]->len] = '\0';
        *dst[i] = p;
        p += v[i]->len + 1;
    }
}

static int text_ok(const redisReply *x)
{
    return x && x->len > 0 && x->len <= ST_TEXT_HARD_MAX && !memchr(x->str, '\0', x->len) &&
           pr_utf8_valid(x->str, x->len);
}

/* A message entry: every field checked, so nothing from the stream can make
 * the batch's SQL fail or forge an envelope. 0 when it is malformed. */
static int parse_message(const pctx *g, entry *e, const fields *f)
{
    const redisReply *r = field(f, 'r'), *u = field(f, 'u'), *n = field(f, 'n'), *l = field(f, 'l'),
                     *x = field(f, 'x'), *c = field(f, 'c'), *p = field(f, 'p'),
                     *gc = field(f, 'g'), *s = field(f, 's'), *a = field(f, 'a');
    /* the reply address first, so a malformed message still gets its error;
     * g and s without a: the client passed no callback, so only an error is
     * answered (a = -1), which its gateway turns into a chatError event */
    int ackable = valid_id(gc) && valid_id(s) && (!a || parse_ack_id(a, &e->a) == 0);
    if (!ackable || !a)
        e->a = -1;
    const redisReply *vals[] = {r, u, n, l, x, c, p, ackable ? gc : NULL, ackable ? s : NULL};
    const char **dst[] = {&e->r, &e->u, &e->n, &e->l, &e->x, &e->c, &e->p, &e->g, &e->s};
    copy_fields(e, vals, dst, sizeof vals / sizeof vals[0]);
    e->x_len = x ? x->len : 0;
    if (!valid_id(r) || !valid_id(u) || (n && !chat_name_valid(n->str, n->len)) ||
        (l && !chat_name_valid(l->str, l->len)) || !text_ok(x) || (c && !valid_id(c)) ||
        (p && !valid_id(p)))
        return 0;
    if (chat_room_shard(r->str, r->len, g->nshards) != e->shard)
        return 0; /* in another shard's stream it would break that room's order */
    if (!e->n)
        e->n = "";
    if (p) {
        /* a direct room must be the one of its two users (docs/decisions.md 13) */
        char dm[CHAT_DM_ID_LEN + 1];
        chat_dm_room_id(g->room_key, e->u, e->p, dm);
        if (strcmp(dm, e->r) != 0)
            e->status = ST_E_FORBIDDEN;
    }
    return 1;
}

/* Opening a direct room (joinChat): room, user and peer, the room being
 * theirs, and the ack's address when the joinChat waits for the answer.
 * Nothing else of the message's fields. */
static int parse_open(const pctx *g, entry *e, const fields *f)
{
    const redisReply *r = field(f, 'r'), *u = field(f, 'u'), *p = field(f, 'p'),
                     *gc = field(f, 'g'), *s = field(f, 's'), *a = field(f, 'a');
    int ackable = valid_id(gc) && valid_id(s) && parse_ack_id(a, &e->a) == 0;
    if (!ackable)
        e->a = -1;
    const redisReply *vals[] = {r, u, p, ackable ? gc : NULL, ackable ? s : NULL};
    const char **dst[] = {&e->r, &e->u, &e->p, &e->g, &e->s};
    copy_fields(e, vals, dst, 5);
    if (!valid_id(r) || !valid_id(u) || !valid_id(p) ||
        chat_room_shard(r->str, r->len, g->nshards) != e->shard)
        return 0;
    char dm[CHAT_DM_ID_LEN + 1];
    chat_dm_room_id(g->room_key, e->u, e->p, dm);
    if (strcmp(dm, e->r) != 0)
        e->status = ST_E_FORBIDDEN;
    return 1;
}

static int append_receipts(const pctx *g, entry *e, pr_buf *out, const redisReply *v, char kind)
{
    if (!v)
        return 0;
    pr_view it = pr_view_make(v->str, v->len), room, user;
    int64_t seq;
    int rc;
    while ((rc = chat_receipt_next(&it, &room, &user, &seq)) == 1) {
        if (!chat_id_valid(room.ptr, room.len) || !chat_id_valid(user.ptr, user.len))
            return -1;
        if (kind == 'd' && seq < 0)
            continue; /* "everything" is for seen only */
        if (chat_room_shard(room.ptr, room.len, g->nshards) != e->shard)
            continue;
        if (out->len && pr_buf_append_byte(out, ',') != 0)
            return -1;
        if (pr_buf_append(out, "{\"r\":", 5) != 0 || st__json_str(out, room.ptr, room.len) != 0 ||
            pr_buf_append(out, ",\"u\":", 5) != 0 || st__json_str(out, user.ptr, user.len) != 0 ||
            pr_buf_appendf(out, ",\"%c\":%lld}", kind, (long long)seq) != 0)
            return -1;
        e->nrc++;
    }
    return rc == 0 ? 0 : -1;
}

/* A receipts entry: lines for rooms of another shard are dropped (they would
 * be applied out of order with that room's messages). */
static int parse_receipts(const pctx *g, entry *e, const fields *f)
{
    const redisReply *d = field(f, 'd'), *v = field(f, 'v');
    pr_buf out;
    pr_buf_init(&out, 16u << 20);
    int ok = (d || v) && append_receipts(g, e, &out, d, 'd') == 0 &&
             append_receipts(g, e, &out, v, 's') == 0;
    if (!ok) {
        pr_buf_dispose(&out);
        e->nrc = 0;
        return 0;
    }
    e->rc = pr_buf_steal(&out, &e->rc_len);
    return 1;
}

st__entry *st__entry_parse(const redisReply *item, unsigned shard, unsigned nshards,
                           const unsigned char room_key[32])
{
    pctx ctx = {nshards, room_key};
    const pctx *g = &ctx;
    entry *e = pr_calloc(1, sizeof *e);
    e->shard = shard;
    e->a = -1;
    if (item->type != REDIS_REPLY_ARRAY || item->elements != 2 ||
        item->element[0]->type != REDIS_REPLY_STRING || item->element[0]->len >= sizeof e->id) {
        pr_free(e);
        return NULL; /* no id: nothing can even be acked */
    }
    memcpy(e->id, item->element[0]->str, item->element[0]->len);
    if (item->element[1]->type != REDIS_REPLY_ARRAY)
        return e; /* deleted while pending: ack only */
    fields all;
    scan_fields(item->element[1], &all);
    const fields *f = &all;
    const redisReply *k = field(f, 'k');
    int ok = 0;
    if (k && k->len == 1 && k->str[0] == 'm') {
        e->kind = 'm';
        ok = parse_message(g, e, f);
    } else if (k && k->len == 1 && k->str[0] == 'R') {
        e->kind = 'R';
        ok = parse_receipts(g, e, f);
    } else if (k && k->len == 1 && k->str[0] == 'o') {
        e->kind = 'o';
        ok = parse_open(g, e, f);
    }
    if (!ok) {
        e->status = ST_E_INVALID;
        if (e->kind != 'm' && !(e->kind == 'o' && e->a >= 0))
            e->kind = 0; /* a message or an answered open keeps its error ack */
    }
    return e;
}

int st__entry_batch_json(st__entry *const *ents, size_t n, pr_buf *msgs, pr_buf *rcpts)
{
    int rc = pr_buf_append_byte(msgs, '[');
    if (rc == 0)
        rc = pr_buf_append_byte(rcpts, '[');
    int first_m = 1, first_r = 1;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const entry *e = ents[i];
        if (e->kind == 'R' && e->status != ST_E_INVALID && e->rc_len) {
            if (!first_r)
                rc = pr_buf_append_byte(rcpts, ',');
            if (rc == 0)
                rc = pr_buf_append(rcpts, e->rc, e->rc_len);
            first_r = 0;
            continue;
        }
        if ((e->kind != 'm' && e->kind != 'o') || e->status != ST_E_NONE)
            continue;
        if (!first_m)
            rc = pr_buf_append_byte(msgs, ',');
        first_m = 0;
        if (e->kind == 'o') { /* {o, sh, k: "o", r, u, p} */
            if (rc == 0)
                rc = pr_buf_appendf(msgs, "{\"o\":%zu,\"sh\":%u,\"k\":\"o\",\"r\":", i, e->shard);
            if (rc == 0)
                rc = st__json_str(msgs, e->r, strlen(e->r));
            if (rc == 0)
                rc = pr_buf_append(msgs, ",\"u\":", 5);
            if (rc == 0)
                rc = st__json_str(msgs, e->u, strlen(e->u));
            if (rc == 0)
                rc = pr_buf_append(msgs, ",\"p\":", 5);
            if (rc == 0)
                rc = st__json_str(msgs, e->p, strlen(e->p));
            if (rc == 0)
                rc = pr_buf_append_byte(msgs, '}');
            continue;
        }
        if (rc == 0)
            rc = pr_buf_appendf(msgs, "{\"o\":%zu,\"sh\":%u,\"r\":", i, e->shard);
        if (rc == 0)
            rc = st__json_str(msgs, e->r, strlen(e->r));
        if (rc == 0)
            rc = pr_buf_append(msgs, ",\"u\":", 5);
        if (rc == 0)
            rc = st__json_str(msgs, e->u, strlen(e->u));
        if (rc == 0)
            rc = pr_buf_append(msgs, ",\"n\":", 5);
        if (rc == 0)
            rc = st__json_str(msgs, e->n, strlen(e->n));
        if (rc == 0 && e->l) {
            rc = pr_buf_append(msgs, ",\"l\":", 5);
            if (rc == 0)
                rc = st__json_str(msgs, e->l, strlen(e->l));
        }
        if (rc == 0)
            rc = pr_buf_append(msgs, ",\"x\":", 5);
        if (rc == 0)
            rc = st__json_str(msgs, e->x, e->x_len);
        if (rc == 0 && e->c) {
            rc = pr_buf_append(msgs, ",\"c\":", 5);
            if (rc == 0)
                rc = st__json_str(msgs, e->c, strlen(e->c));
        }
        if (rc == 0 && e->p) {
            rc = pr_buf_append(msgs, ",\"p\":", 5);
            if (rc == 0)
                rc = st__json_str(msgs, e->p, strlen(e->p));
        }
        if (rc == 0)
            rc = pr_buf_append_byte(msgs, '}');
    }
    if (rc == 0)
        rc = pr_buf_append(msgs, "]", 2); /* with the NUL libpq wants */
    if (rc == 0)
        rc = pr_buf_append(rcpts, "]", 2);
    return rc;
}
