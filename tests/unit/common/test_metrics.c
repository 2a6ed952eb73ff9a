/* Unit tests of common/cm_metrics.c: Prometheus text lines. */
#include "cm_metrics.h"
#include "t.h"

int main(void)
{
    pr_buf b;
    pr_buf_init(&b, 1 << 16);
    cm_metric_counter(&b, "x_total", "Things.", 42);
    CHECK_MEM(b.ptr, b.len, "# HELP x_total Things.\n# TYPE x_total counter\nx_total 42\n");
    pr_buf_reset(&b);
    cm_metric_gauge(&b, "g", "A gauge.", 3);
    CHECK_MEM(b.ptr, b.len, "# HELP g A gauge.\n# TYPE g gauge\ng 3\n");
    pr_buf_reset(&b);
    cm_metric_gauge(&b, "g", "A gauge.", 0.25);
    CHECK_MEM(b.ptr, b.len, "# HELP g A gauge.\n# TYPE g gauge\ng 0.25\n");
    pr_buf_reset(&b);
    cm_metric_counter(&b, "big", "Big.", 18446744073709551615ull);
    CHECK(strstr(b.ptr, "big 18446744073709551615\n") != NULL);
    pr_buf_reset(&b);

    static const double le[] = {0.005, 1, 10};
    uint64_t counts[] = {1, 2, 0, 4};
    cm_metric_histogram(&b, &(cm_histogram){"h_seconds", "Latency.", 4, le, counts, 12.5, 7});
    CHECK_MEM(b.ptr, b.len,
              "# HELP h_seconds Latency.\n# TYPE h_seconds histogram\n"
              "h_seconds_bucket{le=\"0.005\"} 1\n"
              "h_seconds_bucket{le=\"1\"} 3\n"
              "h_seconds_bucket{le=\"10\"} 3\n"
              "h_seconds_bucket{le=\"+Inf\"} 7\n"
              "h_seconds_sum 12.5\n"
              "h_seconds_count 7\n");
    pr_buf_dispose(&b);
    T_DONE();
}
