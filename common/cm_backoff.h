/*
 * cm_backoff.h - the reconnect delay of every link to Redis and PostgreSQL:
 * 100 ms doubling to 5 s, each wait drawn in 50..100% of that so processes
 * that lost a server together do not come back in step.
 */
#ifndef CM_BACKOFF_H
#define CM_BACKOFF_H

/* The wait before attempt failures + 1 (failures = 0: the first retry).
 * seed is the caller's rand_r state (cm_backoff_seed). */
unsigned cm_backoff_ms(unsigned failures, unsigned *seed);
/* Arms timer (a libevent timer) for the next attempt after *failures
 * failures in a row, and counts one more. */
struct event;
void cm_backoff_arm(struct event *timer, unsigned *failures, unsigned *seed);
/* A seed that differs between processes and objects (p: the object). */
unsigned cm_backoff_seed(const void *p);

#endif
