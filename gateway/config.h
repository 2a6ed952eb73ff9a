/*
 * config.h - every setting of chat-gateway, parsed once at start-up into a
 * read-only struct. The table in config.c is the single list of settings:
 * flag, environment variable, type, bounds, default and help.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stddef.h>
#include <stdio.h>

typedef struct gw_config {
    char listen_host[256];
    int listen_port;
    char app[32];
    char path[128];
    unsigned ping_interval_ms;
    unsigned ping_timeout_ms;
    unsigned connect_timeout_ms;
    size_t max_payload;
    char cors_origin[1024]; /* "" none, "*" any, else comma-separated list */
    int cors_credentials;
    int workers;
    int max_connections;     /* per process */
    size_t max_header_bytes;
    unsigned http_idle_timeout_ms;
    unsigned drain_delay_ms;
    size_t output_soft_limit;
    size_t output_hard_limit;
    unsigned output_soft_seconds;
    char log_level[16];
    char node_id[64];
    /* static files (static.c) */
    int serve_client;       /* 1: PATH/socket.io.js and friends are served */
    char client_dir[1024];  /* socket.io-client's dist/; "": next to the binary */
    char web_root[1024];    /* served at /; "": nothing */
    /* chat */
    char auth[16];          /* "jwt" or "insecure-dev" ("auto" is resolved at load) */
    char jwt_secret[512];
    char room_secret[512];
    char redis_url[512];
    unsigned presence_ttl_ms;
    unsigned rate_limit;    /* events per second per connection */
    unsigned rate_burst;
    size_t max_text_length;
    /* chat with storage (docs/storage.md) */
    int storage;                 /* 1: messages go through chat-storage */
    unsigned ingest_shards;      /* must equal chat-storage's */
    unsigned recovery_window_s;  /* connection-state recovery; 0: off */
    unsigned receipt_interval_ms;
    unsigned replay_max;         /* messages one sync or replay may bring */
    unsigned replay_timeout_ms;
    unsigned join_timeout_ms;    /* joinChat waits for storage's "open" answer */
} gw_config;

/*
 * Fills cfg from defaults, then environment variables, then argv (flags win).
 * Returns 0 to run, 1 when --help was printed (exit 0), -1 on a bad setting
 * (an error naming the setting was printed; exit 2).
 */
int gw_config_load(gw_config *cfg, int argc, char **argv);
void gw_config_usage(FILE *out);

#endif
