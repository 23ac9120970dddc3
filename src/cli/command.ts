/** A subcommand: a summary, its options (parsing and help from one table) and a run function. */
import type { OptionSpecs } from './args.js';

export interface Command {
  summary: string;
  options: OptionSpecs;
  run(argv: string[]): Promise<void> | void;
}
