/** A subcommand: a summary, a usage line and a run function. */
export interface Command {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<void> | void;
}
