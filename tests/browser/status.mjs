// Opens the exporter's status page in Debian's chromium (driven by playwright-core) and checks
// what a person would see: the source whose IAM action is denied shows as failing and names the
// action, the landing page links to /status, and the page is behind basic auth.
// Usage: node status.mjs <base-url> <user> <password> <denied-source> <denied-action> <screenshot.png>
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, request } from 'playwright-core';

const [base, user, password, deniedSource, deniedAction, screenshot] = process.argv.slice(2);
if (!screenshot) {
  console.error('usage: node status.mjs <base-url> <user> <password> <denied-source> <denied-action> <screenshot.png>');
  process.exit(2);
}
const DEADLINE_MS = 60_000;

function check(cond, message) {
  if (!cond) {
    throw new Error(`status page check failed: ${message}`);
  }
}

// Without credentials the page is refused.
const anonymous = await request.newContext();
for (const path of ['/status', '/api/v1/status']) {
  const resp = await anonymous.get(base + path);
  check(resp.status() === 401, `${path} without credentials answered ${resp.status()}, not 401`);
}
await anonymous.dispose();

const profile = mkdtempSync(join(tmpdir(), 'status-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  httpCredentials: { username: user, password },
  viewport: { width: 1280, height: 800 },
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => { throw e; });

  // Follow the link from the landing page, as a person would.
  const landing = await page.goto(base + '/');
  check(landing.status() === 200, `/ answered ${landing.status()}`);
  await page.getByRole('link', { name: '/status', exact: true }).click();
  await page.waitForURL(base + '/status');
  check((await page.title()) === 'aws-workflow-exporter status', `title is ${await page.title()}`);

  // Wait for every source's first poll, reloading as a person would.
  const started = Date.now();
  for (;;) {
    const pending = await page.locator('tr.source[data-state="pending"]').count();
    const rows = await page.locator('tr.source').count();
    if (rows > 0 && pending === 0) break;
    check(Date.now() - started < DEADLINE_MS, `sources still pending after ${DEADLINE_MS} ms`);
    await page.waitForTimeout(500);
    await page.reload();
  }

  const failing = page.locator('tr.source', { hasText: deniedSource });
  check((await failing.count()) === 1, `one row for ${deniedSource}`);
  check((await failing.getAttribute('data-state')) === 'failing',
    `${deniedSource} is ${await failing.getAttribute('data-state')}, not failing`);
  const badge = failing.locator('.state');
  check((await badge.innerText()).trim() === 'failing', `badge says ${await badge.innerText()}`);
  check(await badge.isVisible(), 'the state badge is visible');
  // The row after it lists the errors, naming the IAM action to grant.
  const errors = page.locator(`tr.source:has-text("${deniedSource}") + tr.errors`);
  check(await errors.isVisible(), `the errors of ${deniedSource} are shown`);
  const action = errors.locator('code.action').first();
  check((await action.innerText()) === deniedAction, `the error names ${await action.innerText()}, not ${deniedAction}`);
  check((await errors.innerText()).includes('AccessDeniedException'), 'the AWS error code is shown');

  // The other sources poll fine (or wait for API budget: the demo polls every second).
  for (const row of await page.locator('tr.source').all()) {
    const text = await row.innerText();
    if (!text.includes(deniedSource)) {
      const state = await row.getAttribute('data-state');
      check(['ok', 'waiting_for_budget'].includes(state), `another source is ${state}: ${text}`);
    }
  }
  check((await page.locator('h2', { hasText: 'API budget' }).count()) === 1, 'the budget section is shown');
  check((await page.locator('script').count()) === 0, 'the page carries no scripts');

  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`status page ok: ${deniedSource} failing on ${deniedAction}; screenshot ${screenshot}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
