/*
 * gw_harness.c - the gateway fuzz targets' shared harness; see gw_harness.h.
 */
#include "gw_harness.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static gw_config cfgs[FZH_CFG_COUNT];
static gw_worker *workers[1];
static int listen_fd = -1;
static int dump; /* FUZZ_GW_DUMP=1: copy what the gateway writes to stderr */

static void *ev_malloc(size_t n) { return pr_malloc(n); }
static void *ev_realloc(void *p, size_t n) { return pr_realloc(p, n); }
static void ev_free(void *p) { pr_free(p); }

static void load_cfg(gw_config *cfg, int argc, char **argv)
{
    FUZZ_CHECK(gw_config_load(cfg, argc, argv) == 0);
}

static void setup_once(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    pr_alloc_install_jansson();
    event_set_mem_functions(ev_malloc, ev_realloc, ev_free);
    signal(SIGPIPE, SIG_IGN);

    char *a0[] = {"x", "--app", "socketio-echo", "--workers", "1"};
    char *a1[] = {"x", "--app", "socketio-echo", "--workers", "1", "--cors-origin",
                  "https://a.example, https://b.example", "--cors-credentials"};
    char *a2[] = {"x", "--app", "engine-echo", "--workers", "1", "--cors-origin", "*"};
    char *a3[] = {"x", "--app", "socketio-echo", "--workers", "1", "--max-payload", "64",
                  "--output-soft-limit", "1024", "--output-hard-limit", "4160",
                  "--cors-origin", "*", "--cors-credentials"};
    load_cfg(&cfgs[FZH_CFG_DEFAULT], 5, a0);
    load_cfg(&cfgs[FZH_CFG_CORS_LIST], 8, a1);
    load_cfg(&cfgs[FZH_CFG_ENGINE], 7, a2);
    load_cfg(&cfgs[FZH_CFG_SMALL], 14, a3);
    /* Formatting log lines is not worth the time per input. */
    cm_log_level = getenv("FUZZ_GW_LOG") ? CM_LOG_DEBUG : CM_LOG_ERROR + 1;
    dump = getenv("FUZZ_GW_DUMP") != NULL;
    gw__http_init(cfgs[FZH_CFG_DEFAULT].max_header_bytes);

    /* A real listener nobody connects to: the worker registers it. */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(listen_fd >= 0 && bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
               listen(listen_fd, 1) == 0);
}

int fzh_input_parse(fzh_input *fi, const uint8_t *data, size_t size)
{
    if (size < 3)
        return -1;
    setup_once();
    fi->cfg = &cfgs[data[0] & 3];
    fi->small_sndbuf = (data[0] >> 2) & 1;
    fi->extra = data[0] >> 3;
    fi->in = data + 3;
    fi->n = size - 3;
    size_t cut1 = fi->n * data[1] / 255, cut2 = fi->n * data[2] / 255;
    fi->cut1 = cut1 < cut2 ? cut1 : cut2;
    fi->cut2 = cut1 < cut2 ? cut2 : cut1;
    return 0;
}

gw_worker *fzh_worker_new(const gw_config *cfg)
{
    gw_worker *w = gw__worker_new(0, cfg, gw_app_find(cfg->app), listen_fd);
    workers[0] = w;
    gw__workers_set(workers, 1, cfg->max_connections);
    return w;
}

/* ---- one client connection: the gateway's end and ours ---- */

void fzh_client_open(gw_worker *w, fzh_client *cl, int small_sndbuf, size_t out_max)
{
    int sv[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    if (small_sndbuf) {
        int sz = 2048;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    }
    memset(cl, 0, sizeof *cl);
    cl->peer = sv[1];
    pr_buf_init(&cl->out, out_max);
    cl->c = gw__conn_new(w, sv[0]);
    gw__http_init_conn(cl->c);
}

gw_session *fzh_polling_session(gw_worker *w, fzh_client *cl)
{
    char hs[96];
    int hn = snprintf(hs, sizeof hs, "GET %s?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n",
                      w->app->default_path);
    FUZZ_CHECK(hn > 0 && (size_t)hn < sizeof hs);
    gw__conn_feed(cl->c, hs, (size_t)hn);
    pr_map_iter it = pr_map_iter_make(&w->sessions);
    pr_map_entry *e = pr_map_next(&it);
    FUZZ_CHECK(e != NULL);
    return e ? GW_CONTAINER_OF(e, gw_session, map_link) : NULL;
}

/* Reads what the gateway wrote, so its writes never block. */
static void client_drain(fzh_client *cl)
{
    char buf[65536];
    ssize_t n;
    while ((n = read(cl->peer, buf, sizeof buf)) > 0) {
        if (dump)
            fprintf(stderr, "--- fd %d wrote %zd bytes:\n%.*s\n", cl->peer, n, (int)n, buf);
        size_t i = 0;
        while (i < (size_t)n && cl->seen < sizeof cl->head)
            cl->head[cl->seen++] = buf[i++];
        cl->seen += (size_t)n - i;
        if (cl->out.max && !cl->out_full && pr_buf_append(&cl->out, buf, (size_t)n) != 0)
            cl->out_full = 1;
    }
}

static void client_finish(fzh_client *cl)
{
    client_drain(cl);
    /* Whatever the request, the first bytes out are an HTTP status line. */
    size_t k = cl->seen < sizeof cl->head ? cl->seen : sizeof cl->head;
    FUZZ_CHECK(memcmp(cl->head, "HTTP/1.1 ", k) == 0);
    if (cl->check && cl->out.max && !cl->out_full)
        cl->check(pr_buf_view(&cl->out));
    pr_buf_dispose(&cl->out);
    close(cl->peer);
}

typedef struct {
    const void *arg;
    int found;
} find_arg;

static int find_cb(const struct event_base *base, const struct event *ev, void *arg)
{
    (void)base;
    find_arg *f = arg;
    if (event_get_callback_arg(ev) == f->arg)
        f->found = 1;
    return 0;
}

/*
 * The flush pass writes, lingers and frees. A connection that was closed is
 * freed there, so forget it first; one that the loop itself closed is no
 * longer registered with libevent afterwards (no connection is created
 * meanwhile, so its address cannot be reused).
 */
void fzh_pump(gw_worker *w, fzh_client **cls, int ncl)
{
    for (int i = 0; i < ncl; i++)
        if (cls[i]->c && cls[i]->c->state == GW_CLOSED)
            cls[i]->c = NULL;
    for (int round = 0; round < 3; round++) {
        event_base_loop(w->base, EVLOOP_NONBLOCK);
        for (int i = 0; i < ncl; i++)
            client_drain(cls[i]);
    }
    for (int i = 0; i < ncl; i++) {
        if (!cls[i]->c)
            continue;
        find_arg f = {cls[i]->c, 0};
        event_base_foreach_event(w->base, find_cb, &f);
        if (!f.found || cls[i]->c->state == GW_CLOSED)
            cls[i]->c = NULL;
    }
}

/* The gateway reads only while it is registered for reading: not closed,
 * not paused, output not over the soft limit (a lingering connection reads
 * and discards). Each read gets its own exactly sized copy, so ASan sees a
 * read past its end. */
void fzh_feed(fzh_client *cl, const uint8_t *p, size_t n)
{
    if (!cl->c || n == 0 || cl->c->state == GW_CLOSED || cl->c->read_paused || cl->c->backpressure)
        return;
    char *copy = malloc(n);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, p, n);
    gw__conn_feed(cl->c, copy, n);
    free(copy);
}

void fzh_feed_split(gw_worker *w, fzh_client **cls, int ncl, fzh_client *cl, const fzh_input *fi,
                    const uint8_t *p)
{
    fzh_feed(cl, p, fi->cut1);
    fzh_pump(w, cls, ncl);
    fzh_feed(cl, p + fi->cut1, fi->cut2 - fi->cut1);
    fzh_pump(w, cls, ncl);
    fzh_feed(cl, p + fi->cut2, fi->n - fi->cut2);
    fzh_pump(w, cls, ncl);
}

void fzh_worker_finish(gw_worker *w, fzh_client **cls, int ncl)
{
    for (int i = 0; i < ncl; i++)
        if (cls[i]->c)
            gw__conn_close(cls[i]->c, 0);
    fzh_pump(w, cls, ncl);
    gw__eio_worker_close_all(w);
    fzh_pump(w, cls, ncl);
    gw__conn_close_all(w);
    gw__worker_reap(w);
    FUZZ_CHECK(w->stats.conns_open == 0);
    FUZZ_CHECK(w->stats.sessions_open == 0);
    gw__worker_free(w);
    workers[0] = NULL;
    for (int i = 0; i < ncl; i++)
        client_finish(cls[i]);
}
