/** Typed option parsing over node:util parseArgs, with errors a user can act on. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { AquaError } from '../errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** One option of a command: its type for parsing, and what its help shows. */
export interface OptionSpec<T extends 'string' | 'boolean' = 'string' | 'boolean'> {
  type: T;
  value?: string; // the placeholder in help: N, FILE, SPEC…
  help: string;
  // what the help says the default is (not parseArgs's `default`: commands apply their own defaults)
  shownDefault?: string | number;
  required?: boolean;
}
export type OptionSpecs = Record<string, OptionSpec>;

/** A string option. */
export const opt = (value: string, help: string, shownDefault?: string | number, required = false): OptionSpec<'string'> => ({ type: 'string', value, help, shownDefault, required });
/** A flag. */
export const flag = (help: string): OptionSpec<'boolean'> => ({ type: 'boolean', help });

/** `--name VALUE` for each option, required ones bare, the rest in brackets. */
export function usageLine(options: OptionSpecs): string {
  return Object.entries(options)
    .map(([name, o]) => {
      const s = `--${name}${o.value ? ` ${o.value}` : ''}`;
      return o.required ? s : `[${s}]`;
    })
    .join(' ');
}

/** Every option with its meaning and default, one per line. */
export function optionHelp(options: OptionSpecs): string {
  const left = Object.entries(options).map(([name, o]) => `  --${name}${o.value ? ` ${o.value}` : ''}`);
  const width = Math.max(...left.map((l) => l.length)) + 2;
  return Object.values(options)
    .map((o, i) => `${left[i].padEnd(width)}${o.help}${o.shownDefault !== undefined ? ` (default: ${o.shownDefault})` : ''}`)
    .join('\n');
}
/** Parsed values: strings for string options, booleans for flags, undefined when absent. */
export type Values<T extends Options> = { [K in keyof T]?: T[K]['type'] extends 'boolean' ? boolean : string };

export function parse<T extends Options>(argv: string[], options: T): Values<T> {
  try {
    return parseArgs({ args: argv, options, allowPositionals: false, strict: true }).values as Values<T>;
  } catch (e) {
    // node's messages run over several lines ("… is ambiguous.\nDid you forget …"): one line here
    const lines = (e as Error).message.split('\n').map((l) => l.trim()).filter(Boolean);
    throw new AquaError(lines.join(' '));
  }
}

/** Seeds are 32-bit (the RNG's state): larger ones are refused, not wrapped. */
export const MAX_SEED = 2 ** 32 - 1;

export function intOpt(v: string | undefined, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new AquaError(`--${name} must be an integer ≥ ${min}, got '${v}'`);
  if (n > max) throw new AquaError(`--${name} must be at most ${max}, got '${v}'`);
  return n;
}

export function numOpt(v: string | undefined, name: string, fallback: number, min = -Infinity, max = Infinity): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) throw new AquaError(`--${name} must be a number in [${min}, ${max}], got '${v}'`);
  return n;
}

/**
 * For the tools beside the CLI (train-model, evaluate-model, bench), called first: a user
 * mistake (an AquaError: a bad option from `parse`, a missing model directory, a bad file) ends
 * with one line and exit code 2; anything else keeps its stack.
 */
export function reportUserErrors(tool: string): void {
  process.on('uncaughtException', (e) => {
    if (e instanceof AquaError) {
      console.error(`${tool}: ${e.message}`);
      process.exit(2);
    }
    console.error(e);
    process.exit(1);
  });
}
