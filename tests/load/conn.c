/* chat-load: one client connection. It speaks Engine.IO v4 / Socket.IO v5
 * over WebSocket itself (no client library): the upgrade, the handshake,
 * the join, the sends, and the checks of what comes back. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <inttypes.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "jwt.h"
#include "load.h"

static void user_of(unsigned idx, char *out, size_t n)
{
    snprintf(out, n, "%s%u", ld_opt.prefix, idx);
}

/* Sends one masked WebSocket text frame (the mask may be zero: RFC 6455
 * requires the bit, not randomness, and the server cannot tell). */
static void ws_send(ld_conn *c, const char *data, size_t len)
{
    unsigned char h[14];
    size_t hl = 0;
    h[hl++] = 0x81;
    if (len < 126) {
        h[hl++] = 0x80 | (unsigned char)len;
    } else if (len < 65536) {
        h[hl++] = 0x80 | 126;
        h[hl++] = (unsigned char)(len >> 8);
        h[hl++] = (unsigned char)len;
    } else {
        h[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            h[hl++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    memset(h + hl, 0, 4);
    hl += 4;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add(out, h, hl);
    evbuffer_add(out, data, len);
}

/* Closes the socket; with RST when reset (connect mode: no TIME_WAIT, so
 * the ephemeral ports last). */
static void conn_close(ld_conn *c, int reset)
{
    if (!c->bev)
        return;
    if (reset) {
        struct linger l = {1, 0};
        setsockopt(bufferevent_getfd(c->bev), SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    bufferevent_free(c->bev);
    c->bev = NULL;
}

void ld_conn_dead(ld_conn *c, const char *why)
{
    if (c->state == C_DEAD || c->state == C_CLOSED)
        return;
    if (c->state < C_READY)
        ld_p.in_setup--;
    else
        ld_p.ready--;
    conn_close(c, ld_opt.mode == M_CONNECT);
    if (c->sent_ns) /* its acks will not come */
        for (unsigned i = 0; i < RING; i++)
            if (c->sent_ns[i]) {
                c->sent_ns[i] = 0;
                ld_p.unanswered--;
            }
    if (ld_opt.mode == M_CONNECT) {
        /* a failed handshake; the slot tries again */
        if (ld_p.failed++ < 5)
            fprintf(stderr, "chat-load: handshake %u failed: %s\n", c->idx, why);
        c->state = C_CLOSED;
        ld_p.closed++;
        return;
    }
    if (ld_p.dead < 5)
        fprintf(stderr, "chat-load: connection %u: %s\n", c->idx, why);
    c->state = C_DEAD;
    ld_p.dead++;
    if (ld_shared.dead)
        ld_shared.dead[c->idx] = 1;
}

static void conn_ready(ld_conn *c)
{
    c->state = C_READY;
    ld_p.in_setup--;
    ld_p.ready++;
    if (!ld_p.started)
        ld_hist_add(&ld_p.connect, (ld_now_ns() - c->opened_ns) / 1000);
}

static void send_join(ld_conn *c)
{
    char peer[64], msg[512];
    int n;
    if (ld_opt.mode == M_DM) {
        user_of(c->idx ^ 1, peer, sizeof peer);
        n = snprintf(msg, sizeof msg, "420[\"joinChat\",{\"targetUserId\":\"%s\"}]", peer);
    } else {
        n = snprintf(msg, sizeof msg, "420[\"joinRoom\",{\"roomId\":\"%s\"}]", ld_opt.room);
    }
    c->next_ack = 1;
    ws_send(c, msg, (size_t)n);
    c->state = C_JOIN;
}

void ld_send_one(ld_conn *c, uint64_t t)
{
    int64_t id = c->next_ack++;
    if (c->sent_ns[id % RING]) {
        ld_p.overflow++; /* too many unanswered: count it, don't send */
        c->next_ack--;
        return;
    }
    c->sent_ns[id % RING] = t;
    c->sent++;
    ld_p.unanswered++;
    if (ld_p.measuring)
        ld_p.sent_measured++;
    pr_buf *b = &ld_p.scratch;
    pr_buf_reset(b);
    if (ld_opt.mode == M_TYPING) {
        ld_shared.sent[c->idx] = c->sent;
        if (c->sent <= ld_shared.ts_max)
            ld_shared.ts[c->idx * ld_shared.ts_max + c->sent - 1] = t;
        pr_buf_appendf(b, "42%" PRId64 "[\"typing\",{\"roomId\":\"%s\"}]", id, c->room);
    } else {
        if (ld_opt.mode == M_ROOM)
            ld_shared.sent[c->idx] = c->sent;
        pr_buf_appendf(b, "42%" PRId64 "[\"sendMessage\",{\"roomId\":\"%s\",\"text\":\"%" PRIu64,
                       id, c->room, t);
        for (unsigned i = 0; i < ld_opt.text_pad; i++)
            pr_buf_append_byte(b, i == 0 ? ' ' : 'x');
        pr_buf_appendf(b, "\",\"clientMsgId\":\"c%u-%" PRIu64 "\"}]", c->idx, c->sent);
    }
    ws_send(c, b->ptr, b->len);
}

/* Extracts the string value of a key from json text, where pat is
 * "\"key\":\"" (no escapes in what we look for). */
static int json_str(const char *p, size_t len, const char *pat, const char **v, size_t *vlen)
{
    size_t n = strlen(pat);
    const char *s = memmem(p, len, pat, n);
    if (!s)
        return -1;
    s += n;
    const char *e = memchr(s, '"', (size_t)(p + len - s));
    if (!e)
        return -1;
    *v = s;
    *vlen = (size_t)(e - s);
    return 0;
}

/* Decimal digits at *p (up to end) as a number; advances *p. -1 if none. */
static int64_t digits(const char **p, const char *end)
{
    const char *s = *p;
    uint64_t v = 0;
    while (s < end && *s >= '0' && *s <= '9' && s - *p < 19)
        v = v * 10 + (uint64_t)(*s++ - '0');
    if (s == *p)
        return -1;
    *p = s;
    return (int64_t)v;
}

static void on_ack(ld_conn *c, const char *p, size_t len)
{
    /* 43<id>[...] */
    char *end;
    int64_t id = strtoll(p + 2, &end, 10);
    if (end == p + 2)
        return;
    size_t rest = len - (size_t)(end - p);
    if (c->state == C_JOIN) {
        const char *room;
        size_t rl;
        if (json_str(end, rest, "\"roomId\":\"", &room, &rl) != 0 || rl >= sizeof c->room) {
            if (ld_p.dead == 0)
                fprintf(stderr, "chat-load: join refused: %.*s\n", (int)(len < 200 ? len : 200), p);
            ld_conn_dead(c, "join failed");
            return;
        }
        memcpy(c->room, room, rl);
        c->room[rl] = '\0';
        conn_ready(c);
        return;
    }
    if (!c->sent_ns)
        return;
    uint64_t t = c->sent_ns[id % RING];
    if (!t)
        return;
    c->sent_ns[id % RING] = 0;
    ld_p.unanswered--;
    if (memmem(end, rest, "\"error\"", 7)) {
        if (ld_p.err_acks == 0)
            fprintf(stderr, "chat-load: first error ack: %.*s\n", (int)(len < 200 ? len : 200), p);
        c->errors++;
        ld_p.err_acks++;
        return;
    }
    c->acked++;
    if (ld_has_room())
        ld_shared.acked[c->idx] = c->acked;
    uint64_t now = ld_now_ns();
    if (ld_in_window(now))
        ld_p.acks_in_window++;
    if (ld_in_window(t)) {
        ld_p.acked_measured++;
        ld_hist_add(&ld_p.ack, (now - t) / 1000);
    }
}

static void delivered(uint64_t sent_at)
{
    ld_p.last_rx_ns = ld_now_ns();
    if (sent_at && ld_in_window(sent_at)) {
        ld_p.deliveries_measured++;
        ld_hist_add(&ld_p.deliver, (ld_now_ns() - sent_at) / 1000);
    }
}

/* messageReceived: text = send time, clientMsgId = c<conn>-<n>. */
static void on_message(ld_conn *c, const char *p, size_t len)
{
    const char *cm, *tx;
    size_t cml, txl;
    if (json_str(p, len, "\"clientMsgId\":\"", &cm, &cml) != 0 ||
        json_str(p, len, "\"text\":\"", &tx, &txl) != 0)
        return;
    /* c<conn>-<n> */
    const char *q = cm + 1, *cend = cm + cml;
    if (cml < 4 || cm[0] != 'c')
        return;
    int64_t f = digits(&q, cend);
    if (f < 0 || q >= cend || *q++ != '-')
        return;
    int64_t nn = digits(&q, cend);
    if (nn < 0 || q != cend)
        return;
    unsigned from = (unsigned)f;
    uint64_t n = (uint64_t)nn;
    const char *tq = tx;
    int64_t sent_at = digits(&tq, tx + txl);
    uint64_t *last;
    if (ld_opt.mode == M_DM) {
        if (from == c->idx) { /* our own copy: a delivery, not the peer's order */
            delivered(sent_at > 0 ? (uint64_t)sent_at : 0);
            return;
        }
        last = &c->last_from_peer;
    } else {
        if (from >= ld_opt.senders)
            return;
        last = &ld_shared.last[(size_t)c->idx * ld_opt.senders + from];
    }
    if (n <= *last) {
        c->dup++;
        return;
    }
    if (n != *last + 1)
        c->gap += n - *last - 1;
    *last = n;
    delivered(sent_at > 0 ? (uint64_t)sent_at : 0);
}

/* showTyping {userId}: the n-th from a sender is its n-th typing. */
static void on_typing(ld_conn *c, const char *p, size_t len)
{
    const char *u;
    size_t ul, pl = strlen(ld_opt.prefix);
    if (json_str(p, len, "\"userId\":\"", &u, &ul) != 0 || ul <= pl || ul > pl + 10 ||
        memcmp(u, ld_opt.prefix, pl) != 0)
        return;
    unsigned from = 0;
    for (size_t i = pl; i < ul; i++) {
        if (u[i] < '0' || u[i] > '9')
            return;
        from = from * 10 + (unsigned)(u[i] - '0');
    }
    if (from >= ld_opt.senders)
        return;
    uint64_t n = ++ld_shared.last[(size_t)c->idx * ld_opt.senders + from];
    if (n > ld_shared.sent[from]) { /* more than were sent */
        c->dup++;
        return;
    }
    delivered(n <= ld_shared.ts_max ? ld_shared.ts[from * ld_shared.ts_max + n - 1] : 0);
}

static void on_event(ld_conn *c, const char *p, size_t len)
{
    if (len >= 20 && memcmp(p, "42[\"messageReceived\"", 20) == 0)
        on_message(c, p, len);
    else if (len >= 15 && memcmp(p, "42[\"showTyping\"", 15) == 0 && ld_opt.mode == M_TYPING)
        on_typing(c, p, len);
}

/* The Socket.IO CONNECT ack. */
static void on_connected(ld_conn *c)
{
    switch (ld_opt.mode) {
    case M_IDLE:
        conn_ready(c);
        return;
    case M_CONNECT: {
        uint64_t t = ld_now_ns();
        if (ld_in_window(t)) {
            ld_p.handshakes_measured++;
            ld_hist_add(&ld_p.connect, (t - c->opened_ns) / 1000);
        }
        ld_p.in_setup--;
        conn_close(c, 1);
        c->state = C_CLOSED;
        if (t < ld_p.measure_end_ns)
            ld_conn_open(c); /* at once: the storm goes on */
        return;
    }
    default:
        send_join(c);
    }
}

static void on_text(ld_conn *c, const char *p, size_t len)
{
    if (len == 0)
        return;
    switch (p[0]) {
    case '0': /* Engine.IO open */
        if (c->state == C_EIO) {
            char u[64], tok[512];
            user_of(c->idx, u, sizeof u);
            pr_buf t;
            pr_buf_init(&t, 1024);
            int64_t now = (int64_t)time(NULL);
            pr_jwt_sign_hs256(&t, pr_view_make(ld_opt.secret, strlen(ld_opt.secret)), u, u, now,
                              now + 86400);
            int n = snprintf(tok, sizeof tok, "40{\"token\":\"%.*s\"}", (int)t.len, t.ptr);
            pr_buf_dispose(&t);
            ws_send(c, tok, (size_t)n);
            c->state = C_SIO;
        }
        return;
    case '2': /* ping */
        if (len == 1)
            ws_send(c, "3", 1);
        return;
    case '4':
        if (len >= 2 && p[1] == '0' && c->state == C_SIO)
            on_connected(c);
        else if (len >= 2 && p[1] == '4')
            ld_conn_dead(c, "connect_error");
        else if (len >= 2 && p[1] == '3')
            on_ack(c, p, len);
        else if (len >= 2 && p[1] == '2')
            on_event(c, p, len);
        return;
    case '1':
        ld_conn_dead(c, "closed by server");
        return;
    }
}

/* Parses server frames (unmasked, unfragmented text frames; control
 * frames are skipped). */
static void read_frames(ld_conn *c)
{
    struct bufferevent *bev = c->bev;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (avail < 2)
            return;
        unsigned char h[10];
        evbuffer_copyout(in, h, avail < 10 ? avail : 10);
        size_t hl = 2;
        uint64_t len = h[1] & 0x7f;
        if (len == 126) {
            if (avail < 4)
                return;
            len = ((uint64_t)h[2] << 8) | h[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                return;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | h[2 + i];
            hl = 10;
        }
        if (avail < hl + len)
            return;
        evbuffer_drain(in, hl);
        unsigned char *data = evbuffer_pullup(in, (ssize_t)len);
        unsigned op = h[0] & 0x0f;
        if (op == 1)
            on_text(c, (const char *)data, (size_t)len);
        else if (op == 8) {
            ld_conn_dead(c, "websocket close");
            return;
        }
        if (c->bev != bev) /* closed (and maybe reopened) by the frame */
            return;
        evbuffer_drain(in, len);
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    ld_conn *c = arg;
    (void)bev;
    if (c->state == C_UPGRADE) {
        struct evbuffer *in = bufferevent_get_input(c->bev);
        struct evbuffer_ptr e = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (e.pos < 0)
            return;
        char line[16] = {0};
        evbuffer_copyout(in, line, 12);
        if (strncmp(line, "HTTP/1.1 101", 12) != 0) {
            ld_conn_dead(c, "upgrade refused");
            return;
        }
        evbuffer_drain(in, (size_t)e.pos + 4);
        c->state = C_EIO;
    }
    read_frames(c);
}

static void on_bev_event(struct bufferevent *bev, short what, void *arg)
{
    ld_conn *c = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char req[512];
        const struct sockaddr_in *t = &ld_opt.target[c->idx % ld_opt.ntarget];
        char host[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &t->sin_addr, host, sizeof host);
        int n = snprintf(req, sizeof req,
                         "GET %s?EIO=4&transport=websocket HTTP/1.1\r\nHost: %s:%u\r\n"
                         "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n",
                         ld_opt.path, host, ntohs(t->sin_port));
        bufferevent_write(c->bev, req, (size_t)n);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        ld_conn_dead(c, what & BEV_EVENT_EOF ? "eof" : strerror(EVUTIL_SOCKET_ERROR()));
}

void ld_conn_open(ld_conn *c)
{
    c->state = C_UPGRADE;
    c->opened_ns = ld_now_ns();
    ld_p.in_setup++;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ld_conn_dead(c, strerror(errno));
        return;
    }
    if (ld_opt.nsource) {
        struct sockaddr_in src = {.sin_family = AF_INET,
                                  .sin_addr = ld_opt.source[c->idx % ld_opt.nsource]};
        if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0) {
            int e = errno;
            close(fd);
            ld_conn_dead(c, strerror(e));
            return;
        }
    }
    c->bev = bufferevent_socket_new(ld_p.base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(c->bev, on_read, NULL, on_bev_event, c);
    bufferevent_enable(c->bev, EV_READ);
    const struct sockaddr_in *t = &ld_opt.target[c->idx % ld_opt.ntarget];
    if (bufferevent_socket_connect(c->bev, (const struct sockaddr *)t, sizeof *t) != 0)
        ld_conn_dead(c, "connect failed");
}
