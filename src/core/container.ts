/**
 * The one signal the runner function and the controller share about the runner's Lambda
 * container (src/runner/container-hygiene.ts): when the runner cannot confirm its container clean
 * before a build (a process or file an earlier invocation left behind that it cannot remove), it
 * ends the container with this exit status instead of running the build. Lambda answers that
 * invocation with a `Runtime.ExitError` ("Runtime exited with error: exit status 75") and starts
 * a fresh container for the next one, so the controller retries such an answer once. Any other
 * exit (out of memory, a step that killed the runtime) is not retried: the build may have run.
 */
export const UNCLEAN_CONTAINER_EXIT_STATUS = 75; // EX_TEMPFAIL

/** Whether a runner function's error answer is the runner ending an unclean container unused. */
export function isUncleanContainerExit(errorType: string | undefined, errorMessage: string): boolean {
  return (
    errorType === 'Runtime.ExitError' &&
    new RegExp(`\\bexit status ${UNCLEAN_CONTAINER_EXIT_STATUS}\\b`).test(errorMessage)
  );
}
