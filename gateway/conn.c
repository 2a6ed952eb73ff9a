/*
 * conn.c - a TCP connection: reading into the worker's scratch buffer, the
 * output queue of shared blobs written with writev, output limits, and the
 * close sequence (close-after-write, lingering close, deferred free). What is
 * read goes to the layer that owns the connection (c->ops); conn.c names none.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "gw_conn.h"

#define GW_MAX_IOV 64
#define GW_READS_PER_WAKEUP 4

/* ---- events ---- */

static void conn_event_cb(evutil_socket_t fd, short what, void *arg);

static void conn_update_events(gw_conn *c)
{
    short want = 0;
    if (c->state != GW_CLOSED && !c->read_paused && !c->backpressure)
        want |= EV_READ;
    if (c->out_head && c->state != GW_CLOSED)
        want |= EV_WRITE;
    if (want == c->ev_flags)
        return;
    event_del(&c->ev);
    event_assign(&c->ev, c->w->base, c->fd, (short)(want | EV_PERSIST), conn_event_cb, c);
    if (want)
        event_add(&c->ev, NULL);
    c->ev_flags = (uint8_t)want;
}

static _Thread_local gw_pool conn_pool = GW_POOL(gw_conn);

gw_conn *gw__conn_new(gw_worker *w, int fd)
{
    gw_conn *c = gw_pool_get(&conn_pool);
    c->w = w;
    c->fd = fd;
    c->id = ((uint32_t)w->index << 24) | (++w->next_conn_id & 0xffffff);
    event_assign(&c->ev, w->base, fd, EV_READ | EV_PERSIST, conn_event_cb, c);
    event_add(&c->ev, NULL);
    c->ev_flags = EV_READ;
    GW_STAT_ADD(w, conns_open, 1);
    GW_STAT_ADD(w, conns_total, 1);
    return c;
}

void gw__conn_set_reading(gw_conn *c, int on)
{
    c->read_paused = !on;
    conn_update_events(c);
}

void gw__conn_feed(gw_conn *c, const char *p, size_t n)
{
    if (c->state == GW_LINGER)
        return; /* discarding what the peer still sends after our last reply */
    c->ops->on_data(c, p, n);
}

static void conn_read(gw_conn *c)
{
    gw_worker *w = c->w;
    for (int i = 0; i < GW_READS_PER_WAKEUP; i++) {
        ssize_t n = read(c->fd, w->scratch, GW_SCRATCH);
        if (n > 0) {
            GW_STAT_ADD(w, bytes_in, n);
            gw__conn_feed(c, w->scratch, (size_t)n);
            if ((c->state != GW_OPEN && c->state != GW_LINGER) || c->read_paused ||
                c->backpressure || (size_t)n < GW_SCRATCH)
                return;
            continue;
        }
        if (n == 0) {
            gw__conn_close(c, 0);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            gw__conn_close(c, 0);
        return;
    }
}

void gw__conn_read_now(gw_conn *c)
{
    if (c->state == GW_OPEN && !c->read_paused && !c->backpressure)
        conn_read(c);
}

static void conn_event_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    gw_conn *c = arg;
    if (c->doomed || (what & EV_WRITE)) {
        gw__conn_flush(c);
        if (c->state == GW_CLOSED)
            return;
    }
    if (what & EV_READ)
        conn_read(c);
}

/* ---- output ---- */

static void conn_schedule(gw_conn *c)
{
    if (!c->pending) {
        c->pending = 1;
        c->next = c->w->flush_list;
        c->w->flush_list = c;
    }
    gw__worker_schedule_flush(c->w);
}

static void out_free_all(gw_conn *c);

/* Over its output limits: the client is cut, but not here. Whoever is
 * sending may be walking a list that this connection's close would change
 * (a room's members), so its queued output is dropped now and the close
 * happens in the flush pass, outside every caller. */
static void conn_doom(gw_conn *c, const char *limit)
{
    GW_STAT_ADD(c->w, conns_dropped_output, 1);
    CM_WARN_RATELIMITED("event=output_%s_limit conn=%u queued=%zu", limit, c->id, c->out_bytes);
    c->doomed = 1;
    c->read_paused = 1;
    out_free_all(c);
    conn_schedule(c);
}

int gw__conn_send_blob(gw_conn *c, gw_blob *b)
{
    if (c->state != GW_OPEN || c->doomed)
        return PR_ECLOSED;
    const gw_config *cfg = c->w->cfg;
    gw_onode *n = gw__onode_alloc();
    n->blob = gw__blob_ref(b);
    if (c->out_tail)
        c->out_tail->next = n;
    else
        c->out_head = n;
    c->out_tail = n;
    c->out_bytes += b->len;

    if (c->out_bytes > cfg->output_hard_limit) {
        conn_doom(c, "hard");
        return PR_ETOOBIG;
    }
    if (c->out_bytes > cfg->output_soft_limit) {
        /* a peer that does not read what it asked for is not read from */
        c->backpressure = 1;
        uint64_t now = gw__now_ms(c->w);
        if (!c->soft_since_ms) {
            c->soft_since_ms = now;
        } else if (now - c->soft_since_ms > (uint64_t)cfg->output_soft_seconds * 1000u) {
            conn_doom(c, "soft");
            return PR_ETOOBIG;
        }
    }
    conn_schedule(c);
    return 0;
}

int gw__conn_send(gw_conn *c, const void *p, size_t n)
{
    gw_blob *b = gw__blob_new(n);
    memcpy(b->data, p, n);
    int rc = gw__conn_send_blob(c, b);
    gw__blob_unref(b);
    return rc;
}

static void out_free_all(gw_conn *c)
{
    gw__onode_release_all(c->out_head);
    c->out_head = c->out_tail = NULL;
    c->out_bytes = 0;
}

static void conn_finish(gw_conn *c);

int gw__conn_flush(gw_conn *c)
{
    if (c->state == GW_CLOSED)
        return PR_ECLOSED;
    if (c->doomed) { /* see conn_doom: callers of the flush are safe places */
        gw__conn_close(c, 0);
        return PR_ECLOSED;
    }
    while (c->out_head) {
        struct iovec iov[GW_MAX_IOV];
        int cnt = 0;
        for (gw_onode *n = c->out_head; n && cnt < GW_MAX_IOV; n = n->next, cnt++) {
            iov[cnt].iov_base = n->blob->data + n->off;
            iov[cnt].iov_len = n->blob->len - n->off;
        }
        ssize_t w = writev(c->fd, iov, cnt);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            gw__conn_close(c, 0);
            return PR_EIO;
        }
        GW_STAT_ADD(c->w, bytes_out, w);
        size_t left = (size_t)w;
        c->out_bytes -= left;
        while (left) {
            gw_onode *n = c->out_head;
            size_t avail = n->blob->len - n->off;
            if (left < avail) {
                n->off += left;
                break;
            }
            left -= avail;
            c->out_head = n->next;
            gw__blob_unref(n->blob);
            gw__onode_release(n);
        }
        if (!c->out_head)
            c->out_tail = NULL;
    }
    if (c->out_bytes <= c->w->cfg->output_soft_limit)
        c->soft_since_ms = 0; /* the soft limit counts time spent above it */
    if (c->out_bytes <= c->w->cfg->output_soft_limit / 2)
        c->backpressure = 0;
    if (!c->out_head) {
        c->soft_since_ms = 0;
        if (c->state == GW_CLOSE_AFTER_WRITE) {
            conn_finish(c);
            return 0;
        }
    }
    conn_update_events(c);
    return 0;
}

/* ---- closing ---- */

static void conn_bury(gw_conn *c)
{
    c->state = GW_CLOSED;
    event_del(&c->ev);
    c->ev_flags = 0;
    gw__tq_del(&c->w->linger_tq, &c->idle); /* or the owner's: whichever holds it */
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    out_free_all(c);
    GW_STAT_ADD(c->w, conns_open, -1);
    if (c->pending) {
        /* still on the flush list: the flush pass skips closed connections,
         * and it must not meet a freed one, so unlink first */
        gw_conn **pp = &c->w->flush_list;
        while (*pp && *pp != c)
            pp = &(*pp)->next;
        if (*pp)
            *pp = c->next;
        c->pending = 0;
    }
    c->next = c->w->conn_graveyard;
    c->w->conn_graveyard = c;
    gw__worker_schedule_flush(c->w);
}

/* All output written after a close-after-write: linger to read what the peer
 * still sends, so our last reply is not destroyed by a reset. */
static void conn_finish(gw_conn *c)
{
    if (shutdown(c->fd, SHUT_WR) != 0) {
        conn_bury(c);
        return;
    }
    c->state = GW_LINGER;
    c->read_paused = 0;
    conn_update_events(c);
    gw__tq_add(&c->w->linger_tq, &c->idle); /* moves it from the owner's timeout */
}

static void linger_timeout(gw_tq *tq, gw_tq_node *n)
{
    (void)tq;
    conn_bury(GW_CONTAINER_OF(n, gw_conn, idle));
}

void gw__conn_close(gw_conn *c, int after_write)
{
    if (c->state == GW_CLOSED)
        return;
    if (c->state == GW_OPEN) {
        /* Refuse output from here on: what the layers above send while they
         * detach must not follow a close frame or a final response. */
        c->state = GW_CLOSE_AFTER_WRITE;
        c->ops->on_close(c); /* the layers above detach, once */
        if (c->state == GW_CLOSED)
            return;
        if (after_write) {
            if (!c->out_head) {
                conn_finish(c);
                return;
            }
            c->read_paused = 1;
            conn_update_events(c);
            conn_schedule(c);
            return;
        }
    } else if (after_write) {
        return; /* already on its way out */
    }
    conn_bury(c);
}

void gw__conn_free(gw_conn *c)
{
    gw_pool_put(&conn_pool, c);
}

static int collect_conn(const struct event_base *base, const struct event *ev, void *arg)
{
    (void)base;
    pr_buf *list = arg;
    if (event_get_callback(ev) == conn_event_cb) {
        void *c = event_get_callback_arg(ev);
        pr_buf_append(list, &c, sizeof c);
    }
    return 0;
}

void gw__conn_close_all(gw_worker *w)
{
    /* libevent knows every registered connection; no list of our own needed
     * (events must not change during the walk, so collect first) */
    pr_buf list;
    pr_buf_init(&list, (size_t)-1);
    event_base_foreach_event(w->base, collect_conn, &list);
    for (size_t i = 0; i + sizeof(gw_conn *) <= list.len; i += sizeof(gw_conn *)) {
        gw_conn *c;
        memcpy(&c, list.ptr + i, sizeof c);
        gw__conn_close(c, 0);
    }
    pr_buf_dispose(&list);
}

void gw__conn_worker_init(gw_worker *w)
{
    gw__tq_init(&w->linger_tq, w, 2000, linger_timeout);
}

void gw__conn_worker_dispose(gw_worker *w)
{
    gw__tq_dispose(&w->linger_tq);
}
