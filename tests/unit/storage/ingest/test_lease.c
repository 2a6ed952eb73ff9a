/* Unit tests of storage/ingest/lease.c: which shards a round renews or
 * tries, when a lease counts as lost, the steps of taking a shard (SET NX,
 * XGROUP CREATE, HGET {st}:pos) and of giving it back, each replica's share
 * of the shards (the heartbeat's view of the live replicas) and the
 * hand-over of the shards over it. lease.c is included for its static
 * round and callbacks; the Redis commands it sends are recorded by a stub
 * of cm_redis_command (and st_stream_create_group), and the test answers
 * them with hand-built replies. The heartbeat is recorded apart (hb) so
 * that the other commands keep their places. */
#include <stdio.h>
#include <string.h>

#include "ingest/lease.c"
#include "t.h"

/* ---- the recording stubs ---- */

#define MAX_CMDS 32

typedef struct {
    char text[512]; /* argv joined by spaces */
    cm_redis_reply_cb cb;
    void *arg;
    int answered;
} sent_cmd;

static sent_cmd cmds[MAX_CMDS];
static int ncmds;
static int redis_up = 1;
static int redis_fail; /* cm_redis_command refuses */
static int kicks, stopped_calls;

int cm_redis_ready(const cm_redis *r)
{
    (void)r;
    return redis_up;
}

static sent_cmd hb; /* the heartbeat in flight (answered: none) */
static int nhb;     /* heartbeats sent */

static int record(cm_redis_reply_cb cb, void *arg, int argc, const char **argv, const size_t *lens)
{
    if (redis_fail || ncmds == MAX_CMDS)
        return -1;
    int beat = argc > 1 && !strcmp(argv[1], HEARTBEAT_LUA);
    if (beat) {
        CHECK(hb.answered); /* one at a time */
        nhb++;
    }
    sent_cmd *m = beat ? &hb : &cmds[ncmds++];
    size_t used = 0;
    m->text[0] = '\0';
    for (int i = 0; i < argc; i++)
        used += (size_t)snprintf(m->text + used, sizeof m->text - used, "%s%.*s", i ? " " : "",
                                 (int)lens[i], argv[i]);
    m->cb = cb;
    m->arg = arg;
    m->answered = 0;
    return 0;
}

int cm_redis_command(cm_redis *r, cm_redis_reply_cb cb, void *arg, int argc, const char **argv,
                     const size_t *argvlen)
{
    (void)r;
    return record(cb, arg, argc, argv, argvlen);
}

int st_stream_create_group(st_ctx *c, pr_view key, cm_redis_reply_cb cb, void *arg)
{
    (void)c;
    const char *argv[] = {"XGROUP", "CREATE", key.ptr, "owner", "0", "MKSTREAM"};
    size_t lens[] = {6, 6, key.len, 5, 1, 8};
    return record(cb, arg, 6, argv, lens);
}

void st__ingest_kick(st_ingest *g)
{
    (void)g;
    kicks++;
}

void st__ingest_maybe_stopped(st_ingest *g)
{
    (void)g;
    stopped_calls++;
}

/* Answers command i with reply (NULL: the link is lost). */
static void answer(int i, redisReply *reply)
{
    CHECK(i < ncmds && !cmds[i].answered);
    if (i >= ncmds || cmds[i].answered)
        return;
    cmds[i].answered = 1;
    if (cmds[i].cb)
        cmds[i].cb(NULL, reply, cmds[i].arg);
}

/* Answers the heartbeat in flight with the live ids (n < 0: the link is
 * lost). */
static void beat_reply(const char *const *ids, int n)
{
    CHECK(!hb.answered);
    if (hb.answered)
        return;
    hb.answered = 1;
    if (n < 0) {
        hb.cb(NULL, NULL, hb.arg);
        return;
    }
    redisReply el[8], *els[8];
    for (int i = 0; i < n && i < 8; i++) {
        el[i] = (redisReply){.type = REDIS_REPLY_STRING, .str = (char *)ids[i], .len = strlen(ids[i])};
        els[i] = &el[i];
    }
    redisReply arr = {.type = REDIS_REPLY_ARRAY, .elements = (size_t)n, .element = els};
    hb.cb(NULL, &arr, hb.arg);
}

/* Every command not answered yet gets NULL (hiredis' disconnect). */
static void drain(void)
{
    for (int i = 0; i < ncmds; i++)
        if (!cmds[i].answered)
            answer(i, NULL);
    ncmds = 0;
    if (!hb.answered)
        beat_reply(NULL, -1);
}

/* A round in which this replica is the only one alive: it wants every
 * shard. */
static void lease_round(st_ingest *g)
{
    static const char *const alone[] = {"rep-1"};
    lease_tick(g);
    if (!hb.answered)
        beat_reply(alone, 1);
}

static redisReply rep_status(const char *s)
{
    return (redisReply){.type = REDIS_REPLY_STATUS, .str = (char *)s, .len = strlen(s)};
}

static redisReply rep_str(const char *s)
{
    return (redisReply){.type = REDIS_REPLY_STRING, .str = (char *)s, .len = strlen(s)};
}

static redisReply rep_err(const char *s)
{
    return (redisReply){.type = REDIS_REPLY_ERROR, .str = (char *)s, .len = strlen(s)};
}

static redisReply rep_int(long long v)
{
    return (redisReply){.type = REDIS_REPLY_INTEGER, .integer = v};
}

static redisReply rep_nil(void)
{
    return (redisReply){.type = REDIS_REPLY_NIL};
}

/* ---- a hand-built ingest ---- */

#define NSHARDS 3

static st_config cfg;
static st_ctx ctx;
static st__shard shards[NSHARDS];
static st_ingest ing;
static int fake_redis; /* an address for c->redis; never dereferenced */

static st_ingest *setup(void)
{
    hb.answered = 1;
    drain();
    nhb = 0;
    memset(&cfg, 0, sizeof cfg);
    memset(&ctx, 0, sizeof ctx);
    memset(shards, 0, sizeof shards);
    memset(&ing, 0, sizeof ing);
    cfg.lease_ms = 9000;
    ctx.cfg = &cfg;
    ctx.redis = (cm_redis *)&fake_redis;
    snprintf(ctx.replica_id, sizeof ctx.replica_id, "rep-1");
    ing.c = &ctx;
    ing.nshards = NSHARDS;
    ing.shards = shards;
    for (unsigned s = 0; s < NSHARDS; s++) {
        shards[s].in_key = chat_key_ingest(s);
        shards[s].lease_key = chat_key_lease(s);
    }
    redis_up = 1;
    redis_fail = 0;
    kicks = stopped_calls = 0;
    return &ing;
}

static int sent(int i, const char *want)
{
    if (i >= ncmds) {
        fprintf(stderr, "command %d not sent (want \"%s\")\n", i, want);
        return 0;
    }
    if (strcmp(cmds[i].text, want)) {
        fprintf(stderr, "command %d: \"%s\", want \"%s\"\n", i, cmds[i].text, want);
        return 0;
    }
    return 1;
}

static char renew_cmd[600], release_cmd[600];

static void expected_texts(void)
{
    snprintf(renew_cmd, sizeof renew_cmd, "EVAL %s 1 {i:1}:lease rep-1 9000", RENEW_LUA);
    snprintf(release_cmd, sizeof release_cmd, "EVAL %s 1 {i:1}:lease rep-1", RELEASE_LUA);
}

/* ---- a round ---- */

/* Nothing is sent while Redis is away or the replica stops. */
static void test_round_idle(void)
{
    st_ingest *g = setup();
    redis_up = 0;
    lease_tick(g);
    CHECK_EQ(ncmds, 0);
    redis_up = 1;
    g->stopping = 1;
    lease_tick(g);
    CHECK_EQ(ncmds, 0);
}

/* Shards not owned are tried with SET NX PX lease_ms, once at a time. */
static void test_round_try(void)
{
    st_ingest *g = setup();
    lease_round(g);
    CHECK_EQ(ncmds, NSHARDS);
    CHECK(sent(0, "SET {i:0}:lease rep-1 NX PX 9000"));
    CHECK(sent(1, "SET {i:1}:lease rep-1 NX PX 9000"));
    CHECK(sent(2, "SET {i:2}:lease rep-1 NX PX 9000"));
    for (unsigned s = 0; s < NSHARDS; s++)
        CHECK(shards[s].acquiring && !shards[s].owned);
    lease_round(g); /* all in flight: nothing more */
    CHECK_EQ(ncmds, NSHARDS);
    /* someone else's (nil), or Redis away: tried again next round */
    redisReply nil = rep_nil();
    answer(0, &nil);
    answer(1, NULL);
    CHECK(!shards[0].acquiring && !shards[1].acquiring && shards[2].acquiring);
    CHECK(!shards[0].owned && !shards[1].owned);
    lease_round(g);
    CHECK_EQ(ncmds, NSHARDS + 2);
    CHECK(sent(3, "SET {i:0}:lease rep-1 NX PX 9000"));
    CHECK(sent(4, "SET {i:1}:lease rep-1 NX PX 9000"));
    CHECK_EQ(ctx.stats.lease_acquired, 0);
    drain();
}

/* A command that cannot be sent leaves the shard free for the next round. */
static void test_round_send_fails(void)
{
    st_ingest *g = setup();
    redis_fail = 1;
    lease_round(g);
    CHECK_EQ(ncmds, 0);
    for (unsigned s = 0; s < NSHARDS; s++)
        CHECK(!shards[s].acquiring);
    shards[1].owned = 1;
    shards[1].lease_until = cm_now_ms() + 9000;
    lease_round(g);
    CHECK(!shards[1].renewing && shards[1].owned);
    redis_fail = 0;
    lease_round(g);
    CHECK_EQ(ncmds, NSHARDS);
    drain();
}

/* Taking a shard: SET NX, then XGROUP CREATE (BUSYGROUP is fine), then its
 * published position; then it is owned, in pending mode, and read. */
static void test_take(void)
{
    st_ingest *g = setup();
    g->nshards = 2;
    shards[1].mode = ST__MODE_LIVE;
    snprintf(shards[1].cursor, sizeof shards[1].cursor, "5-0");
    lease_round(g);
    CHECK_EQ(ncmds, 2);
    redisReply ok = rep_status("OK");
    uint64_t before = cm_now_ms();
    answer(1, &ok);
    CHECK_EQ(ncmds, 3);
    CHECK(sent(2, "XGROUP CREATE {i:1}:in owner 0 MKSTREAM"));
    CHECK(shards[1].acquiring && !shards[1].owned);
    redisReply busy = rep_err("BUSYGROUP Consumer Group name already exists");
    answer(2, &busy);
    CHECK(sent(3, "HGET {st}:pos 1"));
    CHECK(shards[1].acquiring && !shards[1].owned);
    CHECK_EQ(kicks, 0);
    redisReply pos = rep_str("17");
    answer(3, &pos);
    uint64_t after = cm_now_ms();
    CHECK(shards[1].owned && !shards[1].acquiring);
    CHECK_EQ(shards[1].published, 17);
    CHECK_EQ(shards[1].mode, ST__MODE_PENDING);
    CHECK(!strcmp(shards[1].cursor, "0"));
    CHECK_EQ(shards[1].republish_above, INT64_MAX);
    /* the lease runs from when SET NX was sent */
    CHECK(shards[1].lease_until >= before + 9000 && shards[1].lease_until <= after + 9000);
    CHECK_EQ(ctx.stats.lease_acquired, 1);
    CHECK_EQ(kicks, 1);
    CHECK(!shards[0].owned);

    /* no position yet: 0 */
    answer(0, &ok);
    CHECK(sent(4, "XGROUP CREATE {i:0}:in owner 0 MKSTREAM"));
    redisReply ok2 = rep_status("OK");
    answer(4, &ok2);
    redisReply nil = rep_nil();
    shards[0].published = 99;
    answer(5, &nil);
    CHECK(shards[0].owned);
    CHECK_EQ(shards[0].published, 0);
    CHECK_EQ(ctx.stats.lease_acquired, 2);
    drain();
}

/* A failed step gives up until the next round (the lease, if taken, is
 * renewed by nobody and runs out). */
static void test_take_fails(void)
{
    st_ingest *g = setup();
    g->nshards = 1;
    lease_round(g);
    redisReply ok = rep_status("OK");
    answer(0, &ok);
    redisReply err = rep_err("ERR no such key");
    answer(1, &err); /* XGROUP: an error other than BUSYGROUP */
    CHECK_EQ(ncmds, 2);
    CHECK(!shards[0].acquiring && !shards[0].owned);
    lease_round(g);
    CHECK(sent(2, "SET {i:0}:lease rep-1 NX PX 9000"));
    answer(2, &ok);
    answer(3, NULL); /* XGROUP: link lost */
    CHECK(!shards[0].acquiring && !shards[0].owned);
    lease_round(g);
    answer(4, &ok);
    redisReply busy = rep_err("BUSYGROUP x");
    answer(5, &busy);
    redisReply perr = rep_err("ERR wrong type");
    answer(6, &perr); /* HGET fails */
    CHECK(!shards[0].acquiring && !shards[0].owned);
    CHECK_EQ(ctx.stats.lease_acquired, 0);
    CHECK_EQ(kicks, 0);
    drain();
}

/* Owned shards are renewed with the compare-and-pexpire script. */
static void test_renew(void)
{
    st_ingest *g = setup();
    g->nshards = 2;
    uint64_t now = cm_now_ms();
    shards[0].owned = 1;
    shards[0].lease_until = now + 9000;
    shards[1].owned = 1;
    shards[1].lease_until = now + 9000;
    lease_round(g);
    CHECK_EQ(ncmds, 2);
    CHECK(sent(1, renew_cmd));
    CHECK(shards[0].renewing && shards[1].renewing);
    lease_round(g); /* in flight: not again */
    CHECK_EQ(ncmds, 2);
    /* renewed: the lease runs from when the renewal was sent */
    shards[1].lease_until = now + 1;
    redisReply one = rep_int(1);
    answer(1, &one);
    CHECK(!shards[1].renewing && shards[1].owned);
    CHECK(shards[1].lease_until >= now + 9000 && shards[1].lease_until <= cm_now_ms() + 9000);
    /* no reply: kept until the clock says otherwise */
    answer(0, NULL);
    CHECK(!shards[0].renewing && shards[0].owned);
    CHECK_EQ(shards[0].lease_until, now + 9000);
    /* taken by another replica: lost at once */
    lease_round(g);
    CHECK_EQ(ncmds, 4);
    redisReply zero = rep_int(0);
    answer(3, &zero);
    CHECK(!shards[1].owned && !shards[1].renewing);
    CHECK_EQ(ctx.stats.lease_lost, 1);
    answer(2, &one);
    CHECK(shards[0].owned);
    /* an error reply changes nothing */
    lease_round(g); /* renews 0, tries 1 */
    CHECK(sent(5, "SET {i:1}:lease rep-1 NX PX 9000"));
    redisReply err = rep_err("NOSCRIPT");
    uint64_t until = shards[0].lease_until;
    answer(4, &err);
    CHECK(shards[0].owned && !shards[0].renewing);
    CHECK_EQ(shards[0].lease_until, until);
    CHECK_EQ(ctx.stats.lease_lost, 1);
    drain();
}

/* A lease not renewed in time is lost by the clock, and tried again in the
 * same round. */
static void test_expired(void)
{
    st_ingest *g = setup();
    g->nshards = 2;
    uint64_t now = cm_now_ms();
    shards[0].owned = 1;
    shards[0].lease_until = now; /* now >= lease_until: expired */
    shards[1].owned = 1;
    shards[1].lease_until = now + 60000;
    lease_round(g);
    CHECK(!shards[0].owned);
    CHECK_EQ(ctx.stats.lease_lost, 1);
    CHECK(sent(1, "SET {i:0}:lease rep-1 NX PX 9000"));
    CHECK(shards[0].acquiring);
    CHECK(shards[1].owned && shards[1].renewing);
    drain();
}

/* ---- stopping ---- */

/* A shard taken while stopping is given back, not read. */
static void test_take_while_stopping(void)
{
    st_ingest *g = setup();
    g->nshards = 2;
    lease_round(g);
    g->stopping = 1;
    redisReply ok = rep_status("OK");
    answer(1, &ok);
    CHECK_EQ(ncmds, 3);
    CHECK(sent(2, release_cmd));
    CHECK(cmds[2].cb == NULL);
    CHECK(!shards[1].acquiring && !shards[1].owned);
    /* the last step while stopping: given back too */
    g->stopping = 0;
    answer(0, &ok);
    redisReply busy = rep_err("BUSYGROUP x");
    answer(3, &busy);
    CHECK(sent(4, "HGET {st}:pos 0"));
    g->stopping = 1;
    redisReply pos = rep_str("3");
    answer(4, &pos);
    CHECK(!shards[0].owned && !shards[0].acquiring);
    CHECK_EQ(ncmds, 6);
    CHECK(strstr(cmds[5].text, "redis.call('del'") && strstr(cmds[5].text, " {i:0}:lease rep-1"));
    CHECK_EQ(ctx.stats.lease_acquired, 0);
    CHECK_EQ(kicks, 0);
    drain();
}

/* Release all: every owned shard, counted until its answer. */
static void test_release_all(void)
{
    st_ingest *g = setup();
    shards[0].owned = 1;
    shards[1].owned = 1;
    CHECK_EQ(st__lease_release_all(g), 2);
    CHECK_EQ(g->releases, 2);
    CHECK_EQ(ncmds, 2);
    CHECK(sent(1, release_cmd));
    CHECK(!shards[0].owned && !shards[1].owned);
    answer(0, NULL); /* link lost: counts as done */
    CHECK_EQ(g->releases, 1);
    CHECK_EQ(stopped_calls, 0);
    redisReply one = rep_int(1);
    answer(1, &one);
    CHECK_EQ(g->releases, 0);
    CHECK_EQ(stopped_calls, 1);
    /* nothing owned: nothing to wait for */
    CHECK_EQ(st__lease_release_all(g), 0);
    CHECK_EQ(ncmds, 2);
    /* a release that cannot be sent is not waited for */
    shards[2].owned = 1;
    redis_fail = 1;
    CHECK_EQ(st__lease_release_all(g), 0);
    CHECK_EQ(g->releases, 0);
    CHECK(!shards[2].owned);
    drain();
}

/* ---- sharing: the live replicas' shares and the hand-over ---- */

/* N / K each, the first N mod K one more: every shard has one taker. */
static void test_target(void)
{
    CHECK_EQ(st__lease_target(8, 1, 0), 8);
    CHECK_EQ(st__lease_target(8, 2, 0), 4);
    CHECK_EQ(st__lease_target(8, 2, 1), 4);
    CHECK_EQ(st__lease_target(8, 3, 0), 3);
    CHECK_EQ(st__lease_target(8, 3, 1), 3);
    CHECK_EQ(st__lease_target(8, 3, 2), 2);
    CHECK_EQ(st__lease_target(3, 5, 2), 1);
    CHECK_EQ(st__lease_target(3, 5, 3), 0);
    CHECK_EQ(st__lease_target(8, 0, 0), 0);
    CHECK_EQ(st__lease_target(8, 2, 2), 0);
    for (unsigned n = 1; n <= 64; n++)
        for (unsigned k = 1; k <= 12; k++) {
            unsigned sum = 0, lo = n, hi = 0;
            for (unsigned r = 0; r < k; r++) {
                unsigned t = st__lease_target(n, k, r);
                sum += t;
                lo = t < lo ? t : lo;
                hi = t > hi ? t : hi;
            }
            CHECK_EQ(sum, n);
            CHECK(hi - lo <= 1);
        }
}

/* Nothing is taken before a heartbeat says who is alive, nor with a view
 * older than a lease; a heartbeat without this replica is no view. */
static void test_no_view(void)
{
    st_ingest *g = setup();
    lease_tick(g);
    CHECK_EQ(nhb, 1);
    CHECK_EQ(ncmds, 0);
    CHECK(strstr(hb.text, " 1 {st}:replicas rep-1 9000") != NULL);
    static const char *const others[] = {"rep-0", "rep-2"};
    beat_reply(others, 2);
    CHECK_EQ(ncmds, 0);
    CHECK_EQ(g->live, 0);
    lease_tick(g);
    beat_reply(NULL, -1); /* link lost */
    CHECK_EQ(ncmds, 0);
    lease_round(g);
    CHECK_EQ(ncmds, NSHARDS);
    CHECK_EQ(g->live, 1);
    drain();
    /* the view ran out: no more taking */
    g->view_until = cm_now_ms();
    CHECK_EQ(target(g), -1);
    balance(g);
    CHECK_EQ(ncmds, 0);
}

/* Second of two live replicas (ids in byte order): one shard of three. It
 * tries every free shard from its own place, keeps the first it gets and
 * gives back at once what it got beyond its share. */
static void test_share_take(void)
{
    st_ingest *g = setup();
    static const char *const two[] = {"rep-1", "rep-0"};
    lease_tick(g);
    beat_reply(two, 2);
    CHECK_EQ(g->live, 2);
    CHECK_EQ(g->rank, 1);
    CHECK_EQ(target(g), 1);
    CHECK_EQ(ncmds, 3);
    CHECK(sent(0, "SET {i:1}:lease rep-1 NX PX 9000")); /* from 1 * 3 / 2 */
    CHECK(sent(1, "SET {i:2}:lease rep-1 NX PX 9000"));
    CHECK(sent(2, "SET {i:0}:lease rep-1 NX PX 9000"));
    redisReply ok = rep_status("OK"), nil = rep_nil();
    answer(0, &nil);
    answer(1, &ok);
    CHECK(sent(3, "XGROUP CREATE {i:2}:in owner 0 MKSTREAM"));
    CHECK(shards[2].taken);
    answer(2, &ok); /* beyond the share: released, nothing read */
    CHECK_EQ(ncmds, 5);
    CHECK(strstr(cmds[4].text, "redis.call('del'") && strstr(cmds[4].text, " {i:0}:lease rep-1"));
    CHECK(!shards[0].acquiring && !shards[0].owned);
    answer(3, &ok);
    redisReply pos = rep_str("4");
    answer(5, &pos);
    CHECK(shards[2].owned && !shards[2].taken);
    /* at its share: the next rounds renew and try nothing */
    int before = ncmds;
    lease_tick(g);
    beat_reply(two, 2);
    CHECK_EQ(ncmds, before + 1);
    CHECK(strstr(cmds[before].text, "pexpire") && strstr(cmds[before].text, "{i:2}:lease"));
    drain();
}

/* Every shard owned and read live, with inflight entries each. */
static st_ingest *setup_owning(unsigned inflight)
{
    st_ingest *g = setup();
    uint64_t now = cm_now_ms();
    for (unsigned s = 0; s < NSHARDS; s++) {
        shards[s].owned = 1;
        shards[s].lease_until = now + 9000;
        shards[s].mode = ST__MODE_LIVE;
        shards[s].inflight = inflight;
    }
    return g;
}

/* Over its share, an owner gives back its highest shards: they are read no
 * more past their pending entries, and released once nothing of theirs is
 * read, queued or being acked. */
static void test_give_back(void)
{
    st_ingest *g = setup_owning(0);
    static const char *const three[] = {"rep-2", "rep-1", "rep-3"};
    lease_tick(g); /* three renewals */
    CHECK_EQ(ncmds, 3);
    beat_reply(three, 3); /* rank 0 of 3: one shard */
    CHECK_EQ(ncmds, 3);
    CHECK(!shards[0].releasing && shards[1].releasing && shards[2].releasing);
    CHECK(shards[0].owned && shards[1].owned && shards[2].owned);
    shards[1].inflight = 1;
    shards[2].in_read = 1;
    st__lease_handover(g);
    CHECK_EQ(ncmds, 3);
    shards[1].inflight = 0;
    shards[1].acking = 1;
    shards[2].in_read = 0;
    shards[2].mode = ST__MODE_PENDING; /* acks lost: its pending entries first */
    st__lease_handover(g);
    CHECK_EQ(ncmds, 3);
    shards[1].acking = 0;
    st__lease_handover(g);
    CHECK_EQ(ncmds, 4);
    CHECK(sent(3, release_cmd));
    CHECK(!shards[1].owned && !shards[1].releasing);
    CHECK_EQ(ctx.stats.lease_released, 1);
    shards[2].mode = ST__MODE_LIVE;
    st__lease_handover(g);
    CHECK_EQ(ncmds, 5);
    CHECK(strstr(cmds[4].text, " {i:2}:lease rep-1") != NULL);
    CHECK_EQ(ctx.stats.lease_released, 2);
    CHECK_EQ(ctx.stats.lease_lost, 0);
    st__lease_handover(g); /* nothing more */
    CHECK_EQ(ncmds, 5);
    drain();
}

/* A shard being given back is kept when the share grows again (a replica
 * left meanwhile), rather than another taken; stopping hands over nothing
 * (release_all does). */
static void test_give_back_undone(void)
{
    st_ingest *g = setup_owning(1);
    static const char *const two[] = {"rep-1", "rep-2"};
    lease_tick(g);
    beat_reply(two, 2); /* rank 0 of 2: two shards */
    CHECK(!shards[0].releasing && !shards[1].releasing && shards[2].releasing);
    lease_round(g); /* alone again: all three */
    CHECK(!shards[2].releasing);
    CHECK_EQ(ncmds, 3); /* the first renewals, still in flight: nothing taken */
    lease_tick(g);
    beat_reply(two, 2);
    CHECK(shards[2].releasing);
    g->stopping = 1;
    shards[2].inflight = 0;
    int before = ncmds;
    st__lease_handover(g);
    CHECK_EQ(ncmds, before);
    CHECK(shards[2].owned);
    drain();
}

int main(void)
{
    expected_texts();
    test_round_idle();
    test_round_try();
    test_round_send_fails();
    test_take();
    test_take_fails();
    test_renew();
    test_expired();
    test_take_while_stopping();
    test_release_all();
    test_target();
    test_no_view();
    test_share_take();
    test_give_back();
    test_give_back_undone();
    drain();
    T_DONE();
}
