/*
 * ingest/rooms.c - the room cache (docs/storage.md "The room cache").
 *
 * The owner of a shard is the only writer of its rooms' seq and of their
 * members' watermarks, so it can keep them in memory and decide its batches
 * there (fast.c). What it keeps of a room: last_seq, the version of its member set
 * (room_versions), the
 * members with their delivered and seen watermarks, and who sent each of
 * its last messages (its ring: the senders a watermark move covers); of a
 * shard: its position. A room comes in with a batch that went through
 * chat_batch_load (which reads it back after its writes), and goes out
 * before such a batch, when a statement of fast.c fails, or when the cache
 * holds --room-cache rooms (then all go). The statements of fast.c check
 * that what they decided on still holds (that version, last_seq, the
 * watermarks and shard positions they replace): the cache may be stale,
 * never trusted blindly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"
#include "config.h"
#include "ingest.h"

static pr_view room_key(const pr_map_entry *e)
{
    const st__room *r = (const st__room *)e;
    return pr_view_make(r->id, r->id_len);
}

/* A room whose ring is to be bigger than ST__RING_MIN when next loaded. */
typedef struct {
    pr_map_entry link;
    unsigned cap;
    size_t len;
    char id[]; /* not NUL-terminated */
} ring_size;

/* Rooms with a bigger ring, at most: beyond, all go back to the least. */
#define RINGS_MAX 65536

static pr_view ring_key(const pr_map_entry *e)
{
    const ring_size *x = (const ring_size *)e;
    return pr_view_make(x->id, x->len);
}

void st__rooms_init(st_ingest *g)
{
    pr_map_init(&g->rooms, 1024, room_key);
    pr_map_init(&g->rings, 64, ring_key);
    g->load_ring = ST__RING_MIN;
}

static void rings_clear(st_ingest *g)
{
    pr_map_iter it = pr_map_iter_make(&g->rings);
    for (pr_map_entry *e; (e = pr_map_next(&it));) {
        pr_map_remove(&g->rings, e);
        pr_free(e);
    }
}

static unsigned ring_of(st_ingest *g, const char *id, size_t len)
{
    const ring_size *x = (const ring_size *)pr_map_find(&g->rings, pr_view_make(id, len));
    return x ? x->cap : ST__RING_MIN;
}

void st__rooms_ring_short(st_ingest *g, const st__room *r)
{
    if (r->ring_cap >= ST__RING_MAX)
        return;
    ring_size *x = (ring_size *)pr_map_find(&g->rings, pr_view_make(r->id, r->id_len));
    if (!x) {
        if (g->rings.n >= RINGS_MAX)
            rings_clear(g);
        x = pr_malloc(sizeof *x + r->id_len);
        x->len = r->id_len;
        memcpy(x->id, r->id, r->id_len);
        x->cap = ST__RING_MIN;
        pr_map_insert(&g->rings, &x->link);
    }
    if (x->cap < 2 * r->ring_cap)
        x->cap = 2 * r->ring_cap;
    CM_DEBUG("event=room_ring_grown room=%s size=%u", r->id, x->cap);
}

const char *st__rooms_ring_text(st_ingest *g)
{
    static char text[16];
    snprintf(text, sizeof text, "%u", g->load_ring);
    return text;
}

static void room_free(st__room *r)
{
    for (unsigned i = 0; i < r->nm; i++)
        pr_free(r->m[i].user);
    pr_free(r->m);
    pr_free(r->ring);
    pr_free(r->id);
    pr_free(r);
}

void st__rooms_drop(st_ingest *g, st__room *r)
{
    pr_map_remove(&g->rooms, &r->link);
    room_free(r);
}

void st__rooms_clear(st_ingest *g)
{
    pr_map_iter it = pr_map_iter_make(&g->rooms);
    for (pr_map_entry *e; (e = pr_map_next(&it));)
        st__rooms_drop(g, (st__room *)e);
    for (unsigned s = 0; s < g->nshards; s++)
        g->shards[s].pos_known = 0;
}

void st__rooms_dispose(st_ingest *g)
{
    st__rooms_clear(g);
    rings_clear(g);
    pr_map_dispose(&g->rooms);
    pr_map_dispose(&g->rings);
}

st__room *st__rooms_find(st_ingest *g, const char *id)
{
    return (st__room *)pr_map_find(&g->rooms, pr_view_make(id, strlen(id)));
}

static int member_cmp(const void *a, const void *b)
{
    return strcmp(((const st__member *)a)->user, ((const st__member *)b)->user);
}

st__member *st__room_member(st__room *r, const char *user)
{
    st__member key = {.user = (char *)user};
    return r->nm ? bsearch(&key, r->m, r->nm, sizeof *r->m, member_cmp) : NULL;
}

void st__room_ring_add(st__room *r, int64_t seq, int m)
{
    unsigned at;
    if (r->ring_n == r->ring_cap) {
        /* the oldest goes: the ring now starts above it */
        r->ring_from = r->ring[r->ring_head].seq;
        at = r->ring_head;
        r->ring_head = (r->ring_head + 1) % r->ring_cap;
    } else {
        at = (r->ring_head + r->ring_n++) % r->ring_cap;
    }
    r->ring[at].seq = seq;
    r->ring[at].m = m;
}

void st__arr_text(pr_buf *a, const char *s, size_t len)
{
    pr_buf_append_byte(a, a->len && a->ptr[a->len - 1] != '{' ? ',' : '{');
    if (!s) {
        pr_buf_append(a, "NULL", 4);
        return;
    }
    pr_buf_append_byte(a, '"');
    size_t from = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            pr_buf_append(a, s + from, i - from);
            pr_buf_append_byte(a, '\\');
            from = i;
        }
    }
    pr_buf_append(a, s + from, len - from);
    pr_buf_append_byte(a, '"');
}

void st__arr_int(pr_buf *a, int64_t v)
{
    char tmp[24], *p = tmp + sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do
        *--p = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        *--p = '-';
    *--p = a->len && a->ptr[a->len - 1] != '{' ? ',' : '{';
    pr_buf_append(a, p, (size_t)(tmp + sizeof tmp - p));
}

void st__arr_end(pr_buf *a)
{
    if (a->len == 0)
        pr_buf_append_byte(a, '{');
    pr_buf_append(a, "}", 2); /* with the NUL libpq wants */
}

static void forget_room(st_ingest *g, const char *id, pr_buf *rooms)
{
    size_t len = strlen(id);
    st__room *r = st__rooms_find(g, id);
    if (r)
        st__rooms_drop(g, r);
    st__arr_text(rooms, id, len);
    unsigned cap = ring_of(g, id, len);
    if (cap > g->load_ring)
        g->load_ring = cap;
}

void st__rooms_forget_batch(st_ingest *g, const st__batch *b, pr_buf *rooms, pr_buf *shards)
{
    int listed[CHAT_SHARDS_MAX] = {0};
    g->load_ring = ST__RING_MIN;
    for (size_t i = 0; i < b->n; i++) {
        const entry *e = b->e[i];
        if (!listed[e->shard]) {
            listed[e->shard] = 1;
            g->shards[e->shard].pos_known = 0;
            st__arr_int(shards, e->shard);
        }
        if ((e->kind == 'm' || e->kind == 'o') && e->r)
            forget_room(g, e->r, rooms);
        else if (e->kind == 'R' && e->status != ST_E_INVALID)
            for (unsigned k = 0; k < e->nrc; k++)
                forget_room(g, e->rl[k].room, rooms);
    }
    st__arr_end(rooms);
    st__arr_end(shards);
}

void st__rooms_load(st_ingest *g, PGresult *res)
{
    int rows = PQntuples(res), nnew = 0;
    for (int i = 0; i < rows; i++) {
        const char *k = st__col(res, i, ST__COL_K);
        nnew += k && k[0] == 'r';
    }
    if (nnew && g->rooms.n + (size_t)nnew > g->c->cfg->room_cache) {
        CM_INFO("event=room_cache_full rooms=%zu", g->rooms.n);
        st__rooms_clear(g);
        if ((size_t)nnew > g->c->cfg->room_cache)
            return;
    }
    st__room **loaded = pr_malloc((size_t)(nnew ? nnew : 1) * sizeof *loaded);
    int n = 0;
    /* the rooms first, then their members, then (members sorted) the
     * senders of their last messages */
    for (int i = 0; i < rows && n < nnew; i++) {
        const char *k = st__col(res, i, ST__COL_K), *id = st__col(res, i, ST__COL_ROOM),
                   *seq = st__col(res, i, ST__COL_SEQ), *ver = st__col(res, i, ST__COL_ID);
        if (!k || k[0] != 'r' || !id || !seq || !ver || st__rooms_find(g, id))
            continue;
        st__room *r = pr_calloc(1, sizeof *r);
        r->id_len = strlen(id);
        r->id = pr_strndup(id, r->id_len);
        r->last_seq = strtoll(seq, NULL, 10);
        r->version = strtoll(ver, NULL, 10);
        r->ring_cap = ring_of(g, r->id, r->id_len);
        r->ring = pr_malloc(r->ring_cap * sizeof *r->ring);
        r->ring_from = r->last_seq > r->ring_cap ? r->last_seq - r->ring_cap : 0;
        pr_map_insert(&g->rooms, &r->link);
        loaded[n++] = r;
    }
    for (int i = 0; i < rows; i++) {
        const char *k = st__col(res, i, ST__COL_K), *id = st__col(res, i, ST__COL_ROOM),
                   *usr = st__col(res, i, ST__COL_USR), *d = st__col(res, i, ST__COL_ID),
                   *s = st__col(res, i, ST__COL_SEQ);
        st__room *r;
        if (!k || k[0] != 'c' || !id || !usr || !d || !s || !(r = st__rooms_find(g, id)))
            continue;
        if ((r->nm & (r->nm - 1)) == 0) /* 0, 1, 2, 4, ...: grow */
            r->m = pr_realloc(r->m, (r->nm ? 2 * r->nm : 1) * sizeof *r->m);
        r->m[r->nm++] = (st__member){.user = pr_strndup(usr, strlen(usr)),
                                     .d = strtoll(d, NULL, 10),
                                     .s = strtoll(s, NULL, 10)};
    }
    for (int i = 0; i < n; i++)
        if (loaded[i]->nm > 1)
            qsort(loaded[i]->m, loaded[i]->nm, sizeof *loaded[i]->m, member_cmp);
    pr_free(loaded);
    for (int i = 0; i < rows; i++) {
        const char *k = st__col(res, i, ST__COL_K), *id = st__col(res, i, ST__COL_ROOM),
                   *usr = st__col(res, i, ST__COL_USR), *seq = st__col(res, i, ST__COL_SEQ);
        st__room *r;
        if (!k || k[0] != 'h' || !id || !usr || !seq || !(r = st__rooms_find(g, id)))
            continue;
        st__member *m = st__room_member(r, usr);
        st__room_ring_add(r, strtoll(seq, NULL, 10), m ? (int)(m - r->m) : -1);
    }
    for (int i = 0; i < rows; i++) {
        const char *k = st__col(res, i, ST__COL_K), *sh = st__col(res, i, ST__COL_SHARD),
                   *pos = st__col(res, i, ST__COL_POS);
        if (!k || k[0] != 'p' || !sh || !pos)
            continue;
        unsigned s = (unsigned)strtoul(sh, NULL, 10);
        if (s < g->nshards) {
            g->shards[s].pos = strtoll(pos, NULL, 10);
            g->shards[s].pos_known = 1;
        }
    }
}
