// Shared by the browser scripts: a headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core; nothing is downloaded), a
// record of every URL the browser requested, and the JSON report.
//
// Each script is run by tests/api/browser.rs as
//
//   node tests/browser/<script>.mjs '<json args>'
//
// with the working directory at the crate root, and prints exactly one line
// of JSON on stdout: the report. It exits 0 when it could report, even if the
// flow did not end where the test expects (the test decides); 1 with the
// error on stderr when it could not.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
// Everything a script does must fit in this (the Rust side kills it later).
const SCRIPT_LIMIT_MS = Number(process.env.BROWSER_SCRIPT_LIMIT_MS || 45000);
// A single wait (a selector, a navigation).
export const STEP_MS = 15000;

export function args() {
  const raw = process.argv[2];
  if (!raw) fail('usage: node <script>.mjs \'<json args>\'');
  try {
    return JSON.parse(raw);
  } catch (e) {
    fail(`bad JSON args: ${e.message}`);
  }
}

export function fail(msg) {
  process.stderr.write(`${msg}\n`);
  process.exit(1);
}

// Runs `flow(ctx)` in a fresh headless browser (fresh profile: playwright
// makes a temporary user-data dir and deletes it at close), then screenshots
// the final page to `shot`, adds what was seen to the report and prints it.
// ctx: { page, context, browser, report, urls }.
export async function run(opts, flow) {
  const timer = setTimeout(() => {
    process.stderr.write(`browser script over its ${SCRIPT_LIMIT_MS} ms limit\n`);
    process.exit(1);
  }, SCRIPT_LIMIT_MS);
  timer.unref();
  const started = Date.now();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // Hermetic: names other than loopback do not resolve (the provider's
      // dev login page asks for Google Fonts, for one).
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
    ],
  });
  const report = { ok: true };
  let page;
  try {
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    context.setDefaultTimeout(STEP_MS);
    context.setDefaultNavigationTimeout(STEP_MS);
    page = await context.newPage();
    // Every URL the browser asked for (redirect hops included), and every
    // main-frame navigation with its status.
    const urls = [];
    const navigations = [];
    page.on('request', (req) => urls.push(req.url()));
    page.on('response', (res) => {
      const req = res.request();
      if (req.isNavigationRequest() && req.frame() === page.mainFrame()) {
        navigations.push({ url: res.url(), status: res.status(), location: res.headers().location ?? null });
      }
      const location = res.headers().location;
      if (location) urls.push(location);
    });
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) urls.push(frame.url());
    });
    const consoleErrors = [];
    page.on('console', (msg) => { if (msg.type() === 'error') consoleErrors.push(msg.text()); });
    page.on('pageerror', (err) => consoleErrors.push(String(err)));
    await flow({ page, context, browser, report, urls });
    report.final_url = page.url();
    report.final_status = navigations.at(-1)?.status ?? null;
    report.navigations = navigations;
    report.urls = urls;
    report.console_errors = consoleErrors;
  } catch (e) {
    report.ok = false;
    report.error = String(e?.stack || e);
    report.final_url = page?.url() ?? null;
  } finally {
    if (page && opts.shot) {
      try {
        fs.mkdirSync(path.dirname(opts.shot), { recursive: true });
        await page.screenshot({ path: opts.shot, fullPage: true, timeout: 5000 });
        report.screenshot = opts.shot;
      } catch (e) {
        report.screenshot_error = String(e);
      }
    }
    await browser.close();
  }
  report.elapsed_ms = Date.now() - started;
  process.stdout.write(`${JSON.stringify(report)}\n`);
  clearTimeout(timer);
}

// Opens the gateway's sign-in page and clicks the link `selector` (rendered
// by the page's JS once it has fetched /auth/providers).
export async function clickSignIn(page, base, selector) {
  await page.goto(`${base}/`);
  const link = page.locator(selector);
  await link.waitFor({ state: 'visible' });
  await link.click();
}

// Waits until the flow has ended on the gateway: the sign-in page showing
// who is signed in, or the "Sign-in failed" page. Fills `report`.
export async function outcome(page, report) {
  const signedIn = page.locator('#whoami');
  const failed = page.locator('h1', { hasText: 'Sign-in failed' });
  await signedIn.or(failed).first().waitFor({ state: 'visible' });
  if (await failed.count()) {
    report.failed = true;
    report.error_code = (await page.locator('code').first().textContent())?.trim() ?? null;
    report.page_text = (await page.locator('body').innerText()).slice(0, 2000);
  } else {
    report.failed = false;
    report.whoami = (await signedIn.textContent())?.trim() ?? null;
  }
}

// The gateway's session cookie as the browser holds it, and whether the
// page's JS can see it.
export async function sessionCookie(page, context, base) {
  const cookies = await context.cookies(base);
  const cookie = cookies.find((c) => c.name === 'gatehouse_session') ?? null;
  const documentCookie = await page.evaluate(() => document.cookie);
  return {
    cookie,
    document_cookie: documentCookie,
    visible_to_js: cookie ? documentCookie.includes(cookie.value) || /(^|;\s*)gatehouse_session=/.test(documentCookie) : false,
  };
}

// A screenshot of the viewport (not the full page) to `file`, its directory
// created; answers the path.
export async function shoot(page, file) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await page.screenshot({ path: file, fullPage: false, timeout: 5000 });
  return file;
}

// Another browser context (its own cookies: another user) with the same
// viewport and waits as run()'s, and a page in it whose console errors and
// uncaught exceptions go to `errors`.
export async function newPage(browser, errors = []) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  context.setDefaultTimeout(STEP_MS);
  context.setDefaultNavigationTimeout(STEP_MS);
  const page = await context.newPage();
  page.on('console', (msg) => { if (msg.type() === 'error') errors.push(msg.text()); });
  page.on('pageerror', (err) => errors.push(String(err)));
  return { context, page };
}
