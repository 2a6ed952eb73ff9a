/*
 * publish.c - what storage tells gateways: the one PUBLISH of every
 * envelope (st_publish) and the end of read stream entries (XACK + XDEL);
 * outside the ingest loop, user events (U1), membership changes (J1/K1 and
 * the membership cache), and messages posted over HTTP, which go through
 * the ingest stream like a gateway's sendMessage and come back as an A1 ack
 * on the replica's channel.
 */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "chat.h"
#include "cm_log.h"
#include "config.h"
#include "st.h"

/* ---- Redis commands of every publisher ---- */

int st_publish(st_ctx *c, pr_view channel, pr_view payload)
{
    const char *argv[3] = {"PUBLISH", channel.ptr, payload.ptr};
    size_t lens[3] = {7, channel.len, payload.len};
    return cm_redis_command(c->redis, NULL, NULL, 3, argv, lens);
}

int st_stream_done(st_ctx *c, pr_view key, const char *const *ids, size_t n, cm_redis_reply_cb cb,
                   void *arg)
{
    const char **argv = pr_malloc((n + 3) * sizeof *argv);
    size_t *lens = pr_malloc((n + 3) * sizeof *lens);
    argv[0] = "XACK";
    lens[0] = 4;
    argv[1] = key.ptr;
    lens[1] = key.len;
    argv[2] = CHAT_GROUP;
    lens[2] = strlen(CHAT_GROUP);
    for (size_t i = 0; i < n; i++) {
        argv[3 + i] = ids[i];
        lens[3 + i] = strlen(ids[i]);
    }
    int rc = cm_redis_command(c->redis, cb, arg, (int)n + 3, argv, lens);
    if (rc == 0) { /* XDEL key ids: the ids behind a new head */
        argv[1] = "XDEL";
        lens[1] = 4;
        argv[2] = key.ptr;
        lens[2] = key.len;
        cm_redis_command(c->redis, NULL, NULL, (int)n + 2, argv + 1, lens + 1);
    }
    pr_free(argv);
    pr_free(lens);
    return rc;
}

int st_stream_create_group(st_ctx *c, pr_view key, cm_redis_reply_cb cb, void *arg)
{
    const char *argv[] = {"XGROUP", "CREATE", key.ptr, CHAT_GROUP, "0", "MKSTREAM"};
    size_t lens[] = {6, 6, key.len, strlen(CHAT_GROUP), 1, 8};
    return cm_redis_command(c->redis, cb, arg, 6, argv, lens);
}

/* ---- user events and membership ---- */

int st_publish_user_packet(st_ctx *c, const char *user, pr_view packet)
{
    if (!chat_id_valid(user, strlen(user)))
        return PR_EINVAL;
    pr_buf env;
    pr_buf_init(&env, packet.len + CHAT_ID_MAX + 16);
    int rc = chat_uenv_encode(&env, pr_view_make(user, strlen(user)), packet);
    if (rc == 0) {
        chat_key channel = chat_chan_user(user);
        rc = st_publish(c, chat_key_view(&channel), pr_buf_view(&env));
    }
    pr_buf_dispose(&env);
    return rc;
}

int st_publish_membership(st_ctx *c, char kind, const char *room, const char *user)
{
    size_t rl = strlen(room), ul = strlen(user);
    if ((kind != 'J' && kind != 'K') || !chat_id_valid(room, rl) || !chat_id_valid(user, ul))
        return PR_EINVAL;
    /* the cache first: a gateway acting on J1/K1 may read it */
    if (st_cache_write(c, kind == 'J' ? "SADD" : "SREM", room, user, NULL, NULL) != 2)
        return PR_ECLOSED;
    chat_key channel = chat_chan_user(user);
    pr_buf env;
    pr_buf_init(&env, 2 * CHAT_ID_MAX + 16);
    int rc = chat_jenv_encode(&env, kind, pr_view_make(room, rl), pr_view_make(user, ul));
    if (rc == 0)
        rc = st_publish(c, chat_key_view(&channel), pr_buf_view(&env));
    pr_buf_dispose(&env);
    return rc;
}

/* ---- messages posted over HTTP ---- */

typedef struct post {
    struct post *next, **pprev;
    st_ctx *c;
    char req_id[24];
    st_post_cb done;
    void *arg;
    struct event *timer;
} post;

struct st_posts {
    post *head;
    uint64_t counter;
};

static void post_finish(post *p, json_t *ack)
{
    *p->pprev = p->next;
    if (p->next)
        p->next->pprev = p->pprev;
    event_free(p->timer);
    p->done(ack, p->arg);
    pr_free(p);
}

static void post_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    post *p = arg;
    p->c->stats.post_timeouts++;
    post_finish(p, NULL);
}

static post *post_find(st_ctx *c, pr_view req_id)
{
    if (!c->posts)
        return NULL;
    for (post *p = c->posts->head; p; p = p->next)
        if (pr_view_eq_cstr(req_id, p->req_id))
            return p;
    return NULL;
}

typedef struct {
    st_ctx *c;
    char req_id[24];
} xadd_arg;

static void xadd_cb(cm_redis *redis, redisReply *reply, void *arg)
{
    (void)redis;
    xadd_arg *x = arg;
    /* the post may have timed out already: find it again by id */
    post *p = post_find(x->c, pr_view_make(x->req_id, strlen(x->req_id)));
    if (p && (!reply || reply->type == REDIS_REPLY_ERROR)) {
        CM_WARN("event=post_xadd_failed req=%s err=\"%s\"", p->req_id,
                reply ? reply->str : "link lost");
        post_finish(p, NULL);
    }
    pr_free(x);
}

void st_publish_init(st_ctx *c)
{
    c->posts = pr_calloc(1, sizeof *c->posts);
}

void st_publish_dispose(st_ctx *c)
{
    if (!c->posts)
        return;
    while (c->posts->head)
        post_finish(c->posts->head, NULL);
    pr_free(c->posts);
    c->posts = NULL;
}

void st_publish_on_message(st_ctx *c, pr_view channel, pr_view message)
{
    (void)channel;
    pr_view it, sock, json;
    int64_t ack_id;
    if (chat_env_kind(message) != 'A' || chat_aenv_begin_decode(message, &it) != 0)
        return;
    int rc;
    while ((rc = chat_aenv_next(&it, &sock, &ack_id, &json)) == 1) {
        post *p = post_find(c, sock);
        if (!p)
            continue; /* timed out already */
        json_t *ack = json_loadb(json.ptr, json.len, 0, NULL);
        post_finish(p, ack);
        json_decref(ack);
    }
}

int st_post_message(st_ctx *c, const st_post *m, unsigned timeout_ms, st_post_cb done, void *arg)
{
    size_t rl = strlen(m->room), ul = strlen(m->user);
    if (!c->posts || !chat_id_valid(m->room, rl) || !chat_id_valid(m->user, ul) ||
        !chat_name_valid(m->first_name, strlen(m->first_name)) ||
        (m->last_name && !chat_name_valid(m->last_name, strlen(m->last_name))) ||
        (m->client_msg_id && !chat_id_valid(m->client_msg_id, strlen(m->client_msg_id))) ||
        (m->peer && !chat_id_valid(m->peer, strlen(m->peer))) || m->text_len == 0)
        return PR_EINVAL;
    post *p = pr_calloc(1, sizeof *p);
    p->c = c;
    snprintf(p->req_id, sizeof p->req_id, "p%llx", (unsigned long long)++c->posts->counter);
    /* the same entry as a gateway's sendMessage, acked on our channel */
    chat_entry e = {0};
    e.room = pr_view_make(m->room, rl);
    e.user = pr_view_make(m->user, ul);
    e.first_name = pr_view_make(m->first_name, strlen(m->first_name));
    if (m->last_name)
        e.last_name = pr_view_make(m->last_name, strlen(m->last_name));
    e.text = pr_view_make(m->text, m->text_len);
    if (m->client_msg_id)
        e.client_msg_id = pr_view_make(m->client_msg_id, strlen(m->client_msg_id));
    if (m->peer)
        e.peer = pr_view_make(m->peer, strlen(m->peer));
    e.reply_to = chat_key_view(&c->reply_channel);
    e.socket = pr_view_make(p->req_id, strlen(p->req_id));
    e.ack_id = 0;
    chat_xadd xadd;
    if (chat_xadd_message(&xadd, c->cfg->ingest_shards, &e) != 0) {
        pr_free(p);
        return PR_EINVAL;
    }
    xadd_arg *x = pr_malloc(sizeof *x);
    x->c = c;
    memcpy(x->req_id, p->req_id, sizeof x->req_id);
    if (cm_redis_command(c->redis, xadd_cb, x, xadd.argc, xadd.argv, xadd.lens) != 0) {
        pr_free(x);
        pr_free(p);
        return PR_ECLOSED;
    }
    /* xadd_cb looks the post up by id, so linking it after sending is safe:
     * no callback runs before this function returns */
    p->done = done;
    p->arg = arg;
    p->timer = evtimer_new(c->base, post_timeout_cb, p);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(p->timer, &tv);
    p->next = c->posts->head;
    if (p->next)
        p->next->pprev = &p->next;
    p->pprev = &c->posts->head;
    c->posts->head = p;
    c->stats.posts++;
    return 0;
}
