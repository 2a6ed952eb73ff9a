/* redis.c - a worker's Redis link (common/cm_redis.c) on the worker's loop. */
#include "redis.h"

#include <stdio.h>

#include "gw.h"

static void flush(void *w)
{
    gw__worker_schedule_flush(w);
}

gw_redis *gw_redis_new(gw_worker *w, const gw_redis_addr *addr, gw_redis_message_cb on_message,
                       gw_redis_ready_cb on_ready, void *arg)
{
    char name[32];
    snprintf(name, sizeof name, "worker-%d", w->index);
    cm_redis_options o = {
        .name = name,
        .on_message = on_message,
        .on_ready = on_ready,
        .arg = arg,
        .after_cb = flush,
        .after_arg = w,
    };
    return cm_redis_new(w->base, addr, &o);
}
