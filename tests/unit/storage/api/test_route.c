/* Unit tests of storage/api/api.c's routing: the route table matched by
 * method and path (templates with {roomId}, {userId}, {seq}), 404 versus
 * 405 with the Allow list, raw percent-encoded segments, trailing slashes
 * and too many segments, then the path parameters decoded. api.c is
 * included for its static split/route_match/find_route/parse_path; none of
 * them touches libevent's request. */
#include <string.h>

#include "api/api.c"
#include "t.h"

static seg params[2];
static char allow[64];

static const api_route *find(enum evhttp_cmd_type m, const char *path)
{
    memset(params, 0, sizeof params);
    memset(allow, 'X', sizeof allow);
    return find_route(m, path, params, allow, sizeof allow);
}

/* The route of m and path is fn (allow is only read when there is none). */
static int routes_to(enum evhttp_cmd_type m, const char *path, api_handler fn)
{
    const api_route *r = find(m, path);
    return r && r->fn == fn && r->method == m;
}

/* No route: 404 (allow empty). */
static int not_found(enum evhttp_cmd_type m, const char *path)
{
    return find(m, path) == NULL && allow[0] == '\0';
}

/* No route for m, but the path has others: 405 with this Allow list. */
static int not_allowed(enum evhttp_cmd_type m, const char *path, const char *want)
{
    return find(m, path) == NULL && !strcmp(allow, want);
}

static int param(int i, const char *want)
{
    return params[i].n == strlen(want) && !memcmp(params[i].p, want, params[i].n);
}

static void test_split(void)
{
    seg s[API_MAX_SEGMENTS];
    CHECK_EQ(split("/api/rooms", s, API_MAX_SEGMENTS), 2);
    CHECK(s[0].n == 3 && !memcmp(s[0].p, "api", 3));
    CHECK(s[1].n == 5 && !memcmp(s[1].p, "rooms", 5));
    CHECK_EQ(split("/", s, API_MAX_SEGMENTS), 1); /* one empty segment */
    CHECK_EQ(s[0].n, 0);
    CHECK_EQ(split("/a/", s, API_MAX_SEGMENTS), 2); /* trailing slash: empty last */
    CHECK_EQ(s[1].n, 0);
    CHECK_EQ(split("/a//b", s, API_MAX_SEGMENTS), 3);
    CHECK_EQ(s[1].n, 0);
    CHECK_EQ(split("a/b", s, API_MAX_SEGMENTS), -1); /* not absolute */
    CHECK_EQ(split("", s, API_MAX_SEGMENTS), -1);
    CHECK_EQ(split("/1/2/3/4/5/6/7/8", s, API_MAX_SEGMENTS), 8); /* the most */
    CHECK_EQ(split("/1/2/3/4/5/6/7/8/9", s, API_MAX_SEGMENTS), -1);
    CHECK_EQ(split("/1/2/3/4/5/6/7/", s, API_MAX_SEGMENTS), 8);
    CHECK_EQ(split("/1/2/3/4/5/6/7/8/", s, API_MAX_SEGMENTS), -1);
}

/* Every route of the table, by method and path, with what it reads. */
static void test_table(void)
{
    const api_route *r;
    r = find(EVHTTP_REQ_GET, "/api/rooms");
    CHECK(r && r->fn == st__api_list_rooms && !r->body && r->query == QUERY_CURSOR);
    r = find(EVHTTP_REQ_POST, "/api/rooms");
    CHECK(r && r->fn == st__api_create_group && r->body && r->query == QUERY_NONE);
    r = find(EVHTTP_REQ_GET, "/api/rooms/r1/messages");
    CHECK(r && r->fn == st__api_list_messages && !r->body && r->query == QUERY_BEFORE);
    CHECK(param(0, "r1"));
    r = find(EVHTTP_REQ_POST, "/api/rooms/room-2/messages");
    CHECK(r && r->fn == st__api_post_message && r->body && r->query == QUERY_NONE);
    CHECK(param(0, "room-2"));
    r = find(EVHTTP_REQ_GET, "/api/rooms/r1/messages/42/receipts");
    CHECK(r && r->fn == st__api_list_receipts && !r->body && r->query == QUERY_NONE);
    CHECK(param(0, "r1") && param(1, "42"));
    r = find(EVHTTP_REQ_POST, "/api/rooms/r1/members");
    CHECK(r && r->fn == st__api_add_member && r->body);
    CHECK(param(0, "r1"));
    r = find(EVHTTP_REQ_DELETE, "/api/rooms/r1/members/u7");
    CHECK(r && r->fn == st__api_remove_member && !r->body && r->query == QUERY_NONE);
    CHECK(param(0, "r1") && param(1, "u7"));
    r = find(EVHTTP_REQ_POST, "/api/dm");
    CHECK(r && r->fn == st__api_open_dm && r->body);
    /* each handler once: one route per method and path */
    for (size_t i = 0; i < NROUTES; i++)
        for (size_t j = i + 1; j < NROUTES; j++)
            CHECK(routes[i].fn != routes[j].fn &&
                  (routes[i].method != routes[j].method || strcmp(routes[i].path, routes[j].path)));
    CHECK_EQ(NROUTES, 8);
}

typedef struct {
    enum evhttp_cmd_type method;
    const char *path;
    const char *allow; /* 405: the Allow list; NULL: 404 */
} miss;

static const miss misses[] = {
    /* a path that exists with other methods: 405 and the methods it has */
    {EVHTTP_REQ_DELETE, "/api/rooms", "GET, POST"},
    {EVHTTP_REQ_PUT, "/api/rooms", "GET, POST"},
    {EVHTTP_REQ_PATCH, "/api/rooms/r1/messages", "GET, POST"},
    {EVHTTP_REQ_HEAD, "/api/rooms/r1/messages/1/receipts", "GET"},
    {EVHTTP_REQ_POST, "/api/rooms/r1/messages/1/receipts", "GET"},
    {EVHTTP_REQ_GET, "/api/rooms/r1/members", "POST"},
    {EVHTTP_REQ_DELETE, "/api/rooms/r1/members", "POST"},
    {EVHTTP_REQ_GET, "/api/rooms/r1/members/u1", "DELETE"},
    {EVHTTP_REQ_GET, "/api/dm", "POST"},
    /* no route at all: 404 */
    {EVHTTP_REQ_GET, NULL, NULL}, /* no path */
    {EVHTTP_REQ_GET, "", NULL},
    {EVHTTP_REQ_GET, "/", NULL},
    {EVHTTP_REQ_GET, "/api", NULL},
    {EVHTTP_REQ_GET, "/api/room", NULL},
    {EVHTTP_REQ_GET, "/api/roomsx", NULL},
    {EVHTTP_REQ_GET, "/API/rooms", NULL}, /* case counts */
    {EVHTTP_REQ_GET, "api/rooms", NULL},  /* not absolute */
    {EVHTTP_REQ_GET, "//api/rooms", NULL},
    {EVHTTP_REQ_GET, "/api/rooms/r1", NULL},
    {EVHTTP_REQ_GET, "/api/rooms/r1/unknown", NULL},
    {EVHTTP_REQ_GET, "/api/rooms/r1/messages/1", NULL},
    {EVHTTP_REQ_GET, "/api/rooms/r1/messages/1/receipts/x", NULL},
    {EVHTTP_REQ_POST, "/api/dm/x", NULL},
    {EVHTTP_REQ_GET, "/health", NULL}, /* not the API's */
    /* trailing slashes: an empty segment more, no route */
    {EVHTTP_REQ_GET, "/api/rooms/", NULL},
    {EVHTTP_REQ_POST, "/api/dm/", NULL},
    {EVHTTP_REQ_GET, "/api/rooms/r1/messages/", NULL},
    {EVHTTP_REQ_DELETE, "/api/rooms/r1/members/u1/", NULL},
    /* an empty path parameter matches no template */
    {EVHTTP_REQ_GET, "/api/rooms//messages", NULL},
    {EVHTTP_REQ_DELETE, "/api/rooms/r1/members/", NULL},
    {EVHTTP_REQ_GET, "/api/rooms/r1/messages//receipts", NULL},
    /* too many segments (more than API_MAX_SEGMENTS) */
    {EVHTTP_REQ_GET, "/api/rooms/r1/messages/1/receipts/a/b/c", NULL},
    {EVHTTP_REQ_GET, "/a/b/c/d/e/f/g/h", NULL},
    /* a literal segment is compared raw: escapes are not decoded */
    {EVHTTP_REQ_GET, "/%61pi/rooms", NULL},
    {EVHTTP_REQ_GET, "/api/room%73", NULL},
    {EVHTTP_REQ_GET, "/api%2Frooms", NULL},
};

/* Requests of no route: 404, or 405 with the Allow list. */
static void test_misses(void)
{
    for (size_t i = 0; i < sizeof misses / sizeof misses[0]; i++) {
        const miss *m = &misses[i];
        int ok =
            m->allow ? not_allowed(m->method, m->path, m->allow) : not_found(m->method, m->path);
        if (!ok)
            fprintf(stderr, "miss %zu: %s: allow \"%s\", want %s\n", i,
                    m->path ? m->path : "(null)", allow, m->allow ? m->allow : "404");
        CHECK(ok);
    }
    /* the same paths with their own methods are found, whatever the order */
    CHECK(routes_to(EVHTTP_REQ_POST, "/api/rooms", st__api_create_group));
    CHECK(routes_to(EVHTTP_REQ_GET, "/api/rooms", st__api_list_rooms));
    CHECK(routes_to(EVHTTP_REQ_POST, "/api/rooms/r1/messages", st__api_post_message));
    CHECK(routes_to(EVHTTP_REQ_DELETE, "/api/rooms/r1/members/u1", st__api_remove_member));
    /* a short buffer is cut, never overrun */
    char small[6];
    memset(small, 'X', sizeof small);
    CHECK(find_route(EVHTTP_REQ_PUT, "/api/rooms", params, small, 5) == NULL);
    CHECK(!strcmp(small, "GET,"));
    CHECK(small[5] == 'X');
}

/* Path parameters are taken raw (an escaped '/' stays in its segment) and
 * decoded by parse_path: ids by st__api_decode_id, {seq} as a seq >= 1. */
static void test_params(void)
{
    st__api_req q;
    const api_route *r;

    r = find(EVHTTP_REQ_GET, "/api/rooms/a%2Fb/messages");
    CHECK(r && r->fn == st__api_list_messages);
    CHECK(param(0, "a%2Fb"));
    memset(&q, 0, sizeof q);
    CHECK(r && parse_path(&q, r, params));
    CHECK(!strcmp(q.arg[0], "a/b"));

    r = find(EVHTTP_REQ_DELETE, "/api/rooms/%72%31/members/u%2D1");
    CHECK(r && r->fn == st__api_remove_member);
    memset(&q, 0, sizeof q);
    CHECK(r && parse_path(&q, r, params));
    CHECK(!strcmp(q.arg[0], "r1") && !strcmp(q.arg[1], "u-1"));

    r = find(EVHTTP_REQ_GET, "/api/rooms/r%201/messages"); /* a space: no id */
    memset(&q, 0, sizeof q);
    CHECK(r && !parse_path(&q, r, params));
    r = find(EVHTTP_REQ_GET, "/api/rooms/r%zz/messages"); /* a bad escape */
    CHECK(r && !parse_path(&q, r, params));
    r = find(EVHTTP_REQ_GET, "/api/rooms/r%2/messages"); /* a cut escape */
    CHECK(r && !parse_path(&q, r, params));

    /* {seq}: the second parameter of the receipts route */
    r = find(EVHTTP_REQ_GET, "/api/rooms/r1/messages/42/receipts");
    memset(&q, 0, sizeof q);
    CHECK(r && parse_path(&q, r, params));
    CHECK(!strcmp(q.arg[0], "r1"));
    CHECK_EQ(q.num, 42);
    CHECK(q.arg[1][0] == '\0'); /* a seq is no id */
    const char *bad[] = {"0", "-1", "01", "x", "1.5", "9007199254740992", "%31"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[96];
        snprintf(path, sizeof path, "/api/rooms/r1/messages/%s/receipts", bad[i]);
        r = find(EVHTTP_REQ_GET, path);
        memset(&q, 0, sizeof q);
        CHECK(r != NULL);
        CHECK(r && !parse_path(&q, r, params));
    }
    /* a bad room id before a good seq */
    r = find(EVHTTP_REQ_GET, "/api/rooms/r%00/messages/1/receipts");
    memset(&q, 0, sizeof q);
    CHECK(r && !parse_path(&q, r, params));
    /* routes without parameters */
    r = find(EVHTTP_REQ_GET, "/api/rooms");
    memset(&q, 0, sizeof q);
    CHECK(r && parse_path(&q, r, params));
}

int main(void)
{
    test_split();
    test_table();
    test_misses();
    test_params();
    T_DONE();
}
