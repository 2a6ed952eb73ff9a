/* Unit tests of common/cm_tbucket.c. */
#include "t.h"
#include "cm_tbucket.h"

int main(void)
{
    cm_tbucket b;
    cm_tbucket_init(&b, 3, 1000);
    /* the burst at once, then nothing */
    CHECK_EQ(cm_tbucket_take(&b, 1000, 10, 3), 1);
    CHECK_EQ(cm_tbucket_take(&b, 1000, 10, 3), 1);
    CHECK_EQ(cm_tbucket_take(&b, 1000, 10, 3), 1);
    CHECK_EQ(cm_tbucket_take(&b, 1000, 10, 3), 0);
    /* 10 per second: one token per 100 ms */
    CHECK_EQ(cm_tbucket_take(&b, 1050, 10, 3), 0);
    CHECK_EQ(cm_tbucket_take(&b, 1100, 10, 3), 1);
    CHECK_EQ(cm_tbucket_take(&b, 1100, 10, 3), 0);
    /* a clock read earlier on another thread refills nothing, takes nothing back */
    CHECK_EQ(cm_tbucket_take(&b, 900, 10, 3), 0);
    CHECK_EQ(b.refill_ms, 1100);
    /* a long pause fills up to the burst only */
    CHECK(cm_tbucket_level(&b, 100000, 10, 3) == 3.0);
    CHECK(cm_tbucket_level(&b, 1150, 10, 3) > 0.49 && cm_tbucket_level(&b, 1150, 10, 3) < 0.51);
    CHECK_EQ(cm_tbucket_take(&b, 100000, 10, 3), 1);
    CHECK_EQ(cm_tbucket_take(&b, 100000, 10, 3), 1);
    CHECK_EQ(cm_tbucket_take(&b, 100000, 10, 3), 1);
    CHECK_EQ(cm_tbucket_take(&b, 100000, 10, 3), 0);
    T_DONE();
}
