// Issue 19 end to end: an owner sets a chatbot's budget on the Limits page, a visitor of its
// public chat page hits it and reads a friendly sentence (no scope, no numbers), and the owner
// sees on the Limits page which limit stopped it and the chatbot's consumption bar. A second
// visitor request served within the budget moves the bar.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { hydrated, launch, signedInOwner, workspaceWithMockKey } from './browser.mjs';

const MOCK = process.env.KEYWARD_E2E_MOCK_URL;
const rand = () => Math.random().toString(36).slice(2, 14).padEnd(12, 'q');
const KEY = `sk-limitkey${rand()}${rand()}c0de`;

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('limits: an owner sets a chatbot budget, a visitor hits it, the owner sees which limit stopped it', async () => {
  assert.ok(MOCK, 'the runner starts the mock provider');
  const ownerCtx = await signedInOwner(browser);
  const owner = await ownerCtx.newPage();
  const ownerErrors = [];
  owner.on('pageerror', (e) => ownerErrors.push(e.message));
  await workspaceWithMockKey(owner, 'Budget Co', MOCK, KEY);

  await hydrated(owner, '/chatbots');
  await owner.getByLabel('Chatbot name').fill('Thrifty');
  await owner.getByLabel('Public: visitors can chat without an account').check();
  await owner.getByRole('button', { name: 'Create chatbot' }).click();
  await owner.getByText(/Created Thrifty at \/thrifty/).waitFor();
  const chatPath = await owner.getByRole('link', { name: /^\/chat\/.*\/thrifty$/ }).textContent();

  // A daily budget far below one request's worst case (max_tokens 1024 at list price).
  await hydrated(owner, '/limits');
  const card = owner.getByRole('region', { name: 'Chatbot Thrifty' });
  await card.getByText('No limits.').waitFor();
  await card.getByLabel('Budget (credits)').fill('0.001');
  await card.getByLabel('Window').selectOption('day');
  await card.getByRole('button', { name: 'Save limits' }).click();
  await owner.getByText('Limits saved.').waitFor();
  await card.getByText('Limits: budget 0.001 credits a day (alert at 80 %).').waitFor();

  // The visitor.
  const visitorCtx = await browser.newContext();
  const page = await visitorCtx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await hydrated(page, chatPath);
  const chatsBefore = (await mockStats()).chat_requests;
  await page.getByLabel('Your message').fill('hello there');
  await page.getByRole('button', { name: 'Send' }).click();
  const alert = page.locator('.chat-error');
  await alert.waitFor();
  assert.equal(await alert.textContent(), 'This assistant has reached its usage limit. Please come back later.');
  assert.equal((await mockStats()).chat_requests, chatsBefore, 'the refused request never reached the provider');

  // The owner sees which limit refused it, and the chatbot's bar.
  await hydrated(owner, '/limits');
  const refusals = owner.getByRole('table', { name: 'Refusals' });
  await refusals.getByRole('row').filter({ hasText: 'chatbot budget' }).waitFor();
  assert.match(await refusals.getByRole('row').filter({ hasText: 'chatbot budget' }).textContent(), /chatbot budget\s*1/);
  const bar = owner.getByRole('progressbar', { name: 'Chatbot Thrifty: Budget' });
  assert.equal(await bar.getAttribute('value'), '0');
  await owner.getByText('0 of 0.001 credits spent today (UTC)').waitFor();

  // Raised to room for a request: the visitor is served, and the bar moves (it refreshes itself).
  const raised = owner.getByRole('region', { name: 'Chatbot Thrifty' });
  await raised.getByLabel('Budget (credits)').fill('1');
  await raised.getByRole('button', { name: 'Save limits' }).click();
  await owner.getByText('Limits saved.').waitFor();
  await page.getByLabel('Your message').fill('and now?');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.locator('.msg.assistant[data-status="ok"]').filter({ hasText: 'You said: and now?' }).waitFor();
  await owner.waitForFunction(() => {
    const p = [...document.querySelectorAll('progress')].find((e) => e.getAttribute('aria-label') === 'Chatbot Thrifty: Budget');
    return p && Number(p.getAttribute('value')) > 0;
  }, null, { timeout: 15_000 });

  assert.deepEqual(errors, [], 'no errors in the visitor page');
  assert.deepEqual(ownerErrors, [], 'no errors in the owner page');
  await visitorCtx.close();
  await ownerCtx.close();
});

async function mockStats() {
  return (await fetch(`${MOCK}/__mock/stats`)).json();
}
