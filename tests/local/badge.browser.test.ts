/**
 * End to end: `lambkin dev` as its own process builds a signed push; `lambkin badge --local` prints
 * the badge's Markdown; the URL in it shows in a real headless Chromium, as an image in a page (what
 * a README does) and opened on its own.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  decodePng,
  findChromium,
  launchChromium,
  pixelAt,
  type LaunchedBrowser,
} from '../support/browser.js';
import { startDevProcess, type DevProcess } from '../support/dev-process.js';
import { createGitRepo, startGitHubServer, type GitHubStandIn } from '../support/github-server.js';
import { passingProject } from '../support/npm-projects.js';
import { pushPayload, signedDelivery } from '../support/payloads.js';
import { requireTool } from '../support/tools.js';
import { runProcess } from '../cli/helpers.js';

const SECRET = 'badge-e2e-secret';
const TOKEN = 'badge-e2e-token';
const REPO = 'octo/badged';

/** `[![build](<badge URL>)](<page URL>)`: the badge URL. */
function badgeUrlIn(markdown: string): string {
  const match = /^\[!\[build\]\((http[^)\s]+)\)\]\((http[^)\s]+)\)\n$/.exec(markdown);
  if (!match?.[1]) throw new Error(`not the Markdown of a linked badge: ${markdown}`);
  return match[1];
}

/** Every channel within `tolerance` of the expected colour (the badge's gradient shades it a little). */
function expectColourNear(actual: [number, number, number], expected: [number, number, number]): void {
  const tolerance = 24;
  for (let i = 0; i < 3; i++) {
    expect({ actual, channel: i, near: Math.abs(actual[i]! - expected[i]!) <= tolerance }).toEqual({
      actual,
      channel: i,
      near: true,
    });
  }
}

describe('a badge from lambkin dev in a headless browser', () => {
  if (!requireTool('chromium', 'the badge in a real browser', findChromium() !== undefined)) return;

  let github: GitHubStandIn;
  let dataDir: string;
  let gitDir: string;
  let dev: DevProcess;
  let browser: LaunchedBrowser;

  beforeAll(async () => {
    github = await startGitHubServer({ token: TOKEN });
    dataDir = mkdtempSync(join(tmpdir(), 'lambkin-badge-e2e-'));
    const repo = await createGitRepo(passingProject());
    gitDir = repo.dir;
    github.addRepository({ owner: 'octo', name: 'badged', gitDir });
    dev = await startDevProcess({
      dataDir,
      githubApi: github.url,
      env: { LAMBKIN_WEBHOOK_SECRET: SECRET, GITHUB_TOKEN: TOKEN },
    });
    const delivery = await signedDelivery(
      SECRET,
      'push',
      pushPayload({ repo: REPO, branch: 'main', sha: repo.sha }),
    );
    const response = await fetch(dev.stack.endpoints.webhook, {
      method: 'POST',
      headers: delivery.headers,
      body: delivery.body,
    });
    expect(response.status).toBe(202);
    for (let i = 0; github.statusesFor(REPO, repo.sha)[0]?.state !== 'success'; i++) {
      if (i > 240) throw new Error(`the build did not pass: ${dev.logs()}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    browser = await launchChromium({ viewport: { width: 400, height: 200 } });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await dev?.stop();
    await github?.close();
    for (const folder of [dataDir, gitDir]) if (folder) rmSync(folder, { recursive: true, force: true });
  });

  it('shows "build | passing" where the Markdown of `lambkin badge --local` points', async () => {
    const printed = await runProcess(['badge', `--local=${dataDir}`, REPO], { LAMBKIN_DEBUG: '0' });
    expect(printed.code).toBe(0);
    expect(printed.stderr).toBe('the badge shows passing: build #1 of main\n');
    const url = badgeUrlIn(printed.stdout);
    expect(url).toBe(`${dev.stack.publicUrl}/badges/${REPO}.svg`);

    const page = await browser.context.newPage();
    try {
      // As a README shows it: an image in someone else's page.
      await page.setContent(
        `<!doctype html><body style="margin:0"><img id="badge" alt="build" src="${url}">`,
      );
      await page.waitForFunction('document.getElementById("badge").complete');
      const size = (await page.evaluate(
        '(() => { const image = document.getElementById("badge"); return [image.naturalWidth, image.naturalHeight]; })()',
      )) as [number, number];
      expect(size[1]).toBe(20);
      expect(size[0]).toBeGreaterThan(60);
      const png = decodePng(await page.locator('#badge').screenshot({ type: 'png' }));
      expect(png.width).toBe(size[0]);
      // The label half is grey, the message half green (#4c1).
      expectColourNear(pixelAt(png, 2, 10), [0x55, 0x55, 0x55]);
      expectColourNear(pixelAt(png, png.width - 3, 10), [0x44, 0xcc, 0x11]);

      // Opened on its own: an SVG document titled with its words.
      const response = await page.goto(url);
      expect(response?.status()).toBe(200);
      expect(response?.headers()['content-type']).toBe('image/svg+xml');
      expect(await page.title()).toBe('build: passing');
    } finally {
      await page.close();
    }
  });
});
