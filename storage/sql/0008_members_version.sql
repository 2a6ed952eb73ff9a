-- 0008: a version of each room's member set (room_versions), bumped by
-- every insert and delete of a member, whoever makes it (docs/storage.md
-- "The room cache"; decision 51). The owner of a shard keeps its rooms'
-- members and watermarks in memory and decides membership and
-- messageStatus events there; each of its batch statements checks that the
-- versions it decided with are still the rooms' (a join or leave through
-- the API, a direct room created, a row deleted by hand): if not, the
-- statement aborts and the batch runs again through chat_batch, which
-- reloads the rooms.
--
-- A table of its own rather than a column of rooms: the batch statements
-- lock a room's row and then its members' rows; a trigger bumping a column
-- of rooms after a member's row is deleted would lock them in the other
-- order, and the two could deadlock. The batch statements only read this
-- table.
CREATE TABLE room_versions (
    room_id text PRIMARY KEY,
    v       bigint NOT NULL
);

CREATE FUNCTION chat__members_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO room_versions AS x (room_id, v)
    VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.room_id ELSE NEW.room_id END, 1)
        ON CONFLICT (room_id) DO UPDATE SET v = x.v + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER room_members_changed AFTER INSERT OR DELETE ON room_members
    FOR EACH ROW EXECUTE FUNCTION chat__members_changed();

-- A member's row is found through (room_id, user_id) in the batch
-- statements, but under their generic plans the planner may take the index
-- on user_id alone (found with EXPLAIN of the room cache's statement: it
-- did): for a user in many rooms that reads all their memberships. With
-- user_id then room_id, either index finds the row in one probe, and "the
-- rooms of a user" (the API, replay) reads the same leading column.
CREATE INDEX room_members_user_room ON room_members (user_id, room_id);
DROP INDEX room_members_user;
