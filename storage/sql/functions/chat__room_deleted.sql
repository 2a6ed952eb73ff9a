-- chat__room_deleted: the trigger rooms_delete_messages (0003): a room's
-- messages go with the room (instead of a foreign key, whose check cost a
-- row lock on the room for every message stored). 0003 defines it too: its
-- trigger needs the function while the migration runs.
CREATE OR REPLACE FUNCTION chat__room_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM messages WHERE room_id = OLD.id;
    RETURN OLD;
END
$$;
