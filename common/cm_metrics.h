/*
 * cm_metrics.h - the metrics writer of both programs: counters, gauges and
 * histograms in Prometheus' text exposition format (version 0.0.4), each
 * with its # HELP and # TYPE lines, appended to a pr_buf.
 *
 * Stateless: the programs keep their own counters (per worker, per
 * context) and render them when /metrics is asked for. Any thread.
 */
#ifndef CM_METRICS_H
#define CM_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "pr.h"

void cm_metric_counter(pr_buf *out, const char *name, const char *help, uint64_t v);
/* Integral values print as integers (%.17g). */
void cm_metric_gauge(pr_buf *out, const char *name, const char *help, double v);

/* A histogram of nbuckets buckets: counts[i] observations fell in bucket i
 * (not cumulative: the writer sums them), whose upper bound is le[i] for
 * i < nbuckets - 1; the last bucket is +Inf. sum and count as Prometheus
 * wants them (count is usually the sum of counts). */
typedef struct {
    const char *name;
    const char *help;
    size_t nbuckets;
    const double *le;       /* nbuckets - 1 finite bounds, ascending */
    const uint64_t *counts; /* nbuckets */
    double sum;
    uint64_t count;
} cm_histogram;
void cm_metric_histogram(pr_buf *out, const cm_histogram *h);

#endif
