// Connection-state recovery (docs/storage.md "Recovery"): real Redis,
// PostgreSQL, chat-storage and two gateways (--storage on,
// --recovery-window 4 s) behind HAProxy. A socket.io-client whose transport
// drops while others keep sending reconnects with its pid and last offset:
// within the window it gets `socket.recovered === true` and every message it
// missed, in each room, exactly once and in order; after the window it gets
// a fresh session (recovered false) and the messages it missed through the
// sync on connect instead. A pid is only good for the user it was issued to.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sleep, until } from './lib/harness.mjs';
import { closeAllClients } from './lib/client.mjs';
import { makeUsers } from './lib/chat.mjs';
import { startCluster } from './lib/stack.mjs';
import {
  assertGotExactly,
  assertStoredAck,
  connectStored,
  createGroup,
  history,
  request,
  sendMany,
  sendStored,
} from './lib/storage-chat.mjs';

const WINDOW_S = 4;
const T = { timeout: 40000 };
const WAIT = 10000;

after(() => closeAllClients());

describe('connection-state recovery', () => {
  let cl;
  before(async () => {
    cl = await startCluster({
      gateways: 2,
      storage: true,
      pgFast: true,
      args: ['--recovery-window', String(WINDOW_S), '--rate-limit', '1000', '--rate-burst', '1000'],
    });
  });
  after(() => cl?.stop());

  /**
   * Alice (on the first gateway) and Bob (through HAProxy, reconnecting
   * `reconnectMs` after a drop) share a direct room and a group (made by an
   * owner who never connects), both opened by both.
   */
  async function setup(t, reconnectMs) {
    const [owner, alice, bob] = await makeUsers(cl, 'Owner', 'Alice', 'Bob');
    const a = await connectStored(cl.gateways[0].url, alice, { transports: ['websocket'] }, t);
    const b = await connectStored(
      cl.lb.url,
      bob,
      { reconnectionDelay: reconnectMs, reconnectionDelayMax: reconnectMs, randomizationFactor: 0 },
      t,
    );
    assert.equal(typeof b._pid, 'string', 'CONNECT without a pid: no recovery');
    // both open the direct room before its first message (storage-status
    // covers a peer who has not)
    const dm = (await request(a, 'joinChat', { targetUserId: bob.id }))?.roomId;
    assert.equal(typeof dm, 'string');
    assert.equal((await request(b, 'joinChat', { targetUserId: alice.id }))?.roomId, dm);
    const first = await sendStored(a, { targetUserId: bob.id, text: 'first', clientMsgId: 'first' });
    assert.equal(first.roomId, dm);
    const { roomId: grp } = await createGroup(cl.apiUrl, owner, 'recovery', [alice.id, bob.id]);
    for (const s of [a, b]) {
      await s.inbox.wait('roomAdded', { roomId: grp }, WAIT);
      assert.equal((await request(s, 'joinRoom', { roomId: grp }))?.roomId, grp);
    }
    const hello = await sendStored(a, { roomId: grp, text: 'hello', clientMsgId: 'hello' });
    await b.inbox.wait('messageReceived', { id: first.id }, WAIT);
    await b.inbox.wait('messageReceived', { id: hello.id }, WAIT);
    return { owner, alice, bob, a, b, dm, grp };
  }

  /** Alice sends `count` messages alternating between the two rooms. */
  function aliceSends(s, count, tag, gapMs) {
    return Promise.all([
      sendMany(s.a, { roomId: s.dm }, count / 2, { tag: `${tag}d`, window: 5, gapMs: gapMs * 2 }),
      sendMany(s.a, { roomId: s.grp }, count / 2, { tag: `${tag}g`, window: 5, gapMs: gapMs * 2 }),
    ]).then((lists) => lists.flat());
  }

  /** Bob got every message of both rooms, each once, in order. */
  async function bobHasEverything(s, sent) {
    for (const r of sent) assertStoredAck(r.ack, `ack of ${r.clientMsgId} (${r.error ?? ''})`);
    for (const room of [s.dm, s.grp]) {
      const hist = await history(cl.apiUrl, s.alice, room);
      await until(
        () => s.b.inbox.all('messageReceived', { roomId: room }).length >= hist.length,
        WAIT,
        `Bob receiving the ${hist.length} messages of ${room}`,
      ).catch(() => {});
      assertGotExactly(s.b, room, hist, `Bob in ${room === s.dm ? 'the direct room' : 'the group'}`);
    }
  }

  test('transport dropped while Alice sends: recovered within the window, every missed message once, in order', T, async (t) => {
    const s = await setup(t, 1000);
    const pid = s.b._pid;
    let droppedAt = null;
    s.b.once('disconnect', () => (droppedAt = Date.now()));
    const sending = aliceSends(s, 120, 'w', 20);
    await sleep(600);
    s.b.io.engine.close(); // the transport goes, the Socket.IO session stays
    await until(() => droppedAt !== null, 2000, 'the disconnect');
    await until(() => s.b.connected, 10000, 'Bob reconnecting');
    const back = s.b.connects.at(-1);
    const sent = await sending;
    assert.equal(s.b.connects.length, 2);
    assert.equal(back.recovered, true, 'reconnected within the window without recovering');
    assert.equal(s.b._pid, pid, 'a recovered session keeps its pid');
    const missed = sent.filter((r) => r.sentAt > droppedAt && r.sentAt < back.at).length;
    t.diagnostic(`away ${back.at - droppedAt} ms; ${missed} messages sent meanwhile`);
    assert.ok(missed >= 10, `only ${missed} messages were sent while Bob was away`);
    assert.ok(sent.some((r) => r.sentAt > back.at + 100), 'nothing was sent after the recovery');
    await bobHasEverything(s, sent);

    // a second drop of the same session recovers again, from the offsets of
    // the replayed and live events
    s.b.io.engine.close();
    await until(() => !s.b.connected, 2000, 'the second disconnect');
    const more = await aliceSends(s, 20, 'x', 10);
    await until(() => s.b.connected, 10000, 'Bob reconnecting again');
    assert.equal(s.b.connects.at(-1).recovered, true, 'the second reconnection did not recover');
    await bobHasEverything(s, [...sent, ...more]);
  });

  test('after the recovery window: a fresh session (recovered false), missed messages come through the sync', T, async (t) => {
    const s = await setup(t, (WINDOW_S + 2) * 1000);
    const pid = s.b._pid;
    s.b.io.engine.close();
    await until(() => !s.b.connected, 2000, 'the disconnect');
    // the gateway has seen the transport close before anything is sent, so
    // nothing is written to the dead transport
    await sleep(300);
    const missed = await aliceSends(s, 20, 'late', 20);
    await until(() => s.b.connected, (WINDOW_S + 6) * 1000, 'Bob reconnecting');
    assert.equal(s.b.connects.length, 2);
    assert.equal(s.b.connects[1].recovered, false, 'recovered a session older than the window');
    assert.equal(typeof s.b._pid, 'string');
    assert.notEqual(s.b._pid, pid, 'a fresh session got the expired pid again');
    const later = await aliceSends(s, 4, 'after', 0);
    await bobHasEverything(s, [...missed, ...later]);
  });

  test("another user's pid and offset recover nothing, and leave the owner's session alone", T, async (t) => {
    const s = await setup(t, 100);
    await until(() => s.b._lastOffset !== undefined, WAIT, "Bob's first offset");
    const { _pid: pid, _lastOffset: offset } = s.b;
    // Bob's transport goes and he stays away: his session is recoverable
    s.b.io.reconnection(false);
    s.b.io.engine.close();
    await until(() => !s.b.connected, 2000, 'the disconnect');
    await sleep(300);
    const secret = await sendStored(s.a, { roomId: s.grp, text: 'not for mallory', clientMsgId: 'secret' });

    // a first connection may carry pid and offset in its auth payload
    const [mallory] = await makeUsers(cl, 'Mallory');
    const m = await connectStored(cl.lb.url, mallory, { auth: { token: mallory.token, pid, offset } }, t);
    assert.notEqual(m._pid, pid, "Mallory was given Bob's session");
    await sleep(500);
    assert.deepEqual(m.inbox.all('messageReceived'), [], "Mallory got Bob's messages");

    // a pid that never existed and a malformed offset: a fresh session
    const [zed] = await makeUsers(cl, 'Zed');
    const z = await connectStored(cl.lb.url, zed, { auth: { token: zed.token, pid: 'no-such-pid', offset: 'x.y' } }, t);
    assert.equal(typeof z._pid, 'string');
    assert.notEqual(z._pid, 'no-such-pid');

    // Bob comes back within the window and recovers, the message included
    s.b.io.reconnection(true);
    s.b.connect();
    await until(() => s.b.connected, WAIT, 'Bob reconnecting');
    assert.equal(s.b.connects.at(-1).recovered, true, "Bob's session did not survive Mallory's attempt");
    await s.b.inbox.wait('messageReceived', { id: secret.id }, WAIT);
    await bobHasEverything(s, []);
  });
});
