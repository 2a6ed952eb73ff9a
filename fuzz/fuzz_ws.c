/*
 * fuzz_ws.c - the gateway's WebSocket input path: the frame scanner, then
 * wslay, Engine.IO and Socket.IO behind a real upgraded connection.
 *
 * Input: [cfg][split1][split2] then the bytes the client sends after its
 * upgrade request (client frames, masked); the prefix is read by
 * fzh_input_parse (gw_harness.h), and cfg bits 3-4 choose the MODE_*: a new
 * WebSocket session, or the probe of an upgrade from polling (with or
 * without a GET parked on the session).
 *
 * Part one runs gw__ws_scan over the bytes as the gateway does, consuming
 * complete frames, and checks what it reports. Part two gives a fresh worker
 * a fixed valid upgrade request, then feeds the bytes, each read from its own
 * exactly sized copy, running the loop between reads.
 * Oracles: the server's output is a 101 followed by frames a client must
 * accept (FIN, no mask, no reserved bits, minimal lengths, text in UTF-8,
 * short control frames, nothing after the close frame); after the worker
 * closed everything no connection or session is left open (and
 * LeakSanitizer finds nothing).
 */
#include "gw_harness.h"

#include <stdio.h>
#include <string.h>

enum { MODE_NEW, MODE_PROBE_PARKED, MODE_PROBE };
#define OUT_MAX (1u << 20)

static const char ws_headers[] = "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                 "Sec-WebSocket-Version: 13\r\n\r\n";

/* ---- part one: the scanner ---- */

static void scan_all(const uint8_t *p, size_t n, size_t max)
{
    size_t off = 0;
    for (;;) {
        const char *at = (const char *)p + off;
        gw_ws_frame f, g;
        int r = gw__ws_scan(at, n - off, max, &f);
        if (r <= 0) {
            FUZZ_CHECK(r == 0 || r == -1002 || r == -1009);
            return;
        }
        FUZZ_CHECK(r == 1);
        size_t hdr = f.frame_len - f.payload_len;
        FUZZ_CHECK(f.frame_len > f.payload_len && (hdr == 6 || hdr == 8 || hdr == 14));
        FUZZ_CHECK(f.frame_len <= n - off && f.payload_len <= max);
        FUZZ_CHECK(f.fin == p[off] >> 7 && f.opcode == (p[off] & 0x0f));
        FUZZ_CHECK(f.opcode <= 2 || (f.opcode >= 8 && f.opcode <= 10));
        FUZZ_CHECK(f.opcode < 8 || (f.fin && f.payload_len <= 125));
        /* One byte short, the same frame is only incomplete. */
        FUZZ_CHECK(gw__ws_scan(at, f.frame_len - 1, max, &g) == 0);
        off += f.frame_len;
    }
}

/* ---- part two: an upgraded connection ---- */

/* What a client must accept from us after the 101. A frame cut short at the
 * end is allowed: a connection closed at once drops its queued output. */
static void check_server_frames(pr_view v)
{
    static const char ok[] = "HTTP/1.1 101 ";
    size_t k = v.len < sizeof ok - 1 ? v.len : sizeof ok - 1;
    FUZZ_CHECK(memcmp(v.ptr, ok, k) == 0);
    const char *eoh = memmem(v.ptr, v.len, "\r\n\r\n", 4);
    if (!eoh)
        return;
    const unsigned char *p = (const unsigned char *)eoh + 4;
    const unsigned char *e = (const unsigned char *)v.ptr + v.len;
    int closed = 0;
    while (e - p >= 2) {
        FUZZ_CHECK(!closed);
        unsigned op = p[0] & 0x0f;
        FUZZ_CHECK((p[0] & 0xf0) == 0x80);
        FUZZ_CHECK(op == 1 || op == 2 || op == 8 || op == 9 || op == 10);
        FUZZ_CHECK(!(p[1] & 0x80));
        uint64_t len = p[1] & 0x7f;
        size_t hdr = 2;
        if (len == 126) {
            if (e - p < 4)
                return;
            len = (uint64_t)p[2] << 8 | p[3];
            hdr = 4;
            FUZZ_CHECK(len >= 126);
        } else if (len == 127) {
            if (e - p < 10)
                return;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | p[2 + i];
            hdr = 10;
            FUZZ_CHECK(len > 0xffff && !(len >> 63));
        }
        FUZZ_CHECK(op < 8 || len <= 125);
        if ((uint64_t)(e - p) - hdr < len)
            return;
        const char *pl = (const char *)p + hdr;
        if (op == 1)
            FUZZ_CHECK(pr_utf8_valid(pl, (size_t)len));
        if (op == 8) {
            closed = 1;
            FUZZ_CHECK(len == 0 || len >= 2);
            if (len >= 2) {
                unsigned code = (unsigned)(unsigned char)pl[0] << 8 | (unsigned char)pl[1];
                FUZZ_CHECK(code >= 1000 && code < 5000 && code != 1004 && code != 1005 &&
                           code != 1006 && code != 1015);
                FUZZ_CHECK(pr_utf8_valid(pl + 2, (size_t)len - 2));
            }
        }
        p += hdr + (size_t)len;
    }
    FUZZ_CHECK(!closed || p == e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fzh_input fi;
    if (fzh_input_parse(&fi, data, size) != 0)
        return 0;
    unsigned mode = fi.extra & 3;
    scan_all(fi.in, fi.n, fi.cfg->max_payload);
    scan_all(fi.in, fi.n, SIZE_MAX);

    gw_worker *w = fzh_worker_new(fi.cfg);
    const char *path = w->app->default_path;
    fzh_client cl, setup;
    fzh_client *cls[2] = {&cl, &setup};
    int ncl = 1;
    char req[512];
    int rn;
    fzh_client_open(w, &cl, fi.small_sndbuf, OUT_MAX);
    if (mode == MODE_PROBE || mode == MODE_PROBE_PARKED) {
        /* a polling session, maybe with its GET parked, then its probe */
        ncl = 2;
        fzh_client_open(w, &setup, 0, 0);
        gw_session *s = fzh_polling_session(w, &setup);
        char sid[GW_SID_LEN + 1];
        memcpy(sid, s->sid, sizeof sid);
        fzh_pump(w, cls, ncl);
        if (mode == MODE_PROBE_PARKED) {
            rn = snprintf(req, sizeof req,
                          "GET %s?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: x\r\n\r\n", path,
                          sid);
            gw__conn_feed(setup.c, req, (size_t)rn);
            FUZZ_CHECK(s->conn == setup.c);
        }
        rn = snprintf(req, sizeof req, "GET %s?EIO=4&transport=websocket&sid=%s HTTP/1.1\r\n%s",
                      path, sid, ws_headers);
    } else {
        rn = snprintf(req, sizeof req, "GET %s?EIO=4&transport=websocket HTTP/1.1\r\n%s", path,
                      ws_headers);
    }
    FUZZ_CHECK(rn > 0 && (size_t)rn < sizeof req);
    gw__conn_feed(cl.c, req, (size_t)rn);
    FUZZ_CHECK(gw__ws_is(cl.c) && cl.c->state == GW_OPEN);
    cl.check = check_server_frames;
    fzh_pump(w, cls, ncl);

    fzh_feed_split(w, cls, ncl, &cl, &fi, fi.in);

    fzh_worker_finish(w, cls, ncl);
    return 0;
}
