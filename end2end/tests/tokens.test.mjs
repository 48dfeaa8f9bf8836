// Issue 9 end to end: the owner creates an API token on the tokens page (shown once), an app
// calls the OpenAI-compatible API with it (non-streamed and streamed) against the mock provider,
// the list shows when it was last used, the owner revokes it and the app is refused at once.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, hydrated, launch, signedInOwner, workspaceWithMockKey } from './browser.mjs';

const MOCK = process.env.KEYWARD_E2E_MOCK_URL;
const rand = () => Math.random().toString(36).slice(2, 14).padEnd(12, 'q');
const KEY = `sk-tokenskey${rand()}${rand()}t0k3`;

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function chat(token, body) {
  return fetch(`${BASE}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'openai/mock-small', messages: [{ role: 'user', content: 'hello from my app' }], ...body }),
  });
}

test('tokens: create (shown once), use with the OpenAI wire format, see last used, revoke', async () => {
  assert.ok(MOCK, 'the runner starts the mock provider');
  const ctx = await signedInOwner(browser);
  const owner = await ctx.newPage();
  const errors = [];
  owner.on('pageerror', (e) => errors.push(e.message));
  await workspaceWithMockKey(owner, 'Tokens Co', MOCK, KEY);

  await hydrated(owner, '/tokens');
  await owner.getByRole('heading', { level: 1, name: 'API tokens' }).waitFor();
  await owner.getByText('No tokens yet.').waitFor();
  await owner.getByLabel('Token name').fill('Backend app');
  await owner.getByRole('button', { name: 'Create token' }).click();
  const shown = owner.getByLabel('New API token');
  await shown.waitFor();
  const token = (await shown.textContent()).trim();
  assert.match(token, /^kw_[A-Za-z0-9_-]{43}$/);
  await owner.getByText('Copy it now: it is shown only this once and cannot be recovered.').waitFor();
  const row = owner.getByRole('row', { name: /Backend app/ });
  await row.waitFor();
  assert.match(await row.textContent(), /kw_.{6}…/);
  assert.ok(!(await row.textContent()).includes(token.slice(9)), 'the list never shows the token');
  assert.match(await row.textContent(), /chat, models/);
  assert.match(await row.textContent(), /never/);

  // The app calls the API with the token.
  let res = await chat(token, {});
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-keyward-key-source'), 'workspace');
  assert.match(res.headers.get('x-keyward-overhead-us'), /^\d+$/);
  assert.equal((await res.json()).choices[0].message.content, 'You said: hello from my app');
  res = await chat(token, { stream: true });
  assert.equal(res.status, 200);
  const text = await res.text();
  assert.match(text, /data: \[DONE\]/);

  // The dismissed token is gone from the page; the list says it was used.
  await owner.getByRole('button', { name: 'I have copied it' }).click();
  assert.equal(await owner.getByLabel('New API token').count(), 0);
  await hydrated(owner, '/tokens');
  const lastUsed = await owner.getByRole('row', { name: /Backend app/ }).locator('td').nth(4).textContent();
  assert.notEqual(lastUsed, 'never');
  assert.match(lastUsed, /\d{4}-\d\d-\d\d/);

  // Revoke: confirmed, and the app is refused at once in OpenAI's error shape.
  owner.once('dialog', (d) => d.accept());
  await owner.getByRole('button', { name: 'Revoke Backend app' }).click();
  await owner.getByText('Revoked Backend app.').waitFor();
  await owner.getByRole('row', { name: /Backend app/ }).getByText('Revoked').waitFor();
  res = await chat(token, {});
  assert.equal(res.status, 401);
  assert.equal((await res.json()).error.code, 'invalid_api_key');
  assert.deepEqual(errors, []);
  await ctx.close();
});
