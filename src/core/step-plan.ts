/**
 * The step plan: which commands a build runs, in which order, under which names. Install (unless
 * a restored dependency cache made it unnecessary), test, and deploy only where the controller
 * decided the build may deploy (src/core/deploy-policy.ts): the checkout's config supplies the
 * commands, never the decision. Pure: the runner executes the plan (src/runner/runner.ts).
 */
import type { ResolvedBuildConfig } from './repo-config.js';
import type { DeployDecision } from './protocol.js';

export type StepPhase = 'install' | 'test' | 'deploy';

export interface PlannedStep {
  phase: StepPhase;
  /** `install`, or `install 2` when the phase has several commands. */
  name: string;
  command: string;
}

export interface StepPlan {
  steps: PlannedStep[];
  /** Why the configured deploy commands are not in the plan (a line for the log); absent otherwise. */
  deploySkipped?: string;
}

export function planSteps(
  config: Pick<ResolvedBuildConfig, 'install' | 'test' | 'deploy'>,
  /** The controller's decision (RunnerInput.deploy); absent: the build does not deploy. */
  deploy: Pick<DeployDecision, 'allowed' | 'reason'> | undefined,
  options: { skipInstall: boolean },
): StepPlan {
  const phases: [StepPhase, string[]][] = [
    ['install', options.skipInstall ? [] : config.install],
    ['test', config.test],
  ];
  const deploys = deploy?.allowed === true && config.deploy.length > 0;
  if (deploys) phases.push(['deploy', config.deploy]);
  const steps = phases.flatMap(([phase, commands]) =>
    commands.map((command, index) => ({
      phase,
      name: commands.length > 1 ? `${phase} ${index + 1}` : phase,
      command,
    })),
  );
  return {
    steps,
    ...(!deploys && config.deploy.length > 0
      ? { deploySkipped: deploy?.reason ?? 'the controller did not allow this build to deploy' }
      : {}),
  };
}
