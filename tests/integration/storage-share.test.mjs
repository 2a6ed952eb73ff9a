// Storage replicas share the ingest shards (docs/storage.md "Ownership
// (leases)"): with K live replicas each owns N/K of them (one more for the
// first N mod K), and /metrics shows which and how many messages each
// stored. A replica that joins gets its share from the others, which hand
// their shards over once their batches are published; one killed with
// SIGKILL leaves its shards to the survivors after its lease; one stopped
// with SIGTERM hands them over at once. Through all of it, during acked
// sends from several senders to several rooms: every acked message stored
// once, each sender's messages in the order sent, each reader given each
// message once, in order.
// Real Redis, PostgreSQL, chat-storage replicas, two gateways behind
// HAProxy.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { closeAllClients } from './lib/client.mjs';
import { makeUsers } from './lib/chat.mjs';
import { httpRequest, sleep, until } from './lib/harness.mjs';
import { startCluster, startStorage } from './lib/stack.mjs';
import { assertGotExactly, connectStored, createGroup, history, sendMany } from './lib/storage-chat.mjs';

const SHARDS = 8;
const WAIT = 20000;

after(() => closeAllClients());

/** What a replica's /metrics says of its shards and stored messages. */
async function shareOf(st) {
  const res = await httpRequest(`${st.url}/metrics`, { timeout: 2000 });
  assert.equal(res.status, 200);
  const shards = [];
  for (const m of res.text.matchAll(/^chat_storage_shard_owned\{shard="(\d+)"\} 1$/gm)) shards.push(Number(m[1]));
  const num = (name) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(res.text)?.[1] ?? NaN);
  const owned = num('chat_storage_owned_shards');
  assert.equal(owned, shards.length, 'chat_storage_owned_shards is the count of chat_storage_shard_owned');
  return { shards, stored: num('chat_storage_messages_stored_total'), live: num('chat_storage_replicas_live') };
}

/**
 * Waits until the replicas own every shard once between them, each
 * floor(N/K) or ceil(N/K); resolves to their shares.
 */
async function balanced(replicas, ms = WAIT) {
  let last;
  await until(
    async () => {
      last = await Promise.all(replicas.map(shareOf));
      const all = last.flatMap((s) => s.shards).sort((a, b) => a - b);
      const k = replicas.length;
      return (
        all.length === SHARDS &&
        new Set(all).size === SHARDS &&
        last.every((s) => s.shards.length === Math.floor(SHARDS / k) || s.shards.length === Math.ceil(SHARDS / k))
      );
    },
    ms,
    `${replicas.length} replicas sharing ${SHARDS} shards`,
  ).catch((err) => {
    throw new Error(`${err.message}; last: ${JSON.stringify(last?.map((s) => s.shards))}`);
  });
  return last;
}

/**
 * Two gateways (or `gateways`), PostgreSQL and two storage replicas with
 * --lease-ms leaseMs, stopped after test t.
 */
function share(t, leaseMs, { gateways = 2, pgFast = true } = {}) {
  return startCluster({
    gateways,
    storage: true,
    storages: 2,
    shards: SHARDS,
    pgFast, // unless said otherwise, PostgreSQL is never killed here
    storageArgs: ['--lease-ms', String(leaseMs)],
    args: ['--rate-limit', '5000', '--rate-burst', '5000'],
    t,
  });
}

/** A storage replica joining cl with the same settings, stopped with it. */
async function join(cl, id, leaseMs) {
  const st = await startStorage({
    redisUrl: cl.redis.url,
    databaseUrl: cl.pg.url,
    shards: SHARDS,
    args: ['--replica-id', id, '--lease-ms', String(leaseMs)],
  });
  cl.storage.push(st);
  return st;
}

/**
 * `nsenders` senders and a reader, members of `nrooms` groups, connected to
 * the gateways; apiUrl: a replica's own URL.
 */
async function setup(cl, t, apiUrl, nrooms, nsenders) {
  const names = [...Array.from({ length: nsenders }, (_, i) => `Sender${i}`), 'Reader'];
  const users = await makeUsers(cl, ...names);
  const reader = users.at(-1);
  const senders = users.slice(0, -1);
  const sockets = await Promise.all(
    users.map((u, i) => connectStored(cl.gateways[i % cl.gateways.length].url, u, { transports: ['websocket'] }, t)),
  );
  const rooms = [];
  for (let i = 0; i < nrooms; i++) {
    const g = await createGroup(apiUrl, senders[i % nsenders], `share-${i}`, users.map((u) => u.id).filter((id) => id !== senders[i % nsenders].id));
    rooms.push(g.roomId);
  }
  for (const s of sockets) for (const room of rooms) await s.inbox.wait('roomAdded', { roomId: room }, WAIT);
  return { users, reader, senders, sockets, readerSocket: sockets.at(-1), senderSockets: sockets.slice(0, -1), rooms };
}

/** Every sender sends `per` messages to every room, rooms side by side. */
function sendAll(s, per, tag, { gapMs = 0, window = 2 } = {}) {
  const jobs = [];
  s.senderSockets.forEach((sock, i) => {
    s.rooms.forEach((room, r) => {
      jobs.push(
        sendMany(sock, { roomId: room }, per, { tag: `${tag}-${i}-${r}`, window, gapMs, ackMs: 60000 }).then((list) =>
          list.map((x) => ({ ...x, sender: i, room })),
        ),
      );
    });
  });
  return Promise.all(jobs).then((lists) => lists.flat());
}

/**
 * Every acked message stored once with the seq its ack gave, each sender's
 * messages in each room in the order sent, the reader given each message
 * of each room once, in seq order.
 */
async function assertDelivered(s, apiUrl, sent) {
  const failed = sent.filter((x) => x.error || x.ack?.error).map((x) => [x.clientMsgId, x.error ?? x.ack.error]);
  assert.deepEqual(failed, [], 'every send acked');
  for (const room of s.rooms) {
    const mine = sent.filter((x) => x.room === room);
    const h = await history(apiUrl, s.reader, room, { limit: 200 });
    const bySeq = new Map(h.map((m) => [m.seq, m]));
    assert.equal(bySeq.size, h.length, `${room}: no seq twice`);
    assert.equal(new Set(h.map((m) => m.clientMsgId)).size, h.length, `${room}: no message twice`);
    assert.equal(h.length, mine.length, `${room}: stored ${h.length} of ${mine.length} acked`);
    for (const x of mine) {
      const m = bySeq.get(x.ack.seq);
      assert.ok(m, `${room}: acked seq ${x.ack.seq} (${x.clientMsgId}) not in history`);
      assert.deepEqual([m.id, m.clientMsgId, m.text], [x.ack.id, x.clientMsgId, x.text]);
    }
    for (let i = 0; i < s.senders.length; i++) {
      const seqs = mine.filter((x) => x.sender === i).map((x) => x.ack.seq); // in sending order
      for (let j = 1; j < seqs.length; j++) assert.ok(seqs[j] > seqs[j - 1], `${room}: sender ${i}'s message ${j} got seq ${seqs[j]} after ${seqs[j - 1]}`);
    }
    const last = Math.max(...h.map((m) => m.seq));
    await s.readerSocket.inbox.wait('messageReceived', { roomId: room, seq: last }, WAIT);
    assertGotExactly(s.readerSocket, room, h, `the reader in ${room}`);
  }
}

describe('storage replicas share the ingest shards', () => {
  const LEASE_MS = 1500;

  test('two, then three replicas: each owns its share and stores its rooms', { timeout: 150000 }, async (t) => {
    const cl = await share(t, LEASE_MS);
    const two = await balanced(cl.storage);
    assert.deepEqual(two.map((s) => s.shards.length), [4, 4]);
    assert.deepEqual(two.map((s) => s.live), [2, 2]);
    // enough rooms that every replica's shards get some
    const s = await setup(cl, t, cl.storage[0].url, 24, 2);
    const before = await Promise.all(cl.storage.map(shareOf));
    const sent = await sendAll(s, 5, 'two');
    const after2 = await Promise.all(cl.storage.map(shareOf));
    const stored2 = after2.map((x, i) => x.stored - before[i].stored);
    t.diagnostic(`two replicas: shards ${JSON.stringify(after2.map((x) => x.shards))}, stored ${stored2}`);
    assert.ok(stored2.every((n) => n > 0), `each replica stored messages: ${stored2}`);
    assert.equal(stored2[0] + stored2[1], sent.length, 'the replicas stored every message once between them');

    const joinedAt = Date.now();
    await join(cl, 'st3', LEASE_MS);
    const three = await balanced(cl.storage);
    t.diagnostic(`three replicas after ${Date.now() - joinedAt} ms: ${JSON.stringify(three.map((x) => x.shards))}`);
    assert.deepEqual(three.map((x) => x.shards.length).sort(), [2, 3, 3]);
    assert.ok(Date.now() - joinedAt < 6 * LEASE_MS, 'the new replica got its share within a few lease periods');
    const more = await sendAll(s, 5, 'three');
    const after3 = await Promise.all(cl.storage.map(shareOf));
    const stored3 = after3.map((x, i) => x.stored - (i < 2 ? after2[i].stored : 0));
    t.diagnostic(`three replicas: stored ${stored3}`);
    assert.ok(stored3.every((n) => n > 0), `each replica stored messages: ${stored3}`);
    assert.equal(stored3.reduce((a, b) => a + b, 0), more.length);
    await assertDelivered(s, cl.storage[2].url, [...sent, ...more]);

    // kill -9 of one: its shards go to the two survivors, four each
    await cl.storage[0].kill('SIGKILL');
    const killedAt = Date.now();
    const survivors = await balanced(cl.storage.slice(1));
    t.diagnostic(`survivors after ${Date.now() - killedAt} ms: ${JSON.stringify(survivors.map((x) => x.shards))}`);
    assert.deepEqual(survivors.map((x) => x.shards.length), [4, 4]);
  });

  test('kill -9 of one replica and start of another during acked sends: 0 lost, 0 duplicated, order kept', { timeout: 170000 }, async (t) => {
    const cl = await share(t, LEASE_MS, { pgFast: false });
    await balanced(cl.storage);
    const [st1, st2] = cl.storage;
    const s = await setup(cl, t, st2.url, 8, 3);
    const sending = sendAll(s, 100, 'k', { gapMs: 50 });
    await sleep(1000);
    await st1.kill('SIGKILL');
    const killedAt = Date.now();
    // the survivor takes the dead one's shards after its lease
    await until(async () => (await shareOf(st2)).shards.length === SHARDS, WAIT, 'the survivor owning every shard');
    t.diagnostic(`survivor owns all shards ${Date.now() - killedAt} ms after the kill`);
    const joinedAt = Date.now();
    const st3 = await join(cl, 'st3', LEASE_MS);
    const sent = await sending;
    const shares = await balanced([st2, st3]);
    t.diagnostic(`after the join: ${JSON.stringify(shares.map((x) => x.shards))}; ${sent.length} messages`);
    assert.ok(sent.some((x) => x.sentAt > killedAt + LEASE_MS), 'nothing was sent after the kill');
    assert.ok(sent.some((x) => x.sentAt > joinedAt), 'nothing was sent after the join');
    await assertDelivered(s, st2.url, sent);
    // the new replica works its shards
    const more = await sendAll(s, 3, 'after');
    await assertDelivered(s, st3.url, [...sent, ...more]);
    assert.ok((await shareOf(st3)).stored > 0, 'the new replica stored messages');
  });

  test('SIGTERM hands the shards over at once, not after the lease', { timeout: 120000 }, async (t) => {
    const LONG_LEASE = 9000;
    const cl = await share(t, LONG_LEASE, { gateways: 1 });
    const [st1, st2] = cl.storage;
    await balanced(cl.storage, 4 * LONG_LEASE);
    const s = await setup(cl, t, st2.url, 4, 2);
    const sending = sendAll(s, 20, 'g', { gapMs: 20 });
    await sleep(300);
    const stoppedAt = Date.now();
    await st1.stopClean();
    await until(async () => (await shareOf(st2)).shards.length === SHARDS, LONG_LEASE, 'the survivor owning every shard');
    const took = Date.now() - stoppedAt;
    t.diagnostic(`survivor owns all shards ${took} ms after SIGTERM (lease ${LONG_LEASE} ms)`);
    // its heartbeat (every lease/3) sees the replica gone, and the leases
    // were released: well before a lease could run out
    assert.ok(took < (2 * LONG_LEASE) / 3, `the hand-over took ${took} ms`);
    await assertDelivered(s, st2.url, await sending);
  });
});
