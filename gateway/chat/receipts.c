/*
 * receipts.c - delivered and seen receipts. Watermarks only move forward, so
 * per (room, user) only the highest of each kind since the last flush
 * matters: they are coalesced here and XADDed to the ingest shards every
 * --receipt-interval. A delivery counts once the client has read it
 * (long-polling: on the transport's on_consumed). An open's "seen
 * everything" goes out at once (gc__open_receipt).
 */
#include <stdio.h>
#include <string.h>

#include "gc.h"

/* ---- receipts ----
 * Delivered and seen watermarks only move forward, so per (room, user) only
 * the highest of each kind since the last flush matters. */

void gc__receipt_merge(int64_t *have, int64_t seq)
{
    /* -1 ("everything so far", a room was opened) covers any number */
    if (*have == -1 || seq == -1)
        *have = -1;
    else if (seq > *have)
        *have = seq;
}


static void receipt_free(gc_entry *e)
{
    pr_free(e); /* the entry is a gc_receipt's first member */
}

void gc__receipts_init(gc_worker *cw)
{
    gc__map_init(&cw->receipts);
    cw->rbufs = pr_calloc(2 * (size_t)cw->nshards, sizeof *cw->rbufs);
    for (unsigned i = 0; i < 2 * cw->nshards; i++)
        pr_buf_init(&cw->rbufs[i], RECEIPT_BUF_MAX);
    cw->receipt_timer = evtimer_new(gw_worker_base(cw->w), gc__receipt_flush, cw);
}

void gc__receipts_dispose(gc_worker *cw)
{
    event_free(cw->receipt_timer);
    gc__map_free(&cw->receipts, receipt_free);
    for (unsigned i = 0; i < 2 * cw->nshards; i++)
        pr_buf_dispose(&cw->rbufs[i]);
    pr_free(cw->rbufs);
}

static void receipt_arm(gc_worker *cw)
{
    if (evtimer_pending(cw->receipt_timer, NULL))
        return;
    unsigned ms = cw->cfg->receipt_interval_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(cw->receipt_timer, &tv);
}

/* kind 'd' delivered, 'v' seen. */
void gc__receipt_add(gc_worker *cw, const char *room, const gc_user *u, char kind,
                        int64_t seq)
{
    if (!cw->storage || !u)
        return;
    char key[2 * CHAT_ID_MAX + 2];
    size_t rl = strlen(room);
    int n = snprintf(key, sizeof key, "%s\t%s", room, u->e.key);
    if (n < 0 || (size_t)n >= sizeof key)
        return;
    gc_receipt *r = (gc_receipt *)gc__map_get(&cw->receipts, key, (size_t)n);
    if (!r) {
        r = pr_calloc(1, sizeof *r);
        r->room_len = rl;
        gc__map_put(&cw->receipts, &r->e, key, (size_t)n);
    }
    gc__receipt_merge(kind == 'd' ? &r->delivered : &r->seen, seq);
    receipt_arm(cw);
}

static void receipt_xadd_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    gc_worker *cw = arg;
    if (!rep || rep->type == REDIS_REPLY_ERROR)
        CM_WARN_RATELIMITED("event=receipts_lost worker=%d err=\"%s\"", cw->index,
                            rep ? rep->str : "link lost");
}

/* XADD {i:SHARD}:in * k R d DELIVERED v SEEN (lines of chat_receipt_add). */
static int receipt_xadd(gc_worker *cw, unsigned shard, pr_view d, pr_view v)
{
    chat_xadd x;
    int rc = chat_xadd_receipts(&x, shard, d, v);
    return rc == 0 ? gc__redis_xadd(cw, &x, receipt_xadd_cb, cw) : rc;
}

/* One XADD {i:S}:in * k R d LINES v LINES; the buffers are emptied. */
static void receipt_send(gc_worker *cw, unsigned shard)
{
    pr_buf *d = &cw->rbufs[2 * shard], *v = &cw->rbufs[2 * shard + 1];
    if (d->len == 0 && v->len == 0)
        return;
    if (receipt_xadd(cw, shard, pr_buf_view(d), pr_buf_view(v)) != 0)
        CM_WARN_RATELIMITED("event=receipts_lost worker=%d err=\"redis down\"", cw->index);
    pr_buf_reset(d);
    pr_buf_reset(v);
}

static void receipt_line(gc_worker *cw, unsigned shard, int which, pr_view room, pr_view user,
                         int64_t seq)
{
    pr_buf *b = &cw->rbufs[2 * shard + which];
    if (chat_receipt_add(b, room, user, seq) == PR_ETOOBIG) {
        receipt_send(cw, shard);
        chat_receipt_add(b, room, user, seq);
    }
}

void gc__receipt_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gc_worker *cw = arg;
    if (!cm_redis_ready(cw->redis)) {
        receipt_arm(cw); /* kept until Redis is back: watermarks only move forward */
        return;
    }
    pr_map_iter it = pr_map_iter_make(&cw->receipts);
    for (gc_receipt *r; (r = (gc_receipt *)pr_map_next(&it));) {
        gc_entry *e = &r->e;
        pr_map_remove(&cw->receipts, &e->link);
        pr_view room = pr_view_make(e->key, r->room_len);
        pr_view user = pr_view_make(e->key + r->room_len + 1, e->len - r->room_len - 1);
        unsigned shard = chat_room_shard(room.ptr, room.len, cw->nshards);
        if (r->delivered)
            receipt_line(cw, shard, 0, room, user, r->delivered);
        if (r->seen)
            receipt_line(cw, shard, 1, room, user, r->seen);
        pr_free(e->key);
        pr_free(r);
    }
    for (unsigned s = 0; s < cw->nshards; s++)
        receipt_send(cw, s);
}


/*
 * Opening a room: what the socket receives there from now on is seen, and
 * so is everything sent before the open (-1, "opened it later"). "Before"
 * is the room's ingest stream order, so this receipt is XADDed at once
 * rather than coalesced: storage applies it ahead of any message that
 * follows it in the stream, and a message sent after the open becomes seen
 * only once it is written to an open socket. (Coalesced, it reached storage
 * up to --receipt-interval later and could mark seen a message sent after
 * the open that the client never got.) Redis down: coalesced, as before.
 */
void gc__open_receipt(gc_worker *cw, gc_sock *cs, gc_member *m)
{
    const char *room = m->room->e.key;
    size_t rl = strlen(room);
    pr_buf line;
    pr_buf_init(&line, 2 * CHAT_ID_MAX + 8);
    int rc = chat_receipt_add(&line, pr_view_make(room, rl),
                              pr_view_make(cs->user->e.key, cs->user->e.len), -1);
    if (rc == 0 && cm_redis_ready(cw->redis)) {
        unsigned shard = chat_room_shard(room, rl, cw->nshards);
        rc = receipt_xadd(cw, shard, PR_VIEW_LIT(""), pr_buf_view(&line));
    } else {
        rc = -1;
    }
    pr_buf_dispose(&line);
    if (rc != 0)
        gc__receipt_add(cw, room, cs->user, 'v', -1);
}


/* Called right after message seq of m's room was queued on cs: delivered
 * (and seen when the room is open) once the client has read it, which on
 * WebSocket is now and on long-polling when it polls again. */
void gc__deliver_receipts(gc_worker *cw, gc_sock *cs, gc_member *m, int64_t seq)
{
    if (!cw->storage || !cs->user)
        return;
    uint64_t mark = gw_socket_unread_mark(cs->sock);
    if (mark == 0) {
        gc__receipt_add(cw, m->room->e.key, cs->user, 'd', seq);
        if (m->open)
            gc__receipt_add(cw, m->room->e.key, cs->user, 'v', seq);
        return;
    }
    /* bounded: what is unread sits in the session's polling queue or in its
     * last answer, both under the output limit */
    size_t rl = m->room->e.len;
    gc_unread *u = pr_malloc(sizeof *u + rl + 1);
    u->next = NULL;
    u->mark = mark;
    u->seq = seq;
    u->open = m->open;
    memcpy(u->room, m->room->e.key, rl + 1);
    if (cs->unread_last)
        cs->unread_last->next = u;
    else
        cs->unread = u;
    cs->unread_last = u;
}

void gc__consumed(gw_socket *sock, uint64_t mark)
{
    gc_worker *cw = gc__cw(gw_socket_worker(sock));
    gc_sock *cs = gw_socket_data(sock);
    if (!cs)
        return;
    while (cs->unread && cs->unread->mark <= mark) {
        gc_unread *u = cs->unread;
        cs->unread = u->next;
        gc__receipt_add(cw, u->room, cs->user, 'd', u->seq);
        if (u->open)
            gc__receipt_add(cw, u->room, cs->user, 'v', u->seq);
        pr_free(u);
    }
    if (!cs->unread)
        cs->unread_last = NULL;
}

/* A socket that goes with unread deliveries reports nothing for them: the
 * next connect's sync brings them again. */
void gc__free_unread(gc_sock *cs)
{
    while (cs->unread) {
        gc_unread *u = cs->unread;
        cs->unread = u->next;
        pr_free(u);
    }
    cs->unread_last = NULL;
}

