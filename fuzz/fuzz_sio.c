/*
 * fuzz_sio.c - Socket.IO packet decoding with attachments. Oracles: a decoded
 * packet re-encodes, the encoding decodes to an equal packet, and encoding
 * that packet gives the same bytes again.
 */
#include "fuzz.h"
#include "sio.h"

#include <string.h>

static int packets_equal(const sio_packet *a, const sio_packet *b)
{
    return a->type == b->type && strcmp(a->nsp, b->nsp) == 0 && a->id == b->id &&
           a->attachments == b->attachments &&
           (a->data == NULL ? b->data == NULL : json_equal(a->data, b->data));
}

/* Feeds the announced attachments, slices of the input of varying length. */
static void attach(sio_packet *p, const uint8_t *data, size_t size)
{
    if (p->attachments > 0 && size > 0) {
        /* A ceiling too small for the first attachment refuses it. */
        FUZZ_CHECK(sio_add_attachment(p, pr_view_make(data, size), size - 1) == PR_ETOOBIG);
        FUZZ_CHECK(p->nattached == 0);
    }
    for (unsigned i = 0; i < p->attachments; i++) {
        FUZZ_CHECK(!sio_packet_complete(p));
        size_t n = (size_t)i * 31 % (size + 1);
        FUZZ_CHECK(sio_add_attachment(p, pr_view_make(data, n), SIZE_MAX) == PR_OK);
        FUZZ_CHECK(p->att[i].len == n && (n == 0 || memcmp(p->att[i].ptr, data, n) == 0));
    }
    FUZZ_CHECK(sio_packet_complete(p));
    FUZZ_CHECK(sio_add_attachment(p, pr_view_make(data, size), SIZE_MAX) == PR_ESTATE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int installed;
    if (!installed) {
        pr_alloc_install_jansson();
        installed = 1;
    }

    sio_packet p, q;
    if (sio_decode(pr_view_make(data, size), &p) != PR_OK) {
        FUZZ_CHECK(p.data == NULL); /* nothing to free after an error */
        return 0;
    }
    attach(&p, data, size);

    /* Reals can re-encode longer than they were written ("1e9" is
     * "1000000000.0"), so the ceiling leaves room. */
    pr_buf first, second;
    pr_buf_init(&first, 16 * size + 64);
    pr_buf_init(&second, 16 * size + 64);
    FUZZ_CHECK(sio_encode(&first, p.type, p.nsp, p.id, p.attachments, p.data) == PR_OK);
    FUZZ_CHECK(sio_decode(pr_buf_view(&first), &q) == PR_OK);
    FUZZ_CHECK(packets_equal(&p, &q));
    FUZZ_CHECK(sio_encode(&second, q.type, q.nsp, q.id, q.attachments, q.data) == PR_OK);
    FUZZ_CHECK(pr_view_eq(pr_buf_view(&first), pr_buf_view(&second)));

    pr_buf_dispose(&first);
    pr_buf_dispose(&second);
    sio_packet_dispose(&p);
    sio_packet_dispose(&q);
    return 0;
}
