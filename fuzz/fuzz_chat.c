/*
 * fuzz_chat.c - chat event payloads and the Redis envelope. The first byte
 * selects what the rest is:
 *   'j'  JSON (as sio_decode loads it) for chat_parse_args, max_text 32;
 *   'f'  fields "<room>\0<except socket>\0<except user>\0<packet>" to encode;
 *   's'  a storage envelope (M1, U1, J1/K1, A1, R1), receipt lines or a
 *        position vector (docs/storage.md), through every decoder;
 *   else an envelope to decode.
 *
 * Oracles: parsed fields obey the documented rules and survive being written
 * back as JSON and parsed again; a larger text limit never turns success into
 * failure; a decoded envelope (any kind) re-encodes to the same bytes, an encoded one
 * decodes to the same fields, and encoding refuses only invalid fields.
 */
#include "chat.h"
#include "fuzz.h"

#include <string.h>

#define MAX_TEXT 32

static int str_eq(const char *a, const char *b)
{
    return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

static int args_equal(const chat_args *a, const chat_args *b)
{
    return str_eq(a->target_user_id, b->target_user_id) && str_eq(a->room_id, b->room_id) &&
           a->text_len == b->text_len && (a->text == NULL) == (b->text == NULL) &&
           (a->text_len == 0 || memcmp(a->text, b->text, a->text_len) == 0) &&
           str_eq(a->client_msg_id, b->client_msg_id) && str_eq(a->user_id, b->user_id) &&
           str_eq(a->first_name, b->first_name) && str_eq(a->last_name, b->last_name) &&
           a->seq == b->seq;
}

static void check_id(const char *s)
{
    FUZZ_CHECK(s == NULL || chat_id_valid(s, strlen(s)));
}

static void check_name(const char *s)
{
    FUZZ_CHECK(s == NULL || chat_name_valid(s, strlen(s)));
}

static void set_str(json_t *o, const char *key, const char *s)
{
    if (s != NULL)
        json_object_set_new(o, key, json_string(s));
}

/* The parsed fields as a fresh payload, under the canonical keys. */
static json_t *rebuild(const chat_args *a)
{
    json_t *o = json_object();
    set_str(o, "targetUserId", a->target_user_id);
    set_str(o, "roomId", a->room_id);
    if (a->text != NULL)
        json_object_set_new(o, "text", json_stringn(a->text, a->text_len));
    set_str(o, "clientMsgId", a->client_msg_id);
    set_str(o, "userId", a->user_id);
    set_str(o, "firstName", a->first_name);
    set_str(o, "lastName", a->last_name);
    if (a->seq >= 0)
        json_object_set_new(o, "seq", json_integer(a->seq));
    return o;
}

static void fuzz_args(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    chat_args a, b;

    int rc = chat_parse_args(j, MAX_TEXT, &a);
    FUZZ_CHECK(rc == PR_OK || rc == PR_EINVAL || rc == PR_ETOOBIG);
    if (!json_is_object(j))
        FUZZ_CHECK(rc == PR_EINVAL);
    if (rc == PR_OK) {
        check_id(a.target_user_id);
        check_id(a.room_id);
        check_id(a.client_msg_id);
        check_id(a.user_id);
        check_name(a.first_name);
        check_name(a.last_name);
        FUZZ_CHECK(a.text_len <= MAX_TEXT);
        FUZZ_CHECK(a.text == NULL ? a.text_len == 0 : strlen(a.text) == a.text_len);
        FUZZ_CHECK(a.seq >= -1);

        FUZZ_CHECK(chat_parse_args(j, SIZE_MAX, &b) == PR_OK && args_equal(&a, &b));
        json_t *again = rebuild(&a);
        FUZZ_CHECK(chat_parse_args(again, MAX_TEXT, &b) == PR_OK && args_equal(&a, &b));
        json_decref(again);
    }
    json_decref(j);
}

static int env_equal(const chat_env *a, pr_view pa, const chat_env *b, pr_view pb)
{
    return pr_view_eq(a->room, b->room) && pr_view_eq(a->except_socket, b->except_socket) &&
           pr_view_eq(a->except_user, b->except_user) && pr_view_eq(pa, pb);
}

static int within(pr_view v, pr_view in)
{
    return v.len == 0 || (v.ptr >= in.ptr && v.ptr + v.len <= in.ptr + in.len);
}

static void fuzz_env_decode(pr_view in)
{
    chat_env h, h2;
    pr_view p, p2;
    if (chat_env_decode(in, &h, &p) != PR_OK) {
        FUZZ_CHECK(h.room.len == 0 && h.except_socket.len == 0 && h.except_user.len == 0 &&
                   p.len == 0);
        return;
    }
    FUZZ_CHECK(within(h.room, in) && within(h.except_socket, in) && within(h.except_user, in) &&
               within(p, in) && p.len > 0);

    pr_buf b;
    pr_buf_init(&b, in.len);
    FUZZ_CHECK(chat_env_encode(&b, &h, p) == PR_OK);
    FUZZ_CHECK(pr_view_eq(pr_buf_view(&b), in));
    FUZZ_CHECK(chat_env_decode(pr_buf_view(&b), &h2, &p2) == PR_OK);
    FUZZ_CHECK(env_equal(&h, p, &h2, p2));
    pr_buf_dispose(&b);
}

/* Cuts the next NUL-terminated field off *rest (all of it when no NUL). */
static pr_view next_field(pr_view *rest)
{
    const char *nul = rest->len ? memchr(rest->ptr, '\0', rest->len) : NULL;
    size_t n = nul ? (size_t)(nul - rest->ptr) : rest->len;
    pr_view f = pr_view_make(rest->ptr, n);
    rest->ptr += n + (nul != NULL);
    rest->len -= n + (nul != NULL);
    return f;
}

static void fuzz_env_encode(pr_view in)
{
    chat_env h, h2;
    pr_view p2;
    h.room = next_field(&in);
    h.except_socket = next_field(&in);
    h.except_user = next_field(&in);
    pr_view p = in;

    int valid =
        chat_id_valid(h.room.ptr, h.room.len) &&
        (h.except_socket.len == 0 || chat_id_valid(h.except_socket.ptr, h.except_socket.len)) &&
        (h.except_user.len == 0 || chat_id_valid(h.except_user.ptr, h.except_user.len)) &&
        p.len > 0;
    pr_buf b;
    pr_buf_init(&b, SIZE_MAX);
    int rc = chat_env_encode(&b, &h, p);
    FUZZ_CHECK(rc == (valid ? PR_OK : PR_EINVAL));
    if (rc == PR_OK) {
        FUZZ_CHECK(chat_env_decode(pr_buf_view(&b), &h2, &p2) == PR_OK);
        FUZZ_CHECK(env_equal(&h, p, &h2, p2));
    } else {
        FUZZ_CHECK(b.len == 0);
    }
    pr_buf_dispose(&b);
}

/* Decodes in as every storage envelope kind; whatever decodes re-encodes to
 * the same bytes. */
static void fuzz_store(pr_view in)
{
    pr_buf b;
    pr_buf_init(&b, in.len + 64);
    chat_menv m;
    pr_view p, u, r, it, s, j, st;
    char kind;
    int64_t id;

    if (chat_menv_decode(in, &m, &p) == PR_OK) {
        FUZZ_CHECK(chat_env_kind(in) == 'M' && within(p, in));
        FUZZ_CHECK(chat_menv_encode(&b, &m, p) == PR_OK && pr_view_eq(pr_buf_view(&b), in));
    }
    pr_buf_reset(&b);
    if (chat_uenv_begin_decode(in, &u, &it) == PR_OK) {
        int rc;
        FUZZ_CHECK(chat_uenv_begin(&b, u) == PR_OK);
        while ((rc = chat_uenv_next(&it, &p)) == 1)
            FUZZ_CHECK(within(p, in) && chat_uenv_add(&b, p) == PR_OK);
        FUZZ_CHECK(rc == 0 || rc == PR_EINVAL);
        if (rc == 0)
            FUZZ_CHECK(pr_view_eq(pr_buf_view(&b), in));
    }
    pr_buf_reset(&b);
    if (chat_jenv_decode(in, &kind, &r, &u) == PR_OK)
        FUZZ_CHECK(chat_jenv_encode(&b, kind, r, u) == PR_OK && pr_view_eq(pr_buf_view(&b), in));
    pr_buf_reset(&b);
    if (chat_aenv_begin_decode(in, &it) == PR_OK) {
        int rc;
        chat_aenv_begin(&b);
        while ((rc = chat_aenv_next(&it, &s, &id, &j)) == 1)
            FUZZ_CHECK(chat_aenv_add(&b, s, id, j) == PR_OK);
        FUZZ_CHECK(rc == 0 || rc == PR_EINVAL);
        if (rc == 0)
            FUZZ_CHECK(pr_view_eq(pr_buf_view(&b), in));
    }
    pr_buf_reset(&b);
    if (chat_renv_begin_decode(in, &r, &st, &it) == PR_OK) {
        int rc;
        chat_replay_item item;
        FUZZ_CHECK(chat_renv_begin(&b, r, st) == PR_OK);
        while ((rc = chat_renv_next(&it, &item)) == 1)
            FUZZ_CHECK(chat_renv_add(&b, &item) == PR_OK);
        FUZZ_CHECK(rc == 0 || rc == PR_EINVAL);
        if (rc == 0)
            FUZZ_CHECK(pr_view_eq(pr_buf_view(&b), in));
    }
    pr_buf_reset(&b);
    it = in;
    int rc;
    while ((rc = chat_receipt_next(&it, &r, &u, &id)) == 1)
        FUZZ_CHECK(chat_receipt_add(&b, r, u, id) == PR_OK);
    if (rc == 0)
        FUZZ_CHECK(pr_view_eq(pr_buf_view(&b), in));
    pr_buf_reset(&b);
    uint64_t v[8];
    for (unsigned n = 1; n <= 8; n++) {
        if (chat_vec_decode(in, v, n) == PR_OK) {
            pr_buf_reset(&b);
            FUZZ_CHECK(chat_vec_encode(&b, v, n) == PR_OK && pr_view_eq(pr_buf_view(&b), in));
        }
    }
    pr_buf_dispose(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int installed;
    if (!installed) {
        pr_alloc_install_jansson();
        installed = 1;
    }
    if (size == 0)
        return 0;
    pr_view rest = pr_view_make(data + 1, size - 1);
    if (data[0] == 'j')
        fuzz_args(data + 1, size - 1);
    else if (data[0] == 'f')
        fuzz_env_encode(rest);
    else if (data[0] == 's')
        fuzz_store(rest);
    else
        fuzz_env_decode(rest);
    return 0;
}
