-- chat_batch: one batch of the ingest loop (storage/ingest/commit.c), in one
-- transaction: the receipts read with it (chat_receipts), then the messages
-- (chat_ingest), then the senders' own watermarks (a sender has seen its
-- room up to its message). Receipts come first so that "seen everything"
-- (-1) cannot cover messages of this very batch, which the member's sockets
-- have not been sent yet. Rows:
--   k 'm': a message, as chat_ingest (o, status, id, seq, shard, shard_pos,
--          created_at, room, usr = sender)
--   k 'j': usr joined direct room room
--   k 's': a messageStatus event: room, usr = member, status, sender, seq,
--          aggregate (the receipts' first, then the senders' moves)
-- Settings: the ingest connection's session settings (README.md in this
-- folder: plans made once per connection, probing indexes row by row), not
-- SET clauses, which cost a save and restore at every call.
CREATE OR REPLACE FUNCTION chat_batch(msgs jsonb, receipts jsonb)
RETURNS TABLE (k "char", o int, status text, id bigint, seq bigint, shard int,
               shard_pos bigint, created_at text, room text, usr text, sender text,
               aggregate text)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    res chat_ingested[];
    mv chat_move[];
    one chat_ingested;
    od bigint;
    os bigint;
    nd bigint;
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
    -- one message with no direct room to create: small statements instead
    -- of chat_ingest's large plans (chat__ingest_one.sql)
    IF jsonb_array_length(msgs) = 1 AND msgs->0->>'p' IS NULL AND msgs->0->>'k' IS NULL THEN
        res := ARRAY(SELECT x FROM chat__ingest_one(msgs->0) x);
    ELSE
        res := ARRAY(SELECT x FROM chat_ingest(msgs) x);
    END IF;
    RETURN QUERY
    SELECT CASE WHEN x.status = 'joined' THEN 'j' ELSE 'm' END::"char", x.o, x.status,
           x.id, x.seq, x.shard, x.shard_pos, x.created_at, x.room, x.usr, NULL::text,
           NULL::text
      FROM unnest(res) x;

    -- The move of the one new message of a one-message batch, as the
    -- statement below makes it for any batch, in small statements
    IF cardinality(res) = 1 AND res[1].status = 'new' AND res[1].o IS NOT NULL THEN
        one := res[1];
        SELECT c.delivered_seq, c.seen_seq INTO od, os
          FROM room_members c WHERE c.room_id = one.room AND c.user_id = one.usr;
        IF os < one.seq THEN
            UPDATE room_members rm
               SET delivered_seq = GREATEST(rm.delivered_seq, one.seq), seen_seq = one.seq
             WHERE rm.room_id = one.room AND rm.user_id = one.usr AND rm.seen_seq < one.seq
            RETURNING rm.delivered_seq INTO nd;
            IF FOUND AND EXISTS (SELECT 1 FROM messages m
                                  WHERE m.room_id = one.room AND m.seq > os AND m.seq <= one.seq
                                    AND m.sender_id <> one.usr) THEN
                INSERT INTO watermarks (room_id, user_id, kind, seq)
                VALUES (one.room, one.usr, 's', one.seq)
                    ON CONFLICT DO NOTHING;
                RETURN QUERY
                SELECT 's'::"char", NULL::int, e.status, NULL::bigint, e.seq, NULL::int,
                       NULL::bigint, NULL::text, e.room, e.member, e.sender, e.aggregate
                  FROM chat__events(ARRAY[ROW(one.room, one.usr, od, os, nd,
                                              one.seq)::chat_move]) e;
            END IF;
        END IF;
        RETURN;
    END IF;

    -- Each sender's move to its last new message in each room: seen (and
    -- delivered) up to there, logged ('s' stands for 'd'; delivered may
    -- already be further) and reported like a receipt's, unless the moved
    -- range holds only the sender's own messages (the usual case: it had
    -- seen everything before writing). Such a move changes no status
    -- anyone reads and raises no event, and no receipt time needs its row:
    -- the receipts API looks a member's times up for others' messages, and
    -- the first row at or past such a message is the move that covered it
    -- (docs/storage.md "Status"). Only up to its
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
    ), seen AS (
        -- the moves over a message of someone else (seen covers delivered)
        SELECT upd.* FROM upd
         WHERE EXISTS (SELECT 1 FROM messages m
                        WHERE m.room_id = upd.room_id AND m.seq > upd.os AND m.seq <= upd.ns
                          AND m.sender_id <> upd.user_id)
    ), wm AS (
        INSERT INTO watermarks (room_id, user_id, kind, seq)
        SELECT seen.room_id, seen.user_id, 's', seen.ns FROM seen
            ON CONFLICT DO NOTHING
    )
    SELECT ARRAY(SELECT ROW(seen.room_id, seen.user_id, seen.od, seen.os, seen.nd,
                            seen.ns)::chat_move
                   FROM seen)
      INTO mv;
    IF cardinality(mv) > 0 THEN
        RETURN QUERY
        SELECT 's'::"char", NULL::int, e.status, NULL::bigint, e.seq, NULL::int, NULL::bigint,
               NULL::text, e.room, e.member, e.sender, e.aggregate
          FROM chat__events(mv) e;
    END IF;
END
$$;
