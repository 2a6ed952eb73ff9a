/*
 * fake.h - a fake transport for the unit tests of gateway/chat/: every
 * function of app.h and redis.h the chat calls, recording what it is asked
 * to do, so a test drives the real chat code (gw_app_chat's callbacks and
 * the gc__ functions) and checks what went to sockets and to Redis.
 *
 * Redis: commands are recorded as one line of their arguments joined by
 * ' ' and kept with their callbacks; fake_redis_reply answers one of them
 * with a reply (or NULL: link lost); cm_redis_free answers every one left
 * with NULL (hiredis' contract). Subscription waits are kept until
 * fake_redis_confirm. Timer heaps are unsorted lists fired by fake_th_fire;
 * record pools are plain allocations (the sanitizers see each record).
 */
#ifndef FAKE_H
#define FAKE_H

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "gc.h"

#define FAKE_MAX 64

struct gw_worker {
    int index;
    gw_config *cfg;
    void *app;
    uint64_t now_ms;
    struct event_base *base;
    unsigned flushes;
    uint64_t counters[GW_APP_COUNTERS_MAX];
};

struct gw_blob {
    unsigned refs;
    size_t len;
    char data[];
};

struct gw_socket {
    gw_worker *w;
    char sid[GW_SID_LEN + 1];
    void *data;
    int pending;      /* the CONNECT is not answered yet */
    int accepted;     /* gw_socket_accept calls */
    int dropped;      /* gw_socket_drop_transport calls */
    uint64_t mark;    /* what gw_socket_unread_mark answers */
    pr_buf out;       /* every packet written: "TEXT\n"; acks "ack ID ARGS\n" */
};

typedef struct {
    char text[2048];  /* the arguments joined by ' ' */
    cm_redis_reply_cb cb;
    void *arg;
    int answered;
} fake_cmd;

struct cm_redis {
    gw_worker *w;
    int ready;
    int fail_next;    /* the next command is refused (as when not connected) */
    fake_cmd cmds[FAKE_MAX * 4];
    unsigned ncmds;
    struct {
        cm_redis_subscribed_cb cb;
        void *arg;
        char channel[128];
    } waits[FAKE_MAX];
    unsigned nwaits;
    int subs; /* subscribe minus unsubscribe calls */
};

extern unsigned fake_blobs_live; /* blobs made and not freed yet */
extern cm_redis *fake_last_redis;

gw_worker *fake_worker_new(gw_config *cfg);
void fake_worker_free(gw_worker *w);
gw_socket *fake_socket_new(gw_worker *w, const char *sid);
void fake_socket_free(gw_socket *s);
/* The index of the first recorded command containing needle at or after
 * from, or -1. */
int fake_redis_find(const cm_redis *r, unsigned from, const char *needle);
unsigned fake_redis_count(const cm_redis *r, const char *needle);
/* Answers command idx (once) with rep (NULL: the link was lost). */
void fake_redis_reply(cm_redis *r, int idx, redisReply *rep);
/* Answers every recorded command not answered yet with rep (may be NULL). */
void fake_redis_answer_all(cm_redis *r, redisReply *rep);
/* Runs every subscription wait with ok. */
void fake_redis_confirm(cm_redis *r, int ok);
/* Fires the nodes of th due at now (on the fake worker's clock). */
void fake_th_fire(gw_th *th);
/* Occurrences of needle in what socket s was written. */
unsigned fake_out_count(const gw_socket *s, const char *needle);

#endif

/* ---- a chat worker on the fake transport ---- */
typedef struct {
    gw_config cfg;
    gw_worker *w;
    gc_worker *cw;
    cm_redis *r;
} fake_chat;

/* gw_app_chat's worker_init with --auth insecure-dev, --storage on,
 * --ingest-shards 4, --recovery-window 0 and then flags (NULL-ended). */
void fake_chat_start(fake_chat *t, const char *const *flags);
void fake_chat_stop(fake_chat *t);
/* A socket of user (insecure-dev: auth {"userId": user}) through
 * gw_app_chat.on_connect; *rc is what on_connect returned. */
gw_socket *fake_chat_connect(fake_chat *t, const char *sid, const char *user, int *rc);
void fake_chat_disconnect(fake_chat *t, gw_socket *sock);
/* Replies: an integer, nil, or an array of strings (NULL-ended). */
redisReply *fake_int(long long v);
redisReply *fake_nil(void);
redisReply *fake_strings(const char *const *v);
void fake_reply_free(redisReply *r);
