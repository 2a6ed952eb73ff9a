/*
 * cm_tbucket.h - a token bucket: rate tokens per second up to burst, one
 * taken per event. The caller owns it and any locking (the gateway's
 * per-user buckets are shared by workers under a stripe's mutex); rate and
 * burst are passed on each call so a table of buckets stores none.
 */
#ifndef CM_TBUCKET_H
#define CM_TBUCKET_H

#include <stdint.h>

typedef struct {
    double tokens;
    uint64_t refill_ms; /* the cm_now_ms() of the last refill */
} cm_tbucket;

/* Full: a newcomer has the whole burst. */
void cm_tbucket_init(cm_tbucket *b, double burst, uint64_t now_ms);
/* Refills for the time since the last call (never backwards: threads read
 * the monotonic clock apart), then takes one token: 1, or 0 when empty. */
int cm_tbucket_take(cm_tbucket *b, uint64_t now_ms, double rate, double burst);
/* The tokens the bucket would hold at now_ms, without changing it (a full
 * bucket belongs to an idle user and may be dropped). */
double cm_tbucket_level(const cm_tbucket *b, uint64_t now_ms, double rate, double burst);

#endif
