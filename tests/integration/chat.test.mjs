// The chat application across gateways: three `--app chat` gateways with
// JWT authentication share one Redis, with HAProxy in front (the
// configuration of scripts/gen-haproxy.sh). Users connect straight to
// different gateway ports to force cross-node traffic, and through HAProxy
// with each transport: the tutorial flow (joinChat, sendMessage,
// messageReceived), typing, presence, leaving, several tabs per user, and
// long-polling affinity.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { httpRequest, runGateway, sleep, startGateway, until } from './lib/harness.mjs';
import { closeAllClients, closeClient, connected, emitAck } from './lib/client.mjs';
import {
  ack,
  assertRecentIso,
  chatClient,
  connectAs,
  joinChat,
  makeUsers,
  sendMessage,
  sendOk,
} from './lib/chat.mjs';
import {
  decodeToken,
  GEN_HAPROXY,
  HAPROXY_BIN,
  haproxyConfig,
  mintToken,
  startCluster,
  TEST_SECRET,
  verifySignature,
} from './lib/stack.mjs';

const T = { timeout: 20000 };

after(() => closeAllClients());

test('`chat-gateway token` prints an HS256 JWT with sub, name, iat and exp', T, async () => {
  const before = Math.floor(Date.now() / 1000);
  const token = await mintToken('u-42', 'Zoë Test', 120);
  const { header, claims } = decodeToken(token);
  assert.equal(header.alg, 'HS256');
  assert.ok(verifySignature(token, TEST_SECRET), 'signature does not verify with the secret');
  assert.ok(!verifySignature(token, `${TEST_SECRET}x`));
  assert.equal(claims.sub, 'u-42');
  assert.equal(claims.name, 'Zoë Test');
  assert.ok(claims.exp >= before + 120 && claims.exp <= before + 125, `exp ${claims.exp}, now ${before}`);
});

test('`chat-gateway token` takes the secret from --jwt-secret too, and refuses to run without one', T, async () => {
  const res = await runGateway(['token', '--jwt-secret', 'flag-secret', '--user', 'u-1', '--name', 'U']);
  assert.equal(res.code, 0, res.stderr);
  const token = res.stdout.trim();
  assert.ok(verifySignature(token, 'flag-secret'));
  assert.equal(decodeToken(token).claims.sub, 'u-1');
  const none = await runGateway(['token', '--user', 'u-1', '--name', 'U'], { CHAT_JWT_SECRET: '' });
  assert.notEqual(none.code, 0, 'token without a secret exited 0');
  assert.match(none.stderr + none.stdout, /--jwt-secret|CHAT_JWT_SECRET/);
});

test('--app chat --auth jwt without a secret stops start-up naming --jwt-secret', T, async () => {
  const res = await runGateway(['--listen', '127.0.0.1:0', '--app', 'chat', '--auth', 'jwt'], { CHAT_JWT_SECRET: '' });
  assert.equal(res.timedOut, false, 'the gateway started without a JWT secret');
  assert.notEqual(res.code, 0);
  assert.match(res.stderr + res.stdout, /--jwt-secret|CHAT_JWT_SECRET/);
  const bad = await runGateway(['--listen', '127.0.0.1:0', '--app', 'chat', '--auth', 'maybe', '--jwt-secret', 's']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr + bad.stdout, /--auth/);
});

describe('scripts/gen-haproxy.sh', () => {
  test('its configurations pass `haproxy -c`; --storage routes /api/; bad arguments exit 2', T, async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'gen-haproxy-'));
    try {
      const cases = [
        [[3000, [3001]], {}],
        [[3000, [3001, 3002, 3003]], {}],
        [['127.0.0.1:3000', ['127.0.0.1:3001', '127.0.0.2:3001']], { storage: ['4001', '127.0.0.1:4002'] }],
      ];
      for (const [[lb, gws], opts] of cases) {
        const cfg = await haproxyConfig(lb, gws, opts);
        const file = path.join(dir, 'h.cfg');
        writeFileSync(file, cfg);
        const r = spawnSync(HAPROXY_BIN, ['-c', '-f', file], { encoding: 'utf8', timeout: 10000 });
        assert.equal(r.status, 0, `haproxy -c failed for ${lb} ${gws}:\n${r.stdout}${r.stderr}\n${cfg}`);
        assert.match(cfg, /balance roundrobin/);
        assert.match(cfg, /cookie io_lb insert/);
        assert.match(cfg, /timeout tunnel/);
        assert.match(cfg, /\/readyz/);
        assert.equal(cfg.match(/^\s*server gw\d+ /gm).length, gws.length);
        assert.equal(/use_backend storage if \{ path_beg \/api\/ \}/.test(cfg), Boolean(opts.storage));
      }
      for (const args of [[], ['3000'], ['3000', 'abc'], ['3000', '70000'], ['--storage'], ['--nope', '3000', '3001']]) {
        const r = spawnSync(GEN_HAPROXY, args, { encoding: 'utf8', timeout: 5000 });
        assert.equal(r.status, 2, `gen-haproxy.sh ${args.join(' ')} exited ${r.status}`);
        assert.ok(r.stderr.length > 0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('chat across three gateways (JWT)', () => {
  let cl;
  let gw; // gateway urls
  before(async () => {
    cl = await startCluster({ gateways: 3 });
    gw = cl.gateways.map((g) => g.url);
  });
  after(() => cl?.stop());

  test('the tutorial flow with Alice and Bob on different gateways', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connectAs(gw[0], alice, {}, t);
    const b = await connectAs(gw[1], bob, {}, t);

    const room = await joinChat(a, bob.id);
    assert.equal(await joinChat(b, alice.id), room, 'both orders must give the same room id');
    assert.ok(!room.includes(alice.id) && !room.includes(bob.id), `room id ${room} shows the user ids`);

    // right after Bob's join ack, a message from another node reaches him
    const sent = await sendOk(a, { targetUserId: bob.id, text: 'hi Bob', clientMsgId: 'c-1' });
    assert.equal(sent.roomId, room);
    for (const s of [a, b]) {
      const m = await s.inbox.wait('messageReceived', { id: sent.id });
      assert.equal(m.roomId, room);
      assert.equal(m.userId, alice.id);
      assert.equal(m.firstName, 'Alice');
      assert.equal(m.text, 'hi Bob');
      assert.equal(m.clientMsgId, 'c-1');
      assert.equal(m.createdAt, sent.createdAt);
      assertRecentIso(m.createdAt);
    }

    // Bob answers by roomId, with the tutorial's "msg" alias
    const reply = await sendOk(b, { roomId: room, msg: 'hi Alice' });
    assert.equal(reply.roomId, room);
    assert.notEqual(reply.id, sent.id);
    for (const s of [a, b]) {
      const m = await s.inbox.wait('messageReceived', { id: reply.id });
      assert.deepEqual([m.userId, m.firstName, m.text, m.roomId], [bob.id, 'Bob', 'hi Alice', room]);
    }

    // exactly once each
    await sleep(300);
    for (const s of [a, b]) {
      assert.equal(s.inbox.all('messageReceived', { id: sent.id }).length, 1);
      assert.equal(s.inbox.all('messageReceived', { id: reply.id }).length, 1);
    }
  });

  test('texts and names round-trip exactly (quotes, escapes, newlines, emoji, U+2028)', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Zoë "Z" \\ O\'Neil 👋🏽', 'Bob');
    const a = await connectAs(gw[0], alice, {}, t);
    const b = await connectAs(gw[1], bob, { transports: ['polling'] }, t);
    const room = await joinChat(a, bob.id);
    await joinChat(b, alice.id);
    const texts = [
      'quote " backslash \\ slash / tab \t',
      'line 1\nline 2\r\nline 3\n\n',
      '👋🏽 émoji, 中文, עברית',
      'separators \u2028 \u2029 and \u001e record separator',
      '</script><script>alert(1)</script>',
      '{"looks":"like json"}',
      ' ',
    ];
    for (const text of texts) {
      const sent = await sendOk(a, { roomId: room, text });
      const m = await b.inbox.wait('messageReceived', { id: sent.id });
      assert.equal(m.text, text);
      assert.equal(m.firstName, alice.name);
    }
  });

  test('the room id of a pair is the same on every gateway, and differs per pair', T, async (t) => {
    const [alice, bob, carol] = await makeUsers(cl, 'Alice', 'Bob', 'Carol');
    const rooms = [];
    for (const url of gw) {
      const s = await connectAs(url, alice, {}, t);
      rooms.push(await joinChat(s, bob.id));
      rooms.push(await joinChat(s, bob.id)); // joining twice is harmless
      assert.notEqual(await joinChat(s, carol.id), rooms[0]);
    }
    assert.equal(new Set(rooms).size, 1, `room ids differ: ${rooms}`);
  });

  test('room ids are keyed: a gateway with another --room-secret gives other ids', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const other = await startGateway(
      ['--app', 'chat', '--jwt-secret', cl.secret, '--room-secret', 'another-room-key', '--redis', cl.redis.url, '--workers', '1', '--storage', 'off'],
      {},
      { t },
    );
    const a = await connectAs(gw[0], alice, {}, t);
    const a2 = await connectAs(other.url, alice, {}, t);
    assert.notEqual(await joinChat(a2, bob.id), await joinChat(a, bob.id));
  });

  test('sendMessage with targetUserId joins the sender to the room', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connectAs(gw[0], alice, {}, t);
    const b = await connectAs(gw[2], bob, {}, t);
    const room = await joinChat(b, alice.id);
    const sent = await sendOk(a, { targetUserId: bob.id, text: 'no join first' });
    assert.equal(sent.roomId, room);
    await b.inbox.wait('messageReceived', { id: sent.id, text: 'no join first' });
    await a.inbox.wait('messageReceived', { id: sent.id });
    // Alice's socket is now in the room: she receives Bob's answer
    const reply = await sendOk(b, { roomId: room, text: 'got it' });
    await a.inbox.wait('messageReceived', { id: reply.id, userId: bob.id, text: 'got it' });
  });

  test('no message is missed right after a join: the joinChat ack and an auto-join come after the subscription', T, async (t) => {
    const misses = [];
    for (let round = 0; round < 12; round++) {
      const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
      const [ga, gb] = [gw[round % 3], gw[(round + 1) % 3]];
      const a = await connectAs(ga, alice, { transports: ['websocket'] }, t);
      const b = await connectAs(gb, bob, { transports: ['websocket'] }, t);
      await joinChat(b, alice.id);
      // Alice never joined: her socket joins with this message
      const sent = await sendOk(a, { targetUserId: bob.id, text: `first ${round}` });
      await sleep(250);
      if (b.inbox.all('messageReceived', { id: sent.id }).length !== 1) misses.push(`round ${round}: Bob (joined, ack received) missed it`);
      if (a.inbox.all('messageReceived', { id: sent.id }).length !== 1) misses.push(`round ${round}: Alice (auto-joined by the send) missed her own message`);
      closeClient(a);
      closeClient(b);
    }
    assert.deepEqual(misses, []);
  });

  test('sendMessage by roomId needs the socket to have joined the room', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connectAs(gw[0], alice, {}, t);
    const room = await joinChat(a, bob.id);
    const b = await connectAs(gw[1], bob, {}, t);
    assert.deepEqual(await sendMessage(b, { roomId: room, text: 'not joined yet' }), { error: 'not a member' });
    await a.inbox.none('messageReceived', { text: 'not joined yet' }, 300);
    assert.equal(await joinChat(b, alice.id), room);
    const sent = await sendOk(b, { roomId: room, text: 'joined now' });
    await a.inbox.wait('messageReceived', { id: sent.id, text: 'joined now' });
  });

  test('typing reaches the other user only, never the sender\'s tabs', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a1 = await connectAs(gw[0], alice, {}, t);
    const a2 = await connectAs(gw[2], alice, {}, t);
    const b = await connectAs(gw[1], bob, {}, t);
    const room = await joinChat(a1, bob.id);
    await joinChat(a2, bob.id);
    await joinChat(b, alice.id);

    a1.emit('typing', { targetUserId: bob.id });
    const typing = await b.inbox.wait('showTyping');
    assert.deepEqual(
      { roomId: typing.roomId, userId: typing.userId, firstName: typing.firstName },
      { roomId: room, userId: alice.id, firstName: 'Alice' },
    );

    b.emit('typing', { roomId: room });
    for (const s of [a1, a2]) await s.inbox.wait('showTyping', { roomId: room, userId: bob.id, firstName: 'Bob' });

    await sleep(400);
    assert.equal(a1.inbox.all('showTyping', { userId: alice.id }).length, 0, 'Alice saw her own typing');
    assert.equal(a2.inbox.all('showTyping', { userId: alice.id }).length, 0, 'Alice\'s other tab saw her typing');
    assert.equal(b.inbox.all('showTyping', { userId: bob.id }).length, 0, 'Bob saw his own typing');
    assert.equal(b.inbox.all('showTyping').length, 1, 'Bob saw one typing event');
  });

  test('presence: online at the first socket anywhere, offline after the last; getOnline', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connectAs(gw[0], alice, {}, t);
    const room = await joinChat(a, bob.id);
    assert.deepEqual(await ack(a, 'getOnline', { roomId: room }), { online: [alice.id] });

    // Bob (never connected before) connects on another node
    const b1 = await connectAs(gw[1], bob, {}, t);
    await a.inbox.wait('presence', { userId: bob.id, online: true });
    const online = await ack(a, 'getOnline', { roomId: room });
    assert.deepEqual([...online.online].sort(), [alice.id, bob.id].sort());

    // more tabs, on the same node and on a third one: not a new "online"
    const b2 = await connectAs(gw[2], bob, {}, t);
    const b3 = await connectAs(gw[1], bob, { transports: ['websocket'] }, t);
    await a.inbox.none('presence', { userId: bob.id }, 600);

    // closing two of three tabs: still online
    closeClient(b1);
    closeClient(b2);
    await a.inbox.none('presence', { userId: bob.id }, 800);
    assert.deepEqual([...(await ack(a, 'getOnline', { roomId: room })).online].sort(), [alice.id, bob.id].sort());

    // the last one
    closeClient(b3);
    await a.inbox.wait('presence', { userId: bob.id, online: false });
    assert.deepEqual(await ack(a, 'getOnline', { roomId: room }), { online: [alice.id] });

    // and back
    await connectAs(gw[0], bob, {}, t);
    await a.inbox.wait('presence', { userId: bob.id, online: true });
  });

  test('presence survives a flushed Lua script cache (EVALSHA falls back to EVAL)', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connectAs(gw[0], alice, {}, t);
    const room = await joinChat(a, bob.id);
    // the gateways run their presence scripts by hash; an operator (or a
    // failover to a fresh replica) empties the cache
    await cl.redis.command('SCRIPT', 'FLUSH'); // every node of a Redis Cluster
    const b = await connectAs(gw[1], bob, {}, t);
    await a.inbox.wait('presence', { userId: bob.id, online: true });
    assert.deepEqual([...(await ack(a, 'getOnline', { roomId: room })).online].sort(), [alice.id, bob.id].sort());
    // the scripts were loaded again: the offline one runs by hash
    closeClient(b);
    await a.inbox.wait('presence', { userId: bob.id, online: false });
  });

  test('getOnline only for rooms the socket joined', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connectAs(gw[0], alice, {}, t);
    const room = await joinChat(a, bob.id);
    const b = await connectAs(gw[1], bob, {}, t);
    assert.deepEqual(await ack(b, 'getOnline', { roomId: room }), { error: 'not a member' });
  });

  test('a user with three tabs on two nodes gets each message once per tab, in order', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connectAs(gw[2], alice, {}, t);
    const b1 = await connectAs(gw[0], bob, {}, t);
    const b2 = await connectAs(gw[1], bob, { transports: ['websocket'] }, t);
    const b3 = await connectAs(gw[0], bob, { transports: ['polling'] }, t); // same node as tab 1
    const room = await joinChat(a, bob.id);
    await joinChat(b1, alice.id);
    await joinChat(b2, alice.id);
    await joinChat(b3, alice.id);

    const acks = await Promise.all(
      Array.from({ length: 20 }, (_, i) => sendMessage(a, { roomId: room, text: `m${i}`, clientMsgId: `k${i}` })),
    );
    for (const r of acks) assert.ok(r && !r.error && r.id, `ack ${JSON.stringify(r)}`);
    const ids = acks.map((r) => r.id);
    assert.equal(new Set(ids).size, 20, 'message ids are not unique');
    for (const s of [a, b1, b2, b3]) {
      await until(() => s.inbox.all('messageReceived').length >= 20, 5000, '20 messages');
    }
    await sleep(300);
    for (const [name, s] of [['alice', a], ['bob tab 1', b1], ['bob tab 2', b2], ['bob tab 3', b3]]) {
      const got = s.inbox.all('messageReceived');
      assert.deepEqual(got.map((m) => m.id), ids, `${name}: ids, once each, in send order`);
      assert.deepEqual(got.map((m) => m.text), ids.map((_, i) => `m${i}`));
      assert.deepEqual(got.map((m) => m.clientMsgId), ids.map((_, i) => `k${i}`));
    }
  });

  test('leaveChat and leaveRoom stop delivery to that socket', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connectAs(gw[0], alice, {}, t);
    const b = await connectAs(gw[1], bob, {}, t);
    const room = await joinChat(a, bob.id);
    await joinChat(b, alice.id);

    assert.deepEqual(await ack(b, 'leaveChat', { targetUserId: alice.id }), { ok: true });
    const m1 = await sendOk(a, { roomId: room, text: 'after leaveChat' });
    await a.inbox.wait('messageReceived', { id: m1.id });
    await b.inbox.none('messageReceived', { id: m1.id }, 500);
    assert.deepEqual(await sendMessage(b, { roomId: room, text: 'x' }), { error: 'not a member' });

    await joinChat(b, alice.id);
    const m2 = await sendOk(a, { roomId: room, text: 'rejoined' });
    await b.inbox.wait('messageReceived', { id: m2.id });

    assert.deepEqual(await ack(b, 'leaveRoom', { roomId: room }), { ok: true });
    const m3 = await sendOk(a, { roomId: room, text: 'after leaveRoom' });
    await a.inbox.wait('messageReceived', { id: m3.id });
    await b.inbox.none('messageReceived', { id: m3.id }, 500);
  });

  test('a node keeps a room channel subscribed only while it has local members', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connectAs(gw[0], alice, {}, t);
    const b = await connectAs(gw[1], bob, {}, t);
    const room = await joinChat(a, bob.id);
    await joinChat(b, alice.id);
    const roomChannels = async () =>
      (await cl.redis.command('PUBSUB', 'CHANNELS', '*')).filter((c) => c.includes(room));
    const channels = await roomChannels();
    if (channels.length === 0) {
      t.diagnostic(`no Redis channel name contains the room id ${room}; subscription check skipped`);
      return;
    }
    const subscribers = async () =>
      (await cl.redis.command('PUBSUB', 'NUMSUB', ...channels)).filter((_, i) => i % 2 === 1).reduce((x, y) => x + y, 0);
    assert.equal(await subscribers(), 2, `two nodes subscribed to ${channels}`);
    await ack(b, 'leaveRoom', { roomId: room });
    await until(async () => (await subscribers()) === 1, 3000, 'one subscriber after Bob left');
    closeClient(a);
    await until(async () => (await subscribers()) === 0, 3000, 'no subscriber after Alice disconnected');
  });

  describe('through HAProxy', () => {
    test('default transports: polling, then the upgrade; the io_lb cookie keeps the session on one gateway', T, async (t) => {
      const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
      // withCredentials: the node client keeps cookies as a browser does
      const a = chatClient(cl.url, { token: alice.token, withCredentials: true }, t);
      const b = chatClient(cl.url, { token: bob.token, withCredentials: true }, t);
      const upgrades = [a, b].map(
        (s) => new Promise((resolve) => s.io.engine.once('upgrade', (tr) => resolve(tr.name))),
      );
      await Promise.all([connected(a), connected(b)]);
      const room = await joinChat(a, bob.id);
      assert.equal(await joinChat(b, alice.id), room);
      const m1 = await sendOk(a, { targetUserId: bob.id, text: 'via lb' });
      await b.inbox.wait('messageReceived', { id: m1.id, firstName: 'Alice', text: 'via lb' });
      assert.deepEqual(await Promise.all(upgrades), ['websocket', 'websocket']);
      for (const s of [a, b]) {
        const jar = new Map(s.io.engine._cookieJar ? [...s.io.engine._cookieJar.cookies] : []);
        assert.match(jar.get('io_lb')?.value ?? '', /^gw\d$/, 'no io_lb cookie from HAProxy');
      }
      const m2 = await sendOk(b, { roomId: room, text: 'after upgrade' });
      await a.inbox.wait('messageReceived', { id: m2.id, firstName: 'Bob', text: 'after upgrade' });
      assert.equal(a.io.engine.transport.name, 'websocket');
    });

    test('default transports without cookies (the sid keeps the session on its gateway)', T, async (t) => {
      const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
      const a = await connectAs(cl.url, alice, {}, t);
      const b = await connectAs(cl.url, bob, {}, t);
      const room = await joinChat(a, bob.id);
      await joinChat(b, alice.id);
      for (let i = 0; i < 5; i++) {
        const m = await sendOk(i % 2 ? b : a, { roomId: room, text: `n${i}` });
        for (const s of [a, b]) await s.inbox.wait('messageReceived', { id: m.id, text: `n${i}` });
      }
    });

    for (const withCredentials of [true, false]) {
      test(`transports: ['polling'] ${withCredentials ? 'with' : 'without'} cookies: chat both ways, no upgrade`, T, async (t) => {
        const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
        const opts = { transports: ['polling'], withCredentials };
        const a = await connectAs(cl.url, alice, opts, t);
        const b = await connectAs(cl.url, bob, opts, t);
        const room = await joinChat(a, bob.id);
        await joinChat(b, alice.id);
        const acks = [];
        for (let i = 0; i < 10; i++) acks.push(sendMessage(i % 2 ? b : a, { roomId: room, text: `p${i}` }));
        const ids = (await Promise.all(acks)).map((r) => {
          assert.ok(r && r.id, `ack ${JSON.stringify(r)}`);
          return r.id;
        });
        for (const s of [a, b]) {
          await until(() => s.inbox.all('messageReceived').length >= 10, 8000, '10 messages over polling');
          assert.deepEqual(new Set(s.inbox.all('messageReceived').map((m) => m.id)), new Set(ids));
        }
        // the server pushes while a GET is parked
        await sleep(300);
        const late = await sendOk(a, { roomId: room, text: 'late' });
        await b.inbox.wait('messageReceived', { id: late.id });
        assert.equal(a.io.engine.transport.name, 'polling');
        assert.equal(b.io.engine.transport.name, 'polling');
      });
    }

    test('raw polling: every request of a session reaches its gateway, by cookie or by sid', T, async () => {
      const [alice] = await makeUsers(cl, 'Alice');
      const base = `${cl.url}/socket.io/?EIO=4&transport=polling`;
      for (const by of ['cookie', 'sid']) {
        const hs = await httpRequest(base);
        assert.equal(hs.status, 200, hs.text);
        const cookie = (hs.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]).find((c) => c.startsWith('io_lb='));
        assert.ok(cookie, `no io_lb cookie: ${JSON.stringify(hs.headers)}`);
        const { sid } = JSON.parse(hs.text.slice(1));
        const headers = by === 'cookie' ? { cookie } : {};
        const url = `${base}&sid=${encodeURIComponent(sid)}`;
        const post = (body) => httpRequest(url, { method: 'POST', body, headers: { ...headers, 'content-type': 'text/plain' } });
        const get = () => httpRequest(url, { headers });
        let res = await post(`40${JSON.stringify({ token: alice.token })}`);
        assert.equal(res.status, 200, `CONNECT POST (${by}): ${res.status} ${res.text}`);
        res = await get();
        assert.match(res.text, /^40\{"sid":/, `CONNECT answer (${by})`);
        for (let i = 0; i < 6; i++) {
          res = await post(`42${i}["getOnline",{"roomId":"nope-${i}"}]`);
          assert.equal(res.status, 200, `POST ${i} (${by}): ${res.status} ${res.text}`);
          res = await get();
          assert.equal(res.status, 200, `GET ${i} (${by}): ${res.status} ${res.text}`);
          assert.ok(res.text.startsWith(`43${i}[`), `GET ${i} (${by}): ${res.text}`);
        }
        await post('1');
      }
    });

    test('websocket-only clients through HAProxy chat with clients on the gateways directly', T, async (t) => {
      const [alice, bob, carol] = await makeUsers(cl, 'Alice', 'Bob', 'Carol');
      const a = await connectAs(cl.url, alice, { transports: ['websocket'] }, t);
      const b = await connectAs(gw[1], bob, {}, t);
      const c = await connectAs(cl.url, carol, { transports: ['websocket'] }, t);
      const ab = await joinChat(a, bob.id);
      await joinChat(b, alice.id);
      const m = await sendOk(b, { roomId: ab, text: 'to the lb' });
      await a.inbox.wait('messageReceived', { id: m.id, userId: bob.id });
      await c.inbox.none('messageReceived', {}, 300);
      assert.equal((await emitAck(a, 'getOnline', [{ roomId: ab }]))[0].online.length, 2);
    });
  });
});
