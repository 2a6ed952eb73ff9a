-- chat_ingest: stores a batch of messages. batch: a JSON array of
--   {o, r, u, n, l, x, c, p, sh}   (see the type chat_in; absent = NULL)
-- and of direct rooms to open (docs/storage.md, k = o)
--   {o, k: "o", r, u, p, sh}
-- The caller has checked every field, that sh is r's shard, and for p that r
-- is the direct room of u and p.
--
-- Returns one row per input message ordinal (see the type chat_ingested)
-- plus 'joined' rows (usr became a member of direct room room); opening a
-- room returns nothing but those. Direct rooms come into being with their
-- first message or their open. New messages get the next per-room seq and
-- per-shard position in ordinal order. A message repeats an earlier one
-- when its (sender, room, clientMsgId) does (stored, or earlier in the
-- batch): with the same text it is 'dup' (answered with the original's
-- values), with another text 'reused' (id..created_at NULL; nothing
-- stored). A sender who is not a member is 'forbidden'. 'retry': another
-- transaction stored the same key concurrently (a split-brain owner); run
-- it again in the next batch, where it is 'dup'. (Its room seq and shard
-- position were consumed: such a rare race leaves a gap in both, which
-- readers tolerate.) It moves no watermarks: chat_batch moves the senders'
-- own, with their events.
-- Settings: the ingest connection's session settings (README.md in this
-- folder: plans made once per connection, probing indexes row by row), not
-- SET clauses, which cost a save and restore at every call.
CREATE OR REPLACE FUNCTION chat_ingest(batch jsonb) RETURNS SETOF chat_ingested
LANGUAGE plpgsql
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

    -- Each message: duplicate of a stored one ('dup', or 'reused' with
    -- another text), later occurrence of one in this batch ('same'),
    -- forbidden, or new with the next seq and position (its room's and
    -- shard's counters plus its rank among the new ones).
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
          -- (a 'reused' one names no message)
          FROM (SELECT y.o, y.r, y.u, y.n, y.l, y.x, y.c, y.sh, y.last_seq, y.pos, y.status,
                       CASE WHEN y.status = 'dup' THEN y.mid END AS mid,
                       CASE WHEN y.status = 'dup' THEN y.mseq END AS mseq,
                       CASE WHEN y.status = 'dup' THEN y.msh END AS msh,
                       CASE WHEN y.status = 'dup' THEN y.mpos END AS mpos,
                       CASE WHEN y.status = 'dup' THEN y.mat END AS mat
                  FROM (SELECT x.*,
                               CASE WHEN x.first <> x.o THEN 'same'
                                    WHEN x.mid IS NOT NULL AND x.mbody = x.x THEN 'dup'
                                    WHEN x.mid IS NOT NULL THEN 'reused'
                                    -- (a room deleted before the lock has no counter)
                                    WHEN x.member IS NULL OR x.last_seq IS NULL THEN 'forbidden'
                                    ELSE 'new' END AS status
                          FROM (SELECT f.*, d.*, mb.member,
                                       (SELECT ro.last_seq FROM rooms ro WHERE ro.id = f.r) AS last_seq,
                                       (SELECT s.pos FROM shards s WHERE s.id = f.sh) AS pos
                                  FROM (SELECT i.*,
                                               CASE WHEN i.c IS NULL THEN i.o
                                                    ELSE min(i.o) OVER (PARTITION BY i.u, i.r, i.c)
                                                    END AS first
                                          FROM unnest(ins) i) f
                                  LEFT JOIN LATERAL (
                                        SELECT m.id AS mid, m.seq AS mseq, m.shard AS msh,
                                               m.shard_pos AS mpos, m.created_at AS mat,
                                               m.body AS mbody
                                          FROM messages m
                                         WHERE f.first = f.o AND m.sender_id = f.u
                                           AND m.room_id = f.r AND m.client_msg_id = f.c
                                        OFFSET 0) d ON true
                                  -- (a LATERAL rather than EXISTS, which the planner
                                  -- may turn into a hash of every member of every room)
                                  LEFT JOIN LATERAL (
                                        SELECT true AS member FROM room_members rm
                                         WHERE rm.room_id = f.r AND rm.user_id = f.u
                                        OFFSET 0) mb ON true
                                OFFSET 0) x) y) z) w;

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
                ON CONFLICT (sender_id, room_id, client_msg_id) WHERE client_msg_id IS NOT NULL
                DO NOTHING
            RETURNING 1)
        SELECT count(*) INTO ninserted FROM i;

        IF ninserted < nnew THEN
            -- another transaction stored the same (sender, room,
            -- clientMsgId) meanwhile: 'retry', 'dup' or 'reused' in the
            -- next batch (0002)
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
        -- a later occurrence answers with its first's values ('dup' if
        -- that one is new), or is 'reused' when its text differs
        RETURN QUERY
        SELECT y.o, v.status,
               CASE WHEN v.status = 'reused' THEN NULL
                    WHEN y.status <> 'same' THEN y.id ELSE y.f_id END,
               CASE WHEN v.status = 'reused' THEN NULL
                    WHEN y.status <> 'same' THEN y.seq ELSE y.f_seq END,
               CASE WHEN v.status = 'reused' THEN NULL
                    WHEN y.status <> 'same' THEN y.shard ELSE y.f_shard END,
               CASE WHEN v.status = 'reused' THEN NULL
                    WHEN y.status <> 'same' THEN y.shard_pos ELSE y.f_pos END,
               CASE WHEN v.status = 'reused' THEN NULL
                    WHEN y.status <> 'same' THEN y.created_at ELSE y.f_at END,
               y.r, y.u
          FROM (SELECT x.*,
                       first_value(x.status) OVER w AS f_status,
                       first_value(x.id) OVER w AS f_id,
                       first_value(x.seq) OVER w AS f_seq,
                       first_value(x.shard) OVER w AS f_shard,
                       first_value(x.shard_pos) OVER w AS f_pos,
                       first_value(x.created_at) OVER w AS f_at,
                       first_value(x.x) OVER w AS f_x
                  FROM unnest(g) x
                WINDOW w AS (PARTITION BY x.u, x.r, x.c ORDER BY x.o)) y
         CROSS JOIN LATERAL (
                SELECT CASE WHEN y.status <> 'same' THEN y.status
                            WHEN y.x IS DISTINCT FROM y.f_x THEN 'reused'
                            WHEN y.f_status = 'new' THEN 'dup' ELSE y.f_status END AS status) v;
    END IF;

    RETURN QUERY SELECT * FROM unnest(joined);
END
$$;
