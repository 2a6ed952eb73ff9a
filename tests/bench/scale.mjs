// Scale-out benchmark (not a test): the durable path on one Redis and on a
// 3-master Redis Cluster, with one and with two chat-storage replicas, side
// by side on this machine. The point is that the work splits (storage
// replicas each store their share; Redis commands spread over masters) and
// the server CPU per message does not grow.
//
//   node tests/bench/scale.mjs [--rates 2000,8000] [--rounds 2] [--duration 6]
//                              [--configs single-1,cluster-1,single-2,cluster-2]
//   (scripts/bench.sh --scale ... does the same after building)
//
// Each (config, rate) is one run of durable.mjs --budget on a fresh stack
// (Redis or the cluster, PostgreSQL, the storage replicas, one gateway of two
// workers; 2,000 connections in 1,000 direct rooms), the configs in turn
// within a round so that drift of the machine spreads over all of them. It
// prints every run's lines, then a table of medians: acked/s, ack p50/p99,
// and server CPU per stored message by process (Redis: the masters; the
// cluster's replicas apart), from /proc.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const arg = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const rates = arg('--rates', '2000,8000').split(',').map(Number);
const rounds = Number(arg('--rounds', '2'));
const duration = arg('--duration', '6');
const configs = arg('--configs', 'single-1,cluster-1,single-2,cluster-2').split(',');

function flags(config) {
  const [redis, n] = config.split('-');
  return [...(redis === 'cluster' ? ['--redis-cluster'] : []), '--storages', n];
}

function runOnce(config, rate) {
  return new Promise((resolve, reject) => {
    const argv = [path.join(here, 'durable.mjs'), '--rates', String(rate), '--duration', duration,
      '--conns', '2000', '--procs', '2', '--budget', ...flags(config)];
    const p = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
      process.stdout.write(d);
    });
    p.on('error', reject);
    p.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`durable.mjs ${argv.slice(1).join(' ')} exited ${code}`));
      const run = /^rate=\d+ acked\/s=(\d+) ack p50=([\d.]+) p99=([\d.]+).* lost=(\d+) dup=(\d+)/m.exec(out);
      const cpu = /^budget rate=\d+: server CPU µs\/message: (.*); total (\d+)/m.exec(out);
      if (!run || !cpu) return reject(new Error(`no result in the output of ${config} at ${rate}/s`));
      const parts = Object.fromEntries([...cpu[1].matchAll(/([a-z-]+) (\d+) \(/g)].map((m) => [m[1], Number(m[2])]));
      const shares = /per storage replica: (.*)$/m.exec(out)?.[1] ?? '';
      resolve({ acked: Number(run[1]), p50: Number(run[2]), p99: Number(run[3]), lost: Number(run[4]), dup: Number(run[5]),
        total: Number(cpu[2]), ...parts, shares });
    });
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const results = new Map();
for (let round = 1; round <= rounds; round++) {
  for (const rate of rates) {
    for (const config of configs) {
      console.log(`\n===== round ${round}: ${config} at ${rate}/s`);
      const r = await runOnce(config, rate);
      const key = `${config}@${rate}`;
      if (!results.has(key)) results.set(key, []);
      results.get(key).push(r);
    }
  }
}

console.log(`\n| config | rate | acked/s | ack p50 / p99 ms | gateway | storage | postgres | redis (masters) | redis replicas | total µs/msg | lost/dup | storage shares (last round) |`);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const rate of rates) {
  for (const config of configs) {
    const rs = results.get(`${config}@${rate}`);
    const m = (k) => median(rs.map((r) => r[k] ?? 0));
    console.log(`| ${config} | ${rate} | ${m('acked')} | ${m('p50').toFixed(2)} / ${m('p99').toFixed(1)} | ${m('gateway')} | ${m('storage')} | ` +
      `${m('postgres')} | ${m('redis')} | ${m('redis-replicas') || '–'} | ${m('total')} | ${rs.reduce((a, r) => a + r.lost, 0)}/${rs.reduce((a, r) => a + r.dup, 0)} | ${rs[rs.length - 1].shares || '–'} |`);
  }
}
