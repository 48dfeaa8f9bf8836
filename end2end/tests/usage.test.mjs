// Issue 8 end to end, against the mock provider: an owner chats three times in the dashboard
// playground on the workspace's own key; the usage page then shows the chart (with its text
// alternative) and the breakdowns with exactly the tokens the replies reported; the key row
// shows "last used"; the platform admin adds credits and the balance and ledger show them.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, hydrated, launch, signedInOwner, workspaceWithMockKey } from './browser.mjs';

const MOCK = process.env.KEYWARD_E2E_MOCK_URL;
const rand = () => Math.random().toString(36).slice(2, 14).padEnd(12, 'q');
const KEY = `sk-usagekey${rand()}${rand()}u5ed`;

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('usage: chats are metered; the usage page shows the chart, breakdowns and credits; the key shows last used', async () => {
  assert.ok(MOCK, 'the runner starts the mock provider');
  const ctx = await signedInOwner(browser);
  const owner = await ctx.newPage();
  const errors = [];
  owner.on('pageerror', (e) => errors.push(e.message));

  const openai = await workspaceWithMockKey(owner, 'Usage Co', MOCK, KEY);
  assert.equal(await openai.locator('dt:text-is("Last used") + dd').textContent(), 'never');

  // Three replies in the playground; each reports its tokens.
  await hydrated(owner, '/playground');
  let input = 0;
  let output = 0;
  for (const [i, text] of ['first question here', 'a second one', 'and the third message please'].entries()) {
    await owner.getByLabel('Your message').fill(text);
    await owner.getByLabel('Your message').press('Enter');
    const meta = owner.locator('.msg.assistant[data-status="ok"] .msg-meta').nth(i);
    await meta.waitFor();
    const m = (await meta.textContent()).match(/workspace key · (\d+) in \/ (\d+) out tokens/);
    assert.ok(m, await meta.textContent());
    input += Number(m[1]);
    output += Number(m[2]);
  }

  // The usage page (the writer flushes within half a second; reload until it has).
  let requests = '';
  for (let i = 0; i < 20 && requests !== '3'; i++) {
    await hydrated(owner, '/usage');
    requests = await owner.getByTestId('total-requests').textContent();
    if (requests !== '3') await new Promise((r) => setTimeout(r, 300));
  }
  assert.equal(requests, '3');
  assert.equal(await owner.getByTestId('total-input').textContent(), String(input));
  assert.equal(await owner.getByTestId('total-output').textContent(), String(output));
  assert.equal(await owner.getByTestId('total-credits').textContent(), '0', 'BYOK is free under the default policy');

  // The chart: one bar today for OpenAI, with a title, a description and a table alternative.
  const chart = owner.getByTestId('usage-chart');
  assert.equal(await chart.getAttribute('role'), 'img');
  assert.equal(await chart.locator('title').first().textContent(), 'Requests per day by provider');
  assert.match(await chart.locator('desc').textContent(), /Requests per day from \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d, stacked by provider: 3 in total\./);
  assert.equal(await chart.locator('rect.bar').count(), 1);
  assert.match(await chart.locator('rect.bar title').textContent(), /openai: 3 requests$/);
  await owner.getByText('Show as a table').click();
  const today = owner.locator('figure.chart table tbody tr');
  assert.equal(await today.count(), 1);
  assert.equal(await today.locator('td').textContent(), '3');
  // Switching to tokens redraws the same bar with the token total.
  await owner.getByRole('button', { name: 'Tokens' }).click();
  await chart.locator('title').first().filter({ hasText: 'Tokens per day by provider' }).waitFor({ state: 'attached' });
  assert.match(await chart.locator('rect.bar title').textContent(), new RegExp(`openai: ${(input + output).toLocaleString('en-US')} tokens$`));

  // Breakdowns with the right numbers.
  const row = (table, label) => owner.getByRole('table', { name: table }).locator('tbody tr').filter({ hasText: label });
  const cells = async (r) => r.locator('td').allTextContents();
  assert.deepEqual((await cells(row('By key', 'sk-…u5ed'))).slice(0, 4), ['3', String(input), String(output), '0']);
  assert.equal((await cells(row('By key source', 'BYOK — workspace key')))[0], '3');
  assert.equal((await cells(row('By model', 'openai/mock-small')))[0], '3');
  assert.equal((await cells(row('By chatbot', 'Playground without a chatbot')))[0], '3');
  const csv = await owner.getByRole('link', { name: 'Download CSV' }).getAttribute('href');
  const res = await owner.request.get(BASE + csv);
  assert.equal(res.status(), 200);
  assert.equal((await res.text()).trim().split('\n').length, 4, 'a header and three records');

  // The key row shows when it was last used.
  await hydrated(owner, '/keys');
  const lastUsed = await openai.locator('dt:text-is("Last used") + dd').textContent();
  assert.notEqual(lastUsed, 'never');
  assert.match(lastUsed, /\d{4}-\d\d-\d\d/);

  // The platform admin adds credits; the workspace's balance and ledger show them.
  await hydrated(owner, '/admin/credits');
  await owner.getByLabel('Credits for Usage Co').fill('5');
  await owner.getByRole('button', { name: 'Add credits to Usage Co' }).click();
  await owner.getByText('Credits added. New balance: 55').waitFor();
  await hydrated(owner, '/usage');
  assert.equal(await owner.getByTestId('credit-balance').textContent(), '55');
  const ledger = owner.getByRole('table', { name: 'Credit ledger' });
  await ledger.locator('tbody tr').filter({ hasText: 'topup' }).filter({ hasText: '5' }).waitFor();
  await ledger.locator('tbody tr').filter({ hasText: 'allowance' }).waitFor();

  // The admin's instance-wide view lists the workspace.
  await hydrated(owner, '/admin/usage');
  assert.equal((await row('By workspace', 'Usage Co').locator('td').allTextContents())[0], '3');
  // …and any one workspace in full.
  await owner.getByLabel('Show usage of').selectOption({ label: 'Usage Co' });
  await owner.getByRole('heading', { level: 1, name: 'Usage of one workspace' }).waitFor();
  await owner.getByTestId('credit-balance').filter({ hasText: '55' }).waitFor();
  assert.equal(await owner.getByTestId('total-requests').textContent(), '3');
  assert.equal(await owner.getByRole('table', { name: 'By workspace' }).count(), 0);

  assert.deepEqual(errors, [], 'no errors in the page');
  await ctx.close();
});
