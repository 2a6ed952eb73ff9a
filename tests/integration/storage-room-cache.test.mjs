// What users see of chat-storage's ingest must not depend on how the shard
// owner decides it (docs/storage.md "The room cache": in the owner's memory
// with optimistic guards, or the SQL path chat_batch alone): membership changed
// through the HTTP API (or behind the gateways' back) while the room is hot,
// statuses that count a member added late, client retries (acked, in the
// same burst, across a SIGKILL of chat-storage), rooms that do not exist, a
// backlog of more than 100 messages, direct messages sent by targetUserId
// every time, and contiguous seqs under interleaved bursts. Real Redis,
// PostgreSQL, one chat-storage and two gateways behind HAProxy, once per
// storage configuration of CONFIGS.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { closeAllClients, emitAck } from './lib/client.mjs';
import { httpRequest } from './lib/harness.mjs';
import { assertRecentIso, makeUsers } from './lib/chat.mjs';
import { api, startCluster } from './lib/stack.mjs';
import {
  apiReady,
  assertGotExactly,
  connectStored,
  createGroup,
  history,
  messageAt,
  receipts,
  request,
  sendMany,
  sendStored,
} from './lib/storage-chat.mjs';

// Extra chat-storage arguments; every test runs under each: the room cache
// (the default), and the SQL path alone, held to the same behaviour.
const CONFIGS = [
  { name: 'default', storageArgs: [] },
  { name: 'sql-only', storageArgs: ['--room-cache', '0'] },
];

const T = { timeout: 60000 };
const WAIT = 10000; // for one event that crosses storage (a batch, a commit)

after(() => closeAllClients());

const enc = encodeURIComponent;
const q = (x) => `'${String(x).replaceAll("'", "''")}'`;

for (const cfg of CONFIGS) {
  describe(`ingest invariants, storage ${cfg.name}`, () => {
    let cl;
    before(async () => {
      cl = await startCluster({
        gateways: 2,
        storage: true,
        pgFast: true, // PostgreSQL is never killed here (chat-storage is)
        // a replica restarted after SIGKILL takes its shards back within 1 s
        storageArgs: ['--lease-ms', '1000', ...cfg.storageArgs],
        // bursts far above the default 20 events/s of one connection
        args: ['--rate-limit', '5000', '--rate-burst', '5000'],
      });
    });
    after(() => cl?.stop());

    const connect = (user, t, i = 0) => connectStored(cl.gateways[i % 2].url, user, { transports: ['websocket'] }, t);
    const send = async (socket, payload) => (await emitAck(socket, 'sendMessage', [payload], 15000))[0];
    const statusOf = async (user, roomId, seq) => (await messageAt(cl.apiUrl, user, roomId, seq)).status;
    /** The sender's socket hears that `userId` moved to `status` for `seq`, with `aggregate`. */
    const heard = async (socket, roomId, seq, userId, status, aggregate) =>
      assert.deepEqual(
        await socket.inbox.wait('messageStatus', { roomId, seq, userId, status }, WAIT),
        { roomId, seq, userId, status, aggregate },
      );
    /** A counter of chat-storage's /metrics. */
    const metric = async (name) => {
      const res = await httpRequest(`${cl.storage[0].url}/metrics`);
      const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(res.text);
      assert.ok(m, `no ${name} in /metrics:\n${res.text.slice(0, 2000)}`);
      return Number(m[1]);
    };
    /** chat_storage_messages_forbidden_total: sends the ingest itself refused (not a member). */
    const forbidden = () => metric('chat_storage_messages_forbidden_total');
    const cached = cfg.storageArgs.length === 0; // the room cache is on
    const stored = async (roomId) => Number(await cl.pg.sql(`SELECT count(*) FROM messages WHERE room_id = ${q(roomId)}`));

    /** A group of `users` (the first creates it), every socket told (roomAdded). */
    async function group(name, users, sockets) {
      const [owner, ...rest] = users;
      const g = await createGroup(cl.apiUrl, owner, name, rest.map((u) => u.id));
      for (const s of sockets) await s.inbox.wait('roomAdded', { roomId: g.roomId }, WAIT);
      return g.roomId;
    }

    test('a member removed through the API while the room is hot: refused, their receipts move nothing, the others go on', T, async (t) => {
      const [alice, bob, carol] = await makeUsers(cl, 'Alice', 'Bob', 'Carol');
      const [a, b, c] = await Promise.all([alice, bob, carol].map((u, i) => connect(u, t, i)));
      const room = await group('removal', [alice, bob, carol], [a, b, c]);
      // Alice and Bob have the room open; Carol is connected with it closed
      assert.equal((await request(a, 'joinRoom', { roomId: room }))?.roomId, room);
      assert.equal((await request(b, 'joinRoom', { roomId: room }))?.roomId, room);

      // a conversation flows, so the room is hot at its shard's owner
      const acks = [];
      const order = [[a, alice], [b, bob], [c, carol], [a, alice], [b, bob], [a, alice]];
      for (let i = 0; i < 6; i++) {
        const [s, u] = order[i];
        const m = await sendStored(s, { roomId: room, text: `before ${i}`, clientMsgId: `rm-${u.id}-${i}` });
        assert.equal(m.seq, i + 1, `message ${i} of the conversation`);
        acks.push(m);
      }
      for (const s of [a, b, c]) for (const m of acks) await s.inbox.wait('messageReceived', { id: m.id }, WAIT);
      // Alice's message 6: Bob has seen it (room open), Carol only had it
      // delivered (room closed; her own message 3 counts as seen up to 3)
      await a.inbox.wait('messageStatus', { seq: 6, userId: carol.id, status: 'delivered' }, WAIT);
      assert.equal(await statusOf(alice, room, 6), 'delivered', 'Carol holds the aggregate of message 6 at delivered');
      let r = await receipts(cl.apiUrl, alice, room, 6);
      assert.deepEqual(Object.keys(r).sort(), [bob.id, carol.id].sort());
      assert.equal(r[carol.id].status, 'delivered');
      assert.equal(r[bob.id].status, 'seen');

      // Bob removes Carol
      const del = await api(cl.apiUrl, bob.token, 'DELETE', `/api/rooms/${enc(room)}/members/${enc(carol.id)}`);
      assert.equal(del.status, 204, `DELETE member: ${del.status} ${del.text}`);
      await c.inbox.wait('roomRemoved', { roomId: room }, WAIT);
      const mark = { a: a.inbox.items.length, b: b.inbox.items.length };

      // her next send is refused and stored nowhere; HTTP says the same
      assert.deepEqual(await send(c, { roomId: room, text: 'still here?', clientMsgId: 'rm-after' }), { error: 'not a member' });
      const post = await api(cl.apiUrl, carol.token, 'POST', `/api/rooms/${enc(room)}/messages`, { text: 'over http', clientMsgId: 'rm-http' });
      assert.equal(post.status, 403, `POST as a removed member: ${post.status} ${post.text}`);
      // her receipts move nothing: markSeen and opening the room
      assert.deepEqual(await request(c, 'markSeen', { roomId: room, seq: 6 }), { error: 'not a member' });
      assert.deepEqual(await request(c, 'joinRoom', { roomId: room }), { error: 'not a member' });

      // Alice and Bob go on: contiguous seqs, and Carol no longer counts, so
      // a message Bob has seen (room open) is seen
      const m7 = await sendStored(a, { roomId: room, text: 'after 7', clientMsgId: 'rm-a-7' });
      assert.equal(m7.seq, 7);
      await heard(a, room, 7, bob.id, 'seen', 'seen');
      const m8 = await sendStored(b, { roomId: room, text: 'after 8', clientMsgId: 'rm-b-8' });
      assert.equal(m8.seq, 8);
      await heard(b, room, 8, alice.id, 'seen', 'seen');
      await b.inbox.wait('messageReceived', { id: m7.id }, WAIT);
      await a.inbox.wait('messageReceived', { id: m8.id }, WAIT);
      await c.inbox.none('messageReceived', {}, 300);
      assert.deepEqual(c.inbox.all('messageReceived', { roomId: room }).map((m) => m.seq), [1, 2, 3, 4, 5, 6]);
      // nobody heard a status from Carol after her removal
      const fromCarol = (s, from) => s.inbox.items.slice(from).filter((i) => i.event === 'messageStatus' && i.data.userId === carol.id);
      assert.deepEqual(fromCarol(a, mark.a), []);
      assert.deepEqual(fromCarol(b, mark.b), []);

      // the history: her refused messages nowhere, the receipts only of members
      const h = await history(cl.apiUrl, alice, room);
      assert.deepEqual(h.map((m) => m.seq), [1, 2, 3, 4, 5, 6, 7, 8]);
      assert.deepEqual(h.filter((m) => m.userId === carol.id).map((m) => m.text), ['before 2']);
      assert.equal(await stored(room), 8);
      r = await receipts(cl.apiUrl, alice, room, 7);
      assert.deepEqual(Object.keys(r), [bob.id]);
      assert.equal(r[bob.id].status, 'seen');
      assert.equal(await statusOf(alice, room, 6), 'seen', 'message 6 once only Bob counts');
      const gone = await api(cl.apiUrl, carol.token, 'GET', `/api/rooms/${enc(room)}/messages?limit=5`);
      assert.equal(gone.status, 403, `history for a removed member: ${gone.status} ${gone.text}`);
    });

    test('a member removed in the database behind the gateways\' back: the ingest itself refuses them', T, async (t) => {
      // The gateways still have Dave in {r:ROOM}:members and his socket in
      // the room, so his send and his markSeen reach the ingest, which must
      // decide by the database, not by what it remembers of the room.
      const [alice, bob, dave] = await makeUsers(cl, 'Alice', 'Bob', 'Dave');
      const [a, b, d] = await Promise.all([alice, bob, dave].map((u, i) => connect(u, t, i)));
      const room = await group('behind the back', [alice, bob, dave], [a, b, d]);
      for (const s of [a, b, d]) assert.equal((await request(s, 'joinRoom', { roomId: room }))?.roomId, room);
      for (let i = 0; i < 4; i++) {
        const s = [a, b, d][i % 3];
        assert.equal((await sendStored(s, { roomId: room, text: `hot ${i}`, clientMsgId: `bb-${i}` })).seq, i + 1);
      }
      const m5 = await sendStored(a, { roomId: room, text: 'hot 4', clientMsgId: 'bb-4' });
      assert.equal(m5.seq, 5);
      await d.inbox.wait('messageReceived', { id: m5.id }, WAIT);
      await a.inbox.wait('messageStatus', { seq: 5, status: 'seen', aggregate: 'seen' }, WAIT);

      await cl.pg.sql(`DELETE FROM room_members WHERE room_id = ${q(room)} AND user_id = ${q(dave.id)}`);
      a.inbox.clear();
      const refusedBefore = await forbidden();
      assert.deepEqual(await send(d, { roomId: room, text: 'ghost', clientMsgId: 'bb-ghost' }), { error: 'not a member' });
      assert.equal(await forbidden(), refusedBefore + 1, 'the ingest (not a gateway) refused it');
      await request(d, 'markSeen', { roomId: room, seq: 5 });
      const m6 = await sendStored(a, { roomId: room, text: 'after', clientMsgId: 'bb-5' });
      assert.equal(m6.seq, 6, 'the refused message took no seq');
      await heard(a, room, 6, bob.id, 'seen', 'seen');
      await a.inbox.none('messageStatus', { userId: dave.id }, 300);
      const h = await history(cl.apiUrl, alice, room);
      assert.deepEqual(h.map((m) => m.text), ['hot 0', 'hot 1', 'hot 2', 'hot 3', 'hot 4', 'after']);
      assert.equal(await stored(room), 6);
    });

    test('a member added through the API after messages flowed counts for the status of the next message', T, async (t) => {
      const [alice, bob, dave] = await makeUsers(cl, 'Alice', 'Bob', 'Dave');
      const [a, b] = await Promise.all([alice, bob].map((u, i) => connect(u, t, i)));
      const room = await group('late member', [alice, bob], [a, b]);
      assert.equal((await request(b, 'joinRoom', { roomId: room }))?.roomId, room);
      for (let i = 1; i <= 4; i++) {
        const m = await sendStored(a, { roomId: room, text: `early ${i}`, clientMsgId: `lm-${i}` });
        assert.equal(m.seq, i);
        await heard(a, room, i, bob.id, 'seen', 'seen');
      }

      // Dave (offline) is added: he starts with everything so far counted
      // as seen, so older messages keep their status
      const add = await api(cl.apiUrl, bob.token, 'POST', `/api/rooms/${enc(room)}/members`, { userId: dave.id });
      assert.equal(add.status, 201, `add member: ${add.status} ${add.text}`);
      assert.equal(await statusOf(alice, room, 4), 'seen');

      // the next message: Bob sees it at once, Dave has not even had it
      const m5 = await sendStored(a, { roomId: room, text: 'with dave', clientMsgId: 'lm-5' });
      assert.equal(m5.seq, 5);
      await heard(a, room, 5, bob.id, 'seen', 'sent');
      await a.inbox.none('messageStatus', { userId: dave.id }, 300);
      assert.equal(await statusOf(alice, room, 5), 'sent');
      let r = await receipts(cl.apiUrl, alice, room, 5);
      assert.deepEqual(Object.keys(r).sort(), [bob.id, dave.id].sort());
      assert.equal(r[dave.id].status, 'sent');
      assert.equal(r[dave.id].deliveredAt, null);

      // Dave connects: delivered (not seen); then opens the room: seen
      const d = await connect(dave, t, 1);
      const got = await d.inbox.wait('messageReceived', { id: m5.id }, WAIT);
      assert.equal(got.seq, 5);
      await heard(a, room, 5, dave.id, 'delivered', 'delivered');
      await a.inbox.none('messageStatus', { status: 'seen' }, 300);
      assert.equal(await statusOf(alice, room, 5), 'delivered');
      assert.equal((await request(d, 'joinRoom', { roomId: room }))?.roomId, room);
      await heard(a, room, 5, dave.id, 'seen', 'seen');
      assert.equal(await statusOf(alice, room, 5), 'seen');
      r = await receipts(cl.apiUrl, alice, room, 5);
      assertRecentIso(r[dave.id].deliveredAt, 60000, 'Dave deliveredAt');
      assertRecentIso(r[dave.id].seenAt, 60000, 'Dave seenAt');

      // and Dave's own message counts Alice and Bob, both with the room open
      const m6 = await sendStored(d, { roomId: room, text: 'hi all', clientMsgId: 'lm-d-6' });
      assert.equal(m6.seq, 6);
      await d.inbox.wait('messageStatus', { seq: 6, userId: alice.id }, WAIT);
      await d.inbox.wait('messageStatus', { seq: 6, userId: bob.id, status: 'seen' }, WAIT);
      assert.equal(await statusOf(dave, room, 6), 'delivered', 'Alice never opened the room');
    });

    test('no such room: a send is refused and nothing is stored', T, async (t) => {
      // There is no API to delete a room (storage/openapi.yaml); what comes
      // closest: a room id that was never created, and a group everybody left.
      const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
      const a = await connect(alice, t);
      const ghost = `g_${crypto.randomBytes(16).toString('base64url').slice(0, 22)}`;
      assert.deepEqual(await send(a, { roomId: ghost, text: 'anyone?', clientMsgId: 'nr-1' }), { error: 'not a member' });
      const post = await api(cl.apiUrl, alice.token, 'POST', `/api/rooms/${enc(ghost)}/messages`, { text: 'anyone?' });
      assert.equal(post.status, 403, `POST to a room that does not exist: ${post.status} ${post.text}`);
      assert.equal(await stored(ghost), 0);

      const b = await connect(bob, t, 1);
      const room = await group('emptied', [alice, bob], [a, b]);
      assert.equal((await request(a, 'joinRoom', { roomId: room }))?.roomId, room);
      for (let i = 1; i <= 3; i++) assert.equal((await sendStored(a, { roomId: room, text: `m${i}`, clientMsgId: `nr-m${i}` })).seq, i);
      for (const u of [bob, alice]) {
        const res = await api(cl.apiUrl, u.token, 'DELETE', `/api/rooms/${enc(room)}/members/${enc(u.id)}`);
        assert.equal(res.status, 204, `${u.name} leaves: ${res.status} ${res.text}`);
      }
      await a.inbox.wait('roomRemoved', { roomId: room }, WAIT);
      assert.deepEqual(await send(a, { roomId: room, text: 'echo', clientMsgId: 'nr-m4' }), { error: 'not a member' });
      assert.equal(await stored(room), 3);
      assert.equal(await cl.pg.sql(`SELECT count(*) FROM room_members WHERE room_id = ${q(room)}`), '0');
    });

    test('over 100 messages while the peer is offline: delivered then seen, receipt times for the oldest and the newest', T, async (t) => {
      const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
      const a = await connect(alice, t);
      const first = await sendStored(a, { targetUserId: bob.id, text: 'backlog #0', clientMsgId: 'bl-first' });
      assert.equal(first.seq, 1);
      const N = 130;
      const rest = await sendMany(a, { roomId: first.roomId }, N - 1, { tag: 'bl', window: 20 });
      assert.deepEqual(rest.filter((s) => s.error || s.ack?.error), []);
      assert.deepEqual(rest.map((s) => s.ack.seq), Array.from({ length: N - 1 }, (_, i) => i + 2));
      const room = first.roomId;
      await a.inbox.none('messageStatus', {}, 300);
      assert.equal(await statusOf(alice, room, N), 'sent');

      // Bob comes back: his connect-time sync writes him the backlog
      const b = await connect(bob, t, 1);
      const last = await b.inbox.wait('messageReceived', { seq: N }, WAIT);
      assert.equal(last.text, `bl #${N - 2}`);
      const delivered = await a.inbox.wait('messageStatus', { seq: N, status: 'delivered' }, WAIT);
      assert.deepEqual(delivered, { roomId: room, seq: N, userId: bob.id, status: 'delivered', aggregate: 'delivered' });
      assert.deepEqual(a.inbox.all('messageStatus', { status: 'seen' }), [], 'seen before Bob opened the chat');
      let r1 = await receipts(cl.apiUrl, alice, room, 1);
      assertRecentIso(r1[bob.id].deliveredAt, 60000, 'deliveredAt of message 1');
      assert.equal(r1[bob.id].seenAt, null);

      // he opens the chat
      assert.equal((await request(b, 'joinChat', { targetUserId: alice.id }))?.roomId, room);
      await heard(a, room, N, bob.id, 'seen', 'seen');
      await a.inbox.none('messageStatus', { status: 'seen' }, 300); // one event, for the latest message
      for (const seq of [1, N]) {
        const r = (await receipts(cl.apiUrl, alice, room, seq))[bob.id];
        assert.equal(r.status, 'seen', `receipt of ${seq}: ${JSON.stringify(r)}`);
        assertRecentIso(r.deliveredAt, 60000, `deliveredAt of ${seq}`);
        assertRecentIso(r.seenAt, 60000, `seenAt of ${seq}`);
        assert.ok(Date.parse(r.seenAt) >= Date.parse(r.deliveredAt), `seen before delivered: ${JSON.stringify(r)}`);
      }
      r1 = (await receipts(cl.apiUrl, alice, room, 1))[bob.id];
      const rN = (await receipts(cl.apiUrl, alice, room, N))[bob.id];
      assert.ok(Date.parse(r1.deliveredAt) <= Date.parse(rN.deliveredAt), `1 delivered after ${N}: ${r1.deliveredAt} ${rN.deliveredAt}`);
      assert.equal(await statusOf(alice, room, 1), 'seen');
      assert.equal(await statusOf(alice, room, N), 'seen');
      assert.equal((await history(cl.apiUrl, bob, room)).length, N);
    });

    test('direct messages sent by targetUserId every time: contiguous seqs in sending order, statuses right', T, async (t) => {
      const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
      const [a, b] = await Promise.all([alice, bob].map((u, i) => connect(u, t, i)));
      const N = 40;
      // ten in flight from the start: the room does not exist before the first
      const sent = await sendMany(a, { targetUserId: bob.id }, N, { tag: 'dm', window: 10 });
      assert.deepEqual(sent.filter((s) => s.error || s.ack?.error), []);
      const room = sent[0].ack.roomId;
      assert.deepEqual(sent.map((s) => s.ack.roomId), Array(N).fill(room));
      assert.deepEqual(sent.map((s) => s.ack.seq), Array.from({ length: N }, (_, i) => i + 1));
      const h = await history(cl.apiUrl, alice, room);
      assert.deepEqual(h.map((m) => [m.seq, m.id, m.clientMsgId, m.text]), sent.map((s) => [s.ack.seq, s.ack.id, s.clientMsgId, s.text]));
      await b.inbox.wait('messageReceived', { id: sent[N - 1].ack.id }, WAIT);
      assertGotExactly(b, room, sent.map((s) => s.ack), 'Bob');
      // Bob is online with the chat closed: all delivered, none seen
      await a.inbox.wait('messageStatus', { seq: N, status: 'delivered', aggregate: 'delivered' }, WAIT);
      assert.deepEqual(a.inbox.all('messageStatus', { status: 'seen' }), []);
      assert.deepEqual((await history(cl.apiUrl, alice, room)).map((m) => m.status), Array(N).fill('delivered'));
      // a reply by targetUserId too, then Bob has seen everything before it
      const reply = await sendStored(b, { targetUserId: alice.id, text: 'ok', clientMsgId: 'dm-reply' });
      assert.equal(reply.roomId, room);
      assert.equal(reply.seq, N + 1);
      await heard(a, room, N, bob.id, 'seen', 'seen');
      await a.inbox.none('messageStatus', { status: 'seen' }, 300); // one event, for the latest message
      assert.equal(await statusOf(alice, room, 1), 'seen');
      await b.inbox.wait('messageStatus', { seq: N + 1, userId: alice.id, status: 'delivered' }, WAIT);
      assert.equal(await statusOf(bob, room, N + 1), 'delivered', 'Alice never opened the chat');
    });

    test('three senders in interleaved bursts: seqs 1..N without a gap, each sender\'s order kept', T, async (t) => {
      const users = await makeUsers(cl, 'S0', 'S1', 'S2', 'Reader');
      const sockets = await Promise.all(users.map((u, i) => connect(u, t, i)));
      const room = await group('bursts', users, sockets);
      const PER = 60;
      const sent = await Promise.all(
        sockets.slice(0, 3).map((s, k) => sendMany(s, { roomId: room }, PER, { tag: `b${k}`, window: 6, gapMs: 1 })),
      );
      const all = sent.flat();
      assert.deepEqual(all.filter((s) => s.error || s.ack?.error), []);
      const N = 3 * PER;
      const h = await history(cl.apiUrl, users[3], room);
      assert.deepEqual(h.map((m) => m.seq), Array.from({ length: N }, (_, i) => i + 1));
      assert.equal(new Set(h.map((m) => m.id)).size, N);
      const bySeq = new Map(h.map((m) => [m.seq, m]));
      for (const [k, mine] of sent.entries()) {
        const seqs = mine.map((s) => s.ack.seq);
        for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], `sender ${k}: message ${i} got seq ${seqs[i]} after ${seqs[i - 1]}`);
        for (const s of mine) {
          const m = bySeq.get(s.ack.seq);
          assert.deepEqual([m.id, m.userId, m.clientMsgId, m.text], [s.ack.id, users[k].id, s.clientMsgId, s.text]);
        }
      }
      // the senders' bursts really interleaved
      const switches = h.filter((m, i) => i > 0 && m.userId !== h[i - 1].userId).length;
      t.diagnostic(`${switches} sender switches in ${N} messages`);
      await sockets[3].inbox.wait('messageReceived', { seq: N }, WAIT);
      assertGotExactly(sockets[3], room, h, 'the reader');
    });

    test('a member removed through the API in the middle of their burst: each send acked and stored, or refused and absent', T, async (t) => {
      const [alice, bob, carol] = await makeUsers(cl, 'Alice', 'Bob', 'Carol');
      const [a, b, c] = await Promise.all([alice, bob, carol].map((u, i) => connect(u, t, i)));
      const room = await group('removal race', [alice, bob, carol], [a, b, c]);
      assert.equal((await request(b, 'joinRoom', { roomId: room }))?.roomId, room);
      assert.equal((await sendStored(a, { roomId: room, text: 'go', clientMsgId: 'rr-go' })).seq, 1);
      const refusedBefore = await forbidden();
      let removal = null;
      const burst = sendMany(c, { roomId: room }, 80, {
        tag: 'rr',
        window: 8,
        gapMs: 2,
        onAck: (rec) => {
          if (rec.i === 20 && !removal) removal = api(cl.apiUrl, alice.token, 'DELETE', `/api/rooms/${enc(room)}/members/${enc(carol.id)}`);
        },
      });
      // Alice keeps talking meanwhile
      const alices = await sendMany(a, { roomId: room }, 30, { tag: 'rr-a', window: 4, gapMs: 5 });
      const sent = await burst;
      assert.ok(removal, 'the removal never started');
      assert.equal((await removal).status, 204);
      t.diagnostic(`${sent.filter((s) => s.ack?.error).length} of Carol's 80 refused (the rest came before the removal), ` +
        `${(await forbidden()) - refusedBefore} of them by the ingest (the race), the others by her gateway`);
      // however the race went, what she sends once the removal is answered is refused
      for (let i = 80; i < 83; i++) {
        const rec = { i, clientMsgId: `rr-late-${i}`, text: `late ${i}` };
        rec.ack = await send(c, { roomId: room, text: rec.text, clientMsgId: rec.clientMsgId });
        sent.push(rec);
      }
      assert.deepEqual(sent.filter((s) => s.error), [], 'every send of the burst was answered');
      assert.deepEqual(alices.filter((s) => s.error || s.ack?.error), []);
      const acked = sent.filter((s) => !s.ack.error);
      const refused = sent.filter((s) => s.ack.error);
      assert.ok(acked.length >= 21 && refused.length >= 3, `acked ${acked.length}, refused ${refused.length}`);
      assert.deepEqual([...new Set(refused.map((s) => JSON.stringify(s.ack)))], [JSON.stringify({ error: 'not a member' })]);
      // once refused, refused: nothing she sent later was stored
      const firstRefused = refused[0].i;
      assert.deepEqual(acked.filter((s) => s.i > firstRefused).map((s) => s.i), []);

      const h = await history(cl.apiUrl, alice, room);
      assert.deepEqual(h.map((m) => m.seq), Array.from({ length: h.length }, (_, i) => i + 1), 'seqs without a gap');
      assert.equal(h.length, 1 + 30 + acked.length);
      const hCarol = h.filter((m) => m.userId === carol.id);
      assert.deepEqual(hCarol.map((m) => [m.id, m.seq, m.clientMsgId]), acked.map((s) => [s.ack.id, s.ack.seq, s.clientMsgId]));
      assert.deepEqual(h.filter((m) => m.userId === alice.id).slice(1).map((m) => m.id), alices.map((s) => s.ack.id));
      // Bob got exactly what was stored
      await b.inbox.wait('messageReceived', { seq: h.length }, WAIT);
      assertGotExactly(b, room, h, 'Bob');
      // and Carol no longer counts: Alice's next message, seen by Bob, is seen
      const next = await sendStored(a, { roomId: room, text: 'after the race', clientMsgId: 'rr-after' });
      assert.equal(next.seq, h.length + 1);
      await heard(a, room, next.seq, bob.id, 'seen', 'seen');
    });

    test('markSeen past the newest message claims nothing for messages sent later', T, async (t) => {
      const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
      const [a, b] = await Promise.all([alice, bob].map((u, i) => connect(u, t, i)));
      const room = await group('ahead', [alice, bob], [a, b]);
      // Bob is connected with the room closed
      for (let i = 1; i <= 3; i++) assert.equal((await sendStored(a, { roomId: room, text: `m${i}`, clientMsgId: `ah-${i}` })).seq, i);
      await a.inbox.wait('messageStatus', { seq: 3, status: 'delivered' }, WAIT);
      // he says he has seen up to 1000: that is up to 3
      assert.deepEqual(await request(b, 'markSeen', { roomId: room, seq: 1000 }), { ok: true });
      await heard(a, room, 3, bob.id, 'seen', 'seen');
      await a.inbox.none('messageStatus', { status: 'seen' }, 300); // one event, for the latest message
      // message 4: delivered to Bob's socket, not seen
      const m4 = await sendStored(a, { roomId: room, text: 'm4', clientMsgId: 'ah-4' });
      assert.equal(m4.seq, 4);
      await b.inbox.wait('messageReceived', { id: m4.id }, WAIT);
      await heard(a, room, 4, bob.id, 'delivered', 'delivered');
      await a.inbox.none('messageStatus', { seq: 4, status: 'seen' }, 300);
      assert.equal(await statusOf(alice, room, 4), 'delivered');
      const r = (await receipts(cl.apiUrl, alice, room, 4))[bob.id];
      assert.equal(r.seenAt, null, `seenAt of a message sent after markSeen 1000: ${JSON.stringify(r)}`);
    });

    // last: it kills chat-storage
    test('a retry with the same clientMsgId and text: right after the ack, in the same burst, after a SIGKILL of chat-storage', T, async (t) => {
      const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
      const [a, b] = await Promise.all([alice, bob].map((u, i) => connect(u, t, i)));
      const room = await group('retries', [alice, bob], [a, b]);
      const msg = (text, clientMsgId) => ({ roomId: room, text, clientMsgId });
      const warm = [];
      for (let i = 1; i <= 3; i++) warm.push(await sendStored(a, msg(`warm ${i}`, `rt-w${i}`)));
      assert.deepEqual(warm.map((m) => m.seq), [1, 2, 3]);

      // (a) right after the ack. With the room cache, the room is hot and
      // the retry's batch is decided in memory; its insert collides with
      // the stored message, the statement is refused and the batch runs
      // again through chat_batch_load, which answers 'dup'.
      const m4 = await sendStored(a, msg('four', 'rt-4'));
      assert.equal(m4.seq, 4);
      const [fast0, aborts0] = [await metric('chat_storage_fast_batches_total'), await metric('chat_storage_fast_aborts_total')];
      assert.deepEqual(await sendStored(a, msg('four', 'rt-4')), m4);
      if (cached) {
        assert.ok(fast0 > 0, 'batches of a hot room are decided in memory');
        assert.equal(await metric('chat_storage_fast_aborts_total'), aborts0 + 1, 'the retry was refused by a guard');
      } else {
        assert.equal(fast0, 0, '--room-cache 0: every batch through the SQL functions');
        assert.equal(await metric('chat_storage_fast_aborts_total'), 0);
      }
      // (b) twice back to back, in one burst
      const [x, y] = await Promise.all([send(a, msg('five', 'rt-5')), send(a, msg('five', 'rt-5'))]);
      assert.equal(x?.seq, 5, `first of the burst: ${JSON.stringify(x)}`);
      assert.deepEqual(y, x, 'the second of the burst is answered with the first');
      // another text under a used clientMsgId is refused
      assert.deepEqual(await send(a, msg('not four', 'rt-4')), { error: 'clientMsgId reused' });
      // long after: 150 more messages (more than any short memory of recent
      // ones), then a retry of message 1 and a reuse of its clientMsgId
      const filler = await sendMany(a, { roomId: room }, 150, { tag: 'rt-fill', window: 20 });
      assert.deepEqual(filler.map((f) => f.ack?.seq), Array.from({ length: 150 }, (_, i) => i + 6));
      assert.deepEqual(await sendStored(a, msg('warm 1', 'rt-w1')), warm[0], 'a retry of an old message');
      assert.deepEqual(await send(a, msg('cold 1', 'rt-w1')), { error: 'clientMsgId reused' });
      // (c) after chat-storage is killed with SIGKILL and restarted
      const m6 = await sendStored(a, msg('six', 'rt-6'));
      assert.equal(m6.seq, 156);
      const st = cl.storage[0];
      await st.kill('SIGKILL');
      await st.start();
      await apiReady(cl.apiUrl, alice);
      assert.deepEqual(await sendStored(a, msg('six', 'rt-6')), m6, 'a retry after the restart');
      assert.deepEqual(await sendStored(a, msg('four', 'rt-4')), m4, 'an older retry after the restart');
      assert.deepEqual(await sendStored(a, msg('warm 2', 'rt-w2')), warm[1], 'an old retry after the restart');
      assert.deepEqual(await send(a, msg('not six', 'rt-6')), { error: 'clientMsgId reused' });
      const [p, p2] = await Promise.all([send(a, msg('seven', 'rt-7')), send(a, msg('seven', 'rt-7'))]);
      assert.equal(p?.seq, 157, `new message after the restart: ${JSON.stringify(p)}`);
      assert.deepEqual(p2, p);

      const h = await history(cl.apiUrl, bob, room);
      assert.deepEqual(h.map((m) => [m.seq, m.clientMsgId, m.text]), [
        [1, 'rt-w1', 'warm 1'], [2, 'rt-w2', 'warm 2'], [3, 'rt-w3', 'warm 3'],
        [4, 'rt-4', 'four'], [5, 'rt-5', 'five'],
        ...filler.map((f) => [f.ack.seq, f.clientMsgId, f.text]),
        [156, 'rt-6', 'six'], [157, 'rt-7', 'seven'],
      ]);
      assert.deepEqual(
        [h[0].id, h[1].id, h[3].id, h[4].id, h[155].id, h[156].id],
        [warm[0].id, warm[1].id, m4.id, x.id, m6.id, p.id],
      );
      assert.equal(await stored(room), 157);
      // Bob got each once
      await b.inbox.wait('messageReceived', { id: p.id }, WAIT);
      await b.inbox.none('messageReceived', { id: p.id }, 300);
      assertGotExactly(b, room, h, 'Bob');
    });
  });
}
