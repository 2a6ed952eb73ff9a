/* Unit tests of common/cm_log.c: line shape, levels, the label, rate limits. */
#include "cm_log.h"
#include "t.h"
#include "t_capture.h"

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

int main(void)
{
    const char *out;
    CHECK_EQ(cm_log_parse_level("debug"), CM_LOG_DEBUG);
    CHECK_EQ(cm_log_parse_level("error"), CM_LOG_ERROR);
    CHECK_EQ(cm_log_parse_level("loud"), -1);

    t_capture_begin(2);
    CM_INFO("event=a n=%d", 1);
    cm_log_set_label("replica", "r-1");
    CM_DEBUG("event=hidden");
    CM_WARN("event=b");
    out = t_capture_end();
    CHECK_EQ(count_lines(out), 2);
    CHECK(!strncmp(out, "ts=", 3));
    CHECK(strstr(out, "Z level=info node=- event=a n=1\n") != NULL);
    CHECK(strstr(out, "Z level=warn replica=r-1 event=b\n") != NULL);
    CHECK(strstr(out, "hidden") == NULL);

    /* at most 10 lines per second per call site */
    t_capture_begin(2);
    for (int i = 0; i < 100; i++)
        CM_WARN_RATELIMITED("event=flood i=%d", i);
    out = t_capture_end();
    CHECK(count_lines(out) >= 10 && count_lines(out) <= 20); /* a second may turn */

    /* a line too long is cut, still one line */
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    t_capture_begin(2);
    CM_ERROR("event=big v=%s", big);
    out = t_capture_end();
    CHECK_EQ(count_lines(out), 1);
    CHECK(strlen(out) < 1024);
    T_DONE();
}
