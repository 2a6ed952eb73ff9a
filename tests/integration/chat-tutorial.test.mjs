// The frontend of the Socket.IO chat tutorials, unchanged, against the
// cluster the way scripts/dev.sh runs it: `--auth insecure-dev` (identity
// from userId/firstName in each payload, no token), two gateways behind
// HAProxy, io(BASE_URL) with default transports (polling, then the upgrade)
// and no cookies kept. Each user is a worker thread running
// lib/tutorial-frontend.mjs, like a browser tab of its own.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { withTimeout } from './lib/harness.mjs';
import { startCluster } from './lib/stack.mjs';

const T = { timeout: 20000 };
const FRONTEND = fileURLToPath(new URL('./lib/tutorial-frontend.mjs', import.meta.url));

/** A tab of the tutorial frontend for `user`, chatting with `targetUserId`. */
class Tab {
  constructor(BASE_URL, user, targetUserId) {
    this.events = [];
    this.waiters = new Set();
    this.worker = new Worker(FRONTEND, { workerData: { BASE_URL, user, targetUserId }, stdout: true });
    this.worker.stdout.resume(); // the tutorial's console.log
    this.worker.on('message', (msg) => {
      this.events.push(msg);
      for (const w of this.waiters) w();
    });
    this.worker.on('error', (err) => this.events.push({ type: 'worker error', message: err.message }));
  }

  async waitFor(pred, ms, what) {
    const p = new Promise((resolve) => {
      const check = () => {
        const hit = this.events.find(pred);
        if (hit) {
          this.waiters.delete(check);
          resolve(hit);
        }
      };
      this.waiters.add(check);
      check();
    });
    return withTimeout(p, ms, `${what}; events so far: ${JSON.stringify(this.events).slice(0, 1000)}`);
  }

  connected() {
    return this.waitFor((e) => e.type === 'connect', 8000, 'connect');
  }

  received(text, ms = 5000) {
    return this.waitFor((e) => e.type === 'messageReceived' && e.message.text === text, ms, `message "${text}"`);
  }

  send(text) {
    this.worker.postMessage({ type: 'send', text });
  }

  async transport() {
    this.events = this.events.filter((e) => e.type !== 'transport');
    this.worker.postMessage({ type: 'transport' });
    return (await this.waitFor((e) => e.type === 'transport', 2000, 'transport name')).name;
  }

  async close() {
    this.worker.postMessage({ type: 'close' });
    await withTimeout(once(this.worker, 'exit'), 2000, 'worker exit').catch(() => this.worker.terminate());
  }
}

describe('the tutorial frontend, unchanged, through HAProxy (--auth insecure-dev)', () => {
  let cl;
  before(async () => {
    cl = await startCluster({ gateways: 2, auth: 'insecure-dev' });
  });
  after(() => cl?.stop());

  test('the gateway warns loudly about --auth insecure-dev', T, () => {
    for (const gw of cl.gateways) assert.match(gw.log, /insecure/i, 'no warning in the log');
  });

  test('two users chat: both receive each message with firstName and text', T, async (t) => {
    const alice = { _id: '65f1a2b3c4d5e6f708192a3b', firstName: 'Alice', lastName: 'Liddell' };
    const bob = { _id: '65f1a2b3c4d5e6f708192a3c', firstName: 'Bob', lastName: 'Builder' };
    const a = new Tab(cl.url, alice, bob._id);
    const b = new Tab(cl.url, bob, alice._id);
    t.after(() => Promise.all([a.close(), b.close()]));
    await Promise.all([a.connected(), b.connected()]);
    // joinChat went out right after io(); give the joins a moment (the
    // tutorial has no ack to wait for)
    await new Promise((r) => setTimeout(r, 500));

    a.send('Hello Bob');
    const [atB, atA] = await Promise.all([b.received('Hello Bob'), a.received('Hello Bob')]);
    assert.equal(atB.message.firstName, 'Alice');
    assert.equal(atA.message.firstName, 'Alice');
    // the tutorial shows `${firstName} ${lastName}`: the lastName it sent comes back
    assert.equal(atB.message.lastName, 'Liddell');

    b.send('Hi Alice!');
    for (const tab of [a, b]) assert.equal((await tab.received('Hi Alice!')).message.firstName, 'Bob');

    // several in a row, after the upgrade to websocket
    for (let i = 0; i < 5; i++) (i % 2 ? b : a).send(`line ${i}`);
    for (const tab of [a, b]) for (let i = 0; i < 5; i++) await tab.received(`line ${i}`);
    assert.equal(await a.transport(), 'websocket');
    assert.equal(await b.transport(), 'websocket');
    const texts = (tab) => tab.events.filter((e) => e.type === 'messageReceived').map((e) => e.message.text);
    assert.deepEqual(texts(a), texts(b), 'both saw the same messages in the same order');
    assert.equal(texts(a).length, 7, `messages: ${texts(a)}`);
    assert.ok(!a.events.some((e) => e.type === 'connect_error' || e.type === 'worker error'), JSON.stringify(a.events));
  });

  test('a third user does not receive the conversation of two others', T, async (t) => {
    const u = (n) => ({ _id: `65f1a2b3c4d5e6f70819${n}`, firstName: `User${n}`, lastName: 'X' });
    const [x, y, z] = [u('aaaa'), u('bbbb'), u('cccc')];
    const a = new Tab(cl.url, x, y._id);
    const b = new Tab(cl.url, y, x._id);
    const c = new Tab(cl.url, z, x._id);
    t.after(() => Promise.all([a.close(), b.close(), c.close()]));
    await Promise.all([a.connected(), b.connected(), c.connected()]);
    await new Promise((r) => setTimeout(r, 500));
    a.send('just for y');
    await b.received('just for y');
    // z's page is the chat with x: its message goes to room (z, x), which
    // x has not opened (x's page is the chat with y)
    c.send('hi x');
    await c.received('hi x');
    await new Promise((r) => setTimeout(r, 300));
    const texts = (tab) => tab.events.filter((e) => e.type === 'messageReceived').map((e) => e.message.text);
    assert.deepEqual(texts(c), ['hi x'], 'z received the conversation of x and y');
    assert.deepEqual(texts(a), ['just for y']);
    assert.deepEqual(texts(b), ['just for y']);
  });
});
