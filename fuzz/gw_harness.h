/*
 * gw_harness.h - what the gateway fuzz targets (fuzz_http.c, fuzz_ws.c)
 * share: a worker in this thread, client connections on socketpairs, and the
 * loop driven between reads as in production.
 *
 * Contract. Everything runs on the fuzzing thread; nothing here is thread
 * safe. fzh_input_parse reads the common input prefix [cfg][split1][split2]:
 *   cfg bits 0-1  configuration (FZH_CFG_*), bit 2 a tiny socket send buffer
 *                 so that responses are written in pieces, bits 3-7 left to
 *                 the target (fzh_input.extra);
 *   split1/2      where the rest is cut into up to three reads (n*x/255).
 * The first call also sets the process up once: allocators, SIGPIPE ignored,
 * the configurations, logging silenced (FUZZ_GW_LOG=1 brings it back;
 * FUZZ_GW_DUMP=1 copies what the gateway writes to stderr) and a listener
 * nobody connects to.
 *
 * One worker at a time: fzh_worker_new creates it and registers it as the
 * only worker; fzh_worker_finish closes everything as a stopping worker does,
 * checks that no connection or session is left open, frees the worker and
 * then finishes every client. A target owns its fzh_client structs (usually
 * on its stack); the harness owns the gateway side. fzh_client.c is NULL once
 * the connection may have been freed, so a target must not keep its own copy
 * of the pointer across fzh_pump. Broken invariants abort (FUZZ_CHECK).
 */
#ifndef GW_HARNESS_H
#define GW_HARNESS_H

#include "fuzz.h"
#include "gw_worker.h"

enum { FZH_CFG_DEFAULT, FZH_CFG_CORS_LIST, FZH_CFG_ENGINE, FZH_CFG_SMALL, FZH_CFG_COUNT };

typedef struct {
    const gw_config *cfg;
    int small_sndbuf;  /* cfg bit 2 */
    unsigned extra;    /* cfg bits 3-7, for the target */
    const uint8_t *in; /* the bytes after the prefix */
    size_t n;
    size_t cut1, cut2; /* cut1 <= cut2 <= n */
} fzh_input;

/* Checks a client's whole output once the worker is gone; v is borrowed. */
typedef void (*fzh_output_cb)(pr_view v);

typedef struct {
    gw_conn *c;          /* NULL once it may have been freed */
    int peer;            /* our end of the socketpair */
    size_t seen;         /* bytes the gateway wrote to it */
    char head[9];        /* the first of them */
    pr_buf out;          /* all of them, up to the max given to fzh_client_open */
    int out_full;        /* more than that was written: check not run */
    fzh_output_cb check; /* set by the target; NULL for none */
} fzh_client;

/* 0, or -1 when the input is too short to use (nothing is set up then). */
int fzh_input_parse(fzh_input *fi, const uint8_t *data, size_t size);

gw_worker *fzh_worker_new(const gw_config *cfg);

/* Connects a new client to w. out_max 0 keeps only the count and the head. */
void fzh_client_open(gw_worker *w, fzh_client *cl, int small_sndbuf, size_t out_max);

/* Feeds the polling handshake on cl and returns the session it created. */
gw_session *fzh_polling_session(gw_worker *w, fzh_client *cl);

/* Runs the loop a few times, reading what the gateway wrote to each client;
 * clears fzh_client.c of every connection that was closed or freed. */
void fzh_pump(gw_worker *w, fzh_client **cls, int ncl);

/* Feeds n bytes to cl as one read, if the gateway would read now. */
void fzh_feed(fzh_client *cl, const uint8_t *p, size_t n);

/* Feeds p in the three reads fi's cuts make (p may be a copy of fi->in),
 * pumping after each. */
void fzh_feed_split(gw_worker *w, fzh_client **cls, int ncl, fzh_client *cl, const fzh_input *fi,
                    const uint8_t *p);

/* Closes and frees w and everything on it, then finishes the clients:
 * their output must start with an HTTP status line and pass their check. */
void fzh_worker_finish(gw_worker *w, fzh_client **cls, int ncl);

#endif
