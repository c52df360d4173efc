/**
 * cfn-lint (with the SAM translator) on template.yaml: no error, no warning and no informational
 * finding, with no check switched off anywhere. CI installs cfn-lint; elsewhere this skips visibly.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT, TEMPLATE_PATH, loadTemplate } from '../support/template.js';
import { requireTool } from '../support/tools.js';

const run = promisify(execFile);

/** What CI runs too (.ci/run): every finding, informational ones included, fails. */
const CFN_LINT_ARGUMENTS = ['--include-checks', 'I', '--', TEMPLATE_PATH];

describe('cfn-lint', () => {
  it('is switched off nowhere: no ignore_checks in the template, no .cfnlintrc', () => {
    const template = loadTemplate();
    expect(template.Metadata?.['cfn-lint']).toBeUndefined();
    for (const item of Object.values(template.Resources)) expect(item.Metadata?.['cfn-lint']).toBeUndefined();
    expect(readFileSync(TEMPLATE_PATH, 'utf8')).not.toMatch(/ignore_checks|ignore-checks/);
    for (const name of ['.cfnlintrc', '.cfnlintrc.yaml', '.cfnlintrc.yml', '.cfnlintrc.json']) {
      expect(existsSync(join(REPO_ROOT, name))).toBe(false);
    }
  });

  if (requireTool('cfn-lint', 'cfn-lint of template.yaml')) {
    it('finds nothing in template.yaml', async () => {
      const result = await run('cfn-lint', CFN_LINT_ARGUMENTS, { cwd: REPO_ROOT }).then(
        ({ stdout, stderr }) => ({ code: 0, output: `${stdout}${stderr}` }),
        (error: { code?: number; stdout?: string; stderr?: string }) => ({
          code: error.code ?? -1,
          output: `${error.stdout ?? ''}${error.stderr ?? ''}`,
        }),
      );
      expect(result).toEqual({ code: 0, output: '' });
    }, 60_000);
  }
});
