/*
 * gw_worker.h - the top of the transport (worker.c): a worker's life cycle,
 * accepting, the flush pass, and the wiring of the layers below (which
 * handler each layer calls upward). The order of the layers is in
 * gw_loop.h; main.c and the fuzz harness drive the transport from here.
 */
#ifndef GW_WORKER_H
#define GW_WORKER_H

#include "gw_sio.h"

gw_worker *gw__worker_new(int index, const gw_config *cfg, const gw_app *app, int listen_fd);
void gw__workers_set(gw_worker **list, int n, int max_conns);
int gw__worker_run(gw_worker *w);
void gw__worker_free(gw_worker *w);
void gw__worker_reap(gw_worker *w); /* frees the graveyards */
int gw__total_connections(void);
int gw__app_ready(void); /* every worker's app says ready (e.g. Redis is up) */

/* metrics text for /metrics (Prometheus exposition format) */
void gw__metrics_render(pr_buf *out);

#endif
