// chat-storage's HTTP server exposed directly, as an attacker meets it:
// ambiguous framing (two Content-Length headers, a Transfer-Encoding that
// is not exactly one "chunked", both together, header names that are not
// tokens) is refused with 400 and the connection closes, so what follows is
// never answered as a second request; a request must arrive whole within
// --http-request-timeout however slowly its bytes trickle; with more slow
// connections than --http-max-connections, or than the process has file
// descriptors, /healthz and the API keep answering; and accept() out of
// descriptors does not spin the loop.
//
// The settings are given as environment variables, so that the same file
// runs against a build that does not know them (and fails there). Two
// framing cases (Transfer-Encoding with Content-Length, two
// Transfer-Encoding headers) were already refused by Debian's libevent
// 2.1.12-8+deb12u1; they stay as guards.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { freePort, httpRequest, rawExchange, rawStatus, sleep } from './lib/harness.mjs';
import { Service, signToken, startPostgres, startRedis, startStorage, STORAGE_BIN, TEST_SECRET } from './lib/stack.mjs';

const REQUEST_TIMEOUT_MS = 2000;

let redis;
let pg;
let st; // --http-request-timeout 2000
const extra = []; // storages started by single tests

before(async () => {
  redis = await startRedis({});
  pg = await startPostgres({ fast: true });
  st = await startStorage({
    redisUrl: redis.url,
    databaseUrl: pg.url,
    args: ['--replica-id', 'st-http'],
    env: { CHAT_HTTP_REQUEST_TIMEOUT: String(REQUEST_TIMEOUT_MS) },
  });
});

after(async () => {
  const errors = [];
  for (const s of [st, ...extra]) await stopClean(s).catch((err) => errors.push(err));
  await pg?.stop().catch((err) => errors.push(err));
  await redis?.stop().catch((err) => errors.push(err));
  if (errors.length) throw errors[0];
});

async function stopClean(s) {
  if (!s) return;
  const wasAlive = s.alive;
  const res = await s.stop(10000);
  if (wasAlive && res.code !== 0) {
    throw new Error(`${s.name} did not exit cleanly (code ${res.code}, signal ${res.signal}):\n${s.log.slice(-4000)}`);
  }
}

const token = signToken({ sub: 'alice', name: 'Alice', exp: Math.floor(Date.now() / 1000) + 3600 }, TEST_SECRET);

/** /healthz and GET /api/rooms (PostgreSQL behind it) both answer 200 within `ms`. */
async function assertServing(s, ms, what) {
  const t0 = Date.now();
  const health = await httpRequest(`${s.url}/healthz`, { timeout: ms }).catch((err) => ({ status: err.message }));
  assert.equal(health.status, 200, `${what}: /healthz`);
  const rooms = await httpRequest(`${s.url}/api/rooms`, {
    headers: { authorization: `Bearer ${token}` },
    timeout: ms,
  }).catch((err) => ({ status: err.message }));
  assert.equal(rooms.status, 200, `${what}: GET /api/rooms: ${rooms.text ?? ''}`);
  return Date.now() - t0;
}

/** Every status line in a raw answer. */
const statuses = (text) => [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1]));

/**
 * chat-storage under a descriptor limit (`ulimit -n nofile`), settings in
 * `env`. Stopped (and required to exit 0) at the end of the file.
 */
async function startLimitedStorage(name, nofile, env) {
  const port = await freePort();
  const s = new Service(
    `chat-storage ${name} :${port}`,
    '/bin/sh',
    [
      '-c', `ulimit -n ${nofile} && exec "$0" "$@"`, STORAGE_BIN,
      '--listen', `127.0.0.1:${port}`,
      '--redis', redis.url,
      '--database', pg.url,
      '--jwt-secret', TEST_SECRET,
      '--replica-id', `st-${name}`,
      '--db-pool', '2',
      '--ingest-connections', '1',
    ],
    {
      env,
      ready: async () => (await httpRequest(`http://127.0.0.1:${port}/readyz`, { timeout: 1000 })).status === 200,
      readyMs: 20000,
    },
  );
  s.port = port;
  s.url = `http://127.0.0.1:${port}`;
  extra.push(s);
  await s.start();
  return s;
}

/**
 * Opens `n` connections to `port` that each send the start of a request and
 * then nothing. Resolves once every one is connected or `ms` passed, to
 * {socks, open(): how many the server has not closed, destroy()}.
 */
async function slowConnections(port, n, ms = 3000) {
  const socks = [];
  let connected = 0;
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    for (let i = 0; i < n; i++) {
      const sock = net.connect(port, '127.0.0.1');
      sock.closedByPeer = false;
      sock.on('error', () => {});
      sock.on('end', () => (sock.closedByPeer = true));
      sock.on('close', () => (sock.closedByPeer = true));
      sock.on('connect', () => {
        sock.write(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow-${i}: `);
        if (++connected === n) {
          clearTimeout(timer);
          resolve();
        }
      });
      socks.push(sock);
    }
  });
  return {
    socks,
    connected: () => connected,
    open: () => socks.filter((s) => !s.closedByPeer).length,
    destroy: () => socks.forEach((s) => s.destroy()),
  };
}

/** CPU seconds (utime + stime) the process has used. */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
}

describe('ambiguous framing is refused with 400 and the connection closes', () => {
  const second = 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n';
  const cases = {
    'two different Content-Length headers (the rest would be a second request)':
      `GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: ${second.length}\r\n\r\n${second}`,
    'two different Content-Length headers on a POST':
      `POST /api/rooms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: ${2 + second.length}\r\n\r\n{}${second}`,
    'two equal Content-Length headers':
      `POST /api/rooms HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}${second}`,
    'Transfer-Encoding with a space before the colon':
      `POST /api/rooms HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n${second}`,
    'Content-Length with a space before the colon':
      `POST /api/rooms HTTP/1.1\r\nHost: x\r\nContent-Length : ${2 + second.length}\r\n\r\n{}${second}`,
    'Transfer-Encoding and Content-Length together':
      `POST /api/rooms HTTP/1.1\r\nHost: x\r\nContent-Length: ${5 + second.length}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${second}`,
    'Transfer-Encoding other than chunked':
      `POST /api/rooms HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n${second}`,
    'two Transfer-Encoding headers':
      `POST /api/rooms HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${second}`,
    'a signed Content-Length':
      `POST /api/rooms HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n{}${second}`,
    'a space inside a header name':
      `GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n${second}`,
  };
  for (const [name, req] of Object.entries(cases)) {
    test(name, async () => {
      const res = await rawExchange(st.port, req, { timeout: 3000 });
      assert.deepEqual(statuses(res.text), [400], `${name}: expected one 400, got ${JSON.stringify(res.text.slice(0, 300))}`);
      assert.equal(res.closed, true, `${name}: connection left open`);
      assert.equal(rawStatus(res.text), 400);
    });
  }

  test('well-framed requests still work: pipelined, chunked, keep-alive', async () => {
    const pipelined = await rawExchange(
      st.port,
      'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' +
        `POST /api/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\n` +
        'Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n' +
        'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
    // the POST reaches the API (400: a group needs a name), and nothing is refused for its framing
    assert.deepEqual(statuses(pipelined.text), [200, 400, 200], pipelined.text);
    assert.match(pipelined.text, /name/);
    assert.equal(pipelined.closed, true);
    await assertServing(st, 2000, 'after the framing cases');
  });
});

describe('a request must arrive whole within --http-request-timeout', () => {
  /** Milliseconds until the server closes a connection that sends `first`, then `drip` every 200 ms. */
  function timeToClose(first, drip, limitMs) {
    return new Promise((resolve) => {
      const sock = net.connect(st.port, '127.0.0.1');
      let t0;
      let timer;
      let done = false;
      const finish = (v) => {
        if (done) return;
        done = true;
        clearInterval(timer);
        sock.destroy();
        resolve(v);
      };
      sock.on('error', () => finish(Date.now() - t0));
      sock.on('end', () => finish(Date.now() - t0));
      sock.on('close', () => finish(Date.now() - t0));
      sock.on('connect', () => {
        t0 = Date.now();
        if (first) sock.write(first);
        timer = setInterval(() => {
          if (drip && !sock.destroyed) sock.write(drip);
        }, 200);
        setTimeout(() => finish(null), limitMs);
      });
    });
  }

  test('headers trickled one line every 200 ms (slowloris) are cut at the deadline', async () => {
    const ms = await timeToClose('GET /healthz HTTP/1.1\r\nHost: x\r\n', 'X-Slow: y\r\n', REQUEST_TIMEOUT_MS + 4000);
    assert.notEqual(ms, null, `still open ${REQUEST_TIMEOUT_MS + 4000} ms later`);
    assert.ok(ms >= REQUEST_TIMEOUT_MS - 300, `closed after ${ms} ms, before the deadline`);
    assert.ok(ms <= REQUEST_TIMEOUT_MS + 1500, `closed after ${ms} ms`);
  });

  test('a body trickled one byte every 200 ms is cut at the deadline', async () => {
    const ms = await timeToClose(
      `POST /api/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: 1000\r\n\r\n`,
      ' ',
      REQUEST_TIMEOUT_MS + 4000,
    );
    assert.notEqual(ms, null, `still open ${REQUEST_TIMEOUT_MS + 4000} ms later`);
    assert.ok(ms >= REQUEST_TIMEOUT_MS - 300 && ms <= REQUEST_TIMEOUT_MS + 1500, `closed after ${ms} ms`);
  });

  test('a connection that sends nothing is closed at the deadline', async () => {
    const ms = await timeToClose('', '', REQUEST_TIMEOUT_MS + 4000);
    assert.notEqual(ms, null, `still open ${REQUEST_TIMEOUT_MS + 4000} ms later`);
    assert.ok(ms <= REQUEST_TIMEOUT_MS + 1500, `closed after ${ms} ms`);
  });

  test('a request answered in time is not cut, and keep-alive gives the next one its own deadline', async () => {
    const sock = net.connect(st.port, '127.0.0.1');
    const got = [];
    sock.on('data', (c) => got.push(c.toString('latin1')));
    await new Promise((resolve) => sock.on('connect', resolve));
    for (let i = 0; i < 3; i++) {
      sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      await sleep(REQUEST_TIMEOUT_MS * 0.6);
    }
    sock.destroy();
    assert.deepEqual(statuses(got.join('')), [200, 200, 200]);
  });
});

describe('connection cap: slow connections never starve /healthz and the API', () => {
  test('400 slow connections against --http-max-connections 50 and 256 descriptors', { timeout: 60000 }, async () => {
    const s = await startLimitedStorage('capped', 256, {
      CHAT_HTTP_MAX_CONNECTIONS: '50',
      CHAT_HTTP_REQUEST_TIMEOUT: '60000',
    });
    await assertServing(s, 2000, 'before the attack');
    const slow = await slowConnections(s.port, 400);
    try {
      // the server had time to see them all: wait until what it keeps settles
      await sleep(500);
      for (let round = 0; round < 5; round++) {
        const ms = await assertServing(s, 2000, `round ${round} with 400 slow connections`);
        assert.ok(ms < 2000, `round ${round} took ${ms} ms`);
      }
      const open = slow.open();
      assert.ok(open <= 50, `${open} slow connections still open with a cap of 50`);
      assert.ok(s.alive, 'storage died');
    } finally {
      slow.destroy();
    }
    await assertServing(s, 2000, 'after the attack');
  });

  test('accept() out of descriptors sheds load instead of spinning', { timeout: 60000 }, async () => {
    // the cap is above what the process may open: accept() fails with EMFILE
    const s = await startLimitedStorage('tight', 96, {
      CHAT_HTTP_MAX_CONNECTIONS: '100000',
      CHAT_HTTP_REQUEST_TIMEOUT: '60000',
    });
    const slow = await slowConnections(s.port, 300);
    try {
      await sleep(500);
      const c0 = cpuSeconds(s.pid);
      await sleep(1500);
      const used = cpuSeconds(s.pid) - c0;
      assert.ok(used < 0.5, `chat-storage used ${used.toFixed(2)} s of CPU in 1.5 s with a full descriptor table`);
      await assertServing(s, 2000, 'with a full descriptor table');
    } finally {
      slow.destroy();
    }
    await assertServing(s, 2000, 'after the attack');
  });
});
