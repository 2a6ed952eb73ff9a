/*
 * api/ratelimit.c - the API's rate limiter: a token bucket per user
 * (--rate-limit per second, --rate-burst), in a hash table of users swept
 * every 30 s of the buckets that are full again (idle users cost nothing).
 * The bucket is common's (cm_tbucket.h), the hash proto's (pr_fnv1a32).
 */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "cm_clock.h"
#include "cm_tbucket.h"
#include "config.h"

#define BUCKET_SLOTS 4096
#define BUCKETS_MAX 100000 /* users tracked at once */
#define SWEEP_MS 30000

typedef struct bucket {
    struct bucket *next;
    cm_tbucket tb;
    char user[CHAT_ID_MAX + 1];
} bucket;

struct st__api_limiter {
    const st_config *cfg;
    bucket *slots[BUCKET_SLOTS];
    unsigned nbuckets;
    struct event *sweep;
};

static unsigned user_hash(const char *s)
{
    return pr_fnv1a32(s, strlen(s)) % BUCKET_SLOTS;
}

/* Drops the buckets that have refilled: their users are idle. */
static void sweep_buckets(st__api_limiter *l, uint64_t now)
{
    const st_config *cfg = l->cfg;
    for (unsigned i = 0; i < BUCKET_SLOTS; i++) {
        bucket **pp = &l->slots[i];
        while (*pp) {
            bucket *b = *pp;
            if (cm_tbucket_level(&b->tb, now, cfg->rate_limit, cfg->rate_burst) >=
                cfg->rate_burst) {
                *pp = b->next;
                pr_free(b);
                l->nbuckets--;
            } else {
                pp = &b->next;
            }
        }
    }
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sweep_buckets(arg, cm_now_ms());
}

int st__api_take_token(st__api_limiter *l, const char *user)
{
    const st_config *cfg = l->cfg;
    uint64_t now = cm_now_ms();
    unsigned slot = user_hash(user);
    bucket *b = l->slots[slot];
    while (b && strcmp(b->user, user) != 0)
        b = b->next;
    if (!b) {
        if (l->nbuckets >= BUCKETS_MAX)
            sweep_buckets(l, now);
        if (l->nbuckets >= BUCKETS_MAX)
            return 0; /* that many users busy at once: shed load */
        b = pr_calloc(1, sizeof *b);
        snprintf(b->user, sizeof b->user, "%s", user);
        cm_tbucket_init(&b->tb, cfg->rate_burst, now);
        b->next = l->slots[slot];
        l->slots[slot] = b;
        l->nbuckets++;
    }
    return cm_tbucket_take(&b->tb, now, cfg->rate_limit, cfg->rate_burst);
}

st__api_limiter *st__api_limiter_new(st_ctx *c)
{
    st__api_limiter *l = pr_calloc(1, sizeof *l);
    l->cfg = c->cfg;
    l->sweep = event_new(c->base, -1, EV_PERSIST, sweep_cb, l);
    struct timeval tv = {SWEEP_MS / 1000, 0};
    event_add(l->sweep, &tv);
    return l;
}

void st__api_limiter_free(st__api_limiter *l)
{
    for (unsigned i = 0; i < BUCKET_SLOTS; i++) {
        while (l->slots[i]) {
            bucket *b = l->slots[i];
            l->slots[i] = b->next;
            pr_free(b);
        }
    }
    event_free(l->sweep);
    pr_free(l);
}
