/* config.c - the settings table of chat-storage and its parser. */
#include "config.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chat.h"
#include "cm_log.h"
#include "cm_settings.h"

#define OFF(f) CM_SET_FIELD(st_config, f)
CM_SET_HOSTPORT_ASSERT(st_config, listen_host, listen_port);

/* The one list of settings. */
static const cm_setting rows[] = {
    {"database", "CHAT_DATABASE_URL", CM_SET_SECRET, OFF(database_url), 0, 0, "", NULL,
     "PostgreSQL, postgresql://user[:password]@host[:port]/db or key=value (required)"},
    {"redis", "CHAT_REDIS_URL", CM_SET_STR, OFF(redis_url), 0, 0, "redis://127.0.0.1:6379", NULL,
     "Redis shared with the gateways, redis://[:password@]host[:port][/db], or a Redis "
     "Cluster, redis-cluster://[:password@]host:port[,host:port...] (seed nodes)"},
    {"listen", "CHAT_LISTEN", CM_SET_HOSTPORT, OFF(listen_host), 0, 0, "0.0.0.0:3001", NULL,
     "HTTP address and port: API, /healthz, /readyz, /metrics (HOST:PORT)"},
    {"auth", "CHAT_AUTH", CM_SET_ENUM, OFF(auth), 0, 0, "jwt", "jwt|insecure-dev|auto",
     "API authentication: jwt, or insecure-dev to trust X-User-Id (tutorials only), or auto: "
     "jwt when --jwt-secret is set, else insecure-dev (laptop stacks)"},
    {"jwt-secret", "CHAT_JWT_SECRET", CM_SET_STR, OFF(jwt_secret), 0, 0, "", NULL,
     "HS256 secret of the tokens, as on the gateways (required with --auth jwt)"},
    {"room-secret", "CHAT_ROOM_SECRET", CM_SET_STR, OFF(room_secret), 0, 0, "", NULL,
     "key of direct-room ids, as on the gateways (default: derived from --jwt-secret)"},
    {"ingest-shards", "CHAT_INGEST_SHARDS", CM_SET_UINT, OFF(ingest_shards), 1, CHAT_SHARDS_MAX,
     "8", NULL, "ingest streams; equal on every gateway and replica, fixed once stored"},
    {"batch-size", "CHAT_BATCH_SIZE", CM_SET_UINT, OFF(batch_size), 1, 100000, "1000", NULL,
     "stream entries stored per database transaction, at most"},
    {"ingest-connections", "CHAT_INGEST_CONNECTIONS", CM_SET_UINT, OFF(ingest_connections), 1, 16,
     "1", NULL,
     "PostgreSQL connections storing batches side by side (shard S uses S mod N: each shard "
     "stays in order)"},
    {"receipt-linger-ms", "CHAT_RECEIPT_LINGER_MS", CM_SET_UINT, OFF(receipt_linger_ms), 0, 5000,
     "20", NULL,
     "milliseconds receipts read while no messages are being batched wait for messages to ride "
     "with, rather than cost a database transaction of their own (0: never wait)"},
    {"room-cache", "CHAT_ROOM_CACHE", CM_SET_UINT, OFF(room_cache), 0, 10000000, "100000", NULL,
     "rooms whose seq, members and watermarks the shard owner keeps in memory, to decide its "
     "batches there and write them set-based (0: every batch through the SQL functions)"},
    {"lease-ms", "CHAT_LEASE_MS", CM_SET_UINT, OFF(lease_ms), 300, 600000, "10000", NULL,
     "milliseconds a shard stays owned without renewal (a dead replica's shards move after it)"},
    {"replica-id", "CHAT_REPLICA_ID", CM_SET_STR, OFF(replica_id), 0, 0, "", NULL,
     "name of this replica in leases, logs and metrics (default: HOSTNAME-PID-RANDOM)"},
    {"db-pool", "CHAT_DB_POOL", CM_SET_UINT, OFF(db_pool), 1, 256, "4", NULL,
     "PostgreSQL connections for the API and replay requests (ingest has its own)"},
    {"cors-origin", "CHAT_CORS_ORIGIN", CM_SET_STR, OFF(cors_origin), 0, 0, "", NULL,
     "allowed CORS origins of the API: comma-separated list, '*' for any, empty for none"},
    {"cors-credentials", "CHAT_CORS_CREDENTIALS", CM_SET_BOOL, OFF(cors_credentials), 0, 1, "false",
     NULL, "send Access-Control-Allow-Credentials: true"},
    {"max-body", "CHAT_MAX_BODY", CM_SET_SIZE, OFF(max_body), 1024, 16u << 20, "65536", NULL,
     "largest API request body, in bytes"},
    {"http-max-connections", "CHAT_HTTP_MAX_CONNECTIONS", CM_SET_UINT, OFF(http_max_connections), 1,
     1000000, "10000", NULL,
     "open HTTP connections at most; one more displaces the connection that has waited longest "
     "for its request"},
    {"http-request-timeout", "CHAT_HTTP_REQUEST_TIMEOUT", CM_SET_UINT, OFF(http_request_timeout),
     100, 3600000, "30000", NULL,
     "milliseconds an HTTP request may take to arrive whole (from the connection, or the end of "
     "the previous answer, to its last byte); then the connection is closed"},
    {"max-text-length", "CHAT_MAX_TEXT_LENGTH", CM_SET_SIZE, OFF(max_text_length), 1, 1u << 20,
     "4000", NULL, "longest message text posted through the API, in bytes"},
    {"rate-limit", "CHAT_RATE_LIMIT", CM_SET_UINT, OFF(rate_limit), 1, 1000000, "20", NULL,
     "API requests per second one user may make (token bucket rate)"},
    {"rate-burst", "CHAT_RATE_BURST", CM_SET_UINT, OFF(rate_burst), 1, 1000000, "40", NULL,
     "API requests one user may make at once (token bucket size)"},
    {"replay-max", "CHAT_REPLAY_MAX", CM_SET_UINT, OFF(replay_max), 1, 100000, "1000", NULL,
     "most messages in one replay or sync reply; more makes it an overflow"},
    {"log-level", "CHAT_LOG_LEVEL", CM_SET_ENUM, OFF(log_level), 0, 0, "info",
     "debug|info|warn|error", "log verbosity"},
};

static const cm_settings table = {
    "chat-storage",
    "usage: chat-storage [options]\n\n"
    "Every option can also be given as the environment variable shown; the\n"
    "command line wins.\n\n",
    rows,
    sizeof rows / sizeof rows[0],
};

void st_config_usage(FILE *out)
{
    cm_settings_usage(&table, out);
}

int st_config_load(st_config *cfg, int argc, char **argv)
{
    memset(cfg, 0, sizeof *cfg);
    int rc = cm_settings_load(&table, cfg, argc, argv);
    if (rc != 0)
        return rc;

    /* Cross-setting checks, each naming the setting at fault. */
    if (!cfg->database_url[0])
        return cm_settings_fail(&table, "missing value for --database (CHAT_DATABASE_URL)");
    if (!strcmp(cfg->auth, "auto")) /* as on the gateways */
        snprintf(cfg->auth, sizeof cfg->auth, "%s", cfg->jwt_secret[0] ? "jwt" : "insecure-dev");
    if (!strcmp(cfg->auth, "jwt") && !cfg->jwt_secret[0])
        return cm_settings_fail(&table, "missing value for --jwt-secret (CHAT_JWT_SECRET): "
                                "required with --auth jwt (or use --auth insecure-dev for "
                                "tutorials)");
    pr_redis_addr addr;
    if (pr_redis_url_parse(cfg->redis_url, &addr) != 0)
        return cm_settings_fail(&table, "invalid value for --redis (CHAT_REDIS_URL): '%s': "
                                "expected redis://[:password@]host[:port][/db]", cfg->redis_url);
    if (cfg->max_text_length + 1024 > cfg->max_body)
        return cm_settings_fail(&table, "invalid value for --max-text-length: %zu leaves no room "
                                "in --max-body %zu", cfg->max_text_length, cfg->max_body);
    if (!cfg->replica_id[0]) {
        char host[40] = "storage";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        /* the random part tells apart two replicas that get the same pid in
         * containers on one host name */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned rnd = (unsigned)(ts.tv_nsec ^ (ts.tv_sec << 10)) & 0xffffu;
        snprintf(cfg->replica_id, sizeof cfg->replica_id, "%s-%d-%04x", host, (int)getpid(), rnd);
    }
    if (!chat_id_valid(cfg->replica_id, strlen(cfg->replica_id)))
        return cm_settings_fail(&table, "invalid value for --replica-id: '%s': printable ASCII "
                                "without spaces", cfg->replica_id);
    cm_log_level = cm_log_parse_level(cfg->log_level);
    return 0;
}
