/** The subcommands, each a summary, a usage line and a run function. */
import { generateCommand, logitsCommand } from './run-model.js';
import { gridsCommand } from './grids.js';
import { calibrateCommand } from './calibrate.js';
import { evalCommand } from './eval.js';
import { demoCommand } from './demo.js';
import { retrievalCommand } from './retrieval.js';

export interface Command {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<void> | void;
}

export const commands: Record<string, Command> = {
  generate: generateCommand,
  logits: logitsCommand,
  grids: gridsCommand,
  calibrate: calibrateCommand,
  eval: evalCommand,
  demo: demoCommand,
  retrieval: retrievalCommand,
};
