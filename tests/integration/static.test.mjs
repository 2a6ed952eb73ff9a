// Static files: the Socket.IO browser client at /socket.io/socket.io.js
// (and .min.js, .esm.min.js, their source maps), answered like the Node
// server answers it (the npm package's bytes, ETag, 304 on If-None-Match,
// off with --serve-client off), and the --web-root served at / (index.html,
// content types, 304, nothing outside the root). Directly and through
// HAProxy; the served bundle, run in a vm as a <script> tag would run it,
// connects and chats.

import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import vm from 'node:vm';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { GATEWAY_BIN, httpRequest, rawExchange, rawStatus, runGateway, startGateway, withTimeout } from './lib/harness.mjs';
import { pollingHandshake } from './lib/eio.mjs';
import { ROOT, startCluster, startHaproxy } from './lib/stack.mjs';
import { connectAs, joinChat, makeUsers } from './lib/chat.mjs';

const T = { timeout: 20000 };
const DIST = path.join(ROOT, 'web/client/node_modules/socket.io-client/dist');
const CLIENT_FILES = {
  'socket.io.js': 'application/javascript; charset=utf-8',
  'socket.io.min.js': 'application/javascript; charset=utf-8',
  'socket.io.esm.min.js': 'application/javascript; charset=utf-8',
  'socket.io.js.map': 'application/json; charset=utf-8',
  'socket.io.min.js.map': 'application/json; charset=utf-8',
  'socket.io.esm.min.js.map': 'application/json; charset=utf-8',
};
const npmFile = (name) => readFileSync(path.join(DIST, name));

const tmp = mkdtempSync(path.join(os.tmpdir(), 'chat-static-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A web root with an index, assets, a hidden file, a subdirectory and links. */
function makeWebRoot(name) {
  const root = path.join(tmp, name);
  mkdirSync(path.join(root, 'assets'), { recursive: true });
  mkdirSync(path.join(root, 'docs'));
  writeFileSync(path.join(root, 'index.html'), '<!doctype html><title>chat</title><script src="/socket.io/socket.io.js"></script>\n');
  writeFileSync(path.join(root, 'assets', 'app-1a2b3c.js'), 'console.log("app");\n');
  writeFileSync(path.join(root, 'assets', 'style.css'), 'body { margin: 0 }\n');
  writeFileSync(path.join(root, 'assets', 'logo.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>\n');
  writeFileSync(path.join(root, 'docs', 'index.html'), '<p>docs</p>\n');
  writeFileSync(path.join(root, '.env'), 'SECRET=hidden\n');
  writeFileSync(path.join(tmp, 'outside.txt'), 'outside the web root\n');
  symlinkSync(path.join(tmp, 'outside.txt'), path.join(root, 'link-out.txt'));
  symlinkSync(tmp, path.join(root, 'dir-out'));
  symlinkSync(path.join(root, 'assets', 'style.css'), path.join(root, 'link-in.css'));
  return root;
}

/** GET (or `method`) with raw bytes for the path, as sent, without normalization. */
async function rawGet(port, target, method = 'GET') {
  const res = await rawExchange(port, `${method} ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  return { status: rawStatus(res.text), text: res.text };
}

describe('the Socket.IO client at /socket.io/socket.io.js', () => {
  let gw;
  before(async () => {
    gw = await startGateway(['--app', 'socketio-echo', '--workers', '2']);
  });
  after(() => gw.stopClean());

  test('each file is the npm package\'s, byte for byte, with its type, ETag and Cache-Control', T, async () => {
    const etags = new Set();
    for (const [name, type] of Object.entries(CLIENT_FILES)) {
      const res = await httpRequest(`${gw.url}/socket.io/${name}`);
      assert.equal(res.status, 200, name);
      assert.ok(res.body.equals(npmFile(name)), `${name} differs from the npm package's dist/${name}`);
      assert.equal(res.headers['content-type'], type, name);
      assert.equal(Number(res.headers['content-length']), npmFile(name).length, name);
      assert.match(res.headers.etag ?? '', /^"[0-9a-f]{16}"$/, `${name} ETag`);
      assert.equal(res.headers['cache-control'], 'public, max-age=0', name);
      etags.add(res.headers.etag);
    }
    assert.equal(etags.size, Object.keys(CLIENT_FILES).length, 'every file has its own ETag');
    // a query string (cache busting) names the same file
    const q = await httpRequest(`${gw.url}/socket.io/socket.io.js?v=4.8.4`);
    assert.ok(q.body.equals(npmFile('socket.io.js')));
  });

  test('If-None-Match with the ETag: 304 and no body; another ETag: the file', T, async () => {
    const { headers } = await httpRequest(`${gw.url}/socket.io/socket.io.min.js`);
    for (const inm of [headers.etag, `W/${headers.etag}`, `"nope", ${headers.etag}`, '*']) {
      const res = await httpRequest(`${gw.url}/socket.io/socket.io.min.js`, { headers: { 'If-None-Match': inm } });
      assert.equal(res.status, 304, `If-None-Match: ${inm}`);
      assert.equal(res.body.length, 0);
      assert.equal(res.headers.etag, headers.etag);
      assert.equal(res.headers['cache-control'], 'public, max-age=0');
    }
    const stale = await httpRequest(`${gw.url}/socket.io/socket.io.min.js`, { headers: { 'If-None-Match': '"0000000000000000"' } });
    assert.equal(stale.status, 200);
    assert.ok(stale.body.equals(npmFile('socket.io.min.js')));
  });

  test('HEAD: the headers and length, no body; on a kept-alive connection the next request follows', T, async () => {
    const n = npmFile('socket.io.js').length;
    const res = await rawExchange(gw.port, [
      'HEAD /socket.io/socket.io.js HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    ]);
    const parts = res.text.split('HTTP/1.1 ');
    assert.equal(parts.length, 3, res.text.slice(0, 500));
    assert.match(parts[1], /^200 /);
    assert.match(parts[1], new RegExp(`Content-Length: ${n}\r\n`));
    assert.ok(parts[1].endsWith('\r\n\r\n'), 'HEAD answered with a body');
    assert.match(parts[2], /^200 [^]*\r\n\r\nok\n$/);
  });

  test('methods other than GET and HEAD: 405 with Allow; OPTIONS: 204', T, async () => {
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const res = await httpRequest(`${gw.url}/socket.io/socket.io.js`, { method, body: method === 'DELETE' ? undefined : 'x' });
      assert.equal(res.status, 405, method);
      assert.equal(res.headers.allow, 'GET, HEAD, OPTIONS');
      assert.ok(!res.text.includes('function'), 'a refused method got the file');
    }
    const opt = await httpRequest(`${gw.url}/socket.io/socket.io.js`, { method: 'OPTIONS' });
    assert.equal(opt.status, 204);
  });

  test('other names under the path, and the msgpack build, are not served', T, async () => {
    for (const name of ['socket.io.msgpack.min.js', 'socket.io', 'index.html', 'socket.io.js/', '../socket.io/socket.io.js', 'x/socket.io.js']) {
      const res = await rawGet(gw.port, `/socket.io/${name}`);
      assert.equal(res.status, 404, name);
    }
    // the Engine.IO endpoint itself is untouched
    const hs = await pollingHandshake(gw, '/socket.io/');
    assert.ok(hs.sid);
  });

  test('run as a <script> would run it, the served bundle defines io and talks to the gateway', T, async () => {
    const res = await httpRequest(`${gw.url}/socket.io/socket.io.js`);
    const ctx = vm.createContext({ WebSocket, setTimeout, clearTimeout, setInterval, clearInterval, console });
    vm.runInContext(res.text, ctx, { filename: 'socket.io.js' });
    assert.equal(typeof ctx.io, 'function', 'the bundle did not define io');
    assert.equal(typeof ctx.io.connect, 'function');
    assert.equal(typeof ctx.io.Manager, 'function');
    const socket = ctx.io(gw.url, { transports: ['websocket'], reconnection: false });
    try {
      await withTimeout(new Promise((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('connect_error', reject);
      }), 5000, 'connect');
      const echoed = await withTimeout(new Promise((resolve) => socket.emit('message-with-ack', 'from the bundle', resolve)), 5000, 'ack');
      assert.equal(echoed, 'from the bundle');
    } finally {
      socket.disconnect();
    }
  });
});

describe('where the client files come from', () => {
  test('--serve-client off (and CHAT_SERVE_CLIENT=off): every client file is 404, Socket.IO still runs', T, async (t) => {
    for (const [args, env] of [[['--serve-client', 'off'], {}], [[], { CHAT_SERVE_CLIENT: 'off' }]]) {
      const gw = await startGateway(['--app', 'socketio-echo', ...args], env, { t });
      for (const name of Object.keys(CLIENT_FILES)) {
        const res = await httpRequest(`${gw.url}/socket.io/${name}`);
        assert.equal(res.status, 404, `${name} with ${JSON.stringify({ args, env })}`);
        assert.equal(res.text, 'not found');
      }
      assert.ok((await pollingHandshake(gw, '/socket.io/')).sid);
      await gw.stopClean();
    }
  });

  test('--client-dir: the files of that directory; a directory without them stops start-up naming the setting', T, async (t) => {
    const dir = path.join(tmp, 'client');
    mkdirSync(dir, { recursive: true });
    for (const name of Object.keys(CLIENT_FILES)) copyFileSync(path.join(DIST, name), path.join(dir, name));
    writeFileSync(path.join(dir, 'socket.io.js'), '/* a patched client */ var io = 1;\n');
    const gw = await startGateway(['--app', 'socketio-echo', '--client-dir', dir], {}, { t });
    const res = await httpRequest(`${gw.url}/socket.io/socket.io.js`);
    assert.equal(res.text, '/* a patched client */ var io = 1;\n');

    for (const bad of [path.join(tmp, 'no-such-dir'), tmp]) {
      const run = await runGateway(['--app', 'socketio-echo', '--listen', '127.0.0.1:0', '--client-dir', bad]);
      assert.equal(run.code, 2, `--client-dir ${bad}: exit ${run.code} ${run.stderr}`);
      assert.match(run.stderr, /--client-dir/);
      assert.match(run.stderr, /socket\.io\.js/);
    }
    const viaEnv = await runGateway(['--app', 'socketio-echo', '--listen', '127.0.0.1:0'], { CHAT_CLIENT_DIR: path.join(tmp, 'nope') });
    assert.equal(viaEnv.code, 2);
    assert.match(viaEnv.stderr, /CHAT_CLIENT_DIR/);
  });

  test('a binary with no files beside it warns, answers 404, and serves everything else', T, async (t) => {
    const bin = path.join(tmp, 'bare', 'bin');
    mkdirSync(bin, { recursive: true });
    copyFileSync(GATEWAY_BIN, path.join(bin, 'chat-gateway'));
    const { execFileSync } = await import('node:child_process');
    execFileSync('chmod', ['755', path.join(bin, 'chat-gateway')]);
    const run = await runGatewayAt(path.join(bin, 'chat-gateway'), t);
    const res = await httpRequest(`${run.url}/socket.io/socket.io.js`);
    assert.equal(res.status, 404);
    assert.ok((await pollingHandshake(run, '/socket.io/')).sid);
    assert.match(run.log(), /event=client_files_missing/);
  });

  test('the files follow --path; engine-echo (not Socket.IO) serves none', T, async (t) => {
    const gw = await startGateway(['--app', 'socketio-echo', '--path', '/chat/'], {}, { t });
    assert.ok((await httpRequest(`${gw.url}/chat/socket.io.js`)).body.equals(npmFile('socket.io.js')));
    assert.equal((await httpRequest(`${gw.url}/socket.io/socket.io.js`)).status, 404);
    const eio = await startGateway(['--app', 'engine-echo'], {}, { t });
    assert.equal((await httpRequest(`${eio.url}/engine.io/socket.io.js`)).status, 404);
    assert.equal((await httpRequest(`${eio.url}/socket.io/socket.io.js`)).status, 404);
  });
});

/** Start a copy of the gateway binary (not GATEWAY_BIN): {url, log(), stop}. */
async function runGatewayAt(bin, t) {
  const { spawn } = await import('node:child_process');
  const { freePort, until } = await import('./lib/harness.mjs');
  const port = await freePort();
  const proc = spawn(bin, ['--app', 'socketio-echo', '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (c) => (log += c));
  proc.stderr.on('data', (c) => (log += c));
  t.after(() => proc.kill('SIGKILL'));
  const url = `http://127.0.0.1:${port}`;
  await until(async () => (await httpRequest(`${url}/healthz`).catch(() => ({}))).status === 200, 10000, 'the copied gateway');
  return { url, log: () => log };
}

describe('--web-root', () => {
  let gw;
  let root;
  before(async () => {
    root = makeWebRoot('www');
    gw = await startGateway(['--app', 'socketio-echo', '--web-root', root]);
  });
  after(() => gw.stopClean());

  test('/ is index.html; files have their content type, an ETag and no-cache', T, async () => {
    const index = await httpRequest(`${gw.url}/`);
    assert.equal(index.status, 200);
    assert.equal(index.text, readFileSync(path.join(root, 'index.html'), 'utf8'));
    assert.equal(index.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(index.headers['cache-control'], 'no-cache');
    assert.match(index.headers.etag ?? '', /^"[0-9a-f]{16}"$/);
    assert.equal((await httpRequest(`${gw.url}/index.html?user=alice`)).text, index.text);
    const cases = {
      '/assets/app-1a2b3c.js': 'text/javascript; charset=utf-8',
      '/assets/style.css': 'text/css; charset=utf-8',
      '/assets/logo.svg': 'image/svg+xml',
      '/link-in.css': 'text/css; charset=utf-8', // a link that stays inside
    };
    for (const [p, type] of Object.entries(cases)) {
      const res = await httpRequest(`${gw.url}${p}`);
      assert.equal(res.status, 200, p);
      assert.equal(res.headers['content-type'], type, p);
    }
    assert.equal((await httpRequest(`${gw.url}/docs/`)).text, '<p>docs</p>\n');
    assert.equal((await httpRequest(`${gw.url}/assets/style%2Ecss`)).text, 'body { margin: 0 }\n');
  });

  test('If-None-Match: 304 with no body; HEAD: no body; POST: 405', T, async () => {
    const first = await httpRequest(`${gw.url}/assets/app-1a2b3c.js`);
    const again = await httpRequest(`${gw.url}/assets/app-1a2b3c.js`, { headers: { 'If-None-Match': first.headers.etag } });
    assert.equal(again.status, 304);
    assert.equal(again.body.length, 0);
    const head = await httpRequest(`${gw.url}/`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    const post = await httpRequest(`${gw.url}/`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
  });

  test('nothing outside the root, hidden or not loaded: traversal, encodings, NUL, links out', T, async () => {
    const refused = [
      '/../outside.txt',
      '/assets/../../outside.txt',
      '/%2e%2e/outside.txt',
      '/%2E%2E/%2E%2E/etc/passwd',
      '/assets/..%2f..%2foutside.txt',
      '/assets/%2e%2e%2f%2e%2e%2foutside.txt',
      '/..%5c..%5coutside.txt',
      '/index.html%00.png',
      '/assets//style.css',
      '/./index.html',
      '/assets/%zz',
    ];
    for (const p of refused) {
      const res = await rawGet(gw.port, p);
      assert.equal(res.status, 400, `${p}: ${res.text.slice(0, 200)}`);
      assert.ok(!res.text.includes('outside the web root'), p);
    }
    const absent = ['/link-out.txt', '/dir-out/outside.txt', '/.env', '/%2eenv', '/nope.html', '/assets/', '/docs', '/assets', '/chat/bob'];
    for (const p of absent) {
      const res = await rawGet(gw.port, p);
      assert.equal(res.status, 404, `${p}: ${res.text.slice(0, 200)}`);
      assert.ok(!res.text.includes('outside the web root') && !res.text.includes('SECRET'), p);
    }
    assert.match(gw.log, /event=web_root_skip file=link-out\.txt/);
  });

  test('the web root never shadows the gateway\'s own endpoints or the client files', T, async () => {
    const root2 = path.join(tmp, 'shadow');
    mkdirSync(path.join(root2, 'socket.io'), { recursive: true });
    writeFileSync(path.join(root2, 'healthz'), 'shadow');
    writeFileSync(path.join(root2, 'socket.io', 'socket.io.js'), 'shadow');
    const gw2 = await startGateway(['--app', 'socketio-echo', '--web-root', root2]);
    try {
      assert.equal((await httpRequest(`${gw2.url}/healthz`)).text, 'ok\n');
      assert.ok((await httpRequest(`${gw2.url}/socket.io/socket.io.js`)).body.equals(npmFile('socket.io.js')));
      assert.equal((await httpRequest(`${gw2.url}/`)).status, 404, 'no index.html: 404');
    } finally {
      await gw2.stopClean();
    }
  });

  test('without --web-root, / and files stay 404', T, async (t) => {
    const plain = await startGateway(['--app', 'socketio-echo'], {}, { t });
    for (const p of ['/', '/index.html', '/../x']) {
      const res = await rawGet(plain.port, p);
      assert.equal(res.status, 404, p);
    }
  });

  test('a bad --web-root stops start-up with an error naming the setting', T, async () => {
    writeFileSync(path.join(tmp, 'a-file'), 'x');
    for (const bad of [path.join(tmp, 'missing'), path.join(tmp, 'a-file')]) {
      const run = await runGateway(['--app', 'socketio-echo', '--listen', '127.0.0.1:0', '--web-root', bad]);
      assert.equal(run.code, 2, `--web-root ${bad}: exit ${run.code} ${run.stderr}`);
      assert.match(run.stderr, /--web-root \(CHAT_WEB_ROOT\)/);
    }
    // a file that could never fit one connection's output queue
    const big = path.join(tmp, 'big');
    mkdirSync(big, { recursive: true });
    writeFileSync(path.join(big, 'index.html'), 'ok');
    writeFileSync(path.join(big, 'huge.bin'), Buffer.alloc(600000));
    const args = ['--app', 'socketio-echo', '--listen', '127.0.0.1:0', '--output-soft-limit', '100000', '--output-hard-limit', '1100000', '--web-root', big];
    const run = await runGateway(args);
    assert.equal(run.code, 2, `exit ${run.code} ${run.stderr}`);
    assert.match(run.stderr, /--web-root \(CHAT_WEB_ROOT\).*huge\.bin.*--output-hard-limit/);
  });
});

describe('through HAProxy (scripts/gen-haproxy.sh), with the chat app', () => {
  let cl;
  let root;
  before(async () => {
    root = makeWebRoot('www-lb');
    cl = await startCluster({ gateways: 2, haproxy: true, storage: false, args: ['--web-root', root] });
  });
  after(() => cl?.stop());

  test('/ and /socket.io/socket.io.js reach the gateways, with ETag and 304', T, async () => {
    const index = await httpRequest(`${cl.lb.url}/`);
    assert.equal(index.status, 200);
    assert.equal(index.text, readFileSync(path.join(root, 'index.html'), 'utf8'));
    const js = await httpRequest(`${cl.lb.url}/socket.io/socket.io.js`);
    assert.equal(js.status, 200);
    assert.ok(js.body.equals(npmFile('socket.io.js')));
    const again = await httpRequest(`${cl.lb.url}/socket.io/socket.io.js`, { headers: { 'If-None-Match': js.headers.etag } });
    assert.equal(again.status, 304);
    assert.equal(again.body.length, 0);
    const map = await httpRequest(`${cl.lb.url}/socket.io/socket.io.min.js.map`);
    assert.ok(map.body.equals(npmFile('socket.io.min.js.map')));
    assert.equal((await httpRequest(`${cl.lb.url}/nope`)).status, 404);
  });

  test('a page\'s io() from the served bundle chats with a socket.io-client user', T, async (t) => {
    const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
    const src = (await httpRequest(`${cl.lb.url}/socket.io/socket.io.js`)).text;
    const page = vm.createContext({ WebSocket, setTimeout, clearTimeout, setInterval, clearInterval, console });
    vm.runInContext(src, page, { filename: 'socket.io.js' });
    const a = page.io(cl.lb.url, { transports: ['websocket'], auth: { token: alice.token }, reconnection: false });
    t.after(() => a.disconnect());
    await withTimeout(new Promise((resolve, reject) => {
      a.once('connect', resolve);
      a.once('connect_error', reject);
    }), 5000, 'the page connects');
    const b = await connectAs(cl.lb.url, bob, {}, t);
    await joinChat(b, alice.id);
    const joined = await withTimeout(new Promise((resolve) => a.emit('joinChat', { targetUserId: bob.id }, resolve)), 5000, 'joinChat');
    assert.ok(joined?.roomId, JSON.stringify(joined));
    const acked = await withTimeout(new Promise((resolve) => a.emit('sendMessage', { roomId: joined.roomId, text: 'hello from the page' }, resolve)), 5000, 'sendMessage ack');
    assert.ok(acked && !acked.error, JSON.stringify(acked));
    const msg = await b.inbox.wait('messageReceived', { text: 'hello from the page' });
    assert.equal(msg.roomId, joined.roomId);
  });
});
