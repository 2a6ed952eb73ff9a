// Configuration: every setting is a flag and a CHAT_* environment variable,
// --help lists them, a bad value stops start-up with an error naming the
// setting, and values reach the wire (handshake fields, request path).
// Also the process-level endpoints (/healthz, /readyz) and SIGTERM.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, test } from 'node:test';
import { freePort, httpRequest, runGateway, startGateway } from './lib/harness.mjs';
import { eioUrl, pollingHandshake } from './lib/eio.mjs';

const T = { timeout: 15000 };

const SETTINGS = {
  '--listen': 'CHAT_LISTEN',
  '--app': 'CHAT_APP',
  '--ping-interval': 'CHAT_PING_INTERVAL',
  '--ping-timeout': 'CHAT_PING_TIMEOUT',
  '--max-payload': 'CHAT_MAX_PAYLOAD',
  '--connect-timeout': 'CHAT_CONNECT_TIMEOUT',
  '--cors-origin': 'CHAT_CORS_ORIGIN',
  '--cors-credentials': 'CHAT_CORS_CREDENTIALS',
  '--workers': 'CHAT_WORKERS',
  '--log-level': 'CHAT_LOG_LEVEL',
  '--path': 'CHAT_PATH',
  '--serve-client': 'CHAT_SERVE_CLIENT',
  '--client-dir': 'CHAT_CLIENT_DIR',
  '--web-root': 'CHAT_WEB_ROOT',
};

describe('--help', () => {
  test('exits 0 and lists every flag with its environment variable', T, async () => {
    const res = await runGateway(['--help']);
    assert.equal(res.timedOut, false, '--help did not exit');
    assert.equal(res.code, 0, `--help exited with ${res.code}: ${res.stderr}`);
    const text = res.stdout + res.stderr;
    for (const [flag, env] of Object.entries(SETTINGS)) {
      const line = text.split('\n').find((l) => new RegExp(`${flag}(?![\\w-])`).test(l));
      assert.ok(line, `--help does not mention ${flag}`);
      // the env var is on the flag's line or in the lines right after it
      const at = text.indexOf(line);
      const near = text.slice(at, at + line.length + 400);
      assert.ok(near.includes(env), `--help names no ${env} near ${flag}`);
    }
    for (const app of ['engine-echo', 'socketio-echo']) assert.ok(text.includes(app), `--help does not list app ${app}`);
    for (const cmd of ['token', 'announce'])
      assert.match(text, new RegExp(`chat-gateway ${cmd}\\b`), `--help does not list the ${cmd} command`);
  });

  for (const [cmd, flags] of [['token', ['--user', '--name', '--ttl', '--jwt-secret']], ['announce', ['--text', '--redis']]]) {
    for (const help of ['--help', '-h']) {
      test(`${cmd} ${help} prints its usage and exits 0`, T, async () => {
        const res = await runGateway([cmd, help], { CHAT_JWT_SECRET: '' });
        assert.equal(res.timedOut, false, `${cmd} ${help} did not exit`);
        assert.equal(res.code, 0, `${cmd} ${help} exited with ${res.code}: ${res.stderr}`);
        assert.equal(res.stderr, '', `${cmd} ${help} printed an error: ${res.stderr}`);
        assert.match(res.stdout, new RegExp(`^usage: chat-gateway ${cmd}`));
        for (const f of flags) assert.ok(res.stdout.includes(f), `${cmd} ${help} does not mention ${f}`);
      });
    }
  }
});

describe('bad configuration stops start-up with an error naming the setting', () => {
  const app = ['--app', 'socketio-echo'];
  const cases = [
    { args: ['--ping-interval', 'abc'], names: ['--ping-interval'] },
    { args: ['--ping-interval', '-1'], names: ['--ping-interval'] },
    { args: ['--ping-interval', '99999999999999999999999'], names: ['--ping-interval'] },
    { args: ['--ping-timeout', '12ms'], names: ['--ping-timeout'] },
    { args: ['--max-payload', 'lots'], names: ['--max-payload'] },
    { args: ['--connect-timeout', ''], names: ['--connect-timeout'] },
    { args: ['--workers', 'many'], names: ['--workers'] },
    { args: ['--log-level', 'loud'], names: ['--log-level'] },
    { args: ['--app', 'nope'], names: ['--app'], noApp: true },
    { args: ['--listen', 'nonsense'], names: ['--listen'], noListen: true },
    { args: ['--listen', '127.0.0.1:99999'], names: ['--listen'], noListen: true },
    { args: ['--listen', '127.0.0.1:abc'], names: ['--listen'], noListen: true },
    { args: ['--ping-interval'], names: ['--ping-interval'] }, // value missing
    { args: ['--no-such-flag', '1'], names: ['--no-such-flag'] },
    { env: { CHAT_PING_INTERVAL: 'abc' }, names: ['--ping-interval', 'CHAT_PING_INTERVAL'] },
    { env: { CHAT_MAX_PAYLOAD: '-5' }, names: ['--max-payload', 'CHAT_MAX_PAYLOAD'] },
    { env: { CHAT_LISTEN: 'nonsense' }, names: ['--listen', 'CHAT_LISTEN'], noListen: true },
  ];
  for (const c of cases) {
    const label = c.args ? c.args.join(' ') : Object.entries(c.env).map(([k, v]) => `${k}=${v}`).join(' ');
    test(`${label} → non-zero exit naming ${c.names.join(' or ')}`, T, async () => {
      const port = await freePort();
      const args = [
        ...(c.noListen ? [] : ['--listen', `127.0.0.1:${port}`]),
        ...(c.noApp ? [] : app),
        ...(c.args ?? []),
      ];
      const res = await runGateway(args, c.env ?? {});
      assert.equal(res.timedOut, false, `gateway started and kept running with ${label}`);
      assert.notEqual(res.code, 0, `exit code 0 with ${label}`);
      assert.equal(res.signal, null, `gateway died by ${res.signal} instead of exiting`);
      const out = res.stderr + res.stdout;
      assert.ok(c.names.some((n) => out.includes(n)), `error output does not name ${c.names.join(' or ')}: ${out}`);
    });
  }

  test('--listen on a port already in use → non-zero exit', T, async () => {
    const blocker = net.createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    try {
      const res = await runGateway(['--listen', `127.0.0.1:${blocker.address().port}`, '--app', 'socketio-echo']);
      assert.equal(res.timedOut, false, 'gateway kept running on a port it could not bind');
      assert.notEqual(res.code, 0);
    } finally {
      blocker.close();
    }
  });
});

describe('values reach the wire', () => {
  test('CHAT_PING_INTERVAL=1234 shows in the handshake pingInterval', T, async (t) => {
    const gw = await startGateway(['--app', 'socketio-echo'], { CHAT_PING_INTERVAL: '1234' }, { t });
    const hs = await pollingHandshake(gw, '/socket.io/');
    assert.equal(hs.pingInterval, 1234);
    assert.equal(hs.pingTimeout, 20000);
    assert.equal(hs.maxPayload, 1000000);
  });

  test('environment variables for ping timeout, max payload, app and path', T, async (t) => {
    const gw = await startGateway([], {
      CHAT_APP: 'engine-echo',
      CHAT_PING_TIMEOUT: '777',
      CHAT_MAX_PAYLOAD: '5000',
      CHAT_PATH: '/rt/',
    }, { t });
    const hs = await pollingHandshake(gw, '/rt/');
    assert.equal(hs.pingTimeout, 777);
    assert.equal(hs.maxPayload, 5000);
    assert.equal(hs.pingInterval, 25000);
  });

  test('a flag wins over its environment variable', T, async (t) => {
    const gw = await startGateway(['--app', 'socketio-echo', '--ping-interval', '4321'], { CHAT_PING_INTERVAL: '1234' }, { t });
    assert.equal((await pollingHandshake(gw, '/socket.io/')).pingInterval, 4321);
  });

  test('default paths: /engine.io/ for engine-echo, /socket.io/ for socketio-echo', T, async (t) => {
    const eio = await startGateway(['--app', 'engine-echo'], {}, { t });
    assert.equal((await httpRequest(eioUrl(eio, '/engine.io/'))).status, 200);
    assert.notEqual((await httpRequest(eioUrl(eio, '/socket.io/'))).status, 200);
    const sio = await startGateway(['--app', 'socketio-echo'], {}, { t });
    assert.equal((await httpRequest(eioUrl(sio, '/socket.io/'))).status, 200);
    assert.notEqual((await httpRequest(eioUrl(sio, '/engine.io/'))).status, 200);
  });

  test('--path moves the endpoint; an unknown path is 404', T, async (t) => {
    const gw = await startGateway(['--app', 'socketio-echo', '--path', '/chat/'], {}, { t });
    const hs = await pollingHandshake(gw, '/chat/');
    assert.equal(typeof hs.sid, 'string');
    assert.equal((await httpRequest(eioUrl(gw, '/socket.io/'))).status, 404);
    assert.equal((await httpRequest(`${gw.url}/nothing-here`)).status, 404);
  });
});

describe('process', () => {
  test('/healthz and /readyz answer 200 while serving', T, async (t) => {
    const gw = await startGateway(['--app', 'socketio-echo'], {}, { t });
    assert.equal((await httpRequest(`${gw.url}/healthz`)).status, 200);
    assert.equal((await httpRequest(`${gw.url}/readyz`)).status, 200);
  });

  test('SIGTERM stops the gateway with exit code 0 within 5 s', T, async (t) => {
    const gw = await startGateway(['--app', 'socketio-echo', '--workers', '2'], {}, { t });
    const started = Date.now();
    const result = await gw.stop(5000);
    assert.equal(result.signal, null, `did not exit on SIGTERM within 5 s (killed by ${result.signal})`);
    assert.equal(result.code, 0);
    assert.ok(Date.now() - started < 5000);
  });
});
