#!/usr/bin/env node
// The lambkin command. Installed from the packed package, it runs the built CLI (dist/cli, made by
// `npm run build`). In a checkout with its development dependencies it runs the TypeScript sources
// through tsx, so a change shows at once without a build.
import { existsSync } from 'node:fs';
import process from 'node:process';
import { URL } from 'node:url';

const sources = new URL('../src/cli/main.ts', import.meta.url);
const built = new URL('../dist/cli/lambkin.mjs', import.meta.url);

async function sourceLoader() {
  if (!existsSync(sources)) return undefined;
  try {
    return await import('tsx/esm/api');
  } catch {
    return undefined; // a checkout installed without development dependencies
  }
}

const tsx = await sourceLoader();
if (tsx) {
  tsx.register();
  await import(sources.href);
} else if (existsSync(built)) {
  await import(built.href);
} else {
  process.stderr.write(
    'lambkin: this checkout has neither its development dependencies nor a built CLI: ' +
      'run `npm ci` here (or `npm run build` once, then `npm ci --omit=dev` works).\n',
  );
  process.exitCode = 1;
}
