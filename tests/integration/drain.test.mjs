// SIGTERM drains: /readyz fails first while existing sessions keep working
// for --drain-delay, new sessions are refused, then every session is closed
// at transport level and the process exits 0.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { client, connected, emitAck } from './lib/client.mjs';
import { httpRequest, sleep, startGateway, waitFor } from './lib/harness.mjs';

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
