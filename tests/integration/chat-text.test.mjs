// Text a browser can produce is accepted or refused, never punished
// (proto/PROTOCOL.md "Text"): JSON.stringify of a string cut inside an emoji
// emits a lone UTF-16 surrogate escape ("\ud83d"), which is not valid
// Unicode. The gateway stores it as U+FFFD and the connection stays.
// Real Redis, PostgreSQL, chat-storage and a gateway, stock socket.io-client.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closeAllClients } from './lib/client.mjs';
import { makeUsers } from './lib/chat.mjs';
import { startCluster } from './lib/stack.mjs';
import { connectStored, latest, messageAt, request, sendStored } from './lib/storage-chat.mjs';

const T = { timeout: 45000 };
const WAIT = 10000;

after(() => closeAllClients());

describe('text with a lone surrogate', () => {
  let cl;
  before(async () => {
    cl = await startCluster({ gateways: 1, storage: true, pgFast: true, haproxy: false });
  });
  after(() => cl?.stop());

  for (const transport of ['websocket', 'polling']) {
    test(`a cut emoji is stored as U+FFFD and the ${transport} connection stays`, T, async (t) => {
      const [alice, bob] = await makeUsers(cl, 'Alice', 'Bob');
      const a = await connectStored(cl.url, alice, { transports: [transport] }, t);
      const b = await connectStored(cl.url, bob, { transports: ['websocket'] }, t);
      const opened = await request(a, 'joinChat', { targetUserId: bob.id });
      assert.equal(typeof opened?.roomId, 'string', JSON.stringify(opened));
      await request(b, 'joinChat', { targetUserId: alice.id });
      const disconnects = [];
      a.on('disconnect', (why) => disconnects.push(why));

      const cut = 'smile \u{1F600}'.slice(0, -1); // ends with the lone high half
      assert.ok(JSON.stringify(cut).includes('\\ud83d'), 'the client really sends the escape');
      const m1 = await sendStored(a, { targetUserId: bob.id, text: cut, clientMsgId: 'cut-1' });
      const got = await b.inbox.wait('messageReceived', { id: m1.id }, WAIT);
      assert.equal(got.text, 'smile \uFFFD');
      const lone = await sendStored(a, { targetUserId: bob.id, text: '\udc00x', clientMsgId: 'cut-2' });
      assert.equal((await b.inbox.wait('messageReceived', { id: lone.id }, WAIT)).text, '\uFFFDx');
      // a valid pair stays the emoji
      const whole = await sendStored(a, { targetUserId: bob.id, text: 'ok \u{1F600}', clientMsgId: 'cut-3' });
      assert.equal((await b.inbox.wait('messageReceived', { id: whole.id }, WAIT)).text, 'ok \u{1F600}');

      assert.deepEqual(disconnects, [], 'the connection stayed');
      assert.ok(a.connected);
      assert.equal((await messageAt(cl.apiUrl, bob, opened.roomId, m1.seq)).text, 'smile \uFFFD', 'history');
      assert.equal((await latest(cl.apiUrl, alice, opened.roomId)).text, 'ok \u{1F600}');
      const stored = await request(a, 'sendMessage', { targetUserId: bob.id, text: 'after', clientMsgId: 'cut-4' });
      assert.equal(stored?.status, 'sent', JSON.stringify(stored));
      const hist = await latest(cl.apiUrl, bob, opened.roomId);
      assert.equal(hist.text, 'after');
    });
  }
});
