import {
  CHECK_SUMMARY_MAX,
  CHECK_TITLE_MAX,
  checkConclusion,
  checkExternalId,
  checkOutput,
} from '../../src/core/check-run.js';
import type { CheckAnnotation } from '../../src/core/annotations/index.js';

const failing: CheckAnnotation = {
  path: 'test/math.test.js',
  start_line: 12,
  end_line: 12,
  annotation_level: 'failure',
  message: 'expected 3 to equal 4',
};

describe('check run content', () => {
  it('concludes as GitHub names it; running builds have no conclusion', () => {
    expect(
      (['queued', 'running', 'success', 'failure', 'error', 'timed_out', 'cancelled'] as const).map(
        checkConclusion,
      ),
    ).toEqual([undefined, undefined, 'success', 'failure', 'failure', 'timed_out', 'cancelled']);
    expect(checkExternalId({ repo: 'octo/app', number: 42 })).toBe('octo/app#42');
  });

  it('summarises the steps, shows the end of the log and carries the annotations', () => {
    const output = checkOutput({
      build: { number: 7, state: 'failure' },
      description: 'test failed (exit 1)',
      steps: [
        { name: 'install', exitCode: 0, durationMs: 1200 },
        { name: 'test | lint', exitCode: 1, durationMs: 850 },
      ],
      log:
        'noise\n'.repeat(20_000) +
        '\u001b[31m  1) adds\u001b[0m\n```\nAssertionError: expected 3 to equal 4\n',
      annotations: [failing],
      omittedAnnotations: 3,
    });
    expect(output.title).toBe('Build #7: test failed (exit 1)');
    expect(output.summary).toContain('| install | passed | 1.2 s |');
    expect(output.summary).toContain('| test \\| lint | failed | 850 ms |');
    expect(output.summary).toMatch(/3 more annotations were left out/);
    expect(output.text).toMatch(/^```text\n/);
    expect(output.text).toMatch(/ {2}1\) adds\n`\u200b``\nAssertionError: expected 3 to equal 4\n\n```$/);
    expect(output.text).not.toContain('\u001b');
    expect(output.text!.length).toBeLessThan(60_000);
    expect(output.annotations).toEqual([failing]);
  });

  it('keeps within GitHub’s limits', () => {
    const output = checkOutput({
      build: { number: 1, state: 'error' },
      description: 'x'.repeat(1000),
      steps: Array.from({ length: 5000 }, (_, index) => ({
        name: `step ${index} ${'y'.repeat(20)}`,
        exitCode: 0,
        durationMs: 1,
      })),
    });
    expect(output.title.length).toBe(CHECK_TITLE_MAX);
    expect(output.summary.length).toBeLessThanOrEqual(CHECK_SUMMARY_MAX);
    expect(output).not.toHaveProperty('text');
    expect(
      checkOutput({ build: { number: 2, state: 'error' }, description: 'no steps', steps: [] }).summary,
    ).toBe('No step ran.');
  });
});
