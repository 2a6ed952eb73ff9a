/* cm_backoff.c - jittered exponential backoff. */
#include "cm_backoff.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "cm_clock.h"

unsigned cm_backoff_ms(unsigned failures, unsigned *seed)
{
    unsigned shift = failures < 6 ? failures : 6;
    unsigned base = 100u << shift;
    if (base > 5000)
        base = 5000;
    return base / 2 + (unsigned)(rand_r(seed) % (base / 2 + 1));
}

void cm_backoff_arm(struct event *timer, unsigned *failures, unsigned *seed)
{
    unsigned ms = cm_backoff_ms((*failures)++, seed);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(timer, &tv);
}

unsigned cm_backoff_seed(const void *p)
{
    return (unsigned)cm_now_us() ^ (unsigned)(uintptr_t)p ^ ((unsigned)getpid() << 16);
}
