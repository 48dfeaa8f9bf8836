// Issue 5 end to end, against the mock provider: the platform admin points OpenAI at the mock;
// the owner adds a key, tests it, saves it and sees `sk-…abcd`; a replacement the provider
// rejects is refused and the old key stays active; disable / enable / delete work; a member
// sees the page read-only; the admin turns BYOK off for OpenAI and the workspace's key shows
// inactive. Finally the canary sweep: every response the browser received, the server's TRACE
// log and the SQLite database (with its WAL) are searched for the keys used.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { hydrated, launch, signedInOwner } from './browser.mjs';

const MOCK = process.env.KEYWARD_E2E_MOCK_URL;
const rand = () => Math.random().toString(36).slice(2, 14).padEnd(12, 'q');
const CANARY = `sk-canary${rand()}${rand()}abcd`;
const REJECTED = `sk-invalid${rand()}${rand()}zzzz`;
const BOT_KEY = `sk-botkey${rand()}${rand()}beef`;

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** Records every response body a context receives, for the canary sweep. */
function recordBodies(context, sink) {
  context.on('response', async (res) => {
    try {
      sink.push(JSON.stringify(res.headers()));
      sink.push(await res.text());
    } catch { /* redirects and aborted loads have no body */ }
  });
}

function row(page, provider) {
  return page.getByRole('listitem').filter({ has: page.getByRole('heading', { level: 2, name: provider, exact: true }) });
}

test('keys: add, test, replace refused, disable, enable, delete, read-only member, BYOK off', async () => {
  assert.ok(MOCK, 'the runner starts the mock provider');
  const bodies = [];
  const ownerCtx = await signedInOwner(browser);
  recordBodies(ownerCtx, bodies);
  const page = await ownerCtx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));

  // The platform admin routes OpenAI to the mock and lets every plan bring its own keys.
  await hydrated(page, '/admin/providers');
  await page.getByRole('heading', { level: 1, name: 'Providers' }).waitFor();
  await page.getByLabel('OpenAI base URL').fill(`${MOCK}/v1`);
  await page.getByRole('button', { name: 'Save OpenAI', exact: true }).click();
  await page.getByText('OpenAI saved.').waitFor();
  const free = page.getByLabel('BYOK for free');
  if (!(await free.isChecked())) await free.check();
  await page.getByRole('button', { name: 'Save plans' }).click();
  await page.getByText('BYOK plans saved.').waitFor();

  // Work in Acme (the workspace the member joins below).
  await hydrated(page, '/keys');
  const switcher = page.locator('#workspace-switcher');
  if ((await switcher.count()) && (await switcher.evaluate((s) => s.selectedOptions[0].textContent)) !== 'Acme') {
    await switcher.selectOption({ label: 'Acme' });
    await page.waitForFunction(() => document.querySelector('#workspace-switcher')?.selectedOptions[0]?.textContent === 'Acme');
  }
  await page.getByRole('heading', { level: 1, name: 'Keys' }).waitFor();
  const openai = row(page, 'OpenAI');
  await openai.getByRole('link', { name: 'Get a key from OpenAI' }).waitFor();

  // The form says where a key added here is sent (the mock stands in for OpenAI here).
  const mockHost = new URL(process.env.KEYWARD_E2E_MOCK_URL).host;
  assert.equal(await openai.getByTestId('sends-to-openai').locator('code').textContent(), mockHost);

  // A key of the wrong shape gets a clear message that does not repeat it.
  await openai.getByLabel('OpenAI API key').fill('gsk_notanopenaikey0000000000');
  await openai.getByRole('button', { name: 'Test OpenAI key' }).click();
  const shapeError = await openai.getByRole('alert').textContent();
  assert.match(shapeError, /looks like a key for Groq/);
  assert.doesNotMatch(shapeError, /notanopenai/);

  // Test before saving: the mock accepts it, with a latency.
  await openai.getByLabel('OpenAI API key').fill(CANARY);
  await openai.getByRole('button', { name: 'Test OpenAI key' }).click();
  await openai.getByText(/Test passed: the provider accepted the key \(\d+ ms\)/).waitFor();
  await openai.getByRole('button', { name: 'Save OpenAI key' }).click();
  await openai.getByTestId('hint-openai').waitFor();
  assert.equal(await openai.getByTestId('hint-openai').textContent(), 'sk-…abcd');
  assert.equal(await openai.getByText('Active', { exact: true }).count(), 1);
  assert.equal(await openai.getByTestId('destination-openai').textContent(), mockHost);

  // Test the saved key: "last tested" is filled in.
  await openai.getByRole('button', { name: 'Test', exact: true }).click();
  await openai.getByText(/Test passed/).waitFor();
  await openai.locator('dt:text-is("Last tested") + dd').filter({ hasNotText: 'never' }).waitFor();

  // Replace with a key the provider rejects: refused, the old key stays active.
  await openai.getByRole('button', { name: 'Replace' }).click();
  await openai.getByLabel('New key').fill(REJECTED);
  await openai.getByRole('button', { name: 'Test and replace' }).click();
  const refused = openai.getByRole('alert');
  await refused.waitFor();
  assert.match(await refused.textContent(), /rejected the key .*old key stays in use/);
  assert.equal(await openai.getByTestId('hint-openai').textContent(), 'sk-…abcd');
  assert.equal(await openai.getByText('Active', { exact: true }).count(), 1);

  // Disable, enable.
  await openai.getByRole('button', { name: 'Disable' }).click();
  await openai.getByText('Disabled', { exact: true }).waitFor();
  await openai.getByRole('button', { name: 'Enable' }).click();
  await openai.getByText('Active', { exact: true }).waitFor();

  // A member sees the same page read-only.
  await hydrated(page, '/members');
  await page.getByLabel('Email').fill('kim@example.com');
  await page.getByLabel('Role', { exact: true }).selectOption('member');
  await page.getByRole('button', { name: 'Create invitation' }).click();
  const link = await page.getByTestId('invite-link').textContent();
  const memberCtx = await browser.newContext();
  recordBodies(memberCtx, bodies);
  const member = await memberCtx.newPage();
  await member.goto(link);
  await member.waitForSelector('html[data-hydrated="true"]');
  await member.getByLabel('Your name').fill('Kim Member');
  await member.getByLabel('Password (at least 10 characters)').fill('another good passphrase');
  await member.getByRole('button', { name: 'Create account and join' }).click();
  await member.getByRole('heading', { level: 1, name: 'Members' }).waitFor();
  await hydrated(member, '/keys');
  await member.getByText('Only owners can change keys.').waitFor();
  assert.equal(await member.getByTestId('hint-openai').textContent(), 'sk-…abcd');
  assert.equal(await member.getByRole('button', { name: /Delete|Replace|Disable|Save .* key|Test/ }).count(), 0);
  assert.equal(await member.getByLabel('OpenAI API key').count(), 0);

  // The platform admin turns BYOK off for OpenAI: the key is kept and shows inactive.
  await hydrated(page, '/admin/providers');
  await page.getByLabel('Allow workspaces to use their own OpenAI keys').uncheck();
  await page.getByRole('button', { name: 'Save OpenAI', exact: true }).click();
  await page.getByText('OpenAI saved.').waitFor();
  await member.reload();
  await member.waitForSelector('html[data-hydrated="true"]');
  await member.getByText('Inactive: BYOK disabled by the platform').waitFor();
  await hydrated(page, '/keys');
  await row(page, 'OpenAI').getByText('Inactive: BYOK disabled by the platform').waitFor();
  await hydrated(page, '/admin/providers');
  await page.getByLabel('Allow workspaces to use their own OpenAI keys').check();
  await page.getByRole('button', { name: 'Save OpenAI', exact: true }).click();
  await page.getByText('OpenAI saved.').waitFor();

  // Delete: the row is purged; the audit log keeps the hint.
  await hydrated(page, '/keys');
  page.once('dialog', (d) => d.accept());
  await row(page, 'OpenAI').getByRole('button', { name: 'Delete' }).click();
  await row(page, 'OpenAI').getByText('No key.').waitFor();
  await hydrated(page, '/audit');
  await page.getByRole('heading', { level: 1, name: 'Audit log' }).waitFor();
  await page.getByLabel('What (e.g. key.)').fill('key.deleted');
  await page.getByRole('button', { name: 'Filter' }).click();
  const deleted = page.getByRole('row').filter({ hasText: 'key.deleted' });
  await deleted.waitFor();
  assert.match(await deleted.textContent(), /openai.*sk-…abcd/);
  const actions = await page.getByRole('cell').allTextContents();
  assert.ok(!actions.includes('key.created'), 'the filter applies');

  // A chatbot with a key of its own, managed from the chatbot's keys page.
  await hydrated(page, '/chatbots');
  await page.getByLabel('Chatbot name').fill('Support Bot');
  await page.getByLabel('Public: visitors can chat without an account').check();
  await page.getByRole('button', { name: 'Create chatbot' }).click();
  await page.getByText('Created Support Bot at /support-bot.').waitFor();
  await page.getByRole('link', { name: 'Keys of Support Bot' }).click();
  await page.getByRole('heading', { level: 1, name: 'Chatbot keys' }).waitFor();
  const botRow = row(page, 'OpenAI');
  await botRow.getByLabel('OpenAI API key').fill(BOT_KEY);
  await botRow.getByRole('button', { name: 'Save OpenAI key' }).click();
  await botRow.getByTestId('hint-openai').waitFor();
  assert.equal(await botRow.getByTestId('hint-openai').textContent(), 'sk-…beef');
  await hydrated(page, '/keys');
  await row(page, 'OpenAI').getByText('No key.').waitFor();
  await hydrated(member, '/chatbots');
  await member.getByRole('cell', { name: 'Support Bot', exact: true }).waitFor();
  assert.equal(await member.getByRole('button', { name: 'Create chatbot' }).count(), 0);

  assert.deepEqual(errors, []);
  await memberCtx.close();
  await ownerCtx.close();

  // The canary sweep: responses, the TRACE log, the database file and its WAL.
  const windows = (s) => {
    const out = [s, Buffer.from(s).toString('base64'), Buffer.from(s).toString('hex')];
    for (let i = 0; i + 12 <= s.length; i++) out.push(s.slice(i, i + 12));
    return out;
  };
  const places = { responses: bodies.join('\n') };
  places.log = readFileSync(process.env.KEYWARD_E2E_SERVER_LOG, 'utf8');
  assert.ok(places.log.includes('TRACE'), 'the log really is at TRACE');
  const work = process.env.KEYWARD_E2E_WORKDIR;
  for (const f of ['keyward.db', 'keyward.db-wal']) {
    if (existsSync(join(work, f))) places[f] = readFileSync(join(work, f)).toString('latin1');
  }
  assert.ok(places['keyward.db'] || places['keyward.db-wal'], 'the database was searched');
  // The searches read real content: the masked hint is in the responses and in the database.
  assert.ok(places.responses.includes('sk-…abcd'), 'responses were recorded');
  const dbText = Buffer.from((places['keyward.db'] ?? '') + (places['keyward.db-wal'] ?? ''), 'latin1').toString('utf8');
  assert.ok(dbText.includes('sk-…abcd'), 'the database holds the hint (in the audit log)');
  for (const secret of [CANARY, REJECTED, BOT_KEY]) {
    for (const [place, text] of Object.entries(places)) {
      for (const w of windows(secret)) {
        assert.ok(!text.includes(w), `${place} contains part of a key (${w.slice(0, 4)}…)`);
      }
    }
  }
});
