/*
 * sio.c - Socket.IO v5 packet codec.
 */
#include "sio.h"

#include <inttypes.h>
#include <string.h>

/* Largest id a JavaScript peer can represent exactly (Number.MAX_SAFE_INTEGER). */
#define SIO_ID_MAX ((UINT64_C(1) << 53) - 1)
/* jansson accepts 2048 levels; the placeholder walk below recurses, so it
 * allows far fewer. Chat payloads are shallow. */
#define SIO_JSON_MAX_DEPTH 32

static int is_binary_type(sio_type t) { return t == SIO_BINARY_EVENT || t == SIO_BINARY_ACK; }

/*
 * Reads decimal digits at *pos (advancing it) into *val. Returns the number
 * of digits read (0 when none), or -1 as soon as the value exceeds max, so an
 * endless run of digits costs nothing and cannot overflow.
 */
static int parse_uint(pr_view text, size_t *pos, uint64_t max, uint64_t *val)
{
    uint64_t v = 0;
    int digits = 0;
    while (*pos < text.len && text.ptr[*pos] >= '0' && text.ptr[*pos] <= '9') {
        v = v * 10 + (uint64_t)(text.ptr[*pos] - '0');
        if (v > max)
            return -1;
        (*pos)++;
        digits++;
    }
    *val = v;
    return digits;
}

/*
 * The namespace runs from the '/' at *pos to the first ',' (consumed) or, as
 * in the reference parser, to the end of the text when there is no ','.
 * It is stored as a C string and echoed to peers, so NUL and other control
 * bytes (the polling separator 0x1e among them) are refused.
 */
static int parse_nsp(pr_view text, size_t *pos, char nsp[SIO_NSP_MAX])
{
    const char *start = text.ptr + *pos;
    size_t avail = text.len - *pos;
    const char *comma = memchr(start, ',', avail);
    size_t n = comma ? (size_t)(comma - start) : avail;
    if (n >= SIO_NSP_MAX)
        return PR_ETOOBIG;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)start[i];
        if (c < 0x20 || c == 0x7f)
            return PR_EINVAL;
    }
    if (!pr_utf8_valid(start, n))
        return PR_EINVAL;
    memcpy(nsp, start, n);
    nsp[n] = '\0';
    *pos += n + (comma != NULL);
    return PR_OK;
}

int sio_is_placeholder(const json_t *j, int64_t *num)
{
    if (!json_is_object(j) || json_object_size(j) != 2 ||
        !json_is_true(json_object_get(j, "_placeholder")))
        return 0;
    const json_t *n = json_object_get(j, "num");
    if (!json_is_integer(n))
        return 0;
    if (num)
        *num = json_integer_value(n);
    return 1;
}

/*
 * Bounds the nesting depth of j (a container at top level is depth 1) and,
 * when attachments > 0, checks placeholders: like the reference parser, any
 * object with "_placeholder": true must be a placeholder with a num that
 * indexes an announced attachment. Non-binary packets carry no attachments,
 * so there such objects are plain data.
 */
static int check_json(json_t *j, unsigned depth, unsigned attachments)
{
    if (!json_is_array(j) && !json_is_object(j))
        return PR_OK;
    if (depth > SIO_JSON_MAX_DEPTH)
        return PR_EINVAL;
    if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) {
            int rc = check_json(json_array_get(j, i), depth + 1, attachments);
            if (rc != PR_OK)
                return rc;
        }
        return PR_OK;
    }
    if (attachments > 0 && json_is_true(json_object_get(j, "_placeholder"))) {
        int64_t num;
        if (!sio_is_placeholder(j, &num) || num < 0 || num >= (int64_t)attachments)
            return PR_EINVAL;
        return PR_OK;
    }
    const char *key;
    json_t *value;
    json_object_foreach(j, key, value) {
        int rc = check_json(value, depth + 1, attachments);
        if (rc != PR_OK)
            return rc;
    }
    return PR_OK;
}

/* What the specification requires of each packet type sent by a client. */
static int shape_valid(const sio_packet *p)
{
    const json_t *d = p->data;
    switch (p->type) {
    case SIO_CONNECT:
        /* An id would be meaningless; the reference client never sends one. */
        return p->id < 0 && (d == NULL || json_is_object(d));
    case SIO_DISCONNECT:
        return p->id < 0 && d == NULL;
    case SIO_EVENT:
    case SIO_BINARY_EVENT:
        return json_is_array(d) && json_array_size(d) > 0 && json_is_string(json_array_get(d, 0));
    case SIO_ACK:
    case SIO_BINARY_ACK:
        return p->id >= 0 && json_is_array(d);
    case SIO_CONNECT_ERROR: /* only servers send it */
    default:
        return 0;
    }
}

static int hex4(const char *p, unsigned *v)
{
    unsigned x = 0;
    for (int i = 0; i < 4; i++) {
        int d = pr_hex_digit(p[i]);
        if (d < 0)
            return 0;
        x = x << 4 | (unsigned)d;
    }
    *v = x;
    return 1;
}

/*
 * Finds, inside the JSON strings of p[0..n), every escape \uD800-\uDFFF
 * that is not half of a high+low pair: what JSON.stringify emits for text
 * cut in the middle of an emoji, and what jansson refuses. With fix (a
 * writable copy of p) each one is rewritten there to \uFFFD, the same six
 * bytes. Escaped backslashes and quotes are honoured; anything else invalid
 * is left for jansson to refuse. Returns how many were found.
 */
size_t sio_lone_surrogates(const char *p, size_t n, char *fix)
{
    size_t found = 0;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!in_str) {
            in_str = c == '"';
            continue;
        }
        if (c == '"') {
            in_str = 0;
            continue;
        }
        if (c != '\\')
            continue;
        unsigned v, lo;
        if (n - i < 6 || p[i + 1] != 'u' || !hex4(p + i + 2, &v)) {
            i++; /* the escaped byte, '\\' and '"' among them */
            continue;
        }
        if (v >= 0xD800 && v <= 0xDBFF && n - i >= 12 && p[i + 6] == '\\' && p[i + 7] == 'u' &&
            hex4(p + i + 8, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
            i += 11; /* a valid pair */
            continue;
        }
        if (v >= 0xD800 && v <= 0xDFFF) {
            found++;
            if (fix)
                memcpy(fix + i + 2, "FFFD", 4);
        }
        i += 5;
    }
    return found;
}

int sio_decode(pr_view text, sio_packet *out)
{
    int rc = PR_EINVAL;
    size_t pos = 1;
    uint64_t v;

    out->type = SIO_CONNECT;
    strcpy(out->nsp, "/");
    out->id = -1;
    out->attachments = 0;
    out->data = NULL;
    out->nattached = 0;

    if (text.len == 0 || text.ptr[0] < '0' || text.ptr[0] > '6')
        goto fail;
    out->type = (sio_type)(text.ptr[0] - '0');

    /* A non-binary type followed by "<n>-" reads n as an id and then fails
     * on "-", which no accepted payload (array or object) can start with. */
    if (is_binary_type(out->type)) {
        int count_digits = parse_uint(text, &pos, SIO_MAX_ATTACHMENTS, &v);
        if (count_digits < 0) {
            rc = PR_ETOOBIG;
            goto fail;
        }
        if (count_digits == 0 || v == 0 || pos >= text.len || text.ptr[pos] != '-')
            goto fail;
        pos++;
        out->attachments = (unsigned)v;
    }

    if (pos < text.len && text.ptr[pos] == '/') {
        int nsp_rc = parse_nsp(text, &pos, out->nsp);
        if (nsp_rc != PR_OK) {
            rc = nsp_rc;
            goto fail;
        }
    }

    int digits = parse_uint(text, &pos, SIO_ID_MAX, &v);
    if (digits < 0)
        goto fail;
    if (digits > 0)
        out->id = (int64_t)v;

    if (pos < text.len) {
        /* Without JSON_DISABLE_EOF_CHECK jansson refuses trailing bytes; it
         * also validates UTF-8. */
        json_error_t jerr;
        const char *json = text.ptr + pos;
        size_t jlen = text.len - pos;
        char *copy = NULL;
        if (sio_lone_surrogates(json, jlen, NULL) > 0) {
            /* A browser's cut emoji is text, not an attack: U+FFFD */
            copy = pr_malloc(jlen);
            memcpy(copy, json, jlen);
            sio_lone_surrogates(json, jlen, copy);
            json = copy;
        }
        out->data = json_loadb(json, jlen, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        pr_free(copy);
        if (out->data == NULL)
            goto fail;
    }

    if (!shape_valid(out))
        goto fail;
    if (out->data != NULL) {
        rc = check_json(out->data, 1, out->attachments);
        if (rc != PR_OK)
            goto fail;
    }
    return PR_OK;

fail:
    json_decref(out->data);
    out->data = NULL;
    return rc;
}

int sio_add_attachment(sio_packet *p, pr_view bin, size_t max_total)
{
    if (p->nattached >= p->attachments || p->nattached >= SIO_MAX_ATTACHMENTS)
        return PR_ESTATE;
    size_t total = 0;
    for (unsigned i = 0; i < p->nattached; i++)
        total += p->att[i].len;
    if (bin.len > max_total || total > max_total - bin.len)
        return PR_ETOOBIG;
    char *copy = pr_malloc(bin.len);
    if (bin.len > 0)
        memcpy(copy, bin.ptr, bin.len);
    p->att[p->nattached].ptr = copy;
    p->att[p->nattached].len = bin.len;
    p->nattached++;
    return PR_OK;
}

void sio_packet_dispose(sio_packet *p)
{
    for (unsigned i = 0; i < p->nattached; i++)
        pr_free(p->att[i].ptr);
    p->nattached = 0;
    json_decref(p->data);
    p->data = NULL;
}

struct dump_ctx {
    pr_buf *out;
    int rc;
};

/* jansson only reports failure; ctx->rc remembers whether it was our ceiling. */
static int dump_cb(const char *buffer, size_t size, void *data)
{
    struct dump_ctx *ctx = data;
    ctx->rc = pr_buf_append(ctx->out, buffer, size);
    return ctx->rc == PR_OK ? 0 : -1;
}

int sio_encode(pr_buf *out, sio_type type, const char *nsp, int64_t id, unsigned attachments,
               const json_t *data)
{
    /* Refusing packets no peer could decode catches bugs in our callers. */
    int binary = is_binary_type(type);
    if ((int)type < SIO_CONNECT || (int)type > SIO_BINARY_ACK || binary != (attachments > 0) ||
        (id >= 0 && (uint64_t)id > SIO_ID_MAX))
        return PR_EINVAL;

    size_t mark = out->len;
    int rc = pr_buf_append_byte(out, (char)('0' + type));
    if (rc == PR_OK && binary)
        rc = pr_buf_appendf(out, "%u-", attachments);
    /* Like the reference encoder: a custom namespace is always followed by
     * ',', even when nothing else follows ("1/admin,"). */
    if (rc == PR_OK && nsp != NULL && nsp[0] != '\0' && strcmp(nsp, "/") != 0)
        rc = pr_buf_appendf(out, "%s,", nsp);
    if (rc == PR_OK && id >= 0)
        rc = pr_buf_appendf(out, "%" PRId64, id);
    if (rc == PR_OK && data != NULL) {
        struct dump_ctx ctx = {out, PR_OK};
        if (json_dump_callback(data, dump_cb, &ctx, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
            rc = ctx.rc != PR_OK ? ctx.rc : PR_EINVAL;
    }
    if (rc != PR_OK)
        out->len = mark;
    return rc;
}
