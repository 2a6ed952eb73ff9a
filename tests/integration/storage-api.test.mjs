// chat-storage's HTTP API (storage/openapi.yaml) against real PostgreSQL,
// Redis, chat-storage replicas and a gateway with --storage on: groups and
// their members, history pages, receipts, unread counts, direct rooms,
// authentication, membership checks on every room endpoint, hostile input
// in every parameter, body limits, the per-user rate limit, CORS, and a
// database outage.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { httpRequest, sleep } from './lib/harness.mjs';
import { api, badTokens, startCluster, startStorage, TEST_SECRET } from './lib/stack.mjs';
import { makeUsers } from './lib/chat.mjs';
import { connectStored, dmRoomId } from './lib/storage-chat.mjs';

const enc = encodeURIComponent;
const ORIGIN = 'http://app.example';

let cluster; // PostgreSQL, Redis, storage st1, one gateway
let dev; // a second replica: --auth insecure-dev, low rate limit, small bodies
let API;

before(async () => {
  cluster = await startCluster({
    storage: true,
    gateways: 1,
    workers: 1,
    haproxy: false,
    pgFast: true,
    storageArgs: [
      '--rate-limit', '100000', '--rate-burst', '100000',
      '--cors-origin', `${ORIGIN}, http://other.example`, '--cors-credentials',
      '--max-text-length', '2000',
    ],
  });
  API = cluster.apiUrl;
  dev = await startStorage({
    redisUrl: cluster.redis.url,
    databaseUrl: cluster.pg.url,
    auth: 'insecure-dev',
    args: [
      // the same room key as st1 and the gateway, for direct rooms
      '--jwt-secret', TEST_SECRET,
      '--replica-id', 'st-dev',
      '--rate-limit', '1', '--rate-burst', '3',
      '--max-body', '2048', '--max-text-length', '1000',
    ],
  });
});

after(async () => {
  const errors = [];
  await dev?.stopClean().catch((err) => errors.push(err));
  await cluster?.stop().catch((err) => errors.push(err));
  if (errors.length) throw errors[0];
});

/** A request as `user` (undefined: no token); see api() in stack.mjs. */
const call = (user, method, path, body) => api(API, user?.token, method, path, body);

/** A request with a raw body (not JSON-encoded here). */
async function raw(user, method, path, body, headers = {}, url = API) {
  const h = { ...headers };
  if (user) h.authorization = `Bearer ${user.token}`;
  if (body !== undefined) h['content-length'] = String(Buffer.byteLength(body));
  const res = await httpRequest(`${url}${path}`, { method, headers: h, body, timeout: 10000 });
  let json;
  try {
    json = JSON.parse(res.text);
  } catch {
    json = undefined;
  }
  return { ...res, json };
}

function expectError(res, status, what) {
  assert.equal(res.status, status, `${what}: expected ${status}, got ${res.status} ${res.text}`);
  assert.match(res.headers['content-type'] ?? '', /^application\/json/, `${what}: content type`);
  assert.equal(typeof res.json?.error, 'string', `${what}: no {error}: ${res.text}`);
}

async function createGroup(owner, name, members) {
  const res = await call(owner, 'POST', '/api/rooms', { name, members });
  assert.equal(res.status, 201, `POST /api/rooms: ${res.status} ${res.text}`);
  return res.json;
}

async function post(user, roomId, text, clientMsgId) {
  const res = await call(user, 'POST', `/api/rooms/${enc(roomId)}/messages`, {
    text,
    ...(clientMsgId !== undefined ? { clientMsgId } : {}),
  });
  assert.equal(res.status, 201, `POST message: ${res.status} ${res.text}`);
  return res.json;
}

/** Every message of a room, paging by `limit`; also returns the pages. */
async function allPages(user, roomId, limit) {
  const pages = [];
  let before = null;
  for (let i = 0; i < 1000; i++) {
    const q = `limit=${limit}${before === null ? '' : `&before=${before}`}`;
    const res = await call(user, 'GET', `/api/rooms/${enc(roomId)}/messages?${q}`);
    assert.equal(res.status, 200, `GET messages?${q}: ${res.status} ${res.text}`);
    pages.push(res.json);
    if (res.json.nextBefore === null) break;
    before = res.json.nextBefore;
  }
  return pages;
}

const sqlCount = async (query) => Number(await cluster.pg.sql(query));

describe('storage HTTP API', () => {
  test('401 without a token, with every kind of bad token, on every endpoint', async () => {
    const [alice] = await makeUsers(cluster, 'Alice');
    const { roomId } = await createGroup(alice, 'auth', []);
    const r = enc(roomId);
    const endpoints = [
      ['GET', '/api/rooms'],
      ['POST', '/api/rooms', { name: 'x', members: [] }],
      ['GET', `/api/rooms/${r}/messages`],
      ['POST', `/api/rooms/${r}/messages`, { text: 'hi' }],
      ['GET', `/api/rooms/${r}/messages/1/receipts`],
      ['POST', `/api/rooms/${r}/members`, { userId: 'bob' }],
      ['DELETE', `/api/rooms/${r}/members/${enc(alice.id)}`],
      ['POST', '/api/dm', { userId: 'bob' }],
    ];
    for (const [method, path, body] of endpoints) {
      const res = await call(undefined, method, path, body);
      expectError(res, 401, `${method} ${path} without a token`);
      assert.match(res.headers['www-authenticate'] ?? '', /^Bearer/);
    }
    for (const [what, token] of Object.entries(badTokens(alice.id, 'Alice'))) {
      for (const [method, path, body] of endpoints) {
        const res = await api(API, token, method, path, body);
        expectError(res, 401, `${method} ${path} with a token that is ${what}`);
      }
    }
    for (const header of ['Basic YWxpY2U6eA==', `Bearer`, `bearer ${alice.token}x`, alice.token]) {
      const res = await raw(undefined, 'GET', '/api/rooms', undefined, { authorization: header });
      expectError(res, 401, `Authorization: ${header.slice(0, 20)}`);
    }
    // nothing was done on their behalf
    assert.equal(await sqlCount(`SELECT count(*) FROM room_members WHERE room_id = '${roomId}'`), 1);
    const ok = await call(alice, 'GET', '/api/rooms');
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.filter((x) => x.roomId === roomId).length, 1);
  });

  test('a group: create, list, add and remove members', async () => {
    const [alice, bob, carol, dave, erin] = await makeUsers(cluster, 'Alice', 'Bob', 'Carol', 'Dave', 'Erin');
    const res = await call(alice, 'POST', '/api/rooms', { name: 'Trip ✈', members: [bob.id, carol.id, bob.id, alice.id] });
    assert.equal(res.status, 201, res.text);
    const g = res.json;
    assert.match(g.roomId, /^g_[A-Za-z0-9_-]{22}$/);
    assert.deepEqual(g, { roomId: g.roomId, type: 'group', name: 'Trip ✈', members: [alice.id, bob.id, carol.id] });
    // creator first, duplicates once: in the database too
    assert.equal(await cluster.pg.sql(`SELECT string_agg(user_id, ',' ORDER BY user_id) FROM room_members WHERE room_id = '${g.roomId}'`),
      [alice.id, bob.id, carol.id].sort().join(','));
    assert.equal(await cluster.pg.sql(`SELECT kind || '|' || name || '|' || created_by FROM rooms WHERE id = '${g.roomId}'`),
      `group|Trip ✈|${alice.id}`);
    // two groups never share an id
    const g2 = await createGroup(alice, 'Trip ✈', []);
    assert.notEqual(g2.roomId, g.roomId);
    assert.deepEqual(g2.members, [alice.id]);

    for (const u of [alice, bob, carol]) {
      const list = await call(u, 'GET', '/api/rooms');
      assert.equal(list.status, 200, list.text);
      const mine = list.json.find((x) => x.roomId === g.roomId);
      assert.deepEqual(mine, { roomId: g.roomId, type: 'group', name: 'Trip ✈', members: [alice.id, bob.id, carol.id], lastMessage: null, unreadCount: 0 });
    }
    assert.equal((await call(dave, 'GET', '/api/rooms')).json.length, 0);

    // bob (a member, not the creator) adds dave; twice is a conflict
    const add = await call(bob, 'POST', `/api/rooms/${enc(g.roomId)}/members`, { userId: dave.id });
    assert.equal(add.status, 201, add.text);
    assert.deepEqual(add.json, { roomId: g.roomId, userId: dave.id });
    expectError(await call(bob, 'POST', `/api/rooms/${enc(g.roomId)}/members`, { userId: dave.id }), 409, 'adding a member again');
    expectError(await call(carol, 'POST', `/api/rooms/${enc(g.roomId)}/members`, { userId: alice.id }), 409, 'adding the creator');
    // somebody outside cannot add, nor add themself
    expectError(await call(erin, 'POST', `/api/rooms/${enc(g.roomId)}/members`, { userId: erin.id }), 403, 'an outsider adding themself');
    const dl = await call(dave, 'GET', '/api/rooms');
    assert.deepEqual(dl.json.map((x) => x.roomId), [g.roomId]);
    assert.deepEqual(dl.json[0].members, [alice.id, bob.id, carol.id, dave.id]);

    // alice removes carol: carol loses access at once
    const del = await call(alice, 'DELETE', `/api/rooms/${enc(g.roomId)}/members/${enc(carol.id)}`);
    assert.equal(del.status, 204, del.text);
    assert.equal(del.text, '');
    expectError(await call(alice, 'DELETE', `/api/rooms/${enc(g.roomId)}/members/${enc(carol.id)}`), 404, 'removing a non-member');
    assert.equal((await call(carol, 'GET', '/api/rooms')).json.filter((x) => x.roomId === g.roomId).length, 0);
    expectError(await call(carol, 'GET', `/api/rooms/${enc(g.roomId)}/messages`), 403, 'history after removal');
    expectError(await call(carol, 'POST', `/api/rooms/${enc(g.roomId)}/messages`, { text: 'still here?' }), 403, 'posting after removal');
    expectError(await call(carol, 'DELETE', `/api/rooms/${enc(g.roomId)}/members/${enc(bob.id)}`), 403, 'removing after removal');
    // dave leaves by himself
    assert.equal((await call(dave, 'DELETE', `/api/rooms/${enc(g.roomId)}/members/${enc(dave.id)}`)).status, 204);
    assert.equal(await cluster.pg.sql(`SELECT string_agg(user_id, ',' ORDER BY user_id) FROM room_members WHERE room_id = '${g.roomId}'`),
      [alice.id, bob.id].sort().join(','));
  });

  test('group bodies are validated', async () => {
    const [alice] = await makeUsers(cluster, 'Alice');
    const bad = [
      [{}, 'no name'],
      [{ name: '' }, 'empty name'],
      [{ name: 7 }, 'name not a string'],
      [{ name: 'x'.repeat(129) }, 'name over 128 bytes'],
      [{ name: 'a\u0007b' }, 'control character in name'],
      [{ name: 'a\u0085b' }, 'C1 control in name'],
      [{ name: 'x', members: 'bob' }, 'members not an array'],
      [{ name: 'x', members: [1] }, 'member not a string'],
      [{ name: 'x', members: ['has space'] }, 'member id with a space'],
      [{ name: 'x', members: [''] }, 'empty member id'],
      [{ name: 'x', members: ['x'.repeat(129)] }, 'member id over 128'],
      [{ name: 'x', members: ['é'] }, 'non-ASCII member id'],
      [{ name: 'x', members: Array.from({ length: 1001 }, (_, i) => `u${i}`) }, 'over 1000 members'],
    ];
    const before = await sqlCount('SELECT count(*) FROM rooms');
    for (const [body, what] of bad) expectError(await call(alice, 'POST', '/api/rooms', body), 400, what);
    assert.equal(await sqlCount('SELECT count(*) FROM rooms'), before, 'a refused request created a room');
    // 1000 members is still fine
    const big = await createGroup(alice, 'big', Array.from({ length: 1000 }, (_, i) => `member-${i}`));
    assert.equal(big.members.length, 1001);
    assert.equal(await sqlCount(`SELECT count(*) FROM room_members WHERE room_id = '${big.roomId}'`), 1001);
  });

  test('posting: the ack, idempotency, history fields, text limits', async () => {
    const [alice, bob, mallory] = await makeUsers(cluster, 'Alice', 'Bob', 'Mallory');
    const g = await createGroup(alice, 'post', [bob.id]);
    const a1 = await post(alice, g.roomId, 'hello', 'c-1');
    assert.equal(typeof a1.id, 'string');
    assert.equal(a1.seq, 1);
    assert.equal(a1.roomId, g.roomId);
    assert.equal(a1.status, 'sent');
    assert.ok(Math.abs(Date.parse(a1.createdAt) - Date.now()) < 60000, a1.createdAt);
    // the same clientMsgId and text again: the original is answered, nothing
    // new stored (another text is refused: storage-idempotency.test.mjs)
    const again = await post(alice, g.roomId, 'hello', 'c-1');
    assert.equal(again.id, a1.id);
    assert.equal(again.seq, 1);
    const b1 = await post(bob, g.roomId, 'hi alice');
    assert.equal(b1.seq, 2);
    assert.equal(await sqlCount(`SELECT count(*) FROM messages WHERE room_id = '${g.roomId}'`), 2);

    const h = await call(bob, 'GET', `/api/rooms/${enc(g.roomId)}/messages`);
    assert.equal(h.status, 200, h.text);
    assert.equal(h.json.nextBefore, null);
    assert.deepEqual(h.json.messages.map((m) => m.seq), [2, 1]);
    const [m2, m1] = h.json.messages;
    assert.deepEqual(m1, {
      id: a1.id, seq: 1, roomId: g.roomId, userId: alice.id, firstName: 'Alice', lastName: null,
      text: 'hello', createdAt: a1.createdAt, clientMsgId: 'c-1',
    });
    assert.equal(m2.id, b1.id);
    assert.equal(m2.clientMsgId, null);
    assert.equal(m2.status, 'sent', 'bob\'s own message carries its status');
    assert.equal(m1.status, undefined, 'somebody else\'s message carries no status');

    // non-members, and rooms that do not exist, look the same
    expectError(await call(mallory, 'POST', `/api/rooms/${enc(g.roomId)}/messages`, { text: 'x' }), 403, 'non-member posting');
    expectError(await call(mallory, 'POST', `/api/rooms/g_doesnotexist/messages`, { text: 'x' }), 403, 'posting to no room');
    // text rules: 2000 bytes fits (--max-text-length 2000), 2001 does not
    const long = await post(alice, g.roomId, 'é'.repeat(1000));
    assert.equal(long.seq, 3);
    expectError(await call(alice, 'POST', `/api/rooms/${enc(g.roomId)}/messages`, { text: `${'é'.repeat(1000)}x` }), 413, 'text over the limit');
    for (const [body, what] of [
      [{}, 'no text'],
      [{ text: '' }, 'empty text'],
      [{ text: 5 }, 'text not a string'],
      [{ text: 'x', clientMsgId: 5 }, 'clientMsgId not a string'],
      [{ text: 'x', clientMsgId: 'has space' }, 'clientMsgId with a space'],
      [{ text: 'x', clientMsgId: '' }, 'empty clientMsgId'],
      [{ text: 'a\u0000b' }, 'NUL in text'],
    ]) {
      expectError(await call(alice, 'POST', `/api/rooms/${enc(g.roomId)}/messages`, body), 400, what);
    }
    assert.equal(await sqlCount(`SELECT count(*) FROM messages WHERE room_id = '${g.roomId}'`), 3);
  });

  test('history pages return every message exactly once', async () => {
    const [alice, bob] = await makeUsers(cluster, 'Alice', 'Bob');
    const g = await createGroup(alice, 'pages', [bob.id]);
    const acks = [];
    for (let i = 0; i < 120; i++) acks.push(await post(i % 3 === 0 ? bob : alice, g.roomId, `message #${i}`, `p-${i}`));
    assert.deepEqual(acks.map((a) => a.seq), Array.from({ length: 120 }, (_, i) => i + 1));

    const pages = await allPages(alice, g.roomId, 25);
    assert.deepEqual(pages.map((p) => p.messages.length), [25, 25, 25, 25, 20]);
    const seqs = pages.flatMap((p) => p.messages.map((m) => m.seq));
    assert.deepEqual(seqs, Array.from({ length: 120 }, (_, i) => 120 - i), 'newest first, each once');
    assert.deepEqual(pages.map((p) => p.nextBefore), [96, 71, 46, 21, null]);
    const byId = new Map(pages.flatMap((p) => p.messages).map((m) => [m.id, m]));
    assert.equal(byId.size, 120);
    for (const [i, a] of acks.entries()) {
      const m = byId.get(a.id);
      assert.equal(m.text, `message #${i}`);
      assert.equal(m.clientMsgId, `p-${i}`);
      assert.equal(m.userId, (i % 3 === 0 ? bob : alice).id);
    }
    // a page that ends exactly at the oldest message says so
    const exact = await allPages(alice, g.roomId, 40);
    assert.deepEqual(exact.map((p) => p.messages.length), [40, 40, 40]);
    assert.equal(exact[2].nextBefore, null);
    // defaults and bounds
    const def = await call(alice, 'GET', `/api/rooms/${enc(g.roomId)}/messages`);
    assert.equal(def.json.messages.length, 50);
    assert.equal(def.json.nextBefore, 71);
    const max = await call(alice, 'GET', `/api/rooms/${enc(g.roomId)}/messages?limit=200`);
    assert.equal(max.json.messages.length, 120);
    assert.equal(max.json.nextBefore, null);
    const b = await call(alice, 'GET', `/api/rooms/${enc(g.roomId)}/messages?before=3&limit=10`);
    assert.deepEqual(b.json.messages.map((m) => m.seq), [2, 1]);
    const none = await call(alice, 'GET', `/api/rooms/${enc(g.roomId)}/messages?before=1`);
    assert.deepEqual(none.json, { messages: [], nextBefore: null });
    for (const q of ['limit=0', 'limit=201', 'limit=-1', 'limit=1.5', 'limit=', 'limit=abc', 'limit=010', 'limit=%2B5',
      'limit=5&limit=6', 'before=0', 'before=-3', 'before=abc', 'before=1e3', 'before=9007199254740992',
      'before=99999999999999999999', 'before=%201', 'before=5&before=6']) {
      expectError(await call(alice, 'GET', `/api/rooms/${enc(g.roomId)}/messages?${q}`), 400, `?${q}`);
    }
    // unknown parameters are ignored
    assert.equal((await call(alice, 'GET', `/api/rooms/${enc(g.roomId)}/messages?limit=2&_=123`)).json.messages.length, 2);
  });

  test('my own messages carry their aggregate status; receipts say who and when', async () => {
    const [alice, bob, carol, mallory] = await makeUsers(cluster, 'Alice', 'Bob', 'Carol', 'Mallory');
    const g = await createGroup(alice, 'receipts', [bob.id, carol.id]);
    for (let i = 1; i <= 4; i++) await post(alice, g.roomId, `a${i}`);
    await post(bob, g.roomId, 'b5');
    // watermarks as the ingest leaves them after receipts (docs/storage.md):
    // bob got 1..4 and saw 1..2, carol got 1..3 and saw nothing
    await cluster.pg.sql(`
      UPDATE room_members SET delivered_seq = 4, seen_seq = 2 WHERE room_id = '${g.roomId}' AND user_id = '${bob.id}';
      UPDATE room_members SET delivered_seq = 3, seen_seq = 0 WHERE room_id = '${g.roomId}' AND user_id = '${carol.id}';
      INSERT INTO watermarks (room_id, user_id, kind, seq, at) VALUES
        ('${g.roomId}', '${bob.id}', 'd', 1, '2024-01-01T10:00:01Z'),
        ('${g.roomId}', '${bob.id}', 'd', 4, '2024-01-01T10:00:04.5Z'),
        ('${g.roomId}', '${bob.id}', 's', 2, '2024-01-01T10:01:00Z'),
        ('${g.roomId}', '${carol.id}', 'd', 3, '2024-01-01T10:00:03.25Z')
      ON CONFLICT DO NOTHING;`);
    const h = await call(alice, 'GET', `/api/rooms/${enc(g.roomId)}/messages`);
    const status = Object.fromEntries(h.json.messages.map((m) => [m.text, m.status]));
    // the lowest over bob and carol
    assert.deepEqual(status, { a1: 'delivered', a2: 'delivered', a3: 'delivered', a4: 'sent', b5: undefined });
    const hb = await call(bob, 'GET', `/api/rooms/${enc(g.roomId)}/messages`);
    assert.equal(hb.json.messages.find((m) => m.text === 'b5').status, 'sent');
    // bob's unread: alice's a3 and a4 are past his seen watermark; his own b5 does not count
    const bobRooms = await call(bob, 'GET', '/api/rooms');
    assert.equal(bobRooms.json.find((r) => r.roomId === g.roomId).unreadCount, 2);

    const rec = async (seq) => {
      const res = await call(alice, 'GET', `/api/rooms/${enc(g.roomId)}/messages/${seq}/receipts`);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.roomId, g.roomId);
      assert.equal(res.json.seq, seq);
      return res.json.receipts;
    };
    const ordered = [bob.id, carol.id].sort();
    const r2 = await rec(2);
    assert.deepEqual(r2.map((r) => r.userId), ordered);
    const by = (list) => Object.fromEntries(list.map((r) => [r.userId, r]));
    assert.deepEqual(by(r2)[bob.id], { userId: bob.id, status: 'seen', deliveredAt: '2024-01-01T10:00:04.500Z', seenAt: '2024-01-01T10:01:00.000Z' });
    assert.deepEqual(by(r2)[carol.id], { userId: carol.id, status: 'delivered', deliveredAt: '2024-01-01T10:00:03.250Z', seenAt: null });
    const r1 = by(await rec(1));
    assert.equal(r1[bob.id].deliveredAt, '2024-01-01T10:00:01.000Z', 'the first watermark move that reached it');
    const r4 = by(await rec(4));
    assert.deepEqual(r4[carol.id], { userId: carol.id, status: 'sent', deliveredAt: null, seenAt: null });
    assert.equal(r4[bob.id].status, 'delivered');
    // bob's message: the receipts are alice's and carol's, not bob's
    assert.deepEqual((await rec(5)).map((r) => r.userId), [alice.id, carol.id].sort());
    expectError(await call(alice, 'GET', `/api/rooms/${enc(g.roomId)}/messages/6/receipts`), 404, 'receipts of no message');
    expectError(await call(mallory, 'GET', `/api/rooms/${enc(g.roomId)}/messages/1/receipts`), 403, 'receipts for a non-member');
    for (const s of ['0', '-1', 'abc', '01', '1.0', '9007199254740992', '%31']) {
      expectError(await call(alice, 'GET', `/api/rooms/${enc(g.roomId)}/messages/${s}/receipts`), 400, `receipts of seq ${s}`);
    }
  });

  test('GET /api/rooms: most recent first, unread counts, cursor pages', async () => {
    const [alice, bob] = await makeUsers(cluster, 'Alice', 'Bob');
    const g1 = await createGroup(alice, 'one', [bob.id]);
    const g2 = await createGroup(alice, 'two', [bob.id]);
    const g3 = await createGroup(alice, 'three', [bob.id]);
    const g4 = await createGroup(bob, 'four (quiet)', [alice.id]);
    await post(alice, g1.roomId, 'one-a');
    await post(alice, g1.roomId, 'one-b');
    await post(bob, g3.roomId, 'three-bob');
    await post(alice, g3.roomId, 'three-alice');
    await post(alice, g2.roomId, 'two-a');
    const last = await post(bob, g2.roomId, 'two-bob');

    const res = await call(alice, 'GET', '/api/rooms');
    assert.equal(res.status, 200, res.text);
    // by last message; g4 has none: its creation (before every message) orders it
    assert.deepEqual(res.json.map((r) => r.roomId), [g2.roomId, g3.roomId, g1.roomId, g4.roomId]);
    const byRoom = Object.fromEntries(res.json.map((r) => [r.roomId, r]));
    assert.deepEqual(byRoom[g2.roomId].lastMessage, { id: last.id, seq: 2, userId: bob.id, text: 'two-bob', createdAt: last.createdAt });
    assert.equal(byRoom[g4.roomId].lastMessage, null);
    // unread: the others' messages after my seen watermark, which my own
    // messages move (g3: bob's message came before mine)
    assert.deepEqual(res.json.map((r) => r.unreadCount), [1, 0, 0, 0]);
    const bobs = await call(bob, 'GET', '/api/rooms');
    assert.deepEqual(Object.fromEntries(bobs.json.map((r) => [r.roomId, r.unreadCount])),
      { [g1.roomId]: 2, [g2.roomId]: 0, [g3.roomId]: 1, [g4.roomId]: 0 });
    // bob has seen g1 up to seq 1
    await cluster.pg.sql(`UPDATE room_members SET delivered_seq = 2, seen_seq = 1 WHERE room_id = '${g1.roomId}' AND user_id = '${bob.id}'`);
    const bobs2 = await call(bob, 'GET', '/api/rooms');
    assert.equal(bobs2.json.find((r) => r.roomId === g1.roomId).unreadCount, 1);

    // pages of 3 then 1, through the opaque cursor
    const p1 = await call(alice, 'GET', '/api/rooms?limit=3');
    assert.deepEqual(p1.json.map((r) => r.roomId), [g2.roomId, g3.roomId, g1.roomId]);
    const cursor = p1.headers['x-next-cursor'];
    assert.ok(cursor, 'a full page has X-Next-Cursor');
    const p2 = await call(alice, 'GET', `/api/rooms?limit=3&cursor=${enc(cursor)}`);
    assert.deepEqual(p2.json.map((r) => r.roomId), [g4.roomId]);
    assert.equal(p2.headers['x-next-cursor'], undefined, 'the last page has no cursor');
    const p3 = await call(alice, 'GET', '/api/rooms?limit=4');
    assert.equal(p3.json.length, 4);
    assert.equal(p3.headers['x-next-cursor'], undefined);
    for (const q of ['limit=0', 'limit=201', 'limit=x', 'cursor=', 'cursor=%%%', 'cursor=bm90LWEtY3Vyc29y',
      `cursor=${Buffer.from('12:has space').toString('base64url')}`, `cursor=${enc(cursor)}&cursor=${enc(cursor)}`]) {
      expectError(await call(alice, 'GET', `/api/rooms?${q}`), 400, `GET /api/rooms?${q}`);
    }
  });

  test('direct rooms: the id the gateways compute, created once', async () => {
    const [alice, bob] = await makeUsers(cluster, 'Alice', 'Bob');
    const res = await call(alice, 'POST', '/api/dm', { userId: bob.id });
    assert.equal(res.status, 201, res.text);
    assert.deepEqual(res.json, { roomId: dmRoomId(alice.id, bob.id) });
    const again = await call(bob, 'POST', '/api/dm', { userId: alice.id });
    assert.equal(again.status, 200, again.text);
    assert.deepEqual(again.json, res.json);
    const roomId = res.json.roomId;
    assert.equal(await sqlCount(`SELECT count(*) FROM room_members WHERE room_id = '${roomId}'`), 2);
    assert.equal(await cluster.pg.sql(`SELECT kind FROM rooms WHERE id = '${roomId}'`), 'dm');
    // the membership cache the gateways check
    assert.deepEqual((await cluster.redis.command('SMEMBERS', `{r:${roomId}}:members`)).sort(), [alice.id, bob.id].sort());
    assert.ok((await cluster.redis.command('SMEMBERS', `{u:${bob.id}}:rooms`)).includes(roomId));
    const list = await call(bob, 'GET', '/api/rooms');
    assert.deepEqual(list.json.map((r) => [r.roomId, r.type, r.name]), [[roomId, 'dm', null]]);
    await post(alice, roomId, 'hi bob');
    // members of a direct room are fixed
    expectError(await call(alice, 'POST', `/api/rooms/${enc(roomId)}/members`, { userId: 'carol' }), 400, 'adding to a direct room');
    expectError(await call(alice, 'DELETE', `/api/rooms/${enc(roomId)}/members/${enc(bob.id)}`), 400, 'removing from a direct room');
    for (const [body, what] of [[{ userId: alice.id }, 'with myself'], [{}, 'no userId'], [{ userId: 3 }, 'userId a number'], [{ userId: 'a b' }, 'userId with a space']]) {
      expectError(await call(alice, 'POST', '/api/dm', body), 400, `POST /api/dm ${what}`);
    }
  });

  test('403 from every room endpoint for a non-member, whether the room exists or not', async () => {
    const [alice, mallory] = await makeUsers(cluster, 'Alice', 'Mallory');
    const g = await createGroup(alice, 'private', []);
    await post(alice, g.roomId, 'secret');
    for (const roomId of [g.roomId, 'g_AAAAAAAAAAAAAAAAAAAAAA', dmRoomId(alice.id, 'somebody')]) {
      const r = enc(roomId);
      for (const [method, path, body] of [
        ['GET', `/api/rooms/${r}/messages`],
        ['POST', `/api/rooms/${r}/messages`, { text: 'let me in' }],
        ['GET', `/api/rooms/${r}/messages/1/receipts`],
        ['POST', `/api/rooms/${r}/members`, { userId: mallory.id }],
        ['DELETE', `/api/rooms/${r}/members/${enc(alice.id)}`],
        ['DELETE', `/api/rooms/${r}/members/${enc(mallory.id)}`],
      ]) {
        const res = await call(mallory, method, path, body);
        expectError(res, 403, `${method} ${path}`);
        assert.equal(res.json.error, 'not a member');
      }
    }
    assert.equal(await sqlCount(`SELECT count(*) FROM room_members WHERE room_id = '${g.roomId}'`), 1);
    assert.equal(await sqlCount(`SELECT count(*) FROM messages WHERE room_id = '${g.roomId}'`), 1);
    assert.equal((await call(mallory, 'GET', '/api/rooms')).json.length, 0);
  });

  test('SQL metacharacters and unicode in every parameter are data', async () => {
    const nasty = [`';DROP_TABLE_messages;--`, `%`, `_`, `\\`, `"`, `'`, `o'brien"x\\y%z_`, `$1`, `x--`, `*/`, `a%27b`];
    const users = await makeUsers(cluster, 'Alice');
    const alice = users[0];
    // users whose ids are those strings (the token's sub)
    const weird = await Promise.all(nasty.map(async (id, i) => ({ id: `${id}${i}`, token: await cluster.token(`${id}${i}`, `Nasty ${i}`) })));
    const tables = 'SELECT count(*) FROM pg_tables WHERE schemaname = \'public\'';
    const tablesBefore = await sqlCount(tables);
    const name = `Ünïcødé 'x'; DROP TABLE rooms; -- %_\\ "q" 🎉`;
    const g = await createGroup(alice, name, weird.map((u) => u.id));
    assert.equal(g.name, name);
    assert.deepEqual(g.members, [alice.id, ...weird.map((u) => u.id)]);
    const texts = [`'; DROP TABLE messages; --`, `%`, `_`, `\\`, `"'"`, `\\'; SELECT pg_sleep(5); --`, `$1 $2`, '𝄞 中文 עברית', 'nul? \\u0000 no', 'line\nbreak\ttab'];
    for (const [i, text] of texts.entries()) await post(weird[i % weird.length], g.roomId, text, `${nasty[i % nasty.length]}${i}`);
    const h = await call(weird[3], 'GET', `/api/rooms/${enc(g.roomId)}/messages?limit=200`);
    assert.equal(h.status, 200, h.text);
    assert.deepEqual(h.json.messages.map((m) => m.text).reverse(), texts);
    assert.deepEqual(h.json.messages.map((m) => m.clientMsgId).reverse(), texts.map((_, i) => `${nasty[i % nasty.length]}${i}`));
    assert.deepEqual(h.json.messages.map((m) => m.userId).reverse(), texts.map((_, i) => weird[i % weird.length].id));
    const rooms = await call(weird[0], 'GET', '/api/rooms');
    assert.equal(rooms.json[0].name, name);
    assert.equal(rooms.json[0].lastMessage.text, texts.at(-1));
    // every weird id works as a path parameter, percent-encoded
    for (const u of weird.slice(0, 4)) {
      const res = await call(alice, 'DELETE', `/api/rooms/${enc(g.roomId)}/members/${enc(u.id)}`);
      assert.equal(res.status, 204, `removing ${u.id}: ${res.status} ${res.text}`);
      const back = await call(alice, 'POST', `/api/rooms/${enc(g.roomId)}/members`, { userId: u.id });
      assert.equal(back.status, 201, `adding ${u.id}: ${back.text}`);
    }
    // a weird user id with nothing behind it: not a member, nothing leaks
    expectError(await call(alice, 'DELETE', `/api/rooms/${enc(g.roomId)}/members/${enc("x' OR '1'='1")}`), 400, 'user id with spaces');
    expectError(await call(alice, 'DELETE', `/api/rooms/${enc(g.roomId)}/members/${enc("x'OR'1'='1")}`), 404, 'quoted user id');
    // room ids: valid-looking ones are simply not rooms; invalid ones are 400
    for (const id of [`';DROP_TABLE_messages;--`, `%`, `_`, `\\`, `'`, `g_%`, `g_'||'`]) {
      expectError(await call(alice, 'GET', `/api/rooms/${enc(id)}/messages`), 403, `room ${id}`);
    }
    for (const path of [
      `/api/rooms/${enc("'; DROP TABLE messages; --")}/messages`, // spaces
      '/api/rooms/%C3%A9/messages', // é
      '/api/rooms/%zz/messages', // bad escape
      '/api/rooms/%2/messages',
      '/api/rooms/ab%00cd/messages', // NUL
      `/api/rooms/${'x'.repeat(129)}/messages`,
      `/api/rooms/${enc(g.roomId)}/members/%0A`,
      `/api/rooms/${enc(g.roomId)}/messages?before=${enc("1' OR '1'='1")}`,
      `/api/rooms/${enc(g.roomId)}/messages?limit=${enc('10; DROP TABLE messages')}`,
      `/api/rooms?cursor=${enc("'; DROP TABLE rooms; --")}`,
    ]) {
      const method = path.includes('/members/') ? 'DELETE' : 'GET';
      expectError(await call(alice, method, path), 400, `${method} ${path}`);
    }
    // tables intact, rows where they should be
    assert.equal(await sqlCount(tables), tablesBefore);
    assert.equal(await sqlCount(`SELECT count(*) FROM messages WHERE room_id = '${g.roomId}'`), texts.length);
    assert.ok(await sqlCount('SELECT count(*) FROM rooms') > 0);
    assert.equal(await cluster.pg.sql(`SELECT name FROM rooms WHERE id = '${g.roomId}'`), name);
  });

  test('malformed bodies are 400, oversized ones 413', async () => {
    const [alice, bob] = await makeUsers(cluster, 'Alice', 'Bob');
    const g = await createGroup(alice, 'bodies', [bob.id]);
    const routes = ['/api/rooms', `/api/rooms/${enc(g.roomId)}/messages`, `/api/rooms/${enc(g.roomId)}/members`, '/api/dm'];
    for (const path of routes) {
      for (const body of ['', '{', '{"text": "x",}', '[]', '"text"', '42', 'null', '{"text": "a", "text": "b"}', 'text=hello', '\ufeff{}',
      Buffer.from('{"name":"\xff","text":"\xff","userId":"\xff"}', 'latin1')]) {
        expectError(await raw(alice, 'POST', path, body, { 'content-type': 'application/json' }), 400, `POST ${path} ${JSON.stringify(body)}`);
      }
    }
    // over --max-body (64 KiB by default): refused before it is parsed
    const big = JSON.stringify({ text: 'x'.repeat(70000) });
    for (const path of routes) {
      const res = await raw(alice, 'POST', path, big, { 'content-type': 'application/json' });
      assert.equal(res.status, 413, `POST ${path} with 70 kB: ${res.status} ${res.text.slice(0, 200)}`);
    }
    assert.equal(await sqlCount(`SELECT count(*) FROM messages WHERE room_id = '${g.roomId}'`), 0);
    // and the replica with --max-body 2048
    const small = await raw(undefined, 'POST', '/api/rooms', JSON.stringify({ name: 'x'.repeat(2100) }),
      { 'x-user-id': 'dev-body-user' }, dev.url);
    assert.equal(small.status, 413, small.text);
  });

  test('404 for unknown paths, 405 for wrong methods', async () => {
    const [alice] = await makeUsers(cluster, 'Alice');
    for (const path of ['/api/nothing', '/api/rooms/', '/api/rooms/x', '/api/rooms/x/messages/1', '/api/rooms/x/messages/1/receipts/2', '/api//rooms', '/api/dm/x']) {
      expectError(await call(alice, 'GET', path), 404, `GET ${path}`);
    }
    for (const [method, path, allow] of [
      ['DELETE', '/api/rooms', 'GET, POST'],
      ['PUT', '/api/rooms/x/messages', 'GET, POST'],
      ['GET', '/api/dm', 'POST'],
      ['GET', '/api/rooms/x/members', 'POST'],
      ['POST', '/api/rooms/x/members/y', 'DELETE'],
      ['POST', '/api/rooms/x/messages/1/receipts', 'GET'],
    ]) {
      const res = await call(alice, method, path);
      expectError(res, 405, `${method} ${path}`);
      assert.equal(res.headers.allow, allow);
    }
  });

  test('--auth insecure-dev trusts X-User-Id; the rate limit is per user', async () => {
    const devCall = (user, method, path, body, headers = {}) =>
      raw(undefined, method, path, body === undefined ? undefined : JSON.stringify(body), { ...(user ? { 'x-user-id': user } : {}), ...headers }, dev.url);
    expectError(await devCall(undefined, 'GET', '/api/rooms'), 401, 'insecure-dev without X-User-Id');
    expectError(await devCall('has space', 'GET', '/api/rooms'), 401, 'insecure-dev with a bad X-User-Id');
    const u = `dev-${process.pid}`;
    const created = await devCall(u, 'POST', '/api/rooms', { name: 'dev room', members: [] }, { 'content-type': 'application/json' });
    assert.equal(created.status, 201, created.text);
    const list = await devCall(u, 'GET', '/api/rooms');
    assert.equal(list.status, 200, list.text);
    assert.deepEqual(list.json.map((r) => r.roomId), [created.json.roomId]);
    // burst 3, 1 per second: two are spent; of five at once, one gets
    // through (two if a second passed meanwhile), the others are refused
    const burst = await Promise.all(Array.from({ length: 5 }, () => devCall(u, 'GET', '/api/rooms')));
    const codes = burst.map((r) => r.status);
    assert.ok(codes.every((c) => c === 200 || c === 429), `statuses ${codes}`);
    assert.ok(codes.filter((c) => c === 429).length >= 3, `statuses ${codes}`);
    const limited = burst.find((r) => r.status === 429);
    expectError(limited, 429, 'over the burst');
    assert.equal(limited.headers['retry-after'], '1');
    // somebody else is not limited by u's bucket
    assert.equal((await devCall(`${u}-other`, 'GET', '/api/rooms')).status, 200);
    // the bucket refills at 1 per second
    await sleep(1100);
    assert.equal((await devCall(u, 'GET', '/api/rooms')).status, 200);
    expectError(await devCall(u, 'GET', '/api/rooms'), 429, 'again right after');
  });

  test('CORS: preflight 204 and headers for listed origins only', async () => {
    const [alice] = await makeUsers(cluster, 'Alice');
    for (const path of ['/api/rooms', '/api/rooms/x/messages', '/api/anything']) {
      const pre = await raw(undefined, 'OPTIONS', path, undefined, {
        origin: ORIGIN,
        'access-control-request-method': 'DELETE',
        'access-control-request-headers': 'authorization, content-type',
      });
      assert.equal(pre.status, 204, `OPTIONS ${path}: ${pre.status} ${pre.text}`);
      assert.equal(pre.headers['access-control-allow-origin'], ORIGIN);
      assert.equal(pre.headers['access-control-allow-credentials'], 'true');
      assert.match(pre.headers['access-control-allow-methods'], /\bDELETE\b/);
      assert.match(pre.headers['access-control-allow-methods'], /\bPOST\b/);
      assert.equal(pre.headers['access-control-allow-headers'], 'authorization, content-type');
      assert.match(pre.headers.vary ?? '', /Origin/);
    }
    const other = await raw(undefined, 'OPTIONS', '/api/rooms', undefined, { origin: 'http://other.example' });
    assert.equal(other.headers['access-control-allow-origin'], 'http://other.example');
    const evil = await raw(undefined, 'OPTIONS', '/api/rooms', undefined, { origin: 'http://evil.example', 'access-control-request-method': 'GET' });
    assert.equal(evil.status, 204);
    assert.equal(evil.headers['access-control-allow-origin'], undefined);
    assert.equal(evil.headers['access-control-allow-credentials'], undefined);
    const get = await raw(alice, 'GET', '/api/rooms', undefined, { origin: ORIGIN });
    assert.equal(get.status, 200);
    assert.equal(get.headers['access-control-allow-origin'], ORIGIN);
    assert.match(get.headers['access-control-expose-headers'] ?? '', /X-Next-Cursor/);
    // errors carry them too, so a page can read them
    const unauth = await raw(undefined, 'GET', '/api/rooms', undefined, { origin: ORIGIN });
    assert.equal(unauth.status, 401);
    assert.equal(unauth.headers['access-control-allow-origin'], ORIGIN);
    // the replica without --cors-origin gives none
    const none = await raw(undefined, 'OPTIONS', '/api/rooms', undefined, { origin: ORIGIN }, dev.url);
    assert.equal(none.status, 204);
    assert.equal(none.headers['access-control-allow-origin'], undefined);
  });

  test('sockets hear of membership changes and of messages posted over HTTP', async () => {
    const [alice, bob] = await makeUsers(cluster, 'Alice', 'Bob');
    const sock = await connectStored(cluster.url, bob);
    const g = await createGroup(alice, 'live', [bob.id]);
    assert.deepEqual(await sock.inbox.wait('roomAdded', { roomId: g.roomId }, 10000), { roomId: g.roomId, name: 'live', type: 'group' });
    const a = await post(alice, g.roomId, 'over http');
    const got = await sock.inbox.wait('messageReceived', { roomId: g.roomId }, 10000);
    assert.equal(got.id, a.id);
    assert.equal(got.text, 'over http');
    assert.equal(got.userId, alice.id);
    // removed: roomRemoved, and nothing more from the room
    assert.equal((await call(alice, 'DELETE', `/api/rooms/${enc(g.roomId)}/members/${enc(bob.id)}`)).status, 204);
    assert.deepEqual(await sock.inbox.wait('roomRemoved', { roomId: g.roomId }, 10000), { roomId: g.roomId });
    await post(alice, g.roomId, 'after bob left');
    await sock.inbox.none('messageReceived', { roomId: g.roomId }, 1000);
    // added back by alice
    assert.equal((await call(alice, 'POST', `/api/rooms/${enc(g.roomId)}/members`, { userId: bob.id })).status, 201);
    await sock.inbox.wait('roomAdded', { roomId: g.roomId }, 10000);
    const c = await post(alice, g.roomId, 'welcome back');
    assert.equal((await sock.inbox.wait('messageReceived', { roomId: g.roomId }, 10000)).id, c.id);
    // a member added back starts with nothing unread
    const rooms = await call(bob, 'GET', '/api/rooms');
    assert.equal(rooms.json.find((r) => r.roomId === g.roomId).unreadCount, 1);
    sock.disconnect();
  });

  test('posting answers 503 while Redis is down, and works once it is back', async () => {
    const [alice] = await makeUsers(cluster, 'Alice');
    const g = await createGroup(alice, 'redis outage', []);
    await cluster.redis.kill('SIGTERM');
    try {
      let res;
      const deadline = Date.now() + 10000;
      do {
        res = await call(alice, 'POST', `/api/rooms/${enc(g.roomId)}/messages`, { text: 'anyone?', clientMsgId: 'r-1' });
        if (res.status === 503) break;
        await sleep(100);
      } while (Date.now() < deadline);
      expectError(res, 503, 'POST message with Redis down');
      // reads need only PostgreSQL
      assert.equal((await call(alice, 'GET', `/api/rooms/${enc(g.roomId)}/messages`)).status, 200);
    } finally {
      await cluster.redis.start();
    }
    const deadline = Date.now() + 20000;
    let res;
    for (;;) {
      res = await call(alice, 'POST', `/api/rooms/${enc(g.roomId)}/messages`, { text: 'back', clientMsgId: 'r-2' });
      if (res.status === 201 || Date.now() > deadline) break;
      await sleep(200);
    }
    assert.equal(res.status, 201, `after Redis came back: ${res.status} ${res.text}`);
  });

  test('503 while the database is down, served again once it is back', async () => {
    const [alice] = await makeUsers(cluster, 'Alice');
    const g = await createGroup(alice, 'outage', []);
    // a fast shutdown (not a crash: this PostgreSQL runs without fsync)
    await cluster.pg.kill('SIGINT');
    try {
      let res;
      const deadline = Date.now() + 10000;
      do {
        res = await call(alice, 'GET', '/api/rooms');
        if (res.status === 503) break;
        await sleep(100);
      } while (Date.now() < deadline);
      expectError(res, 503, 'GET /api/rooms with the database down');
      expectError(await call(alice, 'POST', '/api/rooms', { name: 'x' }), 503, 'POST /api/rooms with the database down');
    } finally {
      await cluster.pg.start();
    }
    const deadline = Date.now() + 20000;
    let res;
    for (;;) {
      res = await call(alice, 'GET', `/api/rooms/${enc(g.roomId)}/messages`);
      if (res.status === 200 || Date.now() > deadline) break;
      await sleep(200);
    }
    assert.equal(res.status, 200, `after the database came back: ${res.status} ${res.text}`);
  });
});
