/*
 * Unit tests of common/cm_redis.c against a real redis-server, started here
 * from PATH on a free loopback port (skipped, saying so, without one):
 * commands, the subscription set and its confirmations, reconnects with
 * resubscription and the loss epoch, linger, and the command-only mode.
 */
#include <arpa/inet.h>
#include <event2/event.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cm_clock.h"
#include "cm_log.h"
#include "cm_redis.h"
#include "t.h"
#include "redis_t.h"

#define PASSWORD "s3cret"

static pid_t server = -1;
static int port;
static char dir[] = "/tmp/cm_redis_testXXXXXX";

static int ping(void)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    int ok = 0;
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "AUTH %s", PASSWORD);
        freeReplyObject(r);
        r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
        freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    return ok;
}

static int start_server(void)
{
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    server = fork();
    if (server == 0) {
        int null = open("/dev/null", 1);
        dup2(null, 1);
        dup2(null, 2);
        execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1", "--dir",
               dir, "--save", "", "--appendonly", "no", "--requirepass", PASSWORD, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        if (ping())
            return 0;
        int st;
        if (waitpid(server, &st, WNOHANG) == server) {
            server = -1;
            return -1;
        }
        usleep(50000);
    }
    return -1;
}

static void stop_server(void)
{
    if (server > 0) {
        kill(server, SIGKILL);
        waitpid(server, NULL, 0);
        server = -1;
    }
}

static int afters;


static void after_cb(void *arg)
{
    CHECK(arg == &afters);
    afters++;
}

static int order[8], norder;
typedef struct {
    int id, ok, done;
} sub_t;
static void subscribed_cb(cm_redis *r, int ok, void *arg)
{
    (void)r;
    sub_t *s = arg;
    s->ok = ok;
    s->done++;
    if (norder < 8)
        order[norder++] = s->id;
}

static void fence_cb(cm_redis *r, int ok, void *arg)
{
    (void)r;
    reply_t *x = arg;
    x->done++;
    x->integer = ok;
}

int main(void)
{
    if (system("command -v redis-server >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIPPED: redis-server is not in PATH; test_redis did not run\n");
        return 0;
    }
    if (!mkdtemp(dir))
        return 1;
    signal(SIGPIPE, SIG_IGN);
    cm_log_level = CM_LOG_ERROR; /* reconnect warnings are expected */
    port = free_port();
    if (start_server() != 0) {
        fprintf(stderr, "cannot start redis-server on port %d\n", port);
        return 1;
    }
    base = event_base_new();
    pr_redis_addr addr;
    char url[128];
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d", PASSWORD, port);
    CHECK_EQ(pr_redis_url_parse(url, &addr), 0);

    /* ---- a command-only link ---- */
    cm_redis *blocking = cm_redis_new(base, &addr, &(cm_redis_options){.name = "blocking"});
    CHECK_EQ(cm_redis_ready(blocking), 0);
    const char *get[] = {"GET", "k"};
    CHECK_EQ(cm_redis_command(blocking, reply_cb, NULL, 2, get, NULL), PR_ECLOSED);
    int ready = 0;
    for (uint64_t end = cm_now_ms() + 3000; !ready && cm_now_ms() < end; run_for(20))
        ready = cm_redis_ready(blocking);
    CHECK_EQ(ready, 1);
    CHECK_EQ(cm_redis_epoch(blocking), 1);
    CHECK_EQ(cm_redis_subscribe(blocking, PR_VIEW_LIT("c")), PR_ESTATE);
    sub_t none = {0, -1, 0};
    cm_redis_when_subscribed(blocking, PR_VIEW_LIT("c"), subscribed_cb, &none);
    CHECK_EQ(none.ok, 0);
    const char *set[] = {"SET", "k", "v"};
    reply_t x = cmd(blocking, 3, set); /* AUTH went first, so this is allowed */
    CHECK_EQ(x.type, REDIS_REPLY_STATUS);
    CHECK(!strcmp(x.str, "OK"));
    x = cmd(blocking, 2, get);
    CHECK(!strcmp(x.str, "v"));
    /* a fence on one Redis: a PING after what went before */
    reply_t fenced = {0};
    CHECK_EQ(cm_redis_fence(blocking, fence_cb, &fenced), 0);
    run_until(&fenced.done, 3000);
    CHECK_EQ(fenced.integer, 1);
    /* a blocking command on it; freeing the link answers it with NULL */
    reply_t blocked = {0};
    const char *blpop[] = {"BLPOP", "nothing", "0"};
    CHECK_EQ(cm_redis_command(blocking, reply_cb, &blocked, 3, blpop, NULL), 0);
    run_for(50);
    CHECK_EQ(blocked.done, 0);
    cm_redis_free(blocking);
    CHECK_EQ(blocked.done, 1);
    CHECK_EQ(blocked.type, -1);

    /* ---- a link with a subscribe connection ---- */
    cm_redis_options o = {.name = "full",
                          .on_message = on_message,
                          .on_ready = on_ready,
                          .arg = &readies,
                          .after_cb = after_cb,
                          .after_arg = &afters};
    cm_redis *r = cm_redis_new(base, &addr, &o);
    cm_redis_set_lost_cb(r, on_lost);
    CHECK_EQ(cm_redis_subscribe(r, PR_VIEW_LIT("c1")), 0); /* before the link is up */
    run_until(&readies, 3000);
    CHECK_EQ(readies, 1);
    CHECK_EQ(cm_redis_ready(r), 1);
    /* confirmations come in the order asked for */
    CHECK_EQ(cm_redis_subscribe(r, PR_VIEW_LIT("c2")), 0);
    sub_t s1 = {1, -1, 0}, s2 = {2, -1, 0}, s3 = {3, -1, 0}, s4 = {4, -1, 0};
    cm_redis_when_subscribed(r, PR_VIEW_LIT("c2"), subscribed_cb, &s1);
    cm_redis_when_subscribed(r, PR_VIEW_LIT("c2"), subscribed_cb, &s2);
    cm_redis_when_subscribed(r, PR_VIEW_LIT("nope"), subscribed_cb, &s4);
    CHECK_EQ(s4.ok, 0); /* not in the set: at once */
    CHECK_EQ(s1.ok, -1);
    run_until(&s2.done, 3000);
    CHECK_EQ(s1.ok, 1);
    CHECK_EQ(s2.ok, 1);
    CHECK_EQ(norder, 4); /* none, s4, then s1 and s2 in order */
    CHECK_EQ(order[2], 1);
    CHECK_EQ(order[3], 2);
    cm_redis_when_subscribed(r, PR_VIEW_LIT("c1"), subscribed_cb, &s3);
    run_until(&s3.done, 3000);
    CHECK_EQ(s3.ok, 1);

    int afters_before = afters;
    const char *pub[] = {"PUBLISH", "c1", "hello"};
    x = cmd(r, 3, pub);
    CHECK_EQ(x.integer, 1);
    run_until(&messages, 3000);
    CHECK_EQ(messages, 1);
    CHECK(!strcmp(last_channel, "c1"));
    CHECK(!strcmp(last_message, "hello"));
    CHECK(afters > afters_before);

    /* ref counts: two adds need two removes; then it lingers about a second */
    CHECK_EQ(cm_redis_subscribe(r, PR_VIEW_LIT("c2")), 0);
    cm_redis_unsubscribe(r, PR_VIEW_LIT("c2"));
    run_for(1500);
    const char *numsub[] = {"PUBSUB", "NUMSUB", "c2"};
    CHECK_EQ(cmd(r, 3, numsub).integer, 1);
    cm_redis_unsubscribe(r, PR_VIEW_LIT("c2"));
    run_for(300);
    CHECK_EQ(cmd(r, 3, numsub).integer, 1);     /* lingering */
    cm_redis_unsubscribe(r, PR_VIEW_LIT("c2")); /* once too often: ignored */
    run_for(2300);
    CHECK_EQ(cmd(r, 3, numsub).integer, 0);
    /* a quick leave and re-join keeps the subscription */
    cm_redis_unsubscribe(r, PR_VIEW_LIT("c1"));
    CHECK_EQ(cm_redis_subscribe(r, PR_VIEW_LIT("c1")), 0);
    run_for(2300);
    const char *numsub1[] = {"PUBSUB", "NUMSUB", "c1"};
    CHECK_EQ(cmd(r, 3, numsub1).integer, 1);

    /* ---- Redis goes away ---- */
    reply_t lost_cmd = {0};
    CHECK_EQ(cm_redis_command(r, reply_cb, &lost_cmd, 3, blpop, NULL), 0);
    run_for(50);
    stop_server();
    run_until(&losts, 3000);
    CHECK_EQ(losts, 1);
    CHECK_EQ(lost_cmd.done, 1); /* the pending command learns it: NULL */
    CHECK_EQ(lost_cmd.type, -1);
    run_for(100);
    CHECK_EQ(cm_redis_ready(r), 0);
    reply_t never = {0};
    CHECK_EQ(cm_redis_command(r, reply_cb, &never, 2, get, NULL), PR_ECLOSED);
    sub_t s5 = {5, -1, 0};
    cm_redis_when_subscribed(r, PR_VIEW_LIT("c1"), subscribed_cb, &s5);
    CHECK_EQ(s5.ok, 0); /* the subscribe connection is down: at once */
    run_for(700);       /* a few failed reconnects */

    /* ---- and comes back: reconnected, resubscribed, a new epoch ---- */
    CHECK_EQ(start_server(), 0);
    int readies_before = readies;
    for (uint64_t end = cm_now_ms() + 8000; readies == readies_before && cm_now_ms() < end;)
        run_for(50);
    CHECK_EQ(readies, readies_before + 1);
    CHECK_EQ(cm_redis_epoch(r), 2);
    sub_t s6 = {6, -1, 0};
    cm_redis_when_subscribed(r, PR_VIEW_LIT("c1"), subscribed_cb, &s6);
    run_until(&s6.done, 3000);
    CHECK_EQ(s6.ok, 1);
    const char *pub2[] = {"PUBLISH", "c1", "again"};
    CHECK_EQ(cmd(r, 3, pub2).integer, 1);
    int want = messages + 1;
    for (uint64_t end = cm_now_ms() + 3000; messages < want && cm_now_ms() < end;)
        run_for(20);
    CHECK(!strcmp(last_message, "again"));
    CHECK_EQ(never.done, 0); /* a refused command's callback never runs */

    /* freeing answers the waiters */
    CHECK_EQ(cm_redis_subscribe(r, PR_VIEW_LIT("c3")), 0);
    sub_t s7 = {7, -1, 0};
    cm_redis_when_subscribed(r, PR_VIEW_LIT("c3"), subscribed_cb, &s7);
    cm_redis_free(r);
    CHECK_EQ(s7.ok, 0);
    cm_redis_free(NULL);

    event_base_free(base);
    stop_server();
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    T_DONE();
}
