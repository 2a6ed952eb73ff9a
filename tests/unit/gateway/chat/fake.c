/* fake.c - the fake transport of the chat's unit tests (see fake.h). */
#include "fake.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned fake_blobs_live;
cm_redis *fake_last_redis;
static gw_socket *sockets[FAKE_MAX];

/* ---- worker ---- */

gw_worker *fake_worker_new(gw_config *cfg)
{
    gw_worker *w = pr_calloc(1, sizeof *w);
    w->cfg = cfg;
    w->now_ms = 1000;
    w->base = event_base_new();
    return w;
}

void fake_worker_free(gw_worker *w)
{
    event_base_free(w->base);
    pr_free(w);
}

int gw_worker_index(const gw_worker *w) { return w->index; }
const gw_config *gw_worker_config(const gw_worker *w) { return w->cfg; }
struct event_base *gw_worker_base(gw_worker *w) { return w->base; }
void *gw_worker_app(const gw_worker *w) { return w->app; }
uint64_t gw_worker_now_ms(gw_worker *w) { return w->now_ms; }
void gw_worker_schedule_flush(gw_worker *w) { w->flushes++; }

void gw_app_count(gw_worker *w, unsigned counter, uint64_t n)
{
    w->counters[counter] += n;
}

/* ---- blobs ---- */

gw_blob *gw_blob_sio(pr_view packet)
{
    gw_blob *b = pr_malloc(sizeof *b + packet.len + 1);
    b->refs = 1;
    b->len = packet.len;
    memcpy(b->data, packet.ptr, packet.len);
    b->data[packet.len] = '\0';
    fake_blobs_live++;
    return b;
}

gw_blob *gw_blob_ref(gw_blob *b)
{
    b->refs++;
    return b;
}

void gw_blob_unref(gw_blob *b)
{
    if (b && --b->refs == 0) {
        fake_blobs_live--;
        pr_free(b);
    }
}

/* ---- sockets ---- */

gw_socket *fake_socket_new(gw_worker *w, const char *sid)
{
    gw_socket *s = pr_calloc(1, sizeof *s);
    s->w = w;
    snprintf(s->sid, sizeof s->sid, "%s", sid);
    pr_buf_init(&s->out, 1 << 20);
    for (int i = 0; i < FAKE_MAX; i++)
        if (!sockets[i]) {
            sockets[i] = s;
            break;
        }
    return s;
}

void fake_socket_free(gw_socket *s)
{
    for (int i = 0; i < FAKE_MAX; i++)
        if (sockets[i] == s)
            sockets[i] = NULL;
    pr_buf_dispose(&s->out);
    pr_free(s);
}

unsigned fake_out_count(const gw_socket *s, const char *needle)
{
    unsigned n = 0;
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= s->out.len; i++)
        if (!memcmp(s->out.ptr + i, needle, k))
            n++;
    return n;
}

static void out_json(gw_socket *s, const char *what, const json_t *args)
{
    char *t = args ? json_dumps(args, JSON_COMPACT) : NULL;
    pr_buf_appendf(&s->out, "%s %s\n", what, t ? t : "");
    free(t);
}

gw_socket *gw_socket_find(gw_worker *w, const char *sid, const char *nsp)
{
    (void)nsp;
    for (int i = 0; i < FAKE_MAX; i++)
        if (sockets[i] && sockets[i]->w == w && !strcmp(sockets[i]->sid, sid))
            return sockets[i];
    return NULL;
}

void *gw_socket_data(const gw_socket *sock) { return sock->data; }
void gw_socket_set_data(gw_socket *sock, void *data) { sock->data = data; }
int gw_socket_pending(const gw_socket *sock) { return sock->pending; }
uint64_t gw_socket_unread_mark(const gw_socket *sock) { return sock->mark; }
gw_worker *gw_socket_worker(gw_socket *sock) { return sock->w; }
gw_session *gw_socket_session(gw_socket *sock) { return (gw_session *)sock; }
const char *gw_session_sid(const gw_session *s) { return ((const gw_socket *)s)->sid; }
const char *gw_session_http_token(const gw_session *s) { (void)s; return NULL; }
const char *gw_socket_id(const gw_socket *sock) { return sock->sid; }

int gw_socket_send_blob(gw_socket *sock, gw_blob *b)
{
    if (sock->pending)
        return PR_ESTATE;
    pr_buf_append(&sock->out, b->data, b->len);
    pr_buf_append_byte(&sock->out, '\n');
    return 0;
}

int gw_socket_emit(gw_socket *sock, const char *event, const json_t *args,
                   const sio_attachment *att, unsigned natt, gw_ack_cb cb, void *arg)
{
    (void)att;
    (void)natt;
    (void)cb;
    (void)arg;
    if (sock->pending)
        return PR_ESTATE;
    char what[64];
    snprintf(what, sizeof what, "emit %s", event);
    out_json(sock, what, args);
    return 0;
}

int gw_socket_ack(gw_socket *sock, int64_t id, const json_t *args, const sio_attachment *att,
                  unsigned natt)
{
    (void)att;
    (void)natt;
    char what[64];
    snprintf(what, sizeof what, "ack %lld", (long long)id);
    out_json(sock, what, args);
    return 0;
}

int gw_socket_ack_raw(gw_socket *sock, int64_t id, pr_view args)
{
    pr_buf_appendf(&sock->out, "ack %lld %.*s\n", (long long)id, (int)args.len, args.ptr);
    return 0;
}

int gw_socket_accept(gw_socket *sock, const json_t *extra)
{
    sock->accepted++;
    sock->pending = 0;
    out_json(sock, "accept", extra);
    return 0;
}

void gw_socket_drop_transport(gw_socket *sock) { sock->dropped++; }
void gw_socket_disconnect(gw_socket *sock) { pr_buf_appendf(&sock->out, "disconnect\n"); }

/* ---- Redis ---- */

cm_redis *cm_redis_new(struct event_base *base, const pr_redis_addr *addr,
                       const cm_redis_options *o)
{
    (void)base;
    (void)addr;
    gw_worker *w = o->after_arg;
    cm_redis *r = pr_calloc(1, sizeof *r);
    r->w = w;
    r->ready = 1;
    fake_last_redis = r;
    return r;
}

void cm_redis_free(cm_redis *r)
{
    fake_redis_answer_all(r, NULL);
    fake_redis_confirm(r, 0);
    pr_free(r);
}

void cm_redis_set_lost_cb(cm_redis *r, cm_redis_event_cb cb) { (void)r; (void)cb; }
int cm_redis_ready(const cm_redis *r) { return r->ready; }
int cm_redis_subscribe(cm_redis *r, pr_view channel)
{
    (void)channel;
    r->subs++;
    return 0;
}
void cm_redis_unsubscribe(cm_redis *r, pr_view channel) { (void)channel; r->subs--; }

int cm_redis_command(cm_redis *r, cm_redis_reply_cb cb, void *arg, int argc, const char **argv,
                     const size_t *argvlen)
{
    if (!r->ready || r->fail_next) {
        r->fail_next = 0;
        return PR_EIO;
    }
    if (r->ncmds == sizeof r->cmds / sizeof r->cmds[0])
        abort(); /* a test that needs more should answer some first */
    fake_cmd *c = &r->cmds[r->ncmds++];
    size_t n = 0;
    for (int i = 0; i < argc; i++) {
        int k = snprintf(c->text + n, sizeof c->text - n, "%s%.*s", i ? " " : "",
                         (int)argvlen[i], argv[i]);
        if (k < 0 || (size_t)k >= sizeof c->text - n)
            break;
        n += (size_t)k;
    }
    c->cb = cb;
    c->arg = arg;
    return 0;
}

void cm_redis_when_subscribed(cm_redis *r, pr_view channel, cm_redis_subscribed_cb done,
                              void *arg)
{
    if (r->nwaits == FAKE_MAX)
        abort();
    r->waits[r->nwaits].cb = done;
    r->waits[r->nwaits].arg = arg;
    snprintf(r->waits[r->nwaits].channel, sizeof r->waits[0].channel, "%.*s",
             (int)channel.len, channel.ptr);
    r->nwaits++;
}

int fake_redis_find(const cm_redis *r, unsigned from, const char *needle)
{
    for (unsigned i = from; i < r->ncmds; i++)
        if (strstr(r->cmds[i].text, needle))
            return (int)i;
    return -1;
}

unsigned fake_redis_count(const cm_redis *r, const char *needle)
{
    unsigned n = 0;
    for (unsigned i = 0; i < r->ncmds; i++)
        n += strstr(r->cmds[i].text, needle) != NULL;
    return n;
}

void fake_redis_reply(cm_redis *r, int idx, redisReply *rep)
{
    if (idx < 0 || (unsigned)idx >= r->ncmds || r->cmds[idx].answered)
        abort(); /* the test expected a command that was not sent */
    fake_cmd *c = &r->cmds[idx];
    c->answered = 1;
    if (c->cb)
        c->cb(r, rep, c->arg);
}

void fake_redis_answer_all(cm_redis *r, redisReply *rep)
{
    for (unsigned i = 0; i < r->ncmds; i++) /* callbacks may add commands */
        if (!r->cmds[i].answered)
            fake_redis_reply(r, (int)i, rep);
}

void fake_redis_confirm(cm_redis *r, int ok)
{
    while (r->nwaits) {
        /* in order; a callback may add waits */
        cm_redis_subscribed_cb cb = r->waits[0].cb;
        void *arg = r->waits[0].arg;
        memmove(&r->waits[0], &r->waits[1], --r->nwaits * sizeof r->waits[0]);
        cb(r, ok, arg);
    }
}

/* ---- timer heaps: an unsorted list is enough here ---- */

void gw_th_init(gw_th *th, gw_worker *w, gw_th_cb cb)
{
    memset(th, 0, sizeof *th);
    th->w = w;
    th->cb = cb;
}

void gw_th_dispose(gw_th *th)
{
    for (size_t i = 0; i < th->n; i++)
        th->v[i]->idx = 0;
    pr_free(th->v);
    th->v = NULL;
    th->n = th->cap = 0;
}

void gw_th_del(gw_th *th, gw_th_node *n)
{
    if (!n->idx)
        return;
    th->v[n->idx - 1] = th->v[--th->n];
    th->v[n->idx - 1]->idx = n->idx;
    n->idx = 0;
}

void gw_th_add(gw_th *th, gw_th_node *n, uint64_t deadline_ms)
{
    gw_th_del(th, n);
    if (th->n == th->cap) {
        th->cap = th->cap ? 2 * th->cap : 16;
        th->v = pr_realloc(th->v, th->cap * sizeof *th->v);
    }
    th->v[th->n++] = n;
    n->idx = th->n;
    n->deadline_ms = deadline_ms;
}

void fake_th_fire(gw_th *th)
{
    for (size_t i = 0; i < th->n;) {
        gw_th_node *n = th->v[i];
        if (n->deadline_ms <= th->w->now_ms) {
            gw_th_del(th, n);
            th->cb(th, n);
            i = 0;
        } else {
            i++;
        }
    }
}

/* ---- per-user rate limits: always a token ---- */

struct gw_rl {
    int unused;
};

gw_rl *gw_rl_acquire(const char *uid, size_t len, double burst, uint64_t now_ms)
{
    (void)uid;
    (void)len;
    (void)burst;
    (void)now_ms;
    return pr_calloc(1, sizeof(gw_rl));
}

void gw_rl_release(gw_rl *b) { pr_free(b); }

int gw_rl_take(gw_rl *b, uint64_t now_ms, double rate, double burst)
{
    (void)b;
    (void)now_ms;
    (void)rate;
    (void)burst;
    return 1;
}

/* ---- a chat worker on the fake transport ---- */

void fake_chat_start(fake_chat *t, const char *const *flags)
{
    char *argv[64] = {"test", "--app", "chat", "--auth", "insecure-dev", "--storage", "on",
                      "--ingest-shards", "4", "--recovery-window", "0"};
    int argc = 11;
    for (; flags && *flags && argc < 63; flags++)
        argv[argc++] = (char *)*flags;
    memset(t, 0, sizeof *t);
    if (gw_config_load(&t->cfg, argc, argv) != 0)
        abort();
    cm_log_level = CM_LOG_ERROR; /* the tests provoke warnings on purpose */
    t->w = fake_worker_new(&t->cfg);
    if (gw_app_chat.worker_init(t->w, &t->w->app) != 0)
        abort();
    t->cw = t->w->app;
    t->r = fake_last_redis;
}

void fake_chat_stop(fake_chat *t)
{
    gw_app_chat.worker_dispose(t->w, t->w->app);
    fake_worker_free(t->w);
}

gw_socket *fake_chat_connect(fake_chat *t, const char *sid, const char *user, int *rc)
{
    gw_socket *s = fake_socket_new(t->w, sid);
    s->pending = 1;
    json_t *auth = json_pack("{ss}", "userId", user);
    json_t *err = NULL;
    *rc = gw_app_chat.on_connect(s, auth, &err);
    if (*rc == 0)
        s->pending = 0;
    json_decref(auth);
    json_decref(err);
    return s;
}

void fake_chat_disconnect(fake_chat *t, gw_socket *sock)
{
    (void)t;
    gw_app_chat.on_disconnect(sock, "test");
    fake_socket_free(sock);
}

static redisReply *reply_new(int type)
{
    redisReply *r = pr_calloc(1, sizeof *r);
    r->type = type;
    return r;
}

redisReply *fake_int(long long v)
{
    redisReply *r = reply_new(REDIS_REPLY_INTEGER);
    r->integer = v;
    return r;
}

redisReply *fake_nil(void)
{
    return reply_new(REDIS_REPLY_NIL);
}

redisReply *fake_strings(const char *const *v)
{
    redisReply *r = reply_new(REDIS_REPLY_ARRAY);
    while (v[r->elements])
        r->elements++;
    r->element = pr_calloc(r->elements + 1, sizeof *r->element);
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *e = reply_new(REDIS_REPLY_STRING);
        e->len = strlen(v[i]);
        e->str = pr_strndup(v[i], e->len);
        r->element[i] = e;
    }
    return r;
}

void fake_reply_free(redisReply *r)
{
    for (size_t i = 0; i < r->elements; i++)
        fake_reply_free(r->element[i]);
    pr_free(r->element);
    pr_free(r->str);
    pr_free(r);
}

/* ---- record pools: plain allocations, so the sanitizers see every one ---- */

void *gw_pool_get(gw_pool *p)
{
    return pr_calloc(1, p->size);
}

void gw_pool_put(gw_pool *p, void *obj)
{
    (void)p;
    pr_free(obj);
}
