// Side-by-side benchmarks (not a test): each workload runs against our
// servers (chat-gateway, chat-storage) and against the Node.js reference
// servers (tests/bench/node-ref/server.mjs), alternating which goes first
// over several rounds, and prints each headline figure, its ratio per round
// and the ratio's min/median/max.
//
//   cd tests && node bench/bench.mjs [--rounds N] [--quick] [--workloads W1,W2,...]
//                                    [--json FILE] [--wN-KEY VALUE ...]
//   (scripts/bench.sh builds first, installs the reference's packages, then runs this)
//
// Workloads (defaults; `--help` lists every setting, each overridable):
//   W1 idle         10,000 connections; server RSS per connection, idle CPU
//   W2 fan-out      one room of 1,000 members, rising message rates;
//                   deliveries per server CPU-second at the best sustained rate
//   W3 relay latency  10 receivers + 1 sender, 100 msgs/s; typing and
//                   sendMessage delivery p50/p99/p99.9
//   W4 durable      first, on fresh servers, a group of 100 members at
//                   200 msgs/s and one of 1,000 at 50/s (all online, 10
//                   senders); then 1,000 direct-message pairs at rising
//                   rates 200..50,000. Per rate: acks/s within the window,
//                   ack p50/p99/p99.9, server CPU per message by process;
//                   highest rate acked (stored) with ack p99 <= 20 ms, vs
//                   Node durable (b) and batched (c); issue 13's goals
//   W5 connect storm  handshakes per second, connect latency, CPU per handshake
//
// Systems: ours relay = Redis (no persistence) + 2 chat-gateway --storage off
// --workers 1; node relay = Redis + 2 server.mjs --mode relay. Ours durable =
// Redis (AOF everysec) + PostgreSQL (fsync on) + 1 chat-storage + 2
// chat-gateway --storage on --workers 1; node durable (b) / batched (c) = the
// same Redis and PostgreSQL + 2 server.mjs --mode durable / batched. Every
// run starts its servers afresh on a flushed Redis (and a new database);
// Redis and PostgreSQL live for one workload. Round r runs the systems in
// order when r is even, in reverse when odd.
//
// Server CPU is utime+stime of the server processes (all their threads,
// and their descendants', reaped ones included: lib/cpu.mjs), read from
// /proc when chat-load prints measure_start and measure_end; Redis,
// chat-storage and PostgreSQL (postmaster and backends) are reported on
// their own. W4 divides each by the acks that arrived within the window:
// µs of CPU per durable message. The load generator (build/bin/chat-load)
// shares the machine's cores with everything else; its CPU is in --json.
//
// Within a run the rate stops rising once the system saturated (W2: under
// 80% delivered or p99 over 1 s; W4: acks arriving within the window under
// 80% of the rate, or p99 over 1 s), unless --all-rates. A chat-load run
// that exits 1 (lost, duplicated or dead), or in W4 got an error ack, is
// printed NOT CLEAN and never counts towards a headline figure. A server
// that dies at some rate makes the run PARTIAL: the rates below it still
// count. A default run takes about 35 minutes on 2 vCPUs (W4 alone 15),
// --quick 2-3; `--report FILE` prints the tables of a --json FILE again.
//
// Exit status: 0 when every run completed (targets met or not), 1 when a
// run failed or was partial (a server died, chat-load timed out), 2 on bad arguments or
// when a server or chat-load cannot start.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';

import { httpRequest, sleep, startGateway, track } from '../integration/lib/harness.mjs';
import { PG_BIN_DIR, REDIS_BIN, ROOT, TEST_SECRET, startPostgres, startRedis, startStorage, waitReady } from '../integration/lib/stack.mjs';
import { CLK_TCK, cpuDelta, cpuSample } from './lib/cpu.mjs';
import { createGroupRoom, psql } from './lib/group.mjs';

const LOAD_BIN = process.env.CHAT_LOAD_BIN || path.join(ROOT, 'build/bin/chat-load');
const NODE_REF = path.join(ROOT, 'tests/bench/node-ref/server.mjs');
const SECRET = TEST_SECRET;

// ------------------------------------------------------------------ options

const SETTINGS = {
  W1: { conns: 10000, procs: 2, settle: 3, idle: 10 },
  W2: { members: 1000, senders: 1, procs: 2, rates: [10, 25, 50, 100, 200, 400, 800], warmup: 2, duration: 5 },
  W3: { receivers: 10, rate: 100, warmup: 2, duration: 10 },
  W4: { pairs: 1000, procs: 2, rates: [200, 1000, 2000, 5000, 10000, 20000, 30000, 50000], warmup: 2, duration: 5,
    groups: [100, 1000], grouprates: [200, 50], senders: 10 },
  W5: { slots: 200, procs: 2, warmup: 1, duration: 5 },
};
const QUICK = {
  W1: { conns: 1000, settle: 1, idle: 3 },
  W2: { members: 200, rates: [50, 200], warmup: 1, duration: 2 },
  W3: { warmup: 1, duration: 3 },
  W4: { pairs: 200, rates: [200, 1000, 5000], warmup: 1, duration: 2, groups: [100, 300], grouprates: [200, 20] },
  W5: { slots: 50, warmup: 1, duration: 2 },
};
const WORKLOADS = ['W1', 'W2', 'W3', 'W4', 'W5'];

function usage() {
  const lines = [
    'usage: node bench/bench.mjs [options]   (from tests/; or scripts/bench.sh [options])',
    '  --rounds N          A/B rounds, at least 3 unless --quick       [3; --quick: 1]',
    '  --quick             small workloads, a 2-3 minute sanity run',
    '  --workloads LIST    which of W1,W2,W3,W4,W5                     [all]',
    '  --json FILE         write every run\'s raw results',
    '  --report FILE       print the tables of a --json FILE again, running nothing',
    '  --sources LIST      local addresses for the W1 and W5 connections [127.0.0.2..127.0.0.8]',
    '  --all-rates         keep raising the rate after a system saturated (W2, W4)',
    '  --gateway-args "A"  extra chat-gateway arguments;  --storage-args "A", --node-args "A" likewise',
    '  --wN-KEY VALUE      a workload setting (lists comma-separated); defaults:',
    '                      (W4: groups[i] members at grouprates[i] msgs/s; a group of 0 is skipped)',
  ];
  for (const w of WORKLOADS) {
    lines.push(`      ${w}: ${Object.entries(SETTINGS[w]).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : v}`).join(' ')}`);
  }
  return lines.join('\n');
}

function die(msg, code = 2) {
  console.error(`bench: ${msg}`);
  process.exit(code);
}

function parseArgs(argv) {
  const o = { rounds: null, quick: false, workloads: WORKLOADS, json: null, report: null, sources: null, allRates: false, gatewayArgs: [], storageArgs: [], nodeArgs: [], set: {} };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) die(`${a} needs a value\n${usage()}`);
      return argv[++i];
    };
    const m = /^--w([1-5])-([a-z]+)$/.exec(a);
    if (a === '--help' || a === '-h') {
      console.log(usage());
      process.exit(0);
    } else if (a === '--quick') o.quick = true;
    else if (a === '--all-rates') o.allRates = true;
    else if (a === '--rounds') o.rounds = Number(val());
    else if (a === '--workloads') o.workloads = val().toUpperCase().split(',').filter(Boolean);
    else if (a === '--json') o.json = val();
    else if (a === '--report') o.report = val();
    else if (a === '--sources') o.sources = val();
    else if (a === '--gateway-args') o.gatewayArgs = val().split(' ').filter(Boolean);
    else if (a === '--storage-args') o.storageArgs = val().split(' ').filter(Boolean);
    else if (a === '--node-args') o.nodeArgs = val().split(' ').filter(Boolean);
    else if (m) {
      const w = `W${m[1]}`;
      if (!(m[2] in SETTINGS[w])) die(`${a}: ${w} has no setting "${m[2]}" (it has ${Object.keys(SETTINGS[w]).join(', ')})`);
      const v = val();
      const list = Array.isArray(SETTINGS[w][m[2]]);
      const parsed = list ? v.split(',').map(Number) : Number(v);
      if ((list ? parsed : [parsed]).some((x) => !Number.isFinite(x) || x < 0)) die(`${a}: bad value ${v}`);
      (o.set[w] ??= {})[m[2]] = parsed;
    } else die(`unknown argument ${a}\n${usage()}`);
  }
  for (const w of o.workloads) if (!WORKLOADS.includes(w)) die(`unknown workload ${w}`);
  o.rounds ??= o.quick ? 1 : 3;
  if (!Number.isInteger(o.rounds) || o.rounds < 1) die('--rounds must be a positive integer');
  if (o.rounds < 3 && !o.quick) die('--rounds must be at least 3 (ratios need a spread), unless --quick');
  o.cfg = {};
  for (const w of WORKLOADS) o.cfg[w] = { ...SETTINGS[w], ...(o.quick ? QUICK[w] : {}), ...(o.set[w] ?? {}) };
  const g = o.cfg.W4;
  if (g.groups.length !== g.grouprates.length) die(`--w4-groups and --w4-grouprates need as many values (${g.groups.join(',')}; ${g.grouprates.join(',')})`);
  if (g.grouprates.some((x) => !(x > 0))) die('--w4-grouprates: each rate must be positive');
  o.sourceList = o.sources ?? Array.from({ length: 7 }, (_, i) => `127.0.0.${i + 2}`).join(',');
  for (const k of ['json', 'report']) if (o[k] && !path.isAbsolute(o[k])) o[k] = path.resolve(process.env.CHAT_BENCH_CWD || process.cwd(), o[k]);
  return o;
}

const opts = parseArgs(process.argv.slice(2));

// ------------------------------------------------------------------ /proc

/** VmRSS of `pids` summed, in bytes; null if one is gone. */
function rssOf(pids) {
  let sum = 0;
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      sum += Number(m[1]) * 1024;
    } catch {
      return null;
    }
  }
  return sum;
}

/** Open-file limit (soft) of this process, which the servers inherit. */
function fdLimit() {
  try {
    const m = /Max open files\s+(\d+|unlimited)/.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m[1] === 'unlimited' ? Infinity : Number(m[1]);
  } catch {
    return Infinity;
  }
}

// ------------------------------------------------------------------ cleanup

// chat-load runs in its own process group (it forks), killed as a group.
let currentLoad = null;
function killLoad() {
  if (currentLoad && currentLoad.exitCode === null && currentLoad.signalCode === null) {
    try {
      process.kill(-currentLoad.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
// Everything else (gateways, storage, Redis, PostgreSQL, node servers) is
// SIGKILLed by the harness's exit handlers if still running.
process.on('exit', killLoad);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.error(`\nbench: ${sig}: stopping everything it started`);
    killLoad();
    writeJson();
    process.exit(130);
  });
}

// ------------------------------------------------------------------ servers

/** A node-ref server.mjs process; resolves once it printed "listening PORT". */
async function startNodeRef(name, argv) {
  const proc = spawn(process.execPath, [NODE_REF, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], cwd: path.dirname(NODE_REF) });
  const srv = { name, proc, log: '', port: null, dumpLog() {} };
  const keep = (d) => {
    srv.log = (srv.log + d).slice(-65536);
  };
  proc.stderr.on('data', keep);
  srv.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  await new Promise((resolve, reject) => {
    proc.once('spawn', resolve);
    proc.once('error', (e) => reject(new Error(`cannot start ${name}: ${e.message}`)));
  });
  track(srv);
  srv.port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not print "listening PORT" within 20 s\n${srv.log}`)), 20000);
    proc.stdout.on('data', (d) => {
      keep(d);
      const m = /listening (\d+)/.exec(srv.log);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    srv.exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (code ${code}, signal ${signal}) before listening: node ${path.basename(NODE_REF)} ${argv.join(' ')}\n${srv.log}`));
    });
  });
  srv.alive = () => proc.exitCode === null && proc.signalCode === null;
  srv.stop = async () => {
    if (!srv.alive()) return srv.exited;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 8000);
    const r = await srv.exited;
    clearTimeout(timer);
    return r;
  };
  return srv;
}

const OURS_GW = ['--app', 'chat', '--workers', '1', '--jwt-secret', SECRET, '--rate-limit', '1000000',
  '--rate-burst', '1000000', '--max-connections', '100000', '--max-text-length', '4000'];

/**
 * Start one system's servers. kind: 'ours' | 'node' (relay), 'ours-durable'
 * | 'node-durable' (b) | 'node-batched' (c). infra: {redis, pg, dbUrl}.
 * Returns {kind, infra, servers, storage, targets, serverPids(), dead(),
 * stop()}. A server that cannot start throws a fatal error.
 */
async function startSystem(kind, infra) {
  const servers = [];
  let storage = null;
  const sys = { kind, infra, servers };
  try {
    if (kind === 'ours' || kind === 'ours-durable') {
      const durable = kind === 'ours-durable';
      if (durable) {
        storage = await startStorage({ redisUrl: infra.redis.url, databaseUrl: infra.dbUrl, secret: SECRET, shards: 8, args: opts.storageArgs });
      }
      const gws = await Promise.all([1, 2].map((i) => startGateway([
        ...OURS_GW, '--redis', infra.redis.url, '--node-id', `gw${i}`,
        ...(durable ? ['--storage', 'on', '--ingest-shards', '8'] : ['--storage', 'off']),
        ...opts.gatewayArgs,
      ])));
      servers.push(...gws);
      await Promise.all(gws.map((gw) => waitReady(gw.url, 10000)));
    } else {
      const mode = { node: 'relay', 'node-durable': 'durable', 'node-batched': 'batched' }[kind];
      const argv = ['--mode', mode, '--redis', infra.redis.url, '--jwt-secret', SECRET, '--port', '0',
        ...(mode !== 'relay' ? ['--database', infra.dbUrl] : []), ...opts.nodeArgs];
      // one after the other: the first creates its table (two processes
      // running CREATE TABLE IF NOT EXISTS at once can collide)
      for (const i of [1, 2]) servers.push(await startNodeRef(`node-ref ${mode} #${i}`, argv));
    }
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop().catch(() => {})));
    await storage?.stop().catch(() => {});
    throw Object.assign(err, { fatal: true });
  }
  sys.storage = storage;
  sys.targets = servers.map((s) => `127.0.0.1:${s.port}`).join(',');
  sys.serverPids = () => servers.map((s) => s.proc.pid);
  const isAlive = (s) => (typeof s.alive === 'function' ? s.alive() : s.alive);
  // a server that died during a run; null when all live
  sys.dead = () => {
    for (const s of [...servers, ...(storage ? [storage] : [])]) {
      if (!isAlive(s)) return `${s.name ?? `chat-gateway :${s.port}`} died (code ${s.proc.exitCode}, signal ${s.proc.signalCode}); last output:\n${s.log.slice(-3000)}`;
    }
    return null;
  };
  sys.stop = async () => {
    const warn = [];
    await Promise.all(servers.map(async (s) => {
      const wasAlive = isAlive(s); // a dead one is reported by dead()
      const r = await s.stop(8000);
      if (wasAlive && r && r.code !== 0) warn.push(`${s.name ?? `chat-gateway :${s.port}`} exited with code ${r.code}, signal ${r.signal} on SIGTERM`);
    }));
    if (storage) {
      const wasAlive = isAlive(storage);
      const r = await storage.stop(10000);
      if (wasAlive && r && r.code !== 0) warn.push(`chat-storage exited with code ${r.code}, signal ${r.signal} on SIGTERM`);
    }
    for (const w of warn) console.log(`    warning: ${w}`);
    return warn.map((w) => `warning: ${w}`);
  };
  return sys;
}

/**
 * chat-storage's counters of its batches (/metrics): committed, decided in
 * the room cache, refused by it, aborted by its guards; null when
 * unreachable.
 */
async function storageCounters(sys) {
  const names = {
    batches: 'chat_storage_batch_entries_count',
    fast: 'chat_storage_fast_batches_total',
    refused: 'chat_storage_fast_refused_total',
    aborted: 'chat_storage_fast_aborts_total',
  };
  try {
    const r = await httpRequest(`${sys.storage.url}/metrics`, { timeout: 2000 });
    const out = {};
    for (const [k, name] of Object.entries(names)) {
      const m = new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(r.text);
      out[k] = m ? Number(m[1]) : 0;
    }
    return out;
  } catch {
    return null;
  }
}

/**
 * CPU seconds so far of the system's parts (lib/cpu.mjs: each process with
 * its descendants): server (the gateways or the node processes), storage,
 * redis, pg (postmaster and backends) and pg_backends (the backends
 * alone: pg less them is PostgreSQL's background work, checkpoints,
 * autovacuum), load (chat-load and its forks); a part the system lacks is
 * absent.
 */
function sampleCpu(sys) {
  const groups = { server: sys.serverPids(), redis: [sys.infra.redis.proc.pid] };
  if (sys.storage) groups.storage = [sys.storage.proc.pid];
  if (sys.infra.pg) groups.pg = [sys.infra.pg.proc.pid];
  if (currentLoad) groups.load = [currentLoad.pid];
  return cpuSample(groups, { pgBackends: sys.infra.pg?.proc.pid });
}

// ------------------------------------------------------------------ chat-load

let loadModes = null; // what this chat-load's --help lists

function loadSupports(mode) {
  if (!loadModes) {
    let help = '';
    try {
      help = execFileSync(LOAD_BIN, ['--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      help = `${err.stdout ?? ''}${err.stderr ?? ''}`;
    }
    const m = /\bdm((?:\|[a-z]+)+)/.exec(help); // "--mode M  dm|room|typing|..."
    loadModes = m ? ['dm', ...m[1].split('|').filter(Boolean)] : ['dm'];
  }
  return loadModes.includes(mode);
}

/**
 * Run chat-load with `argv` against `sys`. Hooks run when chat-load prints
 * `ready ...` (onReady(kv)), `measure_start` and `measure_end`; CPU is
 * sampled at the last two. Resolves to {code, kv, ready, cpu, stderr, note}.
 * Exit status 2 (bad arguments, setup failure) throws.
 */
async function runLoad(sys, argv, { timeoutMs, onReady } = {}) {
  const proc = spawn(LOAD_BIN, ['--target', sys.targets, '--secret', SECRET, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  currentLoad = proc;
  let stderr = '';
  proc.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-8192);
  });
  const spawned = new Promise((resolve, reject) => {
    proc.once('spawn', resolve);
    proc.once('error', reject);
  });
  await spawned.catch((err) => {
    throw fatal(`cannot start chat-load (${LOAD_BIN}): ${err.message}; build it first (scripts/bench.sh does)`);
  });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const res = { argv: ['chat-load', ...argv], code: null, kv: {}, ready: null, cpu: null, note: [] };
  const hooks = [];
  let s0 = null;
  let summary = null;
  // chat-storage's batch counters at measure_start and measure_end
  const storageAt = [];
  const rl = createInterface({ input: proc.stdout });
  const rlClosed = new Promise((resolve) => rl.once('close', resolve));
  rl.on('line', (line) => {
    const t = line.trim();
    if (t === 'measure_start') {
      s0 = sampleCpu(sys);
      if (sys.storage) storageAt[0] = storageCounters(sys);
    } else if (t === 'measure_end') {
      res.cpu = cpuDelta(s0, sampleCpu(sys));
      if (sys.storage) storageAt[1] = storageCounters(sys);
    }
    else if (t.startsWith('ready ')) {
      res.ready = kvOf(t.slice(6));
      if (onReady) hooks.push(onReady(res.ready, exited));
    } else if (t.includes('=')) summary = t;
  });
  const timer = setTimeout(() => {
    res.note.push(`chat-load timed out after ${timeoutMs / 1000} s and was killed`);
    killLoad();
  }, timeoutMs);
  const { code, signal } = await exited;
  clearTimeout(timer);
  await rlClosed;
  await Promise.all(hooks);
  if (storageAt.length === 2) {
    const [a, b] = await Promise.all(storageAt);
    if (a && b) res.storage = Object.fromEntries(Object.keys(b).map((k) => [k, b[k] - (a[k] ?? 0)]));
  }
  currentLoad = null;
  res.code = code;
  res.stderr = stderr.trim();
  if (code === 2) throw fatal(`chat-load failed to set up (exit 2): ${res.argv.join(' ')}\n${stderr}`);
  if (summary) res.kv = kvOf(summary);
  if (code === null) res.note.push(`chat-load killed by ${signal}`);
  else if (!summary) res.note.push('chat-load printed no summary');
  if (code === 1) res.note.push('not clean: chat-load exit 1 (lost, duplicated or dead connections)');
  if (!res.cpu && code !== null) res.note.push('chat-load printed no measure_start/measure_end: CPU not measured');
  res.clean = code === 0 && !!summary;
  return res;
}

/** An error that ends the whole benchmark (exit 2), not just one run. */
function fatal(msg) {
  return Object.assign(new Error(msg), { fatal: true });
}

function kvOf(s) {
  const kv = {};
  for (const f of s.trim().split(/\s+/)) {
    const i = f.indexOf('=');
    if (i > 0) {
      const v = f.slice(i + 1);
      kv[f.slice(0, i)] = v !== '' && Number.isFinite(Number(v)) ? Number(v) : v;
    }
  }
  return kv;
}

// ------------------------------------------------------------------ formatting

const round3 = (x) => Math.round(x * 1000) / 1000;
const num = (x, d = 0) => (x === null || x === undefined || Number.isNaN(x) ? '-' : x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));
const ms = (x) => (x === null || x === undefined ? '-' : x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0));
const secs = (x) => (x === null || x === undefined ? '-' : x.toFixed(2));

function table(head, rows) {
  const all = [head, ...rows].map((r) => r.map((c) => String(c ?? '-')));
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const line = (r) => `  ${r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ')}`;
  return [line(all[0]), `  ${w.map((n) => '-'.repeat(n)).join('  ')}`, ...all.slice(1).map(line)].join('\n');
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return null;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// ------------------------------------------------------------------ runs

const machine = {};
const runs = []; // every run's raw results (the --json file)
const summary = [];
let failures = 0;

function writeJson() {
  if (!opts.json) return;
  try {
    writeFileSync(opts.json, `${JSON.stringify({ machine, options: { rounds: opts.rounds, quick: opts.quick, workloads: opts.workloads, settings: opts.cfg, sources: opts.sourceList, gatewayArgs: opts.gatewayArgs, storageArgs: opts.storageArgs, nodeArgs: opts.nodeArgs }, runs, summary,
      w4: opts.workloads.includes('W4') ? { perRate: w4Rows(), goals: w4Goals() } : undefined }, null, 2)}\n`);
  } catch (err) {
    console.error(`bench: cannot write ${opts.json}: ${err.message}`);
  }
}

const LABEL = { ours: 'ours', node: 'node', 'ours-durable': 'ours', 'node-durable': 'node (b)', 'node-batched': 'node (c)' };

/** The systems of round r: in order when r is even, reversed when odd. */
const orderOf = (systems, r) => (r % 2 === 0 ? systems : [...systems].reverse());

async function flushRedis(infra) {
  await infra.redis.command('FLUSHALL');
}

async function addMembers(redis, room, prefix, n) {
  for (let i = 0; i < n; i += 1000) {
    const ids = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) ids.push(`${prefix}${j}`);
    await redis.command('SADD', `{r:${room}}:members`, ...ids);
  }
}

/** One run: start `kind`'s servers, call body(sys), stop them; records the run. */
/**
 * A server of a rising-rate run (W2, W4) died at `rate`: that step does not
 * count, the rates below it do (they completed with every server alive).
 * The run is reported as partial and the benchmark exits 1.
 */
function diedAt(rec, died, rate) {
  rec.steps.pop();
  rec.partial = `${died.split('\n')[0]} at ${rate}/s; the rates below it count`;
}

async function oneRun(wl, kind, round, infra, body) {
  const rec = { workload: wl, system: kind, label: LABEL[kind], round, started: new Date().toISOString(), steps: [], notes: [] };
  runs.push(rec);
  const sys = await startSystem(kind, infra); // throws: fatal
  try {
    await body(sys, rec);
  } catch (err) {
    if (err.fatal) throw err;
    rec.notes.push(`run failed: ${err.message}`);
    rec.failed = true;
  } finally {
    const died = sys.dead();
    if (rec.partial) {
      rec.notes.push(`partial: ${rec.partial}`);
    } else if (died && !rec.failed) {
      rec.notes.push(died);
      rec.failed = true;
    }
    rec.notes.push(...(await sys.stop()));
  }
  if (rec.failed || rec.partial) {
    failures++;
    console.log(`    ${rec.failed ? 'FAILED' : 'PARTIAL'}: ${rec.notes.join('\n    ')}`);
  }
  return rec;
}

function describeCpu(c) {
  if (!c) return 'CPU -';
  const parts = [`server ${secs(c.server)} s`];
  if ('storage' in c) parts.push(`storage ${secs(c.storage)} s`);
  if ('pg' in c) parts.push(`postgres ${secs(c.pg)} s`);
  parts.push(`redis ${secs(c.redis)} s`);
  return `CPU ${parts.join(', ')} in ${secs(c.secs)} s`;
}

// ---- W1 idle

async function w1Run(sys, rec) {
  const c = opts.cfg.W1;
  await sleep(1000);
  const rssBefore = rssOf(sys.serverPids());
  let rssAfter = null;
  let idle = null;
  let endedEarly = false;
  const r = await runLoad(sys, ['--mode', 'idle', '--conns', String(c.conns), '--procs', String(c.procs),
    '--source', opts.sourceList, '--warmup', String(c.settle), '--duration', String(c.idle + 2), '--prefix', 'w1u'], {
    timeoutMs: (c.settle + c.idle + 120) * 1000,
    onReady: async (_kv, exited) => {
      let done = false;
      exited.then(() => {
        if (!done) endedEarly = true;
      });
      await sleep(c.settle * 1000);
      rssAfter = rssOf(sys.serverPids());
      const a = sampleCpu(sys);
      await sleep(c.idle * 1000);
      idle = cpuDelta(a, sampleCpu(sys));
      done = true;
    },
  });
  const ready = r.ready?.ready ?? null;
  const step = { load: r, rssBefore, rssAfter, idleCpu: idle };
  rec.steps.push(step);
  if (!r.ready) r.note.push('chat-load printed no ready line');
  if (endedEarly) {
    r.note.push('chat-load ended before the idle window closed');
    r.clean = false;
  }
  if (ready !== c.conns) {
    r.note.push(`only ${ready} of ${c.conns} connections set up`);
    r.clean = false;
  }
  const bytes = rssBefore !== null && rssAfter !== null && ready ? (rssAfter - rssBefore) / ready : null;
  const idlePct = idle?.server !== null && idle ? (idle.server / idle.secs) * 100 : null;
  rec.headline = r.clean ? { bytesPerConn: bytes, idleCpuPct: idlePct } : {};
  console.log(`    ${LABEL[sys.kind]}: ${num(ready)} of ${num(c.conns)} ready; RSS ${num(rssBefore / 2 ** 20, 1)} -> ${num(rssAfter / 2 ** 20, 1)} MiB: ${num(bytes)} bytes/conn; idle CPU ${num(idlePct, 2)}% of a core (redis ${idle ? secs(idle.redis) : '-'} s over ${c.idle} s)${r.clean ? '' : '  NOT CLEAN'}${r.note.length ? `  [${r.note.join('; ')}]` : ''}`);
}

// ---- W2 fan-out

async function w2Run(sys, rec) {
  const c = opts.cfg.W2;
  if (sys.kind === 'ours') await addMembers(sys.infra.redis, 'g_bench', 'w2u', c.members);
  for (const rate of c.rates) {
    const r = await runLoad(sys, ['--mode', 'room', '--room', 'g_bench', '--conns', String(c.members), '--procs', String(c.procs),
      '--senders', String(c.senders), '--rate', String(rate), '--warmup', String(c.warmup), '--duration', String(c.duration), '--prefix', 'w2u'],
    { timeoutMs: (c.warmup + c.duration + 150) * 1000 });
    // every member, the sender included, gets each message sent in the window
    const expected = (r.kv.sent_window ?? rate * c.duration) * c.members;
    const deliveries = r.kv.deliveries ?? null;
    const share = deliveries === null ? null : deliveries / expected;
    const perCpu = deliveries !== null && r.cpu?.server ? deliveries / r.cpu.server : null;
    const p99 = r.kv.deliver_p99_ms ?? null;
    const sustained = r.clean && share !== null && share >= 0.98 && p99 !== null && p99 <= 100;
    rec.steps.push({ rate, expected, deliveries, share, perCpu, sustained, load: r });
    console.log(`    ${LABEL[sys.kind]} ${String(rate).padStart(5)}/s: deliveries ${num(deliveries)} (${num(share * 100, 1)}% of ${num(expected)}), ${num(r.kv.deliveries_per_s)}/s, p99 ${ms(p99)} ms; ${describeCpu(r.cpu)}: ${num(perCpu)} deliveries/CPU-s ${sustained ? 'sustained' : 'NOT sustained'}${r.note.length ? `  [${r.note.join('; ')}]` : ''}`);
    const died = sys.dead();
    if (died) {
      diedAt(rec, died, rate);
      break;
    }
    if (!opts.allRates && (share === null || share < 0.8 || (p99 ?? 0) > 1000)) {
      if (rate !== c.rates[c.rates.length - 1]) console.log(`    ${LABEL[sys.kind]}: saturated, higher rates skipped`);
      break;
    }
    await sleep(500);
  }
  rec.headline = w2Headline(rec.steps);
}

/**
 * W2's headline figures from its steps (one per rate): the best deliveries
 * per server CPU-second over the sustained rates (>= 98% delivered, p99 <=
 * 100 ms, clean) and the highest such rate; and the best over the rates
 * with >= 98% delivered whatever the latency, for a ratio even when a
 * system sustains no rate.
 */
function w2Headline(steps) {
  const best = (ok) => {
    const v = steps.filter(ok).map((s) => s.perCpu).filter((x) => x !== null);
    return v.length ? Math.max(...v) : null;
  };
  return {
    deliveriesPerCpu: best((s) => s.sustained),
    sustainedRate: steps.filter((s) => s.sustained).reduce((m, s) => Math.max(m, s.rate), 0),
    deliveriesPerCpuAnyLatency: best((s) => s.load.clean && s.share >= 0.98),
  };
}

// ---- W3 relay latency

async function w3Run(sys, rec) {
  const c = opts.cfg.W3;
  const conns = c.receivers + 1;
  if (sys.kind === 'ours') await addMembers(sys.infra.redis, 'g_lat', 'w3u', conns);
  rec.headline = {};
  for (const mode of ['typing', 'room']) {
    const r = await runLoad(sys, ['--mode', mode, '--room', 'g_lat', '--conns', String(conns), '--procs', '1', '--senders', '1',
      '--rate', String(c.rate), '--warmup', String(c.warmup), '--duration', String(c.duration), '--prefix', 'w3u'],
    { timeoutMs: (c.warmup + c.duration + 120) * 1000 });
    const k = r.kv;
    rec.steps.push({ mode, load: r });
    const what = mode === 'room' ? 'sendMessage' : 'typing';
    if (r.clean) rec.headline[what] = { p50: k.deliver_p50_ms, p99: k.deliver_p99_ms, p999: k.deliver_p999_ms };
    console.log(`    ${LABEL[sys.kind]} ${what.padEnd(11)}: deliveries ${num(k.deliveries)}; p50 ${ms(k.deliver_p50_ms)} ms, p99 ${ms(k.deliver_p99_ms)} ms, p99.9 ${ms(k.deliver_p999_ms)} ms, max ${ms(k.deliver_max_ms)} ms${r.clean ? '' : '  NOT CLEAN'}${r.note.length ? `  [${r.note.join('; ')}]` : ''}`);
    const died = sys.dead();
    if (died) throw new Error(died);
    await sleep(500);
  }
}

// ---- W4 durable

// CPU per message: the parts of a system's server CPU (sampleCpu), named
// per system in the tables
const W4_PARTS = ['server', 'redis', 'storage', 'pg'];
const PART_NAME = { server: 'gateways', redis: 'redis', storage: 'storage', pg: 'postgres' };
const partName = (kind, k) => (k === 'server' && kind.startsWith('node') ? 'node' : PART_NAME[k]);

/**
 * µs of CPU per message by part over a step's window: each part's CPU
 * per second over the window divided by the acks that arrived within it
 * per second (the messages stored and acked at the rate the system kept
 * up; the same divisor for every system). total is the four server parts
 * (gateways or node processes, Redis, chat-storage, PostgreSQL with its
 * backends); load is chat-load's, busy the machine's busy share in %.
 */
function perMessage(cpu, acksPerS) {
  if (!cpu || !(cpu.secs > 0) || !(acksPerS > 0)) return null;
  const us = (x) => Math.round((1e6 * x) / cpu.secs / acksPerS);
  const out = {};
  let total = 0;
  for (const k of W4_PARTS) {
    if (!(k in cpu)) continue;
    if (cpu[k] === null) return null; // a process gone: no total
    out[k] = us(cpu[k]);
    total += cpu[k];
  }
  out.total = us(total);
  if (cpu.pg_backends != null && 'pg' in out) out.pg_backends = us(cpu.pg_backends);
  out.load = cpu.load == null ? null : us(cpu.load);
  out.busy = cpu.cores ? Math.round((100 * cpu.busy) / (cpu.secs * cpu.cores)) : null;
  return out;
}

function describePerMessage(kind, p) {
  if (!p) return 'CPU per message -';
  const parts = W4_PARTS.filter((k) => k in p).map((k) =>
    `${partName(kind, k)} ${num(p[k])}${k === 'pg' && p.pg_backends != null ? ` (backends ${num(p.pg_backends)})` : ''}`);
  return `CPU µs/msg: ${parts.join(' + ')} = ${num(p.total)} (machine ${p.busy}% busy; chat-load ${num(p.load)})`;
}

/**
 * A W4 step's verdicts and CPU per message, from its chat-load results
 * (also for --report). Sustained: nearly every message of the window
 * acked, ack p99 <= 20 ms. Kept up (a group's "does not fall over"):
 * nearly every message acked, most of them within the window (its edges
 * shift a few percent at low rates), ack p99 <= 1 s.
 */
function w4Judge(step) {
  const r = step.load;
  const k = r.kv;
  const throughput = k.ack_throughput_per_s ?? null; // acks that came within the window
  const acked = r.clean && (k.acked_per_s ?? 0) >= 0.98 * step.rate;
  step.sustained = acked && k.ack_p99_ms <= 20;
  step.keptUp = acked && throughput !== null && throughput >= 0.9 * step.rate && k.ack_p99_ms <= 1000;
  step.perMsg = perMessage(r.cpu, throughput);
}

/** One W4 step (a DM rate or a group); returns the step pushed on rec.steps. */
async function w4Step(sys, rec, step, argv) {
  const c = opts.cfg.W4;
  const r = await runLoad(sys, [...argv, '--rate', String(step.rate), '--warmup', String(c.warmup), '--duration', String(c.duration)],
    { timeoutMs: (c.warmup + c.duration + 150) * 1000 });
  const k = r.kv;
  if (r.clean && k.errors > 0) {
    // an error ack is a message not stored: not a clean durable run
    r.clean = false;
    r.note.push(`not clean: ${k.errors} error acks (${/first error ack: (.*)/.exec(r.stderr)?.[1] ?? 'see stderr'})`);
  }
  step.load = r;
  w4Judge(step);
  rec.steps.push(step);
  const throughput = k.ack_throughput_per_s ?? null;
  const what = step.kind === 'dm' ? `${String(step.rate).padStart(6)}/s` : `group ${step.members} ${step.rate}/s`;
  console.log(`    ${LABEL[sys.kind]} ${what}: acked ${num(throughput)}/s in the window, ack p50 ${ms(k.ack_p50_ms)} p99 ${ms(k.ack_p99_ms)} p99.9 ${ms(k.ack_p999_ms)} ms; ` +
    `errors ${num(k.errors)} lost ${num(k.lost)} dup ${num(k.dup)}; ${describePerMessage(sys.kind, step.perMsg)} ` +
    (r.storage ? `storage batches ${num(r.storage.batches)} (room cache: ${num(r.storage.fast)} decided, ${num(r.storage.refused)} refused, ${num(r.storage.aborted)} aborted) ` : '') +
    `${step.kind === 'dm' ? (step.sustained ? 'sustained' : 'NOT sustained') : step.keptUp ? 'kept up' : 'did NOT keep up'}${r.note.length ? `  [${r.note.join('; ')}]` : ''}`);
  return step;
}

async function w4Run(sys, rec) {
  const c = opts.cfg.W4;
  // the groups first, on fresh servers: an overloaded DM rate may leave
  // work behind
  for (let i = 0; i < c.groups.length; i++) {
    const members = c.groups[i];
    if (members < 2) continue;
    const room = `g_w4_${members}`;
    const prefix = `w4g${members}u`;
    if (sys.kind === 'ours-durable') {
      await createGroupRoom({
        sql: (q) => psql(sys.infra.dbUrl, q), redis: (cmd) => sys.infra.redis.command(...cmd), room,
        users: Array.from({ length: members }, (_, j) => `${prefix}${j}`),
      });
    }
    // one chat-load process: in room mode a process without a sender stops
    // a second after its last delivery, so at overload a stall of the
    // fan-out cut the tail of its members' messages, counted as lost (seen
    // twice with 2 processes: 500 members x 67-75 messages, no gap)
    await w4Step(sys, rec, { kind: 'group', members, rate: c.grouprates[i] }, ['--mode', 'room', '--room', room,
      '--conns', String(members), '--procs', '1', '--senders', String(Math.min(c.senders, members)), '--prefix', prefix]);
    const died = sys.dead();
    if (died) {
      diedAt(rec, died, `group ${members} ${c.grouprates[i]}`);
      rec.headline = w4Headline(rec.steps);
      return;
    }
    await sleep(500);
  }
  for (const rate of c.rates) {
    // new users at each rate: chat-load numbers its clientMsgIds from 0 in
    // every run, and ours refuses an id its sender used before
    const step = await w4Step(sys, rec, { kind: 'dm', rate }, ['--mode', 'dm', '--conns', String(2 * c.pairs), '--procs', String(c.procs), '--prefix', `w4d${rate}u`]);
    const died = sys.dead();
    if (died) {
      diedAt(rec, died, rate);
      break;
    }
    const k = step.load.kv;
    const throughput = k.ack_throughput_per_s ?? k.acked_per_s ?? null;
    if (!opts.allRates && (throughput === null || throughput < 0.8 * rate || k.ack_p99_ms > 1000)) {
      if (rate !== c.rates[c.rates.length - 1]) console.log(`    ${LABEL[sys.kind]}: saturated, higher rates skipped`);
      break;
    }
    await sleep(500);
  }
  rec.headline = w4Headline(rec.steps);
}

/**
 * W4's headline figures from its DM steps: the highest rate sustained
 * (acked/s >= 98% of it, ack p99 <= 20 ms, clean; 0 when none was), and the highest count of acks per second within
 * the window of a clean run whatever its latency.
 */
function w4Headline(steps) {
  const dm = steps.filter((s) => (s.kind ?? 'dm') === 'dm');
  return {
    sustainedRate: dm.filter((s) => s.sustained).reduce((m, s) => Math.max(m, s.rate), 0),
    // throughput: acks that arrived within the window (acked_per_s also
    // counts the window's messages acked seconds later, at overload)
    bestAcked: dm.filter((s) => s.load.clean).reduce((m, s) => Math.max(m, s.load.kv.ack_throughput_per_s ?? 0), 0),
  };
}

const W4_SUSTAINED = (h) => h.sustainedRate;

const w4Key = (s) => ((s.kind ?? 'dm') === 'dm' ? `dm ${s.rate}` : `group ${s.members} ${s.rate}`);

/** W4's step `key` of `kind` in round r, or null (not run, failed). */
function w4StepOf(kind, r, key) {
  const rec = runs.find((x) => x.workload === 'W4' && x.system === kind && x.round === r && !x.failed);
  return rec?.steps.find((s) => w4Key(s) === key) ?? null;
}

/** Per-round values f(round) -> number|null: {median, n}. */
function overRounds(f) {
  const v = Array.from({ length: opts.rounds }, (_, r) => f(r)).filter((x) => typeof x === 'number' && Number.isFinite(x));
  return { median: median(v), n: v.length };
}

/**
 * The per-rate table: for each DM rate and group, each system's medians
 * over the rounds (clean steps only), its CPU per message by part, the
 * ratio of its total to ours (per round, then the median) and, for groups,
 * to the DM at the same rate of the same system and round.
 */
function w4Rows() {
  const c = opts.cfg.W4;
  const keys = [...c.groups.map((m, i) => (m >= 2 ? `group ${m} ${c.grouprates[i]}` : null)).filter(Boolean), ...c.rates.map((r) => `dm ${r}`)];
  const rows = [];
  for (const key of keys) {
    for (const kind of WL.W4.systems) {
      const steps = Array.from({ length: opts.rounds }, (_, r) => w4StepOf(kind, r, key));
      const ran = steps.filter(Boolean);
      if (!ran.length) continue;
      const clean = (r) => (steps[r]?.load.clean ? steps[r] : null);
      const kv = (name) => overRounds((r) => clean(r)?.load.kv[name] ?? null).median;
      const cpu = (part) => overRounds((r) => clean(r)?.perMsg?.[part] ?? null).median;
      const total = (s) => (s?.load.clean ? s.perMsg?.total ?? null : null);
      const vsOurs = kind === 'ours-durable' ? null : overRounds((r) => {
        const o = total(w4StepOf('ours-durable', r, key));
        const n = total(clean(r));
        return o && n ? n / o : null;
      }).median;
      const [, members, rate] = key.startsWith('group') ? key.split(' ').map(Number) : [null, null, Number(key.split(' ')[1])];
      const vsDm = members ? overRounds((r) => {
        const d = total(w4StepOf(kind, r, `dm ${rate}`));
        const g = total(clean(r));
        return d && g ? g / d : null;
      }).median : null;
      rows.push({
        key, kind: members ? 'group' : 'dm', members, rate, system: kind, runs: ran.length,
        clean: ran.filter((s) => s.load.clean).length, keptUp: ran.filter((s) => s.keptUp).length,
        acked: kv('ack_throughput_per_s'), p50: kv('ack_p50_ms'), p99: kv('ack_p99_ms'), p999: kv('ack_p999_ms'),
        cpu: Object.fromEntries([...W4_PARTS, 'total', 'load'].map((p) => [p, cpu(p)])), vsOurs, vsDm,
      });
    }
  }
  return rows;
}

function w4Table() {
  const rows = w4Rows().map((x) => [
    x.kind === 'dm' ? `DM ${num(x.rate)}/s` : `group ${num(x.members)} ${num(x.rate)}/s`, LABEL[x.system],
    num(x.acked), ms(x.p50), ms(x.p99), ms(x.p999),
    num(x.cpu.server), num(x.cpu.redis), num(x.cpu.storage), num(x.cpu.pg), num(x.cpu.total),
    x.vsOurs === null ? '' : `${fmtRatio({ v: x.vsOurs, bound: '' })}`, x.vsDm === null ? '' : fmtRatio({ v: x.vsDm, bound: '' }),
    `${x.clean}/${x.runs}`, `${x.keptUp}/${x.runs}`,
  ]);
  console.log(`\nW4 per rate: medians over the rounds' clean runs; acked/s counts the acks within the window; CPU in µs of server CPU per message
  (gw/node: the two gateways or node processes; postgres with its backends); CPU/ours: total/ours' total; CPU/DM: total/the same system's DM at
  the same rate; kept up: >= 98% acked, >= 90% within the window, ack p99 <= 1 s:
${table(['load', 'system', 'acked/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'gw/node', 'redis', 'storage', 'postgres', 'total', 'CPU/ours', 'CPU/DM', 'clean', 'kept up'], rows)}`);
}

/**
 * Issue 13's goals, ours' medians over the rounds: each {goal, measured,
 * target, met}. A goal whose figure was not measured (a rate not reached:
 * the system saturated below it) is not met.
 */
function w4Goals() {
  const c = opts.cfg.W4;
  const ours = (r) => runs.find((x) => x.workload === 'W4' && x.system === 'ours-durable' && x.round === r && !x.failed);
  const clean = (r, key) => {
    const s = w4StepOf('ours-durable', r, key);
    return s?.load.clean ? s : null;
  };
  const rounds = (n) => (n < opts.rounds ? ` (${n} of ${opts.rounds} rounds)` : '');
  const goals = [];
  const add = (goal, target, { median: v, n }, ok, fmt, missing) => goals.push({
    goal, target, value: v, measured: v === null ? `- (${missing})` : `${fmt(v)}${rounds(n)}`, met: v !== null && ok(v),
  });
  const notRun = (rate) => (c.rates.includes(rate) ? 'not reached or not clean' : `${num(rate)}/s not among the rates`);
  add('DM: highest rate with ack p99 <= 20 ms', '>= 20,000/s', overRounds((r) => ours(r)?.headline?.sustainedRate ?? null), (v) => v >= 20000, w4fmt, 'no run');
  add('DM: ack p99 at 5,000/s', '<= 10 ms', overRounds((r) => clean(r, 'dm 5000')?.load.kv.ack_p99_ms ?? null), (v) => v <= 10, (v) => `${ms(v)} ms`, notRun(5000));
  // CPU per message at a rate counts where the system kept up with it (at
  // overload it is CPU per message at the rate it managed, said so)
  const cpuAt = (rate, max) => {
    const acks = overRounds((r) => clean(r, `dm ${rate}`)?.load.kv.ack_throughput_per_s ?? null).median;
    const behind = acks !== null && acks < 0.9 * rate;
    add(`DM: server CPU per message at ${num(rate)}/s`, `<= ${max} µs`, overRounds((r) => clean(r, `dm ${rate}`)?.perMsg?.total ?? null),
      (v) => v <= max && !behind, (v) => `${num(v)} µs${behind ? ` at ${num(acks)} acks/s` : ''}`, notRun(rate));
  };
  cpuAt(20000, 50);
  cpuAt(200, 300);
  add('DM: ack p99 at 1,000/s', '<= 5 ms', overRounds((r) => clean(r, 'dm 1000')?.load.kv.ack_p99_ms ?? null), (v) => v <= 5, (v) => `${ms(v)} ms`, notRun(1000));
  for (const [other, x] of [['node-batched', 5], ['node-durable', 10]]) {
    const e = evaluate(METRICS.find((m) => m.wl === 'W4' && m.other === other && m.get === W4_SUSTAINED));
    goals.push({
      goal: `highest rate with ack p99 <= 20 ms vs ${LABEL[other]}`, target: `>= ${x}x`, value: e.ratioMedian?.v ?? null,
      measured: e.ratioMedian ? `${fmtRatio(e.ratioMedian)} (${w4fmt(e.oursMedian)} vs ${w4fmt(e.otherMedian)}/s${e.validRounds < opts.rounds ? `; ${e.validRounds} of ${opts.rounds} rounds` : ''})` : '- (no ratio)',
      met: !!e.ratioMedian && e.ratioMedian.bound !== '<' && e.ratioMedian.v >= x,
    });
  }
  c.groups.forEach((members, i) => {
    if (members < 2) return;
    const rate = c.grouprates[i];
    const key = `group ${members} ${rate}`;
    const vs = overRounds((r) => {
      const g = clean(r, key)?.perMsg?.total;
      const d = clean(r, `dm ${rate}`)?.perMsg?.total;
      return g && d ? g / d : null;
    });
    const fmtX = (v) => fmtRatio({ v, bound: '' });
    if (members <= 100) add(`${num(members)}-member group at ${num(rate)}/s: CPU per message vs a DM's`, '<= 3x', vs, (v) => v <= 3, fmtX, c.rates.includes(rate) ? 'not clean' : `no DM at ${num(rate)}/s`);
    const held = Array.from({ length: opts.rounds }, (_, r) => w4StepOf('ours-durable', r, key)).filter(Boolean);
    const p99 = overRounds((r) => clean(r, key)?.load.kv.ack_p99_ms ?? null).median;
    goals.push({
      goal: `${num(members)}-member group at ${num(rate)}/s keeps up`, target: 'clean, >= 98% acked, p99 <= 1 s', value: held.filter((s) => s.keptUp).length,
      measured: held.length ? `${held.filter((s) => s.keptUp).length} of ${held.length} runs; ack p99 ${ms(p99)} ms${vs.median !== null && members > 100 ? `, ${fmtX(vs.median)} a DM's CPU` : ''}` : '- (not run)',
      met: held.length > 0 && held.every((s) => s.keptUp),
    });
  });
  return goals;
}

function printW4Goals(goals) {
  console.log(`\nW4 goals (issue 13; ours, medians over ${opts.rounds} round(s)):\n${table(['goal', 'measured', 'target', 'met?'], goals.map((g) => [g.goal, g.measured, g.target, g.met ? 'yes' : 'NO']))}`);
}

// ---- W5 connect storm

async function w5Run(sys, rec) {
  const c = opts.cfg.W5;
  const r = await runLoad(sys, ['--mode', 'connect', '--conns', String(c.slots), '--procs', String(c.procs), '--source', opts.sourceList,
    '--warmup', String(c.warmup), '--duration', String(c.duration), '--prefix', 'w5u'],
  { timeoutMs: (c.warmup + c.duration + 120) * 1000 });
  const k = r.kv;
  const inWindow = k.handshakes ?? (k.handshakes_per_s ?? 0) * c.duration; // handshakes in the window
  const cpuPerK = r.cpu?.server !== null && r.cpu && inWindow > 0 ? r.cpu.server / (inWindow / 1000) : null;
  rec.steps.push({ load: r, cpuPer1000: cpuPerK });
  rec.headline = r.clean ? { handshakesPerS: k.handshakes_per_s, cpuPer1000: cpuPerK, p50: k.connect_p50_ms, p99: k.connect_p99_ms } : {};
  console.log(`    ${LABEL[sys.kind]}: ${num(k.handshakes_per_s)} handshakes/s (failed ${num(k.failed)}), connect p50 ${ms(k.connect_p50_ms)} ms, p99 ${ms(k.connect_p99_ms)} ms; ${describeCpu(r.cpu)}: ${num(cpuPerK, 3)} server CPU-s per 1,000${r.clean ? '' : '  NOT CLEAN'}${r.note.length ? `  [${r.note.join('; ')}]` : ''}`);
}

// ------------------------------------------------------------------ headline metrics

const val = (x) => (typeof x === 'number' && Number.isFinite(x) ? x : null);

// ratio: (ours, other) => a number, {v, bound: '>' | '<'} (see w4ratio), or
// null when undefined.
const METRICS = [
  { wl: 'W1', label: 'W1 idle: server RSS per connection (B)', other: 'node', get: (h) => h.bytesPerConn, ratio: (o, n) => n / o, ratioName: 'node/ours', fmt: (x) => num(x),
    target: '<= 1024 B and >= 10x less than node', needsRatio: true, met: (o, r) => o <= 1024 && r >= 10 },
  { wl: 'W1', label: 'W1 idle: server CPU (% of a core)', other: 'node', get: (h) => h.idleCpuPct, ratio: (o, n) => (o > 0 ? n / o : null), ratioName: 'node/ours', fmt: (x) => num(x, 2) },
  { wl: 'W2', label: 'W2 fan-out: deliveries per server CPU-s', other: 'node', get: (h) => h.deliveriesPerCpu, ratio: (o, n) => o / n, ratioName: 'ours/node', fmt: (x) => num(x),
    target: '>= 400,000 and >= 6x node', needsRatio: true, met: (o, r) => o >= 400000 && r >= 6 },
  { wl: 'W2', label: 'W2 same, >= 98% delivered at any p99', other: 'node', get: (h) => h.deliveriesPerCpuAnyLatency, ratio: (o, n) => o / n, ratioName: 'ours/node', fmt: (x) => num(x) },
  { wl: 'W2', label: 'W2 fan-out: highest sustained rate (msgs/s)', other: 'node', get: (h) => h.sustainedRate, ratio: (o, n) => (n > 0 ? o / n : null), ratioName: 'ours/node', fmt: (x) => num(x) },
  { wl: 'W3', label: 'W3 typing: deliver p99 (ms)', other: 'node', get: (h) => h.typing?.p99, ratio: (o, n) => (o > 0 ? n / o : null), ratioName: 'node/ours', fmt: ms,
    target: '<= 1.5 ms', met: (o) => o <= 1.5 },
  { wl: 'W3', label: 'W3 sendMessage: deliver p99 (ms)', other: 'node', get: (h) => h.sendMessage?.p99, ratio: (o, n) => (o > 0 ? n / o : null), ratioName: 'node/ours', fmt: ms,
    target: '<= 1.5 ms', met: (o) => o <= 1.5 },
  { wl: 'W3', label: 'W3 sendMessage: deliver p99.9 (ms)', other: 'node', get: (h) => h.sendMessage?.p999, ratio: (o, n) => (o > 0 ? n / o : null), ratioName: 'node/ours', fmt: ms },
  { wl: 'W4', label: 'W4 durable msgs/s at ack p99 <= 20 ms vs (b)', other: 'node-durable', get: W4_SUSTAINED, ratio: w4ratio, ratioName: 'ours/(b)', fmt: w4fmt,
    target: '>= 20,000/s and >= 10x (b)', needsRatio: true, met: (o, r) => o >= 20000 && r >= 10 },
  { wl: 'W4', label: 'W4 durable msgs/s at ack p99 <= 20 ms vs (c)', other: 'node-batched', get: W4_SUSTAINED, ratio: w4ratio, ratioName: 'ours/(c)', fmt: w4fmt,
    target: '>= 5x (c)', needsRatio: true, met: (o, r) => r >= 5 },
  { wl: 'W4', label: 'W4 ack throughput/s, clean, any p99, vs (b)', other: 'node-durable', get: (h) => h.bestAcked, ratio: (o, n) => (n > 0 ? o / n : null), ratioName: 'ours/(b)', fmt: (x) => num(x) },
  { wl: 'W4', label: 'W4 ack throughput/s, clean, any p99, vs (c)', other: 'node-batched', get: (h) => h.bestAcked, ratio: (o, n) => (n > 0 ? o / n : null), ratioName: 'ours/(c)', fmt: (x) => num(x) },
  { wl: 'W5', label: 'W5 connect: handshakes/s', other: 'node', get: (h) => h.handshakesPerS, ratio: (o, n) => o / n, ratioName: 'ours/node', fmt: (x) => num(x) },
  { wl: 'W5', label: 'W5 connect: server CPU-s per 1,000', other: 'node', get: (h) => h.cpuPer1000, ratio: (o, n) => (o > 0 ? n / o : null), ratioName: 'node/ours', fmt: (x) => num(x, 3) },
  { wl: 'W5', label: 'W5 connect: p99 (ms)', other: 'node', get: (h) => h.p99, ratio: (o, n) => (o > 0 ? n / o : null), ratioName: 'node/ours', fmt: ms },
];

// A system that sustained none of the rates did less than the lowest: the
// ratio is then a bound.
function w4ratio(o, n) {
  const low = opts.cfg.W4.rates[0];
  if (o > 0 && n > 0) return o / n;
  if (o > 0) return { v: o / low, bound: '>' };
  if (n > 0) return { v: low / n, bound: '<' };
  return null;
}
function w4fmt(x) {
  return x === 0 ? `<${num(opts.cfg.W4.rates[0])}` : num(x);
}

function ratioOf(m, o, n) {
  if (o === null || n === null) return null;
  const r = m.ratio(o, n);
  if (r === null || r === undefined) return null;
  const x = typeof r === 'number' ? { v: r, bound: '' } : r;
  return Number.isFinite(x.v) ? x : null;
}

const fmtRatio = (r) => (r ? `${r.bound}${r.v >= 100 ? r.v.toFixed(0) : r.v >= 10 ? r.v.toFixed(1) : r.v.toFixed(2)}x` : '-');

/** Per-round values and ratios of metric m; prints the workload's table rows. */
function evaluate(m) {
  const rounds = [];
  for (let r = 0; r < opts.rounds; r++) {
    const find = (kind) => runs.find((x) => x.workload === m.wl && x.round === r && x.system === kind);
    const ours = find(m.wl === 'W4' ? 'ours-durable' : 'ours');
    const other = find(m.other);
    const o = ours && !ours.failed && ours.headline ? val(m.get(ours.headline)) : null;
    const n = other && !other.failed && other.headline ? val(m.get(other.headline)) : null;
    rounds.push({ round: r, ours: o, other: n, ratio: ratioOf(m, o, n) });
  }
  const ratios = rounds.map((x) => x.ratio).filter(Boolean);
  const sorted = [...ratios].sort((a, b) => a.v - b.v);
  let med = null;
  if (sorted.length) {
    const k = Math.floor(sorted.length / 2);
    med = sorted.length % 2 ? sorted[k] : { v: (sorted[k - 1].v + sorted[k].v) / 2, bound: sorted[k - 1].bound || sorted[k].bound };
  }
  const oursMed = median(rounds.map((x) => x.ours).filter((x) => x !== null));
  const otherMed = median(rounds.map((x) => x.other).filter((x) => x !== null));
  let met = null;
  if (m.met && oursMed !== null) {
    if (med || !m.needsRatio) met = m.met(oursMed, med ? med.v : null);
    else if (!m.met(oursMed, Infinity)) met = false; // the ratio unknown, ours misses anyway
  }
  return {
    metric: m.label, other: LABEL[m.other], ratioName: m.ratioName, rounds,
    oursMedian: oursMed, otherMedian: otherMed,
    ratioMin: sorted[0] ?? null, ratioMedian: med, ratioMax: sorted[sorted.length - 1] ?? null,
    validRounds: ratios.length, target: m.target ?? null, met,
  };
}

function workloadTable(wl) {
  const rows = [];
  for (const m of METRICS.filter((x) => x.wl === wl)) {
    const e = evaluate(m);
    for (const r of e.rounds) rows.push([m.label, r.round, m.fmt(r.ours), `${m.fmt(r.other)} ${e.other}`, `${fmtRatio(r.ratio)} ${m.ratioName}`]);
  }
  console.log(`\n${wl} per round:\n${table(['metric', 'round', 'ours', 'other', 'ratio'], rows)}`);
  if (wl === 'W4') {
    w4Table();
    printW4Goals(w4Goals());
  }
}

// ------------------------------------------------------------------ workloads

const WL = {
  W1: { title: 'W1 idle connections', systems: ['ours', 'node'], infra: 'relay', run: w1Run, mode: 'idle' },
  W2: { title: 'W2 room fan-out', systems: ['ours', 'node'], infra: 'relay', run: w2Run, mode: 'room' },
  W3: { title: 'W3 relay latency', systems: ['ours', 'node'], infra: 'relay', run: w3Run, mode: 'typing' },
  W4: { title: 'W4 durable messages', systems: ['ours-durable', 'node-durable', 'node-batched'], infra: 'durable', run: w4Run, mode: 'dm' },
  W5: { title: 'W5 connect storm', systems: ['ours', 'node'], infra: 'relay', run: w5Run, mode: 'connect' },
};

async function runWorkload(wl) {
  const w = WL[wl];
  const t0 = performance.now();
  console.log(`\n=== ${w.title}: ${Object.entries(opts.cfg[wl]).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : v}`).join(' ')}`);
  const infra = {};
  try {
    if (w.infra === 'relay') {
      infra.redis = await startRedis({ args: ['--appendonly', 'no', '--save', ''] });
    } else {
      infra.redis = await startRedis({ args: ['--appendonly', 'yes', '--appendfsync', 'everysec'] });
      infra.pg = await startPostgres({ fast: false });
    }
    let dbSeq = 0;
    for (let r = 0; r < opts.rounds; r++) {
      for (const kind of orderOf(w.systems, r)) {
        console.log(`  round ${r + 1}/${opts.rounds}, ${LABEL[kind]}`);
        await flushRedis(infra);
        if (infra.pg) {
          // a new database per run, so every run starts from empty tables;
          // a checkpoint first, so none lands in the measurements
          if (infra.db) await infra.pg.sql(`DROP DATABASE IF EXISTS ${infra.db}`);
          infra.db = `bench_${dbSeq++}`;
          await infra.pg.sql(`CREATE DATABASE ${infra.db}`);
          await infra.pg.sql('CHECKPOINT');
          infra.dbUrl = infra.pg.url.replace(/\/postgres$/, `/${infra.db}`);
        }
        await oneRun(wl, kind, r, infra, w.run);
        writeJson();
      }
    }
  } finally {
    await infra.pg?.stop();
    await infra.redis?.stop();
  }
  workloadTable(wl);
  const took = (performance.now() - t0) / 1000;
  console.log(`${wl} took ${took.toFixed(0)} s`);
  return took;
}

// ------------------------------------------------------------------ main

function version(bin, args, re) {
  try {
    const out = execFileSync(bin, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const m = re.exec(out);
    return m ? m[1] : out.trim();
  } catch {
    return 'unknown';
  }
}

function describeMachine() {
  const cpus = os.cpus();
  machine.cpus = cpus.length;
  machine.model = cpus[0]?.model ?? 'unknown';
  machine.ramGiB = Math.round((os.totalmem() / 2 ** 30) * 10) / 10;
  machine.kernel = `${os.type()} ${os.release()}`;
  machine.node = process.version;
  machine.redis = version(REDIS_BIN, ['--version'], /v=(\S+)/);
  machine.postgres = version(PG_BIN_DIR ? path.join(PG_BIN_DIR, 'postgres') : 'postgres', ['--version'], /(\d+\.\d+\S*)/);
  machine.commit = version('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], /(\S+)/);
  try {
    if (execFileSync('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).trim()) machine.commit += ' (with uncommitted changes)';
  } catch {
    // not a git checkout
  }
  try {
    machine.buildType = /CMAKE_BUILD_TYPE:STRING=(\S*)/.exec(readFileSync(path.join(ROOT, 'build/CMakeCache.txt'), 'utf8'))?.[1] ?? 'unknown';
  } catch {
    machine.buildType = 'unknown';
  }
  machine.clockTicks = CLK_TCK;
  console.log(`machine: ${machine.cpus} x ${machine.model}, ${machine.ramGiB} GiB RAM, ${machine.kernel}`);
  console.log(`software: node ${machine.node}, redis ${machine.redis}, postgres ${machine.postgres}; commit ${machine.commit}, build ${machine.buildType}`);
  console.log(`run: ${opts.rounds} round(s)${opts.quick ? ', --quick' : ''}, workloads ${opts.workloads.join(',')}; started ${new Date().toISOString()}`);
}

function preflight() {
  if (!existsSync(LOAD_BIN)) die(`no ${path.relative(ROOT, LOAD_BIN)}: build first (scripts/bench.sh does)`);
  if (!existsSync(path.join(path.dirname(NODE_REF), 'node_modules'))) die('tests/bench/node-ref has no node_modules: run npm ci there (scripts/bench.sh does)');
  const missing = opts.workloads.filter((wl) => !loadSupports(WL[wl].mode));
  if (missing.length) die(`this chat-load has no --mode ${missing.map((wl) => `${WL[wl].mode} (${wl})`).join(', ')}; rebuild it or choose --workloads`);
  if (opts.workloads.includes('W4')) {
    const need = Math.max(0, ...opts.cfg.W4.groups) + 256; // one chat-load process per group
    if (fdLimit() < need) die(`W4's groups need an open-file limit of at least ${need} (ulimit -n is ${fdLimit()})`);
  }
  if (opts.workloads.includes('W1')) {
    const c = opts.cfg.W1;
    const need = Math.ceil(c.conns / c.procs) + 256;
    if (fdLimit() < need) die(`W1 needs an open-file limit of at least ${need} (ulimit -n is ${fdLimit()})`);
  }
}

function printSummary() {
  summary.length = 0;
  for (const m of METRICS.filter((x) => opts.workloads.includes(x.wl))) summary.push(evaluate(m));
  const rows = summary.map((e) => [
    e.metric,
    METRICS.find((m) => m.label === e.metric).fmt(e.oursMedian),
    `${METRICS.find((m) => m.label === e.metric).fmt(e.otherMedian)} ${e.other}`,
    e.ratioMedian ? `${fmtRatio(e.ratioMin)} / ${fmtRatio(e.ratioMedian)} / ${fmtRatio(e.ratioMax)} ${e.ratioName}${e.validRounds < opts.rounds ? ` (${e.validRounds} of ${opts.rounds} rounds)` : ''}` : '-',
    e.target ?? '(report)',
    e.met === null ? (e.target ? 'n/a' : '') : e.met ? 'yes' : 'NO',
  ]);
  console.log(`\nSummary (medians over ${opts.rounds} round(s); ratio min / median / max over rounds):\n${table(['metric', 'ours', 'node', 'ratio', 'target', 'met?'], rows)}`);
  console.log('  "-": no value (a failed or not clean run; W2: no rate sustained); "<N": none of the rates tried; ">", "<": a bound');
  if (opts.workloads.includes('W4')) printW4Goals(w4Goals());
}

/** --report FILE: the tables again from a --json file, without running anything. */
function report(file) {
  const j = JSON.parse(readFileSync(file, 'utf8'));
  Object.assign(machine, j.machine);
  runs.push(...j.runs);
  opts.rounds = j.options.rounds;
  opts.workloads = j.options.workloads;
  opts.cfg = j.options.settings;
  opts.cfg.W4 = { groups: [], grouprates: [], ...opts.cfg.W4 }; // files from before the groups
  for (const rec of runs.filter((x) => !x.failed)) {
    if (rec.workload === 'W2') rec.headline = w2Headline(rec.steps);
    if (rec.workload === 'W4') {
      for (const s of rec.steps) w4Judge(s);
      rec.headline = w4Headline(rec.steps);
    }
  }
  console.log(`machine: ${machine.cpus} x ${machine.model}, ${machine.ramGiB} GiB RAM, ${machine.kernel}`);
  console.log(`software: node ${machine.node}, redis ${machine.redis}, postgres ${machine.postgres}; commit ${machine.commit}, build ${machine.buildType}`);
  console.log(`run: ${opts.rounds} round(s)${j.options.quick ? ', --quick' : ''}, workloads ${opts.workloads.join(',')}${machine.seconds ? `; took ${Object.entries(machine.seconds).map(([k, v]) => `${k} ${v} s`).join(', ')}` : ''}`);
  for (const wl of opts.workloads) workloadTable(wl);
  printSummary();
  return 0;
}

async function main() {
  if (opts.report) return report(opts.report);
  preflight();
  describeMachine();
  const t0 = performance.now();
  const took = {};
  for (const wl of opts.workloads) took[wl] = await runWorkload(wl);
  printSummary();
  const total = (performance.now() - t0) / 1000;
  console.log(`\ntime: ${Object.entries(took).map(([k, v]) => `${k} ${v.toFixed(0)} s`).join(', ')}; total ${(total / 60).toFixed(1)} min`);
  machine.seconds = Object.fromEntries(Object.entries(took).map(([k, v]) => [k, Math.round(v)]));
  if (failures) console.log(`${failures} run(s) failed: see above`);
  writeJson();
  if (opts.json) console.log(`raw results: ${opts.json}`);
  return failures ? 1 : 0;
}

main().then((code) => process.exit(code), (err) => {
  // a server or chat-load that cannot start: its message says why
  console.error(`bench: ${err.fatal ? err.message : err.stack ?? err}`);
  writeJson();
  process.exit(2);
});
