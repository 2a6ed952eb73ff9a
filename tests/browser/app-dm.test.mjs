// The web app (web/dist) in chromium, a direct chat between two browser
// contexts (two users), under --auth insecure-dev (signed in by
// ?user=ID&name=NAME): ticks that move sent -> delivered -> seen as the
// other side connects and opens the chat, a reload that shows the history
// once, typing, presence; the classic script-tag page chats with the app.

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
  ticksOf,
  tid,
  waitTicks,
} from './lib.mjs';

const missing = appMissing();

describe('web app: a direct chat in two browser contexts', { skip: missing ?? false }, () => {
  let cluster;
  before(async () => {
    cluster = await startWebCluster();
  });
  after(async () => {
    await closeBrowser();
    await cluster?.stop();
  });

  browserTest('ticks go sent -> delivered -> seen as the other side connects, then opens the chat', async (t, s) => {
    const [alice, bob] = await makeUsers(cluster, 'Alice', 'Bob');
    const a = await openApp(s, cluster.url, alice, `/chat/${bob.id}`);
    assert.equal(await a.locator(tid('me')).textContent(), alice.id);
    await a.locator(tid('chat-title')).filter({ hasText: bob.id }).waitFor();

    await sendText(a, 'hello bob');
    await waitTicks(a, 'hello bob', 'sent');
    const mine = msgLoc(a, 'hello bob');
    assert.equal(await mine.getAttribute('data-mine'), 'true');
    assert.ok(await mine.getAttribute('data-id'), 'a sent message has its server id');
    assert.match(await mine.getAttribute('data-client-msg-id'), /.+/);
    // bob has no socket anywhere: nothing can have been delivered
    assert.equal(await ticksOf(a, 'hello bob'), 'sent');

    // bob connects with the conversation list only: his socket gets the
    // message (delivered), the room is not open (not seen)
    const b = await openApp(s, cluster.url, bob, '/');
    const conv = b.locator(tid('conv-item', `[data-peer="${alice.id}"]`));
    await conv.locator(tid('conv-last')).filter({ hasText: 'hello bob' }).waitFor();
    assert.equal(await conv.getAttribute('data-kind'), 'direct');
    assert.equal(await conv.locator(tid('conv-unread')).textContent(), '1');
    await waitTicks(a, 'hello bob', 'delivered');

    // bob opens the chat: seen, and his unread count goes to 0
    await conv.click();
    await b.locator(tid('chat-view', `[data-room-id="${await conv.getAttribute('data-room-id')}"]`)).waitFor();
    const theirs = msgLoc(b, 'hello bob');
    await theirs.waitFor();
    assert.equal(await theirs.getAttribute('data-mine'), 'false');
    assert.equal(await theirs.getAttribute('data-id'), await mine.getAttribute('data-id'));
    await waitTicks(a, 'hello bob', 'seen');
    await conv.locator(tid('conv-unread')).filter({ hasText: /^0$/ }).waitFor({ state: 'attached' });

    // with the chat open on both sides, bob's answer arrives seen at once
    await sendText(b, 'hi alice');
    await waitTicks(b, 'hi alice', 'seen');
    await msgLoc(a, 'hi alice').waitFor();
    assert.deepEqual(assertOnceInOrder(await shownMessages(a)), ['hello bob', 'hi alice']);
    assert.deepEqual(assertOnceInOrder(await shownMessages(b)), ['hello bob', 'hi alice']);
  });

  browserTest('a reload shows the history once, in order, and stays signed in', async (t, s) => {
    const [alice, bob] = await makeUsers(cluster, 'Alice', 'Bob');
    const a = await openApp(s, cluster.url, alice, `/chat/${bob.id}`);
    const b = await openApp(s, cluster.url, bob, `/chat/${alice.id}`);
    const texts = ['one', 'two', 'three'];
    for (const text of texts) {
      await sendText(a, text);
      await waitTicks(a, text, 'seen');
    }
    await sendText(b, 'four');
    await msgLoc(a, 'four').waitFor();

    // reload without the sign-in in the URL: sessionStorage keeps it
    await a.goto(`${cluster.url}/#/chat/${bob.id}`);
    await a.waitForSelector(tid('conn-status', '[data-state="connected"]'));
    assert.equal(await a.locator(tid('me')).textContent(), alice.id);
    await msgLoc(a, 'four').waitFor();
    // a barrier: a message sent after the reload comes after every
    // message the history, the connect-time sync and the live feed bring
    await sendText(b, 'five');
    await msgLoc(a, 'five').waitFor();
    const shown = await shownMessages(a);
    assert.deepEqual(assertOnceInOrder(shown, 'after the reload'), [...texts, 'four', 'five']);
    assert.deepEqual(
      shown.map((m) => m.mine),
      [true, true, true, false, false],
    );
    for (const text of texts) assert.equal(await ticksOf(a, text), 'seen', `${text} keeps its ticks after the reload`);
  });

  browserTest('typing shows on the other side while the peer types, then goes', async (t, s) => {
    const [alice, bob] = await makeUsers(cluster, 'Alice', 'Bob');
    const a = await openApp(s, cluster.url, alice, `/chat/${bob.id}`);
    const b = await openApp(s, cluster.url, bob, `/chat/${alice.id}`);
    // the room exists once both opened it; nobody typed yet (bob sends the
    // first message: alice's first keystroke must be her first typing)
    await sendText(b, 'ready');
    await msgLoc(a, 'ready').waitFor();
    assert.equal(await b.locator(tid('typing-indicator')).count(), 0, 'no typing indicator before anyone types');

    await a.locator(tid('composer-input')).pressSequentially('hel', { delay: 20 });
    const indicator = b.locator(tid('typing-indicator'));
    await indicator.waitFor({ state: 'visible' });
    assert.match(await indicator.textContent(), /Alice|alice/);
    assert.equal(await a.locator(tid('typing-indicator')).count(), 0, 'the typist sees no indicator of her own');
    // she stops typing: it goes
    await indicator.waitFor({ state: 'detached' });

    // typing again, then sending: the message replaces the indicator
    await a.locator(tid('composer-input')).pressSequentially('lo', { delay: 20 });
    await indicator.waitFor({ state: 'visible' });
    await a.locator(tid('composer-input')).press('Enter');
    await msgLoc(b, 'hello').waitFor();
    await indicator.waitFor({ state: 'detached' });
  });

  browserTest('the classic page (web/dist/classic.html: script tag, io()) chats with the app', async (t, s) => {
    const [alice, carol] = await makeUsers(cluster, 'Alice', 'Carol');
    const a = await openApp(s, cluster.url, alice, `/chat/${carol.id}`);
    const c = await s.page(undefined, `${cluster.url}/classic.html?${new URLSearchParams({ user: carol.id, name: 'Carol', peer: alice.id })}`);
    await c.locator('[data-testid="classic-status"][data-state="connected"]').waitFor();

    await c.locator('[data-testid="classic-input"]').fill('hi from the classic page');
    await c.locator('[data-testid="classic-input"]').press('Enter');
    const got = msgLoc(a, 'hi from the classic page');
    await got.waitFor();
    assert.equal(await got.getAttribute('data-mine'), 'false');

    await sendText(a, 'hi from the app');
    const classic = c.locator('[data-testid="classic-msg"]').filter({ hasText: 'hi from the app' });
    await classic.waitFor();
    assert.equal(await classic.getAttribute('data-id'), await msgLoc(a, 'hi from the app').getAttribute('data-id'));
    // the classic page joined the chat (opened it): seen
    await waitTicks(a, 'hi from the app', 'seen');
    assert.deepEqual(await c.locator('[data-testid="classic-msg"]').allTextContents(), [
      'Carol: hi from the classic page',
      'Alice: hi from the app',
    ]);
  });

  browserTest('presence: the peer shows online while a page of theirs is open', async (t, s) => {
    const [alice, bob] = await makeUsers(cluster, 'Alice', 'Bob');
    const a = await openApp(s, cluster.url, alice, `/chat/${bob.id}`);
    await sendText(a, 'are you there?');
    await waitTicks(a, 'are you there?', 'sent');
    const peer = a.locator(tid('peer-presence'));
    assert.equal(await peer.getAttribute('data-online'), 'false', 'bob has never connected');
    const dot = a.locator(tid('conv-item', `[data-peer="${bob.id}"]`)).locator(tid('presence-dot'));
    await dot.waitFor();
    assert.equal(await dot.getAttribute('data-online'), 'false');

    const bobCtx = await s.context();
    const b = await openApp(s, cluster.url, bob, '/', { ctx: bobCtx });
    await a.locator(tid('peer-presence', '[data-online="true"]')).waitFor();
    await dot.and(a.locator('[data-online="true"]')).waitFor();
    // and alice is online for bob
    await b.locator(tid('conv-item', `[data-peer="${alice.id}"]`)).locator(tid('presence-dot', '[data-online="true"]')).waitFor();

    // bob closes his page (his last socket): offline again
    await b.close();
    await a.locator(tid('peer-presence', '[data-online="false"]')).waitFor();
    await dot.and(a.locator('[data-online="false"]')).waitFor();
  });
});
