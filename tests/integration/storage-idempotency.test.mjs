// clientMsgId is scoped to the conversation (docs/storage.md "Storage's
// batch", proto/PROTOCOL.md sendMessage): idempotency is per (sender, room,
// clientMsgId). The same clientMsgId in two rooms is two messages; a retry
// (same room, same text) is answered with the original; a reuse with
// another text is refused with an error, never acked as a success. Over
// socket.io-client and over the HTTP API, with real Redis, PostgreSQL, one
// chat-storage and two gateways behind HAProxy.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closeAllClients, emitAck } from './lib/client.mjs';
import { makeUsers } from './lib/chat.mjs';
import { api, startCluster } from './lib/stack.mjs';
import { connectStored, createGroup, history, sendStored } from './lib/storage-chat.mjs';

const T = { timeout: 60000 };
const WAIT = 10000;

after(() => closeAllClients());

const enc = encodeURIComponent;

describe('clientMsgId is per (sender, room, clientMsgId)', () => {
  let cl;
  before(async () => {
    cl = await startCluster({ gateways: 2, storage: true, pgFast: true });
  });
  after(() => cl?.stop());

  const connect = (user, t) => connectStored(cl.url, user, { transports: ['websocket'] }, t);
  const send = async (socket, payload) => (await emitAck(socket, 'sendMessage', [payload], 15000))[0];

  test('"1" to Bob then "1" to Carol: both stored; a retry is the original; another text is refused', T, async (t) => {
    const [alice, bob, carol] = await makeUsers(cl, 'Alice', 'Bob', 'Carol');
    const [a, b, c] = await Promise.all([alice, bob, carol].map((u) => connect(u, t)));

    const toBob = await sendStored(a, { targetUserId: bob.id, text: 'hi Bob', clientMsgId: '1' });
    const toCarol = await sendStored(a, { targetUserId: carol.id, text: 'hi Carol', clientMsgId: '1' });
    assert.notEqual(toCarol.roomId, toBob.roomId);
    assert.notEqual(toCarol.id, toBob.id, 'Carol\'s message acked with the id of Bob\'s');
    assert.equal(toCarol.seq, 1);
    const got = await c.inbox.wait('messageReceived', { id: toCarol.id }, WAIT);
    assert.equal(got.text, 'hi Carol');
    assert.equal(got.clientMsgId, '1');
    await b.inbox.wait('messageReceived', { id: toBob.id }, WAIT);

    // a retry (same room, same text, by targetUserId or by roomId) is the
    // original message, stored once
    const retry = await sendStored(a, { targetUserId: bob.id, text: 'hi Bob', clientMsgId: '1' });
    assert.deepEqual(retry, toBob, 'a retry is answered with the original ack');
    const retry2 = await sendStored(a, { roomId: toCarol.roomId, text: 'hi Carol', clientMsgId: '1' });
    assert.deepEqual(retry2, toCarol);

    // the same clientMsgId in the same room with another text is no retry
    const reused = await send(a, { targetUserId: bob.id, text: 'something else', clientMsgId: '1' });
    assert.deepEqual(reused, { error: 'clientMsgId reused' });

    // the same in one batch: sent at once, both rooms' "2" are stored, and
    // of two different texts under one (room, "3") one is stored and the
    // other refused
    const [b2, c2, x, y] = await Promise.all([
      send(a, { roomId: toBob.roomId, text: 'two for Bob', clientMsgId: '2' }),
      send(a, { roomId: toCarol.roomId, text: 'two for Carol', clientMsgId: '2' }),
      send(a, { roomId: toBob.roomId, text: 'three', clientMsgId: '3' }),
      send(a, { roomId: toBob.roomId, text: 'drei', clientMsgId: '3' }),
    ]);
    assert.ok(b2?.id && c2?.id && b2.id !== c2.id, `"2" to both rooms: ${JSON.stringify([b2, c2])}`);
    const errors = [x, y].filter((r) => r?.error);
    assert.equal(errors.length, 1, `two texts under one clientMsgId: ${JSON.stringify([x, y])}`);
    assert.deepEqual(errors[0], { error: 'clientMsgId reused' });
    const stored3 = [x, y].find((r) => !r?.error);
    assert.equal(typeof stored3.id, 'string');

    const bobRoom = await history(cl.apiUrl, alice, toBob.roomId);
    const carolRoom = await history(cl.apiUrl, alice, toCarol.roomId);
    assert.deepEqual(bobRoom.map((m) => [m.clientMsgId, m.id]), [['1', toBob.id], ['2', b2.id], ['3', stored3.id]]);
    assert.deepEqual(carolRoom.map((m) => [m.clientMsgId, m.text]), [['1', 'hi Carol'], ['2', 'two for Carol']]);
    assert.equal(bobRoom[0].text, 'hi Bob', 'the refused text replaced the stored one');
    // nothing refused reached Bob
    await b.inbox.wait('messageReceived', { id: stored3.id }, WAIT);
    assert.deepEqual(b.inbox.all('messageReceived', { text: 'something else' }), []);
    assert.equal(b.inbox.all('messageReceived', { clientMsgId: '3' }).length, 1);
  });

  test('a batch of one message (chat__ingest_one) answers as the set-based chat_ingest does', T, async () => {
    // chat_batch takes a path of small statements for a one-message batch;
    // both paths, called directly on the same states, must give the same
    // answer: new, dup (the original's values), reused, forbidden (not a
    // member, no such room)
    const [alice, bob, mallory] = await makeUsers(cl, 'Alice', 'Bob', 'Mallory');
    const g1 = await createGroup(cl.apiUrl, alice, 'set-based', [bob.id]);
    const g2 = await createGroup(cl.apiUrl, alice, 'one by one', [bob.id]);
    const q = (x) => `'${String(x).replaceAll("'", "''")}'`;
    const cols = `x.o, x.status, x.id IS NULL, x.seq, x.shard IS NULL, x.shard_pos IS NULL, x.created_at IS NULL, x.usr`;
    const general = (m) => cl.pg.sql(`SELECT ${cols} FROM chat_ingest(${q(JSON.stringify([m]))}::jsonb) x`);
    const one = (m) => cl.pg.sql(`SELECT ${cols} FROM chat__ingest_one(${q(JSON.stringify(m))}::jsonb) x`);
    const msg = (room, user, x, c) => ({ o: 0, r: room, u: user.id, n: user.name, x, ...(c ? { c } : {}), sh: 0 });

    // new, in two rooms alike (each a first message: seq 1)
    const n1 = await general(msg(g1.roomId, alice, 'hello', 'k1'));
    const n2 = await one(msg(g2.roomId, alice, 'hello', 'k1'));
    assert.equal(n1, `0|new|f|1|f|f|f|${alice.id}`);
    assert.equal(n2, n1);
    // without a clientMsgId: new again, seq 2
    assert.equal(await one(msg(g2.roomId, alice, 'again')), `0|new|f|2|f|f|f|${alice.id}`);
    assert.equal(await general(msg(g1.roomId, alice, 'again')), `0|new|f|2|f|f|f|${alice.id}`);
    // then, on the same state, each path twice
    const cases = [
      ['dup', msg(g2.roomId, alice, 'hello', 'k1'), `0|dup|f|1|f|f|f|${alice.id}`],
      ['reused', msg(g2.roomId, alice, 'other text', 'k1'), `0|reused|t||t|t|t|${alice.id}`],
      ['not a member', msg(g2.roomId, mallory, 'let me in', 'k9'), `0|forbidden|t||t|t|t|${mallory.id}`],
      ['no such room', msg('g_nosuchroom0000000000000', alice, 'hello', 'k1'), `0|forbidden|t||t|t|t|${alice.id}`],
    ];
    for (const [what, m, want] of cases) {
      assert.equal(await one(m), want, `chat__ingest_one: ${what}`);
      assert.equal(await general(m), want, `chat_ingest: ${what}`);
    }
    // the dup names the original, whichever path answers
    const orig = await cl.pg.sql(`SELECT id, seq, shard, shard_pos, chat_iso(created_at) FROM messages WHERE room_id = ${q(g2.roomId)} AND client_msg_id = 'k1'`);
    const full = `SELECT x.id, x.seq, x.shard, x.shard_pos, x.created_at FROM`;
    assert.equal(await cl.pg.sql(`${full} chat__ingest_one(${q(JSON.stringify(cases[0][1]))}::jsonb) x`), orig);
    assert.equal(await cl.pg.sql(`${full} chat_ingest(${q(JSON.stringify([cases[0][1]]))}::jsonb) x`), orig);
  });

  test('without an ack callback a refused send still says so: chatError, never silence', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connect(alice, t);
    const errors = [];
    a.on('chatError', (e) => errors.push(e));
    const first = await sendStored(a, { targetUserId: bob.id, text: 'first', clientMsgId: 'n-1' });
    // storage refuses it (another text under the same clientMsgId); the
    // client passed no callback, so only an event can tell it
    a.emit('sendMessage', { roomId: first.roomId, text: 'not the first', clientMsgId: 'n-1' });
    const deadline = Date.now() + WAIT;
    while (errors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(errors, [{ event: 'sendMessage', error: 'clientMsgId reused' }]);
    // a stored send without a callback gets no event (nothing to report)
    a.emit('sendMessage', { roomId: first.roomId, text: 'second', clientMsgId: 'n-2' });
    const seen = await sendStored(a, { roomId: first.roomId, text: 'third', clientMsgId: 'n-3' });
    assert.equal(seen.seq, 3, 'the callback-less second message was stored before the third');
    assert.equal(errors.length, 1, `unexpected chatError: ${JSON.stringify(errors)}`);
  });

  test('the HTTP API: the same rule, 409 for a reuse with another text', T, async () => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const g1 = await createGroup(cl.apiUrl, alice, 'one', [bob.id]);
    const g2 = await createGroup(cl.apiUrl, alice, 'two', [bob.id]);
    const post = (roomId, text) => api(cl.apiUrl, alice.token, 'POST', `/api/rooms/${enc(roomId)}/messages`, { text, clientMsgId: 'h-1' });

    const m1 = await post(g1.roomId, 'in one');
    assert.equal(m1.status, 201, m1.text);
    const m2 = await post(g2.roomId, 'in two');
    assert.equal(m2.status, 201, m2.text);
    assert.notEqual(m2.json.id, m1.json.id, 'the second room\'s message acked with the first\'s id');
    assert.equal(m2.json.roomId, g2.roomId);
    assert.equal(m2.json.seq, 1);

    const again = await post(g1.roomId, 'in one');
    assert.equal(again.status, 201, again.text);
    assert.deepEqual(again.json, m1.json, 'a retry is answered with the original');

    const reused = await post(g1.roomId, 'not the same');
    assert.equal(reused.status, 409, `reuse with another text: ${reused.status} ${reused.text}`);
    assert.deepEqual(reused.json, { error: 'clientMsgId reused' });

    assert.deepEqual((await history(cl.apiUrl, bob, g1.roomId)).map((m) => m.text), ['in one']);
    assert.deepEqual((await history(cl.apiUrl, bob, g2.roomId)).map((m) => m.text), ['in two']);
  });
});
