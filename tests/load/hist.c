/* chat-load: latency histogram, 16 sub-buckets per power of two of
 * microseconds (about 6% wide), up to 2^40 us. */
#include <math.h>

#include "load.h"

static unsigned hist_bucket(uint64_t us)
{
    if (us < 16)
        return (unsigned)us;
    unsigned p = 63 - (unsigned)__builtin_clzll(us); /* >= 4 */
    unsigned sub = (unsigned)(us >> (p - 4)) & 15;
    unsigned b = (p - 3) * 16 + sub;
    return b < HBUCKETS ? b : HBUCKETS - 1;
}

static uint64_t hist_bucket_top(unsigned b)
{
    if (b < 16)
        return b;
    unsigned p = b / 16 + 3, sub = b % 16;
    return ((uint64_t)(16 + sub + 1) << (p - 4)) - 1;
}

void ld_hist_add(ld_hist *h, uint64_t us)
{
    h->n[hist_bucket(us)]++;
    h->count++;
    if (us > h->max_us)
        h->max_us = us;
}

double ld_hist_pct(const ld_hist *h, double pct)
{
    if (h->count == 0)
        return 0;
    uint64_t want = (uint64_t)ceil(h->count * pct / 100.0), seen = 0;
    for (unsigned b = 0; b < HBUCKETS; b++) {
        seen += h->n[b];
        if (seen >= want) {
            uint64_t top = hist_bucket_top(b);
            return (double)(top < h->max_us ? top : h->max_us) / 1000.0;
        }
    }
    return (double)h->max_us / 1000.0;
}

void ld_hist_merge(ld_hist *a, const ld_hist *b)
{
    for (unsigned i = 0; i < HBUCKETS; i++)
        a->n[i] += b->n[i];
    a->count += b->count;
    if (b->max_us > a->max_us)
        a->max_us = b->max_us;
}
