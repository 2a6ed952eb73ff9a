// The browser harness itself (lib.mjs): what a failing browser test leaves
// behind (a PNG of every open page in the artifacts folder) and that a
// console error or an uncaught page error fails a test. Needs no cluster.

import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { ARTIFACTS, closeBrowser, runSession } from './lib.mjs';

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47]);

/** runSession(name, opts, fn) must reject; resolves to the error. */
async function failing(name, opts, fn) {
  try {
    await runSession(name, opts, fn);
  } catch (err) {
    return err;
  }
  assert.fail(`${name}: the session passed`);
}

/** The screenshot paths an error names. */
const shots = (err) => (err.message.match(/screenshots: (.*)/)?.[1] ?? '').split(', ').filter(Boolean);

describe('browser harness', () => {
  after(closeBrowser);

  test('a failing test saves a PNG of every open page into CHAT_ARTIFACTS', async () => {
    const err = await failing('harness failing', {}, async (s) => {
      const a = await s.page();
      await a.setContent('<h1>first user</h1>');
      const b = await s.page(await s.context({ viewport: { width: 390, height: 844 } }));
      await b.setContent('<h1>second user</h1>');
      assert.fail('deliberate');
    });
    assert.match(err.message, /deliberate/);
    const files = shots(err);
    assert.equal(files.length, 2, err.message);
    for (const f of files) {
      assert.ok(f.startsWith(ARTIFACTS), `${f} is not in ${ARTIFACTS}`);
      assert.ok(existsSync(f), f);
      assert.ok(readFileSync(f).subarray(0, 4).equals(PNG), `${f} is not a PNG`);
      rmSync(f);
    }
  });

  test('a console error fails the test and is named', async () => {
    const err = await failing('harness console', {}, async (s) => {
      const page = await s.page();
      const logged = page.waitForEvent('console');
      await page.setContent('<script>console.error("boom from the page")</script>');
      await logged;
    });
    assert.match(err.message, /console errors/);
    assert.match(err.message, /boom from the page/);
    for (const f of shots(err)) rmSync(f);
  });

  test('an uncaught page error fails the test', async () => {
    const err = await failing('harness uncaught', {}, async (s) => {
      const page = await s.page();
      const thrown = page.waitForEvent('pageerror');
      await page.setContent('<script>setTimeout(() => { throw new Error("uncaught in page") })</script>');
      await thrown;
    });
    assert.match(err.message, /uncaught in page/);
    for (const f of shots(err)) rmSync(f);
  });

  test('errors a test expects (allowConsole) do not fail it', async () => {
    await runSession('harness allowed', { allowConsole: [/expected offline noise/] }, async (s) => {
      const page = await s.page();
      const logged = page.waitForEvent('console');
      await page.setContent('<script>console.error("expected offline noise")</script>');
      await logged;
    });
  });
});
