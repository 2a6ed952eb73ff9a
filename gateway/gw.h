/*
 * gw.h - an umbrella over the transport's private headers, for gateway code
 * outside the transport that has not moved to app.h yet, plus the internals
 * of the chat app's helpers (ratelimit.c, app_chat.c). No transport file
 * includes it: each includes its own layer's header (see gw_loop.h for the
 * layers and their order).
 */
#ifndef GW_H
#define GW_H

#include <wslay/wslay.h> /* opcodes for gw__blob_ws_frame */

#include "gw_worker.h"

/* ---- per-user rate limits (ratelimit.c) ------------------------------------
 * One token bucket per user id, shared by every worker of the process (any
 * thread may call these). acquire finds or creates the user's bucket (full)
 * and takes a reference; release drops it (NULL is fine); take spends one
 * token if there is one: 1, else 0. */
typedef struct gw_rl gw_rl;
gw_rl *gw__rl_acquire(const char *uid, size_t len, double burst, uint64_t now_ms);
void gw__rl_release(gw_rl *b);
int gw__rl_take(gw_rl *b, uint64_t now_ms, double rate, double burst);

/* ---- chat app helpers (app_chat.c), pure, exposed for unit tests --------- */
/* Appends packet (a Socket.IO EVENT "2[...]") with the position vector
 * vec[0..n) added as its last argument, a string: the client's recovery
 * offset. PR_EINVAL (out unchanged) when packet is not an event array. */
int gw__chat_offset_packet(pr_buf *out, pr_view packet, const uint64_t *vec, unsigned n);
/* Merges receipt seq into *have (0: none): the highest wins, and -1
 * ("everything so far") wins over any number. */
void gw__chat_receipt_merge(int64_t *have, int64_t seq);

#endif
