/* Unit tests of storage/entry.c: stream entries checked field by field, and
 * the JSON arguments of chat_batch. */
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>

#include "chat.h"
#include "entry.h"
#include "t.h"

/* ---- building XREADGROUP items by hand ---- */

static redisReply *str(const char *s, size_t len)
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_STRING;
    r->str = malloc(len + 1);
    memcpy(r->str, s, len);
    r->str[len] = '\0';
    r->len = len;
    return r;
}

static redisReply *nil(void)
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_NIL;
    return r;
}

/* item("1-0", "k", "m", "r", "room", ..., NULL): [id, [field, value, ...]] */
static redisReply *item(const char *id, ...)
{
    redisReply *fields = calloc(1, sizeof *fields);
    fields->type = REDIS_REPLY_ARRAY;
    fields->element = calloc(32, sizeof *fields->element);
    va_list ap;
    va_start(ap, id);
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL)
        fields->element[fields->elements++] = str(s, strlen(s));
    va_end(ap);
    redisReply *it = calloc(1, sizeof *it);
    it->type = REDIS_REPLY_ARRAY;
    it->element = calloc(2, sizeof *it->element);
    it->element[0] = str(id, strlen(id));
    it->element[1] = fields;
    it->elements = 2;
    return it;
}

static void release(redisReply *r)
{
    for (size_t i = 0; i < r->elements; i++)
        release(r->element[i]);
    free(r->element);
    free(r->str);
    free(r);
}

static unsigned char key[32];

/* Parses it in shard 0 of 1 and frees it. */
static st__entry *parse1(redisReply *it)
{
    st__entry *e = st__entry_parse(it, 0, 1, key);
    release(it);
    return e;
}

static void messages(void)
{
    st__entry *e =
        parse1(item("5-1", "k", "m", "r", "g1", "u", "alice", "n", "Alice", "l", "Smith", "x",
                    "hé \"there\"", "c", "cm1", "g", "gw:{n.0}", "s", "sock", "a", "7", NULL));
    CHECK(e != NULL);
    CHECK_EQ(e->kind, 'm');
    CHECK_EQ(e->status, ST_E_NONE);
    CHECK(!strcmp(e->id, "5-1"));
    CHECK(!strcmp(e->r, "g1") && !strcmp(e->u, "alice") && !strcmp(e->n, "Alice"));
    CHECK(!strcmp(e->l, "Smith") && !strcmp(e->c, "cm1"));
    CHECK_MEM(e->x, e->x_len, "hé \"there\"");
    CHECK(!strcmp(e->g, "gw:{n.0}") && !strcmp(e->s, "sock"));
    CHECK_EQ(e->a, 7);
    CHECK(e->p == NULL);
    st__entry_free(e);

    /* optional fields absent: no name is "", no ack without g/s/a */
    e = parse1(item("5-2", "k", "m", "r", "g1", "u", "bob", "x", "hi", NULL));
    CHECK_EQ(e->status, ST_E_NONE);
    CHECK(!strcmp(e->n, "") && e->l == NULL && e->c == NULL);
    CHECK(e->g == NULL && e->s == NULL);
    CHECK_EQ(e->a, -1);
    st__entry_free(e);

    /* an ack id that is not a number: no ack at all (not a wrong one) */
    e = parse1(item("5-3", "k", "m", "r", "g1", "u", "bob", "x", "hi", "g", "gw:{a}", "s", "s1",
                    "a", "x1", NULL));
    CHECK_EQ(e->status, ST_E_NONE);
    CHECK_EQ(e->a, -1);
    CHECK(e->g == NULL);
    st__entry_free(e);

    /* malformed messages keep their reply address for the error ack
     * (which fields make an entry malformed: tests/unit/proto/test_chat_entry.c) */
    e = parse1(item("6-0", "k", "m", "r", "g1", "u", "bob", "x", "\xff\xfe", "g", "gw:{a}", "s",
                    "s1", "a", "3", NULL));
    CHECK_EQ(e->kind, 'm');
    CHECK_EQ(e->status, ST_E_INVALID);
    CHECK(e->g && !strcmp(e->g, "gw:{a}"));
    CHECK_EQ(e->a, 3);
    st__entry_free(e);
    /* a NUL in the text reaches the parser (the reply's length counts, not
     * the C string's) */
    redisReply *it = item("6-1", "k", "m", "r", "g1", "u", "bob", "x", "ab", NULL);
    it->element[1]->element[5]->str[1] = '\0';
    e = parse1(it);
    CHECK_EQ(e->status, ST_E_INVALID);
    st__entry_free(e);
}

static void shards_and_direct_rooms(void)
{
    /* a room in the stream of another shard would break that room's order */
    unsigned n = 8, right = chat_room_shard("g1", 2, n);
    redisReply *it = item("1-0", "k", "m", "r", "g1", "u", "bob", "x", "t", NULL);
    st__entry *e = st__entry_parse(it, (right + 1) % n, n, key);
    CHECK_EQ(e->status, ST_E_INVALID);
    st__entry_free(e);
    e = st__entry_parse(it, right, n, key);
    CHECK_EQ(e->status, ST_E_NONE);
    st__entry_free(e);
    release(it);

    char dm[CHAT_DM_ID_LEN + 1];
    chat_dm_room_id(key, "bob", "carol", dm);
    e = parse1(item("2-0", "k", "m", "r", dm, "u", "bob", "p", "carol", "x", "t", NULL));
    CHECK_EQ(e->status, ST_E_NONE);
    CHECK(!strcmp(e->p, "carol"));
    st__entry_free(e);
    /* someone else's direct room */
    e = parse1(item("2-1", "k", "m", "r", dm, "u", "mallory", "p", "carol", "x", "t", NULL));
    CHECK_EQ(e->status, ST_E_FORBIDDEN);
    st__entry_free(e);

    /* opening a direct room (joinChat) */
    e = parse1(item("2-2", "k", "o", "r", dm, "u", "carol", "p", "bob", NULL));
    CHECK_EQ(e->kind, 'o');
    CHECK_EQ(e->status, ST_E_NONE);
    CHECK(!strcmp(e->r, dm) && !strcmp(e->u, "carol") && !strcmp(e->p, "bob"));
    pr_buf m, r;
    pr_buf_init(&m, 1 << 16);
    pr_buf_init(&r, 1 << 16);
    CHECK_EQ(st__entry_batch_json(&e, 1, &m, &r), 0);
    json_t *j = json_loads(m.ptr, 0, NULL);
    json_t *want =
        json_pack("[{sisissssssss}]", "o", 0, "sh", 0, "k", "o", "r", dm, "u", "carol", "p", "bob");
    CHECK(json_equal(j, want));
    json_decref(j);
    json_decref(want);
    pr_buf_dispose(&m);
    pr_buf_dispose(&r);
    st__entry_free(e);
    e = parse1(item("2-3", "k", "o", "r", dm, "u", "mallory", "p", "bob", NULL));
    CHECK_EQ(e->status, ST_E_FORBIDDEN);
    st__entry_free(e);
    e = parse1(item("2-4", "k", "o", "r", dm, "u", "carol", NULL)); /* no peer */
    CHECK_EQ(e->status, ST_E_INVALID);
    CHECK_EQ(e->kind, 0);
    CHECK_EQ(e->a, -1);
    st__entry_free(e);
    /* a joinChat that waits for the answer: the ack's address is kept, and
     * a malformed open keeps it too (its error must reach the client) */
    e = parse1(item("2-5", "k", "o", "r", dm, "u", "carol", "p", "bob", "g", "gw:{n.0}", "s",
                    "sock1", "a", "7", NULL));
    CHECK_EQ(e->kind, 'o');
    CHECK_EQ(e->status, ST_E_NONE);
    CHECK_EQ(e->a, 7);
    CHECK(!strcmp(e->g, "gw:{n.0}") && !strcmp(e->s, "sock1"));
    CHECK(!strcmp(e->r, dm) && !strcmp(e->u, "carol") && !strcmp(e->p, "bob"));
    st__entry_free(e);
    e = parse1(item("2-6", "k", "o", "r", dm, "u", "carol", "g", "gw:{n.0}", "s", "sock1", "a", "8",
                    NULL));
    CHECK_EQ(e->status, ST_E_INVALID);
    CHECK_EQ(e->kind, 'o');
    CHECK_EQ(e->a, 8);
    st__entry_free(e);
}

static void receipts(void)
{
    st__entry *e = parse1(item("3-0", "k", "R", "d", "g1\tbob\t4\ng2\tbob\t-1\n", "v",
                               "g1\tbob\t-1\ng1\tann\t2\n", NULL));
    CHECK_EQ(e->kind, 'R');
    CHECK_EQ(e->status, ST_E_NONE);
    CHECK_EQ(e->nrc, 3); /* delivered -1 means nothing */
    pr_buf m, r;
    pr_buf_init(&m, 1 << 20);
    pr_buf_init(&r, 1 << 20);
    CHECK_EQ(st__entry_batch_json(&e, 1, &m, &r), 0);
    CHECK(!strcmp(m.ptr, "[]"));
    json_t *j = json_loads(r.ptr, 0, NULL);
    CHECK(json_is_array(j) && json_array_size(j) == 3);
    json_t *want = json_pack("{sssssI}", "r", "g1", "u", "bob", "d", (json_int_t)4);
    CHECK(json_equal(json_array_get(j, 0), want));
    json_decref(want);
    CHECK_EQ(json_integer_value(json_object_get(json_array_get(j, 1), "s")), -1);
    json_decref(j);
    pr_buf_dispose(&m);
    pr_buf_dispose(&r);
    st__entry_free(e);

    /* lines of rooms in other shards are dropped, the rest kept */
    unsigned n = 8, s1 = chat_room_shard("g1", 2, n), s2 = chat_room_shard("g2", 2, n);
    CHECK(s1 != s2);
    redisReply *it = item("3-1", "k", "R", "v", "g1\tbob\t1\ng2\tbob\t1\n", NULL);
    e = st__entry_parse(it, s1, n, key);
    CHECK_EQ(e->status, ST_E_NONE);
    CHECK_EQ(e->nrc, 1);
    st__entry_free(e);
    release(it);

    /* a malformed line makes the whole entry invalid, with no kind (which
     * lines are malformed: tests/unit/proto/test_chat_entry.c) */
    e = parse1(item("3-2", "k", "R", "v", "g1\tbob\t-2\n", NULL));
    CHECK_EQ(e->status, ST_E_INVALID);
    CHECK_EQ(e->kind, 0);
    st__entry_free(e);
    e = parse1(item("3-3", "k", "R", NULL)); /* neither d nor v */
    CHECK_EQ(e->status, ST_E_INVALID);
    st__entry_free(e);
}

static void odd_items(void)
{
    /* deleted while pending: [id, nil] is acked and nothing else */
    redisReply *it = item("4-0", NULL);
    release(it->element[1]);
    it->element[1] = nil();
    st__entry *e = parse1(it);
    CHECK(e != NULL);
    CHECK_EQ(e->kind, 0);
    CHECK_EQ(e->status, ST_E_NONE);
    st__entry_free(e);
    /* unknown kind */
    e = parse1(item("4-1", "k", "z", "r", "g1", NULL));
    CHECK_EQ(e->kind, 0);
    CHECK_EQ(e->status, ST_E_INVALID);
    st__entry_free(e);
    /* no id: nothing to ack */
    it = item("4-2", "k", "m", NULL);
    release(it->element[0]);
    it->element[0] = nil();
    CHECK(parse1(it) == NULL);
}

static void batch_json(void)
{
    st__entry *e[4];
    e[0] = parse1(item("1-0", "k", "m", "r", "g1", "u", "a\"q", "n", "A\\B", "x",
                       "line\nbreak\ttab \xe2\x80\xa8", "c", "c1", NULL));
    e[1] = parse1(item("1-1", "k", "m", "r", "g1", "u", "bob", "x", "", NULL)); /* invalid */
    e[2] = parse1(item("1-2", "k", "R", "v", "g1\tbob\t3\n", NULL));
    e[3] = parse1(item("1-3", "k", "m", "r", "g1", "u", "bob", "l", "L", "p", "zed", "x", "y",
                       NULL)); /* forbidden: not the direct room */
    e[3]->status = ST_E_NONE;  /* pretend it was fine, to see p in the JSON */
    pr_buf m, r;
    pr_buf_init(&m, 1 << 20);
    pr_buf_init(&r, 1 << 20);
    CHECK_EQ(st__entry_batch_json(e, 4, &m, &r), 0);
    json_error_t err;
    json_t *j = json_loads(m.ptr, 0, &err);
    CHECK(json_is_array(j));
    CHECK_EQ(json_array_size(j), 2);
    json_t *a = json_array_get(j, 0), *b = json_array_get(j, 1);
    CHECK_EQ(json_integer_value(json_object_get(a, "o")), 0);
    CHECK_EQ(json_integer_value(json_object_get(a, "sh")), 0);
    CHECK(!strcmp(json_string_value(json_object_get(a, "u")), "a\"q"));
    CHECK(!strcmp(json_string_value(json_object_get(a, "n")), "A\\B"));
    CHECK(!strcmp(json_string_value(json_object_get(a, "x")), "line\nbreak\ttab \xe2\x80\xa8"));
    CHECK(json_object_get(a, "l") == NULL && json_object_get(a, "p") == NULL);
    CHECK_EQ(json_integer_value(json_object_get(b, "o")), 3); /* index in the batch */
    CHECK(!strcmp(json_string_value(json_object_get(b, "p")), "zed"));
    CHECK(!strcmp(json_string_value(json_object_get(b, "l")), "L"));
    json_decref(j);
    j = json_loads(r.ptr, 0, &err);
    CHECK(json_is_array(j) && json_array_size(j) == 1);
    json_decref(j);
    for (int i = 0; i < 4; i++)
        st__entry_free(e[i]);
    pr_buf_dispose(&m);
    pr_buf_dispose(&r);
}

int main(void)
{
    pr_alloc_install_jansson();
    chat_dm_key("test room secret", NULL, key);
    messages();
    shards_and_direct_rooms();
    receipts();
    odd_items();
    batch_json();
    T_DONE();
}
