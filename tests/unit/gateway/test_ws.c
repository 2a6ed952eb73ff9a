/* Unit tests of gateway/ws.c's frame scanner (gw__ws_scan). */
#include "gw_ws.h"
#include "t.h"

/* A masked client frame header for opcode/fin/len, mask key 0. */
static size_t frame(unsigned char *b, int fin, int opcode, uint64_t len)
{
    size_t n = 0;
    b[n++] = (unsigned char)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        b[n++] = (unsigned char)(0x80 | len);
    } else if (len <= 0xffff) {
        b[n++] = 0x80 | 126;
        b[n++] = (unsigned char)(len >> 8);
        b[n++] = (unsigned char)len;
    } else {
        b[n++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            b[n++] = (unsigned char)(len >> (8 * i));
    }
    for (int i = 0; i < 4; i++)
        b[n++] = 0;
    return n;
}

int main(void)
{
    unsigned char b[70000] = {0};
    gw_ws_frame f;
    const char *p = (const char *)b;

    size_t h = frame(b, 1, 1, 5);
    CHECK_EQ(gw__ws_scan(p, h + 5, 100, &f), 1);
    CHECK_EQ(f.frame_len, h + 5);
    CHECK_EQ(f.payload_len, 5);
    CHECK_EQ(f.opcode, 1);
    CHECK_EQ(f.fin, 1);
    CHECK_EQ(gw__ws_scan(p, h + 4, 100, &f), 0); /* one byte short */
    CHECK_EQ(gw__ws_scan(p, 1, 100, &f), 0);

    h = frame(b, 1, 2, 300); /* 16-bit length */
    CHECK_EQ(h, 8);
    CHECK_EQ(gw__ws_scan(p, h + 300, 1000, &f), 1);
    CHECK_EQ(f.payload_len, 300);
    CHECK_EQ(gw__ws_scan(p, 3, 1000, &f), 0); /* extended length incomplete */

    h = frame(b, 1, 2, 66000); /* 64-bit length */
    CHECK_EQ(h, 14);
    CHECK_EQ(gw__ws_scan(p, h + 66000, 100000, &f), 1);
    CHECK_EQ(gw__ws_scan(p, h, 65999, &f), -1009); /* over max, refused before buffering */

    frame(b, 1, 1, 5);
    b[1] &= 0x7f; /* unmasked */
    CHECK_EQ(gw__ws_scan(p, 20, 100, &f), -1002);
    frame(b, 1, 1, 5);
    b[0] |= 0x40; /* RSV1 without an extension */
    CHECK_EQ(gw__ws_scan(p, 20, 100, &f), -1002);
    frame(b, 1, 3, 5); /* reserved opcode */
    CHECK_EQ(gw__ws_scan(p, 20, 100, &f), -1002);
    frame(b, 0, 9, 5); /* fragmented ping */
    CHECK_EQ(gw__ws_scan(p, 20, 100, &f), -1002);
    frame(b, 1, 8, 126); /* control frame over 125 */
    CHECK_EQ(gw__ws_scan(p, 200, 1000, &f), -1002);
    frame(b, 1, 2, 0);
    b[1] = 0x80 | 127;
    b[2] = 0x80; /* 64-bit length with the top bit set */
    CHECK_EQ(gw__ws_scan(p, 20, (size_t)-1, &f), -1002);
    frame(b, 0, 1, 3); /* a first fragment is fine */
    CHECK_EQ(gw__ws_scan(p, 9, 100, &f), 1);
    CHECK_EQ(f.fin, 0);
    T_DONE();
}
