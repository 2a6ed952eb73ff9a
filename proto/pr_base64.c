/*
 * pr_base64.c - RFC 4648 base64 with padding, and base64url without it
 * (section 5, as JWTs use it). The decoders accept only the canonical
 * encoding, so decode(encode(x)) == x and encode(decode(s)) == s.
 */
#include "pr.h"

static const char b64_alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url_alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t pr_base64_encoded_len(size_t n)
{
    size_t groups = n / 3 + (n % 3 != 0);
    /* Saturate rather than wrap, so a reserve of this size fails cleanly. */
    return groups > SIZE_MAX / 4 ? SIZE_MAX : groups * 4;
}

size_t pr_base64url_encoded_len(size_t n)
{
    /* 4 characters per whole group, then 2 for one byte left, 3 for two. */
    size_t groups = n / 3, rest = n % 3;
    return groups > (SIZE_MAX - 3) / 4 ? SIZE_MAX : groups * 4 + (rest ? rest + 1 : 0);
}

/* Encodes in with alphabet a; pads the last group with '=' when pad is set. */
static int encode(pr_buf *out, pr_view in, const char a[64], int pad)
{
    size_t need = pad ? pr_base64_encoded_len(in.len) : pr_base64url_encoded_len(in.len);
    int rc = pr_buf_reserve(out, need);
    if (rc != PR_OK || need == 0)
        return rc; /* an empty buffer may have no memory to point into */

    const unsigned char *s = (const unsigned char *)in.ptr;
    char *d = out->ptr + out->len;
    size_t i = 0;
    for (; i + 3 <= in.len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *d++ = a[v >> 18];
        *d++ = a[(v >> 12) & 63];
        *d++ = a[(v >> 6) & 63];
        *d++ = a[v & 63];
    }
    size_t rest = in.len - i;
    if (rest > 0) {
        uint32_t v = (uint32_t)s[i] << 16 | (rest == 2 ? (uint32_t)s[i + 1] << 8 : 0);
        *d++ = a[v >> 18];
        *d++ = a[(v >> 12) & 63];
        if (rest == 2)
            *d++ = a[(v >> 6) & 63];
        else if (pad)
            *d++ = '=';
        if (pad)
            *d++ = '=';
    }
    out->len += need;
    return PR_OK;
}

int pr_base64_encode(pr_buf *out, pr_view in)
{
    return encode(out, in, b64_alphabet, 1);
}

int pr_base64url_encode(pr_buf *out, pr_view in)
{
    return encode(out, in, b64url_alphabet, 0);
}

/* Value of a character of alphabet a ("+/" or "-_" after the digits), or -1. */
static int b64_value(unsigned char c, const char a[64])
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (unsigned char)a[62])
        return 62;
    if (c == (unsigned char)a[63])
        return 63;
    return -1;
}

/*
 * Decodes n characters of alphabet a with the padding already stripped; n % 4
 * is 0, 2 or 3 (checked by the callers). Appends to out, or leaves it
 * unchanged on failure.
 */
static int decode(pr_buf *out, const unsigned char *s, size_t n, const char a[64])
{
    size_t tail = n % 4; /* characters of the last, partial group */
    size_t outlen = n / 4 * 3 + (tail ? tail - 1 : 0);
    int rc = pr_buf_reserve(out, outlen);
    if (rc != PR_OK || outlen == 0)
        return rc;

    unsigned char *d = (unsigned char *)out->ptr + out->len;
    uint32_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(s[i], a);
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
    if (tail == 2) {
        if (acc & 0xf)
            return PR_EINVAL;
        *d++ = (unsigned char)(acc >> 4);
    } else if (tail == 3) {
        if (acc & 0x3)
            return PR_EINVAL;
        *d++ = (unsigned char)(acc >> 10);
        *d++ = (unsigned char)(acc >> 2);
    }
    /* Bytes written past len before an error above are simply not counted. */
    out->len += outlen;
    return PR_OK;
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
    return decode(out, s, in.len - pad, b64_alphabet);
}

int pr_base64url_decode(pr_buf *out, pr_view in)
{
    if (in.len % 4 == 1)
        return PR_EINVAL; /* no byte count encodes to this length */
    return decode(out, (const unsigned char *)in.ptr, in.len, b64url_alphabet);
}
