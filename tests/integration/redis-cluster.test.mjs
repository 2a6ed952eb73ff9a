// The chat with storage on a Redis Cluster (issue 14): a local 3-master,
// 3-replica cluster (startRedisCluster), PostgreSQL, chat-storage and two
// gateways behind HAProxy, all given --redis redis-cluster://... . Senders
// on one gateway, receivers on the other, so that every delivery crosses
// Redis's sharded pub/sub:
//   - a master is killed with SIGKILL during acked sends to several rooms:
//     its replica takes over, no acked message is missing from the history,
//     none is there twice, each sender's order holds, and the gateways
//     subscribe again by themselves (a message sent after the failover
//     reaches the other gateway's client);
//   - the slots of a room's channel (room:{ROOM}) and of its ingest stream
//     ({i:S}:in) move to another master during traffic, as `redis-cli
//     --cluster reshard` moves slots (SETSLOT IMPORTING/MIGRATING, MIGRATE,
//     SETSLOT NODE): every acked send is stored once in order (one refused,
//     e.g. as the gateway dropped its session, is sent again with the same
//     clientMsgId and stored once), and the receiver gets each once, in
//     order.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { until } from './lib/harness.mjs';
import { closeAllClients } from './lib/client.mjs';
import { makeUsers } from './lib/chat.mjs';
import { startCluster } from './lib/stack.mjs';
import {
  apiReady,
  assertGotExactly,
  assertStoredAck,
  connectStored,
  createGroup,
  history,
  request,
  sendMany,
  sendStored,
} from './lib/storage-chat.mjs';

const T = { timeout: 120000 };
const WAIT = 15000;
const SHARDS = 8;

after(() => closeAllClients());

/** proto/chat_room.c's chat_room_shard(): FNV-1a (32 bits) of the room id, modulo the shards. */
function roomShard(roomId, shards = SHARDS) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(roomId)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h % shards;
}

describe('on a Redis Cluster', () => {
  let cl;
  before(async () => {
    cl = await startCluster({
      redisCluster: true,
      redisFailover: true,
      gateways: 2,
      storage: true,
      shards: SHARDS,
      // a storage replica that lost Redis for a failover takes its shards again soon
      storageArgs: ['--lease-ms', '2000'],
      // the senders pipeline far more than the default 20 events/s
      args: ['--rate-limit', '5000', '--rate-burst', '5000'],
    });
  });
  after(() => cl?.stop());

  /**
   * `rooms` groups of a sender (on gateway 1) and a receiver (on gateway
   * 2), both joined to every room.
   */
  async function groups(t, rooms) {
    const [owner, sender, receiver] = await makeUsers(cl, 'Owner', 'Sender', 'Receiver');
    await apiReady(cl.apiUrl, owner);
    const s = await connectStored(cl.gateways[0].url, sender, { transports: ['websocket'] }, t);
    const r = await connectStored(cl.gateways[1].url, receiver, { transports: ['websocket'] }, t);
    const ids = [];
    for (let i = 0; i < rooms; i++) {
      const { roomId } = await createGroup(cl.apiUrl, owner, `cluster ${i}`, [sender.id, receiver.id]);
      for (const sock of [s, r]) {
        await sock.inbox.wait('roomAdded', { roomId }, WAIT);
        const res = await request(sock, 'joinRoom', { roomId });
        assert.equal(res?.roomId, roomId, `joinRoom: ${JSON.stringify(res)}`);
      }
      ids.push(roomId);
    }
    return { owner, sender: { user: sender, socket: s }, receiver: { user: receiver, socket: r }, rooms: ids };
  }

  /**
   * Sends of `sent` (sendMany records, any nesting) that were not acked (an
   * error ack, or none: the socket was disconnected) are sent again with the
   * same clientMsgId, as a client does, until acked (stored once whatever
   * happened to the first try); they are marked `retried`. `roomOf(rec)`:
   * the room of a record.
   */
  async function sendAgain(t, g, sent, roomOf, during) {
    const refused = sent.flat().filter((r) => r.error || !r.ack || r.ack.error);
    const why = [...new Set(refused.map((r) => r.error ?? JSON.stringify(r.ack)))].slice(0, 3).join('; ');
    const ids = refused.slice(0, 5).map((r) => r.clientMsgId).join(' ');
    t.diagnostic(`${refused.length} of ${sent.flat().length} sends not acked during ${during}${why ? ` (${ids}: ${why})` : ''}`);
    for (const r of refused) {
      await until(
        async () => {
          try {
            r.ack = await sendStored(g.sender.socket, { roomId: roomOf(r), text: r.text, clientMsgId: r.clientMsgId }, 5000);
            return true;
          } catch {
            return false;
          }
        },
        30000,
        `${r.clientMsgId} acked after ${during}`,
      );
      r.error = null;
      r.retried = true;
    }
  }

  /**
   * Every acked send of `recs` (sendMany's records for `roomId`) is in the
   * history once, with its ack's seq, text and clientMsgId, in sending
   * order (but for those sent again: `retried`); the history holds nothing
   * else, its seqs are 1..N. Resolves to the history.
   */
  async function checkStored(g, roomId, recs) {
    const acked = recs.filter((r) => r.ack && !r.ack.error);
    for (const r of acked) assertStoredAck(r.ack, `ack of ${r.clientMsgId}`);
    await apiReady(cl.apiUrl, g.owner);
    const hist = await history(cl.apiUrl, g.owner, roomId);
    const byClientId = new Map();
    for (const m of hist) {
      assert.ok(!byClientId.has(m.clientMsgId), `${roomId}: ${m.clientMsgId} stored twice`);
      byClientId.set(m.clientMsgId, m);
    }
    const lost = acked.filter((r) => !byClientId.has(r.clientMsgId)).map((r) => r.clientMsgId);
    assert.deepEqual(lost, [], `${roomId}: ${lost.length} acked messages are not in the history`);
    for (const r of acked) {
      const m = byClientId.get(r.clientMsgId);
      assert.equal(m.seq, r.ack.seq, `${r.clientMsgId}: history seq ${m.seq}, ack seq ${r.ack.seq}`);
      assert.equal(m.id, r.ack.id);
      assert.equal(m.text, r.text);
    }
    const sentIds = new Set(recs.map((r) => r.clientMsgId));
    const unknown = hist.filter((m) => !sentIds.has(m.clientMsgId)).map((m) => m.clientMsgId);
    assert.deepEqual(unknown, [], `${roomId}: stored messages that were never sent`);
    // the sender's order, among the sends acked the first time (one sent
    // again after a refusal comes later, rightly)
    const first = new Set(recs.filter((r) => !r.retried).map((r) => r.clientMsgId));
    const kept = hist.filter((m) => first.has(m.clientMsgId));
    const order = kept.map((m) => Number(m.clientMsgId.split('-').pop()));
    for (let i = 1; i < order.length; i++) {
      assert.ok(order[i] > order[i - 1], `${roomId}: #${order[i - 1]} stored before #${order[i]} (seqs ${kept[i - 1].seq}, ${kept[i].seq}; first sends ${[...first].length}, retried ${recs.length - first.size})`);
    }
    assert.deepEqual(hist.map((m) => m.seq), Array.from({ length: hist.length }, (_, i) => i + 1), `${roomId}: seqs are not 1..N`);
    return hist;
  }

  test('SIGKILL of a master during acked sends to 4 rooms: its replica takes over, 0 acked lost, the gateways subscribe again', T, async (t) => {
    const g = await groups(t, 4);
    // the master of room 0's ingest stream dies: it holds acked entries
    // storage has not read yet
    const key = `{i:${roomShard(g.rooms[0])}}:in`;
    const PER_ROOM = 150;
    let acked = 0;
    let failover = null;
    const onAck = (rec) => {
      if (rec.ack && !rec.ack.error) acked++;
      if (acked === 120 && !failover) failover = cl.redis.failover({ key });
    };
    const sent = await Promise.all(
      g.rooms.map((roomId, i) => sendMany(g.sender.socket, { roomId }, PER_ROOM, { tag: `fo${i}`, window: 5, gapMs: 5, ackMs: 30000, onAck })),
    );
    assert.ok(failover, `only ${acked} sends were acked`);
    const { killed, promoted } = await failover;
    t.diagnostic(`killed master :${killed.port}, replica :${promoted.port} took over`);

    await sendAgain(t, g, sent, (r) => g.rooms[Number(r.clientMsgId.slice(2).split('-')[0])], 'the failover');
    for (const [i, roomId] of g.rooms.entries()) await checkStored(g, roomId, sent[i]);

    // the gateways resubscribed by themselves: a message sent now reaches the
    // receiver on the other gateway, and one back
    for (const roomId of g.rooms) {
      const m = await sendStored(g.sender.socket, { roomId, text: 'after the failover', clientMsgId: `after-${roomId}` });
      await g.receiver.socket.inbox.wait('messageReceived', { id: m.id }, WAIT);
      const back = await sendStored(g.receiver.socket, { roomId, text: 'and back', clientMsgId: `back-${roomId}` });
      await g.sender.socket.inbox.wait('messageReceived', { id: back.id }, WAIT);
    }

    // the killed node comes back as a replica: the next test has 3 + 3 again
    await killed.start();
    await cl.redis.waitOk();
  });

  test('the slots of a room channel and its ingest stream move to other masters during traffic: nothing lost, order kept, deliveries continue', T, async (t) => {
    const g = await groups(t, 1);
    const [roomId] = g.rooms;
    const moves = [`room:{${roomId}}`, `{i:${roomShard(roomId)}}:in`];
    const COUNT = 300;
    let acked = 0;
    let migrating = null;
    const onAck = (rec) => {
      if (rec.ack && !rec.ack.error) acked++;
      if (acked === 50 && !migrating) {
        migrating = (async () => {
          const done = [];
          for (const key of moves) {
            const slot = await cl.redis.keySlot(key);
            const from = await cl.redis.ownerOf(slot);
            const to = (await cl.redis.masters()).find((m) => m !== from);
            // one key at a time, 200 ms apart: traffic meets the slot half moved (ASK)
            const res = await cl.redis.migrateSlot(slot, to, { pauseMs: 200, batch: 1 });
            done.push(`${key} (slot ${slot}, ${res.keys} keys) :${res.from.port} -> :${res.to.port}`);
          }
          return done;
        })();
      }
    };
    const recs = await sendMany(g.sender.socket, { roomId }, COUNT, { tag: 'mv', window: 5, gapMs: 10, ackMs: 30000, onAck });
    assert.ok(migrating, `only ${acked} sends were acked`);
    t.diagnostic(`moved ${(await migrating).join('; ')}`);
    await sendAgain(t, g, recs, () => roomId, 'the moves');

    const hist = await checkStored(g, roomId, recs);
    assert.equal(hist.length, COUNT);
    // deliveries went on: the receiver on the other gateway got every message live, once, in order
    await until(
      () => g.receiver.socket.inbox.all('messageReceived', { roomId }).length >= COUNT,
      WAIT,
      `the receiver getting ${COUNT} messages`,
    ).catch(() => {});
    assertGotExactly(g.receiver.socket, roomId, hist, 'the receiver');
    const m = await sendStored(g.sender.socket, { roomId, text: 'after the move', clientMsgId: 'mv-after' });
    await g.receiver.socket.inbox.wait('messageReceived', { id: m.id }, WAIT);
  });
});
