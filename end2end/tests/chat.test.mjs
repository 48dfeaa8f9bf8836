// Issue 7 end to end, against the mock provider (paced at 20 tokens a second by the runner):
// an owner sets up a workspace key and a public chatbot; a visitor without an account chats and
// sees the reply arrive progressively (the intermediate states are asserted), switches the
// model for one message, stops a reply (the provider's stream closes), finds the conversation
// again after a reload, cannot be attacked by a `<script>` in a reply, and gets the friendly
// error when the owner's key is revoked at the provider, while the owner sees the reason on the
// key row. The dashboard playground shows the key source, tokens and latency of a reply.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { hydrated, launch, signedInOwner, workspaceWithMockKey } from './browser.mjs';

const MOCK = process.env.KEYWARD_E2E_MOCK_URL;
const rand = () => Math.random().toString(36).slice(2, 14).padEnd(12, 'q');
const KEY = `sk-chatkey${rand()}${rand()}c0de`;
const LONG = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ');

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function mockStats() {
  return (await fetch(`${MOCK}/__mock/stats`)).json();
}

/** The text of the last assistant message, finished or not. */
async function lastReply(page) {
  return page.locator('.chat-log .msg.assistant').last().locator('.bubble').innerText();
}

test('chat: a visitor chats with streaming, switches model, stops, is safe from injected HTML, and gets the friendly error', async () => {
  assert.ok(MOCK, 'the runner starts the mock provider');
  const ownerCtx = await signedInOwner(browser);
  const owner = await ownerCtx.newPage();
  const ownerErrors = [];
  owner.on('pageerror', (e) => ownerErrors.push(e.message));

  // The owner's own workspace on a plan that may bring keys, with OpenAI pointed at the mock.
  const openai = await workspaceWithMockKey(owner, 'Chat Co', MOCK, KEY);

  // A public chatbot whose visitors may switch to mock-large for a message.
  await hydrated(owner, '/chatbots');
  await owner.getByLabel('Chatbot name').fill('Concierge');
  await owner.getByLabel('Greeting').fill('Welcome! How can I help?');
  await owner.getByLabel('Public: visitors can chat without an account').check();
  await owner.getByRole('button', { name: 'Create chatbot' }).click();
  await owner.getByText(/Created Concierge at \/concierge/).waitFor();
  await owner.getByRole('button', { name: 'Edit Concierge', exact: true }).click();
  await owner.getByLabel(/Models visitors may switch to/).fill('openai/mock-large');
  await owner.getByLabel('Max tokens').fill('400');
  await owner.getByRole('button', { name: 'Save chatbot' }).click();
  await owner.getByText('Saved Concierge.').waitFor();
  const chatPath = await owner.getByRole('link', { name: /^\/chat\/.*\/concierge$/ }).textContent();

  // The dashboard playground: the reply names its key source, tokens and latency.
  await hydrated(owner, '/playground');
  await owner.getByLabel('Chatbot').selectOption({ label: 'Concierge' });
  await owner.getByLabel('Your message').waitFor();
  await owner.getByLabel('Your message').fill('ping from the dashboard');
  await owner.getByLabel('Your message').press('Enter');
  const meta = owner.locator('.msg.assistant[data-status="ok"] .msg-meta').last();
  await meta.waitFor();
  assert.match(await meta.textContent(), /openai \/ mock-small · workspace key · \d+ in \/ \d+ out tokens · first token \d+ ms · \d+ ms/);

  // A visitor, no account, on a phone-sized screen.
  const visitorCtx = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await visitorCtx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await hydrated(page, chatPath);
  await page.getByRole('heading', { level: 1, name: 'Concierge' }).waitFor();
  await page.getByText('Welcome! How can I help?').waitFor();
  assert.equal(await page.getByRole('link', { name: 'Keys' }).count(), 0, 'no dashboard navigation for visitors');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal scrolling on a phone (${overflow}px)`);
  const picker = page.getByLabel('Model');
  assert.deepEqual(
    await picker.locator('optgroup').evaluateAll((gs) => gs.map((g) => g.label)),
    ['Your keys'],
  );

  // Keyboard only: focus the box, type, Enter sends; the reply streams in.
  await page.getByLabel('Your message').focus();
  await page.keyboard.type(LONG);
  await page.keyboard.press('Enter');
  // Read the reply while it is being written, twice (in the page, so nothing races).
  const textWhen = async (min) => (await page.waitForFunction((n) => {
    const live = document.querySelector('.msg.live[data-status="streaming"] .bubble');
    return live && live.innerText.length > n ? live.innerText : false;
  }, min)).jsonValue();
  const early = await textWhen(0);
  const later = await textWhen(early.length + 10);
  await page.getByRole('button', { name: 'Send' }).waitFor(); // the reply finished
  const full = await lastReply(page);
  assert.equal(full, `You said: ${LONG}`);
  assert.ok(early.length > 0 && early.length < later.length && later.length < full.length,
    `intermediate states: ${early.length} < ${later.length} < ${full.length}`);
  assert.ok(full.startsWith(early) && full.startsWith(later));

  // Switch the model for one message.
  await picker.selectOption('openai/mock-large');
  await page.getByLabel('Your message').fill('big model please');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.locator('.msg.assistant[data-model="mock-large"][data-status="ok"]').waitFor();
  assert.equal(await picker.inputValue(), 'openai/mock-small', 'the switch was for one message');
  await page.getByLabel('Your message').fill('default again');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.getByRole('button', { name: 'Send' }).waitFor();
  await page.locator('.msg.assistant[data-status="ok"]').last().filter({ hasText: 'default again' }).waitFor();
  assert.equal(await page.locator('.msg.assistant[data-status="ok"]').last().getAttribute('data-model'), 'mock-small');

  // Stop a reply: the text stays, marked stopped, and the provider's stream is closed.
  await page.getByLabel('Your message').fill(LONG);
  await page.getByRole('button', { name: 'Send' }).click();
  await page.locator('.msg.live[data-status="streaming"]').waitFor();
  assert.equal((await mockStats()).open_streams, 1);
  await page.getByRole('button', { name: 'Stop' }).click();
  const stopped = page.locator('.msg.assistant[data-status="stopped"]');
  await stopped.waitFor();
  assert.ok((await stopped.locator('.bubble').innerText()).length < `You said: ${LONG}`.length);
  let open = 1;
  for (let i = 0; i < 50 && open !== 0; i++) {
    open = (await mockStats()).open_streams;
    if (open) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(open, 0, 'stopping closed the upstream stream');

  // HTML from the model (the mock echoes the message) is shown as text and never runs.
  const attack = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> **bold** [x](javascript:window.__pwned=3)';
  await page.getByLabel('Your message').fill(attack);
  await page.getByRole('button', { name: 'Send' }).click();
  await page.getByRole('button', { name: 'Send' }).waitFor();
  const reply = page.locator('.msg.assistant[data-status="ok"]').last();
  await reply.filter({ hasText: '<script>window.__pwned = 1</script>' }).waitFor();
  assert.equal(await reply.locator('strong').textContent(), 'bold', 'Markdown still renders');
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.equal(await page.locator('.chat-log script, .chat-log img, .chat-log a[href^="javascript"]').count(), 0);

  // The conversation is kept for the visitor: after a reload it is still there (server-rendered).
  await hydrated(page, chatPath);
  await page.locator('.msg.user').filter({ hasText: 'big model please' }).waitFor();
  assert.ok(await page.locator('.msg.assistant[data-status="stopped"]').count() >= 1);

  // The owner's key is revoked at the provider: the visitor gets a friendly, generic error…
  await fetch(`${MOCK}/__mock/revoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: KEY }) });
  await page.getByLabel('Your message').fill('are you there?');
  await page.getByRole('button', { name: 'Send' }).click();
  const alert = page.locator('.chat-error');
  await alert.waitFor();
  assert.equal(await alert.textContent(), "Sorry — the assistant can't answer right now. Please try again in a little while.");
  // …and the owner sees the classified reason on the key row.
  await hydrated(owner, '/keys');
  await openai.getByText(/Invalid key/).first().waitFor();

  assert.deepEqual(errors, [], 'no errors in the visitor page');
  assert.deepEqual(ownerErrors, [], 'no errors in the owner page');
  await visitorCtx.close();
  await ownerCtx.close();
});
