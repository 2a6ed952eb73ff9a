/* chat_text.c - the pieces of the chat's line-based text codecs (envelopes,
 * receipt lines, vectors): strict numbers, cutting fields, appending parts. */
#include "chat_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "chat.h"

int chat__parse_digits(pr_view v, int64_t *out)
{
    if (!v.ptr || v.len == 0 || v.len > 16)
        return PR_EINVAL;
    int64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9')
            return PR_EINVAL;
        n = n * 10 + (v.ptr[i] - '0');
    }
    if (n > CHAT_NUM_MAX)
        return PR_EINVAL;
    *out = n;
    return PR_OK;
}

int chat__parse_num(pr_view v, int allow_minus_one, int64_t *out)
{
    if (allow_minus_one && v.len == 2 && v.ptr[0] == '-' && v.ptr[1] == '1') {
        *out = -1;
        return PR_OK;
    }
    if (v.len > 1 && v.ptr[0] == '0')
        return PR_EINVAL;
    return chat__parse_digits(v, out);
}

int chat__take(pr_view *it, char delim, size_t max, pr_view *field)
{
    size_t scan = it->len;
    if (max && scan > max + 1)
        scan = max + 1;
    const char *d = scan ? memchr(it->ptr, delim, scan) : NULL;
    if (d == NULL)
        return PR_EINVAL;
    *field = pr_view_make(it->ptr, (size_t)(d - it->ptr));
    it->ptr = d + 1;
    it->len -= field->len + 1;
    return PR_OK;
}

int chat__take_id(pr_view *it, char delim, pr_view *id)
{
    if (chat__take(it, delim, CHAT_ID_MAX, id) != PR_OK || !chat_id_valid(id->ptr, id->len))
        return PR_EINVAL;
    return PR_OK;
}

int chat__take_num(pr_view *it, char delim, int allow_minus_one, int64_t *n)
{
    pr_view f;
    if (chat__take(it, delim, 20, &f) != PR_OK)
        return PR_EINVAL;
    return chat__parse_num(f, allow_minus_one, n);
}

int chat__id_ok(pr_view v)
{
    return chat_id_valid(v.ptr, v.len);
}

int chat__append_all(pr_buf *out, const pr_view *parts, unsigned n)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++) {
        if (parts[i].len > SIZE_MAX - total)
            return PR_ETOOBIG;
        total += parts[i].len;
    }
    int rc = pr_buf_reserve(out, total);
    if (rc != PR_OK)
        return rc;
    for (unsigned i = 0; i < n; i++)
        pr_buf_append_view(out, parts[i]);
    return PR_OK;
}

size_t chat__u64_dec(char buf[20], uint64_t n)
{
    char tmp[20];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    memcpy(buf, tmp + i, sizeof tmp - i);
    return sizeof tmp - i;
}

pr_view chat__num_view(char buf[24], int64_t n)
{
    if (n >= 0)
        return pr_view_make(buf, chat__u64_dec(buf, (uint64_t)n));
    buf[0] = '-';
    return pr_view_make(buf, 1 + chat__u64_dec(buf + 1, (uint64_t)0 - (uint64_t)n));
}

int chat__line_ok(pr_view v)
{
    return v.len > 0 && memchr(v.ptr, '\n', v.len) == NULL;
}
