// End-to-end runner: starts the release server (target/release/keyward, target/site) on a free
// loopback port over a fresh SQLite database, waits until it is ready, runs the node:test suites
// in end2end/tests against it, stops it, and exits with the suites' status.
//
//   node end2end/run.mjs            (what `make e2e` runs; `cargo leptos end-to-end` runs it too)
//   KEYWARD_E2E_DATABASE_URL=postgres://…  to run against PostgreSQL instead
//   KEYWARD_E2E_ONLY=limits                 to run only the suites whose file name contains it

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const binary = join(root, 'target/release/keyward');

function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

async function waitReady(base, server, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (server.exitCode !== null) throw new Error(`server exited with ${server.exitCode}`);
    try {
      const res = await fetch(`${base}/readyz`);
      if (res.ok) return;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server at ${base} not ready after ${timeoutMs} ms`);
}

const work = mkdtempSync(join(tmpdir(), 'keyward-e2e-'));
// The in-repo mock provider stands in for every LLM provider; the server may reach it only
// because the operator allowlist names its exact host:port.
const mockPort = await freePort();
const mockUrl = `http://127.0.0.1:${mockPort}`;
const mock = spawn(binary, ['mock-provider', '--bind', `127.0.0.1:${mockPort}`, '--tokens-per-sec', '20'], { stdio: 'ignore' });
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
// A real SMTP server (aiosmtpd, end2end/venv.sh mail) keeps the mails Keyward sends in a
// Maildir the suites read: open sign-up confirms addresses by mail.
const smtpPort = await freePort();
const maildir = join(work, 'mail');
const venvBin = execFileSync(join(root, 'end2end/venv.sh'), ['mail'], { encoding: 'utf8' }).trim();
const smtp = spawn(join(venvBin, 'python'), ['-m', 'aiosmtpd', '-n', '-l', `127.0.0.1:${smtpPort}`,
  '-c', 'aiosmtpd.handlers.Mailbox', maildir], { stdio: 'ignore' });
// A throwaway master key for this run, created the way an operator would.
const masterKey = join(work, 'master.key');
execFileSync(binary, ['gen-master-key', '--out', masterKey], { stdio: 'ignore' });
const env = {
  ...process.env,
  KEYWARD_BIND: `127.0.0.1:${port}`,
  KEYWARD_DATABASE_URL: process.env.KEYWARD_E2E_DATABASE_URL ?? `sqlite://${work}/keyward.db`,
  KEYWARD_SITE_ROOT: join(root, 'target/site'),
  KEYWARD_MASTER_KEY_FILE: masterKey,
  KEYWARD_ALLOWED_PRIVATE_UPSTREAMS: `127.0.0.1:${mockPort}`,
  KEYWARD_OPEN_SIGN_UP: 'true',
  KEYWARD_SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
  KEYWARD_MAIL_FROM: 'Keyward <no-reply@keyward.test>',
  KEYWARD_PUBLIC_URL: base,
  // Everything at TRACE, into a file the canary sweep searches for leaked keys.
  KEYWARD_LOG_FILTER: process.env.KEYWARD_E2E_LOG ?? 'trace',
};
const serverLog = join(work, 'server.log');
const logFd = openSync(serverLog, 'a');
const server = spawn(binary, ['serve'], { env, stdio: ['ignore', logFd, logFd] });

let code = 1;
try {
  await waitReady(base, server);
  // A fresh instance prints its one-time set-up link; the suites set it up with that token.
  const setupToken = (readFileSync(serverLog, 'utf8').match(/\/setup\?token=([A-Za-z0-9_-]+)/) ?? [])[1];
  if (!setupToken) throw new Error('the server printed no set-up link');
  // KEYWARD_E2E_ONLY=limits runs the suites whose file name contains it (while developing).
  const only = process.env.KEYWARD_E2E_ONLY ?? '';
  const files = readdirSync(join(root, 'end2end/tests'))
    .filter((f) => f.endsWith('.test.mjs') && f.includes(only))
    .map((f) => join(root, 'end2end/tests', f));
  const tests = spawn(process.execPath, ['--test', '--test-concurrency=1', ...files], {
    env: {
      ...process.env,
      KEYWARD_BASE_URL: base,
      KEYWARD_E2E_WORKDIR: work,
      KEYWARD_E2E_SERVER_LOG: serverLog,
      KEYWARD_E2E_MOCK_URL: mockUrl,
      KEYWARD_E2E_SETUP_TOKEN: setupToken,
      KEYWARD_E2E_MAILDIR: maildir,
    },
    stdio: 'inherit',
  });
  code = await new Promise((ok) => tests.on('exit', (c) => ok(c ?? 1)));
} catch (e) {
  console.error(`e2e: ${e.message}`);
} finally {
  server.kill('SIGTERM');
  mock.kill('SIGTERM');
  smtp.kill('SIGTERM');
  await new Promise((ok) => (server.exitCode !== null ? ok() : server.on('exit', ok)));
  if (code !== 0) {
    // The last lines of the server's log, for whoever reads a failed run.
    const lines = readFileSync(serverLog, 'utf8').split('\n');
    const shown = lines.filter((l) => /WARN|ERROR|panicked/.test(l)).slice(-40);
    console.error(`e2e: server log (warnings and errors, last ${shown.length}):\n${shown.join('\n')}`);
  }
  rmSync(work, { recursive: true, force: true });
}
process.exit(code);
