/* Unit tests of storage/config.c: the settings table and the Redis URL parser. */
#include <stdlib.h>

#include "chat.h"
#include "config.h"
#include "t.h"

static int load(st_config *cfg, int argc, char **argv)
{
    FILE *null = freopen("/dev/null", "w", stderr); /* errors are expected */
    (void)null;
    return st_config_load(cfg, argc, argv);
}

int main(void)
{
    st_config cfg;
    unsetenv("CHAT_JWT_SECRET");
    unsetenv("CHAT_DATABASE_URL");

    char *ok[] = {"x",           "--database",         "postgresql://u@h/db",
                  "--auth",      "insecure-dev",       "--listen",
                  "127.0.0.1:0", "--ingest-shards=16", "--cors-credentials"};
    CHECK_EQ(load(&cfg, 9, ok), 0);
    CHECK(!strcmp(cfg.database_url, "postgresql://u@h/db"));
    CHECK(!strcmp(cfg.listen_host, "127.0.0.1"));
    CHECK_EQ(cfg.listen_port, 0);
    CHECK_EQ(cfg.ingest_shards, 16);
    CHECK_EQ(cfg.cors_credentials, 1);
    /* defaults */
    CHECK_EQ(cfg.batch_size, 1000);
    CHECK_EQ(cfg.lease_ms, 10000);
    CHECK_EQ(cfg.ingest_connections, 1);
    CHECK_EQ(cfg.db_pool, 4);
    CHECK_EQ(cfg.max_body, 65536);
    CHECK_EQ(cfg.replay_max, 1000);
    CHECK_EQ(cfg.http_max_connections, 10000);
    CHECK_EQ(cfg.http_request_timeout, 30000);
    CHECK(!strcmp(cfg.redis_url, "redis://127.0.0.1:6379"));
    /* the default replica id is usable in keys and channels */
    CHECK(cfg.replica_id[0] != '\0');
    CHECK(chat_id_valid(cfg.replica_id, strlen(cfg.replica_id)));

    /* environment, and the command line winning over it */
    setenv("CHAT_DATABASE_URL", "dbname=chat", 1);
    setenv("CHAT_BATCH_SIZE", "250", 1);
    char *env[] = {"x", "--auth", "insecure-dev"};
    CHECK_EQ(load(&cfg, 3, env), 0);
    CHECK(!strcmp(cfg.database_url, "dbname=chat"));
    CHECK_EQ(cfg.batch_size, 250);
    char *flag_wins[] = {"x", "--auth", "insecure-dev", "--batch-size", "7"};
    CHECK_EQ(load(&cfg, 5, flag_wins), 0);
    CHECK_EQ(cfg.batch_size, 7);
    setenv("CHAT_HTTP_MAX_CONNECTIONS", "50", 1);
    char *cap[] = {"x", "--auth", "insecure-dev", "--http-request-timeout", "2000"};
    CHECK_EQ(load(&cfg, 5, cap), 0);
    CHECK_EQ(cfg.http_max_connections, 50);
    CHECK_EQ(cfg.http_request_timeout, 2000);
    unsetenv("CHAT_HTTP_MAX_CONNECTIONS");
    setenv("CHAT_BATCH_SIZE", "many", 1);
    CHECK_EQ(load(&cfg, 3, env), -1); /* a bad environment value stops start-up too */
    unsetenv("CHAT_BATCH_SIZE");

    /* each bad setting alone stops start-up */
    char *bad[][2] = {
        {"--ingest-shards", "0"},
        {"--ingest-shards", "257"},
        {"--batch-size", "-1"},
        {"--lease-ms", "10"},
        {"--listen", "nonsense"},
        {"--listen", "1.2.3.4:70000"},
        {"--auth", "none"},
        {"--unknown", "1"},
        {"--db-pool", ""},
        {"--redis", "http://h"},
        {"--redis", "redis://h:0"},
        {"--replica-id", "a b"},
        {"--max-body", "1"},
        {"--replay-max", "x"},
        {"--log-level", "loud"},
        {"--ingest-connections", "0"},
        {"--ingest-connections", "17"},
        {"--cors-credentials=maybe", NULL},
        {"--http-max-connections", "0"},
        {"--http-max-connections", "1000001"},
        {"--http-request-timeout", "99"},
        {"--http-request-timeout", "3600001"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[5] = {"x", "--auth", "insecure-dev", bad[i][0], bad[i][1]};
        CHECK_EQ(load(&cfg, bad[i][1] ? 5 : 4, argv), -1);
    }
    /* required settings */
    unsetenv("CHAT_DATABASE_URL");
    char *no_db[] = {"x", "--auth", "insecure-dev"};
    CHECK_EQ(load(&cfg, 3, no_db), -1);
    char *no_secret[] = {"x", "--database", "dbname=chat"};
    CHECK_EQ(load(&cfg, 3, no_secret), -1);
    char *secret[] = {"x", "--database", "dbname=chat", "--jwt-secret", "s"};
    CHECK_EQ(load(&cfg, 5, secret), 0);
    char *text_too_long[] = {"x",      "--database",        "d",
                             "--auth", "insecure-dev",      "--max-body",
                             "2048",   "--max-text-length", "4000"};
    CHECK_EQ(load(&cfg, 9, text_too_long), -1);
    char *missing_value[] = {"x", "--database"};
    CHECK_EQ(load(&cfg, 2, missing_value), -1);

    pr_redis_addr a;
    CHECK_EQ(pr_redis_url_parse("redis://127.0.0.1:6380", &a), 0);
    CHECK(!strcmp(a.host, "127.0.0.1"));
    CHECK_EQ(a.port, 6380);
    CHECK_EQ(pr_redis_url_parse("redis://:pw@host/3", &a), 0);
    CHECK(!strcmp(a.password, "pw"));
    CHECK(!strcmp(a.host, "host"));
    CHECK_EQ(a.port, 6379);
    CHECK_EQ(a.db, 3);
    CHECK_EQ(pr_redis_url_parse("redis://user:pw@h:1", &a), 0);
    CHECK(!strcmp(a.password, "pw"));
    CHECK_EQ(a.port, 1);
    CHECK_EQ(pr_redis_url_parse("http://h", &a), PR_EINVAL);
    CHECK_EQ(pr_redis_url_parse("redis://", &a), PR_EINVAL);
    CHECK_EQ(pr_redis_url_parse("redis://h:99999", &a), PR_EINVAL);
    CHECK_EQ(pr_redis_url_parse("redis://h:-1", &a), PR_EINVAL);
    CHECK_EQ(pr_redis_url_parse("redis://h/x", &a), PR_EINVAL);
    T_DONE();
}
