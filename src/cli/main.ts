/**
 * The `aquakv` command line. The only place that parses arguments, prints usage and sets exit
 * codes: a user mistake (AquaError) ends with one line on stderr and exit code 1.
 */
import { AquaError } from '../errors.js';
import { commands } from './commands.js';

const USAGE = `usage: aquakv <command> [options]

commands:
${Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`).join('\n')}

Run 'aquakv <command> --help' for a command's options.`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(USAGE);
    return name ? 0 : 1;
  }
  const cmd = commands[name];
  if (!cmd) throw new AquaError(`unknown command '${name}'`, `one of: ${Object.keys(commands).join(', ')}`);
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(`usage: aquakv ${name} ${cmd.usage}\n\n${cmd.summary}`);
    return 0;
  }
  await cmd.run(rest);
  return 0;
}

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
