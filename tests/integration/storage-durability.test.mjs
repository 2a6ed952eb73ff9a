// Durability of messages (docs/storage.md): real Redis, PostgreSQL (fsync
// on), chat-storage and two gateways (--storage on) behind HAProxy. Several
// clients send to one group with their acks pipelined while a part of the
// stack fails:
//   - chat-storage is killed with SIGKILL and restarted: the stream keeps
//     what was not committed, the new owner reads the entries its
//     predecessor left pending, and (sender, clientMsgId) makes a batch
//     committed twice store its messages once;
//   - PostgreSQL crashes (SIGKILL) and restarts: storage retries the batch
//     until it commits, so sends wait for their acks instead of failing;
//   - a gateway is killed with SIGKILL: its clients reconnect through
//     HAProxy to the other one and recover the session (Socket.IO
//     connection-state recovery), missed messages included.
// Every time: each acked message is in the history exactly once, with the
// seq of its ack, in the order each sender sent it, and every receiver got
// each message live exactly once, in seq order.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sleep, until } from './lib/harness.mjs';
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
} from './lib/storage-chat.mjs';

const T = { timeout: 90000 };
const WAIT = 10000;

after(() => closeAllClients());

describe('durability', () => {
  let cl;
  before(async () => {
    cl = await startCluster({
      gateways: 2,
      storage: true,
      // a restarted replica takes its shards over within 2 s
      storageArgs: ['--lease-ms', '2000'],
      // the senders pipeline far more than the default 20 events/s
      args: ['--rate-limit', '5000', '--rate-burst', '5000'],
    });
  });
  after(() => cl?.stop());

  /**
   * A group of `senders` + `receivers` users (created by an extra owner who
   * never connects), every socket joined to it and its room open. Senders
   * connect to `senderUrl(i)`, receivers to `receiverUrl(i)` with
   * `receiverOpts(i)`.
   */
  async function group(t, { senders, receivers, senderUrl, receiverUrl, receiverOpts = () => ({}) }) {
    const names = [
      ...Array.from({ length: senders }, (_, i) => `Sender${i}`),
      ...Array.from({ length: receivers }, (_, i) => `Receiver${i}`),
    ];
    const [owner, ...users] = await makeUsers(cl, 'Owner', ...names);
    await apiReady(cl.apiUrl, owner);
    const sockets = await Promise.all(
      users.map((u, i) =>
        i < senders
          ? connectStored(senderUrl(i), u, { transports: ['websocket'] }, t)
          : connectStored(receiverUrl(i - senders), u, receiverOpts(i - senders), t),
      ),
    );
    const { roomId } = await createGroup(cl.apiUrl, owner, 'durability', users.map((u) => u.id));
    assert.match(roomId, /^g_[A-Za-z0-9_-]{22}$/); // goes into SQL text below
    await Promise.all(
      sockets.map(async (s, i) => {
        await s.inbox.wait('roomAdded', { roomId }, WAIT);
        const res = await request(s, 'joinRoom', { roomId });
        assert.equal(res?.roomId, roomId, `${users[i].name} joinRoom: ${JSON.stringify(res)}`);
      }),
    );
    return {
      roomId,
      owner,
      senders: users.slice(0, senders).map((user, i) => ({ user, socket: sockets[i] })),
      receivers: users.slice(senders).map((user, i) => ({ user, socket: sockets[senders + i] })),
    };
  }

  /**
   * Every send of `sent` (per sender: [records of sendMany]) was acked as
   * stored; the history holds each exactly once with its ack's seq, seqs
   * 1..N, each sender's messages in sending order; PostgreSQL agrees; every
   * receiver got all of them live, each once, in seq order.
   */
  async function checkAll(g, sent) {
    const all = sent.flatMap((recs, s) => recs.map((r) => ({ ...r, sender: g.senders[s].user })));
    const failed = all.filter((r) => r.error || !r.ack || r.ack.error);
    assert.deepEqual(
      failed.slice(0, 10).map((r) => `${r.clientMsgId}: ${r.error ?? JSON.stringify(r.ack)}`),
      [],
      `${failed.length} of ${all.length} sends were not acked as stored`,
    );
    for (const r of all) {
      assertStoredAck(r.ack, `ack of ${r.clientMsgId}`);
      assert.equal(r.ack.roomId, g.roomId);
    }
    const n = all.length;
    assert.deepEqual(
      all.map((r) => r.ack.seq).sort((x, y) => x - y),
      Array.from({ length: n }, (_, i) => i + 1),
      'the acks do not carry the seqs 1..N once each',
    );

    await apiReady(cl.apiUrl, g.owner);
    const hist = await history(cl.apiUrl, g.owner, g.roomId);
    assert.equal(hist.length, n, `history holds ${hist.length} messages, ${n} were acked`);
    assert.deepEqual(hist.map((m) => m.seq), Array.from({ length: n }, (_, i) => i + 1), 'history seqs are not 1..N');
    const byId = new Map(hist.map((m) => [m.id, m]));
    assert.equal(byId.size, n, 'history repeats a message id');
    for (const r of all) {
      const m = byId.get(r.ack.id);
      assert.ok(m, `acked ${r.clientMsgId} (id ${r.ack.id}) is not in the history`);
      assert.equal(m.seq, r.ack.seq, `${r.clientMsgId}: history seq ${m.seq}, ack seq ${r.ack.seq}`);
      assert.equal(m.text, r.text);
      assert.equal(m.clientMsgId, r.clientMsgId);
      assert.equal(m.userId, r.sender.id);
    }
    for (const [s, recs] of sent.entries()) {
      for (let i = 1; i < recs.length; i++) {
        assert.ok(recs[i].ack.seq > recs[i - 1].ack.seq, `sender ${s}: ${recs[i].clientMsgId} stored before ${recs[i - 1].clientMsgId}`);
      }
    }
    const counts = await cl.pg.sql(
      `SELECT count(*), count(DISTINCT (sender_id, client_msg_id)), coalesce(max(seq), 0) FROM messages WHERE room_id = '${g.roomId}'`,
    );
    assert.equal(counts, `${n}|${n}|${n}`, 'PostgreSQL: messages, distinct (sender, clientMsgId), last seq');

    for (const { user, socket } of g.receivers) {
      await until(
        () => socket.inbox.all('messageReceived', { roomId: g.roomId }).length >= n,
        15000,
        `${user.name} receiving ${n} messages`,
      ).catch(() => {});
      assertGotExactly(socket, g.roomId, hist, user.name);
    }
    return hist;
  }

  test('1,000 messages while chat-storage is killed with SIGKILL and restarted: each stored and received once, in order', T, async (t) => {
    const g = await group(t, {
      senders: 4,
      receivers: 2,
      senderUrl: (i) => cl.gateways[i % 2].url,
      receiverUrl: (i) => cl.gateways[i % 2].url,
      receiverOpts: () => ({ transports: ['websocket'] }),
    });
    const st = cl.storage[0];
    let acked = 0;
    let killed = null; // {at, restartedAt, ackedBefore}
    let restart = null;
    const onAck = () => {
      acked++;
      if (acked === 300 && !restart) {
        restart = (async () => {
          const ackedBefore = acked;
          await st.kill('SIGKILL');
          const at = Date.now();
          await sleep(300);
          await st.start();
          killed = { at, restartedAt: Date.now(), ackedBefore };
        })();
      }
    };
    const sent = await Promise.all(
      g.senders.map(({ socket }, s) => sendMany(socket, { roomId: g.roomId }, 250, { tag: `k${s}`, window: 20, ackMs: 45000, onAck })),
    );
    assert.ok(restart, `the kill never happened (${acked} acks)`);
    await restart;
    const total = sent.flat();
    assert.equal(total.length, 1000);
    const afterRestart = total.filter((r) => r.ackAt !== null && r.ackAt >= killed.at).length;
    t.diagnostic(`killed after ${killed.ackedBefore} acks, down ${killed.restartedAt - killed.at} ms; ${afterRestart} acks came after the kill`);
    assert.ok(afterRestart > 0, 'no ack came after the kill: it was not in the middle of the traffic');
    await checkAll(g, sent);
  });

  test('PostgreSQL crashes (SIGKILL) and restarts during sends: acks wait for it, nothing lost or doubled', T, async (t) => {
    const g = await group(t, {
      senders: 3,
      receivers: 2,
      senderUrl: (i) => cl.gateways[i % 2].url,
      receiverUrl: (i) => cl.gateways[(i + 1) % 2].url,
    });
    let acked = 0;
    let outage = null; // {downAt, upAt}
    let restart = null;
    const onAck = () => {
      acked++;
      if (acked === 100 && !restart) {
        restart = (async () => {
          await cl.pg.kill('SIGKILL');
          const downAt = Date.now();
          await sleep(1500);
          const upAt = Date.now();
          await cl.pg.start();
          outage = { downAt, upAt, readyAt: Date.now() };
        })();
      }
    };
    const sent = await Promise.all(
      g.senders.map(({ socket }, s) =>
        sendMany(socket, { roomId: g.roomId }, 150, { tag: `p${s}`, window: 50, gapMs: 15, ackMs: 45000, onAck }),
      ),
    );
    assert.ok(restart, `PostgreSQL was never killed (${acked} acks)`);
    await restart;
    const during = sent.flat().filter((r) => r.sentAt > outage.downAt && r.sentAt < outage.upAt);
    t.diagnostic(`${during.length} messages sent while PostgreSQL was down (${outage.upAt - outage.downAt} ms)`);
    assert.ok(during.length >= 10, `only ${during.length} messages were sent while PostgreSQL was down`);
    for (const r of during) {
      assert.ok(r.ack && !r.ack.error, `${r.clientMsgId}, sent while PostgreSQL was down: ${r.error ?? JSON.stringify(r.ack)}`);
      assert.ok(r.ackAt >= outage.upAt, `${r.clientMsgId} was acked ${outage.upAt - r.ackAt} ms before PostgreSQL came back`);
    }
    await checkAll(g, sent);
  });

  test('a gateway killed with SIGKILL: its clients recover on the other one through HAProxy, every message once, in order', T, async (t) => {
    const [dead, alive] = cl.gateways;
    const g = await group(t, {
      senders: 2,
      receivers: 4,
      senderUrl: () => alive.url,
      receiverUrl: () => cl.lb.url,
      // both transports; HAProxy spreads the sessions over both gateways
      receiverOpts: (i) => (i % 2 === 0 ? { transports: ['websocket'] } : {}),
    });
    // each receiver has a session id to recover (the CONNECT gave a pid)
    for (const { socket } of g.receivers) assert.equal(typeof socket._pid, 'string', 'CONNECT without a pid: no recovery');
    const dropped = new Set();
    for (const { user, socket } of g.receivers) socket.on('disconnect', () => dropped.add(user.name));

    let acked = 0;
    let killedAt = null;
    let kill = null;
    const onAck = () => {
      acked++;
      if (acked === 60 && !kill) {
        kill = dead.kill('SIGKILL').then(() => {
          killedAt = Date.now();
        });
      }
    };
    const sent = await Promise.all(
      g.senders.map(({ socket }, s) =>
        sendMany(socket, { roomId: g.roomId }, 150, { tag: `g${s}`, window: 10, gapMs: 20, ackMs: 30000, onAck }),
      ),
    );
    assert.ok(kill, 'the gateway was never killed');
    await kill;
    const away = g.receivers.filter(({ user }) => dropped.has(user.name));
    t.diagnostic(`receivers on the killed gateway: ${[...dropped].join(', ')}`);
    assert.ok(away.length >= 1, 'no receiver was on the killed gateway');
    assert.ok(away.length < g.receivers.length, 'every receiver was on the killed gateway');
    const sentWhileAway = sent.flat().filter((r) => r.sentAt > killedAt).length;
    assert.ok(sentWhileAway > 0, 'nothing was sent after the kill');
    for (const { user, socket } of away) {
      await until(() => socket.connected, 15000, `${user.name} reconnecting`);
      assert.equal(socket.connects.length, 2, `${user.name} connected ${socket.connects.length} times`);
      assert.equal(socket.connects[1].recovered, true, `${user.name} reconnected without recovering its session`);
    }
    for (const { user, socket } of g.receivers) {
      if (!dropped.has(user.name)) assert.equal(socket.connects.length, 1, `${user.name} on the surviving gateway reconnected`);
    }
    await checkAll(g, sent);
  });
});
