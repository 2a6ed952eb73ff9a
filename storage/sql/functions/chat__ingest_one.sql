-- chat__ingest_one: chat_ingest for a batch of one message m ({o, r, u, n,
-- l, x, c, sh}: no direct room to create or open, i.e. no p and no k), with
-- the same result rows, in small statements. chat_ingest's set-based
-- statements are large plans whose executor start-up, redone at every
-- execution, costs more than the work for one message (docs/benchmarks.md
-- "PostgreSQL per batch transaction"); a batch of one message is what a
-- quiet chat sends. The same steps in the same order: lock the room, then
-- the shard; a stored (sender, room, clientMsgId) makes it 'dup' (same
-- text: the original's values) or 'reused'; then a room gone or a sender
-- not a member makes it 'forbidden'; else the next seq and position,
-- counters updated, inserted, or 'retry' when another transaction stored
-- the same key meanwhile (its seq and position stay consumed, as in
-- chat_ingest). chat_batch decides which of the two to call.
CREATE OR REPLACE FUNCTION chat__ingest_one(m jsonb) RETURNS SETOF chat_ingested
LANGUAGE plpgsql AS $$
DECLARE
    v_o int := (m->>'o')::int;
    v_r text := m->>'r';
    v_u text := m->>'u';
    v_c text := m->>'c';
    v_x text := m->>'x';
    v_sh int := (m->>'sh')::int;
    v_last bigint;
    v_pos bigint;
    v_id bigint;
    d record;
    -- chat_iso(now()), written out (see chat_ingest)
    v_at text := to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
BEGIN
    SELECT ro.last_seq INTO v_last FROM rooms ro WHERE ro.id = v_r FOR UPDATE;
    SELECT s.pos INTO v_pos FROM shards s WHERE s.id = v_sh FOR UPDATE;

    IF v_c IS NOT NULL THEN
        SELECT g.id, g.seq, g.shard, g.shard_pos, chat_iso(g.created_at) AS at, g.body
          INTO d
          FROM messages g
         WHERE g.sender_id = v_u AND g.room_id = v_r AND g.client_msg_id = v_c;
        IF FOUND THEN
            IF d.body = v_x THEN
                RETURN NEXT ROW(v_o, 'dup', d.id, d.seq, d.shard, d.shard_pos, d.at, v_r,
                                v_u)::chat_ingested;
            ELSE
                RETURN NEXT ROW(v_o, 'reused', NULL, NULL, NULL, NULL, NULL, v_r,
                                v_u)::chat_ingested;
            END IF;
            RETURN;
        END IF;
    END IF;

    -- (a room deleted before the lock has no counter)
    IF v_last IS NULL OR NOT EXISTS (SELECT 1 FROM room_members rm
                                      WHERE rm.room_id = v_r AND rm.user_id = v_u) THEN
        RETURN NEXT ROW(v_o, 'forbidden', NULL, NULL, NULL, NULL, NULL, v_r,
                        v_u)::chat_ingested;
        RETURN;
    END IF;

    v_id := nextval('message_ids');
    v_last := v_last + 1;
    v_pos := v_pos + 1;
    UPDATE rooms SET last_seq = v_last, last_at = now() WHERE rooms.id = v_r;
    UPDATE shards SET pos = v_pos WHERE shards.id = v_sh;
    INSERT INTO messages (id, room_id, seq, shard, shard_pos, sender_id, client_msg_id,
                          first_name, last_name, body, created_at)
    VALUES (v_id, v_r, v_last, v_sh, v_pos, v_u, v_c, coalesce(m->>'n', ''), m->>'l', v_x,
            now())
        ON CONFLICT (sender_id, room_id, client_msg_id) WHERE client_msg_id IS NOT NULL
        DO NOTHING;
    RETURN NEXT ROW(v_o, CASE WHEN FOUND THEN 'new' ELSE 'retry' END, v_id, v_last, v_sh, v_pos,
                    v_at, v_r, v_u)::chat_ingested;
END
$$;
