/*
 * fuzz_http.c - the gateway's HTTP input path, with the Engine.IO and
 * Socket.IO code behind it, driven as a client on one TCP connection would.
 *
 * Input: [cfg][split1][split2] then the bytes the client sends; the prefix
 * is read by fzh_input_parse (gw_harness.h), cfg bits 3-7 are unused.
 * Each input gets a fresh worker that already holds one polling session
 * (created by a handshake on another connection); every occurrence of
 * SID_MARK in the stream is replaced by that session's sid, so POSTs, parked
 * GETs and WebSocket upgrades of a live session are reachable.
 *
 * Each read is fed from its own exactly sized copy (ASan sees a read past
 * its end), then the loop runs so the flush pass writes and frees as in
 * production. Oracles: responses start with "HTTP/1.1 ", and after the
 * worker has closed everything no connection or session is left open (and
 * LeakSanitizer finds nothing).
 */
#include "gw_harness.h"

#include <string.h>

/* 20 characters, as a sid; 'S' names no worker when only one is running. */
#define SID_MARK "SSSSSSSSSSSSSSSSSSSS"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fzh_input fi;
    if (fzh_input_parse(&fi, data, size) != 0)
        return 0;
    gw_worker *w = fzh_worker_new(fi.cfg);

    /* A polling session for the stream to address. */
    fzh_client setup, cl;
    fzh_client *cls[2] = {&setup, &cl};
    fzh_client_open(w, &setup, 0, 0);
    gw_session *s = fzh_polling_session(w, &setup);

    size_t n = fi.n;
    uint8_t *in = malloc(n ? n : 1);
    FUZZ_CHECK(in != NULL);
    memcpy(in, fi.in, n);
    for (size_t i = 0; i + GW_SID_LEN <= n; i++)
        if (in[i] == 'S' && !memcmp(in + i, SID_MARK, GW_SID_LEN)) {
            memcpy(in + i, s->sid, GW_SID_LEN);
            i += GW_SID_LEN - 1;
        }
    fzh_pump(w, cls, 1);

    fzh_client_open(w, &cl, fi.small_sndbuf, 0);
    fzh_feed_split(w, cls, 2, &cl, &fi, in);
    free(in);

    fzh_worker_finish(w, cls, 2);
    return 0;
}
