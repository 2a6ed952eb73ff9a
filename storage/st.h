/*
 * st.h - chat-storage internals shared between its files (st__ would be the
 * prefix of anything private to one file group; these are st_).
 *
 * Threading: chat-storage runs one libevent loop on one thread; everything
 * here is used on that thread only. PostgreSQL work happens in the database
 * server's processes, so one loop is enough to keep it busy.
 *
 * Contract of asynchronous calls (libuv's): if a call that takes a callback
 * returns 0 the callback runs exactly once, later (never from inside the
 * call); if it returns non-zero the callback never runs.
 */
#ifndef ST_H
#define ST_H

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdint.h>

#include "chat_keys.h"
#include "cm_redis.h"
#include "pr.h"

struct evhttp_request;
struct evhttp_connection;

typedef struct st_config st_config; /* config.h */

/* ---- PostgreSQL (pg.c) ----
 * A pool of non-blocking libpq connections on the loop. Queries run in the
 * order they were submitted on one connection when the pool has one
 * connection (the ingest pool, so batches commit in order); with several,
 * each query goes to an idle connection. A lost connection is reopened with
 * backoff; queries waiting for it stay queued (they are not lost), a query
 * that was running when the connection broke fails (res NULL). */
typedef struct st_pg st_pg;
/* res is borrowed until the callback returns. On failure res is NULL and
 * error says why (SQL error text or "connection lost"). A result with
 * PGRES_FATAL_ERROR is reported as a failure. */
typedef void (*st_pg_cb)(PGresult *res, const char *error, void *arg);

st_pg *st_pg_new(struct event_base *base, const char *conninfo, unsigned nconns, const char *name);
void st_pg_free(st_pg *pg); /* pending callbacks run with res NULL */
/* Text parameters (NULL = SQL NULL); text results. PR_ETOOBIG when too many
 * queries wait already (the database has been away a while). With nparams 0
 * the text may hold several statements (PQsendQuery): the callback gets the
 * last result that has rows, else the last result; the first error fails the
 * whole call. */
int st_pg_query(st_pg *pg, const char *sql, int nparams, const char *const *values, st_pg_cb cb,
                void *arg);
/* The same as a prepared statement called name: prepared on each connection
 * the first time it runs there (after running setup, several statements or
 * NULL: e.g. the session settings its plans need, which then stay for the
 * connection's life), executed without a parse or plan afterwards. The
 * result is the query's alone; an error of the setup or the prepare fails
 * the call, and the next call on that connection tries again. */
int st_pg_query_prepared(st_pg *pg, const char *name, const char *setup, const char *sql,
                         int nparams, const char *const *values, st_pg_cb cb, void *arg);
/* 1 when at least one connection is up. */
int st_pg_ready(const st_pg *pg);
/* Queries queued or running. */
unsigned st_pg_queued(const st_pg *pg);

/* ---- counters for /metrics (metrics.c) ---- */
#define ST_LATENCY_BUCKETS 11 /* message latency histogram; the last is +Inf */
extern const unsigned st_latency_le[ST_LATENCY_BUCKETS - 1]; /* ms, ingest/commit.c */

typedef struct {
    uint64_t messages_stored;    /* new messages committed */
    uint64_t messages_duplicate; /* (sender, room, clientMsgId) seen before */
    uint64_t messages_reused;    /* the same with another text: refused */
    uint64_t messages_forbidden; /* sender not a member */
    uint64_t messages_retried;   /* concurrent duplicate, run again */
    uint64_t entries_malformed;  /* stream entries dropped as invalid */
    uint64_t batches;            /* committed batches */
    uint64_t batch_entries;      /* entries in committed batches (sum) */
    uint64_t batch_seconds_us;   /* time from read to commit, summed, microseconds */
    uint64_t batch_db_us;        /* time from sending to commit, summed, microseconds */
    /* new messages by time from their XADD (the stream id's clock, Redis')
     * to their publish (this host's wall clock): <= st_latency_le[i] ms */
    uint64_t latency_le[ST_LATENCY_BUCKETS];
    uint64_t latency_ms_sum;
    uint64_t batch_size_le[6]; /* batches of <= 1, 10, 100, 1000, 10000, +Inf entries */
    uint64_t db_errors;        /* failed batch transactions (retried) */
    uint64_t fast_batches;     /* batches decided in the room cache (ingest/fast.c) */
    uint64_t fast_refused;     /* plans given up before sending (chat_batch_load instead) */
    uint64_t fast_aborts;      /* their statements refused by a guard or failed */
    uint64_t receipts_applied; /* receipt lines given to chat_receipts */
    uint64_t status_events;    /* messageStatus events published */
    uint64_t replay_requests;  /* replay and sync requests answered */
    uint64_t replay_overflows;
    uint64_t replay_errors;
    uint64_t posts; /* messages posted through st_post_message */
    uint64_t post_timeouts;
    uint64_t lease_acquired;
    uint64_t lease_lost;
    uint64_t lease_released; /* shards handed over to another replica */
    uint64_t cache_rebuilds; /* membership cache rebuilt from PostgreSQL (cache.c) */
} st_stats;

/* ---- the process (main.c) ---- */
typedef struct st_ingest st_ingest; /* ingest/ */
typedef struct st_replay st_replay; /* replay.c */
typedef struct st_posts st_posts;   /* publish.c */
typedef struct st_api st_api;       /* api/ */

typedef struct st_ctx {
    struct event_base *base;
    const st_config *cfg;
    st_pg *ingest_db;           /* one connection: batches, in order */
    st_pg *db;                  /* pool: HTTP API and replay requests */
    cm_redis *redis;            /* commands; its subscribe link carries reply_channel */
    cm_redis *blocking;         /* XREADGROUP ... BLOCK: nothing else may use it */
    unsigned char room_key[32]; /* chat_dm_key() */
    char replica_id[64];
    chat_key reply_channel; /* st:{REPLICA}: acks for messages posted over HTTP */
    uint64_t started_ms;
    /* added by the core (additive) */
    cm_redis *rpc_blocking; /* XREADGROUP on {st}:rpc: replay.c only */
    int migrated;           /* migrations applied, shard count checked */
    int stopping;           /* SIGTERM: no new work */
    st_ingest *ingest;
    st_replay *replay;
    st_posts *posts;
    struct st_cache *cache; /* cache.c */
    st_api *api;            /* the HTTP API's state: st_api_init to st_api_dispose */
    st_stats stats;
} st_ctx;

/* ---- migrations (migrate.c, migrations.c generated from sql/) ---- */
typedef struct {
    unsigned version; /* NNNN of NNNN_name.sql */
    const char *name;
    const char *sql;
} st_migration;
extern const st_migration st_migrations[];
extern const unsigned st_nmigrations;
/* sql/functions/NAME.sql: today's text of each SQL function (CREATE OR
 * REPLACE), in name order. */
typedef struct {
    const char *name;
    const char *sql;
} st_sql_function;
extern const st_sql_function st_sql_functions[];
extern const unsigned st_nsql_functions;
/*
 * Applies every migration not yet recorded in schema_migrations, each in its
 * own transaction under an advisory lock (replicas starting together apply
 * each once), then, in one transaction under the lock, every function of
 * st_sql_functions (unless the database has a migration this binary does
 * not know: a newer binary's functions stay), then records or checks
 * meta.ingest_shards and creates the shards rows. Runs on c->ingest_db
 * before anything else uses it; retries with backoff while PostgreSQL is
 * away. done(0) when finished (c->migrated is set), done(-1) when this
 * replica must not run (another shard count is stored; the error was
 * logged).
 */
typedef void (*st_migrate_cb)(int status, void *arg);
void st_migrate(st_ctx *c, st_migrate_cb done, void *arg);
void st_migrate_dispose(st_ctx *c);

/* ---- ingest shards (ingest/, its steps in ingest/ingest.h) ---- */
int st_ingest_start(st_ctx *c);
/* Stops reading, finishes the batches in flight, releases the leases; done
 * runs once that is over (or after a deadline if the database stays away). */
void st_ingest_stop(st_ctx *c, void (*done)(void *arg), void *arg);
void st_ingest_free(st_ctx *c);
unsigned st_ingest_owned(const st_ctx *c); /* shards held now */
int st_ingest_owns(const st_ctx *c, unsigned shard); /* 1: shard is held now */
/* The live replicas as this one last saw them (0: not known), and the
 * shards it wants among them (*target). */
unsigned st_ingest_view(const st_ctx *c, unsigned *target);

/* ---- the membership cache (cache.c) ----
 * Checks the marker {st}:cache every second (at most lease/3) and, when
 * Redis lost it, rebuilds {r:ROOM}:members and {u:USER}:rooms from
 * room_members, then sets it. Start after migrations; free after the Redis
 * and database links (their callbacks may still reach it). */
typedef struct st_cache st_cache;
int st_cache_start(st_ctx *c);
void st_cache_free(st_ctx *c);
/* verb ("SADD" or "SREM") of one membership to both sets of the cache;
 * cb (may be NULL) runs once per command sent. Returns how many were sent
 * (2, or fewer when the link is down). */
unsigned st_cache_write(st_ctx *c, const char *verb, const char *room, const char *user,
                        cm_redis_reply_cb cb, void *arg);

/* ---- replay and sync requests (replay.c) ---- */
int st_replay_start(st_ctx *c);
void st_replay_free(st_ctx *c);

/* ---- publishing to gateways (publish.c) ---- */
/* PUBLISH channel payload on the command link, reply dropped (every PUBLISH
 * of storage goes through here). PR_ECLOSED while the link is down. */
int st_publish(st_ctx *c, pr_view channel, pr_view payload);
/* The end of stream entries read in group CHAT_GROUP: XACK key GROUP ids,
 * then (if that was sent) XDEL key ids. cb (may be NULL) gets the XACK's
 * reply; the XDEL's is dropped. Returns the XACK's cm_redis_command code. */
int st_stream_done(st_ctx *c, pr_view key, const char *const *ids, size_t n, cm_redis_reply_cb cb,
                   void *arg);
/* XGROUP CREATE key CHAT_GROUP 0 MKSTREAM: the group starts at 0, so
 * entries added before it existed are read too. cb may be NULL. */
int st_stream_create_group(st_ctx *c, pr_view key, cm_redis_reply_cb cb, void *arg);
/* PUBLISH user:{USER} U1 with packet (a chat_packets.h packet text). */
int st_publish_user_packet(st_ctx *c, const char *user, pr_view packet);
/* PUBLISH user:{USER} J1/K1 and keep the membership cache
 * ({r:ROOM}:members, {u:USER}:rooms) in step. kind 'J' or 'K'. */
int st_publish_membership(st_ctx *c, char kind, const char *room, const char *user);

/*
 * Posts a message as user through the ingest stream (the same path as a
 * gateway's sendMessage), so it gets its place in the room's order from the
 * shard's owner. done runs exactly once if this returns 0: with the ack
 * object {id, seq, roomId, createdAt, status} or {error} (borrowed), or with
 * NULL after timeout_ms without an ack (the message may still be stored
 * later; a retry with the same client_msg_id is safe).
 */
typedef void (*st_post_cb)(json_t *ack, void *arg);
typedef struct {
    const char *room;
    const char *user;
    const char *first_name; /* may be "" */
    const char *last_name;  /* NULL: none */
    const char *text;
    size_t text_len;
    const char *client_msg_id; /* NULL: none */
    const char *peer;          /* direct room opened by target user, else NULL */
} st_post;
int st_post_message(st_ctx *c, const st_post *m, unsigned timeout_ms, st_post_cb done, void *arg);
/* The replica's reply channel and its pending posts (main.c calls these). */
void st_publish_init(st_ctx *c);
void st_publish_dispose(st_ctx *c); /* pending posts get NULL */
/* A message on a subscribed channel of c->redis (the reply channel). */
void st_publish_on_message(st_ctx *c, pr_view channel, pr_view message);

/* ---- HTTP API (api/, the story in api/api.h) ----
 * main.c serves /healthz, /readyz and /metrics and hands every request whose
 * path starts with /api/ (and OPTIONS preflights for it) to st_api_handle,
 * which must answer it (now or later) exactly once. */
int st_api_init(st_ctx *c);
void st_api_handle(st_ctx *c, struct evhttp_request *req);
void st_api_dispose(st_ctx *c);
/* A connection is gone: requests on it still waiting for an operation
 * are forgotten (their operation's callback only frees them). */
void st_api_conn_closed(st_ctx *c, struct evhttp_connection *con);

/* ---- /metrics (metrics.c) ---- */
struct evbuffer;
void st_metrics_write(st_ctx *c, struct evbuffer *out);

#endif
