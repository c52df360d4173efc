/**
 * The commands of `lambkin`, in the order `lambkin --help` lists them. A new command is a module
 * exporting a CommandModule (src/cli/program.ts), added here.
 */
import type { CommandModule } from '../program.js';
import { badgeCommand } from './badge.js';
import { buildsCommand } from './builds.js';
import { cancelCommand } from './cancel.js';
import { configCommand } from './config.js';
import { demoCommand } from './demo.js';
import { devCommand } from './dev.js';
import { runCommand } from './run.js';
import { logsCommand } from './logs.js';
import { rebuildCommand } from './rebuild.js';
import { setupCommand } from './setup.js';
import { sweepCommand } from './sweep.js';

export const COMMANDS: readonly CommandModule[] = [
  devCommand,
  runCommand,
  demoCommand,
  buildsCommand,
  logsCommand,
  badgeCommand,
  rebuildCommand,
  cancelCommand,
  configCommand,
  sweepCommand,
  setupCommand,
];
