// What the joinChat ack means with storage (docs/storage.md "Stream
// entries", proto/PROTOCOL.md): the room exists for every API once the ack
// came, so a frontend that loads the history in the join callback (what
// every tutorial does) gets 200, not "not a member". Real Redis,
// PostgreSQL, one chat-storage and two gateways behind HAProxy, which also
// routes /api/ to storage, as users reach them.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closeAllClients } from './lib/client.mjs';
import { sleep } from './lib/harness.mjs';
import { makeUsers } from './lib/chat.mjs';
import { api, startCluster } from './lib/stack.mjs';
import { connectStored, history, request } from './lib/storage-chat.mjs';
import { pollData, pollingHandshake, push, SEP } from './lib/eio.mjs';

const T = { timeout: 60000 };
const JOIN_TIMEOUT = 1000; // --join-timeout of the gateways

after(() => closeAllClients());

describe('joinChat with storage', () => {
  let cl;
  before(async () => {
    cl = await startCluster({
      gateways: 2,
      storage: true,
      pgFast: true,
      gatewayArgs: () => ['--join-timeout', String(JOIN_TIMEOUT)],
    });
  });
  after(() => cl?.stop());

  // joinChat, and in its ack callback GET the room's history, as a
  // frontend does: resolves to {ack, status, json}.
  const joinThenHistory = (socket, user, targetUserId) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('joinChat: no ack')), 15000);
      socket.emit('joinChat', { targetUserId }, (ack) => {
        clearTimeout(timer);
        if (!ack || typeof ack.roomId !== 'string') {
          resolve({ ack });
          return;
        }
        api(cl.url, user.token, 'GET', `/api/rooms/${encodeURIComponent(ack.roomId)}/messages?limit=50`).then(
          (res) => resolve({ ack, status: res.status, json: res.json, text: res.text }),
          reject,
        );
      });
    });

  test('history in the joinChat callback of a brand-new direct room is 200 (40 pairs at once)', T, async (t) => {
    const pairs = await Promise.all(Array.from({ length: 40 }, () => makeUsers(cl, 'Alice', 'Bob')));
    const sockets = await Promise.all(
      pairs.map(([alice], i) => connectStored(cl.url, alice, i % 2 ? {} : { transports: ['websocket'] }, t)),
    );
    const results = await Promise.all(pairs.map(([alice, bob], i) => joinThenHistory(sockets[i], alice, bob.id)));
    const bad = results.filter((r) => r.status !== 200);
    assert.deepEqual(
      bad.map((r) => ({ ack: r.ack, status: r.status, text: r.text?.slice(0, 200) })),
      [],
      `${bad.length} of ${results.length} joinChat callbacks got no history`,
    );
    for (const r of results) assert.deepEqual(r.json.messages, [], 'a brand-new room has no messages');
    // the peer can read it too: the room and both members were committed
    const [[, bob]] = pairs;
    const peer = await api(cl.url, bob.token, 'GET', `/api/rooms/${encodeURIComponent(results[0].ack.roomId)}/messages`);
    assert.equal(peer.status, 200, peer.text);
  });

  test('joinChat answers unavailable when storage does not commit the room in time, and works again after', T, async (t) => {
    const [alice, bob, carol] = await makeUsers(cl, 'Alice', 'Bob', 'Carol');
    const a = await connectStored(cl.url, alice, { transports: ['websocket'] }, t);
    const st = cl.storage[0];
    process.kill(st.pid, 'SIGSTOP');
    let resumed = false;
    const resume = () => {
      if (!resumed) process.kill(st.pid, 'SIGCONT');
      resumed = true;
    };
    t.after(resume);
    const t0 = Date.now();
    const ack = await request(a, 'joinChat', { targetUserId: bob.id }, 15000);
    const took = Date.now() - t0;
    resume();
    assert.deepEqual(ack, { error: 'unavailable' }, 'no success ack for a room that was not committed');
    assert.ok(took >= JOIN_TIMEOUT - 50 && took < JOIN_TIMEOUT + 5000, `answered after ${took} ms`);
    // HAProxy may have marked the stopped storage down (its /readyz checks
    // timed out, as they should): the API is served again once two checks
    // pass
    const deadline = Date.now() + 15000;
    while ((await api(cl.url, alice.token, 'GET', '/api/rooms')).status === 503 && Date.now() < deadline) await sleep(200);
    // storage is back: the next join is acked once committed, and the late
    // answer to the first one changed nothing
    const r = await joinThenHistory(a, alice, carol.id);
    assert.equal(r.status, 200, `${JSON.stringify(r.ack)} ${r.text}`);
    const again = await joinThenHistory(a, alice, bob.id);
    assert.equal(again.status, 200, `${JSON.stringify(again.ack)} ${again.text}`);
  });
  // Sends that wait for a brand-new room's subscription go on in the order
  // the client sent them (they used to be released last-first). Ten events
  // in one polling POST are handled in one go, before Redis confirms the
  // room's SUBSCRIBE.
  test('ten sends in one payload to a brand-new direct room are stored in the order sent', T, async () => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const gw = { url: cl.gateways[0].url };
    const { sid } = await pollingHandshake(gw, '/socket.io/');
    assert.equal((await push(gw, '/socket.io/', sid, `40${JSON.stringify({ token: alice.token })}`)).status, 200);
    let got = [];
    const until = async (pred) => {
      const deadline = Date.now() + 15000;
      while (!pred() && Date.now() < deadline) got = got.concat((await pollData(gw, '/socket.io/', sid, 5000)).split(SEP));
      assert.ok(pred(), `raw polling: got ${JSON.stringify(got).slice(0, 400)}`);
    };
    await until(() => got.some((p) => p.startsWith('40{')));
    const texts = Array.from({ length: 10 }, (_, i) => `first #${i}`);
    const body = texts.map((text, i) => `42${i + 1}${JSON.stringify(['sendMessage', { targetUserId: bob.id, text }])}`).join(SEP);
    assert.equal((await push(gw, '/socket.io/', sid, body)).status, 200);
    const ack = (i) => got.find((p) => p.startsWith(`43${i + 1}[`));
    await until(() => texts.every((_, i) => ack(i)));
    const acks = texts.map((_, i) => JSON.parse(ack(i).slice(`43${i + 1}`.length))[0]);
    assert.ok(acks.every((x) => x?.seq), `not all stored: ${JSON.stringify(acks)}`);
    assert.deepEqual(acks.map((x) => x.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'stored out of the order sent');
    assert.deepEqual((await history(cl.apiUrl, alice, acks[0].roomId)).map((m) => m.text), texts);
  });
});
