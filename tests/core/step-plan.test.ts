/** The step plan (src/core/step-plan.ts): which commands run, in order, under which names. */
import { planSteps } from '../../src/core/step-plan.js';

const config = (overrides: Partial<Parameters<typeof planSteps>[0]> = {}) => ({
  install: ['npm ci'],
  test: ['npm test'],
  deploy: [] as string[],
  ...overrides,
});
const noDeploy = { allowed: false, reason: 'feature is not a deploy branch (deployBranches of main: main)' };

describe('planSteps', () => {
  it('runs install then test, each named after its phase', () => {
    expect(planSteps(config(), noDeploy, { skipInstall: false })).toEqual({
      steps: [
        { phase: 'install', name: 'install', command: 'npm ci' },
        { phase: 'test', name: 'test', command: 'npm test' },
      ],
    });
  });

  it('numbers the commands of a phase that has several', () => {
    const plan = planSteps(config({ test: ['npm run lint', 'npm test'] }), noDeploy, { skipInstall: false });
    expect(plan.steps.map((step) => step.name)).toEqual(['install', 'test 1', 'test 2']);
  });

  it('leaves install out when the restored cache made it unnecessary', () => {
    const plan = planSteps(config(), noDeploy, { skipInstall: true });
    expect(plan.steps.map((step) => step.phase)).toEqual(['test']);
  });

  it("deploys last, only where the controller's decision allows", () => {
    const allowed = planSteps(
      config({ deploy: ['./ship'] }),
      { allowed: true, reason: 'main' },
      {
        skipInstall: false,
      },
    );
    expect(allowed.steps.at(-1)).toEqual({ phase: 'deploy', name: 'deploy', command: './ship' });
    expect(allowed.deploySkipped).toBeUndefined();

    const refused = planSteps(config({ deploy: ['./ship'] }), noDeploy, { skipInstall: false });
    expect(refused.steps.map((step) => step.phase)).toEqual(['install', 'test']);
    expect(refused.deploySkipped).toBe(noDeploy.reason);

    const undecided = planSteps(config({ deploy: ['./ship'] }), undefined, { skipInstall: false });
    expect(undecided.steps.map((step) => step.phase)).toEqual(['install', 'test']);
    expect(undecided.deploySkipped).toBe('the controller did not allow this build to deploy');
  });

  it('says nothing about deploy when none is configured', () => {
    expect(planSteps(config(), noDeploy, { skipInstall: false }).deploySkipped).toBeUndefined();
    expect(planSteps(config(), { allowed: true, reason: 'main' }, { skipInstall: false }).steps).toHaveLength(
      2,
    );
  });
});
