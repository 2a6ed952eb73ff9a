/* Unit tests for proto/pr_map.h: find, insert, remove, growth, iteration. */
#include "pr_map.h"
#include "t.h"

#include <stdio.h>

/* A record with its key inside, of any bytes (the engine's sids live so). */
typedef struct {
    int value;
    pr_map_entry link;
    size_t len;
    char key[16];
    int seen;
} rec;

static rec *rec_of(const pr_map_entry *e)
{
    return (rec *)((char *)e - offsetof(rec, link));
}

static pr_view rec_key(const pr_map_entry *e)
{
    const rec *r = rec_of(e);
    return pr_view_make(r->key, r->len);
}

static void rec_set(rec *r, int value, const void *key, size_t len)
{
    r->value = value;
    r->len = len;
    memcpy(r->key, key, len);
    r->seen = 0;
}

static rec *find(const pr_map *m, const void *key, size_t len)
{
    pr_map_entry *e = pr_map_find(m, pr_view_make(key, len));
    return e ? rec_of(e) : NULL;
}

enum { N = 5000 };

static void test_many_and_growth(void)
{
    static rec recs[N];
    pr_map m;
    pr_map_init(&m, 4, rec_key);
    CHECK_EQ(m.mask, 3);
    CHECK(!find(&m, "k0", 2));
    for (int i = 0; i < N; i++) {
        char k[16];
        int n = snprintf(k, sizeof k, "k%d", i);
        rec_set(&recs[i], i, k, (size_t)n);
        pr_map_insert(&m, &recs[i].link);
        CHECK(m.n <= m.mask + 1); /* doubled when the count passes the buckets */
    }
    CHECK_EQ(m.n, N);
    CHECK_EQ(m.mask + 1, 8192);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        char k[16];
        int n = snprintf(k, sizeof k, "k%d", i);
        rec *r = find(&m, k, (size_t)n);
        bad += !r || r->value != i;
    }
    CHECK_EQ(bad, 0);
    CHECK(!find(&m, "k5000", 5));
    CHECK(!find(&m, "", 0));

    /* remove every other one */
    for (int i = 0; i < N; i += 2)
        CHECK_EQ(pr_map_remove(&m, &recs[i].link), 0);
    CHECK_EQ(m.n, N / 2);
    CHECK_EQ(pr_map_remove(&m, &recs[0].link), PR_ENOTFOUND);
    bad = 0;
    for (int i = 0; i < N; i++) {
        rec *r = find(&m, recs[i].key, recs[i].len);
        bad += i % 2 ? r != &recs[i] : r != NULL;
    }
    CHECK_EQ(bad, 0);
    pr_map_dispose(&m);
    CHECK(m.buckets == NULL);
    CHECK(!find(&m, "k1", 2));
    pr_map_iter it = pr_map_iter_make(&m);
    CHECK(pr_map_next(&it) == NULL);
}

/* Keys that differ only after a NUL, or are prefixes of each other. */
static void test_binary_and_prefix_keys(void)
{
    static const struct {
        const char *k;
        size_t len;
    } keys[] = {
        {"", 0},       {"\0", 1},      {"\0\0", 2},     {"a", 1},   {"a\0", 2},
        {"a\0b", 3},   {"a\0c", 3},    {"ab", 2},       {"abc", 3}, {"abcd", 4},
        {"room:1", 6}, {"room:10", 7}, {"room:1\0", 7},
    };
    enum { K = sizeof keys / sizeof keys[0] };
    rec recs[K];
    pr_map m;
    pr_map_init(&m, 2, rec_key);
    for (int i = 0; i < K; i++) {
        CHECK(!find(&m, keys[i].k, keys[i].len));
        rec_set(&recs[i], i, keys[i].k, keys[i].len);
        pr_map_insert(&m, &recs[i].link);
    }
    CHECK_EQ(m.n, K);
    for (int i = 0; i < K; i++) {
        rec *r = find(&m, keys[i].k, keys[i].len);
        CHECK(r == &recs[i]);
    }
    CHECK(!find(&m, "a\0d", 3));
    CHECK(!find(&m, "abcde", 5));
    CHECK(!find(&m, "\0\0\0", 3));
    pr_map_dispose(&m);
}

/* Every record visited once, and the visited record may be removed. */
static void test_iterate_and_remove(void)
{
    enum { M = 300 };
    static rec recs[M];
    pr_map m;
    pr_map_init(&m, 8, rec_key);
    for (int i = 0; i < M; i++) {
        char k[16];
        int n = snprintf(k, sizeof k, "%d", i);
        rec_set(&recs[i], i, k, (size_t)n);
        pr_map_insert(&m, &recs[i].link);
    }
    int visits = 0;
    pr_map_iter it = pr_map_iter_make(&m);
    for (pr_map_entry *e; (e = pr_map_next(&it));) {
        rec *r = rec_of(e);
        r->seen++;
        visits++;
        if (r->value % 3 == 0)
            CHECK_EQ(pr_map_remove(&m, e), 0);
    }
    CHECK_EQ(visits, M);
    int bad = 0;
    for (int i = 0; i < M; i++)
        bad += recs[i].seen != 1;
    CHECK_EQ(bad, 0);
    CHECK_EQ(m.n, M - M / 3);

    /* a second walk sees only what is left, and can empty the map */
    visits = 0;
    it = pr_map_iter_make(&m);
    for (pr_map_entry *e; (e = pr_map_next(&it));) {
        CHECK(rec_of(e)->value % 3 != 0);
        pr_map_remove(&m, e);
        visits++;
    }
    CHECK_EQ(visits, M - M / 3);
    CHECK_EQ(m.n, 0);
    it = pr_map_iter_make(&m);
    CHECK(pr_map_next(&it) == NULL);

    /* an emptied map takes records again */
    pr_map_insert(&m, &recs[1].link);
    CHECK(find(&m, "1", 1) == &recs[1]);
    pr_map_dispose(&m);
}

int main(void)
{
    test_many_and_growth();
    test_binary_and_prefix_keys();
    test_iterate_and_remove();
    T_DONE();
}
