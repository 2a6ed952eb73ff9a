/*
 * ratelimit.c - the chat's token buckets, one per user per gateway.
 *
 * A user's sockets may land on any worker thread, so the bucket is shared by
 * the workers: a table split into stripes, each a mutex and a chained hash
 * of users. A worker takes a reference when a user's first socket arrives on
 * it and drops it when the last one leaves, so the table holds exactly the
 * users connected to this gateway. The per-event cost is one lock of one
 * stripe (rarely contended: two workers must touch users of the same stripe
 * at the same instant) and a few flops.
 *
 * Process-wide state on purpose: it is what the workers share, like the
 * hand-off inbox; nothing else in it is mutable.
 */
#include <pthread.h>
#include <string.h>

#include "cm_tbucket.h"
#include "app.h"

#define RL_STRIPES 64 /* a power of two */

struct gw_rl {
    struct gw_rl *next;
    unsigned refs; /* workers holding the user */
    cm_tbucket bucket;
    size_t hash;
    size_t len;
    char key[];
};

typedef struct {
    pthread_mutex_t mu;
    gw_rl **b;
    size_t nb, n;
} rl_stripe;

static rl_stripe stripes[RL_STRIPES];
static pthread_once_t stripes_once = PTHREAD_ONCE_INIT;

static void stripes_init(void)
{
    for (unsigned i = 0; i < RL_STRIPES; i++) {
        pthread_mutex_init(&stripes[i].mu, NULL);
        stripes[i].nb = 16;
        stripes[i].b = pr_calloc(stripes[i].nb, sizeof *stripes[i].b);
    }
}

/* The low bits pick the stripe, the others the chain. */
static rl_stripe *stripe_of(size_t hash)
{
    return &stripes[hash & (RL_STRIPES - 1)];
}
static size_t chain_of(const rl_stripe *st, size_t hash)
{
    return (hash / RL_STRIPES) & (st->nb - 1);
}

static void grow(rl_stripe *st)
{
    size_t nb = st->nb * 2;
    gw_rl **b = pr_calloc(nb, sizeof *b);
    size_t old_nb = st->nb;
    st->nb = nb;
    for (size_t i = 0; i < old_nb; i++)
        for (gw_rl *e = st->b[i], *next; e; e = next) {
            next = e->next;
            size_t c = chain_of(st, e->hash);
            e->next = b[c];
            b[c] = e;
        }
    pr_free(st->b);
    st->b = b;
}

gw_rl *gw_rl_acquire(const char *uid, size_t len, double burst, uint64_t now_ms)
{
    pthread_once(&stripes_once, stripes_init);
    size_t h = (size_t)pr_fnv1a64(uid, len);
    rl_stripe *st = stripe_of(h);
    pthread_mutex_lock(&st->mu);
    gw_rl *e = st->b[chain_of(st, h)];
    while (e && !(e->hash == h && e->len == len && !memcmp(e->key, uid, len)))
        e = e->next;
    if (!e) {
        if (st->n >= st->nb)
            grow(st);
        e = pr_malloc(sizeof *e + len + 1);
        e->refs = 0;
        cm_tbucket_init(&e->bucket, burst, now_ms); /* a user arriving anew has the full burst */
        e->hash = h;
        e->len = len;
        memcpy(e->key, uid, len);
        e->key[len] = '\0';
        size_t c = chain_of(st, h);
        e->next = st->b[c];
        st->b[c] = e;
        st->n++;
    }
    e->refs++;
    pthread_mutex_unlock(&st->mu);
    return e;
}

void gw_rl_release(gw_rl *e)
{
    if (!e)
        return;
    rl_stripe *st = stripe_of(e->hash);
    pthread_mutex_lock(&st->mu);
    if (--e->refs == 0) {
        for (gw_rl **pp = &st->b[chain_of(st, e->hash)]; *pp; pp = &(*pp)->next)
            if (*pp == e) {
                *pp = e->next;
                break;
            }
        st->n--;
        pr_free(e);
    }
    pthread_mutex_unlock(&st->mu);
}

int gw_rl_take(gw_rl *e, uint64_t now_ms, double rate, double burst)
{
    rl_stripe *st = stripe_of(e->hash);
    pthread_mutex_lock(&st->mu);
    int ok = cm_tbucket_take(&e->bucket, now_ms, rate, burst);
    pthread_mutex_unlock(&st->mu);
    return ok;
}
