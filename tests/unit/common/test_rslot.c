/*
 * Unit tests of common/cm_rslot.c (Redis Cluster's slot arithmetic) and of
 * the redis-cluster:// form of the Redis URL.
 */
#include <hiredis/hiredis.h>
#include <string.h>

#include "cm_redis_int.h"
#include "t.h"

static unsigned slot(const char *key)
{
    return cm__rslot_of(pr_view_make(key, strlen(key)));
}

/* A reply parsed from RESP text, as hiredis would hand it over. */
static redisReply *parse(const char *resp)
{
    redisReader *rd = redisReaderCreate();
    redisReaderFeed(rd, resp, strlen(resp));
    void *out = NULL;
    if (redisReaderGetReply(rd, &out) != REDIS_OK)
        out = NULL;
    redisReaderFree(rd);
    return out;
}

static void test_slots(void)
{
    /* CRC16/XMODEM's check value, and CLUSTER KEYSLOT's documented examples */
    CHECK_EQ(slot("123456789"), 0x31C3);
    CHECK_EQ(slot("somekey"), 11058);
    CHECK_EQ(slot("foo{hash_tag}"), 2515);
    CHECK_EQ(slot("bar{hash_tag}"), 2515);
    /* the first {...} that is not empty decides */
    CHECK_EQ(slot("{user1000}.following"), slot("{user1000}.followers"));
    CHECK_EQ(slot("foo{bar}{zap}"), slot("bar"));
    CHECK_EQ(slot("foo{{bar}}zap"), slot("{bar"));
    CHECK_EQ(slot("foo{}{bar}"), slot("foo{}{bar}")); /* the whole key */
    CHECK(slot("foo{}{bar}") != slot("bar"));
    CHECK_EQ(slot("{i:3}:in"), slot("{i:3}:lease"));
    CHECK_EQ(slot("room:{r1}"), slot("{r1}"));
    CHECK(slot("") < CM_RSLOTS);
}

static int key_of(int argc, const char **argv, char *out)
{
    pr_view k;
    int rc = cm__rslot_key(argc, argv, NULL, &k);
    if (rc == 0)
        snprintf(out, 64, "%.*s", (int)k.len, k.ptr);
    return rc;
}

static void test_command_key(void)
{
    char k[64];
    const char *get[] = {"GET", "{a}:x"};
    CHECK_EQ(key_of(2, get, k), 0);
    CHECK(!strcmp(k, "{a}:x"));
    const char *grp[] = {"XGROUP", "CREATE", "{i:1}:in", "storage", "0", "MKSTREAM"};
    CHECK_EQ(key_of(6, grp, k), 0);
    CHECK(!strcmp(k, "{i:1}:in"));
    const char *rd[] = {"XREADGROUP", "GROUP", "g",       "c",        "COUNT", "5",
                        "BLOCK",      "100",   "STREAMS", "{i:2}:in", ">"};
    CHECK_EQ(key_of(11, rd, k), 0);
    CHECK(!strcmp(k, "{i:2}:in"));
    const char *ev[] = {"EVALSHA", "abc", "2", "{p1}:on:u", "{p1}:exp", "arg"};
    CHECK_EQ(key_of(6, ev, k), 0);
    CHECK(!strcmp(k, "{p1}:on:u"));
    const char *ev0[] = {"EVAL", "return 1", "0"};
    CHECK_EQ(key_of(3, ev0, k), PR_ENOTFOUND);
    const char *sc[] = {"SCRIPT", "LOAD", "return 1"};
    CHECK_EQ(key_of(3, sc, k), PR_ENOTFOUND);
    const char *bad[] = {"XREAD", "COUNT", "1"};
    CHECK_EQ(key_of(3, bad, k), PR_ENOTFOUND);
    const char *pub[] = {"PUBLISH", "room:{r}", "m"};
    CHECK_EQ(key_of(3, pub, k), 0);
    CHECK(!strcmp(k, "room:{r}"));
}

static void test_redirect(void)
{
    unsigned s;
    char host[64];
    int port;
    CHECK_EQ(cm__rslot_redirect("MOVED 3999 127.0.0.1:6381", &s, host, sizeof host, &port), 1);
    CHECK_EQ(s, 3999);
    CHECK(!strcmp(host, "127.0.0.1"));
    CHECK_EQ(port, 6381);
    CHECK_EQ(cm__rslot_redirect("ASK 12 redis-2.redis:7000", &s, host, sizeof host, &port), 2);
    CHECK(!strcmp(host, "redis-2.redis"));
    CHECK_EQ(cm__rslot_redirect("MOVED 3999 [::1]:6381", &s, host, sizeof host, &port), 1);
    CHECK(!strcmp(host, "[::1]"));
    CHECK_EQ(cm__rslot_redirect("ERR wrong", &s, host, sizeof host, &port), 0);
    CHECK_EQ(cm__rslot_redirect("MOVED 16384 h:1", &s, host, sizeof host, &port), 0);
    CHECK_EQ(cm__rslot_redirect("MOVED 1 h:0", &s, host, sizeof host, &port), 0);
    CHECK_EQ(cm__rslot_redirect("MOVED 1 nocolon", &s, host, sizeof host, &port), 0);
    CHECK_EQ(cm__rslot_redirect("MOVED x h:1", &s, host, sizeof host, &port), 0);
}

static void test_parse_slots(void)
{
    cm_rslot_range r[4];
    redisReply *rep = parse("*2\r\n"
                            "*4\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n"
                            "*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$3\r\nid2\r\n"
                            "*3\r\n:5461\r\n:16383\r\n*3\r\n$1\r\n?\r\n:7001\r\n$2\r\nid\r\n");
    CHECK_EQ(cm__rslot_parse(rep, r, 4), 2);
    CHECK_EQ(r[0].first, 0);
    CHECK_EQ(r[0].last, 5460);
    CHECK(!strcmp(r[0].host, "127.0.0.1"));
    CHECK_EQ(r[0].port, 7000);
    CHECK(!strcmp(r[1].host, ""));                   /* "?": the node that answered */
    CHECK_EQ(cm__rslot_parse(rep, r, 1), PR_EINVAL); /* too many */
    freeReplyObject(rep);
    rep = parse("*1\r\n*3\r\n:10\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n"); /* last < first */
    CHECK_EQ(cm__rslot_parse(rep, r, 4), PR_EINVAL);
    freeReplyObject(rep);
    rep = parse("-ERR This instance has cluster support disabled\r\n");
    CHECK_EQ(cm__rslot_parse(rep, r, 4), PR_EINVAL);
    freeReplyObject(rep);
    CHECK_EQ(cm__rslot_parse(NULL, r, 4), PR_EINVAL);
}

static void test_url(void)
{
    pr_redis_addr a;
    CHECK_EQ(pr_redis_url_parse("redis-cluster://10.0.0.1:7000,10.0.0.2,node-3:7002", &a), 0);
    CHECK_EQ(a.cluster, 1);
    CHECK_EQ(a.nseeds, 3);
    CHECK(!strcmp(a.seeds[1].host, "10.0.0.2"));
    CHECK_EQ(a.seeds[1].port, 6379);
    CHECK(!strcmp(a.seeds[2].host, "node-3"));
    CHECK_EQ(a.seeds[2].port, 7002);
    CHECK(!strcmp(a.host, "10.0.0.1"));
    CHECK_EQ(a.port, 7000);
    CHECK_EQ(pr_redis_url_parse("redis-cluster://:pw@h1:1,h2:2", &a), 0);
    CHECK(!strcmp(a.password, "pw"));
    CHECK_EQ(a.nseeds, 2);
    CHECK_EQ(pr_redis_url_parse("redis://h:1", &a), 0);
    CHECK_EQ(a.cluster, 0);
    CHECK_EQ(pr_redis_url_parse("redis-cluster://h:1/2", &a), PR_EINVAL); /* no databases */
    CHECK_EQ(pr_redis_url_parse("redis-cluster://", &a), PR_EINVAL);
    CHECK_EQ(pr_redis_url_parse("redis-cluster://h:1,", &a), PR_EINVAL);
    CHECK_EQ(pr_redis_url_parse("redis-cluster://h:1,,h:2", &a), PR_EINVAL);
    CHECK_EQ(pr_redis_url_parse("redis-cluster://h:99999", &a), PR_EINVAL);
    char many[512] = "redis-cluster://";
    for (int i = 0; i <= PR_REDIS_SEEDS_MAX; i++)
        strcat(many, i ? ",h:1" : "h:1");
    CHECK_EQ(pr_redis_url_parse(many, &a), PR_EINVAL);
}

int main(void)
{
    test_slots();
    test_command_key();
    test_redirect();
    test_parse_slots();
    test_url();
    T_DONE();
}
