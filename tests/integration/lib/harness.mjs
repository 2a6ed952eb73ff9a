// Test harness for the chat-gateway integration tests.
//
// Starts real gateway processes on free loopback ports and gives the tests
// small helpers for raw HTTP, raw TCP and raw WebSocket traffic. Everything
// that waits has a timeout, so a misbehaving gateway fails a test instead of
// hanging it. Gateways started here are always killed: by stop(), by t.after
// when a test context is given, and on process exit in any case. When a test
// fails, the stderr of every gateway still running is printed.
//
// The binary is $CHAT_GATEWAY_BIN (set by ctest), else build/bin/chat-gateway.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { afterEach } from 'node:test';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';

export { sleep };

const here = path.dirname(fileURLToPath(import.meta.url));

export const GATEWAY_BIN =
  process.env.CHAT_GATEWAY_BIN || path.resolve(here, '../../../build/bin/chat-gateway');

const LOG_LIMIT = 256 * 1024; // keep the last 256 KiB of each gateway's output

const live = new Set(); // gateways whose process has not been reaped

process.on('exit', () => {
  for (const gw of live) gw.proc.kill('SIGKILL');
});

// Print the logs of the gateways involved when a test fails. Only under
// the test runner: a script that imports the harness (the benchmarks) would
// otherwise start node:test's reporter and get TAP lines in its output.
if (process.env.NODE_TEST_CONTEXT) {
  afterEach((t) => {
    if (t.passed) return;
    for (const gw of live) gw.dumpLog(`test "${t.fullName ?? t.name}" failed`);
  });
}

/**
 * Have another child process (Redis, HAProxy, a client) handled like the
 * gateways: SIGKILLed at exit, and `obj.dumpLog(why)` called when a test
 * fails while it runs. `obj.proc` is its ChildProcess.
 */
export function track(obj) {
  live.add(obj);
  obj.proc.once('exit', () => live.delete(obj));
}

/**
 * Keeps the last LOG_LIMIT characters of proc's stdout and stderr in obj.log
 * (obj.printedUpTo marks what dumpLog already printed).
 */
export function captureLog(obj, proc) {
  obj.log = '';
  obj.printedUpTo = 0;
  const append = (chunk) => {
    obj.log += chunk.toString();
    if (obj.log.length > LOG_LIMIT) {
      const cut = obj.log.length - LOG_LIMIT;
      obj.log = obj.log.slice(cut);
      obj.printedUpTo = Math.max(0, obj.printedUpTo - cut);
    }
  };
  proc.stdout.on('data', append);
  proc.stderr.on('data', append);
}

// every port freePort() gave this process: the kernel can hand out a port
// it just released again, and two callers given the same port (a Redis
// Cluster node's port and its bus port, seen 2 times in 240 node starts)
// make the second server fail to bind
const givenPorts = new Set();

/** A TCP port that was free a moment ago on 127.0.0.1, never the same one
 * twice in a process. */
export async function freePort() {
  for (;;) {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const { port } = srv.address();
    srv.close();
    await once(srv, 'close');
    if (!givenPorts.has(port)) {
      givenPorts.add(port);
      return port;
    }
  }
}

/**
 * Start a gateway: `--listen 127.0.0.1:PORT` plus `args`, extra environment
 * `env`. Resolves once GET /healthz answers 200 (10 s at most).
 * Options: t (a test context: the gateway is stopped in t.after and must
 * exit cleanly),
 * port (reuse a given port).
 */
export async function startGateway(args = [], env = {}, { t, port } = {}) {
  const gw = new Gateway(args, env, port ?? (await freePort()));
  if (t) t.after(() => gw.stopClean());
  await gw.start();
  return gw;
}

class Gateway {
  constructor(args, env, port) {
    this.args = args;
    this.env = env;
    this.port = port;
    this.host = '127.0.0.1';
    this.url = `http://127.0.0.1:${port}`;
    this.wsUrl = `ws://127.0.0.1:${port}`;
    this.log = '';
    this.proc = null;
  }

  async start() {
    const argv = ['--listen', `${this.host}:${this.port}`, ...this.args];
    const proc = spawn(GATEWAY_BIN, argv, {
      env: { ...process.env, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    captureLog(this, proc);
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        live.delete(this);
        resolve({ code, signal });
      });
    });
    const spawned = new Promise((resolve, reject) => {
      proc.on('spawn', resolve);
      proc.on('error', reject);
    });
    live.add(this);
    await spawned.catch((err) => {
      live.delete(this);
      throw new Error(`cannot start ${GATEWAY_BIN}: ${err.message}`);
    });

    const deadline = Date.now() + 10000;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(
          `gateway exited (code ${proc.exitCode}, signal ${proc.signalCode}) ` +
            `before serving; args: ${argv.join(' ')}\n${this.log}`,
        );
      }
      try {
        const res = await httpRequest(`${this.url}/healthz`, { timeout: 500 });
        if (res.status === 200) return this;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`gateway did not answer /healthz within 10 s\n${this.log}`);
      }
      await sleep(50);
    }
  }

  get alive() {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Send a signal and wait for the process to end (no grace period). */
  async kill(signal = 'SIGKILL') {
    if (!this.alive) return this.exited;
    this.proc.kill(signal);
    return this.exited;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. Resolves to {code, signal}. */
  async stop(graceMs = 3000) {
    if (!this.proc) return { code: null, signal: null };
    if (!this.alive) return this.exited;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    const result = await this.exited;
    clearTimeout(timer);
    return result;
  }

  /**
   * stop(), and fail unless the process exited with code 0: a crash, a hang
   * on SIGTERM or a sanitizer report at exit fails the suite that ran it.
   */
  async stopClean(graceMs = 5000) {
    const wasAlive = this.alive;
    const result = await this.stop(graceMs);
    if (wasAlive && result.code !== 0) {
      throw new Error(
        `gateway did not exit cleanly on SIGTERM (code ${result.code}, signal ${result.signal}); ` +
          `last output:\n${this.log.slice(-8000)}`,
      );
    }
    if (!wasAlive && result.signal !== 'SIGKILL' && result.code !== 0) {
      throw new Error(`gateway had already died (code ${result.code}, signal ${result.signal}); last output:\n${this.log.slice(-8000)}`);
    }
    return result;
  }

  /** Start again on the same port with the same arguments. */
  async restart() {
    if (this.alive) await this.stop();
    await this.start();
    return this;
  }

  /** Resident set size of the gateway process in KiB (Linux). */
  rssKiB() {
    const status = readFileSync(`/proc/${this.proc.pid}/status`, 'utf8');
    return Number(/^VmRSS:\s+(\d+)/m.exec(status)[1]);
  }

  /** True when the binary is instrumented with AddressSanitizer. */
  underAsan() {
    try {
      const maps = readFileSync(`/proc/${this.proc.pid}/maps`, 'utf8');
      if (maps.includes('libasan')) return true;
      // statically linked ASan (clang): look for its runtime symbol name
      return readFileSync(GATEWAY_BIN).includes('__asan_init');
    } catch {
      return false;
    }
  }

  dumpLog(why) {
    const text = this.log.slice(this.printedUpTo);
    this.printedUpTo = this.log.length;
    process.stderr.write(
      `\n----- gateway ${this.url} (${this.args.join(' ')}) output, ${why} -----\n` +
        `${text}----- end of gateway output -----\n`,
    );
  }
}

/**
 * Run the gateway binary to completion (for --help and bad-configuration
 * tests). Resolves to {code, signal, stdout, stderr}; kills it after `timeout`.
 */
export async function runGateway(args, env = {}, timeout = 5000) {
  const proc = spawn(GATEWAY_BIN, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (c) => (stdout += c));
  proc.stderr.on('data', (c) => (stderr += c));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill('SIGKILL');
  }, timeout);
  const [code, signal] = await once(proc, 'close');
  clearTimeout(timer);
  return { code, signal, stdout, stderr, timedOut };
}

/** Reject after `ms` with `what` in the message unless `promise` settles. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Wait for one `event` on an emitter (EventEmitter, socket.io-client socket
 * or manager, engine.io-client socket). Resolves to the array of arguments.
 */
export function waitFor(emitter, event, ms = 5000) {
  let handler;
  const p = new Promise((resolve) => {
    handler = (...args) => resolve(args);
    emitter.once(event, handler);
  });
  return withTimeout(p, ms, `event "${event}"`).catch((err) => {
    (emitter.off ?? emitter.removeListener).call(emitter, event, handler);
    throw err;
  });
}

/** Poll `predicate` every 20 ms until it is true. */
export async function until(predicate, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * One HTTP request on a fresh connection (no keep-alive).
 * Resolves to {status, headers, body: Buffer, text}; rejects on a network
 * error or after `timeout` ms.
 */
export function httpRequest(url, { method = 'GET', headers = {}, body, timeout = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        resolve({ status: res.statusCode, headers: res.headers, body: buf, text: buf.toString() });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeout, () => req.destroy(new Error(`HTTP ${method} ${url} timed out`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** Parse a JSON body, failing with the raw text in the message. */
export function jsonBody(res) {
  try {
    return JSON.parse(res.text);
  } catch {
    throw new Error(`expected a JSON body, got ${res.status} ${JSON.stringify(res.text)}`);
  }
}

/**
 * Open a raw TCP connection, write `data` (Buffer/string or an array of them,
 * written in order), and collect what comes back until the server closes the
 * connection or `timeout` ms pass. Resolves to
 * {data: Buffer, text, closed: boolean, reset: boolean}.
 */
export function rawExchange(port, data, { timeout = 3000, keepOpen = false } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    let reset = false;
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const buf = Buffer.concat(chunks);
      resolve({ data: buf, text: buf.toString('latin1'), closed, reset });
    };
    const timer = setTimeout(() => finish(false), timeout);
    sock.on('data', (c) => chunks.push(c));
    sock.on('end', () => {
      if (!keepOpen) finish(true);
    });
    sock.on('close', () => finish(true));
    sock.on('error', (err) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') {
        reset = true;
        finish(true);
      } else if (!done) {
        done = true;
        clearTimeout(timer);
        reject(err);
      }
    });
    sock.on('connect', () => {
      for (const part of Array.isArray(data) ? data : [data]) {
        if (!sock.destroyed) sock.write(part);
      }
    });
  });
}

/** Status code of a raw HTTP response ("HTTP/1.1 400 ..."), or null. */
export function rawStatus(text) {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  return m ? Number(m[1]) : null;
}

/**
 * A raw WebSocket (package ws) with a queue of received messages, so tests
 * read frames in order with next() instead of racing event handlers.
 * Messages: {text} for text frames, {binary: Buffer} for binary frames.
 * With `autoPong`, Engine.IO pings ("2") are answered with "3" and not queued.
 */
export class RawWs {
  constructor(url, { autoPong = false, headers, maxPayload } = {}) {
    this.url = url;
    this.autoPong = autoPong;
    this.queue = [];
    this.waiters = [];
    this.closeInfo = null;
    this.ws = new WebSocket(url, { headers, maxPayload: maxPayload ?? 256 * 1024 * 1024 });
    this.ws.on('message', (data, isBinary) => {
      const msg = isBinary ? { binary: Buffer.from(data) } : { text: data.toString() };
      if (this.autoPong && msg.text === '2') {
        if (this.ws.readyState === WebSocket.OPEN) this.ws.send('3');
        return;
      }
      this.queue.push(msg);
      this.wake();
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('unexpected-response', (req, res) => {
        const err = new Error(`WebSocket upgrade refused with HTTP ${res.statusCode}`);
        err.status = res.statusCode;
        res.resume();
        reject(err);
        this.ws.terminate();
      });
      this.ws.once('error', reject);
    });
    this.opened.catch(() => {});
    this.ws.on('error', () => {}); // close follows; tests look at the close code
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        resolve(this.closeInfo);
        this.wake();
      });
    });
  }

  wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Next queued message; rejects on timeout or if the socket closed first. */
  async next(ms = 3000, what = 'a message') {
    const deadline = Date.now() + ms;
    while (this.queue.length === 0) {
      if (this.closeInfo) {
        throw new Error(
          `WebSocket closed (code ${this.closeInfo.code}) while waiting for ${what}`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.queue.shift();
  }

  /** Next text message (fails on a binary one). */
  async nextText(ms = 3000) {
    const msg = await this.next(ms, 'a text message');
    if (msg.text === undefined) throw new Error(`expected a text frame, got binary ${msg.binary.toString('hex')}`);
    return msg.text;
  }

  /** Next binary message as a Buffer (fails on a text one). */
  async nextBinary(ms = 3000) {
    const msg = await this.next(ms, 'a binary message');
    if (msg.binary === undefined) throw new Error(`expected a binary frame, got text ${JSON.stringify(msg.text)}`);
    return msg.binary;
  }

  /** Resolve to {code, reason} when closed; reject after `ms`. */
  waitClose(ms = 3000) {
    return withTimeout(this.closed, ms, `close of ${this.url}`);
  }

  /** True if nothing but (possibly) pings arrives within `ms`. */
  async quietFor(ms) {
    await sleep(ms);
    return this.queue.length === 0;
  }

  send(data, opts) {
    this.ws.send(data, opts);
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  close() {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.terminate();
  }
}

/** Open a RawWs and wait for the upgrade to complete. */
export async function openWs(url, opts = {}, ms = 3000) {
  const ws = new RawWs(url, opts);
  try {
    await withTimeout(ws.opened, ms, `WebSocket open ${url}`);
  } catch (err) {
    ws.close();
    throw err;
  }
  return ws;
}

/** Register `closeable.close()` (or a function) to run after test `t`. */
export function cleanup(t, ...things) {
  t.after(() => {
    for (const thing of things) {
      try {
        if (typeof thing === 'function') thing();
        else if (thing && typeof thing.close === 'function') thing.close();
      } catch {
        // best effort
      }
    }
  });
}
