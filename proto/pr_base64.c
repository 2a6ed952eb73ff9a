/*
 * pr_base64.c - RFC 4648 base64 with padding; the decoder accepts only the
 * canonical encoding, so decode(encode(x)) == x and encode(decode(s)) == s.
 */
#include "pr.h"

static const char b64_alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t pr_base64_encoded_len(size_t n)
{
    size_t groups = n / 3 + (n % 3 != 0);
    /* Saturate rather than wrap, so a reserve of this size fails cleanly. */
    return groups > SIZE_MAX / 4 ? SIZE_MAX : groups * 4;
}

int pr_base64_encode(pr_buf *out, pr_view in)
{
    size_t need = pr_base64_encoded_len(in.len);
    int rc = pr_buf_reserve(out, need);
    if (rc != PR_OK || need == 0)
        return rc; /* an empty buffer may have no memory to point into */

    const unsigned char *s = (const unsigned char *)in.ptr;
    char *d = out->ptr + out->len;
    size_t i = 0;
    for (; i + 3 <= in.len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *d++ = b64_alphabet[v >> 18];
        *d++ = b64_alphabet[(v >> 12) & 63];
        *d++ = b64_alphabet[(v >> 6) & 63];
        *d++ = b64_alphabet[v & 63];
    }
    size_t rest = in.len - i;
    if (rest > 0) {
        uint32_t v = (uint32_t)s[i] << 16 | (rest == 2 ? (uint32_t)s[i + 1] << 8 : 0);
        *d++ = b64_alphabet[v >> 18];
        *d++ = b64_alphabet[(v >> 12) & 63];
        *d++ = rest == 2 ? b64_alphabet[(v >> 6) & 63] : '=';
        *d++ = '=';
    }
    out->len += need;
    return PR_OK;
}

/* Value of a base64 character, or -1. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int pr_base64_decode(pr_buf *out, pr_view in)
{
    if (in.len % 4 != 0)
        return PR_EINVAL;
    if (in.len == 0)
        return PR_OK;

    const unsigned char *s = (const unsigned char *)in.ptr;
    size_t pad = (s[in.len - 1] == '=') + (s[in.len - 2] == '=');
    /* "x=y=" has a '=' in the third position but not the fourth. */
    if (pad == 1 && s[in.len - 1] != '=')
        return PR_EINVAL;
    size_t outlen = in.len / 4 * 3 - pad;
    int rc = pr_buf_reserve(out, outlen);
    if (rc != PR_OK)
        return rc;

    unsigned char *d = (unsigned char *)out->ptr + out->len;
    size_t nchars = in.len - pad;
    uint32_t acc = 0;
    size_t i;
    for (i = 0; i < nchars; i++) {
        int v = b64_value(s[i]);
        if (v < 0)
            return PR_EINVAL; /* includes a '=' before the padding */
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            *d++ = (unsigned char)(acc >> 16);
            *d++ = (unsigned char)(acc >> 8);
            *d++ = (unsigned char)acc;
            acc = 0;
        }
    }
    /* Canonical form: the bits below the last full byte must be zero. */
    if (pad == 2) {
        if (acc & 0xf)
            return PR_EINVAL;
        *d++ = (unsigned char)(acc >> 4);
    } else if (pad == 1) {
        if (acc & 0x3)
            return PR_EINVAL;
        *d++ = (unsigned char)(acc >> 10);
        *d++ = (unsigned char)(acc >> 2);
    }
    /* Bytes written past len before an error above are simply not counted. */
    out->len += outlen;
    return PR_OK;
}
