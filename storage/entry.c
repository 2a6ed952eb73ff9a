/* entry.c - ingest stream entries from an XREADGROUP reply (proto/chat_entry.h
 * parses and checks them), and chat_batch's JSON. */
#include "entry.h"

#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "st.h"

typedef st__entry entry;

void st__entry_free(st__entry *e)
{
    if (!e)
        return;
    pr_free(e->buf);
    pr_free(e->rc);
    pr_free(e->rl);
    pr_free(e);
}

chat_field *st__entry_fields(const redisReply *f, size_t *n)
{
    size_t pairs = f->elements / 2;
    chat_field *out = pr_malloc((pairs ? pairs : 1) * sizeof *out);
    for (size_t i = 0; i < pairs; i++) {
        const redisReply *k = f->element[2 * i], *v = f->element[2 * i + 1];
        out[i].name =
            k->type == REDIS_REPLY_STRING ? pr_view_make(k->str, k->len) : pr_view_make(NULL, 0);
        out[i].value =
            v->type == REDIS_REPLY_STRING ? pr_view_make(v->str, v->len) : pr_view_make(NULL, 0);
    }
    *n = pairs;
    return out;
}

/* Copies the views an entry keeps into one allocation, NUL-terminated
 * (absent ones stay NULL): the reply is gone once the batch is stored. */
static void copy_fields(entry *e, const pr_view *v, const char **dst[], size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += v[i].ptr ? v[i].len + 1 : 0;
    e->buf = pr_malloc(total ? total : 1);
    char *p = e->buf;
    for (size_t i = 0; i < n; i++) {
        if (!v[i].ptr) {
            *dst[i] = NULL;
            continue;
        }
        memcpy(p, v[i].ptr, v[i].len);
        p[v[i].len] = '\0';
        *dst[i] = p;
        p += v[i].len + 1;
    }
}

/* The receipts that apply, as chat_receipts wants them ({r, u, d|s}, in
 * e->rc), and parsed (e->rl: the lines, then their ids). */
static int receipts_json(entry *e, const chat_entry *ce, const chat_entry_ctx *ctx)
{
    pr_buf out;
    pr_buf_init(&out, 16u << 20);
    chat_receipt_iter it = {0};
    char kind;
    pr_view room, user;
    int64_t seq;
    int rc;
    size_t nl = 0, text = 0;
    while ((rc = chat_entry_receipt_next(ce, ctx, &it, &kind, &room, &user, &seq)) == 1) {
        chat_jw x = chat_jw_begin(&out);
        if (out.len)
            chat_jw_lit(&x, ",");
        chat_jw_obj(&x);
        chat_jw_strn(&x, "r", room.ptr, room.len);
        chat_jw_strn(&x, "u", user.ptr, user.len);
        chat_jw_int(&x, kind == 'd' ? "d" : "s", seq);
        chat_jw_obj_end(&x);
        if (chat_jw_end(&x) != 0) {
            rc = -1;
            break;
        }
        nl++;
        text += room.len + user.len + 2;
    }
    if (rc != 0) {
        pr_buf_dispose(&out);
        e->nrc = 0;
        return -1;
    }
    e->rc = pr_buf_steal(&out, &e->rc_len);
    /* the same lines again, into one allocation */
    e->rl = pr_malloc(nl * sizeof *e->rl + text + 1);
    char *p = (char *)(e->rl + nl);
    size_t i = 0;
    it = (chat_receipt_iter){0};
    while (i < nl && chat_entry_receipt_next(ce, ctx, &it, &kind, &room, &user, &seq) == 1) {
        st__rline *l = &e->rl[i++];
        l->kind = kind == 'd' ? 'd' : 's';
        l->seq = seq;
        memcpy(p, room.ptr, room.len);
        p[room.len] = '\0';
        l->room = p;
        p += room.len + 1;
        memcpy(p, user.ptr, user.len);
        p[user.len] = '\0';
        l->user = p;
        p += user.len + 1;
    }
    e->nrc = (unsigned)i;
    return 0;
}

st__entry *st__entry_parse(const redisReply *item, unsigned shard, unsigned nshards,
                           const unsigned char room_key[32])
{
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
    size_t nf;
    chat_field *f = st__entry_fields(item->element[1], &nf);
    chat_entry_ctx ctx = {shard, nshards, room_key};
    chat_entry ce;
    int rc = chat_entry_parse(f, nf, &ctx, &ce, &e->nrc);
    e->kind = ce.kind;
    e->a = ce.ack_id;
    if (ce.kind == CHAT_ENTRY_MESSAGE || ce.kind == CHAT_ENTRY_OPEN) {
        const pr_view vals[] = {ce.room,          ce.user, ce.first_name, ce.last_name, ce.text,
                                ce.client_msg_id, ce.peer, ce.reply_to,   ce.socket};
        const char **dst[] = {&e->r, &e->u, &e->n, &e->l, &e->x, &e->c, &e->p, &e->g, &e->s};
        copy_fields(e, vals, dst, sizeof vals / sizeof vals[0]);
        e->x_len = ce.text.len;
    } else if (ce.kind == CHAT_ENTRY_RECEIPTS && rc == CHAT_ENTRY_OK &&
               receipts_json(e, &ce, &ctx) != 0) {
        rc = CHAT_ENTRY_INVALID;
    }
    pr_free(f);
    if (rc == CHAT_ENTRY_FORBIDDEN)
        e->status = ST_E_FORBIDDEN;
    if (rc == CHAT_ENTRY_INVALID) {
        e->status = ST_E_INVALID;
        e->nrc = 0;
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
        chat_jw x = chat_jw_begin(msgs);
        if (!first_m)
            chat_jw_lit(&x, ",");
        first_m = 0;
        chat_jw_obj(&x);
        chat_jw_int(&x, "o", (int64_t)i);
        chat_jw_int(&x, "sh", e->shard);
        if (e->kind == 'o') { /* {o, sh, k: "o", r, u, p} */
            chat_jw_str(&x, "k", "o");
            chat_jw_str(&x, "r", e->r);
            chat_jw_str(&x, "u", e->u);
            chat_jw_str(&x, "p", e->p);
        } else { /* {o, sh, r, u, n, [l], x, [c], [p]} */
            chat_jw_str(&x, "r", e->r);
            chat_jw_str(&x, "u", e->u);
            chat_jw_str(&x, "n", e->n);
            if (e->l)
                chat_jw_str(&x, "l", e->l);
            chat_jw_strn(&x, "x", e->x, e->x_len);
            if (e->c)
                chat_jw_str(&x, "c", e->c);
            if (e->p)
                chat_jw_str(&x, "p", e->p);
        }
        chat_jw_obj_end(&x);
        rc = chat_jw_end(&x);
    }
    if (rc == 0)
        rc = pr_buf_append(msgs, "]", 2); /* with the NUL libpq wants */
    if (rc == 0)
        rc = pr_buf_append(rcpts, "]", 2);
    return rc;
}
