// Durable throughput benchmark (not a test): how many messages per second
// one chat-storage worker stores, and the sender's ack latency.
//
//   node tests/bench/durable.mjs [--rates 5000,10000,...] [--duration S] [--conns N]
//                                [--procs P] [--bulk N] [--gateway-args "..."]
//                                [--storage-args "..."] [--pg-args "name=value ..."]
//                                [--pg-stats] [--budget] [--group N [--senders K]]
//                                [--storages N] [--redis-cluster] [--shards N]
//
// (--rates '' runs only the bulk measurement.)
//
// Starts Redis (AOF, fsync every second), PostgreSQL (fsync and synchronous
// commit on: an ack means the commit is on disk), one chat-storage and one
// chat-gateway, all on loopback, and drives the gateway with chat-load
// (build/bin/chat-load): pairs of users in direct rooms, every message sent
// with an ack, open loop at each rate in turn. For each rate it prints the
// acked messages per second and the ack latency percentiles; the ack comes
// only after the message is committed, so acked/s is durable messages/s.
//
// --bulk N also measures storage alone: N messages are put in the ingest
// streams before chat-storage starts, and the time until all are committed
// gives its ceiling without the gateway and the load generator on the CPU.
//
// --budget measures each rate's measured window (chat-load's measure_start
// to measure_end) and prints, per durable message stored in it: server CPU
// by process (utime+stime from /proc, each process with its descendants, the
// children it reaped included: gateway, Redis, chat-storage, PostgreSQL
// postmaster and backends), Redis commands (INFO commandstats deltas) and
// their usec_per_call, PostgreSQL transactions, rows inserted/updated per
// table and WAL, and storage's batches. With --pg-stats too, the statements
// are reset at measure_start, so they cover the window alone. Run one rate
// per invocation for a fresh stack per rate.
//
// --group N replaces the direct rooms with one group room of N members
// (created in PostgreSQL and in the membership cache before each rate), all
// of them online with the room open (chat-load --mode room, N connections),
// the first K (--senders, default 10) sending: the cost of a message that
// N-1 members receive, to compare with a DM's.
//
// --storages N runs N chat-storage replicas (they share the ingest shards;
// the budget sums their CPU and prints each one's shards and messages).
// --redis-cluster runs a local 3-master, 3-replica Redis Cluster (AOF,
// fsync every second, as the single Redis) instead of one Redis: the budget
// counts the masters' CPU as "redis" and the replicas' apart, and the
// masters' commands. --shards N: the ingest shards (default 8).
//
// Everything shares the machine's cores with the load generator; the
// figures go to docs/benchmarks.md with the machine details.

import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import { httpRequest, startGateway, sleep } from '../integration/lib/harness.mjs';
import { runChatLoad } from '../integration/lib/load.mjs';
import { cpuDelta, cpuSample } from './lib/cpu.mjs';
import { createGroupRoom, psql } from './lib/group.mjs';
import {
  TEST_SECRET,
  redisCommand,
  startPostgres,
  startRedis,
  startRedisCluster,
  startStorage,
} from '../integration/lib/stack.mjs';

const args = process.argv.slice(2);
function arg(name, def) {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
}
const rates = arg('--rates', '5000,10000,20000,30000,40000,50000,60000').split(',').filter(Boolean).map(Number);
const duration = Number(arg('--duration', '5'));
const conns = Number(arg('--conns', '2000'));
const procs = Number(arg('--procs', '2'));
const bulk = Number(arg('--bulk', '0'));
const gatewayExtra = arg('--gateway-args', '').split(' ').filter(Boolean);
const storageExtra = arg('--storage-args', '').split(' ').filter(Boolean);
const group = Number(arg('--group', '0'));
const senders = Number(arg('--senders', '10'));
// --pg-stats: after each rate, the statements that took PostgreSQL the
// longest during it (pg_stat_statements, nested statements of chat_batch
// included); --pg-args: extra postgres settings ("name=value name=value")
const pgStats = args.includes('--pg-stats');
const budget = args.includes('--budget');
const pgExtra = [
  ...(pgStats ? ['shared_preload_libraries=pg_stat_statements', 'pg_stat_statements.track=all'] : []),
  ...arg('--pg-args', '').split(' ').filter(Boolean),
].flatMap((a) => ['-c', a]);
const shards = Number(arg('--shards', '8'));
const storages = Number(arg('--storages', '1'));
const onCluster = args.includes('--redis-cluster');
async function runLoad(target, rate, prefix, onLine, room) {
  const r = await runChatLoad([
    '--target', target, '--secret', TEST_SECRET, '--conns', String(room ? group : conns), '--procs', String(procs),
    '--rate', String(rate), '--warmup', '2', '--duration', String(duration), '--prefix', prefix,
    ...(room ? ['--mode', 'room', '--room', room, '--senders', String(senders)] : []),
  ], { inheritStderr: true, onLine });
  return { code: r.code, ...r.kv };
}

// ---------------------------------------------------------------- --budget

function commandstats(text) {
  const out = {};
  for (const m of String(text).matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) out[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
  return out;
}

function metricsOf(text) {
  const out = {};
  for (const m of String(text).matchAll(/^(chat_storage_[a-z_]+(?:_sum|_count|_total)?) ([0-9.e+-]+)$/gm)) out[m[1]] = Number(m[2]);
  return out;
}

const PG_SNAPSHOT = `SELECT json_build_object(
  'db', (SELECT json_build_object('xact_commit', xact_commit, 'xact_rollback', xact_rollback, 'blks_hit', blks_hit, 'blks_read', blks_read)
         FROM pg_stat_database WHERE datname = current_database()),
  'wal', (SELECT json_build_object('wal_records', wal_records, 'wal_fpi', wal_fpi, 'wal_bytes', wal_bytes::bigint) FROM pg_stat_wal),
  'tables', (SELECT json_object_agg(relname, json_build_object('ins', n_tup_ins, 'upd', n_tup_upd, 'hot', n_tup_hot_upd, 'del', n_tup_del))
             FROM pg_stat_user_tables))`;

// Summed over the Redis masters (ports) and the storage replicas (sts);
// perReplica keeps each replica's own metrics.
async function snapshotDb(pg, ports, sts) {
  const sum = (list) => list.reduce((acc, m) => {
    for (const [k, v] of Object.entries(m)) acc[k] = (acc[k] ?? 0) + v;
    return acc;
  }, {});
  const [pgs, css, mets] = await Promise.all([
    sql(pg, PG_SNAPSHOT).then(JSON.parse),
    Promise.all(ports.map((port) => redisCommand(port, ['INFO', 'commandstats']).then(commandstats))),
    Promise.all(sts.map((st) => httpRequest(`${st.url}/metrics`, { timeout: 2000 }).then((r) => metricsOf(r.text)))),
  ]);
  const redis = {};
  for (const cs of css) {
    for (const [cmd, v] of Object.entries(cs)) {
      redis[cmd] = { calls: (redis[cmd]?.calls ?? 0) + v.calls, usec: (redis[cmd]?.usec ?? 0) + v.usec };
    }
  }
  return { pg: pgs, redis, storage: sum(mets), perReplica: mets };
}

// chat-load: our children that are none of the servers (with its forks)
function loadPids(pids) {
  const servers = new Set(Object.values(pids).flat());
  const out = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || servers.has(Number(e))) continue;
    try {
      const st = readFileSync(`/proc/${e}/stat`, 'utf8');
      if (Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]) === process.pid && st.includes('(chat-load)')) out.push(Number(e));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

function snapshotCpu(pids, load) {
  return cpuSample({ ...Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, [pid].flat()])), 'chat-load': load },
    { pgBackends: pids.postgres });
}

const fmt = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');

function printBudget(rate, a, b, c0, c1) {
  const c = cpuDelta(c0, c1);
  const secs = c.secs;
  const msgs = b.storage.chat_storage_messages_stored_total - a.storage.chat_storage_messages_stored_total;
  const d = (k) => (b.storage[k] ?? 0) - (a.storage[k] ?? 0);
  console.log(`budget rate=${rate}: window ${fmt(secs, 2)} s, ${msgs} messages stored (${fmt(msgs / secs, 0)}/s), ` +
    `${d('chat_storage_batch_entries_count')} batches (${fmt(d('chat_storage_batch_entries_sum') / d('chat_storage_batch_entries_count'))} entries/batch), ` +
    `${d('chat_storage_receipts_applied_total')} receipts applied, ${d('chat_storage_status_events_total')} status events, ` +
    `batch db time ${fmt(1e3 * d('chat_storage_batch_db_seconds_sum') / d('chat_storage_batch_entries_count'), 2)} ms/batch; ` +
    `room cache: ${d('chat_storage_fast_batches_total')} batches decided in memory, ` +
    `${d('chat_storage_fast_refused_total')} refused, ${d('chat_storage_fast_aborts_total')} aborted`);
  let total = 0;
  const parts = [];
  // 'redis@PORT': one master of a cluster, already in 'redis'
  for (const name of Object.keys(c0.cpu).filter((n) => n !== 'chat-load' && n !== 'pg_backends' && !n.includes('@'))) {
    total += c[name];
    // PostgreSQL: its backends apart from its background work (checkpoints, autovacuum)
    const backends = name === 'postgres' && c.pg_backends != null ? `, backends ${fmt(1e6 * c.pg_backends / msgs, 0)}` : '';
    parts.push(`${name} ${fmt(1e6 * c[name] / msgs, 0)} (${fmt(100 * c[name] / secs, 0)}% of a core${backends})`);
  }
  const masters = Object.keys(c0.cpu).filter((n) => n.startsWith('redis@'));
  if (masters.length) {
    console.log(`budget rate=${rate}: redis masters, µs/message: ` +
      masters.map((n) => `${n} ${fmt(1e6 * c[n] / msgs, 0)} (${fmt(100 * c[n] / secs, 0)}% of a core)`).join(', '));
  }
  const mt = secs * c.cores;
  const ld = c['chat-load'];
  console.log(`budget rate=${rate}: server CPU µs/message: ${parts.join(', ')}; total ${fmt(1e6 * total / msgs, 0)} ` +
    `(${fmt(100 * total / secs, 0)}% of a core); machine busy ${fmt(100 * c.busy / mt, 0)}% of ${c.cores} cores, ` +
    `steal ${fmt(100 * c.steal / mt, 0)}%; chat-load ${fmt(1e6 * ld / msgs, 0)} µs/message (${fmt(100 * ld / secs, 0)}% of a core), ` +
    `the rest of the machine ${fmt(1e6 * (c.busy - total - ld) / msgs, 0)}`);
  if (b.perReplica.length > 1) {
    console.log(`budget rate=${rate}: per storage replica: ` + b.perReplica.map((m, i) => {
      const stored = m.chat_storage_messages_stored_total - (a.perReplica[i].chat_storage_messages_stored_total ?? 0);
      return `st${i + 1} ${m.chat_storage_owned_shards} shards, ${stored} messages (${fmt(100 * stored / msgs, 0)}%)`;
    }).join(', '));
  }
  const rows = [];
  for (const [cmd, s] of Object.entries(b.redis)) {
    const calls = s.calls - (a.redis[cmd]?.calls ?? 0);
    const usec = s.usec - (a.redis[cmd]?.usec ?? 0);
    if (calls > 0 && cmd !== 'info') rows.push({ cmd, calls, usec });
  }
  rows.sort((x, y) => y.calls - x.calls);
  const rc = rows.reduce((m, r) => m + r.calls, 0);
  const ru = rows.reduce((m, r) => m + r.usec, 0);
  console.log(`budget rate=${rate}: redis commands/message ${fmt(rc / msgs, 2)}, command time ${fmt(ru / msgs, 1)} µs/message: ` +
    rows.map((r) => `${r.cmd} ${fmt(r.calls / msgs, 2)} (${fmt(r.calls / secs, 0)}/s) x ${fmt(r.usec / r.calls, 2)} µs`).join(', ') +
    ' (commands run inside scripts are counted on their own line too)');
  const dbd = (k) => b.pg.db[k] - a.pg.db[k];
  const wal = (k) => b.pg.wal[k] - a.pg.wal[k];
  const t = (name, k) => (b.pg.tables?.[name]?.[k] ?? 0) - (a.pg.tables?.[name]?.[k] ?? 0);
  // backends flush their counters at most once a second, so the tables'
  // counts are per message *inserted* (the messages table's own n_tup_ins,
  // flushed with them), not per message counted by storage
  const ins = t('messages', 'ins');
    // (backends flush xact_commit lazily, idle ones up to 10 s late: storage's
  // batch count above is the number of chat_batch transactions)
  console.log(`budget rate=${rate}: postgres ${fmt(dbd('xact_commit') / secs, 0)} commits/s (${fmt(dbd('xact_commit') / msgs, 3)}/message, lazily flushed), ` +
    `WAL ${fmt(wal('wal_bytes') / msgs, 0)} bytes, ${fmt(wal('wal_records') / msgs, 1)} records, ${fmt(wal('wal_fpi') / msgs, 2)} full pages per message`);
  const trow = Object.keys(b.pg.tables ?? {}).sort().map((name) => {
    const v = ['ins', 'upd', 'hot', 'del'].map((k) => t(name, k));
    return v.some((x) => x) ? `${name} ins ${fmt(v[0] / ins, 2)} upd ${fmt(v[1] / ins, 2)} (hot ${fmt(v[2] / ins, 2)}) del ${fmt(v[3] / ins, 2)}` : null;
  }).filter(Boolean);
  console.log(`budget rate=${rate}: rows per message inserted (${ins} inserted): ${trow.join('; ')}`);
}

// FNV-1a 32 of the room id modulo the shard count (proto/chat.c chat_room_shard).
function roomShard(room, n) {
  let h = 2166136261;
  for (const b of Buffer.from(room)) {
    h ^= b;
    h = Math.imul(h, 16777619) >>> 0;
  }
  return h % n;
}

function pipeToRedis(port, text) {
  return new Promise((resolve, reject) => {
    const p = spawn('redis-cli', ['-p', String(port), '--pipe'], { stdio: ['pipe', 'ignore', 'inherit'] });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`redis-cli --pipe exited ${code}`))));
    p.stdin.end(text);
  });
}

const sql = (pg, query) => psql(pg.url, query);

async function main() {
  console.log(`machine: ${os.cpus().length} x ${os.cpus()[0].model}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}`);
  const aof = ['--appendonly', 'yes', '--appendfsync', 'everysec'];
  const redis = onCluster ? await startRedisCluster({ args: aof }) : await startRedis({ args: aof });
  if (onCluster && bulk > 0) throw new Error('--bulk runs on one Redis only');
  if (onCluster && group > 0) throw new Error('--group runs on one Redis only');
  const pg = await startPostgres({ fast: false, args: pgExtra });
  const stop = [];
  try {
    if (bulk > 0) {
      // the ingest streams filled first: storage's own ceiling. One group
      // room per shard, so every shard has work.
      const st0 = await startStorage({ redisUrl: redis.url, databaseUrl: pg.url, shards, args: storageExtra });
      await st0.stopClean(); // migrations applied
      const rooms = [];
      for (let i = 0; rooms.length < shards; i++) {
        const room = `g_bulk_${i}`;
        if (!rooms.some((r) => r.shard === roomShard(room, shards))) rooms.push({ room, shard: roomShard(room, shards) });
      }
      await sql(pg, rooms.map(({ room }) => `INSERT INTO rooms(id, kind) VALUES ('${room}', 'group'); INSERT INTO room_members(room_id, user_id) VALUES ('${room}', 'bulk0');`).join(' '));
      const resp = [];
      const bulkStr = (v) => `$${Buffer.byteLength(v)}\r\n${v}\r\n`;
      for (let j = 0; j < bulk; j++) {
        const { room, shard } = rooms[j % rooms.length];
        const cmd = ['XADD', `{i:${shard}}:in`, '*', 'k', 'm', 'r', room, 'u', 'bulk0', 'n', 'Bulk', 'x', `bulk message ${j}`, 'c', `b${j}`];
        resp.push(`*${cmd.length}\r\n${cmd.map(bulkStr).join('')}`);
      }
      await pipeToRedis(redis.port, resp.join(''));
      const t0 = Date.now();
      const st = await startStorage({ redisUrl: redis.url, databaseUrl: pg.url, shards, args: storageExtra });
      // storage's own counter of committed messages: counting rows in
      // PostgreSQL every 50 ms took a good part of a core from the run
      for (;;) {
        const m = await httpRequest(`${st.url}/metrics`, { timeout: 2000 }).catch(() => null);
        const n = Number(/^chat_storage_messages_stored_total (\d+)/m.exec(m?.text ?? '')?.[1] ?? 0);
        if (n >= bulk) break;
        await sleep(20);
      }
      const secs = (Date.now() - t0) / 1000;
      const stored = Number(await sql(pg, "SELECT count(*) FROM messages WHERE room_id LIKE 'g\\_bulk\\_%'"));
      if (stored !== bulk) throw new Error(`bulk: ${stored} messages in PostgreSQL, ${bulk} expected`);
      console.log(`bulk: ${bulk} messages stored by one chat-storage in ${secs.toFixed(2)} s (including its start-up): ${Math.round(bulk / secs)} msgs/s`);
      await st.stopClean();
    }
    const sts = [];
    for (let i = 0; i < storages; i++) {
      const st = await startStorage({ redisUrl: redis.url, databaseUrl: pg.url, shards, args: ['--replica-id', `st${i + 1}`, ...storageExtra] });
      sts.push(st);
      stop.push(() => st.stopClean());
    }
    if (storages > 1) {
      // the shares settle: every replica owns its part before the load starts
      const want = Math.floor(shards / storages);
      for (const deadline = Date.now() + 30000; ;) {
        const owned = await Promise.all(sts.map((st) => httpRequest(`${st.url}/metrics`, { timeout: 2000 })
          .then((r) => metricsOf(r.text).chat_storage_owned_shards ?? 0)));
        if (owned.every((n) => n >= want) && owned.reduce((x, y) => x + y, 0) === shards) {
          console.log(`storage replicas own ${owned.join('/')} of ${shards} shards`);
          break;
        }
        if (Date.now() > deadline) throw new Error(`the shards did not spread over the replicas: ${owned.join('/')}`);
        await sleep(200);
      }
    }
    const redisPorts = onCluster ? (await redis.masters()).map((n) => n.port) : [redis.port];
    const gw = await startGateway([
      '--app', 'chat', '--jwt-secret', TEST_SECRET, '--redis', redis.url, '--storage', 'on',
      '--ingest-shards', String(shards), '--rate-limit', '100000', '--rate-burst', '100000',
      '--max-connections', '20000', '--node-id', 'bench', ...gatewayExtra,
    ]);
    stop.push(() => gw.stopClean());
    const rows = [];
    let round = 0;
    const pids = { gateway: gw.proc.pid, storage: sts.map((st) => st.pid), postgres: pg.pid };
    if (onCluster) {
      const masters = await redis.masters();
      pids.redis = masters.map((n) => n.pid);
      for (const n of masters) pids[`redis@${n.port}`] = n.pid;
      pids['redis-replicas'] = redis.nodes.filter((n) => !masters.includes(n)).map((n) => n.pid);
    } else {
      pids.redis = redis.pid;
    }
    if (budget) console.log(`budget pids: ${Object.entries(pids).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    for (const rate of rates) {
      if (pgStats) await sql(pg, 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()');
      // --budget: databases sampled before the CPU at the start and after it
      // at the end, so the sampling's own work stays out of the CPU window
      let w = null;
      const onLine = !budget ? undefined : (line) => {
        if (line.startsWith('measure_start')) {
          w = (async () => {
            if (pgStats) await sql(pg, 'SELECT pg_stat_statements_reset()');
            const a = await snapshotDb(pg, redisPorts, sts);
            const load = loadPids(pids);
            return { a, load, c0: snapshotCpu(pids, load) };
          })();
        } else if (line.startsWith('measure_end')) {
          w = w.then(async (x) => ({ ...x, c1: snapshotCpu(pids, x.load), b: await snapshotDb(pg, redisPorts, sts) }));
        }
      };
      const prefix = `b${round}u`;
      const room = group > 0 ? `g_bench_${round}` : null;
      round++;
      if (room) {
        await createGroupRoom({
          sql: (q) => sql(pg, q), redis: (cmd) => redisCommand(redis.port, cmd), room,
          users: Array.from({ length: group }, (_, i) => `${prefix}${i}`),
        });
      }
      const r = await runLoad(`127.0.0.1:${gw.port}`, rate, prefix, onLine, room);
      rows.push(r);
      console.log(`rate=${rate} acked/s=${r.acked_per_s} ack p50=${r.ack_p50_ms} p99=${r.ack_p99_ms} p99.9=${r.ack_p999_ms} ms; deliver p99=${r.deliver_p99_ms} ms; sent=${r.sent} acked=${r.acked} lost=${r.lost} dup=${r.dup} errors=${r.errors} exit=${r.code}`);
      let wb = null;
      if (w) {
        wb = await w;
        printBudget(rate, wb.a, wb.b, wb.c0, wb.c1);
      }
      if (pgStats) {
        if (wb) {
          const msgs = wb.b.storage.chat_storage_messages_stored_total - wb.a.storage.chat_storage_messages_stored_total;
          console.log(`pg: statements over the measured window only (${msgs} messages); per message: calls, rows, ms`);
          console.log(await sql(pg, `SELECT string_agg(format('pg: %8s calls %8s ms/call %6s rows/call %7s calls/msg %7s rows/msg %7s ms/msg  %s', calls, round(mean_exec_time::numeric, 3),
            round(rows::numeric / calls, 1), round(calls::numeric / ${msgs}, 3), round(rows::numeric / ${msgs}, 3), round(total_exec_time::numeric / ${msgs}, 4),
            left(regexp_replace(query, '\\s+', ' ', 'g'), 90)), E'\\n' ORDER BY total_exec_time DESC)
            FROM (SELECT * FROM pg_stat_statements WHERE calls > 0 AND query NOT LIKE '%pg_stat%' ORDER BY total_exec_time DESC LIMIT 15) s`));
        } else console.log(await sql(pg, `SELECT string_agg(format('pg: %8s calls %8s ms/call %6s rows/call  %s', calls, round(mean_exec_time::numeric, 3),
          round(rows::numeric / calls, 1), left(regexp_replace(query, '\\s+', ' ', 'g'), 70)), E'\\n' ORDER BY total_exec_time DESC)
          FROM (SELECT * FROM pg_stat_statements WHERE calls > 0 ORDER BY total_exec_time DESC LIMIT 10) s`));
      }
    }
    // a rate counts when it was sustained: (nearly) everything sent was
    // acked within the run, nothing lost or doubled
    const ok = rows.filter((r) => Number(r.ack_p99_ms) <= 20 && r.code === 0 && Number(r.acked_per_s) >= 0.98 * Number(r.rate));
    const best = rows.reduce((m, r) => Math.max(m, Number(r.acked_per_s)), 0);
    console.log(`highest acked/s: ${best}; highest rate with ack p99 <= 20 ms: ${ok.length ? ok[ok.length - 1].rate : 'none'}`);
  } finally {
    for (const f of stop.reverse()) await f().catch((e) => console.error(e.message));
    await pg.stop();
    await redis.stop();
  }
}

main().then(() => process.exit(0), (err) => {
  console.error(err);
  process.exit(1);
});
