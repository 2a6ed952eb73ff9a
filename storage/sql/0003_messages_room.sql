-- 0003: a room's messages go with the room by trigger instead of a foreign
-- key. The key's check ran once per inserted message (a row lock on the room
-- each time) and cost a fifth of a batch; chat_ingest holds the rooms of its
-- batch locked FOR UPDATE anyway and only stores messages of members, whose
-- room_members rows do keep their foreign key.
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_room_id_fkey;

CREATE FUNCTION chat__room_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM messages WHERE room_id = OLD.id;
    RETURN OLD;
END
$$;

CREATE TRIGGER rooms_delete_messages AFTER DELETE ON rooms
    FOR EACH ROW EXECUTE FUNCTION chat__room_deleted();
