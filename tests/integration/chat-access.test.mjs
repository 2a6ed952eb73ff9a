// Access ends when it should (issue 10, points 7 and 10): a live socket is
// disconnected at its token's exp with a reason the app can see, and nothing
// it sends afterwards is stored; a token whose nbf is in the future is
// refused by the gateway and by storage's API; the rate limit is the user's,
// across all its sockets and the gateway's worker threads, not each
// connection's. Real Redis, PostgreSQL, chat-storage, two gateways (two
// workers each) and HAProxy.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closeAllClients, emitAck } from './lib/client.mjs';
import { connectError, makeUsers } from './lib/chat.mjs';
import { api, signToken, startCluster } from './lib/stack.mjs';
import { connectStored, history, sendStored } from './lib/storage-chat.mjs';

const T = { timeout: 45000 };
const RATE = 20; // --rate-limit (the default)
const BURST = 40; // --rate-burst (the default)

after(() => closeAllClients());

describe('access ends when it should', () => {
  let cl;
  before(async () => {
    cl = await startCluster({
      gateways: 2,
      workers: 2,
      storage: true,
      pgFast: true,
      args: ['--rate-limit', String(RATE), '--rate-burst', String(BURST)],
    });
  });
  after(() => cl?.stop());

  const nowS = () => Math.floor(Date.now() / 1000);

  test('a live socket is disconnected at its token\'s exp ("token expired", "io server disconnect"); nothing after is stored', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const b = await connectStored(cl.gateways[1].url, bob, { transports: ['websocket'] }, t);
    const exp = nowS() + 3; // at least 2 s ahead
    const short = { ...alice, token: signToken({ sub: alice.id, name: 'Alice', iat: nowS(), exp }, cl.secret) };
    // one socket per transport, directly and through HAProxy
    const sockets = [
      await connectStored(cl.gateways[0].url, short, { transports: ['websocket'] }, t),
      await connectStored(cl.gateways[0].url, short, { transports: ['polling'] }, t),
      await connectStored(cl.url, short, { transports: ['polling', 'websocket'] }, t),
    ];
    const ends = sockets.map((s) => {
      const seen = { errors: [], reason: null, at: null, errorsBefore: null };
      s.on('chatError', (e) => seen.errors.push({ ...e, at: Date.now() }));
      seen.done = new Promise((resolve) =>
        s.once('disconnect', (reason) => {
          seen.reason = reason;
          seen.at = Date.now();
          seen.errorsBefore = seen.errors.length;
          resolve();
        }),
      );
      return seen;
    });
    const before = await sendStored(sockets[0], { targetUserId: bob.id, text: 'before exp' });
    const room = before.roomId;
    // keep sending from every socket until each is gone (or 3 s past exp)
    const acks = [];
    let stop = false;
    const senders = sockets.map(async (s, i) => {
      for (let n = 0; !stop && s.connected; n++) {
        const p = emitAck(s, 'sendMessage', [{ roomId: room, text: `s${i} #${n}` }], 15000)
          .then(([res]) => acks.push({ res, at: Date.now() }))
          .catch(() => {});
        void p;
        await new Promise((r) => setTimeout(r, 100));
      }
    });
    const deadline = (exp + 3) * 1000 - Date.now();
    await Promise.race([
      Promise.all(ends.map((e) => e.done)),
      new Promise((r) => setTimeout(r, deadline)),
    ]);
    stop = true;
    await Promise.all(senders);
    for (const [i, e] of ends.entries()) {
      assert.equal(e.reason, 'io server disconnect', `socket ${i} was not disconnected by the server at exp (reason ${e.reason})`);
      assert.ok(e.at >= exp * 1000 - 50, `socket ${i} disconnected ${exp * 1000 - e.at} ms before exp`);
      assert.ok(e.at <= exp * 1000 + 1500, `socket ${i} disconnected ${e.at - exp * 1000} ms after exp`);
      assert.ok(
        ends[i].errors.slice(0, e.errorsBefore).some((x) => x.error === 'token expired'),
        `socket ${i} did not hear why: ${JSON.stringify(e.errors)}`,
      );
      // socket.io-client does not reconnect after a server disconnect
      assert.equal(sockets[i].active, false);
    }
    // the app reconnects with the old token: refused; with a fresh one: fine
    assert.equal((await connectError(cl.gateways[0].url, { token: short.token }, t)).message, 'unauthorized');
    const again = await connectStored(cl.gateways[0].url, alice, { transports: ['websocket'] }, t);
    const fresh = await sendStored(again, { roomId: room, text: 'with a fresh token' });
    // nothing stored after exp; everything acked is stored
    const msgs = await history(cl.apiUrl, bob, room);
    const late = msgs.filter((m) => m.id !== fresh.id && Date.parse(m.createdAt) >= exp * 1000);
    assert.deepEqual(late.map((m) => `${m.text} at ${m.createdAt}`), [], 'stored after the token expired');
    const ids = new Set(msgs.map((m) => m.id));
    for (const { res } of acks) if (res && !res.error) assert.ok(ids.has(res.id), `acked but not stored: ${JSON.stringify(res)}`);
    assert.ok(acks.some(({ res }) => res && !res.error), 'nothing was sent before exp');
    // Bob's socket (a long-lived token) is untouched
    assert.ok(b.connected);
  });

  test('a token not valid before a later time (nbf) is refused by the gateway and the API; once valid it works', T, async (t) => {
    const [dave] = await makeUsers(cl, 'Dave');
    const now = nowS();
    const early = signToken({ sub: dave.id, name: 'Dave', iat: now, nbf: now + 60, exp: now + 3600 }, cl.secret);
    for (const transports of [['polling'], ['websocket']]) {
      assert.equal((await connectError(cl.gateways[0].url, { token: early, transports }, t)).message, 'unauthorized');
    }
    const res = await api(cl.apiUrl, early, 'GET', '/api/rooms');
    assert.equal(res.status, 401, `${res.status} ${res.text}`);
    const valid = signToken({ sub: dave.id, name: 'Dave', iat: now, nbf: now - 1, exp: now + 3600 }, cl.secret);
    await connectStored(cl.gateways[0].url, { ...dave, token: valid }, { transports: ['websocket'] }, t);
    assert.equal((await api(cl.apiUrl, valid, 'GET', '/api/rooms')).status, 200);
  });

  test(`the rate limit is per user: 20 sockets of one user on one gateway get ${BURST} + ${RATE}/s together; another user is unaffected`, T, async (t) => {
    const [erin, frank] = await makeUsers(cl, 'Erin', 'Frank');
    const url = cl.gateways[0].url; // two worker threads
    const socks = await Promise.all(
      Array.from({ length: 20 }, () => connectStored(url, erin, { transports: ['websocket'] }, t)),
    );
    const f = await connectStored(url, frank, { transports: ['websocket'] }, t);
    await new Promise((r) => setTimeout(r, (1000 * BURST) / RATE + 100)); // buckets full again
    const started = Date.now();
    const pending = [];
    // as fast as possible for one second: 10 per socket every 100 ms
    while (Date.now() - started < 1000) {
      for (const s of socks)
        for (let k = 0; k < 10; k++)
          pending.push(emitAck(s, 'sendMessage', [{ targetUserId: frank.id, text: `flood ${pending.length}` }], 20000).then(([r]) => r));
      await new Promise((r) => setTimeout(r, 100));
    }
    const acks = await Promise.all(pending);
    const elapsed = (Date.now() - started) / 1000;
    const ok = acks.filter((r) => r && r.id && !r.error);
    const limited = acks.filter((r) => r && r.error === 'rate limited');
    assert.equal(ok.length + limited.length, acks.length, `other answers: ${JSON.stringify(acks.filter((r) => !r || (r.error && r.error !== 'rate limited')).slice(0, 5))}`);
    const bound = BURST + RATE * elapsed + 2;
    assert.ok(ok.length <= bound, `${ok.length} of ${acks.length} accepted in ${elapsed} s from 20 sockets of one user (bound ${bound})`);
    assert.ok(ok.length >= BURST - 1, `only ${ok.length} accepted`);
    // Frank, on the same gateway and workers, is not limited by Erin
    for (let i = 0; i < 10; i++) await sendStored(f, { targetUserId: erin.id, text: `frank ${i}` });
  });
});
