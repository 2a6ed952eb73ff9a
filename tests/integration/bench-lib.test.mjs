// The benchmarks' shared pieces (tests/bench/lib): the CPU sampling that
// W4 and durable.mjs --budget divide by messages, and the group room they
// set up behind the servers' back, which the gateway must accept.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { cpuDelta, cpuSample, procTable, treeCpu } from '../bench/lib/cpu.mjs';
import { createGroupRoom, psql } from '../bench/lib/group.mjs';
import { sleep, until } from './lib/harness.mjs';
import { runChatLoad } from './lib/load.mjs';
import { startCluster } from './lib/stack.mjs';

// a child that burns 0.5 s of CPU (its own clock, so a busy machine only
// makes it slower), then a parent that reaps it and sleeps: a PostgreSQL
// backend that exits inside a measured window
const SPIN = 'const t0 = process.cpuUsage(); for (;;) { const u = process.cpuUsage(t0); if (u.user + u.system >= 500000) break; }';

test('treeCpu counts a process with its descendants, live and reaped', { timeout: 60000 }, async () => {
  const sh = spawn('sh', ['-c', `"${process.execPath}" -e "${SPIN}"; sleep 30`], { stdio: 'ignore' });
  await once(sh, 'spawn');
  try {
    const a = cpuSample({ sh: [sh.pid] });
    const children = () => [...procTable()].filter(([, s]) => s.ppid === sh.pid).map(([p]) => p);
    // while the child spins, the parent's tree has its CPU
    let child = null;
    await until(() => (child = children().find((p) => treeCpu(p) >= 0.1)) !== undefined, 20000, 'the child spinning');
    assert.ok(treeCpu(sh.pid) >= 0.1, `live child counted: ${treeCpu(sh.pid)}`);
    // once it is reaped (sh then runs sleep), its CPU stays in sh's cutime
    await until(() => !procTable().has(child), 30000, 'the child reaped');
    const d = cpuDelta(a, cpuSample({ sh: [sh.pid] }));
    assert.ok(d.sh >= 0.45, `reaped child counted: ${d.sh} s`);
    assert.ok(d.secs > 0 && d.busy >= 0 && d.cores >= 1, JSON.stringify(d));
  } finally {
    sh.kill('SIGKILL');
    await once(sh, 'exit');
  }
  // a process gone: no figure rather than a wrong one
  await sleep(50);
  assert.equal(cpuSample({ sh: [sh.pid] }).cpu.sh, null);
  assert.equal(treeCpu(sh.pid), null);
});

test('createGroupRoom: the gateway lets its members in, and no one else', { timeout: 90000 }, async (t) => {
  const cl = await startCluster({ gateways: 1, haproxy: false, storage: true, pgFast: true, t, args: ['--rate-limit', '1000', '--rate-burst', '1000'] });
  const room = 'g_benchlib';
  await createGroupRoom({
    sql: (q) => psql(cl.pg.url, q), redis: (cmd) => cl.redis.command(...cmd), room,
    users: ['blu0', 'blu1', 'blu2'],
  });
  const load = (conns) => runChatLoad(['--target', `127.0.0.1:${cl.gateways[0].port}`, '--secret', cl.secret, '--mode', 'room',
    '--room', room, '--conns', String(conns), '--senders', '2', '--rate', '100', '--warmup', '0.5', '--duration', '1', '--prefix', 'blu']);
  const r = await load(3);
  const msg = `chat-load said: ${r.out}${r.err}`;
  assert.equal(r.code, 0, msg);
  assert.ok(r.n('acked') >= 100, msg);
  assert.equal(r.n('errors'), 0, msg);
  assert.equal(r.n('lost'), 0, msg);
  assert.equal(Number(await psql(cl.pg.url, `SELECT count(*) FROM messages WHERE room_id = '${room}'`)), r.n('acked'));
  // blu3 is not a member: its joinRoom is refused
  const bad = await load(4);
  assert.notEqual(bad.code, 0, `chat-load said: ${bad.out}${bad.err}`);
  assert.match(bad.err, /join refused/);
  // ids go into the SQL text: anything but plain ones is refused
  await assert.rejects(createGroupRoom({ sql: async () => {}, redis: async () => {}, room: "g'x", users: ['a'] }), /bad id/);
});
