// SIGTERM drains: /readyz fails first while existing sessions keep working
// for --drain-delay, new sessions are refused, then every session is closed
// at transport level and the process exits 0.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { client, connected, emitAck } from './lib/client.mjs';
import { eioUrl, poll, pollingHandshake, push } from './lib/eio.mjs';
import { httpRequest, openWs, sleep, startGateway, waitFor } from './lib/harness.mjs';

test('SIGTERM: readiness fails, sessions live on for the drain delay, then close; exit 0', { timeout: 20000 }, async (t) => {
  const gw = await startGateway(['--app', 'socketio-echo', '--drain-delay', '1500', '--workers', '2']);
  t.after(() => gw.kill());
  const socket = client(gw.url, { transports: ['websocket'], reconnection: false }, t);
  await connected(socket);
  assert.equal((await httpRequest(`${gw.url}/readyz`)).status, 200);

  const signalled = Date.now();
  gw.proc.kill('SIGTERM');
  await sleep(200);
  assert.equal((await httpRequest(`${gw.url}/readyz`)).status, 503, '/readyz fails at once');
  assert.deepEqual(await emitAck(socket, 'message-with-ack', ['still here']), ['still here'],
    'an existing session is still served while draining');
  const fresh = await httpRequest(`${gw.url}/socket.io/?EIO=4&transport=polling`);
  assert.equal(fresh.status, 503, 'new sessions are refused while draining');

  const [reason] = await waitFor(socket, 'disconnect', 5000);
  const after = Date.now() - signalled;
  assert.ok(after >= 1400, `closed after ${after} ms, before the drain delay`);
  assert.equal(reason, 'transport close');
  const { code } = await gw.exited;
  assert.equal(code, 0);
});

// Every state a session can be in when the stop comes: each one is closed,
// and freed (an AddressSanitizer build reports a leak at exit, which makes
// the exit code nonzero). Two workers, so some requests are handed over.
test('SIGTERM with sessions in every state: each is closed, exit 0', { timeout: 20000 }, async (t) => {
  const P = '/engine.io/';
  const gw = await startGateway(['--app', 'engine-echo', '--workers', '2']);
  t.after(() => gw.kill());
  const open = () => pollingHandshake(gw, P);
  const wsOpen = async (sid) => {
    const ws = await openWs(eioUrl(gw, P, sid ? { sid } : {}, { ws: true }), { autoPong: true });
    t.after(() => ws.close());
    return ws;
  };

  const ws = await wsOpen(undefined); // a WebSocket session from its handshake
  assert.equal((await ws.nextText())[0], '0');
  const parked = await open(); // a GET waiting for output
  const parkedGet = poll(gw, P, parked.sid, {}, 8000);
  await open(); // a polling session between two polls
  const queued = await open(); // output waiting for its next GET
  assert.equal((await push(gw, P, queued.sid, '4waiting')).status, 200);
  const probing = await open(); // a probe WebSocket, no 2probe yet, GET parked
  const probingGet = poll(gw, P, probing.sid, {}, 8000);
  const probe = await wsOpen(probing.sid);
  const acked = await open(); // probe answered (3probe), no upgrade packet yet
  const acker = await wsOpen(acked.sid);
  acker.send('2probe');
  assert.equal(await acker.nextText(), '3probe');
  const closing = await open(); // closed by the client, its sid kept for a late GET
  assert.equal((await push(gw, P, closing.sid, '1')).status, 200);
  await sleep(100);

  gw.proc.kill('SIGTERM');
  assert.equal((await ws.waitClose(5000)).code, 1001, 'the WebSocket session gets "going away"');
  assert.equal((await probe.waitClose(5000)).code, 1001, 'the probe is closed');
  assert.equal((await acker.waitClose(5000)).code, 1001, 'the acked probe is closed');
  assert.deepEqual([(await parkedGet).status, (await parkedGet).text], [200, '1'], 'a parked GET gets the close packet');
  assert.deepEqual([(await probingGet).status, (await probingGet).text], [200, '1'], 'so does the GET of a session being upgraded');
  const { code, signal } = await gw.exited;
  assert.equal(signal, null, gw.log.slice(-4000));
  assert.equal(code, 0, `exit ${code}; a leak or an error at exit:\n${gw.log.slice(-4000)}`);
});
