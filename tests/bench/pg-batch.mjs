// PostgreSQL's cost per batch transaction, outside the full stack (not a
// test): how much backend CPU one chat_batch call costs, and the floor a
// rewrite could reach (issue 13; figures in docs/benchmarks.md).
//
//   node tests/bench/pg-batch.mjs [--sql DIR | --rev GIT_REV] [--txns N] [--rooms N]
//                                 [--only NAME,...] [--mode prepared|simple] [--pg-stats]
//   node tests/bench/pg-batch.mjs --compare GIT_REV [--blocks K] [--txns N] [--only ...]
//
// Starts a throwaway cluster (durable settings: fsync and synchronous_commit
// on, as tests/integration/lib/stack.mjs starts it), applies the schema and
// the functions of storage/sql/ (or of DIR, or of storage/sql at GIT_REV),
// creates ROOMS direct rooms of two members each, then runs each workload
// as N transactions of literal SQL in one psql session and prints per
// transaction: the backend's CPU (utime+stime of its own /proc/self/stat,
// read before and after through pg_read_file), the whole cluster's CPU
// (postmaster, backends, WAL writer, checkpointer...), the wall time, and
// the rows written (pg_stat_user_tables). --mode prepared (default) PREPAREs
// the batch statement once and EXECUTEs it, as storage does since decision
// 48; simple parses and plans it at every call, as PQexecParams did.
//
// --compare GIT_REV: the functions of storage/sql/functions at GIT_REV are
// installed beside today's, renamed (chat_batch -> before_batch...; same
// tables and types), and each workload runs K blocks of N transactions
// alternating before (its statement parsed at every call, as storage sent
// it then) and after (prepared), in one session: CPU noise from other
// processes on the machine falls on both alike. Prints each side's CPU per
// transaction (median and range over the blocks) and rows written.
//
// The session runs with the settings chat-storage gives its ingest
// connections (INGEST_SETTINGS below, BATCH_SESSION in
// storage/ingest/commit.c): the batch functions rely on them.
//
// Workloads (each message to a random room, from a random one of its two
// members; each room starts with a message of a that both have seen):
//   dm1, dm10, dm50    chat_batch with 1, 10, 50 new DM messages (the
//                      senders' own watermark moves included)
//   rcpt1, rcpt10      chat_batch with 1, 10 receipt lines only (delivered
//                      and seen up to the room's last message)
//   mixed10            10 messages and 10 receipt lines in one batch
//   floor_insert1      INSERT of one row into a two-column table (autocommit)
//   floor_messages1    a prepared INSERT of 1 row into messages (unnest of a
//                      text array)
//   floor_messages10   the same with 10 rows
//   floor_select       SELECT 1 (no write, no commit record)
//   proto_small1       a prototype, not storage's code: one new message of a
//                      member in small statements (bench_small1 below: lock
//                      the room and the shard, probe for a duplicate and
//                      the membership, insert, update the counters and the
//                      sender's watermarks, probe the own move's range), to
//                      see what a path of small plans for the common batch
//                      would cost against dm1
//   dm200              chat_batch with 200 new DM messages
//   mixed1, mixed50, mixed200
//                      chat_batch with N messages and N receipt lines
//   setbased1, setbased10, setbased50, setbased200
//                      a prototype of the next design (issue 13), not
//                      storage's code: the shard owner keeps each room's seq
//                      and the shard's position in memory (here: JS, read
//                      from the tables before the workload) and decides
//                      duplicates, membership and events itself; PostgreSQL
//                      only writes, set-based, in one prepared statement of
//                      data-modifying CTEs (one transaction): the messages
//                      (ids, seq, shard_pos computed by the owner) from
//                      unnest, the rooms' last_seq, the shard's pos, the
//                      members' watermarks coalesced per (room, member) and
//                      the watermark log rows. N DM messages of one shard
//                      per batch; per message the sender's own move (no log
//                      row, as today) and the receiver's receipt move up to
//                      it (delivered and seen: two log rows)
//   setnolog1, setnolog10, setnolog50, setnolog200
//                      the same without the watermark log rows (only
//                      room_members updated): what the log costs
//   setparse200        setbased200's parameters, parsed and nothing written
//                      (a SELECT of two cardinalities): the input's share

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PG_BIN_DIR, ROOT, startPostgres } from '../integration/lib/stack.mjs';

const args = process.argv.slice(2);
function arg(name, def) {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
}
const txns = Number(arg('--txns', '2000'));
const nrooms = Number(arg('--rooms', '2000'));
const only = arg('--only', '').split(',').filter(Boolean);
const mode = arg('--mode', 'prepared');
const rev = arg('--rev', '');
const compare = arg('--compare', '');
const blocks = Number(arg('--blocks', '6'));
const shards = 8;

// what storage/ingest/commit.c sets on each ingest connection (keep the two equal)
const INGEST_SETTINGS = {
  plan_cache_mode: 'force_generic_plan',
  jit: 'off',
  enable_hashjoin: 'off',
  enable_mergejoin: 'off',
  enable_seqscan: 'off',
};

const work = mkdtempSync(path.join(os.tmpdir(), 'pg-batch-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

let sqlDir = arg('--sql', path.join(ROOT, 'storage/sql'));
if (rev) {
  const out = path.join(work, 'rev');
  execFileSync('mkdir', ['-p', out]);
  execFileSync('sh', ['-c', `git -C "${ROOT}" archive "${rev}" storage/sql | tar -x -C "${out}"`]);
  sqlDir = path.join(out, 'storage/sql');
}

const bin = (name) => (PG_BIN_DIR ? path.join(PG_BIN_DIR, name) : name);
// --pg-stats: the statements' times too (pg_stat_statements, nested ones
// included; it costs CPU of its own: not for the CPU figures)
const pgStats = args.includes('--pg-stats');
const pg = await startPostgres({
  args: pgStats ? ['-c', 'shared_preload_libraries=pg_stat_statements', '-c', 'pg_stat_statements.track=all'] : [],
});
const conn = ['-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres', '-d', 'postgres'];
const pgOptions = Object.entries(INGEST_SETTINGS).map(([k, v]) => `-c ${k}=${v}`).join(' ');

function psql(sql) {
  return execFileSync(bin('psql'), [...conn, '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-c', sql], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
}
function psqlFile(file) {
  execFileSync(bin('psql'), [...conn, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-1', '-f', file], { stdio: ['ignore', 'ignore', 'inherit'] });
}

// ---- schema, as storage/migrate.c applies it
for (const f of readdirSync(sqlDir).filter((f) => /^\d{4}_.*\.sql$/.test(f)).sort()) psqlFile(path.join(sqlDir, f));
const fdir = path.join(sqlDir, 'functions');
for (const f of readdirSync(fdir).filter((f) => f.endsWith('.sql')).sort()) psqlFile(path.join(fdir, f));
// --compare: the batch functions of another commit, renamed, beside these
const RENAMED = ['chat_batch', 'chat_ingest', 'chat_receipts', 'chat__events'];
if (compare) {
  const out = path.join(work, 'compare');
  execFileSync('mkdir', ['-p', out]);
  execFileSync('sh', ['-c', `git -C "${ROOT}" archive "${compare}" storage/sql/functions | tar -x -C "${out}"`]);
  for (const name of RENAMED) {
    let text = readFileSync(path.join(out, 'storage/sql/functions', `${name}.sql`), 'utf8');
    for (const n of RENAMED) text = text.replaceAll(`${n}(`, `${n.replace('chat', 'before')}(`);
    const file = path.join(out, `${name}.renamed.sql`);
    writeFileSync(file, text);
    psqlFile(file);
  }
}
psql(`INSERT INTO shards (id) SELECT g FROM generate_series(0, ${shards - 1}) g`);
// direct rooms dm{i} of a{i} and b{i}, each with a first message of a{i}
// that b{i} has seen (as in a conversation under way)
psql(`
  INSERT INTO rooms (id, kind, created_by, last_seq)
    SELECT 'dm' || g, 'dm', 'a' || g, 1 FROM generate_series(1, ${nrooms}) g;
  INSERT INTO room_members (room_id, user_id, delivered_seq, seen_seq)
    SELECT 'dm' || g, u || g, 1, 1 FROM generate_series(1, ${nrooms}) g, unnest(ARRAY['a', 'b']) u;
  INSERT INTO messages (room_id, seq, shard, shard_pos, sender_id, client_msg_id, body)
    SELECT 'dm' || g, 1, g % ${shards}, 0, 'a' || g, 'seed', 'hello' FROM generate_series(1, ${nrooms}) g;
  CREATE TABLE floor_t (id bigint, body text);`);
psql(`
  CREATE FUNCTION bench_small1(r text, u text, n text, x text, c text, sh int)
  RETURNS TABLE (status text, id bigint, seq bigint, pos bigint, at text) LANGUAGE plpgsql AS $f$
  DECLARE s bigint; p bigint; mid bigint; os bigint; od bigint;
  BEGIN
    SELECT last_seq + 1 INTO s FROM rooms WHERE rooms.id = r FOR UPDATE;
    SELECT shards.pos + 1 INTO p FROM shards WHERE shards.id = sh FOR UPDATE;
    IF EXISTS (SELECT 1 FROM messages m WHERE m.sender_id = u AND m.room_id = r AND m.client_msg_id = c) THEN
      RETURN QUERY SELECT 'dup'::text, NULL::bigint, NULL::bigint, NULL::bigint, NULL::text;
      RETURN;
    END IF;
    SELECT rm.seen_seq, rm.delivered_seq INTO os, od FROM room_members rm WHERE rm.room_id = r AND rm.user_id = u;
    IF NOT FOUND THEN
      RETURN QUERY SELECT 'forbidden'::text, NULL::bigint, NULL::bigint, NULL::bigint, NULL::text;
      RETURN;
    END IF;
    mid := nextval('message_ids');
    INSERT INTO messages (id, room_id, seq, shard, shard_pos, sender_id, client_msg_id, first_name, body)
      VALUES (mid, r, s, sh, p, u, c, n, x);
    UPDATE rooms SET last_seq = s, last_at = now() WHERE rooms.id = r;
    UPDATE shards SET pos = p WHERE shards.id = sh;
    UPDATE room_members SET seen_seq = s, delivered_seq = GREATEST(delivered_seq, s) WHERE room_id = r AND user_id = u;
    IF EXISTS (SELECT 1 FROM messages m WHERE m.room_id = r AND m.seq > os AND m.seq <= s AND m.sender_id <> u) THEN
      INSERT INTO watermarks (room_id, user_id, kind, seq) VALUES (r, u, 's', s) ON CONFLICT DO NOTHING;
      RETURN QUERY SELECT e.status, NULL::bigint, e.seq, NULL::bigint, e.sender
        FROM chat__events(ARRAY[ROW(r, u, od, os, GREATEST(od, s), s)::chat_move]) e;
    END IF;
    RETURN QUERY SELECT 'new'::text, mid, s, p, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
  END $f$;`);
psql('VACUUM ANALYZE');
if (pgStats) psql('CREATE EXTENSION pg_stat_statements');

// ---- workloads: one psql script per workload, N transactions of literal
// SQL (random rooms drawn here), between two readings of the backend's own
// /proc/self/stat. With --mode prepared (default) the batch statement is
// PREPAREd once and EXECUTEd, as storage's prepared statement; with simple
// it is parsed and planned at every call, as PQexecParams does.
let serial = 0;
const q = (s) => `'${s.replaceAll("'", "''")}'`;
const pick = () => 1 + Math.floor(Math.random() * nrooms);
const user = (r) => `${Math.random() < 0.5 ? 'a' : 'b'}${r}`;
function msgs(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const r = pick();
    out.push({ o: i, r: `dm${r}`, u: user(r), n: 'Ann', x: `hello there, message ${++serial}`, c: `c${serial}`, sh: r % shards });
  }
  return out;
}
function rcpts(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const r = pick();
    // delivered and seen up to whatever was sent (clamped to last_seq)
    out.push({ r: `dm${r}`, u: user(r), d: 1000000000, s: -1 });
  }
  return out;
}
const BATCH = 'SELECT k, o, status, id, seq, shard, shard_pos, created_at, room, usr, sender, aggregate FROM chat_batch';
function batch(nm, nr) {
  return () => {
    const a = q(JSON.stringify(msgs(nm)));
    const b = q(JSON.stringify(rcpts(nr)));
    return mode === 'simple' ? `${BATCH}(${a}::jsonb, ${b}::jsonb);` : `EXECUTE b(${a}, ${b});`;
  };
}
function floorMessages(n) {
  return () => {
    const rooms = [];
    for (let i = 0; i < n; i++) rooms.push(`dm${pick()}`);
    const arr = q(`{${rooms.join(',')}}`);
    return mode === 'simple'
      ? `INSERT INTO messages (room_id, seq, shard, shard_pos, sender_id, body) SELECT r, nextval('message_ids') + 1000000000, 0, 0, 'a1', 'hello there' FROM unnest(${arr}::text[]) r;`
      : `EXECUTE f(${arr});`;
  };
}
// ---- the set-based prototype (setbasedN, setnologN): the owner's state
let own = null; // { seq: Map room -> last_seq, pos: shard -> pos, id }
function ownState() {
  if (own) return own;
  own = { seq: new Map(), pos: [], id: 0 };
  for (const l of psql('SELECT id, last_seq FROM rooms').trim().split('\n')) {
    const [r, v] = l.split('|');
    own.seq.set(r, Number(v));
  }
  for (const l of psql('SELECT id, pos FROM shards').trim().split('\n')) {
    const [sh, v] = l.split('|');
    own.pos[Number(sh)] = Number(v);
  }
  // ids reserved by the owner in a block far above the sequence's
  own.id = 1e12 + Number(psql('SELECT coalesce(max(id), 0) FROM messages').trim());
  return own;
}
const arr = (a) => q(`{${a.map((v) => (typeof v === 'number' ? String(v) : `"${String(v).replace(/["\\]/g, '\\$&')}"`)).join(',')}}`);
const SET_MESSAGES = `INSERT INTO messages (id, room_id, seq, shard, shard_pos, sender_id, client_msg_id, first_name, body)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::int[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[])`;
const SET_ROOMS = `UPDATE rooms SET last_seq = u.s, last_at = now() FROM unnest($10::text[], $11::bigint[]) u (r, s) WHERE rooms.id = u.r`;
const SET_SHARD = `UPDATE shards SET pos = $13 WHERE shards.id = $12`;
const SET_MEMBERS = `UPDATE room_members SET delivered_seq = u.d, seen_seq = u.s
    FROM unnest($14::text[], $15::text[], $16::bigint[], $17::bigint[]) u (r, m, d, s)
    WHERE room_members.room_id = u.r AND room_members.user_id = u.m`;
const SET_LOG = `INSERT INTO watermarks (room_id, user_id, kind, seq)
    SELECT * FROM unnest($18::text[], $19::text[], $20::"char"[], $21::bigint[])`;
const SET_TYPES = 'bigint[], text[], bigint[], int[], bigint[], text[], text[], text[], text[], text[], bigint[], int, bigint, text[], text[], bigint[], bigint[]';
function setBased(n, log, stmt = log ? 'sb' : 'sn') {
  let batchNo = 0;
  return () => {
    const st = ownState();
    const sh = batchNo++ % shards; // one owner's shard per batch
    const m = [[], [], [], [], [], [], [], [], []];
    const rooms = new Map();
    const members = new Map(); // room|member -> { d, s, log }
    for (let i = 0; i < n; i++) {
      // a room of this shard (dm{r} is in shard r % shards)
      const r = sh + shards * Math.floor(Math.random() * Math.floor(nrooms / shards)) || shards;
      const room = `dm${r}`;
      const sender = Math.random() < 0.5 ? 'a' : 'b';
      const u = `${sender}${r}`;
      const other = `${sender === 'a' ? 'b' : 'a'}${r}`;
      const seq = st.seq.get(room) + 1;
      st.seq.set(room, seq);
      const pos = ++st.pos[sh];
      serial++;
      const row = [++st.id, room, seq, sh, pos, u, `c${serial}`, 'Ann', `hello there, message ${serial}`];
      row.forEach((v, k) => m[k].push(v));
      rooms.set(room, seq);
      // the sender's own move (no log row) and the receiver's receipt
      // move up to the message (delivered and seen), coalesced
      for (const [who, isLog] of [[u, false], [other, true]]) {
        const k = `${room}|${who}`;
        const w = members.get(k) || { r: room, m: who, s: 0, log: false };
        w.s = Math.max(w.s, seq);
        w.log ||= isLog;
        members.set(k, w);
      }
    }
    const mem = [...members.values()];
    const logs = log ? mem.filter((w) => w.log) : [];
    const params = [
      ...m.map(arr),
      arr([...rooms.keys()]),
      arr([...rooms.values()]),
      sh,
      st.pos[sh],
      arr(mem.map((w) => w.r)),
      arr(mem.map((w) => w.m)),
      arr(mem.map((w) => w.s)),
      arr(mem.map((w) => w.s)),
      ...(log
        ? [
            arr(logs.flatMap((w) => [w.r, w.r])),
            arr(logs.flatMap((w) => [w.m, w.m])),
            arr(logs.flatMap(() => ['d', 's'])),
            arr(logs.flatMap((w) => [w.s, w.s])),
          ]
        : []),
    ];
    return `EXECUTE ${stmt}(${params.join(', ')});`;
  };
}

const prepare = [
  `PREPARE b(jsonb, jsonb) AS ${BATCH}($1, $2);`,
  ...(compare ? [`PREPARE bb(jsonb, jsonb) AS ${BATCH.replace('chat_batch', 'before_batch')}($1, $2);`] : []),
  'PREPARE s(text, text, text, text, text, int) AS SELECT * FROM bench_small1($1, $2, $3, $4, $5, $6);',
  `PREPARE sb(${SET_TYPES}, text[], text[], "char"[], bigint[]) AS WITH m AS (${SET_MESSAGES}), r AS (${SET_ROOMS}),
     sh AS (${SET_SHARD}), w AS (${SET_MEMBERS}), l AS (${SET_LOG}) SELECT 1;`,
  `PREPARE sn(${SET_TYPES}) AS WITH m AS (${SET_MESSAGES}), r AS (${SET_ROOMS}),
     sh AS (${SET_SHARD}), w AS (${SET_MEMBERS}) SELECT 1;`,
  `PREPARE sp(${SET_TYPES}, text[], text[], "char"[], bigint[]) AS SELECT cardinality($1) + cardinality($21);`,
  `PREPARE f(text[]) AS INSERT INTO messages (room_id, seq, shard, shard_pos, sender_id, body) SELECT r, nextval('message_ids') + 1000000000, 0, 0, 'a1', 'hello there' FROM unnest($1) r;`,
].join('\n');
const workloads = {
  dm1: batch(1, 0),
  dm10: batch(10, 0),
  dm50: batch(50, 0),
  rcpt1: batch(0, 1),
  rcpt10: batch(0, 10),
  dm200: batch(200, 0),
  mixed1: batch(1, 1),
  mixed10: batch(10, 10),
  mixed50: batch(50, 50),
  mixed200: batch(200, 200),
  setbased1: setBased(1, true),
  setbased10: setBased(10, true),
  setbased50: setBased(50, true),
  setbased200: setBased(200, true),
  setnolog1: setBased(1, false),
  setnolog10: setBased(10, false),
  setnolog50: setBased(50, false),
  setnolog200: setBased(200, false),
  setparse200: setBased(200, true, 'sp'),
  floor_insert1: () => `INSERT INTO floor_t VALUES (${++serial}, 'hello there');`,
  floor_messages1: floorMessages(1),
  floor_messages10: floorMessages(10),
  floor_select: () => 'SELECT 1;',
  proto_small1: () => {
    const [m] = msgs(1);
    const a = `${q(m.r)}, ${q(m.u)}, ${q(m.n)}, ${q(m.x)}, ${q(m.c)}, ${m.sh}`;
    return mode === 'simple' ? `SELECT * FROM bench_small1(${a});` : `EXECUTE s(${a});`;
  },
};

// ---- CPU from /proc, clock ticks
const hz = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
function ticks(statLine) {
  const f = statLine.slice(statLine.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
}
function tree(root) {
  // the cluster: the postmaster (with what it reaped) and its children
  let total = 0;
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const s = readFileSync(`/proc/${e}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      if (Number(e) === root) total += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
      else if (Number(f[1]) === root) total += Number(f[11]) + Number(f[12]);
    } catch {
      // gone meanwhile
    }
  }
  return total;
}
const postmaster = pg.proc.pid;
function rowsWritten() {
  psql('SELECT pg_stat_force_next_flush()');
  execFileSync('sleep', ['0.3']);
  const [ins, upd] = psql(`SELECT sum(n_tup_ins), sum(n_tup_upd) FROM pg_stat_user_tables`).trim().split('|').map(Number);
  return { ins, upd };
}

if (compare) {
  // before: its statement text at every call (the batch of the other
  // functions); after: EXECUTE of today's, prepared
  const before = (gen) => () => {
    const t = gen();
    const m = /^EXECUTE b\((.*)\);$/s.exec(t);
    return m ? `${BATCH.replace('chat_batch', 'before_batch')}(${m[1].replace(/', '/, "'::jsonb, '")}::jsonb);` : t;
  };
  console.log(`# pg-batch --compare ${compare}: ${blocks} blocks of ${txns} transactions per side and workload, ${nrooms} rooms`);
  console.log('workload          before_us/txn (range)      after_us/txn (range)       rows_ins before/after');
  const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
  for (const [name, gen] of Object.entries(workloads)) {
    if (only.length && !only.includes(name)) continue;
    if (/^(floor|proto|set)/.test(name)) continue;
    const lines = [prepare];
    const read = (tag) => `SELECT '${tag}', pg_read_file('/proc/self/stat');`;
    const rowsQ = (tag) => `SELECT pg_stat_force_next_flush(); SELECT pg_sleep(0.6); SELECT '${tag}', sum(n_tup_ins) FROM pg_stat_user_tables;`;
    for (let k = 0; k < blocks; k++) {
      for (const side of k % 2 ? ['after', 'before'] : ['before', 'after']) {
        lines.push(rowsQ(`R0 ${side}`), read(`S ${side}`), '\\o /dev/null');
        for (let i = 0; i < txns; i++) lines.push(side === 'before' ? before(gen)() : gen());
        lines.push('\\o', read(`E ${side}`), rowsQ(`R1 ${side}`));
      }
    }
    const file = path.join(work, `${name}.sql`);
    writeFileSync(file, lines.join('\n') + '\n');
    const r = spawnSync(bin('psql'), [...conn, '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-f', file], {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
      env: { ...process.env, PGOPTIONS: pgOptions },
    });
    if (r.status !== 0) {
      console.error(r.stdout, r.stderr);
      process.exit(1);
    }
    const cpu = { before: [], after: [] };
    const rows = { before: 0, after: 0 };
    let start = 0;
    let rows0 = 0;
    for (const l of r.stdout.split('\n')) {
      const [tag, val] = l.split('|');
      if (!val) continue;
      const [kind, side] = tag.split(' ');
      if (kind === 'S') start = ticks(val);
      else if (kind === 'E') cpu[side].push(((ticks(val) - start) * 1e6) / hz / txns);
      else if (kind === 'R0') rows0 = Number(val);
      else if (kind === 'R1') rows[side] += Number(val) - rows0;
    }
    const fmt = (a) => `${med(a).toFixed(0)} (${Math.min(...a).toFixed(0)}-${Math.max(...a).toFixed(0)})`.padEnd(27);
    console.log(
      `${name.padEnd(18)}${fmt(cpu.before)}${fmt(cpu.after)}${(rows.before / txns / blocks).toFixed(2)} / ${(rows.after / txns / blocks).toFixed(2)}`,
    );
  }
  await pg.stop();
  process.exit(0);
}

console.log(`# pg-batch: ${txns} transactions per workload, ${nrooms} rooms, mode ${mode}, sql ${rev || sqlDir}`);
console.log('workload            backend_us/txn  cluster_us/txn  wall_ms/txn  rows_ins/txn  rows_upd/txn');
for (const [name, gen] of Object.entries(workloads)) {
  if (only.length && !only.includes(name)) continue;
  own = null; // the set-based owner's state: read again after the other workloads
  const file = path.join(work, `${name}.sql`);
  const lines = [prepare, "SELECT pg_read_file('/proc/self/stat');", '\\o /dev/null'];
  for (let i = 0; i < txns; i++) lines.push(gen());
  lines.push('\\o', "SELECT pg_read_file('/proc/self/stat');", 'SELECT pg_stat_force_next_flush();');
  writeFileSync(file, lines.join('\n') + '\n');
  const rows0 = rowsWritten();
  if (pgStats) psql('SELECT pg_stat_statements_reset()');
  const all0 = tree(postmaster);
  const t0 = process.hrtime.bigint();
  const r = spawnSync(bin('psql'), [...conn, '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-f', file], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    env: { ...process.env, PGOPTIONS: pgOptions },
  });
  const wall = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) {
    console.error(r.stdout, r.stderr);
    process.exit(1);
  }
  const all = tree(postmaster) - all0;
  const stats = r.stdout.split('\n').filter((l) => /^\d+ \(postgres\)/.test(l));
  const backend = ticks(stats[1]) - ticks(stats[0]);
  const rows1 = rowsWritten();
  const us = (t) => ((t * 1e6) / hz / txns).toFixed(0);
  console.log(
    `${name.padEnd(20)}${us(backend).padStart(14)}${us(all).padStart(16)}${(wall / txns).toFixed(2).padStart(13)}` +
      `${((rows1.ins - rows0.ins) / txns).toFixed(2).padStart(14)}${((rows1.upd - rows0.upd) / txns).toFixed(2).padStart(14)}`,
  );
  if (pgStats) {
    const top = psql(`SELECT round((total_exec_time / ${txns} * 1000)::numeric, 0), round((total_plan_time / ${txns} * 1000)::numeric, 0),
                             round(calls::numeric / ${txns}, 2), regexp_replace(left(query, 90), '\\s+', ' ', 'g')
                        FROM pg_stat_statements WHERE calls >= ${txns / 2} ORDER BY total_exec_time DESC LIMIT 14`);
    console.log('    us/txn exec | plan | calls/txn | statement');
    for (const l of top.trim().split('\n')) console.log(`    ${l}`);
  }
}
await pg.stop();
