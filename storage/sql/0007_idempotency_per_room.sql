-- 0007: idempotency is per (sender, room, clientMsgId), not per (sender,
-- clientMsgId) (docs/storage.md "Storage's batch"; docs/decisions.md).
-- Clients that number messages per conversation reused "1" in a second
-- room, and that message was acked with the first room's message and never
-- stored. A repeat with another text is not a retry either: it is
-- 'reused', answered with an error and not stored.

-- The old unique index is stricter than the new one, so rows it admitted
-- satisfy the new one: build it, then drop the old one. (Built inside the
-- migration's transaction: messages is locked for writes meanwhile.)
CREATE UNIQUE INDEX messages_idempotency_room ON messages (sender_id, room_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
DROP INDEX messages_idempotency;
ALTER INDEX messages_idempotency_room RENAME TO messages_idempotency;

-- chat_ingest, rewritten for the new key here, is in storage/sql/functions/.
