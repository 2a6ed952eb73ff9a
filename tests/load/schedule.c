/* chat-load: a worker process. It sets up its connections, tells the parent,
 * waits for the common start time, then sends on schedule until the
 * measured window ends and the answers in flight have come. */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "load.h"

ld_proc ld_p;

uint64_t ld_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int ld_in_window(uint64_t t)
{
    return t >= ld_p.measure_start_ns && t < ld_p.measure_end_ns;
}

static void report_ready(void)
{
    ld_ready_msg m = {ld_p.ready, ld_p.dead};
    ld_p.reported = 1;
    if (write(ld_p.up_fd, &m, sizeof m) != (ssize_t)sizeof m)
        event_base_loopbreak(ld_p.base);
}

/* The parent's start time: the same for every process. */
static void on_ctl(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    uint64_t start;
    if (read(fd, &start, sizeof start) != (ssize_t)sizeof start) {
        event_base_loopbreak(ld_p.base); /* the parent is gone */
        return;
    }
    ld_p.start_ns = start;
    ld_p.measure_start_ns = start + (uint64_t)(ld_opt.warmup * 1e9);
    ld_p.measure_end_ns = ld_p.measure_start_ns + (uint64_t)(ld_opt.duration * 1e9);
    /* after the window: idle stops, a storm lets its handshakes finish; a
     * sending run waits for its acks and for deliveries to stop coming
     * (see on_tick), at most TAIL_MAX_S */
    uint64_t tail = ld_opt.mode == M_IDLE      ? 0
                    : ld_opt.mode == M_CONNECT ? 300000000ull
                                            : TAIL_MAX_S * 1000000000ull;
    ld_p.stop_ns = ld_p.measure_end_ns + tail;
    ld_p.last_tick_ns = start;
    ld_p.started = 1;
}

/* Every millisecond: set up connections (a few hundred at once), then,
 * from the start time on, send what the schedule says (senders in turn). */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    uint64_t t = ld_now_ns();
    if (!ld_p.started) {
        if (ld_p.reported)
            return;
        if (ld_opt.mode == M_CONNECT) {
            report_ready();
            return;
        }
        while (ld_p.in_setup < SETUP_AT_ONCE && ld_p.opened < ld_p.n)
            ld_conn_open(&ld_p.c[ld_p.opened++]);
        if (ld_p.opened == ld_p.n && ld_p.in_setup == 0) {
            report_ready();
        } else if (t - ld_p.setup_start_ns > SETUP_TIMEOUT_S * 1000000000ull) {
            for (unsigned i = 0; i < ld_p.opened; i++)
                if (ld_p.c[i].state < C_READY)
                    ld_conn_dead(&ld_p.c[i], "not set up in time");
            for (; ld_p.opened < ld_p.n; ld_p.opened++) {
                ld_p.c[ld_p.opened].state = C_DEAD;
                ld_p.dead++;
                if (ld_shared.dead)
                    ld_shared.dead[ld_p.c[ld_p.opened].idx] = 1;
            }
        }
        return;
    }
    if (t < ld_p.start_ns)
        return;
    ld_p.measuring = ld_in_window(t);
    if (t >= ld_p.stop_ns || (ld_opt.mode != M_IDLE && ld_opt.mode != M_CONNECT &&
                              t >= ld_p.measure_end_ns + TAIL_QUIET_NS && ld_p.unanswered == 0 &&
                              t - ld_p.last_rx_ns >= TAIL_QUIET_NS)) {
        event_base_loopbreak(ld_p.base);
        return;
    }
    if (t >= ld_p.measure_end_ns)
        return;
    if (ld_opt.mode == M_CONNECT) {
        if (ld_p.opened < ld_p.n) {
            for (; ld_p.opened < ld_p.n; ld_p.opened++)
                ld_conn_open(&ld_p.c[ld_p.opened]);
        } else if (ld_p.closed) { /* failed handshakes: try again */
            ld_p.closed = 0;
            for (unsigned i = 0; i < ld_p.n; i++)
                if (ld_p.c[i].state == C_CLOSED)
                    ld_conn_open(&ld_p.c[i]);
        }
        return;
    }
    if (!ld_p.nsenders)
        return;
    ld_p.credit += (double)(t - ld_p.last_tick_ns) / 1e9 * ld_p.rate;
    ld_p.last_tick_ns = t;
    while (ld_p.credit >= 1.0) {
        ld_p.credit -= 1.0;
        for (unsigned tries = 0; tries < ld_p.nsenders; tries++) {
            ld_conn *c = &ld_p.c[ld_p.next_sender++ % ld_p.nsenders];
            if (c->state == C_READY) {
                ld_send_one(c, t);
                break;
            }
        }
    }
}

int ld_run_child(unsigned first, unsigned n)
{
    ld_p.base = event_base_new();
    ld_p.first = first;
    ld_p.n = n;
    ld_p.c = calloc(n, sizeof *ld_p.c);
    if (!ld_p.base || !ld_p.c)
        return 2;
    unsigned k = ld_total_senders();
    ld_p.nsenders = first >= k ? 0 : (k - first < n ? k - first : n);
    ld_p.rate = k ? ld_opt.rate * ld_p.nsenders / k : 0;
    for (unsigned i = 0; i < n; i++) {
        ld_p.c[i].idx = first + i;
        ld_p.c[i].state = C_CLOSED;
        if (i < ld_p.nsenders && !(ld_p.c[i].sent_ns = calloc(RING, sizeof(uint64_t))))
            return 2;
    }
    pr_buf_init(&ld_p.scratch, 1 << 20);
    ld_p.setup_start_ns = ld_now_ns();
    ld_p.tick = event_new(ld_p.base, -1, EV_PERSIST, on_tick, NULL);
    ld_p.ctl = event_new(ld_p.base, ld_p.down_fd, EV_READ, on_ctl, NULL);
    struct timeval ms = {0, 1000};
    event_add(ld_p.tick, &ms);
    event_add(ld_p.ctl, NULL);
    event_base_dispatch(ld_p.base);
    ld_result r;
    ld_collect(&r);
    ssize_t w = write(ld_p.up_fd, &r, sizeof r);
    return w == (ssize_t)sizeof r ? 0 : 2;
}
