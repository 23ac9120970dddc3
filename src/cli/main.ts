/**
 * The `aquakv` command line. The only place that parses arguments, prints usage and sets exit
 * codes: a user mistake (AquaError) ends with one line on stderr and exit code 1.
 */
import { AquaError } from '../errors.js';
import { platform } from '../platform/index.js';
import { optionHelp, usageLine } from './args.js';
import type { Command } from './command.js';
import { commands } from './commands.js';

const USAGE = `usage: aquakv <command> [options]

commands:
${Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`).join('\n')}

Run 'aquakv help <command>' (or 'aquakv <command> --help') for a command's options; 'aquakv --version' for the version.`;

function commandHelp(name: string, cmd: Command): string {
  return `usage: aquakv ${name} ${usageLine(cmd.options)}\n\n${cmd.summary}\n\noptions:\n${optionHelp(cmd.options)}`;
}

function version(): string {
  return (JSON.parse(platform.readText(platform.assetPath('package.json'))) as { version: string }).version;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-v') {
    console.log(`aquakv ${version()}`);
    return 0;
  }
  if (name === 'help' && rest.length > 0) {
    const cmd = commands[rest[0]];
    if (!cmd) throw new AquaError(`unknown command '${rest[0]}'`, `one of: ${Object.keys(commands).join(', ')}`);
    console.log(commandHelp(rest[0], cmd));
    return 0;
  }
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(USAGE);
    return name ? 0 : 1;
  }
  const cmd = commands[name];
  if (!cmd) throw new AquaError(`unknown command '${name}'`, `one of: ${Object.keys(commands).join(', ')}`);
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(commandHelp(name, cmd));
    return 0;
  }
  await cmd.run(rest);
  return 0;
}

// Ctrl-C: give the terminal its cursor back (progress bars hide it) and exit as interrupted
process.on('SIGINT', () => {
  if (process.stderr.isTTY) process.stderr.write('\x1b[?25h\n');
  process.exit(130);
});

// a reader that stops early (`aquakv logits … | head`) closes the pipe: that is the end, not an error
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof AquaError || (err as { code?: string })?.code?.startsWith?.('ERR_PARSE_ARGS')) {
      console.error(`aquakv: ${(err as Error).message}`);
    } else {
      console.error(err);
    }
    process.exitCode = 1;
  },
);
