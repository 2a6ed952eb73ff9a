/*
 * gw_conn.h - a TCP connection (conn.c): reading, the output queue, output
 * limits and the close sequence. One layer of the transport (the order is in
 * gw_loop.h).
 *
 * A connection knows nothing of the protocol spoken on it: the layer that
 * owns its bytes (HTTP at first, WebSocket after an upgrade) sets c->ops and
 * keeps its state in c->layer; the connection calls ops->on_data with what it
 * reads and ops->on_close once when it starts closing.
 */
#ifndef GW_CONN_H
#define GW_CONN_H

#include "gw_loop.h"

/* OPEN -> [CLOSE_AFTER_WRITE ->] [LINGER ->] CLOSED; only OPEN accepts output. */
enum { GW_OPEN = 0, GW_CLOSE_AFTER_WRITE = 1, GW_LINGER = 2, GW_CLOSED = 3 };

/* Set by the layer that owns the connection's bytes; both run on the
 * worker's thread. */
typedef struct gw_conn_ops {
    /* Bytes read from the socket, borrowed until the call returns. */
    void (*on_data)(gw_conn *c, const char *p, size_t n);
    /* The connection starts closing (once): output is refused from here on.
     * Tell the layers above (c->owner) and free the layer's state. */
    void (*on_close)(gw_conn *c);
} gw_conn_ops;

/* Room for the owning layer's state inside the connection, so that an idle
 * WebSocket needs no allocation of its own (ws.c checks that its state fits;
 * HTTP keeps a pointer here). */
#define GW_CONN_LAYER_BYTES 48

struct gw_conn {
    gw_worker *w;
    int fd;
    uint32_t id;
    uint8_t state;      /* GW_OPEN, GW_CLOSE_AFTER_WRITE, GW_CLOSED */
    uint8_t ev_flags;   /* EV_READ/EV_WRITE the event is registered with */
    uint8_t read_paused;  /* closing: input is no longer wanted */
    uint8_t backpressure; /* output above the soft limit: not reading */
    uint8_t doomed;       /* over an output limit: closed in the flush pass */
    uint8_t pending;    /* on the worker's flush list */
    struct event ev;
    gw_onode *out_head, *out_tail;
    size_t out_bytes;
    uint64_t soft_since_ms; /* when out_bytes first went over the soft limit */
    gw_conn *next;          /* flush list or graveyard */
    gw_tq_node idle;        /* the owner's timeout (HTTP: header/idle), then lingering */
    const gw_conn_ops *ops; /* the layer that owns the bytes */
    /* The object of the layer above the owner that uses this connection, or
     * NULL (the engine: the session whose WebSocket, probe or parked GET this
     * is). The owner's on_close tells that layer when it is set. */
    void *owner;
    union {
        void *ptr;
        uint64_t align;
        unsigned char bytes[GW_CONN_LAYER_BYTES];
    } layer;
};

/* A connection on fd; the caller gives it an owner (sets ops) at once. */
gw_conn *gw__conn_new(gw_worker *w, int fd);
/* Queues bytes; they are written in the flush pass. Closes the connection
 * (and returns PR_ETOOBIG) when the output limits are exceeded. */
int gw__conn_send_blob(gw_conn *c, gw_blob *b); /* takes a reference */
int gw__conn_send(gw_conn *c, const void *p, size_t n);
void gw__conn_close(gw_conn *c, int after_write);
void gw__conn_set_reading(gw_conn *c, int on);
void gw__conn_free(gw_conn *c);
void gw__conn_close_all(gw_worker *w); /* at shutdown */
/* Writes queued output now; returns 0 or a negative error. */
int gw__conn_flush(gw_conn *c);
void gw__conn_feed(gw_conn *c, const char *p, size_t n); /* bytes read from the socket */
/* Reads and processes what is already in c's socket buffer, now. */
void gw__conn_read_now(gw_conn *c);
void gw__conn_worker_init(gw_worker *w);
void gw__conn_worker_dispose(gw_worker *w);

#endif
