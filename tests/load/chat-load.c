/*
 * chat-load - a load generator for the chat's Socket.IO API.
 *
 * It speaks Engine.IO v4 / Socket.IO v5 over WebSocket itself (no client
 * library), so one process holds thousands of connections. Users come in
 * pairs (user2k, user2k+1); each joins the direct room of its pair
 * (joinChat), then the senders emit sendMessage with an ack at a fixed total
 * rate (open loop: the schedule does not wait for answers). The text of each
 * message is its send time, so receivers measure delivery latency; its
 * clientMsgId is "c<conn>-<n>", so each receiver checks that it gets the
 * messages of its peer exactly once and in order.
 *
 * --procs P forks P processes (the fd limit is per process); --source lists
 * local addresses to bind, round robin (each address pair has its own
 * ephemeral ports). The parent merges the children's counts and histograms
 * and prints one summary line of key=value pairs (and JSON with --json).
 *
 * Exit status: 0 when every acked message was received once by its peer and
 * nothing was duplicated; 1 otherwise; 2 for bad arguments or setup failure.
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
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jwt.h"
#include "pr.h"

#define MAX_ADDRS 16
#define RING 4096 /* outstanding acks per connection */

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

typedef struct {
    struct sockaddr_in target[MAX_ADDRS];
    unsigned ntarget;
    struct in_addr source[MAX_ADDRS];
    unsigned nsource;
    unsigned conns, procs;
    double rate;          /* messages per second, all processes */
    double warmup, duration;
    const char *secret;
    const char *path;
    const char *prefix; /* user id prefix */
    unsigned text_pad;
    int json;
} options;

static options opt = {
    .conns = 100,
    .procs = 1,
    .rate = 1000,
    .warmup = 1,
    .duration = 5,
    .path = "/socket.io/",
    .prefix = "load",
};

/* ---- connections ---- */

enum { C_UPGRADE, C_EIO, C_SIO, C_JOIN, C_READY, C_DEAD };

typedef struct conn {
    struct bufferevent *bev;
    unsigned idx; /* global index */
    int state;
    char room[160];
    int64_t next_ack;
    uint64_t sent_ns[RING]; /* by ack id % RING; 0 = free */
    uint64_t sent, acked, errors;
    uint64_t last_from_peer; /* highest n received from the peer */
    uint64_t dup, gap;
} conn;

typedef struct {
    struct event_base *base;
    conn *c;
    unsigned first, n; /* this process's conns: [first, first+n) */
    unsigned ready, dead;
    double credit;
    uint64_t phase_start_ns, measure_start_ns, measure_end_ns, stop_ns;
    int measuring, sending;
    hist ack, deliver;
    uint64_t sent_measured, acked_measured, recv_measured, err_acks, overflow;
    struct event *tick;
    pr_buf scratch;
} proc;

static proc P;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

static void conn_dead(conn *c, const char *why)
{
    if (c->state == C_DEAD)
        return;
    if (P.dead < 5)
        fprintf(stderr, "chat-load: connection %u: %s\n", c->idx, why);
    c->state = C_DEAD;
    P.dead++;
    bufferevent_free(c->bev);
    c->bev = NULL;
}

static void send_join(conn *c)
{
    char peer[64], msg[256];
    user_of(c->idx ^ 1, peer, sizeof peer);
    int n = snprintf(msg, sizeof msg, "420[\"joinChat\",{\"targetUserId\":\"%s\"}]", peer);
    c->next_ack = 1;
    ws_send(c, msg, (size_t)n);
    c->state = C_JOIN;
}

static void send_message(conn *c, uint64_t t)
{
    int64_t id = c->next_ack++;
    if (c->sent_ns[id % RING]) {
        P.overflow++; /* too many unanswered: count it, don't send */
        c->next_ack--;
        return;
    }
    c->sent_ns[id % RING] = t;
    c->sent++;
    if (P.measuring)
        P.sent_measured++;
    pr_buf *b = &P.scratch;
    pr_buf_reset(b);
    pr_buf_appendf(b, "42%" PRId64 "[\"sendMessage\",{\"roomId\":\"%s\",\"text\":\"%" PRIu64,
                   id, c->room, t);
    for (unsigned i = 0; i < opt.text_pad; i++)
        pr_buf_append_byte(b, i == 0 ? ' ' : 'x');
    pr_buf_appendf(b, "\",\"clientMsgId\":\"c%u-%" PRIu64 "\"}]", c->idx, c->sent);
    ws_send(c, b->ptr, b->len);
}

/* Extracts the string value of "key":"..." from json text (no escapes in
 * what we look for). */
static int json_str(const char *p, size_t len, const char *key, const char **v, size_t *vlen)
{
    char pat[64];
    int n = snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *s = memmem(p, len, pat, (size_t)n);
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
        if (json_str(end, rest, "roomId", &room, &rl) != 0 || rl >= sizeof c->room) {
            conn_dead(c, "joinChat failed");
            return;
        }
        memcpy(c->room, room, rl);
        c->room[rl] = '\0';
        c->state = C_READY;
        P.ready++;
        return;
    }
    uint64_t t = c->sent_ns[id % RING];
    if (!t)
        return;
    c->sent_ns[id % RING] = 0;
    if (memmem(end, rest, "\"error\"", 7)) {
        if (P.err_acks == 0)
            fprintf(stderr, "chat-load: first error ack: %.*s\n", (int)(len < 200 ? len : 200), p);
        c->errors++;
        P.err_acks++;
        return;
    }
    c->acked++;
    if (t >= P.measure_start_ns && t < P.measure_end_ns) {
        P.acked_measured++;
        hist_add(&P.ack, (now_ns() - t) / 1000);
    }
}

static void on_event(conn *c, const char *p, size_t len)
{
    if (len < 20 || memcmp(p, "42[\"messageReceived\"", 20) != 0)
        return;
    const char *cm, *tx;
    size_t cml, txl;
    if (json_str(p, len, "clientMsgId", &cm, &cml) != 0 || json_str(p, len, "text", &tx, &txl) != 0)
        return;
    /* c<conn>-<n> */
    char buf[48];
    if (cml >= sizeof buf)
        return;
    memcpy(buf, cm, cml);
    buf[cml] = '\0';
    unsigned from;
    uint64_t n;
    if (sscanf(buf, "c%u-%" SCNu64, &from, &n) != 2 || from == c->idx)
        return; /* our own echo */
    if (n <= c->last_from_peer) {
        c->dup++;
        return;
    }
    if (n != c->last_from_peer + 1)
        c->gap += n - c->last_from_peer - 1;
    c->last_from_peer = n;
    uint64_t t = strtoull(tx, NULL, 10);
    if (t >= P.measure_start_ns && t < P.measure_end_ns) {
        P.recv_measured++;
        hist_add(&P.deliver, (now_ns() - t) / 1000);
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
            send_join(c);
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

/* Parses server frames (unmasked, unfragmented text frames from our
 * gateway; control frames are skipped). */
static void read_frames(conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
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
            evbuffer_drain(in, len);
            conn_dead(c, "websocket close");
            return;
        }
        evbuffer_drain(in, len);
        if (c->state == C_DEAD)
            return;
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

static int conn_open(conn *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (opt.nsource) {
        struct sockaddr_in src = {.sin_family = AF_INET,
                                  .sin_addr = opt.source[c->idx % opt.nsource]};
        if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0) {
            close(fd);
            return -1;
        }
    }
    c->bev = bufferevent_socket_new(P.base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(c->bev, on_read, NULL, on_bev_event, c);
    bufferevent_enable(c->bev, EV_READ);
    const struct sockaddr_in *t = &opt.target[c->idx % opt.ntarget];
    if (bufferevent_socket_connect(c->bev, (const struct sockaddr *)t, sizeof *t) != 0) {
        conn_dead(c, "connect failed");
        return -1;
    }
    return 0;
}

/* Every millisecond: open more connections while connecting, then send the
 * scheduled messages (senders in turn). */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    uint64_t t = now_ns();
    if (!P.sending) {
        if (P.ready + P.dead >= P.n) {
            P.sending = 1;
            P.phase_start_ns = t;
            P.measure_start_ns = t + (uint64_t)(opt.warmup * 1e9);
            P.measure_end_ns = P.measure_start_ns + (uint64_t)(opt.duration * 1e9);
            P.stop_ns = P.measure_end_ns + 3000000000ull; /* answers still in flight */
        } else if (t - P.phase_start_ns > 60000000000ull) {
            fprintf(stderr, "chat-load: only %u of %u connections ready after 60 s\n", P.ready,
                    P.n);
            event_base_loopbreak(P.base);
        }
        return;
    }
    P.measuring = t >= P.measure_start_ns && t < P.measure_end_ns;
    if (t >= P.stop_ns) {
        event_base_loopbreak(P.base);
        return;
    }
    if (t >= P.measure_end_ns)
        return;
    static uint64_t last;
    static unsigned next;
    if (last == 0)
        last = t;
    P.credit += (double)(t - last) / 1e9 * opt.rate / opt.procs;
    last = t;
    while (P.credit >= 1.0) {
        P.credit -= 1.0;
        for (unsigned tries = 0; tries < P.n; tries++) {
            conn *c = &P.c[next++ % P.n];
            if (c->state == C_READY) {
                send_message(c, t);
                break;
            }
        }
    }
}

/* ---- results ---- */

typedef struct {
    uint64_t sent, acked, errors, recv, dup, gap, lost, overflow, dead;
    uint64_t sent_m, acked_m, recv_m;
    hist ack, deliver;
} result;

static void collect(result *r)
{
    memset(r, 0, sizeof *r);
    for (unsigned i = 0; i < P.n; i++) {
        conn *c = &P.c[i];
        conn *peer = &P.c[i ^ 1];
        r->sent += c->sent;
        r->acked += c->acked;
        r->errors += c->errors;
        r->dup += c->dup;
        r->gap += c->gap;
        r->recv += c->last_from_peer;
        /* every message the peer had acked must have reached c */
        if (c->state != C_DEAD && peer->acked > c->last_from_peer)
            r->lost += peer->acked - c->last_from_peer;
    }
    r->overflow = P.overflow;
    r->dead = P.dead;
    r->sent_m = P.sent_measured;
    r->acked_m = P.acked_measured;
    r->recv_m = P.recv_measured;
    r->ack = P.ack;
    r->deliver = P.deliver;
}

static void merge(result *a, const result *b)
{
    a->sent += b->sent;
    a->acked += b->acked;
    a->errors += b->errors;
    a->recv += b->recv;
    a->dup += b->dup;
    a->gap += b->gap;
    a->lost += b->lost;
    a->overflow += b->overflow;
    a->dead += b->dead;
    a->sent_m += b->sent_m;
    a->acked_m += b->acked_m;
    a->recv_m += b->recv_m;
    for (unsigned i = 0; i < HBUCKETS; i++) {
        a->ack.n[i] += b->ack.n[i];
        a->deliver.n[i] += b->deliver.n[i];
    }
    a->ack.count += b->ack.count;
    a->deliver.count += b->deliver.count;
    if (b->ack.max_us > a->ack.max_us)
        a->ack.max_us = b->ack.max_us;
    if (b->deliver.max_us > a->deliver.max_us)
        a->deliver.max_us = b->deliver.max_us;
}

static int run_child(unsigned first, unsigned n, int out_fd)
{
    P.base = event_base_new();
    P.first = first;
    P.n = n;
    P.c = calloc(n, sizeof *P.c);
    pr_buf_init(&P.scratch, 1 << 20);
    P.phase_start_ns = now_ns();
    for (unsigned i = 0; i < n; i++) {
        P.c[i].idx = first + i;
        if (conn_open(&P.c[i]) != 0)
            P.dead++;
    }
    P.tick = event_new(P.base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval ms = {0, 1000};
    event_add(P.tick, &ms);
    event_base_dispatch(P.base);
    result r;
    collect(&r);
    ssize_t w = write(out_fd, &r, sizeof r);
    return w == (ssize_t)sizeof r ? 0 : 2;
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

static void usage(void)
{
    fprintf(stderr,
            "usage: chat-load --target HOST:PORT[,...] --secret JWT_SECRET [options]\n"
            "  --conns N        connections in all (even; pairs of users)   [100]\n"
            "  --procs P        processes                                    [1]\n"
            "  --rate R         messages per second in all                   [1000]\n"
            "  --warmup S       seconds sent before measuring                [1]\n"
            "  --duration S     seconds measured                             [5]\n"
            "  --source A[,...] local addresses to bind, round robin\n"
            "  --prefix P       user ids are P0, P1, ...                     [load]\n"
            "  --pad N          bytes added to each text                     [0]\n"
            "  --path P         Socket.IO path                               [/socket.io/]\n"
            "  --json           also print the summary as JSON\n");
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
        } else if (!v) {
            usage();
            return 2;
        } else if (!strcmp(a, "--target"))
            targets = v;
        else if (!strcmp(a, "--source"))
            sources = v;
        else if (!strcmp(a, "--secret"))
            opt.secret = v;
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
            usage();
            return 2;
        }
        i += used;
    }
    if (!targets || !opt.secret || opt.conns < 2 || opt.conns % 2 || opt.procs < 1 ||
        opt.conns / opt.procs < 2 || opt.rate <= 0 || opt.duration <= 0 || opt.warmup < 0 ||
        parse_addrs(targets, 1, opt.target, NULL, &opt.ntarget) != 0 ||
        (sources && parse_addrs(sources, 0, NULL, opt.source, &opt.nsource) != 0)) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    int fds[64][2];
    pid_t pids[64];
    if (opt.procs > 64) {
        usage();
        return 2;
    }
    /* pairs stay within one process, so each checks its own deliveries */
    unsigned pairs = opt.conns / 2, first = 0;
    for (unsigned p = 0; p < opt.procs; p++) {
        unsigned n = 2 * (pairs / opt.procs + (p < pairs % opt.procs));
        if (pipe(fds[p]) != 0)
            return 2;
        pids[p] = fork();
        if (pids[p] == 0) {
            close(fds[p][0]);
            _exit(run_child(first, n, fds[p][1]));
        }
        close(fds[p][1]);
        first += n;
    }
    result total, r;
    memset(&total, 0, sizeof total);
    int failed = 0;
    for (unsigned p = 0; p < opt.procs; p++) {
        size_t got = 0;
        while (got < sizeof r) {
            ssize_t k = read(fds[p][0], (char *)&r + got, sizeof r - got);
            if (k <= 0)
                break;
            got += (size_t)k;
        }
        int st;
        waitpid(pids[p], &st, 0);
        if (got != sizeof r) {
            failed = 1;
            continue;
        }
        merge(&total, &r);
    }
    if (failed) {
        fprintf(stderr, "chat-load: a worker process failed\n");
        return 2;
    }
    double secs = opt.duration;
    printf("conns=%u procs=%u rate=%.0f sent=%" PRIu64 " acked=%" PRIu64 " errors=%" PRIu64
           " received=%" PRIu64 " lost=%" PRIu64 " dup=%" PRIu64 " gap=%" PRIu64
           " dead=%" PRIu64 " overflow=%" PRIu64 " acked_per_s=%.0f"
           " ack_p50_ms=%.3f ack_p99_ms=%.3f ack_p999_ms=%.3f ack_max_ms=%.3f"
           " deliver_p50_ms=%.3f deliver_p99_ms=%.3f deliver_p999_ms=%.3f\n",
           opt.conns, opt.procs, opt.rate, total.sent, total.acked, total.errors, total.recv,
           total.lost, total.dup, total.gap, total.dead, total.overflow, total.acked_m / secs,
           hist_pct(&total.ack, 50), hist_pct(&total.ack, 99), hist_pct(&total.ack, 99.9),
           total.ack.max_us / 1000.0, hist_pct(&total.deliver, 50),
           hist_pct(&total.deliver, 99), hist_pct(&total.deliver, 99.9));
    if (opt.json)
        printf("{\"sent\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"dup\":%" PRIu64
               ",\"acked_per_s\":%.0f,\"ack_p50_ms\":%.3f,\"ack_p99_ms\":%.3f,"
               "\"ack_p999_ms\":%.3f,\"deliver_p99_ms\":%.3f}\n",
               total.sent, total.acked, total.lost, total.dup, total.acked_m / secs,
               hist_pct(&total.ack, 50), hist_pct(&total.ack, 99), hist_pct(&total.ack, 99.9),
               hist_pct(&total.deliver, 99));
    return total.lost || total.dup || total.dead ? 1 : 0;
}
