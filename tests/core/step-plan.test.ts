/** The step plan (src/core/step-plan.ts): which commands run, in order, under which names. */
import type { RunnerInput } from '../../src/core/protocol.js';
import { planSteps } from '../../src/core/step-plan.js';

const push = { branch: 'main', pr: undefined, tag: undefined } as unknown as RunnerInput['build'];
const config = (overrides: Partial<Parameters<typeof planSteps>[0]> = {}) => ({
  install: ['npm ci'],
  test: ['npm test'],
  deploy: [] as string[],
  deployAllowed: false,
  ...overrides,
});

describe('planSteps', () => {
  it('runs install then test, each named after its phase', () => {
    expect(planSteps(config(), push, { skipInstall: false })).toEqual({
      steps: [
        { phase: 'install', name: 'install', command: 'npm ci' },
        { phase: 'test', name: 'test', command: 'npm test' },
      ],
    });
  });

  it('numbers the commands of a phase that has several', () => {
    const plan = planSteps(config({ test: ['npm run lint', 'npm test'] }), push, { skipInstall: false });
    expect(plan.steps.map((step) => step.name)).toEqual(['install', 'test 1', 'test 2']);
  });

  it('leaves install out when the restored cache made it unnecessary', () => {
    const plan = planSteps(config(), push, { skipInstall: true });
    expect(plan.steps.map((step) => step.phase)).toEqual(['test']);
  });

  it('deploys last, only where the build may', () => {
    const allowed = planSteps(config({ deploy: ['./ship'], deployAllowed: true }), push, {
      skipInstall: false,
    });
    expect(allowed.steps.at(-1)).toEqual({ phase: 'deploy', name: 'deploy', command: './ship' });
    expect(allowed.deploySkipped).toBeUndefined();

    const branch = planSteps(
      config({ deploy: ['./ship'] }),
      { ...push, branch: 'feature' },
      { skipInstall: false },
    );
    expect(branch.steps.map((step) => step.phase)).toEqual(['install', 'test']);
    expect(branch.deploySkipped).toBe('feature is not a deploy branch');

    const pr = planSteps(config({ deploy: ['./ship'] }), { ...push, pr: 3 }, { skipInstall: false });
    expect(pr.deploySkipped).toBe('pull requests never deploy');
    const tag = planSteps(
      config({ deploy: ['./ship'] }),
      { ...push, branch: undefined, tag: 'v1' } as RunnerInput['build'],
      {
        skipInstall: false,
      },
    );
    expect(tag.deploySkipped).toBe('tag v1 is not a deploy tag');
  });

  it('says nothing about deploy when none is configured', () => {
    expect(planSteps(config(), { ...push, pr: 3 }, { skipInstall: false }).deploySkipped).toBeUndefined();
  });
});
