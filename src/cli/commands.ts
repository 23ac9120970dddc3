/** The subcommands, by name. */
import { generateCommand, logitsCommand } from './run-model.js';
import { gridsCommand } from './grids.js';
import { calibrateCommand } from './calibrate.js';
import { evalCommand } from './eval.js';
import { demoCommand } from './demo.js';
import { retrievalCommand } from './retrieval.js';
import { serveCommand } from './serve.js';
import type { Command } from './command.js';

export const commands: Record<string, Command> = {
  generate: generateCommand,
  logits: logitsCommand,
  grids: gridsCommand,
  calibrate: calibrateCommand,
  eval: evalCommand,
  demo: demoCommand,
  retrieval: retrievalCommand,
  serve: serveCommand,
};
