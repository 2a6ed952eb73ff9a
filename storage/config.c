/* config.c - the settings table of chat-storage and its parser. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chat.h"
#include "log.h"

typedef enum { T_STR, T_HOSTPORT, T_UINT, T_SIZE, T_BOOL, T_ENUM } setting_type;

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

#define OFF(f) offsetof(st_config, f), sizeof(((st_config *)0)->f)

/* The one list of settings. */
static const setting settings[] = {
    {"database", "CHAT_DATABASE_URL", T_STR, OFF(database_url), 0, 0, "", NULL,
     "PostgreSQL, postgresql://user[:password]@host[:port]/db or key=value (required)"},
    {"redis", "CHAT_REDIS_URL", T_STR, OFF(redis_url), 0, 0, "redis://127.0.0.1:6379", NULL,
     "Redis shared with the gateways, redis://[:password@]host[:port][/db]"},
    {"listen", "CHAT_LISTEN", T_HOSTPORT, OFF(listen_host), 0, 0, "0.0.0.0:3001", NULL,
     "HTTP address and port: API, /healthz, /readyz, /metrics (HOST:PORT)"},
    {"auth", "CHAT_AUTH", T_ENUM, OFF(auth), 0, 0, "jwt", "jwt|insecure-dev|auto",
     "API authentication: jwt, or insecure-dev to trust X-User-Id (tutorials only), or auto: "
     "jwt when --jwt-secret is set, else insecure-dev (laptop stacks)"},
    {"jwt-secret", "CHAT_JWT_SECRET", T_STR, OFF(jwt_secret), 0, 0, "", NULL,
     "HS256 secret of the tokens, as on the gateways (required with --auth jwt)"},
    {"room-secret", "CHAT_ROOM_SECRET", T_STR, OFF(room_secret), 0, 0, "", NULL,
     "key of direct-room ids, as on the gateways (default: derived from --jwt-secret)"},
    {"ingest-shards", "CHAT_INGEST_SHARDS", T_UINT, OFF(ingest_shards), 1, CHAT_SHARDS_MAX, "8",
     NULL, "ingest streams; equal on every gateway and replica, fixed once stored"},
    {"batch-size", "CHAT_BATCH_SIZE", T_UINT, OFF(batch_size), 1, 100000, "1000", NULL,
     "stream entries stored per database transaction, at most"},
    {"ingest-connections", "CHAT_INGEST_CONNECTIONS", T_UINT, OFF(ingest_connections), 1, 16,
     "2", NULL,
     "PostgreSQL connections storing batches side by side (shard S uses S mod N: each shard "
     "stays in order)"},
    {"lease-ms", "CHAT_LEASE_MS", T_UINT, OFF(lease_ms), 300, 600000, "10000", NULL,
     "milliseconds a shard stays owned without renewal (a dead replica's shards move after it)"},
    {"replica-id", "CHAT_REPLICA_ID", T_STR, OFF(replica_id), 0, 0, "", NULL,
     "name of this replica in leases, logs and metrics (default: HOSTNAME-PID-RANDOM)"},
    {"db-pool", "CHAT_DB_POOL", T_UINT, OFF(db_pool), 1, 256, "4", NULL,
     "PostgreSQL connections for the API and replay requests (ingest has its own)"},
    {"cors-origin", "CHAT_CORS_ORIGIN", T_STR, OFF(cors_origin), 0, 0, "", NULL,
     "allowed CORS origins of the API: comma-separated list, '*' for any, empty for none"},
    {"cors-credentials", "CHAT_CORS_CREDENTIALS", T_BOOL, OFF(cors_credentials), 0, 1, "false",
     NULL, "send Access-Control-Allow-Credentials: true"},
    {"max-body", "CHAT_MAX_BODY", T_SIZE, OFF(max_body), 1024, 16u << 20, "65536", NULL,
     "largest API request body, in bytes"},
    {"http-max-connections", "CHAT_HTTP_MAX_CONNECTIONS", T_UINT, OFF(http_max_connections), 1,
     1000000, "10000", NULL,
     "open HTTP connections at most; one more displaces the connection that has waited longest "
     "for its request"},
    {"http-request-timeout", "CHAT_HTTP_REQUEST_TIMEOUT", T_UINT, OFF(http_request_timeout), 100,
     3600000, "30000", NULL,
     "milliseconds an HTTP request may take to arrive whole (from the connection, or the end of "
     "the previous answer, to its last byte); then the connection is closed"},
    {"max-text-length", "CHAT_MAX_TEXT_LENGTH", T_SIZE, OFF(max_text_length), 1, 1u << 20,
     "4000", NULL, "longest message text posted through the API, in bytes"},
    {"rate-limit", "CHAT_RATE_LIMIT", T_UINT, OFF(rate_limit), 1, 1000000, "20", NULL,
     "API requests per second one user may make (token bucket rate)"},
    {"rate-burst", "CHAT_RATE_BURST", T_UINT, OFF(rate_burst), 1, 1000000, "40", NULL,
     "API requests one user may make at once (token bucket size)"},
    {"replay-max", "CHAT_REPLAY_MAX", T_UINT, OFF(replay_max), 1, 100000, "1000", NULL,
     "most messages in one replay or sync reply; more makes it an overflow"},
    {"log-level", "CHAT_LOG_LEVEL", T_ENUM, OFF(log_level), 0, 0, "info",
     "debug|info|warn|error", "log verbosity"},
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static int bad(const setting *s, const char *from, const char *val, const char *why)
{
    /* the database URL may carry a password: name the setting, not the value */
    if (s->offset == offsetof(st_config, database_url))
        val = "...";
    fprintf(stderr, "chat-storage: invalid value for --%s (%s): '%s': %s\n", s->flag, from, val,
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
    if (*v < '0' || *v > '9')
        return -1;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end != '\0')
        return -1;
    *out = x;
    return 0;
}

static int apply(st_config *cfg, const setting *s, const char *v, const char *from)
{
    char *field = (char *)cfg + s->offset;
    unsigned long long x;
    switch (s->type) {
    case T_STR:
    case T_ENUM:
        if (strlen(v) >= s->size)
            return bad(s, from, v, "too long");
        if (s->type == T_ENUM && !enum_has(s->choices, v)) {
            fprintf(stderr, "chat-storage: invalid value for --%s (%s): '%s': expected one of %s\n",
                    s->flag, from, v, s->choices);
            return -1;
        }
        strcpy(field, v);
        return 0;
    case T_HOSTPORT: {
        const char *colon = strrchr(v, ':');
        if (!colon || colon == v || (size_t)(colon - v) >= sizeof cfg->listen_host)
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
            fprintf(stderr, "chat-storage: invalid value for --%s (%s): '%s': must be %llu..%llu\n",
                    s->flag, from, v, s->min, s->max);
            return -1;
        }
        if (s->type == T_UINT) /* int and unsigned fields alike; bounds fit both */
            *(unsigned *)field = (unsigned)x;
        else
            *(size_t *)field = (size_t)x;
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

void st_config_usage(FILE *out)
{
    fprintf(out, "usage: chat-storage [options]\n\n"
                 "Every option can also be given as the environment variable shown; the\n"
                 "command line wins.\n\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting *s = &settings[i];
        char flag[64];
        snprintf(flag, sizeof flag, "--%s%s", s->flag, s->type == T_BOOL ? "" : " VALUE");
        fprintf(out, "  %-28s %s\n  %-28s env %s, default '%s'", flag, s->help, "", s->env, s->def);
        if (s->type == T_ENUM)
            fprintf(out, ", one of %s", s->choices);
        if (s->type == T_UINT || s->type == T_SIZE)
            fprintf(out, ", range %llu..%llu", s->min, s->max);
        fputs("\n", out);
    }
    fprintf(out, "  %-28s %s\n", "--help", "print this help and exit");
}

static const setting *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strlen(settings[i].flag) == len && !memcmp(settings[i].flag, name, len))
            return &settings[i];
    return NULL;
}

int st_config_load(st_config *cfg, int argc, char **argv)
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
            st_config_usage(stdout);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "chat-storage: unexpected argument '%s' (see --help)\n", a);
            return -1;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        const setting *s = find_flag(name, eq ? (size_t)(eq - name) : strlen(name));
        if (!s) {
            fprintf(stderr, "chat-storage: unknown option '%.*s' (see --help)\n",
                    (int)(eq ? (size_t)(eq - a) : strlen(a)), a);
            return -1;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v && s->type == T_BOOL)
            v = "true";
        if (!v) {
            if (i + 1 >= argc) {
                fprintf(stderr, "chat-storage: option --%s needs a value\n", s->flag);
                return -1;
            }
            v = argv[++i];
        }
        if (apply(cfg, s, v, "command line") != 0)
            return -1;
    }

    /* Cross-setting checks, each naming the setting at fault. */
    if (!cfg->database_url[0]) {
        fprintf(stderr, "chat-storage: missing value for --database (CHAT_DATABASE_URL)\n");
        return -1;
    }
    if (!strcmp(cfg->auth, "auto")) /* as on the gateways */
        snprintf(cfg->auth, sizeof cfg->auth, "%s", cfg->jwt_secret[0] ? "jwt" : "insecure-dev");
    if (!strcmp(cfg->auth, "jwt") && !cfg->jwt_secret[0]) {
        fprintf(stderr, "chat-storage: missing value for --jwt-secret (CHAT_JWT_SECRET): "
                        "required with --auth jwt (or use --auth insecure-dev for tutorials)\n");
        return -1;
    }
    st_redis_addr addr;
    if (pr_redis_url_parse(cfg->redis_url, &addr) != 0) {
        fprintf(stderr, "chat-storage: invalid value for --redis (CHAT_REDIS_URL): '%s': "
                        "expected redis://[:password@]host[:port][/db]\n", cfg->redis_url);
        return -1;
    }
    if (cfg->max_text_length + 1024 > cfg->max_body) {
        fprintf(stderr, "chat-storage: invalid value for --max-text-length: %zu leaves no room "
                        "in --max-body %zu\n", cfg->max_text_length, cfg->max_body);
        return -1;
    }
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
    if (!chat_id_valid(cfg->replica_id, strlen(cfg->replica_id))) {
        fprintf(stderr, "chat-storage: invalid value for --replica-id: '%s': printable ASCII "
                        "without spaces\n", cfg->replica_id);
        return -1;
    }
    st_log_level = st_log_parse_level(cfg->log_level);
    return 0;
}
