// Browser tests: Debian's chromium driven by playwright-core, against a real
// cluster (Redis, PostgreSQL, chat-storage, gateways, HAProxy from
// ../integration/lib/stack.mjs) whose gateways serve a web root at /.
//
// browserTest(name, fn) is node:test's test() with a browser session `b`:
// b.context() opens a browser context (one "user": its own cookies and
// sessionStorage), b.page(ctx) a page in it. Every console error and
// uncaught page error fails the test (allowConsole lists the patterns a test
// expects, e.g. network errors while a context is offline). When the test
// fails, a PNG of every open page is saved into CHAT_ARTIFACTS (set by
// ctest to <build>/browser-artifacts), else build/browser-artifacts.
//
// The web app is web/dist (built by web/'s npm scripts). Where it is missing
// the app's tests are skipped with the reason, except under CI=true where a
// missing build is a failure.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { ROOT, startCluster } from '../integration/lib/stack.mjs';

// CHAT_WEB_DIST: another build of the app (e.g. a deliberately broken one,
// to see a test fail)
export const WEB_DIST = process.env.CHAT_WEB_DIST || path.join(ROOT, 'web/dist');
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const ARTIFACTS = process.env.CHAT_ARTIFACTS || path.join(ROOT, 'build/browser-artifacts');
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];

/** How long one DOM state may take to appear (a cluster under CI load is slow). */
export const WAIT = 15000;

let browserPromise = null;

/** The one chromium of this test file (closed when the process exits). */
export function browser() {
  browserPromise ??= chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  return browserPromise;
}

/** Close the browser (the after() hook of a test file). */
export async function closeBrowser() {
  const p = browserPromise;
  browserPromise = null;
  if (p) await (await p).close();
}

/**
 * Why the web app's tests cannot run here, or null when they can: web/dist
 * has no index.html. Under CI=true that is an error (a CI run must test the
 * app it ships), so this throws instead.
 */
export function appMissing() {
  if (existsSync(path.join(WEB_DIST, 'index.html'))) return null;
  const where = WEB_DIST.startsWith(ROOT + path.sep) ? path.relative(ROOT, WEB_DIST) : WEB_DIST;
  const why = `${where}/index.html is missing: build the web app first (scripts/build-web.sh)`;
  if (process.env.CI === 'true') throw new Error(`CI: ${why}`);
  return why;
}

/**
 * A cluster for the browser: Redis, PostgreSQL, one chat-storage, two
 * gateways serving `webRoot` at /, HAProxy in front (cluster.url is the
 * address a browser opens). `opts` go to startCluster.
 */
export function startWebCluster({ webRoot = WEB_DIST, ...opts } = {}) {
  return startCluster({ auth: 'insecure-dev', storage: true, pgFast: true, webRoot, ...opts });
}

const fileSafe = (s) => s.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80);

/** A PNG of each open page of `contexts` into ARTIFACTS; returns the paths. */
export async function screenshotAll(contexts, prefix) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const saved = [];
  let n = 0;
  for (const ctx of contexts) {
    for (const page of ctx.pages()) {
      const file = path.join(ARTIFACTS, `${fileSafe(prefix)}-${++n}.png`);
      try {
        await page.screenshot({ path: file, fullPage: true, timeout: 5000 });
        saved.push(file);
      } catch (err) {
        process.stderr.write(`browser: no screenshot of ${page.url()}: ${err.message}\n`);
      }
    }
  }
  return saved;
}

/**
 * One test's browser session: contexts and pages it opens, console errors
 * they log. Created by browserTest().
 */
export class Session {
  constructor(name, { allowConsole = [] } = {}) {
    this.name = name;
    this.allowConsole = allowConsole;
    this.contexts = [];
    this.errors = []; // "page-url: text"
  }

  /** A new browser context (desktop size unless `opts.viewport`). */
  async context(opts = {}) {
    const ctx = await (await browser()).newContext({ viewport: { width: 1280, height: 800 }, ...opts });
    ctx.setDefaultTimeout(WAIT);
    this.contexts.push(ctx);
    ctx.on('page', (page) => this.watch(page));
    return ctx;
  }

  /** A page in `ctx` (a new context when omitted), at `url` when given. */
  async page(ctx, url) {
    ctx ??= await this.context();
    const page = await ctx.newPage();
    if (url) await page.goto(url);
    return page;
  }

  watch(page) {
    const record = (text) => {
      if (this.allowConsole.some((re) => re.test(text))) return;
      this.errors.push(`${page.url()}: ${text}`);
    };
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const at = msg.location()?.url;
      record(at ? `${msg.text()} (${at})` : msg.text());
    });
    page.on('pageerror', (err) => record(`uncaught ${err.stack || err.message}`));
  }

  async close() {
    await Promise.all(this.contexts.map((ctx) => ctx.close().catch(() => {})));
    this.contexts = [];
  }
}

/**
 * Run fn(session) with a new Session: rejects when fn does or when a page
 * logged a console error; then (on failure) saves a PNG of every open page
 * into ARTIFACTS, named after `name`, and names them in the error. Every
 * context is closed in the end.
 */
export async function runSession(name, { allowConsole } = {}, fn) {
  const s = new Session(name, { allowConsole });
  try {
    await fn(s);
    assert.deepEqual(s.errors, [], 'console errors in the pages');
  } catch (err) {
    const saved = await screenshotAll(s.contexts, name);
    if (saved.length > 0) err.message += `\nscreenshots: ${saved.join(', ')}`;
    if (s.errors.length > 0) err.message += `\nconsole errors:\n  ${s.errors.join('\n  ')}`;
    throw err;
  } finally {
    await s.close();
  }
}

/**
 * test(name, fn) run by runSession(): fn(t, session). opts: node:test's
 * options plus allowConsole (RegExps of console errors the test expects).
 */
export function browserTest(name, opts, fn) {
  if (typeof opts === 'function') [opts, fn] = [{}, opts];
  const { allowConsole, ...testOpts } = opts;
  return test(name, { timeout: 120000, ...testOpts }, (t) => runSession(name, { allowConsole }, (s) => fn(t, s)));
}

/** The value of `attr` on the first element matching `selector`. */
export function attr(page, selector, name) {
  return page.locator(selector).first().getAttribute(name);
}

/** `[data-testid="id"]` plus extra attribute selectors. */
export const tid = (id, extra = '') => `[data-testid="${id}"]${extra}`;

// ---- the web app (web/, UI contract in its data-testid attributes) -------

/**
 * The app's address for `user` ({id, name, token}): signed in by token when
 * the user has one (JWT), else by id and name (insecure-dev); `hash` the
 * route ('/', '/chat/PEER', '/room/ROOM'); `query` more parameters
 * (transports).
 */
export function appUrl(base, user, hash = '/', query = {}) {
  const q = new URLSearchParams(user.token ? { token: user.token } : { user: user.id, name: user.name });
  for (const [k, v] of Object.entries(query)) q.set(k, v);
  return `${base}/?${q}#${hash}`;
}

/**
 * Open the app as `user` at `hash` in `ctx` (a new context when omitted)
 * and wait until it says connected; resolves to the page.
 */
export async function openApp(s, base, user, hash = '/', { ctx, query, viewport } = {}) {
  ctx ??= await s.context(viewport ? { viewport } : {});
  const page = await s.page(ctx, appUrl(base, user, hash, query));
  await page.waitForSelector(tid('conn-status', '[data-state="connected"]'));
  return page;
}

const reEscape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The `msg` elements whose text is exactly `text`. */
export function msgLoc(page, text) {
  return page.locator(tid('msg')).filter({ has: page.locator(tid('msg-text'), { hasText: new RegExp(`^${reEscape(text)}$`) }) });
}

/** Type `text` into the composer and press Enter, as a user does. */
export async function sendText(page, text) {
  const input = page.locator(tid('composer-input'));
  await input.fill(text);
  await input.press('Enter');
}

/** Wait until my message `text` shows ticks `status`. */
export function waitTicks(page, text, status, timeout = WAIT) {
  return msgLoc(page, text).locator(tid('msg-ticks', `[data-status="${status}"]`)).waitFor({ timeout });
}

/** Current ticks status of my message `text`. */
export function ticksOf(page, text) {
  return msgLoc(page, text).locator(tid('msg-ticks')).getAttribute('data-status');
}

/** Every `msg` of the open chat, in DOM order: {id, seq, text, mine, clientMsgId}. */
export function shownMessages(page) {
  return page.$$eval('[data-testid="msg-list"] [data-testid="msg"]', (els) =>
    els.map((e) => ({
      id: e.dataset.id,
      seq: e.dataset.seq === '' ? null : Number(e.dataset.seq),
      text: e.querySelector('[data-testid="msg-text"]')?.textContent ?? '',
      mine: e.dataset.mine === 'true',
      clientMsgId: e.dataset.clientMsgId,
    })),
  );
}

/**
 * The contract's order: stored messages (with an id) each once, in
 * ascending seq, and pending ones (no id) after them. Returns the texts.
 */
export function assertOnceInOrder(list, what = 'messages') {
  const stored = list.filter((m) => m.id);
  const ids = stored.map((m) => m.id);
  assert.equal(new Set(ids).size, ids.length, `${what}: an id shown twice: ${JSON.stringify(list)}`);
  for (let i = 1; i < stored.length; i++) {
    assert.ok(stored[i - 1].seq < stored[i].seq, `${what}: seq ${stored[i - 1].seq} before ${stored[i].seq}`);
  }
  const firstPending = list.findIndex((m) => !m.id);
  if (firstPending >= 0) assert.ok(list.slice(firstPending).every((m) => !m.id), `${what}: a pending one before a stored one`);
  return list.map((m) => m.text);
}
