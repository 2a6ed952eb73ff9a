/*
 * gw_sio.h - Socket.IO v5 on an Engine.IO session (socketio.c): namespaces,
 * CONNECT, acknowledgements, attachments. One layer of the transport (the
 * order is in gw_loop.h); it implements the Socket.IO level of app.h
 * (gw_socket_*) and owns the sessions of Socket.IO apps.
 */
#ifndef GW_SIO_H
#define GW_SIO_H

#include "gw_engine.h"

/* For a Socket.IO app's worker: takes its sessions (w->eio_up) and arms the
 * connect timeout. */
void gw__sio_worker_init(gw_worker *w);
void gw__sio_worker_dispose(gw_worker *w);

#endif
