/** `npm start` runs this demo: it must build the example app's push and pull request and exit 0. */
import { runDemo } from '../../src/local/demo.js';

describe('the npm start demo', () => {
  it('builds a push and a pull request of the example app on the embedded stack', async () => {
    const lines: string[] = [];
    const code = await runDemo({ write: (line) => lines.push(line) });
    const output = lines.join('\n');
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
});
