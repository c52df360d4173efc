/**
 * The log page (index.html next to log.txt) as people see it: rendered by a real headless Chromium
 * from a loopback HTTP server. The unit tests check the HTML text; these check what a browser makes
 * of it: computed colours, the step list as laid out, that hostile output stays inert text, that a
 * running build's page refreshes itself into the finished one, and the pixels of a screenshot.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { formatBuildSummary, formatStepFooter, formatStepHeader } from '../../src/core/log-format.js';
import { logPageLinksFor, renderLogPage } from '../../src/pages/build-page.js';
import { renderRepoPage } from '../../src/pages/repo-page.js';
import { relativePageLinks } from '../../src/core/links.js';
import type { LogPageBuild } from '../../src/pages/build-page.js';
import {
  cssColour,
  decodePng,
  findChromium,
  hexColour,
  launchChromium,
  pixelAt,
} from '../support/browser.js';
import type { DecodedPng, LaunchedBrowser } from '../support/browser.js';
import { requireTool } from '../support/tools.js';

const ESC = '\u001b';
const QUEUED_AT = Date.UTC(2024, 4, 1, 10, 40, 0);
const VIEWPORT = { width: 1280, height: 800 };
const SHA = 'abc1234def5678abc1234def5678abc1234def56';
const LINKS = {
  raw: 'log.txt',
  github: 'https://github.com/octo/widgets',
  commit: `https://github.com/octo/widgets/commit/${SHA}`,
};

const HOSTILE_SCRIPT = '<script>window.pwned=1</script>';
const HOSTILE_IMG = '<img src=x onerror="window.pwned=2">';

const FINISHED_STEPS = [
  { name: 'install', exitCode: 0, durationMs: 8123 },
  { name: 'test', exitCode: 1, durationMs: 61_234 },
  { name: 'deploy', exitCode: null, durationMs: 0 },
];

/** A failed build's log as the builder writes it: step headers and footers, output, the summary. */
const FINISHED_LOG = [
  'Fetching source…\n',
  formatStepHeader({ name: 'install', command: 'npm ci' }),
  'added 312 packages in 7s\n',
  formatStepFooter({ name: 'install', exitCode: 0, durationMs: 8123 }),
  formatStepHeader({ name: 'test', command: 'npm test' }),
  `${ESC}[32m✔ ok${ESC}[0m config parses\n`,
  `${ESC}[31mred${ESC}[0m\n`,
  `${HOSTILE_SCRIPT}\n`,
  `${HOSTILE_IMG}\n`,
  formatStepFooter({ name: 'test', exitCode: 1, durationMs: 61_234 }),
  formatBuildSummary({
    state: 'failure',
    durationMs: 70_000,
    steps: FINISHED_STEPS.slice(0, 2),
    description: 'test failed (exit 1)',
  }),
].join('');

function build(overrides: Partial<LogPageBuild> = {}): LogPageBuild {
  return {
    repo: 'octo/widgets',
    number: 42,
    state: 'failure',
    sha: SHA,
    branch: 'main',
    author: 'mona',
    commitTitle: `Make widgets faster ${HOSTILE_IMG}`,
    queuedAt: QUEUED_AT,
    startedAt: QUEUED_AT + 2000,
    endedAt: QUEUED_AT + 72_000,
    description: 'test failed (exit 1)',
    steps: FINISHED_STEPS,
    ...overrides,
  };
}

const finishedPage = renderLogPage({ build: build(), log: FINISHED_LOG, running: false, links: LINKS });

const RUNNING_LOG =
  formatStepHeader({ name: 'install', command: 'npm ci' }) +
  formatStepFooter({ name: 'install', exitCode: 0, durationMs: 850 }) +
  formatStepHeader({ name: 'test', command: 'npm test' }) +
  'working…\n';

const runningPage = renderLogPage({
  build: build({ state: 'running', endedAt: undefined, steps: undefined, description: undefined }),
  log: RUNNING_LOG,
  running: true,
  refreshSeconds: 1,
  now: QUEUED_AT + 12_000,
  links: LINKS,
});

const passedPage = renderLogPage({
  build: build({
    state: 'success',
    description: undefined,
    steps: [
      { name: 'install', exitCode: 0, durationMs: 850 },
      { name: 'test', exitCode: 0, durationMs: 4200 },
    ],
  }),
  log:
    RUNNING_LOG +
    `${ESC}[32m✔ ok${ESC}[0m all good\n` +
    formatStepFooter({ name: 'test', exitCode: 0, durationMs: 4200 }) +
    formatBuildSummary({ state: 'success', durationMs: 5050 }),
  running: false,
  refreshSeconds: 1,
  links: LINKS,
});

/** What the page shows, read in the browser (a string: the project's TypeScript has no DOM types). */
interface PageFacts {
  title: string;
  pill: { text: string; className: string; background: string } | null;
  notice: string | null;
  refresh: string | null;
  steps: {
    symbol: string;
    name: string;
    outcome: string;
    exit: string;
    duration: string;
    visible: boolean;
  }[];
  spans: { text: string; color: string }[];
  rawLink: { attribute: string | null; href: string } | null;
  commitTitle: string | null;
  stepsTotal: string | null;
  logText: string;
  logColour: string | null;
  logBackground: string | null;
  pwned: string;
  activeElements: number;
}

const READ_PAGE = `(() => {
  const text = (selector) => {
    const element = document.querySelector(selector);
    return element ? element.innerText : null;
  };
  const style = (selector, property) => {
    const element = document.querySelector(selector);
    return element ? getComputedStyle(element)[property] : null;
  };
  const pill = document.querySelector('.pill');
  const raw = [...document.querySelectorAll('a')].find((a) => a.textContent === 'Raw log');
  return {
    title: document.title,
    pill: pill && { text: pill.innerText, className: pill.className, background: getComputedStyle(pill).backgroundColor },
    notice: text('.notice'),
    refresh: document.querySelector('meta[http-equiv="refresh" i]')?.getAttribute('content') ?? null,
    steps: [...document.querySelectorAll('nav.steps tbody tr')].map((row) => ({
      symbol: row.querySelector('.status').innerText,
      name: row.querySelector('.name').innerText,
      outcome: row.querySelector('.outcome').innerText,
      exit: row.querySelector('.exit').innerText,
      duration: row.querySelector('.duration').innerText,
      visible: row.getBoundingClientRect().height > 0 && getComputedStyle(row).visibility === 'visible',
    })),
    spans: [...document.querySelectorAll('.log span')].map((span) => ({
      text: span.textContent,
      color: getComputedStyle(span).color,
    })),
    rawLink: raw ? { attribute: raw.getAttribute('href'), href: raw.href } : null,
    commitTitle: text('.commit-title'),
    stepsTotal: text('nav.steps tfoot'),
    logText: text('.log') ?? '',
    logColour: style('.log pre', 'color'),
    logBackground: style('.log', 'backgroundColor'),
    pwned: typeof window.pwned,
    activeElements: document.querySelectorAll('script, img, svg, iframe, object, embed').length,
  };
})()`;

async function readPage(page: Page): Promise<PageFacts> {
  return page.evaluate<PageFacts>(READ_PAGE);
}

type Rgb = [number, number, number];

const isRedish = ([r, g, b]: Rgb): boolean => r >= 180 && r - g >= 80 && r - b >= 80;
const isGreenish = ([r, g, b]: Rgb): boolean => g >= 140 && g - r >= 60 && g - b >= 60;

function colourOfSpan(facts: PageFacts, text: string): Rgb {
  const span = facts.spans.find((candidate) => candidate.text === text);
  if (!span) throw new Error(`no span with text ${JSON.stringify(text)} in the log`);
  return cssColour(span.color);
}

function near(actual: Rgb, expected: Rgb, tolerance = 3): boolean {
  return actual.every((value, index) => Math.abs(value - expected[index]!) <= tolerance);
}

interface TestServer {
  base: string;
  /** Paths requested, in order. */
  requests: string[];
  routes: Map<string, () => { type: string; body: string }>;
  close(): Promise<void>;
}

async function startServer(): Promise<TestServer> {
  const requests: string[] = [];
  const routes = new Map<string, () => { type: string; body: string }>();
  const server: Server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://127.0.0.1').pathname;
    requests.push(path);
    const route = routes.get(path);
    if (!route) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const { type, body } = route();
    response.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    requests,
    routes,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

const html = (body: string) => () => ({ type: 'text/html; charset=utf-8', body });

describe('the log page in a headless browser', () => {
  if (!requireTool('chromium', 'the log page in a real browser', findChromium() !== undefined)) return;

  let browser: LaunchedBrowser;
  let server: TestServer;
  let page: Page;
  /** Console errors and uncaught exceptions of the current page: a clean page has none. */
  let problems: string[];

  beforeAll(async () => {
    server = await startServer();
    server.routes.set('/octo/widgets/builds/42/index.html', html(finishedPage));
    server.routes.set('/octo/widgets/builds/42/log.txt', () => ({
      type: 'text/plain; charset=utf-8',
      body: FINISHED_LOG,
    }));
    server.routes.set('/control.html', html(`<!DOCTYPE html><title>control</title>${HOSTILE_SCRIPT}`));
    browser = await launchChromium({ viewport: VIEWPORT, colorScheme: 'light' });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  beforeEach(async () => {
    problems = [];
    page = await browser.context.newPage();
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  });

  afterEach(async () => {
    await page.close();
  });

  test('the script probe works: an unescaped script does run in this browser', async () => {
    await page.goto(`${server.base}/control.html`);
    const facts = await readPage(page);
    expect(facts.pwned).toBe('number');
    expect(facts.activeElements).toBe(1);
  });

  test('a finished build: colours, steps with durations and exit codes, result, raw log link', async () => {
    const url = `${server.base}/octo/widgets/builds/42/index.html`;
    const requested: string[] = [];
    page.on('request', (request) => requested.push(request.url()));
    const response = await page.goto(url);
    expect(response?.status()).toBe(200);
    const facts = await readPage(page);

    expect(facts.title).toBe('octo/widgets #42 · failed — Lambkin');
    expect(facts.refresh).toBeNull();
    expect(facts.notice).toBeNull();

    // The result pill: the state's word on the state's colour.
    expect(facts.pill).toMatchObject({ text: 'failed', className: 'pill state-failure' });
    expect(near(cssColour(facts.pill!.background), hexColour('#cf222e'))).toBe(true);

    // ANSI colours from the build's output and from the builder's own step lines.
    expect(isRedish(colourOfSpan(facts, 'red'))).toBe(true);
    expect(isGreenish(colourOfSpan(facts, '✔ ok'))).toBe(true);
    expect(isGreenish(colourOfSpan(facts, '✔ step install: passed'))).toBe(true);
    expect(isRedish(colourOfSpan(facts, '✘ step test: failed'))).toBe(true);
    expect(isRedish(colourOfSpan(facts, '✔ ok'))).toBe(false);
    expect(isGreenish(colourOfSpan(facts, 'red'))).toBe(false);
    // Uncoloured output is neither: the default light text on the dark panel.
    expect(facts.spans.some((span) => span.text.includes('added 312'))).toBe(false);
    expect(near(cssColour(facts.logColour ?? ''), hexColour('#e6edf3'))).toBe(true);
    expect(near(cssColour(facts.logBackground ?? ''), hexColour('#0d1117'))).toBe(true);

    // Every step, visible, with its outcome, exit code and duration.
    expect(facts.steps).toEqual([
      { symbol: '✔', name: 'install', outcome: 'passed', exit: 'exit 0', duration: '8.1 s', visible: true },
      { symbol: '✘', name: 'test', outcome: 'failed', exit: 'exit 1', duration: '1 min 01 s', visible: true },
      { symbol: '○', name: 'deploy', outcome: 'not run', exit: '', duration: '', visible: true },
    ]);

    // The steps added up, named (what a "passed in …" description measures).
    expect(facts.stepsTotal).toMatch(/^\s*Steps in total\s+1 min 09 s\s*$/);

    // Hostile output did nothing and reads as text.
    expect(facts.pwned).toBe('undefined');
    expect(facts.activeElements).toBe(0);
    expect(facts.logText).toContain(HOSTILE_SCRIPT);
    expect(facts.logText).toContain(HOSTILE_IMG);
    expect(facts.commitTitle).toBe(`Make widgets faster ${HOSTILE_IMG}`);
    expect(facts.logText).toContain('added 312 packages in 7s');
    expect(facts.logText).toContain('■ build failed (1 min 10 s)');
    // Nothing but the page itself was fetched (no image, no script), and nothing complained.
    expect(requested).toEqual([url]);
    expect(problems).toEqual([]);

    // The raw log link leads to log.txt next to the page.
    expect(facts.rawLink).toEqual({
      attribute: 'log.txt',
      href: `${server.base}/octo/widgets/builds/42/log.txt`,
    });
    await page.getByRole('link', { name: 'Raw log' }).click();
    await page.waitForURL(`${server.base}/octo/widgets/builds/42/log.txt`);
    expect(await page.evaluate<string>('document.body.innerText')).toContain('added 312 packages in 7s');
  });

  test('a running build refreshes itself until it shows the finished build', async () => {
    let finished = false;
    const served: string[] = [];
    server.routes.set('/octo/widgets/builds/43/index.html', () => {
      served.push(finished ? 'finished' : 'running');
      return html(finished ? passedPage : runningPage)();
    });

    await page.goto(`${server.base}/octo/widgets/builds/43/index.html`);
    const running = await readPage(page);
    expect(running.pill).toMatchObject({ text: 'running', className: 'pill state-running' });
    expect(running.refresh).toBe('1');
    expect(running.notice).toContain('refreshes every 1 s');
    expect(running.steps.map((step) => [step.name, step.outcome])).toEqual([
      ['install', 'passed'],
      ['test', 'running'],
    ]);

    // The build ends: the next request gets the finished page. The test only waits.
    finished = true;
    await page.locator('.pill.state-success').waitFor({ timeout: 15_000 });
    const done = await readPage(page);
    expect(done.pill).toMatchObject({ text: 'passed', className: 'pill state-success' });
    expect(done.refresh).toBeNull();
    expect(done.notice).toBeNull();
    expect(done.steps.map((step) => [step.name, step.outcome, step.exit])).toEqual([
      ['install', 'passed', 'exit 0'],
      ['test', 'passed', 'exit 0'],
    ]);
    expect(served[0]).toBe('running');
    expect(served.at(-1)).toBe('finished');
    expect(served.filter((state) => state === 'finished')).toHaveLength(1);

    // The finished page stays put: with a 1 s refresh, 2.5 s would have brought two more requests.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect(served.filter((state) => state === 'finished')).toHaveLength(1);
    expect(problems).toEqual([]);
  });

  test('the stored page links to its raw log and its repository, served from two different base URLs', async () => {
    // Rendered once, as the builder stores it, from a link recorded on another host.
    const recorded = 'https://recorded.example.test/builds/octo/widgets/42';
    const stored = renderLogPage({
      build: build(),
      log: FINISHED_LOG,
      running: false,
      links: logPageLinksFor(recorded, LINKS.github),
    });
    const list = renderRepoPage({
      repo: 'octo/widgets',
      builds: [build()],
      linkOf: () => relativePageLinks(recorded).fromRepoPage,
      now: QUEUED_AT + 80_000,
    });
    const other = await startServer();
    try {
      // Another port, and another host's path prefix (a custom domain in front of the route).
      for (const base of [server.base, `${other.base}/ci`]) {
        const { pathname } = new URL(base);
        const prefix = pathname === '/' ? '' : pathname;
        const target = base === server.base ? server : other;
        target.routes.set(`${prefix}/builds/octo/widgets/42`, html(stored));
        target.routes.set(`${prefix}/builds/octo/widgets/42/log.txt`, () => ({
          type: 'text/plain; charset=utf-8',
          body: FINISHED_LOG,
        }));
        target.routes.set(`${prefix}/builds/octo/widgets`, html(list));
        // The browser asks for one when it shows the plain-text log.
        target.routes.set('/favicon.ico', () => ({ type: 'image/x-icon', body: '' }));

        const pageUrl = `${base}/builds/octo/widgets/42`;
        await page.goto(pageUrl);
        await page.getByRole('link', { name: 'Raw log' }).click();
        await page.waitForURL(`${pageUrl}/log.txt`);
        expect(await page.evaluate<string>('document.body.innerText')).toContain('added 312 packages in 7s');

        await page.goto(pageUrl);
        await page.getByRole('link', { name: 'All builds of octo/widgets' }).click();
        await page.waitForURL(`${base}/builds/octo/widgets`);
        await page.getByRole('link', { name: '#42' }).click();
        await page.waitForURL(pageUrl);
        expect((await readPage(page)).title).toBe('octo/widgets #42 · failed — Lambkin');
      }
      expect(other.requests).toContain('/ci/builds/octo/widgets/42/log.txt');
      expect(server.requests).toContain('/builds/octo/widgets/42/log.txt');
      expect(problems).toEqual([]);
    } finally {
      await other.close();
    }
  });

  test('a screenshot of the finished page is a full, non-blank 1280×800 image', async () => {
    await page.goto(`${server.base}/octo/widgets/builds/42/index.html`);
    const png = await page.screenshot({ type: 'png' });
    const folder = await mkdtemp(join(tmpdir(), 'lambkin-log-page-screenshot-'));
    const file = join(folder, 'finished-build.png');
    await writeFile(file, png);
    console.log(`log page screenshot: ${file}`);

    const image = decodePng(png);
    expect([image.width, image.height]).toEqual([VIEWPORT.width, VIEWPORT.height]);

    // Not blank: many colours, none covering almost everything.
    const counts = new Map<number, number>();
    for (let at = 0; at < image.pixels.length; at += image.channels) {
      const key = (image.pixels[at]! << 16) | (image.pixels[at + 1]! << 8) | image.pixels[at + 2]!;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    const total = image.width * image.height;
    expect(counts.size).toBeGreaterThan(50);
    expect(Math.max(...counts.values()) / total).toBeLessThan(0.85);

    // The pixels are where the layout says: page background, the result pill, the dark log panel.
    expect(near(pixelAt(image, 4, 4), hexColour('#f6f8fa'))).toBe(true);
    const pill = await boxOf(page, '.pill');
    expect(near(pixelAt(image, pill.x + 5, pill.y + pill.height / 2), hexColour('#cf222e'))).toBe(true);
    const log = await boxOf(page, '.log');
    expect(near(pixelAt(image, log.x + 6, log.y + 6), hexColour('#0d1117'))).toBe(true);

    // The coloured output is drawn in its colours.
    const red = await boxOf(page, '.log span >> text=/^red$/');
    expect(anyPixel(image, red, isRedish)).toBe(true);
    expect(anyPixel(image, red, isGreenish)).toBe(false);
    const ok = await boxOf(page, '.log span >> text=/^✔ ok$/');
    expect(anyPixel(image, ok, isGreenish)).toBe(true);
    expect(anyPixel(image, ok, isRedish)).toBe(false);
  });
});

interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** The element's box, which must lie inside the viewport (so inside the screenshot). */
async function boxOf(page: Page, selector: string): Promise<Box> {
  const box = await page.locator(selector).first().boundingBox();
  if (!box) throw new Error(`${selector} is not displayed`);
  if (box.x < 0 || box.y < 0 || box.x + box.width > VIEWPORT.width || box.y + box.height > VIEWPORT.height) {
    throw new Error(`${selector} is outside the viewport: ${JSON.stringify(box)}`);
  }
  return box;
}

function anyPixel(image: DecodedPng, box: Box, test: (rgb: Rgb) => boolean): boolean {
  for (let y = Math.ceil(box.y); y < Math.floor(box.y + box.height); y++) {
    for (let x = Math.ceil(box.x); x < Math.floor(box.x + box.width); x++) {
      if (test(pixelAt(image, x, y))) return true;
    }
  }
  return false;
}
