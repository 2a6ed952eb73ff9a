/* Unit tests of common/cm_cors.c: the --cors-origin matcher. */
#include "cm_cors.h"
#include "t.h"

int main(void)
{
    pr_view a = PR_VIEW_LIT("https://a.example");
    pr_view b = PR_VIEW_LIT("http://b.example:8080");
    pr_view none = PR_VIEW_LIT("");
    CHECK_EQ(cm_cors_listed("https://a.example", a), 1);
    CHECK_EQ(cm_cors_listed(" https://x , https://a.example ,http://b.example:8080", a), 1);
    CHECK_EQ(cm_cors_listed(" https://x , https://a.example ,http://b.example:8080", b), 1);
    CHECK_EQ(cm_cors_listed("https://a.example.evil", a), 0);
    CHECK_EQ(cm_cors_listed("https://a.exampl", a), 0);
    CHECK_EQ(cm_cors_listed("*", a), 0); /* the wildcard lists nobody */
    CHECK_EQ(cm_cors_listed("", a), 0);
    CHECK_EQ(cm_cors_listed("a,,b", none), 1); /* an empty item is an empty origin */

    CHECK_EQ(cm_cors_check("", 0, a), CM_CORS_NONE);
    CHECK_EQ(cm_cors_check("*", 0, none), CM_CORS_NONE);
    CHECK_EQ(cm_cors_check("*", 0, a), CM_CORS_ANY);
    CHECK_EQ(cm_cors_check("*", 1, a), CM_CORS_ECHO);
    CHECK_EQ(cm_cors_check("https://a.example", 0, a), CM_CORS_ECHO);
    CHECK_EQ(cm_cors_check("https://a.example", 1, a), CM_CORS_ECHO);
    CHECK_EQ(cm_cors_check("https://a.example", 0, b), CM_CORS_NONE);
    T_DONE();
}
