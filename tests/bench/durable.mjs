// Durable throughput benchmark (not a test): how many messages per second
// one chat-storage worker stores, and the sender's ack latency.
//
//   node tests/bench/durable.mjs [--rates 5000,10000,...] [--duration S] [--conns N]
//                                [--procs P] [--bulk N] [--gateway-args "..."]
//                                [--storage-args "..."] [--pg-args "name=value ..."]
//                                [--pg-stats]
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
// Everything shares the machine's cores with the load generator; the
// figures go to docs/benchmarks.md with the machine details.

import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { httpRequest, startGateway, sleep } from '../integration/lib/harness.mjs';
import { runChatLoad } from '../integration/lib/load.mjs';
import {
  TEST_SECRET,
  startPostgres,
  startRedis,
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
// --pg-stats: after each rate, the statements that took PostgreSQL the
// longest during it (pg_stat_statements, nested statements of chat_batch
// included); --pg-args: extra postgres settings ("name=value name=value")
const pgStats = args.includes('--pg-stats');
const pgExtra = [
  ...(pgStats ? ['shared_preload_libraries=pg_stat_statements', 'pg_stat_statements.track=all'] : []),
  ...arg('--pg-args', '').split(' ').filter(Boolean),
].flatMap((a) => ['-c', a]);
const shards = 8;
async function runLoad(target, rate, prefix) {
  const r = await runChatLoad([
    '--target', target, '--secret', TEST_SECRET, '--conns', String(conns), '--procs', String(procs),
    '--rate', String(rate), '--warmup', '2', '--duration', String(duration), '--prefix', prefix,
  ], { inheritStderr: true });
  return { code: r.code, ...r.kv };
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

async function sql(pg, query) {
  const { execFileSync } = await import('node:child_process');
  return execFileSync(path.join(path.dirname(pg.bin), 'psql'), ['-qtAX', '-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres', '-c', query], { encoding: 'utf8' }).trim();
}

async function main() {
  console.log(`machine: ${os.cpus().length} x ${os.cpus()[0].model}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}`);
  const redis = await startRedis({ args: ['--appendonly', 'yes', '--appendfsync', 'everysec'] });
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
    const st = await startStorage({ redisUrl: redis.url, databaseUrl: pg.url, shards, args: storageExtra });
    stop.push(() => st.stopClean());
    const gw = await startGateway([
      '--app', 'chat', '--jwt-secret', TEST_SECRET, '--redis', redis.url, '--storage', 'on',
      '--ingest-shards', String(shards), '--rate-limit', '100000', '--rate-burst', '100000',
      '--max-connections', '20000', '--node-id', 'bench', ...gatewayExtra,
    ]);
    stop.push(() => gw.stopClean());
    const rows = [];
    let round = 0;
    for (const rate of rates) {
      if (pgStats) await sql(pg, 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()');
      const r = await runLoad(`127.0.0.1:${gw.port}`, rate, `b${round++}u`);
      rows.push(r);
      console.log(`rate=${rate} acked/s=${r.acked_per_s} ack p50=${r.ack_p50_ms} p99=${r.ack_p99_ms} p99.9=${r.ack_p999_ms} ms; deliver p99=${r.deliver_p99_ms} ms; sent=${r.sent} acked=${r.acked} lost=${r.lost} dup=${r.dup} errors=${r.errors} exit=${r.code}`);
      if (pgStats) {
        console.log(await sql(pg, `SELECT string_agg(format('pg: %8s calls %8s ms/call %6s rows/call  %s', calls, round(mean_exec_time::numeric, 3),
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
