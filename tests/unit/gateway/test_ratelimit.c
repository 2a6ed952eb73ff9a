/* Unit tests of gateway/ratelimit.c: one bucket per user, shared by every
 * holder (the workers), refilled by time; and what a take costs with two
 * threads spending the same and different users' buckets. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "app.h"
#include "t.h"

#define TAKES 2000000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
    const char *uid;
    long ok;
} spender;

static void *spend(void *arg)
{
    spender *sp = arg;
    gw_rl *b = gw_rl_acquire(sp->uid, strlen(sp->uid), 1e12, 1);
    for (long i = 0; i < TAKES; i++)
        sp->ok += gw_rl_take(b, 1, 1.0, 1e12);
    gw_rl_release(b);
    return NULL;
}

static double bench(const char *u1, const char *u2)
{
    pthread_t t1, t2;
    spender a = {u1, 0}, b = {u2, 0};
    double t0 = now_s();
    pthread_create(&t1, NULL, spend, &a);
    pthread_create(&t2, NULL, spend, &b);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK_EQ(a.ok, TAKES);
    CHECK_EQ(b.ok, TAKES);
    return (now_s() - t0) * 1e9 / TAKES; /* ns per take, per thread */
}

int main(void)
{
    /* two workers hold the same user: one bucket */
    gw_rl *w1 = gw_rl_acquire("alice", 5, 3, 1000);
    gw_rl *w2 = gw_rl_acquire("alice", 5, 3, 1000);
    gw_rl *other = gw_rl_acquire("bob", 3, 3, 1000);
    CHECK(w1 == w2);
    CHECK(w1 != other);
    CHECK_EQ(gw_rl_take(w1, 1000, 10, 3), 1);
    CHECK_EQ(gw_rl_take(w2, 1000, 10, 3), 1);
    CHECK_EQ(gw_rl_take(w1, 1000, 10, 3), 1);
    CHECK_EQ(gw_rl_take(w2, 1000, 10, 3), 0);    /* the burst is the user's */
    CHECK_EQ(gw_rl_take(other, 1000, 10, 3), 1); /* another user's is not */
    /* 10/s: one token per 100 ms, from either worker */
    CHECK_EQ(gw_rl_take(w1, 1050, 10, 3), 0);
    CHECK_EQ(gw_rl_take(w2, 1100, 10, 3), 1);
    CHECK_EQ(gw_rl_take(w1, 1100, 10, 3), 0);
    /* a worker whose clock read is older never refills backwards */
    CHECK_EQ(gw_rl_take(w2, 1090, 10, 3), 0);
    /* a long pause fills up to the burst only */
    CHECK_EQ(gw_rl_take(w1, 100000, 10, 3), 1);
    CHECK_EQ(gw_rl_take(w1, 100000, 10, 3), 1);
    CHECK_EQ(gw_rl_take(w1, 100000, 10, 3), 1);
    CHECK_EQ(gw_rl_take(w1, 100000, 10, 3), 0);
    /* the bucket lives while a worker holds the user */
    gw_rl_release(w1);
    CHECK_EQ(gw_rl_take(w2, 100000, 10, 3), 0);
    gw_rl_release(w2);
    gw_rl *again = gw_rl_acquire("alice", 5, 3, 200000);
    CHECK_EQ(gw_rl_take(again, 200000, 10, 3), 1); /* anew: full */
    gw_rl_release(again);
    gw_rl_release(other);
    gw_rl_release(NULL);

    /* many users: chains grow and every user keeps its own bucket */
    static gw_rl *many[5000];
    char id[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof id, "u%d", i);
        many[i] = gw_rl_acquire(id, strlen(id), 1, 0);
    }
    for (int i = 0; i < 5000; i++)
        CHECK_EQ(gw_rl_take(many[i], 0, 1, 1), 1);
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof id, "u%d", i);
        gw_rl *b = gw_rl_acquire(id, strlen(id), 1, 0);
        CHECK(b == many[i]);
        gw_rl_release(b);
        gw_rl_release(many[i]);
    }

    printf("take: %.1f ns (two threads, two users), %.1f ns (two threads, one user)\n",
           bench("x1", "x2"), bench("same", "same"));
    T_DONE();
}
