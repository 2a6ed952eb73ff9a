/*
 * gw_ws.h - WebSocket (RFC 6455) on a connection that HTTP upgraded (ws.c).
 * One layer of the transport (the order is in gw_loop.h). Messages go up
 * through the worker's gw_ws_handler, set by the layer that accepts
 * WebSockets (the engine).
 */
#ifndef GW_WS_H
#define GW_WS_H

#include "gw_http.h"

/* Everything runs on the worker's thread; data is borrowed until return. */
typedef struct gw_ws_handler {
    void (*on_text)(gw_conn *c, pr_view data); /* valid UTF-8 */
    void (*on_binary)(gw_conn *c, pr_view data);
    /* c is closing while c->owner is set: detach. */
    void (*owner_closed)(gw_conn *c);
} gw_ws_handler;

/* Answers the upgrade request on c with 101; c becomes a WebSocket
 * connection when the HTTP layer returns from the request. */
void gw__ws_accept(gw_conn *c, pr_view key);
/* Sends a close frame with code and closes after it is written. */
void gw__ws_close(gw_conn *c, uint16_t code);
/* After gw__ws_accept, still inside the upgrade request: close at once. */
void gw__ws_reject(gw_conn *c, uint16_t code);
/* 1 when c is a WebSocket connection (the upgrade is done). */
int gw__ws_is(const gw_conn *c);

/* Result of scanning the start of a buffer for one complete client frame. */
typedef struct {
    uint8_t fin, opcode;
    uint64_t payload_len;
    size_t frame_len; /* header + payload */
} gw_ws_frame;
/* Returns 1 and fills f when a complete frame is at the start of p, 0 when more
 * bytes are needed, or a negative WebSocket close code (-1002, -1009) when the
 * frame can never be valid (unmasked, reserved bits, control frame too long or
 * fragmented, payload over max_payload). Pure; fuzzed. */
int gw__ws_scan(const char *p, size_t n, size_t max_payload, gw_ws_frame *f);

#endif
