/* config.c - the settings table of chat-gateway and its parser. */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "chat.h"
#include "cm_log.h"
#include "cm_settings.h"
#include "pr.h"

#define OFF(f) CM_SET_FIELD(gw_config, f)
CM_SET_HOSTPORT_ASSERT(gw_config, listen_host, listen_port);

/* The one list of settings. Keep README.md's configuration table in step. */
static const cm_setting rows[] = {
    {"listen", "CHAT_LISTEN", CM_SET_HOSTPORT, OFF(listen_host), 0, 0, "0.0.0.0:3000", NULL,
     "address and port to listen on (HOST:PORT)"},
    {"app", "CHAT_APP", CM_SET_ENUM, OFF(app), 0, 0, "chat", "chat|engine-echo|socketio-echo",
     "application to run"},
    {"path", "CHAT_PATH", CM_SET_STR, OFF(path), 0, 0, "", NULL,
     "Engine.IO request path (default: /engine.io/ for engine-echo, else /socket.io/)"},
    {"ping-interval", "CHAT_PING_INTERVAL", CM_SET_UINT, OFF(ping_interval_ms), 10, 3600000,
     "25000", NULL, "Engine.IO ping interval in milliseconds"},
    {"ping-timeout", "CHAT_PING_TIMEOUT", CM_SET_UINT, OFF(ping_timeout_ms), 10, 3600000, "20000",
     NULL, "milliseconds to wait for a pong before closing the session"},
    {"connect-timeout", "CHAT_CONNECT_TIMEOUT", CM_SET_UINT, OFF(connect_timeout_ms), 10, 3600000,
     "45000", NULL, "milliseconds a session may stay without a Socket.IO CONNECT"},
    {"max-payload", "CHAT_MAX_PAYLOAD", CM_SET_SIZE, OFF(max_payload), 64, 256u << 20, "1000000",
     NULL, "largest accepted message or polling body, in bytes"},
    {"cors-origin", "CHAT_CORS_ORIGIN", CM_SET_STR, OFF(cors_origin), 0, 0, "", NULL,
     "allowed CORS origins: comma-separated list, '*' for any, empty for none"},
    {"cors-credentials", "CHAT_CORS_CREDENTIALS", CM_SET_BOOL, OFF(cors_credentials), 0, 1, "false",
     NULL, "send Access-Control-Allow-Credentials: true"},
    {"workers", "CHAT_WORKERS", CM_SET_UINT, OFF(workers), 0, 256, "0", NULL,
     "event-loop threads (0: one per core)"},
    {"max-connections", "CHAT_MAX_CONNECTIONS", CM_SET_UINT, OFF(max_connections), 1, 10000000,
     "100000", NULL, "connections accepted at once by the process; more are refused"},
    {"max-header-bytes", "CHAT_MAX_HEADER_BYTES", CM_SET_SIZE, OFF(max_header_bytes), 1024,
     1u << 20, "8192", NULL, "largest HTTP request line plus headers, in bytes"},
    {"http-idle-timeout", "CHAT_HTTP_IDLE_TIMEOUT", CM_SET_UINT, OFF(http_idle_timeout_ms), 100,
     3600000, "30000", NULL, "milliseconds an HTTP connection may idle or send a request"},
    {"drain-delay", "CHAT_DRAIN_DELAY", CM_SET_UINT, OFF(drain_delay_ms), 0, 600000, "0", NULL,
     "milliseconds between SIGTERM (readiness fails) and closing every session"},
    {"output-soft-limit", "CHAT_OUTPUT_SOFT_LIMIT", CM_SET_SIZE, OFF(output_soft_limit), 1024,
     1ull << 32, "2097152", NULL,
     "bytes queued to one client that may persist only output-soft-seconds"},
    {"output-soft-seconds", "CHAT_OUTPUT_SOFT_SECONDS", CM_SET_UINT, OFF(output_soft_seconds), 1,
     3600, "10", NULL, "seconds a client may stay over the soft output limit"},
    {"output-hard-limit", "CHAT_OUTPUT_HARD_LIMIT", CM_SET_SIZE, OFF(output_hard_limit), 4096,
     1ull << 34, "16777216", NULL, "bytes queued to one client that close it at once"},
    {"log-level", "CHAT_LOG_LEVEL", CM_SET_ENUM, OFF(log_level), 0, 0, "info",
     "debug|info|warn|error", "log verbosity"},
    {"node-id", "CHAT_NODE_ID", CM_SET_STR, OFF(node_id), 0, 0, "", NULL,
     "name of this node in logs, metrics and presence (default: HOSTNAME-PID)"},
    {"serve-client", "CHAT_SERVE_CLIENT", CM_SET_ONOFF, OFF(serve_client), 0, 1, "on", NULL,
     "serve the Socket.IO browser client at PATH/socket.io.js (.min.js, .esm.min.js, source "
     "maps), as the Node server does (Socket.IO apps only)"},
    {"client-dir", "CHAT_CLIENT_DIR", CM_SET_STR, OFF(client_dir), 0, 0, "", NULL,
     "directory of socket.io-client's dist files (default: ../share/chat/socket.io-client "
     "beside the program's directory; missing there: a warning, not served)"},
    {"web-root", "CHAT_WEB_ROOT", CM_SET_STR, OFF(web_root), 0, 0, "", NULL,
     "directory of static files served at / (index.html for /), read into memory at start-up; "
     "empty: none"},
    {"auth", "CHAT_AUTH", CM_SET_ENUM, OFF(auth), 0, 0, "jwt", "jwt|insecure-dev|auto",
     "chat: jwt, or insecure-dev to trust userId/firstName from payloads (tutorials only), or "
     "auto: jwt when --jwt-secret is set, else insecure-dev (laptop stacks)"},
    {"jwt-secret", "CHAT_JWT_SECRET", CM_SET_STR, OFF(jwt_secret), 0, 0, "", NULL,
     "chat: HS256 secret of the tokens (required with --auth jwt)"},
    {"room-secret", "CHAT_ROOM_SECRET", CM_SET_STR, OFF(room_secret), 0, 0, "", NULL,
     "chat: key of direct-room ids (default: derived from --jwt-secret)"},
    {"redis", "CHAT_REDIS_URL", CM_SET_STR, OFF(redis_url), 0, 0, "redis://127.0.0.1:6379", NULL,
     "chat: Redis shared by every gateway, redis://[:password@]host[:port][/db], or a Redis "
     "Cluster, redis-cluster://[:password@]host:port[,host:port...] (seed nodes)"},
    {"presence-ttl", "CHAT_PRESENCE_TTL", CM_SET_UINT, OFF(presence_ttl_ms), 300, 3600000, "15000",
     NULL, "chat: milliseconds after which a dead gateway's users count as offline"},
    {"rate-limit", "CHAT_RATE_LIMIT", CM_SET_UINT, OFF(rate_limit), 1, 1000000, "20", NULL,
     "chat: events per second one connection may send (token bucket rate)"},
    {"rate-burst", "CHAT_RATE_BURST", CM_SET_UINT, OFF(rate_burst), 1, 1000000, "40", NULL,
     "chat: events one connection may send at once (token bucket size)"},
    {"max-text-length", "CHAT_MAX_TEXT_LENGTH", CM_SET_SIZE, OFF(max_text_length), 1, 1u << 20,
     "4000", NULL, "chat: longest message text, in bytes"},
    {"storage", "CHAT_STORAGE", CM_SET_ONOFF, OFF(storage), 0, 1, "on", NULL,
     "chat: on: messages are stored by chat-storage (acks after commit, statuses, recovery); "
     "off: relayed only"},
    {"ingest-shards", "CHAT_INGEST_SHARDS", CM_SET_UINT, OFF(ingest_shards), 1, 256, "8", NULL,
     "chat: ingest streams; must equal chat-storage's --ingest-shards"},
    {"recovery-window", "CHAT_RECOVERY_WINDOW", CM_SET_UINT, OFF(recovery_window_s), 0, 86400,
     "120", NULL, "chat: seconds a disconnected client may recover its session (0: no recovery)"},
    {"receipt-interval", "CHAT_RECEIPT_INTERVAL", CM_SET_UINT, OFF(receipt_interval_ms), 1, 60000,
     "50", NULL, "chat: milliseconds over which delivered/seen receipts are coalesced"},
    {"replay-max", "CHAT_REPLAY_MAX", CM_SET_UINT, OFF(replay_max), 1, 100000, "1000", NULL,
     "chat: most messages a connect sync or a recovery replays (more: a fresh session)"},
    {"replay-timeout", "CHAT_REPLAY_TIMEOUT", CM_SET_UINT, OFF(replay_timeout_ms), 10, 600000,
     "5000", NULL, "chat: milliseconds to wait for chat-storage's sync or replay answer"},
    {"join-timeout", "CHAT_JOIN_TIMEOUT", CM_SET_UINT, OFF(join_timeout_ms), 10, 600000, "5000",
     NULL, "chat: milliseconds a joinChat ack waits for chat-storage to commit the room"},
};

static const cm_settings table = {
    "chat-gateway",
    "usage: chat-gateway [options]          run the gateway\n"
    "       chat-gateway token --user ID ...  mint a JWT for local use\n"
    "       chat-gateway announce --text T    send an announcement to every socket\n"
    "       chat-gateway COMMAND --help       usage of a command\n\n"
    "Every option can also be given as the environment variable shown; the\n"
    "command line wins.\n\n",
    rows,
    sizeof rows / sizeof rows[0],
};

void gw_config_usage(FILE *out)
{
    cm_settings_usage(&table, out);
}

/* The node id names Redis channels (gw:{NODE.W}) and stream fields, so it
 * must be a chat id: printable ASCII without spaces. Empty: derived later. */
static int node_id_ok(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

/* For the chat app only (the echo apps never use Redis). */
static int check_chat(const gw_config *cfg)
{
    pr_redis_addr addr;
    if (pr_redis_url_parse(cfg->redis_url, &addr) != 0)
        return cm_settings_fail(&table, "invalid value for --redis (CHAT_REDIS_URL): '%s': "
                                "expected redis://[:password@]host[:port][/db]", cfg->redis_url);
    if (!chat_id_valid(cfg->node_id, strlen(cfg->node_id)))
        return cm_settings_fail(&table, "invalid value for --node-id: '%s': printable ASCII "
                                "without spaces", cfg->node_id);
    return 0;
}

int gw_config_load(gw_config *cfg, int argc, char **argv)
{
    memset(cfg, 0, sizeof *cfg);
    int rc = cm_settings_load(&table, cfg, argc, argv);
    if (rc != 0)
        return rc;

    /* Cross-setting checks, each naming the setting at fault. */
    if (cfg->output_hard_limit < cfg->max_payload + 4096)
        return cm_settings_fail(&table, "invalid value for --output-hard-limit: %zu must be at "
                                "least --max-payload + 4096 (%zu)",
                                cfg->output_hard_limit, cfg->max_payload + 4096);
    if (cfg->output_soft_limit > cfg->output_hard_limit)
        return cm_settings_fail(&table, "invalid value for --output-soft-limit: above "
                                "--output-hard-limit");
    if (cfg->path[0] && (cfg->path[0] != '/' || cfg->path[strlen(cfg->path) - 1] != '/'))
        return cm_settings_fail(&table, "invalid value for --path: '%s': must start and end "
                                "with /", cfg->path);
    /* auto: a secret means tokens, as scripts/dev.sh and the compose file
     * promise; what runs is logged at start-up */
    if (!strcmp(cfg->auth, "auto"))
        snprintf(cfg->auth, sizeof cfg->auth, "%s", cfg->jwt_secret[0] ? "jwt" : "insecure-dev");
    if (!strcmp(cfg->app, "chat") && !strcmp(cfg->auth, "jwt") && !cfg->jwt_secret[0])
        return cm_settings_fail(&table, "missing value for --jwt-secret (CHAT_JWT_SECRET): "
                                "required with --auth jwt (or use --auth insecure-dev for "
                                "tutorials)");
    if (!strcmp(cfg->app, "chat") && cfg->max_text_length + 1024 > cfg->max_payload)
        return cm_settings_fail(&table, "invalid value for --max-text-length: %zu leaves no room "
                                "in --max-payload %zu", cfg->max_text_length, cfg->max_payload);
    if (!node_id_ok(cfg->node_id))
        return cm_settings_fail(&table, "invalid value for --node-id: '%s': printable ASCII "
                                "without spaces", cfg->node_id);
    if (cfg->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = n > 0 ? (int)(n > 64 ? 64 : n) : 1;
    }
    if (!cfg->node_id[0]) {
        char host[40] = "node";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        snprintf(cfg->node_id, sizeof cfg->node_id, "%s-%d", host, (int)getpid());
    }
    if (!strcmp(cfg->app, "chat") && check_chat(cfg) != 0)
        return -1;
    cm_log_level = cm_log_parse_level(cfg->log_level);
    return 0;
}
