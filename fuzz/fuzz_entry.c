/*
 * fuzz_entry.c - chat-storage's parser of ingest stream entries
 * (storage/entry.c over proto/chat_entry.c's chat_entry_parse). A gateway or anything
 * else with access to Redis writes them, so nothing in one may crash storage
 * or leak into its SQL.
 *
 * Input: the entry's field/value strings separated by NUL bytes (at most 64),
 * wrapped as XREADGROUP returns them: [id, [f1, v1, f2, v2, ...]].
 *
 * Oracles: an entry always comes back (it has an id, so it can be acked);
 * a message accepted for storage has valid ids, a valid name and UTF-8 text
 * without NUL; the JSON built for chat_batch always parses, with at most one
 * message.
 */
#include <jansson.h>
#include <string.h>

#include "chat.h"
#include "entry.h"
#include "fuzz.h"

#define MAX_FIELDS 64

static void check_json_array(const pr_buf *b, size_t max_items)
{
    json_error_t err;
    /* NUL-terminated for libpq, the NUL counted in len */
    FUZZ_CHECK(b->len > 0 && b->ptr[b->len - 1] == '\0');
    json_t *j = json_loadb(b->ptr, b->len - 1, 0, &err);
    FUZZ_CHECK(json_is_array(j));
    FUZZ_CHECK(json_array_size(j) <= max_items);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int installed;
    if (!installed) {
        pr_alloc_install_jansson();
        installed = 1;
    }
    redisReply fields[MAX_FIELDS], *fieldp[MAX_FIELDS];
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= size && n < MAX_FIELDS; i++) {
        if (i == size || data[i] == '\0') {
            memset(&fields[n], 0, sizeof fields[n]);
            fields[n].type = REDIS_REPLY_STRING;
            fields[n].str = (char *)(data + start);
            fields[n].len = i - start;
            fieldp[n] = &fields[n];
            n++;
            start = i + 1;
        }
    }
    redisReply id = {.type = REDIS_REPLY_STRING, .str = (char *)"1700000000000-0", .len = 15};
    redisReply list = {.type = REDIS_REPLY_ARRAY, .elements = n, .element = fieldp};
    redisReply *pair[2] = {&id, &list};
    redisReply item = {.type = REDIS_REPLY_ARRAY, .elements = 2, .element = pair};
    unsigned char key[32];
    chat_dm_key("fuzz", NULL, key);

    /* the first byte picks the shard the entry was read from */
    unsigned shard = size ? data[0] % 8 : 0;
    st__entry *e = st__entry_parse(&item, shard, 8, key);
    FUZZ_CHECK(e != NULL);
    if (!e)
        return 0;
    if (e->kind == 'm' && e->status == ST_E_NONE) {
        FUZZ_CHECK(e->r && chat_id_valid(e->r, strlen(e->r)));
        FUZZ_CHECK(e->u && chat_id_valid(e->u, strlen(e->u)));
        FUZZ_CHECK(e->n && chat_name_valid(e->n, strlen(e->n)));
        FUZZ_CHECK(e->x && pr_utf8_valid(e->x, e->x_len) && !memchr(e->x, '\0', e->x_len));
        FUZZ_CHECK(e->x_len <= CHAT_ENTRY_TEXT_MAX);
    }
    pr_buf msgs, rcpts;
    pr_buf_init(&msgs, SIZE_MAX);
    pr_buf_init(&rcpts, SIZE_MAX);
    st__entry *const one[1] = {e};
    if (st__entry_batch_json(one, 1, &msgs, &rcpts) == 0) {
        check_json_array(&msgs, 1);
        check_json_array(&rcpts, SIZE_MAX);
    }
    pr_buf_dispose(&msgs);
    pr_buf_dispose(&rcpts);
    st__entry_free(e);
    return 0;
}
