// Shared browser set-up: Debian's Chromium driven by playwright-core (never a downloaded browser).

import { chromium } from 'playwright-core';

export const BASE = process.env.KEYWARD_BASE_URL ?? 'http://127.0.0.1:3000';

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
}

/** Opens `path` in `context`, collecting page errors, and waits for hydration. */
export async function openIn(context, path) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(BASE + path);
  await page.waitForSelector('html[data-hydrated="true"]', { timeout: 15_000 });
  return { context, page, errors };
}

export const OWNER = { email: 'owner@example.com', password: 'correct horse battery', name: 'Olive Owner' };

/** A browser context signed in as the owner (setting the instance up first if needed). */
export async function signedInOwner(browser, options = {}) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  await page.goto(BASE + '/sign-in');
  await page.waitForSelector('html[data-hydrated="true"]');
  const setupLink = page.getByRole('link', { name: 'Set it up' });
  if (await setupLink.isVisible()) {
    // The link the server printed at its first start.
    await page.goto(BASE + '/setup?token=' + process.env.KEYWARD_E2E_SETUP_TOKEN);
    await page.waitForSelector('html[data-hydrated="true"]');
    await page.getByLabel('Email').fill(OWNER.email);
    await page.getByLabel('Your name').fill(OWNER.name);
    await page.getByLabel('Password (at least 10 characters)').fill(OWNER.password);
    await page.getByLabel('Workspace name').fill('Acme');
    await page.getByRole('button', { name: 'Create account' }).click();
  } else {
    await page.getByLabel('Email').fill(OWNER.email);
    await page.getByLabel('Password').fill(OWNER.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }
  await page.getByRole('heading', { level: 1, name: 'Dashboard' }).waitFor();
  await page.close();
  return context;
}

/** Goes to `path` and waits until the page has hydrated. */
export async function hydrated(page, path) {
  await page.goto(BASE + path);
  await page.waitForSelector('html[data-hydrated="true"]');
}

/**
 * As the owner (also the platform admin): creates workspace `name` and switches to it, puts it on
 * the business plan (which may bring its own keys), points OpenAI at the mock provider with
 * mock-small as its default model, and saves `key` as the workspace's OpenAI key. Returns the
 * OpenAI row of the Keys page.
 */
export async function workspaceWithMockKey(owner, name, mockUrl, key) {
  await hydrated(owner, '/profile');
  await owner.getByLabel('Workspace name').fill(name);
  await owner.getByRole('button', { name: 'Create workspace' }).click();
  await owner.getByText('Workspace created; you are now in it.').waitFor();
  await hydrated(owner, '/admin/workspaces');
  await owner.getByLabel(`Plan for ${name}`).selectOption('business');
  await Promise.all([
    owner.waitForResponse((r) => r.url().includes('/api/set_workspace_plan')),
    owner.getByRole('button', { name: `Save plan for ${name}` }).click(),
  ]);
  await hydrated(owner, '/admin/providers');
  await owner.getByLabel('OpenAI base URL').fill(`${mockUrl}/v1`);
  await owner.getByLabel('OpenAI default model').fill('mock-small');
  await owner.getByRole('button', { name: 'Save OpenAI', exact: true }).click();
  await owner.getByText('OpenAI saved.').waitFor();
  await hydrated(owner, '/keys');
  const openai = owner.getByRole('listitem').filter({ has: owner.getByRole('heading', { level: 2, name: 'OpenAI', exact: true }) });
  await openai.getByLabel('OpenAI API key').fill(key);
  await openai.getByRole('button', { name: 'Save OpenAI key' }).click();
  await openai.getByTestId('hint-openai').waitFor();
  return openai;
}
