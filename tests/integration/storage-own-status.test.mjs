// The sender always hears the status of its message (docs/storage.md
// "Status"): every forward move of a member's watermark that covers someone
// else's message reaches that sender as messageStatus, exactly once per
// status, delivered before seen, whatever moved it: the member's own send
// (a reply written the moment the message arrived), a receipt that jumps
// delivered and seen at once (opening the room, markSeen right after the
// message arrived). Real Redis, PostgreSQL, one chat-storage and two
// gateways behind HAProxy.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closeAllClients } from './lib/client.mjs';
import { makeUsers } from './lib/chat.mjs';
import { sleep } from './lib/harness.mjs';
import { startCluster } from './lib/stack.mjs';
import { connectStored, createGroup, messageAt, request, sendStored } from './lib/storage-chat.mjs';

const T = { timeout: 90000 };
const WAIT = 10000; // for one event that crosses storage (a batch, a commit)
const QUIET = 300; // how long a duplicate or late event is given to show up

after(() => closeAllClients());

/** The statuses `inbox` got from `member` for `seq` of `roomId`, in order. */
function statuses(inbox, roomId, member, seq) {
  return inbox.all('messageStatus', { roomId, userId: member, seq }).map((s) => `${s.status}/${s.aggregate}`);
}

describe('the sender hears every status of its message', () => {
  let cl;
  before(async () => {
    cl = await startCluster({ gateways: 2, storage: true, pgFast: true });
  });
  after(() => cl?.stop());

  const connect = (user, t, url = cl.url) => connectStored(url, user, { transports: ['websocket'] }, t);

  test('Bob, with the chat open, replies at once: Alice hears delivered then seen, once each (20 rounds)', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    // on two gateways, so the reply and the receipt take separate paths
    const a = await connect(alice, t, cl.gateways[0].url);
    const b = await connect(bob, t, cl.gateways[1].url);
    const room = (await request(a, 'joinChat', { targetUserId: bob.id }))?.roomId;
    assert.equal(typeof room, 'string');
    assert.equal((await request(b, 'joinChat', { targetUserId: alice.id }))?.roomId, room);

    // Bob answers in the receive callback, as a chat bot or a quick human
    // does: his own send moves his watermarks over Alice's message
    b.on('messageReceived', (m) => {
      if (m.userId === alice.id) b.emit('sendMessage', { roomId: room, text: `re: ${m.text}`, clientMsgId: `re-${m.seq}` }, () => {});
    });

    const mine = [];
    for (let i = 0; i < 20; i++) {
      const m = await sendStored(a, { roomId: room, text: `ping ${i}`, clientMsgId: `ping-${i}` });
      mine.push(m.seq);
      await a.inbox.wait('messageReceived', { userId: bob.id, text: `re: ping ${i}` }, WAIT);
      await a.inbox.wait('messageStatus', { roomId: room, seq: m.seq, status: 'seen' }, WAIT);
    }
    await sleep(QUIET); // a duplicate or a late event would be here by now
    for (const seq of mine) {
      assert.deepEqual(statuses(a.inbox, room, bob.id, seq), ['delivered/delivered', 'seen/seen'], `statuses of Alice's message ${seq}`);
      assert.equal((await messageAt(cl.apiUrl, alice, room, seq)).status, 'seen');
    }
    // only Alice's messages are reported, only to Alice
    assert.deepEqual(
      a.inbox.all('messageStatus').filter((s) => !mine.includes(s.seq)),
      [],
      'statuses of messages Alice did not send',
    );
  });

  test('a group: one reply covers two senders, each hears delivered then seen once', T, async (t) => {
    const [alice, bob, carol] = await makeUsers(cl, 'Alice', 'Bob', 'Carol');
    const [a, b, c] = await Promise.all([alice, bob, carol].map((u) => connect(u, t)));
    const room = (await createGroup(cl.apiUrl, alice, 'replies', [bob.id, carol.id])).roomId;
    for (const s of [a, b, c]) await s.inbox.wait('roomAdded', { roomId: room }, WAIT);
    for (const s of [a, b, c]) assert.equal((await request(s, 'joinRoom', { roomId: room }))?.roomId, room);

    for (let i = 0; i < 5; i++) {
      // Bob replies once he has both messages
      const got = new Set();
      const reply = new Promise((resolve) => {
        const on = (m) => {
          if (m.userId !== bob.id) got.add(m.userId);
          if (got.size === 2) {
            b.off('messageReceived', on);
            b.emit('sendMessage', { roomId: room, text: `both ${i}` }, resolve);
          }
        };
        b.on('messageReceived', on);
      });
      const [ma, mc] = await Promise.all([
        sendStored(a, { roomId: room, text: `alice ${i}` }),
        sendStored(c, { roomId: room, text: `carol ${i}` }),
      ]);
      await reply;
      await a.inbox.wait('messageStatus', { seq: ma.seq, userId: bob.id, status: 'seen' }, WAIT);
      await c.inbox.wait('messageStatus', { seq: mc.seq, userId: bob.id, status: 'seen' }, WAIT);
      await sleep(QUIET); // a duplicate or a late event would be here by now
      // each sender's latest message in Bob's move is reported, delivered
      // first, whoever of Alice and Carol was stored first
      const fromBob = (inbox) => inbox.all('messageStatus', { roomId: room, userId: bob.id }).slice(-2);
      assert.deepEqual(fromBob(a.inbox).map((s) => `${s.seq}/${s.status}`), [`${ma.seq}/delivered`, `${ma.seq}/seen`], `Alice's statuses from Bob, round ${i}`);
      assert.deepEqual(fromBob(c.inbox).map((s) => `${s.seq}/${s.status}`), [`${mc.seq}/delivered`, `${mc.seq}/seen`], `Carol's statuses from Bob, round ${i}`);
    }
    assert.equal(a.inbox.all('messageStatus', { userId: bob.id }).length, 10, 'Alice: two statuses from Bob per round');
    assert.equal(c.inbox.all('messageStatus', { userId: bob.id }).length, 10, 'Carol: two statuses from Bob per round');
    assert.deepEqual(b.inbox.all('messageStatus').filter((s) => s.userId === bob.id), [], 'Bob told of his own watermark');
  });

  test('two people writing at once: a message stored beside the sender\'s is not claimed seen', T, async (t) => {
    // chat_batch called directly with one batch holding Alice's and then
    // Bob's message, as storage does when both arrive within one batch.
    // Bob's send must not move his watermarks over Alice's message: it was
    // never shown to him.
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connect(alice, t);
    const first = await sendStored(a, { targetUserId: bob.id, text: 'first' });
    const room = first.roomId;
    const q = (x) => `'${String(x).replaceAll("'", "''")}'`;
    const shard = await cl.pg.sql(`SELECT shard FROM messages WHERE room_id = ${q(room)} AND seq = 1`);
    const batch = JSON.stringify([
      { o: 0, r: room, u: alice.id, n: 'Alice', x: 'at once', sh: Number(shard) },
      { o: 1, r: room, u: bob.id, n: 'Bob', x: 'me too', sh: Number(shard) },
    ]);
    const rows = (await cl.pg.sql(`SELECT k, status, seq, usr, sender FROM chat_batch(${q(batch)}::jsonb, '[]'::jsonb)`))
      .split('\n')
      .map((l) => l.split('|'));
    assert.deepEqual(rows.filter((r) => r[0] === 'm').map((r) => [r[1], r[2], r[3]]), [['new', '2', alice.id], ['new', '3', bob.id]]);
    assert.deepEqual(rows.filter((r) => r[0] === 's'), [], 'statuses from a move over a message stored in the same batch');
    const marks = await cl.pg.sql(`SELECT user_id, delivered_seq, seen_seq FROM room_members WHERE room_id = ${q(room)} ORDER BY user_id = ${q(alice.id)} DESC`);
    assert.deepEqual(marks.split('\n'), [`${alice.id}|2|2`, `${bob.id}|0|0`], 'watermarks after the batch');
  });

  test('opening the chat at once, or markSeen right on arrival: delivered then seen, once each', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connect(alice, t);
    const room = (await request(a, 'joinChat', { targetUserId: bob.id }))?.roomId;
    const m1 = await sendStored(a, { roomId: room, text: 'while you were away' });

    // Bob connects and opens the chat at once: the sync on connect writes
    // him the message and the open says seen, typically in one receipt
    const b = await connect(bob, t);
    assert.equal((await request(b, 'joinChat', { targetUserId: alice.id }))?.roomId, room);
    await b.inbox.wait('messageReceived', { id: m1.id }, WAIT);
    await a.inbox.wait('messageStatus', { seq: m1.seq, status: 'seen' }, WAIT);
    await sleep(QUIET); // a duplicate or a late event would be here by now
    assert.deepEqual(statuses(a.inbox, room, bob.id, m1.seq), ['delivered/delivered', 'seen/seen']);

    // Bob closes the chat; each message he receives he marks seen at once
    assert.deepEqual(await request(b, 'leaveChat', { targetUserId: alice.id }), { ok: true });
    b.on('messageReceived', (m) => {
      if (m.userId === alice.id) b.emit('markSeen', { roomId: room, seq: m.seq }, () => {});
    });
    for (let i = 0; i < 10; i++) {
      const m = await sendStored(a, { roomId: room, text: `mark ${i}` });
      await a.inbox.wait('messageStatus', { seq: m.seq, status: 'seen' }, WAIT);
      await sleep(QUIET); // a duplicate or a late event would be here by now
      assert.deepEqual(statuses(a.inbox, room, bob.id, m.seq), ['delivered/delivered', 'seen/seen'], `message ${m.seq}`);
    }
  });
});
