// The load generator (tests/load/main.c) checked against the stock
// client: its own Engine.IO/Socket.IO code must see what socket.io-client
// sees. Each workload runs with socket.io-client sockets in the same room,
// on both gateways; they must count exactly the deliveries chat-load claims
// (every acked message or typing, once, in order), and the gateways' own
// counters must agree with chat-load's totals. The benchmarks (issue 5,
// tests/bench/) trust these counts.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { httpRequest, sleep } from './lib/harness.mjs';
import { runChatLoad } from './lib/load.mjs';
import { mintToken, redisCommand, startCluster } from './lib/stack.mjs';
import { ack, connectAs } from './lib/chat.mjs';
import { closeAllClients } from './lib/client.mjs';

after(() => closeAllClients());

function runLoad(cl, args, opts) {
  const targets = cl.gateways.map((gw) => `127.0.0.1:${gw.port}`).join(',');
  return runChatLoad(['--target', targets, '--secret', cl.secret, ...args], opts);
}

/** Sum of a metric over every gateway of the cluster. */
async function metric(cl, name) {
  let sum = 0;
  for (const gw of cl.gateways) {
    const res = await httpRequest(`${gw.url}/metrics`, { timeout: 2000 });
    assert.equal(res.status, 200);
    const m = res.text.match(new RegExp(`^${name} (\\d+)$`, 'm'));
    assert.ok(m, `${name} missing from /metrics`);
    sum += Number(m[1]);
  }
  return sum;
}

async function addMembers(cl, room, users) {
  await redisCommand(cl.redis.port, ['SADD', `{r:${room}}:members`, ...users]);
}

/**
 * Stock clients (socket.io-client), one per gateway in turn, in `room`;
 * each records, per chat-load sender, the order of what it received.
 */
async function stockMembers(cl, room, names) {
  const members = [];
  for (const [i, name] of names.entries()) {
    const user = { id: name, name, token: await mintToken(name, name, 3600, { secret: cl.secret }) };
    const socket = await connectAs(cl.gateways[i % cl.gateways.length].url, user);
    const res = await ack(socket, 'joinRoom', { roomId: room });
    assert.equal(res?.roomId, room, `joinRoom: ${JSON.stringify(res)}`);
    const got = { messages: new Map(), typing: new Map() };
    socket.on('messageReceived', (m) => {
      const k = /^c(\d+)-(\d+)$/.exec(m.clientMsgId ?? '');
      if (!k) return;
      if (!got.messages.has(k[1])) got.messages.set(k[1], []);
      got.messages.get(k[1]).push(Number(k[2]));
    });
    socket.on('showTyping', (m) => {
      got.typing.set(m.userId, (got.typing.get(m.userId) ?? 0) + 1);
    });
    members.push({ name, socket, got });
  }
  return members;
}

const cluster = (t) =>
  startCluster({ gateways: 2, haproxy: false, t, args: ['--rate-limit', '100000', '--rate-burst', '100000'] });

test('room mode: stock clients get every message chat-load counts, once and in order', { timeout: 60000 }, async (t) => {
  const cl = await cluster(t);
  const room = 'g_validate_room';
  const load = Array.from({ length: 8 }, (_, i) => `lvr${i}`);
  const stock = ['stockr0', 'stockr1', 'stockr2', 'stockr3'];
  await addMembers(cl, room, [...load, ...stock]);
  const members = await stockMembers(cl, room, stock);
  const before = await metric(cl, 'chat_gateway_room_deliveries_total');

  const r = await runLoad(cl, ['--mode', 'room', '--room', room, '--prefix', 'lvr', '--conns', '8',
    '--procs', '2', '--senders', '2', '--rate', '100', '--warmup', '0.5', '--duration', '1.5']);
  const msg = `chat-load said: ${r.out}${r.err}`;
  assert.equal(r.code, 0, msg);
  for (const k of ['lost', 'dup', 'gap', 'dead', 'errors', 'failed']) assert.equal(r.n(k), 0, `${k}: ${msg}`);
  assert.ok(r.n('acked') >= 150, msg); // 100/s for 2 s
  assert.equal(r.n('acked'), r.n('sent'), msg);
  // chat-load's members (senders too) got every acked message once
  assert.equal(r.n('received'), r.n('acked') * 8, msg);

  await sleep(300); // chat-load waited 3 s after its last send; this is slack
  let total = 0;
  for (const m of members) {
    const senders = [...m.got.messages.keys()].sort();
    assert.deepEqual(senders, ['0', '1'], `${m.name} heard from ${senders}`);
    for (const s of senders) {
      const seq = m.got.messages.get(s);
      // once each, in the order sent: exactly 1..n
      assert.deepEqual(seq, Array.from({ length: seq.length }, (_, i) => i + 1), `${m.name} from c${s}`);
      total += seq.length;
    }
  }
  // each stock member got exactly what chat-load's senders had acked
  assert.equal(total, r.n('acked') * members.length, msg);
  // and the gateways queued exactly that many room deliveries in all
  const delivered = (await metric(cl, 'chat_gateway_room_deliveries_total')) - before;
  assert.equal(delivered, r.n('acked') * (8 + members.length), msg);
});

test('typing mode: stock clients get every typing chat-load counts', { timeout: 60000 }, async (t) => {
  const cl = await cluster(t);
  const room = 'g_validate_typing';
  const load = Array.from({ length: 6 }, (_, i) => `lvt${i}`);
  const stock = ['stockt0', 'stockt1'];
  await addMembers(cl, room, [...load, ...stock]);
  const members = await stockMembers(cl, room, stock);

  const r = await runLoad(cl, ['--mode', 'typing', '--room', room, '--prefix', 'lvt', '--conns', '6',
    '--senders', '2', '--rate', '100', '--warmup', '0.5', '--duration', '1.5']);
  const msg = `chat-load said: ${r.out}${r.err}`;
  assert.equal(r.code, 0, msg);
  for (const k of ['lost', 'dup', 'dead', 'errors']) assert.equal(r.n(k), 0, `${k}: ${msg}`);
  assert.ok(r.n('acked') >= 150, msg);
  // typing goes to the other members: each sender's to the 5 others
  assert.equal(r.n('received'), r.n('acked') * 5, msg);
  assert.ok(r.n('deliveries') > 0 && r.n('deliver_p50_ms') > 0, msg);
  await sleep(300);
  for (const m of members) {
    const got = (m.got.typing.get('lvt0') ?? 0) + (m.got.typing.get('lvt1') ?? 0);
    assert.equal(got, r.n('acked'), `${m.name}: ${JSON.stringify([...m.got.typing])}; ${msg}`);
  }
});

test('idle and connect modes: the gateways count the sessions chat-load reports', { timeout: 60000 }, async (t) => {
  const cl = await cluster(t);
  let sessions = null;
  const idle = await runLoad(cl, ['--mode', 'idle', '--prefix', 'lvi', '--conns', '300', '--procs', '2',
    '--warmup', '0', '--duration', '1.5'], {
    onLine: (line) => {
      // sampled while chat-load holds its connections
      if (line === 'measure_start') sessions = metric(cl, 'chat_gateway_sessions');
    },
  });
  const msg = `chat-load said: ${idle.out}${idle.err}`;
  assert.equal(idle.code, 0, msg);
  assert.equal(idle.n('ready'), 300, msg);
  assert.equal(idle.n('dead'), 0, msg);
  assert.equal(await sessions, 300, msg);

  const before = await metric(cl, 'chat_gateway_sessions_total');
  const storm = await runLoad(cl, ['--mode', 'connect', '--prefix', 'lvc', '--conns', '20',
    '--warmup', '0.2', '--duration', '1']);
  const msg2 = `chat-load said: ${storm.out}${storm.err}`;
  assert.equal(storm.code, 0, msg2);
  assert.equal(storm.n('failed'), 0, msg2);
  assert.ok(storm.n('handshakes') >= 200, msg2);
  assert.ok(storm.n('connect_p50_ms') > 0, msg2);
  // every handshake chat-load counted (in the window) was a session
  const opened = (await metric(cl, 'chat_gateway_sessions_total')) - before;
  assert.ok(opened >= storm.n('handshakes'), `${opened} sessions for ${storm.n('handshakes')} handshakes`);
});
