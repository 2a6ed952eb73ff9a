/*
 * chat-load - a load generator for the chat's Socket.IO API.
 *
 * It speaks Engine.IO v4 / Socket.IO v5 over WebSocket itself (no client
 * library), so one process holds thousands of connections. Every connection
 * is a user (P0, P1, ... for --prefix P) with an HS256 token. Workloads
 * (--mode):
 *
 *   dm       users come in pairs (2k, 2k+1); each joins the direct room of
 *            its pair (joinChat), then every user emits sendMessage with an
 *            ack (the default)
 *   room     every user joins --room (joinRoom); the first --senders users
 *            emit sendMessage with an ack; every member gets each message
 *   typing   as room, but the senders emit typing (not stored); the other
 *            members get showTyping
 *   idle     users connect (Socket.IO CONNECT acked) and stay idle,
 *            answering pings
 *   connect  --conns slots each connect, wait for the CONNECT ack, close
 *            and connect again: handshakes per second
 *
 * Senders send at a fixed total --rate (open loop: the schedule does not wait
 * for answers). The text of a message is its send time and its clientMsgId
 * "c<conn>-<n>", so receivers measure delivery latency and check that they
 * get each sender's messages exactly once and in order. showTyping carries
 * neither: the n-th one a member gets from a sender is matched with that
 * sender's n-th typing, whose send time the processes share.
 *
 * --procs P forks P processes (the fd limit is per process); --source lists
 * local addresses to bind, round robin (each address pair has its own
 * ephemeral ports). The processes start sending at one moment, after every
 * connection of every process is set up; stdout then gets, each flushed:
 *
 *   ready conns=N ready=R dead=D   setup done (connect mode: at once)
 *   measure_start                  after --warmup seconds of sending
 *   measure_end                    --duration seconds later
 *
 * so a benchmark can sample the servers over the measured window. Sending
 * stops at measure_end; the run ends once every ack has come and no delivery
 * has arrived for a second (at most 30 s later), then prints one summary
 * line of key=value pairs (and JSON with --json).
 *
 * Exit status: 0 when the run is clean (every acked message or typing
 * reached every live member once, nothing duplicated, no connection lost or
 * handshake failed); 1 otherwise; 2 for bad arguments or setup failure.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "load.h"

static int read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t k = read(fd, (char *)buf + got, len - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    return 0;
}

static void sleep_until(uint64_t t)
{
    struct timespec ts = {(time_t)(t / 1000000000u), (long)(t % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

int main(int argc, char **argv)
{
    int rc = ld_options_parse(argc, argv);
    if (rc >= 0)
        return rc;
    if (ld_has_room() && ld_shared_init() != 0) {
        fprintf(stderr, "chat-load: cannot map shared memory\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    int up[MAX_PROCS][2], down[MAX_PROCS][2];
    pid_t pids[MAX_PROCS];
    /* dm: pairs stay within one process, so each checks its own deliveries */
    unsigned unit = ld_opt.mode == M_DM ? 2 : 1, units = ld_opt.conns / unit, first = 0;
    for (unsigned p = 0; p < ld_opt.procs; p++) {
        unsigned n = unit * (units / ld_opt.procs + (p < units % ld_opt.procs));
        if (pipe(up[p]) != 0 || pipe(down[p]) != 0)
            return 2;
        fflush(stdout);
        pids[p] = fork();
        if (pids[p] < 0)
            return 2;
        if (pids[p] == 0) {
            close(up[p][0]);
            close(down[p][1]);
            ld_p.up_fd = up[p][1];
            ld_p.down_fd = down[p][0];
            _exit(ld_run_child(first, n));
        }
        close(up[p][1]);
        close(down[p][0]);
        first += n;
    }

    /* every process set up: one start for all */
    unsigned ready = 0, dead = 0;
    int failed = 0;
    for (unsigned p = 0; p < ld_opt.procs; p++) {
        ld_ready_msg m;
        if (read_full(up[p][0], &m, sizeof m) != 0) {
            failed = 1;
            continue;
        }
        ready += m.ready;
        dead += m.dead;
    }
    uint64_t start = ld_now_ns() + 100000000ull;
    for (unsigned p = 0; p < ld_opt.procs; p++)
        if (write(down[p][1], &start, sizeof start) != (ssize_t)sizeof start)
            failed = 1;
    if (!failed) {
        printf("ready conns=%u ready=%u dead=%u\n", ld_opt.conns, ready, dead);
        fflush(stdout);
        uint64_t ms = start + (uint64_t)(ld_opt.warmup * 1e9);
        sleep_until(ms);
        printf("measure_start\n");
        fflush(stdout);
        sleep_until(ms + (uint64_t)(ld_opt.duration * 1e9));
        printf("measure_end\n");
        fflush(stdout);
    }

    ld_result total, r;
    memset(&total, 0, sizeof total);
    for (unsigned p = 0; p < ld_opt.procs; p++) {
        if (read_full(up[p][0], &r, sizeof r) != 0)
            failed = 1;
        else
            ld_merge(&total, &r);
        int st;
        waitpid(pids[p], &st, 0);
    }
    if (failed) {
        fprintf(stderr, "chat-load: a worker process failed\n");
        return 2;
    }
    if (ld_has_room())
        ld_room_losses(&total);
    ld_print_summary(&total);
    return total.lost || total.dup || total.dead || total.failed ? 1 : 0;
}
