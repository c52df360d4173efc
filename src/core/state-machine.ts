/**
 * The build state machine. The only place that knows which state changes are legal; stores
 * enforce it with conditional writes.
 *
 *   queued → running → success | failure | error | timed_out | cancelled
 *   queued → error | cancelled | timed_out  (invoke failed, superseded, never claimed)
 */
export const BUILD_STATES = [
  'queued',
  'running',
  'success',
  'failure',
  'error',
  'timed_out',
  'cancelled',
] as const;
export type BuildState = (typeof BUILD_STATES)[number];

export const TERMINAL_STATES = ['success', 'failure', 'error', 'timed_out', 'cancelled'] as const;
export type TerminalState = (typeof TERMINAL_STATES)[number];

const ALLOWED: Record<BuildState, readonly BuildState[]> = {
  queued: ['running', 'error', 'cancelled', 'timed_out'],
  running: ['success', 'failure', 'error', 'timed_out', 'cancelled'],
  success: [],
  failure: [],
  error: [],
  timed_out: [],
  cancelled: [],
};

export function isTerminal(state: BuildState): state is TerminalState {
  return (TERMINAL_STATES as readonly string[]).includes(state);
}

export function canTransition(from: BuildState, to: BuildState): boolean {
  return ALLOWED[from].includes(to);
}

/** GitHub's commit status has four states; `timed_out` and `cancelled` are reported as `error`. */
export type CommitState = 'pending' | 'success' | 'failure' | 'error';

export function commitStateFor(state: BuildState): CommitState {
  switch (state) {
    case 'queued':
    case 'running':
      return 'pending';
    case 'success':
      return 'success';
    case 'failure':
      return 'failure';
    case 'error':
    case 'timed_out':
    case 'cancelled':
      return 'error';
  }
}

/** The states in words, for pages and messages. */
export const STATE_LABELS: Record<BuildState, string> = {
  queued: 'queued',
  running: 'running',
  success: 'passed',
  failure: 'failed',
  error: 'error',
  timed_out: 'timed out',
  cancelled: 'cancelled',
};
