#!/usr/bin/env node
// The lambkin command. Runs the TypeScript sources through tsx until the CLI is bundled.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
