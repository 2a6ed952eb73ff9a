// Cross-site WebSocket hijacking (README "Cookies and Origin"): a browser
// sends the victim's `token` cookie with a WebSocket or polling request that
// any page opens, and says which page in `Origin`. A cookie is a credential
// only from a trusted origin: listed in --cors-origin, or the gateway's own
// (Origin's host:port is the request's Host), or no Origin at all (not a
// browser). Tokens from auth.token or Authorization: Bearer are not ambient
// and are not affected. Raw WebSocket (npm ws) and raw polling requests
// carrying Origin and Cookie, against real gateways (--auth jwt).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { httpRequest, openWs } from './lib/harness.mjs';
import { eioUrl, parseOpen, SEP } from './lib/eio.mjs';
import { makeUsers } from './lib/chat.mjs';
import { startCluster } from './lib/stack.mjs';

const T = { timeout: 20000 };
const EVIL = 'http://evil.example';
const APP = 'https://app.example';
const PATH = '/socket.io/';

describe('cookie credentials and Origin', () => {
  let cl;
  let plain; // no --cors-origin: same-origin only
  let listed; // --cors-origin APP
  let any; // --cors-origin '*'
  before(async () => {
    cl = await startCluster({
      gateways: 3,
      workers: 1,
      haproxy: false,
      gatewayArgs: (i) =>
        [[], ['--cors-origin', `${APP}, https://other.example`, '--cors-credentials'], ['--cors-origin', '*']][i],
    });
    [plain, listed, any] = cl.gateways;
  });
  after(() => cl?.stop());

  /** CONNECT over a raw WebSocket with `headers`; resolves to the CONNECT answer. */
  async function wsConnect(gw, headers, auth) {
    const ws = await openWs(eioUrl(gw, PATH, {}, { ws: true }), { autoPong: true, headers });
    try {
      parseOpen(await ws.nextText());
      ws.send(auth ? `40${JSON.stringify(auth)}` : '40');
      return await ws.nextText(5000);
    } finally {
      ws.close();
    }
  }

  const ok = (answer, what) => assert.match(answer, /^40\{"sid":/, `${what}: ${answer}`);
  const refused = (answer, what) => assert.equal(answer, '44{"message":"unauthorized"}', what);

  test('WebSocket: a cookie from a foreign origin is not a credential', T, async () => {
    const [victim] = await makeUsers(cl, 'Victim');
    const cookie = `theme=dark; token=${victim.token}`;
    refused(await wsConnect(plain, { Origin: EVIL, Cookie: cookie }), 'evil origin, no list');
    refused(await wsConnect(listed, { Origin: EVIL, Cookie: cookie }), 'evil origin, not listed');
    refused(await wsConnect(plain, { Origin: 'null', Cookie: cookie }), 'opaque origin');
    refused(await wsConnect(plain, { Origin: `http://127.0.0.1:${plain.port + 1}`, Cookie: cookie }), 'another port');
    // "*" lets any page read CORS answers; it does not make cookies credentials
    refused(await wsConnect(plain, { Origin: APP, Cookie: cookie }), 'listed elsewhere only');
    refused(await wsConnect(any, { Origin: EVIL, Cookie: cookie }), '--cors-origin *');
    ok(await wsConnect(any, { Origin: `http://127.0.0.1:${any.port}`, Cookie: cookie }), 'same origin under *');

    ok(await wsConnect(plain, { Origin: `http://127.0.0.1:${plain.port}`, Cookie: cookie }), 'same origin');
    ok(await wsConnect(listed, { Origin: APP, Cookie: cookie }), 'listed origin');
    ok(await wsConnect(listed, { Origin: 'https://other.example', Cookie: cookie }), 'second listed origin');
    ok(await wsConnect(plain, { Cookie: cookie }), 'no Origin: not a browser');
  });

  test('tokens that are not ambient work from any origin', T, async () => {
    const [user] = await makeUsers(cl, 'Dev');
    ok(await wsConnect(plain, { Origin: EVIL }, { token: user.token }), 'auth.token');
    ok(await wsConnect(plain, { Origin: EVIL, Authorization: `Bearer ${user.token}` }), 'Bearer header');
  });

  /** A polling session opened with `headers`; resolves to {sid, answer of its CONNECT}. */
  async function pollConnect(gw, headers) {
    const hs = await httpRequest(eioUrl(gw, PATH), { headers });
    assert.equal(hs.status, 200, hs.text);
    const { sid } = parseOpen(hs.text);
    const post = await httpRequest(eioUrl(gw, PATH, { sid }), {
      method: 'POST',
      body: '40',
      headers: { 'content-type': 'text/plain;charset=UTF-8', ...headers },
    });
    assert.equal(post.status, 200, post.text);
    const got = await httpRequest(eioUrl(gw, PATH, { sid }), { headers });
    assert.equal(got.status, 200, got.text);
    return { sid, answer: got.text.split(SEP).find((p) => p.startsWith('4')) };
  }

  test('polling: the same rule, and a cookie session refuses requests from other origins', T, async () => {
    const [victim] = await makeUsers(cl, 'Victim');
    const cookie = `token=${victim.token}`;
    refused((await pollConnect(plain, { Origin: EVIL, Cookie: cookie })).answer, 'evil origin');
    refused((await pollConnect(listed, { Origin: EVIL, Cookie: cookie })).answer, 'evil origin, not listed');
    ok((await pollConnect(listed, { Origin: APP, Cookie: cookie })).answer, 'listed origin');
    ok((await pollConnect(plain, { Origin: `http://127.0.0.1:${plain.port}`, Cookie: cookie })).answer, 'same origin');

    // a page of another origin that learnt the sid of a cookie session
    const { sid, answer } = await pollConnect(listed, { Origin: APP, Cookie: cookie });
    ok(answer, 'listed origin');
    for (const method of ['GET', 'POST']) {
      const res = await httpRequest(eioUrl(listed, PATH, { sid }), {
        method,
        headers: { Origin: EVIL, Cookie: cookie, 'content-type': 'text/plain;charset=UTF-8' },
        body: method === 'POST' ? '42["sendMessage",{"targetUserId":"x","text":"hi"}]' : undefined,
      });
      assert.equal(res.status, 403, `${method} from a foreign origin: ${res.status} ${res.text}`);
      assert.deepEqual(JSON.parse(res.text), { code: 4, message: 'Forbidden' });
    }
    await assert.rejects(
      openWs(eioUrl(listed, PATH, { sid }, { ws: true }), { headers: { Origin: EVIL, Cookie: cookie } }),
      (err) => err.status === 403,
      'upgrade from a foreign origin',
    );
    // the session itself is untouched: its own page goes on polling
    const post = await httpRequest(eioUrl(listed, PATH, { sid }), {
      method: 'POST',
      body: '3',
      headers: { Origin: APP, Cookie: cookie, 'content-type': 'text/plain;charset=UTF-8' },
    });
    assert.equal(post.status, 200, post.text);
  });
});
