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
    await page.goto(BASE + '/setup');
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
