// "Delivered" and "seen" mean a person's client got the message (DESIGN.md,
// Status semantics): a long-polling client that closes its page is never
// counted as having received what was sent after. Over HAProxy the load
// balancer must end the dead page's parked GET at the gateway (option
// abortonclose); on any path a polling payload counts as read only when the
// client polls again (the GET after the one that carried it). What a closed
// page never read is synced when the user comes back, and only then do the
// statuses move. Bob is a raw Engine.IO polling client (so the test decides
// when each GET is sent and when the page dies); Alice uses socket.io-client.
// Real Redis, PostgreSQL, chat-storage, a gateway and HAProxy.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { closeAllClients } from './lib/client.mjs';
import { makeUsers } from './lib/chat.mjs';
import { eioUrl, parseOpen, push, SEP } from './lib/eio.mjs';
import { httpRequest } from './lib/harness.mjs';
import { startCluster } from './lib/stack.mjs';
import { connectStored, receipts, request, sendStored } from './lib/storage-chat.mjs';

const T = { timeout: 60000 };
const WAIT = 10000;
const QUIET = 1500; // 30 receipt intervals: what would have moved has moved
const PATH = '/socket.io/';

after(() => closeAllClients());

/** A GET whose connection the test can drop, as a closing page does. */
function openGet(url) {
  let req;
  const done = new Promise((resolve, reject) => {
    req = http.request(url, { agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  done.catch(() => {});
  return { done, drop: () => req.destroy() };
}

/**
 * A Socket.IO client over raw long-polling: every GET is explicit. Packets
 * received are kept in order (pings are answered, not kept).
 */
class RawPolling {
  constructor(base, token) {
    this.gw = { url: base };
    this.token = token;
    this.packets = [];
    this.nextAck = 1;
  }

  async open() {
    const hs = await httpRequest(eioUrl(this.gw, PATH));
    assert.equal(hs.status, 200, hs.text);
    this.sid = parseOpen(hs.text).sid;
    await this.post(`40${JSON.stringify({ token: this.token })}`);
    await this.until((p) => p.startsWith('40{'), 'CONNECT reply');
  }

  async post(body) {
    const res = await push(this.gw, PATH, this.sid, body);
    assert.equal(res.status, 200, `POST ${body}: ${res.status} ${res.text}`);
  }

  /** Sends one GET; returns a handle ({done, drop}); its packets are kept once it returns. */
  get() {
    const g = openGet(eioUrl(this.gw, PATH, { sid: this.sid }));
    g.done = g.done.then(async (res) => {
      assert.equal(res.status, 200, res.text);
      for (const p of res.text.split(SEP)) {
        if (p === '2') await this.post('3');
        else this.packets.push(p);
      }
      return res;
    });
    g.done.catch(() => {}); // a dropped page
    return g;
  }

  /** GETs until a packet matching `pred` arrived; returns it (removed). */
  async until(pred, what) {
    const deadline = Date.now() + WAIT;
    for (;;) {
      const i = this.packets.findIndex(pred);
      if (i >= 0) return this.packets.splice(i, 1)[0];
      if (Date.now() > deadline) throw new Error(`raw polling: no ${what}; got ${JSON.stringify(this.packets)}`);
      await this.get().done;
    }
  }

  async emit(event, payload) {
    const id = this.nextAck++;
    await this.post(`42${id}${JSON.stringify([event, payload])}`);
    const ack = await this.until((p) => p.startsWith(`43${id}[`), `ack ${id} of ${event}`);
    return JSON.parse(ack.slice(`43${id}`.length))[0];
  }

  /** The messageReceived events received so far, removed. */
  takeMessages() {
    const got = [];
    this.packets = this.packets.filter((p) => {
      if (!p.startsWith('42["messageReceived"')) return true;
      got.push(JSON.parse(p.slice(2))[1]);
      return false;
    });
    return got;
  }
}

describe('a closed polling page is never delivered', () => {
  let cl;
  before(async () => {
    cl = await startCluster({ gateways: 1, workers: 1, storage: true, pgFast: true });
  });
  after(() => cl?.stop());

  const statusFor = async (alice, bob, room, seq) => (await receipts(cl.apiUrl, alice, room, seq))[bob.id].status;

  /**
   * Bob (raw polling at `base`) has the chat with Alice open and reads m0
   * (delivered and seen once he polls again); then his page goes, by
   * `close(bob, alice)`, which returns the message Alice sent meanwhile.
   * That message stays "sent" until Bob comes back.
   */
  async function scenario(t, base, close) {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connectStored(cl.url, alice, { transports: ['websocket'] }, t);
    const room = (await request(a, 'joinChat', { targetUserId: bob.id }))?.roomId;
    assert.equal(typeof room, 'string');

    const b = new RawPolling(base, bob.token);
    await b.open();
    const opened = await b.emit('joinChat', { targetUserId: alice.id });
    assert.equal(opened?.roomId, room, JSON.stringify(opened));

    // the live path: a polling payload counts once the next GET comes
    const m0 = await sendStored(a, { roomId: room, text: 'are you there?', clientMsgId: 'p-0' });
    await b.until((p) => p.includes(m0.id), 'm0');
    const page = b.get(); // the page's next poll: proves m0 was read
    await a.inbox.wait('messageStatus', { seq: m0.seq, status: 'seen' }, WAIT);

    const m1 = await close({ a, b, page, room, alice, bob });
    await a.inbox.none('messageStatus', { seq: m1.seq }, QUIET);
    assert.equal(await statusFor(alice, bob, room, m1.seq), 'sent', 'history: a closed page got nothing');

    // Bob comes back: the connect-time sync brings m1, and only now it moves
    const back = await connectStored(cl.url, bob, { transports: ['polling'] }, t);
    const got = await back.inbox.wait('messageReceived', { id: m1.id }, WAIT);
    assert.equal(got.text, 'hello?');
    const st = await a.inbox.wait('messageStatus', { seq: m1.seq }, WAIT);
    assert.equal(st.status, 'delivered', JSON.stringify(st));
    await request(back, 'joinChat', { targetUserId: alice.id });
    await a.inbox.wait('messageStatus', { seq: m1.seq, status: 'seen' }, WAIT);
    assert.equal(await statusFor(alice, bob, room, m1.seq), 'seen');
  }

  test('over HAProxy: the page closes with its GET parked, then Alice sends', T, async (t) => {
    await scenario(t, cl.url, async ({ a, page, room, bob }) => {
      page.drop(); // the page is gone: no close packet, its poll's TCP connection ends
      // HAProxy ends the parked GET at the gateway too: Bob is offline at
      // once, not after pingInterval + pingTimeout
      await a.inbox.wait('presence', { userId: bob.id, online: false }, 5000);
      return sendStored(a, { roomId: room, text: 'hello?', clientMsgId: 'p-1' });
    });
  });

  test('directly: the answer carrying the message is the last thing the page got', T, async (t) => {
    const gw = cl.gateways[0].url;
    await scenario(t, gw, async ({ a, b, page, room }) => {
      const m1 = await sendStored(a, { roomId: room, text: 'hello?', clientMsgId: 'p-1' });
      const res = await page.done; // the parked GET answers with m1 ...
      assert.ok(res.text.includes(m1.id), `the poll carried m1: ${res.text}`);
      assert.equal(b.takeMessages().length, 1);
      return m1; // ... and the page closes before it polls again
    });
  });

  // Opening a room marks seen what was sent before the open, never what
  // comes after: the open's receipt reaches storage in stream order (at
  // once), not coalesced up to --receipt-interval later, when it used to
  // cover a message the client had not got yet.
  test('a message sent right after the room was opened is seen only once the client read it (4 pairs)', T, async (t) => {
    const gw = cl.gateways[0].url;
    await Promise.all([0, 1, 2, 3].map(async (i) => {
      const [alice, bob] = await makeUsers(cl, `Alice${i}`, `Bob${i}`);
      const a = await connectStored(cl.url, alice, { transports: ['websocket'] }, t);
      const room = (await request(a, 'joinChat', { targetUserId: bob.id }))?.roomId;
      const b = new RawPolling(gw, bob.token);
      await b.open();
      const opened = await b.emit('joinChat', { targetUserId: alice.id }); // no GET left parked
      assert.equal(opened?.roomId, room);
      const m = await sendStored(a, { roomId: room, text: `right after you opened ${i}`, clientMsgId: `o-${i}` });
      await a.inbox.none('messageStatus', { seq: m.seq }, QUIET);
      assert.equal(await statusFor(alice, bob, room, m.seq), 'sent', 'seen before Bob\'s client had it');
      await b.until((p) => p.includes(m.id), 'm');
      b.get(); // proves the answer carrying m was read
      const st = await a.inbox.wait('messageStatus', { seq: m.seq }, WAIT);
      assert.equal(st.status, 'delivered', JSON.stringify(st));
      await a.inbox.wait('messageStatus', { seq: m.seq, status: 'seen' }, WAIT);
    }));
  });

  test('the upgrade to WebSocket counts what went out on polling', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const a = await connectStored(cl.url, alice, { transports: ['websocket'] }, t);
    const room = (await request(a, 'joinChat', { targetUserId: bob.id }))?.roomId;
    const m1 = await sendStored(a, { roomId: room, text: 'while you were away', clientMsgId: 'u-1' });
    // polling first; the sync is answered on a GET and the client upgrades
    // (it never polls again): the upgrade proves the answer was read
    const b = await connectStored(cl.url, bob, { transports: ['polling', 'websocket'], withCredentials: true }, t);
    await b.inbox.wait('messageReceived', { id: m1.id }, WAIT);
    const st = await a.inbox.wait('messageStatus', { seq: m1.seq }, WAIT);
    assert.equal(st.status, 'delivered');
  });
});
