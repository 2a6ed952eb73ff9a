// Bad input costs only the offending connection. Each case attacks the
// gateway (socketio-echo, --max-payload 1000) on its own connection, then
// checks that the gateway process is alive and that a control client,
// connected with the stock socket.io-client before the first case, still
// gets its round trip answered within two seconds.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  httpRequest,
  rawExchange,
  rawStatus,
  sleep,
  startGateway,
  withTimeout,
} from './lib/harness.mjs';
import { eioUrl, expectEioError, poll, pollingHandshake, push, sioConnect, wsHandshake } from './lib/eio.mjs';
import { client, closeAllClients, connected, echo } from './lib/client.mjs';

const P = '/socket.io/';
const MAX_PAYLOAD = 1000;
const T = { timeout: 20000 };

describe('bad input closes only the offending connection', () => {
  let gw;
  let control;
  let round = 0;

  before(async () => {
    gw = await startGateway([
      '--app', 'socketio-echo',
      '--max-payload', String(MAX_PAYLOAD),
      '--workers', '2',
    ]);
    control = client(gw.url);
    await connected(control);
  });
  after(async () => {
    closeAllClients();
    await gw?.stopClean();
  });

  /** The gateway is alive and the control client still gets a round trip in 2 s. */
  async function assertGatewayFine() {
    assert.equal(gw.proc.exitCode, null, 'gateway process exited');
    assert.equal(gw.proc.signalCode, null, `gateway process killed by ${gw.proc.signalCode}`);
    round += 1;
    const started = Date.now();
    const back = await withTimeout(echo(control, 'control', round), 2000, 'control client round trip');
    assert.deepEqual(back, ['control', round]);
    assert.ok(control.connected, 'control client lost its connection');
    const health = await httpRequest(`${gw.url}/healthz`, { timeout: 2000 });
    assert.equal(health.status, 200);
    return Date.now() - started;
  }

  /** A test case followed by the health check. */
  function badCase(name, fn, opts = T) {
    test(name, opts, async (t) => {
      await fn(t);
      await assertGatewayFine();
    });
  }

  /** The raw HTTP exchange ended with the status in `statuses` (when any answer came) and a close. */
  function assertRejected(res, statuses, what) {
    assert.equal(res.closed, true, `${what}: connection left open; got ${JSON.stringify(res.text.slice(0, 200))}`);
    if (res.text.length > 0 || !res.reset) {
      assert.ok(
        statuses.includes(rawStatus(res.text)),
        `${what}: expected HTTP ${statuses.join(' or ')}, got ${JSON.stringify(res.text.slice(0, 200))}`,
      );
    }
  }

  badCase('control client works before anything else', async () => {});

  describe('HTTP', () => {
    for (const line of ['GARBAGE\r\n\r\n', 'GET\r\n\r\n', 'GET /healthz HTXP/1.1\r\n\r\n', 'GET /healthz HTTP/1.1 x\r\n\r\n']) {
      badCase(`malformed request line ${JSON.stringify(line)} → 400 and closed`, async () => {
        assertRejected(await rawExchange(gw.port, line), [400], JSON.stringify(line));
      });
    }

    const badHeaders = {
      'header line without a colon': 'GET /healthz HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n',
      'space inside a header name': 'GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n',
      'space before the colon (smuggling vector)': 'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n',
      'non-numeric Content-Length': `POST ${P}?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n40`,
      'two different Content-Length headers': `POST ${P}?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n40`,
    };
    for (const [name, req] of Object.entries(badHeaders)) {
      badCase(`malformed headers (${name}) → 400 and closed`, async () => {
        assertRejected(await rawExchange(gw.port, req), [400], name);
      });
    }

    badCase('garbage bytes → connection closed', async () => {
      // deterministic pseudo-random bytes (LCG), starting with a byte no method has
      const bytes = Buffer.alloc(4096);
      let x = 12345;
      for (let i = 0; i < bytes.length; i++) {
        x = (x * 1103515245 + 12345) >>> 0;
        bytes[i] = x >>> 24;
      }
      bytes[0] = 0x00;
      const res = await rawExchange(gw.port, bytes);
      assert.equal(res.closed, true, 'connection left open after garbage');
      if (res.text.length > 0) assert.equal(rawStatus(res.text), 400);
    });

    badCase('headers over 8 KB → 431 (or 400) and closed', async () => {
      const big = `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(16 * 1024)}\r\n\r\n`;
      assertRejected(await rawExchange(gw.port, big), [431, 400], 'one 16 KB header');
      let many = 'GET /healthz HTTP/1.1\r\nHost: x\r\n';
      for (let i = 0; i < 2000; i++) many += `X-H${i}: v\r\n`;
      many += '\r\n';
      assertRejected(await rawExchange(gw.port, many), [431, 400], '2000 headers');
      const longUrl = `GET /healthz?${'q'.repeat(16 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`;
      assertRejected(await rawExchange(gw.port, longUrl), [414, 431, 400], '16 KB request line');
    });

    badCase('headers that never end (slowloris) do not block others', async () => {
      // opens a request and stops half-way; meanwhile the control client must work
      const pending = rawExchange(gw.port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ', { timeout: 1500 });
      await sleep(200);
      await assertGatewayFine();
      await pending;
    });

    badCase('unknown sid → 400 code 1', async () => {
      expectEioError(assert, await poll(gw, P, 'AAAAAAAAAAAAAAAAAAAA'), 1, 'Session ID unknown');
      expectEioError(assert, await push(gw, P, 'AAAAAAAAAAAAAAAAAAAA', '40'), 1, 'Session ID unknown');
    });

    badCase('websocket upgrade without Sec-WebSocket-Key → 400 and closed', async () => {
      const req =
        `GET ${P}?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n` +
        'Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n';
      const res = await rawExchange(gw.port, req);
      assert.notEqual(rawStatus(res.text), 101, 'upgrade accepted without a key');
      assertRejected(res, [400], 'upgrade without key');
    });

    // As the reference server does: the oversized request is refused before its
    // body is read and costs nothing else; the session goes on.
    badCase('polling POST over max-payload → 413, the session goes on', async () => {
      const { sid } = await pollingHandshake(gw, P);
      const res = await push(gw, P, sid, `4${'x'.repeat(MAX_PAYLOAD * 2)}`).catch((e) => e);
      assert.ok(!(res instanceof Error), `POST failed without a response: ${res.message}`);
      assert.equal(res.status, 413);
      assert.equal((await push(gw, P, sid, '40')).text, 'ok');
      const after = await poll(gw, P, sid);
      assert.equal(after.status, 200);
      assert.match(after.text, /^40\{"sid":/);
    });

    badCase('polling POST of exactly max-payload bytes is accepted', async () => {
      const { sid } = await pollingHandshake(gw, P);
      assert.equal((await push(gw, P, sid, '40')).text, 'ok');
      const prefix = '42["message","';
      const suffix = '"]';
      const full = `${prefix}${'y'.repeat(MAX_PAYLOAD - prefix.length - suffix.length)}${suffix}`;
      assert.equal(Buffer.byteLength(full), MAX_PAYLOAD);
      const res = await push(gw, P, sid, full);
      assert.equal(res.status, 200, `exactly ${MAX_PAYLOAD} bytes refused: ${res.status} ${res.text}`);
    });
  });

  describe('WebSocket', () => {
    badCase('text message over max-payload → close 1009', async (t) => {
      const { ws } = await sioConnect(gw, P);
      t.after(() => ws.close());
      ws.send(`42["message","${'x'.repeat(MAX_PAYLOAD * 2)}"]`);
      const { code } = await ws.waitClose();
      assert.equal(code, 1009);
    });

    badCase('binary message over max-payload → close 1009', async (t) => {
      const { ws } = await sioConnect(gw, P);
      t.after(() => ws.close());
      ws.send('451-["message",{"_placeholder":true,"num":0}]');
      ws.send(Buffer.alloc(MAX_PAYLOAD * 2, 1));
      const { code } = await ws.waitClose();
      assert.equal(code, 1009);
    });

    badCase('fragmented message whose fragments add up over max-payload → close 1009', async (t) => {
      const { ws } = await sioConnect(gw, P);
      t.after(() => ws.close());
      ws.send(`42["message","${'a'.repeat(600)}`, { fin: false });
      ws.send(`${'b'.repeat(600)}"]`, { fin: true });
      const { code } = await ws.waitClose();
      assert.equal(code, 1009);
    });

    badCase('message of exactly max-payload bytes is accepted', async (t) => {
      const { ws } = await sioConnect(gw, P);
      t.after(() => ws.close());
      const prefix = '42["message","';
      const suffix = '"]';
      const body = 'z'.repeat(MAX_PAYLOAD - prefix.length - suffix.length);
      ws.send(`${prefix}${body}${suffix}`);
      assert.equal(await ws.nextText(), `42["message-back","${body}"]`);
    });

    badCase('text frame with invalid UTF-8 → close 1007', async (t) => {
      const { ws } = await sioConnect(gw, P);
      t.after(() => ws.close());
      ws.send(Buffer.from([0x34, 0x32, 0x5b, 0x22, 0xff, 0xfe, 0x22, 0x5d]), { binary: false });
      const { code } = await ws.waitClose();
      assert.equal(code, 1007);
    });

    badCase('unmasked client frame → connection closed', async () => {
      const key = Buffer.from('0123456789abcdef').toString('base64');
      const upgrade =
        `GET ${P}?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
      const frame = Buffer.concat([Buffer.from([0x81, 0x02]), Buffer.from('40')]); // FIN text, no mask bit
      const res = await rawExchange(gw.port, [upgrade, frame]);
      assert.equal(rawStatus(res.text), 101, `upgrade failed: ${res.text.slice(0, 100)}`);
      assert.equal(res.closed, true, 'connection left open after an unmasked frame');
      assert.ok(!res.text.includes('40{"sid"'), 'the unmasked CONNECT was processed');
    });

    const invalid = {
      'unknown Engine.IO packet type': '9hello',
      'Engine.IO packet with no type (empty frame)': '',
      'unknown Socket.IO packet type': '47',
      'Socket.IO payload not an array': '42{}',
      'invalid JSON': '42["message",',
      'invalid ack id': '42abc["message-with-ack",1]',
    };
    for (const [name, frame] of Object.entries(invalid)) {
      badCase(`${name} → connection closed`, async (t) => {
        const { ws } = await sioConnect(gw, P);
        t.after(() => ws.close());
        ws.send(frame);
        await ws.waitClose();
      });
    }

    badCase('invalid packet over polling → session closed', async () => {
      const { sid } = await pollingHandshake(gw, P);
      const res = await push(gw, P, sid, '42{}').catch(() => null);
      if (res) assert.ok([200, 400].includes(res.status), `unexpected status ${res.status}`);
      // the session is gone; a GET either gets 400 or the close packet
      const next = await poll(gw, P, sid);
      if (next.status === 200) {
        assert.match(next.text, /(^|\x1e)1$/, `session still open, got ${next.text}`);
        assert.equal((await poll(gw, P, sid)).status, 400);
      } else {
        expectEioError(assert, next, 1, 'Session ID unknown');
      }
    });
  });

  describe('abuse', () => {
    badCase(
      'slow reader: the gateway stays responsive and its memory stays bounded',
      async (t) => {
        const { ws } = await sioConnect(gw, P, { autoPong: false });
        t.after(() => ws.close());
        ws.ws.pause(); // stop reading: every message-back piles up on the gateway's side
        const baseline = gw.rssKiB();
        const filler = 'x'.repeat(900);
        const COUNT = 100000; // ~93 MB of messages, as much comes back
        for (let i = 0; i < COUNT; i++) ws.send(`42["message","${filler}"]`);
        let peak = baseline;
        const deadline = Date.now() + 4000;
        while (Date.now() < deadline) {
          const took = await assertGatewayFine();
          assert.ok(took < 2000, `control round trip took ${took} ms during the slow reader`);
          peak = Math.max(peak, gw.rssKiB());
          await sleep(200);
        }
        const growthMiB = (peak - baseline) / 1024;
        t.diagnostic(`gateway RSS grew by ${growthMiB.toFixed(1)} MiB while ~93 MiB were echoed to a reader that never reads`);
        if (gw.underAsan()) {
          t.diagnostic('ASan build: quarantine keeps freed memory, RSS bound not checked');
        } else {
          assert.ok(growthMiB < 64, `gateway RSS grew by ${growthMiB.toFixed(1)} MiB: output to a slow reader is not bounded`);
        }
      },
      { timeout: 40000 },
    );

    badCase(
      'flood: 20,000 frames as fast as possible; the control round trip still completes in < 2 s',
      async (t) => {
        const { ws } = await sioConnect(gw, P);
        t.after(() => ws.close());
        for (let i = 0; i < 20000; i++) ws.send(`42["message",${i}]`);
        const times = [];
        for (let j = 0; j < 5; j++) {
          times.push(await assertGatewayFine());
          await sleep(100);
        }
        t.diagnostic(`control round trips during the flood: ${times.join(', ')} ms; flooder got ${ws.queue.length} replies so far`);
        for (const took of times) assert.ok(took < 2000, `control round trip took ${took} ms`);
      },
      { timeout: 40000 },
    );

    badCase('many idle connections that never send CONNECT do not block others', async (t) => {
      const sockets = await Promise.all(Array.from({ length: 200 }, () => wsHandshake(gw, P, { autoPong: false })));
      t.after(() => sockets.forEach(({ ws }) => ws.close()));
      await assertGatewayFine();
    });
  });

  describe('after everything', () => {
    test('a fresh socket.io-client still connects and chats', T, async (t) => {
      const fresh = client(gw.url, {}, t);
      await connected(fresh);
      assert.deepEqual(await echo(fresh, 'fresh'), ['fresh']);
      const res = await httpRequest(eioUrl(gw, P));
      assert.equal(res.status, 200);
      assert.equal(JSON.parse(res.text.slice(1)).maxPayload, MAX_PAYLOAD);
      assert.equal(gw.alive, true);
    });
  });
});
