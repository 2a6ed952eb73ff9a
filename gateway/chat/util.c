/*
 * util.c - the chat's small tools: string-keyed maps, clocks, channel names,
 * Redis command building, replies to the sender, and finding a socket again
 * from asynchronous work (by sid, and generation where it matters).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "gc.h"

/* ---- string maps ---- */

size_t gc__hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return (size_t)h;
}

void gc__map_init(gc_map *m)
{
    m->nb = 256;
    m->n = 0;
    m->b = pr_calloc(m->nb, sizeof *m->b);
}

static gc_entry **smap_slot(gc_map *m, const char *key, size_t len)
{
    gc_entry **pp = &m->b[gc__hash(key, len) & (m->nb - 1)];
    while (*pp && !((*pp)->len == len && !memcmp((*pp)->key, key, len)))
        pp = &(*pp)->next;
    return pp;
}

gc_entry *gc__map_get(gc_map *m, const char *key, size_t len)
{
    return *smap_slot(m, key, len);
}

void gc__map_put(gc_map *m, gc_entry *e, const char *key, size_t len)
{
    e->key = pr_strndup(key, len);
    e->len = len;
    e->next = NULL;
    *smap_slot(m, key, len) = e;
    if (++m->n > m->nb) {
        size_t nb = m->nb * 2;
        gc_entry **b = pr_calloc(nb, sizeof *b);
        for (size_t i = 0; i < m->nb; i++)
            for (gc_entry *x = m->b[i], *next; x; x = next) {
                next = x->next;
                size_t k = gc__hash(x->key, x->len) & (nb - 1);
                x->next = b[k];
                b[k] = x;
            }
        pr_free(m->b);
        m->b = b;
        m->nb = nb;
    }
}

void gc__map_del(gc_map *m, gc_entry *e)
{
    gc_entry **pp = smap_slot(m, e->key, e->len);
    if (*pp == e) {
        *pp = e->next;
        m->n--;
    }
    pr_free(e->key);
}

void gc__map_free(gc_map *m, void (*free_entry)(gc_entry *e))
{
    for (size_t i = 0; i < m->nb; i++)
        for (gc_entry *e = m->b[i], *next; e; e = next) {
            next = e->next;
            pr_free(e->key);
            free_entry(e);
        }
    pr_free(m->b);
    m->b = NULL;
    m->n = m->nb = 0;
}

/* ---- small helpers ---- */

uint64_t gc__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void gc__iso_time(char out[48], uint64_t ms)
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(out, 48, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
}

void gc__room_channel(char *out, size_t n, const char *room)
{
    snprintf(out, n, "room:{%s}", room);
}

void gc__user_channel(char *out, size_t n, const char *user)
{
    snprintf(out, n, "user:{%s}", user);
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


void gc__cmd_add(gc_cmd *c, const char *p, size_t n)
{
    c->v[c->n] = p;
    c->l[c->n++] = n;
}

void gc__cmd_adds(gc_cmd *c, const char *s)
{
    gc__cmd_add(c, s, strlen(s));
}

void gc__cmd_ingest(gc_cmd *c, char key[32], unsigned shard, const char *kind)
{
    snprintf(key, 32, "{i:%u}:in", shard);
    gc__cmd_adds(c, "XADD");
    gc__cmd_adds(c, key);
    gc__cmd_adds(c, "*");
    gc__cmd_adds(c, "k");
    gc__cmd_adds(c, kind);
}

int gc__cmd_send(gc_worker *cw, gc_cmd *c, cm_redis_reply_cb cb, void *arg)
{
    return cm_redis_command(cw->redis, cb, arg, c->n, c->v, c->l);
}

/* PUBLISH an envelope; cb (may be NULL) gets the reply. */
int gc__publish(gc_worker *cw, const char *room, const char *except_user,
                       pr_view packet, cm_redis_reply_cb cb, void *arg)
{
    pr_buf env;
    pr_buf_init(&env, packet.len + 3 * CHAT_ID_MAX + 16);
    chat_env h = {pr_view_make(room, strlen(room)),
                  pr_view_make("", 0),
                  pr_view_make(except_user ? except_user : "", except_user ? strlen(except_user) : 0)};
    int rc = chat_env_encode(&env, &h, packet);
    if (rc == 0) {
        char channel[CHAT_ID_MAX + 16];
        if (!strcmp(room, ALL_ROOM))
            snprintf(channel, sizeof channel, "%s", ALL_CHANNEL);
        else
            gc__room_channel(channel, sizeof channel, room);
        const char *argv[] = {"PUBLISH", channel, env.ptr};
        size_t lens[] = {7, strlen(channel), env.len};
        rc = cm_redis_command(cw->redis, cb, arg, 3, argv, lens);
    }
    gw_app_count(cw->w, GC_COUNT_PUBLISHED, rc == 0);
    gw_app_count(cw->w, GC_COUNT_PUBLISH_FAILURES, rc != 0);
    pr_buf_dispose(&env);
    return rc;
}

/* Encodes 2["event", payload] once into buf. */
int gc__encode_event(pr_buf *buf, const char *event, json_t *payload)
{
    json_t *data = json_pack("[sO]", event, payload);
    int rc = sio_encode(buf, SIO_EVENT, "/", -1, 0, data);
    json_decref(data);
    return rc;
}

/* ---- replies ---- */

void gc__ack_json(gw_socket *sock, int64_t id, json_t *payload)
{
    json_t *args = json_pack("[O]", payload);
    gw_socket_ack(sock, id, args, NULL, 0);
    json_decref(args);
}

/* An error goes back as the ack when the client asked for one, else as a
 * chatError event to the sender only. */
void gc__reply_error(gw_socket *sock, const char *event, int64_t ack_id, const char *error)
{
    json_t *e = json_pack("{ss}", "error", error);
    if (ack_id >= 0) {
        gc__ack_json(sock, ack_id, e);
    } else {
        json_object_set_new(e, "event", json_string(event));
        json_t *args = json_pack("[O]", e);
        gw_socket_emit(sock, "chatError", args, NULL, 0, NULL, NULL);
        json_decref(args);
    }
    json_decref(e);
}

void gc__reply_ok(gw_socket *sock, int64_t ack_id, json_t *payload)
{
    if (ack_id >= 0)
        gc__ack_json(sock, ack_id, payload);
    json_decref(payload);
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

/* Strict unsigned decimal. */
int gc__parse_u64(const char *p, size_t n, uint64_t *out)
{
    if (n == 0 || n > 19)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        x = x * 10 + (uint64_t)(p[i] - '0');
    }
    *out = x;
    return 0;
}

