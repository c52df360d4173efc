/**
 * The hostile build of tests/security/credentials.test.ts: a real npm project whose `test` script
 * is tests/security/hostile-build.sh, fake secrets shaped like the real ones, and the checks that
 * none of them appears in a text in any form a build could print it in.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { GitFiles } from '../support/github-server.js';
import { npmProject } from '../support/npm-projects.js';

const SCRIPT = readFileSync(fileURLToPath(new URL('./hostile-build.sh', import.meta.url)), 'utf8');

/** What each probe prints when it has run (computed by the script, never in its text). */
export const PROBES = [
  'env',
  'ancestors-environ',
  'all-environ',
  'ancestors-memory',
  'files',
  'metadata',
  'ps',
];

/** A project whose `npm test` runs the hostile script (and passes, so every probe runs). */
export function hostileProject(extra: GitFiles = {}): GitFiles {
  return npmProject({ test: 'bash hostile-probe.sh' }, { 'hostile-probe.sh': SCRIPT, ...extra });
}

function random(alphabet: string, length: number): string {
  return [...randomBytes(length)].map((byte) => alphabet[byte % alphabet.length]).join('');
}
const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** Fresh values shaped like the real ones, so the script's patterns would find them. */
export function fakeSecrets() {
  return {
    GITHUB_TOKEN: `ghp_${random(ALNUM, 36)}`,
    LAMBKIN_WEBHOOK_SECRET: `whsec-${random(ALNUM, 32)}`,
    AWS_ACCESS_KEY_ID: `ASIA${random(UPPER, 16)}`,
    AWS_SECRET_ACCESS_KEY: random(`${ALNUM}+/`, 40),
    AWS_SESSION_TOKEN: `IQoJb3JpZ2luX2VjE${random(ALNUM, 120)}`,
  };
}

/** The secret's text, its hex, and the base64 characters that depend only on it, at any alignment. */
export function secretForms(secret: string): { form: string; text: string }[] {
  const bytes = Buffer.from(secret);
  const forms = [
    { form: 'raw', text: secret },
    { form: 'hex', text: bytes.toString('hex') },
    { form: 'HEX', text: bytes.toString('hex').toUpperCase() },
    { form: 'url', text: encodeURIComponent(secret) },
  ];
  for (const offset of [0, 1, 2]) {
    const encoded = Buffer.concat([Buffer.alloc(offset), bytes]).toString('base64');
    const start = [0, 2, 3][offset] ?? 0;
    forms.push({ form: `base64+${offset}`, text: encoded.slice(start, encoded.length - 4) });
  }
  return forms;
}

/** Every `name: form` of the secrets found in the text. */
export function leaksIn(text: string, secrets: Record<string, string>): string[] {
  const found: string[] = [];
  for (const [name, value] of Object.entries(secrets)) {
    for (const { form, text: needle } of secretForms(value)) {
      if (text.includes(needle)) found.push(`${name} (${form})`);
    }
  }
  return found;
}

/** The probes whose end marker is missing from the text. */
export function probesMissing(text: string): string[] {
  return PROBES.filter((probe) => !text.includes(`##PROBE-${probe}-42`));
}
