/*
 * redis_t.h - what the tests of the Redis link share: a free loopback port,
 * running the event loop, a reply recorder and a link's event counters.
 * (It includes t.h.)
 */
#ifndef REDIS_T_H
#define REDIS_T_H

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cm_clock.h"
#include "cm_redis.h"
#include "t.h"

static struct event_base *base;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* Runs the loop until *flag is set or ms pass; returns *flag. */
static int run_until(const int *flag, unsigned ms)
{
    uint64_t end = cm_now_ms() + ms;
    while (!*flag && cm_now_ms() < end) {
        struct timeval tv = {0, 10000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    return *flag;
}

static void run_for(unsigned ms)
{
    int never = 0;
    run_until(&never, ms);
}

/* ---- callbacks ---- */

typedef struct {
    int done;
    int type; /* -1: NULL reply */
    long long integer;
    char str[64];
} reply_t;

static void reply_cb(cm_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    reply_t *x = arg;
    x->done++;
    x->type = rep ? rep->type : -1;
    if (rep && rep->type == REDIS_REPLY_INTEGER)
        x->integer = rep->integer;
    if (rep && (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS))
        snprintf(x->str, sizeof x->str, "%s", rep->str);
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[1]->type == REDIS_REPLY_INTEGER)
        x->integer = rep->element[1]->integer; /* PUBSUB NUMSUB */
}

__attribute__((unused)) static reply_t cmd(cm_redis *r, int argc, const char **argv)
{
    reply_t x = {0};
    CHECK_EQ(cm_redis_command(r, reply_cb, &x, argc, argv, NULL), 0);
    run_until(&x.done, 3000);
    CHECK_EQ(x.done, 1);
    return x;
}

/* A link's events: counted, and the last message kept. */
static int readies, losts, messages;
static char last_channel[64], last_message[64];

__attribute__((unused)) static void on_ready(cm_redis *r, void *arg)
{
    (void)r;
    CHECK(arg == &readies);
    readies++;
}

__attribute__((unused)) static void on_lost(cm_redis *r, void *arg)
{
    (void)r;
    (void)arg;
    losts++;
}

__attribute__((unused)) static void on_message(cm_redis *r, pr_view channel, pr_view message,
                                               void *arg)
{
    (void)r;
    (void)arg;
    messages++;
    snprintf(last_channel, sizeof last_channel, "%.*s", (int)channel.len, channel.ptr);
    snprintf(last_message, sizeof last_message, "%.*s", (int)message.len, message.ptr);
}

#endif
