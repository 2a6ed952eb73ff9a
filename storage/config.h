/*
 * config.h - every setting of chat-storage, parsed once at start-up into a
 * read-only struct. The table in config.c is the single list of settings:
 * flag, environment variable, type, bounds, default and help.
 */
#ifndef ST_CONFIG_H
#define ST_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "pr.h"

typedef struct st_config st_config;

struct st_config {
    char database_url[1024]; /* libpq connection string or postgresql:// URL */
    char redis_url[512];
    char listen_host[256];
    int listen_port;
    char auth[16]; /* "jwt" or "insecure-dev" ("auto" is resolved at load) */
    char jwt_secret[512];
    char room_secret[512];
    unsigned ingest_shards;      /* 1..CHAT_SHARDS_MAX, equal on gateways */
    unsigned batch_size;         /* stream entries per batch */
    unsigned ingest_connections; /* batches in the database at once (disjoint shards) */
    unsigned receipt_linger_ms;  /* receipts alone wait this long for a batch; 0: never */
    unsigned room_cache;         /* rooms the shard owner keeps in memory; 0: none */
    unsigned lease_ms;           /* shard lease */
    char replica_id[64];
    unsigned db_pool;       /* connections for the API and replay requests */
    char cors_origin[1024]; /* "" none, "*" any, else comma-separated list */
    int cors_credentials;
    size_t max_body;        /* largest HTTP request body */
    unsigned http_max_connections; /* open HTTP connections at most */
    unsigned http_request_timeout; /* ms from the wait for a request to its last byte */
    size_t max_text_length; /* longest message text posted over HTTP */
    unsigned rate_limit;    /* API requests per second per user */
    unsigned rate_burst;
    unsigned replay_max; /* most messages in one replay or sync reply */
    char log_level[16];
};

/*
 * Fills cfg from defaults, then environment variables, then argv (flags win).
 * Returns 0 to run, 1 when --help was printed (exit 0), -1 on a bad setting
 * (an error naming the setting was printed; exit 2).
 */
int st_config_load(st_config *cfg, int argc, char **argv);
void st_config_usage(FILE *out);

#endif
