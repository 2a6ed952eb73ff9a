-- chat__events: the messageStatus events of watermark moves mv (old and new
-- values; docs/storage.md "Status"): for each move of member M and each
-- sender X <> M with messages in a moved range, X's latest message in the
-- delivered range ('delivered') and in the seen range ('seen'), with its
-- aggregate; per (room, sender, member) delivered comes before seen, so a
-- sender hears each status once and in order (a delivered event's
-- aggregate is at most "delivered": the seen that follows it has not been
-- told yet). Runs under the ingest connection's session settings, as its
-- callers (README.md in this folder).
CREATE OR REPLACE FUNCTION chat__events(mv chat_move[])
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
