/**
 * Test helper: the dashboard in a real headless browser. Debian's chromium (apt-get install chromium; a test
 * tool's own browser download does not work on this network) driven by playwright-core. The browser is
 * closed by the helper's own cleanup (onCleanup), and page errors are collected so a test can assert none.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { onCleanup } from './scope.ts';

type After = { after(fn: () => unknown): void };

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CHROMIUM = process.env.CITYPULSE_CHROMIUM ?? '/usr/bin/chromium';
/** Where screenshots go (git-ignored); `CITYPULSE_SCREENSHOTS_TO_DOCS=1` also copies them to docs/screenshots. */
export const ARTIFACTS = join(ROOT, 'test-artifacts');

/** Flags for a closed network: no background requests, no GPU, no sandbox (root in a container). */
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'dist' && e.name !== 'node_modules') newest = Math.max(newest, newestMtime(p));
    } else newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * Builds dashboard/dist when it is missing or older than its sources (scripts/setup.sh does the same for
 * `npm test`; this covers running one test file by hand). A lock folder keeps two test files from building at once.
 */
export async function ensureDashboardBuilt(): Promise<void> {
  const index = join(ROOT, 'dashboard', 'dist', 'index.html');
  const fresh = () => existsSync(index) && statSync(index).mtimeMs >= newestMtime(join(ROOT, 'dashboard'));
  if (fresh()) return;
  const lock = join(ROOT, 'dashboard', '.build-lock');
  for (let i = 0; ; i++) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (i > 600) rmSync(lock, { recursive: true, force: true }); // a stale lock of a killed run (60 s)
      await new Promise((r) => setTimeout(r, 100));
      if (fresh()) return;
    }
  }
  try {
    if (fresh()) return;
    const out = spawnSync('npx', ['vite', 'build', '-c', 'dashboard/vite.config.ts'], { cwd: ROOT, encoding: 'utf8' });
    if (out.status !== 0) throw new Error(`dashboard build failed: ${out.stderr || out.stdout}`);
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** A headless chromium, closed at cleanup. */
export async function launchBrowser(t: After): Promise<Browser> {
  await ensureDashboardBuilt();
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30_000 });
  onCleanup(t, () => browser.close().catch(() => undefined));
  return browser;
}

export interface DashboardPage {
  page: Page;
  context: BrowserContext;
  /** Uncaught page errors and console errors seen so far. */
  errors: string[];
}

/**
 * A new browser context (own localStorage: a separate screen) with a page on `url`. Viewport 1600×1000 unless
 * given; the locale is Vietnamese like the operators' machines. `initScript` runs in every document of the
 * screen before the app's own scripts (e.g. a spy on a browser API).
 */
export async function openPage(
  browser: Browser,
  url: string,
  opts: { viewport?: { width: number; height: number }; initScript?: () => void } = {},
): Promise<DashboardPage> {
  const context = await browser.newContext({ viewport: opts.viewport ?? { width: 1600, height: 1000 }, locale: 'vi-VN' });
  if (opts.initScript) await context.addInitScript(opts.initScript);
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    // A refused connection while the server is down is expected in the restart test; anything else is a bug.
    if (m.type() === 'error' && !/ERR_CONNECTION_REFUSED|WebSocket connection|Failed to load resource/.test(m.text()))
      errors.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  return { page, context, errors };
}

/** Logs in through the login form and waits for the connected overview. */
export async function login(page: Page, username: string, password: string, timeoutMs = 15_000): Promise<void> {
  await page.getByTestId('login-username').fill(username);
  await page.getByTestId('login-password').fill(password);
  await page.getByTestId('login-submit').click();
  await page.locator('[data-testid="conn-state"][data-state="connected"]').waitFor({ timeout: timeoutMs });
}

/** Password of the operator `test-<role>` that test/helpers/platform.ts' loginAs creates. */
export const passwordOf = (role: string) => `test-${role}-password`;

/** Writes a screenshot to test-artifacts/screenshots (and docs/screenshots when asked). */
export async function screenshot(page: Page, name: string): Promise<string> {
  const dir = join(ARTIFACTS, 'screenshots');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.png`);
  await page.screenshot({ path: file });
  if (process.env.CITYPULSE_SCREENSHOTS_TO_DOCS === '1') {
    const docs = join(ROOT, 'docs', 'screenshots');
    mkdirSync(docs, { recursive: true });
    await page.screenshot({ path: join(docs, `${name}.png`) });
  }
  return file;
}
