/*
 * chat.c - chat event payloads, identifiers and the Redis envelope.
 *
 * Payload keys (the tutorials' camelCase): targetUserId, roomId, text (alias
 * msg), clientMsgId, userId, firstName, lastName, seq.
 */
#include "chat.h"

#include <inttypes.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHAT_ENV_TAG "C1\n"

int chat_id_valid(const char *s, size_t len)
{
    if (len == 0 || len > CHAT_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e)
            return 0;
    }
    return 1;
}

int chat_name_valid(const char *s, size_t len)
{
    if (len > CHAT_NAME_MAX || !pr_utf8_valid(s, len))
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return 0;
        /* C1 controls U+0080..U+009F are C2 80..C2 9F; the UTF-8 is valid,
         * so a C2 always has a continuation byte after it. */
        if (c == 0xc2 && (unsigned char)s[i + 1] <= 0x9f)
            return 0;
    }
    return 1;
}

/*
 * Looks key up. JSON null counts as absent: JavaScript clients send null for
 * "no value" as often as they leave a key out.
 */
static const json_t *field(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

/* An optional string field that must pass valid(); *out stays NULL when absent. */
static int string_field(const json_t *obj, const char *key, int (*valid)(const char *, size_t),
                        const char **out)
{
    const json_t *v = field(obj, key);
    if (v == NULL)
        return PR_OK;
    if (!json_is_string(v) || !valid(json_string_value(v), json_string_length(v)))
        return PR_EINVAL;
    *out = json_string_value(v);
    return PR_OK;
}

/* "text", or "msg" when there is no "text". It may hold newlines, but no NUL:
 * the message ends up in PostgreSQL text, which cannot store one. */
static int text_field(const json_t *obj, size_t max_text, chat_args *out)
{
    const json_t *v = field(obj, "text");
    if (v == NULL)
        v = field(obj, "msg");
    if (v == NULL)
        return PR_OK;
    if (!json_is_string(v))
        return PR_EINVAL;
    size_t len = json_string_length(v);
    if (len > max_text)
        return PR_ETOOBIG;
    const char *s = json_string_value(v);
    if (memchr(s, '\0', len) != NULL)
        return PR_EINVAL;
    out->text = s;
    out->text_len = len;
    return PR_OK;
}

/* "userId": an id string, or an integer that becomes its decimal text. */
static int user_id_field(const json_t *obj, chat_args *out)
{
    const json_t *v = field(obj, "userId");
    if (json_is_integer(v)) {
        snprintf(out->user_id_buf, sizeof out->user_id_buf, "%" JSON_INTEGER_FORMAT,
                 json_integer_value(v));
        out->user_id = out->user_id_buf;
        return PR_OK;
    }
    return string_field(obj, "userId", chat_id_valid, &out->user_id);
}

static int seq_field(const json_t *obj, chat_args *out)
{
    const json_t *v = field(obj, "seq");
    if (v == NULL)
        return PR_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return PR_EINVAL;
    out->seq = json_integer_value(v);
    return PR_OK;
}

int chat_parse_args(const json_t *payload, size_t max_text, chat_args *out)
{
    memset(out, 0, sizeof *out);
    out->seq = -1;
    if (!json_is_object(payload))
        return PR_EINVAL;

    int rc;
    if ((rc = string_field(payload, "targetUserId", chat_id_valid, &out->target_user_id)) ||
        (rc = string_field(payload, "roomId", chat_id_valid, &out->room_id)) ||
        (rc = text_field(payload, max_text, out)) ||
        (rc = string_field(payload, "clientMsgId", chat_id_valid, &out->client_msg_id)) ||
        (rc = user_id_field(payload, out)) ||
        (rc = string_field(payload, "firstName", chat_name_valid, &out->first_name)) ||
        (rc = string_field(payload, "lastName", chat_name_valid, &out->last_name)) ||
        (rc = seq_field(payload, out)))
        return rc;
    return PR_OK;
}

/* ---- envelope ---- */

static int optional_id_valid(pr_view v)
{
    return v.len == 0 || chat_id_valid(v.ptr, v.len);
}

int chat_env_encode(pr_buf *out, const chat_env *h, pr_view packet)
{
    if (!chat_id_valid(h->room.ptr, h->room.len) || !optional_id_valid(h->except_socket) ||
        !optional_id_valid(h->except_user) || packet.len == 0)
        return PR_EINVAL;

    /* Reserve everything first, so a refusal leaves out unchanged. */
    size_t head =
        sizeof CHAT_ENV_TAG - 1 + h->room.len + h->except_socket.len + h->except_user.len + 3;
    if (packet.len > SIZE_MAX - head)
        return PR_ETOOBIG;
    int rc = pr_buf_reserve(out, head + packet.len);
    if (rc != PR_OK)
        return rc;
    pr_buf_append(out, CHAT_ENV_TAG, sizeof CHAT_ENV_TAG - 1);
    pr_buf_append_view(out, h->room);
    pr_buf_append_byte(out, '\n');
    pr_buf_append_view(out, h->except_socket);
    pr_buf_append_byte(out, '\n');
    pr_buf_append_view(out, h->except_user);
    pr_buf_append_byte(out, '\n');
    pr_buf_append_view(out, packet);
    return PR_OK;
}

/*
 * Cuts the line at *pos (advancing past its '\n') into *line. An id is at
 * most CHAT_ID_MAX bytes, so the search for '\n' stops there.
 */
static int env_line(pr_view in, size_t *pos, pr_view *line)
{
    size_t avail = in.len - *pos;
    size_t scan = avail < CHAT_ID_MAX + 1 ? avail : CHAT_ID_MAX + 1;
    const char *start = in.ptr + *pos;
    const char *nl = memchr(start, '\n', scan);
    if (nl == NULL)
        return PR_EINVAL;
    *line = pr_view_make(start, (size_t)(nl - start));
    *pos += line->len + 1;
    return PR_OK;
}

int chat_env_decode(pr_view in, chat_env *h, pr_view *packet)
{
    chat_env e;
    size_t pos = sizeof CHAT_ENV_TAG - 1;

    memset(h, 0, sizeof *h);
    *packet = pr_view_make(NULL, 0);
    if (in.len < pos || memcmp(in.ptr, CHAT_ENV_TAG, pos) != 0)
        return PR_EINVAL;
    if (env_line(in, &pos, &e.room) != PR_OK || env_line(in, &pos, &e.except_socket) != PR_OK ||
        env_line(in, &pos, &e.except_user) != PR_OK)
        return PR_EINVAL;
    if (!chat_id_valid(e.room.ptr, e.room.len) || !optional_id_valid(e.except_socket) ||
        !optional_id_valid(e.except_user) || pos == in.len)
        return PR_EINVAL;
    *h = e;
    *packet = pr_view_make(in.ptr + pos, in.len - pos);
    return PR_OK;
}

/* ---- storage contract (docs/storage.md) ---- */

#define CHAT_NUM_MAX 9007199254740991LL /* 2^53 - 1: exact in JSON numbers */

unsigned chat_room_shard(const char *room, size_t len, unsigned nshards)
{
    return nshards ? pr_fnv1a32(room, len) % nshards : 0;
}

void chat_dm_key(const char *room_secret, const char *jwt_secret, unsigned char key[32])
{
    if (room_secret && room_secret[0])
        SHA256((const unsigned char *)room_secret, strlen(room_secret), key);
    else if (jwt_secret && jwt_secret[0])
        HMAC(EVP_sha256(), jwt_secret, (int)strlen(jwt_secret),
             (const unsigned char *)"chat direct room ids v1", 23, key, NULL);
    else /* insecure-dev without secrets: room ids are guessable, as everything else is */
        SHA256((const unsigned char *)"insecure-dev room ids", 21, key);
}

/* A keyed hash of the sorted pair, so both orders give the same id and
 * nobody can compute it without the key. */
void chat_dm_room_id(const unsigned char key[32], const char *a, const char *b,
                     char out[CHAT_DM_ID_LEN + 1])
{
    if (strcmp(a, b) > 0) {
        const char *t = a;
        a = b;
        b = t;
    }
    /* ids are at most CHAT_ID_MAX bytes; longer input is cut (callers
     * validate ids first, so this only bounds the buffer) */
    char in[2 * CHAT_ID_MAX + 1];
    size_t la = strnlen(a, CHAT_ID_MAX), lb = strnlen(b, CHAT_ID_MAX);
    memcpy(in, a, la);
    in[la] = '\n';
    memcpy(in + la + 1, b, lb);
    unsigned char mac[32];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), key, 32, (const unsigned char *)in, la + 1 + lb, mac, &maclen);
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    memcpy(out, "dm_", 3);
    for (int i = 0; i < 22; i++) /* 132 bits */
        out[3 + i] = b64[mac[i] & 63];
    out[CHAT_DM_ID_LEN] = '\0';
}

/* Strict decimal: "0" or [1-9][0-9]*, optionally "-1" when allow_minus_one;
 * at most CHAT_NUM_MAX. */
static int parse_num(pr_view v, int allow_minus_one, int64_t *out)
{
    if (allow_minus_one && v.len == 2 && v.ptr[0] == '-' && v.ptr[1] == '1') {
        *out = -1;
        return PR_OK;
    }
    if (v.len == 0 || v.len > 16 || (v.ptr[0] == '0' && v.len > 1))
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

/* Cuts *it at the first delim into *field (advancing past delim). max bounds
 * the search (0: unbounded). */
static int take(pr_view *it, char delim, size_t max, pr_view *field)
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

static int take_id(pr_view *it, char delim, pr_view *id)
{
    if (take(it, delim, CHAT_ID_MAX, id) != PR_OK || !chat_id_valid(id->ptr, id->len))
        return PR_EINVAL;
    return PR_OK;
}

static int take_num(pr_view *it, char delim, int allow_minus_one, int64_t *n)
{
    pr_view f;
    if (take(it, delim, 20, &f) != PR_OK)
        return PR_EINVAL;
    return parse_num(f, allow_minus_one, n);
}

static int id_ok(pr_view v)
{
    return chat_id_valid(v.ptr, v.len);
}

int chat_vec_encode(pr_buf *out, const uint64_t *v, unsigned n)
{
    if (n == 0 || n > CHAT_SHARDS_MAX)
        return PR_EINVAL;
    size_t mark = out->len;
    for (unsigned i = 0; i < n; i++) {
        if (v[i] > (uint64_t)CHAT_NUM_MAX ||
            pr_buf_appendf(out, i ? ".%" PRIu64 : "%" PRIu64, v[i]) != PR_OK) {
            out->len = mark;
            return v[i] > (uint64_t)CHAT_NUM_MAX ? PR_EINVAL : PR_ETOOBIG;
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
            if (take(&it, '.', 16, &f) != PR_OK)
                return PR_EINVAL;
        } else {
            f = it;
            it.len = 0;
        }
        if (parse_num(f, 0, &x) != PR_OK)
            return PR_EINVAL;
        v[i] = (uint64_t)x;
    }
    return PR_OK;
}

char chat_env_kind(pr_view in)
{
    if (in.len < 3 || in.ptr[1] != '1' || in.ptr[2] != '\n')
        return 0;
    return strchr("CMUJKAR", in.ptr[0]) && in.ptr[0] ? in.ptr[0] : 0;
}

/* Appends parts[0..n) to out, all or nothing. */
static int append_all(pr_buf *out, const pr_view *parts, unsigned n)
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

static pr_view num_view(char buf[24], int64_t n)
{
    int len = snprintf(buf, 24, "%" PRId64, n);
    return pr_view_make(buf, (size_t)len);
}

int chat_menv_encode(pr_buf *out, const chat_menv *h, pr_view packet)
{
    if (!id_ok(h->room) || !id_ok(h->sender) || h->seq < 1 || h->seq > CHAT_NUM_MAX ||
        h->pos < 1 || h->pos > CHAT_NUM_MAX || h->shard >= CHAT_SHARDS_MAX || packet.len == 0)
        return PR_EINVAL;
    char a[24], b[24], c[24];
    pr_view nl = PR_VIEW_LIT("\n");
    pr_view parts[] = {PR_VIEW_LIT("M1\n"), h->room, nl, num_view(a, h->seq), nl,
                       num_view(b, h->shard), nl, num_view(c, h->pos), nl, h->sender, nl, packet};
    return append_all(out, parts, sizeof parts / sizeof parts[0]);
}

int chat_menv_decode(pr_view in, chat_menv *h, pr_view *packet)
{
    chat_menv e;
    int64_t shard;
    memset(h, 0, sizeof *h);
    *packet = pr_view_make(NULL, 0);
    if (chat_env_kind(in) != 'M')
        return PR_EINVAL;
    pr_view it = pr_view_make(in.ptr + 3, in.len - 3);
    if (take_id(&it, '\n', &e.room) || take_num(&it, '\n', 0, &e.seq) ||
        take_num(&it, '\n', 0, &shard) || take_num(&it, '\n', 0, &e.pos) ||
        take_id(&it, '\n', &e.sender) || it.len == 0 || e.seq < 1 || e.pos < 1 ||
        shard >= CHAT_SHARDS_MAX)
        return PR_EINVAL;
    e.shard = (unsigned)shard;
    *h = e;
    *packet = it;
    return PR_OK;
}

int chat_uenv_encode(pr_buf *out, pr_view user, pr_view packet)
{
    if (!id_ok(user) || packet.len == 0)
        return PR_EINVAL;
    pr_view parts[] = {PR_VIEW_LIT("U1\n"), user, PR_VIEW_LIT("\n"), packet};
    return append_all(out, parts, 4);
}

int chat_uenv_decode(pr_view in, pr_view *user, pr_view *packet)
{
    pr_view u;
    *user = *packet = pr_view_make(NULL, 0);
    if (chat_env_kind(in) != 'U')
        return PR_EINVAL;
    pr_view it = pr_view_make(in.ptr + 3, in.len - 3);
    if (take_id(&it, '\n', &u) || it.len == 0)
        return PR_EINVAL;
    *user = u;
    *packet = it;
    return PR_OK;
}

int chat_jenv_encode(pr_buf *out, char kind, pr_view room, pr_view user)
{
    if ((kind != 'J' && kind != 'K') || !id_ok(room) || !id_ok(user))
        return PR_EINVAL;
    char tag[3] = {kind, '1', '\n'};
    pr_view parts[] = {pr_view_make(tag, 3), room, PR_VIEW_LIT("\n"), user};
    return append_all(out, parts, 4);
}

int chat_jenv_decode(pr_view in, char *kind, pr_view *room, pr_view *user)
{
    char k = chat_env_kind(in);
    pr_view r;
    *kind = 0;
    *room = *user = pr_view_make(NULL, 0);
    if (k != 'J' && k != 'K')
        return PR_EINVAL;
    pr_view it = pr_view_make(in.ptr + 3, in.len - 3);
    if (take_id(&it, '\n', &r) || !id_ok(it))
        return PR_EINVAL;
    *kind = k;
    *room = r;
    *user = it;
    return PR_OK;
}

int chat_aenv_begin(pr_buf *out)
{
    return pr_buf_append(out, "A1\n", 3);
}

/* JSON in an envelope line: not empty, no newline (compact JSON has none). */
static int line_ok(pr_view v)
{
    return v.len > 0 && memchr(v.ptr, '\n', v.len) == NULL;
}

int chat_aenv_add(pr_buf *out, pr_view socket, int64_t ack_id, pr_view json)
{
    if (!id_ok(socket) || ack_id < -1 || ack_id > CHAT_NUM_MAX || !line_ok(json))
        return PR_EINVAL;
    char a[24];
    pr_view tab = PR_VIEW_LIT("\t");
    pr_view parts[] = {socket, tab, num_view(a, ack_id), tab, json, PR_VIEW_LIT("\n")};
    return append_all(out, parts, 6);
}

int chat_aenv_begin_decode(pr_view in, pr_view *it)
{
    *it = pr_view_make(NULL, 0);
    if (chat_env_kind(in) != 'A')
        return PR_EINVAL;
    *it = pr_view_make(in.ptr + 3, in.len - 3);
    return PR_OK;
}

int chat_aenv_next(pr_view *it, pr_view *socket, int64_t *ack_id, pr_view *json)
{
    if (it->len == 0)
        return 0;
    pr_view rest = *it, s, j;
    int64_t id;
    if (take_id(&rest, '\t', &s) || take_num(&rest, '\t', 1, &id) || take(&rest, '\n', 0, &j) ||
        j.len == 0)
        return PR_EINVAL;
    *it = rest;
    *socket = s;
    *ack_id = id;
    *json = j;
    return 1;
}

int chat_renv_begin(pr_buf *out, pr_view req_id, pr_view status)
{
    if (!id_ok(req_id) || !id_ok(status))
        return PR_EINVAL;
    pr_view nl = PR_VIEW_LIT("\n");
    pr_view parts[] = {PR_VIEW_LIT("R1\n"), req_id, nl, status, nl};
    return append_all(out, parts, 5);
}

int chat_renv_add(pr_buf *out, const chat_replay_item *item)
{
    if (item->shard >= CHAT_SHARDS_MAX || item->pos < 1 || item->pos > CHAT_NUM_MAX ||
        item->seq < 1 || item->seq > CHAT_NUM_MAX || !id_ok(item->room) || !line_ok(item->packet))
        return PR_EINVAL;
    char a[24], b[24], c[24];
    pr_view tab = PR_VIEW_LIT("\t");
    pr_view parts[] = {num_view(a, item->shard), tab, num_view(b, item->pos), tab,
                       num_view(c, item->seq), tab, item->room, tab, item->packet,
                       PR_VIEW_LIT("\n")};
    return append_all(out, parts, sizeof parts / sizeof parts[0]);
}

int chat_renv_begin_decode(pr_view in, pr_view *req_id, pr_view *status, pr_view *it)
{
    pr_view r, s;
    *req_id = *status = *it = pr_view_make(NULL, 0);
    if (chat_env_kind(in) != 'R')
        return PR_EINVAL;
    pr_view rest = pr_view_make(in.ptr + 3, in.len - 3);
    if (take_id(&rest, '\n', &r) || take_id(&rest, '\n', &s))
        return PR_EINVAL;
    *req_id = r;
    *status = s;
    *it = rest;
    return PR_OK;
}

int chat_renv_next(pr_view *it, chat_replay_item *item)
{
    if (it->len == 0)
        return 0;
    pr_view rest = *it;
    chat_replay_item x;
    int64_t shard;
    if (take_num(&rest, '\t', 0, &shard) || take_num(&rest, '\t', 0, &x.pos) ||
        take_num(&rest, '\t', 0, &x.seq) || take_id(&rest, '\t', &x.room) ||
        take(&rest, '\n', 0, &x.packet) || x.packet.len == 0 || shard >= CHAT_SHARDS_MAX ||
        x.pos < 1 || x.seq < 1)
        return PR_EINVAL;
    x.shard = (unsigned)shard;
    *it = rest;
    *item = x;
    return 1;
}

int chat_receipt_add(pr_buf *out, pr_view room, pr_view user, int64_t seq)
{
    if (!id_ok(room) || !id_ok(user) || seq < -1 || seq > CHAT_NUM_MAX)
        return PR_EINVAL;
    char a[24];
    pr_view tab = PR_VIEW_LIT("\t");
    pr_view parts[] = {room, tab, user, tab, num_view(a, seq), PR_VIEW_LIT("\n")};
    return append_all(out, parts, 6);
}

int chat_receipt_next(pr_view *it, pr_view *room, pr_view *user, int64_t *seq)
{
    if (it->len == 0)
        return 0;
    pr_view rest = *it, r, u;
    int64_t s;
    if (take_id(&rest, '\t', &r) || take_id(&rest, '\t', &u) || take_num(&rest, '\n', 1, &s))
        return PR_EINVAL;
    *it = rest;
    *room = r;
    *user = u;
    *seq = s;
    return 1;
}
