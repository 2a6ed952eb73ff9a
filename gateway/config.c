/* config.c - the settings table of chat-gateway and its parser. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

typedef enum { T_STR, T_HOSTPORT, T_UINT, T_SIZE, T_BOOL, T_ENUM, T_ONOFF } setting_type;

typedef struct {
    const char *flag; /* without the leading "--" */
    const char *env;
    setting_type type;
    size_t offset;
    size_t size;        /* T_STR/T_ENUM: buffer size */
    unsigned long long min, max;
    const char *def;
    const char *choices; /* T_ENUM: '|' separated */
    const char *help;
} setting;

#define OFF(f) offsetof(gw_config, f), sizeof(((gw_config *)0)->f)

/* The one list of settings. Keep README.md's configuration table in step. */
static const setting settings[] = {
    {"listen", "CHAT_LISTEN", T_HOSTPORT, OFF(listen_host), 0, 0, "0.0.0.0:3000", NULL,
     "address and port to listen on (HOST:PORT)"},
    {"app", "CHAT_APP", T_ENUM, OFF(app), 0, 0, "chat", "chat|engine-echo|socketio-echo",
     "application to run"},
    {"path", "CHAT_PATH", T_STR, OFF(path), 0, 0, "",
     NULL, "Engine.IO request path (default: /engine.io/ for engine-echo, else /socket.io/)"},
    {"ping-interval", "CHAT_PING_INTERVAL", T_UINT, OFF(ping_interval_ms), 10, 3600000, "25000",
     NULL, "Engine.IO ping interval in milliseconds"},
    {"ping-timeout", "CHAT_PING_TIMEOUT", T_UINT, OFF(ping_timeout_ms), 10, 3600000, "20000", NULL,
     "milliseconds to wait for a pong before closing the session"},
    {"connect-timeout", "CHAT_CONNECT_TIMEOUT", T_UINT, OFF(connect_timeout_ms), 10, 3600000,
     "45000", NULL, "milliseconds a session may stay without a Socket.IO CONNECT"},
    {"max-payload", "CHAT_MAX_PAYLOAD", T_SIZE, OFF(max_payload), 64, 256u << 20, "1000000", NULL,
     "largest accepted message or polling body, in bytes"},
    {"cors-origin", "CHAT_CORS_ORIGIN", T_STR, OFF(cors_origin), 0, 0, "", NULL,
     "allowed CORS origins: comma-separated list, '*' for any, empty for none"},
    {"cors-credentials", "CHAT_CORS_CREDENTIALS", T_BOOL, OFF(cors_credentials), 0, 1, "false",
     NULL, "send Access-Control-Allow-Credentials: true"},
    {"workers", "CHAT_WORKERS", T_UINT, OFF(workers), 0, 256, "0", NULL,
     "event-loop threads (0: one per core)"},
    {"max-connections", "CHAT_MAX_CONNECTIONS", T_UINT, OFF(max_connections), 1, 10000000,
     "100000", NULL, "connections accepted at once by the process; more are refused"},
    {"max-header-bytes", "CHAT_MAX_HEADER_BYTES", T_SIZE, OFF(max_header_bytes), 1024, 1u << 20,
     "8192", NULL, "largest HTTP request line plus headers, in bytes"},
    {"http-idle-timeout", "CHAT_HTTP_IDLE_TIMEOUT", T_UINT, OFF(http_idle_timeout_ms), 100,
     3600000, "30000", NULL, "milliseconds an HTTP connection may idle or send a request"},
    {"drain-delay", "CHAT_DRAIN_DELAY", T_UINT, OFF(drain_delay_ms), 0, 600000, "0", NULL,
     "milliseconds between SIGTERM (readiness fails) and closing every session"},
    {"output-soft-limit", "CHAT_OUTPUT_SOFT_LIMIT", T_SIZE, OFF(output_soft_limit), 1024,
     1ull << 32, "2097152", NULL,
     "bytes queued to one client that may persist only output-soft-seconds"},
    {"output-soft-seconds", "CHAT_OUTPUT_SOFT_SECONDS", T_UINT, OFF(output_soft_seconds), 1, 3600,
     "10", NULL, "seconds a client may stay over the soft output limit"},
    {"output-hard-limit", "CHAT_OUTPUT_HARD_LIMIT", T_SIZE, OFF(output_hard_limit), 4096,
     1ull << 34, "16777216", NULL, "bytes queued to one client that close it at once"},
    {"log-level", "CHAT_LOG_LEVEL", T_ENUM, OFF(log_level), 0, 0, "info",
     "debug|info|warn|error", "log verbosity"},
    {"node-id", "CHAT_NODE_ID", T_STR, OFF(node_id), 0, 0, "", NULL,
     "name of this node in logs, metrics and presence (default: HOSTNAME-PID)"},
    {"serve-client", "CHAT_SERVE_CLIENT", T_ONOFF, OFF(serve_client), 0, 1, "on", NULL,
     "serve the Socket.IO browser client at PATH/socket.io.js (.min.js, .esm.min.js, source "
     "maps), as the Node server does (Socket.IO apps only)"},
    {"client-dir", "CHAT_CLIENT_DIR", T_STR, OFF(client_dir), 0, 0, "", NULL,
     "directory of socket.io-client's dist files (default: ../share/chat/socket.io-client "
     "beside the program's directory; missing there: a warning, not served)"},
    {"web-root", "CHAT_WEB_ROOT", T_STR, OFF(web_root), 0, 0, "", NULL,
     "directory of static files served at / (index.html for /), read into memory at start-up; "
     "empty: none"},
    {"auth", "CHAT_AUTH", T_ENUM, OFF(auth), 0, 0, "jwt", "jwt|insecure-dev|auto",
     "chat: jwt, or insecure-dev to trust userId/firstName from payloads (tutorials only), or "
     "auto: jwt when --jwt-secret is set, else insecure-dev (laptop stacks)"},
    {"jwt-secret", "CHAT_JWT_SECRET", T_STR, OFF(jwt_secret), 0, 0, "", NULL,
     "chat: HS256 secret of the tokens (required with --auth jwt)"},
    {"room-secret", "CHAT_ROOM_SECRET", T_STR, OFF(room_secret), 0, 0, "", NULL,
     "chat: key of direct-room ids (default: derived from --jwt-secret)"},
    {"redis", "CHAT_REDIS_URL", T_STR, OFF(redis_url), 0, 0, "redis://127.0.0.1:6379", NULL,
     "chat: Redis shared by every gateway, redis://[:password@]host[:port][/db]"},
    {"presence-ttl", "CHAT_PRESENCE_TTL", T_UINT, OFF(presence_ttl_ms), 300, 3600000, "15000",
     NULL, "chat: milliseconds after which a dead gateway's users count as offline"},
    {"rate-limit", "CHAT_RATE_LIMIT", T_UINT, OFF(rate_limit), 1, 1000000, "20", NULL,
     "chat: events per second one connection may send (token bucket rate)"},
    {"rate-burst", "CHAT_RATE_BURST", T_UINT, OFF(rate_burst), 1, 1000000, "40", NULL,
     "chat: events one connection may send at once (token bucket size)"},
    {"max-text-length", "CHAT_MAX_TEXT_LENGTH", T_SIZE, OFF(max_text_length), 1, 1u << 20,
     "4000", NULL, "chat: longest message text, in bytes"},
    {"storage", "CHAT_STORAGE", T_ONOFF, OFF(storage), 0, 1, "on", NULL,
     "chat: on: messages are stored by chat-storage (acks after commit, statuses, recovery); "
     "off: relayed only"},
    {"ingest-shards", "CHAT_INGEST_SHARDS", T_UINT, OFF(ingest_shards), 1, 256, "8", NULL,
     "chat: ingest streams; must equal chat-storage's --ingest-shards"},
    {"recovery-window", "CHAT_RECOVERY_WINDOW", T_UINT, OFF(recovery_window_s), 0, 86400, "120",
     NULL, "chat: seconds a disconnected client may recover its session (0: no recovery)"},
    {"receipt-interval", "CHAT_RECEIPT_INTERVAL", T_UINT, OFF(receipt_interval_ms), 1, 60000,
     "50", NULL, "chat: milliseconds over which delivered/seen receipts are coalesced"},
    {"replay-max", "CHAT_REPLAY_MAX", T_UINT, OFF(replay_max), 1, 100000, "1000", NULL,
     "chat: most messages a connect sync or a recovery replays (more: a fresh session)"},
    {"replay-timeout", "CHAT_REPLAY_TIMEOUT", T_UINT, OFF(replay_timeout_ms), 10, 600000,
     "5000", NULL, "chat: milliseconds to wait for chat-storage's sync or replay answer"},
    {"join-timeout", "CHAT_JOIN_TIMEOUT", T_UINT, OFF(join_timeout_ms), 10, 600000, "5000",
     NULL, "chat: milliseconds a joinChat ack waits for chat-storage to commit the room"},
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static int bad(const setting *s, const char *from, const char *val, const char *why)
{
    fprintf(stderr, "chat-gateway: invalid value for --%s (%s): '%s': %s\n", s->flag, from, val,
            why);
    return -1;
}

static int enum_has(const char *choices, const char *v)
{
    size_t n = strlen(v);
    const char *p = choices;
    while (*p) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && memcmp(p, v, n) == 0)
            return 1;
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

static int parse_ull(const char *v, unsigned long long *out)
{
    char *end;
    if (*v == '\0' || *v == '-' || *v == '+' || *v == ' ')
        return -1;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end != '\0')
        return -1;
    *out = x;
    return 0;
}

static int apply(gw_config *cfg, const setting *s, const char *v, const char *from)
{
    char *field = (char *)cfg + s->offset;
    unsigned long long x;
    switch (s->type) {
    case T_STR:
    case T_ENUM:
        if (strlen(v) >= s->size)
            return bad(s, from, v, "too long");
        if (s->type == T_ENUM && !enum_has(s->choices, v)) {
            fprintf(stderr, "chat-gateway: invalid value for --%s (%s): '%s': expected one of %s\n",
                    s->flag, from, v, s->choices);
            return -1;
        }
        strcpy(field, v);
        return 0;
    case T_HOSTPORT: {
        const char *colon = strrchr(v, ':');
        if (!colon || colon == v || (size_t)(colon - v) >= sizeof(cfg->listen_host))
            return bad(s, from, v, "expected HOST:PORT");
        if (parse_ull(colon + 1, &x) != 0 || x > 65535)
            return bad(s, from, v, "port must be 0..65535");
        memcpy(cfg->listen_host, v, (size_t)(colon - v));
        cfg->listen_host[colon - v] = '\0';
        cfg->listen_port = (int)x;
        return 0;
    }
    case T_UINT:
    case T_SIZE:
        if (parse_ull(v, &x) != 0)
            return bad(s, from, v, "expected a non-negative integer");
        if (x < s->min || x > s->max) {
            fprintf(stderr, "chat-gateway: invalid value for --%s (%s): '%s': must be %llu..%llu\n",
                    s->flag, from, v, s->min, s->max);
            return -1;
        }
        if (s->type == T_UINT) /* int and unsigned fields alike; bounds fit both */
            *(unsigned *)field = (unsigned)x;
        else
            *(size_t *)field = (size_t)x;
        return 0;
    case T_ONOFF:
        if (!strcmp(v, "on"))
            *(int *)field = 1;
        else if (!strcmp(v, "off"))
            *(int *)field = 0;
        else
            return bad(s, from, v, "expected on or off");
        return 0;
    case T_BOOL:
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on"))
            *(int *)field = 1;
        else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off"))
            *(int *)field = 0;
        else
            return bad(s, from, v, "expected true or false");
        return 0;
    }
    return -1;
}

void gw_config_usage(FILE *out)
{
    fprintf(out, "usage: chat-gateway [options]          run the gateway\n"
                 "       chat-gateway token --user ID ...  mint a JWT for local use\n"
                 "       chat-gateway announce --text T    send an announcement to every socket\n"
                 "       chat-gateway COMMAND --help       usage of a command\n\n"
                 "Every option can also be given as the environment variable shown; the\n"
                 "command line wins.\n\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting *s = &settings[i];
        char flag[64];
        snprintf(flag, sizeof flag, "--%s%s", s->flag, s->type == T_BOOL ? "" : " VALUE");
        fprintf(out, "  %-28s %s\n  %-28s env %s, default '%s'", flag, s->help, "", s->env, s->def);
        if (s->type == T_ENUM)
            fprintf(out, ", one of %s", s->choices);
        if (s->type == T_ONOFF)
            fprintf(out, ", on or off");
        if (s->type == T_UINT || s->type == T_SIZE)
            fprintf(out, ", range %llu..%llu", s->min, s->max);
        fputs("\n", out);
    }
    fprintf(out, "  %-28s %s\n", "--help", "print this help and exit");
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

static const setting *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strlen(settings[i].flag) == len && !memcmp(settings[i].flag, name, len))
            return &settings[i];
    return NULL;
}

int gw_config_load(gw_config *cfg, int argc, char **argv)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NSETTINGS; i++)
        if (apply(cfg, &settings[i], settings[i].def, "default") != 0)
            return -1;
    for (size_t i = 0; i < NSETTINGS; i++) {
        const char *v = getenv(settings[i].env);
        if (v && apply(cfg, &settings[i], v, settings[i].env) != 0)
            return -1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            gw_config_usage(stdout);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "chat-gateway: unexpected argument '%s' (see --help)\n", a);
            return -1;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        const setting *s = find_flag(name, eq ? (size_t)(eq - name) : strlen(name));
        if (!s) {
            fprintf(stderr, "chat-gateway: unknown option '%s' (see --help)\n", a);
            return -1;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v && s->type == T_BOOL)
            v = "true";
        if (!v) {
            if (i + 1 >= argc) {
                fprintf(stderr, "chat-gateway: option --%s needs a value\n", s->flag);
                return -1;
            }
            v = argv[++i];
        }
        if (apply(cfg, s, v, "command line") != 0)
            return -1;
    }

    /* Cross-setting checks, each naming the setting at fault. */
    if (cfg->output_hard_limit < cfg->max_payload + 4096) {
        fprintf(stderr, "chat-gateway: invalid value for --output-hard-limit: %zu must be at least "
                        "--max-payload + 4096 (%zu)\n",
                cfg->output_hard_limit, cfg->max_payload + 4096);
        return -1;
    }
    if (cfg->output_soft_limit > cfg->output_hard_limit) {
        fprintf(stderr, "chat-gateway: invalid value for --output-soft-limit: above "
                        "--output-hard-limit\n");
        return -1;
    }
    if (cfg->path[0] && (cfg->path[0] != '/' || cfg->path[strlen(cfg->path) - 1] != '/')) {
        fprintf(stderr, "chat-gateway: invalid value for --path: '%s': must start and end with /\n",
                cfg->path);
        return -1;
    }
    /* auto: a secret means tokens, as scripts/dev.sh and the compose file
     * promise; what runs is logged at start-up */
    if (!strcmp(cfg->auth, "auto"))
        snprintf(cfg->auth, sizeof cfg->auth, "%s", cfg->jwt_secret[0] ? "jwt" : "insecure-dev");
    if (!strcmp(cfg->app, "chat") && !strcmp(cfg->auth, "jwt") && !cfg->jwt_secret[0]) {
        fprintf(stderr, "chat-gateway: missing value for --jwt-secret (CHAT_JWT_SECRET): "
                        "required with --auth jwt (or use --auth insecure-dev for tutorials)\n");
        return -1;
    }
    if (!strcmp(cfg->app, "chat") && cfg->max_text_length + 1024 > cfg->max_payload) {
        fprintf(stderr, "chat-gateway: invalid value for --max-text-length: %zu leaves no room "
                        "in --max-payload %zu\n", cfg->max_text_length, cfg->max_payload);
        return -1;
    }
    if (!node_id_ok(cfg->node_id)) {
        fprintf(stderr, "chat-gateway: invalid value for --node-id: '%s': printable ASCII "
                        "without spaces\n", cfg->node_id);
        return -1;
    }
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
    gw_log_level = gw_log_parse_level(cfg->log_level);
    return 0;
}
