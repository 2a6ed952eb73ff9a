/* Unit tests of gateway/static.c: the request path sanitizer, the MIME
 * table and If-None-Match matching. */
#include <string.h>

#include "gw_static.h"
#include "t.h"

/* clean(path) into buf: the name, or NULL when refused */
static char buf[256];
static const char *clean(const char *path)
{
    int n = gw__static_clean_path(pr_view_make(path, strlen(path)), buf, sizeof buf);
    return n >= 0 && (size_t)n == strlen(buf) ? buf : NULL;
}

static int refused(const char *path)
{
    return gw__static_clean_path(pr_view_make(path, strlen(path)), buf, sizeof buf) == PR_EINVAL;
}

static int match(const char *header, const char *etag)
{
    return gw__static_etag_match(pr_view_make(header, strlen(header)), etag);
}

int main(void)
{
    /* names */
    CHECK(!strcmp(clean("/"), "index.html"));
    CHECK(!strcmp(clean("/index.html"), "index.html"));
    CHECK(!strcmp(clean("/assets/app-1a2b.js"), "assets/app-1a2b.js"));
    CHECK(!strcmp(clean("/docs/"), "docs/index.html"));
    CHECK(!strcmp(clean("/a%20b.txt"), "a b.txt"));
    CHECK(!strcmp(clean("/a%2Fb"), "a/b"));                   /* an encoded '/' separates too */
    CHECK(!strcmp(clean("/x..y"), "x..y"));                   /* dots inside a name are a name */
    CHECK(!strcmp(clean("/.well-known/x"), ".well-known/x")); /* not loaded, so 404 */

    /* traversal, however spelled */
    CHECK(refused("/.."));
    CHECK(refused("/../etc/passwd"));
    CHECK(refused("/assets/../../etc/passwd"));
    CHECK(refused("/%2e%2e/etc/passwd"));
    CHECK(refused("/%2E%2E/etc/passwd"));
    CHECK(refused("/.%2e/x"));
    CHECK(refused("/assets/%2e%2e"));
    CHECK(refused("/a/%2e%2e%2f%2e%2e%2fetc"));
    CHECK(refused("/./index.html"));
    CHECK(refused("/a/."));
    CHECK(refused("//etc/passwd"));
    CHECK(refused("/a//b"));
    CHECK(refused("/a%2f%2fb"));
    CHECK(refused("/..%5c..%5cwindows")); /* backslash */
    CHECK(refused("/a\\b"));
    /* NUL and control bytes, bad escapes, not rooted */
    CHECK(refused("/index.html%00.png"));
    CHECK(refused("/a%0d%0aSet-Cookie:x"));
    CHECK(refused("/a%1"));
    CHECK(refused("/a%zz"));
    CHECK(refused("/a%"));
    CHECK(refused(""));
    CHECK(refused("index.html"));
    CHECK(refused("http://host/index.html"));
    CHECK_EQ(gw__static_clean_path(pr_view_make("/index.html\0x", 13), buf, sizeof buf), PR_EINVAL);
    /* too long for the buffer */
    char small[8];
    CHECK_EQ(gw__static_clean_path(PR_VIEW_LIT("/abcdefgh"), small, sizeof small), PR_ETOOBIG);
    CHECK_EQ(gw__static_clean_path(PR_VIEW_LIT("/abc/"), small, sizeof small), PR_ETOOBIG);
    CHECK_EQ(gw__static_clean_path(PR_VIEW_LIT("/abcdef"), small, sizeof small), 6);

    /* MIME types by extension, case-insensitive, in the last segment only */
    CHECK(!strcmp(gw__static_mime("index.html"), "text/html; charset=utf-8"));
    CHECK(!strcmp(gw__static_mime("assets/app.JS"), "text/javascript; charset=utf-8"));
    CHECK(!strcmp(gw__static_mime("assets/app.css"), "text/css; charset=utf-8"));
    CHECK(!strcmp(gw__static_mime("a.js.map"), "application/json; charset=utf-8"));
    CHECK(!strcmp(gw__static_mime("logo.svg"), "image/svg+xml"));
    CHECK(!strcmp(gw__static_mime("f.woff2"), "font/woff2"));
    CHECK(!strcmp(gw__static_mime("icon.png"), "image/png"));
    CHECK(!strcmp(gw__static_mime("README"), "application/octet-stream"));
    CHECK(!strcmp(gw__static_mime(".html"), "application/octet-stream"));
    CHECK(!strcmp(gw__static_mime("d.html/x"), "application/octet-stream"));
    CHECK(!strcmp(gw__static_mime("x.exe"), "application/octet-stream"));

    /* If-None-Match */
    CHECK(match("\"abc\"", "\"abc\""));
    CHECK(match("W/\"abc\"", "\"abc\""));
    CHECK(match("\"x\", \"abc\"", "\"abc\""));
    CHECK(match(" \"x\" ,W/\"abc\" ", "\"abc\""));
    CHECK(match("*", "\"abc\""));
    CHECK(!match("\"abcd\"", "\"abc\""));
    CHECK(!match("abc", "\"abc\""));
    CHECK(!match("\"ab\"", "\"abc\""));
    CHECK(!match("", "\"abc\""));
    CHECK(!match("W/", "\"abc\""));
    T_DONE();
}
