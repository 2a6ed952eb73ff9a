// A page written as the classic Socket.IO tutorials write it, needing no
// app build: `<script src="/socket.io/socket.io.js">` served by the
// gateway, then `io()`. In chromium, through HAProxy, under JWT, it chats
// with a socket.io-client user: both ways, over the default transports
// (polling, then the upgrade to WebSocket) and polling only.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { connectAs, joinChat, makeUsers, sendOk } from '../integration/lib/chat.mjs';
import { startCluster } from '../integration/lib/stack.mjs';
import { browserTest, closeBrowser, WAIT } from './lib.mjs';

// The page: what a tutorial's index.html does, plus data-* attributes the
// test waits on. ?token=JWT&to=USER[&transports=polling]
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>classic Socket.IO page</title></head>
<body data-state="connecting">
<ul id="messages"></ul>
<form id="form"><input id="input" autocomplete="off"><button>Send</button></form>
<script src="/socket.io/socket.io.js"></script>
<script>
  const q = new URLSearchParams(location.search);
  const target = q.get('to');
  const opts = { auth: { token: q.get('token') } };
  if (q.get('transports')) opts.transports = q.get('transports').split(',');
  const socket = io(opts);
  socket.on('connect', () => {
    socket.emit('joinChat', { targetUserId: target }, (res) => {
      document.body.dataset.room = res && res.roomId ? res.roomId : 'error';
      document.body.dataset.transport = socket.io.engine.transport.name;
      document.body.dataset.state = 'joined';
    });
  });
  socket.io.engine.on('upgrade', (tr) => { document.body.dataset.transport = tr.name; });
  socket.on('messageReceived', (msg) => {
    const li = document.createElement('li');
    li.className = 'msg';
    li.dataset.from = msg.userId;
    li.dataset.id = msg.id;
    li.textContent = msg.text;
    document.getElementById('messages').appendChild(li);
  });
  document.getElementById('form').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = document.getElementById('input');
    socket.emit('sendMessage', { targetUserId: target, text: input.value });
    input.value = '';
  });
</script>
</body></html>
`;

const tmp = mkdtempSync(path.join(os.tmpdir(), 'chat-browser-classic-'));
writeFileSync(path.join(tmp, 'index.html'), PAGE);

describe('a classic <script src="/socket.io/socket.io.js"> page', () => {
  let cluster;
  before(async () => {
    cluster = await startCluster({ auth: 'jwt', webRoot: tmp });
  });
  after(async () => {
    await closeBrowser();
    await cluster?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  for (const transports of [null, 'polling']) {
    const how = transports ? 'polling only' : 'default transports, upgraded to WebSocket';
    browserTest(`chats with a socket.io-client user through HAProxy (${how})`, async (t, s) => {
      const [alice, bob] = await makeUsers(cluster, 'Alice', 'Bob');
      const page = await s.page();
      const q = new URLSearchParams({ token: alice.token, to: bob.id, ...(transports ? { transports } : {}) });
      await page.goto(`${cluster.url}/?${q}`);
      await page.waitForSelector('body[data-state="joined"]');
      const roomId = await page.getAttribute('body', 'data-room');
      assert.notEqual(roomId, 'error', 'joinChat failed in the page');
      if (transports) {
        assert.equal(await page.getAttribute('body', 'data-transport'), 'polling');
      } else {
        await page.waitForSelector('body[data-transport="websocket"]');
      }

      const bobSocket = await connectAs(cluster.url, bob, {}, t);
      assert.equal(await joinChat(bobSocket, alice.id), roomId, 'both sides are in the same direct room');

      // the page sends by its form, as a user does
      await page.fill('#input', 'hello from the page');
      await page.press('#input', 'Enter');
      const got = await bobSocket.inbox.wait('messageReceived', { text: 'hello from the page' }, WAIT);
      assert.equal(got.userId, alice.id);
      assert.equal(got.roomId, roomId);

      // and shows what the node client sends
      const ack = await sendOk(bobSocket, { targetUserId: alice.id, text: 'hello from node' });
      await page.waitForSelector(`li.msg[data-id="${ack.id}"][data-from="${bob.id}"]`);
      assert.deepEqual(await page.locator('li.msg').allTextContents(), ['hello from the page', 'hello from node']);
      if (!transports) assert.equal(await page.getAttribute('body', 'data-transport'), 'websocket');
    });
  }
});
