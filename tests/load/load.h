/*
 * chat-load's private header: the limits, the types and the names its files
 * share (prefix ld_). See main.c for what the program does.
 *
 *   hist.c     latency histogram
 *   options.c  the command line
 *   shared.c   state shared by the processes (room and typing modes)
 *   conn.c     one client connection: Engine.IO/Socket.IO over WebSocket
 *   schedule.c a worker process: setup, start, the send schedule
 *   results.c  a worker's counters, their sum, the summary
 *   main.c     the parent: forks the workers, starts them, prints
 */
#ifndef CHAT_LOAD_H
#define CHAT_LOAD_H

#include <event2/event.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "pr.h"

#define MAX_ADDRS 16
#define MAX_PROCS 64
#define MAX_SENDERS 64      /* room and typing modes */
#define RING 4096           /* outstanding acks per sender */
#define SETUP_AT_ONCE 256   /* connections in setup at once, per process */
#define SETUP_TIMEOUT_S 120 /* a connection not set up by then counts as dead */
#define TAIL_MAX_S 30       /* after the window, at most, for answers in flight */
#define TAIL_QUIET_NS 1000000000ull /* no delivery for this long: all came */

/* ---- latency histogram: 16 sub-buckets per power of two of microseconds ---- */

#define HBUCKETS (40 * 16)

typedef struct {
    uint64_t n[HBUCKETS];
    uint64_t count, max_us;
} ld_hist;

void ld_hist_add(ld_hist *h, uint64_t us);
/* The pct-th percentile in milliseconds (the top of its bucket, at most the
 * maximum); 0 when empty. */
double ld_hist_pct(const ld_hist *h, double pct);
void ld_hist_merge(ld_hist *a, const ld_hist *b);

/* ---- options ---- */

enum { M_DM, M_ROOM, M_TYPING, M_IDLE, M_CONNECT };
extern const char *const ld_mode_names[];

typedef struct {
    struct sockaddr_in target[MAX_ADDRS];
    unsigned ntarget;
    struct in_addr source[MAX_ADDRS];
    unsigned nsource;
    int mode;
    unsigned conns, procs, senders;
    double rate; /* messages per second, all processes */
    double warmup, duration;
    const char *secret;
    const char *path;
    const char *prefix; /* user id prefix */
    const char *room;   /* room and typing modes */
    unsigned text_pad;
    int json;
} ld_options;

extern ld_options ld_opt;

/* Parses the command line into ld_opt: -1 to go on, else the exit status
 * (0 after --help, 2 for bad arguments, with the usage printed). */
int ld_options_parse(int argc, char **argv);
int ld_has_room(void);
unsigned ld_total_senders(void);

/* ---- state shared by the processes (room and typing modes) ----
 * Mapped before the fork; each slot has one writer, and the parent reads
 * them all once the children have exited. */

typedef struct {
    uint64_t *acked; /* [sender]: acked sends */
    uint64_t *sent;  /* [sender] */
    uint64_t *last;  /* [conn * senders + sender]: messages of sender received */
    uint8_t *dead;   /* [conn] */
    uint64_t *ts;    /* [sender * ts_max + n]: send time of typing n+1 */
    size_t ts_max;
} ld_shared_state;

extern ld_shared_state ld_shared;

int ld_shared_init(void);

/* ---- connections ---- */

enum { C_UPGRADE, C_EIO, C_SIO, C_JOIN, C_READY, C_CLOSED, C_DEAD };

typedef struct ld_conn {
    struct bufferevent *bev;
    unsigned idx; /* global index */
    int state;
    char room[160];
    int64_t next_ack;
    uint64_t *sent_ns; /* senders: by ack id % RING; 0 = free */
    uint64_t sent, acked, errors;
    uint64_t last_from_peer; /* dm: highest n received from the peer */
    uint64_t dup, gap;
    uint64_t opened_ns; /* when this connection attempt started */
} ld_conn;

void ld_conn_open(ld_conn *c);
void ld_conn_dead(ld_conn *c, const char *why);
/* Sends the next message (or typing) of sender c, stamped t. */
void ld_send_one(ld_conn *c, uint64_t t);

/* ---- a worker process ---- */

typedef struct {
    struct event_base *base;
    ld_conn *c;
    unsigned first, n; /* this process's conns: [first, first+n) */
    unsigned opened, in_setup, ready, dead;
    unsigned closed; /* connect mode: failed slots to open again */
    unsigned nsenders; /* local */
    double rate;       /* this process's share */
    double credit;
    uint64_t last_tick_ns;
    unsigned next_sender;
    int reported, started, measuring;
    uint64_t setup_start_ns, start_ns, measure_start_ns, measure_end_ns, stop_ns;
    uint64_t last_rx_ns;  /* the last delivery received */
    uint64_t unanswered;  /* sends whose ack has not come */
    ld_hist ack, deliver, connect;
    uint64_t sent_measured, acked_measured, deliveries_measured, handshakes_measured;
    uint64_t acks_in_window; /* successful acks that arrived in the window */
    uint64_t err_acks, overflow, failed;
    int up_fd, down_fd;
    struct event *tick, *ctl;
    pr_buf scratch;
} ld_proc;

extern ld_proc ld_p;

/* What a worker tells the parent once its connections are set up. */
typedef struct {
    uint32_t ready, dead;
} ld_ready_msg;

uint64_t ld_now_ns(void);
/* Whether t is in the measured window. */
int ld_in_window(uint64_t t);
/* A worker's life, for conns [first, first+n): its exit status. */
int ld_run_child(unsigned first, unsigned n);

/* ---- results ---- */

typedef struct {
    uint64_t ready, sent, acked, errors, recv, dup, gap, lost, overflow, dead, failed;
    uint64_t sent_m, acked_m, deliveries_m, handshakes_m, acks_in_window;
    ld_hist ack, deliver, connect;
} ld_result;

void ld_collect(ld_result *r);
void ld_merge(ld_result *a, const ld_result *b);
void ld_room_losses(ld_result *r);
void ld_print_summary(const ld_result *t);

#endif
