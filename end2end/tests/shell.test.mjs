// The app shell: hydration, a client-side interaction, a server-function round trip to the
// database, client-side navigation and the 404 page.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, launch, openIn, signedInOwner } from './browser.mjs';

async function openHydrated(browser, path, options = {}) {
  return openIn(await signedInOwner(browser, options), path);
}

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('the dashboard hydrates and its status check round-trips to the database without a reload', async () => {
  const { context, page, errors } = await openHydrated(browser, '/');
  await page.evaluate(() => { window.__noReload = 'still here'; });

  const checks = page.getByTestId('status-checks');
  await checks.waitFor();
  const before = Number(await checks.textContent());
  assert.ok(Number.isInteger(before) && before >= 1, `server-rendered count: ${before}`);
  assert.match(await page.getByTestId('db-backend').textContent(), /SQLite|PostgreSQL/);

  const response = page.waitForResponse((r) => r.url().includes('/api/get_system_status') && r.request().method() === 'POST');
  await page.getByRole('button', { name: 'Check again' }).click();
  const res = await response;
  assert.equal(res.status(), 200);
  const counted = (await res.json()).status_checks;
  assert.ok(counted > before, `the click's round trip counted a new check (${before} -> ${counted})`);
  await page.waitForFunction((n) => Number(document.querySelector('[data-testid="status-checks"]')?.textContent) === n, counted);

  assert.equal(await page.evaluate(() => window.__noReload), 'still here', 'no full page reload');
  assert.deepEqual(errors, []);
  await context.close();
});

test('on a phone the menu opens and navigation is client-side', async () => {
  const { context, page, errors } = await openHydrated(browser, '/', { viewport: { width: 390, height: 844 } });
  await page.evaluate(() => { window.__noReload = 'still here'; });

  const toggle = page.getByRole('button', { name: 'Menu', exact: true });
  assert.equal(await toggle.getAttribute('aria-expanded'), 'false');
  const keysLink = page.getByRole('navigation', { name: 'Primary' }).getByRole('link', { name: 'Keys' });
  assert.equal(await keysLink.isVisible(), false, 'nav collapsed on a phone');

  await toggle.click();
  await page.getByRole('button', { name: 'Close menu' }).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Close menu' }).getAttribute('aria-expanded'), 'true');
  assert.equal(await keysLink.isVisible(), true);

  await keysLink.click();
  await page.getByRole('heading', { level: 1, name: 'Keys' }).waitFor();
  assert.equal(new URL(page.url()).pathname, '/keys');
  await toggle.waitFor();
  assert.equal(await toggle.getAttribute('aria-expanded'), 'false', 'menu closes after navigating');
  // The collapsed nav is out of the accessibility tree, hence includeHidden.
  const hiddenKeysLink = page.getByRole('link', { name: 'Keys', includeHidden: true });
  assert.equal(await hiddenKeysLink.isVisible(), false, 'nav collapsed again');
  assert.equal(await hiddenKeysLink.getAttribute('aria-current'), 'page');
  assert.equal(await page.evaluate(() => window.__noReload), 'still here', 'client-side navigation');
  assert.deepEqual(errors, []);
  await context.close();
});

test('unknown pages answer 404 inside the layout', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const res = await page.goto(`${BASE}/definitely/not/here`);
  assert.equal(res.status(), 404);
  await page.getByRole('heading', { level: 1, name: 'Page not found' }).waitFor();
  assert.equal(await page.getByRole('navigation', { name: 'Primary' }).isVisible(), true);
  await context.close();
});
