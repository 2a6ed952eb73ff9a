/*
 * main.c - chat-gateway: settings, listeners, one worker thread per event
 * loop, signals and the metrics page.
 *
 * Each worker has its own SO_REUSEPORT listener on the same address, so the
 * kernel spreads connections over the loops with no shared accept lock.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <event2/thread.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "chat.h"
#include "gw_worker.h"
#include "jwt.h"
#include "cm_redis.h"

static gw_config config;
static gw_worker **workers;
static int nworkers;

static int listen_on(const char *host, int port)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "chat-gateway: invalid value for --listen: %s: %s\n", host,
                gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
        fprintf(stderr, "chat-gateway: cannot listen on %s:%d (--listen): %s\n", host, port,
                strerror(errno));
        if (fd != -1)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void *worker_main(void *arg)
{
    gw__worker_run(arg);
    return NULL;
}

/* Runs on each worker when the process is asked to stop. */
static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_worker *w = arg;
    event_del(&w->listen_ev);
    /* every session gets its close frame or close packet, then a moment to
     * flush before the loop exits */
    gw__eio_worker_close_all(w);
    struct timeval tv = {0, 200 * 1000};
    event_base_loopexit(w->base, &tv);
}

static void *alloc_malloc(size_t n) { return pr_malloc(n); }
static void *alloc_realloc(void *p, size_t n) { return pr_realloc(p, n); }
static void alloc_free(void *p) { pr_free(p); }

/* Finds --name VALUE or --name=VALUE in argv; else the environment. */
static const char *sub_opt(int argc, char **argv, const char *name, const char *env)
{
    size_t n = strlen(name);
    for (int i = 2; i < argc; i++)
        if (!strncmp(argv[i], "--", 2) && !strncmp(argv[i] + 2, name, n)) {
            if (argv[i][2 + n] == '=')
                return argv[i] + 3 + n;
            if (argv[i][2 + n] == '\0' && i + 1 < argc)
                return argv[i + 1];
        }
    return env ? getenv(env) : NULL;
}

static int wants_help(int argc, char **argv)
{
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    return 0;
}

/* chat-gateway token --user ID --name NAME [--ttl SECONDS] [--jwt-secret S] */
static int cmd_token(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        printf("usage: chat-gateway token --user ID [--name NAME] [--ttl SECONDS] "
               "[--jwt-secret S]\n\n"
               "Prints an HS256 JWT for --auth jwt: sub ID, name NAME, exp now + SECONDS\n"
               "(default 86400). The secret comes from --jwt-secret or CHAT_JWT_SECRET and\n"
               "must be the gateways' (and chat-storage's). For local use: an application's\n"
               "own backend mints its users' tokens with any JWT library.\n");
        return 0;
    }
    const char *user = sub_opt(argc, argv, "user", NULL);
    const char *name = sub_opt(argc, argv, "name", NULL);
    const char *ttl_s = sub_opt(argc, argv, "ttl", NULL);
    const char *secret = sub_opt(argc, argv, "jwt-secret", "CHAT_JWT_SECRET");
    if (!user || !chat_id_valid(user, strlen(user))) {
        fprintf(stderr, "chat-gateway token: --user ID is required (printable ASCII, no spaces, "
                        "at most %d bytes)\n", CHAT_ID_MAX);
        return 2;
    }
    if (!secret || !*secret) {
        fprintf(stderr, "chat-gateway token: --jwt-secret (CHAT_JWT_SECRET) is required\n");
        return 2;
    }
    char *end = NULL;
    long long ttl = ttl_s ? strtoll(ttl_s, &end, 10) : 86400;
    if (ttl_s && (*end || end == ttl_s)) {
        fprintf(stderr, "chat-gateway token: invalid value for --ttl: '%s'\n", ttl_s);
        return 2;
    }
    int64_t now = (int64_t)time(NULL);
    pr_buf out;
    pr_buf_init(&out, PR_JWT_MAX);
    int rc = pr_jwt_sign_hs256(&out, pr_view_make(secret, strlen(secret)), user, name ? name : "",
                               now, now + ttl);
    if (rc == 0)
        printf("%.*s\n", (int)out.len, out.ptr);
    else
        fprintf(stderr, "chat-gateway token: cannot sign: %s\n", pr_strerror(rc));
    pr_buf_dispose(&out);
    return rc == 0 ? 0 : 1;
}

/* PUBLISH env on chat:all; on a Redis Cluster SPUBLISH on the channel's
 * master, found by following MOVED from the first seed that answers. */
static int announce_publish(const pr_redis_addr *addr, pr_view env)
{
    char host[256];
    int port;
    unsigned seed = 0;
    snprintf(host, sizeof host, "%s", addr->host);
    port = addr->port;
    for (int hops = 0; hops < 8; hops++) {
        redisContext *ctx = redisConnect(host, port);
        if (!ctx || ctx->err) {
            if (ctx)
                redisFree(ctx);
            if (!addr->cluster || ++seed >= addr->nseeds)
                return 1;
            snprintf(host, sizeof host, "%s", addr->seeds[seed].host);
            port = addr->seeds[seed].port;
            continue;
        }
        if (addr->password[0])
            freeReplyObject(redisCommand(ctx, "AUTH %s", addr->password));
        if (addr->db)
            freeReplyObject(redisCommand(ctx, "SELECT %d", addr->db));
        redisReply *rep = redisCommand(ctx, addr->cluster ? "SPUBLISH " CHAT_CHAN_ALL " %b"
                                                          : "PUBLISH " CHAT_CHAN_ALL " %b",
                                       env.ptr, env.len);
        int status = 1, moved = 0;
        if (rep && rep->type == REDIS_REPLY_INTEGER) {
            printf("delivered to %lld gateway workers\n", rep->integer);
            status = 0;
        } else if (rep && rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "MOVED ", 6)) {
            const char *where = strrchr(rep->str, ' ') + 1, *colon = strrchr(where, ':');
            if (colon && (size_t)(colon - where) < sizeof host) {
                snprintf(host, sizeof host, "%.*s", (int)(colon - where), where);
                port = atoi(colon + 1);
                moved = 1;
            }
        }
        freeReplyObject(rep);
        redisFree(ctx);
        if (!moved)
            return status;
    }
    return 1;
}

/* chat-gateway announce --text TEXT [--redis URL]: every connected socket of
 * every gateway receives `announcement` {text} (the "to every socket" emit). */
static int cmd_announce(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        printf("usage: chat-gateway announce --text TEXT [--redis URL]\n\n"
               "Every socket connected to any gateway of the Redis (or Redis Cluster) at\nURL (default "
               "CHAT_REDIS_URL, else redis://127.0.0.1:6379) receives the event\n"
               "`announcement` {\"text\": TEXT}.\n");
        return 0;
    }
    const char *text = sub_opt(argc, argv, "text", NULL);
    const char *url = sub_opt(argc, argv, "redis", "CHAT_REDIS_URL");
    pr_redis_addr addr;
    if (!text) {
        fprintf(stderr, "chat-gateway announce: --text TEXT is required\n");
        return 2;
    }
    if (pr_redis_url_parse(url ? url : "redis://127.0.0.1:6379", &addr) != 0) {
        fprintf(stderr, "chat-gateway announce: invalid value for --redis\n");
        return 2;
    }
    json_t *data = json_pack("[s{ss}]", "announcement", "text", text);
    pr_buf pkt, env;
    pr_buf_init(&pkt, 1 << 20);
    pr_buf_init(&env, 1 << 20);
    chat_env h = {PR_VIEW_LIT(CHAT_ROOM_ALL), PR_VIEW_LIT(""), PR_VIEW_LIT("")};
    int rc = sio_encode(&pkt, SIO_EVENT, "/", -1, 0, data);
    if (rc == 0)
        rc = chat_env_encode(&env, &h, pr_buf_view(&pkt));
    json_decref(data);
    int status = rc == 0 ? announce_publish(&addr, pr_buf_view(&env)) : 1;
    if (status)
        fprintf(stderr, "chat-gateway announce: cannot publish to %s:%d\n", addr.host, addr.port);
    pr_buf_dispose(&pkt);
    pr_buf_dispose(&env);
    return status;
}

int main(int argc, char **argv)
{
    /* Buffers of 64 KB and more (a Redis pipeline during a connection burst)
     * get their own mappings, returned on free. glibc would otherwise raise
     * the threshold after the first such free and carve later ones from the
     * heap, whose holes stay resident under the long-lived connection state
     * (docs/decisions.md 26). */
    mallopt(M_MMAP_THRESHOLD, 64 * 1024);
    pr_alloc_install_jansson();
    if (argc > 1 && !strcmp(argv[1], "token"))
        return cmd_token(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "announce"))
        return cmd_announce(argc, argv);
    int rc = gw_config_load(&config, argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    const gw_app *app = gw_app_find(config.app);
    if (!app) {
        fprintf(stderr, "chat-gateway: invalid value for --app: '%s'\n", config.app);
        return 2;
    }
    cm_log_set_label("node", config.node_id);
    if (app == &gw_app_chat) {
        /* --redis and --node-id were checked by gw_config_load */
        if (!strcmp(config.auth, "insecure-dev"))
            CM_WARN("event=INSECURE_AUTH msg=\"--auth insecure-dev: identities come from event "
                    "payloads and anyone can act as anyone. For tutorials only: never expose this "
                    "gateway.\"");
    }
    event_set_mem_functions(alloc_malloc, alloc_realloc, alloc_free);
    if (evthread_use_pthreads() != 0) {
        CM_ERROR("event=evthread_init_failed");
        return 1;
    }
    if (gw__static_load(&config, app->socketio) != 0)
        return 2;
    gw__http_init(config.max_header_bytes);
    signal(SIGPIPE, SIG_IGN);

    /* Signals go to the main thread only: block them before threads start. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    nworkers = config.workers;
    workers = pr_calloc((size_t)nworkers, sizeof *workers);
    int port = config.listen_port;
    for (int i = 0; i < nworkers; i++) {
        int fd = listen_on(config.listen_host, port);
        if (fd < 0)
            return 2;
        if (port == 0) /* every worker listens on the port the first one got */
            port = bound_port(fd);
        workers[i] = gw__worker_new(i, &config, app, fd);
    }
    gw__workers_set(workers, nworkers, config.max_connections);
    CM_INFO("event=listening addr=%s port=%d app=%s workers=%d path=%s auth=%s",
            config.listen_host, port, app->name, nworkers,
            config.path[0] ? config.path : app->default_path, config.auth);

    for (int i = 0; i < nworkers; i++)
        if (pthread_create(&workers[i]->thread, NULL, worker_main, workers[i]) != 0) {
            CM_ERROR("event=thread_create_failed");
            return 1;
        }

    int sig = 0;
    sigwait(&sigs, &sig);
    gw__set_draining();
    CM_INFO("event=draining signal=%d delay_ms=%u", sig, config.drain_delay_ms);
    /* /readyz fails from now on; sessions keep being served while the load
     * balancer notices, then every session is closed at transport level so
     * its client reconnects elsewhere. A second signal cuts the wait short. */
    if (config.drain_delay_ms) {
        struct timespec wait = {(time_t)(config.drain_delay_ms / 1000),
                                (long)(config.drain_delay_ms % 1000) * 1000000L};
        siginfo_t info;
        sigtimedwait(&sigs, &info, &wait);
    }
    CM_INFO("event=stopping signal=%d", sig);
    struct event *stops[256];
    for (int i = 0; i < nworkers; i++) {
        stops[i] = event_new(workers[i]->base, -1, 0, stop_cb, workers[i]);
        event_active(stops[i], EV_TIMEOUT, 0);
    }
    for (int i = 0; i < nworkers; i++)
        pthread_join(workers[i]->thread, NULL);
    for (int i = 0; i < nworkers; i++) {
        event_free(stops[i]);
        close(workers[i]->listen_fd);
        gw__worker_free(workers[i]);
    }
    pr_free(workers);
    gw__static_free();
    CM_INFO("event=stopped");
    return 0;
}
