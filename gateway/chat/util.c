/*
 * util.c - the chat's small tools: string-keyed maps, time stamps, Redis
 * commands and PUBLISH, replies to the sender (the objects proto renders),
 * and finding a socket again from asynchronous work (by sid, and generation
 * where it matters).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "gc.h"

/* ---- string maps ---- */

static pr_view entry_key(const pr_map_entry *e)
{
    const gc_entry *x = (const gc_entry *)e;
    return pr_view_make(x->key, x->len);
}

void gc__map_init(gc_map *m)
{
    pr_map_init(m, 256, entry_key);
}

gc_entry *gc__map_get(gc_map *m, const char *key, size_t len)
{
    return (gc_entry *)pr_map_find(m, pr_view_make(key, len));
}

void gc__map_put(gc_map *m, gc_entry *e, const char *key, size_t len)
{
    e->key = pr_strndup(key, len);
    e->len = len;
    pr_map_insert(m, &e->link);
}

void gc__map_del(gc_map *m, gc_entry *e)
{
    pr_map_remove(m, &e->link);
    pr_free(e->key);
}

void gc__map_free(gc_map *m, void (*free_entry)(gc_entry *e))
{
    pr_map_iter it = pr_map_iter_make(m);
    for (gc_entry *e; (e = (gc_entry *)pr_map_next(&it));) {
        pr_free(e->key);
        free_entry(e);
    }
    pr_map_dispose(m);
}

/* ---- small helpers ---- */

void gc__iso_time(char out[48], uint64_t ms)
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(out, 48, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
}

void gc__copy(char *dst, size_t n, const char *src)
{
    size_t len = strnlen(src, n - 1);
    memcpy(dst, src, len);
    dst[len] = '\0';
}

int gc__view_is(pr_view v, const char *s, size_t len)
{
    return v.len == len && !memcmp(v.ptr, s, len);
}

/* ---- Redis helpers ---- */

int gc__redis_cmd(gc_worker *cw, cm_redis_reply_cb cb, void *arg, int argc,
                     const char **argv)
{
    size_t lens[16];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    return cm_redis_command(cw->redis, cb, arg, argc, argv, lens);
}

int gc__redis_xadd(gc_worker *cw, chat_xadd *x, cm_redis_reply_cb cb, void *arg)
{
    return cm_redis_command(cw->redis, cb, arg, x->argc, x->argv, x->lens);
}

int gc__redis_publish(gc_worker *cw, pr_view channel, pr_view message, cm_redis_reply_cb cb,
                      void *arg)
{
    const char *argv[] = {"PUBLISH", channel.ptr, message.ptr};
    size_t lens[] = {7, channel.len, message.len};
    return cm_redis_command(cw->redis, cb, arg, 3, argv, lens);
}

int gc__publish(gc_worker *cw, const char *room, const char *except_user, pr_view packet,
                cm_redis_reply_cb cb, void *arg)
{
    pr_buf env;
    pr_buf_init(&env, packet.len + 3 * CHAT_ID_MAX + 16);
    chat_env h = {pr_view_make(room, strlen(room)),
                  pr_view_make("", 0),
                  pr_view_make(except_user ? except_user : "", except_user ? strlen(except_user) : 0)};
    int rc = chat_env_encode(&env, &h, packet);
    if (rc == 0) {
        chat_key room_chan = chat_chan_room(room);
        pr_view channel =
            strcmp(room, CHAT_ROOM_ALL) ? chat_key_view(&room_chan) : PR_VIEW_LIT(CHAT_CHAN_ALL);
        rc = gc__redis_publish(cw, channel, pr_buf_view(&env), cb, arg);
    }
    gw_app_count(cw->w, GC_COUNT_PUBLISHED, rc == 0);
    gw_app_count(cw->w, GC_COUNT_PUBLISH_FAILURES, rc != 0);
    pr_buf_dispose(&env);
    return rc;
}

/* ---- replies ---- */

void gc__ack(gw_socket *sock, int64_t ack_id, pr_view obj)
{
    if (ack_id < 0)
        return;
    char small[512]; /* a message's ack: no allocation */
    if (obj.len + 2 <= sizeof small) {
        small[0] = '[';
        memcpy(small + 1, obj.ptr, obj.len);
        small[obj.len + 1] = ']';
        gw_socket_ack_raw(sock, ack_id, pr_view_make(small, obj.len + 2));
        return;
    }
    pr_buf args;
    pr_buf_init(&args, obj.len + 2);
    if (pr_buf_append_byte(&args, '[') == 0 && pr_buf_append_view(&args, obj) == 0 &&
        pr_buf_append_byte(&args, ']') == 0)
        gw_socket_ack_raw(sock, ack_id, pr_buf_view(&args));
    pr_buf_dispose(&args);
}

void gc__chat_error(gw_socket *sock, pr_view obj)
{
    static const char head[] = "2[\"chatError\",";
    pr_buf pkt;
    pr_buf_init(&pkt, sizeof head + obj.len + 1);
    if (pr_buf_append(&pkt, head, sizeof head - 1) == 0 && pr_buf_append_view(&pkt, obj) == 0 &&
        pr_buf_append_byte(&pkt, ']') == 0) {
        gw_blob *b = gw_blob_sio(pr_buf_view(&pkt));
        gw_socket_send_blob(sock, b); /* refused while the CONNECT is pending */
        gw_blob_unref(b);
    }
    pr_buf_dispose(&pkt);
}

/* An error goes back as the ack when the client asked for one, else as a
 * chatError event to the sender only. */
void gc__reply_error(gw_socket *sock, const char *event, int64_t ack_id, const char *error)
{
    pr_buf obj; /* escaped, a byte may take six */
    pr_buf_init(&obj, 64 + 6 * (strlen(error) + strlen(event)));
    if (ack_id >= 0) {
        if (chat_ack_error(&obj, error) == 0)
            gc__ack(sock, ack_id, pr_buf_view(&obj));
    } else if (chat_error_event(&obj, error, event) == 0) {
        gc__chat_error(sock, pr_buf_view(&obj));
    }
    pr_buf_dispose(&obj);
}

void gc__reply_ok(gw_socket *sock, int64_t ack_id)
{
    gc__ack(sock, ack_id, PR_VIEW_LIT(CHAT_ACK_OK));
}

/* ---- finding sockets again ---- */

gc_ref *gc__ref_new(gc_worker *cw, const gc_sock *cs)
{
    gc_ref *r = pr_calloc(1, sizeof *r);
    r->cw = cw;
    r->gen = cs->gen;
    memcpy(r->sid, cs->sid, sizeof r->sid);
    return r;
}

gc_sock *gc__sock_by_sid(gc_worker *cw, const char *sid)
{
    gw_socket *sock = gw_socket_find(cw->w, sid, "/");
    return sock ? gw_socket_data(sock) : NULL;
}

/* The socket r was made for, if nothing made r stale since (a new phase or
 * request bumps cs->gen). Frees r. */
gc_sock *gc__ref_take(gc_ref *r)
{
    gc_sock *cs = gc__sock_by_sid(r->cw, r->sid);
    if (cs && cs->gen != r->gen)
        cs = NULL;
    pr_free(r);
    return cs;
}

/* The socket r was made for, whatever its phase or generation since (the
 * session is the same: sids are never reused). Frees r. */
gc_sock *gc__ref_take_session(gc_ref *r)
{
    gc_sock *cs = gc__sock_by_sid(r->cw, r->sid);
    pr_free(r);
    return cs;
}
