/*
 * engine.c - Engine.IO v4 sessions: handshake, long-polling, WebSocket, the
 * polling->WebSocket upgrade, heartbeats, and the session table.
 *
 * A session lives on one worker; its sid names that worker in its first
 * character, so a request that lands elsewhere is handed over (gw__http_handoff).
 * Outgoing packets are blobs: a WebSocket session queues them on its
 * connection; a polling session keeps them until a GET takes them, and a
 * session being upgraded moves them to the WebSocket when the upgrade
 * completes.
 */
#include <openssl/rand.h>
#include <string.h>

#include "gw_engine.h"

static const char sid_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void session_bury(gw_session *s);

/* ---- session table ---- */

/* The sid lives in the session: the table stores no key of its own. */
static pr_view session_sid(const pr_map_entry *e)
{
    return pr_view_make(GW_CONTAINER_OF(e, gw_session, map_link)->sid, GW_SID_LEN);
}

gw_session *gw__eio_find(gw_worker *w, pr_view sid)
{
    if (sid.len != GW_SID_LEN)
        return NULL;
    pr_map_entry *e = pr_map_find(&w->sessions, sid);
    return e ? GW_CONTAINER_OF(e, gw_session, map_link) : NULL;
}

int gw__eio_sid_worker(pr_view sid)
{
    if (sid.len != GW_SID_LEN)
        return -1;
    const char *p = memchr(sid_alphabet, sid.ptr[0], sizeof sid_alphabet - 1);
    if (!p)
        return -1;
    int idx = (int)(p - sid_alphabet);
    return idx < gw__worker_count() ? idx : -1;
}

/* ---- queued output ---- */

static void pollq_free(gw_session *s)
{
    gw__onode_release_all(s->pollq_head);
    s->pollq_head = s->pollq_tail = NULL;
    s->pollq_bytes = 0;
}

static void poll_mark_dirty(gw_session *s)
{
    if (s->poll_dirty || !s->conn)
        return;
    s->poll_dirty = 1;
    s->next = s->w->poll_list;
    s->w->poll_list = s;
    gw__worker_schedule_flush(s->w);
}

int gw__eio_send_blob(gw_session *s, gw_blob *b)
{
    if (s->closed || s->doomed)
        return PR_ECLOSED;
    GW_STAT_ADD(s->w, eio_packets_out, 1);
    if (s->transport == GW_T_WEBSOCKET)
        return s->conn ? gw__conn_send_blob(s->conn, b) : PR_ECLOSED;
    if (s->pollq_bytes + b->len > s->w->cfg->output_hard_limit) {
        /* closed in the flush pass, not under the sender (see conn_doom) */
        GW_STAT_ADD(s->w, conns_dropped_output, 1);
        CM_WARN_RATELIMITED("event=output_hard_limit sid=%s transport=polling", s->sid);
        s->doomed = 1;
        pollq_free(s);
        if (!s->poll_dirty) {
            s->poll_dirty = 1;
            s->next = s->w->poll_list;
            s->w->poll_list = s;
        }
        gw__worker_schedule_flush(s->w);
        return PR_ETOOBIG;
    }
    gw_onode *n = gw__onode_alloc();
    n->blob = gw__blob_ref(b);
    s->out_seq++;
    if (s->pollq_tail)
        s->pollq_tail->next = n;
    else
        s->pollq_head = n;
    s->pollq_tail = n;
    s->pollq_bytes += b->len;
    poll_mark_dirty(s);
    return 0;
}

int gw__eio_send(gw_session *s, eio_type type, int binary, pr_view data)
{
    if (s->closed)
        return PR_ECLOSED;
    gw_blob *b = gw__blob_eio(type, binary, data);
    int rc = gw__eio_send_blob(s, b);
    gw__blob_unref(b);
    return rc;
}

uint64_t gw__eio_unread_mark(const gw_session *s)
{
    if (s->closed || s->doomed)
        return UINT64_MAX; /* what it dropped is never read */
    if (s->transport == GW_T_WEBSOCKET || s->consumed_seq == s->out_seq)
        return 0;
    return s->out_seq;
}

/* The client proved it read every packet up to mark: the app may now count
 * what they carried as delivered. */
static void consumed(gw_session *s, uint64_t mark)
{
    if (mark <= s->consumed_seq)
        return;
    s->consumed_seq = mark;
    if (s->w->eio_up->on_consumed)
        s->w->eio_up->on_consumed(s, mark);
}

static void send_on_conn(gw_conn *c, eio_type type, pr_view data)
{
    gw_blob *b = gw__blob_eio(type, 0, data);
    gw__conn_send_blob(c, b);
    gw__blob_unref(b);
}

/* Builds the polling payload of everything queued and answers the GET. */
static void poll_answer(gw_session *s)
{
    gw_conn *c = s->conn;
    gw_worker *w = s->w;
    pr_buf *out = &w->enc;
    pr_buf_reset(out);
    for (gw_onode *n = s->pollq_head; n; n = n->next) {
        gw_blob *b = n->blob;
        pr_view payload = pr_view_make(b->data + b->hdr, b->len - b->hdr);
        int rc;
        if (b->binary)
            rc = eio_payload_append(out, EIO_MESSAGE, 1, payload);
        else
            rc = eio_payload_append(out, (eio_type)(payload.ptr[0] - '0'), 0,
                                    pr_view_make(payload.ptr + 1, payload.len - 1));
        if (rc != 0)
            break; /* cannot happen: enc holds twice the hard limit */
    }
    /* read only once the next GET proves this answer reached the client: a
     * proxy may still be holding the request of a page that is gone */
    s->answered_seq = s->out_seq;
    pollq_free(s);
    s->conn = NULL;
    c->owner = NULL;
    /* respond copies out; the response may serve pipelined requests on c,
     * which may reuse w->enc, so respond last */
    pr_buf body;
    pr_buf_init(&body, out->len + 1);
    pr_buf_append(&body, out->ptr, out->len);
    gw__http_respond(c, 200, "text/plain; charset=UTF-8", pr_buf_view(&body), 0);
    pr_buf_dispose(&body);
}

/* Answers a parked GET with a single packet (noop or close). */
static void poll_answer_packet(gw_session *s, eio_type type)
{
    gw_conn *c = s->conn;
    char body[1] = {(char)('0' + type)};
    s->conn = NULL;
    c->owner = NULL;
    gw__http_respond(c, 200, "text/plain; charset=UTF-8", pr_view_make(body, 1), 0);
}

void gw__eio_flush_polls(gw_worker *w)
{
    while (w->poll_list) {
        gw_session *s = w->poll_list;
        w->poll_list = s->next;
        s->next = NULL;
        s->poll_dirty = 0;
        if (s->doomed && !s->closed)
            gw__eio_close(s, "output limit");
        else if (!s->closed && s->conn && s->transport == GW_T_POLLING && s->pollq_head)
            poll_answer(s);
    }
}

/* ---- heartbeat ---- */

static void ping_due(gw_tq *tq, gw_tq_node *n)
{
    gw_session *s = GW_CONTAINER_OF(n, gw_session, hb);
    gw__eio_send(s, EIO_PING, 0, pr_view_make("", 0));
    if (!s->closed) {
        /* the pong is due pingTimeout after the ping was due, however late
         * the timer ran, as the client computes it */
        s->awaiting_pong = 1;
        gw__tq_add_from(&s->w->pong_tq, &s->hb, tq->fired_deadline_ms);
    }
}

static void pong_overdue(gw_tq *tq, gw_tq_node *n)
{
    (void)tq;
    gw_session *s = GW_CONTAINER_OF(n, gw_session, hb);
    if (s->tombstone) {
        session_bury(s);
        return;
    }
    CM_DEBUG("event=ping_timeout sid=%s", s->sid);
    gw__eio_close(s, "ping timeout");
}

/* ---- closing ---- */

static void session_bury(gw_session *s)
{
    gw_worker *w = s->w;
    /* A session is in the table from session_new until here: not in it,
     * it is buried already (a walk of the table may meet it again), and a
     * second push would loop the graveyard. */
    if (pr_map_remove(&w->sessions, &s->map_link) != 0)
        return;
    gw__tq_del(&w->pong_tq, &s->hb);
    if (s->poll_dirty) {
        /* Given output and closed in the same loop turn: still on the poll
         * flush list, whose link (next) the graveyard is about to take.
         * Unlink it first, or the flush pass would lose the sessions behind
         * it on that list (their polls never answered) and cut the
         * graveyard after it (sessions never freed). */
        gw_session **pp = &w->poll_list;
        while (*pp && *pp != s)
            pp = &(*pp)->next;
        if (*pp)
            *pp = s->next;
        s->poll_dirty = 0;
    }
    s->next = w->session_graveyard;
    w->session_graveyard = s;
    gw__worker_schedule_flush(w);
}

void gw__eio_close(gw_session *s, const char *reason)
{
    gw__eio_close_code(s, reason, 1000);
}

void gw__eio_close_code(gw_session *s, const char *reason, uint16_t ws_code)
{
    if (s->closed)
        return;
    gw_worker *w = s->w;
    /* Let the app say goodbye while the transport still works. */
    w->eio_up->on_close(s, reason);
    s->closed = 1;
    gw__tq_del(&w->ping_tq, &s->hb); /* or pong_tq: whichever holds it */
    GW_STAT_ADD(w, sessions_open, -1);
    CM_DEBUG("event=session_closed sid=%s reason=\"%s\"", s->sid, reason);

    gw_conn *c = s->conn, *probe = s->probe;
    s->conn = s->probe = NULL;
    if (probe) {
        probe->owner = NULL;
        gw__ws_close(probe, ws_code);
    }
    if (c) {
        c->owner = NULL;
        if (s->transport == GW_T_WEBSOCKET) {
            gw__ws_close(c, ws_code);
        } else {
            /* a client that asked to close gets a noop, others the close packet */
            char body[1] = {s->client_closed ? '6' : '1'};
            gw__http_respond(c, 200, "text/plain; charset=UTF-8", pr_view_make(body, 1), 0);
        }
    }
    pollq_free(s);
    if (s->client_closed && !c && s->transport == GW_T_POLLING) {
        /* The client closed by POST while its GET may still be on the way,
         * on another connection or worker. Keep the sid for pingTimeout so
         * that GET ends with a noop, as if it had been parked. */
        s->tombstone = 1;
        gw__tq_add(&w->pong_tq, &s->hb);
        return;
    }
    session_bury(s);
}

void gw__eio_drop_transport(gw_session *s)
{
    gw_conn *c = s->transport == GW_T_WEBSOCKET ? s->conn : NULL;
    if (c) {
        /* no close frame: the client sees the connection die */
        gw__conn_close(c, 0);
    } else {
        gw__eio_close(s, "transport dropped");
    }
}

static _Thread_local gw_pool session_pool = GW_POOL(gw_session);

void gw__eio_reap(gw_worker *w)
{
    while (w->session_graveyard) {
        gw_session *s = w->session_graveyard;
        w->session_graveyard = s->next;
        pr_free(s->http_token);
        gw_pool_put(&session_pool, s);
    }
}

/* ---- packets from the client ---- */

static void app_message(gw_session *s, int binary, pr_view data)
{
    GW_STAT_ADD(s->w, eio_packets_in, 1);
    s->w->eio_up->on_message(s, binary, data);
}

/* Returns 0, or PR_EINVAL for a packet the client may not send. */
static int handle_packet(gw_session *s, const eio_packet *p)
{
    switch (p->type) {
    case EIO_PONG:
        if (s->awaiting_pong) { /* an unexpected pong is harmless */
            s->awaiting_pong = 0;
            gw__tq_add(&s->w->ping_tq, &s->hb);
        }
        return 0;
    case EIO_PING:
        gw__eio_send(s, EIO_PONG, 0, p->data);
        return 0;
    case EIO_MESSAGE:
        app_message(s, p->binary, p->data);
        return 0;
    case EIO_CLOSE:
        s->client_closed = 1;
        gw__eio_close(s, "client close");
        return 0;
    case EIO_NOOP:
        return 0;
    default:
        return PR_EINVAL;
    }
}

void gw__eio_bad_input(gw_session *s)
{
    GW_STAT_ADD(s->w, closed_bad_input, 1);
    gw__eio_close_code(s, "parse error", 1008);
}

static void complete_upgrade(gw_session *s, gw_conn *ws)
{
    if (s->conn) /* a parked GET ends with a noop */
        poll_answer_packet(s, EIO_NOOP);
    s->transport = GW_T_WEBSOCKET;
    s->upgrading = 0;
    s->probe = NULL;
    s->conn = ws;
    /* The client paused polling (its last GET was answered and read) before
     * it sent the upgrade; what waited for the next poll now goes over the
     * WebSocket, in order, and counts as read there. */
    gw_onode *n = s->pollq_head;
    s->pollq_head = s->pollq_tail = NULL;
    s->pollq_bytes = 0;
    while (n) {
        gw_onode *next = n->next;
        gw__conn_send_blob(ws, n->blob);
        gw__blob_unref(n->blob);
        gw__onode_release(n);
        n = next;
    }
    consumed(s, s->out_seq);
    CM_DEBUG("event=upgraded sid=%s", s->sid);
}

static void on_probe_packet(gw_session *s, gw_conn *c, const eio_packet *p)
{
    if (p->type == EIO_PING && pr_view_eq_cstr(p->data, "probe")) {
        send_on_conn(c, EIO_PONG, PR_VIEW_LIT("probe"));
        s->probe_acked = 1;
        if (s->conn)
            poll_answer_packet(s, EIO_NOOP); /* lets the client pause polling */
        return;
    }
    if (p->type == EIO_UPGRADE && s->probe_acked) {
        complete_upgrade(s, c);
        return;
    }
    if (p->type == EIO_NOOP)
        return;
    gw__eio_bad_input(s);
}

static void on_ws_packet(gw_conn *c, const eio_packet *p)
{
    gw_session *s = c->owner;
    if (!s || s->closed)
        return;
    if (c == s->probe) {
        on_probe_packet(s, c, p);
        return;
    }
    if (handle_packet(s, p) != 0)
        gw__eio_bad_input(s);
}

static void on_ws_text(gw_conn *c, pr_view data)
{
    eio_packet p;
    if (eio_decode_text(data, &p) != 0) {
        if (c->owner)
            gw__eio_bad_input(c->owner);
        else
            gw__ws_close(c, 1008);
        return;
    }
    on_ws_packet(c, &p);
}

static void on_ws_binary(gw_conn *c, pr_view data)
{
    eio_packet p;
    eio_decode_binary(data, &p);
    on_ws_packet(c, &p);
}

static void on_ws_closed(gw_conn *c)
{
    gw_session *s = c->owner;
    c->owner = NULL;
    if (!s || s->closed)
        return;
    if (c == s->probe) { /* the upgrade failed; polling goes on */
        s->probe = NULL;
        s->upgrading = 0;
        s->probe_acked = 0;
        return;
    }
    if (c == s->conn) {
        s->conn = NULL;
        gw__eio_close(s, "transport close");
    }
}

void gw__eio_on_poll_closed(gw_conn *c)
{
    gw_session *s = c->owner;
    c->owner = NULL;
    if (!s || s->closed || s->conn != c)
        return;
    /* As in the reference server, a poll that goes away ends the session. */
    s->conn = NULL;
    gw__eio_close(s, "transport close");
}

/* ---- HTTP requests ---- */

static pr_view query_param(pr_view q, const char *name)
{
    size_t nl = strlen(name);
    const char *p = q.ptr, *end = q.ptr + q.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) > nl && !memcmp(p, name, nl) && p[nl] == '=')
            return pr_view_make(p + nl + 1, (size_t)(e - p) - nl - 1);
        if ((size_t)(e - p) == nl && !memcmp(p, name, nl))
            return pr_view_make(e, 0);
        p = e + 1;
    }
    return pr_view_make(NULL, 0);
}

static void respond_eio_error(gw_conn *c, int code)
{
    if (code == 4) { /* as the reference server: Forbidden is a 403 */
        gw__http_respond(c, 403, "application/json",
                         PR_VIEW_LIT("{\"code\":4,\"message\":\"Forbidden\"}"), 0);
        return;
    }
    static const char *const msgs[] = {"Transport unknown", "Session ID unknown",
                                       "Bad handshake method", "Bad request", "Forbidden",
                                       "Unsupported protocol version"};
    char body[96];
    int n = snprintf(body, sizeof body, "{\"code\":%d,\"message\":\"%s\"}", code, msgs[code]);
    gw__http_respond(c, 400, "application/json", pr_view_make(body, (size_t)n), 0);
}

static gw_session *session_new(gw_worker *w, int transport)
{
    gw_session *s = gw_pool_get(&session_pool);
    unsigned char rnd[15];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        CM_ERROR("event=rand_failed");
        abort();
    }
    /* 15 random bytes -> 20 base64url characters; the first names the worker */
    for (int i = 0; i < 5; i++) {
        uint32_t v = ((uint32_t)rnd[3 * i] << 16) | ((uint32_t)rnd[3 * i + 1] << 8) | rnd[3 * i + 2];
        for (int j = 0; j < 4; j++)
            s->sid[4 * i + j] = sid_alphabet[(v >> (18 - 6 * j)) & 63];
    }
    s->sid[0] = sid_alphabet[w->index];
    s->sid[GW_SID_LEN] = '\0';
    s->w = w;
    s->transport = (uint8_t)transport;
    pr_map_insert(&w->sessions, &s->map_link);
    GW_STAT_ADD(w, sessions_open, 1);
    GW_STAT_ADD(w, sessions_total, 1);
    return s;
}

static void session_open(gw_session *s, gw_conn *c)
{
    gw_worker *w = s->w;
    const gw_config *cfg = w->cfg;
    pr_buf *out = &w->enc;
    pr_buf_reset(out);
    eio_encode_open(out, pr_view_make(s->sid, GW_SID_LEN), s->transport == GW_T_POLLING,
                    cfg->ping_interval_ms, cfg->ping_timeout_ms, cfg->max_payload);
    if (s->transport == GW_T_POLLING) {
        pr_buf body;
        pr_buf_init(&body, out->len + 1);
        pr_buf_append(&body, out->ptr, out->len);
        gw__http_respond(c, 200, "text/plain; charset=UTF-8", pr_buf_view(&body), 0);
        pr_buf_dispose(&body);
    } else {
        send_on_conn(c, EIO_OPEN, pr_view_make(out->ptr + 1, out->len - 1));
    }
    gw__tq_add(&w->ping_tq, &s->hb);
    w->eio_up->on_open(s);
}

static void handle_post(gw_conn *c, gw_session *s, pr_view body)
{
    pr_view rest = body, rec;
    pr_buf bin;
    pr_buf_init(&bin, c->w->cfg->max_payload);
    int rc = 0;
    while (!s->closed && (rc = eio_payload_next(&rest, &rec)) == 1) {
        eio_packet p;
        if (eio_decode_record(rec, &p, &bin) != 0 || handle_packet(s, &p) != 0) {
            rc = PR_EINVAL;
            break;
        }
    }
    pr_buf_dispose(&bin);
    if (rc < 0) {
        respond_eio_error(c, 3);
        if (!s->closed)
            gw__eio_bad_input(s);
        return;
    }
    gw__http_respond(c, 200, "text/html", PR_VIEW_LIT("ok"), 0);
}

void gw__eio_handle_request(gw_conn *c, int method, pr_view query, pr_view body, int is_upgrade,
                            pr_view ws_key, pr_view token, int flags)
{
    gw_worker *w = c->w;
    pr_view eio = query_param(query, "EIO"), transport = query_param(query, "transport"),
            sid = query_param(query, "sid");
    if (!pr_view_eq_cstr(eio, "4")) {
        respond_eio_error(c, 5);
        return;
    }
    int t;
    if (pr_view_eq_cstr(transport, "polling"))
        t = GW_T_POLLING;
    else if (pr_view_eq_cstr(transport, "websocket"))
        t = GW_T_WEBSOCKET;
    else {
        respond_eio_error(c, 0);
        return;
    }
    if ((t == GW_T_WEBSOCKET) != (is_upgrade != 0)) {
        respond_eio_error(c, 3);
        return;
    }

    if (!sid.ptr) {
        if (method != HTTP_GET) {
            respond_eio_error(c, 2);
            return;
        }
        if (gw__draining()) {
            gw__http_respond(c, 503, "text/plain", PR_VIEW_LIT("draining\n"), 1);
            return;
        }
        gw_session *s = session_new(w, t);
        if (token.len && token.len <= 4096 && w->app->socketio) {
            s->http_token = pr_strndup(token.ptr, token.len); /* for the app's CONNECT */
            s->cookie_auth = (flags & GW_REQ_COOKIE) != 0;
        }
        if (t == GW_T_WEBSOCKET) {
            gw__ws_accept(c, ws_key);
            s->conn = c;
            c->owner = s;
        }
        session_open(s, c);
        return;
    }

    int owner = gw__eio_sid_worker(sid);
    if (owner < 0) {
        respond_eio_error(c, 1);
        return;
    }
    if (owner != w->index) {
        gw__http_handoff(c, owner);
        return;
    }
    gw_session *s = gw__eio_find(w, sid);
    if (s && s->tombstone) {
        if (t == GW_T_POLLING && method == HTTP_GET)
            gw__http_respond(c, 200, "text/plain; charset=UTF-8", PR_VIEW_LIT("6"), 0);
        else
            respond_eio_error(c, 1);
        session_bury(s);
        return;
    }
    if (s && s->awaiting_pong && gw__now_ms(w) >= s->hb.deadline_ms)
        gw__eio_close(s, "ping timeout"); /* due, its timer has not run yet */
    if (s && !s->closed && s->probe && t == GW_T_POLLING) {
        /* Frames the client sent on the probe before this request are in
         * that socket already; apply them first, so the upgrade state this
         * request sees is the one the client saw. */
        gw__conn_read_now(s->probe);
    }
    if (!s || s->closed) {
        respond_eio_error(c, 1);
        return;
    }
    if (s->cookie_auth && !(flags & GW_REQ_ORIGIN_TRUSTED)) {
        /* a page of another origin that learnt the sid rides on the cookie */
        CM_WARN_RATELIMITED("event=foreign_origin sid=%s", s->sid);
        respond_eio_error(c, 4);
        return;
    }
    if (t == GW_T_WEBSOCKET) {
        if (s->transport != GW_T_POLLING || s->upgrading) {
            /* as the reference server does: open, then close at once */
            gw__ws_accept(c, ws_key);
            gw__ws_reject(c, 1008);
            return;
        }
        gw__ws_accept(c, ws_key);
        s->upgrading = 1;
        s->probe_acked = 0;
        s->probe = c;
        c->owner = s;
        return;
    }
    if (s->transport != GW_T_POLLING) {
        respond_eio_error(c, 3);
        return;
    }
    if (method == HTTP_GET) {
        if (s->conn) {
            /* two polls at once: a broken client; end the session */
            GW_STAT_ADD(w, closed_bad_input, 1);
            respond_eio_error(c, 3);
            gw__eio_close(s, "duplicate poll");
            return;
        }
        s->conn = c;
        c->owner = s;
        consumed(s, s->answered_seq); /* a client polls again once it read the last answer */
        if (s->upgrading && s->probe_acked)
            poll_answer_packet(s, EIO_NOOP);
        else if (s->pollq_head)
            poll_answer(s);
        return; /* otherwise parked until there is something to send */
    }
    if (method == HTTP_POST) {
        handle_post(c, s, body);
        return;
    }
    respond_eio_error(c, 3);
}

/* ---- worker ---- */

static const gw_ws_handler ws_handler = {
    .on_text = on_ws_text,
    .on_binary = on_ws_binary,
    .owner_closed = on_ws_closed,
};

void gw__eio_worker_init(gw_worker *w)
{
    const gw_config *cfg = w->cfg;
    w->ws_up = &ws_handler;
    gw__tq_init(&w->ping_tq, w, cfg->ping_interval_ms, ping_due);
    gw__tq_init(&w->pong_tq, w, cfg->ping_timeout_ms, pong_overdue);
    pr_map_init(&w->sessions, 1024, session_sid);
}

void gw__eio_worker_close_all(gw_worker *w)
{
    pr_map_iter it = pr_map_iter_make(&w->sessions);
    for (pr_map_entry *e; (e = pr_map_next(&it));) {
        gw_session *s = GW_CONTAINER_OF(e, gw_session, map_link);
        if (!s->closed)
            gw__eio_close_code(s, "server shutting down", 1001);
        if (s->tombstone) /* closed, its sid kept: still in the table */
            session_bury(s);
    }
}

void gw__eio_worker_dispose(gw_worker *w)
{
    gw__eio_worker_close_all(w);
    gw__tq_dispose(&w->ping_tq);
    gw__tq_dispose(&w->pong_tq);
    pr_map_dispose(&w->sessions);
}

/* ---- engine-level app API ---- */

int gw_session_send(gw_session *s, int binary, pr_view data)
{
    return gw__eio_send(s, EIO_MESSAGE, binary, data);
}

const char *gw_session_sid(const gw_session *s)
{
    return s->sid;
}

const char *gw_session_http_token(const gw_session *s)
{
    return s->http_token;
}

void gw_session_close(gw_session *s)
{
    gw__eio_close(s, "server close");
}
