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
import { connectStored, createGroup, messageAt, receipts, request, sendStored } from './lib/storage-chat.mjs';

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

  test('a move over the sender\'s own messages only is not logged; receipt times stay those of the moves', T, async (t) => {
    // chat_batch called directly, one step at a time, as storage calls it:
    // a sender's own move whose range holds only its own messages writes
    // no watermarks row and raises nothing (it changes no status anyone
    // reads); one that covers someone else's message is logged. The
    // receipts API's times are those of the moves that reached each message.
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connect(alice, t);
    const first = await sendStored(a, { targetUserId: bob.id, text: 'first' }); // seq 1
    const room = first.roomId;
    const q = (x) => `'${String(x).replaceAll("'", "''")}'`;
    const shard = Number(await cl.pg.sql(`SELECT shard FROM messages WHERE room_id = ${q(room)} AND seq = 1`));
    let o = 0;
    const batch = async (msgs, rcpts = []) => {
      const m = msgs.map(([u, x]) => ({ o: o++, r: room, u: u.id, n: u.name, x, c: `own-log-${o}`, sh: shard }));
      const rows = await cl.pg.sql(`SELECT k, status, seq, usr, sender FROM chat_batch(${q(JSON.stringify(m))}::jsonb, ${q(JSON.stringify(rcpts))}::jsonb)`);
      await sleep(20); // the next move's time differs (milliseconds)
      return rows.split('\n').map((l) => l.split('|')).filter((r) => r[0] === 's').map((r) => r.slice(1).join('/'));
    };
    const log = async () =>
      (await cl.pg.sql(`SELECT user_id, kind, seq FROM watermarks WHERE room_id = ${q(room)} ORDER BY at, kind`)).split('\n').filter(Boolean);
    const at = async (user, kind, seq) =>
      cl.pg.sql(`SELECT chat_iso(at) FROM watermarks WHERE room_id = ${q(room)} AND user_id = ${q(user.id)} AND kind = '${kind}' AND seq = ${seq}`);

    assert.deepEqual(await batch([[alice, 'a2']]), [], 'alice over her own 1..2: no event');
    assert.deepEqual(await batch([], [{ r: room, u: bob.id, d: 2, s: 2 }]), [`delivered/2/${bob.id}/${alice.id}`, `seen/2/${bob.id}/${alice.id}`]);
    assert.deepEqual(await batch([[bob, 'b3']]), [], 'bob over his own 3: no event');
    assert.deepEqual(await batch([[alice, 'a4']]), [`delivered/3/${alice.id}/${bob.id}`, `seen/3/${alice.id}/${bob.id}`], "alice's move covers bob's 3");
    assert.deepEqual(await log(), [`${bob.id}|s|2`, `${alice.id}|s|4`], 'only the moves over a message of the other are logged');
    const marks = await cl.pg.sql(`SELECT user_id, delivered_seq, seen_seq FROM room_members WHERE room_id = ${q(room)} ORDER BY user_id = ${q(alice.id)} DESC`);
    assert.deepEqual(marks.split('\n'), [`${alice.id}|4|4`, `${bob.id}|3|3`], 'the watermarks moved all the same');

    // bob saw alice's 1 and 2 at his receipt; alice saw bob's 3 when she wrote 4
    const bobSaw = await at(bob, 's', 2);
    for (const seq of [1, 2]) {
      assert.deepEqual((await receipts(cl.apiUrl, alice, room, seq))[bob.id], { userId: bob.id, status: 'seen', deliveredAt: bobSaw, seenAt: bobSaw }, `receipt of ${seq}`);
    }
    const aliceSaw = await at(alice, 's', 4);
    assert.deepEqual((await receipts(cl.apiUrl, bob, room, 3))[alice.id], { userId: alice.id, status: 'seen', deliveredAt: aliceSaw, seenAt: aliceSaw });

    // bob gets and sees 4 in one move (an 's' row stands for delivered too),
    // then is delivered alice's 5: 4's deliveredAt stays the first move's
    await batch([], [{ r: room, u: bob.id, d: 4, s: 4 }]);
    await batch([[alice, 'a5']]);
    await batch([], [{ r: room, u: bob.id, d: 5 }]);
    const bob4 = await at(bob, 's', 4);
    assert.notEqual(await at(bob, 'd', 5), bob4);
    assert.deepEqual((await receipts(cl.apiUrl, alice, room, 4))[bob.id], { userId: bob.id, status: 'seen', deliveredAt: bob4, seenAt: bob4 }, 'delivered with its seen, not at the later delivery');
    assert.deepEqual((await receipts(cl.apiUrl, alice, room, 5))[bob.id], { userId: bob.id, status: 'delivered', deliveredAt: await at(bob, 'd', 5), seenAt: null });
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
