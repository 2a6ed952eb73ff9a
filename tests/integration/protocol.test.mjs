// Engine.IO v4 and Socket.IO v5 at the wire level, with raw HTTP and raw
// WebSocket frames: the behaviours the official protocol test suites check
// (scripts/run-protocol-suites.sh runs those), written as our own tests and
// with the timing and error bodies pinned down further.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  httpRequest,
  openWs,
  RawWs,
  sleep,
  startGateway,
  withTimeout,
} from './lib/harness.mjs';
import {
  eioUrl,
  expectEioError,
  parseOpen,
  poll,
  pollData,
  pollingHandshake,
  push,
  SEP,
  sioConnect,
  wsHandshake,
} from './lib/eio.mjs';

const PING_INTERVAL = 300;
const PING_TIMEOUT = 200;
const T = { timeout: 10000 };
const HANDSHAKE_KEYS = ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades'];

describe('Engine.IO (engine-echo)', () => {
  const P = '/engine.io/';
  let gw;
  before(async () => {
    gw = await startGateway([
      '--app', 'engine-echo',
      '--ping-interval', String(PING_INTERVAL),
      '--ping-timeout', String(PING_TIMEOUT),
    ]);
  });
  after(() => gw?.stopClean());

  describe('handshake', () => {
    test('over polling: open packet with sid, upgrades ["websocket"], timings, maxPayload', T, async () => {
      const res = await httpRequest(eioUrl(gw, P));
      assert.equal(res.status, 200);
      const hs = parseOpen(res.text);
      assert.deepEqual(Object.keys(hs).sort(), HANDSHAKE_KEYS);
      assert.equal(typeof hs.sid, 'string');
      assert.ok(hs.sid.length > 0);
      assert.deepEqual(hs.upgrades, ['websocket']);
      assert.equal(hs.pingInterval, PING_INTERVAL);
      assert.equal(hs.pingTimeout, PING_TIMEOUT);
      assert.equal(hs.maxPayload, 1000000);
      const other = await pollingHandshake(gw, P);
      assert.notEqual(other.sid, hs.sid, 'two sessions got the same sid');
    });

    test('over websocket: open packet with upgrades []', T, async (t) => {
      const { ws, handshake } = await wsHandshake(gw, P);
      t.after(() => ws.close());
      assert.deepEqual(Object.keys(handshake).sort(), HANDSHAKE_KEYS);
      assert.equal(typeof handshake.sid, 'string');
      assert.deepEqual(handshake.upgrades, []);
      assert.equal(handshake.pingInterval, PING_INTERVAL);
      assert.equal(handshake.pingTimeout, PING_TIMEOUT);
      assert.equal(handshake.maxPayload, 1000000);
    });

    test('missing or bad EIO → 400 code 5', T, async () => {
      for (const EIO of [null, 'abc', '3', '']) {
        const res = await httpRequest(eioUrl(gw, P, { EIO }));
        expectEioError(assert, res, 5, 'Unsupported protocol version');
      }
    });

    test('missing or unknown transport → 400 code 0', T, async () => {
      for (const transport of [null, 'abc', 'flashsocket']) {
        const res = await httpRequest(eioUrl(gw, P, { transport }));
        expectEioError(assert, res, 0, 'Transport unknown');
      }
    });

    test('handshake by POST → 400 code 2; by PUT → 400', T, async () => {
      const res = await httpRequest(eioUrl(gw, P), { method: 'POST', body: '4x' });
      expectEioError(assert, res, 2, 'Bad handshake method');
      const put = await httpRequest(eioUrl(gw, P), { method: 'PUT', body: '4x' });
      assert.equal(put.status, 400);
    });

    test('websocket with bad EIO or transport: refused (400) or closed without an open packet', T, async (t) => {
      for (const query of [{ EIO: null }, { EIO: 'abc' }, { transport: 'abc' }]) {
        const url = eioUrl(gw, P, query, { ws: true });
        const ws = new RawWs(url);
        t.after(() => ws.close());
        const refused = await ws.opened.then(
          () => null,
          (e) => e,
        );
        if (refused) {
          if (refused.status !== undefined) assert.equal(refused.status, 400, `${url}: ${refused.message}`);
        } else {
          await ws.waitClose(2000);
          const open = ws.queue.find((m) => m.text?.startsWith('0'));
          assert.equal(open, undefined, `${url}: the gateway opened a session`);
        }
      }
    });

    test('unknown sid → 400 code 1 for GET, POST and websocket', T, async () => {
      expectEioError(assert, await poll(gw, P, 'no-such-sid'), 1, 'Session ID unknown');
      expectEioError(assert, await push(gw, P, 'no-such-sid', '4x'), 1, 'Session ID unknown');
      const err = await openWs(eioUrl(gw, P, { sid: 'no-such-sid' }, { ws: true })).then(
        (ws) => (ws.close(), null),
        (e) => e,
      );
      assert.ok(err, 'websocket with an unknown sid was accepted');
      assert.equal(err.status, 400);
    });
  });

  describe('messages over polling', () => {
    test('one text packet: POST answers "ok", GET returns it', T, async () => {
      const { sid } = await pollingHandshake(gw, P);
      const res = await push(gw, P, sid, '4hello');
      assert.equal(res.status, 200);
      assert.equal(res.text, 'ok');
      const got = await poll(gw, P, sid);
      assert.equal(got.status, 200);
      assert.equal(got.text, '4hello');
    });

    test('several packets separated by 0x1e come back in one payload, in order', T, async () => {
      const { sid } = await pollingHandshake(gw, P);
      const payload = ['4test1', '4test2', '4test3'].join(SEP);
      assert.equal((await push(gw, P, sid, payload)).text, 'ok');
      const got = await poll(gw, P, sid);
      assert.equal(got.text, payload);
    });

    test('binary packets travel as "b" + base64 records', T, async () => {
      const { sid } = await pollingHandshake(gw, P);
      const payload = `4hello${SEP}bAQIDBA==${SEP}b${Buffer.from([0, 255, 128]).toString('base64')}`;
      assert.equal((await push(gw, P, sid, payload)).text, 'ok');
      assert.equal((await poll(gw, P, sid)).text, payload);
    });

    test('UTF-8 text survives (multi-byte characters)', T, async () => {
      const { sid } = await pollingHandshake(gw, P);
      const payload = `4héllo ☃ 😀${SEP}4€`;
      assert.equal((await push(gw, P, sid, payload)).text, 'ok');
      assert.equal((await poll(gw, P, sid)).text, payload);
    });

    test('a GET waits for data (long poll) and returns when a message arrives', T, async () => {
      const { sid } = await pollingHandshake(gw, P);
      const started = Date.now();
      const pending = poll(gw, P, sid);
      await sleep(100);
      assert.equal((await push(gw, P, sid, '4late')).text, 'ok');
      const got = await pending;
      assert.equal(got.text, '4late');
      assert.ok(Date.now() - started >= 90, 'the GET returned before any data existed');
    });

    test('invalid packet closes the session; a later GET gets 400', T, async () => {
      const { sid } = await pollingHandshake(gw, P);
      // the POST itself may get 400, "ok" or a dropped connection; the session must end
      const res = await push(gw, P, sid, 'abc').catch(() => null);
      if (res) assert.ok([200, 400].includes(res.status), `POST answered ${res.status}`);
      expectEioError(assert, await poll(gw, P, sid), 1, 'Session ID unknown');
    });

    test('duplicate concurrent GET: second gets 400, first returns "1", session closed', T, async () => {
      const { sid } = await pollingHandshake(gw, P);
      const first = poll(gw, P, sid);
      await sleep(50);
      const second = await poll(gw, P, sid, { t: 'burst' });
      assert.equal(second.status, 400);
      const firstRes = await first;
      assert.equal(firstRes.status, 200);
      assert.equal(firstRes.text, '1');
      expectEioError(assert, await poll(gw, P, sid), 1, 'Session ID unknown');
    });

    test('close packet "1": the pending GET returns "6", then the session is gone', T, async () => {
      const { sid } = await pollingHandshake(gw, P);
      const pending = poll(gw, P, sid);
      await sleep(50);
      const res = await push(gw, P, sid, '1');
      assert.equal(res.status, 200);
      const got = await pending;
      assert.equal(got.status, 200);
      assert.equal(got.text, '6');
      expectEioError(assert, await poll(gw, P, sid), 1, 'Session ID unknown');
    });
  });

  describe('messages over websocket', () => {
    test('text packet echoed', T, async (t) => {
      const { ws } = await wsHandshake(gw, P);
      t.after(() => ws.close());
      ws.send('4hello');
      assert.equal(await ws.nextText(), '4hello');
      ws.send('4héllo ☃ 😀');
      assert.equal(await ws.nextText(), '4héllo ☃ 😀');
    });

    test('binary frame echoed as a binary frame', T, async (t) => {
      const { ws } = await wsHandshake(gw, P);
      t.after(() => ws.close());
      ws.send(Buffer.from([1, 2, 3, 4]));
      assert.deepEqual(await ws.nextBinary(), Buffer.from([1, 2, 3, 4]));
      const big = Buffer.alloc(200000, 7);
      ws.send(big);
      assert.deepEqual(await ws.nextBinary(), big);
    });

    test('many messages come back complete and in order', T, async (t) => {
      const { ws } = await wsHandshake(gw, P);
      t.after(() => ws.close());
      for (let i = 0; i < 500; i++) ws.send(`4m${i}`);
      for (let i = 0; i < 500; i++) assert.equal(await ws.nextText(), `4m${i}`);
    });

    test('invalid packet closes the connection', T, async (t) => {
      const { ws } = await wsHandshake(gw, P);
      t.after(() => ws.close());
      ws.send('abc');
      await ws.waitClose();
    });

    test('close packet "1" closes the connection', T, async (t) => {
      const { ws } = await wsHandshake(gw, P);
      t.after(() => ws.close());
      ws.send('1');
      await ws.waitClose();
    });
  });

  describe('heartbeat', () => {
    test('polling: a ping every pingInterval, pongs keep the session', T, async () => {
      const { sid } = await pollingHandshake(gw, P);
      let last = Date.now();
      for (let i = 0; i < 3; i++) {
        const res = await poll(gw, P, sid);
        assert.equal(res.status, 200);
        assert.equal(res.text, '2');
        const waited = Date.now() - last;
        assert.ok(waited >= PING_INTERVAL - 60, `ping ${i} came after ${waited} ms, interval is ${PING_INTERVAL}`);
        assert.ok(waited <= PING_INTERVAL + 400, `ping ${i} came after ${waited} ms`);
        const pong = await push(gw, P, sid, '3');
        assert.equal(pong.status, 200);
        last = Date.now();
      }
      assert.equal((await push(gw, P, sid, '4still-here')).text, 'ok');
      assert.equal(await pollData(gw, P, sid), '4still-here');
    });

    test('polling: no pong within pingTimeout closes the session', T, async () => {
      const { sid } = await pollingHandshake(gw, P);
      await sleep(PING_INTERVAL + PING_TIMEOUT + 150);
      expectEioError(assert, await poll(gw, P, sid), 1, 'Session ID unknown');
    });

    test('websocket: pings every pingInterval, pongs keep the connection', T, async (t) => {
      const { ws } = await wsHandshake(gw, P, { autoPong: false });
      t.after(() => ws.close());
      let last = Date.now();
      for (let i = 0; i < 3; i++) {
        assert.equal(await ws.nextText(2000), '2');
        const waited = Date.now() - last;
        assert.ok(waited >= PING_INTERVAL - 60, `ping ${i} came after ${waited} ms`);
        ws.send('3');
        last = Date.now();
      }
      ws.send('4alive');
      const msg = await ws.nextText();
      assert.equal(msg === '2' ? await ws.nextText() : msg, '4alive');
    });

    test('websocket: no pong closes the connection after pingInterval + pingTimeout', T, async (t) => {
      const started = Date.now();
      const { ws } = await wsHandshake(gw, P, { autoPong: false });
      t.after(() => ws.close());
      await ws.waitClose(3000);
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= PING_INTERVAL + PING_TIMEOUT - 100, `closed after only ${elapsed} ms`);
      assert.deepEqual(ws.queue.map((m) => m.text), ['2'], 'expected exactly one ping before the close');
    });
  });

  describe('upgrade polling → websocket', () => {
    async function upgrade(t) {
      const { sid } = await pollingHandshake(gw, P);
      const ws = await openWs(eioUrl(gw, P, { sid }, { ws: true }));
      t.after(() => ws.close());
      return { sid, ws };
    }

    test('2probe/3probe, pending GET answered with "6", then "5" and messages over websocket', T, async (t) => {
      const { sid } = await pollingHandshake(gw, P);
      const pending = poll(gw, P, sid);
      await sleep(50);
      const ws = await openWs(eioUrl(gw, P, { sid }, { ws: true }));
      t.after(() => ws.close());
      ws.send('2probe');
      assert.equal(await ws.nextText(), '3probe');
      const pendingRes = await withTimeout(pending, 2000, 'the pending GET during the upgrade');
      assert.equal(pendingRes.status, 200);
      assert.equal(pendingRes.text, '6');
      ws.send('5');
      ws.send('4hello');
      assert.equal(await ws.nextText(), '4hello');
      ws.send(Buffer.from([9, 8, 7]));
      assert.deepEqual(await ws.nextBinary(), Buffer.from([9, 8, 7]));
    });

    test('a GET that arrives after the probe is answered with "6"', T, async (t) => {
      const { sid, ws } = await upgrade(t);
      ws.send('2probe');
      assert.equal(await ws.nextText(), '3probe');
      const res = await poll(gw, P, sid, {}, 2000);
      assert.equal(res.status, 200);
      assert.equal(res.text, '6');
      ws.send('5');
      ws.send('4after');
      assert.equal(await ws.nextText(), '4after');
    });

    test('messages posted over polling before "5" are not lost', T, async (t) => {
      const { sid, ws } = await upgrade(t);
      ws.send('2probe');
      assert.equal(await ws.nextText(), '3probe');
      assert.equal((await push(gw, P, sid, '4during')).text, 'ok');
      // The echo goes to whichever transport is active: the polling GET (as
      // "6" noop plus data, or data alone) or, after "5", the websocket.
      const res = await poll(gw, P, sid, {}, 2000);
      assert.equal(res.status, 200);
      const viaPolling = res.text.split(SEP).filter((p) => p !== '6');
      ws.send('5');
      ws.send('4next');
      const viaWs = [];
      while (viaWs.at(-1) !== '4next') viaWs.push(await ws.nextText());
      assert.deepEqual([...viaPolling, ...viaWs], ['4during', '4next']);
    });

    test('HTTP requests with the same sid after the upgrade get 400', T, async (t) => {
      const { sid, ws } = await upgrade(t);
      ws.send('2probe');
      ws.send('5');
      assert.equal(await ws.nextText(), '3probe');
      await sleep(50);
      const res = await poll(gw, P, sid);
      assert.equal(res.status, 400);
      const post = await push(gw, P, sid, '4x');
      assert.equal(post.status, 400);
      ws.send('4hello');
      assert.equal(await ws.nextText(), '4hello');
    });

    test('a second websocket with the same sid after the upgrade is closed', T, async (t) => {
      const { sid, ws } = await upgrade(t);
      ws.send('2probe');
      ws.send('5');
      assert.equal(await ws.nextText(), '3probe');
      await sleep(50);
      const ws2 = new RawWs(eioUrl(gw, P, { sid }, { ws: true }));
      t.after(() => ws2.close());
      await ws2.waitClose();
      ws.send('4hello');
      assert.equal(await ws.nextText(), '4hello');
    });
  });
});

describe('Socket.IO (socketio-echo)', () => {
  const P = '/socket.io/';
  const CONNECT_TIMEOUT = 1000;
  let gw;
  before(async () => {
    gw = await startGateway([
      '--app', 'socketio-echo',
      '--ping-interval', String(PING_INTERVAL),
      '--ping-timeout', String(PING_TIMEOUT),
      '--connect-timeout', String(CONNECT_TIMEOUT),
    ]);
  });
  after(() => gw?.stopClean());

  async function eioOnly(t) {
    const { ws } = await wsHandshake(gw, P);
    t.after(() => ws.close());
    return ws;
  }

  async function connected(t) {
    const { ws } = await sioConnect(gw, P);
    t.after(() => ws.close());
    return ws;
  }

  describe('connect', () => {
    test('engine handshake on /socket.io/ (polling) has the configured values', T, async () => {
      const hs = await pollingHandshake(gw, P);
      assert.deepEqual(Object.keys(hs).sort(), HANDSHAKE_KEYS);
      assert.deepEqual(hs.upgrades, ['websocket']);
      assert.equal(hs.pingInterval, PING_INTERVAL);
      assert.equal(hs.pingTimeout, PING_TIMEOUT);
    });

    test('CONNECT to "/" answers 40{"sid"} then emits auth {}', T, async (t) => {
      const ws = await eioOnly(t);
      ws.send('40');
      const reply = await ws.nextText();
      assert.match(reply, /^40\{/);
      const body = JSON.parse(reply.slice(2));
      assert.deepEqual(Object.keys(body), ['sid']);
      assert.equal(typeof body.sid, 'string');
      assert.equal(await ws.nextText(), '42["auth",{}]');
    });

    test('CONNECT to "/" with an auth payload echoes it in auth', T, async (t) => {
      const ws = await eioOnly(t);
      ws.send('40{"token":"123","n":[1,{"x":null}]}');
      assert.match(await ws.nextText(), /^40\{"sid":"[^"]+"\}$/);
      assert.equal(await ws.nextText(), '42["auth",{"token":"123","n":[1,{"x":null}]}]');
    });

    test('CONNECT to /custom with and without payload', T, async (t) => {
      const ws = await eioOnly(t);
      ws.send('40/custom,');
      const reply = await ws.nextText();
      assert.match(reply, /^40\/custom,\{"sid":"[^"]+"\}$/);
      assert.equal(await ws.nextText(), '42/custom,["auth",{}]');

      const ws2 = await eioOnly(t);
      ws2.send('40/custom,{"token":"abc"}');
      assert.match(await ws2.nextText(), /^40\/custom,\{"sid":"[^"]+"\}$/);
      assert.equal(await ws2.nextText(), '42/custom,["auth",{"token":"abc"}]');
    });

    test('namespace sids differ between namespaces and from the engine sid', T, async (t) => {
      const { ws, sid, eioSid } = await sioConnect(gw, P);
      t.after(() => ws.close());
      ws.send('40/custom,');
      const customSid = JSON.parse((await ws.nextText()).slice('40/custom,'.length)).sid;
      assert.notEqual(sid, eioSid);
      assert.notEqual(customSid, sid);
    });

    test('unknown namespace → 44 Invalid namespace, the connection stays usable', T, async (t) => {
      const ws = await eioOnly(t);
      ws.send('40/random');
      assert.equal(await ws.nextText(), '44/random,{"message":"Invalid namespace"}');
      ws.send('40');
      assert.match(await ws.nextText(), /^40\{"sid":/);
      assert.equal(await ws.nextText(), '42["auth",{}]');
    });

    test('invalid handshake packet closes the connection', T, async (t) => {
      const ws = await eioOnly(t);
      ws.send('4abc');
      await ws.waitClose();
    });

    test('no CONNECT within the connect timeout closes the connection', T, async (t) => {
      const started = Date.now();
      const ws = await eioOnly(t); // answers pings, so only the connect timeout can close it
      await ws.waitClose(CONNECT_TIMEOUT + 2500);
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= CONNECT_TIMEOUT - 150, `closed after ${elapsed} ms, connect timeout is ${CONNECT_TIMEOUT}`);
    });

    test('a CONNECT in time keeps the connection past the connect timeout', T, async (t) => {
      const ws = await connected(t);
      await sleep(CONNECT_TIMEOUT + 300);
      assert.ok(ws.isOpen, 'connection closed although a namespace was connected');
      ws.send('42["message","still"]');
      assert.equal(await ws.nextText(), '42["message-back","still"]');
    });
  });

  describe('disconnect', () => {
    test('41 disconnects from "/": nothing is sent back, and "/" can be joined again', T, async (t) => {
      const ws = await connected(t);
      ws.send('41');
      assert.ok(await ws.quietFor(200), `unexpected reply to 41: ${JSON.stringify(ws.queue)}`);
      ws.send('40');
      assert.match(await ws.nextText(), /^40\{"sid":/);
      assert.equal(await ws.nextText(), '42["auth",{}]');
    });

    test('connect then disconnect /custom: "/" keeps working', T, async (t) => {
      const ws = await connected(t);
      ws.send('40/custom');
      assert.match(await ws.nextText(), /^40\/custom,\{"sid":/);
      assert.equal(await ws.nextText(), '42/custom,["auth",{}]');
      ws.send('42/custom,["message","to custom"]');
      assert.equal(await ws.nextText(), '42/custom,["message-back","to custom"]');
      ws.send('41/custom,');
      ws.send('42["message","message to main namespace"]');
      assert.equal(await ws.nextText(), '42["message-back","message to main namespace"]');
    });
  });

  describe('events and acks', () => {
    test('event echoed as message-back with identical JSON', T, async (t) => {
      const ws = await connected(t);
      ws.send('42["message",1,"2",{"3":[true]}]');
      assert.equal(await ws.nextText(), '42["message-back",1,"2",{"3":[true]}]');
      ws.send('42["message","ünïcödé ☃ 😀",-1.5,null,[],{},"\\"quoted\\"\\n"]');
      const reply = await ws.nextText();
      assert.ok(reply.startsWith('42['), reply);
      assert.deepEqual(JSON.parse(reply.slice(2)), ['message-back', 'ünïcödé ☃ 😀', -1.5, null, [], {}, '"quoted"\n']);
      ws.send('42["message"]');
      assert.equal(await ws.nextText(), '42["message-back"]');
    });

    test('event on /custom is echoed on /custom', T, async (t) => {
      const ws = await connected(t);
      ws.send('40/custom,');
      await ws.nextText();
      await ws.nextText();
      ws.send('42/custom,["message","x"]');
      assert.equal(await ws.nextText(), '42/custom,["message-back","x"]');
      ws.send('42/custom,17["message-with-ack","y"]');
      assert.equal(await ws.nextText(), '43/custom,17["y"]');
    });

    test('binary event: 452- plus two attachments come back as message-back with two frames', T, async (t) => {
      const ws = await connected(t);
      ws.send('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      ws.send(Buffer.from([1, 2, 3]));
      ws.send(Buffer.from([4, 5, 6]));
      assert.equal(
        await ws.nextText(),
        '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
      );
      assert.deepEqual(await ws.nextBinary(), Buffer.from([1, 2, 3]));
      assert.deepEqual(await ws.nextBinary(), Buffer.from([4, 5, 6]));
    });

    test('binary event with attachments nested in objects', T, async (t) => {
      const ws = await connected(t);
      ws.send('451-["message",{"a":{"b":[{"_placeholder":true,"num":0}]},"c":"d"}]');
      ws.send(Buffer.from('nested'));
      assert.equal(
        await ws.nextText(),
        '451-["message-back",{"a":{"b":[{"_placeholder":true,"num":0}]},"c":"d"}]',
      );
      assert.deepEqual(await ws.nextBinary(), Buffer.from('nested'));
    });

    test('ack: 42456[message-with-ack,...] → 43456[...]', T, async (t) => {
      const ws = await connected(t);
      ws.send('42456["message-with-ack",1,"2",{"3":[false]}]');
      assert.equal(await ws.nextText(), '43456[1,"2",{"3":[false]}]');
      ws.send('420["message-with-ack"]');
      assert.equal(await ws.nextText(), '430[]');
    });

    test('binary ack: 452-789[...] → 462-789[...] plus the two frames', T, async (t) => {
      const ws = await connected(t);
      ws.send('452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      ws.send(Buffer.from([1, 2, 3]));
      ws.send(Buffer.from([4, 5, 6]));
      assert.equal(await ws.nextText(), '462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      assert.deepEqual(await ws.nextBinary(), Buffer.from([1, 2, 3]));
      assert.deepEqual(await ws.nextBinary(), Buffer.from([4, 5, 6]));
    });

    test('server→client ack: call-me-back → callback with an ack id, our ack → callback-result', T, async (t) => {
      const ws = await connected(t);
      ws.send('42["call-me-back","a",2]');
      const cb = await ws.nextText();
      const m = /^42(\d+)\["callback","a",2\]$/.exec(cb);
      assert.ok(m, `expected 42<id>["callback","a",2], got ${cb}`);
      ws.send(`43${m[1]}["r1",{"x":2}]`);
      assert.equal(await ws.nextText(), '42["callback-result","r1",{"x":2}]');
    });

    test('events over polling, with binary as base64 records', T, async () => {
      const hs = await pollingHandshake(gw, P);
      const sid = hs.sid;
      assert.equal((await push(gw, P, sid, '40')).text, 'ok');
      const connectPayload = await pollData(gw, P, sid);
      const parts = connectPayload.split(SEP);
      assert.match(parts[0], /^40\{"sid":/);
      if (parts.length === 1) parts.push(await pollData(gw, P, sid));
      assert.equal(parts[1], '42["auth",{}]');
      const body = [
        '42["message","p"]',
        '451-["message",{"_placeholder":true,"num":0}]',
        `b${Buffer.from([0xde, 0xad]).toString('base64')}`,
        '4299["message-with-ack","q"]',
      ].join(SEP);
      assert.equal((await push(gw, P, sid, body)).text, 'ok');
      const got = [];
      while (got.length < 4) got.push(...(await pollData(gw, P, sid)).split(SEP));
      assert.deepEqual(got, [
        '42["message-back","p"]',
        '451-["message-back",{"_placeholder":true,"num":0}]',
        `b${Buffer.from([0xde, 0xad]).toString('base64')}`,
        '4399["q"]',
      ]);
    });
  });

  describe('invalid packets close the connection', () => {
    const cases = {
      'unknown packet type (4abc)': ['4abc'],
      'unknown packet type (47)': ['47'],
      'payload not an array (42{})': ['42{}'],
      'event without a name (42[])': ['42[]'],
      'invalid JSON': ['42["message",'],
      'invalid ack id (42abc[...])': ['42abc["message-with-ack",1,"2",{"3":[false]}]'],
      'event to a namespace never joined': ['42/custom,["message","x"]'],
      'binary frame without a binary packet': [Buffer.from([1, 2, 3])],
      'text packet while attachments are pending': ['451-["message",{"_placeholder":true,"num":0}]', '42["message","x"]'],
      'CONNECT with a non-object payload': ['40/custom,"str"'],
    };
    for (const [name, frames] of Object.entries(cases)) {
      test(name, T, async (t) => {
        const ws = await connected(t);
        for (const f of frames) ws.send(f);
        await ws.waitClose();
        const echoed = ws.queue.filter((m) => m.text?.startsWith('42["message-back"'));
        assert.deepEqual(echoed, [], 'the invalid packet was processed');
      });
    }
  });
});
