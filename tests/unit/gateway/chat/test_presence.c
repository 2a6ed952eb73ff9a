/* Unit tests of gateway/chat/presence.c: the tick's renewals, one script
 * call per presence shard and at most cw->presence_batch users a call, the
 * sweep in each shard's last call; what its reply announces; NOSCRIPT sends
 * the same call again with EVAL (on the fake transport, fake.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake.h"
#include "t.h"

#define NUSERS 40

/* The i-th space-separated word of text, in out. */
static void word(const char *text, int i, char *out, size_t n)
{
    const char *p = text;
    for (; i > 0 && p; i--)
        if ((p = strchr(p, ' ')))
            p++;
    size_t len = p ? strcspn(p, " ") : 0;
    if (len >= n)
        len = n - 1;
    memcpy(out, p ? p : "", len);
    out[len] = '\0';
}

static unsigned words(const char *text)
{
    unsigned n = 1;
    for (const char *p = text; (p = strchr(p, ' ')); p++)
        n++;
    return n;
}

/* reply {lost, gone} */
static redisReply *tick_reply(const char *const *lost, const char *const *gone)
{
    redisReply *r = pr_calloc(1, sizeof *r);
    r->type = REDIS_REPLY_ARRAY;
    r->elements = 2;
    r->element = pr_calloc(3, sizeof *r->element);
    r->element[0] = fake_strings(lost);
    r->element[1] = fake_strings(gone);
    return r;
}

static void tick(void)
{
    fake_chat t;
    const char *flags[] = {"--storage", "off", NULL};
    fake_chat_start(&t, flags);
    t.cw->presence_batch = 3;
    static gc_user users[NUSERS];
    static char names[NUSERS][8];
    unsigned per_shard[CHAT_PRESENCE_SHARDS] = {0}, want_calls = 0;
    for (int i = 0; i < NUSERS; i++) {
        snprintf(names[i], sizeof names[i], "u%d", i);
        gc__map_put(&t.cw->users, &users[i].e, names[i], strlen(names[i]));
        per_shard[chat_presence_shard(names[i])]++;
    }
    for (unsigned s = 0; s < CHAT_PRESENCE_SHARDS; s++)
        want_calls += per_shard[s] ? (per_shard[s] + 2) / 3 : 1;

    unsigned from = t.r->ncmds;
    gc__presence_tick(-1, 0, t.cw);
    CHECK_EQ(t.r->ncmds - from, want_calls);
    unsigned seen[NUSERS] = {0}, calls[CHAT_PRESENCE_SHARDS] = {0},
             sweeps[CHAT_PRESENCE_SHARDS] = {0};
    unsigned last_shard = 0;
    for (unsigned c = from; c < t.r->ncmds; c++) {
        const char *text = t.r->cmds[c].text;
        char w[64], key[32];
        word(text, 0, w, sizeof w);
        CHECK(!strcmp(w, "EVALSHA"));
        word(text, 3, key, sizeof key); /* {pN}:exp */
        unsigned s = (unsigned)atoi(key + 2);
        CHECK(s < CHAT_PRESENCE_SHARDS && s >= last_shard); /* shard by shard */
        last_shard = s;
        snprintf(w, sizeof w, "{p%u}:exp", s);
        CHECK(!strcmp(key, w));
        word(text, 7, w, sizeof w);
        snprintf(key, sizeof key, "{p%u}:on:", s);
        CHECK(!strcmp(w, key));
        calls[s]++;
        word(text, 8, w, sizeof w); /* the sweep flag */
        if (!strcmp(w, "1"))
            sweeps[s]++;
        else
            CHECK(!strcmp(w, "0") && sweeps[s] == 0); /* the sweep comes last */
        unsigned n = words(text);
        CHECK(n >= 9 && n <= 9 + 3);
        for (unsigned i = 9; i < n; i++) {
            word(text, (int)i, w, sizeof w);
            int u = atoi(w + 1);
            CHECK(w[0] == 'u' && u >= 0 && u < NUSERS && chat_presence_shard(w) == s);
            if (u >= 0 && u < NUSERS)
                seen[u]++;
        }
    }
    for (int i = 0; i < NUSERS; i++)
        CHECK_EQ(seen[i], 1);
    for (unsigned s = 0; s < CHAT_PRESENCE_SHARDS; s++) {
        CHECK_EQ(sweeps[s], 1);
        CHECK(calls[s] >= 1);
    }

    /* the reply: users Redis lost are announced online, the swept offline
     * (each through the user's rooms) */
    const char *lost[] = {"u3", NULL}, *gone[] = {"ghost", NULL}, *none[] = {NULL};
    redisReply *rep = tick_reply(lost, gone);
    unsigned before = t.r->ncmds;
    fake_redis_reply(t.r, (int)from, rep);
    fake_reply_free(rep);
    CHECK_EQ(t.r->ncmds - before, 2);
    CHECK(fake_redis_find(t.r, before, "SMEMBERS {u:u3}:rooms") >= 0);
    CHECK(fake_redis_find(t.r, before, "SMEMBERS {u:ghost}:rooms") >= 0);

    /* NOSCRIPT: the scripts are loaded again and the same call is sent with
     * the body */
    before = t.r->ncmds;
    char again[2048];
    snprintf(again, sizeof again, "%s", t.r->cmds[from + 1].text);
    redisReply err = {.type = REDIS_REPLY_ERROR, .str = "NOSCRIPT No matching script", .len = 27};
    fake_redis_reply(t.r, (int)from + 1, &err);
    int eval = fake_redis_find(t.r, before, "EVAL ");
    CHECK(eval >= 0);
    CHECK(fake_redis_find(t.r, before, "SCRIPT LOAD") >= 0);
    if (eval >= 0) {
        const char *args = strstr(t.r->cmds[eval].text, " 1 {p"), *was = strstr(again, " 1 {p");
        CHECK(args && was && !strcmp(args, was)); /* the same keys, users and flag */
        rep = tick_reply(none, none);
        fake_redis_reply(t.r, eval, rep); /* answered: nothing more */
        fake_reply_free(rep);
    }

    fake_redis_answer_all(t.r, NULL);
    for (int i = 0; i < NUSERS; i++)
        gc__map_del(&t.cw->users, &users[i].e);
    fake_chat_stop(&t);
}

int main(void)
{
    tick();
    T_DONE();
}
