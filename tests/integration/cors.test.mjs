// CORS on the polling transport: --cors-origin (a list, or '*') and
// --cors-credentials. Without --cors-origin no CORS header is ever sent.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { httpRequest, startGateway } from './lib/harness.mjs';
import { eioUrl, pollingHandshake } from './lib/eio.mjs';

const P = '/socket.io/';
const T = { timeout: 10000 };
const CORS_HEADERS = [
  'access-control-allow-origin',
  'access-control-allow-credentials',
  'access-control-allow-methods',
  'access-control-allow-headers',
];

function handshakeFrom(gw, origin) {
  return httpRequest(eioUrl(gw, P), { headers: { origin } });
}

function preflight(gw, origin, { method = 'POST', headers = 'content-type' } = {}) {
  return httpRequest(eioUrl(gw, P), {
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': method,
      'access-control-request-headers': headers,
    },
  });
}

function list(value) {
  return (value ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
}

describe('--cors-origin http://a.test --cors-credentials', () => {
  let gw;
  before(async () => {
    gw = await startGateway(['--app', 'socketio-echo', '--cors-origin', 'http://a.test', '--cors-credentials']);
  });
  after(() => gw?.stopClean());

  test('allowed origin: handshake carries ACAO = the origin and ACAC = true', T, async () => {
    const res = await handshakeFrom(gw, 'http://a.test');
    assert.equal(res.status, 200);
    assert.equal(res.headers['access-control-allow-origin'], 'http://a.test');
    assert.equal(res.headers['access-control-allow-credentials'], 'true');
  });

  test('allowed origin: polling GET and POST of a session carry the headers too', T, async () => {
    const { sid } = await pollingHandshake(gw, P);
    const post = await httpRequest(eioUrl(gw, P, { sid }), {
      method: 'POST',
      body: '40',
      headers: { origin: 'http://a.test', 'content-type': 'text/plain;charset=UTF-8' },
    });
    assert.equal(post.status, 200);
    assert.equal(post.headers['access-control-allow-origin'], 'http://a.test');
    assert.equal(post.headers['access-control-allow-credentials'], 'true');
    const get = await httpRequest(eioUrl(gw, P, { sid }), { headers: { origin: 'http://a.test' } });
    assert.equal(get.status, 200);
    assert.match(get.text, /^40\{/);
    assert.equal(get.headers['access-control-allow-origin'], 'http://a.test');
  });

  test('other origins get no ACAO header', T, async () => {
    for (const origin of ['http://b.test', 'http://a.test.evil', 'http://a.tes', 'https://a.test', 'null']) {
      const res = await handshakeFrom(gw, origin);
      assert.equal(res.headers['access-control-allow-origin'], undefined, `ACAO sent for origin ${origin}`);
      assert.equal(res.headers['access-control-allow-credentials'], undefined, `ACAC sent for origin ${origin}`);
    }
  });

  test('a request without Origin gets no ACAO header', T, async () => {
    const res = await httpRequest(eioUrl(gw, P));
    assert.equal(res.status, 200);
    assert.equal(res.headers['access-control-allow-origin'], undefined);
  });

  test('OPTIONS preflight → 204 with allow-methods and allow-headers', T, async () => {
    const res = await preflight(gw, 'http://a.test');
    assert.equal(res.status, 204);
    assert.equal(res.headers['access-control-allow-origin'], 'http://a.test');
    assert.equal(res.headers['access-control-allow-credentials'], 'true');
    const methods = list(res.headers['access-control-allow-methods']);
    assert.ok(methods.includes('get') && methods.includes('post'), `allow-methods: ${methods}`);
    const headers = list(res.headers['access-control-allow-headers']);
    assert.ok(headers.includes('content-type'), `allow-headers: ${headers}`);
    assert.equal(res.body.length, 0, 'a 204 has no body');
  });

  test('OPTIONS preflight from another origin gets no ACAO header', T, async () => {
    const res = await preflight(gw, 'http://b.test');
    assert.equal(res.headers['access-control-allow-origin'], undefined);
  });
});

describe('--cors-origin with a list, without credentials', () => {
  let gw;
  before(async () => {
    gw = await startGateway(['--app', 'socketio-echo', '--cors-origin', 'http://a.test,http://c.test:8080']);
  });
  after(() => gw?.stopClean());

  test('each listed origin is allowed, others are not, no ACAC header', T, async () => {
    for (const origin of ['http://a.test', 'http://c.test:8080']) {
      const res = await handshakeFrom(gw, origin);
      assert.equal(res.status, 200);
      assert.equal(res.headers['access-control-allow-origin'], origin);
      assert.equal(res.headers['access-control-allow-credentials'], undefined);
    }
    for (const origin of ['http://c.test', 'http://b.test', 'http://a.test,http://c.test:8080']) {
      const res = await handshakeFrom(gw, origin);
      assert.equal(res.headers['access-control-allow-origin'], undefined, `ACAO sent for ${origin}`);
    }
  });

  test('preflight for a listed origin', T, async () => {
    const res = await preflight(gw, 'http://c.test:8080', { method: 'GET', headers: 'content-type' });
    assert.equal(res.status, 204);
    assert.equal(res.headers['access-control-allow-origin'], 'http://c.test:8080');
    assert.ok(list(res.headers['access-control-allow-methods']).includes('get'));
  });
});

describe("--cors-origin '*'", () => {
  let gw;
  before(async () => {
    gw = await startGateway(['--app', 'socketio-echo', '--cors-origin', '*']);
  });
  after(() => gw?.stopClean());

  test('any origin is allowed', T, async () => {
    for (const origin of ['http://x.test', 'https://y.test:444']) {
      const res = await handshakeFrom(gw, origin);
      assert.equal(res.status, 200);
      const acao = res.headers['access-control-allow-origin'];
      assert.ok(acao === '*' || acao === origin, `ACAO for ${origin}: ${acao}`);
    }
    const pre = await preflight(gw, 'http://x.test');
    assert.equal(pre.status, 204);
    assert.ok(['*', 'http://x.test'].includes(pre.headers['access-control-allow-origin']));
  });
});

describe('no --cors-origin', () => {
  let gw;
  before(async () => {
    gw = await startGateway(['--app', 'socketio-echo']);
  });
  after(() => gw?.stopClean());

  test('no CORS header on handshake, polling or preflight', T, async () => {
    const responses = [await handshakeFrom(gw, 'http://a.test'), await preflight(gw, 'http://a.test')];
    const { sid } = await pollingHandshake(gw, P);
    responses.push(
      await httpRequest(eioUrl(gw, P, { sid }), {
        method: 'POST',
        body: '40',
        headers: { origin: 'http://a.test' },
      }),
    );
    assert.equal(responses[0].status, 200);
    for (const res of responses) {
      for (const h of CORS_HEADERS) assert.equal(res.headers[h], undefined, `${h} sent without --cors-origin`);
    }
  });
});
