// Raw Engine.IO v4 / Socket.IO v5 client steps for the protocol-level tests:
// plain HTTP requests and plain WebSocket frames, no client library, so the
// tests see exactly the bytes the gateway sends.

import { httpRequest, jsonBody, openWs } from './harness.mjs';

export const SEP = '\x1e'; // record separator between packets of a polling payload

/** Engine.IO URL for `gw` under `path`, with extra query parameters. */
export function eioUrl(gw, path, query = {}, { ws = false } = {}) {
  const params = new URLSearchParams({ EIO: '4', transport: ws ? 'websocket' : 'polling', ...query });
  for (const [k, v] of Object.entries(query)) if (v === null) params.delete(k);
  return `${ws ? gw.wsUrl : gw.url}${path}?${params}`;
}

/** Parse an Engine.IO open packet ("0{...}"). */
export function parseOpen(text) {
  if (typeof text !== 'string' || text[0] !== '0') {
    throw new Error(`expected an Engine.IO open packet, got ${JSON.stringify(text)}`);
  }
  return JSON.parse(text.slice(1));
}

/** Open a polling session; resolves to the handshake object (with .sid). */
export async function pollingHandshake(gw, path) {
  const res = await httpRequest(eioUrl(gw, path));
  if (res.status !== 200) throw new Error(`polling handshake: HTTP ${res.status} ${res.text}`);
  return parseOpen(res.text);
}

/** GET poll for `sid`. */
export function poll(gw, path, sid, extra = {}, timeout = 5000) {
  return httpRequest(eioUrl(gw, path, { sid, ...extra }), { timeout });
}

/** POST `body` for `sid`. */
export function push(gw, path, sid, body, headers = {}) {
  return httpRequest(eioUrl(gw, path, { sid }), {
    method: 'POST',
    body,
    headers: { 'content-type': 'text/plain;charset=UTF-8', ...headers },
  });
}

/**
 * GET polls until a payload with something other than pings arrives. Pings
 * are answered with a pong and removed. Resolves to the remaining packets
 * joined with the separator.
 */
export async function pollData(gw, path, sid, ms = 3000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const res = await poll(gw, path, sid, {}, Math.max(100, deadline - Date.now()));
    if (res.status !== 200) throw new Error(`poll: HTTP ${res.status} ${res.text}`);
    const packets = res.text.split(SEP);
    const data = packets.filter((p) => p !== '2');
    if (data.length < packets.length) await push(gw, path, sid, '3');
    if (data.length > 0) return data.join(SEP);
    if (Date.now() > deadline) throw new Error('no data within the deadline, only pings');
  }
}

/** Expect HTTP 400 with the given Engine.IO error code and message. */
export function expectEioError(assert, res, code, message) {
  assert.equal(res.status, 400, `expected HTTP 400, got ${res.status} ${res.text}`);
  assert.deepEqual(jsonBody(res), { code, message });
}

/** A WebSocket Engine.IO session: resolves to {ws, handshake}. */
export async function wsHandshake(gw, path, { autoPong = true, sid } = {}) {
  const ws = await openWs(eioUrl(gw, path, sid ? { sid } : {}, { ws: true }), { autoPong });
  if (sid) return { ws, handshake: null };
  const handshake = parseOpen(await ws.nextText());
  return { ws, handshake };
}

/**
 * A Socket.IO connection to namespace "/" over WebSocket, after the CONNECT
 * reply and the `auth` event of socketio-echo. Resolves to {ws, sid, eioSid}.
 */
export async function sioConnect(gw, path = '/socket.io/', { autoPong = true } = {}) {
  const { ws, handshake } = await wsHandshake(gw, path, { autoPong });
  ws.send('40');
  const connect = await ws.nextText();
  if (!connect.startsWith('40{')) throw new Error(`expected a CONNECT reply, got ${JSON.stringify(connect)}`);
  const auth = await ws.nextText();
  if (auth !== '42["auth",{}]') throw new Error(`expected the auth event, got ${JSON.stringify(auth)}`);
  return { ws, sid: JSON.parse(connect.slice(2)).sid, eioSid: handshake.sid };
}
