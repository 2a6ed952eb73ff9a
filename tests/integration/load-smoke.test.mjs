// A small run of the load generator (tests/load/main.c), so the tool
// the benchmarks rely on keeps working: two gateways (relay only) and then
// the durable path (storage), each with pairs of users split across both
// gateways. chat-load itself checks that every acked message reached its
// peer exactly once and in order; this test checks its verdict and counts.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runChatLoad } from './lib/load.mjs';
import { startCluster } from './lib/stack.mjs';

function runLoad(cl, extra = []) {
  const targets = cl.gateways.map((gw) => `127.0.0.1:${gw.port}`).join(',');
  return runChatLoad(['--target', targets, '--secret', cl.secret, '--conns', '40', '--procs', '2',
    '--rate', '400', '--warmup', '0.5', '--duration', '1.5', ...extra]);
}

function check(r) {
  const msg = `chat-load said: ${r.out}${r.err}`;
  assert.equal(r.code, 0, msg);
  const n = (k) => Number(r.kv[k]);
  // 400/s for 2 s of sending in all: most of ~800 messages acked and received
  assert.ok(n('sent') >= 600, msg);
  assert.equal(n('acked'), n('sent'), msg);
  assert.equal(n('errors'), 0, msg);
  assert.equal(n('lost'), 0, msg);
  assert.equal(n('dup'), 0, msg);
  assert.equal(n('dead'), 0, msg);
  assert.ok(n('received') >= n('acked'), msg);
  assert.ok(n('ack_p50_ms') > 0, msg);
}

test('chat-load against two relay gateways: every message once, in order', { timeout: 60000 }, async (t) => {
  const cl = await startCluster({ gateways: 2, haproxy: false, t, args: ['--rate-limit', '1000', '--rate-burst', '1000'] });
  check(await runLoad(cl, ['--prefix', 'relay']));
});

test('chat-load through storage: every acked message stored and received once', { timeout: 90000 }, async (t) => {
  const cl = await startCluster({ gateways: 2, haproxy: false, storage: true, pgFast: true, t, args: ['--rate-limit', '1000', '--rate-burst', '1000'] });
  check(await runLoad(cl, ['--prefix', 'durable']));
  const stored = Number(await cl.pg.sql("SELECT count(*) FROM messages WHERE sender_id LIKE 'durable%'"));
  assert.ok(stored >= 600, `stored ${stored}`);
});
