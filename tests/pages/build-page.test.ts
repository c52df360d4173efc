import { MASK, maskSecrets } from '../../src/core/log-mask.js';
import { formatBuildSummary, formatStepFooter, formatStepHeader } from '../../src/core/log-format.js';
import {
  logPageLinksFor,
  renderLogPage,
  type LogPageBuild,
  type LogPageInput,
} from '../../src/pages/build-page.js';

const ESC = '\u001b';
const BEL = '\u0007';
const QUEUED_AT = Date.UTC(2024, 4, 1, 10, 40, 0);

function finishedBuild(overrides: Partial<LogPageBuild> = {}): LogPageBuild {
  return {
    repo: 'octo/widgets',
    number: 42,
    state: 'failure',
    sha: 'abc1234def5678abc1234def5678abc1234def56',
    branch: 'main',
    author: 'mona',
    commitTitle: 'Make widgets faster',
    queuedAt: QUEUED_AT,
    startedAt: QUEUED_AT + 2000,
    endedAt: QUEUED_AT + 72_000,
    description: 'test failed (exit 1)',
    steps: [
      { name: 'install', exitCode: 0, durationMs: 8123 },
      { name: 'test', exitCode: 1, durationMs: 61_234 },
      { name: 'deploy', exitCode: null, durationMs: 0 },
    ],
    ...overrides,
  };
}

const finishedLog = [
  'Fetching source…\n',
  formatStepHeader({ name: 'install', command: 'npm ci' }),
  'added 312 packages\n',
  formatStepFooter({ name: 'install', exitCode: 0, durationMs: 8123 }),
  formatStepHeader({ name: 'test', command: 'npm test' }),
  `${ESC}[31mred failure${ESC}[0m\n`,
  formatStepFooter({ name: 'test', exitCode: 1, durationMs: 61_234 }),
  formatBuildSummary({ state: 'failure', durationMs: 70_000 }),
].join('');

function render(overrides: Partial<LogPageInput> = {}): string {
  return renderLogPage({
    build: finishedBuild(),
    log: finishedLog,
    running: false,
    links: {
      raw: 'log.txt',
      github: 'https://github.com/octo/widgets',
      commit: 'https://github.com/octo/widgets/commit/abc1234',
    },
    ...overrides,
  });
}

/** The text of the table row of the step with this name. */
function stepRow(html: string, name: string): string {
  const row = html.split('\n').find((line) => line.startsWith('<tr') && line.includes(`>${name}<`));
  if (!row) throw new Error(`no row for step ${name}`);
  return row;
}

describe('renderLogPage', () => {
  it('is a complete, self-contained HTML document', () => {
    const html = render();
    expect(html.startsWith('<!DOCTYPE html>\n<html lang="en">')).toBe(true);
    expect(html.trimEnd().endsWith('</html>')).toBe(true);
    expect(html).toContain('<meta charset="utf-8">');
    expect(html).toContain(`content="default-src 'none'; style-src 'unsafe-inline'; img-src data:"`);
    expect(html).not.toMatch(/<script|<link|<img|<iframe|\bsrc=|url\(/i);
    expect(html.match(/<span\b/g)?.length).toBe(html.match(/<\/span>/g)?.length);
    expect(html.match(/<pre\b/g)?.length).toBe(html.match(/<\/pre>/g)?.length);
  });

  it('shows the repository, number, result, commit, branch, author and duration', () => {
    const html = render();
    expect(html).toContain('<title>octo/widgets #42 · failed — Lambkin</title>');
    expect(html).toContain('<a href="https://github.com/octo/widgets">octo/widgets</a>');
    expect(html).toContain('<span class="number">#42</span>');
    expect(html).toContain('<span class="pill state-failure">failed</span>');
    expect(html).toContain(
      '<a href="https://github.com/octo/widgets/commit/abc1234"><code>abc1234</code></a>',
    );
    expect(html).toContain('<dt>Branch</dt><dd>main</dd>');
    expect(html).toContain('<dt>Author</dt><dd>mona</dd>');
    expect(html).toContain(
      '<dt>Total time</dt><dd>1 min 10 s <span class="muted">(fetch, steps, log upload)</span></dd>',
    );
    expect(html).toContain('<time datetime="2024-05-01T10:40:02.000Z">2024-05-01 10:40:02 UTC</time>');
    expect(html).toContain('<p class="commit-title">Make widgets faster</p>');
    expect(html).toContain('<p class="description">test failed (exit 1)</p>');
    expect(html).toContain('<a href="log.txt">Raw log</a>');
  });

  it('says what each duration measures: the total beside the steps added up', () => {
    const html = render();
    // "passed in …" / "failed in …" descriptions are the steps' sum: the page names that sum.
    expect(html).toContain(
      '<tfoot><tr><td></td><td class="name" colspan="3">Steps in total</td><td class="duration">1 min 09 s</td></tr></tfoot>',
    );
    expect(html).toContain('<dt>Total time</dt><dd>1 min 10 s');
    expect(html).not.toContain('<dt>Duration</dt>');
  });

  it.each([
    ['success', 'passed'],
    ['error', 'error'],
    ['timed_out', 'timed out'],
    ['cancelled', 'cancelled'],
    ['queued', 'queued'],
  ] as const)('colours the %s state pill', (state, label) => {
    expect(render({ build: finishedBuild({ state }) })).toContain(
      `<span class="pill state-${state}">${label}</span>`,
    );
  });

  it('lists the steps with exit codes and durations, linked to their part of the log', () => {
    const html = render();
    expect(stepRow(html, 'install')).toContain('<a href="#step-1">install</a>');
    expect(stepRow(html, 'install')).toMatch(/passed.*exit 0.*8\.1 s/);
    expect(stepRow(html, 'test')).toContain('<a href="#step-2">test</a>');
    expect(stepRow(html, 'test')).toMatch(/failed.*exit 1.*1 min 01 s/);
    // Never started: no log section, no exit code.
    expect(stepRow(html, 'deploy')).toContain('<td class="name">deploy</td>');
    expect(stepRow(html, 'deploy')).toContain('not run');
    expect(stepRow(html, 'deploy')).toContain('<td class="exit"></td>');
    const stepOne = html.indexOf('<pre id="step-1">');
    const stepTwo = html.indexOf('<pre id="step-2">');
    const summary = html.indexOf('<pre id="summary">');
    expect(stepOne).toBeGreaterThan(html.indexOf('Fetching source…'));
    expect(html.indexOf('added 312 packages')).toBeGreaterThan(stepOne);
    expect(html.indexOf('red failure')).toBeGreaterThan(stepTwo);
    expect(summary).toBeGreaterThan(html.indexOf('red failure'));
  });

  it('takes a timed-out outcome from the log, which the build record cannot express', () => {
    const log =
      formatStepHeader({ name: 'test', command: 'npm test' }) +
      formatStepFooter({ name: 'test', exitCode: null, durationMs: 600_000, timedOut: true });
    const html = render({
      log,
      build: finishedBuild({
        state: 'timed_out',
        steps: [{ name: 'test', exitCode: null, durationMs: 600_000 }],
      }),
    });
    expect(stepRow(html, 'test')).toMatch(/timed out.*10 min 00 s/);
  });

  it('renders ANSI colours as spans', () => {
    const html = render();
    expect(html).toContain('<span class="ansi-red-fg">red failure</span>');
    expect(html).toContain('.ansi-red-fg{color:');
    expect(html).not.toContain(ESC);
  });

  describe('untrusted output', () => {
    const hostile = [
      '<script>alert(1)</script>',
      '"><img src=x onerror=alert(1)>',
      "'><svg onload=alert(1)>",
      '</pre></div><a href="javascript:alert(1)">x</a>',
      `${ESC}[31m<b onmouseover=alert(1)>bold</b>${ESC}[0m`,
      '&lt;already escaped&gt;',
    ].join('\n');

    it('escapes markup in the log', () => {
      const html = render({ log: hostile });
      expect(html).not.toMatch(/<script|<img|<svg|<b |<a href="javascript/i);
      expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
      expect(html).toContain('&quot;&gt;&lt;img src=x onerror=alert(1)&gt;');
      expect(html).toContain('&#x27;&gt;&lt;svg onload=alert(1)&gt;');
      expect(html).toContain('&lt;/pre&gt;&lt;/div&gt;');
      expect(html).toContain('<span class="ansi-red-fg">&lt;b onmouseover=alert(1)&gt;bold&lt;/b&gt;</span>');
      expect(html).toContain('&amp;lt;already escaped&amp;gt;');
    });

    it('escapes markup in build fields and step names', () => {
      const evil = '"><script>alert(1)</script>';
      const html = render({
        build: finishedBuild({
          branch: `x${evil}`,
          author: evil,
          commitTitle: evil,
          description: evil,
          steps: [{ name: `s${evil}`, exitCode: 0, durationMs: 1 }],
        }),
        log:
          formatStepHeader({ name: `s${evil}`, command: evil }) +
          formatStepHeader({ name: `t${evil}`, command: '' }),
        running: true,
      });
      expect(html).not.toMatch(/<script/i);
      expect(html).toContain('&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;');
      expect(stepRow(html, `s&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;`)).toContain('href="#step-1"');
    });

    it('does not turn terminal hyperlinks into links, but keeps their text', () => {
      const log =
        `${ESC}]8;;javascript:alert(1)${BEL}click me${ESC}]8;;${BEL}\n` +
        `${ESC}]8;;https://evil.example/${ESC}\\phish${ESC}]8;;${ESC}\\\n` +
        `${ESC}]0;window title${BEL}after title\n`;
      const html = render({ log });
      expect(html).not.toContain('javascript:');
      expect(html).not.toContain('evil.example');
      expect(html).not.toContain('window title');
      expect(html).toContain('click me\nphish\nafter title\n');
    });

    it('does not let an unterminated escape hide the rest of the log', () => {
      const html = render({ log: `before ${ESC}]8;;https://x.example\nstill shown\n` });
      expect(html).toContain('still shown');
    });

    it('drops control characters and shows the final state of redrawn lines', () => {
      const html = render({ log: 'a\u0000b\u0008c\nprogress 10%\rprogress 50%\rprogress 100%\r\ndone\n' });
      expect(html).toContain('abc\nprogress 100%\ndone\n');
      for (const control of ['\u0000', '\u0008', '\r']) expect(html).not.toContain(control);
    });

    it('never shows a secret cut apart by escapes once the log was masked', () => {
      const secret = 's3cret-Value_42';
      /** The page's text as a reader sees it: tags (colour spans) removed. */
      const shownText = (html: string) => html.replace(/<[^>]*>/g, '');
      for (const insertion of [
        `${ESC}[0m`,
        `${ESC}[31m`,
        `${ESC}(B`,
        `${ESC}]0;t${BEL}`,
        '\u0000',
        '\u0008',
      ]) {
        const log = `$ echo\n${secret.slice(0, 3)}${insertion}${secret.slice(3)}\n`;
        // Unmasked, the page would show it whole: the attack is real.
        expect([insertion, shownText(render({ log }))]).toEqual([insertion, expect.stringContaining(secret)]);
        const page = shownText(render({ log: maskSecrets(log, [secret]) }));
        expect([insertion, page]).toEqual([insertion, expect.stringContaining(`$ echo\n${MASK}\n`)]);
        expect(page).not.toContain(secret);
      }
    });

    it('keeps a blank first line of the log', () => {
      expect(render({ log: '\nsecond line\n' })).toContain('<pre>\n\nsecond line\n</pre>');
    });

    it('links only to web or relative addresses', () => {
      const html = render({
        links: { raw: 'javascript:alert(1)', github: 'java\tscript:alert(2)', commit: 'data:text/html,x' },
        build: finishedBuild({ pr: 7, htmlUrl: ' javascript:alert(3)' }),
      });
      expect(html).not.toMatch(/javascript|data:text/);
      expect(html).toContain('<a href="#">Raw log</a>');
      expect(html).toContain('<code>abc1234</code>');
    });
  });

  describe('while the build runs', () => {
    const runningLog =
      formatStepHeader({ name: 'install', command: 'npm ci' }) +
      formatStepFooter({ name: 'install', exitCode: 0, durationMs: 850 }) +
      formatStepHeader({ name: 'test', command: 'npm test' }) +
      'working…\n';
    const runningBuild = finishedBuild({
      state: 'running',
      endedAt: undefined,
      steps: undefined,
      description: undefined,
    });

    it('refreshes itself and says so', () => {
      const html = render({ build: runningBuild, log: runningLog, running: true, now: QUEUED_AT + 32_000 });
      expect(html).toContain('<meta http-equiv="refresh" content="5">');
      expect(html).toContain('this page refreshes every 5 s');
      expect(html).toContain('<span class="pill state-running">running</span>');
      expect(html).toContain('<dt>Total time</dt><dd>30.0 s so far <span class="muted">');
      expect(html).not.toContain('Steps in total');
    });

    it('shows the steps so far from the log, the current one as running', () => {
      const html = render({ build: runningBuild, log: runningLog, running: true });
      expect(stepRow(html, 'install')).toMatch(/passed.*exit 0.*850 ms/);
      expect(stepRow(html, 'test')).toContain('<a href="#step-2">test</a>');
      expect(stepRow(html, 'test')).toContain('running');
      expect(stepRow(html, 'test')).toContain('<td class="exit"></td>');
    });

    it('uses the refresh interval given', () => {
      const html = render({ build: runningBuild, log: '', running: true, refreshSeconds: 10 });
      expect(html).toContain('<meta http-equiv="refresh" content="10">');
      expect(html).toContain('No output yet.');
    });

    it('does not refresh once the build has finished', () => {
      const html = render();
      expect(html).not.toContain('http-equiv="refresh"');
      expect(html).not.toContain('refreshes');
      expect(render({ log: '' })).toContain('The log is empty.');
    });
  });

  it('shows a pull request with its branch, linked to GitHub', () => {
    const html = render({
      build: finishedBuild({
        pr: 12,
        branch: 'fix-typo',
        htmlUrl: 'https://github.com/octo/widgets/pull/12',
      }),
    });
    expect(html).toContain(
      '<dt>Pull request</dt><dd><a href="https://github.com/octo/widgets/pull/12">PR #12</a> <span class="muted">from</span> fix-typo</dd>',
    );
    expect(html).not.toContain('<dt>Branch</dt>');
  });

  it('shows a queued build without a start time or duration', () => {
    const html = render({
      build: finishedBuild({ state: 'queued', startedAt: undefined, endedAt: undefined, steps: undefined }),
      log: '',
      running: true,
    });
    expect(html).toContain('<dt>Queued</dt><dd><time datetime="2024-05-01T10:40:00.000Z">');
    expect(html).not.toContain('<dt>Total time</dt>');
    expect(html).not.toContain('<nav class="steps">');
  });
});

describe('logPageLinksFor', () => {
  it('links inside Lambkin relatively, to GitHub absolutely', () => {
    const links = logPageLinksFor(
      'https://ci.example.test/builds/octo/widgets/42',
      'https://github.com/octo/widgets',
    );
    expect(links).toEqual({
      raw: '42/log.txt',
      self: '42',
      repoPage: '../widgets',
      github: 'https://github.com/octo/widgets',
    });
    const html = render({ links });
    expect(html).toContain('<a href="42/log.txt">Raw log</a>');
    expect(html).toContain('<p class="all-builds"><a href="../widgets">All builds of octo/widgets</a></p>');
    expect(html).not.toContain('ci.example.test');
    const page = 'http://127.0.0.1:4000/builds/octo/widgets/42';
    expect(new URL(links.raw, page).href).toBe(`${page}/log.txt`);
    expect(new URL(links.repoPage ?? '', page).href).toBe('http://127.0.0.1:4000/builds/octo/widgets');
  });

  it("keeps a private build's token and gives it no link to the repository's page", () => {
    const links = logPageLinksFor('https://ci.example.test/builds/octo/secret/7?token=t0k-en');
    expect(links).toEqual({ raw: '7/log.txt?token=t0k-en', self: '7?token=t0k-en' });
    const html = render({
      links,
      running: true,
      build: finishedBuild({ state: 'running', endedAt: undefined }),
    });
    expect(html).toContain('<meta http-equiv="refresh" content="5;url=7?token=t0k-en">');
    expect(html).not.toContain('All builds of');
  });
});
