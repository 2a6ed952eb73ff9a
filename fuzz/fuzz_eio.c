/*
 * fuzz_eio.c - Engine.IO packets and polling payloads, plus the base64 they
 * rely on. Oracles: decoding then re-encoding gives back the input bytes
 * (the codecs are strict, so each accepted text has exactly one form).
 */
#include "eio.h"
#include "fuzz.h"

/* WebSocket text frame: decode, re-encode, same bytes. */
static void text_frame(pr_view in, pr_buf *out)
{
    eio_packet p;
    if (eio_decode_text(in, &p) != PR_OK)
        return;
    FUZZ_CHECK(p.binary == 0 && p.data.len == in.len - 1);
    pr_buf_reset(out);
    FUZZ_CHECK(eio_encode_text(out, p.type, p.data) == PR_OK);
    FUZZ_CHECK(pr_view_eq(pr_buf_view(out), in));
}

/* Polling payload: when every record decodes, appending the packets again
 * rebuilds the payload byte for byte. */
static void payload(pr_view in, pr_buf *out, pr_buf *bin)
{
    pr_view rest = in, rec;
    int rc;
    pr_buf_reset(out);
    while ((rc = eio_payload_next(&rest, &rec)) == 1) {
        eio_packet p;
        if (eio_decode_record(rec, &p, bin) != PR_OK)
            return;
        FUZZ_CHECK(eio_payload_append(out, p.type, p.binary, p.data) == PR_OK);
    }
    FUZZ_CHECK(rc == 0 || rc == PR_EINVAL);
    if (rc == 0)
        FUZZ_CHECK(pr_view_eq(pr_buf_view(out), in));
}

/* Strict base64 is a bijection between canonical text and bytes. */
static void base64(pr_view in, pr_buf *out, pr_buf *bin)
{
    pr_buf_reset(bin);
    if (pr_base64_decode(bin, in) == PR_OK) {
        pr_buf_reset(out);
        FUZZ_CHECK(pr_base64_encode(out, pr_buf_view(bin)) == PR_OK);
        FUZZ_CHECK(pr_view_eq(pr_buf_view(out), in));
    }

    pr_buf enc;
    pr_buf_init(&enc, pr_base64_encoded_len(in.len));
    FUZZ_CHECK(pr_base64_encode(&enc, in) == PR_OK);
    FUZZ_CHECK(enc.len == pr_base64_encoded_len(in.len));
    pr_buf_reset(bin);
    FUZZ_CHECK(pr_base64_decode(bin, pr_buf_view(&enc)) == PR_OK);
    FUZZ_CHECK(pr_view_eq(pr_buf_view(bin), in));
    pr_buf_dispose(&enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pr_view in = pr_view_make(data, size);
    /* Ceilings of exactly the input size: every re-encoding must fit. */
    pr_buf out, bin;
    pr_buf_init(&out, size);
    pr_buf_init(&bin, size);

    text_frame(in, &out);
    payload(in, &out, &bin);
    base64(in, &out, &bin);

    eio_packet p;
    eio_decode_binary(in, &p);
    FUZZ_CHECK(p.binary && p.type == EIO_MESSAGE && pr_view_eq(p.data, in));

    pr_buf_dispose(&out);
    pr_buf_dispose(&bin);
    return 0;
}
