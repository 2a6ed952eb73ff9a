-- chat_receipts: applies receipts. batch: a JSON array of {r, u, d, s}:
-- member u of room r has been delivered up to d and has seen up to s (NULL:
-- no news; s -1: everything stored so far). Clamped to the room's last_seq,
-- seen implies delivered, never back, members only, several lines of one
-- member count as their maximum, each move logged in watermarks ('s'
-- standing for 'd' too when both reach the same seq). Returns the
-- messageStatus events of chat__events: a jump of both watermarks reports
-- delivered and seen.
-- Settings: the ingest connection's session settings (README.md in this
-- folder: plans made once per connection, probing indexes row by row), not
-- SET clauses, which cost a save and restore at every call.
CREATE OR REPLACE FUNCTION chat_receipts(batch jsonb)
RETURNS TABLE (room text, member text, status text, sender text, seq bigint, aggregate text)
LANGUAGE plpgsql
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
