// The README's screenshots of the web app, made the way the browser tests
// drive it: a throwaway cluster (../integration/lib/stack.mjs) serving
// web/dist, chromium via playwright-core, a short conversation between
// alice (desktop, 1280x800), bob (phone, 390x844) and carol. Writes
// docs/img/*.png (or into the directory given as the first argument).
// Run it through scripts/screenshots.sh, which builds what it needs.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../integration/lib/stack.mjs';
import { appMissing, closeBrowser, msgLoc, openApp, runSession, sendText, startWebCluster, tid, waitTicks } from './lib.mjs';

const out = path.resolve(process.argv[2] || path.join(ROOT, 'docs/img'));
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

const why = appMissing();
if (why) {
  process.stderr.write(`screenshots: ${why}\n`);
  process.exit(1);
}
mkdirSync(out, { recursive: true });

const alice = { id: 'alice', name: 'Alice' };
const bob = { id: 'bob', name: 'Bob' };
const carol = { id: 'carol', name: 'Carol' };
const shot = async (page, name) => {
  const file = path.join(out, name);
  await page.screenshot({ path: file });
  process.stdout.write(`${path.relative(process.cwd(), file)}\n`);
};

const cluster = await startWebCluster();
try {
  await runSession('screenshots', {}, async (s) => {
    const actx = await s.context({ viewport: DESKTOP });
    const bctx = await s.context({ viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 1 });
    const cctx = await s.context({ viewport: DESKTOP });

    // a group first, so the conversation list has two kinds of rooms
    const a = await openApp(s, cluster.url, alice, '/', { ctx: actx });
    await a.locator(tid('new-group-name')).fill('launch');
    await a.locator(tid('new-group-members')).fill('bob, carol');
    await a.locator(tid('new-group-create')).click();
    const group = a.locator(tid('chat-view', '[data-room-id^="g_"]'));
    await group.waitFor();
    const groupId = await group.getAttribute('data-room-id');
    await sendText(a, 'Release notes are in the doc, please have a look');
    await waitTicks(a, 'Release notes are in the doc, please have a look', 'sent');

    // bob reads the group; carol is online but has not opened it
    const bg = await openApp(s, cluster.url, bob, `/room/${groupId}`, { ctx: bctx });
    await msgLoc(bg, 'Release notes are in the doc, please have a look').waitFor();
    await sendText(bg, 'Looks good to me');
    await msgLoc(a, 'Looks good to me').waitFor();
    await bg.close();
    await openApp(s, cluster.url, carol, '/', { ctx: cctx });
    await waitTicks(a, 'Release notes are in the doc, please have a look', 'delivered');

    // the direct chat, both sides open
    await a.goto(`${cluster.url}/#/chat/bob`);
    await a.locator(tid('conn-status', '[data-state="connected"]')).waitFor();
    const b = await openApp(s, cluster.url, bob, '/chat/alice', { ctx: bctx });
    const lines = [
      [a, 'Hi Bob! Did the deploy go through?'],
      [b, 'Yes, all three gateways are up'],
      [b, 'and storage caught up with the stream'],
      [a, 'Great. Ticks move live on my side'],
      [a, 'Reload the page: the history comes back once'],
    ];
    for (const [page, text] of lines) {
      await sendText(page, text);
      await waitTicks(page, text, 'seen');
      await msgLoc(page === a ? b : a, text).waitFor();
    }
    // the app announces typing at most every 1.5 s: type for longer than that
    const typing = b.locator(tid('composer-input')).pressSequentially('Checking the dashboards', { delay: 120 });
    await a.locator(tid('typing-indicator')).waitFor({ state: 'visible' });
    await typing;
    await a.locator(tid('typing-indicator')).waitFor({ state: 'visible' });
    await shot(a, 'chat-desktop.png');
    await shot(b, 'chat-phone.png');

    // the group again: seen by 1 of 2, each member's receipt
    await b.locator(tid('composer-input')).fill('');
    await a.goto(`${cluster.url}/#/room/${groupId}`);
    const mine = msgLoc(a, 'Release notes are in the doc, please have a look');
    await mine.locator(tid('msg-seen-by')).filter({ hasText: /seen by 1 of 2/ }).waitFor();
    await mine.locator(tid('msg-seen-by')).click();
    await mine.locator(tid('receipt-row', '[data-user-id="carol"][data-status="delivered"]')).waitFor();
    await shot(a, 'group-desktop.png');

    // the conversation list on a phone
    await b.goto(`${cluster.url}/#/`);
    await b.locator(tid('conv-item', `[data-room-id="${groupId}"]`)).waitFor();
    await shot(b, 'list-phone.png');
  });
} finally {
  await closeBrowser();
  await cluster.stop();
}
