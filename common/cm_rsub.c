/*
 * cm_rsub.c - the subscribe connection: RESP over a libevent bufferevent,
 * parsed with hiredis' reply reader, so that pushes of any kind (message,
 * smessage, sunsubscribe...) reach the owner in order.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "cm_backoff.h"
#include "cm_log.h"
#include "cm_redis_int.h"

struct cm_rsub {
    struct event_base *base;
    char name[32];
    char host[128];
    int port;
    char password[256];
    int db;
    cm_rsub_cbs cbs;
    void *arg;
    struct bufferevent *bev; /* NULL while down */
    redisReader *reader;
    int up;
    unsigned skip; /* replies of AUTH and SELECT still to come */
    unsigned failures;
    unsigned seed;
    struct event *retry;
};

static void rsub_connect(cm_rsub *s);

static void keepalive(evutil_socket_t fd)
{
    int on = 1, idle = 15, intvl = 5, cnt = 3;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

/* Drops the connection; on_down runs and a retry is armed. */
static void rsub_drop(cm_rsub *s, const char *why)
{
    int was_up = s->up;
    if (s->bev) {
        bufferevent_free(s->bev);
        s->bev = NULL;
    }
    if (s->reader)
        redisReaderFree(s->reader);
    s->reader = NULL;
    s->up = 0;
    if (was_up || s->failures == 0)
        CM_DEBUG("event=redis_sub_down link=%s host=%s port=%d why=\"%s\"", s->name, s->host,
                 s->port, why);
    cm_backoff_arm(s->retry, &s->failures, &s->seed);
    s->cbs.on_down(s, was_up, s->arg);
}

/* Writes a command whether or not the connection is up yet (AUTH and
 * SELECT go out before). */
static int rsub_write(cm_rsub *s, int argc, const char *const *argv, const size_t *lens)
{
    char *cmd = NULL;
    int n = redisFormatCommandArgv(&cmd, argc, (const char **)argv, lens);
    if (n < 0)
        return PR_EINVAL;
    bufferevent_write(s->bev, cmd, (size_t)n);
    redisFreeCommand(cmd);
    return 0;
}

/* Connected, and AUTH and SELECT (if any) accepted: only now is the
 * connection up, so a wrong password never makes the link ready, and the
 * backoff keeps growing while Redis refuses it. */
static void rsub_ready(cm_rsub *s)
{
    s->failures = 0;
    s->up = 1;
    s->cbs.on_up(s, s->arg);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    cm_rsub *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n;
    while ((n = evbuffer_get_length(in)) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        if (redisReaderFeed(s->reader, v.iov_base, v.iov_len) != REDIS_OK) {
            rsub_drop(s, "protocol error");
            return;
        }
        evbuffer_drain(in, v.iov_len);
    }
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(s->reader, &reply) != REDIS_OK) {
            rsub_drop(s, "protocol error");
            return;
        }
        if (!reply)
            return;
        redisReply *rep = reply;
        if (s->skip > 0) {
            s->skip--;
            if (rep->type == REDIS_REPLY_ERROR) {
                if (s->failures == 0)
                    CM_WARN("event=redis_auth_failed link=%s host=%s port=%d err=\"%s\"", s->name,
                            s->host, s->port, rep->str);
                freeReplyObject(rep);
                rsub_drop(s, "AUTH or SELECT refused");
                return;
            }
            freeReplyObject(rep);
            if (s->skip == 0)
                rsub_ready(s);
            continue;
        }
        /* the owner neither frees nor drops the connection from here */
        s->cbs.on_reply(s, rep, s->arg);
        freeReplyObject(rep);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    cm_rsub *s = arg;
    if (what & BEV_EVENT_CONNECTED) {
        bufferevent_set_timeouts(bev, NULL, NULL);
        keepalive(bufferevent_getfd(bev));
        s->skip = 0;
        if (s->password[0]) {
            const char *argv[] = {"AUTH", s->password};
            rsub_write(s, 2, argv, NULL);
            s->skip++;
        }
        if (s->db) {
            char db[16];
            snprintf(db, sizeof db, "%d", s->db);
            const char *argv[] = {"SELECT", db};
            rsub_write(s, 2, argv, NULL);
            s->skip++;
        }
        if (s->skip == 0)
            rsub_ready(s);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        if (!s->up && s->failures == 0)
            CM_WARN("event=redis_connect_failed link=%s conn=sub host=%s port=%d", s->name, s->host,
                    s->port);
        rsub_drop(s, what & BEV_EVENT_EOF       ? "closed"
                     : what & BEV_EVENT_TIMEOUT ? "timeout"
                                                : "error");
    }
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rsub_connect(arg);
}

static void rsub_connect(cm_rsub *s)
{
    s->bev = bufferevent_socket_new(s->base, -1, BEV_OPT_CLOSE_ON_FREE);
    s->reader = redisReaderCreate();
    bufferevent_setcb(s->bev, read_cb, NULL, event_cb, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    /* the connect waits for writability: a dead host's address answers nothing */
    struct timeval tv = {3, 0};
    bufferevent_set_timeouts(s->bev, NULL, &tv);
    /* resolved here, as hiredis does for the command connections */
    if (bufferevent_socket_connect_hostname(s->bev, NULL, AF_UNSPEC, s->host, s->port) != 0)
        rsub_drop(s, "connect failed");
}

cm_rsub *cm__rsub_new(struct event_base *base, const char *name, const char *host, int port,
                      const char *password, int db, const cm_rsub_cbs *cbs, void *arg)
{
    cm_rsub *s = pr_calloc(1, sizeof *s);
    s->base = base;
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->host, sizeof s->host, "%s", host);
    s->port = port;
    snprintf(s->password, sizeof s->password, "%s", password ? password : "");
    s->db = db;
    s->cbs = *cbs;
    s->arg = arg;
    s->seed = cm_backoff_seed(s);
    s->retry = evtimer_new(base, retry_cb, s);
    rsub_connect(s);
    return s;
}

void cm__rsub_free(cm_rsub *s)
{
    if (!s)
        return;
    event_free(s->retry);
    if (s->bev)
        bufferevent_free(s->bev);
    if (s->reader)
        redisReaderFree(s->reader);
    pr_free(s);
}

int cm__rsub_up(const cm_rsub *s)
{
    return s->up;
}

int cm__rsub_send(cm_rsub *s, int argc, const char *const *argv, const size_t *lens)
{
    return s->up ? rsub_write(s, argc, argv, lens) : PR_ECLOSED;
}
