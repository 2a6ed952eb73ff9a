-- chat_batch_load: chat_batch, then (in the same transaction, after its
-- writes) what the shard owner keeps in memory of the rooms and shards of
-- the batch (storage/ingest/rooms.c; docs/storage.md "The room cache").
-- The rows of chat_batch, then:
--   k 'r': a room: room, seq = last_seq, id = its room_versions.v (0: none)
--   k 'c': a member: room, usr, id = delivered_seq, seq = seen_seq
--   k 'h': one of the room's last `ring` messages: room, seq, usr = sender
--   k 'p': a shard: shard, shard_pos = pos
-- A room of the list that does not exist has no row.
-- Settings: the ingest connection's (README.md in this folder).
CREATE OR REPLACE FUNCTION chat_batch_load(msgs jsonb, receipts jsonb, rooms text[],
                                           shards int[], ring int)
RETURNS TABLE (k "char", o int, status text, id bigint, seq bigint, shard int,
               shard_pos bigint, created_at text, room text, usr text, sender text,
               aggregate text)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT * FROM chat_batch(msgs, receipts);
    RETURN QUERY
    SELECT 'r'::"char", NULL::int, NULL::text,
           coalesce((SELECT x.v FROM room_versions x WHERE x.room_id = ro.id), 0), ro.last_seq,
           NULL::int, NULL::bigint, NULL::text, ro.id, NULL::text, NULL::text, NULL::text
      FROM rooms ro WHERE ro.id = ANY (chat_batch_load.rooms);
    RETURN QUERY
    SELECT 'c'::"char", NULL::int, NULL::text, rm.delivered_seq, rm.seen_seq, NULL::int,
           NULL::bigint, NULL::text, rm.room_id, rm.user_id, NULL::text, NULL::text
      FROM room_members rm WHERE rm.room_id = ANY (chat_batch_load.rooms);
    RETURN QUERY
    SELECT 'h'::"char", NULL::int, NULL::text, NULL::bigint, h.seq, NULL::int, NULL::bigint,
           NULL::text, ro.id, h.sender_id, NULL::text, NULL::text
      FROM rooms ro
     CROSS JOIN LATERAL (
            SELECT m.seq, m.sender_id FROM messages m
             WHERE m.room_id = ro.id AND m.seq > ro.last_seq - ring
             ORDER BY m.seq) h
     WHERE ro.id = ANY (chat_batch_load.rooms);
    RETURN QUERY
    SELECT 'p'::"char", NULL::int, NULL::text, NULL::bigint, NULL::bigint, s.id, s.pos,
           NULL::text, NULL::text, NULL::text, NULL::text, NULL::text
      FROM shards s WHERE s.id = ANY (chat_batch_load.shards);
END
$$;
