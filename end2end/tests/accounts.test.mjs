// Issue 4 end to end: first-run setup → owner invites a member → the member accepts → the member
// sees the members page read-only → a crafted mutation from the member is refused by the server.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { BASE, OWNER, hydrated, launch } from './browser.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('setup, invitation, read-only member, refused crafted mutation', async () => {
  // 1. A fresh instance sends the first visitor to set-up.
  const ownerCtx = await browser.newContext();
  const owner = await ownerCtx.newPage();
  await hydrated(owner, '/');
  await owner.waitForURL(BASE + '/setup');
  // Without the printed token set-up is refused; the printed link fills it in.
  await owner.getByLabel('Email').fill(OWNER.email);
  await owner.getByLabel('Your name').fill(OWNER.name);
  await owner.getByLabel('Password (at least 10 characters)').fill(OWNER.password);
  await owner.getByLabel('Workspace name').fill('Acme');
  await owner.getByLabel('Set-up token').fill('not-the-printed-token');
  await owner.getByRole('button', { name: 'Create account' }).click();
  await owner.getByText('set-up link is not valid').waitFor();
  await hydrated(owner, '/setup?token=' + process.env.KEYWARD_E2E_SETUP_TOKEN);
  assert.equal(await owner.getByLabel('Set-up token').inputValue(), process.env.KEYWARD_E2E_SETUP_TOKEN);
  await owner.getByLabel('Email').fill(OWNER.email);
  await owner.getByLabel('Your name').fill(OWNER.name);
  await owner.getByLabel('Password (at least 10 characters)').fill(OWNER.password);
  await owner.getByLabel('Workspace name').fill('Acme');
  await owner.getByRole('button', { name: 'Create account' }).click();
  await owner.getByRole('heading', { level: 1, name: 'Dashboard' }).waitFor();
  assert.equal(await owner.getByRole('link', { name: OWNER.name }).isVisible(), true, 'signed in');
  const cookies = await ownerCtx.cookies();
  const session = cookies.find((c) => c.name === 'keyward_session');
  assert.ok(session?.httpOnly, 'session cookie is HttpOnly');
  assert.equal(session.sameSite, 'Lax');

  // 2. The owner invites a member (client-side, no reload).
  await owner.getByRole('link', { name: 'Members' }).click();
  await owner.getByRole('heading', { level: 1, name: 'Members' }).waitFor();
  await owner.evaluate(() => { window.__noReload = 1; });
  await owner.getByLabel('Email').fill('mia@example.com');
  await owner.getByLabel('Role', { exact: true }).selectOption('member');
  await owner.getByRole('button', { name: 'Create invitation' }).click();
  const link = await owner.getByTestId('invite-link').textContent();
  assert.match(link, /\/invite\/[A-Za-z0-9_-]{43}$/);
  await owner.getByText('mia@example.com · Member').waitFor();
  assert.equal(await owner.evaluate(() => window.__noReload), 1, 'no full reload');

  // 3. The invitee opens the link in their own browser and creates an account.
  const memberCtx = await browser.newContext();
  const member = await memberCtx.newPage();
  await member.goto(link);
  await member.waitForSelector('html[data-hydrated="true"]');
  await member.getByText('You are invited to join Acme as member.').waitFor();
  await member.getByLabel('Your name').fill('Mia Member');
  await member.getByLabel('Password (at least 10 characters)').fill('another good passphrase');
  await member.getByRole('button', { name: 'Create account and join' }).click();
  await member.getByRole('heading', { level: 1, name: 'Members' }).waitFor();

  // 4. The member sees the page read-only: both people, no controls.
  await member.getByText('Only owners can change members.').waitFor();
  await member.getByRole('cell', { name: 'Mia Member (you)', exact: true }).waitFor();
  await member.getByRole('cell', { name: OWNER.email, exact: true }).waitFor();
  assert.equal(await member.getByRole('button', { name: /Remove|Change role|Make .* owner/ }).count(), 0);
  assert.equal(await member.getByRole('button', { name: 'Create invitation' }).count(), 0);
  // A used invitation link is dead.
  const again = await memberCtx.newPage();
  await again.goto(link);
  await again.waitForSelector('html[data-hydrated="true"]');
  await again.getByText('This invitation is not valid').waitFor();

  // 5. The owner changes Mia's role; we capture that request to replay it as Mia.
  await owner.reload();
  await owner.waitForSelector('html[data-hydrated="true"]');
  await owner.getByLabel('Role for mia@example.com').selectOption('support');
  const [request] = await Promise.all([
    owner.waitForRequest((r) => r.url().includes('/api/change_member_role') && r.method() === 'POST'),
    owner.getByRole('button', { name: 'Change role of mia@example.com' }).click(),
  ]);
  await owner.getByRole('cell', { name: 'Support', exact: true }).waitFor();
  const body = new URLSearchParams(request.postData());
  assert.ok(body.get('workspace_id') && body.get('user_id'));

  // Mia crafts the same call with her own session, making herself owner.
  body.set('role', 'owner');
  const crafted = await member.evaluate(async ({ url, body }) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-keyward-csrf': '1' },
      body,
    });
    return { status: res.status, text: await res.text() };
  }, { url: request.url(), body: body.toString() });
  assert.notEqual(crafted.status, 200, JSON.stringify(crafted));
  assert.match(crafted.text, /Forbidden/);

  // Nothing changed: Mia is still support, the owner still owner.
  await owner.reload();
  await owner.waitForSelector('html[data-hydrated="true"]');
  const rows = await owner.getByRole('row').allTextContents();
  assert.ok(rows.some((r) => r.includes('mia@example.com') && r.includes('Support')), rows.join('|'));
  assert.ok(rows.some((r) => r.includes(OWNER.email) && r.includes('Owner')), rows.join('|'));

  // Mia signs out; her session is gone server-side.
  await member.goto(BASE + '/');
  await member.waitForSelector('html[data-hydrated="true"]');
  await member.getByRole('button', { name: 'Sign out' }).click();
  await member.waitForURL(BASE + '/sign-in');
  await member.goto(BASE + '/members');
  await member.waitForURL(BASE + '/sign-in');
  await memberCtx.close();

  // 6. The owner creates a second workspace; the switcher offers it and it becomes current.
  await hydrated(owner, '/profile');
  await owner.getByLabel('Workspace name').fill('Beta Lab');
  await owner.getByRole('button', { name: 'Create workspace' }).click();
  await owner.getByText('Workspace created; you are now in it.').waitFor();
  const switcher = owner.getByLabel('Workspace', { exact: true });
  await owner.waitForFunction(() => document.querySelector('#workspace-switcher')?.selectedOptions[0]?.textContent === 'Beta Lab');
  assert.deepEqual((await switcher.locator('option').allTextContents()).sort(), ['Acme', 'Beta Lab']);

  // 7. As platform admin, the owner sets Acme's plan.
  await owner.getByRole('link', { name: 'Admin' }).click();
  await owner.getByRole('heading', { level: 1, name: 'Workspaces' }).waitFor();
  await owner.getByLabel('Plan for Acme').selectOption('pro');
  const [saved] = await Promise.all([
    owner.waitForResponse((r) => r.url().includes('/api/set_workspace_plan')),
    owner.getByRole('button', { name: 'Save plan for Acme' }).click(),
  ]);
  assert.equal(saved.status(), 200);
  await owner.reload();
  await owner.waitForSelector('html[data-hydrated="true"]');
  assert.equal(await owner.getByLabel('Plan for Acme').inputValue(), 'pro');
  await ownerCtx.close();
});

// The mails Keyward sent to `to` (the runner's SMTP server keeps them in a Maildir).
function mailsTo(to) {
  const dir = join(process.env.KEYWARD_E2E_MAILDIR, 'new');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((f) => readFileSync(join(dir, f), 'utf8'))
    .filter((m) => m.split('\n').some((l) => l.trim().toLowerCase() === `x-rcptto: ${to}`));
}

async function waitForMail(to, n) {
  for (let i = 0; i < 200; i++) {
    const got = mailsTo(to);
    if (got.length >= n) return got;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no mail to ${to}`);
}

test('open sign-up: the same answer for everyone, the mailed link creates the account', async () => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await hydrated(page, '/sign-in');
  await page.getByRole('link', { name: 'Create an account' }).click();
  await page.getByRole('heading', { level: 1, name: 'Create an account' }).waitFor();
  // The owner's address: the page says the same as for a new one, and the mail says "sign in".
  const fill = async (email) => {
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Your name').fill('Nora New');
    await page.getByLabel('Password (at least 10 characters)').fill('a fresh passphrase');
    await page.getByLabel('Workspace name').fill('Nora Lab');
    await page.getByRole('button', { name: 'Create account' }).click();
    return (await page.getByTestId('sign-up-sent').textContent()).trim();
  };
  const forOwner = await fill(OWNER.email);
  const [ownerMail] = await waitForMail(OWNER.email, 1);
  assert.match(ownerMail, /You already have a Keyward account/);
  await hydrated(page, '/sign-up');
  const forNew = await fill('nora@example.com');
  assert.equal(forNew, forOwner, 'the answers are the same');
  const [mail] = await waitForMail('nora@example.com', 1);
  const link = mail.match(/(http:\/\/\S+\/sign-up\/[A-Za-z0-9_-]+)/)[1];
  assert.ok(link.startsWith(BASE), link);

  // The link's page names what it creates; one click creates it and signs Nora in.
  await page.goto(link);
  await page.waitForSelector('html[data-hydrated="true"]');
  await page.getByText('Create the account nora@example.com with the workspace Nora Lab.').waitFor();
  await page.getByRole('button', { name: 'Create my account' }).click();
  await page.getByRole('heading', { level: 1, name: 'Dashboard' }).waitFor();
  await page.getByRole('link', { name: 'Nora New' }).waitFor();
  // Used once, the link is dead.
  await page.goto(link);
  await page.waitForSelector('html[data-hydrated="true"]');
  await page.getByText('This link is not valid').waitFor();
  await ctx.close();
});
