/** The subcommands, each a summary, a usage line and a run function. */
import { generateCommand, logitsCommand } from './run-model.js';

export interface Command {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<void> | void;
}

export const commands: Record<string, Command> = {
  generate: generateCommand,
  logits: logitsCommand,
};
