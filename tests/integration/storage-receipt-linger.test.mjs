// Receipts ride with messages (docs/storage.md "Storage's batch",
// --receipt-linger-ms): an ingest entry of receipts alone, read while no
// batch is being filled, waits up to the linger for a message to share a
// transaction with; a message read meanwhile takes it along at once. The
// sender's ticks stay true either way, and a receipt that waited never
// covers the message it rode with. A long linger (2 s) here, so that the
// two paths are told apart by time even on a loaded machine. Real Redis,
// PostgreSQL, one chat-storage and two gateways behind HAProxy.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closeAllClients } from './lib/client.mjs';
import { makeUsers } from './lib/chat.mjs';
import { sleep } from './lib/harness.mjs';
import { startCluster } from './lib/stack.mjs';
import { connectStored, messageAt, request, sendStored } from './lib/storage-chat.mjs';

const T = { timeout: 60000 };
const LINGER = 2000;
const WAIT = LINGER + 5000; // for one event that crosses storage, linger included
const QUIET = 300;

after(() => closeAllClients());

describe('receipts ride with messages', () => {
  let cl;
  before(async () => {
    cl = await startCluster({ gateways: 2, storage: true, pgFast: true, storageArgs: ['--receipt-linger-ms', String(LINGER)] });
  });
  after(() => cl?.stop());

  /** Alice and Bob (chat closed, on the other gateway) in a direct room with one message. */
  async function pair(t) {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connectStored(cl.gateways[0].url, alice, { transports: ['websocket'] }, t);
    const b = await connectStored(cl.gateways[1].url, bob, { transports: ['websocket'] }, t);
    const m1 = await sendStored(a, { targetUserId: bob.id, text: 'first', clientMsgId: 'l-1' });
    await b.inbox.wait('messageReceived', { id: m1.id }, WAIT);
    await a.inbox.wait('messageStatus', { seq: 1, status: 'delivered' }, WAIT);
    await sleep(QUIET); // nothing left in flight
    return { alice, bob, a, b, room: m1.roomId };
  }

  test('a receipt alone waits for the linger, then reaches the sender on its own', T, async (t) => {
    const { alice, bob, a, b, room } = await pair(t);
    const m = await sendStored(a, { roomId: room, text: 'anyone?', clientMsgId: 'l-2' });
    await b.inbox.wait('messageReceived', { id: m.id }, WAIT);
    const got = Date.now();
    const st = await a.inbox.wait('messageStatus', { seq: 2 }, WAIT);
    const took = Date.now() - got;
    assert.deepEqual(st, { roomId: room, seq: 2, userId: bob.id, status: 'delivered', aggregate: 'delivered' });
    // held for the linger (no message came to ride), and not much longer
    assert.ok(took >= LINGER / 2, `delivered after ${took} ms: the receipt did not wait`);
    assert.ok(took <= LINGER + 3000, `delivered after ${took} ms`);
    assert.equal((await messageAt(cl.apiUrl, alice, room, 2)).status, 'delivered');
    await a.inbox.none('messageStatus', { seq: 2, status: 'seen' }, QUIET);
  });

  test('a receipt and a message in flight together: it rides the message, well before the linger', T, async (t) => {
    const { bob, a, b, room } = await pair(t);
    const m2 = await sendStored(a, { roomId: room, text: 'one', clientMsgId: 'l-2' });
    await b.inbox.wait('messageReceived', { id: m2.id }, WAIT);
    const got = Date.now();
    await sleep(150); // Bob's gateway has sent the receipt; storage holds it
    const m3 = await sendStored(a, { roomId: room, text: 'two', clientMsgId: 'l-3' });
    const st = await a.inbox.wait('messageStatus', { seq: 2 }, WAIT);
    const took = Date.now() - got;
    assert.deepEqual(st, { roomId: room, seq: 2, userId: bob.id, status: 'delivered', aggregate: 'delivered' });
    assert.ok(took < LINGER - 500, `delivered after ${took} ms: the receipt did not ride the message`);
    // m3's own receipt comes later, alone, after its linger
    await b.inbox.wait('messageReceived', { id: m3.id }, WAIT);
    const d3 = await a.inbox.wait('messageStatus', { seq: 3 }, WAIT);
    assert.equal(d3.status, 'delivered');
    assert.deepEqual(
      a.inbox.all('messageStatus', { roomId: room }).map((s) => `${s.seq}/${s.status}`),
      ['1/delivered', '2/delivered', '3/delivered'],
    );
  });

  test('"seen everything" that waited does not cover the message it rides with', T, async (t) => {
    const { bob, a, b, room } = await pair(t);
    const m2 = await sendStored(a, { roomId: room, text: 'read me', clientMsgId: 'l-2' });
    await b.inbox.wait('messageReceived', { id: m2.id }, WAIT);
    await a.inbox.wait('messageStatus', { seq: 2, status: 'delivered' }, WAIT);
    // Bob has seen everything (no seq); the receipt is held, then rides m3
    assert.deepEqual(await request(b, 'markSeen', { roomId: room }), { ok: true });
    await sleep(150);
    const m3 = await sendStored(a, { roomId: room, text: 'not seen yet', clientMsgId: 'l-3' });
    const seen = await a.inbox.wait('messageStatus', { status: 'seen' }, WAIT);
    assert.deepEqual(seen, { roomId: room, seq: 2, userId: bob.id, status: 'seen', aggregate: 'seen' });
    await b.inbox.wait('messageReceived', { id: m3.id }, WAIT);
    const d3 = await a.inbox.wait('messageStatus', { seq: 3 }, WAIT);
    assert.equal(d3.status, 'delivered', `m3: ${JSON.stringify(d3)}`);
    await a.inbox.none('messageStatus', { seq: 3, status: 'seen' }, QUIET);
  });

  test('one move of both watermarks: delivered then seen, in order (one U1 envelope carries both)', T, async (t) => {
    const { a, b, room } = await pair(t);
    const m2 = await sendStored(a, { roomId: room, text: 'quick', clientMsgId: 'l-2' });
    await b.inbox.wait('messageReceived', { id: m2.id }, WAIT);
    // seen before the gateway's receipt flush: one receipt moves both
    assert.deepEqual(await request(b, 'markSeen', { roomId: room, seq: m2.seq }), { ok: true });
    await a.inbox.wait('messageStatus', { seq: 2, status: 'seen' }, WAIT);
    await sleep(QUIET);
    assert.deepEqual(
      a.inbox.all('messageStatus', { roomId: room, seq: 2 }).map((s) => `${s.status}/${s.aggregate}`),
      ['delivered/delivered', 'seen/seen'],
    );
    assert.deepEqual(b.inbox.all('messageStatus'), [], 'statuses go to the sender only');
  });
});
