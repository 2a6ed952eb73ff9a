/* Unit tests of gateway/config.c and the Redis URL parser. */
#include <stdlib.h>

#include "config.h"
#include "cm_redis.h"
#include "t.h"

static int load(gw_config *cfg, int argc, char **argv)
{
    FILE *null = freopen("/dev/null", "w", stderr); /* errors are expected */
    (void)null;
    return gw_config_load(cfg, argc, argv);
}

int main(void)
{
    gw_config cfg;
    char *ok[] = {"x", "--app", "socketio-echo", "--listen", "127.0.0.1:0", "--ping-interval",
                  "300", "--cors-origin=*", "--cors-credentials"};
    CHECK_EQ(load(&cfg, 9, ok), 0);
    CHECK_EQ(cfg.ping_interval_ms, 300);
    CHECK_EQ(cfg.listen_port, 0);
    CHECK(!strcmp(cfg.listen_host, "127.0.0.1"));
    CHECK(!strcmp(cfg.cors_origin, "*"));
    CHECK_EQ(cfg.cors_credentials, 1);
    CHECK_EQ(cfg.max_payload, 1000000);
    CHECK(cfg.workers >= 1);

    setenv("CHAT_PING_TIMEOUT", "1234", 1);
    char *env[] = {"x", "--app", "socketio-echo"};
    CHECK_EQ(load(&cfg, 3, env), 0);
    CHECK_EQ(cfg.ping_timeout_ms, 1234);
    char *flag_wins[] = {"x", "--app", "socketio-echo", "--ping-timeout", "99"};
    CHECK_EQ(load(&cfg, 5, flag_wins), 0);
    CHECK_EQ(cfg.ping_timeout_ms, 99);
    setenv("CHAT_PING_TIMEOUT", "abc", 1);
    CHECK_EQ(load(&cfg, 3, env), -1); /* a bad environment value stops start-up too */
    unsetenv("CHAT_PING_TIMEOUT");

    /* each bad setting alone stops start-up */
    char *bad[][2] = {
        {"--ping-interval", "abc"}, {"--ping-interval", "-5"},   {"--ping-interval", "5"},
        {"--listen", "nonsense"},   {"--listen", "1.2.3.4:70000"}, {"--app", "nope"},
        {"--unknown", "1"},         {"--max-payload", ""},       {"--path", "no-slash"},
        {"--cors-credentials=maybe", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[5] = {"x", "--app", "socketio-echo", bad[i][0], bad[i][1]};
        CHECK_EQ(load(&cfg, bad[i][1] ? 5 : 4, argv), -1);
    }
    char *chat_no_secret[] = {"x", "--app", "chat"};
    unsetenv("CHAT_JWT_SECRET");
    CHECK_EQ(load(&cfg, 3, chat_no_secret), -1);
    char *chat_dev[] = {"x", "--app", "chat", "--auth", "insecure-dev"};
    CHECK_EQ(load(&cfg, 5, chat_dev), 0);
    char *limits[] = {"x", "--app", "socketio-echo", "--max-payload", "100000",
                      "--output-hard-limit", "5000"};
    CHECK_EQ(load(&cfg, 7, limits), -1); /* hard limit below max-payload */

    /* chat storage settings: defaults, flags, environment, bounds */
    CHECK_EQ(load(&cfg, 5, chat_dev), 0);
    CHECK_EQ(cfg.storage, 1);
    CHECK_EQ(cfg.ingest_shards, 8);
    CHECK_EQ(cfg.recovery_window_s, 120);
    CHECK_EQ(cfg.receipt_interval_ms, 50);
    CHECK_EQ(cfg.replay_max, 1000);
    CHECK_EQ(cfg.replay_timeout_ms, 5000);
    CHECK_EQ(cfg.join_timeout_ms, 5000);
    char *storage[] = {"x", "--app", "chat", "--auth", "insecure-dev", "--storage", "off",
                       "--ingest-shards", "3", "--recovery-window", "0", "--receipt-interval",
                       "10", "--replay-max", "7", "--replay-timeout", "250"};
    CHECK_EQ(load(&cfg, 17, storage), 0);
    CHECK_EQ(cfg.storage, 0);
    CHECK_EQ(cfg.ingest_shards, 3);
    CHECK_EQ(cfg.recovery_window_s, 0);
    CHECK_EQ(cfg.receipt_interval_ms, 10);
    CHECK_EQ(cfg.replay_max, 7);
    CHECK_EQ(cfg.replay_timeout_ms, 250);
    char *join[] = {"x", "--app", "chat", "--auth", "insecure-dev", "--join-timeout", "250"};
    CHECK_EQ(load(&cfg, 7, join), 0);
    CHECK_EQ(cfg.join_timeout_ms, 250);
    setenv("CHAT_STORAGE", "off", 1);
    setenv("CHAT_INGEST_SHARDS", "16", 1);
    CHECK_EQ(load(&cfg, 5, chat_dev), 0);
    CHECK_EQ(cfg.storage, 0);
    CHECK_EQ(cfg.ingest_shards, 16);
    setenv("CHAT_STORAGE", "maybe", 1);
    CHECK_EQ(load(&cfg, 5, chat_dev), -1);
    unsetenv("CHAT_STORAGE");
    unsetenv("CHAT_INGEST_SHARDS");
    char *bad_chat[][2] = {
        {"--storage", "yes"},       {"--storage", "1"},         {"--ingest-shards", "0"},
        {"--ingest-shards", "257"}, {"--receipt-interval", "0"}, {"--replay-max", "0"},
        {"--replay-timeout", "5"},  {"--recovery-window", "-1"}, {"--node-id", "has space"},
        {"--join-timeout", "5"},
    };
    for (size_t i = 0; i < sizeof bad_chat / sizeof bad_chat[0]; i++) {
        char *argv[7] = {"x", "--app", "chat", "--auth", "insecure-dev", bad_chat[i][0],
                         bad_chat[i][1]};
        CHECK_EQ(load(&cfg, 7, argv), -1);
    }

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
    CHECK_EQ(pr_redis_url_parse("http://h", &a), PR_EINVAL);
    CHECK_EQ(pr_redis_url_parse("redis://", &a), PR_EINVAL);
    CHECK_EQ(pr_redis_url_parse("redis://h:0", &a), PR_EINVAL);
    CHECK_EQ(pr_redis_url_parse("redis://h:99999", &a), PR_EINVAL);
    CHECK_EQ(pr_redis_url_parse("redis://h/x", &a), PR_EINVAL);
    T_DONE();
}
