/* Unit tests of gateway/theap.c: timers with their own deadlines fire in
 * deadline order, removed ones never fire, a callback may re-add its node. */
#include <stdlib.h>

#include "gw_loop.h"
#include "t.h"

#define N 300

typedef struct {
    gw_th_node node;
    int id;
    int fired;
    int readd; /* times the callback adds it again */
} item;

static item items[N];
static uint64_t last_deadline;
static int order_ok = 1, nfired;

static void on_fire(gw_th *th, gw_th_node *n)
{
    item *it = GW_CONTAINER_OF(n, item, node);
    if (n->deadline_ms < last_deadline)
        order_ok = 0;
    last_deadline = n->deadline_ms;
    CHECK(!gw_th_queued(n)); /* removed before its callback */
    it->fired++;
    nfired++;
    if (it->readd-- > 0)
        gw_th_add(th, n, gw__now_ms(th->w) + 5);
}

/* The root is the earliest queued deadline; every index is right. */
static int heap_ok(const gw_th *th)
{
    for (size_t i = 0; i < th->n; i++) {
        if (th->v[i]->idx != i + 1)
            return 0;
        if (i > 0 && th->v[(i - 1) / 2]->deadline_ms > th->v[i]->deadline_ms)
            return 0;
    }
    return 1;
}

int main(void)
{
    gw_worker w;
    memset(&w, 0, sizeof w);
    w.base = event_base_new();
    w.flush_scheduled = 1; /* no flush pass in this test */
    gw_th th;
    gw_th_init(&th, &w, on_fire);

    srand(7);
    uint64_t now = gw__now_ms(&w);
    for (int i = 0; i < N; i++) {
        items[i].id = i;
        gw_th_add(&th, &items[i].node, now + 10 + (uint64_t)(rand() % 60));
    }
    CHECK_EQ(th.n, N);
    CHECK(heap_ok(&th));
    /* re-arming moves a node, it does not add it twice */
    gw_th_add(&th, &items[0].node, now + 1);
    CHECK_EQ(th.n, N);
    CHECK(th.v[0] == &items[0].node);
    CHECK(heap_ok(&th));
    /* remove every third one, from anywhere in the heap */
    for (int i = 1; i < N; i += 3)
        gw_th_del(&th, &items[i].node);
    gw_th_del(&th, &items[1].node); /* twice: a no-op */
    CHECK(heap_ok(&th));
    CHECK_EQ(th.n, N - N / 3);
    items[2].readd = 2;

    uint64_t deadline = now + 2000;
    while (th.n > 0 && gw__now_ms(&w) < deadline)
        event_base_loop(w.base, EVLOOP_ONCE);
    CHECK_EQ(th.n, 0);
    CHECK(order_ok);
    for (int i = 0; i < N; i++) {
        if (i % 3 == 1)
            CHECK_EQ(items[i].fired, 0);
        else
            CHECK_EQ(items[i].fired, i == 2 ? 3 : 1);
    }

    /* dispose leaves nodes unqueued */
    gw_th_add(&th, &items[5].node, gw__now_ms(&w) + 100000);
    gw_th_dispose(&th);
    CHECK(!gw_th_queued(&items[5].node));
    event_base_free(w.base);
    T_DONE();
}
