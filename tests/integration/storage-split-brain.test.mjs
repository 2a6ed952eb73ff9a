// Two chat-storage replicas and an owner paused past its lease (docs/storage.md
// "Ownership (leases)" and "The room cache"): while it sleeps, the other
// replica takes its shards over and stores what the senders go on sending;
// when it wakes, it still holds its room cache, and may still hold a batch it
// read before the pause. Whatever it does then must be refused by the guards
// of its statements (a seq or a watermark that moved under it) or by the SQL
// path it falls back to: every acked message stored once, each sender's
// messages in the order sent, each reader given each message once.
// Real Redis, PostgreSQL, two chat-storage replicas with a 1 s lease, two
// gateways behind HAProxy.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closeAllClients } from './lib/client.mjs';
import { makeUsers } from './lib/chat.mjs';
import { httpRequest } from './lib/harness.mjs';
import { startCluster } from './lib/stack.mjs';
import { assertGotExactly, connectStored, createGroup, history, sendMany } from './lib/storage-chat.mjs';

const T = { timeout: 90000 };
const WAIT = 15000;
const LEASE_MS = 1000;

after(() => closeAllClients());

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe('split brain: an owner paused past its lease', () => {
  let cl;
  before(async () => {
    cl = await startCluster({
      gateways: 2,
      storage: true,
      storages: 2,
      pgFast: true, // PostgreSQL is never killed here
      storageArgs: ['--lease-ms', String(LEASE_MS)],
      args: ['--rate-limit', '5000', '--rate-burst', '5000'],
    });
  });
  after(() => cl?.stop());

  const metric = async (st, name) => {
    const res = await httpRequest(`${st.url}/metrics`);
    const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(res.text);
    return m ? Number(m[1]) : 0;
  };

  test('each replica paused in turn while two senders write: every acked message once, in order, to every reader', T, async (t) => {
    const [alice, bob, reader] = await makeUsers(cl, 'Alice', 'Bob', 'Reader');
    const [a, b, r] = await Promise.all([alice, bob, reader].map((u, i) => connectStored(cl.gateways[i % 2].url, u, { transports: ['websocket'] }, t)));
    const g = await createGroup(cl.apiUrl, alice, 'split', [bob.id, reader.id]);
    for (const s of [a, b, r]) await s.inbox.wait('roomAdded', { roomId: g.roomId }, WAIT);
    const room = g.roomId;

    // warm: the owner caches the room
    const warm = await sendMany(a, { roomId: room }, 20, { tag: 'warm', window: 4 });
    assert.deepEqual(warm.filter((s) => s.error || s.ack?.error), []);
    const abortsBefore = await Promise.all(cl.storage.map((st) => metric(st, 'chat_storage_fast_aborts_total')));
    const lostBefore = await Promise.all(cl.storage.map((st) => metric(st, 'chat_storage_leases_lost_total')));

    // Both senders write throughout; each replica sleeps in turn for two
    // and a half leases, so whichever owned the room's shard is deposed
    // once and wakes with its cache.
    const sending = Promise.all([
      sendMany(a, { roomId: room }, 150, { tag: 'a', window: 4, gapMs: 20, ackMs: 60000 }),
      sendMany(b, { roomId: room }, 150, { tag: 'b', window: 4, gapMs: 20, ackMs: 60000 }),
    ]);
    for (const st of cl.storage) {
      await sleep(400);
      process.kill(st.pid, 'SIGSTOP');
      await sleep(2.5 * LEASE_MS);
      process.kill(st.pid, 'SIGCONT');
    }
    const [fromA, fromB] = await sending;
    const all = [...warm, ...fromA, ...fromB];
    assert.deepEqual(all.filter((s) => s.error || s.ack?.error).map((s) => [s.clientMsgId, s.error ?? s.ack.error]), [], 'every send acked');

    // every acked message stored once, with the seq its ack gave
    const h = await history(cl.apiUrl, reader, room, { limit: 200 });
    const bySeq = new Map(h.map((m) => [m.seq, m]));
    assert.equal(bySeq.size, h.length, 'no seq twice');
    assert.equal(new Set(h.map((m) => m.id)).size, h.length, 'no message twice');
    assert.equal(h.length, all.length, `stored ${h.length} of ${all.length} acked`);
    for (const s of all) {
      const m = bySeq.get(s.ack.seq);
      assert.ok(m, `acked seq ${s.ack.seq} (${s.clientMsgId}) not in history`);
      assert.deepEqual([m.id, m.clientMsgId, m.text], [s.ack.id, s.clientMsgId, s.text]);
    }
    // each sender's messages in the order sent
    for (const [who, mine] of [['Alice', [...warm, ...fromA]], ['Bob', fromB]]) {
      const seqs = mine.map((s) => s.ack.seq);
      for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], `${who}: message ${i} got seq ${seqs[i]} after ${seqs[i - 1]}`);
    }
    // the reader got each once, in seq order
    const last = Math.max(...h.map((m) => m.seq));
    await r.inbox.wait('messageReceived', { roomId: room, seq: last }, WAIT);
    assertGotExactly(r, room, h, 'the reader');

    // the pauses did depose an owner (a lease was lost), and that owner's
    // room cache met the other replica's writes (a guard refused a batch)
    // or was emptied with its lease before it wrote
    const lostAfter = await Promise.all(cl.storage.map((st) => metric(st, 'chat_storage_leases_lost_total')));
    const abortsAfter = await Promise.all(cl.storage.map((st) => metric(st, 'chat_storage_fast_aborts_total')));
    t.diagnostic(`leases lost ${lostBefore} -> ${lostAfter}; room-cache aborts ${abortsBefore} -> ${abortsAfter}`);
    assert.ok(lostAfter.some((n, i) => n > lostBefore[i]), 'a paused replica lost a lease');
  });
});
