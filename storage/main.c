/*
 * main.c - chat-storage: settings, the event loop, the HTTP routes
 * (/healthz, /readyz, /metrics, /api/...; the server itself is http.c),
 * start-up order and shutdown.
 *
 * Start-up: HTTP answers at once (/readyz 503); migrations run on the ingest
 * connection, retrying while PostgreSQL is away; then ingest and replay
 * start. SIGTERM/SIGINT: /readyz fails, ingest stops reading, finishes its
 * batches and releases its leases, then the process exits 0. A second signal
 * exits at once.
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>

#include "chat.h"
#include "cm_clock.h"
#include "cm_log.h"
#include "config.h"
#include "http.h"
#include "st.h"

static st_config config;

static void *alloc_malloc(size_t n)
{
    return pr_malloc(n);
}
static void *alloc_realloc(void *p, size_t n)
{
    return pr_realloc(p, n);
}
static void alloc_free(void *p)
{
    pr_free(p);
}

static int ready(const st_ctx *c)
{
    return c->migrated && !c->stopping && st_pg_ready(c->ingest_db) && st_pg_ready(c->db) &&
           cm_redis_ready(c->redis) && cm_redis_ready(c->blocking) &&
           cm_redis_ready(c->rpc_blocking);
}

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *type,
                       struct evbuffer *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, body);
}

static void http_cb(struct evhttp_request *req, void *arg)
{
    st_ctx *c = arg;
    const char *uri = evhttp_request_get_uri(req);
    const struct evhttp_uri *parsed = evhttp_request_get_evhttp_uri(req);
    const char *path = parsed ? evhttp_uri_get_path(parsed) : NULL;
    if (!path)
        path = uri ? uri : "";
    if (!strncmp(path, "/api/", 5) || !strcmp(path, "/api")) {
        st_api_handle(c, req);
        return;
    }
    struct evbuffer *body = evbuffer_new();
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
        evbuffer_add_printf(body, "method not allowed\n");
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply_text(req, 405, "Method Not Allowed", "text/plain", body);
    } else if (!strcmp(path, "/healthz")) {
        evbuffer_add_printf(body, "ok\n");
        reply_text(req, 200, "OK", "text/plain", body);
    } else if (!strcmp(path, "/readyz")) {
        int ok = ready(c);
        evbuffer_add_printf(body, "%s\n", ok ? "ok" : c->stopping ? "stopping" : "not ready");
        reply_text(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", "text/plain", body);
    } else if (!strcmp(path, "/metrics")) {
        st_metrics_write(c, body);
        reply_text(req, 200, "OK", "text/plain; version=0.0.4", body);
    } else {
        evbuffer_add_printf(body, "not found\n");
        reply_text(req, 404, "Not Found", "text/plain", body);
    }
    evbuffer_free(body);
}

static void http_closed(struct evhttp_connection *con, void *arg)
{
    st_api_conn_closed(arg, con);
}

/* Descriptors for --http-max-connections beside the database and Redis
 * links: the soft limit is raised as far as the hard one allows. Below what
 * the cap needs, accept() may run out first: that is survived (the oldest
 * waiting connection is displaced), and said once here. */
static void raise_fd_limit(const st_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = (rlim_t)cfg->http_max_connections + cfg->db_pool + cfg->ingest_connections + 64;
    if (rl.rlim_cur < want && rl.rlim_cur != RLIM_INFINITY) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
        CM_WARN("event=fd_limit_low limit=%llu http_max_connections=%u msg=\"the descriptor limit "
                "is below what --http-max-connections needs\"",
                (unsigned long long)rl.rlim_cur, cfg->http_max_connections);
}

static void on_reply_message(cm_redis *redis, pr_view channel, pr_view message, void *arg)
{
    (void)redis;
    st_publish_on_message(arg, channel, message);
}

static void migrated_cb(int status, void *arg)
{
    st_ctx *c = arg;
    if (status != 0) {
        /* another shard count is stored: running would split rooms over the
         * wrong streams */
        event_base_loopexit(c->base, NULL);
        return;
    }
    st_ingest_start(c);
    st_replay_start(c);
    st_cache_start(c);
}

static int exit_code;

static void stopped_cb(void *arg)
{
    st_ctx *c = arg;
    CM_INFO("event=stopped");
    /* a moment for the last replies (lease releases, acks) to be written */
    struct timeval tv = {0, 100 * 1000};
    event_base_loopexit(c->base, &tv);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    st_ctx *c = arg;
    if (c->stopping) {
        CM_WARN("event=exit_now signal=%d", (int)sig);
        event_base_loopbreak(c->base);
        return;
    }
    c->stopping = 1;
    CM_INFO("event=stopping signal=%d", (int)sig);
    st_ingest_stop(c, stopped_cb, c);
}

int main(int argc, char **argv)
{
    pr_alloc_install_jansson();
    int rc = st_config_load(&config, argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    cm_log_set_label("replica", config.replica_id);
    event_set_mem_functions(alloc_malloc, alloc_realloc, alloc_free);
    signal(SIGPIPE, SIG_IGN);
    if (!strcmp(config.auth, "insecure-dev"))
        CM_WARN("event=INSECURE_AUTH msg=\"--auth insecure-dev: the API trusts X-User-Id and "
                "anyone can act as anyone. For tutorials only: never expose this service.\"");

    pr_redis_addr addr;
    pr_redis_url_parse(config.redis_url, &addr); /* checked by st_config_load */

    static st_ctx ctx;
    st_ctx *c = &ctx;
    c->base = event_base_new();
    c->cfg = &config;
    c->started_ms = cm_now_ms();
    snprintf(c->replica_id, sizeof c->replica_id, "%s", config.replica_id);
    c->reply_channel = chat_chan_storage(config.replica_id);
    chat_dm_key(config.room_secret, config.jwt_secret, c->room_key);

    raise_fd_limit(&config);
    st_http_options ho = {
        .host = config.listen_host,
        .port = config.listen_port,
        .max_connections = config.http_max_connections,
        .request_timeout_ms = config.http_request_timeout,
        .max_body = config.max_body,
        .on_request = http_cb,
        .on_close = http_closed,
        .arg = c,
    };
    st_http *http = st_http_new(c->base, &ho);
    if (!http) {
        fprintf(stderr, "chat-storage: cannot listen on %s:%d (--listen)\n", config.listen_host,
                config.listen_port);
        return 2;
    }
    int port = st_http_port(http);

    c->ingest_db = st_pg_new(c->base, config.database_url, 1, "ingest");
    c->db = st_pg_new(c->base, config.database_url, config.db_pool, "api");
    cm_redis_options commands = {.name = "commands", .on_message = on_reply_message, .arg = c};
    c->redis = cm_redis_new(c->base, &addr, &commands);
    c->blocking = cm_redis_new(c->base, &addr, &(cm_redis_options){.name = "ingest-read"});
    c->rpc_blocking = cm_redis_new(c->base, &addr, &(cm_redis_options){.name = "rpc-read"});
    st_publish_init(c);
    cm_redis_subscribe(c->redis, chat_key_view(&c->reply_channel));
    if (st_api_init(c) != 0) {
        fprintf(stderr, "chat-storage: cannot start the HTTP API\n");
        return 1;
    }
    CM_INFO("event=listening addr=%s port=%d ingest_shards=%u batch_size=%u lease_ms=%u",
            config.listen_host, port, config.ingest_shards, config.batch_size, config.lease_ms);
    st_migrate(c, migrated_cb, c);

    struct event *sigterm = evsignal_new(c->base, SIGTERM, signal_cb, c);
    struct event *sigint = evsignal_new(c->base, SIGINT, signal_cb, c);
    event_add(sigterm, NULL);
    event_add(sigint, NULL);

    event_base_dispatch(c->base);
    if (!c->stopping && !c->migrated)
        exit_code = 2; /* refused to run (shard count) */

    /* Teardown: stop taking requests, then free what others' callbacks point
     * into last. Pools and links run their pending callbacks with NULL, and
     * those callbacks may still touch ingest, replay and the API state. */
    c->stopping = 1;
    event_free(sigterm);
    event_free(sigint);
    st_migrate_dispose(c);
    /* database callbacks (ingest, replay, API) run with NULL and may still
     * answer HTTP requests: the HTTP server goes after them */
    st_pg_free(c->ingest_db);
    st_pg_free(c->db);
    st_publish_dispose(c); /* pending posts: NULL */
    st_api_dispose(c);
    st_http_free(http);
    cm_redis_free(c->blocking);
    cm_redis_free(c->rpc_blocking);
    cm_redis_free(c->redis);
    c->ingest_db = c->db = NULL;
    c->blocking = c->rpc_blocking = c->redis = NULL;
    st_replay_free(c);
    st_ingest_free(c);
    st_cache_free(c);
    event_base_free(c->base);
    return exit_code;
}
