/*
 * gw.h - an umbrella over the transport's private headers, for gateway code
 * outside the transport that has not moved to app.h yet. No transport file
 * includes it: each includes its own layer's header (see gw_loop.h for the
 * layers and their order), and nothing in gateway/chat/ does.
 */
#ifndef GW_H
#define GW_H

#include <wslay/wslay.h> /* opcodes for gw__blob_ws_frame */

#include "gw_worker.h"

#endif
