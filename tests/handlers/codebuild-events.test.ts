/**
 * The events handler's reading of CodeBuild's state-change event, as AWS documents it (dates in
 * its `MMM d, yyyy h:mm:ss a` form); the handler end to end is tests/controller/codebuild.test.ts.
 */
import { execFileSync } from 'node:child_process';
import { completionOfEvent } from '../../src/handlers/codebuild-events.js';
import { formatCodeBuildEventTime, parseCodeBuildEventTime } from '../../src/core/codebuild-time.js';

const event = {
  version: '0',
  id: 'bfdc1220-60ff-44ea-9d6c-7c5d00c8ce5d',
  'detail-type': 'CodeBuild Build State Change',
  source: 'aws.codebuild',
  account: '123456789012',
  time: '2026-12-06T23:50:00Z',
  region: 'us-east-1',
  resources: ['arn:aws:codebuild:us-east-1:123456789012:build/lambkin-builds:7a1e'],
  detail: {
    'build-status': 'SUCCEEDED',
    'project-name': 'lambkin-builds',
    'build-id': 'arn:aws:codebuild:us-east-1:123456789012:build/lambkin-builds:7a1e',
    'additional-information': {
      'build-complete': true,
      'build-start-time': 'Dec 6, 2026 11:45:09 PM',
      'timeout-in-minutes': 60,
      environment: {
        image: 'aws/codebuild/standard:7.0',
        'privileged-mode': false,
        'compute-type': 'BUILD_GENERAL1_SMALL',
        type: 'LINUX_CONTAINER',
        'environment-variables': [
          {
            name: 'LAMBKIN_RUNNER_URL',
            type: 'PLAINTEXT',
            value: 'https://bucket.s3.amazonaws.com/runner/x.mjs',
          },
          { name: 'LAMBKIN_BUILD', type: 'PLAINTEXT', value: 'octo/app#7/node-22' },
        ],
      },
      phases: [
        {
          'phase-context': [],
          'start-time': 'Dec 6, 2026 11:45:09 PM',
          'end-time': 'Dec 6, 2026 11:45:10 PM',
          'duration-in-seconds': 1,
          'phase-type': 'SUBMITTED',
          'phase-status': 'SUCCEEDED',
        },
        {
          'phase-context': [],
          'start-time': 'Dec 6, 2026 11:45:10 PM',
          'end-time': 'Dec 6, 2026 11:49:21 PM',
          'duration-in-seconds': 251,
          'phase-type': 'BUILD',
          'phase-status': 'SUCCEEDED',
        },
        { 'start-time': 'Dec 6, 2026 11:49:21 PM', 'phase-type': 'COMPLETED' },
      ],
      logs: {},
    },
    'current-phase': 'COMPLETED',
    'current-phase-context': '[]',
    version: '1',
  },
};

describe('completionOfEvent', () => {
  it("reads the status, the build's ARN, completeness, times and LAMBKIN_BUILD", () => {
    const completion = completionOfEvent(event);
    expect(completion).toMatchObject({
      buildId: 'arn:aws:codebuild:us-east-1:123456789012:build/lambkin-builds:7a1e',
      status: 'SUCCEEDED',
      complete: true,
      build: 'octo/app#7/node-22',
    });
    const minutes = ((completion?.endTime ?? 0) - (completion?.startTime ?? 0)) / 60_000;
    expect(minutes).toBeCloseTo(4.2, 1);
  });

  it('is nothing for an event that is not a state change, or of an unknown status', () => {
    expect(completionOfEvent(undefined)).toBeUndefined();
    expect(completionOfEvent({ detail: {} })).toBeUndefined();
    expect(completionOfEvent({ detail: { ...event.detail, 'build-status': 'EXPLODED' } })).toBeUndefined();
  });

  it('an in-progress event is not complete, and an event without LAMBKIN_BUILD names nothing', () => {
    const info = event.detail['additional-information'];
    const running = completionOfEvent({
      detail: {
        ...event.detail,
        'build-status': 'IN_PROGRESS',
        'additional-information': { ...info, 'build-complete': false, environment: {} },
      },
    });
    expect(running).toMatchObject({ status: 'IN_PROGRESS', complete: false });
    expect(running?.build).toBeUndefined();
  });

  it('reads CodeBuild’s dates as UTC whatever the machine’s zone, ISO dates too, and nothing else', () => {
    expect(parseCodeBuildEventTime('Dec 6, 2026 11:45:09 PM')).toBe(Date.UTC(2026, 11, 6, 23, 45, 9));
    expect(parseCodeBuildEventTime('Sep 1, 2017 12:02:03 AM')).toBe(Date.UTC(2017, 8, 1, 0, 2, 3));
    expect(parseCodeBuildEventTime('Sep 1, 2017 12:02:03 PM')).toBe(Date.UTC(2017, 8, 1, 12, 2, 3));
    expect(parseCodeBuildEventTime('2026-12-06T23:50:00Z')).toBe(Date.UTC(2026, 11, 6, 23, 50, 0));
    expect(parseCodeBuildEventTime('yesterday')).toBeUndefined();
    for (const at of [
      Date.UTC(2026, 0, 1, 0, 0, 0),
      Date.UTC(2026, 6, 15, 12, 30, 5),
      Date.UTC(2027, 11, 31, 23, 59, 59),
    ]) {
      expect(parseCodeBuildEventTime(formatCodeBuildEventTime(at))).toBe(at);
    }
    // In another zone: Date.parse would shift the first by that zone's offset.
    const elsewhere = execFileSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '-e',
        "import('./src/core/codebuild-time.ts').then((m) => process.stdout.write(String(m.parseCodeBuildEventTime('Dec 6, 2026 11:45:09 PM'))))",
      ],
      { env: { ...process.env, TZ: 'America/Los_Angeles' }, encoding: 'utf8' },
    );
    expect(Number(elsewhere)).toBe(Date.UTC(2026, 11, 6, 23, 45, 9));
  });
});
