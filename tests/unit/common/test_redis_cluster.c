/*
 * Unit tests of common/cm_redis.c on a real Redis Cluster of three masters
 * and three replicas, started here from PATH on free loopback ports
 * (skipped, saying so, without redis-server and redis-cli): routing by
 * slot from one seed, sharded pub/sub, MOVED and ASK during a slot's
 * migration with the subscription following it, blocking commands side by
 * side on a command-only link, and a master killed (its replica takes over,
 * the link comes back by itself).
 */
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "cm_log.h"
#include "cm_redis_int.h"
#include "redis_t.h"
#include "t.h"

#define NODES 6

static char dir[] = "/tmp/cm_cluster_testXXXXXX";
static pid_t pids[NODES];
static int ports[NODES];

static redisContext *sync_to(int port)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* A command on node i; the reply is the caller's to free (NULL if down). */
static redisReply *on_node(int i, const char *fmt, ...)
{
    redisContext *c = sync_to(ports[i]);
    if (!c)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

static int start_node(int i)
{
    char port[16], bus[16], conf[64];
    snprintf(port, sizeof port, "%d", ports[i]);
    snprintf(bus, sizeof bus, "%d", free_port());
    snprintf(conf, sizeof conf, "nodes-%d.conf", ports[i]);
    pids[i] = fork();
    if (pids[i] == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execlp("redis-server", "redis-server", "--port", port, "--cluster-port", bus, "--bind",
               "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no", "--cluster-enabled",
               "yes", "--cluster-config-file", conf, "--cluster-node-timeout", "1000",
               /* replicas in sync at once, and allowed to take over */
               "--repl-diskless-sync-delay", "0", "--cluster-replica-validity-factor", "0",
               (char *)NULL);
        _exit(127);
    }
    for (int k = 0; k < 100; k++) {
        redisReply *r = on_node(i, "PING");
        int ok = r && r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        if (ok)
            return 0;
        usleep(50000);
    }
    return -1;
}

static void stop_nodes(void)
{
    for (int i = 0; i < NODES; i++)
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
            pids[i] = 0;
        }
}

/* The cluster is ok on node i, and a replica there has its data. */
static int state_ok(int i)
{
    redisReply *r = on_node(i, "CLUSTER INFO");
    int ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok");
    freeReplyObject(r);
    r = on_node(i, "INFO replication");
    ok = ok && r && r->type == REDIS_REPLY_STRING &&
         (strstr(r->str, "role:master") || strstr(r->str, "master_link_status:up"));
    freeReplyObject(r);
    return ok;
}

/* The node id of node i, and the index of the master serving slot. */
static void node_id(int i, char *out, size_t n)
{
    redisReply *r = on_node(i, "CLUSTER MYID");
    snprintf(out, n, "%s", r && r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
}

static int master_of(unsigned slot)
{
    for (int i = 0; i < NODES; i++) {
        if (pids[i] <= 0)
            continue;
        redisReply *r = on_node(i, "CLUSTER SLOTS");
        int found = -1;
        for (size_t k = 0; r && r->type == REDIS_REPLY_ARRAY && k < r->elements; k++) {
            redisReply *e = r->element[k];
            if ((unsigned)e->element[0]->integer <= slot &&
                slot <= (unsigned)e->element[1]->integer)
                for (int j = 0; j < NODES; j++)
                    if (ports[j] == e->element[2]->element[1]->integer)
                        found = j;
        }
        freeReplyObject(r);
        if (found >= 0)
            return found;
    }
    return -1;
}

/* ---- callbacks ---- */

typedef struct {
    int ok, done;
} sub_t;

static void subscribed_cb(cm_redis *r, int ok, void *arg)
{
    (void)r;
    sub_t *s = arg;
    s->ok = ok;
    s->done = 1;
}

/* Waits until channel's subscription is confirmed (asking again while the
 * link answers "not now"). */
static int confirmed(cm_redis *r, const char *channel, unsigned ms)
{
    uint64_t end = cm_now_ms() + ms;
    while (cm_now_ms() < end) {
        sub_t s = {0, 0};
        cm_redis_when_subscribed(r, pr_view_make(channel, strlen(channel)), subscribed_cb, &s);
        run_until(&s.done, 2000);
        if (s.ok)
            return 1;
        run_for(100);
    }
    return 0;
}

/* PUBLISH on the link; returns how many subscribers got it (-1: error). */
static long long publish(cm_redis *r, const char *channel, const char *msg)
{
    const char *argv[] = {"PUBLISH", channel, msg};
    reply_t x = {0};
    if (cm_redis_command(r, reply_cb, &x, 3, argv, NULL) != 0)
        return -1;
    run_until(&x.done, 3000);
    return x.type == REDIS_REPLY_INTEGER ? x.integer : -1;
}

static int wait_message(const char *msg, unsigned ms)
{
    uint64_t end = cm_now_ms() + ms;
    while (cm_now_ms() < end && strcmp(last_message, msg) != 0)
        run_for(10);
    return !strcmp(last_message, msg);
}

static int wait_ready(cm_redis *r, unsigned ms)
{
    uint64_t end = cm_now_ms() + ms;
    while (cm_now_ms() < end && !cm_redis_ready(r))
        run_for(20);
    return cm_redis_ready(r);
}

/* SET then GET of key through the link: 1 when GET returns value. */
static int set_get(cm_redis *r, const char *key, const char *value)
{
    const char *set[] = {"SET", key, value}, *get[] = {"GET", key};
    reply_t a = {0}, b = {0};
    if (cm_redis_command(r, reply_cb, &a, 3, set, NULL) != 0 ||
        cm_redis_command(r, reply_cb, &b, 2, get, NULL) != 0)
        return 0;
    run_until(&b.done, 5000);
    return a.type == REDIS_REPLY_STATUS && b.type == REDIS_REPLY_STRING && !strcmp(b.str, value);
}

static void test_routing(cm_redis *r)
{
    /* keys whose slots cover all three masters */
    int seen[NODES] = {0}, masters = 0;
    for (int i = 0; i < 40; i++) {
        char key[32], val[32];
        snprintf(key, sizeof key, "{k%d}:v", i);
        snprintf(val, sizeof val, "value-%d", i);
        CHECK(set_get(r, key, val));
        int m = master_of(cm__rslot_of(pr_view_make(key, strlen(key))));
        if (m >= 0 && !seen[m]++)
            masters++;
    }
    CHECK_EQ(masters, 3);
    /* the value is on the master of its slot, so the routing was real */
    int m = master_of(cm__rslot_of(PR_VIEW_LIT("{k7}:v")));
    redisReply *x = on_node(m, "GET {k7}:v");
    CHECK(x && x->type == REDIS_REPLY_STRING && !strcmp(x->str, "value-7"));
    freeReplyObject(x);
    /* a stream read names its key after STREAMS; a script its first key */
    const char *xadd[] = {"XADD", "{i:3}:in", "*", "f", "v"};
    reply_t a = {0};
    CHECK_EQ(cm_redis_command(r, reply_cb, &a, 5, xadd, NULL), 0);
    const char *xread[] = {"XREAD", "COUNT", "1", "STREAMS", "{i:3}:in", "0"};
    reply_t b = {0};
    CHECK_EQ(cm_redis_command(r, reply_cb, &b, 6, xread, NULL), 0);
    const char *eval[] = {"EVAL", "return redis.call('get', KEYS[1])", "1", "{k9}:v"};
    reply_t c = {0};
    CHECK_EQ(cm_redis_command(r, reply_cb, &c, 4, eval, NULL), 0);
    run_until(&c.done, 3000);
    CHECK_EQ(b.type, REDIS_REPLY_ARRAY);
    CHECK(!strcmp(c.str, "value-9"));
    /* SCRIPT LOAD reaches every master: EVALSHA works on all of them */
    const char *load[] = {"SCRIPT", "LOAD", "return 7"};
    reply_t d = {0};
    CHECK_EQ(cm_redis_command(r, reply_cb, &d, 3, load, NULL), 0);
    run_until(&d.done, 3000);
    CHECK_EQ(d.type, REDIS_REPLY_STRING);
    run_for(100);
    int loaded = 0;
    for (int i = 0; i < NODES; i++) {
        redisReply *e = on_node(i, "SCRIPT EXISTS %s", d.str);
        loaded += e && e->type == REDIS_REPLY_ARRAY && e->element[0]->integer == 1;
        freeReplyObject(e);
    }
    CHECK(loaded >= 3);
}

typedef struct {
    int ok, done;
} fence_t;

static void fence_cb(cm_redis *r, int ok, void *arg)
{
    (void)r;
    fence_t *f = arg;
    f->ok = ok;
    f->done++;
}

/* A fence waits for every command before it, on every master. */
static void test_fence(cm_redis *r)
{
    fence_t none = {0, 0};
    CHECK_EQ(cm_redis_fence(r, fence_cb, &none), 0);
    CHECK_EQ(none.done, 1); /* nothing in flight */
    CHECK_EQ(none.ok, 1);
    for (int i = 0; i < 30; i++) {
        char key[32];
        snprintf(key, sizeof key, "{f%d}:x", i);
        const char *set[] = {"SET", key, "fenced"};
        CHECK_EQ(cm_redis_command(r, NULL, NULL, 3, set, NULL), 0);
    }
    fence_t f = {0, 0};
    CHECK_EQ(cm_redis_fence(r, fence_cb, &f), 0);
    CHECK_EQ(f.done, 0);
    run_until(&f.done, 3000);
    CHECK_EQ(f.ok, 1);
    for (int i = 0; i < 30; i++) { /* every write was done when it ran */
        redisReply *x = NULL;
        char key[32];
        snprintf(key, sizeof key, "{f%d}:x", i);
        for (int n = 0; n < NODES && !(x && x->type == REDIS_REPLY_STRING); n++) {
            freeReplyObject(x);
            x = on_node(n, "GET %s", key);
        }
        CHECK(x && x->type == REDIS_REPLY_STRING && !strcmp(x->str, "fenced"));
        freeReplyObject(x);
    }
    /* one failed command before it: not ok; a fence after that one: ok */
    const char *bad[] = {"INCR", "{f1}:x"};
    CHECK_EQ(cm_redis_command(r, NULL, NULL, 2, bad, NULL), 0);
    fence_t g = {0, 0}, h = {0, 0};
    CHECK_EQ(cm_redis_fence(r, fence_cb, &g), 0);
    run_until(&g.done, 3000);
    CHECK_EQ(g.ok, 0);
    CHECK_EQ(cm_redis_fence(r, fence_cb, &h), 0);
    run_until(&h.done, 3000);
    CHECK_EQ(h.ok, 1);
}

static void test_pubsub(cm_redis *r)
{
    const char *chans[] = {"room:{a}", "room:{b}", "room:{c}", "room:{d}", "chat:all"};
    for (int i = 0; i < 5; i++)
        CHECK_EQ(cm_redis_subscribe(r, pr_view_make(chans[i], strlen(chans[i]))), 0);
    for (int i = 0; i < 5; i++) {
        CHECK(confirmed(r, chans[i], 3000));
        char msg[32];
        snprintf(msg, sizeof msg, "hello-%d", i);
        CHECK_EQ(publish(r, chans[i], msg), 1); /* SPUBLISH: one subscriber, us */
        CHECK(wait_message(msg, 2000));
        CHECK(!strcmp(last_channel, chans[i]));
    }
    /* a classic SUBSCRIBE does not see sharded messages: they went as SPUBLISH */
    int m = master_of(cm__rslot_of(PR_VIEW_LIT("room:{a}")));
    redisReply *x = on_node(m, "PUBSUB SHARDNUMSUB room:{a}");
    CHECK(x && x->type == REDIS_REPLY_ARRAY && x->elements == 2 && x->element[1]->integer == 1);
    freeReplyObject(x);
}

/* Moves slot from its master to another one, with the ASK window tested
 * half way: the key has moved, the slot not yet. */
static void test_migration(cm_redis *r)
{
    const char *key = "{a}:moving", *chan = "room:{a}";
    unsigned slot = cm__rslot_of(PR_VIEW_LIT("{a}"));
    CHECK(set_get(r, key, "before"));
    int src = master_of(slot), dst = -1;
    for (int i = 0; i < NODES && dst < 0; i++) {
        redisReply *x = on_node(i, "ROLE");
        if (i != src && x && x->type == REDIS_REPLY_ARRAY && !strcmp(x->element[0]->str, "master"))
            dst = i;
        freeReplyObject(x);
    }
    CHECK(src >= 0 && dst >= 0);
    char src_id[64], dst_id[64];
    node_id(src, src_id, sizeof src_id);
    node_id(dst, dst_id, sizeof dst_id);
    freeReplyObject(on_node(dst, "CLUSTER SETSLOT %u IMPORTING %s", slot, src_id));
    freeReplyObject(on_node(src, "CLUSTER SETSLOT %u MIGRATING %s", slot, dst_id));
    redisReply *x = on_node(src, "MIGRATE 127.0.0.1 %d %s 0 5000", ports[dst], key);
    CHECK(x && x->type == REDIS_REPLY_STATUS);
    freeReplyObject(x);
    /* the source answers ASK for the key it no longer has */
    const char *get[] = {"GET", key};
    reply_t a = {0};
    CHECK_EQ(cm_redis_command(r, reply_cb, &a, 2, get, NULL), 0);
    run_until(&a.done, 3000);
    CHECK(a.type == REDIS_REPLY_STRING && !strcmp(a.str, "before"));
    int lost_before = losts;
    for (int i = 0; i < NODES; i++)
        freeReplyObject(on_node(i, "CLUSTER SETSLOT %u NODE %s", slot, dst_id));
    /* MOVED now, and the map follows */
    CHECK(set_get(r, key, "after"));
    x = on_node(dst, "GET %s", key);
    CHECK(x && x->type == REDIS_REPLY_STRING && !strcmp(x->str, "after"));
    freeReplyObject(x);
    /* the channel of that slot is subscribed on its new master; the owner
     * heard that messages may have been missed meanwhile */
    uint64_t end = cm_now_ms() + 15000;
    while (cm_now_ms() < end && losts == lost_before)
        run_for(50);
    CHECK(losts > lost_before);
    CHECK(confirmed(r, chan, 5000));
    CHECK_EQ(publish(r, chan, "after-move"), 1);
    CHECK(wait_message("after-move", 2000));
}

/* Two blocking reads on one master run side by side on a command-only link. */
static void test_blocking(cm_redis *blocking, cm_redis *r)
{
    CHECK(wait_ready(blocking, 5000));
    const char *b1[] = {"BLPOP", "{q}:one", "3"}, *b2[] = {"BLPOP", "{q}:two", "3"};
    reply_t x1 = {0}, x2 = {0};
    CHECK_EQ(cm_redis_command(blocking, reply_cb, &x1, 3, b1, NULL), 0);
    CHECK_EQ(cm_redis_command(blocking, reply_cb, &x2, 3, b2, NULL), 0);
    run_for(200);
    const char *push[] = {"RPUSH", "{q}:two", "x"};
    reply_t p = {0};
    CHECK_EQ(cm_redis_command(r, reply_cb, &p, 3, push, NULL), 0);
    uint64_t t0 = cm_now_ms();
    run_until(&x2.done, 3000);
    CHECK_EQ(x2.type, REDIS_REPLY_ARRAY);
    CHECK(cm_now_ms() - t0 < 1500); /* not behind the first read's 3 s */
    CHECK_EQ(x1.done, 0);
    cm_redis_free(blocking); /* the read still blocked gets NULL */
    CHECK_EQ(x1.done, 1);
    CHECK_EQ(x1.type, -1);
}

static void test_failover(cm_redis *r)
{
    const char *chan = "room:{b}";
    unsigned slot = cm__rslot_of(PR_VIEW_LIT("{b}"));
    int m = master_of(slot);
    CHECK(m >= 0);
    int lost_before = losts, ready_before = readies;
    kill(pids[m], SIGKILL);
    waitpid(pids[m], NULL, 0);
    pids[m] = 0;
    /* the replica is promoted after cluster-node-timeout; the link finds it */
    uint64_t end = cm_now_ms() + 20000;
    while (cm_now_ms() < end && (readies == ready_before || !cm_redis_ready(r)))
        run_for(50);
    CHECK(cm_redis_ready(r));
    CHECK(losts > lost_before);
    CHECK(set_get(r, "{b}:after-failover", "yes"));
    CHECK(confirmed(r, chan, 5000));
    CHECK_EQ(publish(r, chan, "after-failover"), 1);
    CHECK(wait_message("after-failover", 2000));
}

int main(void)
{
    if (system("command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1")) {
        fprintf(stderr, "SKIPPED: redis-server or redis-cli is not in PATH\n");
        return 0;
    }
    if (!mkdtemp(dir))
        return 1;
    signal(SIGPIPE, SIG_IGN);
    cm_log_level = getenv("T_DEBUG") ? CM_LOG_DEBUG : CM_LOG_ERROR;
    char create[1024] = "redis-cli --cluster create";
    for (int i = 0; i < NODES; i++) {
        ports[i] = free_port();
        if (start_node(i) != 0) {
            fprintf(stderr, "cannot start redis-server on port %d\n", ports[i]);
            stop_nodes();
            return 1;
        }
        snprintf(create + strlen(create), sizeof create - strlen(create), " 127.0.0.1:%d",
                 ports[i]);
    }
    strcat(create, " --cluster-replicas 1 --cluster-yes >/dev/null");
    int ok = system(create) == 0;
    for (uint64_t end = cm_now_ms() + 20000; ok && cm_now_ms() < end;) {
        int all = 1;
        for (int i = 0; i < NODES; i++)
            all = all && state_ok(i);
        if (all)
            break;
        usleep(100000);
    }
    CHECK(ok);
    base = event_base_new();
    char url[64];
    snprintf(url, sizeof url, "redis-cluster://127.0.0.1:%d", ports[0]); /* one seed */
    pr_redis_addr addr;
    CHECK_EQ(pr_redis_url_parse(url, &addr), 0);
    CHECK_EQ(addr.cluster, 1);
    cm_redis_options o = {
        .name = "t", .on_message = on_message, .on_ready = on_ready, .arg = &readies};
    cm_redis *r = cm_redis_new(base, &addr, &o);
    cm_redis_set_lost_cb(r, on_lost);
    CHECK_EQ(cm_redis_is_cluster(r), 1);
    CHECK(wait_ready(r, 10000));
    CHECK_EQ(readies, 1);
    /* the first seed answers nothing: the next one gives the map */
    char url2[96];
    snprintf(url2, sizeof url2, "redis-cluster://127.0.0.1:%d,127.0.0.1:%d", free_port(), ports[1]);
    CHECK_EQ(pr_redis_url_parse(url2, &addr), 0);
    CHECK_EQ(addr.nseeds, 2);
    cm_redis *blocking = cm_redis_new(base, &addr, &(cm_redis_options){.name = "blocking"});
    test_routing(r);
    test_fence(r);
    test_pubsub(r);
    test_blocking(blocking, r);
    test_migration(r);
    test_failover(r);
    cm_redis_free(r);
    event_base_free(base);
    stop_nodes();
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    T_DONE();
}
