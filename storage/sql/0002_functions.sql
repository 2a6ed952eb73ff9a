-- 0002: the types of the functions chat-storage calls once per batch
-- (docs/storage.md, "Storage's batch" and "Status"). Set-based: a batch of a
-- thousand messages is a handful of statements, not a thousand loops.
--
-- Entry point: chat_batch(msgs, receipts), one call per batch, so a batch is
-- one round trip and one transaction (a function runs inside the statement's
-- transaction). chat_ingest and chat_receipts can be called on their own.
--
-- This migration also created the functions chat_iso, chat_aggregate,
-- chat_ingest, chat_receipts, chat_batch and the helpers chat__move and
-- chat__status_events (dropped by 0005). Their text today is in
-- storage/sql/functions/, which chat-storage applies after the migrations at
-- every start; git history has the versions of each migration.

-- A message of a batch, as chat_ingest reads it.
CREATE TYPE chat_in AS (
    o  int,    -- ordinal in the batch (stream order within each shard)
    r  text,   -- room
    u  text,   -- sender
    n  text,   -- first name
    l  text,   -- last name or NULL
    x  text,   -- text
    c  text,   -- clientMsgId or NULL
    p  text,   -- peer of a direct room the sender opened, or NULL
    sh int,    -- ingest shard of r
    k  text    -- 'o': only open direct room r of u and p (joinChat); else NULL
);

-- One result row of chat_ingest.
--   status 'new' | 'dup' | 'forbidden' | 'retry': one per input ordinal o,
--     with room and usr (the sender); id..created_at for new and dup (a dup
--     carries the original message's values).
--   status 'joined': usr became a member of direct room room (o NULL).
CREATE TYPE chat_ingested AS (
    o          int,
    status     text,
    id         bigint,
    seq        bigint,
    shard      int,
    shard_pos  bigint,
    created_at text,
    room       text,
    usr        text
);

-- One watermark move, as chat__move computed it (old and new values).
CREATE TYPE chat_move AS (
    room text,
    usr  text,
    od   bigint,
    os   bigint,
    nd   bigint,
    ns   bigint
);
