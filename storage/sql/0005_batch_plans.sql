-- 0005: the batch functions again, same signatures and results, with plans
-- made once per connection instead of once per call.
--
-- 0002 forced custom plans (plan_cache_mode = force_custom_plan) because
-- the generic plans of its statements joined one batch array with another
-- by nested loops: fine for the ten rows the planner assumes, quadratic for
-- a thousand. Planning every statement of every call then cost more than
-- running them at the batch sizes of a live chat (1-2 ms of a 4 ms call
-- for 50 messages), and the custom plans of chat__move still scanned the
-- whole rooms table for each batch of receipts (a hash join chosen for
-- 40 rows against 5,000 rooms).
--
-- Here every statement reads the batch once and reaches tables only
-- through their indexes, one probe per row (LATERAL and correlated
-- subqueries, and joins restricted to nested loops by the functions'
-- settings), so the plan is the same whatever the batch and table sizes,
-- and it is cached (force_generic_plan). No statement joins two batch sets.
-- Fewer statements too: the counters, the sender's watermarks and the
-- insert are one statement; the watermark moves and their log rows
-- another.

-- One message of a batch on its way through chat_ingest: the input fields
-- and what became of it ('new', 'dup', 'forbidden', 'retry'; 'same' for a
-- later occurrence of a (sender, clientMsgId) in the batch, answered as its
-- first).
CREATE TYPE chat_step AS (
    o          int,
    status     text,
    id         bigint,
    seq        bigint,
    shard      int,
    shard_pos  bigint,
    created_at text,
    r          text,
    u          text,
    n          text,
    l          text,
    x          text,
    c          text
);

-- The functions chat_ingest, chat_receipts and chat_batch this migration
-- rewrote, and the settings they run under, are in storage/sql/functions/.

-- One index fewer for every message stored. Replays (storage/replay.c)
-- find a room's messages above a shard position through the primary key
-- instead: in a room, shard positions grow with seq. Left in place, this
-- index was also the one a generic plan could pick for the ranges of the
-- messageStatus query, filtering a room's whole history instead of the
-- primary key's range.
DROP INDEX IF EXISTS messages_room_pos;

-- 0002's and 0004's helpers, which nothing calls any more (IF EXISTS: a
-- database created since storage/sql/functions/ never had them).
DROP FUNCTION IF EXISTS chat__status_events(chat_move[]);
DROP FUNCTION IF EXISTS chat__move(text[], text[], bigint[], bigint[]);
