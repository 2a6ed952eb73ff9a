// The web app (web/dist) in chromium under JWT (signed in by ?token=): a
// group of three browser contexts where the sender sees "seen by all" only
// when everyone has, and scroll-back through older pages of history.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { makeUsers } from '../integration/lib/chat.mjs';
import { connectStored, sendMany } from '../integration/lib/storage-chat.mjs';
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
  WAIT,
} from './lib.mjs';

const missing = appMissing();

describe('web app: groups and history under JWT', { skip: missing ?? false }, () => {
  let cluster;
  before(async () => {
    // scroll-back sends more than a page at once: above the default burst
    cluster = await startWebCluster({ auth: 'jwt', args: ['--rate-limit', '1000', '--rate-burst', '1000'] });
  });
  after(async () => {
    await closeBrowser();
    await cluster?.stop();
  });

  browserTest('a group of three: "seen by all" only when everyone has seen', async (t, s) => {
    const [alice, bob, carol] = await makeUsers(cluster, 'Alice', 'Bob', 'Carol');
    const a = await openApp(s, cluster.url, alice, '/');
    await a.locator(tid('new-group-name')).fill('trio');
    await a.locator(tid('new-group-members')).fill(`${bob.id}, ${carol.id}`);
    await a.locator(tid('new-group-create')).click();
    const view = a.locator(tid('chat-view', '[data-room-id^="g_"]'));
    await view.waitFor();
    const roomId = await view.getAttribute('data-room-id');
    await a.locator(tid('group-member', `[data-user-id="${carol.id}"]`)).waitFor();
    const members = await a.locator(tid('group-member')).evaluateAll((els) => els.map((e) => e.dataset.userId).sort());
    assert.deepEqual(members, [alice.id, bob.id, carol.id].sort());
    const conv = a.locator(tid('conv-item', `[data-room-id="${roomId}"]`));
    assert.equal(await conv.getAttribute('data-kind'), 'group');

    await sendText(a, 'hi all');
    await waitTicks(a, 'hi all', 'sent');
    const seenBy = msgLoc(a, 'hi all').locator(tid('msg-seen-by'));
    await seenBy.filter({ hasText: /seen by 0 of 2/ }).waitFor();

    // bob opens the group: seen by 1 of 2; carol never connected, so the
    // message as a whole is still only sent
    await openApp(s, cluster.url, bob, `/room/${roomId}`);
    await seenBy.filter({ hasText: /seen by 1 of 2/ }).waitFor();
    assert.equal(await ticksOf(a, 'hi all'), 'sent');
    await seenBy.click();
    const row = (user, status) => msgLoc(a, 'hi all').locator(tid('receipt-row', `[data-user-id="${user.id}"][data-status="${status}"]`));
    await row(bob, 'seen').waitFor();
    await row(carol, 'sent').waitFor();

    // carol connects without opening the group: delivered to all, seen by 1
    const c = await openApp(s, cluster.url, carol, '/');
    await waitTicks(a, 'hi all', 'delivered');
    await row(carol, 'delivered').waitFor();
    assert.match(await seenBy.textContent(), /seen by 1 of 2/);

    // carol opens it: now seen by all
    await c.locator(tid('conv-item', `[data-room-id="${roomId}"]`)).click();
    await msgLoc(c, 'hi all').waitFor();
    await waitTicks(a, 'hi all', 'seen');
    await seenBy.filter({ hasText: /seen by 2 of 2/ }).waitFor();
    await row(carol, 'seen').waitFor();
    await row(bob, 'seen').waitFor();
  });

  browserTest('sign-in by pasting a token in the form; a reload stays signed in', async (t, s) => {
    const [alice] = await makeUsers(cluster, 'Alice');
    const page = await s.page(undefined, `${cluster.url}/`);
    await page.locator(tid('signin-token')).fill(alice.token);
    await page.locator(tid('signin-submit')).click();
    await page.locator(tid('conn-status', '[data-state="connected"]')).waitFor();
    assert.equal(await page.locator(tid('me')).textContent(), alice.id);
    await page.reload();
    await page.locator(tid('conn-status', '[data-state="connected"]')).waitFor();
    assert.equal(await page.locator(tid('me')).textContent(), alice.id);
    assert.equal(await page.locator(tid('signin-submit')).count(), 0);
  });

  browserTest('group members: added and removed from the open group, live on their side', async (t, s) => {
    const [alice, bob, dave] = await makeUsers(cluster, 'Alice', 'Bob', 'Dave');
    const a = await openApp(s, cluster.url, alice, '/');
    const d = await openApp(s, cluster.url, dave, '/');
    await a.locator(tid('new-group-name')).fill('pair');
    await a.locator(tid('new-group-members')).fill(bob.id);
    await a.locator(tid('new-group-create')).click();
    const view = a.locator(tid('chat-view', '[data-room-id^="g_"]'));
    await view.waitFor();
    const roomId = await view.getAttribute('data-room-id');
    const daveConv = d.locator(tid('conv-item', `[data-room-id="${roomId}"]`));
    assert.equal(await daveConv.count(), 0, 'dave is not in the group yet');

    await a.locator(tid('group-add-user')).fill(dave.id);
    await a.locator(tid('group-add')).click();
    await a.locator(tid('group-member', `[data-user-id="${dave.id}"]`)).waitFor();
    await daveConv.waitFor();
    await sendText(a, 'welcome dave');
    await daveConv.locator(tid('conv-last')).filter({ hasText: 'welcome dave' }).waitFor();

    await a.locator(tid('group-member', `[data-user-id="${dave.id}"]`)).locator(tid('group-remove')).click();
    await a.locator(tid('group-member', `[data-user-id="${dave.id}"]`)).waitFor({ state: 'detached' });
    await daveConv.waitFor({ state: 'detached' });
    const left = await a.locator(tid('group-member')).evaluateAll((els) => els.map((e) => e.dataset.userId).sort());
    assert.deepEqual(left, [alice.id, bob.id].sort());
  });

  browserTest('scroll-back: older pages load on demand, each message once and in order', async (t, s) => {
    const [alice, bob] = await makeUsers(cluster, 'Alice', 'Bob');
    // bob's socket receives them as they are sent, so when his page opens
    // they are history, not something a connect-time sync brings
    const bobSock = await connectStored(cluster.url, bob, {}, t);
    const aliceSock = await connectStored(cluster.url, alice, {}, t);
    const COUNT = 75;
    const sent = await sendMany(aliceSock, { targetUserId: bob.id }, COUNT, { tag: 'old' });
    for (const rec of sent) assert.ok(rec.ack?.id, `${rec.text}: ${rec.error ?? JSON.stringify(rec.ack)}`);
    await bobSock.inbox.wait('messageReceived', { text: `old #${COUNT - 1}` }, WAIT);
    bobSock.disconnect();
    aliceSock.disconnect();

    const b = await openApp(s, cluster.url, bob, `/chat/${alice.id}`);
    await msgLoc(b, `old #${COUNT - 1}`).waitFor();
    const older = b.locator(tid('load-older'));
    await older.waitFor();
    let shown = await shownMessages(b);
    assert.ok(shown.length < COUNT, `the first page shows ${shown.length} of ${COUNT}: not paged`);
    assertOnceInOrder(shown, 'first page');

    for (let clicks = 0; (await older.count()) > 0; clicks++) {
      assert.ok(clicks < 10, 'load-older never went away');
      const before = shown.length;
      await older.click();
      await b.waitForFunction(
        (n) => document.querySelectorAll('[data-testid="msg-list"] [data-testid="msg"]').length > n,
        before,
        { timeout: WAIT },
      );
      shown = await shownMessages(b);
      assertOnceInOrder(shown, `after ${clicks + 1} load-older`);
    }
    // every message, in the room's order (concurrent sends are ordered by
    // the seq storage gave them, not by when they were emitted)
    const bySeq = sent.slice().sort((x, y) => x.ack.seq - y.ack.seq);
    assert.deepEqual(
      shown.map((m) => `${m.seq} ${m.id} ${m.text}`),
      bySeq.map((r) => `${r.ack.seq} ${r.ack.id} ${r.text}`),
    );
    assert.ok(shown.every((m) => !m.mine));
  });
});
