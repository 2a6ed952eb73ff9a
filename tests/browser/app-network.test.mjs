// The web app (web/dist) in chromium when the network is not the happy
// default: a polling-only page (&transports=polling) chats with a default
// one; a context taken offline (context.setOffline) while the other side
// sends sees every message once and in order when it is back, and messages
// typed while offline are queued and delivered once, in the order typed.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { makeUsers } from '../integration/lib/chat.mjs';
import {
  appMissing,
  assertOnceInOrder,
  browserTest,
  closeBrowser,
  msgLoc,
  openApp,
  sendText,
  shownMessages,
  startWebCluster,
  tid,
  waitTicks,
} from './lib.mjs';

const missing = appMissing();

// What chromium itself logs while a context is offline: its failed
// requests and WebSocket attempts. The app's own errors still fail a test.
const OFFLINE_NOISE = [/net::ERR_INTERNET_DISCONNECTED/, /WebSocket connection to '.*' failed/];

describe('web app: polling only, offline and back', { skip: missing ?? false }, () => {
  let cluster;
  before(async () => {
    cluster = await startWebCluster();
  });
  after(async () => {
    await closeBrowser();
    await cluster?.stop();
  });

  browserTest('a polling-only page chats with a default one, ticks included', async (t, s) => {
    const [alice, bob] = await makeUsers(cluster, 'Alice', 'Bob');
    const actx = await s.context();
    const websockets = [];
    actx.on('page', (page) => page.on('websocket', (ws) => websockets.push(ws.url())));
    const a = await openApp(s, cluster.url, alice, `/chat/${bob.id}`, { ctx: actx, query: { transports: 'polling' } });
    const b = await openApp(s, cluster.url, bob, `/chat/${alice.id}`);
    await a.locator(tid('chat-view', ':not([data-room-id=""])')).waitFor();
    await b.locator(tid('chat-view', ':not([data-room-id=""])')).waitFor();

    // typing reaches the polling page
    await b.locator(tid('composer-input')).pressSequentially('typing', { delay: 20 });
    await a.locator(tid('typing-indicator')).waitFor({ state: 'visible' });
    await b.locator(tid('composer-input')).fill('');

    await sendText(a, 'over polling');
    await msgLoc(b, 'over polling').waitFor();
    await waitTicks(a, 'over polling', 'seen');
    await sendText(b, 'to the polling page');
    await msgLoc(a, 'to the polling page').waitFor();
    // delivered to a polling client only once it polled again: seen here,
    // since alice has the chat open
    await waitTicks(b, 'to the polling page', 'seen');

    assert.deepEqual(assertOnceInOrder(await shownMessages(a)), ['over polling', 'to the polling page']);
    assert.deepEqual(websockets, [], 'the polling-only page opened a WebSocket');
  });

  browserTest(
    'offline while the other side sends, then back: every message once, in order; ones typed offline are sent once, in order',
    { allowConsole: OFFLINE_NOISE },
    async (t, s) => {
      const [alice, bob] = await makeUsers(cluster, 'Alice', 'Bob');
      const actx = await s.context();
      const a = await openApp(s, cluster.url, alice, `/chat/${bob.id}`, { ctx: actx });
      const b = await openApp(s, cluster.url, bob, `/chat/${alice.id}`);
      await sendText(a, 'before');
      await waitTicks(a, 'before', 'seen');
      await msgLoc(b, 'before').waitFor();

      const status = a.locator(tid('conn-status'));
      await actx.setOffline(true);
      await a.locator(tid('conn-status', ':not([data-state="connected"])')).waitFor();

      const missed = ['while away 1', 'while away 2', 'while away 3'];
      for (const text of missed) {
        await sendText(b, text);
        await waitTicks(b, text, 'sent');
      }
      // alice's page is cut off: none of them reached it
      for (const text of missed) assert.equal(await msgLoc(a, text).count(), 0, `${text} reached an offline page`);

      await actx.setOffline(false);
      await a.locator(tid('conn-status', '[data-state="connected"]')).waitFor();
      await msgLoc(a, missed[2]).waitFor();
      // alice has the chat open again: bob's ticks go to seen
      for (const text of missed) await waitTicks(b, text, 'seen');

      // typed while offline: shown pending, sent with its clientMsgId when
      // the connection is back, stored once; the next two keep their order
      await actx.setOffline(true);
      await a.locator(tid('conn-status', ':not([data-state="connected"])')).waitFor();
      await sendText(a, 'written offline');
      const queued = msgLoc(a, 'written offline');
      await sendText(a, 'offline too');
      await sendText(a, 'offline three');
      await queued.locator(tid('msg-ticks', '[data-status="pending"]')).waitFor();
      assert.equal(await queued.getAttribute('data-id'), '');
      const clientMsgId = await queued.getAttribute('data-client-msg-id');
      assert.ok(clientMsgId, 'a queued message has its clientMsgId');

      await actx.setOffline(false);
      await status.and(a.locator('[data-state="connected"]')).waitFor();
      await waitTicks(a, 'written offline', 'seen');
      await msgLoc(b, 'written offline').waitFor();
      assert.equal(await msgLoc(a, 'written offline').getAttribute('data-client-msg-id'), clientMsgId);

      // a barrier: a message after everything, then nothing is doubled
      await sendText(b, 'after');
      await msgLoc(a, 'after').waitFor();
      await sendText(a, 'after too');
      await msgLoc(b, 'after too').waitFor();
      const want = ['before', ...missed, 'written offline', 'offline too', 'offline three', 'after', 'after too'];
      assert.deepEqual(assertOnceInOrder(await shownMessages(a), 'alice'), want);
      assert.deepEqual(assertOnceInOrder(await shownMessages(b), 'bob'), want);
    },
  );
});
