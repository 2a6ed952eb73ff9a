/*
 * gw_engine.h - Engine.IO v4 sessions (engine.c): handshake, long-polling,
 * WebSocket, the upgrade between them, heartbeats and the session table.
 * One layer of the transport (the order is in gw_loop.h); it also
 * implements the Engine.IO level of app.h (gw_session_*).
 *
 * What owns a session above the engine (Socket.IO, or an Engine.IO level
 * app) is reached through the worker's gw_eio_handler, set by worker.c:
 * socketio.c's for Socket.IO apps, else one that calls the app's on_eio_*.
 */
#ifndef GW_ENGINE_H
#define GW_ENGINE_H

#include "app.h"
#include "gw_ws.h"

/* ---- Engine.IO sessions ----------------------------------------------------- */
enum { GW_T_POLLING = 0, GW_T_WEBSOCKET = 1 };

struct gw_session {
    char sid[GW_SID_LEN + 1];
    uint8_t transport;     /* GW_T_* */
    uint8_t upgrading;     /* a probe WebSocket is attached */
    uint8_t closed;
    uint8_t poll_dirty;    /* on the worker's poll flush list */
    uint8_t client_closed; /* the client sent a close packet */
    uint8_t probe_acked;   /* 3probe sent on the probe WebSocket */
    uint8_t awaiting_pong; /* hb is in pong_tq (else in ping_tq) */
    uint8_t tombstone;     /* closed by the client, sid kept for a late GET */
    uint8_t doomed;        /* polling queue over the limit: closed in the flush pass */
    uint8_t cookie_auth;   /* the handshake's credential was a cookie: Origin is checked */
    /* Polling: what the client has provably read. Packets queued for a GET
     * are numbered (out_seq); a GET's answer takes them up to answered_seq,
     * and they count as read (consumed_seq) when the client sends its next
     * GET, or upgrades. WebSocket packets count as read when queued. */
    uint64_t out_seq, answered_seq, consumed_seq;
    gw_worker *w;
    gw_conn *conn;         /* WebSocket transport, or the parked polling GET */
    gw_conn *probe;        /* WebSocket being upgraded to */
    gw_onode *pollq_head, *pollq_tail; /* packets waiting for a GET (polling) */
    size_t pollq_bytes;
    gw_tq_node hb;         /* in ping_tq (waiting to ping) or pong_tq */
    pr_map_entry map_link; /* in the worker's sessions */
    struct gw_session *next; /* poll flush list or graveyard */
    gw_app_session *app;   /* owned by the app layer (socket.io) */
    char *http_token;      /* bearer token of the handshake request, until CONNECT */
};

/* Everything runs on the worker's thread that owns s. */
typedef struct gw_eio_handler {
    void (*on_open)(gw_session *s);
    void (*on_message)(gw_session *s, int binary, pr_view data); /* data borrowed */
    /* s is closing; its transport still works, so goodbyes can be sent. */
    void (*on_close)(gw_session *s, const char *reason);
    /* Optional: the client has read every packet of s up to mark. */
    void (*on_consumed)(gw_session *s, uint64_t mark);
} gw_eio_handler;

/* HTTP entry points (worker.c puts them in the gw_http_handler). */
void gw__eio_handle_request(gw_conn *c, int method, pr_view query, pr_view body, int is_upgrade,
                            pr_view ws_key, pr_view token, int flags);
void gw__eio_on_poll_closed(gw_conn *c); /* a parked GET's connection went away */

gw_session *gw__eio_find(gw_worker *w, pr_view sid);
int gw__eio_sid_worker(pr_view sid);        /* worker index encoded in sid, or -1 */
void gw__eio_flush_polls(gw_worker *w);
void gw__eio_worker_init(gw_worker *w);
void gw__eio_worker_dispose(gw_worker *w);
void gw__eio_reap(gw_worker *w);
void gw__eio_worker_close_all(gw_worker *w);

/* ---- sending and closing, for the layer above ----------------------------- */
int gw__eio_send(gw_session *s, eio_type type, int binary, pr_view data);
int gw__eio_send_blob(gw_session *s, gw_blob *b);
/* 0 when everything queued on s counts as read by the client (WebSocket),
 * else the mark gw_eio_handler.on_consumed reports once it does (polling). */
uint64_t gw__eio_unread_mark(const gw_session *s);
void gw__eio_close(gw_session *s, const char *reason); /* WebSocket close code 1000 */
void gw__eio_close_code(gw_session *s, const char *reason, uint16_t ws_code);
/* The client sent something invalid: count it and close with 1008. */
void gw__eio_bad_input(gw_session *s);
/* Drops the transport abruptly, without a close packet (tests of reconnection). */
void gw__eio_drop_transport(gw_session *s);

#endif
