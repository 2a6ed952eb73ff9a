/*
 * redis.h - compatibility names of a worker's Redis link, now
 * common/cm_redis.h (its contract is there). One gw_redis per worker, used
 * only on its thread; it flushes the worker's output after each callback.
 * Phase 2 of the restructure renames the call sites and deletes this file.
 */
#ifndef GW_REDIS_H
#define GW_REDIS_H

#include "cm_redis.h"
#include "pr.h"

typedef cm_redis gw_redis;
typedef struct gw_worker gw_worker;

typedef cm_redis_reply_cb gw_redis_reply_cb;
typedef cm_redis_message_cb gw_redis_message_cb;
typedef cm_redis_event_cb gw_redis_ready_cb;
typedef cm_redis_subscribed_cb gw_redis_subscribed_cb;

/* Parsed by pr_redis_url_parse (proto/pr.h). */
typedef pr_redis_addr gw_redis_addr;

/* A command and a subscribe connection on the worker's loop, named
 * worker-INDEX in logs. */
gw_redis *gw_redis_new(gw_worker *w, const gw_redis_addr *addr, gw_redis_message_cb on_message,
                       gw_redis_ready_cb on_ready, void *arg);

#define gw_redis_free cm_redis_free
#define gw_redis_set_lost_cb cm_redis_set_lost_cb
#define gw_redis_ready cm_redis_ready
#define gw_redis_command cm_redis_command
#define gw_redis_subscribe(r, channel) ((void)cm_redis_subscribe((r), (channel)))
#define gw_redis_unsubscribe cm_redis_unsubscribe
#define gw_redis_when_subscribed cm_redis_when_subscribed

#endif
