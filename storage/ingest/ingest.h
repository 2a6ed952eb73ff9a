/*
 * ingest/ingest.h - private to storage/ingest/: the owner side of the ingest
 * shards (docs/storage.md "Ingest shards" and "Storage's batch").
 *
 * A message's trip, one file per step, in this order:
 *   lease.c    which shards this replica owns ({i:S}:lease)
 *   read.c     XREADGROUP over the owned shards; entries go to their lane
 *   lanes.c    a FIFO of batches per database connection (lane S mod N)
 *   commit.c   the head batch in PostgreSQL and its answer: fast.c's statement
 *              when rooms.c has every room of it in memory, else chat_batch_load
 *   publish.c  after COMMIT: M1, A1, {st}:pos, U1, then XACK/XDEL
 * ingest.c holds the loop that drives them (kick), start and stop.
 *
 * Everything lives on the one loop thread; st_ingest is owned by st_ctx
 * (c->ingest), created by st_ingest_start and freed by st_ingest_free.
 */
#ifndef ST_INGEST_INGEST_H
#define ST_INGEST_INGEST_H

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdint.h>

#include "pr_map.h"

#include "chat.h"
#include "entry.h"
#include "st.h"

#define ST__INGEST_MAX_LANES 16

typedef st__entry entry;

/* A messageStatus event for sender: member moved to status over its
 * message seq of room (docs/storage.md "Status"). Borrowed strings. */
typedef struct {
    const char *room, *member, *status, *sender, *aggregate;
    int64_t seq;
} st__event;

typedef struct st__fast st__fast;

/* A batch: entries read together, committed in one chat_batch call. */
typedef struct st__batch {
    struct st__batch *next;
    entry **e;
    size_t n, cap;
    uint64_t read_ms;
    uint64_t sent_us;               /* last sent to the database */
    unsigned failures, data_errors; /* failed attempts in the database */
    int in_db;
    st__fast *fast; /* the room cache's plan while in the database (fast.c) */
    int slow;       /* the plan was refused: chat_batch_load from now on */
} st__batch;

enum { ST__MODE_PENDING, ST__MODE_LIVE };

typedef struct {
    chat_key in_key;    /* {i:S}:in */
    chat_key lease_key; /* {i:S}:lease */
    /* lease.c */
    int owned;
    int acquiring; /* SET NX / XGROUP / HGET in flight */
    int taken;     /* acquiring, and the SET NX got it */
    int renewing;
    /* given back (over this replica's target): not read past its pending
     * entries; released once nothing of it is in flight (handover) */
    int releasing;
    uint64_t lease_until; /* monotonic ms */
    /* read.c (publish.c sends a shard back to pending when acks are lost) */
    int mode;
    char cursor[48];   /* pending mode: last id read */
    int reread;        /* the links changed: back to pending mode once not reading */
    unsigned inflight; /* entries of this shard in queued batches (lanes.c) */
    int in_read;       /* in the XREADGROUP in flight */
    unsigned acking;   /* publish.c: XACK/XDEL of its batches in flight */
    /* rooms.c: the shard's pos as the head batch leaves it (pos_known) */
    int64_t pos;
    int pos_known;
    int64_t pos_old; /* fast.c: pos at the start of the batch planned */
    unsigned pos_stamp;
    /* publish.c */
    int64_t published; /* last shard position published */
    /* A batch's commands were lost (link down): the entries come back as
     * 'dup' and every one above this position is published again, even if
     * a later batch got through meanwhile. Until the pending entries drain. */
    int64_t republish_above;
} st__shard;

/* A lane: one database connection and its FIFO of batches. Shard S goes
 * to lane S mod nlanes, so each shard's batches commit in order while the
 * lanes' transactions run side by side (they touch disjoint rooms). */
typedef struct st__lane {
    st_ingest *g;
    unsigned index;
    st_pg *db;              /* lane 0: c->ingest_db */
    st__batch *head, *tail; /* head: in the database, or next to go */
    unsigned nbatches;
    struct event *retry_timer; /* database retry of the head batch (commit.c) */
    entry **carry;             /* 'retry' entries for the next batch */
    size_t ncarry;
    /* Receipt-only entries held back (--receipt-linger-ms) so that they
     * ride the next batch that goes anyway rather than cost a transaction
     * of their own; counted in their shards' inflight. */
    entry **held;
    size_t nheld;
    uint64_t held_since; /* monotonic ms the first of them was held */
} st__lane;

/* ---- rooms.c: the room cache ---- */

/* Messages a room remembers the senders of (its ring): a watermark move
 * reaching further back takes chat_batch_load, and that room, when loaded
 * again, remembers twice as many, up to ST__RING_MAX (readers that lag a
 * busy room, under load, would otherwise send batch after batch there). */
#define ST__RING_MIN 32
#define ST__RING_MAX 1024

typedef struct {
    char *user;
    int64_t d, s; /* delivered_seq, seen_seq */
    /* fast.c's scratch for the batch it plans (stamp) */
    unsigned stamp, rq_stamp, ev_stamp;
    int64_t od, os;         /* d and s at the start of the batch */
    int64_t rq_d, rq_s;     /* the batch's receipts: highest delivered, seen */
    int rq_all;             /* a "seen everything" */
    int64_t ev_seq;         /* events: this sender's latest seq in a range */
} st__member;

typedef struct st__room {
    pr_map_entry link;
    char *id;
    size_t id_len;
    int64_t last_seq, version; /* rooms.last_seq, room_versions.v (0: none) */
    st__member *m;             /* sorted by user (strcmp) */
    unsigned nm;
    /* the senders of every message with seq > ring_from (member index, -1
     * for one who is no member), oldest first from ring_head */
    int64_t ring_from;
    struct {
        int64_t seq;
        int m;
    } *ring;
    unsigned ring_cap, ring_head, ring_n;
    /* fast.c's scratch */
    unsigned stamp, mv_stamp, agg_stamp;
    int64_t old_last; /* last_seq at the start of the batch */
    int mv_m;         /* the sender whose run opens the room's new messages */
    int64_t mv_seq;   /* its last message in that run */
    int mv_open;
    /* aggregates: the two lowest watermarks and who holds the lowest */
    int64_t min_s, min2_s, min_d, min2_d;
    int arg_s, arg_d;
} st__room;

struct st_ingest {
    st_ctx *c;
    pr_map rooms;      /* st__room by id (rooms.c) */
    pr_map rings;      /* rooms.c: ring sizes above ST__RING_MIN, by room id */
    unsigned load_ring; /* rooms.c: the ring of the batch being loaded */
    unsigned stamp;    /* fast.c: the batch being planned */
    unsigned nshards;
    st__shard *shards;
    st__lane lanes[ST__INGEST_MAX_LANES];
    unsigned nlanes;
    struct event *lease_timer; /* lease.c */
    /* lease.c: who is alive ({st}:replicas) as the last heartbeat said */
    unsigned live, rank; /* live replicas (0: unknown), ids below this one's */
    uint64_t view_until; /* monotonic ms: the view is too old from then on */
    int heartbeating;
    struct event *kick;        /* deferred: read or submit */
    unsigned reading;          /* XREADGROUPs in flight (read.c) */
    uint64_t read_pause_until;
    struct event *tick;   /* reads again after a pause or a reconnect */
    struct event *linger; /* kicks when a lane's held receipts are due */
    unsigned blocking_epoch, cmd_epoch;
    unsigned seed;
    /* stop */
    int stopping;
    void (*stopped)(void *);
    void *stopped_arg;
    struct event *stop_deadline;
    unsigned releases; /* lease releases in flight */
    int stop_done;
};

/* ---- ingest.c: the loop ---- */
/* Runs the loop soon (on the loop, after the current callback): every lane
 * submits its head, then a read starts if there is room. */
void st__ingest_kick(st_ingest *g);
/* Stopping: finishes once nothing is read or queued and the leases are
 * given back. */
void st__ingest_maybe_stopped(st_ingest *g);

/* ---- lease.c ---- */
/* The shards the replica of rank (ids in byte order, from 0) wants among
 * live ones: nshards / live, one more for the first nshards mod live. */
unsigned st__lease_target(unsigned nshards, unsigned live, unsigned rank);
void st__lease_start(st_ingest *g); /* the renewal timer, and a first round */
/* No more renewals; this replica leaves the live ones. */
void st__lease_stop(st_ingest *g);
/* Releases every shard given back whose batches are all done (the kick
 * calls it). */
void st__lease_handover(st_ingest *g);
/* Gives back every owned shard; returns how many releases are in flight
 * (each ends in st__ingest_maybe_stopped). */
unsigned st__lease_release_all(st_ingest *g);

/* ---- read.c ---- */
/* One XREADGROUP over the owned shards, unless one is in flight, a lane is
 * full, or the link is down. */
void st__read_start(st_ingest *g);

/* ---- lanes.c ---- */
void st__batch_free(st__batch *b);
/* Adds entry e of shard s to the batch filling behind its lane's head. A
 * receipt-only entry ('R' with receipts) of a live shard, when no such
 * batch is open and --receipt-linger-ms is not 0, is held instead: it joins
 * the next batch the lane opens for other work (a message, an open, a
 * retry), or goes when st__lane_release_due finds it due. Entries read in
 * pending mode are never held (recovery does not wait). */
void st__lane_add(st_ingest *g, unsigned s, entry *e);
/* Releases lane L's held receipts into a batch when they were held for
 * linger_ms by now (or at once when force); returns the milliseconds until
 * they are due, 0 when none are held. */
uint64_t st__lane_release_due(st__lane *L, uint64_t now, unsigned linger_ms, int force);
/* 1 when lane L takes no more entries (reading waits). */
int st__lane_full(const st__lane *L);
/* Takes the head batch off the queue. */
st__batch *st__lane_detach_head(st__lane *L);
/* Splits the head batch into two consecutive batches of the queue. */
void st__lane_split_head(st__lane *L);
/* A batch off the queue is done: its 'retry' entries go ahead of what was
 * read after them, the rest is freed with it. */
void st__lane_retire(st__lane *L, st__batch *b);
/* Frees every batch and carried entry of lane L. */
void st__lane_dispose(st__lane *L);

/* ---- rooms.c ---- */
void st__rooms_init(st_ingest *g);
void st__rooms_clear(st_ingest *g); /* forgets every room and shard position */
void st__rooms_dispose(st_ingest *g); /* and frees what rooms.c holds */
st__room *st__rooms_find(st_ingest *g, const char *id);
void st__rooms_drop(st_ingest *g, st__room *r);
/* Member user of r, or NULL. */
st__member *st__room_member(st__room *r, const char *user);
/* The message seq of r was sent by member index m (-1: no member). */
void st__room_ring_add(st__room *r, int64_t seq, int m);
/* A move of r reached behind its ring: its next load remembers more. */
void st__rooms_ring_short(st_ingest *g, const st__room *r);
/* Before a batch goes through chat_batch_load: forgets its rooms and
 * shards (the batch changes them) and lists them in rooms and shards as
 * that function's arrays. */
void st__rooms_forget_batch(st_ingest *g, const st__batch *b, pr_buf *rooms, pr_buf *shards);
/* After it committed: what chat_batch_load read back ('r', 'c', 'h' and
 * 'p' rows) goes into the cache. */
void st__rooms_load(st_ingest *g, PGresult *res);
/* The most messages a room of the batch being loaded remembers, as text:
 * chat_batch_load's ring argument (st__rooms_forget_batch sets it). */
const char *st__rooms_ring_text(st_ingest *g);
/* A text array literal: {"a","b"} (NULL: the SQL NULL). */
void st__arr_text(pr_buf *a, const char *s, size_t len);
void st__arr_int(pr_buf *a, int64_t v);
void st__arr_end(pr_buf *a); /* closes it, NUL-terminated */

/* ---- fast.c: a batch decided in memory ---- */
/* 1 when every room of lane L's head batch is in the cache: its plan is
 * then made (cache updated as if it commits) and its statement sent. */
int st__fast_submit(st__lane *L, st__batch *b);
/* The statement committed: ids into the entries, statuses, counters. */
void st__fast_apply(st_ingest *g, st__batch *b, PGresult *res);
/* It failed: the rooms and shards it planned on are forgotten. */
void st__fast_abandon(st_ingest *g, st__batch *b);
void st__fast_free(st__fast *f);
/* Its events, for publish.c. */
const st__event *st__fast_events(const st__fast *f, size_t *n);

/* ---- commit.c ---- */
/* The columns of chat_batch's rows (commit.c's query; storage/sql/functions/
 * chat_batch.sql): k 'm' (a message's answer), 'j' (a member of a new direct
 * room), 's' (a messageStatus event). */
enum {
    ST__COL_K,
    ST__COL_O,      /* 'm': the entry's index in the batch */
    ST__COL_STATUS, /* 'm': new, dup, forbidden, reused, retry; 's': delivered, seen */
    ST__COL_ID,
    ST__COL_SEQ,
    ST__COL_SHARD,
    ST__COL_POS,
    ST__COL_CREATED,
    ST__COL_ROOM,
    ST__COL_USR,
    ST__COL_SENDER,
    ST__COL_AGGREGATE
};
/* A row's text column, or NULL for SQL NULL. */
static inline const char *st__col(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* Sends lane L's head batch to the database. A batch with nothing for it is
 * finished on the spot when may_finish (not while another is published). */
void st__commit_submit(st__lane *L, int may_finish);
void st__commit_retry_cb(evutil_socket_t fd, short what, void *arg); /* L->retry_timer */
/* The ingest connections' session settings, set before a batch statement
 * is prepared (storage/sql/functions/README.md says why). */
extern const char st__batch_session[];
/* A batch statement's answer (chat_batch_load's or fast.c's), arg the lane. */
void st__commit_db_cb(PGresult *res, const char *error, void *arg);

/* ---- publish.c ---- */
/* After COMMIT (res: chat_batch's rows, NULL when the batch needed no
 * database or went by fast.c; ev: the messageStatus events, in order):
 * what the batch tells gateways, then XACK and XDEL. */
void st__publish_batch(st_ingest *g, st__batch *b, PGresult *res, const st__event *ev,
                       size_t nev);

#endif
