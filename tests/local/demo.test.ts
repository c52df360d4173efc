/**
 * `npm start` runs this demo: it must build the example app's push and pull request and exit 0,
 * then say how to look at the builds again; the command it prints must reopen the kept data, and
 * the pages written while the demo served them on its port must still link right on the new one.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lookAgainHint, runDemo } from '../../src/local/demo.js';
import { startDevProcess, type DevProcess } from '../support/dev-process.js';

const REPO = {
  owner: 'lambkin-demo',
  name: 'demo-app',
  defaultBranch: 'main',
  htmlBase: 'https://github.com',
};

describe('the npm start demo', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'lambkin-demo-kept-'));
  let output = '';
  let dev: DevProcess | undefined;

  afterAll(async () => {
    await dev?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('builds a push and a pull request of the example app on the embedded stack', async () => {
    const lines: string[] = [];
    const code = await runDemo({ write: (line) => lines.push(line), dataDir });
    output = lines.join('\n');
    expect(code).toBe(0);
    expect(output).toMatch(/webhook push to main: HTTP 202, build #1 queued/);
    expect(output).toMatch(/webhook pull request #1: HTTP 202, build #2 queued/);
    for (const state of [
      'pending  Build #1 queued',
      'pending  Build #1 running',
      'success  Build #1 passed',
    ]) {
      expect(output).toContain(state);
    }
    expect(output).toContain('success  Build #2 passed');
    // The push to the default branch deploys; the pull request never does.
    expect(output).toMatch(/build #1 success[^\n]*\n\s+steps\s+install ok \d+ ms, test ok \d+ ms, deploy ok/);
    expect(output).toMatch(/build #2 success[^\n]*\n\s+steps\s+install ok \d+ ms, test ok \d+ ms\n/);
    expect(output).toMatch(
      /log page {2}http:\/\/127\.0\.0\.1:\d+\/builds\/lambkin-demo\/demo-app\/1 {2}\(HTTP 200\)/,
    );
    expect(output).toMatch(/Both builds passed/);
  }, 120_000);

  it('prints the command that reopens its kept data, and the pages link right on the new port', async () => {
    expect(output).toContain(`The stack's data is kept in ${dataDir}. To look at these builds again:`);
    const command = /^ {2}LAMBKIN_WEBHOOK_SECRET=(\S+) npm run lambkin -- dev --data-dir (\S+)$/m.exec(
      output,
    );
    expect(command).not.toBeNull();
    const [, secret = '', keptDir = ''] = command ?? [];
    expect(keptDir).toBe(dataDir);
    expect(output).toContain('then open http://127.0.0.1:3000/builds/lambkin-demo/demo-app');
    const demoPage = /log page {2}(\S+\/1) /.exec(output)?.[1] ?? '';

    // The printed command (on a free port instead of 3000, which may be taken here).
    dev = await startDevProcess({
      dataDir: keptDir,
      githubApi: 'http://127.0.0.1:9',
      env: { LAMBKIN_WEBHOOK_SECRET: secret },
    });
    const base = dev.stack.publicUrl;
    expect(new URL(base).port).not.toBe(new URL(demoPage).port);

    const pageUrl = `${base}/builds/lambkin-demo/demo-app/1`;
    const page = await fetch(pageUrl);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('<span class="pill state-success">passed</span>');
    expect(html).not.toContain(new URL(demoPage).host);

    // Every link inside Lambkin, followed as a browser resolves it, reaches its target here.
    const rawHref = /<a href="([^"]+)">Raw log<\/a>/.exec(html)?.[1] ?? '';
    expect(new URL(rawHref, pageUrl).href).toBe(`${pageUrl}/log.txt`);
    // As in the cloud, the raw log's link redirects to a short-lived URL of the bucket.
    const raw = await fetch(new URL(rawHref, pageUrl));
    expect(raw.redirected).toBe(true);
    expect(await raw.text()).toContain('▶ step install');
    const listHref = /<a href="([^"]+)">All builds of lambkin-demo\/demo-app<\/a>/.exec(html)?.[1] ?? '';
    const listUrl = new URL(listHref, pageUrl);
    expect(listUrl.href).toBe(`${base}/builds/lambkin-demo/demo-app`);
    const list = await (await fetch(listUrl)).text();
    const secondHref = /<a href="([^"]+)">#2<\/a>/.exec(list)?.[1] ?? '';
    const second = await fetch(new URL(secondHref, listUrl));
    expect(second.url).toBe(`${base}/builds/lambkin-demo/demo-app/2`);
    expect(await second.text()).toContain('<span class="number">#2</span>');

    // With a trailing slash the relative links would miss: the viewer sends it to the link without.
    for (const [slashed, canonical] of [
      [`${pageUrl}/`, pageUrl],
      [`${listUrl.href}/`, listUrl.href],
    ]) {
      const answer = await fetch(slashed!);
      expect([answer.status, answer.url]).toEqual([200, canonical]);
    }
  }, 60_000);

  it('on Ctrl-C cancels its builds and ends them before it stops the stack', async () => {
    const kept = mkdtempSync(join(tmpdir(), 'lambkin-demo-interrupted-'));
    try {
      const controller = new AbortController();
      const lines: string[] = [];
      const demo = runDemo({
        write: (line) => {
          lines.push(line);
          if (line.includes('Build #1 running')) controller.abort(new Error('interrupted (Ctrl-C)'));
        },
        dataDir: kept,
        signal: controller.signal,
      });
      await expect(demo).rejects.toThrow('interrupted (Ctrl-C)');
      const output = lines.join('\n');
      expect(output).toContain('interrupted (Ctrl-C): cancelling the builds');
      expect(output).not.toContain('Both builds passed');
      // The controller found build #1 cancelled while its runner ran, and ended it so: the demo
      // waited for that before stopping the stack (its service log says so).
      const log = readFileSync(join(kept, 'lambkin.log'), 'utf8');
      expect(log).toMatch(/ended elsewhere while it ran[^\n]*demo-app#1[^\n]*"cancelled"/);
      expect(existsSync(join(kept, 'stack.json'))).toBe(false);
    } finally {
      rmSync(kept, { recursive: true, force: true });
    }
  }, 120_000);

  it('says how to keep the data when it was not kept', () => {
    expect(lookAgainHint('/tmp/lambkin-demo-x', false, REPO)).toEqual([
      'The stack and its builds are gone now. To look at them again afterwards, keep the data:',
      '  npm start -- --keep-data .lambkin',
      'then reopen it with `LAMBKIN_WEBHOOK_SECRET=lambkin-demo-secret npm run lambkin -- dev --data-dir .lambkin` and open http://127.0.0.1:3000/builds/lambkin-demo/demo-app',
    ]);
    expect(lookAgainHint("/tmp/my demo's", true, REPO)[1]).toBe(
      `  LAMBKIN_WEBHOOK_SECRET=lambkin-demo-secret npm run lambkin -- dev --data-dir '/tmp/my demo'\\''s'`,
    );
  });
});
