/*
 * services.c - what app.h lends an application beyond its sockets: the
 * worker it runs on, shared output bytes and its counters. Thin on purpose:
 * the app reaches the transport's internals (gw.h) only through these.
 */
#include "gw_worker.h"

int gw_worker_index(const gw_worker *w)
{
    return w->index;
}

const gw_config *gw_worker_config(const gw_worker *w)
{
    return w->cfg;
}

struct event_base *gw_worker_base(gw_worker *w)
{
    return w->base;
}

void *gw_worker_app(const gw_worker *w)
{
    return w->app_worker;
}

uint64_t gw_worker_now_ms(gw_worker *w)
{
    return gw__now_ms(w);
}

void gw_worker_schedule_flush(gw_worker *w)
{
    gw__worker_schedule_flush(w);
}

void gw_app_count(gw_worker *w, unsigned counter, uint64_t n)
{
    if (counter < GW_APP_COUNTERS_MAX)
        GW_STAT_ADD(w, app[counter], n);
}

gw_blob *gw_blob_sio(pr_view packet)
{
    return gw__blob_eio(EIO_MESSAGE, 0, packet);
}

gw_blob *gw_blob_ref(gw_blob *b)
{
    return gw__blob_ref(b);
}

void gw_blob_unref(gw_blob *b)
{
    gw__blob_unref(b);
}
