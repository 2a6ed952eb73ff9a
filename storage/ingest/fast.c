/*
 * ingest/fast.c - a batch decided in memory and written set-based
 * (docs/storage.md "The room cache"; decision 51).
 *
 * When every room of a batch is in the room cache (rooms.c), the owner
 * makes chat_batch's decisions itself, in chat_batch's order and with its
 * results: the receipts first (clamped, coalesced per member, logged, their
 * messageStatus events), then the messages (duplicates within the batch,
 * membership, the next seq and shard position), then each room's first
 * sender's own move and its events. The cache is updated as it goes, as if
 * the batch commits. One prepared statement then writes it all, each table
 * once, from arrays: the messages, the rooms' and shards' counters, the
 * members' watermarks (one row per member and batch), the watermark log;
 * and checks that what the plan stood on still holds: each counter and
 * watermark it replaces is the one it read, each room's member-set version
 * (room_versions) is the cached one, no message collides with a stored one (a clientMsgId
 * retried across batches, a deposed owner's seq). If not, chat__fast_check
 * raises, the transaction writes nothing, the batch's rooms are forgotten
 * and the batch goes again through chat_batch_load (commit.c), which
 * answers the retry as 'dup' and reloads the rooms. A plan that cannot be
 * made in memory (a move reaching behind a room's ring of senders, an
 * event for a sender who is no longer a member, a message with a
 * clientMsgId from one who is not a member: it may be the retry of a
 * message stored before they left, which chat_ingest answers first) goes
 * the same way before anything is sent. A message without a clientMsgId
 * from a non-member is refused in memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cm_clock.h"
#include "cm_log.h"
#include "config.h"
#include "ingest.h"

/* The statement's parameters ($1..$NP): see FAST_SQL. */
enum {
    P_M_ROOM, P_M_SEQ, P_M_SHARD, P_M_POS, P_M_SENDER, P_M_CMID, P_M_FIRST, P_M_LAST, P_M_BODY,
    P_M_AT,
    P_R_ID, P_R_OLD, P_R_NEW,
    P_S_ID, P_S_OLD, P_S_NEW,
    P_W_ROOM, P_W_USER, P_W_OD, P_W_OS, P_W_ND, P_W_NS,
    P_L_ROOM, P_L_USER, P_L_KIND, P_L_SEQ,
    P_V_ID, P_V_VER,
    NP
};

/* Every table is reached from the batch's arrays, one index probe per
 * element, whatever the plan: the statement is planned once per connection
 * (a generic plan), maybe while its tables hold a row or two, and a plan
 * made then must not scan a whole table for each batch later (it did: the
 * rooms' update, planned on a one-row table, scanned every room). So the
 * rows to update are found by a scalar subquery per element (their ctid:
 * the update is a TID scan), the shards (at most CHAT_SHARDS_MAX) by = ANY,
 * and the version check is per element too. A row updated concurrently
 * has another ctid by then: the update skips it, the counts differ, and
 * chat__fast_check refuses the batch. */
static const char FAST_SQL[] =
    "WITH m AS ("
    " INSERT INTO messages (id, room_id, seq, shard, shard_pos, sender_id, client_msg_id,"
    "                       first_name, last_name, body, created_at)"
    " SELECT nextval('message_ids'), u.r, u.q, u.sh, u.p, u.s, u.c, u.n, u.l, u.x, $10::timestamptz"
    "   FROM unnest($1::text[], $2::bigint[], $3::int[], $4::bigint[], $5::text[], $6::text[],"
    "               $7::text[], $8::text[], $9::text[]) AS u (r, q, sh, p, s, c, n, l, x)"
    "     ON CONFLICT DO NOTHING"
    " RETURNING room_id, seq, id"
    "), r AS ("
    " UPDATE rooms SET last_seq = t.n, last_at = now()"
    "   FROM (SELECT u.*, (SELECT ro.ctid FROM rooms ro WHERE ro.id = u.id) AS tid"
    "           FROM unnest($11::text[], $12::bigint[], $13::bigint[]) AS u (id, o, n)) t"
    "  WHERE rooms.ctid = t.tid AND rooms.last_seq = t.o"
    " RETURNING 1"
    "), s AS ("
    " UPDATE shards SET pos = u.n"
    "   FROM unnest($14::int[], $15::bigint[], $16::bigint[]) AS u (id, o, n)"
    "  WHERE shards.id = ANY ($14::int[]) AND shards.id = u.id AND shards.pos = u.o"
    " RETURNING 1"
    "), w AS ("
    " UPDATE room_members rm SET delivered_seq = t.nd, seen_seq = t.ns"
    "   FROM (SELECT u.*, (SELECT c.ctid FROM room_members c"
    "                       WHERE c.room_id = u.r AND c.user_id = u.m) AS tid"
    "           FROM unnest($17::text[], $18::text[], $19::bigint[], $20::bigint[],"
    "                       $21::bigint[], $22::bigint[]) AS u (r, m, od, os, nd, ns)) t"
    "  WHERE rm.ctid = t.tid AND rm.delivered_seq = t.od AND rm.seen_seq = t.os"
    " RETURNING 1"
    "), l AS ("
    " INSERT INTO watermarks (room_id, user_id, kind, seq)"
    " SELECT * FROM unnest($23::text[], $24::text[], $25::\"char\"[], $26::bigint[])"
    "     ON CONFLICT DO NOTHING"
    "), v AS ("
    " SELECT count(*) AS n FROM unnest($27::text[], $28::bigint[]) AS u (id, ver)"
    "  WHERE (SELECT count(*) FROM rooms ro WHERE ro.id = u.id) = 1"
    "    AND coalesce((SELECT x.v FROM room_versions x WHERE x.room_id = u.id), 0) = u.ver"
    ")"
    "SELECT m.room_id, m.seq, m.id"
    "  FROM (SELECT chat__fast_check((SELECT count(*) FROM m) = cardinality($1::text[])"
    "           AND (SELECT count(*) FROM r) = cardinality($11::text[])"
    "           AND (SELECT count(*) FROM s) = cardinality($14::int[])"
    "           AND (SELECT count(*) FROM w) = cardinality($17::text[])"
    "           AND (SELECT v.n FROM v) = cardinality($27::text[])) AS ok) k"
    "  LEFT JOIN m ON k.ok";

/* The statement's parameters, built by one plan at a time and copied by
 * libpq when sent: one set for the process, reused (the loop is single
 * threaded). */
static pr_buf param_bufs[NP];
static int params_ready;

typedef struct {
    st__room *r;
    int m; /* member index */
    int64_t od, os, nd, ns;
} move;

typedef struct {
    st__room *r;
    int m;
} member_ref;

struct st__fast {
    unsigned stamp;
    size_t n;     /* entries of the batch */
    int *status;  /* per entry: what became of a message (ST_E_NONE: not one) */
    int *first;   /* per entry: the earlier one it repeats, or -1 */
    st__room **rooms; /* while planning; then only their ids (other lanes'
                       * loads may clear the cache meanwhile) */
    size_t nrooms;
    char **ids;
    member_ref *members;
    size_t nmembers;
    unsigned shards[CHAT_SHARDS_MAX];
    unsigned nshards;
    move *moves;
    size_t nmoves, movecap;
    st__event *ev;
    size_t nev, evcap;
    char **evmem; /* one allocation per event: its strings */
    char created[48];
    pr_buf *p; /* the statement's parameters (param_bufs), while planning */
    size_t nlog;
};

static void *grow(void *a, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return a;
    *cap = *cap ? 2 * *cap : 16;
    return pr_realloc(a, *cap * size);
}

void st__fast_free(st__fast *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->nev; i++)
        pr_free(f->evmem[i]);
    pr_free(f->evmem);
    pr_free(f->ev);
    pr_free(f->moves);
    pr_free(f->members);
    pr_free(f->rooms);
    if (f->ids)
        for (size_t i = 0; i < f->nrooms; i++)
            pr_free(f->ids[i]);
    pr_free(f->ids);
    pr_free(f->status);
    pr_free(f->first);
    pr_free(f);
}

const st__event *st__fast_events(const st__fast *f, size_t *n)
{
    *n = f->nev;
    return f->ev;
}

static void touch_room(st__fast *f, st__room *r)
{
    if (r->stamp == f->stamp)
        return;
    r->stamp = f->stamp;
    r->old_last = r->last_seq;
    r->mv_m = -1;
    r->mv_open = 0;
    f->rooms = pr_realloc(f->rooms, (f->nrooms + 1) * sizeof *f->rooms);
    f->rooms[f->nrooms++] = r;
}

static void touch_member(st__fast *f, st__room *r, int mi)
{
    st__member *m = &r->m[mi];
    if (m->stamp == f->stamp)
        return;
    m->stamp = f->stamp;
    m->od = m->d;
    m->os = m->s;
    f->members = pr_realloc(f->members, (f->nmembers + 1) * sizeof *f->members);
    f->members[f->nmembers++] = (member_ref){r, mi};
}

static void add_log(st__fast *f, const st__room *r, const st__member *m, char kind, int64_t seq)
{
    st__arr_text(&f->p[P_L_ROOM], r->id, r->id_len);
    st__arr_text(&f->p[P_L_USER], m->user, strlen(m->user));
    st__arr_text(&f->p[P_L_KIND], &kind, 1);
    st__arr_int(&f->p[P_L_SEQ], seq);
    f->nlog++;
}

static void add_move(st__fast *f, st__room *r, int mi, int64_t od, int64_t os)
{
    f->moves = grow(f->moves, &f->movecap, f->nmoves, sizeof *f->moves);
    f->moves[f->nmoves++] = (move){r, mi, od, os, r->m[mi].d, r->m[mi].s};
}

/* v (member i's) into the lowest *min (held by *arg) and second lowest. */
static void track_min(int64_t v, int i, int64_t *min, int64_t *min2, int *arg)
{
    if (v < *min) {
        *min2 = *min;
        *min = v;
        *arg = i;
    } else if (v < *min2) {
        *min2 = v;
    }
}

/* The two lowest watermarks of r's members and who holds the lowest, for
 * the aggregates of this phase (stamp): min over the members but one. */
static void room_mins(st__room *r, unsigned stamp)
{
    if (r->agg_stamp == stamp)
        return;
    r->agg_stamp = stamp;
    r->min_s = r->min2_s = r->min_d = r->min2_d = INT64_MAX;
    r->arg_s = r->arg_d = -1;
    for (unsigned i = 0; i < r->nm; i++) {
        track_min(r->m[i].s, (int)i, &r->min_s, &r->min2_s, &r->arg_s);
        track_min(r->m[i].d, (int)i, &r->min_d, &r->min2_d, &r->arg_d);
    }
}

/* chat_aggregate: the lowest status of message seq of sender xi over the
 * other members (none: sent). */
static const char *aggregate(const st__room *r, int xi, int64_t seq)
{
    if (r->nm <= 1)
        return "sent";
    int64_t s = r->arg_s == xi ? r->min2_s : r->min_s;
    int64_t d = r->arg_d == xi ? r->min2_d : r->min_d;
    return s >= seq ? "seen" : d >= seq ? "delivered" : "sent";
}

static void add_event(st__fast *f, const st__room *r, int member, const char *status, int sender,
                      int64_t seq, const char *agg)
{
    if (!strcmp(status, "delivered") && !strcmp(agg, "seen"))
        agg = "delivered"; /* its seen has not been told yet */
    const char *mu = r->m[member].user, *su = r->m[sender].user;
    size_t lr = r->id_len + 1, lm = strlen(mu) + 1, ls = strlen(su) + 1;
    char *mem = pr_malloc(lr + lm + ls);
    memcpy(mem, r->id, lr);
    memcpy(mem + lr, mu, lm);
    memcpy(mem + lr + lm, su, ls);
    f->ev = grow(f->ev, &f->evcap, f->nev, sizeof *f->ev);
    f->evmem = pr_realloc(f->evmem, f->evcap * sizeof *f->evmem);
    f->evmem[f->nev] = mem;
    f->ev[f->nev++] = (st__event){mem, mem + lr, status, mem + lr + lm, agg, seq};
}

static int event_cmp(const void *a, const void *b)
{
    const st__event *x = a, *y = b;
    int c = strcmp(x->room, y->room);
    if (!c)
        c = strcmp(x->sender, y->sender);
    if (!c)
        c = strcmp(x->member, y->member);
    if (!c) /* delivered before seen */
        c = (x->status[0] == 's') - (y->status[0] == 's');
    if (!c)
        c = (x->seq > y->seq) - (x->seq < y->seq);
    return c;
}

/* The events of one range (lo, hi] of r moved by member mi (chat__events):
 * each other sender's latest message there. -1 when the ring does not
 * reach back to lo, or a sender there is no member now. */
static int range_events(st__fast *f, st_ingest *g, st__room *r, int mi, int64_t lo, int64_t hi,
                        const char *status)
{
    if (lo < r->ring_from) {
        st__rooms_ring_short(g, r);
        return -1;
    }
    unsigned es = ++g->stamp; /* this range's marks */
    for (unsigned k = 0; k < r->ring_n; k++) {
        unsigned at = (r->ring_head + k) % r->ring_cap;
        int64_t seq = r->ring[at].seq;
        int x = r->ring[at].m;
        if (seq <= lo || seq > hi || x == mi)
            continue;
        if (x < 0)
            return -1;
        st__member *m = &r->m[x];
        if (m->ev_stamp != es || seq > m->ev_seq) {
            m->ev_stamp = es;
            m->ev_seq = seq;
        }
    }
    for (unsigned x = 0; x < r->nm; x++)
        if (r->m[x].ev_stamp == es)
            add_event(f, r, mi, status, (int)x, r->m[x].ev_seq,
                      aggregate(r, (int)x, r->m[x].ev_seq));
    return 0;
}

/* The events of moves [from, nmoves), after all of them were applied:
 * sorted as chat__events sorts them. */
static int moves_events(st__fast *f, st_ingest *g, size_t from)
{
    unsigned phase = ++g->stamp;
    size_t ev0 = f->nev;
    for (size_t i = from; i < f->nmoves; i++) {
        move *v = &f->moves[i];
        room_mins(v->r, phase);
        if (v->ns > v->os && range_events(f, g, v->r, v->m, v->os, v->ns, "seen") != 0)
            return -1;
        if (v->nd > v->od && range_events(f, g, v->r, v->m, v->od, v->nd, "delivered") != 0)
            return -1;
    }
    if (f->nev > ev0)
        qsort(f->ev + ev0, f->nev - ev0, sizeof *f->ev, event_cmp);
    return 0;
}

/* chat_receipts: per member, its lines' highest delivered and seen (-1:
 * everything), clamped to the room's last seq, never back. */
static int plan_receipts(st__fast *f, st_ingest *g, st__batch *b)
{
    member_ref *req = NULL;
    size_t nreq = 0, cap = 0;
    for (size_t i = 0; i < b->n; i++) {
        const entry *e = b->e[i];
        if (e->kind != 'R' || e->status == ST_E_INVALID)
            continue;
        for (unsigned k = 0; k < e->nrc; k++) {
            const st__rline *l = &e->rl[k];
            st__room *r = st__rooms_find(g, l->room);
            touch_room(f, r);
            st__member *m = st__room_member(r, l->user);
            if (!m)
                continue; /* members only */
            if (m->rq_stamp != f->stamp) {
                m->rq_stamp = f->stamp;
                m->rq_d = m->rq_s = 0;
                m->rq_all = 0;
                req = grow(req, &cap, nreq, sizeof *req);
                req[nreq++] = (member_ref){r, (int)(m - r->m)};
            }
            if (l->kind == 'd')
                m->rq_d = l->seq > m->rq_d ? l->seq : m->rq_d;
            else if (l->seq < 0)
                m->rq_all = 1;
            else
                m->rq_s = l->seq > m->rq_s ? l->seq : m->rq_s;
        }
    }
    for (size_t i = 0; i < nreq; i++) {
        st__room *r = req[i].r;
        st__member *m = &r->m[req[i].m];
        int64_t last = r->last_seq;
        int64_t ns = m->rq_all ? last : (m->rq_s < last ? m->rq_s : last);
        int64_t nd = m->rq_d < last ? m->rq_d : last;
        if (!(nd > m->d || ns > m->s))
            continue;
        int64_t od = m->d, os = m->s;
        touch_member(f, r, req[i].m);
        m->d = od > nd ? od : nd;
        if (ns > m->d)
            m->d = ns;
        if (ns > m->s)
            m->s = ns;
        if (m->d > od && m->d > m->s)
            add_log(f, r, m, 'd', m->d);
        if (m->s > os)
            add_log(f, r, m, 's', m->s);
        add_move(f, r, req[i].m, od, os);
    }
    pr_free(req);
    return moves_events(f, g, 0);
}

/* The first messages of a batch by (sender, room, clientMsgId): an open
 * addressing table of entry indexes (-1: empty), twice the batch's size. */
typedef struct {
    int *slot;
    size_t mask;
} firsts;

static uint64_t key_hash(const entry *e)
{
    uint64_t h = pr_fnv1a64(e->u, strlen(e->u));
    h = h * 1099511628211u ^ pr_fnv1a64(e->r, strlen(e->r));
    return h * 1099511628211u ^ pr_fnv1a64(e->c, strlen(e->c));
}

/* The earlier message of this batch with e's (sender, room, clientMsgId),
 * or -1 (then e, if it has a clientMsgId, is recorded as the first). */
static int earlier(const st__batch *b, firsts *t, size_t i)
{
    const entry *e = b->e[i];
    if (!e->c)
        return -1;
    size_t k = (size_t)key_hash(e) & t->mask;
    for (; t->slot[k] >= 0; k = (k + 1) & t->mask) {
        const entry *x = b->e[t->slot[k]];
        if (!strcmp(x->c, e->c) && !strcmp(x->u, e->u) && !strcmp(x->r, e->r))
            return t->slot[k];
    }
    t->slot[k] = (int)i;
    return -1;
}

/* chat_ingest: each message's fate, seq and shard position. -1 when one
 * cannot be decided here: a sender who is no member, with a clientMsgId
 * (chat_ingest answers a stored (sender, room, clientMsgId) before it
 * looks at membership: a retry of a message stored before the sender left
 * is 'dup', another text 'reused'; only the database knows). */
static int plan_messages(st__fast *f, st_ingest *g, st__batch *b)
{
    firsts t;
    t.mask = 15;
    while (t.mask + 1 < 2 * b->n)
        t.mask = 2 * t.mask + 1;
    t.slot = pr_malloc((t.mask + 1) * sizeof *t.slot);
    memset(t.slot, 0xff, (t.mask + 1) * sizeof *t.slot); /* all -1 */
    for (size_t i = 0; i < b->n; i++) {
        entry *e = b->e[i];
        if (e->kind == 'o' && e->status == ST_E_NONE) {
            touch_room(f, st__rooms_find(g, e->r));
            continue;
        }
        if (e->kind != 'm' || e->status != ST_E_NONE)
            continue;
        st__room *r = st__rooms_find(g, e->r);
        touch_room(f, r);
        int j = earlier(b, &t, i);
        if (j >= 0) {
            const entry *x = b->e[j];
            f->first[i] = j;
            f->status[i] = x->x_len != e->x_len || memcmp(x->x, e->x, e->x_len) != 0
                               ? ST_E_REUSED
                           : f->status[j] == ST_E_NEW ? ST_E_DUP
                                                      : f->status[j];
            continue;
        }
        st__member *m = st__room_member(r, e->u);
        if (!m && e->c) {
            pr_free(t.slot);
            return -1;
        }
        if (!m) {
            f->status[i] = ST_E_FORBIDDEN;
            continue;
        }
        int mi = (int)(m - r->m);
        st__shard *sh = &g->shards[e->shard];
        if (sh->pos_stamp != f->stamp) {
            sh->pos_stamp = f->stamp;
            sh->pos_old = sh->pos;
            f->shards[f->nshards++] = e->shard;
        }
        f->status[i] = ST_E_NEW;
        e->seq = ++r->last_seq;
        e->pos = ++sh->pos;
        e->rshard = e->shard;
        memcpy(e->created, f->created, sizeof e->created);
        e->created[sizeof e->created - 1] = '\0';
        st__room_ring_add(r, e->seq, mi);
        /* the run of the first sender opening the room's new messages */
        if (r->mv_m < 0) {
            r->mv_m = mi;
            r->mv_seq = e->seq;
            r->mv_open = 1;
        } else if (r->mv_open && r->mv_m == mi) {
            r->mv_seq = e->seq;
        } else {
            r->mv_open = 0;
        }
        st__arr_text(&f->p[P_M_ROOM], e->r, strlen(e->r));
        st__arr_int(&f->p[P_M_SEQ], e->seq);
        st__arr_int(&f->p[P_M_SHARD], e->shard);
        st__arr_int(&f->p[P_M_POS], e->pos);
        st__arr_text(&f->p[P_M_SENDER], e->u, strlen(e->u));
        st__arr_text(&f->p[P_M_CMID], e->c, e->c ? strlen(e->c) : 0);
        st__arr_text(&f->p[P_M_FIRST], e->n ? e->n : "", e->n ? strlen(e->n) : 0);
        st__arr_text(&f->p[P_M_LAST], e->l, e->l ? strlen(e->l) : 0);
        st__arr_text(&f->p[P_M_BODY], e->x, e->x_len);
    }
    pr_free(t.slot);
    return 0;
}

/* chat_batch's senders' moves: each room's first sender, over its run of
 * new messages, logged and told only when that covers others' messages. */
static int plan_own_moves(st__fast *f, st_ingest *g)
{
    size_t from = f->nmoves;
    for (size_t i = 0; i < f->nrooms; i++) {
        st__room *r = f->rooms[i];
        if (r->mv_m < 0)
            continue;
        st__member *m = &r->m[r->mv_m];
        int64_t t = r->mv_seq;
        if (m->s >= t)
            continue;
        int64_t od = m->d, os = m->s;
        if (os < r->ring_from) {
            st__rooms_ring_short(g, r);
            return -1;
        }
        touch_member(f, r, r->mv_m);
        if (t > m->d)
            m->d = t;
        m->s = t;
        int others = 0;
        for (unsigned k = 0; k < r->ring_n && !others; k++) {
            unsigned at = (r->ring_head + k) % r->ring_cap;
            others = r->ring[at].seq > os && r->ring[at].seq <= t && r->ring[at].m != r->mv_m;
        }
        if (!others)
            continue;
        add_log(f, r, m, 's', t);
        add_move(f, r, r->mv_m, od, os);
    }
    return moves_events(f, g, from);
}

/* Whether every room (and shard position) batch b needs is cached. */
static int cached(st_ingest *g, const st__batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        const entry *e = b->e[i];
        st__room *r;
        if ((e->kind == 'm' || e->kind == 'o') && e->status == ST_E_NONE) {
            if (!(r = st__rooms_find(g, e->r)) || !g->shards[e->shard].pos_known)
                return 0;
            /* a direct room to create or open: only when it exists, both in it */
            if (e->p && (!st__room_member(r, e->u) || !st__room_member(r, e->p)))
                return 0;
        } else if (e->kind == 'R' && e->status != ST_E_INVALID) {
            for (unsigned k = 0; k < e->nrc; k++)
                if (!st__rooms_find(g, e->rl[k].room))
                    return 0;
        }
    }
    return 1;
}

static void iso_now(char out[48])
{
    uint64_t ms = cm_wall_ms();
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 48, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
}

/* The counters', watermarks' and version checks' arrays. */
static void plan_params(st__fast *f, st_ingest *g)
{
    for (size_t i = 0; i < f->nrooms; i++) {
        st__room *r = f->rooms[i];
        st__arr_text(&f->p[P_V_ID], r->id, r->id_len);
        st__arr_int(&f->p[P_V_VER], r->version);
        if (r->last_seq == r->old_last)
            continue;
        st__arr_text(&f->p[P_R_ID], r->id, r->id_len);
        st__arr_int(&f->p[P_R_OLD], r->old_last);
        st__arr_int(&f->p[P_R_NEW], r->last_seq);
    }
    for (unsigned i = 0; i < f->nshards; i++) {
        const st__shard *sh = &g->shards[f->shards[i]];
        st__arr_int(&f->p[P_S_ID], f->shards[i]);
        st__arr_int(&f->p[P_S_OLD], sh->pos_old);
        st__arr_int(&f->p[P_S_NEW], sh->pos);
    }
    for (size_t i = 0; i < f->nmembers; i++) {
        const st__room *r = f->members[i].r;
        const st__member *m = &r->m[f->members[i].m];
        if (m->d == m->od && m->s == m->os)
            continue;
        st__arr_text(&f->p[P_W_ROOM], r->id, r->id_len);
        st__arr_text(&f->p[P_W_USER], m->user, strlen(m->user));
        st__arr_int(&f->p[P_W_OD], m->od);
        st__arr_int(&f->p[P_W_OS], m->os);
        st__arr_int(&f->p[P_W_ND], m->d);
        st__arr_int(&f->p[P_W_NS], m->s);
    }
    for (int i = 0; i < NP; i++)
        if (i != P_M_AT)
            st__arr_end(&f->p[i]);
    pr_buf_append(&f->p[P_M_AT], f->created, strlen(f->created) + 1);
}

static void db_sent(st__lane *L, st__batch *b, st__fast *f);

int st__fast_submit(st__lane *L, st__batch *b)
{
    st_ingest *g = L->g;
    if (!g->c->cfg->room_cache || b->slow || !cached(g, b))
        return 0;
    st__fast *f = pr_calloc(1, sizeof *f);
    f->stamp = ++g->stamp;
    f->n = b->n;
    f->status = pr_calloc(b->n ? b->n : 1, sizeof *f->status);
    f->first = pr_malloc((b->n ? b->n : 1) * sizeof *f->first);
    for (size_t i = 0; i < b->n; i++)
        f->first[i] = -1;
    if (!params_ready) {
        for (int i = 0; i < NP; i++)
            pr_buf_init(&param_bufs[i], 256u << 20);
        params_ready = 1;
    }
    for (int i = 0; i < NP; i++)
        pr_buf_reset(&param_bufs[i]);
    f->p = param_bufs;
    iso_now(f->created);
    b->fast = f;
    if (plan_receipts(f, g, b) != 0 || plan_messages(f, g, b) != 0 || plan_own_moves(f, g) != 0) {
        /* not decidable here: the batch's rooms were changed in memory
         * only; chat_batch_load forgets and reloads them */
        g->c->stats.fast_refused++;
        st__fast_abandon(g, b);
        b->slow = 1;
        return 0;
    }
    plan_params(f, g);
    f->ids = pr_malloc((f->nrooms ? f->nrooms : 1) * sizeof *f->ids);
    for (size_t i = 0; i < f->nrooms; i++)
        f->ids[i] = pr_strndup(f->rooms[i]->id, f->rooms[i]->id_len);
    pr_free(f->rooms);
    f->rooms = NULL;
    db_sent(L, b, f);
    return 1;
}

static void db_sent(st__lane *L, st__batch *b, st__fast *f)
{
    const char *params[NP];
    for (int i = 0; i < NP; i++)
        params[i] = f->p[i].ptr;
    f->p = NULL; /* copied by st_pg_query_prepared */
    b->sent_us = cm_now_us();
    if (st_pg_query_prepared(L->db, "chat_fast", st__batch_session, FAST_SQL, NP, params,
                             st__commit_db_cb, L) == 0) {
        b->in_db = 1;
    } else { /* not sent: the next kick tries again, through chat_batch_load */
        st__fast_abandon(L->g, b);
        b->slow = 1;
    }
}

void st__fast_abandon(st_ingest *g, st__batch *b)
{
    st__fast *f = b->fast;
    if (!f)
        return;
    for (size_t i = 0; i < f->nrooms; i++) {
        st__room *r = f->ids ? st__rooms_find(g, f->ids[i]) : f->rooms[i];
        if (r)
            st__rooms_drop(g, r);
    }
    for (unsigned i = 0; i < f->nshards; i++)
        g->shards[f->shards[i]].pos_known = 0;
    st__fast_free(f);
    b->fast = NULL;
}

void st__fast_apply(st_ingest *g, st__batch *b, PGresult *res)
{
    st__fast *f = b->fast;
    st_stats *st = &g->c->stats;
    int rows = PQntuples(res), row = 0;
    st->fast_batches++;
    for (size_t i = 0; i < b->n; i++) {
        entry *e = b->e[i];
        if (e->kind != 'm' || f->status[i] == ST_E_NONE)
            continue;
        e->status = f->status[i];
        if (e->status == ST_E_NEW) {
            /* the ids come back in insertion order; checked, searched if not */
            int k = row < rows ? row : 0, found = -1;
            for (int tries = 0; tries < rows && found < 0; tries++, k = (k + 1) % rows) {
                const char *room = st__col(res, k, 0), *seq = st__col(res, k, 1);
                if (room && seq && !strcmp(room, e->r) && strtoll(seq, NULL, 10) == e->seq)
                    found = k;
            }
            const char *id = found >= 0 ? st__col(res, found, 2) : NULL;
            if (!id) { /* cannot be (every insert was counted): run it again */
                e->status = ST_E_RETRY;
                st->messages_retried++;
                continue;
            }
            row = found + 1;
            snprintf(e->mid, sizeof e->mid, "%s", id);
            st->messages_stored++;
        } else if (e->status == ST_E_DUP) {
            const entry *x = b->e[f->first[i]];
            snprintf(e->mid, sizeof e->mid, "%s", x->mid);
            e->seq = x->seq;
            e->pos = x->pos;
            e->rshard = x->rshard;
            snprintf(e->created, sizeof e->created, "%s", x->created);
            st->messages_duplicate++;
        } else if (e->status == ST_E_FORBIDDEN) {
            st->messages_forbidden++;
        } else {
            st->messages_reused++;
        }
    }
}
