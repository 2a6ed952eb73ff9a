// The stock socket.io-client 4.8 against `--app socketio-echo`: transports,
// the polling → websocket upgrade, acks both ways, binary, namespaces,
// reconnection after a dropped transport and after a gateway crash, and a
// load of concurrent clients. Gateways run with --workers 2 so that the
// requests of one polling session land on different event-loop threads.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sleep, startGateway, until, waitFor, withTimeout } from './lib/harness.mjs';
import { client, closeAllClients, connected, echo, emitAck } from './lib/client.mjs';

const T = { timeout: 15000 };
const ARGS = ['--app', 'socketio-echo', '--workers', '2'];

after(() => closeAllClients());

/** A payload with binary parts at several depths, including an empty one. */
function binaryArgs() {
  return [
    Buffer.from([1, 2, 3]),
    {
      label: 'nested',
      inner: { buf: Buffer.from('héllo'), list: [Buffer.alloc(0), 5, Buffer.alloc(100000, 0xab)] },
    },
    'text',
    [Buffer.from([0xff, 0x00, 0xfe])],
  ];
}

describe('socket.io-client against socketio-echo', () => {
  let gw;
  before(async () => {
    gw = await startGateway(ARGS);
  });
  after(() => gw?.stopClean());

  describe('transports', () => {
    test('default options: starts on polling, upgrades to websocket, messages flow', T, async (t) => {
      const socket = client(gw.url, {}, t);
      const engine = socket.io.engine;
      assert.equal(engine.transport.name, 'polling');
      const upgraded = waitFor(engine, 'upgrade', 5000);
      const auth = waitFor(socket, 'auth');
      await connected(socket);
      assert.deepEqual(await auth, [{}]);
      const [transport] = await upgraded;
      assert.equal(transport.name, 'websocket');
      assert.equal(socket.io.engine.transport.name, 'websocket');
      assert.deepEqual(await echo(socket, 'after upgrade', 42), ['after upgrade', 42]);
      assert.deepEqual(await emitAck(socket, 'message-with-ack', ['acked', { n: 1 }]), ['acked', { n: 1 }]);
    });

    test('transports: ["websocket"] only', T, async (t) => {
      const socket = client(gw.url, { transports: ['websocket'] }, t);
      await connected(socket);
      assert.equal(socket.io.engine.transport.name, 'websocket');
      for (let i = 0; i < 10; i++) assert.deepEqual(await echo(socket, i, `m${i}`), [i, `m${i}`]);
    });

    test('transports: ["polling"] only: messages flow both ways and it never upgrades', T, async (t) => {
      const socket = client(gw.url, { transports: ['polling'] }, t);
      let upgradedTo = null;
      socket.io.engine.on('upgrade', (tr) => (upgradedTo = tr.name));
      await connected(socket);
      assert.equal(socket.io.engine.transport.name, 'polling');
      // a burst: many packets per POST and per GET
      const got = [];
      socket.on('message-back', (v) => got.push(v));
      for (let i = 0; i < 50; i++) socket.emit('message', i);
      await until(() => got.length >= 50, 5000, '50 message-back over polling');
      assert.deepEqual(got, [...Array(50).keys()]);
      assert.deepEqual(await emitAck(socket, 'message-with-ack', ['p', 2]), ['p', 2]);
      // the server pushes while the client has a GET pending
      await sleep(300);
      assert.deepEqual(await echo(socket, 'later'), ['later']);
      assert.equal(upgradedTo, null);
      assert.equal(socket.io.engine.transport.name, 'polling');
    });

    test('ten polling-only clients at once (sessions across worker threads)', T, async (t) => {
      const sockets = Array.from({ length: 10 }, () => client(gw.url, { transports: ['polling'] }, t));
      await Promise.all(sockets.map((s) => connected(s)));
      await Promise.all(
        sockets.map(async (s, k) => {
          const got = [];
          s.on('message-back', (v) => got.push(v));
          for (let i = 0; i < 20; i++) s.emit('message', `${k}:${i}`);
          await until(() => got.length >= 20, 8000, `client ${k} echoes`);
          assert.deepEqual(got, Array.from({ length: 20 }, (_, i) => `${k}:${i}`));
        }),
      );
    });
  });

  describe('acknowledgements', () => {
    test('emitWithAck and timeout().emitWithAck on message-with-ack', T, async (t) => {
      const socket = client(gw.url, {}, t);
      await connected(socket);
      assert.deepEqual(await withTimeout(socket.emitWithAck('message-with-ack', { a: [1, 2] }), 5000, 'ack'), {
        a: [1, 2],
      });
      assert.equal(await socket.timeout(3000).emitWithAck('message-with-ack', 'x', 'y'), 'x');
      assert.deepEqual(await emitAck(socket, 'message-with-ack', [1, '2', { 3: [false] }]), [1, '2', { 3: [false] }]);
      assert.deepEqual(await emitAck(socket, 'message-with-ack', []), []);
    });

    test('many acks in flight resolve to their own values', T, async (t) => {
      const socket = client(gw.url, { transports: ['websocket'] }, t);
      await connected(socket);
      const values = await Promise.all(
        Array.from({ length: 200 }, (_, i) => socket.timeout(5000).emitWithAck('message-with-ack', i)),
      );
      assert.deepEqual(values, [...Array(200).keys()]);
    });

    for (const transports of [['websocket'], ['polling']]) {
      test(`server→client ack (call-me-back) over ${transports[0]}`, T, async (t) => {
        const socket = client(gw.url, { transports }, t);
        await connected(socket);
        const seen = [];
        socket.on('callback', (...args) => {
          const ack = args.pop();
          assert.equal(typeof ack, 'function', 'callback arrived without an ack id');
          seen.push(args);
          ack('r1', { x: 2 });
        });
        const result = waitFor(socket, 'callback-result');
        socket.emit('call-me-back', 'a', 1, { deep: [true] });
        assert.deepEqual(await result, ['r1', { x: 2 }]);
        assert.deepEqual(seen, [['a', 1, { deep: [true] }]]);
      });
    }
  });

  describe('binary', () => {
    for (const transports of [['websocket'], ['polling']]) {
      test(`Buffers at several depths echoed intact over ${transports[0]}`, T, async (t) => {
        const socket = client(gw.url, { transports }, t);
        await connected(socket);
        const args = binaryArgs();
        assert.deepEqual(await echo(socket, ...args), args);
        assert.deepEqual(await emitAck(socket, 'message-with-ack', args), args);
      });

      test(`binary ack from the client (call-me-back) over ${transports[0]}`, T, async (t) => {
        const socket = client(gw.url, { transports }, t);
        await connected(socket);
        socket.on('callback', (...args) => {
          const ack = args.pop();
          ack(Buffer.from([9, 9]), { b: Buffer.from('x') });
        });
        const result = waitFor(socket, 'callback-result');
        socket.emit('call-me-back', Buffer.from([1]));
        assert.deepEqual(await result, [Buffer.from([9, 9]), { b: Buffer.from('x') }]);
      });
    }

    test('binary and text events stay in order', T, async (t) => {
      const socket = client(gw.url, {}, t);
      await connected(socket);
      const got = [];
      socket.on('message-back', (...args) => got.push(args));
      const sent = [];
      for (let i = 0; i < 30; i++) {
        const args = i % 3 === 0 ? [i, Buffer.from([i])] : [i];
        sent.push(args);
        socket.emit('message', ...args);
      }
      await until(() => got.length >= 30, 8000, '30 message-back');
      assert.deepEqual(got, sent);
    });
  });

  describe('namespaces', () => {
    test('/custom receives the auth option payload and echoes', T, async (t) => {
      const socket = client(`${gw.url}/custom`, { auth: { token: 'abc' } }, t);
      const auth = waitFor(socket, 'auth');
      await connected(socket);
      assert.deepEqual(await auth, [{ token: 'abc' }]);
      assert.deepEqual(await echo(socket, 'on custom'), ['on custom']);
      assert.deepEqual(await emitAck(socket, 'message-with-ack', [Buffer.from([5])]), [Buffer.from([5])]);
    });

    test('"/" and /custom multiplexed on one connection stay separate', T, async (t) => {
      const main = client(gw.url, {}, t);
      const custom = main.io.socket('/custom', { auth: { who: 'custom' } });
      t.after(() => custom.disconnect());
      const auth = waitFor(custom, 'auth');
      custom.connect();
      await Promise.all([connected(main), connected(custom)]);
      assert.deepEqual(await auth, [{ who: 'custom' }]);
      const mainGot = [];
      const customGot = [];
      main.on('message-back', (v) => mainGot.push(v));
      custom.on('message-back', (v) => customGot.push(v));
      main.emit('message', 'to main');
      custom.emit('message', 'to custom');
      await until(() => mainGot.length && customGot.length, 5000, 'both echoes');
      await sleep(100);
      assert.deepEqual(mainGot, ['to main']);
      assert.deepEqual(customGot, ['to custom']);
      custom.disconnect();
      assert.deepEqual(await echo(main, 'main still'), ['main still']);
    });

    test('unknown namespace → connect_error "Invalid namespace"', T, async (t) => {
      const socket = client(`${gw.url}/nope`, {}, t);
      const [err] = await waitFor(socket, 'connect_error');
      assert.equal(err.message, 'Invalid namespace');
      assert.equal(socket.connected, false);
    });
  });

  describe('reconnection', () => {
    for (const transports of [undefined, ['polling']]) {
      const label = transports ? 'polling only' : 'default transports';
      test(`drop-transport: the client reconnects by itself (${label})`, T, async (t) => {
        const socket = client(gw.url, transports ? { transports } : {}, t);
        await connected(socket);
        if (!transports) await until(() => socket.io.engine.transport.name === 'websocket', 5000, 'upgrade');
        const firstId = socket.id;
        const disconnected = waitFor(socket, 'disconnect', 5000);
        const reconnected = waitFor(socket.io, 'reconnect', 8000);
        socket.emit('drop-transport');
        const [reason] = await disconnected;
        assert.match(reason, /^transport (close|error)$/);
        await reconnected;
        await connected(socket);
        assert.notEqual(socket.id, firstId);
        assert.deepEqual(await echo(socket, 'after reconnect'), ['after reconnect']);
      });
    }

    test('gateway killed with SIGKILL and restarted on the same port: the client reconnects', T, async (t) => {
      const own = await startGateway(ARGS, {}, { t });
      const socket = client(own.url, {}, t);
      await connected(socket);
      await until(() => socket.io.engine.transport.name === 'websocket', 5000, 'upgrade');
      assert.deepEqual(await echo(socket, 'before'), ['before']);
      const disconnected = waitFor(socket, 'disconnect', 5000);
      const result = await own.kill('SIGKILL');
      assert.equal(result.signal, 'SIGKILL');
      const [reason] = await disconnected;
      assert.match(reason, /^transport (close|error)$/);
      await sleep(300); // let the client fail a reconnection attempt or two
      await own.restart();
      await withTimeout(connected(socket, 8000), 8000, 'reconnection to the restarted gateway');
      assert.deepEqual(await echo(socket, 'after'), ['after']);
    });
  });
});

describe('load', () => {
  const CLIENTS = 300;
  const MESSAGES = 50;
  let gw;
  before(async () => {
    gw = await startGateway([...ARGS, '--log-level', 'warn']);
  });
  after(() => gw?.stopClean());

  test(`${CLIENTS} clients × ${MESSAGES} acked messages and ${MESSAGES} echoes: none lost, duplicated or reordered`, { timeout: 90000 }, async (t) => {
    const sockets = Array.from({ length: CLIENTS }, () => client(gw.url, {}, t));
    await withTimeout(Promise.all(sockets.map((s) => connected(s, 30000))), 40000, 'all clients connected');
    const started = Date.now();
    const results = sockets.map(() => ({ backs: [], acks: [] }));
    sockets.forEach((s, k) => {
      s.on('message-back', (m) => results[k].backs.push(m));
      for (let i = 0; i < MESSAGES; i++) {
        s.emit('message', { k, i });
        s.emit('message-with-ack', { k, i }, (v) => results[k].acks.push(v));
      }
    });
    await until(
      () => results.every((r) => r.backs.length >= MESSAGES && r.acks.length >= MESSAGES),
      60000,
      'every echo and every ack',
    ).catch((err) => {
      const short = results.filter((r) => r.backs.length < MESSAGES || r.acks.length < MESSAGES).length;
      throw new Error(`${err.message}; ${short} of ${CLIENTS} clients incomplete`);
    });
    const elapsed = Date.now() - started;
    await sleep(300); // anything arriving now is a duplicate
    const expected = (k) => Array.from({ length: MESSAGES }, (_, i) => ({ k, i }));
    results.forEach((r, k) => {
      assert.deepEqual(r.backs, expected(k), `client ${k}: message-back lost, duplicated or reordered`);
      assert.deepEqual(r.acks, expected(k), `client ${k}: acks lost, duplicated or reordered`);
    });
    const upgraded = sockets.filter((s) => s.io.engine?.transport?.name === 'websocket').length;
    t.diagnostic(`${CLIENTS * MESSAGES * 2} round trips in ${elapsed} ms; ${upgraded} clients on websocket`);
    assert.equal(gw.alive, true);
  });
});
