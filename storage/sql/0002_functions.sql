-- 0002: the functions chat-storage calls once per batch (docs/storage.md,
-- "Storage's batch" and "Status"). Set-based: a batch of a thousand messages
-- is a handful of statements, not a thousand loops.
--
-- Entry point: chat_batch(msgs, receipts), one call per batch, so a batch is
-- one round trip and one transaction (a function runs inside the statement's
-- transaction). chat_ingest and chat_receipts can be called on their own.

-- A message of a batch, as chat_ingest reads it.
CREATE TYPE chat_in AS (
    o  int,    -- ordinal in the batch (stream order within each shard)
    r  text,   -- room
    u  text,   -- sender
    n  text,   -- first name
    l  text,   -- last name or NULL
    x  text,   -- text
    c  text,   -- clientMsgId or NULL
    p  text,   -- peer of a direct room the sender opened, or NULL
    sh int,    -- ingest shard of r
    k  text    -- 'o': only open direct room r of u and p (joinChat); else NULL
);

-- One result row of chat_ingest.
--   status 'new' | 'dup' | 'forbidden' | 'retry': one per input ordinal o,
--     with room and usr (the sender); id..created_at for new and dup (a dup
--     carries the original message's values).
--   status 'joined': usr became a member of direct room room (o NULL).
CREATE TYPE chat_ingested AS (
    o          int,
    status     text,
    id         bigint,
    seq        bigint,
    shard      int,
    shard_pos  bigint,
    created_at text,
    room       text,
    usr        text
);

-- One watermark move, as chat__move computed it (old and new values).
CREATE TYPE chat_move AS (
    room text,
    usr  text,
    od   bigint,
    os   bigint,
    nd   bigint,
    ns   bigint
);

-- ISO 8601 UTC with milliseconds, as clients get createdAt.
CREATE FUNCTION chat_iso(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

-- The lowest status of message seq of sender in room over the other members:
-- 'seen', 'delivered' or 'sent' ('sent' too when nobody else is a member).
CREATE FUNCTION chat_aggregate(room text, sender text, seq bigint) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN count(*) = 0 THEN 'sent'
                WHEN min(m.seen_seq) >= seq THEN 'seen'
                WHEN min(m.delivered_seq) >= seq THEN 'delivered'
                ELSE 'sent' END
      FROM room_members m
     WHERE m.room_id = room AND m.user_id <> sender
$$;

--
-- Stores a batch of messages. batch: a JSON array of
--   {o, r, u, n, l, x, c, p, sh}   (see chat_in; absent = NULL)
-- and of direct rooms to open (docs/storage.md, k = o)
--   {o, k: "o", r, u, p, sh}
-- The caller has checked every field, that sh is r's shard, and for p that r
-- is the direct room of u and p.
--
-- Returns one row per input message ordinal (see chat_ingested) plus
-- 'joined' rows; opening a room returns nothing but those.
-- New messages get the next per-room seq and per-shard position in ordinal
-- order. A (sender, clientMsgId) already stored, or earlier in the batch, is
-- 'dup' of the first. A sender who is not a member is 'forbidden'. 'retry':
-- another transaction stored the same (sender, clientMsgId) concurrently (a
-- different shard, or a split-brain owner); run it again in the next batch,
-- where it is 'dup'. (Its room seq and shard position were consumed: such a
-- rare race leaves a gap in both, which readers tolerate.)
--
-- Each sender's watermarks move up to its last new message: it has seen the
-- room up to there. That move is not logged in watermarks and raises no
-- messageStatus events (chat_receipts does both for receipts): the sender's
-- own messages need no receipt, and a sender writing in a room has it open,
-- so its gateway has sent seen receipts for the rest already.
--
-- force_custom_plan: a cached generic plan knows nothing of the arrays'
-- sizes and falls back to nested loops over a thousand rows after the fifth
-- call (a batch went from 40 to 90 ms).
CREATE FUNCTION chat_ingest(batch jsonb) RETURNS SETOF chat_ingested
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    ins chat_in[];
    res chat_ingested[];
    joined chat_ingested[];
    inserted bigint[];
    room_ids text[];
    room_seqs bigint[];
    shard_ids int[];
    shard_poss bigint[];
    nnew int;
    at text := chat_iso(now());
BEGIN
    -- Each statement keeps its rows in an array variable: the planner knows
    -- an array's length, while it guesses one row for a CTE and then joins
    -- a thousand rows with nested loops.
    ins := ARRAY(
        SELECT ROW(t.o, t.r, t.u, coalesce(t.n, ''), t.l, t.x, t.c, t.p, t.sh, t.k)::chat_in
          FROM jsonb_to_recordset(batch)
               AS t(o int, r text, u text, n text, l text, x text, c text, p text, sh int,
                    k text));
    IF cardinality(ins) = 0 THEN
        RETURN;
    END IF;

    -- Direct rooms come into being with their first message; both users are
    -- members (again, if one had been removed: a direct room is reachable by
    -- construction, docs/decisions.md 13).
    IF EXISTS (SELECT 1 FROM unnest(ins) i WHERE i.p IS NOT NULL) THEN
        INSERT INTO rooms (id, kind, created_by)
        SELECT DISTINCT ON (i.r) i.r, 'dm', i.u
          FROM unnest(ins) i
         WHERE i.p IS NOT NULL
         ORDER BY i.r, i.o
            ON CONFLICT (id) DO NOTHING;
        WITH j AS (
            INSERT INTO room_members (room_id, user_id)
            SELECT DISTINCT i.r, v.usr
              FROM unnest(ins) i, LATERAL (VALUES (i.u), (i.p)) AS v(usr)
             WHERE i.p IS NOT NULL
                ON CONFLICT (room_id, user_id) DO NOTHING
            RETURNING room_id, user_id)
        SELECT ARRAY(SELECT ROW(NULL, 'joined', NULL, NULL, NULL, NULL, NULL, j.room_id,
                                j.user_id)::chat_ingested FROM j)
          INTO joined;
        IF EXISTS (SELECT 1 FROM unnest(ins) i WHERE i.k = 'o') THEN
            ins := ARRAY(SELECT i FROM unnest(ins) i WHERE i.k IS DISTINCT FROM 'o');
            IF cardinality(ins) = 0 THEN
                RETURN QUERY SELECT * FROM unnest(joined);
                RETURN;
            END IF;
        END IF;
    END IF;

    -- The counters, locked in a fixed order (rooms, then shards, by id), so
    -- two transactions on overlapping rooms (a split-brain owner, the HTTP
    -- API) wait for each other instead of deadlocking. Taken before the
    -- duplicate check, so a transaction that waited sees what the other one
    -- stored.
    SELECT array_agg(x.id), array_agg(x.last_seq) INTO room_ids, room_seqs
      FROM (SELECT rooms.id, rooms.last_seq FROM rooms
             WHERE rooms.id IN (SELECT i.r FROM unnest(ins) i)
             ORDER BY rooms.id FOR UPDATE) x;
    SELECT array_agg(x.id), array_agg(x.pos) INTO shard_ids, shard_poss
      FROM (SELECT shards.id, shards.pos FROM shards
             WHERE shards.id IN (SELECT i.sh FROM unnest(ins) i)
             ORDER BY shards.id FOR UPDATE) x;

    -- The first occurrence of each (sender, clientMsgId) decides: dup of a
    -- stored message, forbidden, or new with the next seq and position.
    res := ARRAY(
        WITH f AS (
            SELECT b.* FROM (
                SELECT i.*, CASE WHEN i.c IS NULL THEN i.o
                                 ELSE min(i.o) OVER (PARTITION BY i.u, i.c) END AS first
                  FROM unnest(ins) i) b
             WHERE b.o = b.first
        ), c AS (
            SELECT f.o, f.r, f.u, f.sh, m.id AS mid, m.seq AS mseq, m.shard AS msh,
                   m.shard_pos AS mpos, m.created_at AS mat,
                   CASE WHEN m.id IS NOT NULL THEN 'dup'
                        -- (a room deleted before the lock has no counter)
                        WHEN rm.user_id IS NULL OR ro.last_seq IS NULL THEN 'forbidden'
                        ELSE 'new' END AS status,
                   ro.last_seq, s.pos
              FROM f
              LEFT JOIN messages m
                     ON f.c IS NOT NULL AND m.sender_id = f.u AND m.client_msg_id = f.c
              LEFT JOIN room_members rm ON rm.room_id = f.r AND rm.user_id = f.u
              LEFT JOIN unnest(room_ids, room_seqs) AS ro(id, last_seq) ON ro.id = f.r
              LEFT JOIN unnest(shard_ids, shard_poss) AS s(id, pos) ON s.id = f.sh
        )
        SELECT CASE WHEN c.status = 'new'
                    THEN ROW(c.o, c.status, nextval('message_ids'),
                             c.last_seq + row_number() OVER (PARTITION BY c.r, c.status
                                                             ORDER BY c.o),
                             c.sh,
                             c.pos + row_number() OVER (PARTITION BY c.sh, c.status
                                                        ORDER BY c.o),
                             at, c.r, c.u)::chat_ingested
                    ELSE ROW(c.o, c.status, c.mid, c.mseq, c.msh, c.mpos, chat_iso(c.mat),
                             c.r, c.u)::chat_ingested END
          FROM c);

    SELECT count(*) INTO nnew FROM unnest(res) g WHERE g.status = 'new';
    IF nnew > 0 THEN
        UPDATE rooms SET last_seq = k.seq, last_at = now()
          FROM (SELECT g.room, max(g.seq) AS seq FROM unnest(res) g
                 WHERE g.status = 'new' GROUP BY g.room) k
         WHERE rooms.id = k.room;
        UPDATE shards SET pos = k.pos
          FROM (SELECT g.shard, max(g.shard_pos) AS pos FROM unnest(res) g
                 WHERE g.status = 'new' GROUP BY g.shard) k
         WHERE shards.id = k.shard;

        WITH n AS (
            INSERT INTO messages (id, room_id, seq, shard, shard_pos, sender_id, client_msg_id,
                                  first_name, last_name, body, created_at)
            SELECT g.id, i.r, g.seq, g.shard, g.shard_pos, i.u, i.c, i.n, i.l, i.x, now()
              FROM unnest(res) g
              JOIN unnest(ins) i ON i.o = g.o
             WHERE g.status = 'new'
                ON CONFLICT (sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL
                DO NOTHING
            RETURNING messages.id)
        SELECT ARRAY(SELECT n.id FROM n) INTO inserted;
        IF cardinality(inserted) < nnew THEN
            res := ARRAY(
                SELECT ROW(g.o,
                           CASE WHEN g.status = 'new' AND g.id <> ALL (inserted) THEN 'retry'
                                ELSE g.status END,
                           g.id, g.seq, g.shard, g.shard_pos, g.created_at, g.room,
                           g.usr)::chat_ingested
                  FROM unnest(res) g);
        END IF;

        UPDATE room_members rm
           SET delivered_seq = GREATEST(rm.delivered_seq, k.seq),
               seen_seq = GREATEST(rm.seen_seq, k.seq)
          FROM (SELECT g.room, g.usr, max(g.seq) AS seq FROM unnest(res) g
                 WHERE g.status = 'new' GROUP BY g.room, g.usr) k
         WHERE rm.room_id = k.room AND rm.user_id = k.usr AND rm.seen_seq < k.seq;
    END IF;

    -- every ordinal: its own row, or the first occurrence's values as 'dup'
    RETURN QUERY
    SELECT i.o,
           CASE WHEN g.o = i.o OR g.status <> 'new' THEN g.status ELSE 'dup' END,
           g.id, g.seq, g.shard, g.shard_pos, g.created_at, i.r, i.u
      FROM (SELECT b.o, b.r, b.u,
                   CASE WHEN b.c IS NULL THEN b.o
                        ELSE min(b.o) OVER (PARTITION BY b.u, b.c) END AS first
              FROM unnest(ins) b) i
      JOIN unnest(res) g ON g.o = i.first;

    RETURN QUERY SELECT * FROM unnest(joined);
END
$$;

--
-- Moves watermarks forward: member usr[k] of room[k] has been delivered up
-- to d[k] and has seen up to s[k] (NULL: no news; s -1: everything stored so
-- far). Clamped to the room's last_seq; seen implies delivered; never moves
-- back; members only. Several entries for one member count as their maximum.
-- Logs each move in watermarks and returns the moves.
--
CREATE FUNCTION chat__move(room text[], usr text[], d bigint[], s bigint[])
RETURNS SETOF chat_move
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    mv chat_move[];
BEGIN
    WITH req AS (
        SELECT q.r, q.u, max(q.d) AS d, max(q.s) FILTER (WHERE q.s >= 0) AS s,
               bool_or(q.s = -1) AS s_all
          FROM unnest(room, usr, d, s) AS q(r, u, d, s)
         WHERE q.r IS NOT NULL AND q.u IS NOT NULL
         GROUP BY q.r, q.u
    ), tgt AS (
        SELECT req.r, req.u, ro.last_seq,
               LEAST(CASE WHEN req.s_all THEN ro.last_seq ELSE coalesce(req.s, 0) END,
                     ro.last_seq) AS ns,
               LEAST(coalesce(req.d, 0), ro.last_seq) AS nd
          FROM req
          JOIN rooms ro ON ro.id = req.r
    ), old AS (
        SELECT rm.room_id, rm.user_id, rm.delivered_seq, rm.seen_seq,
               GREATEST(rm.delivered_seq, tgt.nd, tgt.ns) AS nd,
               GREATEST(rm.seen_seq, tgt.ns) AS ns
          FROM room_members rm
          JOIN tgt ON rm.room_id = tgt.r AND rm.user_id = tgt.u
         WHERE tgt.nd > rm.delivered_seq OR tgt.ns > rm.seen_seq
         ORDER BY rm.room_id, rm.user_id
           FOR UPDATE OF rm
    ), upd AS (
        UPDATE room_members rm
           SET delivered_seq = old.nd, seen_seq = old.ns
          FROM old
         WHERE rm.room_id = old.room_id AND rm.user_id = old.user_id
        RETURNING rm.room_id, rm.user_id, old.delivered_seq AS od, old.seen_seq AS os,
                  old.nd, old.ns
    )
    SELECT ARRAY(SELECT ROW(upd.room_id, upd.user_id, upd.od, upd.os, upd.nd, upd.ns)::chat_move
                   FROM upd)
      INTO mv;

    -- An 's' row stands for delivered too: when both watermarks move to the
    -- same seq (every sender's own message does that) one row is enough.
    INSERT INTO watermarks (room_id, user_id, kind, seq)
    SELECT v.room, v.usr, 'd', v.nd FROM unnest(mv) v WHERE v.nd > v.od AND v.nd > v.ns
    UNION ALL
    SELECT v.room, v.usr, 's', v.ns FROM unnest(mv) v WHERE v.ns > v.os
        ON CONFLICT DO NOTHING;

    RETURN QUERY SELECT * FROM unnest(mv);
END
$$;

--
-- The messageStatus events of watermark moves (docs/storage.md "Status"):
-- for each move of member M in a room and each sender X <> M with messages in
-- the moved range, X's latest message there, M's status of it and its
-- aggregate. A message M has now seen is not also reported as delivered.
--
CREATE FUNCTION chat__status_events(mv chat_move[])
RETURNS TABLE (room text, member text, status text, sender text, seq bigint, aggregate text)
LANGUAGE sql STABLE AS $$
    WITH ev AS (
        SELECT v.room, v.usr AS member, 'seen' AS status, m.sender_id AS sender,
               max(m.seq) AS seq
          FROM unnest(mv) v
          JOIN messages m ON m.room_id = v.room AND m.seq > v.os AND m.seq <= v.ns
         WHERE v.ns > v.os AND m.sender_id <> v.usr
         GROUP BY v.room, v.usr, m.sender_id
        UNION ALL
        SELECT v.room, v.usr, 'delivered', m.sender_id, max(m.seq)
          FROM unnest(mv) v
          JOIN messages m ON m.room_id = v.room AND m.seq > GREATEST(v.od, v.ns)
                         AND m.seq <= v.nd
         WHERE v.nd > GREATEST(v.od, v.ns) AND m.sender_id <> v.usr
         GROUP BY v.room, v.usr, m.sender_id
    ), agg AS (
        SELECT k.room, k.sender, k.seq,
               CASE WHEN a.n = 0 THEN 'sent'
                    WHEN a.s >= k.seq THEN 'seen'
                    WHEN a.d >= k.seq THEN 'delivered'
                    ELSE 'sent' END AS aggregate
          FROM (SELECT DISTINCT ev.room, ev.sender, ev.seq FROM ev) k
          CROSS JOIN LATERAL (
                SELECT count(*) AS n, min(m.seen_seq) AS s, min(m.delivered_seq) AS d
                  FROM room_members m
                 WHERE m.room_id = k.room AND m.user_id <> k.sender) a
    )
    SELECT ev.room, ev.member, ev.status, ev.sender, ev.seq, agg.aggregate
      FROM ev
      JOIN agg ON agg.room = ev.room AND agg.sender = ev.sender AND agg.seq = ev.seq
     ORDER BY ev.room, ev.sender, ev.seq
$$;

--
-- Applies receipts. batch: a JSON array of {r, u, d, s} (see chat__move).
-- Returns the messageStatus events to publish on user:{sender}.
--
CREATE FUNCTION chat_receipts(batch jsonb)
RETURNS TABLE (room text, member text, status text, sender text, seq bigint, aggregate text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    mv chat_move[];
BEGIN
    mv := ARRAY(
        SELECT ROW(m.*)::chat_move
          FROM (SELECT array_agg(t.r) AS r, array_agg(t.u) AS u, array_agg(t.d) AS d,
                       array_agg(t.s) AS s
                  FROM jsonb_to_recordset(batch) AS t(r text, u text, d bigint, s bigint)) a,
               chat__move(a.r, a.u, a.d, a.s) m);
    RETURN QUERY SELECT * FROM chat__status_events(mv);
END
$$;

--
-- One batch of the ingest loop, in one transaction: the receipts read with
-- it, then the messages. Rows:
--   k 'm': a message, as chat_ingest (o, status, id, seq, shard, shard_pos,
--          created_at, room, usr = sender)
--   k 'j': usr joined direct room room
--   k 's': a messageStatus event: room, usr = member, status, sender, seq,
--          aggregate
-- Receipts come first so that "seen everything" (-1) cannot cover messages of
-- this very batch, which the member's sockets have not been sent yet.
--
CREATE FUNCTION chat_batch(msgs jsonb, receipts jsonb)
RETURNS TABLE (k "char", o int, status text, id bigint, seq bigint, shard int,
               shard_pos bigint, created_at text, room text, usr text, sender text,
               aggregate text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    IF receipts IS NOT NULL AND jsonb_array_length(receipts) > 0 THEN
        RETURN QUERY
        SELECT 's'::"char", NULL::int, e.status, NULL::bigint, e.seq, NULL::int, NULL::bigint,
               NULL::text, e.room, e.member, e.sender, e.aggregate
          FROM chat_receipts(receipts) e;
    END IF;
    IF msgs IS NOT NULL AND jsonb_array_length(msgs) > 0 THEN
        RETURN QUERY
        SELECT CASE WHEN g.status = 'joined' THEN 'j' ELSE 'm' END::"char", g.o, g.status,
               g.id, g.seq, g.shard, g.shard_pos, g.created_at, g.room, g.usr, NULL::text,
               NULL::text
          FROM chat_ingest(msgs) g;
    END IF;
END
$$;
