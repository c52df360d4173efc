/**
 * The config validators are Ajv's standalone code, generated from the schemas
 * (scripts/generate-validators.ts): the files in the tree must be what the schemas give today.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { generatedFiles, staleFiles, VALIDATORS_FILE } from '../../scripts/generate-validators.js';
import { validateRepoConfig } from '../../src/core/repo-config.js';

describe('the generated config validators', () => {
  it('are up to date with the schemas (run `npm run generate` when this fails)', async () => {
    expect(await staleFiles()).toEqual([]);
  });

  it('are found stale when they differ from what the schemas give', async () => {
    const root = await mkdtemp(join(tmpdir(), 'lambkin-validators-'));
    try {
      for (const [path, content] of Object.entries(generatedFiles())) {
        await mkdir(join(root, dirname(path)), { recursive: true });
        await writeFile(
          join(root, path),
          path === VALIDATORS_FILE ? content.replace('maxItems', 'x') : content,
        );
      }
      expect(await staleFiles(root)).toEqual([VALIDATORS_FILE]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('phrase errors from the schema’s own annotations (they carry their parent schema)', () => {
    expect(() => validateRepoConfig({ timeout: 'ten' }, '.lambkin.json')).toThrow(
      /"timeout" must be a whole number of seconds from 1 to 28800 \(got "ten"\)/,
    );
  });
});
