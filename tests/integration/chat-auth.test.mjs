// Authentication and authorisation of the chat application (--auth jwt):
// bad tokens are refused with connect_error "unauthorized"; the token may
// come in the CONNECT auth payload, an Authorization header or a cookie;
// identity comes from the token only; a third user can neither join nor
// read nor post to a direct room of two others; rate limits, text size and
// invalid payloads are answered with error acks and the connection stays.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sleep, until } from './lib/harness.mjs';
import { closeAllClients, connected } from './lib/client.mjs';
import {
  ack,
  chatClient,
  connectAs,
  connectChat,
  connectError,
  joinChat,
  makeUsers,
  sendMessage,
  sendOk,
} from './lib/chat.mjs';
import { badTokens, signToken, startCluster } from './lib/stack.mjs';

const T = { timeout: 20000 };
const RATE = 5; // --rate-limit of the first gateway
const BURST = 10; // --rate-burst of the first gateway
const MAX_TEXT = 100; // --max-text-length

after(() => closeAllClients());

describe('chat authentication and authorisation', () => {
  let cl;
  let gw;
  before(async () => {
    cl = await startCluster({
      gateways: 2,
      args: ['--max-text-length', String(MAX_TEXT)],
      // a tight rate limit on the first gateway only
      gatewayArgs: (i) => (i === 0 ? ['--rate-limit', String(RATE), '--rate-burst', String(BURST)] : []),
    });
    gw = cl.gateways.map((g) => g.url);
  });
  after(() => cl?.stop());

  /** The identity the gateway gave `socket`: the userId/firstName of its own message. */
  async function identity(socket) {
    await joinChat(socket, 'probe-peer');
    const sent = await sendOk(socket, { targetUserId: 'probe-peer', text: 'who am I' });
    const m = await socket.inbox.wait('messageReceived', { id: sent.id });
    return { userId: m.userId, firstName: m.firstName };
  }

  describe('tokens', () => {
    test('no token → connect_error "unauthorized"', T, async (t) => {
      for (const transports of [['polling'], ['websocket']]) {
        const err = await connectError(gw[0], { transports }, t);
        assert.equal(err.message, 'unauthorized', `${transports}: ${err.message}`);
      }
      const err = await connectError(gw[0], { auth: { notToken: 'x' } }, t);
      assert.equal(err.message, 'unauthorized');
    });

    const bad = badTokens('mallory', 'Mallory');
    for (const [what, token] of Object.entries(bad)) {
      test(`${what} token in auth → connect_error "unauthorized"`, T, async (t) => {
        const err = await connectError(gw[0], { token }, t);
        assert.equal(err.message, 'unauthorized');
      });
    }

    test('non-string tokens in auth → "unauthorized"', T, async (t) => {
      for (const token of [42, null, { sub: 'alice' }, ['a.b.c']]) {
        const err = await connectError(gw[1], { auth: { token } }, t);
        assert.equal(err.message, 'unauthorized', `token ${JSON.stringify(token)}`);
      }
    });

    test('bad tokens in the Authorization header and the token cookie → "unauthorized"', T, async (t) => {
      for (const transports of [['polling'], ['websocket']]) {
        for (const headers of [
          { authorization: `Bearer ${bad.expired}` },
          { authorization: `Bearer ${bad['alg none']}` },
          { authorization: `Bearer ${bad['wrong secret']}` },
          { authorization: 'Basic YWxpY2U6c2VjcmV0' },
          { authorization: 'Bearer' },
          { cookie: `token=${bad.expired}` },
          { cookie: `token=${bad['wrong secret']}; other=1` },
        ]) {
          const err = await connectError(gw[0], { transports, extraHeaders: headers }, t);
          assert.equal(err.message, 'unauthorized', `${transports} ${JSON.stringify(headers)}`);
        }
      }
    });

    test('a token that is valid except for its expiry a second ago is refused', T, async (t) => {
      const now = Math.floor(Date.now() / 1000);
      const token = signToken({ sub: 'late', name: 'Late', iat: now - 60, exp: now - 1 }, cl.secret);
      assert.equal((await connectError(gw[0], { token }, t)).message, 'unauthorized');
      const fresh = signToken({ sub: 'late', name: 'Late', iat: now, exp: now + 60 }, cl.secret);
      const s = await connectChat(gw[0], { token: fresh }, t);
      assert.deepEqual(await identity(s), { userId: 'late', firstName: 'Late' });
    });

    test('the token in the auth payload, over polling and websocket, directly and through HAProxy', T, async (t) => {
      const [alice] = await makeUsers(cl, 'Alice');
      for (const url of [gw[0], cl.url]) {
        for (const transports of [['polling'], ['websocket'], ['polling', 'websocket']]) {
          const s = await connectAs(url, alice, { transports }, t);
          assert.deepEqual(await identity(s), { userId: alice.id, firstName: 'Alice' }, `${url} ${transports}`);
          s.disconnect();
        }
      }
    });

    test('the token in an Authorization: Bearer header (extraHeaders)', T, async (t) => {
      const [bob] = await makeUsers(cl, 'Bob');
      for (const url of [gw[1], cl.url]) {
        for (const transports of [['polling'], ['websocket'], ['polling', 'websocket']]) {
          const s = await connectChat(url, { transports, extraHeaders: { authorization: `Bearer ${bob.token}` } }, t);
          assert.deepEqual(await identity(s), { userId: bob.id, firstName: 'Bob' }, `${url} ${transports}`);
          s.disconnect();
        }
      }
    });

    test('the token in a "token" cookie, among other cookies (and HAProxy\'s own)', T, async (t) => {
      const [carol] = await makeUsers(cl, 'Carol');
      for (const url of [gw[0], cl.url]) {
        for (const transports of [['polling'], ['websocket'], ['polling', 'websocket']]) {
          const s = await connectChat(
            url,
            { transports, withCredentials: true, extraHeaders: { cookie: `theme=dark; token=${carol.token}; lang=en` } },
            t,
          );
          assert.deepEqual(await identity(s), { userId: carol.id, firstName: 'Carol' }, `${url} ${transports}`);
          s.disconnect();
        }
      }
    });
  });

  describe('rooms belong to their two users', () => {
    test('Carol can neither join, post to nor read the room of Alice and Bob', T, async (t) => {
      const [alice, bob, carol] = await makeUsers(cl, 'Alice', 'Bob', 'Carol');
      const a = await connectAs(gw[0], alice, {}, t);
      const b = await connectAs(gw[1], bob, {}, t);
      const c = await connectAs(gw[0], carol, {}, t);
      const c2 = await connectAs(gw[1], carol, { transports: ['polling'] }, t);
      const room = await joinChat(a, bob.id);
      await joinChat(b, alice.id);

      // joining "with Alice" or "with Bob" gives Carol her own rooms
      const ca = await joinChat(c, alice.id);
      const cb = await joinChat(c2, bob.id);
      assert.notEqual(ca, room);
      assert.notEqual(cb, room);
      assert.notEqual(ca, cb);
      // payload fields cannot pick the room or the identity
      assert.equal(await joinChat(c, bob.id), cb);
      const forgedJoin = await ack(c, 'joinChat', { targetUserId: bob.id, userId: alice.id, roomId: room });
      assert.equal(forgedJoin.roomId, cb);

      // posting to their room by id
      for (const s of [c, c2]) {
        assert.deepEqual(await sendMessage(s, { roomId: room, text: 'intrusion' }), { error: 'not a member' });
        assert.deepEqual(await sendMessage(s, { roomId: room, text: 'intrusion', userId: alice.id }), {
          error: 'not a member',
        });
      }
      assert.deepEqual(await ack(c, 'getOnline', { roomId: room }), { error: 'not a member' });
      c.emit('typing', { roomId: room });
      const left = await ack(c, 'leaveRoom', { roomId: room });
      assert.ok(left && (left.ok === true || left.error), `leaveRoom ack ${JSON.stringify(left)}`);

      // Alice and Bob talk; Carol sees nothing of it
      const m1 = await sendOk(a, { roomId: room, text: 'secret 1' });
      const m2 = await sendOk(b, { targetUserId: alice.id, text: 'secret 2' });
      for (const s of [a, b]) {
        await s.inbox.wait('messageReceived', { id: m1.id });
        await s.inbox.wait('messageReceived', { id: m2.id });
      }
      await sleep(400);
      for (const s of [a, b]) {
        assert.equal(s.inbox.all('messageReceived', { text: 'intrusion' }).length, 0);
        assert.equal(s.inbox.all('showTyping', { userId: carol.id }).length, 0);
      }
      for (const s of [c, c2]) {
        assert.deepEqual(s.inbox.all('messageReceived'), [], 'Carol received messages');
        assert.deepEqual(s.inbox.all('showTyping'), [], 'Carol received typing');
      }
      assert.equal(
        c.inbox.all('presence').filter((p) => p.userId === alice.id || p.userId === bob.id).length,
        0,
        'Carol learnt the presence of Alice or Bob from their room',
      );
    });

    test('a forged userId/firstName in the payload changes nothing: the token is the identity', T, async (t) => {
      const [alice, bob, carol] = await makeUsers(cl, 'Alice', 'Bob', 'Carol');
      const a = await connectAs(gw[0], alice, {}, t);
      const b = await connectAs(gw[1], bob, {}, t);
      const c = await connectAs(gw[1], carol, {}, t);
      const ab = await joinChat(a, bob.id);
      await joinChat(b, alice.id);
      const cb = await joinChat(b, carol.id);

      const sent = await sendOk(c, {
        targetUserId: bob.id,
        userId: alice.id,
        firstName: 'Alice',
        lastName: 'Forged',
        text: 'I am Alice',
      });
      assert.equal(sent.roomId, cb);
      const m = await b.inbox.wait('messageReceived', { id: sent.id });
      assert.equal(m.userId, carol.id);
      assert.equal(m.firstName, 'Carol');
      assert.notEqual(m.lastName, 'Forged');
      assert.equal(m.roomId, cb);
      c.emit('typing', { targetUserId: bob.id, userId: alice.id, firstName: 'Alice' });
      const typing = await b.inbox.wait('showTyping', { roomId: cb });
      assert.equal(typing.userId, carol.id);
      assert.equal(typing.firstName, 'Carol');
      await a.inbox.none('messageReceived', { id: sent.id }, 300);
      assert.notEqual(ab, cb);
    });
  });

  describe('limits and bad input', () => {
    test('rate limit: a burst passes, then "rate limited" acks; the connection stays usable', T, async (t) => {
      const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
      const a = await connectAs(gw[0], alice, { transports: ['websocket'] }, t);
      const b = await connectAs(gw[1], bob, {}, t);
      const room = await joinChat(b, alice.id);
      await sleep(1000 * (BURST / RATE) + 100); // any bucket spent by the joins is full again
      const started = Date.now();
      const acks = await Promise.all(
        Array.from({ length: 40 }, (_, i) => sendMessage(a, { targetUserId: bob.id, text: `flood ${i}` })),
      );
      const elapsed = (Date.now() - started) / 1000;
      const ok = acks.filter((r) => r && r.id && !r.error);
      const limited = acks.filter((r) => r && r.error === 'rate limited');
      assert.equal(ok.length + limited.length, 40, `unexpected acks: ${JSON.stringify(acks.filter((r) => !r || (r.error && r.error !== 'rate limited')))}`);
      assert.ok(ok.length >= BURST - 1, `only ${ok.length} of a burst of ${BURST} passed`);
      assert.ok(ok.length <= BURST + Math.ceil(RATE * elapsed) + 1, `${ok.length} passed in ${elapsed} s`);
      assert.ok(limited.length >= 40 - BURST - Math.ceil(RATE * elapsed) - 1);
      // only the accepted ones were delivered
      await until(() => b.inbox.all('messageReceived').length >= ok.length, 5000, 'accepted messages');
      await sleep(300);
      assert.deepEqual(
        new Set(b.inbox.all('messageReceived').map((m) => m.id)),
        new Set(ok.map((r) => r.id)),
      );
      // after a pause, it sends again
      assert.ok(a.connected);
      await sleep(1000 + 1000 / RATE);
      const again = await sendOk(a, { roomId: room, text: 'calm again' });
      await b.inbox.wait('messageReceived', { id: again.id });
    });

    test(`text over --max-text-length (${MAX_TEXT} bytes) → "text too long"; the connection stays`, T, async (t) => {
      const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
      const a = await connectAs(gw[0], alice, {}, t);
      const b = await connectAs(gw[1], bob, {}, t);
      await joinChat(b, alice.id);
      const longs = ['x'.repeat(MAX_TEXT + 1), 'é'.repeat(MAX_TEXT / 2 + 1), 'x'.repeat(100000)];
      for (const text of longs) {
        assert.deepEqual(await sendMessage(a, { targetUserId: bob.id, text }), { error: 'text too long' });
      }
      assert.deepEqual(await sendMessage(a, { targetUserId: bob.id, msg: 'y'.repeat(MAX_TEXT + 1) }), {
        error: 'text too long',
      });
      const fits = [];
      for (const text of ['x'.repeat(MAX_TEXT), 'é'.repeat(MAX_TEXT / 2)]) {
        fits.push(await sendOk(a, { targetUserId: bob.id, text }));
      }
      for (const [i, sent] of fits.entries()) {
        const m = await b.inbox.wait('messageReceived', { id: sent.id });
        assert.equal(Buffer.byteLength(m.text), MAX_TEXT, `message ${i}`);
      }
      await sleep(200);
      assert.equal(b.inbox.all('messageReceived').length, 2, 'a too long message was delivered');
      assert.ok(a.connected);
    });

    test('invalid payloads → "invalid payload" acks; the connection stays usable', T, async (t) => {
      const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
      const a = await connectAs(gw[1], alice, {}, t); // the gateway with the default rate limit
      const b = await connectAs(gw[0], bob, {}, t);
      const room = await joinChat(b, alice.id);
      await joinChat(a, bob.id);
      const cases = [
        ['sendMessage', undefined],
        ['sendMessage', 'hello'],
        ['sendMessage', 42],
        ['sendMessage', null],
        ['sendMessage', []],
        ['sendMessage', {}],
        ['sendMessage', { text: 'no target' }],
        ['sendMessage', { targetUserId: bob.id }],
        ['sendMessage', { targetUserId: bob.id, text: 42 }],
        ['sendMessage', { targetUserId: bob.id, text: { nested: true } }],
        ['sendMessage', { targetUserId: '', text: 'empty id' }],
        ['sendMessage', { targetUserId: 'has space', text: 'bad id' }],
        ['sendMessage', { targetUserId: 'new\nline', text: 'bad id' }],
        ['sendMessage', { targetUserId: 'x'.repeat(129), text: 'long id' }],
        ['sendMessage', { roomId: 5, text: 'numeric room' }],
        ['sendMessage', { roomId: room, text: 'bad clientMsgId', clientMsgId: { a: 1 } }],
        ['joinChat', undefined],
        ['joinChat', bob.id],
        ['joinChat', {}],
        ['joinChat', { targetUserId: '' }],
        ['joinChat', { targetUserId: null }],
        ['joinChat', { targetUserId: ['x'] }],
        ['leaveChat', {}],
        ['leaveRoom', {}],
        ['leaveRoom', { roomId: 7 }],
        ['getOnline', {}],
        ['getOnline', 'room'],
        ['typing', {}],
      ];
      for (const [event, payload] of cases) {
        const res = await ack(a, event, payload);
        assert.deepEqual(res, { error: 'invalid payload' }, `${event} ${JSON.stringify(payload)}`);
      }
      // without an ack callback, and events the application does not know
      a.emit('sendMessage', 'garbage');
      a.emit('sendMessage');
      a.emit('joinChat', 12);
      a.emit('noSuchEvent', { x: 1 });
      a.emit('typing', 'x');
      await sleep(200);
      assert.ok(a.connected, 'the connection was closed');
      const sent = await sendOk(a, { roomId: room, text: 'still here' });
      await b.inbox.wait('messageReceived', { id: sent.id, text: 'still here' });
      await sleep(200);
      assert.equal(b.inbox.all('messageReceived').length, 1, 'an invalid payload was delivered');
      assert.equal(b.inbox.all('showTyping').length, 0);
    });

    test('the logs hold no tokens, no secrets and no message texts', T, async () => {
      for (const gw of cl.gateways) {
        assert.ok(!gw.log.includes(cl.secret), 'the JWT secret is in the log');
        assert.ok(!/eyJ[\w-]{10,}\.[\w-]{10,}/.test(gw.log), 'a token is in the log');
        for (const text of ['secret 1', 'secret 2', 'I am Alice', 'who am I', 'flood 1', 'still here']) {
          assert.ok(!gw.log.includes(text), `message text "${text}" is in the log`);
        }
      }
    });

    test('a refused client does not disturb the others on the same gateway', T, async (t) => {
      const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
      const a = await connectAs(gw[0], alice, {}, t);
      const b = await connectAs(gw[0], bob, {}, t);
      const room = await joinChat(a, bob.id);
      await joinChat(b, alice.id);
      const bads = Array.from({ length: 10 }, () => chatClient(gw[0], { token: 'x.y.z', reconnection: false }, t));
      const sent = await sendOk(a, { roomId: room, text: 'meanwhile' });
      await b.inbox.wait('messageReceived', { id: sent.id });
      await Promise.all(bads.map((s) => connected(s, 3000).then(() => assert.fail('a bad token connected'), () => {})));
    });
  });
});
