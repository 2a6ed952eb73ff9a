// The chat cluster when its parts fail: Redis restarted under traffic (the
// gateways report not ready and refuse messages with an error ack while it
// is down, then reconnect and resubscribe by themselves), Redis behind a
// password, and a gateway killed with SIGKILL (its users are reported
// offline after --presence-ttl, and HAProxy sends new clients to the other
// one); presence renewed in batches keeps many users online past the TTL
// and the sweep reports a dead gateway's users offline.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { httpRequest, sleep, startGateway, until } from './lib/harness.mjs';
import { closeAllClients } from './lib/client.mjs';
import { ack, connectAs, joinChat, makeUsers, sendMessage, sendOk } from './lib/chat.mjs';
import { redisCommand, startCluster, startRedis, waitReady } from './lib/stack.mjs';

const PRESENCE_TTL = 1500;
const MANY = 300;

after(() => closeAllClients());

describe('chat resilience', () => {
  let cl;
  let gw;
  before(async () => {
    cl = await startCluster({ gateways: 2, args: ['--presence-ttl', String(PRESENCE_TTL)] });
    gw = cl.gateways.map((g) => g.url);
  });
  after(() => cl?.stop());

  test('Redis restarted during traffic: error acks while down, /readyz 503 then 200, chat resumes', { timeout: 40000 }, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connectAs(gw[0], alice, { transports: ['websocket'] }, t);
    const b = await connectAs(gw[1], bob, {}, t);
    const room = await joinChat(a, bob.id);
    await joinChat(b, alice.id);
    const first = await sendOk(a, { roomId: room, text: 'before' });
    await b.inbox.wait('messageReceived', { id: first.id });

    // Alice keeps sending, one message every 80 ms (below --rate-limit), for
    // the whole test
    const sent = []; // {n, phase, at, ack}
    let phase = 'up';
    let stop = false;
    const traffic = (async () => {
      for (let n = 0; !stop; n++) {
        const p = phase;
        const at = Date.now();
        const res = await sendMessage(a, { roomId: room, text: `t${n}` }, 8000).catch((err) => ({ timeout: err.message }));
        sent.push({ n, phase: p, at, ack: res });
        await sleep(80);
      }
    })();

    await sleep(300);
    phase = 'stopping';
    await cl.redis.kill('SIGKILL');
    // both gateways notice
    await Promise.all(gw.map((url) => waitReady(url, 8000, 503)));
    phase = 'down';
    // while Redis is down every message is refused, none vanishes silently
    const downFrom = sent.length;
    await sleep(1000);
    const downAcks = sent.slice(downFrom).filter((s) => s.phase === 'down');
    assert.ok(downAcks.length >= 5, `only ${downAcks.length} messages sent while down`);
    for (const s of downAcks) {
      assert.equal(s.ack?.error, 'unavailable', `message ${s.n} sent while Redis was down: ack ${JSON.stringify(s.ack)}`);
    }
    // an ack with an error, never a dropped connection
    assert.ok(a.connected && b.connected);
    const direct = await sendMessage(b, { roomId: room, text: 'while down' });
    assert.equal(direct?.error, 'unavailable', `ack ${JSON.stringify(direct)}`);

    phase = 'restarting';
    await cl.redis.start();
    await Promise.all(gw.map((url) => waitReady(url, 10000, 200)));
    const readyAt = Date.now();
    phase = 'up again';
    await sleep(500);
    stop = true;
    await traffic;

    // no ack was missing, and no message was delivered that was refused
    for (const s of sent) assert.ok(!s.ack?.timeout, `message ${s.n} (${s.phase}) got no ack: ${s.ack?.timeout}`);
    const refused = new Set(sent.filter((s) => s.ack?.error).map((s) => `t${s.n}`));
    assert.ok(refused.size > 0);
    await sleep(300);
    for (const m of b.inbox.all('messageReceived')) assert.ok(!refused.has(m.text), `refused message ${m.text} was delivered`);
    // messages accepted after the restart reach the other node
    const lateAccepted = sent.filter((s) => s.phase === 'up again' && s.ack?.id);
    assert.ok(lateAccepted.length > 0, `no message accepted after the restart: ${JSON.stringify(sent.slice(-5))}`);
    const delivered = (s) => b.inbox.all('messageReceived', { id: s.ack.id }).length > 0;
    await until(() => lateAccepted.every(delivered), 3000, 'messages accepted after the restart').catch(() => {});
    const lost = sent.filter((s) => s.ack?.id && !delivered(s));
    const describe = (list) => list.map((s) => `t${s.n} (${s.phase}, sent ${s.at - readyAt} ms after /readyz 200)`).join(', ');
    if (lost.length) t.diagnostic(`accepted but not delivered around the restart: ${describe(lost)}`);
    assert.deepEqual(describe(lateAccepted.filter((s) => !delivered(s))), '', 'accepted after both gateways were ready again, never delivered');

    // both directions, and joins made after the restart
    const m1 = await sendOk(b, { roomId: room, text: 'after restart from bob' });
    await a.inbox.wait('messageReceived', { id: m1.id });
    const [carol] = await makeUsers(cl, 'Carol');
    const c = await connectAs(gw[1], carol, {}, t);
    const ac = await joinChat(a, carol.id);
    assert.equal(await joinChat(c, alice.id), ac);
    const m2 = await sendOk(a, { roomId: ac, text: 'new room after restart' });
    await c.inbox.wait('messageReceived', { id: m2.id });
  });

  test('/readyz is 503 while Redis is unreachable, /healthz stays 200', { timeout: 20000 }, async () => {
    await cl.redis.kill('SIGTERM');
    try {
      await Promise.all(gw.map((url) => waitReady(url, 8000, 503)));
      for (const url of gw) assert.equal((await httpRequest(`${url}/healthz`)).status, 200);
    } finally {
      await cl.redis.start();
    }
    await Promise.all(gw.map((url) => waitReady(url, 10000, 200)));
  });

  test('Redis with a password (redis://:password@host:port); a wrong password never gets ready', { timeout: 20000 }, async (t) => {
    const redis = await startRedis({ t, password: 'pw-Secret_42' });
    const common = ['--app', 'chat', '--jwt-secret', cl.secret, '--workers', '1', '--storage', 'off'];
    const good = await startGateway([...common, '--redis', redis.url], {}, { t });
    const bad = await startGateway([...common, '--redis', `redis://:wrong@127.0.0.1:${redis.port}`], {}, { t });
    await waitReady(good.url);
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connectAs(good.url, alice, {}, t);
    const b = await connectAs(good.url, bob, {}, t);
    const room = await joinChat(a, bob.id);
    await joinChat(b, alice.id);
    await sleep(200);
    const m = await sendOk(a, { roomId: room, text: 'with a password' });
    await b.inbox.wait('messageReceived', { id: m.id });
    // never ready, not even for a moment: a connection is up only once
    // Redis accepted its AUTH, and the retries back off
    for (let i = 0; i < 10; i++) {
      assert.equal((await httpRequest(`${bad.url}/readyz`)).status, 503, 'ready with a wrong Redis password');
      await sleep(100);
    }
    assert.ok(!bad.log.includes('event=redis_ready'), `a link was ready with a wrong password:\n${bad.log}`);
    const refusals = bad.log.split('event=redis_auth_failed').length - 1;
    assert.ok(refusals >= 1 && refusals <= 4, `${refusals} redis_auth_failed lines: said once per connection and outage`);
    for (const gw of [good, bad]) assert.ok(!gw.log.includes('pw-Secret_42'), 'the Redis password is in the log');
  });

  test(`a gateway killed with SIGKILL: its user is reported offline (--presence-ttl ${PRESENCE_TTL})`, { timeout: 20000 }, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connectAs(gw[0], alice, {}, t);
    const room = await joinChat(a, bob.id);
    const b = await connectAs(gw[1], bob, { reconnection: false }, t);
    await joinChat(b, alice.id);
    await a.inbox.wait('presence', { userId: bob.id, online: true });

    const killed = Date.now();
    await cl.gateways[1].kill('SIGKILL');
    const offline = await a.inbox.wait('presence', { userId: bob.id, online: false }, PRESENCE_TTL + 5000);
    const took = Date.now() - killed;
    t.diagnostic(`offline reported ${took} ms after the kill`);
    assert.deepEqual(offline, { userId: bob.id, online: false });
    assert.deepEqual(await ack(a, 'getOnline', { roomId: room }), { online: [alice.id] });

    // HAProxy sends new clients to the survivor only
    const [carol] = await makeUsers(cl, 'Carol');
    const viaLb = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        connectAs(cl.url, carol, { transports: i % 2 ? ['websocket'] : ['polling', 'websocket'] }, t),
      ),
    );
    for (const s of viaLb) assert.equal((await ack(s, 'joinChat', { targetUserId: alice.id })).error, undefined);

    // the killed node comes back and serves again
    await cl.gateways[1].restart();
    await waitReady(gw[1]);
    const b2 = await connectAs(gw[1], bob, {}, t);
    await joinChat(b2, alice.id);
    await a.inbox.wait('presence', { userId: bob.id, online: true });
    const m = await sendOk(a, { roomId: room, text: 'welcome back' });
    await b2.inbox.wait('messageReceived', { id: m.id });
  });

  test('a user whose presence entries Redis lost is announced online again by the next renewal', { timeout: 20000 }, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connectAs(gw[0], alice, {}, t);
    const room = await joinChat(a, bob.id);
    const b = await connectAs(gw[1], bob, {}, t);
    await joinChat(b, alice.id);
    await a.inbox.wait('presence', { userId: bob.id, online: true });
    const announced = a.inbox.all('presence', { userId: bob.id }).length;
    // as after a Redis restart that lost the key: Bob's entries are gone
    const keys = await redisCommand(cl.redis.port, ['KEYS', `{p*}:on:${bob.id}`]);
    assert.equal(keys.length, 1);
    await redisCommand(cl.redis.port, ['DEL', keys[0]]);
    assert.deepEqual(await ack(a, 'getOnline', { roomId: room }), { online: [alice.id] });
    await a.inbox.wait('presence', { userId: bob.id, online: true }, PRESENCE_TTL);
    assert.deepEqual([...(await ack(a, 'getOnline', { roomId: room })).online].sort(), [alice.id, bob.id].sort());
    // renewed from then on: no offline, and announced once
    await sleep(PRESENCE_TTL);
    assert.equal(a.inbox.all('presence', { userId: bob.id }).length, announced + 1);
  });

  // The renewals are one script call per presence shard and worker per
  // tick (--presence-ttl / 3), not one per user: 2 gateways x 2 workers x 16
  // shards = 64 calls a tick whatever the number of users.
  test(`presence of ${MANY} users renewed in batches past the TTL; a dead gateway's users swept`, { timeout: 60000 }, async (t) => {
    const users = await makeUsers(cl, 'Alice', ...Array.from({ length: MANY }, (_, i) => `Many${i}`));
    const [alice, ...many] = users;
    const room = `many-${process.pid}`;
    await redisCommand(cl.redis.port, ['SADD', `{r:${room}}:members`, ...users.map((u) => u.id)]);
    const a = await connectAs(gw[0], alice, {}, t);
    assert.equal((await ack(a, 'joinRoom', { roomId: room })).roomId, room);
    for (let i = 0; i < many.length; i += 50)
      await Promise.all(
        many.slice(i, i + 50).map((u) => connectAs(gw[1], u, { transports: ['websocket'], reconnection: false }, t)),
      );
    const onlineIds = async () => [...(await ack(a, 'getOnline', { roomId: room })).online].sort();
    const everyone = users.map((u) => u.id).sort();
    await until(async () => (await onlineIds()).length === users.length, 5000, 'everyone online');

    const evalsha = async () => {
      const info = await redisCommand(cl.redis.port, ['INFO', 'commandstats']);
      const m = /cmdstat_evalsha:calls=(\d+)/.exec(String(info));
      return m ? Number(m[1]) : 0;
    };
    const before = await evalsha();
    const from = Date.now();
    await sleep(PRESENCE_TTL * 2.5); // entries live PRESENCE_TTL: renewed, or gone
    assert.deepEqual(await onlineIds(), everyone, 'a renewed user went offline');
    const ticks = Math.ceil((Date.now() - from) / (PRESENCE_TTL / 3)) + 1;
    const calls = (await evalsha()) - before;
    t.diagnostic(`${calls} EVALSHA in ${ticks} ticks for ${users.length} users`);
    assert.ok(calls <= 64 * ticks, `${calls} EVALSHA in ${ticks} ticks: not batched`);
    assert.equal((await a.inbox.all('presence', { online: false })).length, 0, 'an offline presence event');

    await cl.gateways[1].kill('SIGKILL');
    await until(async () => (await onlineIds()).length === 1, PRESENCE_TTL + 5000, 'the dead gateway\'s users swept');
    assert.deepEqual(await onlineIds(), [alice.id]);

    await cl.gateways[1].restart();
    await waitReady(gw[1]);
  });
});
