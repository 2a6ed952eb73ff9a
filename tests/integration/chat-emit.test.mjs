// The four emit semantics of the chat application, each observed from
// clients: to every socket (announcement), to the sender only (chatError),
// to a room including the sender (messageReceived), to a room except the
// sender (showTyping). Two gateways with two workers each share one Redis.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runGateway } from './lib/harness.mjs';
import { connectAs, joinChat, makeUsers, sendOk } from './lib/chat.mjs';
import { startCluster } from './lib/stack.mjs';

const T = { timeout: 20000 };

describe('emit semantics', () => {
  let cl;
  before(async () => {
    cl = await startCluster({ gateways: 2, haproxy: false });
  });
  after(() => cl?.stop());

  const connect = (i, user, t) => connectAs(cl.gateways[i].url, user, {}, t);

  test('to every socket: `chat-gateway announce` reaches every socket of every gateway once', T, async (t) => {
    const users = await makeUsers(cl, 'Ann', 'Ben', 'Cid', 'Dee');
    const sockets = await Promise.all(users.map((u, i) => connect(i % 2, u, t)));
    const counts = sockets.map(() => 0);
    const got = Promise.all(
      sockets.map((s, i) => new Promise((resolve) => s.on('announcement', (a) => { counts[i]++; resolve(a); }))),
    );
    const text = `maintenance at ${Date.now()}`;
    const r = await runGateway(['announce', '--text', text, '--redis', cl.redis.url]);
    assert.equal(r.code, 0, r.stderr);
    // 2 gateways x 2 workers are subscribed to the announcement channel
    assert.match(r.stdout, /delivered to 4 gateway workers/);
    for (const g of await got) assert.deepEqual(g, { text });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(counts, sockets.map(() => 1), 'exactly once per socket');
  });

  test('to the sender only: an error without an ack callback arrives as chatError on that socket', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connect(0, alice, t);
    const a2 = await connect(1, alice, t); // Alice's second tab
    const b = await connect(1, bob, t);
    await joinChat(a2, bob.id);
    await joinChat(b, alice.id);
    const errors = [];
    for (const s of [a2, b]) s.on('chatError', (e) => errors.push(e));
    const own = new Promise((resolve) => a.once('chatError', resolve));
    a.emit('sendMessage', { roomId: 'not-joined-room', text: 'x' }); // no callback
    assert.deepEqual(await own, { error: 'not a member', event: 'sendMessage' });
    a.emit('sendMessage', { targetUserId: bob.id }); // no text
    assert.deepEqual(await new Promise((resolve) => a.once('chatError', resolve)), {
      error: 'invalid payload',
      event: 'sendMessage',
    });
    // and with a callback the error is the ack instead
    const acked = await a.timeout(5000).emitWithAck('sendMessage', { roomId: 'nope', text: 'x' });
    assert.deepEqual(acked, { error: 'not a member' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(errors, [], 'no other socket, not even the same user\'s other tab, sees the error');
  });

  test('to a room with the sender, and to a room except the sender', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connect(0, alice, t);
    const a2 = await connect(1, alice, t);
    const b = await connect(1, bob, t);
    for (const s of [a, a2]) await joinChat(s, bob.id);
    await joinChat(b, alice.id);
    const sent = await sendOk(a, { targetUserId: bob.id, text: 'everyone' });
    for (const s of [a, a2, b]) await s.inbox.wait('messageReceived', { id: sent.id });
    a.emit('typing', { targetUserId: bob.id });
    await b.inbox.wait('showTyping', { userId: alice.id });
    await a.inbox.none('showTyping');
    await a2.inbox.none('showTyping', {}, 100);
  });
});
