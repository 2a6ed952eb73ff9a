/* cm_tbucket.c - token bucket arithmetic. */
#include "cm_tbucket.h"

void cm_tbucket_init(cm_tbucket *b, double burst, uint64_t now_ms)
{
    b->tokens = burst;
    b->refill_ms = now_ms;
}

double cm_tbucket_level(const cm_tbucket *b, uint64_t now_ms, double rate, double burst)
{
    double t = b->tokens;
    if (now_ms > b->refill_ms)
        t += (double)(now_ms - b->refill_ms) * rate / 1000.0;
    return t > burst ? burst : t;
}

int cm_tbucket_take(cm_tbucket *b, uint64_t now_ms, double rate, double burst)
{
    b->tokens = cm_tbucket_level(b, now_ms, rate, burst);
    if (now_ms > b->refill_ms)
        b->refill_ms = now_ms;
    if (b->tokens < 1.0)
        return 0;
    b->tokens -= 1.0;
    return 1;
}
