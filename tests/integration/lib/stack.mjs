// The local stack for the chat tests: real redis-server, PostgreSQL,
// chat-storage and HAProxy processes next to the gateways, and JWTs for the
// test users.
//
// Every process started here runs on a free loopback port with its files in
// a temporary directory, is SIGKILLed at exit at the latest, and has its
// output printed when a test fails while it runs (see track() in
// harness.mjs). Binaries: $REDIS_SERVER_BIN, $REDIS_CLI_BIN, $HAPROXY_BIN and $PG_BIN_DIR,
// else the Debian paths, else whatever PATH has; $CHAT_STORAGE_BIN (set by
// ctest), else build/bin/chat-storage.

import { execFile, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  captureLog,
  freePort,
  httpRequest,
  runGateway,
  sleep,
  startGateway,
  track,
  withTimeout,
} from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '../../..');
export const GEN_HAPROXY = path.join(ROOT, 'scripts/gen-haproxy.sh');


function findBin(envName, candidates, fallback) {
  if (process.env[envName]) return process.env[envName];
  return candidates.find((c) => existsSync(c)) ?? fallback;
}
export const REDIS_BIN = findBin('REDIS_SERVER_BIN', ['/usr/bin/redis-server', '/usr/local/bin/redis-server'], 'redis-server');
export const REDIS_CLI_BIN = findBin('REDIS_CLI_BIN', ['/usr/bin/redis-cli', '/usr/local/bin/redis-cli'], 'redis-cli');
export const HAPROXY_BIN = findBin('HAPROXY_BIN', ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy'], 'haproxy');

// One temporary directory per test process, removed at exit (after the
// harness has killed what still runs).
let tmpRoot = null;
function tmpDir(prefix) {
  if (!tmpRoot) {
    tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'chat-it-'));
    process.on('exit', () => rmSync(tmpRoot, { recursive: true, force: true }));
  }
  return mkdtempSync(path.join(tmpRoot, `${prefix}-`));
}

/**
 * A child process with its output kept (last 256 KiB) for failure reports.
 * `ready()` is polled until it resolves true (10 s at most) or the process
 * exits.
 */
export class Service {
  constructor(name, bin, argv, { env = {}, cwd, ready, spawnOpts = {}, readyMs = 10000 } = {}) {
    this.name = name;
    this.bin = bin;
    this.argv = argv;
    this.env = env;
    this.cwd = cwd;
    this.ready = ready;
    this.spawnOpts = spawnOpts; // extra spawn() options (uid, gid, detached)
    this.readyMs = readyMs;
    this.proc = null;
    this.log = '';
    this.printedUpTo = 0;
  }

  async start() {
    const proc = spawn(this.bin, this.argv, {
      env: { ...process.env, ...this.env },
      cwd: this.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...this.spawnOpts,
    });
    this.proc = proc;
    captureLog(this, proc);
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    await new Promise((resolve, reject) => {
      proc.once('spawn', resolve);
      proc.once('error', reject);
    }).catch((err) => {
      throw new Error(`cannot start ${this.name} (${this.bin}): ${err.message}`);
    });
    track(this);
    const deadline = Date.now() + this.readyMs;
    for (;;) {
      if (!this.alive) {
        throw new Error(`${this.name} exited before it was ready: ${this.bin} ${this.argv.join(' ')}\n${this.log}`);
      }
      if (!this.ready || (await this.ready().catch(() => false))) return this;
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`${this.name} was not ready within ${this.readyMs} ms\n${this.log}`);
      }
      await sleep(30);
    }
  }

  get alive() {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get pid() {
    return this.proc?.pid;
  }

  /** Send `signal` and wait for the exit. */
  async kill(signal = 'SIGKILL') {
    if (!this.alive) return this.exited;
    this.proc.kill(signal);
    return this.exited;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 3000) {
    if (!this.proc || !this.alive) return this.exited ?? { code: null, signal: null };
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    const result = await this.exited;
    clearTimeout(timer);
    return result;
  }

  dumpLog(why) {
    const text = this.log.slice(this.printedUpTo);
    this.printedUpTo = this.log.length;
    process.stderr.write(`\n----- ${this.name} output, ${why} -----\n${text}----- end of ${this.name} output -----\n`);
  }
}

/** Resolve true once something accepts TCP connections on 127.0.0.1:port. */
export function accepts(port, ms = 500) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const done = (ok) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), ms);
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

// ---------------------------------------------------------------- Redis

/** Encode a command as RESP. */
function respCommand(args) {
  let out = `*${args.length}\r\n`;
  for (const a of args) {
    const s = String(a);
    out += `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
  }
  return out;
}

/** Parse one RESP reply at buf[pos]; returns [value, next] or null if incomplete. */
function respParse(buf, pos = 0) {
  const eol = buf.indexOf('\r\n', pos);
  if (eol < 0) return null;
  const type = String.fromCharCode(buf[pos]);
  const line = buf.toString('utf8', pos + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+':
      return [line, next];
    case '-': {
      const err = new Error(line);
      err.redis = true;
      return [err, next];
    }
    case ':':
      return [Number(line), next];
    case '$': {
      const n = Number(line);
      if (n < 0) return [null, next];
      if (buf.length < next + n + 2) return null;
      return [buf.toString('utf8', next, next + n), next + n + 2];
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return [null, next];
      const items = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const r = respParse(buf, p);
        if (!r) return null;
        items.push(r[0]);
        p = r[1];
      }
      return [items, p];
    }
    default:
      throw new Error(`bad RESP reply ${JSON.stringify(buf.toString('latin1', pos, pos + 40))}`);
  }
}

/**
 * Run one command on a fresh connection (after AUTH when `password` is
 * given, then the commands of `before`, e.g. [['ASKING']]); resolves to the
 * reply (error replies reject).
 */
export function redisCommand(port, args, ms = 3000, password, before = []) {
  const pre = [...(password ? [['AUTH', password]] : []), ...before];
  const p = new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let skip = pre.length; // the replies to AUTH and `before`
    sock.once('error', reject);
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        let r;
        try {
          r = respParse(buf);
        } catch (err) {
          sock.destroy();
          reject(err);
          return;
        }
        if (!r) return;
        buf = buf.subarray(r[1]);
        if (skip > 0) {
          skip--;
          if (r[0] instanceof Error) {
            sock.destroy();
            reject(r[0]);
            return;
          }
          continue;
        }
        sock.destroy();
        if (r[0] instanceof Error) reject(r[0]);
        else resolve(r[0]);
        return;
      }
    });
    sock.once('close', () => reject(new Error(`redis connection closed before a reply to ${args[0]}`)));
    sock.write(pre.map(respCommand).join('') + respCommand(args));
  });
  return withTimeout(p, ms, `redis ${args.join(' ')}`);
}

class Redis extends Service {
  constructor(port, dir, extraArgs, password) {
    super(`redis-server :${port}`, REDIS_BIN, [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--dir', dir,
      '--save', '',
      '--appendonly', 'yes',
      '--appendfsync', 'always',
      '--daemonize', 'no',
      '--logfile', '',
      '--loglevel', 'notice',
      ...(password ? ['--requirepass', password] : []),
      ...extraArgs,
    ], {
      cwd: dir,
      ready: async () => (await redisCommand(port, ['PING'], 500, password)) === 'PONG',
    });
    this.port = port;
    this.dir = dir;
    this.password = password;
    this.url = password
      ? `redis://:${encodeURIComponent(password)}@127.0.0.1:${port}`
      : `redis://127.0.0.1:${port}`;
  }

  /** Run a command; resolves to the reply. */
  command(...args) {
    return redisCommand(this.port, args, 3000, this.password);
  }

  /**
   * Stop (`signal`: SIGTERM lets Redis finish its AOF, SIGKILL does not) and
   * start again on the same port with the same data. `downMs` keeps it down
   * that long in between.
   */
  async restart({ signal = 'SIGTERM', downMs = 0 } = {}) {
    await this.kill(signal);
    if (downMs > 0) await sleep(downMs);
    await this.start();
    return this;
  }
}

/**
 * Start redis-server on a free port (or `port`) with a fresh directory,
 * appendonly yes, no RDB snapshots, requirepass `password` when given.
 * Stopped after test `t` when given. The handle: {port, url (with the
 * password), dir, command(...args), restart(), start(), stop(), kill()}.
 */
export async function startRedis({ t, port, args = [], password } = {}) {
  const redis = new Redis(port ?? (await freePort()), tmpDir('redis'), args, password);
  if (t) t.after(() => redis.stop());
  await redis.start();
  return redis;
}

// ---------------------------------------------------------------- Redis Cluster

// Keyless commands that concern every node's data or state: run on every
// live master (or every live node) and their replies merged, so that a test
// written for one Redis reads the same on a cluster.
const ON_MASTERS = new Set(['KEYS', 'DBSIZE', 'FLUSHALL', 'FLUSHDB', 'INFO', 'PUBSUB']);
const ON_ALL_NODES = new Set(['SCRIPT', 'CONFIG']);

/** The nodes of CLUSTER NODES: [{id, port, flags, master (an id or null), slots: [[from, to]]}]. */
function parseClusterNodes(text) {
  return String(text).trim().split('\n').map((line) => {
    const f = line.trim().split(' ');
    const port = Number(f[1].split('@')[0].split(':').pop());
    const slots = f.slice(8).filter((s) => /^\d+(-\d+)?$/.test(s)).map((s) => {
      const [a, b] = s.split('-').map(Number);
      return [a, b ?? a];
    });
    return { id: f[0], port, flags: f[2].split(','), master: f[3] === '-' ? null : f[3], linkState: f[7], slots };
  });
}

/** One node of a RedisCluster: a redis-server with --cluster-enabled yes. */
class ClusterNode extends Redis {
  constructor(port, busPort, dir, timeoutMs, args = []) {
    super(port, dir, [
      '--cluster-enabled', 'yes',
      '--cluster-config-file', 'nodes.conf',
      '--cluster-node-timeout', String(timeoutMs),
      // its own free port: port + 10000 may be taken (or above 65535)
      '--cluster-port', String(busPort),
      // a replica syncs at once, not 5 s later (it cannot take over before)
      '--repl-diskless-sync-delay', '0',
      ...args,
    ]);
    this.name = `redis-cluster node :${port}`;
    this.busPort = busPort;
  }
}

/**
 * Six (by default) redis-server processes joined into a Redis Cluster of
 * masters with one replica each. Compatible with startRedis()'s handle
 * where a test needs it: url (redis-cluster://, every node a seed), port
 * (the first node's), command() routed to the node that owns the key (keyless
 * commands go to every master, see ON_MASTERS), kill()/start()/restart()/
 * stop() of every node at once.
 */
class RedisCluster {
  constructor(nodes, timeoutMs) {
    this.nodes = nodes;
    this.timeoutMs = timeoutMs;
    this.port = nodes[0].port;
    this.url = `redis-cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`;
    this.name = 'redis-cluster';
  }

  get alive() {
    return this.nodes.some((n) => n.alive);
  }

  node(port) {
    return this.nodes.find((n) => n.port === port);
  }

  /** CLUSTER NODES as seen by a live node (the first that answers). */
  async topology() {
    let last;
    for (const n of this.nodes.filter((x) => x.alive)) {
      try {
        return parseClusterNodes(await n.command('CLUSTER', 'NODES'));
      } catch (err) {
        last = err;
      }
    }
    throw new Error(`no live cluster node answers CLUSTER NODES${last ? `: ${last.message}` : ''}`);
  }

  /** The live masters (ClusterNode handles) that own slots. */
  async masters() {
    const topo = await this.topology();
    return topo
      .filter((x) => x.flags.includes('master') && !x.flags.some((f) => f.startsWith('fail')) && x.slots.length > 0)
      .map((x) => this.node(x.port))
      .filter((n) => n?.alive);
  }

  /** The replicas (ClusterNode handles) of master `node`. */
  async replicasOf(node) {
    const topo = await this.topology();
    const id = topo.find((x) => x.port === node.port)?.id;
    return topo.filter((x) => x.master === id).map((x) => this.node(x.port));
  }

  /** The node id CLUSTER NODES gives `node`. */
  async nodeId(node) {
    return node.command('CLUSTER', 'MYID');
  }

  /** The hash slot of `key` (CLUSTER KEYSLOT). */
  async keySlot(key) {
    const n = this.nodes.find((x) => x.alive);
    return n.command('CLUSTER', 'KEYSLOT', key);
  }

  /** The master node that owns `slot`, per CLUSTER NODES. */
  async ownerOf(slot) {
    const topo = await this.topology();
    const owner = topo.find(
      (x) => x.flags.includes('master') && !x.flags.some((f) => f.startsWith('fail')) && x.slots.some(([a, b]) => slot >= a && slot <= b),
    );
    return owner ? this.node(owner.port) : null;
  }

  /**
   * Run a command where a client library would: sent to a live master and
   * redirected on MOVED (and ASK, after ASKING) to the owner of its key;
   * retried while the cluster is down or a failover is under way (up to
   * `ms`). Keyless commands run on every master (or node) and their replies
   * are merged: arrays joined, numbers added, PUBSUB CHANNELS/NUMSUB count
   * sharded channels (SSUBSCRIBE) with the classic ones.
   */
  async command(...args) {
    const name = String(args[0]).toUpperCase();
    if (ON_MASTERS.has(name) || ON_ALL_NODES.has(name)) return this.broadcast(name, args);
    return this.routed(args);
  }

  async routed(args, ms = 10000) {
    const deadline = Date.now() + ms;
    let target = (await this.masters().catch(() => []))[0] ?? this.nodes.find((n) => n.alive);
    let asking = false;
    for (let hops = 0; ; hops++) {
      try {
        return await redisCommand(target.port, args, 3000, undefined, asking ? [['ASKING']] : []);
      } catch (err) {
        const m = /^(MOVED|ASK) \d+ [^:]+:(\d+)/.exec(err.message);
        if (m && hops < 16) {
          target = this.node(Number(m[2])) ?? { port: Number(m[2]) };
          asking = m[1] === 'ASK';
          continue;
        }
        const transient = /^(CLUSTERDOWN|TRYAGAIN|LOADING)/.test(err.message) || !err.redis;
        if (!transient || Date.now() > deadline) throw err;
        await sleep(100);
        target = (await this.masters().catch(() => []))[0] ?? this.nodes.find((n) => n.alive);
        asking = false;
      }
    }
  }

  async broadcast(name, args) {
    const on = ON_ALL_NODES.has(name) ? this.nodes.filter((n) => n.alive) : await this.masters();
    const sub = String(args[1] ?? '').toUpperCase();
    if (name === 'PUBSUB' && (sub === 'CHANNELS' || sub === 'NUMSUB')) {
      // every node: a sharded channel lives on its slot's master
      const live = this.nodes.filter((n) => n.alive);
      const shard = sub === 'CHANNELS' ? 'SHARDCHANNELS' : 'SHARDNUMSUB';
      const replies = await Promise.all(
        live.flatMap((n) => [n.command(...args), n.command('PUBSUB', shard, ...args.slice(2))]),
      );
      if (sub === 'CHANNELS') return [...new Set(replies.flat())];
      const counts = new Map(args.slice(2).map((c) => [String(c), 0]));
      for (const r of replies) for (let i = 0; i < r.length; i += 2) counts.set(r[i], counts.get(r[i]) + r[i + 1]);
      return [...counts].flat();
    }
    const replies = await Promise.all(on.map((n) => n.command(...args)));
    if (replies.every(Array.isArray)) return replies.flat();
    if (replies.every((r) => typeof r === 'number')) return replies.reduce((a, b) => a + b, 0);
    if (name === 'INFO') return replies.join('\n');
    return replies[0];
  }

  /**
   * Resolve once every live node reports cluster_state:ok and agrees with
   * the first on who owns each slot, and (`replicas`) every master has a
   * connected replica.
   */
  async waitOk({ ms = 30000, replicas = true } = {}) {
    const start = Date.now();
    const deadline = start + ms;
    let last = '';
    for (;;) {
      try {
        const live = this.nodes.filter((n) => n.alive);
        const infos = await Promise.all(live.map((n) => n.command('CLUSTER', 'INFO')));
        const bad = live.filter((_, i) => !/cluster_state:ok/.test(infos[i]));
        const views = await Promise.all(live.map(async (n) => {
          const topo = parseClusterNodes(await n.command('CLUSTER', 'NODES'));
          return JSON.stringify(topo.filter((x) => x.slots.length > 0 && x.flags.includes('master')).map((x) => [x.port, x.slots]).sort());
        }));
        const topo = await this.topology();
        const masters = topo.filter((x) => x.flags.includes('master') && x.slots.length > 0 && !x.flags.some((f) => f.startsWith('fail')));
        // a replica can take over only once it has synced: ROLE says connected
        const synced = new Set();
        for (const x of topo.filter((y) => y.master && !y.flags.some((f) => f.startsWith('fail')))) {
          const role = await this.node(x.port)?.command('ROLE').catch(() => null);
          if (role?.[0] === 'slave' && role[3] === 'connected') synced.add(x.master);
        }
        const lonely = replicas ? masters.filter((mst) => !synced.has(mst.id)) : [];
        if (bad.length === 0 && new Set(views).size === 1 && lonely.length === 0) return this;
        // `redis-cli --cluster create` can leave a replica unattached when
        // its CLUSTER REPLICATE came before the node knew its master (seen
        // once in CI on a loaded machine): an empty master is made the
        // replica of a master that has none
        const orphans = topo.filter((x) => x.flags.includes('master') && x.slots.length === 0 && !x.flags.some((f) => f.startsWith('fail')));
        const unattached = lonely.filter((mst) => !topo.some((y) => y.master === mst.id));
        if (replicas && Date.now() - start > 5000 && orphans.length > 0 && unattached.length > 0) {
          await this.node(orphans[0].port)?.command('CLUSTER', 'REPLICATE', unattached[0].id).catch(() => null);
        }
        const roles = await Promise.all(topo.filter((x) => x.master).map(async (x) => `:${x.port} ${JSON.stringify(await this.node(x.port)?.command('ROLE').catch((e) => e.message))}`));
        last = `${bad.map((n) => n.port).join(',') || 'none'} not ok; ${new Set(views).size} slot maps; masters without a replica: ${lonely.map((x) => x.port).join(',') || 'none'}; empty masters: ${orphans.map((x) => x.port).join(',') || 'none'}; replicas' ROLE: ${roles.join(' ')}`;
      } catch (err) {
        last = err.message;
      }
      if (Date.now() > deadline) {
        // what each node thinks of itself and of the others, to tell why
        const views = await Promise.all(this.nodes.filter((n) => n.alive).map(async (n) => {
          const text = await n.command('CLUSTER', 'NODES').catch((e) => e.message);
          const lines = typeof text === 'string' ? parseClusterNodes(text).map((x) => `${x.port}:${x.flags.join('+')}${x.master ? `>${x.master.slice(0, 6)}` : ''}/${x.id.slice(0, 6)}`) : [text];
          return `  :${n.port} sees ${lines.join(' ')}`;
        }));
        throw new Error(`the Redis Cluster was not ok within ${ms} ms (${last})\n${views.join('\n')}`);
      }
      await sleep(100);
    }
  }

  /** Send `signal` to every node and wait for their exits (as a single Redis's kill()). */
  async kill(signal = 'SIGKILL') {
    return (await Promise.all(this.nodes.map((n) => n.kill(signal))))[0];
  }

  /** Start every node that is down (same ports, same data and nodes.conf); resolves once the cluster is ok. */
  async start() {
    await Promise.all(this.nodes.filter((n) => !n.alive).map((n) => n.start()));
    await this.waitOk();
    return this;
  }

  /** kill(signal), `downMs`, start(): as Redis#restart. */
  async restart({ signal = 'SIGTERM', downMs = 0 } = {}) {
    await this.kill(signal);
    if (downMs > 0) await sleep(downMs);
    return this.start();
  }

  async stop() {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }

  /**
   * SIGKILL master `node` (default: the owner of `key`'s slot), wait until
   * one of its replicas owns its slots and the cluster is ok again; the dead
   * node stays down (node.start() brings it back as a replica). Resolves to
   * {killed, promoted} (ClusterNode handles).
   */
  async failover({ node, key, signal = 'SIGKILL', ms = 30000 } = {}) {
    const victim = node ?? (await this.ownerOf(await this.keySlot(key)));
    const replicas = await this.replicasOf(victim);
    const slot = (await this.topology()).find((x) => x.port === victim.port).slots[0][0];
    await victim.kill(signal);
    const deadline = Date.now() + ms;
    for (;;) {
      const owner = await this.ownerOf(slot).catch(() => null);
      if (owner && owner !== victim && replicas.includes(owner)) {
        await this.waitOk({ ms: Math.max(1000, deadline - Date.now()), replicas: false });
        return { killed: victim, promoted: owner };
      }
      if (Date.now() > deadline) throw new Error(`no replica of :${victim.port} took over slot ${slot} within ${ms} ms`);
      await sleep(100);
    }
  }

  /**
   * Move hash `slot` to master `to` as `redis-cli --cluster reshard` does,
   * for this one slot: SETSLOT IMPORTING on the target, MIGRATING on the
   * source, MIGRATE of its keys in batches of `batch` (waiting `pauseMs`
   * before each, so that traffic meets the slot half moved: ASK replies),
   * then SETSLOT NODE on the target, the source and every other master.
   * Resolves to {from, to, keys} (keys moved).
   */
  async migrateSlot(slot, to, { pauseMs = 0, batch = 10 } = {}) {
    const from = await this.ownerOf(slot);
    if (!from) throw new Error(`no master owns slot ${slot}`);
    if (from === to) return { from, to, keys: 0 };
    const fromId = await this.nodeId(from);
    const toId = await this.nodeId(to);
    await to.command('CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId);
    await from.command('CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId);
    let moved = 0;
    for (;;) {
      if (pauseMs > 0) await sleep(pauseMs);
      const keys = await from.command('CLUSTER', 'GETKEYSINSLOT', slot, batch);
      if (keys.length === 0) break;
      await from.command('MIGRATE', '127.0.0.1', to.port, '', 0, 10000, 'KEYS', ...keys);
      moved += keys.length;
    }
    await to.command('CLUSTER', 'SETSLOT', slot, 'NODE', toId);
    await from.command('CLUSTER', 'SETSLOT', slot, 'NODE', toId);
    for (const m of await this.masters()) {
      if (m !== to && m !== from) await m.command('CLUSTER', 'SETSLOT', slot, 'NODE', toId);
    }
    return { from, to, keys: moved };
  }

  dumpLog(why) {
    for (const n of this.nodes) n.dumpLog(why);
  }
}

/**
 * Start a Redis Cluster on free loopback ports: `masters` masters with
 * `replicasPer` replicas each (3 and 1: 6 redis-server processes, as
 * scripts/redis-cluster.sh), appendonly yes (appendfsync always),
 * cluster-node-timeout `nodeTimeoutMs` (and `args`, extra redis-server
 * arguments of every node), joined by `redis-cli --cluster create
 * --cluster-replicas`. Resolves once every node reports cluster_state:ok and
 * (`replicasReady`, the default) every master has a synced replica: only a
 * test that kills or fails over a master needs that. Stopped after test `t`
 * when given. The handle (RedisCluster): {url (redis-cluster://...), port, nodes, masters(),
 * replicasOf(node), ownerOf(slot), keySlot(key), command(...args),
 * failover({node|key}), migrateSlot(slot, to), waitOk(), kill(), start(),
 * restart(), stop()}; each node has the single Redis's handle (port,
 * command(), kill(), start(), restart()).
 */
export async function startRedisCluster({ t, masters = 3, replicasPer = 1, nodeTimeoutMs = 2000, args = [], replicasReady = true } = {}) {
  const count = masters * (1 + replicasPer);
  const nodes = [];
  for (let i = 0; i < count; i++) {
    nodes.push(new ClusterNode(await freePort(), await freePort(), tmpDir('redis-cluster'), nodeTimeoutMs, args));
  }
  const cluster = new RedisCluster(nodes, nodeTimeoutMs);
  if (t) t.after(() => cluster.stop());
  try {
    await Promise.all(nodes.map((n) => n.start()));
    const create = await run(REDIS_CLI_BIN, [
      '--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`),
      '--cluster-replicas', String(replicasPer), '--cluster-yes',
    ], { timeout: 60000 });
    if (create.code !== 0) throw new Error(`redis-cli --cluster create exited ${create.code}:\n${create.stdout}${create.stderr}`);
    await cluster.waitOk({ replicas: replicasReady });
  } catch (err) {
    if (!t) await cluster.stop();
    throw err;
  }
  return cluster;
}

// ---------------------------------------------------------------- PostgreSQL

// $PG_BIN_DIR, else Debian's newest /usr/lib/postgresql/VERSION/bin, else
// whatever PATH has.
function pgBinDir() {
  if (process.env.PG_BIN_DIR) return process.env.PG_BIN_DIR;
  const base = '/usr/lib/postgresql';
  let versions = [];
  try {
    versions = readdirSync(base).filter((v) => /^\d+(\.\d+)?$/.test(v) && existsSync(path.join(base, v, 'bin/postgres')));
  } catch {
    // not Debian's layout
  }
  versions.sort((a, b) => Number(b) - Number(a));
  return versions.length > 0 ? path.join(base, versions[0], 'bin') : '';
}
export const PG_BIN_DIR = pgBinDir();
const pgBin = (name) => (PG_BIN_DIR ? path.join(PG_BIN_DIR, name) : name);

// PostgreSQL refuses to run as root: as root, its processes run as the
// `postgres` user. spawn()'s uid/gid rather than runuser, so that the pid we
// hold is the postmaster's own and signals reach it directly.
function pgCredentials() {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return {};
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('running as root and there is no postgres user to run PostgreSQL as');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** Run a program to completion; resolves to {code, stdout, stderr}. */
function run(bin, args, { timeout = 60000, ...opts } = {}) {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { timeout, maxBuffer: 64 * 1024 * 1024, ...opts }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(new Error(`${bin} ${args.join(' ')}: ${err.message}\n${stderr}`));
        return;
      }
      resolve({ code: err ? err.code : 0, stdout, stderr });
    });
  });
}

/**
 * `pid` and its descendants, from /proc (Linux). PostgreSQL backends are
 * session leaders (setsid), so killing the postmaster's process group
 * misses them.
 */
function processTree(pid) {
  const children = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid).push(Number(entry));
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]) ?? []));
  return out;
}

/** True while `pid` exists and is not a zombie. */
function running(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

class Postgres extends Service {
  constructor(port, dir, { fast, creds, args }) {
    super(`postgres :${port}`, pgBin('postgres'), [
      '-D', path.join(dir, 'data'),
      '-p', String(port),
      '-k', dir,
      '-c', 'listen_addresses=127.0.0.1',
      // durability tests kill PostgreSQL: they need real commits (fsync on)
      ...(fast ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'] : []),
      ...args,
    ], {
      cwd: dir,
      spawnOpts: { ...creds },
      ready: async () => (await run(pgBin('pg_isready'), ['-q', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-t', '1'], { timeout: 3000 })).code === 0,
      readyMs: 30000,
    });
    this.port = port;
    this.dir = dir;
    this.url = `postgresql://postgres@127.0.0.1:${port}/postgres`;
  }

  /** SIGKILL the postmaster and every process it started; returns their pids. */
  killTree() {
    const pids = this.proc ? processTree(this.proc.pid) : [];
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    return pids;
  }

  /**
   * `signal` to the postmaster. SIGKILL is a crash: the postmaster and all
   * its backends die at once (an orphaned backend could otherwise still
   * commit), no shutdown checkpoint, recovery from the WAL at the next
   * start. Resolves once they are all gone.
   */
  async kill(signal = 'SIGKILL') {
    if (!this.alive) return this.exited;
    if (signal !== 'SIGKILL') {
      this.proc.kill(signal);
      return this.exited;
    }
    const pids = this.killTree();
    const result = await this.exited;
    const deadline = Date.now() + 10000;
    while (pids.some(running)) {
      if (Date.now() > deadline) throw new Error(`PostgreSQL processes ${pids.filter(running).join(' ')} survived SIGKILL`);
      await sleep(10);
    }
    return result;
  }

  /** Fast shutdown (SIGINT: clients are disconnected), a crash after `graceMs`. */
  async stop(graceMs = 10000) {
    if (!this.proc || !this.alive) return this.exited ?? { code: null, signal: null };
    this.proc.kill('SIGINT');
    const timer = setTimeout(() => this.killTree(), graceMs);
    const result = await this.exited;
    clearTimeout(timer);
    return result;
  }

  /**
   * Stop (`signal`: SIGINT shuts down cleanly, SIGKILL crashes it) and start
   * again on the same port with the same data; `downMs` keeps it down that
   * long in between.
   */
  async restart({ signal = 'SIGINT', downMs = 0 } = {}) {
    await this.kill(signal);
    if (downMs > 0) await sleep(downMs);
    await this.start();
    return this;
  }

  /** Run `query` with psql; resolves to its unaligned, tuples-only output. */
  async sql(query) {
    const res = await run(pgBin('psql'), ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', this.url, '-c', query], { timeout: 30000 });
    if (res.code !== 0) throw new Error(`psql ${JSON.stringify(query)} exited ${res.code}: ${res.stderr}`);
    return res.stdout.replace(/\n$/, '');
  }
}

const livePostgres = new Set();
process.on('exit', () => {
  for (const pg of livePostgres) if (pg.alive) pg.killTree();
});

/**
 * A throwaway PostgreSQL cluster: initdb (superuser postgres, trust
 * authentication) into a fresh directory, then postgres on a free port (or
 * `port`) on 127.0.0.1, its socket in that directory. Resolves once it
 * accepts connections. `fast` turns fsync and synchronous commits off (for
 * tests that never kill it); `args` are extra postgres arguments. As root,
 * it runs as the postgres user. Stopped after test `t` when given. The
 * handle: {port, url, dir, sql(query), stop(), kill(), restart(), start()}.
 */
export async function startPostgres({ t, port, fast = false, args = [] } = {}) {
  const creds = pgCredentials();
  const dir = tmpDir('pg');
  if (creds.uid !== undefined) {
    // the postgres user must reach its directory through ours
    chmodSync(path.dirname(dir), 0o711);
    chownSync(dir, creds.uid, creds.gid);
  }
  const init = await run(pgBin('initdb'), [
    '-D', path.join(dir, 'data'),
    '-U', 'postgres',
    '-A', 'trust',
    '-E', 'UTF8',
    '--locale=C',
    // a throwaway cluster: a machine crash is not among the tests
    '--no-sync',
  ], { cwd: dir, ...creds, timeout: 120000 });
  if (init.code !== 0) throw new Error(`initdb exited ${init.code}:\n${init.stdout}${init.stderr}`);
  const pg = new Postgres(port ?? (await freePort()), dir, { fast, creds, args });
  livePostgres.add(pg);
  if (t) t.after(() => pg.stop());
  await pg.start();
  return pg;
}

// ---------------------------------------------------------------- HAProxy

class Haproxy extends Service {
  constructor(port, cfgPath) {
    super(`haproxy :${port}`, HAPROXY_BIN, ['-db', '-f', cfgPath], { ready: () => accepts(port) });
    this.port = port;
    this.cfgPath = cfgPath;
    this.url = `http://127.0.0.1:${port}`;
    this.wsUrl = `ws://127.0.0.1:${port}`;
  }
}

/** The configuration scripts/gen-haproxy.sh prints for these ports. */
export async function haproxyConfig(lbPort, gatewayPorts, { storage = [] } = {}) {
  const args = [...storage.flatMap((s) => ['--storage', String(s)]), String(lbPort), ...gatewayPorts.map(String)];
  const proc = spawn(GEN_HAPROXY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (c) => (out += c));
  proc.stderr.on('data', (c) => (err += c));
  const [code] = await withTimeout(
    new Promise((resolve) => proc.once('close', (...a) => resolve(a))),
    5000,
    'gen-haproxy.sh',
  );
  if (code !== 0) throw new Error(`gen-haproxy.sh ${args.join(' ')} exited ${code}: ${err}`);
  return out;
}

/**
 * Start HAProxy with the configuration of scripts/gen-haproxy.sh in front
 * of `gatewayPorts`, on a free port (or `port`). Resolves once it accepts
 * connections. The handle: {port, url, wsUrl, cfgPath, stop(), kill()}.
 */
export async function startHaproxy(gatewayPorts, { t, port, storage } = {}) {
  const lbPort = port ?? (await freePort());
  const cfgPath = path.join(tmpDir('haproxy'), 'haproxy.cfg');
  writeFileSync(cfgPath, await haproxyConfig(lbPort, gatewayPorts, { storage }));
  const lb = new Haproxy(lbPort, cfgPath);
  if (t) t.after(() => lb.stop());
  await lb.start();
  return lb;
}

// ---------------------------------------------------------------- tokens

export const TEST_SECRET = 'integration-test-secret-0123456789abcdef';

const b64url = (data) => Buffer.from(data).toString('base64url');

/**
 * A JWT built here, for tokens the gateway must refuse: `claims` as given,
 * `header` defaulting to {alg: 'HS256', typ: 'JWT'}, signed with HMAC-SHA256
 * under `secret` (no signature for alg "none").
 */
export function signToken(claims, secret = TEST_SECRET, header = { alg: 'HS256', typ: 'JWT' }) {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  if (header.alg === 'none') return `${input}.`;
  const algo = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }[header.alg] ?? 'sha256';
  return `${input}.${crypto.createHmac(algo, secret).update(input).digest('base64url')}`;
}

/** Decode a JWT without verifying it: {header, claims, signature}. */
export function decodeToken(token) {
  const [h, c, s] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString()),
    claims: JSON.parse(Buffer.from(c, 'base64url').toString()),
    signature: s,
  };
}

/** True when `token` carries a valid HS256 signature under `secret`. */
export function verifySignature(token, secret = TEST_SECRET) {
  const [h, c, s] = token.split('.');
  const want = crypto.createHmac('sha256', secret).update(`${h}.${c}`).digest('base64url');
  return s !== undefined && s.length === want.length && crypto.timingSafeEqual(Buffer.from(s), Buffer.from(want));
}

/**
 * A token from `chat-gateway token --user USER --name NAME --ttl TTL`, with
 * the secret in CHAT_JWT_SECRET. Rejects unless it exits 0 and prints one
 * JWT.
 */
export async function mintToken(user, name, ttl = 3600, { secret = TEST_SECRET } = {}) {
  const args = ['token', '--user', user, '--name', name, '--ttl', String(ttl)];
  const res = await runGateway(args, { CHAT_JWT_SECRET: secret });
  const token = res.stdout.trim();
  if (res.code !== 0 || !/^[\w-]+\.[\w-]+\.[\w-]*$/.test(token)) {
    throw new Error(
      `chat-gateway ${args.join(' ')} exited ${res.code}; stdout ${JSON.stringify(res.stdout)} stderr ${res.stderr}`,
    );
  }
  return token;
}

/**
 * Tokens that must all be refused for user `user` (each a string, or
 * undefined for "no token"), keyed by what is wrong with them.
 */
export function badTokens(user = 'mallory', name = 'Mallory', secret = TEST_SECRET) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: user, name, iat: now, exp: now + 3600 };
  const good = signToken(claims, secret);
  const [gh, , gs] = good.split('.');
  return {
    expired: signToken({ ...claims, iat: now - 7200, exp: now - 3600 }, secret),
    'wrong secret': signToken(claims, `${secret}-not`),
    'alg none': signToken(claims, secret, { alg: 'none', typ: 'JWT' }),
    'alg none, signature kept': `${signToken(claims, secret, { alg: 'none', typ: 'JWT' })}${gs}`,
    'alg HS512': signToken(claims, secret, { alg: 'HS512', typ: 'JWT' }),
    'payload swapped (sub changed, old signature)': `${gh}.${b64url(JSON.stringify({ ...claims, sub: 'alice' }))}.${gs}`,
    'no exp': signToken({ sub: user, name, iat: now }, secret),
    'not valid before an hour from now (nbf)': signToken({ ...claims, nbf: now + 3600 }, secret),
    'no sub': signToken({ name, iat: now, exp: now + 3600 }, secret),
    'empty sub': signToken({ ...claims, sub: '' }, secret),
    'signature stripped': `${gh}.${good.split('.')[1]}.`,
    garbage: 'not-a-token',
    'garbage with dots': 'a.b.c',
    empty: '',
  };
}

// ---------------------------------------------------------------- storage

export const STORAGE_BIN = process.env.CHAT_STORAGE_BIN || path.join(ROOT, 'build/bin/chat-storage');

class Storage extends Service {
  constructor(port, argv, env) {
    super(`chat-storage :${port}`, STORAGE_BIN, ['--listen', `127.0.0.1:${port}`, ...argv], {
      env,
      ready: async () => (await httpRequest(`http://127.0.0.1:${port}/readyz`, { timeout: 1000 })).status === 200,
      readyMs: 20000,
    });
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
  }

  /**
   * Kill with `signal` (SIGKILL: a crash, its leases stay until they expire)
   * and start again on the same port with the same arguments.
   */
  async restart({ signal = 'SIGKILL', downMs = 0 } = {}) {
    await this.kill(signal);
    if (downMs > 0) await sleep(downMs);
    await this.start();
    return this;
  }

  /**
   * stop(), and fail unless the process exited with code 0 (a crash, a hang
   * on SIGTERM or a sanitizer report fails the suite), as gateways do.
   */
  async stopClean(graceMs = 10000) {
    const wasAlive = this.alive;
    const result = await this.stop(graceMs);
    if (wasAlive && result.code !== 0) {
      throw new Error(`${this.name} did not exit cleanly on SIGTERM (code ${result.code}, signal ${result.signal}); last output:\n${this.log.slice(-8000)}`);
    }
    if (!wasAlive && result && result.signal !== 'SIGKILL' && result.code !== 0) {
      throw new Error(`${this.name} had already died (code ${result.code}, signal ${result.signal}); last output:\n${this.log.slice(-8000)}`);
    }
    return result;
  }
}

/**
 * Start chat-storage ($CHAT_STORAGE_BIN, else build/bin/chat-storage) on a
 * free port (or `port`) of 127.0.0.1 against `redisUrl` and `databaseUrl`,
 * with the gateways' identity settings: `auth`, `secret` (the one mintToken
 * signs with), `roomSecret` (none: both derive the room key from the JWT
 * secret), `shards` (--ingest-shards, must equal the gateways'). `args` are
 * extra arguments, `env` extra environment. Resolves once GET /readyz
 * answers 200. Stopped (and required to exit cleanly) after test `t` when
 * given. The handle: {port, url, pid, alive, start(), stop(), stopClean(),
 * kill(signal), restart({signal, downMs})}.
 */
export async function startStorage({
  redisUrl,
  databaseUrl,
  auth = 'jwt',
  secret = TEST_SECRET,
  roomSecret,
  shards = 8,
  args = [],
  env = {},
  port,
  t,
} = {}) {
  const st = new Storage(port ?? (await freePort()), [
    '--redis', redisUrl,
    '--database', databaseUrl,
    '--auth', auth,
    ...(auth === 'jwt' ? ['--jwt-secret', secret] : []),
    ...(roomSecret ? ['--room-secret', roomSecret] : []),
    '--ingest-shards', String(shards),
    ...args,
  ], env);
  if (t) t.after(() => st.stopClean());
  await st.start();
  return st;
}

/**
 * One request to the storage HTTP API at `baseUrl` (HAProxy routes /api/ to
 * storage) as the holder of `token`: `body` is sent as JSON. Resolves to
 * {status, headers, text, json} (json undefined when the body is not JSON).
 */
export async function api(baseUrl, token, method, urlPath, body, { timeout = 10000 } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  let data;
  if (body !== undefined) {
    data = JSON.stringify(body);
    headers['content-type'] = 'application/json';
    headers['content-length'] = String(Buffer.byteLength(data));
  }
  const res = await httpRequest(`${baseUrl}${urlPath}`, { method, headers, body: data, timeout });
  let json;
  try {
    json = JSON.parse(res.text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text: res.text, json };
}

// ---------------------------------------------------------------- cluster

/** Resolve once GET url/readyz answers 200; reject after `ms`. */
export async function waitReady(url, ms = 10000, want = 200) {
  const deadline = Date.now() + ms;
  let last = 'no answer';
  for (;;) {
    try {
      const res = await httpRequest(`${url}/readyz`, { timeout: 1000 });
      if (res.status === want) return;
      last = `${res.status} ${res.text}`;
    } catch (err) {
      last = err.message;
    }
    if (Date.now() > deadline) throw new Error(`${url}/readyz did not answer ${want} within ${ms} ms (last: ${last})`);
    await sleep(50);
  }
}

/**
 * Redis, `gateways` chat gateways (--app chat) sharing it, and HAProxy in
 * front of them (unless haproxy: false).
 *   auth: 'jwt' (with `secret`) or 'insecure-dev'
 *   args: extra gateway arguments; gatewayArgs(i): per-gateway extra ones
 *   storage: true starts PostgreSQL and `storages` chat-storage replicas too
 *      (gateways get --storage on, HAProxy routes /api/ to storage);
 *      otherwise gateways run with --storage off (relay only)
 *   shards: --ingest-shards of gateways and storage (with storage)
 *   storageArgs: extra chat-storage arguments; storageEnv its environment
 *   pgFast: PostgreSQL without fsync (only for tests that never kill it)
 *   webRoot: a directory every gateway serves at / (--web-root), e.g. the
 *      built web app (web/dist) for the browser tests
 *   redisCluster: a 3-master, 3-replica Redis Cluster (startRedisCluster)
 *      instead of one redis-server; by default when CHAT_TEST_REDIS=cluster,
 *      so that a test runs unchanged on either (cl.redis.url is then
 *      redis-cluster://..., cl.redis.command() routes by key)
 *   redisFailover: the test kills or fails over cluster masters: the start
 *      waits until every master's replica has synced (otherwise only for
 *      the masters: a replica that never showed as attached, seen twice in
 *      loops of cluster tests on a loaded machine, does not fail a test
 *      that never needs it)
 *   t: a test context; the cluster is stopped in t.after (otherwise call
 *      stop(), e.g. in an after() hook). Gateways and storage must exit
 *      cleanly.
 * Resolves once every gateway (and storage replica) answers /readyz 200.
 * Returns {redis, pg, storage: [replicas], gateways, lb, url (HAProxy's,
 * else the first gateway's), apiUrl (where /api/ is served), secret,
 * token(user, name, ttl), stop()}.
 */
export async function startCluster({
  gateways = 2,
  auth = 'jwt',
  secret = TEST_SECRET,
  args = [],
  gatewayArgs = () => [],
  env = {},
  workers = 2,
  haproxy = true,
  storage = false,
  storages = 1,
  shards = 8,
  storageArgs = [],
  storageEnv = {},
  pgFast = false,
  webRoot = null,
  redisCluster = process.env.CHAT_TEST_REDIS === 'cluster',
  redisFailover = false,
  t,
} = {}) {
  const started = [];
  const replicas = [];
  let lb = null;
  let redis = null;
  let pg = null;
  const cluster = {
    redis: null,
    pg: null,
    storage: replicas,
    gateways: started,
    lb: null,
    auth,
    secret,
    token: (user, name, ttl) => mintToken(user, name, ttl, { secret }),
    async stop() {
      const errors = [];
      await Promise.all(started.map((gw) => gw.stopClean().catch((err) => errors.push(err))));
      await Promise.all(replicas.map((st) => st.stopClean().catch((err) => errors.push(err))));
      await lb?.stop();
      await pg?.stop();
      await redis?.stop();
      if (errors.length > 0) throw errors[0];
    },
  };
  if (t) t.after(() => cluster.stop());
  try {
    redis = cluster.redis = redisCluster ? await startRedisCluster({ replicasReady: redisFailover }) : await startRedis();
    // --storage defaults to on; a cluster without storage only relays
    let storageMode = ['--storage', 'off'];
    if (storage) {
      pg = cluster.pg = await startPostgres({ fast: pgFast });
      // one at a time: the first applies the migrations
      for (let i = 0; i < storages; i++) {
        replicas.push(
          await startStorage({
            redisUrl: redis.url,
            databaseUrl: pg.url,
            auth,
            secret,
            shards,
            args: ['--replica-id', `st${i + 1}`, ...storageArgs],
            env: storageEnv,
          }),
        );
      }
      storageMode = ['--storage', 'on', '--ingest-shards', String(shards)];
    }
    const gws = await Promise.all(
      Array.from({ length: gateways }, (_, i) =>
        startGateway(
          [
            '--app', 'chat',
            '--auth', auth,
            ...(auth === 'jwt' ? ['--jwt-secret', secret] : []),
            '--redis', redis.url,
            '--node-id', `gw${i + 1}`,
            '--workers', String(workers),
            ...storageMode,
            // the web app (or a test page) at / of every gateway, so at / of HAProxy
            ...(webRoot ? ['--web-root', webRoot] : []),
            ...args,
            ...gatewayArgs(i),
          ],
          env,
        ),
      ),
    );
    started.push(...gws);
    await Promise.all(gws.map((gw) => waitReady(gw.url)));
    if (haproxy) {
      lb = cluster.lb = await startHaproxy(gws.map((gw) => gw.port), { storage: replicas.map((st) => st.port) });
    }
  } catch (err) {
    if (!t) await cluster.stop().catch(() => {});
    throw err;
  }
  cluster.url = lb ? lb.url : started[0].url;
  cluster.apiUrl = lb ? lb.url : replicas[0]?.url;
  return cluster;
}
