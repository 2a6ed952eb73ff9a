/* chat-load: the results. A worker's counters, their sum over the workers,
 * the losses of room and typing modes, and the summary line. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "load.h"

void ld_collect(ld_result *r)
{
    memset(r, 0, sizeof *r);
    for (unsigned i = 0; i < ld_p.n; i++) {
        ld_conn *c = &ld_p.c[i];
        r->sent += c->sent;
        r->acked += c->acked;
        r->errors += c->errors;
        r->dup += c->dup;
        r->gap += c->gap;
        if (ld_opt.mode != M_DM)
            continue;
        /* every message the peer had acked must have reached c (pairs stay
         * within a process) */
        ld_conn *peer = &ld_p.c[i ^ 1];
        r->recv += c->last_from_peer;
        if (c->state != C_DEAD && peer->acked > c->last_from_peer)
            r->lost += peer->acked - c->last_from_peer;
    }
    r->ready = ld_p.ready;
    r->overflow = ld_p.overflow;
    r->dead = ld_p.dead;
    r->failed = ld_p.failed;
    r->sent_m = ld_p.sent_measured;
    r->acked_m = ld_p.acked_measured;
    r->deliveries_m = ld_p.deliveries_measured;
    r->handshakes_m = ld_p.handshakes_measured;
    r->acks_in_window = ld_p.acks_in_window;
    r->ack = ld_p.ack;
    r->deliver = ld_p.deliver;
    r->connect = ld_p.connect;
}

void ld_merge(ld_result *a, const ld_result *b)
{
    uint64_t *x = &a->ready;
    const uint64_t *y = &b->ready;
    for (size_t i = 0; &x[i] <= &a->acks_in_window; i++) /* the counters, in order */
        x[i] += y[i];
    ld_hist_merge(&a->ack, &b->ack);
    ld_hist_merge(&a->deliver, &b->deliver);
    ld_hist_merge(&a->connect, &b->connect);
}

/* Room and typing modes: what every live member got from every sender,
 * against what the sender had acked. */
void ld_room_losses(ld_result *r)
{
    for (unsigned m = 0; m < ld_opt.conns; m++) {
        if (ld_shared.dead[m])
            continue;
        for (unsigned s = 0; s < ld_opt.senders; s++) {
            if (ld_opt.mode == M_TYPING && m == s)
                continue; /* typing goes to the others */
            uint64_t got = ld_shared.last[(size_t)m * ld_opt.senders + s];
            r->recv += got;
            if (ld_shared.acked[s] > got)
                r->lost += ld_shared.acked[s] - got;
        }
    }
}

typedef struct {
    const char *key;
    double v;
    int is_int;
} field;

void ld_print_summary(const ld_result *t)
{
    double secs = ld_opt.duration;
    const field f[] = {
        {"conns", ld_opt.conns, 1},
        {"procs", ld_opt.procs, 1},
        {"rate", ld_opt.rate, 1},
        {"senders", ld_total_senders(), 1},
        {"ready", (double)t->ready, 1},
        {"sent", (double)t->sent, 1},
        {"sent_window", (double)t->sent_m, 1},
        {"acked", (double)t->acked, 1},
        {"errors", (double)t->errors, 1},
        {"received", (double)t->recv, 1},
        {"lost", (double)t->lost, 1},
        {"dup", (double)t->dup, 1},
        {"gap", (double)t->gap, 1},
        {"dead", (double)t->dead, 1},
        {"overflow", (double)t->overflow, 1},
        {"failed", (double)t->failed, 1},
        /* messages sent in the window and acked (even after it), per second */
        {"acked_per_s", round(t->acked_m / secs), 1},
        /* acks that arrived in the window, per second: the throughput */
        {"ack_throughput_per_s", round(t->acks_in_window / secs), 1},
        {"ack_p50_ms", ld_hist_pct(&t->ack, 50), 0},
        {"ack_p99_ms", ld_hist_pct(&t->ack, 99), 0},
        {"ack_p999_ms", ld_hist_pct(&t->ack, 99.9), 0},
        {"ack_max_ms", t->ack.max_us / 1000.0, 0},
        {"deliveries", (double)t->deliveries_m, 1},
        {"deliveries_per_s", round(t->deliveries_m / secs), 1},
        {"deliver_p50_ms", ld_hist_pct(&t->deliver, 50), 0},
        {"deliver_p99_ms", ld_hist_pct(&t->deliver, 99), 0},
        {"deliver_p999_ms", ld_hist_pct(&t->deliver, 99.9), 0},
        {"deliver_max_ms", t->deliver.max_us / 1000.0, 0},
        {"handshakes", (double)t->handshakes_m, 1},
        {"handshakes_per_s", round(t->handshakes_m / secs), 1},
        {"connect_p50_ms", ld_hist_pct(&t->connect, 50), 0},
        {"connect_p99_ms", ld_hist_pct(&t->connect, 99), 0},
        {"connect_p999_ms", ld_hist_pct(&t->connect, 99.9), 0},
    };
    size_t nf = sizeof f / sizeof *f;
    printf("mode=%s", ld_mode_names[ld_opt.mode]);
    for (size_t i = 0; i < nf; i++)
        printf(f[i].is_int ? " %s=%.0f" : " %s=%.3f", f[i].key, f[i].v);
    printf("\n");
    if (ld_opt.json) {
        printf("{\"mode\":\"%s\"", ld_mode_names[ld_opt.mode]);
        for (size_t i = 0; i < nf; i++)
            printf(f[i].is_int ? ",\"%s\":%.0f" : ",\"%s\":%.3f", f[i].key, f[i].v);
        printf("}\n");
    }
    fflush(stdout);
}
