/** `lambkin run`'s library call as the tests make it: the streamed log collected, a memory logger. */
import { runLocalBuild, type LocalRunOptions } from '../../src/local/local-run.js';
import { createMemoryLogger } from '../../src/core/logger.js';

export async function localRun(
  path: string,
  options: Partial<Omit<LocalRunOptions, 'path' | 'write' | 'logger'>> = {},
): Promise<{ result: Awaited<ReturnType<typeof runLocalBuild>>; output: string }> {
  let output = '';
  const result = await runLocalBuild({
    path,
    write: (text) => (output += text),
    logger: createMemoryLogger(),
    ...options,
  });
  return { result, output };
}
