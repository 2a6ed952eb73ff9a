-- 0001: tables. Ids are chat ids (1..128 printable ASCII bytes).
-- Migrations are applied in file-name order, each in its own transaction,
-- under pg_advisory_xact_lock so replicas starting together apply each once.

CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- One row per ingest shard: the last shard position given to a message.
CREATE TABLE shards (
    id  int PRIMARY KEY,
    pos bigint NOT NULL DEFAULT 0
);

CREATE TABLE rooms (
    id         text PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('dm', 'group')),
    name       text,
    created_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seq   bigint NOT NULL DEFAULT 0,
    last_at    timestamptz
);

-- Watermarks: the member has had every message up to delivered_seq written to
-- one of its sockets, and has seen every message up to seen_seq.
-- seen_seq <= delivered_seq <= rooms.last_seq.
CREATE TABLE room_members (
    room_id       text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id       text NOT NULL,
    joined_at     timestamptz NOT NULL DEFAULT now(),
    delivered_seq bigint NOT NULL DEFAULT 0,
    seen_seq      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_user ON room_members (user_id);

CREATE SEQUENCE message_ids;

CREATE TABLE messages (
    room_id       text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq           bigint NOT NULL,
    id            bigint NOT NULL DEFAULT nextval('message_ids'),
    shard         int NOT NULL,
    shard_pos     bigint NOT NULL,
    sender_id     text NOT NULL,
    client_msg_id text,
    first_name    text NOT NULL DEFAULT '',
    last_name     text,
    body          text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, seq)
);
CREATE UNIQUE INDEX messages_idempotency ON messages (sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
CREATE INDEX messages_room_pos ON messages (room_id, shard_pos);

-- Every forward move of a watermark (kind 'd' delivered, 's' seen), so a
-- receipt can say when a member got to a message: the first row with
-- seq >= the message's seq.
CREATE TABLE watermarks (
    room_id text NOT NULL,
    user_id text NOT NULL,
    kind    "char" NOT NULL CHECK (kind IN ('d', 's')),
    seq     bigint NOT NULL,
    at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id, kind, seq)
);
