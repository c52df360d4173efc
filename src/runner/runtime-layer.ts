/**
 * The runtime layer (runtime-layer/): tools the Lambda Node.js runtime lacks, unpacked under /opt.
 * Lambda puts /opt/bin on PATH and /opt/lib on LD_LIBRARY_PATH for the function itself, but build
 * steps and git get an environment built from scratch, so the layer's variables are passed on
 * explicitly. Nothing here when no layer is attached (local runs, tarball builds).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const LAYER_ROOT = '/opt';

export function layerEnvironment(root: string = LAYER_ROOT): Record<string, string> {
  const gitCore = join(root, 'libexec', 'git-core');
  if (!existsSync(gitCore)) return {};
  const libraries = [join(root, 'lib'), process.env.LD_LIBRARY_PATH].filter(Boolean).join(':');
  return {
    GIT_EXEC_PATH: gitCore,
    GIT_TEMPLATE_DIR: join(root, 'share', 'git-core', 'templates'),
    LD_LIBRARY_PATH: libraries,
  };
}
