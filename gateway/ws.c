/*
 * ws.c - WebSocket (RFC 6455) connections.
 *
 * Receiving: wslay parses, unmasks and answers control frames, but a wslay
 * context costs about 9 KB, so an idle connection does not keep one. Bytes
 * are scanned for frame boundaries first (gw__ws_scan); only complete frames
 * are fed to wslay, and the context is freed again as soon as no fragmented
 * message is open. Partial frames wait in a per-connection buffer that is
 * empty (and unallocated) on an idle connection.
 *
 * Sending: server frames are unmasked, so a frame is built once (gw_blob) and
 * the same bytes are queued on every connection that receives it; wslay's
 * own replies (pong, close) go through the same output queue.
 */
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>
#include <wslay/wslay.h>

#include "gw_ws.h"

/* A WebSocket connection's state, inside the connection (c->layer). */
typedef struct {
    pr_buf rbuf;              /* bytes of an incomplete frame; empty when idle */
    wslay_event_context_ptr ctx; /* held only while a frame or message is open */
    uint8_t fragmented;       /* a fragmented message is in progress */
    uint8_t close_sent;
    uint8_t in_wslay;         /* inside wslay_event_recv: ctx must not be freed */
    uint8_t peer_closed;      /* the client's close frame arrived */
} gw_ws;

_Static_assert(sizeof(gw_ws) <= GW_CONN_LAYER_BYTES, "gw_ws must fit in gw_conn.layer");

static gw_ws *WS(gw_conn *c)
{
    return (gw_ws *)(void *)c->layer.bytes;
}

static const gw_conn_ops ws_conn_ops;

static void send_close_frame(gw_conn *c, uint16_t code);
static void ws_on_data(gw_conn *c, const char *p, size_t n);

int gw__ws_is(const gw_conn *c)
{
    return c->ops == &ws_conn_ops;
}

/* The HTTP layer is done with c: it is a WebSocket from here on. */
static void ws_become(gw_conn *c, pr_view rest)
{
    c->ops = &ws_conn_ops;
    gw_ws *ws = WS(c);
    memset(ws, 0, sizeof *ws);
    pr_buf_init(&ws->rbuf, c->w->cfg->max_payload + 14);
    if (rest.len)
        ws_on_data(c, rest.ptr, rest.len);
}

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void gw__ws_accept(gw_conn *c, pr_view key)
{
    unsigned char digest[SHA_DIGEST_LENGTH];
    char cat[128];
    if (key.len > sizeof cat - sizeof ws_guid)
        key.len = sizeof cat - sizeof ws_guid; /* a longer key is invalid anyway */
    memcpy(cat, key.ptr, key.len);
    memcpy(cat + key.len, ws_guid, sizeof ws_guid - 1);
    SHA1((const unsigned char *)cat, key.len + sizeof ws_guid - 1, digest);
    char accept[64];
    EVP_EncodeBlock((unsigned char *)accept, digest, SHA_DIGEST_LENGTH);
    char headers[256];
    snprintf(headers, sizeof headers,
             "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n", accept);
    gw__http_upgrade(c, headers, ws_become);
}

int gw__ws_scan(const char *p, size_t n, size_t max_payload, gw_ws_frame *f)
{
    const unsigned char *u = (const unsigned char *)p;
    if (n < 2)
        return 0;
    f->fin = u[0] >> 7;
    f->opcode = u[0] & 0x0f;
    if (u[0] & 0x70)
        return -1002; /* no extension was negotiated */
    switch (f->opcode) {
    case 0: case 1: case 2: case 8: case 9: case 10:
        break;
    default:
        return -1002;
    }
    if (!(u[1] & 0x80))
        return -1002; /* client frames must be masked */
    uint64_t len = u[1] & 0x7f;
    size_t hdr = 2;
    if (len == 126) {
        if (n < 4)
            return 0;
        len = ((uint64_t)u[2] << 8) | u[3];
        hdr = 4;
    } else if (len == 127) {
        if (n < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | u[2 + i];
        if (len >> 63)
            return -1002;
        hdr = 10;
    }
    if (f->opcode >= 8 && (len > 125 || !f->fin))
        return -1002;
    if (len > max_payload)
        return -1009;
    hdr += 4; /* masking key */
    f->payload_len = len;
    f->frame_len = hdr + (size_t)len;
    return n >= f->frame_len ? 1 : 0;
}

/* ---- wslay glue ---- */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user)
{
    (void)flags;
    gw_conn *c = user;
    gw_worker *w = c->w;
    if (w->feed.n == 0 || c->state != GW_OPEN) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < w->feed.n ? len : w->feed.n;
    memcpy(buf, w->feed.p, n);
    w->feed.p += n;
    w->feed.n -= n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    (void)ctx;
    (void)flags;
    gw_conn *c = user;
    gw__conn_send(c, data, len); /* dropped when the connection is closing */
    return (ssize_t)len;
}

static void on_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                      void *user)
{
    (void)ctx;
    gw_conn *c = user;
    if (c->state != GW_OPEN)
        return;
    pr_view data = pr_view_make(a->msg, a->msg_length);
    switch (a->opcode) {
    case WSLAY_TEXT_FRAME:
        if (!pr_utf8_valid(data.ptr, data.len)) {
            GW_STAT_ADD(c->w, closed_bad_input, 1);
            gw__ws_close(c, 1007);
            return;
        }
        c->w->ws_up->on_text(c, data);
        break;
    case WSLAY_BINARY_FRAME:
        c->w->ws_up->on_binary(c, data);
        break;
    case WSLAY_CONNECTION_CLOSE:
        /* answered after wslay_event_send, so a ping before it gets its pong */
        WS(c)->peer_closed = 1;
        break;
    default:
        break; /* ping and pong: wslay answers pings itself */
    }
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .on_msg_recv_callback = on_msg_cb,
};

static void ctx_release(gw_conn *c)
{
    gw_ws *ws = WS(c);
    if (ws->ctx && !ws->in_wslay) {
        wslay_event_context_free(ws->ctx);
        ws->ctx = NULL;
    }
}

/* Feeds complete frames to wslay and sends what it queued. */
static void ws_feed(gw_conn *c, const char *p, size_t n)
{
    gw_ws *ws = WS(c);
    if (!ws->ctx) {
        if (wslay_event_context_server_init(&ws->ctx, &ws_callbacks, c) != 0) {
            gw__conn_close(c, 0);
            return;
        }
        wslay_event_config_set_max_recv_msg_length(ws->ctx, c->w->cfg->max_payload);
    }
    c->w->feed.p = p;
    c->w->feed.n = n;
    ws->in_wslay = 1;
    int rc = wslay_event_recv(ws->ctx);
    if (rc == 0 && c->state == GW_OPEN)
        rc = wslay_event_send(ws->ctx);
    ws->in_wslay = 0;
    c->w->feed.n = 0;
    if (c->state != GW_OPEN) {
        ctx_release(c); /* closed inside wslay: its dispose had to wait */
        return;
    }
    if (rc != 0) {
        GW_STAT_ADD(c->w, closed_bad_input, 1);
        gw__ws_close(c, 1002);
        return;
    }
    if (ws->peer_closed) {
        /* wslay has sent what it owed before the close (pongs) and its own
         * close reply; make sure a close frame went out either way */
        if (!wslay_event_get_close_sent(ws->ctx))
            send_close_frame(c, 1000);
        ws->close_sent = 1;
        gw__conn_close(c, 1);
    } else if (!wslay_event_get_read_enabled(ws->ctx) || wslay_event_get_close_sent(ws->ctx)) {
        /* wslay refused the message (e.g. 1009 over max length) and queued
         * its close frame, which send_cb has passed on. */
        GW_STAT_ADD(c->w, closed_bad_input, 1);
        ws->close_sent = 1;
        gw__conn_close(c, 1);
    }
}

static void ws_on_data(gw_conn *c, const char *p, size_t n)
{
    gw_ws *ws = WS(c);
    const size_t max_payload = c->w->cfg->max_payload;
    int buffered = ws->rbuf.len > 0;
    if (buffered) {
        if (pr_buf_append(&ws->rbuf, p, n) != 0) {
            /* cannot happen for a valid frame: the buffer holds one frame of
             * at most max_payload plus a header */
            gw__ws_close(c, 1009);
            return;
        }
        p = ws->rbuf.ptr;
        n = ws->rbuf.len;
    }
    size_t complete = 0;
    for (;;) {
        gw_ws_frame f;
        int r = gw__ws_scan(p + complete, n - complete, max_payload, &f);
        if (r < 0) {
            GW_STAT_ADD(c->w, closed_bad_input, 1);
            if (complete)
                ws_feed(c, p, complete); /* what came before the bad frame is valid */
            if (c->state == GW_OPEN)
                gw__ws_close(c, (uint16_t)-r);
            return;
        }
        if (r == 0)
            break;
        if (f.opcode == 1 || f.opcode == 2)
            ws->fragmented = !f.fin;
        else if (f.opcode == 0 && f.fin)
            ws->fragmented = 0;
        complete += f.frame_len;
    }
    if (complete) {
        ws_feed(c, p, complete);
        if (c->state != GW_OPEN) {
            ctx_release(c);
            return;
        }
    }
    if (buffered) {
        pr_buf_consume(&ws->rbuf, complete);
        if (ws->rbuf.len == 0) { /* an idle connection keeps no buffer */
            size_t max = ws->rbuf.max;
            pr_buf_dispose(&ws->rbuf);
            pr_buf_init(&ws->rbuf, max);
        }
    } else if (complete < n) {
        pr_buf_append(&ws->rbuf, p + complete, n - complete);
    }
    if (!ws->fragmented && ws->rbuf.len == 0)
        ctx_release(c);
}

static void send_close_frame(gw_conn *c, uint16_t code)
{
    gw_blob *b = gw__blob_ws_frame(WSLAY_CONNECTION_CLOSE, 2);
    b->data[b->hdr] = (char)(code >> 8);
    b->data[b->hdr + 1] = (char)(code & 0xff);
    gw__conn_send_blob(c, b);
    gw__blob_unref(b);
}

void gw__ws_close(gw_conn *c, uint16_t code)
{
    if (c->state != GW_OPEN)
        return;
    if (c->ops != &ws_conn_ops) { /* still inside its upgrade request */
        gw__ws_reject(c, code);
        return;
    }
    gw_ws *ws = WS(c);
    if (!ws->close_sent) {
        ws->close_sent = 1;
        send_close_frame(c, code);
    }
    gw__conn_close(c, 1);
}

void gw__ws_reject(gw_conn *c, uint16_t code)
{
    /* called while the upgrade request is being served: c is still HTTP */
    send_close_frame(c, code);
    gw__conn_close(c, 1);
}

static void ws_on_close(gw_conn *c)
{
    if (c->owner)
        c->w->ws_up->owner_closed(c);
    ctx_release(c); /* deferred to ws_on_data when inside wslay */
    pr_buf_dispose(&WS(c)->rbuf);
}

static const gw_conn_ops ws_conn_ops = {
    .on_data = ws_on_data,
    .on_close = ws_on_close,
};
