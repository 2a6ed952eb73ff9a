/* chat_vec.c - shard position vectors ("0.17.3"): recovery offsets, session
 * records and replay requests. */
#include "chat.h"
#include "chat_int.h"

int chat_vec_encode(pr_buf *out, const uint64_t *v, unsigned n)
{
    if (n == 0 || n > CHAT_SHARDS_MAX)
        return PR_EINVAL;
    size_t mark = out->len;
    for (unsigned i = 0; i < n; i++) {
        char num[21];
        num[0] = '.';
        size_t len = chat__u64_dec(num + 1, v[i]) + 1;
        int rc = v[i] > (uint64_t)CHAT_NUM_MAX ? PR_EINVAL
                                               : pr_buf_append(out, num + !i, len - !i);
        if (rc != PR_OK) {
            out->len = mark;
            return rc;
        }
    }
    return PR_OK;
}

int chat_vec_decode(pr_view in, uint64_t *v, unsigned n)
{
    if (n == 0 || n > CHAT_SHARDS_MAX)
        return PR_EINVAL;
    pr_view it = in;
    for (unsigned i = 0; i < n; i++) {
        pr_view f;
        int64_t x;
        if (i + 1 < n) {
            if (chat__take(&it, '.', 16, &f) != PR_OK)
                return PR_EINVAL;
        } else {
            f = it;
            it.len = 0;
        }
        if (chat__parse_num(f, 0, &x) != PR_OK)
            return PR_EINVAL;
        v[i] = (uint64_t)x;
    }
    return PR_OK;
}
