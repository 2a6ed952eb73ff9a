// The chat application at its limits: one Redis and two `--app chat`
// gateways with JWT authentication. gw1 has small output limits (and a rate
// limit high enough to let one user push megabytes through a room); gw2 has
// the default rate limit and --max-payload.
//
//   - a slow reader (a raw WebSocket that stops reading) is cut by the output
//     limits while the sender in its room gets every one of her messages, the
//     gateway stays healthy and its memory bounded;
//   - a client flooding invalid events gets one error per event (`invalid
//     payload` until its burst is spent, then `rate limited`) and users next
//     to it keep chatting with sub-second round trips;
//   - a message over --max-payload closes that WebSocket with 1009 and nobody
//     else's.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cleanup, httpRequest, openWs, sleep, until, withTimeout } from './lib/harness.mjs';
import { closeAllClients } from './lib/client.mjs';
import { ack, connectAs, joinChat, makeUsers, sendMessage, sendOk } from './lib/chat.mjs';
import { startCluster } from './lib/stack.mjs';

const MAX_PAYLOAD = 100000; // gw1
const GW1_ARGS = [
  '--max-payload', String(MAX_PAYLOAD),
  '--output-soft-limit', '65536',
  '--output-soft-seconds', '1',
  '--output-hard-limit', '262144',
  '--rate-limit', '100000',
  '--rate-burst', '100000',
];

after(() => closeAllClients());

/** The value of a counter (summed over its label sets) in /metrics of `gw`. */
async function metric(gw, name) {
  const res = await httpRequest(`${gw.url}/metrics`, { timeout: 2000 });
  assert.equal(res.status, 200);
  const re = new RegExp(`^${name}(\\{[^}]*\\})?\\s+(\\S+)$`, 'gm');
  let sum = null;
  for (const m of res.text.matchAll(re)) sum = (sum ?? 0) + Number(m[2]);
  assert.notEqual(sum, null, `${name} is not in /metrics:\n${res.text}`);
  return sum;
}

/**
 * Take messages from a RawWs until one satisfies `pred` (text frames only);
 * the ones skipped (presence and the like) are returned too.
 */
async function nextMatching(ws, pred, ms = 5000, what = 'a matching message') {
  const deadline = Date.now() + ms;
  const skipped = [];
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}; skipped ${JSON.stringify(skipped).slice(0, 1000)}`);
    const msg = await ws.next(left, what);
    if (msg.text !== undefined && pred(msg.text)) return { text: msg.text, skipped };
    skipped.push(msg.text ?? `<binary ${msg.binary.length}>`);
  }
}

/**
 * A chat user on a raw WebSocket (Engine.IO v4, Socket.IO v5 by hand): the
 * open packet, CONNECT with the token in the auth payload, CONNECT answered.
 * Pings are answered while the socket is read.
 */
async function rawChatUser(gw, user, t) {
  const ws = await openWs(`${gw.wsUrl}/socket.io/?EIO=4&transport=websocket`, { autoPong: true });
  cleanup(t, ws);
  const open = await ws.nextText();
  assert.match(open, /^0\{/, `open packet ${open}`);
  ws.send(`40${JSON.stringify({ token: user.token })}`);
  const { text } = await nextMatching(ws, (s) => s.startsWith('40') || s.startsWith('44'), 5000, 'the CONNECT answer');
  assert.match(text, /^40\{"sid":/, `CONNECT answered ${text}`);
  return ws;
}

/** Emit `event` with ack id `id` on a raw socket and wait for `43<id>[…]`; resolves to the ack's first argument. */
async function rawAck(ws, id, event, payload, ms = 5000) {
  ws.send(`42${id}${JSON.stringify([event, payload])}`);
  const { text } = await nextMatching(ws, (s) => s.startsWith(`43${id}[`), ms, `the ack ${id} of ${event}`);
  return JSON.parse(text.slice(`43${id}`.length))[0];
}

/** A round trip between two socket.io users in `room`: a sends, b receives. Resolves to the ms it took. */
async function roundTrip(a, b, room, label) {
  const start = Date.now();
  const sent = await sendOk(a, { roomId: room, text: label });
  await b.inbox.wait('messageReceived', { id: sent.id }, 5000);
  return Date.now() - start;
}

describe('chat limits (one Redis, two gateways)', () => {
  let cl;
  let gw1;
  let gw2;
  before(async () => {
    cl = await startCluster({
      gateways: 2,
      haproxy: false,
      gatewayArgs: (i) => (i === 0 ? GW1_ARGS : []),
    });
    [gw1, gw2] = cl.gateways;
  });
  after(() => cl?.stop());

  test('a slow reader is disconnected, the room goes on', { timeout: 30000 }, async (t) => {
    const [alice, bob, carol] = await makeUsers(cl, 'Alice', 'Bob', 'Carol');
    const a = await connectAs(gw1.url, alice, { transports: ['websocket'] }, t);
    const room = await joinChat(a, bob.id);

    // Bob joins the room over a raw WebSocket, then stops reading it (and so
    // stops answering pings too)
    const bws = await rawChatUser(gw1, bob, t);
    const joined = await rawAck(bws, 1, 'joinChat', { targetUserId: alice.id });
    assert.equal(joined?.roomId, room, `Bob's joinChat ack ${JSON.stringify(joined)}`);
    const first = await sendOk(a, { roomId: room, text: 'still reading?' });
    await nextMatching(bws, (s) => s.startsWith('42["messageReceived"') && s.includes(first.id), 5000, 'the first message at Bob');
    bws.ws._socket.pause();

    const dropsBefore = await metric(gw1, 'chat_gateway_output_limit_drops_total');
    const asan = gw1.underAsan();
    const rssBase = gw1.rssKiB();
    let rssPeak = rssBase;

    // Alice sends 3000 messages of ~3 KB, 50 at a time, each acknowledged
    const COUNT = 3000;
    const BATCH = 50;
    const filler = 'x'.repeat(3000);
    const acks = [];
    let sentWhenCut = null; // messages acknowledged when the drop counter first moved
    let msWhenCut = null;
    const t0 = Date.now();
    for (let i = 0; i < COUNT; i += BATCH) {
      const batch = [];
      for (let j = i; j < Math.min(i + BATCH, COUNT); j++) {
        batch.push(sendMessage(a, { roomId: room, text: `${j} ${filler}`, clientMsgId: `m${j}` }, 10000));
      }
      for (const res of await Promise.all(batch)) {
        assert.ok(res && typeof res.id === 'string' && !res.error, `sendMessage acked ${JSON.stringify(res)}`);
        acks.push(res);
      }
      rssPeak = Math.max(rssPeak, gw1.rssKiB());
      if (sentWhenCut === null && (await metric(gw1, 'chat_gateway_output_limit_drops_total')) > dropsBefore) {
        sentWhenCut = acks.length;
        msWhenCut = Date.now() - t0;
      }
    }
    const sendMs = Date.now() - t0;

    // every one of Alice's messages came back to her, once
    await until(() => a.inbox.all('messageReceived', { userId: alice.id }).length >= COUNT + 1, 15000,
      `Alice's ${COUNT} messages to come back to her`);
    await sleep(200);
    const mine = a.inbox.all('messageReceived', { userId: alice.id }).filter((m) => m.id !== first.id);
    assert.equal(mine.length, COUNT, `Alice received ${mine.length} of her ${COUNT} messages`);
    assert.equal(new Set(mine.map((m) => m.id)).size, COUNT, 'duplicate message ids');
    assert.deepEqual(new Set(mine.map((m) => m.id)), new Set(acks.map((r) => r.id)), 'received ids differ from acked ids');
    assert.deepEqual(mine.map((m) => m.clientMsgId), acks.map((_, j) => `m${j}`), 'messages out of order or missing');
    assert.ok(a.connected, 'Alice was disconnected');

    // the gateway cut Bob
    await until(async () => (await metric(gw1, 'chat_gateway_output_limit_drops_total')) > dropsBefore, 5000,
      'chat_gateway_output_limit_drops_total to count Bob');
    const drops = (await metric(gw1, 'chat_gateway_output_limit_drops_total')) - dropsBefore;
    assert.ok(drops >= 1);
    assert.ok(drops <= 1, `${drops} clients were cut; only Bob reads slowly`);
    // once Bob reads again he gets what the kernel buffered, then the end
    bws.ws._socket.resume();
    const closed = await bws.waitClose(10000);
    const bobGot = bws.queue.filter((m) => m.text?.startsWith('42["messageReceived"')).length;

    // the gateway is healthy: Carol and Alice chat on it
    assert.ok(gw1.alive, 'gateway 1 died');
    assert.equal((await httpRequest(`${gw1.url}/healthz`)).status, 200);
    const c = await connectAs(gw1.url, carol, { transports: ['websocket'] }, t);
    const room2 = await joinChat(c, alice.id);
    assert.equal(await joinChat(a, carol.id), room2);
    const hi = await sendOk(c, { roomId: room2, text: 'hi Alice' });
    await a.inbox.wait('messageReceived', { id: hi.id });
    const back = await sendOk(a, { roomId: room2, text: 'hi Carol' });
    await c.inbox.wait('messageReceived', { id: back.id });
    // and the old room still works for Alice
    const last = await sendOk(a, { roomId: room, text: 'anyone?' });
    await a.inbox.wait('messageReceived', { id: last.id });

    const growthMiB = (rssPeak - rssBase) / 1024;
    const packetKiB = (JSON.stringify(['messageReceived', mine[0]]).length + 2) / 1024;
    t.diagnostic(
      `Alice sent ${COUNT} messages (~${((COUNT * packetKiB) / 1024).toFixed(1)} MiB per member) in ${sendMs} ms; ` +
        `Bob was cut after ${sentWhenCut} acked messages (~${((sentWhenCut * packetKiB) / 1024).toFixed(1)} MiB, ${msWhenCut} ms); ` +
        `Bob had ${bobGot} messages buffered before the close (code ${closed.code}); ` +
        `log: ${/event=output_\w+_limit[^\n]*/.exec(gw1.log)?.[0]}; ` +
        `gateway RSS ${rssBase} KiB -> peak ${rssPeak} KiB (+${growthMiB.toFixed(1)} MiB)`,
    );
    assert.notEqual(sentWhenCut, null);
    assert.ok(bobGot < COUNT, `Bob got all ${bobGot} messages although he did not read`);
    if (asan) {
      t.diagnostic('ASan build: quarantine keeps freed memory, RSS bound not checked');
    } else {
      assert.ok(growthMiB < 64, `gateway RSS grew by ${growthMiB.toFixed(1)} MiB: output to a slow reader is not bounded`);
    }
  });

  test('a flood of invalid events: one error each, neighbours keep chatting', { timeout: 30000 }, async (t) => {
    const [mallory, dave, erin] = await makeUsers(cl, 'Mallory', 'Dave', 'Erin');
    const d = await connectAs(gw2.url, dave, { transports: ['websocket'] }, t);
    const e = await connectAs(gw2.url, erin, { transports: ['websocket'] }, t);
    const room = await joinChat(d, erin.id);
    assert.equal(await joinChat(e, dave.id), room);
    await roundTrip(d, e, room, 'warm-up');

    const m = await rawChatUser(gw2, mallory, t);
    const bad = [
      {},
      'not an object',
      null,
      [1, 2],
      { text: '' },
      { text: 7 },
      { targetUserId: 42, text: 'x' },
      { targetUserId: 'has space', text: 'x' },
      { roomId: ['x'], text: 'x' },
      { targetUserId: dave.id, text: 'x', seq: -1 },
      { targetUserId: dave.id, msg: 'nul \u0000 inside' },
    ];
    // Mallory writes invalid events as fast as the gateway answers them (at
    // least FLOOD, and on until the round trips below are done), with at most
    // WINDOW unanswered at a time so the backlog stays bounded. Her replies
    // are sorted as they arrive: exactly one error per event, the ack for
    // events with an ack id, a chatError event for the others.
    const FLOOD = 5000;
    const WINDOW = 5000;
    const withAck = (i) => i % 2 === 0;
    const acks = new Map();
    const chatErrors = [];
    const other = [];
    let replies = 0;
    const onReply = (data, isBinary) => {
      const text = isBinary ? `<binary ${data.length}>` : data.toString();
      if (text === '2') return; // ping, answered by RawWs
      const am = /^43(\d+)(\[.*)$/s.exec(text);
      if (am) {
        if (acks.has(am[1])) other.push(`second ack ${text}`);
        acks.set(am[1], JSON.parse(am[2])[0]);
        replies++;
      } else if (text.startsWith('42["chatError"')) {
        chatErrors.push(JSON.parse(text.slice(2))[1]);
        replies++;
      } else {
        other.push(text);
      }
    };
    m.ws.on('message', onReply);
    let sent = 0;
    let flooding = true;
    const t0 = Date.now();
    const flood = (async () => {
      while ((flooding || sent < FLOOD) && m.isOpen) {
        if (sent - replies >= WINDOW || m.ws.bufferedAmount > 256 * 1024) {
          await sleep(1);
          continue;
        }
        for (let n = 0; n < 500; n++, sent++) {
          const body = JSON.stringify(['sendMessage', bad[sent % bad.length]]);
          m.send(withAck(sent) ? `42${sent}${body}` : `42${body}`);
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();

    // round trips between Dave and Erin during the flood
    const times = [];
    await until(() => sent >= 1000, 5000, 'the flood to start');
    for (let k = 0; k < 8; k++) {
      times.push(await roundTrip(k % 2 ? e : d, k % 2 ? d : e, room, `during ${k}`));
      await sleep(60);
    }
    const sentDuringTrips = sent;
    flooding = false;
    await flood;
    const total = sent;
    await until(() => replies >= total || !m.isOpen, 20000, `one reply per flood event (${replies} of ${total})`);
    await sleep(100);
    m.ws.off('message', onReply);
    m.queue.length = 0;
    const floodMs = Date.now() - t0;
    assert.ok(m.isOpen, `the flooder was disconnected (${JSON.stringify(m.closeInfo)}) after ${replies} of ${total} replies`);
    assert.deepEqual(other.filter((x) => x.startsWith('second ack')), []);
    const errors = {};
    for (const [id, res] of acks) {
      assert.ok(withAck(Number(id)), `ack for event ${id} which asked for none`);
      assert.ok(res && ['invalid payload', 'rate limited'].includes(res.error), `ack ${id}: ${JSON.stringify(res)}`);
      errors[res.error] = (errors[res.error] ?? 0) + 1;
    }
    for (const ce of chatErrors) {
      assert.equal(ce.event, 'sendMessage', JSON.stringify(ce));
      assert.ok(['invalid payload', 'rate limited'].includes(ce.error), JSON.stringify(ce));
      errors[ce.error] = (errors[ce.error] ?? 0) + 1;
    }
    assert.equal(acks.size, Math.ceil(total / 2));
    assert.equal(chatErrors.length, Math.floor(total / 2));
    assert.ok(errors['invalid payload'] >= 1, `no "invalid payload": ${JSON.stringify(errors)}`);
    // default --rate-burst 40 and --rate-limit 20: all but those are refused unparsed
    const allowed = 40 + Math.ceil((20 * floodMs) / 1000) + 5;
    assert.ok(errors['invalid payload'] <= allowed, `more than ${allowed} events passed the rate limit: ${JSON.stringify(errors)}`);
    assert.ok(other.every((s) => !s.startsWith('42["messageReceived"')), 'an invalid message was delivered');

    t.diagnostic(
      `flood: ${total} invalid sendMessage (${sentDuringTrips} by the end of the round trips) answered in ${floodMs} ms ` +
        `(${JSON.stringify(errors)}); round trips during it ${times.join(', ')} ms`,
    );
    assert.ok(Math.max(...times) < 1000, `round trips during the flood: ${times.join(', ')} ms`);

    // Mallory is still connected, and once the bucket refills her valid events pass
    await sleep(300);
    const ok = await rawAck(m, 999999, 'joinChat', { targetUserId: dave.id });
    assert.match(ok?.roomId ?? '', /^dm_/, `joinChat after the flood: ${JSON.stringify(ok)}`);
    assert.ok(gw2.alive, 'gateway 2 died');
    await roundTrip(d, e, room, 'after');
  });

  test('a message over --max-payload closes that WebSocket with 1009, nobody else\'s', { timeout: 20000 }, async (t) => {
    const [oscar, fay, gus] = await makeUsers(cl, 'Oscar', 'Fay', 'Gus');
    const f = await connectAs(gw1.url, fay, { transports: ['websocket'] }, t);
    const g = await connectAs(gw1.url, gus, { transports: ['polling'] }, t);
    const room = await joinChat(f, gus.id);
    assert.equal(await joinChat(g, fay.id), room);

    const o = await rawChatUser(gw1, oscar, t);
    const frame = (id, size) => {
      const head = `42${id}["sendMessage",{"targetUserId":"${fay.id}","text":"`;
      const tail = '"}]';
      return head + 'y'.repeat(size - head.length - tail.length) + tail;
    };
    // exactly --max-payload bytes: read, and refused by the chat (text too long)
    const atLimit = frame(1, MAX_PAYLOAD);
    assert.equal(Buffer.byteLength(atLimit), MAX_PAYLOAD);
    o.send(atLimit);
    const { text } = await nextMatching(o, (s) => s.startsWith('431['), 5000, 'the ack of the message at the limit');
    assert.deepEqual(JSON.parse(text.slice(3)), [{ error: 'text too long' }]);
    assert.ok(o.isOpen);

    // one byte more: the connection is closed with 1009
    const overLimit = frame(2, MAX_PAYLOAD + 1);
    o.send(overLimit);
    const closed = await o.waitClose(5000);
    assert.equal(closed.code, 1009, `close ${JSON.stringify(closed)}`);

    // a much larger one, from a second connection of the same user
    const o2 = await rawChatUser(gw1, oscar, t);
    o2.send(frame(3, 5 * MAX_PAYLOAD));
    assert.equal((await o2.waitClose(5000)).code, 1009);

    // nobody else noticed
    assert.ok(f.connected && g.connected);
    await roundTrip(f, g, room, 'still here');
    await roundTrip(g, f, room, 'me too');
    assert.equal(f.inbox.all('messageReceived', { userId: oscar.id }).length, 0);
    assert.ok(gw1.alive);
  });
});
