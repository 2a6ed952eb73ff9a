// Client-side helpers for the chat application: socket.io-client sockets
// that authenticate like a frontend does, acks as values, and an inbox that
// records every chat event a socket receives so tests can wait for one or
// assert that none arrived.

import assert from 'node:assert/strict';
import { sleep, withTimeout } from './harness.mjs';
import { client, connected, emitAck } from './client.mjs';

let userSeq = 0;

/**
 * Fresh users for one test (ids unique in the process, so presence and
 * rooms of other tests never interfere): [{id, name, token}] for `names`,
 * with a token from the cluster's secret under --auth jwt.
 */
export async function makeUsers(cluster, ...names) {
  const n = ++userSeq;
  return Promise.all(
    names.map(async (name) => {
      const id = `${name.toLowerCase().replace(/[^a-z0-9]+/g, '') || 'user'}-${process.pid}-${n}`;
      const token = cluster.auth === 'jwt' ? await cluster.token(id, name) : undefined;
      return { id, name, token };
    }),
  );
}

/** connectChat() as `user` (its token in the CONNECT auth payload). */
export function connectAs(url, user, opts = {}, t) {
  return connectChat(url, { token: user.token, ...opts }, t);
}

/** The events the chat application emits to clients. */
export const CHAT_EVENTS = ['messageReceived', 'showTyping', 'presence'];

/**
 * A socket.io-client socket for `url` (see client() in client.mjs) with
 * `token` in the CONNECT auth payload when given, and an Inbox on it as
 * socket.inbox. Not yet connected: await connected(socket).
 */
export function chatClient(url, { token, ...opts } = {}, t) {
  const socket = client(url, { ...(token !== undefined ? { auth: { token } } : {}), ...opts }, t);
  socket.inbox = new Inbox(socket);
  return socket;
}

/** chatClient(), connected (rejects on connect_error). */
export async function connectChat(url, opts = {}, t) {
  const socket = chatClient(url, opts, t);
  await connected(socket);
  return socket;
}

/**
 * Connect with `opts` and expect a connect_error; resolves to its message.
 * Rejects if the socket connects instead.
 */
export async function connectError(url, opts = {}, t, ms = 5000) {
  const socket = chatClient(url, { reconnection: false, ...opts }, t);
  const p = new Promise((resolve, reject) => {
    socket.once('connect', () => reject(new Error('connected although it should have been refused')));
    socket.once('connect_error', (err) => resolve(err));
  });
  try {
    return await withTimeout(p, ms, 'connect_error');
  } finally {
    socket.disconnect();
  }
}

/** Emit `event` with one `payload` and an ack; resolves to the ack's first argument. */
export async function ack(socket, event, payload, ms = 5000) {
  const args = await emitAck(socket, event, payload === undefined ? [] : [payload], ms);
  return args[0];
}

/** joinChat {targetUserId}; resolves to the roomId of its ack (fails on an error ack). */
export async function joinChat(socket, targetUserId) {
  const res = await ack(socket, 'joinChat', { targetUserId });
  assert.ok(res && typeof res.roomId === 'string' && res.roomId.length > 0, `joinChat ack: ${JSON.stringify(res)}`);
  return res.roomId;
}

/** sendMessage `payload`; resolves to the ack (which may be {error}). */
export function sendMessage(socket, payload, ms = 5000) {
  return ack(socket, 'sendMessage', payload, ms);
}

/** An ISO 8601 date-time string within `slackMs` of now. */
export function assertRecentIso(value, slackMs = 60000, what = 'createdAt') {
  assert.equal(typeof value, 'string', `${what} is not a string: ${JSON.stringify(value)}`);
  assert.match(value, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$/, `${what} is not ISO 8601`);
  const at = Date.parse(value);
  assert.ok(Math.abs(at - Date.now()) < slackMs, `${what} ${value} is not close to now`);
}

/** sendMessage that must succeed: checks the ack's shape and returns it. */
export async function sendOk(socket, payload) {
  const res = await sendMessage(socket, payload);
  assert.ok(res && !res.error, `sendMessage ${JSON.stringify(payload)} acked ${JSON.stringify(res)}`);
  assert.equal(typeof res.id, 'string', `ack without id: ${JSON.stringify(res)}`);
  assert.ok(res.id.length > 0);
  assert.equal(typeof res.roomId, 'string', `ack without roomId: ${JSON.stringify(res)}`);
  assertRecentIso(res.createdAt, 60000, 'ack createdAt');
  return res;
}

/** Match an object against `want`: every key of `want` must be equal. */
export function matches(obj, want) {
  if (typeof want === 'function') return want(obj);
  if (!obj || typeof obj !== 'object') return false;
  return Object.entries(want).every(([k, v]) => {
    try {
      assert.deepStrictEqual(obj[k], v);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * Every chat event a socket receives, in order. wait() takes the first
 * matching event not taken yet; none() asserts that no (untaken) matching
 * event arrives within a delay.
 */
export class Inbox {
  constructor(socket, events = CHAT_EVENTS) {
    this.socket = socket;
    this.items = []; // {event, data, taken}
    this.waiters = new Set();
    for (const event of events) {
      socket.on(event, (data) => {
        this.items.push({ event, data, taken: false });
        for (const w of this.waiters) w();
      });
    }
  }

  /** The payloads of `event` received so far (taken or not) that match `want`. */
  all(event, want = {}) {
    return this.items.filter((i) => i.event === event && matches(i.data, want)).map((i) => i.data);
  }

  find(event, want) {
    return this.items.find((i) => !i.taken && i.event === event && matches(i.data, want));
  }

  /** Resolve to the first untaken `event` whose payload matches `want`. */
  async wait(event, want = {}, ms = 5000) {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = this.find(event, want);
      if (hit) {
        hit.taken = true;
        return hit.data;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        const seen = this.items.filter((i) => i.event === event).map((i) => i.data);
        throw new Error(
          `timed out after ${ms} ms waiting for ${event} ${typeof want === 'function' ? want : JSON.stringify(want)}; ` +
            `${event} received: ${JSON.stringify(seen).slice(0, 2000)}`,
        );
      }
      await new Promise((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.waiters.add(wake);
      });
    }
  }

  /** Fail if an untaken `event` matching `want` is there after `ms`. */
  async none(event, want = {}, ms = 500) {
    await sleep(ms);
    const hit = this.find(event, want);
    assert.equal(hit, undefined, `unexpected ${event}: ${JSON.stringify(hit?.data)}`);
  }

  /** Mark everything received so far as taken. */
  clear() {
    for (const i of this.items) i.taken = true;
  }
}
