// The chat cluster when its parts fail: Redis restarted under traffic (the
// gateways report not ready and refuse messages with an error ack while it
// is down, then reconnect and resubscribe by themselves), Redis behind a
// password, and a gateway killed with SIGKILL (its users are reported
// offline after --presence-ttl, and HAProxy sends new clients to the other
// one).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { httpRequest, sleep, startGateway, until } from './lib/harness.mjs';
import { closeAllClients } from './lib/client.mjs';
import { ack, connectAs, joinChat, makeUsers, sendMessage, sendOk } from './lib/chat.mjs';
import { startCluster, startRedis, waitReady } from './lib/stack.mjs';

const PRESENCE_TTL = 1500;

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
    await sleep(1000);
    assert.equal((await httpRequest(`${bad.url}/readyz`)).status, 503, 'ready with a wrong Redis password');
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
});
