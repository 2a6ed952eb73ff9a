-- 0006: the sender hears every move of every watermark (docs/storage.md
-- "Storage's batch", "Status"; docs/decisions.md).
--
-- 1. A sender writing in a room moves its own watermarks to its message
--    (it has the room open). Up to 0005 that move was made inside
--    chat_ingest with no watermarks row and no messageStatus, so when Bob
--    answered Alice at once, his send covered her message and the receipt
--    that followed moved nothing: Alice never heard "delivered" or "seen".
--    Now chat_batch makes that move after chat_ingest: it is logged in
--    watermarks like a receipt's, and raises the events of the messages of
--    others it covers (chat__events, shared with chat_receipts). It stops
--    before another sender's message stored in the same batch, which the
--    sender cannot have seen.
-- 2. One move that jumps both watermarks (a reply, opening the room or
--    markSeen right after the message arrived) used to report only
--    "seen". Now a move reports "delivered" for its delivered range and
--    "seen" for its seen range, delivered first, so a sender hears each
--    status once and in order (a delivered event's aggregate is at most
--    "delivered": the seen that follows it has not been told yet).

--
-- The messageStatus events of watermark moves mv (old and new values): for
-- each move of member M and each sender X <> M with messages in a moved
-- range, X's latest message in the delivered range ('delivered') and in
-- the seen range ('seen'), with its aggregate; per (room, sender, member)
-- delivered comes before seen. Runs under its callers' settings (no SET
-- clauses: chat_receipts and chat_batch set them; a function with SET
-- clauses costs a configuration save and restore at every call).
--
CREATE FUNCTION chat__events(mv chat_move[])
RETURNS TABLE (room text, member text, status text, sender text, seq bigint, aggregate text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    -- The aggregate is computed once per message (the row numbered 1); it
    -- reads the watermarks the caller has just moved.
    RETURN QUERY
    SELECT z.room, z.member, z.status, z.sender, z.seq,
           CASE WHEN z.status = 'delivered' AND z.agg = 'seen' THEN 'delivered' ELSE z.agg END
      FROM (SELECT e.*,
                   first_value(a.aggregate) OVER (PARTITION BY e.room, e.sender, e.seq
                                                  ORDER BY e.rn) AS agg
              FROM (SELECT ev.*,
                           row_number() OVER (PARTITION BY ev.room, ev.sender, ev.seq) AS rn
                      FROM (SELECT v.room, v.usr AS member, 'seen' AS status, x.sender, x.seq
                              FROM unnest(mv) v
                             CROSS JOIN LATERAL (
                                    SELECT m.sender_id AS sender, max(m.seq) AS seq
                                      FROM messages m
                                     WHERE m.room_id = v.room AND m.seq > v.os AND m.seq <= v.ns
                                       AND m.sender_id <> v.usr
                                     GROUP BY m.sender_id) x
                             WHERE v.ns > v.os
                            UNION ALL
                            SELECT v.room, v.usr, 'delivered', x.sender, x.seq
                              FROM unnest(mv) v
                             CROSS JOIN LATERAL (
                                    SELECT m.sender_id AS sender, max(m.seq) AS seq
                                      FROM messages m
                                     WHERE m.room_id = v.room AND m.seq > v.od AND m.seq <= v.nd
                                       AND m.sender_id <> v.usr
                                     GROUP BY m.sender_id) x
                             WHERE v.nd > v.od) ev) e
              LEFT JOIN LATERAL (
                    SELECT CASE WHEN count(*) = 0 THEN 'sent'
                                WHEN min(m.seen_seq) >= e.seq THEN 'seen'
                                WHEN min(m.delivered_seq) >= e.seq THEN 'delivered'
                                ELSE 'sent' END AS aggregate
                      FROM room_members m
                     WHERE e.rn = 1 AND m.room_id = e.room AND m.user_id <> e.sender) a ON true) z
     ORDER BY z.room, z.sender, z.member, z.status = 'seen', z.seq;
END
$$;

--
-- Applies receipts: as 0005 (clamped to the room's last_seq, seen implies
-- delivered, never back, members only, several lines of one member count
-- as their maximum, each move logged in watermarks, 's' standing for 'd'
-- too when both reach the same seq). Returns the messageStatus events of
-- chat__events: a jump of both watermarks reports delivered and seen.
--
CREATE OR REPLACE FUNCTION chat_receipts(batch jsonb)
RETURNS TABLE (room text, member text, status text, sender text, seq bigint, aggregate text)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET jit = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    mv chat_move[];
BEGIN
    -- The moves, applied and logged in one statement. The members' rows
    -- are updated in key order (the nested loop follows the sorted
    -- requests), so two transactions moving the same members wait for each
    -- other rather than deadlock. The old values come from the statement's
    -- snapshot: only a concurrent move of the same member (a split-brain
    -- owner) could make them stale, and then the update, which re-reads
    -- the row it waited for, still never moves back; stale old values
    -- would only repeat some of that other transaction's events.
    WITH req AS (
        SELECT q.r, q.u, max(q.d) AS d, max(q.s) FILTER (WHERE q.s >= 0) AS s,
               bool_or(q.s = -1) AS s_all
          FROM jsonb_to_recordset(batch) AS q(r text, u text, d bigint, s bigint)
         WHERE q.r IS NOT NULL AND q.u IS NOT NULL
         GROUP BY q.r, q.u
    ), upd AS (
        UPDATE room_members rm
           SET delivered_seq = GREATEST(rm.delivered_seq, t.nd, t.ns),
               seen_seq = GREATEST(rm.seen_seq, t.ns)
          FROM (SELECT req.r, req.u, x.nd, x.ns, c.delivered_seq AS od, c.seen_seq AS os
                  FROM req
                 CROSS JOIN LATERAL (
                        SELECT LEAST(CASE WHEN req.s_all THEN ro.last_seq
                                          ELSE coalesce(req.s, 0) END,
                                     ro.last_seq) AS ns,
                               LEAST(coalesce(req.d, 0), ro.last_seq) AS nd
                          FROM rooms ro WHERE ro.id = req.r
                        OFFSET 0) x
                 CROSS JOIN LATERAL (
                        SELECT c.delivered_seq, c.seen_seq
                          FROM room_members c WHERE c.room_id = req.r AND c.user_id = req.u
                        OFFSET 0) c
                 WHERE x.nd > c.delivered_seq OR x.ns > c.seen_seq
                 ORDER BY req.r, req.u
                OFFSET 0) t
         WHERE rm.room_id = t.r AND rm.user_id = t.u
           AND (t.nd > rm.delivered_seq OR t.ns > rm.seen_seq)
        RETURNING rm.room_id, rm.user_id, t.od, t.os, rm.delivered_seq AS nd,
                  rm.seen_seq AS ns
    ), wm AS (
        INSERT INTO watermarks (room_id, user_id, kind, seq)
        SELECT upd.room_id, upd.user_id, 'd', upd.nd FROM upd
         WHERE upd.nd > upd.od AND upd.nd > upd.ns
        UNION ALL
        SELECT upd.room_id, upd.user_id, 's', upd.ns FROM upd WHERE upd.ns > upd.os
            ON CONFLICT DO NOTHING
    )
    SELECT ARRAY(SELECT ROW(upd.room_id, upd.user_id, upd.od, upd.os, upd.nd, upd.ns)::chat_move
                   FROM upd)
      INTO mv;

    IF cardinality(mv) = 0 THEN
        RETURN;
    END IF;

    RETURN QUERY SELECT * FROM chat__events(mv);
END
$$;

--
-- Stores a batch of messages: as 0005, except that it does not move the
-- senders' watermarks any more: chat_batch does, with their events.
--
CREATE OR REPLACE FUNCTION chat_ingest(batch jsonb) RETURNS SETOF chat_ingested
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET jit = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_seqscan = off
AS $$
DECLARE
    ins chat_in[];
    g chat_step[];
    joined chat_ingested[];
    nnew int;
    nsame int;
    ninserted int;
    has_peer bool;
    has_open bool;
    locked int;
    -- chat_iso(now()), written out: a SQL function called from PL/pgSQL
    -- is parsed and planned again at every call
    at text := to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
BEGIN
    SELECT array_agg(ROW(t.o, t.r, t.u, coalesce(t.n, ''), t.l, t.x, t.c, t.p, t.sh,
                         t.k)::chat_in),
           bool_or(t.p IS NOT NULL), bool_or(t.k = 'o')
      INTO ins, has_peer, has_open
      FROM jsonb_to_recordset(batch)
           AS t(o int, r text, u text, n text, l text, x text, c text, p text, sh int, k text);
    IF ins IS NULL THEN
        RETURN;
    END IF;

    -- Direct rooms come into being with their first message (as in 0002).
    IF has_peer THEN
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
        IF has_open THEN
            ins := ARRAY(SELECT i FROM unnest(ins) i WHERE i.k IS DISTINCT FROM 'o');
            IF cardinality(ins) = 0 THEN
                RETURN QUERY SELECT * FROM unnest(joined);
                RETURN;
            END IF;
        END IF;
    END IF;

    -- The counters, locked in a fixed order (rooms, then shards, by id)
    -- before the duplicate check, as in 0002.
    WITH r AS (
        SELECT 1 FROM rooms
         WHERE rooms.id = ANY (ARRAY(SELECT DISTINCT i.r FROM unnest(ins) i))
         ORDER BY rooms.id FOR UPDATE
    ), s AS (
        SELECT 1 FROM shards
         WHERE shards.id = ANY (ARRAY(SELECT DISTINCT i.sh FROM unnest(ins) i))
         ORDER BY shards.id FOR UPDATE
    )
    SELECT (SELECT count(*) FROM r) + (SELECT count(*) FROM s) INTO locked;

    -- Each message: duplicate of a stored one, later occurrence of one in
    -- this batch ('same'), forbidden, or new with the next seq and position
    -- (its room's and shard's counters plus its rank among the new ones).
    SELECT array_agg(w.step ORDER BY w.o), count(*) FILTER (WHERE w.status = 'new'),
           count(*) FILTER (WHERE w.status = 'same')
      INTO g, nnew, nsame
      FROM (
        SELECT z.o, z.status,
               ROW(z.o, z.status,
                   CASE WHEN z.status = 'new' THEN nextval('message_ids') ELSE z.mid END,
                   CASE WHEN z.status = 'new'
                        THEN z.last_seq + row_number() OVER (PARTITION BY z.r, z.status = 'new'
                                                             ORDER BY z.o)
                        ELSE z.mseq END,
                   CASE WHEN z.status = 'new' THEN z.sh ELSE z.msh END,
                   CASE WHEN z.status = 'new'
                        THEN z.pos + row_number() OVER (PARTITION BY z.sh, z.status = 'new'
                                                        ORDER BY z.o)
                        ELSE z.mpos END,
                   CASE WHEN z.status = 'new' THEN at
                        WHEN z.status = 'dup' THEN chat_iso(z.mat) END,
                   z.r, z.u, z.n, z.l, z.x, z.c)::chat_step AS step
          FROM (SELECT y.*,
                       CASE WHEN y.first <> y.o THEN 'same'
                            WHEN y.mid IS NOT NULL THEN 'dup'
                            -- (a room deleted before the lock has no counter)
                            WHEN y.member IS NULL OR y.last_seq IS NULL THEN 'forbidden'
                            ELSE 'new' END AS status
                  FROM (SELECT f.*, d.*, mb.member,
                               (SELECT ro.last_seq FROM rooms ro WHERE ro.id = f.r) AS last_seq,
                               (SELECT s.pos FROM shards s WHERE s.id = f.sh) AS pos
                          FROM (SELECT i.*,
                                       CASE WHEN i.c IS NULL THEN i.o
                                            ELSE min(i.o) OVER (PARTITION BY i.u, i.c) END AS first
                                  FROM unnest(ins) i) f
                          LEFT JOIN LATERAL (
                                SELECT m.id AS mid, m.seq AS mseq, m.shard AS msh,
                                       m.shard_pos AS mpos, m.created_at AS mat
                                  FROM messages m
                                 WHERE f.first = f.o AND m.sender_id = f.u
                                   AND m.client_msg_id = f.c
                                OFFSET 0) d ON true
                          -- (a LATERAL rather than EXISTS, which the planner may
                          -- turn into a hash of every member of every room)
                          LEFT JOIN LATERAL (
                                SELECT true AS member FROM room_members rm
                                 WHERE rm.room_id = f.r AND rm.user_id = f.u
                                OFFSET 0) mb ON true
                        OFFSET 0) y) z) w;

    IF nnew > 0 THEN
        -- One statement: the counters and the messages.
        WITH n AS (
            SELECT x.* FROM unnest(g) x WHERE x.status = 'new'
        ), r AS (
            UPDATE rooms SET last_seq = k.seq, last_at = now()
              FROM (SELECT n.r, max(n.seq) AS seq FROM n GROUP BY n.r) k
             WHERE rooms.id = k.r
        ), s AS (
            UPDATE shards SET pos = k.pos
              FROM (SELECT n.shard, max(n.shard_pos) AS pos FROM n GROUP BY n.shard) k
             WHERE shards.id = k.shard
        ), i AS (
            INSERT INTO messages (id, room_id, seq, shard, shard_pos, sender_id, client_msg_id,
                                  first_name, last_name, body, created_at)
            SELECT n.id, n.r, n.seq, n.shard, n.shard_pos, n.u, n.c, n.n, n.l, n.x, now()
              FROM n
                ON CONFLICT (sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL
                DO NOTHING
            RETURNING 1)
        SELECT count(*) INTO ninserted FROM i;

        IF ninserted < nnew THEN
            -- another transaction stored the same (sender, clientMsgId)
            -- meanwhile: 'retry', 'dup' in the next batch (0002)
            g := ARRAY(
                SELECT ROW(y.o,
                           CASE WHEN y.status = 'new' AND st.id IS NULL THEN 'retry'
                                ELSE y.status END,
                           y.id, y.seq, y.shard, y.shard_pos, y.created_at, y.r, y.u, y.n, y.l,
                           y.x, y.c)::chat_step
                  FROM unnest(g) y
                  LEFT JOIN LATERAL (
                        SELECT m.id FROM messages m
                         WHERE y.status = 'new' AND m.room_id = y.r AND m.seq = y.seq
                           AND m.id = y.id
                        OFFSET 0) st ON true
                 ORDER BY y.o);
        END IF;
    END IF;

    IF nsame = 0 THEN
        RETURN QUERY
        SELECT x.o, x.status, x.id, x.seq, x.shard, x.shard_pos, x.created_at, x.r, x.u
          FROM unnest(g) x;
    ELSE
        -- a later occurrence answers with its first's values, 'dup' if that
        -- one is new
        RETURN QUERY
        SELECT y.o,
               CASE WHEN y.status <> 'same' THEN y.status
                    WHEN y.f_status = 'new' THEN 'dup' ELSE y.f_status END,
               CASE WHEN y.status <> 'same' THEN y.id ELSE y.f_id END,
               CASE WHEN y.status <> 'same' THEN y.seq ELSE y.f_seq END,
               CASE WHEN y.status <> 'same' THEN y.shard ELSE y.f_shard END,
               CASE WHEN y.status <> 'same' THEN y.shard_pos ELSE y.f_pos END,
               CASE WHEN y.status <> 'same' THEN y.created_at ELSE y.f_at END,
               y.r, y.u
          FROM (SELECT x.*,
                       first_value(x.status) OVER w AS f_status,
                       first_value(x.id) OVER w AS f_id,
                       first_value(x.seq) OVER w AS f_seq,
                       first_value(x.shard) OVER w AS f_shard,
                       first_value(x.shard_pos) OVER w AS f_pos,
                       first_value(x.created_at) OVER w AS f_at
                  FROM unnest(g) x
                WINDOW w AS (PARTITION BY x.u, x.c ORDER BY x.o)) y;
    END IF;

    RETURN QUERY SELECT * FROM unnest(joined);
END
$$;

--
-- One batch of the ingest loop, in one transaction: the receipts read with
-- it, then the messages, then the senders' own watermarks (a sender has
-- seen its room up to its message). Rows as 0002's chat_batch ('s' rows of
-- the senders' moves follow the 'm' and 'j' rows).
--
CREATE OR REPLACE FUNCTION chat_batch(msgs jsonb, receipts jsonb)
RETURNS TABLE (k "char", o int, status text, id bigint, seq bigint, shard int,
               shard_pos bigint, created_at text, room text, usr text, sender text,
               aggregate text)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET jit = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    res chat_ingested[];
    mv chat_move[];
BEGIN
    IF receipts IS NOT NULL AND jsonb_array_length(receipts) > 0 THEN
        RETURN QUERY
        SELECT 's'::"char", NULL::int, e.status, NULL::bigint, e.seq, NULL::int, NULL::bigint,
               NULL::text, e.room, e.member, e.sender, e.aggregate
          FROM chat_receipts(receipts) e;
    END IF;
    IF msgs IS NULL OR jsonb_array_length(msgs) = 0 THEN
        RETURN;
    END IF;
    res := ARRAY(SELECT x FROM chat_ingest(msgs) x);
    RETURN QUERY
    SELECT CASE WHEN x.status = 'joined' THEN 'j' ELSE 'm' END::"char", x.o, x.status,
           x.id, x.seq, x.shard, x.shard_pos, x.created_at, x.room, x.usr, NULL::text,
           NULL::text
      FROM unnest(res) x;

    -- Each sender's move to its last new message in each room: seen (and
    -- delivered) up to there, logged ('s' stands for 'd'; delivered may
    -- already be further) and reported like a receipt's. Only up to its
    -- last message before another sender's message of this batch: that
    -- one was stored together with the sender's, never shown to it (two
    -- people writing at once), and its receipt will tell. A 'dup' moved
    -- the watermarks when it was new; a 'retry' moves them when it is
    -- stored. One statement, as chat_receipts: no clamp is needed (the
    -- seq was just given out), and the members' rows are updated in key
    -- order.
    WITH n AS (
        -- nr = nu: every new message of the room in this batch up to this
        -- one is the sender's own
        SELECT x.room, x.usr, x.seq,
               row_number() OVER (PARTITION BY x.room ORDER BY x.seq) AS nr,
               row_number() OVER (PARTITION BY x.room, x.usr ORDER BY x.seq) AS nu
          FROM unnest(res) x
         WHERE x.status = 'new'
    ), k AS (
        SELECT n.room, n.usr, max(n.seq) AS seq FROM n WHERE n.nr = n.nu
         GROUP BY n.room, n.usr
    ), upd AS (
        UPDATE room_members rm
           SET delivered_seq = GREATEST(rm.delivered_seq, t.seq), seen_seq = t.seq
          FROM (SELECT k.room, k.usr, k.seq, c.delivered_seq AS od, c.seen_seq AS os
                  FROM k
                 CROSS JOIN LATERAL (
                        SELECT c.delivered_seq, c.seen_seq
                          FROM room_members c WHERE c.room_id = k.room AND c.user_id = k.usr
                        OFFSET 0) c
                 WHERE c.seen_seq < k.seq
                 ORDER BY k.room, k.usr
                OFFSET 0) t
         WHERE rm.room_id = t.room AND rm.user_id = t.usr AND rm.seen_seq < t.seq
        RETURNING rm.room_id, rm.user_id, t.od, t.os, rm.delivered_seq AS nd,
                  rm.seen_seq AS ns
    ), wm AS (
        INSERT INTO watermarks (room_id, user_id, kind, seq)
        SELECT upd.room_id, upd.user_id, 's', upd.ns FROM upd
            ON CONFLICT DO NOTHING
    )
    SELECT ARRAY(SELECT ROW(upd.room_id, upd.user_id, upd.od, upd.os, upd.nd, upd.ns)::chat_move
                   FROM upd)
      INTO mv;
    IF cardinality(mv) > 0 THEN
        RETURN QUERY
        SELECT 's'::"char", NULL::int, e.status, NULL::bigint, e.seq, NULL::int, NULL::bigint,
               NULL::text, e.room, e.member, e.sender, e.aggregate
          FROM chat__events(mv) e;
    END IF;
END
$$;
