// Client-side helpers for the chat with storage (docs/storage.md): sockets
// whose inbox also records messageStatus and membership events, durable
// sends with their acks timed, and the storage HTTP API (history, receipts,
// groups) as a frontend calls it.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { sleep } from './harness.mjs';
import { client, connected, emitAck } from './client.mjs';
import { assertRecentIso, CHAT_EVENTS, Inbox } from './chat.mjs';
import { api, TEST_SECRET } from './stack.mjs';

/** What a socket receives from a gateway with --storage on. */
export const STORAGE_EVENTS = [...CHAT_EVENTS, 'messageStatus', 'roomAdded', 'roomRemoved'];

/**
 * A socket.io-client socket authenticated as `user`, with an Inbox of
 * STORAGE_EVENTS as socket.inbox and every CONNECT recorded in
 * socket.connects ({at, id, recovered}). Resolves once connected.
 */
export async function connectStored(url, user, opts = {}, t) {
  const socket = client(url, { auth: { token: user.token }, ...opts }, t);
  socket.inbox = new Inbox(socket, STORAGE_EVENTS);
  socket.connects = [];
  socket.on('connect', () => socket.connects.push({ at: Date.now(), id: socket.id, recovered: socket.recovered }));
  await connected(socket, 15000);
  return socket;
}

/** The direct room id as proto/chat_room.c computes it (key from the JWT
 * secret, as the test stacks run without --room-secret). */
export function dmRoomId(a, b) {
  const key = crypto.createHmac('sha256', TEST_SECRET).update('chat direct room ids v1').digest();
  const [x, y] = a < b ? [a, b] : [b, a];
  const mac = crypto.createHmac('sha256', key).update(`${x}\n${y}`).digest();
  const b64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  let id = 'dm_';
  for (let i = 0; i < 22; i++) id += b64[mac[i] & 63];
  return id;
}

/** A positive integer (seq), failing with `what` in the message. */
export function assertSeq(value, what = 'seq') {
  assert.ok(Number.isSafeInteger(value) && value >= 1, `${what} is not a positive integer: ${JSON.stringify(value)}`);
}

/**
 * The ack of a stored message must be {id, seq, roomId, createdAt,
 * status: "sent"}; returns it.
 */
export function assertStoredAck(res, what = 'sendMessage ack') {
  assert.ok(res && !res.error, `${what}: ${JSON.stringify(res)}`);
  assert.equal(typeof res.id, 'string', `${what} without id: ${JSON.stringify(res)}`);
  assert.ok(res.id.length > 0);
  assertSeq(res.seq, `${what} seq`);
  assert.equal(typeof res.roomId, 'string', `${what} without roomId: ${JSON.stringify(res)}`);
  assertRecentIso(res.createdAt, 120000, `${what} createdAt`);
  assert.equal(res.status, 'sent', `${what} status: ${JSON.stringify(res)}`);
  return res;
}

/** sendMessage `payload` that must be stored; resolves to the checked ack. */
export async function sendStored(socket, payload, ms = 15000) {
  const [res] = await emitAck(socket, 'sendMessage', [payload], ms);
  return assertStoredAck(res, `sendMessage ${JSON.stringify(payload).slice(0, 200)}`);
}

/** emit `event` `payload` with an ack; resolves to the ack's first argument. */
export async function request(socket, event, payload, ms = 10000) {
  const [res] = await emitAck(socket, event, [payload], ms);
  return res;
}

/**
 * Send `count` messages from `socket` to `target` ({roomId} or
 * {targetUserId}) with at most `window` acks outstanding, one every
 * `gapMs` at most. Each gets clientMsgId `${tag}-${i}` and text
 * `${tag} #${i}`. Resolves to [{i, clientMsgId, text, sentAt, ack, ackAt,
 * error}] in sending order once every ack came back (or timed out after
 * `ackMs`: error says so). `onAck(rec)` runs for each ack.
 */
export async function sendMany(socket, target, count, { tag, window = 10, gapMs = 0, ackMs = 30000, onAck } = {}) {
  const sent = [];
  const inflight = new Set();
  for (let i = 0; i < count; i++) {
    while (inflight.size >= window) await Promise.race(inflight);
    const rec = { i, clientMsgId: `${tag}-${i}`, text: `${tag} #${i}`, sentAt: Date.now(), ack: null, ackAt: null, error: null };
    sent.push(rec);
    const p = emitAck(socket, 'sendMessage', [{ ...target, text: rec.text, clientMsgId: rec.clientMsgId }], ackMs)
      .then(([res]) => {
        rec.ack = res;
        rec.ackAt = Date.now();
        onAck?.(rec);
      })
      .catch((err) => {
        rec.error = err.message;
      })
      .finally(() => inflight.delete(p));
    inflight.add(p);
    if (gapMs > 0) await sleep(gapMs);
  }
  await Promise.all(inflight);
  return sent;
}

const enc = encodeURIComponent;

/**
 * Resolve once `user` gets 200 from GET /api/rooms at `apiUrl`: after
 * PostgreSQL or storage was down, HAProxy routes /api/ again only after
 * storage's /readyz passed its health checks again.
 */
export async function apiReady(apiUrl, user, ms = 20000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await api(apiUrl, user.token, 'GET', '/api/rooms?limit=1').catch((err) => ({ status: err.message, text: '' }));
    if (last.status === 200) return;
    if (Date.now() > deadline) throw new Error(`GET /api/rooms did not answer 200 within ${ms} ms (last: ${last.status} ${last.text.slice(0, 200)})`);
    await sleep(100);
  }
}

/** POST /api/rooms: a group `name` with `memberIds`; resolves to the 201 body. */
export async function createGroup(apiUrl, owner, name, memberIds) {
  const res = await api(apiUrl, owner.token, 'POST', '/api/rooms', { name, members: memberIds });
  assert.equal(res.status, 201, `POST /api/rooms: ${res.status} ${res.text}`);
  assert.equal(typeof res.json?.roomId, 'string', `POST /api/rooms: ${res.text}`);
  return res.json;
}

/**
 * Every message of `roomId` as `user` sees it, oldest first, read newest
 * first through GET /api/rooms/{roomId}/messages pages of `limit`.
 */
export async function history(apiUrl, user, roomId, { limit = 200 } = {}) {
  const out = [];
  let before = null;
  for (let page = 0; page < 10000; page++) {
    const query = `limit=${limit}${before === null ? '' : `&before=${before}`}`;
    const res = await api(apiUrl, user.token, 'GET', `/api/rooms/${enc(roomId)}/messages?${query}`);
    assert.equal(res.status, 200, `GET messages ${query}: ${res.status} ${res.text}`);
    const { messages, nextBefore } = res.json ?? {};
    assert.ok(Array.isArray(messages), `GET messages ${query}: ${res.text.slice(0, 500)}`);
    for (let i = 1; i < messages.length; i++) {
      assert.ok(messages[i].seq < messages[i - 1].seq, `history page not newest first: ${messages[i - 1].seq} then ${messages[i].seq}`);
    }
    out.push(...messages);
    if (nextBefore === null || nextBefore === undefined || messages.length === 0) break;
    assert.ok(before === null || nextBefore < before, `nextBefore ${nextBefore} does not move back from ${before}`);
    before = nextBefore;
  }
  return out.reverse();
}

/** The newest message of `roomId` as `user` sees it (history, limit 1). */
export async function latest(apiUrl, user, roomId) {
  const res = await api(apiUrl, user.token, 'GET', `/api/rooms/${enc(roomId)}/messages?limit=1`);
  assert.equal(res.status, 200, `GET messages: ${res.status} ${res.text}`);
  return res.json.messages[0];
}

/** The message with `seq` in `roomId` as `user` sees it. */
export async function messageAt(apiUrl, user, roomId, seq) {
  const res = await api(apiUrl, user.token, 'GET', `/api/rooms/${enc(roomId)}/messages?limit=1&before=${seq + 1}`);
  assert.equal(res.status, 200, `GET messages before ${seq + 1}: ${res.status} ${res.text}`);
  const m = res.json.messages[0];
  assert.equal(m?.seq, seq, `no message ${seq}: ${res.text}`);
  return m;
}

/** GET /api/rooms/{roomId}/messages/{seq}/receipts as `user`: {userId: receipt}. */
export async function receipts(apiUrl, user, roomId, seq) {
  const res = await api(apiUrl, user.token, 'GET', `/api/rooms/${enc(roomId)}/messages/${seq}/receipts`);
  assert.equal(res.status, 200, `GET receipts of ${seq}: ${res.status} ${res.text}`);
  assert.equal(res.json.roomId, roomId);
  assert.equal(res.json.seq, seq);
  assert.ok(Array.isArray(res.json.receipts), res.text);
  return Object.fromEntries(res.json.receipts.map((r) => [r.userId, r]));
}

/**
 * The messageReceived events of `roomId` a socket got must be exactly the
 * messages `want` (history entries or acks: {id, seq}), each once, in seq
 * order. `what` names the socket in failures.
 */
export function assertGotExactly(socket, roomId, want, what) {
  const got = socket.inbox.all('messageReceived', { roomId });
  const counts = new Map();
  for (const m of got) counts.set(m.id, (counts.get(m.id) ?? 0) + 1);
  const dups = [...counts].filter(([, n]) => n > 1).map(([id, n]) => `${id} x${n}`);
  assert.deepEqual(dups, [], `${what} got messages more than once`);
  const wantIds = new Set(want.map((m) => m.id));
  const missing = want.filter((m) => !counts.has(m.id)).map((m) => m.seq);
  assert.deepEqual(missing, [], `${what} never got these seqs (of ${want.length})`);
  const extra = got.filter((m) => !wantIds.has(m.id)).map((m) => `${m.id}/${m.seq}`);
  assert.deepEqual(extra, [], `${what} got messages that are not expected`);
  for (let i = 1; i < got.length; i++) {
    assert.ok(got[i].seq > got[i - 1].seq, `${what} got seq ${got[i - 1].seq} before ${got[i].seq} (position ${i})`);
  }
  const bySeq = new Map(want.map((m) => [m.id, m.seq]));
  for (const m of got) assert.equal(m.seq, bySeq.get(m.id), `${what}: message ${m.id} came with seq ${m.seq}`);
}
