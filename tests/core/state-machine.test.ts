import {
  BUILD_STATES,
  TERMINAL_STATES,
  canTransition,
  commitStateFor,
  isTerminal,
} from '../../src/core/state-machine.js';

describe('build state machine', () => {
  it('allows the documented path and its exits', () => {
    expect(canTransition('queued', 'running')).toBe(true);
    for (const end of TERMINAL_STATES) expect(canTransition('running', end)).toBe(true);
    expect(canTransition('queued', 'error')).toBe(true);
    expect(canTransition('queued', 'cancelled')).toBe(true);
  });

  it('refuses illegal transitions', () => {
    expect(canTransition('queued', 'success')).toBe(false);
    expect(canTransition('queued', 'failure')).toBe(false);
    expect(canTransition('running', 'queued')).toBe(false);
    expect(canTransition('running', 'running')).toBe(false);
  });

  it('never leaves a terminal state', () => {
    for (const end of TERMINAL_STATES) {
      expect(isTerminal(end)).toBe(true);
      for (const to of BUILD_STATES) expect(canTransition(end, to)).toBe(false);
    }
    expect(isTerminal('queued')).toBe(false);
    expect(isTerminal('running')).toBe(false);
  });

  it('maps states to the four GitHub commit states', () => {
    expect(BUILD_STATES.map(commitStateFor)).toEqual([
      'pending',
      'pending',
      'success',
      'failure',
      'error',
      'error',
      'error',
    ]);
  });
});
