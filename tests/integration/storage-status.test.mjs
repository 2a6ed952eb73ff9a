// Message status with storage (docs/storage.md "Status"): real Redis,
// PostgreSQL, one chat-storage and two gateways (--storage on) behind
// HAProxy, which also routes /api/ to storage. A message is "sent" once
// stored (the ack), "delivered" once a socket of the recipient was written
// it (here: the sync on connect, without opening the chat), "seen" once the
// recipient opened the room; the sender learns each step live
// (messageStatus) and the history API says the same. In a group the
// aggregate is the lowest status over the other members.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closeAllClients } from './lib/client.mjs';
import { assertRecentIso, makeUsers } from './lib/chat.mjs';
import { api, startCluster } from './lib/stack.mjs';
import {
  connectStored,
  createGroup,
  dmRoomId,
  messageAt,
  receipts,
  request,
  sendStored,
} from './lib/storage-chat.mjs';

const T = { timeout: 45000 };
const WAIT = 10000; // for one event that crosses storage (a batch, a commit)

after(() => closeAllClients());

describe('message status', () => {
  let cl;
  before(async () => {
    cl = await startCluster({ gateways: 2, storage: true, pgFast: true });
  });
  after(() => cl?.stop());

  const connect = (user, t, opts = {}) => connectStored(cl.url, user, { transports: ['websocket'], ...opts }, t);
  const statusOf = async (user, roomId, seq) => (await messageAt(cl.apiUrl, user, roomId, seq)).status;

  test('direct chat: sent while Bob is offline, delivered when he connects, seen when he opens the chat', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connect(alice, t);
    const opened = await request(a, 'joinChat', { targetUserId: bob.id });
    const room = opened?.roomId;
    assert.equal(typeof room, 'string', `joinChat ack ${JSON.stringify(opened)}`);

    // stored: the ack says sent, with the room's first seq
    const m1 = await sendStored(a, { targetUserId: bob.id, text: 'are you there?', clientMsgId: 'st-1' });
    assert.equal(m1.roomId, room);
    assert.equal(m1.seq, 1, 'the first message of a new direct room');
    const own = await a.inbox.wait('messageReceived', { id: m1.id }, WAIT);
    assert.equal(own.seq, m1.seq, 'messageReceived carries the seq of the ack');
    assert.equal(own.userId, alice.id);
    assert.equal(own.clientMsgId, 'st-1');

    let h = await messageAt(cl.apiUrl, alice, room, 1);
    assert.equal(h.id, m1.id);
    assert.equal(h.text, 'are you there?');
    assert.equal(h.userId, alice.id);
    assert.equal(h.status, 'sent', `history of an undelivered message: ${JSON.stringify(h)}`);
    let r = await receipts(cl.apiUrl, alice, room, 1);
    assert.deepEqual(Object.keys(r), [bob.id], 'receipts list every member but the sender');
    assert.equal(r[bob.id].status, 'sent');
    assert.equal(r[bob.id].deliveredAt, null);
    assert.equal(r[bob.id].seenAt, null);
    await a.inbox.none('messageStatus', {}, 300);

    // Bob connects and opens nothing: the sync on connect writes him the
    // message, so it is delivered (not seen)
    const b = await connect(bob, t);
    const got = await b.inbox.wait('messageReceived', { id: m1.id }, WAIT);
    assert.equal(got.seq, 1);
    assert.equal(got.roomId, room);
    assert.equal(got.text, 'are you there?');
    const delivered = await a.inbox.wait('messageStatus', { status: 'delivered' }, WAIT);
    assert.deepEqual(delivered, { roomId: room, seq: 1, userId: bob.id, status: 'delivered', aggregate: 'delivered' });
    assert.equal(await statusOf(alice, room, 1), 'delivered');
    r = await receipts(cl.apiUrl, alice, room, 1);
    assert.equal(r[bob.id].status, 'delivered');
    assertRecentIso(r[bob.id].deliveredAt, 60000, 'deliveredAt');
    assert.equal(r[bob.id].seenAt, null);

    // while Bob is connected with the chat closed, a new message is
    // delivered live, still not seen
    const m2 = await sendStored(a, { roomId: room, text: 'second', clientMsgId: 'st-2' });
    assert.equal(m2.seq, 2);
    await b.inbox.wait('messageReceived', { id: m2.id }, WAIT);
    assert.deepEqual(
      await a.inbox.wait('messageStatus', { seq: 2 }, WAIT),
      { roomId: room, seq: 2, userId: bob.id, status: 'delivered', aggregate: 'delivered' },
    );
    await a.inbox.none('messageStatus', { status: 'seen' }, 300);
    assert.equal(await statusOf(alice, room, 2), 'delivered');

    // Bob opens the chat: everything so far is seen; Alice hears it once,
    // for her latest message
    const bobOpened = await request(b, 'joinChat', { targetUserId: alice.id });
    assert.equal(bobOpened?.roomId, room, `Bob's joinChat ack ${JSON.stringify(bobOpened)}`);
    assert.deepEqual(
      await a.inbox.wait('messageStatus', { status: 'seen' }, WAIT),
      { roomId: room, seq: 2, userId: bob.id, status: 'seen', aggregate: 'seen' },
    );
    assert.equal(await statusOf(alice, room, 1), 'seen');
    assert.equal(await statusOf(alice, room, 2), 'seen');
    r = await receipts(cl.apiUrl, alice, room, 1);
    assert.equal(r[bob.id].status, 'seen');
    assertRecentIso(r[bob.id].seenAt, 60000, 'seenAt');
    assert.ok(Date.parse(r[bob.id].seenAt) >= Date.parse(r[bob.id].deliveredAt), `seen before delivered: ${JSON.stringify(r[bob.id])}`);

    // with the chat open, a new message goes straight to seen
    const m3 = await sendStored(a, { roomId: room, text: 'third', clientMsgId: 'st-3' });
    await b.inbox.wait('messageReceived', { id: m3.id }, WAIT);
    const seen3 = await a.inbox.wait('messageStatus', { seq: 3, status: 'seen' }, WAIT);
    assert.equal(seen3.aggregate, 'seen');
    assert.equal(await statusOf(alice, room, 3), 'seen');

    // statuses go to the sender only; Bob sent nothing
    assert.deepEqual(b.inbox.all('messageStatus'), [], 'Bob got statuses of messages he did not send');
    // and a receipt never moves back: Bob's socket receiving more keeps seen
    h = await messageAt(cl.apiUrl, alice, room, 1);
    assert.equal(h.status, 'seen');
  });

  test('an online peer who never opened the chat gets its first message live (ten pairs at once)', T, async (t) => {
    // the direct room does not exist until the first message: the peer's
    // sockets join it when it is created (J1), before that message is
    // published to it
    const pairs = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
        const a = await connectStored(cl.gateways[i % 2].url, alice, { transports: ['websocket'] }, t);
        const b = await connectStored(cl.url, bob, i % 2 ? {} : { transports: ['websocket'] }, t);
        return { alice, bob, a, b };
      }),
    );
    await Promise.all(
      pairs.map(async ({ bob, a, b }) => {
        const m = await sendStored(a, { targetUserId: bob.id, text: 'hi bob' });
        const got = await b.inbox.wait('messageReceived', { id: m.id }, WAIT);
        assert.equal(got.seq, 1);
        assert.equal(got.roomId, m.roomId);
        const st = await a.inbox.wait('messageStatus', { roomId: m.roomId }, WAIT);
        assert.equal(st.status, 'delivered', `status ${JSON.stringify(st)}`);
      }),
    );
    await Promise.all(pairs.map(({ b }) => b.inbox.none('messageReceived', {}, 300)));
  });

  test('a first message sent the moment the peer connects reaches it live (thirty pairs)', T, async (t) => {
    // The peer's connect-time sync is still in flight (its CONNECT is
    // answered before it) when the new room's J1 comes: the room joins
    // during the catch-up, and what it published before its subscription
    // was confirmed must come by a sync once the socket is live.
    const users = await Promise.all(Array.from({ length: 30 }, () => makeUsers(cl, 'Alice', 'Bob')));
    const alices = await Promise.all(
      users.map(([alice], i) => connectStored(cl.gateways[i % 2].url, alice, { transports: ['websocket'] }, t)),
    );
    await Promise.all(
      users.map(async ([, bob], i) => {
        const b = await connectStored(cl.gateways[(i >> 1) % 2].url, bob, i % 3 ? { transports: ['websocket'] } : {}, t);
        const m = await sendStored(alices[i], { targetUserId: bob.id, text: `first ${i}` });
        const got = await b.inbox.wait('messageReceived', { id: m.id }, WAIT);
        assert.equal(got.seq, 1);
      }),
    );
  });

  test("a new direct room already in the peer's membership cache: storage's J1 still joins the peer's sockets", T, async (t) => {
    // On Redis Cluster the sender's gateway SADDs the room into
    // {u:USER}:rooms on one master and XADDs the message to the ingest stream
    // on another; storage can commit and SADD first, and then the gateway's
    // SADD adds nothing and it publishes no J1. The cache entries written
    // here before the first message make every run take that path: the
    // peer, online and never in the room, must still get the message.
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const b = await connectStored(cl.url, bob, { transports: ['websocket'] }, t);
    const room = dmRoomId(alice.id, bob.id);
    for (const id of [alice.id, bob.id]) assert.equal(await cl.redis.command('SADD', `{u:${id}}:rooms`, room), 1);
    const a = await connectStored(cl.gateways[1].url, alice, { transports: ['websocket'] }, t);
    const m = await sendStored(a, { targetUserId: bob.id, text: 'first, cache ahead' });
    assert.equal(m.roomId, room);
    const got = await b.inbox.wait('messageReceived', { id: m.id }, WAIT);
    assert.equal(got.seq, 1);
    // and the room is his live from now on, not only through that sync
    const m2 = await sendStored(a, { roomId: room, text: 'second' });
    assert.equal((await b.inbox.wait('messageReceived', { id: m2.id }, WAIT)).seq, 2);
  });

  test('one peer gets the first message of twenty new conversations live at once', T, async (t) => {
    // Twenty J1s for one socket in a burst: a room confirmed while another
    // room's sync is in flight (or after the socket's generation moved on)
    // still gets its sync.
    const [bob] = await makeUsers(cl, 'Bob');
    const alices = await makeUsers(cl, ...Array.from({ length: 20 }, (_, i) => `Alice${i}`));
    const as = await Promise.all(alices.map((u, i) => connectStored(cl.gateways[i % 2].url, u, { transports: ['websocket'] }, t)));
    const b = await connectStored(cl.gateways[0].url, bob, { transports: ['websocket'] }, t);
    const acks = await Promise.all(as.map((a, i) => sendStored(a, { targetUserId: bob.id, text: `burst ${i}` })));
    for (const m of acks) await b.inbox.wait('messageReceived', { id: m.id }, WAIT);
    await b.inbox.none('messageReceived', {}, 200); // none twice
  });

  test('group of three: per-member receipts, aggregate seen only when both have seen', T, async (t) => {
    const [alice, bob, carol] = await makeUsers(cl, 'Alice', 'Bob', 'Carol');
    const [a, b, c] = await Promise.all([alice, bob, carol].map((u) => connect(u, t)));
    const group = await createGroup(cl.apiUrl, alice, 'status test', [bob.id, carol.id]);
    const room = group.roomId;
    assert.match(room, /^g_[A-Za-z0-9_-]{22}$/);
    assert.deepEqual([...group.members].sort(), [alice.id, bob.id, carol.id].sort(), `members: ${JSON.stringify(group)}`);

    // every member's sockets are joined to the new room (J1) before they are
    // told about it (roomAdded), so they receive what is sent from now on
    for (const s of [a, b, c]) {
      const added = await s.inbox.wait('roomAdded', { roomId: room }, WAIT);
      assert.equal(added.type, 'group', `roomAdded ${JSON.stringify(added)}`);
    }

    // only Alice opens the room; Bob and Carol are members with the room
    // closed
    const joined = await request(a, 'joinRoom', { roomId: room });
    assert.equal(joined?.roomId, room, `joinRoom ack ${JSON.stringify(joined)}`);
    const m1 = await sendStored(a, { roomId: room, text: 'hello group', clientMsgId: 'g-1' });
    assert.equal(m1.seq, 1);
    assert.equal(m1.roomId, room);
    await b.inbox.wait('messageReceived', { id: m1.id }, WAIT);
    await c.inbox.wait('messageReceived', { id: m1.id }, WAIT);
    await a.inbox.wait('messageStatus', { userId: bob.id, status: 'delivered' }, WAIT);
    await a.inbox.wait('messageStatus', { userId: carol.id, status: 'delivered' }, WAIT);
    let r = await receipts(cl.apiUrl, alice, room, 1);
    assert.deepEqual(Object.keys(r).sort(), [bob.id, carol.id].sort(), 'receipts list every member but the sender');
    assert.equal(r[bob.id].status, 'delivered');
    assert.equal(r[carol.id].status, 'delivered');
    assert.equal(await statusOf(alice, room, 1), 'delivered');

    // Bob opens the room: his receipt says seen, the aggregate stays
    // delivered because of Carol
    assert.equal((await request(b, 'joinRoom', { roomId: room }))?.roomId, room);
    assert.deepEqual(
      await a.inbox.wait('messageStatus', { userId: bob.id, status: 'seen' }, WAIT),
      { roomId: room, seq: 1, userId: bob.id, status: 'seen', aggregate: 'delivered' },
    );
    r = await receipts(cl.apiUrl, alice, room, 1);
    assert.equal(r[bob.id].status, 'seen');
    assertRecentIso(r[bob.id].seenAt, 60000, 'Bob seenAt');
    assert.equal(r[carol.id].status, 'delivered');
    assert.equal(r[carol.id].seenAt, null);
    assert.equal(await statusOf(alice, room, 1), 'delivered', 'aggregate with one member still at delivered');

    // Carol marks it seen explicitly (markSeen): now everyone has seen it
    assert.deepEqual(await request(c, 'markSeen', { roomId: room, seq: 1 }), { ok: true });
    assert.deepEqual(
      await a.inbox.wait('messageStatus', { userId: carol.id, status: 'seen' }, WAIT),
      { roomId: room, seq: 1, userId: carol.id, status: 'seen', aggregate: 'seen' },
    );
    r = await receipts(cl.apiUrl, alice, room, 1);
    assert.equal(r[bob.id].status, 'seen');
    assert.equal(r[carol.id].status, 'seen');
    assertRecentIso(r[carol.id].seenAt, 60000, 'Carol seenAt');
    assert.equal(await statusOf(alice, room, 1), 'seen');

    // a message from Bob: Alice has the room open (seen), Carol has not
    // (delivered): Bob's aggregate is delivered, and Alice's receipt of it
    // says seen
    const m2 = await sendStored(b, { roomId: room, text: 'from bob', clientMsgId: 'g-2' });
    assert.equal(m2.seq, 2);
    await a.inbox.wait('messageReceived', { id: m2.id }, WAIT);
    await c.inbox.wait('messageReceived', { id: m2.id }, WAIT);
    await b.inbox.wait('messageStatus', { seq: 2, userId: alice.id, status: 'seen' }, WAIT);
    await b.inbox.wait('messageStatus', { seq: 2, userId: carol.id, status: 'delivered' }, WAIT);
    r = await receipts(cl.apiUrl, bob, room, 2);
    assert.deepEqual(Object.keys(r).sort(), [alice.id, carol.id].sort());
    assert.equal(r[alice.id].status, 'seen');
    assert.equal(r[carol.id].status, 'delivered');
    assert.equal(await statusOf(bob, room, 2), 'delivered');
    // Alice's message 1 keeps its status: receipts of others' messages do
    // not touch it
    assert.equal(await statusOf(alice, room, 1), 'seen');

    // Carol was never told about statuses of messages she did not send
    assert.deepEqual(c.inbox.all('messageStatus'), []);
    // an outsider sees none of it
    const [mallory] = await makeUsers(cl, 'Mallory');
    const peek = await api(cl.apiUrl, mallory.token, 'GET', `/api/rooms/${room}/messages/1/receipts`);
    assert.ok(peek.status === 403 || peek.status === 404, `receipts for a non-member: ${peek.status} ${peek.text}`);
  });
});
