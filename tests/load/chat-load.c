/*
 * chat-load - a load generator for the chat's Socket.IO API.
 *
 * It speaks Engine.IO v4 / Socket.IO v5 over WebSocket itself (no client
 * library), so one process holds thousands of connections. Every connection
 * is a user (P0, P1, ... for --prefix P) with an HS256 token. Workloads
 * (--mode):
 *
 *   dm       users come in pairs (2k, 2k+1); each joins the direct room of
 *            its pair (joinChat), then every user emits sendMessage with an
 *            ack (the default)
 *   room     every user joins --room (joinRoom); the first --senders users
 *            emit sendMessage with an ack; every member gets each message
 *   typing   as room, but the senders emit typing (not stored); the other
 *            members get showTyping
 *   idle     users connect (Socket.IO CONNECT acked) and stay idle,
 *            answering pings
 *   connect  --conns slots each connect, wait for the CONNECT ack, close
 *            and connect again: handshakes per second
 *
 * Senders send at a fixed total --rate (open loop: the schedule does not wait
 * for answers). The text of a message is its send time and its clientMsgId
 * "c<conn>-<n>", so receivers measure delivery latency and check that they
 * get each sender's messages exactly once and in order. showTyping carries
 * neither: the n-th one a member gets from a sender is matched with that
 * sender's n-th typing, whose send time the processes share.
 *
 * --procs P forks P processes (the fd limit is per process); --source lists
 * local addresses to bind, round robin (each address pair has its own
 * ephemeral ports). The processes start sending at one moment, after every
 * connection of every process is set up; stdout then gets, each flushed:
 *
 *   ready conns=N ready=R dead=D   setup done (connect mode: at once)
 *   measure_start                  after --warmup seconds of sending
 *   measure_end                    --duration seconds later
 *
 * so a benchmark can sample the servers over the measured window. Sending
 * stops at measure_end; the run ends once every ack has come and no delivery
 * has arrived for a second (at most 30 s later), then prints one summary
 * line of key=value pairs (and JSON with --json).
 *
 * Exit status: 0 when the run is clean (every acked message or typing
 * reached every live member once, nothing duplicated, no connection lost or
 * handshake failed); 1 otherwise; 2 for bad arguments or setup failure.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jwt.h"
#include "pr.h"

#define MAX_ADDRS 16
#define MAX_PROCS 64
#define MAX_SENDERS 64      /* room and typing modes */
#define RING 4096           /* outstanding acks per sender */
#define SETUP_AT_ONCE 256   /* connections in setup at once, per process */
#define SETUP_TIMEOUT_S 120 /* a connection not set up by then counts as dead */
#define TAIL_MAX_S 30       /* after the window, at most, for answers in flight */
#define TAIL_QUIET_NS 1000000000ull /* no delivery for this long: all came */

/* ---- latency histogram: 16 sub-buckets per power of two of microseconds ---- */

#define HBUCKETS (40 * 16)

typedef struct {
    uint64_t n[HBUCKETS];
    uint64_t count, max_us;
} hist;

static unsigned hist_bucket(uint64_t us)
{
    if (us < 16)
        return (unsigned)us;
    unsigned p = 63 - (unsigned)__builtin_clzll(us); /* >= 4 */
    unsigned sub = (unsigned)(us >> (p - 4)) & 15;
    unsigned b = (p - 3) * 16 + sub;
    return b < HBUCKETS ? b : HBUCKETS - 1;
}

static uint64_t hist_bucket_top(unsigned b)
{
    if (b < 16)
        return b;
    unsigned p = b / 16 + 3, sub = b % 16;
    return ((uint64_t)(16 + sub + 1) << (p - 4)) - 1;
}

static void hist_add(hist *h, uint64_t us)
{
    h->n[hist_bucket(us)]++;
    h->count++;
    if (us > h->max_us)
        h->max_us = us;
}

static double hist_pct(const hist *h, double pct)
{
    if (h->count == 0)
        return 0;
    uint64_t want = (uint64_t)ceil(h->count * pct / 100.0), seen = 0;
    for (unsigned b = 0; b < HBUCKETS; b++) {
        seen += h->n[b];
        if (seen >= want) {
            uint64_t top = hist_bucket_top(b);
            return (double)(top < h->max_us ? top : h->max_us) / 1000.0;
        }
    }
    return (double)h->max_us / 1000.0;
}

/* ---- options ---- */

enum { M_DM, M_ROOM, M_TYPING, M_IDLE, M_CONNECT };
static const char *const mode_names[] = {"dm", "room", "typing", "idle", "connect"};

typedef struct {
    struct sockaddr_in target[MAX_ADDRS];
    unsigned ntarget;
    struct in_addr source[MAX_ADDRS];
    unsigned nsource;
    int mode;
    unsigned conns, procs, senders;
    double rate; /* messages per second, all processes */
    double warmup, duration;
    const char *secret;
    const char *path;
    const char *prefix; /* user id prefix */
    const char *room;   /* room and typing modes */
    unsigned text_pad;
    int json;
} options;

static options opt = {
    .conns = 100,
    .procs = 1,
    .senders = 1,
    .rate = 1000,
    .warmup = 1,
    .duration = 5,
    .path = "/socket.io/",
    .prefix = "load",
};

static int has_room(void)
{
    return opt.mode == M_ROOM || opt.mode == M_TYPING;
}

/* Senders are users 0..total_senders()-1: everyone in dm mode, the first
 * --senders in room and typing modes. */
static unsigned total_senders(void)
{
    switch (opt.mode) {
    case M_DM:
        return opt.conns;
    case M_ROOM:
    case M_TYPING:
        return opt.senders;
    default:
        return 0;
    }
}

/* ---- state shared by the processes (room and typing modes) ----
 * Mapped before the fork; each slot has one writer, and the parent reads
 * them all once the children have exited. */

static struct {
    uint64_t *acked; /* [sender]: acked sends */
    uint64_t *sent;  /* [sender] */
    uint64_t *last;  /* [conn * senders + sender]: messages of sender received */
    uint8_t *dead;   /* [conn] */
    uint64_t *ts;    /* [sender * ts_max + n]: send time of typing n+1 */
    size_t ts_max;
} S;

static void *shared_alloc(size_t bytes)
{
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static int shared_init(void)
{
    unsigned k = opt.senders;
    /* typing send times: each sender's share of the rate over the run, with
     * room to spare; later ones go unmeasured (still counted) */
    S.ts_max = (size_t)(opt.rate / k * (opt.warmup + opt.duration + 4) * 1.5) + 1024;
    S.acked = shared_alloc(k * sizeof *S.acked);
    S.sent = shared_alloc(k * sizeof *S.sent);
    S.last = shared_alloc((size_t)opt.conns * k * sizeof *S.last);
    S.dead = shared_alloc(opt.conns);
    S.ts = opt.mode == M_TYPING ? shared_alloc(k * S.ts_max * sizeof *S.ts) : NULL;
    return S.acked && S.sent && S.last && S.dead && (opt.mode != M_TYPING || S.ts) ? 0 : -1;
}

/* ---- connections ---- */

enum { C_UPGRADE, C_EIO, C_SIO, C_JOIN, C_READY, C_CLOSED, C_DEAD };

typedef struct conn {
    struct bufferevent *bev;
    unsigned idx; /* global index */
    int state;
    char room[160];
    int64_t next_ack;
    uint64_t *sent_ns; /* senders: by ack id % RING; 0 = free */
    uint64_t sent, acked, errors;
    uint64_t last_from_peer; /* dm: highest n received from the peer */
    uint64_t dup, gap;
    uint64_t opened_ns; /* when this connection attempt started */
} conn;

typedef struct {
    struct event_base *base;
    conn *c;
    unsigned first, n; /* this process's conns: [first, first+n) */
    unsigned opened, in_setup, ready, dead;
    unsigned closed; /* connect mode: failed slots to open again */
    unsigned nsenders; /* local */
    double rate;       /* this process's share */
    double credit;
    uint64_t last_tick_ns;
    unsigned next_sender;
    int reported, started, measuring;
    uint64_t setup_start_ns, start_ns, measure_start_ns, measure_end_ns, stop_ns;
    uint64_t last_rx_ns;  /* the last delivery received */
    uint64_t unanswered;  /* sends whose ack has not come */
    hist ack, deliver, connect;
    uint64_t sent_measured, acked_measured, deliveries_measured, handshakes_measured;
    uint64_t acks_in_window; /* successful acks that arrived in the window */
    uint64_t err_acks, overflow, failed;
    int up_fd, down_fd;
    struct event *tick, *ctl;
    pr_buf scratch;
} proc;

static proc P;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int in_window(uint64_t t)
{
    return t >= P.measure_start_ns && t < P.measure_end_ns;
}

static void user_of(unsigned idx, char *out, size_t n)
{
    snprintf(out, n, "%s%u", opt.prefix, idx);
}

/* Sends one masked WebSocket text frame (the mask may be zero: RFC 6455
 * requires the bit, not randomness, and the server cannot tell). */
static void ws_send(conn *c, const char *data, size_t len)
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
static void conn_close(conn *c, int reset)
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

static void conn_dead(conn *c, const char *why)
{
    if (c->state == C_DEAD || c->state == C_CLOSED)
        return;
    if (c->state < C_READY)
        P.in_setup--;
    else
        P.ready--;
    conn_close(c, opt.mode == M_CONNECT);
    if (c->sent_ns) /* its acks will not come */
        for (unsigned i = 0; i < RING; i++)
            if (c->sent_ns[i]) {
                c->sent_ns[i] = 0;
                P.unanswered--;
            }
    if (opt.mode == M_CONNECT) {
        /* a failed handshake; the slot tries again */
        if (P.failed++ < 5)
            fprintf(stderr, "chat-load: handshake %u failed: %s\n", c->idx, why);
        c->state = C_CLOSED;
        P.closed++;
        return;
    }
    if (P.dead < 5)
        fprintf(stderr, "chat-load: connection %u: %s\n", c->idx, why);
    c->state = C_DEAD;
    P.dead++;
    if (S.dead)
        S.dead[c->idx] = 1;
}

static void conn_ready(conn *c)
{
    c->state = C_READY;
    P.in_setup--;
    P.ready++;
    if (!P.started)
        hist_add(&P.connect, (now_ns() - c->opened_ns) / 1000);
}

static void send_join(conn *c)
{
    char peer[64], msg[512];
    int n;
    if (opt.mode == M_DM) {
        user_of(c->idx ^ 1, peer, sizeof peer);
        n = snprintf(msg, sizeof msg, "420[\"joinChat\",{\"targetUserId\":\"%s\"}]", peer);
    } else {
        n = snprintf(msg, sizeof msg, "420[\"joinRoom\",{\"roomId\":\"%s\"}]", opt.room);
    }
    c->next_ack = 1;
    ws_send(c, msg, (size_t)n);
    c->state = C_JOIN;
}

static void send_one(conn *c, uint64_t t)
{
    int64_t id = c->next_ack++;
    if (c->sent_ns[id % RING]) {
        P.overflow++; /* too many unanswered: count it, don't send */
        c->next_ack--;
        return;
    }
    c->sent_ns[id % RING] = t;
    c->sent++;
    P.unanswered++;
    if (P.measuring)
        P.sent_measured++;
    pr_buf *b = &P.scratch;
    pr_buf_reset(b);
    if (opt.mode == M_TYPING) {
        S.sent[c->idx] = c->sent;
        if (c->sent <= S.ts_max)
            S.ts[c->idx * S.ts_max + c->sent - 1] = t;
        pr_buf_appendf(b, "42%" PRId64 "[\"typing\",{\"roomId\":\"%s\"}]", id, c->room);
    } else {
        if (opt.mode == M_ROOM)
            S.sent[c->idx] = c->sent;
        pr_buf_appendf(b, "42%" PRId64 "[\"sendMessage\",{\"roomId\":\"%s\",\"text\":\"%" PRIu64,
                       id, c->room, t);
        for (unsigned i = 0; i < opt.text_pad; i++)
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

static void on_ack(conn *c, const char *p, size_t len)
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
            if (P.dead == 0)
                fprintf(stderr, "chat-load: join refused: %.*s\n", (int)(len < 200 ? len : 200), p);
            conn_dead(c, "join failed");
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
    P.unanswered--;
    if (memmem(end, rest, "\"error\"", 7)) {
        if (P.err_acks == 0)
            fprintf(stderr, "chat-load: first error ack: %.*s\n", (int)(len < 200 ? len : 200), p);
        c->errors++;
        P.err_acks++;
        return;
    }
    c->acked++;
    if (has_room())
        S.acked[c->idx] = c->acked;
    uint64_t now = now_ns();
    if (in_window(now))
        P.acks_in_window++;
    if (in_window(t)) {
        P.acked_measured++;
        hist_add(&P.ack, (now - t) / 1000);
    }
}

static void delivered(uint64_t sent_at)
{
    P.last_rx_ns = now_ns();
    if (sent_at && in_window(sent_at)) {
        P.deliveries_measured++;
        hist_add(&P.deliver, (now_ns() - sent_at) / 1000);
    }
}

/* messageReceived: text = send time, clientMsgId = c<conn>-<n>. */
static void on_message(conn *c, const char *p, size_t len)
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
    if (opt.mode == M_DM) {
        if (from == c->idx) { /* our own copy: a delivery, not the peer's order */
            delivered(sent_at > 0 ? (uint64_t)sent_at : 0);
            return;
        }
        last = &c->last_from_peer;
    } else {
        if (from >= opt.senders)
            return;
        last = &S.last[(size_t)c->idx * opt.senders + from];
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
static void on_typing(conn *c, const char *p, size_t len)
{
    const char *u;
    size_t ul, pl = strlen(opt.prefix);
    if (json_str(p, len, "\"userId\":\"", &u, &ul) != 0 || ul <= pl || ul > pl + 10 ||
        memcmp(u, opt.prefix, pl) != 0)
        return;
    unsigned from = 0;
    for (size_t i = pl; i < ul; i++) {
        if (u[i] < '0' || u[i] > '9')
            return;
        from = from * 10 + (unsigned)(u[i] - '0');
    }
    if (from >= opt.senders)
        return;
    uint64_t n = ++S.last[(size_t)c->idx * opt.senders + from];
    if (n > S.sent[from]) { /* more than were sent */
        c->dup++;
        return;
    }
    delivered(n <= S.ts_max ? S.ts[from * S.ts_max + n - 1] : 0);
}

static void on_event(conn *c, const char *p, size_t len)
{
    if (len >= 20 && memcmp(p, "42[\"messageReceived\"", 20) == 0)
        on_message(c, p, len);
    else if (len >= 15 && memcmp(p, "42[\"showTyping\"", 15) == 0 && opt.mode == M_TYPING)
        on_typing(c, p, len);
}

static void conn_open(conn *c);

/* The Socket.IO CONNECT ack. */
static void on_connected(conn *c)
{
    switch (opt.mode) {
    case M_IDLE:
        conn_ready(c);
        return;
    case M_CONNECT: {
        uint64_t t = now_ns();
        if (in_window(t)) {
            P.handshakes_measured++;
            hist_add(&P.connect, (t - c->opened_ns) / 1000);
        }
        P.in_setup--;
        conn_close(c, 1);
        c->state = C_CLOSED;
        if (t < P.measure_end_ns)
            conn_open(c); /* at once: the storm goes on */
        return;
    }
    default:
        send_join(c);
    }
}

static void on_text(conn *c, const char *p, size_t len)
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
            pr_jwt_sign_hs256(&t, pr_view_make(opt.secret, strlen(opt.secret)), u, u, now,
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
            conn_dead(c, "connect_error");
        else if (len >= 2 && p[1] == '3')
            on_ack(c, p, len);
        else if (len >= 2 && p[1] == '2')
            on_event(c, p, len);
        return;
    case '1':
        conn_dead(c, "closed by server");
        return;
    }
}

/* Parses server frames (unmasked, unfragmented text frames; control
 * frames are skipped). */
static void read_frames(conn *c)
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
            conn_dead(c, "websocket close");
            return;
        }
        if (c->bev != bev) /* closed (and maybe reopened) by the frame */
            return;
        evbuffer_drain(in, len);
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    conn *c = arg;
    (void)bev;
    if (c->state == C_UPGRADE) {
        struct evbuffer *in = bufferevent_get_input(c->bev);
        struct evbuffer_ptr e = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (e.pos < 0)
            return;
        char line[16] = {0};
        evbuffer_copyout(in, line, 12);
        if (strncmp(line, "HTTP/1.1 101", 12) != 0) {
            conn_dead(c, "upgrade refused");
            return;
        }
        evbuffer_drain(in, (size_t)e.pos + 4);
        c->state = C_EIO;
    }
    read_frames(c);
}

static void on_bev_event(struct bufferevent *bev, short what, void *arg)
{
    conn *c = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char req[512];
        const struct sockaddr_in *t = &opt.target[c->idx % opt.ntarget];
        char host[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &t->sin_addr, host, sizeof host);
        int n = snprintf(req, sizeof req,
                         "GET %s?EIO=4&transport=websocket HTTP/1.1\r\nHost: %s:%u\r\n"
                         "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n",
                         opt.path, host, ntohs(t->sin_port));
        bufferevent_write(c->bev, req, (size_t)n);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_dead(c, what & BEV_EVENT_EOF ? "eof" : strerror(EVUTIL_SOCKET_ERROR()));
}

static void conn_open(conn *c)
{
    c->state = C_UPGRADE;
    c->opened_ns = now_ns();
    P.in_setup++;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        conn_dead(c, strerror(errno));
        return;
    }
    if (opt.nsource) {
        struct sockaddr_in src = {.sin_family = AF_INET,
                                  .sin_addr = opt.source[c->idx % opt.nsource]};
        if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0) {
            int e = errno;
            close(fd);
            conn_dead(c, strerror(e));
            return;
        }
    }
    c->bev = bufferevent_socket_new(P.base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(c->bev, on_read, NULL, on_bev_event, c);
    bufferevent_enable(c->bev, EV_READ);
    const struct sockaddr_in *t = &opt.target[c->idx % opt.ntarget];
    if (bufferevent_socket_connect(c->bev, (const struct sockaddr *)t, sizeof *t) != 0)
        conn_dead(c, "connect failed");
}

/* ---- the schedule ---- */

typedef struct {
    uint32_t ready, dead;
} ready_msg;

static void report_ready(void)
{
    ready_msg m = {P.ready, P.dead};
    P.reported = 1;
    if (write(P.up_fd, &m, sizeof m) != (ssize_t)sizeof m)
        event_base_loopbreak(P.base);
}

/* The parent's start time: the same for every process. */
static void on_ctl(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    uint64_t start;
    if (read(fd, &start, sizeof start) != (ssize_t)sizeof start) {
        event_base_loopbreak(P.base); /* the parent is gone */
        return;
    }
    P.start_ns = start;
    P.measure_start_ns = start + (uint64_t)(opt.warmup * 1e9);
    P.measure_end_ns = P.measure_start_ns + (uint64_t)(opt.duration * 1e9);
    /* after the window: idle stops, a storm lets its handshakes finish; a
     * sending run waits for its acks and for deliveries to stop coming
     * (see on_tick), at most TAIL_MAX_S */
    uint64_t tail = opt.mode == M_IDLE      ? 0
                    : opt.mode == M_CONNECT ? 300000000ull
                                            : TAIL_MAX_S * 1000000000ull;
    P.stop_ns = P.measure_end_ns + tail;
    P.last_tick_ns = start;
    P.started = 1;
}

/* Every millisecond: set up connections (a few hundred at once), then,
 * from the start time on, send what the schedule says (senders in turn). */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    uint64_t t = now_ns();
    if (!P.started) {
        if (P.reported)
            return;
        if (opt.mode == M_CONNECT) {
            report_ready();
            return;
        }
        while (P.in_setup < SETUP_AT_ONCE && P.opened < P.n)
            conn_open(&P.c[P.opened++]);
        if (P.opened == P.n && P.in_setup == 0) {
            report_ready();
        } else if (t - P.setup_start_ns > SETUP_TIMEOUT_S * 1000000000ull) {
            for (unsigned i = 0; i < P.opened; i++)
                if (P.c[i].state < C_READY)
                    conn_dead(&P.c[i], "not set up in time");
            for (; P.opened < P.n; P.opened++) {
                P.c[P.opened].state = C_DEAD;
                P.dead++;
                if (S.dead)
                    S.dead[P.c[P.opened].idx] = 1;
            }
        }
        return;
    }
    if (t < P.start_ns)
        return;
    P.measuring = in_window(t);
    if (t >= P.stop_ns ||
        (opt.mode != M_IDLE && opt.mode != M_CONNECT && t >= P.measure_end_ns + TAIL_QUIET_NS &&
         P.unanswered == 0 && t - P.last_rx_ns >= TAIL_QUIET_NS)) {
        event_base_loopbreak(P.base);
        return;
    }
    if (t >= P.measure_end_ns)
        return;
    if (opt.mode == M_CONNECT) {
        if (P.opened < P.n) {
            for (; P.opened < P.n; P.opened++)
                conn_open(&P.c[P.opened]);
        } else if (P.closed) { /* failed handshakes: try again */
            P.closed = 0;
            for (unsigned i = 0; i < P.n; i++)
                if (P.c[i].state == C_CLOSED)
                    conn_open(&P.c[i]);
        }
        return;
    }
    if (!P.nsenders)
        return;
    P.credit += (double)(t - P.last_tick_ns) / 1e9 * P.rate;
    P.last_tick_ns = t;
    while (P.credit >= 1.0) {
        P.credit -= 1.0;
        for (unsigned tries = 0; tries < P.nsenders; tries++) {
            conn *c = &P.c[P.next_sender++ % P.nsenders];
            if (c->state == C_READY) {
                send_one(c, t);
                break;
            }
        }
    }
}

/* ---- results ---- */

typedef struct {
    uint64_t ready, sent, acked, errors, recv, dup, gap, lost, overflow, dead, failed;
    uint64_t sent_m, acked_m, deliveries_m, handshakes_m, acks_in_window;
    hist ack, deliver, connect;
} result;

static void collect(result *r)
{
    memset(r, 0, sizeof *r);
    for (unsigned i = 0; i < P.n; i++) {
        conn *c = &P.c[i];
        r->sent += c->sent;
        r->acked += c->acked;
        r->errors += c->errors;
        r->dup += c->dup;
        r->gap += c->gap;
        if (opt.mode != M_DM)
            continue;
        /* every message the peer had acked must have reached c (pairs stay
         * within a process) */
        conn *peer = &P.c[i ^ 1];
        r->recv += c->last_from_peer;
        if (c->state != C_DEAD && peer->acked > c->last_from_peer)
            r->lost += peer->acked - c->last_from_peer;
    }
    r->ready = P.ready;
    r->overflow = P.overflow;
    r->dead = P.dead;
    r->failed = P.failed;
    r->sent_m = P.sent_measured;
    r->acked_m = P.acked_measured;
    r->deliveries_m = P.deliveries_measured;
    r->handshakes_m = P.handshakes_measured;
    r->acks_in_window = P.acks_in_window;
    r->ack = P.ack;
    r->deliver = P.deliver;
    r->connect = P.connect;
}

static void hist_merge(hist *a, const hist *b)
{
    for (unsigned i = 0; i < HBUCKETS; i++)
        a->n[i] += b->n[i];
    a->count += b->count;
    if (b->max_us > a->max_us)
        a->max_us = b->max_us;
}

static void merge(result *a, const result *b)
{
    uint64_t *x = &a->ready;
    const uint64_t *y = &b->ready;
    for (size_t i = 0; &x[i] <= &a->acks_in_window; i++) /* the counters, in order */
        x[i] += y[i];
    hist_merge(&a->ack, &b->ack);
    hist_merge(&a->deliver, &b->deliver);
    hist_merge(&a->connect, &b->connect);
}

/* Room and typing modes: what every live member got from every sender,
 * against what the sender had acked. */
static void room_losses(result *r)
{
    for (unsigned m = 0; m < opt.conns; m++) {
        if (S.dead[m])
            continue;
        for (unsigned s = 0; s < opt.senders; s++) {
            if (opt.mode == M_TYPING && m == s)
                continue; /* typing goes to the others */
            uint64_t got = S.last[(size_t)m * opt.senders + s];
            r->recv += got;
            if (S.acked[s] > got)
                r->lost += S.acked[s] - got;
        }
    }
}

static int run_child(unsigned first, unsigned n)
{
    P.base = event_base_new();
    P.first = first;
    P.n = n;
    P.c = calloc(n, sizeof *P.c);
    if (!P.base || !P.c)
        return 2;
    unsigned k = total_senders();
    P.nsenders = first >= k ? 0 : (k - first < n ? k - first : n);
    P.rate = k ? opt.rate * P.nsenders / k : 0;
    for (unsigned i = 0; i < n; i++) {
        P.c[i].idx = first + i;
        P.c[i].state = C_CLOSED;
        if (i < P.nsenders && !(P.c[i].sent_ns = calloc(RING, sizeof(uint64_t))))
            return 2;
    }
    pr_buf_init(&P.scratch, 1 << 20);
    P.setup_start_ns = now_ns();
    P.tick = event_new(P.base, -1, EV_PERSIST, on_tick, NULL);
    P.ctl = event_new(P.base, P.down_fd, EV_READ, on_ctl, NULL);
    struct timeval ms = {0, 1000};
    event_add(P.tick, &ms);
    event_add(P.ctl, NULL);
    event_base_dispatch(P.base);
    result r;
    collect(&r);
    ssize_t w = write(P.up_fd, &r, sizeof r);
    return w == (ssize_t)sizeof r ? 0 : 2;
}

static int read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t k = read(fd, (char *)buf + got, len - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    return 0;
}

static void sleep_until(uint64_t t)
{
    struct timespec ts = {(time_t)(t / 1000000000u), (long)(t % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static int parse_addrs(const char *s, int with_port, struct sockaddr_in *sa, struct in_addr *ia,
                       unsigned *n)
{
    char *copy = strdup(s), *save = NULL;
    *n = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n >= MAX_ADDRS)
            goto bad;
        char *colon = strrchr(tok, ':');
        if (with_port) {
            if (!colon)
                goto bad;
            *colon = '\0';
            sa[*n].sin_family = AF_INET;
            sa[*n].sin_port = htons((uint16_t)atoi(colon + 1));
            if (inet_pton(AF_INET, tok, &sa[*n].sin_addr) != 1)
                goto bad;
        } else if (inet_pton(AF_INET, tok, &ia[*n]) != 1) {
            goto bad;
        }
        (*n)++;
    }
    free(copy);
    return *n ? 0 : -1;
bad:
    free(copy);
    return -1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: chat-load --target HOST:PORT[,...] --secret JWT_SECRET [options]\n"
            "  --mode M         dm|room|typing|idle|connect (see the source's header)  [dm]\n"
            "  --conns N        connections in all (dm: even, pairs of users)  [100]\n"
            "  --procs P        processes                                    [1]\n"
            "  --rate R         messages (or typings) per second in all      [1000]\n"
            "  --room ID        room and typing modes: the room to join\n"
            "  --senders K      room and typing modes: the first K users send  [1]\n"
            "  --warmup S       seconds sent before measuring                [1]\n"
            "  --duration S     seconds measured                             [5]\n"
            "  --source A[,...] local addresses to bind, round robin\n"
            "  --prefix P       user ids are P0, P1, ...                     [load]\n"
            "  --pad N          bytes added to each text                     [0]\n"
            "  --path P         Socket.IO path                               [/socket.io/]\n"
            "  --json           also print the summary as JSON\n"
            "Connection i goes to target i mod (number of targets).\n");
}

static int parse_mode(const char *s)
{
    for (int i = 0; i < (int)(sizeof mode_names / sizeof *mode_names); i++)
        if (!strcmp(s, mode_names[i]))
            return i;
    return -1;
}

static int options_valid(void)
{
    if (opt.mode < 0 || !opt.secret || opt.procs < 1 || opt.procs > MAX_PROCS ||
        opt.conns < opt.procs || opt.duration <= 0 || opt.warmup < 0 || opt.rate <= 0)
        return 0;
    switch (opt.mode) {
    case M_DM:
        return opt.conns % 2 == 0 && opt.conns / opt.procs >= 2;
    case M_ROOM:
    case M_TYPING:
        return opt.room && strlen(opt.room) < 128 && opt.senders >= 1 &&
               opt.senders <= MAX_SENDERS && opt.senders <= opt.conns &&
               (opt.mode == M_ROOM || opt.conns >= 2);
    default:
        return 1;
    }
}

/* One summary: key=value pairs, and the same as JSON. */
typedef struct {
    const char *key;
    double v;
    int is_int;
} field;

static void print_summary(const result *t)
{
    double secs = opt.duration;
    const field f[] = {
        {"conns", opt.conns, 1},
        {"procs", opt.procs, 1},
        {"rate", opt.rate, 1},
        {"senders", total_senders(), 1},
        {"ready", (double)t->ready, 1},
        {"sent", (double)t->sent, 1},
        {"sent_window", (double)t->sent_m, 1},
        {"acked", (double)t->acked, 1},
        {"errors", (double)t->errors, 1},
        {"received", (double)t->recv, 1},
        {"lost", (double)t->lost, 1},
        {"dup", (double)t->dup, 1},
        {"gap", (double)t->gap, 1},
        {"dead", (double)t->dead, 1},
        {"overflow", (double)t->overflow, 1},
        {"failed", (double)t->failed, 1},
        /* messages sent in the window and acked (even after it), per second */
        {"acked_per_s", round(t->acked_m / secs), 1},
        /* acks that arrived in the window, per second: the throughput */
        {"ack_throughput_per_s", round(t->acks_in_window / secs), 1},
        {"ack_p50_ms", hist_pct(&t->ack, 50), 0},
        {"ack_p99_ms", hist_pct(&t->ack, 99), 0},
        {"ack_p999_ms", hist_pct(&t->ack, 99.9), 0},
        {"ack_max_ms", t->ack.max_us / 1000.0, 0},
        {"deliveries", (double)t->deliveries_m, 1},
        {"deliveries_per_s", round(t->deliveries_m / secs), 1},
        {"deliver_p50_ms", hist_pct(&t->deliver, 50), 0},
        {"deliver_p99_ms", hist_pct(&t->deliver, 99), 0},
        {"deliver_p999_ms", hist_pct(&t->deliver, 99.9), 0},
        {"deliver_max_ms", t->deliver.max_us / 1000.0, 0},
        {"handshakes", (double)t->handshakes_m, 1},
        {"handshakes_per_s", round(t->handshakes_m / secs), 1},
        {"connect_p50_ms", hist_pct(&t->connect, 50), 0},
        {"connect_p99_ms", hist_pct(&t->connect, 99), 0},
        {"connect_p999_ms", hist_pct(&t->connect, 99.9), 0},
    };
    size_t nf = sizeof f / sizeof *f;
    printf("mode=%s", mode_names[opt.mode]);
    for (size_t i = 0; i < nf; i++)
        printf(f[i].is_int ? " %s=%.0f" : " %s=%.3f", f[i].key, f[i].v);
    printf("\n");
    if (opt.json) {
        printf("{\"mode\":\"%s\"", mode_names[opt.mode]);
        for (size_t i = 0; i < nf; i++)
            printf(f[i].is_int ? ",\"%s\":%.0f" : ",\"%s\":%.3f", f[i].key, f[i].v);
        printf("}\n");
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *targets = NULL, *sources = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int used = 1;
        if (!strcmp(a, "--json")) {
            opt.json = 1;
            used = 0;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!v) {
            usage(stderr);
            return 2;
        } else if (!strcmp(a, "--target"))
            targets = v;
        else if (!strcmp(a, "--source"))
            sources = v;
        else if (!strcmp(a, "--secret"))
            opt.secret = v;
        else if (!strcmp(a, "--mode"))
            opt.mode = parse_mode(v);
        else if (!strcmp(a, "--room"))
            opt.room = v;
        else if (!strcmp(a, "--senders"))
            opt.senders = (unsigned)atoi(v);
        else if (!strcmp(a, "--conns"))
            opt.conns = (unsigned)atoi(v);
        else if (!strcmp(a, "--procs"))
            opt.procs = (unsigned)atoi(v);
        else if (!strcmp(a, "--rate"))
            opt.rate = atof(v);
        else if (!strcmp(a, "--warmup"))
            opt.warmup = atof(v);
        else if (!strcmp(a, "--duration"))
            opt.duration = atof(v);
        else if (!strcmp(a, "--prefix"))
            opt.prefix = v;
        else if (!strcmp(a, "--pad"))
            opt.text_pad = (unsigned)atoi(v);
        else if (!strcmp(a, "--path"))
            opt.path = v;
        else {
            usage(stderr);
            return 2;
        }
        i += used;
    }
    if (!targets || !options_valid() || parse_addrs(targets, 1, opt.target, NULL, &opt.ntarget) ||
        (sources && parse_addrs(sources, 0, NULL, opt.source, &opt.nsource))) {
        usage(stderr);
        return 2;
    }
    if (has_room() && shared_init() != 0) {
        fprintf(stderr, "chat-load: cannot map shared memory\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    int up[MAX_PROCS][2], down[MAX_PROCS][2];
    pid_t pids[MAX_PROCS];
    /* dm: pairs stay within one process, so each checks its own deliveries */
    unsigned unit = opt.mode == M_DM ? 2 : 1, units = opt.conns / unit, first = 0;
    for (unsigned p = 0; p < opt.procs; p++) {
        unsigned n = unit * (units / opt.procs + (p < units % opt.procs));
        if (pipe(up[p]) != 0 || pipe(down[p]) != 0)
            return 2;
        fflush(stdout);
        pids[p] = fork();
        if (pids[p] < 0)
            return 2;
        if (pids[p] == 0) {
            close(up[p][0]);
            close(down[p][1]);
            P.up_fd = up[p][1];
            P.down_fd = down[p][0];
            _exit(run_child(first, n));
        }
        close(up[p][1]);
        close(down[p][0]);
        first += n;
    }

    /* every process set up: one start for all */
    unsigned ready = 0, dead = 0;
    int failed = 0;
    for (unsigned p = 0; p < opt.procs; p++) {
        ready_msg m;
        if (read_full(up[p][0], &m, sizeof m) != 0) {
            failed = 1;
            continue;
        }
        ready += m.ready;
        dead += m.dead;
    }
    uint64_t start = now_ns() + 100000000ull;
    for (unsigned p = 0; p < opt.procs; p++)
        if (write(down[p][1], &start, sizeof start) != (ssize_t)sizeof start)
            failed = 1;
    if (!failed) {
        printf("ready conns=%u ready=%u dead=%u\n", opt.conns, ready, dead);
        fflush(stdout);
        uint64_t ms = start + (uint64_t)(opt.warmup * 1e9);
        sleep_until(ms);
        printf("measure_start\n");
        fflush(stdout);
        sleep_until(ms + (uint64_t)(opt.duration * 1e9));
        printf("measure_end\n");
        fflush(stdout);
    }

    result total, r;
    memset(&total, 0, sizeof total);
    for (unsigned p = 0; p < opt.procs; p++) {
        if (read_full(up[p][0], &r, sizeof r) != 0)
            failed = 1;
        else
            merge(&total, &r);
        int st;
        waitpid(pids[p], &st, 0);
    }
    if (failed) {
        fprintf(stderr, "chat-load: a worker process failed\n");
        return 2;
    }
    if (has_room())
        room_losses(&total);
    print_summary(&total);
    return total.lost || total.dup || total.dead || total.failed ? 1 : 0;
}
