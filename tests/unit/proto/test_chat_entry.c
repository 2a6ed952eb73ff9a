/* Unit tests of proto/chat_entry.c: the stream entries, XADD argv built and
 * parsed back for every kind, and malformed entries field by field. */
#include <stdarg.h>
#include <stdlib.h>

#include "chat.h"
#include "t.h"

#define V(lit) PR_VIEW_LIT(lit)

static unsigned char key[32];

/* ---- entries by hand ---- */

typedef struct {
    chat_field f[32];
    size_t n;
} entry_fields;

/* fields("k", "m", "r", "room", ..., NULL) */
static entry_fields fields(const char *first, ...)
{
    entry_fields e = {.n = 0};
    va_list ap;
    va_start(ap, first);
    const char *name = first;
    while (name) {
        const char *value = va_arg(ap, const char *);
        e.f[e.n].name = pr_view_make(name, strlen(name));
        e.f[e.n].value = pr_view_make(value, strlen(value));
        e.n++;
        name = va_arg(ap, const char *);
    }
    va_end(ap);
    return e;
}

/* The fields an XADD would store: its argv after "XADD KEY *". */
static entry_fields from_xadd(const chat_xadd *x)
{
    entry_fields e = {.n = 0};
    for (int i = 3; i + 1 < x->argc; i += 2) {
        e.f[e.n].name = pr_view_make(x->argv[i], x->lens[i]);
        e.f[e.n].value = pr_view_make(x->argv[i + 1], x->lens[i + 1]);
        e.n++;
    }
    return e;
}

static const chat_entry_ctx one = {0, 1, key}; /* shard 0 of 1 */

static int parse(entry_fields f, chat_entry *e)
{
    return chat_entry_parse(f.f, f.n, &one, e, NULL);
}

#define CHECK_VIEW(v, lit) CHECK_MEM((v).ptr, (v).len, lit)

/* argv joined by spaces, for exact comparison */
static const char *joined(const chat_xadd *x)
{
    static char buf[4096];
    size_t n = 0;
    for (int i = 0; i < x->argc; i++) {
        if (i)
            buf[n++] = ' ';
        memcpy(buf + n, x->argv[i], x->lens[i]);
        n += x->lens[i];
    }
    buf[n] = '\0';
    return buf;
}

/* ---- receipt lines ---- */

static void test_receipts(void)
{
    pr_buf b;
    pr_buf_init(&b, 4096);
    CHECK_EQ(chat_receipt_add(&b, V("r1"), V("bob"), 12), PR_OK);
    CHECK_EQ(chat_receipt_add(&b, V("r2"), V("bob"), -1), PR_OK);
    CHECK_EQ(chat_receipt_add(&b, V("r2"), V("bob"), -2), PR_EINVAL);
    CHECK_MEM(b.ptr, b.len, "r1\tbob\t12\nr2\tbob\t-1\n");
    pr_view it = pr_buf_view(&b), r, u;
    int64_t s;
    CHECK_EQ(chat_receipt_next(&it, &r, &u, &s), 1);
    CHECK(pr_view_eq(r, V("r1")) && pr_view_eq(u, V("bob")) && s == 12);
    CHECK_EQ(chat_receipt_next(&it, &r, &u, &s), 1);
    CHECK(s == -1);
    CHECK_EQ(chat_receipt_next(&it, &r, &u, &s), 0);
    const char *bad[] = {"r\tu\t-2\n",  "r\tu\t1",    "r\tu\n",
                         "r u\tu\t1\n", "r\tu\t01\n", "r\t\t1\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        it = pr_view_make(bad[i], strlen(bad[i]));
        CHECK_EQ(chat_receipt_next(&it, &r, &u, &s), PR_EINVAL);
    }
    pr_buf_dispose(&b);
}

/* ---- builders and round trips ---- */

static void test_message_round_trip(void)
{
    chat_xadd x;
    chat_entry m = {0}, e;
    m.room = V("g1");
    m.user = V("alice");
    m.first_name = V("Alice");
    m.last_name = V("Smith");
    m.text = V("h\xc3\xa9 \"there\"\nline");
    m.client_msg_id = V("cm1");
    m.reply_to = V("gw:{n.0}");
    m.socket = V("sock");
    m.ack_id = 7;
    CHECK_EQ(chat_xadd_message(&x, 8, &m), 0);
    unsigned s = chat_room_shard("g1", 2, 8);
    CHECK_EQ(x.shard, s);
    char want[256];
    snprintf(want, sizeof want,
             "XADD {i:%u}:in * k m r g1 u alice n Alice l Smith x h\xc3\xa9 \"there\"\nline c cm1 "
             "g gw:{n.0} s sock a 7",
             s);
    CHECK(!strcmp(joined(&x), want));
    chat_entry_ctx ctx = {s, 8, key};
    entry_fields f = from_xadd(&x);
    CHECK_EQ(chat_entry_parse(f.f, f.n, &ctx, &e, NULL), CHAT_ENTRY_OK);
    CHECK_EQ(e.kind, 'm');
    CHECK_VIEW(e.room, "g1");
    CHECK_VIEW(e.user, "alice");
    CHECK_VIEW(e.first_name, "Alice");
    CHECK_VIEW(e.last_name, "Smith");
    CHECK_VIEW(e.text, "h\xc3\xa9 \"there\"\nline");
    CHECK_VIEW(e.client_msg_id, "cm1");
    CHECK_VIEW(e.reply_to, "gw:{n.0}");
    CHECK_VIEW(e.socket, "sock");
    CHECK_EQ(e.ack_id, 7);
    CHECK(e.peer.ptr == NULL);

    /* the fewest fields: n is written even empty; no ack address at all */
    chat_entry m2 = {0};
    m2.room = V("g1");
    m2.user = V("bob");
    m2.text = V("hi");
    m2.ack_id = 5; /* no reply_to: no a either */
    CHECK_EQ(chat_xadd_message(&x, 1, &m2), 0);
    CHECK(!strcmp(joined(&x), "XADD {i:0}:in * k m r g1 u bob n  x hi"));
    f = from_xadd(&x);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_OK);
    CHECK_VIEW(e.first_name, "");
    CHECK(e.last_name.ptr == NULL && e.client_msg_id.ptr == NULL && e.reply_to.ptr == NULL);
    CHECK_EQ(e.ack_id, -1);

    /* a reply address without a callback (errors only), and a direct room */
    char dm[CHAT_DM_ID_LEN + 1];
    chat_dm_room_id(key, "bob", "carol", dm);
    m2.room = pr_view_make(dm, strlen(dm));
    m2.peer = V("carol");
    m2.reply_to = V("st:{r1}");
    m2.socket = V("p1");
    m2.ack_id = -1;
    CHECK_EQ(chat_xadd_message(&x, 1, &m2), 0);
    snprintf(want, sizeof want, "XADD {i:0}:in * k m r %s u bob n  x hi p carol g st:{r1} s p1",
             dm);
    CHECK(!strcmp(joined(&x), want));
    f = from_xadd(&x);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_OK);
    CHECK_VIEW(e.peer, "carol");
    CHECK_VIEW(e.reply_to, "st:{r1}");
    CHECK_EQ(e.ack_id, -1);
    /* the same from someone else: not their direct room */
    m2.user = V("mallory");
    CHECK_EQ(chat_xadd_message(&x, 1, &m2), 0);
    f = from_xadd(&x);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_FORBIDDEN);
    CHECK_EQ(e.kind, 'm');

    /* what the builder needs */
    chat_entry bad = m2;
    bad.text = pr_view_make(NULL, 0);
    CHECK_EQ(chat_xadd_message(&x, 1, &bad), PR_EINVAL);
    bad = m2;
    bad.socket = pr_view_make(NULL, 0);
    CHECK_EQ(chat_xadd_message(&x, 1, &bad), PR_EINVAL);
    CHECK_EQ(chat_xadd_message(&x, 0, &m2), PR_EINVAL);
}

static void test_open_round_trip(void)
{
    char dm[CHAT_DM_ID_LEN + 1], want[256];
    chat_dm_room_id(key, "bob", "carol", dm);
    chat_xadd x;
    chat_entry o = {0}, e;
    o.room = pr_view_make(dm, strlen(dm));
    o.user = V("carol");
    o.peer = V("bob");
    o.ack_id = -1;
    CHECK_EQ(chat_xadd_open(&x, 1, &o), 0);
    snprintf(want, sizeof want, "XADD {i:0}:in * k o r %s u carol p bob", dm);
    CHECK(!strcmp(joined(&x), want));
    entry_fields f = from_xadd(&x);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_OK);
    CHECK_EQ(e.kind, 'o');
    CHECK_VIEW(e.user, "carol");
    CHECK_VIEW(e.peer, "bob");
    CHECK(e.reply_to.ptr == NULL);
    CHECK_EQ(e.ack_id, -1);

    o.reply_to = V("gw:{n.0}");
    o.socket = V("sock1");
    o.ack_id = 0;
    CHECK_EQ(chat_xadd_open(&x, 1, &o), 0);
    snprintf(want, sizeof want, "XADD {i:0}:in * k o r %s u carol p bob g gw:{n.0} s sock1 a 0",
             dm);
    CHECK(!strcmp(joined(&x), want));
    f = from_xadd(&x);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_OK);
    CHECK_VIEW(e.reply_to, "gw:{n.0}");
    CHECK_VIEW(e.socket, "sock1");
    CHECK_EQ(e.ack_id, 0);

    o.ack_id = -1; /* an answered open needs its ack id */
    CHECK_EQ(chat_xadd_open(&x, 1, &o), PR_EINVAL);
    o.ack_id = 1;
    o.peer = pr_view_make(NULL, 0);
    CHECK_EQ(chat_xadd_open(&x, 1, &o), PR_EINVAL);
}

static void test_receipts_round_trip(void)
{
    pr_buf d, v;
    pr_buf_init(&d, 1024);
    pr_buf_init(&v, 1024);
    CHECK_EQ(chat_receipt_add(&d, V("g1"), V("bob"), 4), 0);
    CHECK_EQ(chat_receipt_add(&d, V("g2"), V("bob"), -1), 0);
    CHECK_EQ(chat_receipt_add(&v, V("g1"), V("bob"), -1), 0);
    CHECK_EQ(chat_receipt_add(&v, V("g1"), V("ann"), 2), 0);
    chat_xadd x;
    CHECK_EQ(chat_xadd_receipts(&x, 3, pr_buf_view(&d), pr_buf_view(&v)), 0);
    CHECK(!strcmp(joined(&x),
                  "XADD {i:3}:in * k R d g1\tbob\t4\ng2\tbob\t-1\n v g1\tbob\t-1\ng1\tann\t2\n"));
    CHECK_EQ(chat_xadd_receipts(&x, CHAT_SHARDS_MAX, pr_buf_view(&d), pr_buf_view(&v)), PR_EINVAL);
    /* as the gateway's open sends it: d empty */
    CHECK_EQ(chat_xadd_receipts(&x, 0, V(""), pr_buf_view(&v)), 0);
    entry_fields f = from_xadd(&x);
    chat_entry e;
    unsigned n = 99;
    CHECK_EQ(chat_entry_parse(f.f, f.n, &one, &e, &n), CHAT_ENTRY_OK);
    CHECK_EQ(e.kind, 'R');
    CHECK_EQ(n, 2);

    CHECK_EQ(chat_xadd_receipts(&x, 0, pr_buf_view(&d), pr_buf_view(&v)), 0);
    f = from_xadd(&x);
    CHECK_EQ(chat_entry_parse(f.f, f.n, &one, &e, &n), CHAT_ENTRY_OK);
    CHECK_EQ(n, 3); /* a delivered -1 means nothing */
    chat_receipt_iter it = {0};
    char kind;
    pr_view room, user;
    int64_t seq;
    CHECK_EQ(chat_entry_receipt_next(&e, &one, &it, &kind, &room, &user, &seq), 1);
    CHECK(kind == 'd' && seq == 4);
    CHECK_VIEW(room, "g1");
    CHECK_VIEW(user, "bob");
    CHECK_EQ(chat_entry_receipt_next(&e, &one, &it, &kind, &room, &user, &seq), 1);
    CHECK(kind == 'v' && seq == -1);
    CHECK_EQ(chat_entry_receipt_next(&e, &one, &it, &kind, &room, &user, &seq), 1);
    CHECK(kind == 'v' && seq == 2);
    CHECK_VIEW(user, "ann");
    CHECK_EQ(chat_entry_receipt_next(&e, &one, &it, &kind, &room, &user, &seq), 0);
    CHECK_EQ(chat_entry_receipt_next(&e, &one, &it, &kind, &room, &user, &seq), 0);
    pr_buf_dispose(&d);
    pr_buf_dispose(&v);
}

static void test_request_round_trip(void)
{
    chat_xadd x;
    chat_request r = {CHAT_RPC_REPLAY, V("gw:{n.1}"), V("sid.4"), V("alice"), V("0.17.3"), 500}, q;
    CHECK_EQ(chat_xadd_request(&x, &r), 0);
    CHECK(
        !strcmp(joined(&x), "XADD {st}:rpc * k replay g gw:{n.1} i sid.4 u alice v 0.17.3 m 500"));
    entry_fields f = from_xadd(&x);
    CHECK_EQ(chat_request_parse(f.f, f.n, &q), 0);
    CHECK_EQ(q.kind, CHAT_RPC_REPLAY);
    CHECK_VIEW(q.reply_to, "gw:{n.1}");
    CHECK_VIEW(q.req_id, "sid.4");
    CHECK_VIEW(q.user, "alice");
    CHECK_VIEW(q.vector, "0.17.3");
    CHECK_EQ(q.max, 500);

    chat_request s = {CHAT_RPC_SYNC, V("gw:{n.1}"), V("sid.5"), V("alice"), {NULL, 0}, 1};
    CHECK_EQ(chat_xadd_request(&x, &s), 0);
    CHECK(!strcmp(joined(&x), "XADD {st}:rpc * k sync g gw:{n.1} i sid.5 u alice m 1"));
    f = from_xadd(&x);
    CHECK_EQ(chat_request_parse(f.f, f.n, &q), 0);
    CHECK_EQ(q.kind, CHAT_RPC_SYNC);
    CHECK(q.vector.ptr == NULL);

    r.vector = pr_view_make(NULL, 0); /* a replay needs its vector */
    CHECK_EQ(chat_xadd_request(&x, &r), PR_EINVAL);
    r.kind = 'x';
    CHECK_EQ(chat_xadd_request(&x, &r), PR_EINVAL);

    /* malformed: answerable (g and i are ids) or not */
    f = fields("k", "replay", "g", "gw:{a}", "i", "r1", "u", "bad id", "m", "5", NULL);
    CHECK_EQ(chat_request_parse(f.f, f.n, &q), PR_EINVAL);
    CHECK_VIEW(q.reply_to, "gw:{a}");
    CHECK_VIEW(q.req_id, "r1");
    const char *maxes[] = {"0", "", "5x", "-1", "+5"};
    for (size_t i = 0; i < 5; i++) {
        f = fields("k", "sync", "g", "gw:{a}", "i", "r1", "u", "al", "m", maxes[i], NULL);
        CHECK_EQ(chat_request_parse(f.f, f.n, &q), PR_EINVAL);
    }
    f = fields("k", "sync", "g", "gw:{a}", "i", "r1", "u", "al", "m", "99999999999999999999", NULL);
    CHECK_EQ(chat_request_parse(f.f, f.n, &q), 0);
    CHECK_EQ(q.max, 4294967295u);
    f = fields("k", "nap", "g", "gw:{a}", "i", "r1", "u", "al", "m", "5", NULL);
    CHECK_EQ(chat_request_parse(f.f, f.n, &q), PR_EINVAL);
    f = fields("k", "sync", "g", "gw {a}", "i", "r1", "u", "al", "m", "5", NULL);
    CHECK_EQ(chat_request_parse(f.f, f.n, &q), PR_EINVAL);
    CHECK(q.reply_to.ptr == NULL && q.req_id.ptr == NULL);
}

/* ---- malformed ingest entries (as storage/entry.c met them) ---- */

static void test_bad_messages(void)
{
    chat_entry e;
    /* an ack id that is not a number: no ack at all (not a wrong one) */
    entry_fields f = fields("k", "m", "r", "g1", "u", "bob", "x", "hi", "g", "gw:{a}", "s", "s1",
                            "a", "x1", NULL);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_OK);
    CHECK_EQ(e.ack_id, -1);
    CHECK(e.reply_to.ptr == NULL && e.socket.ptr == NULL);
    /* leading zeros were always taken */
    f = fields("k", "m", "r", "g1", "u", "bob", "x", "hi", "g", "gw:{a}", "s", "s1", "a", "007",
               NULL);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_OK);
    CHECK_EQ(e.ack_id, 7);
    /* an ack id over 2^53 - 1 */
    f = fields("k", "m", "r", "g1", "u", "bob", "x", "hi", "g", "gw:{a}", "s", "s1", "a",
               "9007199254740992", NULL);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_OK);
    CHECK(e.reply_to.ptr == NULL);

    /* malformed messages keep their reply address for the error ack */
    const char *bad_text[] = {"", "\xff\xfe", "a\xc0\xaf"};
    for (size_t i = 0; i < 3; i++) {
        f = fields("k", "m", "r", "g1", "u", "bob", "x", bad_text[i], "g", "gw:{a}", "s", "s1", "a",
                   "3", NULL);
        CHECK_EQ(parse(f, &e), CHAT_ENTRY_INVALID);
        CHECK_EQ(e.kind, 'm');
        CHECK_VIEW(e.reply_to, "gw:{a}");
        CHECK_EQ(e.ack_id, 3);
    }
    /* a NUL in the text (PostgreSQL's text cannot hold it) */
    f = fields("k", "m", "r", "g1", "u", "bob", "x", "ab", NULL);
    f.f[3].value = pr_view_make("a\0b", 3);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_INVALID);
    /* each bad field alone */
    const char *bads[][2] = {{"r", "has space"}, {"u", ""},     {"n", "Bad\x01"},
                             {"l", "x\x7f"},     {"c", "a\tb"}, {"p", "p q"}};
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        const char *fld[6][2] = {{"r", "g1"}, {"u", "bob"}, {"n", "Bob"},
                                 {"l", "B"},  {"c", "c1"},  {"p", "carol"}};
        for (int k = 0; k < 6; k++)
            if (!strcmp(fld[k][0], bads[i][0]))
                fld[k][1] = bads[i][1];
        f = fields("k", "m", fld[0][0], fld[0][1], fld[1][0], fld[1][1], fld[2][0], fld[2][1],
                   fld[3][0], fld[3][1], fld[4][0], fld[4][1], fld[5][0], fld[5][1], "x", "t",
                   NULL);
        CHECK_EQ(parse(f, &e), CHAT_ENTRY_INVALID);
    }
    /* missing room, sender or text */
    f = fields("k", "m", "u", "bob", "x", "t", NULL);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_INVALID);
    f = fields("k", "m", "r", "g1", "u", "bob", NULL);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_INVALID);
    /* over the hard limit */
    char *big = malloc(CHAT_ENTRY_TEXT_MAX + 2);
    memset(big, 'a', CHAT_ENTRY_TEXT_MAX + 1);
    big[CHAT_ENTRY_TEXT_MAX + 1] = '\0';
    f = fields("k", "m", "r", "g1", "u", "bob", "x", big, NULL);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_INVALID);
    big[CHAT_ENTRY_TEXT_MAX] = '\0';
    f = fields("k", "m", "r", "g1", "u", "bob", "x", big, NULL);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_OK);
    free(big);
    /* a value that was no string counts as absent; the last of a name wins */
    f = fields("k", "m", "r", "g1", "u", "bob", "x", "t", NULL);
    f.f[2].value = pr_view_make(NULL, 0);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_INVALID);
    f = fields("k", "m", "r", "bad room", "u", "bob", "x", "t", "r", "g1", NULL);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_OK);
    CHECK_VIEW(e.room, "g1");
    /* long field names do not count */
    f = fields("k", "m", "room", "g1", "u", "bob", "x", "t", NULL);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_INVALID);
}

static void test_shards_and_opens(void)
{
    /* a room in the stream of another shard would break that room's order */
    unsigned n = 8, right = chat_room_shard("g1", 2, n);
    entry_fields f = fields("k", "m", "r", "g1", "u", "bob", "x", "t", NULL);
    chat_entry_ctx wrong = {(right + 1) % n, n, key}, ok = {right, n, key}, any = {5, 0, NULL};
    chat_entry e;
    CHECK_EQ(chat_entry_parse(f.f, f.n, &wrong, &e, NULL), CHAT_ENTRY_INVALID);
    CHECK_EQ(chat_entry_parse(f.f, f.n, &ok, &e, NULL), CHAT_ENTRY_OK);
    CHECK_EQ(chat_entry_parse(f.f, f.n, &any, &e, NULL), CHAT_ENTRY_OK);

    char dm[CHAT_DM_ID_LEN + 1];
    chat_dm_room_id(key, "bob", "carol", dm);
    f = fields("k", "o", "r", dm, "u", "mallory", "p", "bob", NULL);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_FORBIDDEN);
    CHECK_EQ(chat_entry_parse(f.f, f.n, &any, &e, NULL), CHAT_ENTRY_OK); /* no key: unchecked */
    f = fields("k", "o", "r", dm, "u", "carol", NULL);                   /* no peer */
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_INVALID);
    CHECK_EQ(e.kind, 'o');
    CHECK_EQ(e.ack_id, -1);
    /* a malformed open that waits for its answer keeps its address */
    f = fields("k", "o", "r", dm, "u", "carol", "g", "gw:{n.0}", "s", "sock1", "a", "8", NULL);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_INVALID);
    CHECK_EQ(e.ack_id, 8);
    CHECK_VIEW(e.socket, "sock1");
    /* an open without a: no address at all */
    f = fields("k", "o", "r", dm, "u", "carol", "p", "bob", "g", "gw:{n.0}", "s", "sock1", NULL);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_OK);
    CHECK(e.reply_to.ptr == NULL);
    CHECK_EQ(e.ack_id, -1);
}

static void test_bad_receipts_and_kinds(void)
{
    chat_entry e;
    unsigned n;
    /* lines of rooms in other shards are dropped, the rest kept */
    unsigned ns = 8, s1 = chat_room_shard("g1", 2, ns), s2 = chat_room_shard("g2", 2, ns);
    CHECK(s1 != s2);
    entry_fields f = fields("k", "R", "v", "g1\tbob\t1\ng2\tbob\t1\n", NULL);
    chat_entry_ctx ctx = {s1, ns, key};
    CHECK_EQ(chat_entry_parse(f.f, f.n, &ctx, &e, &n), CHAT_ENTRY_OK);
    CHECK_EQ(n, 1);
    chat_receipt_iter it = {0};
    char kind;
    pr_view room, user;
    int64_t seq;
    CHECK_EQ(chat_entry_receipt_next(&e, &ctx, &it, &kind, &room, &user, &seq), 1);
    CHECK_VIEW(room, "g1");
    CHECK_EQ(chat_entry_receipt_next(&e, &ctx, &it, &kind, &room, &user, &seq), 0);

    /* malformed lines make the whole entry invalid */
    const char *bad[] = {"g1\tbob\n", "g1\tbob\t-2\n", "g1\tb b\t1\n", "g1\tbob\t1"};
    for (size_t i = 0; i < 4; i++) {
        f = fields("k", "R", "v", bad[i], NULL);
        CHECK_EQ(chat_entry_parse(f.f, f.n, &one, &e, &n), CHAT_ENTRY_INVALID);
        CHECK_EQ(n, 0);
        f = fields("k", "R", "d", bad[i], "v", "g1\tbob\t1\n", NULL);
        CHECK_EQ(chat_entry_parse(f.f, f.n, &one, &e, &n), CHAT_ENTRY_INVALID);
    }
    f = fields("k", "R", NULL); /* neither d nor v */
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_INVALID);
    CHECK_EQ(e.kind, 'R');

    /* unknown, long or missing kinds */
    f = fields("k", "z", "r", "g1", NULL);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_INVALID);
    CHECK_EQ(e.kind, 0);
    f = fields("k", "mm", "r", "g1", "u", "bob", "x", "t", NULL);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_INVALID);
    CHECK_EQ(e.kind, 0);
    f = fields("r", "g1", "u", "bob", "x", "t", NULL);
    CHECK_EQ(parse(f, &e), CHAT_ENTRY_INVALID);
    CHECK_EQ(chat_entry_parse(NULL, 0, &one, &e, NULL), CHAT_ENTRY_INVALID);
}

int main(void)
{
    chat_dm_key("test room secret", NULL, key);
    test_receipts();
    test_message_round_trip();
    test_open_round_trip();
    test_receipts_round_trip();
    test_request_round_trip();
    test_bad_messages();
    test_shards_and_opens();
    test_bad_receipts_and_kinds();
    T_DONE();
}
