// A python-socketio client (Debian's python3-socketio, driven through
// chat_python_client.py) and the stock socket.io-client chat with each other
// both ways through HAProxy, over each transport of the Python client.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { track, withTimeout } from './lib/harness.mjs';
import { closeAllClients } from './lib/client.mjs';
import { connectAs, joinChat, makeUsers, sendOk } from './lib/chat.mjs';
import { startCluster } from './lib/stack.mjs';

const T = { timeout: 30000 };
const SCRIPT = fileURLToPath(new URL('./chat_python_client.py', import.meta.url));

/** A python3 that has Debian's socketio module ($CHAT_TEST_PYTHON first). */
function findPython() {
  const candidates = [process.env.CHAT_TEST_PYTHON, '/usr/bin/python3', 'python3'].filter(Boolean);
  for (const py of candidates) {
    if (py.startsWith('/') && !existsSync(py)) continue;
    const r = spawnSync(py, ['-c', 'import socketio, requests'], { stdio: 'ignore' });
    if (r.status === 0) return py;
  }
  throw new Error(`no python3 with socketio and requests among ${candidates} (scripts/install-deps.sh installs python3-socketio)`);
}

/** chat_python_client.py as a process: JSON lines in both directions. */
class PyClient {
  constructor(python, args) {
    this.name = `python client ${args.join(' ').replace(/--token \S+/, '--token …')}`;
    this.proc = spawn(python, ['-u', SCRIPT, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.events = [];
    this.waiters = new Set();
    this.log = '';
    this.printedUpTo = 0;
    let partial = '';
    this.proc.stdout.on('data', (chunk) => {
      partial += chunk.toString();
      let nl;
      while ((nl = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        this.log += `${line}\n`;
        try {
          this.events.push(JSON.parse(line));
        } catch {
          this.events.push({ event: 'bad line', line });
        }
        for (const w of this.waiters) w();
      }
    });
    this.proc.stderr.on('data', (c) => (this.log += c));
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve({ code, signal })));
    track(this);
  }

  dumpLog(why) {
    process.stderr.write(`\n----- ${this.name}, ${why} -----\n${this.log.slice(this.printedUpTo)}----- end -----\n`);
    this.printedUpTo = this.log.length;
  }

  waitFor(pred, ms = 5000, what = 'an event') {
    const p = new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.events.find(pred);
        if (hit) {
          this.waiters.delete(check);
          resolve(hit);
        } else if (this.proc.exitCode !== null) {
          this.waiters.delete(check);
          reject(new Error(`python client exited (${this.proc.exitCode}) before ${what}:\n${this.log}`));
        }
      };
      this.waiters.add(check);
      this.proc.once('exit', check);
      check();
    });
    return withTimeout(p, ms, `python client: ${what}; output so far:\n${this.log}`);
  }

  send(text, ref) {
    this.proc.stdin.write(`${JSON.stringify({ cmd: 'send', text, ref })}\n`);
    return this.waitFor((e) => e.event === 'ack' && e.ref === ref, 5000, `ack of ${ref}`);
  }

  async quit() {
    if (this.proc.exitCode === null) this.proc.stdin.end(`${JSON.stringify({ cmd: 'quit' })}\n`);
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 3000);
    const r = await this.exited;
    clearTimeout(timer);
    return r;
  }
}

after(() => closeAllClients());

describe('python-socketio ↔ socket.io-client through HAProxy (JWT)', () => {
  let cl;
  let python;
  before(async () => {
    python = findPython();
    cl = await startCluster({ gateways: 2 });
  });
  after(() => cl?.stop());

  for (const transports of ['polling,websocket', 'websocket', 'polling']) {
    test(`python over ${transports} ↔ node over the default transports`, T, async (t) => {
      const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
      const node = await connectAs(cl.url, alice, {}, t);
      const room = await joinChat(node, bob.id);
      const py = new PyClient(python, ['--url', cl.url, '--token', bob.token, '--target', alice.id, '--transports', transports]);
      t.after(() => py.quit());
      const hello = await py.waitFor((e) => e.event === 'connected' || e.event === 'error', 10000, 'connected');
      assert.equal(hello.event, 'connected', JSON.stringify(hello));
      assert.equal(hello.roomId, room, 'python and node got different rooms');

      // python → node
      const { ack } = await py.send('hello from python ✓', 'p1');
      assert.ok(ack && ack.id && ack.roomId === room && !ack.error, `ack ${JSON.stringify(ack)}`);
      const m = await node.inbox.wait('messageReceived', { id: ack.id });
      assert.deepEqual([m.userId, m.firstName, m.text], [bob.id, 'Bob', 'hello from python ✓']);
      const echo = await py.waitFor((e) => e.event === 'messageReceived' && e.data.id === ack.id, 5000, 'own message');
      assert.equal(echo.data.text, 'hello from python ✓');

      // node → python
      const sent = await sendOk(node, { roomId: room, text: 'hello from node', clientMsgId: 'n1' });
      const got = await py.waitFor((e) => e.event === 'messageReceived' && e.data.id === sent.id, 5000, 'node message');
      assert.equal(got.data.userId, alice.id);
      assert.equal(got.data.firstName, 'Alice');
      assert.equal(got.data.text, 'hello from node');
      assert.equal(got.data.clientMsgId, 'n1');
      assert.equal(got.data.createdAt, sent.createdAt);

      // a few more each way, in order
      for (let i = 0; i < 3; i++) {
        await py.send(`py ${i}`, `q${i}`);
        await sendOk(node, { roomId: room, text: `js ${i}` });
      }
      for (let i = 0; i < 3; i++) {
        await node.inbox.wait('messageReceived', { text: `py ${i}` });
        await py.waitFor((e) => e.event === 'messageReceived' && e.data.text === `js ${i}`, 5000, `js ${i}`);
      }
      const texts = py.events.filter((e) => e.event === 'messageReceived').map((e) => e.data.text);
      assert.deepEqual(texts, ['hello from python ✓', 'hello from node', 'py 0', 'js 0', 'py 1', 'js 1', 'py 2', 'js 2']);
      assert.equal(py.events.filter((e) => e.event === 'error').length, 0);
      const last = py.events.filter((e) => e.event === 'ack').pop();
      assert.equal(last.transport, transports === 'polling' ? 'polling' : 'websocket');
      assert.deepEqual(await py.quit(), { code: 0, signal: null });
    });
  }

  test('python with a bad token is refused', T, async (t) => {
    const [alice] = await makeUsers(cl, 'Alice');
    const py = new PyClient(python, ['--url', cl.url, '--token', 'bad.token.here', '--target', alice.id, '--timeout', '2']);
    t.after(() => py.quit());
    const ev = await py.waitFor((e) => e.event === 'error' || e.event === 'connected', 10000, 'refusal');
    assert.equal(ev.event, 'error');
    const refused = py.events.find((e) => e.event === 'connect_error');
    assert.ok(refused, `no connect_error: ${JSON.stringify(py.events)}`);
    assert.equal(refused.data?.message ?? refused.data, 'unauthorized');
    assert.equal((await py.quit()).code, 1);
  });
});
