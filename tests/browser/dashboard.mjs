// A tour of updraft's dashboard in headless Chromium, the way an operator clicks through it.
// Run by crates/updraft/tests/cli/browser.rs, which starts the two apps and passes:
//
//   JOBS_URL      an app named `jobs` (tests/guests kitchen + worker, queue `jobs`)
//   PIPELINE_URL  examples/data-pipeline with its sample CSV already loaded (5 rows)
//   ARTIFACTS     where screenshots go (under target/)
//   CHROMIUM      the browser binary (default /usr/bin/chromium)
//
// Every page visited is checked for console errors, an axe-core scan with no serious or
// critical violation, and no horizontal scrolling at 360 px wide. Each wait is bounded.
// Prints `ok <step>` per step; the first failure exits 1 with what was seen.

import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = require.resolve('axe-core/axe.min.js');

const jobs = need('JOBS_URL');
const pipeline = need('PIPELINE_URL');
const artifacts = need('ARTIFACTS');
mkdirSync(artifacts, { recursive: true });

const WAIT_MS = 30_000;

function need(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set; crates/updraft/tests/cli/browser.rs sets it`);
  }
  return v.replace(/\/$/, '');
}

function step(name) {
  console.log(`ok ${name}`);
}

function check(cond, what) {
  if (!cond) {
    throw new Error(what);
  }
}

/// Polls `f` until it returns a truthy value, at most `ms`.
async function eventually(what, f, ms = WAIT_MS) {
  const end = Date.now() + ms;
  let last;
  for (let i = 0; i < 1000 && Date.now() < end; i++) {
    last = await f();
    if (last) {
      return last;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  timeout: WAIT_MS,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

const problems = [];
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
context.setDefaultTimeout(WAIT_MS);
const page = await context.newPage();
page.on('console', (m) => {
  if (m.type() === 'error') {
    problems.push(`console error on ${page.url()}: ${m.text()}`);
  }
});
page.on('pageerror', (e) => problems.push(`uncaught error on ${page.url()}: ${e.message}`));
page.on('response', (r) => {
  if (r.status() >= 400) {
    problems.push(`${r.request().method()} ${r.url()} answered ${r.status()} (on ${page.url()})`);
  }
});

/// The checks every page gets: no console error so far, no serious or critical axe
/// violation, readable at 360 px (no sideways scrolling), and a screenshot.
async function inspect(name) {
  check(problems.length === 0, problems.join('\n'));
  await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.help}; ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
  });
  check(violations.length === 0, `axe on ${page.url()}:\n  ${violations.join('\n  ')}`);
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
  await page.setViewportSize({ width: 360, height: 800 });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  await page.screenshot({ path: join(artifacts, `${name}-360.png`), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
  check(wide <= 361, `${page.url()} is ${wide} px wide at a 360 px viewport`);
  step(`${name}: no console error, no serious axe violation, fits 360 px`);
}

async function text(selector) {
  return (await page.locator(selector).first().textContent())?.trim();
}

// ---- the jobs app: live view, an invocation's logs, a dead letter redriven, the overview

await page.goto(`${jobs}/_updraft/apps/jobs/live`);
await page.locator('#live-status', { hasText: 'Live:' }).waitFor();
step('live view connected');

const enqueued = await fetch(`${jobs}/k/enqueue?queue=jobs&id=p1`, { method: 'POST', body: 'fail' });
check(enqueued.status === 202, `enqueue answered ${enqueued.status}`);
const failed = page.locator('#live-rows tr', { has: page.locator('td.bad') }).filter({ hasText: 'worker' });
await failed.first().waitFor();
step('a failed worker invocation appeared live');
await inspect('live');

await failed.first().locator('a').click();
await page.waitForURL(/\/invocations\//);
const invocation = page.url();
// Logs are recorded just after the invocation; the page shows them once they are.
await eventually('the invocation page to show its logs', async () => {
  await page.goto(invocation);
  const body = await page.locator('main').textContent();
  return body.includes('handling p1 attempt') && body.includes('asked to fail');
});
step('the invocation page shows its logs and error');
await inspect('invocation');

const queues = `${jobs}/_updraft/apps/jobs/queues`;
const dead = () => text('tr[data-queue="jobs"] td:nth-of-type(3)');
await eventually('the message to be dead-lettered', async () => {
  await page.goto(queues);
  return (await dead()) === '1';
});
check(await page.locator('#dead-jobs').isVisible(), 'no dead-letter section for `jobs`');
step('the queues page shows one dead letter');
await inspect('queues');

await page.getByRole('button', { name: 'Redrive all 1' }).click();
await page.waitForURL(queues);
// The queue backs off 3 s between attempts, so the redriven message is not dead again yet.
check((await dead()) === '0', `after redrive the dead letters are ${await dead()}`);
check(!(await page.locator('#dead-jobs').isVisible()), 'the dead-letter section is still shown');
step('redrive moved the dead letter back to the queue');

await page.goto(`${jobs}/_updraft/apps/jobs?window=15m`);
await page.locator('[data-function="worker"]').waitFor();
check((await page.locator('svg[data-chart]').count()) > 0, 'the overview draws no chart');
step('the overview lists the functions and charts them');
await inspect('overview');

// The header's search box takes an id (as a response's updraft-invocation-id gives it).
const id = decodeURIComponent(invocation.split('/invocations/')[1]);
await page.getByLabel('Invocation id').fill(id);
await page.getByRole('button', { name: 'Find' }).click();
await page.waitForURL(invocation);
check((await page.locator('main').textContent()).includes('asked to fail'), 'search led elsewhere');
step('searching by invocation id opens its page');

// Logs followed live: a line the function prints appears without a reload.
await page.goto(`${jobs}/_updraft/apps/jobs/logs?function=kitchen`);
await page.locator('#logs-status', { hasText: 'Live:' }).waitFor();
const logged = await fetch(`${jobs}/k/log`);
check(logged.status === 200, `/k/log answered ${logged.status}`);
await logged.text();
const logId = logged.headers.get('updraft-invocation-id');
await page.locator('#log-lines span.stderr', { hasText: `to stderr from ${logId}` }).waitFor();
step('a line the function printed appeared on the logs page live');
await inspect('logs');

// The live view stays bounded under a burst: it keeps its newest rows, not every one.
await page.goto(`${jobs}/_updraft/apps/jobs/live`);
await page.locator('#live-status', { hasText: 'Live:' }).waitFor();
const kept = Number(await page.locator('#live-rows').getAttribute('data-kept'));
const burst = kept + 60;
for (let sent = 0; sent < burst; sent += 20) {
  const batch = [];
  for (let i = 0; i < 20; i++) {
    batch.push(fetch(`${jobs}/k/echo`).then((r) => r.arrayBuffer()));
  }
  await Promise.all(batch);
}
const rows = page.locator('#live-rows tr');
await eventually(`the live view to fill its ${kept} rows`, async () => (await rows.count()) >= kept);
check((await rows.count()) === kept, `the live view holds ${await rows.count()} rows, not ${kept}`);
step(`a burst of ${burst} invocations leaves the live view at its ${kept} rows`);

// ---- the data pipeline: the table explorer, a refused write, the app's own panels

const explorer = `${pipeline}/_updraft/apps/data-pipeline/sql`;
await page.goto(explorer);
await page.locator('#q').fill('SELECT day, sum(units) AS units FROM sales GROUP BY day ORDER BY day');
await page.locator('#chart').selectOption('line');
await page.locator('#x').fill('day');
await page.locator('#y').fill('units');
await page.getByRole('button', { name: 'Run' }).click();
const chart = page.locator('#result svg[data-chart="line"]');
await chart.waitFor();
const points = await chart.locator('circle').count();
check(points === 3, `the line chart has ${points} points, not 3 (one per day)`);
check((await chart.getAttribute('data-points')) === '3', 'data-points is not 3');
check((await text('#result [data-rows]')) === '3', 'the result does not say 3 rows');
step('the explorer draws a query as a line chart with 3 points');
await inspect('explorer');

await page.locator('#q').fill('DELETE FROM sales');
await page.locator('#chart').selectOption('table');
await page.getByRole('button', { name: 'Run' }).click();
const alert = page.locator('#result [role="alert"]');
await alert.waitFor();
check((await alert.textContent()).includes('may only read'), `the refusal says: ${await alert.textContent()}`);
const count = await fetch(`${pipeline}/_updraft/api/v1/sql/sales/query`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ sql: 'SELECT count(*) AS n FROM sales' }),
}).then((r) => r.json());
check(JSON.stringify(count.rows) === '[[5]]', `after the refused DELETE: ${JSON.stringify(count)}`);
step('a write in the explorer is refused and nothing changes');
await inspect('explorer-refused');

for (const [name, url] of [
  ['panels', `${pipeline}/_updraft/apps/data-pipeline/dashboard`],
  ['reports', `${pipeline}/reports`],
]) {
  await page.goto(url);
  const panels = page.locator('section.panel[id^="panel-"]');
  await panels.first().waitFor();
  const n = await panels.count();
  check(n >= 3, `${url} shows ${n} panels`);
  const charts = await page.locator('section.panel svg[data-chart]').count();
  check(charts >= 2, `${url} draws ${charts} charts`);
  check((await page.locator('.panel .error').count()) === 0, `${url} shows a panel error`);
  step(`${name}: ${n} panels, ${charts} charts`);
  await inspect(name);
}

await page.goto(`${pipeline}/_updraft/apps/data-pipeline/buckets/drop?prefix=incoming%2F`);
await page.locator('[data-object="incoming/sales-2026-11.csv"]').waitFor();
step('the bucket browser lists the dropped file');
await inspect('buckets');

await browser.close();
console.log('browser tour passed');
