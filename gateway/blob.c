/*
 * blob.c - shared output bytes: a packet or frame is encoded once into a
 * refcounted blob, and the same blob is queued on every connection (or
 * polling session) that sends it.
 */
#include <string.h>
#include <wslay/wslay.h>

#include "gw_loop.h"

gw_blob *gw__blob_new(size_t len)
{
    gw_blob *b = pr_malloc(sizeof *b + len);
    b->refs = 1;
    b->hdr = 0;
    b->binary = 0;
    b->len = len;
    return b;
}

void gw__blob_unref(gw_blob *b)
{
    if (b && b->refs != GW_BLOB_IMMORTAL && --b->refs == 0)
        pr_free(b);
}

gw_blob *gw__blob_ws_frame(int opcode, size_t payload_len)
{
    size_t hdr = payload_len < 126 ? 2 : payload_len <= 0xffff ? 4 : 10;
    gw_blob *b = gw__blob_new(hdr + payload_len);
    unsigned char *h = (unsigned char *)b->data;
    h[0] = (unsigned char)(0x80 | (opcode & 0x0f));
    if (hdr == 2) {
        h[1] = (unsigned char)payload_len;
    } else if (hdr == 4) {
        h[1] = 126;
        h[2] = (unsigned char)(payload_len >> 8);
        h[3] = (unsigned char)payload_len;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)payload_len >> (56 - 8 * i));
    }
    b->hdr = (uint16_t)hdr;
    return b;
}

gw_blob *gw__blob_eio(eio_type type, int binary, pr_view data)
{
    gw_blob *b;
    if (binary) {
        b = gw__blob_ws_frame(WSLAY_BINARY_FRAME, data.len);
        b->binary = 1;
        if (data.len)
            memcpy(b->data + b->hdr, data.ptr, data.len);
    } else {
        b = gw__blob_ws_frame(WSLAY_TEXT_FRAME, data.len + 1);
        b->data[b->hdr] = (char)('0' + type);
        if (data.len)
            memcpy(b->data + b->hdr + 1, data.ptr, data.len);
    }
    return b;
}
