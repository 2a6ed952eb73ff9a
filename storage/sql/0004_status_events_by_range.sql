-- 0004: messageStatus events look up each watermark move's range through
-- the primary key. 0002's version joined the whole batch of moves with
-- messages, and the planner hash-joined a scan of every stored message for
-- every batch of receipts (found with auto_explain: 60% of a receipts
-- batch on 40k messages, growing with the table).

CREATE OR REPLACE FUNCTION chat__status_events(mv chat_move[])
RETURNS TABLE (room text, member text, status text, sender text, seq bigint, aggregate text)
LANGUAGE sql STABLE AS $$
    -- LATERAL per move: each looks at its own range of the room through the
    -- primary key (room_id, seq); a join over the whole batch let the
    -- planner hash-join a scan of every message ever stored.
    WITH mv AS (SELECT * FROM unnest(mv)),
    ev AS (
        SELECT v.room, v.usr AS member, 'seen' AS status, x.sender, x.seq
          FROM mv v
         CROSS JOIN LATERAL (
                SELECT m.sender_id AS sender, max(m.seq) AS seq
                  FROM messages m
                 WHERE m.room_id = v.room AND m.seq > v.os AND m.seq <= v.ns
                   AND m.sender_id <> v.usr
                 GROUP BY m.sender_id) x
         WHERE v.ns > v.os
        UNION ALL
        SELECT v.room, v.usr, 'delivered', x.sender, x.seq
          FROM mv v
         CROSS JOIN LATERAL (
                SELECT m.sender_id AS sender, max(m.seq) AS seq
                  FROM messages m
                 WHERE m.room_id = v.room AND m.seq > GREATEST(v.od, v.ns) AND m.seq <= v.nd
                   AND m.sender_id <> v.usr
                 GROUP BY m.sender_id) x
         WHERE v.nd > GREATEST(v.od, v.ns)
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
