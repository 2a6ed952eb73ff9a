// Redis is a cache (issue 10, point 11): when Redis restarts empty, the
// membership cache ({r:ROOM}:members, {u:USER}:rooms) is rebuilt from
// PostgreSQL by chat-storage without restarting anything; group members can
// joinRoom and sendMessage again within seconds (never a false "not a
// member"), and every message acknowledged meanwhile reaches every member
// on its live sockets. Real Redis (restarted with its AOF deleted), PostgreSQL,
// chat-storage and two gateways.

import assert from 'node:assert/strict';
import { rmSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { closeAllClients } from './lib/client.mjs';
import { makeUsers } from './lib/chat.mjs';
import { sleep, until } from './lib/harness.mjs';
import { startCluster } from './lib/stack.mjs';
import { connectStored, createGroup, request, sendMany, sendStored } from './lib/storage-chat.mjs';

const T = { timeout: 90000 };
const HEAL_MS = 10000; // "within seconds": sends and joins work again by then

after(() => closeAllClients());

/** Kill Redis, delete its data, start it again on the same port: empty. */
async function restartEmpty(redis) {
  await redis.kill('SIGKILL');
  for (const f of readdirSync(redis.dir)) rmSync(path.join(redis.dir, f), { recursive: true, force: true });
  await redis.start();
}

describe('membership heals after Redis loses its data', () => {
  let cl;
  before(async () => {
    cl = await startCluster({ gateways: 2, storage: true, pgFast: true });
  });
  after(() => cl?.stop());

  test('a group of 3 on two gateways: Redis restarts empty under traffic; joins and sends resume, nothing acked is missed', T, async (t) => {
    const [alice, bob, carol] = await makeUsers(cl, 'Alice', 'Bob', 'Carol');
    const { roomId } = await createGroup(cl.apiUrl, alice, 'cache', [bob.id, carol.id]);
    const gw = cl.gateways.map((g) => g.url);
    const a = await connectStored(gw[0], alice, { transports: ['websocket'] }, t);
    const b = await connectStored(gw[1], bob, { transports: ['websocket'] }, t);
    const c1 = await connectStored(gw[0], carol, { transports: ['polling'] }, t);
    // Carol's second device comes back seconds after her first: what the
    // first got meanwhile must still reach it
    const c2 = await connectStored(gw[1], carol, {
      transports: ['websocket'], reconnectionDelay: 4000, reconnectionDelayMax: 4000, randomizationFactor: 0,
    }, t);
    const receivers = { bob: [b], carol: [c1, c2] };
    for (const s of [a, b, c1, c2]) assert.equal((await request(s, 'joinRoom', { roomId }))?.roomId, roomId);
    const first = await sendStored(a, { roomId, text: 'before' });
    for (const s of [b, c1, c2]) await s.inbox.wait('messageReceived', { id: first.id }, 10000);

    // Alice sends all along; Redis loses everything a moment in
    let lostAt = null;
    const sending = sendMany(a, { roomId }, 120, { tag: 'during', window: 5, gapMs: 100, ackMs: 60000 });
    await sleep(1500);
    lostAt = Date.now();
    await restartEmpty(cl.redis);
    const sent = await sending;

    const notMember = sent.filter((r) => r.ack?.error === 'not a member');
    assert.deepEqual(notMember.map((r) => r.i), [], 'a member was told "not a member" after Redis lost its data');
    const acked = sent.filter((r) => r.ack && !r.ack.error);
    const resumed = acked.find((r) => r.sentAt > lostAt);
    assert.ok(resumed, `no send succeeded after Redis came back empty: ${JSON.stringify(sent.slice(-3).map((r) => r.ack ?? r.error))}`);
    assert.ok(resumed.ackAt - lostAt <= HEAL_MS, `sends resumed ${resumed.ackAt - lostAt} ms after the loss`);
    const lastErrors = sent.slice(-20).filter((r) => !r.ack || r.ack.error);
    assert.deepEqual(lastErrors.map((r) => r.ack ?? r.error), [], 'the last sends still fail');
    t.diagnostic(`${acked.length} of ${sent.length} acked; first after the loss ${resumed.ackAt - lostAt} ms after it`);

    // every acked message reaches every live socket of every member: Bob's
    // one, and Carol's two. Redis lost the recovery records too, so each
    // socket recovers from its own offset (a fresh session's sync would
    // skip what Carol's other socket already got), once, in order.
    const missing = () => {
      const out = [];
      for (const [who, socks] of Object.entries(receivers)) {
        socks.forEach((s, k) => {
          const got = new Set(s.inbox.all('messageReceived', { roomId }).map((m) => m.id));
          for (const r of acked) if (!got.has(r.ack.id)) out.push(`${who}[${k}]:${r.i}`);
        });
      }
      return out;
    };
    await until(() => missing().length === 0, 15000, 'acked messages at every member socket').catch(() => {});
    assert.deepEqual(missing(), [], `acked messages missing at member sockets (of ${acked.length})`);
    for (const s of [b, c1, c2]) {
      const ids = s.inbox.all('messageReceived', { roomId }).map((m) => m.id);
      assert.equal(new Set(ids).size, ids.length, 'a socket got a message twice');
    }

    // the cache is whole again: joinRoom of a socket that is not in the room
    // yet, and a send from another member, work
    const c3 = await connectStored(gw[1], carol, { transports: ['websocket'] }, t);
    const deadline = Date.now() + HEAL_MS;
    let join;
    for (;;) {
      join = await request(c3, 'joinRoom', { roomId });
      if (join?.roomId === roomId || Date.now() > deadline || join?.error !== 'unavailable') break;
      await sleep(200);
    }
    assert.equal(join?.roomId, roomId, `joinRoom after the loss: ${JSON.stringify(join)}`);
    const fromCarol = await sendStored(c3, { roomId, text: 'after' });
    for (const s of [a, b, c1, c2]) await s.inbox.wait('messageReceived', { id: fromCarol.id }, 10000);
    assert.equal(await cl.redis.command('EXISTS', '{st}:cache'), 1, 'storage did not mark the cache rebuilt');
    assert.ok((await cl.redis.command('SMEMBERS', `{r:${roomId}}:members`)).length === 3);
  });

  test('after a rebuild the cache holds the memberships of PostgreSQL, and a non-member still gets "not a member"', T, async (t) => {
    const [dan, erin, fay] = await makeUsers(cl, 'Dan', 'Erin', 'Fay');
    const { roomId } = await createGroup(cl.apiUrl, dan, 'removed', [erin.id]);
    await restartEmpty(cl.redis);
    await until(async () => (await cl.redis.command('EXISTS', '{st}:cache').catch(() => 0)) === 1, HEAL_MS, 'the cache mark');
    assert.deepEqual(((await cl.redis.command('SMEMBERS', `{u:${erin.id}}:rooms`)) ?? []).includes(roomId), true);
    const f = await connectStored(cl.gateways[0].url, fay, { transports: ['websocket'] }, t);
    assert.equal((await request(f, 'joinRoom', { roomId }))?.error, 'not a member');
  });
});
