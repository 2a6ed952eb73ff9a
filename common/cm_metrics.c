/* cm_metrics.c - Prometheus text lines. */
#include "cm_metrics.h"

static void head(pr_buf *out, const char *name, const char *help, const char *type)
{
    pr_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void cm_metric_counter(pr_buf *out, const char *name, const char *help, uint64_t v)
{
    head(out, name, help, "counter");
    pr_buf_appendf(out, "%s %llu\n", name, (unsigned long long)v);
}

void cm_metric_gauge(pr_buf *out, const char *name, const char *help, double v)
{
    head(out, name, help, "gauge");
    pr_buf_appendf(out, "%s %.17g\n", name, v);
}

void cm_metric_histogram(pr_buf *out, const cm_histogram *h)
{
    head(out, h->name, h->help, "histogram");
    uint64_t cum = 0;
    for (size_t i = 0; i < h->nbuckets; i++) {
        cum += h->counts[i];
        if (i + 1 < h->nbuckets)
            pr_buf_appendf(out, "%s_bucket{le=\"%g\"} %llu\n", h->name, h->le[i],
                           (unsigned long long)cum);
        else
            pr_buf_appendf(out, "%s_bucket{le=\"+Inf\"} %llu\n", h->name, (unsigned long long)cum);
    }
    pr_buf_appendf(out, "%s_sum %.17g\n%s_count %llu\n", h->name, h->sum, h->name,
                   (unsigned long long)h->count);
}
