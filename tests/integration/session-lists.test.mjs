// A polling session that gets output and is closed in the same turn of its
// worker's loop. It was on two lists at once through one link: the flush
// list of polls to answer and the graveyard of sessions to free. Burying it
// overwrote its flush-list link, so the flush pass lost the polls queued
// behind it (their clients waited for a ping timeout) and cut the graveyard
// (the sessions buried before it were never freed: LeakSanitizer at exit).
//
// One pipelined connection makes it happen in one read, on one worker:
//   POST q "1"        q closes; its parked GET ends; q is buried
//   POST r "4hello"   the echo is queued for r's parked GET
//   POST p "2␞1"      p's pong is queued, then p closes and is buried
// r's GET must get "4hello" now, and the gateway must exit cleanly (under
// AddressSanitizer: without a leak).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eioUrl, pollingHandshake, poll } from './lib/eio.mjs';
import { rawExchange, startGateway } from './lib/harness.mjs';

const PATH = '/engine.io/';

function post(gw, sid, body) {
  const target = eioUrl(gw, PATH, { sid }).slice(gw.url.length);
  return (
    `POST ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
    `Content-Type: text/plain;charset=UTF-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

test('a polling session given output and closed in one loop turn: polls behind it are answered, nothing leaks', { timeout: 20000 }, async (t) => {
  const gw = await startGateway(['--app', 'engine-echo', '--workers', '1'], {}, { t });
  const [q, r, p] = [await pollingHandshake(gw, PATH), await pollingHandshake(gw, PATH), await pollingHandshake(gw, PATH)];
  // park a GET for each (no output is queued yet, so they wait)
  const gets = [q, r, p].map(({ sid }) =>
    poll(gw, PATH, sid, {}, 4000).catch((err) => ({ status: 'no answer', text: err.message })),
  );
  await new Promise((resolve) => setTimeout(resolve, 300));

  const out = await rawExchange(gw.port, post(gw, q.sid, '1') + post(gw, r.sid, '4hello') + post(gw, p.sid, '2\x1e1'), { timeout: 1000 });
  assert.equal((out.text.match(/HTTP\/1\.1 200/g) || []).length, 3, out.text);

  const [gq, gr, gp] = await Promise.all(gets);
  assert.deepEqual([gq.status, gq.text], [200, '6'], 'q closed itself: its GET ends with a noop');
  assert.deepEqual([gp.status, gp.text], [200, '6'], 'p closed itself: its GET ends with a noop');
  assert.deepEqual([gr.status, gr.text], [200, '4hello'], 'r, dirtied before p, got its echo at once');
  // stopClean (t.after) fails unless the gateway exits 0: a leak report under ASan does not
});
